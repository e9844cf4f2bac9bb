//! virtio-net round trip: the vnet guest (`guests/vnet`) in two VMs on one virtual switch
//! (`configs/vms/<arch>-vnet-{a,b}.toml`, CPUs 1 and 2 of 3): A pings B 200 times, each ping
//! answered, waiting for each answer in `wfi` until its card's interrupt, and prints
//! `BENCH vnet-round-trip <ns> ns/op (200 iters)`. The baseline is the same guest's
//! loopback in a boot of its own (`configs/vms/<arch>-vnet-l.toml`, CPU 1 of 2): two cards of one VM on
//! a switch of their own, card 0 pinging card 1 with the same driver code and device path
//! but no other VM or CPU (`BENCH vnet-loopback`). Under `-icount shift=0,sleep=off` a ns is
//! an instruction of whichever CPU runs, and a CPU that waits costs none. This part boots
//! each `--runs` times and reports the medians and their ratio.

use std::fmt::Write as _;

use anyhow::{bail, Result};

use super::exits::parse_run;
use super::latency::{platform, ICOUNT_ARGS};
use super::{machine_summary, median, Boots, PartResult, VmBench};
use crate::arch::{Arch, MemSize};
use crate::qemu::{emulator_command, Console, Machine};
use crate::vmset::VmSet;
use crate::{image, util};

/// What A prints: one round trip through another VM.
pub const ROUND_TRIP: &str = "vnet-round-trip";
/// What L prints: one round trip between two cards of the same VM (the baseline).
pub const LOOPBACK: &str = "vnet-loopback";
/// One measurement: the VMs it boots (the first prints the figure), and what it expects.
struct Setup {
    /// Part of the scenario names.
    label: &'static str,
    /// VM names; the first one's config comes first.
    vms: &'static [&'static str],
    /// The `BENCH` name its first VM prints.
    figure: &'static str,
    /// CPUs of the emulated machine: the hypervisor's, and the VMs' (A on 1, B on 2; L on 1).
    cpus: u32,
}

const PAIR: Setup = Setup {
    label: "vnet-pair",
    vms: &["vnet-a", "vnet-b"],
    figure: ROUND_TRIP,
    cpus: 3,
};
const LOOP: Setup = Setup {
    label: "vnet-loop",
    vms: &["vnet-l"],
    figure: LOOPBACK,
    cpus: 2,
};

/// The VM config of `vm` (`vnet-a`, ...) for `arch`, relative to the repository root.
fn config(arch: Arch, vm: &str) -> String {
    format!("configs/vms/{arch}-{vm}.toml")
}

/// Boots `setup` `runs` times; the figure of each run, in ns (instructions) per round trip.
fn measure_setup(arch: Arch, setup: &Setup, runs: u32) -> Result<(Vec<f64>, String)> {
    let configs: Vec<String> = setup.vms.iter().map(|vm| config(arch, vm)).collect();
    let vms = VmSet::from_root_relative(util::repo_root(), &configs)?;
    let hv = image::build(arch, &vms)?;
    let built = (vms, hv.boot);
    let bench = VmBench {
        arch,
        config: configs[0].clone(),
        vm: setup.vms[0],
        icount: &ICOUNT_ARGS,
        platform: platform(arch),
    };
    let machine = Machine::new(arch, setup.cpus, None, MemSize::default())?;
    let mut scenarios = Vec::new();
    for i in 1..=runs {
        let mut s = bench.scenario(&built.0, None, i)?;
        s.name = format!("{}-{arch}-run{i}", setup.label);
        s.machine = machine.clone();
        for vm in &setup.vms[1..] {
            s.expect_unordered.push(format!("[{vm}] PASS vnet"));
            s.fail_on.push(format!("vm {vm}: stopped"));
        }
        // The guest's name is `vnet` in every VM.
        s.expect[1] = format!("[{}] PASS vnet", setup.vms[0]);
        scenarios.push(s);
    }
    let summary = machine_summary(&emulator_command(
        &machine,
        &built.1,
        Console::Captured,
        &[],
    ));
    let logs = match bench.run(&built, &scenarios)? {
        Boots::Logs(logs) => logs,
        Boots::NotAvailable(why) => bail!("{why}"),
    };
    let mut figures = Vec::new();
    for (path, log) in &logs {
        let run = parse_run(log, &[setup.figure])
            .map_err(|e| e.context(format!("reading {}", path.display())))?;
        figures.extend(
            run.iter()
                .filter(|s| s.name == setup.figure)
                .map(|s| s.per_op),
        );
    }
    Ok((figures, summary))
}

/// The part: the pair's and the loopback's medians and their ratio.
pub fn measure(arch: Arch, runs: u32) -> Result<PartResult> {
    if !util::repo_root().join(config(arch, "vnet-l")).is_file() {
        return Ok(PartResult::NotAvailable(format!(
            "there is no {}",
            config(arch, "vnet-l")
        )));
    }
    let (pair, machine) = measure_setup(arch, &PAIR, runs)?;
    let (looped, _) = measure_setup(arch, &LOOP, runs)?;
    let (Some(pair), Some(looped)) = (median(&pair), median(&looped)) else {
        bail!("no figures");
    };
    Ok(PartResult::Done(render(arch, pair, looped, runs, &machine)))
}

/// The section text.
fn render(arch: Arch, pair: f64, looped: f64, runs: u32, machine: &str) -> String {
    let ratio = if looped > 0.0 { pair / looped } else { 0.0 };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| {arch} | instructions / round trip (median of {runs}) | × loopback |\n|---|---|---|"
    );
    let _ = writeln!(s, "| two VMs (`{ROUND_TRIP}`) | {pair:.0} | {ratio:.1} |");
    let _ = writeln!(
        s,
        "| loopback in one VM (`{LOOPBACK}`) | {looped:.0} | 1.0 |"
    );
    let _ = writeln!(s, "\nMachine: `{machine}` (`{}`).", ICOUNT_ARGS.join(" "));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_exist_for_every_setup() {
        for arch in Arch::ALL {
            for setup in [&PAIR, &LOOP] {
                for vm in setup.vms {
                    let path = util::repo_root().join(config(arch, vm));
                    assert!(path.is_file(), "{}", path.display());
                }
            }
        }
    }

    #[test]
    fn section() {
        let text = render(Arch::Aarch64, 30_000.0, 6_000.0, 3, "qemu");
        assert!(
            text.contains("| two VMs (`vnet-round-trip`) | 30000 | 5.0 |"),
            "{text}"
        );
        assert!(text.contains("| loopback in one VM (`vnet-loopback`) | 6000 | 1.0 |"));
    }
}
