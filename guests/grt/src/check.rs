//! A tally of checks for test guests: each failed check prints one `mismatch: ...` line at
//! once, and [`Checker::finish`] prints the guest's single `PASS <name>` or
//! `FAIL <name>: ...` marker.

use core::fmt::{Display, LowerHex};

/// Counts checks and failures for one test guest.
pub struct Checker {
    name: &'static str,
    total: u32,
    failed: u32,
}

impl Checker {
    /// A tally for the guest `name` (the name in its `PASS` / `FAIL` marker).
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            total: 0,
            failed: 0,
        }
    }

    /// Checks `got == want`; on a mismatch prints
    /// `<name>: mismatch: <what>: got 0x.., expected 0x..`. Returns whether they matched.
    pub fn eq<T: PartialEq + LowerHex>(&mut self, what: impl Display, got: T, want: T) -> bool {
        self.total += 1;
        if got == want {
            return true;
        }
        self.failed += 1;
        crate::println!(
            "{}: mismatch: {what}: got {got:#x}, expected {want:#x}",
            self.name
        );
        false
    }

    /// Checks that `ok` holds; otherwise prints `<name>: mismatch: <what>`. Returns `ok`.
    pub fn ok(&mut self, what: impl Display, ok: bool) -> bool {
        self.total += 1;
        if !ok {
            self.failed += 1;
            crate::println!("{}: mismatch: {what}", self.name);
        }
        ok
    }

    /// How many checks ran so far.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// How many checks failed so far.
    pub fn failed(&self) -> u32 {
        self.failed
    }

    /// Prints `<name>: N checks` and `PASS <name>` when every check held, else
    /// `FAIL <name>: K of N checks failed`. Returns whether all held.
    pub fn finish(self) -> bool {
        if self.failed == 0 {
            crate::println!("{}: {} checks", self.name, self.total);
            crate::pass(self.name);
            true
        } else {
            crate::fail(
                self.name,
                format_args!("{} of {} checks failed", self.failed, self.total),
            );
            false
        }
    }
}
