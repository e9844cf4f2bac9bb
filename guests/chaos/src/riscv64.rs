//! riscv64 side of the chaos guest: the virtual PLIC's window, SBI calls, atomics, LR/SC
//! and FP loads and stores (which the hypervisor cannot emulate as MMIO), PLIC
//! claim/complete cycles and instructions VS mode may not execute.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::rng::Rng;
use crate::{guarded, Kind, Odd, Roundtrip, Stats, Window};

/// The virtio-console of the VM's config (PLIC source 1), for the virtio phase ([`crate::virtq`]).
pub const VIRTIO: Option<u64> = Some(0x1000_1000);

/// Device windows of the VM no random operation touches (none besides [`VIRTIO`]).
pub const OTHER_DEVICES: &[(u64, u64)] = &[];

/// The console (read only).
pub const UART: Window = Window {
    name: "ns16550",
    base: 0x1000_0000,
    size: 0x1000,
    kind: Kind::Ns16550,
    hot: &[(0, 8), (8, 0x18)],
};

const PLIC_BASE: u64 = 0x0c00_0000;
/// The PLIC's window (64 MiB).
const PLIC_SIZE: u64 = 0x400_0000;
/// Sources the hypervisor's PLIC has (1..=95, docs/riscv-vcpu.md; the PLIC has no register
/// that says).
const SOURCES: u64 = 95;
/// Its priority bits (priorities and thresholds keep 3 bits).
const PRIORITY_MASK: u64 = 7;

const WINDOWS: [Window; 1] = [Window {
    name: "plic",
    base: PLIC_BASE,
    size: PLIC_SIZE,
    kind: Kind::Plic,
    hot: &[
        (0, 0x200),           // priorities (sources 1..95 and a few beyond)
        (0x1000, 0x80),       // pending bits
        (0x2000, 0x100),      // enables of context 0 and of context 1 (which does not exist)
        (0x20_0000, 0x10),    // context 0: threshold, claim/complete
        (0x20_1000, 0x10),    // context 1 (does not exist)
        (0x3ff_f000, 0x1000), // the last context page of the window
    ],
}];

/// The interrupt controller's window.
pub fn windows() -> &'static [Window] {
    &WINDOWS
}

/// Whether a data fault's scause is an access fault (what the hypervisor injects) rather
/// than a misaligned-address fault the CPU raised itself.
pub fn injected(scause: u64) -> bool {
    scause == 5 || scause == 7
}

/// Masks the guest's interrupts: `sstatus.SIE` and every `sie` bit clear.
pub fn mask_interrupts() {
    // SAFETY: only changes this hart's interrupt enables.
    unsafe {
        asm!(
            "csrci sstatus, 2",
            "csrw sie, zero",
            options(nomem, nostack)
        )
    };
}

/// Nothing to set up.
pub fn setup() -> &'static str {
    "virtual PLIC"
}

/// Called before each operation: halfway, paging goes on.
pub fn phase(i: u64, total: u64) {
    if i == total / 2 {
        paging_on();
        grt::println!("chaos: MMU on (Sv39, identity map of 255 GiB in gigapages) from here on");
    }
}

/// The root (level-2) page table: gigapages.
#[repr(C, align(4096))]
struct Root(UnsafeCell<[u64; 512]>);

// SAFETY: only the guest's one vCPU uses it: `paging_on` fills it before paging is on,
// and `walk_target` changes one entry no code or data of the guest is translated through.
unsafe impl Sync for Root {}

static ROOT: Root = Root(UnsafeCell::new([0; 512]));

/// Whether paging is on (the second half of the run).
static PAGING: AtomicBool = AtomicBool::new(false);

/// The root entry whose gigabyte [`walk_target`] points at a table where there is no
/// memory (VA 255 GiB, the last one below the sign-extended half).
const WALK_ENTRY: usize = 255;

/// PTE bits: valid, read, write, execute, accessed, dirty.
const PTE_V: u64 = 1;
const PTE_RWX: u64 = 0b1110;
const PTE_AD: u64 = (1 << 6) | (1 << 7);

/// Turns on Sv39 paging with an identity map of the first 255 GiB in gigapages (readable,
/// writable, executable): every address the guest uses keeps its meaning, but every MMIO
/// access the hypervisor decodes now comes through a VS-stage translation (it reads the
/// instruction back through the guest's page table).
fn paging_on() {
    // SAFETY: nothing uses ROOT yet: paging is off.
    let root = unsafe { &mut *ROOT.0.get() };
    for (i, e) in root.iter_mut().enumerate().take(WALK_ENTRY) {
        *e = (((i as u64) << 30) >> 12 << 10) | PTE_V | PTE_RWX | PTE_AD;
    }
    let satp = (8 << 60) | (root.as_ptr() as u64 >> 12);
    // SAFETY: the map is the identity for every address the guest uses (its RAM at 2 GiB,
    // its devices below), so nothing changes meaning when it goes on.
    unsafe { asm!("sfence.vma", "csrw satp, {}", "sfence.vma", in(reg) satp, options(nostack)) };
    PAGING.store(true, Ordering::Relaxed);
}

/// With paging on: points the translation of the gigabyte at [`WALK_ENTRY`] at a level-1
/// table at a random page without memory (unclaimed, the PLIC or the UART), and returns
/// an address in that gigabyte. Accessing it makes the hart's walk read there (an implicit
/// access, a guest-page fault the hypervisor sees): the guest must get one fault, and
/// never the device's register as the value of its load, or its store in the device.
/// `None` while paging is off.
pub fn walk_target(rng: &mut Rng) -> Option<u64> {
    if !PAGING.load(Ordering::Relaxed) {
        return None;
    }
    let table = match rng.below(3) {
        0 => crate::unclaimed_addr(rng, 0x1000) & !0xfff & ((1 << 41) - 1),
        1 => PLIC_BASE + (rng.below(PLIC_SIZE) & !0xfff),
        _ => UART.base,
    };
    let table = if crate::claimed_ram(table, 0x1000) {
        table ^ (1 << 36)
    } else {
        table
    };
    // SAFETY: only this vCPU uses ROOT; no other code uses addresses in this gigabyte.
    unsafe { (*ROOT.0.get())[WALK_ENTRY] = (table >> 12 << 10) | PTE_V };
    // SAFETY: makes the table change visible to the walker; no memory is touched.
    unsafe { asm!("sfence.vma", options(nostack)) };
    Some(((WALK_ENTRY as u64) << 30) | (rng.below(1 << 30) & !7))
}

/// A value some 32-bit register must always read as (`(mask, value)` of the read).
pub fn fixed_value(w: &Window, off: u64, width: u64) -> Option<(u64, u64)> {
    match w.kind {
        Kind::Plic if width == 4 => match off {
            // Source 0 and the slots beyond the last source.
            0 => Some((u64::MAX, 0)),
            4..0x180 => Some((!PRIORITY_MASK, 0)),
            0x180..0x1000 => Some((u64::MAX, 0)),
            // Pending: source 0 never; words past the last source; reserved.
            0x1000 => Some((1, 0)),
            0x1004 | 0x1008 => None,
            0x100c..0x2000 => Some((u64::MAX, 0)),
            // Enables of context 0: source 0 never, nothing beyond the last source; every
            // other context's do not exist.
            0x2000 => Some((1, 0)),
            0x2004 | 0x2008 => None,
            0x200c..0x20_0000 => Some((u64::MAX, 0)),
            // Context 0's threshold; its reserved words.
            0x20_0000 => Some((!PRIORITY_MASK, 0)),
            0x20_0004 => None,
            0x20_0008..0x20_1000 => Some((u64::MAX, 0)),
            // Contexts that do not exist: threshold, claim, everything.
            _ => Some((u64::MAX, 0)),
        },
        Kind::Ns16550 if off >= 8 => Some((u64::MAX, 0)),
        _ => None,
    }
}

/// Hypercall numbers the chaos never makes besides CONSOLE_PUTCHAR: none (SBI's SRST is not an axvisor hypercall).
pub const NEVER_CALLED: &[u64] = &[];

/// Whether a fault with this syndrome gives the address accessed: every one does.
pub fn fault_has_address(_syndrome: u64) -> bool {
    true
}

/// Whether an access of `len` bytes at `addr` reaches the hypervisor (or the CPU's own
/// translation) as an access to that address: any address.
pub fn addressable(_addr: u64, _len: u64) -> bool {
    true
}

/// The axvisor hypercall number the hypervisor sees for `grt::hypercall(nr, ..)`: `nr`
/// itself (the function id in the axvisor SBI extension).
pub fn hypercall_function(nr: u64) -> Option<u64> {
    Some(nr)
}

const BASE: u64 = 0x10;
const TIME: u64 = 0x5449_4d45;
const IPI: u64 = 0x73_5049;
const RFENCE: u64 = 0x5246_4e43;
const HSM: u64 = 0x48_534d;
const SRST: u64 = 0x5352_5354;
const DBCN: u64 = 0x4442_434e;
const SUSP: u64 = 0x5355_5350;
const PMU: u64 = 0x50_4d55;
const CPPC: u64 = 0x4350_5043;

/// The SBI version the hypervisor reports: 2.0.
const SPEC_VERSION: u64 = 0x0200_0000;

/// SBI errors.
const NOT_SUPPORTED: u64 = -2i64 as u64;
const INVALID_PARAM: u64 = -3i64 as u64;
const INVALID_ADDRESS: u64 = -5i64 as u64;
const ALREADY_AVAILABLE: u64 = -6i64 as u64;

/// Calls never made: system reset, system suspend, legacy shutdown, HSM hart_stop and
/// hart_suspend, anything that prints (legacy putchar, DBCN write_byte; DBCN
/// console_write only with a buffer it cannot read, see [`firmware_op`]), and axvisor's
/// own extension (the hypercall operation tries it, without CONSOLE_PUTCHAR). Compared on
/// the low 32 bits.
fn forbidden(eid: u64, fid: u64) -> bool {
    let (eid, fid) = (eid & 0xffff_ffff, fid & 0xffff_ffff);
    matches!(eid, 0x01 | 0x08 | SRST | SUSP)
        || eid == grt::AXVISOR_HC_EID
        || (eid == HSM && (fid == 1 || fid == 3))
        || (eid == DBCN && fid == 2)
}

/// Extensions `probe_extension` must report (docs/riscv-vcpu.md).
const PROBED: [u64; 12] = [
    BASE,
    DBCN,
    HSM,
    SRST,
    IPI,
    RFENCE,
    grt::AXVISOR_HC_EID,
    TIME,
    0x00,
    0x01,
    0x02,
    0x08,
];

/// Whether a hart mask names only harts the VM has (hart 0): base -1 is every hart.
fn mask_ok(mask: u64, base: u64) -> bool {
    mask == 0 || base == u64::MAX || (base == 0 && mask == 1)
}

/// An SBI call with a random (or real) extension and function and random arguments; the
/// answer must be the one docs/riscv-vcpu.md gives for a VM with one hart.
pub fn firmware_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let (eid, fid) = loop {
        let eid = match rng.below(14) {
            0 => BASE,
            1 => TIME,
            2 | 3 => IPI,
            4 | 5 => RFENCE,
            6 | 7 => HSM,
            8 => rng.pick(&[PMU, CPPC, SUSP, SRST, DBCN, DBCN, DBCN]),
            9 => rng.below(0x10),
            10 => rng.next() & 0xffff_ffff,
            11 => rng.next(),
            _ => rng.pick(&[BASE, TIME, IPI, RFENCE, HSM]) | (rng.next() << 32),
        };
        let fid = match rng.below(4) {
            0..3 => rng.below(8),
            _ => rng.value(),
        };
        if !forbidden(eid, fid) {
            break (eid, fid);
        }
    };
    let arg = |rng: &mut Rng| match rng.below(5) {
        0 => rng.below(3),
        1 => u64::MAX,
        2 => grt::RAM_BASE + rng.below(grt::RAM_SIZE),
        _ => rng.value(),
    };
    let mut args = [arg(rng), arg(rng), arg(rng), arg(rng), arg(rng), arg(rng)];
    if eid == BASE && fid == 3 && rng.chance(70) {
        args[0] = rng.pick(&PROBED) | if rng.chance(10) { 1 << 40 } else { 0 };
    }
    if eid == TIME || (eid == 0 && rng.chance(70)) {
        // A deadline: sometimes passed, sometimes far away, sometimes never.
        let soon = grt::irq::timer_now() + rng.below(1 << 20);
        args[0] = rng.pick(&[0, u64::MAX, soon]);
    }
    if eid == DBCN {
        // console_write / console_read (count, address low, high): 64-bit addresses (high
        // half 0) most of the time. A buffer that console_write could read would be
        // printed, so it never starts in RAM: the hypervisor must refuse it.
        let any = rng.value();
        args[0] = rng.pick(&[0, 1, 64, 65, any]);
        if rng.chance(80) {
            args[2] = 0;
        }
        if fid & 0xffff_ffff == 0 && args[0] != 0 && args[2] == 0 {
            args[1] = match rng.below(3) {
                0 => crate::unclaimed_addr(rng, 1),
                1 => PLIC_BASE + rng.below(PLIC_SIZE),
                _ => UART.base + rng.below(UART.size),
            };
        }
    }
    let (error, value) = grt::sbi_call(eid, fid, args);
    let in_ram = (grt::RAM_BASE..grt::RAM_BASE + grt::RAM_SIZE).contains(&args[1]);
    // (error, value) expected; `None` for a value that may be anything.
    let want: (u64, Option<u64>) = match (eid, fid) {
        (BASE, 0) => (0, Some(SPEC_VERSION)),
        (BASE, 1) => (0, Some(0x08b5)),
        (BASE, 2) => (0, Some(0x1_0000)),
        (BASE, 3) => (0, Some(u64::from(PROBED.contains(&args[0])))),
        (BASE, 4..=6) => (0, Some(0)),
        (TIME, 0) => (0, None),
        (IPI, 0) | (RFENCE, 0..=2) if mask_ok(args[0], args[1]) => (0, None),
        (IPI, 0) | (RFENCE, 0..=2) => (INVALID_PARAM, None),
        (HSM, 0) if args[0] != 0 => (INVALID_PARAM, None),
        (HSM, 0) if !in_ram => (INVALID_ADDRESS, None),
        (HSM, 0) => (ALREADY_AVAILABLE, None),
        (HSM, 2) if args[0] == 0 => (0, Some(0)),
        (HSM, 2) => (INVALID_PARAM, None),
        // DBCN: a buffer whose address does not fit or wraps is refused; there is no
        // input; nothing to write is done at once; a buffer outside RAM cannot be read.
        (DBCN, 0 | 1) if args[2] != 0 || args[1].checked_add(args[0]).is_none() => {
            (INVALID_PARAM, None)
        }
        (DBCN, 1) => (0, Some(0)),
        (DBCN, 0) if args[0] == 0 => (0, Some(0)),
        (DBCN, 0) => (INVALID_PARAM, None),
        // Legacy calls answer in a0 only: set_timer 0, getchar -1 (no input).
        (0x00, _) => (0, None),
        (0x02, _) => (u64::MAX, None),
        _ => (NOT_SUPPORTED, None),
    };
    let value_ok = want.1.is_none_or(|v| v == value);
    if error != want.0 || !value_ok {
        st.wrong(
            i,
            format_args!(
                "sbi {eid:#x}/{fid:#x} ({:#x}, {:#x}, {:#x}): ({error:#x}, {value:#x}), expected ({:#x}, {:?})",
                args[0], args[1], args[2], want.0, want.1
            ),
        );
    }
}

/// An access at `addr` (16-byte aligned) the hypervisor cannot emulate as MMIO: an atomic,
/// LR/SC, or an FP load or store.
pub fn odd_access(kind: u64, addr: u64, value: u64) -> Odd {
    // SAFETY: (every block) `addr` is a device register window or unclaimed, never memory
    // of the guest; a faulting instruction is skipped by the fault handler, leaving its
    // outputs (declared) with some value. ft0 is declared clobbered.
    unsafe {
        match kind {
            0 => {
                asm!("amoswap.w {d}, {v}, ({p})", p = in(reg) addr, v = in(reg) value, d = out(reg) _, options(nostack))
            }
            1 => {
                asm!("amoadd.d {d}, {v}, ({p})", p = in(reg) addr, v = in(reg) value, d = out(reg) _, options(nostack))
            }
            2 => asm!("lr.w {d}, ({p})", p = in(reg) addr, d = out(reg) _, options(nostack)),
            3 => {
                // No reservation: it may fail without accessing anything.
                asm!("sc.w {d}, {v}, ({p})", p = in(reg) addr, v = in(reg) value, d = out(reg) _, options(nostack));
                return Odd::NoAccess;
            }
            4 => asm!("fld ft0, 0({p})", p = in(reg) addr, out("ft0") _, options(nostack)),
            5 => {
                asm!("fmv.d.x ft0, {v}", "fsd ft0, 0({p})", p = in(reg) addr, v = in(reg) value, out("ft0") _, options(nostack))
            }
            _ => asm!("flw ft0, 0({p})", p = in(reg) addr, out("ft0") _, options(nostack)),
        }
    }
    Odd::Undecodable
}

/// How many kinds of access [`odd_access`] knows.
pub const ODD_KINDS: u64 = 7;

/// The name of access `kind` of [`odd_access`].
pub fn odd_name(kind: u64) -> &'static str {
    ["amoswap.w", "amoadd.d", "lr.w", "sc.w", "fld", "fsd", "flw"][kind as usize % 7]
}

// The trap entry used only while `fetch` jumps somewhere without memory: records scause
// and stval and returns to ra (the instruction after the jump). It uses t0 and t1, which
// `fetch` declares clobbered, and nothing else.
global_asm!(
    r#"
    .section .text.chaos_trap, "ax"
    .balign 4
chaos_fetch_trap:
    csrr t0, scause
    lla  t1, CHAOS_FETCH_CAUSE
    sd   t0, 0(t1)
    csrr t0, stval
    lla  t1, CHAOS_FETCH_TVAL
    sd   t0, 0(t1)
    csrw sepc, ra
    sret
"#
);

/// scause and stval of the exception `fetch` caught (scause u64::MAX: none).
#[no_mangle]
static CHAOS_FETCH_CAUSE: AtomicU64 = AtomicU64::new(u64::MAX);
#[no_mangle]
static CHAOS_FETCH_TVAL: AtomicU64 = AtomicU64::new(0);

/// Jumps to `addr`, where there is no memory, with the trap entry above installed: returns
/// the cause and address of the exception taken, if any.
pub fn fetch(addr: u64) -> Option<(u64, u64)> {
    extern "C" {
        fn chaos_fetch_trap();
    }
    CHAOS_FETCH_CAUSE.store(u64::MAX, Ordering::SeqCst);
    // SAFETY: `addr` is not memory of the guest: the fetch faults, the hypervisor injects
    // an exception, and the trap entry installed here returns to label 2 with only t0, t1
    // and ra changed (declared); grt's trap entry is back before anything else can trap.
    // Interrupts are masked (sstatus.SIE stays clear across the sret).
    unsafe {
        asm!(
            "csrr {old}, stvec",
            "csrw stvec, {vec}",
            "lla  ra, 2f",
            "jr   {target}",
            "2:",
            "csrw stvec, {old}",
            old = out(reg) _,
            vec = in(reg) chaos_fetch_trap as *const () as usize,
            target = in(reg) addr,
            out("ra") _,
            out("t0") _,
            out("t1") _,
        )
    };
    match CHAOS_FETCH_CAUSE.load(Ordering::SeqCst) {
        u64::MAX => None,
        cause => Some((cause, CHAOS_FETCH_TVAL.load(Ordering::SeqCst))),
    }
}

// The trap entry used only while `user_access` runs one access in user mode (VU): records
// scause and stval and returns to ra in S mode with interrupts still masked. The code in
// user mode loads or stores at a0 (a1: 0 load, else store) and then makes an ecall, so
// the trap entry is reached either way. t0, t1, t2 and ra are declared clobbered by
// `user_access`.
global_asm!(
    r#"
    .section .text.chaos_trap, "ax"
    .balign 4
chaos_user_trap:
    csrr t0, scause
    lla  t1, CHAOS_USER_CAUSE
    sd   t0, 0(t1)
    csrr t0, stval
    lla  t1, CHAOS_USER_TVAL
    sd   t0, 0(t1)
    csrw sepc, ra
    li   t0, 0x100
    csrs sstatus, t0
    li   t0, 0x20
    csrc sstatus, t0
    sret

    .balign 4
chaos_user_code:
    bnez a1, 1f
    ld   t2, 0(a0)
    ecall
1:  sd   t2, 0(a0)
    ecall
"#
);

/// scause and stval of the exception `user_access` caught.
#[no_mangle]
static CHAOS_USER_CAUSE: AtomicU64 = AtomicU64::new(u64::MAX);
#[no_mangle]
static CHAOS_USER_TVAL: AtomicU64 = AtomicU64::new(0);

/// With paging off, loads or stores 8 bytes at `addr` in user mode (VU, which may access
/// anything while there is no translation): returns the cause and address of the
/// exception that brought the hart back to S mode (an ecall when the access did not
/// fault), or `None` with paging on (the identity map is not for user mode).
pub fn user_access(addr: u64, write: bool) -> Option<(u64, u64)> {
    extern "C" {
        fn chaos_user_trap();
        fn chaos_user_code();
    }
    if PAGING.load(Ordering::Relaxed) {
        return None;
    }
    CHAOS_USER_CAUSE.store(u64::MAX, Ordering::SeqCst);
    // SAFETY: runs the two instructions at `chaos_user_code` in user mode with interrupts
    // masked (SPIE clear), whose access touches no memory of the guest (`addr` is a device
    // or unclaimed) and which end in an exception either way; the trap entry installed
    // here comes back to label 2 in S mode with only t0, t1, t2 and ra changed (declared),
    // and grt's trap entry is back before anything else can trap.
    unsafe {
        asm!(
            "csrr {old}, stvec",
            "csrw stvec, {vec}",
            "csrw sepc, {code}",
            "li   t0, 0x100",
            "csrc sstatus, t0",
            "li   t0, 0x20",
            "csrc sstatus, t0",
            "lla  ra, 2f",
            "sret",
            "2:",
            "csrw stvec, {old}",
            old = out(reg) _,
            vec = in(reg) chaos_user_trap as *const () as usize,
            code = in(reg) chaos_user_code as *const () as usize,
            in("a0") addr,
            in("a1") u64::from(write),
            out("t0") _,
            out("t1") _,
            out("t2") _,
            out("ra") _,
        )
    };
    Some((
        CHAOS_USER_CAUSE.load(Ordering::SeqCst),
        CHAOS_USER_TVAL.load(Ordering::SeqCst),
    ))
}

/// What the exception after a user-mode access is: `Ok(None)` for the ecall (no fault),
/// `Ok(Some(name))` for an acceptable data fault (a load or store access fault), `Err(())`
/// for anything else.
pub fn user_fault(scause: u64) -> Result<Option<&'static str>, ()> {
    match scause {
        8 => Ok(None),
        5 | 7 => Ok(Some("access fault from user mode, injected")),
        _ => Err(()),
    }
}

/// What an instruction fetch fault with this scause is, when it is an acceptable one: an
/// instruction access fault (injected), or with paging on an instruction page fault (an
/// address the page table does not map, raised by the CPU).
pub fn fetch_fault(scause: u64) -> Option<&'static str> {
    match scause {
        1 => Some("instruction access fault, injected"),
        12 => Some("instruction page fault, from the CPU"),
        _ => None,
    }
}

/// A register write and read-back with known semantics.
pub fn roundtrip(rng: &mut Rng) -> Roundtrip {
    let v = rng.value() & 0xffff_ffff;
    match rng.below(4) {
        0 => {
            let source = rng.below(0x400);
            let ok = (1..=SOURCES).contains(&source);
            Roundtrip {
                what: "PLIC priority",
                addr: PLIC_BASE + source * 4,
                width: 4,
                value: v,
                want: if ok { v & PRIORITY_MASK } else { 0 },
            }
        }
        1 => {
            // Enables of context 0 (words 0..2: sources 1..95) and of contexts that do not
            // exist.
            let context = rng.pick(&[0, 0, 0, 1, 2, 15871]);
            let word = rng.below(32);
            let want = match (context, word) {
                (0, 0) => v & !1,
                (0, 1 | 2) => v,
                _ => 0,
            };
            Roundtrip {
                what: "PLIC enable",
                addr: PLIC_BASE + 0x2000 + context * 0x80 + word * 4,
                width: 4,
                value: v,
                want,
            }
        }
        2 => Roundtrip {
            what: "PLIC threshold",
            addr: PLIC_BASE + 0x20_0000,
            width: 4,
            value: v,
            want: v & PRIORITY_MASK,
        },
        _ => {
            let context = 1 + rng.below(15870);
            Roundtrip {
                what: "PLIC threshold of a context that does not exist",
                addr: PLIC_BASE + 0x20_0000 + context * 0x1000,
                width: 4,
                value: v,
                want: 0,
            }
        }
    }
}

/// What [`extra_op`] does, for the summary.
pub const EXTRA_NAME: &str = "plic claim/complete and forbidden-instruction operations";

/// A 32-bit PLIC register access (never faults: aligned, inside the window).
fn plic_read(off: u64) -> u64 {
    // SAFETY: a register of this VM's PLIC.
    u64::from(unsafe { grt::mmio::read32((PLIC_BASE + off) as usize) })
}

fn plic_write(off: u64, value: u64) {
    // SAFETY: a register of this VM's PLIC.
    unsafe { grt::mmio::write32((PLIC_BASE + off) as usize, value as u32) };
}

/// PLIC claim/complete cycles (claim, then complete what was claimed or another id),
/// claims of contexts that do not exist, instructions VS mode may not execute: HS CSRs and
/// hypervisor instructions (virtual-instruction traps the hypervisor turns into illegal
/// instructions), an M-mode CSR (illegal at once); and `stimecmp` written directly.
pub fn extra_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let what = rng.below(9);
    let mut claimed = 0;
    if crate::TRACE {
        grt::println!("chaos: op {i}: extra {what}");
    }
    let (want, faults) = guarded(|| match what {
        0 | 1 => {
            claimed = plic_read(0x20_0004);
            let id = if rng.chance(70) {
                claimed
            } else {
                rng.below(SOURCES + 4)
            };
            plic_write(0x20_0004, id);
            Some(0)
        }
        2 => {
            plic_write(0x20_0004, rng.value());
            Some(0)
        }
        3 => {
            // Enable a few random sources in context 0 with random priorities, so that
            // claims find something.
            let source = 1 + rng.below(SOURCES);
            plic_write(source * 4, rng.below(8));
            plic_write(0x2000 + (source / 32) * 4, rng.next());
            plic_write(0x20_0000, rng.below(8));
            Some(0)
        }
        4 => {
            // SAFETY: reading hstatus from VS mode is a virtual-instruction trap; the
            // hypervisor injects an illegal instruction, which the handler skips.
            unsafe { asm!("csrr {}, 0x600", out(reg) _, options(nomem, nostack)) };
            Some(1)
        }
        5 => {
            // SAFETY: hfence.gvma from VS mode: a virtual-instruction trap, as above.
            unsafe { asm!(".word 0x62000073", options(nomem, nostack)) };
            Some(1)
        }
        6 => {
            // SAFETY: hlv.w t0, (t1) from VS mode: a virtual-instruction trap, as above;
            // nothing is loaded.
            unsafe {
                asm!(".word 0x680342f3", out("t0") _, in("t1") grt::RAM_BASE, options(nostack))
            };
            Some(1)
        }
        7 => {
            // SAFETY: mstatus from VS mode: an illegal instruction (the CPU's own), skipped.
            unsafe { asm!("csrr {}, 0x300", out(reg) _, options(nomem, nostack)) };
            Some(1)
        }
        _ => {
            // stimecmp written directly (the guest's vstimecmp with Sstc, an illegal
            // instruction without): passed, soon, far or never.
            let now = grt::irq::timer_now();
            let v = match rng.below(4) {
                0 => now.saturating_sub(rng.below(1 << 20)),
                1 => now + rng.below(1 << 16),
                2 => u64::MAX,
                _ => rng.next(),
            };
            // SAFETY: the guest's own timer compare register; interrupts are masked.
            unsafe { asm!("csrw 0x14d, {}", in(reg) v, options(nomem, nostack)) };
            None
        }
    });
    st.extra += 1;
    st.extra_faults += faults;
    if want.is_some_and(|want| faults != want) || faults > 1 {
        st.wrong(
            i,
            format_args!("operation {what}: {faults} exceptions, expected {want:?}"),
        );
    }
    if claimed > SOURCES {
        st.wrong(i, format_args!("plic claim returned {claimed}"));
    }
}

/// Stops the timer the random `set_timer` calls may have armed.
pub fn finish() {
    grt::irq::timer_stop();
}

/// The hypervisor's own answers still hold: SBI's spec version, and a claim that finds
/// nothing once every source is disabled.
pub fn final_checks(c: &mut grt::check::Checker) {
    let (error, version) = grt::sbi_call(BASE, 0, [0; 6]);
    c.eq("SBI error of get_spec_version after the chaos", error, 0);
    c.eq("SBI spec version after the chaos", version, SPEC_VERSION);
    for w in 0..3 {
        plic_write(0x2000 + w * 4, 0);
    }
    c.eq(
        "PLIC claim with every source disabled",
        plic_read(0x20_0004),
        0,
    );
}

/// After the final tally: nothing (the guest powers its VM off).
pub fn end() {}
