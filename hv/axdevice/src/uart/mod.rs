//! UART models: the Arm PL011 and the 16550.
//!
//! Both transmit instantly (a byte written to the data register goes straight to the
//! [`ConsoleSink`](axdevice_base::ConsoleSink)), so the transmitter is always empty and never
//! busy. Received bytes come from [`Pl011::push_input`] / [`Ns16550::push_input`] into a
//! bounded FIFO; bytes that do not fit are dropped and reported as an overrun, as on real
//! hardware. Interrupts are level-sensitive and go to an optional
//! [`IrqLine`], which is only called when the level changes.

mod ns16550;
mod pl011;

pub use ns16550::{Ns16550, NS16550_RX_FIFO, NS16550_SIZE};
pub use pl011::{Pl011, PL011_RX_FIFO, PL011_SIZE};

use alloc::sync::Arc;
use axdevice_base::IrqLine;

/// A UART's receive side, as a VM's console input reaches it (the PL011's and the
/// 16550's behind one interface).
pub trait UartInput: Send + Sync {
    /// Feeds as many of `bytes` as the receive FIFO has room for, without an overrun (a
    /// terminal waits for a UART; it does not lose what was typed); returns how many. The
    /// caller keeps the rest for later.
    fn feed(&self, bytes: &[u8]) -> usize;
}

impl UartInput for Pl011 {
    fn feed(&self, bytes: &[u8]) -> usize {
        let room = self.rx_room().min(bytes.len());
        self.push_input(&bytes[..room])
    }
}

impl UartInput for Ns16550 {
    fn feed(&self, bytes: &[u8]) -> usize {
        let room = self.rx_room().min(bytes.len());
        self.push_input(&bytes[..room])
    }
}

/// The interrupt output of a UART: remembers the level last driven so the line is only told
/// about changes.
struct IrqOut {
    line: Option<Arc<dyn IrqLine>>,
    level: bool,
}

impl IrqOut {
    fn new(line: Option<Arc<dyn IrqLine>>) -> Self {
        Self { line, level: false }
    }

    /// Drives the line to `high` if that is a change.
    fn drive(&mut self, high: bool) {
        if high != self.level {
            self.level = high;
            if let Some(line) = &self.line {
                line.set_level(high);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Fakes shared by the UART tests.
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use axdevice_base::{ConsoleSink, IrqLine};
    use spin::Mutex;

    /// Records every byte transmitted.
    #[derive(Default)]
    pub struct RecordingSink(pub Mutex<Vec<u8>>);

    impl ConsoleSink for RecordingSink {
        fn write(&self, bytes: &[u8]) {
            self.0.lock().extend_from_slice(bytes);
        }
    }

    impl RecordingSink {
        pub fn take(&self) -> Vec<u8> {
            core::mem::take(&mut *self.0.lock())
        }
    }

    /// Records every level the device drives.
    #[derive(Default)]
    pub struct RecordingIrq(pub Mutex<Vec<bool>>);

    impl IrqLine for RecordingIrq {
        fn set_level(&self, high: bool) {
            self.0.lock().push(high);
        }
    }

    impl RecordingIrq {
        pub fn level(&self) -> bool {
            self.0.lock().last().copied().unwrap_or(false)
        }
        pub fn changes(&self) -> usize {
            self.0.lock().len()
        }
    }

    pub fn fakes() -> (Arc<RecordingSink>, Arc<RecordingIrq>) {
        (
            Arc::new(RecordingSink::default()),
            Arc::new(RecordingIrq::default()),
        )
    }
}

#[cfg(test)]
mod input_tests {
    use super::*;
    use alloc::vec;
    use axdevice_base::{AccessWidth, ConsoleSink, MmioDevice};

    struct Nowhere;
    impl ConsoleSink for Nowhere {
        fn write(&self, _: &[u8]) {}
    }

    #[test]
    fn feed_takes_what_fits_without_an_overrun() {
        let pl011 = Pl011::new(Arc::new(Nowhere), None);
        let many = vec![b'x'; PL011_RX_FIFO + 5];
        assert_eq!(UartInput::feed(&pl011, &many), PL011_RX_FIFO);
        assert_eq!(UartInput::feed(&pl011, b"y"), 0);
        assert_eq!(pl011.rx_room(), 0);
        // No overrun: RSR (offset 4) reads 0.
        assert_eq!(pl011.read(4, AccessWidth::Word).unwrap(), 0);

        let uart = Ns16550::new(Arc::new(Nowhere), None);
        let many = vec![b'x'; NS16550_RX_FIFO + 5];
        assert_eq!(UartInput::feed(&uart, &many), NS16550_RX_FIFO);
        assert_eq!(UartInput::feed(&uart, b"y"), 0);
        // No overrun: LSR (offset 5) has OE (bit 1) clear.
        assert_eq!(uart.read(5, AccessWidth::Byte).unwrap() & 2, 0);
    }
}
