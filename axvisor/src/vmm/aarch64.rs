//! aarch64 VMs: the vCPU type, its configuration, and the per-VM platform — the virtual GIC
//! built from the config's `gicd` / `gicr` / `gicc` devices with the host's GIC version.

use super::VcpuWaker;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
pub use arm_vcpu::{ArmVCpu as VCpuImpl, ArmVCpuConfig};
use arm_vgic::{GicVersion, Vgic, VgicConfig, GICR_FRAME_SIZE};
pub use axaddrspace::Aarch64Stage2 as Stage2;
use axhal::vgic::HostVgic;
use axvm::{DeviceMap, VmPlatform};
use axvmconfig::{DeviceKind, VmConfig};

/// SPIs every virtual GIC has (INTIDs 32..128): enough for the emulated devices.
const SPIS: u32 = 96;
/// Size of the GICv2 CPU interface the guest sees (GICC / GICV: two 4 KiB pages).
const GICC_SIZE: u64 = 0x2000;

/// What an aarch64 VM has besides its vCPUs.
pub struct ArchVm {
    vgic: Option<Arc<Vgic>>,
    cntvoff: u64,
}

/// Builds the platform of a VM: its virtual GIC when the config lists a `gicd`.
pub fn build(config: &VmConfig, waker: Arc<VcpuWaker>) -> Result<(VmPlatform, ArchVm), String> {
    // The guest's virtual counter starts near 0 when the VM is created.
    let arch = |vgic| ArchVm {
        vgic,
        cntvoff: axhal::time::ticks(),
    };
    let find = |kind| config.devices.iter().find(|d| d.kind == kind);
    let Some(gicd) = find(DeviceKind::GicDistributor) else {
        if let Some(d) = config
            .devices
            .iter()
            .find(|d| d.kind.is_interrupt_controller())
        {
            return Err(format!("a `{}` device needs a `gicd` device", d.kind));
        }
        return Ok((VmPlatform::none(), arch(None)));
    };
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
            spis: SPIS,
        },
        waker,
    )
    .map_err(|e| format!("virtual GIC: {e}"))?;
    let mut devices = Vec::from([(gicd.base, vgic.distributor())]);
    let mut device_maps = Vec::new();
    match host {
        HostVgic::V2 {
            gicv, gicv_size, ..
        } => {
            let gicc = find(DeviceKind::GicCpuInterface).ok_or_else(|| {
                String::from(
                    "the host has a GICv2: the VM needs a `gicc` device for its CPU interface",
                )
            })?;
            if (gicv_size as u64) < GICC_SIZE || gicc.size < GICC_SIZE {
                return Err(format!(
                    "gicc at {:#x}: the CPU interface needs {GICC_SIZE:#x} bytes",
                    gicc.base
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
            let gicr = find(DeviceKind::GicRedistributor).ok_or_else(|| {
                String::from(
                    "the host has a GICv3: the VM needs a `gicr` device for its redistributors",
                )
            })?;
            let need = config.cpus.count as u64 * GICR_FRAME_SIZE as u64;
            if gicr.size < need {
                return Err(format!(
                    "gicr at {:#x}: {} vCPUs need {need:#x} bytes of redistributors",
                    gicr.base, config.cpus.count
                ));
            }
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
    };
    Ok((platform, arch(Some(vgic))))
}

/// vCPU `i` of VM `vmid` has MPIDR affinity `i`.
pub fn vcpu_config(vmid: u16, i: usize, vm: &ArchVm) -> ArmVCpuConfig {
    ArmVCpuConfig {
        mpidr: i as u64,
        vmid,
        vgic: vm.vgic.clone(),
        cntvoff: vm.cntvoff,
    }
}

/// x0 holds the DTB address at entry (Linux arm64 boot protocol).
pub fn boot_regs(dtb: u64) -> [(usize, u64); 1] {
    [(0, dtb)]
}
