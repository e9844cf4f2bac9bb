//! Doorbell round trip between two VMs on a link (docs/doorbell.md): the link guest
//! (`guests/link`) in its bench mode in two VMs (`configs/vms/<arch>-link{a,b}-bench.toml`,
//! link `bench0`), both on CPU 0 of a 1-CPU machine. The client writes a number into the
//! shared memory and rings; the server wakes on the doorbell interrupt, acknowledges it,
//! writes the number back and rings; the client wakes on its interrupt and acknowledges.
//! The client times 1000 of these and prints `BENCH link-round-trip <ns> ns/op`.
//!
//! The baseline, in the same boot: the client's emulated MMIO read of its doorbell's
//! `MAGIC` register (`BENCH link-mmio-read`), the cheapest exit the round trip is made of.
//! A round trip makes six of those exits (the client's `RING`, `PENDING` read and `ACK`;
//! the server's the same) and two interrupt deliveries, each a switch between the two
//! vCPUs on the one CPU; the ratio says how many MMIO exits a round trip costs, so what
//! the delivery and the switches add over the protocol's own exits. Under `-icount
//! shift=0,sleep=off` a ns is an instruction of the CPU (both guests' and the hypervisor's),
//! and a CPU that waits costs none: the figures are exact. This part boots `--runs` times
//! and reports the medians.

use std::fmt::Write as _;

use anyhow::{bail, Result};

use super::exits::parse_run;
use super::latency::{platform, ICOUNT_ARGS};
use super::{machine_summary, median, Boots, PartResult, VmBench};
use crate::arch::Arch;
use crate::qemu::{emulator_command, Console};
use crate::vmset::VmSet;
use crate::{image, util};

/// What the client prints: one doorbell round trip.
pub const ROUND_TRIP: &str = "link-round-trip";
/// What the client prints: one emulated MMIO read (the baseline).
pub const MMIO_READ: &str = "link-mmio-read";
/// The client VM (its config comes second: the server is built first).
const CLIENT: &str = "linka";
/// The server VM.
const SERVER: &str = "linkb";

/// The bench config of VM `vm` for `arch`, relative to the repository root.
fn config(arch: Arch, vm: &str) -> String {
    format!("configs/vms/{arch}-{vm}-bench.toml")
}

/// The part: the medians of both figures and their ratio.
pub fn measure(arch: Arch, runs: u32) -> Result<PartResult> {
    if arch == Arch::X86_64 {
        return Ok(PartResult::NotAvailable(
            "the link guest chooses its bench mode from its device tree, and x86_64 VMs have none"
                .to_owned(),
        ));
    }
    let configs = [config(arch, SERVER), config(arch, CLIENT)];
    let vms = VmSet::from_root_relative(util::repo_root(), &configs)?;
    let hv = image::build(arch, &vms)?;
    let built = (vms, hv.boot);
    let bench = VmBench {
        arch,
        config: configs[1].clone(),
        vm: CLIENT,
        icount: &ICOUNT_ARGS,
        platform: platform(arch),
    };
    let mut scenarios = Vec::new();
    for i in 1..=runs {
        let mut s = bench.scenario(&built.0, None, i)?;
        s.name = format!("link-bench-{arch}-run{i}");
        // The guest's name is `link` in both VMs.
        s.expect[1] = format!("[{CLIENT}] PASS link");
        s.expect_unordered.push(format!("vm {SERVER}: created"));
        s.fail_on.push(format!("vm {SERVER}: stopped"));
        s.fail_on.push(format!("vm {SERVER}: cannot"));
        scenarios.push(s);
    }
    let summary = machine_summary(&emulator_command(
        &scenarios[0].machine,
        &built.1,
        Console::Captured,
        &[],
    ));
    let logs = match bench.run(&built, &scenarios)? {
        Boots::Logs(logs) => logs,
        Boots::NotAvailable(why) => return Ok(PartResult::NotAvailable(why)),
    };
    let (mut round_trips, mut reads) = (Vec::new(), Vec::new());
    for (path, log) in &logs {
        let run = parse_run(log, &[ROUND_TRIP, MMIO_READ])
            .map_err(|e| e.context(format!("reading {}", path.display())))?;
        for s in run {
            match s.name.as_str() {
                ROUND_TRIP => round_trips.push(s.per_op),
                MMIO_READ => reads.push(s.per_op),
                _ => {}
            }
        }
    }
    let (Some(round_trip), Some(read)) = (median(&round_trips), median(&reads)) else {
        bail!("no figures");
    };
    Ok(PartResult::Done(render(
        arch, round_trip, read, runs, &summary,
    )))
}

/// The section text.
fn render(arch: Arch, round_trip: f64, read: f64, runs: u32, machine: &str) -> String {
    let ratio = if read > 0.0 { round_trip / read } else { 0.0 };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| {arch} | instructions / op (median of {runs}) | × MMIO read |\n|---|---|---|"
    );
    let _ = writeln!(
        s,
        "| doorbell round trip between two VMs on one CPU (`{ROUND_TRIP}`) | {round_trip:.0} | {ratio:.1} |"
    );
    let _ = writeln!(
        s,
        "| emulated MMIO read of the doorbell (`{MMIO_READ}`) | {read:.0} | 1.0 |"
    );
    let _ = writeln!(
        s,
        "\nA round trip makes 6 MMIO exits and 2 interrupt deliveries (each a vCPU switch).\n\nMachine: `{machine}` (`{}`).",
        ICOUNT_ARGS.join(" ")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_exist() {
        for arch in [Arch::Aarch64, Arch::Riscv64] {
            for vm in [CLIENT, SERVER] {
                let path = util::repo_root().join(config(arch, vm));
                assert!(path.is_file(), "{}", path.display());
            }
        }
    }

    #[test]
    fn section() {
        let text = render(Arch::Aarch64, 12_000.0, 1_000.0, 3, "qemu");
        assert!(
            text.contains(
                "| doorbell round trip between two VMs on one CPU (`link-round-trip`) | 12000 | 12.0 |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| emulated MMIO read of the doorbell (`link-mmio-read`) | 1000 | 1.0 |")
        );
    }
}
