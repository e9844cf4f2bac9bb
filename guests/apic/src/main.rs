//! Checks the virtual PC of an x86_64 VM (the `ioapic` device of its config) the way a PC
//! operating system meets it, with the local APIC in xAPIC mode (its register page at
//! 0xFEE0_0000) rather than grt's usual x2APIC MSRs:
//!
//! - CPUID offers the APIC, x2APIC and the TSC-deadline timer; `IA32_APIC_BASE` is
//!   0xFEE0_0900 on vCPU 0; the page's ID and version registers read 0 and 0x0005_0014.
//! - The timer in one-shot mode interrupts once and its current count then reads 0; in
//!   periodic mode it interrupts [`TICKS`] times, about one period apart, until its
//!   initial count is cleared.
//! - A self-IPI (ICR destination shorthand "self") arrives; two NMIs sent to itself arrive
//!   with interrupts masked, the second after the first's handler returned.
//! - The PIT's channel 0 (rate generator, about 1 ms) interrupts through I/O APIC input 2.
//! - `OUTSB` and `REP INSB` reach the CMOS RTC (a RAM byte written, then read back twice).
//! - INIT and a start-up IPI with vector 9 start vCPU 1 in real mode at 0x9000 (CS =
//!   0x0900, IP = 0), where a trampoline copied there writes a marker and its CS.
//!
//! Prints `PASS apic`, then powers the VM off the ACPI way: `SLP_TYP` 5 with `SLP_EN` written
//! to the PM1a control register (port 0x604).
#![no_std]
#![no_main]

#[cfg(target_arch = "x86_64")]
mod pc;

#[no_mangle]
fn main() {
    #[cfg(target_arch = "x86_64")]
    pc::run();
    #[cfg(not(target_arch = "x86_64"))]
    grt::fail("apic", "the virtual PC is x86_64's");
}
