//! Guest CR0 writes that change the CPU's operating mode — protection (PE), paging (PG),
//! and long mode (EFER.LMA, from EFER.LME when paging is turned on) — checked as MOV to
//! CR0 checks them (Intel SDM Vol. 3A, 2.5 and 10.8.5), the PAE page-directory-pointer
//! entries a CPU loads when 32-bit PAE paging starts (SDM Vol. 3A, 5.4.1), and the
//! real-mode state a vCPU started by INIT-SIPI begins in. Pure, unit-tested on the host.
//!
//! Under VMX these transitions need "unrestricted guest" (the guest runs with PE or PG
//! clear); without it PE and PG stay as the entry contract set them. Under SVM they are
//! always allowed.

/// CR0.PE.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.ET.
pub const CR0_ET: u64 = 1 << 4;
/// CR0.NW.
pub const CR0_NW: u64 = 1 << 29;
/// CR0.CD.
pub const CR0_CD: u64 = 1 << 30;
/// CR0.PG.
pub const CR0_PG: u64 = 1 << 31;
/// CR0's reserved bits below 32: 15:6, 17, 28:19.
const CR0_RESERVED: u64 = 0x1ffa_ffc0;
/// CR4.PSE.
pub const CR4_PSE: u64 = 1 << 4;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.PGE.
pub const CR4_PGE: u64 = 1 << 7;
/// CR4.SMEP.
pub const CR4_SMEP: u64 = 1 << 20;
/// EFER.LME.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA.
pub const EFER_LMA: u64 = 1 << 10;

/// CR0 after INIT: CD, NW, ET (SDM Vol. 3A, table 10-1).
pub const INIT_CR0: u64 = CR0_CD | CR0_NW | CR0_ET;

/// The state a CR0 write is checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModeState {
    /// CR0 as the guest sees it.
    pub cr0: u64,
    /// CR4 as the guest sees it.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// CS.L: the guest runs 64-bit code.
    pub cs_long: bool,
}

/// The outcome of a guest's write of CR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cr0Write {
    /// Accepted; IA32_EFER becomes `efer` (LMA follows paging when LME is set). When the
    /// new state is 32-bit PAE paging ([`pae_paging`]) a VMX vCPU loads the PDPTEs.
    Done {
        /// The new IA32_EFER.
        efer: u64,
    },
    /// The CPU would raise #GP(0).
    Gp,
}

/// Checks the guest's write of `new` to CR0 over `s`. `mode_switches`: PE and PG may
/// change (unrestricted guest); otherwise changing either is #GP (the entry contract's
/// 64-bit mode is the only one).
pub fn cr0_write(s: &ModeState, new: u64, mode_switches: bool) -> Cr0Write {
    let changed = s.cr0 ^ new;
    if new >> 32 != 0
        || new & CR0_RESERVED != 0
        || (new & CR0_NW != 0 && new & CR0_CD == 0)
        || (new & CR0_PG != 0 && new & CR0_PE == 0)
        || (!mode_switches && changed & (CR0_PE | CR0_PG) != 0)
    {
        return Cr0Write::Gp;
    }
    let mut efer = s.efer;
    if changed & CR0_PG != 0 {
        if new & CR0_PG != 0 {
            if efer & EFER_LME != 0 {
                // Long mode needs PAE, and a CS without L (it would be 64-bit code at once;
                // VM entry would refuse L with D).
                if s.cr4 & CR4_PAE == 0 || s.cs_long {
                    return Cr0Write::Gp;
                }
                efer |= EFER_LMA;
            }
        } else if efer & EFER_LMA != 0 {
            // Leaving long mode is only allowed from compatibility mode.
            if s.cs_long {
                return Cr0Write::Gp;
            }
            efer &= !EFER_LMA;
        }
    }
    Cr0Write::Done { efer }
}

/// Whether the guest may write `new` to CR4 as far as the mode goes: PAE stays set in long
/// mode (IA32_EFER.LMA, compatibility mode included: #GP otherwise).
pub fn cr4_mode_ok(s: &ModeState, new: u64) -> bool {
    s.efer & EFER_LMA == 0 || new & CR4_PAE != 0
}

/// Whether CR0, CR4 and EFER make 32-bit PAE paging: paging on, CR4.PAE, not long mode.
/// The CPU then translates through four page-directory-pointer entries it loaded from CR3
/// (at MOV to CR0, CR3 or CR4: [`pdptes_reload`]), not from memory at each walk.
pub fn pae_paging(cr0: u64, cr4: u64, efer: u64) -> bool {
    cr0 & CR0_PG != 0 && cr4 & CR4_PAE != 0 && efer & EFER_LMA == 0
}

/// Whether a MOV to CR4 from `old` to `new` loads the PDPTEs in 32-bit PAE paging (it
/// changes PAE, PGE, PSE or SMEP; SDM Vol. 3A, 5.4.1).
pub fn pdptes_reload(old: u64, new: u64) -> bool {
    (old ^ new) & (CR4_PAE | CR4_PGE | CR4_PSE | CR4_SMEP) != 0
}

/// Whether four PDPTEs as read at CR3 can be loaded: a present entry (bit 0) with a
/// reserved bit set (2:1, 8:5, or an address bit at or above `maxphyaddr`, CPUID
/// 0x8000_0008 EAX[7:0]) makes the MOV that loads them #GP(0), nothing changed.
pub fn pdptes_valid(pdptes: &[u64; 4], maxphyaddr: u32) -> bool {
    let high = u64::MAX.checked_shl(maxphyaddr.min(64)).unwrap_or(0);
    let reserved = 0x1e6 | high;
    pdptes.iter().all(|&e| e & 1 == 0 || e & reserved == 0)
}

/// Whether an SVM vCPU holds EFER.LME back from its VMCB: LME set with paging and CR4.PAE
/// off. QEMU (7.2) loads the host's CR0 at #VMEXIT through its MOV-to-CR0 path while the
/// guest's EFER and CR4 are still in place; in this state that path takes paging going on
/// for an entry to long mode without PAE and returns before loading CR0, so the host ran
/// on with the guest's CR0 (paging off). The vCPU applies LME itself when paging starts.
pub fn lme_held(efer: u64, cr0: u64, cr4: u64) -> bool {
    efer & EFER_LME != 0 && cr0 & CR0_PG == 0 && cr4 & CR4_PAE == 0
}

/// A data segment a string I/O element goes through outside 64-bit mode, as the VMCS or
/// VMCB keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataSegment {
    /// The limit in bytes (the granularity already applied).
    pub limit: u32,
    /// The access-rights byte: type (3:0), S (4), DPL (6:5), P (7).
    pub access: u8,
    /// D/B: the upper bound of an expand-down segment is 0xFFFF_FFFF, else 0xFFFF.
    pub big: bool,
    /// Unusable: a null selector loaded in protected mode.
    pub unusable: bool,
}

/// Whether a string I/O element of `size` bytes at `offset` (the index register in the
/// address size) may go through `seg`, as the CPU checks it before the access (SDM Vol. 3A,
/// 5.3 and 5.4): within the limit (above it, up to 64 KiB or 4 GiB, for an expand-down
/// data segment), and in protected mode (`protected`: CR0.PE without RFLAGS.VM) a usable
/// segment of a type that allows the access (`write`: writable data; else data or readable
/// code). `false`: #GP(0), or #SS(0) when the segment is SS.
pub fn string_segment_ok(
    seg: &DataSegment,
    offset: u64,
    size: u8,
    write: bool,
    protected: bool,
) -> bool {
    let (code, bit1, bit2) = (
        seg.access & 8 != 0,
        seg.access & 2 != 0,
        seg.access & 4 != 0,
    );
    if protected {
        let system = seg.access & 0x10 == 0;
        let allowed = if write { !code && bit1 } else { !code || bit1 };
        if seg.unusable || system || !allowed {
            return false;
        }
    }
    let last = offset.saturating_add(u64::from(size.max(1)) - 1);
    if !code && bit2 {
        let upper = if seg.big { 0xffff_ffff } else { 0xffff };
        offset > u64::from(seg.limit) && last <= upper
    } else {
        last <= u64::from(seg.limit)
    }
}

/// The instruction pointer after an emulated instruction that ends at `next`: outside
/// 64-bit code (`code64` false) EIP is 32 bits and wraps at 4 GiB, as the CPU's does (a
/// RIP above it would fail VM entry: the VMX vCPU wraps it when that entry fails, keeping
/// the test off every exit; `next >> 32 == 1` are the only values an instruction below 4
/// GiB can end at).
pub fn wrap_ip(next: u64, code64: bool) -> u64 {
    if code64 {
        next
    } else {
        next & 0xffff_ffff
    }
}

/// The real-mode code segment of a vCPU started by a STARTUP IPI with `vector`: selector
/// `vector << 8`, base `vector << 12` (execution starts at CS:0).
pub fn sipi_code_segment(vector: u8) -> (u16, u64) {
    (u16::from(vector) << 8, u64::from(vector) << 12)
}

/// VMCS access rights of a real-mode code segment: present, accessed read/execute code.
pub const REAL_CODE_ACCESS_RIGHTS: u32 = 0x9b;
/// Access rights of a real-mode data segment: present, accessed read/write data.
pub const REAL_DATA_ACCESS_RIGHTS: u32 = 0x93;
/// Access rights of TR after INIT: present, busy 32-bit TSS.
pub const REAL_TSS_ACCESS_RIGHTS: u32 = 0x8b;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry;

    fn long() -> ModeState {
        ModeState {
            cr0: entry::CR0,
            cr4: entry::CR4,
            efer: entry::EFER,
            cs_long: true,
        }
    }

    fn real() -> ModeState {
        ModeState {
            cr0: INIT_CR0,
            ..ModeState::default()
        }
    }

    #[test]
    fn without_mode_switches_pe_and_pg_stay() {
        let s = long();
        assert_eq!(cr0_write(&s, s.cr0 & !CR0_PG, false), Cr0Write::Gp);
        assert_eq!(cr0_write(&s, s.cr0 & !CR0_PE, false), Cr0Write::Gp);
        assert_eq!(
            cr0_write(&s, s.cr0 | CR0_CD, false),
            Cr0Write::Done { efer: s.efer }
        );
        assert_eq!(cr0_write(&s, s.cr0 | CR0_NW, false), Cr0Write::Gp);
        assert_eq!(cr0_write(&s, s.cr0 | 1 << 32, false), Cr0Write::Gp);
        assert_eq!(cr0_write(&s, s.cr0 | 1 << 6, false), Cr0Write::Gp);
    }

    /// Linux's AP trampoline: real mode → protected mode → PAE, LME → paging (long mode).
    #[test]
    fn real_mode_to_long_mode() {
        let mut s = real();
        let pe = CR0_PE | (1 << 1) | CR0_ET | (1 << 5) | (1 << 16) | (1 << 18);
        assert_eq!(cr0_write(&s, pe, true), Cr0Write::Done { efer: 0 });
        s.cr0 = pe;
        s.cr4 = CR4_PAE;
        s.efer = EFER_LME;
        assert_eq!(
            cr0_write(&s, pe | CR0_PG, true),
            Cr0Write::Done {
                efer: EFER_LME | EFER_LMA
            }
        );
        // With a CS that has L set (loaded in protected mode, where L means nothing), #GP.
        let l = ModeState { cs_long: true, ..s };
        assert_eq!(cr0_write(&l, pe | CR0_PG, true), Cr0Write::Gp);
        // Without PAE, turning on paging with LME is #GP.
        s.cr4 = 0;
        assert_eq!(cr0_write(&s, pe | CR0_PG, true), Cr0Write::Gp);
        // Paging without PE is #GP.
        assert_eq!(cr0_write(&real(), CR0_PG | CR0_ET, true), Cr0Write::Gp);
        // 32-bit paging, with or without PAE (PAE paging: the vCPU loads the PDPTEs).
        let mut p = real();
        p.cr0 = pe;
        assert_eq!(cr0_write(&p, pe | CR0_PG, true), Cr0Write::Done { efer: 0 });
        assert!(!pae_paging(pe | CR0_PG, 0, 0));
        p.cr4 = CR4_PAE;
        assert_eq!(cr0_write(&p, pe | CR0_PG, true), Cr0Write::Done { efer: 0 });
        assert!(pae_paging(pe | CR0_PG, CR4_PAE, 0));
        assert!(!pae_paging(pe | CR0_PG, CR4_PAE, EFER_LME | EFER_LMA));
        assert!(!pae_paging(pe, CR4_PAE, 0));
        // Clearing PE while paging is on is #GP; clearing both at once is fine.
        let paged = ModeState {
            cr0: pe | CR0_PG,
            ..p
        };
        assert_eq!(cr0_write(&paged, pe & !CR0_PE | CR0_PG, true), Cr0Write::Gp);
        assert_eq!(
            cr0_write(&paged, pe & !CR0_PE, true),
            Cr0Write::Done { efer: 0 }
        );
    }

    #[test]
    fn pdptes() {
        let ok = [0x1001, 0, 0x2001 | 1 << 39, 0xffff_fffe];
        assert!(pdptes_valid(&ok, 40));
        for bad in [1 << 1, 1 << 2, 1 << 5, 1 << 8, 1 << 40, 1 << 63] {
            assert!(!pdptes_valid(&[0x1001, 0, 0x3001 | bad, 0], 40), "{bad:#x}");
            // Not present: nothing is reserved.
            assert!(pdptes_valid(&[0x1001, 0, 0x3000 | bad, 0], 40), "{bad:#x}");
        }
        assert!(pdptes_valid(&[0x1001 | 1 << 51, 0, 0, 0], 52));
        assert!(!pdptes_valid(&[0x1001 | 1 << 52, 0, 0, 0], 52));
        assert!(pdptes_reload(0, CR4_PAE));
        assert!(pdptes_reload(CR4_PAE, CR4_PAE | CR4_PGE));
        assert!(!pdptes_reload(CR4_PAE, CR4_PAE | 1 << 9));
    }

    #[test]
    fn leaving_long_mode_only_from_compatibility_mode() {
        let s = long();
        assert_eq!(cr0_write(&s, s.cr0 & !CR0_PG, true), Cr0Write::Gp);
        let compat = ModeState {
            cs_long: false,
            ..s
        };
        assert_eq!(
            cr0_write(&compat, s.cr0 & !CR0_PG, true),
            Cr0Write::Done {
                efer: s.efer & !EFER_LMA
            }
        );
    }

    #[test]
    fn cr4_pae_rules() {
        assert!(!cr4_mode_ok(&long(), 0));
        assert!(cr4_mode_ok(&long(), CR4_PAE));
        // Compatibility mode is long mode too.
        let compat = ModeState {
            cs_long: false,
            ..long()
        };
        assert!(!cr4_mode_ok(&compat, 0));
        assert!(cr4_mode_ok(&real(), CR4_PAE));
        let paged32 = ModeState {
            cr0: CR0_PE | CR0_PG,
            ..real()
        };
        assert!(cr4_mode_ok(&paged32, CR4_PAE));
        assert!(cr4_mode_ok(&paged32, 0));
    }

    #[test]
    fn lme_held_only_without_paging_and_pae() {
        assert!(lme_held(EFER_LME, CR0_PE, 0));
        assert!(!lme_held(EFER_LME, CR0_PE, CR4_PAE));
        assert!(!lme_held(EFER_LME | EFER_LMA, CR0_PE | CR0_PG, CR4_PAE));
        assert!(!lme_held(0, CR0_PE, 0));
        // 32-bit paging with LME set cannot be reached (#GP), but holds nothing.
        assert!(!lme_held(EFER_LME, CR0_PE | CR0_PG, 0));
    }

    #[test]
    fn string_segments() {
        let data = DataSegment {
            limit: 0xffff,
            access: 0x93,
            big: false,
            unusable: false,
        };
        assert!(string_segment_ok(&data, 0xffff, 1, true, true));
        // Across the limit, or past it: #GP / #SS.
        assert!(!string_segment_ok(&data, 0xffff, 2, true, true));
        assert!(!string_segment_ok(&data, 0x1_0000, 1, false, false));
        let tiny = DataSegment { limit: 0xf, ..data };
        assert!(string_segment_ok(&tiny, 0xc, 4, true, true));
        assert!(!string_segment_ok(&tiny, 0x10, 1, true, true));
        assert!(
            !string_segment_ok(&tiny, 0x10, 1, true, false),
            "real mode too"
        );
        // Read-only data: OUTS reads it, INS may not write it (not in real mode).
        let ro = DataSegment {
            access: 0x91,
            ..data
        };
        assert!(string_segment_ok(&ro, 0, 1, false, true));
        assert!(!string_segment_ok(&ro, 0, 1, true, true));
        assert!(string_segment_ok(&ro, 0, 1, true, false));
        // Code: readable for OUTS, never written; execute-only not even read.
        let code = DataSegment {
            access: 0x9b,
            ..data
        };
        assert!(string_segment_ok(&code, 0, 1, false, true));
        assert!(!string_segment_ok(&code, 0, 1, true, true));
        let exec_only = DataSegment {
            access: 0x99,
            ..data
        };
        assert!(!string_segment_ok(&exec_only, 0, 1, false, true));
        // Unusable (null) and system segments.
        let null = DataSegment {
            unusable: true,
            ..data
        };
        assert!(!string_segment_ok(&null, 0, 1, false, true));
        assert!(string_segment_ok(&null, 0, 1, false, false));
        let tss = DataSegment {
            access: 0x8b,
            ..data
        };
        assert!(!string_segment_ok(&tss, 0, 1, false, true));
        // Expand-down: above the limit, up to 64 KiB or 4 GiB.
        let down = DataSegment {
            limit: 0xfff,
            access: 0x97,
            ..data
        };
        assert!(!string_segment_ok(&down, 0xfff, 1, true, true));
        assert!(string_segment_ok(&down, 0x1000, 4, true, true));
        assert!(!string_segment_ok(&down, 0xfffe, 4, true, true));
        let big = DataSegment { big: true, ..down };
        assert!(string_segment_ok(&big, 0xfffe, 4, true, true));
        assert!(!string_segment_ok(&big, 0xffff_fffe, 4, true, true));
    }

    #[test]
    fn ip_wraps_at_4_gib_outside_64_bit_code() {
        assert_eq!(wrap_ip(0x1_0000_0001, false), 1);
        assert_eq!(wrap_ip(0x1_0000_0001, true), 0x1_0000_0001);
        assert_eq!(wrap_ip(0xffff_fff0, false), 0xffff_fff0);
    }

    #[test]
    fn sipi_segment() {
        assert_eq!(sipi_code_segment(0x08), (0x0800, 0x8000));
        assert_eq!(sipi_code_segment(0x9f), (0x9f00, 0x9_f000));
    }
}
