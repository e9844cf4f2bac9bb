//! Trapped system-register accesses (ESR_EL2.EC 0x18, Arm ARM D17.2.37 "ISS encoding for an
//! exception from MSR, MRS, or System instruction execution").
//!
//! The vCPU sets HCR_EL2.TID3, so the guest's reads of the feature ID registers (op0 = 3,
//! op1 = 0, CRn = 0, CRm = 1..=7) come here. The guest gets the hardware's value with the
//! features the hypervisor does not virtualise hidden ([`sanitize_id`]): nested
//! virtualisation, EL3, SVE/SME, MTE, RAS, MPAM, AMU, pointer authentication, the PMU,
//! tracing and statistical profiling. Writes to ID registers, and every other trapped register, are UNDEFINED for
//! the guest: it gets an Undefined Instruction exception, as on hardware without the
//! register.
//!
//! Portable and host-tested; reading the hardware value is the caller's job.

/// A system register access decoded from the syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    /// Which register.
    pub reg: SysReg,
    /// The general-purpose register transferred (31 = xzr).
    pub rt: usize,
    /// `MRS` (a read) rather than `MSR`.
    pub read: bool,
}

impl SysRegAccess {
    /// Decodes the ISS of an EC 0x18 syndrome: Op0 21:20, Op2 19:17, Op1 16:14, CRn 13:10,
    /// Rt 9:5, CRm 4:1, Direction 0 (1 = read).
    pub fn from_esr(esr: u64) -> Self {
        let field = |shift: u32, bits: u32| ((esr >> shift) & ((1 << bits) - 1)) as u8;
        Self {
            reg: SysReg {
                op0: field(20, 2),
                op1: field(14, 3),
                crn: field(10, 4),
                crm: field(1, 4),
                op2: field(17, 3),
            },
            rt: field(5, 5) as usize,
            read: esr & 1 != 0,
        }
    }
}

/// A system register by its encoding (`S<op0>_<op1>_C<crn>_C<crm>_<op2>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SysReg {
    /// op0 (2 bits).
    pub op0: u8,
    /// op1 (3 bits).
    pub op1: u8,
    /// CRn (4 bits).
    pub crn: u8,
    /// CRm (4 bits).
    pub crm: u8,
    /// op2 (3 bits).
    pub op2: u8,
}

impl SysReg {
    /// A register from its encoding.
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        Self {
            op0,
            op1,
            crn,
            crm,
            op2,
        }
    }

    /// Whether this is in the feature ID space HCR_EL2.TID3 traps: op0 3, op1 0, CRn 0,
    /// CRm 1..=7 (unallocated encodings there read as zero on hardware).
    pub const fn is_id_space(&self) -> bool {
        self.op0 == 3 && self.op1 == 0 && self.crn == 0 && self.crm >= 1 && self.crm <= 7
    }
}

impl core::fmt::Display for SysReg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "S{}_{}_C{}_C{}_{}",
            self.op0, self.op1, self.crn, self.crm, self.op2
        )
    }
}

/// ID_AA64PFR0_EL1.
pub const ID_AA64PFR0_EL1: SysReg = SysReg::new(3, 0, 0, 4, 0);
/// ID_AA64PFR1_EL1.
pub const ID_AA64PFR1_EL1: SysReg = SysReg::new(3, 0, 0, 4, 1);
/// ID_AA64ZFR0_EL1 (SVE features).
pub const ID_AA64ZFR0_EL1: SysReg = SysReg::new(3, 0, 0, 4, 4);
/// ID_AA64SMFR0_EL1 (SME features).
pub const ID_AA64SMFR0_EL1: SysReg = SysReg::new(3, 0, 0, 4, 5);
/// ID_AA64ISAR1_EL1.
pub const ID_AA64ISAR1_EL1: SysReg = SysReg::new(3, 0, 0, 6, 1);
/// ID_AA64ISAR2_EL1.
pub const ID_AA64ISAR2_EL1: SysReg = SysReg::new(3, 0, 0, 6, 2);
/// ID_AA64DFR0_EL1.
pub const ID_AA64DFR0_EL1: SysReg = SysReg::new(3, 0, 0, 5, 0);
/// ID_DFR0_EL1 (AArch32 debug features, seen by AArch64 software too).
pub const ID_DFR0_EL1: SysReg = SysReg::new(3, 0, 0, 1, 2);
/// ID_AA64MMFR1_EL1.
pub const ID_AA64MMFR1_EL1: SysReg = SysReg::new(3, 0, 0, 7, 1);

/// ID_AA64PFR0_EL1.EL1 (bits 7:4) as the guest sees it: 0b0001, EL1 in AArch64 only. The
/// vCPU runs the guest's EL1 with HCR_EL2.RW = 1, so it can never be AArch32 there (an
/// exception return to AArch32 EL1 is an illegal return). EL0 (bits 3:0) keeps the
/// hardware's value: AArch32 at EL0 works.
const PFR0_EL1_AARCH64_ONLY: u64 = 0x1 << 4;

/// A 4-bit ID field: its bit position.
const fn field_mask(shift: u32) -> u64 {
    0xf << shift
}

/// Fields hidden (set to 0, "not implemented") per ID register.
const HIDDEN: &[(SysReg, &[u32])] = &[
    // EL2 11:8 (no nested virtualisation), EL3 15:12, RAS 31:28, SVE 35:32, MPAM 43:40,
    // AMU 47:44.
    (ID_AA64PFR0_EL1, &[8, 12, 28, 32, 40, 44]),
    // MTE 11:8, RAS_frac 15:12, MPAM_frac 19:16, SME 27:24.
    (ID_AA64PFR1_EL1, &[8, 12, 16, 24]),
    // Pointer authentication (its keys are not switched between VMs, HCR_EL2.API/APK
    // trap it): APA 7:4, API 11:8, GPA 27:24, GPI 31:28.
    (ID_AA64ISAR1_EL1, &[4, 8, 24, 28]),
    // Pointer authentication with QARMA3: GPA3 11:8, APA3 15:12.
    (ID_AA64ISAR2_EL1, &[8, 12]),
    // TraceVer 7:4, PMUVer 11:8, PMSVer 35:32, TraceFilt 43:40, TraceBuffer 47:44,
    // MTPMU 51:48, BRBE 55:52.
    (ID_AA64DFR0_EL1, &[4, 8, 32, 40, 44, 48, 52]),
    // AArch32 view: CopTrc 7:4, MMapTrc 19:16, PerfMon 27:24, MProfDbg 23:20 hidden.
    (ID_DFR0_EL1, &[4, 16, 20, 24]),
];

/// The value the guest reads from ID register `reg` when the hardware holds `hw`.
pub fn sanitize_id(reg: SysReg, hw: u64) -> u64 {
    if reg == ID_AA64ZFR0_EL1 || reg == ID_AA64SMFR0_EL1 {
        return 0;
    }
    let v = HIDDEN
        .iter()
        .find(|(r, _)| *r == reg)
        .map_or(hw, |(_, shifts)| {
            shifts.iter().fold(hw, |v, &s| v & !field_mask(s))
        });
    if reg == ID_AA64PFR0_EL1 {
        (v & !field_mask(4)) | PFR0_EL1_AARCH64_ONLY
    } else {
        v
    }
}

/// ESR_EL1 for an Undefined Instruction exception (EC 0 "unknown reason", IL = 1), as the
/// guest sees an instruction that does not exist.
pub const fn undefined_esr() -> u64 {
    1 << 25
}

#[cfg(test)]
mod tests;
