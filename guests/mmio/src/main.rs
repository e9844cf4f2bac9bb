//! Checks the emulated console UART register by register, at every access width, with the
//! values docs/devices.md gives: the PL011 at 0x0900_0000 on aarch64, the 16550 at
//! 0x1000_0000 on riscv64. On aarch64 it also checks that the accesses the PL011 refuses (64
//! bits wide, or not at a multiple of 4) reach the guest as data aborts (the VM's unclaimed
//! policy is "fault"). Prints `PASS mmio` only if every check holds.
#![no_std]
#![no_main]

use grt::check::Checker;

#[no_mangle]
fn main() {
    let mut c = Checker::new("mmio");
    arch::run(&mut c);
    c.finish();
}

/// Data faults seen by [`on_fault`]: how many, and the last one's address and direction.
mod faults {
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use grt::trap::{DataFault, FaultAction};

    static COUNT: AtomicU64 = AtomicU64::new(0);
    static ADDR: AtomicU64 = AtomicU64::new(0);
    static WRITE: AtomicBool = AtomicBool::new(false);

    /// Records the fault and skips the faulting instruction.
    pub fn on_fault(f: &DataFault) -> FaultAction {
        COUNT.store(COUNT.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
        ADDR.store(f.addr, Ordering::SeqCst);
        WRITE.store(f.is_write, Ordering::SeqCst);
        FaultAction::Skip
    }

    /// (count, address of the last, whether the last was a write).
    pub fn seen() -> (u64, u64, bool) {
        (
            COUNT.load(Ordering::SeqCst),
            ADDR.load(Ordering::SeqCst),
            WRITE.load(Ordering::SeqCst),
        )
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    use super::faults;
    use grt::check::Checker;
    use grt::mmio::{read16, read32, read64, read8, write16, write32, write64, write8};
    use grt::trap::set_data_fault_handler;

    const BASE: usize = 0x0900_0000;
    const FR: usize = 0x18;
    const IBRD: usize = 0x24;
    const FBRD: usize = 0x28;
    const LCR_H: usize = 0x2c;
    const CR: usize = 0x30;
    const IFLS: usize = 0x34;
    const IMSC: usize = 0x38;
    const ID: usize = 0xfe0;
    const ID_BYTES: [u32; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
    const FR_BUSY: u32 = 1 << 3;
    const FR_RXFE: u32 = 1 << 4;
    const FR_TXFF: u32 = 1 << 5;
    const FR_TXFE: u32 = 1 << 7;

    fn r8(off: usize) -> u32 {
        // SAFETY: BASE is this VM's PL011 (configs/vms/aarch64-mmio.toml); every offset used
        // is a register whose read has no side effect (not DR).
        u32::from(unsafe { read8(BASE + off) })
    }
    fn r16(off: usize) -> u32 {
        // SAFETY: as for `r8`.
        u32::from(unsafe { read16(BASE + off) })
    }
    fn r32(off: usize) -> u32 {
        // SAFETY: as for `r8`.
        unsafe { read32(BASE + off) }
    }
    fn w8(off: usize, v: u8) {
        // SAFETY: BASE is this VM's PL011; the offsets written are configuration registers
        // that do not affect transmitting, and `run` restores them.
        unsafe { write8(BASE + off, v) }
    }
    fn w16(off: usize, v: u16) {
        // SAFETY: as for `w8`.
        unsafe { write16(BASE + off, v) }
    }
    fn w32(off: usize, v: u32) {
        // SAFETY: as for `w8`.
        unsafe { write32(BASE + off, v) }
    }

    /// A stored register of `bits` bits: every width reads and writes its low bits.
    fn stored(c: &mut Checker, name: &str, off: usize, bits: u32) {
        let mask = if bits == 32 {
            u32::MAX
        } else {
            (1 << bits) - 1
        };
        w32(off, u32::MAX);
        c.eq(format_args!("{name}: 32-bit all ones"), r32(off), mask);
        c.eq(format_args!("{name}: 16-bit read"), r16(off), mask & 0xffff);
        c.eq(format_args!("{name}: 8-bit read"), r8(off), mask & 0xff);
        w32(off, 0xa5a5_a5a5);
        c.eq(
            format_args!("{name}: 32-bit 0xa5a5a5a5"),
            r32(off),
            0xa5a5_a5a5 & mask,
        );
        w32(off, 0);
        c.eq(format_args!("{name}: 32-bit zero"), r32(off), 0);
        // A 16-bit write into a zeroed register: the same result whether a narrow write
        // replaces the register or only its low half.
        w16(off, 0x5a3c);
        c.eq(
            format_args!("{name}: 16-bit write"),
            r32(off),
            0x5a3c & mask,
        );
        c.eq(
            format_args!("{name}: 16-bit write, 16-bit read"),
            r16(off),
            0x5a3c & mask,
        );
        c.eq(
            format_args!("{name}: 16-bit write, 8-bit read"),
            r8(off),
            0x3c & mask,
        );
        w32(off, 0);
        w8(off, 0xc3);
        c.eq(format_args!("{name}: 8-bit write"), r32(off), 0xc3 & mask);
        c.eq(
            format_args!("{name}: 8-bit write, 8-bit read"),
            r8(off),
            0xc3 & mask,
        );
        c.eq(
            format_args!("{name}: 8-bit write, 16-bit read"),
            r16(off),
            0xc3 & mask,
        );
    }

    /// One access the PL011 refuses must fault exactly once, at `BASE + off`.
    fn refused(c: &mut Checker, what: &str, off: usize, write: bool, access: impl FnOnce()) {
        let (before, _, _) = faults::seen();
        access();
        let (after, addr, is_write) = faults::seen();
        c.eq(format_args!("{what}: faults"), after - before, 1);
        c.eq(
            format_args!("{what}: fault address"),
            addr,
            (BASE + off) as u64,
        );
        c.ok(
            format_args!(
                "{what}: fault is a {}",
                if write { "write" } else { "read" }
            ),
            is_write == write,
        );
    }

    pub fn run(c: &mut Checker) {
        // Reset values of the registers checked below (the guest writes none before).
        c.eq("CR reset value", r32(CR), 0x300);
        c.eq("IFLS reset value", r32(IFLS), 0x12);
        c.eq("IMSC reset value", r32(IMSC), 0);

        let fr = r32(FR);
        c.ok("FR.TXFE set", fr & FR_TXFE != 0);
        c.ok("FR.RXFE set", fr & FR_RXFE != 0);
        c.ok("FR.TXFF clear", fr & FR_TXFF == 0);
        c.ok("FR.BUSY clear", fr & FR_BUSY == 0);
        c.eq("FR 16-bit read", r16(FR), fr & 0xffff);
        c.eq("FR 8-bit read", r8(FR), fr & 0xff);

        for (i, &want) in ID_BYTES.iter().enumerate() {
            let off = ID + 4 * i;
            c.eq(format_args!("ID {off:#x} 32-bit"), r32(off), want);
            c.eq(format_args!("ID {off:#x} 16-bit"), r16(off), want);
            c.eq(format_args!("ID {off:#x} 8-bit"), r8(off), want);
            // Read-only: writes are ignored.
            w32(off, !want);
            w16(off, 0x1234);
            w8(off, 0x56);
            c.eq(format_args!("ID {off:#x} after writes"), r32(off), want);
        }

        // Stored registers, restored afterwards. Transmitting works whatever they hold, so
        // the checker may print a mismatch in between.
        let saved = [IBRD, FBRD, LCR_H, IFLS, IMSC].map(r32);
        stored(c, "IBRD", IBRD, 16);
        stored(c, "FBRD", FBRD, 6);
        stored(c, "LCR_H", LCR_H, 8);
        stored(c, "IFLS", IFLS, 6);
        stored(c, "IMSC", IMSC, 11);
        // Registers are independent.
        w32(IBRD, 0x1234);
        w32(FBRD, 0x21);
        w32(IMSC, 0x7ff);
        c.eq("IBRD beside FBRD/IMSC", r32(IBRD), 0x1234);
        c.eq("FBRD beside IBRD/IMSC", r32(FBRD), 0x21);
        c.eq("IMSC beside IBRD/FBRD", r32(IMSC), 0x7ff);
        for (off, v) in [IBRD, FBRD, LCR_H, IFLS, IMSC].into_iter().zip(saved) {
            w32(off, v);
        }

        // Accesses the PL011 refuses become unclaimed accesses, and the "fault" policy turns
        // them into data aborts.
        set_data_fault_handler(Some(faults::on_fault));
        w32(IBRD, 0x77);
        refused(c, "64-bit read of IBRD", IBRD, false, || {
            // SAFETY: a 64-bit read of a PL011 register: the device refuses it and the guest
            // gets a data abort, which `on_fault` skips; nothing is read.
            unsafe { read64(BASE + IBRD) };
        });
        refused(c, "64-bit write of IBRD", IBRD, true, || {
            // SAFETY: refused as above; the register must stay unchanged.
            unsafe { write64(BASE + IBRD, 0x1111_2222_3333_4444) };
        });
        c.eq("IBRD after refused 64-bit write", r32(IBRD), 0x77);
        refused(c, "8-bit read at offset 0x25", IBRD + 1, false, || {
            // SAFETY: a byte read inside IBRD, not at a multiple of 4: refused as misaligned.
            unsafe { read8(BASE + IBRD + 1) };
        });
        refused(c, "16-bit write at offset 0x26", IBRD + 2, true, || {
            // SAFETY: a halfword write inside IBRD, not at a multiple of 4: refused.
            unsafe { write16(BASE + IBRD + 2, 0xffff) };
        });
        c.eq("IBRD after refused 16-bit write", r32(IBRD), 0x77);
        set_data_fault_handler(None);
        w32(IBRD, saved[0]);

        // An unimplemented offset inside the page reads as zero and ignores writes.
        w32(0x100, 0xffff_ffff);
        c.eq("unimplemented offset 0x100", r32(0x100), 0);
        c.eq("unimplemented offset 0xfdc", r32(0xfdc), 0);
    }
}

#[cfg(target_arch = "riscv64")]
mod arch {
    use super::faults;
    use grt::check::Checker;
    use grt::mmio::{read16, read32, read64, read8, write16, write32, write64, write8};

    const BASE: usize = 0x1000_0000;
    const DLL: usize = 0;
    const IER: usize = 1;
    const DLM: usize = 1;
    const IIR: usize = 2;
    const LCR: usize = 3;
    const MCR: usize = 4;
    const LSR: usize = 5;
    const SCR: usize = 7;
    const LCR_DLAB: u8 = 1 << 7;
    const LSR_DR: u8 = 1 << 0;
    const LSR_THRE_TEMT: u8 = 0x60;

    fn r8(off: usize) -> u8 {
        // SAFETY: BASE is this VM's 16550 (configs/vms/riscv64-mmio.toml); reads of these
        // offsets only have the documented effects (RBR is read with no input waiting).
        unsafe { read8(BASE + off) }
    }
    fn w8(off: usize, v: u8) {
        // SAFETY: BASE is this VM's 16550; `run` restores what it changes, and writes to
        // offset 0 happen only with DLAB set (DLL), never to THR.
        unsafe { write8(BASE + off, v) }
    }

    pub fn run(c: &mut Checker) {
        grt::trap::set_data_fault_handler(Some(faults::on_fault));

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
        let (dll16, dll32, dll64) = unsafe {
            write64(BASE + DLL, 0xdead_beef_cafe_0099);
            let d64 = read64(BASE + DLL);
            write32(BASE + DLL, 0x1234_5688);
            let d32 = read32(BASE + DLL);
            write16(BASE + DLL, 0xff77);
            (read16(BASE + DLL), d32, d64)
        };
        let dlm_after_wide = r8(DLM);
        w8(LCR, 0x03);
        let ier_back = r8(IER);
        let rbr = r8(0);
        w8(LCR, saved_lcr);
        c.eq("LCR 0x1b", lcr, 0x1b);
        c.eq("LCR with DLAB", lcr_dlab, 0x83);
        c.eq("DLL", dll, 0x42);
        c.eq("DLM", dlm, 0x24);
        c.eq("DLL 64-bit write/read", dll64, 0x99);
        c.eq("DLL 32-bit write/read", dll32, 0x88);
        c.eq("DLL 16-bit write/read", dll16, 0x77);
        c.eq("DLM untouched by wide DLL writes", dlm_after_wide, 0x24);
        c.eq(
            "DLAB off: offset 1 is IER again",
            ier_back,
            saved_ier & 0x0f,
        );
        c.eq("DLAB off: offset 0 is RBR (no input)", rbr, 0);

        // Wide accesses to other registers: MCR (5 bits; bit 4, loopback, left clear).
        // SAFETY: offset 4 (MCR) is 4-byte aligned; MCR without loopback changes nothing
        // for the console, and it is restored.
        let (mcr32, mcr16, mcr8) = unsafe {
            let saved = read8(BASE + MCR);
            write32(BASE + MCR, 0xffff_ff0b);
            let m32 = read32(BASE + MCR);
            write16(BASE + MCR, 0xff03);
            let m16 = read16(BASE + MCR);
            let m8 = read8(BASE + MCR);
            write8(BASE + MCR, saved);
            (m32, m16, m8)
        };
        c.eq("MCR 32-bit", mcr32, 0x0b);
        c.eq("MCR 16-bit", mcr16, 0x03);
        c.eq("MCR 8-bit", mcr8, 0x03);
        // A wide read does not pick up the next registers (LSR has THRE|TEMT set).
        // SAFETY: offset 4 (MCR) is 4-byte aligned; reading MCR has no side effect.
        let mcr_wide = unsafe { read32(BASE + MCR) };
        c.eq(
            "32-bit read at 4 is MCR alone",
            mcr_wide,
            u32::from(r8(MCR)),
        );

        // Offsets 8 and up inside the window read as zero and ignore writes.
        w8(8, 0xff);
        c.eq("offset 8", r8(8), 0);
        // SAFETY: offset 0x10 is inside the 16550's window and past its registers.
        c.eq("offset 0x10 64-bit", unsafe { read64(BASE + 0x10) }, 0);

        let (n, _, _) = faults::seen();
        c.eq("data faults during the checks", n, 0);
        grt::trap::set_data_fault_handler(None);
    }
}
