//! Per-VM emulated devices.
//!
//! - [`DeviceSet`]: a VM's MMIO address map. Devices are added at a base address and never
//!   overlap; a guest access is looked up by binary search and handed to the device as an
//!   offset. Accesses no device handles get the VM's [`UnclaimedPolicy`] (fault, read as
//!   zero / ignore, or stop the VM), logged at WARN within bounds ([`unclaimed`]: a line
//!   per address, then per address range, and summaries of the counts).
//! - [`uart`]: the PL011 and 16550 UART models.
//!
//! The device traits live in [`axdevice_base`], re-exported here.
//!
//! Guest-controlled values (addresses, offsets, widths, data) never cause a panic: every
//! bad access becomes a [`DeviceError`](axdevice_base::DeviceError) or an unclaimed access.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

mod set;
pub mod uart;
pub mod unclaimed;

pub use axdevice_base;
pub use set::{
    DeviceSet, DeviceSetError, DeviceStats, MmioOutcome, PortOutcome, UnclaimedPolicy, PORT_LAST,
};
