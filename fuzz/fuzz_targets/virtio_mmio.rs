//! The virtio-mmio transport with a virtio-console behind it, in 64 KiB of guest RAM the
//! input writes: register accesses of any offset, width and value, a driver bring-up with
//! queue areas and sizes from the input (near or inside RAM, or anywhere), descriptor
//! tables and rings the input fills, queue kicks and console input.
//!
//! Checked besides "no panic": the interrupt line is high exactly while
//! `InterruptStatus` is non-zero; an access outside the device is refused; the identity
//! registers never change; nothing reaches the console sink unless the driver set
//! `DRIVER_OK`; a device needing a reset has `DEVICE_NEEDS_RESET` set.
#![no_main]

use axdevice_base::{AccessWidth, GuestMemory, MmioDevice};
use axvirtio::console::VirtioConsole;
use axvirtio::mem::FlatMemory;
use axvirtio::{regs, DeviceStatus, VirtioMmio, VIRTIO_F_VERSION_1};
use axvisor_fuzz::{Access, CountingSink, Input, LevelIrq};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const RAM: u64 = 0x4000_0000;
const RAM_SIZE: usize = 0x10000;

fn word(dev: &dyn MmioDevice, offset: usize) -> u32 {
    dev.read(offset, AccessWidth::Word)
        .expect("aligned register reads are accepted") as u32
}

fn put(dev: &dyn MmioDevice, offset: usize, value: u32) {
    dev.write(offset, AccessWidth::Word, u64::from(value))
        .expect("aligned register writes are accepted");
}

/// A guest address: mostly inside RAM, sometimes just outside, sometimes anything.
fn address(input: &mut Input<'_>) -> u64 {
    match input.u8() % 8 {
        0 => input.u64(),
        1 => RAM + RAM_SIZE as u64 - u64::from(input.u8()),
        _ => RAM + u64::from(input.u16()),
    }
}

fn bring_up(dev: &dyn MmioDevice, input: &mut Input<'_>) {
    use DeviceStatus as S;
    put(dev, regs::STATUS, 0);
    put(dev, regs::STATUS, (S::ACKNOWLEDGE | S::DRIVER).bits());
    put(dev, regs::DRIVER_FEATURES_SEL, 1);
    put(
        dev,
        regs::DRIVER_FEATURES,
        (VIRTIO_F_VERSION_1 >> 32) as u32,
    );
    put(
        dev,
        regs::STATUS,
        (S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK).bits(),
    );
    for q in 0..2 {
        put(dev, regs::QUEUE_SEL, q);
        put(dev, regs::QUEUE_NUM, u32::from(input.u16() % 300));
        for (low, a) in [
            (regs::QUEUE_DESC_LOW, address(input)),
            (regs::QUEUE_DRIVER_LOW, address(input)),
            (regs::QUEUE_DEVICE_LOW, address(input)),
        ] {
            put(dev, low, a as u32);
            put(dev, low + 4, (a >> 32) as u32);
        }
        put(dev, regs::QUEUE_READY, 1);
    }
    let ok = S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK | S::DRIVER_OK;
    put(dev, regs::STATUS, ok.bits());
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mem = Arc::new(FlatMemory::new(RAM, RAM_SIZE));
    let sink = Arc::new(CountingSink::default());
    let irq = Arc::new(LevelIrq::default());
    let dev = VirtioMmio::new(
        "virtio-console",
        VirtioConsole::new(sink.clone()),
        mem.clone(),
        irq.clone(),
    );
    let mut ever_live = false;
    while !input.is_empty() {
        match input.u8() % 6 {
            0 => {
                let _ = Access::decode(&mut input, dev.size(), 1).apply(&dev);
            }
            1 => bring_up(&dev, &mut input),
            2 => {
                let at = address(&mut input);
                let bytes = input.slice(64);
                let _ = mem.write(at, bytes);
            }
            3 => {
                let bytes = input.slice(64);
                dev.with_device(|c| c.push_input(bytes));
            }
            4 => put(&dev, regs::QUEUE_NOTIFY, u32::from(input.u8() % 3)),
            _ => {
                let bits = word(&dev, regs::INTERRUPT_STATUS);
                put(&dev, regs::INTERRUPT_ACK, bits & u32::from(input.u8()));
            }
        }
        let status = DeviceStatus::from_bits_truncate(word(&dev, regs::STATUS));
        ever_live |= status.contains(DeviceStatus::DRIVER_OK);
        assert_eq!(irq.level(), word(&dev, regs::INTERRUPT_STATUS) != 0);
        assert_eq!(word(&dev, regs::MAGIC_VALUE), 0x7472_6976);
        assert_eq!(word(&dev, regs::VERSION), 2);
        assert_eq!(word(&dev, regs::DEVICE_ID), 3);
        assert!(ever_live || sink.0.load(Ordering::Relaxed) == 0);
    }
});
