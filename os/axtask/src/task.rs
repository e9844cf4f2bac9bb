//! The task object.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use axhal::context::TaskContext;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Unique id of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TaskId(pub u64);

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TaskState {
    /// On its CPU now.
    Running = 0,
    /// In its CPU's run queue.
    Ready = 1,
    /// Waiting for a wake-up (wait queue or timer).
    Blocked = 2,
    /// Finished; its stack is freed once another task runs.
    Exited = 3,
}

/// A task: a stack, saved registers, and the CPU it is pinned to.
pub struct Task {
    id: TaskId,
    name: String,
    cpu: usize,
    state: AtomicU8,
    /// This CPU's idle loop ([`crate::run_idle`]): runnable whenever nothing else is, so it
    /// does not count as a task waiting for the CPU.
    idle: AtomicBool,
    /// Saved registers while not running. Only the task's own CPU touches it, with
    /// interrupts masked, during a switch.
    pub(crate) ctx: UnsafeCell<TaskContext>,
    /// The code to run, taken once when the task first starts.
    pub(crate) entry: UnsafeCell<Option<Box<dyn FnOnce() + Send>>>,
    /// `None` for a CPU's boot task, which runs on the boot stack.
    _stack: Option<Vec<u128>>,
}

// SAFETY: the UnsafeCell fields are only accessed by the CPU the task is pinned to, with
// interrupts masked (see `sched`), so there is never concurrent access.
unsafe impl Sync for Task {}
// SAFETY: as above; moving the Arc between CPUs does not touch the cells.
unsafe impl Send for Task {}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Task {
    pub(crate) fn new(
        name: String,
        cpu: usize,
        entry: Option<Box<dyn FnOnce() + Send>>,
        stack: Option<Vec<u128>>,
        ctx: TaskContext,
        state: TaskState,
    ) -> Self {
        Self {
            id: TaskId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            name,
            cpu,
            state: AtomicU8::new(state as u8),
            idle: AtomicBool::new(false),
            ctx: UnsafeCell::new(ctx),
            entry: UnsafeCell::new(entry),
            _stack: stack,
        }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CPU the task is pinned to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Current state.
    pub fn state(&self) -> TaskState {
        match self.state.load(Ordering::Acquire) {
            0 => TaskState::Running,
            1 => TaskState::Ready,
            2 => TaskState::Blocked,
            _ => TaskState::Exited,
        }
    }

    /// Whether this is a CPU's idle loop.
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    pub(crate) fn set_idle(&self) {
        self.idle.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_state(&self, s: TaskState) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Moves `from` to `to` if the task is in `from`; returns whether it did.
    pub(crate) fn transition(&self, from: TaskState, to: TaskState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}
