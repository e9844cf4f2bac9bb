//! aarch64 VMs: the vCPU type, its configuration, and the per-VM platform — the virtual GIC
//! built from the config's `gicd` / `gicr` / `gicc` devices with the host's GIC version,
//! and the passthrough devices with their interrupts (claimed through
//! [`super::passthrough`]).

use super::passthrough::{self, IrqSink};
use super::VcpuWaker;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use arm_vcpu::passthrough::PassthroughLines;
pub use arm_vcpu::{vmid_bits, ArmVCpu as VCpuImpl, ArmVCpuConfig};
use arm_vgic::{GicVersion, Vgic, VgicConfig, GICD_SIZE, GICR_FRAME_SIZE};
pub use axaddrspace::Aarch64Stage2 as Stage2;
use axhal::vgic::HostVgic;
use axvm::{DeviceMap, VmPlatform};
use axvmconfig::{
    DeviceKind, VmConfig, VGIC_GICC_SIZE, VGIC_GICD_SIZE, VGIC_GICR_FRAME_SIZE, VGIC_SPI_LINES,
};

/// Size of the GICv2 CPU interface the guest sees (GICC / GICV: two 4 KiB pages).
const GICC_SIZE: u64 = VGIC_GICC_SIZE;

// The config check (axvmconfig) refuses windows of other sizes than the vGIC's.
const _: () = assert!(GICD_SIZE as u64 == VGIC_GICD_SIZE);
const _: () = assert!(GICR_FRAME_SIZE as u64 == VGIC_GICR_FRAME_SIZE);

/// The architecture the config checks see ([`axvmconfig::HostArch`]).
pub const HOST_ARCH: axvmconfig::HostArch = axvmconfig::HostArch::Aarch64;

/// What an aarch64 VM has besides its vCPUs.
pub struct ArchVm {
    vgic: Option<Arc<Vgic>>,
    passthrough: Arc<PassthroughLines>,
}

/// Builds the platform of a VM: its virtual GIC when the config lists a `gicd`, and its
/// passthrough devices (mapped at their host addresses; their interrupts claimed).
pub fn build(config: &VmConfig, waker: Arc<VcpuWaker>) -> Result<(VmPlatform, ArchVm), String> {
    let irqs: Vec<u32> = passthrough::irqs(config).collect();
    let passthrough = Arc::new(PassthroughLines::new(&irqs));
    let sink = Arc::new(GicLines {
        lines: passthrough.clone(),
        waker: waker.clone(),
    });
    passthrough::claim(config, Some(sink))?;
    let built = build_claimed(config, waker, &passthrough);
    if built.is_err() {
        passthrough::release(config.id);
    }
    let (platform, vgic) = built?;
    let arch = ArchVm { vgic, passthrough };
    Ok((platform, arch))
}

fn build_claimed(
    config: &VmConfig,
    waker: Arc<VcpuWaker>,
    passthrough: &PassthroughLines,
) -> Result<(VmPlatform, Option<Arc<Vgic>>), String> {
    let maps = passthrough::device_maps(config);
    let Some(gicd) = find(config, DeviceKind::GicDistributor) else {
        if let Some(d) = config
            .devices
            .iter()
            .find(|d| d.kind.is_interrupt_controller())
        {
            return Err(format!("a `{}` device needs a `gicd` device", d.kind));
        }
        if !passthrough.is_empty() {
            return Err(String::from(
                "passthrough interrupts need a virtual GIC: add a `gicd` device",
            ));
        }
        let mut platform = VmPlatform::none();
        platform.device_maps = maps;
        return Ok((platform, None));
    };
    let (platform, vgic) = build_vgic(config, gicd.base, waker, maps)?;
    for n in passthrough::irqs(config) {
        vgic.set_resample(n, true);
    }
    Ok((platform, Some(vgic)))
}

/// The config's device of `kind`, if any.
fn find(config: &VmConfig, kind: DeviceKind) -> Option<&axvmconfig::DeviceConfig> {
    config.devices.iter().find(|d| d.kind == kind)
}

/// The virtual GIC of a VM with its distributor at `gicd`, and the platform around it.
fn build_vgic(
    config: &VmConfig,
    gicd: u64,
    waker: Arc<VcpuWaker>,
    mut device_maps: Vec<DeviceMap>,
) -> Result<(VmPlatform, Arc<Vgic>), String> {
    let host = axhal::vgic::host()
        .ok_or_else(|| String::from("the host GIC has no virtualization interface"))?;
    let version = match host {
        HostVgic::V2 { .. } => GicVersion::V2,
        HostVgic::V3 => GicVersion::V3,
    };
    let vgic = Vgic::new(
        VgicConfig {
            version,
            vcpus: config.cpus.count,
            // The SPIs every virtual GIC has (INTIDs 32..128): the lines the config check
            // allows.
            spis: VGIC_SPI_LINES.len() as u32,
        },
        waker,
    )
    .map_err(|e| format!("virtual GIC: {e}"))?;
    let mut devices = Vec::from([(gicd, vgic.distributor())]);
    match host {
        HostVgic::V2 {
            gicv, gicv_size, ..
        } => {
            let gicc = find(config, DeviceKind::GicCpuInterface).ok_or_else(|| {
                String::from(
                    "the host has a GICv2: the VM needs a `gicc` device for its CPU interface",
                )
            })?;
            // The config's `gicc` has the size (checked with the config); the host's GICV
            // must have it too.
            if (gicv_size as u64) < GICC_SIZE {
                return Err(format!(
                    "the host's virtual CPU interface is smaller than {GICC_SIZE:#x} bytes"
                ));
            }
            device_maps.push(DeviceMap {
                what: "GICv2 virtual CPU interface",
                gpa: gicc.base,
                hpa: gicv as u64,
                size: GICC_SIZE,
            });
        }
        HostVgic::V3 => {
            let gicr = find(config, DeviceKind::GicRedistributor).ok_or_else(|| {
                String::from(
                    "the host has a GICv3: the VM needs a `gicr` device for its redistributors",
                )
            })?;
            if let Some(rd) = vgic.redistributors() {
                devices.push((gicr.base, rd));
            }
        }
    }
    let lines = vgic.clone();
    let platform = VmPlatform {
        devices,
        device_maps,
        irq_line: alloc::boxed::Box::new(move |n| lines.irq_line(n)),
        dtb: None,
        // The virtual GIC keeps its distributor state across a VM reset (the guest
        // re-initialises it); the vCPUs start with empty list registers.
        on_reset: None,
    };
    Ok((platform, vgic))
}

/// A VM's passthrough interrupts on aarch64: raised as lines the vCPUs move into the vGIC
/// before they enter the guest (interrupt context must not take the vGIC's lock); the vCPU
/// unmasks the host SPI once the guest has ended it (`Vgic::take_resampled`).
struct GicLines {
    lines: Arc<PassthroughLines>,
    waker: Arc<VcpuWaker>,
}

impl IrqSink for GicLines {
    fn raise(&self, irq: u32) {
        self.lines.raise(irq);
        self.waker.notify_all();
    }
}

/// vCPU `i` of VM `vmid` has MPIDR affinity `i`.
pub fn vcpu_config(vmid: u16, i: usize, vm: &ArchVm) -> ArmVCpuConfig {
    ArmVCpuConfig {
        mpidr: i as u64,
        vmid,
        vgic: vm.vgic.clone(),
        passthrough: vm.passthrough.clone(),
    }
}

/// x0 holds the DTB address at entry (Linux arm64 boot protocol).
pub fn boot_regs(dtb: u64) -> [(usize, u64); 1] {
    [(0, dtb)]
}
