//! The line editor: every key, on a VT100 screen model (what a person sees), and history.

use axshell::screen::Screen;
use axshell::{Editor, Event};

/// An editor on an 80-column screen, with everything written so far shown.
struct Term {
    editor: Editor,
    screen: Screen,
    events: Vec<Event>,
    out: Vec<u8>,
}

impl Term {
    fn new() -> Self {
        Self::with(Editor::new("axvisor> "), 80)
    }

    fn with(editor: Editor, columns: usize) -> Self {
        let mut screen = Screen::new(columns);
        editor.prompt(&mut screen);
        Self {
            editor,
            screen,
            events: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Types `bytes`; checks after each that the screen shows prompt and line with the
    /// cursor in place.
    fn typ(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            let mut out = Vec::new();
            let event = self.editor.feed(b, &mut out);
            self.screen.put_all(&out);
            self.out.extend_from_slice(&out);
            assert_eq!(self.screen.bad(), None, "garbage output {out:?}");
            if let Some(event) = event {
                // As the shell does: a new prompt after a line.
                if event != Event::EndOfInput {
                    self.editor.prompt(&mut self.screen);
                }
                self.events.push(event);
            }
            self.check_row();
        }
        self
    }

    fn check_row(&self) {
        let mut want = self.editor.prompt_text().as_bytes().to_vec();
        want.extend_from_slice(self.editor.line());
        let end = want.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
        assert_eq!(
            String::from_utf8_lossy(self.screen.current_row()),
            String::from_utf8_lossy(&want[..end])
        );
        assert_eq!(
            self.screen.cursor_column(),
            self.editor.prompt_text().len() + self.editor.cursor()
        );
        assert!(!self.screen.pending_wrap());
    }

    fn line(&self) -> &str {
        std::str::from_utf8(self.editor.line()).unwrap()
    }

    fn take_out(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn enter(&mut self) -> String {
        self.events.clear();
        self.typ(b"\r");
        match self.events.pop() {
            Some(Event::Line(line)) => line,
            other => panic!("no line: {other:?}"),
        }
    }
}

/// Lets the tests feed a whole buffer.
trait PutAll {
    fn put_all(&mut self, bytes: &[u8]);
}

impl PutAll for Screen {
    fn put_all(&mut self, bytes: &[u8]) {
        axshell::Sink::put(self, bytes);
    }
}

#[test]
fn typing_echoes_and_enter_returns_the_line() {
    let mut t = Term::new();
    t.typ(b"vm list");
    assert_eq!(t.take_out(), b"vm list");
    assert_eq!(t.enter(), "vm list");
    assert_eq!(t.take_out(), b"\r\n");
    assert_eq!(t.line(), "");
}

#[test]
fn cr_lf_and_crlf_end_a_line_once() {
    for ending in [&b"\r"[..], b"\n", b"\r\n"] {
        let mut t = Term::new();
        t.typ(b"mem").typ(ending).typ(b"cpu").typ(ending);
        assert_eq!(
            t.events,
            vec![Event::Line("mem".into()), Event::Line("cpu".into())],
            "{ending:?}"
        );
    }
    // LF CR is two lines, CR CR two, CR LF LF two.
    let mut t = Term::new();
    t.typ(b"\n\r\r\r\n\n");
    assert_eq!(t.events.len(), 5);
    assert!(t.events.iter().all(|e| *e == Event::Line(String::new())));
}

#[test]
fn backspace_both_codes_at_end_and_in_the_middle() {
    for bs in [0x08u8, 0x7F] {
        let mut t = Term::new();
        t.typ(b"vmm").typ(&[bs]);
        assert_eq!(t.line(), "vm");
        t.typ(b"\x1b[D").typ(&[bs]);
        assert_eq!(t.line(), "m");
        assert_eq!(t.editor.cursor(), 0);
        // At the start: nothing.
        let before = t.take_out();
        t.typ(&[bs]);
        assert_eq!(t.line(), "m");
        assert!(t.take_out().is_empty(), "{before:?}");
    }
}

#[test]
fn insert_in_the_middle_redraws_the_tail() {
    let mut t = Term::new();
    t.typ(b"vm lst").typ(b"\x1b[D\x1b[D");
    t.take_out();
    t.typ(b"i");
    assert_eq!(t.line(), "vm list");
    assert_eq!(t.take_out(), b"ist\x1b[2D");
}

#[test]
fn cursor_keys_in_every_encoding() {
    let lefts: [&[u8]; 3] = [b"\x1b[D", b"\x1bOD", b"\x02"];
    let rights: [&[u8]; 3] = [b"\x1b[C", b"\x1bOC", b"\x06"];
    for (left, right) in lefts.iter().zip(rights) {
        let mut t = Term::new();
        t.typ(b"abc").typ(left).typ(left);
        assert_eq!(t.editor.cursor(), 1);
        t.typ(right);
        assert_eq!(t.editor.cursor(), 2);
        t.typ(right).typ(right);
        assert_eq!(t.editor.cursor(), 3);
        t.typ(left).typ(left).typ(left).typ(left);
        assert_eq!(t.editor.cursor(), 0);
    }
    let homes: [&[u8]; 5] = [b"\x1b[H", b"\x1bOH", b"\x1b[1~", b"\x1b[7~", b"\x01"];
    let ends: [&[u8]; 5] = [b"\x1b[F", b"\x1bOF", b"\x1b[4~", b"\x1b[8~", b"\x05"];
    for (home, end) in homes.iter().zip(ends) {
        let mut t = Term::new();
        t.typ(b"vm start 1").typ(home);
        assert_eq!(t.editor.cursor(), 0);
        t.typ(end);
        assert_eq!(t.editor.cursor(), 10);
    }
    // Ctrl-Right (ESC [ 1 ; 5 C) moves right too: modifiers are ignored.
    let mut t = Term::new();
    t.typ(b"ab\x01\x1b[1;5C");
    assert_eq!(t.editor.cursor(), 1);
}

#[test]
fn delete_key_and_ctrl_d() {
    let mut t = Term::new();
    t.typ(b"vm xstart\x01\x1b[C\x1b[C\x1b[C\x1b[3~");
    assert_eq!(t.line(), "vm start");
    t.typ(b"\x05\x1b[3~");
    assert_eq!(t.line(), "vm start");
    t.typ(b"\x01\x04");
    assert_eq!(t.line(), "m start");
    assert!(t.events.is_empty());
    t.typ(b"\x05\x15\x04");
    assert_eq!(t.events, vec![Event::EndOfInput]);
}

#[test]
fn kill_keys() {
    let mut t = Term::new();
    t.typ(b"vm start linux\x1b[D\x1b[D\x0b");
    assert_eq!(t.line(), "vm start lin");
    t.typ(b"\x17");
    assert_eq!(t.line(), "vm start ");
    t.typ(b"\x17");
    assert_eq!(t.line(), "vm ");
    t.typ(b"xyz\x01\x1b[C\x1b[C\x15");
    assert_eq!(t.line(), " xyz");
    assert_eq!(t.editor.cursor(), 0);
    t.typ(b"\x17\x15\x0b");
    assert_eq!(t.line(), "");
}

#[test]
fn ctrl_c_drops_the_line() {
    let mut t = Term::new();
    t.typ(b"vm delete 1\x03");
    assert_eq!(t.events, vec![Event::Interrupt]);
    assert_eq!(t.line(), "");
    assert!(t.take_out().ends_with(b"^C\r\n"));
    assert!(t.editor.history().is_empty());
}

#[test]
fn ctrl_l_clears_and_redraws() {
    let mut t = Term::new();
    t.typ(b"ls /vms\x1b[D\x0c");
    assert_eq!(t.screen.cursor_row(), 0);
    assert_eq!(t.screen.current_row(), b"axvisor> ls /vms");
}

#[test]
fn the_line_is_bounded_and_a_full_line_rings() {
    let mut t = Term::new();
    let max = t.editor.max_len();
    assert_eq!(max, 80 - "axvisor> ".len() - 1);
    t.typ(&vec![b'x'; max + 5]);
    assert_eq!(t.editor.line().len(), max);
    assert_eq!(t.screen.bells(), 5);
    // Editing in the middle of a full line stays correct.
    t.typ(b"\x01\x7f\x1b[C\x7fab");
    assert_eq!(t.editor.line().len(), max);
    assert_eq!(t.screen.bells(), 6);
}

#[test]
fn unknown_escape_sequences_are_swallowed_whole() {
    let mut t = Term::new();
    t.typ(b"a\x1b[2J\x1b[?25h\x1b[38;5;1m\x1b[15~\x1b[200~\x1bOP\x1bx\x1b\x1b[Cb");
    assert_eq!(t.line(), "ab");
    assert_eq!(t.take_out(), b"ab");
    // A sequence cut by a control byte is dropped with it; ESC restarts one.
    t.typ(b"\x1b[12\x07c\x1b[1\x1b[Dd");
    assert_eq!(t.line(), "abdc");
}

#[test]
fn control_and_non_ascii_bytes_never_reach_the_line() {
    let mut t = Term::new();
    let mut all: Vec<u8> = (0u8..=255)
        .filter(|b| !matches!(b, b'\r' | b'\n' | 0x1b | 0x03 | 0x04 | 0x0c | 0x20..=0x7e))
        .collect();
    all.extend_from_slice("héllo ✓".as_bytes());
    t.typ(&all);
    assert!(t.editor.line().iter().all(|b| (0x20..=0x7e).contains(b)));
    assert!(t.line().ends_with("hllo "));
}

#[test]
fn history_up_down_keeps_the_draft() {
    let mut t = Term::new();
    for line in ["vm list", "mem", "mem", "", "  ", "cpu"] {
        t.typ(line.as_bytes());
        t.enter();
    }
    let h: Vec<&str> = t.editor.history().iter().collect();
    assert_eq!(h, ["vm list", "mem", "cpu"]);
    t.typ(b"dra");
    t.typ(b"\x1b[A");
    assert_eq!(t.line(), "cpu");
    t.typ(b"\x1bOA");
    assert_eq!(t.line(), "mem");
    t.typ(b"\x10");
    assert_eq!(t.line(), "vm list");
    let bells = t.screen.bells();
    t.typ(b"\x1b[A");
    assert_eq!(t.line(), "vm list");
    assert_eq!(t.screen.bells(), bells + 1);
    t.typ(b"\x1b[B\x0e");
    assert_eq!(t.line(), "cpu");
    t.typ(b"\x1b[B");
    assert_eq!(t.line(), "dra");
    t.typ(b"\x1b[B");
    assert_eq!(t.screen.bells(), bells + 2);
    // A recalled line is edited and entered like a typed one.
    t.typ(b"\x15\x1b[A\x1b[A\x7f\x7f\x7fcpu");
    assert_eq!(t.enter(), "cpu");
    assert_eq!(t.editor.history().len(), 3);
}

#[test]
fn history_is_bounded() {
    let mut t = Term::with(Editor::with_columns("> ", 80, 32), 80);
    for i in 0..40 {
        t.typ(format!("vm show {i}").as_bytes());
        t.enter();
    }
    let h = t.editor.history();
    assert_eq!(h.len(), 32);
    assert_eq!(h.newest(0), Some("vm show 39"));
    assert_eq!(h.newest(31), Some("vm show 8"));
    let mut none = Term::with(Editor::with_columns("> ", 80, 0), 80);
    none.typ(b"mem\r\x1b[A");
    assert!(none.editor.history().is_empty());
    assert_eq!(none.line(), "");
}

#[test]
fn prompts_are_sanitised_and_a_narrow_terminal_still_takes_a_character() {
    let e = Editor::with_columns("a\x1b[2Jb> ", 20, 4);
    assert_eq!(e.prompt_text(), "a[2Jb> ");
    assert_eq!(e.max_len(), 20 - 7 - 1);
    let tiny = Editor::with_columns("axvisor> ", 5, 4);
    assert_eq!(tiny.max_len(), 1);
}

#[test]
fn redraws_are_minimal() {
    let mut t = Term::new();
    t.typ(b"abcdef");
    t.take_out();
    t.typ(b"\x1b[D");
    assert_eq!(t.take_out(), b"\x08");
    t.typ(b"\x1b[C");
    assert_eq!(t.take_out(), b"f");
    t.typ(b"\x01");
    assert_eq!(t.take_out(), b"\x1b[6D");
    t.typ(b"\x05");
    assert_eq!(t.take_out(), b"\x1b[6C");
    t.typ(b"\x7f");
    assert_eq!(t.take_out(), b"\x08\x1b[K");
    t.typ(b"\x01\x1b[3~");
    t.take_out();
    t.typ(b"\x1b[A");
    assert_eq!(t.take_out(), b"\x07");
}

#[test]
fn a_control_byte_ends_a_sequence_and_acts() {
    let mut t = Term::new();
    t.typ(b"mem\x1b\r");
    assert_eq!(t.events, vec![Event::Line("mem".into())]);
    t.typ(b"cpu\x1b[1\x03");
    assert_eq!(t.events[1], Event::Interrupt);
    t.typ(b"ab\x1bO\x7f");
    assert_eq!(t.line(), "a");
}
