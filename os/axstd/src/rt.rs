//! Runtime: allocator, logger, panic handler, and the entry points `axhal` calls.

use crate::println;
use axalloc::{Allocator, IrqGuard};
use core::fmt::Write;

/// Masks interrupts around allocator locks.
pub struct HalIrqGuard;

impl IrqGuard for HalIrqGuard {
    fn save_and_disable() -> usize {
        axhal::irq::save_and_disable()
    }
    fn restore(state: usize) {
        axhal::irq::restore(state)
    }
}

#[global_allocator]
pub(crate) static ALLOCATOR: Allocator<HalIrqGuard> = Allocator::new();

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let t = axhal::time::now_ns();
        println!(
            "[{:>4}.{:06} cpu{}] {:<5} {}",
            t / 1_000_000_000,
            (t / 1000) % 1_000_000,
            axhal::cpu::id(),
            record.level(),
            record.args()
        );
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

extern "Rust" {
    /// The application's entry point.
    fn main();
}

#[no_mangle]
fn __axstd_primary_main() -> ! {
    let free = axhal::platform::free_memory().unwrap_or_else(|e| {
        panic!("cannot work out free memory from the device tree: {e}");
    });
    for r in &free {
        // SAFETY: `free` is RAM the DTB lists minus every reservation, the DTB and this image;
        // the hypervisor's page table maps it writable at the same address.
        if let Err(e) = unsafe { ALLOCATOR.add_memory(*r) } {
            log::warn!("memory {r} not used: {e:?}");
        }
    }
    let _ = log::set_logger(&LOGGER);
    let level = axhal::platform::info().bootarg("log");
    log::set_max_level(
        level
            .and_then(|l| l.parse().ok())
            .unwrap_or(log::LevelFilter::Info),
    );
    if let Some(l) = level.filter(|l| l.parse::<log::LevelFilter>().is_err()) {
        log::warn!("boot argument log={l}: not a level (off, error, warn, info, debug, trace)");
    }
    axtask::init_cpu("main");
    axhal::irq::enable();
    // SAFETY: `main` is the application's `#[no_mangle] fn main()`, called once.
    unsafe { main() };
    axtask::run_idle()
}

#[no_mangle]
fn __axstd_secondary_main(cpu: usize) -> ! {
    axtask::init_cpu(&alloc::format!("idle/{cpu}"));
    println!("cpu {cpu}: online");
    crate::smp::mark_online();
    axhal::irq::enable();
    axtask::run_idle()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    axhal::irq::disable();
    axhal::console::seize();
    let mut out = axhal::console::RawWriter;
    let _ = write!(out, "\n[cpu{}] hypervisor panicked at ", axhal::cpu::id());
    if let Some(loc) = info.location() {
        let _ = write!(out, "{}:{}: ", loc.file(), loc.line());
    }
    let _ = writeln!(out, "{}", info.message());
    axhal::power::shutdown()
}
