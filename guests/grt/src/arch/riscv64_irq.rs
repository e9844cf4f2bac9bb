//! Interrupt hardware of a riscv64 guest: the supervisor timer (SBI TIME `set_timer`, which
//! the hypervisor turns into `vstimecmp`), software interrupts between harts (SBI IPI), and
//! device interrupts from the VM's PLIC (at `0x0c00_0000` as on QEMU `virt`, one context per
//! hart: context `h` is hart `h`'s supervisor external interrupt, see docs/vplic.md).
//!
//! The functions re-exported by `crate::irq`; see there for what each does. The trap entry
//! (`riscv64.rs`) calls [`handle`] for every interrupt.

use core::arch::asm;

use crate::irq::{dispatch, Irq};
use crate::mmio;

/// PLIC base address (QEMU `virt` layout, which the VM configs use).
const PLIC_BASE: usize = 0x0c00_0000;
/// Source priorities: 4 bytes per source.
const PLIC_PRIORITY: usize = PLIC_BASE;
/// Context `c`'s enable bits: 0x80 bytes per context, one bit per source.
const PLIC_ENABLE: usize = PLIC_BASE + 0x2000;
const PLIC_ENABLE_STRIDE: usize = 0x80;
/// Context `c`'s threshold, then claim/complete: 0x1000 bytes per context.
const PLIC_CONTEXT: usize = PLIC_BASE + 0x20_0000;
const PLIC_CONTEXT_STRIDE: usize = 0x1000;
const PLIC_CLAIM: usize = 4;
/// The highest source id the PLIC layout has room for.
const PLIC_MAX_SOURCE: u32 = 1023;

/// `sie` / `sip` bits: supervisor software, timer and external interrupts.
const SSIE: u64 = 1 << 1;
const STIE: u64 = 1 << 5;
const SEIE: u64 = 1 << 9;
/// `sstatus.SIE`.
const SSTATUS_SIE: u64 = 1 << 1;

/// Interrupt cause codes (`scause` without the interrupt bit).
const CAUSE_SOFTWARE: u64 = 1;
const CAUSE_TIMER: u64 = 5;
const CAUSE_EXTERNAL: u64 = 9;

/// SBI TIME and IPI extensions.
const SBI_EXT_TIME: u64 = 0x5449_4D45;
const SBI_EXT_IPI: u64 = 0x73_5049;

/// The `time` counter's frequency: QEMU `virt`'s timebase (10 MHz), which the hypervisor
/// passes through (`htimedelta` = 0).
const TIMEBASE_HZ: u64 = 10_000_000;

/// This hart's PLIC context.
fn context() -> usize {
    crate::cpu_id()
}

/// Sets up this vCPU: timer stopped, PLIC threshold 0 (every priority above 0 interrupts),
/// a stale software interrupt cleared, and the three interrupts enabled in `sie`.
/// `sstatus.SIE` stays as it was ([`enable`] sets it).
pub fn init_cpu() {
    timer_stop();
    // SAFETY: this hart's threshold register in the VM's PLIC (32-bit, aligned).
    unsafe { mmio::write32(PLIC_CONTEXT + context() * PLIC_CONTEXT_STRIDE, 0) };
    // SAFETY: clears this hart's pending software interrupt and enables its supervisor
    // interrupts; no memory is touched.
    unsafe {
        asm!(
            "csrc sip, {ssip}",
            "csrs sie, {enable}",
            ssip = in(reg) SSIE,
            enable = in(reg) SSIE | STIE | SEIE,
            options(nomem, nostack),
        )
    };
}

/// Unmasks interrupts on this vCPU (`sstatus.SIE`).
pub fn enable() {
    // SAFETY: sets sstatus.SIE. Compiler barrier (no `nomem`): memory accesses are not
    // moved across the point where handlers may start running.
    unsafe { asm!("csrs sstatus, {}", in(reg) SSTATUS_SIE, options(nostack)) };
}

/// Masks interrupts on this vCPU (`sstatus.SIE`).
pub fn disable() {
    // SAFETY: clears sstatus.SIE; a compiler barrier as in `enable`.
    unsafe { asm!("csrc sstatus, {}", in(reg) SSTATUS_SIE, options(nostack)) };
}

/// The timer's counter (`time`).
pub fn timer_now() -> u64 {
    let t: u64;
    // SAFETY: reads the time counter (hcounteren.TM lets the guest).
    unsafe { asm!("rdtime {}", out(reg) t, options(nomem, nostack)) };
    t
}

/// The timer's frequency in Hz.
pub fn timer_freq() -> u64 {
    TIMEBASE_HZ
}

/// Arms the one-shot timer for `time` = `deadline` (SBI `set_timer`; also clears a pending
/// timer interrupt whose deadline the new one has not reached).
pub fn timer_set(deadline: u64) {
    super::riscv64::sbi_call(SBI_EXT_TIME, 0, [deadline, 0, 0, 0, 0, 0]);
}

/// Stops the timer (and clears a pending timer interrupt): a deadline that never comes.
pub fn timer_stop() {
    timer_set(u64::MAX);
}

/// Sends a software interrupt to hart `cpu` (SBI `send_ipi` with mask 1 at base `cpu`).
pub fn send_ipi(cpu: usize) {
    super::riscv64::sbi_call(SBI_EXT_IPI, 0, [1, cpu as u64, 0, 0, 0, 0]);
}

/// Where source `n`'s enable bit for this hart's context is: (word address, bit).
fn enable_bit(n: u32) -> (usize, u32) {
    let word = PLIC_ENABLE + context() * PLIC_ENABLE_STRIDE + (n / 32) as usize * 4;
    (word, 1 << (n % 32))
}

/// Enables PLIC source `n` (1..=1023) for this hart, with priority 1.
pub fn external_enable(n: u32) {
    if n == 0 || n > PLIC_MAX_SOURCE {
        return;
    }
    let (word, bit) = enable_bit(n);
    // SAFETY: 32-bit aligned registers of the VM's PLIC: the source's priority and this
    // hart's enable word (only this hart changes it).
    unsafe {
        mmio::write32(PLIC_PRIORITY + n as usize * 4, 1);
        mmio::write32(word, mmio::read32(word) | bit);
    }
}

/// Disables PLIC source `n` for this hart.
pub fn external_disable(n: u32) {
    if n == 0 || n > PLIC_MAX_SOURCE {
        return;
    }
    let (word, bit) = enable_bit(n);
    // SAFETY: as in `external_enable`.
    unsafe { mmio::write32(word, mmio::read32(word) & !bit) };
}

/// Handles interrupt `code` (`scause` without the interrupt bit) for the trap entry:
/// acknowledges it, calls the guest's handler and, for a device interrupt, completes it.
/// Returns `false` for a code that is not one of the supervisor interrupts.
pub(crate) fn handle(code: u64) -> bool {
    match code {
        CAUSE_SOFTWARE => {
            // SAFETY: clears this hart's pending software interrupt (sip.SSIP).
            unsafe { asm!("csrc sip, {}", in(reg) SSIE, options(nomem, nostack)) };
            dispatch(Irq::Ipi);
        }
        CAUSE_TIMER => {
            // One-shot: stopped before the handler, which re-arms it if it wants more.
            timer_stop();
            dispatch(Irq::Timer);
        }
        CAUSE_EXTERNAL => {
            let claim = PLIC_CONTEXT + context() * PLIC_CONTEXT_STRIDE + PLIC_CLAIM;
            loop {
                // SAFETY: this hart's claim/complete register (32-bit, aligned).
                let id = unsafe { mmio::read32(claim) };
                if id == 0 {
                    break;
                }
                dispatch(Irq::External(id));
                // SAFETY: as above; writing the claimed id completes it.
                unsafe { mmio::write32(claim, id) };
            }
        }
        _ => return false,
    }
    true
}
