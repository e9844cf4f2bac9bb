//! U-Boot as a guest: Debian's `u-boot-qemu` package (`Architecture: all`, one package for
//! every QEMU board), fetched with a private apt (see [`super::apt`]) into
//! `<cache root>/u-boot/` by `cargo xtask guests fetch-uboot`, or when a VM config names
//! the image [`IMAGE`]. See `docs/real-guests.md` ("U-Boot").
//!
//! The cache holds one raw binary per architecture (`aarch64.bin`: the `qemu_arm64` board,
//! position-independent; `riscv64.bin`: `qemu-riscv64_smode`, linked at 0x8020_0000 and
//! entered in S-mode with a0 = hart id, a1 = DTB, as a Linux kernel), `source` (mirror,
//! suite, package file and size) and `version` (U-Boot's version line, written last: the
//! cache is complete when it and both binaries are there).

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{apt, cache_root, clean_apt_dir, download, write_atomically};
use crate::arch::Arch;
use crate::util;

/// The image name VM configs use for the fetched U-Boot of their architecture.
pub const IMAGE: &str = "u-boot";
/// The Debian package with U-Boot for QEMU's boards.
const PACKAGE: &str = "u-boot-qemu";
/// The suite it comes from.
const SUITE: &str = "bookworm";
/// The Debian architecture whose package index is read (the package is `all`).
const INDEX_ARCH: &str = "arm64";
/// The file in the cache directory holding U-Boot's version; written last.
const VERSION_FILE: &str = "version";
/// Where the files came from.
const SOURCE_FILE: &str = "source";
/// The architectures with a U-Boot guest.
pub const ARCHES: [Arch; 2] = [Arch::Aarch64, Arch::Riscv64];

/// The package's directory under `usr/lib/u-boot/` holding `arch`'s `u-boot.bin`.
fn board(arch: Arch) -> Result<&'static str> {
    match arch {
        Arch::Aarch64 => Ok("qemu_arm64"),
        Arch::Riscv64 => Ok("qemu-riscv64_smode"),
        Arch::X86_64 => bail!(
            "no U-Boot guest for x86_64 (U-Boot's x86 boards run in real mode from a BIOS ROM)"
        ),
    }
}

/// The U-Boot cache directory: `<cache root>/u-boot`.
pub fn cache_dir() -> PathBuf {
    cache_root().join("u-boot")
}

/// `arch`'s U-Boot binary in the cache directory.
fn image_path(arch: Arch) -> PathBuf {
    cache_dir().join(format!("{}.bin", arch.name()))
}

/// `arch`'s U-Boot binary if the cache is complete.
pub fn cached(arch: Arch) -> Option<PathBuf> {
    board(arch).ok()?;
    let version = fs::read_to_string(cache_dir().join(VERSION_FILE)).ok()?;
    let nonempty = |a: Arch| fs::metadata(image_path(a)).is_ok_and(|m| m.is_file() && m.len() > 0);
    (!version.trim().is_empty() && ARCHES.into_iter().all(nonempty)).then(|| image_path(arch))
}

/// `arch`'s U-Boot binary, fetched first if the cache is incomplete.
pub fn ensure(arch: Arch) -> Result<PathBuf> {
    board(arch)?;
    match cached(arch) {
        Some(path) => Ok(path),
        None => {
            fetch()?;
            cached(arch).context("the U-Boot cache is incomplete right after writing it")
        }
    }
}

/// `cargo xtask guests fetch-uboot`: fetches unless cached, and says which.
pub fn fetch_verbose() -> Result<()> {
    if cached(Arch::Aarch64).is_some() {
        let version = fs::read_to_string(cache_dir().join(VERSION_FILE)).unwrap_or_default();
        println!(
            "u-boot: cached in {} ({}); nothing to fetch",
            cache_dir().display(),
            version.trim()
        );
    } else {
        let start = Instant::now();
        fetch()?;
        println!("u-boot: fetched in {}", util::secs(start.elapsed()));
    }
    for arch in ARCHES {
        println!("  {arch}: {}", image_path(arch).display());
    }
    Ok(())
}

/// Downloads [`PACKAGE`] and writes every architecture's binary, `source` and `version`.
fn fetch() -> Result<()> {
    let apt_dir = cache_root().join("apt-u-boot");
    let mirror = apt::system_mirror();
    println!(
        "u-boot: fetching {PACKAGE} ({SUITE}) from {} into {}",
        mirror.uri,
        apt_dir.display()
    );
    let apt = apt::PrivateApt::create(&apt_dir, INDEX_ARCH, &apt::carried_settings())?;
    apt.set_suite(&mirror, SUITE)?;
    let mut update = apt.command("apt-get");
    update.args(["-q", "update"]);
    apt.run(update)?;
    let (tree, downloaded) = download(&apt, &apt_dir, &[PACKAGE])?;
    let mut images = Vec::new();
    let mut version = String::new();
    for arch in ARCHES {
        let file = tree
            .join("usr/lib/u-boot")
            .join(board(arch)?)
            .join("u-boot.bin");
        let data = fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        version = version_line(&data)
            .with_context(|| format!("{} has no \"U-Boot 20…\" version string", file.display()))?;
        images.push((arch, data));
    }
    let out = cache_dir();
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let version_path = out.join(VERSION_FILE);
    if version_path.exists() {
        fs::remove_file(&version_path)
            .with_context(|| format!("removing {}", version_path.display()))?;
    }
    for (arch, data) in &images {
        write_atomically(&image_path(*arch), data)?;
    }
    let mut source = format!("mirror {}\nsuite {SUITE}\n", mirror.uri);
    for (name, size) in &downloaded {
        source.push_str(&format!("package {name} {size}\n"));
    }
    write_atomically(&out.join(SOURCE_FILE), source.as_bytes())?;
    write_atomically(&version_path, format!("{version}\n").as_bytes())?;
    clean_apt_dir(&apt_dir)
}

/// U-Boot's version string in a binary (`U-Boot 2023.01+dfsg-2+deb12u3 (…)`, what its
/// `version` command prints first), up to the NUL that ends it.
fn version_line(data: &[u8]) -> Option<String> {
    const HEAD: &[u8] = b"U-Boot 20";
    let start = data.windows(HEAD.len()).position(|w| w == HEAD)?;
    let len = data[start..].iter().position(|&b| b == 0)?;
    let line = std::str::from_utf8(&data[start..start + len]).ok()?;
    (!line.contains(['\n', '\r'])).then(|| line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_string() {
        let data = b"\x14\0\0\x14junk\0U-Boot 2023.01+dfsg-2 (Jun 22 2025 - 08:38:00 +0000)\0more";
        assert_eq!(
            version_line(data).as_deref(),
            Some("U-Boot 2023.01+dfsg-2 (Jun 22 2025 - 08:38:00 +0000)")
        );
        assert_eq!(version_line(b"U-Boot 2023 unterminated"), None);
        assert_eq!(version_line(b"no version\0"), None);
    }

    #[test]
    fn boards() {
        assert_eq!(board(Arch::Aarch64).unwrap(), "qemu_arm64");
        assert_eq!(board(Arch::Riscv64).unwrap(), "qemu-riscv64_smode");
        assert!(board(Arch::X86_64).is_err());
        assert!(cached(Arch::X86_64).is_none());
    }
}
