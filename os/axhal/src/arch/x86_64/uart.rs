//! The console: the COM1 16550 at I/O port `axconfig::EARLY_UART` (0x3F8), 115200 8N1;
//! output and input polled.

use super::regs::{inb, outb};

const BASE: u16 = axconfig::EARLY_UART as u16;
/// Line status register: transmit holding register empty.
const LSR_THRE: u8 = 1 << 5;
/// Line status register: data ready (a received byte waits in RBR).
const LSR_DR: u8 = 1 << 0;

/// Programs 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on, interrupts off.
pub fn init() {
    outb(BASE + 1, 0x00); // IER: no interrupts
    outb(BASE + 3, 0x80); // LCR: DLAB
    outb(BASE, 0x01); // divisor 1 (115200)
    outb(BASE + 1, 0x00);
    outb(BASE + 3, 0x03); // 8N1
    outb(BASE + 2, 0x07); // FIFO on, cleared
    outb(BASE + 4, 0x03); // DTR | RTS
}

/// Writes one byte, waiting for room.
pub fn putchar(c: u8) {
    // Bounded, so a UART that never drains cannot hang the hypervisor.
    for _ in 0..100_000 {
        if inb(BASE + 5) & LSR_THRE != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    outb(BASE, c);
}

/// The next received byte, if one waits (never waits itself).
pub fn getchar() -> Option<u8> {
    (inb(BASE + 5) & LSR_DR != 0).then(|| inb(BASE))
}
