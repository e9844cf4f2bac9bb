//! riscv64 guests run in VS mode (S mode from their point of view) with paging off. The
//! console is a 16550, power and reset are SBI SRST calls and hypercalls are `ecall`s with
//! axvisor's own SBI extension id, all handled by the hypervisor.

use core::arch::{asm, global_asm};
use core::mem::{offset_of, size_of};

use crate::layout;
use crate::smp::{CpuState, PowerError};
use crate::trap::{self, DataFault, FaultAction, Undefined};
use crate::AXVISOR_HC_EID;

/// The architecture's name.
pub const NAME: &str = "riscv64";
/// Guest RAM base.
pub const RAM_BASE: u64 = layout::RISCV64_RAM_BASE;
/// Where the image is linked, loaded and entered: the RAM base.
pub const IMAGE_BASE: u64 = RAM_BASE;

/// 16550 UART base address.
const UART_BASE: usize = 0x1000_0000;
/// 16550 transmit holding register.
const UART_THR: usize = 0;
/// 16550 line status register.
const UART_LSR: usize = 5;
/// 16550 LSR: transmit holding register empty.
const UART_LSR_THRE: u8 = 1 << 5;
/// 16550 LSR: data ready (a received byte waits in RBR, at offset 0).
const UART_LSR_DR: u8 = 1 << 0;

/// SBI System Reset extension ("SRST").
const SBI_EXT_SRST: u64 = 0x5352_5354;
/// SRST reset types.
const SRST_SHUTDOWN: u64 = 0;
const SRST_COLD_REBOOT: u64 = 1;

/// sstatus.FS = Initial: the target uses the F and D extensions, which trap while FS is Off.
const SSTATUS_FS_INITIAL: u64 = 1 << 13;

/// Registers saved by the trap entry (layout shared with the assembly below).
#[repr(C)]
struct TrapFrame {
    /// x0 (unused) to x31; `x[2]` is the stack pointer before the trap.
    x: [u64; 32],
    sepc: u64,
    sstatus: u64,
}

const FRAME_SIZE: usize = size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE.is_multiple_of(16));

// The entry point, placed first in the image by the linker script (.text.entry), and the
// trap entry (stvec in direct mode), which saves every register, calls `grt_trap(frame)`
// and restores everything (including a possibly changed sepc). gp is not used by grt
// (rust-lld cannot relax `la gp, __global_pointer$` here), so nothing sets it; tp holds the
// hart id from entry on (see `cpu_id`).
global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    mv   tp, a0
    lla  sp, __stack_top
    lla  t0, grt_trap_entry
    csrw stvec, t0
    li   t0, {fs_initial}
    csrs sstatus, t0
    lla  t0, __bss_start
    lla  t1, __bss_end
1:  bgeu t0, t1, 2f
    sd   zero, 0(t0)
    addi t0, t0, 8
    j    1b
2:  call grt_start
3:  wfi
    j    3b

    // A hart started by `smp::cpu_on`: a0 = hart id, a1 = its boot block (stack top first).
    .section .text, "ax"
    .global grt_secondary_entry
grt_secondary_entry:
    mv   tp, a0
    ld   sp, 0(a1)
    lla  t0, grt_trap_entry
    csrw stvec, t0
    li   t0, {fs_initial}
    csrs sstatus, t0
    mv   a0, a1
    call grt_secondary_start
4:  wfi
    j    4b

    .section .text.trap, "ax"
    .balign 4
grt_trap_entry:
    addi sp, sp, -{frame}
    sd   x1, 8(sp)
    .irp n, 3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    sd   x\n, \n*8(sp)
    .endr
    addi t0, sp, {frame}
    sd   t0, 16(sp)
    csrr t0, sepc
    sd   t0, {sepc}(sp)
    csrr t0, sstatus
    sd   t0, {sstatus}(sp)
    mv   a0, sp
    call grt_trap
    ld   t0, {sepc}(sp)
    csrw sepc, t0
    ld   t0, {sstatus}(sp)
    csrw sstatus, t0
    ld   x1, 8(sp)
    .irp n, 3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld   x\n, \n*8(sp)
    .endr
    addi sp, sp, {frame}
    sret
"#,
    fs_initial = const SSTATUS_FS_INITIAL,
    frame = const FRAME_SIZE,
    sepc = const offset_of!(TrapFrame, sepc),
    sstatus = const offset_of!(TrapFrame, sstatus),
);

/// The name of an exception (or, with `interrupt`, an interrupt) cause code.
fn cause_name(interrupt: bool, code: u64) -> &'static str {
    match (interrupt, code) {
        (true, 1) => "supervisor software interrupt",
        (true, 5) => "supervisor timer interrupt",
        (true, 9) => "supervisor external interrupt",
        (true, _) => "interrupt",
        (false, 0) => "instruction address misaligned",
        (false, 1) => "instruction access fault",
        (false, 2) => "illegal instruction",
        (false, 3) => "breakpoint",
        (false, 4) => "load address misaligned",
        (false, 5) => "load access fault",
        (false, 6) => "store address misaligned",
        (false, 7) => "store access fault",
        (false, 8) => "environment call from U mode",
        (false, 9) => "environment call from S mode",
        (false, 12) => "instruction page fault",
        (false, 13) => "load page fault",
        (false, 15) => "store page fault",
        (false, _) => "exception",
    }
}

/// The length in bytes of the instruction at `pc` (2 if compressed, else 4).
fn instruction_len(pc: u64) -> u64 {
    // SAFETY: `pc` is the address of the instruction that just trapped: guest RAM (paging is
    // off), readable, and 2-byte aligned as every instruction is with the C extension.
    let low = unsafe { (pc as *const u16).read_volatile() };
    if low & 0b11 == 0b11 {
        4
    } else {
        2
    }
}

/// Called by the trap entry with the saved registers.
#[no_mangle]
extern "C" fn grt_trap(frame: &mut TrapFrame) {
    trap::enter();
    let (scause, stval): (u64, u64);
    // SAFETY: reading the trap CSRs has no side effects.
    unsafe {
        asm!("csrr {}, scause", out(reg) scause, options(nomem, nostack));
        asm!("csrr {}, stval", out(reg) stval, options(nomem, nostack));
    }
    let interrupt = scause >> 63 != 0;
    let code = scause & !(1 << 63);
    // Interrupts go to `grt::irq`'s handler; the guest resumes where it was.
    if interrupt && super::irq_hw::handle(code) {
        trap::leave();
        return;
    }
    let action = match code {
        _ if interrupt => FaultAction::Fail,
        4 | 5 | 6 | 7 | 13 | 15 => trap::on_data_fault(&DataFault {
            syndrome: scause,
            addr: stval,
            pc: frame.sepc,
            is_write: matches!(code, 6 | 7 | 15),
        }),
        2 => trap::on_undefined(&Undefined {
            syndrome: scause,
            pc: frame.sepc,
        }),
        _ => FaultAction::Fail,
    };
    match action {
        FaultAction::Skip => {
            frame.sepc += instruction_len(frame.sepc);
            trap::leave();
            return;
        }
        FaultAction::Retry => {
            trap::leave();
            return;
        }
        FaultAction::Fail => {}
    }
    trap::unexpected(format_args!(
        "{}: scause {scause:#x}, stval {stval:#x}, sepc {:#x}",
        cause_name(interrupt, code),
        frame.sepc
    ))
}

/// An SBI call: `a7` = `eid`, `a6` = `fid`, `a0`..`a5` = `args`; returns (`a0`, `a1`), the
/// SBI error and value.
pub fn sbi_call(eid: u64, fid: u64, args: [u64; 6]) -> (u64, u64) {
    let (error, value);
    // SAFETY: `ecall` from VS mode traps to the hypervisor, which returns to the next
    // instruction with a0 (error) and a1 (value) set and, as the SBI specification requires,
    // every other register preserved (a2-a5 are declared clobbered anyway). It may read or
    // write guest memory the arguments point to, so memory is not declared untouched.
    unsafe {
        asm!(
            "ecall",
            inlateout("a0") args[0] => error,
            inlateout("a1") args[1] => value,
            inlateout("a2") args[2] => _,
            inlateout("a3") args[3] => _,
            inlateout("a4") args[4] => _,
            inlateout("a5") args[5] => _,
            in("a6") fid,
            in("a7") eid,
            options(nostack),
        );
    }
    (error, value)
}

/// Calls hypercall `nr` with six arguments (`ecall`, `a7` = [`AXVISOR_HC_EID`], `a6` =
/// `nr`, `a0`..`a5` = `args`) and returns the result in `a1`; if the hypervisor reports an
/// SBI error in `a0` (e.g. -2, not supported), returns that error instead.
pub fn hypercall(nr: u64, args: [u64; 6]) -> u64 {
    match sbi_call(AXVISOR_HC_EID, nr, args) {
        (0, value) => value,
        (error, _) => error,
    }
}

/// Asks the hypervisor to power the VM off (SBI SRST shutdown); if that returns, waits for
/// interrupts forever.
pub fn power_off() -> ! {
    sbi_call(SBI_EXT_SRST, 0, [SRST_SHUTDOWN, 0, 0, 0, 0, 0]);
    halt()
}

/// Asks the hypervisor to reset the VM (SBI SRST cold reboot); if that returns, waits for
/// interrupts forever.
pub fn reset() -> ! {
    sbi_call(SBI_EXT_SRST, 0, [SRST_COLD_REBOOT, 0, 0, 0, 0, 0]);
    halt()
}

/// SBI Hart State Management extension.
const SBI_EXT_HSM: u64 = 0x48_534D;

/// The error of an SBI error code.
fn sbi_error(error: u64) -> PowerError {
    match error as i64 {
        -3 => PowerError::InvalidTarget,
        -6 => PowerError::AlreadyOn,
        -5 => PowerError::InvalidAddress,
        other => PowerError::Other(other),
    }
}

/// SBI HSM hart_start: hart `target` at `entry` with opaque `arg` (a1 of the new hart).
pub fn cpu_on(target: u64, entry: u64, arg: u64) -> Result<(), PowerError> {
    match sbi_call(SBI_EXT_HSM, 0, [target, entry, arg, 0, 0, 0]) {
        (0, _) => Ok(()),
        (e, _) => Err(sbi_error(e)),
    }
}

/// SBI HSM hart_get_status.
pub fn cpu_status(target: u64) -> Result<CpuState, PowerError> {
    match sbi_call(SBI_EXT_HSM, 2, [target, 0, 0, 0, 0, 0]) {
        (0, 0) => Ok(CpuState::On),
        (0, 1) => Ok(CpuState::Off),
        (0, 2) => Ok(CpuState::Pending),
        (0, other) => Err(PowerError::Other(other as i64)),
        (e, _) => Err(sbi_error(e)),
    }
}

/// SBI HSM hart_stop; if that returns, waits for interrupts forever.
pub fn cpu_off() -> ! {
    sbi_call(SBI_EXT_HSM, 1, [0; 6]);
    halt()
}

/// This vCPU's hart id, kept in `tp` from entry (grt uses `tp` for nothing else).
pub fn cpu_id() -> usize {
    let hart: usize;
    // SAFETY: reads a register.
    unsafe { asm!("mv {}, tp", out(reg) hart, options(nomem, nostack)) };
    hart
}

/// Waits for an interrupt (`wfi`).
pub fn wait_for_interrupt() {
    // SAFETY: `wfi` only pauses the vCPU.
    unsafe { asm!("wfi", options(nomem, nostack)) };
}

fn halt() -> ! {
    loop {
        wait_for_interrupt();
    }
}

/// Reads the 16550's line status register (LSR) once: one MMIO exit, no side effect on
/// the transmitter.
#[inline(always)]
pub fn console_status() -> u32 {
    // SAFETY: UART_BASE is this VM's 16550 (the VM configs map one there); its registers
    // are bytes, and reading LSR has no side effects on the transmitter.
    u32::from(unsafe { crate::mmio::read8(UART_BASE + UART_LSR) })
}

/// The next byte the 16550 received, if one waits.
pub fn console_getc() -> Option<u8> {
    // SAFETY: UART_BASE is this VM's 16550 (the VM configs map one there); its registers
    // are bytes; reading RBR takes the byte, which is what is wanted.
    unsafe {
        if crate::mmio::read8(UART_BASE + UART_LSR) & UART_LSR_DR == 0 {
            return None;
        }
        Some(crate::mmio::read8(UART_BASE + UART_THR))
    }
}

/// Writes one byte to the 16550, waiting until its transmit holding register is empty.
pub fn console_putc(byte: u8) {
    // SAFETY: UART_BASE is this VM's 16550 (the VM configs map one there); its registers
    // are bytes, and reading LSR has no side effects on the transmitter.
    unsafe {
        while crate::mmio::read8(UART_BASE + UART_LSR) & UART_LSR_THRE == 0 {}
        crate::mmio::write8(UART_BASE + UART_THR, byte);
    }
}
