//! Boot scenarios: a TOML file in `tests/scenarios/` says which machine to emulate and
//! which console lines must appear; the runner boots it and decides pass or fail.
//!
//! The format is described field by field in `docs/testing.md`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::arch::{Arch, Gic, MemSize};
use crate::bochs;
use crate::disk::DiskFs;
use crate::hostdisk::HostDisk;
use crate::matcher::{clean_line, Matcher, Missing, Step, Steps, Verdict};
use crate::qemu::{self, Console, EmulatorCommand, Machine};
use crate::vmset::VmSet;
use crate::{util, vmdisk};

/// Failure markers every scenario has, in addition to its own `fail_on` entries.
pub const DEFAULT_FAIL_ON: &[&str] = &["panicked at", "FAIL "];
/// The time limit when a scenario gives none.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// The longest time limit a scenario may ask for.
pub const MAX_TIMEOUT_SECS: u64 = 3600;
/// How many console lines a failure report shows.
pub const TAIL_LINES: usize = 40;
/// What a test guest's failed check prints (`<guest>: mismatch: <what>`, grt's `Checker`).
pub const MISMATCH_MARK: &str = ": mismatch: ";
/// How many of the first mismatch lines a failure report shows (wherever they are in the
/// console, so that the check that failed is named even when the tail does not hold it).
pub const MISMATCH_LINES: usize = 10;
/// How long the console is read at most after the last expected line, for late failures
/// (when the emulator has not exited by then).
pub const LINGER: Duration = Duration::from_millis(1000);
/// The console's silence that ends the linger before [`LINGER`]: the output that follows
/// the last expected line (a VM's exit counts, the shell's prompt, a panic in a teardown)
/// comes in one burst, and the hypervisor then waits at its prompt.
pub const QUIET: Duration = Duration::from_millis(250);
/// How many scenarios run at the same time on a busy machine (CI has two cores).
pub const WORKERS: usize = 2;
/// How many run at the same time at most: beyond [`WORKERS`] another one starts only after
/// a look at the machine found about a core idle ([`IDLE_TO_START`] over [`IDLE_SAMPLE`]):
/// many scenarios wait more than they compute (a guest's timer, the shell's round trips,
/// Linux's delays), and one that waits leaves its core to the others.
pub const MAX_WORKERS: usize = 4;
/// How long an extra worker looks at the machine's idle time before it decides.
pub const IDLE_SAMPLE: Duration = Duration::from_millis(500);
/// How many cores must have been idle over [`IDLE_SAMPLE`] for an extra worker to start a
/// scenario.
pub const IDLE_TO_START: f64 = 0.9;

/// The scenario directory, relative to the repository root.
pub fn scenario_dir() -> PathBuf {
    util::repo_root().join("tests").join("scenarios")
}

/// Where console logs go: `target/scenarios/<name>.log`.
pub fn log_dir() -> PathBuf {
    util::target_dir().join("scenarios")
}

/// Which emulator boots a scenario (or `cargo xtask run`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Emulator {
    /// QEMU (TCG): every architecture.
    #[default]
    Qemu,
    /// Bochs with Intel VMX (x86_64 only): see [`bochs`].
    Bochs,
}

impl Emulator {
    /// The emulator's name as written on the command line and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Emulator::Qemu => "qemu",
            Emulator::Bochs => "bochs",
        }
    }

    /// The emulator that can run VMs on `arch`: Bochs on x86_64 (QEMU's TCG has no VMX),
    /// QEMU elsewhere.
    pub fn for_vms(arch: Arch) -> Emulator {
        match arch {
            Arch::X86_64 => Emulator::Bochs,
            Arch::Aarch64 | Arch::Riscv64 => Emulator::Qemu,
        }
    }

    /// Fails unless this emulator can boot `arch`.
    pub fn check(self, arch: Arch) -> Result<()> {
        if self == Emulator::Bochs && arch != Arch::X86_64 {
            bail!("the bochs emulator runs only x86_64, not {arch}");
        }
        Ok(())
    }
}

impl std::fmt::Display for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A scenario file exactly as written (see `docs/testing.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    /// Defaults to the file stem.
    name: Option<String>,
    arch: Arch,
    /// Defaults to QEMU.
    #[serde(default)]
    emulator: Emulator,
    /// Bochs only: `cpu: model=`; defaults to [`bochs::DEFAULT_CPU_MODEL`].
    cpu_model: Option<String>,
    /// The hypervisor's command line (QEMU `-append`, ISOLINUX `APPEND` after the kernel).
    boot_args: Option<String>,
    #[serde(default = "default_cpus")]
    cpus: u32,
    /// aarch64 only; defaults to 2 there.
    gic: Option<Gic>,
    #[serde(default)]
    mem: MemSize,
    #[serde(default)]
    extra_args: Vec<String>,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
    #[serde(default)]
    expect: Vec<String>,
    #[serde(default)]
    expect_unordered: Vec<String>,
    /// Added to `DEFAULT_FAIL_ON`.
    #[serde(default)]
    fail_on: Vec<String>,
    #[serde(default)]
    expect_exit: bool,
    /// VM config files, relative to the repository root.
    #[serde(default)]
    vms: Vec<String>,
    /// Where the VMs come from: built into the image, or the scenario's disk (the
    /// default when there are VMs).
    vms_from: Option<VmsFrom>,
    /// When given, the scenario is not run but counted as skipped, with this reason.
    pending: Option<String>,
    /// Its guests check host time (a stall bound, a timer's regularity): no extra worker
    /// runs beside it.
    #[serde(default)]
    timing_sensitive: bool,
    /// A typed session: wait for output, type a line.
    #[serde(default)]
    steps: Vec<StepFile>,
    /// A directory (relative to the repository root) made into a FAT32 disk image for the
    /// hypervisor (`cargo xtask disk`), QEMU only.
    disk: Option<String>,
    /// The disk's filesystem: `fat` (FAT32, the default; FAT16 for the smallest VM disks) or
    /// `ext4` (`mkfs.ext4 -d`, which the hypervisor reads only).
    disk_fs: Option<DiskFs>,
    /// How the disk is attached: `virtio` (virtio-blk, the default with QEMU: over virtio-mmio
    /// on aarch64 and riscv64, over PCI on x86_64) or `initrd` (QEMU's `-initrd`: a boot
    /// module the hypervisor takes as a RAM disk; Bochs has only this).
    disk_as: Option<DiskAs>,
    /// Test guests (by name) whose built images are added to the disk as
    /// `/images/NAME.bin`, beside the `disk` directory's files.
    #[serde(default)]
    disk_guests: Vec<String>,
    /// Checked on the disk image after the emulator has gone: each file holds its text
    /// (what VMs wrote through virtio-blk reached the image file).
    #[serde(default)]
    disk_after: Vec<DiskAfter>,
    /// Files of zeros put on the disk (path from the volume's root -> size in bytes): the
    /// empty images VMs' virtio-blk devices are backed by, made when the disk is staged
    /// instead of kept in the repository.
    #[serde(default)]
    disk_zeroed: BTreeMap<String, u64>,
    /// A second MBR partition of this many KiB of zeros after the FAT one (`cargo xtask
    /// disk --spare-kib`), for a VM's `backing = { disk, partition = 2 }`.
    disk_spare_kib: Option<u64>,
    /// Raw disks of zeros attached after the hypervisor's disk, for VMs' regions, checked
    /// after the run.
    #[serde(default)]
    host_disks: Vec<HostDisk>,
}

/// A `[[disk_after]]` entry: file `file` on the disk image holds `contains`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskAfter {
    /// The file, from the volume's root (`/blk.img`); or instead `partition`.
    pub file: Option<String>,
    /// An MBR partition of the image (`disk_spare_kib`'s is 2), read raw.
    pub partition: Option<u8>,
    /// Text it must hold somewhere, not empty.
    pub contains: String,
}

/// How a scenario's disk reaches the hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskAs {
    /// A virtio-blk device (virtio-mmio; PCI on x86_64).
    Virtio,
    /// A boot module (QEMU `-initrd`).
    Initrd,
}

/// Where a scenario's VMs come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmsFrom {
    /// Built into the hypervisor image: one build per VM set (for disk-less boards).
    Image,
    /// The scenario's disk (`/vms`, [`vmdisk`]), booting the plain image.
    #[default]
    Disk,
}

/// The largest file of zeros a scenario may put on its disk (`disk_zeroed`), 64 MiB: the
/// disk image is written out for every run.
pub const MAX_ZEROED: u64 = 64 << 20;

/// A scenario's disk: the directory its image is made from, and how it is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioDisk {
    /// The directory, absolute (`None`: only what `vms_from = "disk"` adds).
    pub from: Option<PathBuf>,
    /// How it is attached.
    pub attach: DiskAs,
    /// Its filesystem.
    pub fs: DiskFs,
    /// Test guests whose images go to `/images/NAME.bin`.
    pub guests: Vec<String>,
    /// What the image holds after the run (`disk_after`).
    pub after: Vec<DiskAfter>,
    /// Files of zeros added to it: path from the volume's root and size (`disk_zeroed`).
    pub zeroed: Vec<(String, u64)>,
    /// Bytes of a second MBR partition after the FAT one (`disk_spare_kib`).
    pub spare: Option<u64>,
}

/// One `[[steps]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    expect: String,
    send: Option<String>,
}

fn default_cpus() -> u32 {
    1
}

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

/// A checked scenario, ready to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Unique name (file stem unless the file says otherwise); names the log file.
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// The emulated machine.
    pub machine: Machine,
    /// The emulator that boots it.
    pub emulator: Emulator,
    /// Bochs' CPU model (`None` with QEMU).
    pub cpu_model: Option<String>,
    /// The hypervisor's command line, if any.
    pub boot_args: Option<String>,
    /// Extra emulator arguments, appended to the generated command line (QEMU only).
    pub extra_args: Vec<String>,
    /// Time limit from the emulator's start.
    pub timeout: Duration,
    /// Console substrings that must appear in this order.
    pub expect: Vec<String>,
    /// Console substrings that must all appear, in any order.
    pub expect_unordered: Vec<String>,
    /// Console substrings that fail the scenario at once (defaults included).
    pub fail_on: Vec<String>,
    /// Whether the emulator must also exit by itself with status 0.
    pub expect_exit: bool,
    /// Its VMs (built into the image it boots, or on its disk).
    pub vms: VmSet,
    /// Where its VMs come from.
    pub vms_from: VmsFrom,
    /// Why it is not run yet, if it is not.
    pub pending: Option<String>,
    /// Its guests check host time: no extra worker runs beside it ([`MAX_WORKERS`]).
    pub timing_sensitive: bool,
    /// The typed session, in order (QEMU only).
    pub steps: Vec<Step>,
    /// The hypervisor's disk, if it has one (QEMU only).
    pub disk: Option<ScenarioDisk>,
    /// Raw host disks after it, for VMs' regions (QEMU only).
    pub host_disks: Vec<HostDisk>,
}

impl Scenario {
    /// Parses and checks scenario text; `path` names the file in errors and gives the
    /// default name.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario> {
        let shown = path.display();
        let file: ScenarioFile =
            toml::from_str(text).with_context(|| format!("{shown}: invalid scenario"))?;
        Self::check(file, path).with_context(|| format!("{shown}: invalid scenario"))
    }

    /// Reads and parses one scenario file.
    pub fn load(path: &Path) -> Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, path)
    }

    fn check(file: ScenarioFile, path: &Path) -> Result<Scenario> {
        let name = match file.name {
            Some(name) => name,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!("field `name`: {name:?} must be non-empty and use only letters, digits, '-', '_' and '.'");
        }
        let machine = Machine::new(file.arch, file.cpus, file.gic, file.mem)
            .context("fields `arch`, `cpus`, `gic`")?;
        let cpu_model = emulator_fields(file.emulator, &machine, file.cpu_model, &file.extra_args)?;
        if file
            .boot_args
            .as_deref()
            .is_some_and(|a| a.contains(['\n', '\r']))
        {
            bail!("field `boot_args`: one line");
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&file.timeout_secs) {
            bail!(
                "field `timeout_secs`: must be between 1 and {MAX_TIMEOUT_SECS}, not {}",
                file.timeout_secs
            );
        }
        for (field, list) in [
            ("expect", &file.expect),
            ("expect_unordered", &file.expect_unordered),
            ("fail_on", &file.fail_on),
            ("extra_args", &file.extra_args),
        ] {
            if let Some(i) = list.iter().position(|s| s.is_empty()) {
                bail!("field `{field}`: entry {i} is an empty string");
            }
        }
        let vms = VmSet::from_root_relative(util::repo_root(), &file.vms).context("field `vms`")?;
        if file.pending.as_deref().is_some_and(|p| p.trim().is_empty()) {
            bail!("field `pending`: give the reason the scenario cannot pass yet");
        }
        if file.expect.is_empty()
            && file.expect_unordered.is_empty()
            && file.steps.is_empty()
            && !file.expect_exit
        {
            bail!("nothing to check: give `expect`, `expect_unordered`, `steps` or `expect_exit = true`");
        }
        if !file.steps.is_empty() && file.emulator != Emulator::Qemu {
            bail!("field `steps`: only QEMU scenarios can type (Bochs' serial port is a file)");
        }
        for (i, step) in file.steps.iter().enumerate() {
            if step.expect.is_empty() {
                bail!("field `steps`: step {i}: `expect` is an empty string");
            }
            if step
                .send
                .as_deref()
                .is_some_and(|l| l.contains(['\n', '\r']))
            {
                bail!("field `steps`: step {i}: `send` is one line (Enter is typed after it)");
            }
        }
        if let Some(g) = file.disk_guests.iter().find(|g| {
            g.is_empty()
                || !g
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        }) {
            bail!("field `disk_guests`: {g:?} is not a guest name");
        }
        let vms_from = match (file.vms_from, vms.is_empty()) {
            (Some(VmsFrom::Disk), true) => bail!("field `vms_from`: \"disk\" needs `vms`"),
            (Some(from), _) => from,
            // No VMs: nothing to put on a disk.
            (None, true) => VmsFrom::Image,
            (None, false) => VmsFrom::default(),
        };
        let on_disk = vms_from == VmsFrom::Disk;
        if file.disk_after.iter().any(|a| a.contains.is_empty()) {
            bail!("field `disk_after`: `contains` is an empty string");
        }
        if file
            .disk_after
            .iter()
            .any(|a| a.file.is_some() == a.partition.is_some())
        {
            bail!("field `disk_after`: give `file` or `partition`, one of the two");
        }
        for (path, &bytes) in &file.disk_zeroed {
            let parts_ok = path
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..");
            if !parts_ok {
                bail!("field `disk_zeroed`: {path:?} is not a path from the volume's root (`dir/name.img`)");
            }
            if bytes == 0 || bytes > MAX_ZEROED {
                bail!("field `disk_zeroed`: {path:?}: {bytes} bytes; give 1 to {MAX_ZEROED}");
            }
        }
        // Files of zeros alone are a disk too.
        let on_disk = on_disk || !file.disk_zeroed.is_empty();
        let disk = match (file.disk, file.disk_as) {
            (None, None) if file.disk_guests.is_empty() && file.disk_fs.is_none() && !on_disk => {
                if !file.disk_after.is_empty() {
                    bail!("field `disk_after`: the scenario has no disk");
                }
                None
            }
            (None, _) if !on_disk => {
                bail!("fields `disk_as`, `disk_guests`, `disk_fs`: give the `disk` directory too")
            }
            (dir, attach) => {
                // Bochs (no virtio) takes the disk as a boot module.
                let attach = attach.unwrap_or(if file.emulator == Emulator::Bochs {
                    DiskAs::Initrd
                } else {
                    DiskAs::Virtio
                });
                if file.emulator == Emulator::Bochs && (dir.is_some() || attach != DiskAs::Initrd) {
                    bail!("fields `disk`, `disk_as`: Bochs scenarios have only their VMs on a disk, as a boot module");
                }
                let fs = file.disk_fs.unwrap_or_default();
                if fs == DiskFs::Ext4 && !file.disk_after.is_empty() {
                    bail!("field `disk_after`: the hypervisor never writes an ext4 disk");
                }
                if attach == DiskAs::Initrd && !file.disk_after.is_empty() {
                    bail!("field `disk_after`: a boot module's writes never reach the image; attach the disk as virtio");
                }
                if fs == DiskFs::Ext4 && file.disk_spare_kib.is_some() {
                    bail!("field `disk_spare_kib`: an ext4 disk has no partition table to add to");
                }
                let from = match dir {
                    Some(dir) => {
                        let from = util::repo_root().join(&dir);
                        if !from.is_dir() {
                            bail!("field `disk`: {dir} is not a directory");
                        }
                        Some(from)
                    }
                    None => None,
                };
                Some(ScenarioDisk {
                    from,
                    attach,
                    fs,
                    guests: file.disk_guests,
                    after: file.disk_after,
                    zeroed: file.disk_zeroed.into_iter().collect(),
                    spare: file.disk_spare_kib.map(|kib| kib << 10),
                })
            }
        };
        for d in &file.host_disks {
            d.check()?;
        }
        if !file.host_disks.is_empty() && disk.as_ref().is_none_or(|d| d.attach != DiskAs::Virtio) {
            bail!("field `host_disks`: give the scenario a disk attached as virtio too (the hypervisor's disk comes first)");
        }
        let mut fail_on: Vec<String> = DEFAULT_FAIL_ON.iter().map(|s| (*s).to_owned()).collect();
        fail_on.extend(
            file.fail_on
                .into_iter()
                .filter(|s| !DEFAULT_FAIL_ON.contains(&s.as_str())),
        );
        Ok(Scenario {
            name,
            path: path.to_owned(),
            machine,
            emulator: file.emulator,
            cpu_model,
            boot_args: file.boot_args,
            extra_args: file.extra_args,
            timeout: Duration::from_secs(file.timeout_secs),
            expect: file.expect,
            expect_unordered: file.expect_unordered,
            fail_on,
            expect_exit: file.expect_exit,
            vms,
            vms_from,
            pending: file.pending,
            timing_sensitive: file.timing_sensitive,
            steps: file
                .steps
                .into_iter()
                .map(|s| Step {
                    expect: s.expect,
                    send: s.send,
                })
                .collect(),
            disk,
            host_disks: file.host_disks,
        })
    }

    /// The image this scenario boots: its architecture with the VMs built in (none when
    /// they come from the disk: the plain image).
    pub fn image_key(&self) -> ImageKey {
        match self.vms_from {
            VmsFrom::Image => (self.machine.arch, self.vms.clone()),
            VmsFrom::Disk => (self.machine.arch, VmSet::none()),
        }
    }
}

/// Checks the fields that depend on the emulator and returns the CPU model (Bochs' own,
/// `None` for QEMU).
fn emulator_fields(
    emulator: Emulator,
    machine: &Machine,
    cpu_model: Option<String>,
    extra_args: &[String],
) -> Result<Option<String>> {
    emulator.check(machine.arch).context("field `emulator`")?;
    match emulator {
        Emulator::Bochs => {
            let model = cpu_model.unwrap_or_else(|| bochs::DEFAULT_CPU_MODEL.to_owned());
            if model.is_empty() || !model.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!("field `cpu_model`: {model:?} is not a Bochs CPU model name");
            }
            bochs::megs(&machine.mem).context("field `mem`")?;
            if !extra_args.is_empty() {
                bail!(
                    "field `extra_args`: these are QEMU arguments; a bochs scenario takes \
                     `cpu_model` and `boot_args`"
                );
            }
            Ok(Some(model))
        }
        Emulator::Qemu => {
            if cpu_model.is_some() {
                bail!(
                    "field `cpu_model`: Bochs only (a QEMU scenario gives \
                     `extra_args = [\"-cpu\", ...]`)"
                );
            }
            Ok(None)
        }
    }
}

/// Which hypervisor image: an architecture and the VMs built in.
pub type ImageKey = (Arch, VmSet);

/// Loads every `*.toml` scenario in `dir`, sorted by name. Reports every bad file, and
/// duplicate names, in one error.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the scenario directory {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading the scenario directory {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match Scenario::load(&path) {
            Ok(s) => {
                if let Some(other) = scenarios.iter().find(|o| o.name == s.name) {
                    problems.push(format!(
                        "{}: name {:?} is already used by {}",
                        path.display(),
                        s.name,
                        other.path.display()
                    ));
                } else {
                    scenarios.push(s);
                }
            }
            Err(err) => problems.push(format!("{err:#}")),
        }
    }
    if !problems.is_empty() {
        bail!("bad scenario files:\n  {}", problems.join("\n  "));
    }
    scenarios.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(scenarios)
}

/// How a scenario ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Every expectation was met.
    Passed,
    /// It failed (the report says why).
    Failed,
    /// It is `pending` and was not run.
    Skipped,
}

/// The result of one scenario.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The scenario's name.
    pub name: String,
    /// Passed, failed or skipped.
    pub status: Status,
    /// The block printed for it: one line when it passed or was skipped, the details when
    /// it failed.
    pub report: String,
    /// How long it took (zero when it was not run).
    pub took: Duration,
    /// The CPU time its emulator used (every thread, user and system), when known.
    pub cpu: Option<Duration>,
}

impl Outcome {
    /// The outcome of a pending scenario: `SKIP name: reason`.
    fn skipped(scenario: &Scenario, reason: &str) -> Outcome {
        Outcome {
            name: scenario.name.clone(),
            status: Status::Skipped,
            report: format!("SKIP {}: {reason}\n", scenario.name),
            took: Duration::ZERO,
            cpu: None,
        }
    }
}

/// The hypervisor images the scenarios boot, published one by one as they are built, so
/// that scenarios start while later images are still building (see [`run_while_building`]).
#[derive(Default)]
pub struct Images {
    state: Mutex<ImagesState>,
    changed: Condvar,
}

#[derive(Default)]
struct ImagesState {
    built: BTreeMap<ImageKey, PathBuf>,
    /// No more images come (every build is done, or one failed).
    finished: bool,
    /// A build failed: no more scenarios are started.
    failed: bool,
}

impl Images {
    /// Images that are all built already.
    pub fn built(images: BTreeMap<ImageKey, PathBuf>) -> Images {
        Images {
            state: Mutex::new(ImagesState {
                built: images,
                finished: true,
                failed: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, ImagesState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the built image `boot` for `key`; the scenarios waiting for it start.
    pub fn publish(&self, key: ImageKey, boot: PathBuf) {
        self.state().built.insert(key, boot);
        self.changed.notify_all();
    }

    /// Something other than a build changed what [`Images::next`]'s `may_take` accepts: the
    /// waiting workers look again.
    fn wake(&self) {
        // Under the lock: a worker between its look and its wait misses no wake-up.
        let _state = self.state();
        self.changed.notify_all();
    }

    /// No more images come: the scenarios whose image was not built fail saying so.
    pub fn finish(&self) {
        self.state().finished = true;
        self.changed.notify_all();
    }

    /// A build failed: the scenarios not started yet are not run.
    pub fn fail(&self) {
        let mut state = self.state();
        state.finished = true;
        state.failed = true;
        self.changed.notify_all();
    }

    /// Takes the first scenario of `queue` whose image is built (or will never be) and that
    /// `may_take` accepts, waiting for one if need be, with its image (`None`: it was not
    /// built). `may_take` is asked about the ready scenarios in order until it accepts one,
    /// so it may claim something for the scenario it accepts. `None` when the queue is
    /// empty or a build failed.
    fn next<'a>(
        &self,
        queue: &Mutex<Vec<&'a Scenario>>,
        may_take: impl Fn(&Scenario) -> bool,
    ) -> Option<(&'a Scenario, Option<PathBuf>)> {
        let mut state = self.state();
        loop {
            if state.failed {
                return None;
            }
            let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.is_empty() {
                return None;
            }
            let ready = queue.iter().position(|s| {
                (state.finished || state.built.contains_key(&s.image_key())) && may_take(s)
            });
            if let Some(i) = ready {
                let scenario = queue.remove(i);
                return Some((scenario, state.built.get(&scenario.image_key()).cloned()));
            }
            drop(queue);
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// For an extra worker: takes the last scenario of `queue` (the shortest time limit)
    /// whose image is built and that is not timing-sensitive, without waiting.
    fn take_short<'a>(&self, queue: &Mutex<Vec<&'a Scenario>>) -> Option<(&'a Scenario, PathBuf)> {
        let state = self.state();
        if state.failed {
            return None;
        }
        let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
        let i = queue
            .iter()
            .rposition(|s| !s.timing_sensitive && state.built.contains_key(&s.image_key()))?;
        let scenario = queue.remove(i);
        Some((scenario, state.built.get(&scenario.image_key())?.clone()))
    }

    /// Whether no scenario will be taken any more (the queue is empty, or a build failed).
    fn over(&self, queue: &Mutex<Vec<&Scenario>>) -> bool {
        self.state().failed || queue.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// The machine's idle CPU time between two looks, from `/proc/stat` (all cores).
#[derive(Default)]
struct IdleCpu {
    /// The idle ticks at the last look, and when.
    last: Mutex<Option<(u64, Instant)>>,
}

impl IdleCpu {
    /// How many cores were idle on average since the last look (by any worker); 0 at the
    /// first look, or without `/proc/stat`.
    fn cores_idle(&self) -> f64 {
        let Some(idle) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| idle_ticks(&stat))
        else {
            return 0.0;
        };
        let now = Instant::now();
        let previous = self
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace((idle, now));
        match previous {
            Some((before, then)) if now > then => {
                // Linux counts 100 ticks a second per core.
                idle.saturating_sub(before) as f64 / 100.0 / (now - then).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Waits until a look finds [`IDLE_TO_START`] cores idle (true), looking every
    /// [`IDLE_SAMPLE`]; false once no scenario is left to take.
    fn wait_for_a_core(&self, images: &Images, queue: &Mutex<Vec<&Scenario>>) -> bool {
        loop {
            std::thread::sleep(IDLE_SAMPLE);
            if images.over(queue) {
                return false;
            }
            if self.cores_idle() >= IDLE_TO_START {
                return true;
            }
        }
    }
}

/// Timing-sensitive scenarios run one at a time, and the extra workers stand aside for
/// them: none starts while one runs (or waits to), and one waits for the running extras to
/// end before it starts. The other main worker runs the scenarios that are not
/// timing-sensitive beside it.
#[derive(Default)]
struct Beside {
    /// Whether a timing-sensitive scenario runs (or is about to), and how many extra
    /// workers' scenarios run.
    counts: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Beside {
    fn counts(&self) -> MutexGuard<'_, (bool, usize)> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A main worker may take a timing-sensitive scenario (then [`Beside::wait_for_extras`]
    /// before it starts it, and [`Beside::end_sensitive`] when it ends): false while
    /// another one runs. No extra worker starts a scenario from here on.
    fn claim_sensitive(&self) -> bool {
        let mut counts = self.counts();
        let free = !counts.0;
        counts.0 = true;
        free
    }

    /// Waits until no extra worker's scenario runs.
    fn wait_for_extras(&self) {
        let mut counts = self.counts();
        while counts.1 > 0 {
            counts = self.changed.wait(counts).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn end_sensitive(&self) {
        self.counts().0 = false;
    }

    /// An extra worker may start a scenario (then [`Beside::end_extra`] when it ends):
    /// false while a timing-sensitive one runs.
    fn begin_extra(&self) -> bool {
        let mut counts = self.counts();
        let free = !counts.0;
        if free {
            counts.1 += 1;
        }
        free
    }

    fn end_extra(&self) {
        self.counts().1 -= 1;
        self.changed.notify_all();
    }
}

/// The idle and I/O-wait ticks of all cores in `/proc/stat`'s text (its `cpu` line).
fn idle_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace();
    // user nice system idle iowait ...
    let idle: u64 = fields.nth(3)?.parse().ok()?;
    let iowait: u64 = fields.next()?.parse().ok()?;
    Some(idle + iowait)
}

/// The order the scenarios run in: the longest time limits first (the slow Linux and
/// Bochs runs), so that they do not end the run alone on one worker. The images are built
/// in the order their first scenario comes here.
pub fn run_order(scenarios: &[Scenario]) -> Vec<&Scenario> {
    let mut order: Vec<&Scenario> = scenarios.iter().filter(|s| s.pending.is_none()).collect();
    order.sort_by_key(|s| std::cmp::Reverse(s.timeout));
    order
}

/// Runs `scenarios` on `WORKERS` threads in [`run_order`], printing each one's report as
/// it finishes. `images` gives the image to boot for each (architecture, VMs); pending
/// scenarios are skipped (and need no image).
pub fn run_all(
    scenarios: &[Scenario],
    images: &BTreeMap<ImageKey, PathBuf>,
) -> Result<Vec<Outcome>> {
    run_while_building(scenarios, &Images::built(images.clone()))
}

/// [`run_all`] with images that may still be building: each worker takes the next
/// scenario whose image is there. When a build fails, no more scenarios start.
pub fn run_while_building(scenarios: &[Scenario], images: &Images) -> Result<Vec<Outcome>> {
    let logs = log_dir();
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut outcomes = Vec::new();
    let queue = Mutex::new(run_order(scenarios));
    let pending: Vec<&Scenario> = scenarios.iter().filter(|s| s.pending.is_some()).collect();
    let runnable = scenarios.len() - pending.len();
    println!(
        "running {runnable} scenario(s), {WORKERS} at a time (up to {MAX_WORKERS} while a core \
         is idle), skipping {} pending; logs in {}",
        pending.len(),
        logs.display()
    );
    for scenario in pending {
        let outcome = Outcome::skipped(scenario, scenario.pending.as_deref().unwrap_or_default());
        print!("{}", outcome.report);
        outcomes.push(outcome);
    }
    let (tx, rx) = mpsc::channel::<Outcome>();
    let idle = IdleCpu::default();
    let beside = Beside::default();
    let on_idle = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(runnable) {
            let tx = tx.clone();
            let (queue, logs, beside) = (&queue, &logs, &beside);
            scope.spawn(move || {
                let may_take = |s: &Scenario| !s.timing_sensitive || beside.claim_sensitive();
                while let Some((scenario, image)) = images.next(queue, may_take) {
                    if scenario.timing_sensitive {
                        beside.wait_for_extras();
                    }
                    let outcome = match image {
                        Some(image) => run_one(scenario, &image, logs),
                        None => Outcome {
                            name: scenario.name.clone(),
                            status: Status::Failed,
                            report: format!(
                                "FAIL {}\n  reason: no {} image with the VMs {} was built\n",
                                scenario.name, scenario.machine.arch, scenario.vms
                            ),
                            took: Duration::ZERO,
                            cpu: None,
                        },
                    };
                    if scenario.timing_sensitive {
                        beside.end_sensitive();
                        images.wake();
                    }
                    if tx.send(outcome).is_err() {
                        break;
                    }
                }
            });
        }
        // The extra workers: the shortest time limits, from the queue's end, each started
        // after a look found a core idle.
        for _ in WORKERS..MAX_WORKERS.min(runnable) {
            let tx = tx.clone();
            let (queue, logs, idle, beside, on_idle) = (&queue, &logs, &idle, &beside, &on_idle);
            scope.spawn(move || {
                while idle.wait_for_a_core(images, queue) {
                    if !beside.begin_extra() {
                        continue;
                    }
                    let taken = images.take_short(queue);
                    let outcome = taken.map(|(scenario, image)| {
                        on_idle.fetch_add(1, Ordering::Relaxed);
                        run_one(scenario, &image, logs)
                    });
                    beside.end_extra();
                    if let Some(outcome) = outcome {
                        if tx.send(outcome).is_err() {
                            break;
                        }
                    }
                }
            });
        }
        drop(tx);
        for outcome in rx {
            print!("{}", outcome.report);
            let _ = std::io::stdout().flush();
            outcomes.push(outcome);
        }
    });
    println!("{}", usage_line(&outcomes));
    println!(
        "{} of them started beside the first {WORKERS}, on an idle core",
        on_idle.into_inner()
    );
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(outcomes)
}

/// One line on what the run scenarios took: their times added up, and their emulators' CPU
/// time against that (how much of a core a scenario keeps busy on average; [`WORKERS`]
/// times it is what the scenarios alone use of the machine).
fn usage_line(outcomes: &[Outcome]) -> String {
    let measured: Vec<(Duration, Duration)> = outcomes
        .iter()
        .filter_map(|o| Some((o.took, o.cpu?)))
        .collect();
    let took: Duration = measured.iter().map(|(t, _)| *t).sum();
    let cpu: Duration = measured.iter().map(|(_, c)| *c).sum();
    let share = cpu.as_secs_f64() / took.as_secs_f64().max(f64::EPSILON);
    format!(
        "scenario time: {} scenario(s) took {} in all, their emulators used {} of CPU time \
         ({share:.2} of a core per scenario)",
        measured.len(),
        util::secs(took),
        util::secs(cpu)
    )
}

/// Why a scenario failed.
#[derive(Debug)]
enum Failure {
    /// The emulator could not be started (or the log not written).
    Start(String),
    /// The time limit passed before every expectation was seen.
    Timeout(Duration),
    /// A `fail_on` marker appeared.
    Marker { marker: String, line: String },
    /// The emulator exited (or closed its console) before every expectation was seen.
    ExitedEarly(Option<ExitStatus>),
    /// `expect_exit`: everything was seen, but the emulator did not exit with status 0.
    BadExit(Option<ExitStatus>),
    /// `disk_after`: the disk image does not hold what it should.
    DiskAfter(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = |s: &Option<ExitStatus>| match s {
            Some(s) => s.to_string(),
            None => "its console closed but it did not exit".to_owned(),
        };
        match self {
            Failure::Start(why) => write!(f, "{why}"),
            Failure::Timeout(limit) => write!(f, "timed out after {}", util::secs(*limit)),
            Failure::Marker { marker, line } => {
                write!(f, "failure marker {marker:?} seen in line: {line}")
            }
            Failure::ExitedEarly(s) => write!(f, "emulator exited early: {}", status(s)),
            Failure::BadExit(s) => write!(
                f,
                "all expected lines seen, but the emulator did not exit with status 0: {}",
                status(s)
            ),
            Failure::DiskAfter(why) => write!(f, "after the run, the disk image: {why}"),
        }
    }
}

/// Which stream a console line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    /// The guest console (QEMU's standard output, Bochs' serial file).
    Stdout,
    /// The emulator's own messages.
    Stderr,
}

/// What the threads reading a running emulator report.
pub(crate) enum Event {
    /// One line of a stream, cleaned of terminal control sequences.
    Line(Stream, String),
    /// The console's unfinished line so far, cleaned (QEMU's standard output: a prompt).
    Partial(String),
    /// The stream has ended.
    Closed(Stream),
}

/// What a scenario run starts: a QEMU command line, or Bochs booting an ISO of the image.
#[derive(Debug)]
pub(crate) enum Launch {
    /// QEMU with this command line.
    Qemu(EmulatorCommand),
    /// Bochs with this machine, the image's ISO made with these boot arguments and this
    /// boot module (the scenario's disk image), and its log in this file.
    Bochs {
        config: bochs::Config,
        boot_args: Option<String>,
        module: Option<PathBuf>,
        log: PathBuf,
    },
}

impl Launch {
    /// How `scenario` boots `image`; Bochs logs next to the console log `log_path`.
    fn for_scenario(scenario: &Scenario, image: &Path, log_path: &Path) -> Result<Launch> {
        Ok(match scenario.emulator {
            Emulator::Qemu => {
                let mut extra = Vec::new();
                if let Some(args) = &scenario.boot_args {
                    extra.extend(["-append".to_owned(), args.clone()]);
                }
                extra.extend(scenario.extra_args.iter().cloned());
                if let Some((attach, file)) = build_disk(scenario, log_path)? {
                    extra.extend(disk_args(attach, scenario.machine.arch, &file));
                }
                for d in &scenario.host_disks {
                    extra.extend(d.attach(scenario.machine.arch, log_path)?);
                }
                Launch::Qemu(qemu::emulator_command(
                    &scenario.machine,
                    image,
                    Console::Captured,
                    &extra,
                ))
            }
            Emulator::Bochs => Launch::Bochs {
                config: bochs::Config {
                    cpu_model: scenario
                        .cpu_model
                        .clone()
                        .unwrap_or_else(|| bochs::DEFAULT_CPU_MODEL.to_owned()),
                    cpus: scenario.machine.cpus,
                    megs: bochs::megs(&scenario.machine.mem)?,
                },
                boot_args: scenario.boot_args.clone(),
                module: build_disk(scenario, log_path)?.map(|(_, file)| file),
                log: log_path.with_extension("bochs.log"),
            },
        })
    }
}

/// Makes `scenario`'s disk image, if it has a disk, next to its log `log_path`: the
/// directory `<name>.disk` staged ([`stage_disk`], plus its VMs with `vms_from = "disk"`),
/// then `<name>.disk.img` made from it. Returns how it is attached and the image.
fn build_disk(scenario: &Scenario, log_path: &Path) -> Result<Option<(DiskAs, PathBuf)>> {
    let Some(disk) = &scenario.disk else {
        return Ok(None);
    };
    let arch = scenario.machine.arch;
    let staged = log_path.with_extension("disk");
    stage_disk(disk, arch, &staged)?;
    if scenario.vms_from == VmsFrom::Disk {
        vmdisk::add_vms(
            &staged,
            arch,
            &scenario.vms,
            &crate::guests::image_dir(arch),
        )?;
    }
    let file = log_path.with_extension("disk.img");
    // Only VMs (no directory of the scenario's own): the smallest image that holds them.
    let mut bytes = match (disk.fs, &disk.from) {
        (DiskFs::Ext4, _) => crate::disk::build_ext4(&staged, None)?,
        (DiskFs::Fat, Some(_)) => crate::disk::build(&staged, None)?,
        (DiskFs::Fat, None) => crate::disk::build_small(&staged)?,
    };
    if let Some(spare) = disk.spare {
        crate::disk::add_spare_partition(&mut bytes, spare)?;
    }
    std::fs::write(&file, bytes).with_context(|| format!("could not write {}", file.display()))?;
    Ok(Some((disk.attach, file)))
}

/// Fills directory `to` (emptied first) with what `disk` puts on the disk: its directory's
/// tree, its files of zeros, and its guests' images (built for `arch`) under `images/`.
fn stage_disk(disk: &ScenarioDisk, arch: Arch, to: &Path) -> Result<()> {
    fn copy_tree(from: &Path, to: &Path) -> Result<()> {
        std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
        for entry in
            std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?
        {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy_tree(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), &target)
                    .with_context(|| format!("copying {}", entry.path().display()))?;
            }
        }
        Ok(())
    }
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("removing {}", to.display()))?;
    }
    match &disk.from {
        Some(from) => copy_tree(from, to)?,
        None => {
            std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?
        }
    }
    for (path, bytes) in &disk.zeroed {
        let file = to.join(path);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        File::create(&file)
            .and_then(|f| f.set_len(*bytes))
            .with_context(|| format!("field `disk_zeroed`: making {}", file.display()))?;
    }
    if !disk.guests.is_empty() {
        let images = to.join("images");
        std::fs::create_dir_all(&images)?;
        for g in &disk.guests {
            let image = crate::vmembed::image_file(&crate::guests::image_dir(arch), g);
            std::fs::copy(&image, images.join(format!("{g}.bin"))).with_context(|| {
                format!(
                    "field `disk_guests`: copying {} (built by cargo xtask build)",
                    image.display()
                )
            })?;
        }
    }
    Ok(())
}

/// The QEMU arguments that attach the disk image `file` on `arch` (virtio-blk: on a
/// virtio-mmio transport, or a PCI function on x86_64's q35).
pub(crate) fn disk_args(attach: DiskAs, arch: Arch, file: &Path) -> Vec<String> {
    let file = file.display();
    let device = match arch {
        Arch::X86_64 => "virtio-blk-pci",
        _ => "virtio-blk-device",
    };
    match attach {
        DiskAs::Virtio => vec![
            "-drive".to_owned(),
            format!("file={file},if=none,format=raw,id=disk0"),
            "-device".to_owned(),
            format!("{device},drive=disk0"),
        ],
        DiskAs::Initrd => vec!["-initrd".to_owned(), file.to_string()],
    }
}

impl std::fmt::Display for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Launch::Qemu(cmd) => write!(f, "{cmd}"),
            Launch::Bochs {
                config,
                boot_args,
                module,
                log,
            } => {
                write!(
                    f,
                    "bochs, cpu {} x{}, {} MiB, booting an ISOLINUX ISO of the image",
                    config.cpu_model, config.cpus, config.megs
                )?;
                if let Some(args) = boot_args {
                    write!(f, " with {args:?}")?;
                }
                if let Some(module) = module {
                    write!(f, " and the module {}", module.display())?;
                }
                write!(f, " (bochs log {})", log.display())
            }
        }
    }
}

/// A started emulator and the threads reading its output.
enum Running {
    /// QEMU: its console is its standard output.
    Qemu {
        child: Child,
        /// Its standard input (the console's input) when the scenario types.
        stdin: Option<ChildStdin>,
        readers: Vec<std::thread::JoinHandle<()>>,
    },
    /// Bochs under `script`, its console a file.
    Bochs(bochs::Session),
}

impl Running {
    /// Starts `launch` for `image`; events arrive on `tx`'s channel. With `typing`, QEMU's
    /// standard input (its console's input) is a pipe for [`Running::type_line`]; otherwise
    /// it is closed.
    fn start(
        launch: &Launch,
        image: &Path,
        typing: bool,
        tx: mpsc::Sender<Event>,
    ) -> Result<Running, Failure> {
        use std::os::unix::process::CommandExt;
        match launch {
            Launch::Qemu(cmd) => {
                let mut command = cmd.to_command();
                command
                    .stdin(if typing {
                        Stdio::piped()
                    } else {
                        Stdio::null()
                    })
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .process_group(0);
                let mut child = command
                    .spawn()
                    .map_err(|e| Failure::Start(format!("could not start {}: {e}", cmd.program)))?;
                let readers = [
                    child
                        .stdout
                        .take()
                        .map(|s| (Stream::Stdout, Box::new(s) as Box<dyn Read + Send>)),
                    child
                        .stderr
                        .take()
                        .map(|s| (Stream::Stderr, Box::new(s) as Box<dyn Read + Send>)),
                ]
                .into_iter()
                .flatten()
                .map(|(stream, pipe)| {
                    let tx = tx.clone();
                    std::thread::spawn(move || read_lines(stream, pipe, &tx))
                })
                .collect();
                let stdin = child.stdin.take();
                Ok(Running::Qemu {
                    child,
                    stdin,
                    readers,
                })
            }
            Launch::Bochs {
                config,
                boot_args,
                module,
                log,
            } => {
                let start = || {
                    let prepared = bochs::Prepared::new(
                        config.clone(),
                        image,
                        boot_args.as_deref(),
                        module.as_deref(),
                        log,
                    )?;
                    bochs::Session::start(prepared, &tx, true)
                };
                start()
                    .map(Running::Bochs)
                    .map_err(|e| Failure::Start(format!("{e:#}")))
            }
        }
    }

    /// Types `line` and Enter (CR, as a terminal sends it) on the console.
    fn type_line(&mut self, line: &str) -> std::io::Result<()> {
        match self {
            Running::Qemu {
                stdin: Some(stdin), ..
            } => {
                stdin.write_all(line.as_bytes())?;
                stdin.write_all(b"\r")?;
                stdin.flush()
            }
            _ => Err(std::io::Error::other("this console takes no input")),
        }
    }

    /// Waits for the emulator to exit until `deadline`; `None` if it is still running.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        match self {
            Running::Qemu { child, .. } => wait_until(child, deadline),
            Running::Bochs(session) => session.wait_until(deadline),
        }
    }

    /// The CPU time the emulator has used so far, if it can be read.
    fn cpu_time(&self) -> Option<Duration> {
        match self {
            Running::Qemu { child, .. } => cpu_time(child.id()),
            Running::Bochs(session) => session.cpu_time(),
        }
    }

    /// Stops the emulator (if it still runs) and waits for the reading threads.
    fn stop(self) {
        match self {
            Running::Qemu {
                mut child,
                stdin,
                readers,
            } => {
                drop(stdin);
                stop(&mut child);
                for reader in readers {
                    let _ = reader.join();
                }
            }
            Running::Bochs(session) => session.stop(),
        }
    }
}

/// The console as recorded: the full log on disk, the last lines and the first mismatch
/// lines in memory.
struct Transcript {
    log: BufWriter<File>,
    tail: VecDeque<String>,
    mismatches: Mismatches,
    write_error: Option<std::io::Error>,
}

/// What a failure report shows of the console: its last lines and its first mismatch lines.
#[derive(Debug, Default)]
struct Recorded {
    tail: VecDeque<String>,
    mismatches: Mismatches,
}

/// The first [`MISMATCH_LINES`] console lines holding [`MISMATCH_MARK`], and how many there
/// were in all.
#[derive(Debug, Default)]
struct Mismatches {
    first: Vec<String>,
    count: usize,
}

impl Mismatches {
    fn record(&mut self, line: &str) {
        if line.contains(MISMATCH_MARK) {
            self.count += 1;
            if self.first.len() < MISMATCH_LINES {
                self.first.push(line.to_owned());
            }
        }
    }
}

impl Transcript {
    fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Transcript {
            log: BufWriter::new(file),
            tail: VecDeque::with_capacity(TAIL_LINES),
            mismatches: Mismatches::default(),
            write_error: None,
        })
    }

    fn record(&mut self, stream: Stream, line: &str) {
        let shown = match stream {
            Stream::Stdout => line.to_owned(),
            Stream::Stderr => format!("[emulator stderr] {line}"),
        };
        if let Err(e) = writeln!(self.log, "{shown}") {
            self.write_error.get_or_insert(e);
        }
        if stream == Stream::Stdout {
            self.mismatches.record(line);
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(shown);
    }

    /// Records what the runner typed, as `[typed] LINE`.
    fn typed(&mut self, line: &str) {
        self.record(Stream::Stdout, &format!("[typed] {line}"));
    }

    fn finish(mut self) -> (Recorded, Option<std::io::Error>) {
        if let Err(e) = self.log.flush() {
            self.write_error.get_or_insert(e);
        }
        let recorded = Recorded {
            tail: self.tail,
            mismatches: self.mismatches,
        };
        (recorded, self.write_error)
    }
}

/// Boots one scenario and decides its outcome.
fn run_one(scenario: &Scenario, image: &Path, logs: &Path) -> Outcome {
    let start = Instant::now();
    let log_path = logs.join(format!("{}.log", scenario.name));
    let launch = match Launch::for_scenario(scenario, image, &log_path) {
        Ok(launch) => launch,
        Err(e) => {
            return Outcome {
                name: scenario.name.clone(),
                status: Status::Failed,
                report: format!("FAIL {}\n  reason: {e:#}\n", scenario.name),
                took: start.elapsed(),
                cpu: None,
            }
        }
    };
    let mut matcher = Matcher::new(
        &scenario.expect,
        &scenario.expect_unordered,
        &scenario.fail_on,
    );
    let mut steps = Steps::new(scenario.steps.clone());
    let mut cpu = None;
    let (result, recorded) = match Transcript::create(&log_path) {
        Ok(mut transcript) => {
            let (result, used) = drive(
                scenario,
                image,
                &launch,
                (&mut matcher, &mut steps),
                &mut transcript,
            );
            cpu = used;
            let (recorded, write_error) = transcript.finish();
            let result = match (result, write_error) {
                (Ok(()), Some(e)) => Err(Failure::Start(format!(
                    "writing {}: {e}",
                    log_path.display()
                ))),
                (result, _) => result,
            };
            (result, recorded)
        }
        Err(e) => (Err(Failure::Start(format!("{e:#}"))), Recorded::default()),
    };
    let result = result.and_then(|()| {
        let image = log_path.with_extension("disk.img");
        check_disk_after(scenario.disk.as_ref(), &image).map_err(Failure::DiskAfter)?;
        scenario
            .host_disks
            .iter()
            .try_for_each(|d| d.check_after(&log_path))
            .map_err(Failure::DiskAfter)
    });
    let took = start.elapsed();
    let elapsed = match cpu {
        Some(cpu) => format!("{}, CPU {}", util::secs(took), util::secs(cpu)),
        None => util::secs(took),
    };
    let report = match &result {
        Ok(()) => format!("PASS {} ({elapsed})\n", scenario.name),
        Err(failure) => failure_report(
            scenario,
            failure,
            &Missing {
                step: steps.missing().map(|(i, s)| (i, s.to_owned())),
                ..matcher.missing()
            },
            &launch,
            &log_path,
            &recorded,
            &elapsed,
        ),
    };
    Outcome {
        name: scenario.name.clone(),
        status: if result.is_ok() {
            Status::Passed
        } else {
            Status::Failed
        },
        report,
        took,
        cpu,
    }
}

/// The `disk_after` checks of `disk` on its image file `image` (the emulator has exited).
fn check_disk_after(disk: Option<&ScenarioDisk>, image: &Path) -> Result<(), String> {
    let Some(disk) = disk.filter(|d| !d.after.is_empty()) else {
        return Ok(());
    };
    let bytes = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let mut raw = axfs::RamDisk::new(bytes.clone());
    // Mounted whatever is checked: the volume the hypervisor wrote through is still whole.
    let mut fs = axfs::FileSystem::mount(axfs::RamDisk::new(bytes.clone()))
        .map_err(|e| format!("{}: {e}", image.display()))?;
    for a in &disk.after {
        let (what, data) = match (&a.file, a.partition) {
            (Some(file), _) => (
                file.clone(),
                fs.read(file, 1 << 30).map_err(|e| e.to_string())?,
            ),
            (None, Some(n)) => {
                let what = format!("partition {n}");
                let p = axfs::mbr_partition(&mut raw, n)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("the image has no {what}"))?;
                let range = usize::try_from(p.start * 512)
                    .ok()
                    .zip(usize::try_from((p.start + p.blocks) * 512).ok())
                    .and_then(|(start, end)| bytes.get(start..end))
                    .ok_or_else(|| format!("{what} runs past the image"))?;
                (what, range.to_vec())
            }
            (None, None) => unreachable!("checked when the scenario was loaded"),
        };
        let text = a.contains.as_bytes();
        if !data.windows(text.len()).any(|w| w == text) {
            return Err(format!("{what} does not hold {:?}", a.contains));
        }
    }
    Ok(())
}

fn failure_report(
    scenario: &Scenario,
    failure: &Failure,
    missing: &Missing,
    launch: &Launch,
    log_path: &Path,
    recorded: &Recorded,
    elapsed: &str,
) -> String {
    use std::fmt::Write as _;
    let mut r = String::new();
    let _ = writeln!(r, "FAIL {} ({elapsed})", scenario.name);
    let _ = writeln!(r, "  scenario: {}", scenario.path.display());
    if !scenario.vms.is_empty() {
        let _ = writeln!(r, "  vms:      {}", scenario.vms);
    }
    let _ = writeln!(r, "  reason:   {failure}");
    if let Some((i, expect)) = &missing.step {
        let _ = writeln!(
            r,
            "  missing:  {expect:?} (steps[{i}], the first step not done)"
        );
    }
    if missing.first().is_none() && missing.step.is_none() && scenario.expect_exit {
        let _ = writeln!(
            r,
            "  note:     every expected line was seen; `expect_exit` also needs a clean exit"
        );
    }
    if let Some(first) = missing.first() {
        let which = match &missing.first_ordered {
            Some((i, _)) => format!("expect[{i}]"),
            None => "expect_unordered".to_owned(),
        };
        let _ = writeln!(
            r,
            "  missing:  {first:?} ({which}, the first expected line not seen)"
        );
        let others: Vec<String> = missing
            .unordered
            .iter()
            .filter(|s| s.as_str() != first)
            .map(|s| format!("{s:?}"))
            .collect();
        if !others.is_empty() {
            let _ = writeln!(
                r,
                "  also missing (expect_unordered): {}",
                others.join(", ")
            );
        }
    }
    let mismatches = &recorded.mismatches;
    if let Some((first, rest)) = mismatches.first.split_first() {
        let _ = writeln!(
            r,
            "  mismatch: {first} (the first of {} mismatch line(s))",
            mismatches.count
        );
        for line in rest {
            let _ = writeln!(r, "            {line}");
        }
    }
    let _ = writeln!(r, "  command:  {launch}");
    let _ = writeln!(r, "  log:      {}", log_path.display());
    let tail = &recorded.tail;
    if tail.is_empty() {
        let _ = writeln!(r, "  (no console output)");
    } else {
        let _ = writeln!(r, "  last {} console lines:", tail.len());
        for line in tail {
            let _ = writeln!(r, "  | {line}");
        }
    }
    r
}

/// Starts the emulator and feeds its console to `matcher` until the scenario is decided.
/// The emulator is always stopped before this returns. Also returns the CPU time the
/// emulator used, when it could be read.
fn drive(
    scenario: &Scenario,
    image: &Path,
    launch: &Launch,
    (matcher, steps): (&mut Matcher, &mut Steps),
    transcript: &mut Transcript,
) -> (Result<(), Failure>, Option<Duration>) {
    if !image.is_file() {
        let why = format!(
            "the image {} does not exist (build it with `cargo xtask build --arch {}`)",
            image.display(),
            scenario.machine.arch
        );
        return (Err(Failure::Start(why)), None);
    }
    let (tx, rx) = mpsc::channel();
    let mut running = match Running::start(launch, image, !scenario.steps.is_empty(), tx) {
        Ok(running) => running,
        Err(failure) => return (Err(failure), None),
    };
    // Read while the emulator is there: at its exit, and else just before it is killed.
    let mut cpu = None;
    let start = Instant::now();
    let deadline = start + scenario.timeout;

    // Once every expectation is seen (and no exit is expected), the console is still read
    // (see `Linger`), so that a failure printed just after the last expected line is caught.
    let mut linger: Option<Linger> = None;
    let result = loop {
        let until = linger.as_ref().map_or(deadline, Linger::until);
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            break match linger {
                Some(_) => Ok(()),
                None => Err(Failure::Timeout(scenario.timeout)),
            };
        };
        let event = rx.recv_timeout(left);
        if let (Some(l), Ok(Event::Line(..) | Event::Partial(_))) = (&mut linger, &event) {
            l.heard();
        }
        match event {
            Ok(Event::Line(Stream::Stdout, line)) => {
                transcript.record(Stream::Stdout, &line);
                if let Verdict::FailMarker(marker) = matcher.feed(&line) {
                    break Err(Failure::Marker { marker, line });
                }
                if let Some(typed) = steps.line(&line) {
                    type_line(&mut running, transcript, &typed);
                }
            }
            Ok(Event::Partial(text)) => {
                if let Some(typed) = steps.partial(&text) {
                    type_line(&mut running, transcript, &typed);
                }
            }
            Ok(Event::Line(Stream::Stderr, line)) => transcript.record(Stream::Stderr, &line),
            Ok(Event::Closed(Stream::Stderr)) => {}
            Ok(Event::Closed(Stream::Stdout)) | Err(RecvTimeoutError::Disconnected) => {
                cpu = running.cpu_time();
                let status =
                    running.wait_until(deadline.min(Instant::now() + Duration::from_secs(5)));
                let exited_ok = status.is_some_and(|s| s.success());
                break if !matcher.is_complete() || !steps.is_complete() {
                    Err(Failure::ExitedEarly(status))
                } else if scenario.expect_exit && !exited_ok {
                    Err(Failure::BadExit(status))
                } else {
                    Ok(())
                };
            }
            Err(RecvTimeoutError::Timeout) if linger.is_some() => break Ok(()),
            Err(RecvTimeoutError::Timeout) => break Err(Failure::Timeout(scenario.timeout)),
        }
        if matcher.is_complete() && steps.is_complete() && !scenario.expect_exit && linger.is_none()
        {
            linger = Some(Linger::new(deadline));
        }
    };

    cpu = running.cpu_time().or(cpu);
    running.stop();
    // Whatever arrived after the decision still belongs in the log.
    for event in rx.try_iter() {
        if let Event::Line(stream, line) = event {
            transcript.record(stream, &line);
        }
    }
    (result, cpu)
}

/// The reading of the console after every expectation was seen: it ends when the console
/// has been quiet for [`QUIET`], at most [`LINGER`] after it began (or at the deadline),
/// or when the emulator exits.
struct Linger {
    end: Instant,
    quiet_until: Instant,
}

impl Linger {
    /// Begins now; `deadline` is the scenario's.
    fn new(deadline: Instant) -> Linger {
        let now = Instant::now();
        Linger {
            end: (now + LINGER).min(deadline),
            quiet_until: now + QUIET,
        }
    }

    /// The console said something: it is quiet again only [`QUIET`] from now.
    fn heard(&mut self) {
        self.quiet_until = Instant::now() + QUIET;
    }

    /// When the linger ends if nothing more is heard.
    fn until(&self) -> Instant {
        self.end.min(self.quiet_until)
    }
}

/// Types `line` on the console and notes it in the transcript (a console that no longer
/// takes input is noted too: the emulator's end decides the scenario).
fn type_line(running: &mut Running, transcript: &mut Transcript, line: &str) {
    transcript.typed(line);
    if let Err(e) = running.type_line(line) {
        transcript.record(Stream::Stderr, &format!("(typing failed: {e})"));
    }
}

/// Sends each line of `pipe` as an event, then `Closed`. On standard output, the
/// unfinished line so far also goes as [`Event::Partial`] after every read that leaves one
/// (a prompt waits without its newline).
fn read_lines(stream: Stream, mut pipe: Box<dyn Read + Send>, tx: &mpsc::Sender<Event>) {
    let mut buf = [0u8; 4096];
    let mut line = Vec::new();
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            line.push(b);
            if b == b'\n' {
                if tx.send(Event::Line(stream, clean_line(&line))).is_err() {
                    return;
                }
                line.clear();
            }
        }
        if stream == Stream::Stdout
            && !line.is_empty()
            && tx.send(Event::Partial(clean_line(&line))).is_err()
        {
            return;
        }
    }
    if !line.is_empty() {
        let _ = tx.send(Event::Line(stream, clean_line(&line)));
    }
    let _ = tx.send(Event::Closed(stream));
}

/// Waits for the child to exit until `deadline`; `None` if it is still running.
pub(crate) fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// The CPU time (user and system, every thread) process `pid` has used, from
/// `/proc/<pid>/stat`; `None` when it cannot be read (the process is gone or reaped).
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    parse_cpu_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `utime` + `stime` of a `/proc/<pid>/stat` line, in Linux's fixed 100 ticks a second.
fn parse_cpu_time(stat: &str) -> Option<Duration> {
    // The name (field 2) is in parentheses and may hold anything: count after the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    // utime and stime are fields 14 and 15: the 12th and 13th after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Kills the emulator's whole process group (if it is still running) and reaps it.
pub(crate) fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // The emulator leads its own process group (`process_group(0)`), so its pgid is its pid.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
    }
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario> {
        Scenario::parse(text, Path::new("tests/scenarios/aarch64-demo.toml"))
    }

    #[test]
    fn defaults() {
        let s = parse("arch = \"aarch64\"\nexpect = [\"hello\"]\n").unwrap();
        assert_eq!(s.name, "aarch64-demo");
        assert_eq!(s.machine.arch, Arch::Aarch64);
        assert_eq!(s.machine.cpus, 1);
        assert_eq!(s.machine.gic, Some(Gic::V2));
        assert_eq!(s.machine.mem.as_str(), "1G");
        assert_eq!(s.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
        assert!(s.extra_args.is_empty());
        assert!(s.expect_unordered.is_empty());
        assert_eq!(s.fail_on, ["panicked at", "FAIL "]);
        assert!(!s.expect_exit);
        assert!(s.vms.is_empty());
        assert_eq!(s.pending, None);
        assert_eq!(s.image_key(), (Arch::Aarch64, VmSet::none()));
    }

    #[test]
    fn every_field() {
        let s = parse(
            r#"
            name = "custom"
            arch = "riscv64"
            cpus = 4
            mem = "512M"
            extra_args = ["-icount", "shift=0"]
            timeout_secs = 10
            expect = ["a", "b"]
            expect_unordered = ["c"]
            fail_on = ["ERROR", "FAIL "]
            expect_exit = true
            vms = ["configs/vms/riscv64-hello.toml"]
            pending = "waiting for the VM side"
            timing_sensitive = true
            "#,
        )
        .unwrap();
        assert_eq!(s.name, "custom");
        assert_eq!(s.machine.arch, Arch::Riscv64);
        assert_eq!(s.machine.cpus, 4);
        assert_eq!(s.machine.gic, None);
        assert_eq!(s.machine.mem.as_str(), "512M");
        assert_eq!(s.extra_args, ["-icount", "shift=0"]);
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!(s.expect, ["a", "b"]);
        assert_eq!(s.expect_unordered, ["c"]);
        assert_eq!(s.fail_on, ["panicked at", "FAIL ", "ERROR"]);
        assert!(s.expect_exit);
        assert_eq!(s.vms.files(), ["configs/vms/riscv64-hello.toml"]);
        assert_eq!(s.pending.as_deref(), Some("waiting for the VM side"));
        assert!(s.timing_sensitive);
        // VMs go on the disk by default: the plain image.
        assert_eq!(s.vms_from, VmsFrom::Disk);
        assert_eq!(s.image_key(), (Arch::Riscv64, VmSet::none()));
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let e = error_of("arch = \"aarch64\"\nexpect = [\"x\"]\ntimeout = 5\n");
        assert!(e.contains("tests/scenarios/aarch64-demo.toml"), "{e}");
        assert!(e.contains("unknown field `timeout`"), "{e}");

        let e = error_of("expect = [\"x\"]\n");
        assert!(e.contains("missing field `arch`"), "{e}");

        let e = error_of("arch = \"mips\"\nexpect = [\"x\"]\n");
        assert!(e.contains("mips"), "{e}");

        let e = error_of("arch = \"aarch64\"\ngic = 4\nexpect = [\"x\"]\n");
        assert!(e.contains("GIC version must be 2 or 3"), "{e}");

        let e = error_of("arch = \"riscv64\"\ngic = 3\nexpect = [\"x\"]\n");
        assert!(e.contains("applies only to aarch64"), "{e}");

        let e = error_of("arch = \"aarch64\"\ncpus = 0\nexpect = [\"x\"]\n");
        assert!(e.contains("cpus must be between"), "{e}");

        let e = error_of("arch = \"aarch64\"\nmem = \"lots\"\nexpect = [\"x\"]\n");
        assert!(e.contains("memory size"), "{e}");

        let e = error_of("arch = \"aarch64\"\nexpect = [\"x\", \"\"]\n");
        assert!(
            e.contains("field `expect`: entry 1 is an empty string"),
            "{e}"
        );

        let e = error_of("arch = \"aarch64\"\n");
        assert!(e.contains("nothing to check"), "{e}");

        let e = error_of("arch = \"aarch64\"\nexpect = [\"x\"]\ntimeout_secs = 0\n");
        assert!(e.contains("timeout_secs"), "{e}");

        let e = error_of("arch = \"aarch64\"\nname = \"a/b\"\nexpect = [\"x\"]\n");
        assert!(e.contains("field `name`"), "{e}");

        let e = error_of("arch = \"aarch64\"\nexpect = \"x\"\n");
        assert!(e.contains("expect"), "{e}");

        let e =
            error_of("arch = \"aarch64\"\nexpect = [\"x\"]\nvms = [\"configs/vms/none.toml\"]\n");
        assert!(
            e.contains("field `vms`") && e.contains("does not exist"),
            "{e}"
        );

        let e = error_of(
            "arch = \"aarch64\"\nexpect = [\"x\"]\nvms = \"configs/vms/aarch64-hello.toml\"\n",
        );
        assert!(e.contains("vms"), "{e}");

        let e = error_of("arch = \"aarch64\"\nexpect = [\"x\"]\npending = \" \"\n");
        assert!(e.contains("field `pending`"), "{e}");

        let e = error_of("this is not toml");
        assert!(e.contains("aarch64-demo.toml"), "{e}");
    }

    #[test]
    fn vms_from_the_disk_boot_the_plain_image() {
        let hello = "vms = [\"configs/vms/aarch64-hello.toml\"]\nexpect = [\"x\"]\n";
        // Built in: one image per VM set.
        let s = parse(&format!(
            "arch = \"aarch64\"\nvms_from = \"image\"\n{hello}"
        ))
        .unwrap();
        assert_eq!((s.vms_from, s.disk.clone()), (VmsFrom::Image, None));
        assert_eq!(s.image_key().1, s.vms);
        // No VMs: no disk.
        let s = parse("arch = \"aarch64\"\nexpect = [\"x\"]\n").unwrap();
        assert_eq!((s.vms_from, s.disk.clone()), (VmsFrom::Image, None));

        // The default with VMs, and as written.
        for text in [
            "arch = \"aarch64\"\n",
            "arch = \"aarch64\"\nvms_from = \"disk\"\n",
        ] {
            let s = parse(&format!("{text}{hello}")).unwrap();
            assert_eq!(s.vms_from, VmsFrom::Disk);
            assert_eq!(s.image_key(), (Arch::Aarch64, VmSet::none()));
            let disk = s.disk.clone().unwrap();
            assert_eq!((disk.from, disk.attach), (None, DiskAs::Virtio));
        }
        let on_disk = |text: &str| parse(&format!("{text}vms_from = \"disk\"\n{hello}"));
        // Beside a disk directory of the scenario's own, attached as it says.
        let s = on_disk("arch = \"riscv64\"\ndisk = \"tests/disks/files\"\ndisk_as = \"initrd\"\n")
            .unwrap();
        let disk = s.disk.clone().unwrap();
        assert!(disk.from.is_some());
        assert_eq!((disk.attach, disk.fs), (DiskAs::Initrd, DiskFs::Fat));
        // ext4 when asked, for Bochs' boot module too; never with `disk_after`.
        let s = on_disk("arch = \"x86_64\"\nemulator = \"bochs\"\ndisk_fs = \"ext4\"\n").unwrap();
        assert_eq!(s.disk.unwrap().fs, DiskFs::Ext4);
        let e = error_of(&format!(
            "arch = \"riscv64\"\ndisk = \"tests/disks/files\"\ndisk_fs = \"ext4\"\n{hello}[[disk_after]]\nfile = \"/a\"\ncontains = \"x\"\n"
        ));
        assert!(e.contains("never writes an ext4 disk"), "{e}");
        // x86_64 with QEMU takes it as virtio-blk (PCI), Bochs as a boot module.
        let s = on_disk("arch = \"x86_64\"\n").unwrap();
        assert_eq!(s.disk.unwrap().attach, DiskAs::Virtio);
        let s = on_disk("arch = \"x86_64\"\nemulator = \"bochs\"\n").unwrap();
        assert_eq!(s.disk.unwrap().attach, DiskAs::Initrd);

        let e = error_of("arch = \"aarch64\"\nvms_from = \"disk\"\nexpect = [\"x\"]\n");
        assert!(e.contains("field `vms_from`: \"disk\" needs `vms`"), "{e}");
        let e = error_of(&format!("arch = \"aarch64\"\nvms_from = \"usb\"\n{hello}"));
        assert!(e.contains("vms_from"), "{e}");
        let e = error_of(&format!(
            "arch = \"x86_64\"\nemulator = \"bochs\"\ndisk = \"tests/disks/files\"\nvms_from = \"disk\"\n{hello}"
        ));
        assert!(
            e.contains("Bochs scenarios have only their VMs on a disk"),
            "{e}"
        );
    }

    #[test]
    fn files_of_zeros_are_made_when_the_disk_is_staged() {
        let s = parse(
            "arch = \"aarch64\"\ndisk_zeroed = { \"lblk.img\" = 4_194_304, \"d/z.img\" = 512 }\n\
             expect = [\"x\"]\n",
        )
        .unwrap();
        let disk = s.disk.unwrap();
        assert_eq!(disk.from, None);
        assert_eq!(disk.attach, DiskAs::Virtio);
        assert_eq!(
            disk.zeroed,
            [
                ("d/z.img".to_owned(), 512),
                ("lblk.img".to_owned(), 4 << 20)
            ]
        );
        let to = std::env::temp_dir().join(format!("xtask-zeroed-{}", std::process::id()));
        stage_disk(&disk, Arch::Aarch64, &to).unwrap();
        let lblk = std::fs::read(to.join("lblk.img")).unwrap();
        assert!(lblk.len() == 4 << 20 && lblk.iter().all(|&b| b == 0));
        assert_eq!(std::fs::read(to.join("d/z.img")).unwrap(), [0; 512]);
        std::fs::remove_dir_all(&to).unwrap();
        for (zeroed, error) in [
            (
                "{ \"/a.img\" = 512 }",
                "is not a path from the volume's root",
            ),
            (
                "{ \"../a.img\" = 512 }",
                "is not a path from the volume's root",
            ),
            ("{ \"a.img\" = 0 }", "0 bytes; give 1 to 67108864"),
            ("{ \"a.img\" = 67108865 }", "67108865 bytes"),
        ] {
            let e = error_of(&format!(
                "arch = \"aarch64\"\ndisk_zeroed = {zeroed}\nexpect = [\"x\"]\n"
            ));
            assert!(e.contains(error), "{e}");
        }
    }

    #[test]
    fn disks_are_directories_attached_by_qemu() {
        let s =
            parse("arch = \"riscv64\"\ndisk = \"tests/disks/files\"\nexpect = [\"x\"]\n").unwrap();
        let disk = s.disk.clone().unwrap();
        assert_eq!(disk.attach, DiskAs::Virtio);
        assert!(disk.from.unwrap().ends_with("tests/disks/files"));
        assert_eq!(
            disk_args(DiskAs::Initrd, Arch::X86_64, Path::new("d.img")),
            ["-initrd", "d.img"]
        );
        assert_eq!(
            disk_args(DiskAs::Virtio, Arch::Riscv64, Path::new("d.img"))[1..],
            [
                "file=d.img,if=none,format=raw,id=disk0",
                "-device",
                "virtio-blk-device,drive=disk0"
            ]
        );
        assert_eq!(
            disk_args(DiskAs::Virtio, Arch::X86_64, Path::new("d.img"))[3],
            "virtio-blk-pci,drive=disk0"
        );
        let x86 = parse("arch = \"x86_64\"\ndisk = \"tests/disks/files\"\nexpect = [\"x\"]\n");
        assert_eq!(x86.unwrap().disk.unwrap().attach, DiskAs::Virtio);
        for (text, error) in [
            ("", "the scenario has no disk"),
            (
                "disk = \"tests/disks/files\"\ndisk_as = \"initrd\"\n",
                "a boot module's writes",
            ),
            ("disk = \"tests/disks/files\"\n", ""),
        ] {
            let after = "[[disk_after]]\nfile = \"/README.TXT\"\ncontains = \"from\"\n";
            let r = parse(&format!(
                "arch = \"x86_64\"\n{text}expect = [\"x\"]\n{after}"
            ));
            match r {
                Ok(s) => assert!(error.is_empty() && s.disk.unwrap().after.len() == 1),
                Err(e) => assert!(
                    !error.is_empty() && format!("{e:#}").contains(error),
                    "{e:#}"
                ),
            }
        }
        let empty =
            "disk = \"tests/disks/files\"\n[[disk_after]]\nfile = \"/a\"\ncontains = \"\"\n";
        assert!(parse(&format!("arch = \"x86_64\"\nexpect = [\"x\"]\n{empty}")).is_err());
        // The check itself, on an image of tests/disks/files.
        let image = std::env::temp_dir().join(format!("xtask-after-{}.img", std::process::id()));
        let from = util::repo_root().join("tests/disks/files");
        std::fs::write(&image, crate::disk::build(&from, None).unwrap()).unwrap();
        let disk = |file: &str, contains: &str| ScenarioDisk {
            from: None,
            attach: DiskAs::Virtio,
            fs: DiskFs::Fat,
            guests: Vec::new(),
            after: vec![DiskAfter {
                file: file
                    .strip_prefix("partition ")
                    .is_none()
                    .then(|| file.to_owned()),
                partition: file.strip_prefix("partition ").map(|n| n.parse().unwrap()),
                contains: contains.to_owned(),
            }],
            zeroed: Vec::new(),
            spare: None,
        };
        assert_eq!(check_disk_after(None, &image), Ok(()));
        assert_eq!(
            check_disk_after(Some(&disk("/README.TXT", "from the disk")), &image),
            Ok(())
        );
        let e = check_disk_after(Some(&disk("/README.TXT", "AXVBLK")), &image).unwrap_err();
        assert!(e.contains("does not hold \"AXVBLK\""), "{e}");
        assert!(check_disk_after(Some(&disk("/missing", "x")), &image).is_err());
        // A spare partition, read raw.
        let mut with_spare = crate::disk::build(&from, None).unwrap();
        let at = with_spare.len() + 0x200;
        crate::disk::add_spare_partition(&mut with_spare, 0x2000).unwrap();
        with_spare[at..at + 4].copy_from_slice(b"MARK");
        std::fs::write(&image, with_spare).unwrap();
        assert_eq!(
            check_disk_after(Some(&disk("partition 2", "MARK")), &image),
            Ok(())
        );
        let e = check_disk_after(Some(&disk("partition 2", "AXVBLK")), &image).unwrap_err();
        assert_eq!(e, "partition 2 does not hold \"AXVBLK\"");
        let e = check_disk_after(Some(&disk("partition 3", "MARK")), &image).unwrap_err();
        assert_eq!(e, "the image has no partition 3");
        let both = "disk = \"tests/disks/files\"\n[[disk_after]]\nfile = \"/a\"\npartition = 2\ncontains = \"x\"\n";
        assert!(parse(&format!("arch = \"x86_64\"\nexpect = [\"x\"]\n{both}")).is_err());
        std::fs::remove_file(&image).unwrap();
        assert!(check_disk_after(Some(&disk("/README.TXT", "x")), &image).is_err());
        for (text, field) in [
            (
                "arch = \"aarch64\"\ndisk_as = \"initrd\"\n",
                "fields `disk_as`, `disk_guests`, `disk_fs`: give the `disk` directory too",
            ),
            (
                "arch = \"aarch64\"\ndisk_fs = \"ext4\"\n",
                "give the `disk` directory too",
            ),
            (
                "arch = \"aarch64\"\ndisk = \"tests/disks/files\"\ndisk_fs = \"ntfs\"\n",
                "disk_fs",
            ),
            (
                "arch = \"aarch64\"\ndisk = \"tests/disks/none\"\n",
                "not a directory",
            ),
            (
                "arch = \"aarch64\"\ndisk = \"tests/disks/files\"\ndisk_as = \"usb\"\n",
                "disk_as",
            ),
        ] {
            let e = error_of(&format!("{text}expect = [\"x\"]\n"));
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn emulator_fields_are_checked() {
        let x86 = Machine {
            arch: Arch::X86_64,
            cpus: 4,
            gic: None,
            mem: MemSize::default(),
        };
        let none: &[String] = &[];
        assert_eq!(
            emulator_fields(Emulator::Bochs, &x86, None, none).unwrap(),
            Some(bochs::DEFAULT_CPU_MODEL.to_owned())
        );
        assert_eq!(
            emulator_fields(Emulator::Bochs, &x86, Some("tigerlake".into()), none).unwrap(),
            Some("tigerlake".to_owned())
        );
        assert_eq!(
            emulator_fields(Emulator::Qemu, &x86, None, none).unwrap(),
            None
        );
        let err = |e: Emulator, m: &Machine, model: Option<&str>, extra: &[String]| {
            format!(
                "{:#}",
                emulator_fields(e, m, model.map(str::to_owned), extra).unwrap_err()
            )
        };
        let e = err(Emulator::Bochs, &x86, Some("a b"), none);
        assert!(e.contains("field `cpu_model`"), "{e}");
        let e = err(Emulator::Bochs, &x86, None, &["-icount".to_owned()]);
        assert!(e.contains("field `extra_args`"), "{e}");
        let e = err(Emulator::Qemu, &x86, Some("tigerlake"), none);
        assert!(e.contains("Bochs only"), "{e}");
        let small = Machine {
            mem: "100K".parse().unwrap(),
            ..x86.clone()
        };
        let e = err(Emulator::Bochs, &small, None, none);
        assert!(e.contains("field `mem`") && e.contains("whole MiB"), "{e}");

        let e = error_of("arch = \"aarch64\"\nemulator = \"bochs\"\nexpect = [\"x\"]\n");
        assert!(
            e.contains("field `emulator`") && e.contains("only x86_64"),
            "{e}"
        );
        let e = error_of("arch = \"aarch64\"\nemulator = \"vbox\"\nexpect = [\"x\"]\n");
        assert!(e.contains("vbox"), "{e}");
        let e = error_of("arch = \"aarch64\"\ncpu_model = \"max\"\nexpect = [\"x\"]\n");
        assert!(e.contains("Bochs only"), "{e}");
        let e = error_of("arch = \"aarch64\"\nboot_args = \"a\\nb\"\nexpect = [\"x\"]\n");
        assert!(e.contains("field `boot_args`"), "{e}");
    }

    #[test]
    fn boot_args_go_to_qemu_append() {
        let s = parse(
            "arch = \"riscv64\"\nboot_args = \"log=debug\"\nextra_args = [\"-s\"]\nexpect = [\"x\"]\n",
        )
        .unwrap();
        assert_eq!(s.emulator, Emulator::Qemu);
        assert_eq!(s.boot_args.as_deref(), Some("log=debug"));
        let launch = Launch::for_scenario(&s, Path::new("hv.elf"), Path::new("x.log")).unwrap();
        let shown = launch.to_string();
        assert!(
            shown.ends_with("-kernel hv.elf -append log=debug -s"),
            "{shown}"
        );
    }

    #[test]
    fn bochs_launch_logs_beside_the_console() {
        let mut s = parse("arch = \"aarch64\"\nexpect = [\"x\"]\n").unwrap();
        s.machine = Machine {
            arch: Arch::X86_64,
            cpus: 2,
            gic: None,
            mem: "512M".parse().unwrap(),
        };
        s.emulator = Emulator::Bochs;
        s.boot_args = Some("a=b".to_owned());
        let launch =
            Launch::for_scenario(&s, Path::new("hv.elf"), Path::new("logs/s.log")).unwrap();
        let Launch::Bochs {
            config,
            boot_args,
            module,
            log,
        } = &launch
        else {
            panic!("{launch:?}");
        };
        assert_eq!(config.cpu_model, bochs::DEFAULT_CPU_MODEL);
        assert_eq!((config.cpus, config.megs), (2, 512));
        assert_eq!(boot_args.as_deref(), Some("a=b"));
        assert_eq!(*module, None);
        assert_eq!(log, Path::new("logs/s.bochs.log"));
        assert_eq!(
            launch.to_string(),
            "bochs, cpu corei7_skylake_x x2, 512 MiB, booting an ISOLINUX ISO of the image \
             with \"a=b\" (bochs log logs/s.bochs.log)"
        );
    }

    #[test]
    fn the_repository_scenarios_are_valid() {
        let scenarios = load_dir(&scenario_dir()).unwrap();
        assert!(!scenarios.is_empty());
        for s in &scenarios {
            assert!(
                s.name.contains(s.machine.arch.name()),
                "{}: scenario names contain their architecture so --scenarios ARCH selects them",
                s.name
            );
        }
    }

    #[test]
    fn directory_errors_list_every_bad_file_and_duplicate_names() {
        let dir = std::env::temp_dir().join(format!("xtask-scenarios-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.toml"), "arch = \"aarch64\"\nexpect = [\"x\"]\n").unwrap();
        std::fs::write(
            dir.join("b.toml"),
            "name = \"a\"\narch = \"aarch64\"\nexpect = [\"x\"]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("c.toml"),
            "arch = \"aarch64\"\nbogus = 1\nexpect = [\"x\"]\n",
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "not a scenario").unwrap();
        let e = format!("{:#}", load_dir(&dir).unwrap_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("b.toml: name \"a\" is already used by"), "{e}");
        assert!(
            e.contains("c.toml") && e.contains("unknown field `bogus`"),
            "{e}"
        );
        assert!(!e.contains("notes.txt"), "{e}");
    }
}

/// The runner against a stand-in emulator (`sh -c SCRIPT`), so the process handling is
/// tested without QEMU.
#[cfg(test)]
mod runner_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn run_script(scenario_toml: &str, script: &str) -> (Result<(), Failure>, Matcher, String) {
        let scenario = Scenario::parse(scenario_toml, Path::new("aarch64-fake.toml")).unwrap();
        static RUN: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xtask-runner-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("fake.log");
        let cmd = EmulatorCommand {
            program: "sh".to_owned(),
            args: vec!["-c".to_owned(), script.to_owned()],
        };
        let mut matcher = Matcher::new(
            &scenario.expect,
            &scenario.expect_unordered,
            &scenario.fail_on,
        );
        let mut transcript = Transcript::create(&log).unwrap();
        // Any existing file stands in for the image.
        let launch = Launch::Qemu(cmd);
        let mut steps = Steps::new(scenario.steps.clone());
        let (result, _) = drive(
            &scenario,
            &log,
            &launch,
            (&mut matcher, &mut steps),
            &mut transcript,
        );
        transcript.finish();
        let text = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        (result, matcher, text)
    }

    const BASIC: &str = "arch = \"aarch64\"\nexpect = [\"one\", \"two\"]\ntimeout_secs = 5\n";

    #[test]
    fn passes_when_expectations_are_met_and_kills_the_emulator() {
        let start = Instant::now();
        let (result, _, log) = run_script(
            BASIC,
            "printf '\\033[1mone\\033[0m\\r\\ntwo\\r\\n'; sleep 30",
        );
        assert!(result.is_ok(), "{result:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(log, "one\ntwo\n");
    }

    /// No extra worker starts while a timing-sensitive scenario runs, one waits for the
    /// running extras to end, and a second one is not taken beside the first.
    #[test]
    fn extras_stand_aside_for_timing_sensitive_scenarios() {
        let beside = Beside::default();
        assert!(beside.begin_extra());
        assert!(beside.claim_sensitive());
        assert!(
            !beside.claim_sensitive(),
            "two timing-sensitive ones at once"
        );
        std::thread::scope(|scope| {
            let sensitive = scope.spawn(|| beside.wait_for_extras());
            std::thread::sleep(Duration::from_millis(50));
            assert!(!sensitive.is_finished(), "started beside an extra");
            assert!(!beside.begin_extra(), "an extra started while one waits");
            beside.end_extra();
            sensitive.join().unwrap();
        });
        assert!(!beside.begin_extra());
        beside.end_sensitive();
        assert!(beside.begin_extra());
        beside.end_extra();
        assert!(beside.claim_sensitive());
        beside.end_sensitive();
    }

    /// While a timing-sensitive scenario runs, the other main worker takes the next one that
    /// is not, and waits for the end of the first before it takes another sensitive one.
    #[test]
    fn timing_sensitive_scenarios_run_one_at_a_time() {
        let parse = |extra: &str, name: &str| {
            Scenario::parse(&format!("{BASIC}{extra}"), Path::new(name)).unwrap()
        };
        let sensitive = "timing_sensitive = true\n";
        let all = [
            parse(sensitive, "aarch64-hogs.toml"),
            parse(sensitive, "aarch64-storm.toml"),
            parse("", "aarch64-quick.toml"),
        ];
        let images = Images::built(BTreeMap::from([(
            all[0].image_key(),
            PathBuf::from("a.bin"),
        )]));
        let queue = Mutex::new(run_order(&all));
        let beside = Beside::default();
        let may_take = |s: &Scenario| !s.timing_sensitive || beside.claim_sensitive();
        let name = |taken: Option<(&Scenario, Option<PathBuf>)>| taken.unwrap().0.name.clone();
        assert_eq!(name(images.next(&queue, may_take)), "aarch64-hogs");
        assert_eq!(name(images.next(&queue, may_take)), "aarch64-quick");
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| name(images.next(&queue, may_take)));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiter.is_finished(), "took a second timing-sensitive one");
            beside.end_sensitive();
            images.wake();
            assert_eq!(waiter.join().unwrap(), "aarch64-storm");
        });
        assert!(!beside.claim_sensitive(), "the storm's claim was released");
    }

    #[test]
    fn idle_time_is_read_from_proc_stat() {
        let stat = "cpu  4705 356 584 3699 23 0 19 0 0 0\ncpu0 1393 280 234 1853 14 0 0 0 0 0\n";
        assert_eq!(idle_ticks(stat), Some(3722));
        assert_eq!(idle_ticks("cpu0 1 2 3 4 5\n"), None);
        assert_eq!(idle_ticks("cpu  1 2 3\n"), None);
        let idle = IdleCpu::default();
        assert_eq!(
            idle.cores_idle(),
            0.0,
            "the first look has nothing to compare"
        );
        std::thread::sleep(Duration::from_millis(50));
        let cores = idle.cores_idle();
        let max = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!((0.0..=max as f64 + 0.5).contains(&cores), "{cores}");
    }

    #[test]
    fn cpu_time_is_read_from_proc_stat() {
        let stat = "4242 (qemu-system-a) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 31 0 0 20 0 5 0 100 0 0";
        assert_eq!(parse_cpu_time(stat), Some(Duration::from_millis(2810)));
        assert_eq!(parse_cpu_time("4242 (sh) S 1"), None);
        assert!(cpu_time(std::process::id()).is_some());
        let outcome = |took, cpu: Option<u64>| Outcome {
            name: "x".to_owned(),
            status: Status::Passed,
            report: String::new(),
            took: Duration::from_secs(took),
            cpu: cpu.map(Duration::from_secs),
        };
        let line = usage_line(&[outcome(4, Some(1)), outcome(2, Some(2)), outcome(9, None)]);
        assert!(
            line.contains("2 scenario(s) took 6.0 s in all")
                && line.contains("3.0 s of CPU time (0.50"),
            "{line}"
        );
    }

    /// After the last expected line the console is read until it is quiet for `QUIET`: a
    /// failure in the same burst is caught, a line after a longer silence is not waited for,
    /// and a console that never goes quiet is cut at `LINGER`.
    #[test]
    fn the_linger_ends_when_the_console_is_quiet() {
        let (result, _, _) =
            run_script(BASIC, "echo one; echo two; echo 'panicked at a'; sleep 30");
        assert!(matches!(result, Err(Failure::Marker { .. })), "{result:?}");
        let start = Instant::now();
        let (result, _, log) = run_script(
            BASIC,
            "echo one; echo two; sleep 0.8; echo 'panicked at b'; sleep 30",
        );
        assert!(result.is_ok(), "{result:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(!log.contains("panicked"), "{log}");
        let start = Instant::now();
        let (result, _, _) = run_script(
            BASIC,
            "echo one; echo two; while :; do echo tick; sleep 0.05; done",
        );
        assert!(result.is_ok(), "{result:?}");
        assert!(start.elapsed() >= LINGER);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn times_out_and_reports_the_missing_line() {
        let toml = "arch = \"aarch64\"\nexpect = [\"one\", \"two\"]\ntimeout_secs = 1\n";
        let start = Instant::now();
        let (result, matcher, _) = run_script(toml, "echo one; sleep 30");
        assert!(matches!(result, Err(Failure::Timeout(_))), "{result:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(matcher.missing().first(), Some("two"));
    }

    #[test]
    fn fail_marker_stops_at_once() {
        let (result, _, _) = run_script(BASIC, "echo one; echo 'panicked at x.rs:1:1'; sleep 30");
        match result {
            Err(Failure::Marker { marker, line }) => {
                assert_eq!(marker, "panicked at");
                assert_eq!(line, "panicked at x.rs:1:1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn early_exit_is_a_failure_with_its_status() {
        let (result, _, log) = run_script(BASIC, "echo one; echo oops >&2; exit 3");
        match result {
            Err(Failure::ExitedEarly(Some(status))) => assert_eq!(status.code(), Some(3)),
            other => panic!("{other:?}"),
        }
        assert!(log.contains("[emulator stderr] oops"), "{log}");
    }

    #[test]
    fn expect_exit_requires_status_zero() {
        let toml = format!("{BASIC}expect_exit = true\n");
        let (result, _, _) = run_script(&toml, "echo one; echo two; sleep 0.2; exit 0");
        assert!(result.is_ok(), "{result:?}");
        let (result, _, _) = run_script(&toml, "echo one; echo two; exit 1");
        assert!(
            matches!(result, Err(Failure::BadExit(Some(_)))),
            "{result:?}"
        );
    }

    #[test]
    fn steps_type_at_the_prompt() {
        let toml = "arch = \"aarch64\"\ntimeout_secs = 5\n\
                    [[steps]]\nexpect = \"axvisor> \"\nsend = \"vm list\"\n\
                    [[steps]]\nexpect = \"got [vm list]\"\n";
        // The stand-in prints a prompt without a newline, reads the 8 bytes typed (the
        // line and its CR), echoes them and answers.
        let script = "printf 'boot\\r\\naxvisor> '; \
                      l=$(dd bs=1 count=8 2>/dev/null | tr -d '\\r'); \
                      printf '%s\\r\\ngot [%s]\\r\\naxvisor> ' \"$l\" \"$l\"; sleep 30";
        let (result, _, log) = run_script(toml, script);
        assert!(result.is_ok(), "{result:?}\n{log}");
        assert_eq!(
            log,
            "boot\n[typed] vm list\naxvisor> vm list\ngot [vm list]\naxvisor> \n"
        );
    }

    #[test]
    fn a_step_not_seen_fails_with_its_index() {
        let toml = "arch = \"aarch64\"\ntimeout_secs = 1\n\
                    [[steps]]\nexpect = \"axvisor> \"\n";
        let (result, _, _) = run_script(toml, "echo booting; sleep 30");
        assert!(matches!(result, Err(Failure::Timeout(_))), "{result:?}");
    }

    #[test]
    fn steps_are_checked() {
        let bad = |steps: &str| {
            let arch = if steps.contains("bochs") {
                "x86_64"
            } else {
                "aarch64"
            };
            let text = format!("arch = \"{arch}\"\n{steps}");
            format!(
                "{:#}",
                Scenario::parse(&text, Path::new("aarch64-x.toml")).unwrap_err()
            )
        };
        assert!(bad("[[steps]]\nexpect = \"\"\n").contains("step 0: `expect` is an empty string"));
        assert!(bad("[[steps]]\nexpect = \"a\"\nsend = \"a\\nb\"\n").contains("`send` is one line"));
        assert!(bad("emulator = \"bochs\"\n[[steps]]\nexpect = \"a\"\n")
            .contains("only QEMU scenarios can type"));
    }

    /// The workers take the first scenario (in run order) whose image is built, wait while
    /// none is, take the rest once the builds are over, and stop after a failed build.
    #[test]
    fn scenarios_start_as_their_images_are_built() {
        let slow = Scenario::parse(
            "arch = \"x86_64\"\nexpect = [\"x\"]\ntimeout_secs = 300\n",
            Path::new("x86_64-slow.toml"),
        )
        .unwrap();
        let quick = Scenario::parse(BASIC, Path::new("aarch64-quick.toml")).unwrap();
        let other = Scenario::parse(
            "arch = \"riscv64\"\nexpect = [\"x\"]\ntimeout_secs = 5\n",
            Path::new("riscv64-quick.toml"),
        )
        .unwrap();
        let all = [quick.clone(), other.clone(), slow.clone()];
        let order: Vec<&str> = run_order(&all).iter().map(|s| s.name.as_str()).collect();
        assert_eq!(order, ["x86_64-slow", "aarch64-quick", "riscv64-quick"]);

        let images = Images::default();
        let queue = Mutex::new(run_order(&all));
        images.publish(quick.image_key(), PathBuf::from("a.bin"));
        let (first, image) = images.next(&queue, |_| true).unwrap();
        assert_eq!(
            (first.name.as_str(), image),
            ("aarch64-quick", Some("a.bin".into()))
        );
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                images
                    .next(&queue, |_| true)
                    .map(|(s, i)| (s.name.clone(), i))
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                !waiter.is_finished(),
                "took a scenario whose image is not built"
            );
            images.publish(slow.image_key(), PathBuf::from("x.elf"));
            let got = waiter.join().unwrap();
            assert_eq!(got, Some(("x86_64-slow".to_owned(), Some("x.elf".into()))));
        });
        // The builds are over: the last one goes, without an image.
        images.finish();
        let (last, image) = images.next(&queue, |_| true).unwrap();
        assert_eq!((last.name.as_str(), image), ("riscv64-quick", None));
        assert!(images.next(&queue, |_| true).is_none());

        // An extra worker takes from the end: the shortest time limit whose image is built,
        // not a timing-sensitive one, and does not wait.
        let images = Images::default();
        let sensitive = Scenario::parse(
            &format!("{BASIC}timing_sensitive = true\n"),
            Path::new("aarch64-hogs.toml"),
        )
        .unwrap();
        assert!(sensitive.timing_sensitive && !quick.timing_sensitive);
        let all = [slow.clone(), quick.clone(), sensitive, other.clone()];
        let queue = Mutex::new(run_order(&all));
        assert!(images.take_short(&queue).is_none(), "no image built yet");
        images.publish(quick.image_key(), PathBuf::from("a.bin"));
        images.publish(slow.image_key(), PathBuf::from("x.elf"));
        let (tail, image) = images.take_short(&queue).unwrap();
        assert_eq!(
            (tail.name.as_str(), image),
            ("aarch64-quick", "a.bin".into())
        );
        let (tail, _) = images.take_short(&queue).unwrap();
        assert_eq!(tail.name, "x86_64-slow");
        assert!(
            images.take_short(&queue).is_none(),
            "only the sensitive one is left"
        );
        assert!(!images.over(&queue));

        // After a failed build no scenario starts, even one whose image is there.
        let images = Images::default();
        let queue = Mutex::new(run_order(&all));
        images.publish(quick.image_key(), PathBuf::from("a.bin"));
        images.fail();
        assert!(images.next(&queue, |_| true).is_none());
        assert!(images.over(&queue));
    }

    #[test]
    fn pending_scenarios_are_skipped_without_an_image() {
        let toml = format!("{BASIC}pending = \"not wired yet\"\n");
        let pending = Scenario::parse(&toml, Path::new("aarch64-later.toml")).unwrap();
        let outcomes = run_all(&[pending], &BTreeMap::new()).unwrap();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].status, Status::Skipped);
        assert_eq!(outcomes[0].report, "SKIP aarch64-later: not wired yet\n");
    }

    #[test]
    fn missing_image_and_emulator_are_clear_errors() {
        let scenario = Scenario::parse(BASIC, Path::new("aarch64-fake.toml")).unwrap();
        let dir = std::env::temp_dir().join(format!("xtask-runner-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let outcome = run_one(&scenario, &dir.join("no-such-image.bin"), &dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(outcome.status, Status::Failed);
        assert!(
            outcome.report.contains("FAIL aarch64-fake"),
            "{}",
            outcome.report
        );
        assert!(
            outcome.report.contains("does not exist"),
            "{}",
            outcome.report
        );
        assert!(
            outcome.report.contains("missing:  \"one\""),
            "{}",
            outcome.report
        );
    }

    /// A guest's failed checks are named in the report even when the console went on for
    /// more than the tail's lines after them.
    #[test]
    fn the_report_names_the_first_mismatch_lines() {
        let scenario = Scenario::parse(BASIC, Path::new("aarch64-fake.toml")).unwrap();
        let dir = std::env::temp_dir().join(format!("xtask-mismatch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("fake.log");
        let mut transcript = Transcript::create(&log).unwrap();
        for i in 0..MISMATCH_LINES + 2 {
            transcript.record(Stream::Stdout, &format!("[vm] guest: mismatch: check {i}"));
        }
        transcript.record(Stream::Stderr, "qemu: mismatch: not a guest's");
        for i in 0..TAIL_LINES {
            transcript.record(Stream::Stdout, &format!("[vm] later line {i}"));
        }
        let (recorded, error) = transcript.finish();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(error.is_none());
        let launch = Launch::Qemu(EmulatorCommand {
            program: "qemu".to_owned(),
            args: Vec::new(),
        });
        let failure = Failure::Marker {
            marker: "FAIL ".to_owned(),
            line: "[vm] FAIL guest: 12 of 20 checks failed".to_owned(),
        };
        let report = failure_report(
            &scenario,
            &failure,
            &Missing::default(),
            &launch,
            &log,
            &recorded,
            "1.0 s",
        );
        let first = format!(
            "  mismatch: [vm] guest: mismatch: check 0 (the first of {} mismatch line(s))\n",
            MISMATCH_LINES + 2
        );
        assert!(report.contains(&first), "{report}");
        let last_shown = format!("check {}\n", MISMATCH_LINES - 1);
        assert!(report.contains(&last_shown), "{report}");
        let not_shown = format!("check {}\n", MISMATCH_LINES);
        assert!(!report.contains(&not_shown), "{report}");
        assert!(!report.contains("not a guest's"), "{report}");
        assert!(
            report.find("mismatch:") < report.find("command:"),
            "{report}"
        );
    }
}
