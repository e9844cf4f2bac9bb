//! axfs on ext2/3/4 images made by e2fsprogs (`mkfs.ext4 -d`, at test time): reading,
//! every write refused as read-only, device requests per file, and damaged images that must
//! give typed errors, never a panic.

#[path = "common/device.rs"]
mod device;
#[path = "common/volume.rs"]
mod volume;

use std::path::PathBuf;
use std::process::Command;

use axfs::{BlockError, FileKind, FileSystem, FsError, RamDisk, VolumeKind};
use device::Device;
use volume::{mount, names};

const LIMIT: u64 = 64 << 20;

/// `len` bytes that differ from block to block (a misplaced block shows).
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((i * 31) ^ (i >> 9)) as u8)
        .collect()
}

/// `mkfs.ext4`, on `PATH` or where Debian keeps it (`/sbin` is not on a user's `PATH`).
fn mkfs() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/sbin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("mkfs.ext4"))
        .find(|path| path.exists());
    found.expect("mkfs.ext4 not found: install e2fsprogs (cargo xtask setup does)")
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("axfs-ext4-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `disk` after debugfs (beside mkfs) ran each of `commands` on it, writable, in a scratch
/// directory named after `name`.
fn debugfs(name: &str, disk: &[u8], commands: &[&str]) -> Vec<u8> {
    let dir = scratch(&format!("{name}-debugfs"));
    let img = dir.join("disk.img");
    std::fs::write(&img, disk).unwrap();
    for command in commands {
        let status = Command::new(mkfs().with_file_name("debugfs"))
            .args(["-w", "-R", command])
            .arg(&img)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "debugfs {command}");
    }
    let out = std::fs::read(&img).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

/// An image of `mib` MiB made by `mkfs.ext4 -t kind -b block -d` from `files` (paths
/// relative to the root; directories made as needed) and `links` (`(path, target)`).
fn image(
    name: &str,
    kind: &str,
    block: u32,
    mib: u32,
    files: &[(&str, &[u8])],
    links: &[(&str, &str)],
) -> Vec<u8> {
    let dir = scratch(name);
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    for (path, data) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    for (path, target) in links {
        std::os::unix::fs::symlink(target, root.join(path)).unwrap();
    }
    let img = dir.join("disk.img");
    let status = Command::new(mkfs())
        .args(["-q", "-F", "-t", kind, "-b", &block.to_string(), "-d"])
        .arg(&root)
        .arg(&img)
        .arg(format!("{mib}M"))
        .status()
        .unwrap();
    assert!(status.success(), "mkfs.ext4 failed");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    bytes
}

fn err_line<T: std::fmt::Debug>(result: Result<T, FsError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn reads_what_mkfs_wrote() {
    let config = b"[vm]\nname = \"linux\"\n";
    let kernel = pattern(3_000_123);
    let files: &[(&str, &[u8])] = &[
        ("vms/linux.toml", config),
        ("images/linux-6.6/Image.bin", &kernel),
        ("a name longer than eight.and three", b"long"),
        ("empty", b""),
    ];
    let disk = image(
        "reads",
        "ext4",
        4096,
        16,
        files,
        &[("link", "vms/linux.toml")],
    );
    let original = disk.clone();
    let mut fs = mount(disk);
    let volume = fs.volume();
    assert_eq!(volume.kind, VolumeKind::Ext4);
    assert_eq!(volume.bytes, 16 << 20);
    assert_eq!((volume.start, volume.partition), (0, None));
    assert_eq!(
        names(&mut fs, "/"),
        [
            "a name longer than eight.and three",
            "empty",
            "images",
            "link",
            "lost+found",
            "vms"
        ]
    );
    assert_eq!(names(&mut fs, "/images/linux-6.6/.."), ["linux-6.6"]);
    let meta = fs.stat("/images/linux-6.6/Image.bin").unwrap();
    assert_eq!(meta.name, "Image.bin");
    assert_eq!(meta.kind, FileKind::File);
    assert_eq!(meta.size, kernel.len() as u64);
    assert!(meta.read_only);
    assert_eq!(fs.stat("/images").unwrap().kind, FileKind::Directory);
    assert_eq!(fs.stat("/").unwrap().kind, FileKind::Directory);
    // A link lists and reads as what it leads to.
    let link = fs.list("/").unwrap().into_iter().find(|m| m.name == "link");
    assert_eq!(link.unwrap().size, config.len() as u64);
    assert_eq!(fs.read("/link", LIMIT).unwrap(), config);
    assert_eq!(fs.read("/vms/linux.toml", LIMIT).unwrap(), config);
    assert_eq!(fs.read("/empty", LIMIT).unwrap(), b"");
    assert_eq!(
        fs.read("/a name longer than eight.and three", LIMIT)
            .unwrap(),
        b"long"
    );
    let mut buf = vec![0u8; 4 << 20];
    let n = fs
        .read_into("/images/linux-6.6/Image.bin", &mut buf)
        .unwrap();
    assert_eq!(&buf[..n], &kernel[..]);
    // Inside the file at any offset, forwards and back.
    for (offset, len) in [
        (0, 512),
        (4096, 8192),
        (1_000_001, 77),
        (12_288, 4096),
        (2_999_999, 124),
    ] {
        let mut part = vec![0u8; len];
        fs.read_at("/images/linux-6.6/Image.bin", offset as u64, &mut part)
            .unwrap();
        assert_eq!(part, kernel[offset..offset + len], "at {offset}");
    }
    let mut file = fs.open_blocks("/images/linux-6.6/Image.bin").unwrap();
    assert_eq!(file.size(), kernel.len() as u64);
    let mut part = vec![0u8; 65536];
    for offset in [0, 65536, 131_072, 2_000_000 - 2_000_000 % 512, 0] {
        fs.read_blocks_at(&mut file, offset as u64, &mut part)
            .unwrap();
        assert_eq!(part, kernel[offset..offset + 65536]);
    }
    // Names are matched exactly: ext4 tells case apart.
    assert_eq!(
        fs.stat("/VMS"),
        Err(FsError::NotFound {
            path: "/VMS".into()
        })
    );
    // Nothing was written: the device comes back as it was.
    assert!(fs.unmount().unwrap().into_inner() == original);
}

#[test]
fn every_write_is_refused_naming_the_read_only_volume() {
    let disk = image("writes", "ext4", 4096, 8, &[("vms/a.toml", b"x")], &[]);
    let original = disk.clone();
    let mut fs = mount(disk);
    let refused = |path: &str| FsError::ReadOnlyVolume {
        path: path.into(),
        kind: VolumeKind::Ext4,
    };
    assert_eq!(fs.write("/vms/a.toml", b"y"), Err(refused("/vms/a.toml")));
    assert_eq!(fs.write("/new", b"y"), Err(refused("/new")));
    assert_eq!(
        fs.write_at("/vms/a.toml", 0, b"y"),
        Err(refused("/vms/a.toml"))
    );
    assert_eq!(fs.mkdir("/d"), Err(refused("/d")));
    assert_eq!(fs.remove("/vms/a.toml"), Err(refused("/vms/a.toml")));
    assert_eq!(
        fs.check_writable("/vms/a.toml"),
        Err(refused("/vms/a.toml"))
    );
    let mut file = fs.open_blocks("/vms/a.toml").unwrap();
    assert_eq!(
        fs.write_blocks_at(&mut file, 0, &[0; 512]),
        Err(refused("/vms/a.toml"))
    );
    assert_eq!(fs.flush(), Ok(()));
    assert_eq!(
        refused("/vms/a.toml").to_string(),
        "/vms/a.toml: the disk's ext4 volume is read-only (axfs reads ext2/3/4 and never writes it)"
    );
    assert!(fs.unmount().unwrap().into_inner() == original);
}

#[test]
fn user_errors_are_typed_lines() {
    let disk = image("errors", "ext4", 4096, 8, &[("vms/a.toml", b"abc")], &[]);
    let mut fs = mount(disk);
    assert_eq!(
        err_line(fs.read("/vms/missing.toml", LIMIT)),
        "/vms/missing.toml: no such file or directory"
    );
    assert_eq!(err_line(fs.read("/vms", LIMIT)), "/vms: is a directory");
    assert_eq!(
        err_line(fs.list("/vms/a.toml/x")),
        "/vms/a.toml/x: a component is not a directory"
    );
    assert_eq!(
        err_line(fs.read("/vms/a.toml", 2)),
        "/vms/a.toml: 3 bytes is larger than the limit of 2 bytes"
    );
    assert_eq!(
        err_line(fs.read_at("/vms/a.toml", 1, &mut [0; 3])),
        "/vms/a.toml: 3 bytes at offset 1 are not inside the file (3 bytes)"
    );
    assert_eq!(
        fs.read_at("/vms/a.toml", u64::MAX, &mut [0; 1]),
        Err(FsError::OutOfRange {
            path: "/vms/a.toml".into(),
            offset: u64::MAX,
            len: 1,
            size: 3
        })
    );
    assert!(matches!(
        fs.read("vms/a.toml", LIMIT),
        Err(FsError::InvalidPath { .. })
    ));
    assert!(matches!(
        fs.read("/", LIMIT),
        Err(FsError::IsADirectory { .. })
    ));
    assert!(matches!(
        fs.open_blocks("/vms"),
        Err(FsError::IsADirectory { .. })
    ));
}

#[test]
fn ext2_ext3_and_small_blocks_read_the_same() {
    let kernel = pattern(200_003);
    let files: &[(&str, &[u8])] = &[("d/k.bin", &kernel)];
    for (kind, block, expect) in [
        ("ext2", 1024, VolumeKind::Ext2),
        ("ext3", 2048, VolumeKind::Ext3),
        ("ext4", 1024, VolumeKind::Ext4),
    ] {
        let mut fs = mount(image(kind, kind, block, 8, files, &[]));
        assert_eq!(fs.volume().kind, expect, "{kind}");
        assert_eq!(fs.read("/d/k.bin", LIMIT).unwrap(), kernel, "{kind}");
        let mut part = [0u8; 1000];
        fs.read_at("/d/k.bin", 100_001, &mut part).unwrap();
        assert_eq!(part, kernel[100_001..101_001], "{kind}");
    }
}

#[test]
fn an_ext4_partition_in_an_mbr_mounts() {
    let volume = image("part", "ext4", 4096, 8, &[("x", b"in a partition")], &[]);
    let start = 2048usize;
    let mut disk = vec![0u8; start * 512];
    disk.extend_from_slice(&volume);
    let entry = &mut disk[446..462];
    entry[4] = 0x83;
    entry[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&((volume.len() / 512) as u32).to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    let mut fs = mount(disk.clone());
    assert_eq!(fs.read("/x", LIMIT).unwrap(), b"in a partition");
    // Where it is on the disk: what the hypervisor keeps VMs' regions out of.
    assert_eq!(
        (fs.volume().start, fs.volume().partition),
        (start as u64 * 512, Some(1))
    );
    // A Linux partition past the end of the disk, and one without a superblock.
    disk.truncate(disk.len() - 4096);
    let err = err_line(FileSystem::mount(RamDisk::new(disk.clone())).map(|_| ()));
    assert!(
        err.contains("Linux partition (blocks 2048..18432) is not inside the disk"),
        "{err}"
    );
    disk[start * 512 + 1024 + 0x38] = 0;
    disk[462 - 4..462].copy_from_slice(&(((volume.len() - 4096) / 512) as u32).to_le_bytes());
    let err = err_line(FileSystem::mount(RamDisk::new(disk)).map(|_| ()));
    assert!(err.contains("holds no ext2/3/4 superblock"), "{err}");
}

#[test]
fn damaged_superblocks_are_refused_by_name() {
    let good = image("sb", "ext4", 4096, 8, &[("x", b"x")], &[]);
    let sb = 1024;
    let patched = |at: usize, bytes: &[u8]| {
        let mut disk = good.clone();
        disk[sb + at..sb + at + bytes.len()].copy_from_slice(bytes);
        FileSystem::mount(RamDisk::new(disk))
            .map(|_| ())
            .unwrap_err()
    };
    let unusable = |err: FsError| {
        let line = err.to_string();
        assert!(
            line.starts_with("the disk's ext4 volume is unusable: "),
            "{line}"
        );
        line
    };
    assert!(unusable(patched(0x18, &7u32.to_le_bytes())).contains("block size"));
    assert!(unusable(patched(0x4, &u32::MAX.to_le_bytes())).contains("truncated image"));
    assert!(unusable(patched(0x20, &0u32.to_le_bytes())).contains("block groups"));
    // 20480 groups of one 1 KiB block: 1.25 MiB of 64-byte descriptors.
    let mut big = image("sb-big", "ext4", 1024, 20, &[], &[]);
    big[sb + 0x20..sb + 0x24].copy_from_slice(&1u32.to_le_bytes());
    let err = FileSystem::mount(RamDisk::new(big))
        .map(|_| ())
        .unwrap_err();
    assert!(unusable(err).contains("more group descriptors than"));
    // The crate's own checks: the superblock's checksum covers everything else.
    assert!(unusable(patched(0x58, &[0, 0x80])).contains("corrupt filesystem"));
    // A truncated image.
    let mut short = good.clone();
    short.truncate(4 << 20);
    assert!(unusable(
        FileSystem::mount(RamDisk::new(short))
            .map(|_| ())
            .unwrap_err()
    )
    .contains("truncated image"));
    // Without the magic number the disk is not ext: FAT's error.
    assert!(matches!(patched(0x38, &[0, 0]), FsError::Corrupt { .. }));
}

/// Flips bytes all over the metadata of a populated image: every operation returns, with
/// data or a typed error, and none panics (the fuzz target `axfs_ext4` goes further).
#[test]
fn damaged_metadata_gives_errors_not_panics() {
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("d{}/f{i}.bin", i % 3), pattern(5000 * i + 1)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (p.as_str(), &d[..])).collect();
    // 1 KiB blocks put the superblock, descriptors, bitmaps, inode table and directories
    // in the first 300 KiB.
    let good = image("damage", "ext4", 1024, 4, &refs, &[]);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut mounted = 0;
    for _ in 0..300 {
        let mut disk = good.clone();
        for _ in 0..8 {
            let at = 2048 + next() as usize % (300 << 10);
            disk[at] = next() as u8;
        }
        let Ok(mut fs) = FileSystem::mount(RamDisk::new(disk)) else {
            continue;
        };
        mounted += 1;
        for dir in ["/", "/d0", "/d1", "/d2"] {
            let _ = fs.list(dir);
        }
        for (path, _) in &files {
            let path = format!("/{path}");
            let _ = fs.stat(&path);
            let _ = fs.read(&path, LIMIT);
            let _ = fs.read_at(&path, 1, &mut [0; 700]);
        }
    }
    assert!(
        mounted > 100,
        "only {mounted} of 300 damaged images mounted"
    );
}

/// A whole-file read (a guest kernel loaded at VM create) reaches ahead: a few large
/// device requests, not the crate's one per 32 KiB (nor one per block); under an emulator
/// each request is a round trip through the device model.
#[test]
fn a_whole_file_is_read_in_large_requests() {
    let kernel = pattern(8_000_123);
    let disk = image("requests", "ext4", 4096, 24, &[("Image", &kernel)], &[]);
    let dev = Device::new(disk);
    let reads = dev.reads.clone();
    let mut fs = FileSystem::mount(dev).unwrap();
    let before = reads.get();
    assert_eq!(fs.read("/Image", LIMIT).unwrap(), kernel);
    let requests = reads.get() - before;
    // 8 MB in 512 KiB windows is 16, plus the inode, directory and extent blocks.
    assert!(requests <= 24, "{requests} requests");
}

#[test]
fn a_failing_device_gives_the_block() {
    let kernel = pattern(2_000_000);
    let disk = image("failing", "ext4", 4096, 8, &[("Image", &kernel)], &[]);
    let mut dev = Device::new(disk.clone());
    dev.fail_from = 0;
    assert!(matches!(
        FileSystem::mount(dev).map(|_| ()),
        Err(FsError::Device(BlockError::Io { .. }))
    ));
    // Metadata sits in the first 1 MiB of an image this small; the data after it.
    let mut dev = Device::new(disk);
    dev.fail_from = 2048 + 1024;
    let mut fs = FileSystem::mount(dev).unwrap();
    assert!(matches!(
        fs.read("/Image", LIMIT),
        Err(FsError::Device(BlockError::Io { .. }))
    ));
}

/// Links are followed by this layer, each checked before its target is read: a link whose
/// inode claims a 4 GB target (made with debugfs) is refused, not read into memory; loops
/// end; `..` after a link is taken on the directory the link leads to.
#[test]
fn links_are_followed_with_their_size_checked() {
    // More than 59 bytes: kept in a block, not in the inode.
    let long_target = format!("{}d/../x", "./".repeat(30));
    let disk = image(
        "links",
        "ext4",
        4096,
        8,
        &[("d/x", b"in d"), ("x", b"at the root")],
        &[
            ("up", "d/.."),
            ("long", &long_target),
            ("loop1", "loop2"),
            ("loop2", "loop1"),
            ("big", &long_target),
            ("d/abs", "/x"),
        ],
    );
    let mut fs = mount(debugfs("links", &disk, &["sif /big size 4000000000"]));
    assert_eq!(fs.read("/up/x", LIMIT).unwrap(), b"at the root");
    assert_eq!(fs.read("/long", LIMIT).unwrap(), b"at the root");
    assert_eq!(fs.read("/d/abs", LIMIT).unwrap(), b"at the root");
    // A path's own `..` is taken back as written (docs/axfs.md, "Paths"); a link's on the
    // directory it leads to.
    assert_eq!(fs.read("/up/d/abs/../x", LIMIT).unwrap(), b"in d");
    assert_eq!(names(&mut fs, "/up/d"), ["abs", "x"]);
    let err = err_line(fs.read("/loop1", LIMIT));
    assert!(err.contains("more than 40 symbolic links"), "{err}");
    let err = err_line(fs.read("/big", LIMIT));
    assert!(
        err.contains("a symbolic link's target is 4000000000 bytes"),
        "{err}"
    );
    // Listed: a loop and the oversized link as empty files, the others as what they lead to.
    let listed: Vec<(String, u64)> = fs
        .list("/")
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.size))
        .filter(|(n, _)| ["big", "long", "loop1"].contains(&n.as_str()))
        .collect();
    assert_eq!(listed.len(), 3);
    for (name, size) in listed {
        assert_eq!(size, if name == "long" { 11 } else { 0 }, "{name}");
    }
}

/// A block-mapped file (ext2) whose size claims more than its block map addresses (20 GiB
/// at 1 KiB blocks, set with debugfs) is refused by name: the crate's walk of the map would
/// end before the size, and its read there panic. Read at an offset, a file larger than its
/// volume (1 GiB) is refused too: reading up to the offset would take a step per block.
#[test]
fn sizes_beyond_the_block_map_or_the_volume_are_refused() {
    let disk = image(
        "blockmap",
        "ext2",
        1024,
        8,
        &[("f", b"small"), ("g", b"small")],
        &[],
    );
    let mut fs = mount(debugfs(
        "blockmap",
        &disk,
        &["sif /f size 21474836480", "sif /g size 1073741824"],
    ));
    assert_eq!(fs.stat("/f").unwrap().size, 20 << 30);
    let beyond = "/f: the disk's ext4 volume is damaged: the file's size (21474836480 bytes) is more than this volume's block size addresses (17247252480 bytes)";
    assert_eq!(err_line(fs.read("/f", 32 << 30)), beyond);
    assert_eq!(err_line(fs.read_at("/f", 1, &mut [0; 10])), beyond);
    let err = err_line(fs.read_at("/g", (1 << 30) - 10, &mut [0; 10]));
    assert!(
        err.contains("is larger than its volume (8388608 bytes)"),
        "{err}"
    );
    // Whole, it is held to the caller's limit like any file.
    assert!(matches!(
        fs.read("/g", 1 << 20),
        Err(FsError::TooLarge { .. })
    ));
}

#[test]
fn a_file_that_is_not_one_is_refused() {
    // mkfs.ext4 -d copies a FIFO as a FIFO.
    let dir = scratch("fifo");
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let status = Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let img = dir.join("disk.img");
    let status = Command::new(mkfs())
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&img)
        .arg("8M")
        .status()
        .unwrap();
    assert!(status.success());
    let mut fs = mount(std::fs::read(&img).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    let meta = fs.stat("/pipe").unwrap();
    assert_eq!((meta.kind, meta.size), (FileKind::File, 0));
    assert_eq!(
        err_line(fs.read("/pipe", LIMIT)),
        "/pipe: not a regular file (a device node, pipe or socket)"
    );
}
