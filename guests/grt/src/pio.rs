//! Port I/O for x86_64 guests: each access is one `in` or `out` with the port in DX, the
//! form the hypervisor's I/O exit reports with the port and width.
//!
//! # Safety
//!
//! Every function here is `unsafe`: the caller guarantees that `port` is a device register
//! it may access with that width, and that the access has no effect the program does not
//! expect.

use core::arch::asm;

/// Defines one read and one write accessor per line, each a single `in` / `out`.
macro_rules! ports {
    ($($read:ident, $write:ident, $ty:ty, $what:literal, $reg:tt;)*) => {$(
        #[doc = concat!("Reads ", $what, " from `port` (`in ", $reg, ", dx`).")]
        ///
        /// # Safety
        /// See the [module documentation](self).
        pub unsafe fn $read(port: u16) -> $ty {
            let value: $ty;
            // SAFETY: the caller guarantees `port` may be read with this width.
            unsafe { asm!(concat!("in ", $reg, ", dx"), out($reg) value, in("dx") port, options(nomem, nostack, preserves_flags)) };
            value
        }

        #[doc = concat!("Writes ", $what, " to `port` (`out dx, ", $reg, "`).")]
        ///
        /// # Safety
        /// See the [module documentation](self).
        pub unsafe fn $write(port: u16, value: $ty) {
            // SAFETY: the caller guarantees `port` may be written with this width.
            unsafe { asm!(concat!("out dx, ", $reg), in($reg) value, in("dx") port, options(nomem, nostack, preserves_flags)) };
        }
    )*};
}

ports! {
    inb, outb, u8, "8 bits", "al";
    inw, outw, u16, "16 bits", "ax";
    inl, outl, u32, "32 bits", "eax";
}
