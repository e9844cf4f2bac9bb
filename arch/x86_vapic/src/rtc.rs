//! The MC146818 CMOS real-time clock and its RAM.

use axdevice_base::{AccessWidth, DeviceError};

/// The CMOS byte holding the century (the FADT's `CENTURY` field names it).
pub const RTC_CENTURY: u8 = 0x32;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const REG_A: u8 = 0x0A;
const REG_B: u8 = 0x0B;
const REG_C: u8 = 0x0C;
const REG_D: u8 = 0x0D;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_UIE: u8 = 0x10;
const B_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const D_VRT: u8 = 0x80;

const NS_PER_SEC: u64 = 1_000_000_000;
/// UIP is set this long before each update (the end of each second).
const UIP_NS: u64 = 244_000;
const SECS_PER_DAY: i64 = 86_400;

/// A broken-down time (binary, 24-hour).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DateTime {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian, `year >= 0`, month
/// 1..=12), by counting 400-year eras from 0000-03-01.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date of a day count since 1970-01-01 (the inverse of
/// [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + (month <= 2) as i64;
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl DateTime {
    /// The time `secs` seconds after the epoch (clamped at the epoch).
    fn from_unix(secs: i64) -> Self {
        let secs = secs.max(0);
        let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
        let rem = secs % SECS_PER_DAY;
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    /// Seconds since the epoch, every field first clamped into its range (years
    /// 1970..=9999).
    fn to_unix(self) -> i64 {
        let year = self.year.clamp(1970, 9999);
        let month = self.month.clamp(1, 12);
        let day = self.day.clamp(1, days_in_month(year, month));
        days_from_civil(year, month, day) * SECS_PER_DAY
            + self.hour.clamp(0, 23) * 3600
            + self.minute.clamp(0, 59) * 60
            + self.second.clamp(0, 59)
    }

    /// Day of the week, 1 = Sunday.
    fn weekday(self) -> i64 {
        (self.to_unix() / SECS_PER_DAY + 4).rem_euclid(7) + 1
    }
}

/// The CMOS RTC at ports 0x70 (index; bit 7, NMI disable, is ignored) and 0x71 (data),
/// offsets 0 and 1. The clock runs from a Unix time in nanoseconds the caller passes in,
/// plus the offset the guest set; the time registers follow register B's format (BCD or
/// binary, 12- or 24-hour) and SET bit; UIP is set in the last 244 µs of each second. No
/// interrupts: register C reads 0, the interrupt-enable bits are stored only. The other
/// bytes up to 0x7F are RAM. See `docs/x86-interrupts.md`.
#[derive(Clone, Debug)]
pub struct Rtc {
    index: u8,
    ram: [u8; 128],
    /// Guest time minus host time, seconds.
    offset: i64,
    /// The time while SET holds the clock.
    held: Option<DateTime>,
}

impl Default for Rtc {
    fn default() -> Self {
        Self::new()
    }
}

impl Rtc {
    /// The size of its port window (0x70, 0x71).
    pub const SIZE: usize = 2;

    /// An RTC showing the host's time: 32.768 kHz divider, BCD, 24-hour.
    pub fn new() -> Self {
        let mut ram = [0; 128];
        ram[REG_A as usize] = 0x26;
        ram[REG_B as usize] = B_24H;
        Self {
            index: 0,
            ram,
            offset: 0,
            held: None,
        }
    }

    fn now(&self, unix_ns: u64) -> DateTime {
        self.held.unwrap_or_else(|| {
            DateTime::from_unix(((unix_ns / NS_PER_SEC) as i64).saturating_add(self.offset))
        })
    }

    fn set_time(&mut self, time: DateTime, unix_ns: u64) {
        if self.ram[REG_B as usize] & B_SET != 0 {
            self.held = Some(time);
        } else {
            self.offset = time.to_unix() - (unix_ns / NS_PER_SEC) as i64;
        }
    }

    fn encode(&self, value: i64) -> u8 {
        let v = value.rem_euclid(100) as u8;
        if self.ram[REG_B as usize] & B_BINARY != 0 {
            v
        } else {
            ((v / 10) << 4) | (v % 10)
        }
    }

    fn decode(&self, value: u8) -> i64 {
        if self.ram[REG_B as usize] & B_BINARY != 0 {
            value as i64
        } else {
            (value >> 4) as i64 * 10 + (value & 0xF) as i64
        }
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

    /// A guest `in` at `offset` (0: the index port reads 0xFF; 1: the selected byte) at
    /// host time `unix_ns`.
    pub fn read(
        &self,
        offset: usize,
        width: AccessWidth,
        unix_ns: u64,
    ) -> Result<u64, DeviceError> {
        Self::check(offset, width)?;
        if offset == 0 {
            return Ok(0xFF);
        }
        Ok(self.read_reg(self.index, unix_ns) as u64)
    }

    /// A guest `out` at `offset` (0: select a byte, 1: write it) at host time `unix_ns`.
    pub fn write(
        &mut self,
        offset: usize,
        width: AccessWidth,
        value: u64,
        unix_ns: u64,
    ) -> Result<(), DeviceError> {
        Self::check(offset, width)?;
        if offset == 0 {
            self.index = value as u8 & 0x7F;
        } else {
            self.write_reg(self.index, value as u8, unix_ns);
        }
        Ok(())
    }

    /// CMOS byte `reg` (0..=0x7F) as the guest reads it.
    pub fn read_reg(&self, reg: u8, unix_ns: u64) -> u8 {
        let t = self.now(unix_ns);
        let b = self.ram[REG_B as usize];
        match reg & 0x7F {
            SECONDS => self.encode(t.second),
            MINUTES => self.encode(t.minute),
            HOURS if b & B_24H != 0 => self.encode(t.hour),
            HOURS => {
                let h12 = if t.hour % 12 == 0 { 12 } else { t.hour % 12 };
                self.encode(h12) | if t.hour >= 12 { 0x80 } else { 0 }
            }
            WEEKDAY => self.encode(t.weekday()),
            DAY => self.encode(t.day),
            MONTH => self.encode(t.month),
            YEAR => self.encode(t.year % 100),
            RTC_CENTURY => self.encode(t.year / 100),
            REG_A => {
                let a = self.ram[REG_A as usize];
                let running = self.held.is_none() && a & 0x70 == 0x20;
                let uip = running && unix_ns % NS_PER_SEC >= NS_PER_SEC - UIP_NS;
                a | if uip { A_UIP } else { 0 }
            }
            REG_C => 0,
            REG_D => D_VRT,
            r => self.ram[r as usize],
        }
    }

    /// CMOS byte `reg` written by the guest: a time register sets the clock (at once, or
    /// when SET clears), register A keeps bits 6:0, register B switches format and SET,
    /// C and D are read-only, anything else is RAM.
    pub fn write_reg(&mut self, reg: u8, value: u8, unix_ns: u64) {
        let reg = reg & 0x7F;
        let mut t = self.now(unix_ns);
        let v = self.decode(value & 0x7F);
        match reg {
            SECONDS => t.second = self.decode(value),
            MINUTES => t.minute = self.decode(value),
            HOURS if self.ram[REG_B as usize] & B_24H != 0 => t.hour = self.decode(value),
            HOURS => t.hour = v % 12 + if value & 0x80 != 0 { 12 } else { 0 },
            DAY => t.day = self.decode(value),
            MONTH => t.month = self.decode(value),
            YEAR => t.year = t.year - t.year % 100 + self.decode(value),
            RTC_CENTURY => t.year = self.decode(value) * 100 + t.year % 100,
            REG_A => {
                self.ram[REG_A as usize] = value & 0x7F;
                return;
            }
            REG_B => {
                let old = self.ram[REG_B as usize];
                // SET clears UIE.
                let value = if value & B_SET != 0 {
                    value & !B_UIE
                } else {
                    value
                };
                self.ram[REG_B as usize] = value;
                match (old & B_SET != 0, value & B_SET != 0) {
                    (false, true) => self.held = Some(t),
                    (true, false) => {
                        self.held = None;
                        self.set_time(t, unix_ns);
                    }
                    _ => {}
                }
                return;
            }
            // The day of the week follows the date.
            WEEKDAY | REG_C | REG_D => return,
            r => {
                self.ram[r as usize] = value;
                return;
            }
        }
        self.set_time(t, unix_ns);
    }
}

#[cfg(test)]
mod tests;
