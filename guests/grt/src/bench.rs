//! Measuring, for the benchmark guest (`guests/bench`, `cargo xtask bench`): the guest's
//! own counter, and the cheapest exception round trip a guest can make without leaving the
//! VM, which is the baseline the hypervisor's exits are compared with.
//!
//! Under QEMU's `-icount shift=0` guest-visible time advances by 1 ns per executed
//! instruction (the hypervisor's included), so [`ticks_to_ns`] of a [`counter`] difference
//! counts instructions. See `docs/performance.md`.
//!
//! Under Bochs with `clock: sync=none` the TSC advances by exactly one per instruction, so
//! on x86_64 a [`counter`] difference counts instructions directly.
//!
//! | | aarch64 | riscv64 | x86_64 |
//! |---|---|---|---|
//! | [`counter`] | `isb`, then `cntvct_el0` | `rdtime` | `lfence`, then `rdtsc` |
//! | [`counter_hz`] | `cntfrq_el0` | [`RISCV64_TIMEBASE_HZ`] (QEMU `virt`) | `grt::irq::timer_freq` (the TSC's) |
//! | [`hypercall0`] | `hvc #0`, inlined | `ecall` (axvisor SBI extension), inlined | `vmcall`, inlined |
//! | [`guest_exception`] | `svc #0` | `ebreak` (4 bytes; delegated to VS mode by the hypervisor's `hedeleg`) | `int3` |
//! | [`mmio_read`] | PL011 FR (`ldr`) | 16550 LSR (`lbu`) | 16550 LSR at [`X86_64_MMIO_UART`] (a byte `mov`) |
//! | [`PORT_READ`] | — | — | 16550 LSR on port 0x3FD (`in al, dx`) |
//!
//! [`counter_after_nops`] reads the same counter after a chosen number (0 to
//! [`MAX_NOPS`]) of `nop`s: the latency guest (`guests/benchirq`) uses it to see where
//! between two counter ticks an event falls (see its documentation).
//!
//! [`with_minimal_handler`] installs, for the duration of a closure, an exception entry that
//! returns from exactly that exception at once (aarch64: a vector table whose synchronous
//! current-EL entry `eret`s an SVC; riscv64: an `stvec` handler that steps `sepc` past an
//! `ebreak` and `sret`s; x86_64: an IDT gate for #BP whose handler is a lone `iretq`). Any
//! other exception goes on to grt's usual handling.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, Ordering};

/// The timebase of QEMU's riscv64 `virt` machine (the `time` CSR), in Hz.
pub const RISCV64_TIMEBASE_HZ: u64 = 10_000_000;

/// Set while [`with_minimal_handler`] runs: a nested call would restore the wrong entry.
/// Plain loads and stores only (grt assumes one vCPU, and exclusive accesses might not work
/// with the MMU off).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Reads the guest's counter (aarch64: the virtual counter after an `isb`; riscv64: the
/// `time` CSR).
#[inline(always)]
pub fn counter() -> u64 {
    let value: u64;
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads the virtual counter, which EL1 may always read; no memory is touched.
    // The `isb` keeps the read from being taken ahead of earlier instructions.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) value, options(nostack))
    };
    #[cfg(target_arch = "riscv64")]
    // SAFETY: reads the `time` CSR (hcounteren.TM lets VS mode read it); no memory is touched.
    unsafe {
        asm!("rdtime {}", out(reg) value, options(nostack))
    };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads the TSC; the `lfence` keeps the read from being taken ahead of earlier
    // instructions. Only RAX and RDX change; no memory is touched.
    unsafe {
        asm!(
            "lfence",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            out("rax") value,
            out("rdx") _,
            options(nostack)
        )
    };
    value
}

/// The most `nop`s [`counter_after_nops`] runs before its read.
pub const MAX_NOPS: u64 = 127;

/// Runs `nops` `nop` instructions (at most [`MAX_NOPS`]; more count as [`MAX_NOPS`]), then
/// reads the counter as [`counter`] does. The `nop`s are a slide entered by a computed
/// jump, so everything but their number is the same whatever `nops` is: under QEMU's
/// `-icount shift=0` the read happens exactly `nops` ns later than with 0.
#[inline(always)]
pub fn counter_after_nops(nops: u64) -> u64 {
    let nops = nops.min(MAX_NOPS);
    let value: u64;
    #[cfg(target_arch = "aarch64")]
    // SAFETY: jumps `nops` instructions back from label 2 into the slide of `MAX_NOPS`
    // `nop`s just before it (`nops` ≤ `MAX_NOPS`, A64 instructions are 4 bytes), runs
    // them, and reads the virtual counter as `counter` does. Only `t` and `value` change;
    // no memory is touched.
    unsafe {
        asm!(
            "adr {t}, 2f",
            "sub {t}, {t}, {n}, lsl #2",
            "br {t}",
            ".rept {max}",
            "nop",
            ".endr",
            "2:",
            "isb",
            "mrs {v}, cntvct_el0",
            t = out(reg) _,
            n = in(reg) nops,
            v = out(reg) value,
            max = const MAX_NOPS,
            options(nomem, nostack),
        )
    };
    #[cfg(target_arch = "riscv64")]
    // SAFETY: as on aarch64, with 4-byte `nop`s (compressed instructions are off for the
    // block) and `rdtime`. Only `t`, `s` and `value` change; no memory is touched.
    unsafe {
        asm!(
            ".option push",
            ".option norvc",
            "lla {t}, 2f",
            "slli {s}, {n}, 2",
            "sub {t}, {t}, {s}",
            "jr {t}",
            ".rept {max}",
            "nop",
            ".endr",
            "2:",
            ".option pop",
            "rdtime {v}",
            t = out(reg) _,
            s = out(reg) _,
            n = in(reg) nops,
            v = out(reg) value,
            max = const MAX_NOPS,
            options(nomem, nostack),
        )
    };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as on aarch64, with 1-byte `nop`s, and the counter read as `counter` does.
    // Only `t`, RAX and RDX change; no memory is touched.
    unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "sub {t}, {n}",
            "jmp {t}",
            ".rept {max}",
            "nop",
            ".endr",
            "2:",
            "lfence",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            t = out(reg) _,
            n = in(reg) nops,
            out("rax") value,
            out("rdx") _,
            max = const MAX_NOPS,
            options(nomem, nostack),
        )
    };
    value
}

/// The frequency of [`counter`] in Hz.
pub fn counter_hz() -> u64 {
    #[cfg(target_arch = "aarch64")]
    {
        let hz: u64;
        // SAFETY: reads CNTFRQ_EL0, which has no side effects.
        unsafe { asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nomem, nostack)) };
        hz
    }
    #[cfg(target_arch = "riscv64")]
    {
        RISCV64_TIMEBASE_HZ
    }
    #[cfg(target_arch = "x86_64")]
    {
        crate::irq::timer_freq()
    }
}

/// Converts `ticks` of a counter running at `hz` into tenths of a nanosecond, divided by
/// `ops` (so per operation), rounded to nearest. `hz` and `ops` of 0 give 0.
pub fn ticks_to_tenth_ns_per_op(ticks: u64, hz: u64, ops: u64) -> u64 {
    if hz == 0 || ops == 0 {
        return 0;
    }
    let den = u128::from(hz) * u128::from(ops);
    let num = u128::from(ticks) * 10_000_000_000;
    ((num + den / 2) / den) as u64
}

/// Converts `ticks` of a counter running at `hz` into nanoseconds (0 if `hz` is 0).
pub fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    ticks_to_tenth_ns_per_op(ticks, hz, 1) / 10
}

/// Hypercall `nr` without arguments, inlined into the caller: the same ABI as
/// [`crate::hypercall`] (`hvc #0` with `x0` = `crate::hypercall_fid(nr)`, result in `x0` /
/// `ecall` with `a7` =
/// [`crate::AXVISOR_HC_EID`], `a6` = `nr`, result in `a1` or the SBI error from `a0`), but
/// the argument registers are left as they are. A benchmark loop then spends a few
/// instructions of its own per call instead of building a six-argument array for an
/// out-of-line call (on riscv64 that array cost a 39-instruction `memset` per call).
#[inline(always)]
pub fn hypercall0(nr: u64) -> u64 {
    #[cfg(target_arch = "aarch64")]
    {
        let ret;
        // SAFETY: as `crate::hypercall`: `hvc #0` returns to the next instruction with the
        // result in x0, and the SMC Calling Convention lets the hypervisor change x0-x17, so
        // they are all declared clobbered. Memory is not declared untouched.
        unsafe {
            asm!(
                "hvc #0",
                inlateout("x0") crate::hypercall_fid(nr) => ret,
                lateout("x1") _, lateout("x2") _, lateout("x3") _, lateout("x4") _,
                lateout("x5") _, lateout("x6") _, lateout("x7") _, lateout("x8") _,
                lateout("x9") _, lateout("x10") _, lateout("x11") _, lateout("x12") _,
                lateout("x13") _, lateout("x14") _, lateout("x15") _, lateout("x16") _,
                lateout("x17") _,
                options(nostack),
            )
        };
        ret
    }
    #[cfg(target_arch = "riscv64")]
    {
        let (error, value): (u64, u64);
        // SAFETY: as `crate::hypercall`: `ecall` from VS mode returns to the next instruction
        // with a0 (SBI error) and a1 (value) set and every other register preserved.
        unsafe {
            asm!(
                "ecall",
                lateout("a0") error,
                lateout("a1") value,
                in("a6") nr,
                in("a7") crate::AXVISOR_HC_EID,
                options(nostack),
            )
        };
        if error == 0 {
            value
        } else {
            error
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        let ret;
        // SAFETY: as `crate::hypercall`: `vmcall` returns to the next instruction with the
        // result in RAX; the argument registers (left as they are) are declared clobbered.
        unsafe {
            asm!(
                "vmcall",
                inlateout("rax") nr => ret,
                lateout("rdi") _, lateout("rsi") _, lateout("rdx") _,
                lateout("r10") _, lateout("r8") _, lateout("r9") _,
                options(nostack),
            )
        };
        ret
    }
}

/// The emulated-MMIO read the bench guest times: the console UART's status register on
/// aarch64 and riscv64 (PL011 FR, 32 bits / 16550 LSR, one byte: `crate::console::status`);
/// on x86_64, whose console is on ports, the line status register (one byte) of the 16550
/// the bench VM maps at [`X86_64_MMIO_UART`] (`configs/vms/x86_64-bench.toml`).
#[inline(always)]
pub fn mmio_read() -> u32 {
    #[cfg(not(target_arch = "x86_64"))]
    {
        crate::console::status()
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the bench VM maps a 16550 at X86_64_MMIO_UART (its registers are bytes);
    // reading LSR has no side effects on the transmitter.
    unsafe {
        u32::from(crate::mmio::read8(X86_64_MMIO_UART + 5))
    }
}

/// Where the x86_64 bench VM maps its MMIO 16550 (the one [`mmio_read`] reads).
pub const X86_64_MMIO_UART: usize = 0xc000_0000;

/// The emulated port-I/O read the bench guest times where the architecture has port I/O
/// (x86_64: an `inb` of the console 16550's line status register, `crate::console::status`);
/// `None` elsewhere.
pub const PORT_READ: Option<fn() -> u32> = if cfg!(target_arch = "x86_64") {
    Some(crate::console::status)
} else {
    None
};

/// One exception round trip that stays inside the guest: `svc #0` (aarch64) or a 4-byte
/// `ebreak` (riscv64). Only call it inside [`with_minimal_handler`]; anywhere else grt
/// reports it as an unexpected exception.
#[inline(always)]
pub fn guest_exception() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: with the minimal handler installed, `svc #0` returns to the next instruction
    // with every register and the flags (restored from SPSR_EL1) unchanged. The handler
    // pushes one register below `sp`, like any exception entry.
    unsafe {
        asm!("svc #0")
    };
    #[cfg(target_arch = "riscv64")]
    // SAFETY: with the minimal handler installed, the `ebreak` (forced to its 4-byte form,
    // which the handler steps over) returns to the next instruction with every register
    // unchanged; the handler touches only `sscratch`, `sepc` and its own `t0`, restored.
    unsafe {
        asm!(
            ".option push",
            ".option norvc",
            "ebreak",
            ".option pop",
            options(nomem, nostack)
        )
    };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: with the minimal handler installed, `int3` returns to the next instruction
    // with every register and the flags unchanged (`iretq` restores RFLAGS); the CPU pushes
    // its frame below RSP (the target has no red zone).
    unsafe {
        asm!("int3", options(nomem))
    };
}

/// Runs `f` with the minimal exception entry installed (see the module documentation),
/// then puts grt's own entry back. Panics if called while already installed.
pub fn with_minimal_handler<R>(f: impl FnOnce() -> R) -> R {
    assert!(
        !INSTALLED.load(Ordering::SeqCst),
        "grt::bench::with_minimal_handler is not reentrant"
    );
    INSTALLED.store(true, Ordering::SeqCst);
    let saved = imp::install();
    let result = f();
    imp::restore(saved);
    INSTALLED.store(false, Ordering::SeqCst);
    result
}

#[cfg(target_arch = "aarch64")]
mod imp {
    use core::arch::asm;

    /// Points VBAR_EL1 at the minimal vectors; returns the previous VBAR_EL1.
    pub fn install() -> u64 {
        let saved: u64;
        // SAFETY: `grt_bench_vectors` is a complete, 2 KiB aligned vector table (below); every
        // entry but the SVC fast path branches to grt's own entry for the same vector.
        unsafe {
            asm!(
                "mrs {saved}, vbar_el1",
                "adrp {new}, grt_bench_vectors",
                "add {new}, {new}, :lo12:grt_bench_vectors",
                "msr vbar_el1, {new}",
                "isb",
                saved = out(reg) saved,
                new = out(reg) _,
                options(nostack),
            )
        };
        saved
    }

    /// Puts VBAR_EL1 back to `saved`.
    pub fn restore(saved: u64) {
        // SAFETY: `saved` is the vector base `install` replaced (grt's own table).
        unsafe { asm!("msr vbar_el1, {}", "isb", in(reg) saved, options(nostack)) };
    }
}

// aarch64: a vector table like grt's. Entry 4 (synchronous, current EL with SP_EL1) returns
// at once from an SVC (ESR_EL1.EC 0x15; ELR_EL1 already points after the `svc`; the flags
// `cmp` changes come back from SPSR_EL1) and hands anything else to grt's entry 4. Every
// other entry branches straight to grt's entry of the same index.
#[cfg(target_arch = "aarch64")]
global_asm!(
    r#"
    .macro GRT_BENCH_FORWARD index
    .balign 0x80
    b    grt_vectors + \index * 0x80
    .endm

    .section .text.grt_bench_vectors, "ax"
    .balign 0x800
    .global grt_bench_vectors
grt_bench_vectors:
    GRT_BENCH_FORWARD 0
    GRT_BENCH_FORWARD 1
    GRT_BENCH_FORWARD 2
    GRT_BENCH_FORWARD 3
    .balign 0x80
    str  x0, [sp, #-16]!
    mrs  x0, esr_el1
    lsr  x0, x0, #26
    cmp  x0, #0x15
    ldr  x0, [sp], #16
    b.ne grt_vectors + 4 * 0x80
    eret
    GRT_BENCH_FORWARD 5
    GRT_BENCH_FORWARD 6
    GRT_BENCH_FORWARD 7
    GRT_BENCH_FORWARD 8
    GRT_BENCH_FORWARD 9
    GRT_BENCH_FORWARD 10
    GRT_BENCH_FORWARD 11
    GRT_BENCH_FORWARD 12
    GRT_BENCH_FORWARD 13
    GRT_BENCH_FORWARD 14
    GRT_BENCH_FORWARD 15
"#
);

#[cfg(target_arch = "riscv64")]
mod imp {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// grt's `stvec` while the minimal handler is installed: where its fallback goes.
    #[no_mangle]
    static GRT_BENCH_SAVED_STVEC: AtomicU64 = AtomicU64::new(0);

    /// Points `stvec` at the minimal handler; returns the previous `stvec`.
    pub fn install() -> u64 {
        let saved: u64;
        // SAFETY: reads stvec; no side effects.
        unsafe { asm!("csrr {}, stvec", out(reg) saved, options(nomem, nostack)) };
        GRT_BENCH_SAVED_STVEC.store(saved, Ordering::SeqCst);
        // SAFETY: `grt_bench_trap` (below) is 4-byte aligned (direct mode) and returns from a
        // breakpoint or hands the trap back to the saved handler.
        unsafe {
            asm!(
                "lla {t}, grt_bench_trap",
                "csrw stvec, {t}",
                t = out(reg) _,
                options(nomem, nostack),
            )
        };
        saved
    }

    /// Puts `stvec` back to `saved`.
    pub fn restore(saved: u64) {
        // SAFETY: `saved` is the trap entry `install` replaced (grt's own).
        unsafe { asm!("csrw stvec, {}", in(reg) saved, options(nomem, nostack)) };
    }
}

// riscv64: a breakpoint (scause 3) returns at once past the 4-byte `ebreak`. Anything else
// puts grt's handler back in `stvec` and `sret`s to the trapping instruction, which traps
// again (or, for an interrupt, is interrupted again) into grt's handler: `sret` restores the
// privilege and SIE the trap saved. `t0` is kept in `sscratch`, which grt does not use.
#[cfg(target_arch = "riscv64")]
global_asm!(
    r#"
    .section .text.grt_bench_trap, "ax"
    .balign 4
    .global grt_bench_trap
grt_bench_trap:
    csrw sscratch, t0
    csrr t0, scause
    addi t0, t0, -3
    bnez t0, 1f
    csrr t0, sepc
    addi t0, t0, 4
    csrw sepc, t0
    csrr t0, sscratch
    sret
1:  lla  t0, GRT_BENCH_SAVED_STVEC
    ld   t0, 0(t0)
    csrw stvec, t0
    csrr t0, sscratch
    sret
"#
);

#[cfg(target_arch = "x86_64")]
mod imp {
    /// The #BP vector.
    const VECTOR_BP: u8 = 3;

    /// Points the #BP gate at `grt_bench_int3`; returns 0 (grt's own gate is known).
    pub fn install() -> u64 {
        extern "C" {
            fn grt_bench_int3();
        }
        crate::arch::set_gate(VECTOR_BP, grt_bench_int3 as *const () as usize as u64);
        0
    }

    /// Points the #BP gate back at grt's own stub.
    pub fn restore(_saved: u64) {
        crate::arch::set_gate(VECTOR_BP, crate::arch::stub_address(VECTOR_BP));
    }
}

// x86_64: `int3` is a trap, so the CPU's frame already returns past it: the handler is a lone
// `iretq`, which restores RIP, CS, RFLAGS, RSP and SS.
#[cfg(target_arch = "x86_64")]
global_asm!(
    r#"
    .section .text.grt_bench_int3, "ax"
    .balign 16
    .global grt_bench_int3
grt_bench_int3:
    iretq
"#
);
