//! The device tree generated for a VM whose config asks for one (`kernel.dtb = { load_addr }`
//! without an image): its vCPUs, RAM, interrupt controller, timer, UARTs, virtio devices,
//! command line, initrd, passthrough devices and links, described for `axdtb`. The
//! architecture part (interrupt controller, timer, CPU enable method, ISA) comes from the
//! platform ([`ArchPlatform::dtb_arch`]).

use alloc::vec::Vec;
use axdtb::{DtbError, ExtraDevice, GuestDtb, PropValue, Property, Uart, UartKind};
use axvm::ArchPlatform;
use axvmconfig::{DeviceKind, DeviceSpace, MapKind, MemKind, VmConfig, LINK_DOORBELL_SIZE};
use core::fmt;

/// Properties of a ROM's `mtd-rom` node: Linux's physmap driver needs the bus width.
const ROM_PROPS: &[Property<'static>] = &[Property {
    name: "bank-width",
    value: PropValue::U32(4),
}];

/// A passthrough device's node in the host's device tree, with the config's interrupts.
struct HostNode<'a> {
    name: &'a str,
    compatible: Vec<&'a str>,
    reg: [(u64, u64); 1],
    irqs: &'a [u32],
}

/// A virtio device's `virtio,mmio` node: its window and interrupt.
struct VirtioNode {
    reg: [(u64, u64); 1],
    irq: [u32; 1],
}

/// A link's `axvisor,link` node: its shared memory and doorbell window, the doorbell's
/// interrupt, the link's and the peer's names.
struct LinkNode<'a> {
    reg: [(u64, u64); 2],
    irq: [u32; 1],
    props: [Property<'a>; 2],
}

/// Why a VM's device tree could not be generated.
pub enum GenerateError<E> {
    /// The architecture refused (its part of the description), or has no device tree.
    Arch(Option<E>),
    /// The description does not make a valid device tree.
    Build(DtbError),
}

impl<E: fmt::Display> fmt::Display for GenerateError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Arch(Some(e)) => write!(f, "{e}"),
            Self::Arch(None) => write!(
                f,
                "this architecture has no device tree: remove `kernel.dtb`"
            ),
            Self::Build(e) => write!(f, "generating its device tree: {e}"),
        }
    }
}

/// Builds the DTB for `config` on platform `P`; `initrd_size` is the size of its initrd
/// image, if any.
pub fn generate<P: ArchPlatform>(
    config: &VmConfig,
    initrd_size: Option<u64>,
) -> Result<Vec<u8>, GenerateError<P::Error>> {
    let arch = P::dtb_arch(config)
        .map_err(|e| GenerateError::Arch(Some(e)))?
        .ok_or(GenerateError::Arch(None))?;
    // RAM as `memory` nodes; ROM as a read-only flash bank (`mtd-rom`), which Linux maps
    // with its physmap driver and never writes.
    let backed = || config.memory.iter().filter(|r| r.map != MapKind::Reserved);
    let memory: Vec<(u64, u64)> = backed()
        .filter(|r| r.kind == MemKind::Ram)
        .map(|r| (r.gpa, r.size))
        .collect();
    let roms: Vec<[(u64, u64); 1]> = backed()
        .filter(|r| r.kind == MemKind::Rom)
        .map(|r| [(r.gpa, r.size)])
        .collect();
    let uarts: Vec<Uart> = config
        .devices
        .iter()
        // UARTs in memory (a device tree has no I/O ports).
        .filter(|d| d.space == DeviceSpace::Mmio)
        .filter_map(|d| {
            let kind = match d.kind {
                DeviceKind::Pl011 => UartKind::Pl011,
                DeviceKind::Ns16550 => UartKind::Ns16550,
                _ => return None,
            };
            Some(Uart {
                kind,
                base: d.base,
                size: d.size,
                irq: d.irq,
            })
        })
        .collect();
    let initrd = match (&config.kernel.initrd, initrd_size) {
        (Some(i), Some(size)) => Some((i.load_addr, i.load_addr.saturating_add(size))),
        _ => None,
    };
    // Passthrough devices as the host's device tree describes them: the node inside the
    // range gives the name, the compatible strings and the registers; the interrupts are the
    // ones the config forwards (the guest sees them under the same numbers).
    let host: Vec<HostNode> = config
        .passthrough
        .iter()
        .filter_map(|p| Some((p, p.mmio?)))
        .filter_map(|(p, m)| {
            let node = axconfig::dtb::device_within(axhal::platform::dtb_blob(), m.base, m.size);
            if node.is_none() {
                log::warn!(
                    "vm {}: passthrough {:?}: no device node in the host's device tree at \
                     [{:#x}, {:#x}); the guest's device tree does not describe it",
                    config.name,
                    p.name,
                    m.base,
                    m.base.saturating_add(m.size)
                );
            }
            node.map(|n| HostNode {
                name: n.name,
                compatible: n.compatible().collect(),
                reg: [n.reg],
                irqs: &p.irqs,
            })
        })
        .collect();
    // Virtio devices: a `virtio,mmio` node each, with its window and interrupt.
    let virtio: Vec<VirtioNode> = config
        .devices
        .iter()
        .filter(|d| d.kind.is_virtio())
        .filter_map(|d| {
            Some(VirtioNode {
                reg: [(d.base, d.size)],
                irq: [d.irq?],
            })
        })
        .collect();
    // Links: one node each (docs/doorbell.md).
    let links: Vec<LinkNode> = config
        .links
        .iter()
        .map(|l| LinkNode {
            reg: [
                (l.shmem.gpa, l.shmem.size),
                (l.doorbell.base, LINK_DOORBELL_SIZE),
            ],
            irq: [l.doorbell.irq],
            props: [
                Property {
                    name: "axvisor,link-name",
                    value: PropValue::Str(&l.name),
                },
                Property {
                    name: "axvisor,peer",
                    value: PropValue::Str(&l.peer),
                },
            ],
        })
        .collect();
    let extra: Vec<ExtraDevice> = host
        .iter()
        .map(|n| ExtraDevice {
            name: n.name,
            compatible: &n.compatible,
            reg: &n.reg,
            interrupts: n.irqs,
            props: &[],
        })
        .chain(roms.iter().map(|reg| ExtraDevice {
            name: "rom",
            compatible: &["mtd-rom"],
            reg,
            interrupts: &[],
            props: ROM_PROPS,
        }))
        .chain(virtio.iter().map(|v| ExtraDevice {
            name: "virtio_mmio",
            compatible: &["virtio,mmio"],
            reg: &v.reg,
            interrupts: &v.irq,
            props: &[],
        }))
        .chain(links.iter().map(|l| ExtraDevice {
            name: "link",
            compatible: &["axvisor,link"],
            reg: &l.reg,
            interrupts: &l.irq,
            props: &l.props,
        }))
        .collect();
    let desc = GuestDtb {
        arch,
        cpus: config.cpus.count,
        memory: &memory,
        reserved: &[],
        bootargs: config.kernel.cmdline.as_deref(),
        initrd,
        uarts: &uarts,
        extra: &extra,
    };
    axdtb::build(&desc).map_err(GenerateError::Build)
}
