//! The bounded record of a VM's unclaimed accesses: which to log on a line of their own,
//! when to log a summary, and the counts per address range.
//!
//! A guest that probes (a boot loader scanning flash or a bus) must neither flood the
//! hypervisor's console nor, by spending a fixed budget of lines in its first milliseconds,
//! hide what it does later. So:
//!
//! - the first [`DETAIL_LIMIT`] distinct addresses get a line each;
//! - after that, the first access in each new range of [`RANGE_SIZE`] bytes still gets a
//!   line, for up to [`RANGE_LIMIT`] ranges; accesses in further ranges are counted as
//!   "elsewhere";
//! - a summary line with the counts per range comes after the [`FIRST_SUMMARY`]th access,
//!   then after twice as many, and so on until the gap is [`SUMMARY_GAP_CAP`] accesses, then
//!   every [`SUMMARY_GAP_CAP`] accesses for as long as the guest goes on; and, where the
//!   hypervisor gave a clock ([`set_clock`]), also at the first access [`SUMMARY_PERIOD_MS`]
//!   or more after the last summary (or the first access), so that a guest that goes on
//!   slowly is seen too. At most one line per period, plus the doubling ones.
//!
//! Memory stays bounded whatever the guest does; the full counts are always available
//! ([`UnclaimedLog::summary`]).
//!
//! A VM has one log for its MMIO accesses and one for its port I/O ([`Space`]); in the port
//! space the ranges are [`PORT_RANGE_SIZE`] ports instead of 1 MiB.

use alloc::vec::Vec;
use core::fmt;

/// Distinct addresses logged one by one.
pub const DETAIL_LIMIT: usize = 32;
/// Address ranges counted separately (and whose first access is logged).
pub const RANGE_LIMIT: usize = 32;
/// log2 of [`RANGE_SIZE`].
const RANGE_SHIFT: u32 = 20;
/// The size of the ranges accesses are counted by (1 MiB, aligned).
pub const RANGE_SIZE: u64 = 1 << RANGE_SHIFT;
/// The size of the ranges port accesses are counted by (16 ports, aligned).
pub const PORT_RANGE_SIZE: u64 = 16;

/// The address space a log records accesses in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Space {
    /// Guest-physical addresses (MMIO, nested page faults).
    #[default]
    Mmio,
    /// I/O ports (x86 `in` / `out`).
    Port,
}

impl Space {
    /// The size of the ranges accesses are counted by.
    pub const fn range_size(self) -> u64 {
        match self {
            Self::Mmio => RANGE_SIZE,
            Self::Port => PORT_RANGE_SIZE,
        }
    }

    /// A range's size in words.
    const fn range_words(self) -> &'static str {
        match self {
            Self::Mmio => "1 MiB",
            Self::Port => "16 ports",
        }
    }
}
/// The number of accesses after which the first summary is logged.
pub const FIRST_SUMMARY: u64 = 1024;
/// The largest number of accesses between two summaries.
pub const SUMMARY_GAP_CAP: u64 = 1 << 20;
/// With a clock: the longest time between two summaries while accesses go on.
pub const SUMMARY_PERIOD_MS: u64 = 10_000;
/// How many of the busiest ranges a summary names.
const SUMMARY_RANGES: usize = 4;

/// The hypervisor's clock, in milliseconds, for the periodic summaries.
static CLOCK: spin::Once<fn() -> u64> = spin::Once::new();

/// Gives the unclaimed-access logs of every VM a clock (milliseconds since boot). Without
/// one, summaries come only by count. The first call wins.
pub fn set_clock(now_ms: fn() -> u64) {
    CLOCK.call_once(|| now_ms);
}

/// The clock's reading, if there is one.
pub(crate) fn clock_ms() -> Option<u64> {
    CLOCK.get().map(|now| now())
}

/// Whether an unclaimed access gets a line of its own, and what the line adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// No line (its address, or its range, has been logged).
    Quiet,
    /// A line.
    Log,
    /// A line, the last for a new address: further ones are logged once per range.
    LogAddressesDone,
    /// A line, the last for a new range: accesses in further ranges are only counted.
    LogRangesDone,
}

impl Detail {
    /// What the line adds after the action ("" for a plain line), for an MMIO access.
    pub fn note(self) -> &'static str {
        self.note_in(Space::Mmio)
    }

    /// What the line adds after the action ("" for a plain line), for an access in `space`.
    pub fn note_in(self, space: Space) -> &'static str {
        match (self, space) {
            (Self::Quiet | Self::Log, _) => "",
            (Self::LogAddressesDone, Space::Mmio) => {
                "; further unclaimed accesses are logged once per 1 MiB range, with a \
                 summary of the counts now and then"
            }
            (Self::LogAddressesDone, Space::Port) => {
                "; further unclaimed port accesses are logged once per 16-port range, with \
                 a summary of the counts now and then"
            }
            (Self::LogRangesDone, _) => {
                "; accesses in further ranges are only counted (see the summaries)"
            }
        }
    }
}

/// What [`UnclaimedLog::note`] decided about one access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Its own line, or not.
    pub detail: Detail,
    /// Whether a summary line is due after it.
    pub summary: bool,
}

/// Accesses in one range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeCount {
    /// The range's first address (a multiple of [`RANGE_SIZE`]).
    pub base: u64,
    /// Accesses in it.
    pub accesses: u64,
    /// The address of the latest one.
    pub last: u64,
}

/// The counts so far: what a summary line shows and what a user can ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// The address space counted.
    pub space: Space,
    /// Every unclaimed access.
    pub total: u64,
    /// Those since the previous summary line.
    pub since_last: u64,
    /// Per range, busiest first (at most [`RANGE_LIMIT`]).
    pub ranges: Vec<RangeCount>,
    /// Accesses in ranges beyond those.
    pub elsewhere: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = if self.space == Space::Port {
            " port"
        } else {
            ""
        };
        write!(
            f,
            "{} unclaimed{port} accesses so far (+{} since the last summary)",
            self.total, self.since_last
        )?;
        for (i, r) in self.ranges.iter().take(SUMMARY_RANGES).enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            write!(
                f,
                "{sep}{} in [{:#x}, +{}) (last at {:#x})",
                r.accesses,
                r.base,
                self.space.range_words(),
                r.last
            )?;
        }
        if self.ranges.len() > SUMMARY_RANGES {
            write!(f, ", {} more ranges", self.ranges.len() - SUMMARY_RANGES)?;
        }
        if self.elsewhere > 0 {
            write!(f, ", {} in further ranges", self.elsewhere)?;
        }
        Ok(())
    }
}

/// Where an access was counted.
enum Placed {
    /// In a range already counted.
    Known,
    /// In a range counted from now on.
    New,
    /// Beyond the ranges.
    Elsewhere,
}

/// The record itself; see the module documentation.
#[derive(Debug)]
pub struct UnclaimedLog {
    /// The address space recorded.
    space: Space,
    /// Distinct addresses logged (at most [`DETAIL_LIMIT`]).
    seen: Vec<u64>,
    /// Counts per range, in order of first access (at most [`RANGE_LIMIT`]).
    ranges: Vec<RangeCount>,
    elsewhere: u64,
    total: u64,
    /// The total at which the next summary is due.
    next_summary: u64,
    /// The total at the last summary.
    summarized: u64,
    /// When the last summary was logged (or the first access came), by the clock.
    summary_at_ms: Option<u64>,
    ranges_full_noted: bool,
}

impl Default for UnclaimedLog {
    fn default() -> Self {
        Self::new()
    }
}

impl UnclaimedLog {
    /// Nothing recorded yet, for MMIO accesses.
    pub const fn new() -> Self {
        Self::in_space(Space::Mmio)
    }

    /// Nothing recorded yet, for accesses in `space`.
    pub const fn in_space(space: Space) -> Self {
        Self {
            space,
            seen: Vec::new(),
            ranges: Vec::new(),
            elsewhere: 0,
            total: 0,
            next_summary: FIRST_SUMMARY,
            summarized: 0,
            summary_at_ms: None,
            ranges_full_noted: false,
        }
    }

    /// Records an unclaimed access at `gpa`, at `now_ms` by the hypervisor's clock if it
    /// has one.
    pub fn note(&mut self, gpa: u64, now_ms: Option<u64>) -> Decision {
        self.total += 1;
        let by_count = self.total == self.next_summary;
        if by_count {
            self.next_summary += self.total.min(SUMMARY_GAP_CAP);
        }
        let by_time = match (now_ms, self.summary_at_ms) {
            (Some(now), Some(at)) => now.saturating_sub(at) >= SUMMARY_PERIOD_MS,
            (Some(now), None) => {
                self.summary_at_ms = Some(now);
                false
            }
            (None, _) => false,
        };
        let summary = by_count || by_time;
        if summary {
            if let Some(now) = now_ms {
                self.summary_at_ms = Some(now);
            }
        }
        let base = gpa & !(self.space.range_size() - 1);
        let known = self.ranges.iter().position(|r| r.base == base);
        let placed = match known {
            Some(i) => {
                let r = &mut self.ranges[i];
                r.accesses += 1;
                r.last = gpa;
                Placed::Known
            }
            None if self.ranges.len() < RANGE_LIMIT => {
                self.ranges.push(RangeCount {
                    base,
                    accesses: 1,
                    last: gpa,
                });
                Placed::New
            }
            None => {
                self.elsewhere += 1;
                Placed::Elsewhere
            }
        };
        let detail = if self.seen.contains(&gpa) {
            Detail::Quiet
        } else if self.seen.len() < DETAIL_LIMIT {
            self.seen.push(gpa);
            if self.seen.len() == DETAIL_LIMIT {
                Detail::LogAddressesDone
            } else {
                Detail::Log
            }
        } else {
            match placed {
                Placed::New if self.ranges.len() == RANGE_LIMIT => Detail::LogRangesDone,
                Placed::New => Detail::Log,
                // The first access beyond the ranges after the addresses were spent: say
                // once that such accesses are only counted.
                Placed::Elsewhere if !self.ranges_full_noted => Detail::LogRangesDone,
                Placed::Known | Placed::Elsewhere => Detail::Quiet,
            }
        };
        if detail == Detail::LogRangesDone {
            self.ranges_full_noted = true;
        }
        Decision { detail, summary }
    }

    /// The address space recorded.
    pub fn space(&self) -> Space {
        self.space
    }

    /// Every unclaimed access so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many distinct addresses have had a line of their own.
    pub fn logged(&self) -> usize {
        self.seen.len()
    }

    /// The counts so far, busiest range first.
    pub fn summary(&self) -> Summary {
        let mut ranges = self.ranges.clone();
        ranges.sort_by(|a, b| b.accesses.cmp(&a.accesses).then(a.base.cmp(&b.base)));
        Summary {
            space: self.space,
            total: self.total,
            since_last: self.total - self.summarized,
            ranges,
            elsewhere: self.elsewhere,
        }
    }

    /// The counts for a summary line: as [`Self::summary`], and the next line counts from
    /// here.
    pub fn take_summary(&mut self) -> Summary {
        let summary = self.summary();
        self.summarized = self.total;
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn addresses_then_ranges_get_lines() {
        let mut log = UnclaimedLog::new();
        assert_eq!(log.note(0x10, None).detail, Detail::Log);
        assert_eq!(log.note(0x10, None).detail, Detail::Quiet);
        for a in 1..DETAIL_LIMIT as u64 - 1 {
            assert_eq!(log.note(0x10 + a * 8, None).detail, Detail::Log);
        }
        assert_eq!(log.note(0x8000, None).detail, Detail::LogAddressesDone);
        assert_eq!(log.logged(), DETAIL_LIMIT);
        // The same range: counted, not logged.
        assert_eq!(log.note(0x9000, None).detail, Detail::Quiet);
        // A new range still gets its line, until the ranges run out.
        assert_eq!(log.note(0x4000_0000, None).detail, Detail::Log);
        assert_eq!(log.note(0x4000_0008, None).detail, Detail::Quiet);
        for r in 2..RANGE_LIMIT as u64 - 1 {
            assert_eq!(log.note(r << 32, None).detail, Detail::Log, "range {r}");
        }
        assert_eq!(log.note(0x7000_0000, None).detail, Detail::LogRangesDone);
        assert_eq!(log.note(0x7100_0000, None).detail, Detail::Quiet);
        assert_eq!(log.note(0x7200_0000, None).detail, Detail::Quiet);
        let s = log.summary();
        assert_eq!(s.ranges.len(), RANGE_LIMIT);
        assert_eq!(s.elsewhere, 2);
        assert_eq!(s.ranges[0].base, 0, "the busiest range first");
        assert_eq!(s.ranges[0].accesses, DETAIL_LIMIT as u64 + 2);
        assert_eq!(s.ranges[1].base, 0x4000_0000);
        assert_eq!(s.ranges[1].last, 0x4000_0008);
    }

    #[test]
    fn budgets_spent_together() {
        let mut log = UnclaimedLog::new();
        for r in 0..RANGE_LIMIT as u64 - 1 {
            assert_eq!(log.note(r * RANGE_SIZE, None).detail, Detail::Log);
        }
        // The last address line also fills the ranges; the first access beyond says that
        // such accesses are only counted, the next is quiet.
        let last = (RANGE_LIMIT as u64 - 1) * RANGE_SIZE;
        assert_eq!(log.note(last, None).detail, Detail::LogAddressesDone);
        assert_eq!(
            log.note(last + RANGE_SIZE, None).detail,
            Detail::LogRangesDone
        );
        assert_eq!(log.note(last + 2 * RANGE_SIZE, None).detail, Detail::Quiet);
        assert_eq!(log.summary().elsewhere, 2);
    }

    #[test]
    fn summaries_by_count_come_at_a_bounded_rate_forever() {
        let mut log = UnclaimedLog::new();
        let mut at = Vec::new();
        for i in 1..=4_000_000u64 {
            if log.note(0x5000_0000 + (i % 4096) * 8, None).summary {
                at.push(i);
            }
        }
        assert_eq!(&at[..4], &[1024, 2048, 4096, 8192]);
        // Doubling up to the cap, then every cap: they keep coming.
        let gaps: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g <= SUMMARY_GAP_CAP));
        assert_eq!(*gaps.last().unwrap(), SUMMARY_GAP_CAP);
        assert!(at.len() < 20, "{at:?}");
        assert_eq!(log.summary().total, 4_000_000);
    }

    #[test]
    fn with_a_clock_a_slow_guest_is_summarized_every_period() {
        let mut log = UnclaimedLog::new();
        // One access a second for a minute: no count threshold is reached.
        let (mut at, mut counts) = (Vec::new(), Vec::new());
        for s in 0..60u64 {
            if log.note(0x1000, Some(1_000 + s * 1000)).summary {
                at.push(s);
                counts.push(log.take_summary().since_last);
            }
        }
        assert_eq!(at, [10, 20, 30, 40, 50]);
        assert_eq!(counts, [11, 10, 10, 10, 10]);
        // A flood right after a summary: the count thresholds still apply, time adds none.
        let mut log = UnclaimedLog::new();
        let n = (1..=5000u64)
            .filter(|&i| log.note(i * 8, Some(1_000 + i / 1000)).summary)
            .count();
        assert_eq!(n, 3, "1024, 2048, 4096");
    }

    #[test]
    fn summary_text() {
        let mut log = UnclaimedLog::new();
        for i in 0..6u64 {
            for _ in 0..=i {
                log.note(i * RANGE_SIZE + 4, None);
            }
        }
        assert_eq!(
            log.summary().to_string(),
            "21 unclaimed accesses so far (+21 since the last summary): 6 in [0x500000, +1 MiB) (last at 0x500004), \
             5 in [0x400000, +1 MiB) (last at 0x400004), 4 in [0x300000, +1 MiB) (last at \
             0x300004), 3 in [0x200000, +1 MiB) (last at 0x200004), 2 more ranges"
        );
    }

    #[test]
    fn port_ranges_are_16_ports() {
        let mut log = UnclaimedLog::in_space(Space::Port);
        assert_eq!(log.note(0x3f8, None).detail, Detail::Log);
        log.note(0x3fd, None);
        log.note(0x60, None);
        assert_eq!(
            log.summary().to_string(),
            "3 unclaimed port accesses so far (+3 since the last summary): 2 in [0x3f0, \
             +16 ports) (last at 0x3fd), 1 in [0x60, +16 ports) (last at 0x60)"
        );
        assert!(Detail::LogAddressesDone
            .note_in(Space::Port)
            .contains("16-port range"));
    }
}
