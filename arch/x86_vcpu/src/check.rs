//! Naming the field behind a failed VM entry. The CPU only says *that* the guest state, the
//! host state or the controls are invalid (exit reason 33 with bit 31; VM-instruction
//! errors 8 and 7); these checks, a subset of Intel SDM Vol. 3C §27.2–27.3 "Checks on VMX
//! Controls / Host State / Guest State" covering what the backend writes, say which field.
//! Pure, unit-tested on the host.

use crate::caps::{Controls, VmxCaps};
use crate::exit::{event, interruptibility as ib};

/// The guest-state fields the checks read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestState {
    /// CR0.
    pub cr0: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// IA32_PAT.
    pub pat: u64,
    /// DR7.
    pub dr7: u64,
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CS access rights.
    pub cs_ar: u32,
    /// SS access rights.
    pub ss_ar: u32,
    /// TR access rights.
    pub tr_ar: u32,
    /// TR selector.
    pub tr_selector: u16,
    /// Activity state.
    pub activity: u32,
    /// VMCS link pointer.
    pub link_pointer: u64,
    /// The "IA-32e mode guest" entry control.
    pub ia32e: bool,
    /// The "unrestricted guest" execution control.
    pub unrestricted: bool,
    /// The guest interruptibility state.
    pub interruptibility: u32,
    /// The VM-entry interruption-information field (the event the entry injects).
    pub entry_event: u32,
}

/// The host-state fields the checks read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    /// CR0.
    pub cr0: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// CS, SS, DS, ES, FS, GS, TR selectors.
    pub selectors: [u16; 7],
    /// FS, GS, TR, GDTR, IDTR bases and RIP.
    pub addresses: [u64; 6],
}

fn canonical(a: u64) -> bool {
    let top = (a as i64) >> 47;
    top == 0 || top == -1
}

fn pat_ok(pat: u64) -> bool {
    (0..8).all(|i| matches!((pat >> (8 * i)) & 0xff, 0 | 1 | 4 | 5 | 6 | 7))
}

const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS bits that must be 0: 63:22, 15, 5, 3.
const RFLAGS_RESERVED: u64 = !0x3f_ffff | (1 << 15) | (1 << 5) | (1 << 3);

/// The first guest-state field that fails its check, or `None`.
pub fn guest(g: &GuestState, caps: &VmxCaps) -> Option<&'static str> {
    let injecting = g.entry_event & event::VALID != 0;
    let kind = event::kind(g.entry_event);
    let shadow = g.interruptibility & (ib::STI | ib::MOV_SS);
    Some(if !caps.guest_cr0_fixed(g.unrestricted).accepts(g.cr0) {
        "guest CR0 (VMX fixed bits)"
    } else if !caps.cr4_fixed().accepts(g.cr4) {
        "guest CR4 (VMX fixed bits)"
    } else if g.cr0 & CR0_PG != 0 && g.cr0 & CR0_PE == 0 {
        "guest CR0 (PG without PE)"
    } else if g.ia32e && (g.cr0 & CR0_PG == 0 || g.cr4 & CR4_PAE == 0) {
        "guest CR0.PG / CR4.PAE (IA-32e mode guest needs both)"
    } else if (g.efer & EFER_LMA != 0) != g.ia32e {
        "guest IA32_EFER.LMA (must equal \"IA-32e mode guest\")"
    } else if g.cr0 & CR0_PG != 0 && (g.efer & EFER_LME != 0) != (g.efer & EFER_LMA != 0) {
        "guest IA32_EFER.LME (must equal LMA with paging on)"
    } else if !pat_ok(g.pat) {
        "guest IA32_PAT (a reserved memory type)"
    } else if g.dr7 >> 32 != 0 {
        "guest DR7 (bits 63:32)"
    } else if g.ia32e && g.cs_ar & (1 << 13) != 0 && g.cs_ar & (1 << 14) != 0 {
        "guest CS access rights (L and D both set)"
    } else if g.cs_ar & (1 << 16) != 0 || g.cs_ar & 0x18 != 0x18 || g.cs_ar & 0x80 == 0 {
        "guest CS access rights (not a present code segment)"
    } else if g.ss_ar & (1 << 16) == 0 && (g.ss_ar >> 5) & 3 != (g.cs_ar >> 5) & 3 {
        "guest SS access rights (DPL differs from CS's)"
    } else if g.tr_ar & (1 << 16) != 0
        || g.tr_ar & 0x80 == 0
        || g.tr_ar & 0x10 != 0
        || (g.ia32e && g.tr_ar & 0xf != 11)
        || !matches!(g.tr_ar & 0xf, 3 | 11)
    {
        "guest TR access rights (not a present busy TSS)"
    } else if g.tr_selector & 4 != 0 {
        "guest TR selector (TI set)"
    } else if g.ia32e && g.cs_ar & (1 << 13) != 0 && !canonical(g.rip) {
        "guest RIP (not canonical)"
    } else if g.rflags & RFLAGS_RESERVED != 0 || g.rflags & 2 == 0 {
        "guest RFLAGS (reserved bits)"
    } else if g.activity > 3 {
        "guest activity state"
    } else if g.activity == 1 && (g.ss_ar >> 5) & 3 != 0 {
        "guest activity state (HLT with SS.DPL not 0)"
    } else if g.activity != 0 && shadow != 0 {
        "guest activity state (not active in an STI or MOV-SS shadow)"
    } else if shadow == ib::STI | ib::MOV_SS {
        "guest interruptibility state (STI and MOV-SS blocking both set)"
    } else if shadow & ib::STI != 0 && g.rflags & RFLAGS_IF == 0 {
        "guest interruptibility state (STI blocking with RFLAGS.IF clear)"
    } else if injecting && kind == event::EXTERNAL && shadow != 0 {
        "VM-entry interruption information (an external interrupt in an interrupt shadow)"
    } else if injecting && kind == event::EXTERNAL && g.rflags & RFLAGS_IF == 0 {
        "VM-entry interruption information (an external interrupt with RFLAGS.IF clear)"
    } else if injecting && kind == event::NMI && shadow != 0 {
        "VM-entry interruption information (an NMI in an interrupt shadow)"
    } else if injecting && g.entry_event & event::DELIVER_ERROR_CODE != 0 && g.cr0 & CR0_PE == 0 {
        "VM-entry interruption information (an error code in real mode)"
    } else if g.link_pointer != u64::MAX {
        "VMCS link pointer (must be all ones)"
    } else {
        return None;
    })
}

/// The first host-state field that fails its check, or `None`.
pub fn host(h: &HostState, caps: &VmxCaps) -> Option<&'static str> {
    const NAMES: [&str; 7] = [
        "host CS selector (RPL or TI set)",
        "host SS selector (RPL or TI set)",
        "host DS selector (RPL or TI set)",
        "host ES selector (RPL or TI set)",
        "host FS selector (RPL or TI set)",
        "host GS selector (RPL or TI set)",
        "host TR selector (RPL or TI set)",
    ];
    const BASES: [&str; 6] = [
        "host FS base (not canonical)",
        "host GS base (not canonical)",
        "host TR base (not canonical)",
        "host GDTR base (not canonical)",
        "host IDTR base (not canonical)",
        "host RIP (not canonical)",
    ];
    if !caps.cr0_fixed().accepts(h.cr0) {
        return Some("host CR0 (VMX fixed bits)");
    }
    if !caps.cr4_fixed().accepts(h.cr4) {
        return Some("host CR4 (VMX fixed bits)");
    }
    if h.cr4 & CR4_PAE == 0 {
        return Some("host CR4.PAE (a 64-bit host needs it)");
    }
    if h.efer & (EFER_LMA | EFER_LME) != EFER_LMA | EFER_LME {
        return Some("host IA32_EFER (LMA and LME must be set for a 64-bit host)");
    }
    if let Some(i) = h.selectors.iter().position(|s| s & 7 != 0) {
        return Some(NAMES[i]);
    }
    if h.selectors[0] == 0 {
        return Some("host CS selector (null)");
    }
    if h.selectors[6] == 0 {
        return Some("host TR selector (null)");
    }
    if let Some(i) = h.addresses.iter().position(|a| !canonical(*a)) {
        return Some(BASES[i]);
    }
    None
}

/// The first control bit outside what the CPU allows (`caps`), or `None`.
pub fn controls(c: &Controls, caps: &VmxCaps) -> Option<&'static str> {
    let fields = [
        (c.pin, caps.pin, "pin-based controls"),
        (c.proc, caps.proc, "primary processor-based controls"),
        (c.proc2, caps.proc2, "secondary processor-based controls"),
        (c.exit, caps.exit, "VM-exit controls"),
        (c.entry, caps.entry, "VM-entry controls"),
    ];
    fields.into_iter().find_map(|(v, cap, name)| {
        let must = cap as u32;
        let may = (cap >> 32) as u32;
        (v & must != must || v & !may != 0).then_some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry;

    fn caps() -> VmxCaps {
        VmxCaps {
            cr0_fixed0: 0x8000_0021,
            cr0_fixed1: 0xffff_ffff,
            cr4_fixed0: 0x2000,
            cr4_fixed1: 0x0037_67ff,
            pin: 0x16 | (0x7fu64 << 32),
            ..VmxCaps::default()
        }
    }

    /// The entry contract's state, as the vCPU writes it.
    fn contract() -> GuestState {
        GuestState {
            cr0: entry::CR0,
            cr4: entry::CR4 | 0x2000,
            efer: entry::EFER,
            pat: entry::PAT,
            dr7: 0x400,
            rip: 0x20_0000,
            rflags: entry::RFLAGS,
            cs_ar: entry::CODE_ACCESS_RIGHTS,
            ss_ar: entry::DATA_ACCESS_RIGHTS,
            tr_ar: entry::TSS_ACCESS_RIGHTS,
            tr_selector: entry::TSS_SELECTOR,
            activity: 0,
            link_pointer: u64::MAX,
            ia32e: true,
            unrestricted: false,
            interruptibility: 0,
            entry_event: 0,
        }
    }

    #[test]
    fn the_entry_contract_passes() {
        assert_eq!(guest(&contract(), &caps()), None);
    }

    #[test]
    fn each_broken_field_is_named() {
        let c = caps();
        type Breaker = fn(&mut GuestState);
        let cases: [(Breaker, &str); 10] = [
            (|g| g.cr0 &= !(1 << 5), "guest CR0 (VMX fixed bits)"),
            (|g| g.cr4 &= !0x2000, "guest CR4 (VMX fixed bits)"),
            (
                |g| g.cr4 &= !CR4_PAE,
                "guest CR0.PG / CR4.PAE (IA-32e mode guest needs both)",
            ),
            (
                |g| g.efer &= !EFER_LMA,
                "guest IA32_EFER.LMA (must equal \"IA-32e mode guest\")",
            ),
            (|g| g.pat = 0x02, "guest IA32_PAT (a reserved memory type)"),
            (
                |g| g.cs_ar |= 1 << 14,
                "guest CS access rights (L and D both set)",
            ),
            (
                |g| g.tr_ar = 0x89,
                "guest TR access rights (not a present busy TSS)",
            ),
            (|g| g.rip = 0x8000_0000_0000, "guest RIP (not canonical)"),
            (|g| g.rflags = 0, "guest RFLAGS (reserved bits)"),
            (
                |g| g.link_pointer = 0,
                "VMCS link pointer (must be all ones)",
            ),
        ];
        for (breakit, name) in cases {
            let mut g = contract();
            breakit(&mut g);
            assert_eq!(guest(&g, &c), Some(name));
        }
    }

    #[test]
    fn event_injection_checks() {
        let c = caps();
        let on = GuestState {
            rflags: entry::RFLAGS | RFLAGS_IF,
            entry_event: event::external(0x30),
            ..contract()
        };
        assert_eq!(guest(&on, &c), None);
        type Breaker = fn(&mut GuestState);
        let cases: [(Breaker, &str); 7] = [
            (
                |g| g.rflags = entry::RFLAGS,
                "VM-entry interruption information (an external interrupt with RFLAGS.IF clear)",
            ),
            (
                |g| g.interruptibility = ib::MOV_SS,
                "VM-entry interruption information (an external interrupt in an interrupt shadow)",
            ),
            (
                |g| {
                    g.entry_event = event::nmi();
                    g.interruptibility = ib::STI;
                },
                "VM-entry interruption information (an NMI in an interrupt shadow)",
            ),
            (
                |g| g.interruptibility = ib::STI | ib::MOV_SS,
                "guest interruptibility state (STI and MOV-SS blocking both set)",
            ),
            (
                |g| {
                    g.entry_event = 0;
                    g.rflags = entry::RFLAGS;
                    g.interruptibility = ib::STI;
                },
                "guest interruptibility state (STI blocking with RFLAGS.IF clear)",
            ),
            (
                |g| {
                    g.entry_event = 0;
                    g.activity = 1;
                    g.interruptibility = ib::STI;
                },
                "guest activity state (not active in an STI or MOV-SS shadow)",
            ),
            (
                |g| {
                    g.unrestricted = true;
                    g.ia32e = false;
                    g.efer = 0;
                    g.cr0 = 0x30;
                    g.cs_ar = 0x9b;
                    g.entry_event = event::exception(13, true);
                },
                "VM-entry interruption information (an error code in real mode)",
            ),
        ];
        for (breakit, name) in cases {
            let mut g = on;
            breakit(&mut g);
            assert_eq!(guest(&g, &c), Some(name));
        }
    }

    #[test]
    fn real_mode_start_passes_under_unrestricted_guest() {
        let c = caps();
        let real = GuestState {
            cr0: 0x30,
            cr4: 0x2000,
            efer: 0,
            rip: 0,
            cs_ar: 0x9b,
            ss_ar: 0x93,
            tr_ar: 0x8b,
            tr_selector: 0,
            ia32e: false,
            unrestricted: true,
            ..contract()
        };
        assert_eq!(guest(&real, &c), None);
        assert_eq!(
            guest(
                &GuestState {
                    unrestricted: false,
                    ..real
                },
                &c
            ),
            Some("guest CR0 (VMX fixed bits)")
        );
    }

    #[test]
    fn host_checks() {
        let c = caps();
        let good = HostState {
            cr0: 0x8005_0033,
            cr4: 0x2020,
            efer: 0xd01,
            selectors: [0x08, 0x10, 0x10, 0x10, 0, 0, 0x18],
            addresses: [
                0,
                0xffff_8000_0000_0000,
                0x10_0000,
                0x10_1000,
                0x10_2000,
                0x20_0000,
            ],
        };
        assert_eq!(host(&good, &c), None);
        let mut h = good;
        h.selectors[1] = 0x13;
        assert_eq!(host(&h, &c), Some("host SS selector (RPL or TI set)"));
        let mut h = good;
        h.selectors[6] = 0;
        assert_eq!(host(&h, &c), Some("host TR selector (null)"));
        let mut h = good;
        h.addresses[1] = 0x0000_8000_0000_0000;
        assert_eq!(host(&h, &c), Some("host GS base (not canonical)"));
        let mut h = good;
        h.cr4 &= !0x2000;
        assert_eq!(host(&h, &c), Some("host CR4 (VMX fixed bits)"));
    }

    #[test]
    fn control_checks() {
        let c = caps();
        let ok = Controls {
            pin: 0x17,
            ..Controls::default()
        };
        assert_eq!(controls(&ok, &c), None);
        let missing_default1 = Controls { pin: 0x1, ..ok };
        assert_eq!(controls(&missing_default1, &c), Some("pin-based controls"));
        let posted = Controls { pin: 0x97, ..ok };
        assert_eq!(controls(&posted, &c), Some("pin-based controls"));
    }
}
