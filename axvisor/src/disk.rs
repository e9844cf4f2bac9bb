//! The hypervisor's disk: opened and mounted at boot (docs/axfs.md, "The disk"), then read
//! by the shell (`ls`, `cat`) and, through [`open_backing`], by VMs' virtio-blk devices.
//!
//! The boot argument `disk=virtio|ramdisk|none` chooses the device (default: the first
//! found, see [`axdriver::open`]); one line says what was mounted or why nothing was.

use crate::hostdisk::{self, HostDisk, SharedDisk};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use axdriver::{Choice, DiskError};
use axfs::{FileBlocks, FileSystem, FsError, Metadata};
use axvirtio_blk::{Backing, BackingError};
use axvm::DiskOpenError;
use axvmconfig::{DiskBacking, DiskSource};
use core::fmt;
use spin::Mutex;

/// The mounted volume, if any, on the disk it shares with VMs' regions of it.
static FS: Mutex<Option<FileSystem<SharedDisk>>> = Mutex::new(None);

/// Why a file operation did nothing. `Display` is one line.
#[derive(Debug)]
pub enum FileError {
    /// No volume is mounted (the reason was logged at boot).
    NoDisk,
    /// What the filesystem said.
    Fs(FsError),
    /// No frames are free for the whole file.
    NoMemory {
        /// The file.
        path: String,
        /// Its size in bytes.
        size: u64,
    },
}

impl From<FsError> for FileError {
    fn from(e: FsError) -> Self {
        Self::Fs(e)
    }
}

impl core::error::Error for FileError {}

/// Why a VM's `file` backing could not be opened: the file, and what went wrong. `Display`
/// names the file once (`/vms/disk.img: no such file or directory`), and adds the remedy
/// to a writable file on a read-only volume.
#[derive(Debug)]
pub struct BackingFileError {
    /// The file (the config's `file`).
    pub path: String,
    /// What went wrong.
    pub error: FileError,
}

impl fmt::Display for BackingFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = match &self.error {
            FileError::NoDisk => false,
            FileError::Fs(e) => e.path().is_some(),
            FileError::NoMemory { .. } => true,
        };
        if !named {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.error)?;
        if let FileError::Fs(FsError::ReadOnlyVolume { .. }) = self.error {
            f.write_str(": give the device read_only = true")?;
        }
        Ok(())
    }
}

impl core::error::Error for BackingFileError {}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDisk => f.write_str("no disk is mounted (see the boot log's \"disk:\" line)"),
            Self::Fs(e) => write!(f, "{e}"),
            Self::NoMemory { path, size } => {
                write!(f, "{path}: not enough free memory for its {size} bytes")
            }
        }
    }
}

/// Opens and mounts the disk the boot arguments choose; logs one line either way. Every
/// virtio-blk disk is then kept for VMs' regions ([`crate::hostdisk`]), the mounted one
/// with its filesystem kept out of them.
pub fn mount_at_boot() {
    let choice = Choice::parse(axstd::os::platform_info().bootarg("disk"));
    let (chosen, others) = match choice.map(axdriver::open) {
        Ok(opened) => (opened.chosen, opened.others),
        Err(e) => (Err(e), Vec::new()),
    };
    let disk = match chosen {
        Ok(disk) => disk,
        Err(e) => {
            match e {
                DiskError::NotWanted => log::info!("disk: none (disk=none)"),
                e => log::info!("disk: none: {e}"),
            }
            return hostdisk::keep(others, None);
        }
    };
    let what = disk.describe();
    let own = HostDisk::new(disk);
    let reserved = match FileSystem::mount(SharedDisk(own.clone())) {
        Ok(fs) => {
            let v = fs.volume();
            let access = if v.kind.read_only() { " read-only" } else { "" };
            log::info!(
                "disk: {what}: {} volume of {} KiB mounted{access}",
                v.kind,
                v.bytes / 1024
            );
            *FS.lock() = Some(fs);
            hostdisk::reserved_for(&v)
        }
        Err(e) => {
            log::warn!("disk: {what}: not mounted: {e}");
            Vec::new()
        }
    };
    hostdisk::keep(others, Some((own, reserved)));
}

/// Runs `f` on the mounted volume.
fn with<R>(
    f: impl FnOnce(&mut FileSystem<SharedDisk>) -> Result<R, FsError>,
) -> Result<R, FileError> {
    let mut fs = FS.lock();
    let fs = fs.as_mut().ok_or(FileError::NoDisk)?;
    Ok(f(fs)?)
}

/// What `path` is: a directory's entries, or the one file itself.
pub fn list(path: &str) -> Result<Vec<Metadata>, FileError> {
    with(|fs| {
        let meta = fs.stat(path)?;
        match meta.kind {
            axfs::FileKind::Directory => fs.list(path),
            axfs::FileKind::File => Ok(alloc::vec![meta]),
        }
    })
}

/// The whole of file `path`, if it is at most `limit` bytes.
pub fn read(path: &str, limit: u64) -> Result<Vec<u8>, FileError> {
    with(|fs| fs.read(path, limit))
}

/// The backing of VM `vm`'s `virtio-blk`: for a `backing` region in its config entry,
/// that region of a host disk ([`crate::hostdisk::open_region`]); for a `file` on a FAT
/// volume, the file held open with its clusters found once, read and written in place; it
/// never grows. On a read-only (ext) volume only a `read_only` backing opens, and the VM
/// gets a copy of the file made once ([`CopyBacking`]).
pub fn open_backing(vm: &str, disk: &DiskBacking) -> Result<Box<dyn Backing>, DiskOpenError> {
    let path = match &disk.source {
        DiskSource::File(path) => path,
        DiskSource::Region(region) => {
            return hostdisk::open_region(vm, region, disk.read_only).map_err(|error| {
                DiskOpenError::Region {
                    region: region.clone(),
                    error,
                }
            })
        }
    };
    let open_error = |error: FileError| {
        DiskOpenError::File(Box::new(BackingFileError {
            path: path.clone(),
            error,
        }))
    };
    let copied = with(|fs| {
        if !disk.read_only {
            fs.check_writable(path)?;
        }
        Ok(fs.volume().kind.read_only())
    })
    .map_err(open_error)?;
    if copied {
        let file = read_to_frames(path).map_err(open_error)?;
        return Ok(Box::new(CopyBacking { file }));
    }
    let file = with(|fs| fs.open_blocks(path)).map_err(open_error)?;
    Ok(Box::new(FileBacking { file }))
}

/// A `read_only` backing's file on an ext volume, copied into frames when the VM is built.
/// axfs reads ext files forwards only (an earlier offset is reached by reading the file
/// again from its start: docs/axfs.md), so a guest reading its disk
/// backwards would hold the disk's lock for up to a whole file per request, stalling every
/// other VM that uses the disk and the CPU it runs on; the volume never changes, so a copy
/// is the same disk. Costs the file's size in memory while the VM exists (a file larger
/// than the free memory refuses the VM with `not enough free memory`).
struct CopyBacking {
    file: FrameFile,
}

impl Backing for CopyBacking {
    fn len(&self) -> u64 {
        self.file.bytes().len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        axvirtio_blk::read_bytes(self.file.bytes(), offset, buf)
    }

    /// Never reached: the device is `read_only` (its guest's writes get `IOERR` before
    /// the backing), and an ext volume is never written.
    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> Result<(), BackingError> {
        Err(BackingError::Io)
    }

    fn flush(&mut self) -> Result<(), BackingError> {
        Ok(())
    }
}

/// A file on the mounted disk as a virtio-blk [`Backing`]; each access takes the disk's
/// lock, and axfs checks it lies inside the file. Writes are made durable by the guest's
/// `FLUSH` (or, without it, after each write: see `axvirtio_blk`).
struct FileBacking {
    file: FileBlocks,
}

impl FileBacking {
    fn error(e: FileError) -> BackingError {
        match e {
            FileError::Fs(FsError::OutOfRange { .. }) => BackingError::OutOfRange,
            _ => BackingError::Io,
        }
    }
}

impl Backing for FileBacking {
    fn len(&self) -> u64 {
        self.file.size()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        with(|fs| fs.read_blocks_at(&mut self.file, offset, buf)).map_err(Self::error)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackingError> {
        with(|fs| fs.write_blocks_at(&mut self.file, offset, data)).map_err(Self::error)
    }

    fn flush(&mut self) -> Result<(), BackingError> {
        with(|fs| fs.flush()).map_err(Self::error)
    }
}

/// A file read whole into frames of its own (no heap copy), freed when dropped: a guest
/// image from the disk, kept while the VMs built from it exist.
pub struct FrameFile {
    addr: usize,
    frames: usize,
    len: usize,
}

impl FrameFile {
    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `addr` is `frames` frames this value allocated and owns (identity-mapped
        // RAM), of which the first `len` bytes were filled by the read.
        unsafe { core::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl Drop for FrameFile {
    fn drop(&mut self) {
        axstd::mem::dealloc_frames(self.addr, self.frames);
    }
}

/// Reads file `path` into frames allocated for it.
pub fn read_to_frames(path: &str) -> Result<FrameFile, FileError> {
    let size = with(|fs| fs.stat(path))?.size;
    let no_memory = || FileError::NoMemory {
        path: path.into(),
        size,
    };
    let len = usize::try_from(size).map_err(|_| no_memory())?;
    let frames = len.div_ceil(PAGE).max(1);
    let addr = axstd::mem::alloc_frames(frames, PAGE).ok_or_else(no_memory)?;
    let mut file = FrameFile { addr, frames, len };
    // SAFETY: the frames were just allocated for this file alone (identity-mapped RAM).
    let buf = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) };
    file.len = with(|fs| fs.read_into(path, buf))?;
    Ok(file)
}

/// The frame size.
const PAGE: usize = axvmconfig::PAGE_SIZE as usize;
