//! Console helpers: split a guest's byte stream into lines and prefix each with its VM.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use crate::ConsoleSink;

/// The longest line [`LineBuffer`] holds, in bytes; a longer line is emitted in pieces of at
/// most this size.
pub const LINE_CAP: usize = 256;

/// Collects bytes and hands out each complete line.
///
/// - A line ends at `\n`; the `\n` is not part of the line.
/// - Every `\r` is dropped (so `\r\n` ends a line like `\n`, and a guest cannot use a bare
///   `\r` to overwrite the start of a line on the terminal).
/// - A line longer than [`LINE_CAP`] bytes is emitted in pieces of at most [`LINE_CAP`]
///   bytes (a line of exactly [`LINE_CAP`] bytes is still one line). An incomplete UTF-8
///   character at a cut is carried over to the next piece rather than split.
/// - Bytes that are not UTF-8 are shown as U+FFFD (`String::from_utf8_lossy`).
///
/// Memory is bounded: at most [`LINE_CAP`] bytes are held, whatever the guest sends.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
}

impl LineBuffer {
    /// An empty buffer (allocates on the first byte).
    pub const fn new() -> Self {
        Self { buf: Vec::new() }
    }

    /// How many bytes of an unfinished line are held.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Adds `bytes`, calling `emit` once for each line they complete.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        for &b in bytes {
            match b {
                b'\n' => {
                    Self::emit_bytes(&self.buf, &mut emit);
                    self.buf.clear();
                }
                b'\r' => {}
                _ => {
                    if self.buf.len() >= LINE_CAP {
                        self.overflow(&mut emit);
                    }
                    if self.buf.capacity() == 0 {
                        self.buf.reserve_exact(LINE_CAP);
                    }
                    self.buf.push(b);
                }
            }
        }
    }

    /// Emits the unfinished line, if any (for example when the VM stops).
    pub fn flush(&mut self, mut emit: impl FnMut(&str)) {
        if !self.buf.is_empty() {
            Self::emit_bytes(&self.buf, &mut emit);
            self.buf.clear();
        }
    }

    /// The buffer is full and another byte of the same line arrives: emit it, keeping an incomplete trailing UTF-8
    /// character for the next piece.
    fn overflow(&mut self, emit: &mut impl FnMut(&str)) {
        let keep = incomplete_utf8_tail(&self.buf);
        let cut = self.buf.len().saturating_sub(keep);
        let (line, _) = self.buf.split_at(cut);
        Self::emit_bytes(line, emit);
        self.buf.drain(..cut);
    }

    fn emit_bytes(bytes: &[u8], emit: &mut impl FnMut(&str)) {
        emit(&String::from_utf8_lossy(bytes));
    }
}

/// How many bytes at the end of `buf` are the start of a UTF-8 character that is not yet
/// complete (0 to 3).
fn incomplete_utf8_tail(buf: &[u8]) -> usize {
    for (i, &b) in buf.iter().rev().take(3).enumerate() {
        let have = i + 1;
        let need = match b {
            0x80..=0xbf => continue, // continuation byte: look further back
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return 0, // ASCII or a byte that never starts a character
        };
        return if need > have { have } else { 0 };
    }
    0
}

/// Appends `line` to `out` so that it cannot act on the terminal: an escape sequence
/// (`ESC [` … final byte, or `ESC` and one byte) is left out whole (colours, cursor moves,
/// screen clears), and any other control character but a tab is shown as `?`, so a guest
/// cannot move the cursor over the hypervisor's lines or its own `[name]` label.
pub fn push_inert(out: &mut String, line: &str) {
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            // ESC and the byte after it go; after `ESC [`, everything to the final byte.
            '\x1b' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\t' => out.push('\t'),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
}

/// A [`ConsoleSink`] that prints each complete line as `"[<prefix>] <line>"`.
///
/// This is how a VM's UART output reaches the hypervisor console: a VM named `hello` that
/// prints `PASS hello\n` produces the line `[hello] PASS hello`. `out` gets one call per line,
/// without a newline. Lines follow the rules of [`LineBuffer`], and are made inert with
/// [`push_inert`].
pub struct PrefixedConsole {
    prefix: String,
    out: Arc<dyn Fn(&str) + Send + Sync>,
    state: Mutex<ConsoleState>,
}

/// Where a VM's raw console bytes go while a terminal is attached to it.
pub type RawConsole = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// The unfinished line, or the raw output that replaces lines.
struct ConsoleState {
    buf: LineBuffer,
    raw: Option<RawConsole>,
    /// Bytes came since the last [`PrefixedConsole::flush_idle`].
    fresh: bool,
    /// How many `flush_idle` calls in a row found nothing new.
    idle_checks: u32,
}

impl PrefixedConsole {
    /// A console whose lines start with `[prefix] ` and go to `out`.
    pub fn new(prefix: impl Into<String>, out: Arc<dyn Fn(&str) + Send + Sync>) -> Self {
        Self {
            prefix: prefix.into(),
            out,
            state: Mutex::new(ConsoleState {
                buf: LineBuffer::new(),
                raw: None,
                fresh: false,
                idle_checks: 0,
            }),
        }
    }

    /// The prefix (the VM's name).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Prints an unfinished line, if there is one (for example when the VM stops).
    pub fn flush(&self) {
        let mut state = self.state.lock();
        state.buf.flush(|line| self.emit(line));
    }

    /// Called periodically: once `checks` calls in a row have found no new bytes, an
    /// unfinished line (a prompt such as `login: ` waiting for input) is printed as a line,
    /// instead of being held until its newline; what follows it starts a new line. Returns
    /// whether it printed one.
    pub fn flush_idle(&self, checks: u32) -> bool {
        let mut state = self.state.lock();
        if core::mem::take(&mut state.fresh) || state.buf.pending() == 0 {
            state.idle_checks = 0;
            return false;
        }
        state.idle_checks += 1;
        if state.idle_checks < checks {
            return false;
        }
        state.idle_checks = 0;
        state.buf.flush(|line| self.emit(line));
        true
    }

    /// With `Some(raw)`, the VM's bytes go to `raw` as they come — no lines, no prefix, not
    /// made inert: a terminal is attached to this VM and shows what it sends (its prompt at
    /// once, its line editing) — starting with the unfinished line held so far. With
    /// `None`, lines again.
    pub fn set_raw(&self, raw: Option<RawConsole>) {
        let mut state = self.state.lock();
        if let Some(raw) = &raw {
            state.buf.flush(|line| raw(line.as_bytes()));
        }
        state.raw = raw;
    }

    fn emit(&self, line: &str) {
        let mut s = String::with_capacity(self.prefix.len() + 3 + line.len());
        s.push('[');
        s.push_str(&self.prefix);
        s.push_str("] ");
        push_inert(&mut s, line);
        (self.out)(&s);
    }
}

impl ConsoleSink for PrefixedConsole {
    fn write(&self, bytes: &[u8]) {
        // The lock is held while `out` runs so lines from several vCPUs stay whole and in
        // order.
        let mut state = self.state.lock();
        state.fresh = true;
        match &state.raw {
            Some(raw) => raw(bytes),
            None => state.buf.push(bytes, |line| self.emit(line)),
        }
    }
}

impl core::fmt::Debug for PrefixedConsole {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PrefixedConsole")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::sync::Mutex as StdMutex;
    use std::vec;

    fn lines_of(chunks: &[&[u8]]) -> (Vec<String>, usize) {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        for c in chunks {
            lb.push(c, |l| out.push(l.to_string()));
        }
        (out, lb.pending())
    }

    #[test]
    fn simple_lines() {
        let (out, pending) = lines_of(&[b"hello\nworld\n"]);
        assert_eq!(out, vec!["hello", "world"]);
        assert_eq!(pending, 0);
    }

    #[test]
    fn crlf_and_bare_cr() {
        let (out, _) = lines_of(&[b"a\r\nb\r\n\r\nc\rd\n"]);
        assert_eq!(out, vec!["a", "b", "", "cd"]);
    }

    #[test]
    fn crlf_split_across_writes() {
        let (out, pending) = lines_of(&[b"abc\r", b"\n", b"de", b"f"]);
        assert_eq!(out, vec!["abc"]);
        assert_eq!(pending, 3);
    }

    #[test]
    fn partial_line_held_until_newline_or_flush() {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        lb.push(b"par", |l| out.push(l.to_string()));
        lb.push(b"tial", |l| out.push(l.to_string()));
        assert!(out.is_empty());
        lb.flush(|l| out.push(l.to_string()));
        assert_eq!(out, vec!["partial"]);
        assert_eq!(lb.pending(), 0);
        // flushing an empty buffer emits nothing
        lb.flush(|l| out.push(l.to_string()));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn empty_lines() {
        let (out, _) = lines_of(&[b"\n\n"]);
        assert_eq!(out, vec!["", ""]);
    }

    #[test]
    fn long_line_is_cut_at_cap() {
        let long = vec![b'x'; LINE_CAP * 2 + 10];
        let (out, pending) = lines_of(&[&long, b"\n"]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].len(), LINE_CAP);
        assert_eq!(out[1].len(), LINE_CAP);
        assert_eq!(out[2].len(), 10);
        assert_eq!(pending, 0);
    }

    #[test]
    fn exactly_cap_then_newline_is_one_line() {
        let long = vec![b'y'; LINE_CAP];
        let (out, _) = lines_of(&[&long, b"\n"]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), LINE_CAP);
        // one more byte before the newline: two pieces
        let long = vec![b'y'; LINE_CAP + 1];
        let (out, _) = lines_of(&[&long, b"\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], "y");
    }

    #[test]
    fn cut_does_not_split_a_utf8_character() {
        // 255 ASCII bytes then a 3-byte character: the cut comes after 256 bytes, in the
        // middle of the character; it must move to the next piece whole.
        let mut bytes = vec![b'a'; LINE_CAP - 1];
        bytes.extend_from_slice("€".as_bytes());
        bytes.extend_from_slice(b"z\n");
        let (out, _) = lines_of(&[&bytes]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], "a".repeat(LINE_CAP - 1));
        assert_eq!(out[1], "€z");
        assert!(!out.iter().any(|l| l.contains('\u{fffd}')));
    }

    #[test]
    fn invalid_utf8_shown_lossily() {
        let (out, _) = lines_of(&[b"ok \xff\xfe end\n", b"\xe2\x82\n", b"\x80\x80\x80\n"]);
        assert_eq!(out[0], "ok \u{fffd}\u{fffd} end");
        assert_eq!(out[1], "\u{fffd}");
        assert!(out[2].chars().all(|c| c == '\u{fffd}'));
    }

    #[test]
    fn invalid_bytes_at_cap_do_not_loop() {
        // continuation bytes only, longer than the cap: must make progress and stay bounded
        let junk = vec![0x80u8; LINE_CAP * 3 + 1];
        let mut lb = LineBuffer::new();
        let mut n = 0;
        lb.push(&junk, |_| n += 1);
        assert_eq!(n, 3);
        assert_eq!(lb.pending(), 1);
        // a lead byte whose character would be complete is not carried
        let mut bytes = vec![b'a'; LINE_CAP - 2];
        bytes.extend_from_slice("é".as_bytes());
        let mut out = Vec::new();
        let mut lb = LineBuffer::new();
        lb.push(&bytes, |l| out.push(l.to_string()));
        assert!(out.is_empty());
        lb.push(b"b", |l| out.push(l.to_string()));
        assert_eq!(out.len(), 1);
        assert!(out[0].ends_with('é'));
        assert_eq!(lb.pending(), 1);
    }

    #[test]
    fn utf8_tail_detection() {
        assert_eq!(incomplete_utf8_tail(b""), 0);
        assert_eq!(incomplete_utf8_tail(b"abc"), 0);
        assert_eq!(incomplete_utf8_tail(b"a\xe2"), 1);
        assert_eq!(incomplete_utf8_tail(b"a\xe2\x82"), 2);
        assert_eq!(incomplete_utf8_tail(b"a\xe2\x82\xac"), 0);
        assert_eq!(incomplete_utf8_tail(b"a\xf0\x9f\x98"), 3);
        assert_eq!(incomplete_utf8_tail(b"\x80\x80\x80"), 0);
        assert_eq!(incomplete_utf8_tail(b"a\xff"), 0);
    }

    type Out = Arc<dyn Fn(&str) + Send + Sync>;

    fn recording() -> (Arc<StdMutex<Vec<String>>>, Out) {
        let lines = Arc::new(StdMutex::new(Vec::new()));
        let l2 = lines.clone();
        let out: Out = Arc::new(move |s: &str| l2.lock().unwrap().push(s.to_string()));
        (lines, out)
    }

    #[test]
    fn prefixed_console_prefixes_each_line() {
        let (lines, out) = recording();
        let con = PrefixedConsole::new("hello", out);
        assert_eq!(con.prefix(), "hello");
        con.write(b"PASS hel");
        assert!(lines.lock().unwrap().is_empty());
        con.write(b"lo\r\nsecond\nthi");
        assert_eq!(
            *lines.lock().unwrap(),
            vec!["[hello] PASS hello", "[hello] second"]
        );
        con.flush();
        assert_eq!(lines.lock().unwrap().last().unwrap(), "[hello] thi");
        assert_eq!(lines.lock().unwrap().len(), 3);
    }

    #[test]
    fn guest_control_characters_cannot_act_on_the_terminal() {
        let mut s = String::new();
        push_inert(
            &mut s,
            "a\x1b[2J\x1b[1;1Hb\x1b[31mred\x1b[0m\x08\x07\x1bc\tz\u{9b}\x7f",
        );
        assert_eq!(s, "abred??\tz??");
        let (lines, out) = recording();
        let con = PrefixedConsole::new("vm", out);
        con.write(b"\x1b[A\x1b[2Kfake\rhv line\n");
        assert_eq!(*lines.lock().unwrap(), vec!["[vm] fakehv line"]);
    }

    #[test]
    fn an_unfinished_line_is_printed_once_idle() {
        let (lines, out) = recording();
        let con = PrefixedConsole::new("vm", out);
        assert!(!con.flush_idle(2));
        con.write(b"login: ");
        // The check right after the bytes sees them as new; then two idle checks.
        assert!(!con.flush_idle(2));
        assert!(!con.flush_idle(2));
        con.write(b"x");
        assert!(!con.flush_idle(2));
        assert!(!con.flush_idle(2));
        assert!(con.flush_idle(2));
        assert!(!con.flush_idle(2));
        con.write(b"root\n");
        assert_eq!(*lines.lock().unwrap(), vec!["[vm] login: x", "[vm] root"]);
    }

    #[test]
    fn raw_output_while_attached() {
        let (lines, out) = recording();
        let con = PrefixedConsole::new("vm", out);
        con.write(b"line\n# ");
        let raw_bytes = Arc::new(StdMutex::new(Vec::new()));
        let sink = raw_bytes.clone();
        con.set_raw(Some(Arc::new(move |b: &[u8]| {
            sink.lock().unwrap().extend_from_slice(b)
        })));
        con.write(b"ls\r\n\x1b[1mbin\x1b[0m\n# ");
        con.set_raw(None);
        con.write(b"after\n");
        assert_eq!(*lines.lock().unwrap(), vec!["[vm] line", "[vm] after"]);
        assert_eq!(
            raw_bytes.lock().unwrap().as_slice(),
            b"# ls\r\n\x1b[1mbin\x1b[0m\n# "
        );
    }

    #[test]
    fn prefixed_console_byte_at_a_time() {
        let (lines, out) = recording();
        let con = PrefixedConsole::new("vm1", out);
        for &b in b"one\ntwo\n" {
            con.write(&[b]);
        }
        assert_eq!(*lines.lock().unwrap(), vec!["[vm1] one", "[vm1] two"]);
    }
}
