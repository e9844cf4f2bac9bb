//! The hypervisor's own address space: an identity map in the EL2 stage-1 regime.
//!
//! One level-1 table of 512 1 GiB blocks covers physical addresses below 512 GiB (39-bit VA,
//! 4 KiB granule). A block that holds RAM is normal write-back memory; every other block is
//! Device-nGnRE and execute-never. Two maps are built:
//! - the *boot map*, before the device tree is read: the blocks holding the image and the DTB
//!   as RAM, the rest as device (so the early UART works);
//! - the *final map*, from the DTB's memory nodes, shared by all CPUs.
//!
//! Mapping whole gigabytes means a block may extend past the end of RAM; on QEMU `virt` nothing
//! else lives in RAM's gigabytes, so this is harmless there.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use axconfig::memmap::MemRange;
use core::cell::UnsafeCell;

const GIB: usize = 1 << 30;
const ENTRIES: usize = 512;

/// Largest DTB the boot map is guaranteed to cover.
pub const BOOT_MAP_DTB_MAX: usize = 2 << 20;

/// Descriptor bits (Arm ARM D8.3, stage 1, EL2 regime).
const BLOCK: u64 = 0b01;
const ATTR_NORMAL: u64 = 0 << 2; // MAIR index 0
const ATTR_DEVICE: u64 = 1 << 2; // MAIR index 1
const AP_RES1: u64 = 1 << 6; // AP[1] is RES1 in the single-range EL2 regime
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const XN: u64 = 1 << 54;

#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; ENTRIES]>);

// SAFETY: each table is written only by the boot CPU before any other CPU starts (boot map
// before the MMU is on, final map before secondaries are started) and read-only afterwards.
unsafe impl Sync for Table {}

static BOOT_TABLE: Table = Table(UnsafeCell::new([0; ENTRIES]));
static FINAL_TABLE: Table = Table(UnsafeCell::new([0; ENTRIES]));

fn fill(table: &Table, is_ram: impl Fn(usize) -> bool) {
    // SAFETY: see `impl Sync for Table`: only the boot CPU writes, before anyone reads.
    let entries = unsafe { &mut *table.0.get() };
    for (i, e) in entries.iter_mut().enumerate() {
        let pa = (i * GIB) as u64;
        *e = if is_ram(i * GIB) {
            pa | BLOCK | ATTR_NORMAL | AP_RES1 | SH_INNER | AF
        } else {
            pa | BLOCK | ATTR_DEVICE | AP_RES1 | AF | XN
        };
    }
}

fn set_translation_regs(table: &Table) {
    MAIR_EL2.write(
        MAIR_EL2::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL2::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL2::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck,
    );
    // Bits 23 and 31 of TCR_EL2 are RES1.
    TCR_EL2.set(
        (1 << 31)
            | (1 << 23)
            | (TCR_EL2::PS::Bits_40
                + TCR_EL2::TG0::KiB_4
                + TCR_EL2::SH0::Inner
                + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL2::T0SZ.val(25))
            .value,
    );
    TTBR0_EL2.set(table.0.get() as u64);
    // SAFETY: invalidates this CPU's EL2 TLB entries; the new table maps the running code at
    // the same addresses (identity), so execution continues unchanged.
    unsafe { core::arch::asm!("dsb ish", "tlbi alle2", "dsb ish", "isb") };
}

fn enable_mmu() {
    SCTLR_EL2.modify(SCTLR_EL2::M::Enable + SCTLR_EL2::C::Cacheable + SCTLR_EL2::I::Cacheable);
    barrier::isb(barrier::SY);
}

/// Builds the boot map for an image and DTB at their current places and turns the MMU on.
pub fn init_boot_map(dtb: usize) {
    let image = crate::platform::kernel_range();
    let dtb = MemRange::new(dtb, BOOT_MAP_DTB_MAX);
    let gib_of = |r: MemRange| (r.start / GIB)..=(r.end().saturating_sub(1) / GIB);
    fill(&BOOT_TABLE, |pa| {
        gib_of(image).contains(&(pa / GIB)) || gib_of(dtb).contains(&(pa / GIB))
    });
    set_translation_regs(&BOOT_TABLE);
    enable_mmu();
}

/// Builds the final map from the RAM ranges and switches this CPU to it.
pub fn init_final_map(ram: &[MemRange]) {
    fill(&FINAL_TABLE, |pa| {
        ram.iter().any(|r| r.overlaps(&MemRange::new(pa, GIB)))
    });
    set_translation_regs(&FINAL_TABLE);
}

/// Turns the MMU on with the final map (secondary CPUs).
pub fn enable_final_map() {
    set_translation_regs(&FINAL_TABLE);
    enable_mmu();
}
