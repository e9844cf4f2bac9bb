//! The hypercalls a guest can make to its VM, shared by the architecture crates (which
//! decode them) and `axvm` (which answers them). A hypercall number is a function number:
//! on aarch64 the SMCCC function id `0xC600_0000 | nr` (an SMC64 fast call of the
//! vendor-specific hypervisor service, `hvc #0`, see `arm_vcpu::smccc`); on riscv64 the
//! function id in the axvisor SBI extension. Arguments and results are plain integers; an
//! unknown number returns [`NOT_SUPPORTED`].

/// Returns [`ABI_VERSION`].
pub const VERSION: u64 = 0x100;
/// Returns the wrapping sum of the six arguments (tests argument passing).
pub const ADD: u64 = 0x101;
/// Returns the caller's VM id.
pub const VM_ID: u64 = 0x102;
/// Writes the low byte of argument 0 to the VM's console; returns 0.
pub const CONSOLE_PUTCHAR: u64 = 0x103;

/// Returns how many times the VM has been reset since it was created.
pub const RESET_COUNT: u64 = 0x104;

/// The hypercall ABI version.
pub const ABI_VERSION: u64 = 1;
/// Result of an unknown hypercall (-1).
pub const NOT_SUPPORTED: u64 = u64::MAX;

/// The answer to hypercall `nr` when it is fixed for the life of the VM with id `vm_id`
/// (VERSION, VM_ID), else `None`. A vCPU told its VM's id
/// ([`crate::ArchVCpu::set_vm_id`]) may answer these inside its run loop, without an exit
/// to the VMM; the VMM answers them the same way when they do reach it.
#[inline]
pub fn fixed_answer(nr: u64, vm_id: u64) -> Option<u64> {
    match nr {
        VERSION => Some(ABI_VERSION),
        VM_ID => Some(vm_id),
        _ => None,
    }
}
