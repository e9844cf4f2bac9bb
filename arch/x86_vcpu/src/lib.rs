//! The x86_64 vCPU under Intel VT-x (VMX) with EPT.
//!
//! - [`caps`]: the CPU's VMX capability MSRs and the VMCS controls computed from them.
//!   Portable and unit-tested on the host.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod caps;
pub mod exit;
pub mod insn;
