//! What an x86 Linux VM is given when there is no firmware in it.
//!
//! - [`acpi`]: ACPI tables (RSDP, XSDT, FADT, FACS, MADT, DSDT) generated from the VM
//!   config, laid out in one blob for a guest-physical base.
//! - [`e820`]: the memory map, from the config's memory regions and the PC's low-memory
//!   layout.
//! - [`bzimage`]: the bzImage setup header, checked for the 64-bit boot protocol.
//! - [`zeropage`]: the zero page (`struct boot_params`).
//! - [`linux`]: where everything goes ([`linux::plan`] gives a [`BootPlan`]), with typed
//!   errors for a kernel, initrd or command line that does not fit.
//!
//! Pure code, `no_std` + `alloc`, no `unsafe`: everything is built as bytes that the caller
//! (axvm, the x86 vCPU side) copies into guest memory. The layout and what Linux finds is
//! written down in `docs/x86-linux.md`.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod aml;
mod bytes;
pub mod bzimage;
pub mod e820;
pub mod linux;
pub mod zeropage;

pub use acpi::{AcpiDesc, AcpiError, AcpiTables};
pub use bzimage::{BzImage, BzImageError};
pub use e820::{E820Entry, E820Error, E820Kind, E820Map};
pub use linux::{plan, BootError, BootPlan, InitrdProblem};

#[cfg(test)]
mod tests;
