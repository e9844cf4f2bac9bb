//! Tasks for the hypervisor.
//!
//! Every task is pinned to one CPU and lives in that CPU's run queue while runnable. Tasks
//! switch cooperatively: on [`yield_now`], [`sleep`], a [`WaitQueue`] wait, or exit. Waking a
//! task from another CPU pushes it to its own CPU's queue and sends that CPU an IPI; timers
//! (sleep deadlines) are kept per CPU and drive a one-shot hardware timer. A CPU with nothing
//! to run waits for interrupts.
//!
//! The queue and timer-list logic ([`RunQueue`], [`TimerList`]) is portable and unit-tested on
//! the host; the scheduler itself runs only on the target.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod run_queue;
mod timers;

pub use run_queue::RunQueue;
pub use timers::TimerList;

#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod task;
#[cfg(target_os = "none")]
mod wait_queue;

#[cfg(target_os = "none")]
pub use sched::{
    current, exit, idle_ns, init_cpu, interrupt_after, others_runnable, run_idle, sleep,
    sleep_until, spawn_on, yield_now,
};
#[cfg(target_os = "none")]
pub use task::{Task, TaskId, TaskState};
#[cfg(target_os = "none")]
pub use wait_queue::WaitQueue;
