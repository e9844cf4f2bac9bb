//! aarch64 at EL2 (non-VHE) on QEMU `virt,virtualization=on`.
//!
//! - `boot`: the arm64 Image header, entry of the boot CPU and of secondaries.
//! - `mmu`: the hypervisor's identity map (stage 1, EL2 translation regime).
//! - `trap`: the EL2 exception vector; register dump on anything unexpected.
//! - `gic`: GICv2 and GICv3 drivers, chosen from the DTB.
//! - `psci`: firmware calls (CPU_ON, SYSTEM_OFF).
//! - `context`: task context switch.
//! - `pl011`: console UART.
//! - `guest`: the world switch into an EL1 guest and back.
//! - `vgic`: the host GIC's virtualization interface (list registers) for guest interrupts.

mod boot;
mod context;
mod gic;
pub mod guest;
mod mmu;
mod pl011;
mod psci;
mod trap;
pub mod vgic;

use aarch64_cpu::registers::*;

pub use context::{context_switch, TaskContext};
pub use pl011::{getchar, putchar};
pub use psci::{start_cpu, system_off};

/// Logical id of this CPU, kept in TPIDR_EL2 from boot on.
#[inline]
pub fn cpu_id() -> usize {
    TPIDR_EL2.get() as usize
}

/// Unmasks IRQs (PSTATE.I).
#[inline]
pub fn irq_enable() {
    // SAFETY: only changes the IRQ mask bit of PSTATE.
    unsafe { core::arch::asm!("msr daifclr, #2") }
}

/// Masks IRQs (PSTATE.I).
#[inline]
pub fn irq_disable() {
    // SAFETY: only changes the IRQ mask bit of PSTATE.
    unsafe { core::arch::asm!("msr daifset, #2") }
}

/// Unmasks IRQs until a context synchronization event (which takes every pending one), then
/// masks them again.
#[inline]
pub fn irq_take_pending() {
    // SAFETY: only changes the IRQ mask bit of PSTATE; the handlers run in between, as
    // after any unmask.
    unsafe { core::arch::asm!("msr daifclr, #2", "isb", "msr daifset, #2") }
}

/// Masks IRQs and returns the previous DAIF value.
#[inline]
pub fn irq_save_and_disable() -> usize {
    let daif = DAIF.get() as usize;
    irq_disable();
    daif
}

/// Restores a DAIF value from [`irq_save_and_disable`].
#[inline]
pub fn irq_restore(state: usize) {
    DAIF.set(state as u64)
}

/// `wfi`: sleeps until an interrupt is pending, masked or not.
#[inline]
pub fn wait_for_irq() {
    aarch64_cpu::asm::wfi()
}

/// CNTPCT_EL0.
#[inline]
pub fn now_ticks() -> u64 {
    CNTPCT_EL0.get()
}

/// CNTFRQ_EL0.
pub fn ticks_per_sec() -> u64 {
    CNTFRQ_EL0.get()
}

/// Programs the EL2 physical timer (CNTHP) to fire at `ticks`; `u64::MAX` masks it.
pub fn set_timer_deadline(ticks: u64) {
    if ticks == u64::MAX {
        CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::SET);
    } else {
        // SAFETY: writes the EL2 timer's compare value; no memory is touched.
        unsafe { core::arch::asm!("msr cnthp_cval_el2, {}", in(reg) ticks) };
        CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
    }
}

/// Sends the wake-up SGI to logical CPU `cpu`.
pub fn send_ipi(cpu: usize) {
    gic::send_ipi(cpu)
}

/// Routes GIC SPI `irq` to logical CPU `cpu`.
pub fn route_device_irq(irq: usize, cpu: usize) {
    gic::route_spi(irq as u32, cpu)
}

/// Enables or disables GIC SPI `irq` at the distributor.
pub fn set_device_irq_enabled(irq: usize, enabled: bool) {
    gic::set_spi_enabled(irq as u32, enabled)
}
