//! `cargo xtask setup`: checks for the emulators and host tools the tests use and, when
//! running as root on Debian, installs the missing ones with apt; adds the bare-metal targets
//! and components `rust-toolchain.toml` pins where rustup lacks them; downloads the Debian
//! packages Bochs' boot ISO is made from into the repository's cache (no root needed).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{bochs, toolchain, util};

/// How to tell that a requirement is present.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// An executable of this name on `PATH`.
    Command(&'static str),
    /// A file at this path (symbolic links are followed).
    File(&'static str),
    /// An installed Debian package of this name (for files whose path varies by host).
    DebPackage(&'static str),
}

/// One host tool or file, and the Debian package that provides it.
#[derive(Clone, Copy, Debug)]
struct Requirement {
    what: &'static str,
    check: Check,
    package: &'static str,
}

const fn command(name: &'static str, package: &'static str) -> Requirement {
    Requirement {
        what: name,
        check: Check::Command(name),
        package,
    }
}

const fn file(what: &'static str, path: &'static str, package: &'static str) -> Requirement {
    Requirement {
        what,
        check: Check::File(path),
        package,
    }
}

/// Everything the emulators and tests need.
const REQUIREMENTS: &[Requirement] = &[
    command("qemu-system-aarch64", "qemu-system-arm"),
    command("qemu-system-riscv64", "qemu-system-misc"),
    command("qemu-system-x86_64", "qemu-system-x86"),
    file(
        "opensbi",
        "/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin",
        "opensbi",
    ),
    command("bochs", "bochs"),
    file(
        "bochs bios",
        "/usr/share/bochs/BIOS-bochs-latest",
        "bochsbios",
    ),
    file("vga bios", "/usr/share/vgabios/vgabios.bin", "vgabios"),
    Requirement {
        what: "bochs term display",
        check: Check::DebPackage("bochs-term"),
        package: "bochs-term",
    },
    // Bochs' display needs a terminal: runs go through `script`'s pseudo-terminal.
    command("script", "bsdutils"),
    command("stty", "coreutils"),
    command("dpkg-deb", "dpkg"),
    command("cpio", "cpio"),
    // ext4 disk images (`disk_fs = "ext4"`, `cargo xtask disk --fs ext4`) and axfs' tests:
    // `mkfs.ext4 -d`. In /sbin, which a user's PATH may lack.
    file("mkfs.ext4", "/sbin/mkfs.ext4", "e2fsprogs"),
];

impl Requirement {
    fn present(&self) -> bool {
        match self.check {
            Check::Command(name) => util::command_exists(name),
            Check::File(path) => Path::new(path).exists(),
            Check::DebPackage(name) => deb_installed(name),
        }
    }
}

/// The Debian packages that provide the missing requirements, without duplicates.
fn missing_packages(missing: &[&Requirement]) -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for r in missing {
        if !packages.contains(&r.package) {
            packages.push(r.package);
        }
    }
    packages
}

fn missing() -> Vec<&'static Requirement> {
    REQUIREMENTS.iter().filter(|r| !r.present()).collect()
}

/// Whether dpkg reports the package as installed.
fn deb_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.ends_with(b" installed"))
}

/// Whether this process runs as root (asks `id -u`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Makes sure every requirement is present, installing missing packages with apt when
/// running as root; otherwise fails with the command to run.
pub fn ensure() -> Result<()> {
    ensure_disk_space()?;
    toolchain::ensure()?;
    ensure_host_tools()?;
    bochs::ensure_tools()?;
    println!(
        "setup: Bochs boot-ISO packages ({}) in {}",
        bochs::PACKAGES.join(" "),
        bochs::tools_dir().display()
    );
    Ok(())
}

/// The free space a whole `cargo xtask test` from a clean clone needs on the disk that holds
/// `target/` (its builds, the fuzz build, the guest cache and the scenarios' disk images),
/// with some room to spare: measured in docs/testing.md.
const NEEDED_DISK_GIB: u64 = 10;

/// Fails early, naming the directory, when the disk holding `target/` has less free space
/// than [`NEEDED_DISK_GIB`] less what `target/` already holds; a full disk otherwise shows
/// up minutes later as a compiler's "No space left on device". A `df` that cannot answer
/// is reported and the run goes on.
fn ensure_disk_space() -> Result<()> {
    let target = util::target_dir();
    let probe = if target.exists() {
        target.clone()
    } else {
        util::repo_root().to_path_buf()
    };
    let Some(free_kib) = free_kib(&probe) else {
        println!(
            "setup: could not read the free disk space of {}",
            probe.display()
        );
        return Ok(());
    };
    let gib = |kib: u64| kib as f64 / f64::from(1u32 << 20);
    let needed_kib = NEEDED_DISK_GIB << 20;
    // What target/ already holds counts only when the free space alone is short: `du` of a
    // large target/ is not free, and most runs have room.
    if free_kib < needed_kib {
        let used_kib = dir_kib(&target).unwrap_or(0);
        if free_kib < needed_kib.saturating_sub(used_kib) {
            bail!(
                "only {:.1} GiB free on the disk that holds {}: a full `cargo xtask test` needs \
                 about {NEEDED_DISK_GIB} GiB there ({:.1} GiB of it already in target/); free some space",
                gib(free_kib),
                target.display(),
                gib(used_kib)
            );
        }
    }
    println!(
        "setup: {:.1} GiB free for {}",
        gib(free_kib),
        target.display()
    );
    Ok(())
}

/// The space available to unprivileged users on the filesystem holding `path`, in KiB
/// (`df -Pk`'s fourth column).
fn free_kib(path: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_df_available(&String::from_utf8_lossy(&out.stdout))
}

/// The `Available` column of `df -P`'s single data line.
fn parse_df_available(text: &str) -> Option<u64> {
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// The disk space a directory takes, in KiB (`du -sk`); `None` when it does not exist.
fn dir_kib(dir: &Path) -> Option<u64> {
    if !dir.exists() {
        return None;
    }
    let out = Command::new("du").arg("-sk").arg(dir).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Makes sure every [`REQUIREMENTS`] entry is present (see [`ensure`]).
fn ensure_host_tools() -> Result<()> {
    let missing_now = missing();
    if missing_now.is_empty() {
        print_present();
        return Ok(());
    }
    let packages = missing_packages(&missing_now);
    let names: Vec<&str> = missing_now.iter().map(|r| r.what).collect();
    println!("setup: missing {}", names.join(", "));
    let install = format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    if !is_root() {
        bail!(
            "missing host tools: {}\nInstall them (Debian 12) with:\n  sudo apt-get update && sudo {install}",
            names.join(", ")
        );
    }
    if !util::command_exists("apt-get") {
        bail!(
            "missing host tools: {} (packages: {}), and there is no apt-get to install them with",
            names.join(", "),
            packages.join(" ")
        );
    }
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    util::run(apt(&["update"])).context("updating the apt package lists")?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&packages);
    util::run(apt(&args)).with_context(|| format!("installing {}", packages.join(" ")))?;
    let still: Vec<&str> = missing().iter().map(|r| r.what).collect();
    if !still.is_empty() {
        bail!(
            "still missing after installing {}: {}",
            packages.join(" "),
            still.join(", ")
        );
    }
    print_present();
    Ok(())
}

fn print_present() {
    let names: Vec<&str> = REQUIREMENTS.iter().map(|r| r.what).collect();
    println!("setup: present: {}", names.join(", "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_deduplicated_in_order() {
        let a = command("a", "pkg-a");
        let b = command("b", "pkg-b");
        let a2 = file("a2", "/nonexistent", "pkg-a");
        assert_eq!(missing_packages(&[&a, &b, &a2]), ["pkg-a", "pkg-b"]);
    }

    #[test]
    fn df_available_column() {
        let text = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                    /dev/vda         264137616 95000000 657408      100% /\n";
        assert_eq!(parse_df_available(text), Some(657_408));
        assert_eq!(parse_df_available("Filesystem\n"), None);
        assert_eq!(parse_df_available(""), None);
    }

    #[test]
    fn checks() {
        assert!(command("sh", "dash").present());
        assert!(!command("no-such-command-xtask", "x").present());
        assert!(file("root", "/", "x").present());
        assert!(!file("nothing", "/nonexistent/xtask", "x").present());
    }
}
