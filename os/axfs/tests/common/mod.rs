//! Host-side FAT32 images for the tests, made with the `fatfs` crate (a dev-dependency:
//! `embedded-sdmmc` has no formatter).

pub mod device;
pub mod volume;

use std::io::{Cursor, Write};

/// Where the one partition starts, in 512-byte sectors (1 MiB, the usual alignment).
pub const PARTITION_START: usize = 2048;
/// The smallest size FAT32 needs at one sector a cluster (65525 clusters), rounded up.
pub const MIN_MIB: usize = 34;

/// A disk of `mib` MiB: an MBR with one FAT32 (LBA) partition from [`PARTITION_START`] to
/// the end, formatted, holding `dirs` and then `files` (paths relative to the root, `/`
/// separated; long names are written as long names).
pub fn image(mib: usize, dirs: &[&str], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut disk = vec![0u8; mib << 20];
    let sectors = (disk.len() / 512 - PARTITION_START) as u32;
    let entry = &mut disk[446..462];
    entry[4] = 0x0c; // FAT32 with LBA addressing
    entry[8..12].copy_from_slice(&(PARTITION_START as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    let part = &mut disk[PARTITION_START * 512..];
    fatfs::format_volume(
        Cursor::new(&mut *part),
        fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_cluster(512),
    )
    .expect("format");
    {
        let fs = fatfs::FileSystem::new(Cursor::new(&mut *part), fatfs::FsOptions::new())
            .expect("mount the new volume");
        assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
        let root = fs.root_dir();
        for dir in dirs {
            root.create_dir(dir).expect("create dir");
        }
        for (path, data) in files {
            let mut file = root.create_file(path).expect("create file");
            file.truncate().expect("truncate");
            file.write_all(data).expect("write");
        }
    }
    disk
}

/// The content of `path` in `disk` as `fatfs` reads it (an oracle for what axfs wrote).
pub fn read_with_fatfs(disk: &mut [u8], path: &str) -> Vec<u8> {
    use std::io::Read;
    let part = &mut disk[PARTITION_START * 512..];
    let fs = fatfs::FileSystem::new(Cursor::new(part), fatfs::FsOptions::new()).expect("mount");
    let mut data = Vec::new();
    fs.root_dir()
        .open_file(path)
        .expect("open")
        .read_to_end(&mut data)
        .expect("read");
    data
}

/// Bytes that differ from block to block, so a misplaced cluster shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[(i / 512) % 4])
        .collect()
}
