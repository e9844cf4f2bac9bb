//! VMSAv8-64 stage-2 translation, 4 KiB granule, 39-bit IPA, start level 1.

use super::PteFormat;
use crate::{HostPhysAddr, MappingFlags};

/// AArch64 stage-2 descriptors (Arm ARM D8.3, "Translation table descriptor formats"):
/// 4 KiB granule, 39-bit IPA (`VTCR_EL2.T0SZ = 25`) starting at level 1, so three levels
/// L1..L3 and a 512-entry root of one frame. Output addresses are limited to 40 bits to
/// match `VTCR_EL2.PS` in [`vtcr_el2`](Self::vtcr_el2).
///
/// | bits | field | value |
/// |---|---|---|
/// | 0 | valid | 1 |
/// | 1 | type | 1 = table (L1/L2) or page (L3); 0 = block (L1/L2) |
/// | 5:2 | MemAttr | `0b1111` Normal, outer and inner write-back; `0b0001` Device-nGnRE |
/// | 7:6 | S2AP | bit 6 = read, bit 7 = write |
/// | 9:8 | SH | `0b11` inner shareable (ignored by hardware for device memory) |
/// | 10 | AF | 1 (we never take access-flag faults) |
/// | 47:12 | output address | |
/// | 54 | XN | 1 unless EXECUTE |
///
/// Table descriptors carry only valid, type and the next-level table address.
#[derive(Debug, Clone, Copy)]
pub struct Aarch64Stage2;

impl Aarch64Stage2 {
    /// Bit 0: the descriptor is valid.
    pub const VALID: u64 = 1 << 0;
    /// Bit 1: table (L1/L2) or page (L3); clear for a block.
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    /// MemAttr\[5:2\] = 0b1111: Normal memory, outer write-back, inner write-back.
    pub const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
    /// MemAttr\[5:2\] = 0b0001: Device-nGnRE.
    pub const MEMATTR_DEVICE_NGNRE: u64 = 0b0001 << 2;
    /// Mask of MemAttr\[5:2\].
    pub const MEMATTR_MASK: u64 = 0b1111 << 2;
    /// S2AP\[0\] (bit 6): read access.
    pub const S2AP_READ: u64 = 1 << 6;
    /// S2AP\[1\] (bit 7): write access.
    pub const S2AP_WRITE: u64 = 1 << 7;
    /// SH\[9:8\] = 0b11: inner shareable.
    pub const SH_INNER: u64 = 0b11 << 8;
    /// Bit 10: access flag.
    pub const AF: u64 = 1 << 10;
    /// Bit 54: execute never (XN\[1\] with FEAT_XNX: never at EL1 or EL0).
    pub const XN: u64 = 1 << 54;
    /// Output address bits \[47:12\].
    pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

    /// The `VTCR_EL2` value that matches this format (Arm ARM D13.2, VTCR_EL2):
    ///
    /// | bits | field | value |
    /// |---|---|---|
    /// | 5:0 | T0SZ | 25: a 2^(64-25) = 39-bit IPA space |
    /// | 7:6 | SL0 | 1: with TG0 = 4 KiB, the walk starts at level 1 |
    /// | 9:8 | IRGN0 | 1: inner write-back read-allocate write-allocate walks |
    /// | 11:10 | ORGN0 | 1: outer write-back read-allocate write-allocate walks |
    /// | 13:12 | SH0 | 3: inner shareable walks |
    /// | 15:14 | TG0 | 0: 4 KiB granule |
    /// | 18:16 | PS | 0b010: 40-bit (1 TiB) output addresses |
    /// | 31 | RES1 | 1 |
    pub const fn vtcr_el2() -> u64 {
        const T0SZ: u64 = 25; // [5:0]
        const SL0: u64 = 1 << 6; // [7:6]
        const IRGN0: u64 = 1 << 8; // [9:8]
        const ORGN0: u64 = 1 << 10; // [11:10]
        const SH0: u64 = 3 << 12; // [13:12]
        const TG0: u64 = 0 << 14; // [15:14]
        const PS: u64 = 0b010 << 16; // [18:16]
        const RES1: u64 = 1 << 31;
        T0SZ | SL0 | IRGN0 | ORGN0 | SH0 | TG0 | PS | RES1
    }

    const LAST: usize = 2;
}

impl PteFormat for Aarch64Stage2 {
    const NAME: &'static str = "aarch64-stage2";
    const LEVELS: usize = 3;
    const ROOT_ENTRIES: usize = 512;
    const ROOT_FRAMES: usize = 1;
    const GPA_BITS: u32 = 39;
    const PA_BITS: u32 = 40;
    const ENCODES_DEVICE: bool = true;

    fn leaf_allowed(depth: usize) -> bool {
        // 4 KiB granule: blocks at L1 and L2, pages at L3.
        depth <= Self::LAST
    }

    fn is_valid(pte: u64, depth: usize) -> bool {
        if depth == Self::LAST {
            // At L3, 0b01 is reserved and treated as invalid.
            pte & 0b11 == 0b11
        } else {
            pte & Self::VALID != 0
        }
    }

    fn is_table(pte: u64, depth: usize) -> bool {
        depth < Self::LAST && pte & 0b11 == 0b11
    }

    fn table(pa: HostPhysAddr, _depth: usize) -> u64 {
        (pa.as_usize() as u64 & Self::OA_MASK) | Self::TABLE_OR_PAGE | Self::VALID
    }

    fn leaf(pa: HostPhysAddr, flags: MappingFlags, depth: usize) -> u64 {
        let mut d =
            (pa.as_usize() as u64 & Self::OA_MASK) | Self::VALID | Self::AF | Self::SH_INNER;
        if depth == Self::LAST {
            d |= Self::TABLE_OR_PAGE;
        }
        d |= if flags.contains(MappingFlags::DEVICE) {
            Self::MEMATTR_DEVICE_NGNRE
        } else {
            Self::MEMATTR_NORMAL_WB
        };
        if flags.contains(MappingFlags::READ) {
            d |= Self::S2AP_READ;
        }
        if flags.contains(MappingFlags::WRITE) {
            d |= Self::S2AP_WRITE;
        }
        if !flags.contains(MappingFlags::EXECUTE) {
            d |= Self::XN;
        }
        d
    }

    fn addr(pte: u64) -> HostPhysAddr {
        HostPhysAddr::new((pte & Self::OA_MASK) as usize)
    }

    fn flags(pte: u64, _depth: usize) -> MappingFlags {
        let mut f = MappingFlags::empty();
        if pte & Self::S2AP_READ != 0 {
            f |= MappingFlags::READ;
        }
        if pte & Self::S2AP_WRITE != 0 {
            f |= MappingFlags::WRITE;
        }
        if pte & Self::XN == 0 {
            f |= MappingFlags::EXECUTE;
        }
        // MemAttr[3:2] == 0b00 selects a Device memory type.
        if pte & (0b1100 << 2) == 0 {
            f |= MappingFlags::DEVICE;
        }
        f
    }
}
