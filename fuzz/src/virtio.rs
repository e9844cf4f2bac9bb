//! The guest driver the virtio targets share: addresses in a guest's 64 KiB of RAM, the
//! transport's bring-up through its registers, and descriptor chains written into a split
//! queue and offered.

use axdevice_base::{AccessWidth, GuestMemory, MmioDevice};
use axvirtio::{regs, DeviceStatus, Queue};

use crate::Input;

/// Guest-physical start of a target's RAM.
pub const RAM: u64 = 0x4000_0000;
/// Size of a target's RAM: 64 KiB.
pub const RAM_SIZE: usize = 0x10000;

/// A guest address: mostly inside RAM, sometimes just outside, sometimes anything.
pub fn address(input: &mut Input<'_>) -> u64 {
    match input.u8() % 8 {
        0 => input.u64(),
        1 => RAM + RAM_SIZE as u64 - u64::from(input.u8()),
        _ => RAM + u64::from(input.u16()),
    }
}

/// Reads a 32-bit transport register; aligned register reads are never refused.
pub fn word(dev: &dyn MmioDevice, offset: usize) -> u32 {
    dev.read(offset, AccessWidth::Word)
        .expect("aligned register reads are accepted") as u32
}

/// Writes a 32-bit transport register; aligned register writes are never refused.
pub fn put(dev: &dyn MmioDevice, offset: usize, value: u32) {
    dev.write(offset, AccessWidth::Word, u64::from(value))
        .expect("aligned register writes are accepted");
}

/// Where a driver puts one queue: its size and its three areas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueuePlace {
    /// Entries (`QueueNum`).
    pub size: u16,
    /// Descriptor table.
    pub desc: u64,
    /// Available ring (driver area).
    pub avail: u64,
    /// Used ring (device area).
    pub used: u64,
}

impl From<&Queue> for QueuePlace {
    fn from(q: &Queue) -> Self {
        Self {
            size: q.size,
            desc: q.desc,
            avail: q.avail,
            used: q.used,
        }
    }
}

/// A driver's bring-up through the transport's registers: reset, `ACKNOWLEDGE | DRIVER`,
/// both words of `features`, `FEATURES_OK`, queue `i` at `queues[i]` made ready, then
/// `DRIVER_OK`.
pub fn bring_up(dev: &dyn MmioDevice, features: u64, queues: &[QueuePlace]) {
    use DeviceStatus as S;
    put(dev, regs::STATUS, 0);
    put(dev, regs::STATUS, (S::ACKNOWLEDGE | S::DRIVER).bits());
    for sel in 0..2 {
        put(dev, regs::DRIVER_FEATURES_SEL, sel);
        put(dev, regs::DRIVER_FEATURES, (features >> (32 * sel)) as u32);
    }
    put(
        dev,
        regs::STATUS,
        (S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK).bits(),
    );
    for (sel, q) in (0..).zip(queues) {
        put(dev, regs::QUEUE_SEL, sel);
        put(dev, regs::QUEUE_NUM, u32::from(q.size));
        for (low, a) in [
            (regs::QUEUE_DESC_LOW, q.desc),
            (regs::QUEUE_DRIVER_LOW, q.avail),
            (regs::QUEUE_DEVICE_LOW, q.used),
        ] {
            put(dev, low, a as u32);
            put(dev, low + 4, (a >> 32) as u32);
        }
        put(dev, regs::QUEUE_READY, 1);
    }
    let ok = S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK | S::DRIVER_OK;
    put(dev, regs::STATUS, ok.bits());
}

/// One buffer of a descriptor chain: guest address, length, device-writable.
pub type Buffer = (u64, u32, bool);

/// Writes `segs` as one chain at descriptors 0.. of `q`'s table, puts its head in the
/// available ring's slot `*avail_idx` and publishes `*avail_idx + 1`. Writes that miss RAM
/// are dropped, as a confused driver's would be; the caller kicks.
pub fn offer(mem: &dyn GuestMemory, q: &QueuePlace, avail_idx: &mut u16, segs: &[Buffer]) {
    for (i, &(addr, len, writable)) in segs.iter().enumerate() {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        let flags = u16::from(writable) * 2 + u16::from(i + 1 < segs.len());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&((i + 1) as u16).to_le_bytes());
        let _ = mem.write(q.desc.wrapping_add(16 * i as u64), &d);
    }
    if q.size > 0 {
        let slot = u64::from(*avail_idx % q.size);
        let _ = mem.write_u16(q.avail.wrapping_add(4 + 2 * slot), 0);
    }
    *avail_idx = avail_idx.wrapping_add(1);
    let _ = mem.write_u16(q.avail.wrapping_add(2), *avail_idx);
}
