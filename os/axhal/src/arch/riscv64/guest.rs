//! The world switch into a VS-mode guest and back.
//!
//! [`run`] keeps the hypervisor's `ra`, `tp`, `s0`, `s1` and `sp` in the [`GuestRegs`]
//! (no stack frame), points `sscratch` at the [`GuestRegs`],
//! loads the guest's registers, `sepc` and `sstatus`, sets `hstatus.SPV` and `sret`s into
//! the guest. While the hypervisor itself runs, `sscratch` is 0: the trap vector swaps `sp`
//! with `sscratch` and, finding a non-zero value, knows the trap came from the guest and
//! has the [`GuestRegs`] in `sp`. Its guest-exit path stores the guest's registers, `sepc`
//! and `sstatus` there, turns the FPU off again, restores the hypervisor's
//! registers (including `tp`, the logical CPU id) and returns from [`run`]. The trap CSRs
//! (`scause`, `stval`; `htval`, `htinst` with [`trap_htval_htinst`]) are read right after,
//! before anything can trap again.
//!
//! The VS-level CSRs (`vsstatus`, `vsatp`, ...), `hstatus` (but SPV), `hgatp`, the
//! delegation registers and the guest's floating-point state are the vCPU crate's business
//! and must be loaded before.
//!
//! `hstatus` keeps the guest's value while the hypervisor runs: none of its fields matters
//! in HS mode (the guest's trap set SPVP, the privilege [`fetch_insn`]'s HLVX uses). Only SPV
//! can change meanwhile (a trap
//! taken in HS mode clears it), so each entry sets it again and nothing else of `hstatus`
//! is saved or loaded per entry.

use core::mem::offset_of;

const SSTATUS_SIE: u64 = 1 << 1;
const SSTATUS_SPIE: u64 = 1 << 5;
/// `sstatus.SPP`: the privilege the trap came from / `sret` returns to (1 = S, VS here).
pub const SSTATUS_SPP: u64 = 1 << 8;
/// `sstatus.FS`: floating-point unit state (0 off, 1 initial, 2 clean, 3 dirty).
pub const SSTATUS_FS: u64 = 3 << 13;
/// `sstatus.VS`: vector unit state, same encoding as FS.
pub const SSTATUS_VS: u64 = 3 << 9;
/// The `sstatus` fields that are the guest's: the others of [`GuestRegs::sstatus`] are the
/// hypervisor's ([`entry_sstatus`]).
pub const GUEST_SSTATUS_MASK: u64 = SSTATUS_SPP | SSTATUS_FS | SSTATUS_VS;
/// `hstatus.SPV`: the trap came from / `sret` returns to a virtual mode.
pub const HSTATUS_SPV: u64 = 1 << 7;
/// `hstatus.SPVP`: the guest's privilege for HLV/HSV (1 = VS); a trap from the guest sets it.
pub const HSTATUS_SPVP: u64 = 1 << 8;
/// `hstatus.VTW`: `wfi` in VS mode raises a virtual-instruction exception.
pub const HSTATUS_VTW: u64 = 1 << 21;
/// `hstatus.VSXL`: the guest's XLEN (read-only 2 = 64 on QEMU).
pub const HSTATUS_VSXL: u64 = 3 << 32;

/// A guest's general-purpose registers and the state `sret` uses.
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct GuestRegs {
    /// x0..x31 (x0 is never loaded or stored).
    pub x: [u64; 32],
    /// Guest PC (`sepc`).
    pub sepc: u64,
    /// `sstatus` while the guest runs, written as it is (but SIE and SPIE, which entry
    /// clears): start from [`entry_sstatus`] and change only [`GUEST_SSTATUS_MASK`] (SPP:
    /// the guest's privilege, FS/VS: whether the guest may use the FPU / vector unit). After
    /// an exit it holds the hardware's value, which is what the next entry needs (FS dirty
    /// if the guest wrote FP registers).
    pub sstatus: u64,
    /// The hypervisor's registers while the guest runs, where the exit path finds them.
    host: HostRegs,
}

/// The hypervisor's registers that the world switch keeps while a guest runs (layout used
/// by the assembly): in the [`GuestRegs`], which the exit path has in `sp`, so that saving
/// and restoring them needs no stack frame.
#[repr(C)]
#[derive(Clone, Debug, Default)]
struct HostRegs {
    ra: u64,
    /// The logical CPU id.
    tp: u64,
    /// s0 (the frame pointer) and s1 (LLVM's base pointer), which `run`'s `asm!` cannot
    /// declare clobbered; it declares the other callee-saved registers clobbered instead,
    /// so the compiler saves only those it needs, once per function, not per entry.
    s: [u64; 2],
    /// The stack pointer of [`run`]'s caller.
    sp: u64,
}

/// The `sstatus` to start a guest from ([`GuestRegs::sstatus`]): the hypervisor's fields as
/// this CPU has them (the same on every CPU), with interrupts off and the guest's fields
/// ([`GUEST_SSTATUS_MASK`]) zero: OR SPP, FS and VS in.
pub fn entry_sstatus() -> u64 {
    let host: u64;
    // SAFETY: reads sstatus.
    unsafe { core::arch::asm!("csrr {}, sstatus", out(reg) host, options(nomem, nostack)) };
    host & !(GUEST_SSTATUS_MASK | SSTATUS_SIE | SSTATUS_SPIE)
}

/// Why the guest stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// A synchronous exception from the guest, with its trap CSRs (`htval`, the guest
    /// physical address >> 2 of a guest-page fault, and `htinst`, the transformed trapping
    /// instruction or 0: [`trap_htval_htinst`]).
    Trap {
        /// `scause` (exception code).
        scause: u64,
        /// `stval` (faulting guest virtual address, instruction bits, ...).
        stval: u64,
    },
    /// A hypervisor interrupt (`scause` without the interrupt bit: 1 software, 5 timer,
    /// 9 external). It is still pending and is taken by the hypervisor's own vector as soon
    /// as the caller unmasks interrupts.
    Interrupt {
        /// The interrupt number.
        cause: u64,
    },
}

/// Whether the CPU has Sstc (`stimecmp` / `vstimecmp`), from the boot hart's `riscv,isa`.
pub fn has_sstc() -> bool {
    super::sbi::HAS_SSTC.load(core::sync::atomic::Ordering::Relaxed)
}

/// Asks for a hypervisor timer interrupt on this CPU at `ticks` (`u64::MAX`: none) for the
/// emulated timer of the guest about to run here, on CPUs without Sstc: the interrupt makes
/// the guest exit, and its vCPU then raises the guest's timer interrupt. One guest deadline
/// per CPU (the running guest's); the hypervisor's own timer events are kept.
pub fn set_timer(ticks: u64) {
    super::sbi::set_guest_deadline(ticks)
}

/// Reads the instruction the guest would execute at virtual address `pc`, translated by the
/// guest's own page table (`vsatp`) and its G-stage (`hgatp`), both of which must be live,
/// with the guest's privilege at its last exit: the trap from the guest set `hstatus.SPVP`
/// to it, and nothing in HS mode changes it until the next entry (a trap taken in HS mode
/// leaves SPVP alone). Uses HLVX (execute permission): one 32-bit read when `pc` is 4-byte
/// aligned (the word cannot cross a page), else one halfword at a time; the instruction's 16
/// or 32 bits come back (above a 16-bit one: the next halfword when it was read with it in
/// one word, else zero), or `None` when the guest could not fetch it either (the fault is
/// absorbed by the trap vector). Call with interrupts masked, after a
/// guest exit and before the next entry.
#[inline]
pub fn fetch_insn(pc: u64) -> Option<u32> {
    if pc & 3 == 0 {
        return hlvx(pc, true);
    }
    match hlvx(pc, false) {
        Some(l) if l & 3 == 3 => hlvx(pc.wrapping_add(2), false).map(|h| l | h << 16),
        other => other,
    }
}

/// One HLVX.WU (`word`) or HLVX.HU, or `None` if it faulted.
fn hlvx(va: u64, word: bool) -> Option<u32> {
    extern "C" {
        fn axhal_guest_hlvx_hu(va: u64) -> u64;
        fn axhal_guest_hlvx_wu(va: u64) -> u64;
    }
    // SAFETY: the functions only read through the guest's translation (HLVX), which the
    // hypervisor cannot fault on fatally: the trap vector resumes a faulting HLVX at its
    // fix-up, which returns all ones (no 32-bit value). Nothing in the hypervisor's memory
    // is touched.
    let r = unsafe {
        if word {
            axhal_guest_hlvx_wu(va)
        } else {
            axhal_guest_hlvx_hu(va)
        }
    };
    (r >> 32 == 0).then_some(r as u32)
}

/// Whether `sepc` is one of the guarded HLVXs and, if so, where to resume after its fault.
pub(super) fn hlvx_fixup(sepc: usize) -> Option<usize> {
    extern "C" {
        fn axhal_guest_hlvx_insn();
        fn axhal_guest_hlvx_wu_insn();
        fn axhal_guest_hlvx_fixup();
    }
    let guarded = [
        axhal_guest_hlvx_insn as *const () as usize,
        axhal_guest_hlvx_wu_insn as *const () as usize,
    ];
    guarded
        .contains(&sepc)
        .then_some(axhal_guest_hlvx_fixup as *const () as usize)
}

/// Runs the guest until its next trap into HS mode. Call with interrupts masked
/// (`sstatus.SIE` = 0); `hgatp`, the VS CSRs and the delegation registers must be the
/// guest's.
pub fn run(regs: &mut GuestRegs) -> GuestExit {
    // SAFETY: `axhal_guest_enter` saves ra, tp, s0, s1 and sp of the hypervisor and
    // restores them when the guest traps, and turns sstatus.FS off again (VS stays as the
    // guest had it: off, since no vCPU gives a guest the vector unit); every other
    // integer register is declared clobbered here (the C ABI's caller-saved ones and
    // s2-s11), so the compiler keeps nothing in them across the run, but gp, which the
    // compiler never allocates and the hypervisor never uses (it links with --no-relax, so
    // no access is gp-relative): it keeps the guest's value until the next run. The assembly writes
    // only through `regs`, which is exclusive. The hypervisor uses no floating-point
    // registers (sstatus.FS is off while it runs). The guest runs in VS/VU mode under
    // G-stage translation (hgatp) and cannot reach the hypervisor's memory or HS state;
    // the sstatus written for it has SIE and SPIE clear, so nothing in HS runs with
    // interrupts on until the exit path is back in the caller.
    unsafe {
        core::arch::asm!(
            "call axhal_guest_enter",
            in("a0") regs as *mut GuestRegs,
            lateout("s2") _, lateout("s3") _, lateout("s4") _, lateout("s5") _,
            lateout("s6") _, lateout("s7") _, lateout("s8") _, lateout("s9") _,
            lateout("s10") _, lateout("s11") _,
            clobber_abi("C"),
        )
    };
    let (scause, stval): (u64, u64);
    // SAFETY: reads the trap CSRs of the trap that just ended the guest's run (interrupts
    // are masked, nothing has trapped since).
    unsafe {
        core::arch::asm!(
            "csrr {}, scause", "csrr {}, stval",
            out(reg) scause, out(reg) stval,
            options(nomem, nostack)
        )
    };
    if scause >> 63 != 0 {
        GuestExit::Interrupt {
            cause: scause & !(1 << 63),
        }
    } else {
        GuestExit::Trap { scause, stval }
    }
}

/// `htval` and `htinst` of the trap that ended the guest's last [`run`]. Only the exits
/// that decode an access need them (a hypercall does not): read them before anything else
/// can trap into HS mode, such as [`fetch_insn`].
#[inline(always)]
pub fn trap_htval_htinst() -> (u64, u64) {
    let (htval, htinst): (u64, u64);
    // SAFETY: reads htval and htinst; no side effect.
    unsafe {
        core::arch::asm!(
            "csrr {}, 0x643", "csrr {}, 0x64a",
            out(reg) htval, out(reg) htinst,
            options(nomem, nostack)
        )
    };
    (htval, htinst)
}

/// The guest-exit path: reached from the trap vector (`trap.rs`) on a trap from the guest,
/// with sp = its [`GuestRegs`], `sscratch` = the guest's sp and every other register the
/// guest's. Stores the guest's registers, `sepc` and `sstatus`, zeroes `sscratch`, turns
/// the FPU off and returns from [`run`] with the hypervisor's registers. The trap vector
/// places it in its own `global_asm!`, right after its entry, so that the entry reaches it
/// with one short `bnez` to a local label; its operands are the `EXIT_*` constants.
macro_rules! guest_exit_asm {
    () => {
        concat!(
        "    // Reached from trap_entry on a trap from the guest: sp = its GuestRegs, sscratch = the\n",
        "    // guest's sp, every other register the guest's.\n",
        "    // A local label: the entry's branch to it is assembled as one `bnez` (to a global\n",
        "    // symbol the assembler would make it a branch around a `j`).\n",
        "    .Laxhal_guest_exit:\n",
        "        .irp n, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n",
        "        sd      x\\n, (\\n * 8)(sp)\n",
        "        .endr\n",
        "        csrrw   t0, sscratch, zero\n",
        "        sd      t0, 16(sp)\n",
        "        csrr    t0, sepc\n",
        "        sd      t0, {x_gsepc}(sp)\n",
        "        lui     t0, {x_fs_hi}\n",
        "        csrrc   t0, sstatus, t0\n",
        "        sd      t0, {x_gsstatus}(sp)\n",
        "        ld      ra, {x_ra}(sp)\n",
        "        ld      tp, {x_tp}(sp)\n",
        "        ld      s0, {x_s}+0(sp)\n",
        "        ld      s1, {x_s}+8(sp)\n",
        "        ld      sp, {x_hsp}(sp)\n",
        "        ret\n",
        )
    };
}
pub(super) use guest_exit_asm;

/// [`guest_exit_asm`]'s operands: the [`GuestRegs`] fields it writes and reads (the
/// hypervisor's registers among them), `sstatus.FS` for a `lui`.
const HOST: usize = offset_of!(GuestRegs, host);
pub(super) const EXIT_RA: usize = HOST + offset_of!(HostRegs, ra);
pub(super) const EXIT_TP: usize = HOST + offset_of!(HostRegs, tp);
pub(super) const EXIT_S: usize = HOST + offset_of!(HostRegs, s);
pub(super) const EXIT_HOST_SP: usize = HOST + offset_of!(HostRegs, sp);
pub(super) const EXIT_SEPC: usize = offset_of!(GuestRegs, sepc);
pub(super) const EXIT_SSTATUS: usize = offset_of!(GuestRegs, sstatus);
pub(super) const EXIT_FS_HI: u64 = SSTATUS_FS >> 12;

core::arch::global_asm!(
    "
    .section .text
    // u64 axhal_guest_hlvx_hu(u64 va): the halfword, or all ones if HLVX faulted;
    // axhal_guest_hlvx_wu the same for a word.
    .global axhal_guest_hlvx_hu
    .global axhal_guest_hlvx_insn
    .global axhal_guest_hlvx_wu
    .global axhal_guest_hlvx_wu_insn
    .global axhal_guest_hlvx_fixup
    .balign 4
    axhal_guest_hlvx_hu:
        .option push
        .option arch, +h
    axhal_guest_hlvx_insn:
        hlvx.hu a0, (a0)
        .option pop
        ret
    axhal_guest_hlvx_wu:
        .option push
        .option arch, +h
    axhal_guest_hlvx_wu_insn:
        hlvx.wu a0, (a0)
        .option pop
        ret
    axhal_guest_hlvx_fixup:
        li      a0, -1
        ret

    .global axhal_guest_enter
    .balign 4
    axhal_guest_enter:
        sd      ra, {ra}(a0)
        sd      tp, {tp}(a0)
        sd      s0, {s}+0(a0)
        sd      s1, {s}+8(a0)
        sd      sp, {hsp}(a0)
        ld      t0, {gsepc}(a0)
        csrw    sepc, t0
        ld      t0, {gsstatus}(a0)
        andi    t0, t0, ~{sie_spie}
        csrw    sstatus, t0
        li      t0, {spv}
        csrs    0x600, t0
        // From here on a trap is a guest exit (see trap_entry).
        csrw    sscratch, a0
        .irp n, 1,2,3,4,5,6,7,8,9,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        ld      x\\n, (\\n * 8)(a0)
        .endr
        ld      a0, 80(a0)
        sret

    ",
    ra = const EXIT_RA,
    tp = const EXIT_TP,
    s = const EXIT_S,
    hsp = const EXIT_HOST_SP,
    gsepc = const EXIT_SEPC,
    gsstatus = const EXIT_SSTATUS,
    sie_spie = const SSTATUS_SIE | SSTATUS_SPIE,
    spv = const HSTATUS_SPV,
);
