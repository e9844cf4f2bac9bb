//! The device side of virtio over MMIO (virtio 1.2, modern interface only).
//!
//! - [`VirtioMmio`]: the virtio-mmio transport, an [`MmioDevice`](axdevice_base::MmioDevice)
//!   wrapping one [`VirtioDevice`]: magic, version 2, feature negotiation
//!   (`VIRTIO_F_VERSION_1` required), the status state machine, queue setup, notify,
//!   interrupt status/ack, config generation and config space. A legacy (version 1) driver
//!   is refused: the device stays unusable and one line is logged.
//! - [`queue`]: split virtqueues. Every descriptor a guest writes is untrusted: rings and
//!   buffers are read and written only through a [`GuestMemory`](axdevice_base::GuestMemory),
//!   and loops, chains longer than the queue, out-of-range indices, addresses that wrap,
//!   indirect descriptors (not offered) become a [`QueueError`], which puts the device in
//!   `DEVICE_NEEDS_RESET`.
//! - [`VirtioDevice`]: what a device (console, block, net) implements.
//! - [`console`]: virtio-console (`hvc0`).
//! - [`mem`]: a flat `Vec`-backed guest memory, for host tests and fuzz targets.
//!
//! See `docs/virtio.md` for the API and the threat note.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

pub mod console;
mod device;
pub mod mem;
mod mmio;
pub mod queue;

pub use device::{config_from_bytes, QueueIo, VirtioDevice};
pub use mmio::{regs, VirtioMmio, VirtioReset, MMIO_SIZE};
pub use queue::{Chain, Queue, QueueError, Segment};
pub use virtio_drivers::transport::{DeviceStatus, DeviceType};

/// Feature bit 32: the device speaks virtio 1.x (modern). The transport always offers it
/// and requires the driver to accept it.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// The vendor id the transport reports (drivers do not check it).
pub const VENDOR_ID: u32 = 0x5358_5641;

#[cfg(test)]
mod tests;
