//! The IDT: one entry stub per vector, a common path that saves every general-purpose
//! register, and the Rust dispatcher.
//!
//! Vectors (see also docs/x86.md):
//!
//! | vector | use |
//! |---|---|
//! | 0x00..0x20 | exceptions: any of them in the hypervisor stops it with a register dump (#DF on IST 1, NMI and #MC on IST 2) |
//! | 0x20..0x30 | the legacy 8259 PICs, remapped here and masked (a spurious one is ignored) |
//! | 0x30..0xf0 | device interrupts: I/O APIC input (GSI) `g` arrives at 0x30 + `g` |
//! | 0xf0 | the local APIC timer |
//! | 0xf1 | the wake-up IPI |
//! | 0xff | the local APIC's spurious vector |

use super::{apic, gdt};
use crate::irq::{dispatch, IrqSource};
use core::cell::UnsafeCell;
use core::fmt;

/// First vector of the device interrupts: GSI `g` is vector `DEVICE_VECTOR_BASE + g`.
pub const DEVICE_VECTOR_BASE: u8 = 0x30;
/// Number of GSIs that have a vector.
pub const DEVICE_VECTORS: u32 = 0xc0;
/// The local APIC timer.
pub const TIMER_VECTOR: u8 = 0xf0;
/// The wake-up IPI.
pub const IPI_VECTOR: u8 = 0xf1;
/// The local APIC's spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// Where the 8259 PICs are remapped to (and masked).
pub const PIC_VECTOR_BASE: u8 = 0x20;

/// Registers saved on trap entry (the order of the pushes in `trap_common`, then what the
/// CPU pushed).
#[repr(C)]
pub struct TrapFrame {
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, r8..r15.
    pub gpr: [u64; 15],
    /// The vector (pushed by the stub).
    pub vector: u64,
    /// The error code (the CPU's, or 0 pushed by the stub).
    pub error_code: u64,
    /// Where the trap was taken.
    pub rip: u64,
    /// Its code segment.
    pub cs: u64,
    /// RFLAGS then.
    pub rflags: u64,
    /// The interrupted stack pointer.
    pub rsp: u64,
    /// The interrupted stack segment.
    pub ss: u64,
}

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 15] = [
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12",
            "r13", "r14", "r15",
        ];
        for (i, chunk) in self.gpr.chunks(4).enumerate() {
            for (j, v) in chunk.iter().enumerate() {
                write!(f, "  {:>3} = {:#018x}", NAMES[i * 4 + j], v)?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "  rip = {:#018x}  rsp = {:#018x}  rflags = {:#010x}  cs = {:#x}  ss = {:#x}",
            self.rip, self.rsp, self.rflags, self.cs, self.ss
        )
    }
}

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error (#DE)",
    "debug (#DB)",
    "NMI",
    "breakpoint (#BP)",
    "overflow (#OF)",
    "bound range (#BR)",
    "invalid opcode (#UD)",
    "device not available (#NM)",
    "double fault (#DF)",
    "coprocessor segment overrun",
    "invalid TSS (#TS)",
    "segment not present (#NP)",
    "stack fault (#SS)",
    "general protection (#GP)",
    "page fault (#PF)",
    "reserved (15)",
    "x87 floating point (#MF)",
    "alignment check (#AC)",
    "machine check (#MC)",
    "SIMD floating point (#XM)",
    "virtualization (#VE)",
    "control protection (#CP)",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "hypervisor injection (#HV)",
    "VMM communication (#VC)",
    "security (#SX)",
    "reserved (31)",
];

/// One IDT gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    _reserved: u32,
}

#[repr(C, align(16))]
struct Idt(UnsafeCell<[Gate; 256]>);

// SAFETY: written once by the boot CPU in `init_idt` before any CPU loads it; read-only after.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new(
    [Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        _reserved: 0,
    }; 256],
));

/// Size of each entry stub in `trap_vectors`.
const STUB_SIZE: usize = 16;

/// Fills the IDT (boot CPU, once).
pub fn init_idt() {
    extern "C" {
        fn trap_vectors();
    }
    let base = trap_vectors as *const () as usize;
    // SAFETY: see `impl Sync for Idt`.
    let idt = unsafe { &mut *IDT.0.get() };
    for (v, gate) in idt.iter_mut().enumerate() {
        let addr = (base + v * STUB_SIZE) as u64;
        let ist = match v {
            8 => gdt::IST_DOUBLE_FAULT,
            2 | 18 => gdt::IST_NMI,
            _ => 0,
        };
        *gate = Gate {
            offset_low: addr as u16,
            selector: gdt::KERNEL_CS,
            ist,
            // Present, DPL 0, 64-bit interrupt gate (IF cleared on entry).
            attributes: 0x8e,
            offset_mid: (addr >> 16) as u16,
            offset_high: (addr >> 32) as u32,
            _reserved: 0,
        };
    }
}

/// Loads the IDT on this CPU.
pub fn load_idt() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let p = Pointer {
        limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the IDT is filled (init_idt ran on the boot CPU first) and lives forever.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &p, options(readonly, nostack)) };
}

#[no_mangle]
extern "C" fn axhal_trap(frame: &mut TrapFrame) {
    match frame.vector {
        v @ 0..32 => exception(v as usize, frame),
        v => dispatch_vector(v as u8),
    }
}

fn exception(v: usize, frame: &TrapFrame) -> ! {
    let cr2: u64;
    // SAFETY: reads CR2 (the faulting address of a page fault).
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    crate::power::fatal(format_args!(
        "unexpected exception on cpu {}: {}, vector {v}, error code {:#x}, cr2 = {cr2:#x}\n{frame}",
        super::cpu_id(),
        EXCEPTION_NAMES[v],
        frame.error_code,
    ))
}

/// Handles interrupt vector `vector` (not an exception) as if the CPU had taken it: the
/// local APIC's end of interrupt and the timer, IPI or device handler. Called by the trap
/// path, and by a VMX exit that acknowledged the interrupt on exit. Call with interrupts
/// masked.
pub fn dispatch_vector(vector: u8) {
    match vector {
        TIMER_VECTOR => {
            apic::eoi();
            super::on_timer_interrupt();
            dispatch(IrqSource::Timer);
        }
        IPI_VECTOR => {
            apic::eoi();
            dispatch(IrqSource::Ipi);
        }
        // Neither needs an end of interrupt: the spurious vector by definition, the PICs'
        // (masked; only their spurious IRQ 7 / 15 can arrive) never reached the local APIC.
        SPURIOUS_VECTOR => {}
        v if (PIC_VECTOR_BASE..DEVICE_VECTOR_BASE).contains(&v) => {}
        v if (DEVICE_VECTOR_BASE..TIMER_VECTOR).contains(&v) => {
            dispatch(IrqSource::Device(usize::from(v - DEVICE_VECTOR_BASE)));
            apic::eoi();
        }
        v => {
            log::warn!(
                "cpu {}: unexpected interrupt vector {v:#x}",
                super::cpu_id()
            );
            apic::eoi();
        }
    }
}

core::arch::global_asm!(
    "
    .section .text
    .balign 16
    .global trap_vectors
    trap_vectors:
    .set vec, 0
    .rept 256
        .balign 16
        // A zero error code where the CPU pushes none (all but 8, 10-14, 17, 21, 29, 30).
        .if vec < 32
        .if ((0x60227d00 >> vec) & 1) == 0
        .byte   0x6a, 0                 // push 0
        .endif
        .else
        .byte   0x6a, 0                 // push 0
        .endif
        .byte   0x68                    // push imm32: the vector
        .long   vec
        jmp     trap_common
        .set vec, vec + 1
    .endr

    trap_common:
        push    r15
        push    r14
        push    r13
        push    r12
        push    r11
        push    r10
        push    r9
        push    r8
        push    rbp
        push    rdi
        push    rsi
        push    rdx
        push    rcx
        push    rbx
        push    rax
        mov     rdi, rsp
        cld
        call    axhal_trap
        pop     rax
        pop     rbx
        pop     rcx
        pop     rdx
        pop     rsi
        pop     rdi
        pop     rbp
        pop     r8
        pop     r9
        pop     r10
        pop     r11
        pop     r12
        pop     r13
        pop     r14
        pop     r15
        add     rsp, 16
        iretq
    "
);
