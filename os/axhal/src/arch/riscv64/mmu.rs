//! The hypervisor's own address space: an Sv39 identity map of 1 GiB pages.
//!
//! The root table maps physical addresses below 256 GiB one to one. Gigabytes that hold RAM
//! (from the DTB) are readable, writable and executable; the rest (devices) readable and
//! writable only. Memory types come from the platform's PMAs, so no attribute bits are needed.

use axconfig::memmap::MemRange;
use core::cell::UnsafeCell;

const GIB: usize = 1 << 30;
/// Sv39 VAs below 2^38 are positive and map one to one: 256 root entries.
const IDENTITY_ENTRIES: usize = 256;

const V: u64 = 1 << 0;
const R: u64 = 1 << 1;
const W: u64 = 1 << 2;
const X: u64 = 1 << 3;
const G: u64 = 1 << 5;
const A: u64 = 1 << 6;
const D: u64 = 1 << 7;

#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: written only by the boot hart before any other hart starts, read-only afterwards.
unsafe impl Sync for Table {}

static ROOT: Table = Table(UnsafeCell::new([0; 512]));

/// Builds the map from the RAM ranges (boot hart, once) and turns translation on.
pub fn init(ram: &[MemRange]) {
    // SAFETY: see `impl Sync for Table`.
    let root = unsafe { &mut *ROOT.0.get() };
    for (i, e) in root.iter_mut().take(IDENTITY_ENTRIES).enumerate() {
        let pa = i * GIB;
        let is_ram = ram.iter().any(|r| r.overlaps(&MemRange::new(pa, GIB)));
        let perms = if is_ram { R | W | X } else { R | W };
        *e = ((pa as u64 >> 12) << 10) | perms | V | G | A | D;
    }
    enable();
}

/// Turns translation on with the map built by [`init`] (every hart).
pub fn enable() {
    let satp = (8usize << 60) | (ROOT.0.get() as usize >> 12);
    // SAFETY: the map is an identity map covering this code, its stack and data, so execution
    // continues at the same addresses; sfence.vma drops stale translations.
    unsafe { core::arch::asm!("csrw satp, {}", "sfence.vma", in(reg) satp) };
}
