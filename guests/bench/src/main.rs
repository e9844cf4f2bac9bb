//! The benchmark guest (`cargo xtask bench`, docs/performance.md). Times, with the guest's
//! own counter, `ITERATIONS` repetitions (after `WARM_UP`) of:
//!
//! - `hypercall`: the VERSION hypercall (`hvc #0` with x0 = 0xC600_0100 / the axvisor SBI
//!   extension, `grt::bench::hypercall0`: `grt::hypercall`'s ABI, inlined), a round trip
//!   through the hypervisor, which the vCPU answers right after the trap (its answer never
//!   changes);
//! - `hypercall-vm`: the RESET_COUNT hypercall, the same round trip but answered by the VM
//!   (`AxVm`'s exit handling), the path of every hypercall without a fixed answer;
//! - `mmio-read`: an emulated MMIO read (`grt::bench::mmio_read`: a UART's status register,
//!   PL011 FR, 32 bits / 16550 LSR, one byte);
//! - `port-read` (x86_64 only, `grt::bench::PORT_READ`): an emulated port read (`inb` of the
//!   console 16550's LSR);
//! - `guest-exception`: the baseline, an exception the guest takes and returns from itself
//!   (`svc #0` / `ebreak`, see `grt::bench`), without leaving the VM.
//!
//! and prints one line per operation, `BENCH <name> <ns_per_op> ns/op (<iterations> iters)`,
//! then `PASS bench`. Under QEMU `-icount shift=0` a nanosecond is one instruction. On
//! x86_64, which runs VMs under Bochs, where the TSC advances one per instruction with
//! `clock: sync=none` whatever frequency it is said to have, the line gives TSC ticks:
//! `BENCH <name> <ticks_per_op> ticks/op (<iterations> iters)`.
#![no_std]
#![no_main]

use grt::bench;

/// Timed repetitions of each operation.
const ITERATIONS: u64 = 1000;
/// Untimed repetitions first (the emulator translates the code, the caches fill).
const WARM_UP: u64 = 10;

/// axvisor's VERSION hypercall and the ABI version it returns (docs/vmm.md).
const HC_VERSION: u64 = 0x100;
const ABI_VERSION: u64 = 1;
/// axvisor's RESET_COUNT hypercall: 0 in a VM that was never reset.
const HC_RESET_COUNT: u64 = 0x104;

fn hypercall() {
    expect_hypercall("VERSION", HC_VERSION, ABI_VERSION);
}

fn hypercall_vm() {
    expect_hypercall("RESET_COUNT", HC_RESET_COUNT, 0);
}

/// Makes hypercall `nr` (`name`) and stops the guest with a failure unless it returned
/// `want`.
#[inline(always)]
fn expect_hypercall(name: &str, nr: u64, want: u64) {
    let got = bench::hypercall0(nr);
    if got != want {
        hypercall_failed(name, got, want);
    }
}

/// The failure of [`expect_hypercall`], out of the timed loop.
#[cold]
#[inline(never)]
fn hypercall_failed(name: &str, got: u64, want: u64) {
    grt::fail(
        "bench",
        format_args!("{name} hypercall returned {got:#x}, not {want:#x}"),
    );
    grt::power_off();
}

fn mmio_read() {
    let _ = bench::mmio_read();
}

/// Runs `op` `WARM_UP` times, then `ITERATIONS` times between two counter reads; returns
/// the counter ticks of the timed loop.
#[inline(always)]
fn time(op: impl Fn()) -> u64 {
    for _ in 0..WARM_UP {
        op();
    }
    let start = bench::counter();
    for _ in 0..ITERATIONS {
        op();
    }
    bench::counter().wrapping_sub(start)
}

fn report(name: &str, ticks: u64, hz: u64) {
    // Tenths of ticks per operation are tenths of nanoseconds at 1 GHz.
    let (tenths, unit) = if grt::ARCH == "x86_64" {
        (
            bench::ticks_to_tenth_ns_per_op(ticks, 1_000_000_000, ITERATIONS),
            "ticks/op",
        )
    } else {
        (
            bench::ticks_to_tenth_ns_per_op(ticks, hz, ITERATIONS),
            "ns/op",
        )
    };
    grt::println!(
        "BENCH {name} {}.{} {unit} ({ITERATIONS} iters)",
        tenths / 10,
        tenths % 10
    );
}

#[no_mangle]
fn main() {
    let hz = bench::counter_hz();
    if hz == 0 {
        grt::fail("bench", "the counter frequency reads as 0");
        return;
    }
    grt::println!("bench: {} guest, counter at {hz} Hz", grt::ARCH);
    let hypercall = time(hypercall);
    let hypercall_vm = time(hypercall_vm);
    let mmio = time(mmio_read);
    let port = bench::PORT_READ.map(|read| {
        time(|| {
            let _ = read();
        })
    });
    let exception = bench::with_minimal_handler(|| time(bench::guest_exception));
    report("hypercall", hypercall, hz);
    report("hypercall-vm", hypercall_vm, hz);
    report("mmio-read", mmio, hz);
    if let Some(port) = port {
        report("port-read", port, hz);
    }
    report("guest-exception", exception, hz);
    grt::pass("bench");
}
