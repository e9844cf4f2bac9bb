//! Tasks ("threads"), each pinned to one CPU.

pub use axtask::{
    current, exit, idle_ns, interrupt_after, others_runnable, sleep, yield_now, Task,
};

use alloc::sync::Arc;

/// Runs `f` as a new task named `name`, pinned to CPU `cpu`.
pub fn spawn_on(cpu: usize, name: &str, f: impl FnOnce() + Send + 'static) -> Arc<Task> {
    axtask::spawn_on(cpu, name, f)
}
