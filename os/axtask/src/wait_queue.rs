//! Tasks waiting for a condition another task or CPU makes true.

use crate::sched::{block_current, resched, wake};
use crate::task::Task;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use axhal::irq;
use spin::Mutex;

/// A queue of blocked tasks.
pub struct WaitQueue {
    q: Mutex<VecDeque<Arc<Task>>>,
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        Self {
            q: Mutex::new(VecDeque::new()),
        }
    }

    /// Blocks the current task until `cond()` holds. `cond` is checked under the queue's
    /// lock, so a notify after the condition became true is never lost.
    pub fn wait_until(&self, cond: impl Fn() -> bool) {
        loop {
            let state = irq::save_and_disable();
            {
                let mut q = self.q.lock();
                if cond() {
                    irq::restore(state);
                    return;
                }
                q.push_back(block_current());
            }
            resched();
            irq::restore(state);
        }
    }

    /// Wakes one waiting task; returns whether there was one.
    pub fn notify_one(&self) -> bool {
        let t = {
            let state = irq::save_and_disable();
            let t = self.q.lock().pop_front();
            irq::restore(state);
            t
        };
        t.map(|t| wake(&t)).is_some()
    }

    /// Wakes every waiting task.
    pub fn notify_all(&self) {
        while self.notify_one() {}
    }
}
