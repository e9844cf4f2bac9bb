//! What a virtio-blk device stores its sectors in.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// The size of a virtio-blk sector, in bytes (the unit of `sector` and `capacity`).
pub const SECTOR_SIZE: u64 = 512;

/// Why a backing could not do an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackingError {
    /// The byte range is not wholly inside the backing.
    OutOfRange,
    /// The storage under the backing failed (a disk or filesystem error).
    Io,
}

impl fmt::Display for BackingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange => f.write_str("range outside the backing"),
            Self::Io => f.write_str("I/O error in the backing storage"),
        }
    }
}

/// Byte-addressed storage behind a virtio-blk device: a file on the hypervisor's disk, a
/// region of a host block device ([`Region`]), or RAM ([`MemBacking`]).
///
/// The device checks every request against [`len`](Self::len) before calling
/// `read_at` / `write_at`, and an implementation checks again: a range not wholly inside
/// is [`BackingError::OutOfRange`], never an access outside.
pub trait Backing: Send {
    /// The size in bytes; the device exposes `len / 512` whole sectors.
    fn len(&self) -> u64;

    /// Whether the backing holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from the bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError>;

    /// Stores `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackingError>;

    /// Makes every completed write durable (the guest's `FLUSH`).
    fn flush(&mut self) -> Result<(), BackingError>;
}

impl<B: Backing + ?Sized> Backing for alloc::boxed::Box<B> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        (**self).read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackingError> {
        (**self).write_at(offset, data)
    }

    fn flush(&mut self) -> Result<(), BackingError> {
        (**self).flush()
    }
}

/// `offset..offset + len` as a range checked to lie inside `0..size`.
pub fn checked_range(offset: u64, len: usize, size: u64) -> Result<(u64, u64), BackingError> {
    let end = u64::try_from(len)
        .ok()
        .and_then(|l| offset.checked_add(l))
        .ok_or(BackingError::OutOfRange)?;
    if end > size {
        return Err(BackingError::OutOfRange);
    }
    Ok((offset, end))
}

/// Fills `buf` from `bytes` at `offset`, refused unless the range lies inside `bytes`: the
/// read of a backing held in memory ([`MemBacking`], the hypervisor's copies of files).
pub fn read_bytes(bytes: &[u8], offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
    let (start, end) = checked_range(offset, buf.len(), bytes.len() as u64)?;
    // Both are at most the slice's length, a usize.
    buf.copy_from_slice(&bytes[start as usize..end as usize]);
    Ok(())
}

/// A backing held in hypervisor RAM (host tests, fuzz targets, and the RAM-disk
/// reference of the benchmark).
pub struct MemBacking {
    bytes: Vec<u8>,
    /// How many flushes were asked for (tests check `FLUSH` reaches the backing).
    pub flushes: u64,
}

impl MemBacking {
    /// `len` zero bytes.
    pub fn new(len: usize) -> Self {
        Self::from_bytes(vec![0; len])
    }

    /// A backing holding `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self { bytes, flushes: 0 }
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Backing for MemBacking {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        read_bytes(&self.bytes, offset, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackingError> {
        let (s, e) = checked_range(offset, data.len(), self.len())?;
        self.bytes[s as usize..e as usize].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BackingError> {
        self.flushes += 1;
        Ok(())
    }
}

/// Why a [`Region`] cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// `count` is zero.
    Empty,
    /// `first + count` sectors run past the end of the underlying storage (or overflow).
    PastEnd {
        /// Sectors the underlying storage has.
        available: u64,
    },
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the region has no sectors"),
            Self::PastEnd { available } => write!(
                f,
                "the region runs past the end of the device ({available} sectors)"
            ),
        }
    }
}

/// Sectors `first..first + count` of another backing (a region of a host block device),
/// seen as a backing of its own that starts at sector 0: nothing outside is reachable.
pub struct Region<B> {
    inner: B,
    start: u64,
    len: u64,
}

impl<B: Backing> Region<B> {
    /// The region of `count` sectors from sector `first` of `inner`.
    pub fn new(inner: B, first: u64, count: u64) -> Result<Self, RegionError> {
        let available = inner.len() / SECTOR_SIZE;
        if count == 0 {
            return Err(RegionError::Empty);
        }
        match first.checked_add(count) {
            Some(end) if end <= available => Ok(Self {
                inner,
                start: first * SECTOR_SIZE,
                len: count * SECTOR_SIZE,
            }),
            _ => Err(RegionError::PastEnd { available }),
        }
    }

    /// The underlying backing.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: Backing> Backing for Region<B> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        checked_range(offset, buf.len(), self.len)?;
        // offset < len and start + len fit (checked in new).
        self.inner.read_at(self.start + offset, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackingError> {
        checked_range(offset, data.len(), self.len)?;
        self.inner.write_at(self.start + offset, data)
    }

    fn flush(&mut self) -> Result<(), BackingError> {
        self.inner.flush()
    }
}
