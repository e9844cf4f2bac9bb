//! The world switch into an EL1 guest and back.
//!
//! [`run`] saves the hypervisor's x19, x29 and x30 (the callee-saved registers its `asm!`
//! cannot declare clobbered, and the return address) and a pointer to the guest's
//! registers on the EL2 stack, loads the guest's general-purpose registers, ELR_EL2 and
//! SPSR_EL2, and `eret`s. Any exception from the guest (lower EL, AArch64) lands in the
//! vector's guest-exit entries, which store the guest's registers back through that pointer,
//! restore the hypervisor's and return from [`run`] with what happened. EL1 system registers,
//! stage-2 and trap controls are the vCPU crate's business and must be loaded before.

/// A guest's general-purpose registers and the state `eret` uses.
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct GuestRegs {
    /// x0..x30.
    pub x: [u64; 31],
    /// Guest PC (ELR_EL2).
    pub elr: u64,
    /// Guest PSTATE (SPSR_EL2).
    pub spsr: u64,
}

/// Why the guest stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// A synchronous exception: read ESR_EL2 / FAR_EL2 / HPFAR_EL2.
    Sync,
    /// A physical IRQ (still pending; the hypervisor takes it once it unmasks IRQs).
    Irq,
    /// A physical FIQ.
    Fiq,
    /// An SError.
    SError,
}

/// Runs the guest until its next exception. Call with IRQs masked; the EL1 and stage-2 state
/// must be the guest's.
pub fn run(regs: &mut GuestRegs) -> GuestExit {
    let kind: u64;
    // SAFETY: `axhal_guest_enter` saves x19, x29, x30 and the stack pointer and restores them
    // when the guest traps; every other general-purpose register is declared clobbered here
    // (the C ABI's caller-saved ones and x20-x28), so the compiler keeps nothing in them
    // across the run. The assembly writes only through `regs`, which is exclusive. The
    // hypervisor is built soft-float and keeps nothing in SIMD registers. The guest runs at
    // EL1 under stage-2 translation and cannot reach EL2 state.
    unsafe {
        core::arch::asm!(
            "bl axhal_guest_enter",
            inlateout("x0") regs as *mut GuestRegs as u64 => kind,
            lateout("x18") _, lateout("x20") _, lateout("x21") _, lateout("x22") _,
            lateout("x23") _, lateout("x24") _, lateout("x25") _, lateout("x26") _,
            lateout("x27") _, lateout("x28") _,
            clobber_abi("C"),
        )
    };
    match kind {
        0 => GuestExit::Sync,
        1 => GuestExit::Irq,
        2 => GuestExit::Fiq,
        _ => GuestExit::SError,
    }
}

core::arch::global_asm!(
    "
    .section .text
    .global axhal_guest_enter
    axhal_guest_enter:
        sub     sp, sp, #32
        stp     x19, x29, [sp, #0]
        stp     x30, x0, [sp, #16]
        ldp     x1, x2, [x0, #248]
        msr     elr_el2, x1
        msr     spsr_el2, x2
        ldp     x2, x3, [x0, #16]
        ldp     x4, x5, [x0, #32]
        ldp     x6, x7, [x0, #48]
        ldp     x8, x9, [x0, #64]
        ldp     x10, x11, [x0, #80]
        ldp     x12, x13, [x0, #96]
        ldp     x14, x15, [x0, #112]
        ldp     x16, x17, [x0, #128]
        ldp     x18, x19, [x0, #144]
        ldp     x20, x21, [x0, #160]
        ldp     x22, x23, [x0, #176]
        ldp     x24, x25, [x0, #192]
        ldp     x26, x27, [x0, #208]
        ldp     x28, x29, [x0, #224]
        ldr     x30, [x0, #240]
        ldp     x0, x1, [x0, #0]
        eret
        dsb     nsh
        isb

    .global axhal_guest_exit
    axhal_guest_exit:
        // x0 = exit kind; the guest's x0 and x1 are at [sp]; the frame of
        // axhal_guest_enter is above them, with the GuestRegs pointer at its offset 24.
        ldr     x1, [sp, #40]
        stp     x2, x3, [x1, #16]
        stp     x4, x5, [x1, #32]
        stp     x6, x7, [x1, #48]
        stp     x8, x9, [x1, #64]
        stp     x10, x11, [x1, #80]
        stp     x12, x13, [x1, #96]
        stp     x14, x15, [x1, #112]
        stp     x16, x17, [x1, #128]
        stp     x18, x19, [x1, #144]
        stp     x20, x21, [x1, #160]
        stp     x22, x23, [x1, #176]
        stp     x24, x25, [x1, #192]
        stp     x26, x27, [x1, #208]
        stp     x28, x29, [x1, #224]
        str     x30, [x1, #240]
        ldp     x2, x3, [sp], #16
        stp     x2, x3, [x1, #0]
        mrs     x2, elr_el2
        mrs     x3, spsr_el2
        stp     x2, x3, [x1, #248]
        ldp     x19, x29, [sp, #0]
        ldr     x30, [sp, #16]
        add     sp, sp, #32
        ret
    "
);
