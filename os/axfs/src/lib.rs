//! The filesystem layer: a FAT16/FAT32 volume (read and write, through the
//! `embedded-sdmmc` crate) or an ext2/3/4 volume (read-only, through `ext4-view`) on a
//! [`BlockDevice`], and a [`RamDisk`] block device.
//!
//! Paths are absolute and `/`-separated (`/vms/linux.toml`); `..` resolves without
//! leaving the root. Every failure is an [`FsError`] whose `Display` is one line naming
//! the path. See docs/axfs.md.
#![no_std]

extern crate alloc;

mod block;
mod check;
mod error;
mod ext4;
mod fs;
mod mbr;
mod path;
mod volume;

pub use block::{BlockDevice, BlockError, RamDisk, BLOCK_SIZE};
pub use error::FsError;
pub use fs::{FileKind, Metadata};
pub use mbr::{mbr_partition, Partition};
pub use path::{PathError, MAX_DEPTH, MAX_NAME};
pub use volume::{FileBlocks, FileSystem, Volume, VolumeKind};
