//! What can go wrong on the filesystem, in words a user understands.

use alloc::string::String;
use core::fmt;

use crate::block::BlockError;
use crate::fs::Fault;
use crate::path::PathError;
use crate::volume::VolumeKind;

/// A filesystem operation's failure. Every variant's `Display` is one line a user can act
/// on, naming the path where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    /// The path was refused before the disk was touched.
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: PathError,
    },
    /// Nothing by that name.
    NotFound {
        /// The path as given.
        path: String,
    },
    /// A component before the last one is a file.
    NotADirectory {
        /// The path as given.
        path: String,
    },
    /// A file operation on a directory.
    IsADirectory {
        /// The path as given.
        path: String,
    },
    /// Creating something that is already there.
    AlreadyExists {
        /// The path as given.
        path: String,
    },
    /// Removing a directory that still has entries.
    DirectoryNotEmpty {
        /// The path as given.
        path: String,
    },
    /// A file larger than the caller's limit (or, for a write, than FAT's 4 GiB - 1).
    TooLarge {
        /// The path as given.
        path: String,
        /// The file's size in bytes.
        size: u64,
        /// The largest size accepted.
        limit: u64,
    },
    /// A read or write at an offset of a file whose range is not wholly inside the file
    /// ([`FileSystem::read_at`](crate::FileSystem::read_at),
    /// [`write_at`](crate::FileSystem::write_at) never grow a file).
    OutOfRange {
        /// The path as given.
        path: String,
        /// The first byte asked for.
        offset: u64,
        /// How many bytes.
        len: u64,
        /// The file's size in bytes.
        size: u64,
    },
    /// Writing to a file or directory marked read-only.
    ReadOnly {
        /// The path as given.
        path: String,
    },
    /// A new file or directory whose name is not an 8.3 short name: the FAT layer creates
    /// only short names (existing long names are found, read and overwritten).
    NameNotSupported {
        /// The name as given.
        name: String,
    },
    /// A write on a volume this layer only reads (ext2/3/4).
    ReadOnlyVolume {
        /// The path as given.
        path: String,
        /// The volume's filesystem.
        kind: VolumeKind,
    },
    /// Something that is neither a regular file nor a directory (an ext device node, pipe
    /// or socket) opened as a file.
    NotAFile {
        /// The path as given.
        path: String,
    },
    /// The volume is full.
    NoSpace,
    /// The disk holds no FAT volume this layer reads, or its structures are inconsistent.
    Corrupt {
        /// Which structure, and how.
        what: &'static str,
    },
    /// The disk's ext2/3/4 volume is unusable (at mount, `path` is `None`) or one of its
    /// structures on the way to `path` is: what the `ext4-view` crate or this layer's
    /// checks found.
    Ext4 {
        /// The path as given, for a failure past the mount.
        path: Option<String>,
        /// What is wrong, in the crate's words (e.g. `corrupt filesystem: invalid
        /// checksum for inode 12`).
        what: String,
    },
    /// The block device failed.
    Device(BlockError),
    /// The layer's own bookkeeping refused (a bug, not the disk's or the user's fault).
    Internal {
        /// What was refused.
        what: &'static str,
    },
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPath { path, reason } => write!(f, "{path}: bad path: {reason}"),
            Self::NotFound { path } => write!(f, "{path}: no such file or directory"),
            Self::NotADirectory { path } => write!(f, "{path}: a component is not a directory"),
            Self::IsADirectory { path } => write!(f, "{path}: is a directory"),
            Self::AlreadyExists { path } => write!(f, "{path}: already exists"),
            Self::DirectoryNotEmpty { path } => write!(f, "{path}: directory not empty"),
            Self::TooLarge { path, size, limit } => write!(
                f,
                "{path}: {size} bytes is larger than the limit of {limit} bytes"
            ),
            Self::OutOfRange {
                path,
                offset,
                len,
                size,
            } => write!(
                f,
                "{path}: {len} bytes at offset {offset} are not inside the file ({size} bytes)"
            ),
            Self::ReadOnly { path } => write!(f, "{path}: read-only"),
            Self::NameNotSupported { name } => write!(
                f,
                "{name}: new names must be 8.3 short names (at most 8 characters, a dot, at most 3)"
            ),
            Self::ReadOnlyVolume { path, kind } => write!(
                f,
                "{path}: the disk's {kind} volume is read-only (axfs reads ext2/3/4 and never writes it)"
            ),
            Self::NotAFile { path } => write!(
                f,
                "{path}: not a regular file (a device node, pipe or socket)"
            ),
            Self::NoSpace => write!(f, "no space left on the disk"),
            Self::Corrupt { what } => write!(f, "the disk's FAT volume is unusable: {what}"),
            Self::Ext4 { path: None, what } => {
                write!(f, "the disk's ext4 volume is unusable: {what}")
            }
            Self::Ext4 {
                path: Some(path),
                what,
            } => write!(f, "{path}: the disk's ext4 volume is damaged: {what}"),
            Self::Device(err) => write!(f, "disk error: {err}"),
            Self::Internal { what } => write!(f, "filesystem layer error: {what}"),
        }
    }
}

impl core::error::Error for FsError {}

impl FsError {
    /// The path (or, for [`FsError::NameNotSupported`], the name) this error's line
    /// begins with, if it names one: a caller that adds the path does so only when this is
    /// `None`.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::InvalidPath { path, .. }
            | Self::NotFound { path }
            | Self::NotADirectory { path }
            | Self::IsADirectory { path }
            | Self::AlreadyExists { path }
            | Self::DirectoryNotEmpty { path }
            | Self::TooLarge { path, .. }
            | Self::OutOfRange { path, .. }
            | Self::ReadOnly { path }
            | Self::ReadOnlyVolume { path, .. }
            | Self::NotAFile { path }
            | Self::Ext4 {
                path: Some(path), ..
            } => Some(path),
            Self::NameNotSupported { name } => Some(name),
            Self::NoSpace
            | Self::Corrupt { .. }
            | Self::Ext4 { path: None, .. }
            | Self::Device(_)
            | Self::Internal { .. } => None,
        }
    }
}

/// The adapter's refusal in this layer's terms.
pub(crate) fn from_fault(fault: Fault) -> FsError {
    match fault {
        Fault::Device(err) => FsError::Device(err),
        Fault::OutsideVolume => FsError::Corrupt {
            what: "a cluster number points outside the volume",
        },
        Fault::Loop => FsError::Corrupt {
            what: "the volume's cluster chains loop (an operation read every block 8 times)",
        },
    }
}

/// The library's error, in this layer's terms, for an operation on `path`.
pub(crate) fn from_fat(err: embedded_sdmmc::Error<Fault>, path: &str) -> FsError {
    use embedded_sdmmc::Error as E;
    let path = || String::from(path);
    match err {
        E::DeviceError(fault) => from_fault(fault),
        E::FormatError(what) => FsError::Corrupt { what },
        E::NoSuchVolume => FsError::Corrupt {
            what: "no first partition in the MBR",
        },
        E::FilenameError(_) => FsError::NameNotSupported { name: path() },
        E::NotFound => FsError::NotFound { path: path() },
        E::OpenedDirAsFile => FsError::IsADirectory { path: path() },
        E::OpenedFileAsDir => FsError::NotADirectory { path: path() },
        E::DeleteNonEmptyDir => FsError::DirectoryNotEmpty { path: path() },
        E::NotEnoughSpace | E::DiskFull => FsError::NoSpace,
        E::ReadOnly => FsError::ReadOnly { path: path() },
        E::FileAlreadyExists | E::DirAlreadyExists => FsError::AlreadyExists { path: path() },
        E::BadBlockSize(_) => FsError::Corrupt {
            what: "the boot sector's sector size is not 512 bytes",
        },
        E::BadCluster => FsError::Corrupt {
            what: "a cluster chain points at a bad or reserved cluster",
        },
        E::UnterminatedFatChain => FsError::Corrupt {
            what: "a cluster chain runs into a free cluster",
        },
        E::AllocationError => FsError::Corrupt {
            what: "the FAT has a cluster in use that is marked free",
        },
        E::EndOfFile => FsError::Corrupt {
            what: "a file's clusters end before its size",
        },
        E::ConversionError => FsError::Corrupt {
            what: "a directory entry's fields are out of range",
        },
        // This layer closes every handle it opens before returning, so another open handle
        // on the same directory means two entries share its cluster: a loop on disk.
        E::DirAlreadyOpen | E::FileAlreadyOpen => FsError::Corrupt {
            what: "two directory entries share a cluster (a loop)",
        },
        E::TooManyOpenVolumes => FsError::Internal {
            what: "too many open volumes",
        },
        E::TooManyOpenDirs => FsError::Internal {
            what: "too many open directories",
        },
        E::TooManyOpenFiles => FsError::Internal {
            what: "too many open files",
        },
        E::BadHandle => FsError::Internal { what: "bad handle" },
        E::VolumeStillInUse => FsError::Internal {
            what: "volume still in use",
        },
        E::VolumeAlreadyOpen => FsError::Internal {
            what: "volume already open",
        },
        E::Unsupported => FsError::Internal {
            what: "unsupported operation",
        },
        E::InvalidOffset => FsError::Internal {
            what: "invalid seek offset",
        },
        E::LockError => FsError::Internal {
            what: "re-entered while locked",
        },
    }
}
