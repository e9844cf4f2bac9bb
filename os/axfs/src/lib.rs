//! The filesystem layer: a FAT16/FAT32 volume (read and write) on a [`BlockDevice`],
//! through the `embedded-sdmmc` crate, and a [`RamDisk`] block device.
//!
//! Paths are absolute and `/`-separated (`/vms/linux.toml`); `..` resolves without
//! leaving the root. Every failure is an [`FsError`] whose `Display` is one line naming
//! the path. See docs/axfs.md.
#![no_std]

extern crate alloc;

mod block;
mod check;
mod error;
mod fs;
mod path;

pub use block::{BlockDevice, BlockError, RamDisk, BLOCK_SIZE};
pub use error::FsError;
pub use fs::{FileBlocks, FileKind, FileSystem, Metadata, Volume};
pub use path::{PathError, MAX_DEPTH, MAX_NAME};
