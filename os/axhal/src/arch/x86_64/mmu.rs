//! The hypervisor's address space: the identity map the boot code built (low 4 GiB with
//! 2 MiB pages, the top gigabyte uncached), plus 1 GiB pages for RAM above 4 GiB (up to the
//! 512 GiB one PML4 entry covers) on CPUs that have them.

use axconfig::memmap::{MemRange, RangeList};

const GIB: usize = 1 << 30;
/// Present, writable, page size (a 1 GiB page in a PDPT entry).
const HUGE: u64 = 0x83;

/// Maps the RAM of `memory` above 4 GiB; returns the RAM that is mapped (all of it, or what
/// lies below 4 GiB and 512 GiB when the CPU has no 1 GiB pages or RAM goes beyond).
pub fn init(memory: &RangeList, page_1g: bool) -> RangeList {
    extern "C" {
        static mut boot_pml4: [u64; 512];
    }
    let limit = if page_1g { 512 * GIB } else { 4 * GIB };
    let mut mapped = RangeList::new();
    for r in memory {
        let end = r.end().min(limit);
        if r.start < end {
            let _ = mapped.try_push(MemRange::from_bounds(r.start, end));
        }
    }
    // SAFETY: the boot tables are written only here, by the boot CPU before any other CPU
    // starts; PML4[0] points at the PDPT the boot code filled (entries 0..4).
    let pdpt = unsafe { (boot_pml4[0] & 0x000f_ffff_ffff_f000) as *mut u64 };
    for gib in 4..limit / GIB {
        let g = MemRange::new(gib * GIB, GIB);
        if mapped.iter().any(|r| r.overlaps(&g)) {
            // SAFETY: as above; `gib` < 512 indexes the PDPT's page.
            unsafe { pdpt.add(gib).write((gib * GIB) as u64 | HUGE) };
        }
    }
    // SAFETY: reloading CR3 drops stale translations (there were none for these entries).
    unsafe {
        core::arch::asm!("mov {tmp}, cr3", "mov cr3, {tmp}", tmp = out(reg) _, options(nostack))
    };
    mapped
}
