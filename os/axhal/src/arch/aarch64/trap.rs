//! The EL2 exception vector.
//!
//! Interrupts taken while the hypervisor runs go to the GIC driver; everything else is
//! unexpected at this stage (there are no guests yet) and stops with a register dump.

use super::gic;
use aarch64_cpu::registers::*;
use core::fmt;

/// Registers saved on exception entry.
#[repr(C)]
pub struct TrapFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// ELR_EL2: where the exception was taken.
    pub elr: u64,
    /// SPSR_EL2: PSTATE at that point.
    pub spsr: u64,
    /// Stack pointer at that point.
    pub sp: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();

/// Which vector entry was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    CurSp0Sync,
    CurSp0Irq,
    CurSp0Fiq,
    CurSp0Serror,
    CurSync,
    CurIrq,
    CurFiq,
    CurSerror,
    LowerSync,
    LowerIrq,
    LowerFiq,
    LowerSerror,
    Lower32Sync,
    Lower32Irq,
    Lower32Fiq,
    Lower32Serror,
}

/// Vector entries in table order; the assembly passes the index.
const KINDS: [Kind; 16] = [
    Kind::CurSp0Sync,
    Kind::CurSp0Irq,
    Kind::CurSp0Fiq,
    Kind::CurSp0Serror,
    Kind::CurSync,
    Kind::CurIrq,
    Kind::CurFiq,
    Kind::CurSerror,
    Kind::LowerSync,
    Kind::LowerIrq,
    Kind::LowerFiq,
    Kind::LowerSerror,
    Kind::Lower32Sync,
    Kind::Lower32Irq,
    Kind::Lower32Fiq,
    Kind::Lower32Serror,
];

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.x.chunks(2).enumerate() {
            write!(f, "  x{:<2} = {:#018x}", i * 2, pair[0])?;
            if let Some(v) = pair.get(1) {
                write!(f, "  x{:<2} = {:#018x}", i * 2 + 1, v)?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "  elr = {:#018x}  spsr = {:#018x}  sp = {:#018x}",
            self.elr, self.spsr, self.sp
        )
    }
}

/// Installs the vector on this CPU and routes physical interrupts to EL2.
pub fn init() {
    // IRQs, FIQs and SErrors whose target is EL1 are never taken while running at EL2; with
    // IMO/FMO/AMO set they target EL2, so the hypervisor gets its own interrupts. RW: EL1 is
    // AArch64 (for the guests to come).
    HCR_EL2.write(
        HCR_EL2::RW::EL1IsAarch64 + HCR_EL2::IMO::SET + HCR_EL2::FMO::SET + HCR_EL2::AMO::SET,
    );
    extern "C" {
        static exception_vector_base: u8;
    }
    // Only the symbol's address is taken.
    VBAR_EL2.set(core::ptr::addr_of!(exception_vector_base) as u64);
}

#[no_mangle]
extern "C" fn axhal_trap(frame: &mut TrapFrame, kind: u64) {
    let kind = KINDS[(kind & 0xf) as usize];
    if kind == Kind::CurIrq {
        gic::handle_irq();
        return;
    }
    let esr = ESR_EL2.get();
    let class = match esr >> 26 {
        0x00 => "unknown reason",
        0x15..=0x17 => "SVC/HVC/SMC",
        0x18 => "system register access",
        0x20 | 0x21 => "instruction abort",
        0x22 => "PC alignment fault",
        0x24 | 0x25 => "data abort",
        0x26 => "SP alignment fault",
        0x2f => "SError",
        0x3c => "BRK instruction",
        _ => "other",
    };
    crate::power::fatal(format_args!(
        "unexpected exception ({kind:?}) on cpu {}: {class}, ESR_EL2 = {esr:#x} (EC {:#x}), FAR_EL2 = {:#x}\n{frame}",
        super::cpu_id(),
        esr >> 26,
        FAR_EL2.get()
    ));
}

macro_rules! vector_entries {
    ($($k:literal)*) => {
        concat!($(
            "
            .balign 0x80
                sub     sp, sp, #{frame}
                stp     x0, x1, [sp]
                mov     x0, #", $k, "
                b       trap_common
            "
        ),*)
    };
}

/// Lower-EL AArch64 entries: a guest was running (entered by `guest::run`); x0 = 0 sync,
/// 1 IRQ, 2 FIQ, 3 SError.
macro_rules! guest_exit_entries {
    ($($k:literal)*) => {
        concat!($(
            "
            .balign 0x80
                stp     x0, x1, [sp, #-16]!
                mov     x0, #", $k, "
                b       axhal_guest_exit
            "
        ),*)
    };
}

core::arch::global_asm!(
    concat!(
        "
        .section .text
        .balign 0x800
        .global exception_vector_base
        exception_vector_base:
        ",
        vector_entries!("0" "1" "2" "3" "4" "5" "6" "7"),
        guest_exit_entries!("0" "1" "2" "3"),
        vector_entries!("12" "13" "14" "15"),
        "
        trap_common:
            stp     x2, x3, [sp, #16]
            stp     x4, x5, [sp, #32]
            stp     x6, x7, [sp, #48]
            stp     x8, x9, [sp, #64]
            stp     x10, x11, [sp, #80]
            stp     x12, x13, [sp, #96]
            stp     x14, x15, [sp, #112]
            stp     x16, x17, [sp, #128]
            stp     x18, x19, [sp, #144]
            stp     x20, x21, [sp, #160]
            stp     x22, x23, [sp, #176]
            stp     x24, x25, [sp, #192]
            stp     x26, x27, [sp, #208]
            stp     x28, x29, [sp, #224]
            mrs     x2, elr_el2
            stp     x30, x2, [sp, #240]
            mrs     x3, spsr_el2
            add     x4, sp, #{frame}
            stp     x3, x4, [sp, #256]
            mov     x1, x0
            mov     x0, sp
            bl      axhal_trap
            ldp     x30, x2, [sp, #240]
            ldr     x3, [sp, #256]
            msr     elr_el2, x2
            msr     spsr_el2, x3
            ldp     x2, x3, [sp, #16]
            ldp     x4, x5, [sp, #32]
            ldp     x6, x7, [sp, #48]
            ldp     x8, x9, [sp, #64]
            ldp     x10, x11, [sp, #80]
            ldp     x12, x13, [sp, #96]
            ldp     x14, x15, [sp, #112]
            ldp     x16, x17, [sp, #128]
            ldp     x18, x19, [sp, #144]
            ldp     x20, x21, [sp, #160]
            ldp     x22, x23, [sp, #176]
            ldp     x24, x25, [sp, #192]
            ldp     x26, x27, [sp, #208]
            ldp     x28, x29, [sp, #224]
            ldp     x0, x1, [sp]
            add     sp, sp, #{frame}
            eret
        "
    ),
    frame = const FRAME_SIZE,
);
