//! A randomized robustness test: the guest does [`OPS`] random operations, each one of
//! - an MMIO read or write, of a random width (1, 2, 4 or 8 bytes) at a random offset
//!   (aligned or not, some straddling the window's end), in one of its interrupt
//!   controller's windows (aarch64: the vGIC distributor, the redistributor frame, the GICv2
//!   CPU interface; riscv64: the virtual PLIC), or a read of its console UART;
//! - a load or store at a random guest-physical address outside its RAM and every device
//!   (the VM's unclaimed policy is `fault`: each must come back as one data fault), some
//!   from user mode;
//! - a hypercall with a random number and arguments (never CONSOLE_PUTCHAR);
//! - a firmware call with random ids and arguments: SMCCC on aarch64 (PSCI, the discovery
//!   calls, the vendor hypervisor queries, ids of every owner), SBI on riscv64, never
//!   one that powers off, resets or stops the VM or its vCPU, or prints;
//! - an access the hypervisor cannot decode as MMIO (aarch64: load/store pairs, writeback,
//!   exclusives, cache maintenance; riscv64: atomics, LR/SC, FP loads and stores) to a
//!   device window or an unclaimed address;
//! - an architecture-specific one (aarch64: the GICv3 CPU interface registers, trapped SGI
//!   and ID registers, the timers; riscv64: PLIC claim/complete, instructions VS mode may
//!   not run, `stimecmp`);
//! - a write and read-back of an interrupt controller register with known semantics;
//! - a jump to an address without memory (an instruction fetch fault);
//! - with the MMU on (the second half), an access whose page-table walk reads where there
//!   is no memory.
//!
//! Then the virtio phase ([`virtq`]) abuses the VM's virtio-console and checks it still
//! works after a reset; on x86_64 the targeted phase ([`x86_hostile`]) follows, one check
//! per input of the x86 backends a guest controls.
//!
//! Interrupts stay masked throughout (the random interrupt controller writes may make
//! interrupts pending, they must not be taken) and the guest never halts. Every operation
//! has an expected outcome (e.g. an aligned 32-bit access inside the distributor never
//! faults, an unclaimed access faults exactly once at its address, a hypercall returns its
//! documented result); a wrong one is counted and the first few are printed. At the end the
//! guest checks that the hypervisor still answers (VERSION = 1, VM_ID = [`EXPECTED_VM_ID`])
//! and prints `PASS chaos` with its counts. The seed is fixed ([`SEED`], printed at the
//! start); the build environment can change it, the count, and trace every operation
//! (`CHAOS_SEED`, `CHAOS_OPS`, `CHAOS_TRACE`). docs/guests.md describes it all.
#![no_std]
#![no_main]

mod rng;
mod virtq;

#[cfg(target_arch = "aarch64")]
#[path = "aarch64.rs"]
mod arch;
#[cfg(target_arch = "riscv64")]
#[path = "riscv64.rs"]
mod arch;
#[cfg(target_arch = "x86_64")]
#[path = "x86_64.rs"]
mod arch;
#[cfg(target_arch = "x86_64")]
mod x86_hostile;
#[cfg(target_arch = "x86_64")]
mod x86_legacy;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use grt::check::Checker;
use grt::trap::{set_data_fault_handler, set_undefined_handler, DataFault, FaultAction, Undefined};
use rng::Rng;

/// The PRNG seed. Every run with the same seed does the same operations. The scenarios use
/// this one; `CHAOS_SEED=<hex or decimal>` in the environment of the guest's build picks
/// another (e.g. `CHAOS_SEED=0x1234 cargo xtask test --scenarios chaos`).
pub const SEED: u64 = match option_env!("CHAOS_SEED") {
    Some(s) => parse(s),
    None => 0xc4a0_5eed_2024_0001,
};
/// How many random operations (`CHAOS_OPS` in the build's environment changes it).
pub const OPS: u64 = match option_env!("CHAOS_OPS") {
    Some(s) => parse(s),
    None => 20_000,
};

/// Whether each operation is announced before it is done (`CHAOS_TRACE=1` in the build's
/// environment): to find the one a hang or a crash happens in.
pub const TRACE: bool = option_env!("CHAOS_TRACE").is_some();

/// A number from the build environment: decimal, or hexadecimal after `0x`; `_` ignored.
/// Anything else stops the build.
const fn parse(s: &str) -> u64 {
    let b = s.as_bytes();
    let (mut i, radix) = if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
        (2, 16)
    } else {
        (0, 10)
    };
    let mut v: u64 = 0;
    while i < b.len() {
        let d = match b[i] {
            b'0'..=b'9' => b[i] - b'0',
            b'a'..=b'f' if radix == 16 => b[i] - b'a' + 10,
            b'A'..=b'F' if radix == 16 => b[i] - b'A' + 10,
            b'_' => {
                i += 1;
                continue;
            }
            _ => panic!("CHAOS_SEED / CHAOS_OPS: not a number"),
        };
        v = v.wrapping_mul(radix).wrapping_add(d as u64);
        i += 1;
    }
    v
}

/// The VM's `id` in `configs/vms/<arch>-chaos.toml` (change both together).
pub const EXPECTED_VM_ID: u64 = 18;
/// How many wrong outcomes are printed in detail (all are counted).
const PRINT_LIMIT: u64 = 20;

/// An emulated (or host-mapped) register window of the VM, and how it answers.
#[derive(Clone, Copy)]
pub struct Window {
    /// For messages.
    pub name: &'static str,
    /// Guest-physical base and size.
    pub base: u64,
    pub size: u64,
    /// How it answers.
    pub kind: Kind,
    /// Interesting `(offset, length)` ranges: registers, where most random offsets go.
    pub hot: &'static [(u64, u64)],
}

/// Which accesses a window must accept and which it must refuse (see [`Window::expect`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A vGIC distributor or redistributor: every aligned 32-bit access works; other widths
    /// depend on the register.
    Gic,
    /// The GICv2 CPU interface: the host's virtual CPU interface mapped into the guest, so
    /// nothing the hypervisor decides (QEMU's takes unaligned accesses too).
    GicHw,
    /// Listed in the config but not used with this host's GIC (GICv2 redistributors,
    /// GICv3 CPU interface): every access faults.
    Absent,
    /// PL011: 8-, 16- and 32-bit accesses at multiples of 4.
    Pl011,
    /// PLIC: aligned 32-bit accesses only.
    Plic,
    /// 16550: any width at any offset inside its window, acting on the byte register at
    /// the offset. (QEMU raises no misaligned-address fault for an access to an address
    /// without memory: the hypervisor gets the guest-page fault and the device decides.)
    Ns16550,
}

/// What an access must do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// No fault.
    Accept,
    /// Exactly one fault.
    Refuse,
    /// At most one fault.
    Either,
}

impl Window {
    /// Whether `[addr, addr + len)` touches this window.
    fn overlaps(&self, addr: u64, len: u64) -> bool {
        addr < self.base + self.size && self.base < addr.saturating_add(len)
    }

    /// What an access of `width` bytes at `off` must do. An unaligned access that crosses
    /// a page may be cut by the emulator into aligned accesses, one per page, each of which
    /// a device may take (and the next page may be another device's): it may or may not
    /// fault.
    fn expect(&self, off: u64, width: u64) -> Expect {
        let inside = off + width <= self.size;
        let aligned = off.is_multiple_of(width);
        let crosses_page = off / 0x1000 != (off + width - 1) / 0x1000;
        if !aligned && crosses_page {
            return Expect::Either;
        }
        if !inside || self.kind == Kind::Absent {
            return Expect::Refuse;
        }
        if self.kind == Kind::Ns16550 {
            return Expect::Accept;
        }
        if !aligned && self.kind == Kind::GicHw {
            return Expect::Either;
        }
        if !aligned {
            return Expect::Refuse;
        }
        match self.kind {
            Kind::Gic if width == 4 => Expect::Accept,
            Kind::Gic | Kind::GicHw => Expect::Either,
            Kind::Pl011 if width == 8 || !off.is_multiple_of(4) => Expect::Refuse,
            Kind::Plic if width != 4 => Expect::Refuse,
            Kind::Pl011 | Kind::Plic | Kind::Ns16550 => Expect::Accept,
            Kind::Absent => Expect::Refuse,
        }
    }
}

/// Counts of what was done, by operation, and of the faults seen.
#[derive(Default)]
pub struct Stats {
    pub mmio_reads: u64,
    pub mmio_writes: u64,
    pub mmio_faults: u64,
    pub uart_reads: u64,
    pub unclaimed: u64,
    pub hypercalls: u64,
    pub firmware: u64,
    pub odd: u64,
    pub odd_faults: u64,
    pub extra: u64,
    pub extra_faults: u64,
    pub roundtrips: u64,
    pub fetches: u64,
    pub walks: u64,
    pub user: u64,
    /// Faults of user-mode accesses by what they were ([`arch::user_fault`]).
    pub user_kinds: [(&'static str, u64); 4],
    /// Instruction fetch faults by what they were ([`arch::fetch_fault`]).
    pub fetch_kinds: [(&'static str, u64); 4],
    /// Wrong outcomes (each one printed up to [`PRINT_LIMIT`]).
    pub wrong: u64,
}

impl Stats {
    /// Records a wrong outcome of operation `i` and prints it if it is among the first few.
    pub fn wrong(&mut self, i: u64, what: core::fmt::Arguments) {
        self.wrong += 1;
        if self.wrong <= PRINT_LIMIT {
            grt::println!("chaos: op {i}: wrong: {what}");
        } else if self.wrong == PRINT_LIMIT + 1 {
            grt::println!("chaos: further wrong outcomes are counted, not printed");
        }
    }
}

/// Data faults taken while [`ARMED`], and the last one's address and syndrome.
static FAULTS: AtomicU64 = AtomicU64::new(0);
static FAULT_ADDR: AtomicU64 = AtomicU64::new(0);
static FAULT_SYNDROME: AtomicU64 = AtomicU64::new(0);
/// Faults injected by the hypervisor / raised by the CPU itself (see `arch::injected`).
static INJECTED: AtomicU64 = AtomicU64::new(0);
static CPU_RAISED: AtomicU64 = AtomicU64::new(0);
/// Undefined-instruction exceptions taken while [`ARMED`].
static UNDEFINED: AtomicU64 = AtomicU64::new(0);
/// Set around each risky instruction: a fault anywhere else is a real failure of the guest.
static ARMED: AtomicBool = AtomicBool::new(false);

fn on_fault(f: &DataFault) -> FaultAction {
    record_fault(f.addr, f.syndrome)
}

/// Counts a data fault at `addr` with `syndrome` while [`ARMED`] and skips the instruction
/// (grt's data fault handler, and on x86_64 its handler of the other exceptions).
pub fn record_fault(addr: u64, syndrome: u64) -> FaultAction {
    if !ARMED.load(Ordering::SeqCst) {
        return FaultAction::Fail;
    }
    FAULTS.fetch_add(1, Ordering::SeqCst);
    FAULT_ADDR.store(addr, Ordering::SeqCst);
    FAULT_SYNDROME.store(syndrome, Ordering::SeqCst);
    if arch::injected(syndrome) {
        INJECTED.fetch_add(1, Ordering::SeqCst);
    } else {
        CPU_RAISED.fetch_add(1, Ordering::SeqCst);
    }
    FaultAction::Skip
}

fn on_undefined(_: &Undefined) -> FaultAction {
    if !ARMED.load(Ordering::SeqCst) {
        return FaultAction::Fail;
    }
    UNDEFINED.fetch_add(1, Ordering::SeqCst);
    FaultAction::Skip
}

/// Runs `f` with faults expected, and returns how many data faults and undefined-instruction
/// exceptions it took.
#[inline(always)]
pub fn guarded<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = FAULTS.load(Ordering::SeqCst) + UNDEFINED.load(Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let r = f();
    ARMED.store(false, Ordering::SeqCst);
    let after = FAULTS.load(Ordering::SeqCst) + UNDEFINED.load(Ordering::SeqCst);
    (r, after - before)
}

/// The address of the last data fault.
pub fn last_fault_addr() -> u64 {
    FAULT_ADDR.load(Ordering::SeqCst)
}

/// Whether the last data fault says which address it was for (x86_64's #GP does not).
fn last_fault_has_address() -> bool {
    arch::fault_has_address(FAULT_SYNDROME.load(Ordering::SeqCst))
}

/// A load of `width` bytes at `addr` (the value zero-extended), or a store of `value`.
/// Returns the value read (0 for a store; whatever the register held for a load the fault
/// handler skipped).
///
/// # Safety
/// The address is a device register or unclaimed: no memory of the guest is touched; the
/// access may fault, which [`on_fault`] skips while [`ARMED`].
pub unsafe fn access(addr: u64, width: u64, write: bool, value: u64) -> u64 {
    let a = addr as usize;
    // SAFETY: the caller's contract; a skipped load leaves the result register as it was
    // before the access, which the accessors' asm treats as an output (so some value).
    unsafe {
        match (width, write) {
            (1, false) => u64::from(grt::mmio::read8(a)),
            (2, false) => u64::from(grt::mmio::read16(a)),
            (4, false) => u64::from(grt::mmio::read32(a)),
            (_, false) => grt::mmio::read64(a),
            (1, true) => {
                grt::mmio::write8(a, value as u8);
                0
            }
            (2, true) => {
                grt::mmio::write16(a, value as u16);
                0
            }
            (4, true) => {
                grt::mmio::write32(a, value as u32);
                0
            }
            (_, true) => {
                grt::mmio::write64(a, value);
                0
            }
        }
    }
}

/// A random access width: every register takes 32 bits, so half of them are.
fn width(rng: &mut Rng) -> u64 {
    rng.pick(&[1, 1, 2, 4, 4, 4, 4, 8])
}

/// A random offset in `w` for an access of `width` bytes: mostly in its registers, some
/// anywhere, some at the very end (straddling it); mostly aligned to the width.
fn offset(rng: &mut Rng, w: &Window, width: u64) -> u64 {
    let off = match rng.below(10) {
        0..4 if !w.hot.is_empty() => {
            let (start, len) = rng.pick(w.hot);
            start + rng.below(len)
        }
        4..6 => w.size - 1 - rng.below(16),
        _ => rng.below(w.size),
    };
    if rng.chance(70) {
        off & !(width - 1)
    } else {
        off
    }
}

/// One random access to window `w` (`write` only for windows that may be written).
fn mmio_op(i: u64, rng: &mut Rng, st: &mut Stats, w: &Window, write: bool) {
    let width = width(rng);
    let off = offset(rng, w, width);
    let value = rng.value();
    let expect = w.expect(off, width);
    let addr = w.base + off;
    // SAFETY: `addr` is inside (or straddles the end of) one of this VM's device windows;
    // the console is only read (its reads have no effect the guest depends on).
    let (got, faults) = guarded(|| unsafe { access(addr, width, write, value) });
    if write {
        st.mmio_writes += 1;
    } else if w.kind == Kind::Pl011 || w.kind == Kind::Ns16550 {
        st.uart_reads += 1;
    } else {
        st.mmio_reads += 1;
    }
    st.mmio_faults += faults;
    let ok = match expect {
        Expect::Accept => faults == 0,
        Expect::Refuse => faults == 1,
        Expect::Either => faults <= 1,
    };
    let dir = if write { "write" } else { "read" };
    if !ok {
        st.wrong(
            i,
            format_args!(
                "{width}-byte {dir} at {} + {off:#x} ({addr:#x}): {faults} faults, expected {expect:?}",
                w.name
            ),
        );
        return;
    }
    let fault_at = last_fault_addr();
    if expect == Expect::Refuse
        && last_fault_has_address()
        && !(addr & !7..addr + width).contains(&fault_at)
    {
        st.wrong(
            i,
            format_args!("{width}-byte {dir} at {addr:#x}: fault at {fault_at:#x}"),
        );
    }
    if !write && faults == 0 {
        if let Some((mask, want)) = arch::fixed_value(w, off, width) {
            if got & mask != want {
                st.wrong(
                    i,
                    format_args!(
                        "{width}-byte read at {} + {off:#x}: {got:#x}, expected {want:#x}",
                        w.name
                    ),
                );
            }
        }
    }
}

/// Whether `[addr, addr + len)` touches the VM's RAM.
pub fn claimed_ram(addr: u64, len: u64) -> bool {
    addr < grt::RAM_BASE + grt::RAM_SIZE && grt::RAM_BASE < addr.saturating_add(len)
}

/// Whether `[addr, addr + len)` touches the VM's RAM or any of its device windows (the
/// virtio-console's too, which only [`virtq`] accesses, and [`arch::OTHER_DEVICES`]).
fn claimed(addr: u64, len: u64) -> bool {
    let touches = |(base, size): (u64, u64)| addr < base + size && base < addr.saturating_add(len);
    claimed_ram(addr, len)
        || arch::windows()
            .iter()
            .chain(core::iter::once(&arch::UART))
            .any(|w| w.overlaps(addr, len))
        || arch::VIRTIO.is_some_and(|base| touches((base, 0x200)))
        || arch::OTHER_DEVICES.iter().copied().any(touches)
}

/// A random guest-physical address where an access of `len` bytes touches nothing of the
/// VM: around its RAM and its devices, and anywhere in the address space.
pub fn unclaimed_addr(rng: &mut Rng, len: u64) -> u64 {
    let ram_end = grt::RAM_BASE + grt::RAM_SIZE;
    loop {
        let addr = match rng.below(10) {
            0 | 1 => ram_end + rng.below(0x1_0000),
            2 => grt::RAM_BASE.wrapping_sub(1 + rng.below(0x1_0000)),
            3 | 4 => {
                let ws = arch::windows();
                let w = ws[rng.below(ws.len() as u64) as usize];
                if rng.chance(50) {
                    w.base.wrapping_sub(1 + rng.below(0x100))
                } else {
                    w.base + w.size + rng.below(0x100)
                }
            }
            5 | 6 => rng.below(1 << 32),
            7 | 8 => rng.below(1 << 40),
            _ => rng.next(),
        };
        let addr = if rng.chance(70) {
            addr & !(len - 1)
        } else {
            addr
        };
        if addr.checked_add(len).is_some() && !claimed(addr, len) && arch::addressable(addr, len) {
            return addr;
        }
    }
}

/// A load or store at a random unclaimed address: exactly one fault, at that address.
fn unclaimed_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let width = width(rng);
    let addr = unclaimed_addr(rng, width);
    let write = rng.chance(50);
    let value = rng.value();
    // SAFETY: nothing of the VM is at `addr` (checked by `unclaimed_addr`).
    let (_, faults) = guarded(|| unsafe { access(addr, width, write, value) });
    st.unclaimed += 1;
    let dir = if write { "write" } else { "read" };
    if faults != 1 {
        st.wrong(
            i,
            format_args!("unclaimed {width}-byte {dir} at {addr:#x}: {faults} faults, expected 1"),
        );
        return;
    }
    // An unaligned access crossing a page may be reported at the start of the second page
    // or at its aligned start.
    let fault_at = last_fault_addr();
    if last_fault_has_address() && !(addr & !7..addr + width).contains(&fault_at) {
        let syndrome = FAULT_SYNDROME.load(Ordering::SeqCst);
        st.wrong(
            i,
            format_args!(
                "unclaimed {width}-byte {dir} at {addr:#x}: fault at {fault_at:#x} (syndrome {syndrome:#x})"
            ),
        );
    }
}

/// The hypercall numbers tried: the real ones, small numbers, 32- and 64-bit values, the
/// real ones with junk in the upper half; never CONSOLE_PUTCHAR or [`arch::NEVER_CALLED`]. (On aarch64 `grt::hypercall` ORs the number into
/// axvisor's SMCCC range, so most large ones leave it: [`arch::hypercall_function`].)
fn hypercall_nr(rng: &mut Rng) -> u64 {
    loop {
        let nr = match rng.below(8) {
            0..3 => 0x100 + rng.below(5),
            3 => rng.below(0x200),
            4 => rng.next() & 0xffff_ffff,
            5 => (rng.next() << 32) | (0x100 + rng.below(5)),
            _ => rng.next(),
        };
        if arch::hypercall_function(nr) != Some(grt::hc::CONSOLE_PUTCHAR)
            && !arch::NEVER_CALLED.contains(&nr)
        {
            return nr;
        }
    }
}

/// A hypercall with a random number and arguments, whose result must be the documented one.
fn hypercall_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let nr = hypercall_nr(rng);
    let args = [
        rng.value(),
        rng.value(),
        rng.value(),
        rng.value(),
        rng.value(),
        rng.value(),
    ];
    let got = grt::hypercall(nr, args);
    st.hypercalls += 1;
    let want = match arch::hypercall_function(nr) {
        Some(grt::hc::VERSION) => grt::hc::ABI_VERSION,
        Some(grt::hc::ADD) => args.iter().fold(0u64, |a, &b| a.wrapping_add(b)),
        Some(grt::hc::VM_ID) => EXPECTED_VM_ID,
        Some(grt::hc::RESET_COUNT) => 0,
        _ => grt::hc::NOT_SUPPORTED,
    };
    if got != want {
        st.wrong(
            i,
            format_args!("hypercall {nr:#x}: {got:#x}, expected {want:#x}"),
        );
    }
}

/// What an access of [`odd_op`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Odd {
    /// The hypervisor cannot emulate it: it faults wherever there is no memory.
    Undecodable,
    /// An unusual instruction the hypervisor can emulate (e.g. a load-acquire): it faults
    /// where nothing is, and a device may take it.
    Decodable,
    /// It may not access memory at all (a store-exclusive without a reservation, a cache
    /// maintenance instruction QEMU ignores): it may or may not fault.
    NoAccess,
}

/// An access the hypervisor cannot decode to a device window or an unclaimed address.
fn odd_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let windows = arch::windows();
    let (addr, window) = if rng.chance(50) {
        let w = rng.pick(windows);
        (w.base + (rng.below(w.size) & !0xf), Some(w))
    } else if rng.chance(20) {
        let w = arch::UART;
        (w.base + (rng.below(w.size) & !0xf), Some(w))
    } else {
        (unclaimed_addr(rng, 16) & !0xf, None)
    };
    let kind = rng.below(arch::ODD_KINDS);
    let value = rng.value();
    let (odd, faults) = guarded(|| arch::odd_access(kind, addr, value));
    st.odd += 1;
    st.odd_faults += faults;
    let must_fault = match (odd, window) {
        (Odd::NoAccess, _) => false,
        // The GICv2 CPU interface is the host's, mapped: the access may just work there.
        (_, Some(w)) if w.kind == Kind::GicHw => false,
        (Odd::Undecodable, _) | (Odd::Decodable, None) => true,
        (Odd::Decodable, Some(_)) => false,
    };
    if faults > 1 || (must_fault && faults != 1) {
        st.wrong(
            i,
            format_args!("{} at {addr:#x}: {faults} faults", arch::odd_name(kind)),
        );
    }
}

/// A register with known write semantics: what reading it back after a write must give.
pub struct Roundtrip {
    /// The register, for messages.
    pub what: &'static str,
    /// Its address and access width.
    pub addr: u64,
    pub width: u64,
    /// The value written.
    pub value: u64,
    /// The value it must read back as.
    pub want: u64,
}

/// Writes a register with known semantics (priorities, configurations, enables, routes...)
/// and reads it back: neither access may fault, and the read must give the documented
/// value whatever state the random accesses left behind.
fn roundtrip_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let r = arch::roundtrip(rng);
    // SAFETY: a register of this VM's interrupt controller.
    let (got, faults) = guarded(|| unsafe {
        access(r.addr, r.width, true, r.value);
        access(r.addr, r.width, false, 0)
    });
    st.roundtrips += 1;
    if faults != 0 || got != r.want {
        st.wrong(
            i,
            format_args!(
                "{} ({:#x}): wrote {:#x}, read {got:#x} ({faults} faults), expected {:#x}",
                r.what, r.addr, r.value, r.want
            ),
        );
    }
}

/// Jumps to a random address where there is no memory (unclaimed, or a device window of
/// the hypervisor's): the guest must get exactly one instruction fetch fault there, which
/// the architecture's [`arch::fetch`] catches with vectors of its own and returns from.
fn fetch_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let addr = if rng.chance(30) {
        let w = rng.pick(arch::windows());
        let w = if w.kind == Kind::GicHw { arch::UART } else { w };
        w.base + (rng.below(w.size) & !3)
    } else {
        unclaimed_addr(rng, 4) & !3
    };
    let taken = arch::fetch(addr);
    st.fetches += 1;
    let kind = taken.and_then(|(syndrome, _)| arch::fetch_fault(syndrome));
    match (taken, kind) {
        (Some((_, at)), Some(kind)) if at == addr => {
            if let Some(k) = st.fetch_kinds.iter_mut().find(|k| k.0 == kind || k.1 == 0) {
                *k = (kind, k.1 + 1);
            }
        }
        (Some((syndrome, at)), _) => st.wrong(
            i,
            format_args!("fetch from {addr:#x}: fault at {at:#x}, syndrome {syndrome:#x}"),
        ),
        (None, _) => st.wrong(i, format_args!("fetch from {addr:#x}: no fault")),
    }
}

/// From user mode (aarch64 EL0, riscv64 VU), with the MMU off: an 8-byte load or store at
/// an unclaimed address (exactly one fault, at the address, taken as a fault from user
/// mode) or in an interrupt controller window (a fault like that, or none).
fn user_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let unclaimed = rng.chance(70);
    let addr = if unclaimed {
        unclaimed_addr(rng, 8) & !7
    } else {
        let w = rng.pick(arch::windows());
        w.base + (rng.below(w.size) & !7)
    };
    let write = rng.chance(50);
    let Some((syndrome, at)) = arch::user_access(addr, write) else {
        return;
    };
    st.user += 1;
    let dir = if write { "write" } else { "read" };
    match arch::user_fault(syndrome) {
        Ok(Some(kind)) if at == addr => {
            if let Some(k) = st.user_kinds.iter_mut().find(|k| k.0 == kind || k.1 == 0) {
                *k = (kind, k.1 + 1);
            }
        }
        Ok(None) if !unclaimed => {}
        _ => st.wrong(
            i,
            format_args!(
                "8-byte {dir} at {addr:#x} from user mode: syndrome {syndrome:#x}, address {at:#x}"
            ),
        ),
    }
}

/// With the MMU on, an access whose translation table walk reads where there is no memory
/// (a table at an unclaimed address or in a device window): exactly one fault, at the
/// address accessed; never the device's register as data.
fn walk_op(i: u64, rng: &mut Rng, st: &mut Stats) {
    let Some(va) = arch::walk_target(rng) else {
        return;
    };
    let width = rng.pick(&[1, 2, 4, 8]);
    let write = rng.chance(50);
    let value = rng.value();
    // SAFETY: the translation of `va` cannot complete (its table is not memory): nothing
    // is read or written, the access faults and is skipped.
    let (got, faults) = guarded(|| unsafe { access(va, width, write, value) });
    st.walks += 1;
    let fault_at = last_fault_addr();
    if faults != 1 || (last_fault_has_address() && fault_at != va) {
        let dir = if write { "write" } else { "read" };
        st.wrong(
            i,
            format_args!(
                "{width}-byte {dir} at {va:#x} through a table without memory: {faults} faults (at {fault_at:#x}), read {got:#x}"
            ),
        );
    }
}

#[no_mangle]
fn main() {
    arch::mask_interrupts();
    set_data_fault_handler(Some(on_fault));
    set_undefined_handler(Some(on_undefined));
    let setup = arch::setup();
    grt::println!(
        "chaos: seed {SEED:#x}, {OPS} operations, {} on {}",
        setup,
        grt::ARCH
    );
    let mut rng = Rng::new(SEED);
    let mut st = Stats::default();
    let start = grt::irq::timer_now();
    for i in 0..OPS {
        arch::phase(i, OPS);
        let op = rng.below(100);
        if TRACE {
            grt::println!("chaos: op {i}: {op}");
        }
        match op {
            0..18 => {
                let w = rng.pick(arch::windows());
                mmio_op(i, &mut rng, &mut st, &w, false);
            }
            18..36 => {
                let w = rng.pick(arch::windows());
                mmio_op(i, &mut rng, &mut st, &w, true);
            }
            36..43 => mmio_op(i, &mut rng, &mut st, &arch::UART, false),
            43..53 => unclaimed_op(i, &mut rng, &mut st),
            53..55 => user_op(i, &mut rng, &mut st),
            55..66 => hypercall_op(i, &mut rng, &mut st),
            66..77 => {
                st.firmware += 1;
                arch::firmware_op(i, &mut rng, &mut st);
            }
            77..85 => odd_op(i, &mut rng, &mut st),
            85..92 => arch::extra_op(i, &mut rng, &mut st),
            92..96 => roundtrip_op(i, &mut rng, &mut st),
            96..98 => fetch_op(i, &mut rng, &mut st),
            _ => walk_op(i, &mut rng, &mut st),
        }
        if (i + 1) % 5000 == 0 {
            grt::println!("chaos: {} of {OPS} operations", i + 1);
        }
    }
    let ms = (grt::irq::timer_now() - start) * 1000 / grt::irq::timer_freq();
    // The virtio phase still needs the fault handlers (its refused accesses fault).
    let mut c = Checker::new("chaos");
    if let Some(base) = arch::VIRTIO {
        virtq::run(&mut c, base);
    }
    arch::finish();
    set_undefined_handler(None);
    set_data_fault_handler(None);

    grt::println!(
        "chaos: {OPS} operations in {ms} ms: {} interrupt-controller reads, {} writes ({} faulted), {} uart reads",
        st.mmio_reads,
        st.mmio_writes,
        st.mmio_faults,
        st.uart_reads
    );
    grt::println!(
        "chaos: {} unclaimed accesses, {} hypercalls, {} firmware calls, {} undecodable accesses ({} faulted), {} {} ({} faulted)",
        st.unclaimed,
        st.hypercalls,
        st.firmware,
        st.odd,
        st.odd_faults,
        st.extra,
        arch::EXTRA_NAME,
        st.extra_faults
    );
    grt::print!(
        "chaos: {} register write/read-back checks, {} accesses through a table without memory, {} instruction fetches from addresses without memory:",
        st.roundtrips,
        st.walks,
        st.fetches,
    );
    for (kind, n) in st.fetch_kinds.iter().filter(|k| k.1 > 0) {
        grt::print!(" {kind}: {n};");
    }
    grt::println!();
    grt::print!("chaos: {} accesses from user mode:", st.user);
    for (kind, n) in st.user_kinds.iter().filter(|k| k.1 > 0) {
        grt::print!(" {kind}: {n};");
    }
    grt::println!();
    grt::println!(
        "chaos: faults: {} data faults ({} injected by the hypervisor, {} raised by the CPU), {} undefined instructions",
        FAULTS.load(Ordering::SeqCst),
        INJECTED.load(Ordering::SeqCst),
        CPU_RAISED.load(Ordering::SeqCst),
        UNDEFINED.load(Ordering::SeqCst)
    );

    c.eq("wrong outcomes", st.wrong, 0);
    c.ok(
        "unclaimed accesses were made",
        st.unclaimed > 0 && INJECTED.load(Ordering::SeqCst) > 0,
    );
    c.eq(
        "VERSION after the chaos",
        grt::hypercall(grt::hc::VERSION, [0; 6]),
        grt::hc::ABI_VERSION,
    );
    c.eq(
        "VM_ID after the chaos",
        grt::hypercall(grt::hc::VM_ID, [0; 6]),
        EXPECTED_VM_ID,
    );
    c.eq(
        "ADD after the chaos",
        grt::hypercall(grt::hc::ADD, [1, 2, 3, 4, 5, 6]),
        21,
    );
    c.eq(
        "RESET_COUNT after the chaos",
        grt::hypercall(grt::hc::RESET_COUNT, [0; 6]),
        0,
    );
    arch::final_checks(&mut c);
    c.finish();
    arch::end();
}
