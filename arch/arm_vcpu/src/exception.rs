//! Exceptions the vCPU takes to the guest's EL1 by hand, and the AArch32 details of the
//! traps it completes: the vector, the PSTATE the guest's EL1 starts with, the condition of
//! a trapped A32/T32 instruction, and how far past it the guest resumes.
//!
//! The guest's EL1 is AArch64 (HCR_EL2.RW), its EL0 may be AArch64 or AArch32 (A32 and
//! T32). Every function takes the guest's PSTATE as saved in SPSR_EL2 at the exit, which
//! says which one it was in. Portable and host-tested; the vCPU applies the results.
//!
//! References: Arm ARM (DDI 0487) AArch64.TakeException, D1.10 "Exception entry",
//! C5.2.18 SPSR_EL2 (AArch32 and AArch64 formats), ISS encodings of ESR_EL2.

/// SPSR.M[4]: the state the exception was taken from was AArch32.
pub const SPSR_AARCH32: u64 = 1 << 4;
/// SPSR.T (AArch32 format): T32 (Thumb) state.
pub const SPSR_T: u64 = 1 << 5;
/// SPSR.PAN: privileged access never (bit 22 in both formats).
const SPSR_PAN: u64 = 1 << 22;
/// SPSR.SSBS, AArch64 format.
const SPSR_SSBS: u64 = 1 << 12;
/// SPSR.DIT: bit 24 in both formats of SPSR_ELx (an AArch32 CPSR has it in bit 21, but
/// an exception to AArch64 moves it to bit 24, making room for SS).
const SPSR_DIT: u64 = 1 << 24;
/// SPSR.SS (software step), bit 21 in both formats: 1 when the instruction the exception
/// came from is being stepped and has not completed.
pub const SPSR_SS: u64 = 1 << 21;
/// SPSR.IT[7:2] (AArch32 format, bits 15:10) and IT[1:0] (bits 26:25).
const SPSR_IT_HIGH: u64 = 0x3f << 10;
const SPSR_IT_LOW: u64 = 0x3 << 25;

/// PSTATE for EL1h with D, A, I, F masked: how a guest starts and the base of the PSTATE an
/// exception enters its EL1 with.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// SCTLR_EL1.SPAN: 0 sets PSTATE.PAN on an exception taken to EL1.
const SCTLR_SPAN: u64 = 1 << 23;
/// SCTLR_EL1.DSSBS: PSTATE.SSBS on an exception taken to EL1.
const SCTLR_DSSBS: u64 = 1 << 44;

/// ESR.IL: the trapped instruction was 32 bits long.
pub const ESR_IL: u64 = 1 << 25;
/// ESR.ISS.CV (classes with a condition field): COND is valid.
const ESR_CV: u64 = 1 << 24;

/// Optional architecture features that change the PSTATE an exception enters EL1 with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryFeatures {
    /// FEAT_PAN: PSTATE.PAN is set on entry unless SCTLR_EL1.SPAN.
    pub pan: bool,
    /// FEAT_SSBS: PSTATE.SSBS = SCTLR_EL1.DSSBS on entry.
    pub ssbs: bool,
    /// FEAT_DIT: PSTATE.DIT is kept across the entry.
    pub dit: bool,
}

impl EntryFeatures {
    /// The features from ID_AA64PFR0_EL1 (DIT, bits 51:48), ID_AA64PFR1_EL1 (SSBS, 7:4) and
    /// ID_AA64MMFR1_EL1 (PAN, 23:20).
    pub fn from_id_registers(pfr0: u64, pfr1: u64, mmfr1: u64) -> Self {
        Self {
            pan: (mmfr1 >> 20) & 0xf != 0,
            ssbs: (pfr1 >> 4) & 0xf != 0,
            dit: (pfr0 >> 48) & 0xf != 0,
        }
    }
}

/// Whether the guest was in AArch32 state (necessarily at EL0).
#[inline(always)]
pub fn is_aarch32(spsr: u64) -> bool {
    spsr & SPSR_AARCH32 != 0
}

/// Whether the guest was at EL0 (AArch64 EL0t, or AArch32, which only EL0 can be).
#[inline]
pub fn from_el0(spsr: u64) -> bool {
    is_aarch32(spsr) || spsr & 0b1100 == 0
}

/// The offset from VBAR_EL1 of the synchronous-exception vector for an exception taken to
/// EL1 from the guest state `spsr`: 0x000 from EL1 with SP_EL0, 0x200 from EL1 with SP_EL1,
/// 0x400 from EL0 in AArch64, 0x600 from EL0 in AArch32. (IRQ, FIQ and SError are at
/// +0x80, +0x100, +0x180 from there.)
pub fn vector_offset(spsr: u64) -> u64 {
    if is_aarch32(spsr) {
        return 0x600;
    }
    match spsr & 0xf {
        0b0100 => 0x000, // EL1t
        0b0101 => 0x200, // EL1h
        _ => 0x400,      // EL0t
    }
}

/// The PSTATE the guest's EL1 starts an exception with, taken from state `spsr`, with
/// SCTLR_EL1 = `sctlr`: EL1h, D, A, I, F masked, SS, IL, UAO, BTYPE clear; PAN set unless
/// SCTLR_EL1.SPAN (else kept), SSBS from SCTLR_EL1.DSSBS and DIT kept, where implemented.
pub fn entry_pstate(spsr: u64, sctlr: u64, features: EntryFeatures) -> u64 {
    let mut pstate = SPSR_EL1H_MASKED;
    if features.pan && (sctlr & SCTLR_SPAN == 0 || spsr & SPSR_PAN != 0) {
        pstate |= SPSR_PAN;
    }
    if features.ssbs && sctlr & SCTLR_DSSBS != 0 {
        pstate |= SPSR_SSBS;
    }
    if features.dit && spsr & SPSR_DIT != 0 {
        pstate |= SPSR_DIT;
    }
    pstate
}

/// Length in bytes of the trapped instruction of syndrome `esr`: 2 for a 16-bit T32
/// instruction (ESR.IL = 0), else 4.
#[inline(always)]
pub fn insn_len(esr: u64) -> u64 {
    if esr & ESR_IL != 0 {
        4
    } else {
        2
    }
}

/// ITSTATE (IT[7:0]) of an AArch32 PSTATE.
fn itstate(spsr: u64) -> u64 {
    ((spsr >> 8) & 0xfc) | ((spsr >> 25) & 0x3)
}

/// The guest's PC and PSTATE after it completes an instruction of `len` bytes at `pc`: the
/// PC moves on (wrapping at 32 bits in AArch32), and in T32 state ITSTATE advances as the
/// instruction would have advanced it (ITAdvance), so the rest of an IT block keeps its
/// conditions and the block ends after its last instruction. The instruction counts as
/// stepped: SS is cleared, so that a guest single-stepping it takes its software-step
/// exception right after it, as after an instruction the CPU completed (with SS left set,
/// the next instruction would run first). `len` 0 (the instruction is retried, or ELR
/// already points past it) changes nothing.
#[inline(always)]
pub fn step(pc: u64, spsr: u64, len: u64) -> (u64, u64) {
    if len == 0 {
        return (pc, spsr);
    }
    let spsr = spsr & !SPSR_SS;
    if !is_aarch32(spsr) {
        return (pc.wrapping_add(len), spsr);
    }
    let pc = pc.wrapping_add(len) & 0xffff_ffff;
    let it = itstate(spsr);
    if spsr & SPSR_T == 0 || it == 0 {
        return (pc, spsr);
    }
    let it = if it & 0x7 == 0 {
        0
    } else {
        (it & 0xe0) | ((it << 1) & 0x1f)
    };
    let spsr = (spsr & !(SPSR_IT_HIGH | SPSR_IT_LOW)) | ((it & 0xfc) << 8) | ((it & 0x3) << 25);
    (pc, spsr)
}

/// Whether the AArch32 condition `cond` holds for the flags NZCV of `spsr`.
fn condition_holds(cond: u64, spsr: u64) -> bool {
    let n = spsr & (1 << 31) != 0;
    let z = spsr & (1 << 30) != 0;
    let c = spsr & (1 << 29) != 0;
    let v = spsr & (1 << 28) != 0;
    let base = match cond >> 1 {
        0 => z,
        1 => c,
        2 => n,
        3 => v,
        4 => c && !z,
        5 => n == v,
        6 => !z && n == v,
        _ => return true, // AL (and 0b1111, unconditional)
    };
    base != (cond & 1 == 1)
}

/// Whether the trapped instruction of syndrome `esr`, taken from state `spsr`, passes its
/// condition. Only an A32/T32 instruction of a class with a condition field (WFI/WFE and
/// the coprocessor accesses, EC 0x01, 0x03-0x08, 0x0C) can fail it: the architecture lets
/// such an instruction trap even when its condition fails, and then the vCPU must treat it
/// as not executed. The condition is ISS.COND when ISS.CV is set, else (T32 in an IT block)
/// ITSTATE's, else none.
#[inline(always)]
pub fn condition_passed(esr: u64, spsr: u64) -> bool {
    if !is_aarch32(spsr) {
        return true;
    }
    if !matches!(esr >> 26, 0x01 | 0x03..=0x08 | 0x0c) {
        return true;
    }
    let cond = if esr & ESR_CV != 0 {
        (esr >> 20) & 0xf
    } else {
        match itstate(spsr) {
            0 => return true,
            it => it >> 4,
        }
    };
    condition_holds(cond, spsr)
}

/// The syndrome the vCPU decodes for an exit from state `spsr`: unchanged, except that a
/// data abort from AArch32 whose transfer register is R15 (the PC) is made undecodable (ISV
/// cleared): the access is then handled like any the vCPU cannot emulate, where emulating
/// it would have written X15, which is not the PC.
#[inline(always)]
pub fn effective_syndrome(esr: u64, spsr: u64) -> u64 {
    let isv_srt15 = (1 << 24) | (15 << 16);
    if is_aarch32(spsr) && esr >> 26 == 0x24 && esr & ((1 << 24) | (0x1f << 16)) == isv_srt15 {
        esr & !(1 << 24)
    } else {
        esr
    }
}

#[cfg(test)]
mod tests;
