//! A FAT volume on a block device, through `embedded-sdmmc`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ops::ControlFlow;

use embedded_sdmmc::{
    Block, BlockCount, BlockIdx, LfnBuffer, Mode, RawDirectory, RawVolume, ShortFileName,
    TimeSource, Timestamp, VolumeIdx, VolumeManager,
};

use crate::block::{BlockDevice, BlockError, BLOCK_SIZE};
use crate::error::{from_fat, FsError};
use crate::path::components;

/// The directories open at once: a parent and the child being opened.
const MAX_DIRS: usize = 2;
/// The files open at once.
const MAX_FILES: usize = 1;
/// The bytes a long name takes as UTF-8 at most (255 UTF-16 units, 3 bytes each).
const LFN_BYTES: usize = 255 * 3;
/// The largest file FAT holds.
const FAT_MAX_FILE: u64 = u32::MAX as u64;

/// Hands a [`BlockDevice`] to `embedded-sdmmc`, which shares it through `&self`.
struct Adapter<D>(RefCell<D>);

impl<D: BlockDevice> embedded_sdmmc::BlockDevice for Adapter<D> {
    type Error = BlockError;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), BlockError> {
        let mut dev = self.0.borrow_mut();
        for (block, idx) in blocks.iter_mut().zip(u64::from(start.0)..) {
            dev.read_blocks(idx, &mut block.contents)?;
        }
        Ok(())
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), BlockError> {
        let mut dev = self.0.borrow_mut();
        for (block, idx) in blocks.iter().zip(u64::from(start.0)..) {
            dev.write_blocks(idx, &block.contents)?;
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<BlockCount, BlockError> {
        // The library addresses blocks with u32: a larger disk is used up to 2 TiB.
        let count = self.0.borrow().block_count().min(u64::from(u32::MAX));
        Ok(BlockCount(count as u32))
    }
}

/// Timestamps for what this layer writes: the FAT epoch, 1980-01-01 00:00 (no wall clock
/// is read yet).
struct Epoch;

impl TimeSource for Epoch {
    fn get_timestamp(&self) -> Timestamp {
        Timestamp::from_fat(0x21, 0)
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
}

/// A file or directory as [`FileSystem::stat`] and [`FileSystem::list`] see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The name: the long name where there is one, else the 8.3 name (`NAME.EXT`).
    pub name: String,
    /// File or directory.
    pub kind: FileKind,
    /// The size in bytes (0 for a directory).
    pub size: u64,
    /// Marked read-only.
    pub read_only: bool,
}

/// A directory entry found by name: its 8.3 name (how the library opens it) and metadata.
struct Found {
    short: ShortFileName,
    meta: Metadata,
}

impl Found {
    fn new(entry: &embedded_sdmmc::DirEntry, long: Option<&str>) -> Self {
        let is_dir = entry.attributes.is_directory();
        Self {
            short: entry.name,
            meta: Metadata {
                name: long.map_or_else(|| entry.name.to_string(), String::from),
                kind: if is_dir {
                    FileKind::Directory
                } else {
                    FileKind::File
                },
                size: if is_dir { 0 } else { u64::from(entry.size) },
                read_only: entry.attributes.is_read_only(),
            },
        }
    }
}

/// Whether a directory entry is one a user sees (not `.`, `..`, a volume label or an LFN
/// slot).
fn visible(entry: &embedded_sdmmc::DirEntry) -> bool {
    !entry.attributes.is_lfn()
        && !entry.attributes.is_volume()
        && entry.name != ShortFileName::this_dir()
        && entry.name != ShortFileName::parent_dir()
}

/// A mounted FAT16/FAT32 volume: the first MBR partition of a block device.
///
/// Every operation opens what it needs and closes it before returning, so nothing stays
/// open between calls and an error leaves no handle behind. Writes reach the device
/// (and its [`BlockDevice::flush`]) before the call returns.
pub struct FileSystem<D: BlockDevice> {
    fat: VolumeManager<Adapter<D>, Epoch, MAX_DIRS, MAX_FILES, 1>,
    volume: RawVolume,
}

impl<D: BlockDevice> FileSystem<D> {
    /// Mounts the FAT volume in the first MBR partition of `device`.
    pub fn mount(mut device: D) -> Result<Self, FsError> {
        crate::check::volume(&mut device)?;
        let fat = VolumeManager::new_with_limits(Adapter(RefCell::new(device)), Epoch, 0);
        let volume = fat
            .open_raw_volume(VolumeIdx(0))
            .map_err(|err| from_fat(err, "/"))?;
        Ok(Self { fat, volume })
    }

    /// Unmounts the volume and hands the device back.
    pub fn unmount(self) -> Result<D, FsError> {
        self.fat
            .close_volume(self.volume)
            .map_err(|err| from_fat(err, "/"))?;
        let (Adapter(device), _) = self.fat.free();
        let mut device = device.into_inner();
        device.flush().map_err(FsError::Device)?;
        Ok(device)
    }

    /// The entries of the directory at `path`, in on-disk order.
    pub fn list(&mut self, path: &str) -> Result<Vec<Metadata>, FsError> {
        let parts = parse(path)?;
        self.in_dir(path, &parts, |fat, dir| {
            let mut out = Vec::new();
            let mut storage = [0u8; LFN_BYTES];
            let mut lfn = LfnBuffer::new(&mut storage);
            fat.iterate_dir_lfn(dir, &mut lfn, |entry, long| {
                if visible(entry) {
                    out.push(Found::new(entry, long).meta);
                }
                ControlFlow::Continue(())
            })
            .map_err(|err| from_fat(err, path))?;
            Ok(out)
        })
    }

    /// What is at `path` (the root is a directory named `/`).
    pub fn stat(&mut self, path: &str) -> Result<Metadata, FsError> {
        let parts = parse(path)?;
        let Some((name, parents)) = parts.split_last() else {
            return Ok(Metadata {
                name: String::from("/"),
                kind: FileKind::Directory,
                size: 0,
                read_only: false,
            });
        };
        self.in_dir(path, parents, |fat, dir| {
            find(fat, dir, name, path)?
                .map(|found| found.meta)
                .ok_or_else(|| FsError::NotFound {
                    path: String::from(path),
                })
        })
    }

    /// The whole file at `path`, refused with [`FsError::TooLarge`] if it is larger than
    /// `limit` bytes (checked before anything is read or allocated).
    pub fn read(&mut self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        let parts = parse(path)?;
        let (name, parents) = parts.split_last().ok_or_else(|| FsError::IsADirectory {
            path: String::from(path),
        })?;
        self.in_dir(path, parents, |fat, dir| {
            let found = existing_file(fat, dir, name, path)?;
            if found.meta.size > limit {
                return Err(FsError::TooLarge {
                    path: String::from(path),
                    size: found.meta.size,
                    limit,
                });
            }
            let file = fat
                .open_file_in_dir(dir, found.short, Mode::ReadOnly)
                .map_err(|err| from_fat(err, path))?;
            // The size fits in memory: it is at most `limit`, and at most 4 GiB - 1.
            let mut data = alloc::vec![0u8; found.meta.size as usize];
            let mut filled = 0;
            let result = loop {
                if filled == data.len() {
                    break Ok(());
                }
                match fat.read(file, &mut data[filled..]) {
                    Ok(0) => {
                        break Err(FsError::Corrupt {
                            what: "a file's clusters end before its size",
                        })
                    }
                    Ok(n) => filled += n,
                    Err(err) => break Err(from_fat(err, path)),
                }
            };
            let closed = fat.close_file(file).map_err(|err| from_fat(err, path));
            result.and(closed).map(|()| data)
        })
    }

    /// Writes `data` as the whole content of the file at `path`: an existing file is
    /// truncated first; a new one is created (its name must be an 8.3 short name).
    pub fn write(&mut self, path: &str, data: &[u8]) -> Result<(), FsError> {
        if data.len() as u64 > FAT_MAX_FILE {
            return Err(FsError::TooLarge {
                path: String::from(path),
                size: data.len() as u64,
                limit: FAT_MAX_FILE,
            });
        }
        let parts = parse(path)?;
        let (name, parents) = parts.split_last().ok_or_else(|| FsError::IsADirectory {
            path: String::from(path),
        })?;
        self.in_dir(path, parents, |fat, dir| {
            let file = match find(fat, dir, name, path)? {
                Some(found) if found.meta.kind == FileKind::Directory => {
                    return Err(FsError::IsADirectory {
                        path: String::from(path),
                    })
                }
                Some(found) => fat.open_file_in_dir(dir, found.short, Mode::ReadWriteTruncate),
                None => fat.open_file_in_dir(dir, short_name(name)?, Mode::ReadWriteCreate),
            }
            .map_err(|err| from_fat(err, path))?;
            let written = fat.write(file, data).map_err(|err| from_fat(err, path));
            let closed = fat.close_file(file).map_err(|err| from_fat(err, path));
            written.and(closed)
        })?;
        self.flush()
    }

    /// Creates the directory `path` (its name must be an 8.3 short name).
    pub fn mkdir(&mut self, path: &str) -> Result<(), FsError> {
        let parts = parse(path)?;
        let (name, parents) = parts.split_last().ok_or_else(|| FsError::AlreadyExists {
            path: String::from(path),
        })?;
        self.in_dir(path, parents, |fat, dir| {
            if find(fat, dir, name, path)?.is_some() {
                return Err(FsError::AlreadyExists {
                    path: String::from(path),
                });
            }
            fat.make_dir_in_dir(dir, short_name(name)?)
                .map_err(|err| from_fat(err, path))
        })?;
        self.flush()
    }

    /// Removes the file or empty directory at `path`.
    ///
    /// The library frees no clusters when it deletes an entry, so a file is truncated
    /// first: what stays allocated is one cluster per removed file or directory (see
    /// docs/axfs.md).
    pub fn remove(&mut self, path: &str) -> Result<(), FsError> {
        let parts = parse(path)?;
        let (name, parents) = parts
            .split_last()
            .ok_or_else(|| FsError::DirectoryNotEmpty {
                path: String::from(path),
            })?;
        self.in_dir(path, parents, |fat, dir| {
            let found = find(fat, dir, name, path)?.ok_or_else(|| FsError::NotFound {
                path: String::from(path),
            })?;
            if found.meta.read_only {
                return Err(FsError::ReadOnly {
                    path: String::from(path),
                });
            }
            if found.meta.kind == FileKind::File {
                let file = fat
                    .open_file_in_dir(dir, found.short, Mode::ReadWriteTruncate)
                    .map_err(|err| from_fat(err, path))?;
                fat.close_file(file).map_err(|err| from_fat(err, path))?;
            }
            fat.delete_entry_in_dir(dir, found.short)
                .map_err(|err| from_fat(err, path))
        })?;
        self.flush()
    }

    /// Flushes the device.
    fn flush(&mut self) -> Result<(), FsError> {
        self.fat
            .device(|Adapter(dev)| dev.get_mut().flush())
            .map_err(FsError::Device)
    }

    /// Runs `op` on the directory reached by `parts` from the root, closing every
    /// directory it opened whatever happens.
    fn in_dir<T>(
        &mut self,
        path: &str,
        parts: &[&str],
        op: impl FnOnce(&FatVolume<D>, RawDirectory) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let fat = &self.fat;
        let mut dir = fat
            .open_root_dir(self.volume)
            .map_err(|err| from_fat(err, path))?;
        for name in parts {
            let next = match find(fat, dir, name, path) {
                Ok(Some(found)) if found.meta.kind == FileKind::Directory => fat
                    .open_dir(dir, found.short)
                    .map_err(|err| from_fat(err, path)),
                Ok(Some(_)) => Err(FsError::NotADirectory {
                    path: String::from(path),
                }),
                Ok(None) => Err(FsError::NotFound {
                    path: String::from(path),
                }),
                Err(err) => Err(err),
            };
            let closed = fat.close_dir(dir).map_err(|err| from_fat(err, path));
            match (next, closed) {
                (Ok(next), Ok(())) => dir = next,
                (Ok(next), Err(err)) => {
                    let _ = fat.close_dir(next);
                    return Err(err);
                }
                (Err(err), _) => return Err(err),
            }
        }
        let result = op(fat, dir);
        let closed = fat.close_dir(dir).map_err(|err| from_fat(err, path));
        result.and_then(|value| closed.map(|()| value))
    }
}

/// The library's volume manager as this layer configures it.
type FatVolume<D> = VolumeManager<Adapter<D>, Epoch, MAX_DIRS, MAX_FILES, 1>;

/// `path`'s components, or why it is refused.
fn parse(path: &str) -> Result<Vec<&str>, FsError> {
    components(path).map_err(|reason| FsError::InvalidPath {
        path: String::from(path),
        reason,
    })
}

/// `name` as an 8.3 short name for a new entry.
fn short_name(name: &str) -> Result<ShortFileName, FsError> {
    ShortFileName::create_from_str(name).map_err(|_| FsError::NameNotSupported {
        name: String::from(name),
    })
}

/// The entry called `name` in `dir`: by long name or 8.3 name, ignoring ASCII case as FAT
/// does.
fn find<D: BlockDevice>(
    fat: &FatVolume<D>,
    dir: RawDirectory,
    name: &str,
    path: &str,
) -> Result<Option<Found>, FsError> {
    let mut found = None;
    let mut storage = [0u8; LFN_BYTES];
    let mut lfn = LfnBuffer::new(&mut storage);
    let mut short = String::new();
    fat.iterate_dir_lfn(dir, &mut lfn, |entry, long| {
        if !visible(entry) {
            return ControlFlow::Continue(());
        }
        short.clear();
        let _ = core::fmt::write(&mut short, format_args!("{}", entry.name));
        if long.is_some_and(|long| long.eq_ignore_ascii_case(name))
            || short.eq_ignore_ascii_case(name)
        {
            found = Some(Found::new(entry, long));
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .map_err(|err| from_fat(err, path))?;
    Ok(found)
}

/// The regular file called `name` in `dir`.
fn existing_file<D: BlockDevice>(
    fat: &FatVolume<D>,
    dir: RawDirectory,
    name: &str,
    path: &str,
) -> Result<Found, FsError> {
    match find(fat, dir, name, path)? {
        Some(found) if found.meta.kind == FileKind::File => Ok(found),
        Some(_) => Err(FsError::IsADirectory {
            path: String::from(path),
        }),
        None => Err(FsError::NotFound {
            path: String::from(path),
        }),
    }
}

// The library's blocks are this layer's blocks.
const _: () = assert!(Block::LEN == BLOCK_SIZE);
