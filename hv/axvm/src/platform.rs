//! The architecture seam of a VM beyond its vCPUs: [`ArchPlatform`].
//!
//! Each architecture crate (`arm_vcpu`, `riscv_vcpu`, `x86_vcpu`) implements it once; the
//! hypervisor names the implementation of its target in one type alias and otherwise knows
//! no architecture. What the hypervisor lends an architecture (waking vCPUs) comes in as
//! the small traits of `axdevice_base`; what an architecture lends the hypervisor
//! (taking passthrough interrupts) goes out as [`IrqSink`].

use crate::{AxVm, KernelBoot, VmPlatform};
use alloc::sync::Arc;
use alloc::vec::Vec;
use axaddrspace::PteFormat;
use axdevice_base::VcpuNotifier;
use axvcpu::ArchVCpu;
use axvmconfig::{HostArch, VmConfig};
use core::fmt;

/// One architecture's VM platform: the vCPU and stage-2 types, the per-VM state beside the
/// vCPUs (interrupt controller, state the vCPUs share), boot registers, the architecture
/// part of a generated device tree, and how passthrough interrupts reach a VM.
///
/// Every method is called by the hypervisor's VM manager, in this order for one VM:
/// [`build`](Self::build), [`irq_sink`](Self::irq_sink) (passthrough claims),
/// [`prepare_boot`](Self::prepare_boot), [`dtb_arch`](Self::dtb_arch) (only for a
/// generated device tree), [`vcpu_config`](Self::vcpu_config) per vCPU, then
/// [`boot_regs`](Self::boot_regs) (unless `prepare_boot` gave the registers).
pub trait ArchPlatform {
    /// The vCPU.
    type VCpu: ArchVCpu;
    /// The nested page-table format of a VM's address space.
    type Stage2: PteFormat + 'static;
    /// What a VM has besides its vCPUs; handed to [`vcpu_config`](Self::vcpu_config).
    type Vm: Send + Sync;
    /// Why a VM cannot be built here (printed as `vm <name>: cannot be created: <error>`).
    type Error: fmt::Display;

    /// The architecture the config checks see.
    const HOST_ARCH: HostArch;

    /// Width in bits of the hardware VM identifier (VMID, VPID, ASID) on this CPU. Called
    /// once, before any VM is built (riscv64 measures it by writing `hgatp`).
    fn vmid_bits() -> u32;

    /// Builds the platform of a VM from its validated config: the emulated interrupt
    /// controller and its interrupt lines, host frames mapped into the guest (passthrough
    /// ranges, a GICv2 virtual CPU interface), bytes written into guest memory at boot, and
    /// the per-VM state. `notifier` wakes a vCPU of this VM (an interrupt was raised for
    /// it). Claims nothing on the host: the hypervisor claims the passthrough ranges and
    /// interrupts afterwards, and drops what was built when that fails.
    fn build(
        config: &VmConfig,
        notifier: Arc<dyn VcpuNotifier>,
    ) -> Result<(VmPlatform, Self::Vm), Self::Error>;

    /// Where the VM built by [`build`](Self::build) takes the host interrupts of its
    /// passthrough devices; `None` when it has no interrupt controller for them (`build`
    /// refuses a config with passthrough interrupts then).
    fn irq_sink(vm: &Self::Vm) -> Option<Arc<dyn IrqSink>>;

    /// The creation parameters of vCPU `index` of a VM with hardware VM identifier `vmid`.
    fn vcpu_config(
        vm: &Self::Vm,
        vmid: u16,
        index: usize,
    ) -> <Self::VCpu as ArchVCpu>::CreateConfig;

    /// The general-purpose registers vCPU 0 starts with, as `(index, value)` for
    /// [`ArchVCpu::set_gpr`] (aarch64: x0 = DTB address; riscv64: a0 = hart id, a1 = DTB
    /// address).
    fn boot_regs(config: &VmConfig) -> Vec<(usize, u64)>;

    /// The boot of a kernel whose placement this architecture decides (x86:
    /// `kernel.format = "linux-bzimage"`, the 64-bit Linux boot protocol), from the VM's
    /// validated config and its images (`images` gives an image's bytes by name); it goes
    /// into [`VmPlatform::kernel`]. `Ok(None)` (the default): the config's images are loaded
    /// at their `load_addr` and vCPU 0 starts at `kernel.entry` with
    /// [`boot_regs`](Self::boot_regs). Called after [`build`](Self::build); the bytes are
    /// written again at every reset.
    fn prepare_boot(
        config: &VmConfig,
        images: &dyn Fn(&str) -> Option<&'static [u8]>,
    ) -> Result<Option<KernelBoot>, Self::Error> {
        let _ = (config, images);
        Ok(None)
    }

    /// The architecture part of the device tree generated for a VM whose config asks for
    /// one (`kernel.dtb` without an image). `Ok(None)`: this architecture describes its
    /// machines otherwise (x86: ACPI tables), and a generated device tree is refused.
    fn dtb_arch(config: &VmConfig) -> Result<Option<axdtb::ArchDesc<'static>>, Self::Error> {
        let _ = config;
        Ok(None)
    }
}

/// A VM on platform `P` with frames from `M`: `P`'s vCPU and stage-2 format.
pub type PlatformVm<P, M> = AxVm<<P as ArchPlatform>::VCpu, <P as ArchPlatform>::Stage2, M>;

/// Where a VM takes the host interrupts of its passthrough devices (implemented by the
/// architecture's interrupt controller model, called by the hypervisor's host interrupt
/// handler).
pub trait IrqSink: Send + Sync {
    /// Host interrupt `irq` of the VM fired and is now masked at the host: raise it for the
    /// guest and get a vCPU to look. The architecture unmasks the host interrupt once the
    /// guest has handled it. Runs in interrupt context: it must take no lock that is held
    /// with interrupts enabled.
    fn raise(&self, irq: u32);
}
