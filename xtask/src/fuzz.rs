//! `cargo xtask fuzz [TARGET] [--seconds N]`: coverage-guided fuzzing with libFuzzer on the
//! pinned stable toolchain.
//!
//! The targets are modules of the `fuzz/` workspace's one binary, which picks the target
//! its file name names; each target's name is a link to it. It is built with LLVM's
//! SanitizerCoverage passes switched on through stable `-C` flags (cargo-fuzz needs nightly
//! only for its `-Z` sanitizer flags), into `fuzz/target` so the instrumented build never
//! invalidates the shared `target/`. Each run reads the seed corpus `fuzz/corpus/<target>`
//! (never written) and keeps what it finds in `fuzz/target/corpus/<target>`; a crashing
//! input lands in `fuzz/target/artifacts/<target>/`. See `docs/reliability.md#fuzzing`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::util;

/// Seconds per target when `--seconds` is not given.
pub const DEFAULT_SECONDS: u64 = 20;

/// Seconds per target in `cargo xtask test`, where the step runs beside the others on one
/// core (27 targets: 108 s of it plus the instrumented build). Longer runs:
/// `cargo xtask fuzz --seconds N`.
pub const CI_SECONDS: u64 = 4;

/// The rustc flags of the instrumented build: SanitizerCoverage's module pass with
/// libFuzzer's feedback (inline 8-bit edge counters, the PC table for `cov:` and
/// `-print_coverage`, comparison tracing for the value profile / dictionary), plus
/// `--cfg fuzzing` as cargo-fuzz sets it. All stable on 1.95.
pub const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
];

/// One fuzz target: a module of the `fuzz/` workspace's binary ([`BINARY`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Binary name, also the name of its corpus directories.
    pub name: &'static str,
    /// Largest input libFuzzer generates (`-max_len`).
    pub max_len: usize,
    /// What it exercises.
    pub about: &'static str,
    /// More seed directories in the repository, read like `fuzz/corpus/<name>` (the VM
    /// configs are seeds of the config parser without a copy that would drift).
    pub more_seeds: &'static [&'static str],
}

/// The `fuzz/` workspace's binary: every target, picked by the name it is run under.
pub const BINARY: &str = "axvisor-fuzz";

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "vmconfig",
        max_len: 8192,
        about: "VM config TOML parser and validation (axvmconfig)",
        more_seeds: &["configs/vms"],
    },
    Target {
        name: "dtb",
        max_len: 16384,
        about: "host device-tree parser (axconfig::dtb)",
        more_seeds: &[],
    },
    Target {
        name: "multiboot",
        max_len: 4096,
        about: "x86 multiboot information and DSDT S5 parsers (axconfig)",
        more_seeds: &[],
    },
    Target {
        name: "pl011",
        max_len: 4096,
        about: "PL011 UART registers and input (axdevice)",
        more_seeds: &[],
    },
    Target {
        name: "ns16550",
        max_len: 4096,
        about: "16550 UART registers and input (axdevice)",
        more_seeds: &[],
    },
    Target {
        name: "vgic_dist",
        max_len: 4096,
        about: "vGIC distributor, GICv2 and GICv3 (arm_vgic)",
        more_seeds: &[],
    },
    Target {
        name: "vgic_redist",
        max_len: 4096,
        about: "vGIC GICv3 redistributors and ICC_SGI1R_EL1 (arm_vgic)",
        more_seeds: &[],
    },
    Target {
        name: "vgic_cpuif",
        max_len: 4096,
        about: "vGIC list registers (flush/sync) and ICC_SGI1R_EL1 (arm_vgic)",
        more_seeds: &[],
    },
    Target {
        name: "vplic",
        max_len: 4096,
        about: "virtual PLIC registers, lines, resampling, reset (riscv_vplic)",
        more_seeds: &[],
    },
    Target {
        name: "arm_decode",
        max_len: 512,
        about: "aarch64 exit decoder: ESR/ISS, data aborts, sysregs, PSCI (arm_vcpu)",
        more_seeds: &[],
    },
    Target {
        name: "riscv_decode",
        max_len: 512,
        about: "riscv64 trap decoder, load/store decoding, SBI dispatch (riscv_vcpu)",
        more_seeds: &[],
    },
    Target {
        name: "x86_decode",
        max_len: 128,
        about: "x86 MMIO instruction decoder: mov/movzx/movsx/movsxd/moffs (x86_vcpu)",
        more_seeds: &[],
    },
    Target {
        name: "x86_exit",
        max_len: 128,
        about: "x86 exit qualifications (I/O, CR, EPT) and string I/O steps (x86_vcpu)",
        more_seeds: &[],
    },
    Target {
        name: "x86_gpt",
        max_len: 2048,
        about: "x86 guest page-table walk: translate, read, write, fetch (x86_vcpu)",
        more_seeds: &[],
    },
    Target {
        name: "x86_controls",
        max_len: 512,
        about: "VMX controls from capability MSRs, VM-entry checks (x86_vcpu)",
        more_seeds: &[],
    },
    Target {
        name: "x86_cpuid_msr",
        max_len: 1024,
        about: "x86 CPUID filtering, MSR bitmap and emulated MSRs (x86_vcpu)",
        more_seeds: &[],
    },
    Target {
        name: "port_io",
        max_len: 4096,
        about: "DeviceSet port-I/O space with 16550s, unclaimed-port policy (axdevice)",
        more_seeds: &[],
    },
    Target {
        name: "x86_vapic",
        max_len: 4096,
        about: "x86 local APICs, I/O APIC, PIC, PIT and RTC with IPI and EOI routing (x86_vapic)",
        more_seeds: &[],
    },
    Target {
        name: "bzimage",
        max_len: 8192,
        about: "x86 Linux boot protocol: bzImage header, zero page, boot plan (axbootx86)",
        more_seeds: &[],
    },
    Target {
        name: "axfs",
        max_len: 4096,
        about: "FAT32 volumes with damaged MBR, boot sector, FATs and directories, mounted, walked and written (axfs)",
        more_seeds: &[],
    },
    Target {
        name: "axfs_ext4",
        max_len: 4096,
        about: "ext4 volumes (mkfs.ext4 -d) with damaged superblock, descriptors, inodes, directories and extents, probed, mounted, walked and read; every write refused (axfs, ext4-view)",
        more_seeds: &[],
    },
    Target {
        name: "shell",
        max_len: 4096,
        about: "hypervisor shell: line editor, history, command parser, Shell (axshell)",
        more_seeds: &[],
    },
    Target {
        name: "virtio_mmio",
        max_len: 4096,
        about: "virtio-mmio transport and virtio-console with hostile rings and descriptors (axvirtio)",
        more_seeds: &[],
    },
    Target {
        name: "virtio_blk",
        max_len: 4096,
        about: "virtio-blk requests (any type, sector, length, buffer) against a region of a backing (axvirtio_blk)",
        more_seeds: &[],
    },
    Target {
        name: "virtio_net",
        max_len: 4096,
        about: "virtio-net devices of three guests on two switches: hostile frames, chains and registers, resets, ports freed and claimed (axvirtio_net)",
        more_seeds: &[],
    },
    Target {
        name: "vswitch",
        max_len: 4096,
        about: "virtual switch: sends of any length and addresses from any port, receives, detach/attach, small bounds (axvswitch)",
        more_seeds: &[],
    },
    Target {
        name: "doorbell",
        max_len: 4096,
        about: "both ends of a link's doorbell: register accesses from either guest, detach/attach (axvdoorbell)",
        more_seeds: &[],
    },
];

/// Arguments of `cargo xtask fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// The target to run; every target, one after the other, when absent.
    #[arg(value_name = "TARGET")]
    target: Option<String>,
    /// How long to fuzz each target, in seconds (at least 2).
    #[arg(long, default_value_t = DEFAULT_SECONDS, value_name = "N",
          value_parser = clap::value_parser!(u64).range(2..))]
    seconds: u64,
    /// List the targets and exit.
    #[arg(long)]
    list: bool,
}

/// `cargo xtask fuzz`.
pub fn run(args: FuzzArgs) -> Result<ExitCode> {
    if args.list {
        for t in TARGETS {
            println!("{:<13} {}", t.name, t.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let targets = select(args.target.as_deref())?;
    build()?;
    let mut summaries = Vec::new();
    for target in targets {
        summaries.push(run_target(target, args.seconds)?);
    }
    for s in &summaries {
        println!("fuzz: {s}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The targets `name` picks: that one, or all of them.
fn select(name: Option<&str>) -> Result<Vec<&'static Target>> {
    match name {
        None => Ok(TARGETS.iter().collect()),
        Some(n) => match TARGETS.iter().find(|t| t.name == n) {
            Some(t) => Ok(vec![t]),
            None => bail!(
                "no fuzz target {n:?}; the targets are: {}",
                TARGETS
                    .iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

/// The `fuzz/` workspace.
pub fn workspace_dir() -> PathBuf {
    util::repo_root().join("fuzz")
}

/// Its own target directory (RUSTFLAGS differ from the main workspace's).
fn target_dir() -> PathBuf {
    workspace_dir().join("target")
}

/// The host triple (`host:` of `rustc -vV`). The build names it with `--target` so that
/// RUSTFLAGS reach only the target crates, not build scripts and proc macros.
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .current_dir(util::repo_root())
        .output()
        .context("could not run `rustc -vV`")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` printed no host line")
}

/// Path of a target's link to [`BINARY`] (or of [`BINARY`] itself).
fn binary(triple: &str, name: &str) -> PathBuf {
    target_dir().join(triple).join("release").join(name)
}

/// Builds the binary of every target with coverage instrumentation and links each
/// target's name to it.
fn build() -> Result<()> {
    let triple = host_triple()?;
    let mut cmd = util::cargo();
    cmd.args(["build", "--release", "--bin", BINARY, "--manifest-path"])
        .arg(workspace_dir().join("Cargo.toml"))
        .args(["--target", &triple])
        .env("CARGO_TARGET_DIR", target_dir())
        .env("RUSTFLAGS", RUSTFLAGS.join(" "))
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    println!("RUSTFLAGS=\"{}\"", RUSTFLAGS.join(" "));
    util::run(cmd)?;
    for t in TARGETS {
        let link = binary(&triple, t.name);
        // A binary of the target from a build before the targets were one binary, or the
        // link of the last build.
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
        }
        std::os::unix::fs::symlink(BINARY, &link)
            .with_context(|| format!("linking {} to {BINARY}", link.display()))?;
    }
    Ok(())
}

/// What a finished run reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Inline 8-bit counters libFuzzer found (0: the build is not instrumented).
    pub counters: Option<u64>,
    /// Inputs executed.
    pub runs: Option<u64>,
    /// Covered edges (`cov:`).
    pub cov: Option<u64>,
    /// Features (`ft:`).
    pub features: Option<u64>,
    /// Corpus entries at the end.
    pub corpus: Option<u64>,
}

impl Stats {
    /// Takes in what one line of libFuzzer's output tells.
    pub fn read_line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("INFO: Loaded 1 modules") {
            // "INFO: Loaded 1 modules   (514 inline 8-bit counters): 514 [...]"
            self.counters = rest
                .trim_start()
                .strip_prefix('(')
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok());
        } else if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            self.runs = n.trim().parse().ok();
        } else if line.starts_with('#') && line.contains("DONE") {
            // "#879550	DONE   cov: 1890 ft: 9159 corp: 3218/155Kb lim: 389 ..."
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                let value = || words.clone().next();
                match w {
                    "cov:" => self.cov = value().and_then(|v| v.parse().ok()),
                    "ft:" => self.features = value().and_then(|v| v.parse().ok()),
                    "corp:" => {
                        self.corpus = value()
                            .and_then(|v| v.split('/').next())
                            .and_then(|v| v.parse().ok())
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Whether a libFuzzer line is progress noise (a new input, a reduced one, a pulse, a
/// recommended dictionary entry) that the terminal does not need.
fn is_progress(line: &str) -> bool {
    if line.starts_with('"') && line.contains("# Uses:") {
        return true;
    }
    line.starts_with('#')
        && ["NEW", "REDUCE", "pulse", "RELOAD"]
            .iter()
            .any(|w| line.split_whitespace().nth(1) == Some(w))
}

/// libFuzzer's `-max_total_time` for a run of `seconds` (at least 2). libFuzzer stops once
/// the whole seconds since its start *exceed* the flag, so `-max_total_time=N` runs N + 1
/// seconds; and 0 would mean no limit.
fn max_total_time(seconds: u64) -> u64 {
    seconds.saturating_sub(1).max(1)
}

/// Runs one target for `seconds`; an error names the target and the crashing input.
fn run_target(target: &Target, seconds: u64) -> Result<String> {
    let triple = host_triple()?;
    let bin = binary(&triple, target.name);
    let seeds = workspace_dir().join("corpus").join(target.name);
    let work = target_dir().join("corpus").join(target.name);
    let artifacts = target_dir().join("artifacts").join(target.name);
    for dir in [&work, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let before = list_dir(&artifacts)?;

    println!("\n==> fuzz {} ({seconds} s): {}", target.name, target.about);
    let mut cmd = Command::new(&bin);
    cmd.arg(format!("-max_total_time={}", max_total_time(seconds)))
        .arg(format!("-max_len={}", target.max_len))
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&work);
    let more = target.more_seeds.iter().map(|d| util::repo_root().join(d));
    for dir in [seeds].into_iter().chain(more).filter(|d| d.is_dir()) {
        cmd.arg(dir);
    }
    println!("$ {}", util::display_command(&cmd));
    cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {}", bin.display()))?;
    let mut stats = Stats::default();
    // The last lines, to show what led to a failure.
    let mut tail = VecDeque::new();
    let stderr = child.stderr.take().context("libFuzzer's stderr")?;
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading libFuzzer's output")?;
        stats.read_line(&line);
        if !is_progress(&line) {
            println!("  {line}");
        }
        if tail.len() == 20 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let status = child.wait().context("waiting for libFuzzer")?;
    let took = util::secs(start.elapsed());

    if !status.success() {
        let new: Vec<PathBuf> = list_dir(&artifacts)?
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        match new.first() {
            Some(input) => bail!(
                "fuzz target {} failed ({status}) after {took} on input {}\n\
                 reproduce: {} {}",
                target.name,
                input.display(),
                bin.display(),
                input.display()
            ),
            None => bail!(
                "fuzz target {} failed ({status}) after {took}, leaving no input in {}",
                target.name,
                artifacts.display()
            ),
        }
    }
    match stats.counters {
        Some(n) if n > 0 => {}
        _ => bail!(
            "fuzz target {}: libFuzzer found no coverage counters (the build is not \
             instrumented)",
            target.name
        ),
    }
    let show = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
    Ok(format!(
        "{}: {took}, {} runs, cov {}, ft {}, corpus {} ({}), no crash",
        target.name,
        show(stats.runs),
        show(stats.cov),
        show(stats.features),
        show(stats.corpus),
        work.display()
    ))
}

/// The files in `dir`.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        out.push(entry?.path());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target list, the fuzz binary's `TARGETS` and the files in `fuzz_targets/`
    /// agree, the binary is the workspace's only one, and every target has a seed corpus.
    #[test]
    fn targets_match_the_fuzz_workspace() {
        let manifest = std::fs::read_to_string(workspace_dir().join("Cargo.toml")).unwrap();
        let manifest: toml::Table = toml::from_str(&manifest).unwrap();
        let bins: Vec<&str> = manifest["bin"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect();
        assert_eq!(bins, [BINARY]);
        let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        let dir = workspace_dir().join("fuzz_targets");
        let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
        let list = main
            .split_once("= targets![")
            .and_then(|(_, rest)| rest.split_once(']'))
            .expect("main.rs lists the targets in `targets![..]`")
            .0;
        let listed: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        assert_eq!(listed, names);
        let mut files: Vec<String> = list_dir(&dir)
            .unwrap()
            .iter()
            .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
            .filter(|n| n != "main")
            .collect();
        files.sort();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(files, sorted);
        for t in TARGETS {
            let more = t.more_seeds.iter().map(|d| util::repo_root().join(d));
            for seeds in [workspace_dir().join("corpus").join(t.name)]
                .into_iter()
                .chain(more)
            {
                assert!(
                    list_dir(&seeds).is_ok_and(|f| !f.is_empty()),
                    "no seeds in {}",
                    seeds.display()
                );
            }
        }
    }

    #[test]
    fn runs_last_the_seconds_asked() {
        assert_eq!(max_total_time(4), 3);
        assert_eq!(max_total_time(2), 1);
        assert_eq!(max_total_time(600), 599);
    }

    #[test]
    fn select_one_or_all() {
        assert_eq!(select(None).unwrap().len(), TARGETS.len());
        assert_eq!(select(Some("vplic")).unwrap()[0].name, "vplic");
        let err = select(Some("nope")).unwrap_err().to_string();
        assert!(err.contains("vmconfig, dtb"), "{err}");
    }

    #[test]
    fn stats_from_libfuzzer_output() {
        let mut s = Stats::default();
        for line in [
            "INFO: Loaded 1 modules   (514 inline 8-bit counters): 514 [0x56, 0x57), ",
            "#2\tINITED cov: 3 ft: 3 corp: 1/1b exec/s: 0 rss: 27Mb",
            "#977574\tREDUCE cov: 159 ft: 967 corp: 473/152Kb lim: 2336 exec/s: 195514",
            "#980297\tDONE   cov: 159 ft: 967 corp: 473/152Kb lim: 2336 exec/s: 163382 rss: 28Mb",
            "stat::number_of_executed_units: 980297",
        ] {
            s.read_line(line);
        }
        assert_eq!(
            s,
            Stats {
                counters: Some(514),
                runs: Some(980297),
                cov: Some(159),
                features: Some(967),
                corpus: Some(473),
            }
        );
    }

    #[test]
    fn progress_lines_are_quiet() {
        assert!(is_progress("#977574\tREDUCE cov: 159 ft: 967"));
        assert!(is_progress("#1024\tpulse  cov: 159"));
        assert!(is_progress("#5\tNEW    cov: 3"));
        assert!(is_progress("\"linux,code\" # Uses: 140"));
        assert!(!is_progress("#980297\tDONE   cov: 159"));
        assert!(!is_progress("#2\tINITED cov: 3"));
        assert!(!is_progress("==12021== ERROR: libFuzzer: deadly signal"));
    }

    #[test]
    fn flags_are_stable_codegen_flags() {
        // No -Z flag: the pinned stable toolchain rejects them.
        assert!(RUSTFLAGS.iter().all(|f| !f.starts_with("-Z")));
    }
}
