//! The x86_64 vCPU under Intel VT-x (VMX) with EPT.
//!
//! Portable and unit-tested on the host (`cargo test -p x86_vcpu`):
//! - [`caps`]: the CPU's VMX capability MSRs and the VMCS controls computed from them.
//! - [`check`]: naming the guest-state, host-state or control field behind a failed VM
//!   entry.
//! - [`exit`]: exit reasons, exit qualifications (I/O, CR access, EPT violation),
//!   VM-instruction errors, event injection encodings.
//! - [`insn`]: decoding the `mov` forms behind an EPT violation on an MMIO address.
//! - [`gpt`]: walking the guest's own page tables through checked guest-memory accesses
//!   (instruction fetch for [`insn`], string I/O buffers).
//! - [`cpuid`]: what the guest's CPUID returns (VMX and SVM hidden, the axvisor leaf).
//! - [`msr`]: the MSR bitmap and the MSRs the vCPU emulates.
//! - [`power`]: the power hypercalls and what both backends make of a hypercall.
//! - [`entry`]: the guest entry contract (64-bit mode, the GDT and identity page tables the
//!   hypervisor writes into guest RAM).
//! - [`vmcs`]: VMCS field encodings.
//!
//! x86_64 bare metal only:
//! - `vmx`: VMXON per CPU (capabilities, IA32_FEATURE_CONTROL, CR0/CR4 fixed bits), the
//!   VMX instructions.
//! - `vcpu`: [`VmxVCpu`](crate::VmxVCpu), its VMCS, the world switch (VMLAUNCH/VMRESUME)
//!   and the exit handling.
//! - `platform`: [`VmxPlatform`](crate::VmxPlatform), the x86 implementation of
//!   `axvm::ArchPlatform` (VPIDs, the boot tables as boot data, x86's refusals).
//!
//! See `docs/x86.md`.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod caps;
pub mod check;
pub mod cpuid;
pub mod entry;
pub mod exit;
pub mod gpt;
pub mod insn;
pub mod msr;
pub mod power;
pub mod vmcs;

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod vcpu;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub mod vmx;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub use vcpu::{VmxVCpu, VmxVCpuConfig};
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod fpu;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod guestmem;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod platform;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub use platform::{VmxPlatform, VmxPlatformError, VmxVm};
