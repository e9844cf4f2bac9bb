//! The architecture interface and the vCPU state machine.

use crate::VmExit;
use axaddrspace::{GuestPhysAddr, HostPhysAddr};
use core::fmt;
use core::ops::ControlFlow;

/// What an architecture's vCPU can do.
pub trait ArchVCpu: Sized {
    /// Architecture-specific creation parameters.
    type CreateConfig;

    /// Creates the vCPU with guest-visible id `vcpu_id`.
    fn new(vcpu_id: usize, config: Self::CreateConfig) -> Result<Self, VCpuError>;
    /// Sets where the guest starts.
    fn set_entry(&mut self, entry: GuestPhysAddr);
    /// Sets the root of the nested page table.
    fn set_stage2_root(&mut self, root: HostPhysAddr);
    /// Sets general-purpose register `idx` (boot arguments: DTB address, hart id, ...).
    fn set_gpr(&mut self, idx: usize, value: u64);
    /// Final set-up before the first run.
    fn setup(&mut self) -> Result<(), VCpuError>;
    /// Runs the guest and hands each decoded exit to `handle`, which completes it through the
    /// vCPU it is given (registers, an MMIO read's value, an injected fault) and then either
    /// re-enters the guest ([`ControlFlow::Continue`]) or ends the run with a value
    /// ([`ControlFlow::Break`]). The guest's state may stay loaded in the CPU across
    /// re-entries (see [`ArchVCpu::put`]). Exits the vCPU handles itself never reach
    /// `handle`.
    ///
    /// One call covers many exits: an architecture implements the loop around its world
    /// switch once, with the VMM's handler inlined into it, instead of returning through
    /// its own and its callers' prologues and epilogues on every exit.
    ///
    /// Called with the host's interrupts masked, and returns with them still masked: a
    /// physical interrupt that ends the guest's run ([`VmExit::ExternalInterrupt`]) stays
    /// pending until `handle` (or the caller) unmasks interrupts, and one that arrives while
    /// an exit is handled stays pending until the guest is re-entered, which then exits at
    /// once. So the hypervisor never takes an interrupt behind the back of the code that
    /// decides whether to re-enter the guest.
    fn run_with<R>(
        &mut self,
        handle: impl FnMut(&mut Self, VmExit) -> ControlFlow<R>,
    ) -> Result<R, VCpuError>;
    /// Runs the guest until its next exit and returns it: [`ArchVCpu::run_with`] with a
    /// handler that ends the run at once. Same interrupt contract.
    fn run(&mut self) -> Result<VmExit, VCpuError> {
        self.run_with(|_, exit| ControlFlow::Break(exit))
    }
    /// Completes a [`VmExit::MmioRead`]: writes `value` (sign-extended as the exit said) to
    /// the destination register and moves past the instruction.
    fn complete_mmio_read(&mut self, value: u64);
    /// Completes a [`VmExit::PortRead`]: writes `value` (masked to the access width) to the
    /// destination (x86: AL, AX or EAX, EAX's write zero-extending into RAX; a string `ins`
    /// stores it to memory and advances its registers) and moves past the instruction.
    /// Architectures without port I/O never return `PortRead`; the default ignores it.
    fn complete_port_read(&mut self, value: u64) {
        let _ = value;
    }
    /// The six arguments of the [`VmExit::Hypercall`] just returned by [`ArchVCpu::run`]
    /// (aarch64 x1–x6, riscv64 a0–a5; guest-controlled).
    fn hypercall_args(&self) -> [u64; 6];
    /// Sets a hypercall's return value.
    fn set_return_value(&mut self, value: u64);
    /// Injects a synchronous data fault for an access to `gpa` that nothing claims.
    fn inject_data_fault(&mut self, gpa: GuestPhysAddr);
    /// Tells the vCPU the id of its VM, so that it may answer the hypercalls whose result
    /// never changes ([`crate::hypercall::fixed_answer`]) without an exit. The default
    /// ignores it: every hypercall exits.
    fn set_vm_id(&mut self, vm_id: u64) {
        let _ = vm_id;
    }
    /// Saves guest state that [`ArchVCpu::run`] left loaded in the CPU, before anything else
    /// may run on this physical CPU. Between `run` calls without `put`, the guest's state may
    /// stay in the hardware (the cheap path for exits the VM handles itself).
    fn put(&mut self) {}

    /// The vCPU index (within its VM) that the guest means by `target` in a CPU power call
    /// (an MPIDR affinity for PSCI, a hart id for SBI HSM); `None` if it names no vCPU of a
    /// VM with `count` vCPUs. Guest-controlled: any value must be accepted.
    fn vcpu_index(target: u64, count: usize) -> Option<usize>;

    /// Sets the argument a vCPU started by another one receives (PSCI CPU_ON's context id in
    /// x0; SBI HSM's opaque value in a1, with the hart id in a0). Called after set-up.
    fn set_start_arg(&mut self, arg: u64);

    /// Completes a CPU power call ([`VmExit::CpuUp`], [`VmExit::CpuStatus`]) with the
    /// architecture's encoding of `reply`.
    fn complete_power(&mut self, reply: PowerReply);

    /// Whether the guest has an interrupt it can take now (a halted vCPU should run). Only
    /// called between [`ArchVCpu::put`] and the next [`ArchVCpu::run`].
    fn wakeup_pending(&self) -> bool {
        false
    }

    /// When the guest's own timer fires, as a value of the host's system counter (CNTPCT_EL0,
    /// the RISC-V `time` CSR: the counter `axhal`'s clock runs on), if it is armed. Only
    /// called after `put`.
    fn timer_deadline(&self) -> Option<u64> {
        None
    }
}

/// The power state of a vCPU as a guest's CPU power calls report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Running (PSCI ON, HSM STARTED).
    On,
    /// Off (PSCI OFF, HSM STOPPED).
    Off,
    /// Being started (PSCI ON_PENDING, HSM START_PENDING).
    Pending,
}

/// The answer to a guest's CPU power call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerReply {
    /// Done (PSCI SUCCESS, SBI_SUCCESS).
    Done,
    /// The target is already on (PSCI ALREADY_ON, SBI_ERR_ALREADY_AVAILABLE).
    AlreadyOn,
    /// The target is being started by an earlier call and has not run yet (PSCI
    /// ON_PENDING; SBI has no code of its own: SBI_ERR_ALREADY_AVAILABLE).
    OnPending,
    /// The target names no vCPU of this VM (PSCI INVALID_PARAMETERS, SBI_ERR_INVALID_PARAM).
    InvalidTarget,
    /// The entry address is not usable (PSCI INVALID_ADDRESS, SBI_ERR_INVALID_ADDRESS).
    InvalidAddress,
    /// The target's state (PSCI AFFINITY_INFO, HSM hart_get_status).
    Status(PowerState),
}

/// Where a vCPU is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VCpuState {
    /// Created, not yet set up.
    Created,
    /// Set up; may run.
    Ready,
    /// In [`VCpu::run`].
    Running,
    /// Waiting (halted guest, or a secondary vCPU not yet started).
    Blocked,
    /// Stopped for good (VM off, CPU_OFF).
    Stopped,
}

/// Errors from the vCPU layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VCpuError {
    /// An operation was asked in a state that does not allow it.
    BadState {
        /// The state the vCPU was in.
        state: VCpuState,
        /// What was asked.
        op: &'static str,
    },
    /// The hardware refused (VM entry failure and the like), with a code.
    Hardware(u64),
    /// The architecture cannot do what was asked on this CPU.
    Unsupported(&'static str),
}

impl fmt::Display for VCpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VCpuError::BadState { state, op } => write!(f, "cannot {op} a vCPU that is {state:?}"),
            VCpuError::Hardware(c) => write!(f, "hardware refused the vCPU (code {c:#x})"),
            VCpuError::Unsupported(w) => write!(f, "unsupported: {w}"),
        }
    }
}

/// A vCPU: an [`ArchVCpu`] plus its state.
pub struct VCpu<A: ArchVCpu> {
    id: usize,
    state: VCpuState,
    arch: A,
}

impl<A: ArchVCpu> VCpu<A> {
    /// Creates vCPU `id`.
    pub fn new(id: usize, config: A::CreateConfig) -> Result<Self, VCpuError> {
        Ok(Self {
            id,
            state: VCpuState::Created,
            arch: A::new(id, config)?,
        })
    }

    /// The vCPU's id within its VM.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Current state.
    pub fn state(&self) -> VCpuState {
        self.state
    }

    fn expect(&self, ok: &[VCpuState], op: &'static str) -> Result<(), VCpuError> {
        if ok.contains(&self.state) {
            Ok(())
        } else {
            Err(VCpuError::BadState {
                state: self.state,
                op,
            })
        }
    }

    /// Sets entry, nested page-table root and set-up: Created → Ready (also from Blocked or
    /// Stopped, to (re)start a vCPU at a new entry: CPU_ON, VM reset).
    pub fn setup(&mut self, entry: GuestPhysAddr, root: HostPhysAddr) -> Result<(), VCpuError> {
        self.expect(
            &[VCpuState::Created, VCpuState::Blocked, VCpuState::Stopped],
            "set up",
        )?;
        self.arch.set_entry(entry);
        self.arch.set_stage2_root(root);
        self.arch.setup()?;
        self.state = VCpuState::Ready;
        Ok(())
    }

    /// Runs the guest until its next exit: Ready → Running → Ready.
    #[inline]
    pub fn run(&mut self) -> Result<VmExit, VCpuError> {
        self.run_with(|_, exit| ControlFlow::Break(exit))
    }

    /// Runs the guest, handing each exit to `handle` until it breaks
    /// ([`ArchVCpu::run_with`]): Ready → Running for the whole run → Ready.
    #[inline]
    pub fn run_with<R>(
        &mut self,
        handle: impl FnMut(&mut A, VmExit) -> ControlFlow<R>,
    ) -> Result<R, VCpuError> {
        if self.state != VCpuState::Ready {
            return Err(VCpuError::BadState {
                state: self.state,
                op: "run",
            });
        }
        self.state = VCpuState::Running;
        let r = self.arch.run_with(handle);
        self.state = VCpuState::Ready;
        r
    }

    /// Saves guest state left loaded by [`VCpu::run`]; call before the physical CPU may run
    /// anything else (another vCPU, a task switch).
    pub fn put(&mut self) {
        self.arch.put();
    }

    /// Ready → Blocked (guest halted).
    pub fn block(&mut self) -> Result<(), VCpuError> {
        self.expect(&[VCpuState::Ready], "block")?;
        self.state = VCpuState::Blocked;
        Ok(())
    }

    /// Blocked → Ready (an interrupt for a halted guest).
    pub fn unblock(&mut self) -> Result<(), VCpuError> {
        self.expect(&[VCpuState::Blocked], "unblock")?;
        self.state = VCpuState::Ready;
        Ok(())
    }

    /// Any state but Running → Stopped.
    pub fn stop(&mut self) -> Result<(), VCpuError> {
        if self.state == VCpuState::Running {
            return Err(VCpuError::BadState {
                state: self.state,
                op: "stop",
            });
        }
        self.state = VCpuState::Stopped;
        Ok(())
    }

    /// The architecture part, for exit completion (registers, return values, faults).
    pub fn arch_mut(&mut self) -> &mut A {
        &mut self.arch
    }

    /// The architecture part, read-only.
    pub fn arch(&self) -> &A {
        &self.arch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// Replays scripted exits.
    struct FakeArch {
        script: Vec<VmExit>,
        entry: usize,
        root: usize,
        setups: usize,
    }

    impl ArchVCpu for FakeArch {
        type CreateConfig = Vec<VmExit>;
        fn new(_: usize, script: Vec<VmExit>) -> Result<Self, VCpuError> {
            Ok(Self {
                script,
                entry: 0,
                root: 0,
                setups: 0,
            })
        }
        fn set_entry(&mut self, entry: GuestPhysAddr) {
            self.entry = entry.as_usize();
        }
        fn set_stage2_root(&mut self, root: HostPhysAddr) {
            self.root = root.as_usize();
        }
        fn set_gpr(&mut self, _: usize, _: u64) {}
        fn setup(&mut self) -> Result<(), VCpuError> {
            self.setups += 1;
            Ok(())
        }
        fn run_with<R>(
            &mut self,
            mut handle: impl FnMut(&mut Self, VmExit) -> ControlFlow<R>,
        ) -> Result<R, VCpuError> {
            loop {
                if self.script.is_empty() {
                    return Err(VCpuError::Hardware(1));
                }
                let exit = self.script.remove(0);
                if let ControlFlow::Break(r) = handle(self, exit) {
                    return Ok(r);
                }
            }
        }
        fn complete_mmio_read(&mut self, _: u64) {}
        fn hypercall_args(&self) -> [u64; 6] {
            [0; 6]
        }
        fn set_return_value(&mut self, _: u64) {}
        fn inject_data_fault(&mut self, _: GuestPhysAddr) {}
        fn vcpu_index(target: u64, count: usize) -> Option<usize> {
            (target < count as u64).then_some(target as usize)
        }
        fn set_start_arg(&mut self, _: u64) {}
        fn complete_power(&mut self, _: PowerReply) {}
    }

    fn gpa(v: usize) -> GuestPhysAddr {
        GuestPhysAddr::new(v)
    }

    #[test]
    fn run_with_hands_every_exit_until_the_handler_breaks() {
        let script = std::vec![VmExit::ExternalInterrupt, VmExit::Halt, VmExit::SystemOff];
        let mut v: VCpu<FakeArch> = VCpu::new(0, script).unwrap();
        v.setup(gpa(0x4008_0000), HostPhysAddr::new(0x9000_0000))
            .unwrap();
        let mut seen = Vec::new();
        let r = v.run_with(|_, exit| {
            seen.push(exit);
            if exit == VmExit::Halt {
                ControlFlow::Break(seen.len())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(r, Ok(2));
        assert_eq!(seen, [VmExit::ExternalInterrupt, VmExit::Halt]);
        assert_eq!(v.state(), VCpuState::Ready);
        // The next run starts at the next exit; a failing one leaves the vCPU Ready.
        assert_eq!(v.run(), Ok(VmExit::SystemOff));
        assert_eq!(
            v.run_with(|_, _| ControlFlow::<()>::Continue(())),
            Err(VCpuError::Hardware(1))
        );
        assert_eq!(v.state(), VCpuState::Ready);
    }

    #[test]
    fn lifecycle() {
        let mut v: VCpu<FakeArch> =
            VCpu::new(3, std::vec![VmExit::Halt, VmExit::SystemOff]).unwrap();
        assert_eq!((v.id(), v.state()), (3, VCpuState::Created));
        assert!(matches!(
            v.run(),
            Err(VCpuError::BadState {
                state: VCpuState::Created,
                op: "run"
            })
        ));
        v.setup(gpa(0x4008_0000), HostPhysAddr::new(0x9000_0000))
            .unwrap();
        assert_eq!(
            (v.arch_mut().entry, v.arch_mut().root),
            (0x4008_0000, 0x9000_0000)
        );
        assert_eq!(v.run(), Ok(VmExit::Halt));
        assert_eq!(v.state(), VCpuState::Ready);
        v.block().unwrap();
        assert!(v.run().is_err());
        assert!(v.block().is_err());
        v.unblock().unwrap();
        assert_eq!(v.run(), Ok(VmExit::SystemOff));
        v.stop().unwrap();
        assert!(v.run().is_err());
        assert!(v.unblock().is_err());
        // A stopped vCPU can be set up again (reset, CPU_ON).
        v.setup(gpa(0x4000_0000), HostPhysAddr::new(0x9000_0000))
            .unwrap();
        assert_eq!(v.arch_mut().setups, 2);
        // A failing run leaves the vCPU Ready, not Running.
        assert_eq!(v.run(), Err(VCpuError::Hardware(1)));
        assert_eq!(v.state(), VCpuState::Ready);
    }

    #[test]
    fn errors_display() {
        let e = VCpuError::BadState {
            state: VCpuState::Stopped,
            op: "run",
        };
        assert_eq!(std::format!("{e}"), "cannot run a vCPU that is Stopped");
    }
}
