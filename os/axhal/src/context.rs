//! Saved CPU state of a task that is not running, and the switch between tasks.

pub use crate::arch::TaskContext;

/// Saves the current callee-saved state into `prev` and resumes `next`.
///
/// # Safety
/// `prev` must be valid for writes and `next` must hold a context saved by this function or
/// made by [`TaskContext::new`], whose stack is still alive and not in use by any CPU.
#[inline]
pub unsafe fn switch(prev: *mut TaskContext, next: *const TaskContext) {
    // SAFETY: forwarded contract.
    unsafe { crate::arch::context_switch(prev, next) }
}
