# A 64 KiB "firmware" for QEMU (`-bios`): from the reset vector to Linux's 64-bit entry, as
# the x86 vCPU will start a Linux VM (docs/x86-linux.md#checking-the-plan-on-qemu).
# Real mode -> protected mode -> identity-mapped 4 GiB (2 MiB pages, tables at 0x1000..0x7000)
# -> long mode, GDT with __BOOT_CS 0x10 and __BOOT_DS 0x18, %rsi = ZERO_PAGE, jump to ENTRY.
#   as --64 --defsym ENTRY=0x1000200 --defsym ZERO_PAGE=0x10000 -o stub.o stub.S
#   ld -Ttext=0 --oformat binary -o stub.bin stub.o
    .set BASE, 0xFFFF0000
    .text
    .code16
start:
    cli
    lgdtl %cs:gdt_desc
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(BASE + prot32)
    .code32
prot32:
    movw $0x18, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    # Page tables at 0x1000: PML4, PDPT at 0x2000, 4 PDs at 0x3000..0x7000 (2 MiB pages).
    movl $0x1000, %edi
    xorl %eax, %eax
    movl $(6 * 1024), %ecx
    rep stosl
    movl $0x2003, 0x1000
    movl $0x3003, 0x2000
    movl $0x4003, 0x2008
    movl $0x5003, 0x2010
    movl $0x6003, 0x2018
    movl $0x3000, %edi
    movl $0x83, %eax
    movl $2048, %ecx
1:  movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 1b
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $0x1000, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000000, %eax
    movl %eax, %cr0
    ljmpl $0x10, $(BASE + long64)
    .code64
long64:
    movl $0x18, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq $ZERO_PAGE, %rsi
    xorl %ebp, %ebp
    xorl %edi, %edi
    xorl %ebx, %ebx
    movq $ENTRY, %rax
    jmpq *%rax
    .balign 16
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
gdt_desc:
    .word 31
    .long BASE + gdt
    .org 0xFFF0
    .code16
reset:
    jmp start
    .org 0x10000
