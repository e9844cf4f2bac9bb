//! Encodings from GNU as (`as --64`, `as --32`), checked with `objdump -d`.

use super::*;

const L: CpuMode = CpuMode::Long64;
const P: CpuMode = CpuMode::Protected32;

fn r(index: u8) -> Reg {
    Reg {
        index,
        high_byte: false,
    }
}

fn hi(index: u8) -> Reg {
    Reg {
        index,
        high_byte: true,
    }
}

fn load(dest: Reg, width: u8, dest_size: u8, sign_extend: bool) -> MmioOp {
    MmioOp::Load {
        dest,
        width,
        dest_size,
        sign_extend,
    }
}

fn ok(bytes: &[u8], mode: CpuMode) -> (u8, MmioOp) {
    let i = decode(bytes, mode).unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"));
    (i.len, i.op)
}

#[test]
fn stores() {
    // mov [rdi], al / ah / sil; mov [r9+0x10], r10b
    assert_eq!(
        ok(&[0x88, 0x07], L),
        (
            2,
            MmioOp::StoreReg {
                src: r(0),
                width: 1
            }
        )
    );
    assert_eq!(
        ok(&[0x88, 0x27], L),
        (
            2,
            MmioOp::StoreReg {
                src: hi(0),
                width: 1
            }
        )
    );
    assert_eq!(
        ok(&[0x40, 0x88, 0x37], L),
        (
            3,
            MmioOp::StoreReg {
                src: r(6),
                width: 1
            }
        )
    );
    assert_eq!(
        ok(&[0x45, 0x88, 0x51, 0x10], L),
        (
            4,
            MmioOp::StoreReg {
                src: r(10),
                width: 1
            }
        )
    );
    // mov [rdi+rcx*4+0x1000], dx
    assert_eq!(
        ok(&[0x66, 0x89, 0x94, 0x8f, 0x00, 0x10, 0x00, 0x00], L),
        (
            8,
            MmioOp::StoreReg {
                src: r(2),
                width: 2
            }
        )
    );
    // mov [rip+0x1234], ebx
    assert_eq!(
        ok(&[0x89, 0x1d, 0x34, 0x12, 0x00, 0x00], L),
        (
            6,
            MmioOp::StoreReg {
                src: r(3),
                width: 4
            }
        )
    );
    // mov [rsp], r15
    assert_eq!(
        ok(&[0x4c, 0x89, 0x3c, 0x24], L),
        (
            4,
            MmioOp::StoreReg {
                src: r(15),
                width: 8
            }
        )
    );
    // xrelease mov [rdi], eax
    assert_eq!(
        ok(&[0xf3, 0x89, 0x07], L),
        (
            3,
            MmioOp::StoreReg {
                src: r(0),
                width: 4
            }
        )
    );
}

#[test]
fn loads() {
    assert_eq!(ok(&[0x8a, 0x07], L), (2, load(r(0), 1, 1, false)));
    // mov bh, [rdx]
    assert_eq!(ok(&[0x8a, 0x3a], L), (2, load(hi(3), 1, 1, false)));
    assert_eq!(ok(&[0x66, 0x8b, 0x06], L), (3, load(r(0), 2, 2, false)));
    // mov r11d, [rbp-8]
    assert_eq!(
        ok(&[0x44, 0x8b, 0x5d, 0xf8], L),
        (4, load(r(11), 4, 4, false))
    );
    // mov rcx, [rax+rbx]
    assert_eq!(
        ok(&[0x48, 0x8b, 0x0c, 0x18], L),
        (4, load(r(1), 8, 8, false))
    );
    // mov eax, fs:[rdi]; mov eax, [edi]
    assert_eq!(ok(&[0x64, 0x8b, 0x07], L), (3, load(r(0), 4, 4, false)));
    assert_eq!(ok(&[0x67, 0x8b, 0x07], L), (3, load(r(0), 4, 4, false)));
}

#[test]
fn immediates() {
    assert_eq!(
        ok(&[0xc6, 0x07, 0x5a], L),
        (
            3,
            MmioOp::StoreImm {
                value: 0x5a,
                width: 1
            }
        )
    );
    assert_eq!(
        ok(&[0x66, 0xc7, 0x07, 0x34, 0x12], L),
        (
            5,
            MmioOp::StoreImm {
                value: 0x1234,
                width: 2
            }
        )
    );
    assert_eq!(
        ok(&[0xc7, 0x47, 0x40, 0xef, 0xcd, 0xab, 0x89], L),
        (
            7,
            MmioOp::StoreImm {
                value: 0x89ab_cdef,
                width: 4
            }
        )
    );
    // mov qword [rdi], -2: imm32 sign-extended.
    assert_eq!(
        ok(&[0x48, 0xc7, 0x07, 0xfe, 0xff, 0xff, 0xff], L),
        (
            7,
            MmioOp::StoreImm {
                value: 0xffff_ffff_ffff_fffe,
                width: 8
            }
        )
    );
    // mov dword [rbp+rax*1+0], 0
    assert_eq!(
        ok(&[0xc7, 0x44, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00], L),
        (8, MmioOp::StoreImm { value: 0, width: 4 })
    );
}

#[test]
fn extending_loads() {
    assert_eq!(ok(&[0x0f, 0xb6, 0x07], L), (3, load(r(0), 1, 4, false)));
    assert_eq!(
        ok(&[0x44, 0x0f, 0xb7, 0x07], L),
        (4, load(r(8), 2, 4, false))
    );
    assert_eq!(
        ok(&[0x48, 0x0f, 0xb7, 0x07], L),
        (4, load(r(0), 2, 8, false))
    );
    assert_eq!(ok(&[0x0f, 0xbe, 0x0f], L), (3, load(r(1), 1, 4, true)));
    // movsx rdx, word [r13+0]
    assert_eq!(
        ok(&[0x49, 0x0f, 0xbf, 0x55, 0x00], L),
        (5, load(r(2), 2, 8, true))
    );
    // movsxd rsi, [rdi]
    assert_eq!(ok(&[0x48, 0x63, 0x37], L), (3, load(r(6), 4, 8, true)));
    // 63 without REX.W is a plain 32-bit load.
    assert_eq!(ok(&[0x63, 0x37], L), (2, load(r(6), 4, 4, false)));
}

#[test]
fn moffs() {
    // movabs eax, [0xfee000f0]
    assert_eq!(
        ok(&[0xa1, 0xf0, 0x00, 0xe0, 0xfe, 0, 0, 0, 0], L),
        (9, load(r(0), 4, 4, false))
    );
    assert_eq!(
        ok(&[0xa2, 0, 0, 0xd0, 0xfe, 0, 0, 0, 0], L),
        (
            9,
            MmioOp::StoreReg {
                src: r(0),
                width: 1
            }
        )
    );
    // 32-bit code: 4-byte address.
    assert_eq!(
        ok(&[0xa3, 0, 0, 0xd0, 0xfe], P),
        (
            5,
            MmioOp::StoreReg {
                src: r(0),
                width: 4
            }
        )
    );
}

#[test]
fn protected_mode() {
    // mov eax, [ebx+4]; mov [0xfee00000], eax; mov eax, [eax*4+0x1000]
    assert_eq!(ok(&[0x8b, 0x43, 0x04], P), (3, load(r(0), 4, 4, false)));
    assert_eq!(
        ok(&[0x89, 0x05, 0x00, 0x00, 0xe0, 0xfe], P),
        (
            6,
            MmioOp::StoreReg {
                src: r(0),
                width: 4
            }
        )
    );
    assert_eq!(
        ok(&[0x8b, 0x04, 0x85, 0x00, 0x10, 0x00, 0x00], P),
        (7, load(r(0), 4, 4, false))
    );
    // 0x48 is `dec eax` there, not REX.W.
    assert_eq!(
        decode(&[0x48, 0x8b, 0x07], P),
        Err(DecodeError::Opcode(0x48))
    );
    // 0x63 is ARPL.
    assert_eq!(decode(&[0x63, 0x07], P), Err(DecodeError::Opcode(0x63)));
}

/// 16-bit code (`as --32` with `.code16`, `objdump -M i8086`) and `67` in 32-bit code:
/// 2-byte operands and addresses by default there, the 16-bit ModRM form (no SIB, a
/// 16-bit displacement), 2-byte `moffs`; the prefixes switch to 4 bytes.
#[test]
fn sixteen_bit_code_and_addresses() {
    const R: CpuMode = CpuMode::Code16;
    // mov al, [si]
    assert_eq!(ok(&[0x8a, 0x04], R), (2, load(r(0), 1, 1, false)));
    // mov ax, ds:0x1234
    assert_eq!(ok(&[0xa1, 0x34, 0x12], R), (3, load(r(0), 2, 2, false)));
    // mov eax, [bx+si+0x12]
    assert_eq!(
        ok(&[0x66, 0x8b, 0x40, 0x12], R),
        (4, load(r(0), 4, 4, false))
    );
    // mov [bp+0x1234], ax
    assert_eq!(
        ok(&[0x89, 0x86, 0x34, 0x12], R),
        (
            4,
            MmioOp::StoreReg {
                src: r(0),
                width: 2
            }
        )
    );
    // mov word [di], 0x5678 (mod 0, rm 5: no displacement in the 16-bit form)
    assert_eq!(
        ok(&[0xc7, 0x05, 0x78, 0x56], R),
        (
            4,
            MmioOp::StoreImm {
                value: 0x5678,
                width: 2
            }
        )
    );
    // mov dword [bx], 0x12345678
    assert_eq!(
        ok(&[0x66, 0xc7, 0x07, 0x78, 0x56, 0x34, 0x12], R),
        (
            7,
            MmioOp::StoreImm {
                value: 0x1234_5678,
                width: 4
            }
        )
    );
    // movzx eax, byte [si]; movzx ax, byte [si]; movsx cx, byte [bx+3]
    assert_eq!(
        ok(&[0x66, 0x0f, 0xb6, 0x04], R),
        (4, load(r(0), 1, 4, false))
    );
    assert_eq!(ok(&[0x0f, 0xb6, 0x04], R), (3, load(r(0), 1, 2, false)));
    assert_eq!(
        ok(&[0x0f, 0xbe, 0x4f, 0x03], R),
        (4, load(r(1), 1, 2, true))
    );
    // mov [bp], al: mod 1 rm 6 is [bp+disp8]; mod 0 rm 6 is a bare disp16.
    assert_eq!(
        ok(&[0x88, 0x46, 0x00], R),
        (
            3,
            MmioOp::StoreReg {
                src: r(0),
                width: 1
            }
        )
    );
    assert_eq!(
        ok(&[0x88, 0x26, 0x00, 0x10], R),
        (
            4,
            MmioOp::StoreReg {
                src: hi(0),
                width: 1
            }
        )
    );
    // 32-bit addresses in 16-bit code: mov al, [esi+0x12345678]; mov dx, [eax+ebx*4];
    // mov al, ds:0xc0000007 (`addr32`).
    assert_eq!(
        ok(&[0x67, 0x8a, 0x86, 0x78, 0x56, 0x34, 0x12], R),
        (7, load(r(0), 1, 1, false))
    );
    assert_eq!(
        ok(&[0x67, 0x8b, 0x14, 0x98], R),
        (4, load(r(2), 2, 2, false))
    );
    assert_eq!(
        ok(&[0x67, 0xa0, 0x07, 0x00, 0x00, 0xc0], R),
        (6, load(r(0), 1, 1, false))
    );
    // No REX in 16-bit code: 0x48 is `dec ax`.
    assert_eq!(
        decode(&[0x48, 0x8b, 0x07], R),
        Err(DecodeError::Opcode(0x48))
    );
    // Cut short: the 16-bit displacement is part of the instruction.
    assert_eq!(decode(&[0x8a, 0x86, 0x34], R), Err(DecodeError::Truncated));
    // 16-bit addresses in 32-bit code: mov al, [si]; addr16 mov al / eax, ds:0x1234;
    // mov [bp+di], dh.
    assert_eq!(ok(&[0x67, 0x8a, 0x04], P), (3, load(r(0), 1, 1, false)));
    assert_eq!(
        ok(&[0x67, 0xa0, 0x34, 0x12], P),
        (4, load(r(0), 1, 1, false))
    );
    assert_eq!(
        ok(&[0x67, 0xa1, 0x34, 0x12], P),
        (4, load(r(0), 4, 4, false))
    );
    assert_eq!(
        ok(&[0x67, 0x88, 0x33], P),
        (
            3,
            MmioOp::StoreReg {
                src: hi(2),
                width: 1
            }
        )
    );
}

#[test]
fn refusals() {
    assert_eq!(
        decode(&[0xf0, 0x83, 0x07, 0x01], L),
        Err(DecodeError::Prefix(0xf0))
    );
    assert_eq!(
        decode(&[0x83, 0x07, 0x01], L),
        Err(DecodeError::Opcode(0x83))
    );
    assert_eq!(
        decode(&[0x48, 0x89, 0xd8], L),
        Err(DecodeError::RegisterOperand)
    );
    assert_eq!(
        decode(&[0xc7, 0x4f, 0x40, 0, 0, 0, 0], L),
        Err(DecodeError::BadModrm)
    );
    assert_eq!(
        decode(&[0x0f, 0x10, 0x07], L),
        Err(DecodeError::Opcode0f(0x10))
    );
    assert_eq!(
        decode(&[0xf3, 0x0f, 0xb6, 0x07], L),
        Err(DecodeError::Prefix(0xf3))
    );
    assert_eq!(
        decode(&[0x89, 0x94, 0x8f, 0x00], L),
        Err(DecodeError::Truncated)
    );
    assert_eq!(decode(&[], L), Err(DecodeError::Truncated));
    assert_eq!(decode(&[0x66; 20], L), Err(DecodeError::TooLong));
    // 14 prefixes and a 2-byte mov: 16 bytes.
    let mut long = [0x3e; 16];
    long[14] = 0x8b;
    long[15] = 0x07;
    assert_eq!(decode(&long, L), Err(DecodeError::TooLong));
    // 13 prefixes: exactly 15.
    assert_eq!(decode(&long[1..], L).map(|i| i.len), Ok(15));
}

#[test]
fn rex_before_a_legacy_prefix_is_ignored() {
    // 48 66 8b 07: the REX is not last, so this is `mov ax, [rdi]`.
    assert_eq!(
        ok(&[0x48, 0x66, 0x8b, 0x07], L),
        (4, load(r(0), 2, 2, false))
    );
    // REX.W wins over 66.
    assert_eq!(
        ok(&[0x66, 0x48, 0x8b, 0x07], L),
        (4, load(r(0), 8, 8, false))
    );
}

#[test]
fn completing_loads() {
    let old = 0x1111_2222_3333_4444;
    assert_eq!(
        apply_load(old, 0xab, &load(r(0), 1, 1, false)),
        0x1111_2222_3333_44ab
    );
    assert_eq!(
        apply_load(old, 0xab, &load(hi(0), 1, 1, false)),
        0x1111_2222_3333_ab44
    );
    assert_eq!(
        apply_load(old, 0xbeef, &load(r(0), 2, 2, false)),
        0x1111_2222_3333_beef
    );
    // A 32-bit destination clears the upper half.
    assert_eq!(
        apply_load(old, 0xdead_beef, &load(r(0), 4, 4, false)),
        0xdead_beef
    );
    assert_eq!(
        apply_load(old, u64::MAX, &load(r(0), 8, 8, false)),
        u64::MAX
    );
    // movsx ecx, byte: 0x80 -> 0xffffff80, upper half cleared.
    assert_eq!(apply_load(old, 0x80, &load(r(1), 1, 4, true)), 0xffff_ff80);
    assert_eq!(
        apply_load(old, 0x8000, &load(r(1), 2, 8, true)),
        0xffff_ffff_ffff_8000
    );
    assert_eq!(
        apply_load(old, 0x8000_0000, &load(r(1), 4, 8, true)),
        0xffff_ffff_8000_0000
    );
    // movzx: garbage above the width is dropped.
    assert_eq!(apply_load(old, 0xffff_ff7f, &load(r(1), 1, 4, false)), 0x7f);
    // Not a load: the register is unchanged.
    assert_eq!(
        apply_load(old, 1, &MmioOp::StoreImm { value: 1, width: 1 }),
        old
    );
}

#[test]
fn store_values() {
    let rax = 0x1122_3344_5566_7788;
    assert_eq!(
        store_value(
            &MmioOp::StoreReg {
                src: r(0),
                width: 1
            },
            rax
        ),
        0x88
    );
    assert_eq!(
        store_value(
            &MmioOp::StoreReg {
                src: hi(0),
                width: 1
            },
            rax
        ),
        0x77
    );
    assert_eq!(
        store_value(
            &MmioOp::StoreReg {
                src: r(0),
                width: 2
            },
            rax
        ),
        0x7788
    );
    assert_eq!(
        store_value(
            &MmioOp::StoreReg {
                src: r(0),
                width: 4
            },
            rax
        ),
        0x5566_7788
    );
    assert_eq!(
        store_value(
            &MmioOp::StoreReg {
                src: r(0),
                width: 8
            },
            rax
        ),
        rax
    );
    assert_eq!(
        store_value(
            &MmioOp::StoreImm {
                value: 0x5a,
                width: 1
            },
            rax
        ),
        0x5a
    );
}

#[test]
fn every_byte_string_decodes_or_is_refused() {
    // No input panics, and every accepted length is within the bytes and 15.
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for _ in 0..200_000 {
        let mut b = [0u8; 16];
        for v in b.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *v = x as u8;
        }
        let n = (x >> 56) as usize % 17;
        for mode in [L, P] {
            if let Ok(i) = decode(&b[..n], mode) {
                assert!(usize::from(i.len) <= n && usize::from(i.len) <= MAX_INSN_LEN);
                assert!(matches!(i.op.width(), 1 | 2 | 4 | 8));
            }
        }
    }
}

/// `LoadMerge` (what the vCPUs apply to a cached load) against the architecture's rules
/// written out case by case, for every width, destination size, extension and value shape.
#[test]
fn load_merge_matches_the_rules() {
    let rule = |old: u64, value: u64, width: u8, dest_size: u8, sign: bool, high: bool| {
        let bits = u32::from(width) * 8;
        let v = if bits >= 64 {
            value
        } else if sign {
            let shift = 64 - bits;
            (((value << shift) as i64) >> shift) as u64
        } else {
            value & ((1u64 << bits) - 1)
        };
        match dest_size {
            8 => v,
            4 => v & 0xffff_ffff,
            2 => (old & !0xffff) | (v & 0xffff),
            _ if high => (old & !0xff00) | ((v & 0xff) << 8),
            _ => (old & !0xff) | (v & 0xff),
        }
    };
    let olds = [0, u64::MAX, 0x1111_2222_3333_4444];
    let values = [
        0,
        0x7f,
        0x80,
        0xff,
        0x8000,
        0xffff,
        0x8000_0000,
        u64::MAX,
        0x0123_4567_89ab_cdef,
    ];
    for width in [1u8, 2, 4, 8] {
        for dest_size in [1u8, 2, 4, 8].into_iter().filter(|&d| d >= width) {
            for sign in [false, true] {
                for high in [false, true].into_iter().filter(|&h| !h || dest_size == 1) {
                    let dest = if high { hi(3) } else { r(3) };
                    let op = load(dest, width, dest_size, sign);
                    let m = LoadMerge::of(&op);
                    assert_eq!(m.dest, 3);
                    for old in olds {
                        for value in values {
                            assert_eq!(
                                m.apply(old, value),
                                rule(old, value, width, dest_size, sign, high),
                                "{op:?} old {old:#x} value {value:#x}"
                            );
                        }
                    }
                }
            }
        }
    }
    let store = MmioOp::StoreImm { value: 1, width: 4 };
    assert_eq!(LoadMerge::of(&store).apply(0x1234, 0xffff), 0x1234);
}

#[test]
fn prefixes_by_mode() {
    for b in [
        0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3,
    ] {
        assert!(is_prefix(b, CpuMode::Long64) && is_prefix(b, CpuMode::Protected32));
    }
    assert!(is_prefix(0x48, CpuMode::Long64), "REX.W in 64-bit code");
    assert!(!is_prefix(0x48, CpuMode::Protected32), "DEC EAX outside it");
    assert!(!is_prefix(0x6c, CpuMode::Long64), "INSB is the opcode");
}
