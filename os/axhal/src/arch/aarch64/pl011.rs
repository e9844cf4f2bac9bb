//! PL011 UART: output and input, both polled.

use crate::mmio;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Register block base: the platform's early UART until the DTB names the console.
static BASE: AtomicUsize = AtomicUsize::new(axconfig::EARLY_UART);

const DR: usize = 0x00;
const FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;
const FR_RXFE: u32 = 1 << 4;

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

/// The next received byte, if the receive FIFO holds one (never waits).
pub fn getchar() -> Option<u8> {
    let base = BASE.load(Ordering::Relaxed);
    if mmio::read32(base + FR) & FR_RXFE != 0 {
        return None;
    }
    // DR's low byte is the data; bits 8..11 are its error flags (framing, parity, break,
    // overrun), which a console does not need.
    Some(mmio::read32(base + DR) as u8)
}
