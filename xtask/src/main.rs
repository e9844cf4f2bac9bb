//! `cargo xtask`: the single entry point for building, running and testing axvisor.
//!
//! Every action a person or CI performs is a verb here; see `docs/xtask.md`.

mod arch;
mod attach;
mod bench;
mod bochs;
mod ci;
mod disk;
mod elf;
mod fuzz;
mod guests;
mod hostdisk;
mod image;
mod matcher;
mod qemu;
mod realguest;
mod scenario;
mod setup;
mod soak;
mod toolchain;
mod util;
mod vmconfig;
mod vmdisk;
mod vmembed;
mod vmset;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::arch::{Arch, Gic, MemSize};
use crate::vmset::VmSet;

/// Build, run and test the axvisor hypervisor.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check for (and, as root, install) the emulators and host tools the tests need.
    Setup,
    /// Build the test guests and the hypervisor image for one architecture.
    Build(BuildArgs),
    /// Build the hypervisor and boot it in QEMU (or Bochs) with the console on this terminal.
    Run(RunArgs),
    /// Run everything CI runs: fmt, clippy, unit tests, image builds, scenarios.
    Test(TestArgs),
    /// Work with VM config files (`vmconfig check FILE...`).
    Vmconfig(vmconfig::VmconfigArgs),
    /// Measure hypercall and emulated-MMIO round trips in guest instructions (QEMU -icount).
    Bench(bench::BenchArgs),
    /// Real Linux guests from Debian packages (`guests fetch`, `guests boot-direct`).
    Guests(realguest::GuestsArgs),
    /// Endurance run (not in CI): the chaos guest for a million operations beside a sibling
    /// VM whose heartbeat is checked throughout.
    Soak(soak::SoakArgs),
    /// Coverage-guided fuzzing (libFuzzer) of the parsers, decoders and device models.
    Fuzz(fuzz::FuzzArgs),
    /// Build a FAT32 disk image (MBR, one partition) from a directory (`disk --from DIR --out FILE`).
    Disk(disk::DiskArgs),
}

/// Arguments of `cargo xtask build`.
#[derive(Debug, Args)]
struct BuildArgs {
    /// Target architecture.
    #[arg(long, value_enum)]
    arch: Arch,
    /// Accepted for familiarity: images are always built with the release profile.
    #[arg(long)]
    release: bool,
    /// Build this VM config (and the guest images it names) into the image; repeatable.
    #[arg(long = "vm", value_name = "FILE")]
    vms: Vec<PathBuf>,
}

/// Arguments of `cargo xtask run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// Target architecture.
    #[arg(long, value_enum, default_value_t = Arch::Aarch64)]
    arch: Arch,
    /// The emulator: QEMU (on x86_64 with `-cpu EPYC`: SVM), or Bochs (x86_64 only; VMX).
    /// Default: QEMU.
    #[arg(long, value_enum)]
    emulator: Option<scenario::Emulator>,
    /// Number of emulated CPUs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=qemu::MAX_CPUS as i64))]
    cpus: u32,
    /// GIC version (aarch64 only; default 2).
    #[arg(long)]
    gic: Option<Gic>,
    /// Wait for a debugger on TCP port 1234 before the first instruction (`-s -S`).
    #[arg(long)]
    gdb: bool,
    /// Guest RAM size in QEMU syntax (e.g. 512M, 1G).
    #[arg(long, default_value = "1G")]
    mem: MemSize,
    /// Boot arguments for the hypervisor (QEMU `-append`), e.g. "log=debug".
    #[arg(long, value_name = "ARGS")]
    append: Option<String>,
    /// Build this VM config (and the guest images it names) into the image; repeatable.
    /// Without it, `run` boots the default demo (`demo_vms`); `--no-vms` boots none.
    #[arg(long = "vm", value_name = "FILE")]
    vms: Vec<PathBuf>,
    /// Boot the hypervisor alone, without the default demo VMs.
    #[arg(long, conflicts_with = "vms")]
    no_vms: bool,
    /// Give the hypervisor a disk made from this directory (as `cargo xtask disk`): a
    /// virtio-blk device (virtio-mmio on aarch64 and riscv64, PCI on x86_64).
    /// VM configs in its `/vms` start at boot (docs/vm-config.md); QEMU only.
    #[arg(long, value_name = "DIR")]
    disk: Option<PathBuf>,
    /// The filesystem of `--disk`: `fat` (FAT32) or `ext4` (the hypervisor reads it only).
    #[arg(long, value_enum, default_value_t = disk::DiskFs::Fat, requires = "disk")]
    disk_fs: disk::DiskFs,
}

/// The default demo of `cargo xtask run` on `arch`: Debian's Linux with an interactive
/// busybox shell (`console linux` in the hypervisor's shell) beside two test-guest VMs (on
/// CPUs 1, 2 and 3; on x86_64 the three share CPU 1).
fn demo_vms(arch: Arch) -> Vec<PathBuf> {
    ["linux-shell", "hypercall", "memory"]
        .iter()
        .map(|name| PathBuf::from(format!("configs/vms/{}-{name}.toml", arch.name())))
        .collect()
}

/// Arguments of `cargo xtask test`.
#[derive(Debug, Args)]
struct TestArgs {
    /// Run only the scenarios whose name contains FILTER (skips fmt, clippy and unit tests).
    #[arg(long, value_name = "FILTER")]
    scenarios: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Setup => {
            setup::ensure()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Build(args) => {
            let _always_release = args.release;
            let vms = VmSet::from_cli(&args.vms)?;
            image::build(args.arch, &vms)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let machine = qemu::Machine::new(args.arch, args.cpus, args.gic, args.mem)?;
            // QEMU by default, also on x86_64 (with `-cpu EPYC` below: VMs under SVM boot
            // Linux in seconds, Bochs's VMX takes many minutes).
            let emulator = args.emulator.unwrap_or(scenario::Emulator::Qemu);
            emulator.check(args.arch)?;
            if emulator == scenario::Emulator::Bochs && args.disk.is_some() {
                anyhow::bail!("--disk needs QEMU");
            }
            if emulator == scenario::Emulator::Bochs && args.gdb {
                anyhow::bail!(
                    "--gdb needs QEMU (Debian's Bochs has its own debugger, no gdb stub)"
                );
            }
            let demo = demo_vms(args.arch);
            let chosen = match (args.no_vms, args.vms.is_empty()) {
                (true, _) => &Vec::new(),
                (false, true) => &demo,
                (false, false) => &args.vms,
            };
            let vms = VmSet::from_cli(chosen)?;
            setup::ensure()?;
            let image = image::build(args.arch, &vms)?;
            if emulator == scenario::Emulator::Bochs {
                let config = bochs::Config {
                    cpu_model: bochs::DEFAULT_CPU_MODEL.to_owned(),
                    cpus: machine.cpus,
                    megs: bochs::megs(&machine.mem)?,
                };
                let log = util::target_dir().join("bochs").join("run.bochs.log");
                let prepared =
                    bochs::Prepared::new(config, &image.boot, args.append.as_deref(), None, &log)?;
                return bochs::run_interactive(prepared);
            }
            let mut extra = Vec::new();
            if args.arch == Arch::X86_64 {
                // The SVM CPU model (nested paging) of the `x86_64-svm-*` scenarios.
                extra.extend(["-cpu".to_owned(), "EPYC".to_owned()]);
            }
            if let Some(a) = args.append {
                extra.extend(["-append".to_owned(), a]);
            }
            if let Some(dir) = &args.disk {
                let file = util::target_dir().join("run.disk.img");
                let image = match args.disk_fs {
                    disk::DiskFs::Fat => disk::build(dir, None)?,
                    disk::DiskFs::Ext4 => disk::build_ext4(dir, None)?,
                };
                std::fs::write(&file, image)
                    .with_context(|| format!("could not write {}", file.display()))?;
                extra.extend(scenario::disk_args(
                    scenario::DiskAs::Virtio,
                    args.arch,
                    &file,
                ));
            }
            if args.gdb {
                extra.extend(["-s".to_owned(), "-S".to_owned()]);
                println!(
                    "QEMU waits for a debugger on :1234. Attach with:\n  gdb-multiarch {} -ex 'target remote :1234'",
                    image.elf.display()
                );
            }
            let cmd =
                qemu::emulator_command(&machine, &image.boot, qemu::Console::Interactive, &extra);
            println!("{cmd}");
            println!("(quit QEMU with Ctrl-A X)");
            Err(util::exec(cmd.to_command()))
        }
        Command::Test(args) => ci::test(args.scenarios.as_deref()),
        Command::Vmconfig(args) => vmconfig::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Guests(args) => realguest::run(args),
        Command::Soak(args) => soak::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Disk(args) => disk::run(args).map(|()| ExitCode::SUCCESS),
    }
}
