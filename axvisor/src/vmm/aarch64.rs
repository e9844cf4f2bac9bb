//! aarch64 VMs: the vCPU type, its configuration, and the per-VM platform — the virtual GIC
//! built from the config's `gicd` / `gicr` / `gicc` devices with the host's GIC version,
//! and the passthrough devices with their interrupts.

use super::VcpuWaker;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use arm_vcpu::passthrough::PassthroughLines;
pub use arm_vcpu::{ArmVCpu as VCpuImpl, ArmVCpuConfig};
use arm_vgic::{GicVersion, Vgic, VgicConfig, GICR_FRAME_SIZE};
pub use axaddrspace::Aarch64Stage2 as Stage2;
use axhal::vgic::HostVgic;
use axvm::{DeviceMap, VmPlatform};
use axvmconfig::{DeviceKind, VmConfig};
use spin::Mutex;

/// SPIs every virtual GIC has (INTIDs 32..128): enough for the emulated devices.
const SPIS: u32 = 96;
/// Size of the GICv2 CPU interface the guest sees (GICC / GICV: two 4 KiB pages).
const GICC_SIZE: u64 = 0x2000;

/// What an aarch64 VM has besides its vCPUs.
pub struct ArchVm {
    vgic: Option<Arc<Vgic>>,
    cntvoff: u64,
    passthrough: Arc<PassthroughLines>,
}

/// Builds the platform of a VM: its virtual GIC when the config lists a `gicd`, and its
/// passthrough devices (mapped at their host addresses; their interrupts claimed).
pub fn build(config: &VmConfig, waker: Arc<VcpuWaker>) -> Result<(VmPlatform, ArchVm), String> {
    let passthrough = claim_passthrough(config, &waker)?;
    let built = build_claimed(config, waker, &passthrough);
    if built.is_err() {
        release(config.id);
    }
    let (platform, vgic) = built?;
    let arch = ArchVm {
        vgic,
        // The guest's virtual counter starts near 0 when the VM is created.
        cntvoff: axhal::time::ticks(),
        passthrough,
    };
    Ok((platform, arch))
}

fn build_claimed(
    config: &VmConfig,
    waker: Arc<VcpuWaker>,
    passthrough: &PassthroughLines,
) -> Result<(VmPlatform, Option<Arc<Vgic>>), String> {
    let maps: Vec<DeviceMap> = config
        .passthrough
        .iter()
        .map(|p| DeviceMap {
            what: "passthrough device",
            gpa: p.base,
            hpa: p.base,
            size: p.size,
        })
        .collect();
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
    for n in config
        .passthrough
        .iter()
        .flat_map(|p| p.irqs.iter().copied())
    {
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
            spis: SPIS,
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
            let gicr = find(config, DeviceKind::GicRedistributor).ok_or_else(|| {
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
        // The virtual GIC keeps its distributor state across a VM reset (the guest
        // re-initialises it); the vCPUs start with empty list registers.
        on_reset: None,
    };
    Ok((platform, vgic))
}

/// A host device range or interrupt given to a VM.
struct Claim {
    vm: u32,
    range: Option<(u64, u64)>,
    irq: Option<(u32, Arc<PassthroughLines>, Arc<VcpuWaker>)>,
}

/// Everything given to VMs so far: a range or an interrupt belongs to one VM only. Read in
/// interrupt context (`on_device_irq`), so it is only locked with interrupts masked.
static CLAIMS: Mutex<Vec<Claim>> = Mutex::new(Vec::new());

/// Runs `f` on the claims with interrupts masked on this CPU.
fn with_claims<R>(f: impl FnOnce(&mut Vec<Claim>) -> R) -> R {
    let irq = axhal::irq::save_and_disable();
    let r = f(&mut CLAIMS.lock());
    axhal::irq::restore(irq);
    r
}

/// The host's own RAM and devices, which no VM may be given.
fn host_ranges() -> Vec<(u64, u64, &'static str)> {
    use axconfig::dtb::IntcInfo;
    let info = axhal::platform::info();
    let mut v: Vec<(u64, u64, &'static str)> = info
        .memory
        .iter()
        .map(|r| (r.start as u64, r.end() as u64, "the hypervisor's RAM"))
        .collect();
    if let Some(u) = &info.uart {
        v.push((
            u.regs.start as u64,
            u.regs.end() as u64,
            "the hypervisor's console UART",
        ));
    }
    let gic = match &info.intc {
        Some(IntcInfo::GicV2 {
            dist,
            cpu,
            hyp,
            vcpu,
        }) => [Some(*dist), Some(*cpu), *hyp, *vcpu],
        Some(IntcInfo::GicV3 { dist, redist }) => [Some(*dist), Some(*redist), None, None],
        _ => [None; 4],
    };
    for r in gic.into_iter().flatten() {
        v.push((r.start as u64, r.end() as u64, "the host GIC"));
    }
    v
}

/// Checks a VM's `[[passthrough]]` entries against the host and the other VMs, and claims
/// them for it.
fn claim_passthrough(
    config: &VmConfig,
    waker: &Arc<VcpuWaker>,
) -> Result<Arc<PassthroughLines>, String> {
    let host = host_ranges();
    for p in &config.passthrough {
        let end = p.base.saturating_add(p.size);
        if let Some((_, _, what)) = host.iter().find(|(s, e, _)| p.base < *e && *s < end) {
            return Err(format!(
                "passthrough {:?} at {:#x} overlaps {what}",
                p.name, p.base
            ));
        }
        if let Some(&n) = p.irqs.iter().find(|&&n| !(32..32 + SPIS).contains(&n)) {
            return Err(format!(
                "passthrough {:?}: interrupt {n} is not an SPI of the VM's GIC (32..{})",
                p.name,
                32 + SPIS
            ));
        }
    }
    let irqs: Vec<u32> = config
        .passthrough
        .iter()
        .flat_map(|p| p.irqs.iter().copied())
        .collect();
    let lines = Arc::new(PassthroughLines::new(&irqs));
    with_claims(|claims| {
        for p in &config.passthrough {
            let end = p.base.saturating_add(p.size);
            let taken = claims.iter().find(|c| {
                c.range.is_some_and(|(s, e)| p.base < e && s < end)
                    || c.irq.as_ref().is_some_and(|(n, _, _)| p.irqs.contains(n))
            });
            if let Some(c) = taken {
                return Err(format!(
                    "passthrough {:?} is already given to VM {}",
                    p.name, c.vm
                ));
            }
        }
        for p in &config.passthrough {
            claims.push(Claim {
                vm: config.id,
                range: Some((p.base, p.base.saturating_add(p.size))),
                irq: None,
            });
        }
        for &n in &irqs {
            claims.push(Claim {
                vm: config.id,
                range: None,
                irq: Some((n, lines.clone(), waker.clone())),
            });
        }
        Ok(())
    })?;
    Ok(lines)
}

/// Host device interrupts: a passthrough SPI is masked at the host and raised for its VM,
/// whose vCPUs are woken or made to exit to take it.
fn on_device_irq(irq: usize) -> bool {
    let intid = irq as u32;
    // Interrupt context: interrupts are masked here, and the lock is never held with them on.
    let claims = CLAIMS.lock();
    let Some((_, lines, waker)) = claims
        .iter()
        .find_map(|c| c.irq.as_ref().filter(|(n, _, _)| *n == intid))
    else {
        return false;
    };
    axhal::vgic::set_spi_enabled(intid, false);
    lines.raise(intid);
    waker.notify_all();
    true
}

/// Lets the VM's passthrough interrupts reach it: routed to the CPU of its vCPU 0 and
/// enabled at the host. Call once the VM exists.
pub fn start_passthrough(config: &VmConfig) {
    axhal::irq::set_device_handler(on_device_irq);
    for n in config
        .passthrough
        .iter()
        .flat_map(|p| p.irqs.iter().copied())
    {
        axhal::vgic::route_spi(n, config.cpus.pin[0]);
        axhal::vgic::set_spi_enabled(n, true);
    }
}

/// Gives back what VM `vm` claimed (it stopped, or could not be built); its passthrough
/// interrupts are disabled at the host.
pub fn release(vm: u32) {
    with_claims(|claims| {
        for c in claims.iter().filter(|c| c.vm == vm) {
            if let Some((n, _, _)) = &c.irq {
                axhal::vgic::set_spi_enabled(*n, false);
            }
        }
        claims.retain(|c| c.vm != vm);
    });
}

/// vCPU `i` of VM `vmid` has MPIDR affinity `i`.
pub fn vcpu_config(vmid: u16, i: usize, vm: &ArchVm) -> ArmVCpuConfig {
    ArmVCpuConfig {
        mpidr: i as u64,
        vmid,
        vgic: vm.vgic.clone(),
        cntvoff: vm.cntvoff,
        passthrough: vm.passthrough.clone(),
    }
}

/// x0 holds the DTB address at entry (Linux arm64 boot protocol).
pub fn boot_regs(dtb: u64) -> [(usize, u64); 1] {
    [(0, dtb)]
}
