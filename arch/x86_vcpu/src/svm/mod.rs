//! AMD SVM (AMD-V) with nested paging: the second backend of the x86 vCPU, chosen at run
//! time from CPUID (docs/x86.md, "SVM").
//!
//! Portable and unit-tested on the host:
//! - [`vmcb`]: the VMCB's layout, intercepts, exit codes and EXITINFO decoding, the MSR
//!   and I/O permission maps, instruction lengths (no NRIP-save).
//! - [`check`]: naming what VMRUN refuses in a VMCB (VMEXIT_INVALID).
//!
//! x86_64 bare metal only: `hw` (EFER.SVME, VM_HSAVE_PA, the SVM instructions per CPU)
//! and `vcpu` ([`SvmVCpu`](crate::SvmVCpu): its VMCB, the world switch, the exits).

pub mod check;
pub mod vmcb;

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub(crate) mod hw;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub(crate) mod vcpu;
