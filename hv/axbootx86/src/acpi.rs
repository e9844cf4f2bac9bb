//! ACPI tables for a VM without firmware: RSDP (revision 2), XSDT, FADT, FACS, MADT and a
//! DSDT, laid out in one blob for a given guest-physical base.
//!
//! The FADT is a full (not hardware-reduced) one, so Linux keeps its PC platform code: the
//! 8259 PIC, the PIT as the timer interrupt and calibration source, and the CMOS RTC
//! (hardware-reduced ACPI makes Linux drop the legacy PIC and skip the PIT timer set-up).
//! It describes no ACPI hardware beyond the two registers a full FADT must have: a PM1a
//! event block and a PM1a control block in I/O space ([`PM1A_EVT_PORT`], [`PM1A_CNT_PORT`]),
//! `SMI_CMD` 0 (the platform is always in ACPI mode, so Linux never performs the
//! ACPI-enable handshake), the PM timer ([`PM_TMR_PORT`]: 24 bits at 3.579545 MHz, Linux's
//! reference for calibrating the TSC), no GPE blocks. The DSDT holds `\_S5`, so a
//! power-off is a write of `SLP_TYP` 5 with `SLP_EN` to the PM1a control register (see
//! [`S5_SLP_TYP`]), and the VM's virtio-mmio devices ([`crate::aml`]). Choices and
//! alternatives are in `docs/x86-linux.md`.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use axvmconfig::VmConfig;

use crate::aml;
use crate::bytes::{put, put_u16, put_u32, put_u64};

/// Where the local APICs' registers are (the architectural default).
pub const LAPIC_ADDRESS: u32 = 0xFEE0_0000;
/// Where the I/O APIC's registers are.
pub const IOAPIC_ADDRESS: u32 = 0xFEC0_0000;
/// The ISA IRQ of the ACPI system control interrupt (never raised: there are no ACPI
/// events).
pub const SCI_IRQ: u8 = 9;
/// First port of the PM1a event block: PM1 status (2 bytes), then PM1 enable (2 bytes).
pub const PM1A_EVT_PORT: u16 = 0x600;
/// Bytes of the PM1a event block.
pub const PM1A_EVT_LEN: u8 = 4;
/// The PM1a control register (2 bytes).
pub const PM1A_CNT_PORT: u16 = 0x604;
/// Bytes of the PM1a control block.
pub const PM1A_CNT_LEN: u8 = 2;
/// The ACPI PM timer (4 bytes, read-only, 24 bits: `TMR_VAL_EXT` is clear).
pub const PM_TMR_PORT: u16 = 0x608;
/// Bytes of the PM timer block.
pub const PM_TMR_LEN: u8 = 4;
/// `SLP_TYP` of the S5 (soft-off) state in the DSDT's `\_S5` package: Linux powers off by
/// writing `(S5_SLP_TYP << 10) | SLP_EN` to the PM1a control register.
pub const S5_SLP_TYP: u16 = 5;
/// `SLP_EN`, bit 13 of the PM1 control register.
pub const SLP_EN: u16 = 1 << 13;
/// The OEM ID in every table.
pub const OEM_ID: [u8; 6] = *b"AXVSOR";
/// The FADT's hypervisor vendor identity.
pub const HYPERVISOR_VENDOR: [u8; 8] = *b"AXVISOR ";

/// MADT flag `PCAT_COMPAT`: the VM also has the dual 8259 PIC.
const MADT_PCAT_COMPAT: u32 = 1;
/// FADT flags: `WBINVD` (bit 0), `PROC_C1` (2), `PWR_BUTTON` (4: no fixed power button),
/// `SLP_BUTTON` (5: no fixed sleep button), `FIX_RTC` (6: no RTC wake status in the fixed
/// registers, so Linux leaves the RTC bits of PM1 alone).
pub const FADT_FLAGS: u32 = (1 << 0) | (1 << 2) | (1 << 4) | (1 << 5) | (1 << 6);
/// FADT `IAPC_BOOT_ARCH`: `LEGACY_DEVICES` (bit 0: ISA devices, here the UART, PIT and RTC),
/// `VGA_NOT_PRESENT` (2), `MSI_NOT_SUPPORTED` (3), `PCIE_ASPM_CONTROLS` (4). `8042` (bit 1)
/// is clear, so Linux does not probe for a keyboard controller; `CMOS_RTC_NOT_PRESENT`
/// (5) is clear: there is an RTC.
pub const IAPC_BOOT_ARCH: u16 = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4);

/// Size of an SDT header.
const HEADER_LEN: usize = 36;
/// Size of the RSDP (revision 2).
const RSDP_LEN: usize = 36;
/// Size of the FADT of ACPI 6.0 and later (major version 6).
const FADT_LEN: usize = 276;
/// Size of the FACS (version 2 and later).
const FACS_LEN: usize = 64;

/// An interrupt source override: ISA IRQ `source` is GSI `gsi` with MPS INTI `flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceOverride {
    /// The ISA IRQ.
    pub source: u8,
    /// The global system interrupt it is wired to.
    pub gsi: u32,
    /// MPS INTI flags: polarity (bits 0..2: 1 active high, 3 active low) and trigger mode
    /// (bits 2..4: 1 edge, 3 level); 0 is the bus's default (ISA: edge, active high).
    pub flags: u16,
}

/// MPS INTI flags of a level-triggered, active-high interrupt.
const LEVEL_HIGH: u16 = 0b11 << 2 | 0b01;

/// A virtio-mmio device, described in the DSDT ([`crate::aml`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmioDesc {
    /// Its register window's guest-physical base (below 4 GiB).
    pub base: u64,
    /// The window's size.
    pub size: u64,
    /// Its interrupt: an I/O APIC input ([`virtio_gsi_usable`]), level-triggered and active
    /// high.
    pub gsi: u32,
}

/// Whether I/O APIC input `gsi` can be a virtio device's interrupt: one of the 24 inputs,
/// but not 0 (the 8259's output), 2 (the PIT) or 8 (the CMOS RTC), which the virtual PC's
/// own devices drive edge-triggered.
pub const fn virtio_gsi_usable(gsi: u32) -> bool {
    gsi < 24 && gsi != 0 && gsi != 2 && gsi != 8
}

/// What the tables describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiDesc {
    /// Local APIC IDs, one per vCPU, the bootstrap processor's first.
    pub apic_ids: Vec<u32>,
    /// The I/O APIC's ID (GSI base 0, at [`IOAPIC_ADDRESS`]).
    pub ioapic_id: u8,
    /// Interrupt source overrides.
    pub overrides: Vec<SourceOverride>,
    /// The virtio-mmio devices, in config order (`_UID` 0, 1, ...).
    pub virtio: Vec<VirtioMmioDesc>,
}

impl AcpiDesc {
    /// The description of a VM: APIC IDs 0..vCPU count, the I/O APIC with ID = vCPU count
    /// (IDs unique among all APICs), and the overrides of a PC: ISA IRQ 0 (the PIT) is GSI 2,
    /// as on every PC since the I/O APIC's pin 0 takes the 8259's output, and the SCI,
    /// ISA IRQ 9, is level-triggered and active high. The 16550 consoles need none: an ISA
    /// IRQ without an override is the GSI of the same number, edge-triggered and active high,
    /// which is how a 16550 on IRQ 4 (COM1) or 3 (COM2) signals. Each virtio device is in
    /// `virtio`; an ISA IRQ (below 16) one uses gets a level-triggered, active-high override
    /// as well, so the MADT and the device's `_CRS` agree. A virtio device without an `irq`
    /// gets GSI 0, which [`build`] refuses.
    pub fn from_config(config: &VmConfig) -> Result<Self, AcpiError> {
        let cpus = config.cpus.count as u32;
        let mut overrides = vec![
            SourceOverride {
                source: 0,
                gsi: 2,
                flags: 0,
            },
            SourceOverride {
                source: SCI_IRQ,
                gsi: u32::from(SCI_IRQ),
                flags: LEVEL_HIGH,
            },
        ];
        let mut virtio = Vec::new();
        for d in config.devices.iter().filter(|d| d.kind.is_virtio()) {
            let gsi = d.irq.ok_or(AcpiError::VirtioIrq {
                base: d.base,
                irq: None,
            })?;
            virtio.push(VirtioMmioDesc {
                base: d.base,
                size: d.size,
                gsi,
            });
            let isa = u8::try_from(gsi).ok().filter(|&n| n < 16);
            if let Some(source) = isa.filter(|_| !overrides.iter().any(|o| o.gsi == gsi)) {
                overrides.push(SourceOverride {
                    source,
                    gsi,
                    flags: LEVEL_HIGH,
                });
            }
        }
        Ok(Self {
            apic_ids: (0..cpus).collect(),
            ioapic_id: u8::try_from(cpus).unwrap_or(u8::MAX),
            overrides,
            virtio,
        })
    }
}

/// Why the tables cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// The base is not 16-byte aligned (the RSDP must be, to be found by a scan).
    Unaligned(u64),
    /// No vCPU.
    NoCpus,
    /// `base` plus the blob's length overflows.
    AddressOverflow(u64),
    /// A virtio device's interrupt is not one it can have ([`virtio_gsi_usable`]; `None`:
    /// it has none).
    VirtioIrq {
        /// The device's base.
        base: u64,
        /// Its `irq`.
        irq: Option<u32>,
    },
    /// A virtio device's register window is not below 4 GiB.
    VirtioAbove4G(u64),
    /// More virtio devices than the DSDT names ([`crate::aml::MAX_DEVICES`]).
    TooManyVirtio(usize),
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned(base) => {
                write!(f, "the ACPI tables' base {base:#x} is not 16-byte aligned")
            }
            Self::NoCpus => write!(f, "a VM without vCPUs has no MADT"),
            Self::AddressOverflow(base) => write!(f, "the ACPI tables at {base:#x} wrap around"),
            Self::VirtioIrq { base, irq: Some(n) } => write!(
                f,
                "the virtio device at {base:#x} has interrupt {n}: a virtio device's is an I/O APIC input 1, 3..=7 or 9..=23 (0, 2 and 8 are the PC's own)"
            ),
            Self::VirtioIrq { base, irq: None } => {
                write!(f, "the virtio device at {base:#x} has no `irq`")
            }
            Self::VirtioAbove4G(base) => write!(
                f,
                "the virtio device at {base:#x} is not below 4 GiB (the DSDT describes 32-bit windows)"
            ),
            Self::TooManyVirtio(n) => write!(
                f,
                "{n} virtio devices: the DSDT names at most {}",
                crate::aml::MAX_DEVICES
            ),
        }
    }
}

/// The tables, laid out for guest-physical `base`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    /// Where the blob goes.
    pub base: u64,
    /// The bytes to copy to `base`.
    pub blob: Vec<u8>,
    /// Where each table is, by signature, RSDP first.
    pub tables: Vec<([u8; 4], u64)>,
}

impl AcpiTables {
    /// The RSDP's guest-physical address (the zero page's `acpi_rsdp_addr`): `base`.
    pub fn rsdp_address(&self) -> u64 {
        self.base
    }

    /// The guest-physical range the blob covers.
    pub fn range(&self) -> core::ops::Range<u64> {
        self.base..self.base + self.blob.len() as u64
    }

    /// Where the table with `signature` is.
    pub fn address_of(&self, signature: &[u8; 4]) -> Option<u64> {
        self.tables
            .iter()
            .find(|(s, _)| s == signature)
            .map(|&(_, a)| a)
    }
}

/// The 8-bit checksum byte that makes `bytes` sum to 0.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)))
}

/// A system description table: the 36-byte header, then `body`; length and checksum
/// filled.
fn sdt(signature: &[u8; 4], revision: u8, table_id: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; HEADER_LEN];
    t.extend_from_slice(body);
    put(&mut t, 0, signature);
    let len = t.len() as u32;
    put_u32(&mut t, 4, len);
    t[8] = revision;
    put(&mut t, 10, &OEM_ID);
    put(&mut t, 16, table_id);
    put_u32(&mut t, 24, 1); // OEM revision
    put(&mut t, 28, b"AXVS"); // creator ID
    put_u32(&mut t, 32, 1); // creator revision
    t[9] = checksum(&t);
    t
}

/// A generic address structure in system I/O space.
fn gas_io(port: u16, bit_width: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // system I/O
    g[1] = bit_width;
    g[3] = 2; // word access
    g[4..12].copy_from_slice(&u64::from(port).to_le_bytes());
    g
}

/// The FADT body (after the header).
fn fadt_body(facs: u64, dsdt: u64) -> Vec<u8> {
    let mut f = vec![0u8; FADT_LEN];
    // The FACS address in exactly one of FIRMWARE_CTRL and X_FIRMWARE_CTRL (the 32-bit one
    // when it fits); the DSDT's in X_DSDT and, when it fits, DSDT too.
    match u32::try_from(facs) {
        Ok(facs32) => put_u32(&mut f, 36, facs32), // FIRMWARE_CTRL
        Err(_) => put_u64(&mut f, 132, facs),      // X_FIRMWARE_CTRL
    }
    put_u32(&mut f, 40, u32::try_from(dsdt).unwrap_or(0)); // DSDT
    put_u16(&mut f, 46, u16::from(SCI_IRQ)); // SCI_INT
                                             // SMI_CMD (48) 0: no SMI command port, always in ACPI mode.
    put_u32(&mut f, 56, u32::from(PM1A_EVT_PORT)); // PM1a_EVT_BLK
    put_u32(&mut f, 64, u32::from(PM1A_CNT_PORT)); // PM1a_CNT_BLK
    put_u32(&mut f, 76, u32::from(PM_TMR_PORT)); // PM_TMR_BLK
    f[91] = PM_TMR_LEN; // PM_TMR_LEN
    f[88] = PM1A_EVT_LEN; // PM1_EVT_LEN
    f[89] = PM1A_CNT_LEN; // PM1_CNT_LEN
                          // P_LVL2_LAT > 100 and P_LVL3_LAT > 1000: no C2 or C3 states.
    put_u16(&mut f, 96, 101);
    put_u16(&mut f, 98, 1001);
    put_u16(&mut f, 109, IAPC_BOOT_ARCH);
    put_u32(&mut f, 112, FADT_FLAGS);
    f[131] = 0; // FADT minor version: ACPI 6.0
    put_u64(&mut f, 140, dsdt); // X_DSDT
    put(&mut f, 148, &gas_io(PM1A_EVT_PORT, PM1A_EVT_LEN * 8)); // X_PM1a_EVT_BLK
    put(&mut f, 172, &gas_io(PM1A_CNT_PORT, PM1A_CNT_LEN * 8)); // X_PM1a_CNT_BLK
    let mut pm_tmr = gas_io(PM_TMR_PORT, PM_TMR_LEN * 8);
    pm_tmr[3] = 3; // dword access
    put(&mut f, 208, &pm_tmr); // X_PM_TMR_BLK
    put(&mut f, 268, &HYPERVISOR_VENDOR);
    f.split_off(HEADER_LEN)
}

/// The FACS: no global lock owner, no waking vector.
fn facs() -> Vec<u8> {
    let mut f = vec![0u8; FACS_LEN];
    put(&mut f, 0, b"FACS");
    put_u32(&mut f, 4, FACS_LEN as u32);
    f[32] = 2; // version
    f
}

/// The MADT body (after the header).
fn madt_body(desc: &AcpiDesc) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&LAPIC_ADDRESS.to_le_bytes());
    m.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    for (uid, &id) in desc.apic_ids.iter().enumerate() {
        match u8::try_from(id) {
            // Processor local APIC (type 0): UID, APIC ID, flags (enabled).
            Ok(id8) if id8 != u8::MAX && uid < 255 => {
                m.extend_from_slice(&[0, 8, uid as u8, id8]);
                m.extend_from_slice(&1u32.to_le_bytes());
            }
            // Processor local x2APIC (type 9): reserved, x2APIC ID, flags, UID.
            _ => {
                m.extend_from_slice(&[9, 16, 0, 0]);
                m.extend_from_slice(&id.to_le_bytes());
                m.extend_from_slice(&1u32.to_le_bytes());
                m.extend_from_slice(&(uid as u32).to_le_bytes());
            }
        }
    }
    // I/O APIC (type 1): ID, reserved, address, GSI base.
    m.extend_from_slice(&[1, 12, desc.ioapic_id, 0]);
    m.extend_from_slice(&IOAPIC_ADDRESS.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    // Interrupt source overrides (type 2): bus 0 (ISA), source, GSI, flags.
    for o in &desc.overrides {
        m.extend_from_slice(&[2, 10, 0, o.source]);
        m.extend_from_slice(&o.gsi.to_le_bytes());
        m.extend_from_slice(&o.flags.to_le_bytes());
    }
    // Local APIC NMI (type 4): every processor (UID 0xFF), bus-default flags, LINT1.
    m.extend_from_slice(&[4, 6, 0xFF, 0, 0, 1]);
    m
}

/// Checks what [`aml::dsdt`] needs of the virtio devices.
fn check_virtio(virtio: &[VirtioMmioDesc]) -> Result<(), AcpiError> {
    if virtio.len() > aml::MAX_DEVICES {
        return Err(AcpiError::TooManyVirtio(virtio.len()));
    }
    for d in virtio {
        if !virtio_gsi_usable(d.gsi) {
            return Err(AcpiError::VirtioIrq {
                base: d.base,
                irq: Some(d.gsi),
            });
        }
        if d.base.checked_add(d.size).is_none_or(|end| end > 1 << 32) {
            return Err(AcpiError::VirtioAbove4G(d.base));
        }
    }
    Ok(())
}

/// Rounds `n` up to a multiple of `align` (a power of two).
fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// Builds the tables for `desc` at guest-physical `base`: RSDP at `base`, then XSDT, FADT,
/// MADT, DSDT, and the FACS (64-byte aligned), each 16-byte aligned.
pub fn build(desc: &AcpiDesc, base: u64) -> Result<AcpiTables, AcpiError> {
    if !base.is_multiple_of(16) {
        return Err(AcpiError::Unaligned(base));
    }
    if desc.apic_ids.is_empty() {
        return Err(AcpiError::NoCpus);
    }
    let madt = sdt(b"APIC", 5, b"AXVSMADT", &madt_body(desc));
    check_virtio(&desc.virtio)?;
    let dsdt = sdt(b"DSDT", 2, b"AXVSDSDT", &aml::dsdt(&desc.virtio));
    let entries = 2; // FADT, MADT
    let xsdt_len = HEADER_LEN + 8 * entries;
    // Offsets in the blob.
    let xsdt_off = align_up(RSDP_LEN, 16);
    let fadt_off = align_up(xsdt_off + xsdt_len, 16);
    let madt_off = align_up(fadt_off + FADT_LEN, 16);
    let dsdt_off = align_up(madt_off + madt.len(), 16);
    let facs_off = align_up(dsdt_off + dsdt.len(), 64);
    let total = facs_off + FACS_LEN;
    let addr = |off: usize| {
        base.checked_add(off as u64)
            .ok_or(AcpiError::AddressOverflow(base))
    };
    let end = addr(total)?;
    let (xsdt_a, fadt_a, madt_a, dsdt_a, facs_a) = (
        addr(xsdt_off)?,
        addr(fadt_off)?,
        addr(madt_off)?,
        addr(dsdt_off)?,
        addr(facs_off)?,
    );
    debug_assert!(end > base);

    let fadt = sdt(b"FACP", 6, b"AXVSFADT", &fadt_body(facs_a, dsdt_a));
    let mut xsdt_body = Vec::with_capacity(8 * entries);
    xsdt_body.extend_from_slice(&fadt_a.to_le_bytes());
    xsdt_body.extend_from_slice(&madt_a.to_le_bytes());
    let xsdt = sdt(b"XSDT", 1, b"AXVSXSDT", &xsdt_body);

    let mut rsdp = [0u8; RSDP_LEN];
    put(&mut rsdp, 0, b"RSD PTR ");
    put(&mut rsdp, 9, &OEM_ID);
    rsdp[15] = 2; // revision: ACPI 2.0+, XSDT
                  // RsdtAddress (16) 0: there is only the XSDT.
    put_u32(&mut rsdp, 20, RSDP_LEN as u32);
    put_u64(&mut rsdp, 24, xsdt_a);
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);

    let mut blob = vec![0u8; total];
    for (off, bytes) in [
        (0, &rsdp[..]),
        (xsdt_off, &xsdt[..]),
        (fadt_off, &fadt[..]),
        (madt_off, &madt[..]),
        (dsdt_off, &dsdt[..]),
        (facs_off, &facs()[..]),
    ] {
        put(&mut blob, off, bytes);
    }
    Ok(AcpiTables {
        base,
        blob,
        tables: vec![
            (*b"RSD ", base),
            (*b"XSDT", xsdt_a),
            (*b"FACP", fadt_a),
            (*b"APIC", madt_a),
            (*b"DSDT", dsdt_a),
            (*b"FACS", facs_a),
        ],
    })
}
