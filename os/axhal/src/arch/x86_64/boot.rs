//! Entry of the boot CPU (from a multiboot loader) and of secondaries (from the real-mode
//! trampoline), up to the first Rust code.
//!
//! The boot CPU arrives in 32-bit protected mode, paging off, EAX = the multiboot magic,
//! EBX = the information's address. It zeroes the BSS, builds the boot page tables (an
//! identity map of the low 4 GiB with 2 MiB pages, the top gigabyte uncached for the APICs and
//! other device windows), enables PAE, long mode and paging, and jumps to 64-bit code on its
//! boot stack. A secondary CPU starts in real mode at [`TRAMPOLINE_ADDR`] (its SIPI vector),
//! loads the boot GDT, enters protected mode and joins the same path, with the tables the
//! boot CPU built; in 64-bit mode it takes the stack the starter left for it.

use axconfig::STACK_SIZE;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Physical address the trampoline is copied to: page 8, SIPI vector 0x08.
pub const TRAMPOLINE_ADDR: usize = 0x8000;

/// The logical id of the CPU being started (starts are one at a time).
#[no_mangle]
static STARTING_CPU: AtomicUsize = AtomicUsize::new(0);

/// Copies the real-mode trampoline below 1 MiB and records which CPU it starts.
pub fn prepare_secondary(cpu: usize) {
    extern "C" {
        static ap_trampoline_start: u8;
        static ap_trampoline_end: u8;
    }
    STARTING_CPU.store(cpu, Ordering::Release);
    // Linker symbols: only their addresses are taken.
    let start = core::ptr::addr_of!(ap_trampoline_start);
    let len = core::ptr::addr_of!(ap_trampoline_end) as usize - start as usize;
    // SAFETY: the first MiB is reserved from the allocator (platform::init), identity-mapped,
    // and the page at TRAMPOLINE_ADDR holds nothing else; the trampoline is smaller than a page.
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE_ADDR as *mut u8, len) };
}

/// Multiboot header flags: bit 0 page-align modules, bit 1 memory information, bit 16 the
/// address fields are valid (a.out kludge: load as linked, without reading ELF headers).
const MB_FLAGS: u32 = (1 << 0) | (1 << 1) | (1 << 16);
const MB_MAGIC: u32 = 0x1bad_b002;

core::arch::global_asm!(
    "
    .section .text.head, \"ax\"
    .code32
    .balign 4
    multiboot_header:
        .long {mb_magic}
        .long {mb_flags}
        .long {mb_checksum}
        .long multiboot_header          // header_addr
        .long _skernel                  // load_addr
        .long _edata                    // load_end_addr
        .long _ekernel                  // bss_end_addr
        .long _start                    // entry_addr

    .global _start
    _start:
        cli
        cld
        mov     ebp, eax                // multiboot magic
        mov     edx, ebx                // multiboot information
        mov     edi, offset __bss_start
        mov     ecx, offset __bss_end
        sub     ecx, edi
        xor     eax, eax
        rep     stosb
        mov     dword ptr [boot_mb_magic], ebp
        mov     dword ptr [boot_mb_info], edx

        // PML4[0] -> PDPT; PDPT[0..4] -> the four page directories.
        mov     eax, offset boot_pdpt
        or      eax, 3
        mov     dword ptr [boot_pml4], eax
        mov     eax, offset boot_pd
        or      eax, 3
        xor     ecx, ecx
    1:  mov     dword ptr [boot_pdpt + ecx * 8], eax
        add     eax, 4096
        inc     ecx
        cmp     ecx, 4
        jb      1b
        // PD entries: 2 MiB pages (present, writable, PS); the top gigabyte uncached (PCD|PWT).
        xor     ecx, ecx
    2:  mov     eax, ecx
        shl     eax, 21
        or      eax, 0x83
        cmp     ecx, 1536
        jb      3f
        or      eax, 0x18
    3:  mov     dword ptr [boot_pd + ecx * 8], eax
        inc     ecx
        cmp     ecx, 2048
        jb      2b
        xor     ebx, ebx                // the boot CPU
        jmp     enter_long_mode

    // Both kinds of CPU, 32-bit protected mode, paging off; EBX = 0 on the boot CPU.
    enter_long_mode:
        lgdt    [boot_gdtr]
        mov     ax, 0x10
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     eax, cr4
        or      eax, 0x20               // PAE
        mov     cr4, eax
        mov     eax, offset boot_pml4
        mov     cr3, eax
        mov     ecx, 0xc0000080         // IA32_EFER
        rdmsr
        or      eax, 0x100              // LME
        wrmsr
        mov     eax, cr0
        or      eax, 0x80000001         // PG | PE
        mov     cr0, eax
        .byte   0xea                    // ljmp 0x08:long_mode_entry
        .long   long_mode_entry
        .word   0x08

    .code64
    long_mode_entry:
        mov     ax, 0x10
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        xor     eax, eax
        mov     fs, ax
        mov     gs, ax
        test    ebx, ebx
        jnz     4f
        mov     rsp, offset BOOT_STACK + {stack_size}
        mov     edi, dword ptr [boot_mb_magic]
        mov     esi, dword ptr [boot_mb_info]
        call    axhal_primary_init
        ud2
    4:  mov     rdi, qword ptr [STARTING_CPU]
        mov     rsp, qword ptr [SECONDARY_STACK_TOP + rdi * 8]
        call    axhal_secondary_init
        ud2

    .code32
    // A secondary CPU in 32-bit protected mode, from the trampoline.
    // Its data segments still have real-mode limits: reload them before any access.
    ap_entry32:
        mov     ax, 0x10
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     ebx, 1
        jmp     enter_long_mode

    // Copied to TRAMPOLINE_ADDR and run there in real mode (CS = 0x0800, IP = 0).
    .code16
    .global ap_trampoline_start
    .global ap_trampoline_end
    ap_trampoline_start:
        cli
        cld
        xor     ax, ax
        mov     ds, ax
        // o32 lgdt [disp16] (a 32-bit base), disp16 = where ap_gdtr lies once copied.
        .byte   0x66, 0x0f, 0x01, 0x16
        .word   {tramp} + ap_gdtr - ap_trampoline_start
        mov     eax, cr0
        or      eax, 1                  // PE
        mov     cr0, eax
        .byte   0x66, 0xea              // ljmpl 0x18:ap_entry32
        .long   ap_entry32
        .word   0x18
        .balign 4
    ap_gdtr:
        .word   boot_gdt_end - boot_gdt - 1
        .long   boot_gdt
    ap_trampoline_end:

    .code64
    .section .rodata
    .balign 16
    // 0x08: 64-bit code, 0x10: flat data, 0x18: 32-bit flat code (the trampoline's way in).
    boot_gdt:
        .quad   0
        .quad   0x00af9a000000ffff
        .quad   0x00cf92000000ffff
        .quad   0x00cf9a000000ffff
    boot_gdt_end:
    .balign 4
        .word   0
    boot_gdtr:
        .word   boot_gdt_end - boot_gdt - 1
        .quad   boot_gdt

    .section .data
    .balign 4
    boot_mb_magic:
        .long   0
    boot_mb_info:
        .long   0

    .section .bss
    .balign 4096
    .global boot_pml4
    boot_pml4:
        .space  4096
    boot_pdpt:
        .space  4096
    boot_pd:
        .space  4 * 4096
    .section .text
    ",
    mb_magic = const MB_MAGIC,
    mb_flags = const MB_FLAGS,
    mb_checksum = const 0u32.wrapping_sub(MB_MAGIC.wrapping_add(MB_FLAGS)),
    stack_size = const STACK_SIZE,
    tramp = const TRAMPOLINE_ADDR,
);
