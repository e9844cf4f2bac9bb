//! riscv64 in HS mode (H extension) under OpenSBI on QEMU `virt`.
//!
//! - `boot`: entry of the boot hart and of secondaries (SBI HSM), H-extension check.
//! - `mmu`: the hypervisor's Sv39 identity map.
//! - `trap`: the S-mode trap vector; register dump on anything unexpected.
//! - `plic`: the PLIC driver (per-hart S-mode contexts).
//! - `sbi`: console (DBCN, legacy fallback), timer (Sstc when present), IPIs, HSM, SRST.
//! - `context`: task context switch.
//! - `guest`: the world switch into a VS-mode guest and back.

mod boot;
mod context;
pub mod guest;
mod mmu;
mod plic;
mod sbi;
mod trap;

pub use context::{context_switch, TaskContext};
pub use sbi::{getchar, putchar, send_ipi, set_timer_deadline, start_cpu, system_off};

use core::sync::atomic::{AtomicU64, Ordering};

const SSTATUS_SIE: usize = 1 << 1;

/// Counter frequency from the DTB's `timebase-frequency` (QEMU `virt`: 10 MHz).
static TIMEBASE_HZ: AtomicU64 = AtomicU64::new(10_000_000);

/// Logical id of this CPU, kept in `tp` from boot on (the hypervisor's code never changes it).
#[inline]
pub fn cpu_id() -> usize {
    let id: usize;
    // SAFETY: reads the tp register.
    unsafe { core::arch::asm!("mv {}, tp", out(reg) id, options(nomem, nostack)) };
    id
}

/// Sets `sstatus.SIE`.
#[inline]
pub fn irq_enable() {
    // SAFETY: only changes the supervisor interrupt-enable bit.
    unsafe { core::arch::asm!("csrsi sstatus, 2") }
}

/// Clears `sstatus.SIE`.
#[inline]
pub fn irq_disable() {
    // SAFETY: only changes the supervisor interrupt-enable bit.
    unsafe { core::arch::asm!("csrci sstatus, 2") }
}

/// Sets `sstatus.SIE` (a pending enabled interrupt traps right after the write), then
/// clears it again.
#[inline]
pub fn irq_take_pending() {
    // SAFETY: only changes the supervisor interrupt-enable bit; the handlers run in
    // between, as after any unmask.
    unsafe { core::arch::asm!("csrsi sstatus, 2", "csrci sstatus, 2") }
}

/// Clears `sstatus.SIE`, returning the previous `sstatus`.
#[inline]
pub fn irq_save_and_disable() -> usize {
    let old: usize;
    // SAFETY: only changes the supervisor interrupt-enable bit.
    unsafe { core::arch::asm!("csrrci {}, sstatus, 2", out(reg) old) };
    old
}

/// Restores `sstatus.SIE` from [`irq_save_and_disable`].
#[inline]
pub fn irq_restore(state: usize) {
    if state & SSTATUS_SIE != 0 {
        irq_enable();
    }
}

/// `wfi`: sleeps until an interrupt enabled in `sie` is pending, whatever `sstatus.SIE`.
#[inline]
pub fn wait_for_irq() {
    // SAFETY: waits for an interrupt; no state changes.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack)) }
}

/// The `time` CSR.
#[inline]
pub fn now_ticks() -> u64 {
    riscv::register::time::read64()
}

/// Counter frequency in Hz.
pub fn ticks_per_sec() -> u64 {
    TIMEBASE_HZ.load(Ordering::Relaxed)
}

/// Takes PLIC source `irq` on hart `cpu` only.
pub fn route_device_irq(irq: usize, cpu: usize) {
    plic::route(irq, cpu)
}

/// Unmasks (priority 1) or masks (priority 0) PLIC source `irq`. A masked source keeps its
/// enables, and a request its device makes meanwhile stays pending at the PLIC.
pub fn set_device_irq_enabled(irq: usize, enabled: bool) {
    plic::set_priority(irq, u32::from(enabled))
}
