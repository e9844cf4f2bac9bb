//! The boot banner: what the hypervisor found.

use axstd::os::{self, IntcInfo};
use axstd::println;

const MIB: usize = 1 << 20;

/// Prints version, architecture, platform, CPUs, memory map and interrupt controller.
pub fn print() {
    let info = os::platform_info();
    println!();
    println!(
        "axvisor {} - a type-1 hypervisor",
        env!("CARGO_PKG_VERSION")
    );
    println!("  arch: {}", os::ARCH);
    println!("  platform: {} ({})", os::PLATFORM, info.model);
    println!("  cpus: {}", info.cpus.len());
    if info.cpus_ignored > 0 {
        println!(
            "  ({} more cpus in the device tree are left offline: MAX_CPUS is {})",
            info.cpus_ignored,
            os::MAX_CPUS
        );
    }
    println!("  memory: {} MiB", info.memory_size() / MIB);
    for r in &info.memory {
        println!("    {r} ram");
    }
    for r in &info.reserved {
        println!("    {r} reserved by firmware");
    }
    // x86_64 has no device tree (multiboot and ACPI instead).
    if !info.dtb.is_empty() {
        println!("    {} device tree", info.dtb);
    }
    println!("    {} hypervisor image", os::kernel_range());
    let free: usize = os::free_memory().iter().map(|r| r.size).sum();
    println!(
        "    {} MiB free for guests and the hypervisor heap",
        free / MIB
    );
    match &info.intc {
        Some(IntcInfo::GicV2 { dist, cpu, .. }) => println!(
            "  interrupt controller: GICv2 (distributor {:#x}, cpu interface {:#x})",
            dist.start, cpu.start
        ),
        Some(IntcInfo::GicV3 { dist, redist }) => println!(
            "  interrupt controller: GICv3 (distributor {:#x}, redistributors {:#x})",
            dist.start, redist.start
        ),
        Some(IntcInfo::Plic { regs, ndev, .. }) => println!(
            "  interrupt controller: PLIC ({:#x}, {} sources)",
            regs.start, ndev
        ),
        Some(IntcInfo::Apic {
            local,
            ioapic,
            gsi_base,
            lines,
        }) => {
            let local: alloc::string::String = if info.cpus.iter().all(|c| c.x2apic) {
                "x2APIC mode".into()
            } else {
                alloc::format!("xAPIC mode at {:#x}", local.start)
            };
            println!(
                "  interrupt controller: APIC (local APICs in {local}, I/O APIC {:#x} with GSIs {}..{})",
                ioapic.start,
                gsi_base,
                gsi_base.saturating_add(*lines)
            )
        }
        None => println!("  interrupt controller: none found"),
    }
    // riscv64 guests get Sstc exactly when every hart has it; x86_64 names its timer's mode.
    let guest_timer = match os::ARCH {
        "riscv64" if info.cpus.iter().all(|c| c.isa_sstc) => ", Sstc (guests use vstimecmp)",
        "riscv64" => ", no Sstc (guest timers emulated on SBI set_timer)",
        "x86_64" if info.cpus.iter().all(|c| c.tsc_deadline) => ", TSC-deadline APIC timer",
        "x86_64" => ", one-shot APIC timer",
        _ => "",
    };
    println!(
        "  timer: {} Hz counter{guest_timer}",
        axstd::time::counter_hz()
    );
    if !info.bootargs.is_empty() {
        println!("  boot arguments: {}", info.bootargs);
    }
}
