//! Decoding the instruction behind an EPT violation on an MMIO address.
//!
//! The exit gives the guest-physical address, so only what the access *does* is needed:
//! its direction, its width, the register or immediate involved, and the instruction's
//! length (the exit's instruction-length field is not valid for EPT violations). The forms
//! decoded are the `mov`s compilers and drivers use for device registers:
//!
//! | opcode | instruction | access |
//! |---|---|---|
//! | `88 /r` | `mov r/m8, r8` | store 1 byte |
//! | `89 /r` | `mov r/m16/32/64, r` | store 2, 4 or 8 bytes |
//! | `8A /r` | `mov r8, r/m8` | load 1 byte |
//! | `8B /r` | `mov r, r/m16/32/64` | load 2, 4 or 8 bytes |
//! | `C6 /0 ib` | `mov r/m8, imm8` | store 1 byte |
//! | `C7 /0 iw/id` | `mov r/m16/32/64, imm16/32` | store 2, 4 or 8 bytes (imm32 sign-extended) |
//! | `0F B6`, `0F B7` | `movzx r, r/m8`, `movzx r, r/m16` | load 1 or 2 bytes, zero-extended |
//! | `0F BE`, `0F BF` | `movsx r, r/m8`, `movsx r, r/m16` | load 1 or 2 bytes, sign-extended |
//! | `63 /r` (64-bit mode) | `movsxd r64, r/m32` (REX.W) or `mov r32, r/m32` | load 4 bytes |
//! | `A0`..`A3` | `mov al/eAX, moffs` and back | load or store at an absolute address |
//!
//! with the operand-size prefix `66`, REX prefixes (W, R, and X/B which only matter for the
//! address), segment overrides (ignored: the address is in the exit) and the address-size
//! prefix `67`, in 64-bit, 32-bit and 16-bit code (real mode, virtual-8086 mode and 16-bit
//! protected mode): the code size gives the default operand size (16-bit code: 2 bytes, `66`
//! makes 4; otherwise 4, `66` makes 2) and address size (64-bit code: 8, `67` makes 4;
//! 32-bit: 4, `67` makes 2; 16-bit: 2, `67` makes 4), and a 2-byte address size has the
//! 16-bit ModRM form (no SIB, `mod` 0 with `rm` 6 a 16-bit displacement) and 2-byte
//! `moffs`. Anything else — another opcode, a register operand, a `lock` — is refused with
//! a [`DecodeError`]; the vCPU then gives the access to the VM's unclaimed policy. Pure
//! code, unit-tested on the host and fuzzable.

use core::fmt;

/// The longest x86 instruction.
pub const MAX_INSN_LEN: usize = 15;

/// The code size of the guest's current code segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// 64-bit mode (IA-32e mode, CS.L = 1).
    Long64,
    /// 32-bit protected or compatibility mode (CS.D = 1).
    Protected32,
    /// 16-bit code (real mode, virtual-8086 mode, or a code segment with CS.D = 0).
    Code16,
}

/// A general-purpose register operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg {
    /// 0 = RAX, 1 = RCX, 2 = RDX, 3 = RBX, 4 = RSP, 5 = RBP, 6 = RSI, 7 = RDI, 8..15 =
    /// R8..R15.
    pub index: u8,
    /// The operand is bits 15:8 of the register (AH, CH, DH, BH: a byte register 4..7
    /// without a REX prefix).
    pub high_byte: bool,
}

impl Reg {
    const fn low(index: u8) -> Self {
        Self {
            index,
            high_byte: false,
        }
    }
}

/// What the instruction does with the memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioOp {
    /// A load of `width` bytes into `dest`, which is `dest_size` bytes wide; the value is
    /// sign- or zero-extended from `width` to `dest_size` (see [`apply_load`]).
    Load {
        /// The destination register.
        dest: Reg,
        /// Size of the access: 1, 2, 4 or 8.
        width: u8,
        /// Size of the destination operand: 1, 2, 4 or 8.
        dest_size: u8,
        /// Sign-extend (`movsx`, `movsxd`) instead of zero-extend.
        sign_extend: bool,
    },
    /// A store of the low `width` bytes of `src` (or of its bits 15:8 for a high byte).
    StoreReg {
        /// The source register.
        src: Reg,
        /// Size of the access.
        width: u8,
    },
    /// A store of an immediate, already truncated to `width` bytes.
    StoreImm {
        /// The value.
        value: u64,
        /// Size of the access.
        width: u8,
    },
}

impl MmioOp {
    /// Size of the memory access in bytes.
    pub fn width(&self) -> u8 {
        match *self {
            MmioOp::Load { width, .. }
            | MmioOp::StoreReg { width, .. }
            | MmioOp::StoreImm { width, .. } => width,
        }
    }
}

/// A decoded MMIO instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioInsn {
    /// The instruction's length in bytes (RIP advances by it).
    pub len: u8,
    /// What it does.
    pub op: MmioOp,
}

/// Why the bytes are not a decodable MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the instruction does (the fetch was cut short).
    Truncated,
    /// More than 15 bytes.
    TooLong,
    /// An opcode that is not one of the decoded `mov` forms.
    Opcode(u8),
    /// A two-byte (`0F xx`) opcode that is not `movzx` / `movsx`.
    Opcode0f(u8),
    /// The operand is a register, not memory.
    RegisterOperand,
    /// A prefix the decoder refuses (`lock`, `rep`/`repne` on a two-byte opcode).
    Prefix(u8),
    /// The ModRM reg field must be 0 (`C6 /0`, `C7 /0`).
    BadModrm,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("instruction bytes cut short"),
            DecodeError::TooLong => f.write_str("instruction longer than 15 bytes"),
            DecodeError::Opcode(o) => write!(f, "opcode {o:#04x} is not an emulated mov"),
            DecodeError::Opcode0f(o) => {
                write!(f, "opcode 0x0f {o:#04x} is not an emulated movzx/movsx")
            }
            DecodeError::RegisterOperand => f.write_str("register operand, not memory"),
            DecodeError::Prefix(p) => write!(f, "prefix {p:#04x} not emulated"),
            DecodeError::BadModrm => f.write_str("ModRM reg field must be 0"),
        }
    }
}

/// A cursor over the instruction bytes.
struct Bytes<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> Result<u8, DecodeError> {
        if self.pos >= MAX_INSN_LEN {
            return Err(DecodeError::TooLong);
        }
        let v = *self.b.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(v)
    }

    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        for _ in 0..n {
            self.next()?;
        }
        Ok(())
    }

    /// A little-endian immediate of `n` bytes.
    fn imm(&mut self, n: usize) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..n {
            v |= u64::from(self.next()?) << (8 * i);
        }
        Ok(v)
    }
}

/// The prefixes in front of the opcode.
#[derive(Default)]
struct Prefixes {
    opsize: bool,
    addrsize: bool,
    rep: Option<u8>,
    /// REX.W, R, X, B as bits 3..0.
    rex: Option<u8>,
}

impl Prefixes {
    fn w(&self) -> bool {
        self.rex.is_some_and(|r| r & 8 != 0)
    }
    fn r(&self) -> u8 {
        self.rex.map_or(0, |r| (r >> 2) & 1) << 3
    }
}

/// Whether `b` is an instruction prefix in `mode`: a legacy one, or REX in 64-bit code.
pub fn is_prefix(b: u8, mode: CpuMode) -> bool {
    matches!(
        b,
        0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3
    ) || (mode == CpuMode::Long64 && (0x40..=0x4f).contains(&b))
}

/// Decodes the MMIO access at the start of `bytes`, an instruction of a guest running in
/// `mode`.
pub fn decode(bytes: &[u8], mode: CpuMode) -> Result<MmioInsn, DecodeError> {
    let long = mode == CpuMode::Long64;
    let mut c = Bytes { b: bytes, pos: 0 };
    let mut p = Prefixes::default();
    let opcode = loop {
        let b = c.next()?;
        match b {
            0x66 => p.opsize = true,
            0x67 => p.addrsize = true,
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 => {}
            0xf2 | 0xf3 => p.rep = Some(b),
            0xf0 => return Err(DecodeError::Prefix(b)),
            0x40..=0x4f if long => {
                p.rex = Some(b & 0xf);
                continue;
            }
            _ => break b,
        }
        // A legacy prefix after a REX prefix cancels the REX.
        p.rex = None;
    };
    // The address size in bytes: 8, 4 or 2 (the 16-bit ModRM form).
    let asize = match (mode, p.addrsize) {
        (CpuMode::Long64, false) => 8,
        (CpuMode::Protected32, true) | (CpuMode::Code16, false) => 2,
        _ => 4,
    };
    // The operand size of the full-size forms: `66` toggles the code size's default.
    let osize = if p.w() {
        8
    } else if p.opsize == (mode == CpuMode::Code16) {
        4
    } else {
        2
    };
    let modrm = |c: &mut Bytes<'_>| modrm(c, asize == 2);
    let byte_reg = |idx: u8| -> Reg {
        if p.rex.is_none() && (4..8).contains(&idx) {
            Reg {
                index: idx - 4,
                high_byte: true,
            }
        } else {
            Reg::low(idx)
        }
    };

    let op = match opcode {
        0x88..=0x8b => {
            let reg = modrm(&mut c)?;
            let r = reg | p.r();
            match opcode {
                0x88 => MmioOp::StoreReg {
                    src: byte_reg(r),
                    width: 1,
                },
                0x89 => MmioOp::StoreReg {
                    src: Reg::low(r),
                    width: osize,
                },
                0x8a => MmioOp::Load {
                    dest: byte_reg(r),
                    width: 1,
                    dest_size: 1,
                    sign_extend: false,
                },
                _ => MmioOp::Load {
                    dest: Reg::low(r),
                    width: osize,
                    dest_size: osize,
                    sign_extend: false,
                },
            }
        }
        0xc6 | 0xc7 => {
            if modrm(&mut c)? != 0 {
                return Err(DecodeError::BadModrm);
            }
            if opcode == 0xc6 {
                MmioOp::StoreImm {
                    value: c.imm(1)?,
                    width: 1,
                }
            } else {
                let n = if osize == 2 { 2 } else { 4 };
                let raw = c.imm(n)?;
                // imm32 is sign-extended to 64 bits with REX.W.
                let value = if osize == 8 {
                    raw as u32 as i32 as i64 as u64
                } else {
                    raw
                };
                MmioOp::StoreImm {
                    value,
                    width: osize,
                }
            }
        }
        0x63 if long => {
            let r = modrm(&mut c)? | p.r();
            MmioOp::Load {
                dest: Reg::low(r),
                width: if osize == 2 { 2 } else { 4 },
                dest_size: osize,
                sign_extend: osize == 8,
            }
        }
        0xa0..=0xa3 => {
            c.skip(asize)?;
            let width = if opcode & 1 == 0 { 1 } else { osize };
            let rax = Reg::low(0);
            if opcode < 0xa2 {
                MmioOp::Load {
                    dest: rax,
                    width,
                    dest_size: width,
                    sign_extend: false,
                }
            } else {
                MmioOp::StoreReg { src: rax, width }
            }
        }
        0x0f => {
            let op2 = c.next()?;
            if let Some(rep) = p.rep {
                return Err(DecodeError::Prefix(rep));
            }
            let (width, sign_extend) = match op2 {
                0xb6 => (1, false),
                0xb7 => (2, false),
                0xbe => (1, true),
                0xbf => (2, true),
                _ => return Err(DecodeError::Opcode0f(op2)),
            };
            let r = modrm(&mut c)? | p.r();
            MmioOp::Load {
                dest: Reg::low(r),
                width,
                dest_size: osize,
                sign_extend,
            }
        }
        _ => return Err(DecodeError::Opcode(opcode)),
    };
    Ok(MmioInsn {
        len: c.pos as u8,
        op,
    })
}

/// Reads a ModRM byte with a memory operand (and its SIB byte and displacement; `addr16`:
/// the 16-bit form, without SIB) and returns its reg field (without REX.R).
fn modrm(c: &mut Bytes<'_>, addr16: bool) -> Result<u8, DecodeError> {
    let m = c.next()?;
    let (md, reg, rm) = (m >> 6, (m >> 3) & 7, m & 7);
    if md == 3 {
        return Err(DecodeError::RegisterOperand);
    }
    if addr16 {
        // [BX+SI] ... [BX]: mod 1 a disp8, mod 2 a disp16, mod 0 with rm 6 a bare disp16.
        let disp = match md {
            1 => 1,
            2 => 2,
            _ if rm == 6 => 2,
            _ => 0,
        };
        c.skip(disp)?;
        return Ok(reg);
    }
    // 32- and 64-bit addressing.
    let mut disp = match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = c.next()?;
        if md == 0 && sib & 7 == 5 {
            disp = 4;
        }
    } else if md == 0 && rm == 5 {
        // disp32 (RIP-relative in 64-bit mode).
        disp = 4;
    }
    c.skip(disp)?;
    Ok(reg)
}

/// The new value of a destination register holding `old` after a load of `value` (the
/// low `width` bytes are the data) into an operand of `dest_size` bytes, following the
/// architecture: a 4-byte destination zero-extends into the whole register, 1- and 2-byte
/// destinations leave the other bits alone (bits 15:8 for a high-byte register). A store
/// leaves `old` as it is. ([`LoadMerge::of`] and [`LoadMerge::apply`].)
pub fn apply_load(old: u64, value: u64, op: &MmioOp) -> u64 {
    LoadMerge::of(op).apply(old, value)
}

/// How a load's value lands in its destination register ([`apply_load`]), worked out once
/// per decode so that a vCPU's completion of a cached instruction is a few operations: the
/// value sign- or zero-extended from the access width, masked to the operand and shifted to
/// its place (bits 15:8 for a high-byte register), the rest of the old value kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadMerge {
    /// The destination register's number (0 for a store, which changes no register).
    pub dest: u8,
    /// 64 minus the access's bits: the value goes up by this and back down, filling.
    ext: u8,
    /// Fill with the sign (`movsx`, `movsxd`) instead of zeros.
    sign: bool,
    /// Where the operand sits in the register: 8 for a high byte, else 0.
    shift: u8,
    /// The operand's bits (before `shift`).
    mask: u64,
    /// The bits of the old value that stay.
    keep: u64,
}

impl LoadMerge {
    /// The merge of `op`; a store's keeps the old value whole.
    pub fn of(op: &MmioOp) -> Self {
        let MmioOp::Load {
            dest,
            width,
            dest_size,
            sign_extend,
        } = *op
        else {
            return Self {
                dest: 0,
                ext: 0,
                sign: false,
                shift: 0,
                mask: 0,
                keep: u64::MAX,
            };
        };
        let ext = 64 - 8 * width.clamp(1, 8);
        let (mask, shift): (u64, u8) = match dest_size {
            8 => (u64::MAX, 0),
            4 => (0xffff_ffff, 0),
            2 => (0xffff, 0),
            _ if dest.high_byte => (0xff, 8),
            _ => (0xff, 0),
        };
        Self {
            dest: dest.index & 15,
            ext,
            sign: sign_extend,
            shift,
            mask,
            // A 4-byte destination clears bits 63:32 too.
            keep: if dest_size >= 4 { 0 } else { !(mask << shift) },
        }
    }

    /// The register's new value, `old` before the load of `value`.
    #[inline(always)]
    pub fn apply(&self, old: u64, value: u64) -> u64 {
        let up = value << self.ext;
        let v = if self.sign {
            ((up as i64) >> self.ext) as u64
        } else {
            up >> self.ext
        };
        (old & self.keep) | ((v & self.mask) << self.shift)
    }
}

/// A decoded MMIO instruction with what its exit and completion need worked out: what a
/// vCPU caches (crate::insn_cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The instruction.
    pub insn: MmioInsn,
    /// The access width as the device set takes it.
    pub width: axdevice_base::AccessWidth,
    /// A load's register update.
    pub merge: LoadMerge,
}

impl MmioAccess {
    /// `insn` with its width and merge worked out.
    pub fn of(insn: MmioInsn) -> Self {
        use axdevice_base::AccessWidth;
        let width = match insn.op.width() {
            1 => AccessWidth::Byte,
            2 => AccessWidth::Half,
            4 => AccessWidth::Word,
            _ => AccessWidth::Dword,
        };
        Self {
            insn,
            width,
            merge: LoadMerge::of(&insn.op),
        }
    }

    /// Decodes the bytes at RIP in `mode` (for [`crate::insn_cache::Cache::fill`]): the
    /// access and the number of bytes it depends on.
    pub fn decode(bytes: &[u8], mode: CpuMode) -> Option<(Self, u8)> {
        let i = decode(bytes, mode).ok()?;
        Some((Self::of(i), i.len))
    }
}

/// The value a store of `op` writes, with `reg` the source register's value (ignored for
/// an immediate), truncated to the access width. Inlined: a call would take `op` by
/// pointer, which keeps a vCPU's copy of the cached access in memory.
#[inline(always)]
pub fn store_value(op: &MmioOp, reg: u64) -> u64 {
    let (v, width) = match *op {
        MmioOp::StoreReg { src, width } if src.high_byte => ((reg >> 8) & 0xff, width),
        MmioOp::StoreReg { width, .. } => (reg, width),
        MmioOp::StoreImm { value, width } => (value, width),
        MmioOp::Load { .. } => return 0,
    };
    if width >= 8 {
        v
    } else {
        v & ((1u64 << (u32::from(width) * 8)) - 1)
    }
}

#[cfg(test)]
mod tests;
