//! A minimal virtio-mmio driver side (virtio 1.2, modern) for test guests: the transport's
//! registers at a base address, bring-up with feature negotiation, and split virtqueues
//! laid out in guest RAM the program owns. No interrupts: completion is polled on the used
//! index (the device completes a kick before the MMIO store returns).

use crate::mmio::{read16, read32, write16, write32, write64};

/// `Status` bits.
pub const ACK: u32 = 1;
/// `Status`: the driver knows the device.
pub const DRIVER: u32 = 2;
/// `Status`: the driver is ready.
pub const DRIVER_OK: u32 = 4;
/// `Status`: feature negotiation finished.
pub const FEATURES_OK: u32 = 8;
/// `Status`: the device met an error and needs a reset.
pub const NEEDS_RESET: u32 = 64;

/// Descriptor flag: the chain goes on at `next`.
pub const F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer.
pub const F_WRITE: u16 = 2;

/// The register offsets used here.
pub mod regs {
    /// `MagicValue`.
    pub const MAGIC: usize = 0x00;
    /// `Version`.
    pub const VERSION: usize = 0x04;
    /// `DeviceID`.
    pub const DEVICE_ID: usize = 0x08;
    /// `DeviceFeatures`.
    pub const DEVICE_FEATURES: usize = 0x10;
    /// `DeviceFeaturesSel`.
    pub const DEVICE_FEATURES_SEL: usize = 0x14;
    /// `DriverFeatures`.
    pub const DRIVER_FEATURES: usize = 0x20;
    /// `DriverFeaturesSel`.
    pub const DRIVER_FEATURES_SEL: usize = 0x24;
    /// `QueueSel`.
    pub const QUEUE_SEL: usize = 0x30;
    /// `QueueNumMax`.
    pub const QUEUE_NUM_MAX: usize = 0x34;
    /// `QueueNum`.
    pub const QUEUE_NUM: usize = 0x38;
    /// `QueueReady`.
    pub const QUEUE_READY: usize = 0x44;
    /// `QueueNotify`.
    pub const QUEUE_NOTIFY: usize = 0x50;
    /// `InterruptStatus`.
    pub const INTERRUPT_STATUS: usize = 0x60;
    /// `InterruptACK`.
    pub const INTERRUPT_ACK: usize = 0x64;
    /// `Status`.
    pub const STATUS: usize = 0x70;
    /// `QueueDescLow` (then `QueueDriverLow` at +0x10, `QueueDeviceLow` at +0x20).
    pub const QUEUE_DESC_LOW: usize = 0x80;
    /// The device's config space.
    pub const CONFIG: usize = 0x100;
}

/// A virtio-mmio transport at `base` (a 0x200-byte window of the VM's config).
pub struct Device(pub usize);

impl Device {
    /// Reads register `off`.
    pub fn reg(&self, off: usize) -> u32 {
        // SAFETY: base..base + 0x200 is the virtio-mmio window the VM config gives.
        unsafe { read32(self.0 + off) }
    }

    /// Writes register `off`.
    pub fn set(&self, off: usize, v: u32) {
        // SAFETY: as in `reg`.
        unsafe { write32(self.0 + off, v) }
    }

    /// The device's feature bits 0..31.
    pub fn features_low(&self) -> u32 {
        self.set(regs::DEVICE_FEATURES_SEL, 0);
        self.reg(regs::DEVICE_FEATURES)
    }

    /// Resets the device, accepts `features` (bits 0..31; `VIRTIO_F_VERSION_1` is added)
    /// and makes `queues` ready (queue `i` is `queues[i]`); whether both `FEATURES_OK` and
    /// `DRIVER_OK` stuck.
    pub fn bring_up(&self, features: u32, queues: &[&Queue]) -> bool {
        self.negotiate(features, queues) && self.driver_ok()
    }

    /// [`Device::bring_up`] up to the queues being ready, without `DRIVER_OK`: whether
    /// `FEATURES_OK` stuck.
    pub fn negotiate(&self, features: u32, queues: &[&Queue]) -> bool {
        self.set(regs::STATUS, 0);
        self.set(regs::STATUS, ACK | DRIVER);
        self.set(regs::DRIVER_FEATURES_SEL, 0);
        self.set(regs::DRIVER_FEATURES, features);
        self.set(regs::DRIVER_FEATURES_SEL, 1);
        self.set(regs::DRIVER_FEATURES, 1); // bit 32: VIRTIO_F_VERSION_1
        self.set(regs::STATUS, ACK | DRIVER | FEATURES_OK);
        if self.reg(regs::STATUS) & FEATURES_OK == 0 {
            return false;
        }
        for (i, q) in queues.iter().enumerate() {
            self.set(regs::QUEUE_SEL, i as u32);
            self.set(regs::QUEUE_NUM, u32::from(q.size));
            for (k, addr) in [q.desc(), q.avail(), q.used()].into_iter().enumerate() {
                let low = regs::QUEUE_DESC_LOW + 0x10 * k;
                self.set(low, addr as u32);
                self.set(low + 4, (addr as u64 >> 32) as u32);
            }
            q.clear();
            self.set(regs::QUEUE_READY, 1);
        }
        true
    }

    /// Sets `DRIVER_OK` after [`Device::negotiate`]; whether it stuck.
    pub fn driver_ok(&self) -> bool {
        self.set(regs::STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        self.reg(regs::STATUS) & DRIVER_OK != 0
    }
}

/// A split virtqueue of `size` entries in 12 KiB of guest RAM at `at` (page aligned):
/// descriptors, then the available ring (+0x1000), then the used ring (+0x2000).
pub struct Queue {
    at: usize,
    size: u16,
}

impl Queue {
    /// The queue laid out at `at`.
    pub const fn new(at: usize, size: u16) -> Self {
        Self { at, size }
    }

    fn desc(&self) -> usize {
        self.at
    }
    fn avail(&self) -> usize {
        self.at + 0x1000
    }
    fn used(&self) -> usize {
        self.at + 0x2000
    }

    /// Zeroes the ring headers.
    fn clear(&self) {
        // SAFETY: the queue's area is guest RAM this program owns.
        unsafe {
            write32(self.avail(), 0);
            write32(self.used(), 0);
        }
    }

    /// Descriptor `i`: `len` bytes at `addr`, `flags`, `next`.
    pub fn put_desc(&self, i: u16, addr: usize, len: u32, flags: u16, next: u16) {
        let d = self.desc() + 16 * usize::from(i);
        // SAFETY: as in `clear`.
        unsafe {
            write64(d, addr as u64);
            write32(d + 8, len);
            write16(d + 12, flags);
            write16(d + 14, next);
        }
    }

    /// Offers chain `head` as available entry `idx` and publishes `idx + 1`.
    pub fn offer(&self, idx: u16, head: u16) {
        let slot = usize::from(idx % self.size);
        // SAFETY: as in `clear`.
        unsafe {
            write16(self.avail() + 4 + 2 * slot, head);
            write16(self.avail() + 2, idx.wrapping_add(1));
        }
    }

    /// The device's used index.
    pub fn used_idx(&self) -> u16 {
        // SAFETY: as in `clear`.
        unsafe { read16(self.used() + 2) }
    }

    /// The descriptor chain head the device gave back as used entry `idx`.
    pub fn used_id(&self, idx: u16) -> u32 {
        let slot = usize::from(idx % self.size);
        // SAFETY: as in `clear`.
        unsafe { read32(self.used() + 4 + 8 * slot) }
    }

    /// The length the device reported for used entry `idx`.
    pub fn used_len(&self, idx: u16) -> u32 {
        let slot = usize::from(idx % self.size);
        // SAFETY: as in `clear`.
        unsafe { read32(self.used() + 4 + 8 * slot + 4) }
    }
}
