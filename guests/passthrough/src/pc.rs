//! The passthrough test on x86_64 (see `main.rs`): the PC's second 16550 (COM2, ports
//! 0x2F8..0x300) given to the VM as passthrough ports, and the PC's HPET register page
//! (0xFED0_0000) as a passthrough range. The guest drives both itself: what it reads back
//! can only come from the emulator's devices, since the hypervisor emulates neither.

use grt::check::Checker;
use grt::mmio::{read32, write32};
use grt::pio::{inb, outb};

/// COM2's first port.
const COM2: u16 = 0x2f8;
/// Its registers, as offsets from [`COM2`].
const THR_RBR: u16 = 0;
const IER: u16 = 1;
const FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const SCR: u16 = 7;
/// LSR: a received byte waits (bit 0); the transmitter takes a byte (bit 5).
const LSR_DR: u8 = 1 << 0;
const LSR_THRE: u8 = 1 << 5;
/// MCR bit 4: the UART's output is wired back to its input.
const MCR_LOOPBACK: u8 = 1 << 4;
/// How often LSR is read before a byte counts as lost.
const POLLS: u32 = 5_000_000;

/// The line the guest sends through COM2, looped back byte by byte, then out.
const LINE: &[u8] = b"passthrough: a line through the host's COM2\r\n";

/// A port next to COM2's (0x2F0..0x2F8) that the VM has not been given: its accesses
/// exit and get the VM's unclaimed policy (read-zero), not the machine's 0xFF.
const NOT_GIVEN: u16 = 0x2f7;

/// The HPET's register page and its registers.
const HPET: usize = 0xfed0_0000;
const HPET_CAP_LOW: usize = 0x00;
const HPET_PERIOD: usize = 0x04;
const HPET_CONFIG: usize = 0x10;
const HPET_COUNTER_LOW: usize = 0xf0;
/// The HPET's longest allowed period: 100 ns, in femtoseconds.
const HPET_MAX_PERIOD_FS: u32 = 100_000_000;

/// Reads COM2's register `reg`.
fn com2_in(reg: u16) -> u8 {
    // SAFETY: COM2's registers are this VM's (passthrough ports); reading them has no
    // effect beyond the UART's own state, which only this guest uses.
    unsafe { inb(COM2 + reg) }
}

/// Writes COM2's register `reg`.
fn com2_out(reg: u16, value: u8) {
    // SAFETY: as in `com2_in`.
    unsafe { outb(COM2 + reg, value) }
}

/// Waits until LSR has `bit`; whether it came.
fn wait_lsr(bit: u8) -> bool {
    (0..POLLS).any(|_| com2_in(LSR) & bit != 0)
}

/// Runs the checks; prints `PASS passthrough` if every one holds.
pub fn run() {
    let mut c = Checker::new("passthrough");
    com2(&mut c);
    hpet(&mut c);
    c.finish();
}

/// COM2: its scratch register holds what the guest writes, the UART loops a line back in
/// loopback mode, and the line then goes out; a port beside it still exits.
fn com2(c: &mut Checker) {
    let mut scratch = true;
    for v in [0x5a, 0xa5, 0x00, 0xff] {
        com2_out(SCR, v);
        scratch &= c.eq("COM2 scratch register", com2_in(SCR), v);
    }
    // 8N1 at 115200 (divisor 1), no interrupts, FIFOs on and cleared.
    com2_out(IER, 0);
    com2_out(LCR, 0x80);
    com2_out(THR_RBR, 1);
    com2_out(IER, 0);
    com2_out(LCR, 0x03);
    com2_out(FCR, 0x07);
    com2_out(MCR, MCR_LOOPBACK);
    while com2_in(LSR) & LSR_DR != 0 {
        com2_in(THR_RBR);
    }
    let mut looped = 0;
    for &b in LINE {
        if !c.ok("COM2 takes a byte", wait_lsr(LSR_THRE)) {
            break;
        }
        com2_out(THR_RBR, b);
        if !c.ok("COM2 loops the byte back", wait_lsr(LSR_DR)) {
            break;
        }
        if c.eq("COM2 looped-back byte", com2_in(THR_RBR), b) {
            looped += 1;
        }
    }
    com2_out(MCR, 0x03);
    for &b in LINE {
        wait_lsr(LSR_THRE);
        com2_out(THR_RBR, b);
    }
    if scratch && looped == LINE.len() {
        grt::println!(
            "passthrough: COM2 at ports 0x2f8..0x300 is the machine's: scratch register and {looped} bytes looped back"
        );
    }
    // SAFETY: a port of no device, not given to this VM: the hypervisor answers it.
    let beside = unsafe { inb(NOT_GIVEN) };
    if c.eq("port 0x2f7 (not given: read-zero)", beside, 0) {
        grt::println!("passthrough: port 0x2f7 beside them still exits (read as 0)");
    }
}

/// Reads HPET register `reg`.
fn hpet_read(reg: usize) -> u32 {
    // SAFETY: the HPET page is this VM's (a passthrough range, mapped uncached); its
    // registers read without side effects.
    unsafe { read32(HPET + reg) }
}

/// HPET: the capability register names Intel (0x8086) with a period the specification
/// allows, and the main counter, once enabled, runs.
fn hpet(c: &mut Checker) {
    let cap = hpet_read(HPET_CAP_LOW);
    let period = hpet_read(HPET_PERIOD);
    let mut ok = c.eq("HPET vendor id", cap >> 16, 0x8086);
    ok &= c.ok("HPET revision not 0", cap & 0xff != 0);
    ok &= c.ok(
        "HPET period in 1..=100 ns",
        (1..=HPET_MAX_PERIOD_FS).contains(&period),
    );
    let config = hpet_read(HPET_CONFIG);
    // SAFETY: as in `hpet_read`; the hypervisor does not use the HPET, so its counter is
    // this guest's to start and stop.
    unsafe { write32(HPET + HPET_CONFIG, config | 1) };
    let first = hpet_read(HPET_COUNTER_LOW);
    let moved = (0..POLLS).any(|_| hpet_read(HPET_COUNTER_LOW) != first);
    // SAFETY: as above.
    unsafe { write32(HPET + HPET_CONFIG, config) };
    ok &= c.ok("HPET main counter runs once enabled", moved);
    if ok {
        grt::println!(
            "passthrough: HPET at 0xfed00000: vendor 0x8086, period {period} fs, counter running"
        );
    }
}
