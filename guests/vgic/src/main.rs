//! Checks the virtual GIC when more interrupts are pending than the hardware has list
//! registers (QEMU's Cortex-A72 has 4): 16 SPIs with distinct priorities are made pending
//! at once through GICD_ISPENDR while the guest masks interrupts; once unmasked, each must
//! arrive exactly once and in priority order (highest first), which needs the hypervisor to
//! refill the list registers as the guest handles them (underflow maintenance). Also checks
//! that a disabled SPI made pending is not delivered until it is enabled. Prints
//! `PASS vgic`. aarch64 only (riscv64 prints a `FAIL`; no scenario runs it there).
#![no_std]
#![no_main]

#[cfg(target_arch = "aarch64")]
mod checks {
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use grt::check::Checker;
    use grt::irq::{self, Irq};
    use grt::mmio::write32;

    const GICD: usize = 0x0800_0000;
    const GICD_ISPENDR: usize = 0x200;
    const GICD_IPRIORITYR: usize = 0x400;
    /// The SPIs used: 64..80 (one ISPENDR word).
    const FIRST: u32 = 64;
    const COUNT: usize = 16;
    /// An SPI left disabled, then enabled.
    const LATE: u32 = 90;

    static ORDER: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    static LATE_SEEN: AtomicU64 = AtomicU64::new(0);
    static OTHERS: AtomicU64 = AtomicU64::new(0);

    fn on_irq(i: Irq) {
        match i {
            Irq::External(LATE) => {
                LATE_SEEN.store(LATE_SEEN.load(Ordering::SeqCst) + 1, Ordering::SeqCst)
            }
            Irq::External(n) if (FIRST..FIRST + COUNT as u32).contains(&n) => {
                let k = SEEN.load(Ordering::SeqCst);
                if k < COUNT {
                    ORDER[k].store(u64::from(n), Ordering::SeqCst);
                }
                SEEN.store(k + 1, Ordering::SeqCst);
            }
            _ => OTHERS.store(OTHERS.load(Ordering::SeqCst) + 1, Ordering::SeqCst),
        }
    }

    /// The priority of SPI `FIRST + k`: SPI 64 lowest (0xf0) ... SPI 79 highest (0x00),
    /// multiples of 16 (every GIC keeps the top four bits).
    fn priority(k: usize) -> u8 {
        (0xf0 - 0x10 * k) as u8
    }

    pub fn run() {
        let mut c = Checker::new("vgic");
        irq::set_handler(Some(on_irq));
        irq::init_cpu();
        for k in 0..COUNT {
            irq::external_enable(FIRST + k as u32);
        }
        // SAFETY: this VM's distributor (config): priorities, then all 16 pending at once.
        unsafe {
            for k in 0..COUNT {
                let n = FIRST as usize + k;
                let word = GICD + GICD_IPRIORITYR + (n & !3);
                let shift = (n % 4) * 8;
                let v = grt::mmio::read32(word) & !(0xff << shift);
                write32(word, v | (u32::from(priority(k)) << shift));
            }
            write32(GICD + GICD_ISPENDR + (FIRST as usize / 32) * 4, 0xffff);
            write32(
                GICD + GICD_ISPENDR + (LATE as usize / 32) * 4,
                1 << (LATE % 32),
            );
        }
        irq::enable();
        for _ in 0..1_000_000 {
            if SEEN.load(Ordering::SeqCst) >= COUNT {
                break;
            }
            core::hint::spin_loop();
        }
        c.eq("SPIs delivered", SEEN.load(Ordering::SeqCst), COUNT);
        let order: [u64; COUNT] = core::array::from_fn(|i| ORDER[i].load(Ordering::SeqCst));
        grt::println!("vgic: order {order:?}");
        for (i, &n) in order.iter().enumerate() {
            c.eq(
                format_args!("delivery {i}"),
                n,
                u64::from(FIRST) + (COUNT - 1 - i) as u64,
            );
        }
        c.eq(
            "disabled SPI not delivered",
            LATE_SEEN.load(Ordering::SeqCst),
            0,
        );
        irq::external_enable(LATE);
        for _ in 0..1_000_000 {
            if LATE_SEEN.load(Ordering::SeqCst) > 0 {
                break;
            }
            core::hint::spin_loop();
        }
        c.eq(
            "SPI delivered once enabled",
            LATE_SEEN.load(Ordering::SeqCst),
            1,
        );
        c.eq("other interrupts", OTHERS.load(Ordering::SeqCst), 0);
        c.finish();
    }
}

#[no_mangle]
fn main() {
    #[cfg(target_arch = "aarch64")]
    checks::run();
    #[cfg(not(target_arch = "aarch64"))]
    grt::fail("vgic", "the list-register overflow test is an aarch64 test");
}
