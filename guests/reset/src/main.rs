//! Checks VM reset: on its first boot (RESET_COUNT 0) the guest changes a value in its
//! `.data`, prints `reset: first boot` and asks for a reset; after the reset (RESET_COUNT 1)
//! its image has been loaded again, so the value is the original one; it prints
//! `reset: after reset` and `PASS reset`, and powers off.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use grt::{hc, hypercall};

/// In `.data`: the image sets it, the first boot changes it, a reset reloads the image.
static DATA: AtomicU64 = AtomicU64::new(0x1234_5678_9abc_def0);

#[no_mangle]
fn main() {
    let data = DATA.load(Ordering::SeqCst);
    match hypercall(hc::RESET_COUNT, [0; 6]) {
        0 => {
            if data != 0x1234_5678_9abc_def0 {
                grt::fail("reset", format_args!("first boot: .data holds {data:#x}"));
                return;
            }
            DATA.store(0xdead, Ordering::SeqCst);
            grt::println!("reset: first boot");
            grt::reset();
        }
        1 => {
            grt::println!("reset: after reset");
            if data != 0x1234_5678_9abc_def0 {
                grt::fail(
                    "reset",
                    format_args!("after reset: .data holds {data:#x}: image not reloaded"),
                );
                return;
            }
            grt::pass("reset");
        }
        n => grt::fail("reset", format_args!("RESET_COUNT is {n}, expected 0 or 1")),
    }
}
