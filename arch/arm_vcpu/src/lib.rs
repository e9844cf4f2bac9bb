//! The aarch64 vCPU: guests run at EL1 under the hypervisor at EL2 (non-VHE).
//!
//! - [`decode`]: turning ESR_EL2 syndromes into [`axvcpu::VmExit`]s, and PSCI calls the
//!   vCPU answers itself. Portable and unit-tested on the host.
//! - [`smccc`]: the SMC Calling Convention: function ids, the discovery calls, the vendor
//!   hypervisor range axvisor's hypercalls live in. Portable too.
//! - [`exception`]: exceptions the vCPU takes to the guest's EL1 (vector, entry PSTATE) and
//!   the AArch32 (A32/T32) side of completing a trap: instruction length, ITSTATE, condition.
//!   Portable too.
//! - [`icc`]: the GICv3 CPU-interface registers the vCPU traps and emulates (ICC_CTLR_EL1,
//!   ICC_PMR_EL1, ICC_RPR_EL1, ICC_DIR_EL1, the SGI registers). Portable too.
//! - [`sysreg`]: trapped system-register accesses (the feature ID registers the guest reads
//!   with hidden features masked; everything else is UNDEFINED). Portable too.
//! - `vcpu` (aarch64 only): the guest context (general-purpose registers, EL1 system
//!   registers), entry with `eret`, and the exit path from the EL2 vector.
//! - `platform` (aarch64 only): [`ArmPlatform`], the aarch64 implementation of
//!   `axvm::ArchPlatform` (the virtual GIC of a VM, its passthrough interrupts, boot
//!   registers, the device tree's GIC, timer and PSCI).
#![no_std]

extern crate alloc;

#[cfg(test)]
extern crate std;

pub mod decode;
pub mod exception;
pub mod icc;
pub mod passthrough;
pub mod smccc;
pub mod sysreg;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod debug_regs;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod vcpu;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod vgic_hw;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use vcpu::{vmid_bits, ArmVCpu, ArmVCpuConfig};
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod platform;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use platform::{ArmPlatform, ArmPlatformError, ArmVm};
