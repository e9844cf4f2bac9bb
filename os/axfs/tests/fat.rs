//! axfs on FAT32 images made by another implementation (`fatfs`): round trips, long
//! names, limits, and damaged volumes and devices that must give typed errors.

mod common;

use axfs::{BlockError, FileKind, FileSystem, FsError, PathError, RamDisk};
use common::device::Device;
use common::volume::{mount, names};
use common::{image, pattern, read_with_fatfs, MIN_MIB, PARTITION_START};

const LIMIT: u64 = 64 << 20;

#[test]
fn reads_what_another_implementation_wrote_including_long_names() {
    let config = b"[vm]\nname = \"linux\"\n";
    let kernel = pattern(300_000);
    let mut fs = mount(image(
        MIN_MIB,
        &["vms", "images", "images/linux-6.6"],
        &[
            ("vms/linux.toml", config),
            ("images/linux-6.6/Image.bin", &kernel),
            ("README.TXT", b"hello"),
        ],
    ));
    assert_eq!(names(&mut fs, "/"), ["README.TXT", "images", "vms"]);
    // The volume is the FAT32 partition: the disk less what comes before the partition.
    let volume = fs.volume();
    assert_eq!(volume.kind, axfs::VolumeKind::Fat32);
    assert_eq!(
        volume.bytes,
        ((MIN_MIB << 20) - PARTITION_START * 512) as u64
    );
    assert_eq!(volume.start, (PARTITION_START * 512) as u64);
    assert_eq!(volume.partition, Some(1));
    assert_eq!(names(&mut fs, "/vms"), ["linux.toml"]);
    assert_eq!(fs.read("/vms/linux.toml", LIMIT).unwrap(), config);
    // FAT names ignore case; `..` and `.` resolve inside the volume.
    assert_eq!(fs.read("/VMS/Linux.TOML", LIMIT).unwrap(), config);
    assert_eq!(
        fs.read("/images/../vms/./linux.toml", LIMIT).unwrap(),
        config
    );
    assert_eq!(
        fs.read("/images/linux-6.6/Image.bin", LIMIT).unwrap(),
        kernel
    );
    // Straight into a caller's buffer (a VM's memory), exactly as large or larger.
    let mut ram = vec![0xaau8; kernel.len() + 10];
    let size = fs
        .read_into("/images/linux-6.6/Image.bin", &mut ram)
        .unwrap();
    assert_eq!(size, kernel.len());
    assert_eq!(&ram[..size], &kernel[..]);
    assert_eq!(&ram[size..], &[0xaa; 10]);
    assert_eq!(
        fs.read_into("/images/linux-6.6/Image.bin", &mut ram[..kernel.len() - 1]),
        Err(FsError::TooLarge {
            path: "/images/linux-6.6/Image.bin".into(),
            size: kernel.len() as u64,
            limit: kernel.len() as u64 - 1,
        })
    );
    let meta = fs.stat("/images/linux-6.6/Image.bin").unwrap();
    assert_eq!(meta.kind, FileKind::File);
    assert_eq!(meta.size, kernel.len() as u64);
    assert_eq!(meta.name, "Image.bin");
    assert_eq!(fs.stat("/images").unwrap().kind, FileKind::Directory);
    assert_eq!(fs.stat("/").unwrap().kind, FileKind::Directory);
}

#[test]
fn writes_read_back_here_and_by_another_implementation() {
    let mut fs = mount(image(MIN_MIB, &[], &[]));
    fs.mkdir("/vms").unwrap();
    fs.mkdir("/vms/old").unwrap();
    // Spans about 2000 clusters of 512 bytes, so the chain crosses FAT sectors.
    let big = pattern(1_000_000);
    fs.write("/vms/kernel.bin", &big).unwrap();
    fs.write("/vms/a.tom", b"first").unwrap();
    assert_eq!(fs.read("/vms/kernel.bin", LIMIT).unwrap(), big);
    // Overwrite: truncated, then the new content.
    fs.write("/vms/a.tom", b"second, longer").unwrap();
    assert_eq!(fs.read("/vms/a.tom", LIMIT).unwrap(), b"second, longer");
    fs.write("/vms/a.tom", b"").unwrap();
    assert_eq!(fs.read("/vms/a.tom", LIMIT).unwrap(), b"");
    fs.write("/vms/a.tom", b"third").unwrap();
    assert_eq!(
        names(&mut fs, "/vms"),
        ["A.TOM", "KERNEL.BIN", "OLD"],
        "new names are 8.3, in capitals"
    );
    let mut disk = fs.unmount().unwrap().into_inner();
    assert_eq!(read_with_fatfs(&mut disk, "vms/kernel.bin"), big);
    assert_eq!(read_with_fatfs(&mut disk, "vms/a.tom"), b"third");
    // And mounted again.
    let mut fs = mount(disk);
    assert_eq!(fs.read("/vms/kernel.bin", LIMIT).unwrap(), big);
}

#[test]
fn overwrites_and_removes_files_with_long_names() {
    let mut fs = mount(image(
        MIN_MIB,
        &["vms"],
        &[("vms/linux-aarch64.toml", b"old")],
    ));
    fs.write("/vms/linux-aarch64.toml", b"new content").unwrap();
    assert_eq!(
        fs.read("/vms/linux-aarch64.toml", LIMIT).unwrap(),
        b"new content"
    );
    fs.remove("/vms/linux-aarch64.toml").unwrap();
    assert_eq!(names(&mut fs, "/vms"), Vec::<String>::new());
    fs.remove("/vms").unwrap();
    assert_eq!(names(&mut fs, "/"), Vec::<String>::new());
    // The long name's slots left behind do not confuse another implementation.
    let mut disk = fs.unmount().unwrap().into_inner();
    fs_is_empty_for_fatfs(&mut disk);
}

fn fs_is_empty_for_fatfs(disk: &mut [u8]) {
    let part = &mut disk[PARTITION_START * 512..];
    let fs = fatfs::FileSystem::new(std::io::Cursor::new(part), fatfs::FsOptions::new()).unwrap();
    assert_eq!(fs.root_dir().iter().count(), 0);
}

#[test]
fn space_is_reused_after_remove() {
    let mut fs = mount(image(MIN_MIB, &[], &[]));
    let chunk = pattern(8 << 20);
    // Far more than the volume holds in total, so without reuse it fills up (one cluster
    // stays allocated per removed file: the library frees none; see docs/axfs.md).
    for round in 0..12 {
        fs.write("/big.bin", &chunk)
            .unwrap_or_else(|err| panic!("round {round}: {err}"));
        fs.remove("/big.bin").unwrap();
    }
}

#[test]
fn a_full_volume_says_so() {
    let mut fs = mount(image(MIN_MIB, &[], &[]));
    let err = fs.write("/huge.bin", &vec![1u8; 40 << 20]).unwrap_err();
    assert_eq!(err, FsError::NoSpace);
    assert_eq!(err.to_string(), "no space left on the disk");
}

#[test]
fn user_errors_are_typed_and_name_the_path() {
    let mut fs = mount(image(MIN_MIB, &["vms"], &[("vms/big.bin", &[0u8; 5000])]));
    let cases: Vec<(Result<(), FsError>, FsError, &str)> = vec![
        (
            fs.read("/vms/missing.toml", LIMIT).map(drop),
            FsError::NotFound {
                path: "/vms/missing.toml".into(),
            },
            "/vms/missing.toml: no such file or directory",
        ),
        (
            fs.read("/vms/big.bin", 4096).map(drop),
            FsError::TooLarge {
                path: "/vms/big.bin".into(),
                size: 5000,
                limit: 4096,
            },
            "/vms/big.bin: 5000 bytes is larger than the limit of 4096 bytes",
        ),
        (
            fs.read("/vms", LIMIT).map(drop),
            FsError::IsADirectory {
                path: "/vms".into(),
            },
            "/vms: is a directory",
        ),
        (
            fs.list("/vms/big.bin/x").map(drop),
            FsError::NotADirectory {
                path: "/vms/big.bin/x".into(),
            },
            "/vms/big.bin/x: a component is not a directory",
        ),
        (
            fs.read("vms/big.bin", LIMIT).map(drop),
            FsError::InvalidPath {
                path: "vms/big.bin".into(),
                reason: PathError::NotAbsolute,
            },
            "vms/big.bin: bad path: paths start with '/' (e.g. /vms/linux.toml)",
        ),
        (
            fs.write("/vms/linux.toml", b"x"),
            FsError::NameNotSupported {
                name: "linux.toml".into(),
            },
            "linux.toml: new names must be 8.3 short names (at most 8 characters, a dot, at most 3)",
        ),
        (
            fs.mkdir("/vms"),
            FsError::AlreadyExists {
                path: "/vms".into(),
            },
            "/vms: already exists",
        ),
        (
            fs.remove("/vms"),
            FsError::DirectoryNotEmpty {
                path: "/vms".into(),
            },
            "/vms: directory not empty",
        ),
        (
            fs.write("/vms", b"x"),
            FsError::IsADirectory {
                path: "/vms".into(),
            },
            "/vms: is a directory",
        ),
        (
            fs.remove("/nothing"),
            FsError::NotFound {
                path: "/nothing".into(),
            },
            "/nothing: no such file or directory",
        ),
    ];
    for (got, want, line) in cases {
        assert_eq!(got, Err(want.clone()));
        assert_eq!(want.to_string(), line);
        // `path()` is what the line begins with.
        let path = want.path().expect("these name a path");
        assert!(line.starts_with(&std::format!("{path}: ")), "{line}");
    }
    assert_eq!(FsError::NoSpace.path(), None);
    // Nothing was left open: everything still works.
    assert_eq!(fs.read("/vms/big.bin", LIMIT).unwrap().len(), 5000);
}

#[test]
fn damaged_volumes_give_errors_not_panics() {
    let good = image(MIN_MIB, &["vms"], &[("vms/x.toml", b"x = 1")]);
    let boot = PARTITION_START * 512;
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let damage: Vec<(&str, Damage)> = vec![
        ("no MBR signature", Box::new(|d| d[510] = 0)),
        // (Not 83, Linux: that one is looked at as ext2/3/4, tests/ext4.rs.)
        ("partition type", Box::new(|d| d[446 + 4] = 0x07)),
        (
            "boot sector signature",
            Box::new(move |d| d[boot + 510] = 0),
        ),
        ("sector size", Box::new(move |d| d[boot + 11] = 0)),
        ("sectors per cluster", Box::new(move |d| d[boot + 13] = 0)),
        (
            "zeroed boot sector",
            Box::new(move |d| d[boot..boot + 512].fill(0)),
        ),
        (
            "partition past the end",
            Box::new(|d| d[446 + 8..446 + 12].copy_from_slice(&u32::MAX.to_le_bytes())),
        ),
        ("truncated image", Box::new(|d| d.truncate(2 << 20))),
        ("empty image", Box::new(|d| d.clear())),
    ];
    for (what, damage) in damage {
        let mut disk = good.clone();
        damage(&mut disk);
        match FileSystem::mount(RamDisk::new(disk)) {
            Err(err) => {
                assert!(
                    matches!(err, FsError::Corrupt { .. } | FsError::Device(_)),
                    "{what}: {err:?}"
                );
                assert!(!err.to_string().is_empty());
            }
            // Some damage only shows when the volume is walked.
            Ok(mut fs) => {
                let _ = fs.list("/vms");
                let _ = fs.read("/vms/x.toml", LIMIT);
            }
        }
    }
}

#[test]
fn a_zeroed_boot_sector_is_named_in_the_error() {
    let mut disk = image(MIN_MIB, &[], &[]);
    disk[PARTITION_START * 512..][..512].fill(0);
    let err = FileSystem::mount(RamDisk::new(disk))
        .err()
        .expect("refused");
    assert!(matches!(err, FsError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("the disk's FAT volume is unusable: "),
        "{err}"
    );
}

/// A whole-file read (a guest kernel loaded at VM create) goes to the device in one request
/// per run of consecutive blocks plus the FAT blocks of its chain, not one request per
/// block: under an emulator each request is a round trip through the device model.
#[test]
fn a_whole_file_is_read_in_one_request_per_run_not_per_block() {
    // 3 MB and a partial last block, one cluster (512 bytes) a FAT entry: 5860 blocks,
    // whose chain fills 46 FAT blocks.
    let kernel = pattern(3_000_123);
    let disk = Device::new(image(MIN_MIB, &[], &[("Image.bin", &kernel)]));
    let reads = disk.reads.clone();
    let mut fs = FileSystem::mount(disk).unwrap();
    let before = reads.get();
    assert_eq!(fs.read("/Image.bin", LIMIT).unwrap(), kernel);
    let used = reads.get() - before;
    assert!(used < 64, "{used} read requests for 5860 blocks");
    let mut ram = vec![0u8; kernel.len()];
    assert_eq!(fs.read_into("/Image.bin", &mut ram), Ok(kernel.len()));
    assert_eq!(ram, kernel);
}

#[test]
fn device_errors_come_back_typed() {
    // The MBR reads, the boot sector does not.
    let mut disk = Device::new(image(MIN_MIB, &[], &[("a.bin", &pattern(100_000))]));
    disk.fail_from = PARTITION_START as u64;
    let err = FileSystem::mount(disk).err().expect("refused");
    assert_eq!(
        err,
        FsError::Device(BlockError::Io {
            block: PARTITION_START as u64
        })
    );
    assert_eq!(
        err.to_string(),
        "disk error: the disk reported an I/O error at block 2048"
    );

    // The FAT and the data area fail (past the reserved sectors): mounting works and the
    // read fails; once the device recovers, it mounts again and the file reads whole.
    let mut disk = Device::new(image(MIN_MIB, &[], &[("a.bin", &pattern(100_000))]));
    disk.fail_from = PARTITION_START as u64 + 40;
    let mut fs = FileSystem::mount(disk).unwrap();
    assert!(matches!(
        fs.read("/a.bin", LIMIT),
        Err(FsError::Device(BlockError::Io { .. }))
    ));
    let mut dev = fs.unmount().unwrap();
    dev.fail_from = u64::MAX;
    let mut fs = FileSystem::mount(dev).unwrap();
    assert_eq!(fs.read("/a.bin", LIMIT).unwrap(), pattern(100_000));
}

/// The byte offsets in `disk` of the FAT and of the 32-byte root directory entry whose 8.3
/// name is `short` (11 bytes, space-padded).
fn fat_and_entry(disk: &[u8], short: &[u8; 11]) -> (usize, usize) {
    let boot = &disk[PARTITION_START * 512..];
    let reserved = usize::from(u16::from_le_bytes([boot[14], boot[15]]));
    let fat_size = u32::from_le_bytes([boot[36], boot[37], boot[38], boot[39]]) as usize;
    let fat = (PARTITION_START + reserved) * 512;
    let root = fat + 2 * fat_size * 512;
    let entry = (0..16)
        .map(|i| root + 32 * i)
        .find(|&at| &disk[at..at + 11] == short)
        .expect("entry");
    (fat, entry)
}

#[test]
fn cluster_numbers_off_the_volume_are_corrupt_not_followed() {
    let good = image(MIN_MIB, &[], &[("A.BIN", &pattern(5000))]);
    let (fat, entry) = fat_and_entry(&good, b"A       BIN");
    let first = usize::from(u16::from_le_bytes([good[entry + 26], good[entry + 27]]));

    // The directory entry's first cluster far past the volume.
    let mut disk = good.clone();
    disk[entry + 20..entry + 22].copy_from_slice(&[0xff, 0xff]);
    let err = mount(disk).read("/a.bin", LIMIT).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the disk's FAT volume is unusable: a directory entry's first cluster is outside the volume"
    );

    // The FAT chain ending (end-of-chain mark) after its first of 10 clusters.
    let mut disk = good.clone();
    disk[fat + 4 * first..][..4].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
    let mut fs = mount(disk);
    assert_eq!(
        fs.open_blocks("/a.bin").unwrap_err().to_string(),
        "the disk's FAT volume is unusable: a file's clusters end before its size"
    );

    // The FAT chain continuing at cluster 1 (reserved), or past the last cluster.
    for next in [1u32, 0x0fff_0000] {
        let mut disk = good.clone();
        disk[fat + 4 * first..][..4].copy_from_slice(&next.to_le_bytes());
        let mut fs = mount(disk);
        let err = fs.read("/a.bin", LIMIT).unwrap_err();
        assert!(matches!(err, FsError::Corrupt { .. }), "{next:#x}: {err:?}");
        // A virtio-blk backing over it is refused the same way.
        assert_eq!(fs.open_blocks("/a.bin").unwrap_err(), err, "{next:#x}");
        // And writing over it stays inside the volume.
        let _ = fs.write("/a.bin", &pattern(20_000));
        let disk = fs.unmount().unwrap().into_inner();
        assert_eq!(disk.len(), MIN_MIB << 20);
        assert!(disk[..PARTITION_START * 512][512..].iter().all(|&b| b == 0));
    }
}

#[test]
fn a_disk_without_a_partition_table_is_one_volume() {
    // The partition of an MBR image, alone: what `mkfs.fat` makes of a whole image.
    let mut disk =
        image(MIN_MIB, &["vms"], &[("vms/linux.toml", b"[vm]\n")]).split_off(PARTITION_START * 512);
    // And truncated, it is refused as such.
    let short = disk[..disk.len() / 2].to_vec();
    let err = FileSystem::mount(RamDisk::new(short))
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "the disk's FAT volume is unusable: the volume is larger than its partition (a truncated image?)"
    );
    let mut fs = mount(std::mem::take(&mut disk));
    assert_eq!((fs.volume().start, fs.volume().partition), (0, None));
    assert_eq!(fs.read("/vms/linux.toml", LIMIT).unwrap(), b"[vm]\n");
    fs.write("/vms/new.tom", &pattern(70_000)).unwrap();
    fs.mkdir("/d").unwrap();
    let disk = fs.unmount().unwrap().into_inner();
    // Nothing was written in front of the volume: its boot sector is block 0.
    assert_eq!(&disk[510..512], &[0x55, 0xaa]);
    assert_eq!(disk[0], 0xeb);
    let fs = fatfs::FileSystem::new(std::io::Cursor::new(disk), fatfs::FsOptions::new()).unwrap();
    let mut data = Vec::new();
    std::io::Read::read_to_end(
        &mut fs.root_dir().open_file("vms/new.tom").unwrap(),
        &mut data,
    )
    .unwrap();
    assert_eq!(data, pattern(70_000));
}

#[test]
fn a_long_name_slot_starting_with_half_a_surrogate_pair_lists() {
    long_name_slot_with_half_a_surrogate_pair(0x0f);
}

#[test]
fn a_long_name_slot_with_other_high_attribute_bits_is_cleaned_up_too() {
    // The library takes any entry whose four low attribute bits are set as a long-name
    // slot; a fuzzer-found image had 0x1f there, and the library panicked.
    for attributes in [0x1f, 0x2f, 0x3f, 0x8f, 0xff] {
        long_name_slot_with_half_a_surrogate_pair(attributes);
    }
}

/// A long name whose last slot (with `attributes`) starts with a lone low surrogate lists
/// with U+FFFD in its place.
fn long_name_slot_with_half_a_surrogate_pair(attributes: u8) {
    // 31 characters: three long-name slots, the middle one full (13 characters).
    let name = "abcdefghijklmnopqrstuvwxyz0.txt";
    let mut disk = image(MIN_MIB, &[], &[(name, b"x")]);
    let (fat, _) = fat_and_entry(&disk, b"ABCDEF~1TXT");
    let boot = &disk[PARTITION_START * 512..];
    let fat_size = u32::from_le_bytes([boot[36], boot[37], boot[38], boot[39]]) as usize;
    let root = fat + 2 * fat_size * 512;
    // The last slot (sequence 3 | 0x40) comes first on disk; its first unit becomes a
    // lone low surrogate, which the library would carry into the full slot after it.
    let slot = (0..16)
        .map(|i| root + 32 * i)
        .find(|&at| disk[at] == 0x43 && disk[at + 11] == 0x0f)
        .expect("slot");
    disk[slot + 1..slot + 3].copy_from_slice(&0xdc00u16.to_le_bytes());
    disk[slot + 11] = attributes;
    let mut fs = mount(disk);
    assert_eq!(
        names(&mut fs, "/"),
        ["abcdefghijklmnopqrstuvwxyz\u{fffd}.txt"]
    );
    assert_eq!(fs.read("/ABCDEF~1.TXT", LIMIT).unwrap(), b"x");
}

#[test]
fn a_file_system_can_move_to_the_cpu_that_holds_its_lock() {
    fn send<T: Send>() {}
    send::<FileSystem<RamDisk<Vec<u8>>>>();
    send::<FileSystem<RamDisk<&'static mut [u8]>>>();
}

/// `read_at` / `write_at` (a virtio-blk disk image): ranges across clusters, the file never
/// grows, anything not wholly inside is refused before the disk is touched.
#[test]
fn reads_and_writes_at_an_offset_stay_inside_the_file() {
    let image_bytes = pattern(300_000);
    let mut fs = mount(image(MIN_MIB, &["vms"], &[("vms/disk.img", &image_bytes)]));
    let mut want = image_bytes.clone();
    // Across cluster boundaries, at an odd offset, and the last byte.
    for (offset, len) in [
        (0usize, 4096usize),
        (511, 2000),
        (123_457, 70_000),
        (299_999, 1),
    ] {
        let mut buf = vec![0; len];
        fs.read_at("/vms/disk.img", offset as u64, &mut buf)
            .unwrap();
        assert_eq!(buf, want[offset..offset + len], "read {offset} {len}");
    }
    for (offset, len) in [(1024usize, 512usize), (4000, 9000), (299_488, 512)] {
        let data = vec![(offset % 251) as u8; len];
        fs.write_at("/vms/disk.img", offset as u64, &data).unwrap();
        want[offset..offset + len].copy_from_slice(&data);
    }
    let out_of_range = |fs: &mut FileSystem<RamDisk<Vec<u8>>>, offset: u64, len: usize| {
        let mut buf = vec![0; len];
        let read = fs.read_at("/vms/disk.img", offset, &mut buf).unwrap_err();
        let write = fs.write_at("/vms/disk.img", offset, &buf).unwrap_err();
        for err in [read, write] {
            assert_eq!(
                err,
                FsError::OutOfRange {
                    path: "/vms/disk.img".into(),
                    offset,
                    len: len as u64,
                    size: 300_000
                }
            );
        }
    };
    out_of_range(&mut fs, 299_999, 2);
    out_of_range(&mut fs, 300_000, 1);
    out_of_range(&mut fs, u64::MAX, 1);
    assert_eq!(
        FsError::OutOfRange {
            path: "/d".into(),
            offset: 5,
            len: 2,
            size: 6
        }
        .to_string(),
        "/d: 2 bytes at offset 5 are not inside the file (6 bytes)"
    );
    assert!(matches!(
        fs.write_at("/vms", 0, &[1]),
        Err(FsError::IsADirectory { .. })
    ));
    assert!(matches!(
        fs.read_at("/vms/none.img", 0, &mut [0]),
        Err(FsError::NotFound { .. })
    ));
    assert_eq!(fs.stat("/vms/disk.img").unwrap().size, 300_000);
    let mut disk = fs.unmount().unwrap().into_inner();
    assert_eq!(read_with_fatfs(&mut disk, "vms/disk.img"), want);
}

/// `open_blocks` and `read_blocks_at` / `write_blocks_at` (a virtio-blk backing held open):
/// the same bytes as `read_at` / `write_at` on a file whose clusters are scattered, the
/// same refusals, and a file rewritten meanwhile is found again.
#[test]
fn block_io_on_an_open_file_matches_the_path_calls_across_fragments() {
    use std::io::{Cursor, Write};
    // Two files written in turns, 1500 bytes at a time: their 512-byte clusters alternate
    // in runs of two or three.
    let mut disk = image(MIN_MIB, &[], &[]);
    let (a, b) = (pattern(200_000), vec![0x5a; 100_000]);
    {
        let part = &mut disk[PARTITION_START * 512..];
        let fs = fatfs::FileSystem::new(Cursor::new(part), fatfs::FsOptions::new()).unwrap();
        let root = fs.root_dir();
        let (mut fa, mut fb) = (
            root.create_file("a.img").unwrap(),
            root.create_file("b.img").unwrap(),
        );
        for i in (0..a.len()).step_by(1500) {
            fa.write_all(&a[i..(i + 1500).min(a.len())]).unwrap();
            if i < b.len() {
                fb.write_all(&b[i..(i + 1500).min(b.len())]).unwrap();
            }
        }
    }
    let mut fs = mount(disk);
    let mut file = fs.open_blocks("/a.img").unwrap();
    assert_eq!((file.size(), file.path()), (200_000, "/a.img"));
    let mut want = a.clone();
    // Whole blocks (one device request per run) and, through the path calls, the rest.
    let ranges = [
        (0usize, 512usize),
        (0, 65536),
        (1024, 40_960),
        (512, 0),
        (199_680, 320),
        (7, 3000),
        (199_999, 1),
    ];
    for (offset, len) in ranges {
        let mut buf = vec![0; len];
        fs.read_blocks_at(&mut file, offset as u64, &mut buf)
            .unwrap();
        assert_eq!(buf, want[offset..offset + len], "read {offset} {len}");
    }
    for (offset, len) in [(2048usize, 65536usize), (99_840, 1024), (300, 700)] {
        let data = vec![(offset % 251) as u8 | 1; len];
        fs.write_blocks_at(&mut file, offset as u64, &data).unwrap();
        want[offset..offset + len].copy_from_slice(&data);
    }
    let mut buf = vec![0; want.len() - 320];
    fs.read_blocks_at(&mut file, 0, &mut buf).unwrap();
    assert_eq!(buf, want[..buf.len()]);
    // The same refusals as `read_at` / `write_at`, before the disk is touched.
    for (offset, len) in [
        (199_680usize, 1024usize),
        (200_192, 512),
        (u64::MAX as usize & !511, 512),
    ] {
        let mut buf = vec![0; len];
        let err = FsError::OutOfRange {
            path: "/a.img".into(),
            offset: offset as u64,
            len: len as u64,
            size: 200_000,
        };
        assert_eq!(
            fs.read_blocks_at(&mut file, offset as u64, &mut buf),
            Err(err.clone())
        );
        assert_eq!(fs.write_blocks_at(&mut file, offset as u64, &buf), Err(err));
    }
    assert!(matches!(
        fs.open_blocks("/"),
        Err(FsError::IsADirectory { .. })
    ));
    assert!(matches!(
        fs.open_blocks("/c.img"),
        Err(FsError::NotFound { .. })
    ));
    fs.flush().unwrap();
    // The path calls see what went straight to the device, and the other file is intact.
    let mut buf = vec![0; 65536];
    fs.read_at("/a.img", 2048, &mut buf).unwrap();
    assert_eq!(buf, want[2048..2048 + 65536]);
    assert_eq!(fs.read("/b.img", LIMIT).unwrap(), b);
    // Rewritten (its clusters freed and taken again): the open file follows.
    fs.write("/a.img", &pattern(4096)[..]).unwrap();
    let mut buf = vec![0; 1024];
    fs.read_blocks_at(&mut file, 1024, &mut buf).unwrap();
    assert_eq!(buf, pattern(4096)[1024..2048]);
    assert_eq!(file.size(), 4096);
    assert!(matches!(
        fs.read_blocks_at(&mut file, 4096, &mut buf),
        Err(FsError::OutOfRange { size: 4096, .. })
    ));
    let mut disk = fs.unmount().unwrap().into_inner();
    assert_eq!(read_with_fatfs(&mut disk, "a.img"), pattern(4096));
    assert_eq!(read_with_fatfs(&mut disk, "b.img"), b);
}

/// `mbr_partition` reads the table's entries as the disk gives them: the FAT partition an
/// image has, a second one written into it, and nothing for an empty entry, a number
/// outside 1 to 4 or a block 0 without the signature.
#[test]
fn mbr_partitions_are_read_by_number() {
    let mut disk = image(MIN_MIB, &[], &[]);
    let entry2 = &mut disk[446 + 16..446 + 32];
    entry2[4] = 0xda;
    entry2[8..12].copy_from_slice(&100u32.to_le_bytes());
    entry2[12..16].copy_from_slice(&16u32.to_le_bytes());
    let mut dev = RamDisk::new(disk.clone());
    let first = axfs::mbr_partition(&mut dev, 1).unwrap().unwrap();
    assert_eq!((first.kind, first.start), (0x0c, PARTITION_START as u64));
    assert_eq!(
        axfs::mbr_partition(&mut dev, 2).unwrap(),
        Some(axfs::Partition {
            kind: 0xda,
            start: 100,
            blocks: 16
        })
    );
    for n in [0, 3, 4, 5] {
        assert_eq!(axfs::mbr_partition(&mut dev, n).unwrap(), None, "{n}");
    }
    disk[510] = 0;
    assert_eq!(
        axfs::mbr_partition(&mut RamDisk::new(disk), 1).unwrap(),
        None
    );
}
