//! Powering the machine off or resetting it through the firmware (PSCI / SBI SRST).

use crate::arch;

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
