//! Guest device trees generated from a VM description (CPUs, memory, interrupt controller,
//! timer, UARTs, chosen).
//!
//! [`build`] turns a [`GuestDtb`] — a plain description that the caller (axvm) fills from
//! the VM config and the host platform — into a flattened device tree blob (DTB, format
//! version 17) that an unmodified Linux kernel boots with, on aarch64 and on riscv64. The
//! crate has its own small DTB writer (no `unsafe`, no dependencies) and does not depend on
//! `axvmconfig`.
//!
//! What the tree contains, and which Linux driver needs each property, is written down in
//! `docs/guest-dtb.md`.
//!
//! ```
//! use axdtb::{build, ArchDesc, ArmTimerPpis, Gic, GuestDtb, PsciMethod, Uart, UartKind};
//!
//! let dtb = build(&GuestDtb {
//!     arch: ArchDesc::Arm {
//!         gic: Gic::V2 { gicd: 0x0800_0000, gicc: 0x0801_0000 },
//!         timer_ppis: ArmTimerPpis::default(),
//!         psci: Some(PsciMethod::Hvc),
//!     },
//!     cpus: 2,
//!     memory: &[(0x4000_0000, 0x1000_0000)],
//!     reserved: &[],
//!     bootargs: Some("console=ttyAMA0 earlycon"),
//!     initrd: None,
//!     uarts: &[Uart { kind: UartKind::Pl011, base: 0x0900_0000, size: 0x1000, irq: Some(33) }],
//!     extra: &[],
//! })
//! .unwrap();
//! assert_eq!(&dtb[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
//! ```
//!
//! The same on riscv64, with a PLIC and a 16550 on PLIC source 10:
//!
//! ```
//! use axdtb::{build, ArchDesc, GuestDtb, Plic, Uart, UartKind};
//!
//! let dtb = build(&GuestDtb {
//!     arch: ArchDesc::Riscv {
//!         isa: "rv64imafdc_zicsr_zifencei",
//!         timebase_hz: 10_000_000,
//!         mmu: "riscv,sv39",
//!         plic: Some(Plic { base: 0x0c00_0000, size: 0x60_0000, ndev: 95 }),
//!     },
//!     cpus: 4,
//!     memory: &[(0x8000_0000, 0x1000_0000)],
//!     reserved: &[],
//!     bootargs: Some("console=ttyS0 earlycon"),
//!     initrd: Some((0x8800_0000, 0x8840_0000)),
//!     uarts: &[Uart { kind: UartKind::Ns16550, base: 0x1000_0000, size: 0x100, irq: Some(10) }],
//!     extra: &[],
//! })
//! .unwrap();
//! assert!(dtb.len() < 4096);
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

mod build;
mod error;
mod writer;

#[cfg(test)]
mod tests;

pub use build::build;
pub use error::{DeviceRef, DtbError, RegionRef};

/// The most vCPUs a tree can describe (an Arm vCPU's `reg` is its MPIDR Aff0 field, 8 bits).
pub const MAX_CPUS: usize = 256;

/// The largest blob [`build`] returns: 2 MiB, the limit of both the arm64 and the riscv64
/// Linux boot protocols. Real descriptions stay far below it (see `docs/guest-dtb.md`).
pub const MAX_DTB_SIZE: usize = 2 << 20;

/// Frequency of the fixed `apb-pclk` clock given to PL011 UARTs (24 MHz).
pub const PL011_CLOCK_HZ: u32 = 24_000_000;

/// `clock-frequency` of 16550 UARTs (3.6864 MHz, the classic 16550 crystal).
pub const NS16550_CLOCK_HZ: u32 = 3_686_400;

/// Everything the guest's device tree describes.
#[derive(Debug, Clone, Copy)]
pub struct GuestDtb<'a> {
    /// The architecture and what only it has (interrupt controller, timer, CPU details).
    pub arch: ArchDesc<'a>,
    /// Number of vCPUs, 1 to [`MAX_CPUS`]. vCPU `i` is `cpu@i`: on Arm its `reg` (MPIDR
    /// Aff0) is `i`, on RISC-V its hart id is `i`. vCPU 0 is the boot CPU.
    pub cpus: usize,
    /// Guest RAM as `(base, size)` regions, one `memory@base` node each. At least one;
    /// none empty, none overlapping.
    pub memory: &'a [(u64, u64)],
    /// `(address, size)` ranges written to the DTB's memory reservation block: RAM that
    /// Linux must not allocate (for example a page shared with the hypervisor).
    pub reserved: &'a [(u64, u64)],
    /// Kernel command line (`/chosen/bootargs`).
    pub bootargs: Option<&'a str>,
    /// The initrd as `(start, end)` guest-physical addresses, end exclusive
    /// (`/chosen/linux,initrd-start` and `linux,initrd-end`).
    pub initrd: Option<(u64, u64)>,
    /// The UARTs; the first one is `/chosen/stdout-path`, `uarts[i]` is alias `serial<i>`.
    pub uarts: &'a [Uart],
    /// Further devices, typically passed through from the host.
    pub extra: &'a [ExtraDevice<'a>],
}

/// What one architecture's tree needs and the other's cannot have.
#[derive(Debug, Clone, Copy)]
pub enum ArchDesc<'a> {
    /// aarch64: a GIC, the architected timer, PSCI.
    Arm {
        /// The interrupt controller the guest sees.
        gic: Gic,
        /// The timer's private peripheral interrupts.
        timer_ppis: ArmTimerPpis,
        /// How the guest calls PSCI (needed to start secondary vCPUs); `None` only for a
        /// single vCPU.
        psci: Option<PsciMethod>,
    },
    /// riscv64: per-hart interrupt controllers, optionally a PLIC.
    Riscv {
        /// `riscv,isa` of every hart, e.g. `"rv64imafdc_zicsr_zifencei"`; lower case,
        /// starting with `rv64ima` or `rv32ima`.
        isa: &'a str,
        /// `/cpus/timebase-frequency`: the rate of the `time` CSR in Hz.
        timebase_hz: u32,
        /// `mmu-type` of every hart: `"riscv,sv39"`, `"riscv,sv48"`, `"riscv,sv57"` or
        /// `"riscv,none"`; Linux uses no larger page-table format than this.
        mmu: &'a str,
        /// The platform-level interrupt controller, if the VM has one.
        plic: Option<Plic>,
    },
}

/// The Arm generic interrupt controller the guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gic {
    /// GICv2 (`arm,cortex-a15-gic`): a 4 KiB distributor and an 8 KiB CPU interface.
    V2 {
        /// Distributor base.
        gicd: u64,
        /// CPU interface base.
        gicc: u64,
    },
    /// GICv3 (`arm,gic-v3`): a 64 KiB distributor and one redistributor region.
    V3 {
        /// Distributor base.
        gicd: u64,
        /// Redistributor region base.
        gicr: u64,
        /// Redistributor region size: at least 128 KiB (two 64 KiB frames) per vCPU.
        gicr_size: u64,
    },
}

/// The architected timer's interrupts, as PPI numbers (GIC INTID minus 16), in the order
/// of the `arm,armv8-timer` binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArmTimerPpis {
    /// Secure EL1 physical timer (default 13, INTID 29).
    pub secure_phys: u32,
    /// Non-secure EL1 physical timer (default 14, INTID 30).
    pub nonsecure_phys: u32,
    /// Virtual timer (default 11, INTID 27): the one a guest kernel at EL1 uses.
    pub virt: u32,
    /// EL2 (hypervisor) physical timer (default 10, INTID 26).
    pub hyp: u32,
}

impl Default for ArmTimerPpis {
    fn default() -> Self {
        Self {
            secure_phys: 13,
            nonsecure_phys: 14,
            virt: 11,
            hyp: 10,
        }
    }
}

/// The PSCI conduit: the instruction the guest uses to call PSCI functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciMethod {
    /// `hvc`: handled by the hypervisor (the usual choice for a guest).
    Hvc,
    /// `smc`: trapped by the hypervisor (HCR_EL2.TSC) or handled by firmware.
    Smc,
}

/// A RISC-V platform-level interrupt controller with one S-mode context per hart: context
/// `c` is hart `c`'s supervisor external interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plic {
    /// Base address.
    pub base: u64,
    /// Size of the register window (not 0).
    pub size: u64,
    /// Number of interrupt sources (`riscv,ndev`): sources are 1..=`ndev`, at most 1023.
    pub ndev: u32,
}

/// One UART.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uart {
    /// The register interface.
    pub kind: UartKind,
    /// Base address.
    pub base: u64,
    /// Size of the register window (not 0).
    pub size: u64,
    /// Its interrupt, if wired: on Arm a shared peripheral interrupt given as its GIC INTID
    /// (32..=1019), on RISC-V a PLIC source (1..=`ndev`). Without one Linux's 8250 driver
    /// polls; Linux's PL011 driver needs one to open the port for user space (kernel
    /// console output still works).
    pub irq: Option<u32>,
}

/// The register interface of a [`Uart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UartKind {
    /// Arm PL011 (`arm,pl011`, `arm,primecell`; Linux's `ttyAMA<n>`).
    Pl011,
    /// 16550A with byte-spaced registers (`ns16550a`; Linux's `ttyS<n>`).
    Ns16550,
}

/// A device described as given (typically passed through from the host).
#[derive(Debug, Clone, Copy)]
pub struct ExtraDevice<'a> {
    /// Node name without the unit address, e.g. `"ethernet"`; the node is
    /// `name@<first reg base>` (or just `name` when `reg` is empty).
    pub name: &'a str,
    /// `compatible`, most specific first; at least one entry.
    pub compatible: &'a [&'a str],
    /// `reg` as `(base, size)` pairs (two cells each).
    pub reg: &'a [(u64, u64)],
    /// Interrupts: on Arm shared peripheral interrupts as GIC INTIDs (32..=1019), written
    /// as level-high; on RISC-V PLIC sources.
    pub interrupts: &'a [u32],
    /// Further properties, written after the ones above.
    pub props: &'a [Property<'a>],
}

/// A property of an [`ExtraDevice`].
#[derive(Debug, Clone, Copy)]
pub struct Property<'a> {
    /// Its name (1 to 31 characters out of `A-Z a-z 0-9 , . _ + ? # -`).
    pub name: &'a str,
    /// Its value.
    pub value: PropValue<'a>,
}

/// The value of a [`Property`].
#[derive(Debug, Clone, Copy)]
pub enum PropValue<'a> {
    /// No value: a boolean property, true by being there (e.g. `dma-coherent`).
    Empty,
    /// One 32-bit cell.
    U32(u32),
    /// One 64-bit number (two cells).
    U64(u64),
    /// A list of 32-bit cells.
    Cells(&'a [u32]),
    /// One string.
    Str(&'a str),
    /// A list of strings.
    Strs(&'a [&'a str]),
    /// Raw bytes.
    Bytes(&'a [u8]),
}
