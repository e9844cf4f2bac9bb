//! Checks VM reset: on its first boot (RESET_COUNT 0) the guest changes a value in its
//! `.data`, writes a marker in the last word of its RAM, prints `reset: first boot` and asks
//! for a reset. After the reset (RESET_COUNT 1) its image has been loaded again, so the
//! `.data` value is the original one, while the rest of RAM kept its contents (a warm reset,
//! as `AxVm::reset` documents), so the marker is still there. It prints
//! `reset: after reset` and `PASS reset`, and powers off.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use grt::{hc, hypercall};

/// In `.data`: the image sets it, the first boot changes it, a reset reloads the image.
static DATA: AtomicU64 = AtomicU64::new(0x1234_5678_9abc_def0);

/// The last word of RAM, outside the image: a reset keeps RAM contents apart from the
/// images (`AxVm::reset`: "like a warm reset").
const MARKER_ADDR: u64 = grt::RAM_BASE + grt::RAM_SIZE - 8;
const MARKER: u64 = 0x5e75_e75e_c0de_0001;

fn marker() -> u64 {
    // SAFETY: the last word of this VM's RAM, far above its image and stack; nothing else
    // uses it.
    unsafe { core::ptr::read_volatile(MARKER_ADDR as *const u64) }
}

#[no_mangle]
fn main() {
    let data = DATA.load(Ordering::SeqCst);
    match hypercall(hc::RESET_COUNT, [0; 6]) {
        0 => {
            if data != 0x1234_5678_9abc_def0 {
                grt::fail("reset", format_args!("first boot: .data holds {data:#x}"));
                return;
            }
            let m = marker();
            if m != 0 {
                grt::fail(
                    "reset",
                    format_args!("first boot: RAM end holds {m:#x}, not 0"),
                );
                return;
            }
            DATA.store(0xdead, Ordering::SeqCst);
            // SAFETY: as in `marker`.
            unsafe { core::ptr::write_volatile(MARKER_ADDR as *mut u64, MARKER) };
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
            let m = marker();
            if m != MARKER {
                grt::fail(
                    "reset",
                    format_args!("after reset: RAM end holds {m:#x}, expected {MARKER:#x}"),
                );
                return;
            }
            grt::pass("reset");
        }
        n => grt::fail("reset", format_args!("RESET_COUNT is {n}, expected 0 or 1")),
    }
}
