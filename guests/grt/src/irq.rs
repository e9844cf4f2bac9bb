//! Interrupts for test guests: the guest's timer, inter-processor interrupts between its
//! vCPUs, and device (external) interrupts, through the VM's virtual interrupt controller
//! (the GIC on aarch64, the PLIC and SBI on riscv64).
//!
//! A guest registers one handler with [`set_handler`], sets up each vCPU with [`init_cpu`]
//! and unmasks interrupts with [`enable`]. The architecture's trap code acknowledges each
//! interrupt, calls the handler with what it was, and ends it (EOI / complete). The timer is
//! one-shot: it is stopped before the handler runs, which re-arms it if it wants more.
//! Handlers run with interrupts masked, on the interrupted vCPU's stack.

use core::sync::atomic::{AtomicUsize, Ordering};

pub use crate::arch::irq_hw::{
    disable, enable, external_disable, external_enable, init_cpu, send_ipi, timer_freq, timer_now,
    timer_set, timer_stop,
};

/// What interrupted the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Irq {
    /// The vCPU's timer expired (aarch64: the EL1 virtual timer, PPI 27; riscv64: the
    /// supervisor timer).
    Timer,
    /// Another vCPU (or this one) sent an inter-processor interrupt (aarch64: SGI 0;
    /// riscv64: supervisor software interrupt).
    Ipi,
    /// A device interrupt: aarch64 GIC INTID (≥ 32), riscv64 PLIC source.
    External(u32),
}

/// An interrupt handler.
pub type IrqHandler = fn(Irq);

/// The registered handler as a `usize` (0: none); plain loads and stores only (they work
/// with the MMU off).
static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Registers (or with `None` removes) the interrupt handler shared by every vCPU.
pub fn set_handler(handler: Option<IrqHandler>) {
    HANDLER.store(handler.map_or(0, |h| h as usize), Ordering::SeqCst);
}

/// Called by the architecture's trap code for each acknowledged interrupt. Without a
/// handler the interrupt is unexpected: the guest reports it and powers off.
pub(crate) fn dispatch(irq: Irq) {
    match HANDLER.load(Ordering::SeqCst) {
        0 => crate::trap::unexpected(format_args!("interrupt {irq:?} with no handler")),
        raw => {
            // SAFETY: the only non-zero values stored are `IrqHandler`s converted to
            // `usize` by `set_handler`; function pointers round-trip through `usize`.
            let handler = unsafe { core::mem::transmute::<usize, IrqHandler>(raw) };
            handler(irq)
        }
    }
}

/// Spins (interrupts as they are) until `done()` or `limit_us` microseconds of the timer's
/// counter have passed; returns whether `done()` held.
pub fn spin_until(limit_us: u64, done: impl Fn() -> bool) -> bool {
    let end = timer_now() + timer_freq() * limit_us / 1_000_000;
    while !done() && timer_now() < end {
        core::hint::spin_loop();
    }
    done()
}
