//! What every architecture's entry code shares: the boot CPU's stack and the table of
//! secondary CPUs' stacks, both read by assembly before any Rust runs.

use axconfig::{MAX_CPUS, STACK_SIZE};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Stack of the boot CPU until it becomes its first task.
#[repr(C, align(16))]
pub(crate) struct BootStack([u8; STACK_SIZE]);

/// The boot CPU's stack (symbol used by the entry assembly).
#[no_mangle]
pub(crate) static mut BOOT_STACK: BootStack = BootStack([0; STACK_SIZE]);

/// Top of each secondary CPU's stack, read by `secondary_entry` before Rust runs.
#[no_mangle]
static SECONDARY_STACK_TOP: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// Records the stack logical CPU `cpu` starts on.
pub(crate) fn set_secondary_stack(cpu: usize, top: usize) {
    SECONDARY_STACK_TOP[cpu].store(top, Ordering::Release);
}

/// Physical address of the architecture's `secondary_entry` (identity-mapped). x86_64
/// starts secondaries at its real-mode trampoline instead.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn secondary_entry_addr() -> usize {
    extern "C" {
        fn secondary_entry();
    }
    secondary_entry as *const () as usize
}
