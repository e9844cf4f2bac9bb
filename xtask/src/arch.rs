//! Architectures, interrupt-controller versions and memory sizes: the small value types
//! shared by the command line and the scenario files.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use serde::Deserialize;

/// A target architecture of the hypervisor.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// AArch64 at EL2, QEMU `virt` with `virtualization=on`.
    #[value(name = "aarch64")]
    Aarch64,
    /// RISC-V 64 with the H extension, QEMU `virt` under OpenSBI.
    #[value(name = "riscv64")]
    Riscv64,
    /// x86_64 with VT-x / AMD-V: a PC (QEMU q35 or Bochs) with a multiboot loader.
    #[value(name = "x86_64")]
    X86_64,
}

impl Arch {
    /// The architectures the hypervisor builds for: `cargo xtask test` builds and boots
    /// each, and `build`, `run` and the scenarios accept them.
    pub const ALL: [Arch; 3] = [Arch::Aarch64, Arch::Riscv64, Arch::X86_64];

    /// The architectures whose VMs run under QEMU: what `cargo xtask bench` and `soak`
    /// cover by default (x86_64's VMs need Bochs' VMX, and have neither yet). `guests
    /// fetch` covers all three.
    pub const SUPPORTED: [Arch; 2] = [Arch::Aarch64, Arch::Riscv64];

    /// The architecture's name as written on the command line and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Riscv64 => "riscv64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// Fails with a clear message for architectures that are not built yet.
    pub fn ensure_supported(self) -> Result<()> {
        if !Self::ALL.contains(&self) {
            bail!("architecture {self} is not yet supported (supported: aarch64, riscv64, x86_64)");
        }
        Ok(())
    }

    /// The Rust target triple the hypervisor is built for.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-none-softfloat",
            Arch::Riscv64 => "riscv64gc-unknown-none-elf",
            Arch::X86_64 => "x86_64-unknown-none",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An Arm Generic Interrupt Controller version (aarch64 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub enum Gic {
    /// GICv2 (memory-mapped CPU interface).
    V2,
    /// GICv3 (system-register CPU interface, redistributors).
    V3,
}

impl Gic {
    /// The version number as QEMU's `gic-version=` expects it.
    pub fn number(self) -> u8 {
        match self {
            Gic::V2 => 2,
            Gic::V3 => 3,
        }
    }
}

impl TryFrom<i64> for Gic {
    type Error = String;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        match value {
            2 => Ok(Gic::V2),
            3 => Ok(Gic::V3),
            other => Err(format!("GIC version must be 2 or 3, not {other}")),
        }
    }
}

impl FromStr for Gic {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n: i64 = s
            .trim()
            .parse()
            .map_err(|_| format!("GIC version must be 2 or 3, not {s:?}"))?;
        Gic::try_from(n)
    }
}

impl fmt::Display for Gic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GICv{}", self.number())
    }
}

/// A RAM size in QEMU's `-m` syntax: a positive number with an optional K/M/G/T suffix.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct MemSize(String);

impl MemSize {
    /// The size as passed to QEMU's `-m`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MemSize {
    fn default() -> Self {
        MemSize("1G".to_owned())
    }
}

impl TryFrom<String> for MemSize {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let digits = s.trim_end_matches(|c: char| "KMGTkmgt".contains(c));
        let suffix_len = s.len() - digits.len();
        let valid = suffix_len <= 1
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.bytes().any(|b| b != b'0');
        if valid {
            Ok(MemSize(s))
        } else {
            Err(format!(
                "memory size {s:?} is not a positive number with an optional K/M/G/T suffix (e.g. \"512M\", \"1G\")"
            ))
        }
    }
}

impl FromStr for MemSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MemSize::try_from(s.to_owned())
    }
}

impl fmt::Display for MemSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_sizes() {
        for ok in ["1G", "512M", "2048", "4g", "64K"] {
            assert!(ok.parse::<MemSize>().is_ok(), "{ok}");
        }
        for bad in ["", "G", "0G", "1GB", "1.5G", "-1G", "1 G"] {
            assert!(bad.parse::<MemSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn gic_versions() {
        assert_eq!("2".parse::<Gic>(), Ok(Gic::V2));
        assert_eq!("3".parse::<Gic>(), Ok(Gic::V3));
        assert!("4".parse::<Gic>().is_err());
        assert!("v2".parse::<Gic>().is_err());
    }

    #[test]
    fn every_architecture_is_supported() {
        for arch in [Arch::Aarch64, Arch::Riscv64, Arch::X86_64] {
            assert!(arch.ensure_supported().is_ok(), "{arch}");
        }
        assert!(Arch::SUPPORTED.iter().all(|a| Arch::ALL.contains(a)));
    }
}
