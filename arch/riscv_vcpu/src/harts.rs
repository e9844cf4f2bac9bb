//! What the vCPUs (harts) of one VM share: software interrupts sent between them (SBI IPI),
//! remote fences (SBI RFENCE), the notifier that wakes them, and the VM's virtual PLIC,
//! whose outputs are their external interrupts.
//!
//! Portable and host-tested: the CSR and fence instructions stay in `vcpu`, which calls
//! [`VmHarts::enter`] / [`VmHarts::leave`] around every guest entry.
//!
//! ## Remote fences
//!
//! A hart asking another one to fence must not return to its guest until the target can no
//! longer run guest code with stale translations. Each hart has
//!
//! - `fences`: the kinds of fence requested and not yet performed (a bit set),
//! - `req` / `ack`: how many requests were made of it, and how many it has performed,
//! - `in_guest`: whether it may be running guest code right now (set before it reads its
//!   requests on entry, cleared as soon as it leaves the guest).
//!
//! The requester ORs the kinds into each target's `fences`, increments its `req` and
//! notifies it (which sends an IPI to a running target, so it leaves the guest); then, for
//! each target, it waits while the target is `in_guest` with `ack` below the `req` it read.
//! A target entering the guest sets `in_guest`, reads `req`, takes `fences`, performs them
//! and only then publishes `ack` = what it read. So when the requester stops waiting,
//! either the target has fenced (`ack` covers the request) or it is outside the guest and
//! will fence before its next entry (it sets `in_guest` before reading `req`: the classic
//! store-then-load pairing, hence `SeqCst` on both sides). A target that is off, halted or
//! descheduled costs the requester nothing. The wait is bounded by the time a running
//! target takes to leave the guest after the IPI; two harts fencing each other cannot
//! deadlock, because neither is `in_guest` while it handles its own call.

use alloc::sync::Arc;
use alloc::vec::Vec;
use axdevice_base::VcpuNotifier;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
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

/// One hart's slot.
#[derive(Default)]
struct Hart {
    /// A software interrupt was sent to it and is not yet in its `hvip.VSSIP`.
    ipi: AtomicBool,
    /// Fence kinds requested and not yet performed ([`fence`]).
    fences: AtomicU8,
    /// Fence requests made of it.
    req: AtomicU64,
    /// The value of `req` it had read when it last performed its fences.
    ack: AtomicU64,
    /// It may be running guest code.
    in_guest: AtomicBool,
}

/// The state the harts of one VM share. Create one per VM with [`VmHarts::new`] and give
/// each vCPU an `Arc` of it.
pub struct VmHarts {
    harts: Vec<Hart>,
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
            harts: (0..count).map(|_| Hart::default()).collect(),
            notifier,
            plic,
        })
    }

    /// How many harts the VM has.
    pub fn count(&self) -> usize {
        self.harts.len()
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
            if !hart.ipi.swap(true, Ordering::AcqRel) {
                self.notifier.notify(i);
            }
        }
        targets.contains(from, self.count())
    }

    /// Takes hart `hart`'s pending software interrupt (to move it into its `hvip.VSSIP`).
    pub fn take_ipi(&self, hart: usize) -> bool {
        self.harts.get(hart).is_some_and(|h| {
            // A plain load first: the common case (nothing sent) writes nothing.
            h.ipi.load(Ordering::Relaxed) && h.ipi.swap(false, Ordering::Acquire)
        })
    }

    /// Whether a software interrupt was sent to hart `hart` and not yet taken.
    pub fn ipi_pending(&self, hart: usize) -> bool {
        self.harts
            .get(hart)
            .is_some_and(|h| h.ipi.load(Ordering::Acquire))
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
        for (i, hart) in self.others(from, targets) {
            hart.fences.fetch_or(kinds, Ordering::SeqCst);
            hart.req.fetch_add(1, Ordering::SeqCst);
            self.notifier.notify(i);
        }
        for (_, hart) in self.others(from, targets) {
            let goal = hart.req.load(Ordering::SeqCst);
            while hart.in_guest.load(Ordering::SeqCst) && hart.ack.load(Ordering::Acquire) < goal {
                core::hint::spin_loop();
            }
        }
        targets.contains(from, self.count())
    }

    /// Called by hart `hart` right before it enters the guest: marks it in the guest, then
    /// calls `perform` with the fences requested of it (if any) and acknowledges them.
    pub fn enter(&self, hart: usize, perform: impl FnOnce(u8)) {
        let Some(h) = self.harts.get(hart) else {
            return;
        };
        h.in_guest.store(true, Ordering::SeqCst);
        let seen = h.req.load(Ordering::SeqCst);
        if h.ack.load(Ordering::Relaxed) == seen {
            return;
        }
        let kinds = h.fences.swap(0, Ordering::SeqCst);
        if kinds != 0 {
            perform(kinds);
        }
        h.ack.store(seen, Ordering::Release);
    }

    /// Called by hart `hart` as soon as it has left the guest.
    pub fn leave(&self, hart: usize) {
        if let Some(h) = self.harts.get(hart) {
            h.in_guest.store(false, Ordering::SeqCst);
        }
    }

    /// Hart `hart` (re)starts from its reset state: a software interrupt sent while it was
    /// off is dropped. Fence requests stay: they are performed at its first entry.
    pub fn reset_hart(&self, hart: usize) {
        if let Some(h) = self.harts.get(hart) {
            h.ipi.store(false, Ordering::Release);
        }
    }

    /// The harts of `targets` other than `from`, with their slots.
    fn others(&self, from: usize, targets: HartSet) -> impl Iterator<Item = (usize, &Hart)> {
        let count = self.harts.len();
        self.harts
            .iter()
            .enumerate()
            .filter(move |&(i, _)| i != from && targets.contains(i, count))
    }
}

#[cfg(test)]
mod tests;
