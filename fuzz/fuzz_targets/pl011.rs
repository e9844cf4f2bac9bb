//! The PL011 UART model: received bytes and register accesses of any offset, width and
//! value (see `axvisor_fuzz::fuzz_uart` for what is checked).

use axdevice::uart::Pl011;

/// Runs one input.
pub fn run(data: &[u8]) {
    axvisor_fuzz::fuzz_uart(data, |console, irq| Pl011::new(console, Some(irq)));
}
