//! The passthrough test itself (aarch64 and riscv64; see `main.rs`).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use grt::check::Checker;
use grt::irq::{self, Irq};
use grt::mmio::{read32, write32};

/// Alarms the guest waits for.
const ROUNDS: u64 = 3;
/// How long the guest waits for one alarm (its own timer as a watchdog), in seconds.
const ALARM_TIMEOUT_SECS: u64 = 4;
/// How long the guest watches for stray RTC interrupts at the end, in milliseconds.
const QUIET_MS: u64 = 200;
/// 2020-09-13: any real clock reads more.
const PLAUSIBLE_EPOCH: u64 = 1_600_000_000;

/// QEMU `virt`'s PL031.
#[cfg(target_arch = "aarch64")]
mod rtc {
    use super::{get, set};

    pub const BASE: usize = 0x0901_0000;
    /// Its interrupt: SPI 2.
    pub const IRQ: u32 = 34;
    const RTCDR: usize = 0x00;
    const RTCMR: usize = 0x04;
    const RTCIMSC: usize = 0x10;
    const RTCMIS: usize = 0x18;
    const RTCICR: usize = 0x1c;

    /// Wall-clock time in seconds.
    pub fn now_secs() -> u64 {
        u64::from(get(RTCDR))
    }

    /// An alarm at the next second (the PL031 counts whole seconds), its interrupt enabled.
    pub fn arm() {
        set(RTCMR, get(RTCDR) + 1);
        set(RTCIMSC, 1);
    }

    /// Whether the alarm interrupt is asserted.
    pub fn asserted() -> bool {
        get(RTCMIS) & 1 != 0
    }

    /// Lowers the alarm interrupt.
    pub fn clear() {
        set(RTCICR, 1);
    }

    /// Masks the alarm interrupt.
    pub fn stop() {
        set(RTCIMSC, 0);
    }

    /// Nothing to do: the GIC samples the PL031's line level, so an interrupt still
    /// asserted when unmasked is taken again.
    pub fn reassert() {}
}

/// QEMU `virt`'s goldfish RTC (times in nanoseconds; writing `ALARM_LOW` arms the alarm,
/// whose interrupt stays asserted until `CLEAR_INTERRUPT` while `IRQ_ENABLED` is set).
#[cfg(target_arch = "riscv64")]
mod rtc {
    use super::{get, set};
    use core::sync::atomic::{AtomicBool, Ordering};

    pub const BASE: usize = 0x0010_1000;
    /// Its interrupt: PLIC source 11.
    pub const IRQ: u32 = 11;
    const TIME_LOW: usize = 0x00;
    const TIME_HIGH: usize = 0x04;
    const ALARM_LOW: usize = 0x08;
    const ALARM_HIGH: usize = 0x0c;
    const IRQ_ENABLED: usize = 0x10;
    const CLEAR_INTERRUPT: usize = 0x1c;
    /// How far ahead an alarm is set, in nanoseconds.
    const AHEAD_NS: u64 = 100_000_000;

    /// Whether an alarm fired and its interrupt was not cleared (the device has no
    /// register that says so).
    static FIRED: AtomicBool = AtomicBool::new(false);

    fn now_ns() -> u64 {
        // TIME_LOW first: reading it latches TIME_HIGH.
        let low = u64::from(get(TIME_LOW));
        (u64::from(get(TIME_HIGH)) << 32) | low
    }

    /// Wall-clock time in seconds.
    pub fn now_secs() -> u64 {
        now_ns() / 1_000_000_000
    }

    /// An alarm [`AHEAD_NS`] from now, its interrupt enabled.
    pub fn arm() {
        let at = now_ns() + AHEAD_NS;
        set(IRQ_ENABLED, 1);
        set(ALARM_HIGH, (at >> 32) as u32);
        FIRED.store(true, Ordering::SeqCst);
        set(ALARM_LOW, at as u32);
    }

    /// Whether the alarm interrupt is asserted (as far as the guest knows: armed and not
    /// cleared since).
    pub fn asserted() -> bool {
        FIRED.load(Ordering::SeqCst)
    }

    /// Lowers the alarm interrupt.
    pub fn clear() {
        FIRED.store(false, Ordering::SeqCst);
        set(CLEAR_INTERRUPT, 1);
    }

    /// Masks the alarm interrupt.
    pub fn stop() {
        set(IRQ_ENABLED, 0);
    }

    /// Drives the (still asserted) interrupt line again. QEMU's PLIC model makes a source
    /// pending only when its device drives the line, not when a completed source's line is
    /// still high, so once the hypervisor has unmasked the source the device must say it
    /// again; writing `IRQ_ENABLED` does.
    pub fn reassert() {
        set(IRQ_ENABLED, 1);
    }
}

/// RTC register `reg`.
fn get(reg: usize) -> u32 {
    // SAFETY: the RTC is passed through to this VM at its host address (VM config); its
    // registers are 32 bits wide.
    unsafe { read32(rtc::BASE + reg) }
}

/// Writes RTC register `reg`.
fn set(reg: usize, v: u32) {
    // SAFETY: as in `get`.
    unsafe { write32(rtc::BASE + reg, v) }
}

/// Alarms handled (interrupt seen with the device asserting it, and cleared).
static ALARMS: AtomicU64 = AtomicU64::new(0);
/// Every RTC interrupt the guest took.
static RTC_IRQS: AtomicU64 = AtomicU64::new(0);
/// Interrupts from anywhere else.
static OTHERS: AtomicU64 = AtomicU64::new(0);
/// The handler leaves the next alarm asserted once.
static LEAVE_ASSERTED: AtomicBool = AtomicBool::new(false);
/// The handler left an alarm asserted.
static LEFT: AtomicBool = AtomicBool::new(false);
static WATCHDOG: AtomicBool = AtomicBool::new(false);

fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
}

fn on_irq(i: Irq) {
    match i {
        Irq::External(rtc::IRQ) => {
            bump(&RTC_IRQS);
            if !rtc::asserted() {
                return;
            }
            if LEAVE_ASSERTED.swap(false, Ordering::SeqCst) {
                // Completed with the device still asserting it: it must come back.
                LEFT.store(true, Ordering::SeqCst);
                return;
            }
            rtc::clear();
            bump(&ALARMS);
        }
        Irq::Timer => WATCHDOG.store(true, Ordering::SeqCst),
        _ => bump(&OTHERS),
    }
}

/// Sleeps until `done()` or the watchdog fires `timeout_ms` from now; returns `done()`.
fn wait(timeout_ms: u64, done: impl Fn() -> bool) -> bool {
    WATCHDOG.store(false, Ordering::SeqCst);
    irq::timer_set(irq::timer_now() + timeout_ms * irq::timer_freq() / 1000);
    while !done() && !WATCHDOG.load(Ordering::SeqCst) {
        grt::wait_for_interrupt();
    }
    irq::timer_stop();
    done()
}

/// Runs the test.
pub fn run() {
    let mut c = Checker::new("passthrough");
    let now = rtc::now_secs();
    grt::println!("passthrough: RTC reads {now}");
    c.ok(
        format_args!("the RTC reads a wall-clock time ({now})"),
        now > PLAUSIBLE_EPOCH,
    );
    irq::set_handler(Some(on_irq));
    irq::init_cpu();
    irq::external_enable(rtc::IRQ);
    irq::enable();
    for round in 1..=ROUNDS {
        let last = round == ROUNDS;
        LEAVE_ASSERTED.store(last, Ordering::SeqCst);
        rtc::arm();
        let arrived = || ALARMS.load(Ordering::SeqCst) >= round;
        let left = || LEFT.load(Ordering::SeqCst);
        let mut got = wait(ALARM_TIMEOUT_SECS * 1000, || arrived() || left());
        if last && !arrived() && left() {
            // Taken, completed and left asserted: it comes again once unmasked.
            rtc::reassert();
            got = wait(ALARM_TIMEOUT_SECS * 1000, arrived);
        }
        got &= arrived();
        c.ok(format_args!("alarm {round} interrupted the guest"), got);
        if got {
            grt::println!("passthrough: alarm {round} arrived");
        }
        if last {
            let again = left() && got;
            c.ok("the alarm left asserted interrupted again", again);
            if again {
                grt::println!("passthrough: the alarm left asserted interrupted again");
            }
        }
    }
    rtc::stop();
    // Nothing armed: no RTC interrupt may come any more.
    let before = RTC_IRQS.load(Ordering::SeqCst);
    wait(QUIET_MS, || false);
    let irqs = RTC_IRQS.load(Ordering::SeqCst);
    let alarms = ALARMS.load(Ordering::SeqCst);
    grt::println!("passthrough: {irqs} rtc interrupts for {alarms} alarms");
    c.eq("rtc interrupts in the quiet time", irqs - before, 0);
    // One per alarm, and one more for the alarm left asserted.
    c.eq("rtc interrupts", irqs, ROUNDS + 1);
    c.eq("alarms", alarms, ROUNDS);
    c.eq("other interrupts", OTHERS.load(Ordering::SeqCst), 0);
    c.finish();
}
