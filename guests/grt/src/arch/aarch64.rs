//! aarch64 guests run at EL1 with the MMU off (so every data access is Device memory and
//! must be aligned: the target is built with `+strict-align`). The console is a PL011, power
//! and reset are PSCI calls and hypercalls are `hvc #0`, all handled by the hypervisor.

use core::arch::{asm, global_asm};
use core::mem::size_of;

use crate::layout;
use crate::smp::{CpuState, PowerError};
use crate::trap::{self, DataFault, Exception, FaultAction, Undefined};

/// The architecture's name.
pub const NAME: &str = "aarch64";
/// Guest RAM base.
pub const RAM_BASE: u64 = layout::AARCH64_RAM_BASE;
/// Where the image is linked, loaded and entered: the RAM base.
pub const IMAGE_BASE: u64 = RAM_BASE;

/// PL011 UART base address.
const UART_BASE: usize = 0x0900_0000;
/// PL011 data register.
const UART_DR: usize = 0x00;
/// PL011 flag register.
const UART_FR: usize = 0x18;
/// PL011 FR: transmit FIFO full.
const UART_FR_TXFF: u32 = 1 << 5;
/// PL011 FR: receive FIFO empty.
const UART_FR_RXFE: u32 = 1 << 4;

/// PSCI SYSTEM_OFF function id (SMC32 calling convention).
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
/// PSCI SYSTEM_RESET function id.
const PSCI_SYSTEM_RESET: u64 = 0x8400_0009;
/// PSCI CPU_OFF function id.
const PSCI_CPU_OFF: u64 = 0x8400_0002;
/// PSCI CPU_ON function id (SMC64).
const PSCI_CPU_ON: u64 = 0xC400_0003;
/// PSCI AFFINITY_INFO function id (SMC64).
const PSCI_AFFINITY_INFO: u64 = 0xC400_0004;

/// ESR_EL1 exception classes of a data abort: from a lower EL, from the same EL.
const EC_DATA_ABORT_LOWER: u64 = 0x24;
const EC_DATA_ABORT_SAME: u64 = 0x25;
/// ESR_EL1 exception class of an undefined instruction ("unknown reason").
const EC_UNKNOWN: u64 = 0x00;
/// ESR_EL1.ISS.WnR: the abort was caused by a write.
const ESR_WNR: u64 = 1 << 6;
/// The vector of a synchronous exception from the current EL using SP_EL1.
const VECTOR_SYNC_CURRENT_SPX: u64 = 4;
/// The vector of an IRQ from the current EL using SP_EL1.
const VECTOR_IRQ_CURRENT_SPX: u64 = 5;

/// Registers saved by an exception entry, at SP (layout shared with the assembly below and
/// with [`aarch64_trap_frame_save!`](crate::aarch64_trap_frame_save) /
/// [`aarch64_trap_frame_restore!`](crate::aarch64_trap_frame_restore), for guests with
/// vectors of their own).
#[repr(C)]
pub struct TrapFrame {
    /// x0 to x30.
    pub x: [u64; 31],
    /// ELR_EL1.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    /// Keeps the frame a multiple of 16 bytes, as SP must stay aligned.
    _pad: u64,
}

/// The size of a [`TrapFrame`], a multiple of 16.
pub const FRAME_SIZE: usize = size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE.is_multiple_of(16));

/// Assembly, for `global_asm!` through `concat!`: with SP lowered by [`FRAME_SIZE`] and x0,
/// x1 already stored at SP + 0, stores x2-x30, ELR_EL1 and SPSR_EL1 into the
/// [`TrapFrame`] at SP (x2 and x3 are clobbered).
#[macro_export]
macro_rules! aarch64_trap_frame_save {
    () => {
        "
    stp  x2, x3, [sp, #16]
    stp  x4, x5, [sp, #32]
    stp  x6, x7, [sp, #48]
    stp  x8, x9, [sp, #64]
    stp  x10, x11, [sp, #80]
    stp  x12, x13, [sp, #96]
    stp  x14, x15, [sp, #112]
    stp  x16, x17, [sp, #128]
    stp  x18, x19, [sp, #144]
    stp  x20, x21, [sp, #160]
    stp  x22, x23, [sp, #176]
    stp  x24, x25, [sp, #192]
    stp  x26, x27, [sp, #208]
    stp  x28, x29, [sp, #224]
    str  x30, [sp, #240]
    mrs  x2, elr_el1
    mrs  x3, spsr_el1
    stp  x2, x3, [sp, #248]
"
    };
}

/// Assembly, for `global_asm!` through `concat!`: loads ELR_EL1, SPSR_EL1 and x0-x30 back
/// from the [`TrapFrame`] at SP (SP itself is left for the caller to raise).
#[macro_export]
macro_rules! aarch64_trap_frame_restore {
    () => {
        "
    ldp  x2, x3, [sp, #248]
    msr  elr_el1, x2
    msr  spsr_el1, x3
    ldp  x0, x1, [sp, #0]
    ldp  x2, x3, [sp, #16]
    ldp  x4, x5, [sp, #32]
    ldp  x6, x7, [sp, #48]
    ldp  x8, x9, [sp, #64]
    ldp  x10, x11, [sp, #80]
    ldp  x12, x13, [sp, #96]
    ldp  x14, x15, [sp, #112]
    ldp  x16, x17, [sp, #128]
    ldp  x18, x19, [sp, #144]
    ldp  x20, x21, [sp, #160]
    ldp  x22, x23, [sp, #176]
    ldp  x24, x25, [sp, #192]
    ldp  x26, x27, [sp, #208]
    ldp  x28, x29, [sp, #224]
    ldr  x30, [sp, #240]
"
    };
}

// The entry point, placed first in the image by the linker script (.text.entry), and the
// exception vector table (2 KiB aligned, 16 entries of 0x80 bytes). Each vector saves x0/x1,
// puts its index in x0 and joins the common path, which saves the rest of the frame, calls
// `grt_trap(frame, index)` and restores everything (including a possibly changed ELR_EL1).
global_asm!(
    concat!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    adrp x0, __stack_top
    add  x0, x0, :lo12:__stack_top
    mov  sp, x0
    adrp x0, grt_vectors
    add  x0, x0, :lo12:grt_vectors
    msr  vbar_el1, x0
    isb
    adrp x0, __bss_start
    add  x0, x0, :lo12:__bss_start
    adrp x1, __bss_end
    add  x1, x1, :lo12:__bss_end
1:  cmp  x0, x1
    b.hs 2f
    str  xzr, [x0], #8
    b    1b
2:  bl   grt_start
3:  wfi
    b    3b

    // A vCPU started by `smp::cpu_on`: x0 = its boot block (stack top first).
    .section .text, "ax"
    .global grt_secondary_entry
grt_secondary_entry:
    ldr  x1, [x0]
    mov  sp, x1
    adrp x1, grt_vectors
    add  x1, x1, :lo12:grt_vectors
    msr  vbar_el1, x1
    isb
    bl   grt_secondary_start
4:  wfi
    b    4b

    .macro GRT_VECTOR index
    .balign 0x80
    sub  sp, sp, #{frame}
    stp  x0, x1, [sp, #0]
    mov  x0, #\index
    b    grt_trap_entry
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global grt_vectors
grt_vectors:
    GRT_VECTOR 0
    GRT_VECTOR 1
    GRT_VECTOR 2
    GRT_VECTOR 3
    GRT_VECTOR 4
    GRT_VECTOR 5
    GRT_VECTOR 6
    GRT_VECTOR 7
    GRT_VECTOR 8
    GRT_VECTOR 9
    GRT_VECTOR 10
    GRT_VECTOR 11
    GRT_VECTOR 12
    GRT_VECTOR 13
    GRT_VECTOR 14
    GRT_VECTOR 15

grt_trap_entry:
"#,
    crate::aarch64_trap_frame_save!(),
    r#"
    mov  x1, x0
    mov  x0, sp
    bl   grt_trap
"#,
    crate::aarch64_trap_frame_restore!(),
    r#"
    add  sp, sp, #{frame}
    eret
"#
    ),
    frame = const FRAME_SIZE,
);

/// What each of the 16 exception vectors is.
const VECTOR_NAMES: [&str; 16] = [
    "synchronous (EL1, SP_EL0)",
    "IRQ (EL1, SP_EL0)",
    "FIQ (EL1, SP_EL0)",
    "SError (EL1, SP_EL0)",
    "synchronous",
    "IRQ",
    "FIQ",
    "SError",
    "synchronous (EL0)",
    "IRQ (EL0)",
    "FIQ (EL0)",
    "SError (EL0)",
    "synchronous (EL0, AArch32)",
    "IRQ (EL0, AArch32)",
    "FIQ (EL0, AArch32)",
    "SError (EL0, AArch32)",
];

/// Called by the vectors with the saved registers and the vector's index.
#[no_mangle]
extern "C" fn grt_trap(frame: &mut TrapFrame, index: u64) {
    trap::enter();
    if index == VECTOR_IRQ_CURRENT_SPX {
        super::irq_hw::handle_irqs();
        trap::leave();
        return;
    }
    let (esr, far): (u64, u64);
    // SAFETY: reading EL1 syndrome registers has no side effects.
    unsafe {
        asm!("mrs {}, esr_el1", out(reg) esr, options(nomem, nostack));
        asm!("mrs {}, far_el1", out(reg) far, options(nomem, nostack));
    }
    let ec = (esr >> 26) & 0x3f;
    let action = match ec {
        _ if index != VECTOR_SYNC_CURRENT_SPX => FaultAction::Fail,
        EC_DATA_ABORT_SAME | EC_DATA_ABORT_LOWER => trap::on_data_fault(&DataFault {
            syndrome: esr,
            addr: far,
            pc: frame.elr,
            is_write: esr & ESR_WNR != 0,
        }),
        EC_UNKNOWN => trap::on_undefined(&Undefined {
            syndrome: esr,
            pc: frame.elr,
        }),
        _ => trap::on_exception(&Exception {
            syndrome: esr,
            pc: frame.elr,
            addr: far,
        }),
    };
    match action {
        FaultAction::Skip => {
            // A64 instructions are all 4 bytes long.
            frame.elr += 4;
            trap::leave();
            return;
        }
        FaultAction::Retry => {
            trap::leave();
            return;
        }
        FaultAction::Fail => {}
    }
    let name = VECTOR_NAMES
        .get(index as usize)
        .copied()
        .unwrap_or("unknown vector");
    trap::unexpected(format_args!(
        "{name}: ESR_EL1 {esr:#x} (EC {ec:#x}), FAR_EL1 {far:#x}, ELR_EL1 {:#x}",
        frame.elr
    ))
}

/// An SMC Calling Convention call through `$insn` (`hvc #0` or `smc #0`).
macro_rules! smccc_call {
    ($(#[$doc:meta])* $vis:vis fn $name:ident = $insn:literal) => {
        $(#[$doc])*
        $vis fn $name(function: u64, args: [u64; 6]) -> [u64; 4] {
            let mut ret = [0u64; 4];
            // SAFETY: the instruction traps to the hypervisor (HCR_EL2.TSC traps `smc`),
            // which returns to the next instruction with the results in x0-x3. The SMC Calling
            // Convention lets it change x0-x17, so they are all declared clobbered; it may
            // read or write guest memory the arguments point to, so memory is not declared
            // untouched.
            unsafe {
                asm!(
                    $insn,
                    inlateout("x0") function => ret[0],
                    inlateout("x1") args[0] => ret[1],
                    inlateout("x2") args[1] => ret[2],
                    inlateout("x3") args[2] => ret[3],
                    inlateout("x4") args[3] => _,
                    inlateout("x5") args[4] => _,
                    inlateout("x6") args[5] => _,
                    lateout("x7") _,
                    lateout("x8") _,
                    lateout("x9") _,
                    lateout("x10") _,
                    lateout("x11") _,
                    lateout("x12") _,
                    lateout("x13") _,
                    lateout("x14") _,
                    lateout("x15") _,
                    lateout("x16") _,
                    lateout("x17") _,
                    options(nostack),
                );
            }
            ret
        }
    };
}

smccc_call!(
    /// `hvc #0` with `x0` = `function` and `x1`..`x6` = `args`; returns `x0`..`x3` (an SMC
    /// Calling Convention call: PSCI, the SMCCC discovery calls, axvisor's calls).
    pub fn hvc_call = "hvc #0"
);
smccc_call!(
    /// `smc #0` with `x0` = `function` and `x1`..`x6` = `args`; returns `x0`..`x3`: the
    /// other conduit, which the hypervisor answers like `hvc`.
    pub fn smc_call = "smc #0"
);

/// [`hvc_call`], returning `x0` only.
fn hvc(function: u64, args: [u64; 6]) -> u64 {
    hvc_call(function, args)[0]
}

/// [`smc_call`], returning `x0` only.
pub fn smc(function: u64, args: [u64; 6]) -> u64 {
    smc_call(function, args)[0]
}

/// The SMCCC function id of axvisor's hypercall `nr` (below 0x1_0000): an SMC64 fast call
/// of the vendor-specific hypervisor service, `0xC600_0000 | nr`.
pub const fn hypercall_fid(nr: u64) -> u64 {
    AXVISOR_SMCCC_BASE | nr
}

/// The first SMCCC function id of axvisor's hypercalls (docs/vmm.md, "Hypercall ABI").
pub const AXVISOR_SMCCC_BASE: u64 = 0xC600_0000;

/// Calls hypercall `nr` (below 0x1_0000) with six arguments (`hvc #0`, `x0` =
/// [`hypercall_fid`]`(nr)`, `x1`..`x6` = `args`) and returns `x0`.
pub fn hypercall(nr: u64, args: [u64; 6]) -> u64 {
    hvc(hypercall_fid(nr), args)
}

/// Asks the hypervisor to power the VM off (PSCI SYSTEM_OFF); if that returns, waits for
/// interrupts forever.
pub fn power_off() -> ! {
    hvc(PSCI_SYSTEM_OFF, [0; 6]);
    halt()
}

/// Asks the hypervisor to reset the VM (PSCI SYSTEM_RESET); if that returns, waits for
/// interrupts forever.
pub fn reset() -> ! {
    hvc(PSCI_SYSTEM_RESET, [0; 6]);
    halt()
}

/// PSCI CPU_ON: `target` MPIDR, `entry`, context id `arg` (x0 of the new vCPU).
pub fn cpu_on(target: u64, entry: u64, arg: u64) -> Result<(), PowerError> {
    crate::smp::psci_on_result(hvc(PSCI_CPU_ON, [target, entry, arg, 0, 0, 0]))
}

/// PSCI AFFINITY_INFO at affinity level 0.
pub fn cpu_status(target: u64) -> Result<CpuState, PowerError> {
    crate::smp::psci_status_result(hvc(PSCI_AFFINITY_INFO, [target, 0, 0, 0, 0, 0]))
}

/// PSCI CPU_OFF; if that returns, waits for interrupts forever.
pub fn cpu_off() -> ! {
    hvc(PSCI_CPU_OFF, [0; 6]);
    halt()
}

/// This vCPU's index: MPIDR_EL1.Aff0 (the hypervisor gives vCPU `i` affinity `i`).
pub fn cpu_id() -> usize {
    let mpidr: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
    (mpidr & 0xff) as usize
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

/// Reads the PL011's flag register (FR) once: one MMIO exit, no side effect.
#[inline(always)]
pub fn console_status() -> u32 {
    // SAFETY: UART_BASE is this VM's PL011 (the VM configs map one there); FR is a 32-bit
    // register and reading it has no side effects.
    unsafe { crate::mmio::read32(UART_BASE + UART_FR) }
}

/// The next byte the PL011 received, if one waits.
pub fn console_getc() -> Option<u8> {
    // SAFETY: UART_BASE is this VM's PL011 (the VM configs map one there); FR and DR are
    // 32-bit registers; reading DR takes the byte, which is what is wanted.
    unsafe {
        if crate::mmio::read32(UART_BASE + UART_FR) & UART_FR_RXFE != 0 {
            return None;
        }
        Some(crate::mmio::read32(UART_BASE + UART_DR) as u8)
    }
}

/// Writes one byte to the PL011, waiting while its transmit FIFO is full.
pub fn console_putc(byte: u8) {
    // SAFETY: UART_BASE is this VM's PL011 (the VM configs map one there); FR and DR are
    // 32-bit registers, and reading FR has no side effects.
    unsafe {
        while crate::mmio::read32(UART_BASE + UART_FR) & UART_FR_TXFF != 0 {}
        crate::mmio::write32(UART_BASE + UART_DR, u32::from(byte));
    }
}
