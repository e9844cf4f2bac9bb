//! x86 interrupt and timer device models, shared by the VMX and SVM backends.
//!
//! Plain state machines with host tests, no locks, no clock reads and no `unsafe`: the
//! caller (the VM) owns one [`Lapic`] per vCPU and one of each other model per VM, keeps
//! each behind its own lock, passes the current time into every call that depends on it,
//! and routes what the models return.
//!
//! - [`Lapic`]: the local APIC of one vCPU, reached through the x2APIC MSRs
//!   ([`Lapic::rdmsr`], [`Lapic::wrmsr`], which also take `IA32_APIC_BASE` and
//!   `IA32_TSC_DEADLINE`) or the xAPIC page ([`Lapic::mmio_read`], [`Lapic::mmio_write`]);
//!   interrupt acceptance ([`Lapic::accept`]), priorities ([`Lapic::pending_vector`],
//!   [`Lapic::acknowledge`]), EOI, the timer ([`Lapic::tick`], [`Lapic::next_deadline`]) and
//!   IPIs, which leave as an [`Effect::Ipi`] carrying a [`Message`].
//! - [`IoApic`]: the I/O APIC (24 inputs) behind its index/data window; lines in, [`Message`]s
//!   out, EOIs from the local APICs ([`Effect::Eoi`]) back in.
//! - [`Pic8259`] and [`Elcr`]: a legacy PIC pair that takes the initialisation sequence and
//!   never delivers.
//! - [`Pit`]: the 8254 (channels 0..2) and port 0x61 (channel 2's gate and output).
//! - [`Rtc`]: the MC146818 CMOS clock and RAM.
//!
//! `docs/x86-interrupts.md` describes the registers and how a vCPU is expected to call the
//! models. Everything the guest passes in (MSR numbers, offsets, widths, values) is
//! untrusted: nothing it does panics a model; a refused access is an error value the
//! caller turns into the architectural fault.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

mod ioapic;
mod lapic;
mod pic;
mod pit;
mod rtc;

pub use ioapic::{IoApic, IOAPIC_PINS, IOAPIC_SIZE, IOAPIC_VERSION, IOREGSEL, IOWIN};
pub use lapic::{
    ApicMode, Effect, Lapic, LapicConfig, MsrError, APIC_BASE_DEFAULT, APIC_VERSION,
    IA32_APIC_BASE, IA32_TSC_DEADLINE, LAPIC_SIZE, X2APIC_MSR_FIRST, X2APIC_MSR_LAST,
};
pub use pic::{Elcr, Pic8259};
pub use pit::{Pit, PIT_HZ};
pub use rtc::{Rtc, RTC_CENTURY};

use core::fmt;

/// How many vCPUs a [`VcpuSet`] (and so a VM using these models) can name.
pub const MAX_VCPUS: usize = 64;

/// A set of vCPU indices (`0..MAX_VCPUS`), the targets of an interrupt.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct VcpuSet(u64);

impl VcpuSet {
    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// vCPUs `0..n` (all of them when `n >= MAX_VCPUS`).
    pub const fn first_n(n: usize) -> Self {
        if n >= MAX_VCPUS {
            Self(u64::MAX)
        } else {
            Self((1 << n) - 1)
        }
    }

    /// Whether vCPU `vcpu` is in the set.
    pub const fn contains(self, vcpu: usize) -> bool {
        vcpu < MAX_VCPUS && self.0 & (1 << vcpu) != 0
    }

    /// Adds vCPU `vcpu` (ignored unless `vcpu < MAX_VCPUS`).
    pub fn insert(&mut self, vcpu: usize) {
        if vcpu < MAX_VCPUS {
            self.0 |= 1 << vcpu;
        }
    }

    /// Removes vCPU `vcpu`.
    pub fn remove(&mut self, vcpu: usize) {
        if vcpu < MAX_VCPUS {
            self.0 &= !(1 << vcpu);
        }
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many vCPUs are in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The lowest vCPU index in the set (the target of a lowest-priority interrupt).
    pub const fn first(self) -> Option<usize> {
        if self.0 == 0 {
            None
        } else {
            Some(self.0.trailing_zeros() as usize)
        }
    }

    /// The vCPU indices, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_VCPUS).filter(move |&i| self.contains(i))
    }

    /// The set as a bit mask (bit `i` = vCPU `i`).
    pub const fn bits(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for VcpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// An interrupt's delivery mode (ICR, LVT and redirection-entry bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// 000: the vector, to every target.
    Fixed,
    /// 001: the vector, to one target (the VM picks [`VcpuSet::first`]).
    LowestPriority,
    /// 010: a system-management interrupt (not emulated: the VM drops it).
    Smi,
    /// 100: a non-maskable interrupt ([`Lapic::raise_nmi`]).
    Nmi,
    /// 101: INIT: the VM resets the target vCPUs and waits for a start-up IPI.
    Init,
    /// 110: start-up IPI: a target waiting for one starts in real mode at `vector << 12`.
    StartUp,
    /// 111: an external (8259) interrupt (there is none: the VM drops it).
    ExtInt,
}

impl Delivery {
    /// The mode of bits 10:8 of `raw`, or `None` for the reserved encoding 011.
    pub const fn from_bits(raw: u64) -> Option<Self> {
        Some(match (raw >> 8) & 7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            4 => Self::Nmi,
            5 => Self::Init,
            6 => Self::StartUp,
            7 => Self::ExtInt,
            _ => return None,
        })
    }
}

/// Which local APICs a [`Message`] is for, as the sender named them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Physical destination mode: the local APIC whose ID is this (an APIC ID is its
    /// vCPU's index).
    Physical(u32),
    /// Logical destination mode: every local APIC whose logical ID matches this message
    /// destination address ([`Lapic::logical_match`]).
    Logical(u32),
    /// Only the sending vCPU (never produced for fixed interrupts, which the sender's
    /// local APIC takes itself).
    SelfOnly(usize),
    /// Every vCPU (a shorthand, or a broadcast destination).
    All,
    /// Every vCPU but the sender.
    AllBut(usize),
}

impl Destination {
    /// The vCPUs (of `vcpus`) this destination names. `logical(i, mda)` says whether vCPU
    /// `i`'s local APIC accepts logical destination `mda` (the VM calls
    /// [`Lapic::logical_match`] of vCPU `i`); it is only called for [`Destination::Logical`].
    pub fn resolve(self, vcpus: usize, mut logical: impl FnMut(usize, u32) -> bool) -> VcpuSet {
        let all = VcpuSet::first_n(vcpus);
        match self {
            Self::Physical(id) => {
                let mut set = VcpuSet::EMPTY;
                if (id as usize) < vcpus {
                    set.insert(id as usize);
                }
                set
            }
            Self::Logical(mda) => {
                let mut set = VcpuSet::EMPTY;
                for i in all.iter() {
                    if logical(i, mda) {
                        set.insert(i);
                    }
                }
                set
            }
            Self::SelfOnly(me) => {
                let mut set = VcpuSet::EMPTY;
                if me < vcpus {
                    set.insert(me);
                }
                set
            }
            Self::All => all,
            Self::AllBut(me) => {
                let mut set = all;
                set.remove(me);
                set
            }
        }
    }
}

/// An interrupt message for the VM to route: from an IPI ([`Effect::Ipi`]) or an I/O APIC
/// input. The VM resolves [`Message::dest`] and, per target: [`Delivery::Fixed`] and
/// [`Delivery::LowestPriority`] → [`Lapic::accept`]; [`Delivery::Nmi`] →
/// [`Lapic::raise_nmi`]; [`Delivery::Init`] → reset the vCPU ([`Lapic::init`]) and make it
/// wait for a start-up IPI; [`Delivery::StartUp`] → start a waiting vCPU at
/// `vector << 12`; SMI and ExtINT are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// The targets.
    pub dest: Destination,
    /// The delivery mode.
    pub delivery: Delivery,
    /// The vector (the start-up page for [`Delivery::StartUp`]).
    pub vector: u8,
    /// Level-triggered (the target's EOI of it is reported back to the I/O APIC).
    pub level: bool,
}

#[cfg(test)]
mod tests;
