//! Intel EPT (extended page tables), 4 levels, 48-bit guest-physical addresses.

use super::PteFormat;
use crate::{HostPhysAddr, MappingFlags};

/// Intel EPT descriptors (Intel SDM Vol. 3C, "EPT Translation Mechanism"): a 48-bit
/// guest-physical address, four levels (PML4, PDPT, PD, PT) and a 512-entry root of one
/// frame. Leaves: 1 GiB (PDPT), 2 MiB (PD) and 4 KiB (PT); none in the PML4.
///
/// | bits | field | leaf | table |
/// |---|---|---|---|
/// | 0, 1, 2 | read, write, execute | from the flags | 1, 1, 1 (the leaf decides) |
/// | 5:3 | memory type | 6 (WB) for RAM, 0 (UC) for [`MappingFlags::DEVICE`] | 0 (reserved) |
/// | 6 | ignore PAT | 0 for RAM (the guest's PAT still applies), 1 for DEVICE | 0 (reserved) |
/// | 7 | large page | 1 in a PDPT or PD leaf, 0 in a PT leaf | 0 |
/// | 8, 9 | accessed, dirty | 0 (A/D flags are off in the EPTP) | 0 |
/// | 51:12 | output address | | |
///
/// An entry is *valid* (present) when any of bits 2:0 is set; an all-zero entry is not
/// present. Write without read is an EPT misconfiguration, which the default
/// [`PteFormat::encodable`] never produces. An execute-only leaf (EXECUTE alone) needs the
/// CPU's "execute-only" EPT capability (IA32_VMX_EPT_VPID_CAP bit 0); 2 MiB and 1 GiB
/// leaves need its bits 16 and 17 — the VMX backend checks all three before it uses EPT.
///
/// Device memory is UC with "ignore PAT", so a guest's PAT cannot make a device range
/// cacheable; RAM is WB combined with the guest's PAT (a guest may map its own RAM
/// uncached or write-combining, as on hardware).
#[derive(Debug, Clone, Copy)]
pub struct IntelEpt;

impl IntelEpt {
    /// Bit 0: read access.
    pub const READ: u64 = 1 << 0;
    /// Bit 1: write access.
    pub const WRITE: u64 = 1 << 1;
    /// Bit 2: execute access (supervisor execute with mode-based execute control, which
    /// the VMX backend leaves off).
    pub const EXECUTE: u64 = 1 << 2;
    /// Memory type field of a leaf, bits 5:3.
    pub const MEMTYPE_MASK: u64 = 0b111 << 3;
    /// Memory type write-back (6) in a leaf.
    pub const MEMTYPE_WB: u64 = 6 << 3;
    /// Memory type uncacheable (0) in a leaf.
    pub const MEMTYPE_UC: u64 = 0;
    /// Bit 6: ignore the guest's PAT for this leaf.
    pub const IGNORE_PAT: u64 = 1 << 6;
    /// Bit 7: this PDPT or PD entry maps a 1 GiB or 2 MiB page.
    pub const LARGE: u64 = 1 << 7;
    /// Output address bits 51:12.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

    /// EPTP memory type for the paging structures: write-back (bits 2:0 = 6).
    pub const EPTP_WB: u64 = 6;
    /// EPTP page-walk length minus one, bits 5:3: 3 for a 4-level walk.
    pub const EPTP_WALK_4: u64 = 3 << 3;
    /// EPTP bit 6: accessed and dirty flags (left clear: the hardware does not write them).
    pub const EPTP_AD: u64 = 1 << 6;

    /// The EPT pointer (VMCS field 0x201A) selecting the table whose root is at `root`:
    /// write-back paging-structure memory type, a 4-level walk, A/D flags off.
    pub fn eptp(root: HostPhysAddr) -> u64 {
        debug_assert!(root.is_aligned(0x1000), "EPT root must be 4 KiB-aligned");
        (root.as_usize() as u64 & Self::ADDR_MASK) | Self::EPTP_WALK_4 | Self::EPTP_WB
    }

    const RWX: u64 = Self::READ | Self::WRITE | Self::EXECUTE;
    const LAST: usize = 3;
}

impl PteFormat for IntelEpt {
    const NAME: &'static str = "intel-ept";
    const LEVELS: usize = 4;
    const ROOT_ENTRIES: usize = 512;
    const ROOT_FRAMES: usize = 1;
    const GPA_BITS: u32 = 48;
    const PA_BITS: u32 = 52;
    const ENCODES_DEVICE: bool = true;

    fn leaf_allowed(depth: usize) -> bool {
        // 1 GiB in the PDPT, 2 MiB in the PD, 4 KiB in the PT; the PML4 has none.
        (1..=Self::LAST).contains(&depth)
    }

    fn is_valid(pte: u64, _depth: usize) -> bool {
        pte & Self::RWX != 0
    }

    fn is_table(pte: u64, depth: usize) -> bool {
        // Bit 7 is reserved in a PML4 entry: every present one refers to a PDPT.
        match depth {
            0 => Self::is_valid(pte, depth),
            1 | 2 => Self::is_valid(pte, depth) && pte & Self::LARGE == 0,
            _ => false,
        }
    }

    fn table(pa: HostPhysAddr, _depth: usize) -> u64 {
        (pa.as_usize() as u64 & Self::ADDR_MASK) | Self::RWX
    }

    fn leaf(pa: HostPhysAddr, flags: MappingFlags, depth: usize) -> u64 {
        let mut d = pa.as_usize() as u64 & Self::ADDR_MASK;
        if flags.contains(MappingFlags::READ) {
            d |= Self::READ;
        }
        if flags.contains(MappingFlags::WRITE) {
            d |= Self::WRITE;
        }
        if flags.contains(MappingFlags::EXECUTE) {
            d |= Self::EXECUTE;
        }
        d |= if flags.contains(MappingFlags::DEVICE) {
            Self::MEMTYPE_UC | Self::IGNORE_PAT
        } else {
            Self::MEMTYPE_WB
        };
        if depth < Self::LAST {
            d |= Self::LARGE;
        }
        d
    }

    fn addr(pte: u64) -> HostPhysAddr {
        HostPhysAddr::new((pte & Self::ADDR_MASK) as usize)
    }

    fn flags(pte: u64, _depth: usize) -> MappingFlags {
        let mut f = MappingFlags::empty();
        if pte & Self::READ != 0 {
            f |= MappingFlags::READ;
        }
        if pte & Self::WRITE != 0 {
            f |= MappingFlags::WRITE;
        }
        if pte & Self::EXECUTE != 0 {
            f |= MappingFlags::EXECUTE;
        }
        if pte & Self::MEMTYPE_MASK == Self::MEMTYPE_UC {
            f |= MappingFlags::DEVICE;
        }
        f
    }
}
