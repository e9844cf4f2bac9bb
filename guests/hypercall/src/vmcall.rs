//! The `vmcall` conduit on x86_64 (docs/x86.md, "Hypercalls"): the call changes RAX alone
//! (every other general-purpose register and the arithmetic flags come back as they were,
//! whatever the call), the upper half of RAX counts (a number with junk above bit 31 is
//! another, unknown, number), and a `vmcall` in a loop keeps answering. Prints
//! `PASS vmcall`.

use grt::check::Checker;
use grt::hc;

/// A `vmcall` of `nr` with every other general-purpose register set to a known value;
/// returns RAX and whether all of them (and the flags) came back unchanged.
fn vmcall_preserving(nr: u64) -> (u64, bool) {
    let (ret, changed): (u64, u64);
    // SAFETY: `vmcall` exits to the hypervisor, which returns to the next instruction. Every
    // register the asm changes is declared (RBX and RBP, which LLVM reserves, are pushed and
    // popped); only the pushed stack slots below RSP are written (the target has no red
    // zone).
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "mov rbx, 0x1111111111111111",
            "mov rcx, 0x2222222222222222",
            "mov rdx, 0x3333333333333333",
            "mov rsi, 0x4444444444444444",
            "mov rdi, 0x5555555555555555",
            "mov rbp, 0x6666666666666666",
            "mov r8, 0x7777777777777777",
            "mov r9, 0x8888888888888888",
            "mov r10, 0x9999999999999999",
            "mov r11, 0xaaaaaaaaaaaaaaaa",
            "mov r12, 0xbbbbbbbbbbbbbbbb",
            "mov r13, 0xcccccccccccccccc",
            "mov r14, 0xdddddddddddddddd",
            "mov r15, 0xeeeeeeeeeeeeeeee",
            // CF set, ZF clear: `stc` after an `or` of a non-zero value.
            "or r15, r15",
            "stc",
            "vmcall",
            // Save the flags and the result, then fold each register's difference from
            // its value into R15, which ends up 0 if nothing changed.
            "pushfq",
            "push rax",
            "mov rax, 0xeeeeeeeeeeeeeeee",
            "xor r15, rax",
            "mov rax, 0x1111111111111111",
            "xor rbx, rax",
            "or r15, rbx",
            "mov rax, 0x2222222222222222",
            "xor rcx, rax",
            "or r15, rcx",
            "mov rax, 0x3333333333333333",
            "xor rdx, rax",
            "or r15, rdx",
            "mov rax, 0x4444444444444444",
            "xor rsi, rax",
            "or r15, rsi",
            "mov rax, 0x5555555555555555",
            "xor rdi, rax",
            "or r15, rdi",
            "mov rax, 0x6666666666666666",
            "xor rbp, rax",
            "or r15, rbp",
            "mov rax, 0x7777777777777777",
            "xor r8, rax",
            "or r15, r8",
            "mov rax, 0x8888888888888888",
            "xor r9, rax",
            "or r15, r9",
            "mov rax, 0x9999999999999999",
            "xor r10, rax",
            "or r15, r10",
            "mov rax, 0xaaaaaaaaaaaaaaaa",
            "xor r11, rax",
            "or r15, r11",
            "mov rax, 0xbbbbbbbbbbbbbbbb",
            "xor r12, rax",
            "or r15, r12",
            "mov rax, 0xcccccccccccccccc",
            "xor r13, rax",
            "or r15, r13",
            "mov rax, 0xdddddddddddddddd",
            "xor r14, rax",
            "or r15, r14",
            "pop rax",
            // The flags: CF (bit 0) set and ZF (bit 6) clear.
            "pop rcx",
            "and ecx, 0x41",
            "xor ecx, 0x01",
            "or r15, rcx",
            "pop rbp",
            "pop rbx",
            inlateout("rax") nr => ret,
            out("rcx") _,
            out("rdx") _,
            out("rsi") _,
            out("rdi") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            lateout("r15") changed,
        );
    }
    (ret, changed == 0)
}

/// Runs the checks, printing `PASS vmcall` if all hold.
pub fn check() {
    let mut c = Checker::new("vmcall");
    for nr in [hc::VERSION, hc::VM_ID, hc::RESET_COUNT, 0x1ff] {
        let (_, kept) = vmcall_preserving(nr);
        c.ok(
            format_args!("vmcall {nr:#x} keeps every other register and the flags"),
            kept,
        );
    }
    let (version, _) = vmcall_preserving(hc::VERSION);
    c.eq("VERSION in RAX", version, hc::ABI_VERSION);
    c.eq(
        "VERSION with junk above bit 31 is unknown",
        grt::hypercall(hc::VERSION | 0x1_0000_0000, [0; 6]),
        hc::NOT_SUPPORTED,
    );
    let mut all = true;
    for i in 0..1000u64 {
        all &= grt::hypercall(hc::ADD, [i, 1, 0, 0, 0, 0]) == i + 1;
    }
    c.ok("1000 ADDs in a row", all);
    c.finish();
}
