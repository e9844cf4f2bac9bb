//! The VM platform of the target architecture: [`Platform`], the one type through which
//! the hypervisor reaches an architecture crate (`axvm::ArchPlatform`, which also names the
//! vCPU and stage-2 types). This crate is the only place that chooses by target; add an
//! architecture with one dependency in `Cargo.toml` and one line here. On a host build
//! (tests, tools) there is no platform.
#![no_std]

/// The aarch64 VM platform.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub type Platform = arm_vcpu::ArmPlatform;

/// The riscv64 VM platform.
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
pub type Platform = riscv_vcpu::RiscvPlatform;

/// The x86_64 VM platform (Intel VMX).
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub type Platform = x86_vcpu::X86Platform;
