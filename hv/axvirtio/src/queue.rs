//! Split virtqueues (virtio 1.2 §2.7), device side.
//!
//! The driver owns three guest-RAM areas per queue: the descriptor table (16 bytes per
//! entry), the available ring (`flags, idx, ring[size]`) and the used ring
//! (`flags, idx, ring[size] of {id, len}`). All of it is guest-controlled and may change
//! under us at any time, so every value is read once through the [`GuestMemory`] and
//! checked before use:
//!
//! - an available index more than `size` ahead of ours, a head or `next` index `>= size`,
//!   a chain with more than `size` descriptors (a loop), an indirect descriptor (the
//!   feature is not offered), a readable buffer after a writable one, or a buffer whose
//!   `addr + len` wraps → [`QueueError`];
//! - ring or buffer addresses that are not guest RAM → [`QueueError::Memory`].
//!
//! Buffers are not copied at walk time: a [`Chain`] lists its [`Segment`]s, and the device
//! reads or writes them with [`Chain::read`] / [`Chain::write`] (bounded by the caller's
//! buffer, so a guest's huge `len` never makes us allocate).

use alloc::vec::Vec;
use axdevice_base::{GuestMemory, GuestMemoryError};
use core::fmt;
use core::sync::atomic::{fence, Ordering};

/// The largest queue size the transport offers (`QueueNumMax`).
pub const QUEUE_MAX: u16 = 256;

const DESC_SIZE: u64 = 16;
const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;
const VIRTQ_DESC_F_INDIRECT: u16 = 4;

/// Why a queue could not be used. Each one is the guest's doing; the transport puts the
/// device in `DEVICE_NEEDS_RESET` and logs one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// A ring or buffer range is not guest RAM, or wraps.
    Memory(GuestMemoryError),
    /// The available index ran more than the queue size ahead of the device.
    AvailOverrun,
    /// A descriptor index (head or `next`) is not below the queue size.
    BadIndex(u16),
    /// The chain has more descriptors than the queue (a loop).
    ChainTooLong,
    /// An indirect descriptor (`VIRTIO_F_INDIRECT_DESC` is not offered).
    Indirect,
    /// A device-readable descriptor follows a device-writable one.
    ReadAfterWrite,
    /// A descriptor's `addr + len` wraps the address space.
    BufferWraps,
    /// The queue was used before the driver made it ready.
    NotReady,
}

impl From<GuestMemoryError> for QueueError {
    fn from(e: GuestMemoryError) -> Self {
        Self::Memory(e)
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory(e) => write!(f, "guest memory: {e}"),
            Self::AvailOverrun => {
                f.write_str("available index ran ahead by more than the queue size")
            }
            Self::BadIndex(i) => write!(f, "descriptor index {i} out of range"),
            Self::ChainTooLong => f.write_str("descriptor chain longer than the queue (loop)"),
            Self::Indirect => f.write_str("indirect descriptor (not offered)"),
            Self::ReadAfterWrite => f.write_str("readable descriptor after a writable one"),
            Self::BufferWraps => f.write_str("buffer wraps the address space"),
            Self::NotReady => f.write_str("queue not ready"),
        }
    }
}

/// One guest buffer of a chain: `len` bytes at guest-physical `addr` (`addr + len` does
/// not wrap; whether it is RAM is checked when it is read or written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
}

/// A descriptor chain taken from the available ring: its head index (given back in the
/// used ring) and its device-readable then device-writable buffers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// The head descriptor's index.
    pub head: u16,
    /// Buffers the device reads (driver → device), in order.
    pub readable: Vec<Segment>,
    /// Buffers the device writes (device → driver), in order.
    pub writable: Vec<Segment>,
}

impl Chain {
    /// Total bytes of the readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|s| u64::from(s.len)).sum()
    }

    /// Total bytes of the writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|s| u64::from(s.len)).sum()
    }

    /// Copies readable bytes starting `skip` bytes into the chain into `buf`; returns how
    /// many were copied (less than `buf.len()` when the chain ends first).
    pub fn read(
        &self,
        mem: &dyn GuestMemory,
        skip: u64,
        buf: &mut [u8],
    ) -> Result<usize, QueueError> {
        copy(&self.readable, skip, buf.len(), |addr, at, n| {
            mem.read(addr, &mut buf[at..at + n])
        })
    }

    /// Copies `data` into the writable buffers starting `skip` bytes in; returns how many
    /// bytes were written (less than `data.len()` when the chain has no more room).
    pub fn write(
        &self,
        mem: &dyn GuestMemory,
        skip: u64,
        data: &[u8],
    ) -> Result<usize, QueueError> {
        copy(&self.writable, skip, data.len(), |addr, at, n| {
            mem.write(addr, &data[at..at + n])
        })
    }
}

/// Walks `segs` from byte `skip`, calling `op(guest address, offset in the caller's
/// buffer, length)` for each piece, until `want` bytes or the segments run out.
fn copy(
    segs: &[Segment],
    mut skip: u64,
    want: usize,
    mut op: impl FnMut(u64, usize, usize) -> Result<(), GuestMemoryError>,
) -> Result<usize, QueueError> {
    let mut done = 0;
    for s in segs {
        if done == want {
            break;
        }
        let len = u64::from(s.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        // Both fit: skip < len <= u32::MAX, and the piece is at most want - done.
        let avail = usize::try_from(len - skip).unwrap_or(usize::MAX);
        let n = avail.min(want - done);
        op(offset(s.addr, skip)?, done, n)?;
        done += n;
        skip = 0;
    }
    Ok(done)
}

/// One split virtqueue's state as the driver configured it, plus the device's position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    /// Queue size the driver chose (`QueueNum`); at most the transport's maximum.
    pub size: u16,
    /// `QueueReady`.
    pub ready: bool,
    /// Descriptor table address.
    pub desc: u64,
    /// Available ring ("driver area") address.
    pub avail: u64,
    /// Used ring ("device area") address.
    pub used: u64,
    /// The next available-ring entry the device will take.
    pub next_avail: u16,
    /// The used index the device will publish next.
    pub next_used: u16,
}

impl Queue {
    /// A fresh queue whose size defaults to `max` (as after reset).
    pub fn new(max: u16) -> Self {
        Self {
            size: max,
            ..Self::default()
        }
    }

    /// Takes the next available chain, or `None` when the driver has offered nothing new.
    pub fn pop(&mut self, mem: &dyn GuestMemory) -> Result<Option<Chain>, QueueError> {
        if !self.ready || self.size == 0 {
            return Err(QueueError::NotReady);
        }
        let avail_idx = mem.read_u16(offset(self.avail, 2)?)?;
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(QueueError::AvailOverrun);
        }
        // Read the ring entry only after seeing the index (the driver wrote it first).
        fence(Ordering::Acquire);
        let slot = u64::from(self.next_avail % self.size);
        let head = mem.read_u16(ring_addr(self.avail, slot, 2)?)?;
        let chain = self.walk(mem, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(chain))
    }

    /// Reads the chain starting at descriptor `head`.
    fn walk(&self, mem: &dyn GuestMemory, head: u16) -> Result<Chain, QueueError> {
        let mut chain = Chain {
            head,
            ..Chain::default()
        };
        let mut index = head;
        for _ in 0..self.size {
            if index >= self.size {
                return Err(QueueError::BadIndex(index));
            }
            let mut d = [0u8; DESC_SIZE as usize];
            let at = offset(self.desc, u64::from(index) * DESC_SIZE)?;
            mem.read(at, &mut d)?;
            let addr = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
            let len = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
            let flags = u16::from_le_bytes([d[12], d[13]]);
            let next = u16::from_le_bytes([d[14], d[15]]);
            if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                return Err(QueueError::Indirect);
            }
            if addr.checked_add(u64::from(len)).is_none() {
                return Err(QueueError::BufferWraps);
            }
            let seg = Segment { addr, len };
            if flags & VIRTQ_DESC_F_WRITE != 0 {
                chain.writable.push(seg);
            } else if chain.writable.is_empty() {
                chain.readable.push(seg);
            } else {
                return Err(QueueError::ReadAfterWrite);
            }
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            index = next;
        }
        Err(QueueError::ChainTooLong)
    }

    /// Gives chain `head` back to the driver with `len` bytes written into it.
    pub fn push_used(
        &mut self,
        mem: &dyn GuestMemory,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        if !self.ready || self.size == 0 {
            return Err(QueueError::NotReady);
        }
        let slot = u64::from(self.next_used % self.size);
        let elem = ring_addr(self.used, slot, 8)?;
        mem.write_u32(elem, u32::from(head))?;
        mem.write_u32(offset(elem, 4)?, len)?;
        // The element must be visible before the index that publishes it.
        fence(Ordering::Release);
        self.next_used = self.next_used.wrapping_add(1);
        mem.write_u16(offset(self.used, 2)?, self.next_used)?;
        Ok(())
    }
}

/// The address of entry `slot` (of `entry` bytes) of a ring at `base` (after its 4-byte
/// `flags, idx` header).
fn ring_addr(base: u64, slot: u64, entry: u64) -> Result<u64, QueueError> {
    offset(base, 4 + slot * entry)
}

/// `base + off`, or an overflow error: a guest address never wraps to low memory.
fn offset(base: u64, off: u64) -> Result<u64, QueueError> {
    base.checked_add(off)
        .ok_or(QueueError::Memory(GuestMemoryError::Overflow))
}
