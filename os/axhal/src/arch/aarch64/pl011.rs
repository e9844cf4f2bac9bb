//! PL011 UART output (polled).

use crate::mmio;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Register block base: the platform's early UART until the DTB names the console.
static BASE: AtomicUsize = AtomicUsize::new(axconfig::EARLY_UART);

const DR: usize = 0x00;
const FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;

/// Switches output to the UART at `base`.
pub fn set_base(base: usize) {
    BASE.store(base, Ordering::Relaxed);
}

/// Writes one byte, waiting while the transmit FIFO is full.
pub fn putchar(b: u8) {
    let base = BASE.load(Ordering::Relaxed);
    while mmio::read32(base + FR) & FR_TXFF != 0 {
        core::hint::spin_loop();
    }
    mmio::write8(base + DR, b);
}
