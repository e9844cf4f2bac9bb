//! Hardware abstraction for the hypervisor.
//!
//! One module per architecture under `arch/` (aarch64 at EL2 on QEMU `virt`, riscv64 in HS
//! mode under OpenSBI, x86_64 on a PC from a multiboot loader); everything outside `arch/` is the architecture-neutral face the rest of
//! the system uses: [`console`], [`cpu`], [`irq`], [`time`], [`context`], [`power`],
//! [`platform`], [`percpu`].
//!
//! Boot contract: the architecture's entry code brings up the boot CPU (stack, BSS, MMU, trap
//! vector, console, device tree, interrupt controller, timer) and then calls the runtime's
//! `__axstd_primary_main()`; each CPU later started with [`cpu::start`] calls
//! `__axstd_secondary_main(cpu)`. Both are defined by `axstd`.
#![no_std]
#![cfg(target_os = "none")]

mod arch;
mod boot;
#[cfg(any(target_arch = "riscv64", target_arch = "x86_64"))]
mod deadlines;
mod mmio;

pub mod console;
pub mod context;
pub mod cpu;
pub mod irq;
pub mod pci;
pub mod percpu;
pub mod platform;
pub mod power;
pub mod time;

/// Entering guests (aarch64: EL1 under EL2; riscv64: VS mode under HS).
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
pub use arch::guest;

/// The host GIC's virtualization interface (aarch64).
#[cfg(target_arch = "aarch64")]
pub use arch::vgic;

/// What the x86 vCPU code needs from the host: vectors, interrupt dispatch after a VM exit,
/// the TSS base, CPU features (x86_64).
#[cfg(target_arch = "x86_64")]
pub use arch::x86;

extern "Rust" {
    /// Runtime entry on the boot CPU, once the hardware is up.
    fn __axstd_primary_main() -> !;
    /// Runtime entry on every other CPU.
    fn __axstd_secondary_main(cpu: usize) -> !;
}

/// Called by the architecture code once the boot CPU is up.
fn enter_primary() -> ! {
    // SAFETY: defined by axstd with this exact signature; called once, on the boot CPU.
    unsafe { __axstd_primary_main() }
}

/// Called by the architecture code once a secondary CPU is up.
fn enter_secondary(cpu: usize) -> ! {
    // SAFETY: defined by axstd with this exact signature; called once per secondary CPU.
    unsafe { __axstd_secondary_main(cpu) }
}
