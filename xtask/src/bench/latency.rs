//! Timer interrupt latency: the latency guest (`guests/benchirq`, VM
//! `configs/vms/<arch>-benchirq.toml`) arms its one-shot timer again and again and times,
//! with its counter, how long each interrupt takes from the timer's expiry to its handler,
//! while it spins (`timer-busy`) and while it waits in `wfi` (`timer-wfi`). It prints
//! `BENCH-LATENCY <name> median <m> mean <x> min <a> max <b> ns (<blocks> blocks of <n>
//! irqs)`; under `-icount shift=0` a ns is an instruction. This part boots it in its VM
//! and, as the baseline, on the same emulated machine without the hypervisor, `--runs`
//! times each, for each GIC version on aarch64.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use super::{console, machine_summary, median, without_el2, Boots, PartResult, Platform, VmBench};
use crate::arch::{Arch, Gic, MemSize};
use crate::qemu::{emulator_command, Console, EmulatorCommand, Machine};
use crate::{guests, util};

/// The latency guest's and its VM's name.
pub const VM_NAME: &str = "benchirq";
/// What the guest prints before each measurement.
pub const MARKER: &str = "BENCH-LATENCY ";
/// The ways of waiting the guest measures, in the order it prints them.
pub const WAITS: [&str; 2] = ["timer-busy", "timer-wfi"];
/// Instructions as time (`shift=0`), and no real time while every CPU waits (`sleep=off`):
/// QEMU then moves the clock straight to the next timer deadline. With the default
/// `sleep=on` a halted CPU waits in real time and the clock jumps by however long the host
/// took, which puts host scheduling into the `timer-wfi` figures.
pub const ICOUNT_ARGS: [&str; 2] = ["-icount", "shift=0,sleep=off"];
/// Time limit of one boot without the hypervisor.
const BARE_TIMEOUT: Duration = Duration::from_secs(120);

/// The VM config of the latency guest for `arch`, relative to the repository root.
pub fn vm_config(arch: Arch) -> String {
    format!("configs/vms/{arch}-benchirq.toml")
}

/// One `BENCH-LATENCY` line: ns (instructions) per interrupt, over blocks of interrupts.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    /// The way of waiting, e.g. `timer-busy`.
    pub name: String,
    /// Median over the blocks.
    pub median: f64,
    /// Mean over the blocks.
    pub mean: f64,
    /// Smallest block.
    pub min: u64,
    /// Largest block.
    pub max: u64,
    /// How many blocks.
    pub blocks: u64,
    /// Interrupts per block (ns per counter tick).
    pub per_block: u64,
}

/// Parses the part of a console line from [`MARKER`] on. `None` if the line has no marker.
pub fn parse_line(line: &str) -> Option<Result<Latency>> {
    let at = line.find(MARKER)?;
    let rest = &line[at + MARKER.len()..];
    Some(parse_fields(rest).with_context(|| format!("malformed latency line {line:?}")))
}

/// The fixed words of a `BENCH-LATENCY` line after its name, in order.
const KEYWORDS: [&str; 8] = [
    "median", "mean", "min", "max", "ns", "blocks", "of", "irqs)",
];

fn parse_fields(rest: &str) -> Result<Latency> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let expected = || {
        anyhow::anyhow!(
            "expected `{MARKER}<name> median <m> mean <x> min <a> max <b> ns (<blocks> blocks \
             of <n> irqs)`"
        )
    };
    let words: [&str; 15] = words.try_into().map_err(|_| expected())?;
    let [name, k1, median, k2, mean, k3, min, k4, max, k5, blocks, k6, k7, per_block, k8] = words;
    if [k1, k2, k3, k4, k5, k6, k7, k8] != KEYWORDS {
        return Err(expected());
    }
    let float = |w: &str| -> Result<f64> {
        let v: f64 = w
            .parse()
            .with_context(|| format!("{w:?} is not a number"))?;
        ensure!(v.is_finite() && v >= 0.0, "{w:?} is not a number of ns");
        Ok(v)
    };
    let int =
        |w: &str| -> Result<u64> { w.parse().with_context(|| format!("{w:?} is not a count")) };
    let blocks = int(blocks
        .strip_prefix('(')
        .context("no `(` before the block count")?)?;
    let l = Latency {
        name: name.to_owned(),
        median: float(median)?,
        mean: float(mean)?,
        min: int(min)?,
        max: int(max)?,
        blocks,
        per_block: int(per_block)?,
    };
    ensure!(l.blocks > 0 && l.per_block > 0, "no interrupts");
    let (lo, hi) = (l.min as f64, l.max as f64);
    ensure!(
        lo <= l.median && l.median <= hi && lo <= l.mean && l.mean <= hi,
        "the median and mean must lie between min and max"
    );
    Ok(l)
}

/// Reads one run's lines from its console: every name in [`WAITS`] exactly once, in any
/// order; other names are kept too.
pub fn parse_run(log: &str) -> Result<Vec<Latency>> {
    let mut run: Vec<Latency> = Vec::new();
    for line in log.lines() {
        let Some(l) = parse_line(line) else {
            continue;
        };
        let l = l?;
        ensure!(
            !run.iter().any(|o| o.name == l.name),
            "{:?} was reported twice",
            l.name
        );
        run.push(l);
    }
    let missing: Vec<&str> = WAITS
        .into_iter()
        .filter(|w| !run.iter().any(|l| l.name == *w))
        .collect();
    ensure!(
        missing.is_empty(),
        "no {MARKER}line for {}",
        missing.join(", ")
    );
    Ok(run)
}

/// One measurement over several runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// Median over the runs of each run's median.
    pub median: f64,
    /// Median over the runs of each run's mean.
    pub mean: f64,
    /// The smallest and largest block of any run.
    pub min: u64,
    pub max: u64,
    /// Interrupts over all runs.
    pub irqs: u64,
}

/// Combines measurement `name` of every run.
pub fn combine(runs: &[Vec<Latency>], name: &str) -> Result<Stats> {
    ensure!(!runs.is_empty(), "no runs");
    let mut of_name = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let l = run
            .iter()
            .find(|l| l.name == name)
            .with_context(|| format!("run {} has no {name}", i + 1))?;
        of_name.push(l);
    }
    let medians: Vec<f64> = of_name.iter().map(|l| l.median).collect();
    let means: Vec<f64> = of_name.iter().map(|l| l.mean).collect();
    Ok(Stats {
        median: median(&medians).unwrap_or_default(),
        mean: median(&means).unwrap_or_default(),
        min: of_name.iter().map(|l| l.min).min().unwrap_or_default(),
        max: of_name.iter().map(|l| l.max).max().unwrap_or_default(),
        irqs: of_name.iter().map(|l| l.blocks * l.per_block).sum(),
    })
}

/// One row of the table: a way of waiting on one machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The way of waiting.
    pub name: String,
    /// The GIC (aarch64).
    pub gic: Option<Gic>,
    /// Without the hypervisor, when measured.
    pub bare: Option<Stats>,
    /// Under the hypervisor.
    pub hyp: Stats,
}

/// The table: medians, the ratio of the medians (under the hypervisor / bare), what the
/// hypervisor adds, and the spread under the hypervisor.
pub fn render_table(rows: &[Row]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| interrupt | GIC | bare: ns / irq | under axvisor: ns / irq | × bare | axvisor adds | \
         axvisor mean | axvisor min–max |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let gic = r.gic.map_or("—".to_owned(), |g| g.to_string());
        let (bare, times, adds) = match &r.bare {
            Some(b) if b.median > 0.0 => (
                format!("{:.1}", b.median),
                format!("{:.1}", r.hyp.median / b.median),
                format!("{:.1}", r.hyp.median - b.median),
            ),
            Some(b) => (format!("{:.1}", b.median), "—".into(), "—".into()),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let _ = writeln!(
            t,
            "| {} | {gic} | {bare} | {:.1} | {times} | {adds} | {:.1} | {}–{} |",
            r.name, r.hyp.median, r.hyp.mean, r.hyp.min, r.hyp.max
        );
    }
    t
}

/// The command that boots the latency guest without the hypervisor: the machine of the
/// runs under it (1 CPU, `gic`, the `platform`'s CPU), with [`ICOUNT_ARGS`], on aarch64
/// without EL2 (the guest starts at EL1), on riscv64 as it is (OpenSBI starts the guest in
/// S mode at its ELF entry, 2 MiB above the RAM base, where `guests/benchirq/build.rs`
/// links it), on x86_64 through grt's multiboot boot shim.
pub fn bare_command(
    arch: Arch,
    gic: Option<Gic>,
    platform: Platform,
    image: &Path,
) -> Result<EmulatorCommand> {
    let machine = Machine::new(arch, 1, gic, MemSize::default())?;
    let mut extra: Vec<String> = ICOUNT_ARGS.iter().map(|s| (*s).to_owned()).collect();
    if let Some(cpu) = platform.cpu {
        extra.extend(["-cpu".to_owned(), cpu.to_owned()]);
    }
    without_el2(emulator_command(&machine, image, Console::Captured, &extra))
}

/// Where the runs under the hypervisor go: on x86_64 SVM (QEMU TCG, `-cpu EPYC`), the
/// backend whose emulator also boots the guest bare; elsewhere the usual emulator.
pub fn platform(arch: Arch) -> Platform {
    match arch {
        Arch::X86_64 => Platform::X86_SVM,
        Arch::Aarch64 | Arch::Riscv64 => Platform::usual(arch),
    }
}

/// The image the emulator boots bare, as the guests build leaves it: the ELF, or on x86_64
/// the flat image (QEMU loads no 64-bit ELF; grt's multiboot header says where it goes).
fn bare_image(arch: Arch) -> PathBuf {
    match arch {
        Arch::X86_64 => guests::image_dir(arch).join(format!("{VM_NAME}.bin")),
        Arch::Aarch64 | Arch::Riscv64 => guests::target_dir()
            .join(arch.triple())
            .join("release")
            .join(VM_NAME),
    }
}

/// Reads every run's lines from its log (file, console).
fn parse_logs(logs: &[(PathBuf, String)]) -> Result<Vec<Vec<Latency>>> {
    logs.iter()
        .map(|(path, log)| parse_run(log).with_context(|| format!("in {}", path.display())))
        .collect()
}

/// Boots the guest without the hypervisor `runs` times, one after the other, each until
/// it passes and powers the machine off.
fn bare_runs(cmd: &EmulatorCommand, label: &str, runs: u32) -> Result<Vec<Vec<Latency>>> {
    let done = format!("PASS {VM_NAME}");
    let watch = console::Watch {
        done: &done,
        fail_on: &["FAIL ", "panicked at"],
        then_exit: true,
        timeout: BARE_TIMEOUT,
    };
    (1..=runs)
        .map(|i| {
            let log = super::log_dir().join(format!("{VM_NAME}-bare-{label}-run{i}.log"));
            println!("$ {cmd}");
            let c = console::run(cmd, &log, &watch)?;
            println!("PASS {VM_NAME}-bare-{label}-run{i}");
            parse_run(&c.console).with_context(|| format!("in {}", log.display()))
        })
        .collect()
}

/// Measures the latency on `arch` (see the module documentation).
pub fn measure(arch: Arch, runs: u32) -> Result<PartResult> {
    let config = vm_config(arch);
    if !util::repo_root().join(&config).is_file() {
        return Ok(PartResult::NotAvailable(format!(
            "there is no {config} (the VM needs a virtual interrupt controller)"
        )));
    }
    let bench = VmBench {
        arch,
        config: config.clone(),
        vm: VM_NAME,
        icount: &ICOUNT_ARGS,
        platform: platform(arch),
    };
    let image = bench.build()?;
    let gics: Vec<Option<Gic>> = match arch {
        Arch::Aarch64 => vec![Some(Gic::V2), Some(Gic::V3)],
        _ => vec![None],
    };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut machines = Vec::new();
    for gic in gics {
        let label = match gic {
            Some(g) => format!("{arch}-gicv{}", g.number()),
            None => arch.to_string(),
        };
        let hyp_machine = Machine::new(arch, 1, gic, MemSize::default())?;
        let bare_cmd = bare_command(arch, gic, bench.platform, &bare_image(arch))?;
        machines.push(format!(
            "`{}` under axvisor, `{}` bare",
            machine_summary(&emulator_command(
                &hyp_machine,
                &image.1,
                Console::Captured,
                &[]
            )),
            machine_summary(&bare_cmd)
        ));
        let hyp = match bench.boot(&image, gic, runs) {
            Ok(Boots::Logs(logs)) => parse_logs(&logs),
            Ok(Boots::NotAvailable(why)) => return Ok(PartResult::NotAvailable(why)),
            Err(e) => Err(e),
        };
        let hyp = match hyp {
            Ok(runs) => runs,
            Err(e) => {
                errors.push(format!("{label} under axvisor: {e:#}"));
                continue;
            }
        };
        let bare = match bare_runs(&bare_cmd, &label, runs) {
            Ok(runs) => Some(runs),
            Err(e) => {
                errors.push(format!("{label} without the hypervisor: {e:#}"));
                None
            }
        };
        for wait in WAITS {
            match combine(&hyp, wait) {
                Ok(hyp) => rows.push(Row {
                    name: wait.to_owned(),
                    gic,
                    bare: bare.as_ref().and_then(|b| combine(b, wait).ok()),
                    hyp,
                }),
                Err(e) => errors.push(format!("{label} {wait}: {e:#}")),
            }
        }
    }
    let per_run = rows.first().map_or(0, |r| r.hyp.irqs / u64::from(runs));
    let mut text = format!(
        "From the timer's expiry to the guest handler's counter read, in ns of guest-visible \
         time = instructions (`{}`), for the guest spinning (`timer-busy`) and halted in \
         `wfi` (`timer-wfi`): {per_run} interrupts per row and run, median of {runs} run(s). \
         Bare: the same guest ELF on the same machine without the hypervisor. Machines: {}; \
         VM {config}.\n\n",
        ICOUNT_ARGS.join(" "),
        machines.join("; "),
    );
    text.push_str(&render_table(&rows));
    Ok(if errors.is_empty() {
        PartResult::Done(text)
    } else {
        PartResult::Partial { text, errors }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
vm benchirq: created (id 1, 1 vcpu(s), 16384 KiB, vcpu 0 on cpu 0)
[benchirq] benchirq: aarch64 guest, counter at 62500000 Hz (16 ns per tick), deadlines 200 ticks ahead
[benchirq] BENCH-LATENCY timer-busy median 19609.0 mean 19609.2 min 19609 max 19615 ns (64 blocks of 16 irqs)
[benchirq] BENCH-LATENCY timer-wfi median 21077.5 mean 21077.5 min 21075 max 21080 ns (64 blocks of 16 irqs)
[benchirq] PASS benchirq
";

    fn lat(name: &str, median: f64, min: u64, max: u64) -> Latency {
        Latency {
            name: name.to_owned(),
            median,
            mean: median,
            min,
            max,
            blocks: 64,
            per_block: 16,
        }
    }

    #[test]
    fn lines_parse() {
        let run = parse_run(LOG).unwrap();
        assert_eq!(run.len(), 2);
        assert_eq!(
            run[0],
            Latency {
                name: "timer-busy".into(),
                median: 19609.0,
                mean: 19609.2,
                min: 19609,
                max: 19615,
                blocks: 64,
                per_block: 16,
            }
        );
        assert_eq!(run[1].median, 21077.5);
        let bare = parse_line(
            "BENCH-LATENCY timer-busy median 87 mean 87 min 87 max 87 ns (1 blocks of 100 irqs)",
        )
        .unwrap()
        .unwrap();
        assert_eq!((bare.median, bare.per_block), (87.0, 100));
        assert!(parse_line("[benchirq] PASS benchirq").is_none());
        assert!(parse_line("BENCH hypercall 260.0 ns/op (1000 iters)").is_none());
    }

    #[test]
    fn malformed_lines_quote_the_line() {
        for bad in [
            "BENCH-LATENCY timer-busy",
            "BENCH-LATENCY timer-busy median x mean 1 min 1 max 1 ns (1 blocks of 16 irqs)",
            "BENCH-LATENCY timer-busy median 1 mean 1 min 1 max 1 us (1 blocks of 16 irqs)",
            "BENCH-LATENCY timer-busy median 1 mean 1 min 1 max 1 ns (0 blocks of 16 irqs)",
            "BENCH-LATENCY timer-busy median 1 mean 1 min 1 max 1 ns 1 blocks of 16 irqs)",
            "BENCH-LATENCY timer-busy median 5 mean 1 min 1 max 2 ns (1 blocks of 16 irqs)",
            "BENCH-LATENCY timer-busy median -1 mean 1 min 1 max 2 ns (1 blocks of 16 irqs)",
        ] {
            let err = format!("{:#}", parse_line(bad).unwrap().unwrap_err());
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn a_run_needs_both_waits_once() {
        let no_wfi: String = LOG
            .lines()
            .filter(|l| !l.contains("timer-wfi"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = format!("{:#}", parse_run(&no_wfi).unwrap_err());
        assert!(err.contains("no BENCH-LATENCY line for timer-wfi"), "{err}");
        let twice = format!(
            "{LOG}BENCH-LATENCY timer-wfi median 1 mean 1 min 1 max 1 ns (1 blocks of 16 irqs)\n"
        );
        let err = format!("{:#}", parse_run(&twice).unwrap_err());
        assert!(err.contains("\"timer-wfi\" was reported twice"), "{err}");
    }

    #[test]
    fn runs_combine_into_medians_and_extremes() {
        let runs = [
            vec![lat("timer-busy", 100.0, 90, 120)],
            vec![lat("timer-busy", 300.0, 80, 400)],
            vec![lat("timer-busy", 110.0, 100, 110)],
        ];
        let s = combine(&runs, "timer-busy").unwrap();
        assert_eq!(
            s,
            Stats {
                median: 110.0,
                mean: 110.0,
                min: 80,
                max: 400,
                irqs: 3 * 64 * 16,
            }
        );
        let err = format!("{:#}", combine(&runs, "timer-wfi").unwrap_err());
        assert!(err.contains("run 1 has no timer-wfi"), "{err}");
        assert!(combine(&[], "timer-busy").is_err());
    }

    #[test]
    fn table() {
        let stats = |m: f64| Stats {
            median: m,
            mean: m,
            min: m as u64,
            max: m as u64,
            irqs: 1024,
        };
        let rows = [
            Row {
                name: "timer-busy".into(),
                gic: Some(Gic::V3),
                bare: Some(stats(87.0)),
                hyp: stats(19609.0),
            },
            Row {
                name: "timer-wfi".into(),
                gic: None,
                bare: None,
                hyp: stats(500.0),
            },
        ];
        assert_eq!(
            render_table(&rows),
            "\
| interrupt | GIC | bare: ns / irq | under axvisor: ns / irq | × bare | axvisor adds | axvisor mean | axvisor min–max |
|---|---|---:|---:|---:|---:|---:|---:|
| timer-busy | GICv3 | 87.0 | 19609.0 | 225.4 | 19522.0 | 19609.0 | 19609–19609 |
| timer-wfi | — | — | 500.0 | — | — | 500.0 | 500–500 |
"
        );
    }

    #[test]
    fn bare_commands() {
        let elf = Path::new("benchirq");
        let cmd = bare_command(Arch::Aarch64, Some(Gic::V3), platform(Arch::Aarch64), elf).unwrap();
        assert_eq!(
            cmd.to_string(),
            "qemu-system-aarch64 -M virt,gic-version=3 -cpu cortex-a72 -smp 1 -m 1G -nographic \
             -monitor none -serial stdio -kernel benchirq -icount shift=0,sleep=off"
        );
        let cmd = bare_command(Arch::Riscv64, None, platform(Arch::Riscv64), elf).unwrap();
        assert_eq!(
            cmd.to_string(),
            "qemu-system-riscv64 -M virt -cpu rv64 -smp 1 -m 1G -nographic -monitor none \
             -serial stdio -bios default -kernel benchirq -icount shift=0,sleep=off"
        );
        let cmd = bare_command(
            Arch::X86_64,
            None,
            platform(Arch::X86_64),
            Path::new("benchirq.bin"),
        )
        .unwrap();
        assert_eq!(
            cmd.to_string(),
            "qemu-system-x86_64 -M q35 -cpu max -smp 1 -m 1G -nographic -no-reboot -monitor none \
             -serial stdio -kernel benchirq.bin -icount shift=0,sleep=off -cpu EPYC"
        );
    }

    #[test]
    fn the_configs_exist() {
        for arch in [Arch::Aarch64, Arch::Riscv64, Arch::X86_64] {
            assert!(util::repo_root().join(vm_config(arch)).is_file(), "{arch}");
        }
    }
}
