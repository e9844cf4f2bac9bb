//! The aarch64 VM platform ([`axvm::ArchPlatform`]): the vCPU type and its configuration,
//! the virtual GIC built from the config's `gicd` / `gicr` / `gicc` devices with the host's
//! GIC version, the passthrough interrupts, boot registers and the device tree's GIC, timer
//! and PSCI.

use crate::passthrough::PassthroughLines;
use crate::{ArmVCpu, ArmVCpuConfig};
use alloc::sync::Arc;
use alloc::vec::Vec;
use arm_vgic::{GicVersion, Vgic, VgicConfig, VgicError, GICD_SIZE, GICR_FRAME_SIZE};
use axaddrspace::Aarch64Stage2;
use axdevice_base::VcpuNotifier;
use axdtb::{ArchDesc, ArmTimerPpis, Gic, PsciMethod};
use axhal::vgic::HostVgic;
use axvm::{ArchPlatform, DeviceMap, IrqSink, VmPlatform};
use axvmconfig::{
    DeviceConfig, DeviceKind, HostArch, VmConfig, VGIC_GICC_SIZE, VGIC_GICD_SIZE,
    VGIC_GICR_FRAME_SIZE, VGIC_SPI_LINES,
};
use core::fmt;

/// Size of the GICv2 CPU interface the guest sees (GICC / GICV: two 4 KiB pages).
const GICC_SIZE: u64 = VGIC_GICC_SIZE;

// The config check (axvmconfig) refuses windows of other sizes than the vGIC's.
const _: () = assert!(GICD_SIZE as u64 == VGIC_GICD_SIZE);
const _: () = assert!(GICR_FRAME_SIZE as u64 == VGIC_GICR_FRAME_SIZE);

/// The aarch64 platform.
pub struct ArmPlatform;

/// What an aarch64 VM has besides its vCPUs.
pub struct ArmVm {
    vgic: Option<Arc<Vgic>>,
    passthrough: Arc<PassthroughLines>,
    /// Where passthrough interrupts go (with a vGIC).
    sink: Option<Arc<GicLines>>,
}

/// Why an aarch64 VM cannot be built.
#[derive(Debug)]
pub enum ArmPlatformError {
    /// An interrupt-controller device other than `gicd` without a `gicd`.
    NeedsGicd(DeviceKind),
    /// Passthrough interrupts without a virtual GIC.
    PassthroughNeedsGic,
    /// The host GIC cannot virtualize.
    NoVirtualizationInterface,
    /// The virtual GIC refused its configuration.
    Vgic(VgicError),
    /// A GICv2 host, and no `gicc` device.
    NeedsGicc,
    /// The host's GICV frame is smaller than the guest's CPU interface.
    GicvTooSmall,
    /// A GICv3 host, and no `gicr` device.
    NeedsGicr,
    /// A generated device tree without a `gicd` device.
    DtbNeedsGicd,
    /// A generated device tree on a GICv2 host without a `gicc` device.
    DtbNeedsGicc,
    /// A generated device tree on a GICv3 host without a `gicr` device.
    DtbNeedsGicr,
}

impl fmt::Display for ArmPlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeedsGicd(kind) => write!(f, "a `{kind}` device needs a `gicd` device"),
            Self::PassthroughNeedsGic => write!(
                f,
                "passthrough interrupts need a virtual GIC: add a `gicd` device"
            ),
            Self::NoVirtualizationInterface => {
                write!(f, "the host GIC has no virtualization interface")
            }
            Self::Vgic(e) => write!(f, "virtual GIC: {e}"),
            Self::NeedsGicc => write!(
                f,
                "the host has a GICv2: the VM needs a `gicc` device for its CPU interface"
            ),
            Self::GicvTooSmall => write!(
                f,
                "the host's virtual CPU interface is smaller than {GICC_SIZE:#x} bytes"
            ),
            Self::NeedsGicr => write!(
                f,
                "the host has a GICv3: the VM needs a `gicr` device for its redistributors"
            ),
            Self::DtbNeedsGicd => write!(f, "a generated device tree needs a `gicd` device"),
            Self::DtbNeedsGicc => write!(f, "GICv2 host: a `gicc` device is needed"),
            Self::DtbNeedsGicr => write!(f, "GICv3 host: a `gicr` device is needed"),
        }
    }
}

/// The config's device of `kind`, if any.
fn find(config: &VmConfig, kind: DeviceKind) -> Option<&DeviceConfig> {
    config.devices.iter().find(|d| d.kind == kind)
}

impl ArchPlatform for ArmPlatform {
    type VCpu = ArmVCpu;
    type Stage2 = Aarch64Stage2;
    type Vm = ArmVm;
    type Error = ArmPlatformError;

    const HOST_ARCH: HostArch = HostArch::Aarch64;

    fn vmid_bits() -> u32 {
        crate::vmid_bits()
    }

    /// The VM's virtual GIC when the config lists a `gicd`, and the lines of its
    /// passthrough interrupts.
    fn build(
        config: &VmConfig,
        notifier: Arc<dyn VcpuNotifier>,
    ) -> Result<(VmPlatform, ArmVm), ArmPlatformError> {
        let irqs: Vec<u32> = config.passthrough_irqs().collect();
        let passthrough = Arc::new(PassthroughLines::new(&irqs));
        let Some(gicd) = find(config, DeviceKind::GicDistributor) else {
            if let Some(d) = config
                .devices
                .iter()
                .find(|d| d.kind.is_interrupt_controller())
            {
                return Err(ArmPlatformError::NeedsGicd(d.kind));
            }
            if !passthrough.is_empty() {
                return Err(ArmPlatformError::PassthroughNeedsGic);
            }
            let vm = ArmVm {
                vgic: None,
                passthrough,
                sink: None,
            };
            return Ok((VmPlatform::none(), vm));
        };
        let (platform, vgic) = build_vgic(config, gicd.base, notifier.clone())?;
        for &n in &irqs {
            vgic.set_resample(n, true);
        }
        let sink = Arc::new(GicLines {
            lines: passthrough.clone(),
            notifier,
            vcpus: config.cpus.count,
        });
        let vm = ArmVm {
            vgic: Some(vgic),
            passthrough,
            sink: Some(sink),
        };
        Ok((platform, vm))
    }

    fn irq_sink(vm: &ArmVm) -> Option<Arc<dyn IrqSink>> {
        vm.sink.clone().map(|s| s as Arc<dyn IrqSink>)
    }

    /// vCPU `i` has MPIDR affinity `i`.
    fn vcpu_config(vm: &ArmVm, vmid: u16, index: usize) -> ArmVCpuConfig {
        ArmVCpuConfig {
            mpidr: index as u64,
            vmid,
            vgic: vm.vgic.clone(),
            passthrough: vm.passthrough.clone(),
        }
    }

    /// x0 holds the DTB address at entry (Linux arm64 boot protocol).
    fn boot_regs(config: &VmConfig) -> Vec<(usize, u64)> {
        let dtb = config.kernel.dtb.as_ref().map_or(0, |d| d.load_addr);
        Vec::from([(0, dtb)])
    }

    /// The GIC the VM has (by the host's version), the architected timer's PPIs, PSCI over
    /// HVC.
    fn dtb_arch(config: &VmConfig) -> Result<Option<ArchDesc<'static>>, ArmPlatformError> {
        let gicd =
            find(config, DeviceKind::GicDistributor).ok_or(ArmPlatformError::DtbNeedsGicd)?;
        let gic = match axhal::vgic::host() {
            Some(HostVgic::V2 { .. }) => Gic::V2 {
                gicd: gicd.base,
                gicc: find(config, DeviceKind::GicCpuInterface)
                    .map(|d| d.base)
                    .ok_or(ArmPlatformError::DtbNeedsGicc)?,
            },
            Some(HostVgic::V3) => {
                let gicr = find(config, DeviceKind::GicRedistributor)
                    .ok_or(ArmPlatformError::DtbNeedsGicr)?;
                Gic::V3 {
                    gicd: gicd.base,
                    gicr: gicr.base,
                    gicr_size: gicr.size,
                }
            }
            None => return Err(ArmPlatformError::NoVirtualizationInterface),
        };
        Ok(Some(ArchDesc::Arm {
            gic,
            timer_ppis: ArmTimerPpis::default(),
            // The vCPU answers PSCI over HVC and SMC alike.
            psci: Some(PsciMethod::Hvc),
        }))
    }
}

/// The virtual GIC of a VM with its distributor at `gicd`, and the platform around it.
fn build_vgic(
    config: &VmConfig,
    gicd: u64,
    notifier: Arc<dyn VcpuNotifier>,
) -> Result<(VmPlatform, Arc<Vgic>), ArmPlatformError> {
    let host = axhal::vgic::host().ok_or(ArmPlatformError::NoVirtualizationInterface)?;
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
        notifier,
    )
    .map_err(ArmPlatformError::Vgic)?;
    let mut platform = VmPlatform::none();
    platform.devices = Vec::from([(gicd, vgic.distributor())]);
    match host {
        HostVgic::V2 {
            gicv, gicv_size, ..
        } => {
            let gicc =
                find(config, DeviceKind::GicCpuInterface).ok_or(ArmPlatformError::NeedsGicc)?;
            // The config's `gicc` has the size (checked with the config); the host's GICV
            // must have it too.
            if (gicv_size as u64) < GICC_SIZE {
                return Err(ArmPlatformError::GicvTooSmall);
            }
            platform.device_maps.push(DeviceMap {
                what: "GICv2 virtual CPU interface",
                gpa: gicc.base,
                hpa: gicv as u64,
                size: GICC_SIZE,
            });
        }
        HostVgic::V3 => {
            let gicr =
                find(config, DeviceKind::GicRedistributor).ok_or(ArmPlatformError::NeedsGicr)?;
            if let Some(rd) = vgic.redistributors() {
                platform.devices.push((gicr.base, rd));
            }
        }
    }
    let lines = vgic.clone();
    platform.irq_line = alloc::boxed::Box::new(move |n| lines.irq_line(n));
    // The virtual GIC keeps its distributor state across a VM reset (the guest
    // re-initialises it); the vCPUs start with empty list registers.
    platform.on_reset = None;
    Ok((platform, vgic))
}

/// A VM's passthrough interrupts on aarch64: raised as lines the vCPUs move into the vGIC
/// before they enter the guest (interrupt context must not take the vGIC's lock); the vCPU
/// unmasks the host SPI once the guest has ended it (`Vgic::take_resampled`).
pub struct GicLines {
    lines: Arc<PassthroughLines>,
    notifier: Arc<dyn VcpuNotifier>,
    vcpus: usize,
}

impl IrqSink for GicLines {
    fn raise(&self, irq: u32) {
        self.lines.raise(irq);
        for v in 0..self.vcpus {
            self.notifier.notify(v);
        }
    }
}
