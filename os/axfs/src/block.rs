//! The block device the filesystem sits on, and a RAM disk.

use core::fmt;

/// The size in bytes of one block (sector). Every device here uses it.
pub const BLOCK_SIZE: usize = 512;

/// A device addressed in [`BLOCK_SIZE`]-byte blocks: a virtio-blk disk, a RAM disk.
///
/// Buffers passed to `read_blocks` and `write_blocks` are a whole number of blocks long;
/// a device refuses any other length with [`BlockError::Misaligned`] and any access past
/// its end with [`BlockError::OutOfRange`].
pub trait BlockDevice {
    /// The number of blocks on the device.
    fn block_count(&self) -> u64;
    /// Reads `buf.len() / BLOCK_SIZE` blocks starting at block `first` into `buf`.
    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Writes `buf.len() / BLOCK_SIZE` blocks starting at block `first` from `buf`.
    fn write_blocks(&mut self, first: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Makes every completed write durable (a no-op for a RAM disk).
    fn flush(&mut self) -> Result<(), BlockError>;
}

/// Why a block device could not do a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The transfer reaches past the end of the device.
    OutOfRange {
        /// The first block of the transfer.
        first: u64,
        /// The number of blocks of the transfer.
        count: u64,
        /// The number of blocks on the device.
        blocks: u64,
    },
    /// The buffer is not a whole number of blocks.
    Misaligned {
        /// The buffer's length in bytes.
        len: usize,
    },
    /// The device reported a failure (an I/O error status from the disk).
    Io {
        /// The block the failing transfer started at.
        block: u64,
    },
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfRange {
                first,
                count,
                blocks,
            } => write!(
                f,
                "blocks {first}..{} are past the end of the disk ({blocks} blocks)",
                first.saturating_add(count)
            ),
            Self::Misaligned { len } => write!(
                f,
                "a transfer of {len} bytes is not a whole number of {BLOCK_SIZE}-byte blocks"
            ),
            Self::Io { block } => write!(f, "the disk reported an I/O error at block {block}"),
        }
    }
}

impl core::error::Error for BlockError {}

/// The blocks `buf` covers from `first`, checked against a device of `blocks` blocks.
fn checked_span(first: u64, len: usize, blocks: u64) -> Result<(usize, usize), BlockError> {
    if !len.is_multiple_of(BLOCK_SIZE) {
        return Err(BlockError::Misaligned { len });
    }
    let count = (len / BLOCK_SIZE) as u64;
    let out_of_range = BlockError::OutOfRange {
        first,
        count,
        blocks,
    };
    match first.checked_add(count) {
        Some(end) if end <= blocks => {
            // Both fit in usize: end <= blocks, and blocks * BLOCK_SIZE is a slice length.
            let start = first as usize * BLOCK_SIZE;
            Ok((start, start + len))
        }
        _ => Err(out_of_range),
    }
}

/// A disk held in memory: a boot module on a board without a disk, or a test image.
///
/// Its size is the buffer's length rounded down to whole blocks.
#[derive(Debug)]
pub struct RamDisk<B> {
    bytes: B,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> RamDisk<B> {
    /// A RAM disk over `bytes` (e.g. `Vec<u8>`, or `&'static mut [u8]` for a boot module).
    pub fn new(bytes: B) -> Self {
        Self { bytes }
    }

    /// The buffer back, with every write made to the disk.
    pub fn into_inner(self) -> B {
        self.bytes
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> BlockDevice for RamDisk<B> {
    fn block_count(&self) -> u64 {
        (self.bytes.as_ref().len() / BLOCK_SIZE) as u64
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let (start, end) = checked_span(first, buf.len(), self.block_count())?;
        buf.copy_from_slice(&self.bytes.as_ref()[start..end]);
        Ok(())
    }

    fn write_blocks(&mut self, first: u64, buf: &[u8]) -> Result<(), BlockError> {
        let (start, end) = checked_span(first, buf.len(), self.block_count())?;
        self.bytes.as_mut()[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_disk_reads_what_was_written_and_refuses_the_rest() {
        let mut disk = RamDisk::new([0u8; 4 * BLOCK_SIZE + 100]);
        assert_eq!(disk.block_count(), 4);
        disk.write_blocks(1, &[7u8; 2 * BLOCK_SIZE]).unwrap();
        let mut buf = [0u8; 3 * BLOCK_SIZE];
        disk.read_blocks(0, &mut buf).unwrap();
        assert!(buf[..BLOCK_SIZE].iter().all(|&b| b == 0));
        assert!(buf[BLOCK_SIZE..].iter().all(|&b| b == 7));
        assert_eq!(
            disk.read_blocks(3, &mut buf),
            Err(BlockError::OutOfRange {
                first: 3,
                count: 3,
                blocks: 4
            })
        );
        assert_eq!(
            disk.write_blocks(u64::MAX, &[0; BLOCK_SIZE]),
            Err(BlockError::OutOfRange {
                first: u64::MAX,
                count: 1,
                blocks: 4
            })
        );
        assert_eq!(
            disk.read_blocks(0, &mut [0; 10]),
            Err(BlockError::Misaligned { len: 10 })
        );
    }
}
