//! Console-output matching: cleaning raw console bytes into lines, and checking lines
//! against a scenario's ordered and unordered expectations and its failure markers.

/// Turns one raw console line into text: invalid UTF-8 is replaced, ANSI escape sequences
/// and carriage returns are removed, and the trailing newline is dropped.
pub fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates, ended by a byte in 0x40..=0x7e.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
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
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out
}

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

/// Matches console lines against expectations.
///
/// Ordered expectations must appear in order; several may be satisfied by one line if they
/// appear in that order within it. Unordered expectations may appear anywhere, in any order.
/// A line containing a failure marker fails the match at once.
#[derive(Clone, Debug)]
pub struct Matcher {
    ordered: Vec<String>,
    next_ordered: usize,
    unordered: Vec<(String, bool)>,
    fail_on: Vec<String>,
}

impl Matcher {
    /// A matcher for the given ordered and unordered expectations and failure markers.
    pub fn new(ordered: &[String], unordered: &[String], fail_on: &[String]) -> Self {
        Matcher {
            ordered: ordered.to_vec(),
            next_ordered: 0,
            unordered: unordered.iter().map(|s| (s.clone(), false)).collect(),
            fail_on: fail_on.to_vec(),
        }
    }

    /// Feeds one cleaned console line.
    pub fn feed(&mut self, line: &str) -> Verdict {
        if let Some(marker) = self.fail_on.iter().find(|m| line.contains(m.as_str())) {
            return Verdict::FailMarker(marker.clone());
        }
        let mut rest = line;
        while let Some(want) = self.ordered.get(self.next_ordered) {
            match rest.find(want.as_str()) {
                Some(at) => {
                    rest = &rest[at + want.len()..];
                    self.next_ordered += 1;
                }
                None => break,
            }
        }
        for (want, seen) in &mut self.unordered {
            if !*seen && line.contains(want.as_str()) {
                *seen = true;
            }
        }
        if self.is_complete() {
            Verdict::Complete
        } else {
            Verdict::Pending
        }
    }

    /// Whether every expectation has been seen.
    pub fn is_complete(&self) -> bool {
        self.next_ordered == self.ordered.len() && self.unordered.iter().all(|(_, seen)| *seen)
    }

    /// The expectations not seen yet.
    pub fn missing(&self) -> Missing {
        Missing {
            first_ordered: self
                .ordered
                .get(self.next_ordered)
                .map(|s| (self.next_ordered, s.clone())),
            unordered: self
                .unordered
                .iter()
                .filter(|(_, seen)| !seen)
                .map(|(s, _)| s.clone())
                .collect(),
        }
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
}
