//! The interrupt state of one VM and the rules that move it: pending, enabled, active,
//! routing, delivery into list registers and reading them back.
//!
//! Everything here runs under the [`Vgic`](crate::Vgic)'s lock. Operations that can make
//! an interrupt newly deliverable return a *notify mask*: bit `v` set means vCPU `v` must be
//! told (the caller calls the notifier, still holding the lock).

use alloc::vec::Vec;

use log::{debug, warn};

use crate::lr::{ListReg, ListRegs, LrState};
use crate::GicVersion;

/// The most list registers the model uses (the architectural maximum).
pub(crate) const MAX_LRS: usize = 16;
/// INTIDs 0..32 are private to each vCPU (SGIs and PPIs).
pub(crate) const PRIVATE_IRQS: u32 = 32;
/// INTIDs 0..16 are SGIs.
pub(crate) const SGIS: u32 = 16;
/// Priority bits kept (32 levels, as many as a GICv2 list register can carry).
pub(crate) const PRIO_MASK: u8 = 0xf8;
/// `GICD_IROUTER<n>` bits kept: Aff0..Aff2 \[23:0\], IRM \[31\], Aff3 \[39:32\].
pub(crate) const ROUTE_MASK: u64 = 0x0000_00ff_80ff_ffff;
/// `GICD_IROUTER<n>.Interrupt_Routing_Mode`.
pub(crate) const ROUTE_IRM: u64 = 1 << 31;

/// Bookkeeping for an interrupt that sits in one of a vCPU's list registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InLr {
    /// The vCPU whose list register holds it.
    pub owner: u8,
    /// Which list register.
    pub slot: u8,
    /// Its state as of the last flush or sync.
    pub state: LrState,
    /// The pending part of `state` was taken from the pending latch (or, for a GICv2 SGI,
    /// from a source bit) and must be put back if the list register is taken away while
    /// still pending. False when the pending state comes from a level line.
    pub took: bool,
    /// GICv2 SGI source CPU written into the list register.
    pub source: u8,
    /// The EOI-maintenance bit written into the list register.
    pub eoi: bool,
    /// The guest cleared the pending state (ICPENDR) while it was in the list register:
    /// remove it at the next flush.
    pub clear_pending: bool,
    /// The guest cleared the active state (ICACTIVER): remove it at the next flush.
    pub clear_active: bool,
}

/// The state of one interrupt (one INTID of one vCPU for SGIs/PPIs, or one SPI).
#[derive(Clone, Debug)]
pub(crate) struct Irq {
    /// ISENABLER / ICENABLER.
    pub enabled: bool,
    /// The pending latch: an edge, a write to ISPENDR, an SGI (not for GICv2 SGIs, which
    /// keep one bit per source in [`Cpu::sgi_sources`]).
    pub latch: bool,
    /// The input line level (level and edge interrupts driven by a device model).
    pub line: bool,
    /// Active, set through ISACTIVER while not in a list register.
    pub active: bool,
    /// Edge-triggered (ICFGR Int_config\[1\] = 1) rather than level-sensitive.
    pub edge: bool,
    /// Group 1 (IGROUPR bit set) rather than group 0.
    pub group1: bool,
    /// IPRIORITYR byte (low three bits always zero).
    pub priority: u8,
    /// GICv2 SPIs: ITARGETSR byte (bits of existing vCPUs only).
    pub targets: u8,
    /// GICv3 SPIs: GICD_IROUTER value (bits of [`ROUTE_MASK`] only).
    pub route: u64,
    /// Where it sits when it is in a list register.
    pub lr: Option<InLr>,
    /// A line from a physical device (passthrough): when the guest ends the interrupt (its
    /// list register becomes invalid) the line is lowered and the INTID reported through
    /// [`State::resampled`], so the hypervisor re-samples the physical line.
    pub resample: bool,
}

impl Irq {
    fn new(edge: bool, enabled: bool, group1: bool) -> Self {
        Irq {
            enabled,
            latch: false,
            line: false,
            active: false,
            edge,
            group1,
            priority: 0,
            targets: 0x01,
            route: 0,
            lr: None,
            resample: false,
        }
    }
}

/// Per-vCPU state: the private interrupts and the list-register bookkeeping.
pub(crate) struct Cpu {
    /// INTIDs 0..32.
    pub private: Vec<Irq>,
    /// GICv2: for each SGI, one pending bit per source vCPU.
    pub sgi_sources: [u8; SGIS as usize],
    /// The INTID each list register holds, as far as the model knows (changed only
    /// through [`Cpu::set_slot`], which keeps `used` in step).
    slots: [Option<u32>; MAX_LRS],
    /// Bit `s` set while `slots[s]` holds an interrupt: an exit with nothing in the list
    /// registers (the common case) visits none of them.
    used: u16,
    /// GICv3 `GICR_WAKER.ProcessorSleep`.
    pub asleep: bool,
}

impl Cpu {
    /// The INTID list register `slot` holds, as far as the model knows.
    pub fn slot(&self, slot: usize) -> Option<u32> {
        self.slots[slot]
    }

    /// Records what list register `slot` holds.
    fn set_slot(&mut self, slot: usize, intid: Option<u32>) {
        self.slots[slot] = intid;
        match intid {
            Some(_) => self.used |= 1 << slot,
            None => self.used &= !(1 << slot),
        }
    }

    /// The list registers that hold an interrupt, lowest first.
    pub fn used_slots(&self) -> impl Iterator<Item = usize> {
        bits(u64::from(self.used))
    }

    /// The INTIDs the list registers hold.
    pub fn held(&self) -> impl Iterator<Item = u32> + '_ {
        self.used_slots().filter_map(|s| self.slots[s])
    }
}

/// Which interrupt: a private one of a vCPU, or an SPI (index from INTID 32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Id {
    /// `(vcpu, intid)` with `intid < 32`.
    Private(usize, u32),
    /// `intid - 32`.
    Spi(usize),
}

impl Id {
    /// The INTID.
    pub fn intid(self) -> u32 {
        match self {
            Id::Private(_, i) => i,
            Id::Spi(i) => i as u32 + PRIVATE_IRQS,
        }
    }
}

/// The whole model state of one VM's GIC.
pub(crate) struct State {
    pub version: GicVersion,
    pub vcpus: usize,
    /// INTIDs `0..nr_irqs` exist.
    pub nr_irqs: u32,
    /// GICD_CTLR group enables: bit 0 group 0, bit 1 group 1.
    pub ctlr: u32,
    pub spis: Vec<Irq>,
    pub cpus: Vec<Cpu>,
    /// Resample SPIs the guest ended since the last [`Vgic::take_resampled`](crate::Vgic::take_resampled).
    pub resampled: Vec<u32>,
    /// Interrupts that may be deliverable without being in a list register: a superset,
    /// one bit per private interrupt of each vCPU and per SPI. Every change to an
    /// interrupt's state sets its bit ([`State::irq_mut`], [`State::modify`]); a flush clears
    /// the bits of the ones it finds not enabled, not pending or in a list register. So a
    /// flush looks at a handful of interrupts instead of every one the VM has.
    hint_private: Vec<u32>,
    hint_spis: Vec<u64>,
}

/// Bit `v` of a notify mask.
fn bit(v: usize) -> u64 {
    if v < 64 {
        1 << v
    } else {
        0
    }
}

impl State {
    /// A VM's GIC after reset. `vcpus` and `nr_irqs` are already validated.
    pub fn new(version: GicVersion, vcpus: usize, nr_irqs: u32) -> Self {
        let v2 = version == GicVersion::V2;
        // GICv2 guests (Linux's irq-gic) leave everything in group 0 and enable group 0;
        // GICv3 guests use group 1 only, so that is the GICv3 reset value.
        let group1 = !v2;
        let cpus = (0..vcpus)
            .map(|_| Cpu {
                private: (0..PRIVATE_IRQS)
                    .map(|i| {
                        let sgi = i < SGIS;
                        // GICv2 SGIs are always enabled (ISENABLER0[15:0] RAO/WI).
                        Irq::new(sgi, sgi && v2, group1)
                    })
                    .collect(),
                sgi_sources: [0; SGIS as usize],
                slots: [None; MAX_LRS],
                used: 0,
                asleep: true,
            })
            .collect();
        let spis = (PRIVATE_IRQS..nr_irqs)
            .map(|_| Irq::new(false, false, group1))
            .collect();
        let nr_spis = (nr_irqs - PRIVATE_IRQS) as usize;
        State {
            hint_private: alloc::vec![u32::MAX; vcpus],
            // Every interrupt marked: the first flush looks at all of them.
            hint_spis: (0..nr_spis.div_ceil(64))
                .map(|w| match nr_spis - w * 64 {
                    left if left >= 64 => u64::MAX,
                    left => (1 << left) - 1,
                })
                .collect(),
            version,
            vcpus,
            nr_irqs,
            ctlr: 0,
            spis,
            cpus,
            resampled: Vec::new(),
        }
    }

    /// Whether this is the GICv2 flavour.
    pub fn v2(&self) -> bool {
        self.version == GicVersion::V2
    }

    /// The bits of existing vCPUs in a GICv2 CPU mask.
    pub fn cpu_mask(&self) -> u8 {
        ((1u16 << self.vcpus.min(8)) - 1) as u8
    }

    /// INTID `intid` as seen by vCPU `ctx` (private interrupts are `ctx`'s own), or `None`
    /// when no such interrupt exists.
    pub fn resolve(&self, ctx: usize, intid: u32) -> Option<Id> {
        if intid < PRIVATE_IRQS {
            (ctx < self.vcpus).then_some(Id::Private(ctx, intid))
        } else if intid < self.nr_irqs {
            Some(Id::Spi((intid - PRIVATE_IRQS) as usize))
        } else {
            None
        }
    }

    /// The interrupt `id`.
    pub fn irq(&self, id: Id) -> &Irq {
        match id {
            Id::Private(v, i) => &self.cpus[v].private[i as usize],
            Id::Spi(i) => &self.spis[i],
        }
    }

    /// The interrupt `id`, mutably (and marked as maybe deliverable, see `hint_private`).
    pub fn irq_mut(&mut self, id: Id) -> &mut Irq {
        self.mark(id);
        match id {
            Id::Private(v, i) => &mut self.cpus[v].private[i as usize],
            Id::Spi(i) => &mut self.spis[i],
        }
    }

    /// Marks `id` as maybe deliverable: the next flush looks at it.
    fn mark(&mut self, id: Id) {
        match id {
            Id::Private(v, i) => self.hint_private[v] |= 1 << i,
            Id::Spi(i) => self.hint_spis[i / 64] |= 1 << (i % 64),
        }
    }

    /// What a mark stands for: `id` is enabled, outside the list registers, and pending or
    /// with its line high (a superset of "deliverable"; `wants` decides to whom).
    fn may_deliver(&self, id: Id) -> bool {
        let irq = self.irq(id);
        irq.enabled && irq.lr.is_none() && (irq.line || self.latched(id))
    }

    /// Test check of the invariant of `hint_private` / `hint_spis`: every interrupt that
    /// [`State::may_deliver`] is marked; and of [`Cpu::used`]: it says which slots hold one.
    #[cfg(test)]
    pub fn check_hints(&self) {
        let ids = (0..self.vcpus)
            .flat_map(|v| (0..PRIVATE_IRQS).map(move |i| Id::Private(v, i)))
            .chain((0..self.spis.len()).map(Id::Spi));
        for id in ids.filter(|&id| self.may_deliver(id)) {
            let marked = match id {
                Id::Private(v, i) => self.hint_private[v] & (1 << i) != 0,
                Id::Spi(i) => self.hint_spis[i / 64] & (1 << (i % 64)) != 0,
            };
            assert!(marked, "{id:?} may be deliverable but is not marked");
        }
        for (v, cpu) in self.cpus.iter().enumerate() {
            let used = (0..MAX_LRS)
                .filter(|&s| cpu.slots[s].is_some())
                .fold(0u16, |m, s| m | 1 << s);
            assert_eq!(cpu.used, used, "vCPU {v}: used list registers out of step");
        }
    }

    /// Clears the mark of `id`.
    fn unmark(&mut self, id: Id) {
        match id {
            Id::Private(v, i) => self.hint_private[v] &= !(1 << i),
            Id::Spi(i) => self.hint_spis[i / 64] &= !(1 << (i % 64)),
        }
    }

    /// A GICv2 SGI (pending per source).
    fn is_v2_sgi(&self, id: Id) -> bool {
        matches!(id, Id::Private(_, i) if i < SGIS) && self.v2()
    }

    /// Pending state that stays until consumed (latch or GICv2 SGI sources).
    pub fn latched(&self, id: Id) -> bool {
        match id {
            Id::Private(v, i) if self.is_v2_sgi(id) => self.cpus[v].sgi_sources[i as usize] != 0,
            _ => self.irq(id).latch,
        }
    }

    /// Pending in the distributor (not counting a list register).
    pub fn pending(&self, id: Id) -> bool {
        let irq = self.irq(id);
        self.latched(id) || (!irq.edge && irq.line)
    }

    /// Pending as the guest reads it in ISPENDR (distributor or list register).
    pub fn pending_view(&self, id: Id) -> bool {
        let in_lr = self
            .irq(id)
            .lr
            .is_some_and(|l| l.state.has_pending() && !l.clear_pending);
        self.pending(id) || in_lr
    }

    /// Active as the guest reads it in ISACTIVER (distributor or list register).
    pub fn active_view(&self, id: Id) -> bool {
        let irq = self.irq(id);
        irq.active
            || irq
                .lr
                .is_some_and(|l| l.state.has_active() && !l.clear_active)
    }

    /// Whether GICD_CTLR enables the group of `irq`.
    fn group_enabled(&self, irq: &Irq) -> bool {
        self.ctlr & (1 << u32::from(irq.group1)) != 0
    }

    /// The vCPU interrupt `id` is routed to, if any.
    pub fn target(&self, id: Id) -> Option<usize> {
        match id {
            Id::Private(v, _) => Some(v),
            Id::Spi(i) => {
                let irq = &self.spis[i];
                match self.version {
                    GicVersion::V2 => {
                        let m = irq.targets & self.cpu_mask();
                        (m != 0).then(|| m.trailing_zeros() as usize)
                    }
                    GicVersion::V3 => route_target(irq.route, self.vcpus),
                }
            }
        }
    }

    /// The vCPU that has something to do for interrupt `id`: the one it is deliverable to
    /// (pending, enabled, group enabled, routed there, not active, not in a list register),
    /// or, when it sits in a list register and has become pending again through its latch,
    /// the owner of that list register.
    pub fn wants(&self, id: Id) -> Option<usize> {
        let irq = self.irq(id);
        if !irq.enabled || !self.group_enabled(irq) {
            return None;
        }
        match irq.lr {
            None if !irq.active && self.pending(id) => self.target(id),
            None => None,
            // Latched behind its list register: the owner only needs disturbing when nothing
            // else will bring it back to the hypervisor. A list register with EOI
            // maintenance (every one since `inject` sets it) makes the guest exit when it
            // ends the interrupt, and the next flush delivers the latched one.
            Some(l) => (self.latched(id) && !l.eoi).then_some(usize::from(l.owner)),
        }
    }

    /// Runs `f` on interrupt `id` and returns the notify mask: the vCPU that now wants the
    /// interrupt, if that changed.
    pub fn modify(&mut self, id: Id, f: impl FnOnce(&mut Self, Id)) -> u64 {
        self.mark(id);
        let before = self.wants(id);
        f(self, id);
        match self.wants(id) {
            Some(v) if Some(v) != before => bit(v),
            _ => 0,
        }
    }

    // ---- operations (guest registers and hypervisor calls) ----

    /// The input line of `id` goes to `level`. A rising edge latches an edge interrupt; a
    /// level interrupt is pending while the line is high.
    pub fn set_line(&mut self, id: Id, level: bool) -> u64 {
        if self.irq(id).line == level {
            // Nothing changes (no edge either): the vCPUs' view and the marks stay right. The
            // virtual timer's level is set on every entry, so this is the common case.
            return 0;
        }
        self.modify(id, |s, id| {
            let irq = s.irq_mut(id);
            if irq.edge && level && !irq.line {
                irq.latch = true;
            }
            irq.line = level;
        })
    }

    /// ISPENDR: set pending (ignored for GICv2 SGIs, which use SPENDSGIR).
    pub fn set_pending(&mut self, id: Id) -> u64 {
        if self.is_v2_sgi(id) {
            return 0;
        }
        self.modify(id, |s, id| s.irq_mut(id).latch = true)
    }

    /// ICPENDR: clear pending (ignored for GICv2 SGIs, which use CPENDSGIR). A level
    /// interrupt whose line is high stays pending.
    pub fn clear_pending(&mut self, id: Id) -> u64 {
        if self.is_v2_sgi(id) {
            return 0;
        }
        self.modify(id, |s, id| {
            let irq = s.irq_mut(id);
            irq.latch = false;
            if let Some(l) = irq.lr.as_mut() {
                l.clear_pending = true;
            }
        })
    }

    /// ISACTIVER: set active. Ignored while the interrupt is in a list register.
    pub fn set_active(&mut self, id: Id) -> u64 {
        self.modify(id, |s, id| {
            let irq = s.irq_mut(id);
            if irq.lr.is_none() {
                irq.active = true;
            }
        })
    }

    /// ICACTIVER: clear active (in a list register: at the owner's next flush).
    pub fn clear_active(&mut self, id: Id) -> u64 {
        self.modify(id, |s, id| {
            let irq = s.irq_mut(id);
            irq.active = false;
            if let Some(l) = irq.lr.as_mut() {
                if l.state.has_active() {
                    l.clear_active = true;
                }
            }
        })
    }

    /// ICC_DIR_EL1 of vCPU `v`: clears the active state of `intid` if it is in one of `v`'s
    /// list registers (at `v`'s next flush); otherwise nothing.
    pub fn deactivate_in_lr(&mut self, v: usize, intid: u32) -> u64 {
        let Some(id) = self.resolve(v, intid) else {
            return 0;
        };
        let in_own_lr = self
            .irq(id)
            .lr
            .is_some_and(|l| usize::from(l.owner) == v && l.state.has_active());
        if !in_own_lr {
            return 0;
        }
        self.clear_active(id)
    }

    /// ISENABLER / ICENABLER. GICv2 SGIs cannot be disabled.
    pub fn set_enabled(&mut self, id: Id, on: bool) -> u64 {
        if self.is_v2_sgi(id) {
            return 0;
        }
        self.modify(id, |s, id| s.irq_mut(id).enabled = on)
    }

    /// IGROUPR.
    pub fn set_group1(&mut self, id: Id, on: bool) -> u64 {
        self.modify(id, |s, id| s.irq_mut(id).group1 = on)
    }

    /// ICFGR Int_config\[1\]. SGIs are always edge-triggered.
    pub fn set_edge(&mut self, id: Id, edge: bool) -> u64 {
        if id.intid() < SGIS {
            return 0;
        }
        self.modify(id, |s, id| s.irq_mut(id).edge = edge)
    }

    /// IPRIORITYR byte.
    pub fn set_priority(&mut self, id: Id, prio: u8) {
        self.irq_mut(id).priority = prio & PRIO_MASK;
    }

    /// GICv2 ITARGETSR byte of an SPI (bits of missing vCPUs are dropped).
    pub fn set_targets(&mut self, id: Id, targets: u8) -> u64 {
        if !matches!(id, Id::Spi(_)) {
            return 0;
        }
        let mask = self.cpu_mask();
        self.modify(id, |s, id| s.irq_mut(id).targets = targets & mask)
    }

    /// GICv3 GICD_IROUTER of an SPI.
    pub fn set_route(&mut self, id: Id, route: u64) -> u64 {
        if !matches!(id, Id::Spi(_)) {
            return 0;
        }
        self.modify(id, |s, id| s.irq_mut(id).route = route & ROUTE_MASK)
    }

    /// GICD_CTLR group enables (bits 1:0). Interrupts of a newly enabled group are
    /// notified; a disabled group's pending list registers are withdrawn at the next flush.
    pub fn set_ctlr(&mut self, value: u32) -> u64 {
        let old = self.ctlr;
        self.ctlr = value & 0b11;
        let newly = self.ctlr & !old;
        if newly == 0 {
            return 0;
        }
        let mut mask = 0;
        let ids = (0..self.vcpus)
            .flat_map(|v| (0..PRIVATE_IRQS).map(move |i| Id::Private(v, i)))
            .chain((0..self.spis.len()).map(Id::Spi));
        for id in ids {
            let group = 1 << u32::from(self.irq(id).group1);
            if newly & group != 0 {
                if let Some(w) = self.wants(id) {
                    mask |= bit(w);
                }
            }
        }
        mask
    }

    /// A GICv2 SGI `sgi` from vCPU `source` to vCPU `target`.
    pub fn send_sgi_v2(&mut self, source: usize, target: usize, sgi: u32) -> u64 {
        if target >= self.vcpus || source >= 8 || sgi >= SGIS {
            return 0;
        }
        self.modify(Id::Private(target, sgi), |s, _| {
            s.cpus[target].sgi_sources[sgi as usize] |= 1 << source;
        })
    }

    /// GICv2 SPENDSGIR / CPENDSGIR byte: set or clear source bits of SGI `id` of vCPU
    /// `ctx`.
    pub fn set_sgi_sources(&mut self, ctx: usize, sgi: u32, bits: u8, set: bool) -> u64 {
        if ctx >= self.vcpus || sgi >= SGIS {
            return 0;
        }
        let bits = bits & self.cpu_mask();
        self.modify(Id::Private(ctx, sgi), |s, id| {
            let src = &mut s.cpus[ctx].sgi_sources[sgi as usize];
            if set {
                *src |= bits;
            } else {
                *src &= !bits;
                if let Some(l) = s.irq_mut(id).lr.as_mut() {
                    if bits & (1 << l.source) != 0 {
                        l.clear_pending = true;
                    }
                }
            }
        })
    }

    /// A GICv3 SGI `sgi` to vCPU `target`.
    pub fn send_sgi_v3(&mut self, target: usize, sgi: u32) -> u64 {
        if target >= self.vcpus || sgi >= SGIS {
            return 0;
        }
        self.modify(Id::Private(target, sgi), |s, id| s.irq_mut(id).latch = true)
    }

    // ---- list registers ----

    /// Takes the latched pending state of `id` for a list register: clears the latch (or,
    /// for a GICv2 SGI, one source bit — `want` if it is set, otherwise the lowest).
    /// Returns whether something was taken and the SGI source.
    fn take_latch(&mut self, id: Id, want: Option<u8>) -> (bool, u8) {
        match id {
            Id::Private(v, i) if self.is_v2_sgi(id) => {
                let src = &mut self.cpus[v].sgi_sources[i as usize];
                if *src == 0 {
                    return (false, 0);
                }
                let s = match want {
                    Some(w) if w < 8 && *src & (1 << w) != 0 => w,
                    _ => src.trailing_zeros() as u8,
                };
                *src &= !(1 << s);
                (true, s)
            }
            _ => {
                let irq = self.irq_mut(id);
                let took = irq.latch;
                irq.latch = false;
                (took, 0)
            }
        }
    }

    /// Gives back a pending state taken by [`State::take_latch`].
    fn restore_latch(&mut self, id: Id, source: u8) {
        match id {
            Id::Private(v, i) if self.is_v2_sgi(id) => {
                if source < 8 {
                    self.mark(id);
                    self.cpus[v].sgi_sources[i as usize] |= 1 << source;
                }
            }
            _ => self.irq_mut(id).latch = true,
        }
    }

    /// Whether the latched pending state of `id` may be merged into a list register that
    /// carries SGI source `source` (always, except for another GICv2 SGI source).
    fn can_merge(&self, id: Id, source: u8) -> bool {
        match id {
            Id::Private(v, i) if self.is_v2_sgi(id) => {
                source < 8 && self.cpus[v].sgi_sources[i as usize] & (1 << source) != 0
            }
            _ => true,
        }
    }

    /// Whether a pending list register of vCPU `v` holding `id` is still wanted there.
    fn still_wanted(&self, v: usize, id: Id, took: bool) -> bool {
        let irq = self.irq(id);
        irq.enabled
            && self.group_enabled(irq)
            && self.target(id) == Some(v)
            && (took || (!irq.edge && irq.line))
    }

    /// The list register value for `id` in state `state`.
    fn lr_value(&self, id: Id, l: &InLr, state: LrState) -> ListReg {
        let irq = self.irq(id);
        ListReg {
            intid: id.intid(),
            state,
            priority: irq.priority,
            group1: irq.group1,
            eoi_maintenance: l.eoi,
            source: if self.is_v2_sgi(id) { l.source } else { 0 },
        }
    }

    /// Forgets that list register `slot` of vCPU `v` holds `id`.
    fn release(&mut self, v: usize, slot: usize, id: Option<Id>) {
        self.cpus[v].set_slot(slot, None);
        if let Some(id) = id {
            self.irq_mut(id).lr = None;
        }
    }

    /// The interrupt list register `slot` of vCPU `v` holds, with its bookkeeping; drops
    /// inconsistent bookkeeping (which should never exist).
    fn slot_entry(&mut self, v: usize, slot: usize) -> Option<(Id, InLr)> {
        let intid = self.cpus[v].slot(slot)?;
        let id = self.resolve(v, intid);
        let entry = id.and_then(|id| {
            self.irq(id)
                .lr
                .filter(|l| usize::from(l.owner) == v && usize::from(l.slot) == slot)
                .map(|l| (id, l))
        });
        if entry.is_none() {
            warn!("vgic: vCPU {v} LR{slot}: stale bookkeeping for INTID {intid} dropped");
            self.cpus[v].set_slot(slot, None);
        }
        entry
    }

    /// See [`Vgic::flush`](crate::Vgic::flush). Returns the notify mask for other vCPUs.
    pub fn flush(&mut self, v: usize, lrs: &mut dyn ListRegs) -> u64 {
        let n = lrs.count().min(MAX_LRS);
        let mut mask = 0;

        // 1. Bring the occupied list registers up to date with the distributor (each
        //    iteration changes only its own slot).
        for slot in self.cpus[v].used_slots() {
            let Some((id, mut l)) = self.slot_entry(v, slot) else {
                continue;
            };
            if slot >= n {
                // The hardware has fewer list registers than before: forget this one.
                if l.state.has_pending() && l.took {
                    self.restore_latch(id, l.source);
                }
                self.release(v, slot, Some(id));
                continue;
            }
            let old = l;
            let mut st = l.state;
            if l.clear_active {
                st = st.with_active(false);
            }
            if st.has_pending() && (l.clear_pending || !self.still_wanted(v, id, l.took)) {
                st = st.with_pending(false);
                if !l.clear_pending && l.took {
                    self.restore_latch(id, l.source);
                }
                l.took = false;
            }
            l.clear_pending = false;
            l.clear_active = false;
            let irq = self.irq(id);
            if st != LrState::Invalid && self.latched(id) && irq.enabled && self.group_enabled(irq)
            {
                if st == LrState::Active && self.can_merge(id, l.source) {
                    let (took, _) = self.take_latch(id, Some(l.source));
                    st = LrState::PendingActive;
                    l.took = took;
                } else {
                    // Learn when the list register frees up.
                    l.eoi = true;
                }
            }
            if st == LrState::Invalid {
                lrs.write(slot, ListReg::INVALID);
                self.release(v, slot, Some(id));
                if self.irq(id).resample {
                    self.irq_mut(id).line = false;
                    self.resampled.push(id.intid());
                }
                if let Some(w) = self.wants(id) {
                    if w != v {
                        mask |= bit(w);
                    }
                }
                continue;
            }
            l.state = st;
            if l != old {
                let value = self.lr_value(id, &l, st);
                if st != old.state || l.eoi != old.eoi || l.source != old.source {
                    lrs.write(slot, value);
                }
                self.irq_mut(id).lr = Some(l);
            }
        }

        // 2. Everything deliverable to `v`, highest priority (lowest value) first: only the
        //    marked interrupts can be (see `hint_private`). None marked (most exits): nothing
        //    to deliver, and no list register overflows.
        if self.hint_private[v] == 0 && self.hint_spis.iter().all(|&w| w == 0) {
            lrs.set_underflow_interrupt(false);
            return mask;
        }
        let mut cands = Candidates::default();
        for i in bits(u64::from(self.hint_private[v])) {
            self.consider(v, Id::Private(v, i as u32), &mut cands);
        }
        for w in 0..self.hint_spis.len() {
            for b in bits(self.hint_spis[w]) {
                self.consider(v, Id::Spi(w * 64 + b), &mut cands);
            }
        }

        // 3. Fill free list registers; a higher-priority interrupt may push out a
        //    lower-priority one that is only pending.
        let mut overflow = cands.dropped;
        for &(prio, intid) in cands.sorted() {
            let Some(id) = self.resolve(v, intid) else {
                continue;
            };
            let free = (0..n).find(|&s| self.cpus[v].slot(s).is_none());
            let slot = match free {
                Some(s) => s,
                None => match self.evictable(v, n, prio) {
                    Some(s) => {
                        self.evict(v, s, lrs);
                        overflow = true;
                        s
                    }
                    None => {
                        overflow = true;
                        break;
                    }
                },
            };
            self.inject(v, slot, id, lrs);
        }
        lrs.set_underflow_interrupt(overflow);
        mask
    }

    /// Adds marked interrupt `id` to vCPU `v`'s candidates if it is deliverable to `v`;
    /// clears its mark if it cannot be deliverable to anyone until its state changes.
    fn consider(&mut self, v: usize, id: Id, cands: &mut Candidates) {
        if !self.may_deliver(id) {
            self.unmark(id);
        } else if self.wants(id) == Some(v) {
            cands.push(self.irq(id).priority, id.intid());
        }
    }

    /// The list register of vCPU `v` (below `n`) holding a merely pending interrupt of lower
    /// priority than `prio` (the lowest such), if any.
    fn evictable(&self, v: usize, n: usize, prio: u8) -> Option<usize> {
        let mut best: Option<(u8, usize)> = None;
        for slot in 0..n {
            let Some(intid) = self.cpus[v].slot(slot) else {
                continue;
            };
            let Some(id) = self.resolve(v, intid) else {
                continue;
            };
            let irq = self.irq(id);
            let Some(l) = irq.lr else {
                continue;
            };
            if l.state == LrState::Pending
                && irq.priority > prio
                && best.is_none_or(|(p, _)| irq.priority > p)
            {
                best = Some((irq.priority, slot));
            }
        }
        best.map(|(_, s)| s)
    }

    /// Takes a merely pending interrupt out of list register `slot` of vCPU `v`.
    fn evict(&mut self, v: usize, slot: usize, lrs: &mut dyn ListRegs) {
        if let Some((id, l)) = self.slot_entry(v, slot) {
            if l.took {
                self.restore_latch(id, l.source);
            }
            self.release(v, slot, Some(id));
        }
        lrs.write(slot, ListReg::INVALID);
    }

    /// Puts `id` into free list register `slot` of vCPU `v` as pending.
    fn inject(&mut self, v: usize, slot: usize, id: Id, lrs: &mut dyn ListRegs) {
        let (took, source) = self.take_latch(id, None);
        // Always learn about the EOI: level interrupts so the line can be sampled again,
        // edge ones (SGIs) so an edge latched meanwhile is delivered then, without kicking
        // the vCPU for every edge (an SGI flood would otherwise cost an exit per SGI sent;
        // this way it costs one per SGI the guest takes).
        let eoi = true;
        let l = InLr {
            owner: v as u8,
            slot: slot as u8,
            state: LrState::Pending,
            took,
            source,
            eoi,
            clear_pending: false,
            clear_active: false,
        };
        let value = self.lr_value(id, &l, LrState::Pending);
        self.irq_mut(id).lr = Some(l);
        self.cpus[v].set_slot(slot, Some(id.intid()));
        lrs.write(slot, value);
    }

    /// See [`Vgic::sync`](crate::Vgic::sync). Returns the notify mask for other vCPUs.
    pub fn sync(&mut self, v: usize, lrs: &mut dyn ListRegs) -> u64 {
        let n = lrs.count().min(MAX_LRS);
        let mut mask = 0;
        for slot in self.cpus[v].used_slots().take_while(|&s| s < n) {
            let Some((id, mut l)) = self.slot_entry(v, slot) else {
                continue;
            };
            let hw = lrs.read(slot);
            let st = if hw.intid == id.intid() {
                hw.state
            } else {
                debug!(
                    "vgic: vCPU {v} LR{slot} holds INTID {} instead of {}; taken as invalid",
                    hw.intid,
                    id.intid()
                );
                LrState::Invalid
            };
            if st == LrState::Invalid {
                // Rewrite it empty: an invalid list register that keeps its EOI bit keeps
                // the EOI maintenance interrupt asserted.
                if hw != ListReg::INVALID {
                    lrs.write(slot, ListReg::INVALID);
                }
                self.release(v, slot, Some(id));
                if self.irq(id).resample {
                    self.irq_mut(id).line = false;
                    self.resampled.push(id.intid());
                }
                if let Some(w) = self.wants(id) {
                    if w != v {
                        mask |= bit(w);
                    }
                }
                continue;
            }
            if !st.has_pending() {
                l.took = false;
            }
            l.state = st;
            self.irq_mut(id).lr = Some(l);
        }
        mask
    }

    /// See [`Vgic::has_deliverable`](crate::Vgic::has_deliverable).
    pub fn has_deliverable(&self, v: usize) -> bool {
        if v >= self.vcpus {
            return false;
        }
        let in_lr = self.cpus[v].held().any(|intid| {
            self.resolve(v, intid)
                .and_then(|id| self.irq(id).lr)
                .is_some_and(|l| l.state.has_pending())
        });
        // Wanted by `v`: one in its list registers that became pending again, or a marked
        // one (an unmarked interrupt outside the list registers is not deliverable).
        let wanted = |id: Id| self.wants(id) == Some(v);
        let in_lr_wanted = self.cpus[v]
            .held()
            .filter_map(|intid| self.resolve(v, intid))
            .any(wanted);
        in_lr
            || in_lr_wanted
            || bits(u64::from(self.hint_private[v])).any(|i| wanted(Id::Private(v, i as u32)))
            || self
                .hint_spis
                .iter()
                .enumerate()
                .any(|(w, &word)| bits(word).any(|b| wanted(Id::Spi(w * 64 + b))))
    }
}

/// The indexes of the set bits of `word`, lowest first.
fn bits(mut word: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        (word != 0).then(|| {
            let b = word.trailing_zeros() as usize;
            word &= word - 1;
            b
        })
    })
}

/// The most urgent interrupts a flush found deliverable, at most [`MAX_LRS`]: no more can
/// get a list register in one flush.
#[derive(Default)]
struct Candidates {
    /// `(priority, INTID)`; the first `len` are used.
    items: [(u8, u32); MAX_LRS],
    len: usize,
    /// A less urgent candidate was left out: the list registers overflow.
    dropped: bool,
}

impl Candidates {
    /// Adds a candidate, leaving out the least urgent one when full.
    fn push(&mut self, priority: u8, intid: u32) {
        let item = (priority, intid);
        if self.len < MAX_LRS {
            self.items[self.len] = item;
            self.len += 1;
            return;
        }
        self.dropped = true;
        if let Some(worst) = self.items.iter_mut().max().filter(|w| item < **w) {
            *worst = item;
        }
    }

    /// The candidates, most urgent (lowest priority value, then lowest INTID) first.
    fn sorted(&mut self) -> &[(u8, u32)] {
        let used = &mut self.items[..self.len];
        used.sort_unstable();
        used
    }
}

/// The vCPU a GICD_IROUTER value routes to: IRM = 1 → vCPU 0; otherwise Aff0 when
/// Aff3..Aff1 are zero and Aff0 names an existing vCPU; otherwise none.
pub(crate) fn route_target(route: u64, vcpus: usize) -> Option<usize> {
    if route & ROUTE_IRM != 0 {
        return Some(0);
    }
    if route & ROUTE_MASK & !0xff != 0 {
        return None;
    }
    let aff0 = (route & 0xff) as usize;
    (aff0 < vcpus).then_some(aff0)
}
