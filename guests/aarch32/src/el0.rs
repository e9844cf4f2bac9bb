//! The AArch32 EL0 programs, the vectors that take their exceptions, and the checks.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use grt::check::Checker;
use grt::irq::{self, Irq};
// The + 0x600 vector saves grt's frame (x0-x14 are R0-R14 of the AArch32 program).
use grt::{TrapFrame as Frame, TRAP_FRAME_SIZE as FRAME_SIZE};

/// The emulated PL011 and its flag register.
const UART: u64 = 0x0900_0000;
const UART_FR: u64 = 0x18;
/// An address nothing in the VM claims (the unclaimed policy is `fault`).
const UNCLAIMED: u64 = 0x0a00_0000;

/// SPSR of AArch32 user mode (M = 0b10000) with A, I, F unmasked; T selects T32.
const SPSR_USR: u64 = 0x10;
const SPSR_T: u64 = 1 << 5;
/// The mode and T bits of an AArch32 SPSR.
const SPSR_MODE_T: u64 = 0x3f;

/// ESR_EL1 exception classes.
const EC_UNKNOWN: u64 = 0x00;
const EC_CP15_MRC: u64 = 0x03;
const EC_SVC32: u64 = 0x11;
const EC_DABT_LOWER: u64 = 0x24;
/// ESR_EL1.IL, ISS.ISV, ISS.WnR, and the fault status code of an external abort.
const ESR_IL: u64 = 1 << 25;
const ESR_ISV: u64 = 1 << 24;
const ESR_WNR: u64 = 1 << 6;
const DFSC_EXTERNAL: u64 = 0x10;

/// One exception the 0x600 vector took other than the closing SVC: ESR, FAR, ELR, SPSR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Taken {
    esr: u64,
    far: u64,
    elr: u64,
    spsr: u64,
}

/// At most this many exceptions per program; one more ends the program.
const LOG_MAX: usize = 8;
static LOG: [[AtomicU64; 4]; LOG_MAX] = [const { [const { AtomicU64::new(0) }; 4] }; LOG_MAX];
static LOG_LEN: AtomicUsize = AtomicUsize::new(0);
/// R0-R14, ELR and SPSR at the closing SVC.
static EXIT_REGS: [AtomicU64; 15] = [const { AtomicU64::new(0) }; 15];
static EXIT_ELR: AtomicU64 = AtomicU64::new(0);
static EXIT_SPSR: AtomicU64 = AtomicU64::new(0);
/// SP_EL1 of `a32_enter`, for the return when the program ends (written by the assembly).
static SAVED_SP: AtomicU64 = AtomicU64::new(0);
/// IRQs taken through + 0x680 (counted by the assembly).
static IRQ_VECTOR: AtomicU64 = AtomicU64::new(0);
/// Timer interrupts, with ELR_EL1 and SPSR_EL1 of the last one.
static TIMER_IRQS: AtomicU64 = AtomicU64::new(0);
static TIMER_ELR: AtomicU64 = AtomicU64::new(0);
static TIMER_SPSR: AtomicU64 = AtomicU64::new(0);
/// The address of the timer program's `wfi` while it runs (else `u64::MAX`): a timer
/// interrupt taken there came before the `wfi` ran (at the return to EL0).
static EARLY_AT: AtomicU64 = AtomicU64::new(u64::MAX);
/// A timer interrupt came before the `wfi` ran; the handler armed the timer again.
static EARLY: AtomicBool = AtomicBool::new(false);
/// How many times the timer program is run again when its interrupt came before its `wfi`
/// (the deadline passed before the vCPU got to EL0: the emulator's thread descheduled for
/// 10 ms on a loaded host). An interrupt taken there every time still fails.
const TIMER_RETRIES: u32 = 8;
/// Illegal Execution state exceptions taken at EL1 (counted by the assembly).
static ILLEGAL: AtomicU64 = AtomicU64::new(0);

// The vector table: grt's vectors for everything except + 0x200 (an Illegal Execution state
// exception, EC 0x0E, is counted and skipped; anything else goes to grt), + 0x600 (saves a
// frame and calls `a32_sync`, which either resumes the program or ends it) and + 0x680
// (counts the IRQ, then grt handles it). `a32_enter(entry, spsr, &[r0, r1, r2, r3])` saves
// the callee-saved registers and SP and erets to the program; it returns when the program
// ends. `a32_illegal_return` erets to AArch32 EL1, which is illegal.
global_asm!(
    concat!(
    r#"
    .section .text.a32_vectors, "ax"
    .balign 0x800
    .global a32_vectors
a32_vectors:
    b    grt_vectors + 0x000
    .balign 0x80
    b    grt_vectors + 0x080
    .balign 0x80
    b    grt_vectors + 0x100
    .balign 0x80
    b    grt_vectors + 0x180
    .balign 0x80
    stp  x0, x1, [sp, #-16]!
    mrs  x0, esr_el1
    lsr  x0, x0, #26
    cmp  x0, #0x0e
    b.ne 1f
    adrp x0, {illegal}
    add  x0, x0, :lo12:{illegal}
    ldr  x1, [x0]
    add  x1, x1, #1
    str  x1, [x0]
    mrs  x0, spsr_el1
    bic  x0, x0, #(1 << 20)
    msr  spsr_el1, x0
    mrs  x0, elr_el1
    add  x0, x0, #4
    msr  elr_el1, x0
    ldp  x0, x1, [sp], #16
    eret
1:  ldp  x0, x1, [sp], #16
    b    grt_vectors + 0x200
    .balign 0x80
    b    grt_vectors + 0x280
    .balign 0x80
    b    grt_vectors + 0x300
    .balign 0x80
    b    grt_vectors + 0x380
    .balign 0x80
    b    grt_vectors + 0x400
    .balign 0x80
    b    grt_vectors + 0x480
    .balign 0x80
    b    grt_vectors + 0x500
    .balign 0x80
    b    grt_vectors + 0x580
    .balign 0x80
    sub  sp, sp, #{frame}
    stp  x0, x1, [sp, #0]
    b    a32_sync_entry
    .balign 0x80
    stp  x0, x1, [sp, #-16]!
    adrp x0, {irq_vector}
    add  x0, x0, :lo12:{irq_vector}
    ldr  x1, [x0]
    add  x1, x1, #1
    str  x1, [x0]
    ldp  x0, x1, [sp], #16
    b    grt_vectors + 0x280
    .balign 0x80
    b    grt_vectors + 0x700
    .balign 0x80
    b    grt_vectors + 0x780

    .section .text, "ax"
a32_sync_entry:
"#,
    grt::aarch64_trap_frame_save!(),
    r#"
    mov  x0, sp
    bl   a32_sync
    cbnz x0, 2f
"#,
    grt::aarch64_trap_frame_restore!(),
    r#"
    add  sp, sp, #{frame}
    eret
2:  adrp x9, {saved_sp}
    ldr  x9, [x9, :lo12:{saved_sp}]
    mov  sp, x9
    ldp  x19, x20, [sp, #16]
    ldp  x21, x22, [sp, #32]
    ldp  x23, x24, [sp, #48]
    ldp  x25, x26, [sp, #64]
    ldp  x27, x28, [sp, #80]
    ldp  x29, x30, [sp], #96
    ret

    .global a32_enter
a32_enter:
    stp  x29, x30, [sp, #-96]!
    stp  x19, x20, [sp, #16]
    stp  x21, x22, [sp, #32]
    stp  x23, x24, [sp, #48]
    stp  x25, x26, [sp, #64]
    stp  x27, x28, [sp, #80]
    mov  x9, sp
    adrp x10, {saved_sp}
    str  x9, [x10, :lo12:{saved_sp}]
    msr  elr_el1, x0
    msr  spsr_el1, x1
    mov  x9, x2
    ldp  x0, x1, [x9]
    ldp  x2, x3, [x9, #16]
    mov  x4, xzr
    mov  x5, xzr
    mov  x6, xzr
    mov  x7, xzr
    mov  x8, xzr
    mov  x9, xzr
    mov  x10, xzr
    mov  x11, xzr
    mov  x12, xzr
    mov  x13, xzr
    mov  x14, xzr
    eret

    .global a32_illegal_return
a32_illegal_return:
    adr  x9, 3f
    msr  elr_el1, x9
    mov  x9, #0x1d3
    msr  spsr_el1, x9
    eret
3:  nop
    ret

    // The EL0 programs. A32: .word, T32: .hword (first halfword first).
    .balign 4
    .global a32_mmio
a32_mmio:
    .word 0xe5910018            // ldr r0, [r1, #0x18]
    .word 0xe5812000            // str r2, [r1]
    .word 0xef000000            // svc #0
    .balign 4
    .global t32_mmio
t32_mmio:
    .hword 0x6988               // ldr r0, [r1, #0x18]
    .hword 0x600a               // str r2, [r1]
    .hword 0xf8d1, 0x3018       // ldr.w r3, [r1, #0x18]
    .hword 0x4280               // cmp r0, r0
    .hword 0xbf0c               // ite eq
    .hword 0x698d               // ldreq r5, [r1, #0x18]
    .hword 0x2401               // movne r4, #1
    .hword 0xdf00               // svc #0
    .balign 4
    .global a32_fault
a32_fault:
    .word 0xe5910000            // ldr r0, [r1]
    .word 0xe5812000            // str r2, [r1]
    .word 0xe8930001            // ldmia r3, {{r0}}
    .word 0xef000000            // svc #0
    .balign 4
    .global t32_fault
t32_fault:
    .hword 0x6808               // ldr r0, [r1]
    .hword 0xf8d1, 0x0000       // ldr.w r0, [r1]
    .hword 0x600a               // str r2, [r1]
    .hword 0x4280               // cmp r0, r0
    .hword 0xbf0c               // ite eq
    .hword 0x6808               // ldreq r0, [r1]
    .hword 0x2401               // movne r4, #1
    .hword 0xdf00               // svc #0
    .balign 4
    .global a32_cp15
a32_cp15:
    .word 0xee110f10            // mrc p15, 0, r0, c1, c0, 0 (SCTLR)
    .word 0xee190f1c            // mrc p15, 0, r0, c9, c12, 0 (PMCR)
    .word 0xef000000            // svc #0
    .balign 4
    .global t32_cp15
t32_cp15:
    .hword 0xee11, 0x0f10       // mrc p15, 0, r0, c1, c0, 0 (SCTLR)
    .hword 0xee19, 0x0f1c       // mrc p15, 0, r0, c9, c12, 0 (PMCR)
    .hword 0xdf00               // svc #0
    .balign 4
    .global a32_wfi
a32_wfi:
    .word 0xe320f003            // 1: wfi
    .word 0xe5910000            // ldr r0, [r1] (the count of timer interrupts)
    .word 0xe3500000            // cmp r0, #0
    .word 0x0afffffb            // beq 1b (a WFI may end without an interrupt)
    .word 0xef000000            // svc #0
    .balign 4
    .global t32_wfi
t32_wfi:
    .hword 0xbf30               // 1: wfi
    .hword 0x6808               // ldr r0, [r1] (the count of timer interrupts)
    .hword 0x2800               // cmp r0, #0
    .hword 0xd0fb               // beq 1b (a WFI may end without an interrupt)
    .hword 0xdf00               // svc #0
"#
    ),
    frame = const FRAME_SIZE,
    illegal = sym ILLEGAL,
    irq_vector = sym IRQ_VECTOR,
    saved_sp = sym SAVED_SP,
);

extern "C" {
    static a32_vectors: u8;
    fn a32_enter(entry: u64, spsr: u64, regs: *const [u64; 4]);
    fn a32_illegal_return();
    fn a32_mmio();
    fn t32_mmio();
    fn a32_fault();
    fn t32_fault();
    fn a32_cp15();
    fn t32_cp15();
    fn a32_wfi();
    fn t32_wfi();
}

/// Length of the A32/T32 instruction at `pc` in state `spsr`: 4 in A32; in T32, 4 when its
/// first halfword starts 0b11101, 0b11110 or 0b11111, else 2.
fn insn_len(pc: u64, spsr: u64) -> u64 {
    if spsr & SPSR_T == 0 {
        return 4;
    }
    // SAFETY: `pc` is the address of an instruction the program just ran, in the guest's
    // image (RAM, 2-byte aligned in T32).
    let first = unsafe { core::ptr::read_volatile(pc as *const u16) };
    if first >> 11 >= 0b11101 {
        4
    } else {
        2
    }
}

/// ITSTATE (IT[7:0]) of an AArch32 SPSR: IT[7:2] in bits 15:10, IT[1:0] in bits 26:25.
fn itstate(spsr: u64) -> u64 {
    ((spsr >> 8) & 0xfc) | ((spsr >> 25) & 0x3)
}

/// The SPSR after skipping one T32 instruction: ITSTATE advanced (ITAdvance), as executing
/// it would have; A32 or outside an IT block, unchanged.
fn it_advance(spsr: u64) -> u64 {
    let it = itstate(spsr);
    if spsr & SPSR_T == 0 || it == 0 {
        return spsr;
    }
    let it = if it & 0x7 == 0 {
        0
    } else {
        (it & 0xe0) | ((it << 1) & 0x1f)
    };
    (spsr & !((0x3f << 10) | (0x3 << 25))) | ((it & 0xfc) << 8) | ((it & 0x3) << 25)
}

/// Called by the + 0x600 vector: an SVC ends the program (returns 1); anything else is
/// logged and skipped (returns 0).
#[no_mangle]
extern "C" fn a32_sync(frame: &mut Frame) -> u64 {
    let (esr, far): (u64, u64);
    // SAFETY: reading the EL1 syndrome registers has no side effects.
    unsafe {
        asm!("mrs {}, esr_el1", out(reg) esr, options(nomem, nostack));
        asm!("mrs {}, far_el1", out(reg) far, options(nomem, nostack));
    }
    let n = LOG_LEN.load(Ordering::SeqCst);
    if esr >> 26 == EC_SVC32 || n == LOG_MAX {
        for (slot, &x) in EXIT_REGS.iter().zip(&frame.x) {
            slot.store(x, Ordering::SeqCst);
        }
        EXIT_ELR.store(frame.elr, Ordering::SeqCst);
        EXIT_SPSR.store(frame.spsr, Ordering::SeqCst);
        return 1;
    }
    for (slot, v) in LOG[n].iter().zip([esr, far, frame.elr, frame.spsr]) {
        slot.store(v, Ordering::SeqCst);
    }
    LOG_LEN.store(n + 1, Ordering::SeqCst);
    frame.elr += insn_len(frame.elr, frame.spsr);
    frame.spsr = it_advance(frame.spsr);
    0
}

/// The grt interrupt handler: notes the context the timer interrupted.
fn on_irq(irq: Irq) {
    if irq != Irq::Timer {
        return;
    }
    let (elr, spsr): (u64, u64);
    // SAFETY: reading ELR_EL1 / SPSR_EL1 has no side effects; they still hold the
    // interrupted context (no exception was taken at EL1 since).
    unsafe {
        asm!("mrs {}, elr_el1", out(reg) elr, options(nomem, nostack));
        asm!("mrs {}, spsr_el1", out(reg) spsr, options(nomem, nostack));
    }
    if elr == EARLY_AT.load(Ordering::SeqCst) {
        // Before the `wfi` ran, which would wait for an interrupt that has come: armed
        // again so that it ends, and the program is run again.
        EARLY.store(true, Ordering::SeqCst);
        irq::timer_set(irq::timer_now() + irq::timer_freq() / 100);
        return;
    }
    TIMER_ELR.store(elr, Ordering::SeqCst);
    TIMER_SPSR.store(spsr, Ordering::SeqCst);
    TIMER_IRQS.fetch_add(1, Ordering::SeqCst);
}

/// What a program left: its registers at the closing SVC, the SVC's ELR and SPSR (ELR is
/// the instruction after the SVC), and the exceptions taken before.
struct Run {
    regs: [u64; 15],
    elr: u64,
    spsr: u64,
    taken: [Taken; LOG_MAX],
    count: usize,
}

/// Runs the program at `entry` in AArch32 user mode (T32 when `thumb`) with R0-R3 = `r`.
fn run_el0(entry: unsafe extern "C" fn(), thumb: bool, r: [u64; 4]) -> Run {
    LOG_LEN.store(0, Ordering::SeqCst);
    let spsr = SPSR_USR | if thumb { SPSR_T } else { 0 };
    // SAFETY: `entry` is one of the EL0 programs above, each of which ends with an SVC that
    // `a32_sync` turns into the return from `a32_enter`; every exception in between is
    // taken by the vectors installed in VBAR_EL1, which preserve EL1's state. The program
    // touches only the PL011, an unclaimed address, and reads (never writes) the count of
    // timer interrupts.
    unsafe { a32_enter(entry as usize as u64, spsr, &r) };
    let mut run = Run {
        regs: [0; 15],
        elr: EXIT_ELR.load(Ordering::SeqCst),
        spsr: EXIT_SPSR.load(Ordering::SeqCst),
        taken: [Taken::default(); LOG_MAX],
        count: LOG_LEN.load(Ordering::SeqCst),
    };
    for (r, slot) in run.regs.iter_mut().zip(&EXIT_REGS) {
        *r = slot.load(Ordering::SeqCst);
    }
    for (t, slot) in run.taken.iter_mut().zip(&LOG).take(run.count) {
        let v = |i: usize| slot[i].load(Ordering::SeqCst);
        *t = Taken {
            esr: v(0),
            far: v(1),
            elr: v(2),
            spsr: v(3),
        };
    }
    run
}

/// The checks common to every program's end: it reached its SVC at `svc` (so every
/// instruction before it resumed at the right place) in the right state.
fn check_end(c: &mut Checker, what: (&str, &str), run: &Run, svc: u64, thumb: bool) {
    let (name, group) = what;
    let (svc_len, mode) = if thumb {
        (2, SPSR_USR | SPSR_T)
    } else {
        (4, SPSR_USR)
    };
    c.eq(
        format_args!("{name} {group}: ended after its svc"),
        run.elr,
        svc + svc_len,
    );
    c.eq(
        format_args!("{name} {group}: SPSR mode and T at the svc"),
        run.spsr & SPSR_MODE_T,
        mode,
    );
}

/// Checks logged data abort `i` of state `name`: from AArch32 EL0 in `mode` at `pc`, for
/// `addr`, a write or not.
fn check_abort(
    c: &mut Checker,
    (name, i): (&str, usize),
    t: &Taken,
    want: (u64, u64, bool),
    mode: u64,
) {
    let (pc, addr, write) = want;
    c.eq(
        format_args!("{name} abort {i}: EC"),
        t.esr >> 26,
        EC_DABT_LOWER,
    );
    c.eq(format_args!("{name} abort {i}: IL"), t.esr & ESR_IL, ESR_IL);
    c.eq(format_args!("{name} abort {i}: ISV"), t.esr & ESR_ISV, 0);
    c.eq(
        format_args!("{name} abort {i}: DFSC"),
        t.esr & 0x3f,
        DFSC_EXTERNAL,
    );
    c.eq(
        format_args!("{name} abort {i}: WnR"),
        t.esr & ESR_WNR,
        if write { ESR_WNR } else { 0 },
    );
    c.eq(format_args!("{name} abort {i}: FAR"), t.far, addr);
    c.eq(format_args!("{name} abort {i}: ELR"), t.elr, pc);
    c.eq(
        format_args!("{name} abort {i}: SPSR mode and T"),
        t.spsr & SPSR_MODE_T,
        mode,
    );
}

/// The EL0 programs of one instruction set.
struct Programs {
    name: &'static str,
    thumb: bool,
    mmio: unsafe extern "C" fn(),
    fault: unsafe extern "C" fn(),
    cp15: unsafe extern "C" fn(),
    wfi: unsafe extern "C" fn(),
}

const A32: Programs = Programs {
    name: "a32",
    thumb: false,
    mmio: a32_mmio,
    fault: a32_fault,
    cp15: a32_cp15,
    wfi: a32_wfi,
};

const T32: Programs = Programs {
    name: "t32",
    thumb: true,
    mmio: t32_mmio,
    fault: t32_fault,
    cp15: t32_cp15,
    wfi: t32_wfi,
};

/// The address of a program.
fn addr(f: unsafe extern "C" fn()) -> u64 {
    f as usize as u64
}

/// Prints `aarch32: <name> <group> ok` when no check failed since `failed` was taken.
fn group_done(c: &Checker, name: &str, group: &str, failed: u32) {
    if c.failed() == failed {
        grt::println!("aarch32: {name} {group} ok");
    }
}

/// One instruction set's checks.
fn check_state(c: &mut Checker, p: &Programs) {
    let (name, thumb) = (p.name, p.thumb);
    let mode = SPSR_USR | if thumb { SPSR_T } else { 0 };

    // mmio: FR read (twice more in T32: 32-bit, and in an IT block), a character written.
    let failed = c.failed();
    // SAFETY: FR of this VM's PL011: a 32-bit register, reading it has no side effects.
    let fr = u64::from(unsafe { grt::mmio::read32((UART + UART_FR) as usize) });
    let ch = if thumb { b'T' } else { b'A' };
    grt::print!("aarch32: {name} el0 wrote <");
    let run = run_el0(p.mmio, thumb, [0, UART, u64::from(ch), 0]);
    grt::println!(">");
    let mmio = addr(p.mmio);
    c.eq(format_args!("{name} mmio: exceptions"), run.count, 0);
    c.eq(format_args!("{name} mmio: ldr FR"), run.regs[0], fr);
    if thumb {
        c.eq("t32 mmio: ldr.w FR", run.regs[3], fr);
        c.eq("t32 mmio: ldreq FR in the IT block", run.regs[5], fr);
        c.eq("t32 mmio: movne not run (ITSTATE advanced)", run.regs[4], 0);
    }
    check_end(
        c,
        (name, "mmio"),
        &run,
        mmio + if thumb { 16 } else { 8 },
        thumb,
    );
    group_done(c, name, "mmio", failed);

    // fault: unclaimed load and store (and in A32 an undecodable LDM from the PL011).
    let failed = c.failed();
    let fault = addr(p.fault);
    let run = run_el0(p.fault, thumb, [0, UNCLAIMED, 0x55, UART]);
    let want: &[(u64, u64, bool)] = if thumb {
        &[
            (0, UNCLAIMED, false),
            (2, UNCLAIMED, false),
            (6, UNCLAIMED, true),
            (12, UNCLAIMED, false),
        ]
    } else {
        &[
            (0, UNCLAIMED, false),
            (4, UNCLAIMED, true),
            (8, UART, false),
        ]
    };
    c.eq(format_args!("{name} fault: aborts"), run.count, want.len());
    for (i, (t, &(off, a, write))) in run.taken.iter().zip(want).enumerate() {
        check_abort(c, (name, i), t, (fault + off, a, write), mode);
    }
    if thumb {
        // The `ldreq` of an ITE EQ block: SPSR_EL1 holds ITSTATE as it was at the load
        // (0b0000_1100: EQ, then one else-instruction), not as the hypervisor's step past
        // the load left it; the handler's skip advanced it, so `movne` did not run.
        c.eq(
            "t32 fault: ITSTATE at the ldreq",
            itstate(run.taken[3].spsr),
            0x0c,
        );
        c.eq("t32 fault: movne not run", run.regs[4], 0);
    }
    check_end(
        c,
        (name, "fault"),
        &run,
        fault + if thumb { 16 } else { 12 },
        thumb,
    );
    group_done(c, name, "fault", failed);

    // cp15: MRCs EL0 may not do. SCTLR is UNDEFINED; PMCR (the hidden PMU) traps to EL1 as
    // an MRC (EC 0x03) since PMUSERENR_EL0.EN is 0: ISS Opc2 0, Opc1 0, CRn 9, Rt 0,
    // CRm 12, a read (CV and COND left out: T32 may give either).
    let failed = c.failed();
    let cp15 = addr(p.cp15);
    let run = run_el0(p.cp15, thumb, [0; 4]);
    c.eq(format_args!("{name} cp15: exceptions"), run.count, 2);
    for (i, (t, ec)) in run.taken.iter().zip([EC_UNKNOWN, EC_CP15_MRC]).enumerate() {
        c.eq(format_args!("{name} cp15 {i}: EC"), t.esr >> 26, ec);
        c.eq(format_args!("{name} cp15 {i}: IL"), t.esr & ESR_IL, ESR_IL);
        c.eq(
            format_args!("{name} cp15 {i}: ELR"),
            t.elr,
            cp15 + 4 * i as u64,
        );
    }
    let pmcr_iss = (9 << 10) | (12 << 1) | 1;
    c.eq(
        format_args!("{name} cp15 1: ISS"),
        run.taken[1].esr & 0xf_ffff,
        pmcr_iss,
    );
    check_end(c, (name, "cp15"), &run, cp15 + 8, thumb);
    group_done(c, name, "cp15", failed);

    // timer: WFI until the virtual timer fires, 10 ms on.
    let failed = c.failed();
    let wfi = addr(p.wfi);
    let mut retaken = 0;
    let (run, via_680) = loop {
        TIMER_IRQS.store(0, Ordering::SeqCst);
        EARLY.store(false, Ordering::SeqCst);
        EARLY_AT.store(wfi, Ordering::SeqCst);
        let via_680 = IRQ_VECTOR.load(Ordering::SeqCst);
        irq::timer_set(irq::timer_now() + irq::timer_freq() / 100);
        let count = TIMER_IRQS.as_ptr() as u64;
        let run = run_el0(p.wfi, thumb, [0, count, 0, 0]);
        irq::timer_stop();
        EARLY_AT.store(u64::MAX, Ordering::SeqCst);
        if !EARLY.load(Ordering::SeqCst) || retaken == TIMER_RETRIES {
            break (run, via_680);
        }
        retaken += 1;
    };
    if retaken > 0 {
        grt::println!(
            "aarch32: {name} timer: {retaken} tries retaken (the interrupt came before the wfi)"
        );
    }
    let after_wfi = wfi + if thumb { 2 } else { 4 };
    c.eq(
        format_args!("{name} timer: interrupts"),
        TIMER_IRQS.load(Ordering::SeqCst),
        1,
    );
    c.eq(
        format_args!("{name} timer: through + 0x680"),
        IRQ_VECTOR.load(Ordering::SeqCst) - via_680,
        1,
    );
    c.eq(
        format_args!("{name} timer: ELR after the wfi"),
        TIMER_ELR.load(Ordering::SeqCst),
        after_wfi,
    );
    c.eq(
        format_args!("{name} timer: SPSR mode and T"),
        TIMER_SPSR.load(Ordering::SeqCst) & SPSR_MODE_T,
        mode,
    );
    check_end(
        c,
        (name, "timer"),
        &run,
        wfi + if thumb { 8 } else { 16 },
        thumb,
    );
    group_done(c, name, "timer", failed);
}

/// Runs every check and prints `PASS aarch32` or what failed.
pub fn run() {
    let mut c = Checker::new("aarch32");
    let pfr0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack)) };
    c.eq("PFR0.EL0 (AArch32 at EL0)", pfr0 & 0xf, 2);
    c.eq("PFR0.EL1 (AArch64 only)", (pfr0 >> 4) & 0xf, 1);

    irq::set_handler(Some(on_irq));
    irq::init_cpu();
    let grt_vbar: u64;
    // SAFETY: switches VBAR_EL1 to `a32_vectors` (2 KiB aligned, 16 entries), which hand
    // every exception they do not take themselves to grt's own vectors.
    unsafe {
        asm!("mrs {}, vbar_el1", out(reg) grt_vbar, options(nomem, nostack));
        asm!("msr vbar_el1, {}", "isb", in(reg) &raw const a32_vectors as u64, options(nostack));
    }
    check_state(&mut c, &A32);
    check_state(&mut c, &T32);

    // SAFETY: erets to AArch32 EL1 from EL1: an illegal return, after which the next
    // instruction takes an Illegal Execution state exception to + 0x200, which skips it
    // and returns here.
    unsafe { a32_illegal_return() };
    if c.eq(
        "illegal return to AArch32 EL1",
        ILLEGAL.load(Ordering::SeqCst),
        1,
    ) {
        grt::println!("aarch32: illegal return to AArch32 EL1 ok");
    }

    // SAFETY: grt's vectors back.
    unsafe { asm!("msr vbar_el1, {}", "isb", in(reg) grt_vbar, options(nostack)) };
    c.finish();
}
