//! Exceptions taken by the guest. By default every exception is unexpected: grt prints
//! `FAIL unexpected exception: <what and syndrome>` and powers off. A guest that provokes
//! data faults on purpose (e.g. to check that the hypervisor injects one for an address
//! nobody emulates) registers a handler with [`set_data_fault_handler`]; one that runs
//! instructions the hypervisor must refuse registers [`set_undefined_handler`]. On x86_64
//! every other exception vector (#DE, #GP, ...), on aarch64 every other synchronous
//! exception from EL1 (debug exceptions among them), goes to the handler of
//! `set_exception_handler`.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A data access that faulted: a data abort (aarch64), a load/store access, page or
/// misaligned fault (riscv64), a page fault (x86_64, vector 14).
#[derive(Clone, Copy, Debug)]
pub struct DataFault {
    /// `ESR_EL1` on aarch64, `scause` on riscv64; on x86_64 the vector in bits 32 and up
    /// and the error code in bits 0..32.
    pub syndrome: u64,
    /// The address accessed: `FAR_EL1` on aarch64, `stval` on riscv64, CR2 on x86_64.
    pub addr: u64,
    /// The faulting instruction's address: `ELR_EL1` / `sepc` / RIP.
    pub pc: u64,
    /// Whether the access was a write (ESR WnR on aarch64, a store cause on riscv64, the
    /// error code's W/R bit on x86_64).
    pub is_write: bool,
}

/// What to do after a data fault handler returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Resume after the faulting instruction (a skipped load leaves its destination
    /// register unchanged). On x86_64 grt decodes the instruction's length; one it does not
    /// know (see `grt`'s `x86_64_insn.rs`) is reported as unexpected instead.
    Skip,
    /// Resume at the faulting instruction (the handler fixed the cause).
    Retry,
    /// Report the fault as unexpected and power off.
    Fail,
}

/// A data fault handler.
pub type DataFaultHandler = fn(&DataFault) -> FaultAction;

/// An instruction the CPU refused as undefined (aarch64: ESR_EL1.EC 0, "unknown reason";
/// riscv64: illegal instruction, scause 2; x86_64: #UD, vector 6).
#[derive(Clone, Copy, Debug)]
pub struct Undefined {
    /// `ESR_EL1` on aarch64, `scause` on riscv64, `6 << 32` on x86_64.
    pub syndrome: u64,
    /// The instruction's address: `ELR_EL1` / `sepc` / RIP.
    pub pc: u64,
}

/// An undefined-instruction handler.
pub type UndefinedHandler = fn(&Undefined) -> FaultAction;

/// Any other exception of x86_64 (vectors 0..32 but #PF and #UD, which go to the data fault
/// and undefined-instruction handlers).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub struct Exception {
    /// The vector: 0 #DE, 13 #GP, ...
    pub vector: u8,
    /// The error code the CPU pushed, 0 for vectors without one.
    pub error_code: u64,
    /// RIP the exception returns to: the faulting instruction for a fault, the next one for
    /// a trap (#BP, #OF, #DB of a single step).
    pub rip: u64,
    /// CR2 (0 but for page faults, which do not come here).
    pub cr2: u64,
}

/// Any other synchronous exception of aarch64 taken from EL1 (ESR_EL1.EC neither a data
/// abort nor 0): debug exceptions (breakpoint, software step, watchpoint, BRK), illegal
/// execution state, ...
#[cfg(target_arch = "aarch64")]
#[derive(Clone, Copy, Debug)]
pub struct Exception {
    /// ESR_EL1.
    pub syndrome: u64,
    /// ELR_EL1: the instruction for a fault, the next one to run after a step or a trap.
    pub pc: u64,
    /// FAR_EL1 (a watchpoint's address; UNKNOWN for most classes).
    pub addr: u64,
}

/// An x86_64 or aarch64 exception handler.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub type ExceptionHandler = fn(&Exception) -> FaultAction;

/// One registered handler of type `fn(&T) -> FaultAction`, stored as a `usize` (0: none).
/// Plain loads and stores only: they work with the MMU off, where exclusive accesses might
/// not.
struct HandlerSlot<T>(AtomicUsize, core::marker::PhantomData<fn(&T)>);

impl<T> HandlerSlot<T> {
    const fn new() -> Self {
        Self(AtomicUsize::new(0), core::marker::PhantomData)
    }

    fn set(&self, handler: Option<fn(&T) -> FaultAction>) {
        self.0
            .store(handler.map_or(0, |h| h as usize), Ordering::SeqCst);
    }

    /// The registered handler's action for `event`, or `Fail` when there is none.
    fn call(&self, event: &T) -> FaultAction {
        match self.0.load(Ordering::SeqCst) {
            0 => FaultAction::Fail,
            raw => {
                // SAFETY: the only non-zero values stored are `fn(&T) -> FaultAction`s
                // converted to `usize` by `set`; function pointers round-trip through `usize`.
                let handler = unsafe { core::mem::transmute::<usize, fn(&T) -> FaultAction>(raw) };
                handler(event)
            }
        }
    }
}

static DATA_FAULT_HANDLER: HandlerSlot<DataFault> = HandlerSlot::new();
static UNDEFINED_HANDLER: HandlerSlot<Undefined> = HandlerSlot::new();
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
static EXCEPTION_HANDLER: HandlerSlot<Exception> = HandlerSlot::new();

/// Set while a vCPU handles an exception: a second one on the same vCPU (e.g. the console
/// faulting while the first is reported) powers off at once instead of recursing.
static IN_TRAP: [AtomicBool; crate::smp::MAX_CPUS] =
    [const { AtomicBool::new(false) }; crate::smp::MAX_CPUS];

/// This vCPU's nesting flag (vCPUs beyond the table share the last one).
fn in_trap() -> &'static AtomicBool {
    &IN_TRAP[crate::cpu_id().min(crate::smp::MAX_CPUS - 1)]
}

/// Registers (or with `None` removes) the handler called for data faults.
pub fn set_data_fault_handler(handler: Option<DataFaultHandler>) {
    DATA_FAULT_HANDLER.set(handler);
}

/// Registers (or with `None` removes) the handler called for undefined instructions.
pub fn set_undefined_handler(handler: Option<UndefinedHandler>) {
    UNDEFINED_HANDLER.set(handler);
}

/// Registers (or with `None` removes) the handler called for x86_64 exceptions other than
/// page faults and invalid opcodes, and for aarch64 synchronous exceptions from EL1 other
/// than data aborts and undefined instructions. `Skip` resumes after the instruction at
/// `Exception::rip` (x86_64) / `Exception::pc` (aarch64: 4 bytes on), which is right for a
/// fault (#GP, #DE, ...) but skips one more after a trap (#BP, a software step): a handler
/// of traps returns `Retry`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn set_exception_handler(handler: Option<ExceptionHandler>) {
    EXCEPTION_HANDLER.set(handler);
}

/// Called by the x86_64 and aarch64 trap code for the other exceptions.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn on_exception(exception: &Exception) -> FaultAction {
    EXCEPTION_HANDLER.call(exception)
}

/// Called by the architecture's trap code for a data fault: returns the action of the
/// registered handler, or `Fail` when there is none.
pub(crate) fn on_data_fault(fault: &DataFault) -> FaultAction {
    DATA_FAULT_HANDLER.call(fault)
}

/// Called by the architecture's trap code for an undefined instruction.
pub(crate) fn on_undefined(undef: &Undefined) -> FaultAction {
    UNDEFINED_HANDLER.call(undef)
}

/// Enters exception handling; powers off at once if an exception is already being handled.
pub(crate) fn enter() {
    if in_trap().load(Ordering::SeqCst) {
        crate::power_off();
    }
    in_trap().store(true, Ordering::SeqCst);
}

/// Leaves exception handling (the guest resumes).
pub(crate) fn leave() {
    in_trap().store(false, Ordering::SeqCst);
}

/// Reports an exception nobody handles and powers off.
pub(crate) fn unexpected(what: core::fmt::Arguments) -> ! {
    crate::fail("unexpected exception", what);
    crate::power_off()
}
