//! `cargo xtask soak`: the endurance run (not part of CI). The chaos guest does a long run of
//! random operations (a million by default) on CPU 0 while the hog guest computes on CPU 1
//! and prints a heartbeat every second with the longest time it was kept from running. The
//! run passes when the chaos guest passes, the hypervisor logged no ERROR and no warning
//! about the sibling, and the sibling's heartbeats came without a gap or a lost line.
//! docs/reliability.md keeps the figures.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::arch::{Arch, Gic, MemSize};
use crate::bench::console::{self, Watch};
use crate::qemu::{self, Console, Machine};
use crate::vmset::VmSet;
use crate::{image, setup, util};

/// Arguments of `cargo xtask soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Only this architecture (default: every supported one).
    #[arg(long, value_enum)]
    arch: Option<Arch>,
    /// Random operations of the chaos guest.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    ops: u64,
    /// The chaos guest's seed (default: its built-in one).
    #[arg(long)]
    seed: Option<String>,
    /// GIC version on aarch64.
    #[arg(long, default_value = "3")]
    gic: Gic,
    /// How long the sibling computes, in seconds (default: half a millisecond per operation
    /// plus a minute, far longer than the chaos run; the run stops when the chaos guest is
    /// done).
    #[arg(long)]
    sibling_secs: Option<u64>,
    /// Time limit of each run, in seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
}

/// The longest the sibling may be kept from running (its own scenario allows 500 ms).
const MAX_SIBLING_STALL_MS: u64 = 500;

/// What one run's console says.
#[derive(Debug, Default, PartialEq)]
struct Findings {
    /// The chaos guest's summary lines (operations, faults).
    chaos_summary: Vec<String>,
    /// Heartbeat numbers, in order.
    heartbeats: Vec<u64>,
    /// The longest stall the sibling reported.
    longest_stall_ms: u64,
    /// The hypervisor's WARN lines about the chaos VM.
    chaos_warnings: usize,
    /// Of those, the summaries of unclaimed accesses.
    unclaimed_summaries: usize,
    /// Any other WARN or ERROR line of the hypervisor (there should be none).
    other_problems: Vec<String>,
}

impl Findings {
    /// Reads a run's console.
    fn parse(console: &str) -> Self {
        let mut f = Findings::default();
        for line in console.lines() {
            let (vm, text) = crate::matcher::split_vm(line);
            match vm {
                Some("chaos") => {
                    if let Some(rest) = text.strip_prefix("chaos: ") {
                        if rest.contains(" operations in ")
                            || rest.starts_with("faults:")
                            || rest.contains(" accesses")
                        {
                            f.chaos_summary.push(rest.to_owned());
                        }
                    }
                }
                Some("hog") => {
                    if let Some((n, stall)) = parse_heartbeat(text) {
                        f.heartbeats.push(n);
                        f.longest_stall_ms = f.longest_stall_ms.max(stall);
                    }
                }
                _ => {
                    if line.contains(" WARN ") && line.contains("vm chaos:") {
                        f.chaos_warnings += 1;
                        if line.contains("unclaimed accesses so far") {
                            f.unclaimed_summaries += 1;
                        }
                    } else if line.contains(" WARN ") || line.contains(" ERROR ") {
                        f.other_problems.push(line.to_owned());
                    }
                }
            }
        }
        f
    }

    /// What is wrong with the run, if anything.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.heartbeats.is_empty() {
            p.push("the sibling printed no heartbeat".to_owned());
        }
        if let Some(i) = (1..=self.heartbeats.len() as u64)
            .zip(&self.heartbeats)
            .position(|(want, got)| want != *got)
        {
            p.push(format!(
                "sibling heartbeat {} missing or out of order (got {})",
                i + 1,
                self.heartbeats[i]
            ));
        }
        if self.longest_stall_ms > MAX_SIBLING_STALL_MS {
            p.push(format!(
                "the sibling was kept from running for {} ms (at most {MAX_SIBLING_STALL_MS})",
                self.longest_stall_ms
            ));
        }
        p.extend(
            self.other_problems
                .iter()
                .map(|l| format!("hypervisor line not about the chaos VM: {l}")),
        );
        p
    }
}

/// `hog: heartbeat N, longest stall so far S ms` → (N, S).
fn parse_heartbeat(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix("hog: heartbeat ")?;
    let (n, rest) = rest.split_once(", longest stall so far ")?;
    let stall = rest.strip_suffix(" ms")?;
    Some((n.parse().ok()?, stall.parse().ok()?))
}

/// The VM configs of a soak run on `arch`.
fn vm_set(arch: Arch) -> Result<VmSet> {
    let files = [
        format!("configs/vms/{arch}-chaos.toml"),
        format!("configs/vms/{arch}-hog.toml"),
    ];
    VmSet::from_root_relative(util::repo_root(), &files)
}

/// Where a run's console goes.
fn log_path(arch: Arch) -> PathBuf {
    util::target_dir().join("soak").join(format!("{arch}.log"))
}

/// One architecture's run; returns its report.
fn soak_one(arch: Arch, args: &SoakArgs) -> Result<String> {
    let sibling_ms = args
        .sibling_secs
        .map_or(args.ops / 2 + 60_000, |s| s.saturating_mul(1000));
    // The guests read these at build time (`option_env!`); cargo rebuilds them when they
    // change, and the next `cargo xtask test` rebuilds them without.
    std::env::set_var("CHAOS_OPS", args.ops.to_string());
    std::env::set_var("HOG_MS", sibling_ms.to_string());
    match &args.seed {
        Some(seed) => std::env::set_var("CHAOS_SEED", seed),
        None => std::env::remove_var("CHAOS_SEED"),
    }
    let vms = vm_set(arch)?;
    let built = image::build(arch, &vms)?;
    let gic = (arch == Arch::Aarch64).then_some(args.gic);
    let machine = Machine::new(arch, 2, gic, MemSize::default())?;
    let cmd = qemu::emulator_command(&machine, &built.boot, Console::Captured, &[]);
    let log = log_path(arch);
    println!(
        "soak {arch}: {} chaos operations beside the sibling (up to {} s); console in {}",
        args.ops,
        sibling_ms / 1000,
        log.display()
    );
    let watch = Watch {
        done: "[chaos] PASS chaos",
        fail_on: &[
            "panicked",
            "FAIL ",
            "vm chaos: stopped",
            "vm hog: stopped",
            "[hog] PASS hog",
        ],
        then_exit: false,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    let done = console::run(&cmd, &log, &watch).with_context(|| {
        format!(
            "the {arch} soak failed (\"[hog] PASS hog\" before the chaos guest's pass means \
             the sibling ran out: give --sibling-secs)"
        )
    })?;
    let f = Findings::parse(&done.console);
    let mut r = String::new();
    let _ = writeln!(r, "## {arch} ({})", qemu_label(&machine));
    let _ = writeln!(
        r,
        "- chaos: {} operations, passed after {}",
        args.ops,
        util::secs(done.done_after)
    );
    for line in &f.chaos_summary {
        let _ = writeln!(r, "  - {line}");
    }
    let _ = writeln!(
        r,
        "- hypervisor warnings: {} about the chaos VM ({} of them summaries of unclaimed \
         accesses), {} about anything else",
        f.chaos_warnings,
        f.unclaimed_summaries,
        f.other_problems.len()
    );
    let _ = writeln!(
        r,
        "- sibling: {} heartbeats, none missing; longest stall {} ms",
        f.heartbeats.len(),
        f.longest_stall_ms
    );
    let problems = f.problems();
    if !problems.is_empty() {
        bail!(
            "{r}the {arch} soak failed:\n  {}\n(console: {})",
            problems.join("\n  "),
            log.display()
        );
    }
    Ok(r)
}

fn qemu_label(machine: &Machine) -> String {
    match machine.gic {
        Some(g) => format!("QEMU, 2 CPUs, GICv{}", g.number()),
        None => "QEMU, 2 CPUs".to_owned(),
    }
}

/// `cargo xtask soak`.
pub fn run(args: SoakArgs) -> Result<ExitCode> {
    let arches = match args.arch {
        Some(a) => {
            a.ensure_supported()?;
            vec![a]
        }
        None => Arch::SUPPORTED.to_vec(),
    };
    setup::ensure()?;
    let mut reports = Vec::new();
    for arch in arches {
        reports.push(soak_one(arch, &args)?);
    }
    println!("\n{}", reports.join("\n"));
    println!("soak passed");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
vm chaos: created
[   0.5 cpu0] WARN  vm chaos: unclaimed 4-byte read at 0x10: fault injected
[   0.6 cpu0] WARN  vm chaos: 1024 unclaimed accesses so far: 1024 in [0x0, +1 MiB) (last at 0x8)
[hog] hog: heartbeat 1, longest stall so far 12 ms
[chaos] chaos: 500000 of 1000000 operations
[hog] hog: heartbeat 2, longest stall so far 40 ms
[chaos] chaos: 1000000 operations in 61000 ms: 1 interrupt-controller reads
[chaos] chaos: faults: 10 data faults (9 injected by the hypervisor, 1 raised by the CPU)
[chaos] PASS chaos
";

    #[test]
    fn heartbeats_and_summaries() {
        assert_eq!(
            parse_heartbeat("hog: heartbeat 7, longest stall so far 31 ms"),
            Some((7, 31))
        );
        assert_eq!(
            parse_heartbeat("hog: heartbeat x, longest stall so far 1 ms"),
            None
        );
        let f = Findings::parse(CONSOLE);
        assert_eq!(f.heartbeats, [1, 2]);
        assert_eq!(f.longest_stall_ms, 40);
        assert_eq!(f.chaos_warnings, 2);
        assert_eq!(f.unclaimed_summaries, 1);
        assert_eq!(f.chaos_summary.len(), 2, "{:?}", f.chaos_summary);
        assert!(f.problems().is_empty(), "{:?}", f.problems());
    }

    #[test]
    fn problems_are_named() {
        let bad = CONSOLE.replace(
            "heartbeat 2, longest stall so far 40",
            "heartbeat 3, longest stall so far 900",
        ) + "[   9.0 cpu1] WARN  vm hog: something\n";
        let p = Findings::parse(&bad).problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("heartbeat 2 missing"));
        assert!(p[1].contains("900 ms"));
        assert!(p[2].contains("vm hog: something"));
    }

    #[test]
    fn every_architecture_has_the_configs() {
        for arch in Arch::SUPPORTED {
            vm_set(arch).unwrap();
        }
    }
}
