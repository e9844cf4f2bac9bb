//! Task context switch: callee-saved registers x19-x30 and sp.
//!
//! The hypervisor is built soft-float, so no FP/SIMD state belongs to its tasks.

/// Registers a task keeps across a switch.
#[repr(C)]
#[derive(Debug, Default)]
pub struct TaskContext {
    /// x19..x28.
    regs: [u64; 10],
    /// x29 (frame pointer).
    fp: u64,
    /// x30: where `context_switch` returns to.
    lr: u64,
    sp: u64,
}

impl TaskContext {
    /// A context that starts `entry(arg)` on the stack whose top is `stack_top`
    /// (16-byte aligned). `entry` must never return.
    pub fn new(entry: extern "C" fn(usize) -> !, arg: usize, stack_top: usize) -> Self {
        let mut regs = [0; 10];
        regs[0] = arg as u64; // x19
        regs[1] = entry as *const () as usize as u64; // x20
        Self {
            regs,
            fp: 0,
            lr: task_trampoline as *const () as usize as u64,
            sp: (stack_top & !0xf) as u64,
        }
    }
}

extern "C" {
    fn task_trampoline();
    fn axhal_context_switch(prev: *mut TaskContext, next: *const TaskContext);
}

/// See [`crate::context::switch`].
///
/// # Safety
/// As for [`crate::context::switch`].
#[inline]
pub unsafe fn context_switch(prev: *mut TaskContext, next: *const TaskContext) {
    // SAFETY: forwarded contract; the assembly saves and restores only callee-saved state.
    unsafe { axhal_context_switch(prev, next) }
}

core::arch::global_asm!(
    "
    .section .text
    .global axhal_context_switch
    axhal_context_switch:
        stp x19, x20, [x0, #0]
        stp x21, x22, [x0, #16]
        stp x23, x24, [x0, #32]
        stp x25, x26, [x0, #48]
        stp x27, x28, [x0, #64]
        stp x29, x30, [x0, #80]
        mov x9, sp
        str x9, [x0, #96]
        ldp x19, x20, [x1, #0]
        ldp x21, x22, [x1, #16]
        ldp x23, x24, [x1, #32]
        ldp x25, x26, [x1, #48]
        ldp x27, x28, [x1, #64]
        ldp x29, x30, [x1, #80]
        ldr x9, [x1, #96]
        mov sp, x9
        ret

    .global task_trampoline
    task_trampoline:
        mov x0, x19
        blr x20
        brk #0
    "
);
