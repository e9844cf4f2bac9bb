//! RISC-V G-stage translation, Sv39x4.

use super::PteFormat;
use crate::{HostPhysAddr, MappingFlags};

/// RISC-V G-stage Sv39x4 descriptors (privileged spec, "Two-Stage Address Translation"):
/// a 41-bit guest-physical address, three levels, and a root of 2048 entries (16 KiB,
/// 16 KiB-aligned: the "x4"). Leaves at every level: 4 KiB (level 0), 2 MiB (level 1),
/// 1 GiB (level 2).
///
/// | bits | field | leaf | non-leaf |
/// |---|---|---|---|
/// | 0 | V | 1 | 1 |
/// | 1, 2, 3 | R, W, X | from the flags | 0, 0, 0 |
/// | 4 | U | 1 (G-stage accesses are U-mode accesses) | 0 |
/// | 5 | G | 0 | 0 |
/// | 6, 7 | A, D | 1, 1 (no A/D faults) | 0, 0 |
/// | 53:10 | PPN | `pa >> 12` | next table `>> 12` |
///
/// The descriptor has no memory type without Svpbmt, so [`MappingFlags::DEVICE`] is not
/// encoded: device regions get their attributes from the platform's PMAs.
#[derive(Debug, Clone, Copy)]
pub struct RiscvSv39x4;

impl RiscvSv39x4 {
    /// V: valid.
    pub const V: u64 = 1 << 0;
    /// R: readable.
    pub const R: u64 = 1 << 1;
    /// W: writable.
    pub const W: u64 = 1 << 2;
    /// X: executable.
    pub const X: u64 = 1 << 3;
    /// U: user; required on every G-stage leaf.
    pub const U: u64 = 1 << 4;
    /// G: global; never set in G-stage tables.
    pub const G: u64 = 1 << 5;
    /// A: accessed.
    pub const A: u64 = 1 << 6;
    /// D: dirty.
    pub const D: u64 = 1 << 7;
    /// The PPN field starts at bit 10.
    pub const PPN_SHIFT: u32 = 10;
    /// The PPN field is 44 bits wide (bits 53:10).
    pub const PPN_MASK: u64 = (1 << 44) - 1;

    /// `hgatp.MODE` for Sv39x4.
    pub const HGATP_MODE_SV39X4: usize = 8;

    /// The `hgatp` value selecting this table: MODE = 8 (Sv39x4) in bits 63:60, VMID in
    /// bits 57:44, root PPN in bits 43:0. `root` must be 16 KiB-aligned; `vmid` is cut to
    /// the architectural 14 bits (software must also respect the hart's VMIDLEN).
    pub fn hgatp(root: HostPhysAddr, vmid: u16) -> usize {
        debug_assert!(
            root.is_aligned(0x4000),
            "Sv39x4 root must be 16 KiB-aligned"
        );
        debug_assert!(vmid < 1 << 14, "VMID is at most 14 bits");
        (Self::HGATP_MODE_SV39X4 << 60)
            | ((vmid as usize & 0x3fff) << 44)
            | ((root.as_usize() >> 12) & ((1 << 44) - 1))
    }

    const RWX: u64 = Self::R | Self::W | Self::X;
    const LAST: usize = 2;

    fn ppn(pa: HostPhysAddr) -> u64 {
        ((pa.as_usize() as u64 >> 12) & Self::PPN_MASK) << Self::PPN_SHIFT
    }
}

impl PteFormat for RiscvSv39x4 {
    const NAME: &'static str = "riscv-sv39x4";
    const LEVELS: usize = 3;
    const ROOT_ENTRIES: usize = 2048;
    const ROOT_FRAMES: usize = 4;
    const GPA_BITS: u32 = 41;
    const PA_BITS: u32 = 56;
    const ENCODES_DEVICE: bool = false;

    fn leaf_allowed(depth: usize) -> bool {
        depth <= Self::LAST
    }

    fn is_valid(pte: u64, _depth: usize) -> bool {
        // W without R is reserved: the hardware faults on it.
        pte & Self::V != 0 && !(pte & Self::W != 0 && pte & Self::R == 0)
    }

    fn is_table(pte: u64, depth: usize) -> bool {
        depth < Self::LAST && pte & Self::V != 0 && pte & Self::RWX == 0
    }

    fn table(pa: HostPhysAddr, _depth: usize) -> u64 {
        Self::ppn(pa) | Self::V
    }

    fn leaf(pa: HostPhysAddr, flags: MappingFlags, _depth: usize) -> u64 {
        let mut d = Self::ppn(pa) | Self::V | Self::U | Self::A | Self::D;
        if flags.contains(MappingFlags::READ) {
            d |= Self::R;
        }
        if flags.contains(MappingFlags::WRITE) {
            d |= Self::W;
        }
        if flags.contains(MappingFlags::EXECUTE) {
            d |= Self::X;
        }
        d
    }

    fn addr(pte: u64) -> HostPhysAddr {
        HostPhysAddr::new((((pte >> Self::PPN_SHIFT) & Self::PPN_MASK) << 12) as usize)
    }

    fn flags(pte: u64, _depth: usize) -> MappingFlags {
        let mut f = MappingFlags::empty();
        if pte & Self::R != 0 {
            f |= MappingFlags::READ;
        }
        if pte & Self::W != 0 {
            f |= MappingFlags::WRITE;
        }
        if pte & Self::X != 0 {
            f |= MappingFlags::EXECUTE;
        }
        f
    }
}
