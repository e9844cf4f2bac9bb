//! The boot CPU's set-up in Rust (from `boot`'s 64-bit entry) and each secondary's.

use super::{acpi, apic, gdt, ioapic, mmu, regs, trap, uart};
use crate::platform;
use crate::power::fatal;
use axconfig::dtb::{IntcInfo, PlatformInfo};
use axconfig::memmap::{MemRange, RangeList};
use axconfig::multiboot::{self, BOOTLOADER_MAGIC};

/// The line a CPU without hardware virtualization prints before powering off.
const NO_VIRTUALIZATION: &str = "\naxvisor: this CPU has neither VMX nor SVM: no VM can run\n";

/// Physical memory below 4 GiB (identity-mapped by the boot tables), as a slice.
fn read_low(addr: usize, len: usize) -> Option<&'static [u8]> {
    let end = addr.checked_add(len)?;
    if addr == 0 || end > 1 << 32 {
        return None;
    }
    // SAFETY: the boot tables map the low 4 GiB; the multiboot information the loader left
    // there is not written while the hypervisor reads it at boot.
    Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
}

/// Remaps the 8259 PICs to vectors 0x20..0x30 (away from the exceptions) and masks them.
fn disable_pics() {
    use regs::outb;
    let base = trap::PIC_VECTOR_BASE;
    for (cmd, data, offset, cascade) in [(0x20, 0x21, base, 4), (0xa0, 0xa1, base + 8, 2)] {
        outb(cmd, 0x11); // ICW1: init, ICW4 follows
        outb(data, offset); // ICW2: vector offset
        outb(data, cascade); // ICW3: cascade wiring
        outb(data, 0x01); // ICW4: 8086 mode
        outb(data, 0xff); // mask every line
    }
}

/// The boot CPU, in long mode on its boot stack, BSS zeroed.
#[no_mangle]
extern "C" fn axhal_primary_init(magic: u32, mb_info: usize) -> ! {
    uart::init();
    gdt::init_cpu(0);
    trap::init_idt();
    trap::load_idt();
    if magic != BOOTLOADER_MAGIC {
        fatal(format_args!(
            "not started by a multiboot loader (EAX = {magic:#x}, expected {BOOTLOADER_MAGIC:#x})"
        ));
    }
    let mb = multiboot::parse(mb_info, read_low)
        .unwrap_or_else(|e| fatal(format_args!("multiboot information at {mb_info:#x}: {e}")));
    let facts = acpi::read().unwrap_or_else(|e| fatal(format_args!("ACPI: {e}")));
    let features = regs::Features::read();
    if !features.vmx && !features.svm {
        crate::console::write_bytes_unlocked(NO_VIRTUALIZATION.as_bytes());
        crate::power::shutdown();
    }
    disable_pics();
    let memory = mmu::init(&mb.memory, features.page_1g);
    apic::init(&features, facts.lapic_base);
    let (ioapic_base, gsi_base) = facts.ioapic;
    let lines = ioapic::init(ioapic_base, gsi_base, &facts.overrides);
    let mut reserved = RangeList::new();
    // The real-mode IVT, BIOS data, EBDA, the trampoline page, option ROMs and the BIOS.
    let _ = reserved.try_push(MemRange::new(0, 1 << 20));
    let mut cpus = facts.cpus;
    for c in &mut cpus {
        c.x2apic = apic::is_x2apic();
        c.tsc_deadline = apic::is_tsc_deadline();
    }
    let info = PlatformInfo {
        dtb: MemRange::default(),
        model: facts.model,
        memory,
        reserved,
        cpus,
        cpus_ignored: facts.cpus_ignored,
        intc: Some(IntcInfo::Apic {
            local: MemRange::new(facts.lapic_base, 0x1000),
            ioapic: MemRange::new(ioapic_base, 0x1000),
            gsi_base,
            lines,
        }),
        uart: None,
        timer_irqs: None,
        psci: None,
        timebase_hz: None,
        bootargs: mb.cmdline,
        power_ports: acpi::power_ports(),
        initrd: mb.module,
        virtio_mmio: Default::default(),
    };
    let info = platform::init_info(info);
    let me = apic::id() as usize;
    let Some(cpu) = info.cpu_index(me) else {
        fatal(format_args!(
            "the boot CPU (APIC id {me}) is not among the first {} CPUs of the MADT",
            axconfig::MAX_CPUS
        ))
    };
    if cpu != 0 {
        gdt::init_cpu(cpu);
    }
    apic::init_cpu();
    crate::enter_primary()
}

/// A secondary CPU, in long mode on the stack its starter left.
#[no_mangle]
extern "C" fn axhal_secondary_init(cpu: usize) -> ! {
    gdt::init_cpu(cpu);
    trap::load_idt();
    apic::init_cpu();
    crate::enter_secondary(cpu)
}
