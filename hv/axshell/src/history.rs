//! The bounded history of entered lines.

use alloc::collections::VecDeque;
use alloc::string::String;

/// Lines a [`History`] keeps by default.
pub const HISTORY_LINES: usize = 32;

/// The last `capacity` entered lines, oldest first; blank lines and a line equal to the one
/// before it are not recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    lines: VecDeque<String>,
    capacity: usize,
}

impl History {
    /// An empty history keeping at most `capacity` lines (0: keeps none).
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Records `line` unless it is blank or repeats the newest line; the oldest line goes
    /// when the history is full.
    pub fn push(&mut self, line: &str) {
        if self.capacity == 0 || line.trim().is_empty() || self.newest(0) == Some(line) {
            return;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(String::from(line));
    }

    /// The line `back` entries before the newest (0: the newest).
    pub fn newest(&self, back: usize) -> Option<&str> {
        let index = self.lines.len().checked_sub(back + 1)?;
        self.lines.get(index).map(String::as_str)
    }

    /// Lines recorded.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no line is recorded.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The recorded lines, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }
}
