//! A guest that keeps its vCPU busy without ever taking an interrupt: for [`RUN_MS`] it
//! reads its counter and notes the longest time between two reads, which is the longest
//! time its vCPU was not running. It alternates phases of [`PHASE_MS`]: in one it only
//! computes (it never leaves the VM), in the next it also reads its UART's status register
//! on every step (it leaves the VM all the time, but only for MMIO, which the hypervisor
//! answers and re-enters the guest).
//!
//! Two such VMs pinned to one CPU must share it: each must be stalled at most
//! [`MAX_STALL_MS`] at a time. The hypervisor gives a vCPU a time slice while another waits
//! for its CPU; without one, the hog that runs first would keep the CPU for its whole run.
//! The MMIO phases check that the slice's end is not lost when its timer interrupt arrives
//! while the hypervisor is handling an exit. Prints a heartbeat with the longest stall so
//! far every [`HEARTBEAT_MS`], then the longest stall and `PASS hog`.
#![no_std]
#![no_main]

use grt::check::Checker;
use grt::irq;

/// How long the guest computes, in milliseconds of its counter (`HOG_MS` in the build's
/// environment changes it: `cargo xtask soak` runs it beside a long chaos run).
const RUN_MS: u64 = match option_env!("HOG_MS") {
    Some(ms) => match u64::from_str_radix(ms, 10) {
        Ok(ms) => ms,
        Err(_) => panic!("HOG_MS: not a decimal number"),
    },
    None => 1500,
};
/// How often it says it is alive, with the longest stall so far.
const HEARTBEAT_MS: u64 = 1000;
/// How long each phase (compute only, compute and MMIO) lasts, in milliseconds.
const PHASE_MS: u64 = 100;
/// The longest stall that still counts as sharing the CPU: far more than a time slice
/// (the emulator's vCPU threads compete for a loaded host), far less than a run.
const MAX_STALL_MS: u64 = 500;

#[no_mangle]
fn main() {
    let mut c = Checker::new("hog");
    let hz = irq::timer_freq();
    let ms = |t: u64| t * 1000 / hz;
    grt::println!("hog: computing for {RUN_MS} ms, every other {PHASE_MS} ms with MMIO reads");
    let start = irq::timer_now();
    let end = start + RUN_MS * hz / 1000;
    let phase = PHASE_MS * hz / 1000;
    let (mut last, mut worst, mut reads) = (start, 0, 0u64);
    let heartbeat = HEARTBEAT_MS * hz / 1000;
    let (mut beats, mut next_beat) = (0u64, start + heartbeat);
    loop {
        let now = irq::timer_now();
        worst = worst.max(now - last);
        last = now;
        if now >= end {
            break;
        }
        if now >= next_beat {
            beats += 1;
            next_beat += heartbeat;
            grt::println!(
                "hog: heartbeat {beats}, longest stall so far {} ms",
                ms(worst)
            );
        }
        if (now - start) / phase % 2 == 1 {
            let _ = grt::console::status();
            reads += 1;
        }
    }
    grt::println!("hog: longest stall {} ms ({reads} MMIO reads)", ms(worst));
    c.ok(format_args!("made MMIO reads"), reads > 0);
    c.ok(
        format_args!("stalled at most {MAX_STALL_MS} ms at a time"),
        ms(worst) <= MAX_STALL_MS,
    );
    c.finish();
}
