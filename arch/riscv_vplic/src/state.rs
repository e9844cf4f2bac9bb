//! The PLIC core and its gateways, without any register decoding.
//!
//! Every source ID that reaches a method here has been checked by the caller to be a real
//! source (`1..=sources`), and every context to be `< contexts`; the methods still use
//! `get`/`get_mut` so that a bug in a caller cannot turn into a panic.

use alloc::vec;
use alloc::vec::Vec;

use axdevice_base::VcpuNotifier;

/// The word and bit of source `id` in a bitmap.
const fn bit(id: u32) -> (usize, u32) {
    ((id / 32) as usize, 1 << (id % 32))
}

/// Everything a PLIC remembers.
pub(crate) struct State {
    /// Highest source ID (the configuration's `sources`).
    sources: u32,
    /// Words in each bitmap: `(sources + 1).div_ceil(32)`.
    words: usize,
    /// Which bits of each bitmap word stand for an existing source (bit 0 of word 0, the
    /// reserved source 0, and bits above `sources` are clear).
    valid: Vec<u32>,
    /// The priority register of each source, indexed by ID; entry 0 stays 0.
    priority: Vec<u32>,
    /// The level each source's interrupt line is driven to.
    level: Vec<u32>,
    /// The interrupt pending (IP) bits.
    pending: Vec<u32>,
    /// Sources claimed and not yet completed: their gateway forwards no new request.
    in_service: Vec<u32>,
    /// The enable bits, `words` words per context, context after context.
    enable: Vec<u32>,
    /// The threshold register of each context.
    threshold: Vec<u32>,
    /// Each context's interrupt output as last computed (edge detection for the notifier).
    output: Vec<bool>,
    /// Resample sources (passthrough lines): completing one lowers its line and reports it.
    resample: Vec<u32>,
    /// Resample sources completed (or reset) and not yet taken by `take_resampled`.
    resampled: Vec<u32>,
}

impl State {
    /// A PLIC after reset: everything zero, every line low.
    pub(crate) fn new(sources: u32, contexts: usize) -> Self {
        let words = (sources as usize + 1).div_ceil(32);
        let mut valid = vec![0u32; words];
        for id in 1..=sources {
            let (w, b) = bit(id);
            valid[w] |= b;
        }
        Self {
            sources,
            words,
            valid,
            priority: vec![0; sources as usize + 1],
            level: vec![0; words],
            pending: vec![0; words],
            in_service: vec![0; words],
            enable: vec![0; words * contexts],
            threshold: vec![0; contexts],
            output: vec![false; contexts],
            resample: vec![0; words],
            resampled: vec![0; words],
        }
    }

    /// Back to the reset state, except for the line levels, which belong to the devices: a
    /// line still high makes its source pending again at once. Resample sources stay
    /// resample sources; their lines are lowered and all of them are reported (the device
    /// behind each is re-sampled, whether or not the guest had it in service).
    pub(crate) fn reset(&mut self) {
        for w in 0..self.words {
            let r = self.resample[w];
            self.level[w] &= !r;
            self.resampled[w] |= r;
        }
        self.priority.fill(0);
        self.in_service.fill(0);
        self.enable.fill(0);
        self.threshold.fill(0);
        self.output.fill(false);
        self.pending.copy_from_slice(&self.level);
    }

    /// Whether `id` names a real source.
    pub(crate) fn is_source(&self, id: u32) -> bool {
        id != 0 && id <= self.sources
    }

    /// Number of words in each bitmap.
    pub(crate) fn words(&self) -> usize {
        self.words
    }

    // ---- gateways ---------------------------------------------------------------------

    /// The gateway of source `id` sees its line at `high`. A line going (or staying) high
    /// makes the source pending unless it is in service; a line going low retracts nothing
    /// (a request already forwarded stays pending, as the specification says).
    pub(crate) fn set_level(&mut self, id: u32, high: bool) {
        if !self.is_source(id) {
            return;
        }
        let (w, b) = bit(id);
        let in_service = self.in_service.get(w).is_some_and(|s| s & b != 0);
        if let (Some(level), Some(pending)) = (self.level.get_mut(w), self.pending.get_mut(w)) {
            if high {
                *level |= b;
                if !in_service {
                    *pending |= b;
                }
            } else {
                *level &= !b;
            }
        }
    }

    /// Makes source `id` a resample source (`on`) or an ordinary one.
    pub(crate) fn set_resample(&mut self, id: u32, on: bool) {
        if !self.is_source(id) {
            return;
        }
        let (w, b) = bit(id);
        if let (Some(r), Some(done)) = (self.resample.get_mut(w), self.resampled.get_mut(w)) {
            if on {
                *r |= b;
            } else {
                *r &= !b;
                *done &= !b;
            }
        }
    }

    /// Calls `f` with each resample source completed since the last call, and forgets them.
    pub(crate) fn take_resampled(&mut self, f: &mut dyn FnMut(u32)) {
        for (w, word) in self.resampled.iter_mut().enumerate() {
            let mut bits = core::mem::take(word);
            while bits != 0 {
                f(w as u32 * 32 + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
    }

    /// Whether some resample source waits to be taken.
    pub(crate) fn any_resampled(&self) -> bool {
        self.resampled.iter().any(|&w| w != 0)
    }

    // ---- registers --------------------------------------------------------------------

    /// The priority register of source `id` (0 for a non-source).
    pub(crate) fn priority(&self, id: u32) -> u32 {
        if self.is_source(id) {
            self.priority.get(id as usize).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// Sets the priority of source `id` (already masked to the implemented bits).
    pub(crate) fn set_priority(&mut self, id: u32, value: u32) {
        if self.is_source(id) {
            if let Some(p) = self.priority.get_mut(id as usize) {
                *p = value;
            }
        }
    }

    /// Pending word `w` (0 past the end).
    pub(crate) fn pending_word(&self, w: usize) -> u32 {
        self.pending.get(w).copied().unwrap_or(0)
    }

    /// Enable word `w` of `ctx` (0 past the end).
    pub(crate) fn enable_word(&self, ctx: usize, w: usize) -> u32 {
        self.enable_index(ctx, w)
            .and_then(|i| self.enable.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Sets enable word `w` of `ctx`; bits of non-existent sources stay clear.
    pub(crate) fn set_enable_word(&mut self, ctx: usize, w: usize, value: u32) {
        let mask = self.valid.get(w).copied().unwrap_or(0);
        if let Some(i) = self.enable_index(ctx, w) {
            if let Some(e) = self.enable.get_mut(i) {
                *e = value & mask;
            }
        }
    }

    /// The threshold of `ctx` (0 for a non-context).
    pub(crate) fn threshold(&self, ctx: usize) -> u32 {
        self.threshold.get(ctx).copied().unwrap_or(0)
    }

    /// Sets the threshold of `ctx` (already masked to the implemented bits).
    pub(crate) fn set_threshold(&mut self, ctx: usize, value: u32) {
        if let Some(t) = self.threshold.get_mut(ctx) {
            *t = value;
        }
    }

    fn enable_index(&self, ctx: usize, w: usize) -> Option<usize> {
        if w < self.words {
            ctx.checked_mul(self.words)?.checked_add(w)
        } else {
            None
        }
    }

    fn enabled(&self, ctx: usize, id: u32) -> bool {
        let (w, b) = bit(id);
        self.enable_word(ctx, w) & b != 0
    }

    // ---- claim / complete -------------------------------------------------------------

    /// The pending source enabled for `ctx` with the highest priority strictly above
    /// `floor`, ties going to the lowest ID.
    fn best(&self, ctx: usize, floor: u32) -> Option<u32> {
        let mut best: Option<(u32, u32)> = None;
        for w in 0..self.words {
            let mut bits = self.pending_word(w) & self.enable_word(ctx, w);
            while bits != 0 {
                let id = w as u32 * 32 + bits.trailing_zeros();
                bits &= bits - 1;
                let p = self.priority(id);
                // IDs come in increasing order, so `>` keeps the lowest ID on a tie.
                if p > floor && best.is_none_or(|(_, bp)| p > bp) {
                    best = Some((id, p));
                }
            }
        }
        best.map(|(id, _)| id)
    }

    /// A claim by `ctx`: the best pending enabled source of non-zero priority (the threshold
    /// plays no part, per the specification), now in service; 0 if there is none.
    pub(crate) fn claim(&mut self, ctx: usize) -> u32 {
        let Some(id) = self.best(ctx, 0) else {
            return 0;
        };
        let (w, b) = bit(id);
        if let (Some(p), Some(s)) = (self.pending.get_mut(w), self.in_service.get_mut(w)) {
            *p &= !b;
            *s |= b;
        }
        id
    }

    /// A completion of `id` by `ctx`. Ignored (returns false) unless `id` is a source that
    /// is enabled for `ctx` and in service. If its line is still high it is pending again;
    /// a resample source instead has its line lowered and is reported (`take_resampled`):
    /// the hypervisor re-samples the physical line behind it.
    pub(crate) fn complete(&mut self, ctx: usize, id: u32) -> bool {
        if !self.is_source(id) || !self.enabled(ctx, id) {
            return false;
        }
        let (w, b) = bit(id);
        if self.in_service.get(w).is_none_or(|s| s & b == 0) {
            return false;
        }
        let resample = self.resample.get(w).is_some_and(|r| r & b != 0);
        if let (Some(s), Some(l), Some(p), Some(done)) = (
            self.in_service.get_mut(w),
            self.level.get_mut(w),
            self.pending.get_mut(w),
            self.resampled.get_mut(w),
        ) {
            *s &= !b;
            if resample {
                *l &= !b;
                *done |= b;
            } else if *l & b != 0 {
                *p |= b;
            }
        }
        true
    }

    // ---- outputs ----------------------------------------------------------------------

    /// Whether `ctx`'s output should be high: a pending source enabled for it with a
    /// priority above its threshold (so priority 0 never counts).
    fn compute_output(&self, ctx: usize) -> bool {
        let floor = self.threshold(ctx);
        (0..self.words).any(|w| {
            let mut bits = self.pending_word(w) & self.enable_word(ctx, w);
            while bits != 0 {
                let id = w as u32 * 32 + bits.trailing_zeros();
                bits &= bits - 1;
                if self.priority(id) > floor {
                    return true;
                }
            }
            false
        })
    }

    /// The output of `ctx` as last computed (false for a non-context).
    pub(crate) fn output(&self, ctx: usize) -> bool {
        self.output.get(ctx).copied().unwrap_or(false)
    }

    /// Recomputes every context's output and tells `notifier` about each one that went from
    /// low to high.
    pub(crate) fn update_outputs(&mut self, notifier: &dyn VcpuNotifier) {
        for ctx in 0..self.output.len() {
            let now = self.compute_output(ctx);
            if let Some(out) = self.output.get_mut(ctx) {
                let rose = now && !*out;
                *out = now;
                if rose {
                    notifier.notify(ctx);
                }
            }
        }
    }

    /// Internal consistency (for tests): no source is both pending and in service, and no
    /// bit is set for a non-existent source.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for w in 0..self.words {
            let valid = self.valid[w];
            assert_eq!(self.pending[w] & self.in_service[w], 0, "word {w}");
            assert_eq!(self.pending[w] & !valid, 0);
            assert_eq!(self.in_service[w] & !valid, 0);
            assert_eq!(self.level[w] & !valid, 0);
            assert_eq!(self.resample[w] & !valid, 0);
            assert_eq!(self.resampled[w] & !self.resample[w], 0);
            for ctx in 0..self.output.len() {
                assert_eq!(self.enable_word(ctx, w) & !valid, 0);
            }
            // A high line whose source is not in service is pending.
            assert_eq!(self.level[w] & !self.in_service[w] & !self.pending[w], 0);
        }
        assert_eq!(self.priority[0], 0);
        for ctx in 0..self.output.len() {
            assert_eq!(self.output[ctx], self.compute_output(ctx));
        }
    }
}
