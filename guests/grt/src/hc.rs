//! axvisor's hypercall numbers and results, as the hypervisor defines them in
//! `axvcpu::hypercall` (docs/vmm.md, "Hypercall ABI"). Call them with [`crate::hypercall`].

/// Returns [`ABI_VERSION`].
pub const VERSION: u64 = 0x100;
/// Returns the wrapping sum of the six arguments.
pub const ADD: u64 = 0x101;
/// Returns the caller's VM id (`id` in its config).
pub const VM_ID: u64 = 0x102;
/// Writes the low byte of argument 0 to the VM's console; returns 0.
pub const CONSOLE_PUTCHAR: u64 = 0x103;
/// Returns how many times the VM has been reset since it was created.
pub const RESET_COUNT: u64 = 0x104;

/// The hypercall ABI version [`VERSION`] returns.
pub const ABI_VERSION: u64 = 1;
/// The result of an unknown hypercall number (-1).
pub const NOT_SUPPORTED: u64 = u64::MAX;
