//! Exit reasons, exit qualifications and VM-instruction errors (Intel SDM Vol. 3C,
//! appendix C "VMX Basic Exit Reasons", "Exit Qualification for ...", and "VM Instruction
//! Error Numbers"). Pure decoding, unit-tested on the host.

use core::fmt;

/// Exit reason bit 31: the VM entry failed (the guest never ran).
pub const ENTRY_FAILURE: u32 = 1 << 31;

/// A basic exit reason (bits 15:0 of the exit-reason field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitReason(pub u16);

macro_rules! reasons {
    ($($name:ident = $n:literal, $text:literal;)*) => {
        impl ExitReason {
            $(
                #[doc = $text]
                pub const $name: ExitReason = ExitReason($n);
            )*

            /// The reason's name in the SDM, or `None` for a number it does not define.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($n => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    EXCEPTION_NMI = 0, "exception or NMI";
    EXTERNAL_INTERRUPT = 1, "external interrupt";
    TRIPLE_FAULT = 2, "triple fault";
    INIT = 3, "INIT signal";
    SIPI = 4, "start-up IPI";
    IO_SMI = 5, "I/O SMI";
    OTHER_SMI = 6, "other SMI";
    INTERRUPT_WINDOW = 7, "interrupt window";
    NMI_WINDOW = 8, "NMI window";
    TASK_SWITCH = 9, "task switch";
    CPUID = 10, "CPUID";
    GETSEC = 11, "GETSEC";
    HLT = 12, "HLT";
    INVD = 13, "INVD";
    INVLPG = 14, "INVLPG";
    RDPMC = 15, "RDPMC";
    RDTSC = 16, "RDTSC";
    RSM = 17, "RSM";
    VMCALL = 18, "VMCALL";
    VMCLEAR = 19, "VMCLEAR";
    VMLAUNCH = 20, "VMLAUNCH";
    VMPTRLD = 21, "VMPTRLD";
    VMPTRST = 22, "VMPTRST";
    VMREAD = 23, "VMREAD";
    VMRESUME = 24, "VMRESUME";
    VMWRITE = 25, "VMWRITE";
    VMXOFF = 26, "VMXOFF";
    VMXON = 27, "VMXON";
    CR_ACCESS = 28, "control-register access";
    DR_ACCESS = 29, "MOV DR";
    IO_INSTRUCTION = 30, "I/O instruction";
    RDMSR = 31, "RDMSR";
    WRMSR = 32, "WRMSR";
    INVALID_GUEST_STATE = 33, "VM-entry failure due to invalid guest state";
    MSR_LOADING = 34, "VM-entry failure due to MSR loading";
    MWAIT = 36, "MWAIT";
    MONITOR_TRAP_FLAG = 37, "monitor trap flag";
    MONITOR = 39, "MONITOR";
    PAUSE = 40, "PAUSE";
    MACHINE_CHECK = 41, "VM-entry failure due to machine-check event";
    TPR_BELOW_THRESHOLD = 43, "TPR below threshold";
    APIC_ACCESS = 44, "APIC access";
    VIRTUALIZED_EOI = 45, "virtualized EOI";
    GDTR_IDTR = 46, "access to GDTR or IDTR";
    LDTR_TR = 47, "access to LDTR or TR";
    EPT_VIOLATION = 48, "EPT violation";
    EPT_MISCONFIG = 49, "EPT misconfiguration";
    INVEPT = 50, "INVEPT";
    RDTSCP = 51, "RDTSCP";
    PREEMPTION_TIMER = 52, "VMX-preemption timer expired";
    INVVPID = 53, "INVVPID";
    WBINVD = 54, "WBINVD or WBNOINVD";
    XSETBV = 55, "XSETBV";
    APIC_WRITE = 56, "APIC write";
    RDRAND = 57, "RDRAND";
    INVPCID = 58, "INVPCID";
    VMFUNC = 59, "VMFUNC";
    ENCLS = 60, "ENCLS";
    RDSEED = 61, "RDSEED";
    PML_FULL = 62, "page-modification log full";
    XSAVES = 63, "XSAVES";
    XRSTORS = 64, "XRSTORS";
    SPP = 66, "SPP-related event";
    UMWAIT = 67, "UMWAIT";
    TPAUSE = 68, "TPAUSE";
    LOADIWKEY = 69, "LOADIWKEY";
}

impl ExitReason {
    /// The basic reason of an exit-reason field value.
    pub fn of(field: u32) -> Self {
        ExitReason(field as u16)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} (exit reason {})", self.0),
            None => write!(f, "exit reason {}", self.0),
        }
    }
}

/// The qualification of an I/O-instruction exit (IN, OUT, INS, OUTS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoQual {
    /// Port number.
    pub port: u16,
    /// Access size in bytes: 1, 2 or 4.
    pub size: u8,
    /// IN / INS (the guest reads the port).
    pub input: bool,
    /// INS / OUTS.
    pub string: bool,
    /// REP prefix (string forms only).
    pub rep: bool,
}

impl IoQual {
    /// Decodes the qualification; `None` for a size encoding the SDM does not define.
    pub fn decode(q: u64) -> Option<Self> {
        let size = match q & 7 {
            0 => 1,
            1 => 2,
            3 => 4,
            _ => return None,
        };
        Some(Self {
            port: (q >> 16) as u16,
            size,
            input: q & (1 << 3) != 0,
            string: q & (1 << 4) != 0,
            rep: q & (1 << 5) != 0,
        })
    }
}

/// The address size of an INS/OUTS (VM-exit instruction information bits 9:7), in bytes:
/// 2, 4 or 8; `None` for an undefined encoding.
pub fn string_address_size(instruction_info: u32) -> Option<u8> {
    match (instruction_info >> 7) & 7 {
        0 => Some(2),
        1 => Some(4),
        2 => Some(8),
        _ => None,
    }
}

/// One element of a string I/O instruction done: the new index register (RSI for OUTS,
/// RDI for INS), the new RCX, and whether the instruction is complete (RIP moves past it;
/// otherwise the guest executes it again for the next element). `addr_size` is 2, 4 or 8
/// bytes: the registers count in that width (a 16-bit count keeps the upper bits, a 32-bit
/// one clears them, as the CPU does). `df` is RFLAGS.DF (count down).
pub fn string_step(
    index: u64,
    rcx: u64,
    size: u8,
    df: bool,
    rep: bool,
    addr_size: u8,
) -> (u64, u64, bool) {
    let step = |v: u64, delta: u64, down: bool| -> u64 {
        let n = if down {
            v.wrapping_sub(delta)
        } else {
            v.wrapping_add(delta)
        };
        match addr_size {
            2 => (v & !0xffff) | (n & 0xffff),
            4 => n & 0xffff_ffff,
            _ => n,
        }
    };
    let index = step(index, u64::from(size), df);
    if !rep {
        return (index, rcx, true);
    }
    let rcx = step(rcx, 1, true);
    let left = match addr_size {
        2 => rcx & 0xffff,
        4 => rcx & 0xffff_ffff,
        _ => rcx,
    };
    (index, rcx, left == 0)
}

/// The access of a second-stage fault (EPT violation, nested page fault) as the VMM's
/// `VmExit::NestedPageFault` gives it: an instruction fetch, else a write, else a read.
pub fn fault_access(fetch: bool, write: bool) -> axaddrspace::MappingFlags {
    use axaddrspace::MappingFlags;
    if fetch {
        MappingFlags::EXECUTE
    } else if write {
        MappingFlags::WRITE
    } else {
        MappingFlags::READ
    }
}

/// Whether a REP string instruction's count (RCX in `addr_size` bytes) is already 0: the
/// instruction does nothing.
pub fn string_count_zero(rcx: u64, addr_size: u8) -> bool {
    match addr_size {
        2 => rcx & 0xffff == 0,
        4 => rcx & 0xffff_ffff == 0,
        _ => rcx == 0,
    }
}

/// The qualification of a control-register access exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrAccess {
    /// MOV to CR`cr` from general-purpose register `gpr`.
    Write {
        /// Control register (0, 3, 4, 8).
        cr: u8,
        /// Source register (0 = RAX ... 15 = R15).
        gpr: u8,
    },
    /// MOV from CR`cr` to general-purpose register `gpr`.
    Read {
        /// Control register (3, 8).
        cr: u8,
        /// Destination register.
        gpr: u8,
    },
    /// CLTS.
    Clts,
    /// LMSW with the 16-bit source value.
    Lmsw(u16),
}

impl CrAccess {
    /// Decodes the qualification.
    pub fn decode(q: u64) -> Self {
        let cr = (q & 0xf) as u8;
        let gpr = ((q >> 8) & 0xf) as u8;
        match (q >> 4) & 3 {
            0 => CrAccess::Write { cr, gpr },
            1 => CrAccess::Read { cr, gpr },
            2 => CrAccess::Clts,
            _ => CrAccess::Lmsw((q >> 16) as u16),
        }
    }
}

/// The qualification of an EPT violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptViolation {
    /// The access was a data read.
    pub read: bool,
    /// The access was a data write.
    pub write: bool,
    /// The access was an instruction fetch.
    pub fetch: bool,
    /// The guest-physical address was readable / writable / executable (bits 3..5).
    pub allowed: u8,
    /// The guest linear address field is valid.
    pub linear_valid: bool,
    /// With `linear_valid`: the access was to the translated address (not a guest
    /// page-table walk).
    pub translated: bool,
}

impl EptViolation {
    /// Decodes the qualification.
    pub fn decode(q: u64) -> Self {
        let linear_valid = q & (1 << 7) != 0;
        Self {
            read: q & 1 != 0,
            write: q & 2 != 0,
            fetch: q & 4 != 0,
            allowed: ((q >> 3) & 7) as u8,
            linear_valid,
            translated: linear_valid && q & (1 << 8) != 0,
        }
    }

    /// Whether the access may be emulated as MMIO: a data access by an instruction, to the
    /// address it computed (not an instruction fetch, not the CPU walking the guest's page
    /// tables).
    pub fn is_data_access(&self) -> bool {
        !self.fetch && (self.read || self.write) && (!self.linear_valid || self.translated)
    }
}

/// The VM-instruction error number's meaning (the VM-instruction error field after a
/// VMfailValid), or `None` for an undefined number.
pub fn vm_instruction_error(n: u32) -> Option<&'static str> {
    Some(match n {
        1 => "VMCALL executed in VMX root operation",
        2 => "VMCLEAR with invalid physical address",
        3 => "VMCLEAR with VMXON pointer",
        4 => "VMLAUNCH with non-clear VMCS",
        5 => "VMRESUME with non-launched VMCS",
        6 => "VMRESUME after VMXOFF",
        7 => "VM entry with invalid control field(s)",
        8 => "VM entry with invalid host-state field(s)",
        9 => "VMPTRLD with invalid physical address",
        10 => "VMPTRLD with VMXON pointer",
        11 => "VMPTRLD with incorrect VMCS revision identifier",
        12 => "VMREAD/VMWRITE from/to unsupported VMCS component",
        13 => "VMWRITE to read-only VMCS component",
        15 => "VMXON executed in VMX root operation",
        16 => "VM entry with invalid executive-VMCS pointer",
        17 => "VM entry with non-launched executive VMCS",
        18 => "VM entry with executive-VMCS pointer not VMXON pointer",
        19 => "VMCALL with non-clear VMCS",
        20 => "VMCALL with invalid VM-exit control fields",
        22 => "VMCALL with incorrect MSEG revision identifier",
        23 => "VMXOFF under dual-monitor treatment of SMIs and SMM",
        24 => "VMCALL with invalid SMM-monitor features",
        25 => "VM entry with invalid VM-execution control fields in executive VMCS",
        26 => "VM entry with events blocked by MOV SS",
        28 => "invalid operand to INVEPT/INVVPID",
        _ => return None,
    })
}

/// What the exit qualification of a failed VM entry (exit reason bit 31 with reason 33)
/// says.
pub fn entry_failure_detail(reason: ExitReason, qualification: u64) -> &'static str {
    match (reason, qualification) {
        (ExitReason::INVALID_GUEST_STATE, 2) => "loading a PDPTE",
        (ExitReason::INVALID_GUEST_STATE, 3) => "NMI injection",
        (ExitReason::INVALID_GUEST_STATE, 4) => "the VMCS link pointer",
        (ExitReason::INVALID_GUEST_STATE, _) => "a guest-state field",
        (ExitReason::MSR_LOADING, _) => "an MSR in the VM-entry MSR-load area",
        (ExitReason::MACHINE_CHECK, _) => "a machine check during entry",
        _ => "an unknown check",
    }
}

/// Event types of the VM-entry interruption-information field and of the exit
/// interruption information.
pub mod event {
    /// External interrupt.
    pub const EXTERNAL: u32 = 0;
    /// Non-maskable interrupt.
    pub const NMI: u32 = 2;
    /// Hardware exception (#DE, #UD, #GP, #PF, ...).
    pub const HARDWARE_EXCEPTION: u32 = 3;
    /// Software interrupt (`INT n`).
    pub const SOFTWARE_INTERRUPT: u32 = 4;
    /// Privileged software exception (`INT1`).
    pub const PRIVILEGED_SOFTWARE_EXCEPTION: u32 = 5;
    /// Software exception (`INT3`, `INTO`).
    pub const SOFTWARE_EXCEPTION: u32 = 6;
    /// Bit 11: the event pushes an error code.
    pub const DELIVER_ERROR_CODE: u32 = 1 << 11;
    /// Bit 31: the field is valid.
    pub const VALID: u32 = 1 << 31;

    /// The interruption-information value injecting hardware exception `vector`, with an
    /// error code when the exception has one.
    pub fn exception(vector: u8, has_error_code: bool) -> u32 {
        let mut v = VALID | HARDWARE_EXCEPTION << 8 | u32::from(vector);
        if has_error_code {
            v |= DELIVER_ERROR_CODE;
        }
        v
    }

    /// The vector of a valid exit interruption information, `None` when not valid.
    pub fn vector(info: u32) -> Option<u8> {
        (info & VALID != 0).then_some(info as u8)
    }

    /// The interruption-information value injecting external interrupt `vector`.
    pub fn external(vector: u8) -> u32 {
        VALID | EXTERNAL << 8 | u32::from(vector)
    }

    /// The interruption-information value injecting an NMI (vector 2).
    pub fn nmi() -> u32 {
        VALID | NMI << 8 | 2
    }

    /// The event type (bits 10:8) of an interruption-information value.
    pub fn kind(info: u32) -> u32 {
        (info >> 8) & 7
    }

    /// What the next VM entry must deliver again after an exit whose IDT-vectoring
    /// information is `idt_vectoring` (SDM Vol. 3C, 28.2.4 and 27.6.1.1), or `None` when
    /// no delivery was interrupted.
    pub fn reinjection(idt_vectoring: u32) -> Option<Reinjection> {
        if idt_vectoring & VALID == 0 {
            return None;
        }
        // Bits 30:12 (bit 12 is "NMI unblocking due to IRET" in the exit fields) are
        // reserved in the entry field.
        let info = idt_vectoring & !0x7fff_f000;
        let kind = kind(info);
        Some(Reinjection {
            info,
            error_code: info & DELIVER_ERROR_CODE != 0,
            // Software interrupts and exceptions push the address after the instruction:
            // the entry needs its length.
            instruction_len: matches!(
                kind,
                SOFTWARE_INTERRUPT | PRIVILEGED_SOFTWARE_EXCEPTION | SOFTWARE_EXCEPTION
            ),
        })
    }

    /// An event to deliver again ([`reinjection`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Reinjection {
        /// The VM-entry interruption-information value.
        pub info: u32,
        /// The IDT-vectoring error code goes to the VM-entry exception error code.
        pub error_code: bool,
        /// The VM-exit instruction length goes to the VM-entry instruction length.
        pub instruction_len: bool,
    }
}

/// Guest interruptibility-state bits (SDM Vol. 3C, 25.4.2).
pub mod interruptibility {
    /// Blocking by STI: the instruction after STI.
    pub const STI: u32 = 1 << 0;
    /// Blocking by MOV SS / POP SS.
    pub const MOV_SS: u32 = 1 << 1;
    /// Blocking by SMI.
    pub const SMI: u32 = 1 << 2;
    /// Blocking by NMI: an NMI handler runs (until its IRET).
    pub const NMI: u32 = 1 << 3;
}

/// What the guest can take at the next VM entry (SDM Vol. 3C, 27.2.1.3 and 27.3.1.5),
/// for [`crate::pc::VirtualPc::next_injection`]: an external interrupt only with RFLAGS.IF
/// set, no STI or MOV-SS blocking and no other event going in with the entry (`injecting`:
/// an interrupted delivery or an exception the exit's handling injected); an NMI only
/// without NMI, STI or MOV-SS blocking and no other event. VM entry fails on the
/// combinations left out.
pub fn ready(interrupts_enabled: bool, interruptibility: u32, injecting: bool) -> crate::pc::Ready {
    use self::interruptibility as ib;
    let blocking = interruptibility;
    let open = !injecting && blocking & (ib::STI | ib::MOV_SS) == 0;
    crate::pc::Ready {
        irq: open && interrupts_enabled,
        nmi: open && blocking & ib::NMI == 0,
    }
}

/// Exception vectors the backend injects.
pub mod vector {
    /// Divide error.
    pub const DE: u8 = 0;
    /// Debug (the single-step trap after an instruction the vCPU emulates).
    pub const DB: u8 = 1;
    /// Invalid opcode.
    pub const UD: u8 = 6;
    /// Stack-segment fault (pushes an error code).
    pub const SS: u8 = 12;
    /// General protection (pushes an error code).
    pub const GP: u8 = 13;
    /// Page fault (pushes an error code; CR2 holds the address).
    pub const PF: u8 = 14;
}

#[cfg(test)]
mod tests;
