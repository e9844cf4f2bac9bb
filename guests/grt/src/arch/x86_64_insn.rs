//! The length of an x86_64 instruction, for skipping one that faulted
//! ([`FaultAction::Skip`](crate::trap::FaultAction::Skip)). It knows the instructions test
//! guests fault on on purpose: `mov`, `movzx` / `movsx` / `movsxd`, ALU forms with a memory
//! operand (`add`/`or`/.../`cmp`, `test`, `xchg`, `inc`/`dec`/`neg`/`not`/`mul`/`div`),
//! `in`/`out` and the string instructions, `hlt`, `int3`/`int n`, `cpuid`, `rdmsr`/`wrmsr`,
//! `rdtsc(p)`, `ud2`, the group-7 system instructions (`vmcall`, `lgdt`, ...), `getsec`,
//! the VMX instructions (`vmread`, `invept`, ...), moves to and from control and debug
//! registers, `cmpxchg`, `xadd`, `movnti`, `clflush` and the fences,
//! prefetches and multi-byte `nop`s, each with legacy and REX prefixes. Anything else is
//! `None`: grt then reports the fault instead of guessing.

/// The length of the instruction at `rip`, or `None` if it is not one of the known forms.
pub fn length(rip: u64) -> Option<u64> {
    let mut bytes = [0u8; 15];
    for (i, b) in bytes.iter_mut().enumerate() {
        // SAFETY: `rip` is the address of an instruction that just faulted in the guest's
        // identity-mapped image; an instruction is at most 15 bytes, and reading a few
        // bytes past a short one stays inside the image (its code is followed by data).
        *b = unsafe { core::ptr::read_volatile((rip + i as u64) as *const u8) };
    }
    decode(&bytes).map(|n| n as u64)
}

/// The length of the instruction at the start of `code`.
pub fn decode(code: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut operand16 = false;
    let mut address32 = false;
    // Legacy prefixes, then at most one REX prefix right before the opcode.
    loop {
        match *code.get(i)? {
            0x66 => operand16 = true,
            0x67 => address32 = true,
            0xf0 | 0xf2 | 0xf3 | 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 => {}
            _ => break,
        }
        i += 1;
    }
    let mut rex_w = false;
    if (0x40..=0x4f).contains(code.get(i)?) {
        rex_w = code[i] & 0x08 != 0;
        i += 1;
    }
    // Size of an immediate of the operand size (`iz`): 2 with 0x66, else 4.
    let imm_z = if operand16 { 2 } else { 4 };
    let op = *code.get(i)?;
    i += 1;
    let (modrm, imm) = match op {
        // add/or/adc/sbb/and/sub/xor/cmp r/m forms
        0x00..=0x3f if op & 0x07 < 4 => (true, 0),
        // the same with AL / eAX and an immediate
        0x04 | 0x0c | 0x14 | 0x1c | 0x24 | 0x2c | 0x34 | 0x3c => (false, 1),
        0x05 | 0x0d | 0x15 | 0x1d | 0x25 | 0x2d | 0x35 | 0x3d => (false, imm_z),
        // movsxd
        0x63 => (true, 0),
        // group 1/2 with ib, mov ib
        0x80 | 0x83 | 0xc0 | 0xc1 | 0xc6 => (true, 1),
        // group 1 with iz, mov iz
        0x81 | 0xc7 => (true, imm_z),
        // test, xchg, mov, lea, pop, shifts
        0x84..=0x8b | 0x8d | 0x8f | 0xd0..=0xd3 => (true, 0),
        // nop, pushf/popf, int3, hlt, cli/sti
        0x90 | 0x9c | 0x9d | 0xcc | 0xf4 | 0xfa | 0xfb => (false, 0),
        // mov with a memory offset
        0xa0..=0xa3 => (false, if address32 { 4 } else { 8 }),
        // string instructions
        0xa4..=0xa7 | 0xaa..=0xaf | 0x6c..=0x6f => (false, 0),
        // mov r8, ib
        0xb0..=0xb7 => (false, 1),
        // mov r, iv
        0xb8..=0xbf => (false, if rex_w { 8 } else { imm_z }),
        // int n, in/out with a port number
        0xcd | 0xe4..=0xe7 => (false, 1),
        // in/out with DX
        0xec..=0xef => (false, 0),
        0xf6 | 0xf7 => {
            // group 3: test has an immediate, the others none
            let reg = (*code.get(i)? >> 3) & 7;
            let imm = match (reg, op) {
                (0 | 1, 0xf6) => 1,
                (0 | 1, _) => imm_z,
                _ => 0,
            };
            (true, imm)
        }
        // inc/dec/call/jmp/push group
        0xfe | 0xff => (true, 0),
        0x0f => {
            let op2 = *code.get(i)?;
            i += 1;
            match op2 {
                0x05 | 0x06 | 0x07 | 0x08 | 0x09 | 0x0b | 0x30..=0x33 | 0xa2 => (false, 0),
                0x00 | 0x01 | 0x0d | 0x10..=0x1f | 0x20..=0x23 | 0x40..=0x4f => (true, 0),
                0x6e | 0x6f | 0x7e | 0x7f | 0xae | 0xaf | 0xb0 | 0xb1 => (true, 0),
                0xb6 | 0xb7 | 0xbe | 0xbf | 0xc0 | 0xc1 | 0xc3 | 0xc7 => (true, 0),
                // vmread / vmwrite
                0x78 | 0x79 => (true, 0),
                // getsec
                0x37 => (false, 0),
                // the three-byte maps: 0F 38 without, 0F 3A with an 8-bit immediate
                0x38 | 0x3a => {
                    i += 1;
                    (true, if op2 == 0x3a { 1 } else { 0 })
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    if modrm {
        i += modrm_length(code.get(i..)?)?;
    }
    let len = i + imm;
    (len <= 15).then_some(len)
}

/// The bytes a ModRM byte and what follows it (SIB, displacement) take, 64-bit or 32-bit
/// addressing (the same encoding).
fn modrm_length(code: &[u8]) -> Option<usize> {
    let modrm = *code.first()?;
    let (mode, rm) = (modrm >> 6, modrm & 7);
    if mode == 3 {
        return Some(1);
    }
    let mut len = 1;
    if rm == 4 {
        let sib = *code.get(1)?;
        len += 1;
        if mode == 0 && sib & 7 == 5 {
            len += 4; // no base: disp32
        }
    } else if mode == 0 && rm == 5 {
        len += 4; // RIP-relative disp32
    }
    len += match mode {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    Some(len)
}
