//! The chaos guest's legacy-mode trials (x86_64, part of the targeted phase): the guest
//! leaves long mode and touches MMIO and ports from 32-bit protected mode without paging,
//! with 32-bit paging and with PAE paging, from 16-bit protected mode and from real mode
//! ("unreal": a data segment with a 4 GiB limit kept from protected mode), and tries the
//! mode switches the CPU refuses. Each outcome (a value read, an exception's vector and
//! error code, CR2, registers after string I/O) is recorded in [`CHAOS_LEGACY_OUT`] by
//! the code itself and checked afterwards, back in 64-bit mode.
//!
//! One routine (`chaos_legacy_enter`) does it all: from 64-bit code it goes to a 32-bit
//! code segment of its own GDT (compatibility mode), clears CR0.PG (long mode ends) and
//! EFER.LME, runs the trials and goes back the way the CPU allows (PAE, CR3, LME, then PG:
//! compatibility mode, then a far jump to the 64-bit code segment). Exceptions go through
//! a 32-bit IDT of its own whose entries record the vector, the error code and CR2 and
//! resume at the address the trial left in `CHAOS_LEGACY_RESUME`, in the 32-bit code
//! segment. Interrupts stay masked throughout; nothing in real mode may fault.

use core::arch::global_asm;
use core::cell::UnsafeCell;

use grt::check::Checker;
use grt::x86::{read_msr, write_msr};

/// IA32_FS_BASE and IA32_GS_BASE.
const FS_BASE: u32 = 0xc000_0100;
const GS_BASE: u32 = 0xc000_0101;

/// GDT slots set at run time (0x28, 0x40).
const CODE16: usize = 0x28 / 8;
const BUF_SEG: usize = 0x40 / 8;
const TINY_SEG: usize = 0x48 / 8;
const READ_ONLY_SEG: usize = 0x50 / 8;

/// A descriptor: `base`, `limit` (bytes, or 4 KiB pages with G in `flags`), access byte and
/// flags nibble (G, D/B, L).
const fn descriptor(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    (limit as u64 & 0xffff)
        | (base as u64 & 0xff_ffff) << 16
        | (access as u64) << 40
        | ((limit as u64 >> 16) & 0xf) << 48
        | ((flags as u64) & 0xf) << 52
        | (base as u64 >> 24) << 56
}

/// Writable data, present, DPL 0, accessed.
const DATA: u8 = 0x93;

/// Memory the routine reads and writes (the GDT and IDT, page tables, buffers): statics
/// it addresses absolutely, below 4 GiB (the image is linked at 2 MiB, not relocated).
#[repr(C, align(4096))]
struct Shared<T>(UnsafeCell<T>);

// SAFETY: the guest's one vCPU uses them, with nothing else running.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// The GDT: 0x10 64-bit code (grt's), 0x18 flat data, 0x20 flat 32-bit code, 0x28 16-bit
/// code at the routine's 16-bit part (base set at run time), 0x30 data at the MMIO 16550
/// (64 KiB), 0x38 data at 0xFFFF_F000 with a 4 GiB limit (offsets wrap at 4 GiB), 0x40 data
/// at the string I/O buffer (64 KiB), 0x48 the same with a 16-byte limit, 0x50 the same
/// read-only (the buffer's bases set at run time).
#[no_mangle]
static CHAOS_LEGACY_GDT: Shared<[u64; 11]> = Shared(UnsafeCell::new([
    0,
    0,
    0x00af_9b00_0000_ffff,
    descriptor(0, 0xf_ffff, DATA, 0xc),
    descriptor(0, 0xf_ffff, 0x9b, 0xc),
    0,
    descriptor(0xc000_0000, 0xffff, DATA, 0),
    descriptor(0xffff_f000, 0xf_ffff, DATA, 0xc),
    0,
    0,
    0,
]));

/// The 32-bit IDT: 32 interrupt gates to the routine's entries (set at run time).
#[no_mangle]
static CHAOS_LEGACY_IDT: Shared<[u64; 32]> = Shared(UnsafeCell::new([0; 32]));

/// 32-bit paging: the page directory (0..16 MiB and the MMIO 16550's 4 MiB as 4 MiB pages,
/// linear 0x4000_0000 through [`PT32`]).
#[no_mangle]
static CHAOS_LEGACY_PD32: Shared<[u32; 1024]> = Shared(UnsafeCell::new([0; 1024]));
/// Its page table at linear 0x4000_0000: 0 the 16550's page, 1 [`BUF`]'s first page
/// read-only, 2 not present.
static PT32: Shared<[u32; 1024]> = Shared(UnsafeCell::new([0; 1024]));

/// PAE paging: the four PDPTEs (0: 0..1 GiB, 1: linear 0x4000_0000 through [`PAE_PD1`], 3:
/// the 16550's gigabyte).
#[no_mangle]
static CHAOS_LEGACY_PDPT: Shared<[u64; 4]> = Shared(UnsafeCell::new([0; 4]));
static PAE_PD0: Shared<[u64; 512]> = Shared(UnsafeCell::new([0; 512]));
static PAE_PD1: Shared<[u64; 512]> = Shared(UnsafeCell::new([0; 512]));
static PAE_PD3: Shared<[u64; 512]> = Shared(UnsafeCell::new([0; 512]));
/// Linear 0x4000_0000: 0 the 16550's page, 1 [`BUF`]'s first page read-only, 2 with the
/// execute-disable bit (reserved: EFER.NXE is clear).
static PAE_PT: Shared<[u64; 512]> = Shared(UnsafeCell::new([0; 512]));

/// The string I/O buffer: 64 KiB and a page (a 16-bit offset wraps inside it).
#[no_mangle]
static CHAOS_LEGACY_BUF: Shared<[u8; 0x11000]> = Shared(UnsafeCell::new([0; 0x11000]));

/// What the trials recorded, by slot ([`Slot`]).
#[no_mangle]
static CHAOS_LEGACY_OUT: Shared<[u32; 64]> = Shared(UnsafeCell::new([0; 64]));

/// The 64-bit state the routine leaves and restores: CR0, CR3, CR4, EFER, RSP.
#[no_mangle]
static CHAOS_LEGACY_SAVE: Shared<[u64; 5]> = Shared(UnsafeCell::new([0; 5]));

/// The routine's exception state: vector (all ones for none), error code, CR2, where to
/// resume.
#[no_mangle]
static CHAOS_LEGACY_CATCH: Shared<[u32; 4]> = Shared(UnsafeCell::new([0; 4]));

/// The value the 16550's scratch register holds for the loads.
const SCR_VALUE: u8 = 0x5a;
/// The 16550's scratch register.
const SCR: u64 = 0xc000_0007;
/// What the last slot holds when the routine ran to its end.
const DONE: u32 = 0x600d;

global_asm!(
    r#"
    .section .text.chaos_legacy, "ax"
    .set LV, CHAOS_LEGACY_CATCH
    .set LE, CHAOS_LEGACY_CATCH + 4
    .set LC2, CHAOS_LEGACY_CATCH + 8
    .set LR, CHAOS_LEGACY_CATCH + 12
    .set OUT, CHAOS_LEGACY_OUT
    .set SCR, 0xc0000007

    // A trial: no exception yet, resume at \r if there is one.
    .macro TRY r
    mov dword ptr [LV], 0xffffffff
    mov dword ptr [LR], offset \r
    .endm
    // The exception (vector, error code, CR2) to slots \s, \s + 1, \s + 2; an exception
    // outside a trial bails out from here on.
    .macro KEEP s
    mov eax, dword ptr [LV]
    mov dword ptr [OUT + 4 * \s], eax
    mov eax, dword ptr [LE]
    mov dword ptr [OUT + 4 * \s + 4], eax
    mov eax, dword ptr [LC2]
    mov dword ptr [OUT + 4 * \s + 8], eax
    mov dword ptr [LR], offset .Lbail
    .endm

    .code64
    .balign 16
    .global chaos_legacy_enter
chaos_legacy_enter:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    pushfq
    cli
    mov rax, cr0
    mov qword ptr [rip + CHAOS_LEGACY_SAVE], rax
    mov rax, cr3
    mov qword ptr [rip + CHAOS_LEGACY_SAVE + 8], rax
    mov rax, cr4
    mov qword ptr [rip + CHAOS_LEGACY_SAVE + 16], rax
    mov ecx, 0xc0000080
    rdmsr
    mov dword ptr [rip + CHAOS_LEGACY_SAVE + 24], eax
    mov dword ptr [rip + CHAOS_LEGACY_SAVE + 28], edx
    mov qword ptr [rip + CHAOS_LEGACY_SAVE + 32], rsp
    // To the 32-bit code segment (compatibility mode).
    lea rax, [rip + 1f]
    push 0x20
    push rax
    retfq

    .code32
1:
    mov dword ptr [LR], offset .Lbail
    // Long mode ends: paging off (compatibility mode allows it), then LME off.
    mov eax, cr0
    and eax, 0x7fffffff
    mov cr0, eax
    mov ecx, 0xc0000080
    rdmsr
    and eax, 0xfffff6ff
    wrmsr
    // (NXE too: the execute-disable bit of PAE entries is reserved then.) CR4.PAE off:
    // 32-bit protected mode as after reset, but for CR0's other bits.
    mov eax, cr4
    and eax, 0xffffffdf
    mov cr4, eax
    mov ax, 0x18
    mov ds, ax
    mov es, ax
    mov ss, ax

    // 0..3: MMIO loads from 32-bit code without paging: mov al, [esi]; moffs32; a 16-bit
    // address (67) with a segment at the 16550; a segment base + offset that wraps at 4 GiB.
    mov esi, SCR
    xor eax, eax
    mov al, byte ptr [esi]
    mov dword ptr [OUT + 0], eax
    xor eax, eax
    .byte 0xa0
    .long SCR
    mov dword ptr [OUT + 4], eax
    mov ax, 0x30
    mov ds, ax
    mov esi, 0x12340007
    xor eax, eax
    .byte 0x67, 0x8a, 0x04
    mov dx, 0x18
    mov ds, dx
    mov dword ptr [OUT + 8], eax
    mov ax, 0x38
    mov fs, ax
    mov esi, 0xc0001007
    xor eax, eax
    mov al, byte ptr fs:[esi]
    mov dword ptr [OUT + 12], eax

    // 4, 5: std; addr16 rep insb with DI = 1, CX = 3 in a 64 KiB segment: bytes at 1, 0,
    // 0xFFFF; CX and DI wrap in 16 bits, the upper halves of ECX and EDI stay.
    mov ax, 0x40
    mov es, ax
    mov edi, 0x55550001
    mov ecx, 0xabcd0003
    mov edx, 0x500
    std
    .byte 0x67, 0xf3, 0x6c
    cld
    mov dword ptr [OUT + 16], ecx
    mov dword ptr [OUT + 20], edi
    // 6, 7: addr16 rep insb with CX = 0 (ECX = 0x10000): nothing.
    mov edi, 0x20
    mov ecx, 0x10000
    .byte 0x67, 0xf3, 0x6c
    mov dword ptr [OUT + 24], ecx
    mov dword ptr [OUT + 28], edi
    // 45..47: insb past ES's limit (a 16-byte segment): #GP(0); at its last byte: written.
    mov ax, 0x48
    mov es, ax
    mov edi, 0xf
    insb
    TRY .Lseg1
    mov edi, 0x10
    insb
.Lseg1: KEEP 45
    // 48..50: fs outsb past FS's limit (the override, not DS): #GP(0).
    mov ax, 0x48
    mov fs, ax
    TRY .Lseg2
    mov esi, 0x10
    .byte 0x64, 0x6e
.Lseg2: KEEP 48
    // 51..53: insb through a read-only ES: #GP(0).
    mov ax, 0x50
    mov es, ax
    TRY .Lseg3
    mov edi, 0x30
    insb
.Lseg3: KEEP 51
    mov ax, 0x18
    mov es, ax
    mov fs, ax

    // 8..10: EFER.LME with CR4.PAE clear, then CR0.PG: #GP(0).
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100
    wrmsr
    TRY .Lt1
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
.Lt1:  KEEP 8
    mov ecx, 0xc0000080
    rdmsr
    and eax, 0xfffffeff
    wrmsr
    // 11..13: CR0.PG with PE clear: #GP(0).
    TRY .Lt2
    mov eax, cr0
    and eax, 0xfffffffe
    or eax, 0x80000000
    mov cr0, eax
.Lt2:  KEEP 11
    // 14..16: CR4.PCIDE outside long mode: #GP(0).
    TRY .Lt3
    mov eax, cr4
    or eax, 0x20000
    mov cr4, eax
.Lt3:  KEEP 14

    // 32-bit paging (CR4.PSE for the 4 MiB pages).
    mov eax, offset CHAOS_LEGACY_PD32
    mov cr3, eax
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, cr0
    or eax, 0x80010000
    mov cr0, eax
    // 17: mov al, [0x40000007] through a 4 KiB page of the 16550.
    xor eax, eax
    mov al, byte ptr [0x40000007]
    mov dword ptr [OUT + 68], eax
    // 18..20: insb to a page the table does not map: #PF(2), CR2 the address.
    mov edx, 0x500
    TRY .Lt4
    mov edi, 0x40400010
    insb
.Lt4:  KEEP 18
    // 21..23: insb to a read-only page with CR0.WP: #PF(3).
    TRY .Lt5
    mov edi, 0x40001020
    insb
.Lt5:  KEEP 21
    // 24..26: the same without CR0.WP: the byte is written.
    mov eax, cr0
    and eax, 0xfffeffff
    mov cr0, eax
    TRY .Lt6
    mov edi, 0x40001020
    insb
.Lt6:  KEEP 24
    mov eax, cr0
    or eax, 0x10000
    mov cr0, eax
    // 27..29: outsb from a page not mapped: #PF(0).
    TRY .Lt7
    mov esi, 0x40002000
    outsb
.Lt7:  KEEP 27
    // Paging off, PSE off.
    mov eax, cr0
    and eax, 0x7fffffff
    mov cr0, eax
    mov eax, cr4
    and eax, 0xffffffef
    mov cr4, eax

    // PAE paging.
    mov eax, offset CHAOS_LEGACY_PDPT
    mov cr3, eax
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    // 30: mov al, [0x40000007] through a PAE 4 KiB page of the 16550.
    xor eax, eax
    mov al, byte ptr [0x40000007]
    mov dword ptr [OUT + 120], eax
    // 31..33: insb to a page whose entry has the execute-disable bit, reserved without
    // EFER.NXE: #PF(P | W | RSVD).
    TRY .Lt8
    mov edi, 0x40002000
    insb
.Lt8:  KEEP 31
    // 34..36: paging off, a reserved bit in PDPTE 2, paging on: #GP(0) where the CPU
    // loads the PDPTEs at MOV to CR0 (Intel); paging off again either way.
    mov eax, cr0
    and eax, 0x7fffffff
    mov cr0, eax
    or dword ptr [CHAOS_LEGACY_PDPT + 16], 0x3
    TRY .Lt9
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
.Lt9:  KEEP 34
    mov eax, cr0
    and eax, 0x7fffffff
    mov cr0, eax
    and dword ptr [CHAOS_LEGACY_PDPT + 16], 0xfffffffc
    mov eax, cr4
    and eax, 0xffffffdf
    mov cr4, eax

    // 16-bit protected mode, then real mode (the 16-bit part below); back at .Lback32.
    .byte 0xea
    .long chaos_legacy_16 - chaos_legacy_16_base
    .word 0x28
.Lback32:
    // Back in 32-bit protected mode: the last slot says the routine got here.
    mov dword ptr [OUT + 252], 0x600d
    jmp .Lhome
    // An exception outside a trial: recorded in slots 60..62, and home.
.Lbail:
    KEEP 60
.Lhome:
    mov ax, 0x18
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax

    // Long mode again: PAE, CR3, EFER (LME), CR0 (PG): compatibility mode; then 64-bit.
    mov eax, dword ptr [CHAOS_LEGACY_SAVE + 16]
    mov cr4, eax
    mov eax, dword ptr [CHAOS_LEGACY_SAVE + 8]
    mov cr3, eax
    mov ecx, 0xc0000080
    mov eax, dword ptr [CHAOS_LEGACY_SAVE + 24]
    mov edx, dword ptr [CHAOS_LEGACY_SAVE + 28]
    wrmsr
    mov eax, dword ptr [CHAOS_LEGACY_SAVE]
    mov cr0, eax
    .byte 0xea
    .long .Lback64
    .word 0x10
    .code64
.Lback64:
    mov rsp, qword ptr [rip + CHAOS_LEGACY_SAVE + 32]
    popfq
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

    // The 16-bit part (code segment 0x28, based here).
    .code16
    .balign 16
chaos_legacy_16_base:
chaos_legacy_16:
    // 37: mov al, [si] with DS at the 16550 (16-bit code, 16-bit address).
    mov ax, 0x30
    mov ds, ax
    mov si, 7
    xor eax, eax
    mov al, byte ptr [si]
    // 38: movzx ax, byte [si]: the upper half of EAX stays.
    mov ebx, eax
    mov eax, 0xaaaa5555
    movzx ax, byte ptr [si]
    mov ecx, eax
    // 39: mov [si], al stores (then read back with mov al, [si]).
    mov al, 0x3c
    mov byte ptr [si], al
    xor eax, eax
    mov al, byte ptr [si]
    mov edx, eax
    mov al, 0x5a
    mov byte ptr [si], al
    mov ax, 0x18
    mov ds, ax
    .byte 0x66, 0x67, 0x89, 0x1d
    .long OUT + 148
    .byte 0x66, 0x67, 0x89, 0x0d
    .long OUT + 152
    .byte 0x66, 0x67, 0x89, 0x15
    .long OUT + 156
    // 40, 41: rep insb with 16-bit addresses from DI = 0xFFFF, CX = 2: bytes at 0xFFFF and
    // 0 (DI wraps up), DI = 1.
    mov ax, 0x40
    mov es, ax
    mov edi, 0x7777ffff
    mov ecx, 0x88880002
    mov dx, 0x500
    rep insb
    mov ax, 0x18
    mov es, ax
    .byte 0x66, 0x67, 0x89, 0x0d
    .long OUT + 160
    .byte 0x66, 0x67, 0x89, 0x3d
    .long OUT + 164
    // 42: addr32 mov al, [esi] with the flat DS.
    mov esi, SCR
    xor eax, eax
    .byte 0x67, 0x8a, 0x06
    .byte 0x67, 0xa3
    .long OUT + 168
    // Real mode: PE off; CS keeps its base, DS its 4 GiB limit ("unreal").
    mov eax, cr0
    and eax, 0xfffffffe
    mov cr0, eax
    // 43: addr32 mov al, [esi] in real mode.
    xor eax, eax
    .byte 0x67, 0x8a, 0x06
    .byte 0x67, 0xa3
    .long OUT + 172
    // 44: moffs with a 32-bit address in real mode.
    xor eax, eax
    .byte 0x67, 0xa0
    .long SCR
    .byte 0x67, 0xa3
    .long OUT + 176
    // Protected mode again, to 32-bit code at the address the 32-bit part left.
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    .byte 0x67, 0x66, 0xff, 0x2d
    .long .Lfar
.Lfar:
    .long .Lback32
    .word 0x20

    // The exception entries (32-bit gates): a fake error code where the CPU pushes none,
    // the vector; then vector, error code and CR2 kept, the return to the trial's resume
    // address in the 32-bit code segment, TF and AC cleared.
    .code32
    .balign 16
    .global chaos_legacy_entries
chaos_legacy_entries:
    .set lv, 0
    .rept 32
    .balign 16
    .if (lv != 8) && ((lv < 10) || (lv > 14)) && (lv != 17) && (lv != 21) && (lv != 29) && (lv != 30)
    push 0
    .endif
    push lv
    jmp  chaos_legacy_common
    .set lv, lv + 1
    .endr
chaos_legacy_common:
    pop  dword ptr [LV]
    pop  dword ptr [LE]
    push eax
    mov  eax, cr2
    mov  dword ptr [LC2], eax
    mov  eax, dword ptr [LR]
    mov  dword ptr [esp + 4], eax
    mov  dword ptr [esp + 8], 0x20
    and  dword ptr [esp + 12], 0xfffbfeff
    pop  eax
    iretd
    .code64
"#
);

extern "C" {
    fn chaos_legacy_enter();
    fn chaos_legacy_entries();
    fn chaos_legacy_16_base();
}

/// Slot numbers of [`CHAOS_LEGACY_OUT`] (a vector's error code and CR2 follow it).
mod slot {
    pub const PM_ESI: usize = 0;
    pub const PM_MOFFS: usize = 1;
    pub const PM_ADDR16: usize = 2;
    pub const PM_WRAP: usize = 3;
    pub const STD_ECX: usize = 4;
    pub const STD_EDI: usize = 5;
    pub const CX0_ECX: usize = 6;
    pub const CX0_EDI: usize = 7;
    pub const LME_NO_PAE: usize = 8;
    pub const PG_NO_PE: usize = 11;
    pub const PCIDE: usize = 14;
    pub const P32_LOAD: usize = 17;
    pub const P32_NOT_PRESENT: usize = 18;
    pub const P32_READ_ONLY: usize = 21;
    pub const P32_NO_WP: usize = 24;
    pub const P32_OUTS: usize = 27;
    pub const PAE_LOAD: usize = 30;
    pub const PAE_XD: usize = 31;
    pub const PAE_BAD_PDPTE: usize = 34;
    pub const C16_LOAD: usize = 37;
    pub const C16_MOVZX: usize = 38;
    pub const C16_STORE: usize = 39;
    pub const C16_REP_ECX: usize = 40;
    pub const C16_REP_EDI: usize = 41;
    pub const C16_ADDR32: usize = 42;
    pub const REAL_ADDR32: usize = 43;
    pub const REAL_MOFFS: usize = 44;
    pub const ES_LIMIT: usize = 45;
    pub const FS_LIMIT: usize = 48;
    pub const ES_READ_ONLY: usize = 51;
    pub const BAIL: usize = 60;
    pub const END: usize = 63;
}

/// Exception vectors and "none".
const NONE: u32 = u32::MAX;
const GP: u32 = 13;
const PF: u32 = 14;

/// A gate or descriptor's base split into its fields at `slot` of `table`.
fn set_base(table: *mut u64, slot: usize, base: u32) {
    // SAFETY: `slot` is inside the table (callers' constants); nothing uses it meanwhile.
    unsafe {
        let d = table.add(slot).read();
        let keep = d & !(0xff00_00ff_ffff_0000);
        table
            .add(slot)
            .write(keep | descriptor(base, 0, 0, 0) & 0xff00_00ff_ffff_0000);
    }
}

/// Builds the tables: GDT bases, the IDT, the page tables.
fn build(buf: u32) {
    let gdt = CHAOS_LEGACY_GDT.get().cast::<u64>();
    // SAFETY: the statics are this module's; the routine is not running.
    unsafe {
        gdt.add(CODE16).write(descriptor(0, 0xffff, 0x9b, 0));
        gdt.add(BUF_SEG).write(descriptor(0, 0xffff, DATA, 0));
        gdt.add(TINY_SEG).write(descriptor(0, 0xf, DATA, 0));
        gdt.add(READ_ONLY_SEG).write(descriptor(0, 0xffff, 0x91, 0));
        let entries = chaos_legacy_entries as *const () as u64;
        let idt = &mut *CHAOS_LEGACY_IDT.get();
        for (v, gate) in idt.iter_mut().enumerate() {
            let off = entries + 16 * v as u64;
            *gate = (off & 0xffff) | 0x20 << 16 | 0x8e00 << 32 | (off >> 16 & 0xffff) << 48;
        }
        let pd = &mut *CHAOS_LEGACY_PD32.get();
        for (i, e) in pd.iter_mut().take(4).enumerate() {
            *e = (i as u32) << 22 | 0x83;
        }
        pd[0xc000_0000 >> 22] = 0xc000_0000 | 0x83;
        pd[0x4000_0000 >> 22] = PT32.get() as u32 | 3;
        let pt = &mut *PT32.get();
        pt[0] = 0xc000_0000 | 3;
        pt[1] = buf | 1;
        let pdpt = &mut *CHAOS_LEGACY_PDPT.get();
        pdpt[0] = PAE_PD0.get() as u64 | 1;
        pdpt[1] = PAE_PD1.get() as u64 | 1;
        pdpt[3] = PAE_PD3.get() as u64 | 1;
        for (i, e) in (*PAE_PD0.get()).iter_mut().take(8).enumerate() {
            *e = (i as u64) << 21 | 0x83;
        }
        (*PAE_PD3.get())[0] = 0xc000_0000 | 0x83;
        (*PAE_PD1.get())[0] = PAE_PT.get() as u64 | 3;
        let pt = &mut *PAE_PT.get();
        pt[0] = 0xc000_0000 | 3;
        pt[1] = u64::from(buf) | 1;
        pt[2] = (u64::from(buf) + 0x1000) | 3 | 1 << 63;
    }
    set_base(gdt, CODE16, chaos_legacy_16_base as *const () as u64 as u32);
    set_base(gdt, BUF_SEG, buf);
    set_base(gdt, TINY_SEG, buf);
    set_base(gdt, READ_ONLY_SEG, buf);
}

/// Runs the trials and checks what each recorded. `intel`: the VMX backend (Bochs), whose
/// CPU loads PAE PDPTEs when paging starts (QEMU's AMD model reads them at each walk).
pub fn run(c: &mut Checker, intel: bool) {
    let buf = CHAOS_LEGACY_BUF.get() as u64;
    let image_low = buf + 0x1_1000 < 1 << 32 && (chaos_legacy_enter as *const () as u64) < 1 << 32;
    if !c.ok("legacy modes: the image is below 4 GiB", image_low) {
        return;
    }
    build(buf as u32);
    // SAFETY: the scratch register of the MMIO 16550 (loopback mode); the buffer is this
    // module's.
    unsafe {
        grt::mmio::write8(SCR as usize, SCR_VALUE);
        core::ptr::write_bytes(CHAOS_LEGACY_BUF.get().cast::<u8>(), 0, 0x1_1000);
        core::ptr::write_bytes(CHAOS_LEGACY_OUT.get().cast::<u32>(), 0, 64);
    }
    let gdtr = [
        (size_of::<[u64; 11]>() - 1) as u16,
        CHAOS_LEGACY_GDT.get() as u64 as u16,
        (CHAOS_LEGACY_GDT.get() as u64 >> 16) as u16,
        0,
        0,
    ];
    let idtr = [
        (size_of::<[u64; 32]>() - 1) as u16,
        CHAOS_LEGACY_IDT.get() as u64 as u16,
        (CHAOS_LEGACY_IDT.get() as u64 >> 16) as u16,
        0,
        0,
    ];
    let (mut old_gdtr, mut old_idtr) = ([0u16; 5], [0u16; 5]);
    // The routine loads FS and GS in 32-bit code, which sets their bases.
    let (fs_base, gs_base) = (read_msr(FS_BASE), read_msr(GS_BASE));
    let (fs, gs): (u16, u16);
    // SAFETY: reads of two selectors.
    unsafe {
        core::arch::asm!("mov {0:x}, fs", "mov {1:x}, gs", out(reg) fs, out(reg) gs, options(nomem, nostack))
    };
    // SAFETY: the new GDT has grt's code and data selectors (0x10, 0x18) where grt's has
    // them; the routine saves and restores CR0, CR3, CR4, EFER, RFLAGS, RSP and the
    // callee-saved registers, and touches only this module's statics, the MMIO 16550 and
    // port 0x500 (nothing claims it). Interrupts are masked inside; grt's GDT and IDT are
    // loaded again after.
    unsafe {
        core::arch::asm!(
            "sgdt [{og}]",
            "sidt [{oi}]",
            "lgdt [{g}]",
            "lidt [{i}]",
            og = in(reg) old_gdtr.as_mut_ptr(),
            oi = in(reg) old_idtr.as_mut_ptr(),
            g = in(reg) gdtr.as_ptr(),
            i = in(reg) idtr.as_ptr(),
            options(nostack)
        );
        chaos_legacy_enter();
        core::arch::asm!(
            "lgdt [{g}]",
            "lidt [{i}]",
            g = in(reg) old_gdtr.as_ptr(),
            i = in(reg) old_idtr.as_ptr(),
            options(nostack)
        );
        core::arch::asm!("mov fs, {0:x}", "mov gs, {1:x}", in(reg) fs, in(reg) gs, options(nomem, nostack));
    }
    write_msr(FS_BASE, fs_base);
    write_msr(GS_BASE, gs_base);
    let before = c.failed();
    check(c, buf, intel);
    grt::println!(
        "chaos: x86 legacy modes (32-bit protected mode, 32-bit and PAE paging, 16-bit protected mode, real mode): {} wrong",
        c.failed() - before
    );
}

/// The checks of what the routine recorded.
fn check(c: &mut Checker, buf: u64, intel: bool) {
    // SAFETY: written by the routine, which has returned.
    let out = unsafe { *CHAOS_LEGACY_OUT.get() };
    let v = u32::from(SCR_VALUE);
    c.ok(
        format_args!(
            "legacy: the routine ran to its end (else: vector {:#x}, error code {:#x}, CR2 {:#x})",
            out[slot::BAIL],
            out[slot::BAIL + 1],
            out[slot::BAIL + 2]
        ),
        out[slot::END] == DONE,
    );
    let exc = |c: &mut Checker, what: &str, at: usize, want: (u32, u32)| {
        c.ok(
            format_args!(
                "legacy: {what}: vector {:#x} error code {:#x}, expected {:#x} / {:#x}",
                out[at],
                out[at + 1],
                want.0,
                want.1
            ),
            out[at] == want.0 && (want.0 == NONE || out[at + 1] == want.1),
        )
    };
    c.eq(
        "legacy: 32-bit, no paging: mov al, [esi]",
        out[slot::PM_ESI],
        v,
    );
    c.eq(
        "legacy: 32-bit, no paging: mov al, moffs32",
        out[slot::PM_MOFFS],
        v,
    );
    c.eq(
        "legacy: 32-bit: mov al, [si] (addr16) in a segment at the 16550",
        out[slot::PM_ADDR16],
        v,
    );
    c.eq(
        "legacy: 32-bit: segment base + offset wrapping at 4 GiB",
        out[slot::PM_WRAP],
        v,
    );
    c.eq(
        "legacy: std; addr16 rep insb: ECX",
        out[slot::STD_ECX],
        0xabcd_0000,
    );
    c.eq(
        "legacy: std; addr16 rep insb: EDI",
        out[slot::STD_EDI],
        0x5555_fffe,
    );
    c.eq(
        "legacy: addr16 rep insb with CX = 0: ECX",
        out[slot::CX0_ECX],
        0x1_0000,
    );
    c.eq(
        "legacy: addr16 rep insb with CX = 0: EDI",
        out[slot::CX0_EDI],
        0x20,
    );
    exc(
        c,
        "EFER.LME without CR4.PAE, then CR0.PG",
        slot::LME_NO_PAE,
        (GP, 0),
    );
    exc(c, "CR0.PG without CR0.PE", slot::PG_NO_PE, (GP, 0));
    exc(c, "CR4.PCIDE outside long mode", slot::PCIDE, (GP, 0));
    c.eq(
        "legacy: 32-bit paging: MMIO load through a 4 KiB page",
        out[slot::P32_LOAD],
        v,
    );
    exc(
        c,
        "32-bit paging: insb to an unmapped page",
        slot::P32_NOT_PRESENT,
        (PF, 2),
    );
    c.eq(
        "legacy: 32-bit paging: insb to an unmapped page: CR2",
        out[slot::P32_NOT_PRESENT + 2],
        0x4040_0010,
    );
    exc(
        c,
        "32-bit paging: insb to a read-only page with CR0.WP",
        slot::P32_READ_ONLY,
        (PF, 3),
    );
    exc(
        c,
        "32-bit paging: insb to a read-only page without CR0.WP",
        slot::P32_NO_WP,
        (NONE, 0),
    );
    exc(
        c,
        "32-bit paging: outsb from an unmapped page",
        slot::P32_OUTS,
        (PF, 0),
    );
    c.eq(
        "legacy: PAE paging: MMIO load through a 4 KiB page",
        out[slot::PAE_LOAD],
        v,
    );
    exc(
        c,
        "PAE paging: insb through an entry with XD and EFER.NXE clear",
        slot::PAE_XD,
        (PF, 0xb),
    );
    c.eq(
        "legacy: PAE paging: reserved XD: CR2",
        out[slot::PAE_XD + 2],
        0x4000_2000,
    );
    let pdpte = if intel { (GP, 0) } else { (NONE, 0) };
    exc(
        c,
        "PAE paging on with a reserved bit in a PDPTE",
        slot::PAE_BAD_PDPTE,
        pdpte,
    );
    exc(c, "insb past ES's limit", slot::ES_LIMIT, (GP, 0));
    exc(c, "fs outsb past FS's limit", slot::FS_LIMIT, (GP, 0));
    exc(
        c,
        "insb through a read-only ES",
        slot::ES_READ_ONLY,
        (GP, 0),
    );
    c.eq("legacy: 16-bit code: mov al, [si]", out[slot::C16_LOAD], v);
    c.eq(
        "legacy: 16-bit code: movzx ax, byte [si]",
        out[slot::C16_MOVZX],
        0xaaaa_0000 | v,
    );
    c.eq(
        "legacy: 16-bit code: mov [si], al read back",
        out[slot::C16_STORE],
        0x3c,
    );
    c.eq(
        "legacy: 16-bit code: rep insb: ECX",
        out[slot::C16_REP_ECX],
        0x8888_0000,
    );
    c.eq(
        "legacy: 16-bit code: rep insb: EDI",
        out[slot::C16_REP_EDI],
        0x7777_0001,
    );
    c.eq(
        "legacy: 16-bit code: addr32 mov al, [esi]",
        out[slot::C16_ADDR32] & 0xff,
        v,
    );
    c.eq(
        "legacy: real mode: addr32 mov al, [esi]",
        out[slot::REAL_ADDR32] & 0xff,
        v,
    );
    c.eq(
        "legacy: real mode: addr32 mov al, moffs",
        out[slot::REAL_MOFFS] & 0xff,
        v,
    );
    // SAFETY: the buffer, written by the routine's string I/O.
    let b = |at: u64| unsafe { core::ptr::read_volatile((buf + at) as *const u8) };
    let bytes = u32::from_le_bytes([b(1), b(0), b(0xffff), 0]);
    c.eq(
        "legacy: std; addr16 rep insb: the bytes at 1, 0, 0xFFFF",
        bytes,
        0xff_ffff,
    );
    c.eq("legacy: insb without CR0.WP: the byte", b(0x20), 0xff);
    c.eq(
        "legacy: insb at the last byte of ES's limit: the byte",
        b(0xf),
        0xff,
    );
    c.eq(
        "legacy: insb past ES's limit or through a read-only ES: nothing written",
        u32::from_le_bytes([b(0x10), b(0x30), 0, 0]),
        0,
    );
    c.eq(
        "legacy: addr16 rep insb with CX = 0: nothing written",
        b(0x20 + 1),
        0,
    );
}
