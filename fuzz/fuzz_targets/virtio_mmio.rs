//! The virtio-mmio transport with a virtio-console behind it, in 64 KiB of guest RAM the
//! input writes: register accesses of any offset, width and value, a driver bring-up with
//! queue areas and sizes from the input (near or inside RAM, or anywhere), descriptor
//! tables and rings the input fills, queue kicks and console input.
//!
//! Checked besides "no panic": the interrupt line is high exactly while
//! `InterruptStatus` is non-zero; an access outside the device is refused; the identity
//! registers never change; nothing reaches the console sink unless the driver set
//! `DRIVER_OK`; a device needing a reset has `DEVICE_NEEDS_RESET` set.

use axdevice_base::{GuestMemory, MmioDevice};
use axvirtio::console::VirtioConsole;
use axvirtio::mem::FlatMemory;
use axvirtio::{regs, DeviceStatus, VirtioMmio, VIRTIO_F_VERSION_1};
use axvisor_fuzz::virtio::{address, bring_up, put, word, QueuePlace, RAM, RAM_SIZE};
use axvisor_fuzz::{Access, CountingSink, Input, LevelIrq};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Runs one input.
pub fn run(data: &[u8]) {
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
            1 => {
                let queues = [0, 1].map(|_| QueuePlace {
                    size: input.u16() % 300,
                    desc: address(&mut input),
                    avail: address(&mut input),
                    used: address(&mut input),
                });
                bring_up(&dev, VIRTIO_F_VERSION_1, &queues);
            }
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
}
