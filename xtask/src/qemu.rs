//! The one place that turns "which machine" into an emulator command line. Used by
//! `cargo xtask run` and by the scenario runner alike.

use std::fmt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::arch::{Arch, Gic, MemSize};

/// The largest CPU count accepted (QEMU `virt` with GICv2 stops at 8).
pub const MAX_CPUS: u32 = 8;

/// The emulated machine: architecture, CPU count, interrupt controller and RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// Architecture (selects the QEMU binary and board options).
    pub arch: Arch,
    /// Number of CPUs (`-smp`).
    pub cpus: u32,
    /// GIC version; `Some` exactly when `arch` is aarch64.
    pub gic: Option<Gic>,
    /// RAM size (`-m`).
    pub mem: MemSize,
}

impl Machine {
    /// Checks the combination and fills in defaults (GICv2 on aarch64).
    pub fn new(arch: Arch, cpus: u32, gic: Option<Gic>, mem: MemSize) -> Result<Self> {
        arch.ensure_supported()?;
        if !(1..=MAX_CPUS).contains(&cpus) {
            bail!("cpus must be between 1 and {MAX_CPUS}, not {cpus}");
        }
        let gic = match arch {
            Arch::Aarch64 => Some(gic.unwrap_or(Gic::V2)),
            _ => {
                if let Some(gic) = gic {
                    bail!("a GIC version ({gic}) applies only to aarch64, not {arch}");
                }
                None
            }
        };
        Ok(Machine {
            arch,
            cpus,
            gic,
            mem,
        })
    }
}

/// How the emulator's console is wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// A person at a terminal: serial and QEMU monitor multiplexed on stdio (Ctrl-A X quits).
    Interactive,
    /// Captured by the scenario runner: serial on stdout, no monitor.
    Captured,
}

/// An emulator program and its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmulatorCommand {
    /// The emulator binary, e.g. `qemu-system-aarch64`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl EmulatorCommand {
    /// A `std::process::Command` for this command line.
    pub fn to_command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        cmd
    }
}

impl fmt::Display for EmulatorCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

/// Builds the emulator command that boots `image` on `machine`, followed by `extra` args.
pub fn emulator_command(
    machine: &Machine,
    image: &Path,
    console: Console,
    extra: &[String],
) -> EmulatorCommand {
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| (*s).to_owned()));
    let program = match machine.arch {
        Arch::Aarch64 => {
            let gic = machine.gic.unwrap_or(Gic::V2).number();
            push(&["-M", &format!("virt,virtualization=on,gic-version={gic}")]);
            push(&["-cpu", "cortex-a72"]);
            "qemu-system-aarch64"
        }
        Arch::Riscv64 => {
            push(&["-M", "virt", "-cpu", "rv64"]);
            "qemu-system-riscv64"
        }
        // TCG: no VMX, but SVM; a scenario names another CPU with `-cpu` in its extra
        // arguments (the last `-cpu` wins). The hypervisor is a multiboot kernel.
        Arch::X86_64 => {
            push(&["-M", "q35", "-cpu", "max"]);
            "qemu-system-x86_64"
        }
    };
    push(&["-smp", &machine.cpus.to_string()]);
    push(&["-m", machine.mem.as_str()]);
    push(&["-nographic"]);
    if machine.arch == Arch::X86_64 {
        // A triple fault stops QEMU (with status 0, as power off) instead of rebooting.
        push(&["-no-reboot"]);
    }
    if console == Console::Captured {
        push(&["-monitor", "none", "-serial", "stdio"]);
    }
    if machine.arch == Arch::Riscv64 {
        push(&["-bios", "default"]);
    }
    push(&["-kernel", &image.to_string_lossy()]);
    args.extend(extra.iter().cloned());
    EmulatorCommand {
        program: program.to_owned(),
        args,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> MemSize {
        MemSize::default()
    }

    #[test]
    fn aarch64_interactive() {
        let m = Machine::new(Arch::Aarch64, 4, Some(Gic::V3), mem()).unwrap();
        let cmd = emulator_command(&m, Path::new("a.bin"), Console::Interactive, &[]);
        assert_eq!(
            cmd.to_string(),
            "qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu cortex-a72 \
             -smp 4 -m 1G -nographic -kernel a.bin"
        );
    }

    #[test]
    fn riscv64_captured_with_extra() {
        let m = Machine::new(Arch::Riscv64, 2, None, "512M".parse().unwrap()).unwrap();
        let extra = ["-s".to_owned(), "-S".to_owned()];
        let cmd = emulator_command(&m, Path::new("hv.elf"), Console::Captured, &extra);
        assert_eq!(
            cmd.to_string(),
            "qemu-system-riscv64 -M virt -cpu rv64 -smp 2 -m 512M -nographic -monitor none \
             -serial stdio -bios default -kernel hv.elf -s -S"
        );
    }

    #[test]
    fn defaults_and_refusals() {
        let m = Machine::new(Arch::Aarch64, 1, None, mem()).unwrap();
        assert_eq!(m.gic, Some(Gic::V2));
        assert!(Machine::new(Arch::Riscv64, 1, Some(Gic::V2), mem()).is_err());
        assert!(Machine::new(Arch::Aarch64, 0, None, mem()).is_err());
        assert!(Machine::new(Arch::Aarch64, MAX_CPUS + 1, None, mem()).is_err());
        assert!(Machine::new(Arch::X86_64, 1, Some(Gic::V2), mem()).is_err());
    }

    #[test]
    fn x86_64_captured() {
        let m = Machine::new(Arch::X86_64, 4, None, "512M".parse().unwrap()).unwrap();
        let extra = ["-cpu".to_owned(), "qemu64,-svm".to_owned()];
        let cmd = emulator_command(&m, Path::new("axvisor"), Console::Captured, &extra);
        assert_eq!(
            cmd.to_string(),
            "qemu-system-x86_64 -M q35 -cpu max -smp 4 -m 512M -nographic -no-reboot \
             -monitor none -serial stdio -kernel axvisor -cpu qemu64,-svm"
        );
    }
}
