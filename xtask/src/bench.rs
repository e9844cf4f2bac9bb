//! `cargo xtask bench`: boots the bench guest (`guests/bench`) in a VM under QEMU with
//! `-icount shift=0`, where guest-visible time counts executed instructions (1 ns each), and
//! reports how many instructions a hypercall and an emulated MMIO read take, next to the
//! guest's own exception round trip (the baseline). See `docs/performance.md`.
//!
//! The image comes from [`image::build`] with the bench VM config, and each run is a
//! [`Scenario`] given to the scenario runner ([`scenario::run_all`]), which boots QEMU,
//! records the console in `target/scenarios/<name>.log` and decides pass or fail; this
//! module then reads the `BENCH` lines from that log.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;

use crate::arch::{Arch, MemSize};
use crate::qemu::Machine;
use crate::scenario::{self, Scenario, Status, DEFAULT_FAIL_ON};
use crate::vmset::VmSet;
use crate::{image, setup, util};

/// The operations the bench guest measures, in the order they are reported.
pub const OPERATIONS: [&str; 3] = ["hypercall", "mmio-read", "guest-exception"];
/// The operation every other one is compared with: an exception that stays in the guest.
pub const BASELINE: &str = "guest-exception";
/// What the guest prints before each measurement.
pub const MARKER: &str = "BENCH ";
/// What the hypervisor prints when it cannot run VMs on an architecture yet.
pub const NOT_SUPPORTED: &str = "VMs are not supported";
/// The emulator arguments that make guest-visible time count instructions (1 ns each).
pub const ICOUNT_ARGS: [&str; 2] = ["-icount", "shift=0"];
/// The name of the bench VM in its configs (console lines come prefixed with it).
pub const VM_NAME: &str = "bench";
/// Time limit of one run.
pub const TIMEOUT: Duration = Duration::from_secs(300);
/// Where the result tables go: `target/bench/<arch>.md`.
pub fn result_dir() -> PathBuf {
    util::target_dir().join("bench")
}

/// The VM config of the bench guest for `arch`, relative to the repository root.
pub fn vm_config(arch: Arch) -> String {
    format!("configs/vms/{arch}-bench.toml")
}

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Only this architecture (default: aarch64, and riscv64 when it can run VMs).
    #[arg(long, value_enum)]
    arch: Option<Arch>,
    /// How many times to boot the guest; the median of the runs is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=15))]
    runs: u32,
}

/// One `BENCH <name> <ns_per_op> ns/op (<iterations> iters)` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The operation, e.g. `hypercall`.
    pub name: String,
    /// Nanoseconds per operation: under `-icount shift=0`, instructions per operation.
    pub ns_per_op: f64,
    /// How many operations were timed.
    pub iterations: u64,
}

/// Parses the part of a console line from [`MARKER`] on (the line may carry a prefix such
/// as `[bench] `). `None` if the line has no marker.
pub fn parse_line(line: &str) -> Option<Result<Sample>> {
    let at = line.find(MARKER)?;
    let rest = &line[at + MARKER.len()..];
    Some(parse_fields(rest).with_context(|| format!("malformed benchmark line {line:?}")))
}

fn parse_fields(rest: &str) -> Result<Sample> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let [name, value, "ns/op", iters, "iters)"] = words[..] else {
        bail!("expected `{MARKER}<name> <ns_per_op> ns/op (<iterations> iters)`");
    };
    let ns_per_op: f64 = value
        .parse()
        .with_context(|| format!("{value:?} is not a number of nanoseconds"))?;
    ensure!(
        ns_per_op.is_finite() && ns_per_op >= 0.0,
        "{value:?} is not a non-negative number of nanoseconds"
    );
    let iterations: u64 = iters
        .strip_prefix('(')
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{iters:?} is not `(<iterations>`"))?;
    ensure!(iterations > 0, "0 iterations");
    Ok(Sample {
        name: name.to_owned(),
        ns_per_op,
        iterations,
    })
}

/// The samples of one run, in the order printed.
pub type Run = Vec<Sample>;

/// Reads the samples of one run from its console log. Every operation in [`OPERATIONS`]
/// must appear exactly once; other names are kept (and reported) too.
pub fn parse_run(log: &str) -> Result<Run> {
    let mut run: Run = Vec::new();
    for line in log.lines() {
        let Some(sample) = parse_line(line) else {
            continue;
        };
        let sample = sample?;
        ensure!(
            !run.iter().any(|s| s.name == sample.name),
            "{:?} was reported twice",
            sample.name
        );
        run.push(sample);
    }
    let missing: Vec<&str> = OPERATIONS
        .iter()
        .copied()
        .filter(|op| !run.iter().any(|s| s.name == *op))
        .collect();
    ensure!(
        missing.is_empty(),
        "no {MARKER}line for {} (lines seen: {})",
        missing.join(", "),
        if run.is_empty() {
            "none".to_owned()
        } else {
            run.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    Ok(run)
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

/// `value` relative to `baseline`; an error when the baseline is not positive.
pub fn ratio(value: f64, baseline: f64) -> Result<f64> {
    ensure!(
        baseline > 0.0,
        "the baseline ({BASELINE}) measured {baseline} ns/op; a ratio needs more than 0"
    );
    Ok(value / baseline)
}

/// One row of the result table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The operation.
    pub name: String,
    /// Median over the runs of instructions (ns) per operation.
    pub instructions: f64,
    /// Median over the runs of the ratio to the baseline of the same run.
    pub ratio: f64,
    /// Smallest and largest instructions per operation seen over the runs.
    pub min: f64,
    pub max: f64,
}

/// The result of all runs of one architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// How many runs the medians are over.
    pub runs: usize,
    /// The iterations each operation was timed over (the same in every run).
    pub iterations: u64,
    /// One row per operation, in the order of the first run.
    pub rows: Vec<Row>,
}

/// Combines runs: per operation, the median of its instructions per operation and the
/// median of its per-run ratios to the baseline. Every run must report the same operations
/// over the same iteration count.
pub fn summarize(runs: &[Run]) -> Result<Summary> {
    let first = runs.first().context("no runs to summarize")?;
    let iterations = first[0].iterations;
    for (i, run) in runs.iter().enumerate() {
        let names = |r: &Run| r.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        ensure!(
            names(run) == names(first),
            "run {} reported {:?}, run 1 {:?}",
            i + 1,
            names(run),
            names(first)
        );
        if let Some(s) = run.iter().find(|s| s.iterations != iterations) {
            bail!(
                "run {}: {} was timed over {} iterations, not {iterations} like the others",
                i + 1,
                s.name,
                s.iterations
            );
        }
    }
    let value = |run: &Run, name: &str| {
        run.iter()
            .find(|s| s.name == name)
            .map(|s| s.ns_per_op)
            .with_context(|| format!("no {name} in a run"))
    };
    let mut rows = Vec::new();
    for sample in first {
        let mut values = Vec::new();
        let mut ratios = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let v = value(run, &sample.name)?;
            values.push(v);
            ratios.push(ratio(v, value(run, BASELINE)?).with_context(|| format!("run {}", i + 1))?);
        }
        rows.push(Row {
            name: sample.name.clone(),
            instructions: median(&values).unwrap_or_default(),
            ratio: median(&ratios).unwrap_or_default(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        });
    }
    Ok(Summary {
        runs: runs.len(),
        iterations,
        rows,
    })
}

/// The result table in Markdown.
pub fn render_table(summary: &Summary) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| operation | guest instructions / op | × {BASELINE} | min–max over {} run(s) |",
        summary.runs
    );
    let _ = writeln!(t, "|---|---:|---:|---:|");
    for row in &summary.rows {
        let _ = writeln!(
            t,
            "| {} | {:.1} | {:.1} | {:.1}–{:.1} |",
            row.name, row.instructions, row.ratio, row.min, row.max
        );
    }
    t
}

/// The file `target/bench/<arch>.md`: what was run, then the table.
pub fn render_report(arch: Arch, summary: &Summary, revision: &str, emulator: &str) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "# axvisor bench, {arch}\n");
    let _ = writeln!(
        r,
        "- revision: {revision}\n- emulator: {emulator}, `{}`, 1 CPU\n- \
         each operation timed {} times by the guest; median of {} run(s)\n",
        ICOUNT_ARGS.join(" "),
        summary.iterations,
        summary.runs
    );
    r.push_str(&render_table(summary));
    r
}

/// How one architecture's benchmark ended.
#[derive(Debug)]
enum ArchResult {
    /// Measured.
    Done(Summary),
    /// The hypervisor cannot run VMs on this architecture yet.
    NotAvailable(String),
}

/// Whether a failed run's console shows that the hypervisor cannot run VMs here yet.
pub fn says_not_supported(log: &str) -> bool {
    log.lines().any(|l| l.contains(NOT_SUPPORTED))
}

/// `cargo xtask bench`.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let (arches, explicit) = match args.arch {
        Some(arch) => {
            arch.ensure_supported()?;
            (vec![arch], true)
        }
        None => (Arch::SUPPORTED.to_vec(), false),
    };
    setup::ensure()?;
    let mut failed = Vec::new();
    let mut results = Vec::new();
    for arch in arches {
        println!("\n==> bench {arch}");
        match bench_arch(arch, args.runs) {
            Ok(ArchResult::Done(summary)) => {
                let path = write_report(arch, &summary)?;
                println!(
                    "\n{arch}:\n{}(written to {})",
                    render_table(&summary),
                    path.display()
                );
                results.push((arch, summary));
            }
            // Only aarch64 must run VMs; another architecture may not be there yet.
            Ok(ArchResult::NotAvailable(why)) if !explicit && arch != Arch::Aarch64 => {
                println!("{arch}: not available yet ({why})");
            }
            Ok(ArchResult::NotAvailable(why)) => {
                eprintln!("error: {arch}: {why}");
                failed.push(arch);
            }
            Err(err) => {
                eprintln!("error: bench {arch}: {err:#}");
                failed.push(arch);
            }
        }
    }
    if !results.is_empty() {
        println!("\n==> summary");
        for (arch, summary) in &results {
            println!("{arch}:\n{}", render_table(summary));
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        let names: Vec<String> = failed.iter().map(|a| a.to_string()).collect();
        eprintln!("bench failed for {}", names.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// Builds the image with the bench VM for `arch`, boots it `runs` times and combines the
/// results.
fn bench_arch(arch: Arch, runs: u32) -> Result<ArchResult> {
    let config = vm_config(arch);
    let vms = VmSet::from_root_relative(util::repo_root(), std::slice::from_ref(&config))?;
    let hv = image::build(arch, &vms)?;
    let machine = Machine::new(arch, 1, None, MemSize::default())?;
    let scenarios: Vec<Scenario> = (1..=runs)
        .map(|i| run_scenario(arch, i, &machine, &vms, &config))
        .collect();
    let images = BTreeMap::from([((arch, vms), hv.boot)]);
    let outcomes = scenario::run_all(&scenarios, &images)?;
    let mut samples = Vec::new();
    for outcome in &outcomes {
        let log_path = scenario::log_dir().join(format!("{}.log", outcome.name));
        let log = std::fs::read_to_string(&log_path)
            .with_context(|| format!("reading {}", log_path.display()))?;
        if outcome.status != Status::Passed {
            if says_not_supported(&log) {
                return Ok(ArchResult::NotAvailable(format!(
                    "the hypervisor says \"{NOT_SUPPORTED}\", see {}",
                    log_path.display()
                )));
            }
            bail!(
                "{} failed (report above; log {})",
                outcome.name,
                log_path.display()
            );
        }
        samples.push(parse_run(&log).with_context(|| format!("in {}", log_path.display()))?);
    }
    Ok(ArchResult::Done(summarize(&samples)?))
}

/// Run `index` of the bench as a scenario: one CPU, `-icount shift=0`, and the guest's
/// pass marker and power-off expected.
fn run_scenario(arch: Arch, index: u32, machine: &Machine, vms: &VmSet, config: &str) -> Scenario {
    let mut fail_on: Vec<String> = DEFAULT_FAIL_ON.iter().map(|s| (*s).to_owned()).collect();
    fail_on.push(NOT_SUPPORTED.to_owned());
    fail_on.push(format!("vm {VM_NAME}: stopped"));
    fail_on.push(format!("vm {VM_NAME}: cannot"));
    Scenario {
        name: format!("bench-{arch}-run{index}"),
        path: util::repo_root().join(config),
        machine: machine.clone(),
        extra_args: ICOUNT_ARGS.iter().map(|s| (*s).to_owned()).collect(),
        timeout: TIMEOUT,
        expect: vec![
            format!("vm {VM_NAME}: created"),
            format!("[{VM_NAME}] PASS bench"),
            format!("vm {VM_NAME}: powered off"),
        ],
        expect_unordered: Vec::new(),
        fail_on,
        expect_exit: false,
        vms: vms.clone(),
        pending: None,
    }
}

/// Writes `target/bench/<arch>.md`.
fn write_report(arch: Arch, summary: &Summary) -> Result<PathBuf> {
    let dir = result_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{arch}.md"));
    let emulator = first_line_of(Command::new(emulator_program(arch)).arg("--version"))
        .unwrap_or_else(|| emulator_program(arch).to_owned());
    let revision = first_line_of(
        Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(util::repo_root()),
    )
    .unwrap_or_else(|| "unknown".to_owned());
    std::fs::write(&path, render_report(arch, summary, &revision, &emulator))
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
    use super::*;

    fn sample(name: &str, ns: f64) -> Sample {
        Sample {
            name: name.to_owned(),
            ns_per_op: ns,
            iterations: 1000,
        }
    }

    fn run_of(h: f64, m: f64, e: f64) -> Run {
        vec![
            sample("hypercall", h),
            sample("mmio-read", m),
            sample("guest-exception", e),
        ]
    }

    #[test]
    fn lines_parse_with_and_without_the_vm_prefix() {
        let s = parse_line("[bench] BENCH hypercall 270.0 ns/op (1000 iters)")
            .unwrap()
            .unwrap();
        assert_eq!(s, sample("hypercall", 270.0));
        let s = parse_line("BENCH mmio-read 433 ns/op (20 iters)")
            .unwrap()
            .unwrap();
        assert_eq!(s.name, "mmio-read");
        assert_eq!(s.ns_per_op, 433.0);
        assert_eq!(s.iterations, 20);
        assert!(parse_line("[bench] PASS bench").is_none());
        assert!(parse_line("vm bench: created").is_none());
    }

    #[test]
    fn malformed_lines_are_errors_that_quote_the_line() {
        for bad in [
            "BENCH hypercall",
            "BENCH hypercall fast ns/op (1000 iters)",
            "BENCH hypercall 270.0 us/op (1000 iters)",
            "BENCH hypercall 270.0 ns/op (many iters)",
            "BENCH hypercall 270.0 ns/op (0 iters)",
            "BENCH hypercall -1 ns/op (1000 iters)",
            "BENCH hypercall NaN ns/op (1000 iters)",
            "BENCH hypercall 270.0 ns/op (1000 iters) extra",
        ] {
            let err = format!("{:#}", parse_line(bad).unwrap().unwrap_err());
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn a_run_needs_every_operation_once() {
        let log = "\
vm bench: created (id 1, 1 vcpu(s), 16384 KiB, vcpu 0 on cpu 0)
[bench] bench: aarch64 guest, counter at 62500000 Hz
[bench] BENCH hypercall 270.0 ns/op (1000 iters)
[bench] BENCH mmio-read 433.0 ns/op (1000 iters)
[bench] BENCH guest-exception 10.0 ns/op (1000 iters)
[bench] PASS bench
vm bench: powered off
";
        assert_eq!(parse_run(log).unwrap(), run_of(270.0, 433.0, 10.0));

        let without_mmio: String = log
            .lines()
            .filter(|l| !l.contains("mmio-read"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = format!("{:#}", parse_run(&without_mmio).unwrap_err());
        assert!(err.contains("no BENCH line for mmio-read"), "{err}");
        assert!(
            err.contains("lines seen: hypercall, guest-exception"),
            "{err}"
        );

        let err = format!("{:#}", parse_run("[bench] PASS bench\n").unwrap_err());
        assert!(
            err.contains("hypercall, mmio-read, guest-exception (lines seen: none)"),
            "{err}"
        );

        let twice = format!("{log}[bench] BENCH hypercall 1.0 ns/op (1000 iters)\n");
        let err = format!("{:#}", parse_run(&twice).unwrap_err());
        assert!(err.contains("\"hypercall\" was reported twice"), "{err}");

        // Extra operations are kept, in order.
        let extra = format!("{log}[bench] BENCH empty-loop 3.0 ns/op (1000 iters)\n");
        let run = parse_run(&extra).unwrap();
        assert_eq!(run.len(), 4);
        assert_eq!(run[3].name, "empty-loop");
    }

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
    fn ratios_need_a_positive_baseline() {
        assert_eq!(ratio(270.0, 10.0).unwrap(), 27.0);
        assert_eq!(ratio(5.0, 10.0).unwrap(), 0.5);
        assert!(ratio(1.0, 0.0).is_err());
        assert!(ratio(1.0, -1.0).is_err());
    }

    #[test]
    fn summary_takes_medians_of_values_and_of_per_run_ratios() {
        let runs = [
            run_of(300.0, 400.0, 10.0),
            run_of(270.0, 440.0, 9.0),
            run_of(280.0, 420.0, 20.0),
        ];
        let s = summarize(&runs).unwrap();
        assert_eq!(s.runs, 3);
        assert_eq!(s.iterations, 1000);
        let names: Vec<&str> = s.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, OPERATIONS);
        let h = &s.rows[0];
        assert_eq!(h.instructions, 280.0);
        // Per run: 30, 30, 14: the median ratio, not 280 / 10.
        assert_eq!(h.ratio, 30.0);
        assert_eq!((h.min, h.max), (270.0, 300.0));
        let m = &s.rows[1];
        assert_eq!(m.instructions, 420.0);
        // 40, 48.88.., 21
        assert_eq!(m.ratio, 40.0);
        let e = &s.rows[2];
        assert_eq!((e.instructions, e.ratio), (10.0, 1.0));

        let one = summarize(&runs[..1]).unwrap();
        assert_eq!(one.rows[0].instructions, 300.0);
        assert_eq!(one.rows[0].ratio, 30.0);
    }

    #[test]
    fn summary_refuses_inconsistent_runs() {
        assert!(summarize(&[]).is_err());
        let mut odd = run_of(1.0, 2.0, 1.0);
        odd[1].iterations = 10;
        let err = format!(
            "{:#}",
            summarize(&[run_of(1.0, 2.0, 1.0), odd]).unwrap_err()
        );
        assert!(
            err.contains("run 2: mmio-read was timed over 10 iterations"),
            "{err}"
        );
        let mut extra = run_of(1.0, 2.0, 1.0);
        extra.push(sample("other", 1.0));
        assert!(summarize(&[run_of(1.0, 2.0, 1.0), extra]).is_err());
        let err = format!("{:#}", summarize(&[run_of(1.0, 2.0, 0.0)]).unwrap_err());
        assert!(err.contains("baseline"), "{err}");
    }

    #[test]
    fn table_and_report() {
        let s = summarize(&[run_of(270.0, 433.0, 10.0), run_of(270.0, 433.0, 10.0)]).unwrap();
        assert_eq!(
            render_table(&s),
            "\
| operation | guest instructions / op | × guest-exception | min–max over 2 run(s) |
|---|---:|---:|---:|
| hypercall | 270.0 | 27.0 | 270.0–270.0 |
| mmio-read | 433.0 | 43.3 | 433.0–433.0 |
| guest-exception | 10.0 | 1.0 | 10.0–10.0 |
"
        );
        let r = render_report(Arch::Riscv64, &s, "abc1234", "QEMU 7.2");
        assert!(r.starts_with("# axvisor bench, riscv64\n"), "{r}");
        assert!(r.contains("- revision: abc1234\n"), "{r}");
        assert!(r.contains("`-icount shift=0`, 1 CPU"), "{r}");
        assert!(
            r.contains("timed 1000 times by the guest; median of 2 run(s)"),
            "{r}"
        );
        assert!(r.ends_with(&render_table(&s)), "{r}");
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
    fn the_bench_configs_exist_and_scenarios_look_right() {
        for arch in Arch::SUPPORTED {
            let config = vm_config(arch);
            assert!(util::repo_root().join(&config).is_file(), "{config}");
            let vms = VmSet::from_root_relative(util::repo_root(), std::slice::from_ref(&config))
                .unwrap();
            let machine = Machine::new(arch, 1, None, MemSize::default()).unwrap();
            let s = run_scenario(arch, 2, &machine, &vms, &config);
            assert_eq!(s.name, format!("bench-{arch}-run2"));
            assert_eq!(s.machine.cpus, 1);
            assert_eq!(s.extra_args, ["-icount", "shift=0"]);
            assert!(s.fail_on.iter().any(|f| f == NOT_SUPPORTED));
            assert!(s.fail_on.iter().any(|f| f == "FAIL "));
            assert_eq!(s.expect.last().unwrap(), "vm bench: powered off");
            assert_eq!(s.image_key(), (arch, vms));
        }
    }
}
