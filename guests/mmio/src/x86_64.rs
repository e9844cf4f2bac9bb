//! x86_64: the console 16550 through port I/O (`in`/`out` on 0x3F8..0x400), a second 16550
//! mapped at [`MMIO_UART`] through `mov` loads and stores of each width and form the
//! hypervisor must decode, and the accesses nobody claims under the VM's "fault" policy: a
//! port reads all ones and ignores writes (port I/O has no fault, as on a PC's bus), an
//! MMIO address gets a #GP(0) at the instruction.

use core::sync::atomic::{AtomicU64, Ordering};

use super::uart16550::{self, LCR, LCR_DLAB, MSR, SCR};
use super::{faults, JUNK};
use grt::check::Checker;
use grt::trap::{Exception, FaultAction};

/// The second 16550's MMIO base (`configs/vms/x86_64-mmio.toml`).
const MMIO_UART: usize = 0xc000_0000;

pub fn run(c: &mut Checker) {
    grt::trap::set_data_fault_handler(Some(faults::on_fault));
    uart16550::check(c, &uart16550::Ports(grt::x86::COM1));
    grt::println!("mmio: the console 16550 on ports: checked");
    uart16550::check(c, &uart16550::Mmio(MMIO_UART));
    grt::println!("mmio: the 16550 at {MMIO_UART:#x}: checked");
    loads_and_stores(c);
    unclaimed(c);
    let (n, _, _) = faults::seen();
    c.eq("data faults during the checks", n, 0);
    grt::trap::set_data_fault_handler(None);
}

/// The register of the MMIO 16550 at `off`.
fn reg(off: usize) -> usize {
    MMIO_UART + off
}

fn r8(off: usize) -> u8 {
    // SAFETY: the MMIO 16550 of this VM's config; the offsets read (SCR, MSR, LCR) have no
    // read side effects.
    unsafe { grt::mmio::read8(reg(off)) }
}

fn w8(off: usize, v: u8) {
    // SAFETY: the MMIO 16550; only SCR and LCR are written, and LCR is restored.
    unsafe { grt::mmio::write8(reg(off), v) }
}

/// Loads and stores the hypervisor must complete as the instruction says: `mov` into 8-bit
/// registers (including AH, and R9B with a REX prefix) and 16-bit ones keeps the rest of
/// the register, into 32-bit ones clears the upper half, `movzx` / `movsx` / `movsxd` extend,
/// and stores of immediates (`C6` / `C7`) and of registers of each width write the value.
/// Each destination starts as junk, so a load that leaves or clears the wrong bits shows.
fn loads_and_stores(c: &mut Checker) {
    macro_rules! store {
        ($insn:literal, $off:expr, $value:expr) => {{
            // SAFETY: a single store to the MMIO 16550's scratch register.
            unsafe {
                core::arch::asm!(
                    $insn,
                    v = in(reg) $value,
                    a = in(reg) reg($off),
                    options(nostack, preserves_flags)
                )
            };
        }};
    }

    // MSR reads 0xb0: bit 7 set.
    c.eq(
        "mov r8 (0xb0)",
        load!("mov {v:l}, byte ptr [{a}]", reg(MSR)),
        (JUNK & !0xff) | 0xb0,
    );
    c.eq(
        "mov r16 (0xb0)",
        load!("mov {v:x}, word ptr [{a}]", reg(MSR)),
        (JUNK & !0xffff) | 0xb0,
    );
    c.eq(
        "mov r32 (0xb0)",
        load!("mov {v:e}, dword ptr [{a}]", reg(MSR)),
        0xb0,
    );
    c.eq(
        "mov r64 (0xb0)",
        load!("mov {v:r}, qword ptr [{a}]", reg(MSR)),
        0xb0,
    );
    c.eq(
        "movzx r32, byte (0xb0)",
        load!("movzx {v:e}, byte ptr [{a}]", reg(MSR)),
        0xb0,
    );
    c.eq(
        "movzx r64, word (0xb0)",
        load!("movzx {v:r}, word ptr [{a}]", reg(MSR)),
        0xb0,
    );
    c.eq(
        "movsx r64, byte (0xb0)",
        load!("movsx {v:r}, byte ptr [{a}]", reg(MSR)),
        0xffff_ffff_ffff_ffb0,
    );
    c.eq(
        "movsx r32, byte (0xb0)",
        load!("movsx {v:e}, byte ptr [{a}]", reg(MSR)),
        0xffff_ffb0,
    );
    c.eq(
        "movsx r16, byte (0xb0)",
        load!("movsx {v:x}, byte ptr [{a}]", reg(MSR)),
        (JUNK & !0xffff) | 0xffb0,
    );
    c.eq(
        "movsx r64, word (0x00b0)",
        load!("movsx {v:r}, word ptr [{a}]", reg(MSR)),
        0xb0,
    );
    c.eq(
        "movsxd r64 (0xb0)",
        load!("movsxd {v:r}, dword ptr [{a}]", reg(MSR)),
        0xb0,
    );

    // AH: without a REX prefix, register 4 of a byte operand is AH, not SPL.
    let ah: u64;
    // SAFETY: a single byte load from the MMIO 16550's MSR into AH; only RAX is written.
    unsafe {
        core::arch::asm!(
            "mov ah, byte ptr [rcx]",
            in("rcx") reg(MSR),
            inout("rax") JUNK => ah,
            options(nostack, preserves_flags)
        )
    };
    c.eq("mov ah (0xb0)", ah, (JUNK & !0xff00) | 0xb000);
    // R9B: a byte register that needs REX.R.
    let r9: u64;
    // SAFETY: a single byte load from the MMIO 16550's MSR into R9B; only R9 is written.
    unsafe {
        core::arch::asm!(
            "mov r9b, byte ptr [{a}]",
            a = in(reg) reg(MSR),
            inout("r9") JUNK => r9,
            options(nostack, preserves_flags)
        )
    };
    c.eq("mov r9b (0xb0)", r9, (JUNK & !0xff) | 0xb0);

    // Stores to SCR, read back with a byte load.
    store!("mov byte ptr [{a}], {v:l}", SCR, 0x1234_5677u64);
    c.eq("mov byte store", r8(SCR), 0x77);
    store!("mov word ptr [{a}], {v:x}", SCR, 0x1234_5666u64);
    c.eq("mov word store", r8(SCR), 0x66);
    store!("mov dword ptr [{a}], {v:e}", SCR, 0x1234_5655u64);
    c.eq("mov dword store", r8(SCR), 0x55);
    store!("mov qword ptr [{a}], {v:r}", SCR, 0x1234_5644u64);
    c.eq("mov qword store", r8(SCR), 0x44);
    // SAFETY: single stores of immediates to the MMIO 16550's SCR.
    unsafe {
        core::arch::asm!("mov byte ptr [{a}], 0x3c", a = in(reg) reg(SCR), options(nostack));
    }
    c.eq("mov byte store of an immediate", r8(SCR), 0x3c);
    // SAFETY: as above.
    unsafe {
        core::arch::asm!("mov dword ptr [{a}], 0x7fffff2d", a = in(reg) reg(SCR), options(nostack));
    }
    c.eq("mov dword store of an immediate", r8(SCR), 0x2d);
    // SAFETY: as above.
    unsafe {
        core::arch::asm!("mov qword ptr [{a}], -0x1f", a = in(reg) reg(SCR), options(nostack));
    }
    c.eq(
        "mov qword store of a sign-extended immediate",
        r8(SCR),
        0xe1,
    );
    // SAFETY: as above.
    unsafe {
        core::arch::asm!("mov word ptr [{a}], 0x1122", a = in(reg) reg(SCR), options(nostack));
    }
    c.eq("mov word store of an immediate", r8(SCR), 0x22);
    // A store from R12 (REX.R) through a base register that needs a SIB byte (R12 as base
    // is encoded like RSP): `mov [r12 + 7], r13b`.
    // SAFETY: a single byte store to the MMIO 16550's SCR; no register is written.
    unsafe {
        core::arch::asm!(
            "mov byte ptr [r12 + 7], r13b",
            in("r12") MMIO_UART,
            in("r13") 0x99u64,
            options(nostack, preserves_flags)
        )
    };
    c.eq("mov [r12 + 7], r13b", r8(SCR), 0x99);

    // LCR with DLAB set and cleared again, through the wide forms: the line stays usable.
    let saved_lcr = r8(LCR);
    store!(
        "mov dword ptr [{a}], {v:e}",
        LCR,
        u64::from(0x03 | LCR_DLAB)
    );
    let lcr = r8(LCR);
    w8(LCR, saved_lcr);
    c.eq("LCR through a dword store", lcr, 0x83);
}

/// COM2's ports: no device of this VM.
const UNCLAIMED_PORT: u16 = 0x2f8;
/// Right past the MMIO 16550's window: nothing of this VM.
const UNCLAIMED_MMIO: usize = MMIO_UART + 0x1000;

/// #GP(0)s taken by [`on_gp`], and the last one's RIP.
static GPS: AtomicU64 = AtomicU64::new(0);
static GP_RIP: AtomicU64 = AtomicU64::new(0);

fn on_gp(e: &Exception) -> FaultAction {
    if e.vector != 13 || e.error_code != 0 {
        return FaultAction::Fail;
    }
    GPS.store(GPS.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    GP_RIP.store(e.rip, Ordering::SeqCst);
    FaultAction::Skip
}

/// Runs `access`, which must raise exactly one #GP(0), inside the image.
fn expect_gp(c: &mut Checker, what: &str, access: impl FnOnce()) {
    let before = GPS.load(Ordering::SeqCst);
    access();
    if c.eq(
        format_args!("{what}: #GP(0)s"),
        GPS.load(Ordering::SeqCst) - before,
        1,
    ) {
        let rip = GP_RIP.load(Ordering::SeqCst);
        c.ok(
            format_args!("{what}: RIP {rip:#x} inside the image"),
            (grt::IMAGE_BASE..grt::image_end()).contains(&rip),
        );
    }
}

/// The accesses nobody claims: COM2's ports read all ones at every width and take writes
/// without a fault; loads and stores right past the 16550's window each get one #GP(0),
/// and a load's destination keeps its value.
fn unclaimed(c: &mut Checker) {
    // SAFETY: a port of no device of this VM: the hypervisor answers reads with all ones
    // and drops writes.
    let (b, w, l) = unsafe {
        grt::pio::outb(UNCLAIMED_PORT, 0x55);
        grt::pio::outw(UNCLAIMED_PORT, 0x55aa);
        grt::pio::outl(UNCLAIMED_PORT, 0x1234_5678);
        (
            grt::pio::inb(UNCLAIMED_PORT),
            grt::pio::inw(UNCLAIMED_PORT),
            grt::pio::inl(UNCLAIMED_PORT),
        )
    };
    c.eq("unclaimed port: 8-bit read", b, 0xff);
    c.eq("unclaimed port: 16-bit read", w, 0xffff);
    c.eq("unclaimed port: 32-bit read", l, 0xffff_ffff);

    grt::trap::set_exception_handler(Some(on_gp));
    const JUNK: u64 = 0x0123_4567_89ab_cdef;
    let mut kept = 0;
    expect_gp(c, "unclaimed MMIO 32-bit load", || {
        // SAFETY: nothing of the VM is at the address: the load raises #GP(0), which
        // `on_gp` skips; only `kept` is written.
        unsafe {
            core::arch::asm!(
                "mov {v:e}, dword ptr [{a}]",
                v = inout(reg) JUNK => kept,
                a = in(reg) UNCLAIMED_MMIO,
                options(nostack, preserves_flags)
            )
        };
    });
    c.eq("unclaimed MMIO load: destination unchanged", kept, JUNK);
    expect_gp(c, "unclaimed MMIO 8-bit store", || {
        // SAFETY: as above; nothing is written.
        unsafe { grt::mmio::write8(UNCLAIMED_MMIO + 3, 0x5a) };
    });
    expect_gp(c, "unclaimed MMIO 64-bit store of an immediate", || {
        // SAFETY: as above.
        unsafe {
            core::arch::asm!(
                "mov qword ptr [{a}], 0x77",
                a = in(reg) UNCLAIMED_MMIO + 0x800,
                options(nostack)
            )
        };
    });
    grt::trap::set_exception_handler(None);
    grt::println!("mmio: unclaimed port and MMIO accesses: checked");
}
