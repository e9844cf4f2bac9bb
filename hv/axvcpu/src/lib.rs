//! The only door between the core VMM and an architecture.
//!
//! An architecture crate (`arm_vcpu`, `riscv_vcpu`, ...) implements [`ArchVCpu`]: it enters the
//! guest and, when the guest exits, decodes the architecture's syndrome (ESR/ISS, scause/
//! htinst, exit qualification) into a [`VmExit`]. Everything after that is portable.
//! [`VCpu`] wraps an `ArchVCpu` with a state machine that refuses illegal transitions.
#![no_std]
#![forbid(unsafe_code)]

mod exit;
pub mod hypercall;
mod vcpu;

pub use exit::VmExit;
pub use vcpu::{ArchVCpu, PowerReply, PowerState, VCpu, VCpuError, VCpuState};
