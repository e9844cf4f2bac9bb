//! riscv64 VMs: the vCPU type, its configuration and the per-VM platform (a virtual PLIC
//! when the config lists one, the state the VM's harts share, and the passthrough devices
//! with their interrupts, claimed through [`super::passthrough`]).

use super::passthrough::{self, IrqSink};
use super::VcpuWaker;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
pub use axaddrspace::RiscvSv39x4 as Stage2;
use axdevice_base::VcpuNotifier;
use axvm::VmPlatform;
use axvmconfig::{DeviceKind, VmConfig, VPLIC_SOURCES};
use riscv_vcpu::harts::VmHarts;
use riscv_vcpu::riscv_vplic::{Vplic, VplicConfig, VPLIC_SIZE};
pub use riscv_vcpu::{vmid_bits, RiscvVCpu as VCpuImpl, RiscvVCpuConfig};

// The config check (axvmconfig) refuses a `plic` of another size than the vPLIC's window.
const _: () = assert!(VPLIC_SIZE as u64 == axvmconfig::VPLIC_WINDOW_SIZE);

/// The architecture the config checks see ([`axvmconfig::HostArch`]).
pub const HOST_ARCH: axvmconfig::HostArch = axvmconfig::HostArch::Riscv64;

/// Interrupt sources of a VM's PLIC (IDs 1..=95, the lines the config check allows), as on
/// QEMU `virt`: its 16550 is source 10.
pub const PLIC_SOURCES: u32 = VPLIC_SOURCES.end - 1;
/// Implemented priority bits (priorities 0..=7), as on QEMU `virt`.
const PLIC_PRIORITY_BITS: u32 = 3;

/// What a riscv64 VM has besides its vCPUs: the state its harts share (IPIs, remote fences,
/// its PLIC's outputs).
pub struct ArchVm {
    harts: Arc<VmHarts>,
}

/// A VM's passthrough interrupts on riscv64: posted on its vPLIC from the host's interrupt
/// handler without taking the vPLIC's lock. The vPLIC lowers such a line when the guest
/// completes the source and reports it to the handler `build` installs, which unmasks the
/// host source again.
impl IrqSink for Vplic {
    fn raise(&self, irq: u32) {
        self.post_high(irq);
    }
}

/// Builds the platform of a VM: with a `plic` device in the config, a virtual PLIC with one
/// context per vCPU at its base, whose sources are the `irq` lines of the VM's devices and
/// the interrupts of its passthrough devices (the same source numbers as on the host's
/// PLIC); the passthrough ranges mapped at their host addresses.
pub fn build(config: &VmConfig, waker: Arc<VcpuWaker>) -> Result<(VmPlatform, ArchVm), String> {
    let notifier: Arc<dyn VcpuNotifier> = waker;
    let mut platform = VmPlatform::none();
    let mut plic = None;
    if let Some(d) = config.devices.iter().find(|d| d.kind == DeviceKind::Plic) {
        let vplic = Vplic::new(
            VplicConfig {
                sources: PLIC_SOURCES,
                contexts: config.cpus.count,
                priority_bits: PLIC_PRIORITY_BITS,
            },
            notifier.clone(),
        )
        .map_err(|e| format!("plic at {:#x}: {e}", d.base))?;
        platform.devices = vec![(d.base, vplic.mmio())];
        let lines = vplic.clone();
        platform.irq_line = alloc::boxed::Box::new(move |n| lines.irq_line(n));
        // A VM reset finds the PLIC as after power-on (line levels kept).
        let resettable = vplic.clone();
        platform.on_reset = Some(alloc::boxed::Box::new(move || resettable.reset()));
        plic = Some(vplic);
    }
    if plic.is_none() && passthrough::irqs(config).next().is_some() {
        return Err(String::from(
            "passthrough interrupts need a virtual PLIC: add a `plic` device",
        ));
    }
    let sink = plic.clone().map(|p| p as Arc<dyn IrqSink>);
    passthrough::claim(config, sink)?;
    if let Some(vplic) = &plic {
        for n in passthrough::irqs(config) {
            vplic.set_resample(n, true);
        }
        // The guest completed a passthrough source: let the device interrupt again.
        vplic.set_resample_handler(alloc::boxed::Box::new(|n| {
            axhal::irq::set_device_enabled(n as usize, true)
        }));
    }
    platform.device_maps = passthrough::device_maps(config);
    let harts = VmHarts::new(config.cpus.count, notifier, plic);
    Ok((platform, ArchVm { harts }))
}

/// vCPU `i` of VM `vmid` is hart `i`, sharing the VM's hart state.
pub fn vcpu_config(vmid: u16, _i: usize, vm: &ArchVm) -> RiscvVCpuConfig {
    RiscvVCpuConfig {
        vmid,
        harts: vm.harts.clone(),
    }
}

/// a0 = hart id, a1 = DTB address at entry (RISC-V boot protocol).
pub fn boot_regs(dtb: u64) -> [(usize, u64); 2] {
    [(10, 0), (11, dtb)]
}
