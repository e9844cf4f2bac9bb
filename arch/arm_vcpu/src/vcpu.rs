//! The vCPU proper: guest registers, EL1 system registers, stage-2, and the run loop.

use crate::debug_regs::DebugRegs;
use crate::decode::{
    decode_sync, hvc_hypercall, injected_abort_esr, mpidr_to_index, psci_power_reply, DataAbort,
    SyncAction,
};
use crate::exception::{self, EntryFeatures, SPSR_EL1H_MASKED};
use crate::icc::{self, IccReg};
use crate::passthrough::PassthroughLines;
use crate::sysreg::{
    sanitize_id, undefined_esr, SysReg, SysRegAccess, ID_AA64DFR0_EL1, ID_AA64MMFR1_EL1,
    ID_AA64PFR0_EL1, ID_AA64PFR1_EL1,
};
use crate::vgic_hw::HwListRegs;
use alloc::sync::Arc;
use arm_vgic::{ListReg, ListRegs, Vgic};
use axaddrspace::{Aarch64Stage2, GuestPhysAddr, HostPhysAddr};
use axhal::guest::{self, GuestExit, GuestRegs};
use axhal::vgic::{self as hw_vgic, VgicCpuState};
use axvcpu::{hypercall, ArchVCpu, PowerReply, VCpuError, VmExit};
use core::ops::ControlFlow;

/// SCTLR_EL1 at reset: RES1 bits set, MMU and caches off.
const SCTLR_EL1_RESET: u64 = 0x30c5_0830;

/// HCR_EL2 while a guest runs: stage-2 on (VM), set/way ops as clean+invalidate (SWIO),
/// physical FIQ/IRQ/SError to EL2 (FMO/IMO/AMO), trap WFI (TWI), feature ID register reads
/// (TID3, see [`crate::sysreg`]) and SMC (TSC), EL1 AArch64 (RW).
const HCR_GUEST: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 13)
    | (1 << 18)
    | (1 << 19)
    | (1 << 31);

/// Reads feature ID register `S3_0_C0_C<crm>_<op2>` (CRm 1..=7) from the hardware; 0 for
/// any other encoding.
fn read_id_register(reg: SysReg) -> u64 {
    macro_rules! id_regs {
        ($($crm:literal: $($op2:literal)*;)*) => {
            match (reg.crm, reg.op2) {
                $($(($crm, $op2) => {
                    let v: u64;
                    // SAFETY: reads a feature ID register (op0 3, op1 0, CRn 0, CRm 1..=7): the
                    // ID space, where unallocated encodings read as zero. No side effects.
                    unsafe {
                        core::arch::asm!(
                            concat!("mrs {}, S3_0_C0_C", stringify!($crm), "_", stringify!($op2)),
                            out(reg) v, options(nomem, nostack)
                        )
                    };
                    v
                })*)*
                _ => 0,
            }
        };
    }
    if !reg.is_id_space() {
        return 0;
    }
    id_regs! {
        1: 0 1 2 3 4 5 6 7;
        2: 0 1 2 3 4 5 6 7;
        3: 0 1 2 3 4 5 6 7;
        4: 0 1 2 3 4 5 6 7;
        5: 0 1 2 3 4 5 6 7;
        6: 0 1 2 3 4 5 6 7;
        7: 0 1 2 3 4 5 6 7;
    }
}

/// MDCR_EL2.HPMN: how many PMU counters EL1 and EL0 may use (kept as the firmware set it).
const MDCR_EL2_HPMN: u64 = 0x1f;
/// MDCR_EL2.TPM: EL1 and EL0 accesses to the PMU registers trap to EL2.
const MDCR_EL2_TPM: u64 = 1 << 6;
/// MDCR_EL2.TPMCR: EL1 and EL0 accesses to PMCR_EL0 trap to EL2.
const MDCR_EL2_TPMCR: u64 = 1 << 5;

/// CPTR_EL2 with its RES1 bits (13:12, 9:0) and no traps: FP/SIMD (TFP, bit 10) stays
/// usable by the guest and by the vCPU's own save/restore at EL2. On a CPU with SVE or SME,
/// bits 8 and 12 are TZ and TSM: their instructions trap (EC 0x19, 0x1D), and the guest,
/// whose ID registers hide both, gets an Undefined Instruction.
const CPTR_EL2_NO_TRAPS: u64 = 0x33ff;

// Every guest's virtual counter is the physical counter: CNTVOFF_EL2 is 0. A per-VM offset
// (a counter starting near 0 when the VM is created) would be nicer, but QEMU (7.2 at
// least) computes the virtual timer's next expiry as CNTV_CVAL_EL0 + CNTVOFF_EL2 without
// checking for overflow: a guest that enables its timer with a compare value near 2^64
// makes the sum wrap into the past, and QEMU re-arms the timer in an endless loop that
// stops the whole emulated machine, every VM with it. The guest writes CNTV_CVAL_EL0
// without a trap, so the offset is the only input the hypervisor controls. See
// docs/reliability.md.

/// VTCR_EL2.VS: the VMID in VTTBR_EL2 is 16 bits wide (bits 63:48) instead of 8.
const VTCR_VS: u64 = 1 << 19;

/// Whether the CPU has 16-bit VMIDs (set by [`vmid_bits`]; VTCR_EL2.VS is then set).
static VMID_16: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Width of the CPU's hardware VMID: 16 bits when ID_AA64MMFR1_EL1.VMIDBits is 0b0010,
/// else 8. From the first call on, every vCPU runs its guest with VTCR_EL2.VS set to match,
/// so call it before creating vCPUs; a vCPU refuses a VMID wider than this.
pub fn vmid_bits() -> u32 {
    let wide = (read_id_register(ID_AA64MMFR1_EL1) >> 4) & 0xf == 0b0010;
    VMID_16.store(wide, core::sync::atomic::Ordering::Relaxed);
    if wide {
        16
    } else {
        8
    }
}

/// VTCR_EL2.VS as [`vmid_bits`] found it.
fn vtcr_vs() -> u64 {
    if VMID_16.load(core::sync::atomic::Ordering::Relaxed) {
        VTCR_VS
    } else {
        0
    }
}

/// How to create an aarch64 vCPU.
#[derive(Clone)]
pub struct ArmVCpuConfig {
    /// The vCPU's MPIDR affinity as the guest sees it.
    pub mpidr: u64,
    /// Hardware VMID of its VM (the tag of its stage-2 TLB entries), given by the
    /// hypervisor's allocator; at most [`vmid_bits`] wide.
    pub vmid: u16,
    /// The VM's virtual GIC, if it has one: the vCPU injects its interrupts (list registers)
    /// and its virtual timer's, and forwards trapped ICC_SGI1R_EL1 writes.
    pub vgic: Option<Arc<Vgic>>,
    /// The VM's passthrough device interrupts (empty when it has none).
    pub passthrough: Arc<PassthroughLines>,
}

/// CNTV_CTL_EL0 bits: ENABLE, IMASK, ISTATUS.
const CNTV_ENABLE: u64 = 1 << 0;
const CNTV_IMASK: u64 = 1 << 1;
const CNTV_ISTATUS: u64 = 1 << 2;

macro_rules! el1_regs {
    ($($name:ident),* $(,)?) => {
        /// EL1 system registers that belong to the guest.
        #[derive(Clone, Debug, Default)]
        #[allow(non_snake_case)]
        struct El1Regs { $($name: u64),* }

        impl El1Regs {
            fn save(&mut self) {
                // SAFETY: reads EL1 system registers from EL2; no memory is touched.
                $(unsafe { core::arch::asm!(concat!("mrs {}, ", stringify!($name)), out(reg) self.$name) };)*
            }
            fn restore(&self) {
                // SAFETY: writes EL1 system registers from EL2. They only affect EL1/EL0,
                // which only the guest uses while they hold these values.
                $(unsafe { core::arch::asm!(concat!("msr ", stringify!($name), ", {}"), in(reg) self.$name) };)*
            }
        }
    };
}

el1_regs!(
    sctlr_el1,
    ttbr0_el1,
    ttbr1_el1,
    tcr_el1,
    mair_el1,
    amair_el1,
    vbar_el1,
    contextidr_el1,
    tpidr_el0,
    tpidr_el1,
    tpidrro_el0,
    sp_el0,
    sp_el1,
    elr_el1,
    spsr_el1,
    esr_el1,
    far_el1,
    afsr0_el1,
    afsr1_el1,
    par_el1,
    cpacr_el1,
    cntkctl_el1,
    csselr_el1,
    cntv_ctl_el0,
    cntv_cval_el0,
    // Not trapped, so the CPU's own: without these a guest's debug controls (software
    // step, breakpoint and watchpoint enables) and EL1 physical timer would stay in force
    // for the next VM run on the same CPU. The breakpoint and watchpoint registers are
    // switched beside these ([`DebugRegs`]).
    mdscr_el1,
    cntp_ctl_el0,
    cntp_cval_el0,
);

/// The guest's FP/SIMD registers: q0-q31, FPCR, FPSR.
#[repr(C, align(16))]
#[derive(Clone, Debug, Default)]
struct FpRegs {
    q: [u128; 32],
    fpcr: u64,
    fpsr: u64,
}

macro_rules! fp_asm {
    ($pair:literal, $sys:literal) => {
        concat!(
            ".arch_extension fp\n.arch_extension simd\n",
            $pair,
            " q0, q1, [{p}, #0]\n",
            $pair,
            " q2, q3, [{p}, #32]\n",
            $pair,
            " q4, q5, [{p}, #64]\n",
            $pair,
            " q6, q7, [{p}, #96]\n",
            $pair,
            " q8, q9, [{p}, #128]\n",
            $pair,
            " q10, q11, [{p}, #160]\n",
            $pair,
            " q12, q13, [{p}, #192]\n",
            $pair,
            " q14, q15, [{p}, #224]\n",
            $pair,
            " q16, q17, [{p}, #256]\n",
            $pair,
            " q18, q19, [{p}, #288]\n",
            $pair,
            " q20, q21, [{p}, #320]\n",
            $pair,
            " q22, q23, [{p}, #352]\n",
            $pair,
            " q24, q25, [{p}, #384]\n",
            $pair,
            " q26, q27, [{p}, #416]\n",
            $pair,
            " q28, q29, [{p}, #448]\n",
            $pair,
            " q30, q31, [{p}, #480]\n",
            $sys
        )
    };
}

impl FpRegs {
    fn save(&mut self) {
        // SAFETY: stores the FP/SIMD registers into `self` (512 + 16 bytes, 16-aligned). The
        // hypervisor is built soft-float, so these registers hold only guest state.
        unsafe {
            core::arch::asm!(
                fp_asm!("stp", "mrs {t}, fpcr\nstr {t}, [{p}, #512]\nmrs {t}, fpsr\nstr {t}, [{p}, #520]"),
                p = in(reg) self as *mut Self,
                t = out(reg) _,
            )
        }
    }

    fn restore(&self) {
        // SAFETY: loads the FP/SIMD registers from `self`; see `save`.
        unsafe {
            core::arch::asm!(
                fp_asm!("ldp", "ldr {t}, [{p}, #512]\nmsr fpcr, {t}\nldr {t}, [{p}, #520]\nmsr fpsr, {t}"),
                p = in(reg) self as *const Self,
                t = out(reg) _,
            )
        }
    }
}

/// An aarch64 vCPU.
pub struct ArmVCpu {
    regs: GuestRegs,
    el1: El1Regs,
    fp: FpRegs,
    /// The guest's breakpoint and watchpoint registers.
    debug: DebugRegs,
    vttbr: u64,
    vmid: u16,
    vmpidr: u64,
    /// The data abort being completed by `complete_mmio_read`.
    pending_load: Option<DataAbort>,
    /// The virtual timer level last given to the vGIC; `None` (since `setup`) sends the
    /// next one. Only this vCPU drives that line, so an entry whose level did not change
    /// (most of them) skips the vGIC's lock.
    timer_level: Option<bool>,
    /// Syndrome, FAR and PC of the last exit, for fault injection.
    last_esr: u64,
    last_far: u64,
    last_pc: u64,
    /// The guest's PSTATE at the last exit (before any PC step advanced ITSTATE).
    last_spsr: u64,
    /// The CPU's features that change how an injected exception enters the guest's EL1.
    entry_features: EntryFeatures,
    /// The guest's EL1 and EL2 control state is live in this CPU's registers (between
    /// `run` and `put`).
    loaded: bool,
    /// The vCPU's index in its VM.
    index: usize,
    /// The VM's virtual GIC and this CPU's list registers.
    vgic: Option<(Arc<Vgic>, HwListRegs)>,
    /// The virtual interface state while the vCPU is not loaded.
    vgic_state: VgicCpuState,
    /// The VM's passthrough interrupts.
    passthrough: Arc<PassthroughLines>,
    /// The VM's id once `set_vm_id` told it: hypercalls with a fixed answer are then
    /// answered inside `run`.
    vm_id: Option<u64>,
}

impl ArmVCpu {
    fn load_el2_state(&self) {
        let vtcr = Aarch64Stage2::vtcr_el2() | vtcr_vs();
        // SAFETY: EL2 controls for the guest about to run: trap configuration, stage-2 root
        // and format, the guest's MPIDR, and EL1 access to the physical counter and timer
        // (CNTHCTL_EL2.EL1PCTEN/EL1PCEN), a zero virtual-counter offset (CNTVOFF_EL2, see
        // the note above `ArmVCpuConfig`), FP/SIMD untrapped (CPTR_EL2). None affects the
        // hypervisor's own EL2 execution.
        unsafe {
            core::arch::asm!(
                "msr hcr_el2, {hcr}",
                "msr vtcr_el2, {vtcr}",
                "msr vttbr_el2, {vttbr}",
                "msr vmpidr_el2, {vmpidr}",
                "msr cnthctl_el2, {cnthctl}",
                "msr cntvoff_el2, xzr",
                "msr cptr_el2, {cptr}",
                "isb",
                hcr = in(reg) HCR_GUEST,
                vtcr = in(reg) vtcr,
                vttbr = in(reg) self.vttbr,
                vmpidr = in(reg) self.vmpidr,
                cnthctl = in(reg) 3u64,
                cptr = in(reg) CPTR_EL2_NO_TRAPS,
            )
        };
        // SAFETY: MDCR_EL2 with the PMU trapped (TPM, TPMCR) and HPMN (bits 4:0, the
        // counters EL1 may use) kept as the firmware set it: the PMU, which
        // ID_AA64DFR0_EL1.PMUVer hides, is UNDEFINED for the guest instead of being the
        // host's. PMUSERENR_EL0 = 0 sends EL0's accesses to the guest's EL1 before they could
        // trap here. Both affect only EL1 and EL0.
        unsafe {
            core::arch::asm!(
                "msr pmuserenr_el0, xzr",
                "mrs {t}, mdcr_el2",
                "and {t}, {t}, #{hpmn}",
                "orr {t}, {t}, #{traps}",
                "msr mdcr_el2, {t}",
                "isb",
                t = out(reg) _,
                hpmn = const MDCR_EL2_HPMN,
                traps = const MDCR_EL2_TPM | MDCR_EL2_TPMCR,
                options(nomem, nostack),
            )
        };
    }
}

impl ArchVCpu for ArmVCpu {
    type CreateConfig = ArmVCpuConfig;

    fn new(vcpu_id: usize, config: ArmVCpuConfig) -> Result<Self, VCpuError> {
        if u32::from(config.vmid) >> vmid_bits() != 0 {
            return Err(VCpuError::Unsupported("VMID wider than the CPU has"));
        }
        let vgic = match config.vgic {
            Some(v) => Some((
                v,
                HwListRegs::this_cpu().ok_or(VCpuError::Unsupported(
                    "the host GIC has no virtualization interface",
                ))?,
            )),
            None => None,
        };
        Ok(Self {
            index: vcpu_id,
            vgic,
            vgic_state: VgicCpuState::default(),
            passthrough: config.passthrough,
            regs: GuestRegs::default(),
            el1: El1Regs::default(),
            fp: FpRegs::default(),
            debug: DebugRegs::new(read_id_register(ID_AA64DFR0_EL1)),
            vttbr: 0,
            vmid: config.vmid,
            vmpidr: (1 << 31) | (config.mpidr & 0xff_00ff_ffff),
            pending_load: None,
            timer_level: None,
            last_esr: 0,
            last_far: 0,
            last_pc: 0,
            last_spsr: 0,
            entry_features: EntryFeatures::from_id_registers(
                read_id_register(ID_AA64PFR0_EL1),
                read_id_register(ID_AA64PFR1_EL1),
                read_id_register(ID_AA64MMFR1_EL1),
            ),
            loaded: false,
            vm_id: None,
        })
    }

    fn set_entry(&mut self, entry: GuestPhysAddr) {
        self.regs.elr = entry.as_usize() as u64;
    }

    fn set_stage2_root(&mut self, root: HostPhysAddr) {
        self.vttbr = ((self.vmid as u64) << 48) | root.as_usize() as u64;
    }

    fn set_gpr(&mut self, idx: usize, value: u64) {
        if let Some(r) = self.regs.x.get_mut(idx) {
            *r = value;
        }
    }

    fn setup(&mut self) -> Result<(), VCpuError> {
        let entry = self.regs.elr;
        self.regs = GuestRegs {
            elr: entry,
            spsr: SPSR_EL1H_MASKED,
            ..GuestRegs::default()
        };
        self.debug.reset();
        self.el1 = El1Regs {
            sctlr_el1: SCTLR_EL1_RESET,
            ..El1Regs::default()
        };
        self.pending_load = None;
        self.timer_level = None;
        self.loaded = false;
        // Nothing in flight: the list registers start empty (the vGIC treats interrupts it
        // had placed there as ended, and re-raises level ones still high).
        self.vgic_state = VgicCpuState::default();
        if self.vgic.as_ref().is_some_and(|(_, lrs)| lrs.v3()) {
            self.vgic_state.vmcr = icc::reset_vmcr();
        }
        self.load_el2_state();
        // SAFETY: drops this VMID's stale stage-1+2 TLB entries (VTTBR_EL2 was just set), so a
        // reset guest cannot see translations of its previous run.
        unsafe { core::arch::asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb") };
        Ok(())
    }

    fn run_with<R>(
        &mut self,
        mut handle: impl FnMut(&mut Self, VmExit) -> ControlFlow<R>,
    ) -> Result<R, VCpuError> {
        // Host interrupts are masked (the trait's contract): an IRQ routed to EL2 still ends
        // the guest's run, and then waits for the handler to unmask it.
        let result = loop {
            if !self.loaded {
                self.load_el2_state();
                self.el1.restore();
                self.fp.restore();
                self.debug.restore();
                if let Some((_, lrs)) = &mut self.vgic {
                    self.vgic_state.restore();
                    lrs.enable();
                }
                self.loaded = true;
            }
            self.inject_interrupts();
            let guest_exit = guest::run(&mut self.regs);
            if let Some((vgic, lrs)) = &mut self.vgic {
                vgic.sync(self.index, lrs);
                // No underflow interrupt while the hypervisor runs: it would fire at once.
                lrs.set_underflow_interrupt(false);
                if !self.passthrough.is_empty() {
                    // Passthrough lines the guest ended: let the device interrupt again.
                    let lines = &self.passthrough;
                    vgic.take_resampled(&mut |intid| {
                        if lines.owns(intid) {
                            hw_vgic::set_spi_enabled(intid, true);
                        }
                    });
                }
            }
            let exit = match guest_exit {
                GuestExit::Sync => {
                    let (esr, far, hpfar): (u64, u64, u64);
                    // SAFETY: reads the syndrome registers of the exception just taken.
                    unsafe {
                        core::arch::asm!("mrs {}, esr_el2", "mrs {}, far_el2", "mrs {}, hpfar_el2",
                            out(reg) esr, out(reg) far, out(reg) hpfar)
                    };
                    let hypercall = hvc_hypercall(esr, &self.regs.x);
                    if let Some(nr) = hypercall {
                        // Hypercalls with a fixed answer (VERSION, VM_ID) are answered here,
                        // like a PSCI reply (an HVC leaves ELR past the instruction).
                        if let Some(x0) = self.vm_id.and_then(|id| hypercall::fixed_answer(nr, id))
                        {
                            self.regs.x[0] = x0;
                            continue;
                        }
                    }
                    self.last_esr = esr;
                    self.last_far = far;
                    self.last_pc = self.regs.elr;
                    self.last_spsr = self.regs.spsr;
                    if let Some(nr) = hypercall {
                        // The arguments stay in x1-x6 (`ArchVCpu::hypercall_args`).
                        VmExit::Hypercall { nr }
                    } else {
                        match self.decode_exit(esr, far, hpfar) {
                            Some(exit) => exit,
                            None => continue,
                        }
                    }
                }
                // The interrupt stays pending and is taken by the hypervisor's own vector as
                // soon as the handler unmasks interrupts.
                GuestExit::Irq | GuestExit::Fiq => VmExit::ExternalInterrupt,
                GuestExit::SError => VmExit::Unsupported {
                    reason: "SError from the guest",
                    syndrome: 0,
                },
            };
            if let ControlFlow::Break(r) = handle(self, exit) {
                break r;
            }
        };
        Ok(result)
    }

    fn complete_mmio_read(&mut self, value: u64) {
        if let Some(da) = self.pending_load.take() {
            self.set_gpr(da.reg, da.load_value(value));
        }
    }

    fn set_vm_id(&mut self, vm_id: u64) {
        self.vm_id = Some(vm_id);
    }

    fn hypercall_args(&self) -> [u64; 6] {
        let x = &self.regs.x;
        [x[1], x[2], x[3], x[4], x[5], x[6]]
    }

    fn set_return_value(&mut self, value: u64) {
        self.regs.x[0] = value;
    }

    fn put(&mut self) {
        if self.loaded {
            self.el1.save();
            self.fp.save();
            self.debug.save();
            // SAFETY: the guest's virtual timer is saved above; disabling it keeps it from
            // interrupting whatever runs next on this CPU (it is restored with the rest).
            unsafe { core::arch::asm!("msr cntv_ctl_el0, xzr", "isb") };
            if self.vgic.is_some() {
                self.vgic_state.save();
                hw_vgic::set_hcr(0);
                hw_vgic::set_private_enabled(hw_vgic::vtimer_intid(), false);
            }
            self.loaded = false;
        }
    }

    fn wakeup_pending(&self) -> bool {
        let Some((vgic, lrs)) = &self.vgic else {
            return false;
        };
        let in_lrs = self.vgic_state.lrs[..lrs.count()].iter().any(|&raw| {
            let lr = if hw_vgic::host() == Some(hw_vgic::HostVgic::V3) {
                ListReg::from_gicv3(raw)
            } else {
                ListReg::from_gicv2(raw as u32)
            };
            lr.state.has_pending()
        });
        let timer_fired = self
            .timer_deadline()
            .is_some_and(|deadline| axhal::time::ticks() >= deadline);
        in_lrs || timer_fired || vgic.has_deliverable(self.index)
    }

    fn timer_deadline(&self) -> Option<u64> {
        let ctl = self.el1.cntv_ctl_el0;
        let armed = ctl & CNTV_ENABLE != 0 && ctl & CNTV_IMASK == 0 && self.vgic.is_some();
        // The virtual counter is the physical one (CNTVOFF_EL2 is 0).
        armed.then_some(self.el1.cntv_cval_el0)
    }

    fn inject_data_fault(&mut self, _gpa: GuestPhysAddr) {
        // The abort of the access that exited: an instruction abort for a fetch, and the
        // lower-EL class when the guest was at EL0 (AArch64 EL0t or AArch32), as the
        // hardware reports.
        let from_el0 = exception::from_el0(self.last_spsr);
        self.inject_sync(injected_abort_esr(self.last_esr, from_el0), self.last_far);
    }

    fn vcpu_index(target: u64, count: usize) -> Option<usize> {
        mpidr_to_index(target, count)
    }

    fn set_start_arg(&mut self, arg: u64) {
        // PSCI CPU_ON: the context id arrives in x0.
        self.regs.x[0] = arg;
    }

    fn complete_power(&mut self, reply: PowerReply) {
        self.regs.x[0] = psci_power_reply(reply);
    }
}

impl ArmVCpu {
    /// Emulates a trapped system-register access: a read of a feature ID register gets the
    /// hardware value with unvirtualised features hidden; the GICv3 CPU-interface registers
    /// ICH_HCR_EL2.TC traps are emulated ([`crate::icc`]), an SGI write going to the vGIC;
    /// anything else is UNDEFINED.
    fn emulate_sysreg(&mut self, access: SysRegAccess) {
        let reg = access.reg;
        if access.read && reg.is_id_space() {
            let value = sanitize_id(reg, read_id_register(reg));
            self.set_gpr(access.rt, value);
        } else if !self.emulate_icc(access) {
            self.inject_undefined();
            return;
        }
        self.step_pc(4);
    }

    /// Emulates a GICv3 CPU-interface register access trapped by ICH_HCR_EL2.TC (the live
    /// virtual interface is this vCPU's). False when `access` is not one of them, the VM has
    /// no vGIC or the host no GICv3, or the direction does not exist (UNDEFINED).
    fn emulate_icc(&mut self, access: SysRegAccess) -> bool {
        let Some((vgic, lrs)) = &self.vgic else {
            return false;
        };
        let Some(reg) = IccReg::from_sysreg(access.reg) else {
            return false;
        };
        let exists = if access.read {
            reg.readable()
        } else {
            reg.writable()
        };
        if !lrs.v3() || !exists {
            return false;
        }
        let value = crate::decode::gpr(&self.regs.x, access.rt);
        // The SGI registers come first and read nothing else: an IPI storm traps on them.
        let read = match (reg, access.read) {
            (IccReg::Sgi1r, _) => {
                vgic.write_sgi1r(self.index, value);
                None
            }
            // One interrupt group only: nothing to raise.
            (IccReg::OtherSgi, _) => None,
            (IccReg::Ctlr, true) => Some(icc::ctlr_read(hw_vgic::v3_vtr(), hw_vgic::v3_vmcr())),
            (IccReg::Ctlr, false) => {
                hw_vgic::v3_set_vmcr(icc::ctlr_write(hw_vgic::v3_vmcr(), value));
                None
            }
            (IccReg::Pmr, true) => Some(icc::pmr_read(hw_vgic::v3_vmcr())),
            (IccReg::Pmr, false) => {
                let vmcr = icc::pmr_write(hw_vgic::v3_vtr(), hw_vgic::v3_vmcr(), value);
                hw_vgic::v3_set_vmcr(vmcr);
                None
            }
            (IccReg::Rpr, _) => {
                let (ap0, ap1) = hw_vgic::v3_active_priorities();
                Some(icc::rpr(hw_vgic::v3_vtr(), ap0 | ap1))
            }
            (IccReg::Dir, _) => {
                if icc::eoi_mode(hw_vgic::v3_vmcr()) {
                    vgic.deactivate(self.index, (value & 0xff_ffff) as u32);
                }
                None
            }
        };
        if let Some(v) = read {
            self.set_gpr(access.rt, v);
        }
        true
    }

    /// Decodes a synchronous exit other than a hypercall: the exit for the VMM, or `None`
    /// when the vCPU handled it itself (a PSCI reply, a system register, an injected
    /// exception).
    #[inline(always)]
    fn decode_exit(&mut self, esr: u64, far: u64, hpfar: u64) -> Option<VmExit> {
        let spsr = self.regs.spsr;
        // One test keeps the AArch32 work off the AArch64 exit path.
        let esr = if exception::is_aarch32(spsr) {
            if !exception::condition_passed(esr, spsr) {
                // An A32/T32 instruction that failed its condition: it did nothing.
                self.step_pc(exception::insn_len(esr));
                return None;
            }
            exception::effective_syndrome(esr, spsr)
        } else {
            esr
        };
        match decode_sync(esr, far, hpfar, &self.regs.x) {
            SyncAction::Reply { x0, pc_step } => {
                self.regs.x[0] = x0;
                self.step_pc(pc_step);
                None
            }
            SyncAction::ReplyX0To3 { x, pc_step } => {
                self.regs.x[..4].copy_from_slice(&x);
                self.step_pc(pc_step);
                None
            }
            SyncAction::SysReg(access) => {
                self.emulate_sysreg(access);
                None
            }
            SyncAction::Undefined => {
                self.inject_undefined();
                None
            }
            SyncAction::Exit { exit, pc_step } => {
                self.step_pc(pc_step);
                if let VmExit::MmioRead {
                    reg,
                    width,
                    sign_ext,
                    ..
                } = exit
                {
                    self.pending_load = Some(DataAbort {
                        width,
                        sign_ext,
                        reg,
                        sixty_four: DataAbort::sixty_four(esr),
                        write: false,
                    });
                }
                Some(exit)
            }
        }
    }

    /// Before entering the guest: its virtual timer's level into the vGIC, and pending
    /// interrupts into free list registers. The timer's physical PPI stays masked while the
    /// guest has its interrupt in flight (the level is high) and is unmasked otherwise, so
    /// an expiry while the guest runs makes it exit.
    fn inject_interrupts(&mut self) {
        let Some((vgic, lrs)) = &mut self.vgic else {
            return;
        };
        let ctl: u64;
        // SAFETY: reads the guest's live virtual timer control (loaded with its EL1 state).
        unsafe { core::arch::asm!("mrs {}, cntv_ctl_el0", out(reg) ctl, options(nomem, nostack)) };
        let level = ctl & (CNTV_ENABLE | CNTV_IMASK | CNTV_ISTATUS) == CNTV_ENABLE | CNTV_ISTATUS;
        let intid = hw_vgic::vtimer_intid();
        if self.timer_level != Some(level) {
            vgic.set_private_level(self.index, intid, level);
            self.timer_level = Some(level);
        }
        hw_vgic::set_private_enabled(intid, !level);
        self.passthrough
            .drain(|intid| vgic.set_spi_level(intid, true));
        vgic.flush(self.index, lrs);
    }

    /// Moves the guest past the `len` bytes of the instruction the vCPU completed for it (in
    /// T32 also advancing ITSTATE); `len` 0 leaves it where it is.
    #[inline(always)]
    fn step_pc(&mut self, len: u64) {
        if exception::is_aarch32(self.regs.spsr) {
            (self.regs.elr, self.regs.spsr) = exception::step(self.regs.elr, self.regs.spsr, len);
        } else if len != 0 {
            // As `exception::step`: the instruction completed, so a single step of it ends
            // here (SS clear), not after the next one.
            self.regs.elr = self.regs.elr.wrapping_add(len);
            self.regs.spsr &= !exception::SPSR_SS;
        }
    }

    /// Gives the guest an Undefined Instruction exception at the trapped instruction.
    fn inject_undefined(&mut self) {
        self.inject_sync(undefined_esr(), 0);
    }

    /// Takes a synchronous exception to the guest's EL1, as the hardware would: syndrome,
    /// fault address, return state (the instruction and PSTATE of the last exit, AArch32
    /// included), then the vector for the state it was in (+0x000 EL1t, +0x200 EL1h,
    /// +0x400 AArch64 EL0, +0x600 AArch32 EL0) with the entry PSTATE
    /// ([`exception::entry_pstate`]).
    fn inject_sync(&mut self, esr: u64, far: u64) {
        // The EL1 registers are changed in the saved copy; the next run loads them.
        self.put();
        self.pending_load = None;
        let from = self.last_spsr;
        self.el1.esr_el1 = esr;
        self.el1.far_el1 = far;
        self.el1.elr_el1 = self.last_pc;
        self.el1.spsr_el1 = from;
        let offset = exception::vector_offset(from);
        self.regs.elr = self.el1.vbar_el1.wrapping_add(offset);
        self.regs.spsr = exception::entry_pstate(from, self.el1.sctlr_el1, self.entry_features);
    }
}
