//! axvisor: a type-1 hypervisor.
//!
//! Boot: `axhal` brings up the boot CPU, `axstd` sets up memory, logging and tasks and calls
//! [`main`] here, which prints the banner, brings every CPU online and starts one task per CPU
//! that reports in, mounts the disk if there is one ([`disk`]), then builds and starts the VMs
//! embedded in the image (see [`vmm`]), and starts the shell on the console ([`shell`]).
#![no_std]
#![no_main]

extern crate alloc;

mod banner;
mod disk;
mod hostdisk;
mod images;
mod net;
mod shell;
mod vm_console;
mod vmm;

use axstd::println;
use axstd::sync::WaitQueue;
use axstd::time::Duration;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Tasks that have reported in.
static REPORTED: AtomicUsize = AtomicUsize::new(0);
static ALL_REPORTED: WaitQueue = WaitQueue::new();

#[no_mangle]
fn main() {
    banner::print();
    let online = axstd::smp::start_secondaries();
    let cpus = axhal::cpu::count();
    if online < cpus {
        log::warn!("only {online} of {cpus} cpus came online");
    }
    // One task pinned to each CPU. Each sleeps briefly (a timer event on its own CPU), then
    // reports through a wait queue that wakes this task across CPUs.
    for cpu in 0..online {
        axstd::thread::spawn_on(cpu, "hello", move || {
            println!("cpu {cpu}: task on cpu {} running", axhal::cpu::id());
            axstd::thread::sleep(Duration::from_millis(10 * (cpu as u64 + 1)));
            REPORTED.fetch_add(1, Ordering::AcqRel);
            ALL_REPORTED.notify_all();
        });
    }
    ALL_REPORTED.wait_until(|| REPORTED.load(Ordering::Acquire) == online);
    println!("all {online} cpus online");
    if let Some(test) = axstd::os::platform_info().bootarg("selftest") {
        selftest(test, online - 1);
    }
    disk::mount_at_boot();
    start_vms(online);
    shell::start();
}

fn start_vms(online: usize) {
    // Summaries of a VM's unclaimed accesses come at least every 10 s while they go on.
    axdevice::unclaimed::set_clock(|| axstd::time::now().as_millis() as u64);
    let n = vmm::start_all(online);
    if n == 0 {
        log::info!("no VMs to run; the hypervisor waits");
    }
}

/// Deliberate failures, chosen with the boot argument `selftest=<name>`, that show the
/// hypervisor's own failure paths work (used by the scenarios).
fn selftest(name: &str, cpu: usize) {
    match name {
        // Reads an address beyond the hypervisor's identity map (512 GiB on aarch64, 256 GiB
        // with Sv39 on riscv64): the trap handler must dump the registers and stop.
        "fault" => {
            axstd::thread::spawn_on(cpu, "selftest", || {
                let addr = 0x80_0000_0000usize as *const u64;
                // SAFETY: deliberately unsafe: the access faults, and the fault is the test.
                let v = unsafe { core::ptr::read_volatile(addr) };
                println!("selftest fault: read {v:#x} from {addr:p} without a fault");
            });
        }
        other => log::warn!("boot argument selftest={other}: unknown (known: fault)"),
    }
}
