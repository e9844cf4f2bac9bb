//! Tasks waiting for a condition another task or CPU makes true.

use crate::sched::{arm_wakeup, block_current, current, resched, wake};
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

/// Takes the current task out of `q`: a task woken by something else than this queue's
/// notify (its deadline, a spurious wake-up) is still in it, and would stay there, one more
/// entry at each such wait, until the next notify.
fn forget_current(q: &mut VecDeque<Arc<Task>>) {
    let me = current();
    q.retain(|t| !Arc::ptr_eq(t, &me));
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
                forget_current(&mut q);
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

    /// Blocks the current task until `cond()` holds or monotonic time reaches
    /// `deadline_ns` (`None`: no deadline). Returns whether `cond()` held. `cond` is checked
    /// under the queue's lock, as in [`WaitQueue::wait_until`].
    pub fn wait_until_deadline(&self, cond: impl Fn() -> bool, deadline_ns: Option<u64>) -> bool {
        loop {
            let state = irq::save_and_disable();
            {
                let mut q = self.q.lock();
                forget_current(&mut q);
                if cond() {
                    irq::restore(state);
                    return true;
                }
                if deadline_ns.is_some_and(|d| axhal::time::now_ns() >= d) {
                    irq::restore(state);
                    return false;
                }
                let me = block_current();
                if let Some(d) = deadline_ns {
                    arm_wakeup(d, me.clone());
                }
                q.push_back(me);
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
