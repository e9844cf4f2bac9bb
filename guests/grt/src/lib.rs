//! grt, the guest runtime: everything a test guest needs to run inside an axvisor VM.
//!
//! A guest is a `#![no_std] #![no_main]` binary that depends on grt, links with grt's
//! linker script (its build script, `guests/grt/guest-link.rs`, adds
//! `-T$DEP_GRT_LINKER_SCRIPT`) and defines
//!
//! ```ignore
//! #[no_mangle]
//! fn main() {
//!     grt::println!("Hello");
//!     grt::pass("hello");
//! }
//! ```
//!
//! grt provides, for aarch64 (EL1, PL011 console, PSCI over `hvc`), riscv64 (VS mode,
//! 16550 console, SBI over `ecall`) and x86_64 (64-bit mode at CPL 0, 16550 console at port
//! 0x3F8, axvisor's hypercalls over `vmcall`):
//! - `_start`, placed first in the image at [`IMAGE_BASE`] ([`layout`]): sets the stack
//!   (64 KiB in `.bss`), installs the exception vectors (x86_64: a GDT and an IDT), zeroes
//!   `.bss`, calls `main`, then [`power_off`];
//! - [`print!`] / [`println!`] on the VM's UART, and the test markers [`pass`] / [`fail`];
//! - [`power_off`], [`reset`] and [`hypercall`];
//! - exception handling: an unexpected exception prints `FAIL unexpected exception: ...` and
//!   powers off, unless it is a data fault and a handler was registered with
//!   [`trap::set_data_fault_handler`];
//! - a panic handler that prints `FAIL panic: <message>` and powers off;
//! - [`mmio`] accessors whose instructions the hypervisor can decode.
//!
//! grt assumes a single vCPU: the console has no lock.
#![no_std]

mod arch;
pub mod bench;
pub mod check;
pub mod console;
pub mod hc;
pub mod irq;
pub mod layout;
pub mod mmio;
#[cfg(target_arch = "x86_64")]
pub mod pio;
pub mod smp;
pub mod trap;
pub mod virtio;

use core::fmt::Display;
use core::panic::PanicInfo;

/// SBI calls over `ecall` (riscv64).
#[cfg(target_arch = "riscv64")]
pub use arch::sbi_call;
pub use arch::{cpu_id, hypercall, power_off, reset, wait_for_interrupt};
/// SMC Calling Convention calls over `hvc` or `smc` (aarch64), and the function ids of
/// axvisor's hypercalls.
#[cfg(target_arch = "aarch64")]
pub use arch::{hvc_call, hypercall_fid, smc, smc_call, AXVISOR_SMCCC_BASE};
/// The EL1 exception frame, for guests with vectors of their own (with
/// [`aarch64_trap_frame_save!`] and [`aarch64_trap_frame_restore!`]).
#[cfg(target_arch = "aarch64")]
pub use arch::{TrapFrame, FRAME_SIZE as TRAP_FRAME_SIZE};

/// x86_64: CPUID, MSR access, the instruction-length decoder grt skips faults with, the
/// selectors of grt's GDT, IDT gates of a guest's own, the console port and axvisor's power
/// hypercall numbers.
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    pub use crate::arch::insn;
    pub use crate::arch::irq_hw::{
        init_cpu_xapic, xapic_read, xapic_write, EXTERNAL_VECTOR_BASE, IPI_VECTOR, TIMER_VECTOR,
    };
    pub use crate::arch::{
        cpuid, power_hc, read_msr, set_gate, stub_address, write_msr, TrapFrame, COM1, KERNEL_CS,
        KERNEL_DS, VECTOR_PF, VECTOR_UD,
    };
}

/// The name of the architecture grt was built for, as in the guests' messages.
pub const ARCH: &str = arch::NAME;

/// Guest RAM base for this architecture.
pub const RAM_BASE: u64 = arch::RAM_BASE;

/// Where the guest is linked, loaded and entered: [`RAM_BASE`] on aarch64 and riscv64, 2 MiB
/// into RAM on x86_64.
pub const IMAGE_BASE: u64 = arch::IMAGE_BASE;

/// Size of the guest RAM the test VM configs give a guest, from [`RAM_BASE`]
/// ([`layout::RAM_SIZE`]).
pub const RAM_SIZE: u64 = layout::RAM_SIZE;

/// The end of the guest's image in RAM, 16-byte aligned: everything from [`IMAGE_BASE`] up
/// to here is code, data, `.bss` and the boot stack (which ends `.bss`). RAM from here to
/// `RAM_BASE + RAM_SIZE` is not used by grt.
pub fn image_end() -> u64 {
    extern "C" {
        /// End of `.bss` (and of the stack), from the linker script.
        static __bss_end: u8;
    }
    // Only the address is taken: the symbol is never read.
    (&raw const __bss_end) as u64
}

/// The SBI extension id of axvisor's own hypercalls on riscv64 (`a7`; the call number goes
/// in `a6`). Not used on aarch64, where hypercalls are `hvc #0` with x0 =
/// [`hypercall_fid`]`(nr)`, in the SMCCC vendor-specific hypervisor range.
pub const AXVISOR_HC_EID: u64 = 0x0A00_08B5;

/// Prints the success marker `PASS <name>`.
pub fn pass(name: &str) {
    println!("PASS {name}");
}

/// Prints the failure marker `FAIL <name>: <reason>` (the test runner stops at it).
pub fn fail(name: &str, reason: impl Display) {
    println!("FAIL {name}: {reason}");
}

/// Called by `_start` once the stack, the vectors and `.bss` are ready.
#[no_mangle]
extern "C" fn grt_start() -> ! {
    extern "Rust" {
        /// The guest's entry point: `#[no_mangle] fn main()` in the guest binary.
        fn main();
    }
    // SAFETY: every guest binary defines `#[no_mangle] fn main()` with exactly this
    // signature (docs/guests.md); `_start` has set up the stack and zeroed `.bss`.
    unsafe { main() };
    power_off()
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    match info.location() {
        Some(at) => println!(
            "FAIL panic: {} (at {}:{})",
            info.message(),
            at.file(),
            at.line()
        ),
        None => println!("FAIL panic: {}", info.message()),
    }
    power_off()
}
