//! Interrupt hardware of an x86_64 guest: the local APIC in x2APIC mode (its MSRs), or in
//! xAPIC mode (its register page at 0xFEE0_0000) after [`init_cpu_xapic`]: the TSC-deadline
//! timer, IPIs through the ICR, end of interrupt through the EOI register; and
//! device interrupts through an I/O APIC at the PC's address (0xFEC0_0000), routed to this
//! vCPU. Whether the hypervisor gives a VM these devices is its VM config's business: an
//! access it refuses is reported like any other unexpected exception.
//!
//! Vectors: [`TIMER_VECTOR`], [`IPI_VECTOR`], I/O APIC input `n` at
//! [`EXTERNAL_VECTOR_BASE`] + `n`, the spurious vector 0xFF.
//!
//! The functions re-exported by `crate::irq`; see there for what each does. The trap entry
//! (`x86_64.rs`) calls [`handle`] for every vector from 32 up.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::x86_64::{cpuid, read_msr, write_msr};
use crate::irq::{dispatch, Irq};
use crate::mmio;

/// The vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0x20;
/// The vector of IPIs between vCPUs.
pub const IPI_VECTOR: u8 = 0x21;
/// The vector of I/O APIC input 0; input `n` uses this + `n`.
pub const EXTERNAL_VECTOR_BASE: u8 = 0x30;
/// I/O APIC inputs grt routes (a PC I/O APIC has 24).
const IOAPIC_INPUTS: u32 = 24;
/// The spurious-interrupt vector (never acknowledged with an EOI).
const SPURIOUS_VECTOR: u8 = 0xff;

/// IA32_APIC_BASE and its enable bits: xAPIC global enable, x2APIC mode.
const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
/// x2APIC MSRs: EOI, spurious-interrupt vector, interrupt command, LVT timer.
const X2APIC_EOI: u32 = 0x80b;
const X2APIC_SVR: u32 = 0x80f;
const X2APIC_ICR: u32 = 0x830;
const X2APIC_LVT_TIMER: u32 = 0x832;
/// The xAPIC register page and the offsets of its EOI, spurious-interrupt vector, ICR (low
/// and high) and LVT timer registers.
const XAPIC_BASE: usize = 0xfee0_0000;
const XAPIC_EOI: usize = 0xb0;
const XAPIC_SVR: usize = 0xf0;
const XAPIC_ICR_LOW: usize = 0x300;
const XAPIC_ICR_HIGH: usize = 0x310;
const XAPIC_LVT_TIMER: usize = 0x320;
/// The local APICs run in xAPIC mode ([`init_cpu_xapic`]), not x2APIC.
static XAPIC: AtomicBool = AtomicBool::new(false);
/// SVR: APIC software enable.
const SVR_ENABLE: u64 = 1 << 8;
/// LVT timer: TSC-deadline mode.
const LVT_TSC_DEADLINE: u64 = 2 << 17;
/// IA32_TSC_DEADLINE: the timer fires when the TSC reaches it; 0 stops it.
const IA32_TSC_DEADLINE: u32 = 0x6e0;
/// The one-shot timer's initial-count and divide-configuration registers (x2APIC MSR, xAPIC
/// offset), and the divide configuration "by 1".
const X2APIC_TIMER_INITIAL: u32 = 0x838;
const X2APIC_TIMER_DIVIDE: u32 = 0x83e;
const XAPIC_TIMER_INITIAL: usize = 0x380;
const XAPIC_TIMER_DIVIDE: usize = 0x3e0;
const TIMER_DIVIDE_BY_1: u32 = 0b1011;
/// The local APIC has no TSC-deadline mode (CPUID leaf 1 ECX bit 24 clear, as on QEMU TCG,
/// the bare baseline of `cargo xtask bench`): the timer runs in one-shot mode instead, its
/// count taken as TSC ticks, which holds on QEMU (both count nanoseconds).
static ONE_SHOT: AtomicBool = AtomicBool::new(false);

/// The I/O APIC: register select and window.
const IOAPIC_BASE: usize = 0xfec0_0000;
const IOAPIC_WINDOW: usize = IOAPIC_BASE + 0x10;
/// Redirection table entry `n`: registers 0x10 + 2n (low) and 0x11 + 2n (high).
const IOAPIC_REDIRECTION: u32 = 0x10;
/// Redirection entry: masked.
const IOAPIC_MASKED: u32 = 1 << 16;

/// Sets up this vCPU: the local APIC enabled in x2APIC mode (in xAPIC mode, as
/// [`init_cpu_xapic`] does, on a CPU without x2APIC) with its spurious vector, the
/// timer in TSC-deadline mode and stopped. Interrupts stay as they were ([`enable`]
/// unmasks them).
pub fn init_cpu() {
    if !has_x2apic() {
        init_cpu_xapic();
        return;
    }
    set_timer_mode();
    let base = read_msr(IA32_APIC_BASE);
    write_msr(IA32_APIC_BASE, base | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
    write_msr(X2APIC_SVR, SVR_ENABLE | u64::from(SPURIOUS_VECTOR));
    timer_stop();
    if ONE_SHOT.load(Ordering::SeqCst) {
        write_msr(X2APIC_TIMER_DIVIDE, u64::from(TIMER_DIVIDE_BY_1));
    }
    write_msr(X2APIC_LVT_TIMER, lvt_timer_mode() | u64::from(TIMER_VECTOR));
}

/// Sets [`ONE_SHOT`] from CPUID (leaf 1 ECX bit 24, TSC-deadline).
fn set_timer_mode() {
    ONE_SHOT.store(cpuid(1, 0)[2] & (1 << 24) == 0, Ordering::SeqCst);
}

/// The LVT timer's mode bits: TSC-deadline, or one-shot (0) without it ([`ONE_SHOT`]).
fn lvt_timer_mode() -> u64 {
    if ONE_SHOT.load(Ordering::SeqCst) {
        0
    } else {
        LVT_TSC_DEADLINE
    }
}

/// Whether the CPU has x2APIC mode (CPUID leaf 1 ECX bit 21). axvisor's virtual local APIC
/// has; QEMU TCG's (the bare baseline of `cargo xtask bench`) has not.
fn has_x2apic() -> bool {
    cpuid(1, 0)[2] & (1 << 21) != 0
}

/// Sets up this vCPU like [`init_cpu`] but leaves its local APIC in xAPIC mode, reached
/// through its register page ([`xapic_read`], [`xapic_write`]); grt's EOIs and IPIs then
/// go there too (for every vCPU of the guest).
pub fn init_cpu_xapic() {
    XAPIC.store(true, Ordering::SeqCst);
    set_timer_mode();
    let base = read_msr(IA32_APIC_BASE);
    write_msr(
        IA32_APIC_BASE,
        (base | APIC_BASE_ENABLE) & !APIC_BASE_X2APIC,
    );
    xapic_write(XAPIC_SVR, (SVR_ENABLE | u64::from(SPURIOUS_VECTOR)) as u32);
    timer_stop();
    if ONE_SHOT.load(Ordering::SeqCst) {
        xapic_write(XAPIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    }
    xapic_write(
        XAPIC_LVT_TIMER,
        (lvt_timer_mode() | u64::from(TIMER_VECTOR)) as u32,
    );
}

/// Reads the xAPIC register at `offset` in the local APIC's page.
pub fn xapic_read(offset: usize) -> u32 {
    // SAFETY: the local APIC's register page (the VM's, at the architectural address): an
    // aligned 32-bit register read.
    unsafe { mmio::read32(XAPIC_BASE + (offset & 0xff0)) }
}

/// Writes the xAPIC register at `offset` in the local APIC's page.
pub fn xapic_write(offset: usize, value: u32) {
    // SAFETY: as in `xapic_read`, a write.
    unsafe { mmio::write32(XAPIC_BASE + (offset & 0xff0), value) }
}

/// Unmasks interrupts on this vCPU (`sti`). The instruction after `sti` runs before any
/// interrupt (the STI shadow): a `nop`, so that one already pending is taken before this
/// returns, as on the other architectures.
pub fn enable() {
    // SAFETY: sets RFLAGS.IF. Compiler barrier (no `nomem`): memory accesses are not moved
    // across the point where handlers may start running.
    unsafe { asm!("sti", "nop", options(nostack)) };
}

/// Masks interrupts on this vCPU (`cli`).
pub fn disable() {
    // SAFETY: clears RFLAGS.IF; a compiler barrier as in `enable`.
    unsafe { asm!("cli", options(nostack)) };
}

/// The timer's counter: the TSC.
#[inline(always)]
pub fn timer_now() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` only reads the time-stamp counter.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The TSC frequency, once known (0: not asked yet).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// The TSC frequency assumed when the CPU and the hypervisor name none.
const DEFAULT_TSC_HZ: u64 = 1_000_000_000;

/// The timer's (the TSC's) frequency in Hz: the hypervisor's timing leaf (CPUID
/// 0x4000_0010 EAX, in kHz) when it has one, else CPUID 0x15 (crystal ratio), else 0x16
/// (base MHz), else [`DEFAULT_TSC_HZ`]. Asked once.
pub fn timer_freq() -> u64 {
    match TSC_HZ.load(Ordering::Relaxed) {
        0 => {
            let hz = tsc_hz_from_cpuid();
            TSC_HZ.store(hz, Ordering::Relaxed);
            hz
        }
        hz => hz,
    }
}

fn tsc_hz_from_cpuid() -> u64 {
    const HYPERVISOR_LEAF: u32 = 0x4000_0000;
    const TIMING_LEAF: u32 = 0x4000_0010;
    if cpuid(HYPERVISOR_LEAF, 0)[0] >= TIMING_LEAF {
        let khz = u64::from(cpuid(TIMING_LEAF, 0)[0]);
        if khz != 0 {
            return khz * 1000;
        }
    }
    let max = cpuid(0, 0)[0];
    if max >= 0x15 {
        let [den, num, crystal, _] = cpuid(0x15, 0).map(u64::from);
        if den != 0 && num != 0 && crystal != 0 {
            return crystal * num / den;
        }
    }
    if max >= 0x16 {
        let mhz = u64::from(cpuid(0x16, 0)[0] & 0xffff);
        if mhz != 0 {
            return mhz * 1_000_000;
        }
    }
    DEFAULT_TSC_HZ
}

/// Arms the one-shot timer for TSC = `deadline` (IA32_TSC_DEADLINE; 0 would stop it, so it
/// becomes 1, a deadline long past); in one-shot mode ([`ONE_SHOT`]) the initial count is
/// the ticks left until it (at least 1, at most `u32::MAX`).
pub fn timer_set(deadline: u64) {
    if ONE_SHOT.load(Ordering::SeqCst) {
        let left = deadline
            .saturating_sub(timer_now())
            .clamp(1, u64::from(u32::MAX));
        timer_initial_count(left as u32);
    } else {
        write_msr(IA32_TSC_DEADLINE, deadline.max(1));
    }
}

/// Stops the timer (IA32_TSC_DEADLINE = 0, or an initial count of 0).
pub fn timer_stop() {
    if ONE_SHOT.load(Ordering::SeqCst) {
        timer_initial_count(0);
    } else {
        write_msr(IA32_TSC_DEADLINE, 0);
    }
}

/// Writes the one-shot timer's initial count (0 stops it).
fn timer_initial_count(count: u32) {
    if XAPIC.load(Ordering::SeqCst) {
        xapic_write(XAPIC_TIMER_INITIAL, count);
    } else {
        write_msr(X2APIC_TIMER_INITIAL, u64::from(count));
    }
}

/// Sends [`IPI_VECTOR`] to vCPU `cpu` (x2APIC ID `cpu`): fixed delivery, physical
/// destination.
pub fn send_ipi(cpu: usize) {
    if XAPIC.load(Ordering::SeqCst) {
        xapic_write(XAPIC_ICR_HIGH, (cpu as u32) << 24);
        xapic_write(XAPIC_ICR_LOW, u32::from(IPI_VECTOR));
    } else {
        write_msr(X2APIC_ICR, ((cpu as u64) << 32) | u64::from(IPI_VECTOR));
    }
}

/// Writes I/O APIC register `reg`.
fn ioapic_write(reg: u32, value: u32) {
    // SAFETY: the VM's I/O APIC: 32-bit register select and window, aligned.
    unsafe {
        mmio::write32(IOAPIC_BASE, reg);
        mmio::write32(IOAPIC_WINDOW, value);
    }
}

/// Routes I/O APIC input `n` (below 24) to this vCPU at [`EXTERNAL_VECTOR_BASE`] + `n`,
/// edge-triggered, active high, unmasked.
pub fn external_enable(n: u32) {
    if n >= IOAPIC_INPUTS {
        return;
    }
    let cpu = crate::cpu_id() as u32;
    ioapic_write(IOAPIC_REDIRECTION + 2 * n + 1, cpu << 24);
    ioapic_write(
        IOAPIC_REDIRECTION + 2 * n,
        u32::from(EXTERNAL_VECTOR_BASE) + n,
    );
}

/// Masks I/O APIC input `n`.
pub fn external_disable(n: u32) {
    if n >= IOAPIC_INPUTS {
        return;
    }
    ioapic_write(
        IOAPIC_REDIRECTION + 2 * n,
        IOAPIC_MASKED | (u32::from(EXTERNAL_VECTOR_BASE) + n),
    );
}

/// Handles interrupt `vector` (32 and up) for the trap entry: calls the guest's handler
/// with what it was and ends it (EOI). Returns `false` for a vector grt does not use.
pub(crate) fn handle(vector: u8) -> bool {
    let irq = match vector {
        TIMER_VECTOR => {
            // One-shot: stopped before the handler, which re-arms it if it wants more.
            timer_stop();
            Irq::Timer
        }
        IPI_VECTOR => Irq::Ipi,
        SPURIOUS_VECTOR => return true,
        v if (EXTERNAL_VECTOR_BASE..EXTERNAL_VECTOR_BASE + IOAPIC_INPUTS as u8).contains(&v) => {
            Irq::External(u32::from(v - EXTERNAL_VECTOR_BASE))
        }
        _ => return false,
    };
    dispatch(irq);
    if XAPIC.load(Ordering::SeqCst) {
        xapic_write(XAPIC_EOI, 0);
    } else {
        write_msr(X2APIC_EOI, 0);
    }
    true
}
