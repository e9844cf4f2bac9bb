//! Linux boot to marker: wall-clock time from the emulator's start to the marker line of
//! the fetched Linux guest (`cargo xtask guests fetch`, docs/real-guests.md), under the
//! hypervisor (VM `configs/vms/<arch>-linux.toml`, the image `cargo xtask test` builds for
//! it) and booted directly on the same emulated machine without the hypervisor, alternately,
//! `--runs` times each. Unlike the other parts this is wall-clock time, so it depends on
//! the host and its load; the ratio of the two medians is the result.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use super::{
    console, load_average, machine_summary, median, without_el2, PartResult, Platform, VmBench,
};
use crate::arch::{Arch, Gic, MemSize};
use crate::qemu::{emulator_command, Console, EmulatorCommand, Machine};
use crate::realguest::{self, RealGuest, MARKER};
use crate::util;

/// The Linux VM's name.
pub const VM_NAME: &str = "linux";
/// Time limit of one boot.
const TIMEOUT: Duration = Duration::from_secs(300);
/// The GIC both boots get on aarch64.
const GIC: Gic = Gic::V3;

/// The Linux VM config for `arch`, relative to the repository root.
pub fn vm_config(arch: Arch) -> String {
    format!("configs/vms/{arch}-linux.toml")
}

/// What the direct boot copies from the VM config so that Linux sees the same machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmShape {
    /// vCPUs: the direct boot's CPU count.
    pub vcpus: u32,
    /// Physical CPUs the hypervisor needs for the VM's pinning (highest pin + 1).
    pub host_cpus: u32,
    /// The VM's RAM in MiB: the direct boot's `-m`.
    pub mem_mib: u64,
    /// The kernel command line.
    pub cmdline: String,
}

/// Reads a VM config's vCPUs, pinning, RAM and command line.
pub fn vm_shape(text: &str) -> Result<VmShape> {
    let config = axvmconfig::from_toml(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let vcpus = u32::try_from(config.cpus.count).context("too many vCPUs")?;
    let host_cpus = config
        .cpus
        .pin
        .iter()
        .max()
        .map_or(vcpus as usize, |p| p + 1);
    let bytes: u64 = config.memory.iter().map(|m| m.size).sum();
    ensure!(vcpus > 0 && bytes > 0, "the VM has no vCPU or no RAM");
    Ok(VmShape {
        vcpus,
        host_cpus: u32::try_from(host_cpus).context("too many CPUs")?,
        mem_mib: bytes.div_ceil(1 << 20),
        cmdline: config.kernel.cmdline.unwrap_or_default(),
    })
}

/// Checks a marker line: after the marker, `kernel=` must be followed by `version` (up to
/// white space) and `cpus=` by the number `cpus`. Whatever follows the number is ignored:
/// under the hypervisor the next console line can run into the marker's when the guest
/// prints without a line break in between (seen on riscv64: `cpus=1[   12.77] reboot: …`).
pub fn check_marker(line: &str, version: &str, cpus: u32) -> Result<()> {
    let rest = line
        .find(MARKER)
        .map(|at| &line[at + MARKER.len()..])
        .with_context(|| format!("{line:?} has no {MARKER}"))?;
    let value = |key: &str| {
        rest.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_default()
    };
    let kernel = value("kernel=");
    ensure!(
        kernel == version,
        "the marker line {line:?} says kernel={kernel}, not {version}"
    );
    let count = value("cpus=");
    let digits = &count[..count
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(count.len())];
    ensure!(
        digits.parse() == Ok(cpus),
        "the marker line {line:?} says cpus={digits}, not {cpus}"
    );
    Ok(())
}

/// The direct boot: `guest` on the machine the VM gives it (its vCPUs, RAM and command
/// line, GICv3 on aarch64), without EL2 (see [`without_el2`]), exiting instead of
/// rebooting.
pub fn direct_command(arch: Arch, guest: &RealGuest, shape: &VmShape) -> Result<EmulatorCommand> {
    let gic = (arch == Arch::Aarch64).then_some(GIC);
    let mem: MemSize = format!("{}M", shape.mem_mib)
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let machine = Machine::new(arch, shape.vcpus, gic, mem)?;
    let mut extra = vec![
        "-initrd".to_owned(),
        guest.initramfs.to_string_lossy().into_owned(),
        "-append".to_owned(),
        shape.cmdline.clone(),
        "-no-reboot".to_owned(),
    ];
    extra.extend(cpu_args(arch));
    without_el2(emulator_command(
        &machine,
        &guest.kernel,
        Console::Captured,
        &extra,
    ))
}

/// The CPU model both boots get: on x86_64 the SVM machine of the scenarios (`-cpu EPYC`,
/// QEMU TCG has no VMX; the last `-cpu` wins), elsewhere the command's own.
pub fn cpu_args(arch: Arch) -> Vec<String> {
    match arch {
        Arch::X86_64 => vec!["-cpu".to_owned(), "EPYC".to_owned()],
        Arch::Aarch64 | Arch::Riscv64 => Vec::new(),
    }
}

/// Seconds to the marker of each run, of the two boots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Times {
    /// Without the hypervisor.
    pub direct: Vec<f64>,
    /// Under the hypervisor.
    pub hyp: Vec<f64>,
}

/// The table: each run, the medians, their ratio and each run's ratio (run `i` under the
/// hypervisor over run `i` direct).
pub fn render_table(times: &Times, direct_machine: &str, hyp_machine: &str) -> String {
    let list = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let direct = median(&times.direct).unwrap_or_default();
    let hyp = median(&times.hyp).unwrap_or_default();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| boot | QEMU machine | s to marker, each run | median |"
    );
    let _ = writeln!(t, "|---|---|---|---:|");
    let _ = writeln!(
        t,
        "| direct (no hypervisor) | `{direct_machine}` | {} | {direct:.2} s |",
        list(&times.direct)
    );
    let _ = writeln!(
        t,
        "| under axvisor | `{hyp_machine}` | {} | {hyp:.2} s |",
        list(&times.hyp)
    );
    if direct > 0.0 {
        let per_run: Vec<String> = times
            .direct
            .iter()
            .zip(&times.hyp)
            .filter(|(d, _)| **d > 0.0)
            .map(|(d, h)| format!("{:.2}", h / d))
            .collect();
        let _ = writeln!(
            t,
            "| **× direct** | ratio of the medians (of each run: {}) | | **{:.2}** |",
            per_run.join(", "),
            hyp / direct
        );
    }
    t
}

/// Measures the boot on `arch` (see the module documentation).
pub fn measure(arch: Arch, runs: u32) -> Result<PartResult> {
    let config = vm_config(arch);
    let config_path = util::repo_root().join(&config);
    if !config_path.is_file() {
        return Ok(PartResult::NotAvailable(format!(
            "there is no {config} (Linux does not run under axvisor on {arch} yet)"
        )));
    }
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let shape = vm_shape(&text).with_context(|| format!("in {config}"))?;
    let guest = realguest::ensure(arch)?;
    let bench = VmBench {
        arch,
        config,
        vm: VM_NAME,
        icount: &[],
        platform: Platform::usual(arch),
    };
    let (_, image) = bench.build()?;
    let gic = (arch == Arch::Aarch64).then_some(GIC);
    let hyp_machine = Machine::new(arch, shape.host_cpus, gic, MemSize::default())?;
    let hyp_cmd = emulator_command(&hyp_machine, &image, Console::Captured, &cpu_args(arch));
    let direct_cmd = direct_command(arch, &guest, &shape)?;
    let load_before = load_average();
    let stopped = format!("vm {VM_NAME}: stopped");
    let cannot = format!("vm {VM_NAME}: cannot");
    let fail_on = [
        "panicked at",
        "Kernel panic",
        stopped.as_str(),
        cannot.as_str(),
    ];
    let mut times = Times::default();
    for i in 1..=runs {
        for (label, cmd) in [("direct", &direct_cmd), ("axvisor", &hyp_cmd)] {
            let watch = console::Watch {
                done: MARKER,
                fail_on: &fail_on,
                then_exit: false,
                timeout: TIMEOUT,
            };
            let log = super::log_dir().join(format!("linux-{arch}-{label}-run{i}.log"));
            println!("$ {cmd}");
            let c = console::run(cmd, &log, &watch)
                .with_context(|| format!("Linux boot {label}, run {i}"))?;
            check_marker(&c.done_line, &guest.version, shape.vcpus)
                .with_context(|| format!("in {}", log.display()))?;
            let secs = c.done_after.as_secs_f64();
            println!("linux {label} run {i}: marker after {secs:.2} s");
            if label == "direct" {
                times.direct.push(secs);
            } else {
                times.hyp.push(secs);
            }
        }
    }
    let load_after = load_average();
    let mut text = format!(
        "Wall-clock seconds from starting QEMU to the line `{MARKER} kernel={} cpus={}` \
         (kernel {} with the marker initramfs), the two boots alternating, {runs} run(s) \
         each, one at a time. Not icount: the host's speed and load count. Load average \
         {} before, {} after.\n\n",
        guest.version,
        shape.vcpus,
        guest.version,
        load_before.as_deref().unwrap_or("unknown"),
        load_after.as_deref().unwrap_or("unknown"),
    );
    text.push_str(&render_table(
        &times,
        &machine_summary(&direct_cmd),
        &machine_summary(&hyp_cmd),
    ));
    Ok(PartResult::Done(text))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_aarch64_linux_vm() {
        let text =
            std::fs::read_to_string(util::repo_root().join(vm_config(Arch::Aarch64))).unwrap();
        let shape = vm_shape(&text).unwrap();
        assert_eq!(shape.vcpus, 1);
        assert_eq!(shape.host_cpus, 2, "pinned to CPU 1");
        assert_eq!(shape.mem_mib, 128);
        assert!(shape.cmdline.contains("rdinit=/init"), "{shape:?}");
    }

    #[test]
    fn shapes() {
        let text = "id = 1\nname = \"l\"\n[cpus]\ncount = 2\npin = [3, 1]\n[kernel]\n\
                    image = \"linux\"\nload_addr = 0x4000_0000\ncmdline = \"console=x\"\n\
                    [[memory]]\ngpa = 0x4000_0000\nsize = 0x80_0000\nmap = \"alloc\"\n\
                    [[memory]]\ngpa = 0x5000_0000\nsize = 0x80_0000\nmap = \"alloc\"\n";
        assert_eq!(
            vm_shape(text).unwrap(),
            VmShape {
                vcpus: 2,
                host_cpus: 4,
                mem_mib: 16,
                cmdline: "console=x".into(),
            }
        );
        assert!(vm_shape("id = 1").is_err());
    }

    #[test]
    fn markers() {
        let line = "[linux] AXVISOR-LINUX-MARKER kernel=6.1.0-50-arm64 cpus=1";
        check_marker(line, "6.1.0-50-arm64", 1).unwrap();
        let err = format!("{:#}", check_marker(line, "6.1.0-50-arm64", 2).unwrap_err());
        assert!(err.contains("says cpus=1, not 2"), "{err}");
        let err = format!("{:#}", check_marker(line, "6.1.0", 1).unwrap_err());
        assert!(
            err.contains("says kernel=6.1.0-50-arm64, not 6.1.0"),
            "{err}"
        );
        let run_on =
            "[linux] AXVISOR-LINUX-MARKER kernel=7.2.12+deb14-riscv64 cpus=1[   12.776247] \
                      reboot: Power down";
        check_marker(run_on, "7.2.12+deb14-riscv64", 1).unwrap();
        assert!(check_marker(run_on, "7.2.12+deb14-riscv64", 12).is_err());
        assert!(check_marker("AXVISOR-LINUX-MARKER kernel=v cpus=", "v", 1).is_err());
        assert!(check_marker("no marker", "v", 1).is_err());
    }

    #[test]
    fn direct_boot_is_the_vm_s_machine_without_el2() {
        let guest = RealGuest {
            kernel: PathBuf::from("g/Image"),
            initramfs: PathBuf::from("g/initramfs.cpio"),
            version: "v".to_owned(),
        };
        let shape = VmShape {
            vcpus: 1,
            host_cpus: 2,
            mem_mib: 256,
            cmdline: "console=ttyAMA0 rdinit=/init".into(),
        };
        let cmd = direct_command(Arch::Aarch64, &guest, &shape).unwrap();
        assert_eq!(
            cmd.to_string(),
            "qemu-system-aarch64 -M virt,gic-version=3 -cpu cortex-a72 -smp 1 -m 256M \
             -nographic -monitor none -serial stdio -kernel g/Image -initrd g/initramfs.cpio \
             -append console=ttyAMA0 rdinit=/init -no-reboot"
        );
        let rv = direct_command(Arch::Riscv64, &guest, &shape).unwrap();
        assert!(
            rv.to_string()
                .starts_with("qemu-system-riscv64 -M virt -cpu rv64 -smp 1 -m 256M"),
            "{rv}"
        );
        // x86_64: the SVM scenarios' CPU, for the direct boot and the hypervisor alike.
        let x86 = direct_command(Arch::X86_64, &guest, &shape).unwrap();
        assert!(x86.to_string().ends_with("-no-reboot -cpu EPYC"), "{x86}");
        assert_eq!(cpu_args(Arch::X86_64), ["-cpu", "EPYC"]);
        assert!(cpu_args(Arch::Aarch64).is_empty());
    }

    #[test]
    fn the_x86_64_linux_vm() {
        let text =
            std::fs::read_to_string(util::repo_root().join(vm_config(Arch::X86_64))).unwrap();
        let shape = vm_shape(&text).unwrap();
        assert_eq!((shape.vcpus, shape.host_cpus, shape.mem_mib), (1, 2, 128));
    }

    #[test]
    fn table() {
        let times = Times {
            direct: vec![2.0, 2.5, 2.2],
            hyp: vec![5.5, 5.0, 6.0],
        };
        assert_eq!(
            render_table(&times, "-M d", "-M h"),
            "\
| boot | QEMU machine | s to marker, each run | median |
|---|---|---|---:|
| direct (no hypervisor) | `-M d` | 2.00, 2.50, 2.20 | 2.20 s |
| under axvisor | `-M h` | 5.50, 5.00, 6.00 | 5.50 s |
| **× direct** | ratio of the medians (of each run: 2.75, 2.00, 2.73) | | **2.50** |
"
        );
    }

    #[test]
    fn riscv64_is_not_yet_supported_without_its_config() {
        if util::repo_root().join(vm_config(Arch::Riscv64)).is_file() {
            return;
        }
        let PartResult::NotAvailable(why) = measure(Arch::Riscv64, 1).unwrap() else {
            panic!("riscv64 Linux should not be measured without its config");
        };
        assert!(why.contains("configs/vms/riscv64-linux.toml"), "{why}");
    }
}
