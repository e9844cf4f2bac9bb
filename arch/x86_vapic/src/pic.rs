//! A quiet legacy 8259A PIC and the ELCR.

use axdevice_base::{AccessWidth, DeviceError};

/// Where the initialisation sequence is: the next data-port write is ICW2, 3 or 4, or an
/// OCW1 (mask) once initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Icw2,
    Icw3,
    Icw4,
    Mask,
}

/// One 8259A (the master at ports 0x20/0x21 or the slave at 0xA0/0xA1; offsets 0 and 1).
/// It takes the initialisation sequence (ICW1..ICW4), masks (OCW1), OCW2 and OCW3, reads
/// back the mask and (per OCW3) IRR or ISR, and never requests an interrupt: no line is
/// wired to it, so a guest uses the I/O APIC. See `docs/x86-interrupts.md`.
#[derive(Clone, Debug)]
pub struct Pic8259 {
    expect: Expect,
    /// ICW1 bit 0 (ICW4 follows) and bit 1 (single: no ICW3).
    icw4: bool,
    single: bool,
    vector_base: u8,
    imr: u8,
    /// OCW3 read-register select: `true` = ISR.
    read_isr: bool,
}

impl Default for Pic8259 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic8259 {
    /// The size of its port window (command and data).
    pub const SIZE: usize = 2;

    /// A PIC after power-on: not initialised, every input masked.
    pub fn new() -> Self {
        Self {
            expect: Expect::Mask,
            icw4: false,
            single: false,
            vector_base: 0,
            imr: 0xFF,
            read_isr: false,
        }
    }

    /// The interrupt mask (OCW1) the guest set.
    pub fn mask(&self) -> u8 {
        self.imr
    }

    /// The vector base ICW2 set (bits 7:3).
    pub fn vector_base(&self) -> u8 {
        self.vector_base
    }

    /// Whether the initialisation sequence is complete.
    pub fn initialised(&self) -> bool {
        self.expect == Expect::Mask
    }

    fn check(offset: usize, width: AccessWidth) -> Result<(), DeviceError> {
        if offset >= Self::SIZE {
            Err(DeviceError::BadOffset)
        } else if width != AccessWidth::Byte {
            Err(DeviceError::BadWidth)
        } else {
            Ok(())
        }
    }

    /// A guest `in` at `offset` (0 = command, 1 = data), bytes only: the command port gives
    /// IRR or ISR (OCW3 chooses; both are always 0), the data port the mask.
    pub fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        Self::check(offset, width)?;
        Ok(if offset == 1 { self.imr as u64 } else { 0 })
    }

    /// A guest `out` at `offset`, bytes only.
    pub fn write(
        &mut self,
        offset: usize,
        width: AccessWidth,
        value: u64,
    ) -> Result<(), DeviceError> {
        Self::check(offset, width)?;
        let value = value as u8;
        if offset == 0 {
            if value & 0x10 != 0 {
                // ICW1: start initialising; the mask is cleared.
                self.icw4 = value & 1 != 0;
                self.single = value & 2 != 0;
                self.imr = 0;
                self.read_isr = false;
                self.expect = Expect::Icw2;
            } else if value & 0x18 == 0x08 {
                // OCW3: bit 1 set selects the register bit 0 names.
                if value & 2 != 0 {
                    self.read_isr = value & 1 != 0;
                }
            }
            // OCW2 (EOI, rotation): nothing is ever in service.
            return Ok(());
        }
        self.expect = match self.expect {
            Expect::Icw2 => {
                self.vector_base = value & 0xF8;
                if !self.single {
                    Expect::Icw3
                } else if self.icw4 {
                    Expect::Icw4
                } else {
                    Expect::Mask
                }
            }
            // ICW3 (the cascade wiring) and ICW4 (8086 mode, AEOI, buffering) change
            // nothing in a PIC that never delivers.
            Expect::Icw3 => {
                if self.icw4 {
                    Expect::Icw4
                } else {
                    Expect::Mask
                }
            }
            Expect::Icw4 => Expect::Mask,
            Expect::Mask => {
                self.imr = value;
                Expect::Mask
            }
        };
        Ok(())
    }
}

/// The edge/level control registers of the PIC pair (ports 0x4D0 and 0x4D1; offsets 0
/// and 1): one bit per ISA IRQ, stored and read back; IRQs 0, 1, 2, 8 and 13 are always
/// edge (their bits read 0).
#[derive(Clone, Debug, Default)]
pub struct Elcr {
    regs: [u8; 2],
}

impl Elcr {
    /// The size of its port window.
    pub const SIZE: usize = 2;
    const WRITABLE: [u8; 2] = [0xF8, 0xDE];

    /// A guest `in` of a byte (offset 0 or 1) or of both (offset 0, 2 bytes).
    pub fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        match (offset, width) {
            (0 | 1, AccessWidth::Byte) => Ok(self.regs[offset] as u64),
            (0, AccessWidth::Half) => Ok(u16::from_le_bytes(self.regs) as u64),
            (0 | 1, _) => Err(DeviceError::BadWidth),
            _ => Err(DeviceError::BadOffset),
        }
    }

    /// A guest `out`; see [`Elcr::read`].
    pub fn write(
        &mut self,
        offset: usize,
        width: AccessWidth,
        value: u64,
    ) -> Result<(), DeviceError> {
        match (offset, width) {
            (0 | 1, AccessWidth::Byte) => {
                self.regs[offset] = value as u8 & Self::WRITABLE[offset];
            }
            (0, AccessWidth::Half) => {
                self.regs[0] = value as u8 & Self::WRITABLE[0];
                self.regs[1] = (value >> 8) as u8 & Self::WRITABLE[1];
            }
            (0 | 1, _) => return Err(DeviceError::BadWidth),
            _ => return Err(DeviceError::BadOffset),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
