//! x86_64 on a PC (QEMU q35, Bochs), loaded by a multiboot loader; VMX or SVM is the vCPU
//! crate's business.
//!
//! - `boot`: the multiboot header, the 32-bit entry, the boot page tables, long mode, and the
//!   real-mode trampoline of secondary CPUs.
//! - `init`: the boot CPU's and the secondaries' set-up in Rust.
//! - `gdt`: each CPU's GDT, TSS (IST stacks) and per-CPU area (GS base, the CPU id).
//! - `trap`: the IDT, the register dump, the vector numbering and dispatch.
//! - `apic`: the local APIC (x2APIC or xAPIC), its timer (TSC-deadline or calibrated
//!   one-shot), IPIs and INIT-SIPI-SIPI.
//! - `ioapic`: the I/O APIC (device interrupts).
//! - `acpi`: CPUs and APICs from the MADT, power off through the FADT's PM1 ports.
//! - `mmu`: RAM above 4 GiB in the identity map.
//! - `context`: task context switch.
//! - `uart`: the COM1 16550 console.
//! - `pci`: PCI configuration space through ports 0xCF8/0xCFC.
//! - `regs`: port I/O, MSRs, CPUID, the TSC.

mod acpi;
mod apic;
mod boot;
mod context;
mod gdt;
mod init;
mod ioapic;
mod mmu;
pub(crate) mod pci;
mod regs;
mod trap;
mod uart;

pub use context::{context_switch, TaskContext};
pub use gdt::cpu_id;
pub use uart::{getchar, putchar};

use crate::cpu::StartError;
use crate::deadlines::Deadlines;

/// RFLAGS.IF.
const RFLAGS_IF: usize = 1 << 9;

/// `sti`.
#[inline]
pub fn irq_enable() {
    // SAFETY: only sets the interrupt flag.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) }
}

/// `cli`.
#[inline]
pub fn irq_disable() {
    // SAFETY: only clears the interrupt flag.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) }
}

/// Takes every pending interrupt, then masks again. `sti` delays interrupts by one
/// instruction, so a `nop` sits between it and the `cli`.
#[inline]
pub fn irq_take_pending() {
    // SAFETY: only changes the interrupt flag; the handlers run in between, as after any
    // unmask.
    unsafe { core::arch::asm!("sti", "nop", "cli") }
}

/// Masks interrupts and returns the previous RFLAGS.
#[inline]
pub fn irq_save_and_disable() -> usize {
    let flags: usize;
    // SAFETY: reads RFLAGS through the stack and clears the interrupt flag.
    unsafe { core::arch::asm!("pushfq", "pop {}", "cli", out(reg) flags) };
    flags
}

/// Restores the interrupt flag from [`irq_save_and_disable`].
#[inline]
pub fn irq_restore(state: usize) {
    if state & RFLAGS_IF != 0 {
        irq_enable();
    }
}

/// Sleeps until an interrupt arrives. `hlt` with interrupts masked would only wake for an
/// NMI, so interrupts are unmasked for the `hlt` (the one-instruction delay of `sti` keeps
/// one from slipping in before it) and masked again after: the interrupt's handler has then
/// already run, inside this function.
#[inline]
pub fn wait_for_irq() {
    // SAFETY: only changes the interrupt flag and halts until an interrupt.
    unsafe { core::arch::asm!("sti", "hlt", "cli") }
}

/// The TSC.
#[inline]
pub fn now_ticks() -> u64 {
    regs::rdtsc()
}

/// The TSC's rate, calibrated against the PIT at boot.
pub fn ticks_per_sec() -> u64 {
    apic::tsc_hz()
}

/// This CPU's timer deadlines (TSC): the hypervisor's own ([`set_timer_deadline`]) and the
/// one the emulated local APIC timer of the guest running here needs
/// ([`x86::set_guest_deadline`]). The APIC timer is armed for the earlier.
static DEADLINES: Deadlines = Deadlines::new();

/// Arms this CPU's APIC timer for TSC value `ticks` (or earlier, for a guest deadline);
/// `u64::MAX` disarms it.
pub fn set_timer_deadline(ticks: u64) {
    DEADLINES.set_host(ticks, apic::set_deadline);
}

/// On a timer interrupt, before its handler runs (`crate::deadlines`).
fn on_timer_interrupt() {
    DEADLINES.on_timer_interrupt(now_ticks(), apic::set_deadline);
}

/// The local APIC id of logical CPU `cpu`.
fn apic_id(cpu: usize) -> Option<u32> {
    let info = crate::platform::info();
    info.cpus.get(cpu).map(|c| c.hw_id as u32)
}

/// Sends the wake-up IPI to logical CPU `cpu`.
pub fn send_ipi(cpu: usize) {
    if let Some(id) = apic_id(cpu) {
        apic::send_ipi(id, trap::IPI_VECTOR);
    }
}

/// Sends I/O APIC input (GSI) `irq` to logical CPU `cpu`.
pub fn route_device_irq(irq: usize, cpu: usize) {
    if let Some(id) = apic_id(cpu) {
        ioapic::route(irq, id);
    }
}

/// Unmasks or masks I/O APIC input (GSI) `irq`.
pub fn set_device_irq_enabled(irq: usize, enabled: bool) {
    ioapic::set_enabled(irq, enabled)
}

/// Starts logical CPU `cpu` (local APIC id `hw_id`) on the stack whose top is `stack_top`:
/// INIT-SIPI-SIPI to the real-mode trampoline.
pub fn start_cpu(cpu: usize, hw_id: usize, stack_top: usize) -> Result<(), StartError> {
    crate::boot::set_secondary_stack(cpu, stack_top);
    boot::prepare_secondary(cpu);
    apic::start_ap(hw_id as u32, boot::TRAMPOLINE_ADDR);
    Ok(())
}

/// Powers the machine off (ACPI S5, then Bochs' shutdown port); halts if neither works.
pub fn system_off() -> ! {
    irq_disable();
    acpi::power_off();
    loop {
        // SAFETY: halts with interrupts masked, for good.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
    }
}

/// What the x86 vCPU code (VMX, SVM) needs from the host: the interrupt vectors, the
/// dispatch of an interrupt acknowledged on a VM exit, the host state it cannot read from
/// the CPU itself, and the CPU's virtualization features.
///
/// The vCPU code can read the rest of the host state itself: CR0, CR3, CR4, EFER, PAT, the
/// segment selectors (CS 0x08; DS, ES, SS 0x10; FS, GS null; TR 0x18), GDTR and IDTR
/// (`sgdt`/`sidt`) and IA32_GS_BASE, which holds this CPU's per-CPU area and must be the
/// host GS base on every VM exit. FS base is 0.
pub mod x86 {
    pub use super::regs::Features;
    pub use super::trap::{
        dispatch_vector, DEVICE_VECTOR_BASE, IPI_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR,
    };

    /// The base address of this CPU's TSS (the VMCS's host TR base).
    pub fn tss_base() -> u64 {
        super::gdt::tss_base(super::cpu_id())
    }

    /// Asks for a timer interrupt on this CPU at TSC value `ticks` (`u64::MAX`: none) for
    /// the emulated local APIC timer of the guest about to run here: the interrupt makes the
    /// guest exit, and its vCPU then raises the guest's timer interrupt. One guest deadline
    /// per CPU (the running guest's); the hypervisor's own timer events are kept. The timer
    /// is re-armed only when the deadline changes. Call with interrupts masked.
    pub fn set_guest_deadline(ticks: u64) {
        super::DEADLINES.set_guest(ticks, super::apic::set_deadline);
    }
}
