//! The interrupt-latency guest (`cargo xtask bench`, docs/performance.md). It arms its
//! one-shot timer ([`DELAY_NS`] ahead) again and again and records, in its handler, the
//! counter minus the deadline: how long the interrupt took from the timer's expiry to the
//! handler, through whatever lies between (the hypervisor, or nothing when the guest runs
//! on the bare emulator). Two ways of waiting are timed:
//!
//! - `timer-busy`: the guest spins with interrupts unmasked, so the interrupt arrives while
//!   it runs;
//! - `timer-wfi`: the guest waits in `wfi` (with interrupts masked around the check, as a
//!   guest idle loop does, then unmasks them), so under a hypervisor the vCPU is halted
//!   and must be woken at the deadline.
//!
//! Each prints `BENCH-LATENCY <name> median <m> mean <x> min <a> max <b> ns (<blocks>
//! blocks of <n> irqs)` and `benchirq: <name>: <r> of <s> samples retaken (...)`, then the
//! guest prints `PASS benchirq`. Under QEMU `-icount shift=0` a nanosecond is one
//! instruction.
//!
//! **Disturbed samples.** A sample is only valid when the guest is waiting before its
//! deadline. The host may run something else on the vCPU's CPU between the guest's arming
//! of the timer and its wait (under axvisor with one CPU, the console shell's first run
//! prints its prompt, thousands of instructions, at the end of the vCPU's first time
//! slice; each of its polls after that); when that pushes the wait past the deadline the
//! reading says nothing about the interrupt path, so the sample is taken again with the
//! same `nop` count. At most [`MAX_RETAKEN`] per way of waiting: a host event disturbs at
//! most the one sample it lands in, while a path that is slow every time (arming slower
//! than [`DELAY_NS`]) fails the first block.
//!
//! **Resolution.** The counter ticks every `n` = 10^9 / frequency ns (16 on aarch64's
//! 62.5 MHz, 100 on riscv64's 10 MHz), and the timer expires exactly on a tick, so one
//! reading only says the latency `L` to within `n` ns. The handler therefore reads the
//! counter after `k` extra `nop`s ([`grt::bench::counter_after_nops`]), with `k` going
//! through 0, 1, …, `n` − 1 over a block of `n` interrupts. Reading `k` ns later gives
//! floor((`L` + `k`) / `n`) ticks, and the sum of those over `k` = 0 … `n` − 1 is exactly
//! `L` (Hermite's identity). So each block's sum of ticks is the latency in ns, exact when
//! it does not change within the block and otherwise its mean over the block. The
//! median, mean, minimum and maximum are over [`BLOCKS`] blocks, after one untimed block.
//! The latency counts every instruction from the expiry to the handler's counter read:
//! the exception entry, grt's vector and register save, the interrupt acknowledge and
//! dispatch, and the `nop` slide's jump.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use grt::bench;
use grt::irq::{self, Irq};

/// Timed blocks per way of waiting; each has one interrupt per ns of a counter tick.
const BLOCKS: usize = 64;
/// How far ahead of "now" each deadline is, in ns (a whole number of ticks on both
/// architectures): far enough for the guest to be waiting (spinning, or halted in `wfi`)
/// well before it, even when arming the timer is a call to the hypervisor (riscv64).
const DELAY_NS: u64 = 6400;

/// How many samples per way of waiting may be taken again because the deadline passed
/// before the guest was waiting (see the module documentation). A run under axvisor with
/// the shell on the VM's CPU retakes at most a few (one per host event in the few tens of
/// ms a way of waiting takes); 8 leaves room for that while a systematic cause (1024 or
/// 6400 samples) still fails.
const MAX_RETAKEN: u64 = 8;

/// `nop`s the handler runs before its counter read.
static NOPS: AtomicU64 = AtomicU64::new(0);
/// Timer interrupts taken.
static FIRED: AtomicU64 = AtomicU64::new(0);
/// The handler's counter read at the last one.
static FIRED_AT: AtomicU64 = AtomicU64::new(0);
/// Interrupts other than the timer's (there should be none).
static OTHER: AtomicU64 = AtomicU64::new(0);

/// The interrupt handler: the counter read comes first.
fn on_irq(irq: Irq) {
    if irq == Irq::Timer {
        let at = bench::counter_after_nops(NOPS.load(Ordering::Relaxed));
        FIRED_AT.store(at, Ordering::SeqCst);
        // Single writer (this handler): a plain load and store.
        FIRED.store(FIRED.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    } else {
        OTHER.store(OTHER.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    }
}

/// How the guest waits for its timer.
#[derive(Clone, Copy)]
enum Wait {
    /// Spinning with interrupts unmasked.
    Busy,
    /// In `wfi`, interrupts masked around the check and unmasked after each wake-up.
    Wfi,
}

impl Wait {
    fn name(self) -> &'static str {
        match self {
            Wait::Busy => "timer-busy",
            Wait::Wfi => "timer-wfi",
        }
    }
}

/// Why a way of waiting could not be timed. `Display` is the reason after `FAIL benchirq:`.
enum Failure {
    /// The handler's counter read came before the deadline.
    Early,
    /// More than [`MAX_RETAKEN`] samples had to be taken again: the deadline passed before
    /// the guest was waiting that often.
    TooLate(u64),
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Early => f.write_str("the interrupt came before its deadline"),
            Failure::TooLate(n) => write!(
                f,
                "the deadline passed before the guest was waiting in {n} samples (more than \
                 {MAX_RETAKEN} are not retaken)"
            ),
        }
    }
}

/// Arms the timer `delay` ticks ahead, waits for its interrupt (the handler reads the
/// counter after `nops` `nop`s) and returns the handler's reading minus the deadline, in
/// ticks; `Ok(None)` when the deadline passed before the guest was waiting (a disturbed
/// sample: its interrupt has been taken, the caller takes it again).
fn one_interrupt(wait: Wait, nops: u64, delay: u64) -> Result<Option<u64>, Failure> {
    NOPS.store(nops, Ordering::SeqCst);
    let before = FIRED.load(Ordering::SeqCst);
    let deadline = irq::timer_now() + delay;
    irq::timer_set(deadline);
    let mut late = false;
    match wait {
        Wait::Busy => {
            late = irq::timer_now() >= deadline;
            while FIRED.load(Ordering::SeqCst) == before {
                core::hint::spin_loop();
            }
        }
        Wait::Wfi => {
            irq::disable();
            while FIRED.load(Ordering::SeqCst) == before {
                late |= irq::timer_now() >= deadline;
                grt::wait_for_interrupt();
                irq::enable();
                irq::disable();
            }
            irq::enable();
        }
    }
    if late {
        return Ok(None);
    }
    FIRED_AT
        .load(Ordering::SeqCst)
        .checked_sub(deadline)
        .map(Some)
        .ok_or(Failure::Early)
}

/// The sum of the tick readings of one block: `n` interrupts with 0 … `n` − 1 `nop`s,
/// which is the latency in ns (see the module documentation). A disturbed sample is taken
/// again, counted in `retaken`.
fn block(wait: Wait, n: u64, retaken: &mut u64) -> Result<u64, Failure> {
    let mut sum = 0;
    for nops in 0..n {
        sum += loop {
            if let Some(ticks) = one_interrupt(wait, nops, DELAY_NS / n)? {
                break ticks;
            }
            *retaken += 1;
            if *retaken > MAX_RETAKEN {
                return Err(Failure::TooLate(*retaken));
            }
        };
    }
    Ok(sum)
}

/// Times one way of waiting and prints its `BENCH-LATENCY` line and how many samples were
/// taken again.
fn measure(wait: Wait, n: u64) -> Result<(), Failure> {
    let mut retaken = 0;
    block(wait, n, &mut retaken)?; // warm-up: the emulator translates the code
    let mut blocks = [0u64; BLOCKS];
    for b in blocks.iter_mut() {
        *b = block(wait, n, &mut retaken)?;
    }
    let total: u64 = blocks.iter().sum();
    let tenths = (total * 10 + BLOCKS as u64 / 2) / BLOCKS as u64;
    blocks.sort_unstable();
    // BLOCKS is even: the mean of the middle two, in tenths.
    let median_tenths = (blocks[BLOCKS / 2 - 1] + blocks[BLOCKS / 2]) * 5;
    grt::println!(
        "BENCH-LATENCY {} median {}.{} mean {}.{} min {} max {} ns ({BLOCKS} blocks of {n} irqs)",
        wait.name(),
        median_tenths / 10,
        median_tenths % 10,
        tenths / 10,
        tenths % 10,
        blocks[0],
        blocks[BLOCKS - 1],
    );
    grt::println!(
        "benchirq: {}: {retaken} of {} samples retaken (the deadline passed before the guest \
         was waiting; at most {MAX_RETAKEN})",
        wait.name(),
        (BLOCKS as u64 + 1) * n,
    );
    Ok(())
}

/// ns per counter tick, if that is a whole number the `nop` slide can cover.
fn ns_per_tick(hz: u64) -> Option<u64> {
    const NS: u64 = 1_000_000_000;
    let n = NS.checked_div(hz)?;
    (NS.is_multiple_of(hz) && (1..=bench::MAX_NOPS + 1).contains(&n)).then_some(n)
}

#[no_mangle]
fn main() {
    let hz = bench::counter_hz();
    let Some(n) = ns_per_tick(hz) else {
        grt::fail(
            "benchirq",
            format_args!(
                "a counter at {hz} Hz does not tick every 1 to {} whole ns",
                bench::MAX_NOPS + 1
            ),
        );
        return;
    };
    grt::println!(
        "benchirq: {} guest, counter at {hz} Hz ({n} ns per tick), deadlines {} ticks ahead",
        grt::ARCH,
        DELAY_NS / n
    );
    irq::set_handler(Some(on_irq));
    irq::init_cpu();
    irq::enable();
    for wait in [Wait::Busy, Wait::Wfi] {
        if let Err(why) = measure(wait, n) {
            grt::fail("benchirq", format_args!("{}: {why}", wait.name()));
            return;
        }
    }
    irq::disable();
    irq::timer_stop();
    let other = OTHER.load(Ordering::SeqCst);
    if other != 0 {
        grt::fail("benchirq", format_args!("{other} unexpected interrupt(s)"));
        return;
    }
    grt::pass("benchirq");
}
