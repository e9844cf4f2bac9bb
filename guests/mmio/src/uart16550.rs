//! The 16550 checks shared by riscv64 (its console, at 0x1000_0000) and x86_64 (its console
//! on ports 0x3F8..0x400, and a second 16550 mapped at an MMIO address): every register,
//! with the values docs/devices.md gives; through MMIO also with accesses of each width.

use grt::check::Checker;
use grt::mmio::{read16, read32, read64, read8, write16, write32, write64, write8};

/// Divisor latch low (offset 0 with LCR.DLAB set).
pub const DLL: usize = 0;
/// Interrupt enable register.
pub const IER: usize = 1;
/// Divisor latch high (offset 1 with LCR.DLAB set).
pub const DLM: usize = 1;
/// Interrupt identification register (read).
pub const IIR: usize = 2;
/// Line control register.
pub const LCR: usize = 3;
/// Modem control register.
pub const MCR: usize = 4;
/// Line status register.
pub const LSR: usize = 5;
/// Modem status register.
pub const MSR: usize = 6;
/// Scratch register.
pub const SCR: usize = 7;
/// LCR: divisor latch access.
pub const LCR_DLAB: u8 = 1 << 7;
/// LSR: data ready.
pub const LSR_DR: u8 = 1 << 0;
/// LSR: transmitter holding register and transmitter empty.
pub const LSR_THRE_TEMT: u8 = 0x60;

/// A 16550's registers, by byte.
pub trait Regs {
    /// Reads register `off`.
    fn r8(&self, off: usize) -> u8;
    /// Writes register `off`.
    fn w8(&self, off: usize, v: u8);
    /// The MMIO base, for the checks of wider accesses (`None` on ports).
    fn mmio_base(&self) -> Option<usize>;
}

/// A 16550 mapped at an MMIO address.
pub struct Mmio(pub usize);

impl Regs for Mmio {
    fn r8(&self, off: usize) -> u8 {
        // SAFETY: the address is this VM's 16550 (the caller's VM config); `check` reads
        // only offsets whose reads have the documented effects (RBR with no input waiting).
        unsafe { read8(self.0 + off) }
    }
    fn w8(&self, off: usize, v: u8) {
        // SAFETY: as in `r8`; `check` restores what it changes, and writes to offset 0
        // only with DLAB set (DLL), never to THR.
        unsafe { write8(self.0 + off, v) }
    }
    fn mmio_base(&self) -> Option<usize> {
        Some(self.0)
    }
}

/// A 16550 on I/O ports (x86_64).
#[cfg(target_arch = "x86_64")]
pub struct Ports(pub u16);

#[cfg(target_arch = "x86_64")]
impl Regs for Ports {
    fn r8(&self, off: usize) -> u8 {
        // SAFETY: as for `Mmio`, on the VM's 16550 at these ports.
        unsafe { grt::pio::inb(self.0 + off as u16) }
    }
    fn w8(&self, off: usize, v: u8) {
        // SAFETY: as for `Mmio`.
        unsafe { grt::pio::outb(self.0 + off as u16, v) }
    }
    fn mmio_base(&self) -> Option<usize> {
        None
    }
}

/// Checks the 16550 `uart` register by register (LSR, SCR, IER, IIR, LCR and the divisor
/// latch, MSR; through MMIO also accesses of each width to DLL and MCR and the offsets past
/// the registers), restoring what it changes.
pub fn check(c: &mut Checker, uart: &impl Regs) {
    let r8 = |off: usize| uart.r8(off);
    let w8 = |off: usize, v: u8| uart.w8(off, v);

    let lsr = r8(LSR);
    c.eq("LSR THRE|TEMT", lsr & LSR_THRE_TEMT, LSR_THRE_TEMT);
    c.eq("LSR DR (no input)", lsr & LSR_DR, 0);

    // SCR: a plain byte register.
    for v in [0x00, 0xff, 0xa5, 0x5a] {
        w8(SCR, v);
        c.eq(format_args!("SCR {v:#x}"), r8(SCR), v);
    }

    // IER keeps its low 4 bits.
    let saved_ier = r8(IER);
    w8(IER, 0x0f);
    c.eq("IER 0x0f", r8(IER), 0x0f);
    w8(IER, 0xf5);
    c.eq("IER 0xf5 keeps 4 bits", r8(IER), 0x05);
    w8(IER, 0);
    c.eq("IER 0", r8(IER), 0);
    // ETBEI on: IIR reports THR empty once (the read clears it), then nothing.
    w8(IER, 0x02);
    let iir1 = r8(IIR) & 0x0f;
    let iir2 = r8(IIR) & 0x0f;
    w8(IER, saved_ier);
    c.eq("IIR with ETBEI: THR empty", iir1, 0x02);
    c.eq("IIR read again: none", iir2, 0x01);

    // LCR and the divisor latch. Nothing may be printed while DLAB is set (THR would be
    // DLL): values are collected first and checked afterwards.
    let saved_lcr = r8(LCR);
    w8(LCR, 0x1b);
    let lcr = r8(LCR);
    w8(LCR, 0x03 | LCR_DLAB);
    let lcr_dlab = r8(LCR);
    w8(DLL, 0x42);
    w8(DLM, 0x24);
    let dll = r8(DLL);
    let dlm = r8(DLM);
    // Wider accesses act on the register at their address: the low byte.
    // SAFETY: DLAB is set, so offset 0 is DLL (no THR write, no RBR read); 16550
    // accesses wider than a byte act on the low byte only.
    let wide = uart.mmio_base().map(|base| unsafe {
        write64(base + DLL, 0xdead_beef_cafe_0099);
        let d64 = read64(base + DLL);
        write32(base + DLL, 0x1234_5688);
        let d32 = read32(base + DLL);
        write16(base + DLL, 0xff77);
        (read16(base + DLL), d32, d64)
    });
    let dlm_after_wide = r8(DLM);
    w8(LCR, 0x03);
    let ier_back = r8(IER);
    let rbr = r8(0);
    w8(LCR, saved_lcr);
    c.eq("LCR 0x1b", lcr, 0x1b);
    c.eq("LCR with DLAB", lcr_dlab, 0x83);
    c.eq("DLL", dll, 0x42);
    c.eq("DLM", dlm, 0x24);
    if let Some((dll16, dll32, dll64)) = wide {
        c.eq("DLL 64-bit write/read", dll64, 0x99);
        c.eq("DLL 32-bit write/read", dll32, 0x88);
        c.eq("DLL 16-bit write/read", dll16, 0x77);
        c.eq("DLM untouched by wide DLL writes", dlm_after_wide, 0x24);
    }
    c.eq(
        "DLAB off: offset 1 is IER again",
        ier_back,
        saved_ier & 0x0f,
    );
    c.eq("DLAB off: offset 0 is RBR (no input)", rbr, 0);
    // MSR: CTS, DSR and DCD set.
    c.eq("MSR", r8(MSR), 0xb0);

    if let Some(base) = uart.mmio_base() {
        check_wide(c, base);
    }
}

/// The wide accesses through MMIO to the 16550 at `base`: MCR, the offsets past the
/// registers.
fn check_wide(c: &mut Checker, base: usize) {
    let r8 = |off: usize| Mmio(base).r8(off);
    let w8 = |off: usize, v: u8| Mmio(base).w8(off, v);
    // Wide accesses to other registers: MCR (5 bits; bit 4, loopback, left clear).
    // SAFETY: offset 4 (MCR) is 4-byte aligned; MCR without loopback changes nothing
    // for the console, and it is restored.
    let (mcr32, mcr16, mcr8) = unsafe {
        let saved = read8(base + MCR);
        write32(base + MCR, 0xffff_ff0b);
        let m32 = read32(base + MCR);
        write16(base + MCR, 0xff03);
        let m16 = read16(base + MCR);
        let m8 = read8(base + MCR);
        write8(base + MCR, saved);
        (m32, m16, m8)
    };
    c.eq("MCR 32-bit", mcr32, 0x0b);
    c.eq("MCR 16-bit", mcr16, 0x03);
    c.eq("MCR 8-bit", mcr8, 0x03);
    // A wide read does not pick up the next registers (LSR has THRE|TEMT set).
    // SAFETY: offset 4 (MCR) is 4-byte aligned; reading MCR has no side effect.
    let mcr_wide = unsafe { read32(base + MCR) };
    c.eq(
        "32-bit read at 4 is MCR alone",
        mcr_wide,
        u32::from(r8(MCR)),
    );

    // Offsets 8 and up inside the window read as zero and ignore writes.
    w8(8, 0xff);
    c.eq("offset 8", r8(8), 0);
    // SAFETY: offset 0x10 is inside the 16550's window and past its registers.
    c.eq("offset 0x10 64-bit", unsafe { read64(base + 0x10) }, 0);
}
