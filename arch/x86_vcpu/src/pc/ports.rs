//! The PC's port-mapped models: PIC pair (0x20/0x21, 0xA0/0xA1), ELCR (0x4D0/0x4D1), PIT
//! (0x40..=0x43) and port 0x61, CMOS RTC (0x70/0x71), the POST port 0x80 (Linux's I/O
//! delay: writes dropped, reads 0xFF), the ACPI PM1 registers (0x600..=0x605) and the ACPI
//! PM timer (0x608..=0x60B).

use super::PcConfig;
use axdevice_base::AccessWidth;
use spin::Mutex;
use x86_vapic::{Elcr, Pic8259, Pit, Rtc, PIT_HZ};

/// PM1a event block (status at +0, enable at +2).
pub const PM1_EVT: u16 = 0x600;
/// The last PM1 port (the PM1a control block's high byte; the block is at 0x604).
pub const PM1_LAST: u16 = 0x605;
/// The ACPI PM timer (`PM_TMR_BLK`, 4 bytes).
pub const PM_TMR: u16 = 0x608;
/// The PM timer's rate, in Hz.
pub const PM_TMR_HZ: u64 = 3_579_545;
/// The PM timer counts in 24 bits (the FADT's `TMR_VAL_EXT` is clear).
const PM_TMR_MASK: u64 = 0xFF_FFFF;
/// PM1 control SLP_EN.
const SLP_EN: u16 = 1 << 13;
/// PM1 control SLP_TYP field (12:10).
const SLP_TYP_SHIFT: u32 = 10;
/// The SLP_TYP value of S5 (soft off) in the DSDT's `_S5_` package.
pub const SLP_TYP_S5: u16 = 5;

/// What a port write did besides changing a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortWrite {
    /// Nothing else.
    Done,
    /// PM1 control: SLP_EN with SLP_TYP = S5: the guest powers the VM off.
    PowerOff,
}

impl PortWrite {
    /// What the vCPU's exit becomes once the write is done: `None` (re-enter the guest) or
    /// the VM's power-off.
    pub fn exit(self) -> Option<axvcpu::VmExit> {
        match self {
            Self::Done => None,
            Self::PowerOff => Some(axvcpu::VmExit::SystemOff),
        }
    }
}

/// PM1 enable and control (status reads 0: no event is ever raised, no SCI).
#[derive(Default)]
struct Pm1 {
    enable: u16,
    control: u16,
}

/// The port models, each behind its own lock.
pub(super) struct Ports {
    pic: [Mutex<Pic8259>; 2],
    elcr: Mutex<Elcr>,
    pit: Mutex<Pit>,
    rtc: Mutex<Rtc>,
    pm1: Mutex<Pm1>,
}

/// TSC `now` in PIT ticks.
fn pit_time(now: u64, c: &PcConfig) -> u64 {
    (u128::from(now) * u128::from(PIT_HZ) / u128::from(c.tsc_hz.max(1))) as u64
}

/// PIT time `t` in TSC ticks (rounded up: never early).
fn pit_to_tsc(t: u64, c: &PcConfig) -> u64 {
    (u128::from(t) * u128::from(c.tsc_hz)).div_ceil(u128::from(PIT_HZ)) as u64
}

/// TSC `now` as Unix time in nanoseconds.
fn unix_ns(now: u64, c: &PcConfig) -> u64 {
    let ns = u128::from(now) * 1_000_000_000 / u128::from(c.tsc_hz.max(1));
    c.unix_ns_at_tsc0.saturating_add(ns as u64)
}

/// The ACPI PM timer's count at TSC `now`: 3.579545 MHz, 24 bits.
fn pm_timer(now: u64, c: &PcConfig) -> u64 {
    let t = u128::from(now) * u128::from(PM_TMR_HZ) / u128::from(c.tsc_hz.max(1));
    t as u64 & PM_TMR_MASK
}

/// All ones in `width`.
fn ones(width: AccessWidth) -> u64 {
    width.mask()
}

impl Ports {
    pub(super) fn new() -> Self {
        Self {
            pic: [Mutex::new(Pic8259::new()), Mutex::new(Pic8259::new())],
            elcr: Mutex::new(Elcr::default()),
            pit: Mutex::new(Pit::new()),
            rtc: Mutex::new(Rtc::new()),
            pm1: Mutex::new(Pm1::default()),
        }
    }

    /// Every model back to power-on.
    pub(super) fn reset(&self) {
        for p in &self.pic {
            *p.lock() = Pic8259::new();
        }
        *self.elcr.lock() = Elcr::default();
        *self.pit.lock() = Pit::new();
        *self.rtc.lock() = Rtc::new();
        *self.pm1.lock() = Pm1::default();
    }

    pub(super) fn read(
        &self,
        port: u16,
        width: AccessWidth,
        now: u64,
        c: &PcConfig,
    ) -> Option<u64> {
        let r = match port {
            0x20 | 0x21 => self.pic[0].lock().read(usize::from(port - 0x20), width),
            0xA0 | 0xA1 => self.pic[1].lock().read(usize::from(port - 0xA0), width),
            0x4D0 | 0x4D1 => self.elcr.lock().read(usize::from(port - 0x4D0), width),
            0x40..=0x43 => self
                .pit
                .lock()
                .read(usize::from(port - 0x40), width, pit_time(now, c)),
            0x61 => self.pit.lock().port61_read(width, pit_time(now, c)),
            0x70 | 0x71 => self
                .rtc
                .lock()
                .read(usize::from(port - 0x70), width, unix_ns(now, c)),
            0x80 => Ok(0xFF),
            PM1_EVT..=PM1_LAST => Ok(self.pm1_read(port, width)),
            PM_TMR..=0x60B => Ok(pm_timer(now, c) >> (8 * (port - PM_TMR))),
            _ => return None,
        };
        Some(r.map_or(ones(width), |v| v & width.mask()))
    }

    pub(super) fn write(
        &self,
        port: u16,
        width: AccessWidth,
        value: u64,
        now: u64,
        c: &PcConfig,
    ) -> Option<PortWrite> {
        // Refused widths are dropped, as on a PC bus nothing answers them.
        let _ = match port {
            0x20 | 0x21 => self.pic[0]
                .lock()
                .write(usize::from(port - 0x20), width, value),
            0xA0 | 0xA1 => self.pic[1]
                .lock()
                .write(usize::from(port - 0xA0), width, value),
            0x4D0 | 0x4D1 => self
                .elcr
                .lock()
                .write(usize::from(port - 0x4D0), width, value),
            0x40..=0x43 => {
                self.pit
                    .lock()
                    .write(usize::from(port - 0x40), width, value, pit_time(now, c))
            }
            0x61 => self.pit.lock().port61_write(width, value, pit_time(now, c)),
            0x70 | 0x71 => {
                self.rtc
                    .lock()
                    .write(usize::from(port - 0x70), width, value, unix_ns(now, c))
            }
            0x80 => Ok(()),
            PM1_EVT..=PM1_LAST => return Some(self.pm1_write(port, width, value)),
            // The PM timer is read-only.
            PM_TMR..=0x60B => Ok(()),
            _ => return None,
        };
        Some(PortWrite::Done)
    }

    /// PM1 bytes 0x600..=0x605 as 16-bit registers (status, enable, control), byte or
    /// word accesses (a word at an odd port reads all ones).
    fn pm1_read(&self, port: u16, width: AccessWidth) -> u64 {
        let p = self.pm1.lock();
        let regs = [0u16, p.enable, p.control];
        let at = usize::from(port - PM1_EVT);
        let word = u64::from(regs[at / 2]);
        match (width, at % 2) {
            (AccessWidth::Byte, 0) => word & 0xFF,
            (AccessWidth::Byte, _) => word >> 8,
            (AccessWidth::Half, 0) => word,
            _ => ones(width),
        }
    }

    fn pm1_write(&self, port: u16, width: AccessWidth, value: u64) -> PortWrite {
        let mut p = self.pm1.lock();
        let at = usize::from(port - PM1_EVT);
        let reg = match at / 2 {
            1 => &mut p.enable,
            2 => &mut p.control,
            // Status: write-one-to-clear, and nothing is ever set.
            _ => return PortWrite::Done,
        };
        *reg = match (width, at % 2) {
            (AccessWidth::Byte, 0) => (*reg & 0xFF00) | (value as u16 & 0xFF),
            (AccessWidth::Byte, _) => (*reg & 0x00FF) | ((value as u16 & 0xFF) << 8),
            (AccessWidth::Half, 0) => value as u16,
            _ => return PortWrite::Done,
        };
        let control = p.control;
        if at / 2 == 2 && control & SLP_EN != 0 {
            // SLP_EN is write-only: it never reads back.
            p.control &= !SLP_EN;
            if (control >> SLP_TYP_SHIFT) & 7 == SLP_TYP_S5 {
                return PortWrite::PowerOff;
            }
        }
        PortWrite::Done
    }

    /// Polls the PIT's channel 0 at TSC `now`: whether IRQ 0 rose.
    pub(super) fn poll_irq0(&self, now: u64, c: &PcConfig) -> bool {
        self.pit.lock().poll_irq0(pit_time(now, c))
    }

    /// The TSC of the PIT's next IRQ 0, if one is coming.
    pub(super) fn next_irq0_tsc(&self, c: &PcConfig) -> Option<u64> {
        self.pit.lock().next_irq0().map(|t| pit_to_tsc(t, c))
    }
}
