//! The SVM vCPU: its VMCB, the world switch (VMLOAD/VMRUN/VMSAVE) and the exit handling
//! (x86_64 bare metal only). QEMU TCG, where it runs, has no NRIP-save and no decode
//! assists: the next RIP and the instruction behind an MMIO access come from the guest's
//! own bytes.

use super::check::{self, VmcbState};
use super::hw;
use super::vmcb::{
    self, ctl, event, opcode, save, CrWrite, ExitCode, IoInfo, IoPermissionMap, MsrPermissionMap,
    NpfInfo, EFER_SVME,
};
use crate::cpuid::{self, CpuidContext};
use crate::entry;
use crate::exit::vector;
use crate::fpu::{restore_debug_regs, save_debug_regs, Fpu};
use crate::gpt::{Access, Paging, WalkError};
use crate::guestmem::NestedMemory;
use crate::insn::{self, CpuMode, LoadMerge, MmioAccess, MmioOp};
use crate::insn_cache::{self, Cache, Fetched};
use crate::mode;
use crate::msr::{self, MsrContext, MsrWrite};
use crate::pc::{self, Injection, Ready, VirtualPc};
use crate::power;
use alloc::boxed::Box;
use alloc::sync::Arc;
use axaddrspace::{AmdNpt, GuestPhysAddr, HostPhysAddr};
use axdevice_base::AccessWidth;
use axvcpu::{hypercall, ArchVCpu, PowerReply, VCpuError, VmExit};
use core::arch::asm;
use core::ops::ControlFlow;

/// General-purpose registers by encoding, the world switch's layout. RAX is copied from and
/// to the VMCB around each run; RSP lives in the VMCB (`SvmVCpu::gpr`), its slot here only
/// holds a value set before the VMCB is written.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Regs([u64; 16]);

/// Register numbers the exits use.
mod r {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RSP: usize = 4;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
}

/// An access waiting for its value from the VMM: a load's decoded instruction, or a port
/// read (with the INS element's address).
#[derive(Clone, Copy, Debug)]
enum Waiting {
    Load {
        merge: LoadMerge,
        next: u64,
    },
    Port {
        size: u8,
        next: u64,
        ins: Option<Element>,
    },
}

/// One element of INS/OUTS: where it is, its size, and how the registers step.
#[derive(Clone, Copy, Debug)]
struct Element {
    linear: u64,
    size: u8,
    /// The instruction's address size in bytes.
    addr_size: u8,
    rep: bool,
}

/// An SVM vCPU. `repr(C)` with the guest's registers first, as [`crate::VmxVCpu`]'s: the
/// two backends' register files are at the same place, so that `X86VCpu`'s register
/// accessors (`set_return_value`, `hypercall_args`) are the same code for both.
#[repr(C)]
pub struct SvmVCpu {
    regs: Regs,
    fpu: Fpu,
    /// The VM's virtual PC, if it has one.
    pc: Option<Arc<VirtualPc>>,
    /// Set up to start in real mode at this SIPI vector (CS = vector << 8, IP = 0).
    sipi: Option<u8>,
    /// The `CpuUp` exit just returned came from a SIPI: its reply is dropped.
    sipi_exit: bool,
    /// The guest's EFER.LME, kept out of the VMCB while paging and CR4.PAE are off
    /// ([`Self::set_efer`]).
    lme_held: bool,
    /// An NMI was injected and its handler has not returned (IRET intercepted).
    nmi_blocked: bool,
    /// The IRET that ends the NMI handler exited: NMIs are unblocked once it has run, before
    /// the entry after the next exit. Counts the entries until then (2 at the IRET's exit:
    /// the entry that runs it, then that one); 0 when not waiting.
    iret_entries: u8,
    asid: u32,
    index: usize,
    vm_id: Option<u64>,
    /// The VMCB's frame (physical = virtual).
    vmcb: u64,
    msrpm: Box<MsrPermissionMap>,
    iopm: Box<IoPermissionMap>,
    entry: u64,
    ncr3: u64,
    start_arg: u64,
    /// The CPU this vCPU's state is loaded on (`usize::MAX`: put).
    loaded_on: usize,
    /// This CPU's VMSAVE area for the host.
    host_area: u64,
    reset_pending: bool,
    waiting: Option<Waiting>,
    /// The RIP of the MMIO store just handed to the VMM, for an injected fault. Every exit
    /// path that can hand the VMM another exit clears it (not every exit: the fixed-answer
    /// hypercall does not).
    store_rip: Option<u64>,
    debug_regs: [u64; 5],
    /// The last MMIO instruction decoded and the last bytes fetched at RIP
    /// (crate::insn_cache), dropped on reset, when the nested root changes and when CR0,
    /// CR4 or EFER change ([`Cr3`]).
    mmio_cache: Cache<MmioAccess, Cr3>,
    code_cache: Cache<Fetched, Cr3>,
    /// The last instruction measured by [`SvmVCpu::measure`].
    len_cache: Cache<Measured, Cr3>,
    /// CR0 and EFER when the caches were last checked against them, on a vCPU whose CR0
    /// writes do not exit (started by a SIPI: its trampoline switches modes itself);
    /// `None` while every change of theirs exits.
    cr0_seen: Option<[u64; 2]>,
}

/// The paging registers the instruction caches are keyed on: CR3 alone. The guest changes
/// CR4 and EFER only through exits (their writes are intercepted), and CR0 too unless its
/// writes are not intercepted ([`SvmVCpu::cr0_seen`]): the vCPU drops the caches wherever
/// it changes them, so a lookup reads and compares one register instead of four.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Cr3(u64);

/// The instruction caches' key.
type InsnKey = insn_cache::Key<Cr3>;

/// An instruction's length measured from its bytes ([`SvmVCpu::measure`]).
#[derive(Clone, Copy, Debug)]
struct Measured {
    /// The opcode it was measured as ([`Measured::id`]).
    opcode: u32,
    len: u8,
}

impl Measured {
    /// An opcode of up to 3 bytes as one number (its length, then its bytes).
    #[inline(always)]
    fn id(op: &[u8]) -> u32 {
        op.iter()
            .fold(op.len() as u32, |id, &b| (id << 8) | u32::from(b))
    }
}

/// The world switch, inlined into the run loop: with GIF clear, the guest's RAX into the
/// VMCB, VMLOAD the guest's FS/GS/TR/LDTR and SYSCALL MSRs (the host's are in its
/// `host_area`, saved by [`SvmVCpu::load`]), load the guest's other registers (RSP comes
/// from the VMCB), set IF (so that physical interrupts, held by GIF=0 until the guest
/// runs, exit it: V_INTR_MASKING makes the host's IF at VMRUN decide) and VMRUN. After the
/// exit (RAX holds the VMCB's address again, restored from the host save area): clear IF,
/// VMSAVE the guest's state, reset TLB_CONTROL (a flush is asked for one entry at a time),
/// store the guest's registers and its RAX from the VMCB, VMLOAD the host's state, set GIF
/// (interrupts stay pending with IF clear until the VMM takes them).
///
/// Every general-purpose register is declared clobbered, so the compiler saves the
/// callee-saved ones once per run loop rather than the assembly on every entry; only RBX
/// and RBP, which `asm!` cannot name, are pushed here, with the vCPU's address. The VMCB
/// and the host area are read from the vCPU, so the loop passes one pointer.
///
/// # Safety
/// `vcpu` is this CPU's current vCPU, whose VMCB has complete control and guest state; SVM
/// is on in this CPU (EFER.SVME, VM_HSAVE_PA), the vCPU's `host_area` is its VMSAVE area,
/// and interrupts are masked.
#[inline(always)]
unsafe fn world_switch(vcpu: *mut SvmVCpu) {
    // SAFETY: the caller's contract; the assembly restores RSP, RBX and RBP and declares
    // every other register it changes. The register file is at offset 0 (`repr(C)`).
    unsafe {
        asm!(
            "push rbp",
            "push rbx",
            // The vCPU: [rsp].
            "push rsi",
            "mov rax, [rsi + {vmcb}]",
            "mov rdi, [rsi]",
            "mov [rax + {rax}], rdi",
            "clgi",
            "vmload rax",
            "mov rcx, [rsi + 8]",
            "mov rdx, [rsi + 16]",
            "mov rbx, [rsi + 24]",
            "mov rbp, [rsi + 40]",
            "mov rdi, [rsi + 56]",
            "mov r8, [rsi + 64]",
            "mov r9, [rsi + 72]",
            "mov r10, [rsi + 80]",
            "mov r11, [rsi + 88]",
            "mov r12, [rsi + 96]",
            "mov r13, [rsi + 104]",
            "mov r14, [rsi + 112]",
            "mov r15, [rsi + 120]",
            "mov rsi, [rsi + 48]",
            "sti",
            "vmrun rax",
            "cli",
            "vmsave rax",
            "mov byte ptr [rax + {tlb}], {none}",
            "mov rax, [rsp]",
            "mov [rax + 8], rcx",
            "mov [rax + 16], rdx",
            "mov [rax + 24], rbx",
            "mov [rax + 40], rbp",
            "mov [rax + 48], rsi",
            "mov [rax + 56], rdi",
            "mov [rax + 64], r8",
            "mov [rax + 72], r9",
            "mov [rax + 80], r10",
            "mov [rax + 88], r11",
            "mov [rax + 96], r12",
            "mov [rax + 104], r13",
            "mov [rax + 112], r14",
            "mov [rax + 120], r15",
            "mov rcx, [rax + {vmcb}]",
            "mov rcx, [rcx + {rax}]",
            "mov [rax], rcx",
            "mov rax, [rax + {host}]",
            "vmload rax",
            "stgi",
            "pop rsi",
            "pop rbx",
            "pop rbp",
            vmcb = const core::mem::offset_of!(SvmVCpu, vmcb),
            host = const core::mem::offset_of!(SvmVCpu, host_area),
            rax = const save::RAX,
            tlb = const ctl::TLB_CONTROL,
            none = const vmcb::tlb::NONE,
            inout("rsi") vcpu => _,
            out("rdi") _,
            out("rax") _,
            out("rcx") _,
            out("rdx") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
        )
    }
}

// The world switch's register file is the vCPU's first field.
const _: () = assert!(core::mem::offset_of!(SvmVCpu, regs) == 0);

/// The access width of `bytes` (1, 2, 4 or 8).
fn access_width(bytes: u8) -> AccessWidth {
    [
        AccessWidth::Byte,
        AccessWidth::Half,
        AccessWidth::Word,
        AccessWidth::Dword,
    ][(bytes.trailing_zeros() as usize).min(3)]
}

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.TF: a single-step trap follows each instruction.
const RFLAGS_TF: u64 = 1 << 8;

fn vcpu_err(what: &'static str) -> VCpuError {
    VCpuError::Unsupported(what)
}

/// Guest memory behind the VM's nested page table.
type NptMemory = NestedMemory<AmdNpt>;

impl SvmVCpu {
    fn rd(&self, off: usize) -> u64 {
        // SAFETY: `off` is a field offset inside this vCPU's VMCB frame (< 4 KiB, 8-byte
        // fields aligned), which it owns for its lifetime.
        unsafe { ((self.vmcb + off as u64) as *const u64).read_volatile() }
    }

    fn wr(&mut self, off: usize, v: u64) {
        // SAFETY: as in `rd`; the CPU reads the VMCB only during VMRUN, on this CPU.
        unsafe { ((self.vmcb + off as u64) as *mut u64).write_volatile(v) }
    }

    fn rd8(&self, off: usize) -> u8 {
        // SAFETY: as in `rd`, one byte.
        unsafe { ((self.vmcb + off as u64) as *const u8).read_volatile() }
    }

    fn wr8(&mut self, off: usize, v: u8) {
        // SAFETY: as in `wr`, one byte.
        unsafe { ((self.vmcb + off as u64) as *mut u8).write_volatile(v) }
    }

    /// A segment: selector, attributes, limit and base at `off`.
    fn wr_segment(&mut self, off: usize, selector: u16, attr: u16, limit: u32, base: u64) {
        let lo = u64::from(selector) | u64::from(attr) << 16 | u64::from(limit) << 32;
        self.wr(off, lo);
        self.wr(off + 8, base);
    }

    fn segment_attr(&self, off: usize) -> u16 {
        (self.rd(off) >> 16) as u16
    }

    fn segment_base(&self, off: usize) -> u64 {
        self.rd(off + 8)
    }

    fn paging(&self) -> Paging {
        Paging {
            cr0: self.rd(save::CR0),
            cr3: self.rd(save::CR3),
            cr4: self.rd(save::CR4),
            efer: self.rd(save::EFER),
        }
    }

    fn memory(&self) -> NptMemory {
        NptMemory::new(self.ncr3)
    }

    fn mode(&self) -> CpuMode {
        if self.code64() {
            CpuMode::Long64
        } else if self.segment_attr(save::CS) & (1 << 10) != 0 {
            CpuMode::Protected32
        } else {
            CpuMode::Code16
        }
    }

    /// Whether the guest runs 64-bit code: EFER.LMA and CS.L (bit 9 of the attributes,
    /// tested in the VMCB's word without extracting them).
    #[inline(always)]
    fn code64(&self) -> bool {
        self.rd(save::EFER) & (1 << 10) != 0 && self.rd(save::CS) & (1 << (16 + 9)) != 0
    }

    /// The code segment of a key outside 64-bit code, out of line.
    #[cold]
    #[inline(never)]
    fn legacy_code_segment(&self) -> insn_cache::CodeSegment {
        insn_cache::CodeSegment::new(self.mode(), self.segment_base(save::CS))
    }

    /// What an instruction's decode at RIP depends on besides memory (crate::insn_cache):
    /// RIP, CR3 and the code segment, the caches dropped first if CR0 or EFER changed
    /// without an exit ([`Self::cr0_seen`]).
    #[inline(always)]
    fn insn_key(&mut self) -> InsnKey {
        if let Some(seen) = self.cr0_seen {
            if seen != [self.rd(save::CR0), self.rd(save::EFER)] {
                self.cr0_changed();
            }
        }
        insn_cache::Key {
            rip: self.rd(save::RIP),
            paging: Cr3(self.rd(save::CR3)),
            cs: if self.code64() {
                insn_cache::CodeSegment::LONG64
            } else {
                self.legacy_code_segment()
            },
        }
    }

    /// IA32_EFER as the guest sees it (SVME included): the VMCB's, with the LME it holds
    /// back ([`Self::set_efer`]).
    fn guest_efer(&self) -> u64 {
        self.rd(save::EFER) | if self.lme_held { mode::EFER_LME } else { 0 }
    }

    /// Makes `efer` (SVME included) the guest's IA32_EFER under the current CR0 and CR4.
    /// While LME is set with paging and CR4.PAE off (`mode::lme_held`) the VMCB gets it
    /// without LME and CR0 writes are intercepted (SIPI-started vCPUs drop that intercept),
    /// so that the CR0 write that turns paging on applies LME (`mode::cr0_write`): QEMU's
    /// #VMEXIT loads the host's CR0 through its MOV-to-CR0 path with the guest's EFER and
    /// CR4 still in place, which skips the load in that state and left the hypervisor
    /// running with the guest's CR0 (docs/reliability.md).
    fn set_efer(&mut self, efer: u64) {
        self.lme_held = mode::lme_held(efer, self.rd(save::CR0), self.rd(save::CR4));
        if self.lme_held {
            self.wr(save::EFER, efer & !mode::EFER_LME);
            let i = self.rd(ctl::CR_INTERCEPTS);
            self.wr(ctl::CR_INTERCEPTS, i | 1 << 16);
        } else {
            self.wr(save::EFER, efer);
        }
        // The instruction caches' key leaves EFER out, and CR0 and CR4, whose writes
        // (`cr_write`) end here too.
        self.clear_caches();
    }

    /// CR0 or EFER changed without an exit: the caches dropped, the new values kept.
    #[cold]
    #[inline(never)]
    fn cr0_changed(&mut self) {
        self.clear_caches();
        self.cr0_seen = Some([self.rd(save::CR0), self.rd(save::EFER)]);
    }

    /// Drops the instruction caches: what they were decoded under changed.
    fn clear_caches(&mut self) {
        self.mmio_cache.clear();
        self.code_cache.clear();
        self.len_cache.clear();
    }

    /// The bytes at RIP (as many as the guest's pages give, up to 15), cached.
    fn fetch(&mut self) -> Option<Fetched> {
        let key = self.insn_key();
        let cached = self.code_cache.get(&key).copied();
        cached.or_else(|| {
            let (walk, mem) = (self.paging(), self.memory());
            self.code_cache.fill_walking(&key, &walk, &mem, Fetched::of)
        })
    }

    /// The length of the instruction at RIP if its bytes are `op` (with prefixes:
    /// [`vmcb::insn_len`]), cached with the bytes it was measured from: a hit checks the
    /// key and the words that hold the page-table entries and those bytes, not the whole
    /// fetch (crate::insn_cache).
    #[inline(always)]
    fn measure(&mut self, op: &[u8]) -> Option<u8> {
        let id = Measured::id(op);
        let key = self.insn_key();
        match self.len_cache.get(&key) {
            Some(m) if m.opcode == id => Some(m.len),
            _ => self.measure_miss(op, id),
        }
    }

    /// [`Self::measure`] without a matching entry: fetched, measured and cached. (The key
    /// is made again here, so that a hit keeps it in registers.)
    #[inline(never)]
    fn measure_miss(&mut self, op: &[u8], id: u32) -> Option<u8> {
        let key = self.insn_key();
        let long = key.cs.mode() == CpuMode::Long64;
        let measure = |b: &[u8]| {
            let len = vmcb::insn_len(b, op, long)?;
            Some((Measured { opcode: id, len }, len))
        };
        let (walk, mem) = (self.paging(), self.memory());
        let m = self.len_cache.fill_walking(&key, &walk, &mem, measure)?;
        Some(m.len)
    }

    /// A nested page fault by a data access whose instruction is not in the cache: the
    /// instruction at RIP fetched, decoded and cached, then the exit as on a hit; a nested
    /// fault for the VMM if it cannot be fetched or is not an MMIO access the vCPU
    /// emulates. Out of line, and the whole rest of the exit with it, so that a hit's
    /// [`MmioAccess`] stays in registers (a value shared by the two paths went through
    /// memory, copied twice).
    #[inline(never)]
    fn mmio_miss(&mut self, npf: NpfInfo, raw: u64) -> Option<VmExit> {
        Some(match self.decode_mmio() {
            Some(a) => self.mmio_exit(raw, self.rd(save::RIP), &a),
            None => Self::npf_exit(npf, raw),
        })
    }

    /// The MMIO instruction at RIP fetched, decoded and cached; `None` if it cannot be
    /// fetched or is not an MMIO access the vCPU emulates.
    fn decode_mmio(&mut self) -> Option<MmioAccess> {
        let key = self.insn_key();
        let decode = |b: &[u8]| MmioAccess::decode(b, key.cs.mode());
        let (walk, mem) = (self.paging(), self.memory());
        self.mmio_cache.fill_walking(&key, &walk, &mem, decode)
    }

    /// The nested fault the VMM gets for `npf` at guest-physical `raw`.
    fn npf_exit(npf: NpfInfo, raw: u64) -> VmExit {
        VmExit::NestedPageFault {
            gpa: GuestPhysAddr::new(raw as usize),
            access: crate::exit::fault_access(npf.fetch, npf.write),
        }
    }

    /// The length of the instruction at RIP, known to be `op` (the exit says so): its
    /// prefixes counted from its bytes (no NRIP-save), else the bare opcode's length.
    fn len_of(&mut self, op: &[u8]) -> u64 {
        u64::from(self.measure(op).unwrap_or(op.len() as u8))
    }

    fn set_rip(&mut self, rip: u64) {
        self.wr(save::RIP, rip);
        // An instruction completed: no STI / MOV SS shadow is left.
        let s = self.rd(ctl::INT_STATE);
        self.wr(ctl::INT_STATE, s & !1);
        if self.rd(save::RFLAGS) & RFLAGS_TF != 0 {
            self.single_step_trap();
        }
    }

    /// The instruction the vCPU just emulated ran with RFLAGS.TF set: its single-step
    /// trap, a #DB with DR6.BS, is injected (RIP is already past it), as the CPU would
    /// have raised it.
    #[cold]
    #[inline(never)]
    fn single_step_trap(&mut self) {
        let dr6 = self.rd(save::DR6);
        self.wr(save::DR6, dr6 | 1 << 14);
        self.inject(vector::DB, None);
    }

    /// Moves RIP past the instruction `op` at RIP.
    fn skip(&mut self, op: &[u8]) {
        let next = self.rd(save::RIP).wrapping_add(self.len_of(op));
        self.set_rip(next);
    }

    fn inject(&mut self, v: u8, code: Option<u32>) {
        self.wr(ctl::EVENT_INJ, event::exception(v, code));
    }

    fn inject_page_fault(&mut self, addr: u64, error_code: u32) {
        self.wr(save::CR2, addr);
        self.inject(vector::PF, Some(error_code));
    }

    fn cpl(&self) -> u8 {
        self.rd8(save::CPL) & 3
    }

    /// General-purpose register `i`: RSP is the VMCB's, the others the register file's.
    #[inline(always)]
    fn gpr(&self, i: u8) -> u64 {
        if usize::from(i) == r::RSP {
            self.rd(save::RSP)
        } else {
            self.regs.0[usize::from(i & 15)]
        }
    }

    /// Replaces general-purpose register `i` by `f` of its value (RSP in the VMCB), with
    /// one test of where it is.
    #[inline(always)]
    fn update_reg(&mut self, i: u8, f: impl FnOnce(u64) -> u64) {
        if usize::from(i) == r::RSP {
            let v = f(self.rd(save::RSP));
            self.wr(save::RSP, v);
        } else {
            let reg = &mut self.regs.0[usize::from(i & 15)];
            *reg = f(*reg);
        }
    }

    /// Makes this vCPU's state the CPU's: SVM enabled here, the extended and debug state
    /// restored, the VMCB written after set-up; the TLB is flushed for the first run
    /// here (no flush-by-ASID: the whole TLB).
    fn load(&mut self) -> Result<(), VCpuError> {
        let area = hw::enable().map_err(|_| vcpu_err("SVM cannot be enabled on this CPU"))?;
        let cpu = axhal::cpu::id();
        let mut flush = false;
        // The host's FS/GS/TR/LDTR hidden state and SYSCALL MSRs, which the world switch
        // restores after each exit: the same on every run of this CPU (GS base is axhal's
        // per-CPU area), saved once per `run_with`.
        // SAFETY: `area` is this CPU's VMSAVE area (a frame `hw::enable` gave it) and SVM
        // is on here; VMSAVE only writes that frame.
        unsafe { asm!("vmsave rax", in("rax") area) };
        if self.loaded_on != cpu {
            self.host_area = area;
            self.loaded_on = cpu;
            self.fpu.restore();
            restore_debug_regs(&self.debug_regs);
            flush = true;
        }
        if self.reset_pending {
            self.write_vmcb();
            self.reset_pending = false;
            flush = true;
        }
        if flush {
            self.wr8(ctl::TLB_CONTROL, vmcb::tlb::ALL);
        }
        Ok(())
    }

    /// The control area and the entry contract's guest state (docs/x86.md).
    fn write_vmcb(&mut self) {
        self.lme_held = false;
        // SAFETY: the VMCB frame is this vCPU's, 4 KiB, and not in use (between runs).
        unsafe { core::ptr::write_bytes(self.vmcb as *mut u8, 0, 0x1000) };
        // CR0 and CR4 writes (bits 16, 20): the entry contract's fixed PE and PG, and
        // #GP for reserved CR4 bits (QEMU would end the run with VMEXIT_INVALID).
        self.wr(ctl::CR_INTERCEPTS, (1 << 16) | (1 << 20));
        self.wr(ctl::EXCEPTION_INTERCEPTS, 1 << vector::UD);
        self.wr(
            ctl::INTERCEPT3,
            u64::from(vmcb::INTERCEPT3) | u64::from(vmcb::INTERCEPT4) << 32,
        );
        self.wr(ctl::IOPM_BASE, &*self.iopm as *const IoPermissionMap as u64);
        self.wr(
            ctl::MSRPM_BASE,
            &*self.msrpm as *const MsrPermissionMap as u64,
        );
        self.wr(ctl::ASID, u64::from(self.asid));
        self.wr(ctl::INT_CTL, vmcb::V_INTR_MASKING);
        self.wr(ctl::NP_ENABLE, 1);
        self.wr(ctl::N_CR3, self.ncr3);
        let code = vmcb::attributes(entry::CODE_ACCESS_RIGHTS);
        let data = vmcb::attributes(entry::DATA_ACCESS_RIGHTS);
        for off in [save::ES, save::SS, save::DS, save::FS, save::GS] {
            self.wr_segment(off, entry::DATA_SELECTOR, data, u32::MAX, 0);
        }
        self.wr_segment(save::CS, entry::CODE_SELECTOR, code, u32::MAX, 0);
        self.wr_segment(save::GDTR, 0, 0, entry::GDT_LIMIT, entry::GDT_GPA);
        self.wr_segment(save::IDTR, 0, 0, 0, 0);
        self.wr_segment(save::LDTR, 0, 0, 0, 0);
        let tss = vmcb::attributes(entry::TSS_ACCESS_RIGHTS);
        self.wr_segment(
            save::TR,
            entry::TSS_SELECTOR,
            tss,
            entry::TSS_LIMIT,
            entry::TSS_GPA,
        );
        self.wr8(save::CPL, 0);
        self.wr(save::EFER, entry::EFER | EFER_SVME);
        self.wr(save::CR0, entry::CR0);
        self.wr(save::CR3, entry::PML4_GPA);
        self.wr(save::CR4, entry::CR4);
        self.wr(save::DR6, 0xffff_0ff0);
        self.wr(save::DR7, 0x400);
        self.wr(save::RFLAGS, entry::RFLAGS);
        self.wr(save::RIP, self.entry);
        self.wr(save::RSP, self.regs.0[r::RSP]);
        self.wr(save::G_PAT, entry::PAT);
        self.cr0_seen = None;
        if let Some(v) = self.sipi {
            self.real_mode_start(v);
            self.cr0_seen = Some([self.rd(save::CR0), self.rd(save::EFER)]);
        }
        self.clear_caches();
    }

    /// The state after INIT and a SIPI with vector `v`: real mode at CS = `v << 8`, IP = 0,
    /// paging and protection off. CR0 writes are the guest's own from here (not
    /// intercepted): the trampoline goes to protected and long mode itself, and the CPU
    /// keeps EFER.LMA.
    fn real_mode_start(&mut self, v: u8) {
        self.wr(ctl::CR_INTERCEPTS, 1 << 20);
        let base = u64::from(v) << 12;
        self.wr_segment(save::CS, u16::from(v) << 8, vmcb::REAL_CODE, 0xffff, base);
        for off in [save::ES, save::SS, save::DS, save::FS, save::GS] {
            self.wr_segment(off, 0, vmcb::REAL_DATA, 0xffff, 0);
        }
        self.wr_segment(save::GDTR, 0, 0, 0xffff, 0);
        self.wr_segment(save::IDTR, 0, 0, 0xffff, 0);
        self.wr_segment(save::LDTR, 0, vmcb::REAL_LDT, 0xffff, 0);
        self.wr_segment(save::TR, 0, vmcb::REAL_TSS, 0xffff, 0);
        self.wr(save::EFER, EFER_SVME);
        self.wr(save::CR0, vmcb::REAL_CR0);
        self.wr(save::CR3, 0);
        self.wr(save::CR4, 0);
        self.wr(save::RFLAGS, 2);
        self.wr(save::RIP, 0);
    }

    fn state(&self) -> VmcbState {
        VmcbState {
            efer: self.rd(save::EFER),
            cr0: self.rd(save::CR0),
            cr3: self.rd(save::CR3),
            cr4: self.rd(save::CR4),
            dr6: self.rd(save::DR6),
            dr7: self.rd(save::DR7),
            cs_attr: self.segment_attr(save::CS),
            intercept4: (self.rd(ctl::INTERCEPT3) >> 32) as u32,
            asid: self.rd(ctl::ASID) as u32,
            event_inj: self.rd(ctl::EVENT_INJ),
        }
    }

    /// Makes this vCPU current on this CPU for a run ([`Self::load`]). Before
    /// [`Self::run_until_exit`].
    pub(crate) fn begin_run(&mut self) -> Result<(), VCpuError> {
        self.load()
    }

    /// Enters the guest until an exit the VM must see (the others are handled here).
    /// Inlined, so that the one loop calling it ([`axvcpu::ArchVCpu::run_with`]) inlines
    /// the VM's exit handler too.
    #[inline(always)]
    pub(crate) fn run_until_exit(&mut self) -> Result<VmExit, VCpuError> {
        loop {
            if self.pc.is_some() {
                self.prepare_events();
            }
            // SAFETY: this vCPU is current here: its VMCB holds complete control and guest
            // state (`load`), SVM is on in this CPU (EFER.SVME, VM_HSAVE_PA) and
            // `host_area` is its VMSAVE area; interrupts are masked (the caller's
            // contract).
            unsafe { world_switch(self) };
            if let Some(exit) = self.handle_exit() {
                return Ok(exit);
            }
        }
    }

    /// Before an entry with a virtual PC: the event the guest should take now injected
    /// (EVENTINJ), or an exit requested for when it can (V_IRQ and the VINTR intercept for
    /// interrupts, the IRET intercept for NMIs), and the host timer armed for the local
    /// APIC's deadline while the guest runs (docs/x86-interrupts.md).
    fn prepare_events(&mut self) {
        let Some(pc) = self.pc.clone() else {
            return;
        };
        if self.iret_entries != 0 {
            self.iret_entries -= 1;
            // The NMI handler's IRET has run (and exited since) when this reaches 0.
            self.nmi_blocked &= self.iret_entries != 0;
        }
        let mut int_ctl = self.rd(ctl::INT_CTL) & !vmcb::V_IRQ_WINDOW;
        let mut i3 = self.rd(ctl::INTERCEPT3) & !u64::from(vmcb::i3::VINTR);
        let injecting = self.rd(ctl::EVENT_INJ) & event::VALID != 0;
        let shadow = self.rd(ctl::INT_STATE) & 1 != 0;
        let ready = Ready {
            irq: !injecting && !shadow && self.rd(save::RFLAGS) & RFLAGS_IF != 0,
            nmi: !injecting && !self.nmi_blocked,
        };
        match pc.next_injection(self.index, axhal::time::ticks(), ready) {
            Injection::Nmi => {
                self.wr(ctl::EVENT_INJ, event::nmi());
                self.nmi_blocked = true;
                i3 |= u64::from(vmcb::i3::IRET);
            }
            Injection::External(v) => self.wr(ctl::EVENT_INJ, event::interrupt(v)),
            // Blocked NMIs wait for the IRET intercept; an NMI behind another event, and
            // an interrupt, for the window.
            Injection::IrqWindow | Injection::NmiWindow => {
                int_ctl |= vmcb::V_IRQ_WINDOW;
                i3 |= u64::from(vmcb::i3::VINTR);
            }
            Injection::None => {}
        }
        self.wr(ctl::INT_CTL, int_ctl);
        self.wr(ctl::INTERCEPT3, i3);
        axhal::x86::set_guest_deadline(pc.deadline(self.index).unwrap_or(u64::MAX));
    }

    /// A start request a SIPI left in the virtual PC, as the exit that starts its vCPU.
    fn sipi_start(&mut self) -> Option<VmExit> {
        let s = self.pc.as_ref()?.take_start()?;
        self.sipi_exit = true;
        Some(VmExit::CpuUp {
            target: s.target as u64,
            entry: GuestPhysAddr::new(s.entry() as usize),
            arg: 0,
        })
    }

    /// Decodes the exit just taken: `None` when handled here (re-enter).
    ///
    /// The exits a guest makes most (MMIO, port I/O, hypercalls) are decoded here, inlined
    /// into the run loop; the others in [`Self::handle_other_exit`].
    ///
    /// Only a nested page fault and the exits handled out of line (an interrupt, an NMI,
    /// a shutdown ...) can interrupt an event's delivery ([`Self::redeliver`]); after an
    /// exit an instruction causes (I/O, the #UD of a `vmcall`, VMMCALL) nothing is
    /// injected unless its handling injects it, without reading EXITINTINFO.
    #[inline(always)]
    fn handle_exit(&mut self) -> Option<VmExit> {
        let code = ExitCode(self.rd(ctl::EXIT_CODE));
        match code {
            ExitCode::NPF => {
                self.redeliver();
                self.nested_page_fault(self.rd(ctl::EXIT_INFO1), self.rd(ctl::EXIT_INFO2))
            }
            ExitCode::IOIO => {
                self.wr(ctl::EVENT_INJ, 0);
                match IoInfo::decode(self.rd(ctl::EXIT_INFO1)) {
                    Some(io) => self.port_io(io, self.rd(ctl::EXIT_INFO2)),
                    None => {
                        self.inject(vector::GP, Some(0));
                        None
                    }
                }
            }
            _ if code == ExitCode::exception(vector::UD) => {
                // Intel's VMCALL is #UD on AMD: test guests built for both use it, and it
                // is taken as the hypercall; any other #UD is the guest's. The hit of the
                // length cache goes straight on.
                let key = self.insn_key();
                self.wr(ctl::EVENT_INJ, 0);
                match self.len_cache.get(&key) {
                    Some(m) if m.opcode == Measured::id(opcode::VMCALL) => {
                        self.hypercall(u64::from(m.len))
                    }
                    _ => self.undefined_opcode(),
                }
            }
            ExitCode::VMMCALL => {
                self.wr(ctl::EVENT_INJ, 0);
                let len = self.len_of(opcode::VMMCALL);
                self.hypercall(len)
            }
            _ => self.handle_other_exit(code),
        }
    }

    /// After an exit that may have interrupted an event's delivery: that event is
    /// delivered again at the next entry, unless the exit's handling injects something
    /// else.
    #[inline(always)]
    fn redeliver(&mut self) {
        let pending = self.rd(ctl::EXIT_INT_INFO);
        self.wr(
            ctl::EVENT_INJ,
            if pending & event::VALID != 0 {
                pending
            } else {
                0
            },
        );
    }

    /// A #UD without a cached VMCALL at RIP: the hypercall if the bytes there are VMCALL,
    /// else the guest's #UD.
    #[inline(never)]
    fn undefined_opcode(&mut self) -> Option<VmExit> {
        match self.measure(opcode::VMCALL) {
            Some(len) => self.hypercall(u64::from(len)),
            None => {
                self.inject(vector::UD, None);
                None
            }
        }
    }

    /// [`Self::handle_exit`] for every other exit code.
    #[inline(never)]
    fn handle_other_exit(&mut self, code: ExitCode) -> Option<VmExit> {
        self.redeliver();
        self.store_rip = None;
        // QEMU writes VMEXIT_INVALID as 32 bits of ones.
        let code = match code.0 {
            0xffff_ffff => ExitCode::INVALID,
            c => ExitCode(c),
        };
        let info1 = self.rd(ctl::EXIT_INFO1);
        match code {
            // The window opened: the next entry injects.
            ExitCode::VINTR => None,
            ExitCode::IRET => {
                let i3 = self.rd(ctl::INTERCEPT3) & !u64::from(vmcb::i3::IRET);
                self.wr(ctl::INTERCEPT3, i3);
                self.iret_entries = 2;
                None
            }
            // The host takes the interrupt (or NMI) once the VMM unmasks: GIF is set again
            // and IF is clear until then.
            ExitCode::INTR | ExitCode::NMI => Some(VmExit::ExternalInterrupt),
            ExitCode::SMI => None,
            ExitCode::CPUID => {
                let (leaf, sub) = (self.regs.0[r::RAX] as u32, self.regs.0[r::RCX] as u32);
                let h = core::arch::x86_64::__cpuid_count(leaf, sub);
                let ctx = CpuidContext {
                    vcpu_index: self.index as u8,
                    guest_cr4: self.rd(save::CR4),
                    // INVPCID runs unintercepted under SVM when the CPU has it.
                    invpcid: true,
                    tsc_khz: u32::try_from(axhal::time::ticks_per_sec() / 1000).unwrap_or(0),
                };
                let mut out = cpuid::filter(leaf, sub, [h.eax, h.ebx, h.ecx, h.edx], &ctx);
                if self.pc.is_some() {
                    out = cpuid::virtual_apic(leaf, out);
                }
                for (i, v) in [r::RAX, 3, r::RCX, r::RDX].into_iter().zip(out) {
                    self.regs.0[i] = u64::from(v);
                }
                self.skip(opcode::CPUID);
                None
            }
            ExitCode::HLT => {
                self.skip(opcode::HLT);
                Some(VmExit::Halt)
            }
            ExitCode::MSR => self.msr_access(info1 & 1 != 0),
            ExitCode::CR0_WRITE => self.cr_write(0),
            ExitCode::CR4_WRITE => self.cr_write(4),
            ExitCode::XSETBV => {
                self.xsetbv();
                None
            }
            ExitCode::SHUTDOWN => Some(VmExit::Unsupported {
                reason: "triple fault",
                syndrome: code.0,
            }),
            ExitCode::INIT => Some(VmExit::Unsupported {
                reason: "INIT signal while the guest ran",
                syndrome: code.0,
            }),
            ExitCode::INVD | ExitCode::WBINVD => {
                self.skip(if code == ExitCode::INVD {
                    opcode::INVD
                } else {
                    opcode::WBINVD
                });
                None
            }
            ExitCode::INVALID => Some(VmExit::Unsupported {
                reason: check::vmcb(&self.state())
                    .unwrap_or("VMRUN refused the VMCB (VMEXIT_INVALID)"),
                syndrome: code.0,
            }),
            ExitCode::RDPMC
            | ExitCode::RDTSCP
            | ExitCode::MONITOR
            | ExitCode::MWAIT
            | ExitCode::MWAIT_COND
            | ExitCode::VMRUN
            | ExitCode::VMLOAD
            | ExitCode::VMSAVE
            | ExitCode::STGI
            | ExitCode::CLGI
            | ExitCode::SKINIT
            | ExitCode::INVLPGA => {
                // Hidden in CPUID or not offered: undefined for the guest.
                self.inject(vector::UD, None);
                None
            }
            _ => Some(VmExit::Unsupported {
                reason: code.name(),
                syndrome: code.0,
            }),
        }
    }

    /// VMMCALL (or VMCALL taken from its #UD): the hypercall ABI of docs/x86.md.
    /// `len`: the instruction's length (already measured: no second fetch). Inlined into
    /// the run loop: a call returns its exit through memory (about 20 instructions more on
    /// every hypercall).
    #[inline(always)]
    fn hypercall(&mut self, len: u64) -> Option<VmExit> {
        if self.cpl() != 0 {
            self.inject(vector::UD, None);
            return None;
        }
        self.set_rip(self.rd(save::RIP).wrapping_add(len));
        let nr = self.regs.0[r::RAX];
        if let Some(v) = self.vm_id.and_then(|id| hypercall::fixed_answer(nr, id)) {
            self.regs.0[r::RAX] = v;
            return None;
        }
        self.store_rip = None;
        let g = &self.regs.0;
        Some(power::exit(nr, [g[r::RDI], g[r::RSI], g[r::RDX]]))
    }

    /// RDMSR / WRMSR: the virtual PC's APIC MSRs first, then the backend's own.
    fn msr_access(&mut self, write: bool) -> Option<VmExit> {
        let m = self.regs.0[r::RCX] as u32;
        let value = (self.regs.0[r::RDX] << 32) | (self.regs.0[r::RAX] & 0xffff_ffff);
        let apic = self.pc.as_ref().and_then(|pc| {
            let now = axhal::time::ticks();
            if write {
                pc.wrmsr(self.index, m, value, now)
                    .map(|r| r.map(|()| None))
            } else {
                pc.rdmsr(self.index, m, now).map(|r| r.map(Some))
            }
        });
        if let Some(result) = apic {
            match result {
                Ok(read) => {
                    if let Some(v) = read {
                        self.regs.0[r::RAX] = v & 0xffff_ffff;
                        self.regs.0[r::RDX] = v >> 32;
                    }
                    self.skip(if write { opcode::WRMSR } else { opcode::RDMSR });
                    return if write { self.sipi_start() } else { None };
                }
                Err(_) => {
                    self.inject(vector::GP, Some(0));
                    return None;
                }
            }
        }
        let efer = self.guest_efer();
        let ctx = MsrContext {
            vcpu_index: self.index,
            // The guest never sees SVME, which its VMCB must have.
            efer: efer & !EFER_SVME,
            paging: self.rd(save::CR0) & (1 << 31) != 0,
            amd: true,
        };
        let address = vmcb::ADDRESS_MSRS.iter().find(|&&(a, _)| a == m);
        let result = if let (true, Some(&(_, off))) = (write, address) {
            let v = (self.regs.0[r::RDX] << 32) | (self.regs.0[r::RAX] & 0xffff_ffff);
            if vmcb::canonical(v) {
                self.wr(off, v);
                Ok(())
            } else {
                Err(msr::Gp)
            }
        } else if write {
            let v = (self.regs.0[r::RDX] << 32) | (self.regs.0[r::RAX] & 0xffff_ffff);
            msr::write(m, v, &ctx).map(|w| {
                if let MsrWrite::Efer(e) = w {
                    self.set_efer(e | EFER_SVME);
                }
            })
        } else {
            msr::read(m, &ctx).map(|v| {
                self.regs.0[r::RAX] = v & 0xffff_ffff;
                self.regs.0[r::RDX] = v >> 32;
            })
        };
        match result {
            Ok(()) => self.skip(if write { opcode::WRMSR } else { opcode::RDMSR }),
            Err(msr::Gp) => self.inject(vector::GP, Some(0)),
        }
        None
    }

    /// MOV to CR0, LMSW, CLTS (`cr` 0; the VMX backend's CR0 rules with mode switches:
    /// `mode::cr0_write`) and MOV to CR4 (`cr` 4; reserved bits, PAE and LA57 in long
    /// mode, compatibility mode included, PCIDE), decoded from the guest's bytes: #GP for
    /// what the CPU refuses, else the register written and RIP moved.
    fn cr_write(&mut self, cr: u8) -> Option<VmExit> {
        let long = self.mode() == CpuMode::Long64;
        let decoded = self
            .fetch()
            .and_then(|f| CrWrite::decode(f.as_slice(), long));
        let wide = |v: u64| if long { v } else { v & 0xffff_ffff };
        let off = if cr == 0 { save::CR0 } else { save::CR4 };
        let old = self.rd(off);
        let (new, len) = match decoded {
            Some(CrWrite::Mov { cr: c, gpr, len }) if c == cr => (wide(self.gpr(gpr)), len),
            // LMSW sets or clears MP, EM, TS and can set (never clear) PE.
            Some(CrWrite::Lmsw { gpr, len }) if cr == 0 => {
                ((old & !0xe) | (self.gpr(gpr) & 0xf) | (old & 1), len)
            }
            Some(CrWrite::Clts { len }) if cr == 0 => (old & !(1 << 3), len),
            _ => {
                return Some(VmExit::Unsupported {
                    reason: "a control-register write the SVM backend cannot decode",
                    syndrome: self.rd(save::RIP),
                })
            }
        };
        let mut efer = self.guest_efer();
        let lma = efer & mode::EFER_LMA != 0;
        let ok = if cr == 0 {
            // Mode switches (PE, PG, long mode) under the rules of `mode::cr0_write`:
            // EFER.LMA follows paging with LME, which the VMCB must hold itself.
            let s = mode::ModeState {
                cr0: old,
                cr4: self.rd(save::CR4),
                efer,
                cs_long: self.segment_attr(save::CS) & (1 << 9) != 0,
            };
            match mode::cr0_write(&s, new, true) {
                mode::Cr0Write::Done { efer: e } => {
                    efer = e;
                    true
                }
                mode::Cr0Write::Gp => false,
            }
        } else {
            let (l1, l7) = (
                core::arch::x86_64::__cpuid_count(1, 0),
                core::arch::x86_64::__cpuid_count(7, 0),
            );
            let allowed = vmcb::cr4_allowed(l1.ecx, l7.ebx, l7.ecx);
            vmcb::cr4_write_ok(old, new, allowed, lma, self.rd(save::CR3))
        };
        if !ok {
            self.inject(vector::GP, Some(0));
            return None;
        }
        self.wr(off, new);
        // The instruction caches dropped too: their key leaves CR0 and CR4 out.
        self.set_efer(efer);
        // The CPU would flush the guest's translations (PGE, PCIDE, PG, PE ...).
        self.wr8(ctl::TLB_CONTROL, vmcb::tlb::ALL);
        let rip = self.rd(save::RIP).wrapping_add(u64::from(len));
        self.set_rip(rip);
        None
    }

    fn xsetbv(&mut self) {
        let v = (self.regs.0[r::RDX] << 32) | (self.regs.0[r::RAX] & 0xffff_ffff);
        let h = core::arch::x86_64::__cpuid_count(0xd, 0);
        let supported = (u64::from(h.edx) << 32) | u64::from(h.eax);
        if self.rd(save::CR4) & (1 << 18) == 0 || !self.fpu.xsave {
            self.inject(vector::UD, None);
        } else if !cpuid::xcr0_valid(self.regs.0[r::RCX] as u32, v, supported) {
            self.inject(vector::GP, Some(0));
        } else {
            // SAFETY: the value passed the architectural checks; XCR0 is the guest's while
            // its vCPU is loaded and the hypervisor uses no extended state.
            unsafe {
                asm!("xsetbv", in("ecx") 0u32, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nomem, nostack))
            };
            self.fpu.xcr0 = v;
            self.skip(opcode::XSETBV);
        }
    }

    /// The segment of a string instruction's source, as its VMCB offset: a segment-override
    /// prefix among its prefixes (not the bytes after it), else DS; the CPU reports none
    /// without decode assists.
    fn outs_segment(&mut self) -> usize {
        let mode = self.mode();
        let over = self.fetch().and_then(|f| {
            f.as_slice()
                .iter()
                .take_while(|&&x| crate::insn::is_prefix(x, mode))
                .find_map(|&x| match x {
                    0x26 => Some(save::ES),
                    0x2e => Some(save::CS),
                    0x36 => Some(save::SS),
                    0x64 => Some(save::FS),
                    0x65 => Some(save::GS),
                    _ => None,
                })
        });
        over.unwrap_or(save::DS)
    }

    /// The segment base of a string instruction's source ([`Self::outs_segment`]; 0 in
    /// 64-bit mode but for FS and GS).
    fn outs_base(&mut self) -> u64 {
        let seg = self.outs_segment();
        if self.mode() == CpuMode::Long64 && seg != save::FS && seg != save::GS {
            0
        } else {
            self.segment_base(seg)
        }
    }

    /// Outside 64-bit code: whether a string I/O element of `size` bytes at `index` (in
    /// the address size) may go through its segment (ES for INS, `input`; the source's
    /// for OUTS), as the CPU checks it (`mode::string_segment_ok`); when not, its #GP(0)
    /// (#SS(0) for SS) is injected.
    #[inline(never)]
    fn string_segment_ok(&mut self, input: bool, index: u64, size: u8) -> bool {
        let off = if input { save::ES } else { self.outs_segment() };
        let attr = self.segment_attr(off);
        let seg = mode::DataSegment {
            limit: (self.rd(off) >> 32) as u32,
            access: attr as u8,
            big: attr & (1 << 10) != 0,
            unusable: attr & 0x80 == 0,
        };
        let protected = self.rd(save::CR0) & 1 != 0 && self.rd(save::RFLAGS) & (1 << 17) == 0;
        if mode::string_segment_ok(&seg, index, size, input, protected) {
            return true;
        }
        let v = if off == save::SS {
            vector::SS
        } else {
            vector::GP
        };
        self.inject(v, Some(0));
        false
    }

    /// The address size of a string I/O instruction when EXITINFO1 gives none (QEMU TCG
    /// leaves bits 9:7 clear): the CS mode's, or with an address-size prefix (0x67) among
    /// the instruction's prefixes the other one (64-bit code: 32; 32-bit: 16; 16-bit: 32).
    fn string_addr_size(&mut self) -> u8 {
        let mode = self.mode();
        let prefixed = self.fetch().is_some_and(|f| {
            f.as_slice()
                .iter()
                .take_while(|&&x| crate::insn::is_prefix(x, mode))
                .any(|&x| x == 0x67)
        });
        match (mode, prefixed) {
            (CpuMode::Long64, false) => 8,
            (CpuMode::Protected32, true) => 2,
            (CpuMode::Code16, false) => 2,
            _ => 4,
        }
    }

    /// IN, OUT, INS, OUTS; `next` is EXITINFO2, the next RIP (given by the IOIO intercept
    /// itself, NRIP-save or not: QEMU fills it too). A port of the virtual PC is answered
    /// here, in the single and the string forms alike; any other goes to the VMM.
    fn port_io(&mut self, io: IoInfo, next: u64) -> Option<VmExit> {
        self.store_rip = None;
        let width = access_width(io.size);
        let mask = (1u64 << (8 * u32::from(io.size))) - 1;
        let element = if io.string {
            let long = self.mode() == CpuMode::Long64;
            let addr_size = match io.addr_size {
                Some(size) => size,
                None => self.string_addr_size(),
            };
            if io.rep && crate::exit::string_count_zero(self.regs.0[r::RCX], addr_size) {
                self.set_rip(next);
                return None;
            }
            let amask = match addr_size {
                2 => 0xffff,
                4 => 0xffff_ffff,
                _ => u64::MAX,
            };
            let at = self.regs.0[if io.input { r::RDI } else { r::RSI }] & amask;
            if !long && !self.string_segment_ok(io.input, at, io.size) {
                return None;
            }
            let (index, base) = if io.input {
                let es = if long { 0 } else { self.segment_base(save::ES) };
                (self.regs.0[r::RDI], es)
            } else {
                (self.regs.0[r::RSI], self.outs_base())
            };
            // Outside 64-bit code linear addresses are 32 bits (compatibility mode too).
            let lmask = if long { u64::MAX } else { 0xffff_ffff };
            Some(Element {
                linear: base.wrapping_add(index & amask) & lmask,
                size: io.size,
                rep: io.rep,
                addr_size,
            })
        } else {
            None
        };
        let now = || axhal::time::ticks();
        if io.input {
            self.waiting = Some(Waiting::Port {
                size: io.size,
                next,
                ins: element,
            });
            let answer = self
                .pc
                .as_ref()
                .and_then(|pc| pc.port_read(io.port, width, now()));
            return pc::complete_read(self, answer, io.port, width);
        }
        let value = match element {
            None => self.regs.0[r::RAX] & mask,
            Some(step) => {
                let mut b = [0u8; 4];
                let n = usize::from(io.size);
                match self
                    .paging()
                    .read(&self.memory(), step.linear, &mut b[..n], Access::Read)
                {
                    Ok(()) => u64::from(u32::from_le_bytes(b)) & mask,
                    Err(WalkError::PageFault { addr, error_code }) => {
                        self.inject_page_fault(addr, error_code);
                        return None;
                    }
                    Err(WalkError::La57) => {
                        return Some(VmExit::Unsupported {
                            reason: "string port I/O with 5-level paging",
                            syndrome: u64::from(io.port),
                        })
                    }
                    // Not RAM (as for INS), or a non-canonical address: #GP(0).
                    Err(_) => {
                        self.inject(vector::GP, Some(0));
                        return None;
                    }
                }
            }
        };
        // The instruction (or this element of it) is done, whoever takes the value.
        match element {
            Some(step) => self.string_done(&step, r::RSI, next),
            None => self.set_rip(next),
        }
        match self
            .pc
            .as_ref()
            .and_then(|pc| pc.port_write(io.port, width, value, now()))
        {
            Some(done) => done.exit(),
            None => Some(VmExit::PortWrite {
                value,
                port: io.port,
                width,
            }),
        }
    }

    /// One string element done: the index register and RCX stepped, RIP moved to `next`
    /// when the count is done.
    fn string_done(&mut self, s: &Element, reg: usize, next: u64) {
        let df = self.rd(save::RFLAGS) & (1 << 10) != 0;
        let (index, rcx, done) = crate::exit::string_step(
            self.regs.0[reg],
            self.regs.0[r::RCX],
            s.size,
            df,
            s.rep,
            s.addr_size,
        );
        self.regs.0[reg] = index;
        self.regs.0[r::RCX] = rcx;
        if done {
            self.set_rip(next);
        }
    }

    /// A nested page fault: a data access by an instruction becomes an MMIO exit (the
    /// instruction fetched and decoded here: no decode assists), anything else goes to the
    /// VMM as a nested fault. Inlined into the run loop ([`Self::handle_exit`]).
    #[inline(always)]
    fn nested_page_fault(&mut self, info1: u64, raw: u64) -> Option<VmExit> {
        self.store_rip = None;
        let npf = NpfInfo::decode(info1);
        if !npf.is_data_access() {
            return Some(Self::npf_exit(npf, raw));
        }
        if self.pc.is_some() && pc::in_xapic_page(raw) {
            return self.xapic_access(npf, raw);
        }
        // The hit's access is read where the cache holds it: a copy (or a pointer to one
        // passed on) kept it in memory.
        let key = self.insn_key();
        match self.mmio_cache.get(&key) {
            Some(a) => {
                let a = *a;
                Some(self.mmio_exit(raw, key.rip, &a))
            }
            None => self.mmio_miss(npf, raw),
        }
    }

    /// The exit for the VMM of the MMIO access `a` (the instruction at `rip`) at
    /// guest-physical `raw`: a load waits for its value, a store is done (RIP past it).
    /// (`a`'s fields are read before anything is stored or read from the VMCB, so that the
    /// compiler reads them where the cache holds them instead of from a copy.)
    #[inline(always)]
    fn mmio_exit(&mut self, raw: u64, rip: u64, a: &MmioAccess) -> VmExit {
        let gpa = GuestPhysAddr::new(raw as usize);
        let next = rip.wrapping_add(u64::from(a.insn.len));
        if let MmioOp::Load {
            dest, sign_extend, ..
        } = a.insn.op
        {
            let exit = VmExit::MmioRead {
                gpa,
                reg: usize::from(dest.index),
                width: a.width,
                sign_ext: sign_extend,
            };
            self.waiting = Some(Waiting::Load {
                merge: a.merge,
                next,
            });
            return exit;
        }
        let value = self.store_value(&a.insn.op);
        self.store_rip = Some(rip);
        self.set_rip(next);
        VmExit::MmioWrite {
            gpa,
            value,
            width: a.width,
        }
    }

    /// The value an MMIO store writes.
    #[inline(always)]
    fn store_value(&self, op: &MmioOp) -> u64 {
        match *op {
            MmioOp::StoreReg { src, .. } => insn::store_value(op, self.gpr(src.index)),
            _ => insn::store_value(op, 0),
        }
    }

    /// A data access in the xAPIC page (the instruction at RIP from the cache, or decoded):
    /// this vCPU's own local APIC, answered here, not by the VM's devices; a nested fault
    /// for the VMM if the instruction is not an MMIO access. A store may send a STARTUP
    /// IPI ([`Self::sipi_start`]).
    #[inline(never)]
    fn xapic_access(&mut self, npf: NpfInfo, raw: u64) -> Option<VmExit> {
        let pc = self.pc.clone()?;
        let key = self.insn_key();
        let cached = self.mmio_cache.get(&key).copied();
        let Some(a) = cached.or_else(|| self.decode_mmio()) else {
            return Some(Self::npf_exit(npf, raw));
        };
        let next = self.rd(save::RIP).wrapping_add(u64::from(a.insn.len));
        let now = axhal::time::ticks();
        if let MmioOp::Load { .. } = a.insn.op {
            self.waiting = Some(Waiting::Load {
                merge: a.merge,
                next,
            });
            let v = pc.xapic_read(self.index, raw, a.width, now);
            self.complete_mmio_read(v);
            return None;
        }
        let value = self.store_value(&a.insn.op);
        pc.xapic_write(self.index, raw, a.width, value, now);
        self.set_rip(next);
        self.sipi_start()
    }
}

impl ArchVCpu for SvmVCpu {
    type CreateConfig = crate::X86VCpuConfig;

    /// `config.vmid` is the VM's identifier, used as its ASID.
    fn new(vcpu_id: usize, config: crate::X86VCpuConfig) -> Result<Self, VCpuError> {
        hw::enable().map_err(|_| vcpu_err("SVM cannot be enabled on this CPU"))?;
        let vmcb = crate::vmx::alloc_frame().ok_or(vcpu_err("no memory for a VMCB"))?;
        let mut fpu = Fpu::new(crate::vmx::xsave_enabled());
        fpu.reset();
        Ok(Self {
            fpu,
            asid: u32::from(config.vmid),
            pc: config.pc,
            index: vcpu_id,
            vm_id: None,
            vmcb,
            msrpm: Box::new(MsrPermissionMap::new()),
            iopm: {
                let mut iopm = Box::new(IoPermissionMap::new());
                config.io_ports.open_in(&mut iopm);
                iopm
            },
            regs: Regs::default(),
            entry: 0,
            ncr3: 0,
            start_arg: 0,
            loaded_on: usize::MAX,
            host_area: 0,
            reset_pending: true,
            waiting: None,
            store_rip: None,
            debug_regs: [0, 0, 0, 0, 0xffff_0ff0],
            mmio_cache: Cache::EMPTY,
            code_cache: Cache::EMPTY,
            len_cache: Cache::EMPTY,
            cr0_seen: None,
            sipi: None,
            sipi_exit: false,
            lme_held: false,
            nmi_blocked: false,
            iret_entries: 0,
        })
    }

    fn set_entry(&mut self, entry: GuestPhysAddr) {
        self.entry = entry.as_usize() as u64;
    }

    fn set_stage2_root(&mut self, root: HostPhysAddr) {
        self.ncr3 = AmdNpt::ncr3(root);
        self.clear_caches();
    }

    fn set_gpr(&mut self, idx: usize, value: u64) {
        if idx < 16 {
            // RSP in the register file too: `write_vmcb` starts the VMCB's from it.
            self.regs.0[idx] = value;
            if idx == r::RSP {
                self.wr(save::RSP, value);
            }
        }
    }

    fn setup(&mut self) -> Result<(), VCpuError> {
        self.sipi = self
            .pc
            .as_ref()
            .and_then(|pc| pc.take_startup_vector(self.index));
        self.sipi_exit = false;
        self.nmi_blocked = false;
        self.iret_entries = 0;
        self.regs = Regs::default();
        self.regs.0[r::RDI] = self.start_arg;
        self.waiting = None;
        self.clear_caches();
        self.reset_pending = true;
        self.debug_regs = [0, 0, 0, 0, 0xffff_0ff0];
        self.fpu.reset();
        Ok(())
    }

    fn set_vm_id(&mut self, vm_id: u64) {
        self.vm_id = Some(vm_id);
    }

    /// Saves what the VMCB does not hold: the extended state, XCR0, DR0..DR3 and DR6.
    fn put(&mut self) {
        if self.loaded_on != usize::MAX {
            self.debug_regs = save_debug_regs();
            self.fpu.save();
            self.loaded_on = usize::MAX;
        }
    }

    #[inline(always)]
    fn complete_mmio_read(&mut self, value: u64) {
        if let Some(Waiting::Load { merge, next }) = self.waiting.take() {
            self.update_reg(merge.dest, |old| merge.apply(old, value));
            self.set_rip(next);
        }
    }

    fn complete_port_read(&mut self, value: u64) {
        let Some(Waiting::Port { size, next, ins }) = self.waiting.take() else {
            return;
        };
        let mask = (1u64 << (8 * u32::from(size))) - 1;
        let Some(s) = ins else {
            let old = self.regs.0[r::RAX];
            // IN EAX zero-extends into RAX; IN AL / AX keep the other bits.
            self.regs.0[r::RAX] = if size == 4 {
                value & mask
            } else {
                (old & !mask) | (value & mask)
            };
            self.set_rip(next);
            return;
        };
        let bytes = ((value & mask) as u32).to_le_bytes();
        match self
            .paging()
            .write(&self.memory(), s.linear, &bytes[..usize::from(size)])
        {
            Ok(()) => self.string_done(&s, r::RDI, next),
            Err(WalkError::PageFault { addr, error_code }) => {
                self.inject_page_fault(addr, error_code)
            }
            // Not RAM or not canonical: the element is dropped and the guest gets #GP.
            Err(_) => self.inject(vector::GP, Some(0)),
        }
    }

    fn hypercall_args(&self) -> [u64; 6] {
        let g = &self.regs.0;
        [g[r::RDI], g[r::RSI], g[r::RDX], g[10], g[8], g[9]]
    }

    fn set_return_value(&mut self, value: u64) {
        self.regs.0[r::RAX] = value;
    }

    fn inject_data_fault(&mut self, _gpa: GuestPhysAddr) {
        // No data abort on x86: an access nothing claims is a #GP(0) at the instruction.
        self.waiting = None;
        if let Some(rip) = self.store_rip.take() {
            self.wr(save::RIP, rip);
        }
        self.inject(vector::GP, Some(0));
    }

    fn vcpu_index(target: u64, count: usize) -> Option<usize> {
        (target < count as u64).then_some(target as usize)
    }

    fn set_start_arg(&mut self, arg: u64) {
        self.start_arg = arg;
        self.regs.0[r::RDI] = arg;
    }

    /// The hypercall's reply in RAX; a SIPI's start request has none.
    fn complete_power(&mut self, reply: PowerReply) {
        if core::mem::take(&mut self.sipi_exit) {
            return;
        }
        self.regs.0[r::RAX] = power::reply_code(reply);
    }

    /// An NMI, or an interrupt the guest can take (RFLAGS.IF), in its local APIC.
    fn wakeup_pending(&self) -> bool {
        self.pc.as_ref().is_some_and(|pc| {
            let interrupts = self.rd(save::RFLAGS) & RFLAGS_IF != 0;
            pc.wakeup_pending(self.index, axhal::time::ticks(), interrupts)
        })
    }

    /// The local APIC timer's deadline (and on vCPU 0 the PIT's), in TSC ticks: the
    /// host's counter.
    fn timer_deadline(&self) -> Option<u64> {
        self.pc.as_ref().and_then(|pc| pc.deadline(self.index))
    }

    fn run_with<R>(
        &mut self,
        mut handle: impl FnMut(&mut Self, VmExit) -> ControlFlow<R>,
    ) -> Result<R, VCpuError> {
        self.begin_run()?;
        loop {
            let exit = self.run_until_exit()?;
            if let ControlFlow::Break(r) = handle(self, exit) {
                return Ok(r);
            }
        }
    }
}

impl Drop for SvmVCpu {
    fn drop(&mut self) {
        self.put();
        crate::vmx::free_frame(self.vmcb);
    }
}
