//! Checks on the values of a [`VmConfig`], reporting every problem with its field path.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::config::{
    DeviceKind, DeviceSpace, DiskRegion, DiskSource, ImageConfig, KernelFormat, MapKind, MemKind,
    MemoryRegion, RegionPlace, VmConfig, DISK_SECTOR, LINK_DOORBELL_SIZE, MAX_DISK_NAME_LEN,
    VIRTIO_MMIO_SIZE,
};
use crate::host::{
    HostArch, HostFacts, HostUse, VGIC_GICC_SIZE, VGIC_GICD_SIZE, VGIC_GICR_FRAME_SIZE,
    VGIC_SPI_LINES, VIOAPIC_PINS, VIOAPIC_WINDOW_SIZE, VPLIC_SOURCES, VPLIC_WINDOW_SIZE,
};

/// Granule of guest memory mappings: memory regions and passthrough ranges must start and
/// end on a multiple of it.
pub const PAGE_SIZE: u64 = 0x1000;

/// The end of the I/O port space (ports are 16-bit).
pub const PORT_SPACE_END: u64 = 0x1_0000;

/// Longest VM name, in characters.
pub const MAX_NAME_LEN: usize = 32;

/// What [`VmConfig::validate`] knows about the machine and the images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidateContext {
    /// Number of physical CPUs, when known; `None` skips the check of `cpus.pin`.
    pub pcpu_count: Option<usize>,
    /// Size in bytes of each image by image name; an image not listed has an unknown size
    /// and only its load address is checked.
    pub image_sizes: BTreeMap<String, u64>,
}

/// One thing wrong with a config: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Path of the offending field, e.g. `memory[1].gpa`, `cpus.pin[0]`, `kernel.entry`,
    /// or `memory[1]` for a problem of a whole entry.
    pub field: String,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl ConfigProblem {
    fn new(field: impl Into<String>, kind: ProblemKind) -> Self {
        Self {
            field: field.into(),
            kind,
        }
    }

    /// For a problem found by [`validate_many`], the index of the config it is about.
    pub fn vm(&self) -> Option<usize> {
        match self.kind {
            ProblemKind::DuplicateId { vm, .. }
            | ProblemKind::DuplicateName { vm, .. }
            | ProblemKind::OtherVmOverlap { vm, .. }
            | ProblemKind::DiskRegionShared { vm, .. }
            | ProblemKind::NoVmid { vm, .. }
            | ProblemKind::LinkNotDeclared { vm, .. }
            | ProblemKind::LinkSizeMismatch { vm, .. } => Some(vm),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.kind)
    }
}

impl core::error::Error for ConfigProblem {}

/// What is wrong with a field. Addresses are guest-physical; ranges are half-open.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A name (VM, image or passthrough) is empty.
    Empty,
    /// The VM name is longer than [`MAX_NAME_LEN`] characters.
    NameTooLong {
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The VM name contains a character outside `[A-Za-z0-9_-]`.
    NameInvalidChar {
        /// The first such character.
        ch: char,
    },
    /// `cpus.count` is 0.
    NoVcpus,
    /// `cpus.pin` does not have `cpus.count` entries.
    PinLengthMismatch {
        /// Entries in `pin`.
        len: usize,
        /// `cpus.count`.
        count: usize,
    },
    /// A vCPU is pinned to a physical CPU that does not exist.
    PcpuOutOfRange {
        /// The physical CPU named.
        pcpu: usize,
        /// How many physical CPUs there are.
        pcpu_count: usize,
    },
    /// The VM has no memory region.
    NoMemory,
    /// A size is 0.
    ZeroSize,
    /// An address or size is not a multiple of the alignment.
    Misaligned {
        /// The value.
        value: u64,
        /// The required alignment.
        align: u64,
    },
    /// `base + size` does not fit in 64 bits.
    Overflow {
        /// The start address.
        base: u64,
        /// The size.
        size: u64,
    },
    /// The range overlaps another one.
    Overlap {
        /// Path of the other entry, e.g. `memory[0]`.
        other: String,
        /// Start of the other entry's range.
        start: u64,
        /// End (exclusive) of the other entry's range.
        end: u64,
    },
    /// The entry point is not inside a non-reserved memory region.
    EntryOutsideRam {
        /// The entry point.
        entry: u64,
    },
    /// The entry point is in a memory region without the `exec` flag.
    EntryNotExecutable {
        /// The entry point.
        entry: u64,
        /// Path of the region, e.g. `memory[0]`.
        region: String,
    },
    /// An image's load address is not inside a non-reserved memory region.
    ImageOutsideRam {
        /// The image name.
        image: String,
        /// Its load address.
        load_addr: u64,
    },
    /// An image is larger than the room from its load address to the end of its region.
    ImageTooLarge {
        /// The image name.
        image: String,
        /// Its size in bytes.
        size: u64,
        /// Bytes from the load address to the end of the region.
        room: u64,
        /// Path of the region, e.g. `memory[0]`.
        region: String,
    },
    /// A second device of a kind a VM has at most one of (interrupt controller parts).
    DuplicateDevice {
        /// The kind.
        kind: &'static str,
        /// Path of the first one, e.g. `devices[0]`.
        first: String,
    },
    /// A `gicr` or `gicc` device on a VM without a `gicd`: they are parts of a GIC.
    GicPartWithoutDistributor,
    /// An interrupt controller part whose register window does not have the size the
    /// hypervisor emulates (or, for `gicr` and `gicc`, is smaller).
    ControllerWindowSize {
        /// Its size.
        size: u64,
        /// The size it needs.
        need: u64,
        /// Whether it may be larger (`gicr`, `gicc`).
        at_least: bool,
    },
    /// A device the host's architecture does not have for VMs (the other architecture's
    /// interrupt controller).
    DeviceNotOnArch {
        /// The device kind.
        kind: &'static str,
        /// The host's architecture.
        arch: HostArch,
    },
    /// `kernel.entry` is not where the kernel format enters (a bzImage: `load_addr +
    /// 0x200`).
    EntryNotFormatEntry {
        /// The format (`kernel.format`).
        format: &'static str,
        /// The entry point the format has.
        expected: u64,
    },
    /// A field the kernel format does not take (a DTB beside a bzImage).
    NotWithFormat {
        /// The format (`kernel.format`).
        format: &'static str,
    },
    /// A kernel format the host's architecture does not boot (a bzImage off x86_64).
    FormatNotOnArch {
        /// The format.
        format: &'static str,
        /// The host's architecture.
        arch: HostArch,
    },
    /// A device at I/O ports on an architecture without port I/O (every one but x86_64).
    PortIoNotOnArch {
        /// The host's architecture.
        arch: HostArch,
    },
    /// Passthrough interrupts on an architecture whose VMs do not take them yet (x86_64).
    PassthroughIrqsNotOnArch {
        /// The host's architecture.
        arch: HostArch,
    },
    /// A generated device tree on an architecture without one (x86_64).
    NoDeviceTreeOnArch {
        /// The host's architecture.
        arch: HostArch,
    },
    /// A device whose ports run past port 0xFFFF.
    PortOutOfRange {
        /// Its first port.
        port: u64,
        /// Its number of ports.
        ports: u64,
    },
    /// A `rom` memory region that is not `map = "alloc"`: the hypervisor loads ROM, so it
    /// must own the memory.
    RomNotAlloc,
    /// A `rom` memory region with the `write` flag.
    RomWritable,
    /// An image is to be loaded into an `identity` region: the hypervisor loads images
    /// only into memory it allocated (an identity region is not the hypervisor's RAM).
    ImageInIdentity {
        /// The image name.
        image: String,
        /// Path of the region, e.g. `memory[0]`.
        region: String,
    },
    /// An image is to be loaded into RAM without the `write` flag (the hypervisor writes
    /// it with the guest's rights); a read-only region with an image is `kind = "rom"`.
    ImageInReadOnlyRam {
        /// The image name.
        image: String,
        /// Path of the region, e.g. `memory[0]`.
        region: String,
    },
    /// An interrupt on a VM that has no virtual interrupt controller (no `gicd` or
    /// `plic` device).
    IrqWithoutController {
        /// The interrupt.
        irq: u32,
    },
    /// An interrupt that the VM's virtual interrupt controller does not have.
    IrqOutOfRange {
        /// The interrupt.
        irq: u32,
        /// The controller, e.g. "the VM's GIC".
        controller: &'static str,
        /// The lines it has.
        lines: Range<u32>,
    },
    /// An interrupt the host's interrupt controller does not have (a passthrough one).
    HostIrqOutOfRange {
        /// The interrupt.
        irq: u32,
        /// The host's device interrupt lines.
        lines: Range<u32>,
    },
    /// An interrupt already used by another entry of the same VM.
    DuplicateIrq {
        /// The interrupt.
        irq: u32,
        /// Path of the entry that has it, e.g. `devices[0].irq`.
        other: String,
    },
    /// An `identity` region or a passthrough range overlaps a host range no VM may have.
    HostOverlap {
        /// What the host uses it for.
        what: HostUse,
        /// Start of the host range.
        start: u64,
        /// End (exclusive) of the host range.
        end: u64,
    },
    /// Passthrough ports overlap ports the hypervisor keeps for itself
    /// ([`HostFacts::ports`]).
    HostPortOverlap {
        /// What the host uses them for.
        what: HostUse,
        /// First port of the host's range.
        start: u64,
        /// End (exclusive) of the host's range.
        end: u64,
    },
    /// An `identity` region, a passthrough range or passthrough ports overlap those of
    /// another VM given to [`validate_many_on`]: host memory, devices and ports belong to
    /// one VM.
    OtherVmOverlap {
        /// Index of the VM the problem is reported for (the later one).
        vm: usize,
        /// Index of the other VM.
        other_vm: usize,
        /// Path of the other VM's entry, e.g. `passthrough[0]`.
        other: String,
        /// Start of its range.
        start: u64,
        /// End (exclusive) of its range.
        end: u64,
    },
    /// A `virtio-blk` region of a host disk overlaps one of another VM given to
    /// [`validate_many_on`], and one of the two is read-write: a region a VM writes is that
    /// VM's alone (read-only regions may be shared).
    DiskRegionShared {
        /// Index of the VM the problem is reported for (the later one).
        vm: usize,
        /// Index of the other VM.
        other_vm: usize,
        /// Path of the other VM's device, e.g. `devices[0]`.
        other: String,
        /// The other VM's name.
        other_name: String,
        /// The host disk.
        disk: String,
        /// Where the other VM's region is on the disk.
        place: RegionPlace,
    },
    /// More VMs than the hardware has VMIDs: this one gets none.
    NoVmid {
        /// Index of the VM.
        vm: usize,
        /// How many VMIDs there are.
        vmids: usize,
    },
    /// A link whose `peer` is the VM itself.
    LinkToSelf,
    /// A second link with the same name in one VM.
    DuplicateLink {
        /// Path of the first one, e.g. `links[0]`.
        first: String,
    },
    /// A link whose peer (given to [`validate_many`]) does not declare it back: no link of
    /// that name, or one naming another VM.
    LinkNotDeclared {
        /// Index of the VM the problem is reported for.
        vm: usize,
        /// The link's name.
        link: String,
        /// The peer's name.
        peer: String,
    },
    /// The two ends of a link (VMs given to [`validate_many`]) declare different sizes.
    LinkSizeMismatch {
        /// Index of the VM the problem is reported for (the later one).
        vm: usize,
        /// This VM's `shmem.size`.
        size: u64,
        /// The peer's name.
        peer: String,
        /// The peer's `shmem.size`.
        peer_size: u64,
    },
    /// Two VMs given to [`validate_many`] have the same id.
    DuplicateId {
        /// The id.
        id: u32,
        /// Index of the later VM (the one the problem is reported for).
        vm: usize,
        /// Index of the first VM with this id.
        first: usize,
    },
    /// Two VMs given to [`validate_many`] have the same name.
    DuplicateName {
        /// The name.
        name: String,
        /// Index of the later VM (the one the problem is reported for).
        vm: usize,
        /// Index of the first VM with this name.
        first: usize,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("must not be empty"),
            Self::NameTooLong { len, max } => {
                write!(f, "is {len} characters long; at most {max} are allowed")
            }
            Self::NameInvalidChar { ch } => write!(
                f,
                "contains {ch:?}; only letters, digits, '_' and '-' are allowed"
            ),
            Self::NoVcpus => f.write_str("must be at least 1"),
            Self::PinLengthMismatch { len, count } => write!(
                f,
                "has {len} {} but cpus.count is {count}; give one physical CPU per vCPU",
                if *len == 1 { "entry" } else { "entries" }
            ),
            Self::PcpuOutOfRange { pcpu, pcpu_count } => write!(
                f,
                "physical CPU {pcpu} does not exist (the machine has {pcpu_count})"
            ),
            Self::NoMemory => f.write_str("the VM has no memory region"),
            Self::ZeroSize => f.write_str("size must not be 0"),
            Self::Misaligned { value, align } => {
                write!(f, "{value:#x} is not a multiple of {align:#x}")
            }
            Self::Overflow { base, size } => write!(
                f,
                "{base:#x} + size {size:#x} overflows the 64-bit address space"
            ),
            Self::Overlap { other, start, end } => {
                write!(f, "overlaps {other} ([{start:#x}, {end:#x}))")
            }
            Self::EntryOutsideRam { entry } => write!(
                f,
                "{entry:#x} is not inside any non-reserved memory region"
            ),
            Self::EntryNotExecutable { entry, region } => write!(
                f,
                "{entry:#x} is in {region}, which does not have the \"exec\" flag"
            ),
            Self::ImageOutsideRam { image, load_addr } => write!(
                f,
                "image `{image}` at {load_addr:#x} is not inside any non-reserved memory region"
            ),
            Self::ImageTooLarge {
                image,
                size,
                room,
                region,
            } => write!(
                f,
                "image `{image}` ({size:#x} bytes) does not fit: {region} has only {room:#x} bytes from the load address to its end"
            ),
            Self::DuplicateDevice { kind, first } => {
                write!(f, "a VM has at most one `{kind}` device; {first} is one already")
            }
            Self::GicPartWithoutDistributor => {
                f.write_str("a GIC part needs the VM's GIC distributor: add a `gicd` device")
            }
            Self::ControllerWindowSize {
                size,
                need,
                at_least,
            } => write!(
                f,
                "size {size:#x}: the {}register window is {need:#x} bytes",
                if *at_least { "smallest " } else { "" }
            ),
            Self::DeviceNotOnArch { kind, arch } => write!(
                f,
                "`{kind}` is not an interrupt controller of {} VMs (aarch64: `gicd`, `gicc`, `gicr`; riscv64: `plic`)",
                arch.name()
            ),
            Self::PortIoNotOnArch { arch } => write!(
                f,
                "{} VMs have no I/O ports (only x86_64 ones do): give the device `base` and `size`",
                arch.name()
            ),
            Self::PassthroughIrqsNotOnArch { arch } => write!(
                f,
                "the hypervisor forwards no passthrough interrupts to {} VMs yet: remove `irqs`",
                arch.name()
            ),
            Self::EntryNotFormatEntry { format, expected } => write!(
                f,
                "a `{format}` kernel is entered at {expected:#x} (its load address + the \
                 format's entry offset); give that, or leave `entry` out"
            ),
            Self::NotWithFormat { format } => {
                write!(f, "a `{format}` kernel takes no such field; remove it")
            }
            Self::FormatNotOnArch { format, arch } => write!(
                f,
                "{} VMs do not boot `{format}` kernels",
                arch.name()
            ),
            Self::NoDeviceTreeOnArch { arch } => write!(
                f,
                "the hypervisor generates no device tree for {} VMs: give a DTB `image` or \
                 remove `kernel.dtb`",
                arch.name()
            ),
            Self::PortOutOfRange { port, ports } => write!(
                f,
                "ports {port:#x}..{:#x} run past the last port (0xffff)",
                port.saturating_add(*ports)
            ),
            Self::RomNotAlloc => f.write_str(
                "a `rom` region must be `map = \"alloc\"` (the hypervisor loads it into memory it owns)",
            ),
            Self::RomWritable => {
                f.write_str("a `rom` region cannot have the \"write\" flag (the guest cannot write ROM)")
            }
            Self::ImageInIdentity { image, region } => write!(
                f,
                "image `{image}` is in {region}, an `identity` region; images are loaded only into `alloc` regions"
            ),
            Self::ImageInReadOnlyRam { image, region } => write!(
                f,
                "image `{image}` is in {region}, RAM without the \"write\" flag; make it `kind = \"rom\"` or add \"write\""
            ),
            Self::IrqWithoutController { irq } => write!(
                f,
                "interrupt {irq}: the VM has no interrupt controller (add a `gicd`, `plic` or `ioapic` device)"
            ),
            Self::IrqOutOfRange {
                irq,
                controller,
                lines,
            } => write!(
                f,
                "interrupt {irq} is not a line of {controller} ({}..={})",
                lines.start,
                lines.end.saturating_sub(1)
            ),
            Self::HostIrqOutOfRange { irq, lines } => write!(
                f,
                "interrupt {irq} is not a device interrupt of the host's interrupt controller ({}..={})",
                lines.start,
                lines.end.saturating_sub(1)
            ),
            Self::DuplicateIrq { irq, other } => {
                write!(f, "interrupt {irq} is already used by {other}")
            }
            Self::HostOverlap { what, start, end } => {
                write!(f, "overlaps {what} ([{start:#x}, {end:#x}))")
            }
            Self::HostPortOverlap { what, start, end } => write!(
                f,
                "overlaps ports {start:#x}..{end:#x}, which the hypervisor keeps ({what})"
            ),
            Self::OtherVmOverlap {
                vm,
                other_vm,
                other,
                start,
                end,
            } => write!(
                f,
                "VM #{vm} overlaps {other} of VM #{other_vm} ([{start:#x}, {end:#x})); a host range belongs to one VM"
            ),
            Self::DiskRegionShared {
                other,
                other_name,
                disk,
                place,
                ..
            } => {
                write!(f, "overlaps {other} of VM `{other_name}` on disk {disk:?} (")?;
                match *place {
                    RegionPlace::Bytes { offset, size } => write!(
                        f,
                        "bytes [{offset:#x}, {:#x})",
                        offset.saturating_add(size)
                    )?,
                    RegionPlace::Partition(n) => write!(f, "partition {n}")?,
                }
                f.write_str(
                    ") and one of them is read-write; a region a VM writes is that VM's alone",
                )
            }
            Self::NoVmid { vm, vmids } => write!(
                f,
                "VM #{vm} gets no VMID: the hardware has {vmids} for VMs"
            ),
            Self::LinkToSelf => f.write_str("a link's peer is another VM, not this one"),
            Self::DuplicateLink { first } => {
                write!(f, "a VM has one link of each name; {first} has this name already")
            }
            Self::LinkNotDeclared { link, peer, .. } => write!(
                f,
                "link `{link}`: VM `{peer}` declares no link `{link}` with this VM as its peer"
            ),
            Self::LinkSizeMismatch {
                size,
                peer,
                peer_size,
                ..
            } => write!(
                f,
                "this VM shares {size:#x} bytes, but VM `{peer}` declares {peer_size:#x}; both ends of a link have the same size"
            ),
            Self::DuplicateId { id, vm, first } => {
                write!(f, "VM #{vm} uses id {id}, already used by VM #{first}")
            }
            Self::DuplicateName { name, vm, first } => {
                write!(f, "VM #{vm} uses name `{name}`, already used by VM #{first}")
            }
        }
    }
}

/// A half-open address range with a label, for the overlap checks.
struct Span {
    field: String,
    start: u64,
    end: u64,
}

impl Span {
    fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }

    fn overlap_with(&self, other: &Span) -> ProblemKind {
        ProblemKind::Overlap {
            other: other.field.clone(),
            start: other.start,
            end: other.end,
        }
    }
}

/// Collects problems in the order they are found.
#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, kind: ProblemKind) {
        self.0.push(ConfigProblem::new(field, kind));
    }

    /// Checks `base`/`size` of an entry: non-zero size, optional alignment, no overflow.
    /// Returns the entry's range when it is usable for the overlap checks.
    fn range(&mut self, field: &str, base: (&str, u64), size: u64, align: bool) -> Option<Span> {
        let (base_name, base) = base;
        if size == 0 {
            self.push(format!("{field}.size"), ProblemKind::ZeroSize);
        }
        if align {
            if !base.is_multiple_of(PAGE_SIZE) {
                self.push(
                    format!("{field}.{base_name}"),
                    ProblemKind::Misaligned {
                        value: base,
                        align: PAGE_SIZE,
                    },
                );
            }
            if !size.is_multiple_of(PAGE_SIZE) {
                self.push(
                    format!("{field}.size"),
                    ProblemKind::Misaligned {
                        value: size,
                        align: PAGE_SIZE,
                    },
                );
            }
        }
        match base.checked_add(size) {
            None => {
                self.push(field, ProblemKind::Overflow { base, size });
                None
            }
            Some(_) if size == 0 => None,
            Some(end) => Some(Span {
                field: field.into(),
                start: base,
                end,
            }),
        }
    }

    /// Reports every later span of `spans` that overlaps an earlier one.
    fn overlaps_within(&mut self, spans: &[Span]) {
        for (j, later) in spans.iter().enumerate() {
            for earlier in &spans[..j] {
                if later.overlaps(earlier) {
                    self.push(later.field.clone(), later.overlap_with(earlier));
                }
            }
        }
    }

    /// Reports every span of `spans` that overlaps one of `others`.
    fn overlaps_between(&mut self, spans: &[Span], others: &[Span]) {
        for span in spans {
            for other in others {
                if span.overlaps(other) {
                    self.push(span.field.clone(), span.overlap_with(other));
                }
            }
        }
    }

    fn finish(self) -> Result<(), Vec<ConfigProblem>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

impl VmConfig {
    /// Checks the values of this config and returns every problem found.
    ///
    /// What is checked is listed in `docs/vm-config.md`; in short: the name, the vCPU
    /// count and pinning, memory regions (size, 4 KiB alignment, overflow, overlap), the
    /// entry point and every image against the memory regions (and against each other),
    /// devices and passthrough ranges (size, overflow, overlap with each other and with
    /// memory). Checks that need facts from `ctx` are skipped when `ctx` does not know them.
    pub fn validate(&self, ctx: &ValidateContext) -> Result<(), Vec<ConfigProblem>> {
        let mut problems = Problems::default();
        check_name(&mut problems, &self.name);
        self.check_cpus(&mut problems, ctx);
        let ram = self.check_memory(&mut problems);
        self.check_kernel(&mut problems, ctx);

        let mut devices: Vec<Span> = Vec::new();
        let mut ports: Vec<Span> = Vec::new();
        for (i, dev) in self.devices.iter().enumerate() {
            let field = format!("devices[{i}]");
            match dev.space {
                DeviceSpace::Mmio => {
                    devices.extend(problems.range(&field, ("base", dev.base), dev.size, false));
                }
                DeviceSpace::Port => {
                    let span = problems.range(&field, ("port", dev.base), dev.size, false);
                    if dev.end().is_some_and(|end| end > PORT_SPACE_END) {
                        problems.push(
                            format!("{field}.port"),
                            ProblemKind::PortOutOfRange {
                                port: dev.base,
                                ports: dev.size,
                            },
                        );
                    } else {
                        ports.extend(span);
                    }
                }
            }
        }
        for (i, dev) in self.devices.iter().enumerate() {
            if let Some(DiskSource::Region(r)) = dev.disk.as_ref().map(|d| &d.source) {
                check_region(&mut problems, &format!("devices[{i}].backing"), r);
            }
        }
        problems.overlaps_within(&devices);
        problems.overlaps_between(&devices, &ram);
        problems.overlaps_within(&ports);
        self.check_controller_windows(&mut problems);
        for (i, dev) in self.devices.iter().enumerate() {
            let first = self.devices[..i].iter().position(|d| d.kind == dev.kind);
            if let (true, Some(first)) = (dev.kind.is_interrupt_controller(), first) {
                problems.push(
                    format!("devices[{i}].kind"),
                    ProblemKind::DuplicateDevice {
                        kind: dev.kind.name(),
                        first: format!("devices[{first}]"),
                    },
                );
            }
        }

        let mut passthrough = Vec::new();
        let mut passthrough_ports = Vec::new();
        for (i, pt) in self.passthrough.iter().enumerate() {
            let field = format!("passthrough[{i}]");
            if pt.name.is_empty() {
                problems.push(format!("{field}.name"), ProblemKind::Empty);
            }
            if let Some(m) = &pt.mmio {
                passthrough.extend(problems.range(&field, ("base", m.base), m.size, true));
            }
            for (j, r) in pt.ports.iter().enumerate() {
                let field = format!("{field}.ports[{j}]");
                if r.count == 0 {
                    problems.push(field, ProblemKind::ZeroSize);
                } else if r.ports().is_none() {
                    problems.push(
                        field,
                        ProblemKind::PortOutOfRange {
                            port: r.port,
                            ports: r.count,
                        },
                    );
                } else {
                    passthrough_ports.push(Span {
                        field,
                        start: r.port,
                        end: r.end(),
                    });
                }
            }
        }
        problems.overlaps_within(&passthrough);
        problems.overlaps_between(&passthrough, &devices);
        problems.overlaps_between(&passthrough, &ram);
        problems.overlaps_within(&passthrough_ports);
        problems.overlaps_between(&passthrough_ports, &ports);
        let links = self.check_links(&mut problems);
        problems.overlaps_within(&links);
        for others in [&ram, &devices, &passthrough] {
            problems.overlaps_between(&links, others);
        }
        self.check_irqs(&mut problems);

        problems.finish()
    }

    /// Checks each link's names and windows; returns the shared memory and doorbell ranges
    /// usable for the overlap checks.
    fn check_links(&self, problems: &mut Problems) -> Vec<Span> {
        let mut spans = Vec::new();
        for (i, link) in self.links.iter().enumerate() {
            let field = format!("links[{i}]");
            check_ident(problems, &format!("{field}.name"), &link.name);
            check_ident(problems, &format!("{field}.peer"), &link.peer);
            if link.peer == self.name {
                problems.push(format!("{field}.peer"), ProblemKind::LinkToSelf);
            }
            if let Some(first) = self.links[..i].iter().position(|l| l.name == link.name) {
                problems.push(
                    format!("{field}.name"),
                    ProblemKind::DuplicateLink {
                        first: format!("links[{first}]"),
                    },
                );
            }
            let shmem = &link.shmem;
            spans.extend(problems.range(
                &format!("{field}.shmem"),
                ("gpa", shmem.gpa),
                shmem.size,
                true,
            ));
            spans.extend(problems.range(
                &format!("{field}.doorbell"),
                ("base", link.doorbell.base),
                LINK_DOORBELL_SIZE,
                true,
            ));
        }
        spans
    }

    fn check_cpus(&self, problems: &mut Problems, ctx: &ValidateContext) {
        let cpus = &self.cpus;
        if cpus.count == 0 {
            problems.push("cpus.count", ProblemKind::NoVcpus);
        }
        if cpus.pin.len() != cpus.count {
            problems.push(
                "cpus.pin",
                ProblemKind::PinLengthMismatch {
                    len: cpus.pin.len(),
                    count: cpus.count,
                },
            );
        }
        if let Some(pcpu_count) = ctx.pcpu_count {
            for (i, &pcpu) in cpus.pin.iter().enumerate() {
                if pcpu >= pcpu_count {
                    problems.push(
                        format!("cpus.pin[{i}]"),
                        ProblemKind::PcpuOutOfRange { pcpu, pcpu_count },
                    );
                }
            }
        }
    }

    /// Checks the memory regions; returns the ranges of those usable for overlap checks.
    fn check_memory(&self, problems: &mut Problems) -> Vec<Span> {
        if self.memory.is_empty() {
            problems.push("memory", ProblemKind::NoMemory);
        }
        let ram: Vec<Span> = self
            .memory
            .iter()
            .enumerate()
            .filter_map(|(i, region)| {
                problems.range(
                    &format!("memory[{i}]"),
                    ("gpa", region.gpa),
                    region.size,
                    true,
                )
            })
            .collect();
        problems.overlaps_within(&ram);
        for (i, region) in self.memory.iter().enumerate() {
            if region.kind == MemKind::Rom {
                if region.map != MapKind::Alloc {
                    problems.push(format!("memory[{i}].map"), ProblemKind::RomNotAlloc);
                }
                if region.flags.write {
                    problems.push(format!("memory[{i}].flags"), ProblemKind::RomWritable);
                }
            }
        }
        ram
    }

    /// Checks the interrupt controller's parts against what the hypervisor emulates: a
    /// `gicd` of 64 KiB, a `gicc` of at least 8 KiB, a `gicr` with 128 KiB per vCPU, a
    /// `plic` of 64 MiB, and `gicr` / `gicc` only beside a `gicd` (the boot would refuse
    /// the VM otherwise).
    fn check_controller_windows(&self, problems: &mut Problems) {
        let has_gicd = self
            .devices
            .iter()
            .any(|d| d.kind == DeviceKind::GicDistributor);
        let gicr = VGIC_GICR_FRAME_SIZE.saturating_mul(self.cpus.count as u64);
        for (i, dev) in self.devices.iter().enumerate() {
            let (need, at_least) = match dev.kind {
                DeviceKind::GicDistributor => (VGIC_GICD_SIZE, false),
                DeviceKind::GicCpuInterface => (VGIC_GICC_SIZE, true),
                DeviceKind::GicRedistributor => (gicr, true),
                DeviceKind::Plic => (VPLIC_WINDOW_SIZE, false),
                DeviceKind::Ioapic => (VIOAPIC_WINDOW_SIZE, false),
                DeviceKind::VirtioConsole | DeviceKind::VirtioBlk | DeviceKind::VirtioNet => {
                    (VIRTIO_MMIO_SIZE, false)
                }
                DeviceKind::Pl011 | DeviceKind::Ns16550 => continue,
            };
            if matches!(
                dev.kind,
                DeviceKind::GicCpuInterface | DeviceKind::GicRedistributor
            ) && !has_gicd
            {
                problems.push(
                    format!("devices[{i}].kind"),
                    ProblemKind::GicPartWithoutDistributor,
                );
            }
            let ok = if at_least {
                dev.size >= need
            } else {
                dev.size == need
            };
            if !ok && dev.size != 0 {
                problems.push(
                    format!("devices[{i}].size"),
                    ProblemKind::ControllerWindowSize {
                        size: dev.size,
                        need,
                        at_least,
                    },
                );
            }
        }
    }

    /// The interrupt lines of the VM's virtual interrupt controller and how messages name
    /// it: a GIC's SPIs when the config lists a `gicd`, else a PLIC's sources when it lists
    /// a `plic`; `None` without either.
    pub fn irq_lines(&self) -> Option<(&'static str, Range<u32>)> {
        let has = |kind| self.devices.iter().any(|d| d.kind == kind);
        if has(DeviceKind::GicDistributor) {
            Some(("the VM's GIC (its SPIs)", VGIC_SPI_LINES))
        } else if has(DeviceKind::Plic) {
            Some(("the VM's PLIC", VPLIC_SOURCES))
        } else if has(DeviceKind::Ioapic) {
            Some(("the VM's I/O APIC", VIOAPIC_PINS))
        } else {
            None
        }
    }

    /// Checks every interrupt of the config: the `irq` of each device and the `irqs` of
    /// each passthrough range are lines of the VM's interrupt controller, and no interrupt
    /// is used twice (a device's line shared with another device is allowed; a forwarded
    /// host interrupt and a link's doorbell line are their owner's alone).
    fn check_irqs(&self, problems: &mut Problems) {
        let lines = self.irq_lines();
        let check_line = |problems: &mut Problems, field: String, irq: u32| match &lines {
            None => problems.push(field, ProblemKind::IrqWithoutController { irq }),
            Some((controller, lines)) if !lines.contains(&irq) => problems.push(
                field,
                ProblemKind::IrqOutOfRange {
                    irq,
                    controller,
                    lines: lines.clone(),
                },
            ),
            Some(_) => {}
        };
        let mut used: Vec<(u32, String)> = Vec::new();
        for (i, dev) in self.devices.iter().enumerate() {
            if let Some(irq) = dev.irq {
                let field = format!("devices[{i}].irq");
                check_line(problems, field.clone(), irq);
                used.push((irq, field));
            }
        }
        // A forwarded host interrupt, and a doorbell's line, are their owner's alone (a
        // level another source also drives would be lost).
        let exclusive = |problems: &mut Problems, used: &mut Vec<(u32, String)>, field, irq| {
            check_line(problems, String::clone(&field), irq);
            if let Some((_, other)) = used.iter().find(|(n, _)| *n == irq) {
                problems.push(
                    String::clone(&field),
                    ProblemKind::DuplicateIrq {
                        irq,
                        other: other.clone(),
                    },
                );
            }
            used.push((irq, field));
        };
        for (i, pt) in self.passthrough.iter().enumerate() {
            for (j, &irq) in pt.irqs.iter().enumerate() {
                let field = format!("passthrough[{i}].irqs[{j}]");
                exclusive(problems, &mut used, field, irq);
            }
        }
        for (i, link) in self.links.iter().enumerate() {
            let field = format!("links[{i}].doorbell.irq");
            exclusive(problems, &mut used, field, link.doorbell.irq);
        }
    }

    /// Checks this config against what is known of the host: its interrupt controller is
    /// the host architecture's kind, no `identity` region and no
    /// passthrough range overlaps a range the host uses (the hypervisor's RAM, memory the
    /// firmware reserved, the console UART, the interrupt controller), and every
    /// passthrough interrupt is one the host's interrupt controller has. Facts `host` does
    /// not know are not checked. Run it beside [`VmConfig::validate`]; both the hypervisor
    /// at boot and `xtask vmconfig check` do.
    pub fn validate_host(&self, host: &HostFacts) -> Result<(), Vec<ConfigProblem>> {
        let mut problems = Problems::default();
        if let Some(arch) = host.arch {
            let format = self.kernel.format;
            if format.only_arch().is_some_and(|only| only != arch) {
                problems.push(
                    "kernel.format",
                    ProblemKind::FormatNotOnArch {
                        format: format.name(),
                        arch,
                    },
                );
            }
            if !arch.has_device_tree() && self.kernel.dtb.as_ref().is_some_and(|d| d.generated()) {
                problems.push("kernel.dtb", ProblemKind::NoDeviceTreeOnArch { arch });
            }
            for (i, dev) in self.devices.iter().enumerate() {
                if dev.space == DeviceSpace::Port && !arch.has_port_io() {
                    problems.push(
                        format!("devices[{i}].port"),
                        ProblemKind::PortIoNotOnArch { arch },
                    );
                }
                if !arch.has_device(dev.kind) {
                    problems.push(
                        format!("devices[{i}].kind"),
                        ProblemKind::DeviceNotOnArch {
                            kind: dev.kind.name(),
                            arch,
                        },
                    );
                }
            }
        }
        if let Some(arch) = host.arch {
            for (i, pt) in self.passthrough.iter().enumerate() {
                if !pt.ports.is_empty() && !arch.has_port_io() {
                    problems.push(
                        format!("passthrough[{i}].ports"),
                        ProblemKind::PortIoNotOnArch { arch },
                    );
                }
                if !pt.irqs.is_empty() && !arch.forwards_passthrough_irqs() {
                    problems.push(
                        format!("passthrough[{i}].irqs"),
                        ProblemKind::PassthroughIrqsNotOnArch { arch },
                    );
                }
            }
        }
        for (field, start, end) in self.host_ports() {
            if let Some(r) = host.port_used_by_host(start, end) {
                problems.push(
                    field,
                    ProblemKind::HostPortOverlap {
                        what: r.what,
                        start: r.start,
                        end: r.end,
                    },
                );
            }
        }
        for (field, start, end) in self.host_ranges() {
            if let Some(r) = host.used_by_host(start, end) {
                problems.push(
                    field,
                    ProblemKind::HostOverlap {
                        what: r.what,
                        start: r.start,
                        end: r.end,
                    },
                );
            }
        }
        if let Some(lines) = &host.irq_lines {
            for (i, pt) in self.passthrough.iter().enumerate() {
                for (j, &irq) in pt.irqs.iter().enumerate() {
                    if !lines.contains(&irq) {
                        problems.push(
                            format!("passthrough[{i}].irqs[{j}]"),
                            ProblemKind::HostIrqOutOfRange {
                                irq,
                                lines: lines.clone(),
                            },
                        );
                    }
                }
            }
        }
        problems.finish()
    }

    /// The host-physical ranges this VM is given: its `identity` regions and passthrough
    /// ranges, as `(field, start, end)` (ranges whose end overflows are left out; `validate`
    /// reports them).
    pub fn host_ranges(&self) -> impl Iterator<Item = (String, u64, u64)> + '_ {
        let identity = self
            .memory
            .iter()
            .enumerate()
            .filter(|(_, r)| r.map == MapKind::Identity)
            .filter_map(|(i, r)| Some((format!("memory[{i}]"), r.gpa, r.end()?)));
        let passthrough = self.passthrough.iter().enumerate().filter_map(|(i, p)| {
            let m = p.mmio.as_ref()?;
            Some((format!("passthrough[{i}]"), m.base, m.end()?))
        });
        identity.chain(passthrough)
    }

    /// The I/O ports this VM is given: its passthrough `ports`, as `(field, first, end)`
    /// (ranges past port 0xFFFF are left out; `validate` reports them).
    pub fn host_ports(&self) -> impl Iterator<Item = (String, u64, u64)> + '_ {
        self.passthrough.iter().enumerate().flat_map(|(i, p)| {
            p.ports.iter().enumerate().filter_map(move |(j, r)| {
                let ports = r.ports()?;
                Some((
                    format!("passthrough[{i}].ports[{j}]"),
                    u64::from(ports.start),
                    u64::from(ports.end),
                ))
            })
        })
    }

    /// The first non-reserved memory region containing `addr`, with its index.
    fn ram_at(&self, addr: u64) -> Option<(usize, &MemoryRegion)> {
        self.memory
            .iter()
            .enumerate()
            .find(|(_, region)| region.map != MapKind::Reserved && region.contains(addr))
    }

    fn check_kernel(&self, problems: &mut Problems, ctx: &ValidateContext) {
        let kernel = &self.kernel;
        match self.ram_at(kernel.entry) {
            None => problems.push(
                "kernel.entry",
                ProblemKind::EntryOutsideRam {
                    entry: kernel.entry,
                },
            ),
            Some((i, region)) if !region.flags.exec => problems.push(
                "kernel.entry",
                ProblemKind::EntryNotExecutable {
                    entry: kernel.entry,
                    region: format!("memory[{i}]"),
                },
            ),
            Some(_) => {}
        }
        if let Some(offset) = kernel.format.entry_offset() {
            let expected = kernel.load_addr.saturating_add(offset);
            if kernel.entry != expected {
                problems.push(
                    "kernel.entry",
                    ProblemKind::EntryNotFormatEntry {
                        format: kernel.format.name(),
                        expected,
                    },
                );
            }
        }
        if kernel.format == KernelFormat::LinuxBzimage && kernel.dtb.is_some() {
            problems.push(
                "kernel.dtb",
                ProblemKind::NotWithFormat {
                    format: kernel.format.name(),
                },
            );
        }

        let kernel_image = ImageConfig {
            image: kernel.image.clone(),
            load_addr: kernel.load_addr,
        };
        let dtb_image = kernel.dtb.as_ref().map(|d| ImageConfig {
            image: String::from(d.image_name()),
            load_addr: d.load_addr,
        });
        let images = [
            Some(("kernel", &kernel_image)),
            kernel.initrd.as_ref().map(|img| ("kernel.initrd", img)),
            dtb_image.as_ref().map(|img| ("kernel.dtb", img)),
        ];
        let mut spans = Vec::new();
        for (field, image) in images.into_iter().flatten() {
            spans.extend(self.check_image(problems, ctx, field, image));
        }
        problems.overlaps_within(&spans);
    }

    /// Checks one image against the memory regions; returns its range for the overlap
    /// check between images (one byte long when its size is unknown).
    fn check_image(
        &self,
        problems: &mut Problems,
        ctx: &ValidateContext,
        field: &str,
        image: &ImageConfig,
    ) -> Option<Span> {
        if image.image.is_empty() {
            problems.push(format!("{field}.image"), ProblemKind::Empty);
        }
        let size = ctx.image_sizes.get(&image.image).copied();
        let Some((i, region)) = self.ram_at(image.load_addr) else {
            problems.push(
                format!("{field}.load_addr"),
                ProblemKind::ImageOutsideRam {
                    image: image.image.clone(),
                    load_addr: image.load_addr,
                },
            );
            return None;
        };
        let region_field = format!("memory[{i}]");
        if region.map == MapKind::Identity {
            problems.push(
                format!("{field}.load_addr"),
                ProblemKind::ImageInIdentity {
                    image: image.image.clone(),
                    region: region_field,
                },
            );
        } else if region.kind == MemKind::Ram && !region.flags.write {
            problems.push(
                format!("{field}.load_addr"),
                ProblemKind::ImageInReadOnlyRam {
                    image: image.image.clone(),
                    region: region_field,
                },
            );
        }
        let Some(size) = size else {
            return Some(Span {
                field: field.into(),
                start: image.load_addr,
                end: image.load_addr.saturating_add(1),
            });
        };
        let Some(end) = image.load_addr.checked_add(size) else {
            problems.push(
                field,
                ProblemKind::Overflow {
                    base: image.load_addr,
                    size,
                },
            );
            return None;
        };
        // `region.contains(load_addr)` holds, so the subtraction cannot underflow; a region
        // whose end overflows leaves room up to the top of the address space.
        let room = region
            .end()
            .unwrap_or(u64::MAX)
            .saturating_sub(image.load_addr);
        if size > room {
            problems.push(
                field,
                ProblemKind::ImageTooLarge {
                    image: image.image.clone(),
                    size,
                    room,
                    region: format!("memory[{i}]"),
                },
            );
        }
        Some(Span {
            field: field.into(),
            start: image.load_addr,
            end: end.max(image.load_addr.saturating_add(1)),
        })
    }
}

fn check_name(problems: &mut Problems, name: &str) {
    check_ident(problems, "name", name);
}

/// Checks a name (of a VM or a link) at `field`: 1 to [`MAX_NAME_LEN`] characters out of
/// `[A-Za-z0-9_-]`.
fn check_ident(problems: &mut Problems, field: &str, name: &str) {
    if name.is_empty() {
        problems.push(field, ProblemKind::Empty);
        return;
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        problems.push(
            field,
            ProblemKind::NameTooLong {
                len,
                max: MAX_NAME_LEN,
            },
        );
    }
    if let Some(ch) = name
        .chars()
        .find(|&ch| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'))
    {
        problems.push(field, ProblemKind::NameInvalidChar { ch });
    }
}

/// Checks a `virtio-blk` region (`field` is `devices[i].backing`): the disk's name, and
/// bytes that are whole sectors, not empty, with an end inside 64 bits (a partition's
/// number is checked by the parser).
fn check_region(problems: &mut Problems, field: &str, r: &DiskRegion) {
    let name = format!("{field}.disk");
    if r.disk.is_empty() {
        problems.push(name, ProblemKind::Empty);
    } else if r.disk.len() > MAX_DISK_NAME_LEN {
        problems.push(
            name,
            ProblemKind::NameTooLong {
                len: r.disk.chars().count(),
                max: MAX_DISK_NAME_LEN,
            },
        );
    } else if let Some(ch) = r
        .disk
        .chars()
        .find(|&ch| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'))
    {
        problems.push(name, ProblemKind::NameInvalidChar { ch });
    }
    let RegionPlace::Bytes { offset, size } = r.place else {
        return;
    };
    for (what, value) in [("offset", offset), ("size", size)] {
        if !value.is_multiple_of(DISK_SECTOR) {
            problems.push(
                format!("{field}.{what}"),
                ProblemKind::Misaligned {
                    value,
                    align: DISK_SECTOR,
                },
            );
        }
    }
    if size == 0 {
        problems.push(format!("{field}.size"), ProblemKind::ZeroSize);
    }
    if r.place.end().is_none() {
        problems.push(
            format!("{field}.size"),
            ProblemKind::Overflow { base: offset, size },
        );
    }
}

/// The host disk regions of `config`: `(field, disk, place, writable)`.
fn regions(config: &VmConfig) -> impl Iterator<Item = (String, &str, RegionPlace, bool)> {
    config.devices.iter().enumerate().filter_map(|(i, d)| {
        let disk = d.disk.as_ref()?;
        match &disk.source {
            DiskSource::Region(r) => Some((
                format!("devices[{i}]"),
                r.disk.as_str(),
                r.place,
                !disk.read_only,
            )),
            DiskSource::File(_) => None,
        }
    })
}

/// Whether two places on one disk overlap, as far as the configs tell: bytes against
/// bytes, a partition against the same partition (where a partition lies is known only
/// from the disk, when the VM is built).
fn places_overlap(a: RegionPlace, b: RegionPlace) -> bool {
    match (a, b) {
        (RegionPlace::Bytes { offset, .. }, RegionPlace::Bytes { offset: o, .. }) => {
            match (a.end(), b.end()) {
                (Some(end), Some(e)) => offset < e && o < end,
                _ => false,
            }
        }
        (RegionPlace::Partition(m), RegionPlace::Partition(n)) => m == n,
        _ => false,
    }
}

/// Reports every region of a later VM that overlaps a region of an earlier one on the same
/// disk when either writes it ([`ProblemKind::DiskRegionShared`]).
fn check_regions_between(problems: &mut Problems, configs: &[VmConfig]) {
    let regions: Vec<Vec<_>> = configs.iter().map(|c| regions(c).collect()).collect();
    for (vm, mine) in regions.iter().enumerate() {
        for (field, disk, place, writes) in mine {
            for (other_vm, theirs) in regions[..vm].iter().enumerate() {
                for (other, d, p, other_writes) in theirs {
                    if d == disk && places_overlap(*place, *p) && (*writes || *other_writes) {
                        problems.push(
                            field.clone(),
                            ProblemKind::DiskRegionShared {
                                vm,
                                other_vm,
                                other: other.clone(),
                                other_name: configs[other_vm].name.clone(),
                                disk: String::from(*disk),
                                place: *p,
                            },
                        );
                    }
                }
            }
        }
    }
}

/// Checks each link against its peer when the peer is among `configs` (a peer that is not
/// is no error: it may come later): the peer declares a link of the same name naming this
/// VM back, and with the same size (reported once, for the later VM).
fn check_links_between(problems: &mut Problems, configs: &[VmConfig]) {
    for (vm, config) in configs.iter().enumerate() {
        for (i, link) in config.links.iter().enumerate() {
            let Some((peer_vm, peer)) = configs
                .iter()
                .enumerate()
                .find(|(_, c)| c.name == link.peer)
            else {
                continue;
            };
            let back = peer
                .links
                .iter()
                .find(|l| l.name == link.name && l.peer == config.name);
            match back {
                None => problems.push(
                    format!("links[{i}].peer"),
                    ProblemKind::LinkNotDeclared {
                        vm,
                        link: link.name.clone(),
                        peer: peer.name.clone(),
                    },
                ),
                Some(back) if back.shmem.size != link.shmem.size && peer_vm < vm => problems.push(
                    format!("links[{i}].shmem.size"),
                    ProblemKind::LinkSizeMismatch {
                        vm,
                        size: link.shmem.size,
                        peer: peer.name.clone(),
                        peer_size: back.shmem.size,
                    },
                ),
                Some(_) => {}
            }
        }
    }
}

/// Checks only the links between `configs` (the part of [`validate_many`] about them):
/// each link whose peer is among `configs` is declared back by the peer under the same
/// name and with the same size. A problem ([`ProblemKind::LinkNotDeclared`],
/// [`ProblemKind::LinkSizeMismatch`]) is reported for the later VM of a pair where both
/// ends see it; [`ConfigProblem::vm`] gives its index.
pub fn validate_links(configs: &[VmConfig]) -> Result<(), Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    check_links_between(&mut problems, configs);
    problems.finish()
}

/// Checks what must hold across the VMs of one hypervisor: unique ids and unique names,
/// and no host disk region one VM writes held by another ([`ProblemKind::DiskRegionShared`]).
///
/// Each duplicate is reported once, for the later VM, with field `id` or `name`;
/// [`ConfigProblem::vm`] gives the index (into `configs`) of the VM it is about.
/// [`validate_many_on`] also checks what needs the host.
pub fn validate_many(configs: &[VmConfig]) -> Result<(), Vec<ConfigProblem>> {
    validate_many_on(configs, &HostFacts::default())
}

/// [`validate_many`], and what the VMs share on `host`: no two VMs are given overlapping
/// host ranges (`identity` regions, passthrough ranges) or overlapping host disk regions
/// one of them writes, and there are no more VMs than
/// hardware VMIDs (when `host` knows how many). Every problem is reported for the later
/// VM; [`ConfigProblem::vm`] gives its index.
pub fn validate_many_on(configs: &[VmConfig], host: &HostFacts) -> Result<(), Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    let ranges: Vec<Vec<(String, u64, u64)>> =
        configs.iter().map(|c| c.host_ranges().collect()).collect();
    let ports: Vec<Vec<(String, u64, u64)>> =
        configs.iter().map(|c| c.host_ports().collect()).collect();
    for taken in [&ranges, &ports] {
        for (vm, mine) in taken.iter().enumerate() {
            for (field, start, end) in mine {
                let earlier = taken[..vm]
                    .iter()
                    .enumerate()
                    .flat_map(|(other_vm, theirs)| theirs.iter().map(move |r| (other_vm, r)));
                for (other_vm, (other, s, e)) in earlier {
                    if start < e && s < end {
                        problems.push(
                            field.clone(),
                            ProblemKind::OtherVmOverlap {
                                vm,
                                other_vm,
                                other: other.clone(),
                                start: *s,
                                end: *e,
                            },
                        );
                    }
                }
            }
        }
    }
    check_links_between(&mut problems, configs);
    check_regions_between(&mut problems, configs);
    if let Some(vmids) = host.vmids {
        for vm in vmids..configs.len() {
            problems.push("id", ProblemKind::NoVmid { vm, vmids });
        }
    }
    let mut ids = BTreeMap::new();
    let mut names = BTreeMap::new();
    for (vm, config) in configs.iter().enumerate() {
        if let Some(&first) = ids.get(&config.id) {
            problems.push(
                "id",
                ProblemKind::DuplicateId {
                    id: config.id,
                    vm,
                    first,
                },
            );
        } else {
            ids.insert(config.id, vm);
        }
        if let Some(&first) = names.get(config.name.as_str()) {
            problems.push(
                "name",
                ProblemKind::DuplicateName {
                    name: config.name.clone(),
                    vm,
                    first,
                },
            );
        } else {
            names.insert(config.name.as_str(), vm);
        }
    }
    problems.finish()
}
