//! The x86_64 vCPU under Intel VT-x (VMX) with EPT, or AMD-V (SVM) with nested paging
//! (`svm`), chosen at run time.
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
//! - [`mode`]: CR0 writes that change the CPU's mode (real, protected, long), the
//!   real-mode start of INIT-SIPI.
//! - [`msr`]: the MSR bitmap and the MSRs the vCPU emulates.
//! - [`ioperm`]: a VM's passthrough I/O ports and the I/O bitmaps (VMX) and I/O
//!   permission map (SVM) built from them.
//! - [`pc`]: the virtual PC of a VM (local APICs, I/O APIC, PIC, PIT, RTC, PM1) and the
//!   interrupt API both backends call.
//! - [`power`]: the power hypercalls and what both backends make of a hypercall.
//! - [`entry`]: the guest entry contract (64-bit mode, the GDT and identity page tables the
//!   hypervisor writes into guest RAM).
//! - [`vmcs`]: VMCS field encodings.
//! - [`svm`]: the SVM backend (VMCB layout, exit decoding, VMRUN checks; its vCPU).
//! - [`linux`]: a Linux bzImage VM's boot (the 64-bit boot protocol's placements).
//!
//! x86_64 bare metal only:
//! - `vmx`: VMXON per CPU (capabilities, IA32_FEATURE_CONTROL, CR0/CR4 fixed bits), the
//!   VMX instructions.
//! - `vcpu`: [`VmxVCpu`](crate::VmxVCpu), its VMCS, the world switch (VMLAUNCH/VMRESUME)
//!   and the exit handling.
//! - `backend`: the backend chosen at run time from CPUID, [`X86VCpu`](crate::X86VCpu) (a
//!   VMX or SVM vCPU) and [`X86Stage2`](crate::X86Stage2) (EPT or NPT).
//! - `platform`: [`X86Platform`](crate::X86Platform), the x86 implementation of
//!   `axvm::ArchPlatform` (VPIDs or ASIDs, the boot tables as boot data, x86's refusals).
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
pub mod insn_cache;
pub mod ioperm;
pub mod linux;
pub mod mode;
pub mod msr;
pub mod pc;
pub mod power;
pub mod svm;
pub mod vmcs;

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod vcpu;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub mod vmx;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub use vcpu::VmxVCpu;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod fpu;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod guestmem;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub use svm::vcpu::SvmVCpu;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod platform;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub use platform::{X86Platform, X86PlatformError, X86Vm};
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub mod backend;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub use backend::{X86Stage2, X86VCpu, X86VCpuConfig};
