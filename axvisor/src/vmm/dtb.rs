//! The device tree generated for a VM whose config asks for one (`kernel.dtb = { load_addr }`
//! without an image): its vCPUs, RAM, interrupt controller, timer, UARTs, command line,
//! initrd and passthrough devices, described for `axdtb`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use axdtb::{ExtraDevice, GuestDtb, PropValue, Property, Uart, UartKind};
use axvmconfig::{DeviceKind, MapKind, MemKind, VmConfig};

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

/// Builds the DTB for `config`; `initrd_size` is the size of its initrd image, if any.
pub fn generate(config: &VmConfig, initrd_size: Option<u64>) -> Result<Vec<u8>, String> {
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
        .filter_map(|p| {
            let node = axconfig::dtb::device_within(axhal::platform::dtb_blob(), p.base, p.size);
            if node.is_none() {
                log::warn!(
                    "vm {}: passthrough {:?}: no device node in the host's device tree at \
                     [{:#x}, {:#x}); the guest's device tree does not describe it",
                    config.name,
                    p.name,
                    p.base,
                    p.base.saturating_add(p.size)
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
        .collect();
    let mut isa = String::new();
    let desc = GuestDtb {
        arch: arch_desc(config, &mut isa)?,
        cpus: config.cpus.count,
        memory: &memory,
        reserved: &[],
        bootargs: config.kernel.cmdline.as_deref(),
        initrd,
        uarts: &uarts,
        extra: &extra,
    };
    axdtb::build(&desc).map_err(|e| format!("generating its device tree: {e}"))
}

/// The architecture part; `isa` holds the riscv64 ISA string the description borrows.
#[cfg(target_arch = "aarch64")]
fn arch_desc<'a>(config: &VmConfig, _isa: &'a mut String) -> Result<axdtb::ArchDesc<'a>, String> {
    use axdtb::{ArchDesc, ArmTimerPpis, Gic, PsciMethod};
    use axhal::vgic::HostVgic;
    let find = |kind| config.devices.iter().find(|d| d.kind == kind);
    let gicd = find(DeviceKind::GicDistributor)
        .ok_or_else(|| String::from("a generated device tree needs a `gicd` device"))?;
    let gic = match axhal::vgic::host() {
        Some(HostVgic::V2 { .. }) => Gic::V2 {
            gicd: gicd.base,
            gicc: find(DeviceKind::GicCpuInterface)
                .map(|d| d.base)
                .ok_or_else(|| String::from("GICv2 host: a `gicc` device is needed"))?,
        },
        Some(HostVgic::V3) => {
            let gicr = find(DeviceKind::GicRedistributor)
                .ok_or_else(|| String::from("GICv3 host: a `gicr` device is needed"))?;
            Gic::V3 {
                gicd: gicd.base,
                gicr: gicr.base,
                gicr_size: gicr.size,
            }
        }
        None => return Err(String::from("the host GIC has no virtualization interface")),
    };
    Ok(ArchDesc::Arm {
        gic,
        timer_ppis: ArmTimerPpis::default(),
        // The vCPU answers PSCI over HVC and SMC alike.
        psci: Some(PsciMethod::Hvc),
    })
}

/// The architecture part; `isa` holds the ISA string the description borrows.
#[cfg(target_arch = "riscv64")]
fn arch_desc<'a>(config: &VmConfig, isa: &'a mut String) -> Result<axdtb::ArchDesc<'a>, String> {
    use axdtb::{ArchDesc, Plic};
    let info = axhal::platform::info();
    let sstc = info.cpus.iter().all(|c| c.isa_sstc);
    *isa = String::from(if sstc {
        "rv64imafdc_zicsr_zifencei_sstc"
    } else {
        "rv64imafdc_zicsr_zifencei"
    });
    let timebase_hz = info
        .timebase_hz
        .and_then(|hz| u32::try_from(hz).ok())
        .ok_or_else(|| String::from("the host's timebase frequency is unknown"))?;
    let plic = config
        .devices
        .iter()
        .find(|d| d.kind == DeviceKind::Plic)
        .map(|d| Plic {
            base: d.base,
            size: d.size,
            ndev: super::arch::PLIC_SOURCES,
        });
    Ok(ArchDesc::Riscv {
        isa: isa.as_str(),
        timebase_hz,
        mmu: "riscv,sv39",
        plic,
    })
}
