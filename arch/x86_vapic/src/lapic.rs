//! The virtual local APIC of one vCPU.

use core::fmt;

use axdevice_base::{AccessWidth, DeviceError};

use crate::{Delivery, Destination, Message};

/// The `IA32_APIC_BASE` MSR.
pub const IA32_APIC_BASE: u32 = 0x1B;
/// The `IA32_TSC_DEADLINE` MSR.
pub const IA32_TSC_DEADLINE: u32 = 0x6E0;
/// The first x2APIC MSR (register offset 0 of the xAPIC page; MSR = 0x800 + offset / 16).
pub const X2APIC_MSR_FIRST: u32 = 0x800;
/// The last MSR of the x2APIC range.
pub const X2APIC_MSR_LAST: u32 = 0x8FF;
/// The size of the xAPIC register page.
pub const LAPIC_SIZE: usize = 0x1000;
/// The version register: version 0x14 (integrated APIC), 6 LVT entries (max LVT 5: timer,
/// thermal, performance counters, LINT0, LINT1, error; no CMCI), no EOI-broadcast
/// suppression.
pub const APIC_VERSION: u32 = 0x14 | (5 << 16);
/// `IA32_APIC_BASE` after reset, without the BSP bit: the page at 0xFEE0_0000, enabled,
/// xAPIC mode.
pub const APIC_BASE_DEFAULT: u64 = 0xFEE0_0000 | BASE_EN;

const BASE_BSP: u64 = 1 << 8;
const BASE_EXTD: u64 = 1 << 10;
const BASE_EN: u64 = 1 << 11;
/// Base address bits 12..=51 and the three flags; the rest is reserved.
const BASE_WRITABLE: u64 = 0x000F_FFFF_FFFF_F000 | BASE_EXTD | BASE_EN | BASE_BSP;

// Register offsets in the xAPIC page (x2APIC MSR = 0x800 + offset >> 4).
const ID: u32 = 0x20;
const VERSION: u32 = 0x30;
const TPR: u32 = 0x80;
const APR: u32 = 0x90;
const PPR: u32 = 0xA0;
const EOI: u32 = 0xB0;
const RRD: u32 = 0xC0;
const LDR: u32 = 0xD0;
const DFR: u32 = 0xE0;
const SVR: u32 = 0xF0;
const ISR0: u32 = 0x100;
const TMR0: u32 = 0x180;
const IRR0: u32 = 0x200;
const ESR: u32 = 0x280;
const ICR_LOW: u32 = 0x300;
const ICR_HIGH: u32 = 0x310;
const LVT0: u32 = 0x320;
const TMICT: u32 = 0x380;
const TMCCT: u32 = 0x390;
const TDCR: u32 = 0x3E0;
const SELF_IPI: u32 = 0x3F0;

/// LVT entries in register order: timer, thermal, performance counters, LINT0, LINT1,
/// error (offsets 0x320..=0x370).
const LVT_TIMER: usize = 0;
const LVT_ERROR: usize = 5;
const LVT_COUNT: usize = 6;
/// The bits software may set in each LVT entry (delivery status and remote IRR are
/// read-only, so they are not here but are not reserved either).
const LVT_WRITABLE: [u32; LVT_COUNT] = [
    0x0007_00FF, // timer: vector, mask, mode 18:17
    0x0001_07FF, // thermal: vector, delivery mode, mask
    0x0001_07FF, // performance counters
    0x0001_A7FF, // LINT0: vector, delivery mode, polarity, trigger, mask
    0x0001_A7FF, // LINT1
    0x0001_00FF, // error: vector, mask
];
const LVT_READ_ONLY: u32 = (1 << 12) | (1 << 14);
const LVT_MASKED: u32 = 1 << 16;

const SVR_ENABLE: u32 = 1 << 8;
/// Vector, enable, focus-check disable.
const SVR_WRITABLE: u32 = 0x3FF;

/// ESR: a vector below 16 was sent / received.
const ESR_SEND_ILLEGAL: u32 = 1 << 5;
const ESR_RECV_ILLEGAL: u32 = 1 << 6;
/// ESR: an illegal register address was accessed (xAPIC page).
const ESR_ILLEGAL_REG: u32 = 1 << 7;

/// x2APIC ICR bits that must be zero: 13, 17:16 and 31:20 (bit 12, delivery status, is
/// ignored).
const ICR_X2_RESERVED: u64 = (1 << 13) | (3 << 16) | 0xFFF0_0000;

const TIMER_PERIODIC: u32 = 1;
const TIMER_DEADLINE: u32 = 2;

/// Why an APIC MSR access is refused. The guest gets #GP(0) for every one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrError {
    /// Not `IA32_APIC_BASE`, `IA32_TSC_DEADLINE` or an x2APIC MSR: the caller routed it
    /// here by mistake.
    NotApic,
    /// An x2APIC MSR while the local APIC is not in x2APIC mode.
    NotX2apic,
    /// An x2APIC MSR with no register (reserved, DFR, ICR high, CMCI, APR, RRD).
    Reserved,
    /// A write to a read-only register.
    ReadOnly,
    /// A read of a write-only register (EOI, SELF IPI).
    WriteOnly,
    /// A write setting reserved bits (including the upper half of a 32-bit register, and a
    /// non-zero EOI or ESR write).
    ReservedBits,
    /// An `IA32_APIC_BASE` write to an illegal mode (EN=0 with EXTD=1) or along an illegal
    /// transition (x2APIC → xAPIC, disabled → x2APIC).
    IllegalTransition,
}

impl fmt::Display for MsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotApic => "not an APIC MSR",
            Self::NotX2apic => "x2APIC MSR while not in x2APIC mode",
            Self::Reserved => "reserved x2APIC MSR",
            Self::ReadOnly => "write to a read-only APIC register",
            Self::WriteOnly => "read of a write-only APIC register",
            Self::ReservedBits => "reserved bits set in an APIC register write",
            Self::IllegalTransition => "illegal IA32_APIC_BASE mode or transition",
        })
    }
}

/// The local APIC's mode, from `IA32_APIC_BASE` EN (bit 11) and EXTD (bit 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    /// EN=0: globally disabled; the APIC registers are not there (MSRs #GP, the page is
    /// plain memory), no interrupts are accepted.
    Disabled,
    /// EN=1, EXTD=0: the registers are the MMIO page.
    XApic,
    /// EN=1, EXTD=1: the registers are MSRs 0x800..=0x8FF.
    X2Apic,
}

/// What a register write asks of the VM besides the local APIC's own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send this interrupt (an ICR write). Fixed IPIs to the sender alone are not here: the
    /// local APIC takes them itself.
    Ipi(Message),
    /// The guest ended a level-triggered interrupt of this vector: the VM passes it to the
    /// I/O APIC ([`crate::IoApic::eoi`]).
    Eoi(u8),
}

/// The fixed parameters of one local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LapicConfig {
    /// The vCPU's index in the VM, which is also its APIC ID (x2APIC ID, and the xAPIC ID
    /// in bits 31:24 of the ID register). vCPU 0 is the bootstrap processor.
    pub vcpu: usize,
    /// The time unit of every `now` the caller passes (TSC ticks) per tick of the APIC
    /// timer before its divider (the "bus clock"). At least 1 (0 is taken as 1).
    pub tsc_per_bus_tick: u64,
}

/// The timer's state (modes: 0 one-shot, 1 periodic, 2 TSC deadline, 3 reserved: as
/// one-shot): when it started counting (time unit of `now`) and when it next
/// fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Timer {
    /// Initial count (one-shot and periodic).
    initial: u32,
    /// When counting started from `from` (at the current divider).
    start: u64,
    /// The count at `start`: the initial count, or where a divider change took it.
    from: u32,
    /// When the timer next fires, if armed.
    deadline: Option<u64>,
    /// The `IA32_TSC_DEADLINE` value (TSC-deadline mode; 0 = disarmed).
    tsc_deadline: u64,
}

/// The local APIC of one vCPU. See `docs/x86-interrupts.md`.
#[derive(Clone, Debug)]
pub struct Lapic {
    config: LapicConfig,
    base: u64,
    tpr: u32,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: [u32; 8],
    tmr: [u32; 8],
    irr: [u32; 8],
    /// ESR as the guest reads it, and the errors collected since the last ESR write.
    esr: u32,
    esr_pending: u32,
    /// ICR as the guest wrote it (xAPIC: high half = ICR high register).
    icr: u64,
    lvt: [u32; LVT_COUNT],
    tdcr: u32,
    timer: Timer,
    nmi: bool,
}

impl Lapic {
    /// A local APIC after power-on: xAPIC mode, enabled in `IA32_APIC_BASE` (BSP bit on
    /// vCPU 0), software-disabled (SVR bit 8 clear), every LVT entry masked.
    pub fn new(config: LapicConfig) -> Self {
        let config = LapicConfig {
            tsc_per_bus_tick: config.tsc_per_bus_tick.max(1),
            ..config
        };
        let bsp = if config.vcpu == 0 { BASE_BSP } else { 0 };
        let mut apic = Self {
            config,
            base: APIC_BASE_DEFAULT | bsp,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: 0xFF,
            isr: [0; 8],
            tmr: [0; 8],
            irr: [0; 8],
            esr: 0,
            esr_pending: 0,
            icr: 0,
            lvt: [LVT_MASKED; LVT_COUNT],
            tdcr: 0,
            timer: Timer::default(),
            nmi: false,
        };
        apic.init();
        apic
    }

    /// The INIT reset: every register to its power-on value except the APIC ID,
    /// `IA32_APIC_BASE` and the mode (SDM vol. 3, "Local APIC State After an INIT Reset").
    /// The VM calls it when an INIT reaches the vCPU.
    pub fn init(&mut self) {
        self.tpr = 0;
        self.ldr = if self.mode() == ApicMode::X2Apic {
            self.x2apic_ldr()
        } else {
            0
        };
        self.dfr = u32::MAX;
        self.svr = 0xFF;
        self.isr = [0; 8];
        self.tmr = [0; 8];
        self.irr = [0; 8];
        self.esr = 0;
        self.esr_pending = 0;
        self.icr = 0;
        self.lvt = [LVT_MASKED; LVT_COUNT];
        self.tdcr = 0;
        self.timer = Timer::default();
        self.nmi = false;
    }

    /// The APIC ID (the vCPU index).
    pub fn id(&self) -> u32 {
        self.config.vcpu as u32
    }

    /// The current mode.
    pub fn mode(&self) -> ApicMode {
        match (self.base & BASE_EN != 0, self.base & BASE_EXTD != 0) {
            (false, _) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
        }
    }

    /// The `IA32_APIC_BASE` value.
    pub fn apic_base(&self) -> u64 {
        self.base
    }

    /// The guest-physical address of the xAPIC page as `IA32_APIC_BASE` names it (the VM
    /// maps the page at 0xFEE0_0000 only; a moved page is not followed).
    pub fn mmio_base(&self) -> u64 {
        self.base & 0x000F_FFFF_FFFF_F000
    }

    /// Whether the APIC is software-enabled (SVR bit 8) and globally enabled.
    pub fn enabled(&self) -> bool {
        self.mode() != ApicMode::Disabled && self.svr & SVR_ENABLE != 0
    }

    fn x2apic_ldr(&self) -> u32 {
        let id = self.id();
        ((id >> 4) << 16) | (1 << (id & 0xF))
    }

    // ---- interrupt state ----

    fn set_bit(set: &mut [u32; 8], vector: u8) {
        set[vector as usize / 32] |= 1 << (vector % 32);
    }

    fn clear_bit(set: &mut [u32; 8], vector: u8) {
        set[vector as usize / 32] &= !(1 << (vector % 32));
    }

    fn test_bit(set: &[u32; 8], vector: u8) -> bool {
        set[vector as usize / 32] & (1 << (vector % 32)) != 0
    }

    fn highest(set: &[u32; 8]) -> Option<u8> {
        (0..8)
            .rev()
            .find(|&i| set[i] != 0)
            .map(|i| (i * 32 + 31 - set[i].leading_zeros() as usize) as u8)
    }

    /// Whether `vector` is requested (IRR).
    pub fn irr(&self, vector: u8) -> bool {
        Self::test_bit(&self.irr, vector)
    }

    /// Whether `vector` is in service (ISR).
    pub fn isr(&self, vector: u8) -> bool {
        Self::test_bit(&self.isr, vector)
    }

    /// Whether `vector` was accepted level-triggered (TMR).
    pub fn tmr(&self, vector: u8) -> bool {
        Self::test_bit(&self.tmr, vector)
    }

    /// The highest vector in service.
    pub fn highest_isr(&self) -> Option<u8> {
        Self::highest(&self.isr)
    }

    /// The highest requested vector, deliverable or not.
    pub fn highest_irr(&self) -> Option<u8> {
        Self::highest(&self.irr)
    }

    /// The processor priority: TPR if its class (bits 7:4) is at least that of the highest
    /// vector in service, else that vector's class.
    pub fn ppr(&self) -> u8 {
        let tpr = self.tpr as u8;
        let isrv = self.highest_isr().unwrap_or(0);
        if tpr >> 4 >= isrv >> 4 {
            tpr
        } else {
            isrv & 0xF0
        }
    }

    fn apr(&self) -> u8 {
        let tpr = self.tpr as u8;
        let top = self
            .highest_isr()
            .unwrap_or(0)
            .max(self.highest_irr().unwrap_or(0));
        if tpr >> 4 >= top >> 4 {
            tpr
        } else {
            top & 0xF0
        }
    }

    /// The vector the vCPU should take next: the highest requested vector whose priority
    /// class is above the processor priority's. `None` when there is none or the APIC is
    /// disabled. (Whether the guest can take it now, RFLAGS.IF and the interrupt shadow,
    /// is the vCPU's business.)
    pub fn pending_vector(&self) -> Option<u8> {
        if self.mode() == ApicMode::Disabled {
            return None;
        }
        let v = self.highest_irr()?;
        (v >> 4 > self.ppr() >> 4).then_some(v)
    }

    /// The vCPU injects the interrupt [`Lapic::pending_vector`] named: it moves from IRR to
    /// ISR. Returns the vector (`None`, and nothing changes, if none is deliverable).
    pub fn acknowledge(&mut self) -> Option<u8> {
        let v = self.pending_vector()?;
        Self::clear_bit(&mut self.irr, v);
        Self::set_bit(&mut self.isr, v);
        Some(v)
    }

    /// Takes a fixed (or lowest-priority) interrupt into IRR, level-triggered or edge.
    /// Returns whether it was accepted: a disabled or software-disabled APIC drops it, and
    /// a vector below 16 is refused with "received illegal vector" in ESR (and the error
    /// interrupt, if unmasked). An already requested vector stays one request.
    pub fn accept(&mut self, vector: u8, level: bool) -> bool {
        if !self.enabled() {
            return false;
        }
        if vector < 16 {
            self.error(ESR_RECV_ILLEGAL);
            return false;
        }
        self.request(vector, level);
        true
    }

    fn request(&mut self, vector: u8, level: bool) {
        Self::set_bit(&mut self.irr, vector);
        if level {
            Self::set_bit(&mut self.tmr, vector);
        } else {
            Self::clear_bit(&mut self.tmr, vector);
        }
    }

    /// Records an error in ESR's pending bits and raises the error LVT interrupt.
    fn error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let lvt = self.lvt[LVT_ERROR];
        let vector = lvt as u8;
        if lvt & LVT_MASKED == 0 && self.enabled() && vector >= 16 {
            self.request(vector, false);
        }
    }

    /// An NMI for this vCPU: it stays pending until [`Lapic::take_nmi`].
    pub fn raise_nmi(&mut self) {
        self.nmi = true;
    }

    /// Whether an NMI is pending; the vCPU takes it (clearing it) when it injects one.
    pub fn take_nmi(&mut self) -> bool {
        core::mem::take(&mut self.nmi)
    }

    /// Whether this local APIC accepts logical destination `mda`: x2APIC: cluster (bits
    /// 31:16) equal and a common bit in 15:0, or all ones (broadcast); xAPIC: 0xFF
    /// (broadcast), else flat model (DFR 0xF) a common bit of LDR 31:24, cluster model
    /// (DFR 0x0) the cluster nibble equal (or 0xF) and a common bit in the low nibble.
    pub fn logical_match(&self, mda: u32) -> bool {
        match self.mode() {
            ApicMode::Disabled => false,
            ApicMode::X2Apic => {
                mda == u32::MAX || (mda >> 16 == self.ldr >> 16 && mda & self.ldr & 0xFFFF != 0)
            }
            ApicMode::XApic => {
                let mda = mda as u8;
                let ldr = (self.ldr >> 24) as u8;
                if mda == 0xFF {
                    true
                } else if self.dfr >> 28 == 0xF {
                    mda & ldr != 0
                } else {
                    (mda >> 4 == ldr >> 4 || mda >> 4 == 0xF) && mda & ldr & 0xF != 0
                }
            }
        }
    }

    /// EOI: the highest vector in service leaves ISR (nothing happens when none is). A
    /// level-triggered one is reported for the I/O APIC.
    fn eoi(&mut self) -> Option<Effect> {
        let v = self.highest_isr()?;
        Self::clear_bit(&mut self.isr, v);
        self.tmr(v).then_some(Effect::Eoi(v))
    }

    // ---- timer ----

    fn timer_mode(&self) -> u32 {
        (self.lvt[LVT_TIMER] >> 17) & 3
    }

    fn divisor(&self) -> u64 {
        let d = (self.tdcr & 3) | ((self.tdcr >> 1) & 4);
        if d == 7 {
            1
        } else {
            2 << d
        }
    }

    /// Time units (of `now`) per count of the timer.
    fn count_period(&self) -> u64 {
        self.config.tsc_per_bus_tick.saturating_mul(self.divisor())
    }

    /// Starts one-shot or periodic counting from `initial` at `now`.
    fn start_counting(&mut self, initial: u32, now: u64) {
        self.timer.initial = initial;
        self.timer.start = now;
        self.timer.from = initial;
        self.timer.deadline = (initial != 0)
            .then(|| now.saturating_add((initial as u64).saturating_mul(self.count_period())));
    }

    /// The current count (one-shot: down to 0 and stays; periodic: reloads).
    fn current_count(&self, now: u64) -> u32 {
        let initial = self.timer.initial as u64;
        let from = self.timer.from as u64;
        if initial == 0 || self.timer_mode() == TIMER_DEADLINE || self.timer.deadline.is_none() {
            return 0;
        }
        let elapsed = now.saturating_sub(self.timer.start) / self.count_period();
        if elapsed < from {
            (from - elapsed) as u32
        } else if self.timer_mode() == TIMER_PERIODIC {
            (initial - (elapsed - from) % initial) as u32
        } else {
            0
        }
    }

    /// When the timer next fires, in the unit of `now`: the VM arranges to call
    /// [`Lapic::tick`] then (or earlier). `None` when it is not armed.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timer.deadline
    }

    /// Advances the timer to `now`: if its deadline has passed it fires (the LVT timer
    /// vector goes to IRR unless the entry is masked; a vector below 16 is "received
    /// illegal vector" in ESR instead) and, in
    /// periodic mode, is re-armed at the first period boundary after `now` (missed periods
    /// are one interrupt). Returns whether it fired.
    pub fn tick(&mut self, now: u64) -> bool {
        let Some(deadline) = self.timer.deadline else {
            return false;
        };
        if now < deadline {
            return false;
        }
        match self.timer_mode() {
            TIMER_PERIODIC => {
                // Reload at the deadline; periods missed since are skipped.
                let period = (self.timer.initial as u64).saturating_mul(self.count_period());
                let missed = (now - deadline) / period.max(1);
                let start = deadline.saturating_add(missed.saturating_mul(period));
                self.timer.start = start;
                self.timer.from = self.timer.initial;
                self.timer.deadline = Some(start.saturating_add(period));
            }
            TIMER_DEADLINE => {
                self.timer.deadline = None;
                self.timer.tsc_deadline = 0;
            }
            _ => self.timer.deadline = None,
        }
        let lvt = self.lvt[LVT_TIMER];
        if lvt & LVT_MASKED == 0 && self.enabled() {
            if lvt as u8 >= 16 {
                self.request(lvt as u8, false);
            } else {
                self.error(ESR_RECV_ILLEGAL);
            }
        }
        true
    }

    fn write_tsc_deadline(&mut self, value: u64) {
        if self.timer_mode() != TIMER_DEADLINE {
            return;
        }
        self.timer.tsc_deadline = value;
        self.timer.deadline = (value != 0).then_some(value);
    }

    fn write_lvt(&mut self, index: usize, value: u32) {
        let old_mode = self.timer_mode();
        let mut value = value & LVT_WRITABLE[index];
        if self.svr & SVR_ENABLE == 0 {
            value |= LVT_MASKED;
        }
        self.lvt[index] = (self.lvt[index] & LVT_READ_ONLY) | value;
        if index == LVT_TIMER && self.timer_mode() != old_mode {
            // Changing mode disarms the timer.
            self.timer = Timer::default();
        }
    }

    fn write_svr(&mut self, value: u32) {
        self.svr = value & SVR_WRITABLE;
        if self.svr & SVR_ENABLE == 0 {
            for lvt in &mut self.lvt {
                *lvt |= LVT_MASKED;
            }
        }
    }

    fn write_tdcr(&mut self, value: u32, now: u64) {
        let count = self.current_count(now);
        self.tdcr = value & 0xB;
        if count != 0 {
            // Go on from the current count at the new rate.
            self.timer.start = now;
            self.timer.from = count;
            self.timer.deadline =
                Some(now.saturating_add((count as u64).saturating_mul(self.count_period())));
        }
    }

    /// Sends the IPI the ICR now holds. Returns the message for the VM, if any.
    fn send_ipi(&mut self) -> Option<Effect> {
        let icr = self.icr;
        let vector = icr as u8;
        let delivery = Delivery::from_bits(icr)?;
        let level = icr & (1 << 15) != 0;
        let assert = icr & (1 << 14) != 0;
        let me = self.config.vcpu;
        let x2 = self.mode() == ApicMode::X2Apic;
        if delivery == Delivery::Init && level && !assert {
            // INIT level de-assert: nothing on a modern APIC bus.
            return None;
        }
        if matches!(delivery, Delivery::Fixed | Delivery::LowestPriority) && vector < 16 {
            self.error(ESR_SEND_ILLEGAL);
            return None;
        }
        let dest = match (icr >> 18) & 3 {
            1 => {
                // Self: only fixed is defined; take it here.
                if delivery == Delivery::Fixed {
                    self.accept(vector, level);
                }
                return None;
            }
            2 => Destination::All,
            3 => Destination::AllBut(me),
            _ => {
                let (id, broadcast) = if x2 {
                    ((icr >> 32) as u32, u32::MAX)
                } else {
                    ((icr >> 56) as u32, 0xFF)
                };
                if icr & (1 << 11) != 0 {
                    Destination::Logical(id)
                } else if id == broadcast {
                    Destination::All
                } else {
                    Destination::Physical(id)
                }
            }
        };
        Some(Effect::Ipi(Message {
            dest,
            delivery,
            vector,
            level: level && matches!(delivery, Delivery::Fixed | Delivery::LowestPriority),
        }))
    }

    // ---- register file ----

    /// Reads register `reg` (its xAPIC offset). `None` when there is none.
    fn read_reg(&self, reg: u32, now: u64) -> Option<u32> {
        let x2 = self.mode() == ApicMode::X2Apic;
        Some(match reg {
            ID if x2 => self.id(),
            ID => self.id() << 24,
            VERSION => APIC_VERSION,
            TPR => self.tpr,
            APR if !x2 => self.apr() as u32,
            PPR => self.ppr() as u32,
            RRD if !x2 => 0,
            LDR => self.ldr,
            DFR if !x2 => self.dfr,
            SVR => self.svr,
            0x100..=0x170 => self.isr[((reg - ISR0) >> 4) as usize],
            0x180..=0x1F0 => self.tmr[((reg - TMR0) >> 4) as usize],
            0x200..=0x270 => self.irr[((reg - IRR0) >> 4) as usize],
            ESR => self.esr,
            ICR_LOW => self.icr as u32 & !(1 << 12),
            ICR_HIGH if !x2 => (self.icr >> 32) as u32,
            0x320..=0x370 => self.lvt[((reg - LVT0) >> 4) as usize],
            TMICT => self.timer.initial,
            TMCCT => self.current_count(now),
            TDCR => self.tdcr,
            _ => return None,
        })
    }

    /// Writes register `reg` in xAPIC mode: read-only and reserved registers ignore the
    /// write, reserved bits are dropped.
    fn write_xapic_reg(&mut self, reg: u32, value: u32, now: u64) -> Option<Effect> {
        match reg {
            TPR => self.tpr = value & 0xFF,
            EOI => return self.eoi(),
            LDR => self.ldr = value & 0xFF00_0000,
            DFR => self.dfr = value | 0x0FFF_FFFF,
            SVR => self.write_svr(value),
            ESR => self.esr = core::mem::take(&mut self.esr_pending),
            ICR_LOW => {
                self.icr = (self.icr & !0xFFFF_FFFF) | (value & 0x000C_CFFF) as u64;
                return self.send_ipi();
            }
            ICR_HIGH => {
                self.icr = (self.icr as u32 as u64) | (((value & 0xFF00_0000) as u64) << 32)
            }
            0x320..=0x370 => self.write_lvt(((reg - LVT0) >> 4) as usize, value),
            TMICT => self.write_tmict(value, now),
            TDCR => self.write_tdcr(value, now),
            ID | VERSION | APR | PPR | RRD | TMCCT | 0x100..=0x270 => {}
            _ => self.error(ESR_ILLEGAL_REG),
        }
        None
    }

    fn write_tmict(&mut self, value: u32, now: u64) {
        if self.timer_mode() != TIMER_DEADLINE {
            self.start_counting(value, now);
        }
    }

    /// A guest `RDMSR` of `msr` at time `now`: `IA32_APIC_BASE`, `IA32_TSC_DEADLINE` (0
    /// unless armed in TSC-deadline mode) or an x2APIC register (x2APIC mode only).
    pub fn rdmsr(&self, msr: u32, now: u64) -> Result<u64, MsrError> {
        match msr {
            IA32_APIC_BASE => return Ok(self.base),
            IA32_TSC_DEADLINE => {
                return Ok(if self.timer_mode() == TIMER_DEADLINE {
                    self.timer.tsc_deadline
                } else {
                    0
                })
            }
            X2APIC_MSR_FIRST..=X2APIC_MSR_LAST => {}
            _ => return Err(MsrError::NotApic),
        }
        if self.mode() != ApicMode::X2Apic {
            return Err(MsrError::NotX2apic);
        }
        let reg = (msr - X2APIC_MSR_FIRST) << 4;
        match reg {
            EOI | SELF_IPI => Err(MsrError::WriteOnly),
            ICR_LOW => Ok(self.icr & !(1 << 12)),
            _ => self
                .read_reg(reg, now)
                .map(u64::from)
                .ok_or(MsrError::Reserved),
        }
    }

    /// A guest `WRMSR` of `value` to `msr` at time `now`; see [`Lapic::rdmsr`]. The x2APIC
    /// rules: read-only registers, reserved registers and reserved bits (any of bits 63:32
    /// of a 32-bit register) are #GP; EOI and ESR take only 0; the ICR is one 64-bit
    /// register (destination in 63:32).
    pub fn wrmsr(&mut self, msr: u32, value: u64, now: u64) -> Result<Option<Effect>, MsrError> {
        match msr {
            IA32_APIC_BASE => return self.write_base(value).map(|()| None),
            IA32_TSC_DEADLINE => {
                self.write_tsc_deadline(value);
                return Ok(None);
            }
            X2APIC_MSR_FIRST..=X2APIC_MSR_LAST => {}
            _ => return Err(MsrError::NotApic),
        }
        if self.mode() != ApicMode::X2Apic {
            return Err(MsrError::NotX2apic);
        }
        let reg = (msr - X2APIC_MSR_FIRST) << 4;
        if reg == ICR_LOW {
            if value & ICR_X2_RESERVED != 0 {
                return Err(MsrError::ReservedBits);
            }
            self.icr = value & !(1 << 12);
            return Ok(self.send_ipi());
        }
        // Every other register is 32 bits wide.
        let check = |writable: u32| {
            if value & !(writable as u64) != 0 {
                Err(MsrError::ReservedBits)
            } else {
                Ok(value as u32)
            }
        };
        match reg {
            ID | VERSION | PPR | LDR | TMCCT | 0x100..=0x270 => Err(MsrError::ReadOnly),
            TPR => {
                self.tpr = check(0xFF)?;
                Ok(None)
            }
            EOI => {
                check(0)?;
                Ok(self.eoi())
            }
            SVR => {
                let v = check(SVR_WRITABLE)?;
                self.write_svr(v);
                Ok(None)
            }
            ESR => {
                check(0)?;
                self.esr = core::mem::take(&mut self.esr_pending);
                Ok(None)
            }
            0x320..=0x370 => {
                let index = ((reg - LVT0) >> 4) as usize;
                let v = check(LVT_WRITABLE[index] | LVT_READ_ONLY)?;
                if index == LVT_TIMER && (v >> 17) & 3 == 3 {
                    return Err(MsrError::ReservedBits);
                }
                self.write_lvt(index, v);
                Ok(None)
            }
            TMICT => {
                let v = check(u32::MAX)?;
                self.write_tmict(v, now);
                Ok(None)
            }
            TDCR => {
                let v = check(0xB)?;
                self.write_tdcr(v, now);
                Ok(None)
            }
            SELF_IPI => {
                let v = check(0xFF)?;
                if v < 16 {
                    self.error(ESR_SEND_ILLEGAL);
                } else {
                    self.accept(v as u8, false);
                }
                Ok(None)
            }
            _ => Err(MsrError::Reserved),
        }
    }

    /// A write of `IA32_APIC_BASE`: reserved bits and illegal modes or transitions are
    /// #GP; BSP is read-only (its written value is ignored). Disabling resets the APIC
    /// (as INIT does) and leaves x2APIC mode; entering x2APIC mode sets the LDR from the
    /// ID.
    fn write_base(&mut self, value: u64) -> Result<(), MsrError> {
        if value & !BASE_WRITABLE != 0 {
            return Err(MsrError::ReservedBits);
        }
        let old = self.mode();
        let new = match (value & BASE_EN != 0, value & BASE_EXTD != 0) {
            (false, false) => ApicMode::Disabled,
            (false, true) => return Err(MsrError::IllegalTransition),
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
        };
        match (old, new) {
            (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic) => {
                return Err(MsrError::IllegalTransition)
            }
            _ => {}
        }
        self.base = (value & !BASE_BSP) | (self.base & BASE_BSP);
        if new == ApicMode::Disabled && old != ApicMode::Disabled {
            self.init();
        }
        if new == ApicMode::X2Apic && old != ApicMode::X2Apic {
            self.ldr = self.x2apic_ldr();
        }
        Ok(())
    }

    /// A guest load from the xAPIC page at `offset`, at time `now`. Registers are 32-bit
    /// loads at 16-byte boundaries: any other width is [`DeviceError::BadWidth`], an offset
    /// not a multiple of 4 [`DeviceError::Misaligned`], beyond the page
    /// [`DeviceError::BadOffset`]; the other three words of a 16-byte slot and the holes
    /// read 0. Outside xAPIC mode the page reads as 0 (the registers are not there).
    pub fn mmio_read(
        &self,
        offset: usize,
        width: AccessWidth,
        now: u64,
    ) -> Result<u64, DeviceError> {
        let reg = Self::check_mmio(offset, width)?;
        if self.mode() != ApicMode::XApic || !offset.is_multiple_of(16) {
            return Ok(0);
        }
        Ok(match reg {
            EOI | SELF_IPI => 0,
            _ => self.read_reg(reg, now).unwrap_or(0) as u64,
        })
    }

    /// A guest store to the xAPIC page; the access rules are [`Lapic::mmio_read`]'s.
    /// Writes to read-only registers and reserved bits are ignored, one to a register that
    /// does not exist sets "illegal register address" in ESR. Outside xAPIC mode the
    /// store is ignored.
    pub fn mmio_write(
        &mut self,
        offset: usize,
        width: AccessWidth,
        value: u64,
        now: u64,
    ) -> Result<Option<Effect>, DeviceError> {
        let reg = Self::check_mmio(offset, width)?;
        if self.mode() != ApicMode::XApic || !offset.is_multiple_of(16) {
            return Ok(None);
        }
        Ok(self.write_xapic_reg(reg, value as u32, now))
    }

    fn check_mmio(offset: usize, width: AccessWidth) -> Result<u32, DeviceError> {
        if offset >= LAPIC_SIZE {
            return Err(DeviceError::BadOffset);
        }
        if width != AccessWidth::Word {
            return Err(DeviceError::BadWidth);
        }
        if !offset.is_multiple_of(4) {
            return Err(DeviceError::Misaligned);
        }
        Ok(offset as u32)
    }
}

#[cfg(test)]
mod tests;
