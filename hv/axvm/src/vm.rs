//! The VM object and its exit-dispatch loop.

use crate::fault_streak::FaultStreak;
use crate::guest_ram::{GuestRam, VirtioConsoleInput};
use crate::hypercall as hc;
use crate::stats::{ExitCounters, ExitKind};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use axaddrspace::{
    AccessError, AddrSpace, AddrSpaceError, FrameAllocator, GuestPhysAddr, HostPhysAddr,
    MappingFlags, PteFormat,
};
use axdevice::uart::{Ns16550, Pl011, UartInput};
use axdevice::{DeviceSet, DeviceSetError, MmioOutcome, PortOutcome};
use axdevice_base::{AccessWidth, GuestMemory, IrqLine};
use axdevice_base::{ConsoleSink, MmioDevice, PrefixedConsole};
use axvcpu::{ArchVCpu, PowerReply, PowerState, VCpu, VCpuError, VmExit};
use axvirtio::console::VirtioConsole;
use axvirtio::{VirtioMmio, VirtioReset};
use axvirtio_blk::{Backing, HostRegionError, VirtioBlk};
use axvirtio_net::{Mac, NetError, NetMmio, NetSwitch, VirtioNet};
use axvmconfig::{
    DeviceKind, DeviceSpace, DiskBacking, DiskRegion, MapKind, UnclaimedPolicy, VmConfig,
};
use core::fmt;
use core::ops::ControlFlow;
use core::sync::atomic::{AtomicU8, Ordering};
use spin::Mutex;

/// What the architecture layer adds to a VM ([`crate::ArchPlatform::build`]): its interrupt
/// controller (emulated register windows, host frames mapped into the guest, interrupt
/// lines for device models), a generated device tree, and bytes the guest finds in memory
/// at entry.
pub struct VmPlatform {
    /// Emulated devices at guest-physical addresses (a GIC distributor, a PLIC, ...).
    pub devices: Vec<(u64, Arc<dyn MmioDevice>)>,
    /// Host device frames mapped into the guest besides the config's passthrough ranges
    /// (which the VM maps itself): the GICv2 virtual CPU interface.
    pub device_maps: Vec<DeviceMap>,
    /// Host RAM frames shared with another VM (a link's memory, docs/doorbell.md), mapped
    /// as normal memory the guest reads and writes (not executes). Whoever fills this keeps
    /// the frames alive for as long as the VM may map them.
    pub shared_memory: Vec<DeviceMap>,
    /// Interrupt line `n` of the VM's interrupt controller, for a device's `irq`.
    pub irq_line: alloc::boxed::Box<dyn Fn(u32) -> Option<Arc<dyn IrqLine>>>,
    /// The DTB to load when the config asks for a generated one.
    pub dtb: Option<Vec<u8>>,
    /// `(guest-physical address, bytes)` written into guest memory after the images, at
    /// boot and at every reset (x86: the boot GDT and page tables of the entry state).
    pub boot_data: Vec<(u64, Vec<u8>)>,
    /// Puts the platform's devices back in their reset state on a VM reset (the
    /// interrupt controller), if they need it.
    pub on_reset: Option<alloc::boxed::Box<dyn Fn() + Send + Sync>>,
    /// The kernel's boot as the architecture prepared it ([`crate::ArchPlatform::prepare_boot`]),
    /// for a kernel format whose placement the architecture decides; `None`: the config's
    /// images go to their `load_addr` and vCPU 0 starts at `kernel.entry`.
    pub kernel: Option<KernelBoot>,
    /// Opens the backing of a `virtio-blk` device (a file on the hypervisor's disk); the
    /// message says why it cannot be. [`VmPlatform::none`] has no disk.
    pub disks: DiskOpener,
    /// The virtual switch of a given name, shared by every VM whose `virtio-net` devices
    /// name it (created on first use); `None`: the platform has none.
    /// [`VmPlatform::none`] has none.
    pub switches: SwitchFinder,
}

/// How a platform finds a `virtio-net` device's switch by name ([`VmPlatform::switches`]).
pub type SwitchFinder = Box<dyn Fn(&str) -> Option<Arc<NetSwitch>>>;

/// How a platform opens a `virtio-blk` device's backing ([`VmPlatform::disks`]).
pub type DiskOpener = Box<dyn Fn(&DiskBacking) -> Result<Box<dyn Backing>, DiskOpenError>>;

/// Why a `virtio-blk` device's backing could not be opened. `Display` is one line naming
/// the file or the region once: `/vms/disk.img: no such file or directory`, `disk "data"
/// bytes 0x81000..0x83000: runs past the end of the disk (0x100000 bytes)`.
#[derive(Debug)]
pub enum DiskOpenError {
    /// The platform gives VMs no disk ([`VmPlatform::none`]).
    NoDisks,
    /// A `file` backing: what the platform's filesystem said, a line that names the file.
    File(Box<dyn core::error::Error + Send + Sync>),
    /// A `backing` region of a host disk.
    Region {
        /// The region, as the config gives it.
        region: DiskRegion,
        /// Why the VM cannot have it.
        error: HostRegionError,
    },
}

impl fmt::Display for DiskOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDisks => f.write_str("no disk is available to VMs on this platform"),
            Self::File(e) => write!(f, "{e}"),
            Self::Region { region, error } => write!(f, "{region}: {error}"),
        }
    }
}

impl core::error::Error for DiskOpenError {}

/// A kernel's boot prepared by the architecture (x86: a Linux bzImage through the 64-bit
/// boot protocol) in place of the config's image loads: what goes where in guest memory, at
/// boot and at every reset, and how vCPU 0 starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelBoot {
    /// Bytes borrowed from the VM's images (the kernel, the initrd: no copy on the heap),
    /// written in this order.
    pub images: Vec<ImageLoad>,
    /// Bytes the architecture generated (x86: the zero page, the command line, the ACPI
    /// tables), written after the images, before [`VmPlatform::boot_data`].
    pub data: Vec<(u64, Vec<u8>)>,
    /// Where vCPU 0 starts.
    pub entry: u64,
    /// vCPU 0's general-purpose registers at the entry, as `(index, value)` for
    /// [`ArchVCpu::set_gpr`]; they replace [`crate::ArchPlatform::boot_regs`].
    pub regs: Vec<(usize, u64)>,
}

/// Image bytes written into guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLoad {
    /// What it is (an image name, or a part of one: for messages).
    pub name: String,
    /// Guest-physical address.
    pub gpa: u64,
    /// The bytes.
    pub bytes: &'static [u8],
}

impl VmPlatform {
    /// Nothing added: no interrupt controller (devices with an `irq` are refused), no DTB.
    pub fn none() -> Self {
        Self {
            devices: Vec::new(),
            device_maps: Vec::new(),
            shared_memory: Vec::new(),
            irq_line: alloc::boxed::Box::new(|_| None),
            dtb: None,
            boot_data: Vec::new(),
            on_reset: None,
            kernel: None,
            disks: alloc::boxed::Box::new(|_| Err(DiskOpenError::NoDisks)),
            switches: alloc::boxed::Box::new(|_| None),
        }
    }
}

/// A host device range mapped into a guest.
#[derive(Clone, Debug)]
pub struct DeviceMap {
    /// What it is (for messages).
    pub what: &'static str,
    /// Guest-physical address.
    pub gpa: u64,
    /// Host-physical address.
    pub hpa: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum VmStatus {
    /// Being built.
    Loading = 0,
    /// Built, not started.
    Loaded = 1,
    /// vCPUs may run.
    Running = 2,
    /// Asked to stop; vCPUs leave at their next exit.
    Stopping = 3,
    /// Stopped.
    Stopped = 4,
    /// Paused ([`AxVm::pause`]): vCPUs do not enter the guest until [`AxVm::resume`];
    /// memory, devices and vCPU state are kept.
    Paused = 5,
}

/// What the hypervisor must decide after a vCPU exit the VM did not handle itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuEvent {
    /// The guest waits for an interrupt.
    Halt,
    /// A physical interrupt interrupted the guest (already taken by the hypervisor).
    Interrupt,
    /// The guest started another vCPU (PSCI CPU_ON, SBI HSM hart_start): vCPU `vcpu` is set
    /// up at its entry and must now be run (on its own physical CPU). The caller has its
    /// answer already.
    CpuUp {
        /// Index of the started vCPU.
        vcpu: usize,
    },
    /// The guest stopped this vCPU (PSCI CPU_OFF, SBI hart_stop); it stays off until another
    /// vCPU starts it again. When it was the last vCPU on, the VM is stopped instead
    /// ([`VcpuEvent::Stopped`]).
    CpuDown,
    /// The guest powers the VM off.
    PowerOff,
    /// The guest resets the VM.
    Reset,
    /// The VM was stopped because of what the guest did (the reason is logged).
    Stopped(&'static str),
}

/// Errors building or running a VM. Guest misbehaviour is not an error: it gives
/// [`VcpuEvent::Stopped`].
#[derive(Debug)]
pub enum VmError {
    /// The VM's address space could not be made (no frame for its root table).
    AddressSpace(AddrSpaceError),
    /// Region `memory[index]` of the config could not be mapped (out of memory, overlap,
    /// ...).
    Memory {
        /// Its index in the config's `memory`.
        index: usize,
        /// Its guest-physical start.
        gpa: u64,
        /// Its size in bytes.
        size: u64,
        /// Why.
        error: AddrSpaceError,
    },
    /// A device could not be added.
    Device {
        /// What it is: its kind (`virtio-blk`), `passthrough device`, or a platform
        /// device's name.
        device: String,
        /// Where it is.
        at: DeviceAt,
        /// Why.
        error: DeviceError,
    },
    /// An image named by the config was not provided.
    MissingImage(String),
    /// An image (or boot data) could not be written into guest memory.
    Load {
        /// What was being loaded.
        what: LoadWhat,
        /// Why.
        error: AccessError,
    },
    /// A read of guest memory was refused.
    Access(AccessError),
    /// The vCPU layer refused.
    VCpu(VCpuError),
    /// No such vCPU.
    NoSuchVcpu(usize),
    /// The VM is not running.
    NotRunning(VmStatus),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::AddressSpace(e) => write!(f, "guest memory: {e}"),
            VmError::Memory {
                index,
                gpa,
                size,
                error,
            } => write!(
                f,
                "guest memory: memory[{index}] ({} KiB at {gpa:#x}): {error}",
                size / 1024
            ),
            VmError::Device { device, at, error } => write!(f, "device: {device} at {at}: {error}"),
            VmError::MissingImage(i) => write!(f, "image {i:?} is not in the hypervisor image"),
            VmError::Load { what, error } => write!(f, "loading {what}: {error}"),
            VmError::Access(e) => write!(f, "guest memory: {e}"),
            VmError::VCpu(e) => write!(f, "vcpu: {e}"),
            VmError::NoSuchVcpu(i) => write!(f, "no vcpu {i}"),
            VmError::NotRunning(s) => write!(f, "the VM is {s:?}"),
        }
    }
}

/// What [`VmError::Load`] could not load. `Display`: `image "kernel"`, `boot data at 0x..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadWhat {
    /// The image of that name.
    Image(String),
    /// Boot data (a DTB, boot parameters) at that guest-physical address.
    BootData(u64),
}

impl fmt::Display for LoadWhat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadWhat::Image(name) => write!(f, "image {name:?}"),
            LoadWhat::BootData(gpa) => write!(f, "boot data at {gpa:#x}"),
        }
    }
}

/// Where a device of a VM is ([`VmError::Device`]). `Display`: `0xa000000`, `port 0x3f8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceAt {
    /// Its first guest-physical address.
    Mmio(u64),
    /// Its first I/O port.
    Port(u64),
}

impl fmt::Display for DeviceAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mmio(addr) => write!(f, "{addr:#x}"),
            Self::Port(port) => write!(f, "port {port:#x}"),
        }
    }
}

/// Why a device could not be added to a VM ([`VmError::Device`]). `Display` is one line.
#[derive(Debug)]
pub enum DeviceError {
    /// Mapping its host range into the guest failed.
    Map(AddrSpaceError),
    /// Its `irq` is not a line of the VM's interrupt controller.
    NoSuchIrq(u32),
    /// A virtio device without an `irq`.
    NeedsIrq,
    /// A `virtio-blk` without a backing.
    NoBacking,
    /// A `virtio-blk`'s backing could not be opened (boxed: the largest cause).
    Disk(Box<DiskOpenError>),
    /// A `virtio-net` without a `switch`.
    NoSwitch,
    /// The platform has no virtual switches.
    NoSwitches,
    /// The switch refused a port.
    Switch(NetError),
    /// A port device whose port is not a 16-bit port.
    NotAPort,
    /// The device set refused it (an overlap).
    Add(DeviceSetError),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Map(e) => write!(f, "{e}"),
            Self::NoSuchIrq(n) => write!(
                f,
                "interrupt {n} does not exist in this VM's interrupt controller"
            ),
            Self::NeedsIrq => f.write_str("a virtio device needs an `irq`"),
            Self::NoBacking => f.write_str("no backing"),
            Self::Disk(e) => write!(f, "{e}"),
            Self::NoSwitch => f.write_str("no `switch`"),
            Self::NoSwitches => f.write_str("no virtual switch is available on this platform"),
            Self::Switch(e) => write!(f, "{e}"),
            Self::NotAPort => f.write_str("not a 16-bit port"),
            Self::Add(e) => write!(f, "{e}"),
        }
    }
}

impl From<VCpuError> for VmError {
    fn from(e: VCpuError) -> Self {
        VmError::VCpu(e)
    }
}

/// One virtual machine.
pub struct AxVm<A: ArchVCpu, F: PteFormat, M: FrameAllocator> {
    config: VmConfig,
    /// Shared with the devices that read and write guest RAM ([`GuestRam`]).
    pub(crate) aspace: Arc<Mutex<AddrSpace<F, M>>>,
    devices: DeviceSet,
    console: Arc<PrefixedConsole>,
    vcpus: Vec<Mutex<VCpu<A>>>,
    /// Each vCPU's [`PowerState`] as a `u8` (see [`power_code`]); changed without taking the
    /// vCPU's lock, which its task holds while the guest runs.
    power: Vec<AtomicU8>,
    /// Each vCPU's run of resolved nested page faults on one page ([`FaultStreak`]).
    fault_streaks: Vec<Mutex<FaultStreak>>,
    status: AtomicU8,
    exits: ExitCounters,
    /// The images and where they go, kept for reset.
    images: Vec<ImageLoad>,
    /// The platform's boot data ([`VmPlatform::boot_data`]) after a generated DTB, kept for
    /// reset.
    boot_data: Vec<(u64, Vec<u8>)>,
    /// Where vCPU 0 starts.
    entry: u64,
    /// Initial registers of vCPU 0, kept for reset.
    boot_regs: Mutex<Vec<(usize, u64)>>,
    resets: core::sync::atomic::AtomicU64,
    /// The platform's reset hook ([`VmPlatform::on_reset`]).
    on_reset: Option<alloc::boxed::Box<dyn Fn() + Send + Sync>>,
    /// The receive side of its console (the first UART or virtio-console of its config),
    /// if any.
    uart_input: Option<Arc<dyn UartInput>>,
    /// Its virtio devices, reset with the VM.
    virtio: Vec<Arc<dyn VirtioReset>>,
}

fn mapping_flags(f: &axvmconfig::MemFlags) -> MappingFlags {
    let mut m = MappingFlags::empty();
    m.set(MappingFlags::READ, f.read);
    m.set(MappingFlags::WRITE, f.write);
    m.set(MappingFlags::EXECUTE, f.exec);
    m
}

/// [`PowerState`] as stored in [`AxVm`]'s atomics.
const fn power_code(p: PowerState) -> u8 {
    match p {
        PowerState::Off => 0,
        PowerState::Pending => 1,
        PowerState::On => 2,
    }
}

fn power_state(code: u8) -> PowerState {
    match code {
        0 => PowerState::Off,
        1 => PowerState::Pending,
        _ => PowerState::On,
    }
}

fn device_policy(p: UnclaimedPolicy) -> axdevice::UnclaimedPolicy {
    match p {
        UnclaimedPolicy::Fault => axdevice::UnclaimedPolicy::Fault,
        UnclaimedPolicy::ReadZero => axdevice::UnclaimedPolicy::ReadZero,
        UnclaimedPolicy::Stop => axdevice::UnclaimedPolicy::Stop,
    }
}

impl<A: ArchVCpu, F: PteFormat, M: FrameAllocator> AxVm<A, F, M> {
    /// Builds the VM from a validated `config`: address space, devices, vCPUs, images.
    /// `images` gives an image's bytes by name; `console` receives each complete line the
    /// guest prints, already prefixed with `[<vm name>] `; `vcpu_config` gives each vCPU's
    /// architecture parameters; `platform` adds what the architecture layer built (the
    /// interrupt controller, a generated device tree).
    pub fn new(
        config: VmConfig,
        alloc: M,
        images: &dyn Fn(&str) -> Option<&'static [u8]>,
        console: Arc<dyn Fn(&str) + Send + Sync>,
        vcpu_config: &dyn Fn(usize) -> A::CreateConfig,
        platform: VmPlatform,
    ) -> Result<Self, VmError>
    where
        // The address space is shared with devices that reach guest RAM (virtio).
        AddrSpace<F, M>: Send + 'static,
    {
        let mut aspace = AddrSpace::new(alloc).map_err(VmError::AddressSpace)?;
        for (i, r) in config.memory.iter().enumerate() {
            let (gpa, size) = (GuestPhysAddr::new(r.gpa as usize), r.size as usize);
            let flags = mapping_flags(&r.flags);
            match r.map {
                MapKind::Alloc => aspace.map_alloc(gpa, size, flags, true),
                MapKind::Identity => {
                    aspace.map_linear(gpa, HostPhysAddr::new(r.gpa as usize), size, flags)
                }
                MapKind::Reserved => continue,
            }
            .map_err(|error| VmError::Memory {
                index: i,
                gpa: r.gpa,
                size: r.size,
                error,
            })?;
        }
        // The passthrough ranges at their host addresses, then the platform's host frames
        // (device memory), then the frames it shares with other VMs (normal memory).
        let passthrough = config
            .passthrough
            .iter()
            .filter_map(|p| p.mmio)
            .map(|m| DeviceMap {
                what: "passthrough device",
                gpa: m.base,
                hpa: m.base,
                size: m.size,
            });
        let device = MappingFlags::READ | MappingFlags::WRITE | MappingFlags::DEVICE;
        let shared = MappingFlags::READ | MappingFlags::WRITE;
        let maps = passthrough
            .chain(platform.device_maps.iter().cloned())
            .map(|m| (m, device))
            .chain(platform.shared_memory.iter().cloned().map(|m| (m, shared)));
        for (m, flags) in maps {
            aspace
                .map_linear(
                    GuestPhysAddr::new(m.gpa as usize),
                    HostPhysAddr::new(m.hpa as usize),
                    m.size as usize,
                    flags,
                )
                .map_err(|e| VmError::Device {
                    device: m.what.into(),
                    at: DeviceAt::Mmio(m.gpa),
                    error: DeviceError::Map(e),
                })?;
        }

        let aspace = Arc::new(Mutex::new(aspace));
        let ram: Arc<dyn GuestMemory> = Arc::new(GuestRam::new(aspace.clone(), &config));
        let mut virtio: Vec<Arc<dyn VirtioReset>> = Vec::new();
        let console = Arc::new(PrefixedConsole::new(config.name.clone(), console));
        let mut devices = DeviceSet::new(&config.name, device_policy(config.unclaimed));
        let mut uart_input: Option<Arc<dyn UartInput>> = None;
        for (index, d) in config.devices.iter().enumerate() {
            let sink: Arc<dyn ConsoleSink> = console.clone();
            let fail = |error: DeviceError| VmError::Device {
                device: d.kind.name().into(),
                at: match d.space {
                    DeviceSpace::Mmio => DeviceAt::Mmio(d.base),
                    DeviceSpace::Port => DeviceAt::Port(d.base),
                },
                error,
            };
            let irq = match d.irq {
                Some(n) => {
                    Some((platform.irq_line)(n).ok_or_else(|| fail(DeviceError::NoSuchIrq(n)))?)
                }
                None => None,
            };
            let virtio_irq =
                |irq: Option<Arc<dyn IrqLine>>| irq.ok_or_else(|| fail(DeviceError::NeedsIrq));
            let dev: Arc<dyn MmioDevice> = match d.kind {
                DeviceKind::Pl011 => {
                    let uart = Arc::new(Pl011::new(sink, irq));
                    uart_input.get_or_insert_with(|| uart.clone());
                    uart
                }
                DeviceKind::Ns16550 => {
                    let uart = Arc::new(Ns16550::new(sink, irq).with_size(d.size as usize));
                    uart_input.get_or_insert_with(|| uart.clone());
                    uart
                }
                DeviceKind::VirtioConsole => {
                    let con = Arc::new(VirtioMmio::new(
                        d.kind.name(),
                        VirtioConsole::new(sink),
                        ram.clone(),
                        virtio_irq(irq)?,
                    ));
                    uart_input.get_or_insert_with(|| Arc::new(VirtioConsoleInput(con.clone())));
                    virtio.push(con.clone());
                    con
                }
                DeviceKind::VirtioBlk => {
                    let irq = virtio_irq(irq)?;
                    let disk = d
                        .disk
                        .as_ref()
                        .ok_or_else(|| fail(DeviceError::NoBacking))?;
                    let backing =
                        (platform.disks)(disk).map_err(|e| fail(DeviceError::Disk(Box::new(e))))?;
                    let blk = Arc::new(VirtioMmio::new(
                        d.kind.name(),
                        VirtioBlk::new(backing, disk.read_only, &config.name),
                        ram.clone(),
                        irq,
                    ));
                    virtio.push(blk.clone());
                    blk
                }
                DeviceKind::VirtioNet => {
                    let irq = virtio_irq(irq)?;
                    let net = d.net.as_ref().ok_or_else(|| fail(DeviceError::NoSwitch))?;
                    let switch = (platform.switches)(&net.switch)
                        .ok_or_else(|| fail(DeviceError::NoSwitches))?;
                    let port = switch.claim().map_err(|e| fail(DeviceError::Switch(e)))?;
                    let mac = Mac(net.mac_or_default(config.id, index));
                    let dev =
                        NetMmio::new(d.kind.name(), VirtioNet::new(mac, port), ram.clone(), irq);
                    virtio.push(dev.clone());
                    dev
                }
                // Built by the architecture layer and passed in `platform`.
                kind if kind.is_interrupt_controller() => continue,
                _ => continue,
            };
            match (d.space, d.port()) {
                (DeviceSpace::Port, Some(port)) => devices.add_port(port, dev),
                (DeviceSpace::Port, None) => return Err(fail(DeviceError::NotAPort)),
                (DeviceSpace::Mmio, _) => devices.add(d.base, dev),
            }
            .map_err(|e| fail(DeviceError::Add(e)))?;
        }
        for (base, dev) in platform.devices {
            let name = String::from(dev.name());
            devices.add(base, dev).map_err(|e| VmError::Device {
                device: name,
                at: DeviceAt::Mmio(base),
                error: DeviceError::Add(e),
            })?;
        }

        let (loaded, boot_data, entry) = match platform.kernel {
            Some(k) => {
                let mut data = k.data;
                data.extend(platform.boot_data);
                (k.images, data, k.entry)
            }
            None => {
                let mut loaded = Vec::new();
                for (name, gpa) in Self::image_loads(&config) {
                    let bytes = images(name).ok_or_else(|| VmError::MissingImage(name.clone()))?;
                    loaded.push(ImageLoad {
                        name: name.clone(),
                        gpa,
                        bytes,
                    });
                }
                let mut data = platform.boot_data;
                // The generated DTB is the VM's own bytes (freed with it, not leaked per
                // build): written first of the boot data, right after the images.
                if let (Some(dtb), Some(bytes)) = (&config.kernel.dtb, platform.dtb) {
                    if dtb.generated() {
                        data.insert(0, (dtb.load_addr, bytes));
                    }
                }
                (loaded, data, config.kernel.entry)
            }
        };
        Self::load_images(&mut aspace.lock(), &loaded, &boot_data)?;

        let vcpus = (0..config.cpus.count)
            .map(|i| {
                let mut v = VCpu::<A>::new(i, vcpu_config(i))?;
                v.arch_mut().set_vm_id(u64::from(config.id));
                Ok(Mutex::new(v))
            })
            .collect::<Result<Vec<_>, VCpuError>>()?;
        let power = (0..vcpus.len())
            .map(|_| AtomicU8::new(power_code(PowerState::Off)))
            .collect();
        let fault_streaks = (0..vcpus.len()).map(|_| Mutex::default()).collect();
        Ok(Self {
            config,
            aspace,
            devices,
            console,
            vcpus,
            fault_streaks,
            power,
            status: AtomicU8::new(VmStatus::Loaded as u8),
            exits: ExitCounters::default(),
            images: loaded,
            boot_data,
            entry,
            boot_regs: Mutex::new(Vec::new()),
            resets: core::sync::atomic::AtomicU64::new(0),
            on_reset: platform.on_reset,
            uart_input,
            virtio,
        })
    }

    /// `(image name, load address)` of the kernel, initrd and DTB images the config names
    /// (a generated DTB is not named: it comes after these).
    fn image_loads(config: &VmConfig) -> impl Iterator<Item = (&String, u64)> {
        let k = &config.kernel;
        core::iter::once((&k.image, k.load_addr))
            .chain(k.initrd.iter().map(|i| (&i.image, i.load_addr)))
            .chain(
                k.dtb
                    .iter()
                    .filter_map(|d| d.image.as_ref().map(|i| (i, d.load_addr))),
            )
    }

    /// Writes the images into guest memory, in order, then the boot data.
    fn load_images(
        aspace: &mut AddrSpace<F, M>,
        images: &[ImageLoad],
        boot_data: &[(u64, Vec<u8>)],
    ) -> Result<(), VmError> {
        // As the machine's loader: ROM regions are filled too, though the guest cannot
        // write them.
        for image in images {
            aspace
                .load(GuestPhysAddr::new(image.gpa as usize), image.bytes)
                .map_err(|error| VmError::Load {
                    what: LoadWhat::Image(image.name.clone()),
                    error,
                })?;
        }
        for (addr, bytes) in boot_data {
            aspace
                .load(GuestPhysAddr::new(*addr as usize), bytes)
                .map_err(|error| VmError::Load {
                    what: LoadWhat::BootData(*addr),
                    error,
                })?;
        }
        Ok(())
    }

    /// Resets the VM after [`VcpuEvent::Reset`]: like a warm reset, RAM keeps its contents
    /// except that the images are loaded again; every vCPU is stopped and vCPU 0 starts at
    /// the entry with its boot registers. Call once every vCPU task has left `run_vcpu`.
    pub fn reset(&self) -> Result<(), VmError> {
        Self::load_images(&mut self.aspace.lock(), &self.images, &self.boot_data)?;
        for dev in &self.virtio {
            dev.reset();
        }
        for v in &self.vcpus {
            let mut v = v.lock();
            if v.state() != axvcpu::VCpuState::Created {
                v.stop()?;
            }
        }
        for s in &self.fault_streaks {
            s.lock().clear();
        }
        if let Some(reset_platform) = &self.on_reset {
            reset_platform();
        }
        self.resets.fetch_add(1, Ordering::AcqRel);
        let regs = self.boot_regs.lock().clone();
        self.boot(&regs)
    }

    /// How many times the VM was reset.
    pub fn reset_count(&self) -> u64 {
        self.resets.load(Ordering::Acquire)
    }

    /// The VM's id.
    pub fn id(&self) -> u32 {
        self.config.id
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The config it was built from.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// Current status.
    pub fn status(&self) -> VmStatus {
        Self::status_of(self.status.load(Ordering::Acquire))
    }

    /// The status whose code (`VmStatus as u8`) is `code`.
    fn status_of(code: u8) -> VmStatus {
        match code {
            0 => VmStatus::Loading,
            1 => VmStatus::Loaded,
            2 => VmStatus::Running,
            3 => VmStatus::Stopping,
            5 => VmStatus::Paused,
            _ => VmStatus::Stopped,
        }
    }

    fn set_status(&self, s: VmStatus) {
        self.status.store(s as u8, Ordering::Release);
    }

    /// Exit counters.
    pub fn exits(&self) -> &ExitCounters {
        &self.exits
    }

    /// The accesses no device or memory handled so far, counted per address range.
    pub fn unclaimed(&self) -> axdevice::unclaimed::Summary {
        self.devices.unclaimed_summary()
    }

    /// The port accesses no device handled so far, counted per range of ports.
    pub fn unclaimed_ports(&self) -> axdevice::unclaimed::Summary {
        self.devices.unclaimed_port_summary()
    }

    /// Reads guest memory (bounds- and permission-checked by the address space).
    pub fn read_guest(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), VmError> {
        self.aspace.lock().read(gpa, buf).map_err(VmError::Access)
    }

    /// Sets up vCPU 0 at the kernel entry (`regs` are initial general-purpose registers, e.g.
    /// the DTB address) and marks the VM running.
    pub fn boot(&self, regs: &[(usize, u64)]) -> Result<(), VmError> {
        *self.boot_regs.lock() = regs.to_vec();
        let root = self.aspace.lock().root_paddr();
        let entry = GuestPhysAddr::new(self.entry as usize);
        let mut v = self.vcpus.first().ok_or(VmError::NoSuchVcpu(0))?.lock();
        // Set-up resets the registers; the boot registers go in after it.
        v.setup(entry, root)?;
        for &(i, val) in regs {
            v.arch_mut().set_gpr(i, val);
        }
        for (i, p) in self.power.iter().enumerate() {
            let state = if i == 0 {
                PowerState::On
            } else {
                PowerState::Off
            };
            p.store(power_code(state), Ordering::Release);
        }
        self.set_status(VmStatus::Running);
        Ok(())
    }

    /// The power state of vCPU `id` as the guest's power calls report it.
    pub fn power_state(&self, id: usize) -> Option<PowerState> {
        self.power
            .get(id)
            .map(|p| power_state(p.load(Ordering::Acquire)))
    }

    /// Whether halted vCPU `id` should run again, and if not, until when it may sleep: the
    /// deadline of its guest timer as a host counter value. `(true, _)` also when the VM is
    /// no longer running (so its task notices).
    pub fn halt_wakeup(&self, id: usize) -> (bool, Option<u64>) {
        if self.status() != VmStatus::Running {
            return (true, None);
        }
        let Some(v) = self.vcpus.get(id) else {
            return (true, None);
        };
        let v = v.lock();
        let arch = v.arch();
        (arch.wakeup_pending(), arch.timer_deadline())
    }

    /// Pauses the running VM: its vCPUs do not enter the guest again (one in the guest
    /// notices at its next exit, as for [`AxVm::shutdown`]; [`AxVm::run_vcpu`] answers
    /// [`VmError::NotRunning`]`(Paused)`) until [`AxVm::resume`]. Nothing else changes: the
    /// guest's timers and interrupts stay pending and are taken after the resume. Fails
    /// with the VM's status when it is not running.
    pub fn pause(&self) -> Result<(), VmStatus> {
        self.change_status(VmStatus::Running, VmStatus::Paused)
    }

    /// Lets the paused VM's vCPUs run again. Fails with the VM's status when it is not
    /// paused.
    pub fn resume(&self) -> Result<(), VmStatus> {
        self.change_status(VmStatus::Paused, VmStatus::Running)
    }

    /// `from` to `to`, if the status is `from`; else the status.
    fn change_status(&self, from: VmStatus, to: VmStatus) -> Result<(), VmStatus> {
        self.status
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(|_| self.status())
    }

    /// Asks the VM to stop (also a paused one); running vCPUs notice at their next exit.
    pub fn shutdown(&self) {
        self.set_status(VmStatus::Stopping);
    }

    /// Feeds console input to the VM's console (the first UART or virtio-console of its
    /// config): as many of `bytes` as its receive FIFO (or input buffer) has room for,
    /// raising its receive interrupt as the guest set it up. Returns how many were taken;
    /// `None` when the VM has no console device.
    pub fn feed_console(&self, bytes: &[u8]) -> Option<usize> {
        self.uart_input.as_ref().map(|u| u.feed(bytes))
    }

    /// Prints the console's unfinished line once `checks` calls in a row found no new
    /// output (see [`PrefixedConsole::flush_idle`]).
    pub fn console_flush_idle(&self, checks: u32) {
        self.console.flush_idle(checks);
    }

    /// Sends the VM's console output raw to `raw` while a terminal is attached to it
    /// (`None`: lines again); see [`PrefixedConsole::set_raw`].
    pub fn set_console_raw(&self, raw: Option<axdevice_base::RawConsole>) {
        self.console.set_raw(raw);
    }

    /// Marks the VM stopped (all its vCPU tasks have ended) and flushes its console.
    pub fn mark_stopped(&self) {
        self.console.flush();
        self.set_status(VmStatus::Stopped);
    }

    /// Runs vCPU `id` until an exit that needs the hypervisor's decision; a physical
    /// interrupt ends the run (as [`VcpuEvent::Interrupt`]) still pending. Host interrupts
    /// must be masked (see [`ArchVCpu::run`]).
    pub fn run_vcpu(&self, id: usize) -> Result<VcpuEvent, VmError> {
        self.run_vcpu_until(id, &|| true)
    }

    /// Like [`AxVm::run_vcpu`], but after a physical interrupt exit it calls
    /// `after_interrupt()`, which takes the pending interrupt (a kick, a timer) and says
    /// whether something else wants this physical CPU: only then does the run end;
    /// otherwise the guest is re-entered at once, with its state still loaded.
    ///
    /// Host interrupts must be masked, and stay masked while the exits are handled here, so
    /// an interrupt that arrives in between is not taken behind this loop's back: it ends
    /// the next guest run at once and goes through `after_interrupt` like any other.
    pub fn run_vcpu_until(
        &self,
        id: usize,
        after_interrupt: &dyn Fn() -> bool,
    ) -> Result<VcpuEvent, VmError> {
        let mut vcpu = self.vcpus.get(id).ok_or(VmError::NoSuchVcpu(id))?.lock();
        // A vCPU started by CPU_ON is on from its first run.
        let _ = self.power[id].compare_exchange(
            power_code(PowerState::Pending),
            power_code(PowerState::On),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        // Exits handled here re-enter the guest with its state still loaded in the CPU; the
        // state is saved (`put`) only when control goes back to the hypervisor's policy.
        // The VM's status is checked before every entry: here, then after each exit.
        let result = self.ensure_running().and_then(|()| {
            let run = vcpu.run_with(|arch, exit| {
                match self.handle_exit(id, arch, exit) {
                    Some(VcpuEvent::Interrupt) if !after_interrupt() => {}
                    Some(event) => return ControlFlow::Break(Ok(event)),
                    None => {}
                }
                match self.ensure_running() {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => ControlFlow::Break(Err(e)),
                }
            });
            run.unwrap_or_else(|e| Err(e.into()))
        });
        vcpu.put();
        if matches!(result, Ok(VcpuEvent::CpuDown)) {
            // Off until a CPU_ON sets it up again (which the power state already allows:
            // the lock is held until here).
            let _ = vcpu.stop();
        }
        result
    }

    /// `Ok` while the VM runs; otherwise the error naming its status.
    fn ensure_running(&self) -> Result<(), VmError> {
        // The code compared as it is (the run loop checks it after every exit); the
        // status is worked out only when it is not Running.
        match self.status.load(Ordering::Acquire) {
            code if code == VmStatus::Running as u8 => Ok(()),
            code => Err(Self::not_running(code)),
        }
    }

    /// The error of [`Self::ensure_running`] for status code `code`: out of the run
    /// loop's line (inlined, the mapping cost riscv64's exits up to 27 instructions in
    /// register allocation).
    #[cold]
    #[inline(never)]
    fn not_running(code: u8) -> VmError {
        VmError::NotRunning(Self::status_of(code))
    }

    /// Handles one exit; `None` means re-enter the guest.
    fn handle_exit(&self, vcpu_id: usize, arch: &mut A, exit: VmExit) -> Option<VcpuEvent> {
        let count = |k| self.exits.count(k);
        match exit {
            VmExit::MmioRead { gpa, width, .. } => {
                count(ExitKind::MmioRead);
                match self
                    .devices
                    .mmio_read(vcpu_id, gpa.as_usize() as u64, width)
                {
                    MmioOutcome::Read(v) => arch.complete_mmio_read(v),
                    MmioOutcome::Written => arch.complete_mmio_read(0),
                    MmioOutcome::InjectFault => arch.inject_data_fault(gpa),
                    MmioOutcome::StopVm => return Some(self.stop("unclaimed MMIO read")),
                }
                None
            }
            VmExit::MmioWrite { gpa, width, value } => {
                count(ExitKind::MmioWrite);
                match self
                    .devices
                    .mmio_write(vcpu_id, gpa.as_usize() as u64, width, value)
                {
                    MmioOutcome::Read(_) | MmioOutcome::Written => None,
                    MmioOutcome::InjectFault => {
                        arch.inject_data_fault(gpa);
                        None
                    }
                    MmioOutcome::StopVm => Some(self.stop("unclaimed MMIO write")),
                }
            }
            VmExit::NestedPageFault { gpa, access } => {
                count(ExitKind::NestedPageFault);
                let streak = self.fault_streaks.get(vcpu_id);
                if self.aspace.lock().handle_page_fault(gpa, access) {
                    let page = gpa.as_usize() as u64 & !0xfff;
                    if streak.is_none_or(|s| s.lock().resolved(page)) {
                        return None;
                    }
                    log::warn!(
                        "vm {}: vcpu {vcpu_id}: nested page fault at {:#x} ({access:?}) repeats                          {} times on a page mapped for it: stopping the VM",
                        self.name(),
                        gpa.as_usize(),
                        crate::fault_streak::MAX_REPEATS
                    );
                    return Some(self.stop("nested page fault repeats on a mapped page"));
                }
                if let Some(s) = streak {
                    s.lock().clear();
                }
                // Logged in the devices' bounded log: the guest chooses how often this
                // happens, and at how many addresses.
                let what = if access.contains(MappingFlags::EXECUTE) {
                    "instruction fetch"
                } else if access.contains(MappingFlags::WRITE) {
                    "write"
                } else {
                    "read"
                };
                match self.devices.undecoded(gpa.as_usize() as u64, what) {
                    MmioOutcome::StopVm => Some(self.stop("unresolvable nested page fault")),
                    _ => {
                        arch.inject_data_fault(gpa);
                        None
                    }
                }
            }
            VmExit::Hypercall { nr } => {
                count(ExitKind::Hypercall);
                let ret = self.hypercall(nr, arch);
                arch.set_return_value(ret);
                None
            }
            VmExit::ExternalInterrupt => {
                count(ExitKind::Interrupt);
                Some(VcpuEvent::Interrupt)
            }
            VmExit::Halt => {
                count(ExitKind::Halt);
                Some(VcpuEvent::Halt)
            }
            VmExit::CpuUp { target, entry, arg } => {
                count(ExitKind::Power);
                let (reply, started) = self.cpu_up(target, entry, arg);
                arch.complete_power(reply);
                started.map(|vcpu| VcpuEvent::CpuUp { vcpu })
            }
            VmExit::CpuStatus { target } => {
                count(ExitKind::Power);
                let reply = match A::vcpu_index(target, self.vcpus.len()) {
                    Some(i) => PowerReply::Status(self.power_state(i).unwrap_or(PowerState::Off)),
                    None => PowerReply::InvalidTarget,
                };
                arch.complete_power(reply);
                None
            }
            VmExit::CpuDown => {
                count(ExitKind::Power);
                if let Some(p) = self.power.get(vcpu_id) {
                    p.store(power_code(PowerState::Off), Ordering::Release);
                }
                let all_off = self
                    .power
                    .iter()
                    .all(|p| power_state(p.load(Ordering::Acquire)) == PowerState::Off);
                if all_off {
                    return Some(self.stop("every vCPU is off"));
                }
                Some(VcpuEvent::CpuDown)
            }
            VmExit::SystemOff => {
                count(ExitKind::Power);
                self.shutdown();
                Some(VcpuEvent::PowerOff)
            }
            VmExit::SystemReset => {
                count(ExitKind::Power);
                self.shutdown();
                Some(VcpuEvent::Reset)
            }
            VmExit::Unsupported { reason, syndrome } => {
                count(ExitKind::Unsupported);
                log::warn!(
                    "vm {}: {reason} (syndrome {syndrome:#x}); stopping it",
                    self.name()
                );
                Some(self.stop(reason))
            }
            // Port I/O (x86) out of line: the other architectures' exit path stays as it
            // was.
            VmExit::PortRead { port, width } => self.port_read(vcpu_id, arch, port, width),
            VmExit::PortWrite { port, width, value } => {
                self.port_write(vcpu_id, port, width, value)
            }
        }
    }

    /// [`Self::handle_exit`] for [`VmExit::PortRead`].
    #[inline(never)]
    fn port_read(
        &self,
        vcpu_id: usize,
        arch: &mut A,
        port: u16,
        width: AccessWidth,
    ) -> Option<VcpuEvent> {
        self.exits.count(ExitKind::PortRead);
        match self.devices.port_read(vcpu_id, port, width) {
            PortOutcome::Read(v) => arch.complete_port_read(v),
            PortOutcome::Written => arch.complete_port_read(0),
            PortOutcome::StopVm => return Some(self.stop("unclaimed port read")),
        }
        None
    }

    /// [`Self::handle_exit`] for [`VmExit::PortWrite`].
    #[inline(never)]
    fn port_write(
        &self,
        vcpu_id: usize,
        port: u16,
        width: AccessWidth,
        value: u64,
    ) -> Option<VcpuEvent> {
        self.exits.count(ExitKind::PortWrite);
        match self.devices.port_write(vcpu_id, port, width, value) {
            PortOutcome::Read(_) | PortOutcome::Written => None,
            PortOutcome::StopVm => Some(self.stop("unclaimed port write")),
        }
    }

    /// Starts vCPU `target` (architecture id) at `entry` with `arg`: the answer for the
    /// caller, and the index of the vCPU to run when it was started.
    fn cpu_up(&self, target: u64, entry: GuestPhysAddr, arg: u64) -> (PowerReply, Option<usize>) {
        let Some(idx) = A::vcpu_index(target, self.vcpus.len()) else {
            return (PowerReply::InvalidTarget, None);
        };
        let in_ram = self.config.memory.iter().any(|r| {
            r.map != MapKind::Reserved && r.flags.exec && r.contains(entry.as_usize() as u64)
        });
        if !in_ram {
            return (PowerReply::InvalidAddress, None);
        }
        let off = power_code(PowerState::Off);
        let pending = power_code(PowerState::Pending);
        if let Err(now) =
            self.power[idx].compare_exchange(off, pending, Ordering::AcqRel, Ordering::Acquire)
        {
            let reply = if now == pending {
                PowerReply::OnPending
            } else {
                PowerReply::AlreadyOn
            };
            return (reply, None);
        }
        // The target is off, so no task is running it and its lock is free.
        let root = self.aspace.lock().root_paddr();
        let mut v = self.vcpus[idx].lock();
        let started = v
            .setup(entry, root)
            .map(|()| v.arch_mut().set_start_arg(arg));
        drop(v);
        match started {
            Ok(()) => (PowerReply::Done, Some(idx)),
            Err(e) => {
                log::warn!("vm {}: cannot start vcpu {idx}: {e}", self.name());
                self.power[idx].store(off, Ordering::Release);
                (PowerReply::InvalidAddress, None)
            }
        }
    }

    fn stop(&self, reason: &'static str) -> VcpuEvent {
        self.shutdown();
        VcpuEvent::Stopped(reason)
    }

    /// Hypercalls the VM answers itself (see [`crate::hypercall`]); the arguments are read
    /// from the vCPU only by the calls that have any.
    fn hypercall(&self, nr: u64, arch: &A) -> u64 {
        match nr {
            hc::ADD => arch
                .hypercall_args()
                .iter()
                .fold(0u64, |a, &b| a.wrapping_add(b)),
            hc::RESET_COUNT => self.reset_count(),
            hc::CONSOLE_PUTCHAR => {
                self.console.write(&[arch.hypercall_args()[0] as u8]);
                0
            }
            // The vCPU usually answers these itself (`ArchVCpu::set_vm_id`).
            _ => hc::fixed_answer(nr, u64::from(self.config.id)).unwrap_or(hc::NOT_SUPPORTED),
        }
    }
}
