//! AMD nested paging (NPT): the long-mode 4-level page-table format used as the nested
//! table, 48-bit guest-physical addresses.

use super::PteFormat;
use crate::{HostPhysAddr, MappingFlags};

/// AMD NPT descriptors (AMD APM Vol. 2, "Nested Paging" and "Long-Mode Page Translation"):
/// the ordinary x86-64 4-level format (PML4, PDPT, PD, PT) walked with the guest-physical
/// address. Leaves: 1 GiB (PDPT), 2 MiB (PD) and 4 KiB (PT); none in the PML4.
///
/// | bits | field | leaf | table |
/// |---|---|---|---|
/// | 0 | present | 1 | 1 |
/// | 1 | read/write | from WRITE | 1 (the leaf decides) |
/// | 2 | user/supervisor | 1 (nested walks are user accesses) | 1 |
/// | 3, 4 | PWT, PCD | 1, 1 for [`MappingFlags::DEVICE`] (PAT entry 3: UC), 0, 0 for RAM (WB) | 0 |
/// | 5 | accessed | 1 (set ahead: the walker never writes it) | 1 |
/// | 6 | dirty | 1 on a writable leaf | 0 |
/// | 7 | page size | 1 in a PDPT or PD leaf, 0 in a PT leaf | 0 |
/// | 51:12 | output address | | |
/// | 63 | no-execute | 1 without EXECUTE | 0 |
///
/// Every present entry is readable, so a leaf needs READ: execute-only cannot be expressed
/// ([`encodable`](PteFormat::encodable) refuses it). The memory type of a leaf combines the
/// host PAT (entry 0 WB, entry 3 UC at its power-on value, which axhal keeps) with the
/// guest's own (the VMCB's G_PAT); device leaves are UC whatever the guest's PAT says.
/// Bit 63 needs the host's EFER.NXE, which axhal sets.
#[derive(Debug, Clone, Copy)]
pub struct AmdNpt;

impl AmdNpt {
    /// Bit 0: present.
    pub const PRESENT: u64 = 1 << 0;
    /// Bit 1: writable.
    pub const WRITE: u64 = 1 << 1;
    /// Bit 2: user (required on every level of a nested walk).
    pub const USER: u64 = 1 << 2;
    /// Bit 3: page-level write-through.
    pub const PWT: u64 = 1 << 3;
    /// Bit 4: page-level cache disable.
    pub const PCD: u64 = 1 << 4;
    /// Bit 5: accessed.
    pub const ACCESSED: u64 = 1 << 5;
    /// Bit 6: dirty (leaves).
    pub const DIRTY: u64 = 1 << 6;
    /// Bit 7: this PDPT or PD entry maps a 1 GiB or 2 MiB page.
    pub const LARGE: u64 = 1 << 7;
    /// Bit 63: no-execute.
    pub const NX: u64 = 1 << 63;
    /// Output address bits 51:12.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

    /// The nested CR3 (VMCB N_CR3) for the table whose root is at `root`: the root's
    /// address, PWT and PCD clear (the tables are write-back).
    pub fn ncr3(root: HostPhysAddr) -> u64 {
        debug_assert!(root.is_aligned(0x1000), "NPT root must be 4 KiB-aligned");
        root.as_usize() as u64 & Self::ADDR_MASK
    }

    const LAST: usize = 3;
}

impl PteFormat for AmdNpt {
    const NAME: &'static str = "amd-npt";
    const LEVELS: usize = 4;
    const ROOT_ENTRIES: usize = 512;
    const ROOT_FRAMES: usize = 1;
    const GPA_BITS: u32 = 48;
    const PA_BITS: u32 = 52;
    const ENCODES_DEVICE: bool = true;

    fn leaf_allowed(depth: usize) -> bool {
        // 1 GiB in the PDPT, 2 MiB in the PD, 4 KiB in the PT; PS is reserved in a PML4E.
        (1..=Self::LAST).contains(&depth)
    }

    fn is_valid(pte: u64, _depth: usize) -> bool {
        pte & Self::PRESENT != 0
    }

    fn is_table(pte: u64, depth: usize) -> bool {
        match depth {
            0 => Self::is_valid(pte, depth),
            1 | 2 => Self::is_valid(pte, depth) && pte & Self::LARGE == 0,
            _ => false,
        }
    }

    fn table(pa: HostPhysAddr, _depth: usize) -> u64 {
        (pa.as_usize() as u64 & Self::ADDR_MASK)
            | Self::PRESENT
            | Self::WRITE
            | Self::USER
            | Self::ACCESSED
    }

    fn leaf(pa: HostPhysAddr, flags: MappingFlags, depth: usize) -> u64 {
        let mut d =
            (pa.as_usize() as u64 & Self::ADDR_MASK) | Self::PRESENT | Self::USER | Self::ACCESSED;
        if flags.contains(MappingFlags::WRITE) {
            d |= Self::WRITE | Self::DIRTY;
        }
        if !flags.contains(MappingFlags::EXECUTE) {
            d |= Self::NX;
        }
        if flags.contains(MappingFlags::DEVICE) {
            d |= Self::PCD | Self::PWT;
        }
        if depth < Self::LAST {
            d |= Self::LARGE;
        }
        d
    }

    fn addr(pte: u64) -> HostPhysAddr {
        HostPhysAddr::new((pte & Self::ADDR_MASK) as usize)
    }

    fn flags(pte: u64, _depth: usize) -> MappingFlags {
        let mut f = MappingFlags::READ;
        if pte & Self::WRITE != 0 {
            f |= MappingFlags::WRITE;
        }
        if pte & Self::NX == 0 {
            f |= MappingFlags::EXECUTE;
        }
        if pte & Self::PCD != 0 {
            f |= MappingFlags::DEVICE;
        }
        f
    }

    /// READ is required (every present entry is readable: no execute-only leaves).
    fn encodable(flags: MappingFlags) -> bool {
        flags.contains(MappingFlags::READ)
    }
}
