//! A CPU's pending timer events, ordered by deadline.

use alloc::collections::BinaryHeap;
use core::cmp::Ordering;

struct Entry<T> {
    deadline: u64,
    /// Insertion order, so events with equal deadlines fire first-in first-out.
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse so the earliest deadline is on top.
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// Events that fire at a deadline (nanoseconds of monotonic time).
pub struct TimerList<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

impl<T> Default for TimerList<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerList<T> {
    /// No events.
    pub const fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Adds `item` to fire at `deadline`. Returns whether it is now the earliest event (the
    /// hardware timer must then be re-armed).
    pub fn add(&mut self, deadline: u64, item: T) -> bool {
        self.seq += 1;
        self.heap.push(Entry {
            deadline,
            seq: self.seq,
            item,
        });
        self.next_deadline() == Some(deadline)
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.deadline)
    }

    /// Removes and returns one event whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: u64) -> Option<T> {
        if self.heap.peek()?.deadline <= now {
            self.heap.pop().map(|e| e.item)
        } else {
            None
        }
    }

    /// Drops every event whose item `keep` refuses.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.heap.retain(|e| keep(&e.item));
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn fires_in_deadline_order() {
        let mut t = TimerList::new();
        assert!(t.add(300, "c"));
        assert!(t.add(100, "a"));
        assert!(!t.add(200, "b"));
        assert_eq!(t.next_deadline(), Some(100));
        assert_eq!(t.pop_expired(99), None);
        let fired: Vec<_> = core::iter::from_fn(|| t.pop_expired(250)).collect();
        assert_eq!(fired, ["a", "b"]);
        assert_eq!(t.next_deadline(), Some(300));
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_expired(u64::MAX), Some("c"));
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn retain_drops_refused_events_and_keeps_the_order() {
        let mut t = TimerList::new();
        for (d, i) in [(300, 1), (100, 2), (200, 1), (50, 3)] {
            t.add(d, i);
        }
        t.retain(|&i| i != 1);
        assert_eq!(t.len(), 2);
        assert_eq!(t.next_deadline(), Some(50));
        let fired: Vec<_> = core::iter::from_fn(|| t.pop_expired(u64::MAX)).collect();
        assert_eq!(fired, [3, 2]);
    }

    #[test]
    fn equal_deadlines_are_fifo() {
        let mut t = TimerList::default();
        for i in 0..5 {
            t.add(42, i);
        }
        let fired: Vec<_> = core::iter::from_fn(|| t.pop_expired(42)).collect();
        assert_eq!(fired, [0, 1, 2, 3, 4]);
    }
}
