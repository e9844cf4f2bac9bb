//! The MBR partition table in block 0 of a disk, read for what lies where: the hypervisor
//! gives VMs whole partitions of its disks by number (docs/vm-config.md, `partition`).

use crate::block::{BlockDevice, BlockError, BLOCK_SIZE};

/// One entry of an MBR partition table, as the disk says: nothing here is checked against
/// the disk's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Its type byte (0C FAT32, 83 Linux, DA non-filesystem data, ...).
    pub kind: u8,
    /// Its first block.
    pub start: u64,
    /// Its number of blocks.
    pub blocks: u64,
}

/// Entry `n` (1 to 4) of the MBR in block 0 of `dev`: `None` when block 0 has no 55 AA
/// signature, `n` is not 1 to 4, or the entry is empty (type 0 or no blocks).
pub fn mbr_partition(dev: &mut impl BlockDevice, n: u8) -> Result<Option<Partition>, BlockError> {
    if !(1..=4).contains(&n) || dev.block_count() == 0 {
        return Ok(None);
    }
    let mut mbr = [0u8; BLOCK_SIZE];
    dev.read_blocks(0, &mut mbr)?;
    if mbr[510..] != [0x55, 0xaa] {
        return Ok(None);
    }
    let entry = &mbr[446 + 16 * usize::from(n - 1)..][..16];
    let u32_at = |at: usize| {
        u64::from(u32::from_le_bytes([
            entry[at],
            entry[at + 1],
            entry[at + 2],
            entry[at + 3],
        ]))
    };
    let partition = Partition {
        kind: entry[4],
        start: u32_at(8),
        blocks: u32_at(12),
    };
    Ok((partition.kind != 0 && partition.blocks != 0).then_some(partition))
}
