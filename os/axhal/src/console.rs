//! The hypervisor's console (PL011 on aarch64, the SBI console on riscv64, the COM1 16550
//! on x86_64).
//!
//! Output from several CPUs is serialized by one lock, taken with interrupts masked.
//!
//! **The bottom line.** An interactive program on the console (the shell) keeps its
//! current line — prompt and what is being typed — as the console's *bottom line*
//! ([`write_owned`]): other output ([`write_bytes`]) erases it (`CR`, `ESC [ K`), is written
//! on its row, and the bottom line is written again below, so lines from VMs and the log
//! never run into the line being typed and it is never lost.
//!
//! **Input** ([`read_byte`]) is polled: the caller asks for the next received byte.

use crate::{arch, irq};
use spin::Mutex;

/// The longest bottom line kept, in bytes (prompt, line and the cursor moves that put the
/// cursor back where it was).
pub const BOTTOM_LINE_CAP: usize = 256;

/// What erases the bottom line: back to its first column, clear to the end of the row.
const ERASE: &[u8] = b"\r\x1b[K";

/// The bytes that redraw the bottom line; none when `len` is 0.
struct BottomLine {
    bytes: [u8; BOTTOM_LINE_CAP],
    len: usize,
}

static LOCK: Mutex<BottomLine> = Mutex::new(BottomLine {
    bytes: [0; BOTTOM_LINE_CAP],
    len: 0,
});

fn put_raw(bytes: &[u8]) {
    for &b in bytes {
        arch::putchar(b);
    }
}

/// Writes `bytes` as one unit (no other CPU's output interleaves), turning `\n` into `\r\n`.
/// With a bottom line, it is erased first and written again after `bytes` (on a line of
/// its own: a missing final line end is added).
pub fn write_bytes(bytes: &[u8]) {
    let state = irq::save_and_disable();
    {
        let bottom = LOCK.lock();
        let redraw = &bottom.bytes[..bottom.len];
        if !redraw.is_empty() {
            put_raw(ERASE);
        }
        for &b in bytes {
            if b == b'\n' {
                arch::putchar(b'\r');
            }
            arch::putchar(b);
        }
        if !redraw.is_empty() {
            if !bytes.ends_with(b"\n") {
                put_raw(b"\r\n");
            }
            put_raw(redraw);
        }
    }
    irq::restore(state);
}

/// Writes the bottom line's owner's `bytes` exactly as given (they are its own echo and
/// redraws, not other output), then makes `bottom` the bottom line that [`write_bytes`]
/// keeps below other output (`&[]`: none). `bottom` must redraw the line from its first
/// column, leaving the cursor where the owner has it; one longer than [`BOTTOM_LINE_CAP`]
/// is not kept.
pub fn write_owned(bytes: &[u8], bottom: &[u8]) {
    let state = irq::save_and_disable();
    {
        let mut line = LOCK.lock();
        put_raw(bytes);
        let len = if bottom.len() <= BOTTOM_LINE_CAP {
            bottom.len()
        } else {
            0
        };
        line.bytes[..len].copy_from_slice(&bottom[..len]);
        line.len = len;
    }
    irq::restore(state);
}

/// The next byte the console received, if one waits; never waits itself (polled: call it
/// again later).
pub fn read_byte() -> Option<u8> {
    arch::getchar()
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
