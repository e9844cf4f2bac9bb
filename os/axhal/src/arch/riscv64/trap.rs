//! The S-mode (HS) trap vector.
//!
//! A trap from a guest (`sscratch` non-zero, see `guest.rs`) leaves through the world
//! switch's exit path and returns from `guest::run`. Interrupts taken while the hypervisor
//! runs go to the timer, IPI and PLIC paths; any exception in the hypervisor itself is
//! unexpected and stops with a dump.

use super::plic;
use crate::irq::{dispatch, IrqSource};
use core::fmt;

/// Registers saved on trap entry.
#[repr(C)]
pub struct TrapFrame {
    /// x0..x31 (x0 unused; x2 is the interrupted sp).
    pub x: [usize; 32],
    /// Where the trap was taken.
    pub sepc: usize,
    /// `sstatus` at that point.
    pub sstatus: usize,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();

const SIE_SSIE: usize = 1 << 1;
const SIE_STIE: usize = 1 << 5;
const SIE_SEIE: usize = 1 << 9;
const INTERRUPT: usize = 1 << 63;

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 32] = [
            "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3",
            "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
            "t3", "t4", "t5", "t6",
        ];
        for (i, chunk) in self.x.chunks(4).enumerate() {
            for (j, v) in chunk.iter().enumerate() {
                write!(f, "  {:>4} = {:#018x}", NAMES[i * 4 + j], v)?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "  sepc = {:#018x}  sstatus = {:#018x}",
            self.sepc, self.sstatus
        )
    }
}

/// Installs the vector on this hart.
pub fn init() {
    extern "C" {
        fn trap_entry();
    }
    // SAFETY: stvec in direct mode pointing at a 4-byte aligned handler; sscratch = 0 tells
    // that handler the hypervisor is running (no guest).
    unsafe {
        core::arch::asm!(
            "csrw sscratch, zero",
            "csrw stvec, {}",
            in(reg) trap_entry as *const () as usize
        )
    };
}

/// Enables the supervisor software, timer and external interrupts in `sie`.
pub fn enable_irqs() {
    // SAFETY: only enables interrupt sources; sstatus.SIE still gates delivery.
    unsafe { core::arch::asm!("csrs sie, {}", in(reg) SIE_SSIE | SIE_STIE | SIE_SEIE) };
}

#[no_mangle]
extern "C" fn axhal_trap(frame: &mut TrapFrame) {
    let scause: usize;
    let stval: usize;
    // SAFETY: reads trap CSRs.
    unsafe {
        core::arch::asm!("csrr {}, scause", "csrr {}, stval", out(reg) scause, out(reg) stval)
    };
    match scause {
        c if c == INTERRUPT | 1 => {
            // SAFETY: clears our own pending software interrupt (sip.SSIP).
            unsafe { core::arch::asm!("csrc sip, {}", in(reg) SIE_SSIE) };
            dispatch(IrqSource::Ipi);
        }
        c if c == INTERRUPT | 5 => {
            super::sbi::on_timer_interrupt();
            dispatch(IrqSource::Timer)
        }
        c if c == INTERRUPT | 9 => plic::handle_irq(super::cpu_id()),
        // A guest instruction fetch (guest::fetch_insn) that the guest could not make either
        // resumes at its fix-up, which reports the failure; anything else is fatal.
        _ => match super::guest::hlvx_fixup(frame.sepc) {
            Some(fixup) if scause & INTERRUPT == 0 => frame.sepc = fixup,
            _ => crate::power::fatal(format_args!(
                "unexpected trap on cpu {}: scause = {scause:#x}, stval = {stval:#x}\n{frame}",
                super::cpu_id()
            )),
        },
    }
}

core::arch::global_asm!(
    concat!("
    .section .text
    .balign 4
    .global trap_entry
    trap_entry:
        // sscratch is 0 while the hypervisor runs and points at the guest's registers
        // while a guest runs (guest.rs): swap it with sp to tell the two apart. From a
        // guest, the exit path takes over with sp = those registers.
        csrrw   sp, sscratch, sp
        bnez    sp, .Laxhal_guest_exit
        csrrw   sp, sscratch, sp
        addi    sp, sp, -{frame}
        .irp n, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        sd      x\\n, (\\n * 8)(sp)
        .endr
        addi    t0, sp, {frame}
        sd      t0, 16(sp)
        csrr    t0, sepc
        sd      t0, 256(sp)
        csrr    t1, sstatus
        sd      t1, 264(sp)
        mv      a0, sp
        call    axhal_trap
        ld      t0, 256(sp)
        csrw    sepc, t0
        ld      t1, 264(sp)
        csrw    sstatus, t1
        .irp n, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        ld      x\\n, (\\n * 8)(sp)
        .endr
        addi    sp, sp, {frame}
        sret

        // The world switch's guest-exit path (guest.rs), here so that the entry's bnez
        // reaches it directly.
    ",
    super::guest::guest_exit_asm!()),
    frame = const FRAME_SIZE,
    x_ra = const super::guest::EXIT_RA,
    x_tp = const super::guest::EXIT_TP,
    x_s = const super::guest::EXIT_S,
    x_hsp = const super::guest::EXIT_HOST_SP,
    x_gsepc = const super::guest::EXIT_SEPC,
    x_gsstatus = const super::guest::EXIT_SSTATUS,
    x_fs_hi = const super::guest::EXIT_FS_HI,
);
