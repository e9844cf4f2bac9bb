//! Real Linux guests: a Debian kernel and a busybox initramfs per architecture, fetched with
//! apt for the foreign architecture into private directories (`cargo xtask guests fetch`)
//! and booted straight on QEMU as a baseline (`cargo xtask guests boot-direct`). See
//! `docs/real-guests.md`.
//!
//! The cache is `.cache/guests/<arch>/` (or `$AXVISOR_GUEST_CACHE/<arch>/`): `Image` (the raw
//! kernel; on x86_64 `bzImage`, Debian's compressed kernel as it is), `initramfs.cpio`, `version` (the kernel release, written last), `busybox`
//! (kept so the initramfs can be rebuilt when its `/init` changes, without a download),
//! on aarch64 `busybox32` (Debian armhf's, run as a 32-bit compat process), `modules/` (the
//! kernel modules the initramfs carries, [`modules`]) and `source` (mirror, suite and
//! packages it came from). The initramfs's `/init` shows a marker line and powers off, or
//! gives a shell (`axv.mode=shell`), or runs a script of [`SCRIPTS_DIR`] (`axv.run=NAME`).

pub(crate) mod apt;
mod boot;
mod modules;
mod newc;
pub mod uboot;
mod unpacked;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use crate::arch::Arch;
use crate::util;

pub use boot::boot_direct;

/// Overrides the cache root (default `<repository>/.cache/guests`).
pub const ENV_CACHE: &str = "AXVISOR_GUEST_CACHE";
/// What `/init` prints, followed by ` kernel=<uname -r> cpus=<online CPUs> compat=<what the
/// 32-bit busybox's `linux32 uname -m` printed, or none>`.
pub const MARKER: &str = "AXVISOR-LINUX-MARKER";
/// The file in a cache directory holding the kernel release; written last.
const VERSION_FILE: &str = "version";
/// The raw kernel image in a cache directory (aarch64, riscv64).
const IMAGE_FILE: &str = "Image";
/// The kernel in an x86_64 cache directory: Debian's bzImage, kept compressed (it
/// decompresses itself when entered through the boot protocol).
const BZIMAGE_FILE: &str = "bzImage";
/// The initramfs in a cache directory.
const INITRAMFS_FILE: &str = "initramfs.cpio";
/// The busybox binary kept in a cache directory.
const BUSYBOX_FILE: &str = "busybox";
/// The 32-bit busybox kept in a cache directory (architectures with a [`Compat`] userland).
const BUSYBOX32_FILE: &str = "busybox32";
/// Where a cache directory's files came from: mirror, suite and package files (with sizes).
const SOURCE_FILE: &str = "source";
/// The Debian package with a statically linked busybox.
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The directory in a cache directory with the kernel modules the initramfs carries
/// (decompressed `<name>.ko` files and their load order, [`modules::ModuleSet`]).
const MODULES_DIR: &str = "modules";
/// The repository directory whose `*.sh` scripts the initramfs carries in `/axv/`
/// (`axv.run=NAME` on the kernel command line runs `/axv/NAME.sh`).
pub const SCRIPTS_DIR: &str = "guests/linux";

/// A fetched Linux guest: kernel, initramfs and the kernel release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealGuest {
    /// The kernel: the raw arm64 / RISC-V `Image` with its 64-byte header, or on x86_64 the
    /// bzImage (setup code, then the self-decompressing protected-mode kernel).
    pub kernel: PathBuf,
    /// The initramfs: an uncompressed newc cpio archive with busybox and `/init`.
    pub initramfs: PathBuf,
    /// The kernel release, as `uname -r` prints it (e.g. `6.1.0-50-arm64`).
    pub version: String,
}

/// What differs between architectures when fetching.
#[derive(Clone, Copy, Debug)]
struct Spec {
    arch: Arch,
    /// Debian's name of the architecture, also the kernel flavour (`linux-image-<flavour>`).
    deb_arch: &'static str,
    /// Suites to try, in order; the first whose index downloads and has the packages wins.
    suites: &'static [&'static str],
    /// ELF `e_machine` of busybox.
    elf_machine: u16,
    /// A 32-bit userland the kernel runs too, whose busybox the initramfs also holds.
    compat: Option<Compat>,
}

/// A 32-bit Debian architecture whose programs the kernel runs as compat processes (arm64
/// runs armhf: AArch32 at EL0).
#[derive(Clone, Copy, Debug)]
struct Compat {
    /// Debian's name of the architecture.
    deb_arch: &'static str,
    /// The suite its busybox comes from.
    suite: &'static str,
    /// ELF `e_machine` of its busybox (a 32-bit ELF file).
    elf_machine: u16,
}

fn spec(arch: Arch) -> Result<Spec> {
    Ok(match arch {
        Arch::Aarch64 => Spec {
            arch,
            deb_arch: "arm64",
            suites: &["bookworm"],
            elf_machine: 183,
            compat: Some(Compat {
                deb_arch: "armhf",
                suite: "bookworm",
                elf_machine: 40,
            }),
        },
        // Debian's newest suites first; riscv64 is an official architecture from trixie on.
        Arch::Riscv64 => Spec {
            arch,
            deb_arch: "riscv64",
            suites: &["testing", "unstable", "stable"],
            elf_machine: 243,
            compat: None,
        },
        Arch::X86_64 => Spec {
            arch,
            deb_arch: "amd64",
            suites: &["bookworm"],
            elf_machine: 62,
            compat: None,
        },
    })
}

/// The kernel's file name in `arch`'s cache directory.
fn kernel_file_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => BZIMAGE_FILE,
        Arch::Aarch64 | Arch::Riscv64 => IMAGE_FILE,
    }
}

/// The cache root: `$AXVISOR_GUEST_CACHE` (made absolute) or `<repository>/.cache/guests`.
pub fn cache_root() -> PathBuf {
    match std::env::var_os(ENV_CACHE) {
        // Absolute: apt runs in other directories and reads these paths from its config.
        Some(dir) if !dir.is_empty() => std::path::absolute(&dir).unwrap_or_else(|_| dir.into()),
        _ => util::repo_root().join(".cache").join("guests"),
    }
}

/// The cache directory of `arch`'s guest: `<cache root>/<arch>`.
pub fn cache_dir(arch: Arch) -> PathBuf {
    cache_root().join(arch.name())
}

/// The guest of `arch` if its cache is complete (kernel, initramfs and version present).
pub fn cached(arch: Arch) -> Option<RealGuest> {
    let dir = cache_dir(arch);
    let guest = RealGuest {
        kernel: dir.join(kernel_file_name(arch)),
        initramfs: dir.join(INITRAMFS_FILE),
        version: fs::read_to_string(dir.join(VERSION_FILE))
            .ok()?
            .trim()
            .to_owned(),
    };
    let nonempty = |p: &Path| fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0);
    (!guest.version.is_empty() && nonempty(&guest.kernel) && nonempty(&guest.initramfs))
        .then_some(guest)
}

/// The guest of `arch`, fetched first if the cache is incomplete. A cached initramfs is
/// rebuilt (from the cached busybox) if `/init` has changed since it was written.
pub fn ensure(arch: Arch) -> Result<RealGuest> {
    match cached(arch) {
        Some(guest) => {
            ensure_compat(arch)?;
            ensure_modules(arch, &guest)?;
            refresh_initramfs(arch, &guest)?;
            Ok(guest)
        }
        None => fetch(arch),
    }
}

/// The x86_64 kernel already decompressed (`bzImage-unpacked` beside the cached bzImage,
/// made when missing or older, see [`unpacked`]), for the VM configs whose kernel image is
/// `linux-unpacked`: the guest is fetched first if its cache is incomplete.
pub fn ensure_unpacked(arch: Arch) -> Result<PathBuf> {
    ensure!(
        arch == Arch::X86_64,
        "the unpacked kernel is x86_64's (a bzImage decompressed on the host); {arch} has none"
    );
    let guest = ensure(arch)?;
    unpacked::ensure(&guest.kernel, &cache_dir(arch))
}

/// Arguments of `cargo xtask guests`.
#[derive(Debug, Args)]
pub struct GuestsArgs {
    #[command(subcommand)]
    command: GuestsCommand,
}

#[derive(Debug, Subcommand)]
enum GuestsCommand {
    /// Download a Debian kernel and busybox for a foreign architecture (private apt
    /// directories, no root) and build the guest in `.cache/guests/<arch>/`; does nothing
    /// when the cache is complete.
    Fetch {
        /// Which architecture.
        #[arg(long, value_enum, default_value_t = FetchArch::All)]
        arch: FetchArch,
    },
    /// Boot the fetched kernel and initramfs directly on QEMU (no hypervisor) and check the
    /// marker line, with the right CPU count; fetches first if needed.
    BootDirect {
        /// Which architecture.
        #[arg(long, value_enum)]
        arch: Arch,
        /// Number of emulated CPUs.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=crate::qemu::MAX_CPUS as i64))]
        cpus: u32,
        /// Time limit of the boot, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Download Debian's U-Boot for QEMU (`u-boot-qemu`) into `.cache/guests/u-boot/`: the
    /// aarch64 and riscv64 binaries VM configs name as the image `u-boot`; does nothing when
    /// cached.
    FetchUboot,
}

/// `--arch` of `guests fetch`: one architecture or all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FetchArch {
    /// aarch64 only.
    Aarch64,
    /// riscv64 only.
    Riscv64,
    /// x86_64 only.
    #[value(name = "x86_64")]
    X86_64,
    /// aarch64, riscv64 and x86_64.
    All,
}

/// Runs `cargo xtask guests ...`.
pub fn run(args: GuestsArgs) -> Result<ExitCode> {
    match args.command {
        GuestsCommand::Fetch { arch } => {
            let arches: &[Arch] = match arch {
                FetchArch::Aarch64 => &[Arch::Aarch64],
                FetchArch::Riscv64 => &[Arch::Riscv64],
                FetchArch::X86_64 => &[Arch::X86_64],
                FetchArch::All => &Arch::ALL,
            };
            for &arch in arches {
                let guest = ensure_verbose(arch)?;
                println!(
                    "  kernel:    {}\n  initramfs: {}",
                    guest.kernel.display(),
                    guest.initramfs.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        GuestsCommand::BootDirect {
            arch,
            cpus,
            timeout,
        } => {
            let guest = ensure(arch)?;
            let report = boot_direct(arch, &guest, cpus, std::time::Duration::from_secs(timeout))?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        GuestsCommand::FetchUboot => uboot::fetch_verbose().map(|()| ExitCode::SUCCESS),
    }
}

/// [`ensure`], saying whether the guest was cached.
fn ensure_verbose(arch: Arch) -> Result<RealGuest> {
    if let Some(guest) = cached(arch) {
        println!(
            "{arch}: cached in {} (kernel {}); nothing to fetch",
            cache_dir(arch).display(),
            guest.version
        );
        ensure_compat(arch)?;
        ensure_modules(arch, &guest)?;
        refresh_initramfs(arch, &guest)?;
        return Ok(guest);
    }
    let start = Instant::now();
    let guest = fetch(arch)?;
    println!(
        "{arch}: fetched kernel {} in {}",
        guest.version,
        util::secs(start.elapsed())
    );
    Ok(guest)
}

/// Downloads and builds `arch`'s guest into its cache directory, whatever is there.
fn fetch(arch: Arch) -> Result<RealGuest> {
    let spec = spec(arch)?;
    let root = cache_root();
    let out = cache_dir(arch);
    let apt_dir = root.join(format!("apt-{}", arch.name()));
    let mirror = apt::system_mirror();
    println!(
        "{arch}: fetching Debian {} packages from {} into {}",
        spec.deb_arch,
        mirror.uri,
        apt_dir.display()
    );
    let apt = apt::PrivateApt::create(&apt_dir, spec.deb_arch, &apt::carried_settings())?;
    let (suite, release) = choose_suite(&spec, &apt, &mirror)?;
    let image_depends = apt.depends(&format!("linux-image-{release}"))?;
    let kernel_package = apt::image_package(&release, &image_depends);
    let module_packages = apt::module_packages(&release, &image_depends);
    println!("{arch}: suite {suite}, kernel {release} in {kernel_package}");

    let mut packages = vec![kernel_package.as_str(), BUSYBOX_PACKAGE];
    packages.extend(module_packages.iter().map(String::as_str));
    let (tree, mut downloaded) = download(&apt, &apt_dir, &packages)?;
    let total: u64 = downloaded.iter().map(|(_, size)| size).sum();
    println!(
        "{arch}: downloaded {:.1} MB of packages",
        total as f64 / 1e6
    );

    let kernel_file = find_kernel(&tree, &release)?;
    let image = match arch {
        Arch::X86_64 => bzimage(&kernel_file)?,
        Arch::Aarch64 | Arch::Riscv64 => raw_kernel(&kernel_file, arch)
            .with_context(|| format!("turning {} into a raw Image", kernel_file.display()))?,
    };
    let busybox = read_busybox(&tree, Elf::Bits64, spec.elf_machine)?;
    let modules = pick_modules(arch, &tree, &release)?;
    let compat = match spec.compat {
        Some(compat) => {
            let (busybox32, package) = fetch_compat(arch, compat, &mirror)?;
            downloaded.push(package);
            Some(busybox32)
        }
        None => None,
    };

    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // An old `version` would make a half-written cache look complete.
    let version_path = out.join(VERSION_FILE);
    if version_path.exists() {
        fs::remove_file(&version_path)
            .with_context(|| format!("removing {}", version_path.display()))?;
    }
    write_atomically(&out.join(kernel_file_name(arch)), &image)?;
    write_atomically(&out.join(BUSYBOX_FILE), &busybox)?;
    if let Some(busybox32) = &compat {
        write_atomically(&out.join(BUSYBOX32_FILE), busybox32)?;
    }
    modules.write(&out.join(MODULES_DIR))?;
    write_atomically(
        &out.join(INITRAMFS_FILE),
        &initramfs(&Userland {
            busybox: &busybox,
            busybox32: compat.as_deref(),
            release: &release,
            modules: &modules,
            scripts: &scripts()?,
        }),
    )?;
    let mut source = format!("mirror {}\nsuite {suite}\n", mirror.uri);
    for (name, size) in &downloaded {
        source.push_str(&format!("package {name} {size}\n"));
    }
    write_atomically(&out.join(SOURCE_FILE), source.as_bytes())?;
    write_atomically(&version_path, format!("{release}\n").as_bytes())?;
    // The extracted tree holds every module (hundreds of MB), the package lists and apt's
    // binary caches another hundred; none is needed once the guest is written (a new fetch
    // runs `apt-get update` again). The private apt.conf and sources stay, to show how.
    clean_apt_dir(&apt_dir)?;
    cached(arch).context("the cache is incomplete right after writing it")
}

/// Removes what a download left in a private apt directory: the extracted tree (every
/// module, hundreds of MB), the packages, the package lists and apt's binary caches; none
/// is needed once the guest is written (a new fetch runs `apt-get update` again). The
/// private apt.conf and sources stay, to show how.
pub(crate) fn clean_apt_dir(apt_dir: &Path) -> Result<()> {
    for dir in ["tree", "debs", "lists", "cache"] {
        remove_dir_if_present(&apt_dir.join(dir))?;
    }
    Ok(())
}

/// Downloads `packages` with `apt` into `<apt_dir>/debs` and extracts each into
/// `<apt_dir>/tree` (both emptied first). Returns the tree and each package file's name
/// and size, sorted.
pub(crate) fn download(
    apt: &apt::PrivateApt,
    apt_dir: &Path,
    packages: &[&str],
) -> Result<(PathBuf, Vec<(String, u64)>)> {
    let debs = apt_dir.join("debs");
    let tree = apt_dir.join("tree");
    for dir in [&debs, &tree] {
        remove_dir_if_present(dir)?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut download = apt.command("apt-get");
    download
        .args(["-q", "download"])
        .args(packages)
        .current_dir(&debs);
    apt.run(download)?;
    let mut downloaded: Vec<(String, u64)> = Vec::new();
    for entry in fs::read_dir(&debs).with_context(|| format!("reading {}", debs.display()))? {
        let deb = entry?.path();
        let size = fs::metadata(&deb)
            .with_context(|| format!("reading {}", deb.display()))?
            .len();
        let name = deb.file_name().unwrap_or_default().to_string_lossy();
        downloaded.push((name.into_owned(), size));
        let mut x = Command::new("dpkg-deb");
        x.arg("-x").arg(&deb).arg(&tree);
        util::run(x)?;
    }
    downloaded.sort();
    Ok((tree, downloaded))
}

/// The busybox binary of an extracted `busybox-static`, checked to be an ELF file of
/// `class` for `machine`.
fn read_busybox(tree: &Path, class: Elf, machine: u16) -> Result<Vec<u8>> {
    let file = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| tree.join(p))
        .find(|p| p.is_file())
        .with_context(|| format!("{BUSYBOX_PACKAGE} has no bin/busybox or usr/bin/busybox"))?;
    let busybox = fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    check_elf(&busybox, class, machine).with_context(|| format!("checking {}", file.display()))?;
    Ok(busybox)
}

/// Downloads the `compat` architecture's `busybox-static` through its own private apt
/// (`apt-<arch>-<compat arch>/`). Returns the binary and the package file's name and size.
fn fetch_compat(
    arch: Arch,
    compat: Compat,
    mirror: &apt::Mirror,
) -> Result<(Vec<u8>, (String, u64))> {
    let apt_dir = cache_root().join(format!("apt-{}-{}", arch.name(), compat.deb_arch));
    println!(
        "{arch}: fetching Debian {} {BUSYBOX_PACKAGE} (32-bit programs) into {}",
        compat.deb_arch,
        apt_dir.display()
    );
    let apt = apt::PrivateApt::create(&apt_dir, compat.deb_arch, &apt::carried_settings())?;
    apt.set_suite(mirror, compat.suite)?;
    let mut update = apt.command("apt-get");
    update.args(["-q", "update"]);
    apt.run(update)?;
    let (tree, mut downloaded) = download(&apt, &apt_dir, &[BUSYBOX_PACKAGE])?;
    let busybox = read_busybox(&tree, Elf::Bits32, compat.elf_machine)?;
    clean_apt_dir(&apt_dir)?;
    let package = downloaded
        .pop()
        .context("apt-get download gave no package file")?;
    Ok((busybox, package))
}

/// Adds the 32-bit busybox to a complete cache that lacks it (one fetched before the
/// architecture had a [`Compat`] userland), noting its package in `source`; the caller
/// then rebuilds the initramfs.
fn ensure_compat(arch: Arch) -> Result<()> {
    let Some(compat) = spec(arch)?.compat else {
        return Ok(());
    };
    let dir = cache_dir(arch);
    let path = dir.join(BUSYBOX32_FILE);
    if path.is_file() {
        return Ok(());
    }
    let (busybox32, (name, size)) = fetch_compat(arch, compat, &apt::system_mirror())?;
    write_atomically(&path, &busybox32)?;
    let source_path = dir.join(SOURCE_FILE);
    let mut source = fs::read_to_string(&source_path).unwrap_or_default();
    source.push_str(&format!("package {name} {size}\n"));
    write_atomically(&source_path, source.as_bytes())
}

/// Picks the initramfs's kernel modules ([`modules::WANTED`] and what they need) from an
/// extracted kernel package tree, saying which are built in or missing.
fn pick_modules(arch: Arch, tree: &Path, release: &str) -> Result<modules::ModuleSet> {
    let set = modules::pick(tree, release)
        .with_context(|| format!("picking the kernel modules of {release}"))?;
    let size: usize = set.modules.iter().map(|(_, ko)| ko.len()).sum();
    let names: Vec<&str> = set.modules.iter().map(|(n, _)| n.as_str()).collect();
    println!(
        "{arch}: {} modules ({:.1} MB decompressed), in load order: {}",
        names.len(),
        size as f64 / 1e6,
        names.join(" ")
    );
    if !set.builtin.is_empty() {
        println!("{arch}: built into the kernel: {}", set.builtin.join(" "));
    }
    if !set.absent.is_empty() {
        println!(
            "{arch}: not in kernel {release} at all (left out): {}",
            set.absent.join(" ")
        );
    }
    Ok(set)
}

/// Gives a complete cache without the current module set (fetched before the initramfs
/// carried modules, or with another [`modules::WANTED`] list) its modules: downloads the
/// kernel's module packages again (the suite from `source`), picks the modules and
/// notes the packages in `source`; the caller then rebuilds the initramfs.
fn ensure_modules(arch: Arch, guest: &RealGuest) -> Result<()> {
    let dir = cache_dir(arch);
    if modules::ModuleSet::read(&dir.join(MODULES_DIR)).is_some() {
        return Ok(());
    }
    let source_path = dir.join(SOURCE_FILE);
    let mut source = fs::read_to_string(&source_path).unwrap_or_default();
    let suite = source
        .lines()
        .find_map(|line| line.strip_prefix("suite "))
        .context("the cache's `source` names no suite; delete the cache directory to fetch again")?
        .trim()
        .to_owned();
    let spec = spec(arch)?;
    let apt_dir = cache_root().join(format!("apt-{}", arch.name()));
    let mirror = apt::system_mirror();
    println!(
        "{arch}: the cache has no kernel modules (or an older set); fetching kernel {}'s \
         modules from {} suite {suite}",
        guest.version, mirror.uri
    );
    let apt = apt::PrivateApt::create(&apt_dir, spec.deb_arch, &apt::carried_settings())?;
    apt.set_suite(&mirror, &suite)?;
    let mut update = apt.command("apt-get");
    update.args(["-q", "update"]);
    apt.run(update)?;
    let release = &guest.version;
    let image_depends = apt.depends(&format!("linux-image-{release}"))?;
    let mut packages = apt::module_packages(release, &image_depends);
    if packages.is_empty() {
        // The old single-package layout: the modules are in the kernel's own package.
        packages.push(apt::image_package(release, &image_depends));
    }
    let names: Vec<&str> = packages.iter().map(String::as_str).collect();
    let picked = download(&apt, &apt_dir, &names)
        .and_then(|(tree, downloaded)| Ok((pick_modules(arch, &tree, release)?, downloaded)));
    clean_apt_dir(&apt_dir)?;
    let (set, downloaded) = picked.with_context(|| {
        format!(
            "fetching the modules of the cached kernel {release} (if the suite no longer has \
             it, delete {} to fetch a newer kernel)",
            dir.display()
        )
    })?;
    set.write(&dir.join(MODULES_DIR))?;
    for (name, size) in downloaded {
        let line = format!("package {name} {size}\n");
        if !source.contains(&line) {
            source.push_str(&line);
        }
    }
    write_atomically(&source_path, source.as_bytes())
}

/// The guest scripts of [`SCRIPTS_DIR`]: each `*.sh` file's name and contents, by name.
pub fn scripts() -> Result<Vec<(String, Vec<u8>)>> {
    let dir = util::repo_root().join(SCRIPTS_DIR);
    let mut scripts = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(scripts),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".sh") && path.is_file() {
            let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            scripts.push((name, data));
        }
    }
    scripts.sort();
    Ok(scripts)
}

/// Tries `spec.suites` in order: the first whose index downloads and that has the kernel
/// metapackage and busybox wins. Returns the suite and the kernel release.
fn choose_suite(
    spec: &Spec,
    apt: &apt::PrivateApt,
    mirror: &apt::Mirror,
) -> Result<(String, String)> {
    let meta = format!("linux-image-{}", spec.deb_arch);
    let mut tried = Vec::new();
    for suite in spec.suites {
        apt.set_suite(mirror, suite)?;
        let mut update = apt.command("apt-get");
        update.args(["-q", "update"]);
        let attempt = apt.run(update).and_then(|()| {
            let release =
                apt::kernel_release(&apt.depends(&meta)?, spec.deb_arch).with_context(|| {
                    format!(
                        "{meta} depends on no linux-image-<version>-{}",
                        spec.deb_arch
                    )
                })?;
            ensure!(apt.has_package(BUSYBOX_PACKAGE), "no {BUSYBOX_PACKAGE}");
            Ok(release)
        });
        match attempt {
            Ok(release) => return Ok((suite.to_string(), release)),
            Err(e) => {
                println!("{}: suite {suite} does not serve: {e:#}", spec.arch);
                tried.push(format!("{suite}: {e:#}"));
            }
        }
    }
    bail!(
        "no Debian suite on {} serves a {} kernel and busybox:\n  {}",
        mirror.uri,
        spec.deb_arch,
        tried.join("\n  ")
    )
}

/// The kernel file of `release` in an extracted package tree: `boot/vmlinuz-<release>`
/// (Debian up to 6.x) or `usr/lib/modules/<release>/vmlinuz` (the newer layout).
fn find_kernel(tree: &Path, release: &str) -> Result<PathBuf> {
    let candidates = [
        format!("boot/vmlinuz-{release}"),
        format!("boot/vmlinux-{release}"),
        format!("usr/lib/modules/{release}/vmlinuz"),
        format!("lib/modules/{release}/vmlinuz"),
    ];
    candidates
        .iter()
        .map(|c| tree.join(c))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no kernel in {} (looked for {})",
                tree.display(),
                candidates.join(", ")
            )
        })
}

/// Offset of the magic number in the arm64 and RISC-V Image headers.
const IMAGE_MAGIC_OFFSET: usize = 0x38;

/// Checks that `image` is a kernel for `arch`: a raw Image with the 64-byte header with the
/// arm64 magic `ARM\x64` or the RISC-V magic `RSC\x05` at 0x38, or on x86_64 a bzImage
/// whose setup header offers the 64-bit boot protocol (see [`axbootx86::BzImage::parse`]).
pub fn check_image_header(image: &[u8], arch: Arch) -> Result<()> {
    let magic: &[u8; 4] = match arch {
        Arch::Aarch64 => b"ARM\x64",
        Arch::Riscv64 => b"RSC\x05",
        Arch::X86_64 => {
            axbootx86::BzImage::parse(image)
                .map_err(|e| anyhow::anyhow!("not a bootable x86_64 bzImage: {e}"))?;
            return Ok(());
        }
    };
    let found = image.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4);
    ensure!(
        found == Some(&magic[..]),
        "not a raw {arch} Image: expected the magic {magic:?} at 0x38, found {found:?}"
    );
    Ok(())
}

/// What a kernel file is packed with, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// Not compressed (or not a format this knows).
    Plain,
    /// gzip (`1f 8b`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Packing {
    /// Recognises the compression of `data` by its magic number.
    pub fn of(data: &[u8]) -> Packing {
        if data.starts_with(&[0x1f, 0x8b]) {
            Packing::Gzip
        } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Packing::Xz
        } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Packing::Zstd
        } else {
            Packing::Plain
        }
    }

    /// The command that decompresses standard input to standard output.
    fn decompressor(self) -> Option<&'static str> {
        match self {
            Packing::Plain => None,
            Packing::Gzip => Some("gzip"),
            Packing::Xz => Some("xz"),
            Packing::Zstd => Some("zstd"),
        }
    }
}

/// Reads the kernel file, decompresses it if it is gzip, xz or zstd, and checks the Image
/// header. An EFI "zboot" image (`MZ`, then `zimg` at 4) is refused: it would need its
/// payload cut out first.
fn raw_kernel(path: &Path, arch: Arch) -> Result<Vec<u8>> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        data.get(4..8) != Some(b"zimg"),
        "an EFI zboot image (compressed payload inside a PE file) is not supported"
    );
    let packing = Packing::of(&data);
    let image = match packing.decompressor() {
        None => data,
        Some(tool) => {
            println!("{arch}: the kernel is {packing:?}-compressed; decompressing with {tool}");
            decompress(tool, path)?
        }
    };
    check_image_header(&image, arch)?;
    Ok(image)
}

/// Reads an x86_64 kernel file and checks its setup header. It stays as it is: a bzImage
/// decompresses itself (Debian's is XZ inside), so it is not unpacked here.
fn bzimage(path: &Path) -> Result<Vec<u8>> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    check_image_header(&data, Arch::X86_64)
        .with_context(|| format!("checking {}", path.display()))?;
    let image = axbootx86::BzImage::parse(&data).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "x86_64: bzImage, boot protocol {}.{:02}, {:.1} MB, needs {:.1} MB from {:#x} to decompress",
        image.version >> 8,
        image.version & 0xff,
        data.len() as f64 / 1e6,
        f64::from(image.init_size) / 1e6,
        image.load_address()
    );
    Ok(data)
}

fn decompress(tool: &str, path: &Path) -> Result<Vec<u8>> {
    let mut cmd = Command::new(tool);
    cmd.arg("-dc").arg(path).stdin(Stdio::null());
    let shown = util::display_command(&cmd);
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The class of an ELF file (`EI_CLASS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elf {
    /// ELFCLASS32.
    Bits32 = 1,
    /// ELFCLASS64.
    Bits64 = 2,
}

/// Checks that `data` is a little-endian ELF file of `class` for `machine` (`e_machine`).
fn check_elf(data: &[u8], class: Elf, machine: u16) -> Result<()> {
    ensure!(data.starts_with(b"\x7fELF"), "not an ELF file");
    let bits = if class == Elf::Bits64 { 64 } else { 32 };
    ensure!(
        data.get(4..6) == Some(&[class as u8, 1][..]),
        "not a {bits}-bit little-endian ELF file"
    );
    let found = data
        .get(0x12..0x14)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .unwrap_or_default();
    ensure!(found == machine, "ELF machine {found}, expected {machine}");
    Ok(())
}

/// The `/init` script. It mounts proc, sysfs and devtmpfs, installs busybox's applets in
/// `/bin`, loads the kernel modules listed in `/lib/modules/<release>/modules.load` (a
/// missing or refused module is one `axv-init:` line) and then does what the kernel command
/// line asks: `axv.mode=shell` an interactive shell on the console (respawned when it
/// exits), `axv.run=NAME` the script `/axv/NAME.sh` (`axv.run=A,B`: `A.sh`, then `B.sh`)
/// and power-off, otherwise (the default) the marker line and power-off.
pub const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
# /init of the axvisor real-guest initramfs (written by `cargo xtask guests fetch`;
# docs/real-guests.md).
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
# The console's own device (ttyAMA0, ttyS0, hvc0), disks and the like.
$bb mount -t devtmpfs devtmpfs /dev 2>/dev/null
$bb --install -s /bin
export PATH=/bin HOME=/root TERM=vt100
release=$($bb uname -r)
# Kernel modules, in dependency order (written by `guests fetch`).
m=/lib/modules/$release
if [ -f $m/modules.load ]; then
    for mod in $($bb cat $m/modules.load); do
        if [ ! -f $m/$mod.ko ]; then
            echo "axv-init: module $mod: missing from $m"
        elif ! $bb insmod $m/$mod.ko; then
            echo "axv-init: module $mod: insmod failed"
        fi
    done
else
    echo "axv-init: no module list for kernel $release ($m/modules.load)"
fi
# The console again: with console=hvc0 and virtio_console a module, the kernel found no
# console for /init, and there is one only now.
if (: </dev/console) 2>/dev/null; then
    exec </dev/console >/dev/console 2>&1
fi
mode=marker
run=
host=linux
for arg in $($bb cat /proc/cmdline); do
    case $arg in
        axv.mode=*) mode=${arg#axv.mode=} ;;
        axv.run=*) mode=run; run=${arg#axv.run=} ;;
        axv.hostname=*) host=${arg#axv.hostname=} ;;
    esac
done
$bb hostname "$host"
case $mode in
shell)
    export PS1='\h:\w# '
    echo "axv-init: shell on $($bb cat /sys/class/tty/console/active 2>/dev/null)"
    # setsid + cttyhack: a session whose controlling terminal is the console's device,
    # so job control and Ctrl-C work. A shell that exits is started again.
    while :; do
        $bb setsid $bb cttyhack $bb sh
        echo "axv-init: the shell exited; starting a new one"
        $bb sleep 1
    done
    ;;
run)
    # NAME or NAME,NAME,...: each script in turn, whatever the one before returned.
    [ -n "$run" ] || echo "axv-init: axv.run=: not a script name"
    for one in $(echo "$run" | $bb tr , ' '); do
        case $one in
            */*) echo "axv-init: axv.run=$one: not a script name" ;;
            *)
                if [ -f /axv/$one.sh ]; then
                    $bb sh /axv/$one.sh
                    echo "axv-init: $one.sh exited with status $?"
                else
                    echo "axv-init: axv.run=$one: no /axv/$one.sh (scripts: $($bb ls /axv 2>/dev/null))"
                fi
                ;;
        esac
    done
    $bb poweroff -f
    ;;
marker) ;;
*) echo "axv-init: unknown axv.mode=$mode (shell, or none for the marker); the marker follows" ;;
esac
# /sys/devices/system/cpu/online is a list of ranges such as "0-3" or "0,2-3".
cpus=$($bb awk -F, '{ n = 0; for (i = 1; i <= NF; i++) { k = split($i, r, "-"); n += (k == 2) ? r[2] - r[1] + 1 : 1 } print n }' /sys/devices/system/cpu/online)
[ -n "$cpus" ] || cpus=$($bb nproc)
# A 32-bit busybox, where the initramfs has one (aarch64: armhf), run as a compat process;
# under linux32 (PER_LINUX32) its uname says armv8l.
compat=none
# One word, whatever it printed (an error, if the kernel refused it).
[ -e /bin/busybox32 ] && compat=$(/bin/busybox32 linux32 /bin/busybox32 uname -m 2>&1 | $bb head -n 1 | $bb tr -c 'a-zA-Z0-9_.\n-' _)
echo "AXVISOR-LINUX-MARKER kernel=$release cpus=$cpus compat=$compat"
$bb poweroff -f
"#;

/// What goes into the initramfs besides `/init`.
#[derive(Clone, Copy, Debug)]
pub struct Userland<'a> {
    /// The static busybox, `/bin/busybox`.
    pub busybox: &'a [u8],
    /// A 32-bit static busybox, `/bin/busybox32`, where the kernel runs 32-bit programs.
    pub busybox32: Option<&'a [u8]>,
    /// The kernel release: the modules go to `/lib/modules/<release>/`.
    pub release: &'a str,
    /// The kernel modules and their load order.
    pub modules: &'a modules::ModuleSet,
    /// The guest scripts (name, contents), put in `/axv/`.
    pub scripts: &'a [(String, Vec<u8>)],
}

/// The initramfs: `/bin/busybox`, `/init`, the directories they need and `/dev/console`,
/// `/bin/busybox32` when there is a 32-bit busybox, the modules in
/// `/lib/modules/<release>/` (`<name>.ko` and `modules.load`) and the scripts in `/axv/`.
pub fn initramfs(userland: &Userland<'_>) -> Vec<u8> {
    let mut a = newc::Newc::new();
    for dir in [
        "axv",
        "bin",
        "dev",
        "lib",
        "lib/modules",
        "proc",
        "sys",
        "tmp",
    ] {
        a.dir(dir, 0o755);
    }
    // The console Linux opens for /init before any file system is mounted (5:1).
    a.char_dev("dev/console", 0o600, 5, 1);
    a.file("bin/busybox", 0o755, userland.busybox);
    if let Some(busybox32) = userland.busybox32 {
        a.file("bin/busybox32", 0o755, busybox32);
    }
    let lib = format!("lib/modules/{}", userland.release);
    a.dir(&lib, 0o755);
    for (name, ko) in &userland.modules.modules {
        a.file(&format!("{lib}/{name}.ko"), 0o644, ko);
    }
    a.file(
        &format!("{lib}/{}", modules::LOAD_FILE),
        0o644,
        userland.modules.load_list().as_bytes(),
    );
    for (name, script) in userland.scripts {
        a.file(&format!("axv/{name}"), 0o755, script);
    }
    a.file("init", 0o755, INIT_SCRIPT.as_bytes());
    a.finish()
}

/// Rewrites a cached initramfs if it differs from what [`initramfs`] builds from the cached
/// busybox, 32-bit busybox, modules and the current scripts: an older `/init`, a changed
/// script, or a part added since. Without a cached busybox it is left alone.
fn refresh_initramfs(arch: Arch, guest: &RealGuest) -> Result<()> {
    let dir = cache_dir(arch);
    let Ok(busybox) = fs::read(dir.join(BUSYBOX_FILE)) else {
        return Ok(());
    };
    let busybox32 = fs::read(dir.join(BUSYBOX32_FILE)).ok();
    let modules = modules::ModuleSet::read(&dir.join(MODULES_DIR)).unwrap_or_default();
    let fresh = initramfs(&Userland {
        busybox: &busybox,
        busybox32: busybox32.as_deref(),
        release: &guest.version,
        modules: &modules,
        scripts: &scripts()?,
    });
    if fs::read(&guest.initramfs).ok().as_deref() != Some(&fresh[..]) {
        println!(
            "{arch}: /init, a script or the modules changed; rebuilding {}",
            guest.initramfs.display()
        );
        write_atomically(&guest.initramfs, &fresh)?;
    }
    Ok(())
}

/// Writes `path` through a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    let mut file = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

pub(crate) fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_with(magic: &[u8; 4]) -> Vec<u8> {
        let mut image = vec![0u8; 64];
        image[0x38..0x3c].copy_from_slice(magic);
        image
    }

    #[test]
    fn image_headers() {
        assert!(check_image_header(&header_with(b"ARM\x64"), Arch::Aarch64).is_ok());
        assert!(check_image_header(&header_with(b"RSC\x05"), Arch::Riscv64).is_ok());
        assert!(check_image_header(&header_with(b"RSC\x05"), Arch::Aarch64).is_err());
        assert!(check_image_header(&[0u8; 16], Arch::Riscv64).is_err());
        assert!(check_image_header(&header_with(b"ARM\x64"), Arch::X86_64).is_err());
    }

    /// A bzImage head as `make bzImage` writes it (protocol 2.15, 64-bit entry), with
    /// `setup_sects` 3 and 4 KiB of "protected-mode kernel".
    fn bzimage_with(version: u16, xloadflags: u16) -> Vec<u8> {
        let mut file = vec![0u8; 4 * 512 + 4096];
        file[0x1f1] = 3;
        file[0x1f4..0x1f8].copy_from_slice(&(4096u32 / 16).to_le_bytes());
        file[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        file[0x201] = 0x6a; // the header ends at 0x26c
        file[0x202..0x206].copy_from_slice(b"HdrS");
        file[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        file[0x211] = 1; // LOADED_HIGH
        file[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        file
    }

    #[test]
    fn bzimage_headers() {
        assert!(check_image_header(&bzimage_with(0x020f, 3), Arch::X86_64).is_ok());
        let old = check_image_header(&bzimage_with(0x020a, 3), Arch::X86_64).unwrap_err();
        assert!(format!("{old:#}").contains("older than 2.12"), "{old:#}");
        let no64 = check_image_header(&bzimage_with(0x020f, 2), Arch::X86_64).unwrap_err();
        assert!(format!("{no64:#}").contains("64-bit entry"), "{no64:#}");
        // An arm64 Image is not a bzImage.
        assert!(check_image_header(&header_with(b"ARM\x64"), Arch::X86_64).is_err());
        assert!(check_image_header(&bzimage_with(0x020f, 3), Arch::Aarch64).is_err());
    }

    /// Debian's kernel, when `guests fetch --arch x86_64` has run: a bzImage that
    /// axbootx86 places in a 2-vCPU VM with 256 MiB of RAM, with the marker initramfs.
    #[test]
    fn cached_x86_64_kernel_fits_a_256_mib_vm() {
        let Some(guest) = cached(Arch::X86_64) else {
            eprintln!("no cached x86_64 guest (cargo xtask guests fetch --arch x86_64); skipped");
            return;
        };
        let file = fs::read(&guest.kernel).unwrap();
        let image = axbootx86::BzImage::parse(&file).unwrap();
        assert!(image.version >= 0x020c && image.relocatable);
        let config = axvmconfig::from_toml(
            "id = 1\nname = \"linux\"\n[cpus]\ncount = 2\npin = [0, 1]\n\
             [kernel]\nimage = \"linux\"\nload_addr = 0x1000000\nentry = 0x1000200\n\
             [[memory]]\ngpa = 0\nsize = 0x10000000\nmap = \"alloc\"\n",
        )
        .unwrap();
        let initrd = fs::metadata(&guest.initramfs).unwrap().len();
        let plan = axbootx86::plan(&config, &image, "console=ttyS0", Some(initrd)).unwrap();
        assert_eq!(plan.entry, image.load_address() + 0x200);
        assert!(plan.initrd.unwrap().start >= plan.kernel_footprint.end);
    }

    #[test]
    fn packing_by_magic() {
        assert_eq!(Packing::of(&[0x1f, 0x8b, 8, 0]), Packing::Gzip);
        assert_eq!(Packing::of(b"\xfd7zXZ\0rest"), Packing::Xz);
        assert_eq!(Packing::of(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Packing::Zstd);
        assert_eq!(Packing::of(b"MZ\x6f\x10"), Packing::Plain);
    }

    #[test]
    fn elf_machine_check() {
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x12..0x14].copy_from_slice(&183u16.to_le_bytes());
        assert!(check_elf(&elf, Elf::Bits64, 183).is_ok());
        assert!(check_elf(&elf, Elf::Bits64, 243).is_err());
        assert!(check_elf(&elf, Elf::Bits32, 183).is_err());
        assert!(check_elf(b"#!/bin/sh", Elf::Bits64, 183).is_err());
        let mut arm = vec![0u8; 52];
        arm[..6].copy_from_slice(b"\x7fELF\x01\x01");
        arm[0x12..0x14].copy_from_slice(&40u16.to_le_bytes());
        assert!(check_elf(&arm, Elf::Bits32, 40).is_ok());
        assert!(check_elf(&arm, Elf::Bits64, 40).is_err());
    }

    #[test]
    fn initramfs_holds_init_busybox_and_console() {
        let none = modules::ModuleSet::default();
        let archive = initramfs(&Userland {
            busybox: b"\x7fELF-busybox",
            busybox32: None,
            release: "6.1.0-50-arm64",
            modules: &none,
            scripts: &[],
        });
        let text = String::from_utf8_lossy(&archive);
        for name in [
            "bin\0",
            "dev/console\0",
            "bin/busybox\0",
            "init\0",
            "TRAILER!!!\0",
        ] {
            assert!(text.contains(name), "{name:?}");
        }
        assert!(text.contains("#!/bin/busybox sh\n"));
        assert!(INIT_SCRIPT.contains(MARKER));
        assert_eq!(archive.len() % 512, 0);
        assert!(!text.contains("bin/busybox32\0"));
        let set = modules::ModuleSet {
            modules: vec![
                ("failover".into(), b"\x7fELF-failover".to_vec()),
                ("virtio_net".into(), b"\x7fELF-virtio-net".to_vec()),
            ],
            ..modules::ModuleSet::default()
        };
        let with32 = initramfs(&Userland {
            busybox: b"\x7fELF-busybox",
            busybox32: Some(b"\x7fELF-busybox32"),
            release: "6.1.0-50-arm64",
            modules: &set,
            scripts: &[("blk.sh".into(), b"echo blk\n".to_vec())],
        });
        let text = String::from_utf8_lossy(&with32);
        assert!(text.contains("bin/busybox32\0"));
        assert!(text.contains("\x7fELF-busybox32"));
        for name in [
            "lib/modules/6.1.0-50-arm64\0",
            "lib/modules/6.1.0-50-arm64/failover.ko\0",
            "lib/modules/6.1.0-50-arm64/virtio_net.ko\0",
            "lib/modules/6.1.0-50-arm64/modules.load\0",
            "axv/blk.sh\0",
        ] {
            assert!(text.contains(name), "{name:?}");
        }
        assert!(text.contains("failover\nvirtio_net\n"));
        // Directories come before what they hold.
        assert!(text.find("lib/modules\0") < text.find("lib/modules/6.1.0-50-arm64\0"));
    }

    /// The modes of `/init` are chosen by the kernel command line.
    #[test]
    fn init_modes() {
        for needle in [
            "axv.mode=*)",
            "axv.run=*)",
            "/axv/$one.sh",
            "tr , ' '",
            "cttyhack",
            "modules.load",
            "poweroff -f",
        ] {
            assert!(INIT_SCRIPT.contains(needle), "{needle}");
        }
    }

    /// The guest scripts in the repository are all shell scripts with a `#!` line.
    #[test]
    fn guest_scripts() {
        for (name, script) in scripts().unwrap() {
            assert!(
                script.starts_with(b"#!/bin/sh\n"),
                "{name} must start with #!/bin/sh"
            );
        }
    }

    #[test]
    fn fetch_specs() {
        assert_eq!(spec(Arch::Aarch64).unwrap().deb_arch, "arm64");
        assert_eq!(spec(Arch::Riscv64).unwrap().suites[0], "testing");
        assert_eq!(
            spec(Arch::Aarch64).unwrap().compat.unwrap().deb_arch,
            "armhf"
        );
        assert!(spec(Arch::Riscv64).unwrap().compat.is_none());
        let x86 = spec(Arch::X86_64).unwrap();
        assert_eq!(
            (x86.deb_arch, x86.suites, x86.elf_machine),
            ("amd64", &["bookworm"][..], 62)
        );
        assert!(x86.compat.is_none());
        assert_eq!(kernel_file_name(Arch::X86_64), "bzImage");
        assert_eq!(kernel_file_name(Arch::Aarch64), "Image");
    }
}
