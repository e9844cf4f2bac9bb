//! A test disk that counts the read requests it serves and fails those that touch a block
//! from a given one on.

use std::cell::Cell;
use std::rc::Rc;

use axfs::{BlockDevice, BlockError, RamDisk};

/// A RAM disk whose reads are counted in `reads` and fail, as an I/O error at their first
/// block, when they touch block `fail_from` or a later one (`u64::MAX`: none fails).
pub struct Device {
    pub disk: RamDisk<Vec<u8>>,
    pub reads: Rc<Cell<usize>>,
    pub fail_from: u64,
}

impl Device {
    /// A disk over `bytes` whose reads all succeed.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            disk: RamDisk::new(bytes),
            reads: Rc::default(),
            fail_from: u64::MAX,
        }
    }
}

impl BlockDevice for Device {
    fn block_count(&self) -> u64 {
        self.disk.block_count()
    }
    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.reads.set(self.reads.get() + 1);
        let count = (buf.len() / axfs::BLOCK_SIZE) as u64;
        if first.saturating_add(count) > self.fail_from {
            return Err(BlockError::Io { block: first });
        }
        self.disk.read_blocks(first, buf)
    }
    fn write_blocks(&mut self, first: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.disk.write_blocks(first, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}
