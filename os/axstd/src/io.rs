//! Console output.

use core::fmt::{self, Write};

struct Buffered {
    buf: [u8; 256],
    len: usize,
}

impl Write for Buffered {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                axhal::console::write_bytes(&self.buf);
                self.len = 0;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    // Format into a buffer first so a line from one CPU reaches the console in one piece.
    let mut b = Buffered {
        buf: [0; 256],
        len: 0,
    };
    let _ = b.write_fmt(args);
    axhal::console::write_bytes(&b.buf[..b.len]);
}

/// Prints to the hypervisor console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::_print(format_args!($($arg)*)) };
}

/// Prints a line to the hypervisor console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::io::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
