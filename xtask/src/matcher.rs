//! Console-output matching: cleaning raw console bytes into lines, and checking lines
//! against a scenario's ordered and unordered expectations and its failure markers.

/// Turns one raw console line into the text a terminal shows on its row: invalid UTF-8 is
/// replaced, the trailing newline dropped, and control sequences act as on a VT100 row —
/// a carriage return goes back to the first column (so what follows overwrites), backspace
/// and `ESC [ n D` / `ESC [ n C` move the cursor, `ESC [ K` erases to the end of the row
/// (`ESC [ 1 K` to the cursor, `ESC [ 2 K` all of it); every other escape sequence is
/// removed. So a line the hypervisor writes over the shell's prompt (`CR`, `ESC [ K`, text)
/// reads as that text alone.
pub fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut row: Vec<char> = Vec::with_capacity(text.len());
    let mut col = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates, ended by a byte in 0x40..=0x7e.
                Some('[') => {
                    let mut params = String::new();
                    let mut last = None;
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            last = Some(c);
                            break;
                        }
                        params.push(c);
                    }
                    let n = params.parse::<usize>().unwrap_or(1).max(1);
                    match (last, params.as_str()) {
                        (Some('K'), "" | "0") => row.truncate(col),
                        (Some('K'), "1") => {
                            for cell in row.iter_mut().take(col + 1) {
                                *cell = ' ';
                            }
                        }
                        (Some('K'), "2") => row.clear(),
                        (Some('D'), _) => col = col.saturating_sub(n),
                        (Some('C'), _) => col = col.saturating_add(n).min(MAX_COLUMN),
                        _ => {}
                    }
                }
                // OSC: ended by BEL or ESC '\'.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next_if_eq(&'\\');
                            break;
                        }
                    }
                }
                // Two-byte escapes (ESC c, ESC =, ...): drop both.
                _ => {}
            },
            '\r' => col = 0,
            '\n' => {}
            '\x08' => col = col.saturating_sub(1),
            c => {
                if col < row.len() {
                    row[col] = c;
                } else {
                    row.resize(col, ' ');
                    row.push(c);
                }
                col += 1;
            }
        }
    }
    row.into_iter().collect()
}

/// The furthest right `ESC [ n C` moves the cursor in [`clean_line`] (a bound on the row's
/// length, whatever a guest prints).
const MAX_COLUMN: usize = 4096;

/// What a line did to the match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still waiting for expectations.
    Pending,
    /// Every expectation has been seen.
    Complete,
    /// The line contains this failure marker.
    FailMarker(String),
}

/// The expectations that have not been seen yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Missing {
    /// The first ordered expectation not yet seen, with its index in `expect`.
    pub first_ordered: Option<(usize, String)>,
    /// Every unordered expectation not yet seen.
    pub unordered: Vec<String>,
    /// The first step not yet taken, with its index in `steps` (set from [`Steps`]).
    pub step: Option<(usize, String)>,
}

impl Missing {
    /// The first expectation not found: the next ordered one, else the first unordered one.
    pub fn first(&self) -> Option<&str> {
        self.first_ordered
            .as_ref()
            .map(|(_, s)| s.as_str())
            .or(self.unordered.first().map(String::as_str))
    }
}

/// Splits a console line into the VM whose console it is and the VM's text: the
/// hypervisor prints a VM's output as `[name] text`. Other lines (the hypervisor's own) are
/// `(None, line)`. A name has no whitespace, so a bracketed timestamp such as `[ 0.1]` is not
/// one.
pub fn split_vm(line: &str) -> (Option<&str>, &str) {
    let vm = line.strip_prefix('[').and_then(|rest| {
        let (name, text) = rest.split_once("] ")?;
        (!name.is_empty() && !name.contains(char::is_whitespace)).then_some((name, text))
    });
    match vm {
        Some((name, text)) => (Some(name), text),
        None => (None, line),
    }
}

/// One expected string and where it must appear.
#[derive(Clone, Debug)]
struct Expectation {
    /// As written in the scenario (for reports).
    written: String,
    /// `Some(vm)` when written as `[vm] text`: only that VM's console lines count.
    vm: Option<String>,
    /// What must appear: the text after the VM prefix, or everything.
    text: String,
    seen: bool,
}

impl Expectation {
    fn new(written: &str) -> Self {
        let (vm, text) = split_vm(written);
        Expectation {
            written: written.to_owned(),
            vm: vm.map(str::to_owned),
            text: text.to_owned(),
            seen: false,
        }
    }

    /// The part of `line` this expectation is matched against: the VM's text when the
    /// line is that VM's, the whole line for an expectation without a VM; else `None`.
    fn subject<'l>(&self, line: &'l str, vm: Option<&str>, text: &'l str) -> Option<&'l str> {
        match &self.vm {
            None => Some(line),
            Some(want) => (vm == Some(want.as_str())).then_some(text),
        }
    }
}

/// Matches console lines against expectations.
///
/// An expectation written `[vm] text` matches only lines of that VM's console (the lines
/// the hypervisor prints with the `[vm] ` prefix), where `text` must appear after the
/// prefix; any other expectation matches any line. Ordered expectations must appear in
/// order on their console: the ones of one VM in the order written, the ones without a VM
/// in the order written among themselves, with no order between consoles (VMs print
/// concurrently). Several may be satisfied by one line if they appear in that order within
/// it. Unordered expectations may appear anywhere on their console, in any order. A line
/// containing a failure marker (routed the same way) fails the match at once.
#[derive(Clone, Debug)]
pub struct Matcher {
    ordered: Vec<Expectation>,
    unordered: Vec<Expectation>,
    fail_on: Vec<Expectation>,
}

impl Matcher {
    /// A matcher for the given ordered and unordered expectations and failure markers.
    pub fn new(ordered: &[String], unordered: &[String], fail_on: &[String]) -> Self {
        let list = |items: &[String]| items.iter().map(|s| Expectation::new(s)).collect();
        Matcher {
            ordered: list(ordered),
            unordered: list(unordered),
            fail_on: list(fail_on),
        }
    }

    /// Feeds one cleaned console line.
    pub fn feed(&mut self, line: &str) -> Verdict {
        if let Some(marker) = self.fails(line) {
            return Verdict::FailMarker(marker);
        }
        let (vm, text) = split_vm(line);
        self.advance_ordered(None, line);
        if vm.is_some() {
            self.advance_ordered(vm, text);
        }
        for want in &mut self.unordered {
            if !want.seen
                && want
                    .subject(line, vm, text)
                    .is_some_and(|s| s.contains(want.text.as_str()))
            {
                want.seen = true;
            }
        }
        if self.is_complete() {
            Verdict::Complete
        } else {
            Verdict::Pending
        }
    }

    /// Marks the ordered expectations of `console` (`None`: those without a VM) found in
    /// `rest`, each after the previous one, starting with the first one not yet seen.
    fn advance_ordered(&mut self, console: Option<&str>, mut rest: &str) {
        while let Some(next) = self
            .ordered
            .iter_mut()
            .find(|e| !e.seen && e.vm.as_deref() == console)
        {
            let Some(at) = rest.find(next.text.as_str()) else {
                break;
            };
            rest = &rest[at + next.text.len()..];
            next.seen = true;
        }
    }

    /// Whether every expectation has been seen.
    pub fn is_complete(&self) -> bool {
        self.ordered.iter().chain(&self.unordered).all(|e| e.seen)
    }

    /// Whether `line` contains a failure marker (for lines read after the match completed).
    pub fn fails(&self, line: &str) -> Option<String> {
        let (vm, text) = split_vm(line);
        self.fail_on
            .iter()
            .find(|m| {
                m.subject(line, vm, text)
                    .is_some_and(|s| s.contains(m.text.as_str()))
            })
            .map(|m| m.written.clone())
    }

    /// The expectations not seen yet.
    pub fn missing(&self) -> Missing {
        Missing {
            first_ordered: self
                .ordered
                .iter()
                .position(|e| !e.seen)
                .map(|i| (i, self.ordered[i].written.clone())),
            unordered: self
                .unordered
                .iter()
                .filter(|e| !e.seen)
                .map(|e| e.written.clone())
                .collect(),
            step: None,
        }
    }
}

/// One step of a scenario's typed session: wait for `expect` on the console, then type
/// `send` (if any) and Enter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What must appear first (in a complete line, or in the unfinished line: a prompt).
    pub expect: String,
    /// The line typed once it appeared (without its Enter).
    pub send: Option<String>,
}

/// One piece of a step's expectation: literal text, or `{NAME}` / `{NAME~TOL}` (a word to
/// capture, or to find again: exactly, or with `~TOL` a decimal number within `TOL` of the
/// captured one).
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Hole(&'a str, Option<u64>),
}

/// Whether `value` matches `known`, the value captured before: the same word, or with a
/// tolerance two decimal numbers at most `tolerance` apart.
fn same_value(known: &str, value: &str, tolerance: Option<u64>) -> bool {
    match tolerance {
        None => known == value,
        Some(tol) => match (known.parse::<u64>(), value.parse::<u64>()) {
            (Ok(a), Ok(b)) => a.abs_diff(b) <= tol,
            _ => false,
        },
    }
}

/// Splits an expectation at its `{NAME}` and `{NAME~TOL}` holes (NAME: ASCII letters,
/// digits, `_`; TOL: decimal digits; other braces are text).
fn pieces(pattern: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let rest = pattern;
    let mut text_from = 0;
    let mut at = 0;
    while let Some(open) = rest[at..].find('{').map(|i| at + i) {
        let name_len = rest[open + 1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - open - 1);
        let name_end = open + 1 + name_len;
        let (tolerance, close) = match rest[name_end..].strip_prefix('~') {
            Some(after) => {
                let digits = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                (after[..digits].parse::<u64>().ok(), name_end + 1 + digits)
            }
            None => (None, name_end),
        };
        let tolerance_ok = close == name_end || tolerance.is_some();
        if name_len > 0 && tolerance_ok && rest[close..].starts_with('}') {
            if open > text_from {
                out.push(Piece::Text(&rest[text_from..open]));
            }
            out.push(Piece::Hole(&rest[open + 1..name_end], tolerance));
            text_from = close + 1;
            at = close + 1;
        } else {
            at = open + 1;
        }
        if at >= rest.len() {
            break;
        }
    }
    if text_from < rest.len() {
        out.push(Piece::Text(&rest[text_from..]));
    }
    out
}

/// Finds `pattern` in `text`: its text as is, each `{NAME}` a word (no whitespace, not
/// empty) up to the text that follows it, which must equal the value captured before under
/// that name if there is one. Returns the new captures.
fn find_with_captures(
    pattern: &str,
    text: &str,
    captured: &std::collections::BTreeMap<String, String>,
) -> Option<Vec<(String, String)>> {
    let pieces = pieces(pattern);
    let starts: Vec<usize> = match pieces.first() {
        Some(Piece::Text(t)) => text.match_indices(t).map(|(i, _)| i).collect(),
        _ => text.char_indices().map(|(i, _)| i).collect(),
    };
    'start: for start in starts {
        let mut pos = start;
        let mut found = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            match piece {
                Piece::Text(t) => {
                    if !text[pos..].starts_with(t) {
                        continue 'start;
                    }
                    pos += t.len();
                }
                Piece::Hole(name, tolerance) => {
                    let word_end = text[pos..]
                        .find(char::is_whitespace)
                        .map_or(text.len(), |e| pos + e);
                    let end = match pieces.get(i + 1) {
                        Some(Piece::Text(next)) => match text[pos..word_end].find(next) {
                            Some(e) => pos + e,
                            None if text[word_end..].starts_with(next) => word_end,
                            None => continue 'start,
                        },
                        _ => word_end,
                    };
                    let value = &text[pos..end];
                    let known = captured
                        .get(*name)
                        .or_else(|| found.iter().find(|(n, _)| n == name).map(|(_, v)| v));
                    if value.is_empty() || known.is_some_and(|k| !same_value(k, value, *tolerance))
                    {
                        continue 'start;
                    }
                    if known.is_none() {
                        found.push(((*name).to_owned(), value.to_owned()));
                    }
                    pos = end;
                }
            }
        }
        return Some(found);
    }
    None
}

/// A scenario's steps, taken in order as the console goes by.
///
/// A step's `expect` is looked for in the lines after the one where the previous step was
/// seen, and in the unfinished line (a prompt has no newline); one line serves at most one
/// step. After a step typed a line, the next step is looked for only after the line that
/// echoes what was typed (the first complete line containing it): a shell redraws its prompt
/// around other output, and that redrawn prompt must not count as the next one. A line of
/// control characters only (a key such as Ctrl-]) has no echo to wait for.
#[derive(Clone, Debug)]
pub struct Steps {
    steps: Vec<Step>,
    next: usize,
    /// The unfinished line already served a step.
    line_used: bool,
    /// What was typed, until its echo has been seen in a complete line.
    echo: Option<String>,
    /// Values captured by `{NAME}` in earlier steps' expectations.
    captured: std::collections::BTreeMap<String, String>,
}

impl Steps {
    /// The steps, none done.
    pub fn new(steps: Vec<Step>) -> Self {
        Steps {
            steps,
            next: 0,
            line_used: false,
            echo: None,
            captured: std::collections::BTreeMap::new(),
        }
    }

    /// Feeds a complete cleaned line; returns the line to type (without Enter) when a step
    /// that types is seen in it.
    pub fn line(&mut self, line: &str) -> Option<String> {
        if let Some(echo) = &self.echo {
            if line.contains(echo.as_str()) {
                self.echo = None;
            }
            self.line_used = false;
            return None;
        }
        if std::mem::take(&mut self.line_used) {
            return None;
        }
        self.take(line).flatten()
    }

    /// Feeds the unfinished line so far (cleaned); like [`Steps::line`].
    pub fn partial(&mut self, text: &str) -> Option<String> {
        if self.echo.is_some() || self.line_used {
            return None;
        }
        // A word still being written would be captured cut short: captures wait for the
        // whole line.
        let step = self.steps.get(self.next)?;
        if pieces(&step.expect)
            .iter()
            .any(|p| matches!(p, Piece::Hole(..)))
        {
            return None;
        }
        let send = self.take(text)?;
        self.line_used = true;
        send
    }

    /// Takes the next step if `text` holds its expectation: `Some(what it types)`.
    fn take(&mut self, text: &str) -> Option<Option<String>> {
        let step = self.steps.get(self.next)?;
        let found = find_with_captures(&step.expect, text, &self.captured)?;
        self.captured.extend(found);
        self.next += 1;
        // What an echo shows of it: its printable part (a control key such as Ctrl-]
        // echoes nothing, so nothing is waited for).
        self.echo = step
            .send
            .as_deref()
            .map(|l| l.chars().filter(|c| !c.is_control()).collect::<String>())
            .filter(|l| !l.is_empty());
        Some(step.send.clone())
    }

    /// Whether every step has been seen.
    pub fn is_complete(&self) -> bool {
        self.next == self.steps.len()
    }

    /// The first step not seen yet: its index and expectation.
    pub fn missing(&self) -> Option<(usize, &str)> {
        self.steps
            .get(self.next)
            .map(|s| (self.next, s.expect.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn ansi_and_carriage_returns_are_stripped() {
        assert_eq!(clean_line(b"plain\r\n"), "plain");
        assert_eq!(clean_line(b"\x1b[1;32mPASS\x1b[0m hello\r"), "PASS hello");
        assert_eq!(clean_line(b"\x1b[2J\x1b[H\x1b[?25lscreen"), "screen");
        assert_eq!(clean_line(b"\x1b]0;title\x07after"), "after");
        assert_eq!(clean_line(b"\x1b]0;title\x1b\\after"), "after");
        assert_eq!(clean_line(b"a\x1bcb"), "ab");
        assert_eq!(clean_line(b"bad \xff utf8"), "bad \u{fffd} utf8");
        assert_eq!(clean_line(b"unterminated \x1b["), "unterminated ");
    }

    #[test]
    fn carriage_returns_and_erases_act_as_on_a_terminal_row() {
        // A line written over the shell's prompt reads as that line alone.
        assert_eq!(
            clean_line(b"axvisor> \r\x1b[K[hello] PASS hello\r\n"),
            "[hello] PASS hello"
        );
        assert_eq!(clean_line(b"abcdef\rxy"), "xycdef");
        assert_eq!(clean_line(b"abcdef\x1b[3D\x1b[K!"), "abc!");
        assert_eq!(clean_line(b"vm lisx\x08\x1b[Kt"), "vm list");
        assert_eq!(clean_line(b"ab\x1b[2Cc"), "ab  c");
        assert_eq!(clean_line(b"abc\x1b[2D\x1b[1K"), "  c");
        assert_eq!(clean_line(b"abc\x1b[2K"), "");
        assert_eq!(clean_line(b"x\x1b[99999999Cy").len(), MAX_COLUMN + 1);
    }

    #[test]
    fn ordered_expectations_must_come_in_order() {
        let mut m = Matcher::new(&strings(&["first", "second", "third"]), &[], &[]);
        assert_eq!(m.feed("second (too early)"), Verdict::Pending);
        assert_eq!(m.missing().first(), Some("first"));
        assert_eq!(m.feed("the first line"), Verdict::Pending);
        // The early "second" does not count: it is still missing.
        assert_eq!(m.missing().first_ordered, Some((1, "second".to_owned())));
        assert_eq!(m.feed("second and third on one line"), Verdict::Complete);
        assert!(m.missing().first().is_none());
    }

    #[test]
    fn one_line_satisfies_consecutive_expectations_only_in_order() {
        let mut m = Matcher::new(&strings(&["axvisor ", "0.1"]), &[], &[]);
        assert_eq!(m.feed("0.1 axvisor "), Verdict::Pending);
        assert_eq!(m.missing().first(), Some("0.1"));
        let mut m = Matcher::new(&strings(&["axvisor ", "0.1"]), &[], &[]);
        assert_eq!(m.feed("axvisor 0.1.0"), Verdict::Complete);
    }

    #[test]
    fn unordered_expectations_come_in_any_order() {
        let mut m = Matcher::new(
            &strings(&["banner"]),
            &strings(&["cpu 0: online", "cpu 1: online"]),
            &[],
        );
        assert_eq!(m.feed("cpu 1: online"), Verdict::Pending);
        let missing = m.missing();
        assert_eq!(missing.first(), Some("banner"));
        assert_eq!(missing.unordered, strings(&["cpu 0: online"]));
        assert_eq!(m.feed("banner"), Verdict::Pending);
        assert_eq!(m.missing().first(), Some("cpu 0: online"));
        assert_eq!(m.feed("[0.1] cpu 0: online"), Verdict::Complete);
        assert!(m.is_complete());
    }

    #[test]
    fn fail_markers_win() {
        let mut m = Matcher::new(&strings(&["x"]), &[], &strings(&["panicked at", "FAIL "]));
        assert_eq!(m.feed("all fine"), Verdict::Pending);
        assert_eq!(
            m.feed("x but panicked at src/main.rs:1"),
            Verdict::FailMarker("panicked at".to_owned())
        );
        assert_eq!(
            m.feed("FAIL hypercall: bad"),
            Verdict::FailMarker("FAIL ".to_owned())
        );
    }

    #[test]
    fn nothing_expected_is_complete() {
        let mut m = Matcher::new(&[], &[], &[]);
        assert!(m.is_complete());
        assert_eq!(m.feed("anything"), Verdict::Complete);
    }

    #[test]
    fn vm_prefixes_split_only_names() {
        assert_eq!(split_vm("[hog] PASS hog"), (Some("hog"), "PASS hog"));
        assert_eq!(split_vm("[ 0.1] cpu 0"), (None, "[ 0.1] cpu 0"));
        assert_eq!(split_vm("[] x"), (None, "[] x"));
        assert_eq!(split_vm("[hog]PASS"), (None, "[hog]PASS"));
        assert_eq!(split_vm("vm hog: created"), (None, "vm hog: created"));
    }

    #[test]
    fn vm_expectations_match_only_that_vms_console() {
        let mut m = Matcher::new(&strings(&["[a] PASS a"]), &strings(&["[b] done"]), &[]);
        // Another VM printing the text, or the hypervisor quoting it, does not count.
        assert_eq!(m.feed("[b] PASS a"), Verdict::Pending);
        assert_eq!(m.feed("vm a: [a] PASS a"), Verdict::Pending);
        assert_eq!(m.feed("[a] done"), Verdict::Pending);
        assert_eq!(m.missing().unordered, strings(&["[b] done"]));
        assert_eq!(m.feed("[a] PASS a"), Verdict::Pending);
        assert_eq!(m.feed("[b] all done"), Verdict::Complete);
    }

    #[test]
    fn order_holds_per_console_not_across() {
        let mut m = Matcher::new(
            &strings(&["[a] one", "[b] one", "[a] two", "vm a: off"]),
            &[],
            &[],
        );
        // b finishes before a starts: fine, the consoles run concurrently.
        assert_eq!(m.feed("[b] one"), Verdict::Pending);
        assert_eq!(m.feed("[a] two"), Verdict::Pending);
        assert_eq!(m.missing().first_ordered, Some((0, "[a] one".to_owned())));
        assert_eq!(m.feed("[a] one two"), Verdict::Pending);
        // An unprefixed expectation matches any line, here the hypervisor's.
        assert_eq!(m.feed("vm a: off"), Verdict::Complete);
    }

    fn step(expect: &str, send: Option<&str>) -> Step {
        Step {
            expect: expect.to_owned(),
            send: send.map(str::to_owned),
        }
    }

    #[test]
    fn steps_type_at_prompts_and_wait_for_the_echo() {
        let mut steps = Steps::new(vec![
            step("axvisor> ", Some("vm list")),
            step("hello", None),
            step("axvisor> ", Some("mem")),
            step("frames:", None),
        ]);
        assert_eq!(steps.line("booting"), None);
        assert_eq!(steps.partial("axvisor"), None);
        assert_eq!(steps.partial("axvisor> "), Some("vm list".to_owned()));
        // The prompt redrawn around a VM's line, before the echo, is not the next prompt,
        // and what comes before the echo does not count.
        assert_eq!(steps.line("[hog] hello"), None);
        assert_eq!(steps.partial("axvisor> "), None);
        assert_eq!(steps.line("axvisor> vm list"), None);
        assert_eq!(steps.missing(), Some((1, "hello")));
        assert_eq!(steps.line("   1  hello  running"), None);
        assert_eq!(steps.partial("axvisor> "), Some("mem".to_owned()));
        assert_eq!(steps.partial("axvisor> m"), None);
        assert_eq!(steps.line("axvisor> mem"), None);
        assert!(!steps.is_complete());
        assert_eq!(steps.line("frames: 12 free"), None);
        assert!(steps.is_complete());
        assert_eq!(steps.missing(), None);
    }

    #[test]
    fn a_control_key_has_no_echo_to_wait_for() {
        let mut steps = Steps::new(vec![step("# ", Some("\u{1d}")), step("detached", None)]);
        assert_eq!(steps.partial("# "), Some("\u{1d}".to_owned()));
        assert_eq!(steps.line("# "), None);
        assert_eq!(steps.line("console: detached from vm x"), None);
        assert!(steps.is_complete());
    }

    #[test]
    fn holes_capture_a_word_and_must_match_it_again() {
        let none = std::collections::BTreeMap::new();
        assert_eq!(
            pieces("frames: {free} free ({kib})"),
            [
                Piece::Text("frames: "),
                Piece::Hole("free", None),
                Piece::Text(" free ("),
                Piece::Hole("kib", None),
                Piece::Text(")")
            ]
        );
        assert_eq!(
            pieces("a {not a name} {}"),
            [Piece::Text("a {not a name} {}")]
        );
        let found = find_with_captures("frames: {free} free", "x frames: 123 free (4 KiB)", &none);
        assert_eq!(found, Some(vec![("free".to_owned(), "123".to_owned())]));
        let mut known = std::collections::BTreeMap::new();
        known.insert("free".to_owned(), "123".to_owned());
        assert!(find_with_captures("frames: {free} free", "frames: 122 free", &known).is_none());
        assert!(find_with_captures("frames: {free} free", "frames: 123 free", &known).is_some());
        // A hole at the end takes the word; an empty word does not match.
        let found = find_with_captures("heap: {used}", "heap: 77 bytes", &none);
        assert_eq!(found, Some(vec![("used".to_owned(), "77".to_owned())]));
        assert!(find_with_captures("heap: {used}", "heap: ", &none).is_none());
        // Plain text works as before.
        assert_eq!(find_with_captures("b c", "a b c d", &none), Some(vec![]));
        // With a tolerance: captured as a word, found again within TOL of it.
        let found = find_with_captures("heap: {used~100} bytes", "heap: 1000 bytes", &none);
        assert_eq!(found, Some(vec![("used".to_owned(), "1000".to_owned())]));
        let known = [("used".to_owned(), "1000".to_owned())]
            .into_iter()
            .collect();
        for (line, ok) in [
            ("heap: 1100 bytes", true),
            ("heap: 900 bytes", true),
            ("heap: 1101 bytes", false),
            ("heap: 899 bytes", false),
            ("heap: 10x0 bytes", false),
        ] {
            let got = find_with_captures("heap: {used~100} bytes", line, &known);
            assert_eq!(got.is_some(), ok, "{line}");
        }
        // A malformed tolerance is text.
        assert_eq!(pieces("{a~}"), vec![Piece::Text("{a~}")]);
        assert_eq!(pieces("{a~1}"), vec![Piece::Hole("a", Some(1))]);
    }

    #[test]
    fn captures_wait_for_the_whole_line() {
        let mut steps = Steps::new(vec![step("free: {n}", None), step("free: {n}", None)]);
        assert_eq!(steps.partial("free: 25"), None);
        assert!(steps.missing().is_some_and(|(i, _)| i == 0));
        assert_eq!(steps.line("free: 2536"), None);
        assert_eq!(steps.line("free: 2536"), None);
        assert!(steps.is_complete());
    }

    #[test]
    fn steps_compare_captures_across_steps() {
        let mut steps = Steps::new(vec![
            step("frames: {free} free", None),
            step("frames: {free} free", None),
        ]);
        assert_eq!(steps.line("frames: 100 free"), None);
        assert_eq!(steps.line("frames: 99 free"), None);
        assert!(!steps.is_complete());
        assert_eq!(steps.line("frames: 100 free"), None);
        assert!(steps.is_complete());
    }

    #[test]
    fn one_line_serves_one_step() {
        let mut steps = Steps::new(vec![step("a", None), step("b", None)]);
        assert_eq!(steps.partial("a b"), None);
        assert_eq!(steps.missing(), Some((1, "b")));
        assert_eq!(steps.line("a b"), None);
        assert_eq!(steps.missing(), Some((1, "b")));
        assert_eq!(steps.line("b"), None);
        assert!(steps.is_complete());
    }

    #[test]
    fn vm_fail_markers_are_routed() {
        let m = Matcher::new(&[], &[], &strings(&["[a] FAIL", "panicked"]));
        assert_eq!(m.fails("[b] FAIL x"), None);
        assert_eq!(m.fails("[a] FAIL x"), Some("[a] FAIL".to_owned()));
        assert_eq!(m.fails("[b] panicked"), Some("panicked".to_owned()));
    }
}
