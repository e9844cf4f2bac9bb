//! The x86 MMIO instruction decoder (`x86_vcpu::insn`): the bytes a guest's faulting
//! instruction is made of, in 64-bit, 32-bit or 16-bit code.
//!
//! The first byte picks the CPU mode and one of two inputs:
//! - raw bytes (any, up to 20): never a panic; a decoded access is 1, 2, 4 or 8 bytes wide
//!   into or from a register that exists, the instruction is at most 15 bytes and no longer
//!   than the bytes given, and decoding reads nothing past its own length (the same answer
//!   from the instruction's bytes alone); decoding twice gives the same answer; the load
//!   and store helpers keep to the access width and the architectural register update; and
//!   iced-x86 (a maintained decoder, a host-only dependency of this workspace) decodes the
//!   same bytes to the same `mov` form, length, width, register or immediate and extension.
//! - an instruction assembled from the decoded forms (`mov` 88/89/8A/8B/C6/C7, `movzx`,
//!   `movsx`, `movsxd`, the `moffs` forms) with any prefixes (66, 67, segments, F2/F3, REX,
//!   sometimes a REX a legacy prefix cancels, sometimes `lock`), any ModRM/SIB/displacement
//!   and immediate, sometimes a register operand or a bad ModRM reg field: the decoder
//!   must give exactly what the encoding means (computed here independently, from the
//!   encoding side), refuse what it refuses with the right error, and say `Truncated` for
//!   every shorter prefix of a valid instruction.

use axvisor_fuzz::Input;
use x86_vcpu::insn::{self, CpuMode, DecodeError, MmioInsn, MmioOp, Reg, MAX_INSN_LEN};

const MODES: [CpuMode; 3] = [CpuMode::Long64, CpuMode::Protected32, CpuMode::Code16];

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mode = MODES[usize::from(ctl & 3) % 3];
    if ctl & 4 == 0 {
        raw(&rest[..rest.len().min(20)], mode, &mut Input::new(rest));
    } else {
        assembled(&mut Input::new(rest), mode);
    }
}

/// Any bytes.
fn raw(bytes: &[u8], mode: CpuMode, values: &mut Input<'_>) {
    let result = insn::decode(bytes, mode);
    assert_eq!(result, insn::decode(bytes, mode), "not deterministic");
    let _ = format!("{result:?}");
    match result {
        Ok(i) => {
            check_insn(&i, bytes);
            let len = usize::from(i.len);
            assert_eq!(
                insn::decode(&bytes[..len], mode),
                result,
                "{bytes:02x?}: the answer depends on bytes past the instruction"
            );
            check_helpers(&i.op, values.u64(), values.u64());
            against_iced(bytes, mode, &i);
        }
        Err(e) => {
            let _ = e.to_string();
            if e == DecodeError::Truncated {
                assert!(bytes.len() < MAX_INSN_LEN, "truncated at {}", bytes.len());
            }
        }
    }
}

/// A register as the decoder names it (index, high byte) and its size, from iced-x86's.
fn iced_reg(r: iced_x86::Register) -> (u8, bool, u8) {
    use iced_x86::Register::*;
    let index = match r.full_register() {
        RAX => 0,
        RCX => 1,
        RDX => 2,
        RBX => 3,
        RSP => 4,
        RBP => 5,
        RSI => 6,
        RDI => 7,
        R8 => 8,
        R9 => 9,
        R10 => 10,
        R11 => 11,
        R12 => 12,
        R13 => 13,
        R14 => 14,
        R15 => 15,
        _ => 255,
    };
    let high = matches!(r, AH | CH | DH | BH);
    (index, high, r.size() as u8)
}

/// What iced-x86, a maintained full decoder, says of the same bytes: the same `mov`,
/// `movzx`, `movsx` or `movsxd` with a memory operand of the decoded width, the same length,
/// the same register (or immediate) and the same extension.
fn against_iced(bytes: &[u8], mode: CpuMode, i: &MmioInsn) {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};
    let bitness = match mode {
        CpuMode::Long64 => 64,
        CpuMode::Protected32 => 32,
        CpuMode::Code16 => 16,
    };
    let ins = Decoder::new(bitness, bytes, DecoderOptions::NONE).decode();
    let what = || {
        format!(
            "{bytes:02x?} ({mode:?}) {i:?} vs iced {:?} {:?}/{:?} {:?}/{:?} {:?} len {}",
            ins.mnemonic(),
            ins.op0_kind(),
            ins.op0_register(),
            ins.op1_kind(),
            ins.op1_register(),
            ins.memory_size(),
            ins.len()
        )
    };
    assert!(
        !ins.is_invalid()
            && matches!(
                ins.mnemonic(),
                Mnemonic::Mov | Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd
            )
            && (0..ins.op_count()).any(|n| ins.op_kind(n) == OpKind::Memory),
        "not a mov with a memory operand: {}",
        what()
    );
    assert_eq!(ins.len(), usize::from(i.len), "length: {}", what());
    assert_eq!(
        ins.memory_size().size(),
        usize::from(i.op.width()),
        "width: {}",
        what()
    );
    match i.op {
        MmioOp::Load {
            dest,
            dest_size,
            sign_extend,
            ..
        } => {
            assert_eq!(
                iced_reg(ins.op0_register()),
                (dest.index, dest.high_byte, dest_size),
                "destination: {}",
                what()
            );
            let sx = ins.mnemonic() == Mnemonic::Movsx
                || (ins.mnemonic() == Mnemonic::Movsxd && dest_size == 8);
            assert_eq!(sx, sign_extend, "extension: {}", what());
        }
        MmioOp::StoreReg { src, width } => {
            assert_eq!(
                iced_reg(ins.op1_register()),
                (src.index, src.high_byte, width),
                "source: {}",
                what()
            );
        }
        MmioOp::StoreImm { value, width } => {
            let mask = if width >= 8 {
                u64::MAX
            } else {
                (1u64 << (8 * u32::from(width))) - 1
            };
            assert_eq!(ins.immediate(1) & mask, value, "immediate: {}", what());
        }
    }
}

/// What every decoded instruction promises.
fn check_insn(i: &MmioInsn, bytes: &[u8]) {
    let len = usize::from(i.len);
    assert!(
        (1..=MAX_INSN_LEN).contains(&len) && len <= bytes.len(),
        "{bytes:02x?}: length {len}"
    );
    let width = i.op.width();
    assert!(
        matches!(width, 1 | 2 | 4 | 8),
        "{bytes:02x?}: width {width}"
    );
    let reg_ok = |r: Reg, w: u8| r.index < 16 && (!r.high_byte || (r.index < 4 && w == 1));
    match i.op {
        MmioOp::Load {
            dest,
            width,
            dest_size,
            ..
        } => {
            assert!(reg_ok(dest, dest_size), "{bytes:02x?}: {:?}", i.op);
            assert!(
                matches!(dest_size, 1 | 2 | 4 | 8) && dest_size >= width,
                "{bytes:02x?}: {:?}",
                i.op
            );
        }
        MmioOp::StoreReg { src, width } => {
            assert!(reg_ok(src, width), "{bytes:02x?}: {:?}", i.op)
        }
        MmioOp::StoreImm { value, width } => {
            if width < 8 {
                assert!(
                    value >> (8 * u32::from(width)) == 0,
                    "{bytes:02x?}: {:?}",
                    i.op
                );
            }
        }
    }
}

/// `apply_load` and `store_value` against the architecture's register update.
fn check_helpers(op: &MmioOp, old: u64, value: u64) {
    let width = u32::from(op.width());
    let mask = |bytes: u32| {
        if bytes >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * bytes)) - 1
        }
    };
    let stored = insn::store_value(op, old);
    assert_eq!(stored & !mask(width), 0, "{op:?}: store of {stored:#x}");
    let new = insn::apply_load(old, value, op);
    match *op {
        MmioOp::Load {
            dest,
            dest_size,
            sign_extend,
            ..
        } => {
            let data = value & mask(width);
            let extended = if sign_extend && width < 8 && data >> (8 * width - 1) != 0 {
                data | !mask(width)
            } else {
                data
            };
            let expected = match dest_size {
                8 => extended,
                4 => extended & 0xffff_ffff,
                2 => (old & !0xffff) | (extended & 0xffff),
                _ if dest.high_byte => (old & !0xff00) | ((extended & 0xff) << 8),
                _ => (old & !0xff) | (extended & 0xff),
            };
            assert_eq!(new, expected, "{op:?}: load of {value:#x} into {old:#x}");
        }
        _ => assert_eq!(new, old, "{op:?}: a store changed the register"),
    }
}

/// The decoded forms: opcode bytes and how the operands are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// 88..8B: ModRM with a register (8 or full-size), store or load.
    Mov { opcode: u8 },
    /// C6 /0 ib, C7 /0 iw/id.
    Imm { wide: bool },
    /// 0F B6/B7/BE/BF.
    Extend { op2: u8 },
    /// 63 /r.
    Movsxd,
    /// A0..A3.
    Moffs { opcode: u8 },
}

const FORMS: [Form; 15] = [
    Form::Mov { opcode: 0x88 },
    Form::Mov { opcode: 0x89 },
    Form::Mov { opcode: 0x8a },
    Form::Mov { opcode: 0x8b },
    Form::Imm { wide: false },
    Form::Imm { wide: true },
    Form::Extend { op2: 0xb6 },
    Form::Extend { op2: 0xb7 },
    Form::Extend { op2: 0xbe },
    Form::Extend { op2: 0xbf },
    Form::Movsxd,
    Form::Moffs { opcode: 0xa0 },
    Form::Moffs { opcode: 0xa1 },
    Form::Moffs { opcode: 0xa2 },
    Form::Moffs { opcode: 0xa3 },
];

const LEGACY: [u8; 10] = [0x66, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0xf2, 0xf3];

/// An instruction of one of the forms, assembled from the input, and what it must decode
/// to.
fn assembled(input: &mut Input<'_>, mode: CpuMode) {
    let long = mode == CpuMode::Long64;
    let mut bytes = Vec::new();
    // Legacy prefixes (0 to 7), a lock now and then, a REX that a later legacy prefix
    // cancels, and the REX that counts (64-bit mode only).
    let shape = input.u16();
    let mut opsize = false;
    let mut addrsize = false;
    let mut rep = None;
    let lock = shape & 0x7 == 0x7;
    let legacy = (shape >> 4) & 7;
    if long && shape & 0x8 != 0 && legacy > 0 {
        bytes.push(0x40 | (input.u8() & 0xf));
    }
    for _ in 0..legacy {
        let p = LEGACY[usize::from(input.u8()) % LEGACY.len()];
        match p {
            0x66 => opsize = true,
            0x67 => addrsize = true,
            0xf2 | 0xf3 => rep = Some(p),
            _ => {}
        }
        bytes.push(p);
    }
    if lock {
        let at = usize::from(input.u8()) % (bytes.len() + 1);
        bytes.insert(at, 0xf0);
    }
    let rex = (long && shape & 0x80 != 0).then(|| input.u8() & 0xf);
    if let Some(r) = rex {
        bytes.push(0x40 | r);
    }
    let rex_w = rex.is_some_and(|r| r & 8 != 0);
    let rex_r = rex.map_or(0, |r| (r >> 2) & 1) << 3;
    let code16 = mode == CpuMode::Code16;
    // `66` and `67` toggle the code size's defaults (16-bit code: 2 and 2 bytes; 32-bit
    // code: 4 and 4; 64-bit code: 4 and 8, `67` making 4).
    let osize: u8 = if rex_w {
        8
    } else if opsize != code16 {
        2
    } else {
        4
    };
    let asize: u8 = match (long, addrsize != code16) {
        (true, false) => 8,
        (false, true) => 2,
        _ => 4,
    };

    let form = FORMS[usize::from(input.u8()) % FORMS.len()];
    // The ModRM byte: mostly a memory operand; sometimes mod = 3 or (C6/C7) a reg field
    // that is not 0.
    let mut modrm = input.u8();
    let odd = input.u8();
    let has_modrm = !matches!(form, Form::Moffs { .. });
    let register_operand = has_modrm && odd & 0x1f == 0;
    if !register_operand && modrm >> 6 == 3 {
        modrm &= 0x7f;
    }
    if register_operand {
        modrm |= 0xc0;
    }
    let bad_reg = matches!(form, Form::Imm { .. }) && odd & 0xe0 == 0xe0 && modrm & 0x38 != 0;
    if matches!(form, Form::Imm { .. }) && !bad_reg {
        modrm &= !0x38;
    }
    let reg = ((modrm >> 3) & 7) | rex_r;
    let byte_reg = |idx: u8| {
        if rex.is_none() && (4..8).contains(&idx) {
            Reg {
                index: idx - 4,
                high_byte: true,
            }
        } else {
            Reg {
                index: idx,
                high_byte: false,
            }
        }
    };
    let low = |index: u8| Reg {
        index,
        high_byte: false,
    };

    let push_modrm = |bytes: &mut Vec<u8>, input: &mut Input<'_>| {
        bytes.push(modrm);
        let (md, rm) = (modrm >> 6, modrm & 7);
        if md == 3 {
            return;
        }
        if asize == 2 {
            // The 16-bit form: no SIB, disp8 / disp16, mod 0 with rm 6 a bare disp16.
            let disp = if md == 0 && rm == 6 {
                2
            } else {
                [0, 1, 2, 0][usize::from(md)]
            };
            for _ in 0..disp {
                bytes.push(input.u8());
            }
            return;
        }
        let mut disp = [0, 1, 4, 0][usize::from(md)];
        if rm == 4 {
            let sib = input.u8();
            bytes.push(sib);
            if md == 0 && sib & 7 == 5 {
                disp = 4;
            }
        } else if md == 0 && rm == 5 {
            disp = 4;
        }
        for _ in 0..disp {
            bytes.push(input.u8());
        }
    };

    let mut refused = lock || register_operand || bad_reg;
    let op = match form {
        Form::Mov { opcode } => {
            bytes.push(opcode);
            push_modrm(&mut bytes, input);
            match opcode {
                0x88 => MmioOp::StoreReg {
                    src: byte_reg(reg),
                    width: 1,
                },
                0x89 => MmioOp::StoreReg {
                    src: low(reg),
                    width: osize,
                },
                0x8a => MmioOp::Load {
                    dest: byte_reg(reg),
                    width: 1,
                    dest_size: 1,
                    sign_extend: false,
                },
                _ => MmioOp::Load {
                    dest: low(reg),
                    width: osize,
                    dest_size: osize,
                    sign_extend: false,
                },
            }
        }
        Form::Imm { wide } => {
            bytes.push(if wide { 0xc7 } else { 0xc6 });
            push_modrm(&mut bytes, input);
            if !wide {
                let v = input.u8();
                bytes.push(v);
                MmioOp::StoreImm {
                    value: u64::from(v),
                    width: 1,
                }
            } else if osize == 2 {
                let v = input.u16();
                bytes.extend(v.to_le_bytes());
                MmioOp::StoreImm {
                    value: u64::from(v),
                    width: 2,
                }
            } else {
                let v = input.u32();
                bytes.extend(v.to_le_bytes());
                MmioOp::StoreImm {
                    value: if osize == 8 {
                        i64::from(v as i32) as u64
                    } else {
                        u64::from(v)
                    },
                    width: osize,
                }
            }
        }
        Form::Extend { op2 } => {
            refused |= rep.is_some();
            bytes.extend([0x0f, op2]);
            push_modrm(&mut bytes, input);
            MmioOp::Load {
                dest: low(reg),
                width: if op2 & 1 == 0 { 1 } else { 2 },
                dest_size: osize,
                sign_extend: op2 >= 0xbe,
            }
        }
        Form::Movsxd => {
            // ARPL outside 64-bit mode.
            refused |= !long;
            bytes.push(0x63);
            push_modrm(&mut bytes, input);
            MmioOp::Load {
                dest: low(reg),
                width: if osize == 2 { 2 } else { 4 },
                dest_size: osize,
                sign_extend: osize == 8,
            }
        }
        Form::Moffs { opcode } => {
            bytes.push(opcode);
            for _ in 0..asize {
                bytes.push(input.u8());
            }
            let width = if opcode & 1 == 0 { 1 } else { osize };
            if opcode < 0xa2 {
                MmioOp::Load {
                    dest: low(0),
                    width,
                    dest_size: width,
                    sign_extend: false,
                }
            } else {
                MmioOp::StoreReg { src: low(0), width }
            }
        }
    };
    let len = bytes.len();
    // Whatever follows the instruction in memory.
    let tail = input.slice(16);
    let mut full = bytes.clone();
    full.extend_from_slice(tail);
    let result = insn::decode(&full, mode);

    if refused {
        let Err(e) = result else {
            panic!("{bytes:02x?} ({mode:?}) decoded: {result:?}");
        };
        if len <= MAX_INSN_LEN {
            let expected = if lock {
                DecodeError::Prefix(0xf0)
            } else if form == Form::Movsxd && !long {
                DecodeError::Opcode(0x63)
            } else if matches!(form, Form::Extend { .. }) && rep.is_some() {
                DecodeError::Prefix(rep.unwrap_or_default())
            } else if register_operand {
                DecodeError::RegisterOperand
            } else {
                DecodeError::BadModrm
            };
            assert_eq!(e, expected, "{bytes:02x?} ({mode:?})");
        }
        return;
    }
    if len > MAX_INSN_LEN {
        assert_eq!(
            result,
            Err(DecodeError::TooLong),
            "{bytes:02x?} ({mode:?}): {len} bytes"
        );
        return;
    }
    let expected = MmioInsn { len: len as u8, op };
    assert_eq!(result, Ok(expected), "{bytes:02x?} ({mode:?}) {form:?}");
    check_insn(&expected, &full);
    against_iced(&full, mode, &expected);
    for cut in 0..len {
        assert_eq!(
            insn::decode(&bytes[..cut], mode),
            Err(DecodeError::Truncated),
            "{bytes:02x?} cut to {cut}"
        );
    }
    check_helpers(&op, input.u64(), input.u64());
}
