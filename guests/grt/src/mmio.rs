//! Memory-mapped I/O for guests. Each access is a single plain load or store written in
//! assembly (no writeback addressing, no pairs), so a trapping access is one the hypervisor
//! can decode: on aarch64 the data abort's syndrome is valid (ESR_EL2.ISV = 1), on riscv64
//! the instruction is a simple `l*`/`s*`, on x86_64 a plain `mov` between a register and
//! memory (no prefixes but the operand size and REX).
//!
//! # Safety
//!
//! Every function here is `unsafe`: the caller guarantees that `addr` is a device register
//! (or memory) it may access with that width, and that the access has no effect the program
//! does not expect.

use core::arch::asm;

/// Defines one read and one write accessor per line, each a single load or store.
macro_rules! accessors {
    ($($read:ident, $write:ident, $ty:ty, $what:literal, $load:literal, $store:literal;)*) => {$(
        #[doc = concat!("Reads ", $what, " from `addr`.")]
        ///
        /// # Safety
        /// See the [module documentation](self).
        pub unsafe fn $read(addr: usize) -> $ty {
            let value: u64;
            // SAFETY: the caller guarantees `addr` may be read with this width.
            unsafe { asm!($load, v = out(reg) value, a = in(reg) addr, options(nostack)) };
            value as $ty
        }

        #[doc = concat!("Writes ", $what, " to `addr`.")]
        ///
        /// # Safety
        /// See the [module documentation](self).
        pub unsafe fn $write(addr: usize, value: $ty) {
            // SAFETY: the caller guarantees `addr` may be written with this width.
            unsafe {
                asm!($store, v = in(reg) u64::from(value), a = in(reg) addr, options(nostack))
            };
        }
    )*};
}

#[cfg(target_arch = "aarch64")]
accessors! {
    read8, write8, u8, "8 bits", "ldrb {v:w}, [{a}]", "strb {v:w}, [{a}]";
    read16, write16, u16, "16 bits (2-byte aligned)", "ldrh {v:w}, [{a}]", "strh {v:w}, [{a}]";
    read32, write32, u32, "32 bits (4-byte aligned)", "ldr {v:w}, [{a}]", "str {v:w}, [{a}]";
    read64, write64, u64, "64 bits (8-byte aligned)", "ldr {v:x}, [{a}]", "str {v:x}, [{a}]";
}

#[cfg(target_arch = "riscv64")]
accessors! {
    read8, write8, u8, "8 bits", "lbu {v}, 0({a})", "sb {v}, 0({a})";
    read16, write16, u16, "16 bits (2-byte aligned)", "lhu {v}, 0({a})", "sh {v}, 0({a})";
    read32, write32, u32, "32 bits (4-byte aligned)", "lwu {v}, 0({a})", "sw {v}, 0({a})";
    read64, write64, u64, "64 bits (8-byte aligned)", "ld {v}, 0({a})", "sd {v}, 0({a})";
}

#[cfg(target_arch = "x86_64")]
accessors! {
    read8, write8, u8, "8 bits", "mov {v:l}, byte ptr [{a}]", "mov byte ptr [{a}], {v:l}";
    read16, write16, u16, "16 bits", "mov {v:x}, word ptr [{a}]", "mov word ptr [{a}], {v:x}";
    read32, write32, u32, "32 bits", "mov {v:e}, dword ptr [{a}]", "mov dword ptr [{a}], {v:e}";
    read64, write64, u64, "64 bits", "mov {v:r}, qword ptr [{a}]", "mov qword ptr [{a}], {v:r}";
}
