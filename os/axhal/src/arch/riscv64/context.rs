//! Task context switch: callee-saved registers ra, sp, s0-s11.

/// Registers a task keeps across a switch.
#[repr(C)]
#[derive(Debug, Default)]
pub struct TaskContext {
    ra: usize,
    sp: usize,
    /// s0..s11.
    s: [usize; 12],
}

impl TaskContext {
    /// A context that starts `entry(arg)` on the stack whose top is `stack_top`.
    /// `entry` must never return.
    pub fn new(entry: extern "C" fn(usize) -> !, arg: usize, stack_top: usize) -> Self {
        let mut s = [0; 12];
        s[0] = arg;
        s[1] = entry as *const () as usize;
        Self {
            ra: task_trampoline as *const () as usize,
            sp: stack_top & !0xf,
            s,
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
        sd ra, 0(a0)
        sd sp, 8(a0)
        sd s0, 16(a0)
        sd s1, 24(a0)
        sd s2, 32(a0)
        sd s3, 40(a0)
        sd s4, 48(a0)
        sd s5, 56(a0)
        sd s6, 64(a0)
        sd s7, 72(a0)
        sd s8, 80(a0)
        sd s9, 88(a0)
        sd s10, 96(a0)
        sd s11, 104(a0)
        ld ra, 0(a1)
        ld sp, 8(a1)
        ld s0, 16(a1)
        ld s1, 24(a1)
        ld s2, 32(a1)
        ld s3, 40(a1)
        ld s4, 48(a1)
        ld s5, 56(a1)
        ld s6, 64(a1)
        ld s7, 72(a1)
        ld s8, 80(a1)
        ld s9, 88(a1)
        ld s10, 96(a1)
        ld s11, 104(a1)
        ret

    .global task_trampoline
    task_trampoline:
        mv a0, s0
        jalr s1
        ebreak
    "
);
