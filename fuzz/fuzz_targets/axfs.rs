//! The FAT layer (`axfs`) on damaged volumes: a good FAT32 image (made once with the
//! `fatfs` crate: long names, nested directories, a file over many clusters), with or
//! without its MBR, with the input's patches laid over its MBR, boot sector, FSInfo,
//! FATs, directories and data, is
//! mounted, walked (every directory listed, every file stat'ed and read), driven by the
//! input's operations on files held open (`open_blocks`, `read_blocks_at`,
//! `write_blocks_at`) interleaved with path calls that may move them (`write`, `remove`),
//! written to (overwrite, create, mkdir, remove), every held file touched again (now
//! stale) and mounted again. Nothing may panic or hang, and no error may be the layer's
//! own `Internal` one: a damaged disk is `Corrupt`, `Device` or an ordinary user error.
//!
//! Input: a mode byte (below), then patches of `[selector, offset lo, offset hi, length,
//! bytes...]`; a patch whose length byte is 255 ends them, and the rest is operations of
//! four bytes `[op, x, y, z]` (see [`Op`]).

use std::collections::HashMap;
use std::io::{Cursor, Write};
use std::sync::OnceLock;

use axfs::{BlockDevice, BlockError, FileBlocks, FileKind, FileSystem, FsError, BLOCK_SIZE};

/// The partition's first block.
const START: u64 = 2048;
/// The image's size: the smallest FAT32 volume at one sector a cluster, plus the MBR gap.
const MIB: usize = 34;
/// The read limit: more than any file of the base image.
const LIMIT: u64 = 1 << 20;

/// The base image, and the blocks worth damaging (metadata and the first data clusters).
fn base() -> &'static (Vec<u8>, Vec<u64>) {
    static BASE: OnceLock<(Vec<u8>, Vec<u64>)> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut disk = vec![0u8; MIB << 20];
        let sectors = (disk.len() / BLOCK_SIZE) as u32 - START as u32;
        disk[446 + 4] = 0x0c;
        disk[446 + 8..446 + 12].copy_from_slice(&(START as u32).to_le_bytes());
        disk[446 + 12..446 + 16].copy_from_slice(&sectors.to_le_bytes());
        disk[510..512].copy_from_slice(&[0x55, 0xaa]);
        let part = &mut disk[START as usize * BLOCK_SIZE..];
        fatfs::format_volume(
            Cursor::new(&mut *part),
            fatfs::FormatVolumeOptions::new()
                .fat_type(fatfs::FatType::Fat32)
                .bytes_per_cluster(512),
        )
        .expect("format");
        {
            let fs = fatfs::FileSystem::new(Cursor::new(&mut *part), fatfs::FsOptions::new())
                .expect("mount");
            let root = fs.root_dir();
            root.create_dir("vms").unwrap();
            root.create_dir("images").unwrap();
            root.create_dir("images/linux-6.6").unwrap();
            let files: [(&str, Vec<u8>); 4] = [
                (
                    "vms/linux-aarch64.toml",
                    b"[vm]\nname = \"linux\"\n".to_vec(),
                ),
                ("vms/A.TOM", b"x = 1\n".to_vec()),
                (
                    "images/linux-6.6/Image",
                    (0..6000u32).map(|i| i as u8).collect(),
                ),
                ("README.TXT", b"hello\n".to_vec()),
            ];
            for (path, data) in files {
                root.create_file(path).unwrap().write_all(&data).unwrap();
            }
        }
        let boot = &disk[START as usize * BLOCK_SIZE..];
        let reserved = u64::from(u16::from_le_bytes([boot[14], boot[15]]));
        let fat_size = u64::from(u32::from_le_bytes([boot[36], boot[37], boot[38], boot[39]]));
        let fat = START + reserved;
        let data = fat + 2 * fat_size;
        let mut blocks = vec![0, START, START + 1, START + 6];
        blocks.extend([fat, fat + 1, fat + fat_size, fat + fat_size + 1]);
        blocks.extend(data..data + 40);
        (disk, blocks)
    })
}

/// The base image with patched blocks over it; writes land in the patches.
struct Overlay {
    base: &'static [u8],
    blocks: u64,
    patches: HashMap<u64, [u8; BLOCK_SIZE]>,
    /// Reads of this block fail (u64::MAX: none).
    failing: u64,
}

impl Overlay {
    fn block(&self, idx: u64) -> [u8; BLOCK_SIZE] {
        match self.patches.get(&idx) {
            Some(block) => *block,
            None => {
                let at = idx as usize * BLOCK_SIZE;
                self.base[at..at + BLOCK_SIZE].try_into().unwrap()
            }
        }
    }
}

impl BlockDevice for Overlay {
    fn block_count(&self) -> u64 {
        self.blocks
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let count = (buf.len() / BLOCK_SIZE) as u64;
        assert_eq!(buf.len() % BLOCK_SIZE, 0, "a partial block read");
        if first.checked_add(count).is_none_or(|end| end > self.blocks) {
            return Err(BlockError::OutOfRange {
                first,
                count,
                blocks: self.blocks,
            });
        }
        for (i, chunk) in buf.chunks_exact_mut(BLOCK_SIZE).enumerate() {
            let idx = first + i as u64;
            if idx == self.failing {
                return Err(BlockError::Io { block: idx });
            }
            chunk.copy_from_slice(&self.block(idx));
        }
        Ok(())
    }

    fn write_blocks(&mut self, first: u64, buf: &[u8]) -> Result<(), BlockError> {
        let count = (buf.len() / BLOCK_SIZE) as u64;
        assert_eq!(buf.len() % BLOCK_SIZE, 0, "a partial block write");
        if first.checked_add(count).is_none_or(|end| end > self.blocks) {
            return Err(BlockError::OutOfRange {
                first,
                count,
                blocks: self.blocks,
            });
        }
        for (i, chunk) in buf.chunks_exact(BLOCK_SIZE).enumerate() {
            self.patches
                .insert(first + i as u64, chunk.try_into().unwrap());
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

/// An error is fine unless it is the layer's own bookkeeping failing.
fn check(err: &FsError) {
    assert!(!matches!(err, FsError::Internal { .. }), "{err:?}");
    assert!(!err.to_string().is_empty());
}

fn ok<T>(result: Result<T, FsError>) -> Option<T> {
    result.map_err(|err| check(&err)).ok()
}

/// Lists every directory and reads every file (bounded: a damaged volume may loop).
fn walk(fs: &mut FileSystem<Overlay>) {
    let mut todo = vec![String::from("/")];
    let mut visited = 0;
    while let Some(dir) = todo.pop() {
        visited += 1;
        if visited > 64 {
            return;
        }
        let Some(entries) = ok(fs.list(&dir)) else {
            continue;
        };
        for entry in entries.iter().take(64) {
            for c in entry.name.chars() {
                assert!(!c.is_control() && c != '/', "{:?}", entry.name);
            }
            assert!(!matches!(entry.name.as_str(), "" | "." | ".."));
            let path = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
            // A name only this entry has (a damaged directory may repeat one) is found
            // again as what the listing said.
            let unique = entries
                .iter()
                .filter(|e| e.name.eq_ignore_ascii_case(&entry.name))
                .count()
                == 1;
            if let Some(meta) = ok(fs.stat(&path)) {
                if unique {
                    assert_eq!(meta.kind, entry.kind, "{path}");
                }
            }
            match entry.kind {
                FileKind::Directory => todo.push(path),
                FileKind::File => {
                    if let Some(data) = ok(fs.read(&path, LIMIT)) {
                        if unique {
                            assert_eq!(data.len() as u64, entry.size, "{path}");
                        }
                    }
                }
            }
        }
    }
}

/// A patch length byte that ends the patches (it was an empty patch).
const END_PATCHES: u8 = 255;
/// The most operations an input runs.
const MAX_OPS: usize = 64;
/// The files the operations name: the base image's (one over many clusters), new ones,
/// a directory and a missing file.
const PATHS: [&str; 8] = [
    "/images/linux-6.6/Image",
    "/vms/linux-aarch64.toml",
    "/README.TXT",
    "/vms/A.TOM",
    "/NEW.TXT",
    "/images/K.BIN",
    "/images",
    "/missing.bin",
];

/// One operation `[op, x, y, z]`: `op & 7` picks the file of [`PATHS`], `op >> 3 & 7` what
/// is done (0 `open_blocks`, 1 `read_blocks_at`, 2 `write_blocks_at`, 3 `write` (the whole
/// file, `len` bytes), 4 `remove`, 5 `write_at` then a read of the range held open, 6
/// `flush`, 7 `read` and `read_at` of the whole file); `x` and `y` make the offset and `z`
/// the length ([`offset`], [`length`]).
type Op = [u8; 4];

/// The offset `x`, `y` name in a file of `size` bytes: `x >> 6` is 0 a block (`y`), 1 any
/// byte (`x & 0x3f`, `y`), 2 `y` bytes before the end, 3 `y` bytes before `u64::MAX`.
fn offset(x: u8, y: u8, size: u64) -> u64 {
    let y64 = u64::from(y);
    match x >> 6 {
        0 => y64 * BLOCK_SIZE as u64,
        1 => u64::from(u16::from_le_bytes([y, x & 0x3f])),
        2 => size.saturating_sub(y64),
        _ => u64::MAX - y64,
    }
}

/// The length `z` names: `z >> 6` is 0 whole blocks (up to 63), 1 up to 63 bytes, 2
/// blocks and a few bytes, 3 many blocks (up to 252 KiB).
fn length(z: u8) -> usize {
    let low = usize::from(z & 0x3f);
    match z >> 6 {
        0 => low * BLOCK_SIZE,
        1 => low,
        2 => low * BLOCK_SIZE + low % 7 + 1,
        _ => low * 4096,
    }
}

/// The files held open, by index in [`PATHS`].
struct Held {
    files: [Option<FileBlocks>; PATHS.len()],
    /// The volume is undamaged and every block reads: data written is read back.
    pristine: bool,
}

impl Held {
    /// Runs one operation.
    fn run(&mut self, fs: &mut FileSystem<Overlay>, [op, x, y, z]: Op) {
        let which = usize::from(op & 7);
        let path = PATHS[which];
        let size = match &self.files[which] {
            Some(file) => file.size(),
            None => ok(fs.stat(path)).map_or(0, |meta| meta.size),
        };
        let at = offset(x, y, size);
        let len = length(z);
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ z).collect();
        match op >> 3 & 7 {
            0 => self.files[which] = ok(fs.open_blocks(path)),
            1 => {
                if let Some(file) = &mut self.files[which] {
                    Self::read_held(fs, self.pristine, path, file, at, len);
                }
            }
            2 => {
                if let Some(file) = &mut self.files[which] {
                    if ok(fs.write_blocks_at(file, at, &data)).is_some() {
                        Self::inside(file, at, len);
                        let back = Self::read_held(fs, self.pristine, path, file, at, len);
                        if self.pristine {
                            assert!(back.is_some_and(|back| back == data), "{path} @{at}");
                        }
                    }
                }
            }
            3 => {
                ok(fs.write(path, &data));
            }
            4 => {
                ok(fs.remove(path));
            }
            5 => {
                if ok(fs.write_at(path, at, &data)).is_some() {
                    if let Some(file) = &mut self.files[which] {
                        let back = Self::read_held(fs, self.pristine, path, file, at, len);
                        if self.pristine {
                            assert!(back.is_some_and(|back| back == data), "{path} @{at}");
                        }
                    }
                }
            }
            6 => {
                ok(fs.flush());
            }
            _ => {
                if let Some(whole) = ok(fs.read(path, LIMIT)) {
                    let mut again = vec![0u8; whole.len()];
                    if ok(fs.read_at(path, 0, &mut again)).is_some() {
                        assert!(whole == again, "{path}: read and read_at differ");
                    }
                }
            }
        }
    }

    /// Reads `len` bytes at `at` of `file` held open, and again through its path: the two
    /// agree when both succeed, and a successful read lies inside the file.
    fn read_held(
        fs: &mut FileSystem<Overlay>,
        pristine: bool,
        path: &str,
        file: &mut FileBlocks,
        at: u64,
        len: usize,
    ) -> Option<Vec<u8>> {
        let mut held = vec![0u8; len];
        ok(fs.read_blocks_at(file, at, &mut held))?;
        Self::inside(file, at, len);
        if pristine {
            // Found again after any write or remove: the size is the file's now.
            let meta = ok(fs.stat(path));
            assert_eq!(meta.map(|meta| meta.size), Some(file.size()), "{path}");
        }
        let mut by_path = vec![0u8; len];
        if ok(fs.read_at(path, at, &mut by_path)).is_some() {
            assert!(
                held == by_path,
                "{path} @{at}+{len}: held and path reads differ"
            );
        }
        Some(held)
    }

    /// A call on `file` that succeeded touched only bytes inside it.
    fn inside(file: &FileBlocks, at: u64, len: usize) {
        let end = at.checked_add(len as u64);
        assert!(
            end.is_some_and(|end| end <= file.size()),
            "{} @{at}+{len}",
            file.path()
        );
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let (disk, interesting) = base();
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    // Bit 6: the partition alone, a disk without a partition table (blocks `START` less).
    let offset = if mode & 0x40 != 0 { START } else { 0 };
    let view = &disk[offset as usize * BLOCK_SIZE..];
    let size = (view.len() / BLOCK_SIZE) as u64;
    let mut dev = Overlay {
        base: view,
        blocks: size,
        patches: HashMap::new(),
        failing: u64::MAX,
    };
    if mode & 1 != 0 {
        // A truncated image.
        dev.blocks = u64::from(mode >> 1) * 1024;
    }
    if mode & 0x80 != 0 && !interesting.is_empty() {
        dev.failing =
            interesting[usize::from(mode & 0x3f) % interesting.len()].saturating_sub(offset);
    }
    // Patches: a block (one of the interesting ones, or any after the partition start),
    // an offset in it, and up to 16 bytes.
    let mut ops: &[u8] = &[];
    while let [sel, at_lo, at_hi, len, tail @ ..] = rest {
        if *len == END_PATCHES {
            ops = tail;
            break;
        }
        let block = match usize::from(*sel) {
            i if i < interesting.len() => interesting[i],
            _ => START + u64::from(u16::from_le_bytes([*at_hi, *sel])),
        }
        .saturating_sub(offset);
        let len = usize::from(*len % 17).min(tail.len());
        let at = usize::from(u16::from_le_bytes([*at_lo, *at_hi])) % BLOCK_SIZE;
        let len = len.min(BLOCK_SIZE - at);
        if block < size {
            let mut content = dev.block(block);
            content[at..at + len].copy_from_slice(&tail[..len]);
            dev.patches.insert(block, content);
        }
        rest = &tail[len..];
    }
    // The volume is a good one: what is written is read back.
    let pristine = dev.blocks == size
        && dev.failing == u64::MAX
        && dev.patches.iter().all(|(&idx, block)| {
            let at = idx as usize * BLOCK_SIZE;
            view[at..at + BLOCK_SIZE] == block[..]
        });

    let mut fs = match FileSystem::mount(dev) {
        Ok(fs) => fs,
        Err(err) => return check(&err),
    };
    walk(&mut fs);
    let mut held = Held {
        files: Default::default(),
        pristine,
    };
    for op in ops.chunks_exact(4).take(MAX_OPS) {
        held.run(&mut fs, op.try_into().unwrap());
    }
    ok(fs.write("/vms/linux-aarch64.toml", b"[vm]\n"));
    ok(fs.write("/NEW.TXT", &[7u8; 3000]));
    ok(fs.mkdir("/images/NEWDIR"));
    ok(fs.write("/images/NEWDIR/K.BIN", &[1u8; 700]));
    ok(fs.remove("/vms/A.TOM"));
    ok(fs.remove("/README.TXT"));
    // Every file still held was found before those writes and removes: it is found again.
    for (path, file) in PATHS.iter().zip(&mut held.files) {
        if let Some(file) = file {
            let len = file.size().min(BLOCK_SIZE as u64) as usize;
            Held::read_held(&mut fs, held.pristine, path, file, 0, len);
        }
    }
    walk(&mut fs);
    let Some(dev) = ok(fs.unmount()) else {
        return;
    };
    if let Some(mut fs) = ok(FileSystem::mount(dev)) {
        walk(&mut fs);
    }
}
