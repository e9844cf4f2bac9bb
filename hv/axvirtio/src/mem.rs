//! A flat guest memory backed by a `Vec`, for host tests and fuzz targets.

use alloc::vec;
use alloc::vec::Vec;
use axdevice_base::{range_end, GuestMemory, GuestMemoryError};
use spin::Mutex;

/// `size` bytes of RAM at guest-physical `base`; everything else is not RAM.
pub struct FlatMemory {
    base: u64,
    bytes: Mutex<Vec<u8>>,
}

impl FlatMemory {
    /// Zeroed RAM of `size` bytes at `base`.
    pub fn new(base: u64, size: usize) -> Self {
        Self {
            base,
            bytes: Mutex::new(vec![0; size]),
        }
    }

    /// The offsets `start..end` of `gpa..gpa + len` in the backing, if wholly inside.
    fn span(&self, gpa: u64, len: usize, size: usize) -> Result<(usize, usize), GuestMemoryError> {
        let end = range_end(gpa, len)?;
        let start = gpa.checked_sub(self.base).ok_or(GuestMemoryError::NotRam)?;
        let end = end - self.base;
        if end > size as u64 {
            return Err(GuestMemoryError::NotRam);
        }
        // Both are at most `size`, a usize.
        Ok((start as usize, end as usize))
    }
}

impl GuestMemory for FlatMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let bytes = self.bytes.lock();
        let (s, e) = self.span(gpa, buf.len(), bytes.len())?;
        buf.copy_from_slice(&bytes[s..e]);
        Ok(())
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        let mut bytes = self.bytes.lock();
        let len = bytes.len();
        let (s, e) = self.span(gpa, data.len(), len)?;
        bytes[s..e].copy_from_slice(data);
        Ok(())
    }
}
