//! Bochs, the emulator that runs the x86_64 hypervisor with Intel VMX: the boot ISO
//! (ISOLINUX's `mboot.c32` loading the multiboot hypervisor ELF), the generated bochsrc,
//! and a headless run whose serial console arrives line by line. See `docs/testing.md`
//! ("Bochs") for the recipe and its traps.
//!
//! Bochs has no headless display: its `term` display needs a terminal, so a run goes
//! through `script` (a pseudo-terminal), and the display, which Bochs puts on a private
//! pseudo-terminal it names on its standard error, is read and thrown away (Bochs blocks
//! once that terminal's buffer is full). The guest's serial port is a file, read as it
//! grows. The debugger Debian's Bochs is built with stops before the first instruction;
//! a command file with `c` lets it run.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::arch::MemSize;
use crate::matcher::clean_line;
use crate::realguest::{self, apt};
use crate::scenario::{Event, Stream};
use crate::util;

/// The CPU Bochs emulates unless told otherwise: Skylake-X, with VMX, EPT, VPID,
/// unrestricted guest, the preemption timer and x2APIC (see `docs/x86.md`).
pub const DEFAULT_CPU_MODEL: &str = "corei7_skylake_x";
/// Emulated instructions per emulated second (`cpu: ips=`): what turns the guest's timers
/// into instruction counts. With `clock: sync=none` the TSC advances one per instruction.
pub const IPS: u64 = 100_000_000;
/// Bochs' largest host memory (`memory: host=`), in MiB; a larger guest RAM is backed by
/// this much host memory (Bochs swaps blocks).
pub const MAX_HOST_MEGS: u64 = 2048;
/// What Bochs logs (as a panic) when the guest writes `Shutdown` to port 0x8900; Bochs then
/// exits with status 1, which a run reports as a clean exit (status 0).
pub const SHUTDOWN_LOG: &str = "Shutdown port: shutdown requested";
/// How Bochs marks a panic in its log.
const PANIC_LOG: &str = ">>PANIC<<";
/// The start of the line in which the `term` display names its private pseudo-terminal,
/// followed by the path and a closing `"`.
const SCREEN_LINE: &str = "Bochs connected to screen \"";
/// Printed by the shell `script` starts, with its process id, before it becomes Bochs.
const PID_LINE: &str = "AXVISOR_BOCHS_PID=";
/// The terminal type Bochs' curses display is told it draws on (its output is discarded;
/// without `TERM`, as in CI, curses refuses to start).
const TERM: &str = "vt100";
/// The BIOS and VGA BIOS images (packages `bochsbios` and `vgabios`).
const ROM_IMAGE: &str = "/usr/share/bochs/BIOS-bochs-latest";
const VGA_ROM_IMAGE: &str = "/usr/share/bochs/VGABIOS-lgpl-latest";
/// Fixed names inside a run's private directory; the bochsrc names only these.
const RUN_ISO: &str = "boot.iso";
const RUN_SERIAL: &str = "serial.txt";
const RUN_COM2: &str = "com2.txt";
const RUN_LOG: &str = "bochs.log";
const RUN_BOCHSRC: &str = "bochsrc";
const RUN_DEBUGGER_RC: &str = "debugger.rc";
/// Bochs' standard error before the message it stops with.
const EXIT_LINE: &str = "Bochs is exiting with the following message:";
/// The prefix of Bochs' start-up messages (instruction 0, level info), left out of the
/// console transcript.
const STARTUP_INFO: &str = "00000000000i[";
/// How much of the end of Bochs' log is searched for its last words.
const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// How often the serial file is polled for new output.
const SERIAL_POLL: Duration = Duration::from_millis(20);

/// Debian packages the boot ISO is made from: ISOLINUX and its modules, and xorriso with
/// the libraries a Debian 12 host lacks. Downloaded, not installed (no root needed).
pub const PACKAGES: &[&str] = &[
    "isolinux",
    "syslinux-common",
    "xorriso",
    "libisoburn1",
    "libisofs6",
    "libburn4",
    "libjte2",
];
/// The ISOLINUX modules the ISO carries: ISOLINUX's core (loaded by `isolinux.bin`), the
/// multiboot loader, and the library the loader is linked against.
const MODULES: &[&str] = &["ldlinux.c32", "mboot.c32", "libcom32.c32"];
/// The Debian suite the packages come from when the host's is unknown.
const FALLBACK_SUITE: &str = "bookworm";
/// The file in the tools directory written last: [`packages_line`], then each package
/// file's name and size.
const TOOLS_COMPLETE: &str = "complete";

/// The first line of [`TOOLS_COMPLETE`]: a cache made for another package list is
/// downloaded again.
fn packages_line() -> String {
    format!("packages: {}\n", PACKAGES.join(" "))
}

/// Where the downloaded ISO tools live: `<repository>/.cache/bochs`.
pub fn cache_dir() -> PathBuf {
    util::repo_root().join(".cache").join("bochs")
}

/// Where the extracted packages live: `<repository>/.cache/bochs/tools`.
pub fn tools_dir() -> PathBuf {
    cache_dir().join("tools")
}

/// Where built ISOs go: `target/bochs`.
pub fn iso_dir() -> PathBuf {
    util::target_dir().join("bochs")
}

/// The extracted ISOLINUX and xorriso packages.
#[derive(Clone, Debug)]
pub struct IsoTools {
    /// The root of the extracted packages.
    tree: PathBuf,
    /// The directory of xorriso's libraries (`usr/lib/<multiarch>`).
    lib: PathBuf,
}

impl IsoTools {
    /// Finds every file the ISO needs in an extracted tree.
    fn find(tree: &Path) -> Result<IsoTools> {
        let lib_root = tree.join("usr/lib");
        let lib = fs::read_dir(&lib_root)
            .with_context(|| format!("reading {}", lib_root.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|dir| dir.join("libisoburn.so.1").exists())
            .with_context(|| format!("no libisoburn.so.1 under {}", lib_root.display()))?;
        let tools = IsoTools {
            tree: tree.to_owned(),
            lib,
        };
        let mut needed = vec![tools.isolinux_bin(), tools.xorriso_bin()];
        needed.extend(MODULES.iter().map(|m| tools.module(m)));
        if let Some(missing) = needed.iter().find(|p| !p.is_file()) {
            bail!("{} is missing", missing.display());
        }
        Ok(tools)
    }

    fn isolinux_bin(&self) -> PathBuf {
        self.tree.join("usr/lib/ISOLINUX/isolinux.bin")
    }

    fn module(&self, name: &str) -> PathBuf {
        self.tree.join("usr/lib/syslinux/modules/bios").join(name)
    }

    fn xorriso_bin(&self) -> PathBuf {
        self.tree.join("usr/bin/xorriso")
    }

    /// A `xorriso` command that finds its libraries in the private tree.
    fn xorriso(&self) -> Command {
        let mut cmd = Command::new(self.xorriso_bin());
        cmd.env("LD_LIBRARY_PATH", &self.lib).stdin(Stdio::null());
        cmd
    }

    /// Runs `xorriso -version`: the libraries load and the program starts.
    fn check(&self) -> Result<()> {
        let out = self
            .xorriso()
            .arg("-version")
            .output()
            .with_context(|| format!("starting {}", self.xorriso_bin().display()))?;
        if !out.status.success() {
            bail!(
                "{} -version failed with {}: {}",
                self.xorriso_bin().display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The ISO tools, downloaded into [`cache_dir`] first if they are not there (what `cargo
/// xtask setup` calls).
pub fn ensure_tools() -> Result<IsoTools> {
    let tools_dir = tools_dir();
    let complete = fs::read_to_string(tools_dir.join(TOOLS_COMPLETE)).unwrap_or_default();
    if complete.starts_with(&packages_line()) {
        if let Ok(tools) = IsoTools::find(&tools_dir) {
            return Ok(tools);
        }
    }
    download_tools(&tools_dir).with_context(|| {
        format!(
            "could not get the Debian packages the Bochs boot ISO is made from ({}); \
             they are downloaded with apt-get into {} (no root needed), which needs the \
             Debian mirror",
            PACKAGES.join(" "),
            cache_dir().display()
        )
    })
}

/// Downloads [`PACKAGES`] with a private apt for the host's architecture and suite and
/// extracts them into `tools_dir`.
fn download_tools(tools_dir: &Path) -> Result<IsoTools> {
    let apt_dir = cache_dir().join("apt");
    let deb_arch = host_deb_arch()?;
    let suite = host_suite();
    let mirror = apt::system_mirror();
    println!(
        "bochs: downloading {} ({deb_arch}, {suite}) from {} into {}",
        PACKAGES.join(" "),
        mirror.uri,
        apt_dir.display()
    );
    let apt = apt::PrivateApt::create(&apt_dir, &deb_arch, &apt::carried_settings())?;
    apt.set_suite(&mirror, &suite)?;
    let mut update = apt.command("apt-get");
    update.args(["-q", "update"]);
    apt.run(update)?;
    let (tree, downloaded) = realguest::download(&apt, &apt_dir, PACKAGES)?;
    realguest::remove_dir_if_present(tools_dir)?;
    if let Some(parent) = tools_dir.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::rename(&tree, tools_dir)
        .with_context(|| format!("moving {} to {}", tree.display(), tools_dir.display()))?;
    realguest::clean_apt_dir(&apt_dir)?;
    let tools = IsoTools::find(tools_dir)?;
    tools.check()?;
    let mut list = packages_line();
    for (name, size) in &downloaded {
        list.push_str(&format!("{name} {size}\n"));
    }
    let complete = tools_dir.join(TOOLS_COMPLETE);
    fs::write(&complete, list).with_context(|| format!("writing {}", complete.display()))?;
    Ok(tools)
}

/// The host's Debian architecture (`dpkg --print-architecture`).
fn host_deb_arch() -> Result<String> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .stdin(Stdio::null())
        .output()
        .context("running dpkg --print-architecture (is this Debian?)")?;
    let arch = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || arch.is_empty() {
        bail!("dpkg --print-architecture failed with {}", out.status);
    }
    Ok(arch)
}

/// The host's Debian suite (`VERSION_CODENAME` of `/etc/os-release` on Debian), else
/// [`FALLBACK_SUITE`].
fn host_suite() -> String {
    let text = fs::read_to_string("/etc/os-release").unwrap_or_default();
    suite_from_os_release(&text).unwrap_or_else(|| FALLBACK_SUITE.to_owned())
}

/// The Debian codename in `os-release` text, if it describes Debian.
fn suite_from_os_release(text: &str) -> Option<String> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
    };
    (field("ID").as_deref() == Some("debian"))
        .then(|| field("VERSION_CODENAME"))
        .flatten()
        .filter(|s| !s.is_empty())
}

/// The name of the boot module (a scenario's disk image) on the ISO.
const MODULE: &str = "disk.img";

/// `isolinux.cfg`: no prompt, the console also on COM1, and `mboot.c32` loading
/// `/kernel.elf` with `boot_args` as its command line, and with `module` the disk image
/// `/disk.img` as its first multiboot module (`--- /disk.img`).
pub fn isolinux_cfg(boot_args: Option<&str>, module: bool) -> String {
    let mut append = "/kernel.elf".to_owned();
    if let Some(args) = boot_args.map(str::trim).filter(|a| !a.is_empty()) {
        append.push(' ');
        append.push_str(args);
    }
    if module {
        append.push_str(&format!(" --- /{MODULE}"));
    }
    format!(
        "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT axvisor\nLABEL axvisor\n  KERNEL mboot.c32\n  APPEND {append}\n"
    )
}

/// FNV-1a (64-bit) over `parts`: the content key of a built ISO.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Serializes ISO builds (scenario workers may ask for the same one at once).
static ISO_LOCK: Mutex<()> = Mutex::new(());

/// The boot ISO for `image` (a multiboot ELF) with `boot_args` and, if given, the boot
/// module `module` (a disk image): built once per content and arguments into
/// [`iso_dir`], named after the image, the module and the arguments.
pub fn iso(image: &Path, boot_args: Option<&str>, module: Option<&Path>) -> Result<PathBuf> {
    let _guard = ISO_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let kernel = fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let module_bytes = match module {
        Some(m) => fs::read(m).with_context(|| format!("reading {}", m.display()))?,
        None => Vec::new(),
    };
    let cfg = isolinux_cfg(boot_args, module.is_some());
    let file_name = |p: &Path, default: &str| {
        p.file_name()
            .map_or_else(|| default.to_owned(), |n| n.to_string_lossy().into_owned())
    };
    let mut name = file_name(image, "image");
    if let Some(m) = module {
        name = format!("{name}+{}", file_name(m, MODULE));
    }
    let dir = iso_dir();
    let iso = dir.join(format!(
        "{name}-{:08x}.iso",
        fnv1a(&[cfg.as_bytes()]) as u32
    ));
    let key_path = iso.with_extension("iso.key");
    let key = format!(
        "{:016x}\n",
        fnv1a(&[&kernel, &module_bytes, cfg.as_bytes()])
    );
    if iso.is_file() && fs::read_to_string(&key_path).is_ok_and(|k| k == key) {
        return Ok(iso);
    }
    let tools = ensure_tools()?;
    let staging = dir.join(format!("{name}.staging-{}", std::process::id()));
    realguest::remove_dir_if_present(&staging)?;
    let boot_dir = staging.join("isolinux");
    fs::create_dir_all(&boot_dir).with_context(|| format!("creating {}", boot_dir.display()))?;
    let copy = |from: &Path, to: &Path| {
        fs::copy(from, to)
            .map(|_| ())
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))
    };
    copy(&tools.isolinux_bin(), &boot_dir.join("isolinux.bin"))?;
    for module in MODULES {
        copy(&tools.module(module), &boot_dir.join(module))?;
    }
    let write = |path: &Path, data: &[u8]| {
        fs::write(path, data).with_context(|| format!("writing {}", path.display()))
    };
    write(&boot_dir.join("isolinux.cfg"), cfg.as_bytes())?;
    write(&staging.join("kernel.elf"), &kernel)?;
    if module.is_some() {
        write(&staging.join(MODULE), &module_bytes)?;
    }
    // Another xtask process may build the same ISO at the same time.
    let partial = iso.with_extension(format!("iso.partial-{}", std::process::id()));
    let mut cmd = tools.xorriso();
    cmd.args(["-as", "mkisofs", "-quiet", "-o"])
        .arg(&partial)
        .args([
            "-b",
            "isolinux/isolinux.bin",
            "-c",
            "isolinux/boot.cat",
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-boot-info-table",
        ])
        .arg(&staging);
    let out = cmd.output().context("starting xorriso")?;
    realguest::remove_dir_if_present(&staging)?;
    if !out.status.success() {
        let _ = fs::remove_file(&partial);
        bail!(
            "xorriso failed with {} building {}: {}",
            out.status,
            iso.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    fs::rename(&partial, &iso)
        .with_context(|| format!("renaming {} to {}", partial.display(), iso.display()))?;
    write(&key_path, key.as_bytes())?;
    Ok(iso)
}

/// RAM in MiB from a size in QEMU's syntax (no suffix: MiB). Bochs takes whole MiB.
pub fn megs(mem: &MemSize) -> Result<u64> {
    let s = mem.as_str();
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits
        .parse()
        .with_context(|| format!("memory size {s:?}"))?;
    let kib = match &s[digits.len()..] {
        "" | "M" | "m" => n.checked_mul(1 << 10),
        "K" | "k" => Some(n),
        "G" | "g" => n.checked_mul(1 << 20),
        "T" | "t" => n.checked_mul(1 << 30),
        other => bail!("memory size {s:?}: unknown suffix {other:?}"),
    }
    .with_context(|| format!("memory size {s:?} is too large"))?;
    if kib % 1024 != 0 {
        bail!("memory size {s:?}: Bochs takes whole MiB");
    }
    Ok(kib / 1024)
}

/// The machine a bochsrc describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `cpu: model=` (see [`DEFAULT_CPU_MODEL`]).
    pub cpu_model: String,
    /// Number of CPUs (`cpu: count=`).
    pub cpus: u32,
    /// Guest RAM in MiB.
    pub megs: u64,
}

/// The bochsrc of a run: the machine of `config`, booting [`RUN_ISO`] from the CD-ROM,
/// COM1 into [`RUN_SERIAL`], COM2 into [`RUN_COM2`] (a PC's second 16550, for a VM given it
/// as passthrough ports), the log into [`RUN_LOG`] (all in the run's directory), the TSC
/// counting instructions, and any panic ending Bochs.
pub fn bochsrc(config: &Config) -> String {
    let Config {
        cpu_model,
        cpus,
        megs,
    } = config;
    let host = (*megs).min(MAX_HOST_MEGS);
    format!(
        "# Written by cargo xtask (xtask/src/bochs.rs) for one run.\n\
         memory: guest={megs}, host={host}\n\
         cpu: model={cpu_model}, count={cpus}, ips={IPS}, reset_on_triple_fault=0\n\
         romimage: file={ROM_IMAGE}, options=fastboot\n\
         vgaromimage: file={VGA_ROM_IMAGE}\n\
         pci: enabled=1, chipset=i440fx\n\
         display_library: term\n\
         ata0-master: type=cdrom, path={RUN_ISO}, status=inserted\n\
         boot: cdrom\n\
         com1: enabled=1, mode=file, dev={RUN_SERIAL}\n\
         com2: enabled=1, mode=file, dev={RUN_COM2}\n\
         port_e9_hack: enabled=1\n\
         clock: sync=none, time0=local\n\
         speaker: enabled=0\n\
         sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy\n\
         log: {RUN_LOG}\n\
         panic: action=fatal\n"
    )
}

/// The start of a run directory's name in the temporary directory, followed by the xtask
/// process id, `-` and a counter.
const RUN_DIR_PREFIX: &str = "axvisor-bochs-";

/// Removes the run directories of xtask processes that no longer exist (an interrupted
/// `cargo xtask run` leaves its directory behind).
fn remove_stale_run_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(RUN_DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// One Bochs run, ready to start: a private directory holding the bochsrc, the debugger's
/// command file and (links to) the ISO and the log.
#[derive(Debug)]
pub struct Prepared {
    /// The run's private directory (removed when the run ends).
    dir: PathBuf,
    /// Where Bochs' log goes (kept).
    log: PathBuf,
    /// The ISO booted.
    iso: PathBuf,
    /// The machine.
    config: Config,
}

impl Prepared {
    /// Builds (or reuses) the ISO of `image` with `boot_args` and the boot module `module`
    /// (a disk image) and writes a run directory whose Bochs logs into `log`.
    pub fn new(
        config: Config,
        image: &Path,
        boot_args: Option<&str>,
        module: Option<&Path>,
        log: &Path,
    ) -> Result<Self> {
        static RUN: AtomicUsize = AtomicUsize::new(0);
        let iso = iso(image, boot_args, module)?;
        remove_stale_run_dirs();
        let dir = std::env::temp_dir().join(format!(
            "{RUN_DIR_PREFIX}{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        realguest::remove_dir_if_present(&dir)?;
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let prepared = Prepared {
            dir,
            log: std::path::absolute(log).unwrap_or_else(|_| log.to_owned()),
            iso: std::path::absolute(&iso).unwrap_or(iso),
            config,
        };
        prepared.write().inspect_err(|_| prepared.remove())?;
        Ok(prepared)
    }

    fn write(&self) -> Result<()> {
        let write = |name: &str, text: &str| {
            let path = self.dir.join(name);
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        };
        write(RUN_BOCHSRC, &bochsrc(&self.config))?;
        write(RUN_DEBUGGER_RC, "c\n")?;
        if let Some(parent) = self.log.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        // A fresh log: Bochs follows the link and truncates its target.
        let _ = fs::remove_file(&self.log);
        for (target, name) in [(&self.iso, RUN_ISO), (&self.log, RUN_LOG)] {
            let link = self.dir.join(name);
            std::os::unix::fs::symlink(target, &link)
                .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
        }
        Ok(())
    }

    fn remove(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// The command that starts Bochs under `script` in the run directory.
    fn command(&self) -> Command {
        let mut cmd = Command::new("script");
        cmd.arg("-qec")
            .arg(format!(
                "echo {PID_LINE}$$; exec bochs -q -f {RUN_BOCHSRC} -rc {RUN_DEBUGGER_RC}"
            ))
            .arg("/dev/null")
            .current_dir(&self.dir)
            .env("TERM", TERM)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// A one-line description of the run, for reports.
    pub fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "bochs (cpu {} x{}, {} MiB) booting {} (bochs log {})",
            c.cpu_model,
            c.cpus,
            c.megs,
            self.iso.display(),
            self.log.display()
        )
    }
}

/// `cargo xtask run --emulator bochs`: boots `prepared` with the serial console printed
/// on this terminal (output only) until the guest powers Bochs off or Ctrl-C.
pub fn run_interactive(prepared: Prepared) -> Result<std::process::ExitCode> {
    println!("{}", prepared.describe());
    println!("(serial console below; Bochs' own output is in its log; stop with Ctrl-C)");
    let (tx, rx) = mpsc::channel();
    let mut session = Session::start(prepared, &tx, false)?;
    drop(tx);
    let mut exit_message = false;
    for event in rx {
        match event {
            Event::Line(Stream::Stdout, line) => println!("{line}"),
            Event::Line(Stream::Stderr, line) => {
                if exit_message {
                    eprintln!("bochs: {line}");
                }
                exit_message = line.contains(EXIT_LINE);
            }
            Event::Closed(Stream::Stdout) => break,
            Event::Closed(Stream::Stderr) | Event::Partial(_) => {}
        }
    }
    let status = session.wait_until(Instant::now() + Duration::from_secs(5));
    session.stop();
    Ok(match status {
        Some(s) if s.success() => std::process::ExitCode::SUCCESS,
        Some(s) => {
            eprintln!("bochs exited with {s}");
            std::process::ExitCode::FAILURE
        }
        None => std::process::ExitCode::FAILURE,
    })
}

/// State shared between a running Bochs and the threads reading its output.
#[derive(Debug, Default)]
struct Shared {
    /// Bochs' process id (it leads its own session and process group).
    bochs_pid: Mutex<Option<u32>>,
    /// `script` has exited (or the run is being stopped): the serial reader finishes.
    exited: AtomicBool,
    /// Threads started after the run began (the display drain).
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running Bochs: its serial lines arrive as [`Stream::Stdout`] events, Bochs' own
/// output (its standard error and the debugger's, without the start-up messages) as
/// [`Stream::Stderr`] events; each stream ends with [`Event::Closed`]. When Bochs stops
/// on its own, its standard error says why (`Bochs is exiting with the following
/// message:` and the message on the next line).
#[derive(Debug)]
pub struct Session {
    prepared: Prepared,
    child: Child,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Whether `script` leads its own process group (captured runs).
    own_group: bool,
}

impl Session {
    /// Starts Bochs. `own_group`: in a process group of its own (captured runs; an
    /// interactive run stays in the terminal's, so Ctrl-C reaches it).
    pub fn start(prepared: Prepared, tx: &mpsc::Sender<Event>, own_group: bool) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut cmd = prepared.command();
        if own_group {
            cmd.process_group(0);
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                prepared.remove();
                bail!("could not start script (package bsdutils) to run bochs: {e}");
            }
        };
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        if let Some(out) = child.stdout.take() {
            let (tx, shared) = (tx.clone(), shared.clone());
            threads.push(std::thread::spawn(move || {
                read_bochs_output(out, &tx, &shared);
                shared.exited.store(true, Ordering::SeqCst);
                let _ = tx.send(Event::Closed(Stream::Stderr));
            }));
        }
        if let Some(err) = child.stderr.take() {
            let tx = tx.clone();
            threads.push(std::thread::spawn(move || {
                for line in BufReader::new(err).split(b'\n').map_while(Result::ok) {
                    if tx
                        .send(Event::Line(Stream::Stderr, clean_line(&line)))
                        .is_err()
                    {
                        return;
                    }
                }
            }));
        }
        {
            let (tx, shared) = (tx.clone(), shared.clone());
            let serial = prepared.dir.join(RUN_SERIAL);
            threads.push(std::thread::spawn(move || {
                tail_serial(&serial, &tx, &shared)
            }));
        }
        Ok(Session {
            prepared,
            child,
            shared,
            threads,
            own_group,
        })
    }

    /// Waits for Bochs to exit until `deadline`; `None` if it is still running. A power
    /// off through port 0x8900 counts as status 0.
    pub fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        let status = crate::scenario::wait_until(&mut self.child, deadline)?;
        if !status.success() && powered_off(&self.prepared.log) {
            use std::os::unix::process::ExitStatusExt;
            return Some(ExitStatus::from_raw(0));
        }
        Some(status)
    }

    /// The CPU time Bochs has used so far, while its process can be read.
    pub fn cpu_time(&self) -> Option<Duration> {
        let pid = (*self
            .shared
            .bochs_pid
            .lock()
            .unwrap_or_else(|e| e.into_inner()))?;
        crate::scenario::cpu_time(pid).filter(|_| is_bochs(pid))
    }

    /// Kills Bochs if it still runs, waits for the reading threads and removes the run's
    /// directory (Bochs' log stays).
    pub fn stop(mut self) {
        let pid = *self
            .shared
            .bochs_pid
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(pid) = pid.filter(|&pid| is_bochs(pid)) {
            kill(&format!("-{pid}"));
            kill(&pid.to_string());
        }
        if let Ok(None) = self.child.try_wait() {
            if self.own_group {
                kill(&format!("-{}", self.child.id()));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.shared.exited.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let later: Vec<_> = self
            .shared
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for thread in later {
            let _ = thread.join();
        }
        self.prepared.remove();
    }
}

/// `kill -KILL -- TARGET` (a process id, or a process group as `-pgid`).
fn kill(target: &str) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether process `pid` is still Bochs (not exited, its id not reused).
fn is_bochs(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "bochs-bin")
}

/// Reads what `script` relays from Bochs' terminal (its standard error and the debugger)
/// as [`Stream::Stderr`] lines; notes Bochs' process id and starts draining the display's
/// private terminal when Bochs names it.
fn read_bochs_output(out: impl Read, tx: &mpsc::Sender<Event>, shared: &Arc<Shared>) {
    for raw in BufReader::new(out).split(b'\n').map_while(Result::ok) {
        let line = clean_line(&raw);
        if let Some(pid) = line.trim().strip_prefix(PID_LINE) {
            *shared.bochs_pid.lock().unwrap_or_else(|e| e.into_inner()) = pid.parse().ok();
            continue;
        }
        if let Some(pty) = screen_pty(&line) {
            let thread = std::thread::spawn(move || drain_display(&pty));
            shared
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(thread);
        }
        if line.trim().is_empty() || line.starts_with(STARTUP_INFO) {
            continue;
        }
        if tx.send(Event::Line(Stream::Stderr, line)).is_err() {
            return;
        }
    }
}

/// The private terminal named in a `Bochs connected to screen "/dev/pts/N"` line.
fn screen_pty(line: &str) -> Option<PathBuf> {
    let rest = &line[line.find(SCREEN_LINE)? + SCREEN_LINE.len()..];
    let path = &rest[..rest.find('"')?];
    path.starts_with("/dev/").then(|| PathBuf::from(path))
}

/// Reads and discards the display's output until Bochs closes its terminal. The terminal
/// is switched to raw mode without echo first.
fn drain_display(pty: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    /// Linux's `O_NOCTTY`: opening the terminal must not make it ours.
    const O_NOCTTY: i32 = 0o400;
    let _ = Command::new("stty")
        .arg("-F")
        .arg(pty)
        .args(["raw", "-echo"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let Ok(mut file) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NOCTTY)
        .open(pty)
    else {
        return;
    };
    let mut buf = [0u8; 4096];
    while matches!(file.read(&mut buf), Ok(n) if n > 0) {}
}

/// Sends the serial file's lines as they are written, until the run has exited and the
/// file is read to its end; then the last partial line, and `Closed`.
fn tail_serial(path: &Path, tx: &mpsc::Sender<Event>, shared: &Shared) {
    let mut file: Option<File> = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // Read the flag first: once it is set, one more read gets everything.
        let done = shared.exited.load(Ordering::SeqCst);
        if file.is_none() {
            file = File::open(path).ok();
        }
        if let Some(f) = file.as_mut() {
            while let Ok(n @ 1..) = f.read(&mut buf) {
                pending.extend_from_slice(&buf[..n]);
            }
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if tx
                    .send(Event::Line(Stream::Stdout, clean_line(&line)))
                    .is_err()
                {
                    return;
                }
            }
        }
        if done {
            if !pending.is_empty() {
                let _ = tx.send(Event::Line(Stream::Stdout, clean_line(&pending)));
            }
            let _ = tx.send(Event::Closed(Stream::Stdout));
            return;
        }
        std::thread::sleep(SERIAL_POLL);
    }
}

/// The end of Bochs' log (at most [`LOG_TAIL_BYTES`]).
fn log_tail(log: &Path) -> String {
    let Ok(mut file) = File::open(log) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The panic lines at the end of Bochs' log (why it stopped).
fn log_panics(log: &Path) -> Vec<String> {
    log_tail(log)
        .lines()
        .filter(|l| l.contains(PANIC_LOG))
        .map(str::to_owned)
        .collect()
}

/// Whether Bochs' log says the guest powered off through port 0x8900.
fn powered_off(log: &Path) -> bool {
    log_panics(log).iter().any(|l| l.contains(SHUTDOWN_LOG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bochsrc_has_the_recipe() {
        let rc = bochsrc(&Config {
            cpu_model: DEFAULT_CPU_MODEL.to_owned(),
            cpus: 4,
            megs: 1024,
        });
        for line in [
            "memory: guest=1024, host=1024\n",
            "cpu: model=corei7_skylake_x, count=4, ips=100000000, reset_on_triple_fault=0\n",
            "romimage: file=/usr/share/bochs/BIOS-bochs-latest, options=fastboot\n",
            "vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest\n",
            "display_library: term\n",
            "ata0-master: type=cdrom, path=boot.iso, status=inserted\n",
            "boot: cdrom\n",
            "com1: enabled=1, mode=file, dev=serial.txt\n",
            "com2: enabled=1, mode=file, dev=com2.txt\n",
            "port_e9_hack: enabled=1\n",
            "clock: sync=none, time0=local\n",
            "log: bochs.log\n",
            "panic: action=fatal\n",
        ] {
            assert!(rc.contains(line), "{line:?} missing from\n{rc}");
        }
        let big = bochsrc(&Config {
            cpu_model: "tigerlake".to_owned(),
            cpus: 1,
            megs: 4096,
        });
        assert!(big.contains("memory: guest=4096, host=2048\n"), "{big}");
        assert!(big.contains("cpu: model=tigerlake, count=1,"), "{big}");
    }

    #[test]
    fn isolinux_cfg_boots_the_kernel_with_its_arguments() {
        assert_eq!(
            isolinux_cfg(None, false),
            "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT axvisor\nLABEL axvisor\n  \
             KERNEL mboot.c32\n  APPEND /kernel.elf\n"
        );
        assert!(
            isolinux_cfg(Some(" log=debug "), false).ends_with("  APPEND /kernel.elf log=debug\n")
        );
        assert!(isolinux_cfg(Some("  "), false).ends_with("  APPEND /kernel.elf\n"));
        assert!(isolinux_cfg(Some("disk=ramdisk"), true)
            .ends_with("  APPEND /kernel.elf disk=ramdisk --- /disk.img\n"));
    }

    #[test]
    fn megs_from_qemu_sizes() {
        let m = |s: &str| megs(&s.parse().unwrap());
        assert_eq!(m("1G").unwrap(), 1024);
        assert_eq!(m("512M").unwrap(), 512);
        assert_eq!(m("256").unwrap(), 256);
        assert_eq!(m("2048K").unwrap(), 2);
        assert!(m("100K").is_err());
        assert_eq!(m("1T").unwrap(), 1 << 20);
    }

    #[test]
    fn lines_bochs_prints() {
        assert_eq!(
            screen_pty("Bochs connected to screen \"/dev/pts/7\""),
            Some(PathBuf::from("/dev/pts/7"))
        );
        assert_eq!(screen_pty("Bochs connected to screen \"oops"), None);
        assert_eq!(screen_pty("ALSA lib pcm.c:2666"), None);
    }

    #[test]
    fn debian_suite_from_os_release() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n";
        assert_eq!(suite_from_os_release(debian).as_deref(), Some("bookworm"));
        let ubuntu = "ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=jammy\n";
        assert_eq!(suite_from_os_release(ubuntu), None);
        assert_eq!(suite_from_os_release(""), None);
    }

    #[test]
    fn power_off_is_read_from_the_log() {
        let dir = std::env::temp_dir().join(format!("xtask-bochs-log-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("bochs.log");
        fs::write(
            &log,
            "00345719243p[UNMAP ] >>PANIC<< Shutdown port: shutdown requested\n\
             00345719243i[CPU0  ] CPU is in protected mode (active)\n",
        )
        .unwrap();
        assert!(powered_off(&log));
        fs::write(&log, "00000000001p[CPU0  ] >>PANIC<< triple fault\n").unwrap();
        assert!(!powered_off(&log));
        assert_eq!(
            log_panics(&log),
            ["00000000001p[CPU0  ] >>PANIC<< triple fault"]
        );
        fs::remove_dir_all(&dir).unwrap();
        assert!(!powered_off(&log));
    }

    #[test]
    fn serial_lines_arrive_as_the_file_grows_and_end_with_the_run() {
        let dir = std::env::temp_dir().join(format!("xtask-bochs-serial-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serial.txt");
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        let tail = {
            let (path, shared) = (path.clone(), shared.clone());
            std::thread::spawn(move || tail_serial(&path, &tx, &shared))
        };
        let line = |rx: &mpsc::Receiver<Event>| match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Event::Line(Stream::Stdout, l)) => Some(l),
            Ok(Event::Closed(Stream::Stdout)) => None,
            _ => panic!("no serial event"),
        };
        // The file appears only after a while, as when Bochs starts.
        std::thread::sleep(SERIAL_POLL * 3);
        fs::write(&path, "\r\nISOLINUX 6.04\r\nLoad").unwrap();
        assert_eq!(line(&rx).as_deref(), Some(""));
        assert_eq!(line(&rx).as_deref(), Some("ISOLINUX 6.04"));
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, b"ing... ok\r\nlast, no newline").unwrap();
        assert_eq!(line(&rx).as_deref(), Some("Loading... ok"));
        shared.exited.store(true, Ordering::SeqCst);
        assert_eq!(line(&rx).as_deref(), Some("last, no newline"));
        assert_eq!(line(&rx), None);
        tail.join().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bochs_output_gives_its_pid_and_screen_and_skips_start_up_messages() {
        let out = "AXVISOR_BOCHS_PID=4242\r\n\
                   00000000000i[      ] BXSHARE not set\r\n\
                   \r\n\
                   Bochs connected to screen \"/dev/xtask-no-such-pty\"\r\n\
                   Next at t=0\r\n";
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        read_bochs_output(out.as_bytes(), &tx, &shared);
        drop(tx);
        let lines: Vec<String> = rx
            .iter()
            .map(|e| match e {
                Event::Line(Stream::Stderr, l) => l,
                _ => panic!("only emulator lines"),
            })
            .collect();
        assert_eq!(
            lines,
            [
                "Bochs connected to screen \"/dev/xtask-no-such-pty\"",
                "Next at t=0"
            ]
        );
        assert_eq!(*shared.bochs_pid.lock().unwrap(), Some(4242));
        // The drain of the (missing) screen ends at once.
        for thread in shared.threads.lock().unwrap().drain(..) {
            thread.join().unwrap();
        }
    }

    #[test]
    fn content_key() {
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"ab"]), fnv1a(&[b"a", b"b"]));
    }
}
