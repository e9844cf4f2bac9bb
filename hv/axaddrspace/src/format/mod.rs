//! Descriptor formats of nested page tables, one per architecture.
//!
//! [`NestedPageTable`](crate::NestedPageTable) is one generic walker; a [`PteFormat`] tells
//! it how many levels there are, how big the root is, and how to encode and decode one
//! 64-bit descriptor. Every format uses a 4 KiB granule: each level below the root resolves
//! 9 bits of the guest-physical address and holds 512 entries in one frame; the root
//! resolves whatever is left (`GPA_BITS - 12 - 9 * (LEVELS - 1)` bits) and may span several
//! contiguous frames.
//!
//! # Depths
//!
//! The walker counts *depth* from the root: depth 0 is the root table, depth `LEVELS - 1`
//! holds 4 KiB pages. Architecture manuals number levels differently:
//!
//! | format | depth 0 | depth 1 | depth 2 | depth 3 |
//! |---|---|---|---|---|
//! | [`Aarch64Stage2`] (start level 1) | L1 (1 GiB blocks) | L2 (2 MiB blocks) | L3 (4 KiB pages) | — |
//! | [`RiscvSv39x4`] | level 2 (1 GiB) | level 1 (2 MiB) | level 0 (4 KiB) | — |
//! | [`IntelEpt`] | PML4 (no leaves) | PDPT (1 GiB) | PD (2 MiB) | PT (4 KiB) |
//! | [`AmdNpt`] | PML4 (no leaves) | PDPT (1 GiB) | PD (2 MiB) | PT (4 KiB) |
//!
//! # Adding a format
//!
//! The later formats go here, beside the ones above, as new files, e.g.:
//! - RISC-V Sv48x4: [`RiscvSv39x4`] with `LEVELS = 4` and `GPA_BITS = 50`.
//!
//! Nothing else changes: the walker, the error paths and the generic tests take any format.

mod aarch64;
mod ept;
mod npt_amd;
mod riscv;

pub use aarch64::Aarch64Stage2;
pub use ept::IntelEpt;
pub use npt_amd::AmdNpt;
pub use riscv::RiscvSv39x4;

use crate::{HostPhysAddr, MappingFlags};

/// Entries in every table below the root (one 4 KiB frame of 8-byte descriptors).
pub const ENTRIES_PER_TABLE: usize = 512;

/// One architecture's nested page-table descriptor format (4 KiB granule).
///
/// Contract the walker relies on:
/// - an all-zero descriptor is invalid (fresh tables are zeroed frames);
/// - `addr(table(pa, d)) == pa` and `addr(leaf(pa, f, d)) == pa` for frame-aligned `pa`
///   below `2^PA_BITS`;
/// - `is_valid(leaf(..), d)` holds, `is_table(leaf(..), d)` does not, and
///   `is_table(table(..), d)` holds for every depth `d < LEVELS - 1`;
/// - `flags(leaf(pa, f, d), d) == f` for every `f` the format can express (see
///   [`encodable`](Self::encodable)), apart from `DEVICE` on formats that cannot express it.
pub trait PteFormat {
    /// A short name for logs and test output.
    const NAME: &'static str;
    /// Number of translation levels (tables on a full walk).
    const LEVELS: usize;
    /// Entries in the root table.
    const ROOT_ENTRIES: usize;
    /// Size of the root table in 4 KiB frames; the root is also aligned to this size.
    const ROOT_FRAMES: usize;
    /// Width of a guest-physical address: the table translates `[0, 2^GPA_BITS)`.
    const GPA_BITS: u32;
    /// Width of an output (host-physical) address the format and its configuration accept.
    const PA_BITS: u32;
    /// Whether `flags(leaf(..))` gives back [`MappingFlags::DEVICE`]; formats whose memory
    /// type is not in the descriptor (RISC-V without Svpbmt) say `false`.
    const ENCODES_DEVICE: bool;

    /// Whether a leaf (page or block) may sit at `depth`.
    fn leaf_allowed(depth: usize) -> bool;
    /// Whether the hardware would use `pte` (at `depth`) at all.
    fn is_valid(pte: u64, depth: usize) -> bool;
    /// Whether `pte` (at `depth`) is a valid descriptor pointing at a next-level table.
    fn is_table(pte: u64, depth: usize) -> bool;
    /// A descriptor at `depth` pointing at the next-level table at `pa`.
    fn table(pa: HostPhysAddr, depth: usize) -> u64;
    /// A leaf descriptor at `depth` mapping the block or page at `pa` with `flags`.
    fn leaf(pa: HostPhysAddr, flags: MappingFlags, depth: usize) -> u64;
    /// The output address of a table or leaf descriptor.
    fn addr(pte: u64) -> HostPhysAddr;
    /// The permissions and memory type of a leaf descriptor.
    fn flags(pte: u64, depth: usize) -> MappingFlags;

    /// Whether `flags` can be expressed as a leaf. The default accepts any combination
    /// with READ or EXECUTE whose WRITE comes with READ (write-only is reserved on RISC-V
    /// and meaningless elsewhere; "no access" is what an unmapped page is for).
    fn encodable(flags: MappingFlags) -> bool {
        let rx = flags.intersects(MappingFlags::READ | MappingFlags::EXECUTE);
        let w_ok = !flags.contains(MappingFlags::WRITE) || flags.contains(MappingFlags::READ);
        rx && w_ok
    }
}

/// `log2` of the size covered by one entry at `depth` of format `F`.
pub(crate) const fn shift<F: PteFormat>(depth: usize) -> u32 {
    12 + 9 * (F::LEVELS - 1 - depth) as u32
}

/// Bytes covered by one entry at `depth` of format `F`.
pub(crate) const fn entry_size<F: PteFormat>(depth: usize) -> usize {
    1 << shift::<F>(depth)
}

/// Entries in a table at `depth` of format `F`.
pub(crate) const fn entries<F: PteFormat>(depth: usize) -> usize {
    if depth == 0 {
        F::ROOT_ENTRIES
    } else {
        ENTRIES_PER_TABLE
    }
}
