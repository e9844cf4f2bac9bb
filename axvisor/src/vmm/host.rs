//! What the host contributes to the checks of a VM config ([`axvmconfig::HostFacts`]): its
//! architecture, and from the firmware's device tree the ranges no VM may be given (the
//! hypervisor's RAM, memory the firmware reserved, the console UART, the interrupt
//! controller), the interrupt lines a passthrough device may have, and the I/O ports no VM
//! may be given (the architecture's fixed list and, on x86_64, the ACPI PM1 control ports
//! the FADT names). VMIDs are not counted here: the boot allocates them (`super::VMIDS`)
//! and refuses the VM that finds none left.

use alloc::vec::Vec;
use axconfig::dtb::IntcInfo;
use axvmconfig::{HostFacts, HostRange, HostUse};

/// The facts of this machine.
pub fn facts() -> HostFacts {
    let info = axhal::platform::info();
    let range = |r: &axconfig::memmap::MemRange, what| HostRange {
        start: r.start as u64,
        end: r.end() as u64,
        what,
    };
    // Firmware memory lies inside RAM: listed first, it names the overlap.
    let mut ranges: Vec<HostRange> = info
        .reserved
        .iter()
        .map(|r| range(r, HostUse::FirmwareReserved))
        .chain(info.memory.iter().map(|r| range(r, HostUse::HypervisorRam)))
        .collect();
    if let Some(u) = &info.uart {
        ranges.push(range(&u.regs, HostUse::Console));
    }
    let (intc, irq_lines) = match &info.intc {
        Some(IntcInfo::GicV2 {
            dist,
            cpu,
            hyp,
            vcpu,
        }) => ([Some(*dist), Some(*cpu), *hyp, *vcpu], None),
        Some(IntcInfo::GicV3 { dist, redist }) => ([Some(*dist), Some(*redist), None, None], None),
        // PLIC sources 1..=ndev.
        Some(IntcInfo::Plic { regs, ndev }) => (
            [Some(*regs), None, None, None],
            Some(1..ndev.saturating_add(1)),
        ),
        // I/O APIC inputs are global system interrupts gsi_base..gsi_base + lines.
        Some(IntcInfo::Apic {
            local,
            ioapic,
            gsi_base,
            lines,
        }) => (
            [Some(*local), Some(*ioapic), None, None],
            Some(*gsi_base..gsi_base.saturating_add(*lines)),
        ),
        None => ([None; 4], None),
    };
    ranges.extend(
        intc.iter()
            .flatten()
            .map(|r| range(r, HostUse::InterruptController)),
    );
    let arch = <arch_platform::Platform as axvm::ArchPlatform>::HOST_ARCH;
    HostFacts {
        arch: Some(arch),
        ranges,
        ports: arch
            .host_ports()
            .iter()
            .copied()
            .chain(info.power_ports.iter().map(|&p| {
                // A 16-bit register: two ports.
                HostRange::new(u64::from(p), 2, HostUse::PowerOff)
            }))
            .collect(),
        irq_lines,
        vmids: None,
    }
}
