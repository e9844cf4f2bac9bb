//! Telling a nested page fault the address space resolved from one that comes back for
//! ever: the address space says "handled" when the page is already mapped with the access
//! (it flushes the TLB entry, as a fault racing another vCPU's population needs), but a
//! fault the mapping does not explain (SVM's reserved-bit NPF, a misconfigured entry) then
//! recurs at once, and re-entering the guest would spin without end.

/// How many resolved faults in a row on the same page a vCPU may take before its VM is
/// stopped: a page is populated once and may fault again only for a stale TLB entry.
pub const MAX_REPEATS: u32 = 64;

/// One vCPU's run of resolved nested page faults on the same page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStreak {
    /// The page of the last resolved fault.
    page: u64,
    /// How many resolved faults in a row were on it (0: none yet).
    repeats: u32,
}

impl FaultStreak {
    /// Records a fault at guest page `page` that the address space resolved; `false` when
    /// it is the [`MAX_REPEATS`]th in a row on that page (no progress: stop the VM).
    pub fn resolved(&mut self, page: u64) -> bool {
        if self.repeats == 0 || self.page != page {
            *self = Self { page, repeats: 1 };
        } else {
            self.repeats += 1;
        }
        self.repeats < MAX_REPEATS
    }

    /// Forgets the run (a fault elsewhere that was not resolved, a VM reset).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_page_again_and_again_is_no_progress() {
        let mut s = FaultStreak::default();
        for i in 1..MAX_REPEATS {
            assert!(s.resolved(0x5000), "fault {i}");
        }
        assert!(!s.resolved(0x5000));
        assert!(!s.resolved(0x5000), "and stays so");
    }

    #[test]
    fn another_page_or_a_clear_starts_over() {
        let mut s = FaultStreak::default();
        for _ in 1..MAX_REPEATS {
            assert!(s.resolved(0x5000));
        }
        assert!(s.resolved(0x6000));
        for _ in 2..MAX_REPEATS {
            assert!(s.resolved(0x6000));
        }
        s.clear();
        assert!(s.resolved(0x6000));
        // Page 0 is a page like any other.
        let mut z = FaultStreak::default();
        for _ in 1..MAX_REPEATS {
            assert!(z.resolved(0));
        }
        assert!(!z.resolved(0));
        // Alternating pages never stop.
        let mut a = FaultStreak::default();
        assert!((0..10 * MAX_REPEATS).all(|i| a.resolved(u64::from(i % 2) << 12)));
    }
}
