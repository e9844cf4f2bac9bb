//! The hypervisor's console (PL011 on aarch64, the SBI console on riscv64, the COM1 16550
//! on x86_64).
//!
//! Output from several CPUs is serialized by one lock, taken with interrupts masked.

use crate::{arch, irq};
use spin::Mutex;

static LOCK: Mutex<()> = Mutex::new(());

/// Writes `bytes` as one unit (no other CPU's output interleaves), turning `\n` into `\r\n`.
pub fn write_bytes(bytes: &[u8]) {
    let state = irq::save_and_disable();
    {
        let _g = LOCK.lock();
        for &b in bytes {
            if b == b'\n' {
                arch::putchar(b'\r');
            }
            arch::putchar(b);
        }
    }
    irq::restore(state);
}

/// Writes without taking the lock: for paths that must print even if the lock is held.
pub fn write_bytes_unlocked(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            arch::putchar(b'\r');
        }
        arch::putchar(b);
    }
}

/// Takes the console lock for good, for a last message before the machine stops: other CPUs'
/// output stops interleaving with it. If the lock stays held for a long while (perhaps by the
/// failing CPU itself), goes on without it.
pub fn seize() {
    for _ in 0..10_000_000 {
        if let Some(g) = LOCK.try_lock() {
            core::mem::forget(g);
            return;
        }
        core::hint::spin_loop();
    }
}

/// A `core::fmt::Write` sink over [`write_bytes_unlocked`].
pub struct RawWriter;

impl core::fmt::Write for RawWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write_bytes_unlocked(s.as_bytes());
        Ok(())
    }
}
