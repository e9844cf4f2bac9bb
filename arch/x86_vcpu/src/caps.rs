//! The CPU's VMX capabilities (the IA32_VMX_* MSRs) and the VMCS controls computed from
//! them.
//!
//! Every control field (pin-based, primary and secondary processor-based, VM-exit,
//! VM-entry) is computed from its capability MSR: the low 32 bits are the *allowed
//! 0-settings* (a 1 there means the control must be 1), the high 32 bits the *allowed
//! 1-settings* (a 0 there means the control must be 0). When IA32_VMX_BASIC bit 55 is set
//! the TRUE_* MSRs are used for the first four fields: they may allow some "default1"
//! controls (CR3-load and CR3-store exiting, for one) to be 0. Nothing is hard-coded: a
//! control the hypervisor needs and the CPU lacks is an error naming it, a control it can
//! do without is used when present, and a control the CPU forces on is kept (the exit
//! handler copes with every such exit).

use core::fmt;

/// The MSRs read here (Intel SDM Vol. 4 and Vol. 3D, appendix A).
pub mod msr {
    /// IA32_FEATURE_CONTROL: bit 0 lock, bit 2 VMXON outside SMX.
    pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
    /// IA32_VMX_BASIC: VMCS revision, region size, memory type, TRUE-controls flag.
    pub const IA32_VMX_BASIC: u32 = 0x480;
    /// IA32_VMX_PINBASED_CTLS.
    pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
    /// IA32_VMX_PROCBASED_CTLS.
    pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
    /// IA32_VMX_EXIT_CTLS.
    pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
    /// IA32_VMX_ENTRY_CTLS.
    pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
    /// IA32_VMX_MISC: preemption-timer rate, activity states, CR3 targets.
    pub const IA32_VMX_MISC: u32 = 0x485;
    /// IA32_VMX_CR0_FIXED0: CR0 bits that must be 1 in VMX operation.
    pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
    /// IA32_VMX_CR0_FIXED1: CR0 bits that may be 1 in VMX operation.
    pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
    /// IA32_VMX_CR4_FIXED0: CR4 bits that must be 1 in VMX operation.
    pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
    /// IA32_VMX_CR4_FIXED1: CR4 bits that may be 1 in VMX operation.
    pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
    /// IA32_VMX_PROCBASED_CTLS2 (secondary controls).
    pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
    /// IA32_VMX_EPT_VPID_CAP.
    pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
    /// IA32_VMX_TRUE_PINBASED_CTLS.
    pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
    /// IA32_VMX_TRUE_PROCBASED_CTLS.
    pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
    /// IA32_VMX_TRUE_EXIT_CTLS.
    pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
    /// IA32_VMX_TRUE_ENTRY_CTLS.
    pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
}

/// IA32_VMX_BASIC bit 55: the TRUE_* capability MSRs exist.
pub const BASIC_TRUE_CTLS: u64 = 1 << 55;
/// IA32_VMX_BASIC bit 54: INS/OUTS exits report the VM-exit instruction information.
pub const BASIC_INS_OUTS_INFO: u64 = 1 << 54;
/// IA32_VMX_BASIC bit 48: VMX structures must lie below 4 GiB.
pub const BASIC_32BIT_ADDRESSES: u64 = 1 << 48;

/// A VMCS control field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlField {
    /// Pin-based VM-execution controls.
    PinBased,
    /// Primary processor-based VM-execution controls.
    PrimaryProcBased,
    /// Secondary processor-based VM-execution controls.
    SecondaryProcBased,
    /// VM-exit controls.
    Exit,
    /// VM-entry controls.
    Entry,
}

impl fmt::Display for ControlField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ControlField::PinBased => "pin-based",
            ControlField::PrimaryProcBased => "primary processor-based",
            ControlField::SecondaryProcBased => "secondary processor-based",
            ControlField::Exit => "VM-exit",
            ControlField::Entry => "VM-entry",
        })
    }
}

/// One control bit, with its name from the SDM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// The field it belongs to.
    pub field: ControlField,
    /// Its bit in the field.
    pub bit: u32,
    /// Its name.
    pub name: &'static str,
}

impl Control {
    const fn new(field: ControlField, bit: u32, name: &'static str) -> Self {
        Self { field, bit, name }
    }

    /// The control's mask in its field.
    pub const fn mask(self) -> u32 {
        1 << self.bit
    }
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} control \"{}\" (bit {})",
            self.field, self.name, self.bit
        )
    }
}

/// The controls the hypervisor uses, by name (Intel SDM Vol. 3C, "VM-Execution Control
/// Fields", "VM-Exit Control Fields", "VM-Entry Control Fields").
pub mod ctl {
    use super::{Control, ControlField::*};

    /// Pin-based bit 0: external interrupts cause VM exits.
    pub const EXTERNAL_INTERRUPT_EXITING: Control =
        Control::new(PinBased, 0, "external-interrupt exiting");
    /// Pin-based bit 3: NMIs cause VM exits (needed by virtual NMIs).
    pub const NMI_EXITING: Control = Control::new(PinBased, 3, "NMI exiting");
    /// Pin-based bit 5: virtual NMIs (the CPU tracks the guest's NMI blocking; needed by
    /// NMI-window exiting).
    pub const VIRTUAL_NMIS: Control = Control::new(PinBased, 5, "virtual NMIs");
    /// Pin-based bit 6: the VMX-preemption timer counts down in the guest.
    pub const PREEMPTION_TIMER: Control =
        Control::new(PinBased, 6, "activate VMX-preemption timer");

    /// Primary bit 2: exit as soon as the guest can take an interrupt (set while an
    /// interrupt waits for RFLAGS.IF or the end of an interrupt shadow).
    pub const INTERRUPT_WINDOW_EXITING: Control =
        Control::new(PrimaryProcBased, 2, "interrupt-window exiting");
    /// Primary bit 22: exit as soon as the guest can take an NMI (set while an NMI waits
    /// for the guest's NMI handler to return).
    pub const NMI_WINDOW_EXITING: Control =
        Control::new(PrimaryProcBased, 22, "NMI-window exiting");
    /// Primary bit 7: HLT exits.
    pub const HLT_EXITING: Control = Control::new(PrimaryProcBased, 7, "HLT exiting");
    /// Primary bit 11: RDPMC exits.
    pub const RDPMC_EXITING: Control = Control::new(PrimaryProcBased, 11, "RDPMC exiting");
    /// Primary bit 10: MWAIT exits.
    pub const MWAIT_EXITING: Control = Control::new(PrimaryProcBased, 10, "MWAIT exiting");
    /// Primary bit 15: MOV to CR3 exits (default1 without the TRUE MSRs).
    pub const CR3_LOAD_EXITING: Control = Control::new(PrimaryProcBased, 15, "CR3-load exiting");
    /// Primary bit 16: MOV from CR3 exits (default1 without the TRUE MSRs).
    pub const CR3_STORE_EXITING: Control = Control::new(PrimaryProcBased, 16, "CR3-store exiting");
    /// Primary bit 19: MOV to CR8 exits (without it, and without a TPR shadow, the guest
    /// writes the host's own task priority).
    pub const CR8_LOAD_EXITING: Control = Control::new(PrimaryProcBased, 19, "CR8-load exiting");
    /// Primary bit 20: MOV from CR8 exits.
    pub const CR8_STORE_EXITING: Control = Control::new(PrimaryProcBased, 20, "CR8-store exiting");
    /// Primary bit 25: I/O instructions exit as the I/O bitmaps say (every port but a
    /// VM's passthrough ports: [`crate::ioperm`]).
    pub const USE_IO_BITMAPS: Control = Control::new(PrimaryProcBased, 25, "use I/O bitmaps");
    /// Primary bit 28: RDMSR/WRMSR exit as the MSR bitmap says.
    pub const USE_MSR_BITMAPS: Control = Control::new(PrimaryProcBased, 28, "use MSR bitmaps");
    /// Primary bit 29: MONITOR exits.
    pub const MONITOR_EXITING: Control = Control::new(PrimaryProcBased, 29, "MONITOR exiting");
    /// Primary bit 31: the secondary controls apply.
    pub const ACTIVATE_SECONDARY: Control =
        Control::new(PrimaryProcBased, 31, "activate secondary controls");

    /// Secondary bit 1: EPT.
    pub const ENABLE_EPT: Control = Control::new(SecondaryProcBased, 1, "enable EPT");
    /// Secondary bit 5: VPID-tagged TLB entries.
    pub const ENABLE_VPID: Control = Control::new(SecondaryProcBased, 5, "enable VPID");
    /// Secondary bit 7: the guest may run with paging off or in real mode (CR0.PE and
    /// CR0.PG need not be 1): a vCPU started by INIT-SIPI begins in real mode.
    pub const UNRESTRICTED_GUEST: Control =
        Control::new(SecondaryProcBased, 7, "unrestricted guest");
    /// Secondary bit 12: INVPCID does not fault.
    pub const ENABLE_INVPCID: Control = Control::new(SecondaryProcBased, 12, "enable INVPCID");

    /// Exit bit 22: the VMX-preemption timer's value is saved on exit (it keeps counting
    /// down across exits instead of restarting).
    pub const SAVE_PREEMPTION_TIMER: Control =
        Control::new(Exit, 22, "save VMX-preemption timer value");
    /// Exit bit 9: the host runs in 64-bit mode after an exit.
    pub const HOST_ADDRESS_SPACE_SIZE: Control = Control::new(Exit, 9, "host address-space size");
    /// Exit bit 15: the exit acknowledges the interrupt and reports its vector.
    pub const ACK_INTERRUPT_ON_EXIT: Control =
        Control::new(Exit, 15, "acknowledge interrupt on exit");
    /// Exit bit 18: the guest's IA32_PAT is saved.
    pub const SAVE_PAT: Control = Control::new(Exit, 18, "save IA32_PAT");
    /// Exit bit 19: the host's IA32_PAT is loaded.
    pub const LOAD_HOST_PAT: Control = Control::new(Exit, 19, "load IA32_PAT");
    /// Exit bit 20: the guest's IA32_EFER is saved.
    pub const SAVE_EFER: Control = Control::new(Exit, 20, "save IA32_EFER");
    /// Exit bit 21: the host's IA32_EFER is loaded.
    pub const LOAD_HOST_EFER: Control = Control::new(Exit, 21, "load IA32_EFER");

    /// Entry bit 9: the guest is in IA-32e mode after entry.
    pub const IA32E_MODE_GUEST: Control = Control::new(Entry, 9, "IA-32e mode guest");
    /// Entry bit 14: the guest's IA32_PAT is loaded.
    pub const LOAD_GUEST_PAT: Control = Control::new(Entry, 14, "load IA32_PAT");
    /// Entry bit 15: the guest's IA32_EFER is loaded.
    pub const LOAD_GUEST_EFER: Control = Control::new(Entry, 15, "load IA32_EFER");
}

/// Controls without which no VM runs.
pub const REQUIRED: &[Control] = &[
    ctl::EXTERNAL_INTERRUPT_EXITING,
    ctl::HLT_EXITING,
    ctl::MWAIT_EXITING,
    ctl::CR8_LOAD_EXITING,
    ctl::CR8_STORE_EXITING,
    ctl::RDPMC_EXITING,
    ctl::USE_IO_BITMAPS,
    ctl::USE_MSR_BITMAPS,
    ctl::MONITOR_EXITING,
    ctl::ACTIVATE_SECONDARY,
    ctl::ENABLE_EPT,
    ctl::ENABLE_VPID,
    ctl::HOST_ADDRESS_SPACE_SIZE,
    ctl::ACK_INTERRUPT_ON_EXIT,
    ctl::SAVE_PAT,
    ctl::LOAD_HOST_PAT,
    ctl::SAVE_EFER,
    ctl::LOAD_HOST_EFER,
    ctl::IA32E_MODE_GUEST,
    ctl::LOAD_GUEST_PAT,
    ctl::LOAD_GUEST_EFER,
];

/// Controls used when the CPU has them. Without INVPCID the guest's CPUID hides it, so the
/// guest never executes an instruction that would fault; without the preemption timer a
/// guest's time slice rests on external-interrupt exiting alone. RDTSCP and XSAVES stay off
/// (and hidden): the guest's IA32_TSC_AUX and IA32_XSS would need switching.
/// Without unrestricted guest a vCPU cannot start in real mode (INIT-SIPI is refused).
pub const OPTIONAL: &[Control] = &[
    ctl::ENABLE_INVPCID,
    ctl::PREEMPTION_TIMER,
    ctl::SAVE_PREEMPTION_TIMER,
    ctl::UNRESTRICTED_GUEST,
];

/// Virtual NMIs: set all together when the CPU allows all three (NMI-window exiting needs
/// virtual NMIs, which need NMI exiting), else none — a pending NMI then waits for the
/// next exit instead of its window. The window control itself is set only while an NMI
/// waits.
pub const VIRTUAL_NMI_GROUP: &[Control] =
    &[ctl::NMI_EXITING, ctl::VIRTUAL_NMIS, ctl::NMI_WINDOW_EXITING];

/// EPT and VPID capabilities (IA32_VMX_EPT_VPID_CAP) the backend needs, with their names.
pub const REQUIRED_EPT_VPID: &[(u32, &str)] = &[
    (6, "4-level EPT page walk"),
    (14, "write-back EPT paging structures"),
    (16, "2 MiB EPT pages"),
    (17, "1 GiB EPT pages"),
    (20, "INVEPT"),
    (25, "single-context INVEPT"),
    (32, "INVVPID"),
    (41, "single-context INVVPID"),
];

/// The raw capability MSRs of one CPU, the TRUE ones where IA32_VMX_BASIC says they exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmxCaps {
    /// IA32_VMX_BASIC.
    pub basic: u64,
    /// (TRUE_)PINBASED_CTLS.
    pub pin: u64,
    /// (TRUE_)PROCBASED_CTLS.
    pub proc: u64,
    /// PROCBASED_CTLS2 (0 when the CPU cannot activate secondary controls).
    pub proc2: u64,
    /// (TRUE_)EXIT_CTLS.
    pub exit: u64,
    /// (TRUE_)ENTRY_CTLS.
    pub entry: u64,
    /// IA32_VMX_MISC.
    pub misc: u64,
    /// IA32_VMX_CR0_FIXED0.
    pub cr0_fixed0: u64,
    /// IA32_VMX_CR0_FIXED1.
    pub cr0_fixed1: u64,
    /// IA32_VMX_CR4_FIXED0.
    pub cr4_fixed0: u64,
    /// IA32_VMX_CR4_FIXED1.
    pub cr4_fixed1: u64,
    /// IA32_VMX_EPT_VPID_CAP (0 without secondary controls).
    pub ept_vpid: u64,
}

impl VmxCaps {
    /// Reads the capability MSRs through `rdmsr`, only those the CPU has: the TRUE ones
    /// when IA32_VMX_BASIC bit 55 is set, the secondary controls and EPT/VPID capabilities
    /// only when "activate secondary controls" may be 1.
    pub fn read(mut rdmsr: impl FnMut(u32) -> u64) -> Self {
        let basic = rdmsr(msr::IA32_VMX_BASIC);
        let true_ctls = basic & BASIC_TRUE_CTLS != 0;
        let pick = |plain, tru| if true_ctls { tru } else { plain };
        let proc = rdmsr(pick(
            msr::IA32_VMX_PROCBASED_CTLS,
            msr::IA32_VMX_TRUE_PROCBASED_CTLS,
        ));
        let secondary = (proc >> 32) & u64::from(ctl::ACTIVATE_SECONDARY.mask()) != 0;
        Self {
            basic,
            pin: rdmsr(pick(
                msr::IA32_VMX_PINBASED_CTLS,
                msr::IA32_VMX_TRUE_PINBASED_CTLS,
            )),
            proc,
            proc2: if secondary {
                rdmsr(msr::IA32_VMX_PROCBASED_CTLS2)
            } else {
                0
            },
            exit: rdmsr(pick(msr::IA32_VMX_EXIT_CTLS, msr::IA32_VMX_TRUE_EXIT_CTLS)),
            entry: rdmsr(pick(
                msr::IA32_VMX_ENTRY_CTLS,
                msr::IA32_VMX_TRUE_ENTRY_CTLS,
            )),
            misc: rdmsr(msr::IA32_VMX_MISC),
            cr0_fixed0: rdmsr(msr::IA32_VMX_CR0_FIXED0),
            cr0_fixed1: rdmsr(msr::IA32_VMX_CR0_FIXED1),
            cr4_fixed0: rdmsr(msr::IA32_VMX_CR4_FIXED0),
            cr4_fixed1: rdmsr(msr::IA32_VMX_CR4_FIXED1),
            ept_vpid: if secondary {
                rdmsr(msr::IA32_VMX_EPT_VPID_CAP)
            } else {
                0
            },
        }
    }

    /// The VMCS revision identifier (IA32_VMX_BASIC bits 30:0), written at the start of the
    /// VMXON region and of every VMCS.
    pub fn revision_id(&self) -> u32 {
        (self.basic & 0x7fff_ffff) as u32
    }

    /// Bytes the VMXON region and a VMCS take (IA32_VMX_BASIC bits 44:32, at most 4 KiB).
    pub fn region_size(&self) -> usize {
        ((self.basic >> 32) & 0x1fff) as usize
    }

    /// The capability MSR of `field`.
    fn cap(&self, field: ControlField) -> u64 {
        match field {
            ControlField::PinBased => self.pin,
            ControlField::PrimaryProcBased => self.proc,
            ControlField::SecondaryProcBased => self.proc2,
            ControlField::Exit => self.exit,
            ControlField::Entry => self.entry,
        }
    }

    /// Whether `c` may be 1 on this CPU.
    pub fn allows(&self, c: Control) -> bool {
        (self.cap(c.field) >> 32) as u32 & c.mask() != 0
    }

    /// Whether the CPU forces `c` to 1.
    pub fn forces(&self, c: Control) -> bool {
        self.cap(c.field) as u32 & c.mask() != 0
    }

    /// The VMX-preemption timer's rate: it counts down once every `2^n` TSC ticks
    /// (IA32_VMX_MISC bits 4:0).
    pub fn preemption_timer_shift(&self) -> u32 {
        (self.misc & 0x1f) as u32
    }

    /// The bits of CR0 that must be 1 and that may be 1 in VMX operation.
    pub fn cr0_fixed(&self) -> FixedBits {
        FixedBits {
            must_be_1: self.cr0_fixed0,
            may_be_1: self.cr0_fixed1,
        }
    }

    /// The bits of a guest's CR0 that must be 1 and that may be 1: [`Self::cr0_fixed`],
    /// with PE and PG free under unrestricted guest (SDM Vol. 3C, 27.3.1.1).
    pub fn guest_cr0_fixed(&self, unrestricted: bool) -> FixedBits {
        let mut f = self.cr0_fixed();
        if unrestricted {
            f.must_be_1 &= !(CR0_PE | CR0_PG);
        }
        f
    }

    /// The bits of CR4 that must be 1 and that may be 1 in VMX operation.
    pub fn cr4_fixed(&self) -> FixedBits {
        FixedBits {
            must_be_1: self.cr4_fixed0,
            may_be_1: self.cr4_fixed1,
        }
    }
}

/// CR0.PE.
const CR0_PE: u64 = 1;
/// CR0.PG.
const CR0_PG: u64 = 1 << 31;

/// CR0 or CR4 bits fixed in VMX operation (IA32_VMX_CRn_FIXED0/1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedBits {
    /// FIXED0: bits that must be 1.
    pub must_be_1: u64,
    /// FIXED1: bits that may be 1 (a 0 here must be 0).
    pub may_be_1: u64,
}

impl FixedBits {
    /// `value` with the fixed bits applied.
    pub fn apply(&self, value: u64) -> u64 {
        (value | self.must_be_1) & self.may_be_1
    }

    /// Whether `value` already obeys the fixed bits.
    pub fn accepts(&self, value: u64) -> bool {
        self.apply(value) == value
    }
}

/// Why this CPU cannot run VMs under the VMX backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapsError {
    /// A control the backend needs may not be 1.
    Unsupported(Control),
    /// An EPT or VPID capability the backend needs is missing (IA32_VMX_EPT_VPID_CAP bit).
    EptVpid {
        /// Its bit in IA32_VMX_EPT_VPID_CAP.
        bit: u32,
        /// Its name.
        name: &'static str,
    },
    /// The VMCS is larger than the one 4 KiB frame the backend gives it.
    RegionSize(usize),
    /// A capability MSR contradicts itself: it forces `bits` of `field` to 1 (allowed
    /// 0-settings) and does not allow them to be 1 (allowed 1-settings), so no value of the
    /// field can enter a guest. No real CPU reports this; a faulty emulator or hypervisor
    /// below could.
    Contradictory {
        /// The control field.
        field: ControlField,
        /// The bits both required and not allowed.
        bits: u32,
    },
}

impl fmt::Display for CapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapsError::Unsupported(c) => write!(f, "the CPU cannot set the {c}"),
            CapsError::EptVpid { bit, name } => {
                write!(f, "the CPU lacks {name} (IA32_VMX_EPT_VPID_CAP bit {bit})")
            }
            CapsError::RegionSize(n) => {
                write!(f, "the CPU's VMCS needs {n} bytes, more than a 4 KiB frame")
            }
            CapsError::Contradictory { field, bits } => write!(
                f,
                "the CPU's {field} controls capability requires bits {bits:#x} it does not allow"
            ),
        }
    }
}

/// The control fields the vCPUs are created with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Controls {
    /// Pin-based VM-execution controls.
    pub pin: u32,
    /// Primary processor-based VM-execution controls.
    pub proc: u32,
    /// Secondary processor-based VM-execution controls.
    pub proc2: u32,
    /// VM-exit controls.
    pub exit: u32,
    /// VM-entry controls.
    pub entry: u32,
}

impl Controls {
    fn field_mut(&mut self, field: ControlField) -> &mut u32 {
        match field {
            ControlField::PinBased => &mut self.pin,
            ControlField::PrimaryProcBased => &mut self.proc,
            ControlField::SecondaryProcBased => &mut self.proc2,
            ControlField::Exit => &mut self.exit,
            ControlField::Entry => &mut self.entry,
        }
    }

    /// The value of `field`.
    pub fn field(&self, field: ControlField) -> u32 {
        match field {
            ControlField::PinBased => self.pin,
            ControlField::PrimaryProcBased => self.proc,
            ControlField::SecondaryProcBased => self.proc2,
            ControlField::Exit => self.exit,
            ControlField::Entry => self.entry,
        }
    }

    /// Whether control `c` is set.
    pub fn has(&self, c: Control) -> bool {
        self.field(c.field) & c.mask() != 0
    }

    /// Whether NMI-window exiting may be set ([`VIRTUAL_NMI_GROUP`]).
    pub fn nmi_window(&self) -> bool {
        self.has(ctl::VIRTUAL_NMIS)
    }

    /// Whether the guest may run with CR0.PE or CR0.PG clear (real mode, INIT-SIPI).
    pub fn unrestricted(&self) -> bool {
        self.has(ctl::UNRESTRICTED_GUEST)
    }

    /// Computes the controls for `caps`: every field starts at the bits the CPU forces to 1
    /// (allowed 0-settings; a field whose MSR forces a bit it does not allow is the error),
    /// then each [`REQUIRED`] control is set (or the first one the
    /// CPU cannot set is the error) and each [`OPTIONAL`] control the CPU allows; the EPT
    /// and VPID capabilities in [`REQUIRED_EPT_VPID`] are checked last.
    pub fn compute(caps: &VmxCaps) -> Result<Self, CapsError> {
        if caps.region_size() > 0x1000 {
            return Err(CapsError::RegionSize(caps.region_size()));
        }
        let mut c = Controls::default();
        for field in [
            ControlField::PinBased,
            ControlField::PrimaryProcBased,
            ControlField::SecondaryProcBased,
            ControlField::Exit,
            ControlField::Entry,
        ] {
            let cap = caps.cap(field);
            let bits = cap as u32 & !((cap >> 32) as u32);
            if bits != 0 {
                return Err(CapsError::Contradictory { field, bits });
            }
            *c.field_mut(field) = cap as u32;
        }
        for &r in REQUIRED {
            if !caps.allows(r) {
                return Err(CapsError::Unsupported(r));
            }
            *c.field_mut(r.field) |= r.mask();
        }
        for &o in OPTIONAL {
            if caps.allows(o) {
                *c.field_mut(o.field) |= o.mask();
            }
        }
        if VIRTUAL_NMI_GROUP.iter().all(|&v| caps.allows(v)) {
            c.pin |= ctl::NMI_EXITING.mask() | ctl::VIRTUAL_NMIS.mask();
        }
        for &(bit, name) in REQUIRED_EPT_VPID {
            if caps.ept_vpid & (1 << bit) == 0 {
                return Err(CapsError::EptVpid { bit, name });
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests;
