//! A guest that keeps its vCPU busy without ever leaving the VM: for [`RUN_MS`] it only
//! reads its counter (no MMIO, no hypercall, no interrupt), and notes the longest time
//! between two reads, which is the longest time its vCPU was not running. Two such VMs
//! pinned to one CPU must share it: each must be stalled at most [`MAX_STALL_MS`] at a
//! time (the hypervisor gives a vCPU a time slice while another waits for its CPU; without
//! one, the hog that runs first would keep the CPU for its whole run). Prints the longest
//! stall and `PASS hog`.
#![no_std]
#![no_main]

use grt::check::Checker;
use grt::irq;

/// How long the guest computes, in milliseconds of its counter.
const RUN_MS: u64 = 1500;
/// The longest stall that still counts as sharing the CPU: far more than a time slice
/// (the emulator's vCPU threads compete for a loaded host), far less than a run.
const MAX_STALL_MS: u64 = 500;

#[no_mangle]
fn main() {
    let mut c = Checker::new("hog");
    let ms = |t: u64| t * 1000 / irq::timer_freq();
    grt::println!("hog: computing for {RUN_MS} ms");
    let start = irq::timer_now();
    let end = start + RUN_MS * irq::timer_freq() / 1000;
    let (mut last, mut worst) = (start, 0);
    loop {
        let now = irq::timer_now();
        worst = worst.max(now - last);
        last = now;
        if now >= end {
            break;
        }
    }
    grt::println!("hog: longest stall {} ms", ms(worst));
    c.ok(
        format_args!("stalled at most {MAX_STALL_MS} ms at a time"),
        ms(worst) <= MAX_STALL_MS,
    );
    c.finish();
}
