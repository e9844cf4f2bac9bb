//! x86_64 guests run in 64-bit mode at CPL 0, entered as docs/x86.md's "Guest entry
//! contract" says: at the image base (0x20_0000) with paging on (the hypervisor's identity
//! map of the low 4 GiB, which grt keeps), interrupts off and no IDT, RDI = the start
//! argument. `_start` sets the stack, zeroes `.bss`, installs grt's own GDT (the same code
//! and data selectors, 0x10 and 0x18) and IDT (every one of the 256 vectors goes to
//! [`grt_trap`]), and calls `main`. The console is the 16550 at port 0x3F8 (`in`/`out`),
//! hypercalls are `vmcall` (RAX = number, RDI, RSI, RDX, R10, R8, R9 = arguments, result in
//! RAX), and power, reset and the secondary vCPUs go through axvisor's hypercalls.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::mem::size_of;

use crate::layout;
use crate::smp::{CpuState, PowerError, MAX_CPUS};
use crate::trap::{self, DataFault, Exception, FaultAction, Undefined};

#[path = "x86_64_insn.rs"]
pub mod insn;

/// The architecture's name.
pub const NAME: &str = "x86_64";
/// Guest RAM base: guest-physical 0.
pub const RAM_BASE: u64 = layout::X86_64_RAM_BASE;
/// Where the image is linked, loaded and entered.
pub const IMAGE_BASE: u64 = layout::X86_64_IMAGE_BASE;

/// The console: the 16550 of the first PC serial port.
pub const COM1: u16 = 0x3f8;
/// 16550 transmit holding register.
const UART_THR: u16 = 0;
/// 16550 line status register.
const UART_LSR: u16 = 5;
/// 16550 LSR: transmit holding register empty.
const UART_LSR_THRE: u8 = 1 << 5;
/// 16550 LSR: data ready (a received byte waits in RBR, at offset 0).
const UART_LSR_DR: u8 = 1 << 0;

/// grt's 64-bit code segment selector (the hypervisor's boot GDT uses the same).
pub const KERNEL_CS: u16 = 0x10;
/// grt's data segment selector (the hypervisor's boot GDT uses the same).
pub const KERNEL_DS: u16 = 0x18;

/// axvisor's x86 power hypercalls (`vmcall`, RAX = number; docs/x86.md, "Hypercalls"). One
/// constant each, so a renumbering in the hypervisor is a one-line change here.
pub mod power_hc {
    /// Powers the VM off.
    pub const SYSTEM_OFF: u64 = 0x200;
    /// Resets the VM.
    pub const SYSTEM_RESET: u64 = 0x201;
    /// Starts vCPU RDI at RIP = RSI with RDI = RDX (the CPU-up call).
    pub const CPU_ON: u64 = 0x202;
    /// Stops the calling vCPU.
    pub const CPU_OFF: u64 = 0x203;
    /// The power state of vCPU RDI: 0 on, 1 off, 2 starting.
    pub const CPU_STATUS: u64 = 0x204;
}

/// IA32_GS_BASE: each vCPU's GS base points at its entry of [`CPU_IDS`].
const IA32_GS_BASE: u32 = 0xc000_0101;

/// What `gs:[0]` reads on each vCPU: its index (see [`cpu_id`]).
static CPU_IDS: [u64; MAX_CPUS] = {
    let mut ids = [0; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        ids[i] = i as u64;
        i += 1;
    }
    ids
};

/// grt's GDT: null, unused, 64-bit code (0x10), data (0x18). The accessed bits are preset,
/// so the CPU never writes the table (it is in `.rodata`).
static GDT: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

/// The operand of `lgdt` / `lidt`.
#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// One 16-byte IDT gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate([u64; 2]);

/// The IDT, shared by every vCPU: written by vCPU 0 in [`grt_x86_cpu_init`] before any vCPU
/// loads it, and afterwards only by [`set_gate`] (the benchmark's minimal handler).
#[repr(C, align(16))]
struct Idt(UnsafeCell<[Gate; 256]>);

// SAFETY: see the type's documentation: written before it is shared, then one gate at a
// time by the single vCPU the benchmark runs on.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([Gate([0; 2]); 256]));

/// Size of each vector's entry stub in `grt_idt_stubs` (below).
const STUB_SIZE: u64 = 16;

/// Registers saved by the IDT stubs and `grt_trap_common`, at RSP (layout shared with the
/// assembly below): the general-purpose registers, the vector, the error code (0 when the
/// exception has none) and the CPU's interrupt frame.
#[repr(C)]
pub struct TrapFrame {
    /// R15 down to R8, RBP, RDI, RSI, RDX, RCX, RBX, RAX (the reverse of the pushes).
    pub gpr: [u64; 15],
    /// The vector (0..=255).
    pub vector: u64,
    /// The exception's error code, or 0.
    pub error_code: u64,
    /// The interrupted instruction (faults) or the next one (traps, interrupts).
    pub rip: u64,
    /// CS at the time.
    pub cs: u64,
    /// RFLAGS at the time.
    pub rflags: u64,
    /// RSP at the time.
    pub rsp: u64,
    /// SS at the time.
    pub ss: u64,
}

const _: () = assert!(size_of::<TrapFrame>().is_multiple_of(16));

// The entry point, placed first in the image by the linker script (.text.entry), the
// secondary vCPUs' entry, the 256 IDT stubs (16 bytes each: push 0 where the CPU pushes no
// error code, push the vector, jump to the common path), and the common path, which saves
// the general-purpose registers, calls `grt_trap(frame)` and returns with `iretq`. The CPU
// aligns RSP to 16 bytes before it pushes its frame, so RSP is 16-byte aligned at the
// `call` (22 quadwords are pushed).
global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    cli
    cld
    lea  rsp, [rip + __stack_top]
    lea  rdi, [rip + __bss_start]
    lea  rcx, [rip + __bss_end]
    sub  rcx, rdi
    shr  rcx, 3
    xor  eax, eax
    rep  stosq
    xor  edi, edi
    call grt_x86_cpu_init
    call grt_start
2:  hlt
    jmp  2b

    // The bare-metal boot shim (docs/performance.md, "timer" baseline): a multiboot header
    // with the a.out kludge (the flat image loads at its link address) and a 32-bit entry
    // that masks the legacy PICs, builds the guest entry contract's identity map (PML4 0x2000, PDPT 0x3000, four
    // page directories 0x4000..0x8000, 2 MiB pages over the low 4 GiB), loads a GDT with
    // grt's selectors, turns on long mode and jumps to `_start` with RDI = 0. Under the
    // hypervisor nothing enters here.
    .section .text.boot, "ax"
    .balign 4
grt_multiboot_header:
    .long 0x1badb002                    // magic
    .long 0x00010000                    // flags: the addresses below are valid
    .long -(0x1badb002 + 0x00010000)    // checksum
    .long grt_multiboot_header          // header_addr
    .long _start                        // load_addr: the image base
    .long 0                             // load_end_addr: the whole file
    .long __bss_end                     // bss_end_addr
    .long grt_boot32                    // entry_addr
    .balign 8
grt_boot_gdt:
    .quad 0, 0, 0x00af9b000000ffff, 0x00cf93000000ffff
grt_boot_gdtr:
    .word 31
    .long grt_boot_gdt
    .code32
grt_boot32:
    cli
    cld
    mov  al, 0xff                       // mask the legacy PICs (the firmware left the
    out  0x21, al                       // PIT's IRQ 0 on vector 8)
    out  0xa1, al
    mov  edi, 0x1000
    mov  ecx, 0x1c00
    xor  eax, eax
    rep  stosd
    mov  dword ptr [0x2000], 0x3003
    mov  dword ptr [0x3000], 0x4003
    mov  dword ptr [0x3008], 0x5003
    mov  dword ptr [0x3010], 0x6003
    mov  dword ptr [0x3018], 0x7003
    mov  edi, 0x4000
    mov  eax, 0x83                      // present, writable, 2 MiB page
4:  mov  [edi], eax
    add  eax, 0x200000
    add  edi, 8
    cmp  edi, 0x8000
    jne  4b
    lgdt [grt_boot_gdtr]
    mov  eax, cr4
    or   eax, 0x20                      // PAE
    mov  cr4, eax
    mov  eax, 0x2000
    mov  cr3, eax
    mov  ecx, 0xc0000080                // IA32_EFER
    rdmsr
    or   eax, 0x100                     // LME
    wrmsr
    mov  eax, cr0
    or   eax, 0x80000001                // PG, PE
    mov  cr0, eax
    xor  edi, edi
    .byte 0xea                          // ljmp 0x10:_start
    .long _start
    .word 0x10
    .code64

    // A vCPU started by `smp::cpu_on`: RDI = its boot block (stack top, function, index).
    .section .text, "ax"
    .global grt_secondary_entry
grt_secondary_entry:
    cli
    cld
    mov  rsp, [rdi]
    mov  rbx, rdi
    mov  rdi, [rbx + 16]
    call grt_x86_cpu_init
    mov  rdi, rbx
    call grt_secondary_start
3:  hlt
    jmp  3b

    .section .text.grt_idt, "ax"
    .balign 16
    .global grt_idt_stubs
grt_idt_stubs:
    .set grt_vector, 0
    .rept 256
    .balign 16
    .if (grt_vector != 8) && ((grt_vector < 10) || (grt_vector > 14)) && (grt_vector != 17) && (grt_vector != 21) && (grt_vector != 29) && (grt_vector != 30)
    push 0
    .endif
    push grt_vector
    jmp  grt_trap_common
    .set grt_vector, grt_vector + 1
    .endr

grt_trap_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov  rdi, rsp
    cld
    call grt_trap
    pop  r15
    pop  r14
    pop  r13
    pop  r12
    pop  r11
    pop  r10
    pop  r9
    pop  r8
    pop  rbp
    pop  rdi
    pop  rsi
    pop  rdx
    pop  rcx
    pop  rbx
    pop  rax
    add  rsp, 16
    iretq
"#
);

/// The address of grt's own entry for vector `vector` (its stub in `grt_idt_stubs`), to put
/// back with [`set_gate`] after a handler of a guest's own.
pub fn stub_address(vector: u8) -> u64 {
    extern "C" {
        fn grt_idt_stubs();
    }
    grt_idt_stubs as *const () as usize as u64 + u64::from(vector) * STUB_SIZE
}

/// A present 64-bit interrupt gate (interrupts off on entry, DPL 0, no IST) to `handler`.
fn gate(handler: u64) -> Gate {
    const PRESENT_INTERRUPT_GATE: u64 = 0x8e00;
    Gate([
        (handler & 0xffff)
            | (u64::from(KERNEL_CS) << 16)
            | (PRESENT_INTERRUPT_GATE << 32)
            | (((handler >> 16) & 0xffff) << 48),
        handler >> 32,
    ])
}

/// Points IDT vector `vector` at `handler` (an interrupt gate: interrupts off on entry),
/// for every vCPU. `handler` ends in `iretq` with the CPU's frame as it found it (plus the
/// error code popped, for the vectors that push one).
pub fn set_gate(vector: u8, handler: u64) {
    // SAFETY: a single aligned 16-byte slot of the IDT; see `Idt` for who writes it. The
    // volatile write keeps the compiler from deferring it past the code that relies on it.
    unsafe {
        let slot = (*IDT.0.get()).as_mut_ptr().add(usize::from(vector));
        core::ptr::write_volatile(slot, gate(handler));
    }
}

/// Sets up vCPU `cpu` (called by the entry code on its stack, interrupts off): loads grt's
/// GDT and reloads every segment register, loads the IDT (vCPU 0 fills it first), and points
/// GS at the vCPU's index for [`cpu_id`].
#[no_mangle]
extern "C" fn grt_x86_cpu_init(cpu: u64) {
    if cpu == 0 {
        for v in 0..=255u8 {
            set_gate(v, stub_address(v));
        }
    }
    let gdt = DescriptorPointer {
        limit: (size_of::<[u64; 4]>() - 1) as u16,
        base: GDT.as_ptr() as u64,
    };
    let idt = DescriptorPointer {
        limit: (size_of::<[Gate; 256]>() - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the GDT has a 64-bit code descriptor at KERNEL_CS and a data descriptor at
    // KERNEL_DS, the same selectors the hypervisor's boot GDT uses, so the far return lands
    // on the next instruction in the same flat code segment; the IDT's 256 gates all point
    // at grt's stubs. Only RAX is changed besides the segment registers.
    unsafe {
        asm!(
            "lgdt [{gdt}]",
            "push {cs}",
            "lea rax, [rip + 2f]",
            "push rax",
            "retfq",
            "2:",
            "mov ax, {ds}",
            "mov ds, ax",
            "mov es, ax",
            "mov ss, ax",
            "mov fs, ax",
            "mov gs, ax",
            "lidt [{idt}]",
            gdt = in(reg) &gdt,
            idt = in(reg) &idt,
            cs = const KERNEL_CS as u64,
            ds = const KERNEL_DS,
            out("rax") _,
        );
    }
    let index = (cpu as usize).min(MAX_CPUS - 1);
    write_msr(IA32_GS_BASE, &CPU_IDS[index] as *const u64 as u64);
}

/// The names of the architecture's exception vectors (0..32).
const VECTOR_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range exceeded",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack-segment fault",
    "#GP general protection",
    "#PF page fault",
    "reserved (15)",
    "#MF x87 floating-point error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating-point",
    "#VE virtualization exception",
    "#CP control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved (31)",
];

/// The vector of a page fault.
pub const VECTOR_PF: u8 = 14;
/// The vector of an invalid opcode.
pub const VECTOR_UD: u8 = 6;
/// The page-fault error code bit of a write access.
const PF_WRITE: u64 = 1 << 1;

/// Reads CR2, the address of the last page fault.
fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)) };
    v
}

/// Called by `grt_trap_common` with the saved registers, for every vector.
#[no_mangle]
extern "C" fn grt_trap(frame: &mut TrapFrame) {
    trap::enter();
    let vector = frame.vector as u8;
    if vector >= 32 && super::irq_hw::handle(vector) {
        trap::leave();
        return;
    }
    let cr2 = if vector == VECTOR_PF { cr2() } else { 0 };
    let syndrome = (u64::from(vector) << 32) | (frame.error_code & 0xffff_ffff);
    let action = match vector {
        VECTOR_PF => trap::on_data_fault(&DataFault {
            syndrome,
            addr: cr2,
            pc: frame.rip,
            is_write: frame.error_code & PF_WRITE != 0,
        }),
        VECTOR_UD => trap::on_undefined(&Undefined {
            syndrome,
            pc: frame.rip,
        }),
        0..32 => trap::on_exception(&Exception {
            vector,
            error_code: frame.error_code,
            rip: frame.rip,
            cr2,
        }),
        _ => FaultAction::Fail,
    };
    let skipped = match action {
        FaultAction::Skip => match insn::length(frame.rip) {
            Some(len) => {
                frame.rip += len;
                true
            }
            None => false,
        },
        FaultAction::Retry => true,
        FaultAction::Fail => false,
    };
    if skipped {
        trap::leave();
        return;
    }
    let name = VECTOR_NAMES
        .get(usize::from(vector))
        .copied()
        .unwrap_or("interrupt");
    let why = if action == FaultAction::Skip {
        " (cannot skip: instruction length unknown)"
    } else {
        ""
    };
    trap::unexpected(format_args!(
        "{name} (vector {vector}){why}: error code {:#x}, RIP {:#x}, CR2 {cr2:#x}, RSP {:#x}, RFLAGS {:#x}",
        frame.error_code, frame.rip, frame.rsp, frame.rflags
    ))
}

/// `cpuid` of `leaf` / `subleaf`: (EAX, EBX, ECX, EDX).
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    // SAFETY: `cpuid` only writes the four registers; RBX, which LLVM reserves, is saved
    // in a scratch register and swapped back.
    unsafe {
        asm!(
            "mov {t:r}, rbx",
            "cpuid",
            "xchg {t:r}, rbx",
            t = out(reg) b,
            inlateout("eax") leaf => a,
            inlateout("ecx") subleaf => c,
            lateout("edx") d,
            options(nostack, preserves_flags),
        );
    }
    [a, b, c, d]
}

/// `rdmsr` of `msr`. A forbidden MSR raises #GP (see [`crate::trap::set_exception_handler`]).
pub fn read_msr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads an MSR; the caller's choice of MSR is the only effect, and a #GP for
    // one the VM may not read is reported or handled by grt's IDT.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// `wrmsr` of `value` to `msr`. A forbidden MSR raises #GP.
pub fn write_msr(msr: u32, value: u64) {
    // SAFETY: writes an MSR; callers only write MSRs whose effect they intend (grt: GS
    // base, the local APIC's), and a #GP is reported or handled by grt's IDT.
    unsafe {
        asm!(
            "wrmsr",
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nostack)
        )
    };
}

/// Calls hypercall `nr` with six arguments (`vmcall`, RAX = `nr`, RDI, RSI, RDX, R10, R8,
/// R9 = `args`) and returns RAX.
pub fn hypercall(nr: u64, args: [u64; 6]) -> u64 {
    let ret;
    // SAFETY: `vmcall` exits to the hypervisor, which returns to the next instruction with
    // the result in RAX. The argument registers are declared clobbered; the call may read
    // or write guest memory the arguments point to, so memory is not declared untouched.
    unsafe {
        asm!(
            "vmcall",
            inlateout("rax") nr => ret,
            inlateout("rdi") args[0] => _,
            inlateout("rsi") args[1] => _,
            inlateout("rdx") args[2] => _,
            inlateout("r10") args[3] => _,
            inlateout("r8") args[4] => _,
            inlateout("r9") args[5] => _,
            options(nostack),
        );
    }
    ret
}

/// Asks the hypervisor to power the VM off; when axvisor is not there (booted bare on QEMU
/// q35 through the boot shim, where `vmcall` would be #UD), enters ACPI S5 through the PM1a
/// control register where QEMU's firmware puts it ([`BARE_PM1A_CNT`]). If that returns,
/// halts forever.
pub fn power_off() -> ! {
    if under_axvisor() {
        hypercall(power_hc::SYSTEM_OFF, [0; 6]);
    } else {
        // SAFETY: without axvisor the guest runs on QEMU q35, whose PM1a control register
        // is at this port; the write powers the machine off.
        unsafe { crate::pio::outw(BARE_PM1A_CNT, PM1_SLP_EN) };
    }
    halt()
}

/// The ACPI PM1a control port of QEMU q35 (the firmware's PM base 0x600 + 4), and its
/// SLP_EN bit with SLP_TYP 0 (S5 on QEMU).
const BARE_PM1A_CNT: u16 = 0x604;
const PM1_SLP_EN: u16 = 1 << 13;

/// Whether axvisor runs this guest: its signature in CPUID leaf 0x4000_0000 (EBX, ECX, EDX;
/// docs/x86.md).
fn under_axvisor() -> bool {
    let [_, b, c, d] = cpuid(0x4000_0000, 0);
    let mut signature = [0u8; 12];
    for (chunk, reg) in signature.chunks_exact_mut(4).zip([b, c, d]) {
        chunk.copy_from_slice(&reg.to_le_bytes());
    }
    signature == *b"axvisor\0\0\0\0\0"
}

/// Asks the hypervisor to reset the VM; if that returns, halts forever.
pub fn reset() -> ! {
    hypercall(power_hc::SYSTEM_RESET, [0; 6]);
    halt()
}

/// The CPU-up hypercall: vCPU `target` starts at `entry` in the entry state of docs/x86.md
/// with RDI = `arg`.
pub fn cpu_on(target: u64, entry: u64, arg: u64) -> Result<(), PowerError> {
    // The results are PSCI's numbers (docs/x86.md, "Hypercalls").
    crate::smp::psci_on_result(hypercall(power_hc::CPU_ON, [target, entry, arg, 0, 0, 0]))
}

/// The power state of vCPU `target`.
pub fn cpu_status(target: u64) -> Result<CpuState, PowerError> {
    crate::smp::psci_status_result(hypercall(power_hc::CPU_STATUS, [target, 0, 0, 0, 0, 0]))
}

/// Stops the calling vCPU; if that returns, halts forever.
pub fn cpu_off() -> ! {
    hypercall(power_hc::CPU_OFF, [0; 6]);
    halt()
}

/// This vCPU's index: `gs:[0]`, which `grt_x86_cpu_init` pointed at it.
pub fn cpu_id() -> usize {
    let id: u64;
    // SAFETY: GS's base points at this vCPU's entry of `CPU_IDS` (set before any code that
    // asks); reading it has no side effects.
    unsafe { asm!("mov {}, qword ptr gs:[0]", out(reg) id, options(nostack, readonly)) };
    id as usize
}

/// Halts until an interrupt (`hlt`). An x86 CPU does not leave `hlt` for an interrupt it
/// cannot take, so with interrupts masked they are unmasked for the `hlt` only (`sti; hlt`:
/// the STI shadow keeps one from slipping in before the `hlt`) and masked again after: a
/// pending interrupt is then taken, its handler run, before this returns.
pub fn wait_for_interrupt() {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) };
    if flags & (1 << 9) != 0 {
        // SAFETY: `hlt` only pauses the vCPU.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    } else {
        // SAFETY: unmasks interrupts for the `hlt` only; handlers may run in between, so no
        // `nomem` (a compiler barrier, as around `irq::enable`).
        unsafe { asm!("sti", "hlt", "cli", options(nostack)) };
    }
}

fn halt() -> ! {
    loop {
        // SAFETY: masks interrupts and pauses the vCPU for good.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Reads the 16550's line status register (LSR) once: one port I/O exit, no side effect
/// on the transmitter.
#[inline(always)]
pub fn console_status() -> u32 {
    // SAFETY: COM1 is this VM's 16550 (the VM configs put one there); reading LSR has no
    // side effects on the transmitter.
    u32::from(unsafe { crate::pio::inb(COM1 + UART_LSR) })
}

/// The next byte the 16550 received, if one waits.
pub fn console_getc() -> Option<u8> {
    // SAFETY: COM1 is this VM's 16550 (the VM configs put one there); reading RBR takes
    // the byte, which is what is wanted.
    unsafe {
        if crate::pio::inb(COM1 + UART_LSR) & UART_LSR_DR == 0 {
            return None;
        }
        Some(crate::pio::inb(COM1 + UART_THR))
    }
}

/// Writes one byte to the 16550, waiting until its transmit holding register is empty.
pub fn console_putc(byte: u8) {
    // SAFETY: COM1 is this VM's 16550; reading LSR has no side effects on the transmitter.
    unsafe {
        while crate::pio::inb(COM1 + UART_LSR) & UART_LSR_THRE == 0 {}
        crate::pio::outb(COM1 + UART_THR, byte);
    }
}
