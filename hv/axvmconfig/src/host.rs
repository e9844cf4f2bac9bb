//! What the machine and the hypervisor running the VMs contribute to the checks: the host
//! ranges no VM may be given, the host's interrupt lines, the number of hardware VMIDs.
//!
//! The hypervisor fills [`HostFacts`] at boot from the firmware's device tree and the CPU;
//! `cargo xtask vmconfig check` fills it from the platform's known fixed map
//! (`configs/platforms/<platform>.toml`, table `[host]`). A fact that is not known is left
//! empty (`None`, no ranges) and the checks that need it are skipped.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// Interrupt lines of the virtual GIC every aarch64 VM gets: the SPIs with INTIDs 32..128.
/// A device's `irq` and a passthrough interrupt must be one of them.
pub const VGIC_SPI_LINES: Range<u32> = 32..128;

/// Interrupt sources of the virtual PLIC every riscv64 VM with a `plic` gets: 1..=95, as
/// on QEMU `virt` (source 0 does not exist).
pub const VPLIC_SOURCES: Range<u32> = 1..96;

/// Inputs (GSIs) of the virtual I/O APIC every x86_64 VM with an `ioapic` gets: 0..=23.
pub const VIOAPIC_PINS: Range<u32> = 0..24;

/// Size of the register window of a VM's I/O APIC (`ioapic`).
pub const VIOAPIC_WINDOW_SIZE: u64 = 0x1000;

/// Size of the register window of a VM's GIC distributor (`gicd`), as `arm_vgic` emulates
/// it.
pub const VGIC_GICD_SIZE: u64 = 0x1_0000;

/// Size of the GICv2 CPU interface a VM sees (`gicc`): two 4 KiB pages (GICC_DIR is in the
/// second).
pub const VGIC_GICC_SIZE: u64 = 0x2000;

/// Size of one vCPU's GICv3 redistributor (`gicr`): its RD and SGI frames.
pub const VGIC_GICR_FRAME_SIZE: u64 = 0x2_0000;

/// Size of the register window of a VM's PLIC (`plic`), as `riscv_vplic` emulates it.
pub const VPLIC_WINDOW_SIZE: u64 = 0x400_0000;

/// The architecture of the host, which decides the kind of a VM's interrupt controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostArch {
    /// aarch64: a VM's controller is a GIC (`gicd` with `gicc` / `gicr`).
    Aarch64,
    /// riscv64: a VM's controller is a PLIC (`plic`).
    Riscv64,
    /// x86_64: VMs have I/O ports besides MMIO (`port` devices).
    X86_64,
}

impl HostArch {
    /// The architecture named `name` (`"aarch64"`, `"riscv64"`), if known.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "aarch64" => Some(Self::Aarch64),
            "riscv64" => Some(Self::Riscv64),
            "x86_64" => Some(Self::X86_64),
            _ => None,
        }
    }

    /// Its name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Aarch64 => "aarch64",
            Self::Riscv64 => "riscv64",
            Self::X86_64 => "x86_64",
        }
    }

    /// Whether VMs on this architecture have an I/O port space (devices with `port`,
    /// passthrough `ports`).
    pub const fn has_port_io(self) -> bool {
        matches!(self, Self::X86_64)
    }

    /// The I/O ports the hypervisor keeps for itself on this architecture's machines: no VM
    /// may be given them ([`PC_HOST_PORTS`] on x86_64, none elsewhere).
    pub const fn host_ports(self) -> &'static [HostRange] {
        match self {
            Self::X86_64 => PC_HOST_PORTS,
            Self::Aarch64 | Self::Riscv64 => &[],
        }
    }

    /// Whether the hypervisor forwards host interrupts to a VM's passthrough devices on this
    /// architecture (its virtual GIC or PLIC); not on x86_64 yet.
    pub const fn forwards_passthrough_irqs(self) -> bool {
        !matches!(self, Self::X86_64)
    }

    /// Whether the hypervisor can generate a device tree for VMs on this architecture
    /// (x86 machines are described by ACPI tables instead).
    pub const fn has_device_tree(self) -> bool {
        !matches!(self, Self::X86_64)
    }

    /// Whether a VM on this architecture can have a device of `kind` (the interrupt
    /// controller parts of the other architecture are refused; UARTs and virtio devices go
    /// anywhere).
    pub const fn has_device(self, kind: crate::DeviceKind) -> bool {
        use crate::DeviceKind as K;
        match kind {
            K::Pl011 | K::Ns16550 => true,
            K::GicDistributor | K::GicRedistributor | K::GicCpuInterface => {
                matches!(self, Self::Aarch64)
            }
            K::Plic => matches!(self, Self::Riscv64),
            K::Ioapic => matches!(self, Self::X86_64),
            // Described in the device tree, or on x86 by the Linux loader's command line;
            // the interrupt is a line of the VM's GIC, PLIC or I/O APIC.
            K::VirtioConsole | K::VirtioBlk | K::VirtioNet => true,
        }
    }
}

/// What a host range is used for (why no VM may have it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostUse {
    /// RAM the hypervisor manages: its image, its heap and the memory it gives VMs (all
    /// the RAM the firmware describes).
    HypervisorRam,
    /// Memory the firmware reserved (OpenSBI, a `/reserved-memory` node).
    FirmwareReserved,
    /// The UART the hypervisor prints on.
    Console,
    /// A register window of the host's interrupt controller (GIC or PLIC), or the PC's
    /// 8259 PICs.
    InterruptController,
    /// The PC's interval timer (PIT) and its channel-2 gate (port 0x61), which the
    /// hypervisor calibrates its clocks against.
    Timer,
    /// The PC's CMOS RTC index and data ports (the index port also masks NMIs).
    Rtc,
    /// The PCI configuration ports (0xCF8, 0xCFC; 0xCF9 resets the machine).
    PciConfig,
    /// A port that resets the machine or its CPUs (the 8042 keyboard controller, port
    /// 0x92).
    Reset,
    /// A port through which the hypervisor powers the machine off: Bochs' shutdown port,
    /// the ACPI PM1 control registers the FADT names (added at boot).
    PowerOff,
}

impl HostUse {
    /// How messages name it, e.g. "the hypervisor's RAM".
    pub const fn describe(self) -> &'static str {
        match self {
            HostUse::HypervisorRam => "the hypervisor's RAM",
            HostUse::FirmwareReserved => "memory the firmware reserved",
            HostUse::Console => "the hypervisor's console UART",
            HostUse::InterruptController => "the host interrupt controller",
            HostUse::Timer => "the host's interval timer (PIT)",
            HostUse::Rtc => "the host's CMOS RTC",
            HostUse::PciConfig => "the host's PCI configuration ports",
            HostUse::Reset => "a machine reset port",
            HostUse::PowerOff => "the host's power-off ports",
        }
    }
}

impl fmt::Display for HostUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A host range `[start, end)` — physical addresses, or I/O ports in [`HostFacts::ports`] —
/// and what it is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRange {
    /// First address.
    pub start: u64,
    /// First address after the range.
    pub end: u64,
    /// What it is.
    pub what: HostUse,
}

impl HostRange {
    /// `[start, start + size)` (saturating at the top of the address space).
    pub const fn new(start: u64, size: u64, what: HostUse) -> Self {
        Self {
            start,
            end: start.saturating_add(size),
            what,
        }
    }

    /// Whether `[start, end)` overlaps this range.
    pub const fn overlaps(&self, start: u64, end: u64) -> bool {
        start < self.end && self.start < end
    }
}

/// The I/O ports the hypervisor keeps for itself on a PC (x86_64), as `[first, end)` port
/// ranges: no VM may be given them as passthrough `ports`. The one list both the boot and
/// `cargo xtask vmconfig check` use (through [`HostArch::host_ports`]).
pub const PC_HOST_PORTS: &[HostRange] = &[
    HostRange::new(0x20, 2, HostUse::InterruptController), // 8259 PIC, master
    HostRange::new(0x40, 4, HostUse::Timer),               // 8254 PIT
    HostRange::new(0x60, 1, HostUse::Reset),               // 8042 data
    HostRange::new(0x61, 1, HostUse::Timer),               // PIT channel 2 gate and output
    HostRange::new(0x64, 1, HostUse::Reset),               // 8042 command (0xFE: reset)
    HostRange::new(0x70, 2, HostUse::Rtc),                 // CMOS index (NMI mask), data
    HostRange::new(0x92, 1, HostUse::Reset),               // system control port A
    HostRange::new(0xa0, 2, HostUse::InterruptController), // 8259 PIC, slave
    HostRange::new(0x3f8, 8, HostUse::Console),            // COM1
    HostRange::new(0xcf8, 8, HostUse::PciConfig),          // CONFIG_ADDRESS, 0xCF9, CONFIG_DATA
    HostRange::new(0x8900, 1, HostUse::PowerOff),          // Bochs' shutdown port
];

/// What is known about the host the VMs run on; see the module documentation. The default
/// knows nothing, and [`VmConfig::validate_host`](crate::VmConfig::validate_host) then
/// finds no problem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The host's architecture, when known.
    pub arch: Option<HostArch>,
    /// Host-physical ranges no VM may be given, as an `identity` memory region or a
    /// passthrough range.
    pub ranges: Vec<HostRange>,
    /// I/O port ranges (`[first, end)`) no VM may be given as passthrough `ports`.
    pub ports: Vec<HostRange>,
    /// The host interrupt controller's device interrupt lines (GIC SPI INTIDs, PLIC
    /// sources) that may be forwarded to a VM, when known.
    pub irq_lines: Option<Range<u32>>,
    /// Hardware VMIDs the hypervisor can give VMs (one per VM that runs at the same
    /// time), when known.
    pub vmids: Option<usize>,
}

impl HostFacts {
    /// The first host range overlapping `[start, end)`, if any.
    pub fn used_by_host(&self, start: u64, end: u64) -> Option<&HostRange> {
        self.ranges.iter().find(|r| r.overlaps(start, end))
    }

    /// The first host port range overlapping ports `[start, end)`, if any.
    pub fn port_used_by_host(&self, start: u64, end: u64) -> Option<&HostRange> {
        self.ports.iter().find(|r| r.overlaps(start, end))
    }
}
