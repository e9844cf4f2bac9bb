//! Exceptions taken by the guest. By default every exception is unexpected: grt prints
//! `FAIL unexpected exception: <what and syndrome>` and powers off. A guest that provokes
//! data faults on purpose (e.g. to check that the hypervisor injects one for an address
//! nobody emulates) registers a handler with [`set_data_fault_handler`].

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A data access that faulted: a data abort (aarch64) or a load/store access, page or
/// misaligned fault (riscv64).
#[derive(Clone, Copy, Debug)]
pub struct DataFault {
    /// `ESR_EL1` on aarch64, `scause` on riscv64.
    pub syndrome: u64,
    /// The address accessed: `FAR_EL1` on aarch64, `stval` on riscv64.
    pub addr: u64,
    /// The faulting instruction's address: `ELR_EL1` / `sepc`.
    pub pc: u64,
    /// Whether the access was a write (ESR WnR on aarch64, a store cause on riscv64).
    pub is_write: bool,
}

/// What to do after a data fault handler returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Resume after the faulting instruction (a skipped load leaves its destination
    /// register unchanged).
    Skip,
    /// Resume at the faulting instruction (the handler fixed the cause).
    Retry,
    /// Report the fault as unexpected and power off.
    Fail,
}

/// A data fault handler.
pub type DataFaultHandler = fn(&DataFault) -> FaultAction;

/// The registered handler as a `usize` (0: none). Plain loads and stores only: they work
/// with the MMU off, where exclusive accesses might not.
static DATA_FAULT_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Set while an exception is being handled: a second one (e.g. the console faulting while
/// the first is reported) powers off at once instead of recursing.
static IN_TRAP: AtomicBool = AtomicBool::new(false);

/// Registers (or with `None` removes) the handler called for data faults.
pub fn set_data_fault_handler(handler: Option<DataFaultHandler>) {
    let raw = handler.map_or(0, |h| h as usize);
    DATA_FAULT_HANDLER.store(raw, Ordering::SeqCst);
}

fn data_fault_handler() -> Option<DataFaultHandler> {
    match DATA_FAULT_HANDLER.load(Ordering::SeqCst) {
        0 => None,
        // SAFETY: the only non-zero values stored are `DataFaultHandler`s converted to
        // `usize` by `set_data_fault_handler`; function pointers round-trip through `usize`.
        raw => Some(unsafe { core::mem::transmute::<usize, DataFaultHandler>(raw) }),
    }
}

/// Called by the architecture's trap code for a data fault: returns the action of the
/// registered handler, or `Fail` when there is none.
pub(crate) fn on_data_fault(fault: &DataFault) -> FaultAction {
    match data_fault_handler() {
        Some(handler) => handler(fault),
        None => FaultAction::Fail,
    }
}

/// Enters exception handling; powers off at once if an exception is already being handled.
pub(crate) fn enter() {
    if IN_TRAP.load(Ordering::SeqCst) {
        crate::power_off();
    }
    IN_TRAP.store(true, Ordering::SeqCst);
}

/// Leaves exception handling (the guest resumes).
pub(crate) fn leave() {
    IN_TRAP.store(false, Ordering::SeqCst);
}

/// Reports an exception nobody handles and powers off.
pub(crate) fn unexpected(what: core::fmt::Arguments) -> ! {
    crate::fail("unexpected exception", what);
    crate::power_off()
}
