//! Platform configuration for the hypervisor.
//!
//! Two sources, one crate:
//! - constants fixed at build time from `configs/platforms/<platform>.toml` ([`PLATFORM`],
//!   [`KERNEL_BASE`], [`EARLY_UART`], [`MAX_CPUS`], [`STACK_SIZE`]);
//! - the firmware device tree read at run time ([`dtb::PlatformInfo`]): memory, CPUs, the
//!   interrupt controller, the console UART, timer interrupts and the PSCI conduit; on x86_64
//!   the same summary is filled from the [`multiboot`] information and ACPI (with the S5
//!   sleep type from [`aml`]).
//!
//! Everything here is portable and unit-tested on the host.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod aml;
pub mod dtb;
pub mod memmap;
pub mod multiboot;

include!(concat!(env!("OUT_DIR"), "/consts.rs"));
