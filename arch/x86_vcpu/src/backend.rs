//! The x86 vCPU with its backend chosen at run time from CPUID (x86_64 bare metal only):
//! VMX where the CPU has it, else SVM. [`X86VCpu`] is one of the two backends' vCPUs and
//! [`X86Stage2`] the nested page-table format of that backend (EPT or NPT); both are
//! fixed once per boot, before the first VM.

use crate::ioperm::IoPorts;
use crate::pc::VirtualPc;
use crate::svm::hw as svm;
use crate::{SvmVCpu, VmxVCpu};
use alloc::boxed::Box;
use alloc::sync::Arc;
use axaddrspace::{AmdNpt, GuestPhysAddr, HostPhysAddr, IntelEpt, MappingFlags, PteFormat};
use axvcpu::{ArchVCpu, PowerReply, VCpuError, VmExit};
use core::ops::ControlFlow;

/// The hardware virtualization a boot uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Intel VT-x with EPT.
    Vmx,
    /// AMD-V (SVM) with nested paging.
    Svm,
}

static BACKEND: spin::Once<Backend> = spin::Once::new();

/// This machine's backend: VMX when CPUID has it, else SVM when CPUID has that (a CPU
/// with neither never gets here: axhal refuses it at boot). The same on every CPU.
pub fn backend() -> Backend {
    *BACKEND.call_once(|| {
        let f = axhal::x86::Features::read();
        if !f.vmx && f.svm {
            Backend::Svm
        } else {
            Backend::Vmx
        }
    })
}

/// The nested page-table format of [`backend`]: [`IntelEpt`] or [`AmdNpt`]. Both have
/// the same geometry (4 levels, 48-bit GPA, 52-bit output, device memory encoded).
#[derive(Debug, Clone, Copy)]
pub struct X86Stage2;

macro_rules! by_backend {
    ($f:ident($($a:expr),*)) => {
        match backend() {
            Backend::Vmx => IntelEpt::$f($($a),*),
            Backend::Svm => AmdNpt::$f($($a),*),
        }
    };
}

impl PteFormat for X86Stage2 {
    // EPT's geometry, which NPT shares (checked below).
    const NAME: &'static str = "x86-nested";
    const LEVELS: usize = IntelEpt::LEVELS;
    const ROOT_ENTRIES: usize = IntelEpt::ROOT_ENTRIES;
    const ROOT_FRAMES: usize = IntelEpt::ROOT_FRAMES;
    const GPA_BITS: u32 = IntelEpt::GPA_BITS;
    const PA_BITS: u32 = IntelEpt::PA_BITS;
    const ENCODES_DEVICE: bool = IntelEpt::ENCODES_DEVICE && AmdNpt::ENCODES_DEVICE;

    fn leaf_allowed(depth: usize) -> bool {
        by_backend!(leaf_allowed(depth))
    }
    fn is_valid(pte: u64, depth: usize) -> bool {
        by_backend!(is_valid(pte, depth))
    }
    fn is_table(pte: u64, depth: usize) -> bool {
        by_backend!(is_table(pte, depth))
    }
    fn table(pa: HostPhysAddr, depth: usize) -> u64 {
        by_backend!(table(pa, depth))
    }
    fn leaf(pa: HostPhysAddr, flags: MappingFlags, depth: usize) -> u64 {
        by_backend!(leaf(pa, flags, depth))
    }
    fn addr(pte: u64) -> HostPhysAddr {
        by_backend!(addr(pte))
    }
    fn flags(pte: u64, depth: usize) -> MappingFlags {
        by_backend!(flags(pte, depth))
    }
    fn encodable(flags: MappingFlags) -> bool {
        by_backend!(encodable(flags))
    }
}

const _: () = assert!(
    AmdNpt::LEVELS == IntelEpt::LEVELS
        && AmdNpt::ROOT_ENTRIES == IntelEpt::ROOT_ENTRIES
        && AmdNpt::ROOT_FRAMES == IntelEpt::ROOT_FRAMES
        && AmdNpt::GPA_BITS == IntelEpt::GPA_BITS
        && AmdNpt::PA_BITS == IntelEpt::PA_BITS
);

/// How to create an x86 vCPU (either backend).
#[derive(Clone, Debug)]
pub struct X86VCpuConfig {
    /// The VM's identifier (non-zero): VPID under VMX, ASID under SVM.
    pub vmid: u16,
    /// The VM's virtual PC (local APICs, I/O APIC, legacy timers), if the VM has one
    /// (docs/x86-interrupts.md); without it the vCPU has no interrupt controller.
    pub pc: Option<Arc<VirtualPc>>,
    /// The I/O ports the VM's guest reaches without an exit (its passthrough ports).
    pub io_ports: Arc<IoPorts>,
}

/// An x86 vCPU of either backend.
pub enum X86VCpu {
    /// Under VMX.
    Vmx(Box<VmxVCpu>),
    /// Under SVM.
    Svm(Box<SvmVCpu>),
}

macro_rules! each {
    ($s:expr, $v:ident => $e:expr) => {
        match $s {
            X86VCpu::Vmx($v) => $e,
            X86VCpu::Svm($v) => $e,
        }
    };
}

impl ArchVCpu for X86VCpu {
    type CreateConfig = X86VCpuConfig;

    fn new(vcpu_id: usize, config: X86VCpuConfig) -> Result<Self, VCpuError> {
        Ok(match backend() {
            Backend::Vmx => Self::Vmx(Box::new(VmxVCpu::new(vcpu_id, config)?)),
            Backend::Svm => Self::Svm(Box::new(SvmVCpu::new(vcpu_id, config)?)),
        })
    }
    fn set_entry(&mut self, entry: GuestPhysAddr) {
        each!(self, v => v.set_entry(entry))
    }
    fn set_stage2_root(&mut self, root: HostPhysAddr) {
        each!(self, v => v.set_stage2_root(root))
    }
    fn set_gpr(&mut self, idx: usize, value: u64) {
        each!(self, v => v.set_gpr(idx, value))
    }
    fn setup(&mut self) -> Result<(), VCpuError> {
        each!(self, v => v.setup())
    }
    fn run_with<R>(
        &mut self,
        mut handle: impl FnMut(&mut Self, VmExit) -> ControlFlow<R>,
    ) -> Result<R, VCpuError> {
        each!(self, v => v.begin_run())?;
        // One call site for the handler, so that it is inlined once (the backends' entry
        // loops are inlined into the two arms).
        loop {
            let exit = each!(self, v => v.run_until_exit())?;
            let interrupt = exit == VmExit::ExternalInterrupt;
            if let ControlFlow::Break(r) = handle(self, exit) {
                return Ok(r);
            }
            if interrupt {
                // VMX's preemption timer is re-armed once the host has taken the interrupt.
                if let Self::Vmx(v) = self {
                    v.arm_preemption_timer();
                }
            }
        }
    }
    // Inlined into the VM's handler (itself inlined into `run_with`): the call, its
    // prologue and the backend's `match` had cost every MMIO read about 10 instructions.
    #[inline(always)]
    fn complete_mmio_read(&mut self, value: u64) {
        each!(self, v => v.complete_mmio_read(value))
    }
    fn complete_port_read(&mut self, value: u64) {
        each!(self, v => v.complete_port_read(value))
    }
    fn hypercall_args(&self) -> [u64; 6] {
        each!(self, v => v.hypercall_args())
    }
    fn set_return_value(&mut self, value: u64) {
        each!(self, v => v.set_return_value(value))
    }
    fn inject_data_fault(&mut self, gpa: GuestPhysAddr) {
        each!(self, v => v.inject_data_fault(gpa))
    }
    fn set_vm_id(&mut self, vm_id: u64) {
        each!(self, v => v.set_vm_id(vm_id))
    }
    fn put(&mut self) {
        each!(self, v => v.put())
    }
    fn vcpu_index(target: u64, count: usize) -> Option<usize> {
        VmxVCpu::vcpu_index(target, count)
    }
    fn set_start_arg(&mut self, arg: u64) {
        each!(self, v => v.set_start_arg(arg))
    }
    fn complete_power(&mut self, reply: PowerReply) {
        each!(self, v => v.complete_power(reply))
    }
    fn wakeup_pending(&self) -> bool {
        each!(self, v => v.wakeup_pending())
    }
    fn timer_deadline(&self) -> Option<u64> {
        each!(self, v => v.timer_deadline())
    }
}

/// VM identifier bits under [`backend`]: 16 (VPIDs) under VMX; under SVM the largest
/// width whose identifiers 1..2^n - 1 are all ASIDs the CPU has (4 for QEMU's 16).
pub fn vmid_bits() -> u32 {
    match backend() {
        Backend::Vmx => 16,
        Backend::Svm => svm::caps().asids.max(2).ilog2().min(16),
    }
}
