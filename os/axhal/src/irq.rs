//! Interrupt masking and dispatch.
//!
//! The architecture's trap code acknowledges an interrupt and calls [`dispatch`] with what it
//! was; handlers are plain functions registered once at boot.

use crate::arch;
use core::sync::atomic::{AtomicUsize, Ordering};

/// What interrupted the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqSource {
    /// This CPU's hypervisor timer.
    Timer,
    /// An inter-processor interrupt from another CPU.
    Ipi,
    /// A device interrupt with its controller number (GIC INTID, PLIC source, x86 GSI).
    Device(usize),
}

static TIMER_HANDLER: AtomicUsize = AtomicUsize::new(0);
static IPI_HANDLER: AtomicUsize = AtomicUsize::new(0);
static DEVICE_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Sets the function called on every timer interrupt.
pub fn set_timer_handler(f: fn()) {
    TIMER_HANDLER.store(f as usize, Ordering::Release);
}

/// Sets the function called on every IPI.
pub fn set_ipi_handler(f: fn()) {
    IPI_HANDLER.store(f as usize, Ordering::Release);
}

/// Sets the function called for device interrupts (with the controller's number); it
/// returns whether it handled the interrupt. It runs in interrupt context: it must not take
/// locks that code with interrupts enabled holds.
pub fn set_device_handler(f: fn(usize) -> bool) {
    DEVICE_HANDLER.store(f as usize, Ordering::Release);
}

fn call_device(irq: usize) -> bool {
    let f = DEVICE_HANDLER.load(Ordering::Acquire);
    if f == 0 {
        return false;
    }
    // SAFETY: the slot only ever holds 0 or a `fn(usize) -> bool` stored by the setter.
    let f: fn(usize) -> bool = unsafe { core::mem::transmute::<usize, fn(usize) -> bool>(f) };
    f(irq)
}

fn call(slot: &AtomicUsize) -> bool {
    let f = slot.load(Ordering::Acquire);
    if f == 0 {
        return false;
    }
    // SAFETY: the slot only ever holds 0 or a `fn()` stored by the setters above.
    let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(f) };
    f();
    true
}

/// Runs the handler for `src`; called by the architecture's interrupt path with interrupts
/// masked.
pub(crate) fn dispatch(src: IrqSource) {
    let handled = match src {
        IrqSource::Timer => call(&TIMER_HANDLER),
        IrqSource::Ipi => call(&IPI_HANDLER),
        IrqSource::Device(irq) => call_device(irq),
    };
    if !handled {
        log::warn!("cpu {}: unhandled interrupt {:?}", crate::cpu::id(), src);
        if src == IrqSource::Timer {
            // Nobody wants the timer: silence it rather than take it again at once.
            arch::set_timer_deadline(u64::MAX);
        }
    }
}

/// Takes device interrupt `irq` on logical CPU `cpu` only (a device given to a guest: its
/// interrupt comes to the CPU of the vCPU that handles it). aarch64: a GIC SPI routed to
/// that CPU; riscv64: a PLIC source enabled for that hart's S-mode context and no other;
/// x86_64: the I/O APIC input (GSI) sent to that CPU's local APIC.
/// It stays masked or unmasked as it was ([`set_device_enabled`]).
pub fn route_device(irq: usize, cpu: usize) {
    arch::route_device_irq(irq, cpu)
}

/// Unmasks or masks device interrupt `irq` at the host's interrupt controller. aarch64: the
/// SPI's enable bit at the distributor; riscv64: the PLIC source's priority (1 or 0);
/// x86_64: the mask bit of the I/O APIC input's redirection entry. A
/// level-triggered device that asserts its line while masked interrupts once unmasked.
pub fn set_device_enabled(irq: usize, enabled: bool) {
    arch::set_device_irq_enabled(irq, enabled)
}

/// Sends an IPI to logical CPU `cpu`.
pub fn send_ipi(cpu: usize) {
    arch::send_ipi(cpu)
}

/// Unmasks interrupts on this CPU.
#[inline]
pub fn enable() {
    arch::irq_enable()
}

/// Masks interrupts on this CPU.
#[inline]
pub fn disable() {
    arch::irq_disable()
}

/// Takes the interrupts that became pending while they were masked (their handlers run
/// now), then masks interrupts again.
#[inline]
pub fn take_pending() {
    arch::irq_take_pending()
}

/// Masks interrupts and returns the previous state for [`restore`].
#[inline]
pub fn save_and_disable() -> usize {
    arch::irq_save_and_disable()
}

/// Restores the state returned by [`save_and_disable`].
#[inline]
pub fn restore(state: usize) {
    arch::irq_restore(state)
}
