//! Why a guest stopped running.

use axaddrspace::{GuestPhysAddr, MappingFlags};
use axdevice_base::AccessWidth;

#[cfg(doc)]
use crate::ArchVCpu;

/// A decoded guest exit. Values in it come from the guest and are untrusted: handlers check
/// them before use.
///
/// Every exit is returned by value from [`ArchVCpu::run`], so the type is laid out to be
/// cheap to move: four machine words at most (checked below), and a whole word for the
/// discriminant (`repr(u64)`), with the small fields of a variant after its words (field
/// order matters under `repr`). With Rust's default layout, small fields are packed into
/// the bytes beside a one-byte discriminant; on the hypervisor's strict-alignment aarch64
/// target, moving those seven unaligned bytes took a `memcpy` call (35 instructions) per
/// exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum VmExit {
    /// A hypercall (`hvc` / VS `ecall` / `vmcall`) that is not a firmware call the
    /// architecture handles itself: the call number. The arguments stay in the vCPU until
    /// a handler asks for them ([`ArchVCpu::hypercall_args`]), which keeps the exit small
    /// (it is returned by value on every exit); the result goes back with
    /// [`ArchVCpu::set_return_value`].
    Hypercall {
        /// Call number.
        nr: u64,
    },
    /// A guest load from an address that is not RAM: the value goes into general-purpose
    /// register `reg` (sign-extended from `width` when `sign_ext`) with
    /// [`ArchVCpu::complete_mmio_read`].
    MmioRead {
        /// Guest physical address.
        gpa: GuestPhysAddr,
        /// Destination register.
        reg: usize,
        /// Access size.
        width: AccessWidth,
        /// Whether the load sign-extends.
        sign_ext: bool,
    },
    /// A guest store to an address that is not RAM.
    MmioWrite {
        /// Guest physical address.
        gpa: GuestPhysAddr,
        /// Value stored (already masked to `width`).
        value: u64,
        /// Access size.
        width: AccessWidth,
    },
    /// A stage-2 / G-stage fault the architecture could not decode as an MMIO access (for
    /// example an instruction fetch, or an access the syndrome does not describe).
    NestedPageFault {
        /// Guest physical address.
        gpa: GuestPhysAddr,
        /// What the guest tried to do.
        access: MappingFlags,
    },
    /// A physical interrupt arrived while the guest ran. It is still pending (host
    /// interrupts are masked, see [`ArchVCpu::run`]): the hypervisor
    /// takes it when it unmasks them.
    ExternalInterrupt,
    /// The guest waits for an interrupt (`wfi`).
    Halt,
    /// The guest asks to start vCPU `target` at `entry` with `arg` (PSCI CPU_ON, SBI HSM);
    /// answered with [`crate::ArchVCpu::complete_power`].
    CpuUp {
        /// Target vCPU (architecture id: MPIDR or hart id).
        target: u64,
        /// Entry point (guest physical).
        entry: GuestPhysAddr,
        /// Argument for the target's first register.
        arg: u64,
    },
    /// The guest asks for the power state of vCPU `target` (PSCI AFFINITY_INFO, SBI HSM
    /// hart_get_status); answered with [`crate::ArchVCpu::complete_power`].
    CpuStatus {
        /// Target vCPU (architecture id: MPIDR or hart id).
        target: u64,
    },
    /// The guest stops this vCPU (PSCI CPU_OFF, SBI hart_stop).
    CpuDown,
    /// The guest powers its VM off.
    SystemOff,
    /// The guest resets its VM.
    SystemReset,
    /// The guest did something the architecture refuses to emulate; it has been given a fault
    /// where the architecture can, otherwise the VM should stop. `reason` says what. Also
    /// a vCPU that shut down by itself (x86: a triple fault, `reason` `"triple fault"`):
    /// a PC would reset, axvisor stops the VM (docs/vmm.md, "The seam").
    Unsupported {
        /// Short description for the log.
        reason: &'static str,
        /// Architecture syndrome (ESR_EL2, scause, exit reason).
        syndrome: u64,
    },
    // Added for x86: after the others, so that their discriminants (and the jump tables
    // of the exit handlers) stay as they were.
    /// A guest `in` from an I/O port (x86; one exit per element of a string or repeated
    /// form): the value goes back with [`ArchVCpu::complete_port_read`], which also moves
    /// past the instruction.
    PortRead {
        /// The port.
        port: u16,
        /// Access size (1, 2 or 4 bytes).
        width: AccessWidth,
    },
    /// A guest `out` to an I/O port (x86; one exit per element of a string or repeated
    /// form). Needs no completion: the vCPU moves past the instruction itself, as for
    /// [`VmExit::MmioWrite`].
    PortWrite {
        /// Value written (already masked to `width`).
        value: u64,
        /// The port.
        port: u16,
        /// Access size (1, 2 or 4 bytes).
        width: AccessWidth,
    },
}

// Every exit is returned by value: keep it small (see the type's documentation).
const _: () = assert!(core::mem::size_of::<VmExit>() <= 32);
