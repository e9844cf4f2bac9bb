//! Where everything of an x86 Linux VM goes, decided from its VM config, the kernel, the
//! command line and the initrd's size: the [`BootPlan`] the loader and the vCPU follow.
//!
//! | guest-physical | what |
//! |---|---|
//! | 0x1000..0x8000 | the vCPU's boot GDT and page tables (`docs/x86.md`, guest entry contract) |
//! | [`ZERO_PAGE_ADDR`] (0x10000) | the zero page; `%rsi` at the 64-bit entry |
//! | [`CMDLINE_ADDR`] (0x20000) | the command line, NUL-terminated |
//! | 0x9FC00..0xA0000 | reserved (EBDA) |
//! | [`ACPI_BASE`] (0xE0000) | the ACPI tables, RSDP first, in the reserved BIOS area |
//! | `pref_address` (16 MiB for Debian) | the protected-mode kernel; entry at +0x200; `init_size` bytes from there are the kernel's until it has decompressed itself |
//! | `kernel.initrd.load_addr`, or the top of RAM below `initrd_addr_max` | the initrd |

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use axvmconfig::{MapKind, MemKind, VmConfig};

use crate::acpi::{self, AcpiDesc, AcpiError, AcpiTables};
use crate::bzimage::{BzImage, BzImageError};
use crate::e820::{self, E820Error, E820Map};
use crate::zeropage::{self, ZeroPageParams, ZERO_PAGE_SIZE};

/// Where the zero page goes: clear of the boot GDT and page tables the x86 vCPU writes at
/// 0x1000..0x8000.
pub const ZERO_PAGE_ADDR: u64 = 0x1_0000;
/// Where the command line goes.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// The end of the room for the command line (the EBDA).
pub const CMDLINE_END: u64 = e820::EBDA_START;
/// Where the ACPI tables go: the start of the BIOS area, where Linux also scans for the
/// RSDP when the zero page gives none.
pub const ACPI_BASE: u64 = 0xE_0000;
/// Pages are 4 KiB.
const PAGE: u64 = 0x1000;

/// Why a Linux VM cannot be set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The kernel file is not a bzImage for the 64-bit boot protocol.
    Kernel(BzImageError),
    /// The memory map cannot be built from the VM's memory regions.
    Memory(E820Error),
    /// The ACPI tables cannot be built.
    Acpi(AcpiError),
    /// The command line is longer than the kernel takes (`cmdline_size`).
    CmdlineTooLong {
        /// Its length in bytes.
        len: usize,
        /// The kernel's limit, without the terminating NUL.
        max: usize,
    },
    /// The kernel's load address plus `init_size` is not inside the VM's RAM.
    KernelDoesNotFit(Range<u64>),
    /// No RAM above the kernel and below `initrd_addr_max` holds the initrd.
    InitrdDoesNotFit {
        /// The initrd's size.
        size: u64,
        /// The highest address it may end at (exclusive).
        limit: u64,
    },
    /// The initrd cannot go where the VM config puts it (`kernel.initrd.load_addr`).
    InitrdMisplaced {
        /// Where the config puts it.
        range: Range<u64>,
        /// Why not there.
        why: InitrdProblem,
    },
}

/// Why the initrd cannot go at the address the VM config gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitrdProblem {
    /// Not all of it is usable RAM in the e820 map.
    NotRam,
    /// It starts below 1 MiB (the PC's low memory).
    BelowOneMiB,
    /// It ends above what the kernel takes (`initrd_addr_max` + 1, and 4 GiB unless the
    /// kernel takes an initrd above it).
    AboveLimit(u64),
    /// It overlaps what the kernel owns until it has decompressed itself.
    OverlapsKernel(Range<u64>),
}

impl fmt::Display for InitrdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRam => write!(f, "not all of it is RAM"),
            Self::BelowOneMiB => write!(f, "it starts below 1 MiB"),
            Self::AboveLimit(limit) => write!(f, "the kernel takes an initrd only below {limit:#x}"),
            Self::OverlapsKernel(k) => write!(
                f,
                "the kernel owns {:#x}..{:#x} until it has decompressed itself (load address + init_size)",
                k.start, k.end
            ),
        }
    }
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kernel(e) => write!(f, "kernel: {e}"),
            Self::Memory(e) => write!(f, "memory: {e}"),
            Self::Acpi(e) => write!(f, "ACPI tables: {e}"),
            Self::CmdlineTooLong { len, max } => write!(
                f,
                "the command line is {len} bytes, the kernel takes at most {max}"
            ),
            Self::KernelDoesNotFit(r) => write!(
                f,
                "the kernel needs RAM at {:#x}..{:#x} (load address + init_size), which the VM does not have",
                r.start, r.end
            ),
            Self::InitrdDoesNotFit { size, limit } => write!(
                f,
                "no RAM above the kernel and below {limit:#x} holds the {size}-byte initrd"
            ),
            Self::InitrdMisplaced { range, why } => write!(
                f,
                "the initrd cannot go at {:#x}..{:#x}: {why}",
                range.start, range.end
            ),
        }
    }
}

impl From<BzImageError> for BootError {
    fn from(e: BzImageError) -> Self {
        Self::Kernel(e)
    }
}

impl From<E820Error> for BootError {
    fn from(e: E820Error) -> Self {
        Self::Memory(e)
    }
}

impl From<AcpiError> for BootError {
    fn from(e: AcpiError) -> Self {
        Self::Acpi(e)
    }
}

/// Everything the loader copies into the VM, where, and how the boot vCPU starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootPlan {
    /// The zero page's bytes, for [`ZERO_PAGE_ADDR`].
    pub zero_page: Vec<u8>,
    /// The command line with its NUL, for [`CMDLINE_ADDR`].
    pub cmdline: Vec<u8>,
    /// Where the protected-mode kernel ([`BzImage::kernel`]) is copied.
    pub kernel_addr: u64,
    /// What the kernel owns until it has decompressed itself (load address + `init_size`).
    pub kernel_footprint: Range<u64>,
    /// Where the initrd is copied, if there is one.
    pub initrd: Option<Range<u64>>,
    /// The ACPI tables (their bytes and base).
    pub acpi: AcpiTables,
    /// The memory map in the zero page.
    pub e820: E820Map,
    /// The 64-bit entry point: `kernel_addr + 0x200`.
    pub entry: u64,
    /// The value of `%rsi` at the entry: the zero page's address.
    pub rsi: u64,
}

impl BootPlan {
    /// Every range the plan writes, with what it is, by address (for checks and logs).
    pub fn regions(&self) -> Vec<(&'static str, Range<u64>)> {
        let mut v = alloc::vec![
            (
                "zero page",
                ZERO_PAGE_ADDR..ZERO_PAGE_ADDR + ZERO_PAGE_SIZE as u64
            ),
            (
                "command line",
                CMDLINE_ADDR..CMDLINE_ADDR + self.cmdline.len() as u64
            ),
            ("ACPI tables", self.acpi.range()),
            ("kernel", self.kernel_footprint.clone()),
        ];
        if let Some(r) = &self.initrd {
            v.push(("initrd", r.clone()));
        }
        v.sort_by_key(|(_, r)| r.start);
        v
    }
}

/// The RAM and ROM ranges of `config` (regions with `map = "reserved"` are not backed and
/// not listed).
fn memory_ranges(config: &VmConfig) -> (Vec<Range<u64>>, Vec<Range<u64>>) {
    let mut ram = Vec::new();
    let mut rom = Vec::new();
    for m in &config.memory {
        if m.map == MapKind::Reserved {
            continue;
        }
        let r = m.gpa..m.end().unwrap_or(u64::MAX);
        match m.kind {
            MemKind::Ram => ram.push(r),
            MemKind::Rom => rom.push(r),
        }
    }
    (ram, rom)
}

/// Plans the boot of `image` in the VM of `config` with `cmdline` and an initrd of
/// `initrd_size` bytes (if any): checks that everything fits, builds the ACPI tables, the
/// e820 map and the zero page. The initrd goes where `config` puts it
/// (`kernel.initrd.load_addr`, checked) or, when the config names none, as high as it
/// fits.
pub fn plan(
    config: &VmConfig,
    image: &BzImage<'_>,
    cmdline: &str,
    initrd_size: Option<u64>,
) -> Result<BootPlan, BootError> {
    let max = image.cmdline_size as usize;
    let room = (CMDLINE_END - CMDLINE_ADDR) as usize - 1;
    if cmdline.len() > max.min(room) {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max: max.min(room),
        });
    }
    let acpi = acpi::build(&AcpiDesc::from_config(config)?, ACPI_BASE)?;
    let (ram, rom) = memory_ranges(config);
    // The tables are in the BIOS area, reserved already; nothing to mark.
    let e820 = E820Map::build(&ram, &rom, &[])?;
    let footprint = image.footprint();
    if !e820.is_ram(&footprint) {
        return Err(BootError::KernelDoesNotFit(footprint));
    }
    let initrd = match (initrd_size, &config.kernel.initrd) {
        (None | Some(0), _) => None,
        (Some(size), Some(at)) => Some(check_initrd(&e820, image, &footprint, at.load_addr, size)?),
        (Some(size), None) => Some(place_initrd(&e820, image, &footprint, size)?),
    };
    let mut line = String::from(cmdline).into_bytes();
    line.push(0);
    let zero_page = zeropage::build(
        image,
        &ZeroPageParams {
            cmdline_addr: CMDLINE_ADDR,
            initrd: initrd.as_ref().map(|r| (r.start, r.end - r.start)),
            e820: &e820,
            rsdp_addr: acpi.rsdp_address(),
        },
    );
    Ok(BootPlan {
        zero_page,
        cmdline: line,
        kernel_addr: image.load_address(),
        kernel_footprint: footprint,
        initrd,
        acpi,
        e820,
        entry: image.entry_64(),
        rsi: ZERO_PAGE_ADDR,
    })
}

/// The highest address an initrd may end at (exclusive): `initrd_addr_max` + 1, and 4 GiB
/// unless the kernel takes an initrd above it.
fn initrd_limit(image: &BzImage<'_>) -> u64 {
    let limit = u64::from(image.initrd_addr_max) + 1;
    if image.can_be_above_4g() {
        limit
    } else {
        limit.min(1 << 32)
    }
}

/// Checks `size` bytes of initrd at `addr` (the VM config's `kernel.initrd.load_addr`):
/// RAM, at or above 1 MiB, below [`initrd_limit`], clear of the kernel.
fn check_initrd(
    e820: &E820Map,
    image: &BzImage<'_>,
    kernel: &Range<u64>,
    addr: u64,
    size: u64,
) -> Result<Range<u64>, BootError> {
    let range = addr..addr.saturating_add(size);
    let limit = initrd_limit(image);
    let why = if addr < e820::LOW_MEMORY_END {
        InitrdProblem::BelowOneMiB
    } else if range.end > limit {
        InitrdProblem::AboveLimit(limit)
    } else if range.start < kernel.end && kernel.start < range.end {
        InitrdProblem::OverlapsKernel(kernel.clone())
    } else if !e820.is_ram(&range) {
        InitrdProblem::NotRam
    } else {
        return Ok(range);
    };
    Err(BootError::InitrdMisplaced { range, why })
}

/// The highest page-aligned place for `size` bytes in one RAM range of `e820`, above 1 MiB,
/// clear of the kernel's footprint, ending at or below `initrd_addr_max + 1` (and 4 GiB
/// unless the kernel takes an initrd above it).
fn place_initrd(
    e820: &E820Map,
    image: &BzImage<'_>,
    kernel: &Range<u64>,
    size: u64,
) -> Result<Range<u64>, BootError> {
    let limit = initrd_limit(image);
    let too_big = BootError::InitrdDoesNotFit { size, limit };
    let len = size.checked_next_multiple_of(PAGE).ok_or(too_big.clone())?;
    let mut best: Option<Range<u64>> = None;
    for e in e820
        .entries()
        .iter()
        .filter(|e| e.kind == e820::E820Kind::Ram)
    {
        let floor = e.addr.max(e820::LOW_MEMORY_END);
        // As high as possible; below the kernel's footprint if that would overlap it.
        let mut top = e.end().min(limit) & !(PAGE - 1);
        if top > kernel.start && top.saturating_sub(len) < kernel.end {
            top = kernel.start & !(PAGE - 1);
        }
        let Some(start) = top.checked_sub(len) else {
            continue;
        };
        if start >= floor && best.as_ref().is_none_or(|b| start > b.start) {
            best = Some(start..start + size);
        }
    }
    best.ok_or(too_big)
}
