//! The VMs of this hypervisor: which exist, which task runs which vCPU, and what a halt,
//! power-off, reset or stopped VM means.
//!
//! VM configs and their images are embedded in the hypervisor image at build time (see
//! [`crate::images`]). A config that does not parse or validate is reported and skipped;
//! the other VMs still run.

use crate::images::{self, EmbeddedVm};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use axaddrspace::{FrameAllocator, HostPhysAddr, HostVirtAddr};
use axstd::println;
use axstd::time::Duration;
use axvm::{AxVm, VcpuEvent};
use axvmconfig::{ValidateContext, VmConfig};

#[cfg(target_arch = "aarch64")]
mod arch {
    pub use arm_vcpu::{ArmVCpu as VCpuImpl, ArmVCpuConfig};
    pub use axaddrspace::Aarch64Stage2 as Stage2;

    /// vCPU `i` of VM `vmid` has MPIDR affinity `i`.
    pub fn vcpu_config(vmid: u16, i: usize) -> ArmVCpuConfig {
        ArmVCpuConfig {
            mpidr: i as u64,
            vmid,
        }
    }

    /// x0 holds the DTB address at entry (Linux arm64 boot protocol).
    pub fn boot_regs(dtb: u64) -> [(usize, u64); 1] {
        [(0, dtb)]
    }
}

#[cfg(target_arch = "riscv64")]
mod arch {
    pub use axaddrspace::RiscvSv39x4 as Stage2;
    pub use riscv_vcpu::{RiscvVCpu as VCpuImpl, RiscvVCpuConfig};

    /// vCPU `i` of VM `vmid` is hart `i`.
    pub fn vcpu_config(vmid: u16, i: usize) -> RiscvVCpuConfig {
        RiscvVCpuConfig {
            hart_id: i as u64,
            vmid,
        }
    }

    /// a0 = hart id, a1 = DTB address at entry (RISC-V boot protocol).
    pub fn boot_regs(dtb: u64) -> [(usize, u64); 2] {
        [(10, 0), (11, dtb)]
    }
}

/// Frames from the hypervisor's allocator; RAM is identity-mapped.
#[derive(Clone, Copy)]
pub struct HalFrames;

impl FrameAllocator for HalFrames {
    fn alloc_frames(&self, count: usize, align: usize) -> Option<HostPhysAddr> {
        axstd::mem::alloc_frames(count, align).map(HostPhysAddr::new)
    }
    fn dealloc_frames(&self, pa: HostPhysAddr, count: usize) {
        axstd::mem::dealloc_frames(pa.as_usize(), count)
    }
    fn phys_to_virt(&self, pa: HostPhysAddr) -> HostVirtAddr {
        HostVirtAddr::new(pa.as_usize())
    }
}

type Vm = AxVm<arch::VCpuImpl, arch::Stage2, HalFrames>;

/// Parses and validates every embedded config; returns the usable ones with their source.
fn load_configs(pcpus: usize) -> Vec<(&'static EmbeddedVm, VmConfig)> {
    let mut ok = Vec::new();
    for vm in images::VMS {
        let config = match axvmconfig::from_toml(vm.config) {
            Ok(c) => c,
            Err(e) => {
                println!("vm config {}: {e}; skipped", vm.file);
                continue;
            }
        };
        let image_sizes: BTreeMap<String, u64> = vm
            .images
            .iter()
            .map(|(n, b)| (String::from(*n), b.len() as u64))
            .collect();
        let ctx = ValidateContext {
            pcpu_count: Some(pcpus),
            image_sizes,
        };
        match config.validate(&ctx) {
            Ok(()) => ok.push((vm, config)),
            Err(problems) => {
                for p in problems {
                    println!("vm config {}: {p}", vm.file);
                }
                println!("vm config {}: invalid; skipped", vm.file);
            }
        }
    }
    // Duplicate ids or names across VMs: keep the first of each.
    let mut seen = Vec::<(u32, String)>::new();
    ok.retain(|(vm, c)| {
        let dup = seen.iter().any(|(id, name)| *id == c.id || *name == c.name);
        if dup {
            println!(
                "vm config {}: id {} or name {:?} already used; skipped",
                vm.file, c.id, c.name
            );
        } else {
            seen.push((c.id, c.name.clone()));
        }
        !dup
    });
    ok
}

/// Builds, boots and starts every valid embedded VM. Returns how many started.
pub fn start_all(pcpus: usize) -> usize {
    let configs = load_configs(pcpus);
    let mut started = 0;
    for (source, config) in configs {
        if start_vm(source, config) {
            started += 1;
        }
    }
    started
}

fn start_vm(source: &'static EmbeddedVm, config: VmConfig) -> bool {
    let name = config.name.clone();
    let vmid = config.id as u16;
    let dtb = config.kernel.dtb.as_ref().map_or(0, |d| d.load_addr);
    let console = Arc::new(|line: &str| println!("{line}"));
    let vm = match Vm::new(
        config,
        HalFrames,
        &|image| images::image(source, image),
        console,
        &|i| arch::vcpu_config(vmid, i),
    ) {
        Ok(vm) => Arc::new(vm),
        Err(e) => {
            println!("vm {name}: cannot be created: {e}");
            return false;
        }
    };
    if let Err(e) = vm.boot(&arch::boot_regs(dtb)) {
        println!("vm {name}: cannot boot: {e}");
        return false;
    }
    let pcpu = vm.config().cpus.pin[0];
    let mem: u64 = vm.config().memory.iter().map(|r| r.size).sum();
    println!(
        "vm {name}: created (id {}, {} vcpu(s), {} KiB, vcpu 0 on cpu {pcpu})",
        vm.id(),
        vm.vcpu_count(),
        mem / 1024
    );
    let task_name = alloc::format!("{name}/vcpu0");
    axstd::thread::spawn_on(pcpu, &task_name, move || run_vcpu(vm, 0));
    true
}

/// The task of one vCPU: run, apply the hypervisor's policy to what comes back, repeat.
fn run_vcpu(vm: Arc<Vm>, id: usize) {
    let name = String::from(vm.name());
    loop {
        match vm.run_vcpu(id) {
            Ok(VcpuEvent::Interrupt) => axstd::thread::yield_now(),
            // No virtual interrupts yet: a halted guest is polled again after a short sleep.
            Ok(VcpuEvent::Halt) => axstd::thread::sleep(Duration::from_millis(1)),
            Ok(VcpuEvent::CpuUp { target, .. }) => {
                log::warn!("vm {name}: vcpu {id} asked to start vcpu {target}: not supported yet");
            }
            Ok(VcpuEvent::CpuDown) => {
                println!("vm {name}: vcpu {id} stopped itself");
                break;
            }
            Ok(VcpuEvent::PowerOff) => {
                println!("vm {name}: powered off");
                break;
            }
            Ok(VcpuEvent::Reset) => match vm.reset() {
                Ok(()) => println!("vm {name}: reset ({} so far)", vm.reset_count()),
                Err(e) => {
                    println!("vm {name}: stopped: reset failed: {e}");
                    break;
                }
            },
            Ok(VcpuEvent::Stopped(reason)) => {
                println!("vm {name}: stopped: {reason}");
                break;
            }
            Err(e) => {
                println!("vm {name}: stopped: {e}");
                break;
            }
        }
    }
    vm.mark_stopped();
    let counts: Vec<String> = vm
        .exits()
        .nonzero()
        .map(|(k, n)| alloc::format!("{}={n}", k.name()))
        .collect();
    log::info!("vm {name}: exits {}", counts.join(" "));
}
