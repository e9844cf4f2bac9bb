//! Interrupt hardware of the guest (placeholder: to be written).
//!
//! The functions re-exported by `crate::irq`; see there for what each does.

/// Sets up this vCPU's interrupt controller interface, timer and IPIs.
pub fn init_cpu() {}
/// Unmasks interrupts on this vCPU.
pub fn enable() {}
/// Masks interrupts on this vCPU.
pub fn disable() {}
/// The timer's counter.
pub fn timer_now() -> u64 {
    0
}
/// The timer's frequency in Hz.
pub fn timer_freq() -> u64 {
    1
}
/// Arms the one-shot timer for counter value `deadline`.
pub fn timer_set(_deadline: u64) {}
/// Stops the timer.
pub fn timer_stop() {}
/// Sends an IPI to vCPU `cpu`.
pub fn send_ipi(_cpu: usize) {}
/// Enables device interrupt `n`, delivered to this vCPU.
pub fn external_enable(_n: u32) {}
/// Disables device interrupt `n`.
pub fn external_disable(_n: u32) {}
