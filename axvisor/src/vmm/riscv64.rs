//! riscv64 VMs: the vCPU type, its configuration and the per-VM platform.

use super::VcpuWaker;
use alloc::string::String;
use alloc::sync::Arc;
pub use axaddrspace::RiscvSv39x4 as Stage2;
use axvm::VmPlatform;
use axvmconfig::VmConfig;
pub use riscv_vcpu::{RiscvVCpu as VCpuImpl, RiscvVCpuConfig};

/// What a riscv64 VM has besides its vCPUs.
pub struct ArchVm;

/// Builds the platform of a VM.
pub fn build(_config: &VmConfig, _waker: Arc<VcpuWaker>) -> Result<(VmPlatform, ArchVm), String> {
    Ok((VmPlatform::none(), ArchVm))
}

/// vCPU `i` of VM `vmid` is hart `i`.
pub fn vcpu_config(vmid: u16, i: usize, _vm: &ArchVm) -> RiscvVCpuConfig {
    RiscvVCpuConfig {
        hart_id: i as u64,
        vmid,
    }
}

/// a0 = hart id, a1 = DTB address at entry (RISC-V boot protocol).
pub fn boot_regs(dtb: u64) -> [(usize, u64); 2] {
    [(10, 0), (11, dtb)]
}
