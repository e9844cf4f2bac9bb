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

/// What each load's destination holds before the load: a value whose bits show any the
/// hypervisor leaves or clears wrongly.
const JUNK: u64 = 0xdead_beef_dead_beef;

/// The value of one load instruction `$insn` from `$addr` (operands `{v}`, the destination,
/// which starts as [`JUNK`], and `{a}`, the address): for the checks that the hypervisor
/// completes each load form as the instruction says.
macro_rules! load {
    ($insn:literal, $addr:expr) => {{
        let v: u64;
        // SAFETY: callers load only from registers of this VM's UART whose reads have no
        // side effect that matters to the checks; only `v` is written.
        unsafe {
            core::arch::asm!(
                $insn,
                v = inout(reg) $crate::JUNK => v,
                a = in(reg) $addr,
                options(nostack)
            )
        };
        v
    }};
}

#[cfg(any(target_arch = "riscv64", target_arch = "x86_64"))]
mod uart16550;

#[cfg(target_arch = "x86_64")]
#[path = "x86_64.rs"]
mod arch;

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

        loads_and_stores(c);
    }

    /// Loads the hypervisor must complete as the instruction says: sign-extended (`ldrs*`),
    /// into a W register (upper 32 bits cleared) or an X register; stores of the zero
    /// register. Each destination starts as a junk value, so a load that leaves bits of it
    /// shows.
    fn loads_and_stores(c: &mut Checker) {
        macro_rules! insn {
            ($insn:literal, $off:expr) => {
                // SAFETY: a single store of the zero register to a stored PL011 register, or a
                // load from one into the zero register.
                unsafe { core::arch::asm!($insn, a = in(reg) BASE + $off, options(nostack)) }
            };
        }
        const CELL_ID1: usize = ID + 0x14; // 0xf0: bit 7 set
        const PERIPH_ID0: usize = ID; // 0x11: bit 7 clear

        let saved = r32(IBRD);
        c.eq(
            "ldrb w (0xf0)",
            load!("ldrb {v:w}, [{a}]", BASE + CELL_ID1),
            0xf0,
        );
        c.eq(
            "ldrsb x (0xf0)",
            load!("ldrsb {v:x}, [{a}]", BASE + CELL_ID1),
            0xffff_ffff_ffff_fff0,
        );
        c.eq(
            "ldrsb w (0xf0)",
            load!("ldrsb {v:w}, [{a}]", BASE + CELL_ID1),
            0xffff_fff0,
        );
        c.eq(
            "ldrsb x (0x11)",
            load!("ldrsb {v:x}, [{a}]", BASE + PERIPH_ID0),
            0x11,
        );
        c.eq(
            "ldr w (0xf0)",
            load!("ldr {v:w}, [{a}]", BASE + CELL_ID1),
            0xf0,
        );
        w32(IBRD, 0x8001);
        c.eq(
            "ldrh w (0x8001)",
            load!("ldrh {v:w}, [{a}]", BASE + IBRD),
            0x8001,
        );
        c.eq(
            "ldrsh x (0x8001)",
            load!("ldrsh {v:x}, [{a}]", BASE + IBRD),
            0xffff_ffff_ffff_8001,
        );
        c.eq(
            "ldrsh w (0x8001)",
            load!("ldrsh {v:w}, [{a}]", BASE + IBRD),
            0xffff_8001,
        );
        c.eq(
            "ldrsb x (low byte 0x01)",
            load!("ldrsb {v:x}, [{a}]", BASE + IBRD),
            0x01,
        );
        c.eq(
            "ldrsw x (0x8001)",
            load!("ldrsw {v:x}, [{a}]", BASE + IBRD),
            0x8001,
        );
        w32(IBRD, 0x7f80);
        c.eq(
            "ldrsh x (0x7f80)",
            load!("ldrsh {v:x}, [{a}]", BASE + IBRD),
            0x7f80,
        );
        c.eq(
            "ldrsb x (low byte 0x80)",
            load!("ldrsb {v:x}, [{a}]", BASE + IBRD),
            0xffff_ffff_ffff_ff80,
        );

        // Register 31 in a load or store is the zero register, not SP.
        w32(IBRD, 0x1234);
        insn!("str wzr, [{a}]", IBRD);
        c.eq("str wzr", r32(IBRD), 0);
        w32(IBRD, 0x1234);
        insn!("strh wzr, [{a}]", IBRD);
        c.eq("strh wzr", r32(IBRD), 0);
        w32(IBRD, 0x34);
        insn!("strb wzr, [{a}]", IBRD);
        c.eq("strb wzr", r32(IBRD), 0);
        // A load into the zero register is discarded (and must not disturb anything).
        insn!("ldr wzr, [{a}]", IBRD);
        w32(IBRD, saved);
    }
}

#[cfg(target_arch = "riscv64")]
mod arch {
    use super::faults;
    use super::uart16550::{DLL, LCR, LCR_DLAB, MCR, MSR, SCR};
    use grt::check::Checker;
    use grt::mmio::{read8, write8};

    const BASE: usize = 0x1000_0000;

    fn r8(off: usize) -> u8 {
        // SAFETY: BASE is this VM's 16550 (configs/vms/riscv64-mmio.toml); reads of these
        // offsets only have the documented effects.
        unsafe { read8(BASE + off) }
    }
    fn w8(off: usize, v: u8) {
        // SAFETY: BASE is this VM's 16550; `run` restores what it changes, and writes to
        // offset 0 happen only with DLAB set (DLL), never to THR.
        unsafe { write8(BASE + off, v) }
    }

    pub fn run(c: &mut Checker) {
        grt::trap::set_data_fault_handler(Some(faults::on_fault));
        super::uart16550::check(c, &super::uart16550::Mmio(BASE));
        loads_and_stores(c);

        let (n, _, _) = faults::seen();
        c.eq("data faults during the checks", n, 0);
        grt::trap::set_data_fault_handler(None);
    }

    /// Loads the hypervisor must complete as the instruction says: `lb`/`lh`/`lw`
    /// sign-extend, `lbu` does not, and compressed loads and stores (2 bytes long: the
    /// guest must resume right after them, which `c.li` checks) work like the others.
    fn loads_and_stores(c: &mut Checker) {
        // MSR reads 0xb0 (checked with the other registers): bit 7 is set.
        c.eq("lbu (0xb0)", load!("lbu {v}, 0({a})", BASE + MSR), 0xb0);
        c.eq(
            "lb (0xb0)",
            load!("lb {v}, 0({a})", BASE + MSR),
            0xffff_ffff_ffff_ffb0,
        );
        c.eq("lh (0x00b0)", load!("lh {v}, 0({a})", BASE + MSR), 0xb0);
        c.eq("lhu (0x00b0)", load!("lhu {v}, 0({a})", BASE + MSR), 0xb0);
        w8(SCR, 0x7f);
        c.eq("lb (0x7f)", load!("lb {v}, 0({a})", BASE + SCR), 0x7f);
        w8(SCR, 0x80);
        c.eq(
            "lb (0x80)",
            load!("lb {v}, 0({a})", BASE + SCR),
            0xffff_ffff_ffff_ff80,
        );
        c.eq(
            "lw at 4 (MCR)",
            load!("lw {v}, 0({a})", BASE + MCR),
            u64::from(r8(MCR)),
        );

        // Compressed accesses (registers x8-x15 only): c.sw / c.lw on MCR, then c.sd / c.ld
        // on DLL with DLAB set (nothing printed meanwhile). `c.li` right after each one must
        // run: a hypervisor stepping 4 bytes over a 2-byte instruction would skip it.
        let saved_mcr = r8(MCR);
        let saved_lcr = r8(LCR);
        let (mcr, sw_next, lw_next, dll, sd_next, ld_next): (u64, u64, u64, u64, u64, u64);
        // SAFETY: `a4` holds MCR's address (4-byte aligned), then DLL's (offset 0 with DLAB
        // set, so no THR write or RBR read; 8-byte aligned). Only a1, a2, a3 and a5 are
        // written besides the two UART registers, which are restored below.
        unsafe {
            core::arch::asm!(
                "li a1, 0",
                "li a2, 0",
                "c.sw a5, 0(a4)",
                "c.li a1, 1",
                "li a3, 0",
                "c.lw a3, 0(a4)",
                "c.li a2, 1",
                in("a4") BASE + MCR,
                in("a5") 0x0000_000bu64,
                out("a3") mcr,
                out("a1") sw_next,
                out("a2") lw_next,
                options(nostack)
            );
        }
        w8(LCR, 0x03 | LCR_DLAB);
        // SAFETY: as above.
        unsafe {
            core::arch::asm!(
                "li a1, 0",
                "li a2, 0",
                "c.sd a5, 0(a4)",
                "c.li a1, 1",
                "li a3, 0",
                "c.ld a3, 0(a4)",
                "c.li a2, 1",
                in("a4") BASE + DLL,
                in("a5") 0x1234_5678_9abc_de5au64,
                out("a3") dll,
                out("a1") sd_next,
                out("a2") ld_next,
                options(nostack)
            );
        }
        w8(LCR, saved_lcr);
        w8(MCR, saved_mcr);
        c.eq("c.sw / c.lw on MCR", mcr, 0x0b);
        c.eq("instruction after c.sw ran", sw_next, 1);
        c.eq("instruction after c.lw ran", lw_next, 1);
        c.eq("c.sd / c.ld on DLL", dll, 0x5a);
        c.eq("instruction after c.sd ran", sd_next, 1);
        c.eq("instruction after c.ld ran", ld_next, 1);
    }
}
