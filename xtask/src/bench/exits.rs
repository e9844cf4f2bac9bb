//! Exit costs: the bench guest (`guests/bench`, VM `configs/vms/<arch>-bench.toml`) times
//! hypercall, emulated-MMIO and (x86_64) emulated port-I/O round trips against its own
//! exception round trip (the baseline) in guest instructions, and prints one `BENCH <name> <value> <unit>
//! (<iterations> iters)` line per operation: `ns/op` under QEMU's `-icount shift=0` (one
//! nanosecond per instruction), `ticks/op` (TSC ticks) under Bochs with `clock: sync=none`
//! (x86_64: one tick per instruction). This part boots it `--runs` times through the
//! scenario runner and combines the lines. See `docs/performance.md`.

use std::fmt::Write as _;

use anyhow::{bail, ensure, Context, Result};

use std::path::PathBuf;

use super::{median, Boots, PartResult, Platform, VmBench};
use crate::arch::Arch;
use crate::bochs;
use crate::scenario::Emulator;
use crate::vmset::VmSet;

/// The operations the bench guest measures, in the order they are reported.
pub const OPERATIONS: [&str; 4] = ["hypercall", "hypercall-vm", "mmio-read", "guest-exception"];
/// The operation only architectures with port I/O (x86_64) report, after `mmio-read`.
pub const PORT_READ: &str = "port-read";
/// The operations the bench guest of `arch` must report: [`OPERATIONS`], and [`PORT_READ`]
/// on x86_64.
pub fn required(arch: Arch) -> Vec<&'static str> {
    let mut ops = OPERATIONS.to_vec();
    if arch == Arch::X86_64 {
        ops.push(PORT_READ);
    }
    ops
}
/// The operation every other one is compared with: an exception that stays in the guest.
pub const BASELINE: &str = "guest-exception";
/// What the guest prints before each measurement.
pub const MARKER: &str = "BENCH ";
/// The name of the bench VM and guest (console lines come prefixed with it).
pub const VM_NAME: &str = "bench";
/// The emulator arguments that make guest-visible time count instructions (1 ns each).
pub const ICOUNT_ARGS: [&str; 2] = ["-icount", "shift=0"];

/// The VM config of the bench guest for `arch`, relative to the repository root.
pub fn vm_config(arch: Arch) -> String {
    format!("configs/vms/{arch}-bench.toml")
}

/// One `BENCH <name> <value> ns/op|ticks/op (<iterations> iters)` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The operation, e.g. `hypercall`.
    pub name: String,
    /// Guest instructions per operation: nanoseconds under `-icount shift=0` (`ns/op`), TSC
    /// ticks under Bochs with `clock: sync=none` (`ticks/op`).
    pub per_op: f64,
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
    let [name, value, "ns/op" | "ticks/op", iters, "iters)"] = words[..] else {
        bail!("expected `{MARKER}<name> <value> ns/op|ticks/op (<iterations> iters)`");
    };
    let per_op: f64 = value
        .parse()
        .with_context(|| format!("{value:?} is not a number of nanoseconds or ticks"))?;
    ensure!(
        per_op.is_finite() && per_op >= 0.0,
        "{value:?} is not a non-negative number of nanoseconds or ticks"
    );
    let iterations: u64 = iters
        .strip_prefix('(')
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{iters:?} is not `(<iterations>`"))?;
    ensure!(iterations > 0, "0 iterations");
    Ok(Sample {
        name: name.to_owned(),
        per_op,
        iterations,
    })
}

/// The samples of one run, in the order printed.
pub type Run = Vec<Sample>;

/// Reads the samples of one run from its console log. Every operation in `required` (see
/// [`required`]) must appear exactly once; other names are kept (and reported) too.
pub fn parse_run(log: &str, required: &[&str]) -> Result<Run> {
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
    let missing: Vec<&str> = required
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
            .map(|s| s.per_op)
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

/// The platforms the exit costs are measured on: the architecture's usual one, and on
/// x86_64 both backends (VMX under Bochs, SVM under QEMU TCG), each against its own
/// baseline.
pub fn platforms(arch: Arch) -> Vec<Platform> {
    match arch {
        Arch::X86_64 => vec![Platform::X86_VMX, Platform::X86_SVM],
        Arch::Aarch64 | Arch::Riscv64 => vec![Platform::usual(arch)],
    }
}

/// The heading of a platform's table where an architecture has several.
pub fn platform_title(platform: Platform) -> String {
    let backend = platform.label.unwrap_or_default().to_uppercase();
    match (platform.emulator, platform.cpu) {
        (Emulator::Qemu, Some(cpu)) => format!("{backend}: QEMU TCG, `-cpu {cpu}`"),
        (Emulator::Qemu, None) => format!("{backend}: QEMU"),
        (Emulator::Bochs, cpu) => {
            format!(
                "{backend}: Bochs, `{}`",
                cpu.unwrap_or(bochs::DEFAULT_CPU_MODEL)
            )
        }
    }
}

/// Builds the image once and boots the bench guest `runs` times on one CPU (GICv2 on
/// aarch64) on each of the architecture's [`platforms`], and combines the results into
/// the section: one table per platform.
pub fn measure(arch: Arch, runs: u32) -> Result<PartResult> {
    let platforms = platforms(arch);
    let first = VmBench {
        arch,
        config: vm_config(arch),
        vm: VM_NAME,
        icount: &ICOUNT_ARGS,
        platform: platforms[0],
    };
    let image = first.build()?;
    if let [_] = platforms[..] {
        return measure_on(&first, &image, runs);
    }
    let mut text = String::new();
    let mut errors = Vec::new();
    for platform in platforms {
        let bench = VmBench {
            platform,
            ..first.clone()
        };
        let title = platform_title(platform);
        match measure_on(&bench, &image, runs) {
            Ok(PartResult::Done(body)) => {
                let _ = write!(text, "### {title}\n\n{body}\n");
            }
            Ok(PartResult::Partial { .. } | PartResult::NotAvailable(_)) => {
                errors.push(format!(
                    "{title}: the hypervisor says \"{}\"",
                    super::NOT_SUPPORTED
                ));
            }
            Err(e) => errors.push(format!("{title}: {e:#}")),
        }
    }
    if text.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(if errors.is_empty() {
        PartResult::Done(text)
    } else {
        PartResult::Partial { text, errors }
    })
}

/// Boots `bench` (`image` from [`VmBench::build`]) `runs` times and makes its section.
fn measure_on(bench: &VmBench, image: &(VmSet, PathBuf), runs: u32) -> Result<PartResult> {
    let logs = match bench.boot(image, None, runs)? {
        Boots::Logs(logs) => logs,
        Boots::NotAvailable(why) => return Ok(PartResult::NotAvailable(why)),
    };
    let mut samples = Vec::new();
    for (path, log) in &logs {
        samples.push(
            parse_run(log, &required(bench.arch))
                .with_context(|| format!("in {}", path.display()))?,
        );
    }
    let summary = summarize(&samples)?;
    Ok(PartResult::Done(render_section(&summary, bench.platform)))
}

/// The exit-cost section of the report: how it was measured, then the table.
pub fn render_section(summary: &Summary, platform: Platform) -> String {
    let counted = match (platform.emulator, platform.cpu) {
        (Emulator::Qemu, None) => format!("under `{}`", ICOUNT_ARGS.join(" ")),
        (Emulator::Qemu, Some(cpu)) => format!(
            "on QEMU TCG (`-cpu {cpu}`) under `{}`, which makes the TSC count instructions too",
            ICOUNT_ARGS.join(" ")
        ),
        (Emulator::Bochs, cpu) => format!(
            "under Bochs ({}, `clock: sync=none`: TSC ticks are instructions)",
            cpu.unwrap_or(bochs::DEFAULT_CPU_MODEL)
        ),
    };
    let mut s = format!(
        "Each operation timed {} times by the guest {counted}, 1 CPU; median of {} run(s).\n\n",
        summary.iterations, summary.runs
    );
    s.push_str(&render_table(summary));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, ns: f64) -> Sample {
        Sample {
            name: name.to_owned(),
            per_op: ns,
            iterations: 1000,
        }
    }

    /// A run with `h` for the hypercall (100 more for the one the VM answers), `m` for the
    /// MMIO read and `e` for the baseline.
    fn run_of(h: f64, m: f64, e: f64) -> Run {
        vec![
            sample("hypercall", h),
            sample("hypercall-vm", h + 100.0),
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
        assert_eq!(s.per_op, 433.0);
        assert_eq!(s.iterations, 20);
        let s = parse_line("[bench] BENCH mmio-read 1234.5 ticks/op (1000 iters)")
            .unwrap()
            .unwrap();
        assert_eq!(s, sample("mmio-read", 1234.5));
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
[bench] BENCH hypercall-vm 370.0 ns/op (1000 iters)
[bench] BENCH mmio-read 433.0 ns/op (1000 iters)
[bench] BENCH guest-exception 10.0 ns/op (1000 iters)
[bench] PASS bench
vm bench: powered off
";
        assert_eq!(
            parse_run(log, &OPERATIONS).unwrap(),
            run_of(270.0, 433.0, 10.0)
        );

        let without_mmio: String = log
            .lines()
            .filter(|l| !l.contains("mmio-read"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = format!("{:#}", parse_run(&without_mmio, &OPERATIONS).unwrap_err());
        assert!(err.contains("no BENCH line for mmio-read"), "{err}");
        assert!(
            err.contains("lines seen: hypercall, hypercall-vm, guest-exception"),
            "{err}"
        );

        let err = format!(
            "{:#}",
            parse_run("[bench] PASS bench\n", &OPERATIONS).unwrap_err()
        );
        assert!(
            err.contains("hypercall, hypercall-vm, mmio-read, guest-exception (lines seen: none)"),
            "{err}"
        );

        let twice = format!("{log}[bench] BENCH hypercall 1.0 ns/op (1000 iters)\n");
        let err = format!("{:#}", parse_run(&twice, &OPERATIONS).unwrap_err());
        assert!(err.contains("\"hypercall\" was reported twice"), "{err}");

        // Extra operations are kept, in order.
        let extra = format!("{log}[bench] BENCH empty-loop 3.0 ns/op (1000 iters)\n");
        let run = parse_run(&extra, &OPERATIONS).unwrap();
        assert_eq!(run.len(), 5);
        assert_eq!(run[4].name, "empty-loop");

        // x86_64 also needs its port read.
        let err = format!("{:#}", parse_run(log, &required(Arch::X86_64)).unwrap_err());
        assert!(err.contains("no BENCH line for port-read"), "{err}");
        let x86 = format!("{log}[bench] BENCH port-read 300.0 ticks/op (1000 iters)\n");
        assert_eq!(parse_run(&x86, &required(Arch::X86_64)).unwrap().len(), 5);
        assert_eq!(required(Arch::Aarch64), OPERATIONS);
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
        let v = &s.rows[1];
        assert_eq!((v.instructions, v.ratio), (380.0, 40.0));
        let m = &s.rows[2];
        assert_eq!(m.instructions, 420.0);
        // 40, 48.88.., 21
        assert_eq!(m.ratio, 40.0);
        let e = &s.rows[3];
        assert_eq!((e.instructions, e.ratio), (10.0, 1.0));

        let one = summarize(&runs[..1]).unwrap();
        assert_eq!(one.rows[0].instructions, 300.0);
        assert_eq!(one.rows[0].ratio, 30.0);
    }

    #[test]
    fn summary_refuses_inconsistent_runs() {
        assert!(summarize(&[]).is_err());
        let mut odd = run_of(1.0, 2.0, 1.0);
        odd[2].iterations = 10;
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
    fn table_and_section() {
        let s = summarize(&[run_of(270.0, 433.0, 10.0), run_of(270.0, 433.0, 10.0)]).unwrap();
        assert_eq!(
            render_table(&s),
            "\
| operation | guest instructions / op | × guest-exception | min–max over 2 run(s) |
|---|---:|---:|---:|
| hypercall | 270.0 | 27.0 | 270.0–270.0 |
| hypercall-vm | 370.0 | 37.0 | 370.0–370.0 |
| mmio-read | 433.0 | 43.3 | 433.0–433.0 |
| guest-exception | 10.0 | 1.0 | 10.0–10.0 |
"
        );
        let r = render_section(&s, Platform::usual(Arch::Aarch64));
        assert!(
            r.starts_with(
                "Each operation timed 1000 times by the guest under `-icount shift=0`, 1 CPU; \
                 median of 2 run(s).\n\n"
            ),
            "{r}"
        );
        assert!(r.ends_with(&render_table(&s)), "{r}");
        let r = render_section(&s, Platform::usual(Arch::X86_64));
        assert!(
            r.starts_with(
                "Each operation timed 1000 times by the guest under Bochs (corei7_skylake_x, \
                 `clock: sync=none`: TSC ticks are instructions), 1 CPU; median of 2 run(s).\n\n"
            ),
            "{r}"
        );
        let r = render_section(&s, Platform::X86_SVM);
        assert!(
            r.starts_with(
                "Each operation timed 1000 times by the guest on QEMU TCG (`-cpu EPYC`) under \
                 `-icount shift=0`, which makes the TSC count instructions too, 1 CPU; median \
                 of 2 run(s).\n\n"
            ),
            "{r}"
        );
    }

    #[test]
    fn x86_64_measures_both_backends() {
        assert_eq!(
            platforms(Arch::X86_64),
            [Platform::X86_VMX, Platform::X86_SVM]
        );
        assert_eq!(platforms(Arch::Riscv64), [Platform::usual(Arch::Riscv64)]);
        assert_eq!(
            platform_title(Platform::X86_VMX),
            "VMX: Bochs, `corei7_skylake_x`"
        );
        assert_eq!(
            platform_title(Platform::X86_SVM),
            "SVM: QEMU TCG, `-cpu EPYC`"
        );
    }

    #[test]
    fn the_bench_configs_exist() {
        for arch in Arch::SUPPORTED {
            let config = vm_config(arch);
            assert!(crate::util::repo_root().join(&config).is_file(), "{config}");
        }
    }
}
