//! The ext2/3/4 path of `axfs` (the probe, the `ext4-view` crate behind it, the read-ahead
//! reader) on damaged volumes: a good ext4 image (made once with `mkfs.ext4 -d`: nested
//! directories, a file over many blocks, a symbolic link, an empty file), without metadata
//! checksums (so that patches reach past them), with them and a journal, or with a journal
//! and no checksums (so that a patched superblock can ask for its replay), with the input's
//! patches laid over its first 128 KiB (superblock, group descriptors, bitmaps, inode table,
//! directories, extents) and sometimes one block failing to read or the image truncated, is
//! mounted, walked (every directory listed, every entry stat'ed, every file read) and driven
//! by the input's operations. Nothing may panic or hang, no error may be the layer's own
//! `Internal` one, every write is refused as `ReadOnlyVolume` and none reaches the device.
//!
//! Input: a mode byte (bits 0-1: the base image, [`bases`]; bit 2: the block the next byte
//! names fails to read; bit 3: the image is cut after the block the next byte names, in
//! 4 KiB), then patches of `[sector, offset, length, bytes...]` (sector of the
//! first 128 KiB, offset within it); a patch whose length byte is 255 ends them, and the
//! rest is operations of four bytes `[op, x, y, z]` (see [`Op`]).

use std::process::Command;
use std::sync::OnceLock;

use axfs::{BlockDevice, BlockError, FileKind, FileSystem, FsError, VolumeKind, BLOCK_SIZE};

/// The read limit: more than any file of the base images.
const LIMIT: u64 = 1 << 20;
/// The sectors patches may land on: the first 128 KiB, where all the metadata is.
const PATCHABLE: usize = 256;
/// The files of the base images: path and content.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("vms/linux.toml", b"[vm]\nname = \"linux\"\n".to_vec()),
        (
            "images/linux-6.6/Image",
            (0..70_000u32).map(|i| (i * 7 + i / 1024) as u8).collect(),
        ),
        ("README.TXT", b"hello\n".to_vec()),
        ("empty", Vec::new()),
    ]
}

/// An ext4 image of `mib` MiB with 1 KiB blocks holding [`files`] and a link, made by
/// `mkfs.ext4` with `features` (`-O`).
fn make(mib: u32, features: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("axfs-ext4-fuzz-{}-{mib}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    for (path, data) in files() {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    std::os::unix::fs::symlink("vms/linux.toml", root.join("link")).unwrap();
    let image = dir.join("disk.img");
    let mkfs = ["/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("mkfs.ext4");
    let status = Command::new(mkfs)
        .args(["-q", "-F", "-t", "ext4", "-b", "1024", "-O", features, "-d"])
        .arg(&root)
        .arg(&image)
        .arg(format!("{mib}M"))
        .status()
        .expect("mkfs.ext4 (e2fsprogs: cargo xtask setup installs it)");
    assert!(status.success());
    let bytes = std::fs::read(&image).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    bytes
}

/// The base images: without checksums or journal, with both, with a journal only (and
/// the first again, for the fourth value of two bits).
fn bases() -> &'static [Vec<u8>; 4] {
    static BASES: OnceLock<[Vec<u8>; 4]> = OnceLock::new();
    BASES.get_or_init(|| {
        let plain = make(1, "^metadata_csum,^has_journal");
        [
            plain.clone(),
            make(2, "metadata_csum,has_journal"),
            make(3, "^metadata_csum,has_journal"),
            plain,
        ]
    })
}

/// The base image with patched bytes, a failing block, maybe cut short; writes panic.
struct Disk {
    bytes: Vec<u8>,
    /// Reads touching this block fail (u64::MAX: none).
    failing: u64,
}

impl BlockDevice for Disk {
    fn block_count(&self) -> u64 {
        (self.bytes.len() / BLOCK_SIZE) as u64
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        assert_eq!(buf.len() % BLOCK_SIZE, 0, "a partial block read");
        let count = (buf.len() / BLOCK_SIZE) as u64;
        let blocks = self.block_count();
        if first.checked_add(count).is_none_or(|end| end > blocks) {
            return Err(BlockError::OutOfRange {
                first,
                count,
                blocks,
            });
        }
        if (first..first + count).contains(&self.failing) {
            return Err(BlockError::Io { block: first });
        }
        let at = first as usize * BLOCK_SIZE;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
        Ok(())
    }

    fn write_blocks(&mut self, first: u64, _: &[u8]) -> Result<(), BlockError> {
        panic!("a write reached a read-only volume's device at block {first}");
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        panic!("a flush reached a read-only volume's device");
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

/// Lists every directory, stats every entry and reads every file (bounded: a damaged
/// volume may loop), checking what each call says against the others; on the undamaged
/// image, against what was put there.
fn walk(fs: &mut FileSystem<Disk>, pristine: bool) {
    let mut todo = vec![String::from("/")];
    let mut visited = 0;
    while let Some(dir) = todo.pop() {
        visited += 1;
        if visited > 32 {
            return;
        }
        let Some(entries) = ok(fs.list(&dir)) else {
            assert!(!pristine, "{dir}");
            continue;
        };
        for entry in entries.iter().take(64) {
            for c in entry.name.chars() {
                assert!(!c.is_control() && c != '/', "{:?}", entry.name);
            }
            assert!(!matches!(entry.name.as_str(), "" | "." | ".."));
            assert!(entry.read_only);
            let path = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
            let unique = entries.iter().filter(|e| e.name == entry.name).count() == 1;
            if let Some(meta) = ok(fs.stat(&path)) {
                if unique {
                    assert_eq!(meta.kind, entry.kind, "{path}");
                }
            }
            match entry.kind {
                FileKind::Directory => todo.push(path),
                FileKind::File => read_all_ways(fs, &path, unique.then_some(entry.size)),
            }
        }
    }
    if pristine {
        for (path, data) in files() {
            let path = format!("/{path}");
            assert_eq!(fs.read(&path, LIMIT).unwrap(), data, "{path}");
        }
        assert_eq!(fs.read("/link", LIMIT).unwrap(), files()[0].1);
    }
}

/// Reads `path` whole, at an offset and held open: when the calls succeed they agree.
fn read_all_ways(fs: &mut FileSystem<Disk>, path: &str, listed: Option<u64>) {
    let Some(data) = ok(fs.read(path, LIMIT)) else {
        return;
    };
    if let Some(size) = listed {
        assert_eq!(data.len() as u64, size, "{path}");
    }
    let mut again = vec![0u8; data.len()];
    if ok(fs.read_at(path, 0, &mut again)).is_some() {
        assert_eq!(again, data, "{path}");
    }
    if let Some(mut file) = ok(fs.open_blocks(path)) {
        let len = data.len().min(4096) / BLOCK_SIZE * BLOCK_SIZE;
        let from = data.len() / 2 / BLOCK_SIZE * BLOCK_SIZE;
        let len = len.min(data.len() - from);
        let mut part = vec![0u8; len];
        if ok(fs.read_blocks_at(&mut file, from as u64, &mut part)).is_some() {
            assert_eq!(part, data[from..from + len], "{path}");
        }
    }
}

/// A patch length byte that ends the patches.
const END_PATCHES: u8 = 255;
/// The most operations an input runs.
const MAX_OPS: usize = 64;
/// The paths the operations name.
const PATHS: [&str; 8] = [
    "/images/linux-6.6/Image",
    "/vms/linux.toml",
    "/README.TXT",
    "/link",
    "/empty",
    "/images",
    "/missing",
    "/lost+found",
];

/// One operation `[op, x, y, z]`: `op & 7` picks the path of [`PATHS`], `op >> 3 & 3` what
/// is done (0 `read_at`, 1 `open_blocks` then `read_blocks_at`, 2 a write (which one: `z`),
/// 3 `list` and `stat`); `x`, `y` make the offset (`x << 8 | y`, times 64 when `x`'s top
/// bit is set) and `z` the length (`z * 37`).
type Op = [u8; 4];

fn run_op(fs: &mut FileSystem<Disk>, [op, x, y, z]: Op) {
    let path = PATHS[usize::from(op & 7)];
    let mut offset = u64::from(u16::from_le_bytes([y, x & 0x7f]));
    if x & 0x80 != 0 {
        offset *= 64;
    }
    let len = usize::from(z) * 37;
    match op >> 3 & 3 {
        0 => {
            let mut buf = vec![0u8; len];
            let _ = ok(fs.read_at(path, offset, &mut buf));
        }
        1 => {
            if let Some(mut file) = ok(fs.open_blocks(path)) {
                let mut buf = vec![0u8; len / BLOCK_SIZE * BLOCK_SIZE];
                let at = offset / BLOCK_SIZE as u64 * BLOCK_SIZE as u64;
                let _ = ok(fs.read_blocks_at(&mut file, at, &mut buf));
                let refused = fs.write_blocks_at(&mut file, at, &buf);
                assert_read_only(refused, path);
            }
        }
        2 => {
            let refused = match z % 5 {
                0 => fs.write(path, b"x"),
                1 => fs.mkdir(path),
                2 => fs.remove(path),
                3 => fs.write_at(path, offset, b"x"),
                _ => fs.check_writable(path),
            };
            assert_read_only(refused, path);
        }
        _ => {
            let _ = ok(fs.list(path));
            let _ = ok(fs.stat(path));
        }
    }
}

/// A write on the read-only volume: refused as such, naming the path.
fn assert_read_only(result: Result<(), FsError>, path: &str) {
    match result {
        Err(FsError::ReadOnlyVolume { path: p, kind }) => {
            assert_eq!(p, path);
            assert!(kind.read_only());
        }
        other => panic!("{path}: a write on ext4 gave {other:?}"),
    }
}

pub fn run(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mut bytes = bases()[usize::from(mode & 3)].clone();
    let mut failing = u64::MAX;
    if mode & 4 != 0 {
        if let Some((&b, r)) = rest.split_first() {
            failing = u64::from(b);
            rest = r;
        }
    }
    if mode & 8 != 0 {
        if let Some((&b, r)) = rest.split_first() {
            bytes.truncate((usize::from(b) * 4096).min(bytes.len()));
            rest = r;
        }
    }
    let mut patched = false;
    while let [sector, off, len, tail @ ..] = rest {
        if *len == END_PATCHES {
            rest = tail;
            break;
        }
        let n = usize::from(*len).min(tail.len());
        let at = usize::from(*sector) % PATCHABLE * BLOCK_SIZE + usize::from(*off);
        let end = (at + n).min(bytes.len());
        if at < end {
            bytes[at..end].copy_from_slice(&tail[..end - at]);
            patched = true;
        }
        rest = &tail[n..];
    }
    let pristine = !patched && failing == u64::MAX && mode & 8 == 0;
    let fs = FileSystem::mount(Disk { bytes, failing });
    let mut fs = match fs {
        Ok(fs) => fs,
        Err(err) => {
            assert!(!pristine, "{err}");
            return check(&err);
        }
    };
    // Without the magic the probe passes the disk to FAT, which finds no FAT volume.
    let ext = fs.volume().kind.read_only();
    if pristine {
        assert_eq!(fs.volume().kind, VolumeKind::Ext4);
    }
    walk(&mut fs, pristine);
    if ext {
        for op in rest.chunks_exact(4).take(MAX_OPS) {
            run_op(&mut fs, op.try_into().unwrap());
        }
        walk(&mut fs, pristine);
        // Unmount hands the device back: it was never written.
        assert!(ok(fs.unmount()).is_some());
    }
}
