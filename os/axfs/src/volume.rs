//! The mounted volume, whichever filesystem it holds: [`FileSystem::mount`] probes for an
//! ext2/3/4 superblock (read-only, `ext4.rs`) and otherwise mounts FAT (`fs.rs`).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::block::BlockDevice;
use crate::error::FsError;
use crate::ext4::{Ext4File, Ext4Fs};
use crate::fs::{Fat, FatFile, Metadata};

/// The filesystem of a mounted volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// FAT16, read and write.
    Fat16,
    /// FAT32, read and write.
    Fat32,
    /// ext2, read-only.
    Ext2,
    /// ext3 (ext2 with a journal), read-only.
    Ext3,
    /// ext4 (extents, 64-bit or flexible block groups), read-only.
    Ext4,
}

impl VolumeKind {
    /// Whether this layer only reads volumes of this kind.
    pub fn read_only(self) -> bool {
        matches!(self, Self::Ext2 | Self::Ext3 | Self::Ext4)
    }
}

impl fmt::Display for VolumeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fat16 => "FAT16",
            Self::Fat32 => "FAT32",
            Self::Ext2 => "ext2",
            Self::Ext3 => "ext3",
            Self::Ext4 => "ext4",
        })
    }
}

/// What [`FileSystem::volume`] tells of a mounted volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Volume {
    /// Its filesystem.
    pub kind: VolumeKind,
    /// Its size in bytes (a FAT volume's sectors, an ext volume's blocks).
    pub bytes: u64,
    /// The device byte it starts at.
    pub start: u64,
    /// The MBR partition that holds it (1: this layer mounts the first), or `None` for a
    /// disk without a partition table (the volume starts at byte 0).
    pub partition: Option<u8>,
}

/// The filesystems behind [`FileSystem`].
/// Boxed: each is several hundred bytes, and the volume is mounted once.
enum Backend<D: BlockDevice + 'static> {
    Fat(Box<Fat<D>>),
    Ext4(Box<Ext4Fs<D>>),
}

/// A mounted volume on a block device: FAT16/FAT32 (read and write) or ext2/3/4
/// (read-only: every call that writes is refused with [`FsError::ReadOnlyVolume`]).
///
/// Every operation opens what it needs and closes it before returning (an ext volume keeps
/// the file [`Self::read_at`] read last, to go on where it left off). Writes reach the
/// device (and its [`BlockDevice::flush`]) before the call returns.
pub struct FileSystem<D: BlockDevice + 'static>(Backend<D>);

/// An existing file held open for block I/O ([`FileSystem::open_blocks`]). On FAT, where
/// its clusters are, found once, so that [`FileSystem::read_blocks_at`] and
/// [`FileSystem::write_blocks_at`] go straight to the device; it stays valid across calls
/// that do not reallocate files, and after one that does ([`FileSystem::write`],
/// [`FileSystem::remove`]) the next access finds the file again by its path. On ext, the
/// file's path and size.
#[derive(Debug, Clone)]
pub struct FileBlocks(Held);

#[derive(Debug, Clone)]
enum Held {
    Fat(FatFile),
    Ext4(Ext4File),
}

impl FileBlocks {
    /// The file's size in bytes when it was (last) found.
    pub fn size(&self) -> u64 {
        match &self.0 {
            Held::Fat(file) => file.size(),
            Held::Ext4(file) => file.size,
        }
    }

    /// The path it was opened by.
    pub fn path(&self) -> &str {
        match &self.0 {
            Held::Fat(file) => file.path(),
            Held::Ext4(file) => &file.path,
        }
    }
}

/// What a [`FileBlocks`] of one volume handed to another is.
const OTHER_VOLUME: FsError = FsError::Internal {
    what: "a file held open on another volume",
};

impl<D: BlockDevice + 'static> FileSystem<D> {
    /// Mounts the volume on `device`: an ext2/3/4 one (the whole device, or the first MBR
    /// partition of type 83), else the FAT volume in the first MBR partition or the whole
    /// device.
    pub fn mount(mut device: D) -> Result<Self, FsError> {
        Ok(Self(match crate::ext4::probe(&mut device)? {
            Some(found) => Backend::Ext4(Box::new(Ext4Fs::mount(device, found)?)),
            None => Backend::Fat(Box::new(Fat::mount(device)?)),
        }))
    }

    /// The mounted volume's filesystem and size.
    pub fn volume(&self) -> Volume {
        match &self.0 {
            Backend::Fat(fs) => fs.volume(),
            Backend::Ext4(fs) => fs.volume(),
        }
    }

    /// Unmounts the volume and hands the device back.
    pub fn unmount(self) -> Result<D, FsError> {
        match self.0 {
            Backend::Fat(fs) => fs.unmount(),
            Backend::Ext4(fs) => fs.unmount(),
        }
    }

    /// The entries of the directory at `path`, in on-disk order.
    pub fn list(&mut self, path: &str) -> Result<Vec<Metadata>, FsError> {
        match &mut self.0 {
            Backend::Fat(fs) => fs.list(path),
            Backend::Ext4(fs) => fs.list(path),
        }
    }

    /// What is at `path` (the root is a directory named `/`).
    pub fn stat(&mut self, path: &str) -> Result<Metadata, FsError> {
        match &mut self.0 {
            Backend::Fat(fs) => fs.stat(path),
            Backend::Ext4(fs) => fs.stat(path),
        }
    }

    /// The whole file at `path`, refused with [`FsError::TooLarge`] if it is larger than
    /// `limit` bytes (checked before anything is read or allocated).
    pub fn read(&mut self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        // The size fits in memory: it is at most `limit`.
        let make = |size| alloc::vec![0u8; size];
        match &mut self.0 {
            Backend::Fat(fs) => fs.read_with(path, limit, make),
            Backend::Ext4(fs) => fs.read_with(path, limit, make),
        }
    }

    /// Reads the whole file at `path` into the start of `buf` (e.g. a VM's memory, without a
    /// copy on the heap) and returns its size, refused with [`FsError::TooLarge`] if it is
    /// larger than `buf` (checked before anything is read).
    pub fn read_into(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, FsError> {
        let limit = buf.len() as u64;
        match &mut self.0 {
            Backend::Fat(fs) => fs.read_with(path, limit, move |size| &mut buf[..size]),
            Backend::Ext4(fs) => fs.read_with(path, limit, move |size| &mut buf[..size]),
        }
        .map(|data| data.len())
    }

    /// Fills `buf` from the bytes at `offset` of the file at `path` (e.g. a disk image
    /// behind a VM's virtio-blk). Refused with [`FsError::OutOfRange`], before anything is
    /// read, unless `offset..offset + buf.len()` lies wholly inside the file.
    pub fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> Result<(), FsError> {
        match &mut self.0 {
            Backend::Fat(fs) => fs.read_at(path, offset, buf),
            Backend::Ext4(fs) => fs.read_at(path, offset, buf),
        }
    }

    /// Writes `data` over the bytes at `offset` of the file at `path`; the file never
    /// grows: refused with [`FsError::OutOfRange`], before anything is written, unless
    /// `offset..offset + data.len()` lies wholly inside it. The bytes reach the device (and
    /// its [`BlockDevice::flush`]) before the call returns.
    pub fn write_at(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), FsError> {
        match &mut self.0 {
            Backend::Fat(fs) => fs.write_at(path, offset, data),
            Backend::Ext4(_) => Err(self.read_only(path)),
        }
    }

    /// Opens the existing file at `path` for block I/O (see [`FileBlocks`]).
    pub fn open_blocks(&mut self, path: &str) -> Result<FileBlocks, FsError> {
        Ok(FileBlocks(match &mut self.0 {
            Backend::Fat(fs) => Held::Fat(fs.open_blocks(path)?),
            Backend::Ext4(fs) => Held::Ext4(fs.open_blocks(path)?),
        }))
    }

    /// Whether the file at `path` may be written: [`FsError::ReadOnlyVolume`] on an
    /// ext2/3/4 volume (e.g. for a VM's virtio-blk backing that is not `read_only`).
    pub fn check_writable(&mut self, path: &str) -> Result<(), FsError> {
        match self.0 {
            Backend::Fat(_) => Ok(()),
            Backend::Ext4(_) => Err(self.read_only(path)),
        }
    }

    /// Fills `buf` from the bytes at `offset` of `file`, like [`Self::read_at`]; on FAT,
    /// whole blocks at a block offset go to the device in one request per run of
    /// consecutive blocks.
    pub fn read_blocks_at(
        &mut self,
        file: &mut FileBlocks,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), FsError> {
        match (&mut self.0, &mut file.0) {
            (Backend::Fat(fs), Held::Fat(file)) => fs.read_blocks_at(file, offset, buf),
            (Backend::Ext4(fs), Held::Ext4(file)) => fs.read_at(&file.path, offset, buf),
            _ => Err(OTHER_VOLUME),
        }
    }

    /// Writes `data` over the bytes at `offset` of `file`, like [`Self::write_at`], but
    /// whole blocks at a block offset go to the device in one request per run of
    /// consecutive blocks and are not flushed: [`Self::flush`] makes them durable.
    pub fn write_blocks_at(
        &mut self,
        file: &mut FileBlocks,
        offset: u64,
        data: &[u8],
    ) -> Result<(), FsError> {
        match (&mut self.0, &mut file.0) {
            (Backend::Fat(fs), Held::Fat(file)) => fs.write_blocks_at(file, offset, data),
            (Backend::Ext4(_), Held::Ext4(file)) => Err(self.read_only(&file.path.clone())),
            _ => Err(OTHER_VOLUME),
        }
    }

    /// Writes `data` as the whole content of the file at `path`: an existing file is
    /// truncated first; a new one is created (on FAT its name must be an 8.3 short name).
    pub fn write(&mut self, path: &str, data: &[u8]) -> Result<(), FsError> {
        match &mut self.0 {
            Backend::Fat(fs) => fs.write(path, data),
            Backend::Ext4(_) => Err(self.read_only(path)),
        }
    }

    /// Creates the directory `path` (on FAT its name must be an 8.3 short name).
    pub fn mkdir(&mut self, path: &str) -> Result<(), FsError> {
        match &mut self.0 {
            Backend::Fat(fs) => fs.mkdir(path),
            Backend::Ext4(_) => Err(self.read_only(path)),
        }
    }

    /// Removes the file or empty directory at `path`.
    ///
    /// FAT frees no clusters when it deletes an entry, so a file is truncated first: what
    /// stays allocated is one cluster per removed file or directory (see docs/axfs.md).
    pub fn remove(&mut self, path: &str) -> Result<(), FsError> {
        match &mut self.0 {
            Backend::Fat(fs) => fs.remove(path),
            Backend::Ext4(_) => Err(self.read_only(path)),
        }
    }

    /// Makes every completed write durable (the device's [`BlockDevice::flush`]; nothing
    /// to do on a read-only volume).
    pub fn flush(&mut self) -> Result<(), FsError> {
        match &mut self.0 {
            Backend::Fat(fs) => fs.flush(),
            Backend::Ext4(_) => Ok(()),
        }
    }

    /// The refusal of a write to `path` on this read-only volume.
    fn read_only(&self, path: &str) -> FsError {
        FsError::ReadOnlyVolume {
            path: String::from(path),
            kind: self.volume().kind,
        }
    }
}
