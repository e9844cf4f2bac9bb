//! Memory-mapped I/O for guests. Each access is a single plain load or store written in
//! assembly (no writeback addressing, no pairs), so a trapping access is one the hypervisor
//! can decode: on aarch64 the data abort's syndrome is valid (ESR_EL2.ISV = 1), on riscv64
//! the instruction is a simple `l*`/`s*`.
//!
//! # Safety
//!
//! Every function here is `unsafe`: the caller guarantees that `addr` is a device register
//! (or memory) it may access with that width, and that the access has no effect the program
//! does not expect.

use crate::arch::mmio as imp;

/// Reads 8 bits from `addr`.
///
/// # Safety
/// See the [module documentation](self).
pub unsafe fn read8(addr: usize) -> u8 {
    // SAFETY: forwarded from the caller.
    unsafe { imp::read8(addr) }
}

/// Reads 16 bits from `addr` (2-byte aligned).
///
/// # Safety
/// See the [module documentation](self).
pub unsafe fn read16(addr: usize) -> u16 {
    // SAFETY: forwarded from the caller.
    unsafe { imp::read16(addr) }
}

/// Reads 32 bits from `addr` (4-byte aligned).
///
/// # Safety
/// See the [module documentation](self).
pub unsafe fn read32(addr: usize) -> u32 {
    // SAFETY: forwarded from the caller.
    unsafe { imp::read32(addr) }
}

/// Reads 64 bits from `addr` (8-byte aligned).
///
/// # Safety
/// See the [module documentation](self).
pub unsafe fn read64(addr: usize) -> u64 {
    // SAFETY: forwarded from the caller.
    unsafe { imp::read64(addr) }
}

/// Writes 8 bits to `addr`.
///
/// # Safety
/// See the [module documentation](self).
pub unsafe fn write8(addr: usize, value: u8) {
    // SAFETY: forwarded from the caller.
    unsafe { imp::write8(addr, value) }
}

/// Writes 16 bits to `addr` (2-byte aligned).
///
/// # Safety
/// See the [module documentation](self).
pub unsafe fn write16(addr: usize, value: u16) {
    // SAFETY: forwarded from the caller.
    unsafe { imp::write16(addr, value) }
}

/// Writes 32 bits to `addr` (4-byte aligned).
///
/// # Safety
/// See the [module documentation](self).
pub unsafe fn write32(addr: usize, value: u32) {
    // SAFETY: forwarded from the caller.
    unsafe { imp::write32(addr, value) }
}

/// Writes 64 bits to `addr` (8-byte aligned).
///
/// # Safety
/// See the [module documentation](self).
pub unsafe fn write64(addr: usize, value: u64) {
    // SAFETY: forwarded from the caller.
    unsafe { imp::write64(addr, value) }
}
