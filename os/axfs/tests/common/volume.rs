//! Mounting a RAM disk image and listing a directory, for the FAT and ext2/3/4 tests alike.

use axfs::{FileSystem, RamDisk};

/// The volume on `disk`, mounted (the test fails if it does not mount).
pub fn mount(disk: Vec<u8>) -> FileSystem<RamDisk<Vec<u8>>> {
    FileSystem::mount(RamDisk::new(disk)).expect("mount")
}

/// The names in the directory at `path`, sorted.
pub fn names(fs: &mut FileSystem<RamDisk<Vec<u8>>>, path: &str) -> Vec<String> {
    let mut names: Vec<String> = fs.list(path).unwrap().into_iter().map(|m| m.name).collect();
    names.sort();
    names
}
