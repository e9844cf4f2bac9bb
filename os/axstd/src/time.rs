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
