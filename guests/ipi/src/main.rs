//! Checks inter-processor interrupts through `grt::irq` in a VM with two vCPUs: an IPI
//! vCPU 0 sends itself arrives, and one sent while interrupts are masked waits for them to
//! be unmasked; then vCPU 1 is started and [`PINGS`] times vCPU 0 sends it an IPI and waits
//! (halted in `wfi`) for the answer vCPU 1's handler sends back, so both sides' counts must
//! match exactly. vCPU 1 also waits in `wfi` between pings, so each IPI must wake a halted
//! vCPU. On riscv64 it also checks the SBI details (`sbi` module): an IPI to every hart
//! (mask base -1), refused hart masks, remote fences to a vCPU that runs, and DBCN
//! `console_write`. Prints `PASS ipi`.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use grt::check::Checker;
use grt::irq::{self, Irq};
use grt::smp::{cpu_on, cpu_status, CpuState};

#[cfg(target_arch = "riscv64")]
mod sbi;

/// Round trips between vCPU 0 and vCPU 1.
const PINGS: u64 = 100;
/// How long a wait for an IPI may take before it counts as lost.
const WAIT_US: u64 = 2_000_000;

/// IPIs taken by vCPU 0 and vCPU 1 (each written only by its own vCPU's handler).
static RECEIVED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// vCPU 1 answers each IPI with one to vCPU 0 while this is set.
static ANSWER: AtomicBool = AtomicBool::new(true);
/// vCPU 1 is set up and waits for IPIs.
static READY: AtomicBool = AtomicBool::new(false);
/// vCPU 1 busy-loops in the guest (instead of halting) while this is set.
static SPIN: AtomicBool = AtomicBool::new(false);
/// vCPU 1 stops at its next wake-up.
static STOP: AtomicBool = AtomicBool::new(false);
/// vCPU 0's watchdog timer fired.
static TIMED_OUT: AtomicBool = AtomicBool::new(false);
/// Interrupts nobody expected, and the last one.
static OTHER: AtomicU64 = AtomicU64::new(0);

fn received(cpu: usize) -> u64 {
    RECEIVED[cpu].load(Ordering::SeqCst)
}

fn on_irq(irq: Irq) {
    let me = grt::cpu_id();
    match irq {
        Irq::Ipi if me < 2 => {
            RECEIVED[me].store(received(me) + 1, Ordering::SeqCst);
            if me == 1 && ANSWER.load(Ordering::SeqCst) {
                irq::send_ipi(0);
            }
        }
        Irq::Timer if me == 0 => TIMED_OUT.store(true, Ordering::SeqCst),
        _ => OTHER.store(OTHER.load(Ordering::SeqCst) + 1, Ordering::SeqCst),
    }
}

/// vCPU 0 waits in `wfi` until `done()` or its watchdog fires ([`WAIT_US`]); returns
/// whether `done()` held before the watchdog fired. Interrupts are masked around each check so no wake-up is missed.
/// Only for conditions an interrupt to vCPU 0 makes true (nothing else ends a `wfi`).
fn wait_for(done: impl Fn() -> bool) -> bool {
    TIMED_OUT.store(false, Ordering::SeqCst);
    irq::timer_set(irq::timer_now() + irq::timer_freq() * WAIT_US / 1_000_000);
    irq::disable();
    while !done() && !TIMED_OUT.load(Ordering::SeqCst) {
        grt::wait_for_interrupt();
        irq::enable();
        irq::disable();
    }
    irq::enable();
    irq::timer_stop();
    // Done only through the interrupt: one that came only with the watchdog was lost.
    done() && !TIMED_OUT.load(Ordering::SeqCst)
}

/// vCPU 0 spins until `done()` or [`WAIT_US`] passed (for events that send no interrupt);
/// returns whether `done()` held.
pub(crate) fn spin_until(done: impl Fn() -> bool) -> bool {
    irq::spin_until(WAIT_US, done)
}

/// vCPU 1: takes IPIs (answering each while [`ANSWER`] is set), halted in `wfi` between
/// them, or busy in the guest while [`SPIN`] is set, until [`STOP`]. Prints nothing (the
/// console is vCPU 0's).
fn secondary(_cpu: usize) {
    irq::init_cpu();
    READY.store(true, Ordering::SeqCst);
    irq::disable();
    while !STOP.load(Ordering::SeqCst) {
        if SPIN.load(Ordering::SeqCst) {
            irq::enable();
            while SPIN.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
            irq::disable();
            continue;
        }
        grt::wait_for_interrupt();
        irq::enable();
        irq::disable();
    }
}

#[no_mangle]
fn main() {
    let mut c = Checker::new("ipi");
    irq::set_handler(Some(on_irq));
    irq::init_cpu();
    irq::enable();

    // To itself.
    irq::send_ipi(0);
    c.ok("a self-IPI arrives", wait_for(|| received(0) == 1));
    irq::disable();
    irq::send_ipi(0);
    for _ in 0..10_000 {
        core::hint::spin_loop();
    }
    let masked = received(0);
    irq::enable();
    let unmasked = received(0);
    c.eq("IPIs taken while masked", masked, 1);
    c.eq("IPIs taken right after unmasking", unmasked, 2);
    grt::println!("ipi: self: 2 of 2 taken, the masked one when unmasked");

    // Ping-pong with vCPU 1.
    c.ok("vcpu 1 starts", cpu_on(1, secondary).is_ok());
    c.ok(
        "vcpu 1 gets ready",
        spin_until(|| READY.load(Ordering::SeqCst)),
    );
    let base = received(0);
    let start = irq::timer_now();
    let mut answered = 0;
    for ping in 1..=PINGS {
        irq::send_ipi(1);
        if !wait_for(|| received(0) >= base + ping) {
            break;
        }
        answered = ping;
    }
    let took_us = (irq::timer_now() - start) * 1_000_000 / irq::timer_freq();
    c.eq("pings answered", answered, PINGS);
    c.eq("IPIs taken by vcpu 1", received(1), PINGS);
    c.eq("IPIs taken by vcpu 0", received(0) - base, PINGS);
    grt::println!(
        "ipi: ping-pong: vcpu 0 sent {PINGS}, vcpu 1 took {} and answered, vcpu 0 took {}",
        received(1),
        received(0) - base
    );
    grt::println!("ipi: ping-pong: {PINGS} round trips took {took_us} us");

    #[cfg(target_arch = "riscv64")]
    sbi::check(&mut c);

    // Let vCPU 1 go.
    ANSWER.store(false, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
    irq::send_ipi(1);
    c.ok(
        "vcpu 1 stops",
        spin_until(|| cpu_status(1) == Ok(CpuState::Off)),
    );
    irq::disable();
    c.eq("unexpected interrupts", OTHER.load(Ordering::SeqCst), 0);
    c.finish();
}
