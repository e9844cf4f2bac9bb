//! Entry: the arm64 Image header, the boot CPU's path to the runtime, and secondaries'.

use super::{gic, mmu, pl011, trap};
use crate::console::RawWriter;
use crate::platform;
use crate::power::fatal;
use aarch64_cpu::registers::*;
use axconfig::{dtb::UartKind, MAX_CPUS, STACK_SIZE};
use core::fmt::Write;

core::arch::global_asm!(
    "
    .section .text.head, \"ax\"
    .global _start
    _start:
        b       primary_entry           // code0
        .long   0                       // code1
        .quad   _text_offset            // image load offset from a 2 MiB-aligned RAM base
        .quad   _image_size             // effective image size, BSS included
        .quad   0x2                     // flags: little-endian, 4 KiB pages
        .quad   0, 0, 0                 // reserved
        .ascii  \"ARM\\x64\"             // magic
        .long   0                       // reserved (PE header offset)

    primary_entry:
        mov     x19, x0                 // x0: physical address of the DTB
        mrs     x1, CurrentEL
        ubfx    x1, x1, #2, #2
        cmp     x1, #2
        b.ne    1f
        adrp    x2, BOOT_STACK
        add     x2, x2, :lo12:BOOT_STACK
        add     sp, x2, #{stack_size}
        adrp    x2, __bss_start
        add     x2, x2, :lo12:__bss_start
        adrp    x3, __bss_end
        add     x3, x3, :lo12:__bss_end
    2:  cmp     x2, x3
        b.hs    3f
        str     xzr, [x2], #8
        b       2b
    3:  mov     x0, x19
        bl      axhal_primary_init
    1:  mov     x0, x1                  // not at EL2: report the level we are at
        adrp    x2, BOOT_STACK
        add     x2, x2, :lo12:BOOT_STACK
        add     sp, x2, #{stack_size}
        bl      axhal_wrong_el

    .section .text
    .global secondary_entry
    secondary_entry:
        mov     x19, x0                 // x0: logical CPU id (PSCI context id)
        adrp    x1, SECONDARY_STACK_TOP
        add     x1, x1, :lo12:SECONDARY_STACK_TOP
        ldr     x2, [x1, x19, lsl #3]
        mov     sp, x2
        mov     x0, x19
        bl      axhal_secondary_init
    ",
    stack_size = const STACK_SIZE,
);

/// Not entered at EL2: say so on the early UART and power off through EL1's PSCI conduit.
#[no_mangle]
extern "C" fn axhal_wrong_el(el: u64) -> ! {
    let _ = write!(
        RawWriter,
        "\naxvisor: started at EL{el}, but the hypervisor must start at EL2.\n\
         axvisor: run QEMU with `-M virt,virtualization=on` (cargo xtask run does).\n"
    );
    // SAFETY: PSCI SYSTEM_OFF through HVC, the conduit QEMU offers an EL1 boot; no memory is
    // touched, and if it returns we park below.
    unsafe { core::arch::asm!("hvc #0", in("x0") 0x8400_0008u64, options(nomem, nostack)) };
    loop {
        aarch64_cpu::asm::wfe();
    }
}

fn mpidr_affinity() -> usize {
    (MPIDR_EL1.get() & 0xff_00ff_ffff) as usize
}

/// The boot CPU, on its boot stack with BSS zeroed and the MMU off.
#[no_mangle]
extern "C" fn axhal_primary_init(dtb: usize) -> ! {
    trap::init();
    mmu::init_boot_map(dtb);
    let info = platform::init_from_dtb(dtb, "x0", mmu::BOOT_MAP_DTB_MAX);
    mmu::init_final_map(&info.memory);
    if let Some(u) = info.uart.filter(|u| u.kind == UartKind::Pl011) {
        pl011::set_base(u.regs.start);
    }
    let Some(cpu) = info.cpu_index(mpidr_affinity()) else {
        fatal(format_args!(
            "boot CPU (MPIDR {:#x}) is not among the first {MAX_CPUS} CPUs of the device tree",
            mpidr_affinity()
        ))
    };
    TPIDR_EL2.set(cpu as u64);
    gic::init_primary(info).unwrap_or_else(|e| fatal(format_args!("{e}")));
    gic::init_cpu(cpu);
    crate::enter_primary()
}

/// A secondary CPU started by PSCI CPU_ON, on its own stack with the MMU off.
#[no_mangle]
extern "C" fn axhal_secondary_init(cpu: usize) -> ! {
    trap::init();
    mmu::enable_final_map();
    TPIDR_EL2.set(cpu as u64);
    gic::init_cpu(cpu);
    crate::enter_secondary(cpu)
}
