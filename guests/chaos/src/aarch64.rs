//! aarch64 side of the chaos guest: the vGIC's windows (GICv2: distributor and the host's
//! virtual CPU interface; GICv3: distributor and redistributor), PSCI calls, loads and
//! stores without a valid syndrome, the GICv3 CPU interface's system registers and the
//! trapped ID registers, the timers, EL0 accesses, fetches from addresses without memory.
//! The second half of the operations runs with the MMU on (an identity map, everything
//! Normal non-cacheable, where unaligned accesses are allowed architecturally), which also
//! lets the page-table-walk operation point a table where there is no memory. (With the MMU
//! off every access is to Device memory, where an unaligned one should fault in the guest;
//! QEMU 7.2 lets it through to the hypervisor anyway.)

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crate::rng::Rng;
use crate::{guarded, Kind, Odd, Roundtrip, Stats, Window};

/// The virtio-console of the VM's config (SPI 16), for the virtio phase ([`crate::virtq`]).
pub const VIRTIO: Option<u64> = Some(0x0a00_0000);

/// Device windows of the VM no random operation touches (none besides [`VIRTIO`]).
pub const OTHER_DEVICES: &[(u64, u64)] = &[];

/// The console (read only).
pub const UART: Window = Window {
    name: "pl011",
    base: 0x0900_0000,
    size: 0x1000,
    kind: Kind::Pl011,
    hot: &[(0, 0x50), (0xfe0, 0x20)],
};

const GICD_BASE: u64 = 0x0800_0000;
const GICC_BASE: u64 = 0x0801_0000;
const GICR_BASE: u64 = 0x080a_0000;

/// The distributor's registers (both versions: the other's read as reserved).
const GICD_HOT: &[(u64, u64)] = &[
    (0, 0x10),
    (0x80, 0x80),
    (0x100, 0x300),
    (0x400, 0x80),
    (0x800, 0x80),
    (0xc00, 0x20),
    (0xd00, 0x10),
    (0xf00, 0x30),
    (0xfd0, 0x30),
    (0x6100, 0x200),
    (0x7fd0, 0x30),
    (0xffd0, 0x30),
];
/// The redistributor's RD_base and SGI_base registers.
const GICR_HOT: &[(u64, u64)] = &[
    (0, 0x20),
    (0x70, 0x10),
    (0xffd0, 0x30),
    (0x1_0080, 0x4),
    (0x1_0100, 0x4),
    (0x1_0180, 0x4),
    (0x1_0200, 0x4),
    (0x1_0280, 0x4),
    (0x1_0300, 0x4),
    (0x1_0380, 0x4),
    (0x1_0400, 0x20),
    (0x1_0c00, 0x8),
    (0x1_0d00, 0x10),
];
/// GICC_CTLR .. GICC_HPPIR, GICC_APR, GICC_IIDR, GICC_DIR.
const GICC_HOT: &[(u64, u64)] = &[(0, 0x20), (0xd0, 0x30), (0xfc, 4), (0x1000, 4)];

const V2_WINDOWS: [Window; 3] = [
    Window {
        name: "gicd",
        base: GICD_BASE,
        size: 0x1_0000,
        kind: Kind::Gic,
        hot: GICD_HOT,
    },
    Window {
        name: "gicc",
        base: GICC_BASE,
        size: 0x2000,
        kind: Kind::GicHw,
        hot: GICC_HOT,
    },
    Window {
        name: "gicr (unused on GICv2)",
        base: GICR_BASE,
        size: 0x2_0000,
        kind: Kind::Absent,
        hot: GICR_HOT,
    },
];

const V3_WINDOWS: [Window; 3] = [
    Window {
        name: "gicd",
        base: GICD_BASE,
        size: 0x1_0000,
        kind: Kind::Gic,
        hot: GICD_HOT,
    },
    Window {
        name: "gicc (unused on GICv3)",
        base: GICC_BASE,
        size: 0x2000,
        kind: Kind::Absent,
        hot: GICC_HOT,
    },
    Window {
        name: "gicr",
        base: GICR_BASE,
        size: 0x2_0000,
        kind: Kind::Gic,
        hot: GICR_HOT,
    },
];

/// The GIC version the hypervisor gives the guest (2 or 3), read by [`setup`].
static GIC: AtomicU8 = AtomicU8::new(0);
/// Whether the MMU is on (the second half of the run).
static MMU_ON: AtomicBool = AtomicBool::new(false);
/// How many INTIDs the distributor has (GICD_TYPER.ITLinesNumber), read by [`setup`].
static NR_IRQS: AtomicU64 = AtomicU64::new(0);

fn v3() -> bool {
    GIC.load(Ordering::Relaxed) == 3
}

/// The interrupt controller's windows.
pub fn windows() -> &'static [Window] {
    if v3() {
        &V3_WINDOWS
    } else {
        &V2_WINDOWS
    }
}

/// Whether a data fault's ESR_EL1 is the hypervisor's injected one (EC 0x25, DFSC 0x10,
/// synchronous external abort) rather than one the CPU raised (alignment, translation).
pub fn injected(esr: u64) -> bool {
    (esr >> 26) & 0x3f == 0x25 && esr & 0x3f == 0x10
}

/// Masks every exception the guest could take asynchronously (D, A, I, F).
pub fn mask_interrupts() {
    // SAFETY: only changes this vCPU's PSTATE masks.
    unsafe { asm!("msr daifset, #0xf", options(nomem, nostack)) };
}

/// Reads the GIC version (ID_AA64PFR0_EL1.GIC, trapped and answered by the hypervisor).
pub fn setup() -> &'static str {
    let pfr0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack)) };
    let v3 = (pfr0 >> 24) & 0xf != 0;
    GIC.store(if v3 { 3 } else { 2 }, Ordering::Relaxed);
    // SAFETY: GICD_TYPER of this VM's distributor: a plain 32-bit read.
    let typer = unsafe { grt::mmio::read32((GICD_BASE + 4) as usize) };
    NR_IRQS.store(32 * (u64::from(typer & 0x1f) + 1), Ordering::Relaxed);
    if v3 {
        "GICv3"
    } else {
        "GICv2"
    }
}

/// Called before each operation: halfway, the MMU goes on.
pub fn phase(i: u64, total: u64) {
    if i == total / 2 {
        mmu_on();
        grt::println!("chaos: MMU on (identity map, normal non-cacheable memory) from here on");
    }
}

/// The stage-1 table: 512 level-1 blocks of 1 GiB (39-bit addresses).
#[repr(C, align(4096))]
struct Level1(UnsafeCell<[u64; 512]>);

// SAFETY: only the guest's one vCPU uses it: `mmu_on` fills it before the MMU is on, and
// `walk_target` changes one entry no code or data of the guest is translated through.
unsafe impl Sync for Level1 {}

static LEVEL1: Level1 = Level1(UnsafeCell::new([0; 512]));

/// Turns the MMU on with an identity map of the first 512 GiB, all Normal non-cacheable
/// (MAIR index 0), caches off: what the guest does with its RAM does not change, and
/// unaligned accesses are allowed everywhere.
fn mmu_on() {
    // Block descriptor (bits 1:0 = 01), AttrIndx 0, AP = EL1 read/write, AF (bit 10).
    const BLOCK: u64 = 0b01 | (1 << 10);
    // SAFETY: nothing else uses LEVEL1; the MMU is off so far.
    let table = unsafe { &mut *LEVEL1.0.get() };
    for (i, e) in table.iter_mut().enumerate() {
        *e = ((i as u64) << 30) | BLOCK;
    }
    // Attr0: Normal, inner and outer non-cacheable.
    let mair: u64 = 0x44;
    // T0SZ = 25 (39 bits), walks non-cacheable, TG0 4 KiB, EPD1 (no TTBR1 walks),
    // IPS = 40 bits.
    let tcr: u64 = 25 | (1 << 23) | (0b010 << 32);
    let root = table.as_ptr() as u64;
    // SAFETY: the table maps every address the guest uses to itself, with the same
    // (non-cacheable) memory type it has with the MMU off apart from alignment; SCTLR.A
    // stays clear and the caches stay off.
    unsafe {
        asm!(
            "dsb sy",
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {root}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "mrs {t}, sctlr_el1",
            "orr {t}, {t}, #1",
            "bic {t}, {t}, #(1 << 1)",
            "msr sctlr_el1, {t}",
            "isb",
            mair = in(reg) mair,
            tcr = in(reg) tcr,
            root = in(reg) root,
            t = out(reg) _,
            options(nostack),
        )
    };
    MMU_ON.store(true, Ordering::Relaxed);
}

/// The level-1 entry whose gigabyte [`walk_target`] points at a level-2 table where there
/// is no memory (the last one: VA 511 GiB).
const WALK_ENTRY: usize = 511;

/// With the MMU on: points the translation of the last gigabyte of the address space at a
/// level-2 table at a random page without memory (unclaimed, or in a device window), and
/// returns an address in that gigabyte. Accessing it makes the CPU's table walk read there:
/// a stage-2 fault on a walk (S1PTW), which the guest must get as one fault, never as an
/// access to the device. `None` while the MMU is off.
pub fn walk_target(rng: &mut Rng) -> Option<u64> {
    if !MMU_ON.load(Ordering::Relaxed) {
        return None;
    }
    let table = match rng.below(3) {
        0 => crate::unclaimed_addr(rng, 0x1000) & !0xfff,
        _ => {
            let w = rng.pick(windows());
            let w = if w.kind == Kind::GicHw { UART } else { w };
            w.base + (rng.below(w.size) & !0xfff)
        }
    };
    // Keep it below 1 TiB (the output address size); an address above gives a stage-1
    // address size fault instead, which is fine too but tests less.
    let table = if table >> 40 != 0 {
        table & ((1 << 40) - 1) & !0xfff
    } else {
        table
    };
    let table = if crate::claimed_ram(table, 0x1000) {
        table ^ (1 << 36)
    } else {
        table
    };
    // SAFETY: only this vCPU uses LEVEL1; the entry is one no other code's addresses use.
    unsafe { (*LEVEL1.0.get())[WALK_ENTRY] = table | 0b11 };
    // SAFETY: makes the table change visible to the walker; no memory is touched.
    unsafe {
        asm!(
            "dsb ish",
            "tlbi vmalle1",
            "dsb ish",
            "isb",
            options(nostack)
        )
    };
    Some(((WALK_ENTRY as u64) << 30) | (rng.below(1 << 30) & !7))
}

/// A value some 32-bit register must always read as (`(mask, value)` of the read).
pub fn fixed_value(w: &Window, off: u64, width: u64) -> Option<(u64, u64)> {
    const IIDR: u64 = 0x5800_0000;
    const PL011_ID: [u64; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
    match (w.kind, w.base, off, width) {
        (Kind::Gic, GICD_BASE, 0x8, 4) | (Kind::Gic, GICR_BASE, 0x4, 4) => Some((u64::MAX, IIDR)),
        (Kind::Pl011, _, 0xfe0..0x1000, _) => {
            Some((u64::MAX, PL011_ID[((off - 0xfe0) / 4) as usize]))
        }
        _ => None,
    }
}

/// PSCI functions (the low 5 bits of the function id) never called: they power off,
/// reset, suspend or stop the VM or its only vCPU.
const PSCI_FORBIDDEN: [u64; 8] = [
    0x01, // CPU_SUSPEND
    0x02, // CPU_OFF
    0x08, // SYSTEM_OFF
    0x09, // SYSTEM_RESET
    0x0b, // CPU_FREEZE
    0x0c, // CPU_DEFAULT_SUSPEND
    0x0e, // SYSTEM_SUSPEND
    0x12, // SYSTEM_RESET2
];

/// Hypercall numbers the chaos never makes besides CONSOLE_PUTCHAR: none (PSCI's SYSTEM_OFF and SYSTEM_RESET are not axvisor hypercalls).
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

/// The axvisor hypercall number the hypervisor sees for `grt::hypercall(nr, ..)`, or `None`
/// when that call is not an axvisor call (it answers NOT_SUPPORTED). The function id is W0
/// of `0xC600_0000 | nr`: an axvisor call when it stays in the vendor-specific hypervisor
/// range 0xC600_xxxx; never PSCI (bit 25 is always set, so the owner is never 4).
pub fn hypercall_function(nr: u64) -> Option<u64> {
    let w0 = grt::hypercall_fid(nr) as u32;
    (w0 >> 16 == 0xc600).then_some(u64::from(w0 & 0xffff))
}

/// `hvc #0` or `smc #0` with x0 = `function`, x1..x6 = `args`; returns x0..x3.
fn call(smc: bool, function: u64, args: [u64; 6]) -> [u64; 4] {
    if smc {
        grt::smc_call(function, args)
    } else {
        grt::hvc_call(function, args)
    }
}

/// PSCI / SMCCC error codes.
const NOT_SUPPORTED: u64 = -1i64 as u64;
const INVALID_PARAMETERS: u64 = -2i64 as u64;
const ALREADY_ON: u64 = -4i64 as u64;
const INVALID_ADDRESS: u64 = -9i64 as u64;

/// SMCCC calls other than PSCI the hypervisor answers (docs/vmm.md).
const SMCCC_VERSION: u64 = 0x8000_0000;
const SMCCC_ARCH_FEATURES: u64 = 0x8000_0001;
const VENDOR_HYP_CALL_UID: u64 = 0x8600_ff01;
const VENDOR_HYP_REVISION: u64 = 0x8600_ff03;
/// Call UID's answer in x0..x3: axvisor's UUID.
const AXVISOR_UID: [u64; 4] = [0x073b_0f2f, 0x6648_bf3c, 0x5333_17be, 0x99eb_9091];

/// Whether a PSCI `target_cpu` names the one vCPU of the VM: Aff0 = 0 with Aff1..Aff3 and
/// the bits PSCI says must be zero (63:40, 31:24) zero too, so 0 only (docs/vmm.md).
fn names_vcpu0(target: u64) -> bool {
    target == 0
}

/// A function id for [`firmware_op`] (W0; the caller may add junk above it): PSCI in the
/// standard-service ranges (never a forbidden function) or, a third of the time, another
/// SMCCC call: a discovery call, a vendor hypervisor query, or an id of a random owner
/// (never an axvisor call, which the hypercall operation makes).
fn firmware_fid(rng: &mut Rng) -> u64 {
    loop {
        let fid = if rng.chance(67) {
            rng.pick(&[0x8400_0000, 0xc400_0000]) | rng.below(0x20)
        } else {
            match rng.below(4) {
                0 => rng.pick(&[SMCCC_VERSION, SMCCC_ARCH_FEATURES, SMCCC_ARCH_FEATURES]),
                1 => rng.pick(&[VENDOR_HYP_CALL_UID, VENDOR_HYP_REVISION, 0x8600_ff00]),
                2 => (rng.below(4) << 30) | (rng.below(64) << 24) | rng.below(0x20),
                _ => rng.next() & 0xffff_ffff,
            }
        };
        let psci = fid & !(0x4000_0000 | 0x1f) == 0x8400_0000;
        if fid >> 16 != 0xc600 && !(psci && PSCI_FORBIDDEN.contains(&(fid & 0x1f))) {
            return fid;
        }
    }
}

/// An SMCCC call through `hvc` or `smc`: PSCI with a random function in the standard-service
/// ranges, or another SMCCC function id (see [`firmware_fid`]), sometimes with junk in x0's
/// upper half (ignored: the function id is W0), with random arguments (an SMC32 function
/// sees their low halves); the answer must be SMCCC 1.1's and PSCI 1.1's for a VM whose one
/// vCPU is on (docs/vmm.md).
pub fn firmware_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let w0 = firmware_fid(rng);
    let fid = if rng.chance(10) {
        w0 | (rng.next() << 32)
    } else {
        w0
    };
    let arg = |rng: &mut Rng| match rng.below(5) {
        0 => rng.below(4),
        1 => grt::RAM_BASE + rng.below(grt::RAM_SIZE),
        2 => rng.pick(&[SMCCC_VERSION, SMCCC_ARCH_FEATURES, 0x8000_8000, 0x8000_7fff]),
        _ => rng.value(),
    };
    let args = [arg(rng), arg(rng), arg(rng), arg(rng), arg(rng), arg(rng)];
    let smc = rng.chance(25);
    let got = call(smc, fid, args);
    // What the function sees of its arguments.
    let a = |n: usize| {
        if w0 & 0x4000_0000 == 0 {
            args[n] & 0xffff_ffff
        } else {
            args[n]
        }
    };
    let in_ram = (grt::RAM_BASE..grt::RAM_BASE + grt::RAM_SIZE).contains(&a(1));
    // The expected x0, and x1..x3 where the call defines them.
    let (want, want_rest) = match w0 {
        SMCCC_VERSION => (0x1_0001, None),
        SMCCC_ARCH_FEATURES => match a(0) {
            SMCCC_VERSION | SMCCC_ARCH_FEATURES => (0, None),
            _ => (NOT_SUPPORTED, None),
        },
        VENDOR_HYP_CALL_UID => (
            AXVISOR_UID[0],
            Some([AXVISOR_UID[1], AXVISOR_UID[2], AXVISOR_UID[3]]),
        ),
        VENDOR_HYP_REVISION => (grt::hc::ABI_VERSION, Some([0, got[2], got[3]])),
        0x8400_0000 => (0x1_0001, None),
        0x8400_000a => match a(0) {
            0x8400_0000 | 0x8400_0002 | 0x8400_0003 | 0xc400_0003 | 0x8400_0004 | 0xc400_0004
            | 0x8400_0008 | 0x8400_0009 | 0x8400_000a | SMCCC_VERSION => (0, None),
            _ => (NOT_SUPPORTED, None),
        },
        0x8400_0004 | 0xc400_0004 if a(1) != 0 => (INVALID_PARAMETERS, None),
        0x8400_0004 | 0xc400_0004 if names_vcpu0(a(0)) => (0, None),
        0x8400_0004 | 0xc400_0004 => (INVALID_PARAMETERS, None),
        0x8400_0003 | 0xc400_0003 if !names_vcpu0(a(0)) => (INVALID_PARAMETERS, None),
        0x8400_0003 | 0xc400_0003 if !in_ram => (INVALID_ADDRESS, None),
        0x8400_0003 | 0xc400_0003 => (ALREADY_ON, None),
        _ => (NOT_SUPPORTED, None),
    };
    let rest_ok = want_rest.is_none_or(|r| r == [got[1], got[2], got[3]]);
    if got[0] != want || !rest_ok {
        let conduit = if smc { "smc" } else { "hvc" };
        st.wrong(
            i,
            format_args!(
                "smccc {fid:#x} over {conduit} ({:#x}, {:#x}, {:#x}): {:#x?}, expected {want:#x} {want_rest:#x?}",
                args[0], args[1], args[2], got
            ),
        );
    }
}

/// An access at `addr` (16-byte aligned) whose data abort has no valid syndrome
/// (ESR_EL2.ISV = 0), so the hypervisor cannot emulate it, or an unusual one it can.
pub fn odd_access(kind: u64, addr: u64, value: u64) -> Odd {
    // SAFETY: (every block) `addr` is a device register window or unclaimed, never memory
    // of the guest; a faulting instruction is skipped by the fault handler, leaving its
    // outputs (declared) with some value.
    unsafe {
        match kind {
            0 => {
                asm!("ldp {a}, {b}, [{p}]", p = in(reg) addr, a = out(reg) _, b = out(reg) _, options(nostack))
            }
            1 => asm!("stp {v}, {v}, [{p}]", p = in(reg) addr, v = in(reg) value, options(nostack)),
            2 => {
                asm!("ldr {v}, [{p}], #8", p = inout(reg) addr => _, v = out(reg) _, options(nostack))
            }
            3 => {
                asm!("str {v}, [{p}, #8]!", p = inout(reg) addr => _, v = in(reg) value, options(nostack))
            }
            4 => {
                asm!("ldxr {v}, [{p}]", "clrex", p = in(reg) addr, v = out(reg) _, options(nostack))
            }
            5 => {
                // No reservation: it may fail without accessing anything.
                asm!("stxr {s:w}, {v}, [{p}]", p = in(reg) addr, v = in(reg) value, s = out(reg) _, options(nostack));
                return Odd::NoAccess;
            }
            6 => {
                // QEMU does not translate the address of a cache maintenance instruction.
                asm!("dc civac, {p}", p = in(reg) addr, options(nostack));
                return Odd::NoAccess;
            }
            7 => asm!("dc zva, {p}", p = in(reg) addr & !0x3f, options(nostack)),
            8 => {
                asm!("ldar {v:w}, [{p}]", p = in(reg) addr, v = out(reg) _, options(nostack));
                return Odd::Decodable;
            }
            _ => {
                asm!("stlr {v:w}, [{p}]", p = in(reg) addr, v = in(reg) value, options(nostack));
                return Odd::Decodable;
            }
        }
    }
    Odd::Undecodable
}

/// How many kinds of access [`odd_access`] knows.
pub const ODD_KINDS: u64 = 10;

/// The name of access `kind` of [`odd_access`].
pub fn odd_name(kind: u64) -> &'static str {
    [
        "ldp",
        "stp",
        "ldr post-index",
        "str pre-index",
        "ldxr",
        "stxr",
        "dc civac",
        "dc zva",
        "ldar",
        "stlr",
    ][kind as usize % 10]
}

// Exception vectors used only while `fetch` jumps somewhere without memory: every entry
// records ESR_EL1 and FAR_EL1 and returns to x30 (the instruction after the jump). They
// use x9 and x10, which `fetch` declares clobbered, and nothing else.
global_asm!(
    r#"
    .section .text.chaos_vectors, "ax"
    .balign 0x800
chaos_fetch_vectors:
    .rept 16
    .balign 0x80
    b    chaos_fetch_trap
    .endr
chaos_fetch_trap:
    mrs  x9, esr_el1
    adrp x10, CHAOS_FETCH_ESR
    str  x9, [x10, :lo12:CHAOS_FETCH_ESR]
    mrs  x9, far_el1
    adrp x10, CHAOS_FETCH_FAR
    str  x9, [x10, :lo12:CHAOS_FETCH_FAR]
    msr  elr_el1, x30
    eret
"#
);

/// ESR_EL1 and FAR_EL1 of the exception `fetch` caught (ESR 0: none).
#[no_mangle]
static CHAOS_FETCH_ESR: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static CHAOS_FETCH_FAR: AtomicU64 = AtomicU64::new(0);

/// Branches to `addr`, where there is no memory, with the vectors above installed: returns
/// the syndrome and address of the exception taken, if any.
pub fn fetch(addr: u64) -> Option<(u64, u64)> {
    extern "C" {
        static chaos_fetch_vectors: u8;
    }
    CHAOS_FETCH_ESR.store(0, Ordering::SeqCst);
    // SAFETY: `addr` is not memory of the guest: the fetch faults, the hypervisor injects
    // an exception, and the vectors installed here return to label 2 with only x9, x10 and
    // x30 changed (declared); grt's vectors are back before anything else can trap.
    unsafe {
        asm!(
            "mrs  {old}, vbar_el1",
            "msr  vbar_el1, {vec}",
            "isb",
            "adr  x30, 2f",
            "br   {target}",
            "2:",
            "msr  vbar_el1, {old}",
            "isb",
            old = out(reg) _,
            vec = in(reg) &raw const chaos_fetch_vectors,
            target = in(reg) addr,
            out("x9") _,
            out("x10") _,
            out("x30") _,
        )
    };
    match CHAOS_FETCH_ESR.load(Ordering::SeqCst) {
        0 => None,
        esr => Some((esr, CHAOS_FETCH_FAR.load(Ordering::SeqCst))),
    }
}

// Exception vectors used only while `user_access` runs one access at EL0: every entry
// records ESR_EL1 and FAR_EL1 and returns to x30 at EL1h with every interrupt masked. The
// code at EL0 loads or stores at x11 (x12: 0 load, else store) and then makes an SVC, so
// the vectors are reached either way. x9, x10, x30 are declared clobbered by
// `user_access`.
global_asm!(
    r#"
    .section .text.chaos_vectors, "ax"
    .balign 0x800
chaos_user_vectors:
    .rept 16
    .balign 0x80
    b    chaos_user_trap
    .endr
chaos_user_trap:
    mrs  x9, esr_el1
    adrp x10, CHAOS_USER_ESR
    str  x9, [x10, :lo12:CHAOS_USER_ESR]
    mrs  x9, far_el1
    adrp x10, CHAOS_USER_FAR
    str  x9, [x10, :lo12:CHAOS_USER_FAR]
    msr  elr_el1, x30
    mov  x9, #0x3c5
    msr  spsr_el1, x9
    eret

    .balign 4
chaos_user_code:
    cbnz x12, 1f
    ldr  x10, [x11]
    svc  #0
1:  str  x10, [x11]
    svc  #0
"#
);

/// ESR_EL1 and FAR_EL1 of the exception `user_access` caught.
#[no_mangle]
static CHAOS_USER_ESR: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static CHAOS_USER_FAR: AtomicU64 = AtomicU64::new(0);

/// With the MMU off, loads or stores 8 bytes at `addr` from EL0 (which may access anything
/// while there is no translation): returns the syndrome and fault address of the exception
/// that brought the vCPU back to EL1 (an SVC when the access did not fault), or `None`
/// when the MMU is on (EL0 could not reach devices through this guest's map).
pub fn user_access(addr: u64, write: bool) -> Option<(u64, u64)> {
    extern "C" {
        static chaos_user_vectors: u8;
        fn chaos_user_code();
    }
    if MMU_ON.load(Ordering::Relaxed) {
        return None;
    }
    CHAOS_USER_ESR.store(0, Ordering::SeqCst);
    // SAFETY: runs the two instructions at `chaos_user_code` at EL0 with interrupts masked
    // (SPSR: EL0t, DAIF set), whose access touches no memory of the guest (`addr` is a
    // device or unclaimed) and which end in an exception either way; the vectors installed
    // here come back to label 2 at EL1h with only x9, x10 and x30 changed (declared), and
    // grt's vectors are back before anything else can trap.
    unsafe {
        asm!(
            "mrs  {old}, vbar_el1",
            "msr  vbar_el1, {vec}",
            "msr  elr_el1, {code}",
            "mov  x9, #0x3c0",
            "msr  spsr_el1, x9",
            "isb",
            "adr  x30, 2f",
            "eret",
            "2:",
            "msr  vbar_el1, {old}",
            "isb",
            old = out(reg) _,
            vec = in(reg) &raw const chaos_user_vectors,
            code = in(reg) chaos_user_code as *const () as u64,
            in("x11") addr,
            in("x12") u64::from(write),
            out("x9") _,
            out("x10") _,
            out("x30") _,
        )
    };
    Some((
        CHAOS_USER_ESR.load(Ordering::SeqCst),
        CHAOS_USER_FAR.load(Ordering::SeqCst),
    ))
}

/// What the exception after a user-mode access is: `Ok(None)` for the SVC (no fault),
/// `Ok(Some(name))` for a data abort from a lower EL (EC 0x24: the hypervisor's injected
/// one for an address without memory, DFSC 0x10, or the CPU's own), `Err(())` for anything
/// else (a data abort with the same-EL class EC 0x25 from EL0 is wrong: Linux treats it as
/// an undefined instruction and sends SIGILL instead of SIGBUS).
pub fn user_fault(esr: u64) -> Result<Option<&'static str>, ()> {
    match ((esr >> 26) & 0x3f, esr & 0x3f) {
        (0x15, _) => Ok(None),
        (0x24, 0x10) => Ok(Some("data abort from EL0, injected")),
        (0x24, _) => Ok(Some("data abort from EL0, from the CPU")),
        _ => Err(()),
    }
}

/// What an instruction fetch fault with this ESR_EL1 is, when it is an instruction abort
/// taken at the same EL (EC 0x21: the hypervisor's injected one for an address without
/// memory, IFSC 0x10, or the CPU's own). Anything else, a data abort in particular, is
/// wrong: a guest that skips "the faulting instruction" would fault again at the next
/// address.
pub fn fetch_fault(esr: u64) -> Option<&'static str> {
    match ((esr >> 26) & 0x3f, esr & 0x3f) {
        (0x21, 0x10) => Some("instruction abort, injected"),
        (0x21, _) => Some("instruction abort, from the CPU"),
        _ => None,
    }
}

/// A register write and read-back with known semantics.
pub fn roundtrip(rng: &mut Rng) -> Roundtrip {
    let v = rng.value();
    let v32 = v & 0xffff_ffff;
    // The registers of INTIDs the distributor does not have read as zero.
    let nr_irqs = NR_IRQS.load(Ordering::Relaxed);
    let exists = |intid: u64| intid < nr_irqs;
    let private_ok = |intid: u64| intid >= 32 || !v3();
    match rng.below(if v3() { 8 } else { 6 }) {
        0 => {
            let word = rng.below(64);
            let ok = exists(word * 4) && private_ok(word * 4);
            Roundtrip {
                what: "GICD_IPRIORITYR",
                addr: GICD_BASE + 0x400 + word * 4,
                width: 4,
                value: v32,
                want: if ok { v32 & 0xf8f8_f8f8 } else { 0 },
            }
        }
        1 => {
            let intid = rng.below(256);
            let ok = exists(intid) && private_ok(intid);
            Roundtrip {
                what: "GICD_IPRIORITYR byte",
                addr: GICD_BASE + 0x400 + intid,
                width: 1,
                value: v & 0xff,
                want: if ok { v & 0xf8 } else { 0 },
            }
        }
        2 => {
            // ICFGR of SPIs: Int_config[1] of each interrupt kept.
            let word = 2 + rng.below(10);
            Roundtrip {
                what: "GICD_ICFGR",
                addr: GICD_BASE + 0xc00 + word * 4,
                width: 4,
                value: v32,
                want: if exists(word * 16) {
                    v32 & 0xaaaa_aaaa
                } else {
                    0
                },
            }
        }
        3 => {
            let word = 1 + rng.below(6);
            Roundtrip {
                what: "GICD_IGROUPR",
                addr: GICD_BASE + 0x80 + word * 4,
                width: 4,
                value: v32,
                want: if exists(word * 32) { v32 } else { 0 },
            }
        }
        4 => Roundtrip {
            what: "GICD_CTLR",
            addr: GICD_BASE,
            width: 4,
            value: v32,
            want: (v32 & 3) | if v3() { (1 << 4) | (1 << 6) } else { 0 },
        },
        5 if !v3() => {
            // ITARGETSR of SPIs: only vCPU 0's bit exists.
            let word = 8 + rng.below(40);
            Roundtrip {
                what: "GICD_ITARGETSR",
                addr: GICD_BASE + 0x800 + word * 4,
                width: 4,
                value: v32,
                want: if exists(word * 4) {
                    v32 & 0x0101_0101
                } else {
                    0
                },
            }
        }
        5 => {
            // IROUTER: Aff0..Aff2, IRM, Aff3 kept.
            let intid = 32 + rng.below(160);
            Roundtrip {
                what: "GICD_IROUTER",
                addr: GICD_BASE + 0x6000 + intid * 8,
                width: 8,
                value: v,
                want: if exists(intid) { v & 0xff_80ff_ffff } else { 0 },
            }
        }
        6 => {
            let word = rng.below(8);
            Roundtrip {
                what: "GICR_IPRIORITYR",
                addr: GICR_BASE + 0x1_0400 + word * 4,
                width: 4,
                value: v32,
                want: v32 & 0xf8f8_f8f8,
            }
        }
        _ => {
            // ICFGR0 (SGIs: fixed edge) or ICFGR1 (PPIs: Int_config[1] kept).
            let word = rng.below(2);
            Roundtrip {
                what: "GICR_ICFGR",
                addr: GICR_BASE + 0x1_0c00 + word * 4,
                width: 4,
                value: v32,
                want: if word == 0 {
                    0xaaaa_aaaa
                } else {
                    v32 & 0xaaaa_aaaa
                },
            }
        }
    }
}

/// What [`extra_op`] does, for the summary.
pub const EXTRA_NAME: &str = "cpu-interface and system-register operations";

/// Reads feature ID register `S3_0_C0_C<crm>_<op2>` (trapped, answered by the hypervisor).
fn read_id(crm: u64, op2: u64) -> u64 {
    macro_rules! ids {
        ($($c:literal: $($o:literal)*;)*) => {
            match (crm, op2) {
                $($(($c, $o) => {
                    let v: u64;
                    // SAFETY: reading an ID register has no side effects.
                    unsafe {
                        asm!(concat!("mrs {}, S3_0_C0_C", stringify!($c), "_", stringify!($o)),
                             out(reg) v, options(nomem, nostack))
                    };
                    v
                })*)*
                _ => 0,
            }
        };
    }
    ids! {
        1: 0 1 2 3 4 5 6 7;
        2: 0 1 2 3 4 5 6 7;
        3: 0 1 2 3 4 5 6 7;
        4: 0 1 2 3 4 5 6 7;
        5: 0 1 2 3 4 5 6 7;
        6: 0 1 2 3 4 5 6 7;
        7: 0 1 2 3 4 5 6 7;
    }
}

/// Writes `value` to an ID register (read-only: the hypervisor must make it UNDEFINED).
fn write_id(which: u64, value: u64) {
    // SAFETY: the write traps (HCR_EL2.TID3) and the hypervisor injects an Undefined
    // Instruction exception, which the handler skips; nothing changes.
    unsafe {
        match which % 3 {
            0 => asm!("msr S3_0_C0_C4_0, {}", in(reg) value, options(nomem, nostack)),
            1 => asm!("msr S3_0_C0_C1_2, {}", in(reg) value, options(nomem, nostack)),
            _ => asm!("msr S3_0_C0_C7_7, {}", in(reg) value, options(nomem, nostack)),
        }
    }
}

/// Writes a GICv3 CPU-interface or timer register (the hardware's virtual interface or the
/// guest's own timers, or trapped).
macro_rules! icc_write {
    ($reg:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: a GIC CPU-interface or timer register of this vCPU: the guest's interrupt
        // and timer state only (interrupts stay masked), or a trapped SGI register the
        // hypervisor emulates.
        unsafe { asm!(concat!("msr ", $reg, ", {}"), "isb", in(reg) v, options(nomem, nostack)) };
    }};
}

/// Reads a GICv3 CPU-interface register or a counter.
macro_rules! icc_read {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: as for `icc_write`; an acknowledge only changes the guest's interrupt state.
        unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

/// A timer compare value around counter value `now`: passed, soon, far, or near the top of
/// the 64-bit range. The last used to hang QEMU 7.2 (it adds CNTVOFF_EL2 to the compare value
/// without checking for overflow and re-arms its timer forever when the sum wraps); the
/// hypervisor keeps the offset 0 so it cannot (docs/reliability.md).
fn timer_value(rng: &mut Rng, now: u64) -> u64 {
    match rng.below(4) {
        0 => now.saturating_sub(rng.below(1 << 20)),
        1 => now + rng.below(1 << 16),
        2 => now + (1 << 40) + rng.below(1 << 40),
        _ => u64::MAX - rng.below(1 << 20),
    }
}

/// A random SGI register value: mostly to this vCPU (Aff 0.0.0, TargetList bit 0) or to
/// every other one (IRM), sometimes anything.
fn sgi_value(rng: &mut Rng) -> u64 {
    let intid = rng.below(16) << 24;
    match rng.below(4) {
        0 => intid | 1,
        1 => intid | (1 << 40),
        2 => intid | rng.below(0x1_0000) | (rng.below(16) << 44),
        _ => rng.next(),
    }
}

/// The CPU interface and system registers: on GICv3 the trapped SGI registers with random
/// values and the ICC registers (acknowledge, end, deactivate, priority mask, binary point,
/// control, group enables); on GICv2 an acknowledge and end through GICC; on both random
/// feature ID register reads (trapped, answered) and writes (UNDEFINED).
pub fn extra_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let what = if v3() {
        rng.below(14)
    } else {
        rng.pick(&[0, 1, 2, 3, 12, 13])
    };
    if crate::TRACE {
        grt::println!("chaos: op {i}: extra {what}");
    }
    let (want, faults) = guarded(|| match what {
        0 | 1 => {
            read_id(1 + rng.below(7), rng.below(8));
            Some(0)
        }
        2 => {
            write_id(rng.next(), rng.value());
            Some(1)
        }
        3 if v3() => {
            icc_write!("S3_0_C12_C11_5", sgi_value(rng)); // ICC_SGI1R_EL1 (trapped)
            Some(0)
        }
        3 => {
            // GICv2: acknowledge through GICC_IAR, end it through GICC_EOIR (or not).
            // SAFETY: the VM's GICv2 CPU interface (the host's virtual one, mapped).
            unsafe {
                let iar = grt::mmio::read32((GICC_BASE + 0xc) as usize);
                if rng.chance(70) {
                    grt::mmio::write32((GICC_BASE + 0x10) as usize, iar);
                }
            }
            Some(0)
        }
        4 => {
            icc_write!("S3_0_C12_C11_6", sgi_value(rng)); // ICC_ASGI1R_EL1 (trapped)
            Some(0)
        }
        5 => {
            icc_write!("S3_0_C12_C11_7", sgi_value(rng)); // ICC_SGI0R_EL1 (trapped)
            Some(0)
        }
        6 => {
            let iar = icc_read!("S3_0_C12_C12_0"); // ICC_IAR1_EL1
            if rng.chance(70) {
                icc_write!("S3_0_C12_C12_1", iar); // ICC_EOIR1_EL1
            }
            Some(0)
        }
        7 => {
            icc_write!("S3_0_C12_C12_1", rng.below(1024)); // ICC_EOIR1_EL1
            Some(0)
        }
        8 => {
            icc_write!("S3_0_C12_C11_1", rng.below(1024)); // ICC_DIR_EL1
            Some(0)
        }
        9 => {
            // Any value in the priority mask (trapped; the unimplemented low bits read as
            // zero).
            let pmr = rng.value();
            icc_write!("S3_0_C4_C6_0", pmr); // ICC_PMR_EL1
            let pribits = ((icc_read!("S3_0_C12_C12_4") >> 8) & 7) + 1;
            let got = icc_read!("S3_0_C4_C6_0");
            let want = pmr & (0xff << (8 - pribits)) & 0xff;
            if got != want {
                st.wrong(
                    i,
                    format_args!("ICC_PMR_EL1 {pmr:#x} read back {got:#x}, not {want:#x}"),
                );
            }
            take_interrupts_under_random_binary_points(i, rng, st);
            Some(0)
        }
        10 => {
            // ICC_CTLR_EL1 (trapped): EOImode (bit 1) follows the write, CBPR (bit 0) stays
            // 1; ICC_IGRPEN1_EL1.
            let ctlr = rng.value();
            icc_write!("S3_0_C12_C12_4", ctlr);
            let got = icc_read!("S3_0_C12_C12_4") & 3;
            if got != (ctlr & 2) | 1 {
                st.wrong(
                    i,
                    format_args!("ICC_CTLR_EL1 {ctlr:#x} read back {got:#x} in bits 1:0"),
                );
            }
            icc_write!("S3_0_C12_C12_7", rng.below(2));
            Some(0)
        }
        11 => {
            icc_read!("S3_0_C12_C12_2"); // ICC_HPPIR1_EL1
            icc_read!("S3_0_C12_C11_3"); // ICC_RPR_EL1
            Some(0)
        }
        12 => {
            // The virtual timer (its interrupt is PPI 27 through the vGIC): armed in the
            // past, soon or never, enabled or not, masked or not.
            let cval = timer_value(rng, icc_read!("cntvct_el0"));
            icc_write!("cntv_cval_el0", cval);
            icc_write!("cntv_ctl_el0", rng.below(4));
            Some(0)
        }
        _ => {
            // The EL1 physical timer: the guest may program it (nothing delivers its
            // interrupt), the hypervisor's own timer is another one.
            let cval = timer_value(rng, icc_read!("cntpct_el0"));
            icc_write!("cntp_cval_el0", cval);
            icc_write!("cntp_ctl_el0", rng.below(4));
            Some(0)
        }
    });
    st.extra += 1;
    st.extra_faults += faults;
    if want.is_some_and(|want| faults != want) || faults > 1 {
        st.wrong(
            i,
            format_args!(
                "system-register operation {what}: {faults} exceptions, expected {want:?}"
            ),
        );
    }
}

/// Any value in both binary points, then interrupts taken under them. With the common
/// binary point the hypervisor keeps on, ICC_BPR1_EL1 writes are ignored and it reads
/// ICC_BPR0_EL1 + 1 (at most 7). Then the virtual timer fires at once, an exit
/// (PSCI_VERSION) lets the hypervisor put it in a list register, and the guest acknowledges
/// it; while it is active an SGI to itself (trapped, put in a list register on the way back)
/// is checked against its priority; then both end (and are deactivated with EOImode 1).
/// QEMU 7.2 computes the group 1 binary point in that check and in the acknowledge, and
/// aborts (an assertion) when an ICC_BPR1_EL1 write such as 8 left it below its minimum.
fn take_interrupts_under_random_binary_points(i: u64, rng: &mut Rng, st: &mut Stats) {
    // SAFETY: this VM's vGIC distributor and its vCPU 0 redistributor (SGI frame at +64 KiB):
    // GICD_CTLR (ARE, group 1 on), SGI 1 and the timer PPI 27 in group 1 (IGROUPR0), at
    // priorities 0x00 and 0x80 (IPRIORITYR), enabled (ISENABLER0).
    unsafe {
        grt::mmio::write32(GICD_BASE as usize, 0x12);
        let sgi = (GICR_BASE + 0x1_0000) as usize;
        let group = grt::mmio::read32(sgi + 0x80);
        grt::mmio::write32(sgi + 0x80, group | (1 << 27) | (1 << 1));
        grt::mmio::write8(sgi + 0x400 + 27, 0x80);
        grt::mmio::write8(sgi + 0x400 + 1, 0);
        grt::mmio::write32(sgi + 0x100, (1 << 27) | (1 << 1));
    }
    icc_write!("S3_0_C4_C6_0", 0xff); // ICC_PMR_EL1: nothing masked
    icc_write!("S3_0_C12_C12_7", 1); // ICC_IGRPEN1_EL1
                                     // Low bits 0 (8, 16, ...) half the time: below the group 1 minimum once truncated.
    let bpr1 = if rng.chance(50) {
        rng.value() & !7
    } else {
        rng.value()
    };
    icc_write!("S3_0_C12_C8_3", rng.value()); // ICC_BPR0_EL1
    icc_write!("S3_0_C12_C12_3", bpr1); // ICC_BPR1_EL1
    let (got0, got1) = (icc_read!("S3_0_C12_C8_3"), icc_read!("S3_0_C12_C12_3"));
    if got1 != (got0 + 1).min(7) {
        st.wrong(
            i,
            format_args!("ICC_BPR1_EL1 {got1} with ICC_BPR0_EL1 {got0} after writing {bpr1:#x}"),
        );
    }
    icc_write!("cntv_cval_el0", 0);
    icc_write!("cntv_ctl_el0", 1);
    grt::hypercall(0x8400_0000, [0; 6]);
    let timer = icc_read!("S3_0_C12_C12_0"); // ICC_IAR1_EL1
    icc_write!("cntv_ctl_el0", 0);
    icc_write!("S3_0_C12_C11_5", (1 << 24) | 1); // ICC_SGI1R_EL1: SGI 1 to itself
    let sgi = icc_read!("S3_0_C12_C12_0");
    let eoi_mode = icc_read!("S3_0_C12_C12_4") & 2 != 0;
    for iar in [sgi, timer] {
        if iar < 1020 {
            icc_write!("S3_0_C12_C12_1", iar); // ICC_EOIR1_EL1
            if eoi_mode {
                icc_write!("S3_0_C12_C11_1", iar); // ICC_DIR_EL1
            }
        }
    }
}

/// Called after the last operation: stops the timers the random operations armed (the MMU
/// stays on; powering off works either way).
pub fn finish() {
    icc_write!("cntv_ctl_el0", 0);
    icc_write!("cntp_ctl_el0", 0);
}

/// The hypervisor's own answers still hold: PSCI_VERSION, SMCCC_VERSION and the
/// distributor's identity.
pub fn final_checks(c: &mut grt::check::Checker) {
    c.eq(
        "PSCI_VERSION after the chaos",
        call(false, 0x8400_0000, [0; 6])[0],
        0x1_0001,
    );
    c.eq(
        "SMCCC_VERSION after the chaos",
        call(true, SMCCC_VERSION, [0; 6])[0],
        0x1_0001,
    );
    // SAFETY: GICD_IIDR of this VM's distributor: a plain 32-bit read.
    let iidr = unsafe { grt::mmio::read32((GICD_BASE + 8) as usize) };
    c.eq("GICD_IIDR after the chaos", iidr, 0x5800_0000);
}

/// After the final tally: nothing (the guest powers its VM off).
pub fn end() {}
