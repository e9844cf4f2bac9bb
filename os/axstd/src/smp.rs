//! Bringing the other CPUs online.

use crate::println;
use alloc::vec;
use axconfig::STACK_SIZE;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;

static ONLINE: AtomicUsize = AtomicUsize::new(1);

/// How long a CPU has to report online after the firmware started it.
const START_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the boot CPU looks whether a started CPU has come online.
const POLL_INTERVAL: Duration = Duration::from_micros(100);

/// Number of CPUs online.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// Called by each secondary CPU once it runs tasks.
pub(crate) fn mark_online() {
    ONLINE.fetch_add(1, Ordering::AcqRel);
}

/// Starts every CPU of the device tree other than this one, one at a time, waiting for each
/// to come online. A CPU that fails to start is reported and skipped. Returns the number of
/// CPUs online.
pub fn start_secondaries() -> usize {
    let me = axhal::cpu::id();
    println!("cpu {me}: online (boot cpu)");
    for cpu in (0..axhal::cpu::count()).filter(|&c| c != me) {
        // The stack lives as long as the CPU: leak it on purpose.
        let stack = vec![0u128; STACK_SIZE / 16].leak();
        let top = stack.as_ptr() as usize + STACK_SIZE;
        let before = online();
        if let Err(e) = axhal::cpu::start(cpu, top) {
            log::warn!("cpu {cpu}: could not start: {e}");
            continue;
        }
        let deadline = crate::time::now() + START_TIMEOUT;
        while online() == before {
            if crate::time::now() > deadline {
                log::warn!("cpu {cpu}: started but never came online");
                break;
            }
            // Sleep rather than spin: under QEMU's -icount the vCPUs share one thread, and a
            // spinning CPU with no timer armed keeps it for up to 2^31 instructions (2.1 s
            // of virtual time at shift=0) before the starting CPU runs at all.
            axtask::sleep(POLL_INTERVAL);
        }
    }
    online()
}

/// The physical CPU this code runs on.
pub fn this_cpu() -> usize {
    axhal::cpu::id()
}

/// Interrupts physical CPU `cpu` (an IPI): whatever it runs — a guest included — is
/// interrupted, and a task woken for it gets to run.
pub fn kick(cpu: usize) {
    axhal::irq::send_ipi(cpu);
}
