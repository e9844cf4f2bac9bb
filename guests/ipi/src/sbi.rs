//! riscv64 only: the SBI side of IPIs and remote fences, called by vCPU 0 while vCPU 1
//! runs [`super::secondary`] (answering IPIs).
//!
//! - `send_ipi` with mask base -1 reaches every hart, the caller included;
//! - a mask naming a hart the VM does not have is refused (SBI_ERR_INVALID_PARAM) and
//!   delivers nothing;
//! - `remote_fence_i`, `remote_sfence_vma` and `remote_sfence_vma_asid` to vCPU 1 succeed
//!   both while it is halted and while it is busy in the guest (then the hypervisor must
//!   make it fence before the call returns); the hypervisor-extension fences are not
//!   supported;
//! - DBCN is announced, and `console_write` prints a line from guest memory (the scenario
//!   expects it), refusing memory that is not the guest's RAM.

use core::sync::atomic::Ordering;

use grt::check::Checker;

use super::{received, spin_until, ANSWER, SPIN};

const EXT_BASE: u64 = 0x10;
const EXT_IPI: u64 = 0x73_5049;
const EXT_RFENCE: u64 = 0x5246_4E43;
const EXT_DBCN: u64 = 0x4442_434E;
const SUCCESS: i64 = 0;
const ERR_NOT_SUPPORTED: i64 = -2;
const ERR_INVALID_PARAM: i64 = -3;
/// Rounds of the three remote fences, with vCPU 1 halted and then running.
const FENCE_ROUNDS: u64 = 50;

/// Microseconds in `t` counter ticks.
fn micros(t: u64) -> u64 {
    t * 1_000_000 / grt::irq::timer_freq()
}

/// An SBI call (`a7` = `eid`, `a6` = `fid`, `a0`..`a4` = `args`): (error, value).
fn call(eid: u64, fid: u64, [a0, a1, a2, a3, a4]: [u64; 5]) -> (i64, u64) {
    let (error, value) = grt::sbi_call(eid, fid, [a0, a1, a2, a3, a4, 0]);
    (error as i64, value)
}

/// Runs the checks; vCPU 1 is running and answers IPIs.
pub fn check(c: &mut Checker) {
    // Every hart: one IPI each (vCPU 1 does not answer meanwhile, so nothing can coalesce).
    ANSWER.store(false, Ordering::SeqCst);
    let (r0, r1) = (received(0), received(1));
    c.eq(
        "broadcast IPI",
        call(EXT_IPI, 0, [0, u64::MAX, 0, 0, 0]).0,
        SUCCESS,
    );
    c.ok(
        "broadcast IPI reaches both vcpus",
        spin_until(|| received(0) > r0 && received(1) > r1),
    );
    c.eq("broadcast IPIs taken by vcpu 0", received(0), r0 + 1);
    c.eq("broadcast IPIs taken by vcpu 1", received(1), r1 + 1);
    ANSWER.store(true, Ordering::SeqCst);
    // Harts 2 and 64: refused, nothing sent (vCPU 1 would answer).
    let (r0, r1) = (received(0), received(1));
    c.eq(
        "IPI to hart 2",
        call(EXT_IPI, 0, [0b110, 0, 0, 0, 0]).0,
        ERR_INVALID_PARAM,
    );
    c.eq(
        "IPI to hart 64",
        call(EXT_IPI, 0, [1, 64, 0, 0, 0]).0,
        ERR_INVALID_PARAM,
    );
    let end = grt::irq::timer_now() + grt::irq::timer_freq() / 100;
    while grt::irq::timer_now() < end {
        core::hint::spin_loop();
    }
    c.ok(
        "refused IPIs deliver nothing",
        received(0) == r0 && received(1) == r1,
    );
    grt::println!("ipi: sbi: broadcast reaches both vcpus, masks naming absent harts refused");

    // Remote fences while vCPU 1 is halted, then while it is busy in the guest.
    let fences = |c: &mut Checker, when: &str| {
        for round in 0..FENCE_ROUNDS {
            let args = [0b10, 0, 0x8000_0000, 0x1000 * round, 1];
            c.eq(
                format_args!("remote_fence_i to vcpu 1 ({when})"),
                call(EXT_RFENCE, 0, args).0,
                SUCCESS,
            );
            c.eq(
                format_args!("remote_sfence_vma to vcpu 1 ({when})"),
                call(EXT_RFENCE, 1, args).0,
                SUCCESS,
            );
            c.eq(
                format_args!("remote_sfence_vma_asid to every hart ({when})"),
                call(EXT_RFENCE, 2, [0, u64::MAX, 0, u64::MAX, 1]).0,
                SUCCESS,
            );
        }
    };
    let start = grt::irq::timer_now();
    fences(c, "halted");
    let halted_us = micros(grt::irq::timer_now() - start);
    ANSWER.store(false, Ordering::SeqCst);
    SPIN.store(true, Ordering::SeqCst);
    let r1 = received(1);
    grt::irq::send_ipi(1);
    c.ok("vcpu 1 starts spinning", spin_until(|| received(1) > r1));
    let start = grt::irq::timer_now();
    fences(c, "running");
    let running_us = micros(grt::irq::timer_now() - start);
    SPIN.store(false, Ordering::SeqCst);
    ANSWER.store(true, Ordering::SeqCst);
    c.eq(
        "remote fence to hart 2",
        call(EXT_RFENCE, 0, [0b100, 0, 0, 0, 0]).0,
        ERR_INVALID_PARAM,
    );
    c.eq(
        "remote_hfence_gvma_vmid",
        call(EXT_RFENCE, 3, [1, 0, 0, 0, 0]).0,
        ERR_NOT_SUPPORTED,
    );
    grt::println!("ipi: sbi: remote fences to a halted and to a running vcpu");
    grt::println!(
        "ipi: sbi: {FENCE_ROUNDS} x 3 remote fences took {halted_us} us (vcpu 1 halted), {running_us} us (running)"
    );

    // DBCN console_write of a line in guest RAM (longer than one call takes).
    c.eq(
        "DBCN probed",
        call(EXT_BASE, 3, [EXT_DBCN, 0, 0, 0, 0]).1,
        1,
    );
    let line: &[u8] = b"ipi: sbi: this line went through dbcn console_write, which takes at most 64 bytes a call\n";
    let mut sent = 0;
    let mut calls = 0;
    while sent < line.len() && calls < 10 {
        let rest = &line[sent..];
        let (e, n) = call(
            EXT_DBCN,
            0,
            [rest.len() as u64, rest.as_ptr() as u64, 0, 0, 0],
        );
        calls += 1;
        if !c.eq("console_write", e, SUCCESS) || n == 0 || n > rest.len() as u64 {
            break;
        }
        sent += n as usize;
    }
    c.eq("console_write bytes", sent, line.len());
    // Not RAM: outside every region, the UART (a device, never read by the hypervisor), and
    // an address above 64 bits.
    for (what, lo, hi) in [
        ("console_write outside RAM", 0x1000, 0),
        ("console_write of the uart", 0x1000_0000, 0),
        ("console_write above 64 bits", grt::RAM_BASE, 1),
    ] {
        c.eq(
            what,
            call(EXT_DBCN, 0, [4, lo, hi, 0, 0]).0,
            ERR_INVALID_PARAM,
        );
    }
}
