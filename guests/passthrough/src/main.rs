//! Checks a passthrough device (aarch64): QEMU `virt`'s PL031 real-time clock, mapped into
//! the VM at its host address with its interrupt (SPI 2, INTID 34) routed to the VM. The
//! guest reads the clock (a plausible wall-clock time), then twice sets the alarm one second
//! ahead and waits for the interrupt, which it clears at the device; the second alarm shows
//! the hypervisor re-arms the physical interrupt once the guest has handled the first. Prints
//! `PASS passthrough`.
//!
//! riscv64 runs no scenario with it (the guest only says so with a `FAIL`).
#![no_std]
#![no_main]

#[cfg(target_arch = "aarch64")]
mod checks {
    use core::sync::atomic::{AtomicU64, Ordering};

    use grt::check::Checker;
    use grt::irq::{self, Irq};
    use grt::mmio::{read32, write32};

    /// The PL031 of QEMU `virt`, and its interrupt.
    const RTC: usize = 0x0901_0000;
    const RTC_IRQ: u32 = 34;
    const RTCDR: usize = 0x00;
    const RTCMR: usize = 0x04;
    const RTCIMSC: usize = 0x10;
    const RTCMIS: usize = 0x18;
    const RTCICR: usize = 0x1c;
    /// 2020-09-13: any real clock reads more.
    const PLAUSIBLE_EPOCH: u32 = 1_600_000_000;
    /// How long the guest waits for one alarm (its own timer as a watchdog), in seconds.
    const ALARM_TIMEOUT_SECS: u64 = 4;

    static ALARMS: AtomicU64 = AtomicU64::new(0);
    static OTHERS: AtomicU64 = AtomicU64::new(0);
    static WATCHDOG: AtomicU64 = AtomicU64::new(0);

    fn rtc(reg: usize) -> u32 {
        // SAFETY: the PL031 is passed through to this VM at its host address (VM config).
        unsafe { read32(RTC + reg) }
    }

    fn set_rtc(reg: usize, v: u32) {
        // SAFETY: as in `rtc`.
        unsafe { write32(RTC + reg, v) }
    }

    fn on_irq(i: Irq) {
        match i {
            Irq::External(RTC_IRQ) if rtc(RTCMIS) & 1 != 0 => {
                set_rtc(RTCICR, 1);
                ALARMS.store(ALARMS.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
            }
            Irq::Timer => WATCHDOG.store(1, Ordering::SeqCst),
            _ => OTHERS.store(OTHERS.load(Ordering::SeqCst) + 1, Ordering::SeqCst),
        }
    }

    pub fn run() {
        let mut c = Checker::new("passthrough");
        let now = rtc(RTCDR);
        grt::println!("passthrough: RTC reads {now}");
        c.ok(
            format_args!("the RTC reads a wall-clock time ({now})"),
            now > PLAUSIBLE_EPOCH,
        );
        irq::set_handler(Some(on_irq));
        irq::init_cpu();
        irq::external_enable(RTC_IRQ);
        irq::enable();
        for round in 1..=2u64 {
            WATCHDOG.store(0, Ordering::SeqCst);
            irq::timer_set(irq::timer_now() + ALARM_TIMEOUT_SECS * irq::timer_freq());
            set_rtc(RTCMR, rtc(RTCDR) + 1);
            set_rtc(RTCIMSC, 1);
            while ALARMS.load(Ordering::SeqCst) < round && WATCHDOG.load(Ordering::SeqCst) == 0 {
                grt::wait_for_interrupt();
            }
            irq::timer_stop();
            let got = ALARMS.load(Ordering::SeqCst) >= round;
            c.ok(format_args!("alarm {round} interrupted the guest"), got);
            if got {
                grt::println!("passthrough: alarm {round} arrived");
            }
        }
        set_rtc(RTCIMSC, 0);
        c.eq("other interrupts", OTHERS.load(Ordering::SeqCst), 0);
        c.eq("alarms", ALARMS.load(Ordering::SeqCst), 2);
        c.finish();
    }
}

#[no_mangle]
fn main() {
    #[cfg(target_arch = "aarch64")]
    checks::run();
    #[cfg(not(target_arch = "aarch64"))]
    grt::fail(
        "passthrough",
        "the PL031 passthrough test is an aarch64 test",
    );
}
