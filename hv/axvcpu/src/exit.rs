//! Why a guest stopped running.

use axaddrspace::{GuestPhysAddr, MappingFlags};
use axdevice_base::AccessWidth;

/// A decoded guest exit. Values in it come from the guest and are untrusted: handlers check
/// them before use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// A hypercall (`hvc` / VS `ecall` / `vmcall`) that is not a firmware call the
    /// architecture handles itself: call number and arguments. The result goes back with
    /// [`ArchVCpu::set_return_value`].
    Hypercall {
        /// Call number.
        nr: u64,
        /// Arguments.
        args: [u64; 6],
    },
    /// A guest load from an address that is not RAM: the value goes into general-purpose
    /// register `reg` (sign-extended from `width` when `sign_ext`) with
    /// [`ArchVCpu::complete_mmio_read`].
    MmioRead {
        /// Guest physical address.
        gpa: GuestPhysAddr,
        /// Access size.
        width: AccessWidth,
        /// Destination register.
        reg: usize,
        /// Whether the load sign-extends.
        sign_ext: bool,
    },
    /// A guest store to an address that is not RAM.
    MmioWrite {
        /// Guest physical address.
        gpa: GuestPhysAddr,
        /// Access size.
        width: AccessWidth,
        /// Value stored (already masked to `width`).
        value: u64,
    },
    /// A stage-2 / G-stage fault the architecture could not decode as an MMIO access (for
    /// example an instruction fetch, or an access the syndrome does not describe).
    NestedPageFault {
        /// Guest physical address.
        gpa: GuestPhysAddr,
        /// What the guest tried to do.
        access: MappingFlags,
    },
    /// A physical interrupt arrived while the guest ran; the hypervisor has handled it.
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
    /// where the architecture can, otherwise the VM should stop. `reason` says what.
    Unsupported {
        /// Short description for the log.
        reason: &'static str,
        /// Architecture syndrome (ESR_EL2, scause, exit reason).
        syndrome: u64,
    },
}
