//! x86_64 side of the chaos guest. The VM has no interrupt controller the hypervisor
//! emulates: its MMIO window is a second 16550 (at [`UART_BASE`], kept in loopback mode
//! so that random writes to its THR never reach the console), its console is on ports.
//! The architecture's own operations are CPUID and MSRs (the "firmware" operation), port
//! I/O (plain and string), control-register writes the hypervisor must refuse, and the
//! instructions that always leave a VMX guest (VMX instructions, GETSEC, INVD, XSETBV,
//! RDPMC, RDTSCP). Accesses the hypervisor cannot decode as MMIO are read-modify-write
//! and locked instructions, `xchg`, `cmpxchg`, `movnti`, `movs` and `push` from memory.
//! Halfway through the guest switches to page tables of its own (an identity map of 511
//! GiB in 1 GiB pages) whose last gigabyte the page-table-walk operation repoints.
//!
//! Faults other than page faults and invalid opcodes (#GP above all) come through grt's
//! exception handler into [`crate::record_fault`], like data faults.
//!
//! The VM has the virtual PC (an `ioapic`): the random operations leave its local APIC's
//! base MSR and PM1 control alone; [`crate::x86_hostile`] abuses them (and the rest of what
//! a guest controls) afterwards, one check at a time.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use grt::trap::{Exception, FaultAction};
use grt::x86::{cpuid, power_hc, read_msr, write_msr};

use crate::rng::Rng;
use crate::{guarded, Kind, Odd, Roundtrip, Stats, Window};

/// The MMIO 16550 (`configs/vms/x86_64-chaos.toml`).
const UART_BASE: u64 = 0xc000_0000;
/// Its MCR, and MCR's loopback bit.
const UART_MCR: u64 = UART_BASE + 4;
const MCR_LOOPBACK: u8 = 1 << 4;

/// The virtio-console of the VM's config (I/O APIC input 5), for the virtio phase
/// ([`crate::virtq`]).
pub const VIRTIO: Option<u64> = Some(0xd000_0000);

/// The virtual PC's MMIO windows, which only the targeted phase ([`crate::x86_hostile`])
/// touches: the I/O APIC and the local APIC's xAPIC page.
pub const OTHER_DEVICES: &[(u64, u64)] = &[(0xfec0_0000, 0x1000), (0xfee0_0000, 0x1000)];

/// The MMIO 16550, read by the UART operation.
pub const UART: Window = Window {
    name: "ns16550",
    base: UART_BASE,
    size: 0x1000,
    kind: Kind::Ns16550,
    hot: &[(0, 8), (8, 0x18)],
};

/// The windows written and read at random: the same 16550 (in loopback mode).
const WINDOWS: [Window; 1] = [UART];

/// The VM's device windows.
pub fn windows() -> &'static [Window] {
    &WINDOWS
}

/// The syndrome grt gives a fault: the vector in bits 32 and up, the error code below.
fn split(syndrome: u64) -> (u64, u64) {
    (syndrome >> 32, syndrome & 0xffff_ffff)
}

/// Whether a fault is the hypervisor's doing (the #GP(0) it injects for an access nothing
/// claims, or for an instruction it refuses; or an architectural check the CPU makes for
/// it) rather than a page fault of the guest's own page tables (a linear address they do
/// not map).
pub fn injected(syndrome: u64) -> bool {
    split(syndrome).0 != 14
}

/// Whether a fault with this syndrome gives the address accessed: a page fault does (CR2),
/// the hypervisor's #GP(0) does not.
pub fn fault_has_address(syndrome: u64) -> bool {
    split(syndrome).0 == 14
}

/// Hypercalls the chaos never makes besides CONSOLE_PUTCHAR: power off, reset and the vCPU
/// power calls.
pub const NEVER_CALLED: &[u64] = &[
    power_hc::SYSTEM_OFF,
    power_hc::SYSTEM_RESET,
    power_hc::CPU_ON,
    power_hc::CPU_OFF,
    power_hc::CPU_STATUS,
];

/// Whether an access of `len` bytes at `addr` reaches the hypervisor or the page tables as
/// an access to that address: its first and last byte are canonical (a non-canonical one
/// is a #GP without an address).
pub fn addressable(addr: u64, len: u64) -> bool {
    let canonical = |a: u64| ((a as i64) << 16) >> 16 == a as i64;
    canonical(addr) && canonical(addr.wrapping_add(len - 1))
}

/// The axvisor hypercall number the hypervisor sees for `grt::hypercall(nr, ..)`: RAX,
/// all 64 bits.
pub fn hypercall_function(nr: u64) -> Option<u64> {
    Some(nr)
}

/// Faults other than #PF and #UD: counted like data faults, the address CR2 (0).
fn on_exception(e: &Exception) -> FaultAction {
    crate::record_fault(
        e.cr2,
        (u64::from(e.vector) << 32) | (e.error_code & 0xffff_ffff),
    )
}

/// Masks the guest's interrupts (`cli`).
pub fn mask_interrupts() {
    grt::irq::disable();
}

/// Puts the MMIO 16550 in loopback mode (again: a random MCR write may have cleared it).
fn uart_loopback() {
    // SAFETY: the MMIO 16550's MCR, a byte register; loopback only keeps THR writes off
    // the console.
    unsafe { grt::mmio::write8(UART_MCR as usize, MCR_LOOPBACK) };
}

/// Registers the exception handler and puts the MMIO 16550 in loopback mode.
pub fn setup() -> &'static str {
    grt::trap::set_exception_handler(Some(on_exception));
    uart_loopback();
    "a 16550 at MMIO 0xc000_0000 (loopback), the console on ports,"
}

/// Called before each operation: the 16550 back in loopback mode; halfway, the guest's own
/// page tables go on (with 1 GiB pages, when the CPU has them).
pub fn phase(i: u64, total: u64) {
    uart_loopback();
    if i == total / 2 {
        if paging_on() {
            grt::println!(
                "chaos: MMU on (own page tables: identity map of 511 GiB in 1 GiB pages) from here on"
            );
        } else {
            grt::println!("chaos: no 1 GiB pages: the hypervisor's page tables stay");
        }
    }
}

/// A 4 KiB page table.
#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: only the guest's one vCPU uses them: `paging_on` fills them before CR3 points
// at them, and `walk_target` changes one entry no code or data of the guest is translated
// through.
unsafe impl Sync for Table {}

static PML4: Table = Table(UnsafeCell::new([0; 512]));
static PDPT: Table = Table(UnsafeCell::new([0; 512]));

/// Whether the guest's own page tables are on.
static PAGING: AtomicBool = AtomicBool::new(false);

/// The PDPT entry whose gigabyte [`walk_target`] points at a page directory where there
/// is no memory.
const WALK_ENTRY: usize = 511;

/// Page-table entry bits: present, writable, page size (a 1 GiB leaf in a PDPT).
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;

/// Loads page tables of the guest's own: an identity map of the first 511 GiB in 1 GiB
/// pages (every address the guest uses keeps its meaning). Returns `false`, changing
/// nothing, on a CPU without 1 GiB pages.
fn paging_on() -> bool {
    let max_ext = cpuid(0x8000_0000, 0)[0];
    if max_ext < 0x8000_0001 || cpuid(0x8000_0001, 0)[3] & (1 << 26) == 0 {
        return false;
    }
    // SAFETY: nothing uses the tables yet.
    let (pml4, pdpt) = unsafe { (&mut *PML4.0.get(), &mut *PDPT.0.get()) };
    for (i, e) in pdpt.iter_mut().enumerate().take(WALK_ENTRY) {
        *e = ((i as u64) << 30) | PRESENT | WRITABLE | HUGE;
    }
    pml4[0] = PDPT.0.get() as u64 | PRESENT | WRITABLE;
    // SAFETY: the map is the identity for every address the guest uses (its RAM and the
    // 16550, below 4 GiB), so nothing changes meaning when CR3 changes.
    unsafe { asm!("mov cr3, {}", in(reg) PML4.0.get() as u64, options(nostack)) };
    PAGING.store(true, Ordering::Relaxed);
    true
}

/// With the guest's own page tables on: opens the first 4 GiB (code, data, stacks, the
/// 16550) to user mode (`on`: the U/S bit of their PML4 and PDPT entries) or closes them
/// again, and flushes the TLB. Returns `false`, changing nothing, while the hypervisor's
/// tables are on.
pub fn user_pages(on: bool) -> bool {
    if !PAGING.load(Ordering::Relaxed) {
        return false;
    }
    const USER: u64 = 1 << 2;
    // SAFETY: only this vCPU uses the tables; the bit only widens or narrows who may use
    // the first gigabyte (no SMEP / SMAP); reloading CR3 drops every stale translation.
    unsafe {
        let pdpt = &mut *PDPT.0.get();
        for e in core::iter::once(&mut (*PML4.0.get())[0]).chain(&mut pdpt[..4]) {
            *e = if on { *e | USER } else { *e & !USER };
        }
        asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack));
    }
    true
}

/// With the guest's own page tables on: makes PML4 entry 1 point at the PML4 itself (a
/// table that loops) and returns the base of the 512 GiB it maps, `1 << 39`: there the
/// walk takes the PML4 as the PDPT and the PDPT as the page directory, whose first entry
/// (the 1 GiB page at 0) becomes a 2 MiB page, so `(1 << 39) + a` is physical `a` for `a`
/// below 2 MiB. `None` while the hypervisor's tables are on.
pub fn looping_alias() -> Option<u64> {
    if !PAGING.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: only this vCPU uses the tables; entry 1 was not present (nothing cached),
    // and no address the guest uses is in its 512 GiB.
    unsafe { (*PML4.0.get())[1] = PML4.0.get() as u64 | PRESENT | WRITABLE };
    Some(1 << 39)
}

/// With the guest's own page tables on: points the translation of the gigabyte at
/// [`WALK_ENTRY`] at a page directory at a random page without memory (unclaimed or the
/// 16550), and returns an address in that gigabyte. Accessing it makes the CPU's walk read
/// there (a paging-structure access the hypervisor sees): the guest must get one fault,
/// at that address, and never the device's register as the value of its load, or its
/// store in the device. `None` while the hypervisor's tables are on.
pub fn walk_target(rng: &mut Rng) -> Option<u64> {
    if !PAGING.load(Ordering::Relaxed) {
        return None;
    }
    let table = if rng.chance(70) {
        crate::unclaimed_addr(rng, 0x1000) & !0xfff & ((1 << 40) - 1)
    } else {
        UART_BASE
    };
    let table = if crate::claimed_ram(table, 0x1000) {
        table ^ (1 << 36)
    } else {
        table
    };
    let va = ((WALK_ENTRY as u64) << 30) | (rng.below(1 << 30) & !7);
    // SAFETY: only this vCPU uses the tables; no other code uses addresses in this
    // gigabyte; `invlpg` drops a stale translation of `va`.
    unsafe {
        (*PDPT.0.get())[WALK_ENTRY] = table | PRESENT | WRITABLE;
        asm!("invlpg [{}]", in(reg) va, options(nostack));
    }
    Some(va)
}

/// A value some register must always read as (`(mask, value)` of the read): the 16550
/// reads 0 past its registers.
pub fn fixed_value(w: &Window, off: u64, _width: u64) -> Option<(u64, u64)> {
    (w.kind == Kind::Ns16550 && off >= 8).then_some((u64::MAX, 0))
}

/// The hypervisor's timing leaf, its highest: EAX the TSC's frequency in kHz.
const TIMING_LEAF: u32 = 0x4000_0010;

/// axvisor's signature in CPUID 0x4000_0000 (EBX, ECX, EDX).
const SIGNATURE: [u32; 3] = [
    u32::from_le_bytes(*b"axvi"),
    u32::from_le_bytes(*b"sor\0"),
    0,
];

/// MSRs every read of which succeeds (docs/x86.md: the MSRs passed through and those the
/// hypervisor answers).
const READABLE: [u32; 18] = [
    0x10,        // IA32_TSC
    0x1b,        // IA32_APIC_BASE
    0x3a,        // IA32_FEATURE_CONTROL
    0x8b,        // IA32_BIOS_SIGN_ID
    0x174,       // IA32_SYSENTER_CS
    0x175,       // IA32_SYSENTER_ESP
    0x176,       // IA32_SYSENTER_EIP
    0x1a0,       // IA32_MISC_ENABLE
    0x277,       // IA32_PAT
    0x6e0,       // IA32_TSC_DEADLINE (the virtual PC's local APIC)
    0xc000_0080, // IA32_EFER
    0xc000_0081, // IA32_STAR
    0xc000_0082, // IA32_LSTAR
    0xc000_0083, // IA32_CSTAR
    0xc000_0084, // IA32_FMASK
    0xc000_0100, // IA32_FS_BASE
    0xc000_0101, // IA32_GS_BASE
    0xc000_0102, // IA32_KERNEL_GS_BASE
];

/// IA32_BIOS_SIGN_ID: writes (a microcode update's trigger) are taken and ignored.
const IA32_BIOS_SIGN_ID: u32 = 0x8b;

/// MSRs written with any canonical value, which must be taken: bases and entry points
/// nothing of the guest uses.
const WRITABLE_ADDRESSES: [u32; 5] = [
    0x175,       // IA32_SYSENTER_ESP
    0x176,       // IA32_SYSENTER_EIP
    0xc000_0082, // IA32_LSTAR
    0xc000_0083, // IA32_CSTAR
    0xc000_0102, // IA32_KERNEL_GS_BASE
];

/// MSRs never written: grt's GS base, what changes the guest's memory or time (EFER, PAT,
/// the TSC, the TSC deadline, the local APIC's base), and those whose valid values depend
/// on more than the hypervisor (SYSENTER_CS, STAR, FMASK, FS_BASE of a `fs:` load).
const NEVER_WRITTEN: [u32; 10] = [
    0x10,
    0x1b,
    0x174,
    0x277,
    0x6e0,
    0xc000_0080,
    0xc000_0081,
    0xc000_0084,
    0xc000_0100,
    0xc000_0101,
];

/// A random CPUID leaf or a random MSR read or write, whose outcome must be the documented
/// one: CPUID never faults, hides VMX and SVM, names axvisor in 0x4000_0000 (highest leaf
/// the timing leaf 0x4000_0010, whose EAX is not 0), zeroes 0x4000_0001..0x4000_00FF else; an MSR read faults (#GP) unless the MSR
/// is one of [`READABLE`]; a write faults unless it is a canonical address to one of
/// [`WRITABLE_ADDRESSES`], or any value to IA32_BIOS_SIGN_ID (ignored).
pub fn firmware_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    if rng.chance(40) {
        cpuid_op(i, rng, st);
    } else {
        msr_op(i, rng, st);
    }
}

fn cpuid_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let leaf = match rng.below(6) {
        0 | 1 => rng.below(0x20) as u32,
        2 => 0x4000_0000 + rng.below(0x110) as u32,
        3 => 0x8000_0000 + rng.below(0x20) as u32,
        4 => 1,
        _ => rng.next() as u32,
    };
    let subleaf = if rng.chance(50) {
        rng.below(4) as u32
    } else {
        rng.next() as u32
    };
    let ([a, b, c, d], faults) = guarded(|| cpuid(leaf, subleaf));
    let ok = faults == 0
        && match leaf {
            1 => c & (1 << 5) == 0 && c & (1 << 31) != 0,
            0x4000_0000 => [b, c, d] == SIGNATURE && a == TIMING_LEAF,
            // EBX: the virtual local APIC's bus clock in kHz (the VM has the virtual PC).
            TIMING_LEAF => a != 0 && b != 0 && [c, d] == [0; 2],
            0x4000_0001..=0x4000_00ff => [a, b, c, d] == [0; 4],
            0x8000_0001 => c & (1 << 2) == 0,
            _ => true,
        };
    if !ok {
        st.wrong(
            i,
            format_args!(
                "cpuid {leaf:#x}.{subleaf:#x}: {a:#x} {b:#x} {c:#x} {d:#x} ({faults} faults)"
            ),
        );
    }
}

fn msr_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let msr = match rng.below(10) {
        0..3 => rng.pick(&READABLE),
        3 => 0x480 + rng.below(0x13) as u32,
        4 | 5 => rng.below(0x2000) as u32,
        6 | 7 => 0xc000_0000 + rng.below(0x2000) as u32,
        _ => rng.next() as u32,
    };
    let canonical = |v: u64| (((v as i64) << 16) >> 16) as u64;
    let write = rng.chance(40) && !NEVER_WRITTEN.contains(&msr);
    if !write {
        let (got, faults) = guarded(|| read_msr(msr));
        let want = u64::from(!READABLE.contains(&msr));
        if faults != want {
            st.wrong(
                i,
                format_args!("rdmsr {msr:#x} ({got:#x}): {faults} faults, expected {want}"),
            );
        }
        return;
    }
    // MISC_ENABLE takes its current value (ignored) and nothing else.
    let keeps_value = msr == 0x1a0;
    let value = if keeps_value && rng.chance(30) {
        read_msr(msr)
    } else if WRITABLE_ADDRESSES.contains(&msr) && rng.chance(80) {
        canonical(rng.next())
    } else {
        rng.value()
    };
    let want = if WRITABLE_ADDRESSES.contains(&msr) {
        u64::from(value != canonical(value))
    } else if msr == IA32_BIOS_SIGN_ID {
        0
    } else if keeps_value {
        u64::from(value != read_msr(msr))
    } else {
        1
    };
    let ((), faults) = guarded(|| write_msr(msr, value));
    if faults != want {
        st.wrong(
            i,
            format_args!("wrmsr {msr:#x} <- {value:#x}: {faults} faults, expected {want}"),
        );
    }
}

/// A 16-byte buffer in RAM for string I/O and the memory operands of VMX instructions.
#[repr(C, align(16))]
struct Buffer(UnsafeCell<[u8; 64]>);

// SAFETY: only the guest's one vCPU uses it, as scratch memory nothing reads.
unsafe impl Sync for Buffer {}

static BUFFER: Buffer = Buffer(UnsafeCell::new([0; 64]));

fn buffer() -> u64 {
    BUFFER.0.get() as u64
}

/// An access at `addr` (16-byte aligned) the hypervisor cannot emulate as MMIO.
pub fn odd_access(kind: u64, addr: u64, value: u64) -> Odd {
    // SAFETY: (every block) `addr` is a device register window or unclaimed, never memory
    // of the guest; a faulting instruction is skipped by the fault handler. Registers
    // written are declared; `push` is undone by restoring RSP, whether it faulted or not;
    // `movs` reads the guest's scratch buffer.
    unsafe {
        match kind {
            0 => {
                asm!("lock add qword ptr [{a}], {v}", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
            1 => {
                asm!("xchg qword ptr [{a}], {v}", a = in(reg) addr, v = inout(reg) value => _, options(nostack))
            }
            2 => {
                asm!("add dword ptr [{a}], {v:e}", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
            3 => {
                asm!("lock cmpxchg qword ptr [{a}], {v}", a = in(reg) addr, v = in(reg) value, inout("rax") 0u64 => _, options(nostack))
            }
            4 => {
                asm!("movnti dword ptr [{a}], {v:e}", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
            5 => {
                asm!("rep movsb", inout("rdi") addr => _, inout("rsi") buffer() => _, inout("rcx") 8u64 => _, options(nostack))
            }
            6 => {
                asm!("mov {s}, rsp", "push qword ptr [{a}]", "mov rsp, {s}", a = in(reg) addr, s = out(reg) _)
            }
            7 => asm!("inc byte ptr [{a}]", a = in(reg) addr, options(nostack)),
            _ => asm!("test dword ptr [{a}], 0x5a5a", a = in(reg) addr, options(nostack)),
        }
    }
    Odd::Undecodable
}

/// How many kinds of access [`odd_access`] knows.
pub const ODD_KINDS: u64 = 9;

/// The name of access `kind` of [`odd_access`].
pub fn odd_name(kind: u64) -> &'static str {
    [
        "lock add",
        "xchg",
        "add",
        "lock cmpxchg",
        "movnti",
        "rep movsb",
        "push",
        "inc",
        "test",
    ][kind as usize % 9]
}

// The entries of #PF, #GP and #UD while `fetch` jumps somewhere without memory: each
// records its vector, the error code (0 for #UD), CR2 and the RIP of the exception, then
// returns (iretq) to the address in CHAOS_FETCH_RET instead. RAX is declared clobbered by
// `fetch`.
global_asm!(
    r#"
    .section .text.chaos_fetch, "ax"
    .balign 16
chaos_fetch_pf:
    mov  qword ptr [rip + CHAOS_FETCH_VECTOR], 14
    pop  qword ptr [rip + CHAOS_FETCH_ERROR]
    jmp  3f
    .balign 16
chaos_fetch_gp:
    mov  qword ptr [rip + CHAOS_FETCH_VECTOR], 13
    pop  qword ptr [rip + CHAOS_FETCH_ERROR]
    jmp  3f
    .balign 16
chaos_fetch_ud:
    mov  qword ptr [rip + CHAOS_FETCH_VECTOR], 6
    mov  qword ptr [rip + CHAOS_FETCH_ERROR], 0
3:  mov  rax, cr2
    mov  qword ptr [rip + CHAOS_FETCH_CR2], rax
    mov  rax, [rsp]
    mov  qword ptr [rip + CHAOS_FETCH_RIP], rax
    mov  rax, qword ptr [rip + CHAOS_FETCH_RET]
    mov  [rsp], rax
    iretq
"#
);

/// What the entries above saw (vector u64::MAX: nothing), and where they return to.
#[no_mangle]
static CHAOS_FETCH_VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);
#[no_mangle]
static CHAOS_FETCH_ERROR: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static CHAOS_FETCH_CR2: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static CHAOS_FETCH_RIP: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static CHAOS_FETCH_RET: AtomicU64 = AtomicU64::new(0);

/// Jumps to `addr`, where there is no memory, with the entries above on #PF, #GP and #UD:
/// returns the syndrome (vector and error code) and the address (CR2 for a page fault,
/// else RIP) of the exception taken, if any.
pub fn fetch(addr: u64) -> Option<(u64, u64)> {
    extern "C" {
        fn chaos_fetch_pf();
        fn chaos_fetch_gp();
        fn chaos_fetch_ud();
    }
    let gates = [
        (14u8, chaos_fetch_pf as *const () as u64),
        (13, chaos_fetch_gp as *const () as u64),
        (6, chaos_fetch_ud as *const () as u64),
    ];
    CHAOS_FETCH_VECTOR.store(u64::MAX, Ordering::SeqCst);
    for (v, h) in gates {
        grt::x86::set_gate(v, h);
    }
    // SAFETY: `addr` is not memory of the guest: the fetch faults (the hypervisor injects
    // an exception, or the CPU raises a page fault), and the entries installed here return
    // to label 2 with only RAX changed (declared); grt's entries are back before anything
    // else can fault. Interrupts are masked.
    unsafe {
        asm!(
            "lea  rax, [rip + 2f]",
            "mov  qword ptr [rip + CHAOS_FETCH_RET], rax",
            "jmp  {target}",
            "2:",
            target = in(reg) addr,
            out("rax") _,
        )
    };
    for (v, _) in gates {
        grt::x86::set_gate(v, grt::x86::stub_address(v));
    }
    match CHAOS_FETCH_VECTOR.load(Ordering::SeqCst) {
        u64::MAX => None,
        vector => {
            let error = CHAOS_FETCH_ERROR.load(Ordering::SeqCst);
            let at = if vector == 14 {
                CHAOS_FETCH_CR2.load(Ordering::SeqCst)
            } else {
                CHAOS_FETCH_RIP.load(Ordering::SeqCst)
            };
            Some(((vector << 32) | error, at))
        }
    }
}

/// No user-mode accesses on x86_64 (grt runs at CPL 0 only): `None`.
pub fn user_access(_addr: u64, _write: bool) -> Option<(u64, u64)> {
    None
}

/// Never called ([`user_access`] makes none): every syndrome is unexpected.
pub fn user_fault(_syndrome: u64) -> Result<Option<&'static str>, ()> {
    Err(())
}

/// What an instruction fetch fault is, when it is an acceptable one: the #GP(0) the
/// hypervisor injects at the address (RIP), or a page fault from the guest's own page
/// tables (an address above what they map).
pub fn fetch_fault(syndrome: u64) -> Option<&'static str> {
    match split(syndrome) {
        (13, 0) => Some("#GP(0) at the address, injected"),
        (14, _) => Some("page fault on a fetch, from the page tables"),
        _ => None,
    }
}

/// A register write and read-back with known semantics: the MMIO 16550's SCR, LCR (8
/// bits) and MCR (5 bits), at every width (wider accesses act on the low byte).
pub fn roundtrip(rng: &mut Rng) -> Roundtrip {
    let v = rng.value();
    let width = rng.pick(&[1, 2, 4, 8]);
    let (what, off, mask) = match rng.below(3) {
        0 => ("16550 SCR", 7, 0xff),
        1 => ("16550 LCR", 3, 0xff),
        _ => ("16550 MCR", 4, 0x1f),
    };
    let sized = if width == 8 {
        v
    } else {
        v & ((1 << (width * 8)) - 1)
    };
    Roundtrip {
        what,
        addr: UART_BASE + off,
        width,
        value: sized,
        want: sized & mask,
    }
}

/// What [`extra_op`] does, for the summary.
pub const EXTRA_NAME: &str = "port I/O, control-register and always-exiting-instruction operations";

/// The console's ports (0x3F8..0x400): read only.
fn console_port(port: u16) -> bool {
    (grt::x86::COM1..grt::x86::COM1 + 8).contains(&port)
}

/// The virtual PC's PM1 control ports (0x604, 0x605): a write of S5 with SLP_EN powers the
/// VM off.
fn pm1_control(port: u16) -> bool {
    (0x604..=0x605).contains(&port)
}

/// A random port for a write of up to 4 bytes: never one that touches the console's ports
/// or PM1 control.
fn write_port(rng: &mut Rng) -> u16 {
    loop {
        let port = rng.next() as u16;
        if (0..4)
            .map(|k| port.wrapping_add(k))
            .all(|p| !console_port(p) && !pm1_control(p))
        {
            return port;
        }
    }
}

/// Port I/O (reads of any port, writes of any but the console's, plain and string forms;
/// none faults: a port nobody claims reads all ones and drops writes), control-register writes the hypervisor must refuse
/// with #GP (CR4.VMXE with VMX hidden, a reserved CR4 bit, CR0.PG clear in long mode,
/// CR0.NW without CD), and instructions that always leave a VMX guest or that the
/// hypervisor makes leave it: the VMX instructions, GETSEC, RDPMC, XSETBV without
/// CR4.OSXSAVE and RDTSCP (each exactly one exception), INVD, WBINVD and INVLPG (none or
/// one).
pub fn extra_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let what = rng.below(16);
    if crate::TRACE {
        grt::println!("chaos: op {i}: extra {what}");
    }
    let buf = buffer();
    // SAFETY: (every block) the instruction touches only its declared registers, the
    // guest's scratch buffer, a port (never a console port for a write), or a control
    // register whose write must be refused (its old value stays); a fault is skipped.
    let (want, faults) = guarded(|| unsafe {
        match what {
            0 => {
                let port = rng.next() as u16;
                match rng.below(3) {
                    0 => asm!("in al, dx", in("dx") port, out("al") _, options(nomem, nostack)),
                    1 => asm!("in ax, dx", in("dx") port, out("ax") _, options(nomem, nostack)),
                    _ => asm!("in eax, dx", in("dx") port, out("eax") _, options(nomem, nostack)),
                }
                Some(0)
            }
            1 => {
                let port = write_port(rng);
                let v = rng.next() as u32;
                match rng.below(3) {
                    0 => {
                        asm!("out dx, al", in("dx") port, in("al") v as u8, options(nomem, nostack))
                    }
                    1 => {
                        asm!("out dx, ax", in("dx") port, in("ax") v as u16, options(nomem, nostack))
                    }
                    _ => asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack)),
                }
                Some(0)
            }
            2 => {
                let port = rng.next() as u16;
                asm!("rep insb", in("dx") port, inout("rdi") buf => _, inout("rcx") 1 + rng.below(8) => _, options(nostack));
                Some(0)
            }
            3 => {
                let port = write_port(rng);
                asm!("rep outsb", in("dx") port, inout("rsi") buf => _, inout("rcx") 1 + rng.below(8) => _, options(nostack));
                Some(0)
            }
            4 => {
                asm!("mov {t}, cr4", "bts {t}, 13", "mov cr4, {t}", t = out(reg) _, options(nomem, nostack));
                Some(1)
            }
            5 => {
                let bit = 32 + rng.below(32);
                asm!("mov {t}, cr4", "bts {t}, {b}", "mov cr4, {t}", t = out(reg) _, b = in(reg) bit, options(nomem, nostack));
                Some(1)
            }
            6 => {
                asm!("mov {t}, cr0", "btr {t}, 31", "mov cr0, {t}", t = out(reg) _, options(nomem, nostack));
                Some(1)
            }
            7 => {
                asm!("mov {t}, cr0", "btr {t}, 30", "bts {t}, 29", "mov cr0, {t}", t = out(reg) _, options(nomem, nostack));
                Some(1)
            }
            8 => {
                match rng.below(6) {
                    0 => asm!("vmxoff", options(nomem, nostack)),
                    1 => asm!("vmlaunch", options(nomem, nostack)),
                    2 => asm!("vmresume", options(nomem, nostack)),
                    3 => {
                        asm!("vmread {v}, {f}", v = out(reg) _, f = in(reg) rng.value(), options(nomem, nostack))
                    }
                    4 => asm!("vmptrld qword ptr [{b}]", b = in(reg) buf, options(nostack)),
                    _ => asm!("vmxon qword ptr [{b}]", b = in(reg) buf, options(nostack)),
                }
                Some(1)
            }
            9 => {
                let kind = rng.below(4);
                asm!("invept {k}, xmmword ptr [{b}]", k = in(reg) kind, b = in(reg) buf, options(nostack));
                Some(1)
            }
            10 => {
                // RBX (which LLVM reserves) is saved around it.
                asm!("push rbx", "getsec", "pop rbx", inout("eax") rng.below(8) as u32 => _);
                Some(1)
            }
            11 => {
                asm!("rdpmc", in("ecx") rng.next() as u32, out("eax") _, out("edx") _, options(nomem, nostack));
                Some(1)
            }
            12 => {
                asm!("xsetbv", in("ecx") 0u32, in("eax") 1u32, in("edx") 0u32, options(nomem, nostack));
                Some(1)
            }
            13 => {
                asm!("rdtscp", out("eax") _, out("edx") _, out("ecx") _, options(nomem, nostack));
                Some(1)
            }
            14 => {
                if rng.chance(50) {
                    asm!("wbinvd", options(nostack));
                } else {
                    asm!("invd", options(nostack));
                }
                None
            }
            _ => {
                asm!("invlpg [{}]", in(reg) rng.next() & 0xffff_ffff, options(nostack));
                Some(0)
            }
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
}

/// Removes the exception handler.
pub fn finish() {
    grt::trap::set_exception_handler(None);
}

/// The hypervisor's own answers still hold: its CPUID leaf, the console's LSR (transmitter
/// empty) and the MMIO 16550's scratch register. Then the targeted phase
/// ([`crate::x86_hostile`]).
pub fn final_checks(c: &mut grt::check::Checker) {
    let [a, b, cx, d] = cpuid(0x4000_0000, 0);
    c.eq("CPUID 0x4000_0000 EAX after the chaos", a, TIMING_LEAF);
    c.ok(
        "CPUID 0x4000_0000 still names axvisor",
        [b, cx, d] == SIGNATURE,
    );
    c.eq(
        "console LSR THRE|TEMT after the chaos",
        grt::console::status() & 0x60,
        0x60,
    );
    // SAFETY: the MMIO 16550's scratch register.
    let scr = unsafe {
        grt::mmio::write8((UART_BASE + 7) as usize, 0xa5);
        grt::mmio::read8((UART_BASE + 7) as usize)
    };
    c.eq("16550 SCR after the chaos", scr, 0xa5);
    crate::x86_hostile::run(c);
}

/// After the final tally (`PASS chaos`): the VM ends with a triple fault (an IDT of limit 0
/// and an `int3`: the #BP cannot be delivered, nor the #GP, nor the double fault), which
/// the hypervisor answers by stopping the VM with one line, `vm chaos: stopped: triple
/// fault` (a PC would reset; axvisor stops it), while the other VM runs on.
pub fn end() {
    grt::println!("chaos: ending with a triple fault");
    let idtr = [0u16; 5];
    // SAFETY: the guest is done; the exceptions cannot be delivered and the CPU shuts the
    // vCPU down: nothing after this runs.
    unsafe { asm!("lidt [{}]", "int3", in(reg) &idtr, options(noreturn)) }
}
