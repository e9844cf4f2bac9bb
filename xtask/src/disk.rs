//! `cargo xtask disk`: a FAT32 or ext4 disk image from a directory, for the hypervisor's
//! `axfs` (docs/axfs.md). No root, no loop devices, no mtools.
//!
//! FAT32 (the default) is pure Rust on the host (the `fatfs` crate formats and fills the
//! volume): an MBR with one FAT32 (LBA, type 0C) partition from 1 MiB to the end, holding
//! the directory's files and subdirectories under their own names (long names kept), the
//! layout `axfs::FileSystem::mount` reads. ext4 (`--fs ext4`, which axfs reads only) is
//! e2fsprogs' `mkfs.ext4 -d`: the whole image one ext4 volume, no partition table.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;

/// The partition's first sector (1 MiB: the usual alignment).
const PARTITION_START: u64 = 2048;
/// Bytes per sector.
const SECTOR: u64 = 512;
/// FAT32 needs at least 65525 clusters; a little more for rounding.
const MIN_CLUSTERS: u64 = 66_000;
/// The smallest image: FAT32 at one sector a cluster, plus the MBR gap (35 MiB).
const MIN_BYTES: u64 = (PARTITION_START + MIN_CLUSTERS + 2048) * SECTOR;

/// Arguments of `cargo xtask disk`.
#[derive(Debug, Args)]
pub struct DiskArgs {
    /// The directory whose files and subdirectories go on the disk.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// The image file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The image's size in MiB (default: what the files need with room to spare).
    #[arg(long, value_name = "MIB")]
    size_mib: Option<u64>,
    /// The filesystem: `fat` (FAT32, read and write) or `ext4` (read-only to axfs).
    #[arg(long, value_enum, default_value_t = DiskFs::Fat)]
    fs: DiskFs,
    /// A second MBR partition of this many KiB of zeros after the filesystem's (type DA,
    /// non-filesystem data), for a VM's `backing = { disk, partition = 2 }` (FAT only).
    #[arg(long, value_name = "KIB")]
    spare_kib: Option<u64>,
}

/// The filesystem of a disk image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFs {
    /// FAT32 (FAT16 for the smallest VM disks), made by `fatfs`.
    #[default]
    Fat,
    /// ext4, made by `mkfs.ext4 -d` (e2fsprogs).
    Ext4,
}

/// Runs `cargo xtask disk`.
pub fn run(args: DiskArgs) -> Result<()> {
    let size = args.size_mib.map(|mib| mib << 20);
    let (mut image, fs) = match args.fs {
        DiskFs::Fat => (build(&args.from, size)?, "FAT32"),
        DiskFs::Ext4 => (build_ext4(&args.from, size)?, "ext4"),
    };
    if let Some(kib) = args.spare_kib {
        add_spare_partition(&mut image, kib << 10)?;
    }
    std::fs::write(&args.out, &image)
        .with_context(|| format!("could not write {}", args.out.display()))?;
    println!(
        "{}: {} MiB {fs} disk image of {}",
        args.out.display(),
        image.len() >> 20,
        args.from.display()
    );
    Ok(())
}

/// What goes on the disk: directories (parents first) and files, as paths relative to
/// the source directory with `/` separators.
#[derive(Debug, Default)]
struct Tree {
    dirs: Vec<String>,
    files: Vec<(String, PathBuf, u64)>,
}

impl Tree {
    fn scan(root: &Path) -> Result<Self> {
        let mut tree = Tree::default();
        tree.walk(root, "")?;
        Ok(tree)
    }

    fn walk(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("could not read directory {}", dir.display()))?
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("could not read directory {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                bail!("{}: the name is not UTF-8", path.display());
            };
            let rel = format!("{prefix}{name}");
            // Follows symbolic links, as copying the directory would.
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("could not stat {}", path.display()))?;
            if meta.is_dir() {
                self.dirs.push(rel.clone());
                self.walk(&path, &format!("{rel}/"))?;
            } else if meta.is_file() {
                ensure!(
                    meta.len() <= u64::from(u32::MAX),
                    "{}: {} bytes is more than a FAT file holds (4 GiB - 1)",
                    path.display(),
                    meta.len()
                );
                self.files.push((rel, path, meta.len()));
            } else {
                bail!("{}: neither a file nor a directory", path.display());
            }
        }
        Ok(())
    }

    /// The tree's data in 4 KiB clusters, and a directory cluster per directory.
    fn data_bytes(&self) -> u64 {
        let data: u64 = self.files.iter().map(|f| f.2.div_ceil(4096) * 4096).sum();
        data + (self.dirs.len() as u64 + 1) * 4096
    }

    /// The image size the tree needs: [`Tree::data_bytes`], an eighth more and 8 MiB of
    /// room, in whole MiB, at least [`MIN_BYTES`].
    fn size(&self) -> u64 {
        let want = PARTITION_START * SECTOR + self.data_bytes() / 8 * 9 + (8 << 20);
        want.div_ceil(1 << 20).max(MIN_BYTES.div_ceil(1 << 20)) << 20
    }
}

/// The largest cluster (512 B to 4 KiB) that leaves a volume of `bytes` FAT32's minimum
/// number of clusters.
fn cluster_bytes(bytes: u64) -> u32 {
    [4096, 2048, 1024, 512]
        .into_iter()
        .find(|&c| bytes / u64::from(c) >= MIN_CLUSTERS)
        .unwrap_or(512)
}

/// FAT16 needs at least 4085 clusters; a little more for rounding.
const MIN_FAT16_CLUSTERS: u64 = 4200;
/// FAT16 has at most 65524 clusters.
const MAX_FAT16_CLUSTERS: u64 = 65_524;

/// The smallest disk image that holds the files and directories under `from`: FAT16 (at
/// least 4 MiB) when they fit one, else as [`build`] makes it. For the disks a scenario's
/// VMs come on, which an emulator copies into RAM as a boot module (Bochs reads the 35 MiB
/// of the smallest FAT32 image in about 4 s).
pub fn build_small(from: &Path) -> Result<Vec<u8>> {
    let tree = Tree::scan(from)?;
    let want = tree.data_bytes() / 8 * 9 + (1 << 20);
    let part = want.div_ceil(1 << 20).max(3) << 20;
    let cluster = [512u32, 1024, 2048, 4096, 8192, 16384, 32768]
        .into_iter()
        .find(|&c| part / u64::from(c) <= MAX_FAT16_CLUSTERS);
    match cluster {
        Some(c) if part / u64::from(c) >= MIN_FAT16_CLUSTERS => write_image(
            &tree,
            PARTITION_START * SECTOR + part,
            fatfs::FatType::Fat16,
            c,
        ),
        _ => build(from, None),
    }
}

/// A FAT32 disk image holding the files and directories under `from`: `size` bytes
/// (rounded down to whole MiB), or what they need when `None`.
pub fn build(from: &Path, size: Option<u64>) -> Result<Vec<u8>> {
    let tree = Tree::scan(from)?;
    let size = match size {
        Some(size) => {
            let size = size >> 20 << 20;
            ensure!(
                size >= MIN_BYTES,
                "a FAT32 disk image is at least {} MiB",
                MIN_BYTES.div_ceil(1 << 20)
            );
            size
        }
        None => tree.size(),
    };
    ensure!(
        size / SECTOR <= u64::from(u32::MAX),
        "an MBR disk is at most 2 TiB"
    );
    let sectors = size / SECTOR - PARTITION_START;
    write_image(
        &tree,
        size,
        fatfs::FatType::Fat32,
        cluster_bytes(sectors * SECTOR),
    )
}

/// An MBR disk image of `size` bytes with one FAT partition (of `fat` type and `cluster`
/// bytes a cluster) from [`PARTITION_START`] holding `tree`.
fn write_image(tree: &Tree, size: u64, fat: fatfs::FatType, cluster: u32) -> Result<Vec<u8>> {
    let mut disk = vec![0u8; usize::try_from(size)?];
    let sectors = size / SECTOR - PARTITION_START;
    let entry = &mut disk[446..462];
    // LBA addressing: FAT32 0C, FAT16 0E.
    entry[4] = if fat == fatfs::FatType::Fat32 {
        0x0c
    } else {
        0x0e
    };
    entry[8..12].copy_from_slice(&(PARTITION_START as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
    disk[510..512].copy_from_slice(&[0x55, 0xaa]);

    let part = &mut disk[(PARTITION_START * SECTOR) as usize..];
    fatfs::format_volume(
        Cursor::new(&mut *part),
        fatfs::FormatVolumeOptions::new()
            .fat_type(fat)
            .bytes_per_cluster(cluster)
            .volume_label(*b"AXVISOR    "),
    )
    .context("could not format the FAT volume")?;
    let fs = fatfs::FileSystem::new(Cursor::new(&mut *part), fatfs::FsOptions::new())
        .context("could not open the new FAT volume")?;
    let root = fs.root_dir();
    for dir in &tree.dirs {
        root.create_dir(dir)
            .with_context(|| format!("could not create {dir} on the disk image"))?;
    }
    for (rel, path, _) in &tree.files {
        let data =
            std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
        let mut file = root
            .create_file(rel)
            .with_context(|| format!("could not create {rel} on the disk image"))?;
        file.write_all(&data)
            .with_context(|| format!("{rel}: the disk image is full (give a larger --size-mib)"))?;
    }
    drop(root);
    fs.unmount().context("could not finish the FAT volume")?;
    Ok(disk)
}

/// The MBR partition type of [`add_spare_partition`]'s partition: DA, non-filesystem data.
const SPARE_PARTITION_TYPE: u8 = 0xda;

/// Appends `bytes` of zeros to the FAT disk image `disk` (whose one partition ends where
/// the image does) as its second MBR partition, of type DA (non-filesystem data): the
/// place a VM's `backing = { disk, partition = 2 }` names on the hypervisor's own disk.
pub fn add_spare_partition(disk: &mut Vec<u8>, bytes: u64) -> Result<()> {
    ensure!(
        bytes != 0 && bytes.is_multiple_of(SECTOR),
        "a spare partition is a whole number of 512-byte sectors, not 0 ({bytes} bytes)"
    );
    let has_table = disk.len() >= 512 && disk[510..512] == [0x55, 0xaa] && disk[446 + 4] != 0;
    ensure!(
        has_table && disk[446 + 16 + 4] == 0,
        "a spare partition goes into a FAT image's partition table (second entry empty); an ext4 image has none"
    );
    let start = disk.len() as u64 / SECTOR;
    let blocks = bytes / SECTOR;
    ensure!(
        start + blocks <= u64::from(u32::MAX),
        "an MBR disk is at most 2 TiB"
    );
    disk.resize(disk.len() + usize::try_from(bytes)?, 0);
    let entry = &mut disk[446 + 16..446 + 32];
    entry[4] = SPARE_PARTITION_TYPE;
    entry[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&(blocks as u32).to_le_bytes());
    Ok(())
}

/// `mkfs.ext4`: on `PATH`, or where Debian keeps it (`/sbin` is not on a user's `PATH`).
pub fn mkfs_ext4() -> Result<PathBuf> {
    let on_path = crate::util::command_exists("mkfs.ext4").then(|| PathBuf::from("mkfs.ext4"));
    on_path
        .or_else(|| {
            ["/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
        .context("mkfs.ext4 not found: install e2fsprogs (cargo xtask setup does)")
}

/// An ext4 disk image holding the files and directories under `from` (symbolic links
/// followed, as for FAT): `size` bytes (rounded down to whole MiB), or what they need with
/// room for the metadata and journal when `None`. The tree is gathered (hard links, else
/// copies) in a scratch directory that `mkfs.ext4 -d` copies from.
pub fn build_ext4(from: &Path, size: Option<u64>) -> Result<Vec<u8>> {
    static SCRATCH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let tree = Tree::scan(from)?;
    let size = match size {
        Some(size) => size >> 20 << 20,
        None => (tree.data_bytes() / 8 * 9 + (16 << 20)).div_ceil(1 << 20) << 20,
    };
    ensure!(size >= 4 << 20, "an ext4 disk image is at least 4 MiB");
    let n = SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = std::env::temp_dir().join(format!("axvisor-ext4-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let root = scratch.join("root");
    let made = (|| -> Result<Vec<u8>> {
        std::fs::create_dir_all(&root)?;
        for dir in &tree.dirs {
            std::fs::create_dir_all(root.join(dir))?;
        }
        for (rel, path, _) in &tree.files {
            let to = root.join(rel);
            let real = std::fs::canonicalize(path)?;
            if std::fs::hard_link(&real, &to).is_err() {
                std::fs::copy(&real, &to)
                    .with_context(|| format!("could not copy {}", path.display()))?;
            }
        }
        let image = scratch.join("disk.img");
        let out = std::process::Command::new(mkfs_ext4()?)
            .args([
                "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "axvisor", "-d",
            ])
            .arg(&root)
            .arg(&image)
            .arg(format!("{}k", size >> 10))
            .output()
            .context("could not run mkfs.ext4")?;
        if !out.status.success() {
            bail!(
                "mkfs.ext4 failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::fs::read(&image).with_context(|| format!("could not read {}", image.display()))
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    use axfs::{FileKind, FileSystem, RamDisk, VolumeKind};

    /// A fresh directory under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-disk-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// An ext4 image holds the tree with symbolic links followed (how scenarios link guest
    /// images onto their disks), and axfs mounts it read-only.
    #[test]
    fn ext4_images_hold_the_tree_with_links_followed() {
        let dir = scratch("ext4");
        std::fs::create_dir_all(dir.join("vms")).unwrap();
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::write(dir.join("vms/00-a.toml"), b"id = 1\n").unwrap();
        let kernel: Vec<u8> = (0..2_000_000u32).map(|i| (i / 5) as u8).collect();
        let outside = scratch("ext4-outside");
        std::fs::write(outside.join("k.bin"), &kernel).unwrap();
        std::os::unix::fs::symlink(outside.join("k.bin"), dir.join("images/k.bin")).unwrap();
        let image = build_ext4(&dir, None).unwrap();
        // The data, an eighth more and 16 MiB, in whole MiB.
        assert_eq!(image.len(), 19 << 20);
        let mut fs = FileSystem::mount(RamDisk::new(image)).unwrap();
        assert_eq!(fs.volume().kind, VolumeKind::Ext4);
        assert_eq!(fs.read("/vms/00-a.toml", 64).unwrap(), b"id = 1\n");
        assert_eq!(fs.read("/images/k.bin", 4 << 20).unwrap(), kernel);
        assert!(matches!(
            fs.write("/vms/00-a.toml", b"x"),
            Err(axfs::FsError::ReadOnlyVolume { .. })
        ));
        let error = |size| {
            build_ext4(&dir, Some(size))
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert!(error(1 << 20).contains("at least 4 MiB"));
        // More than fits: mkfs.ext4's own words.
        std::fs::write(dir.join("images/big.bin"), vec![1u8; 5 << 20]).unwrap();
        assert!(error(4 << 20).starts_with("mkfs.ext4 failed"));
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn axfs_reads_what_the_image_holds() {
        let dir = scratch("tree");
        std::fs::create_dir_all(dir.join("vms")).unwrap();
        std::fs::create_dir_all(dir.join("images/linux-6.6")).unwrap();
        std::fs::write(
            dir.join("vms/linux-aarch64.toml"),
            "[vm]\nname = \"linux\"\n",
        )
        .unwrap();
        let kernel: Vec<u8> = (0..3_000_000u32).map(|i| (i / 7) as u8).collect();
        std::fs::write(dir.join("images/linux-6.6/Image"), &kernel).unwrap();
        std::fs::write(dir.join("images/empty"), b"").unwrap();

        let image = build(&dir, None).unwrap();
        assert_eq!(image.len() as u64 % (1 << 20), 0);
        assert!(image.len() as u64 >= MIN_BYTES);
        let mut fs = FileSystem::mount(RamDisk::new(image)).unwrap();
        let mut root: Vec<_> = fs.list("/").unwrap().into_iter().map(|m| m.name).collect();
        root.sort();
        assert_eq!(root, ["images", "vms"]);
        assert_eq!(
            fs.read("/vms/linux-aarch64.toml", 1 << 20).unwrap(),
            b"[vm]\nname = \"linux\"\n"
        );
        assert_eq!(
            fs.read("/images/linux-6.6/Image", 16 << 20).unwrap(),
            kernel
        );
        assert_eq!(fs.stat("/images/empty").unwrap().size, 0);
        assert_eq!(
            fs.stat("/images/linux-6.6").unwrap().kind,
            FileKind::Directory
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn small_images_are_fat16_and_axfs_reads_them() {
        let dir = scratch("small");
        std::fs::create_dir_all(dir.join("vms")).unwrap();
        std::fs::write(dir.join("vms/00-a.toml"), b"id = 1\n").unwrap();
        let kernel: Vec<u8> = (0..5_000_000u32).map(|i| (i / 3) as u8).collect();
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::write(dir.join("images/k.bin"), &kernel).unwrap();
        let image = build_small(&dir).unwrap();
        // 1 MiB before the partition, the data with an eighth more and 1 MiB of room.
        assert_eq!(image.len(), 8 << 20);
        assert_eq!(image[446 + 4], 0x0e);
        let mut fs = FileSystem::mount(RamDisk::new(image)).unwrap();
        assert_eq!(fs.volume().kind, VolumeKind::Fat16);
        assert_eq!(fs.read("/vms/00-a.toml", 64).unwrap(), b"id = 1\n");
        assert_eq!(fs.read("/images/k.bin", 8 << 20).unwrap(), kernel);
        // An empty tree: the smallest FAT16 volume.
        let empty = scratch("small-empty");
        let image = build_small(&empty).unwrap();
        assert_eq!(image.len(), 4 << 20);
        assert_eq!(
            FileSystem::mount(RamDisk::new(image))
                .unwrap()
                .volume()
                .kind,
            VolumeKind::Fat16
        );
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn sizes_and_refusals() {
        let dir = scratch("sizes");
        std::fs::write(dir.join("a"), b"a").unwrap();
        // The minimum, and a larger volume with larger clusters that axfs mounts too.
        assert_eq!(build(&dir, None).unwrap().len() as u64, 35 << 20);
        let big = build(&dir, Some(300 << 20)).unwrap();
        assert_eq!(cluster_bytes(300 << 20), 4096);
        let mut fs = FileSystem::mount(RamDisk::new(big)).unwrap();
        assert_eq!(fs.read("/a", 16).unwrap(), b"a");

        let err = build(&dir, Some(8 << 20)).unwrap_err();
        assert_eq!(err.to_string(), "a FAT32 disk image is at least 35 MiB");
        let err = build(&dir.join("missing"), None).unwrap_err();
        assert!(
            err.to_string().starts_with("could not read directory"),
            "{err}"
        );
        // Too little room for the files.
        std::fs::write(dir.join("big"), vec![0u8; 40 << 20]).unwrap();
        let err = build(&dir, Some(35 << 20)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "big: the disk image is full (give a larger --size-mib)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A spare partition goes after the FAT one as entry 2 (type DA, zeros): axfs still
    /// mounts the FAT volume, `mbr_partition` finds both; a second one, one of no sectors,
    /// and an ext4 image (no partition table) are refused.
    #[test]
    fn a_spare_partition_follows_the_filesystem() {
        let dir = scratch("spare");
        std::fs::write(dir.join("a"), b"a").unwrap();
        let mut image = build_small(&dir).unwrap();
        let end = image.len() as u64;
        add_spare_partition(&mut image, 0x2000).unwrap();
        assert_eq!(image.len() as u64, end + 0x2000);
        let mut dev = RamDisk::new(image.clone());
        assert_eq!(
            axfs::mbr_partition(&mut dev, 2).unwrap(),
            Some(axfs::Partition {
                kind: 0xda,
                start: end / 512,
                blocks: 16
            })
        );
        let first = axfs::mbr_partition(&mut dev, 1).unwrap().unwrap();
        assert_eq!((first.start + first.blocks) * 512, end);
        let mut fs = FileSystem::mount(dev).unwrap();
        assert_eq!(fs.read("/a", 16).unwrap(), b"a");
        assert_eq!(fs.volume().partition, Some(1));
        let err = add_spare_partition(&mut image, 0x2000).unwrap_err();
        assert!(err.to_string().contains("second entry empty"), "{err}");
        let err = add_spare_partition(&mut build_small(&dir).unwrap(), 100).unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
        let mut ext4 = vec![0u8; 1 << 20];
        assert!(add_spare_partition(&mut ext4, 0x2000).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
