//! `cargo xtask bench`: measures the hypervisor against a baseline run in the same command,
//! in six parts per architecture (see `docs/performance.md`):
//!
//! - [`exits`]: hypercall and emulated-MMIO round trips, in guest-visible instructions
//!   under `-icount shift=0`, against the guest's own exception round trip;
//! - [`latency`]: from the expiry of the guest's timer to its interrupt handler, in
//!   instructions, against the same guest booted on the emulator without the hypervisor;
//! - [`linux`]: wall-clock time from the emulator's start to the Linux guest's marker line,
//!   against the same kernel and initramfs booted without the hypervisor;
//! - [`blk`]: a Linux guest's virtio-blk throughput against its own RAM disk (tmpfs) in the
//!   same boot, timed by the guest under `-icount shift=0`;
//! - [`net`]: a virtio-net round trip between two VMs on a virtual switch, in instructions,
//!   against the same guest's loopback between two cards of one VM;
//! - [`link`]: a doorbell round trip between two VMs on a link, in instructions, against
//!   an emulated MMIO read in the same boot.
//!
//! Guests in VMs boot through the scenario runner ([`scenario::run_all`]) with an image from
//! [`image::build`] ([`VmBench`]); guests without the hypervisor, and the timed Linux boots,
//! through [`console::run`]. A part that fails is reported as failed and the others still
//! run; the command then exits non-zero.

mod blk;
pub mod console;
mod exits;
mod latency;
mod link;
mod linux;
mod net;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::arch::{Arch, Gic, MemSize};
use crate::qemu::{EmulatorCommand, Machine};
use crate::scenario::{self, Emulator, Scenario, Status, VmsFrom, DEFAULT_FAIL_ON};
use crate::vmset::VmSet;
use crate::{bochs, image, setup, util};

/// What the hypervisor prints when it cannot run VMs on an architecture yet.
pub const NOT_SUPPORTED: &str = "VMs are not supported";
/// The hypervisor's command line for bench VMs.
pub const BOOT_ARGS: &str = "shell=off";
/// Time limit of one boot of a bench VM.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// Where the result tables go: `target/bench/<arch>.md`.
pub fn result_dir() -> PathBuf {
    util::target_dir().join("bench")
}

/// Where the consoles of the boots outside the scenario runner go: `target/bench/logs/`.
pub fn log_dir() -> PathBuf {
    result_dir().join("logs")
}

/// One part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Hypercall and MMIO exits against the guest's own exception (icount).
    Exits,
    /// Timer interrupt latency, under the hypervisor and bare (icount).
    Timer,
    /// Linux boot to its marker, under the hypervisor and direct (wall clock).
    Linux,
    /// virtio-blk throughput against a RAM disk, in one Linux boot (icount).
    Blk,
    /// virtio-net round trip between two VMs against a loopback in one VM (icount).
    Net,
    /// Doorbell round trip between two VMs on a link against an MMIO read (icount).
    Link,
}

impl Part {
    /// Every part, in the order they run.
    pub const ALL: [Part; 6] = [
        Part::Exits,
        Part::Timer,
        Part::Linux,
        Part::Blk,
        Part::Net,
        Part::Link,
    ];

    /// The section title in the report.
    pub fn title(self) -> &'static str {
        match self {
            Part::Exits => "Exit costs (instructions, -icount)",
            Part::Timer => "Timer interrupt latency (instructions, -icount)",
            Part::Linux => "Linux boot to marker (wall clock)",
            Part::Blk => "virtio-blk throughput against a RAM disk (Linux, -icount)",
            Part::Net => {
                "virtio-net round trip between two VMs against a loopback (instructions, -icount)"
            }
            Part::Link => {
                "Doorbell round trip between two VMs against an MMIO read (instructions, -icount)"
            }
        }
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Exits => "exits",
            Part::Timer => "timer",
            Part::Linux => "linux",
            Part::Blk => "blk",
            Part::Net => "net",
            Part::Link => "link",
        })
    }
}

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Only this architecture (default: all three).
    #[arg(long, value_enum)]
    arch: Option<Arch>,
    /// How many times to boot each guest; medians over the runs are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=15))]
    runs: u32,
    /// Only these parts (repeatable; default: all of them).
    #[arg(long, value_enum)]
    only: Vec<Part>,
}

/// How a part ended, when it did not fail outright.
#[derive(Debug)]
pub enum PartResult {
    /// Measured: the section text (Markdown).
    Done(String),
    /// Partly measured: the section text of what worked, and what failed.
    Partial { text: String, errors: Vec<String> },
    /// Not available on this architecture yet, and why.
    NotAvailable(String),
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Whether a failed run's console shows that the hypervisor cannot run VMs here yet.
pub fn says_not_supported(log: &str) -> bool {
    log.lines().any(|l| l.contains(NOT_SUPPORTED))
}

/// `cmd` (made by [`crate::qemu::emulator_command`]) for a guest that runs without the
/// hypervisor on the same machine: on aarch64 without `virtualization=on`, so QEMU starts
/// the guest at EL1 (where it runs in a VM too) with PSCI over `hvc`. Other architectures'
/// commands are returned as they are.
pub fn without_el2(mut cmd: EmulatorCommand) -> Result<EmulatorCommand> {
    if cmd.program != "qemu-system-aarch64" {
        return Ok(cmd);
    }
    let at = cmd
        .args
        .iter()
        .position(|a| a == "-M")
        .and_then(|i| cmd.args.get_mut(i + 1))
        .context("the emulator command has no -M")?;
    let options: Vec<&str> = at.split(',').collect();
    if !options.contains(&"virtualization=on") {
        bail!("the machine {at:?} has no virtualization=on to remove");
    }
    *at = options
        .into_iter()
        .filter(|o| *o != "virtualization=on")
        .collect::<Vec<_>>()
        .join(",");
    Ok(cmd)
}

/// `-M …`, `-smp …` and `-m …` of an emulator command, for the report.
pub fn machine_summary(cmd: &EmulatorCommand) -> String {
    let mut parts = Vec::new();
    for flag in ["-M", "-smp", "-m"] {
        if let Some(i) = cmd.args.iter().position(|a| a == flag) {
            if let Some(value) = cmd.args.get(i + 1) {
                parts.push(format!("{flag} {value}"));
            }
        }
    }
    parts.join(" ")
}

/// The host's load averages over 1, 5 and 15 minutes, from `/proc/loadavg`.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

/// The emulator a bench guest's VM runs on, and its CPU: on x86_64 one per hardware
/// virtualization backend (VMX under Bochs, SVM under QEMU TCG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform {
    /// The emulator.
    pub emulator: Emulator,
    /// The CPU model: QEMU's `-cpu`, Bochs' `cpu: model=`; `None`: the runner's default
    /// for the architecture.
    pub cpu: Option<&'static str>,
    /// Its name in scenario names and the report (`vmx`, `svm`); `None` where an
    /// architecture has one platform.
    pub label: Option<&'static str>,
}

impl Platform {
    /// The architecture's usual emulator for VMs ([`Emulator::for_vms`]) and CPU.
    pub fn usual(arch: Arch) -> Platform {
        Platform {
            emulator: Emulator::for_vms(arch),
            cpu: None,
            label: None,
        }
    }

    /// x86_64 with VMX: Bochs, [`bochs::DEFAULT_CPU_MODEL`].
    pub const X86_VMX: Platform = Platform {
        emulator: Emulator::Bochs,
        cpu: Some(bochs::DEFAULT_CPU_MODEL),
        label: Some("vmx"),
    };

    /// x86_64 with SVM: QEMU TCG, `-cpu EPYC` (SVM with nested paging; QEMU has no VMX).
    pub const X86_SVM: Platform = Platform {
        emulator: Emulator::Qemu,
        cpu: Some("EPYC"),
        label: Some("svm"),
    };
}

/// A bench guest in a VM of its own on a 1-CPU machine, booted through the scenario
/// runner. The guest and its VM share one name, and the guest prints `PASS <name>`.
#[derive(Clone, Debug)]
pub struct VmBench<'a> {
    /// The architecture.
    pub arch: Arch,
    /// The VM config, relative to the repository root.
    pub config: String,
    /// The VM's and the guest's name.
    pub vm: &'a str,
    /// The emulator's `-icount` arguments (QEMU; under Bochs, on x86_64, the TSC counts
    /// instructions without them).
    pub icount: &'a [&'a str],
    /// The emulator and CPU.
    pub platform: Platform,
}

/// The consoles of a [`VmBench`]'s runs, or why the hypervisor cannot run them.
#[derive(Debug)]
pub enum Boots {
    /// Every run passed: each one's log file and console.
    Logs(Vec<(PathBuf, String)>),
    /// The hypervisor says it cannot run VMs on this architecture yet.
    NotAvailable(String),
}

impl VmBench<'_> {
    /// Builds the guests and a hypervisor image with this VM (as `cargo xtask build --vm`).
    pub fn build(&self) -> Result<(VmSet, PathBuf)> {
        let vms = VmSet::from_root_relative(util::repo_root(), std::slice::from_ref(&self.config))?;
        let hv = image::build(self.arch, &vms)?;
        Ok((vms, hv.boot))
    }

    /// Run `index` as a scenario: one CPU with `gic`, the `-icount` arguments, and the
    /// VM's creation, the guest's pass marker and the VM's power-off expected in order.
    pub fn scenario(&self, vms: &VmSet, gic: Option<Gic>, index: u32) -> Result<Scenario> {
        let machine = Machine::new(self.arch, 1, gic, MemSize::default())?;
        let vm = self.vm;
        let mut fail_on: Vec<String> = DEFAULT_FAIL_ON.iter().map(|s| (*s).to_owned()).collect();
        fail_on.push(NOT_SUPPORTED.to_owned());
        fail_on.push(format!("vm {vm}: stopped"));
        fail_on.push(format!("vm {vm}: cannot"));
        let gic_label = gic.map_or(String::new(), |g| format!("-gicv{}", g.number()));
        let platform_label = self
            .platform
            .label
            .map_or(String::new(), |l| format!("-{l}"));
        // QEMU counts instructions with `-icount`; under Bochs (x86_64) the TSC does.
        let emulator = self.platform.emulator;
        let (cpu_model, extra_args) = match emulator {
            Emulator::Qemu => {
                let mut args: Vec<String> = Vec::new();
                if let Some(cpu) = self.platform.cpu {
                    args.extend(["-cpu".to_owned(), cpu.to_owned()]);
                }
                args.extend(self.icount.iter().map(|s| (*s).to_owned()));
                (None, args)
            }
            Emulator::Bochs => (
                Some(
                    self.platform
                        .cpu
                        .unwrap_or(bochs::DEFAULT_CPU_MODEL)
                        .to_owned(),
                ),
                Vec::new(),
            ),
        };
        Ok(Scenario {
            name: format!("{vm}-{}{platform_label}{gic_label}-run{index}", self.arch),
            path: util::repo_root().join(&self.config),
            machine,
            emulator,
            cpu_model,
            // No console shell: its polling task would interrupt the measured vCPU on CPU 0.
            boot_args: Some(BOOT_ARGS.to_owned()),
            extra_args,
            timeout: TIMEOUT,
            expect: vec![
                format!("vm {vm}: created"),
                format!("[{vm}] PASS {vm}"),
                format!("vm {vm}: powered off"),
            ],
            expect_unordered: Vec::new(),
            fail_on,
            expect_exit: false,
            vms: vms.clone(),
            vms_from: VmsFrom::Image,
            pending: None,
            timing_sensitive: false,
            steps: Vec::new(),
            disk: None,
            host_disks: Vec::new(),
        })
    }

    /// Boots the built image (`image` from [`VmBench::build`]) `runs` times (two at a
    /// time) and returns every run's console; fails at the first run that failed.
    pub fn boot(&self, image: &(VmSet, PathBuf), gic: Option<Gic>, runs: u32) -> Result<Boots> {
        let scenarios = (1..=runs)
            .map(|i| self.scenario(&image.0, gic, i))
            .collect::<Result<Vec<_>>>()?;
        self.run(image, &scenarios)
    }

    /// Runs `scenarios` (from [`VmBench::scenario`], adjusted by the caller) on the built
    /// image, two at a time, and returns every run's console; fails at the first run that
    /// failed.
    pub fn run(&self, image: &(VmSet, PathBuf), scenarios: &[Scenario]) -> Result<Boots> {
        let (vms, boot) = image;
        let images = BTreeMap::from([((self.arch, vms.clone()), boot.clone())]);
        let outcomes = scenario::run_all(scenarios, &images)?;
        let mut logs = Vec::new();
        for outcome in &outcomes {
            let path = scenario::log_dir().join(format!("{}.log", outcome.name));
            let log = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            if outcome.status != Status::Passed {
                if says_not_supported(&log) {
                    return Ok(Boots::NotAvailable(format!(
                        "the hypervisor says \"{NOT_SUPPORTED}\", see {}",
                        path.display()
                    )));
                }
                bail!(
                    "{} failed (report above; log {})",
                    outcome.name,
                    path.display()
                );
            }
            logs.push((path, log));
        }
        Ok(logs_in_order(logs))
    }
}

/// The runner returns outcomes sorted by name; `…-run10` must not come before `…-run2`.
fn logs_in_order(mut logs: Vec<(PathBuf, String)>) -> Boots {
    let index = |p: &PathBuf| {
        p.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.rsplit_once("-run"))
            .and_then(|(_, n)| n.parse::<u32>().ok())
            .unwrap_or(0)
    };
    logs.sort_by_key(|(p, _)| index(p));
    Boots::Logs(logs)
}

/// Whether a part that is not available on `arch` fails the command: on aarch64 every part
/// must run, and the exit costs must run on an architecture asked for with `--arch`.
fn must_run(arch: Arch, part: Part, explicit: bool) -> bool {
    arch == Arch::Aarch64 || (explicit && part == Part::Exits)
}

/// One part's section of the report.
#[derive(Debug)]
struct Section {
    part: Part,
    body: String,
}

/// `cargo xtask bench`.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let (arches, explicit) = match args.arch {
        Some(Arch::X86_64) => (vec![Arch::X86_64], true),
        Some(arch) => {
            arch.ensure_supported()?;
            (vec![arch], true)
        }
        None => (Arch::ALL.to_vec(), false),
    };
    let parts: Vec<Part> = Part::ALL
        .into_iter()
        .filter(|p| args.only.is_empty() || args.only.contains(p))
        .collect();
    setup::ensure()?;
    let host = host_note();
    let mut failed = Vec::new();
    let mut reports = Vec::new();
    for arch in arches {
        let mut sections = Vec::new();
        for &part in &parts {
            println!("\n==> bench {arch}: {}", part.title());
            let result = match part {
                Part::Exits => exits::measure(arch, args.runs),
                Part::Timer => latency::measure(arch, args.runs),
                Part::Linux => linux::measure(arch, args.runs),
                Part::Blk => blk::measure(arch, args.runs),
                Part::Net => net::measure(arch, args.runs),
                Part::Link => link::measure(arch, args.runs),
            };
            let (body, errors) = match result {
                Ok(PartResult::Done(text)) => (text, Vec::new()),
                Ok(PartResult::Partial { text, errors }) => {
                    let mut body = text;
                    for e in &errors {
                        let first = e.lines().next().unwrap_or_default();
                        let _ = writeln!(body, "\n**Failed:** {first}");
                    }
                    (body, errors)
                }
                Ok(PartResult::NotAvailable(why)) => {
                    let body = format!("Not yet supported on {arch}: {why}.\n");
                    let errors = if must_run(arch, part, explicit) {
                        vec![why]
                    } else {
                        Vec::new()
                    };
                    (body, errors)
                }
                Err(err) => {
                    let text = format!("{err:#}");
                    let first = text.lines().next().unwrap_or_default();
                    (format!("**Failed:** {first}\n"), vec![text])
                }
            };
            for e in &errors {
                eprintln!("error: bench {arch} {part}: {e}");
            }
            if !errors.is_empty() {
                failed.push(format!("{arch} {part}"));
            }
            println!("\n{arch}: {}\n\n{body}", part.title());
            sections.push(Section { part, body });
        }
        let path = write_report(arch, &sections, &host)?;
        reports.push((arch, sections, path));
    }
    println!("\n==> summary");
    for (arch, sections, path) in &reports {
        for s in sections {
            println!("\n{arch}: {}\n\n{}", s.part.title(), s.body);
        }
        println!("({arch}: written to {})", path.display());
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("bench failed: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// The host line of the report: CPUs and load when the bench started.
fn host_note() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    match load_average() {
        Some(load) => format!("{cpus} CPUs, load average {load} when the bench started"),
        None => format!("{cpus} CPUs"),
    }
}

/// The file `target/bench/<arch>.md`: what was run, then one section per part.
fn render_report(
    arch: Arch,
    sections: &[Section],
    revision: &str,
    emulator: &str,
    host: &str,
) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "# axvisor bench, {arch}\n");
    let _ = writeln!(
        r,
        "- revision: {revision}\n- emulator: {emulator}\n- host: {host}"
    );
    for s in sections {
        let _ = write!(r, "\n## {}\n\n{}", s.part.title(), s.body);
    }
    r
}

/// Writes `target/bench/<arch>.md`.
fn write_report(arch: Arch, sections: &[Section], host: &str) -> Result<PathBuf> {
    let dir = result_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{arch}.md"));
    let qemu = first_line_of(Command::new(emulator_program(arch)).arg("--version"))
        .unwrap_or_else(|| emulator_program(arch).to_owned());
    // x86_64's exit costs run under both: VMX on Bochs, SVM on QEMU.
    let emulator = match arch {
        Arch::X86_64 => format!("Bochs (VMX); {qemu} (SVM)"),
        Arch::Aarch64 | Arch::Riscv64 => qemu,
    };
    let revision = first_line_of(
        Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(util::repo_root()),
    )
    .unwrap_or_else(|| "unknown".to_owned());
    std::fs::write(
        &path,
        render_report(arch, sections, &revision, &emulator, host),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn emulator_program(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "qemu-system-aarch64",
        Arch::Riscv64 => "qemu-system-riscv64",
        Arch::X86_64 => "qemu-system-x86_64",
    }
}

/// The first line of a command's standard output, if it ran successfully.
fn first_line_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::qemu::{emulator_command, Console};

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[10.0, 1.0, 1000.0]), Some(10.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0, 7.0, 1.0]), Some(7.0));
    }

    #[test]
    fn not_supported_is_recognised() {
        assert!(says_not_supported(
            "all 1 cpus online\nvm config configs/vms/riscv64-bench.toml: VMs are not supported on riscv64 yet; skipped\n"
        ));
        assert!(!says_not_supported(
            "[bench] PASS bench\nvm bench: powered off\n"
        ));
    }

    #[test]
    fn the_same_machine_without_el2() {
        let m = Machine::new(Arch::Aarch64, 1, Some(Gic::V3), MemSize::default()).unwrap();
        let hv = emulator_command(&m, Path::new("g.elf"), Console::Captured, &[]);
        let bare = without_el2(hv.clone()).unwrap();
        assert_eq!(
            bare.to_string(),
            hv.to_string()
                .replace("virt,virtualization=on,gic-version=3", "virt,gic-version=3")
        );
        assert_eq!(machine_summary(&bare), "-M virt,gic-version=3 -smp 1 -m 1G");
        assert!(without_el2(bare).is_err(), "nothing left to remove");
        let m = Machine::new(Arch::Riscv64, 1, None, MemSize::default()).unwrap();
        let rv = emulator_command(&m, Path::new("g.elf"), Console::Captured, &[]);
        assert_eq!(without_el2(rv.clone()).unwrap(), rv);
    }

    #[test]
    fn vm_bench_scenarios() {
        for arch in Arch::SUPPORTED {
            let bench = VmBench {
                arch,
                config: exits::vm_config(arch),
                vm: "bench",
                icount: &["-icount", "shift=0"],
                platform: Platform::usual(arch),
            };
            let vms =
                VmSet::from_root_relative(util::repo_root(), std::slice::from_ref(&bench.config))
                    .unwrap();
            let s = bench.scenario(&vms, None, 2).unwrap();
            assert_eq!(s.name, format!("bench-{arch}-run2"));
            assert_eq!(s.machine.cpus, 1);
            assert_eq!(s.extra_args, ["-icount", "shift=0"]);
            assert!(s.fail_on.iter().any(|f| f == NOT_SUPPORTED));
            assert!(s.fail_on.iter().any(|f| f == "FAIL "));
            assert_eq!(s.expect[1], "[bench] PASS bench");
            assert_eq!(s.expect.last().unwrap(), "vm bench: powered off");
            assert_eq!(s.boot_args.as_deref(), Some("shell=off"));
            assert_eq!(s.image_key(), (arch, vms));
        }
        let bench = VmBench {
            arch: Arch::Aarch64,
            config: latency::vm_config(Arch::Aarch64),
            vm: "benchirq",
            icount: &latency::ICOUNT_ARGS,
            platform: Platform::usual(Arch::Aarch64),
        };
        let vms = VmSet::from_root_relative(util::repo_root(), std::slice::from_ref(&bench.config))
            .unwrap();
        let s = bench.scenario(&vms, Some(Gic::V3), 1).unwrap();
        assert_eq!(s.name, "benchirq-aarch64-gicv3-run1");
        assert_eq!(s.machine.gic, Some(Gic::V3));
        assert_eq!(s.expect[1], "[benchirq] PASS benchirq");

        // x86_64: one platform per backend, each named in its scenarios.
        let x86 = VmBench {
            arch: Arch::X86_64,
            config: exits::vm_config(Arch::X86_64),
            vm: "bench",
            icount: &exits::ICOUNT_ARGS,
            platform: Platform::X86_SVM,
        };
        let vms = VmSet::from_root_relative(util::repo_root(), std::slice::from_ref(&x86.config))
            .unwrap();
        let s = x86.scenario(&vms, None, 3).unwrap();
        assert_eq!(s.name, "bench-x86_64-svm-run3");
        assert_eq!(s.emulator, Emulator::Qemu);
        assert_eq!(s.cpu_model, None);
        assert_eq!(s.extra_args, ["-cpu", "EPYC", "-icount", "shift=0"]);
        let vmx = VmBench {
            platform: Platform::X86_VMX,
            ..x86
        };
        let s = vmx.scenario(&vms, None, 1).unwrap();
        assert_eq!(s.name, "bench-x86_64-vmx-run1");
        assert_eq!(s.emulator, Emulator::Bochs);
        assert_eq!(s.cpu_model.as_deref(), Some(bochs::DEFAULT_CPU_MODEL));
        assert!(s.extra_args.is_empty());
    }

    #[test]
    fn logs_are_put_in_run_order() {
        let logs = ["x-run10", "x-run2", "x-run1"]
            .map(|n| (PathBuf::from(format!("{n}.log")), n.to_owned()))
            .to_vec();
        let Boots::Logs(sorted) = logs_in_order(logs) else {
            unreachable!()
        };
        let names: Vec<&str> = sorted.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["x-run1", "x-run2", "x-run10"]);
    }

    #[test]
    fn parts_that_must_run() {
        for part in Part::ALL {
            assert!(must_run(Arch::Aarch64, part, false));
            assert!(!must_run(Arch::Riscv64, part, false));
        }
        assert!(must_run(Arch::Riscv64, Part::Exits, true));
        assert!(!must_run(Arch::Riscv64, Part::Linux, true));
    }

    #[test]
    fn report() {
        let sections = [
            Section {
                part: Part::Exits,
                body: "table\n".to_owned(),
            },
            Section {
                part: Part::Linux,
                body: "Not yet supported on riscv64: no config.\n".to_owned(),
            },
        ];
        let r = render_report(Arch::Riscv64, &sections, "abc1234", "QEMU 7.2", "2 CPUs");
        assert_eq!(
            r,
            "# axvisor bench, riscv64\n\n- revision: abc1234\n- emulator: QEMU 7.2\n- host: 2 CPUs\n\
             \n## Exit costs (instructions, -icount)\n\ntable\n\
             \n## Linux boot to marker (wall clock)\n\nNot yet supported on riscv64: no config.\n"
        );
    }
}
