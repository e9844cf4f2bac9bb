//! What the hypervisor reads from ACPI (through the `acpi` crate, without its allocator):
//! CPUs, the local APIC window, the I/O APIC and interrupt source overrides from the MADT;
//! the PM1 control ports from the FADT and the S5 sleep type from the DSDT, for power off.
//!
//! The RSDP is found by scanning the BIOS areas (the EBDA's first KiB and 0xE0000..0x100000);
//! the tables are read in place (the low 4 GiB are identity-mapped).

use super::ioapic::Override;
use super::regs::{outb, outw};
use acpi::address::AddressSpace;
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use arrayvec::{ArrayString, ArrayVec};
use axconfig::dtb::CpuInfo;
use axconfig::MAX_CPUS;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

/// The tables are read where they are: physical = virtual.
#[derive(Clone, Copy)]
struct IdentityMap;

impl AcpiHandler for IdentityMap {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        let ptr = NonNull::new(pa as *mut T).unwrap_or(NonNull::dangling());
        // SAFETY: the caller promises a `T` at `pa`; the low 4 GiB (where firmware tables
        // lie) are identity-mapped, so the physical address is the virtual one.
        unsafe { PhysicalMapping::new(pa, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Why ACPI could not be used.
#[derive(Clone, Copy, Debug)]
pub enum AcpiError {
    /// No valid RSDP in the BIOS areas.
    Rsdp,
    /// No MADT.
    Madt,
    /// No usable local APIC in the MADT.
    Cpus,
    /// No I/O APIC in the MADT.
    IoApic,
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AcpiError::Rsdp => "no ACPI RSDP in the BIOS areas",
            AcpiError::Madt => "no ACPI MADT (APIC table)",
            AcpiError::Cpus => "the MADT lists no enabled local APIC",
            AcpiError::IoApic => "the MADT lists no I/O APIC",
        })
    }
}

/// The facts taken from the tables.
pub struct AcpiFacts {
    /// The FADT's OEM id and table id (e.g. `BOCHS BXPC`).
    pub model: ArrayString<64>,
    /// Enabled CPUs in MADT order, at most `MAX_CPUS`.
    pub cpus: ArrayVec<CpuInfo, MAX_CPUS>,
    /// Enabled CPUs beyond `MAX_CPUS`.
    pub cpus_ignored: usize,
    /// The local APICs' xAPIC window.
    pub lapic_base: usize,
    /// The first I/O APIC: its window and first GSI.
    pub ioapic: (usize, u32),
    /// Interrupt source overrides (ISA IRQ -> GSI with polarity and trigger).
    pub overrides: ArrayVec<Override, 16>,
}

/// PM1a and PM1b control ports (0: none) and the S5 sleep type, for [`power_off`].
static PM1A_CNT: AtomicU32 = AtomicU32::new(0);
static PM1B_CNT: AtomicU32 = AtomicU32::new(0);
static SLP_TYP_S5: AtomicU32 = AtomicU32::new(0);

fn trimmed(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes)
        .unwrap_or("?")
        .trim_end_matches([' ', '\0'])
}

/// Finds and reads the tables.
pub fn read() -> Result<AcpiFacts, AcpiError> {
    // SAFETY: scans the BIOS areas in the low MiB, identity-mapped; the crate checks each
    // candidate's signature and checksum before it trusts it.
    let tables =
        unsafe { AcpiTables::search_for_rsdp_bios(IdentityMap) }.map_err(|_| AcpiError::Rsdp)?;
    let mut model = ArrayString::new();
    if let Ok(fadt) = tables.find_table::<Fadt>() {
        let h = *acpi::AcpiTable::header(&*fadt);
        let _ = model.try_push_str(trimmed(&h.oem_id));
        let _ = model.try_push(' ');
        let _ = model.try_push_str(trimmed(&h.oem_table_id));
        read_power(&tables, &fadt);
    }
    let madt = tables.find_table::<Madt>().map_err(|_| AcpiError::Madt)?;
    let madt = madt.get();
    let mut lapic_base = madt.local_apic_address as usize;
    let mut cpus = ArrayVec::new();
    let mut cpus_ignored = 0;
    let mut ioapic = None;
    let mut overrides = ArrayVec::new();
    let mut add_cpu = |hw_id: u32, flags: u32| {
        // Bit 0: enabled; bit 1: online capable (may be enabled later: left offline here).
        if flags & 1 != 0 {
            let cpu = CpuInfo {
                hw_id: hw_id as usize,
                ..CpuInfo::default()
            };
            if cpus.iter().any(|c: &CpuInfo| c.hw_id == cpu.hw_id) {
                return;
            }
            if cpus.try_push(cpu).is_err() {
                cpus_ignored += 1;
            }
        }
    };
    for entry in madt.entries() {
        match entry {
            MadtEntry::LocalApic(e) => add_cpu(u32::from(e.apic_id), e.flags),
            MadtEntry::LocalX2Apic(e) => add_cpu(e.x2apic_id, e.flags),
            MadtEntry::IoApic(e) if ioapic.is_none() => {
                ioapic = Some((e.io_apic_address as usize, e.global_system_interrupt_base));
            }
            MadtEntry::InterruptSourceOverride(e) => {
                // MPS INTI flags: polarity bits 0-1 (3 = active low), trigger bits 2-3
                // (3 = level); 0 means the bus default (ISA: high, edge).
                let flags = e.flags;
                let _ = overrides.try_push(Override {
                    gsi: e.global_system_interrupt,
                    active_low: flags & 3 == 3,
                    level: (flags >> 2) & 3 == 3,
                });
            }
            MadtEntry::LocalApicAddressOverride(e) => {
                lapic_base = e.local_apic_address as usize;
            }
            _ => {}
        }
    }
    if cpus.is_empty() {
        return Err(AcpiError::Cpus);
    }
    Ok(AcpiFacts {
        model,
        cpus,
        cpus_ignored,
        lapic_base,
        ioapic: ioapic.ok_or(AcpiError::IoApic)?,
        overrides,
    })
}

/// Keeps the PM1 control ports and the S5 sleep type.
fn read_power(tables: &AcpiTables<IdentityMap>, fadt: &Fadt) {
    let io_port = |a: acpi::address::GenericAddress| {
        (a.address_space == AddressSpace::SystemIo && a.address != 0 && a.address <= 0xffff)
            .then_some(a.address as u32)
    };
    if let Some(port) = fadt.pm1a_control_block().ok().and_then(io_port) {
        PM1A_CNT.store(port, Ordering::Relaxed);
    }
    if let Some(port) = fadt.pm1b_control_block().ok().flatten().and_then(io_port) {
        PM1B_CNT.store(port, Ordering::Relaxed);
    }
    if let Ok(dsdt) = tables.dsdt() {
        // SAFETY: the DSDT's AML lies where the FADT says, `length` bytes, identity-mapped
        // and never written (ACPI NVS / reclaimable memory, not given to the allocator).
        let aml =
            unsafe { core::slice::from_raw_parts(dsdt.address as *const u8, dsdt.length as usize) };
        if let Some(typ) = axconfig::aml::s5_sleep_type(aml) {
            SLP_TYP_S5.store(u32::from(typ), Ordering::Relaxed);
        }
    }
}

/// The PM1a and PM1b control ports the FADT names (read by [`read`]).
pub fn power_ports() -> ArrayVec<u16, 2> {
    [&PM1A_CNT, &PM1B_CNT]
        .into_iter()
        .map(|p| p.load(Ordering::Relaxed) as u16)
        .filter(|&p| p != 0)
        .collect()
}

/// Powers the machine off: Bochs' shutdown port first (Bochs ends with status 0 there, but
/// takes ACPI S5 for a panic; nothing listens on it elsewhere), then ACPI S5 through the
/// PM1 control registers (QEMU ends with status 0). Returns if neither worked.
pub fn power_off() {
    for &b in b"Shutdown" {
        outb(0x8900, b);
    }
    let control = ((SLP_TYP_S5.load(Ordering::Relaxed) as u16 & 7) << 10) | (1 << 13);
    for port in [&PM1A_CNT, &PM1B_CNT] {
        let port = port.load(Ordering::Relaxed) as u16;
        if port != 0 {
            outw(port, control);
        }
    }
}
