//! The 16550 UART (8250 family), registers one byte apart (`reg-shift = 0`).

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU8, Ordering};

use axdevice_base::{AccessWidth, ConsoleSink, DeviceError, IrqLine, MmioDevice};
use log::debug;
use spin::Mutex;

use super::IrqOut;

/// Bytes of address space a 16550 claims unless [`Ns16550::with_size`] says otherwise.
pub const NS16550_SIZE: usize = 0x100;

/// Depth of the receive FIFO.
pub const NS16550_RX_FIFO: usize = 16;

// Register offsets (DLAB = 0 / DLAB = 1).
const RBR_THR_DLL: usize = 0;
const IER_DLM: usize = 1;
const IIR_FCR: usize = 2;
const LCR: usize = 3;
const MCR: usize = 4;
const LSR: usize = 5;
const MSR: usize = 6;
const SCR: usize = 7;
/// Number of registers.
const NREGS: usize = 8;

// IER bits.
const IER_ERBFI: u8 = 1 << 0;
const IER_ETBEI: u8 = 1 << 1;
const IER_ELSI: u8 = 1 << 2;
const IER_MASK: u8 = 0x0f;

// IIR values.
const IIR_NO_INT: u8 = 0x01;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_RLSI: u8 = 0x06;
const IIR_FIFO_ENABLED: u8 = 0xc0;

// FCR bits.
const FCR_ENABLE: u8 = 1 << 0;
const FCR_CLEAR_RX: u8 = 1 << 1;

// LCR bits.
const LCR_DLAB: u8 = 1 << 7;

// MCR bits.
const MCR_LOOP: u8 = 1 << 4;
const MCR_MASK: u8 = 0x1f;

// LSR bits.
const LSR_DR: u8 = 1 << 0;
const LSR_OE: u8 = 1 << 1;
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;

// MSR bits.
const MSR_CTS: u8 = 1 << 4;
const MSR_DSR: u8 = 1 << 5;
const MSR_DCD: u8 = 1 << 7;

/// An emulated 16550 UART.
///
/// Eight byte registers at offsets 0..7 (`reg-shift = 0`); the device claims
/// [`NS16550_SIZE`] bytes by default and offsets 8 and above inside it read as 0 and ignore
/// writes. The same model serves at I/O ports (a PC's COM port: `DeviceSet::add_port` with
/// [`Ns16550::with_size`]`(8)`, one port per register). Accesses wider than a byte act on the **low byte** only (a read returns the
/// register zero-extended, a write uses `value & 0xff`) instead of failing, so a guest that
/// uses 32-bit accessors on a `reg-shift = 0` UART still works; an access that reaches past
/// the device's size is [`DeviceError::BadOffset`].
///
/// | offset | DLAB=0 read | DLAB=0 write | DLAB=1 |
/// |---|---|---|---|
/// | 0 | RBR: next received byte (0 when none) | THR: to the console at once | DLL (stored) |
/// | 1 | IER (4 bits) | IER | DLM (stored) |
/// | 2 | IIR | FCR: bit 0 FIFO enable (IIR bits 7:6), bit 1 clears the RX FIFO | same |
/// | 3 | LCR; bit 7 is DLAB | LCR | same |
/// | 4 | MCR (5 bits) | MCR; bit 4 loopback: THR goes to RBR, MSR mirrors MCR | same |
/// | 5 | LSR: THRE and TEMT always, DR when input is waiting, OE after an overrun (cleared by the read) | ignored | same |
/// | 6 | MSR: CTS, DSR, DCD (or the loopback mirror) | ignored | same |
/// | 7 | SCR (stored) | SCR | same |
///
/// Interrupts, highest priority first, each only when enabled in IER: receiver line status
/// (overrun, ELSI), received data (ERBFI, any byte waiting: the FCR trigger level is not
/// modelled), transmitter empty (ETBEI; pending after each THR write and when ETBEI is
/// turned on, cleared by reading IIR while it is the reported source — as on real parts).
/// The interrupt line is high whenever IIR reports an interrupt. MCR.OUT2 does not gate it.
pub struct Ns16550 {
    console: Arc<dyn ConsoleSink>,
    size: usize,
    state: Mutex<State>,
    /// LSR as of the last change, published under the lock: drivers poll LSR before every
    /// byte, and while it shows no overrun (whose read clears it) it is answered from here
    /// without the lock.
    lsr: AtomicU8,
}

struct State {
    rx: VecDeque<u8>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fifo_enabled: bool,
    overrun: bool,
    thr_pending: bool,
    irq: IrqOut,
}

impl State {
    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn iir(&self) -> u8 {
        let id = if self.ier & IER_ELSI != 0 && self.overrun {
            IIR_RLSI
        } else if self.ier & IER_ERBFI != 0 && !self.rx.is_empty() {
            IIR_RDI
        } else if self.ier & IER_ETBEI != 0 && self.thr_pending {
            IIR_THRI
        } else {
            IIR_NO_INT
        };
        if self.fifo_enabled {
            id | IIR_FIFO_ENABLED
        } else {
            id
        }
    }

    fn lsr(&self) -> u8 {
        let mut lsr = LSR_THRE | LSR_TEMT;
        if !self.rx.is_empty() {
            lsr |= LSR_DR;
        }
        if self.overrun {
            lsr |= LSR_OE;
        }
        lsr
    }

    fn msr(&self) -> u8 {
        if self.mcr & MCR_LOOP != 0 {
            // DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD
            ((self.mcr & 0x1) << 5)
                | ((self.mcr & 0x2) << 3)
                | ((self.mcr & 0x4) << 4)
                | ((self.mcr & 0x8) << 4)
        } else {
            MSR_DCD | MSR_DSR | MSR_CTS
        }
    }

    fn receive(&mut self, byte: u8) -> bool {
        if self.rx.len() < NS16550_RX_FIFO {
            self.rx.push_back(byte);
            true
        } else {
            self.overrun = true;
            false
        }
    }

    fn update_irq(&mut self) {
        let high = self.iir() & IIR_NO_INT == 0;
        self.irq.drive(high);
    }
}

impl Ns16550 {
    /// A 16550 in its reset state claiming [`NS16550_SIZE`] bytes, transmitting to `console`
    /// and driving `irq` (if any).
    pub fn new(console: Arc<dyn ConsoleSink>, irq: Option<Arc<dyn IrqLine>>) -> Self {
        Self {
            console,
            size: NS16550_SIZE,
            state: Mutex::new(State {
                rx: VecDeque::with_capacity(NS16550_RX_FIFO),
                ier: 0,
                lcr: 0,
                mcr: 0,
                scr: 0,
                dll: 0,
                dlm: 0,
                fifo_enabled: false,
                overrun: false,
                thr_pending: false,
                irq: IrqOut::new(irq),
            }),
            lsr: AtomicU8::new(LSR_THRE | LSR_TEMT),
        }
    }

    /// The same device claiming `size` bytes instead (at least 8, the register count;
    /// smaller values are raised to 8).
    pub fn with_size(mut self, size: usize) -> Self {
        self.size = size.max(NREGS);
        self
    }

    /// Feeds bytes the guest will receive. Returns how many fit in the RX FIFO; the rest are
    /// dropped and flagged as an overrun (LSR.OE).
    pub fn push_input(&self, bytes: &[u8]) -> usize {
        let mut s = self.state.lock();
        let mut taken = 0;
        for &b in bytes {
            if !s.receive(b) {
                break;
            }
            taken += 1;
        }
        s.update_irq();
        self.publish_lsr(&s);
        taken
    }

    /// How many more received bytes the receive FIFO holds.
    pub fn rx_room(&self) -> usize {
        NS16550_RX_FIFO.saturating_sub(self.state.lock().rx.len())
    }

    /// Whether the interrupt output is high.
    pub fn irq_level(&self) -> bool {
        self.state.lock().irq.level
    }

    /// Publishes LSR after a change; called with the lock held, so the stores follow the
    /// changes in order.
    fn publish_lsr(&self, s: &State) {
        self.lsr.store(s.lsr(), Ordering::Relaxed);
    }

    fn check(&self, offset: usize, width: AccessWidth) -> Result<(), DeviceError> {
        match offset.checked_add(width.size()) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(DeviceError::BadOffset),
        }
    }

    /// A register read under the lock (every read but LSR's with nothing to clear): out
    /// of line, so that the lock-free LSR read of a polling guest stays small.
    #[inline(never)]
    fn read_locked(&self, offset: usize) -> u8 {
        let mut s = self.state.lock();
        let value = match offset {
            RBR_THR_DLL if s.dlab() => s.dll,
            RBR_THR_DLL => {
                let b = s.rx.pop_front().unwrap_or(0);
                s.update_irq();
                b
            }
            IER_DLM if s.dlab() => s.dlm,
            IER_DLM => s.ier,
            IIR_FCR => {
                let iir = s.iir();
                if iir & 0x0f == IIR_THRI {
                    s.thr_pending = false;
                    s.update_irq();
                }
                iir
            }
            LCR => s.lcr,
            MCR => s.mcr,
            LSR => {
                let lsr = s.lsr();
                s.overrun = false;
                s.update_irq();
                lsr
            }
            MSR => s.msr(),
            SCR => s.scr,
            _ => {
                debug!("ns16550: read of unimplemented offset {offset:#x}");
                0
            }
        };
        self.publish_lsr(&s);
        value
    }
}

impl MmioDevice for Ns16550 {
    fn name(&self) -> &str {
        "ns16550"
    }

    fn size(&self) -> usize {
        self.size
    }

    fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        self.check(offset, width)?;
        if offset == LSR {
            let lsr = self.lsr.load(Ordering::Relaxed);
            if lsr & LSR_OE == 0 {
                // Nothing for the read to clear.
                return Ok(u64::from(lsr));
            }
        }
        Ok(u64::from(self.read_locked(offset)))
    }

    fn write(&self, offset: usize, width: AccessWidth, value: u64) -> Result<(), DeviceError> {
        self.check(offset, width)?;
        let v = (value & 0xff) as u8;
        let mut s = self.state.lock();
        match offset {
            RBR_THR_DLL if s.dlab() => s.dll = v,
            RBR_THR_DLL => {
                if s.mcr & MCR_LOOP != 0 {
                    s.receive(v);
                } else {
                    self.console.write(&[v]);
                }
                // Sent at once: the holding register is empty again.
                s.thr_pending = true;
            }
            IER_DLM if s.dlab() => s.dlm = v,
            IER_DLM => {
                let old = s.ier;
                s.ier = v & IER_MASK;
                if (old ^ s.ier) & IER_ETBEI != 0 {
                    // Turning ETBEI on with an empty THR raises THRE at once.
                    s.thr_pending = s.ier & IER_ETBEI != 0;
                }
            }
            IIR_FCR => {
                let enable = v & FCR_ENABLE != 0;
                if enable != s.fifo_enabled || v & FCR_CLEAR_RX != 0 {
                    // Changing the FIFO mode resets the FIFOs, as on real parts.
                    s.rx.clear();
                }
                s.fifo_enabled = enable;
            }
            LCR => s.lcr = v,
            MCR => s.mcr = v & MCR_MASK,
            SCR => s.scr = v,
            _ => debug!("ns16550: write {v:#x} to read-only or unimplemented offset {offset:#x}"),
        }
        s.update_irq();
        self.publish_lsr(&s);
        Ok(())
    }
}

impl core::fmt::Debug for Ns16550 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ns16550")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uart::testutil::{fakes, RecordingIrq, RecordingSink};
    use AccessWidth::*;

    fn uart() -> (Ns16550, Arc<RecordingSink>, Arc<RecordingIrq>) {
        let (sink, irq) = fakes();
        let u = Ns16550::new(sink.clone(), Some(irq.clone()));
        (u, sink, irq)
    }

    fn rd(u: &Ns16550, off: usize) -> u8 {
        let v = u.read(off, Byte).unwrap();
        assert!(v <= 0xff);
        v as u8
    }

    fn wr(u: &Ns16550, off: usize, v: u8) {
        u.write(off, Byte, u64::from(v)).unwrap()
    }

    #[test]
    fn name_size_reset() {
        let (u, _, irq) = uart();
        assert_eq!(u.name(), "ns16550");
        assert_eq!(u.size(), 0x100);
        assert_eq!(rd(&u, LSR), LSR_THRE | LSR_TEMT);
        assert_eq!(rd(&u, IIR_FCR), IIR_NO_INT);
        assert_eq!(rd(&u, IER_DLM), 0);
        assert_eq!(rd(&u, LCR), 0);
        assert_eq!(rd(&u, MCR), 0);
        assert_eq!(rd(&u, MSR), MSR_DCD | MSR_DSR | MSR_CTS);
        assert_eq!(irq.changes(), 0);
        assert_eq!(u.with_size(4).size(), 8);
    }

    #[test]
    fn thr_write_goes_to_console() {
        let (u, sink, _) = uart();
        for &b in b"PASS\r\n" {
            wr(&u, RBR_THR_DLL, b);
        }
        // wider write: low byte only
        u.write(RBR_THR_DLL, Word, 0x1234_5600 | u64::from(b'!'))
            .unwrap();
        u.write(RBR_THR_DLL, Dword, u64::MAX).unwrap();
        assert_eq!(sink.take(), b"PASS\r\n!\xff");
        assert_eq!(rd(&u, LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    }

    #[test]
    fn dlab_switches_divisor_latches() {
        let (u, sink, _) = uart();
        wr(&u, IER_DLM, IER_ERBFI);
        wr(&u, LCR, 0x83); // DLAB | 8N1
        assert_eq!(rd(&u, LCR), 0x83);
        wr(&u, RBR_THR_DLL, 0x01);
        wr(&u, IER_DLM, 0x02);
        assert_eq!(rd(&u, RBR_THR_DLL), 0x01);
        assert_eq!(rd(&u, IER_DLM), 0x02);
        assert!(sink.take().is_empty(), "DLL write must not transmit");
        // input waiting is not consumed by a DLL read
        u.push_input(b"k");
        assert_eq!(rd(&u, RBR_THR_DLL), 0x01);
        wr(&u, LCR, 0x03);
        assert_eq!(rd(&u, IER_DLM), IER_ERBFI, "IER kept while DLAB was set");
        assert_eq!(rd(&u, RBR_THR_DLL), b'k');
        wr(&u, RBR_THR_DLL, b'z');
        assert_eq!(sink.take(), b"z");
        // latches survive
        wr(&u, LCR, 0x80);
        assert_eq!((rd(&u, 0), rd(&u, 1)), (0x01, 0x02));
    }

    #[test]
    fn lsr_data_ready_and_overrun() {
        let (u, _, _) = uart();
        assert_eq!(rd(&u, RBR_THR_DLL), 0);
        u.push_input(b"ab");
        assert_eq!(rd(&u, LSR), LSR_THRE | LSR_TEMT | LSR_DR);
        assert_eq!(rd(&u, RBR_THR_DLL), b'a');
        assert_eq!(rd(&u, RBR_THR_DLL), b'b');
        assert_eq!(rd(&u, LSR), LSR_THRE | LSR_TEMT);
        let many = [b'x'; 20];
        assert_eq!(u.push_input(&many), NS16550_RX_FIFO);
        assert_eq!(rd(&u, LSR), LSR_THRE | LSR_TEMT | LSR_DR | LSR_OE);
        assert_eq!(
            rd(&u, LSR),
            LSR_THRE | LSR_TEMT | LSR_DR,
            "OE clears on read"
        );
        // LSR/MSR are read-only
        wr(&u, LSR, 0);
        wr(&u, MSR, 0);
        assert_eq!(rd(&u, LSR), LSR_THRE | LSR_TEMT | LSR_DR);
        assert_eq!(rd(&u, MSR), MSR_DCD | MSR_DSR | MSR_CTS);
    }

    #[test]
    fn iir_thr_empty_interrupt() {
        let (u, _, irq) = uart();
        wr(&u, IER_DLM, IER_ETBEI);
        assert!(irq.level());
        assert_eq!(rd(&u, IIR_FCR), IIR_THRI);
        // reading IIR while THRI is the source clears it
        assert_eq!(rd(&u, IIR_FCR), IIR_NO_INT);
        assert!(!irq.level());
        // each transmit makes it pending again
        wr(&u, RBR_THR_DLL, b'a');
        assert!(irq.level());
        assert_eq!(rd(&u, IIR_FCR), IIR_THRI);
        wr(&u, RBR_THR_DLL, b'b');
        assert!(irq.level());
        // turning ETBEI off lowers the line
        wr(&u, IER_DLM, 0);
        assert!(!irq.level());
        assert_eq!(rd(&u, IIR_FCR), IIR_NO_INT);
        // without ETBEI a transmit raises nothing
        wr(&u, RBR_THR_DLL, b'c');
        assert!(!irq.level());
        assert_eq!(*irq.0.lock(), [true, false, true, false, true, false]);
    }

    #[test]
    fn iir_rx_data_and_priority() {
        let (u, _, irq) = uart();
        wr(&u, IER_DLM, IER_ERBFI);
        assert!(!irq.level());
        u.push_input(b"q");
        assert!(irq.level());
        assert_eq!(rd(&u, IIR_FCR), IIR_RDI);
        assert_eq!(
            rd(&u, IIR_FCR),
            IIR_RDI,
            "reading IIR does not clear RX data"
        );
        assert_eq!(rd(&u, RBR_THR_DLL), b'q');
        assert!(!irq.level());
        assert_eq!(rd(&u, IIR_FCR), IIR_NO_INT);
        // RX data outranks THR empty; line status outranks both
        wr(&u, IER_DLM, IER_ERBFI | IER_ETBEI | IER_ELSI);
        u.push_input(&[0u8; NS16550_RX_FIFO + 1]);
        assert_eq!(rd(&u, IIR_FCR), IIR_RLSI);
        rd(&u, LSR);
        assert_eq!(rd(&u, IIR_FCR), IIR_RDI);
        for _ in 0..NS16550_RX_FIFO {
            rd(&u, RBR_THR_DLL);
        }
        assert_eq!(rd(&u, IIR_FCR), IIR_THRI);
        assert_eq!(rd(&u, IIR_FCR), IIR_NO_INT);
        assert!(!irq.level());
    }

    #[test]
    fn fcr_fifo_bits() {
        let (u, _, _) = uart();
        wr(&u, IIR_FCR, FCR_ENABLE);
        assert_eq!(rd(&u, IIR_FCR), IIR_FIFO_ENABLED | IIR_NO_INT);
        u.push_input(b"abc");
        wr(&u, IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
        assert_eq!(rd(&u, LSR) & LSR_DR, 0);
        u.push_input(b"abc");
        wr(&u, IIR_FCR, 0);
        assert_eq!(rd(&u, LSR) & LSR_DR, 0, "disabling the FIFO resets it");
        assert_eq!(rd(&u, IIR_FCR), IIR_NO_INT);
    }

    #[test]
    fn loopback_and_scratch() {
        let (u, sink, _) = uart();
        wr(&u, MCR, MCR_LOOP | 0x0a); // the 8250 autoconfig probe
        assert_eq!(rd(&u, MSR) & 0xf0, 0x90);
        wr(&u, MCR, MCR_LOOP | 0x05);
        assert_eq!(rd(&u, MSR) & 0xf0, 0x60);
        wr(&u, RBR_THR_DLL, b'L');
        assert!(sink.take().is_empty());
        assert_eq!(rd(&u, RBR_THR_DLL), b'L');
        wr(&u, MCR, 0xff);
        assert_eq!(rd(&u, MCR), 0x1f);
        wr(&u, SCR, 0xa5);
        assert_eq!(rd(&u, SCR), 0xa5);
    }

    #[test]
    fn wide_reads_return_the_register_byte() {
        let (u, _, _) = uart();
        wr(&u, SCR, 0x7e);
        assert_eq!(u.read(SCR, Word).unwrap(), 0x7e);
        assert_eq!(u.read(LSR, Dword).unwrap(), u64::from(LSR_THRE | LSR_TEMT));
    }

    #[test]
    fn offsets_beyond_registers_and_size() {
        let (u, _, _) = uart();
        assert_eq!(rd(&u, 8), 0);
        wr(&u, 0xff, 1);
        assert_eq!(rd(&u, 0xff), 0);
        assert_eq!(u.read(0x100, Byte), Err(DeviceError::BadOffset));
        assert_eq!(u.read(0xfe, Word), Err(DeviceError::BadOffset));
        assert_eq!(u.write(usize::MAX, Byte, 0), Err(DeviceError::BadOffset));
        assert_eq!(
            u.write(usize::MAX - 3, Dword, 0),
            Err(DeviceError::BadOffset)
        );
        let small = uart().0.with_size(8);
        assert_eq!(small.read(7, Byte), Ok(0));
        assert_eq!(small.read(8, Byte), Err(DeviceError::BadOffset));
        assert_eq!(small.read(7, Half), Err(DeviceError::BadOffset));
    }

    #[test]
    fn no_panic_on_any_offset_or_width() {
        let (u, _, _) = uart();
        u.push_input(b"data");
        let mut offsets: alloc::vec::Vec<usize> = (0..0x200).collect();
        offsets.extend([usize::MAX, usize::MAX - 1, usize::MAX - 7, 1 << 40]);
        for &off in &offsets {
            for w in AccessWidth::ALL {
                for v in [0, u64::MAX, 0x80, 0x5a5a_5a5a_5a5a_5a5a] {
                    let _ = u.write(off, w, v);
                    let _ = u.read(off, w);
                }
            }
        }
    }
}
