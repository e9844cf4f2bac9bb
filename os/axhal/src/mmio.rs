//! Volatile access to memory-mapped device registers.
//!
//! Every address passed here comes from the firmware device tree (or the platform config) and
//! lies in a region the hypervisor's page table maps as device memory.

/// Reads the 32-bit register at `addr`.
#[inline]
pub fn read32(addr: usize) -> u32 {
    // SAFETY: `addr` is a device register mapped by the hypervisor's page table (module doc).
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Writes the 32-bit register at `addr`.
#[inline]
pub fn write32(addr: usize, v: u32) {
    // SAFETY: as for `read32`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}

/// Reads the 64-bit register at `addr`.
#[cfg(target_arch = "aarch64")]
#[inline]
pub fn read64(addr: usize) -> u64 {
    // SAFETY: as for `read32`.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// Writes the 64-bit register at `addr`.
#[cfg(target_arch = "aarch64")]
#[inline]
pub fn write64(addr: usize, v: u64) {
    // SAFETY: as for `read32`.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

/// Writes the byte register at `addr`.
#[cfg(target_arch = "aarch64")]
#[inline]
pub fn write8(addr: usize, v: u8) {
    // SAFETY: as for `read32`.
    unsafe { core::ptr::write_volatile(addr as *mut u8, v) }
}
