//! Checks axvisor's hypercall ABI (docs/vmm.md): VERSION, ADD with six distinct arguments
//! and with wrapping, VM_ID against the id in its VM config, unknown numbers, and a line
//! printed one byte at a time through CONSOLE_PUTCHAR. Prints `PASS hypercall` only if every
//! result is the documented one. Then the firmware interface around the hypercalls: the SMC
//! Calling Convention on aarch64 (`PASS smccc`, [`smccc`]), SBI on riscv64 (`PASS sbi`,
//! [`sbi`]), the `vmcall` conduit on x86_64 (`PASS vmcall`, [`vmcall`]).
#![no_std]
#![no_main]

#[cfg(target_arch = "riscv64")]
mod sbi;
#[cfg(target_arch = "aarch64")]
mod smccc;
#[cfg(target_arch = "x86_64")]
mod vmcall;

use grt::check::Checker;
use grt::{hc, hypercall};

/// The `id` in `configs/vms/<arch>-hypercall.toml`: VM_ID must return it.
const EXPECTED_VM_ID: u64 = 2;

/// The line printed through CONSOLE_PUTCHAR (the scenarios expect it).
const PUTCHAR_LINE: &str = "hypercall: this line came through CONSOLE_PUTCHAR\n";

#[no_mangle]
fn main() {
    let mut c = Checker::new("hypercall");

    c.eq("VERSION", hypercall(hc::VERSION, [0; 6]), hc::ABI_VERSION);
    // Arguments are ignored by VERSION.
    c.eq(
        "VERSION with arguments",
        hypercall(hc::VERSION, [u64::MAX, 1, 2, 3, 4, 5]),
        hc::ABI_VERSION,
    );

    // ADD: each argument register counts exactly once (a distinct bit per register) ...
    c.eq("ADD 0 x6", hypercall(hc::ADD, [0; 6]), 0);
    c.eq(
        "ADD 1+2+4+8+16+32",
        hypercall(hc::ADD, [1, 2, 4, 8, 16, 32]),
        63,
    );
    for i in 0..6 {
        let mut args = [0; 6];
        args[i] = 0x100 << i;
        c.eq(
            format_args!("ADD with only arg {i}"),
            hypercall(hc::ADD, args),
            0x100 << i,
        );
    }
    // ... in all 64 bits (nothing truncated to 32) ...
    let high = [1 << 40, 1 << 41, 1 << 42, 1 << 43, 1 << 44, 1 << 45];
    c.eq("ADD high bits", hypercall(hc::ADD, high), 0x3f << 40);
    c.eq(
        "ADD full-width values",
        hypercall(
            hc::ADD,
            [0x0123_4567_89ab_cdef, 0x1000_0000_0000_0000, 0, 0, 0, 0],
        ),
        0x1123_4567_89ab_cdef,
    );
    // ... and the sum wraps.
    c.eq(
        "ADD u64::MAX + 2",
        hypercall(hc::ADD, [u64::MAX, 2, 0, 0, 0, 0]),
        1,
    );
    c.eq(
        "ADD 6 x u64::MAX",
        hypercall(hc::ADD, [u64::MAX; 6]),
        u64::MAX.wrapping_mul(6),
    );
    c.eq(
        "ADD 1 << 63 twice",
        hypercall(hc::ADD, [0, 0, 1 << 63, 0, 0, 1 << 63]),
        0,
    );

    let id = hypercall(hc::VM_ID, [0; 6]);
    c.eq("VM_ID", id, EXPECTED_VM_ID);
    c.eq("VM_ID again", hypercall(hc::VM_ID, [7; 6]), EXPECTED_VM_ID);

    c.eq(
        "RESET_COUNT on first boot",
        hypercall(hc::RESET_COUNT, [0; 6]),
        0,
    );

    for nr in [0x105, 0x1ff, 0xffff, 0x0100_0100] {
        c.eq(
            format_args!("unknown hypercall {nr:#x}"),
            hypercall(nr, [1, 2, 3, 4, 5, 6]),
            hc::NOT_SUPPORTED,
        );
    }

    // A whole line through the hypercall console, then its own PL011 / 16550 line again.
    let mut putchar_ok = true;
    for b in PUTCHAR_LINE.bytes() {
        putchar_ok &= hypercall(hc::CONSOLE_PUTCHAR, [u64::from(b), 0, 0, 0, 0, 0]) == 0;
    }
    // Only the low byte of argument 0 is written: 0x0a00 | '\n' ends a line as well.
    for &arg in &[
        0x4f00 | u64::from(b'o'),
        0xff00 | u64::from(b'k'),
        0x0a00 | 0x0a,
    ] {
        putchar_ok &= hypercall(hc::CONSOLE_PUTCHAR, [arg, 0xdead, 0, 0, 0, 0]) == 0;
    }
    c.ok("CONSOLE_PUTCHAR returns 0", putchar_ok);

    grt::println!(
        "hypercall: abi version {}, vm id {id}",
        hypercall(hc::VERSION, [0; 6])
    );
    c.finish();

    #[cfg(target_arch = "aarch64")]
    smccc::check();
    #[cfg(target_arch = "riscv64")]
    sbi::check();
    #[cfg(target_arch = "x86_64")]
    vmcall::check();
}
