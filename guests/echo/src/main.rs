//! A guest that runs until it is stopped and echoes what its UART receives: the VM the
//! shell's scenarios stop, start and list while another runs.
//!
//! It prints `echo: ready` and its prompt `echo> ` (no newline, like a shell's), then sleeps
//! on its timer and wakes every [`POLL_US`] to read every byte its UART holds: printable
//! ones are echoed, and a line end (CR or LF) ends the line (CR LF counts once), answered
//! with `echo: got "LINE"` and the prompt again. For its first [`TICKS`]
//! seconds it prints `echo: tick N` every second (so a scenario can wait for time to pass on
//! its console, without flooding an interactive session later). It never powers off by
//! itself.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};

use grt::irq::{self, Irq};

/// How often it looks at its UART, in microseconds.
const POLL_US: u64 = 20_000;
/// Polls per `echo: tick` line (one second).
const TICK_POLLS: u64 = 1_000_000 / POLL_US;
/// How many `echo: tick` lines it prints.
const TICKS: u64 = 5;
/// The longest line kept; further bytes of a line are dropped.
const LINE_MAX: usize = 80;

/// Set by the timer interrupt.
static TICK: AtomicBool = AtomicBool::new(false);

fn on_irq(irq: Irq) {
    if irq == Irq::Timer {
        TICK.store(true, Ordering::SeqCst);
    }
}

/// Sleeps (wfi) until the timer, armed `POLL_US` ahead, has fired.
fn sleep_one_poll() {
    TICK.store(false, Ordering::SeqCst);
    irq::timer_set(irq::timer_now() + irq::timer_freq() * POLL_US / 1_000_000);
    irq::disable();
    while !TICK.load(Ordering::SeqCst) {
        grt::wait_for_interrupt();
        irq::enable();
        irq::disable();
    }
    irq::enable();
}

#[no_mangle]
fn main() {
    irq::set_handler(Some(on_irq));
    irq::init_cpu();
    irq::enable();
    grt::println!("echo: ready");
    grt::print!("echo> ");
    let mut line = [0u8; LINE_MAX];
    let mut len = 0;
    let mut after_cr = false;
    let mut polls = 0u64;
    loop {
        sleep_one_poll();
        polls += 1;
        if polls.is_multiple_of(TICK_POLLS) && polls / TICK_POLLS <= TICKS {
            grt::println!("echo: tick {}", polls / TICK_POLLS);
        }
        while let Some(byte) = grt::console::getc() {
            // CR LF ends one line, not two.
            let lf_of_crlf = after_cr && byte == b'\n';
            after_cr = byte == b'\r';
            match byte {
                _ if lf_of_crlf => {}
                b'\r' | b'\n' => {
                    let text = core::str::from_utf8(&line[..len]).unwrap_or("");
                    grt::println!();
                    grt::println!("echo: got {text:?}");
                    grt::print!("echo> ");
                    len = 0;
                }
                0x20..=0x7e if len < LINE_MAX => {
                    line[len] = byte;
                    len += 1;
                    grt::print!("{}", byte as char);
                }
                _ => {}
            }
        }
    }
}
