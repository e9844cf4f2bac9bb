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
