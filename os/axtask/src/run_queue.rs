//! A CPU's queue of runnable tasks: first in, first out.

use alloc::collections::VecDeque;

/// Runnable tasks in the order they became runnable.
pub struct RunQueue<T> {
    q: VecDeque<T>,
}

impl<T> Default for RunQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> RunQueue<T> {
    /// An empty queue.
    pub const fn new() -> Self {
        Self { q: VecDeque::new() }
    }

    /// Appends a task that became runnable.
    pub fn push(&mut self, t: T) {
        self.q.push_back(t);
    }

    /// Takes the task that has waited longest.
    pub fn pop(&mut self) -> Option<T> {
        self.q.pop_front()
    }

    /// Removes and returns the first task matching `pred`.
    pub fn remove(&mut self, pred: impl Fn(&T) -> bool) -> Option<T> {
        let i = self.q.iter().position(pred)?;
        self.q.remove(i)
    }

    /// Whether some runnable task matches `pred`.
    pub fn any(&self, pred: impl Fn(&T) -> bool) -> bool {
        self.q.iter().any(pred)
    }

    /// Number of runnable tasks.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Whether nothing is runnable.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn fifo_and_round_robin() {
        let mut rq = RunQueue::new();
        for t in ["a", "b", "c"] {
            rq.push(t);
        }
        // A yielding task goes to the back: three rounds visit every task in turn.
        let mut order = Vec::new();
        for _ in 0..6 {
            let t = rq.pop().unwrap();
            order.push(t);
            rq.push(t);
        }
        assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
        assert_eq!(rq.len(), 3);
    }

    #[test]
    fn remove_and_empty() {
        let mut rq = RunQueue::default();
        assert!(rq.is_empty());
        assert_eq!(rq.pop(), None::<u32>);
        rq.push(1);
        rq.push(2);
        rq.push(3);
        assert!(rq.any(|&t| t == 2));
        assert!(!rq.any(|&t| t > 3));
        assert_eq!(rq.remove(|&t| t == 2), Some(2));
        assert!(!rq.any(|&t| t == 2));
        assert_eq!(rq.remove(|&t| t == 9), None);
        assert_eq!(rq.pop(), Some(1));
        assert_eq!(rq.pop(), Some(3));
        assert!(rq.is_empty());
    }
}
