//! ESR_EL2 decoding (Arm ARM D17.2.37), PSCI (Arm DEN 0022) and the SMC Calling Convention
//! ([`crate::smccc`]) for the vCPU.
//!
//! Every input here comes from the guest (its registers, the syndrome of what it did), so
//! nothing may panic: register numbers are masked, widths come from two bits.

use axaddrspace::{GuestPhysAddr, MappingFlags};
use axdevice_base::AccessWidth;
use axvcpu::VmExit;

use crate::exception::insn_len;
use crate::smccc::{self, FunctionId};
use crate::sysreg::SysRegAccess;

/// Exception classes the vCPU handles.
pub mod ec {
    /// WFI or WFE.
    pub const WFX: u64 = 0x01;
    /// HVC from AArch64.
    pub const HVC64: u64 = 0x16;
    /// SMC from AArch64 (trapped by HCR_EL2.TSC).
    pub const SMC64: u64 = 0x17;
    /// MSR/MRS/system instruction.
    pub const SYSREG: u64 = 0x18;
    /// SVE instruction or register access (trapped by CPTR_EL2.TZ).
    pub const SVE: u64 = 0x19;
    /// Pointer authentication instruction (trapped while HCR_EL2.API is 0, which it is:
    /// the vCPU hides the feature, see [`crate::sysreg`]).
    pub const PAUTH: u64 = 0x09;
    /// SME instruction or register access (trapped by CPTR_EL2.TSM, set as RES1 on CPUs
    /// without SME).
    pub const SME: u64 = 0x1d;
    /// Instruction abort from a lower EL.
    pub const IABT_LOWER: u64 = 0x20;
    /// Instruction abort without a change in exception level (injected into a guest).
    pub const IABT_CURRENT: u64 = 0x21;
    /// Data abort from a lower EL.
    pub const DABT_LOWER: u64 = 0x24;
    /// Data abort taken without a change of EL (what a guest at EL1 sees for its own access).
    pub const DABT_CURRENT: u64 = 0x25;
    /// MCR/MRC to CP15 (AArch32).
    pub const CP15_MCR: u64 = 0x03;
    /// MCRR/MRRC to CP15 (AArch32).
    pub const CP15_MCRR: u64 = 0x04;
    /// MCR/MRC to CP14 (AArch32).
    pub const CP14_MCR: u64 = 0x05;
    /// LDC/STC to CP14 (AArch32).
    pub const CP14_LDC: u64 = 0x06;
    /// MRRC to CP14 (AArch32).
    pub const CP14_MRRC: u64 = 0x0c;
}

/// PSCI function ids (SMC32 and SMC64 forms where both exist).
pub mod psci {
    /// PSCI_VERSION.
    pub const VERSION: u64 = 0x8400_0000;
    /// CPU_OFF.
    pub const CPU_OFF: u64 = 0x8400_0002;
    /// AFFINITY_INFO, SMC32.
    pub const AFFINITY_INFO_32: u64 = 0x8400_0004;
    /// AFFINITY_INFO, SMC64.
    pub const AFFINITY_INFO_64: u64 = 0xC400_0004;
    /// CPU_ON, SMC32.
    pub const CPU_ON_32: u64 = 0x8400_0003;
    /// CPU_ON, SMC64.
    pub const CPU_ON_64: u64 = 0xC400_0003;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u64 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u64 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const FEATURES: u64 = 0x8400_000A;
    /// The version the vCPU reports: 1.1.
    pub const VERSION_1_1: u64 = 0x0001_0001;
    /// NOT_SUPPORTED, as a 64-bit register value.
    pub const NOT_SUPPORTED: u64 = -1i64 as u64;
    /// INVALID_PARAMETERS.
    pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
    /// ALREADY_ON.
    pub const ALREADY_ON: u64 = -4i64 as u64;
    /// ON_PENDING.
    pub const ON_PENDING: u64 = -5i64 as u64;
    /// INVALID_ADDRESS.
    pub const INVALID_ADDRESS: u64 = -9i64 as u64;
    /// AFFINITY_INFO: the CPU is on.
    pub const AFF_ON: u64 = 0;
    /// AFFINITY_INFO: the CPU is off.
    pub const AFF_OFF: u64 = 1;
    /// AFFINITY_INFO: the CPU is being turned on.
    pub const AFF_ON_PENDING: u64 = 2;
}

/// x0 for the answer to a PSCI CPU_ON or AFFINITY_INFO call.
pub fn psci_power_reply(reply: axvcpu::PowerReply) -> u64 {
    use axvcpu::{PowerReply, PowerState};
    match reply {
        PowerReply::Done => 0,
        PowerReply::AlreadyOn => psci::ALREADY_ON,
        PowerReply::OnPending => psci::ON_PENDING,
        PowerReply::InvalidTarget => psci::INVALID_PARAMETERS,
        PowerReply::InvalidAddress => psci::INVALID_ADDRESS,
        PowerReply::Status(PowerState::On) => psci::AFF_ON,
        PowerReply::Status(PowerState::Off) => psci::AFF_OFF,
        PowerReply::Status(PowerState::Pending) => psci::AFF_ON_PENDING,
    }
}

/// The vCPU index a PSCI target MPIDR names: vCPU `i` has affinity `i` in Aff0 and zero
/// above (see `ArmVCpuConfig`); any other value names no vCPU. PSCI's `target_cpu` holds
/// the affinity fields only: bits 63:40 and 31:24 (where MPIDR_EL1 has its RES1 bit 31, U
/// and MT) must be zero, so a value with any of them set is invalid too.
pub fn mpidr_to_index(target: u64, count: usize) -> Option<usize> {
    (target <= 0xff && target < count as u64).then_some(target as usize)
}

/// What to do after a synchronous exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncAction {
    /// Hand this exit to the VMM. `pc_step` is how far to move the guest's PC once the exit
    /// is completed (the trapped instruction's length, 2 or 4 from ESR_EL2.IL, to go past
    /// it; 0 when ELR already points past it or the instruction is retried).
    Exit {
        /// The decoded exit.
        exit: VmExit,
        /// Bytes to add to the guest PC on completion.
        pc_step: u64,
    },
    /// Answered inside the vCPU: put `x0` in the guest's x0, move the PC by `pc_step`, and
    /// re-enter the guest at once.
    Reply {
        /// Value for x0.
        x0: u64,
        /// Bytes to add to the guest PC.
        pc_step: u64,
    },
    /// Like `Reply`, with X0..X3 (an SMCCC call answering more than X0).
    ReplyX0To3 {
        /// Values for x0..x3.
        x: [u64; 4],
        /// Bytes to add to the guest PC.
        pc_step: u64,
    },
    /// A trapped system-register access, emulated inside the vCPU (see [`crate::sysreg`]);
    /// the PC points at the instruction.
    SysReg(SysRegAccess),
    /// An instruction the guest may not use: it gets an Undefined Instruction exception at
    /// the instruction.
    Undefined,
}

/// A data abort's instruction syndrome, when valid (ISV = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    /// Access size.
    pub width: AccessWidth,
    /// Load sign-extends.
    pub sign_ext: bool,
    /// Transfer register (31 = xzr).
    pub reg: usize,
    /// The register is 64-bit (else 32-bit: results zero-extended from bit 31).
    pub sixty_four: bool,
    /// A store.
    pub write: bool,
}

impl DataAbort {
    /// Decodes the ISS of a data abort; `None` when ISV is clear (the syndrome does not
    /// describe the access).
    pub fn from_esr(esr: u64) -> Option<Self> {
        if esr & (1 << 24) == 0 {
            return None;
        }
        let width = match (esr >> 22) & 3 {
            0 => AccessWidth::Byte,
            1 => AccessWidth::Half,
            2 => AccessWidth::Word,
            _ => AccessWidth::Dword,
        };
        Some(Self {
            width,
            sign_ext: esr & (1 << 21) != 0,
            reg: ((esr >> 16) & 0x1f) as usize,
            sixty_four: Self::sixty_four(esr),
            write: esr & (1 << 6) != 0,
        })
    }

    /// ISS.SF: the transfer register is 64-bit.
    #[inline]
    pub fn sixty_four(esr: u64) -> bool {
        esr & (1 << 15) != 0
    }

    /// The value a load puts into the register: `raw` cut to the access width, sign-extended
    /// if the instruction does, and cut to 32 bits for a W register.
    #[inline]
    pub fn load_value(&self, raw: u64) -> u64 {
        // 56, 48, 32 or 0: the bits above the access.
        let shift = 64 - 8 * self.width.size() as u32;
        let v = if self.sign_ext {
            (((raw << shift) as i64) >> shift) as u64
        } else {
            raw & self.width.mask()
        };
        if self.sixty_four {
            v
        } else {
            v & 0xffff_ffff
        }
    }
}

/// The guest physical address of a stage-2 abort: the page from HPFAR_EL2 (FIPA, bits 39:4
/// hold IPA bits 51:12), the offset from FAR_EL2.
pub fn fault_ipa(far: u64, hpfar: u64) -> GuestPhysAddr {
    let page = ((hpfar >> 4) & 0xff_ffff_ffff) << 12;
    GuestPhysAddr::new((page | (far & 0xfff)) as usize)
}

/// General-purpose register `r` of the guest, with 31 reading as zero (xzr).
pub fn gpr(regs: &[u64; 31], r: usize) -> u64 {
    regs.get(r).copied().unwrap_or(0)
}

/// The hypercall number of an HVC exit (`esr`) that is an axvisor hypercall: W0 in the
/// SMCCC vendor-specific hypervisor range axvisor's calls use ([`smccc::axvisor_call`]).
/// The frequent exit, decoded before everything else.
#[inline(always)]
pub fn hvc_hypercall(esr: u64, regs: &[u64; 31]) -> Option<u64> {
    if esr >> 26 == ec::HVC64 {
        smccc::axvisor_call(regs[0])
    } else {
        None
    }
}

/// Decodes a synchronous exit from a guest.
#[inline]
pub fn decode_sync(esr: u64, far: u64, hpfar: u64, regs: &[u64; 31]) -> SyncAction {
    let class = esr >> 26;
    match class {
        ec::HVC64 => decode_call(regs, 0),
        // A trapped SMC leaves ELR at the SMC itself.
        ec::SMC64 => decode_call(regs, 4),
        // Halt only for WFI (TI = 0); a trapped WFE is just a hint: step over it.
        ec::WFX if esr & 1 == 0 => SyncAction::Exit {
            exit: VmExit::Halt,
            pc_step: insn_len(esr),
        },
        ec::WFX => SyncAction::Reply {
            x0: regs[0],
            pc_step: insn_len(esr),
        },
        ec::DABT_LOWER => {
            let gpa = fault_ipa(far, hpfar);
            match DataAbort::from_esr(esr) {
                Some(da) if da.write => {
                    let v = gpr(regs, da.reg);
                    let value = if da.width == AccessWidth::Dword {
                        v
                    } else {
                        v & ((1u64 << (da.width.size() * 8)) - 1)
                    };
                    SyncAction::Exit {
                        exit: VmExit::MmioWrite {
                            gpa,
                            width: da.width,
                            value,
                        },
                        pc_step: insn_len(esr),
                    }
                }
                Some(da) => SyncAction::Exit {
                    exit: VmExit::MmioRead {
                        gpa,
                        width: da.width,
                        reg: da.reg,
                        sign_ext: da.sign_ext,
                    },
                    pc_step: insn_len(esr),
                },
                None => {
                    let access = if esr & (1 << 6) != 0 {
                        MappingFlags::WRITE
                    } else {
                        MappingFlags::READ
                    };
                    SyncAction::Exit {
                        exit: VmExit::NestedPageFault { gpa, access },
                        pc_step: 0,
                    }
                }
            }
        }
        ec::SYSREG => SyncAction::SysReg(SysRegAccess::from_esr(esr)),
        // Features the ID registers hide (SVE, SME, pointer authentication): UNDEFINED, as
        // on a CPU without them (a guest that enabled pointer authentication in SCTLR_EL1
        // regardless gets it for the HINT-space forms too, which such a CPU runs as NOPs).
        ec::SVE | ec::SME | ec::PAUTH => SyncAction::Undefined,
        // Coprocessor accesses from AArch32 EL0 the hypervisor traps but does not emulate
        // (none with today's trap controls): UNDEFINED, as the architecture says a trapped
        // access without emulation should be.
        ec::CP15_MCR | ec::CP15_MCRR | ec::CP14_MCR | ec::CP14_LDC | ec::CP14_MRRC => {
            SyncAction::Undefined
        }
        ec::IABT_LOWER => SyncAction::Exit {
            exit: VmExit::NestedPageFault {
                gpa: fault_ipa(far, hpfar),
                access: MappingFlags::EXECUTE,
            },
            pc_step: 0,
        },
        _ => SyncAction::Exit {
            exit: VmExit::Unsupported {
                reason: "exception class not emulated",
                syndrome: esr,
            },
            pc_step: 0,
        },
    }
}

/// HVC or SMC, an SMCCC call: an axvisor hypercall, PSCI, or another call the vCPU
/// answers itself ([`crate::smccc`]; unknown function ids of any owner get NOT_SUPPORTED).
fn decode_call(regs: &[u64; 31], pc_step: u64) -> SyncAction {
    let exit = |exit| SyncAction::Exit { exit, pc_step };
    let reply = |x0| SyncAction::Reply { x0, pc_step };
    // Hypercalls, the frequent case, first. The arguments stay in x1-x6
    // (`ArchVCpu::hypercall_args`).
    if let Some(nr) = smccc::axvisor_call(regs[0]) {
        return exit(VmExit::Hypercall { nr });
    }
    let fid = FunctionId::from_x0(regs[0]);
    // An SMC32 function sees only the low halves of its arguments.
    let arg = |i: usize| fid.arg(regs[i]);
    match u64::from(fid.0) {
        psci::VERSION => reply(psci::VERSION_1_1),
        psci::FEATURES => match arg(1) {
            psci::VERSION
            | psci::CPU_OFF
            | psci::CPU_ON_32
            | psci::CPU_ON_64
            | psci::AFFINITY_INFO_32
            | psci::AFFINITY_INFO_64
            | psci::SYSTEM_OFF
            | psci::SYSTEM_RESET
            | psci::FEATURES => reply(0),
            // Tells the guest it may ask SMCCC_VERSION (and then SMCCC_ARCH_FEATURES).
            id if id == u64::from(smccc::VERSION) => reply(0),
            _ => reply(psci::NOT_SUPPORTED),
        },
        psci::SYSTEM_OFF => exit(VmExit::SystemOff),
        psci::SYSTEM_RESET => exit(VmExit::SystemReset),
        psci::CPU_OFF => exit(VmExit::CpuDown),
        // Only affinity level 0 (single CPUs) is answered.
        psci::AFFINITY_INFO_32 | psci::AFFINITY_INFO_64 if arg(2) != 0 => {
            reply(psci::INVALID_PARAMETERS)
        }
        psci::AFFINITY_INFO_32 | psci::AFFINITY_INFO_64 => {
            exit(VmExit::CpuStatus { target: arg(1) })
        }
        psci::CPU_ON_32 | psci::CPU_ON_64 => exit(VmExit::CpuUp {
            target: arg(1),
            entry: GuestPhysAddr::new(arg(2) as usize),
            arg: arg(3),
        }),
        // Everything else, the rest of PSCI included.
        _ => match smccc::answer(fid, regs[1]) {
            smccc::Answer::X0(x0) => reply(x0),
            smccc::Answer::X0To3(x) => SyncAction::ReplyX0To3 { x, pc_step },
        },
    }
}

/// ESR_EL1 for a synchronous external abort (fault status 0x10, IL = 1) on the access of
/// the exit `original_esr` (ESR_EL2), as the guest sees it taken to EL1 from EL0
/// (`from_el0`) or EL1: an instruction abort (EC 0x20 / 0x21) when the exit was an
/// instruction fetch, otherwise a data abort (EC 0x24 / 0x25) with WnR copied.
pub fn injected_abort_esr(original_esr: u64, from_el0: bool) -> u64 {
    let lower = u64::from(from_el0);
    let (class, wnr) = if original_esr >> 26 == ec::IABT_LOWER {
        (ec::IABT_CURRENT - lower, 0)
    } else {
        (ec::DABT_CURRENT - lower, original_esr & (1 << 6))
    };
    (class << 26) | (1 << 25) | wnr | 0x10
}

#[cfg(test)]
mod tests;
