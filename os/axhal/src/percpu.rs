//! Per-CPU data: one slot per logical CPU, the current CPU's found through the register the
//! architecture keeps its id in (TPIDR_EL2 on aarch64, `tp` on riscv64, `gs:[0]` on x86_64).

use axconfig::MAX_CPUS;

/// A value for each CPU. `T` must be `Sync` because any CPU may reach another's slot through
/// [`PerCpu::get`]; use atomics or locks inside for what other CPUs change.
pub struct PerCpu<T> {
    slots: [T; MAX_CPUS],
}

impl<T> PerCpu<T> {
    /// Slots built from `slots` (typically `[const { ... }; MAX_CPUS]`).
    pub const fn new(slots: [T; MAX_CPUS]) -> Self {
        Self { slots }
    }

    /// The running CPU's slot.
    #[inline]
    pub fn this(&self) -> &T {
        &self.slots[crate::cpu::id()]
    }

    /// CPU `cpu`'s slot.
    ///
    /// # Panics
    /// If `cpu >= MAX_CPUS` (a logical id never is).
    #[inline]
    pub fn get(&self, cpu: usize) -> &T {
        &self.slots[cpu]
    }
}
