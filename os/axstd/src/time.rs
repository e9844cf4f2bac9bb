//! Monotonic time.

pub use core::time::Duration;

/// Time since the counter started.
pub fn now() -> Duration {
    Duration::from_nanos(axhal::time::now_ns())
}

/// The counter's frequency in Hz.
pub fn counter_hz() -> u64 {
    axhal::time::ticks_per_sec()
}

/// Monotonic time of a value of the system counter (CNTPCT_EL0 / the RISC-V `time` CSR):
/// how guest timer deadlines become host deadlines.
pub fn counter_to_time(ticks: u64) -> Duration {
    Duration::from_nanos(axhal::time::ticks_to_ns(ticks))
}
