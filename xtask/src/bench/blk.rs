//! virtio-blk throughput against a RAM disk: the Linux VM `configs/vms/<arch>-linux-blkbench.toml`
//! (one virtio-blk over `/lblk.img`, 4 MiB of zeros on the hypervisor's disk) runs
//! `guests/linux/blkbench.sh`, which times the same `dd` of 2 MiB to and from a tmpfs file
//! and to and from `/dev/vda` (direct I/O) with the kernel's monotonic clock, under
//! `-icount shift=0` (a guest nanosecond is an instruction, so the figures do not depend on
//! the host). The result is each direction's virtio-blk throughput over the RAM disk's in
//! the same boot, median over `--runs` boots.

use std::fmt::Write as _;

use anyhow::{bail, ensure, Context, Result};

use super::{median, Boots, PartResult, Platform, VmBench};
use crate::arch::{Arch, Gic, MemSize};
use crate::disk::DiskFs;
use crate::qemu::Machine;
use crate::scenario::{DiskAs, ScenarioDisk};
use crate::util;

/// The VM's name.
const VM_NAME: &str = "linux";
/// The emulator's `-icount` arguments.
const ICOUNT_ARGS: [&str; 2] = ["-icount", "shift=0"];
/// The file of zeros on the hypervisor's disk the VM's virtio-blk is backed by, and its
/// size (as the `*-linux-virtio-blk` scenarios' `disk_zeroed`).
const DISK_FILE: (&str, u64) = ("lblk.img", 4 << 20);
/// What the script prints before each figure.
const TAG: &str = "BLKBENCH ";

/// The benchmark VM config for `arch`, relative to the repository root.
fn vm_config(arch: Arch) -> String {
    format!("configs/vms/{arch}-linux-blkbench.toml")
}

/// One boot's figures: nanoseconds of each transfer and the bytes each moved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    /// The clock's own cost (two reads around an empty `dd`).
    pub empty: f64,
    /// Writing to the tmpfs file, reading it back.
    pub ram: [f64; 2],
    /// Writing to `/dev/vda`, reading it back.
    pub vda: [f64; 2],
    /// Bytes per transfer.
    pub bytes: f64,
}

impl Run {
    /// MiB/s of a transfer that took `ns`, the clock's cost taken off.
    fn mib_per_s(&self, ns: f64) -> f64 {
        self.bytes / (1 << 20) as f64 / ((ns - self.empty).max(1.0) * 1e-9)
    }

    /// virtio-blk over RAM for direction `d` (0 write, 1 read): the ratio of throughputs.
    fn ratio(&self, d: usize) -> f64 {
        self.mib_per_s(self.vda[d]) / self.mib_per_s(self.ram[d])
    }
}

/// Reads one boot's `BLKBENCH` lines from the VM's console.
pub fn parse(log: &str) -> Result<Run> {
    let mut run = Run::default();
    let mut seen = 0;
    for line in log.lines() {
        let Some(at) = line.find(TAG) else {
            continue;
        };
        let words: Vec<&str> = line[at + TAG.len()..].split_whitespace().collect();
        let value = |i: usize| -> Result<f64> {
            words
                .get(i)
                .and_then(|w| w.parse::<u64>().ok())
                .map(|v| v as f64)
                .with_context(|| format!("no number in {line:?}"))
        };
        let slot = match words.first().copied() {
            Some("empty") => &mut run.empty,
            Some("ram-write") => &mut run.ram[0],
            Some("ram-read") => &mut run.ram[1],
            Some("vda-write") => &mut run.vda[0],
            Some("vda-read") => &mut run.vda[1],
            Some("bytes") => &mut run.bytes,
            _ => bail!("unknown figure in {line:?}"),
        };
        *slot = value(1)?;
        seen += 1;
    }
    ensure!(
        seen == 6,
        "{seen} of the 6 {TAG}lines (empty, ram-write, ram-read, vda-write, vda-read, bytes)"
    );
    ensure!(run.bytes > 0.0, "no bytes moved");
    Ok(run)
}

/// The table: per direction the RAM disk's and virtio-blk's MiB/s (medians) and the ratio
/// (median of the runs' ratios, each run's listed).
pub fn render_table(runs: &[Run]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| direction | tmpfs (RAM) MiB/s | virtio-blk MiB/s | virtio-blk / RAM, each run | median |"
    );
    let _ = writeln!(t, "|---|---:|---:|---|---:|");
    for (d, name) in ["write", "read"].iter().enumerate() {
        let ram: Vec<f64> = runs.iter().map(|r| r.mib_per_s(r.ram[d])).collect();
        let vda: Vec<f64> = runs.iter().map(|r| r.mib_per_s(r.vda[d])).collect();
        let ratios: Vec<f64> = runs.iter().map(|r| r.ratio(d)).collect();
        let each = ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            t,
            "| {name} | {:.1} | {:.1} | {each} | **{:.3}** |",
            median(&ram).unwrap_or_default(),
            median(&vda).unwrap_or_default(),
            median(&ratios).unwrap_or_default()
        );
    }
    t
}

/// Measures on `arch` (see the module documentation).
pub fn measure(arch: Arch, runs: u32) -> Result<PartResult> {
    let config = vm_config(arch);
    if !util::repo_root().join(&config).is_file() {
        return Ok(PartResult::NotAvailable(format!("there is no {config}")));
    }
    crate::realguest::ensure(arch)?;
    let bench = VmBench {
        arch,
        config: config.clone(),
        vm: VM_NAME,
        icount: &ICOUNT_ARGS,
        platform: if arch == Arch::X86_64 {
            Platform::X86_SVM
        } else {
            Platform::usual(arch)
        },
    };
    let image = bench.build()?;
    let gic = (arch == Arch::Aarch64).then_some(Gic::V3);
    let disk = ScenarioDisk {
        from: None,
        attach: if arch == Arch::X86_64 {
            DiskAs::Initrd
        } else {
            DiskAs::Virtio
        },
        fs: DiskFs::Fat,
        guests: Vec::new(),
        after: Vec::new(),
        zeroed: vec![(DISK_FILE.0.to_owned(), DISK_FILE.1)],
        spare: None,
    };
    let scenarios = (1..=runs)
        .map(|i| {
            let mut s = bench.scenario(&image.0, gic, i)?;
            // The VM is pinned to CPU 1, as the other Linux VMs.
            s.machine = Machine::new(arch, 2, gic, MemSize::default())?;
            s.disk = Some(disk.clone());
            // The script's last figure instead of a test guest's PASS line.
            s.expect[1] = format!("[{VM_NAME}] {TAG}bytes");
            s.fail_on.push("BLKBENCH-FAIL".to_owned());
            s.fail_on.push("Kernel panic".to_owned());
            Ok(s)
        })
        .collect::<Result<Vec<_>>>()?;
    let logs = match bench.run(&image, &scenarios)? {
        Boots::Logs(logs) => logs,
        Boots::NotAvailable(why) => return Ok(PartResult::NotAvailable(why)),
    };
    let figures = logs
        .iter()
        .map(|(path, log)| parse(log).with_context(|| format!("in {}", path.display())))
        .collect::<Result<Vec<_>>>()?;
    let mut text = format!(
        "`guests/linux/blkbench.sh` in the VM `{config}` (Linux, 1 vCPU, a 2-CPU machine, \
         `-icount shift=0`), {runs} boot(s): `dd` of {} KiB in 64 KiB blocks to and from a \
         tmpfs file and `/dev/vda` (`oflag=direct` / `iflag=direct`: every block is a \
         virtio-blk request, served from `/lblk.img` on the hypervisor's disk), timed with \
         the kernel's monotonic clock less the cost of reading it. MiB/s of guest time \
         (instructions at 1 GHz).\n\n",
        figures.first().map_or(0.0, |r| r.bytes / 1024.0)
    );
    text.push_str(&render_table(&figures));
    Ok(PartResult::Done(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "[linux] BLKBENCH empty 1000 ns\n\
                       [linux] BLKBENCH ram-write 2001000 ns\n\
                       [linux] BLKBENCH ram-read 1001000 ns\n\
                       noise\n\
                       [linux] BLKBENCH vda-write 8001000 ns\n\
                       [linux] BLKBENCH vda-read 4001000 ns\n\
                       [linux] BLKBENCH bytes 2097152\n";

    #[test]
    fn parses_and_computes_ratios() {
        let run = parse(LOG).unwrap();
        assert_eq!(run.ram, [2_001_000.0, 1_001_000.0]);
        assert_eq!(run.bytes, 2_097_152.0);
        // 2 MiB in 2 ms (the clock's 1 us off) is 1000 MiB/s.
        assert!((run.mib_per_s(run.ram[0]) - 1000.0).abs() < 1e-6);
        assert!((run.ratio(0) - 0.25).abs() < 1e-9);
        assert!((run.ratio(1) - 0.25).abs() < 1e-9);
        let table = render_table(&[run.clone(), run]);
        assert!(table.contains("| write | 1000.0 | 250.0 | 0.250, 0.250 | **0.250** |"));
        assert!(table.contains("| read | 2000.0 | 500.0 | 0.250, 0.250 | **0.250** |"));
    }

    #[test]
    fn refuses_incomplete_or_unknown_figures() {
        let short: String = LOG.lines().take(3).collect::<Vec<_>>().join("\n");
        assert!(parse(&short).is_err());
        assert!(parse(&format!("{LOG}[linux] BLKBENCH other 5 ns\n")).is_err());
        assert!(parse(&LOG.replace("vda-read 4001000", "vda-read x")).is_err());
    }

    #[test]
    fn every_architecture_has_its_vm() {
        for arch in Arch::ALL {
            assert!(util::repo_root().join(vm_config(arch)).is_file(), "{arch}");
        }
    }
}
