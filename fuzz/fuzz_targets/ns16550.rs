//! The 16550 UART model: received bytes and register accesses of any offset, width and
//! value (see `axvisor_fuzz::fuzz_uart` for what is checked). The first byte picks the
//! register stride the device claims (its size).

use axdevice::uart::Ns16550;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&shift, rest)) = data.split_first() else {
        return;
    };
    // 8 bytes (byte-spaced registers) up to 0x1000 (a page).
    let size = 8usize << (shift % 10);
    axvisor_fuzz::fuzz_uart(rest, |console, irq| {
        Ns16550::new(console, Some(irq)).with_size(size)
    });
}
