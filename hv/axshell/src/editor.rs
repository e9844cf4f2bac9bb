//! The line editor: one received byte at a time in, echo and redraw bytes out.
//!
//! The line lives on the prompt's terminal row: its longest length keeps prompt and line
//! within `columns - 1` columns, so the cursor never reaches the last column, where VT100
//! terminals defer the wrap and relative cursor moves stop being exact. Every redraw is
//! then a short sequence of backspaces, `ESC [ n C` / `ESC [ n D`, text and `ESC [ K`.
//!
//! Keys (xterm/VT100 and Emacs-style):
//!
//! | key | bytes | effect |
//! |---|---|---|
//! | printable ASCII | 0x20..=0x7E | inserted at the cursor (a bell when the line is full) |
//! | Backspace | 0x08, 0x7F | deletes before the cursor |
//! | Delete | `ESC [ 3 ~` | deletes at the cursor |
//! | Left / Right | `ESC [ D` / `ESC [ C`, `ESC O D/C`, Ctrl-B / Ctrl-F | moves one character |
//! | Home / End | `ESC [ H/F`, `ESC O H/F`, `ESC [ 1~/7~` / `4~/8~`, Ctrl-A / Ctrl-E | start / end of line |
//! | Up / Down | `ESC [ A/B`, `ESC O A/B`, Ctrl-P / Ctrl-N | older / newer history line |
//! | Ctrl-U / Ctrl-K | 0x15 / 0x0B | deletes before / from the cursor |
//! | Ctrl-W | 0x17 | deletes the word before the cursor |
//! | Ctrl-C | 0x03 | drops the line ([`Event::Interrupt`]) |
//! | Ctrl-L | 0x0C | clears the screen, redraws prompt and line |
//! | Ctrl-D | 0x04 | on an empty line [`Event::EndOfInput`], else deletes at the cursor |
//! | Enter | CR, LF, CR LF | ends the line (CR LF once) |
//!
//! Any other escape sequence (CSI up to its final byte, SS3 and one following byte, or
//! `ESC` and one byte) is swallowed whole; a control byte inside a sequence ends it and
//! then acts as itself. Other control bytes and bytes 0x80..=0xFF (UTF-8 included) are
//! ignored.
//!
//! Output that is not the editor's (a log line) goes between [`Editor::hide`] and
//! [`Editor::show`], so it never lands in the middle of the line being typed.

use alloc::string::String;
use alloc::vec::Vec;

use crate::history::{History, HISTORY_LINES};
use crate::Sink;

/// Terminal width assumed by [`Editor::new`].
pub const DEFAULT_COLUMNS: usize = 80;

/// What a byte completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Enter: the line typed (printable ASCII only; possibly empty).
    Line(String),
    /// Ctrl-C: the line was dropped.
    Interrupt,
    /// Ctrl-D on an empty line.
    EndOfInput,
}

/// Where the editor is inside an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    /// Not in one.
    None,
    /// After `ESC`.
    Start,
    /// In a control sequence (`ESC [`): its first numeric parameter so far, and whether
    /// anything else (another parameter, a private marker) came.
    Csi { param: u16, other: bool },
    /// After `ESC O`.
    Ss3,
}

/// A key that is a cursor movement or history step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Left,
    Right,
    Home,
    End,
    Delete,
    Up,
    Down,
}

/// The line editor. See the [module documentation](self) for the keys.
#[derive(Clone, Debug)]
pub struct Editor {
    prompt: String,
    max_len: usize,
    line: Vec<u8>,
    cursor: usize,
    escape: Escape,
    after_cr: bool,
    history: History,
    /// While browsing the history: how far back (0: the newest line).
    browsing: Option<usize>,
    /// The line being edited when browsing started.
    draft: Vec<u8>,
}

impl Editor {
    /// An editor for a [`DEFAULT_COLUMNS`]-wide terminal, keeping [`HISTORY_LINES`] lines.
    pub fn new(prompt: &str) -> Self {
        Self::with_columns(prompt, DEFAULT_COLUMNS, HISTORY_LINES)
    }

    /// An editor for a `columns`-wide terminal keeping `history` lines. Control and
    /// non-ASCII characters of `prompt` are left out. The longest line is
    /// `columns - prompt - 1` characters; a terminal narrower than the prompt and two
    /// columns is taken to be that wide (its lines wrap, nothing else goes wrong).
    pub fn with_columns(prompt: &str, columns: usize, history: usize) -> Self {
        let prompt: String = prompt.chars().filter(|c| is_printable(*c as u32)).collect();
        let max_len = columns.max(prompt.len() + 2) - prompt.len() - 1;
        Self {
            prompt,
            max_len,
            line: Vec::new(),
            cursor: 0,
            escape: Escape::None,
            after_cr: false,
            history: History::new(history),
            browsing: None,
            draft: Vec::new(),
        }
    }

    /// Writes the prompt (the start of a new line of input).
    pub fn prompt(&self, out: &mut dyn Sink) {
        out.put(self.prompt.as_bytes());
    }

    /// Erases prompt and line from the terminal's row, leaving the cursor at its start,
    /// so other output can be written there; [`show`](Self::show) brings them back.
    pub fn hide(&self, out: &mut dyn Sink) {
        out.put(b"\r\x1b[K");
    }

    /// Writes prompt and line again (after [`hide`](Self::hide) and other output ending
    /// with a line end), the cursor where it was in the line.
    pub fn show(&self, out: &mut dyn Sink) {
        self.prompt(out);
        out.put(&self.line);
        move_left(self.line.len() - self.cursor, out);
    }

    /// The prompt as written.
    pub fn prompt_text(&self) -> &str {
        &self.prompt
    }

    /// The line being edited (printable ASCII only).
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// The cursor's position in [`line`](Self::line) (0..=its length).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The longest line accepted.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The lines entered so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Takes one received byte; echoes or redraws through `out`; returns what it
    /// completed, if anything.
    pub fn feed(&mut self, byte: u8, out: &mut dyn Sink) -> Option<Event> {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        if self.escape != Escape::None && (byte < 0x20 && byte != 0x1B || byte == 0x7F) {
            // A control byte ends a sequence and then acts as itself (Escape, then Enter
            // or Ctrl-C, does what the second key says).
            self.escape = Escape::None;
        }
        match self.escape {
            Escape::None => {}
            Escape::Start => {
                self.escape = match byte {
                    b'[' => Escape::Csi {
                        param: 0,
                        other: false,
                    },
                    b'O' => Escape::Ss3,
                    0x1B => Escape::Start,
                    _ => Escape::None,
                };
                return None;
            }
            Escape::Csi { param, other } => {
                self.escape = match byte {
                    b'0'..=b'9' if !other => Escape::Csi {
                        param: param
                            .saturating_mul(10)
                            .saturating_add(u16::from(byte - b'0')),
                        other,
                    },
                    0x20..=0x3F => Escape::Csi { param, other: true },
                    0x1B => Escape::Start,
                    _ => Escape::None,
                };
                if (0x40..=0x7E).contains(&byte) {
                    if let Some(key) = csi_key(byte, param) {
                        self.key(key, out);
                    }
                }
                return None;
            }
            Escape::Ss3 => {
                self.escape = if byte == 0x1B {
                    Escape::Start
                } else {
                    Escape::None
                };
                if let Some(key) = ss3_key(byte) {
                    self.key(key, out);
                }
                return None;
            }
        }
        match byte {
            b'\r' => {
                self.after_cr = true;
                return Some(self.enter(out));
            }
            b'\n' if !after_cr => return Some(self.enter(out)),
            0x1B => self.escape = Escape::Start,
            0x20..=0x7E => self.insert(byte, out),
            0x08 | 0x7F => self.backspace(out),
            0x01 => self.key(Key::Home, out),
            0x02 => self.key(Key::Left, out),
            0x05 => self.key(Key::End, out),
            0x06 => self.key(Key::Right, out),
            0x0E => self.key(Key::Down, out),
            0x10 => self.key(Key::Up, out),
            0x0B => self.kill_to_end(out),
            0x15 => self.kill_to_start(out),
            0x17 => self.kill_word(out),
            0x0C => self.clear_screen(out),
            0x03 => {
                out.put(b"^C\r\n");
                self.reset_line();
                return Some(Event::Interrupt);
            }
            0x04 if self.line.is_empty() => return Some(Event::EndOfInput),
            0x04 => self.key(Key::Delete, out),
            _ => {}
        }
        None
    }

    /// Enter: the line is complete.
    fn enter(&mut self, out: &mut dyn Sink) -> Event {
        out.put(b"\r\n");
        let line: String = self.line.iter().map(|&b| char::from(b)).collect();
        self.history.push(&line);
        self.reset_line();
        Event::Line(line)
    }

    /// Empties the line and stops browsing.
    fn reset_line(&mut self) {
        self.line.clear();
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
    }

    fn insert(&mut self, byte: u8, out: &mut dyn Sink) {
        if self.line.len() >= self.max_len {
            out.put(b"\x07");
            return;
        }
        let at = self.cursor;
        let old_len = self.line.len();
        self.line.insert(at, byte);
        self.cursor = at + 1;
        self.redraw(at, at, old_len, out);
    }

    fn backspace(&mut self, out: &mut dyn Sink) {
        if self.cursor == 0 {
            return;
        }
        let from = self.cursor;
        let old_len = self.line.len();
        self.line.remove(from - 1);
        self.cursor = from - 1;
        self.redraw(from, from - 1, old_len, out);
    }

    fn kill_to_end(&mut self, out: &mut dyn Sink) {
        if self.cursor < self.line.len() {
            self.line.truncate(self.cursor);
            out.put(b"\x1b[K");
        }
    }

    fn kill_to_start(&mut self, out: &mut dyn Sink) {
        let from = self.cursor;
        if from == 0 {
            return;
        }
        let old_len = self.line.len();
        self.line.drain(..from);
        self.cursor = 0;
        self.redraw(from, 0, old_len, out);
    }

    fn kill_word(&mut self, out: &mut dyn Sink) {
        let from = self.cursor;
        let mut start = from;
        while start > 0 && self.line[start - 1] == b' ' {
            start -= 1;
        }
        while start > 0 && self.line[start - 1] != b' ' {
            start -= 1;
        }
        if start == from {
            return;
        }
        let old_len = self.line.len();
        self.line.drain(start..from);
        self.cursor = start;
        self.redraw(from, start, old_len, out);
    }

    fn clear_screen(&mut self, out: &mut dyn Sink) {
        out.put(b"\x1b[H\x1b[2J");
        self.show(out);
    }

    fn key(&mut self, key: Key, out: &mut dyn Sink) {
        let len = self.line.len();
        match key {
            Key::Left if self.cursor > 0 => {
                self.cursor -= 1;
                out.put(b"\x08");
            }
            Key::Right if self.cursor < len => {
                out.put(&self.line[self.cursor..=self.cursor]);
                self.cursor += 1;
            }
            Key::Home => {
                move_left(self.cursor, out);
                self.cursor = 0;
            }
            Key::End => {
                move_right(len - self.cursor, out);
                self.cursor = len;
            }
            Key::Delete if self.cursor < len => {
                self.line.remove(self.cursor);
                self.redraw(self.cursor, self.cursor, len, out);
            }
            Key::Up => {
                let back = self.browsing.map_or(0, |b| b + 1);
                match self.history.newest(back) {
                    Some(line) => {
                        let line = Vec::from(line.as_bytes());
                        if self.browsing.is_none() {
                            self.draft = core::mem::take(&mut self.line);
                        }
                        self.browsing = Some(back);
                        self.replace(line, len, out);
                    }
                    None => out.put(b"\x07"),
                }
            }
            Key::Down => match self.browsing {
                Some(0) => {
                    self.browsing = None;
                    let draft = core::mem::take(&mut self.draft);
                    self.replace(draft, len, out);
                }
                Some(back) => {
                    self.browsing = Some(back - 1);
                    let line = self.history.newest(back - 1).unwrap_or_default();
                    self.replace(Vec::from(line.as_bytes()), len, out);
                }
                None => out.put(b"\x07"),
            },
            Key::Left | Key::Right | Key::Delete => {}
        }
    }

    /// Shows `line` instead of the current one (whose length was `old_len`), cursor at
    /// its end. A history line longer than the longest line (a narrower editor never
    /// makes one) is cut.
    fn replace(&mut self, mut line: Vec<u8>, old_len: usize, out: &mut dyn Sink) {
        line.truncate(self.max_len);
        let from = self.cursor;
        self.line = line;
        self.cursor = self.line.len();
        self.redraw(from, 0, old_len, out);
    }

    /// Redraws after an edit: the terminal's cursor is at `from`, the line changed from
    /// `start` on and was `old_len` long; leaves the terminal's cursor at `self.cursor`.
    fn redraw(&self, from: usize, start: usize, old_len: usize, out: &mut dyn Sink) {
        move_left(from - start, out);
        out.put(&self.line[start..]);
        if self.line.len() < old_len {
            out.put(b"\x1b[K");
        }
        move_left(self.line.len() - self.cursor, out);
    }
}

/// Whether `c` may be typed into a line or shown in the prompt: printable ASCII.
fn is_printable(c: u32) -> bool {
    (0x20..=0x7E).contains(&c)
}

/// The key a control sequence with final byte `last` and first parameter `param` is.
fn csi_key(last: u8, param: u16) -> Option<Key> {
    Some(match (last, param) {
        (b'A', _) => Key::Up,
        (b'B', _) => Key::Down,
        (b'C', _) => Key::Right,
        (b'D', _) => Key::Left,
        (b'H', _) | (b'~', 1 | 7) => Key::Home,
        (b'F', _) | (b'~', 4 | 8) => Key::End,
        (b'~', 3) => Key::Delete,
        _ => return None,
    })
}

/// The key `ESC O` followed by `last` is (application cursor-key mode).
fn ss3_key(last: u8) -> Option<Key> {
    Some(match last {
        b'A' => Key::Up,
        b'B' => Key::Down,
        b'C' => Key::Right,
        b'D' => Key::Left,
        b'H' => Key::Home,
        b'F' => Key::End,
        _ => return None,
    })
}

/// Moves the terminal's cursor `n` columns left: a backspace for one, `ESC [ n D` else.
fn move_left(n: usize, out: &mut dyn Sink) {
    match n {
        0 => {}
        1 => out.put(b"\x08"),
        n => csi(n, b'D', out),
    }
}

/// Moves the terminal's cursor `n` columns right (`ESC [ n C`).
fn move_right(n: usize, out: &mut dyn Sink) {
    match n {
        0 => {}
        1 => out.put(b"\x1b[C"),
        n => csi(n, b'C', out),
    }
}

/// Writes `ESC [ n final`.
fn csi(n: usize, last: u8, out: &mut dyn Sink) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(b"\x1b[");
    out.put(&digits[at..]);
    out.put(&[last]);
}
