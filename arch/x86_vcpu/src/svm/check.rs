//! What VMRUN refuses in a VMCB (AMD APM Vol. 2, "Canonicalization and Consistency
//! Checks"): after an exit with code VMEXIT_INVALID the vCPU runs these checks over the
//! fields it writes and names the first that fails. Pure, unit-tested.

use super::vmcb::{i4, EFER_SVME};

/// The VMCB fields the checks read.
#[derive(Clone, Copy, Debug, Default)]
pub struct VmcbState {
    /// Guest EFER.
    pub efer: u64,
    /// Guest CR0.
    pub cr0: u64,
    /// Guest CR3.
    pub cr3: u64,
    /// Guest CR4.
    pub cr4: u64,
    /// Guest DR6.
    pub dr6: u64,
    /// Guest DR7.
    pub dr7: u64,
    /// CS attributes (VMCB format).
    pub cs_attr: u16,
    /// Intercept vector 4.
    pub intercept4: u32,
    /// Guest ASID.
    pub asid: u32,
    /// EVENTINJ.
    pub event_inj: u64,
}

const CR0_PE: u64 = 1;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// EFER bits that must be zero: 7:1, 9, 63:16.
const EFER_MBZ: u64 = 0xfe | (1 << 9) | !0xffff;

/// The first consistency check `s` fails, or `None`.
pub fn vmcb(s: &VmcbState) -> Option<&'static str> {
    let long = s.efer & EFER_LME != 0 && s.cr0 & CR0_PG != 0;
    let cs_l = s.cs_attr & (1 << 9) != 0;
    let cs_d = s.cs_attr & (1 << 10) != 0;
    let event_type = (s.event_inj >> 8) & 7;
    let checks: [(bool, &'static str); 14] = [
        (s.efer & EFER_SVME == 0, "guest EFER.SVME is clear"),
        (s.efer & EFER_MBZ != 0, "guest EFER has reserved bits set"),
        (
            s.cr0 & CR0_NW != 0 && s.cr0 & CR0_CD == 0,
            "guest CR0.NW set without CD",
        ),
        (s.cr0 >> 32 != 0, "guest CR0 bits 63:32 are not zero"),
        (
            s.efer & EFER_LMA != 0 && s.cr3 >> 52 != 0,
            "guest CR3 bits 63:52 are not zero",
        ),
        (s.cr4 >> 32 != 0, "guest CR4 bits 63:32 are not zero"),
        (s.dr6 >> 32 != 0, "guest DR6 bits 63:32 are not zero"),
        (s.dr7 >> 32 != 0, "guest DR7 bits 63:32 are not zero"),
        (
            long && s.cr4 & CR4_PAE == 0,
            "guest EFER.LME and CR0.PG with CR4.PAE clear",
        ),
        (
            long && s.cr0 & CR0_PE == 0,
            "guest EFER.LME and CR0.PG with CR0.PE clear",
        ),
        (
            long && s.cr4 & CR4_PAE != 0 && cs_l && cs_d,
            "guest CS has both L and D set in long mode",
        ),
        (
            s.intercept4 & i4::VMRUN == 0,
            "the VMRUN intercept is clear",
        ),
        (s.asid == 0, "guest ASID 0 (the host's)"),
        (
            s.event_inj & (1 << 31) != 0
                && (matches!(event_type, 1 | 5..=7)
                    || (event_type == 3 && (s.event_inj & 0xff) == 2)),
            "EVENTINJ holds an illegal event",
        ),
    ];
    checks
        .into_iter()
        .find(|(bad, _)| *bad)
        .map(|(_, what)| what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> VmcbState {
        VmcbState {
            efer: crate::entry::EFER | EFER_SVME,
            cr0: crate::entry::CR0,
            cr3: crate::entry::PML4_GPA,
            cr4: crate::entry::CR4,
            dr6: 0xffff_0ff0,
            dr7: 0x400,
            cs_attr: super::super::vmcb::attributes(crate::entry::CODE_ACCESS_RIGHTS),
            intercept4: super::super::vmcb::INTERCEPT4,
            asid: 1,
            event_inj: 0,
        }
    }

    #[test]
    fn the_entry_contract_passes() {
        assert_eq!(vmcb(&good()), None);
    }

    #[test]
    fn each_failure_is_named() {
        let with = |f: fn(&mut VmcbState)| {
            let mut s = good();
            f(&mut s);
            vmcb(&s)
        };
        assert_eq!(
            with(|s| s.efer &= !EFER_SVME),
            Some("guest EFER.SVME is clear")
        );
        assert_eq!(with(|s| s.asid = 0), Some("guest ASID 0 (the host's)"));
        assert_eq!(
            with(|s| s.intercept4 = 0),
            Some("the VMRUN intercept is clear")
        );
        assert_eq!(
            with(|s| s.cs_attr |= 1 << 10),
            Some("guest CS has both L and D set in long mode")
        );
        assert_eq!(
            with(|s| s.cr4 = 0),
            Some("guest EFER.LME and CR0.PG with CR4.PAE clear")
        );
        assert_eq!(
            with(|s| s.cr0 |= CR0_NW),
            Some("guest CR0.NW set without CD")
        );
        assert_eq!(
            with(|s| s.event_inj = (1 << 31) | (3 << 8) | 2),
            Some("EVENTINJ holds an illegal event")
        );
        assert_eq!(with(|s| s.event_inj = (1 << 31) | (3 << 8) | 13), None);
    }
}
