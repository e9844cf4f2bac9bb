//! The x86_64 VMX VM platform ([`axvm::ArchPlatform`]): the vCPU type and its VPID, the
//! entry contract's GDT and page tables as boot data, and the refusals a VM gets on x86
//! (RAM not covering the boot tables, VMX unusable on this CPU, passthrough interrupts
//! without an interrupt controller).

use crate::entry::{boot_tables, BOOT_TABLES_END, BOOT_TABLES_GPA};
use crate::vmx::{self, VmxError};
use crate::{VmxVCpu, VmxVCpuConfig};
use alloc::sync::Arc;
use alloc::vec::Vec;
use axaddrspace::IntelEpt;
use axdevice_base::VcpuNotifier;
use axvm::{ArchPlatform, IrqSink, VmPlatform};
use axvmconfig::{HostArch, MemKind, VmConfig};
use core::fmt;

/// The x86_64 platform under VMX.
pub struct VmxPlatform;

/// What an x86 VM has besides its vCPUs: nothing yet (no virtual interrupt controller).
pub struct VmxVm;

/// Why an x86 VM cannot be built.
#[derive(Debug)]
pub enum VmxPlatformError {
    /// VMX cannot run on this CPU.
    Vmx(VmxError),
    /// No RAM region covers GPA 0..0x8000, where the boot GDT and page tables go.
    NoBootRam,
    /// Passthrough interrupts need an interrupt controller the VM does not have yet.
    PassthroughIrqs,
}

impl fmt::Display for VmxPlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vmx(e) => write!(f, "VMX: {e}"),
            Self::NoBootRam => write!(
                f,
                "RAM must cover guest-physical 0..{BOOT_TABLES_END:#x}: the boot GDT and page \
                 tables go at {BOOT_TABLES_GPA:#x}..{BOOT_TABLES_END:#x} (docs/x86.md)"
            ),
            Self::PassthroughIrqs => write!(
                f,
                "passthrough interrupts need a virtual interrupt controller, which x86 VMs do \
                 not have yet"
            ),
        }
    }
}

impl ArchPlatform for VmxPlatform {
    type VCpu = VmxVCpu;
    type Stage2 = IntelEpt;
    type Vm = VmxVm;
    type Error = VmxPlatformError;

    const HOST_ARCH: HostArch = HostArch::X86_64;

    /// VPIDs are 16 bits; VPID 0 is the host's, and the allocator never gives 0.
    fn vmid_bits() -> u32 {
        16
    }

    /// Enters VMX operation on this CPU (checking the capabilities once), checks the RAM
    /// covers the boot tables, and hands them over as boot data.
    fn build(
        config: &VmConfig,
        _notifier: Arc<dyn VcpuNotifier>,
    ) -> Result<(VmPlatform, VmxVm), VmxPlatformError> {
        vmx::enable().map_err(VmxPlatformError::Vmx)?;
        let covered = config.memory.iter().any(|m| {
            m.kind == MemKind::Ram && m.flags.write && m.gpa == 0 && m.size >= BOOT_TABLES_END
        });
        if !covered {
            return Err(VmxPlatformError::NoBootRam);
        }
        if config.passthrough_irqs().next().is_some() {
            return Err(VmxPlatformError::PassthroughIrqs);
        }
        let mut platform = VmPlatform::none();
        platform.boot_data = Vec::from([(BOOT_TABLES_GPA, boot_tables())]);
        Ok((platform, VmxVm))
    }

    fn irq_sink(_vm: &VmxVm) -> Option<Arc<dyn IrqSink>> {
        None
    }

    /// The VM's VPID tags its vCPUs' TLB entries.
    fn vcpu_config(_vm: &VmxVm, vmid: u16, _index: usize) -> VmxVCpuConfig {
        VmxVCpuConfig { vpid: vmid }
    }

    /// RDI = 0 (the start argument), RSI = 0 (no zero page): set-up already zeroes them.
    fn boot_regs(_config: &VmConfig) -> Vec<(usize, u64)> {
        Vec::new()
    }
}
