//! The virtual I/O APIC.

use axdevice_base::{AccessWidth, DeviceError};

use crate::{Delivery, Destination, Message};

/// How many inputs (redirection entries) the I/O APIC has.
pub const IOAPIC_PINS: usize = 24;
/// The size of its register window.
pub const IOAPIC_SIZE: usize = 0x1000;
/// The index register's offset.
pub const IOREGSEL: usize = 0x00;
/// The data window's offset.
pub const IOWIN: usize = 0x10;
/// The version register: version 0x11 (no EOI register: EOIs arrive as the local APICs'
/// broadcasts), maximum redirection entry 23.
pub const IOAPIC_VERSION: u32 = 0x11 | ((IOAPIC_PINS as u32 - 1) << 16);

const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_ARB: u32 = 0x02;
const REG_TABLE: u32 = 0x10;

const MASKED: u64 = 1 << 16;
const LEVEL: u64 = 1 << 15;
const REMOTE_IRR: u64 = 1 << 14;
const LOGICAL: u64 = 1 << 11;
/// Writable bits of an entry: vector, delivery mode, destination mode, polarity, trigger
/// mode, mask, destination (63:56). Delivery status (12) and remote IRR (14) are read-only.
const ENTRY_WRITABLE: u64 = 0xFF00_0000_0001_AFFF;

/// The virtual I/O APIC of a VM: 24 level- or edge-triggered inputs, each with a
/// redirection entry; see `docs/x86-interrupts.md`.
#[derive(Clone, Debug)]
pub struct IoApic {
    id: u32,
    select: u32,
    table: [u64; IOAPIC_PINS],
    /// The input lines' levels (asserted or not; polarity is not applied).
    lines: u32,
}

impl Default for IoApic {
    fn default() -> Self {
        Self::new()
    }
}

impl IoApic {
    /// An I/O APIC after reset: ID 0, every entry masked, every line low.
    pub fn new() -> Self {
        Self {
            id: 0,
            select: 0,
            table: [MASKED; IOAPIC_PINS],
            lines: 0,
        }
    }

    /// Redirection entry `pin` (`None` past the last).
    pub fn entry(&self, pin: usize) -> Option<u64> {
        self.table.get(pin).copied()
    }

    /// Whether input `pin` is asserted.
    pub fn line(&self, pin: usize) -> bool {
        pin < IOAPIC_PINS && self.lines & (1 << pin) != 0
    }

    /// The message entry `pin` sends.
    fn message(&self, pin: usize) -> Message {
        let e = self.table[pin];
        let dest = (e >> 56) as u32;
        let dest = if e & LOGICAL != 0 {
            Destination::Logical(dest)
        } else if dest == 0xFF {
            Destination::All
        } else {
            Destination::Physical(dest)
        };
        Message {
            dest,
            // The reserved mode 011 is sent as fixed.
            delivery: Delivery::from_bits(e).unwrap_or(Delivery::Fixed),
            vector: e as u8,
            level: e & LEVEL != 0,
        }
    }

    /// Sends `pin`'s interrupt if its state calls for it: a level-triggered, unmasked
    /// entry whose line is asserted and whose remote IRR is clear (which it then sets).
    fn deliver_level(&mut self, pin: usize, out: &mut impl FnMut(Message)) {
        let e = self.table[pin];
        if e & LEVEL != 0 && e & (MASKED | REMOTE_IRR) == 0 && self.line(pin) {
            self.table[pin] |= REMOTE_IRR;
            out(self.message(pin));
        }
    }

    /// Sets input `pin` asserted (`high`) or not. An edge-triggered entry sends its
    /// interrupt on the rising edge if unmasked (an edge while masked is lost); a
    /// level-triggered one while the line is high, unmasked and its remote IRR clear.
    /// Messages go to `out`. A pin past the last is ignored.
    pub fn set_line(&mut self, pin: usize, high: bool, out: &mut impl FnMut(Message)) {
        if pin >= IOAPIC_PINS {
            return;
        }
        let was = self.line(pin);
        if high {
            self.lines |= 1 << pin;
        } else {
            self.lines &= !(1 << pin);
        }
        let e = self.table[pin];
        if e & LEVEL == 0 {
            if high && !was && e & MASKED == 0 {
                out(self.message(pin));
            }
        } else {
            self.deliver_level(pin, out);
        }
    }

    /// A local APIC's EOI of level-triggered `vector` ([`crate::Effect::Eoi`]): every
    /// level-triggered entry of that vector with remote IRR set has it cleared and, if its
    /// line is still asserted and unmasked, sends again.
    pub fn eoi(&mut self, vector: u8, out: &mut impl FnMut(Message)) {
        for pin in 0..IOAPIC_PINS {
            let e = self.table[pin];
            if e as u8 == vector && e & REMOTE_IRR != 0 {
                self.table[pin] &= !REMOTE_IRR;
                self.deliver_level(pin, out);
            }
        }
    }

    /// A guest load at `offset`: IOREGSEL and IOWIN are 32-bit registers (other widths
    /// [`DeviceError::BadWidth`], offsets not a multiple of 4 [`DeviceError::Misaligned`],
    /// beyond the window [`DeviceError::BadOffset`]); everything else reads 0.
    pub fn mmio_read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        Self::check(offset, width)?;
        Ok(match offset {
            IOREGSEL => self.select as u64,
            IOWIN => self.read_reg(self.select) as u64,
            _ => 0,
        })
    }

    /// A guest store at `offset` (rules as [`IoApic::mmio_read`]); messages an unmasking
    /// or a trigger-mode change causes go to `out`.
    pub fn mmio_write(
        &mut self,
        offset: usize,
        width: AccessWidth,
        value: u64,
        out: &mut impl FnMut(Message),
    ) -> Result<(), DeviceError> {
        Self::check(offset, width)?;
        match offset {
            IOREGSEL => self.select = value as u32 & 0xFF,
            IOWIN => self.write_reg(self.select, value as u32, out),
            _ => {}
        }
        Ok(())
    }

    fn check(offset: usize, width: AccessWidth) -> Result<(), DeviceError> {
        if offset >= IOAPIC_SIZE {
            Err(DeviceError::BadOffset)
        } else if width != AccessWidth::Word {
            Err(DeviceError::BadWidth)
        } else if !offset.is_multiple_of(4) {
            Err(DeviceError::Misaligned)
        } else {
            Ok(())
        }
    }

    fn read_reg(&self, reg: u32) -> u32 {
        match reg {
            REG_ID | REG_ARB => self.id,
            REG_VERSION => IOAPIC_VERSION,
            _ => match Self::table_index(reg) {
                Some((pin, false)) => self.table[pin] as u32,
                Some((pin, true)) => (self.table[pin] >> 32) as u32,
                None => 0,
            },
        }
    }

    fn write_reg(&mut self, reg: u32, value: u32, out: &mut impl FnMut(Message)) {
        if reg == REG_ID {
            self.id = value & 0x0F00_0000;
            return;
        }
        let Some((pin, high)) = Self::table_index(reg) else {
            return;
        };
        let old = self.table[pin];
        let new = if high {
            (old & 0xFFFF_FFFF) | ((value as u64) << 32)
        } else {
            (old & !0xFFFF_FFFF) | value as u64
        };
        let mut new = (new & ENTRY_WRITABLE) | (old & REMOTE_IRR);
        if new & LEVEL == 0 {
            // Remote IRR only exists for level-triggered entries.
            new &= !REMOTE_IRR;
        }
        self.table[pin] = new;
        self.deliver_level(pin, out);
    }

    /// The entry and half (`true` = bits 63:32) register `reg` names.
    fn table_index(reg: u32) -> Option<(usize, bool)> {
        let i = reg.checked_sub(REG_TABLE)? as usize;
        (i < 2 * IOAPIC_PINS).then_some((i / 2, i % 2 == 1))
    }
}

#[cfg(test)]
mod tests;
