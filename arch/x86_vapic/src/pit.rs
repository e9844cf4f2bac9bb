//! The 8254 programmable interval timer and port 0x61.

use axdevice_base::{AccessWidth, DeviceError};

/// The PIT's input clock in Hz: every `now` passed to [`Pit`] counts ticks of it.
pub const PIT_HZ: u64 = 1_193_182;

/// One counter.
#[derive(Clone, Copy, Debug, Default)]
struct Channel {
    /// Operating mode 0..=5 (6 and 7 are taken as 2 and 3).
    mode: u8,
    /// Read/write access: 1 LSB, 2 MSB, 3 LSB then MSB.
    access: u8,
    bcd: bool,
    /// The count counting restarts from (1..=65536: a written 0 is 65536).
    reload: u64,
    /// A complete count has been written since the control word.
    loaded: bool,
    /// When counting (re)started, in PIT ticks.
    start: u64,
    /// The elapsed ticks while counting is suspended (gate low).
    frozen: Option<u64>,
    gate: bool,
    /// The LSB of a two-byte count written so far.
    low_written: Option<u8>,
    /// The next two-byte read gives the MSB.
    read_msb: bool,
    latch: Option<u16>,
    latch_msb: bool,
    status: Option<u8>,
    null_count: bool,
    /// Elapsed ticks up to which OUT's rising edges were reported (channel 0).
    seen: u64,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Self {
            access: 3,
            reload: 0x10000,
            gate,
            ..Self::default()
        }
    }

    fn elapsed(&self, now: u64) -> u64 {
        if !self.loaded {
            return 0;
        }
        self.frozen
            .unwrap_or_else(|| now.saturating_sub(self.start))
    }

    fn periodic(&self) -> bool {
        matches!(self.mode, 2 | 3)
    }

    fn count(&self, now: u64) -> u16 {
        if !self.loaded {
            return 0;
        }
        let n = self.reload;
        let e = self.elapsed(now);
        let c = match self.mode {
            2 => n - e % n,
            3 => {
                let phase = e % n;
                let high = n.div_ceil(2);
                let p = if phase < high { phase } else { phase - high };
                (n - 2 * p) & !1
            }
            // Modes 0, 1, 4, 5 count down once and wrap through 0xFFFF.
            _ => n.wrapping_sub(e),
        };
        c as u16
    }

    fn out(&self, now: u64) -> bool {
        if !self.loaded {
            return self.mode != 0;
        }
        let n = self.reload;
        let e = self.elapsed(now);
        match self.mode {
            0 | 1 => e >= n,
            2 => !self.gate || e % n != n - 1,
            3 => !self.gate || e % n < n.div_ceil(2),
            _ => e != n,
        }
    }

    fn status_byte(&self, now: u64) -> u8 {
        (self.out(now) as u8) << 7
            | (self.null_count as u8) << 6
            | self.access << 4
            | self.mode << 1
            | self.bcd as u8
    }

    fn control(&mut self, value: u8, now: u64) {
        let access = (value >> 4) & 3;
        if access == 0 {
            if self.latch.is_none() {
                self.latch = Some(self.count(now));
                self.latch_msb = false;
            }
            return;
        }
        let mode = (value >> 1) & 7;
        *self = Self {
            mode: if mode >= 6 { mode - 4 } else { mode },
            access,
            bcd: value & 1 != 0,
            null_count: true,
            ..Self::new(self.gate)
        };
    }

    fn write(&mut self, value: u8, now: u64) {
        let count = match self.access {
            1 => value as u64,
            2 => (value as u64) << 8,
            _ => match self.low_written.take() {
                None => {
                    self.low_written = Some(value);
                    if self.mode == 0 {
                        // Writing the first byte stops mode 0 counting (OUT low).
                        self.loaded = false;
                    }
                    return;
                }
                Some(low) => low as u64 | (value as u64) << 8,
            },
        };
        self.reload = if count == 0 { 0x10000 } else { count };
        self.loaded = true;
        self.null_count = false;
        self.start = now;
        self.seen = 0;
        let suspended = !self.gate && matches!(self.mode, 0 | 2 | 3 | 4);
        self.frozen = suspended.then_some(0);
    }

    fn read(&mut self, now: u64) -> u8 {
        if let Some(status) = self.status.take() {
            return status;
        }
        let (value, msb) = match self.latch {
            Some(latched) => {
                let msb = match self.access {
                    1 => false,
                    2 => true,
                    _ => {
                        let msb = self.latch_msb;
                        self.latch_msb = !msb;
                        msb
                    }
                };
                if self.access != 3 || msb {
                    self.latch = None;
                    self.latch_msb = false;
                }
                (latched, msb)
            }
            None => {
                let msb = match self.access {
                    1 => false,
                    2 => true,
                    _ => {
                        let msb = self.read_msb;
                        self.read_msb = !msb;
                        msb
                    }
                };
                (self.count(now), msb)
            }
        };
        if msb {
            (value >> 8) as u8
        } else {
            value as u8
        }
    }

    fn set_gate(&mut self, high: bool, now: u64) {
        if high == self.gate {
            return;
        }
        self.gate = high;
        if !self.loaded {
            return;
        }
        match (self.mode, high) {
            // Modes 0 and 4: the gate suspends counting.
            (0 | 4, false) => self.frozen = Some(self.elapsed(now)),
            (0 | 4, true) => {
                let e = self.frozen.take().unwrap_or(0);
                self.start = now.saturating_sub(e);
            }
            // Modes 2 and 3: low stops counting (OUT high); the rising edge reloads.
            (2 | 3, false) => self.frozen = Some(0),
            // Modes 1 and 5 (and 2, 3 going high): the rising edge (re)starts counting.
            (_, true) => {
                self.frozen = None;
                self.start = now;
                self.seen = 0;
            }
            _ => {}
        }
    }
}

/// The 8254 PIT at ports 0x40..=0x43 (offsets 0..=3: counters 0, 1, 2 and the control
/// word) with port 0x61's channel-2 gate and output. Time comes in as PIT ticks
/// ([`PIT_HZ`]); channel 0's output edges are polled for IRQ 0 ([`Pit::poll_irq0`],
/// [`Pit::next_irq0`]). See `docs/x86-interrupts.md`.
#[derive(Clone, Debug)]
pub struct Pit {
    channels: [Channel; 3],
    /// Port 0x61 bits 3:1 (speaker data enable, parity and I/O check enables).
    port_b: u8,
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    /// The size of its port window (0x40..=0x43).
    pub const SIZE: usize = 4;

    /// A PIT after power-on: every counter in mode 0 without a count, channel 2's gate
    /// low.
    pub fn new() -> Self {
        Self {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port_b: 0,
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

    /// A guest `in` at `offset` (0..=2 a counter: a latched status, a latched count or the
    /// live count, by bytes as the access mode says; 3 reads 0) at PIT time `now`.
    pub fn read(
        &mut self,
        offset: usize,
        width: AccessWidth,
        now: u64,
    ) -> Result<u64, DeviceError> {
        Self::check(offset, width)?;
        Ok(match self.channels.get_mut(offset) {
            Some(ch) => ch.read(now) as u64,
            None => 0,
        })
    }

    /// A guest `out` at `offset`: a counter's count byte (0..=2) or a control word (3:
    /// mode set, counter latch, read-back) at PIT time `now`.
    pub fn write(
        &mut self,
        offset: usize,
        width: AccessWidth,
        value: u64,
        now: u64,
    ) -> Result<(), DeviceError> {
        Self::check(offset, width)?;
        let value = value as u8;
        match self.channels.get_mut(offset) {
            Some(ch) => ch.write(value, now),
            None => self.control(value, now),
        }
        Ok(())
    }

    fn control(&mut self, value: u8, now: u64) {
        let select = (value >> 6) as usize;
        if select < 3 {
            self.channels[select].control(value, now);
            return;
        }
        // Read-back: bit 5 clear latches counts, bit 4 clear latches statuses, of the
        // counters bits 3:1 select.
        for (i, ch) in self.channels.iter_mut().enumerate() {
            if value & (2 << i) == 0 {
                continue;
            }
            if value & 0x20 == 0 && ch.latch.is_none() {
                ch.latch = Some(ch.count(now));
                ch.latch_msb = false;
            }
            if value & 0x10 == 0 && ch.status.is_none() {
                ch.status = Some(ch.status_byte(now));
            }
        }
    }

    /// A guest `in` of port 0x61 (bytes only) at PIT time `now`: bit 0 channel 2's gate,
    /// bits 3:1 as written, bit 4 the refresh toggle (flips every 18 PIT ticks, about
    /// 15 µs), bit 5 channel 2's output.
    pub fn port61_read(&self, width: AccessWidth, now: u64) -> Result<u64, DeviceError> {
        if width != AccessWidth::Byte {
            return Err(DeviceError::BadWidth);
        }
        let ch2 = &self.channels[2];
        let refresh = (now / 18) & 1 == 1;
        Ok((ch2.gate as u64)
            | (self.port_b as u64) << 1
            | (refresh as u64) << 4
            | (ch2.out(now) as u64) << 5)
    }

    /// A guest `out` of port 0x61: bit 0 sets channel 2's gate, bits 3:1 are kept, the
    /// rest is read-only.
    pub fn port61_write(
        &mut self,
        width: AccessWidth,
        value: u64,
        now: u64,
    ) -> Result<(), DeviceError> {
        if width != AccessWidth::Byte {
            return Err(DeviceError::BadWidth);
        }
        self.port_b = (value as u8 >> 1) & 7;
        self.channels[2].set_gate(value & 1 != 0, now);
        Ok(())
    }

    /// Channel `ch`'s output at PIT time `now` (`false` for a channel past 2).
    pub fn out(&self, ch: usize, now: u64) -> bool {
        self.channels.get(ch).is_some_and(|c| c.out(now))
    }

    /// Whether channel 0's output rose since the last poll (up to PIT time `now`): the VM
    /// then pulses the I/O APIC's IRQ 0 input (pin 2). Several periods missed are one
    /// edge.
    pub fn poll_irq0(&mut self, now: u64) -> bool {
        let ch = &mut self.channels[0];
        if !ch.loaded {
            return false;
        }
        let e = ch.elapsed(now);
        let n = ch.reload;
        let rose = if ch.periodic() {
            e / n > ch.seen / n
        } else {
            ch.seen < n && e >= n
        };
        ch.seen = ch.seen.max(e);
        rose
    }

    /// The PIT time of channel 0's next rising output edge after the last poll (when the
    /// VM should call [`Pit::poll_irq0`]), `None` if none is coming.
    pub fn next_irq0(&self) -> Option<u64> {
        let ch = &self.channels[0];
        if !ch.loaded {
            return None;
        }
        let n = ch.reload;
        if ch.periodic() {
            Some(ch.start.saturating_add((ch.seen / n + 1).saturating_mul(n)))
        } else {
            (ch.seen < n).then(|| ch.start.saturating_add(n))
        }
    }
}

#[cfg(test)]
mod tests;
