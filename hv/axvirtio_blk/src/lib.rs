//! virtio-blk (virtio 1.2 §5.2), the device side, on the [`axvirtio`] transport.
//!
//! [`VirtioBlk`] serves one request queue from a [`Backing`]: a file on the hypervisor's
//! disk, a [`Region`] of a host block device, or RAM ([`MemBacking`]). The guest sees
//! `backing.len() / 512` sectors and nothing else: a request whose sector, length or
//! `sector * 512 + length` (overflow included) does not lie wholly inside gets
//! [`S_IOERR`](request::S_IOERR) and touches nothing; a write to a read-only device gets
//! `S_IOERR` and writes nothing; a data buffer outside the guest's RAM gets `S_IOERR`.
//! Only a chain the transport cannot walk, or a status byte that cannot be written, is a
//! [`QueueError`] (the device then needs a reset). [`RegionClaims`] keeps a region of a
//! host disk that one VM writes from every other VM.
//!
//! Features offered: `SIZE_MAX`, `SEG_MAX`, `BLK_SIZE`, `FLUSH`, and `RO` when read-only.
//! A driver that does not accept `FLUSH` gets write-through: every write is flushed before
//! it completes.
//!
//! See `docs/virtio.md` (virtio-blk) for the threat note.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

mod backing;
mod claims;
pub mod request;

pub use backing::{
    checked_range, read_bytes, Backing, BackingError, MemBacking, Region, RegionError, SECTOR_SIZE,
};
pub use claims::{ClaimError, HostRegionError, RegionClaim, RegionClaims, Reserved, ReservedKind};

use alloc::vec;
use alloc::vec::Vec;
use axdevice_base::{AccessWidth, DeviceError, GuestMemory};
use axvirtio::queue::QUEUE_MAX;
use axvirtio::{config_from_bytes, Chain, DeviceType, QueueError, QueueIo, VirtioDevice};
use request::{Header, Kind, HEADER_LEN, ID_LEN, S_IOERR, S_OK, S_UNSUPP};

/// `VIRTIO_BLK_F_SIZE_MAX`: `size_max` in the config is the largest segment.
pub const F_SIZE_MAX: u64 = 1 << 1;
/// `VIRTIO_BLK_F_SEG_MAX`: `seg_max` in the config is the most data segments per request.
pub const F_SEG_MAX: u64 = 1 << 2;
/// `VIRTIO_BLK_F_RO`: the device is read-only.
pub const F_RO: u64 = 1 << 5;
/// `VIRTIO_BLK_F_BLK_SIZE`: `blk_size` in the config is the logical block size.
pub const F_BLK_SIZE: u64 = 1 << 6;
/// `VIRTIO_BLK_F_FLUSH`: the device takes `FLUSH` requests.
pub const F_FLUSH: u64 = 1 << 9;

/// The largest data segment offered (`size_max`).
pub const SIZE_MAX: u32 = 64 * 1024;
/// The most data segments per request offered (`seg_max`).
pub const SEG_MAX: u32 = 32;
/// The most data bytes one request may move; a longer one gets `S_IOERR`. This bounds the
/// work one chain can cost whatever the guest puts in its descriptors.
pub const REQUEST_MAX: u64 = SIZE_MAX as u64 * SEG_MAX as u64;

/// Bytes copied between guest RAM and the backing at a time: as much as the largest data
/// segment offered, so that a backing whose every call has a fixed cost (a file on the
/// hypervisor's disk: lookup, cluster walk, flush) pays it once per segment, not once per
/// 4 KiB. The buffer is allocated once per device.
const CHUNK: usize = SIZE_MAX as usize;

/// The config space (`struct virtio_blk_config`) as served: `capacity` at 0, `size_max`
/// at 8, `seg_max` at 12, geometry (zero) at 16, `blk_size` at 20, the rest zero.
const CONFIG_LEN: usize = 64;

/// The one request queue.
const REQUESTQ: usize = 0;

/// A virtio block device over a [`Backing`]; wrap it in an
/// [`axvirtio::VirtioMmio`].
pub struct VirtioBlk<B> {
    backing: B,
    read_only: bool,
    /// Whole sectors of the backing, in bytes (a partial last sector is not reachable).
    capacity: u64,
    id: [u8; ID_LEN],
    config: [u8; CONFIG_LEN],
    /// Negotiated `FLUSH` (otherwise writes are write-through).
    flush_negotiated: bool,
    buf: Vec<u8>,
}

impl<B: Backing> VirtioBlk<B> {
    /// A device serving `backing`, refusing writes when `read_only`, reporting `id` (at
    /// most 20 bytes used) to `GET_ID`.
    pub fn new(backing: B, read_only: bool, id: &str) -> Self {
        let capacity = backing.len() / SECTOR_SIZE * SECTOR_SIZE;
        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&(capacity / SECTOR_SIZE).to_le_bytes());
        config[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        let mut id_bytes = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        Self {
            backing,
            read_only,
            capacity,
            id: id_bytes,
            config,
            flush_negotiated: false,
            buf: vec![0; CHUNK],
        }
    }

    /// The backing (for a host to inspect it, e.g. in tests).
    pub fn backing(&self) -> &B {
        &self.backing
    }

    /// Serves one chain; returns the bytes written into it (data and status).
    fn serve(&mut self, mem: &dyn GuestMemory, chain: &Chain) -> Result<u32, QueueError> {
        let writable = chain.writable_len();
        // No room for a status byte: nothing can be reported; give the chain back empty.
        let Some(data_room) = writable.checked_sub(1) else {
            return Ok(0);
        };
        let mut hdr = [0u8; HEADER_LEN];
        let (status, written) = match chain.read(mem, 0, &mut hdr) {
            Ok(HEADER_LEN) => self.execute(mem, chain, Header::decode(&hdr), data_room),
            _ => (S_IOERR, 0),
        };
        chain.write(mem, data_room, &[status])?;
        // written <= data_room < the writable length; a chain longer than u32::MAX in
        // total reports u32::MAX.
        Ok(u32::try_from(written + 1).unwrap_or(u32::MAX))
    }

    /// Runs a decoded request; returns the status and the data bytes written to the guest.
    fn execute(
        &mut self,
        mem: &dyn GuestMemory,
        chain: &Chain,
        hdr: Header,
        data_room: u64,
    ) -> (u8, u64) {
        match hdr.kind {
            Kind::In => match hdr.span(data_room, REQUEST_MAX, self.capacity) {
                Some(offset) => self.read_in(mem, chain, offset, data_room),
                None => (S_IOERR, 0),
            },
            Kind::Out => {
                let len = chain.readable_len().saturating_sub(HEADER_LEN as u64);
                match hdr.span(len, REQUEST_MAX, self.capacity) {
                    Some(offset) if !self.read_only => (self.write_out(mem, chain, offset, len), 0),
                    _ => (S_IOERR, 0),
                }
            }
            Kind::Flush => (self.flush_status(), 0),
            Kind::GetId if data_room >= ID_LEN as u64 => match chain.write(mem, 0, &self.id) {
                Ok(_) => (S_OK, ID_LEN as u64),
                Err(_) => (S_IOERR, 0),
            },
            Kind::GetId => (S_IOERR, 0),
            Kind::Other(_) => (S_UNSUPP, 0),
        }
    }

    /// Backing bytes `offset..offset + len` into the chain's writable buffers.
    fn read_in(
        &mut self,
        mem: &dyn GuestMemory,
        chain: &Chain,
        offset: u64,
        len: u64,
    ) -> (u8, u64) {
        let mut done = 0;
        while done < len {
            // At most CHUNK, a usize.
            let n = (len - done).min(CHUNK as u64) as usize;
            let buf = &mut self.buf[..n];
            if self.backing.read_at(offset + done, buf).is_err() {
                return (S_IOERR, done);
            }
            match chain.write(mem, done, buf) {
                Ok(w) if w == n => done += n as u64,
                _ => return (S_IOERR, done),
            }
        }
        (S_OK, done)
    }

    /// The chain's data after the header into backing bytes `offset..offset + len`.
    fn write_out(&mut self, mem: &dyn GuestMemory, chain: &Chain, offset: u64, len: u64) -> u8 {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            let buf = &mut self.buf[..n];
            match chain.read(mem, HEADER_LEN as u64 + done, buf) {
                Ok(r) if r == n => {}
                _ => return S_IOERR,
            }
            if self.backing.write_at(offset + done, buf).is_err() {
                return S_IOERR;
            }
            done += n as u64;
        }
        if self.flush_negotiated {
            S_OK
        } else {
            self.flush_status()
        }
    }

    fn flush_status(&mut self) -> u8 {
        match self.backing.flush() {
            Ok(()) => S_OK,
            Err(_) => S_IOERR,
        }
    }
}

impl<B: Backing> VirtioDevice for VirtioBlk<B> {
    fn device_type(&self) -> DeviceType {
        DeviceType::Block
    }

    fn features(&self) -> u64 {
        let ro = if self.read_only { F_RO } else { 0 };
        F_SIZE_MAX | F_SEG_MAX | F_BLK_SIZE | F_FLUSH | ro
    }

    fn num_queues(&self) -> usize {
        1
    }

    fn config_read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        config_from_bytes(&self.config, offset, width)
    }

    fn activate(&mut self, features: u64) {
        self.flush_negotiated = features & F_FLUSH != 0;
    }

    fn notify(&mut self, queue: usize, io: &mut QueueIo<'_>) -> Result<(), QueueError> {
        if queue != REQUESTQ {
            return Ok(());
        }
        // At most a queue's worth per call: a guest racing more in cannot hold us.
        for _ in 0..QUEUE_MAX {
            let Some(chain) = io.pop(REQUESTQ)? else {
                break;
            };
            let written = self.serve(io.mem(), &chain)?;
            io.push_used(REQUESTQ, &chain, written)?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.flush_negotiated = false;
    }
}

#[cfg(test)]
mod tests;
