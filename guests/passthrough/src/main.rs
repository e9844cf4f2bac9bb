//! Checks a passthrough device: a real-time clock of QEMU `virt`, mapped into the VM at its
//! host address with its interrupt routed to the VM only — the PL031 on aarch64 (SPI 2,
//! INTID 34, on the VM's virtual GIC), the goldfish RTC on riscv64 (source 11 of the VM's
//! virtual PLIC, the same as on the host's).
//!
//! The guest reads the clock (a plausible wall-clock time), then [`ROUNDS`] times arms an
//! alarm shortly ahead and waits for its interrupt, which the handler clears at the device:
//! each alarm after the first shows the hypervisor unmasked the physical interrupt once the
//! guest had handled the one before. The handler leaves the last alarm's interrupt asserted
//! the first time it sees it: once the guest completes it, the hypervisor unmasks the
//! physical interrupt, which must come again (level semantics; on riscv64 the guest has
//! the device drive its line once more, as QEMU's PLIC model re-samples a line only when
//! the device drives it); the handler clears it then. With nothing armed the guest then waits [`QUIET_MS`] and checks that no other
//! RTC interrupt came: a line the hypervisor did not mask while the guest handled it, or
//! did not lower when the guest ended it, would storm. Prints `passthrough: alarm N
//! arrived`, `passthrough: the alarm left asserted interrupted again`, `passthrough: N rtc
//! interrupts for N alarms` and `PASS passthrough`.
//!
//! On x86_64 ([`pc`]) the devices are the PC's second 16550 (COM2, passthrough I/O ports)
//! and its HPET (a passthrough range); x86 VMs take no passthrough interrupts yet.
#![no_std]
#![no_main]

#[cfg(not(target_arch = "x86_64"))]
mod checks;
#[cfg(target_arch = "x86_64")]
mod pc;

#[no_mangle]
fn main() {
    #[cfg(not(target_arch = "x86_64"))]
    checks::run();
    #[cfg(target_arch = "x86_64")]
    pc::run();
}
