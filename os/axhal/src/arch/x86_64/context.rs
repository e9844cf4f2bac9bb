//! Task context switch: callee-saved registers rbx, rbp, r12-r15, the stack pointer and
//! the resume address. The image is built soft-float (no SSE state to keep).

/// Registers a task keeps across a switch.
#[repr(C)]
#[derive(Debug, Default)]
pub struct TaskContext {
    rsp: usize,
    rbx: usize,
    rbp: usize,
    r12: usize,
    r13: usize,
    r14: usize,
    r15: usize,
    rip: usize,
}

impl TaskContext {
    /// A context that starts `entry(arg)` on the stack whose top is `stack_top`.
    /// `entry` must never return.
    pub fn new(entry: extern "C" fn(usize) -> !, arg: usize, stack_top: usize) -> Self {
        Self {
            rsp: stack_top & !0xf,
            r12: arg,
            r13: entry as *const () as usize,
            rip: task_trampoline as *const () as usize,
            ..Self::default()
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
        pop     rax                     // the return address: where `prev` resumes
        mov     [rdi + 0], rsp
        mov     [rdi + 8], rbx
        mov     [rdi + 16], rbp
        mov     [rdi + 24], r12
        mov     [rdi + 32], r13
        mov     [rdi + 40], r14
        mov     [rdi + 48], r15
        mov     [rdi + 56], rax
        mov     rsp, [rsi + 0]
        mov     rbx, [rsi + 8]
        mov     rbp, [rsi + 16]
        mov     r12, [rsi + 24]
        mov     r13, [rsi + 32]
        mov     r14, [rsi + 40]
        mov     r15, [rsi + 48]
        jmp     qword ptr [rsi + 56]

    // A new task: rsp is 16-byte aligned here, so `entry` sees the ABI's alignment.
    .global task_trampoline
    task_trampoline:
        mov     rdi, r12
        call    r13
        ud2
    "
);
