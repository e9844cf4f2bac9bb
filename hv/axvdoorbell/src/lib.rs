//! The doorbell of a link between two VMs (issue 14, item 4: shared memory + doorbell for
//! RTOS-style guests).
//!
//! [`pair`] makes the two ends of one link, [`DoorbellEnd`] `0` and `1`; each is an
//! [`MmioDevice`] mapped into one VM (a 4 KiB window). Each end has 32 doorbell bits. A
//! guest writes bits to its `RING` register; they are ORed into the *peer's* `PENDING`
//! register, and the peer's interrupt line is high while its `PENDING` is non-zero. The
//! peer's guest reads `PENDING` and writes the bits it handled to `ACK` (write 1 to clear).
//!
//! | Offset | Register | Access |
//! | --- | --- | --- |
//! | `0x00` | `MAGIC` = `0x4c454244` (`"DBEL"` in memory order) | read |
//! | `0x04` | `SIDE`: 0 or 1, which end this is | read |
//! | `0x08` | `PEER_UP`: 1 while the peer's VM is attached | read |
//! | `0x10` | `RING`: bits to raise in the peer (reads 0) | write |
//! | `0x14` | `PENDING`: bits the peer rang, not yet acknowledged | read |
//! | `0x18` | `ACK`: bits to clear from `PENDING` | write |
//!
//! Registers are 32-bit and 4-byte aligned (other widths: [`DeviceError::BadWidth`],
//! misaligned: [`DeviceError::Misaligned`]); other offsets inside the window read 0 and
//! ignore writes; past the window: [`DeviceError::BadOffset`].
//!
//! **A peer that stops.** The hypervisor [detaches](DoorbellEnd::detach) the end of a VM that
//! stops and [attaches](DoorbellEnd::attach) it (with its interrupt line) when the VM starts
//! again. While an end is detached its `PENDING` is cleared and ringing it does nothing (the
//! ringing guest sees `PEER_UP` = 0 and goes on running); an end attaches with nothing
//! pending. The shared memory itself is the hypervisor's and outlives either VM.
#![no_std]

extern crate alloc;

use alloc::sync::Arc;
use axdevice_base::{AccessWidth, DeviceError, IrqLine, MmioDevice};
use spin::Mutex;

#[cfg(test)]
mod tests;

/// Bytes of guest-physical address space a doorbell end claims.
pub const WINDOW_SIZE: usize = 0x1000;
/// The `MAGIC` register's value.
pub const MAGIC: u32 = 0x4c45_4244;

/// Register offsets.
pub mod reg {
    /// `MAGIC` (read).
    pub const MAGIC: usize = 0x00;
    /// `SIDE` (read).
    pub const SIDE: usize = 0x04;
    /// `PEER_UP` (read).
    pub const PEER_UP: usize = 0x08;
    /// `RING` (write).
    pub const RING: usize = 0x10;
    /// `PENDING` (read).
    pub const PENDING: usize = 0x14;
    /// `ACK` (write).
    pub const ACK: usize = 0x18;
}

/// One side's state.
#[derive(Default)]
struct Side {
    /// The VM's interrupt line for this end; `Some` while the end is attached.
    line: Option<Arc<dyn IrqLine>>,
    pending: u32,
    /// What this side's guest rang.
    rings: Rings,
}

/// How many times a guest rang its peer (writes of non-zero bits to `RING`), since the link
/// was made: delivered to an attached peer, or dropped because the peer was detached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rings {
    /// Rings ORed into the peer's `PENDING`.
    pub delivered: u64,
    /// Rings while the peer's VM was not attached (stopped, or not there yet).
    pub dropped: u64,
}

impl Side {
    /// Drives the line from `pending`.
    fn update(&self) {
        if let Some(line) = &self.line {
            line.set_level(self.pending != 0);
        }
    }
}

/// One end of a link's doorbell: the register window of one VM.
pub struct DoorbellEnd {
    side: usize,
    sides: Arc<Mutex<[Side; 2]>>,
}

/// The two ends of a new link, both detached (no VM yet).
pub fn pair() -> (DoorbellEnd, DoorbellEnd) {
    let sides = Arc::new(Mutex::new([Side::default(), Side::default()]));
    (
        DoorbellEnd {
            side: 0,
            sides: sides.clone(),
        },
        DoorbellEnd { side: 1, sides },
    )
}

impl DoorbellEnd {
    /// Which end this is (0 or 1).
    pub fn side(&self) -> usize {
        self.side
    }

    /// The VM of this end runs: its interrupt line is `line`; nothing is pending.
    pub fn attach(&self, line: Arc<dyn IrqLine>) {
        let mut sides = self.sides.lock();
        let me = &mut sides[self.side];
        me.pending = 0;
        me.line = Some(line);
        me.update();
    }

    /// The VM of this end stopped: its pending bits are dropped, its line lowered and
    /// forgotten; ringing it does nothing until [`attach`](Self::attach).
    pub fn detach(&self) {
        let mut sides = self.sides.lock();
        let me = &mut sides[self.side];
        me.pending = 0;
        me.update();
        me.line = None;
    }

    /// This end's pending bits (what its guest reads in `PENDING`).
    pub fn pending(&self) -> u32 {
        self.sides.lock()[self.side].pending
    }

    /// What this end's guests rang so far (every VM attached to this end since [`pair`]).
    pub fn rings(&self) -> Rings {
        self.sides.lock()[self.side].rings
    }
}

impl MmioDevice for DoorbellEnd {
    fn name(&self) -> &str {
        "doorbell"
    }

    fn size(&self) -> usize {
        WINDOW_SIZE
    }

    fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        check(offset, width)?;
        let sides = self.sides.lock();
        let value = match offset {
            reg::MAGIC => MAGIC,
            reg::SIDE => self.side as u32,
            reg::PEER_UP => u32::from(sides[1 - self.side].line.is_some()),
            reg::PENDING => sides[self.side].pending,
            _ => 0,
        };
        Ok(u64::from(value))
    }

    fn write(&self, offset: usize, width: AccessWidth, value: u64) -> Result<(), DeviceError> {
        check(offset, width)?;
        let bits = value as u32;
        let mut sides = self.sides.lock();
        match offset {
            reg::RING if bits != 0 => {
                let [me, peer] = sides_of(&mut sides, self.side);
                if peer.line.is_some() {
                    me.rings.delivered = me.rings.delivered.saturating_add(1);
                    peer.pending |= bits;
                    peer.update();
                } else {
                    me.rings.dropped = me.rings.dropped.saturating_add(1);
                }
            }
            reg::ACK => {
                let me = &mut sides[self.side];
                me.pending &= !bits;
                me.update();
            }
            _ => {}
        }
        Ok(())
    }
}

/// `[this side, the other side]` of a link's state, for side `side`.
fn sides_of(sides: &mut [Side; 2], side: usize) -> [&mut Side; 2] {
    let [zero, one] = sides;
    if side == 0 {
        [zero, one]
    } else {
        [one, zero]
    }
}

/// Whether a guest access of `width` at `offset` is one the window takes.
fn check(offset: usize, width: AccessWidth) -> Result<(), DeviceError> {
    if offset >= WINDOW_SIZE || WINDOW_SIZE - offset < width.size() {
        return Err(DeviceError::BadOffset);
    }
    if width != AccessWidth::Word {
        return Err(DeviceError::BadWidth);
    }
    if !offset.is_multiple_of(4) {
        return Err(DeviceError::Misaligned);
    }
    Ok(())
}
