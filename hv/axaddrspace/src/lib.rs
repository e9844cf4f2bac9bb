//! Guest physical memory for axvisor.
//!
//! - [`GuestPhysAddr`], [`HostPhysAddr`], [`HostVirtAddr`]: distinct address newtypes.
//! - [`MappingFlags`]: what a guest may do with a page (read, write, execute, device
//!   memory attributes).
//! - [`FrameAllocator`]: where page-table and guest-RAM frames come from, and how the
//!   hypervisor reaches them.
//! - [`PteFormat`]: one architecture's nested descriptor format ([`Aarch64Stage2`],
//!   [`RiscvSv39x4`], [`IntelEpt`]; `fake::FakeFormat` for tests, with the `fake` feature).
//! - [`NestedPageTable`]: the generic stage-2 / G-stage page table.
//! - [`AddrSpace`]: a VM's regions ([`Backend::Alloc`], [`Backend::Linear`]) over a page
//!   table, and checked guest memory [`read`](AddrSpace::read) / [`write`](AddrSpace::write).
//!
//! See `docs/addrspace.md` for the design and the safety argument.

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(any(test, feature = "fake"))]
extern crate std;

mod addr;
mod addrspace;
mod frame;
mod npt;

pub mod format;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

pub use addr::{GuestPhysAddr, HostPhysAddr, HostVirtAddr};
pub use addrspace::{AccessError, AddrSpace, AddrSpaceError, Backend, Region};
pub use format::{Aarch64Stage2, AmdNpt, IntelEpt, PteFormat, RiscvSv39x4};
pub use frame::FrameAllocator;
pub use npt::{NestedPageTable, PagingError, TlbFlushHook};

/// 4 KiB: the base page and the size of one frame.
pub const PAGE_SIZE_4K: usize = 0x1000;
/// 2 MiB: a level-2 block (AArch64) / megapage (RISC-V).
pub const PAGE_SIZE_2M: usize = 0x20_0000;
/// 1 GiB: a level-1 block (AArch64) / gigapage (RISC-V).
pub const PAGE_SIZE_1G: usize = 0x4000_0000;

bitflags::bitflags! {
    /// What a guest may do with a mapping, and how it is cached.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MappingFlags: u32 {
        /// The guest may read.
        const READ = 1 << 0;
        /// The guest may write.
        const WRITE = 1 << 1;
        /// The guest may fetch instructions.
        const EXECUTE = 1 << 2;
        /// Device memory attributes (uncached, no speculation) instead of normal memory.
        const DEVICE = 1 << 3;
    }
}
#[cfg(test)]
mod tests;
