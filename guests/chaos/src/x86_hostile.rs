//! The targeted x86 phase of the chaos guest (after the random operations and the virtio
//! phase): one check for each guest-controlled input of the x86 backends that the random
//! operations cannot reach safely, each with the outcome the hardware gives (an exception
//! of the right vector, or none and the right value). docs/reliability.md ("x86") lists
//! them with what each input gets.
//!
//! Every instruction under test runs in a [`trial!`], with this module's own entries on
//! all 32 exception vectors: an exception records its vector and error code and returns
//! to the end of the trial (RFLAGS.TF and AC cleared), so a check sees exactly which
//! exception (or none) the instruction took, whatever its length or form.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use grt::check::Checker;
use grt::x86::{cpuid, read_msr, write_msr};

// 32 entries of 16 bytes (a fake error code pushed where the CPU pushes none, then the
// vector), then the common path: vector and error code to CHAOS_CATCH_VECTOR / _ERROR,
// the return address replaced by CHAOS_CATCH_RET, RFLAGS.TF and AC cleared, and for an
// exception from user mode CS, SS and RSP those of the trial (CPL 0, CHAOS_CATCH_RSP),
// iretq.
global_asm!(
    r#"
    .section .text.chaos_catch, "ax"
    .balign 16
chaos_catch_entries:
    .set chaos_v, 0
    .rept 32
    .balign 16
    .if (chaos_v != 8) && ((chaos_v < 10) || (chaos_v > 14)) && (chaos_v != 17) && (chaos_v != 21) && (chaos_v != 29) && (chaos_v != 30)
    push 0
    .endif
    push chaos_v
    jmp  chaos_catch_common
    .set chaos_v, chaos_v + 1
    .endr
chaos_catch_common:
    pop  qword ptr [rip + CHAOS_CATCH_VECTOR]
    pop  qword ptr [rip + CHAOS_CATCH_ERROR]
    push rax
    mov  rax, qword ptr [rip + CHAOS_CATCH_RET]
    mov  [rsp + 8], rax
    and  qword ptr [rsp + 24], -0x40101
    test qword ptr [rsp + 16], 3
    jz   2f
    mov  qword ptr [rsp + 16], 0x10
    mov  rax, qword ptr [rip + CHAOS_CATCH_RSP]
    mov  [rsp + 32], rax
    mov  qword ptr [rsp + 40], 0x18
2:  pop  rax
    iretq
    .global chaos_catch_base
    .set chaos_catch_base, chaos_catch_entries
"#
);

/// "No exception" in [`CHAOS_CATCH_VECTOR`].
const NONE: u64 = u64::MAX;

/// The vector and error code of the last exception a trial took, and where it resumes.
#[no_mangle]
static CHAOS_CATCH_VECTOR: AtomicU64 = AtomicU64::new(NONE);
#[no_mangle]
static CHAOS_CATCH_ERROR: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static CHAOS_CATCH_RET: AtomicU64 = AtomicU64::new(0);
/// The stack pointer a trial from user mode resumes with.
#[no_mangle]
static CHAOS_CATCH_RSP: AtomicU64 = AtomicU64::new(0);

/// Exception vectors.
const DB: u64 = 1;
const NMI: u64 = 2;
const UD: u64 = 6;
const GP: u64 = 13;
const PF: u64 = 14;

/// Runs the instructions (string literals) with the given operands; returns the vector
/// of the exception they took ([`NONE`] for none). R11 is the trial's own scratch. The
/// caller's `unsafe` block vouches for the instructions.
macro_rules! trial {
    ([$($t:literal),* $(,)?] $(, $($op:tt)*)?) => {{
        CHAOS_CATCH_VECTOR.store(NONE, Ordering::SeqCst);
        asm!(
            "lea r11, [rip + 2f]",
            "mov qword ptr [rip + CHAOS_CATCH_RET], r11",
            $($t,)*
            "2:",
            out("r11") _,
            $($($op)*)?
        );
        CHAOS_CATCH_VECTOR.load(Ordering::SeqCst)
    }};
}

/// The name of an outcome, for messages.
fn name(v: u64) -> &'static str {
    match v {
        NONE => "no exception",
        0 => "#DE",
        DB => "#DB",
        NMI => "NMI",
        3 => "#BP",
        UD => "#UD",
        7 => "#NM",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        GP => "#GP",
        PF => "#PF",
        17 => "#AC",
        19 => "#XM",
        _ => "another exception",
    }
}

/// Checks that a trial took `want` (a vector or [`NONE`]).
fn expect(c: &mut Checker, what: &str, got: u64, want: u64) -> bool {
    c.ok(
        format_args!(
            "{what}: {} (error code {:#x}), expected {}",
            name(got),
            CHAOS_CATCH_ERROR.load(Ordering::SeqCst),
            name(want)
        ),
        got == want,
    )
}

/// Scratch memory of the phase: two pages for code and buffers (page-crossing accesses).
#[repr(C, align(4096))]
struct Pages(UnsafeCell<[u8; 0x2000]>);

// SAFETY: only the guest's one vCPU uses it.
unsafe impl Sync for Pages {}

static PAGES: Pages = Pages(UnsafeCell::new([0; 0x2000]));

fn pages() -> *mut u8 {
    PAGES.0.get().cast()
}

/// The end of the VM's RAM (nothing of the VM above it but devices far away).
const RAM_END: u64 = grt::RAM_BASE + grt::RAM_SIZE;
/// A port nothing claims (reads all ones, writes dropped).
const FREE_PORT: u16 = 0x500;
/// The MMIO 16550's scratch register (loopback mode: no output).
const SCR: u64 = 0xc000_0007;
/// The xAPIC page and the I/O APIC.
const LAPIC: u64 = 0xfee0_0000;
const IOAPIC: u64 = 0xfec0_0000;

/// CPU facts the expectations depend on.
struct Cpu {
    /// CPUID.1 ECX and CPUID.7.0 EBX.
    ecx1: u32,
    ebx7: u32,
    /// An Intel CPU (the VMX backend) rather than an AMD one (SVM).
    intel: bool,
}

/// Runs the phase; every outcome is a check of `c`.
pub fn run(c: &mut Checker) {
    let [_, vendor, _, _] = cpuid(0, 0);
    let cpu = Cpu {
        ecx1: cpuid(1, 0)[2],
        ebx7: cpuid(7, 0)[1],
        intel: vendor == u32::from_le_bytes(*b"Genu"),
    };
    // SAFETY: 32 gates to this module's entries, which return to a trial's end; grt's are
    // put back below before anything else can fault.
    let base = {
        extern "C" {
            fn chaos_catch_base();
        }
        chaos_catch_base as *const () as u64
    };
    for v in 0..32u8 {
        grt::x86::set_gate(v, base + 16 * u64::from(v));
    }
    let before = c.failed();
    control_registers(c, &cpu);
    efer_and_xcr0(c, &cpu);
    msrs(c, &cpu);
    string_io(c);
    mmio_forms(c);
    looping_tables(c);
    compatibility_mode(c);
    crate::x86_legacy::run(c, cpu.intel);
    user_mode(c, &cpu);
    instructions(c, &cpu);
    local_apic(c);
    io_apic(c);
    halt_until_nmi(c);
    for v in 0..32u8 {
        grt::x86::set_gate(v, grt::x86::stub_address(v));
    }
    grt::println!(
        "chaos: x86 targeted phase: {} checks of control registers, EFER/XCR0, MSRs, string I/O, MMIO forms, instructions, local and I/O APIC, HLT with interrupts masked: {} wrong",
        c.total(),
        c.failed() - before
    );
}

/// CR0, CR4, CR8 writes with reserved or inconsistent bits: #GP, the register unchanged;
/// CR1, CR5, CR9: #UD.
fn control_registers(c: &mut Checker, cpu: &Cpu) {
    let (cr0, cr4): (u64, u64);
    // SAFETY: reads.
    unsafe {
        asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
    }
    let cr0_cases: [(&str, u64); 4] = [
        ("CR0 bit 32", cr0 | 1 << 32),
        ("CR0.PE clear with PG", cr0 & !1),
        ("CR0.PG clear in 64-bit mode", cr0 & !(1 << 31)),
        ("CR0.NW without CD", (cr0 & !(1 << 30)) | 1 << 29),
    ];
    for (what, v) in cr0_cases {
        // SAFETY: each value is one the CPU refuses (#GP): CR0 keeps its value.
        let got = unsafe { trial!(["mov cr0, {v}"], v = in(reg) v) };
        expect(c, what, got, GP);
    }
    let mut cr4_cases: [(&str, u64); 6] = [
        ("CR4 reserved bit 15", cr4 | 1 << 15),
        ("CR4 bit 40", cr4 | 1 << 40),
        ("CR4.VMXE with VMX hidden", cr4 | 1 << 13),
        ("CR4.SMXE with SMX hidden", cr4 | 1 << 14),
        ("CR4.PAE clear in long mode", cr4 & !(1 << 5)),
        ("CR4.LA57 set in long mode", cr4 | 1 << 12),
    ];
    if cpu.ecx1 & (1 << 17) == 0 {
        cr4_cases[1] = ("CR4.PCIDE without PCID", cr4 | 1 << 17);
    }
    for (what, v) in cr4_cases {
        // SAFETY: as above, for CR4.
        let got = unsafe { trial!(["mov cr4, {v}"], v = in(reg) v) };
        expect(c, what, got, GP);
    }
    let (cr0_after, cr4_after): (u64, u64);
    // SAFETY: reads.
    unsafe {
        asm!("mov {}, cr0", out(reg) cr0_after, options(nomem, nostack));
        asm!("mov {}, cr4", out(reg) cr4_after, options(nomem, nostack));
    }
    c.eq("CR0 after refused writes", cr0_after, cr0);
    c.eq("CR4 after refused writes", cr4_after, cr4);
    // CR8: 4 bits. (QEMU's SVM takes a reserved bit and keeps the low four, where an AMD
    // CPU gives #GP: only the VMX backend, which emulates CR8, is held to it.)
    let mut cr8 = 0u64;
    // SAFETY: CR8 = 16 is refused (or, under QEMU's SVM, taken as 0); 15 is taken
    // (interrupts stay masked), then 0 again.
    unsafe {
        let got = trial!(["mov cr8, {v}"], v = in(reg) 16u64);
        if cpu.intel {
            expect(c, "CR8 = 16", got, GP);
        }
        let got = trial!(["mov cr8, {v}", "mov {r}, cr8", "xor {z:e}, {z:e}", "mov cr8, {z}"],
            v = in(reg) 15u64, r = out(reg) cr8, z = out(reg) _);
        expect(c, "CR8 = 15", got, NONE);
    }
    c.eq("CR8 read back", cr8, 15);
    // MOV to and from CR1, CR5, CR9 (encoded by hand: the assembler refuses them).
    let bad: [(&str, u64); 3] = [
        ("mov cr1, rax", 0),
        ("mov rax, cr5", 1),
        ("mov cr9, rax", 2),
    ];
    for (what, k) in bad {
        // SAFETY: each is #UD (no such register); RAX is declared.
        let got = unsafe {
            match k {
                0 => trial!([".byte 0x0f, 0x22, 0xc8"], inout("rax") 0u64 => _),
                1 => trial!([".byte 0x0f, 0x20, 0xe8"], out("rax") _),
                _ => trial!([".byte 0x44, 0x0f, 0x22, 0xc8"], inout("rax") 0u64 => _),
            }
        };
        expect(c, what, got, UD);
    }
}

const IA32_EFER: u32 = 0xc000_0080;

/// EFER writes with reserved bits, SVME or LME cleared while paging: #GP; the current value:
/// taken. With XSAVE: XSETBV of XCR1, of XCR0 without x87, with an unsupported bit or AVX
/// without SSE: #GP; valid values taken and read back; without CR4.OSXSAVE: #UD.
fn efer_and_xcr0(c: &mut Checker, cpu: &Cpu) {
    let efer = read_msr(IA32_EFER);
    let cases: [(&str, u64, u64); 5] = [
        ("EFER bit 63", efer | 1 << 63, GP),
        ("EFER reserved bit 1", efer | 1 << 1, GP),
        ("EFER.SVME (SVM hidden)", efer | 1 << 12, GP),
        ("EFER.LME clear while paging", efer & !(1 << 8), GP),
        ("EFER its own value", efer, NONE),
    ];
    for (what, v, want) in cases {
        // SAFETY: refused values leave EFER alone; the last is its value.
        let got = unsafe {
            trial!(["wrmsr"], in("ecx") IA32_EFER, in("eax") v as u32, in("edx") (v >> 32) as u32)
        };
        expect(c, what, got, want);
    }
    c.eq("EFER after the writes", read_msr(IA32_EFER), efer);
    if cpu.ecx1 & (1 << 26) == 0 {
        return;
    }
    let supported = u64::from(cpuid(0xd, 0)[0]) | u64::from(cpuid(0xd, 0)[3]) << 32;
    // SAFETY: without CR4.OSXSAVE, XSETBV and XGETBV are #UD.
    let got = unsafe { trial!(["xgetbv"], in("ecx") 0, out("eax") _, out("edx") _) };
    expect(c, "XGETBV without CR4.OSXSAVE", got, UD);
    // SAFETY: CR4.OSXSAVE with XSAVE shown; cleared again below.
    unsafe {
        asm!("mov {t}, cr4", "bts {t}, 18", "mov cr4, {t}", t = out(reg) _, options(nomem, nostack))
    };
    c.ok(
        "CPUID.1:ECX.OSXSAVE follows CR4",
        cpuid(1, 0)[2] & (1 << 27) != 0,
    );
    let mut cases: [(&str, u32, u64, u64); 7] = [
        ("XSETBV XCR0 = 0", 0, 0, GP),
        ("XSETBV XCR0 bit 63", 0, 1 | 1 << 63, GP),
        ("XSETBV XCR1", 1, 1, GP),
        ("XSETBV XCR 0xffffffff", 0xffff_ffff, 1, GP),
        (
            "XSETBV XCR0 an unsupported bit",
            0,
            3 | (!supported & 0xffff_fffe).next_power_of_two(),
            GP,
        ),
        ("XSETBV XCR0 = x87|SSE", 0, 3, NONE),
        ("XSETBV XCR0 = x87", 0, 1, NONE),
    ];
    if supported & 4 != 0 {
        cases[3] = ("XSETBV XCR0 AVX without SSE", 0, 5, GP);
    }
    for (what, xcr, v, want) in cases {
        // SAFETY: refused values change nothing; the two taken ones are states the guest
        // (soft-float) never uses.
        let got = unsafe {
            trial!(["xsetbv"], in("ecx") xcr, in("eax") v as u32, in("edx") (v >> 32) as u32)
        };
        expect(c, what, got, want);
    }
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV of XCR0 with CR4.OSXSAVE set.
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    c.eq(
        "XCR0 after the writes",
        u64::from(lo) | u64::from(hi) << 32,
        1,
    );
    // SAFETY: clears the CR4.OSXSAVE set above.
    unsafe {
        asm!("mov {t}, cr4", "btr {t}, 18", "mov cr4, {t}", t = out(reg) _, options(nomem, nostack))
    };
    // SAFETY: #UD again.
    let got = unsafe { trial!(["xsetbv"], in("ecx") 0, in("eax") 1, in("edx") 0) };
    expect(c, "XSETBV after CR4.OSXSAVE cleared", got, UD);
}

/// An MSR access: the exception it took.
fn msr_write(msr: u32, v: u64) -> u64 {
    // SAFETY: the callers write only values that are refused or change nothing the guest
    // depends on.
    unsafe { trial!(["wrmsr"], in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32) }
}

fn msr_read(msr: u32) -> (u64, u64) {
    let (lo, hi): (u32, u32);
    // SAFETY: a read; a refused one is #GP.
    let got = unsafe { trial!(["rdmsr"], in("ecx") msr, out("eax") lo, out("edx") hi) };
    (got, u64::from(lo) | u64::from(hi) << 32)
}

const IA32_APIC_BASE: u32 = 0x1b;
const IA32_PAT: u32 = 0x277;

/// MTRRs (hidden): #GP; PAT: its own value taken, a reserved memory type #GP (on Intel: an
/// AMD CPU, and so QEMU, may take it: then it is put back); the APIC base: reserved bits,
/// x2APIC without enable: #GP; the TSC deadline outside TSC-deadline mode: ignored, reads 0;
/// KERNEL_GS_BASE and SYSENTER_EIP non-canonical: #GP.
fn msrs(c: &mut Checker, cpu: &Cpu) {
    for msr in [0xfe, 0x200, 0x201, 0x250, 0x2ff] {
        let (got, _) = msr_read(msr);
        expect(c, "RDMSR of an MTRR", got, GP);
        expect(c, "WRMSR of an MTRR", msr_write(msr, 0), GP);
    }
    let pat = read_msr(IA32_PAT);
    expect(c, "PAT its own value", msr_write(IA32_PAT, pat), NONE);
    let got = msr_write(IA32_PAT, (pat & !7) | 2);
    if cpu.intel {
        expect(c, "PAT entry 0 = 2 (reserved)", got, GP);
    }
    write_msr(IA32_PAT, pat);
    c.eq("PAT after the writes", read_msr(IA32_PAT), pat);
    let base = read_msr(IA32_APIC_BASE);
    c.eq("APIC base", base & !(1 << 8), 0xfee0_0800);
    for (what, v) in [
        ("APIC base bit 63", base | 1 << 63),
        ("APIC base reserved bit 9", base | 1 << 9),
        (
            "APIC base x2APIC without enable",
            (base & !(1 << 11)) | 1 << 10,
        ),
    ] {
        expect(c, what, msr_write(IA32_APIC_BASE, v), GP);
    }
    c.eq("APIC base after the writes", read_msr(IA32_APIC_BASE), base);
    expect(
        c,
        "TSC deadline write (one-shot mode)",
        msr_write(0x6e0, u64::MAX),
        NONE,
    );
    c.eq("TSC deadline read (one-shot mode)", read_msr(0x6e0), 0);
    for (what, msr) in [("KERNEL_GS_BASE", 0xc000_0102), ("SYSENTER_EIP", 0x176)] {
        let old = read_msr(msr);
        expect(c, what, msr_write(msr, 0x8000_0000_0000_0000), GP);
        c.eq(what, read_msr(msr), old);
    }
    for msr in [0x830, 0x80b, 0x4b56_4d00, 0xc001_0114, 0x48] {
        let (got, _) = msr_read(msr);
        expect(
            c,
            "RDMSR of an x2APIC MSR in xAPIC mode, KVM's, VM_CR, SPEC_CTRL",
            got,
            GP,
        );
    }
}

/// INS/OUTS: a huge count runs until the buffer leaves RAM (#GP there, RCX and the index
/// register stepped per element), DF=1 goes down, an element may cross a page, a
/// non-canonical buffer is #GP, REP with a count of 0 does nothing, a 32-bit address size
/// uses ECX/EDI only.
fn string_io(c: &mut Checker) {
    let p = pages() as u64;
    let (mut rcx, mut rdi, mut rsi): (u64, u64, u64);
    // SAFETY: 4 bytes at the end of RAM (unused by the guest) are written, then the element
    // at RAM_END faults.
    let got = unsafe {
        trial!(["rep insb"], in("dx") FREE_PORT, inout("rdi") RAM_END - 4 => rdi, inout("rcx") 1u64 << 40 => rcx)
    };
    expect(c, "rep insb with RCX = 2^40 up to the end of RAM", got, GP);
    c.eq("rep insb: RCX at the fault", rcx, (1 << 40) - 4);
    c.eq("rep insb: RDI at the fault", rdi, RAM_END);
    // SAFETY: the last 4 bytes of RAM, written just above.
    let tail = unsafe { core::ptr::read_volatile((RAM_END - 4) as *const u32) };
    c.eq("rep insb: the 4 bytes in RAM", tail, u32::MAX);
    // SAFETY: reads 4 bytes of RAM into the port, then the element at RAM_END faults.
    let got = unsafe {
        trial!(["rep outsb"], in("dx") FREE_PORT, inout("rsi") RAM_END - 4 => rsi, inout("rcx") 1u64 << 40 => rcx)
    };
    expect(c, "rep outsb with RCX = 2^40 up to the end of RAM", got, GP);
    c.eq("rep outsb: RCX at the fault", rcx, (1 << 40) - 4);
    c.eq("rep outsb: RSI at the fault", rsi, RAM_END);
    // SAFETY: the scratch pages: 3 words down from +0x10 with DF set (cleared after).
    unsafe {
        core::ptr::write_bytes(pages(), 0, 0x40);
        let got = trial!(["std", "rep insw", "cld"], in("dx") FREE_PORT, inout("rdi") p + 0x10 => rdi, inout("rcx") 3u64 => rcx);
        asm!("cld", options(nomem, nostack));
        expect(c, "std; rep insw", got, NONE);
    }
    c.eq("std; rep insw: RDI", rdi, p + 0x10 - 6);
    c.eq("std; rep insw: RCX", rcx, 0);
    // SAFETY: the scratch page, written above.
    let (words, above) = unsafe {
        (
            core::ptr::read_volatile((p + 0xc) as *const u64),
            core::ptr::read_volatile((p + 0x12) as *const u16),
        )
    };
    c.eq(
        "std; rep insw: the words at +0xc..+0x12",
        words & 0xffff_ffff_ffff,
        0xffff_ffff_ffff,
    );
    c.eq("std; rep insw: the word above untouched", above, 0);
    // SAFETY: a 4-byte element across the scratch pages' boundary.
    unsafe {
        let got = trial!(["insd"], in("dx") FREE_PORT, inout("rdi") p + 0xffe => _);
        expect(c, "insd across a page boundary", got, NONE);
        let v = core::ptr::read_volatile((p + 0xffe) as *const u32);
        c.eq("insd across a page boundary: the element", v, u32::MAX);
    }
    // SAFETY: an element 2 bytes in RAM, 2 past it: #GP, nothing written.
    unsafe {
        core::ptr::write_volatile((RAM_END - 4) as *mut u32, 0);
        let got = trial!(["insd"], in("dx") FREE_PORT, inout("rdi") RAM_END - 2 => _);
        expect(c, "insd across the end of RAM", got, GP);
        let v = core::ptr::read_volatile((RAM_END - 4) as *const u32);
        c.eq("insd across the end of RAM: nothing written", v, 0);
    }
    for (what, addr) in [
        ("insb to a non-canonical address", 0x8000_0000_0000_1000u64),
        (
            "insb to a non-canonical address (bit 48)",
            0x0001_0000_0000_1000,
        ),
    ] {
        // SAFETY: the element's address is not canonical: #GP, nothing written.
        let got = unsafe { trial!(["insb"], in("dx") FREE_PORT, inout("rdi") addr => _) };
        expect(c, what, got, GP);
    }
    // SAFETY: as above, for OUTSB's source.
    let got = unsafe {
        trial!(["outsb"], in("dx") FREE_PORT, inout("rsi") 0x8000_0000_0000_1000u64 => _)
    };
    expect(c, "outsb from a non-canonical address", got, GP);
    // SAFETY: a count of 0 does nothing.
    let got = unsafe {
        trial!(["rep insb"], in("dx") FREE_PORT, inout("rdi") 0x8000_0000_0000_0000u64 => rdi, inout("rcx") 0u64 => rcx)
    };
    expect(c, "rep insb with RCX = 0", got, NONE);
    c.eq("rep insb with RCX = 0: RDI", rdi, 0x8000_0000_0000_0000);
    // SAFETY: 32-bit address size: ECX = 2 elements at EDI (RDI's high half ignored).
    unsafe {
        core::ptr::write_bytes(pages(), 0, 4);
        let got = trial!([".byte 0x67", "rep insb"], in("dx") FREE_PORT, inout("rdi") (0xdead_0000u64 << 32) | p => rdi, inout("rcx") (0xffff_ffffu64 << 32) | 2 => rcx);
        expect(c, "addr32 rep insb", got, NONE);
        c.eq("addr32 rep insb: EDI", rdi as u32, p as u32 + 2);
        c.eq("addr32 rep insb: ECX", rcx as u32, 0);
        let v = core::ptr::read_volatile(p as *const u32);
        c.eq("addr32 rep insb: the bytes", v, 0xffff);
    }
}

/// MMIO with odd instruction forms on the 16550's scratch register: an instruction that
/// crosses a page, 13 redundant prefixes (15 bytes: decoded), 14 (16 bytes: #GP), segment
/// and size prefixes, SSE moves, `pop` and `movs` from MMIO (undecodable: #GP), a
/// non-canonical address (#GP).
fn mmio_forms(c: &mut Checker) {
    // SAFETY: the 16550's scratch register.
    unsafe { grt::mmio::write8(SCR as usize, 0x5a) };
    // `mov al, [rdi]` (8A 07) across the scratch pages' boundary, then `jmp r11` (41 FF
    // E3: back to the trial's end, whose address R11 holds).
    let code = pages();
    // SAFETY: the scratch pages, executable RAM; the code is complete before it runs.
    let got = unsafe {
        for (i, b) in [0x8a, 0x07, 0x41, 0xff, 0xe3].into_iter().enumerate() {
            core::ptr::write_volatile(code.add(0xfff + i), b);
        }
        let mut v = 0u64;
        let got =
            trial!(["jmp {f}"], f = in(reg) code.add(0xfff), in("rdi") SCR, inout("rax") 0u64 => v);
        c.eq(
            "MMIO load by an instruction across a page: the value",
            v,
            0x5a,
        );
        got
    };
    expect(c, "MMIO load by an instruction across a page", got, NONE);
    let mut v = 0u64;
    // SAFETY: a 15-byte load of the scratch register (13 DS prefixes).
    let got = unsafe {
        trial!([".byte 0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e, 0x8a, 0x07"], in("rdi") SCR, inout("rax") 0u64 => v)
    };
    expect(c, "MMIO load by a 15-byte instruction", got, NONE);
    c.eq("MMIO load by a 15-byte instruction: the value", v, 0x5a);
    // SAFETY: 16 bytes: #GP before any access.
    let got = unsafe {
        trial!([".byte 0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e,0x3e, 0x8a, 0x07"], in("rdi") SCR, out("rax") _)
    };
    expect(c, "MMIO load by a 16-byte instruction", got, GP);
    // SAFETY: prefixed loads and stores of the scratch register.
    unsafe {
        let got = trial!(["mov al, byte ptr fs:[edi]"], in("rdi") SCR | 0xffff_ffff_0000_0000, inout("rax") 0u64 => v);
        expect(c, "MMIO load with FS and a 32-bit address", got, NONE);
        c.eq("MMIO load with FS and a 32-bit address: the value", v, 0x5a);
        let got = trial!([".byte 0x66, 0x66, 0x2e, 0x44, 0x8a, 0x07"], in("rdi") SCR, out("r8") v);
        expect(
            c,
            "MMIO load into R8B with 66 66 2E REX prefixes",
            got,
            NONE,
        );
        c.eq("MMIO load into R8B: the value", v & 0xff, 0x5a);
        let got = trial!(["mov byte ptr [rdi], ah"], in("rdi") SCR, in("rax") 0xa500u64);
        expect(c, "MMIO store of AH", got, NONE);
        c.eq(
            "MMIO store of AH: the value",
            grt::mmio::read8(SCR as usize),
            0xa5,
        );
    }
    // SAFETY: CR4.OSFXSR for the SSE moves (the guest itself uses no SSE), cleared after;
    // each access is undecodable (#GP) or, with OSFXSR clear, #UD.
    unsafe {
        asm!("mov {t}, cr4", "bts {t}, 9", "mov cr4, {t}", t = out(reg) _, options(nomem, nostack));
        let got = trial!(["movd xmm0, dword ptr [rdi]"], in("rdi") SCR & !3, out("xmm0") _);
        expect(c, "movd xmm0 from MMIO", got, GP);
        let got =
            trial!(["movdqu xmmword ptr [rdi], xmm1"], in("rdi") 0xc000_0000u64, out("xmm1") _);
        expect(c, "movdqu to MMIO", got, GP);
        asm!("mov {t}, cr4", "btr {t}, 9", "mov cr4, {t}", t = out(reg) _, options(nomem, nostack));
        let got = trial!(["movd xmm0, dword ptr [rdi]"], in("rdi") SCR & !3, out("xmm0") _);
        expect(c, "movd xmm0 from MMIO without CR4.OSFXSR", got, UD);
        // The fault leaves RSP 8 lower: this trial resumes at its own label, which puts
        // RSP back.
        CHAOS_CATCH_VECTOR.store(NONE, Ordering::SeqCst);
        asm!(
            "mov {s}, rsp",
            "lea r11, [rip + 3f]",
            "mov qword ptr [rip + CHAOS_CATCH_RET], r11",
            "push 0",
            "pop qword ptr [rdi]",
            "3:",
            "mov rsp, {s}",
            in("rdi") 0xc000_0000u64, s = out(reg) _, out("r11") _,
        );
        expect(
            c,
            "pop to MMIO",
            CHAOS_CATCH_VECTOR.load(Ordering::SeqCst),
            GP,
        );
        let got = trial!(["movsb"], inout("rsi") SCR => _, inout("rdi") pages() as u64 => _);
        expect(c, "movsb from MMIO", got, GP);
        let got = trial!(["stosq"], inout("rdi") 0xc000_0000u64 => _, in("rax") 0u64);
        expect(c, "stosq to MMIO", got, GP);
        let got =
            trial!(["mov al, byte ptr [rdi]"], in("rdi") 0x8000_0000_c000_0007u64, out("al") _);
        expect(c, "MMIO load at a non-canonical alias", got, GP);
    }
}

/// Loads [`COMPAT_GDT`]; returns the GDTR it replaced (for [`gdt_restore`]).
fn gdt_load() -> [u16; 5] {
    let base = COMPAT_GDT.0.as_ptr() as u64;
    let new: [u16; 5] = [
        (size_of::<Gdt>() - 1) as u16,
        base as u16,
        (base >> 16) as u16,
        (base >> 32) as u16,
        (base >> 48) as u16,
    ];
    let mut old = [0u16; 5];
    // SAFETY: the new GDT has grt's selectors where grt's has them: nothing loaded
    // changes meaning.
    unsafe {
        asm!("sgdt [{}]", "lgdt [{}]", in(reg) old.as_mut_ptr(), in(reg) new.as_ptr(), options(nostack))
    };
    old
}

/// Loads the GDTR [`gdt_load`] replaced.
fn gdt_restore(old: [u16; 5]) {
    // SAFETY: grt's own GDT again.
    unsafe { asm!("lgdt [{}]", in(reg) old.as_ptr(), options(nostack)) };
}

/// A GDT with a 32-bit code segment at 0x20 and user data and 64-bit code at 0x28 and
/// 0x30 beside grt's selectors (0x10 64-bit code, 0x18 data).
#[repr(C, align(16))]
struct Gdt([u64; 8]);

static COMPAT_GDT: Gdt = Gdt([
    0,
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x00cf_9b00_0000_ffff,
    0x00cf_f300_0000_ffff, // 0x28: user data
    0x00af_fb00_0000_ffff, // 0x30: user 64-bit code
    0,
]);

/// In compatibility mode (a 32-bit code segment under long mode's paging): an MMIO load
/// (`mov al, [esi]`) and `rep insb` with the 32-bit address size by default, which the
/// vCPU decodes and steps in that mode; then back to 64-bit code. Nothing here may fault
/// (an exception from 32-bit code would return to 64-bit code with the 32-bit selector).
fn compatibility_mode(c: &mut Checker) {
    let buf = pages() as u64 + 0x300;
    let gdtr = gdt_load();
    let (mut al, mut ecx, mut edi): (u64, u64, u64);
    // SAFETY: the new GDT has grt's selectors where grt's has them, so nothing changes
    // meaning; the far returns go to the labels below, in this image below 4 GiB
    // (statically linked at 2 MiB); grt's GDT is loaded again after. The 32-bit code
    // touches only the declared registers, the 16550's scratch register and the scratch
    // page.
    unsafe {
        grt::mmio::write8(SCR as usize, 0x6b);
        core::ptr::write_bytes(buf as *mut u8, 0, 4);
        asm!(
            // The 32-bit far return's frame (EIP, CS), then the 64-bit one to 3f.
            "sub rsp, 8",
            "lea r11, [rip + 4f]",
            "mov dword ptr [rsp], r11d",
            "mov dword ptr [rsp + 4], 0x10",
            "lea r11, [rip + 3f]",
            "push 0x20",
            "push r11",
            "retfq",
            ".code32",
            "3:",
            "mov al, byte ptr [esi]",
            "rep insb",
            "retf",
            ".code64",
            "4:",
            in("esi") SCR as u32,
            in("dx") FREE_PORT,
            inout("rdi") buf => edi,
            inout("rcx") 2u64 => ecx,
            inout("rax") 0u64 => al,
            out("r11") _,
        );
    }
    gdt_restore(gdtr);
    c.eq("compatibility mode: MMIO load", al & 0xff, 0x6b);
    c.eq("compatibility mode: rep insb: ECX", ecx as u32, 0);
    c.eq(
        "compatibility mode: rep insb: EDI",
        edi as u32,
        buf as u32 + 2,
    );
    // SAFETY: the scratch page, written above.
    let v = unsafe { core::ptr::read_volatile(buf as *const u32) };
    c.eq("compatibility mode: rep insb: the bytes", v, 0xffff);
}

/// With page tables that loop (PML4 entry 1 is the PML4): the vCPU's own walks, of an
/// INSB buffer and of an MMIO instruction's bytes, take four levels whatever the entries
/// say and find what the CPU found: the byte lands at its physical address, the load at
/// the right register.
fn looping_tables(c: &mut Checker) {
    let Some(alias) = crate::arch::looping_alias() else {
        c.ok("the guest's own page tables are on", false);
        return;
    };
    // Physical 1 MiB: RAM nothing of the guest uses (below its image).
    let pa = 0x10_0000u64;
    // SAFETY: the byte at physical 1 MiB, through the loop and directly (identity).
    unsafe {
        core::ptr::write_volatile(pa as *mut u8, 0);
        let got = trial!(["insb"], in("dx") FREE_PORT, inout("rdi") alias + pa => _);
        expect(c, "insb through a looping page table", got, NONE);
        c.eq(
            "insb through a looping page table: the byte",
            core::ptr::read_volatile(pa as *const u8),
            0xff,
        );
    }
    // `mov al, [rdi]` then `jmp r11` at physical 1 MiB + 16, run through the loop.
    let code = (pa + 16) as *mut u8;
    // SAFETY: RAM nothing uses; the code is complete before it runs (through the alias,
    // which translates to the same bytes).
    unsafe {
        grt::mmio::write8(SCR as usize, 0x3c);
        for (i, b) in [0x8a, 0x07, 0x41, 0xff, 0xe3].into_iter().enumerate() {
            core::ptr::write_volatile(code.add(i), b);
        }
        let mut v = 0u64;
        let got =
            trial!(["jmp {f}"], f = in(reg) alias + pa + 16, in("rdi") SCR, inout("rax") 0u64 => v);
        expect(
            c,
            "MMIO load by code run through a looping page table",
            got,
            NONE,
        );
        c.eq(
            "MMIO load by code run through a looping page table: the value",
            v,
            0x3c,
        );
    }
}

/// Instructions a guest may not run or that exit: the SVM instructions (#UD on both
/// backends), VMMCALL on Intel (#UD) and VMCALL (the hypercall on both), INVPCID (#UD
/// when hidden, #GP for a bad type when shown), a debug register's high half (#GP), a
/// data breakpoint (#DB after the write), single-stepping over instructions the
/// hypervisor emulates (#DB after each), a far jump to the TSS (#GP).
fn instructions(c: &mut Checker, cpu: &Cpu) {
    // SAFETY: (every block) the instructions are refused (#UD / #GP) or change only the
    // declared registers; RBX (LLVM's) is saved where touched.
    unsafe {
        let svm: [(&str, u64); 7] = [
            ("VMRUN", 0),
            ("VMLOAD", 1),
            ("VMSAVE", 2),
            ("STGI", 3),
            ("CLGI", 4),
            ("SKINIT", 5),
            ("INVLPGA", 6),
        ];
        for (what, k) in svm {
            let got = match k {
                0 => trial!([".byte 0x0f, 0x01, 0xd8"], in("rax") pages() as u64),
                1 => trial!([".byte 0x0f, 0x01, 0xda"], in("rax") pages() as u64),
                2 => trial!([".byte 0x0f, 0x01, 0xdb"], in("rax") pages() as u64),
                3 => trial!([".byte 0x0f, 0x01, 0xdc"]),
                4 => trial!([".byte 0x0f, 0x01, 0xdd"]),
                5 => trial!([".byte 0x0f, 0x01, 0xde"], in("rax") pages() as u64),
                _ => trial!([".byte 0x0f, 0x01, 0xdf"], in("rax") 0u64, in("ecx") 1),
            };
            expect(c, what, got, UD);
        }
        let mut v = 0u64;
        let got = trial!([".byte 0x0f, 0x01, 0xc1"], inout("rax") grt::hc::VERSION => v, in("rdi") 0, in("rsi") 0, in("rdx") 0, in("r10") 0, in("r8") 0, in("r9") 0);
        expect(c, "VMCALL VERSION", got, NONE);
        c.eq("VMCALL VERSION: RAX", v, grt::hc::ABI_VERSION);
        let got = trial!([".byte 0x0f, 0x01, 0xd9"], inout("rax") grt::hc::VERSION => v, in("rdi") 0, in("rsi") 0, in("rdx") 0, in("r10") 0, in("r8") 0, in("r9") 0);
        if cpu.intel {
            expect(c, "VMMCALL on Intel", got, UD);
        } else {
            expect(c, "VMMCALL on AMD", got, NONE);
            c.eq("VMMCALL VERSION: RAX", v, grt::hc::ABI_VERSION);
        }
        let desc = pages();
        core::ptr::write_bytes(desc, 0, 16);
        let invpcid = cpu.ebx7 & (1 << 10) != 0;
        let got = trial!(["invpcid {t}, xmmword ptr [{d}]"], t = in(reg) 7u64, d = in(reg) desc);
        if cpu.intel || !invpcid {
            expect(c, "INVPCID type 7", got, if invpcid { GP } else { UD });
        } else {
            // QEMU's SVM raises #UD for an INVPCID its CPUID shows (the instruction is
            // not intercepted: the CPU's answer).
            c.ok(
                format_args!("INVPCID type 7 under SVM: {}", name(got)),
                got == GP || got == UD,
            );
        }
        let got = trial!(["mov dr7, {v}"], v = in(reg) 0x400u64 | 1 << 32);
        expect(c, "DR7 bit 32", got, GP);
        let got = trial!(["mov dr6, {v}"], v = in(reg) 0xffff_0ff0u64 | 1 << 40);
        expect(c, "DR6 bit 40", got, GP);
        // A 4-byte write breakpoint on the scratch page: #DB after the store, with DR6.B0.
        let target = pages().add(0x100);
        let mut dr6 = 0u64;
        let got = trial!([
            "mov dr0, {a}",
            "mov {t}, 0xd0001", // L0, R/W0 = 01 (writes), LEN0 = 11 (4 bytes)
            "mov dr7, {t}",
            "mov dword ptr [{a}], 0x1234",
        ], a = in(reg) target, t = out(reg) _);
        asm!("mov {d}, dr6", "mov {t}, 0x400", "mov dr7, {t}", "mov {t}, 0xffff0ff0", "mov dr6, {t}", d = out(reg) dr6, t = out(reg) _, options(nomem, nostack));
        expect(c, "data breakpoint on a write", got, DB);
        c.eq("data breakpoint: DR6.B0", dr6 & 1, 1);
        c.eq(
            "data breakpoint: the write",
            core::ptr::read_volatile(target as *const u32),
            0x1234,
        );
        // Single steps over instructions the hypervisor emulates: #DB after each, at the
        // next instruction (DR6.BS).
        for k in 0..4 {
            let mut after = 0u64;
            let got = match k {
                0 => {
                    trial!(["pushfq", "or qword ptr [rsp], 0x100", "popfq", "rdmsr", "mov {m}, 1"],
                    m = inout(reg) 0u64 => after, in("ecx") IA32_APIC_BASE, out("eax") _, out("edx") _)
                }
                1 => {
                    trial!(["pushfq", "or qword ptr [rsp], 0x100", "popfq", "out dx, al", "mov {m}, 1"],
                    m = inout(reg) 0u64 => after, in("dx") FREE_PORT, in("al") 0u8)
                }
                2 => {
                    trial!(["pushfq", "or qword ptr [rsp], 0x100", "popfq", ".byte 0x0f, 0x01, 0xc1", "mov {m}, 1"],
                    m = inout(reg) 0u64 => after, inout("rax") grt::hc::VERSION => _, in("rdi") 0, in("rsi") 0, in("rdx") 0, in("r10") 0, in("r8") 0, in("r9") 0)
                }
                _ => {
                    trial!(["pushfq", "or qword ptr [rsp], 0x100", "popfq", "mov al, byte ptr [rdi]", "mov {m}, 1"],
                    m = inout(reg) 0u64 => after, in("rdi") SCR, out("al") _)
                }
            };
            let mut dr6 = 0u64;
            asm!("mov {d}, dr6", "mov {t}, 0xffff0ff0", "mov dr6, {t}", d = out(reg) dr6, t = out(reg) _, options(nomem, nostack));
            let what = match k {
                0 => "single step over RDMSR of the APIC base",
                1 => "single step over OUT",
                2 => "single step over VMCALL",
                _ => "single step over an MMIO load",
            };
            expect(c, what, got, DB);
            c.eq(what, after, 0);
            c.eq(what, dr6 & (1 << 14), 1 << 14);
        }
        // A far jump to the TSS selector in 64-bit mode: #GP.
        let mut tr = 0u64;
        asm!("str {0:x}", out(reg) tr, options(nomem, nostack));
        let far = pages().add(0x200) as *mut u64;
        core::ptr::write_volatile(far, 0);
        core::ptr::write_volatile(far.add(1), tr);
        let got = trial!(["rex64 jmp fword ptr [{f}]"], f = in(reg) far);
        expect(c, "far jump to the TSS", got, GP);
    }
}

/// The local APIC (xAPIC page): EOI with nothing in service, LVT vectors below 16, timer
/// divide garbage, ICRs of every delivery mode and shorthand (an NMI to self arrives; INIT
/// to self resets only the APIC; SIPI, SMI, ExtInt change nothing), an illegal vector (ESR),
/// a wrong width (#GP); then x2APIC mode: the ICR's reserved bits and a write to a
/// read-only register are #GP, a return to xAPIC without disabling is #GP.
fn local_apic(c: &mut Checker) {
    let reg = |off: u64| (LAPIC + off) as usize;
    // SAFETY: (every block) the guest's own local APIC, interrupts masked.
    unsafe {
        let r = |off: u64| grt::mmio::read32(reg(off));
        let w = |off: u64, v: u32| grt::mmio::write32(reg(off), v);
        w(0xf0, 0x1ff); // software enable, spurious vector 0xff
        w(0x280, 0);
        w(0x280, 0); // ESR cleared
        w(0xb0, 0); // EOI, nothing in service
        w(0x320, 5); // timer LVT: vector 5, unmasked, one-shot
        w(0x3e0, 0xffff_ffff); // divide garbage
        w(0x380, 1); // one tick
                     // Each read exits; the timer fires at an entry once its tick has passed.
        let mut spins = 0;
        while r(0x390) != 0 && spins < 1000 {
            spins += 1;
        }
        let got = trial!(["pause"]);
        expect(c, "local APIC timer with vector 5", got, NONE);
        w(0x320, 1 << 16);
        w(0x280, 0);
        c.eq(
            "ESR after a timer with vector 5 (receive illegal vector)",
            r(0x280) & (1 << 6),
            1 << 6,
        );
        c.eq("TDCR keeps its 4 bits", r(0x3e0), 0xb);
        // (delivery mode, shorthand, destination, what this vCPU gets): fixed and lowest
        // priority at vector 0x40 (pending, interrupts masked), SMI, the reserved mode 3,
        // an NMI to all (this vCPU takes it), to the others (none), SIPI, ExtInt, INIT and
        // SIPI to APIC id 0xfe (no vCPU has it), self with a mode other than fixed
        // (undefined: ignored); last INIT to all, which resets this local APIC only.
        let icrs: [(u32, u32, u32, u64); 13] = [
            (0, 1, 0, NONE),
            (0, 2, 0, NONE),
            (1, 3, 0, NONE),
            (2, 1, 0, NONE),
            (3, 2, 0, NONE),
            (4, 2, 0, NMI),
            (4, 3, 0, NONE),
            (4, 1, 0, NONE),
            (6, 2, 0, NONE),
            (7, 2, 0, NONE),
            (5, 0, 0xfe, NONE),
            (6, 0, 0xfe, NONE),
            (5, 2, 0, NONE),
        ];
        for (mode, shorthand, dest, want) in icrs {
            w(0x310, dest << 24);
            let icr = 0x40 | mode << 8 | 1 << 14 | shorthand << 18;
            let got = trial!(["mov dword ptr [{a}], {v:e}", "pause"], a = in(reg) reg(0x300), v = in(reg) icr);
            c.ok(
                format_args!("ICR {icr:#x}: {} (expected {})", name(got), name(want)),
                got == want,
            );
        }
        c.eq("SVR after INIT to all (reset)", r(0xf0), 0xff);
        c.eq("LVT timer after INIT (masked)", r(0x320), 1 << 16);
        w(0xf0, 0x1ff);
        w(0x280, 0);
        w(0x300, 3 | 2 << 18); // fixed, vector 3, to all
        w(0x280, 0);
        c.eq(
            "ESR after an IPI with vector 3 (send illegal vector)",
            r(0x280) & (1 << 5),
            1 << 5,
        );
        // Accesses the local APIC refuses (not 32 bits, misaligned): dropped, read 0.
        let got = trial!(["mov word ptr [{a}], 1"], a = in(reg) reg(0x80));
        expect(c, "16-bit write to the TPR", got, NONE);
        c.eq("TPR after a 16-bit write", r(0x80), 0);
        let mut v = 0u32;
        let got = trial!(["mov {v:e}, dword ptr [{a}]"], a = in(reg) reg(0x32), v = inout(reg) 0x5a5a_5a5au32 => v);
        expect(c, "misaligned read of the version", got, NONE);
        c.eq("misaligned read of the version: the value", v, 0);
        w(0xb0, 0);
        // x2APIC mode.
        let base = read_msr(IA32_APIC_BASE);
        expect(
            c,
            "x2APIC mode on",
            msr_write(IA32_APIC_BASE, base | 1 << 10),
            NONE,
        );
        expect(
            c,
            "x2APIC ICR reserved bit 13",
            msr_write(0x830, 0x40 | 1 << 13),
            GP,
        );
        expect(
            c,
            "x2APIC ICR reserved bit 20",
            msr_write(0x830, 0x40 | 1 << 20),
            GP,
        );
        expect(c, "x2APIC write of the version", msr_write(0x803, 0), GP);
        expect(c, "x2APIC EOI of 1", msr_write(0x80b, 1), GP);
        expect(c, "x2APIC self IPI vector 2", msr_write(0x83f, 2), NONE);
        expect(
            c,
            "x2APIC LVT timer mode 3",
            msr_write(0x832, 3 << 17 | 1 << 16),
            GP,
        );
        let got = trial!(["mov eax, dword ptr [{a}]"], a = in(reg) reg(0x30), out("eax") _);
        expect(c, "xAPIC page read in x2APIC mode", got, NONE);
        expect(
            c,
            "x2APIC to xAPIC directly",
            msr_write(IA32_APIC_BASE, base),
            GP,
        );
        expect(
            c,
            "APIC disabled",
            msr_write(IA32_APIC_BASE, base & !(3 << 10)),
            NONE,
        );
        expect(
            c,
            "APIC disabled to x2APIC",
            msr_write(IA32_APIC_BASE, base | 1 << 10),
            GP,
        );
        expect(c, "xAPIC again", msr_write(IA32_APIC_BASE, base), NONE);
        c.eq("APIC base at the end", read_msr(IA32_APIC_BASE), base);
        c.eq("local APIC version register", r(0x30) & 0xff, 0x14);
    }
}

/// The I/O APIC: redirection entries with vectors below 16, reserved delivery modes, every
/// destination, read back (vector and mode as written); a register past the last and a
/// wrong width change nothing.
fn io_apic(c: &mut Checker) {
    // SAFETY: the VM's I/O APIC: IOREGSEL at +0, IOWIN at +0x10; the entries written are
    // masked but for pins nothing drives (20..23).
    unsafe {
        let sel = |r: u32| grt::mmio::write32(IOAPIC as usize, r);
        let win = || grt::mmio::read32((IOAPIC + 0x10) as usize);
        let put = |v: u32| grt::mmio::write32((IOAPIC + 0x10) as usize, v);
        for (pin, low) in [
            (20u32, 0x0000_0003u32),
            (21, 0x0000_0300),
            (22, 0x0000_0700 | 0x8000),
            (23, 0x0001_07ff),
        ] {
            sel(0x10 + 2 * pin);
            put(low);
            sel(0x11 + 2 * pin);
            put(0xff00_0000);
            sel(0x10 + 2 * pin);
            c.eq(
                format_args!("I/O APIC pin {pin} low: vector and mode"),
                win() & 0x7ff,
                low & 0x7ff,
            );
            sel(0x10 + 2 * pin);
            put(1 << 16);
        }
        sel(0xff);
        let _ = win();
        put(0xffff_ffff);
        sel(1);
        c.eq("I/O APIC version after junk", win() & 0xff, 0x11);
        let got = trial!(["mov byte ptr [{a}], 1"], a = in(reg) IOAPIC);
        c.ok(
            format_args!("I/O APIC byte write: {}", name(got)),
            got == NONE || got == GP,
        );
    }
}

/// HLT with interrupts masked sleeps (the vCPU does not spin through it) until an NMI: the
/// PIT's channel 0 fires once after 10 ms, its I/O APIC input (2) is routed as an NMI to
/// this vCPU, and the HLT must end in that NMI, at least 5 ms later by the TSC.
fn halt_until_nmi(c: &mut Checker) {
    let tsc_khz = u64::from(cpuid(0x4000_0010, 0)[0]);
    // SAFETY: (every block) this VM's local APIC, I/O APIC and PIT ports; interrupts stay
    // masked; the NMI is taken by this module's entry.
    unsafe {
        grt::mmio::write32((LAPIC + 0xf0) as usize, 0x1ff);
        grt::mmio::write32(IOAPIC as usize, 0x10 + 2 * 2);
        grt::mmio::write32((IOAPIC + 0x10) as usize, 4 << 8); // NMI, edge, unmasked
        grt::mmio::write32(IOAPIC as usize, 0x11 + 2 * 2);
        grt::mmio::write32((IOAPIC + 0x10) as usize, 0); // APIC id 0
        let count: u16 = 11_932; // 10 ms at 1.193182 MHz
        grt::pio::outb(0x43, 0x30); // channel 0, low then high byte, mode 0
        grt::pio::outb(0x40, count as u8);
        let start = core::arch::x86_64::_rdtsc();
        grt::pio::outb(0x40, (count >> 8) as u8);
        let got = trial!(["hlt"]);
        let waited = core::arch::x86_64::_rdtsc() - start;
        grt::mmio::write32(IOAPIC as usize, 0x10 + 2 * 2);
        grt::mmio::write32((IOAPIC + 0x10) as usize, 1 << 16);
        expect(
            c,
            "HLT with interrupts masked, PIT NMI after 10 ms",
            got,
            NMI,
        );
        c.ok(
            format_args!(
                "HLT with interrupts masked: woken after {} us, expected at least 5 ms",
                waited * 1000 / tsc_khz.max(1)
            ),
            waited >= tsc_khz * 5,
        );
    }
}

/// A stack for user mode and one for the exceptions it takes (the TSS's RSP0).
#[repr(C, align(4096))]
struct Stacks(UnsafeCell<[u8; 0x2000]>);

// SAFETY: only the guest's one vCPU uses them, as stacks.
unsafe impl Sync for Stacks {}

static STACKS: Stacks = Stacks(UnsafeCell::new([0; 0x2000]));

/// RSP0 in the TSS the hypervisor's entry state gives every vCPU (docs/x86.md).
const TSS_RSP0: u64 = 0x1080 + 4;

/// `int 0x80` from user mode: its gate is DPL 0, so the CPU raises #GP with this error
/// code (the vector's IDT slot, bit 1) — how a user trial that took no exception ends.
/// (QEMU reports the slot as the vector times 16, the 64-bit gate's size: 0x802.)
const BACK: u64 = (0x80 << 3) | 2;

/// Whether a user trial's outcome is `want`, [`BACK`] also as QEMU reports it.
fn same_outcome(got: (u64, u64), want: (u64, u64)) -> bool {
    got == want || (want == (GP, BACK) && got == (GP, (0x80 << 4) | 2))
}

/// Runs the instructions at CPL 3 (user code and stack in the first gigabyte) and returns
/// the vector and error code of the exception that brought the vCPU back (an instruction
/// that takes none is followed by `int 0x80`: #GP with [`BACK`]). `$t` are asm strings,
/// `$op` operands.
macro_rules! user_trial {
    ([$($t:literal),* $(,)?] $(, $($op:tt)*)?) => {{
        CHAOS_CATCH_VECTOR.store(NONE, Ordering::SeqCst);
        asm!(
            "lea r11, [rip + 2f]",
            "mov qword ptr [rip + CHAOS_CATCH_RET], r11",
            "mov qword ptr [rip + CHAOS_CATCH_RSP], rsp",
            "push 0x2b",
            "push {ustack}",
            "push {flags}",
            "push 0x33",
            "lea r11, [rip + 5f]",
            "push r11",
            "iretq",
            "5:",
            $($t,)*
            "int 0x80",
            "2:",
            ustack = in(reg) STACKS.0.get() as u64 + 0x1000,
            flags = in(reg) USER_FLAGS.load(Ordering::Relaxed),
            out("r11") _,
            $($($op)*)?
        );
        (CHAOS_CATCH_VECTOR.load(Ordering::SeqCst), CHAOS_CATCH_ERROR.load(Ordering::SeqCst))
    }};
}

/// RFLAGS for a user trial: IF clear, IOPL 0; AC for the alignment-check trial.
static USER_FLAGS: AtomicU64 = AtomicU64::new(2);

/// From user mode (CPL 3): VMCALL is #UD (the hypervisor's CPL check, both backends),
/// CPUID is answered, IN of a port outside the TSS's I/O bitmap, RDMSR and HLT are #GP,
/// an unaligned load with CR0.AM and RFLAGS.AC is #AC(0), an MMIO load of the 16550 is
/// emulated. The exceptions come back through the TSS's RSP0 (set here) to CPL 0.
fn user_mode(c: &mut Checker, cpu: &Cpu) {
    if !crate::arch::user_pages(true) {
        c.ok("the guest's own page tables are on", false);
        return;
    }
    let gdtr = gdt_load();
    let gs_base = read_msr(0xc000_0101);
    // SAFETY: the TSS is the vCPU's, in its RAM at the entry contract's address; RSP0 is
    // its stack for exceptions from user mode (the guest had none); put back below.
    let rsp0 = unsafe { core::ptr::read_unaligned(TSS_RSP0 as *const u64) };
    // SAFETY: as above.
    unsafe { core::ptr::write_unaligned(TSS_RSP0 as *mut u64, STACKS.0.get() as u64 + 0x2000) };
    let expect_back = |c: &mut Checker, what: &str, (v, e): (u64, u64), want: (u64, u64)| {
        c.ok(
            format_args!(
                "{what} from user mode: {} (error code {e:#x}), expected {} (error code {:#x})",
                name(v),
                name(want.0),
                want.1
            ),
            same_outcome((v, e), want),
        );
    };
    // SAFETY: (every block) user code runs the instruction and comes back through an
    // exception to CPL 0 with the trial's stack; it touches only the declared registers,
    // the user stack and the 16550's scratch register.
    unsafe {
        let mut v = 0u64;
        let got = user_trial!([".byte 0x0f, 0x01, 0xc1"], inout("rax") grt::hc::VERSION => v, in("rdi") 0, in("rsi") 0, in("rdx") 0, in("r10") 0, in("r8") 0, in("r9") 0);
        expect_back(c, "VMCALL", got, (UD, 0));
        c.eq("VMCALL from user mode: RAX unchanged", v, grt::hc::VERSION);
        let got = user_trial!(["push rbx", "cpuid", "pop rbx"], inout("eax") 0x4000_0000u32 => _, out("ecx") _, out("edx") _);
        expect_back(c, "CPUID", got, (GP, BACK));
        let got = user_trial!(["in al, dx"], in("dx") FREE_PORT, out("al") _);
        expect_back(c, "IN", got, (GP, 0));
        let got = user_trial!(["rdmsr"], in("ecx") IA32_EFER, out("eax") _, out("edx") _);
        expect_back(c, "RDMSR", got, (GP, 0));
        let got = user_trial!(["hlt"]);
        expect_back(c, "HLT", got, (GP, 0));
        grt::mmio::write8(SCR as usize, 0x77);
        let got = user_trial!(["mov al, byte ptr [rdi]"], in("rdi") SCR, inout("rax") 0u64 => v);
        expect_back(c, "MMIO load", got, (GP, BACK));
        c.eq("MMIO load from user mode: the value", v & 0xff, 0x77);
        asm!("mov {t}, cr0", "bts {t}, 18", "mov cr0, {t}", t = out(reg) _, options(nomem, nostack));
        USER_FLAGS.store(2 | 1 << 18, Ordering::Relaxed);
        let got = user_trial!(["mov eax, dword ptr [rdi + 1]"], in("rdi") STACKS.0.get() as u64, out("eax") _);
        if cpu.intel || !same_outcome(got, (GP, BACK)) {
            expect_back(c, "unaligned load with CR0.AM and RFLAGS.AC", got, (17, 0));
        } else {
            // QEMU TCG (the SVM runs) does not check alignment: no #AC there.
            grt::println!("chaos: no #AC from user mode: the CPU does not check alignment");
        }
        USER_FLAGS.store(2, Ordering::Relaxed);
        asm!("mov {t}, cr0", "btr {t}, 18", "mov cr0, {t}", t = out(reg) _, options(nomem, nostack));
        core::ptr::write_unaligned(TSS_RSP0 as *mut u64, rsp0);
        asm!("mov {t:e}, 0x18", "mov ds, {t:e}", "mov es, {t:e}", "mov fs, {t:e}", "mov gs, {t:e}", t = out(reg) _, options(nomem, nostack));
    }
    grt::x86::write_msr(0xc000_0101, gs_base);
    gdt_restore(gdtr);
    crate::arch::user_pages(false);
}
