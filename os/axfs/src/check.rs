//! The checks made on the MBR and the FAT boot sector before the volume is handed to the
//! library, so that a damaged or hostile disk gives [`FsError::Corrupt`] naming the field
//! instead of a division by zero or wrapped arithmetic inside it.

use crate::block::{BlockDevice, BLOCK_SIZE};
use crate::error::FsError;

/// Partition types of FAT16 and FAT32 volumes in an MBR entry (the ones the library mounts).
const FAT_PARTITION_TYPES: [u8; 5] = [0x04, 0x06, 0x0b, 0x0c, 0x0e];
/// Fewer clusters than this is FAT12, which the library does not read.
const MIN_FAT16_CLUSTERS: u64 = 4085;
/// From this many clusters on, a volume is FAT32.
const MIN_FAT32_CLUSTERS: u64 = 65525;

fn corrupt(what: &'static str) -> FsError {
    FsError::Corrupt { what }
}

fn u16_at(block: &[u8; BLOCK_SIZE], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([block[at], block[at + 1]]))
}

fn u32_at(block: &[u8; BLOCK_SIZE], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([
        block[at],
        block[at + 1],
        block[at + 2],
        block[at + 3],
    ]))
}

/// Where a checked volume's structures are, in the blocks the library sees: the device's
/// blocks, or for a disk without a partition table, the device's blocks one further on
/// behind a made-up MBR.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    /// 1 for a disk without a partition table (the library's block n is the device's
    /// n - 1, and its block 0 the MBR from [`Geometry::mbr`]), else 0.
    pub shift: u64,
    /// The volume's first block (its boot sector).
    pub start: u64,
    /// The block after the volume's last.
    pub end: u64,
    /// The first block of the first FAT.
    pub fat_start: u64,
    /// Blocks per FAT.
    pub fat_size: u64,
    /// The number of FATs.
    pub fats: u64,
    /// Data clusters: valid cluster numbers are 2 to `clusters + 1`.
    pub clusters: u64,
    /// FAT32 (4-byte FAT entries) rather than FAT16 (2-byte).
    pub fat32: bool,
    /// The first block of cluster 2, the first data cluster.
    pub data_start: u64,
    /// Blocks per cluster (a power of two, at most 128).
    pub per_cluster: u64,
}

impl Geometry {
    /// The MBR the library is shown for a disk without a partition table: one FAT32 (LBA)
    /// partition from block 1 over the volume.
    pub fn mbr(&self) -> [u8; BLOCK_SIZE] {
        let mut mbr = [0u8; BLOCK_SIZE];
        mbr[446 + 4] = 0x0c;
        mbr[446 + 8..446 + 12].copy_from_slice(&(self.start as u32).to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&((self.end - self.start) as u32).to_le_bytes());
        mbr[510..].copy_from_slice(&[0x55, 0xaa]);
        mbr
    }

    /// Whether `cluster` names a data cluster of the volume.
    pub fn is_data_cluster(&self, cluster: u64) -> bool {
        (2..self.clusters + 2).contains(&cluster)
    }

    /// The first block of data cluster `cluster` (checked with [`Self::is_data_cluster`]).
    pub fn cluster_block(&self, cluster: u64) -> u64 {
        self.data_start + (cluster - 2) * self.per_cluster
    }
}

/// Checks the first MBR partition of `dev` (or, on a disk without a partition table, the
/// whole disk) and the boot sector of the FAT volume in it.
pub(crate) fn volume(dev: &mut impl BlockDevice) -> Result<Geometry, FsError> {
    let blocks = dev.block_count();
    if blocks == 0 {
        return Err(corrupt("the disk is empty"));
    }
    let mut mbr = [0u8; BLOCK_SIZE];
    dev.read_blocks(0, &mut mbr).map_err(FsError::Device)?;
    if mbr[510..] != [0x55, 0xaa] {
        return Err(corrupt("no MBR (block 0 lacks the 55 AA signature)"));
    }
    // A FAT boot sector in block 0 is a disk without a partition table ("superfloppy",
    // `mkfs.fat` on a whole image): the volume is the whole disk, and the library is shown
    // an MBR in front of it (every block one further on).
    let superfloppy = matches!(mbr[0], 0xeb | 0xe9)
        && u16_at(&mbr, 11) == BLOCK_SIZE as u64
        && mbr[13].is_power_of_two()
        && u16_at(&mbr, 14) != 0
        && mbr[16] != 0;
    let (start, length, shift) = if superfloppy {
        (0, blocks.min(u64::from(u32::MAX) - 1), 1)
    } else {
        let entry = 446;
        if !FAT_PARTITION_TYPES.contains(&mbr[entry + 4]) {
            return Err(corrupt(
                "the first MBR partition is not FAT16 or FAT32 (type 04, 06, 0B, 0C or 0E)",
            ));
        }
        let start = u32_at(&mbr, entry + 8);
        let length = u32_at(&mbr, entry + 12);
        if start == 0 || start.saturating_add(length) > blocks {
            return Err(corrupt(
                "the first MBR partition does not lie within the disk (a truncated image?)",
            ));
        }
        (start, length, 0)
    };

    let mut boot = [0u8; BLOCK_SIZE];
    dev.read_blocks(start, &mut boot).map_err(FsError::Device)?;
    if boot[510..] != [0x55, 0xaa] {
        return Err(corrupt("the boot sector lacks the 55 AA signature"));
    }
    if u16_at(&boot, 11) != BLOCK_SIZE as u64 {
        return Err(corrupt("the boot sector's sector size is not 512 bytes"));
    }
    let per_cluster = u64::from(boot[13]);
    if !per_cluster.is_power_of_two() || per_cluster > 128 {
        return Err(corrupt(
            "the boot sector's sectors per cluster is not 1, 2, 4, ... or 128",
        ));
    }
    let reserved = u16_at(&boot, 14);
    if reserved == 0 {
        return Err(corrupt("the boot sector has no reserved sectors"));
    }
    let fats = u64::from(boot[16]);
    if fats == 0 {
        return Err(corrupt("the boot sector says there is no FAT"));
    }
    let fat_size = match u16_at(&boot, 22) {
        0 => u32_at(&boot, 36),
        size => size,
    };
    if fat_size == 0 {
        return Err(corrupt("the boot sector's FAT size is 0"));
    }
    let total = match u16_at(&boot, 19) {
        0 => u32_at(&boot, 32),
        total => total,
    };
    if total > length {
        return Err(corrupt(
            "the volume is larger than its partition (a truncated image?)",
        ));
    }
    let root_entries = u16_at(&boot, 17);
    let root_blocks = (root_entries * 32).div_ceil(BLOCK_SIZE as u64);
    // All u64 from 16- and 32-bit fields: no overflow.
    let meta = reserved + fats * fat_size + root_blocks;
    if meta >= total {
        return Err(corrupt(
            "the boot sector's reserved sectors and FATs fill the whole volume",
        ));
    }
    let clusters = (total - meta) / per_cluster;
    if clusters < MIN_FAT16_CLUSTERS {
        return Err(corrupt(
            "the volume is FAT12 (fewer than 4085 clusters), which is not supported",
        ));
    }
    let entry_bytes = if clusters < MIN_FAT32_CLUSTERS { 2 } else { 4 };
    if fat_size * BLOCK_SIZE as u64 / entry_bytes < clusters + 2 {
        return Err(corrupt("the FAT is too small for the volume's clusters"));
    }
    if entry_bytes == 4 {
        let root = u32_at(&boot, 44);
        if root < 2 || root >= clusters + 2 {
            return Err(corrupt(
                "the FAT32 root directory cluster is outside the volume",
            ));
        }
        if u16_at(&boot, 48) >= reserved {
            return Err(corrupt(
                "the FAT32 information sector is outside the reserved sectors",
            ));
        }
        if u16_at(&boot, 42) != 0 {
            return Err(corrupt("the FAT32 version is not 0.0"));
        }
    } else if root_entries == 0 {
        return Err(corrupt("the FAT16 root directory has no entries"));
    }
    Ok(Geometry {
        shift,
        start: start + shift,
        end: start + shift + total,
        fat_start: start + shift + reserved,
        fat_size,
        fats,
        clusters,
        fat32: entry_bytes == 4,
        data_start: start + shift + meta,
        per_cluster,
    })
}
