//! The Arm PrimeCell UART (PL011), as a guest driver sees it.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};

use axdevice_base::{AccessWidth, ConsoleSink, DeviceError, IrqLine, MmioDevice};
use log::debug;
use spin::Mutex;

use super::IrqOut;

/// Bytes of address space a PL011 claims (one 4 KiB page).
pub const PL011_SIZE: usize = 0x1000;

/// Depth of the receive FIFO.
pub const PL011_RX_FIFO: usize = 32;

// Register offsets.
const DR: usize = 0x000;
const RSR_ECR: usize = 0x004;
const FR: usize = 0x018;
const ILPR: usize = 0x020;
const IBRD: usize = 0x024;
const FBRD: usize = 0x028;
const LCR_H: usize = 0x02c;
const CR: usize = 0x030;
const IFLS: usize = 0x034;
const IMSC: usize = 0x038;
const RIS: usize = 0x03c;
const MIS: usize = 0x040;
const ICR: usize = 0x044;
const DMACR: usize = 0x048;
const ID_START: usize = 0xfe0;

/// PeriphID0..3 then CellID0..3 (offsets 0xFE0..0xFFC): an Arm PL011 r1p5.
const ID_BYTES: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

// FR bits.
// Never set: the transmitter is never busy (BUSY, bit 3) or full (TXFF, bit 5).
#[cfg(test)]
const FR_BUSY: u32 = 1 << 3;
const FR_RXFE: u32 = 1 << 4;
#[cfg(test)]
const FR_TXFF: u32 = 1 << 5;
const FR_RXFF: u32 = 1 << 6;
const FR_TXFE: u32 = 1 << 7;

// Interrupt bits (IMSC, RIS, MIS, ICR).
const INT_RX: u32 = 1 << 4;
const INT_TX: u32 = 1 << 5;
const INT_RT: u32 = 1 << 6;
const INT_OE: u32 = 1 << 10;
const INT_MASK: u32 = 0x7ff;

// RSR bits.
const RSR_OE: u32 = 1 << 3;

// LCR_H bits.
const LCR_H_FEN: u32 = 1 << 4;

/// Reset values.
const CR_RESET: u32 = 0x300; // TXE | RXE
const IFLS_RESET: u32 = 0x12; // both FIFOs at 1/2

/// An emulated PL011 UART.
///
/// Registers (offsets from the device's start; all 32-bit registers at 4-byte-aligned offsets;
/// byte, halfword and word accesses are accepted, 64-bit accesses are [`DeviceError::BadWidth`],
/// offsets that are not a multiple of 4 are [`DeviceError::Misaligned`]):
///
/// | offset | name | behaviour |
/// |---|---|---|
/// | 0x000 | DR | write: the low byte goes to the console at once, RIS.TX is set; read: the next received byte, 0 when none |
/// | 0x004 | RSR/ECR | read: receive status (OE after an RX overrun); any write clears it |
/// | 0x018 | FR | TXFE set, TXFF and BUSY clear; RXFE when nothing received, RXFF when the RX FIFO is full |
/// | 0x020 | ILPR | stored (8 bits) |
/// | 0x024 | IBRD | stored (16 bits) |
/// | 0x028 | FBRD | stored (6 bits) |
/// | 0x02c | LCR_H | stored (8 bits); FEN selects the RX trigger level (off: every byte) |
/// | 0x030 | CR | stored (16 bits, reset 0x300); transmit and receive work whatever it says |
/// | 0x034 | IFLS | stored (6 bits, reset 0x12); RX level 1/8..7/8 of the 32-byte FIFO |
/// | 0x038 | IMSC | interrupt mask (11 bits) |
/// | 0x03c | RIS | raw status: TX (after a transmit, until cleared), RX (FIFO at or above the trigger level), RT (FIFO not empty but below it: the receive timeout is emulated as immediate), OE (overrun) |
/// | 0x040 | MIS | RIS & IMSC |
/// | 0x044 | ICR | write 1 to clear TX, OE (RX and RT follow the FIFO and clear when it is read) |
/// | 0x048 | DMACR | stored (3 bits); no DMA is done |
/// | 0xFE0..0xFFC | PeriphID0-3, CellID0-3 | 0x11 0x10 0x14 0x00, 0x0d 0xf0 0x05 0xb1 |
///
/// Any other offset below 0x1000 reads as 0 and ignores writes (logged at debug); offsets
/// at or beyond 0x1000 are [`DeviceError::BadOffset`]. The interrupt line is high exactly
/// when `RIS & IMSC != 0`.
pub struct Pl011 {
    console: Arc<dyn ConsoleSink>,
    state: Mutex<State>,
    /// FR as `State::fr` computes it, stored under the lock whenever the RX FIFO changes.
    /// A driver polls FR before every byte it sends or takes, so FR is read without the
    /// lock (a read has no side effect, and one racing with a change of the FIFO sees it
    /// before or after, as on hardware).
    fr: AtomicU32,
}

struct State {
    rx: VecDeque<u8>,
    rsr: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    /// Latched interrupt bits (TX, OE); RX and RT are derived from the FIFO.
    ris_latched: u32,
    dmacr: u32,
    irq: IrqOut,
}

impl State {
    /// How many received bytes raise RX.
    fn rx_trigger(&self) -> usize {
        if self.lcr_h & LCR_H_FEN == 0 {
            return 1;
        }
        match (self.ifls >> 3) & 0x7 {
            0 => PL011_RX_FIFO / 8,
            1 => PL011_RX_FIFO / 4,
            3 => PL011_RX_FIFO * 3 / 4,
            4 => PL011_RX_FIFO * 7 / 8,
            _ => PL011_RX_FIFO / 2, // 2, and the reserved values
        }
    }

    fn ris(&self) -> u32 {
        let level = self.rx.len();
        let rx = if level == 0 {
            0
        } else if level >= self.rx_trigger() {
            INT_RX
        } else {
            INT_RT
        };
        (self.ris_latched | rx) & INT_MASK
    }

    fn mis(&self) -> u32 {
        self.ris() & self.imsc
    }

    fn fr(&self) -> u32 {
        let mut fr = FR_TXFE;
        if self.rx.is_empty() {
            fr |= FR_RXFE;
        }
        if self.rx.len() >= PL011_RX_FIFO {
            fr |= FR_RXFF;
        }
        fr
    }

    fn update_irq(&mut self) {
        let high = self.mis() != 0;
        self.irq.drive(high);
    }
}

impl Pl011 {
    /// A PL011 in its reset state that transmits to `console` and drives `irq` (if any).
    pub fn new(console: Arc<dyn ConsoleSink>, irq: Option<Arc<dyn IrqLine>>) -> Self {
        Self {
            console,
            state: Mutex::new(State {
                rx: VecDeque::with_capacity(PL011_RX_FIFO),
                rsr: 0,
                ilpr: 0,
                ibrd: 0,
                fbrd: 0,
                lcr_h: 0,
                cr: CR_RESET,
                ifls: IFLS_RESET,
                imsc: 0,
                ris_latched: 0,
                dmacr: 0,
                irq: IrqOut::new(irq),
            }),
            fr: AtomicU32::new(FR_TXFE | FR_RXFE),
        }
    }

    /// Publishes FR after a change of the RX FIFO; called with the lock held, so the stores
    /// follow the changes in order.
    fn publish_fr(&self, s: &State) {
        self.fr.store(s.fr(), Ordering::Relaxed);
    }

    /// Feeds bytes the guest will receive. Returns how many fit in the RX FIFO; the rest are
    /// dropped and flagged as an overrun (RIS.OE, RSR.OE).
    pub fn push_input(&self, bytes: &[u8]) -> usize {
        let mut s = self.state.lock();
        let room = PL011_RX_FIFO.saturating_sub(s.rx.len());
        let taken = bytes.len().min(room);
        s.rx.extend(bytes.iter().take(taken));
        self.publish_fr(&s);
        if taken < bytes.len() {
            s.ris_latched |= INT_OE;
            s.rsr |= RSR_OE;
        }
        s.update_irq();
        taken
    }

    /// How many more received bytes the RX FIFO holds.
    pub fn rx_room(&self) -> usize {
        PL011_RX_FIFO.saturating_sub(self.state.lock().rx.len())
    }

    /// Whether the interrupt output is high.
    pub fn irq_level(&self) -> bool {
        self.state.lock().irq.level
    }

    /// Checks an access and returns the register offset.
    fn check(offset: usize, width: AccessWidth) -> Result<usize, DeviceError> {
        match offset.checked_add(width.size()) {
            Some(end) if end <= PL011_SIZE => {}
            _ => return Err(DeviceError::BadOffset),
        }
        if width == AccessWidth::Dword {
            return Err(DeviceError::BadWidth);
        }
        if !offset.is_multiple_of(4) {
            return Err(DeviceError::Misaligned);
        }
        Ok(offset)
    }
}

impl MmioDevice for Pl011 {
    fn name(&self) -> &str {
        "pl011"
    }

    fn size(&self) -> usize {
        PL011_SIZE
    }

    fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        // FR, the register drivers poll, first: its offset is in range and aligned, so only
        // the width needs checking. (The device set masks what a read returns to its width.)
        if offset == FR && width != AccessWidth::Dword {
            return Ok(u64::from(self.fr.load(Ordering::Relaxed)));
        }
        let reg = Self::check(offset, width)?;
        let mut s = self.state.lock();
        let value: u32 = match reg {
            DR => {
                let byte = s.rx.pop_front().unwrap_or(0);
                self.publish_fr(&s);
                s.update_irq();
                u32::from(byte)
            }
            RSR_ECR => s.rsr,
            FR => s.fr(),
            ILPR => s.ilpr,
            IBRD => s.ibrd,
            FBRD => s.fbrd,
            LCR_H => s.lcr_h,
            CR => s.cr,
            IFLS => s.ifls,
            IMSC => s.imsc,
            RIS => s.ris(),
            MIS => s.mis(),
            DMACR => s.dmacr,
            ID_START..=PL011_SIZE => ID_BYTES
                .get((reg - ID_START) / 4)
                .copied()
                .map_or(0, u32::from),
            _ => {
                debug!("pl011: read of unimplemented offset {reg:#x}");
                0
            }
        };
        Ok(u64::from(value) & width.mask())
    }

    fn write(&self, offset: usize, width: AccessWidth, value: u64) -> Result<(), DeviceError> {
        let reg = Self::check(offset, width)?;
        // Registers are at most 32 bits; a narrower access writes only its own bits.
        let v = (value & width.mask()) as u32;
        let mut s = self.state.lock();
        match reg {
            DR => {
                self.console.write(&[v as u8]);
                s.ris_latched |= INT_TX;
            }
            RSR_ECR => s.rsr = 0,
            ILPR => s.ilpr = v & 0xff,
            IBRD => s.ibrd = v & 0xffff,
            FBRD => s.fbrd = v & 0x3f,
            LCR_H => s.lcr_h = v & 0xff,
            CR => s.cr = v & 0xffff,
            IFLS => s.ifls = v & 0x3f,
            IMSC => s.imsc = v & INT_MASK,
            ICR => s.ris_latched &= !(v & INT_MASK),
            DMACR => s.dmacr = v & 0x7,
            _ => debug!("pl011: write {v:#x} to read-only or unimplemented offset {reg:#x}"),
        }
        s.update_irq();
        Ok(())
    }
}

impl core::fmt::Debug for Pl011 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pl011").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uart::testutil::{fakes, RecordingIrq, RecordingSink};
    use AccessWidth::*;

    fn uart() -> (Pl011, Arc<RecordingSink>, Arc<RecordingIrq>) {
        let (sink, irq) = fakes();
        let u = Pl011::new(sink.clone(), Some(irq.clone()));
        (u, sink, irq)
    }

    fn rd(u: &Pl011, off: usize) -> u64 {
        u.read(off, Word).unwrap()
    }

    fn wr(u: &Pl011, off: usize, v: u64) {
        u.write(off, Word, v).unwrap()
    }

    #[test]
    fn name_and_size() {
        let (u, _, _) = uart();
        assert_eq!(u.name(), "pl011");
        assert_eq!(u.size(), 0x1000);
    }

    #[test]
    fn reset_values() {
        let (u, _, irq) = uart();
        assert_eq!(rd(&u, FR), u64::from(FR_TXFE | FR_RXFE));
        assert_eq!(rd(&u, CR), 0x300);
        assert_eq!(rd(&u, IFLS), 0x12);
        for r in [RSR_ECR, ILPR, IBRD, FBRD, LCR_H, IMSC, RIS, MIS, ICR, DMACR] {
            assert_eq!(rd(&u, r), 0, "offset {r:#x}");
        }
        assert_eq!(irq.changes(), 0);
    }

    #[test]
    fn dr_write_transmits_low_byte_with_any_width() {
        let (u, sink, _) = uart();
        wr(&u, DR, u64::from(b'h'));
        u.write(DR, Byte, u64::from(b'i')).unwrap();
        u.write(DR, Half, 0x1200 | u64::from(b'!')).unwrap();
        u.write(DR, Word, 0xdead_be00 | u64::from(b'\n')).unwrap();
        assert_eq!(sink.take(), b"hi!\n");
        // FR after transmitting: still empty, not busy, not full
        let fr = rd(&u, FR) as u32;
        assert_ne!(fr & FR_TXFE, 0);
        assert_eq!(fr & (FR_TXFF | FR_BUSY), 0);
    }

    #[test]
    fn dr_read_returns_input_then_zero() {
        let (u, _, _) = uart();
        assert_eq!(rd(&u, DR), 0);
        assert_eq!(u.push_input(b"ab"), 2);
        assert_eq!(rd(&u, FR) as u32 & FR_RXFE, 0);
        assert_eq!(rd(&u, DR), u64::from(b'a'));
        assert_eq!(u.read(DR, Byte).unwrap(), u64::from(b'b'));
        assert_eq!(rd(&u, DR), 0);
        assert_ne!(rd(&u, FR) as u32 & FR_RXFE, 0);
    }

    #[test]
    fn rx_fifo_full_and_overrun() {
        let (u, _, _) = uart();
        let data: alloc::vec::Vec<u8> = (0..40u8).collect();
        assert_eq!(u.push_input(&data), PL011_RX_FIFO);
        let fr = rd(&u, FR) as u32;
        assert_ne!(fr & FR_RXFF, 0);
        assert_eq!(fr & FR_RXFE, 0);
        assert_ne!(rd(&u, RIS) as u32 & INT_OE, 0);
        assert_eq!(rd(&u, RSR_ECR), u64::from(RSR_OE));
        // ECR write clears the receive status
        wr(&u, RSR_ECR, 0);
        assert_eq!(rd(&u, RSR_ECR), 0);
        // ICR clears OE
        wr(&u, ICR, u64::from(INT_OE));
        assert_eq!(rd(&u, RIS) as u32 & INT_OE, 0);
        // first 32 bytes come out in order
        for i in 0..PL011_RX_FIFO as u64 {
            assert_eq!(rd(&u, DR), i);
        }
        assert_ne!(rd(&u, FR) as u32 & FR_RXFE, 0);
        assert_eq!(u.push_input(b"x"), 1);
    }

    #[test]
    fn stored_registers_masked() {
        let (u, _, _) = uart();
        let cases = [
            (ILPR, 0xff),
            (IBRD, 0xffff),
            (FBRD, 0x3f),
            (LCR_H, 0xff),
            (CR, 0xffff),
            (IFLS, 0x3f),
            (IMSC, 0x7ff),
            (DMACR, 0x7),
        ];
        for (reg, mask) in cases {
            wr(&u, reg, 0xffff_ffff);
            assert_eq!(rd(&u, reg), mask, "offset {reg:#x}");
            wr(&u, reg, 0x5);
            assert_eq!(rd(&u, reg), 0x5 & mask, "offset {reg:#x}");
        }
        wr(&u, IMSC, 0);
        // IBRD/FBRD a Linux driver would set for 115200 at 24 MHz
        wr(&u, IBRD, 13);
        wr(&u, FBRD, 1);
        assert_eq!((rd(&u, IBRD), rd(&u, FBRD)), (13, 1));
        // narrow reads see the low bits
        wr(&u, CR, 0x0301);
        assert_eq!(u.read(CR, Byte).unwrap(), 0x01);
        assert_eq!(u.read(CR, Half).unwrap(), 0x0301);
        // read-only registers ignore writes
        wr(&u, FR, 0);
        wr(&u, RIS, 0xffff);
        wr(&u, MIS, 0xffff);
        assert_eq!(rd(&u, FR), u64::from(FR_TXFE | FR_RXFE));
        assert_eq!(rd(&u, RIS), 0);
    }

    #[test]
    fn primecell_ids() {
        let (u, _, _) = uart();
        let ids: alloc::vec::Vec<u64> = (0..8).map(|i| rd(&u, 0xfe0 + 4 * i)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        // as the amba bus assembles them
        let pid = (0..4).fold(0u64, |acc, i| acc | ids[i] << (8 * i));
        let cid = (0..4).fold(0u64, |acc, i| acc | ids[4 + i] << (8 * i));
        assert_eq!(pid, 0x0014_1011);
        assert_eq!(cid, 0xb105_f00d);
        // ID registers are read-only
        wr(&u, 0xfe0, 0);
        assert_eq!(rd(&u, 0xfe0), 0x11);
    }

    #[test]
    fn tx_interrupt_set_after_transmit_and_write_one_to_clear() {
        let (u, _, irq) = uart();
        wr(&u, DR, u64::from(b'x'));
        assert_eq!(rd(&u, RIS) as u32, INT_TX);
        assert_eq!(rd(&u, MIS), 0);
        assert!(!irq.level(), "masked: line stays low");
        wr(&u, IMSC, u64::from(INT_TX));
        assert_eq!(rd(&u, MIS) as u32, INT_TX);
        assert!(irq.level());
        assert!(u.irq_level());
        // writing 0 bits to ICR clears nothing
        wr(&u, ICR, 0);
        assert!(irq.level());
        wr(&u, ICR, u64::from(INT_TX));
        assert_eq!(rd(&u, RIS), 0);
        assert!(!irq.level());
        // transmit again: raised again
        wr(&u, DR, u64::from(b'y'));
        assert!(irq.level());
        // masking lowers it without clearing RIS
        wr(&u, IMSC, 0);
        assert!(!irq.level());
        assert_eq!(rd(&u, RIS) as u32, INT_TX);
        assert_eq!(*irq.0.lock(), [true, false, true, false]);
    }

    #[test]
    fn rx_interrupt_and_timeout() {
        let (u, _, irq) = uart();
        wr(&u, IMSC, u64::from(INT_RX | INT_RT));
        // FIFO off: every byte is RX
        u.push_input(b"a");
        assert_eq!(rd(&u, RIS) as u32, INT_RX);
        assert!(irq.level());
        rd(&u, DR);
        assert_eq!(rd(&u, RIS), 0);
        assert!(!irq.level());
        // FIFO on, trigger 1/2 (16 bytes): fewer is RT, 16 is RX
        wr(&u, LCR_H, u64::from(LCR_H_FEN));
        u.push_input(b"abc");
        assert_eq!(rd(&u, RIS) as u32, INT_RT);
        assert!(irq.level());
        u.push_input(&[b'z'; 13]);
        assert_eq!(rd(&u, RIS) as u32, INT_RX);
        assert_eq!(rd(&u, MIS) as u32, INT_RX);
        // reading below the trigger turns RX into RT, draining clears it
        rd(&u, DR);
        assert_eq!(rd(&u, RIS) as u32, INT_RT);
        for _ in 0..15 {
            rd(&u, DR);
        }
        assert_eq!(rd(&u, RIS), 0);
        assert!(!irq.level());
        // trigger 1/8 (4 bytes)
        wr(&u, IFLS, 0);
        u.push_input(b"1234");
        assert_eq!(rd(&u, RIS) as u32, INT_RX);
        // only RT unmasked: RX does not raise the line
        wr(&u, IMSC, u64::from(INT_RT));
        assert!(!irq.level());
    }

    #[test]
    fn rx_trigger_levels() {
        let (u, _, _) = uart();
        wr(&u, LCR_H, u64::from(LCR_H_FEN));
        for (sel, level) in [(0, 4), (1, 8), (2, 16), (3, 24), (4, 28), (5, 16), (7, 16)] {
            wr(&u, IFLS, sel << 3);
            assert_eq!(u.state.lock().rx_trigger(), level, "IFLS.RX {sel}");
        }
    }

    #[test]
    fn no_irq_line_is_fine() {
        let (sink, _) = fakes();
        let u = Pl011::new(sink.clone(), None);
        wr(&u, IMSC, 0x7ff);
        wr(&u, DR, u64::from(b'q'));
        u.push_input(b"r");
        assert!(u.irq_level());
        assert_eq!(sink.take(), b"q");
    }

    #[test]
    fn bad_accesses() {
        let (u, _, _) = uart();
        assert_eq!(u.read(0x1000, Byte), Err(DeviceError::BadOffset));
        assert_eq!(u.read(usize::MAX, Word), Err(DeviceError::BadOffset));
        assert_eq!(u.write(0x2000, Word, 0), Err(DeviceError::BadOffset));
        assert_eq!(u.read(0xffc, Dword), Err(DeviceError::BadOffset));
        assert_eq!(u.read(0x0, Dword), Err(DeviceError::BadWidth));
        assert_eq!(u.write(0x30, Dword, 0), Err(DeviceError::BadWidth));
        assert_eq!(u.read(0x1, Byte), Err(DeviceError::Misaligned));
        assert_eq!(u.write(0x32, Half, 0), Err(DeviceError::Misaligned));
        // unknown offsets inside the page: zero / ignored
        assert_eq!(rd(&u, 0x800), 0);
        wr(&u, 0x800, 0x1234);
        assert_eq!(rd(&u, 0x800), 0);
        assert_eq!(rd(&u, 0xffc), 0xb1);
    }

    #[test]
    fn no_panic_on_any_offset_or_width() {
        let (u, _, _) = uart();
        u.push_input(b"data");
        let mut offsets: alloc::vec::Vec<usize> = (0..0x1100).collect();
        offsets.extend([usize::MAX, usize::MAX - 1, usize::MAX - 7, 1 << 40]);
        for &off in &offsets {
            for w in AccessWidth::ALL {
                for v in [0, u64::MAX, 0x5a5a_5a5a_5a5a_5a5a] {
                    let _ = u.write(off, w, v);
                    let _ = u.read(off, w);
                }
            }
        }
    }
}
