//! The vCPU proper: guest registers, VS-level CSRs, floating-point state, G-stage, and the
//! run loop.

use crate::decode::{
    self, cause, decode_trap, sbi, RetKind, SbiAction, Trap, TrapAction, VCpuInfo,
};
use crate::harts::{fence, Hart, VmHarts};
use alloc::sync::Arc;
use axaddrspace::{GuestPhysAddr, HostPhysAddr, RiscvSv39x4};
use axhal::guest::{
    self, GuestExit, GuestRegs, HSTATUS_SPV, HSTATUS_SPVP, HSTATUS_VSXL, HSTATUS_VTW, SSTATUS_FS,
    SSTATUS_SPP,
};
use axvcpu::{hypercall, ArchVCpu, PowerReply, VCpuError, VmExit};
use core::arch::asm;
use core::ops::ControlFlow;

/// hedeleg: exceptions the guest handles itself (taken straight to VS mode): instruction
/// misaligned (0), illegal instruction (2), breakpoint (3), load/store misaligned (4, 6),
/// ecall from VU (8), and VS-stage instruction/load/store page faults (12, 13, 15).
const HEDELEG: u64 = (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 6)
    | (1 << 8)
    | (1 << 12)
    | (1 << 13)
    | (1 << 15);
/// hideleg: VS software (2), timer (6) and external (10) interrupts go to the guest.
const HIDELEG: u64 = (1 << 2) | (1 << 6) | (1 << 10);
/// hcounteren: the guest may read `cycle`, `time` and `instret`.
const HCOUNTEREN: u64 = 0b111;
/// henvcfg.STCE: the guest's `stimecmp` (vstimecmp, Sstc) is live.
const HENVCFG_STCE: u64 = 1 << 63;
/// The guest's `sie`/`vsie` enables: software, timer, external.
const SIE_SSIE: u64 = 1 << 1;
const SIE_STIE: u64 = 1 << 5;
const SIE_SEIE: u64 = 1 << 9;

/// hvip.VSSIP: the guest's supervisor software interrupt.
const HVIP_VSSIP: u64 = 1 << 2;
/// hvip.VSTIP: the guest's supervisor timer interrupt (raised by the hypervisor when it
/// emulates the timer, on CPUs without Sstc).
const HVIP_VSTIP: u64 = 1 << 6;
/// hvip.VSEIP: the guest's supervisor external interrupt.
const HVIP_VSEIP: u64 = 1 << 10;
/// sstatus.FS = Initial / Clean / Dirty.
const FS_INITIAL: u64 = 1 << 13;
const FS_CLEAN: u64 = 2 << 13;
const FS_DIRTY: u64 = 3 << 13;
/// vsstatus.SIE, SPIE, SPP.
const VSSTATUS_SIE: u64 = 1 << 1;
const VSSTATUS_SPIE: u64 = 1 << 5;
const VSSTATUS_SPP: u64 = 1 << 8;

/// `hfence.gvma zero, zero`: drop every guest translation (both stages, every VMID).
macro_rules! hfence_gvma_all {
    () => {
        ".option push\n.option arch, +h\nhfence.gvma zero, zero\n.option pop"
    };
}
/// `hfence.vvma zero, zero`: drop the running VMID's VS-stage translations.
macro_rules! hfence_vvma_all {
    () => {
        ".option push\n.option arch, +h\nhfence.vvma zero, zero\n.option pop"
    };
}

/// hgatp.VMID: bits 57:44 (VMIDMAX, 14 bits on RV64).
const HGATP_VMID_SHIFT: u32 = 44;
const HGATP_VMID_MASK: u64 = 0x3fff << HGATP_VMID_SHIFT;

/// [`vmid_bits`] once measured (`u32::MAX`: not yet).
static VMID_BITS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(u32::MAX);

/// Width of the hart's hardware VMID (VMIDLEN, 0 to 14 bits): measured once, by writing
/// all ones to hgatp.VMID (mode Bare) and counting the bits that stick, as the privileged
/// specification describes; hgatp is put back. Call it first while no guest is loaded on
/// this hart (at boot, before any VM); later calls return the measured value. A vCPU
/// refuses a VMID wider than this.
pub fn vmid_bits() -> u32 {
    let known = VMID_BITS.load(core::sync::atomic::Ordering::Relaxed);
    if known != u32::MAX {
        return known;
    }
    let irq = axhal::irq::save_and_disable();
    let got: u64;
    // SAFETY: writes hgatp with mode Bare and every VMID bit set, reads it back and puts
    // the previous value back, with interrupts masked; nothing runs in V = 1 meanwhile, and
    // hgatp is only used for guest translations.
    unsafe {
        asm!(
            "csrrw {old}, 0x680, {probe}",
            "csrr {got}, 0x680",
            "csrw 0x680, {old}",
            probe = in(reg) HGATP_VMID_MASK,
            old = out(reg) _,
            got = out(reg) got,
            options(nostack),
        )
    };
    axhal::irq::restore(irq);
    let bits = ((got & HGATP_VMID_MASK) >> HGATP_VMID_SHIFT).count_ones();
    VMID_BITS.store(bits, core::sync::atomic::Ordering::Relaxed);
    bits
}

/// How to create a riscv64 vCPU. Its hart id (a0 at entry, SBI hart masks) is its index
/// in the VM.
#[derive(Clone, Debug)]
pub struct RiscvVCpuConfig {
    /// Hardware VMID of its VM (the tag of its G-stage TLB entries), given by the
    /// hypervisor's allocator; at most [`vmid_bits`] wide.
    pub vmid: u16,
    /// What the harts of its VM share (one [`VmHarts`] per VM, with the VM's vCPU count).
    pub harts: Arc<VmHarts>,
}

macro_rules! vs_csrs {
    ($($name:ident = $csr:literal),* $(,)?) => {
        /// VS-level CSRs that belong to the guest (plus `hvip`, whose VSSIP the guest
        /// clears through `sip`).
        #[derive(Clone, Debug, Default)]
        struct VsCsrs {
            $($name: u64,)*
            /// The guest's timer compare value: `vstimecmp` with Sstc, the deadline of the
            /// emulated timer (SBI `set_timer`) without.
            vstimecmp: u64,
        }

        impl VsCsrs {
            fn save(&mut self, sstc: bool) {
                // SAFETY: reads VS-level CSRs from HS mode; no memory is touched.
                $(unsafe { asm!(concat!("csrr {}, ", $csr), out(reg) self.$name, options(nomem, nostack)) };)*
                if sstc {
                    // SAFETY: vstimecmp exists when the CPU has Sstc.
                    unsafe { asm!("csrr {}, 0x24d", out(reg) self.vstimecmp, options(nomem, nostack)) };
                }
            }

            fn restore(&self, sstc: bool) {
                // SAFETY: writes VS-level CSRs from HS mode. They only affect VS/VU mode,
                // which only this guest uses while they hold these values.
                $(unsafe { asm!(concat!("csrw ", $csr, ", {}"), in(reg) self.$name, options(nomem, nostack)) };)*
                if sstc {
                    // SAFETY: as above; vstimecmp exists when the CPU has Sstc.
                    unsafe { asm!("csrw 0x24d, {}", in(reg) self.vstimecmp, options(nomem, nostack)) };
                }
            }
        }
    };
}

vs_csrs!(
    vsstatus = "0x200",
    vsie = "0x204",
    vstvec = "0x205",
    vsscratch = "0x240",
    vsepc = "0x241",
    vscause = "0x242",
    vstval = "0x243",
    vsatp = "0x280",
    hvip = "0x645",
    // Supervisor CSRs the H extension gives VS mode no copy of: a guest reads and writes
    // the real ones (they govern its VU mode), so they are switched like its own.
    scounteren = "0x106",
    senvcfg = "0x10a",
);

/// The guest's floating-point registers (F and D).
#[repr(C)]
#[derive(Clone, Debug, Default)]
struct FpRegs {
    f: [u64; 32],
    fcsr: u64,
}

impl FpRegs {
    /// Loads the registers into the FPU.
    fn restore(&self) {
        // SAFETY: turns the FPU on in HS mode (sstatus.FS) just long enough to load f0-f31
        // and fcsr from `self`, then puts sstatus back. The hypervisor keeps no state of
        // its own in FP registers.
        unsafe {
            asm!(
                "csrrs {old}, sstatus, {fs}",
                ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
                "fld f\\n, (\\n * 8)({p})",
                ".endr",
                "ld {tmp}, 256({p})",
                "fscsr {tmp}",
                "csrw sstatus, {old}",
                p = in(reg) self as *const Self,
                fs = in(reg) FS_INITIAL,
                old = out(reg) _,
                tmp = out(reg) _,
                options(nostack, readonly),
            )
        };
    }

    /// Stores the FPU's registers into `self`.
    fn save(&mut self) {
        // SAFETY: as for `restore`, storing into `self`, which is exclusive.
        unsafe {
            asm!(
                "csrrs {old}, sstatus, {fs}",
                ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
                "fsd f\\n, (\\n * 8)({p})",
                ".endr",
                "frcsr {tmp}",
                "sd {tmp}, 256({p})",
                "csrw sstatus, {old}",
                p = in(reg) self as *mut Self,
                fs = in(reg) FS_INITIAL,
                old = out(reg) _,
                tmp = out(reg) _,
                options(nostack),
            )
        };
    }
}

/// What the VMM's answer to the last exit completes. Flat and without fields (an MMIO
/// load's register and width are in [`PendingLoad`]): the answer's path tests one byte,
/// and the kinds whose answer goes to `a1` are the ones below [`Pending::CallA0`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Pending {
    None = 0,
    /// An MMIO load, described by the vCPU's [`PendingLoad`].
    Load = 1,
    /// An SBI call handed to the VMM whose answer goes to `a1`, with `a0` = success
    /// ([`RetKind::Value`]), or one answered by `complete_power` ([`RetKind::Power`]).
    CallA1 = 2,
    /// An SBI call handed to the VMM whose answer goes to `a0` ([`RetKind::Legacy`],
    /// [`RetKind::Status`]).
    CallA0 = 3,
    /// One byte of a DBCN `console_write` handed to the VMM (its result is not the
    /// guest's: the call's answer is given once every byte went out).
    ConsoleByte = 4,
}

/// The MMIO load of [`Pending::Load`]: into `x[reg]` (1 to 31: a load into x0 leaves
/// nothing pending), its value cut by [`decode::extend`] with `shift`
/// ([`decode::width_shift`]).
#[derive(Clone, Copy, Debug, Default)]
struct PendingLoad {
    reg: u8,
    shift: u8,
    sign_ext: bool,
}

/// A DBCN `console_write` in progress: the bytes read from the guest, handed to the VMM one
/// exit at a time before the guest runs again.
#[derive(Clone, Copy, Debug)]
struct ConsoleOut {
    buf: [u8; sbi::DBCN_WRITE_MAX as usize],
    /// Bytes in `buf`; 0 when no write is in progress.
    len: usize,
    /// Bytes already handed to the VMM.
    sent: usize,
}

impl Default for ConsoleOut {
    fn default() -> Self {
        Self {
            buf: [0; sbi::DBCN_WRITE_MAX as usize],
            len: 0,
            sent: 0,
        }
    }
}

/// The trap behind the last exit, for fault injection.
#[derive(Clone, Copy, Debug, Default)]
struct LastTrap {
    scause: u64,
    stval: u64,
    /// The guest PC of the trapping instruction.
    pc: u64,
}

/// A riscv64 vCPU.
pub struct RiscvVCpu {
    regs: GuestRegs,
    vs: VsCsrs,
    fp: FpRegs,
    info: VCpuInfo,
    /// The guest's `hstatus` (VSXL, SPV, SPVP, VTW), written when the vCPU is loaded; the
    /// world switch sets SPV again on every entry.
    hstatus: u64,
    /// Whether the CPU has Sstc: the guest's timer is then `vstimecmp`, which the guest
    /// programs itself; otherwise the vCPU emulates it on SBI `set_timer` (through
    /// `hvip.VSTIP` and a hypervisor timer interrupt at the deadline).
    sstc: bool,
    vmid: u16,
    hgatp: u64,
    pending: Pending,
    /// The MMIO load of [`Pending::Load`].
    load: PendingLoad,
    last: LastTrap,
    /// Its index in the VM (= its hart id).
    index: usize,
    harts: Arc<VmHarts>,
    /// Its own slot in `harts`, entered and left around every guest run.
    hart: Arc<Hart>,
    /// Whether `hvip` must be worked out before every entry even when no IPI came: the VM
    /// has a PLIC (whose output can fall at any time) or the CPU no Sstc (the emulated
    /// timer).
    hvip_each_entry: bool,
    console: ConsoleOut,
    /// Whether the guest's VS CSRs, FP registers and HS controls are live in this physical
    /// CPU: from the `run` that loads them until `put`. Exits the VM handles itself re-enter
    /// the guest without saving or loading them.
    loaded: bool,
    /// The VM's id once `set_vm_id` told it: hypercalls with a fixed answer are then
    /// answered without an exit.
    vm_id: Option<u64>,
}

impl RiscvVCpu {
    /// Hypervisor CSRs for this guest: delegation, counters, Sstc, and the G-stage root.
    fn load_hs_state(&self) {
        let henvcfg = if self.sstc { HENVCFG_STCE } else { 0 };
        // SAFETY: HS-level controls for the guest about to run; none affects the
        // hypervisor's own (V = 0) execution.
        unsafe {
            asm!(
                "csrw 0x600, {hstatus}",
                "csrw 0x602, {hedeleg}",
                "csrw 0x603, {hideleg}",
                "csrw 0x606, {hcounteren}",
                "csrw 0x605, zero",
                "csrw 0x607, zero",
                "csrw 0x60a, {henvcfg}",
                hedeleg = in(reg) HEDELEG,
                hideleg = in(reg) HIDELEG,
                hcounteren = in(reg) HCOUNTEREN,
                henvcfg = in(reg) henvcfg,
                hstatus = in(reg) self.hstatus,
                options(nomem, nostack),
            )
        };
        let current: u64;
        // SAFETY: reads hgatp.
        unsafe { asm!("csrr {}, 0x680", out(reg) current, options(nomem, nostack)) };
        if current != self.hgatp {
            // SAFETY: installs this VM's G-stage root. Translations cached for another VM
            // (QEMU's TLB does not tell VMIDs apart) are dropped before the guest runs.
            unsafe {
                asm!(
                    "csrw 0x680, {}",
                    hfence_gvma_all!(),
                    in(reg) self.hgatp,
                    options(nostack),
                )
            };
        }
    }

    /// Runs the guest (with its state loaded) until an exit for the VMM. Traps the vCPU
    /// handles itself (an SBI call it answers, an injected exception, a fixed-answer
    /// hypercall) re-enter the guest at once.
    #[inline(always)]
    fn enter_guest(&mut self) -> VmExit {
        loop {
            if let Some(exit) = self.enter_guest_once() {
                return exit;
            }
        }
    }

    /// Enters the guest once: the exit for the VMM, or `None` when the vCPU handled the
    /// trap itself.
    #[inline(always)]
    fn enter_guest_once(&mut self) -> Option<VmExit> {
        self.prepare_entry();
        let result = guest::run(&mut self.regs);
        self.hart.leave();
        let (scause, stval) = match result {
            // Still pending: the hypervisor takes it once the handler unmasks interrupts.
            GuestExit::Interrupt { .. } => return Some(VmExit::ExternalInterrupt),
            GuestExit::Trap { scause, stval } => (scause, stval),
        };
        let hypercall = scause == cause::VS_ECALL && self.regs.x[17] == sbi::EXT_AXVISOR;
        if hypercall {
            // Hypercalls, the frequent SBI call, are decoded here. One with a fixed answer
            // (VERSION, VM_ID) is answered like the SBI calls the vCPU answers itself:
            // a0 = SBI success, a1 = the value.
            let nr = self.regs.x[16];
            if let Some(v) = self.vm_id.and_then(|id| hypercall::fixed_answer(nr, id)) {
                self.regs.x[10] = sbi::SUCCESS;
                self.regs.x[11] = v;
                self.regs.sepc = self.regs.sepc.wrapping_add(4);
                return None;
            }
        }
        if hypercall {
            // What `decode_sbi` and `sbi` make of it, without their general dispatch (73
            // instructions more per call through them): the arguments stay in a0-a5
            // (`hypercall_args`), the answer goes to a1.
            self.regs.sepc = self.regs.sepc.wrapping_add(4);
            let nr = self.regs.x[16];
            return Some(self.call_for_vmm(VmExit::Hypercall { nr }, RetKind::Value));
        }
        // Before anything can trap into HS mode (the instruction fetch below).
        let (htval, htinst) = guest::trap_htval_htinst();
        // For an injected fault after this exit (a hypercall exit never gets one).
        self.last = LastTrap {
            scause,
            stval,
            pc: self.regs.sepc,
        };
        let trap = Trap {
            scause,
            stval,
            htval,
            htinst,
            from_vu: self.regs.sstatus & SSTATUS_SPP == 0,
        };
        // Only when the hardware did not describe the instruction (QEMU 7.2 leaves
        // htinst 0): read it the way the guest fetched it.
        let pc = self.regs.sepc;
        let fetch = || guest::fetch_insn(pc);
        match decode_trap(&trap, &self.regs.x, &self.info, fetch) {
            TrapAction::Exit { exit, pc_step } => {
                self.regs.sepc = self.regs.sepc.wrapping_add(pc_step);
                self.pending = match exit {
                    VmExit::MmioRead {
                        reg,
                        width,
                        sign_ext,
                        ..
                    } if reg & 31 != 0 => {
                        self.load = PendingLoad {
                            reg: (reg & 31) as u8,
                            shift: decode::width_shift(width) as u8,
                            sign_ext,
                        };
                        Pending::Load
                    }
                    _ => Pending::None,
                };
                if exit == VmExit::CpuDown {
                    // A stopped hart keeps nothing: the next setup starts it afresh.
                    self.regs.x = [0; 32];
                }
                Some(exit)
            }
            TrapAction::Sbi(action) => {
                let exit = self.sbi(action)?;
                if exit == VmExit::CpuDown {
                    self.regs.x = [0; 32];
                }
                Some(exit)
            }
            TrapAction::Inject { cause, tval } => {
                self.inject(cause, tval, self.last.pc);
                None
            }
        }
    }

    /// Right before each guest entry (with the guest's CSRs live and interrupts masked):
    /// performs the fences other harts asked of this one, moves an IPI sent to it into
    /// `hvip.VSSIP`, and sets `hvip.VSEIP` to the VM's PLIC output for it. The PLIC output
    /// can fall without a notification (a claim, a disable), so it is re-read every time.
    /// Without Sstc it also runs the emulated timer: `hvip.VSTIP` once the deadline has
    /// passed, and a hypervisor timer interrupt at the deadline before that. In the common
    /// case of a VM without a PLIC on a CPU with Sstc and nothing sent to this hart, that is
    /// one atomic read-modify-write ([`Hart::enter`]) and `hvip` is not touched.
    #[inline(always)]
    fn prepare_entry(&self) {
        let ipi = self.hart.enter(perform_fences);
        if ipi || self.hvip_each_entry {
            self.update_hvip(ipi);
        }
    }

    /// [`Self::prepare_entry`]'s `hvip` update: `VSSIP` raised when `ipi`, `VSEIP` the
    /// PLIC's output, `VSTIP` the emulated timer's.
    #[inline(always)]
    fn update_hvip(&self, ipi: bool) {
        let hvip: u64;
        // SAFETY: reads hvip.
        unsafe { asm!("csrr {}, 0x645", out(reg) hvip, options(nomem, nostack)) };
        let mut want = hvip & !HVIP_VSEIP;
        if ipi {
            want |= HVIP_VSSIP;
        }
        if self.harts.external_pending(self.index) {
            want |= HVIP_VSEIP;
        }
        if !self.sstc {
            let deadline = self.vs.vstimecmp;
            if deadline != u64::MAX && axhal::time::ticks() >= deadline {
                want |= HVIP_VSTIP;
                guest::set_timer(u64::MAX);
            } else {
                guest::set_timer(deadline);
            }
        }
        // Written only when it changes: on QEMU an hvip write goes through the emulator's
        // interrupt-update path under its global lock, which a vCPU in an exit-heavy loop
        // would otherwise take on every entry (a read does not).
        if want != hvip {
            // SAFETY: raises / lowers the guest's own virtual interrupts (VS bits of hvip).
            unsafe { asm!("csrw 0x645, {}", in(reg) want, options(nomem, nostack)) };
        }
    }

    /// The next byte of a DBCN `console_write` in progress as a console hypercall exit, or,
    /// once all went out, the call's answer (`a0` = 0, `a1` = bytes written) and `None`.
    fn next_console_byte(&mut self) -> Option<VmExit> {
        let c = &mut self.console;
        if c.len == 0 {
            return None;
        }
        if c.sent < c.len && c.sent < c.buf.len() {
            // The byte is `buf[sent - 1]` from here on (`hypercall_args`).
            c.sent += 1;
            self.pending = Pending::ConsoleByte;
            return Some(VmExit::Hypercall {
                nr: crate::SBI_CONSOLE_PUTCHAR_NR,
            });
        }
        self.regs.x[10] = sbi::SUCCESS;
        self.regs.x[11] = c.len as u64;
        *c = ConsoleOut::default();
        None
    }

    /// Delivers exception `cause` to the guest as the hardware would deliver a trap taken
    /// in VS mode: `vsepc` = `pc`, `vscause`, `vstval`, `vsstatus.SPP` = the privilege it
    /// came from, `SPIE` = `SIE`, `SIE` = 0; the guest continues in VS mode at `vstvec`'s
    /// base (exceptions never use the vectored offsets). Works on the VS CSRs wherever they
    /// are: in the CPU while the vCPU is loaded, in `self.vs` otherwise.
    fn inject(&mut self, cause: u64, tval: u64, pc: u64) {
        if self.loaded {
            self.vs.save(self.sstc);
        }
        let from_vs = self.regs.sstatus & SSTATUS_SPP != 0;
        let mut vsstatus = self.vs.vsstatus & !(VSSTATUS_SPP | VSSTATUS_SPIE | VSSTATUS_SIE);
        if from_vs {
            vsstatus |= VSSTATUS_SPP;
        }
        if self.vs.vsstatus & VSSTATUS_SIE != 0 {
            vsstatus |= VSSTATUS_SPIE;
        }
        self.vs.vsstatus = vsstatus;
        self.vs.vscause = cause;
        self.vs.vstval = tval;
        self.vs.vsepc = pc;
        self.regs.sepc = self.vs.vstvec & !3;
        self.regs.sstatus |= SSTATUS_SPP;
        self.pending = Pending::None;
        if self.loaded {
            self.vs.restore(self.sstc);
        }
    }

    /// An SBI call (past which `sepc` already points) handed to the VMM as `exit`, whose
    /// answer goes back as `ret` says (`set_return_value`, `complete_power`).
    #[inline(always)]
    fn call_for_vmm(&mut self, exit: VmExit, ret: RetKind) -> VmExit {
        if matches!(ret, RetKind::Status | RetKind::Power) {
            self.regs.x[10] = decode::sbi::ERR_FAILED;
        }
        self.pending = match ret {
            RetKind::Legacy | RetKind::Status => Pending::CallA0,
            RetKind::Value | RetKind::Power => Pending::CallA1,
        };
        exit
    }

    /// Carries out an SBI call; returns the exit when the VMM must take it.
    fn sbi(&mut self, action: SbiAction) -> Option<VmExit> {
        self.regs.sepc = self.regs.sepc.wrapping_add(4);
        let done = |regs: &mut GuestRegs| regs.x[10] = decode::sbi::SUCCESS;
        match action {
            SbiAction::Reply { a0, a1 } => {
                self.regs.x[10] = a0;
                if let Some(a1) = a1 {
                    self.regs.x[11] = a1;
                }
            }
            SbiAction::SetTimer { deadline } if self.sstc => {
                // SAFETY: the guest's own timer compare register (the CPU has Sstc);
                // writing it also clears a pending VS timer interrupt that the new deadline
                // has not reached.
                unsafe { asm!("csrw 0x24d, {}", in(reg) deadline, options(nomem, nostack)) };
                done(&mut self.regs);
            }
            SbiAction::SetTimer { deadline } => {
                // Emulated: the new deadline clears the pending timer interrupt, and
                // `prepare_entry` raises it again once the deadline has passed.
                self.vs.vstimecmp = deadline;
                // SAFETY: lowers the guest's own timer interrupt (hvip is live in `run`).
                unsafe { asm!("csrc 0x645, {}", in(reg) HVIP_VSTIP, options(nomem, nostack)) };
                done(&mut self.regs);
            }
            SbiAction::Fence { fence, harts } => {
                // Returns once no other hart named can run guest code unfenced.
                if self.harts.remote_fence(self.index, harts, fence.bits()) {
                    perform_fences(fence.bits());
                }
                done(&mut self.regs);
            }
            SbiAction::Ipi(harts) => {
                if self.harts.send_ipi(self.index, harts) {
                    // SAFETY: raises the guest's own supervisor software interrupt.
                    unsafe { asm!("csrs 0x645, {}", in(reg) HVIP_VSSIP, options(nomem, nostack)) };
                }
                done(&mut self.regs);
            }
            SbiAction::ConsoleWrite { addr, len } => {
                let len = (len as usize).min(self.console.buf.len());
                let read = read_guest_phys(addr, &mut self.console.buf[..len]);
                if read == 0 {
                    self.regs.x[10] = sbi::ERR_INVALID_PARAM;
                    self.regs.x[11] = 0;
                } else {
                    self.console.len = read;
                    self.console.sent = 0;
                    return self.next_console_byte();
                }
            }
            SbiAction::Exit { exit, ret } => return Some(self.call_for_vmm(exit, ret)),
        }
        None
    }
}

impl ArchVCpu for RiscvVCpu {
    type CreateConfig = RiscvVCpuConfig;

    fn new(vcpu_id: usize, config: RiscvVCpuConfig) -> Result<Self, VCpuError> {
        if u32::from(config.vmid) >> vmid_bits() != 0 {
            return Err(VCpuError::Unsupported(
                "VMID wider than the hart's VMID field",
            ));
        }
        let Some(hart) = config.harts.hart(vcpu_id) else {
            return Err(VCpuError::Unsupported("vCPU index beyond the VM's harts"));
        };
        let sstc = guest::has_sstc();
        Ok(Self {
            regs: GuestRegs::default(),
            vs: VsCsrs::default(),
            fp: FpRegs::default(),
            info: VCpuInfo {
                hart_id: vcpu_id as u64,
                harts: config.harts.count(),
            },
            hstatus: 0,
            sstc,
            vmid: config.vmid,
            hgatp: 0,
            pending: Pending::None,
            load: PendingLoad::default(),
            last: LastTrap::default(),
            index: vcpu_id,
            hvip_each_entry: config.harts.plic().is_some() || !sstc,
            harts: config.harts,
            hart,
            console: ConsoleOut::default(),
            loaded: false,
            vm_id: None,
        })
    }

    fn set_entry(&mut self, entry: GuestPhysAddr) {
        self.regs.sepc = entry.as_usize() as u64;
    }

    fn set_stage2_root(&mut self, root: HostPhysAddr) {
        self.hgatp = RiscvSv39x4::hgatp(root, self.vmid) as u64;
        self.loaded = false;
    }

    fn set_gpr(&mut self, idx: usize, value: u64) {
        if (1..32).contains(&idx) {
            self.regs.x[idx] = value;
        }
    }

    fn setup(&mut self) -> Result<(), VCpuError> {
        let hstatus: u64;
        // SAFETY: reads hstatus (for its read-only VSXL field).
        unsafe { asm!("csrr {}, 0x600", out(reg) hstatus, options(nomem, nostack)) };
        // A clean start (also after a VM reset): every register zero but a0 = hart id; the VMM
        // sets its boot registers (a1 = DTB, ...) after set-up.
        self.regs.x = [0; 32];
        self.regs.x[10] = self.info.hart_id;
        self.regs.sstatus = guest::entry_sstatus() | SSTATUS_SPP | FS_INITIAL;
        self.hstatus = (hstatus & HSTATUS_VSXL) | HSTATUS_SPV | HSTATUS_SPVP | HSTATUS_VTW;
        self.vs = VsCsrs {
            vstimecmp: u64::MAX,
            ..VsCsrs::default()
        };
        self.fp = FpRegs::default();
        self.pending = Pending::None;
        self.last = LastTrap::default();
        self.console = ConsoleOut::default();
        // The fresh state is loaded by the next `run`.
        self.loaded = false;
        self.harts.reset_hart(self.index);
        // Check that the CPU has Sv39x4, and drop anything cached for this VMID before.
        let irq = axhal::irq::save_and_disable();
        let (old, got): (u64, u64);
        // SAFETY: installs this VM's G-stage root (with interrupts masked, and puts the
        // previous one back), then drops every cached guest translation; nothing runs in
        // V = 1 meanwhile.
        unsafe {
            asm!(
                "csrrw {old}, 0x680, {new}",
                "csrr {got}, 0x680",
                "csrw 0x680, {old}",
                hfence_gvma_all!(),
                new = in(reg) self.hgatp,
                old = out(reg) old,
                got = out(reg) got,
                options(nostack),
            )
        };
        let _ = old;
        axhal::irq::restore(irq);
        if got >> 60 != RiscvSv39x4::HGATP_MODE_SV39X4 as u64 {
            return Err(VCpuError::Unsupported("G-stage Sv39x4 (hgatp mode 8)"));
        }
        Ok(())
    }

    fn run_with<R>(
        &mut self,
        mut handle: impl FnMut(&mut Self, VmExit) -> ControlFlow<R>,
    ) -> Result<R, VCpuError> {
        if self.hgatp == 0 {
            // Without a G-stage the guest would reach host physical memory.
            return Err(VCpuError::Unsupported(
                "running a vCPU without a G-stage root",
            ));
        }
        // Host interrupts are masked (the trait's contract): with V = 1 an HS-level interrupt
        // still ends the guest's run, and then waits for the handler to unmask it.
        let result = loop {
            if !self.loaded {
                self.load_hs_state();
                self.vs.restore(self.sstc);
                self.fp.restore();
                self.loaded = true;
            }
            // A DBCN console_write hands its bytes to the VMM before the guest runs again.
            let exit = match self.next_console_byte() {
                Some(exit) => exit,
                None => self.enter_guest(),
            };
            if let ControlFlow::Break(r) = handle(self, exit) {
                break r;
            }
        };
        Ok(result)
    }

    fn set_vm_id(&mut self, vm_id: u64) {
        self.vm_id = Some(vm_id);
    }

    fn put(&mut self) {
        if !self.loaded {
            return;
        }
        if self.regs.sstatus & SSTATUS_FS == FS_DIRTY {
            self.fp.save();
            self.regs.sstatus = (self.regs.sstatus & !SSTATUS_FS) | FS_CLEAN;
        }
        self.vs.save(self.sstc);
        self.loaded = false;
    }

    fn complete_mmio_read(&mut self, value: u64) {
        if self.pending == Pending::Load {
            // `reg` is 1 to 31 (see `PendingLoad`): x0 is never written.
            let PendingLoad {
                reg,
                shift,
                sign_ext,
            } = self.load;
            self.regs.x[usize::from(reg) & 31] = decode::extend(value, u32::from(shift), sign_ext);
        }
        self.pending = Pending::None;
    }

    fn hypercall_args(&self) -> [u64; 6] {
        if self.pending == Pending::ConsoleByte {
            // The byte of a DBCN console_write just handed out (`next_console_byte`).
            let c = &self.console;
            let byte = c.sent.checked_sub(1).and_then(|i| c.buf.get(i));
            return [byte.copied().map_or(0, u64::from), 0, 0, 0, 0, 0];
        }
        let x = &self.regs.x;
        [x[10], x[11], x[12], x[13], x[14], x[15]]
    }

    fn set_return_value(&mut self, value: u64) {
        // A hypercall's answer (CallA1), the frequent one, tested first.
        let pending = core::mem::replace(&mut self.pending, Pending::None);
        if pending < Pending::CallA0 {
            self.regs.x[10] = decode::sbi::SUCCESS;
            self.regs.x[11] = value;
        } else if pending == Pending::CallA0 {
            self.regs.x[10] = value;
        }
    }

    fn wakeup_pending(&self) -> bool {
        // What `wfi` in VS mode waits for: an interrupt pending (hvip's VS bits, one above the
        // guest's sip numbering; an IPI not yet moved into hvip, the PLIC's output now) and
        // enabled in vsie, or the guest's timer expired.
        let mut hvip = self.vs.hvip & !HVIP_VSEIP;
        if self.harts.ipi_pending(self.index) {
            hvip |= HVIP_VSSIP;
        }
        if self.harts.external_pending(self.index) {
            hvip |= HVIP_VSEIP;
        }
        let raised = (hvip >> 1) & self.vs.vsie & (SIE_SSIE | SIE_SEIE) != 0;
        let timer = self
            .timer_deadline()
            .is_some_and(|deadline| axhal::time::ticks() >= deadline);
        raised || timer
    }

    fn timer_deadline(&self) -> Option<u64> {
        // The guest's timer is vstimecmp (or the emulated deadline) against `time`
        // (htimedelta is 0).
        let armed = self.vs.vsie & SIE_STIE != 0 && self.vs.vstimecmp != u64::MAX;
        armed.then_some(self.vs.vstimecmp)
    }

    fn vcpu_index(target: u64, count: usize) -> Option<usize> {
        // vCPU i is hart i (see `RiscvVCpuConfig`).
        (target < count as u64).then_some(target as usize)
    }

    fn set_start_arg(&mut self, arg: u64) {
        // SBI HSM: the started hart gets its hart id in a0 and the opaque value in a1.
        self.regs.x[10] = self.info.hart_id;
        self.regs.x[11] = arg;
    }

    fn complete_power(&mut self, reply: PowerReply) {
        let (a0, a1) = decode::power_reply(reply);
        self.regs.x[10] = a0;
        self.regs.x[11] = a1;
        self.pending = Pending::None;
    }

    fn inject_data_fault(&mut self, _gpa: GuestPhysAddr) {
        // An access fault of the kind that trapped: the guest sees what a machine with no
        // device there would give it (vstval = the virtual address it used).
        let fault = match self.last.scause {
            cause::INSN_GUEST_PAGE_FAULT => cause::INSN_ACCESS_FAULT,
            cause::STORE_GUEST_PAGE_FAULT => cause::STORE_ACCESS_FAULT,
            _ => cause::LOAD_ACCESS_FAULT,
        };
        self.inject(fault, self.last.stval, self.last.pc);
    }
}

/// Performs fences another hart asked of this one ([`fence`] bits), on this physical CPU
/// with the VM's `hgatp` live.
fn perform_fences(kinds: u8) {
    if kinds & fence::ICACHE != 0 {
        // SAFETY: orders this hart's instruction fetches after earlier stores.
        unsafe { asm!("fence.i", options(nostack)) };
    }
    if kinds & fence::VVMA != 0 {
        // SAFETY: drops the running VMID's VS-stage translations (hgatp is this VM's).
        unsafe { asm!(hfence_vvma_all!(), options(nostack)) };
    }
}

/// Reads guest-physical memory at `addr` into `buf` (`addr + buf.len()` must not overflow)
/// as the guest could: through its G-stage (`hgatp` live), with `vsatp` switched to Bare for
/// the duration so the address is not translated by the guest's own page table. Uses
/// `axhal::guest::fetch_insn` (HLVX, execute permission, faults absorbed), a halfword at a
/// time. Returns how many bytes were read before the first one that could not be (0 when
/// the first one cannot). Call with interrupts masked.
fn read_guest_phys(addr: u64, buf: &mut [u8]) -> usize {
    let vsatp: u64;
    // SAFETY: puts the guest's address translation in Bare mode and drops the VS-stage
    // translations cached for the VMID, so that HLVX sees guest-physical addresses; only
    // VS-mode accesses are affected, and the guest does not run until it is put back.
    unsafe {
        asm!(
            "csrrw {}, 0x280, zero",
            hfence_vvma_all!(),
            out(reg) vsatp,
            options(nostack),
        )
    };
    // The last aligned halfwords read: (address, value); HLVX may give two at once.
    let mut have: [(u64, u16); 2] = [(u64::MAX, 0); 2];
    let mut read = 0;
    for (i, byte) in buf.iter_mut().enumerate() {
        let a = addr.wrapping_add(i as u64);
        let half = a & !1;
        let value = match have.iter().find(|(h, _)| *h == half) {
            Some(&(_, v)) => v,
            None => match guest::fetch_insn(half) {
                // Up to two halfwords (a "32-bit instruction" when the low bits are 11).
                Some(w) => {
                    have = [(half, w as u16), (half.wrapping_add(2), (w >> 16) as u16)];
                    if w & 3 != 3 {
                        have[1].0 = u64::MAX;
                    }
                    w as u16
                }
                None => break,
            },
        };
        *byte = (value >> ((a & 1) * 8)) as u8;
        read += 1;
    }
    // SAFETY: puts the guest's translation back and drops what was cached meanwhile.
    unsafe {
        asm!(
            "csrw 0x280, {}",
            hfence_vvma_all!(),
            in(reg) vsatp,
            options(nostack),
        )
    };
    read
}
