//! The zero page (`struct boot_params`, Linux `Documentation/arch/x86/zero-page.rst`): the
//! 4 KiB the 64-bit entry finds through `%rsi`.

use alloc::vec;
use alloc::vec::Vec;

use crate::bytes::{put, put_u16, put_u32, put_u64};
use crate::bzimage::{off, BzImage, CAN_USE_HEAP, LOADED_HIGH, SETUP_HEADER_OFFSET};
use crate::e820::{E820Map, ENTRY_SIZE};

/// Size of the zero page.
pub const ZERO_PAGE_SIZE: usize = 4096;
/// `type_of_loader` of a loader without an assigned ID.
pub const LOADER_UNDEFINED: u8 = 0xFF;
/// `heap_end_ptr` written with `CAN_USE_HEAP`: the end of the setup heap, relative to the
/// real-mode code, minus 0x200 (the 64-bit entry runs no real-mode code, so it only has
/// to be plausible).
pub const HEAP_END_PTR: u16 = 0xFE00;

/// Offsets of the zero-page fields outside the setup header.
pub mod field {
    /// `acpi_rsdp_addr` (u64).
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    /// `ext_ramdisk_image` (u32): bits 32..64 of the initrd's address.
    pub const EXT_RAMDISK_IMAGE: usize = 0x0C0;
    /// `ext_ramdisk_size` (u32): bits 32..64 of the initrd's size.
    pub const EXT_RAMDISK_SIZE: usize = 0x0C4;
    /// `ext_cmd_line_ptr` (u32): bits 32..64 of the command line's address.
    pub const EXT_CMD_LINE_PTR: usize = 0x0C8;
    /// `e820_entries` (u8).
    pub const E820_ENTRIES: usize = 0x1E8;
    /// `sentinel` (u8): must stay 0 (the kernel clears fields a loader did not mean to set
    /// when it is not).
    pub const SENTINEL: usize = 0x1EF;
    /// `e820_table`: up to 128 entries of 20 bytes.
    pub const E820_TABLE: usize = 0x2D0;
}

/// What goes into the zero page besides the kernel's own setup header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZeroPageParams<'a> {
    /// Guest-physical address of the NUL-terminated command line.
    pub cmdline_addr: u64,
    /// The initrd's guest-physical address and size, if there is one.
    pub initrd: Option<(u64, u64)>,
    /// The memory map.
    pub e820: &'a E820Map,
    /// The RSDP's guest-physical address, or 0 to let Linux scan for it.
    pub rsdp_addr: u64,
}

/// Builds the zero page: all zero, the setup header of `image` copied in at 0x1F1, then
/// the fields a loader fills: `type_of_loader`, `loadflags` (`LOADED_HIGH` and
/// `CAN_USE_HEAP`; not `QUIET_FLAG`, not the obsolete `KEEP_SEGMENTS`), `heap_end_ptr`,
/// `cmd_line_ptr`, `ramdisk_image` / `ramdisk_size` (with their high halves), the e820
/// table and `acpi_rsdp_addr`.
pub fn build(image: &BzImage<'_>, params: &ZeroPageParams<'_>) -> Vec<u8> {
    let mut zp = vec![0u8; ZERO_PAGE_SIZE];
    put(&mut zp, SETUP_HEADER_OFFSET, image.setup_header());
    zp[off::TYPE_OF_LOADER] = LOADER_UNDEFINED;
    zp[off::LOADFLAGS] = LOADED_HIGH | CAN_USE_HEAP;
    put_u16(&mut zp, off::HEAP_END_PTR, HEAP_END_PTR);
    let (lo, hi) = split(params.cmdline_addr);
    put_u32(&mut zp, off::CMD_LINE_PTR, lo);
    put_u32(&mut zp, field::EXT_CMD_LINE_PTR, hi);
    let (addr, size) = params.initrd.unwrap_or_default();
    let ((alo, ahi), (slo, shi)) = (split(addr), split(size));
    put_u32(&mut zp, off::RAMDISK_IMAGE, alo);
    put_u32(&mut zp, off::RAMDISK_SIZE, slo);
    put_u32(&mut zp, field::EXT_RAMDISK_IMAGE, ahi);
    put_u32(&mut zp, field::EXT_RAMDISK_SIZE, shi);
    let entries = params.e820.entries();
    // E820Map holds at most MAX_ENTRIES (128) entries, so this fits in a byte and the table.
    zp[field::E820_ENTRIES] = entries.len() as u8;
    for (i, e) in entries.iter().enumerate() {
        put(&mut zp, field::E820_TABLE + i * ENTRY_SIZE, &e.to_bytes());
    }
    put_u64(&mut zp, field::ACPI_RSDP_ADDR, params.rsdp_addr);
    zp
}

/// The low and high 32 bits of `v`.
fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}
