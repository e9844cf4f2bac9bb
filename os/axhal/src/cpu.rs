//! CPU identity and bring-up.
//!
//! CPUs are numbered 0.. in device-tree order ("logical ids"; on x86_64 in the order of the
//! MADT's enabled local APICs); the boot CPU is whichever the firmware started (on riscv64
//! OpenSBI may pick any hart).

use crate::{arch, platform};

/// Logical id of the CPU running this code.
#[inline]
pub fn id() -> usize {
    arch::cpu_id()
}

/// Number of CPUs the hypervisor manages (the DTB's or MADT's, capped at
/// `axconfig::MAX_CPUS`).
pub fn count() -> usize {
    platform::info().cpus.len()
}

/// Why a CPU did not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// No such logical CPU.
    NoSuchCpu,
    /// The firmware refused (PSCI / SBI error code).
    Firmware(isize),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::NoSuchCpu => write!(f, "no such CPU"),
            StartError::Firmware(e) => write!(f, "firmware returned error {e}"),
        }
    }
}

/// Starts logical CPU `cpu` on a stack whose top is `stack_top`; it enters the runtime's
/// `__axstd_secondary_main(cpu)`.
pub fn start(cpu: usize, stack_top: usize) -> Result<(), StartError> {
    let hw_id = platform::info()
        .cpus
        .get(cpu)
        .ok_or(StartError::NoSuchCpu)?
        .hw_id;
    arch::start_cpu(cpu, hw_id, stack_top)
}

/// Waits until an interrupt is pending (the CPU may sleep). Call with interrupts masked after
/// checking there is nothing to do; unmask afterwards to take the interrupt.
#[inline]
pub fn wait_for_irq() {
    arch::wait_for_irq()
}
