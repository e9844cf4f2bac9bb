//! Why a description cannot become a device tree.

use alloc::string::String;
use core::fmt;

/// Which device of the description an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRef {
    /// `uarts[i]`.
    Uart(usize),
    /// `extra[i]`.
    Extra(usize),
}

impl fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uart(i) => write!(f, "uarts[{i}]"),
            Self::Extra(i) => write!(f, "extra[{i}]"),
        }
    }
}

/// Which address range of the description an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionRef {
    /// `memory[i]`.
    Memory(usize),
    /// `reserved[i]`.
    Reserved(usize),
    /// The `reg` of `uarts[i]`.
    Uart(usize),
    /// The PLIC's `reg`.
    Plic,
}

impl fmt::Display for RegionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory(i) => write!(f, "memory[{i}]"),
            Self::Reserved(i) => write!(f, "reserved[{i}]"),
            Self::Uart(i) => write!(f, "uarts[{i}]"),
            Self::Plic => f.write_str("plic"),
        }
    }
}

/// A description [`build`](crate::build) refuses, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtbError {
    /// `cpus` is 0.
    NoCpus,
    /// More vCPUs than the tree can describe: [`MAX_CPUS`](crate::MAX_CPUS), or 8 with a
    /// GICv2 (its CPU interface numbers and PPI masks have 8 bits).
    TooManyCpus {
        /// The number asked for.
        cpus: usize,
        /// The most allowed here.
        max: usize,
    },
    /// `memory` is empty.
    NoMemory,
    /// A range whose size is 0 (where that is not allowed) or whose end passes 2^64.
    BadRegion {
        /// The range.
        what: RegionRef,
        /// Its first address.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// Two RAM regions share addresses.
    MemoryOverlap {
        /// Index of the first region in `memory`.
        first: usize,
        /// Index of the second region in `memory`.
        second: usize,
    },
    /// The initrd's start is after its end.
    InitrdReversed {
        /// `initrd.0`.
        start: u64,
        /// `initrd.1`.
        end: u64,
    },
    /// A string that cannot be stored: it contains a NUL byte, or is empty where a value
    /// is needed.
    InvalidString {
        /// Which string (`"bootargs"`, `"riscv isa"`, `"compatible"`, ...).
        what: &'static str,
    },
    /// A RISC-V ISA string Linux would not accept: it must start with `rv64` or `rv32`
    /// followed by the base letters `ima`, in lower case.
    InvalidIsa,
    /// A node or property name the Devicetree specification does not allow (1 to 31
    /// characters; a node name out of `A-Z a-z 0-9 , . _ + -` starting with a letter, a
    /// property name also allowing `?` and `#`).
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// Two nodes under the root would have the same name (same kind at the same address).
    DuplicateNode {
        /// The name both would have.
        name: String,
    },
    /// An extra device's property is given twice, or is one the crate writes itself
    /// (`compatible`, `reg`, `interrupts`, `interrupt-parent`, `phandle`, `linux,phandle`).
    DuplicateProperty {
        /// The device.
        device: usize,
        /// The property's name.
        name: String,
    },
    /// An interrupt number the interrupt controller does not have: on Arm a shared
    /// peripheral interrupt is a GIC INTID in 32..=1019; on RISC-V a PLIC source is in
    /// 1..=`ndev`.
    InvalidIrq {
        /// The device.
        device: DeviceRef,
        /// The number given.
        irq: u32,
    },
    /// A RISC-V device has an interrupt but the description has no PLIC.
    NoInterruptController {
        /// The device.
        device: DeviceRef,
    },
    /// An Arm timer PPI number out of 0..=15.
    InvalidTimerPpi {
        /// The number given.
        ppi: u32,
    },
    /// More than one Arm vCPU but no PSCI: the secondary vCPUs could never be started.
    SmpWithoutPsci {
        /// The number of vCPUs.
        cpus: usize,
    },
    /// The GICv3 redistributor region is smaller than 128 KiB per vCPU.
    GicRedistributorTooSmall {
        /// `gicr_size`.
        size: u64,
        /// `cpus * 0x20000`.
        needed: u64,
    },
    /// A PLIC with `ndev` out of 1..=1023.
    InvalidPlicSources {
        /// The number given.
        ndev: u32,
    },
    /// The blob would be larger than [`MAX_DTB_SIZE`](crate::MAX_DTB_SIZE).
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A bug in this crate: it used its own writer wrongly.
    Internal(&'static str),
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCpus => f.write_str("the VM has no vCPU"),
            Self::TooManyCpus { cpus, max } => {
                write!(f, "{cpus} vCPUs, at most {max} can be described")
            }
            Self::NoMemory => f.write_str("the VM has no memory region"),
            Self::BadRegion { what, base, size } => write!(
                f,
                "{what}: range {base:#x} + {size:#x} is empty or passes the end of the address space"
            ),
            Self::MemoryOverlap { first, second } => {
                write!(f, "memory[{first}] and memory[{second}] overlap")
            }
            Self::InitrdReversed { start, end } => {
                write!(f, "initrd start {start:#x} is after its end {end:#x}")
            }
            Self::InvalidString { what } => write!(f, "{what}: empty or contains a NUL byte"),
            Self::InvalidIsa => f.write_str(
                "riscv isa: must be lower case and start with rv64ima or rv32ima (e.g. rv64imafdc)",
            ),
            Self::InvalidName { name } => write!(f, "{name:?} is not a valid devicetree name"),
            Self::DuplicateNode { name } => write!(f, "two nodes named {name:?}"),
            Self::DuplicateProperty { device, name } => write!(
                f,
                "extra[{device}]: property {name:?} given twice or written by axdtb itself"
            ),
            Self::InvalidIrq { device, irq } => {
                write!(f, "{device}: no interrupt {irq} on this interrupt controller")
            }
            Self::NoInterruptController { device } => {
                write!(f, "{device}: has an interrupt but the VM has no PLIC")
            }
            Self::InvalidTimerPpi { ppi } => write!(f, "timer PPI {ppi} is not in 0..=15"),
            Self::SmpWithoutPsci { cpus } => {
                write!(f, "{cpus} vCPUs need PSCI to start the secondary ones")
            }
            Self::GicRedistributorTooSmall { size, needed } => write!(
                f,
                "GICv3 redistributor region of {size:#x} bytes, {needed:#x} needed (128 KiB per vCPU)"
            ),
            Self::InvalidPlicSources { ndev } => {
                write!(f, "PLIC with {ndev} sources, must be 1..=1023")
            }
            Self::TooLarge { size, max } => {
                write!(f, "device tree of {size} bytes, more than {max}")
            }
            Self::Internal(what) => write!(f, "internal error in axdtb: {what}"),
        }
    }
}

impl core::error::Error for DtbError {}
