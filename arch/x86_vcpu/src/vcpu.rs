//! The VMX vCPU: its VMCS, the world switch and the exit handling (x86_64 bare metal
//! only).

use crate::caps::ctl;
use crate::check;
use crate::cpuid::{self, CpuidContext};
use crate::entry;
use crate::exit::{event, vector, CrAccess, EptViolation, ExitReason, IoQual, ENTRY_FAILURE};
use crate::fpu::{restore_debug_regs, save_debug_regs, Fpu};
use crate::gpt::{Access, Paging, WalkError};
use crate::guestmem::NestedMemory;
use crate::insn::{self, CpuMode, MmioOp};
use crate::insn_cache;
use crate::ioperm::VmxIoBitmaps;
use crate::mode;
use crate::msr::{self, MsrBitmap, MsrContext, MsrWrite};
use crate::pc::{self, Injection, VirtualPc};
use crate::power;
use crate::vmcs::field as f;
use crate::vmx::{self, regs};
use alloc::boxed::Box;
use alloc::sync::Arc;
use axaddrspace::{GuestPhysAddr, HostPhysAddr, IntelEpt};
use axdevice_base::AccessWidth;
use axvcpu::{hypercall, ArchVCpu, PowerReply, VCpuError, VmExit};
use core::arch::{asm, global_asm};
use core::ops::ControlFlow;

/// Guest general-purpose registers, by encoding: RAX, RCX, RDX, RBX, RSP (unused: the
/// VMCS has it), RBP, RSI, RDI, R8..R15. The world switch's layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Gprs([u64; 16]);

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RSP: usize = 4;
const RSI: usize = 6;
const RDI: usize = 7;
const R8: usize = 8;
const R9: usize = 9;
const R10: usize = 10;

/// One element of a string I/O instruction.
#[derive(Clone, Copy, Debug)]
struct StringIo {
    /// The element's guest-linear address.
    linear: u64,
    size: u8,
    rep: bool,
    addr_size: u8,
    /// The instruction's length.
    len: u8,
}

/// A port read waiting for its value ([`ArchVCpu::complete_port_read`]).
#[derive(Clone, Copy, Debug)]
struct PendingPort {
    size: u8,
    len: u8,
    /// INS: where the value goes.
    string: Option<StringIo>,
}

/// A load waiting for its value ([`ArchVCpu::complete_mmio_read`]).
#[derive(Clone, Copy, Debug)]
struct PendingLoad {
    merge: insn::LoadMerge,
    /// The address of the instruction after the load (the exit knew RIP: no VMREAD of it
    /// at the completion).
    next: u64,
}

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.TF: a single-step trap follows each instruction.
const RFLAGS_TF: u64 = 1 << 8;
/// CR0 bits the guest may not change (its writes to them exit): PE, NE, PG, CD, NW.
const CR0_OWNED: u64 = (1 << 0) | (1 << 5) | (1 << 29) | (1 << 30) | (1 << 31);
/// CR4.OSXSAVE.
const CR4_OSXSAVE: u64 = 1 << 18;
/// The VMX-preemption timer's period: 1 ms of guest time.
const PREEMPTION_PERIOD_NS: u64 = 1_000_000;
/// CR4 bits the hypervisor owns: VMXE, SMXE, LA57, PKS, CET.
const CR4_OWNED: u64 = (1 << 13) | (1 << 14) | (1 << 12) | (1 << 24) | (1 << 23);

/// A VMX vCPU (`repr(C)`, the guest's registers first, as [`crate::SvmVCpu`]).
#[repr(C)]
pub struct VmxVCpu {
    /// The guest's general-purpose registers (first: see [`crate::SvmVCpu`]).
    gprs: Gprs,
    fpu: Fpu,
    vpid: u16,
    /// The VM's virtual PC (local APICs, I/O APIC, legacy timers), if it has one.
    pc: Option<Arc<VirtualPc>>,
    /// The guest's RFLAGS.IF when the vCPU was put (a halted vCPU's wake-up test runs
    /// without its VMCS loaded).
    interrupts_enabled: bool,
    /// A `VmExit::CpuUp` from a STARTUP IPI is out: its reply is dropped (a SIPI has none).
    sipi_out: bool,
    /// A SIPI started this vCPU: the next set-up enters real mode at CS = vector << 8.
    sipi_vector: Option<u8>,
    index: usize,
    vm_id: Option<u64>,
    vmcs: u64,
    msr_bitmap: Box<MsrBitmap>,
    /// The I/O bitmaps: every port exits but the VM's passthrough ports (`crate::ioperm`).
    io_bitmaps: Box<VmxIoBitmaps>,
    entry: u64,
    eptp: u64,
    start_arg: u64,
    /// The primary processor-based controls as the VMCS holds them (the window-exiting
    /// bits change while the vCPU runs).
    proc_ctls: u32,
    /// The CPU whose VMCS pointer holds this VMCS (`usize::MAX`: none, cleared).
    loaded_on: usize,
    launched: bool,
    /// The guest state in the VMCS must be (re)written from the entry contract.
    reset_pending: bool,
    pending: Option<PendingLoad>,
    pending_port: Option<PendingPort>,
    /// The RIP of the MMIO store just handed to the VMM (RIP already moved past it), so an
    /// injected fault can put it back on the instruction.
    store_rip: Option<u64>,
    /// The guest's SYSCALL/SWAPGS MSRs (msr::SWITCHED), while the vCPU is put.
    switched: [u64; 5],
    /// The guest's CR8 (task priority, bits 3:0).
    cr8: u64,
    /// The guest's DR0..DR3 and DR6 while the vCPU is put (DR7 is in the VMCS).
    debug_regs: [u64; 5],
    /// The guest's CR0 and CR4 as it believes them (the read shadows).
    cr0_shadow: u64,
    cr4_shadow: u64,
    /// The last MMIO instruction decoded (crate::insn_cache), dropped on reset, when the
    /// EPT root changes and when the hypervisor changes the guest's CR0 or EFER (every
    /// change of theirs exits: the lookup compares CR3 and CR4 only).
    insn_cache: insn_cache::Cache<insn::MmioAccess, insn_cache::Cr3Cr4>,
}

// The world switch. `x86_vcpu_vmx_run(gprs, launched)` saves the callee-saved registers
// and the `gprs` pointer on the stack, writes HOST_RSP, loads the guest's registers and
// enters the guest (VMLAUNCH, or VMRESUME once launched). A VM exit lands at
// `x86_vcpu_vmx_exit` (HOST_RIP) with the stack as it was: the guest's registers are
// stored, the host's restored, and 0 returned. A failed entry returns 1 (VMfailValid: the
// VM-instruction error field says why) or 2 (VMfailInvalid).
global_asm!(
    ".global x86_vcpu_vmx_run",
    "x86_vcpu_vmx_run:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "mov rax, {host_rsp}",
    "vmwrite rax, rsp",
    "test rsi, rsi",
    "mov rax, [rdi + 0]",
    "mov rcx, [rdi + 8]",
    "mov rdx, [rdi + 16]",
    "mov rbx, [rdi + 24]",
    "mov rbp, [rdi + 40]",
    "mov rsi, [rdi + 48]",
    "mov r8, [rdi + 64]",
    "mov r9, [rdi + 72]",
    "mov r10, [rdi + 80]",
    "mov r11, [rdi + 88]",
    "mov r12, [rdi + 96]",
    "mov r13, [rdi + 104]",
    "mov r14, [rdi + 112]",
    "mov r15, [rdi + 120]",
    "mov rdi, [rdi + 56]",
    "jnz 1f",
    "vmlaunch",
    "jmp 2f",
    "1:",
    "vmresume",
    "2:",
    // The entry failed: flags say how. Pops do not change them.
    "pop rdi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "mov eax, 1",
    "jnc 3f",
    "mov eax, 2",
    "3:",
    "ret",
    ".global x86_vcpu_vmx_exit",
    "x86_vcpu_vmx_exit:",
    "xchg rdi, [rsp]",
    "mov [rdi + 0], rax",
    "mov [rdi + 8], rcx",
    "mov [rdi + 16], rdx",
    "mov [rdi + 24], rbx",
    "mov [rdi + 40], rbp",
    "mov [rdi + 48], rsi",
    "mov [rdi + 64], r8",
    "mov [rdi + 72], r9",
    "mov [rdi + 80], r10",
    "mov [rdi + 88], r11",
    "mov [rdi + 96], r12",
    "mov [rdi + 104], r13",
    "mov [rdi + 112], r14",
    "mov [rdi + 120], r15",
    "pop rax",
    "mov [rdi + 56], rax",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "xor eax, eax",
    "ret",
    host_rsp = const f::HOST_RSP,
);

unsafe extern "C" {
    fn x86_vcpu_vmx_run(gprs: *mut Gprs, launched: u64) -> u64;
    fn x86_vcpu_vmx_exit();
}

/// Guest memory behind the VM's EPT.
type EptMemory = NestedMemory<IntelEpt>;

fn vcpu_err(what: &'static str) -> VCpuError {
    VCpuError::Unsupported(what)
}

impl VmxVCpu {
    fn eptp_root(&self) -> u64 {
        self.eptp & IntelEpt::ADDR_MASK
    }

    #[inline(always)]
    fn paging(&self) -> Paging {
        Paging {
            cr0: vmx::read(f::GUEST_CR0),
            cr3: vmx::read(f::GUEST_CR3),
            cr4: vmx::read(f::GUEST_CR4),
            efer: vmx::read(f::GUEST_EFER),
        }
    }

    #[inline(always)]
    fn advance(&mut self, len: u64) {
        let rip = vmx::read(f::GUEST_RIP);
        self.set_rip(rip.wrapping_add(len));
    }

    /// Sets RIP to `rip`, the instruction after the one that completed.
    #[inline(always)]
    fn set_rip(&mut self, rip: u64) {
        vmx::write(f::GUEST_RIP, rip);
        // An instruction completed: STI / MOV SS blocking ends, and RFLAGS.TF asks for its
        // single-step trap (one test for both: neither is common).
        let intr = vmx::read(f::GUEST_INTERRUPTIBILITY);
        let tf = vmx::read(f::GUEST_RFLAGS) & RFLAGS_TF;
        if intr & 3 | tf != 0 {
            Self::instruction_done(intr, tf);
        }
    }

    /// [`Self::set_rip`]'s uncommon part: clears STI / MOV SS blocking (`intr`) and, when
    /// the instruction ran with RFLAGS.TF set (`tf`), makes its single-step trap a pending
    /// debug exception (BS), which the entry delivers as the #DB after it, with DR6.BS, as
    /// the CPU would have.
    #[cold]
    #[inline(never)]
    fn instruction_done(intr: u64, tf: u64) {
        if intr & 3 != 0 {
            vmx::write(f::GUEST_INTERRUPTIBILITY, intr & !3);
        }
        if tf != 0 {
            let pending = vmx::read(f::GUEST_PENDING_DEBUG);
            vmx::write(f::GUEST_PENDING_DEBUG, pending | 1 << 14);
        }
    }

    #[inline(always)]
    fn skip_instruction(&mut self) {
        let len = vmx::read(f::EXIT_INSTRUCTION_LEN);
        self.advance(len);
    }

    /// Injects hardware exception `v` (with error code `code` when it has one) at the
    /// next entry; RIP stays at the faulting instruction. In real mode (CR0.PE clear,
    /// unrestricted guest) exceptions push no error code.
    fn inject(&mut self, v: u8, code: Option<u32>) {
        let code = code.filter(|_| vmx::read(f::GUEST_CR0) & 1 != 0);
        vmx::write(
            f::ENTRY_INTERRUPTION_INFO,
            u64::from(event::exception(v, code.is_some())),
        );
        if let Some(c) = code {
            vmx::write(f::ENTRY_EXCEPTION_ERROR_CODE, u64::from(c));
        }
    }

    /// An event whose delivery the exit interrupted (an EPT violation on the guest's IDT or
    /// stack, say) is delivered again at the next entry, unless the exit's handling injects
    /// something else. Not after VMCALL or an I/O instruction: an exit an instruction
    /// causes never interrupts an event's delivery (SDM Vol. 3C, "Information for VM Exits
    /// During Event Delivery"), so their IDT-vectoring information is never valid.
    #[inline(always)]
    fn reinject_vectoring(&mut self) {
        let info = vmx::read(f::IDT_VECTORING_INFO) as u32;
        if info & event::VALID == 0 {
            // Nothing to write: every VM exit clears the valid bit of the VM-entry
            // interruption-information field (SDM Vol. 3C, 25.8.3), so an injection made
            // for the previous entry is not repeated.
            return;
        }
        self.reinject(info);
    }

    /// [`Self::reinject_vectoring`]'s work, out of the exit path's line.
    #[inline(never)]
    fn reinject(&mut self, idt_vectoring: u32) {
        let Some(r) = event::reinjection(idt_vectoring) else {
            return;
        };
        vmx::write(f::ENTRY_INTERRUPTION_INFO, u64::from(r.info));
        if r.error_code {
            vmx::write(
                f::ENTRY_EXCEPTION_ERROR_CODE,
                vmx::read(f::IDT_VECTORING_ERROR_CODE),
            );
        }
        if r.instruction_len {
            vmx::write(f::ENTRY_INSTRUCTION_LEN, vmx::read(f::EXIT_INSTRUCTION_LEN));
        }
    }

    /// Sets or clears interrupt-window and NMI-window exiting (one VMWRITE, only when
    /// they change). NMI-window exiting is set only where the CPU has virtual NMIs.
    fn set_windows(&mut self, interrupt: bool, nmi: bool) {
        let iw = ctl::INTERRUPT_WINDOW_EXITING.mask();
        let nw = ctl::NMI_WINDOW_EXITING.mask();
        let mut p = self.proc_ctls & !(iw | nw);
        let caps = vmx::caps();
        if interrupt && caps.is_some_and(|c| c.0.allows(ctl::INTERRUPT_WINDOW_EXITING)) {
            p |= iw;
        }
        if nmi && caps.is_some_and(|c| c.1.nmi_window()) {
            p |= nw;
        }
        if p != self.proc_ctls {
            self.proc_ctls = p;
            vmx::write(f::PROC_BASED, u64::from(p));
        }
    }

    /// The guest-state fields [`check::guest`] reads.
    fn guest_snapshot(&self) -> check::GuestState {
        let ar = |n| vmx::read(f::segment(n).2) as u32;
        check::GuestState {
            cr0: vmx::read(f::GUEST_CR0),
            cr4: vmx::read(f::GUEST_CR4),
            efer: vmx::read(f::GUEST_EFER),
            pat: vmx::read(f::GUEST_PAT),
            dr7: vmx::read(f::GUEST_DR7),
            rip: vmx::read(f::GUEST_RIP),
            rflags: vmx::read(f::GUEST_RFLAGS),
            cs_ar: ar(1),
            ss_ar: ar(2),
            tr_ar: ar(7),
            tr_selector: vmx::read(f::GUEST_TR_SELECTOR) as u16,
            activity: vmx::read(f::GUEST_ACTIVITY_STATE) as u32,
            link_pointer: vmx::read(f::VMCS_LINK_POINTER),
            ia32e: vmx::read(f::ENTRY_CONTROLS) & u64::from(ctl::IA32E_MODE_GUEST.mask()) != 0,
            unrestricted: vmx::read(f::PROC_BASED2) & u64::from(ctl::UNRESTRICTED_GUEST.mask())
                != 0,
            interruptibility: vmx::read(f::GUEST_INTERRUPTIBILITY) as u32,
            entry_event: vmx::read(f::ENTRY_INTERRUPTION_INFO) as u32,
        }
    }

    /// The host-state fields [`check::host`] reads.
    fn host_snapshot(&self) -> check::HostState {
        check::HostState {
            cr0: vmx::read(f::HOST_CR0),
            cr4: vmx::read(f::HOST_CR4),
            efer: vmx::read(f::HOST_EFER),
            selectors: [
                f::HOST_CS_SELECTOR,
                f::HOST_SS_SELECTOR,
                f::HOST_DS_SELECTOR,
                f::HOST_ES_SELECTOR,
                f::HOST_FS_SELECTOR,
                f::HOST_GS_SELECTOR,
                f::HOST_TR_SELECTOR,
            ]
            .map(|s| vmx::read(s) as u16),
            addresses: [
                f::HOST_FS_BASE,
                f::HOST_GS_BASE,
                f::HOST_TR_BASE,
                f::HOST_GDTR_BASE,
                f::HOST_IDTR_BASE,
                f::HOST_RIP,
            ]
            .map(vmx::read),
        }
    }

    /// Logs why VMLAUNCH/VMRESUME failed, with the field to blame where the checks find
    /// one, and returns the error for `run`.
    fn entry_failed(&self, r: u64) -> VCpuError {
        if r != 1 {
            log::error!(
                "vCPU {}: VM entry failed: VMfailInvalid (no current VMCS)",
                self.index
            );
            return VCpuError::Hardware(0);
        }
        let err = vmx::instruction_error();
        let name = crate::exit::vm_instruction_error(err).unwrap_or("unknown VM-instruction error");
        let field = vmx::caps().and_then(|(caps, ctls)| match err {
            7 => check::controls(ctls, caps),
            8 => check::host(&self.host_snapshot(), caps),
            _ => None,
        });
        match field {
            Some(field) => log::error!(
                "vCPU {}: VM entry failed: {name} (VM-instruction error {err}): {field}",
                self.index
            ),
            None => log::error!(
                "vCPU {}: VM entry failed: {name} (VM-instruction error {err})",
                self.index
            ),
        }
        VCpuError::Hardware(u64::from(err))
    }

    /// Starts a new period of the VMX-preemption timer, when the CPU has it: the guest
    /// exits after [`PREEMPTION_PERIOD_NS`] of its own running time (counted across exits
    /// where the CPU saves the timer), and the VMM then looks for host work as after an
    /// interrupt. A backstop for the host's own interrupts, which end a guest's run through
    /// external-interrupt exiting — except under Bochs 2.7 while the guest has RFLAGS.IF
    /// clear, where a host interrupt that became pending in root operation waits until the
    /// guest sets IF.
    pub(crate) fn arm_preemption_timer(&self) {
        let Some((caps, ctls)) = vmx::caps() else {
            return;
        };
        if !ctls.has(ctl::PREEMPTION_TIMER) {
            return;
        }
        let ticks = axhal::time::ticks_per_sec() / (1_000_000_000 / PREEMPTION_PERIOD_NS);
        let value = (ticks >> caps.preemption_timer_shift()).clamp(1, u64::from(u32::MAX));
        vmx::write(f::GUEST_PREEMPTION_TIMER, value);
    }

    /// Makes the VMX-preemption timer expire after at most `ticks` TSC ticks of guest time
    /// (the guest's next timer event), keeping an earlier expiry. The exit is an ordinary
    /// [`VmExit::ExternalInterrupt`] and the event is injected before the next entry.
    fn preempt_by(ticks: u64) {
        let Some((caps, ctls)) = vmx::caps() else {
            return;
        };
        if !ctls.has(ctl::PREEMPTION_TIMER) {
            return;
        }
        let value = ticks >> caps.preemption_timer_shift();
        if value < vmx::read(f::GUEST_PREEMPTION_TIMER) {
            vmx::write(f::GUEST_PREEMPTION_TIMER, value);
        }
    }

    /// The guest's CPL (SS.DPL).
    #[inline(always)]
    fn cpl(&self) -> u64 {
        (vmx::read(f::segment(2).2) >> 5) & 3
    }

    /// CR4 as the guest sees it: the read shadow's bits where the hypervisor owns them,
    /// the real register's elsewhere.
    fn guest_cr4(&self) -> u64 {
        (vmx::read(f::GUEST_CR4) & !CR4_OWNED) | (self.cr4_shadow & CR4_OWNED)
    }

    /// Loads this vCPU's VMCS on this CPU, writing the host state (and the guest's initial
    /// state after set-up).
    fn load(&mut self) -> Result<(), VCpuError> {
        let caps = vmx::enable().map_err(|_| vcpu_err("VMX cannot be enabled on this CPU"))?;
        let cpu = axhal::cpu::id();
        if self.loaded_on != cpu {
            if !vmx::vmptrld(self.vmcs) {
                return Err(vcpu_err("VMPTRLD failed"));
            }
            self.write_host_state();
            self.loaded_on = cpu;
            for (m, v) in msr::SWITCHED.iter().zip(self.switched) {
                regs::wrmsr(*m, v);
            }
            self.fpu.restore();
            restore_debug_regs(&self.debug_regs);
        }
        if self.reset_pending {
            self.write_controls(&caps.1);
            self.write_guest_state();
            self.reset_pending = false;
            vmx::invept(self.eptp);
            vmx::invvpid(self.vpid);
        }
        Ok(())
    }

    fn write_host_state(&self) {
        let (cr0, cr3, cr4): (u64, u64, u64);
        let mut gdtr = [0u8; 10];
        let mut idtr = [0u8; 10];
        // SAFETY: reads control registers and descriptor-table registers into locals.
        unsafe {
            asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
            asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack));
            asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
            asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr(), options(nostack));
            asm!("sidt [{}]", in(reg) idtr.as_mut_ptr(), options(nostack));
        }
        let base = |t: &[u8; 10]| u64::from_le_bytes(t[2..10].try_into().unwrap_or([0; 8]));
        vmx::write(f::HOST_CR0, cr0);
        vmx::write(f::HOST_CR3, cr3);
        vmx::write(f::HOST_CR4, cr4);
        // axhal's selectors: CS 0x08; DS, ES, SS 0x10; FS, GS null; TR 0x18.
        vmx::write(f::HOST_CS_SELECTOR, 0x08);
        for s in [
            f::HOST_ES_SELECTOR,
            f::HOST_SS_SELECTOR,
            f::HOST_DS_SELECTOR,
        ] {
            vmx::write(s, 0x10);
        }
        vmx::write(f::HOST_FS_SELECTOR, 0);
        vmx::write(f::HOST_GS_SELECTOR, 0);
        vmx::write(f::HOST_TR_SELECTOR, 0x18);
        vmx::write(f::HOST_FS_BASE, 0);
        vmx::write(f::HOST_GS_BASE, regs::rdmsr(msr::nr::IA32_GS_BASE));
        vmx::write(f::HOST_TR_BASE, axhal::x86::tss_base());
        vmx::write(f::HOST_GDTR_BASE, base(&gdtr));
        vmx::write(f::HOST_IDTR_BASE, base(&idtr));
        vmx::write(f::HOST_SYSENTER_CS, 0);
        vmx::write(f::HOST_SYSENTER_ESP, 0);
        vmx::write(f::HOST_SYSENTER_EIP, 0);
        vmx::write(f::HOST_PAT, regs::rdmsr(msr::nr::IA32_PAT));
        vmx::write(f::HOST_EFER, regs::rdmsr(msr::nr::IA32_EFER));
        vmx::write(f::HOST_RIP, x86_vcpu_vmx_exit as *const () as usize as u64);
    }

    fn write_controls(&mut self, c: &crate::caps::Controls) {
        vmx::write(f::PIN_BASED, u64::from(c.pin));
        vmx::write(f::PROC_BASED, u64::from(c.proc));
        self.proc_ctls = c.proc;
        vmx::write(f::PROC_BASED2, u64::from(c.proc2));
        vmx::write(f::EXIT_CONTROLS, u64::from(c.exit));
        vmx::write(f::ENTRY_CONTROLS, u64::from(c.entry));
        vmx::write(f::EXCEPTION_BITMAP, 0);
        vmx::write(f::MSR_BITMAP, &*self.msr_bitmap as *const MsrBitmap as u64);
        vmx::write(f::IO_BITMAP_A, self.io_bitmaps.a.as_ptr() as u64);
        vmx::write(f::IO_BITMAP_B, self.io_bitmaps.b.as_ptr() as u64);
        vmx::write(f::EPT_POINTER, self.eptp);
        vmx::write(f::VPID, u64::from(self.vpid));
        vmx::write(f::VMCS_LINK_POINTER, u64::MAX);
        for z in [
            f::PF_ERROR_CODE_MASK,
            f::PF_ERROR_CODE_MATCH,
            f::CR3_TARGET_COUNT,
            f::EXIT_MSR_STORE_COUNT,
            f::EXIT_MSR_LOAD_COUNT,
            f::ENTRY_MSR_LOAD_COUNT,
            f::TSC_OFFSET,
        ] {
            vmx::write(z, 0);
        }
        vmx::write(f::CR0_GUEST_HOST_MASK, CR0_OWNED);
        vmx::write(f::CR4_GUEST_HOST_MASK, CR4_OWNED);
    }

    /// The entry contract's state (docs/x86.md).
    fn write_guest_state(&mut self) {
        // CR0 and EFER change: the MMIO cache's lookup does not compare them.
        self.insn_cache.clear();
        let caps = match vmx::caps() {
            Some(c) => c.0,
            None => return,
        };
        self.cr0_shadow = entry::CR0;
        self.cr4_shadow = entry::CR4;
        vmx::write(f::GUEST_CR0, caps.cr0_fixed().apply(entry::CR0));
        vmx::write(f::GUEST_CR4, caps.cr4_fixed().apply(entry::CR4));
        vmx::write(f::CR0_READ_SHADOW, entry::CR0);
        vmx::write(f::CR4_READ_SHADOW, entry::CR4);
        vmx::write(f::GUEST_CR3, entry::PML4_GPA);
        vmx::write(f::GUEST_EFER, entry::EFER);
        vmx::write(f::GUEST_PAT, entry::PAT);
        vmx::write(f::GUEST_DR7, 0x400);
        vmx::write(f::GUEST_DEBUGCTL, 0);
        vmx::write(f::GUEST_PENDING_DEBUG, 0);
        vmx::write(f::GUEST_SYSENTER_CS, 0);
        vmx::write(f::GUEST_SYSENTER_ESP, 0);
        vmx::write(f::GUEST_SYSENTER_EIP, 0);
        vmx::write(f::GUEST_RFLAGS, entry::RFLAGS);
        vmx::write(f::GUEST_RIP, self.entry);
        vmx::write(f::GUEST_RSP, 0);
        for n in 0..8 {
            let (sel, lim, ar, base) = f::segment(n);
            let (s, a, l) = match n {
                1 => (entry::CODE_SELECTOR, entry::CODE_ACCESS_RIGHTS, 0xffff_ffff),
                6 => (0, entry::UNUSABLE, 0),
                7 => (
                    entry::TSS_SELECTOR,
                    entry::TSS_ACCESS_RIGHTS,
                    entry::TSS_LIMIT,
                ),
                _ => (entry::DATA_SELECTOR, entry::DATA_ACCESS_RIGHTS, 0xffff_ffff),
            };
            vmx::write(sel, u64::from(s));
            vmx::write(lim, u64::from(l));
            vmx::write(ar, u64::from(a));
            vmx::write(base, if n == 7 { entry::TSS_GPA } else { 0 });
        }
        vmx::write(f::GUEST_GDTR_BASE, entry::GDT_GPA);
        vmx::write(f::GUEST_GDTR_LIMIT, u64::from(entry::GDT_LIMIT));
        vmx::write(f::GUEST_IDTR_BASE, 0);
        vmx::write(f::GUEST_IDTR_LIMIT, 0);
        vmx::write(f::GUEST_INTERRUPTIBILITY, 0);
        vmx::write(f::GUEST_ACTIVITY_STATE, 0);
        vmx::write(f::ENTRY_INTERRUPTION_INFO, 0);
        self.launched = false;
        if let Some(v) = self.sipi_vector {
            self.write_real_mode_state(&caps, v);
        }
    }

    /// The state after INIT and a STARTUP IPI with `vector` (SDM Vol. 3A, table 10-1):
    /// real mode (CR0 = CD | NW | ET, paging and protection off: unrestricted guest), CS =
    /// `vector << 8` with base `vector << 12`, IP = 0, the other segments 0 with 64 KiB
    /// limits, EFER 0 and the "IA-32e mode guest" entry control clear. Over the entry
    /// contract's state ([`Self::write_guest_state`]).
    fn write_real_mode_state(&mut self, caps: &crate::caps::VmxCaps, vector: u8) {
        self.cr0_shadow = mode::INIT_CR0;
        self.cr4_shadow = 0;
        vmx::write(f::CR0_READ_SHADOW, mode::INIT_CR0);
        vmx::write(f::CR4_READ_SHADOW, 0);
        let cr0 = mode::INIT_CR0 & !(mode::CR0_CD | mode::CR0_NW);
        vmx::write(f::GUEST_CR0, caps.guest_cr0_fixed(true).apply(cr0));
        vmx::write(f::GUEST_CR4, caps.cr4_fixed().apply(0));
        vmx::write(f::GUEST_CR3, 0);
        vmx::write(f::GUEST_EFER, 0);
        self.set_ia32e(false);
        vmx::write(f::GUEST_RIP, 0);
        let (cs, cs_base) = mode::sipi_code_segment(vector);
        for n in 0..8 {
            let (sel, lim, ar, base) = f::segment(n);
            let (s, b, a) = match n {
                1 => (cs, cs_base, mode::REAL_CODE_ACCESS_RIGHTS),
                6 => (0, 0, entry::UNUSABLE),
                7 => (0, 0, mode::REAL_TSS_ACCESS_RIGHTS),
                _ => (0, 0, mode::REAL_DATA_ACCESS_RIGHTS),
            };
            vmx::write(sel, u64::from(s));
            vmx::write(lim, 0xffff);
            vmx::write(ar, u64::from(a));
            vmx::write(base, b);
        }
        vmx::write(f::GUEST_GDTR_BASE, 0);
        vmx::write(f::GUEST_GDTR_LIMIT, 0xffff);
        vmx::write(f::GUEST_IDTR_BASE, 0);
        vmx::write(f::GUEST_IDTR_LIMIT, 0xffff);
    }

    /// Decodes the exit just taken: `Ok(None)` when the vCPU handled it itself (re-enter),
    /// `Ok(Some(exit))` for the VMM.
    ///
    /// The exits a guest makes most (hypercalls, port I/O, MMIO) are decoded here, inlined
    /// into the run loop; the others in [`Self::handle_other_exit`].
    #[inline(always)]
    fn handle_exit(&mut self) -> Option<VmExit> {
        self.store_rip = None;
        let reason_field = vmx::read(f::EXIT_REASON) as u32;
        match ExitReason::of(reason_field) {
            ExitReason::VMCALL => self.vmcall(),
            ExitReason::IO_INSTRUCTION => match IoQual::decode(vmx::read(f::EXIT_QUALIFICATION)) {
                Some(io) => self.port_io(io),
                None => {
                    self.inject(vector::GP, Some(0));
                    None
                }
            },
            ExitReason::EPT_VIOLATION => {
                self.reinject_vectoring();
                self.ept_violation(vmx::read(f::EXIT_QUALIFICATION))
            }
            _ => {
                self.reinject_vectoring();
                self.handle_other_exit(reason_field)
            }
        }
    }

    /// [`Self::handle_exit`] for every other exit reason (and a failed entry).
    #[inline(never)]
    fn handle_other_exit(&mut self, reason_field: u32) -> Option<VmExit> {
        let reason = ExitReason::of(reason_field);
        if reason_field & ENTRY_FAILURE != 0 {
            // An emulated instruction that ended just above 4 GiB outside 64-bit code: EIP
            // wraps as the CPU's does (`mode::wrap_ip`). Made here, where the entry with the
            // unwrapped RIP failed, not in `set_rip`: a test there cost every exit 7
            // instructions (bench: hypercall 98 -> 105).
            let rip = vmx::read(f::GUEST_RIP);
            let wrapped = mode::wrap_ip(rip, vmx::read(f::segment(1).2) & (1 << 13) != 0);
            if reason == ExitReason::INVALID_GUEST_STATE && rip >> 32 == 1 && wrapped != rip {
                vmx::write(f::GUEST_RIP, wrapped);
                return None;
            }
            let qual = vmx::read(f::EXIT_QUALIFICATION);
            let named = match (reason, qual) {
                (ExitReason::INVALID_GUEST_STATE, 0) => {
                    vmx::caps().and_then(|c| check::guest(&self.guest_snapshot(), &c.0))
                }
                _ => None,
            };
            return Some(VmExit::Unsupported {
                reason: named.unwrap_or(crate::exit::entry_failure_detail(reason, qual)),
                syndrome: u64::from(reason_field),
            });
        }
        match reason {
            ExitReason::EXCEPTION_NMI => {
                // The exception bitmap is 0: only a host NMI (NMI exiting, needed by
                // virtual NMIs) lands here. The hypervisor sends none itself.
                log::warn!("vCPU {}: host NMI while the guest ran", self.index);
                Some(VmExit::ExternalInterrupt)
            }
            ExitReason::INTERRUPT_WINDOW | ExitReason::NMI_WINDOW => {
                // The guest can take the event now: the check before the next entry
                // injects it.
                self.set_windows(false, false);
                None
            }
            ExitReason::EXTERNAL_INTERRUPT => {
                let info = vmx::read(f::EXIT_INTERRUPTION_INFO) as u32;
                if let Some(v) = event::vector(info) {
                    axhal::x86::dispatch_vector(v);
                }
                Some(VmExit::ExternalInterrupt)
            }
            ExitReason::CPUID => {
                let (leaf, sub) = (self.gprs.0[RAX] as u32, self.gprs.0[RCX] as u32);
                let r = core::arch::x86_64::__cpuid_count(leaf, sub);
                let ctx = CpuidContext {
                    vcpu_index: self.index as u8,
                    guest_cr4: self.guest_cr4(),
                    invpcid: vmx::caps().is_some_and(|c| c.1.has(ctl::ENABLE_INVPCID)),
                    tsc_khz: u32::try_from(axhal::time::ticks_per_sec() / 1000).unwrap_or(0),
                };
                let mut out = cpuid::filter(leaf, sub, [r.eax, r.ebx, r.ecx, r.edx], &ctx);
                if self.pc.is_some() {
                    // The virtual local APIC: x2APIC, TSC-deadline, its bus clock.
                    out = cpuid::virtual_apic(leaf, out);
                }
                for (i, v) in [RAX, 3, RCX, RDX].into_iter().zip(out) {
                    self.gprs.0[i] = u64::from(v);
                }
                self.skip_instruction();
                None
            }
            ExitReason::PREEMPTION_TIMER => {
                // The slice's backstop: the VMM checks for pending host work as after an
                // interrupt (and re-enters at once when there is none).
                Some(VmExit::ExternalInterrupt)
            }
            ExitReason::HLT => {
                self.skip_instruction();
                Some(VmExit::Halt)
            }
            ExitReason::RDMSR | ExitReason::WRMSR => self.msr_access(reason == ExitReason::WRMSR),
            ExitReason::CR_ACCESS => {
                self.cr_access(CrAccess::decode(vmx::read(f::EXIT_QUALIFICATION)))
            }
            ExitReason::XSETBV => {
                self.xsetbv();
                None
            }
            ExitReason::EPT_MISCONFIG => Some(VmExit::Unsupported {
                reason: "EPT misconfiguration",
                syndrome: vmx::read(f::GUEST_PHYSICAL_ADDRESS),
            }),
            // A PC would reset; axvisor stops the VM (docs/vmm.md, "The seam").
            ExitReason::TRIPLE_FAULT => Some(VmExit::Unsupported {
                reason: "triple fault",
                syndrome: u64::from(reason.0),
            }),
            ExitReason::MWAIT
            | ExitReason::MONITOR
            | ExitReason::RDPMC
            | ExitReason::INVPCID
            | ExitReason::RDTSCP
            | ExitReason::VMCLEAR
            | ExitReason::VMLAUNCH
            | ExitReason::VMPTRLD
            | ExitReason::VMPTRST
            | ExitReason::VMREAD
            | ExitReason::VMRESUME
            | ExitReason::VMWRITE
            | ExitReason::VMXOFF
            | ExitReason::VMXON
            | ExitReason::INVEPT
            | ExitReason::INVVPID
            | ExitReason::GETSEC
            | ExitReason::VMFUNC
            | ExitReason::ENCLS => {
                // Hidden in CPUID or not offered: the instruction is undefined for the
                // guest.
                self.inject(vector::UD, None);
                None
            }
            ExitReason::INVD | ExitReason::WBINVD | ExitReason::PAUSE => {
                self.skip_instruction();
                None
            }
            _ => Some(VmExit::Unsupported {
                reason: reason.name().unwrap_or("unknown exit reason"),
                syndrome: u64::from(reason.0),
            }),
        }
    }

    /// Before an entry, with a virtual PC: advances the vCPU's timers, injects what its
    /// local APIC has and the guest can take now (`pc::VirtualPc::next_injection`), or sets
    /// the window exit for it; arms the host timer for the next guest timer event.
    #[inline(never)]
    fn prepare_events(&mut self) {
        let Some(pc) = self.pc.as_ref() else {
            return;
        };
        let now = axhal::time::ticks();
        let ready = crate::exit::ready(
            vmx::read(f::GUEST_RFLAGS) & RFLAGS_IF != 0,
            vmx::read(f::GUEST_INTERRUPTIBILITY) as u32,
            vmx::read(f::ENTRY_INTERRUPTION_INFO) as u32 & event::VALID != 0,
        );
        let injection = pc.next_injection(self.index, now, ready);
        if let Some(d) = pc.deadline(self.index) {
            Self::preempt_by(d.saturating_sub(now));
        }
        let (irq_window, nmi_window) = match injection {
            Injection::Nmi => {
                vmx::write(f::ENTRY_INTERRUPTION_INFO, u64::from(event::nmi()));
                (false, false)
            }
            Injection::External(v) => {
                vmx::write(f::ENTRY_INTERRUPTION_INFO, u64::from(event::external(v)));
                (false, false)
            }
            Injection::IrqWindow => (true, false),
            Injection::NmiWindow => (false, true),
            Injection::None => (false, false),
        };
        self.set_windows(irq_window, nmi_window);
    }

    /// After a local APIC register write: a STARTUP IPI that reached a vCPU waiting for one
    /// becomes `VmExit::CpuUp` (axvm sets the target up; its reply is dropped).
    fn start_request(&mut self) -> Option<VmExit> {
        let r = self.pc.as_ref()?.take_start()?;
        self.sipi_out = true;
        Some(VmExit::CpuUp {
            target: r.target as u64,
            entry: GuestPhysAddr::new(r.entry() as usize),
            arg: 0,
        })
    }

    /// Makes this vCPU current on this CPU for a run: its VMCS loaded, the preemption
    /// timer armed. Before [`Self::run_until_exit`].
    pub(crate) fn begin_run(&mut self) -> Result<(), VCpuError> {
        self.load()?;
        self.arm_preemption_timer();
        Ok(())
    }

    /// Enters the guest until an exit the VM must see (the others are handled here).
    /// Inlined, so that the one loop calling it ([`ArchVCpu::run_with`]) inlines the VM's
    /// exit handler too; after the VM has handled a [`VmExit::ExternalInterrupt`], the
    /// caller re-arms the preemption timer ([`Self::arm_preemption_timer`]).
    #[inline(always)]
    pub(crate) fn run_until_exit(&mut self) -> Result<VmExit, VCpuError> {
        loop {
            if self.pc.is_some() {
                self.prepare_events();
            }
            // SAFETY: this vCPU's VMCS is current on this CPU with complete host, control
            // and guest state; the world switch saves and restores every host register it
            // touches, and interrupts are masked (the caller's contract).
            let r = unsafe { x86_vcpu_vmx_run(&mut self.gprs, u64::from(self.launched)) };
            if r != 0 {
                return Err(self.entry_failed(r));
            }
            self.launched = true;
            if let Some(exit) = self.handle_exit() {
                return Ok(exit);
            }
        }
    }

    #[inline(always)]
    fn vmcall(&mut self) -> Option<VmExit> {
        if self.cpl() != 0 {
            // Hypercalls are the guest kernel's: user mode gets #UD, as VMCALL outside
            // VMX operation would give it.
            self.inject(vector::UD, None);
            return None;
        }
        self.skip_instruction();
        let nr = self.gprs.0[RAX];
        if let Some(id) = self.vm_id {
            if let Some(v) = hypercall::fixed_answer(nr, id) {
                self.gprs.0[RAX] = v;
                return None;
            }
        }
        // The arguments read after the VMCS accesses (which the compiler may not move
        // loads across) and only for an exit: the fast path had loaded all three.
        let g = &self.gprs.0;
        Some(power::exit(nr, [g[RDI], g[RSI], g[RDX]]))
    }

    fn msr_access(&mut self, write: bool) -> Option<VmExit> {
        let m = self.gprs.0[RCX] as u32;
        let v = (self.gprs.0[RDX] << 32) | (self.gprs.0[RAX] & 0xffff_ffff);
        if let Some(pc) = self.pc.as_ref().filter(|_| pc::is_apic_msr(m)) {
            // The local APIC's MSRs (IA32_APIC_BASE, IA32_TSC_DEADLINE, x2APIC).
            let now = axhal::time::ticks();
            if write {
                match pc.wrmsr(self.index, m, v, now) {
                    Some(Ok(())) => {
                        self.skip_instruction();
                        return self.start_request();
                    }
                    _ => self.inject(vector::GP, Some(0)),
                }
            } else {
                match pc.rdmsr(self.index, m, now) {
                    Some(Ok(value)) => {
                        self.gprs.0[RAX] = value & 0xffff_ffff;
                        self.gprs.0[RDX] = value >> 32;
                        self.skip_instruction();
                    }
                    _ => self.inject(vector::GP, Some(0)),
                }
            }
            return None;
        }
        let efer = vmx::read(f::GUEST_EFER);
        let ctx = MsrContext {
            vcpu_index: self.index,
            efer,
            paging: self.cr0_shadow & (1 << 31) != 0,
            amd: false,
        };
        if write {
            match msr::write(m, v, &ctx) {
                Ok(MsrWrite::Ignore) => self.skip_instruction(),
                Ok(MsrWrite::Efer(e)) => {
                    vmx::write(f::GUEST_EFER, e);
                    self.insn_cache.clear();
                    self.skip_instruction();
                }
                Err(msr::Gp) => self.inject(vector::GP, Some(0)),
            }
        } else {
            match msr::read(m, &ctx) {
                Ok(v) => {
                    self.gprs.0[RAX] = v & 0xffff_ffff;
                    self.gprs.0[RDX] = v >> 32;
                    self.skip_instruction();
                }
                Err(msr::Gp) => self.inject(vector::GP, Some(0)),
            }
        }
        None
    }

    #[inline(always)]
    fn gpr(&self, i: u8) -> u64 {
        if usize::from(i) == RSP {
            vmx::read(f::GUEST_RSP)
        } else {
            self.gprs.0[usize::from(i & 15)]
        }
    }

    /// Replaces general-purpose register `i` by `f` of its value (RSP in the VMCS), with
    /// one test of where it is.
    #[inline(always)]
    fn update_gpr(&mut self, i: u8, f: impl FnOnce(u64) -> u64) {
        if usize::from(i) == RSP {
            vmx::write(f::GUEST_RSP, f(vmx::read(f::GUEST_RSP)));
        } else {
            let reg = &mut self.gprs.0[usize::from(i & 15)];
            *reg = f(*reg);
        }
    }

    #[inline(always)]
    fn set_gpr_value(&mut self, i: u8, v: u64) {
        if usize::from(i) == RSP {
            vmx::write(f::GUEST_RSP, v);
        } else {
            self.gprs.0[usize::from(i & 15)] = v;
        }
    }

    /// CR0 as the guest sees it: the read shadow's bits where the hypervisor owns them, the
    /// real register's elsewhere (MP, EM, TS, WP, AM change without exits).
    fn guest_cr0(&self) -> u64 {
        (vmx::read(f::GUEST_CR0) & !CR0_OWNED) | (self.cr0_shadow & CR0_OWNED)
    }

    /// What a CR0 or CR4 write is checked against.
    fn mode_state(&self) -> mode::ModeState {
        mode::ModeState {
            cr0: self.guest_cr0(),
            cr4: self.guest_cr4(),
            efer: vmx::read(f::GUEST_EFER),
            cs_long: vmx::read(f::segment(1).2) & (1 << 13) != 0,
        }
    }

    /// The guest writes `v` to CR0 (MOV, LMSW, CLTS): PE and PG may change under
    /// unrestricted guest, with long mode following EFER.LME (`mode::cr0_write`); caching
    /// changes (CD, NW) land in the shadow only.
    fn write_cr0(&mut self, v: u64) -> Option<VmExit> {
        let (caps, ctls) = vmx::caps()?;
        let unrestricted = ctls.unrestricted();
        let s = self.mode_state();
        let efer = match mode::cr0_write(&s, v, unrestricted) {
            mode::Cr0Write::Done { efer } => efer,
            mode::Cr0Write::Gp => {
                self.inject(vector::GP, Some(0));
                return None;
            }
        };
        // PAE paging turned on (or its caching changed): the CPU loads the PDPTEs.
        let loads = (v ^ s.cr0) & (mode::CR0_PG | mode::CR0_CD | mode::CR0_NW) != 0;
        if loads && mode::pae_paging(v, s.cr4, efer) && !self.load_pdptes() {
            self.inject(vector::GP, Some(0));
            return None;
        }
        self.cr0_shadow = v;
        vmx::write(f::CR0_READ_SHADOW, v);
        let hw = caps
            .guest_cr0_fixed(unrestricted)
            .apply(v & !(mode::CR0_CD | mode::CR0_NW));
        vmx::write(f::GUEST_CR0, hw);
        // The MMIO cache's lookup does not compare CR0 and EFER.
        self.insn_cache.clear();
        if efer != s.efer {
            vmx::write(f::GUEST_EFER, efer);
            self.set_ia32e(efer & mode::EFER_LMA != 0);
        }
        if (v ^ s.cr0) & (mode::CR0_PE | mode::CR0_PG) != 0 {
            // Paging turned on or off: the guest's translations go.
            vmx::invvpid(self.vpid);
        }
        self.skip_instruction();
        None
    }

    /// Loads the four PDPTEs of 32-bit PAE paging from the guest's CR3 into the VMCS, as a
    /// MOV to CR0, CR3 or CR4 that the hypervisor emulates would have: `false` (nothing
    /// loaded; the MOV is #GP(0)) when a present one has reserved bits or they are not in
    /// guest RAM.
    fn load_pdptes(&mut self) -> bool {
        let at = vmx::read(f::GUEST_CR3) & 0xffff_ffe0;
        let mut b = [0u8; 32];
        if !crate::gpt::GuestMemory::read(&EptMemory::new(self.eptp_root()), at, &mut b) {
            return false;
        }
        let e: [u64; 4] = core::array::from_fn(|i| {
            u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap_or_default())
        });
        let maxphyaddr = core::arch::x86_64::__cpuid(0x8000_0008).eax & 0xff;
        if !mode::pdptes_valid(&e, maxphyaddr) {
            return false;
        }
        for (i, v) in e.into_iter().enumerate() {
            vmx::write(f::GUEST_PDPTE0 + 2 * i as u32, v);
        }
        true
    }

    /// Sets or clears the "IA-32e mode guest" entry control (it must equal EFER.LMA).
    fn set_ia32e(&mut self, on: bool) {
        let m = u64::from(ctl::IA32E_MODE_GUEST.mask());
        let e = vmx::read(f::ENTRY_CONTROLS);
        vmx::write(f::ENTRY_CONTROLS, if on { e | m } else { e & !m });
    }

    /// A guest write to CR0 or CR4 that touched a bit the hypervisor owns, or any CR3
    /// access on a CPU that forces CR3 exiting.
    fn cr_access(&mut self, a: CrAccess) -> Option<VmExit> {
        let caps = vmx::caps().map(|c| c.0)?;
        match a {
            CrAccess::Write { cr: 0, gpr } => return self.write_cr0(self.gpr(gpr)),
            CrAccess::Write { cr: 4, gpr } => {
                let v = self.gpr(gpr);
                let s = self.mode_state();
                let pae_ok = mode::cr4_mode_ok(&s, v);
                if v & CR4_OWNED != 0 || !pae_ok || !caps.cr4_fixed().accepts(v | vmx::CR4_VMXE) {
                    self.inject(vector::GP, Some(0));
                    return None;
                }
                if mode::pae_paging(s.cr0, v, s.efer)
                    && mode::pdptes_reload(s.cr4, v)
                    && !self.load_pdptes()
                {
                    self.inject(vector::GP, Some(0));
                    return None;
                }
                self.cr4_shadow = v;
                vmx::write(f::CR4_READ_SHADOW, v);
                vmx::write(f::GUEST_CR4, caps.cr4_fixed().apply(v));
                // PGE, PCIDE and friends changed: drop the guest's translations.
                vmx::invvpid(self.vpid);
                self.skip_instruction();
            }
            CrAccess::Write { cr: 3, gpr } => {
                // Bit 63 is PCID's "no flush" flag, not part of CR3; the flush below is
                // a superset of what the guest asked for.
                let old = vmx::read(f::GUEST_CR3);
                vmx::write(f::GUEST_CR3, self.gpr(gpr) & !(1 << 63));
                let s = self.mode_state();
                if mode::pae_paging(s.cr0, s.cr4, s.efer) && !self.load_pdptes() {
                    vmx::write(f::GUEST_CR3, old);
                    self.inject(vector::GP, Some(0));
                    return None;
                }
                vmx::invvpid(self.vpid);
                self.skip_instruction();
            }
            CrAccess::Read { cr: 3, gpr } => {
                let v = vmx::read(f::GUEST_CR3);
                self.set_gpr_value(gpr, v);
                self.skip_instruction();
            }
            // CR8 (the task priority) is the vCPU's own: there is no virtual local APIC
            // yet, and the real TPR is the host's.
            CrAccess::Write { cr: 8, gpr } => {
                let v = self.gpr(gpr);
                if v >> 4 != 0 {
                    self.inject(vector::GP, Some(0));
                    return None;
                }
                self.cr8 = v;
                self.skip_instruction();
            }
            CrAccess::Read { cr: 8, gpr } => {
                self.set_gpr_value(gpr, self.cr8);
                self.skip_instruction();
            }
            CrAccess::Clts => return self.write_cr0(self.guest_cr0() & !(1 << 3)),
            CrAccess::Lmsw(v) => {
                // LMSW writes MP, EM, TS and may set PE, never clear it.
                let old = self.guest_cr0();
                return self.write_cr0((old & !0xe) | u64::from(v & 0xf) | (old & 1));
            }
            _ => self.inject(vector::UD, None),
        }
        None
    }

    /// XSETBV: XCR0 only, x87 always on, AVX only with SSE, bits the CPU supports.
    fn xsetbv(&mut self) {
        let idx = self.gprs.0[RCX] as u32;
        let v = (self.gprs.0[RDX] << 32) | (self.gprs.0[RAX] & 0xffff_ffff);
        let supported = {
            let r = core::arch::x86_64::__cpuid_count(0xd, 0);
            (u64::from(r.edx) << 32) | u64::from(r.eax)
        };
        if self.guest_cr4() & CR4_OSXSAVE == 0 || !self.fpu.xsave {
            self.inject(vector::UD, None);
            return;
        }
        if !cpuid::xcr0_valid(idx, v, supported) {
            self.inject(vector::GP, Some(0));
            return;
        }
        // SAFETY: the value passed the architectural checks (cpuid::xcr0_valid); XCR0 is
        // the guest's while it runs and the hypervisor uses no extended state (soft-float).
        unsafe {
            asm!("xsetbv", in("ecx") 0u32, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nomem, nostack))
        };
        self.fpu.xcr0 = v;
        self.skip_instruction();
    }

    /// Sets the guest's CR2 and injects a #PF (the CR2 register is the guest's while it
    /// runs: the VMCS does not switch it and the hypervisor takes no page faults).
    fn inject_page_fault(&mut self, addr: u64, error_code: u32) {
        // SAFETY: CR2 only reports page-fault addresses; the hypervisor never reads it.
        unsafe { asm!("mov cr2, {}", in(reg) addr, options(nomem, nostack)) };
        self.inject(vector::PF, Some(error_code));
    }

    /// The result of a guest-memory access failing for a string I/O element.
    fn walk_failed(&mut self, e: WalkError, port: u16) -> Option<VmExit> {
        match e {
            WalkError::PageFault { addr, error_code } => {
                self.inject_page_fault(addr, error_code);
                None
            }
            // Not RAM (as for INS), or a non-canonical address: #GP(0).
            WalkError::NotRam { .. } | WalkError::NonCanonical { .. } => {
                self.inject(vector::GP, Some(0));
                None
            }
            WalkError::La57 => Some(VmExit::Unsupported {
                reason: "string port I/O with 5-level paging",
                syndrome: u64::from(port),
            }),
        }
    }

    /// IN, OUT, INS, OUTS: one exit to the VMM per element (`None`: handled here, re-enter).
    #[inline(always)]
    fn port_io(&mut self, io: IoQual) -> Option<VmExit> {
        let width = match io.size {
            1 => AccessWidth::Byte,
            2 => AccessWidth::Half,
            _ => AccessWidth::Word,
        };
        let mask = (1u64 << (8 * u32::from(io.size))) - 1;
        let len = vmx::read(f::EXIT_INSTRUCTION_LEN) as u8;
        if !io.string {
            if io.input {
                self.pending_port = Some(PendingPort {
                    size: io.size,
                    len,
                    string: None,
                });
                if self.pc.is_some() {
                    return self.pc_port_read(io.port, width);
                }
                return Some(VmExit::PortRead {
                    port: io.port,
                    width,
                });
            }
            if self.pc.is_some() {
                if let Some(done) = self.pc_write(io, width, mask, len) {
                    return done;
                }
            }
            let value = self.gprs.0[RAX] & mask;
            self.advance(u64::from(len));
            return Some(VmExit::PortWrite {
                value,
                port: io.port,
                width,
            });
        }
        self.string_io(io, width, mask, len)
    }

    /// The virtual PC's answer to a read of `port` (PIC, PIT, RTC, PM1, ...), `None` when
    /// the port is the VM's (or there is no PC).
    #[inline(always)]
    fn pc_read(&self, port: u16, width: AccessWidth) -> Option<u64> {
        let pc = self.pc.as_ref()?;
        pc.port_read(port, width, axhal::time::ticks())
    }

    /// IN with a virtual PC ([`pc::complete_read`]); out of line, so that the completion
    /// it inlines stays off the path of a VM without one.
    #[inline(never)]
    fn pc_port_read(&mut self, port: u16, width: AccessWidth) -> Option<VmExit> {
        let answer = self.pc_read(port, width);
        pc::complete_read(self, answer, port, width)
    }

    /// OUT to a port of the virtual PC: `Some` with what the exit becomes when a PC model
    /// took it, `None` when the port is the VM's.
    #[inline(never)]
    fn pc_write(
        &mut self,
        io: IoQual,
        width: AccessWidth,
        mask: u64,
        len: u8,
    ) -> Option<Option<VmExit>> {
        let pc = self.pc.as_ref()?;
        let now = axhal::time::ticks();
        let done = pc.port_write(io.port, width, self.gprs.0[RAX] & mask, now)?;
        self.advance(u64::from(len));
        Some(done.exit())
    }

    /// INS, OUTS: [`Self::port_io`]'s string forms, out of its line.
    #[inline(never)]
    fn string_io(&mut self, io: IoQual, width: AccessWidth, mask: u64, len: u8) -> Option<VmExit> {
        let info = vmx::read(f::EXIT_INSTRUCTION_INFO) as u32;
        let long = vmx::read(f::segment(1).2) & (1 << 13) != 0;
        let addr_size = crate::exit::string_address_size(info).unwrap_or(if long { 8 } else { 4 });
        if io.rep && crate::exit::string_count_zero(self.gprs.0[RCX], addr_size) {
            self.advance(u64::from(len));
            return None;
        }
        if !long && !self.string_segment_ok(io, info, addr_size) {
            return None;
        }
        let linear = vmx::read(f::GUEST_LINEAR_ADDRESS);
        let step = StringIo {
            linear,
            size: io.size,
            rep: io.rep,
            addr_size,
            len,
        };
        if io.input {
            self.pending_port = Some(PendingPort {
                size: io.size,
                len,
                string: Some(step),
            });
            // A port of the virtual PC: the element is stored here, like IN's value.
            let answer = self.pc_read(io.port, width);
            return pc::complete_read(self, answer, io.port, width);
        }
        let mem = EptMemory::new(self.eptp_root());
        let mut b = [0u8; 4];
        let n = usize::from(io.size);
        if let Err(e) = self.paging().read(&mem, linear, &mut b[..n], Access::Read) {
            return self.walk_failed(e, io.port);
        }
        let value = u64::from(u32::from_le_bytes(b)) & mask;
        self.string_done(&step, RSI);
        let now = axhal::time::ticks();
        if let Some(done) = self
            .pc
            .as_ref()
            .and_then(|pc| pc.port_write(io.port, width, value, now))
        {
            return done.exit();
        }
        Some(VmExit::PortWrite {
            value,
            port: io.port,
            width,
        })
    }

    /// Outside 64-bit code: whether the string I/O element may go through its segment (ES
    /// for INS, the one the instruction information names for OUTS), as the CPU checks it
    /// (`mode::string_segment_ok`: the CPU exits before it does); when not, its #GP(0)
    /// (#SS(0) for SS) is injected.
    fn string_segment_ok(&mut self, io: IoQual, info: u32, addr_size: u8) -> bool {
        let n = if io.input { 0 } else { (info >> 15) & 7 };
        let (_, limit, ar, _) = f::segment(n);
        let ar = vmx::read(ar);
        let seg = mode::DataSegment {
            limit: vmx::read(limit) as u32,
            access: ar as u8,
            big: ar & (1 << 14) != 0,
            unusable: ar & (1 << 16) != 0,
        };
        let amask = match addr_size {
            2 => 0xffff,
            4 => 0xffff_ffff,
            _ => u64::MAX,
        };
        let index = self.gprs.0[if io.input { RDI } else { RSI }] & amask;
        let protected = self.guest_cr0() & 1 != 0 && vmx::read(f::GUEST_RFLAGS) & (1 << 17) == 0;
        if mode::string_segment_ok(&seg, index, io.size, io.input, protected) {
            return true;
        }
        self.inject(if n == 2 { vector::SS } else { vector::GP }, Some(0));
        false
    }

    /// [`ArchVCpu::complete_port_read`] for INS: stores `value` at the element's address.
    #[inline(never)]
    fn complete_ins(&mut self, s: &StringIo, value: u64) {
        let mem = EptMemory::new(self.eptp_root());
        let bytes = (value as u32).to_le_bytes();
        match self
            .paging()
            .write(&mem, s.linear, &bytes[..usize::from(s.size)])
        {
            Ok(()) => self.string_done(s, RDI),
            Err(WalkError::PageFault { addr, error_code }) => {
                self.inject_page_fault(addr, error_code)
            }
            // Not RAM or not canonical: the element is dropped and the guest gets #GP.
            Err(_) => self.inject(vector::GP, Some(0)),
        }
    }

    /// Moves the index register `reg` (RSI, RDI) and RCX past one string element, and RIP
    /// past the instruction when it is complete.
    fn string_done(&mut self, s: &StringIo, reg: usize) {
        let df = vmx::read(f::GUEST_RFLAGS) & (1 << 10) != 0;
        let (index, rcx, done) = crate::exit::string_step(
            self.gprs.0[reg],
            self.gprs.0[RCX],
            s.size,
            df,
            s.rep,
            s.addr_size,
        );
        self.gprs.0[reg] = index;
        self.gprs.0[RCX] = rcx;
        if done {
            self.advance(u64::from(s.len));
        }
    }

    /// What the decode of the instruction at RIP depends on besides memory
    /// (crate::insn_cache): RIP, CR3 and CR4 (the cache is dropped when CR0 or EFER
    /// change), the CS mode and base.
    #[inline(always)]
    fn insn_key(&self) -> insn_cache::Key<insn_cache::Cr3Cr4> {
        let paging = insn_cache::Cr3Cr4 {
            cr3: vmx::read(f::GUEST_CR3),
            cr4: vmx::read(f::GUEST_CR4),
        };
        let rip = vmx::read(f::GUEST_RIP);
        let cs_ar = vmx::read(f::segment(1).2);
        let cs = if cs_ar & (1 << 13) != 0 {
            insn_cache::CodeSegment::LONG64
        } else {
            let mode = if cs_ar & (1 << 14) != 0 {
                CpuMode::Protected32
            } else {
                CpuMode::Code16
            };
            insn_cache::CodeSegment::new(mode, vmx::read(f::segment(1).3))
        };
        insn_cache::Key { rip, paging, cs }
    }

    /// The nested fault the VMM gets for the EPT violation of qualification `qual` at
    /// guest-physical `gpa`.
    fn ept_fault(qual: u64, gpa: u64) -> VmExit {
        let v = EptViolation::decode(qual);
        VmExit::NestedPageFault {
            gpa: GuestPhysAddr::new(gpa as usize),
            access: crate::exit::fault_access(v.fetch, v.write),
        }
    }

    /// An EPT violation by a data access whose instruction is not in the cache: the
    /// instruction at RIP fetched, decoded and cached, then the exit as on a hit; the
    /// nested fault for the VMM if it cannot be fetched or is not an MMIO access the vCPU
    /// emulates. Out of line, and the whole rest of the exit with it, so that a hit's
    /// [`insn::MmioAccess`] stays in registers (a value shared by the two paths went
    /// through memory, copied twice); the key is made again here, so that a hit keeps it
    /// in registers (a reference to it passed on had stored it on the stack). It returns an
    /// `Option<VmExit>` as the other out-of-line exits do, so that the hit's exit is
    /// stored where theirs are (a `VmExit` of its own went to a slot of its own, then was
    /// copied). `#[cold]`: without it, the same loop's hypercall the VM answers and port
    /// read measured 2 more each (the MMIO read 1 less: code placement).
    #[cold]
    #[inline(never)]
    fn mmio_miss(&mut self, qual: u64, gpa: u64) -> Option<VmExit> {
        let key = self.insn_key();
        Some(match self.decode_mmio(&key) {
            Some(a) => self.mmio_exit(gpa, key.rip, &a),
            None => Self::ept_fault(qual, gpa),
        })
    }

    /// Fetches and decodes the instruction at `key` (its RIP) and caches the result; `None`
    /// if it cannot be fetched or is not an MMIO access the vCPU emulates.
    fn decode_mmio(
        &mut self,
        key: &insn_cache::Key<insn_cache::Cr3Cr4>,
    ) -> Option<insn::MmioAccess> {
        let mem = EptMemory::new(self.eptp_root());
        let decode = |b: &[u8]| insn::MmioAccess::decode(b, key.cs.mode());
        self.insn_cache
            .fill_walking(key, &self.paging(), &mem, decode)
    }

    #[inline(always)]
    fn ept_violation(&mut self, qual: u64) -> Option<VmExit> {
        let v = EptViolation::decode(qual);
        let gpa = vmx::read(f::GUEST_PHYSICAL_ADDRESS);
        if !v.is_data_access() {
            return Some(Self::ept_fault(qual, gpa));
        }
        if self.pc.is_some() && pc::in_xapic_page(gpa) {
            return self.xapic_access(qual, gpa);
        }
        // The hit's access is read where the cache holds it: a copy (or a pointer to one
        // passed on) kept it in memory.
        let key = self.insn_key();
        match self.insn_cache.get(&key) {
            Some(a) => {
                let a = *a;
                Some(self.mmio_exit(gpa, key.rip, &a))
            }
            None => self.mmio_miss(qual, gpa),
        }
    }

    /// The exit for the VMM of the MMIO access `a` (the instruction at `rip`) at
    /// guest-physical `gpa`: a load waits for its value, a store is done (RIP past it).
    /// (A load's fields are read before anything is stored, so that the compiler reads
    /// them where the cache holds them instead of from a copy.)
    #[inline(always)]
    fn mmio_exit(&mut self, gpa: u64, rip: u64, a: &insn::MmioAccess) -> VmExit {
        let (i, width) = (a.insn, a.width);
        let gpa = GuestPhysAddr::new(gpa as usize);
        match i.op {
            MmioOp::Load {
                dest, sign_extend, ..
            } => {
                let exit = VmExit::MmioRead {
                    gpa,
                    reg: usize::from(dest.index),
                    width,
                    sign_ext: sign_extend,
                };
                self.pending = Some(PendingLoad {
                    merge: a.merge,
                    next: rip.wrapping_add(u64::from(i.len)),
                });
                exit
            }
            MmioOp::StoreReg { src, .. } => {
                let value = insn::store_value(&i.op, self.gpr(src.index));
                self.store_rip = Some(rip);
                self.advance(u64::from(i.len));
                VmExit::MmioWrite { gpa, value, width }
            }
            MmioOp::StoreImm { .. } => {
                let value = insn::store_value(&i.op, 0);
                self.store_rip = Some(rip);
                self.advance(u64::from(i.len));
                VmExit::MmioWrite { gpa, value, width }
            }
        }
    }

    /// A data access (an EPT violation of qualification `qual`) in the xAPIC page (the instruction at RIP from the
    /// cache, or decoded): this vCPU's own local APIC, completed here; the nested fault for
    /// the VMM if the instruction is not an MMIO access. A store may send a STARTUP IPI
    /// ([`Self::start_request`]).
    #[inline(never)]
    fn xapic_access(&mut self, qual: u64, gpa: u64) -> Option<VmExit> {
        let pc = self.pc.clone()?;
        let key = self.insn_key();
        let cached = self.insn_cache.get(&key).copied();
        let Some(a) = cached.or_else(|| self.decode_mmio(&key)) else {
            return Some(Self::ept_fault(qual, gpa));
        };
        let (i, width) = (a.insn, a.width);
        let now = axhal::time::ticks();
        let value = match i.op {
            MmioOp::Load { .. } => {
                self.pending = Some(PendingLoad {
                    merge: a.merge,
                    next: key.rip.wrapping_add(u64::from(i.len)),
                });
                self.complete_mmio_read(pc.xapic_read(self.index, gpa, width, now));
                return None;
            }
            MmioOp::StoreReg { src, .. } => insn::store_value(&i.op, self.gpr(src.index)),
            MmioOp::StoreImm { .. } => insn::store_value(&i.op, 0),
        };
        self.advance(u64::from(i.len));
        pc.xapic_write(self.index, gpa, width, value, now);
        self.start_request()
    }
}

impl ArchVCpu for VmxVCpu {
    type CreateConfig = crate::X86VCpuConfig;

    /// `config.vmid` is the VM's identifier, used as its VPID.
    fn new(vcpu_id: usize, config: crate::X86VCpuConfig) -> Result<Self, VCpuError> {
        let (caps, _) =
            *vmx::enable().map_err(|_| vcpu_err("VMX cannot be enabled on this CPU"))?;
        let vmcs = vmx::alloc_frame().ok_or(vcpu_err("no memory for a VMCS"))?;
        // SAFETY: a fresh frame of ours; the revision id goes in its first word.
        unsafe { (vmcs as *mut u32).write(caps.revision_id()) };
        // A new VMCS is cleared before its first VMPTRLD.
        if !vmx::vmclear(vmcs) {
            return Err(vcpu_err("VMCLEAR of a new VMCS failed"));
        }
        let mut fpu = Fpu::new(vmx::xsave_enabled());
        fpu.reset();
        Ok(Self {
            fpu,
            vpid: config.vmid,
            pc: config.pc,
            interrupts_enabled: false,
            sipi_out: false,
            sipi_vector: None,
            index: vcpu_id,
            vm_id: None,
            vmcs,
            msr_bitmap: Box::new(MsrBitmap::new()),
            io_bitmaps: Box::new(config.io_ports.vmx_bitmaps()),
            gprs: Gprs::default(),
            entry: 0,
            eptp: 0,
            start_arg: 0,
            proc_ctls: 0,
            loaded_on: usize::MAX,
            launched: false,
            reset_pending: true,
            pending: None,
            pending_port: None,
            store_rip: None,
            insn_cache: insn_cache::Cache::EMPTY,
            switched: [0; 5],
            cr8: 0,
            debug_regs: [0, 0, 0, 0, 0xffff_0ff0],
            cr0_shadow: entry::CR0,
            cr4_shadow: entry::CR4,
        })
    }

    fn set_entry(&mut self, entry: GuestPhysAddr) {
        self.entry = entry.as_usize() as u64;
    }

    fn set_stage2_root(&mut self, root: HostPhysAddr) {
        self.eptp = IntelEpt::eptp(root);
        self.insn_cache.clear();
    }

    fn set_gpr(&mut self, idx: usize, value: u64) {
        if idx < 16 && idx != RSP {
            self.gprs.0[idx] = value;
        }
    }

    fn setup(&mut self) -> Result<(), VCpuError> {
        self.gprs = Gprs::default();
        self.gprs.0[RDI] = self.start_arg;
        self.pending = None;
        self.pending_port = None;
        self.insn_cache.clear();
        self.switched = [0; 5];
        self.cr8 = 0;
        self.debug_regs = [0, 0, 0, 0, 0xffff_0ff0];
        self.fpu.reset();
        self.sipi_out = false;
        self.sipi_vector = self
            .pc
            .as_ref()
            .and_then(|pc| pc.take_startup_vector(self.index));
        if self.sipi_vector.is_some() && !vmx::caps().is_some_and(|c| c.1.unrestricted()) {
            return Err(vcpu_err(
                "a STARTUP IPI needs real mode, and this CPU has no unrestricted guest",
            ));
        }
        self.reset_pending = true;
        Ok(())
    }

    fn run_with<R>(
        &mut self,
        mut handle: impl FnMut(&mut Self, VmExit) -> ControlFlow<R>,
    ) -> Result<R, VCpuError> {
        self.begin_run()?;
        loop {
            let exit = self.run_until_exit()?;
            let interrupt = exit == VmExit::ExternalInterrupt;
            if let ControlFlow::Break(r) = handle(self, exit) {
                return Ok(r);
            }
            if interrupt {
                self.arm_preemption_timer();
            }
        }
    }

    #[inline(always)]
    fn complete_mmio_read(&mut self, value: u64) {
        if let Some(p) = self.pending.take() {
            self.update_gpr(p.merge.dest, |old| p.merge.apply(old, value));
            self.set_rip(p.next);
        }
    }

    #[inline(always)]
    fn complete_port_read(&mut self, value: u64) {
        let Some(p) = self.pending_port.take() else {
            return;
        };
        let mask = (1u64 << (8 * u32::from(p.size))) - 1;
        match p.string {
            None => {
                let old = self.gprs.0[RAX];
                // IN EAX zero-extends into RAX; IN AL / AX keep the other bits.
                self.gprs.0[RAX] = if p.size == 4 {
                    value & mask
                } else {
                    (old & !mask) | (value & mask)
                };
                self.advance(u64::from(p.len));
            }
            Some(s) => self.complete_ins(&s, value & mask),
        }
    }

    fn hypercall_args(&self) -> [u64; 6] {
        let g = &self.gprs.0;
        [g[RDI], g[RSI], g[RDX], g[R10], g[R8], g[R9]]
    }

    fn set_return_value(&mut self, value: u64) {
        self.gprs.0[RAX] = value;
    }

    fn inject_data_fault(&mut self, _gpa: GuestPhysAddr) {
        // x86 has no data abort: an access nothing claims is a #GP(0) at the instruction.
        self.pending = None;
        if let Some(rip) = self.store_rip.take() {
            vmx::write(f::GUEST_RIP, rip);
            // The store did not complete: no single-step trap after it.
            let pending = vmx::read(f::GUEST_PENDING_DEBUG);
            vmx::write(f::GUEST_PENDING_DEBUG, pending & !(1 << 14));
        }
        self.inject(vector::GP, Some(0));
    }

    fn set_vm_id(&mut self, vm_id: u64) {
        self.vm_id = Some(vm_id);
    }

    fn put(&mut self) {
        if self.loaded_on == usize::MAX {
            return;
        }
        for (i, m) in msr::SWITCHED.iter().enumerate() {
            self.switched[i] = regs::rdmsr(*m);
        }
        self.interrupts_enabled = vmx::read(f::GUEST_RFLAGS) & RFLAGS_IF != 0;
        self.fpu.save();
        self.debug_regs = save_debug_regs();
        vmx::vmclear(self.vmcs);
        self.loaded_on = usize::MAX;
        self.launched = false;
    }

    fn vcpu_index(target: u64, count: usize) -> Option<usize> {
        (target < count as u64).then_some(target as usize)
    }

    fn set_start_arg(&mut self, arg: u64) {
        self.start_arg = arg;
        self.gprs.0[RDI] = arg;
    }

    fn complete_power(&mut self, reply: PowerReply) {
        // A SIPI's start has no reply: the sender's registers stay as they are.
        if !core::mem::take(&mut self.sipi_out) {
            self.gprs.0[RAX] = power::reply_code(reply);
        }
    }

    /// An NMI, or an interrupt the guest can take (RFLAGS.IF when it was put), in its
    /// local APIC.
    fn wakeup_pending(&self) -> bool {
        self.pc.as_ref().is_some_and(|pc| {
            pc.wakeup_pending(self.index, axhal::time::ticks(), self.interrupts_enabled)
        })
    }

    /// The local APIC timer's deadline (and on vCPU 0 the PIT's), in TSC ticks: the host's
    /// counter.
    fn timer_deadline(&self) -> Option<u64> {
        self.pc.as_ref().and_then(|pc| pc.deadline(self.index))
    }
}

impl Drop for VmxVCpu {
    fn drop(&mut self) {
        self.put();
        vmx::free_frame(self.vmcs);
    }
}
