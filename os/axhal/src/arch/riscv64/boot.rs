//! Entry of the boot hart (from OpenSBI) and of secondaries (from SBI HSM hart_start).

use super::{mmu, plic, sbi, trap, TIMEBASE_HZ};
use crate::platform;
use crate::power::fatal;
use axconfig::{MAX_CPUS, STACK_SIZE};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Set by the first hart to enter `_start`; in `.data` so that zeroing `.bss` keeps it.
#[no_mangle]
#[link_section = ".data"]
static BOOTED: AtomicUsize = AtomicUsize::new(0);

/// The logical id of the CPU being started through SBI HSM (see `_start`).
#[no_mangle]
static STARTING_CPU: AtomicUsize = AtomicUsize::new(0);

/// Records which CPU is being started, for a hart that OpenSBI sends to `_start`.
pub fn set_starting_cpu(cpu: usize) {
    STARTING_CPU.store(cpu, Ordering::Release);
}

core::arch::global_asm!(
    "
    .section .text.head, \"ax\"
    .global _start
    _start:
        // OpenSBI 1.1 can let a hart that is being started through HSM go before it has
        // stored the new entry point; that hart then arrives here, at the cold-boot entry,
        // a second time. Send any arrival after the first down the secondary path, as the
        // CPU being started (starts are one at a time).
        la      t0, BOOTED
        ld      t1, 0(t0)
        bnez    t1, 3f
        li      t1, 1
        sd      t1, 0(t0)
        mv      s0, a0                  // a0: hart id, a1: DTB address
        mv      s1, a1
        la      sp, BOOT_STACK
        li      t0, {stack_size}
        add     sp, sp, t0
        la      t0, __bss_start
        la      t1, __bss_end
    1:  bgeu    t0, t1, 2f
        sd      zero, 0(t0)
        addi    t0, t0, 8
        j       1b
    2:  mv      a0, s0
        mv      a1, s1
        call    axhal_primary_init
    3:  la      t0, STARTING_CPU
        ld      a1, 0(t0)
        j       secondary_entry

    .section .text
    .global secondary_entry
    .balign 4
    secondary_entry:
        mv      s0, a1                  // a0: hart id, a1: logical CPU id (opaque)
        la      t0, SECONDARY_STACK_TOP
        slli    t1, s0, 3
        add     t0, t0, t1
        ld      sp, 0(t0)
        mv      a0, s0
        call    axhal_secondary_init
    ",
    stack_size = const STACK_SIZE,
);

fn set_tp(cpu: usize) {
    // SAFETY: tp holds the logical CPU id for `cpu_id`; Rust code does not use tp otherwise
    // (no thread-local storage in this image).
    unsafe { core::arch::asm!("mv tp, {}", in(reg) cpu) };
}

/// Per-hart set-up shared by the boot hart and secondaries.
fn init_cpu(cpu: usize) {
    set_tp(cpu);
    trap::init();
    super::set_timer_deadline(u64::MAX);
    plic::init_cpu(cpu);
    trap::enable_irqs();
}

/// The boot hart, with translation off, BSS zeroed, on its boot stack.
#[no_mangle]
extern "C" fn axhal_primary_init(hartid: usize, dtb: usize) -> ! {
    set_tp(0);
    trap::init();
    let info = platform::init_from_dtb(dtb, "a1", 16 << 20);
    let Some(cpu) = info.cpu_index(hartid) else {
        fatal(format_args!(
            "boot hart {hartid} is not among the first {MAX_CPUS} harts of the device tree"
        ))
    };
    if !info.cpus[cpu].isa_h {
        fatal(format_args!(
            "hart {hartid} has no H extension (riscv,isa lacks 'h'); the hypervisor needs it.\n\
             axvisor: run QEMU with `-cpu rv64,h=true` (cargo xtask run does)."
        ));
    }
    sbi::HAS_SSTC.store(info.cpus[cpu].isa_sstc, Ordering::Relaxed);
    if let Some(hz) = info.timebase_hz.filter(|&hz| hz > 0) {
        TIMEBASE_HZ.store(hz, Ordering::Relaxed);
    }
    mmu::init(&info.memory);
    init_cpu(cpu);
    crate::enter_primary()
}

/// A secondary hart started by SBI HSM, translation off, on its own stack.
#[no_mangle]
extern "C" fn axhal_secondary_init(cpu: usize) -> ! {
    mmu::enable();
    init_cpu(cpu);
    crate::enter_secondary(cpu)
}
