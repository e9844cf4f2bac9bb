//! A FAT volume on a block device, through `embedded-sdmmc`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::ops::ControlFlow;

use embedded_sdmmc::{
    Block, BlockCount, BlockIdx, ClusterId, LfnBuffer, Mode, RawDirectory, RawFile, RawVolume,
    ShortFileName, TimeSource, Timestamp, VolumeIdx, VolumeManager,
};

use crate::block::{BlockDevice, BlockError, BLOCK_SIZE};
use crate::check::Geometry;
use crate::error::{from_fat, from_fault, FsError};
use crate::path::{allowed, components};
use crate::volume::{Volume, VolumeKind};

/// The directories open at once: a parent and the child being opened.
const MAX_DIRS: usize = 2;
/// The files open at once.
const MAX_FILES: usize = 1;
/// The bytes a long name takes as UTF-8 at most (255 UTF-16 units, 3 bytes each).
const LFN_BYTES: usize = 255 * 3;
/// The most entries a FAT directory holds (2 MiB of 32-byte entries); more means its
/// clusters loop.
const MAX_DIR_ENTRIES: usize = 65536;
/// What a directory with more entries than [`MAX_DIR_ENTRIES`] is.
const DIR_LOOP: FsError = FsError::Corrupt {
    what: "a directory has more than 65536 entries (its clusters loop)",
};
/// What a file whose cluster chain ends (or leaves the data clusters) before its size is.
const BROKEN_CHAIN: FsError = FsError::Corrupt {
    what: "a file's clusters end before its size",
};
/// The largest file FAT holds.
const FAT_MAX_FILE: u64 = u32::MAX as u64;

/// Hands a [`BlockDevice`] to `embedded-sdmmc`, which shares it through `&self`, and
/// keeps a damaged volume from leading the library astray: no access outside the volume
/// (beyond the MBR), FAT entries naming no data cluster read as "bad cluster", and a
/// bound on the blocks one operation reads (so a loop on disk ends).
struct Adapter<D> {
    dev: RefCell<D>,
    geometry: Geometry,
    /// Blocks the current operation may still read.
    budget: Cell<u64>,
    /// The library is listing a directory: blocks outside the FATs are directory blocks.
    listing: Cell<bool>,
}

/// Why the adapter refused a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The device failed.
    Device(BlockError),
    /// A block outside the volume: a cluster number the FAT layer computed from damaged data.
    OutsideVolume,
    /// The operation read more blocks than [`Adapter::budget`] allows: structures that loop.
    Loop,
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Device(err) => err.fmt(f),
            Self::OutsideVolume => write!(f, "a block outside the volume"),
            Self::Loop => write!(f, "too many blocks read by one operation"),
        }
    }
}

impl core::error::Error for Fault {}

impl<D: BlockDevice> Adapter<D> {
    fn new(dev: D, geometry: Geometry) -> Self {
        Self {
            dev: RefCell::new(dev),
            geometry,
            budget: Cell::new(0),
            listing: Cell::new(false),
        }
    }

    /// What one operation may read: every block of the volume eight times over, plus
    /// slack; far above any real operation, and finite.
    fn budget(&self) -> u64 {
        (self.geometry.end - self.geometry.start)
            .saturating_mul(8)
            .saturating_add(65536)
    }

    /// Checks that the `count` blocks at `first` are inside the volume, or the MBR for a
    /// read.
    fn check_span(&self, first: u64, count: u64, write: bool) -> Result<(), Fault> {
        let g = &self.geometry;
        let end = first.checked_add(count).ok_or(Fault::OutsideVolume)?;
        let mbr = !write && first == 0 && count == 1;
        if mbr || (first >= g.start && end <= g.end) {
            Ok(())
        } else {
            Err(Fault::OutsideVolume)
        }
    }

    /// Reads whole blocks from library block `first` into `buf`, checked to lie inside
    /// the volume, in one device request (not through the library's one-block cache).
    fn read_span(&mut self, first: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let count = (buf.len() / BLOCK_SIZE) as u64;
        self.check_span(first, count, true)?;
        // Inside the volume, so at or after `shift`.
        self.dev
            .get_mut()
            .read_blocks(first - self.geometry.shift, buf)
            .map_err(Fault::Device)
    }

    /// Writes whole blocks from `buf` at library block `first`, checked to lie inside the
    /// volume, in one device request.
    fn write_span(&mut self, first: u64, buf: &[u8]) -> Result<(), Fault> {
        let count = (buf.len() / BLOCK_SIZE) as u64;
        self.check_span(first, count, true)?;
        self.dev
            .get_mut()
            .write_blocks(first - self.geometry.shift, buf)
            .map_err(Fault::Device)
    }

    /// The runs of device blocks holding the first `clusters` clusters of the chain that
    /// starts at `first`, read from the first FAT. A chain that leaves the data clusters
    /// (ends, is free or bad) before that is [`BROKEN_CHAIN`]; the walk is `clusters` steps
    /// at most, so a chain that loops ends too.
    fn chain(&mut self, first: u64, clusters: u64) -> Result<Vec<Run>, FsError> {
        let g = self.geometry;
        let width = if g.fat32 { 4 } else { 2 };
        let mut runs: Vec<Run> = Vec::new();
        let mut fat_block: Option<(u64, [u8; BLOCK_SIZE])> = None;
        let mut cluster = first;
        for i in 0..clusters {
            if !g.is_data_cluster(cluster) {
                return Err(BROKEN_CHAIN);
            }
            let dev = g.cluster_block(cluster);
            match runs.last_mut() {
                Some(run) if run.dev + run.count == dev => run.count += g.per_cluster,
                _ => runs.push(Run {
                    file: i * g.per_cluster,
                    dev,
                    count: g.per_cluster,
                }),
            }
            if i + 1 == clusters {
                break;
            }
            let at = cluster * width;
            let idx = g.fat_start + at / BLOCK_SIZE as u64;
            let block = match &mut fat_block {
                Some((cached, block)) if *cached == idx => block,
                slot => {
                    let mut block = [0u8; BLOCK_SIZE];
                    self.read_span(idx, &mut block).map_err(from_fault)?;
                    &mut slot.insert((idx, block)).1
                }
            };
            // `at % BLOCK_SIZE` is a multiple of the width: the entry lies in the block.
            let e = (at % BLOCK_SIZE as u64) as usize;
            cluster = if g.fat32 {
                let raw = [block[e], block[e + 1], block[e + 2], block[e + 3]];
                u64::from(u32::from_le_bytes(raw) & 0x0fff_ffff)
            } else {
                u64::from(u16::from_le_bytes([block[e], block[e + 1]]))
            };
        }
        Ok(runs)
    }

    /// Rewrites the entries of FAT block `idx` that name no data cluster (and are not free,
    /// bad or end-of-chain) as "bad cluster", which the library reports as an error.
    /// Whether block `idx` is a FAT block.
    fn sanitize_fat(&self, idx: u64, block: &mut [u8; BLOCK_SIZE]) -> bool {
        let g = &self.geometry;
        let fat_end = g.fat_start + g.fats * g.fat_size;
        if !(g.fat_start..fat_end).contains(&idx) {
            return false;
        }
        let width = if g.fat32 { 4 } else { 2 };
        let first_entry = (idx - g.fat_start) % g.fat_size * (BLOCK_SIZE / width) as u64;
        for (entry, bytes) in (first_entry..).zip(block.chunks_exact_mut(width)) {
            if entry < 2 || entry >= g.clusters + 2 {
                continue;
            }
            let (value, bad_from) = if g.fat32 {
                let raw = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                (u64::from(raw & 0x0fff_ffff), 0x0fff_fff7)
            } else {
                (u64::from(u16::from_le_bytes([bytes[0], bytes[1]])), 0xfff7)
            };
            if value != 0 && value < bad_from && !g.is_data_cluster(value) {
                let bad = (bad_from as u32).to_le_bytes();
                bytes.copy_from_slice(&bad[..width]);
            }
        }
        true
    }
}

/// Rewrites a long-name slot whose first UTF-16 unit is half a surrogate pair that does not
/// pair within the slot as U+FFFD. The library carries such a half over to the next slot
/// it decodes and, when that slot holds 13 characters, overflows a 13-character buffer (a
/// panic); a name split exactly there loses that one character to U+FFFD instead.
fn sanitize_long_names(block: &mut [u8; BLOCK_SIZE]) {
    const LFN: u8 = 0x0f;
    for slot in block.chunks_exact_mut(32) {
        // The library takes any entry with the four low attribute bits set as a long-name
        // slot (`Attributes::is_lfn`), whatever the two high bits say.
        if slot[11] & LFN != LFN {
            continue;
        }
        let first = u16::from_le_bytes([slot[1], slot[2]]);
        let second = u16::from_le_bytes([slot[3], slot[4]]);
        let high = (0xd800..0xdc00).contains(&first);
        let paired = high && (0xdc00..0xe000).contains(&second);
        if (0xd800..0xe000).contains(&first) && !paired {
            slot[1..3].copy_from_slice(&0xfffd_u16.to_le_bytes());
        }
    }
}

impl<D: BlockDevice> embedded_sdmmc::BlockDevice for Adapter<D> {
    type Error = Fault;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), Fault> {
        self.check_span(u64::from(start.0), blocks.len() as u64, false)?;
        let left = self
            .budget
            .get()
            .checked_sub(blocks.len() as u64)
            .ok_or(Fault::Loop)?;
        self.budget.set(left);
        let mut dev = self.dev.borrow_mut();
        let shift = self.geometry.shift;
        for (block, idx) in blocks.iter_mut().zip(u64::from(start.0)..) {
            if idx < shift {
                block.contents = self.geometry.mbr();
                continue;
            }
            dev.read_blocks(idx - shift, &mut block.contents)
                .map_err(Fault::Device)?;
            if !self.sanitize_fat(idx, &mut block.contents) && self.listing.get() {
                sanitize_long_names(&mut block.contents);
            }
        }
        Ok(())
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), Fault> {
        self.check_span(u64::from(start.0), blocks.len() as u64, true)?;
        let mut dev = self.dev.borrow_mut();
        let shift = self.geometry.shift;
        for (block, idx) in blocks.iter().zip(u64::from(start.0)..) {
            // Inside the volume, so at or after `shift`.
            let idx = idx.checked_sub(shift).ok_or(Fault::OutsideVolume)?;
            dev.write_blocks(idx, &block.contents)
                .map_err(Fault::Device)?;
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<BlockCount, Fault> {
        // The library addresses blocks with u32: a larger disk is used up to 2 TiB.
        let count =
            (self.dev.borrow().block_count() + self.geometry.shift).min(u64::from(u32::MAX));
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

/// A file or directory as [`Fat::stat`] and [`Fat::list`] see it.
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
                name: display_name(entry, long),
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

/// The name a user sees: the long name when it is one a path can name, else the 8.3 name
/// with any character a path cannot hold (a control character from a damaged entry) as
/// `?`.
fn display_name(entry: &embedded_sdmmc::DirEntry, long: Option<&str>) -> String {
    match long {
        Some(long) if !matches!(long, "" | "." | "..") && long.chars().all(allowed) => {
            String::from(long)
        }
        _ => {
            let short: String = entry
                .name
                .to_string()
                .chars()
                .map(|c| if allowed(c) { c } else { '?' })
                .collect();
            if matches!(short.as_str(), "" | "." | "..") {
                String::from("?")
            } else {
                short
            }
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

/// Consecutive blocks of a file that are consecutive on the volume too.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// The run's first block in the file.
    file: u64,
    /// Its first block on the volume (the library's numbering).
    dev: u64,
    /// Its length in blocks.
    count: u64,
}

/// An existing file held open for block I/O ([`Fat::open_blocks`]): where its
/// clusters are, found once, so that [`Fat::read_blocks_at`] and
/// [`Fat::write_blocks_at`] go straight to the device without looking the file up
/// or walking its FAT chain again. It stays valid across calls that do not reallocate
/// files; after one that does ([`Fat::write`], [`Fat::remove`]) the next
/// access finds the file again by its path.
#[derive(Debug, Clone)]
pub(crate) struct FatFile {
    path: String,
    size: u64,
    runs: Vec<Run>,
    /// The [`Fat::generation`] the runs were found in.
    generation: u64,
}

impl FatFile {
    /// The file's size in bytes when it was (last) found.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The path it was opened by.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The volume blocks holding the `len` bytes at `offset` (both whole blocks) as
    /// `(first block, bytes)` pieces in file order, one per run they touch; refused with
    /// [`FsError::OutOfRange`] unless the range lies wholly inside the file.
    fn spans(&self, offset: u64, len: usize) -> Result<Vec<(u64, usize)>, FsError> {
        let len64 = len as u64;
        if offset.checked_add(len64).is_none_or(|end| end > self.size) {
            return Err(FsError::OutOfRange {
                path: self.path.clone(),
                offset,
                len: len64,
                size: self.size,
            });
        }
        let block = BLOCK_SIZE as u64;
        let mut next = offset / block;
        let end = next + len64 / block;
        let mut out = Vec::new();
        let mut i = self
            .runs
            .partition_point(|run| run.file + run.count <= next);
        while next < end {
            // The range lies inside the file, whose blocks the runs cover in order.
            let run = self.runs.get(i).ok_or(BROKEN_CHAIN)?;
            let count = (run.file + run.count).min(end) - next;
            out.push((run.dev + (next - run.file), (count * block) as usize));
            next += count;
            i += 1;
        }
        Ok(out)
    }

    /// The volume block holding block `n` of the file (which may be its last, partial
    /// block: the runs cover whole clusters).
    fn block(&self, n: u64) -> Result<u64, FsError> {
        let i = self.runs.partition_point(|run| run.file + run.count <= n);
        let run = self.runs.get(i).ok_or(BROKEN_CHAIN)?;
        Ok(run.dev + (n - run.file))
    }
}

/// Whether `len` bytes at `offset` are whole blocks at a block boundary.
fn whole_blocks(offset: u64, len: usize) -> bool {
    offset.is_multiple_of(BLOCK_SIZE as u64) && len.is_multiple_of(BLOCK_SIZE)
}

/// A mounted FAT16/FAT32 volume: the first MBR partition of a block device, or the whole
/// device when it has no partition table.
///
/// Every operation opens what it needs and closes it before returning, so nothing stays
/// open between calls and an error leaves no handle behind. Writes reach the device
/// (and its [`BlockDevice::flush`]) before the call returns.
pub(crate) struct Fat<D: BlockDevice> {
    fat: VolumeManager<Adapter<D>, Epoch, MAX_DIRS, MAX_FILES, 1>,
    volume: RawVolume,
    /// Counts the calls that may have moved or freed a file's clusters (see
    /// [`FatFile`]).
    generation: u64,
}

impl<D: BlockDevice> Fat<D> {
    /// Mounts the FAT volume in the first MBR partition of `device`, or the one that is the
    /// whole of `device` (no partition table).
    pub fn mount(mut device: D) -> Result<Self, FsError> {
        let geometry = crate::check::volume(&mut device)?;
        let fat = VolumeManager::new_with_limits(Adapter::new(device, geometry), Epoch, 0);
        fat.device(|adapter| adapter.budget.set(adapter.budget()));
        let volume = fat
            .open_raw_volume(VolumeIdx(0))
            .map_err(|err| from_fat(err, "/"))?;
        Ok(Self {
            fat,
            volume,
            generation: 0,
        })
    }

    /// The mounted volume's FAT type and size.
    pub fn volume(&self) -> Volume {
        let g = self.fat.device(|adapter| adapter.geometry);
        Volume {
            kind: if g.fat32 {
                VolumeKind::Fat32
            } else {
                VolumeKind::Fat16
            },
            bytes: (g.end - g.start) * crate::BLOCK_SIZE as u64,
            start: (g.start - g.shift) * crate::BLOCK_SIZE as u64,
            // A volume not shifted behind a made-up MBR is the first MBR partition's.
            partition: (g.shift == 0).then_some(1),
        }
    }

    /// Unmounts the volume and hands the device back.
    pub fn unmount(self) -> Result<D, FsError> {
        self.fat
            .close_volume(self.volume)
            .map_err(|err| from_fat(err, "/"))?;
        let (adapter, _) = self.fat.free();
        let mut device = adapter.dev.into_inner();
        device.flush().map_err(FsError::Device)?;
        Ok(device)
    }

    /// The entries of the directory at `path`, in on-disk order.
    pub fn list(&mut self, path: &str) -> Result<Vec<Metadata>, FsError> {
        let parts = parse(path)?;
        self.in_dir(path, &parts, |fat, dir| {
            let mut out = Vec::new();
            let mut seen = 0;
            let mut storage = [0u8; LFN_BYTES];
            let mut lfn = LfnBuffer::new(&mut storage);
            listing(fat, true);
            let listed = fat.iterate_dir_lfn(dir, &mut lfn, |entry, long| {
                seen += 1;
                if seen > MAX_DIR_ENTRIES {
                    return ControlFlow::Break(());
                }
                if visible(entry) {
                    out.push(Found::new(entry, long).meta);
                }
                ControlFlow::Continue(())
            });
            listing(fat, false);
            listed.map_err(|err| from_fat(err, path))?;
            if seen > MAX_DIR_ENTRIES {
                return Err(DIR_LOOP);
            }
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

    /// Reads the file at `path`, at most `limit` bytes, into what `make` gives for its size:
    /// its whole blocks in one device request per run of consecutive blocks (a guest
    /// kernel of 30 MiB is a few requests, not 60,000), its last partial block through a
    /// block buffer.
    pub(crate) fn read_with<B: AsMut<[u8]>>(
        &mut self,
        path: &str,
        limit: u64,
        make: impl FnOnce(usize) -> B,
    ) -> Result<B, FsError> {
        let meta = self.stat(path)?;
        if meta.kind == FileKind::Directory {
            return Err(FsError::IsADirectory {
                path: String::from(path),
            });
        }
        if meta.size > limit {
            return Err(FsError::TooLarge {
                path: String::from(path),
                size: meta.size,
                limit,
            });
        }
        let mut file = self.open_blocks(path)?;
        // At most `limit`, which came from a usize or bounds an allocation.
        let mut out = make(file.size as usize);
        let data = out.as_mut();
        let whole = data.len() - data.len() % BLOCK_SIZE;
        let (body, tail) = data.split_at_mut(whole);
        self.read_blocks_at(&mut file, 0, body)?;
        if !tail.is_empty() {
            let dev = file.block(whole as u64 / BLOCK_SIZE as u64)?;
            let mut block = [0u8; BLOCK_SIZE];
            self.fat
                .device(|adapter| adapter.read_span(dev, &mut block))
                .map_err(from_fault)?;
            tail.copy_from_slice(&block[..tail.len()]);
        }
        Ok(out)
    }

    /// Fills `buf` from the bytes at `offset` of the file at `path` (e.g. a disk image
    /// behind a VM's virtio-blk). Refused with [`FsError::OutOfRange`], before anything is
    /// read, unless `offset..offset + buf.len()` lies wholly inside the file.
    pub fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> Result<(), FsError> {
        self.at(path, offset, buf.len(), Mode::ReadOnly, |fat, file| {
            let mut filled = 0;
            while filled < buf.len() {
                match fat.read(file, &mut buf[filled..]) {
                    Ok(0) => {
                        return Err(FsError::Corrupt {
                            what: "a file's clusters end before its size",
                        })
                    }
                    Ok(n) => filled += n,
                    Err(err) => return Err(from_fat(err, path)),
                }
            }
            Ok(())
        })
    }

    /// Writes `data` over the bytes at `offset` of the file at `path`; the file never
    /// grows: refused with [`FsError::OutOfRange`], before anything is written, unless
    /// `offset..offset + data.len()` lies wholly inside it. The bytes reach the device (and
    /// its [`BlockDevice::flush`]) before the call returns.
    pub fn write_at(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), FsError> {
        self.at(
            path,
            offset,
            data.len(),
            Mode::ReadWriteAppend,
            |fat, file| fat.write(file, data).map_err(|err| from_fat(err, path)),
        )?;
        self.flush()
    }

    /// Opens the existing file at `path` for block I/O: finds it and walks its cluster
    /// chain once (see [`FatFile`]).
    pub fn open_blocks(&mut self, path: &str) -> Result<FatFile, FsError> {
        let parts = parse(path)?;
        let (name, parents) = parts.split_last().ok_or_else(|| FsError::IsADirectory {
            path: String::from(path),
        })?;
        let (entry_block, entry_offset) = self.in_dir(path, parents, |fat, dir| {
            let found = existing_file(fat, dir, name, path)?;
            // `find` checked that this is the entry found and that its cluster is valid.
            let entry = fat
                .find_directory_entry(dir, found.short)
                .map_err(|err| from_fat(err, path))?;
            Ok((u64::from(entry.entry_block.0), entry.entry_offset as usize))
        })?;
        let fat32 = self.fat.device(|adapter| adapter.geometry.fat32);
        let mut block = [0u8; BLOCK_SIZE];
        self.fat
            .device(|adapter| adapter.read_span(entry_block, &mut block))
            .map_err(from_fault)?;
        // A 32-byte entry at a multiple of 32 inside the block.
        let entry = block
            .get(entry_offset..entry_offset + 32)
            .ok_or(FsError::Internal {
                what: "a directory entry's offset is outside its block",
            })?;
        let word = |at: usize| u64::from(u16::from_le_bytes([entry[at], entry[at + 1]]));
        let high = if fat32 { word(20) << 16 } else { 0 };
        let first = high | word(26);
        let size = word(28) | word(30) << 16;
        let g = self.fat.device(|adapter| adapter.geometry);
        let clusters = size.div_ceil(g.per_cluster * BLOCK_SIZE as u64);
        let runs = if clusters == 0 {
            Vec::new()
        } else if clusters > g.clusters {
            return Err(BROKEN_CHAIN);
        } else {
            self.fat.device(|adapter| adapter.chain(first, clusters))?
        };
        Ok(FatFile {
            path: String::from(path),
            size,
            runs,
            generation: self.generation,
        })
    }

    /// Fills `buf` from the bytes at `offset` of `file`, like [`Self::read_at`]; whole
    /// blocks at a block offset go to the device in one request per run of consecutive
    /// blocks.
    pub fn read_blocks_at(
        &mut self,
        file: &mut FatFile,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), FsError> {
        self.refresh(file)?;
        if !whole_blocks(offset, buf.len()) {
            return self.read_at(&file.path, offset, buf);
        }
        let mut at = 0;
        for (dev, len) in file.spans(offset, buf.len())? {
            let part = &mut buf[at..at + len];
            self.fat
                .device(|adapter| adapter.read_span(dev, part))
                .map_err(from_fault)?;
            at += len;
        }
        Ok(())
    }

    /// Writes `data` over the bytes at `offset` of `file`, like [`Self::write_at`], but
    /// whole blocks at a block offset go to the device in one request per run of
    /// consecutive blocks and are not flushed: [`Self::flush`] makes them durable.
    pub fn write_blocks_at(
        &mut self,
        file: &mut FatFile,
        offset: u64,
        data: &[u8],
    ) -> Result<(), FsError> {
        self.refresh(file)?;
        if !whole_blocks(offset, data.len()) {
            return self.write_at(&file.path, offset, data);
        }
        let mut at = 0;
        for (dev, len) in file.spans(offset, data.len())? {
            let part = &data[at..at + len];
            self.fat
                .device(|adapter| adapter.write_span(dev, part))
                .map_err(from_fault)?;
            at += len;
        }
        Ok(())
    }

    /// Finds `file` again if a call since it was found may have moved its clusters.
    fn refresh(&mut self, file: &mut FatFile) -> Result<(), FsError> {
        if file.generation != self.generation {
            *file = self.open_blocks(&file.path.clone())?;
        }
        Ok(())
    }

    /// Opens the existing file at `path` in `mode`, checks `offset..offset + len` lies
    /// inside it, seeks to `offset` and runs `op`, closing the file whatever happens.
    fn at(
        &mut self,
        path: &str,
        offset: u64,
        len: usize,
        mode: Mode,
        op: impl FnOnce(&FatVolume<D>, RawFile) -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        let parts = parse(path)?;
        let (name, parents) = parts.split_last().ok_or_else(|| FsError::IsADirectory {
            path: String::from(path),
        })?;
        self.in_dir(path, parents, |fat, dir| {
            let found = existing_file(fat, dir, name, path)?;
            let size = found.meta.size;
            let len = len as u64;
            if offset.checked_add(len).is_none_or(|end| end > size) {
                return Err(FsError::OutOfRange {
                    path: String::from(path),
                    offset,
                    len,
                    size,
                });
            }
            let file = fat
                .open_file_in_dir(dir, found.short, mode)
                .map_err(|err| from_fat(err, path))?;
            // offset <= size, and a FAT file's size fits in a u32.
            let result = fat
                .file_seek_from_start(file, offset as u32)
                .map_err(|err| from_fat(err, path))
                .and_then(|()| op(fat, file));
            let closed = fat.close_file(file).map_err(|err| from_fat(err, path));
            result.and(closed)
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
        let result = self.in_dir(path, parents, |fat, dir| {
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
        });
        // A rewritten file's clusters may be others than before, even on a failure.
        self.generation += 1;
        result?;
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
        let result = self.in_dir(path, parents, |fat, dir| {
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
        });
        // A removed file's clusters are free for others, even after a failure half-way.
        self.generation += 1;
        result?;
        self.flush()
    }

    /// Makes every completed write durable (the device's [`BlockDevice::flush`]).
    pub fn flush(&mut self) -> Result<(), FsError> {
        self.fat
            .device(|adapter| adapter.dev.get_mut().flush())
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
        fat.device(|adapter| adapter.budget.set(adapter.budget()));
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

/// Tells the adapter whether the library is listing a directory (see
/// [`sanitize_long_names`]).
fn listing<D: BlockDevice>(fat: &FatVolume<D>, on: bool) {
    fat.device(|adapter| adapter.listing.set(on));
}

/// `path`'s components, or why it is refused.
pub(crate) fn parse(path: &str) -> Result<Vec<&str>, FsError> {
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
    let mut seen = 0;
    listing(fat, true);
    let listed = fat.iterate_dir_lfn(dir, &mut lfn, |entry, long| {
        seen += 1;
        if seen > MAX_DIR_ENTRIES {
            return ControlFlow::Break(());
        }
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
    });
    listing(fat, false);
    listed.map_err(|err| from_fat(err, path))?;
    if seen > MAX_DIR_ENTRIES {
        return Err(DIR_LOOP);
    }
    let Some(found) = found else {
        return Ok(None);
    };
    // The entry the library opens by this 8.3 name (the first one carrying it) must be
    // the one found, and its first cluster must be on the volume: the library follows it
    // unchecked.
    let entry = fat
        .find_directory_entry(dir, found.short)
        .map_err(|err| from_fat(err, path))?;
    if entry.attributes.is_directory() != (found.meta.kind == FileKind::Directory) {
        return Err(FsError::Corrupt {
            what: "two directory entries share an 8.3 name",
        });
    }
    let clusters = fat.device(|adapter| adapter.geometry.clusters);
    // Below 2^32: the volume has fewer than 2^32 blocks.
    let end = ClusterId::EMPTY + (clusters + 2) as u32;
    let on_volume = entry.cluster >= ClusterId::EMPTY + 2 && entry.cluster < end;
    let empty_file = !entry.attributes.is_directory() && entry.size == 0;
    let no_cluster = empty_file && entry.cluster == ClusterId::EMPTY;
    if !(on_volume || no_cluster) {
        return Err(FsError::Corrupt {
            what: "a directory entry's first cluster is outside the volume",
        });
    }
    Ok(Some(found))
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
