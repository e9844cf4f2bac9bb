//! Checks SMP bring-up through the hypervisor's CPU power calls (PSCI on aarch64, SBI HSM
//! on riscv64) in a VM with two vCPUs: vCPU 1 starts off; starting a vCPU that does not
//! exist, or at an address outside RAM, is refused with the right error; vCPU 1 starts,
//! runs code that records what it saw (its index), waits to be released and stops itself;
//! starting it while it runs is refused as "already on"; and it can be started a second
//! time after it stopped. Prints `PASS smp`.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use grt::check::Checker;
use grt::smp::{cpu_on, cpu_on_raw, cpu_status, CpuState, PowerError};

/// Rounds of start / run / stop of vCPU 1.
const ROUNDS: u64 = 2;
/// How long vCPU 0 spins for vCPU 1 before giving up (loop iterations).
const SPIN_LIMIT: u64 = 200_000_000;

/// Incremented by vCPU 1 each time it runs.
static RUNS: AtomicU64 = AtomicU64::new(0);
/// The index vCPU 1 was told it has.
static SEEN_CPU: AtomicU64 = AtomicU64::new(u64::MAX);
/// vCPU 1 waits until this reaches its round before it stops, so vCPU 0 can check it is on.
static RELEASE: AtomicU64 = AtomicU64::new(0);

fn secondary(cpu: usize) {
    SEEN_CPU.store(cpu as u64, Ordering::SeqCst);
    let round = RUNS.load(Ordering::SeqCst) + 1;
    spin_until(|| RELEASE.load(Ordering::SeqCst) >= round);
    // Single writer: a plain load and store (no exclusives with the MMU off).
    RUNS.store(RUNS.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
}

/// PSCI over the SMC conduit (the test otherwise uses HVC): VERSION, FEATURES of CPU_ON and
/// AFFINITY_INFO of the (off) vCPU 1.
#[cfg(target_arch = "aarch64")]
fn smc_conduit(c: &mut Checker) {
    const VERSION: u64 = 0x8400_0000;
    const FEATURES: u64 = 0x8400_000a;
    const CPU_ON_64: u64 = 0xc400_0003;
    const AFFINITY_INFO_64: u64 = 0xc400_0004;
    c.eq("PSCI VERSION over smc", grt::smc(VERSION, [0; 6]), 0x1_0001);
    c.eq(
        "PSCI FEATURES(CPU_ON) over smc",
        grt::smc(FEATURES, [CPU_ON_64, 0, 0, 0, 0, 0]),
        0,
    );
    c.eq(
        "AFFINITY_INFO(vcpu 1) over smc: off",
        grt::smc(AFFINITY_INFO_64, [1, 0, 0, 0, 0, 0]),
        1,
    );
    grt::println!("smp: psci over smc answered");
}

/// Spins until `done()` or the limit; returns whether `done()` held.
fn spin_until(done: impl Fn() -> bool) -> bool {
    (0..SPIN_LIMIT).any(|_| {
        core::hint::spin_loop();
        done()
    })
}

#[no_mangle]
fn main() {
    let mut c = Checker::new("smp");
    #[cfg(target_arch = "aarch64")]
    smc_conduit(&mut c);
    c.ok("vcpu 1 is off at boot", cpu_status(1) == Ok(CpuState::Off));
    c.ok(
        "vcpu 7 does not exist",
        cpu_status(7) == Err(PowerError::InvalidTarget),
    );
    c.ok(
        "starting vcpu 7 is refused",
        cpu_on_raw(7, grt::RAM_BASE, 0) == Err(PowerError::InvalidTarget),
    );
    c.ok(
        "starting vcpu 1 outside RAM is refused",
        cpu_on_raw(1, grt::RAM_BASE + grt::RAM_SIZE, 0) == Err(PowerError::InvalidAddress),
    );
    c.ok("vcpu 1 is still off", cpu_status(1) == Ok(CpuState::Off));
    for round in 1..=ROUNDS {
        let started = cpu_on(1, secondary);
        c.ok(
            format_args!("round {round}: vcpu 1 starts"),
            started.is_ok(),
        );
        if started.is_err() {
            break;
        }
        // vCPU 1 runs (or is about to) and waits for RELEASE: a second start is refused.
        c.ok(
            format_args!("round {round}: vcpu 1 is on or starting"),
            spin_until(|| cpu_status(1) == Ok(CpuState::On))
                || cpu_status(1) == Ok(CpuState::Pending),
        );
        c.ok(
            format_args!("round {round}: a second start is refused"),
            cpu_on_raw(1, grt::RAM_BASE, 0) == Err(PowerError::AlreadyOn),
        );
        RELEASE.store(round, Ordering::SeqCst);
        c.ok(
            format_args!("round {round}: vcpu 1 ran"),
            spin_until(|| RUNS.load(Ordering::SeqCst) >= round),
        );
        c.ok(
            format_args!("round {round}: vcpu 1 is off again"),
            spin_until(|| cpu_status(1) == Ok(CpuState::Off)),
        );
        grt::println!(
            "smp: round {round}: vcpu 1 ran as cpu {} and stopped",
            SEEN_CPU.load(Ordering::SeqCst)
        );
    }
    c.eq("vcpu 1 runs", RUNS.load(Ordering::SeqCst), ROUNDS);
    c.eq("vcpu 1 index", SEEN_CPU.load(Ordering::SeqCst), 1);
    c.ok("vcpu 0 is on", cpu_status(0) == Ok(CpuState::On));
    c.finish();
}
