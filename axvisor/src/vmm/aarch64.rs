//! aarch64 VMs: the vCPU type, its configuration and the per-VM platform.

use super::VcpuWaker;
use alloc::string::String;
use alloc::sync::Arc;
pub use arm_vcpu::{ArmVCpu as VCpuImpl, ArmVCpuConfig};
pub use axaddrspace::Aarch64Stage2 as Stage2;
use axvm::VmPlatform;
use axvmconfig::VmConfig;

/// What an aarch64 VM has besides its vCPUs.
pub struct ArchVm;

/// Builds the platform of a VM.
pub fn build(_config: &VmConfig, _waker: Arc<VcpuWaker>) -> Result<(VmPlatform, ArchVm), String> {
    Ok((VmPlatform::none(), ArchVm))
}

/// vCPU `i` of VM `vmid` has MPIDR affinity `i`.
pub fn vcpu_config(vmid: u16, i: usize, _vm: &ArchVm) -> ArmVCpuConfig {
    ArmVCpuConfig {
        mpidr: i as u64,
        vmid,
    }
}

/// x0 holds the DTB address at entry (Linux arm64 boot protocol).
pub fn boot_regs(dtb: u64) -> [(usize, u64); 1] {
    [(0, dtb)]
}
