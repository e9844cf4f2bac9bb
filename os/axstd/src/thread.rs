//! Tasks ("threads"), each pinned to one CPU.

pub use axtask::{current, exit, others_runnable, sleep, yield_now, Task};

/// Makes this CPU take a timer interrupt `d` from now at the latest, so that code running
/// without interrupts of its own (a vCPU in its guest) comes back to the hypervisor, which
/// can then let other tasks run.
pub fn interrupt_after(d: core::time::Duration) {
    let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    axtask::interrupt_at(axhal::time::now_ns().saturating_add(d));
}

use alloc::sync::Arc;

/// Runs `f` as a new task named `name`, pinned to CPU `cpu`.
pub fn spawn_on(cpu: usize, name: &str, f: impl FnOnce() + Send + 'static) -> Arc<Task> {
    axtask::spawn_on(cpu, name, f)
}
