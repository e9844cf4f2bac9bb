//! ext2, ext3 and ext4 volumes, read-only, through the `ext4-view` crate: found by their
//! superblock on the whole device or in the first MBR partition of type 83 (Linux), checked
//! before the crate sees them, and read through a window that turns the crate's small
//! sequential reads into large device requests.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;

use ext4_view::{Ext4, Ext4Error, Ext4Read, File};

use crate::block::{BlockDevice, BlockError, BLOCK_SIZE};
use crate::error::FsError;
use crate::fs::{parse, FileKind, Metadata};
use crate::path::allowed;
use crate::volume::{Volume, VolumeKind};

/// Where the superblock starts, in bytes from the volume's start.
const SUPERBLOCK: u64 = 1024;
/// The superblock's magic number (`s_magic`, at byte 0x38).
const MAGIC: u16 = 0xef53;
/// The MBR partition type of a Linux filesystem.
const LINUX_PARTITION: u8 = 0x83;
/// The most block group descriptor bytes accepted: the crate keeps them all on the heap
/// (1 MiB is 16384 groups of 64 bytes, a 2 TiB volume of 4 KiB blocks).
const MAX_DESCRIPTOR_BYTES: u64 = 1 << 20;
/// The most entries [`Ext4Fs::list`] returns: a directory whose blocks repeat (a hostile
/// image) could otherwise list without end, into all of memory.
const MAX_DIR_ENTRIES: usize = 65536;
/// The longest symbolic link target followed (Linux's `PATH_MAX` less its NUL): the crate
/// reads a target whole into memory, whatever size its inode claims.
const MAX_LINK: u64 = 4095;
/// The most symbolic links one path may go through (Linux's limit).
const MAX_LINKS: usize = 40;
/// How far a sequential read reaches ahead in one device request.
const WINDOW: usize = 512 * 1024;
/// `s_feature_compat`: the volume has a journal (ext3).
const COMPAT_HAS_JOURNAL: u32 = 0x4;
/// `s_feature_incompat` bits only ext4 sets: extents, 64-bit, flexible block groups.
const INCOMPAT_EXT4: u32 = 0x40 | 0x80 | 0x200;
/// `s_feature_incompat`: 64-bit block numbers and descriptors.
const INCOMPAT_64BIT: u32 = 0x80;

/// An ext2/3/4 volume found on a device: where it is and what it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    /// The device block the volume starts at.
    start: u64,
    /// The volume's size in bytes (its blocks as the superblock counts them).
    bytes: u64,
    /// ext2, ext3 or ext4.
    kind: VolumeKind,
    /// The largest file read: what a block map (12 direct blocks, then single, double and
    /// triple indirect ones) addresses in this block size. The crate's block-map walk ends
    /// there, and a read past its end panics.
    max_file: u64,
}

/// A refusal of the volume before the crate sees it.
fn unusable(what: String) -> FsError {
    FsError::Ext4 { path: None, what }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The ext2/3/4 volume on `dev`: the whole device, or the first MBR partition when its
/// type is 83 (Linux). `None` when neither holds a superblock (the caller tries FAT); an
/// error when one does but it is unusable.
pub(crate) fn probe<D: BlockDevice>(dev: &mut D) -> Result<Option<Found>, FsError> {
    let blocks = dev.block_count();
    if let Some(found) = at(dev, 0, blocks)? {
        return Ok(Some(found));
    }
    let mut mbr = [0u8; BLOCK_SIZE];
    if blocks == 0 {
        return Ok(None);
    }
    dev.read_blocks(0, &mut mbr).map_err(FsError::Device)?;
    let entry = &mbr[446..462];
    if mbr[510..] != [0x55, 0xaa] || entry[4] != LINUX_PARTITION {
        return Ok(None);
    }
    let start = u64::from(u32_at(entry, 8));
    let count = u64::from(u32_at(entry, 12));
    if start == 0 || start.saturating_add(count) > blocks {
        return Err(unusable(format!(
            "the MBR's Linux partition (blocks {start}..{}) is not inside the disk ({blocks} blocks)",
            start.saturating_add(count)
        )));
    }
    at(dev, start, count)?.map(Some).ok_or_else(|| {
        unusable(String::from(
            "the MBR's first partition is a Linux one (type 83) but holds no ext2/3/4 superblock",
        ))
    })
}

/// The volume whose superblock is at byte 1024 of the `count` blocks at `start`, checked
/// so that the crate never reads past them or holds more than [`MAX_DESCRIPTOR_BYTES`] of
/// group descriptors; `None` without the magic number.
fn at<D: BlockDevice>(dev: &mut D, start: u64, count: u64) -> Result<Option<Found>, FsError> {
    let first = SUPERBLOCK / BLOCK_SIZE as u64;
    if count < first + 2 {
        return Ok(None);
    }
    let mut sb = [0u8; 2 * BLOCK_SIZE];
    dev.read_blocks(start + first, &mut sb)
        .map_err(FsError::Device)?;
    if u16_at(&sb, 0x38) != MAGIC {
        return Ok(None);
    }
    let log = u32_at(&sb, 0x18);
    if log > 6 {
        return Err(unusable(format!(
            "the superblock's block size (1 KiB << {log}) is not 1 to 64 KiB"
        )));
    }
    let block_size = 1024u64 << log;
    let blocks = u64::from(u32_at(&sb, 0x4)) | u64::from(u32_at(&sb, 0x150)) << 32;
    let room = count * BLOCK_SIZE as u64;
    let bytes = blocks.checked_mul(block_size).filter(|&b| b <= room);
    let Some(bytes) = bytes else {
        return Err(unusable(format!(
            "the volume ({blocks} blocks of {block_size} bytes) is larger than its disk or partition ({room} bytes): a truncated image?"
        )));
    };
    let per_group = u64::from(u32_at(&sb, 0x20));
    let first_data = u64::from(u32_at(&sb, 0x14));
    let incompat = u32_at(&sb, 0x60);
    let desc = if incompat & INCOMPAT_64BIT != 0 {
        u64::from(u16_at(&sb, 0xfe))
    } else {
        32
    };
    let groups = blocks.saturating_sub(first_data).div_ceil(per_group.max(1));
    if per_group == 0 || groups.saturating_mul(desc) > MAX_DESCRIPTOR_BYTES {
        return Err(unusable(format!(
            "{groups} block groups of {per_group} blocks: more group descriptors than the {MAX_DESCRIPTOR_BYTES} bytes this reader holds"
        )));
    }
    let kind = if incompat & INCOMPAT_EXT4 != 0 {
        VolumeKind::Ext4
    } else if u32_at(&sb, 0x5c) & COMPAT_HAS_JOURNAL != 0 {
        VolumeKind::Ext3
    } else {
        VolumeKind::Ext2
    };
    let n = block_size / 4;
    let max_file = (12 + n + n * n + n * n * n) * block_size;
    Ok(Some(Found {
        start,
        bytes,
        kind,
        max_file,
    }))
}

/// The volume's bytes on the device, as the crate reads them: bounded to the volume, in
/// whole-block device requests, a sequential read reaching [`WINDOW`] bytes ahead.
struct Reader<D> {
    dev: D,
    /// The device block the volume starts at.
    start: u64,
    /// The volume's size in bytes (a multiple of [`BLOCK_SIZE`]).
    bytes: u64,
    /// Volume bytes read ahead, from `window_at`.
    window: Vec<u8>,
    window_at: u64,
    /// Where the last read ended: a read starting there is sequential.
    next: u64,
}

impl<D: BlockDevice> Reader<D> {
    /// Fills `dst` from volume byte `at`.
    fn read(&mut self, at: u64, dst: &mut [u8]) -> Result<(), BlockError> {
        let block = BLOCK_SIZE as u64;
        let len = dst.len() as u64;
        let end = at.checked_add(len).filter(|&end| end <= self.bytes);
        let Some(end) = end else {
            return Err(BlockError::OutOfRange {
                first: self.start.saturating_add(at / block),
                count: len.div_ceil(block),
                blocks: self.start + self.bytes / block,
            });
        };
        let sequential = at == self.next;
        self.next = end;
        let window_end = self.window_at + self.window.len() as u64;
        if at >= self.window_at && end <= window_end {
            let from = (at - self.window_at) as usize;
            dst.copy_from_slice(&self.window[from..from + dst.len()]);
            return Ok(());
        }
        let from = at - at % block;
        let to = end.div_ceil(block) * block;
        if sequential && to - from < WINDOW as u64 {
            // `bytes` is whole blocks, so the window is too.
            let to = (from + WINDOW as u64).min(self.bytes);
            self.window.resize((to - from) as usize, 0);
            self.window_at = from;
            let read = self
                .dev
                .read_blocks(self.start + from / block, &mut self.window);
            if let Err(err) = read {
                self.window.clear();
                return Err(err);
            }
            let skip = (at - from) as usize;
            dst.copy_from_slice(&self.window[skip..skip + dst.len()]);
            return Ok(());
        }
        if from == at && to == end {
            return self.dev.read_blocks(self.start + from / block, dst);
        }
        let mut bounce = alloc::vec![0u8; (to - from) as usize];
        self.dev
            .read_blocks(self.start + from / block, &mut bounce)?;
        let skip = (at - from) as usize;
        dst.copy_from_slice(&bounce[skip..skip + dst.len()]);
        Ok(())
    }
}

/// The [`Reader`] as the crate holds it, shared with [`Ext4Fs`] (which takes the device
/// back at unmount).
struct Shared<D>(Rc<RefCell<Reader<D>>>);

impl<D: BlockDevice> Ext4Read for Shared<D> {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn core::error::Error + Send + Sync + 'static>> {
        self.0
            .borrow_mut()
            .read(start_byte, dst)
            .map_err(|err| Box::new(err) as _)
    }
}

/// A mounted ext2/3/4 volume, read-only.
pub(crate) struct Ext4Fs<D> {
    fs: Ext4,
    reader: Rc<RefCell<Reader<D>>>,
    volume: Volume,
    /// [`Found::max_file`].
    max_file: u64,
    /// The file [`Self::read_at`] read last and its path: a read at or after where it
    /// stopped goes on from there, reading what lies between ([`skip`]); one before it
    /// opens the file again and reads from its start.
    last: Option<(String, File)>,
}

// SAFETY: `Ext4` and `File` are not `Send` only because they share their state through
// `Rc`. Every clone of those `Rc`s (the crate's volume, the files it opens, `reader`) is
// owned by this value: the files are dropped before the method that opened them returns,
// or kept in `last`, and no method hands one out. So moving this value to another CPU
// moves every handle to that state with it, and no two CPUs ever touch a count; the
// device itself is `Send`.
unsafe impl<D: Send> Send for Ext4Fs<D> {}

/// A file of an ext2/3/4 volume held open by [`Ext4Fs::open_blocks`].
#[derive(Debug, Clone)]
pub(crate) struct Ext4File {
    pub(crate) path: String,
    pub(crate) size: u64,
}

/// `parts` as the crate's absolute path.
fn joined<S: AsRef<str>>(parts: &[S]) -> String {
    let mut out = String::new();
    for part in parts {
        out.push('/');
        out.push_str(part.as_ref());
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// A name from the disk as a user sees it: invalid UTF-8 and any character a path cannot
/// hold (a control character) as `?`.
fn display_name(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if allowed(c) && c != '\u{fffd}' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The crate's error, in this layer's terms, for an operation on `path`.
pub(crate) fn from_ext4(err: Ext4Error, path: &str) -> FsError {
    let path = String::from(path);
    match err {
        Ext4Error::NotFound => FsError::NotFound { path },
        Ext4Error::IsADirectory => FsError::IsADirectory { path },
        Ext4Error::NotADirectory => FsError::NotADirectory { path },
        Ext4Error::IsASpecialFile => FsError::NotAFile { path },
        Ext4Error::Io(err) => match err.downcast_ref::<BlockError>() {
            Some(err) => FsError::Device(*err),
            None => FsError::Ext4 {
                path: Some(path),
                what: err.to_string(),
            },
        },
        err => FsError::Ext4 {
            path: Some(path),
            what: err.to_string(),
        },
    }
}

impl<D: BlockDevice + 'static> Ext4Fs<D> {
    /// Mounts the volume `probe` found on `dev`.
    pub(crate) fn mount(dev: D, found: Found) -> Result<Self, FsError> {
        let reader = Rc::new(RefCell::new(Reader {
            dev,
            start: found.start,
            bytes: found.bytes,
            window: Vec::new(),
            window_at: 0,
            next: u64::MAX,
        }));
        let fs = Ext4::load(Box::new(Shared(reader.clone()))).map_err(|err| {
            match from_ext4(err, "/") {
                FsError::Ext4 { what, .. } => unusable(what),
                other => other,
            }
        })?;
        Ok(Self {
            fs,
            reader,
            volume: Volume {
                kind: found.kind,
                bytes: found.bytes,
                start: found.start * BLOCK_SIZE as u64,
                // `probe` takes a volume that does not start at block 0 from the MBR's
                // first entry.
                partition: (found.start != 0).then_some(1),
            },
            max_file: found.max_file,
            last: None,
        })
    }

    /// What the volume is and its size.
    pub(crate) fn volume(&self) -> Volume {
        self.volume
    }

    /// Unmounts the volume and hands the device back.
    pub(crate) fn unmount(self) -> Result<D, FsError> {
        let Self {
            fs, reader, last, ..
        } = self;
        drop(last);
        drop(fs);
        let reader = Rc::try_unwrap(reader).map_err(|_| FsError::Internal {
            what: "the ext4 reader is still shared at unmount",
        })?;
        Ok(reader.into_inner().dev)
    }

    /// The entries of the directory at `path`, in on-disk order (`.` and `..` left out), at
    /// most [`MAX_DIR_ENTRIES`].
    pub(crate) fn list(&mut self, path: &str) -> Result<Vec<Metadata>, FsError> {
        let (dir, _) = self.lookup(path)?;
        let err = |e| from_ext4(e, path);
        let mut out = Vec::new();
        for entry in self.fs.read_dir(joined(&dir).as_str()).map_err(err)? {
            let entry = entry.map_err(err)?;
            if out.len() == MAX_DIR_ENTRIES {
                return Err(FsError::Ext4 {
                    path: Some(String::from(path)),
                    what: format!("the directory has more than {MAX_DIR_ENTRIES} entries"),
                });
            }
            let name = entry.file_name();
            if name.as_ref() == b"." || name.as_ref() == b".." {
                continue;
            }
            let kind = entry.file_type().map_err(err)?;
            // A link is shown as what it leads to, a dangling one as an empty file.
            let meta = if kind.is_symlink() {
                let mut parts: Vec<&str> = dir.iter().map(String::as_str).collect();
                let name = core::str::from_utf8(name.as_ref()).unwrap_or("?");
                parts.push(name);
                self.resolve(&parts, path).ok().map(|(_, meta)| meta)
            } else {
                Some(entry.metadata().map_err(err)?)
            };
            out.push(metadata(display_name(name.as_ref()), meta.as_ref()));
        }
        Ok(out)
    }

    /// What is at `path` (the root is a directory named `/`); links are followed.
    pub(crate) fn stat(&mut self, path: &str) -> Result<Metadata, FsError> {
        let parts = parse(path)?;
        let name = parts.last().copied().unwrap_or("/");
        let (_, meta) = self.resolve(&parts, path)?;
        Ok(metadata(String::from(name), Some(&meta)))
    }

    /// Reads the whole file at `path`, at most `limit` bytes, into what `make` gives for
    /// its size.
    pub(crate) fn read_with<B: AsMut<[u8]>>(
        &mut self,
        path: &str,
        limit: u64,
        make: impl FnOnce(usize) -> B,
    ) -> Result<B, FsError> {
        let mut file = self.open(path)?;
        let size = file.metadata().len();
        if size > limit {
            return Err(FsError::TooLarge {
                path: String::from(path),
                size,
                limit,
            });
        }
        // At most `limit`, which came from a usize or bounds an allocation.
        let mut out = make(size as usize);
        fill(&mut file, out.as_mut(), path)?;
        Ok(out)
    }

    /// Fills `buf` from the bytes at `offset` of the file at `path`, refused with
    /// [`FsError::OutOfRange`] unless the range lies inside the file.
    pub(crate) fn read_at(
        &mut self,
        path: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), FsError> {
        let mut file = match self.last.take() {
            Some((last, file)) if last == path && file.position() <= offset => file,
            _ => self.open(path)?,
        };
        let size = file.metadata().len();
        // Reading up to an offset costs a step per block: bounded by the volume's blocks.
        if size > self.volume.bytes {
            return Err(FsError::Ext4 {
                path: Some(String::from(path)),
                what: format!(
                    "the file ({size} bytes) is larger than its volume ({} bytes): a sparse file is read whole, not at offsets",
                    self.volume.bytes
                ),
            });
        }
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(FsError::OutOfRange {
                path: String::from(path),
                offset,
                len,
                size,
            });
        }
        skip(&mut file, offset, path)?;
        fill(&mut file, buf, path)?;
        self.last = Some((String::from(path), file));
        Ok(())
    }

    /// Finds the regular file at `path` for [`Self::read_at`] by its path.
    pub(crate) fn open_blocks(&mut self, path: &str) -> Result<Ext4File, FsError> {
        let file = self.open(path)?;
        let size = file.metadata().len();
        self.last = Some((String::from(path), file));
        Ok(Ext4File {
            path: String::from(path),
            size,
        })
    }

    /// Opens the regular file at `path`, at most [`Found::max_file`] bytes.
    fn open(&mut self, path: &str) -> Result<File, FsError> {
        let (parts, meta) = self.lookup(path)?;
        if meta.len() > self.max_file {
            return Err(FsError::Ext4 {
                path: Some(String::from(path)),
                what: format!(
                    "the file's size ({} bytes) is more than this volume's block size addresses ({} bytes)",
                    meta.len(),
                    self.max_file
                ),
            });
        }
        self.fs
            .open(joined(&parts).as_str())
            .map_err(|e| from_ext4(e, path))
    }

    /// [`Self::resolve`] of `path`.
    fn lookup(&self, path: &str) -> Result<(Vec<String>, ext4_view::Metadata), FsError> {
        self.resolve(&parse(path)?, path)
    }

    /// The components of the path `parts` names with every symbolic link replaced by its
    /// target (so the crate, given them, meets no link), and what is there. Each link's
    /// size is checked (at most [`MAX_LINK`] bytes) before the crate reads its target, at
    /// most [`MAX_LINKS`] links are followed, and `..` resolves on the real directories
    /// (the path before it has no link).
    fn resolve(
        &self,
        parts: &[&str],
        path: &str,
    ) -> Result<(Vec<String>, ext4_view::Metadata), FsError> {
        let err = |e| from_ext4(e, path);
        let damaged = |what: String| FsError::Ext4 {
            path: Some(String::from(path)),
            what,
        };
        let mut done: Vec<String> = Vec::new();
        let mut todo: VecDeque<String> = parts.iter().map(|p| String::from(*p)).collect();
        let mut links = 0;
        let mut meta = self.fs.metadata("/").map_err(err)?;
        while let Some(part) = todo.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    done.pop();
                    meta = self.fs.metadata(joined(&done).as_str()).map_err(err)?;
                    continue;
                }
                _ => {}
            }
            done.push(part);
            let here = joined(&done);
            meta = self.fs.symlink_metadata(here.as_str()).map_err(err)?;
            if !meta.is_symlink() {
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(damaged(format!(
                    "more than {MAX_LINKS} symbolic links on the way"
                )));
            }
            if meta.len() > MAX_LINK {
                return Err(damaged(format!(
                    "a symbolic link's target is {} bytes (at most {MAX_LINK})",
                    meta.len()
                )));
            }
            let target = self.fs.read_link(here.as_str()).map_err(err)?;
            let target = target
                .to_str()
                .map_err(|_| damaged(String::from("a symbolic link's target is not UTF-8")))?;
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            for (i, part) in target.split('/').enumerate() {
                todo.insert(i, String::from(part));
            }
        }
        Ok((done, meta))
    }
}

/// Moves `file` forward to `offset` (at most its size) by reading: the crate's own seek
/// ignores an error in the file's block list, and the next read then panics.
fn skip(file: &mut File, offset: u64, path: &str) -> Result<(), FsError> {
    let mut scratch = [0u8; 4096];
    while file.position() < offset {
        let n = (offset - file.position()).min(scratch.len() as u64) as usize;
        fill(file, &mut scratch[..n], path)?;
    }
    Ok(())
}

/// Fills `buf` from `file` where it stands.
fn fill(file: &mut File, buf: &mut [u8], path: &str) -> Result<(), FsError> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_bytes(&mut buf[filled..]) {
            Ok(0) => {
                return Err(FsError::Ext4 {
                    path: Some(String::from(path)),
                    what: String::from("the file ends before its size"),
                })
            }
            Ok(n) => filled += n,
            Err(err) => return Err(from_ext4(err, path)),
        }
    }
    Ok(())
}

/// An entry as this layer shows it: a directory or else a file (of size 0 when it is not
/// a regular file or its metadata is unknown); everything is read-only.
fn metadata(name: String, meta: Option<&ext4_view::Metadata>) -> Metadata {
    let is_dir = meta.is_some_and(|m| m.is_dir());
    let regular = meta.is_some_and(|m| m.file_type().is_regular_file());
    Metadata {
        name,
        kind: if is_dir {
            FileKind::Directory
        } else {
            FileKind::File
        },
        size: match meta {
            Some(m) if regular => m.len(),
            _ => 0,
        },
        read_only: true,
    }
}
