//! The riscv64 VM platform ([`axvm::ArchPlatform`]): the vCPU type and its configuration,
//! a virtual PLIC when the config lists one, the state the VM's harts share, the
//! passthrough interrupts, boot registers and the device tree's harts and PLIC.

use crate::harts::VmHarts;
use crate::{RiscvVCpu, RiscvVCpuConfig};
use alloc::sync::Arc;
use alloc::vec::Vec;
use axaddrspace::RiscvSv39x4;
use axdevice_base::VcpuNotifier;
use axdtb::{ArchDesc, Plic};
use axvm::{ArchPlatform, IrqSink, VmPlatform};
use axvmconfig::{DeviceKind, HostArch, VmConfig, VPLIC_SOURCES};
use core::fmt;
use riscv_vplic::{Vplic, VplicConfig, VplicError, VPLIC_SIZE};

// The config check (axvmconfig) refuses a `plic` of another size than the vPLIC's window.
const _: () = assert!(VPLIC_SIZE as u64 == axvmconfig::VPLIC_WINDOW_SIZE);

/// Interrupt sources of a VM's PLIC (IDs 1..=95, the lines the config check allows), as on
/// QEMU `virt`: its 16550 is source 10.
const PLIC_SOURCES: u32 = VPLIC_SOURCES.end - 1;
/// Implemented priority bits (priorities 0..=7), as on QEMU `virt`.
const PLIC_PRIORITY_BITS: u32 = 3;

/// The riscv64 platform.
pub struct RiscvPlatform;

/// What a riscv64 VM has besides its vCPUs: the state its harts share (IPIs, remote fences,
/// its PLIC's outputs).
pub struct RiscvVm {
    harts: Arc<VmHarts>,
    plic: Option<Arc<Vplic>>,
}

/// Why a riscv64 VM cannot be built.
#[derive(Debug)]
pub enum RiscvPlatformError {
    /// The virtual PLIC refused its configuration.
    Plic {
        /// Its base address.
        base: u64,
        /// Why.
        error: VplicError,
    },
    /// Passthrough interrupts without a virtual PLIC.
    PassthroughNeedsPlic,
    /// The host's timebase frequency is unknown (a generated device tree needs it).
    UnknownTimebase,
}

impl fmt::Display for RiscvPlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plic { base, error } => write!(f, "plic at {base:#x}: {error}"),
            Self::PassthroughNeedsPlic => write!(
                f,
                "passthrough interrupts need a virtual PLIC: add a `plic` device"
            ),
            Self::UnknownTimebase => write!(f, "the host's timebase frequency is unknown"),
        }
    }
}

/// A VM's passthrough interrupts on riscv64: posted on its vPLIC from the host's interrupt
/// handler without taking the vPLIC's lock. The vPLIC lowers such a line when the guest
/// completes the source and reports it to the handler `build` installs, which unmasks the
/// host source again.
struct PlicSink(Arc<Vplic>);

impl IrqSink for PlicSink {
    fn raise(&self, irq: u32) {
        self.0.post_high(irq);
    }
}

impl ArchPlatform for RiscvPlatform {
    type VCpu = RiscvVCpu;
    type Stage2 = RiscvSv39x4;
    type Vm = RiscvVm;
    type Error = RiscvPlatformError;

    const HOST_ARCH: HostArch = HostArch::Riscv64;

    fn vmid_bits() -> u32 {
        crate::vmid_bits()
    }

    /// With a `plic` device in the config, a virtual PLIC with one context per vCPU at its
    /// base, whose sources are the `irq` lines of the VM's devices and the interrupts of
    /// its passthrough devices (the same source numbers as on the host's PLIC).
    fn build(
        config: &VmConfig,
        notifier: Arc<dyn VcpuNotifier>,
    ) -> Result<(VmPlatform, RiscvVm), RiscvPlatformError> {
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
            .map_err(|error| RiscvPlatformError::Plic {
                base: d.base,
                error,
            })?;
            platform.devices = Vec::from([(d.base, vplic.mmio())]);
            let lines = vplic.clone();
            platform.irq_line = alloc::boxed::Box::new(move |n| lines.irq_line(n));
            // A VM reset finds the PLIC as after power-on (line levels kept).
            let resettable = vplic.clone();
            platform.on_reset = Some(alloc::boxed::Box::new(move || resettable.reset()));
            plic = Some(vplic);
        }
        match &plic {
            None if config.passthrough_irqs().next().is_some() => {
                return Err(RiscvPlatformError::PassthroughNeedsPlic)
            }
            None => {}
            Some(vplic) => {
                for n in config.passthrough_irqs() {
                    vplic.set_resample(n, true);
                }
                // The guest completed a passthrough source: let the device interrupt again.
                vplic.set_resample_handler(alloc::boxed::Box::new(|n| {
                    axhal::irq::set_device_enabled(n as usize, true)
                }));
            }
        }
        let harts = VmHarts::new(config.cpus.count, notifier, plic.clone());
        Ok((platform, RiscvVm { harts, plic }))
    }

    fn irq_sink(vm: &RiscvVm) -> Option<Arc<dyn IrqSink>> {
        vm.plic
            .clone()
            .map(|p| Arc::new(PlicSink(p)) as Arc<dyn IrqSink>)
    }

    /// vCPU `i` is hart `i`, sharing the VM's hart state.
    fn vcpu_config(vm: &RiscvVm, vmid: u16, _index: usize) -> RiscvVCpuConfig {
        RiscvVCpuConfig {
            vmid,
            harts: vm.harts.clone(),
        }
    }

    /// a0 = hart id, a1 = DTB address at entry (RISC-V boot protocol).
    fn boot_regs(config: &VmConfig) -> Vec<(usize, u64)> {
        let dtb = config.kernel.dtb.as_ref().map_or(0, |d| d.load_addr);
        Vec::from([(10, 0), (11, dtb)])
    }

    /// The harts' ISA (with Sstc when every host hart has it), the host's timebase, Sv39,
    /// and the VM's PLIC.
    fn dtb_arch(config: &VmConfig) -> Result<Option<ArchDesc<'static>>, RiscvPlatformError> {
        let info = axhal::platform::info();
        let sstc = info.cpus.iter().all(|c| c.isa_sstc);
        let isa = if sstc {
            "rv64imafdc_zicsr_zifencei_sstc"
        } else {
            "rv64imafdc_zicsr_zifencei"
        };
        let timebase_hz = info
            .timebase_hz
            .and_then(|hz| u32::try_from(hz).ok())
            .ok_or(RiscvPlatformError::UnknownTimebase)?;
        let plic = config
            .devices
            .iter()
            .find(|d| d.kind == DeviceKind::Plic)
            .map(|d| Plic {
                base: d.base,
                size: d.size,
                ndev: PLIC_SOURCES,
            });
        Ok(Some(ArchDesc::Riscv {
            isa,
            timebase_hz,
            mmu: "riscv,sv39",
            plic,
        }))
    }
}
