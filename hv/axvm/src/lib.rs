//! One virtual machine.
//!
//! [`AxVm::new`] follows the seed's flow: the config's memory regions become the address
//! space, its devices the device set, then the vCPUs are created and the images loaded.
//! [`AxVm::run_vcpu`] enters a vCPU and handles every exit that belongs to the VM itself —
//! MMIO goes to the device set, nested page faults to the address space, hypercalls to
//! [`hypercall`](axvcpu::hypercall) — and returns a [`VcpuEvent`] for what is the hypervisor's policy (halt,
//! CPU on/off, power off, reset, a stopped VM).
//!
//! Everything here is architecture-neutral and unit-tested on the host with a fake vCPU.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub use axvcpu::hypercall;
mod fault_streak;
mod guest_ram;
mod platform;
mod stats;
mod vm;
pub mod vmid;

pub use platform::{ArchPlatform, IrqSink, PlatformVm};
pub use stats::{ExitCounters, ExitKind};
pub use vm::{
    AxVm, DeviceAt, DeviceError, DeviceMap, DiskOpenError, DiskOpener, ImageLoad, KernelBoot,
    LoadWhat, SwitchFinder, VcpuEvent, VmError, VmPlatform, VmStatus,
};
pub use vmid::{NoVmidLeft, VmidAllocator};

#[cfg(test)]
mod tests;
