//! Monotonic time and the per-CPU one-shot timer.

use crate::arch;

/// Nanoseconds in a second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Counter ticks per second.
pub fn ticks_per_sec() -> u64 {
    arch::ticks_per_sec()
}

/// Raw counter value (same on every CPU).
#[inline]
pub fn ticks() -> u64 {
    arch::now_ticks()
}

/// Converts ticks to nanoseconds.
pub fn ticks_to_ns(t: u64) -> u64 {
    (t as u128 * NANOS_PER_SEC as u128 / ticks_per_sec() as u128) as u64
}

/// Converts nanoseconds to ticks (rounding up so a deadline is never early).
pub fn ns_to_ticks(ns: u64) -> u64 {
    (ns as u128 * ticks_per_sec() as u128).div_ceil(NANOS_PER_SEC as u128) as u64
}

/// Nanoseconds since the counter started.
pub fn now_ns() -> u64 {
    ticks_to_ns(ticks())
}

/// Arms this CPU's timer to interrupt at `deadline_ns` (now or in the past: at once);
/// `u64::MAX` disarms it.
pub fn set_oneshot(deadline_ns: u64) {
    let t = if deadline_ns == u64::MAX {
        u64::MAX
    } else {
        ns_to_ticks(deadline_ns)
    };
    arch::set_timer_deadline(t)
}
