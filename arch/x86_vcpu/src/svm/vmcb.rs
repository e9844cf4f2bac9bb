//! The VMCB's layout, intercept bits and exit codes (AMD APM Vol. 2, appendix B "Layout
//! of VMCB" and appendix C "SVM Intercept Exit Codes"), and the decoding of what an exit
//! reports. Pure, unit-tested.

/// Control-area offsets.
pub mod ctl {
    /// CR read intercepts (bits 15:0), CR write intercepts (bits 31:16).
    pub const CR_INTERCEPTS: usize = 0x000;
    /// DR read and write intercepts.
    pub const DR_INTERCEPTS: usize = 0x004;
    /// Exception intercepts, one bit per vector.
    pub const EXCEPTION_INTERCEPTS: usize = 0x008;
    /// Intercept vector 3 ([`super::i3`]).
    pub const INTERCEPT3: usize = 0x00c;
    /// Intercept vector 4 ([`super::i4`]).
    pub const INTERCEPT4: usize = 0x010;
    /// I/O permission map base (physical).
    pub const IOPM_BASE: usize = 0x040;
    /// MSR permission map base (physical).
    pub const MSRPM_BASE: usize = 0x048;
    /// TSC offset.
    pub const TSC_OFFSET: usize = 0x050;
    /// Guest ASID (32 bits).
    pub const ASID: usize = 0x058;
    /// TLB control (8 bits, [`super::tlb`]).
    pub const TLB_CONTROL: usize = 0x05c;
    /// Virtual interrupt control: V_TPR, V_IRQ, V_INTR_MASKING (bit 24), ...
    pub const INT_CTL: usize = 0x060;
    /// Interrupt shadow (bit 0).
    pub const INT_STATE: usize = 0x068;
    /// Exit code (64 bits; -1 = VMEXIT_INVALID).
    pub const EXIT_CODE: usize = 0x070;
    /// EXITINFO1.
    pub const EXIT_INFO1: usize = 0x078;
    /// EXITINFO2.
    pub const EXIT_INFO2: usize = 0x080;
    /// EXITINTINFO: the event whose delivery the exit interrupted.
    pub const EXIT_INT_INFO: usize = 0x088;
    /// Nested paging enable (bit 0).
    pub const NP_ENABLE: usize = 0x090;
    /// Event injection.
    pub const EVENT_INJ: usize = 0x0a8;
    /// Nested CR3.
    pub const N_CR3: usize = 0x0b0;
    /// VMCB clean bits (unused: the CPUs we run on have no clean-bit support; 0 = reload
    /// everything).
    pub const CLEAN: usize = 0x0c0;
}

/// Save-area offsets (the save area starts at 0x400).
pub mod save {
    /// ES; a segment is selector (u16), attributes (u16), limit (u32), base (u64).
    pub const ES: usize = 0x400;
    /// CS.
    pub const CS: usize = 0x410;
    /// SS.
    pub const SS: usize = 0x420;
    /// DS.
    pub const DS: usize = 0x430;
    /// FS.
    pub const FS: usize = 0x440;
    /// GS.
    pub const GS: usize = 0x450;
    /// GDTR (limit and base only).
    pub const GDTR: usize = 0x460;
    /// LDTR.
    pub const LDTR: usize = 0x470;
    /// IDTR (limit and base only).
    pub const IDTR: usize = 0x480;
    /// TR.
    pub const TR: usize = 0x490;
    /// CPL (u8).
    pub const CPL: usize = 0x4cb;
    /// EFER.
    pub const EFER: usize = 0x4d0;
    /// CR4.
    pub const CR4: usize = 0x548;
    /// CR3.
    pub const CR3: usize = 0x550;
    /// CR0.
    pub const CR0: usize = 0x558;
    /// DR7.
    pub const DR7: usize = 0x560;
    /// DR6.
    pub const DR6: usize = 0x568;
    /// RFLAGS.
    pub const RFLAGS: usize = 0x570;
    /// RIP.
    pub const RIP: usize = 0x578;
    /// RSP.
    pub const RSP: usize = 0x5d8;
    /// RAX.
    pub const RAX: usize = 0x5f8;
    /// STAR (VMLOAD/VMSAVE).
    pub const STAR: usize = 0x600;
    /// LSTAR (VMLOAD/VMSAVE).
    pub const LSTAR: usize = 0x608;
    /// CSTAR (VMLOAD/VMSAVE).
    pub const CSTAR: usize = 0x610;
    /// KernelGsBase (VMLOAD/VMSAVE).
    pub const KERNEL_GS_BASE: usize = 0x620;
    /// SYSENTER_CS (VMLOAD/VMSAVE).
    pub const SYSENTER_CS: usize = 0x628;
    /// SYSENTER_ESP (VMLOAD/VMSAVE).
    pub const SYSENTER_ESP: usize = 0x630;
    /// SYSENTER_EIP (VMLOAD/VMSAVE).
    pub const SYSENTER_EIP: usize = 0x638;
    /// CR2.
    pub const CR2: usize = 0x640;
    /// The guest's PAT under nested paging.
    pub const G_PAT: usize = 0x668;
}

/// Intercept vector 3 bits (control offset 0x00C).
pub mod i3 {
    /// Physical interrupt.
    pub const INTR: u32 = 1 << 0;
    /// NMI.
    pub const NMI: u32 = 1 << 1;
    /// SMI.
    pub const SMI: u32 = 1 << 2;
    /// INIT.
    pub const INIT: u32 = 1 << 3;
    /// Virtual interrupt (V_IRQ) taken: the interrupt window.
    pub const VINTR: u32 = 1 << 4;
    /// IRET (the end of an NMI handler).
    pub const IRET: u32 = 1 << 20;
    /// RDPMC.
    pub const RDPMC: u32 = 1 << 15;
    /// CPUID.
    pub const CPUID: u32 = 1 << 18;
    /// INVD.
    pub const INVD: u32 = 1 << 22;
    /// HLT.
    pub const HLT: u32 = 1 << 24;
    /// INVLPGA.
    pub const INVLPGA: u32 = 1 << 26;
    /// IN/OUT through the I/O permission map.
    pub const IOIO_PROT: u32 = 1 << 27;
    /// RDMSR/WRMSR through the MSR permission map.
    pub const MSR_PROT: u32 = 1 << 28;
    /// Shutdown (triple fault).
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Intercept vector 4 bits (control offset 0x010).
pub mod i4 {
    /// VMRUN (must be set, or VMRUN fails).
    pub const VMRUN: u32 = 1 << 0;
    /// VMMCALL.
    pub const VMMCALL: u32 = 1 << 1;
    /// VMLOAD.
    pub const VMLOAD: u32 = 1 << 2;
    /// VMSAVE.
    pub const VMSAVE: u32 = 1 << 3;
    /// STGI.
    pub const STGI: u32 = 1 << 4;
    /// CLGI.
    pub const CLGI: u32 = 1 << 5;
    /// SKINIT.
    pub const SKINIT: u32 = 1 << 6;
    /// RDTSCP.
    pub const RDTSCP: u32 = 1 << 7;
    /// WBINVD.
    pub const WBINVD: u32 = 1 << 9;
    /// MONITOR.
    pub const MONITOR: u32 = 1 << 10;
    /// MWAIT.
    pub const MWAIT: u32 = 1 << 11;
    /// MWAIT when armed.
    pub const MWAIT_COND: u32 = 1 << 12;
    /// XSETBV.
    pub const XSETBV: u32 = 1 << 13;
}

/// The intercepts the backend sets (docs/x86.md, "SVM").
pub const INTERCEPT3: u32 = i3::INTR
    | i3::NMI
    | i3::SMI
    | i3::INIT
    | i3::RDPMC
    | i3::CPUID
    | i3::INVD
    | i3::HLT
    | i3::INVLPGA
    | i3::IOIO_PROT
    | i3::MSR_PROT
    | i3::SHUTDOWN;
/// The intercepts of vector 4 the backend sets.
pub const INTERCEPT4: u32 = i4::VMRUN
    | i4::VMMCALL
    | i4::VMLOAD
    | i4::VMSAVE
    | i4::STGI
    | i4::CLGI
    | i4::SKINIT
    | i4::RDTSCP
    | i4::WBINVD
    | i4::MONITOR
    | i4::MWAIT
    | i4::MWAIT_COND
    | i4::XSETBV;

/// TLB_CONTROL values.
pub mod tlb {
    /// Nothing flushed.
    pub const NONE: u8 = 0;
    /// Flush the whole TLB, every ASID (the only flush without the flush-by-ASID
    /// feature).
    pub const ALL: u8 = 1;
}

/// INT_CTL V_IRQ (bit 8): a virtual interrupt is pending; with V_IGN_TPR (bit 20) and
/// priority 0xF (bits 19:16) it is taken as soon as the guest's RFLAGS.IF allows, which the
/// VINTR intercept turns into an exit: the interrupt window.
pub const V_IRQ_WINDOW: u64 = (1 << 8) | (0xf << 16) | (1 << 20);

/// Segment attributes after INIT: a present, accessed, read/execute code segment.
pub const REAL_CODE: u16 = 0x9b;
/// After INIT: a present, accessed, read/write data segment.
pub const REAL_DATA: u16 = 0x93;
/// After INIT: a present LDT.
pub const REAL_LDT: u16 = 0x82;
/// After INIT: a present, busy 32-bit TSS.
pub const REAL_TSS: u16 = 0x8b;
/// CR0 after INIT: CD, NW, ET.
pub const REAL_CR0: u64 = 0x6000_0010;

/// V_INTR_MASKING (INT_CTL bit 24): the guest's RFLAGS.IF masks only virtual interrupts;
/// physical ones follow the host's IF at VMRUN.
pub const V_INTR_MASKING: u64 = 1 << 24;
/// EFER.SVME: must be set in the guest's EFER in the VMCB.
pub const EFER_SVME: u64 = 1 << 12;

/// Exit codes (APM appendix C).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitCode(pub u64);

impl ExitCode {
    /// A write to CR0 (MOV, LMSW, CLTS).
    pub const CR0_WRITE: Self = Self(0x10);
    /// A write to CR4.
    pub const CR4_WRITE: Self = Self(0x14);
    /// Exception `v` intercepted (0x40 + vector).
    pub const fn exception(v: u8) -> Self {
        Self(0x40 + v as u64)
    }
    /// The exception vector of an exception exit.
    pub fn exception_vector(self) -> Option<u8> {
        (0x40..0x60)
            .contains(&self.0)
            .then_some((self.0 - 0x40) as u8)
    }
    /// Physical interrupt.
    pub const INTR: Self = Self(0x60);
    /// NMI.
    pub const NMI: Self = Self(0x61);
    /// SMI.
    pub const SMI: Self = Self(0x62);
    /// INIT.
    pub const INIT: Self = Self(0x63);
    /// Virtual interrupt: the guest can take an interrupt (V_IRQ requested).
    pub const VINTR: Self = Self(0x64);
    /// IRET.
    pub const IRET: Self = Self(0x74);
    /// RDPMC.
    pub const RDPMC: Self = Self(0x6f);
    /// CPUID.
    pub const CPUID: Self = Self(0x72);
    /// INVD.
    pub const INVD: Self = Self(0x76);
    /// HLT.
    pub const HLT: Self = Self(0x78);
    /// INVLPGA.
    pub const INVLPGA: Self = Self(0x7a);
    /// IN/OUT.
    pub const IOIO: Self = Self(0x7b);
    /// RDMSR (EXITINFO1 = 0) or WRMSR (1).
    pub const MSR: Self = Self(0x7c);
    /// Shutdown.
    pub const SHUTDOWN: Self = Self(0x7f);
    /// VMRUN.
    pub const VMRUN: Self = Self(0x80);
    /// VMMCALL.
    pub const VMMCALL: Self = Self(0x81);
    /// VMLOAD.
    pub const VMLOAD: Self = Self(0x82);
    /// VMSAVE.
    pub const VMSAVE: Self = Self(0x83);
    /// STGI.
    pub const STGI: Self = Self(0x84);
    /// CLGI.
    pub const CLGI: Self = Self(0x85);
    /// SKINIT.
    pub const SKINIT: Self = Self(0x86);
    /// RDTSCP.
    pub const RDTSCP: Self = Self(0x87);
    /// WBINVD.
    pub const WBINVD: Self = Self(0x89);
    /// MONITOR.
    pub const MONITOR: Self = Self(0x8a);
    /// MWAIT.
    pub const MWAIT: Self = Self(0x8b);
    /// MWAIT when armed.
    pub const MWAIT_COND: Self = Self(0x8c);
    /// XSETBV.
    pub const XSETBV: Self = Self(0x8d);
    /// Nested page fault.
    pub const NPF: Self = Self(0x400);
    /// VMRUN found the VMCB's state invalid.
    pub const INVALID: Self = Self(u64::MAX);

    /// A name for logs.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x00..=0x0f => "CR read",
            0x10..=0x1f => "CR write",
            0x20..=0x3f => "DR access",
            0x40..=0x5f => "exception",
            0x60 => "INTR",
            0x61 => "NMI",
            0x62 => "SMI",
            0x63 => "INIT",
            0x64 => "VINTR",
            0x72 => "CPUID",
            0x78 => "HLT",
            0x7b => "IOIO",
            0x7c => "MSR",
            0x7d => "task switch",
            0x7f => "shutdown",
            0x81 => "VMMCALL",
            0x400 => "nested page fault",
            u64::MAX => "VMEXIT_INVALID",
            _ => "unhandled SVM exit",
        }
    }
}

/// EXITINFO1 of an IOIO exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoInfo {
    /// Port number.
    pub port: u16,
    /// Access size in bytes: 1, 2 or 4.
    pub size: u8,
    /// IN / INS.
    pub input: bool,
    /// INS / OUTS.
    pub string: bool,
    /// REP prefix.
    pub rep: bool,
    /// Address size of a string form in bytes: 2, 4 or 8 (bits 9:7).
    pub addr_size: Option<u8>,
}

impl IoInfo {
    /// Decodes EXITINFO1 (bit 0 IN, 2 string, 3 REP, 6:4 one-hot size, 9:7 one-hot
    /// address size, 31:16 port); `None` when the size is not one of the three.
    pub fn decode(info1: u64) -> Option<Self> {
        let size = match (info1 >> 4) & 7 {
            1 => 1,
            2 => 2,
            4 => 4,
            _ => return None,
        };
        let addr_size = match (info1 >> 7) & 7 {
            1 => Some(2),
            2 => Some(4),
            4 => Some(8),
            _ => None,
        };
        Some(Self {
            port: (info1 >> 16) as u16,
            size,
            input: info1 & 1 != 0,
            string: info1 & (1 << 2) != 0,
            rep: info1 & (1 << 3) != 0,
            addr_size,
        })
    }
}

/// EXITINFO1 of a nested page fault (a #PF error code plus two SVM bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NpfInfo {
    /// The page was present (a permission fault).
    pub present: bool,
    /// A write.
    pub write: bool,
    /// An instruction fetch.
    pub fetch: bool,
    /// Reserved bits set in a nested entry.
    pub reserved: bool,
    /// The fault happened while walking the guest's own page tables.
    pub in_guest_walk: bool,
}

impl NpfInfo {
    /// Decodes EXITINFO1.
    pub fn decode(info1: u64) -> Self {
        Self {
            present: info1 & 1 != 0,
            write: info1 & (1 << 1) != 0,
            reserved: info1 & (1 << 3) != 0,
            fetch: info1 & (1 << 4) != 0,
            in_guest_walk: info1 & (1 << 33) != 0,
        }
    }

    /// A data access by an instruction to the final guest-physical address: the kind an
    /// MMIO emulation decodes.
    pub fn is_data_access(&self) -> bool {
        !self.fetch && !self.in_guest_walk && !self.reserved
    }
}

/// EVENTINJ / EXITINTINFO encodings.
pub mod event {
    /// Valid.
    pub const VALID: u64 = 1 << 31;
    /// An error code is pushed (bits 63:32).
    pub const ERROR_VALID: u64 = 1 << 11;
    /// Type 3: exception.
    pub const EXCEPTION: u64 = 3 << 8;
    /// Type 2: NMI.
    pub const NMI: u64 = 2 << 8;

    /// External interrupt (type 0) `v`.
    pub fn interrupt(v: u8) -> u64 {
        VALID | u64::from(v)
    }

    /// An NMI (vector 2).
    pub fn nmi() -> u64 {
        VALID | NMI | 2
    }

    /// A hardware exception `v`, with `code` when it has one.
    pub fn exception(v: u8, code: Option<u32>) -> u64 {
        let mut e = VALID | EXCEPTION | u64::from(v);
        if let Some(c) = code {
            e |= ERROR_VALID | u64::from(c) << 32;
        }
        e
    }
}

/// A VMX-style access-rights value (the entry contract's, [`crate::entry`]) as the VMCB's
/// 12-bit segment attributes: type, S, DPL, P in bits 7:0; AVL, L, D/B, G in 11:8. An
/// unusable segment (bit 16) is 0 (not present).
pub fn attributes(access_rights: u32) -> u16 {
    if access_rights & (1 << 16) != 0 {
        return 0;
    }
    ((access_rights & 0xff) | ((access_rights >> 4) & 0xf00)) as u16
}

/// The length of an instruction whose opcode bytes are `opcode`, from its bytes `bytes`
/// (legacy prefixes, then a REX prefix in 64-bit code, then the opcode): the next RIP,
/// which the CPU does not report without NRIP-save. `None` when `bytes` do not hold that
/// instruction.
pub fn insn_len(bytes: &[u8], opcode: &[u8], long_mode: bool) -> Option<u8> {
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 => i += 1,
            0x40..=0x4f if long_mode => i += 1,
            _ => break,
        }
        if i >= crate::insn::MAX_INSN_LEN {
            return None;
        }
    }
    let end = i + opcode.len();
    // Byte by byte: a slice comparison is a call to `memcmp` (about 110 instructions on
    // every hypercall).
    let same = bytes
        .get(i..end)
        .is_some_and(|b| b.iter().zip(opcode).all(|(x, y)| x == y));
    (end <= crate::insn::MAX_INSN_LEN && same).then_some(end as u8)
}

/// A control-register write a CR-write intercept caught, decoded from its bytes (no decode
/// assists): which register holds the value, and the instruction's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrWrite {
    /// MOV CRn, r64 (or r32 outside 64-bit mode): the control register and the register
    /// number.
    Mov { cr: u8, gpr: u8, len: u8 },
    /// LMSW r16: the register number (the low 4 bits of its value: PE, MP, EM, TS).
    Lmsw { gpr: u8, len: u8 },
    /// CLTS.
    Clts { len: u8 },
}

impl CrWrite {
    /// Decodes `bytes` (at RIP); `None` for anything else (LMSW with a memory operand
    /// among them).
    pub fn decode(bytes: &[u8], long_mode: bool) -> Option<Self> {
        let mut i = 0;
        let mut rex = 0u8;
        while let Some(&b) = bytes.get(i) {
            match b {
                0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 => {}
                0x40..=0x4f if long_mode => rex = b,
                _ => break,
            }
            i += 1;
        }
        let rest = bytes.get(i..)?;
        let modrm = |m: u8| ((m >> 3) & 7, m & 7 | (rex & 1) << 3, m >> 6);
        let out = match rest {
            [0x0f, 0x06, ..] => Self::Clts { len: (i + 2) as u8 },
            [0x0f, 0x22, m, ..] => {
                let (reg, rm, _) = modrm(*m);
                // MOV to CR: the mod field is ignored (always a register); REX.R adds 8.
                Self::Mov {
                    cr: reg | (rex & 4) << 1,
                    gpr: rm,
                    len: (i + 3) as u8,
                }
            }
            [0x0f, 0x01, m, ..] if (m >> 3) & 7 == 6 && m >> 6 == 3 => Self::Lmsw {
                gpr: modrm(*m).1,
                len: (i + 3) as u8,
            },
            _ => return None,
        };
        Some(out)
    }
}

/// CR4 bits a guest may set on this CPU: the architectural ones CPUID shows (`leaf1_ecx`,
/// `leaf7_ebx`, `leaf7_ecx` are the host's answers; VMXE and SMXE never, the guest's CPUID
/// hides them).
pub fn cr4_allowed(leaf1_ecx: u32, leaf7_ebx: u32, leaf7_ecx: u32) -> u64 {
    // VME, PVI, TSD, DE, PSE, PAE, MCE, PGE, PCE, OSFXSR, OSXMMEXCPT.
    let mut m: u64 = 0x7ff;
    let has = |r: u32, b: u32| r & (1 << b) != 0;
    for (present, bit) in [
        (has(leaf7_ecx, 2), 11),  // UMIP
        (has(leaf7_ecx, 16), 12), // LA57
        (has(leaf7_ebx, 0), 16),  // FSGSBASE
        (has(leaf1_ecx, 17), 17), // PCIDE
        (has(leaf1_ecx, 26), 18), // OSXSAVE
        (has(leaf7_ebx, 7), 20),  // SMEP
        (has(leaf7_ebx, 20), 21), // SMAP
        (has(leaf7_ecx, 3), 22),  // PKE
        (has(leaf7_ecx, 7), 23),  // CET
    ] {
        if present {
            m |= 1 << bit;
        }
    }
    m
}

/// Whether a guest may write `new` to CR4 over `old`, with `allowed` from
/// [`cr4_allowed`], in long mode (`long`: EFER.LMA, compatibility mode included) and with
/// CR3 `cr3`: no bit outside `allowed`, PAE kept and LA57 unchanged in long mode, PCIDE
/// set only with CR3[11:0] = 0 in long mode. Otherwise #GP (QEMU TCG answers a reserved
/// CR4 bit with VMEXIT_INVALID instead, so the backend checks first).
pub fn cr4_write_ok(old: u64, new: u64, allowed: u64, long: bool, cr3: u64) -> bool {
    let (pae, la57, pcide) = (1 << 5, 1 << 12, 1 << 17);
    let pcid_on = new & pcide != 0 && old & pcide == 0;
    new & !allowed == 0
        && !(long && (new & pae == 0 || (old ^ new) & la57 != 0))
        && !(pcid_on && (!long || cr3 & 0xfff != 0))
}

/// Opcode bytes of the instructions whose exits move RIP.
pub mod opcode {
    /// CPUID.
    pub const CPUID: &[u8] = &[0x0f, 0xa2];
    /// HLT.
    pub const HLT: &[u8] = &[0xf4];
    /// RDMSR.
    pub const RDMSR: &[u8] = &[0x0f, 0x32];
    /// WRMSR.
    pub const WRMSR: &[u8] = &[0x0f, 0x30];
    /// VMMCALL.
    pub const VMMCALL: &[u8] = &[0x0f, 0x01, 0xd9];
    /// VMCALL (Intel's; #UD on AMD, taken as the hypercall).
    pub const VMCALL: &[u8] = &[0x0f, 0x01, 0xc1];
    /// XSETBV.
    pub const XSETBV: &[u8] = &[0x0f, 0x01, 0xd1];
    /// INVD.
    pub const INVD: &[u8] = &[0x0f, 0x08];
    /// WBINVD.
    pub const WBINVD: &[u8] = &[0x0f, 0x09];
}

/// The MSR permission map: 8 KiB, two bits per MSR (read, then write) for MSRs
/// 0..0x1FFF, 0xC000_0000..0xC000_1FFF and 0xC001_0000..0xC001_1FFF; a set bit intercepts.
/// MSRs outside the ranges are always intercepted.
#[repr(C, align(4096))]
pub struct MsrPermissionMap(pub [u8; 8192]);

impl MsrPermissionMap {
    /// [`crate::msr`]'s policy: everything intercepted except its passthrough MSRs (both
    /// directions; writes of the [`ADDRESS_MSRS`] still exit) and its read-only ones
    /// (reads).
    pub fn new() -> Self {
        let mut m = Self([0xff; 8192]);
        for &r in crate::msr::PASSTHROUGH
            .iter()
            .chain(crate::msr::READ_ONLY_PASSTHROUGH)
        {
            m.set(r, false, false);
        }
        for &r in crate::msr::PASSTHROUGH {
            let address = ADDRESS_MSRS.iter().any(|&(a, _)| a == r);
            m.set(r, true, address);
        }
        m
    }

    fn position(msr: u32, write: bool) -> Option<(usize, u8)> {
        let (base, idx) = match msr {
            0..=0x1fff => (0, msr),
            0xc000_0000..=0xc000_1fff => (0x800, msr - 0xc000_0000),
            0xc001_0000..=0xc001_1fff => (0x1000, msr - 0xc001_0000),
            _ => return None,
        };
        let bit = idx * 2 + u32::from(write);
        Some((base + (bit / 8) as usize, (bit % 8) as u8))
    }

    /// Intercepts an access to `msr` (`intercept`) or not.
    pub fn set(&mut self, msr: u32, write: bool, intercept: bool) {
        if let Some((byte, bit)) = Self::position(msr, write) {
            if intercept {
                self.0[byte] |= 1 << bit;
            } else {
                self.0[byte] &= !(1 << bit);
            }
        }
    }

    /// Whether an access to `msr` is intercepted.
    pub fn intercepts(&self, msr: u32, write: bool) -> bool {
        Self::position(msr, write).is_none_or(|(byte, bit)| self.0[byte] & (1 << bit) != 0)
    }
}

impl Default for MsrPermissionMap {
    fn default() -> Self {
        Self::new()
    }
}

/// MSRs holding an address that the VMCB keeps (VMLOAD/VMSAVE), with their save-area
/// offsets: a write of a non-canonical value is #GP on Intel CPUs (and under VMX), but an
/// AMD CPU (and QEMU) takes it, so under SVM their writes exit and are checked.
pub const ADDRESS_MSRS: [(u32, usize); 5] = [
    (crate::msr::nr::IA32_SYSENTER_ESP, save::SYSENTER_ESP),
    (crate::msr::nr::IA32_SYSENTER_EIP, save::SYSENTER_EIP),
    (crate::msr::nr::IA32_LSTAR, save::LSTAR),
    (crate::msr::nr::IA32_CSTAR, save::CSTAR),
    (crate::msr::nr::IA32_KERNEL_GS_BASE, save::KERNEL_GS_BASE),
];

/// Whether `v` is a canonical 48-bit address.
pub fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

/// The I/O permission map: 12 KiB, one bit per port (and the bits past 0xFFFF that a
/// multi-byte access at the top reaches); every bit set: every port intercepted.
#[repr(C, align(4096))]
pub struct IoPermissionMap(pub [u8; 12288]);

impl IoPermissionMap {
    /// Every port intercepted (the VM's devices are all emulated).
    pub fn new() -> Self {
        Self([0xff; 12288])
    }
}

impl Default for IoPermissionMap {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
