//! Checks the exceptions of an AArch32 EL0 under the hypervisor (aarch64). The guest's EL1
//! (AArch64, grt) runs small A32 and T32 programs at EL0 (AArch32 user mode, written as
//! hand-encoded words: the aarch64 assembler has no A32/T32) and checks, with its own
//! handlers at VBAR_EL1 + 0x600 and + 0x680, what arrives:
//!
//! - **mmio**: loads and a store to the emulated PL011 (16- and 32-bit T32 encodings, and a
//!   16-bit load inside an IT block): the values are the FR the EL1 reads, the character
//!   written shows on the console, the PC moves by each instruction's length and ITSTATE
//!   advances (the IT block's else-instruction does not run);
//! - **fault**: a load and a store to an address nothing claims and, in A32, an LDM from
//!   the PL011 (ISV = 0, undecodable): each is a data abort from a lower EL (EC 0x24) at
//!   VBAR_EL1 + 0x600, with the faulting address, ELR at the instruction, SPSR the AArch32
//!   user PSTATE (T for T32), IL = 1, DFSC 0x10; the handler skips the instruction (2 or 4
//!   bytes, read from it: IL is 1 for every data abort without ISV);
//! - **cp15**: MRCs EL0 may not do, at VBAR_EL1 + 0x600: SCTLR is UNDEFINED (EC 0x00); PMCR
//!   (the PMU the hypervisor hides) traps to EL1 as an MRC (EC 0x03), since the vCPU keeps
//!   PMUSERENR_EL0 at 0;
//! - **timer**: a WFI (16-bit in T32) with the virtual timer armed, in a loop until the
//!   count of timer interrupts is non-zero (a WFI may end early): the hypervisor halts the
//!   vCPU, the timer's IRQ arrives at VBAR_EL1 + 0x680 with ELR right after the WFI.
//!
//! Each program ends with an SVC (EC 0x11), which returns to the EL1 code that started it.
//! Last, an exception return to AArch32 EL1 (which HCR_EL2.RW forbids) is illegal: the
//! next instruction takes an Illegal Execution state exception (EC 0x0E) at EL1.
//! Prints `PASS aarch32`.
//!
//! riscv64 has no AArch32; the guest is built for it only because every guest is, and says
//! so with a `FAIL`.
#![no_std]
#![no_main]

#[cfg(target_arch = "aarch64")]
mod el0;

#[no_mangle]
fn main() {
    #[cfg(target_arch = "aarch64")]
    el0::run();
    #[cfg(not(target_arch = "aarch64"))]
    grt::fail("aarch32", "AArch32 is an aarch64 test");
}
