use super::*;

/// An EC 0x18 syndrome for `reg`, transfer register `rt`, read or write.
fn esr(reg: SysReg, rt: u64, read: bool) -> u64 {
    (0x18 << 26)
        | (1 << 25)
        | ((reg.op0 as u64) << 20)
        | ((reg.op2 as u64) << 17)
        | ((reg.op1 as u64) << 14)
        | ((reg.crn as u64) << 10)
        | (rt << 5)
        | ((reg.crm as u64) << 1)
        | read as u64
}

#[test]
fn decodes_every_field() {
    let a = SysRegAccess::from_esr(esr(ID_AA64PFR0_EL1, 7, true));
    assert_eq!(
        a,
        SysRegAccess {
            reg: ID_AA64PFR0_EL1,
            rt: 7,
            read: true
        }
    );
    // ICC_SGI1R_EL1 = S3_0_C12_C11_5, msr from x30.
    let sgi = SysReg::new(3, 0, 12, 11, 5);
    let a = SysRegAccess::from_esr(esr(sgi, 30, false));
    assert_eq!((a.reg, a.rt, a.read), (sgi, 30, false));
    // Every field at its maximum.
    let max = SysReg::new(3, 7, 15, 15, 7);
    let a = SysRegAccess::from_esr(esr(max, 31, true));
    assert_eq!((a.reg, a.rt), (max, 31));
    assert_eq!(std::format!("{max}"), "S3_7_C15_C15_7");
}

#[test]
fn id_space() {
    assert!(ID_AA64PFR0_EL1.is_id_space());
    assert!(ID_DFR0_EL1.is_id_space());
    assert!(SysReg::new(3, 0, 0, 7, 7).is_id_space());
    // MIDR_EL1 / MPIDR_EL1 (CRm 0) are not trapped by TID3.
    assert!(!SysReg::new(3, 0, 0, 0, 0).is_id_space());
    assert!(!SysReg::new(3, 1, 0, 4, 0).is_id_space());
    assert!(!SysReg::new(3, 0, 1, 4, 0).is_id_space());
    assert!(!SysReg::new(2, 0, 0, 4, 0).is_id_space());
}

#[test]
fn hides_unvirtualised_features() {
    // A Cortex-A72-like PFR0 with EL3/EL2 in AArch64+AArch32 (2), GIC sysregs (1), plus
    // SVE, RAS, MPAM and AMU set so that hiding them shows.
    let hw = 0x1111_1111_0122_2222_u64 | (1 << 24);
    let v = sanitize_id(ID_AA64PFR0_EL1, hw);
    for shift in [8, 12, 28, 32, 40, 44] {
        assert_eq!((v >> shift) & 0xf, 0, "PFR0 field at {shift}");
    }
    // EL0 (AArch64 and AArch32: 2), FP, AdvSIMD and GIC are kept; EL1 says AArch64 only,
    // since HCR_EL2.RW keeps the guest's EL1 out of AArch32.
    assert_eq!(v & 0xf, 2);
    assert_eq!((v >> 4) & 0xf, 1);
    assert_eq!((v >> 16) & 0xff, (hw >> 16) & 0xff);
    assert_eq!((v >> 24) & 0xf, (hw >> 24) & 0xf);

    let dfr = sanitize_id(ID_AA64DFR0_EL1, u64::MAX);
    assert_eq!((dfr >> 8) & 0xf, 0, "PMUVer");
    assert_eq!((dfr >> 4) & 0xf, 0, "TraceVer");
    assert_eq!((dfr >> 32) & 0xf, 0, "PMSVer");
    assert_eq!(dfr & 0xf, 0xf, "DebugVer kept");
    assert_eq!((dfr >> 12) & 0xf, 0xf, "BRPs kept");

    assert_eq!(sanitize_id(ID_AA64PFR1_EL1, u64::MAX) & 0x0f0f_ff00, 0);
    assert_eq!(sanitize_id(ID_AA64ZFR0_EL1, u64::MAX), 0);
    assert_eq!(sanitize_id(ID_AA64SMFR0_EL1, u64::MAX), 0);
    // Pointer authentication (QEMU's `max`: APA 5, GPA 1, APA3/GPA3 in ISAR2 on newer).
    let isar1 = sanitize_id(ID_AA64ISAR1_EL1, u64::MAX);
    assert_eq!(isar1 & 0xff00_0ff0, 0, "APA, API, GPA, GPI");
    assert_eq!(isar1 | 0xff00_0ff0, u64::MAX, "the rest of ISAR1 kept");
    assert_eq!(
        sanitize_id(ID_AA64ISAR2_EL1, u64::MAX) & 0xff00,
        0,
        "GPA3, APA3"
    );
    // Registers with nothing to hide pass through (ID_AA64ISAR0_EL1).
    let isar0 = SysReg::new(3, 0, 0, 6, 0);
    assert_eq!(
        sanitize_id(isar0, 0x1234_5678_9abc_def0),
        0x1234_5678_9abc_def0
    );
}

#[test]
fn undefined_syndrome() {
    assert_eq!(undefined_esr() >> 26, 0);
    assert_eq!(undefined_esr() & (1 << 25), 1 << 25);
}
