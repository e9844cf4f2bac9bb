//! Per-CPU timer deadlines where one hardware timer serves two clients (riscv64, x86_64):
//! the hypervisor's own deadline and the one the emulated timer of the guest running on that
//! CPU needs. The timer is armed for the earlier; the architecture supplies how it is armed.
//! Only their own CPU touches a CPU's deadlines, with interrupts masked or from its timer
//! interrupt.

use crate::percpu::PerCpu;
use axconfig::MAX_CPUS;
use core::sync::atomic::{AtomicU64, Ordering};

/// One CPU's deadlines, in counter ticks (`u64::MAX`: none).
struct Slot {
    host: AtomicU64,
    guest: AtomicU64,
}

/// Every CPU's host and guest timer deadlines.
pub(crate) struct Deadlines(PerCpu<Slot>);

impl Deadlines {
    /// No deadlines on any CPU.
    pub(crate) const fn new() -> Self {
        Self(PerCpu::new(
            [const {
                Slot {
                    host: AtomicU64::new(u64::MAX),
                    guest: AtomicU64::new(u64::MAX),
                }
            }; MAX_CPUS],
        ))
    }

    /// Sets this CPU's hypervisor deadline to `ticks` and arms the timer (`arm`) for the
    /// earlier of it and the guest's.
    pub(crate) fn set_host(&self, ticks: u64, arm: impl FnOnce(u64)) {
        let d = self.0.this();
        d.host.store(ticks, Ordering::Relaxed);
        arm(ticks.min(d.guest.load(Ordering::Relaxed)));
    }

    /// Sets the deadline of the guest running on this CPU to `ticks`; the timer is re-armed
    /// (`arm`, for the earlier of the two) only when it changes.
    pub(crate) fn set_guest(&self, ticks: u64, arm: impl FnOnce(u64)) {
        let d = self.0.this();
        if d.guest.swap(ticks, Ordering::Relaxed) != ticks {
            arm(d.host.load(Ordering::Relaxed).min(ticks));
        }
    }

    /// On a timer interrupt at counter value `now`, before its handler runs: a guest
    /// deadline that passed is done with (its vCPU sees the expiry when it next enters the
    /// guest), and the timer is re-armed (`arm`) for the hypervisor's own deadline so that
    /// the interrupt does not repeat.
    pub(crate) fn on_timer_interrupt(&self, now: u64, arm: impl FnOnce(u64)) {
        let d = self.0.this();
        let guest = d.guest.load(Ordering::Relaxed);
        if guest != u64::MAX && guest <= now {
            d.guest.store(u64::MAX, Ordering::Relaxed);
            arm(d.host.load(Ordering::Relaxed));
        }
    }
}
