//! A minimal VT100 screen model, for checking what the editor writes (feature `screen`;
//! the tests and the fuzz target use it, the hypervisor does not).
//!
//! It understands exactly the output the editor and the shell produce — printable ASCII,
//! CR, LF, backspace, bell, `ESC [ n C`, `ESC [ n D`, `ESC [ K`, `ESC [ H`, `ESC [ 2 J` —
//! and records anything else as [`Screen::bad`], so a test can tell garbage from a redraw.
//! Writing in the last column defers the wrap as a VT100 does.

use alloc::vec;
use alloc::vec::Vec;

use crate::Sink;

/// The screen: rows of characters and the cursor.
#[derive(Clone, Debug)]
pub struct Screen {
    columns: usize,
    rows: Vec<Vec<u8>>,
    row: usize,
    column: usize,
    /// The last write was in the last column: the next printable wraps first.
    pending_wrap: bool,
    escape: Option<Vec<u8>>,
    bells: usize,
    bad: Option<Vec<u8>>,
}

impl Screen {
    /// An empty screen `columns` wide (at least 2), cursor at the top left.
    pub fn new(columns: usize) -> Self {
        Self {
            columns: columns.max(2),
            rows: vec![Vec::new()],
            row: 0,
            column: 0,
            pending_wrap: false,
            escape: None,
            bells: 0,
            bad: None,
        }
    }

    /// The cursor's row (0 at the top; rows scroll into an unbounded list).
    pub fn cursor_row(&self) -> usize {
        self.row
    }

    /// The cursor's column.
    pub fn cursor_column(&self) -> usize {
        self.column
    }

    /// Whether the cursor waits in the last column for a deferred wrap.
    pub fn pending_wrap(&self) -> bool {
        self.pending_wrap
    }

    /// Row `index`, without trailing blanks.
    pub fn row(&self, index: usize) -> &[u8] {
        let row = self.rows.get(index).map_or(&[][..], Vec::as_slice);
        let end = row.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
        &row[..end]
    }

    /// The cursor's row, without trailing blanks.
    pub fn current_row(&self) -> &[u8] {
        self.row(self.row)
    }

    /// Bells rung.
    pub fn bells(&self) -> usize {
        self.bells
    }

    /// The first byte or sequence this model does not understand, if any.
    pub fn bad(&self) -> Option<&[u8]> {
        self.bad.as_deref()
    }

    fn byte(&mut self, byte: u8) {
        if let Some(mut seq) = self.escape.take() {
            seq.push(byte);
            match (seq.len(), byte) {
                (2, b'[') | (3.., b'0'..=b'9') => self.escape = Some(seq),
                (3.., b'C' | b'D' | b'K' | b'H' | b'J') => self.control(&seq),
                _ => self.fail(&seq),
            }
            return;
        }
        match byte {
            0x20..=0x7E => {
                if self.pending_wrap {
                    self.new_row();
                }
                let (row, column) = (self.row, self.column);
                let line = &mut self.rows[row];
                if line.len() <= column {
                    line.resize(column + 1, b' ');
                }
                line[column] = byte;
                if column + 1 == self.columns {
                    self.pending_wrap = true;
                } else {
                    self.column += 1;
                }
            }
            b'\r' => self.move_to(0),
            b'\n' => {
                self.pending_wrap = false;
                self.row += 1;
                if self.rows.len() <= self.row {
                    self.rows.push(Vec::new());
                }
            }
            0x08 => self.move_to(self.column.saturating_sub(1)),
            0x07 => self.bells += 1,
            0x1B => self.escape = Some(vec![0x1B]),
            _ => self.fail(&[byte]),
        }
    }

    fn control(&mut self, seq: &[u8]) {
        let digits = &seq[2..seq.len() - 1];
        let n = digits.iter().fold(0usize, |n, d| {
            n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
        });
        match (seq[seq.len() - 1], digits) {
            (b'C', _) => self.move_to((self.column + n.max(1)).min(self.columns - 1)),
            (b'D', _) => self.move_to(self.column.saturating_sub(n.max(1))),
            (b'K', []) => {
                let (row, column) = (self.row, self.column);
                self.rows[row].truncate(column);
                self.pending_wrap = false;
            }
            (b'H', []) => {
                self.row = 0;
                self.move_to(0);
            }
            (b'J', b"2") => {
                for row in &mut self.rows {
                    row.clear();
                }
            }
            _ => self.fail(seq),
        }
    }

    fn move_to(&mut self, column: usize) {
        self.pending_wrap = false;
        self.column = column;
    }

    fn new_row(&mut self) {
        self.byte(b'\r');
        self.byte(b'\n');
    }

    fn fail(&mut self, seq: &[u8]) {
        if self.bad.is_none() {
            self.bad = Some(Vec::from(seq));
        }
    }
}

impl Sink for Screen {
    fn put(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.byte(byte);
        }
    }
}
