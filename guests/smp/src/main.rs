//! Checks SMP bring-up through the hypervisor's CPU power calls (PSCI on aarch64, SBI HSM
//! on riscv64) in a VM with two vCPUs: vCPU 1 starts off; starting a vCPU that does not
//! exist, or at an address outside RAM, is refused with the right error; vCPU 1 starts,
//! runs code that records what it saw (its index), waits to be released and stops itself;
//! starting it while it runs is refused as "already on"; and it can be started a second
//! time after it stopped. Before the rounds (aarch64, riscv64) it makes the power calls a
//! hostile guest would and the chaos guest never does, which must each be refused while the
//! caller goes on (suspends, freezes, system suspend and reset types the hypervisor does
//! not offer) or name no vCPU (targets with junk in the bits that must be zero). Prints
//! `PASS smp`.
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
    #[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
    firmware::hostile_calls(&mut c);
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

/// The power calls of [`main`]'s hostile phase, per architecture: each answer checked, and
/// vCPU 1 must still be off after them.
#[cfg(target_arch = "aarch64")]
mod firmware {
    use grt::check::Checker;

    const NOT_SUPPORTED: u64 = -1i64 as u64;
    const INVALID_PARAMETERS: u64 = -2i64 as u64;
    const FEATURES: u64 = 0x8400_000a;
    const CPU_ON_64: u64 = 0xc400_0003;
    const AFFINITY_INFO_64: u64 = 0xc400_0004;
    const MIGRATE_INFO_TYPE: u64 = 0x8400_0006;

    /// PSCI functions the hypervisor does not implement, with arguments a guest would pass:
    /// NOT_SUPPORTED over both conduits, also from PSCI_FEATURES, and the caller goes on.
    const REFUSED: [(&str, u64, [u64; 6]); 8] = [
        (
            "CPU_SUSPEND (SMC32)",
            0x8400_0001,
            [0, grt::RAM_BASE, 0, 0, 0, 0],
        ),
        (
            "CPU_SUSPEND (SMC64, powerdown)",
            0xc400_0001,
            [1 << 16, grt::RAM_BASE, 0, 0, 0, 0],
        ),
        ("MIGRATE", 0xc400_0005, [1, 0, 0, 0, 0, 0]),
        ("CPU_FREEZE", 0x8400_000b, [0; 6]),
        (
            "CPU_DEFAULT_SUSPEND",
            0xc400_000c,
            [grt::RAM_BASE, 0, 0, 0, 0, 0],
        ),
        (
            "SYSTEM_SUSPEND",
            0xc400_000e,
            [grt::RAM_BASE, 0, 0, 0, 0, 0],
        ),
        ("SYSTEM_RESET2 (warm)", 0xc400_0012, [0, 0, 0, 0, 0, 0]),
        (
            "SYSTEM_RESET2 (vendor)",
            0xc400_0012,
            [0x8000_0000, 0x1234, 0, 0, 0, 0],
        ),
    ];

    pub fn hostile_calls(c: &mut Checker) {
        for (name, fid, args) in REFUSED {
            c.eq(
                format_args!("{name} over hvc"),
                grt::hvc_call(fid, args)[0],
                NOT_SUPPORTED,
            );
            c.eq(
                format_args!("{name} over smc"),
                grt::smc(fid, args),
                NOT_SUPPORTED,
            );
            c.eq(
                format_args!("PSCI_FEATURES({name})"),
                grt::smc(FEATURES, [fid, 0, 0, 0, 0, 0]),
                NOT_SUPPORTED,
            );
        }
        // No trusted OS to migrate: NOT_SUPPORTED, or 2 ("not present").
        let tos = grt::smc(MIGRATE_INFO_TYPE, [0; 6]);
        c.ok(
            format_args!("MIGRATE_INFO_TYPE {tos:#x}: no trusted OS"),
            tos == NOT_SUPPORTED || tos == 2,
        );
        // Targets naming vCPU 1 in Aff0 but with Aff1..Aff3 or a must-be-zero bit set
        // (MPIDR_EL1's RES1 bit 31 among them): no vCPU.
        for target in [0x101, 0x1_0000_0001, 0x8000_0001, 1 << 24 | 1, 1 << 63 | 1] {
            c.eq(
                format_args!("CPU_ON({target:#x})"),
                grt::smc(CPU_ON_64, [target, grt::RAM_BASE, 0, 0, 0, 0]),
                INVALID_PARAMETERS,
            );
            c.eq(
                format_args!("AFFINITY_INFO({target:#x})"),
                grt::smc(AFFINITY_INFO_64, [target, 0, 0, 0, 0, 0]),
                INVALID_PARAMETERS,
            );
        }
        // Levels above 0 (clusters) are not answered.
        for level in [1, 3, 0xffff_ffff] {
            c.eq(
                format_args!("AFFINITY_INFO(1, level {level})"),
                grt::smc(AFFINITY_INFO_64, [1, level, 0, 0, 0, 0]),
                INVALID_PARAMETERS,
            );
        }
        grt::println!("smp: hostile power calls refused");
    }
}

/// The SBI side of [`main`]'s hostile phase.
#[cfg(target_arch = "riscv64")]
mod firmware {
    use grt::check::Checker;

    const ERR_NOT_SUPPORTED: u64 = -2i64 as u64;
    const ERR_INVALID_PARAM: u64 = -3i64 as u64;
    const HSM: u64 = 0x48_534d;
    const SRST: u64 = 0x5352_5354;
    const SUSP: u64 = 0x5355_5350;

    /// `(what, eid, fid, args, error)`: calls that must fail with that error while the caller
    /// goes on.
    const REFUSED: [(&str, u64, u64, [u64; 6], u64); 9] = [
        (
            "hart_suspend (default retentive)",
            HSM,
            3,
            [0; 6],
            ERR_NOT_SUPPORTED,
        ),
        (
            "hart_suspend (default non-retentive)",
            HSM,
            3,
            [0x8000_0000, grt::RAM_BASE, 0, 0, 0, 0],
            ERR_NOT_SUPPORTED,
        ),
        (
            "hart_suspend (reserved type)",
            HSM,
            3,
            [1, 0, 0, 0, 0, 0],
            ERR_INVALID_PARAM,
        ),
        (
            "hart_suspend (type above 32 bits)",
            HSM,
            3,
            [1 << 32, 0, 0, 0, 0, 0],
            ERR_INVALID_PARAM,
        ),
        (
            "system_suspend",
            SUSP,
            0,
            [0, grt::RAM_BASE, 0, 0, 0, 0],
            ERR_NOT_SUPPORTED,
        ),
        (
            "system_reset (reserved type)",
            SRST,
            0,
            [3, 0, 0, 0, 0, 0],
            ERR_INVALID_PARAM,
        ),
        (
            "system_reset (type above 32 bits)",
            SRST,
            0,
            [1 << 32, 0, 0, 0, 0, 0],
            ERR_INVALID_PARAM,
        ),
        ("SRST function 1", SRST, 1, [0; 6], ERR_NOT_SUPPORTED),
        (
            "hart_get_status(2^40)",
            HSM,
            2,
            [1 << 40, 0, 0, 0, 0, 0],
            ERR_INVALID_PARAM,
        ),
    ];

    pub fn hostile_calls(c: &mut Checker) {
        for (name, eid, fid, args, error) in REFUSED {
            c.eq(
                format_args!("{name}"),
                grt::sbi_call(eid, fid, args).0,
                error,
            );
        }
        // hart_start of a hart id with junk above the VM's harts: no such hart.
        for hart in [2, 1 << 32 | 1, u64::MAX] {
            c.eq(
                format_args!("hart_start({hart:#x})"),
                grt::sbi_call(HSM, 0, [hart, grt::RAM_BASE, 0, 0, 0, 0]).0,
                ERR_INVALID_PARAM,
            );
        }
        grt::println!("smp: hostile power calls refused");
    }
}
