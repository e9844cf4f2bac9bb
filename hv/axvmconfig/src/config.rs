//! The VM description types and how they are read from TOML.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// One VM: the root table of a VM config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Identifier of the VM, unique among the VMs of one hypervisor.
    pub id: u32,
    /// Name of the VM: 1 to [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) characters out of
    /// `[A-Za-z0-9_-]`, unique among the VMs of one hypervisor; prefixes its console lines.
    pub name: String,
    /// The virtual CPUs and where they run.
    pub cpus: CpuConfig,
    /// The kernel image and the optional initrd and DTB loaded beside it.
    pub kernel: KernelConfig,
    /// Guest-physical memory regions (`[[memory]]`).
    pub memory: Vec<MemoryRegion>,
    /// Emulated devices (`[[devices]]`); none by default.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// Host devices given to the guest directly (`[[passthrough]]`); none by default.
    #[serde(default)]
    pub passthrough: Vec<PassthroughConfig>,
    /// What happens on an access to an address that no memory region or device claims
    /// (`[unclaimed] policy = ...`); [`UnclaimedPolicy::Fault`] by default.
    #[serde(default, deserialize_with = "deserialize_unclaimed")]
    pub unclaimed: UnclaimedPolicy,
    /// Links to other VMs: shared memory and a doorbell (`[[links]]`); none by default.
    #[serde(default)]
    pub links: Vec<LinkConfig>,
}

impl VmConfig {
    /// The host interrupts of the VM's passthrough devices, in config order.
    pub fn passthrough_irqs(&self) -> impl Iterator<Item = u32> + '_ {
        self.passthrough.iter().flat_map(|p| p.irqs.iter().copied())
    }
}

/// The `[cpus]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuConfig {
    /// Number of virtual CPUs (at least 1).
    pub count: usize,
    /// Physical CPU each virtual CPU runs on: `pin[i]` is the physical CPU of vCPU `i`.
    /// Exactly `count` entries; several vCPUs may share a physical CPU.
    pub pin: Vec<usize>,
}

/// The `[kernel]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawKernelConfig")]
pub struct KernelConfig {
    /// Name of the kernel image (the build resolves it to a file).
    pub image: String,
    /// Guest-physical address the kernel image is loaded at.
    pub load_addr: u64,
    /// Guest-physical address the boot vCPU starts at (when not given: `load_addr`, or the
    /// format's entry offset from it, [`KernelFormat::entry_offset`]).
    pub entry: u64,
    /// Kernel command line, if any.
    pub cmdline: Option<String>,
    /// Initial RAM disk loaded beside the kernel, if any.
    pub initrd: Option<ImageConfig>,
    /// Device tree blob loaded beside the kernel, if any: a given image, or one the
    /// hypervisor generates from this config.
    pub dtb: Option<DtbConfig>,
    /// What the kernel image is, and so how it is loaded and entered.
    pub format: KernelFormat,
}

/// What a kernel image is (`kernel.format = "..."`): how the hypervisor loads and enters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelFormat {
    /// `"raw"` (default): the bytes are copied to `load_addr` and the boot vCPU starts at
    /// `entry` (a test guest, an arm64 or RISC-V Linux `Image`).
    #[default]
    Raw,
    /// `"linux-bzimage"` (x86_64): a Linux bzImage booted through the 64-bit boot
    /// protocol. The hypervisor copies its protected-mode kernel to `load_addr`, which must
    /// be where the image's setup header puts it (`pref_address`, checked when the VM is
    /// built), and starts the boot vCPU at the 64-bit entry `load_addr + 0x200` (`entry`
    /// must say so) with a zero page, the command line and ACPI tables it generates.
    LinuxBzimage,
}

impl KernelFormat {
    /// The value as written in a config.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::LinuxBzimage => "linux-bzimage",
        }
    }

    /// The only architecture whose VMs boot this format, if it is not every one's.
    pub const fn only_arch(self) -> Option<crate::HostArch> {
        match self {
            Self::Raw => None,
            Self::LinuxBzimage => Some(crate::HostArch::X86_64),
        }
    }

    /// The offset of the entry point from the load address that this format requires, if
    /// it fixes one (a bzImage's 64-bit entry is at +0x200).
    pub const fn entry_offset(self) -> Option<u64> {
        match self {
            Self::Raw => None,
            Self::LinuxBzimage => Some(0x200),
        }
    }
}

/// The `[kernel]` table as written: `entry` may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernelConfig {
    /// Name of the kernel image.
    image: String,
    /// Guest-physical load address.
    load_addr: u64,
    /// Guest-physical entry point; `load_addr` (plus the format's entry offset) when absent.
    entry: Option<u64>,
    /// Kernel command line.
    cmdline: Option<String>,
    /// Initial RAM disk.
    initrd: Option<ImageConfig>,
    /// Device tree blob.
    dtb: Option<DtbConfig>,
    /// What the image is; `raw` when absent.
    #[serde(default)]
    format: KernelFormat,
}

impl From<RawKernelConfig> for KernelConfig {
    fn from(raw: RawKernelConfig) -> Self {
        Self {
            entry: raw.entry.unwrap_or(
                raw.load_addr
                    .saturating_add(raw.format.entry_offset().unwrap_or(0)),
            ),
            image: raw.image,
            load_addr: raw.load_addr,
            cmdline: raw.cmdline,
            initrd: raw.initrd,
            dtb: raw.dtb,
            format: raw.format,
        }
    }
}

/// An extra image loaded into guest memory (`initrd = { ... }`, `dtb = { ... }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// Name of the image (the build resolves it to a file).
    pub image: String,
    /// Guest-physical address the image is loaded at.
    pub load_addr: u64,
}

/// The guest's device tree (`dtb = { ... }`): `image` names a given DTB; without it the
/// hypervisor generates one from this config (CPUs, memory, interrupt controller, timer,
/// UARTs, command line and initrd) at `load_addr`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DtbConfig {
    /// Name of a given DTB image; absent: generated.
    pub image: Option<String>,
    /// Guest-physical address the DTB is loaded at (its address goes to the boot vCPU).
    pub load_addr: u64,
}

impl DtbConfig {
    /// The name used for a generated device tree in messages.
    pub const GENERATED: &'static str = "(generated device tree)";

    /// Whether the hypervisor generates the DTB.
    pub fn generated(&self) -> bool {
        self.image.is_none()
    }

    /// The image name, or [`DtbConfig::GENERATED`].
    pub fn image_name(&self) -> &str {
        self.image.as_deref().unwrap_or(Self::GENERATED)
    }
}

/// One `[[memory]]` region of guest-physical address space.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawMemoryRegion")]
pub struct MemoryRegion {
    /// First guest-physical address (multiple of 4 KiB).
    pub gpa: u64,
    /// Size in bytes (multiple of 4 KiB, not 0).
    pub size: u64,
    /// How the region is backed.
    pub map: MapKind,
    /// What the region is to the guest: RAM (the default) or ROM.
    pub kind: MemKind,
    /// Access the guest has; by default all of read, write and exec for RAM, read and
    /// exec for ROM.
    pub flags: MemFlags,
}

/// The `[[memory]]` table as written: `kind` and `flags` may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemoryRegion {
    /// First guest-physical address.
    gpa: u64,
    /// Size in bytes.
    size: u64,
    /// How the region is backed.
    map: MapKind,
    /// RAM or ROM; RAM when absent.
    #[serde(default)]
    kind: MemKind,
    /// Access rights; the kind's default when absent.
    flags: Option<MemFlags>,
}

impl From<RawMemoryRegion> for MemoryRegion {
    fn from(raw: RawMemoryRegion) -> Self {
        Self {
            gpa: raw.gpa,
            size: raw.size,
            map: raw.map,
            kind: raw.kind,
            flags: raw.flags.unwrap_or(raw.kind.default_flags()),
        }
    }
}

/// What a memory region is to the guest (`kind = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemKind {
    /// `"ram"` (default): memory the guest reads and writes; a `memory` node in a
    /// generated device tree.
    #[default]
    Ram,
    /// `"rom"`: read-only memory (a boot ROM, a flash image). The hypervisor loads images
    /// into it; the guest may read (and execute) it but never write it. Must be
    /// `map = "alloc"` without the `write` flag; a `mtd-rom` node in a generated device
    /// tree.
    Rom,
}

impl MemKind {
    /// The flags of a region of this kind that lists none: all three for RAM, read and
    /// exec for ROM.
    pub const fn default_flags(self) -> MemFlags {
        match self {
            MemKind::Ram => MemFlags::ALL,
            MemKind::Rom => MemFlags {
                read: true,
                write: false,
                exec: true,
            },
        }
    }

    /// The name written in a config.
    pub const fn name(self) -> &'static str {
        match self {
            MemKind::Ram => "ram",
            MemKind::Rom => "rom",
        }
    }
}

impl MemoryRegion {
    /// The first address after the region, or `None` if `gpa + size` overflows.
    pub fn end(&self) -> Option<u64> {
        self.gpa.checked_add(self.size)
    }

    /// Whether `addr` lies in `[gpa, gpa + size)`.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.gpa && self.end().is_none_or(|end| addr < end)
    }
}

/// How a memory region is backed (`map = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MapKind {
    /// `"alloc"`: fresh host frames chosen by the hypervisor.
    Alloc,
    /// `"identity"`: the host-physical range with the same addresses.
    Identity,
    /// `"reserved"`: part of the guest's address space that is not backed (nothing is
    /// loaded there and no vCPU may start there).
    Reserved,
}

/// Access rights of a memory region (`flags = ["read", "write", "exec"]`).
///
/// Written as a list of distinct flag names; absent means all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemFlags {
    /// The guest may read the region.
    pub read: bool,
    /// The guest may write the region.
    pub write: bool,
    /// The guest may execute from the region.
    pub exec: bool,
}

impl MemFlags {
    /// Read, write and exec: the default.
    pub const ALL: Self = Self {
        read: true,
        write: true,
        exec: true,
    };
    /// No access at all (`flags = []`).
    pub const NONE: Self = Self {
        read: false,
        write: false,
        exec: false,
    };
}

impl Default for MemFlags {
    fn default() -> Self {
        Self::ALL
    }
}

/// The names of the memory flags, in the order they are listed in messages.
const MEM_FLAG_NAMES: &[&str] = &["read", "write", "exec"];

impl<'de> Deserialize<'de> for MemFlags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagsVisitor;

        impl<'de> Visitor<'de> for FlagsVisitor {
            type Value = MemFlags;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of distinct flags out of \"read\", \"write\", \"exec\"")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MemFlags, A::Error> {
                let mut flags = MemFlags::NONE;
                while let Some(name) = seq.next_element::<String>()? {
                    let slot = match name.as_str() {
                        "read" => &mut flags.read,
                        "write" => &mut flags.write,
                        "exec" => &mut flags.exec,
                        other => return Err(de::Error::unknown_variant(other, MEM_FLAG_NAMES)),
                    };
                    if *slot {
                        return Err(de::Error::custom(format_args!(
                            "duplicate memory flag `{name}`"
                        )));
                    }
                    *slot = true;
                }
                Ok(flags)
            }
        }

        deserializer.deserialize_seq(FlagsVisitor)
    }
}

/// The device kinds an `[[devices]]` entry may name, as written in `kind = "..."`.
///
/// The single list both the parser and the messages use; [`DeviceKind::ALL`] holds the
/// same kinds in the same order.
pub const DEVICE_KINDS: &[&str] = &[
    "pl011",
    "ns16550",
    "gicd",
    "gicr",
    "gicc",
    "plic",
    "ioapic",
    "virtio-console",
    "virtio-blk",
    "virtio-net",
];

/// One `[[devices]]` entry: a device model the hypervisor emulates for this VM, either at
/// guest-physical addresses (`base`, `size`) or at I/O ports (`port`, and optionally `size`
/// in ports; x86 only, see [`HostArch::has_port_io`](crate::HostArch::has_port_io)).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawDeviceConfig")]
pub struct DeviceConfig {
    /// Which device model.
    pub kind: DeviceKind,
    /// The address space of its registers.
    pub space: DeviceSpace,
    /// First guest-physical address of its registers, or its first I/O port.
    pub base: u64,
    /// Size of its register window in bytes, or its number of ports (not 0).
    pub size: u64,
    /// Interrupt line it raises in the guest, if any.
    pub irq: Option<u32>,
    /// What a `virtio-blk` stores its sectors in (`None` for every other kind).
    pub disk: Option<DiskBacking>,
    /// The switch and address of a `virtio-net` (`None` for every other kind).
    pub net: Option<NetConfig>,
}

/// The backing of a `virtio-blk` device: `file` or `backing`, and `read_only`, in its
/// entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskBacking {
    /// Where the sectors are.
    pub source: DiskSource,
    /// Whether the guest's writes are refused (`read_only = true`; default false).
    pub read_only: bool,
}

/// Where a `virtio-blk` device's sectors are. `Display`: `/vms/disk.img`,
/// `disk "data" bytes 0x100000..0x102000` or `disk "disk0" partition 2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// `file = "/vms/disk.img"`: an existing file on the hypervisor's disk (an absolute
    /// path); the guest sees its whole 512-byte sectors, and it never grows.
    File(String),
    /// `backing = { disk = "data", offset = .., size = .. }` or `backing = { disk =
    /// "disk0", partition = 2 }`: a region of a host block device.
    Region(DiskRegion),
}

impl fmt::Display for DiskSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.write_str(path),
            Self::Region(r) => write!(f, "{r}"),
        }
    }
}

/// A region of the host block device named `disk` (its virtio-blk serial, or `disk<N>`:
/// docs/vm-config.md): bytes of it, or one of its MBR partitions; the guest sees it as its
/// sectors 0 onwards and nothing outside. [`VmConfig::validate`](crate::VmConfig::validate)
/// checks the name and that bytes are whole [`DISK_SECTOR`]s, not empty and end inside 64
/// bits. `Display`: `disk "data" bytes 0x100000..0x102000`, `disk "disk0" partition 2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRegion {
    /// The host disk's name.
    pub disk: String,
    /// Which part of it.
    pub place: RegionPlace,
}

/// Where a [`DiskRegion`] is on its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionPlace {
    /// `offset` and `size`: `size` bytes from byte `offset`.
    Bytes {
        /// The region's first byte on the host disk.
        offset: u64,
        /// The region's size in bytes.
        size: u64,
    },
    /// `partition`: the whole of MBR partition `n` (1 to 4), found in the disk's
    /// partition table when the device is built.
    Partition(u8),
}

impl RegionPlace {
    /// For bytes, the first byte after the region, or `None` if `offset + size` overflows;
    /// `None` for a partition.
    pub fn end(&self) -> Option<u64> {
        match *self {
            Self::Bytes { offset, size } => offset.checked_add(size),
            Self::Partition(_) => None,
        }
    }
}

impl fmt::Display for DiskRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "disk {:?} ", self.disk)?;
        match self.place {
            RegionPlace::Bytes { offset, size } => {
                write!(f, "bytes {offset:#x}..{:#x}", offset.saturating_add(size))
            }
            RegionPlace::Partition(n) => write!(f, "partition {n}"),
        }
    }
}

/// A `backing` table as written: `disk` and `offset` and `size`, or `disk` and
/// `partition`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiskRegion {
    disk: String,
    offset: Option<u64>,
    size: Option<u64>,
    partition: Option<u64>,
}

impl TryFrom<RawDiskRegion> for DiskRegion {
    type Error = DeviceFormError;

    fn try_from(raw: RawDiskRegion) -> Result<Self, DeviceFormError> {
        let place = match (raw.offset, raw.size, raw.partition) {
            (Some(offset), Some(size), None) => RegionPlace::Bytes { offset, size },
            (None, None, Some(n)) => RegionPlace::Partition(
                u8::try_from(n)
                    .ok()
                    .filter(|n| (1..=4).contains(n))
                    .ok_or(DeviceFormError::BadPartition)?,
            ),
            (_, _, Some(_)) => return Err(DeviceFormError::BytesAndPartition),
            _ => return Err(DeviceFormError::NoRegion),
        };
        Ok(Self {
            disk: raw.disk,
            place,
        })
    }
}

/// The sector size of host disks and virtio-blk devices: a region's `offset` and `size`
/// are multiples of it.
pub const DISK_SECTOR: u64 = 512;

/// The longest host disk name (a virtio-blk serial is at most 20 bytes).
pub const MAX_DISK_NAME_LEN: usize = 20;

/// The network of a `virtio-net` device: `switch` and `mac` in its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The virtual switch it is plugged into: VMs naming the same switch are on one
    /// Ethernet (1 to [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) characters out of
    /// `[A-Za-z0-9_-]`).
    pub switch: String,
    /// Its MAC address (`mac = "02:00:00:00:00:01"`, a unicast address); `None`: the
    /// default, [`NetConfig::default_mac`].
    pub mac: Option<[u8; 6]>,
}

impl NetConfig {
    /// The address of a `virtio-net` without `mac`: locally administered and unicast
    /// (`02:41:` then the low 24 bits of the VM id, then `index`, the device's place in
    /// the config's `devices`), so it stays the same from boot to boot.
    pub const fn default_mac(vm_id: u32, index: usize) -> [u8; 6] {
        [
            0x02,
            0x41,
            (vm_id >> 16) as u8,
            (vm_id >> 8) as u8,
            vm_id as u8,
            index as u8,
        ]
    }

    /// The device's address: `mac`, or the default for device `index` of VM `vm_id`.
    pub fn mac_or_default(&self, vm_id: u32, index: usize) -> [u8; 6] {
        self.mac.unwrap_or(Self::default_mac(vm_id, index))
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (hex, two digits a part).
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Where a device's registers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceSpace {
    /// Guest-physical memory (`base`, `size`).
    Mmio,
    /// I/O ports (`port`): x86 `in` / `out`.
    Port,
}

/// The `[[devices]]` entry as written: `base` and `size`, or `port`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeviceConfig {
    kind: DeviceKind,
    base: Option<u64>,
    size: Option<u64>,
    port: Option<u64>,
    irq: Option<u32>,
    file: Option<String>,
    backing: Option<RawDiskRegion>,
    read_only: Option<bool>,
    switch: Option<String>,
    mac: Option<String>,
}

/// Why a `[[devices]]` entry is not one (a parse error, reported with its place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceFormError {
    /// Both `base` and `port`.
    BaseAndPort,
    /// Neither `base` nor `port`.
    NoPlace,
    /// `base` without `size`.
    NoSize,
    /// `port` on a kind that has no port form.
    NoPortForm(DeviceKind),
    /// A `virtio-blk` without `file` or `backing`.
    NoFile,
    /// A `virtio-blk` with both `file` and `backing`.
    FileAndBacking,
    /// A `backing` with neither `offset` and `size` nor `partition`.
    NoRegion,
    /// A `backing` with `partition` and `offset` or `size`.
    BytesAndPartition,
    /// A `partition` that is not 1 to 4.
    BadPartition,
    /// A `file` that is not an absolute path on the hypervisor's disk.
    FileNotAbsolute,
    /// `file`, `backing` or `read_only` on a kind that is not a disk.
    NotADisk(DeviceKind),
    /// A `virtio-net` without `switch`.
    NoSwitch,
    /// A `switch` name that is empty, too long or has other characters than
    /// `[A-Za-z0-9_-]`.
    BadSwitch,
    /// A `mac` that is not six two-digit hex parts separated by `:`.
    BadMac,
    /// A `mac` that is a group (multicast or broadcast) address, or all zeros.
    NotUnicastMac,
    /// `switch` or `mac` on a kind that is not a network device.
    NotANet(DeviceKind),
}

impl fmt::Display for DeviceFormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BaseAndPort => write!(
                f,
                "a device has either `base` and `size` (MMIO) or `port` (I/O ports), not both"
            ),
            Self::NoPlace => write!(f, "missing field `base` (or `port` for an I/O-port device)"),
            Self::NoSize => write!(f, "missing field `size`"),
            Self::NoPortForm(kind) => write!(
                f,
                "a `{kind}` device has no I/O-port form: give it `base` and `size`"
            ),
            Self::NoFile => write!(
                f,
                "missing field `file` (the disk image on the hypervisor's disk, e.g. \"/vms/disk.img\") \
                 or `backing` (a region of a host disk, e.g. {{ disk = \"data\", offset = 0, size = 0x100000 }})"
            ),
            Self::FileAndBacking => write!(
                f,
                "a `virtio-blk` has either `file` or `backing`, not both"
            ),
            Self::NoRegion => write!(
                f,
                "a `backing` needs `offset` and `size` (bytes of the disk) or `partition` (a whole MBR partition, 1 to 4)"
            ),
            Self::BytesAndPartition => write!(
                f,
                "a `backing` has either `offset` and `size` or `partition`, not both"
            ),
            Self::BadPartition => write!(f, "`partition` is an MBR partition: 1 to 4"),
            Self::FileNotAbsolute => write!(
                f,
                "`file` is a path on the hypervisor's disk starting with '/' (e.g. \"/vms/disk.img\")"
            ),
            Self::NotADisk(kind) => write!(
                f,
                "`file`, `backing` and `read_only` are for `virtio-blk` devices, not `{kind}`"
            ),
            Self::NoSwitch => write!(
                f,
                "missing field `switch` (the virtual switch it is plugged into, e.g. \"lan\")"
            ),
            Self::BadSwitch => write!(
                f,
                "`switch` is 1 to {} characters out of [A-Za-z0-9_-]",
                crate::MAX_NAME_LEN
            ),
            Self::BadMac => write!(
                f,
                "`mac` is six two-digit hex numbers separated by ':' (e.g. \"02:00:00:00:00:01\")"
            ),
            Self::NotUnicastMac => write!(
                f,
                "`mac` must be a unicast address (the low bit of its first byte clear), not all zeros"
            ),
            Self::NotANet(kind) => {
                write!(f, "`switch` and `mac` are for `virtio-net` devices, not `{kind}`")
            }
        }
    }
}

impl TryFrom<RawDeviceConfig> for DeviceConfig {
    type Error = DeviceFormError;

    fn try_from(raw: RawDeviceConfig) -> Result<Self, DeviceFormError> {
        let (space, base, size) = match (raw.base, raw.port) {
            (Some(_), Some(_)) => return Err(DeviceFormError::BaseAndPort),
            (None, None) => return Err(DeviceFormError::NoPlace),
            (Some(base), None) => (
                DeviceSpace::Mmio,
                base,
                raw.size
                    .or(raw.kind.default_size())
                    .ok_or(DeviceFormError::NoSize)?,
            ),
            (None, Some(port)) => {
                let ports = raw
                    .kind
                    .port_count()
                    .ok_or(DeviceFormError::NoPortForm(raw.kind))?;
                (DeviceSpace::Port, port, raw.size.unwrap_or(ports))
            }
        };
        let read_only = raw.read_only.unwrap_or(false);
        let disk = match (raw.kind, raw.file, raw.backing) {
            (DeviceKind::VirtioBlk, None, None) => return Err(DeviceFormError::NoFile),
            (DeviceKind::VirtioBlk, Some(_), Some(_)) => {
                return Err(DeviceFormError::FileAndBacking)
            }
            (DeviceKind::VirtioBlk, Some(file), None) if !file.starts_with('/') => {
                return Err(DeviceFormError::FileNotAbsolute)
            }
            (DeviceKind::VirtioBlk, Some(file), None) => Some(DiskBacking {
                source: DiskSource::File(file),
                read_only,
            }),
            (DeviceKind::VirtioBlk, None, Some(region)) => Some(DiskBacking {
                source: DiskSource::Region(DiskRegion::try_from(region)?),
                read_only,
            }),
            (_, None, None) if raw.read_only.is_none() => None,
            (kind, _, _) => return Err(DeviceFormError::NotADisk(kind)),
        };
        let net = match (raw.kind, raw.switch) {
            (DeviceKind::VirtioNet, None) => return Err(DeviceFormError::NoSwitch),
            (DeviceKind::VirtioNet, Some(switch)) => {
                let name_ok = (1..=crate::MAX_NAME_LEN).contains(&switch.len())
                    && switch
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !name_ok {
                    return Err(DeviceFormError::BadSwitch);
                }
                let mac = match raw.mac {
                    None => None,
                    Some(s) => {
                        let mac = parse_mac(&s).ok_or(DeviceFormError::BadMac)?;
                        if mac[0] & 1 != 0 || mac == [0; 6] {
                            return Err(DeviceFormError::NotUnicastMac);
                        }
                        Some(mac)
                    }
                };
                Some(NetConfig { switch, mac })
            }
            (kind, Some(_)) => return Err(DeviceFormError::NotANet(kind)),
            (kind, None) if raw.mac.is_some() => return Err(DeviceFormError::NotANet(kind)),
            (_, None) => None,
        };
        Ok(Self {
            kind: raw.kind,
            space,
            base,
            size,
            irq: raw.irq,
            disk,
            net,
        })
    }
}

impl DeviceConfig {
    /// The first address (or port) after the register window, or `None` if `base + size`
    /// overflows.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    /// Its first I/O port, for a device in the port space whose ports are all below
    /// 0x1_0000 (checked with the config).
    pub fn port(&self) -> Option<u16> {
        match self.space {
            DeviceSpace::Port => u16::try_from(self.base).ok(),
            DeviceSpace::Mmio => None,
        }
    }
}

/// A device model (`kind = "..."`); see [`DEVICE_KINDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// `"pl011"`: Arm PrimeCell UART.
    Pl011,
    /// `"ns16550"`: 16550-compatible UART.
    Ns16550,
    /// `"gicd"`: the distributor of an Arm GIC (aarch64). The virtual GIC has the host's
    /// version (v2 or v3).
    GicDistributor,
    /// `"gicr"`: the redistributors of a GICv3 (one 128 KiB frame pair per vCPU); used on
    /// GICv3 hosts, ignored on GICv2 ones.
    GicRedistributor,
    /// `"gicc"`: the GICv2 CPU interface, where the host's virtual CPU interface (GICV) is
    /// mapped; used on GICv2 hosts, ignored on GICv3 ones.
    GicCpuInterface,
    /// `"plic"`: a RISC-V platform-level interrupt controller (riscv64), one context per
    /// vCPU.
    Plic,
    /// `"ioapic"`: an I/O APIC (x86_64, 24 inputs, a 4 KiB window), with a local APIC per
    /// vCPU and the PC's legacy devices (PIC, PIT, RTC, ACPI PM1 registers) beside it.
    Ioapic,
    /// `"virtio-console"`: a virtio-console (`hvc0`) on the virtio-mmio transport, a
    /// [`VIRTIO_MMIO_SIZE`] window (the default `size`) and an `irq`; see `docs/virtio.md`.
    VirtioConsole,
    /// `"virtio-blk"`: a virtio block device on the virtio-mmio transport backed by a
    /// `file` on the hypervisor's disk or a region of a host disk ([`DiskBacking`]), a
    /// [`VIRTIO_MMIO_SIZE`] window and an `irq`; see `docs/virtio.md`.
    VirtioBlk,
    /// `"virtio-net"`: a virtio network device on the virtio-mmio transport plugged into a
    /// virtual `switch` ([`NetConfig`]), a [`VIRTIO_MMIO_SIZE`] window and an `irq`; see
    /// `docs/virtio.md`.
    VirtioNet,
}

/// The register window of a virtio-mmio device: the default and only `size` of a virtio
/// kind.
pub const VIRTIO_MMIO_SIZE: u64 = 0x200;

impl DeviceKind {
    /// Every kind, in the order of [`DEVICE_KINDS`].
    pub const ALL: [DeviceKind; 10] = [
        DeviceKind::Pl011,
        DeviceKind::Ns16550,
        DeviceKind::GicDistributor,
        DeviceKind::GicRedistributor,
        DeviceKind::GicCpuInterface,
        DeviceKind::Plic,
        DeviceKind::Ioapic,
        DeviceKind::VirtioConsole,
        DeviceKind::VirtioBlk,
        DeviceKind::VirtioNet,
    ];

    /// How many I/O ports the kind has when it is given a `port` (its registers one port
    /// apart); `None` for a kind with registers in memory only.
    pub const fn port_count(self) -> Option<u64> {
        match self {
            DeviceKind::Ns16550 => Some(8),
            _ => None,
        }
    }

    /// The name written in a config.
    pub const fn name(self) -> &'static str {
        match self {
            DeviceKind::Pl011 => "pl011",
            DeviceKind::Ns16550 => "ns16550",
            DeviceKind::GicDistributor => "gicd",
            DeviceKind::GicRedistributor => "gicr",
            DeviceKind::GicCpuInterface => "gicc",
            DeviceKind::Plic => "plic",
            DeviceKind::Ioapic => "ioapic",
            DeviceKind::VirtioConsole => "virtio-console",
            DeviceKind::VirtioBlk => "virtio-blk",
            DeviceKind::VirtioNet => "virtio-net",
        }
    }

    /// Whether this is (part of) the VM's interrupt controller: built by the architecture
    /// layer, at most one of each kind per VM.
    pub const fn is_interrupt_controller(self) -> bool {
        !matches!(
            self,
            DeviceKind::Pl011
                | DeviceKind::Ns16550
                | DeviceKind::VirtioConsole
                | DeviceKind::VirtioBlk
                | DeviceKind::VirtioNet
        )
    }

    /// Whether this is a virtio device (on the virtio-mmio transport).
    pub const fn is_virtio(self) -> bool {
        matches!(
            self,
            DeviceKind::VirtioConsole | DeviceKind::VirtioBlk | DeviceKind::VirtioNet
        )
    }

    /// The `size` of an MMIO device whose entry leaves it out; `None`: it must be given.
    pub const fn default_size(self) -> Option<u64> {
        if self.is_virtio() {
            Some(VIRTIO_MMIO_SIZE)
        } else {
            None
        }
    }

    /// The kind written as `name`, if it is one of [`DEVICE_KINDS`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for DeviceKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        DeviceKind::from_name(&name).ok_or_else(|| de::Error::unknown_variant(&name, DEVICE_KINDS))
    }
}

/// One `[[passthrough]]` entry: a host device given to the guest directly — a physical
/// range mapped into the guest at the same address, I/O ports the guest reaches without an
/// exit (x86_64 only), or both — with its interrupts forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPassthroughConfig")]
pub struct PassthroughConfig {
    /// Label of the device (for messages).
    pub name: String,
    /// Its physical range (`base`, `size`), if it has one.
    pub mmio: Option<MmioRange>,
    /// Its I/O port ranges (`ports = [[first, count], ...]`); none by default.
    pub ports: Vec<PortRange>,
    /// Host interrupts forwarded to the guest; none by default.
    pub irqs: Vec<u32>,
}

/// A passthrough device's physical range: mapped into the guest at the same address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MmioRange {
    /// First physical address of the range (multiple of 4 KiB).
    pub base: u64,
    /// Size of the range in bytes (multiple of 4 KiB, not 0).
    pub size: u64,
}

impl MmioRange {
    /// The first address after the range, or `None` if `base + size` overflows.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }
}

/// A range of I/O ports given to a VM (`[first, count]` in a passthrough entry's `ports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "Vec<u64>")]
pub struct PortRange {
    /// First port.
    pub port: u64,
    /// Number of ports (not 0; the range ends by 0x1_0000).
    pub count: u64,
}

/// A passthrough `ports` entry that is not `[first, count]` (a parse error): how many
/// numbers it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRangeFormError(pub usize);

impl fmt::Display for PortRangeFormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a port range is `[first port, number of ports]`, not {} number(s)",
            self.0
        )
    }
}

impl TryFrom<Vec<u64>> for PortRange {
    type Error = PortRangeFormError;

    fn try_from(v: Vec<u64>) -> Result<Self, PortRangeFormError> {
        match v[..] {
            [port, count] => Ok(Self { port, count }),
            _ => Err(PortRangeFormError(v.len())),
        }
    }
}

impl PortRange {
    /// The first port after the range (saturating: a range past 0xFFFF is refused by the
    /// check).
    pub fn end(&self) -> u64 {
        self.port.saturating_add(self.count)
    }

    /// The range as 16-bit ports `first..end` (`end` up to 0x1_0000), for a range inside
    /// the port space (checked with the config); `None` otherwise.
    pub fn ports(&self) -> Option<core::ops::Range<u32>> {
        let end = self.port.checked_add(self.count)?;
        (end <= 0x1_0000).then_some(self.port as u32..end as u32)
    }
}

/// The `[[passthrough]]` entry as written: `base` and `size`, `ports`, or both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPassthroughConfig {
    name: String,
    base: Option<u64>,
    size: Option<u64>,
    #[serde(default)]
    ports: Vec<PortRange>,
    #[serde(default)]
    irqs: Vec<u32>,
}

/// Why a `[[passthrough]]` entry is not one (a parse error, reported with its place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassthroughFormError {
    /// `base` without `size`.
    NoSize,
    /// `size` without `base`.
    NoBase,
    /// Neither a range (`base`, `size`) nor `ports`.
    Nothing,
}

impl fmt::Display for PassthroughFormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSize => write!(f, "missing field `size` (a passthrough `base` needs it)"),
            Self::NoBase => write!(f, "missing field `base` (a passthrough `size` needs it)"),
            Self::Nothing => write!(
                f,
                "a passthrough device needs `base` and `size` (a physical range), `ports` \
                 (I/O port ranges, x86_64), or both"
            ),
        }
    }
}

impl TryFrom<RawPassthroughConfig> for PassthroughConfig {
    type Error = PassthroughFormError;

    fn try_from(raw: RawPassthroughConfig) -> Result<Self, PassthroughFormError> {
        let mmio = match (raw.base, raw.size) {
            (Some(base), Some(size)) => Some(MmioRange { base, size }),
            (Some(_), None) => return Err(PassthroughFormError::NoSize),
            (None, Some(_)) => return Err(PassthroughFormError::NoBase),
            (None, None) if raw.ports.is_empty() => return Err(PassthroughFormError::Nothing),
            (None, None) => None,
        };
        Ok(Self {
            name: raw.name,
            mmio,
            ports: raw.ports,
            irqs: raw.irqs,
        })
    }
}

/// Size of a link's doorbell window (`links[i].doorbell`): one page of registers.
pub const LINK_DOORBELL_SIZE: u64 = 0x1000;

/// One `[[links]]` entry: memory shared with the VM named `peer` and a doorbell to ring it
/// (docs/doorbell.md). Both VMs declare the link under the same `name`, each naming the
/// other, with the same `shmem.size`; the hypervisor allocates the shared frames once and
/// maps them into both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// The link's name, the same in both VMs' configs (letters, digits, `_`, `-`).
    pub name: String,
    /// The name of the other VM (it need not exist: a missing peer is not an error).
    pub peer: String,
    /// Where the shared memory appears in this VM.
    pub shmem: LinkShmem,
    /// Where this VM's doorbell window is and the interrupt the peer's rings raise.
    pub doorbell: LinkDoorbell,
}

/// A link's shared memory in one VM (`shmem = { gpa, size }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkShmem {
    /// First guest-physical address (multiple of 4 KiB).
    pub gpa: u64,
    /// Size in bytes (multiple of 4 KiB, not 0); the same in both VMs.
    pub size: u64,
}

/// A link's doorbell in one VM (`doorbell = { base, irq }`): a [`LINK_DOORBELL_SIZE`]
/// register window and the line of the VM's interrupt controller it raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDoorbell {
    /// First guest-physical address of the window (multiple of 4 KiB).
    pub base: u64,
    /// Interrupt line raised while the peer's rings are pending.
    pub irq: u32,
}

/// What an access to an unclaimed guest-physical address does (`[unclaimed] policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnclaimedPolicy {
    /// `"fault"` (default): the guest receives a data abort / access fault.
    #[default]
    Fault,
    /// `"read-zero"`: reads return 0 and writes are ignored.
    ReadZero,
    /// `"stop"`: the VM is stopped.
    Stop,
}

/// The `[unclaimed]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnclaimedTable {
    /// The policy; `"fault"` when absent.
    #[serde(default)]
    policy: UnclaimedPolicy,
}

fn deserialize_unclaimed<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<UnclaimedPolicy, D::Error> {
    UnclaimedTable::deserialize(deserializer).map(|table| table.policy)
}
