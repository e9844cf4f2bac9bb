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
    fn checks() {
        assert!(command("sh", "dash").present());
        assert!(!command("no-such-command-xtask", "x").present());
        assert!(file("root", "/", "x").present());
        assert!(!file("nothing", "/nonexistent/xtask", "x").present());
    }
}
