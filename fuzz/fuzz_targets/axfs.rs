//! The FAT layer (`axfs`) on damaged volumes: a good FAT32 image (made once with the
//! `fatfs` crate: long names, nested directories, a file over many clusters), with or
//! without its MBR, with the input's patches laid over its MBR, boot sector, FSInfo,
//! FATs, directories and data, is
//! mounted, walked (every directory listed, every file stat'ed and read), written to
//! (overwrite, create, mkdir, remove) and mounted again. Nothing may panic or hang, and no
//! error may be the layer's own `Internal` one: a damaged disk is `Corrupt`, `Device` or
//! an ordinary user error.

use std::collections::HashMap;
use std::io::{Cursor, Write};
use std::sync::OnceLock;

use axfs::{BlockDevice, BlockError, FileKind, FileSystem, FsError, BLOCK_SIZE};

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
    while let [sel, at_lo, at_hi, len, tail @ ..] = rest {
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

    let mut fs = match FileSystem::mount(dev) {
        Ok(fs) => fs,
        Err(err) => return check(&err),
    };
    walk(&mut fs);
    ok(fs.write("/vms/linux-aarch64.toml", b"[vm]\n"));
    ok(fs.write("/NEW.TXT", &[7u8; 3000]));
    ok(fs.mkdir("/images/NEWDIR"));
    ok(fs.write("/images/NEWDIR/K.BIN", &[1u8; 700]));
    ok(fs.remove("/vms/A.TOM"));
    ok(fs.remove("/README.TXT"));
    walk(&mut fs);
    let Some(dev) = ok(fs.unmount()) else {
        return;
    };
    if let Some(mut fs) = ok(FileSystem::mount(dev)) {
        walk(&mut fs);
    }
}
