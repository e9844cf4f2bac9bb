//! The VM's console UART: PL011 at 0x0900_0000 on aarch64, 16550 at 0x1000_0000 on
//! riscv64 (polled, no interrupts; output and [`getc`] input), and the [`print!`](crate::print) /
//! [`println!`](crate::println) macros on it.

use core::fmt::{self, Write};

use crate::arch;

/// The console as a [`fmt::Write`]r. Lines end with `\n` alone.
pub struct Console;

impl Console {
    /// Writes raw bytes, waiting for room in the UART before each one.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            arch::console_putc(b);
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Reads the UART's status register once (PL011 FR / 16550 LSR): one MMIO read that leaves
/// the VM and has no side effect on the console.
#[inline(always)]
pub fn status() -> u32 {
    arch::console_status()
}

/// The next byte the UART received, if one waits (polled; never waits itself).
pub fn getc() -> Option<u8> {
    arch::console_getc()
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    // Writing to the UART cannot fail.
    let _ = Console.write_fmt(args);
}

/// Prints to the VM's console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(format_args!($($arg)*))
    };
}

/// Prints to the VM's console, with a newline.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::_print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::_print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
