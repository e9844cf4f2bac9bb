//! The GICv3 CPU-interface registers common to both interrupt groups, emulated for the
//! guest: the vCPU sets ICH_HCR_EL2.TC, so the guest's ICC_CTLR_EL1, ICC_PMR_EL1,
//! ICC_RPR_EL1 and ICC_DIR_EL1 accesses trap to EL2 (the SGI registers trap anyway).
//!
//! Why trap at all: the guest's binary point registers are not trapped (they are per group
//! and every acknowledge reads them), and QEMU 7.2 keeps a written ICC_BPR1_EL1 value's low
//! three bits without clamping them to the minimum when the value itself is above it (8,
//! say): the next acknowledge of a group 1 interrupt then fails an assertion in QEMU's
//! virtual CPU interface and the whole emulated machine aborts. With ICH_VMCR_EL2.VCBPR set
//! ("common binary point"), writes to ICC_BPR1_EL1 are ignored and group 1 uses the group 0
//! binary point, whose path has no such assertion. The guest could clear VCBPR through
//! ICC_CTLR_EL1.CBPR; trapping ICC_CTLR_EL1 (which only TC does) keeps it set: the guest
//! sees CBPR as 1 and read-only, as on a GIC whose EL3 owns the bit.
//!
//! Linux touches these registers when a CPU comes up (CTLR, PMR) and not per interrupt
//! unless it uses pseudo-NMIs (PMR, RPR). Field layouts from the GICv3 specification
//! (IHI 0069, ICC_CTLR_EL1, ICV_RPR_EL1, ICH_VMCR_EL2, ICH_VTR_EL2). Portable and host-tested;
//! reading and writing the live registers is the caller's job.

use crate::sysreg::SysReg;

/// ICH_VMCR_EL2.VCBPR: group 1 uses the group 0 binary point; ICC_BPR1_EL1 writes ignored.
pub const VMCR_VCBPR: u64 = 1 << 4;
/// ICH_VMCR_EL2.VEOIM: EOI only drops the priority; ICC_DIR_EL1 deactivates.
const VMCR_VEOIM: u64 = 1 << 9;
/// ICH_VMCR_EL2.VPMR, the virtual priority mask (bits 31:24).
const VMCR_VPMR_SHIFT: u32 = 24;

/// ICC_CTLR_EL1.CBPR (bit 0) and EOImode (bit 1).
const CTLR_CBPR: u64 = 1 << 0;
const CTLR_EOIMODE: u64 = 1 << 1;

/// The registers this module emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IccReg {
    /// ICC_CTLR_EL1.
    Ctlr,
    /// ICC_PMR_EL1.
    Pmr,
    /// ICC_RPR_EL1 (read-only).
    Rpr,
    /// ICC_DIR_EL1 (write-only).
    Dir,
    /// ICC_SGI1R_EL1 (write-only): an SGI for the vGIC.
    Sgi1r,
    /// ICC_ASGI1R_EL1 and ICC_SGI0R_EL1 (write-only): SGIs for a group or security state a
    /// guest of this hypervisor does not have; ignored.
    OtherSgi,
}

impl IccReg {
    /// Which of these registers `reg` is.
    pub fn from_sysreg(reg: SysReg) -> Option<Self> {
        Some(match (reg.op0, reg.op1, reg.crn, reg.crm, reg.op2) {
            (3, 0, 12, 12, 4) => Self::Ctlr,
            (3, 0, 4, 6, 0) => Self::Pmr,
            (3, 0, 12, 11, 3) => Self::Rpr,
            (3, 0, 12, 11, 1) => Self::Dir,
            (3, 0, 12, 11, 5) => Self::Sgi1r,
            (3, 0, 12, 11, 6) | (3, 0, 12, 11, 7) => Self::OtherSgi,
            _ => return None,
        })
    }

    /// Whether the register can be read (`MRS`); the others can only be written.
    pub fn readable(self) -> bool {
        matches!(self, Self::Ctlr | Self::Pmr | Self::Rpr)
    }

    /// Whether the register can be written (`MSR`).
    pub fn writable(self) -> bool {
        self != Self::Rpr
    }
}

/// Number of implemented priority bits (ICH_VTR_EL2.PRIbits + 1).
fn priority_bits(vtr: u64) -> u32 {
    ((vtr >> 29) & 7) as u32 + 1
}

/// Number of preemption bits (ICH_VTR_EL2.PREbits + 1).
fn preemption_bits(vtr: u64) -> u32 {
    ((vtr >> 26) & 7) as u32 + 1
}

/// The VMCR a vCPU's CPU interface starts with: everything off, common binary point.
pub const fn reset_vmcr() -> u64 {
    VMCR_VCBPR
}

/// ICC_CTLR_EL1 as the guest reads it: PRIbits, IDbits, SEIS and A3V from ICH_VTR_EL2,
/// EOImode from VMCR, CBPR always 1.
pub fn ctlr_read(vtr: u64, vmcr: u64) -> u64 {
    let pribits = (vtr >> 29) & 7; // CTLR 10:8
    let idbits = (vtr >> 23) & 7; // CTLR 13:11
    let seis = (vtr >> 22) & 1; // CTLR 14
    let a3v = (vtr >> 21) & 1; // CTLR 15
    let eoimode = if vmcr & VMCR_VEOIM != 0 {
        CTLR_EOIMODE
    } else {
        0
    };
    (a3v << 15) | (seis << 14) | (idbits << 11) | (pribits << 8) | eoimode | CTLR_CBPR
}

/// VMCR after the guest wrote `value` to ICC_CTLR_EL1: only EOImode is writable (CBPR
/// stays 1; the other fields are read-only).
pub fn ctlr_write(vmcr: u64, value: u64) -> u64 {
    let vmcr = vmcr | VMCR_VCBPR;
    if value & CTLR_EOIMODE != 0 {
        vmcr | VMCR_VEOIM
    } else {
        vmcr & !VMCR_VEOIM
    }
}

/// ICC_PMR_EL1 as the guest reads it.
pub fn pmr_read(vmcr: u64) -> u64 {
    (vmcr >> VMCR_VPMR_SHIFT) & 0xff
}

/// VMCR after the guest wrote `value` to ICC_PMR_EL1: the unimplemented low priority bits
/// read as zero.
pub fn pmr_write(vtr: u64, vmcr: u64, value: u64) -> u64 {
    let mask = (0xff_u64 << (8 - priority_bits(vtr))) & 0xff;
    (vmcr & !(0xff << VMCR_VPMR_SHIFT)) | ((value & mask) << VMCR_VPMR_SHIFT)
}

/// ICC_RPR_EL1: the running priority, the group priority of the highest-priority active
/// interrupt (0xff when none is active). `apr` holds the active-priority bits of both
/// groups (ICH_AP0R0_EL2 | ICH_AP1R0_EL2): bit n is group priority n << (8 - PREbits).
pub fn rpr(vtr: u64, apr: u64) -> u64 {
    let apr = apr & 0xffff_ffff;
    if apr == 0 {
        return 0xff;
    }
    let level = u64::from(apr.trailing_zeros());
    (level << (8 - preemption_bits(vtr).min(8))) & 0xff
}

/// Whether the guest chose EOImode 1, where ICC_DIR_EL1 deactivates (with EOImode 0 a DIR
/// write is UNPREDICTABLE; it is ignored).
pub fn eoi_mode(vmcr: u64) -> bool {
    vmcr & VMCR_VEOIM != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 7.2's ICH_VTR_EL2: 4 list registers, PRIbits 4 (5 bits), PREbits 4, IDbits 0,
    /// SEIS 0, A3V 1.
    const QEMU_VTR: u64 = (4 << 29) | (4 << 26) | (1 << 21) | 3;

    #[test]
    fn registers_by_encoding() {
        assert_eq!(
            IccReg::from_sysreg(SysReg::new(3, 0, 12, 12, 4)),
            Some(IccReg::Ctlr)
        );
        assert_eq!(
            IccReg::from_sysreg(SysReg::new(3, 0, 4, 6, 0)),
            Some(IccReg::Pmr)
        );
        assert_eq!(
            IccReg::from_sysreg(SysReg::new(3, 0, 12, 11, 3)),
            Some(IccReg::Rpr)
        );
        assert_eq!(
            IccReg::from_sysreg(SysReg::new(3, 0, 12, 11, 1)),
            Some(IccReg::Dir)
        );
        assert_eq!(
            IccReg::from_sysreg(SysReg::new(3, 0, 12, 11, 7)),
            Some(IccReg::OtherSgi)
        );
        // ICC_BPR1_EL1 is not trapped by TC.
        assert_eq!(IccReg::from_sysreg(SysReg::new(3, 0, 12, 12, 3)), None);
        assert!(!IccReg::Rpr.writable() && IccReg::Rpr.readable());
        assert!(!IccReg::Dir.readable() && IccReg::Dir.writable());
    }

    #[test]
    fn ctlr_keeps_the_common_binary_point() {
        let vmcr = reset_vmcr();
        assert_eq!(ctlr_read(QEMU_VTR, vmcr), (1 << 15) | (4 << 8) | 1);
        // Clearing CBPR does not clear VCBPR; EOImode follows the write.
        let vmcr = ctlr_write(vmcr, CTLR_EOIMODE);
        assert_eq!(vmcr & VMCR_VCBPR, VMCR_VCBPR);
        assert!(eoi_mode(vmcr));
        assert_eq!(ctlr_read(QEMU_VTR, vmcr) & 3, 3);
        let vmcr = ctlr_write(vmcr, !CTLR_EOIMODE);
        assert!(!eoi_mode(vmcr));
        assert_eq!(ctlr_read(QEMU_VTR, vmcr) & 3, 1);
        // Read-only fields cannot be written.
        assert_eq!(
            ctlr_read(QEMU_VTR, ctlr_write(0, u64::MAX)),
            ctlr_read(QEMU_VTR, 0) | 2
        );
    }

    #[test]
    fn pmr_masks_unimplemented_bits() {
        let vmcr = pmr_write(QEMU_VTR, 0x0034_5678, 0xffff_ffff_ffff_ffff);
        assert_eq!(pmr_read(vmcr), 0xf8);
        assert_eq!(
            vmcr & 0x00ff_ffff,
            0x0034_5678,
            "other VMCR fields are kept"
        );
        assert_eq!(pmr_read(pmr_write(QEMU_VTR, vmcr, 0x87)), 0x80);
        let eight_bits = 7 << 29;
        assert_eq!(pmr_read(pmr_write(eight_bits, 0, 0x87)), 0x87);
    }

    #[test]
    fn running_priority_from_the_active_priorities() {
        assert_eq!(rpr(QEMU_VTR, 0), 0xff);
        // 5 preemption bits: bit n is priority n << 3.
        assert_eq!(rpr(QEMU_VTR, 1), 0);
        assert_eq!(rpr(QEMU_VTR, 0b1010_0000), 5 << 3);
        assert_eq!(rpr(QEMU_VTR, 1 << 31), 0xf8);
        // Bits above 31 do not exist in AP0R0/AP1R0.
        assert_eq!(rpr(QEMU_VTR, 1 << 40), 0xff);
    }
}
