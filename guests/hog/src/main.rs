//! A guest that keeps its vCPU busy without ever taking an interrupt: for [`RUN_MS`] it
//! reads its counter and notes the longest time between two reads, which is the longest
//! time its vCPU was not running. It alternates phases of [`PHASE_MS`]: in one it only
//! computes (it never leaves the VM), in the next it also reads its UART's status register
//! on every step (it leaves the VM all the time, but only for MMIO, which the hypervisor
//! answers and re-enters the guest).
//!
//! Two such VMs pinned to one CPU must share it: each must be stalled at most
//! [`MAX_STALL_MS`] at a time. The hypervisor gives a vCPU a time slice while another waits
//! for its CPU; without one, the hog that runs first would keep the CPU for its whole run.
//! The MMIO phases check that the slice's end is not lost when its timer interrupt arrives
//! while the hypervisor is handling an exit. Prints a heartbeat with the longest stall so
//! far every [`HEARTBEAT_MS`], then the longest stall and `PASS hog`.
//!
//! On aarch64 and riscv64 it also marks registers the hypervisor does not trap, which must
//! therefore be switched with the vCPU ([`own`]), with a value of its VM's own, and checks
//! on every step that it still reads them: the other hog on the same CPU writes its own
//! value.
#![no_std]
#![no_main]

use grt::check::Checker;
use grt::irq;

/// How long the guest computes, in milliseconds of its counter (`HOG_MS` in the build's
/// environment changes it: `cargo xtask soak` runs it beside a long chaos run).
const RUN_MS: u64 = match option_env!("HOG_MS") {
    Some(ms) => match u64::from_str_radix(ms, 10) {
        Ok(ms) => ms,
        Err(_) => panic!("HOG_MS: not a decimal number"),
    },
    None => 1500,
};
/// How often it says it is alive, with the longest stall so far.
const HEARTBEAT_MS: u64 = 1000;
/// How long each phase (compute only, compute and MMIO) lasts, in milliseconds.
const PHASE_MS: u64 = 100;
/// The longest stall that still counts as sharing the CPU: far more than a time slice
/// (the emulator's vCPU threads compete for a loaded host), far less than a run.
const MAX_STALL_MS: u64 = 500;

#[no_mangle]
fn main() {
    let mut c = Checker::new("hog");
    let hz = irq::timer_freq();
    let ms = |t: u64| t * 1000 / hz;
    grt::println!("hog: computing for {RUN_MS} ms, every other {PHASE_MS} ms with MMIO reads");
    let start = irq::timer_now();
    let end = start + RUN_MS * hz / 1000;
    let phase = PHASE_MS * hz / 1000;
    let (mut last, mut worst, mut reads) = (start, 0, 0u64);
    let heartbeat = HEARTBEAT_MS * hz / 1000;
    let (mut beats, mut next_beat) = (0u64, start + heartbeat);
    let tag = grt::hypercall(grt::hc::VM_ID, [0; 6]);
    own::mark(tag);
    let mut foreign = 0u64;
    loop {
        if !own::holds(tag) {
            foreign += 1;
            own::mark(tag);
        }
        let now = irq::timer_now();
        worst = worst.max(now - last);
        last = now;
        if now >= end {
            break;
        }
        if now >= next_beat {
            beats += 1;
            next_beat += heartbeat;
            grt::println!(
                "hog: heartbeat {beats}, longest stall so far {} ms",
                ms(worst)
            );
        }
        if (now - start) / phase % 2 == 1 {
            let _ = grt::console::status();
            reads += 1;
        }
    }
    grt::println!("hog: longest stall {} ms ({reads} MMIO reads)", ms(worst));
    c.ok(format_args!("made MMIO reads"), reads > 0);
    if own::MARKS {
        c.ok(
            format_args!(
                "its untrapped registers never held another VM's values ({foreign} times)"
            ),
            foreign == 0,
        );
    }
    c.ok(
        format_args!("stalled at most {MAX_STALL_MS} ms at a time"),
        ms(worst) <= MAX_STALL_MS,
    );
    c.finish();
}

/// Registers of the guest's own that no exit touches (aarch64: MDSCR_EL1's TDCC or KDE bit,
/// harmless with MDE and SS clear, the EL1 physical timer's compare value, with the timer
/// disabled, and the value registers of breakpoint 0 and watchpoint 0, both disabled),
/// marked with values that depend on the VM.
#[cfg(target_arch = "aarch64")]
mod own {
    /// Whether this architecture marks any.
    pub const MARKS: bool = true;

    /// MDSCR_EL1, CNTP_CVAL_EL0 and DBGBVR0/DBGWVR0 for `tag` (an address with bits 1:0
    /// clear and bits 63:49 copies of bit 48, which the debug value registers keep).
    fn values(tag: u64) -> (u64, u64, u64) {
        let mdscr = if tag & 1 == 0 { 1 << 12 } else { 1 << 13 };
        (mdscr, 0x5a5a_0000_0000_0000 | tag, 0x4000_0000 | (tag << 4))
    }

    /// Writes the values of `tag`.
    pub fn mark(tag: u64) {
        let (mdscr, cval, addr) = values(tag);
        // SAFETY: MDSCR_EL1.TDCC or KDE with MDE and SS clear (no debug event can happen);
        // the EL1 physical timer's compare value while its control register is 0 (off);
        // breakpoint 0's and watchpoint 0's addresses with their control registers 0
        // (disabled; every CPU has at least two of each).
        unsafe {
            core::arch::asm!(
                "msr mdscr_el1, {m}",
                "msr cntp_ctl_el0, xzr",
                "msr cntp_cval_el0, {c}",
                "msr dbgbcr0_el1, xzr",
                "msr dbgbvr0_el1, {a}",
                "msr dbgwcr0_el1, xzr",
                "msr dbgwvr0_el1, {a}",
                "isb",
                m = in(reg) mdscr,
                c = in(reg) cval,
                a = in(reg) addr,
                options(nomem, nostack),
            )
        };
    }

    /// Whether the registers hold the values of `tag`.
    pub fn holds(tag: u64) -> bool {
        let (m, c, b, w): (u64, u64, u64, u64);
        // SAFETY: reads four EL1 registers.
        unsafe {
            core::arch::asm!(
                "mrs {m}, mdscr_el1",
                "mrs {c}, cntp_cval_el0",
                "mrs {b}, dbgbvr0_el1",
                "mrs {w}, dbgwvr0_el1",
                m = out(reg) m,
                c = out(reg) c,
                b = out(reg) b,
                w = out(reg) w,
                options(nomem, nostack),
            )
        };
        let (mdscr, cval, addr) = values(tag);
        (m, c, b, w) == (mdscr, cval, addr, addr)
    }
}

/// Registers of the guest's own that no exit touches (riscv64: `scounteren` and `senvcfg`,
/// which VS mode reaches directly: the H extension has no VS copies of them), marked with
/// a value that depends on the VM. Neither affects VS mode itself (the hog runs no VU code).
#[cfg(target_arch = "riscv64")]
mod own {
    /// Whether this architecture marks any.
    pub const MARKS: bool = true;

    fn values(tag: u64) -> (u64, u64) {
        // scounteren CY, TM, IR (VU's counters); senvcfg FIOM.
        if tag & 1 == 0 {
            (0b101, 1)
        } else {
            (0b010, 0)
        }
    }

    /// Writes the values of `tag`.
    pub fn mark(tag: u64) {
        let (counteren, envcfg) = values(tag);
        // SAFETY: VU-mode counter enables and VU's fence semantics; the guest runs nothing
        // in VU mode.
        unsafe {
            core::arch::asm!(
                "csrw scounteren, {c}",
                "csrw 0x10a, {e}",
                c = in(reg) counteren,
                e = in(reg) envcfg,
                options(nomem, nostack),
            )
        };
    }

    /// Whether the registers hold the values of `tag`.
    pub fn holds(tag: u64) -> bool {
        let (c, e): (u64, u64);
        // SAFETY: reads two supervisor CSRs.
        unsafe {
            core::arch::asm!(
                "csrr {c}, scounteren",
                "csrr {e}, 0x10a",
                c = out(reg) c,
                e = out(reg) e,
                options(nomem, nostack),
            )
        };
        (c & 0b111, e & 1) == values(tag)
    }
}

/// Nothing to mark on this architecture.
#[cfg(not(any(target_arch = "aarch64", target_arch = "riscv64")))]
mod own {
    /// Whether this architecture marks any.
    pub const MARKS: bool = false;
    /// Does nothing.
    pub fn mark(_tag: u64) {}
    /// Always true.
    pub fn holds(_tag: u64) -> bool {
        true
    }
}
