//! The riscv64 vCPU: guests run in VS mode under the hypervisor in HS mode (H extension).
//!
//! - [`decode`]: turning traps from the guest (`scause`, `stval`, `htval`, `htinst`) into
//!   [`axvcpu::VmExit`]s, decoding the loads and stores of MMIO accesses, and the SBI calls
//!   the vCPU answers itself. Portable and unit-tested on the host.
//! - [`harts`]: what the vCPUs of one VM share (IPIs, remote fences, the virtual PLIC).
//!   Portable and unit-tested on the host.
//! - `vcpu` (riscv64 only): `RiscvVCpu`, the guest context (general-purpose, VS-level and
//!   floating-point registers), the hypervisor CSRs, virtual interrupts through `hvip`, and
//!   the run loop over `axhal::guest::run`.
//! - `platform` (riscv64 only): [`RiscvPlatform`], the riscv64 implementation of
//!   `axvm::ArchPlatform` (a VM's virtual PLIC, the state its harts share, passthrough
//!   interrupts, boot registers, the device tree's harts and PLIC).
//!
//! See `docs/riscv-vcpu.md`.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod decode;
pub mod harts;

/// The virtual PLIC crate, re-exported for the VMM that builds one per VM (it gives it to
/// [`harts::VmHarts::new`] and maps its registers).
pub use riscv_vplic;

#[cfg(all(target_arch = "riscv64", target_os = "none"))]
mod vcpu;
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
pub use vcpu::{vmid_bits, RiscvVCpu, RiscvVCpuConfig};
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
mod platform;
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
pub use platform::{RiscvPlatform, RiscvPlatformError, RiscvVm};

/// The hypercall number with which the vCPU hands the SBI legacy `console_putchar` (EID
/// 0x01) and DBCN `console_write_byte` / `console_write` calls to the VMM, one byte at a
/// time, as [`axvcpu::VmExit::Hypercall`] with the byte in argument 0 (the low byte of a0,
/// or the next byte of a `console_write`; `ArchVCpu::hypercall_args`): the portable
/// [`axvcpu::hypercall::CONSOLE_PUTCHAR`], which writes the byte to the VM's console.
pub const SBI_CONSOLE_PUTCHAR_NR: u64 = axvcpu::hypercall::CONSOLE_PUTCHAR;
