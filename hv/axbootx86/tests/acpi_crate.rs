//! Reads the generated ACPI tables back with the `acpi` crate (an independent parser): the
//! RSDP found by a BIOS-area scan as Linux does it, every table's checksum, the FADT's
//! fields and the MADT's entries.

use core::ptr::NonNull;

use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use axbootx86::acpi::{build, AcpiDesc, SourceOverride, IOAPIC_ADDRESS, LAPIC_ADDRESS};
use axbootx86::linux::ACPI_BASE;

/// Guest memory from 0, with the tables at their base (a little over 1 MiB: the `acpi`
/// crate's BIOS-area scan maps a few bytes past 0x100000).
#[derive(Clone, Copy)]
struct LowMemory(&'static [u8]);

impl AcpiHandler for LowMemory {
    unsafe fn map_physical_region<T>(&self, addr: usize, size: usize) -> PhysicalMapping<Self, T> {
        assert!(
            addr + size <= self.0.len(),
            "{addr:#x}+{size:#x} outside low memory"
        );
        let ptr = NonNull::from(&self.0[addr]).cast::<T>();
        // SAFETY: `ptr` points at `size` bytes of a leaked (never freed, never written)
        // buffer; the `acpi` crate reads its packed (byte-aligned) tables through it.
        unsafe { PhysicalMapping::new(addr, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

fn low_memory_with(desc: &AcpiDesc) -> LowMemory {
    let tables = build(desc, ACPI_BASE).unwrap();
    let mut mem = vec![0u8; 0x11_0000];
    let base = ACPI_BASE as usize;
    mem[base..base + tables.blob.len()].copy_from_slice(&tables.blob);
    LowMemory(Vec::leak(mem))
}

#[test]
fn the_acpi_crate_finds_and_reads_the_tables() {
    let desc = AcpiDesc {
        apic_ids: vec![0, 1, 2, 3],
        ioapic_id: 4,
        overrides: vec![
            SourceOverride {
                source: 0,
                gsi: 2,
                flags: 0,
            },
            SourceOverride {
                source: 9,
                gsi: 9,
                flags: 0x0D,
            },
        ],
        virtio: Vec::new(),
    };
    let mem = low_memory_with(&desc);
    // SAFETY: the handler maps only the leaked buffer, which holds the low memory.
    let tables = unsafe { AcpiTables::search_for_rsdp_bios(mem) }.unwrap();
    assert_eq!(tables.revision(), 2);
    // Every table the XSDT lists, with a valid checksum (find_table validates).
    let sigs: Vec<String> = tables
        .headers()
        .map(|h| h.signature.as_str().to_owned())
        .collect();
    assert_eq!(sigs, ["FACP", "APIC"]);

    let fadt = tables.find_table::<Fadt>().unwrap();
    let flags = { fadt.get().flags };
    assert!(!flags.system_is_hw_reduced_acpi());
    assert!(flags.power_button_is_control_method());
    assert!(flags.sleep_button_is_control_method());
    assert!(flags.supports_equivalent_to_wbinvd());
    let boot_arch = { fadt.get().iapc_boot_arch };
    assert!(boot_arch.legacy_devices_are_accessible());
    assert!(!boot_arch.motherboard_implements_8042());
    assert!(boot_arch.dont_probe_vga());
    assert!(boot_arch.dont_enable_msi());
    assert_eq!({ fadt.get().sci_interrupt }, 9);
    assert_eq!({ fadt.get().smi_cmd_port }, 0);
    let pm1a = fadt.get().pm1a_event_block().unwrap();
    assert_eq!(pm1a.address, 0x600);
    assert_eq!(pm1a.bit_width, 32);
    assert_eq!(fadt.get().pm1a_control_block().unwrap().address, 0x604);
    let pm_timer = fadt.get().pm_timer_block().unwrap().unwrap();
    assert_eq!((pm_timer.address, pm_timer.bit_width), (0x608, 32));
    assert!(fadt.get().gpe0_block().unwrap().is_none());
    let dsdt = tables.dsdt().unwrap();
    assert_eq!(dsdt.length as usize, axbootx86::aml::S5_AML.len());
    assert_eq!(fadt.get().facs_address().unwrap() % 64, 0);

    let madt = tables.find_table::<Madt>().unwrap();
    assert_eq!({ madt.get().local_apic_address }, LAPIC_ADDRESS);
    assert!(madt.get().supports_8259());
    let mut lapics = Vec::new();
    let mut ioapics = Vec::new();
    let mut overrides = Vec::new();
    let mut nmis = Vec::new();
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(e) => lapics.push((e.processor_id, e.apic_id, { e.flags })),
            MadtEntry::IoApic(e) => ioapics.push((e.io_apic_id, { e.io_apic_address }, {
                e.global_system_interrupt_base
            })),
            MadtEntry::InterruptSourceOverride(e) => {
                overrides.push((e.bus, e.irq, { e.global_system_interrupt }, { e.flags }))
            }
            MadtEntry::LocalApicNmi(e) => nmis.push((e.processor_id, { e.flags }, e.nmi_line)),
            _ => panic!("unexpected MADT entry"),
        }
    }
    assert_eq!(lapics, [(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)]);
    assert_eq!(ioapics, [(4, IOAPIC_ADDRESS, 0)]);
    assert_eq!(overrides, [(0, 0, 2, 0), (0, 9, 9, 0x0D)]);
    assert_eq!(nmis, [(0xFF, 0, 1)]);
}

#[test]
fn the_rsdp_is_also_found_from_its_address() {
    let mem = low_memory_with(&AcpiDesc {
        apic_ids: vec![0],
        ioapic_id: 1,
        overrides: Vec::new(),
        virtio: Vec::new(),
    });
    // SAFETY: as above.
    let tables = unsafe { AcpiTables::from_rsdp(mem, ACPI_BASE as usize) }.unwrap();
    assert_eq!(tables.headers().count(), 2);
}
