//! What the vCPUs (harts) of one VM share: software interrupts sent between them (SBI IPI),
//! remote fences (SBI RFENCE), the notifier that wakes them, and the VM's virtual PLIC,
//! whose outputs are their external interrupts.
//!
//! Portable and host-tested: the CSR and fence instructions stay in `vcpu`, which keeps its
//! hart's slot ([`VmHarts::hart`]) and calls [`Hart::enter`] / [`Hart::leave`] around every
//! guest entry.
//!
//! ## One word per hart
//!
//! Everything a hart must look at before it enters the guest is one atomic word, `state`:
//! whether it is in the guest (`IN_GUEST`), a software interrupt sent to it (`IPI`) and the
//! fence kinds requested of it. Entering is one read-modify-write that sets `IN_GUEST` and
//! returns what was pending; in the common case nothing is, and the entry is done. Leaving
//! clears `IN_GUEST` with another. Other harts only set bits in it (a send, a request).
//!
//! ## Remote fences
//!
//! A hart asking another one to fence must not return to its guest until the target can no
//! longer run guest code with stale translations. Besides its `state`, each hart has
//! `req` / `ack`: how many requests were made of it, and the value of `req` it had read when
//! it last performed its fences.
//!
//! The requester sets the kinds in the target's `state`, then increments its `req` and
//! notifies it (which sends an IPI to a running target, so it leaves the guest); then, for
//! each target, it waits while the target is `IN_GUEST` with `ack` below the `req` it read.
//! A target entering the guest sets `IN_GUEST` and, if kinds were pending, reads `req`,
//! takes the kinds (clearing them), performs them and only then publishes `ack` = what it
//! read. So when the requester stops waiting, either the target has fenced (its `ack`
//! covers the request: it read `req` after the increment, so it took the kinds set before
//! it, or an earlier entry did and performed them), or the requester saw `IN_GUEST` clear
//! after setting its kinds, and then the target's next entry, a later modification of the
//! same word, finds them. Every step on `state` is a read-modify-write of one location, so
//! they are totally ordered whatever their memory ordering; `SeqCst` is still used for the
//! entry, the kinds, `req` and the requester's `IN_GUEST` check, which pair as a
//! store-then-load across two locations (`state` and `req`). A target whose entry misses a
//! request that is being made (kinds set after its entry) is `IN_GUEST`, and the requester
//! waits for it. A target that is off, halted or descheduled costs the requester nothing.
//! The wait is bounded by the time a running target takes to leave the guest after the
//! IPI; two harts fencing each other cannot deadlock, because neither is `IN_GUEST` while
//! it handles its own call.

use alloc::sync::Arc;
use alloc::vec::Vec;
use axdevice_base::VcpuNotifier;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use riscv_vplic::Vplic;

use crate::decode::sbi;

/// A set of harts as an SBI call names it: `hart_mask` is a bit set of hart ids starting at
/// `hart_mask_base`, and a base of -1 (all ones) means every hart (the mask is ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HartSet {
    /// Every hart of the VM.
    All,
    /// Hart `base + i` for every bit `i` set in `mask`.
    Mask {
        /// The bit set.
        mask: u64,
        /// The hart id of bit 0.
        base: u64,
    },
}

impl HartSet {
    /// Decodes `(hart_mask, hart_mask_base)` for a VM with `count` harts (ids `0..count`).
    /// Any hart named that does not exist (including one whose id would overflow) is
    /// `Err(SBI_ERR_INVALID_PARAM)`. An empty mask names no hart and is valid.
    pub fn decode(mask: u64, base: u64, count: usize) -> Result<Self, u64> {
        if base == u64::MAX {
            return Ok(Self::All);
        }
        let mut rest = mask;
        while rest != 0 {
            let bit = u64::from(rest.trailing_zeros());
            match base.checked_add(bit) {
                Some(hart) if hart < count as u64 => {}
                _ => return Err(sbi::ERR_INVALID_PARAM),
            }
            rest &= rest - 1;
        }
        Ok(Self::Mask { mask, base })
    }

    /// Whether hart `hart` is in the set (of a VM with `count` harts).
    pub fn contains(&self, hart: usize, count: usize) -> bool {
        if hart >= count {
            return false;
        }
        match *self {
            Self::All => true,
            Self::Mask { mask, base } => (hart as u64)
                .checked_sub(base)
                .is_some_and(|bit| bit < 64 && mask & (1 << bit) != 0),
        }
    }

    /// The harts in the set, in increasing order (of a VM with `count` harts).
    pub fn iter(self, count: usize) -> impl Iterator<Item = usize> {
        (0..count).filter(move |&h| self.contains(h, count))
    }
}

/// Kinds of fence a hart can be asked to perform, as bits of a `u8`.
pub mod fence {
    /// `fence.i`: later instruction fetches see earlier stores.
    pub const ICACHE: u8 = 1 << 0;
    /// `hfence.vvma` for the VM's VMID: drop its VS-stage translations (all addresses and
    /// ASIDs; a request for one range or ASID is served by this larger flush).
    pub const VVMA: u8 = 1 << 1;
}

/// Bits of [`Hart::state`]: what is pending in the low bits (tested with one immediate),
/// whether the hart is in the guest in the next one (`IN_GUEST` and its complement are
/// both 12-bit immediates: one instruction each, nothing kept in a register across a guest
/// run).
mod state {
    /// A software interrupt was sent to it and is not yet in its `hvip.VSSIP`.
    pub const IPI: u32 = 1 << 0;
    /// Where the fence kinds ([`super::fence`]) requested and not yet performed start.
    pub const FENCE_SHIFT: u32 = 1;
    /// Every fence kind.
    pub const FENCES: u32 = 0xff << FENCE_SHIFT;
    /// Anything the hart must take before it enters the guest.
    pub const PENDING: u32 = IPI | FENCES;
    const _: () = assert!(IN_GUEST & PENDING == 0 && IN_GUEST < 1 << 11);
    /// The hart may be running guest code.
    pub const IN_GUEST: u32 = 1 << 9;
}

/// One hart's slot: its vCPU keeps an `Arc` of it ([`VmHarts::hart`]) and calls
/// [`Hart::enter`] / [`Hart::leave`] around every guest entry.
#[derive(Default)]
pub struct Hart {
    /// [`state`] bits: in the guest, IPI pending, fence kinds pending.
    state: AtomicU32,
    /// Fence requests made of it.
    req: AtomicU64,
    /// The value of `req` it had read when it last performed its fences.
    ack: AtomicU64,
}

impl core::fmt::Debug for Hart {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Hart")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Hart {
    /// Called by the hart right before it enters the guest: marks it in the guest, then
    /// calls `perform` with the fences requested of it (if any) and acknowledges them.
    /// Returns whether a software interrupt was sent to it since it last entered (taken
    /// now: the caller raises its `VSSIP`).
    #[inline]
    pub fn enter(&self, perform: impl FnOnce(u8)) -> bool {
        if self.state.fetch_or(state::IN_GUEST, Ordering::SeqCst) & state::PENDING == 0 {
            return false;
        }
        self.take_pending(perform)
    }

    /// [`Self::enter`] when something was pending: out of line, the entry's common case
    /// stays short.
    #[inline(never)]
    fn take_pending(&self, perform: impl FnOnce(u8)) -> bool {
        // `req` before the kinds: an `ack` of what was read covers only requests whose
        // kinds were set before it, so they are taken here (module documentation).
        let seen = self.req.load(Ordering::SeqCst);
        let taken = self.state.fetch_and(!state::PENDING, Ordering::SeqCst);
        let kinds = ((taken & state::FENCES) >> state::FENCE_SHIFT) as u8;
        if kinds != 0 {
            perform(kinds);
        }
        self.ack.store(seen, Ordering::Release);
        taken & state::IPI != 0
    }

    /// Called by the hart as soon as it has left the guest. Release: a requester that sees
    /// `IN_GUEST` clear needs nothing else of this hart (its kinds wait in the same word
    /// for the next entry).
    #[inline]
    pub fn leave(&self) {
        self.state.fetch_and(!state::IN_GUEST, Ordering::Release);
    }
}

/// The state the harts of one VM share. Create one per VM with [`VmHarts::new`] and give
/// each vCPU an `Arc` of it.
pub struct VmHarts {
    harts: Vec<Arc<Hart>>,
    notifier: Arc<dyn VcpuNotifier>,
    plic: Option<Arc<Vplic>>,
}

impl core::fmt::Debug for VmHarts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VmHarts")
            .field("harts", &self.harts.len())
            .field("plic", &self.plic.is_some())
            .finish_non_exhaustive()
    }
}

impl VmHarts {
    /// The shared state of a VM with `count` harts (hart `i` is vCPU `i`), whose harts are
    /// woken through `notifier` and whose external interrupts come from `plic` (context `i`
    /// is hart `i`'s), if it has one.
    pub fn new(
        count: usize,
        notifier: Arc<dyn VcpuNotifier>,
        plic: Option<Arc<Vplic>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            harts: (0..count).map(|_| Arc::new(Hart::default())).collect(),
            notifier,
            plic,
        })
    }

    /// How many harts the VM has.
    pub fn count(&self) -> usize {
        self.harts.len()
    }

    /// Hart `hart`'s slot, for its vCPU (`None` beyond the VM's harts).
    pub fn hart(&self, hart: usize) -> Option<Arc<Hart>> {
        self.harts.get(hart).cloned()
    }

    /// The VM's virtual PLIC, if it has one.
    pub fn plic(&self) -> Option<&Arc<Vplic>> {
        self.plic.as_ref()
    }

    /// Sends a supervisor software interrupt from hart `from` to every hart in `targets`
    /// except `from` itself: marks it pending and notifies the hart. Returns whether `from`
    /// is in `targets` (the caller raises its own `VSSIP`).
    ///
    /// A hart whose mark is already set is not notified again: whoever set the mark
    /// notified it after setting it, and the hart has not taken the mark since, so it will
    /// see this IPI too (IPIs are a pending bit: they coalesce). A flood of IPIs therefore
    /// costs the target one notification per IPI it takes, not one per IPI sent.
    pub fn send_ipi(&self, from: usize, targets: HartSet) -> bool {
        for (i, hart) in self.others(from, targets) {
            if hart.state.fetch_or(state::IPI, Ordering::AcqRel) & state::IPI == 0 {
                self.notifier.notify(i);
            }
        }
        targets.contains(from, self.count())
    }

    /// Whether a software interrupt was sent to hart `hart` and not yet taken.
    pub fn ipi_pending(&self, hart: usize) -> bool {
        self.harts
            .get(hart)
            .is_some_and(|h| h.state.load(Ordering::Acquire) & state::IPI != 0)
    }

    /// The VM's PLIC output for hart `hart` (its supervisor external interrupt); `false`
    /// without a PLIC.
    pub fn external_pending(&self, hart: usize) -> bool {
        self.plic.as_ref().is_some_and(|p| p.external_pending(hart))
    }

    /// Asks every hart in `targets` except `from` to perform the fences `kinds` ([`fence`])
    /// and returns once none of them can run guest code without having performed them (see
    /// the module documentation). Returns whether `from` is in `targets` (the caller fences
    /// itself). Must be called while `from` is not in the guest.
    pub fn remote_fence(&self, from: usize, targets: HartSet, kinds: u8) -> bool {
        let bits = u32::from(kinds) << state::FENCE_SHIFT;
        if bits == 0 {
            // Nothing to perform: no target could be waited for.
            return targets.contains(from, self.count());
        }
        for (i, hart) in self.others(from, targets) {
            hart.state.fetch_or(bits, Ordering::SeqCst);
            hart.req.fetch_add(1, Ordering::SeqCst);
            self.notifier.notify(i);
        }
        for (_, hart) in self.others(from, targets) {
            let goal = hart.req.load(Ordering::SeqCst);
            while hart.state.load(Ordering::SeqCst) & state::IN_GUEST != 0
                && hart.ack.load(Ordering::Acquire) < goal
            {
                core::hint::spin_loop();
            }
        }
        targets.contains(from, self.count())
    }

    /// Hart `hart` (re)starts from its reset state: a software interrupt sent while it was
    /// off is dropped. Fence requests stay: they are performed at its first entry.
    pub fn reset_hart(&self, hart: usize) {
        if let Some(h) = self.harts.get(hart) {
            h.state.fetch_and(!state::IPI, Ordering::Release);
        }
    }

    /// The harts of `targets` other than `from`, with their slots.
    fn others(&self, from: usize, targets: HartSet) -> impl Iterator<Item = (usize, &Hart)> {
        let count = self.harts.len();
        self.harts
            .iter()
            .map(|h| &**h)
            .enumerate()
            .filter(move |&(i, _)| i != from && targets.contains(i, count))
    }
}

#[cfg(test)]
mod tests;
