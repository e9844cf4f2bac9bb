//! The local APIC: x2APIC mode (MSRs) when CPUID has it, else xAPIC (MMIO); its timer in
//! TSC-deadline mode when CPUID has it, else one-shot mode at a rate calibrated against the
//! PIT; IPIs, INIT and SIPI.

use super::regs::{self, inb, outb, rdmsr, rdtsc, wrmsr, MSR_APIC_BASE, MSR_TSC_DEADLINE};
use super::trap::{SPURIOUS_VECTOR, TIMER_VECTOR};
use crate::mmio;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Register offsets (xAPIC MMIO offset; the x2APIC MSR is 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_LINT0: u32 = 0x350;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;

const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TSC_DEADLINE: u32 = 2 << 17;
/// Divide configuration 0b1011: divide by 1.
const DIVIDE_BY_1: u32 = 0xb;
const ICR_PENDING: u32 = 1 << 12;
const ICR_INIT: u32 = 5 << 8;
const ICR_STARTUP: u32 = 6 << 8;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;

static X2APIC: AtomicBool = AtomicBool::new(false);
static TSC_DEADLINE: AtomicBool = AtomicBool::new(false);
/// The xAPIC register window (identity-mapped, uncached).
static XAPIC_BASE: AtomicUsize = AtomicUsize::new(0xfee0_0000);
/// TSC ticks per second.
static TSC_HZ: AtomicU64 = AtomicU64::new(1_000_000_000);
/// APIC timer ticks (at divide-by-1) per second.
static TIMER_HZ: AtomicU64 = AtomicU64::new(1_000_000_000);

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        rdmsr(0x800 + reg / 16) as u32
    } else {
        mmio::read32(XAPIC_BASE.load(Ordering::Relaxed) + reg as usize)
    }
}

fn write(reg: u32, v: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        wrmsr(0x800 + reg / 16, u64::from(v))
    } else {
        mmio::write32(XAPIC_BASE.load(Ordering::Relaxed) + reg as usize, v)
    }
}

/// Whether the local APICs run in x2APIC mode.
pub fn is_x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

/// Whether the timer runs in TSC-deadline mode.
pub fn is_tsc_deadline() -> bool {
    TSC_DEADLINE.load(Ordering::Relaxed)
}

/// Chooses the modes from the boot CPU's features and calibrates the TSC and the APIC timer
/// against the PIT (boot CPU, once, before `init_cpu`).
pub fn init(features: &regs::Features, xapic_base: usize) {
    X2APIC.store(features.x2apic, Ordering::Relaxed);
    TSC_DEADLINE.store(features.tsc_deadline, Ordering::Relaxed);
    XAPIC_BASE.store(xapic_base, Ordering::Relaxed);
    enable();
    write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    let (tsc_hz, timer_hz) = calibrate();
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    TIMER_HZ.store(timer_hz, Ordering::Relaxed);
}

/// Turns this CPU's local APIC on in the chosen mode.
fn enable() {
    let base = rdmsr(MSR_APIC_BASE);
    let mode = if is_x2apic() {
        APIC_BASE_ENABLE | APIC_BASE_X2APIC
    } else {
        APIC_BASE_ENABLE
    };
    // xAPIC -> x2APIC must go through the enabled xAPIC state, which the firmware left.
    wrmsr(MSR_APIC_BASE, base | APIC_BASE_ENABLE);
    wrmsr(MSR_APIC_BASE, base | mode);
}

/// Per-CPU set-up: APIC on, spurious vector, LINT0 and errors masked, timer stopped.
pub fn init_cpu() {
    enable();
    write(REG_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(REG_TPR, 0);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_ERROR, LVT_MASKED);
    write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
    let mode = if is_tsc_deadline() {
        LVT_TSC_DEADLINE
    } else {
        0
    };
    write(REG_LVT_TIMER, mode | u32::from(TIMER_VECTOR));
    set_deadline(u64::MAX);
    eoi();
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    if is_x2apic() {
        read(REG_ID)
    } else {
        read(REG_ID) >> 24
    }
}

/// End of interrupt.
pub fn eoi() {
    write(REG_EOI, 0)
}

/// TSC ticks per second.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// APIC timer ticks per second (0 if it could not be measured).
pub fn timer_hz() -> u64 {
    TIMER_HZ.load(Ordering::Relaxed)
}

/// Arms the timer for TSC value `tsc` (`u64::MAX`: disarmed). In one-shot mode the APIC
/// count is the distance converted to timer ticks, at most `u32::MAX` (the timer then fires
/// early; the handler re-arms it).
pub fn set_deadline(tsc: u64) {
    if is_tsc_deadline() {
        wrmsr(
            MSR_TSC_DEADLINE,
            if tsc == u64::MAX { 0 } else { tsc.max(1) },
        );
        return;
    }
    let count = if tsc == u64::MAX {
        0
    } else {
        let delta = u128::from(tsc.saturating_sub(rdtsc()));
        let ticks = delta * u128::from(timer_hz()) / u128::from(tsc_hz().max(1));
        ticks.clamp(1, u128::from(u32::MAX)) as u32
    };
    write(REG_TIMER_INIT, count);
}

fn send_icr(dest: u32, low: u32) {
    if is_x2apic() {
        // A WRMSR to an x2APIC register does not wait for earlier stores: fence them, so
        // that the woken CPU sees what it is woken for.
        // SAFETY: a memory fence has no other effect.
        unsafe { core::arch::asm!("mfence", "lfence", options(nostack, preserves_flags)) };
        wrmsr(0x830, u64::from(dest) << 32 | u64::from(low));
    } else {
        // Two register writes: an interrupt handler sending its own IPI in between would
        // change the destination of this one.
        let state = crate::irq::save_and_disable();
        write(REG_ICR_HIGH, dest << 24);
        write(REG_ICR_LOW, low);
        while read(REG_ICR_LOW) & ICR_PENDING != 0 {
            core::hint::spin_loop();
        }
        crate::irq::restore(state);
    }
}

/// Sends fixed-delivery vector `vector` to the CPU with APIC id `dest`.
pub fn send_ipi(dest: u32, vector: u8) {
    send_icr(dest, u32::from(vector));
}

/// Busy-waits `us` microseconds on the TSC.
pub fn delay_us(us: u64) {
    let end = rdtsc() + tsc_hz() / 1_000_000 * us;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Starts the CPU with APIC id `dest` at real-mode address `entry` (page-aligned, below
/// 1 MiB): INIT, 10 ms, then two STARTUP IPIs 200 µs apart.
pub fn start_ap(dest: u32, entry: usize) {
    send_icr(dest, ICR_INIT | ICR_LEVEL_ASSERT);
    delay_us(10_000);
    let vector = (entry >> 12) as u32 & 0xff;
    for _ in 0..2 {
        send_icr(dest, ICR_STARTUP | ICR_LEVEL_ASSERT | vector);
        delay_us(200);
    }
}

/// The PIT's input clock.
const PIT_HZ: u64 = 1_193_182;
/// The calibration interval: 10 ms of PIT channel 2.
const CALIBRATION_PIT_TICKS: u64 = PIT_HZ / 100;

/// Measures the TSC and the APIC timer (divide by 1) over 10 ms of PIT channel 2 (mode 0,
/// gate through port 0x61, its output read back there).
fn calibrate() -> (u64, u64) {
    let port61 = inb(0x61);
    outb(0x61, port61 & !0x03); // gate off, speaker off
    outb(0x43, 0xb0); // channel 2, lobyte/hibyte, mode 0, binary
    outb(0x42, CALIBRATION_PIT_TICKS as u8);
    outb(0x42, (CALIBRATION_PIT_TICKS >> 8) as u8);
    outb(0x61, (port61 & !0x02) | 0x01); // gate on: the count runs down
    write(REG_TIMER_INIT, u32::MAX);
    let tsc0 = rdtsc();
    let apic0 = read(REG_TIMER_CURRENT);
    let mut spins = 0u64;
    while inb(0x61) & 0x20 == 0 && spins < 100_000_000 {
        spins += 1;
        core::hint::spin_loop();
    }
    let apic1 = read(REG_TIMER_CURRENT);
    let tsc1 = rdtsc();
    write(REG_TIMER_INIT, 0);
    outb(0x61, port61);
    let scale = |d: u64| d * PIT_HZ / CALIBRATION_PIT_TICKS;
    let tsc_hz = scale(tsc1.wrapping_sub(tsc0)).max(1_000_000);
    let timer_hz = scale(u64::from(apic0.wrapping_sub(apic1)));
    (tsc_hz, timer_hz)
}
