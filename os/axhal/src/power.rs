//! Powering the machine off or resetting it through the firmware (PSCI / SBI SRST).

use crate::arch;
use core::fmt::Write;

/// Powers the machine off. Under QEMU this ends the emulator with status 0.
pub fn shutdown() -> ! {
    arch::system_off()
}

/// Stops this CPU for good with interrupts masked; the other CPUs go on.
pub fn halt() -> ! {
    arch::irq_disable();
    loop {
        arch::wait_for_irq();
    }
}

/// Prints `axvisor: fatal: <args>` (without taking the console lock, which the failing CPU may
/// hold) and powers the machine off. For errors the hypervisor cannot continue after: a bad
/// firmware hand-over, an unexpected exception in the hypervisor itself.
pub fn fatal(args: core::fmt::Arguments) -> ! {
    arch::irq_disable();
    crate::console::seize();
    let _ = write!(crate::console::RawWriter, "\naxvisor: fatal: {args}\n");
    shutdown()
}
