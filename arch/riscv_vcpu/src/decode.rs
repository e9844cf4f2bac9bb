//! Decoding traps from a VS-mode guest (RISC-V privileged spec, "Hypervisor Extension") and
//! the SBI calls (SBI spec 2.0) the vCPU emulates.
//!
//! Every input here comes from the guest (its registers, the instruction it executed, the
//! address it touched), so nothing may panic: register numbers are 5-bit fields, widths come
//! from funct3, and unknown encodings decode to `None` or to a refusal.

use axaddrspace::{GuestPhysAddr, MappingFlags};
use axdevice_base::AccessWidth;
use axvcpu::VmExit;

use crate::harts::{fence, HartSet};

/// Exception codes (`scause` without the interrupt bit).
pub mod cause {
    /// Instruction address misaligned.
    pub const INSN_MISALIGNED: u64 = 0;
    /// Instruction access fault.
    pub const INSN_ACCESS_FAULT: u64 = 1;
    /// Illegal instruction.
    pub const ILLEGAL_INSN: u64 = 2;
    /// Breakpoint.
    pub const BREAKPOINT: u64 = 3;
    /// Load address misaligned.
    pub const LOAD_MISALIGNED: u64 = 4;
    /// Load access fault.
    pub const LOAD_ACCESS_FAULT: u64 = 5;
    /// Store/AMO address misaligned.
    pub const STORE_MISALIGNED: u64 = 6;
    /// Store/AMO access fault.
    pub const STORE_ACCESS_FAULT: u64 = 7;
    /// Environment call from U (or VU) mode.
    pub const U_ECALL: u64 = 8;
    /// Environment call from VS mode.
    pub const VS_ECALL: u64 = 10;
    /// Instruction page fault.
    pub const INSN_PAGE_FAULT: u64 = 12;
    /// Load page fault.
    pub const LOAD_PAGE_FAULT: u64 = 13;
    /// Store/AMO page fault.
    pub const STORE_PAGE_FAULT: u64 = 15;
    /// Instruction guest-page fault (G-stage).
    pub const INSN_GUEST_PAGE_FAULT: u64 = 20;
    /// Load guest-page fault (G-stage).
    pub const LOAD_GUEST_PAGE_FAULT: u64 = 21;
    /// Virtual instruction.
    pub const VIRTUAL_INSN: u64 = 22;
    /// Store/AMO guest-page fault (G-stage).
    pub const STORE_GUEST_PAGE_FAULT: u64 = 23;
}

/// SBI extension and function ids, error codes, and what the vCPU reports about itself.
pub mod sbi {
    /// Legacy `set_timer`.
    pub const LEGACY_SET_TIMER: u64 = 0x00;
    /// Legacy `console_putchar`.
    pub const LEGACY_CONSOLE_PUTCHAR: u64 = 0x01;
    /// Legacy `console_getchar`.
    pub const LEGACY_CONSOLE_GETCHAR: u64 = 0x02;
    /// Legacy `shutdown`.
    pub const LEGACY_SHUTDOWN: u64 = 0x08;
    /// Base extension.
    pub const EXT_BASE: u64 = 0x10;
    /// Timer extension ("TIME").
    pub const EXT_TIME: u64 = 0x5449_4D45;
    /// IPI extension ("sPI").
    pub const EXT_IPI: u64 = 0x73_5049;
    /// Remote fence extension ("RFNC").
    pub const EXT_RFENCE: u64 = 0x5246_4E43;
    /// Hart state management ("HSM").
    pub const EXT_HSM: u64 = 0x48_534D;
    /// System reset ("SRST").
    pub const EXT_SRST: u64 = 0x5352_5354;
    /// Debug console ("DBCN").
    pub const EXT_DBCN: u64 = 0x4442_434E;
    /// axvisor's hypercalls: `a6` = number, `a0`..`a5` = arguments; result in `a1`, `a0` = 0.
    /// In the firmware-specific extension space (0x0A00_0000..=0x0AFF_FFFF), whose meaning
    /// the SBI implementation defines: axvisor is the guest's SBI implementation
    /// ([`IMPL_ID`], echoed in the low bits). (The experimental space is 0x0800_0000..,
    /// the vendor-specific one 0x0900_0000.., keyed by mvendorid.)
    pub const EXT_AXVISOR: u64 = 0x0A00_08B5;

    /// BASE functions.
    pub const BASE_GET_SPEC_VERSION: u64 = 0;
    /// BASE `get_impl_id`.
    pub const BASE_GET_IMPL_ID: u64 = 1;
    /// BASE `get_impl_version`.
    pub const BASE_GET_IMPL_VERSION: u64 = 2;
    /// BASE `probe_extension`.
    pub const BASE_PROBE_EXTENSION: u64 = 3;
    /// BASE `get_mvendorid`.
    pub const BASE_GET_MVENDORID: u64 = 4;
    /// BASE `get_marchid`.
    pub const BASE_GET_MARCHID: u64 = 5;
    /// BASE `get_mimpid`.
    pub const BASE_GET_MIMPID: u64 = 6;
    /// HSM `hart_start`.
    pub const HSM_HART_START: u64 = 0;
    /// HSM `hart_stop`.
    pub const HSM_HART_STOP: u64 = 1;
    /// HSM `hart_get_status`.
    pub const HSM_HART_GET_STATUS: u64 = 2;
    /// HSM `hart_suspend`.
    pub const HSM_HART_SUSPEND: u64 = 3;
    /// HSM status: started.
    pub const HSM_STARTED: u64 = 0;
    /// HSM status: stopped.
    pub const HSM_STOPPED: u64 = 1;
    /// HSM status: start pending.
    pub const HSM_START_PENDING: u64 = 2;
    /// RFENCE `remote_fence_i`.
    pub const RFENCE_FENCE_I: u64 = 0;
    /// RFENCE `remote_sfence_vma`.
    pub const RFENCE_SFENCE_VMA: u64 = 1;
    /// RFENCE `remote_sfence_vma_asid`.
    pub const RFENCE_SFENCE_VMA_ASID: u64 = 2;
    /// IPI `send_ipi`.
    pub const IPI_SEND_IPI: u64 = 0;
    /// TIME `set_timer`.
    pub const TIME_SET_TIMER: u64 = 0;
    /// DBCN `console_write`.
    pub const DBCN_WRITE: u64 = 0;
    /// DBCN `console_read`.
    pub const DBCN_READ: u64 = 1;
    /// DBCN `console_write_byte`.
    pub const DBCN_WRITE_BYTE: u64 = 2;
    /// The most bytes one DBCN `console_write` takes (the call may write fewer than asked;
    /// the guest calls again for the rest).
    pub const DBCN_WRITE_MAX: u64 = 64;
    /// SRST reset types.
    pub const SRST_SHUTDOWN: u64 = 0;
    /// SRST cold reboot.
    pub const SRST_COLD_REBOOT: u64 = 1;
    /// SRST warm reboot.
    pub const SRST_WARM_REBOOT: u64 = 2;

    /// The SBI version the vCPU implements: 2.0 (major in bits 30:24). DBCN, which it
    /// implements, is an SBI 2.0 extension (Linux uses it only from a 2.0 implementation);
    /// nothing else 2.0 changed applies to the extensions it reports (docs/riscv-vcpu.md).
    pub const SPEC_VERSION: u64 = 2 << 24;
    /// Implementation id reported to guests. Not a registered SBI implementation id; the
    /// hypercall extension id ([`EXT_AXVISOR`]) echoes it.
    pub const IMPL_ID: u64 = 0x08B5;
    /// Implementation version reported to guests.
    pub const IMPL_VERSION: u64 = 0x0001_0000;

    /// SBI_SUCCESS.
    pub const SUCCESS: u64 = 0;
    /// SBI_ERR_FAILED (-1).
    pub const ERR_FAILED: u64 = -1i64 as u64;
    /// SBI_ERR_NOT_SUPPORTED (-2).
    pub const ERR_NOT_SUPPORTED: u64 = -2i64 as u64;
    /// SBI_ERR_INVALID_PARAM (-3).
    pub const ERR_INVALID_PARAM: u64 = -3i64 as u64;
    /// SBI_ERR_INVALID_ADDRESS (-5).
    pub const ERR_INVALID_ADDRESS: u64 = -5i64 as u64;
    /// SBI_ERR_ALREADY_AVAILABLE (-6).
    pub const ERR_ALREADY_AVAILABLE: u64 = -6i64 as u64;
}

/// `wfi`.
pub const WFI: u32 = 0x1050_0073;

/// What an SBI answer depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VCpuInfo {
    /// The vCPU's hart id as the guest knows it.
    pub hart_id: u64,
    /// How many harts the VM has (ids `0..harts`), for SBI hart masks.
    pub harts: usize,
}

/// How the value given to [`axvcpu::ArchVCpu::set_return_value`] reaches the guest after
/// an exit handed to the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetKind {
    /// An SBI call returning a value (hypercalls, DBCN): `a0` = 0 (success), `a1` = value.
    Value,
    /// A legacy SBI call: `a0` = value.
    Legacy,
    /// An SBI call returning only a status (HSM, SRST): `a0` = value, an SBI error code.
    /// The vCPU sets `a0` to SBI_ERR_FAILED before the exit: the VMM reports success with
    /// `set_return_value(0)`.
    Status,
    /// An HSM call the VM answers with `complete_power` ([`power_reply`]).
    Power,
}

/// The SBI return registers (`a0` error, `a1` value) for the answer to an HSM call.
pub fn power_reply(reply: axvcpu::PowerReply) -> (u64, u64) {
    use axvcpu::{PowerReply, PowerState};
    match reply {
        PowerReply::Done => (sbi::SUCCESS, 0),
        PowerReply::AlreadyOn | PowerReply::OnPending => (sbi::ERR_ALREADY_AVAILABLE, 0),
        PowerReply::InvalidTarget => (sbi::ERR_INVALID_PARAM, 0),
        PowerReply::InvalidAddress => (sbi::ERR_INVALID_ADDRESS, 0),
        PowerReply::Status(s) => (
            sbi::SUCCESS,
            match s {
                PowerState::On => sbi::HSM_STARTED,
                PowerState::Off => sbi::HSM_STOPPED,
                PowerState::Pending => sbi::HSM_START_PENDING,
            },
        ),
    }
}

/// A fence an RFENCE call asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// `fence.i`.
    Icache,
    /// `hfence.vvma` for the VM's VMID (all addresses and ASIDs: a range or one ASID is
    /// served by this larger flush).
    Vma,
}

impl Fence {
    /// As a [`fence`] bit.
    pub fn bits(self) -> u8 {
        match self {
            Self::Icache => fence::ICACHE,
            Self::Vma => fence::VVMA,
        }
    }
}

/// What to do with a VS-mode `ecall`. In every case the guest's PC moves past the `ecall`
/// (4 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbiAction {
    /// Answered: set `a0`, and `a1` when given.
    Reply {
        /// Error code (or the value of a legacy call).
        a0: u64,
        /// Value.
        a1: Option<u64>,
    },
    /// Program the guest's timer (`vstimecmp`) to `deadline`, then reply `a0` = 0.
    SetTimer {
        /// Absolute `time` value.
        deadline: u64,
    },
    /// Perform `fence` on every hart of `harts` (validated: they all exist), the caller
    /// included if it is named, then reply `a0` = 0.
    Fence {
        /// The fence.
        fence: Fence,
        /// The harts.
        harts: HartSet,
    },
    /// Raise the supervisor software interrupt (`hvip.VSSIP`) of every hart of the set
    /// (validated: they all exist), the caller included if it is named, then reply `a0` = 0.
    Ipi(HartSet),
    /// DBCN `console_write`: write the `len` bytes (1..=[`sbi::DBCN_WRITE_MAX`]) of guest
    /// memory at guest-physical `addr` (`addr + len` does not overflow) to the console; reply
    /// `a0` = 0 and `a1` = how many were written, or SBI_ERR_INVALID_PARAM when not even
    /// the first byte is guest memory the vCPU can read.
    ConsoleWrite {
        /// Guest-physical address of the first byte.
        addr: u64,
        /// How many bytes.
        len: u64,
    },
    /// Hand `exit` to the VMM; its result comes back as `ret` says.
    Exit {
        /// The exit.
        exit: VmExit,
        /// How the VMM's return value reaches the guest.
        ret: RetKind,
    },
}

/// What to do after a trap from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapAction {
    /// Hand this exit to the VMM after moving the guest PC by `pc_step` (the length of the
    /// trapped instruction when the exit completes it, 0 when it must be retried).
    Exit {
        /// The decoded exit.
        exit: VmExit,
        /// Bytes to add to the guest PC.
        pc_step: u64,
    },
    /// A VS-mode `ecall`: an SBI call (the PC moves by 4).
    Sbi(SbiAction),
    /// Deliver exception `cause` with `tval` to the guest (a virtual instruction that is
    /// not emulated becomes an illegal instruction, as on a machine without the H extension).
    Inject {
        /// Exception code for `vscause`.
        cause: u64,
        /// Value for `vstval`.
        tval: u64,
    },
}

/// A trap from the guest, as the trap CSRs describe it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trap {
    /// `scause` (an exception code: interrupts never get here).
    pub scause: u64,
    /// `stval`: the guest virtual address of a fault, the instruction bits of a virtual
    /// instruction (or 0).
    pub stval: u64,
    /// `htval`: the guest physical address of a guest-page fault, shifted right by 2.
    pub htval: u64,
    /// `htinst`: the transformed trapping instruction, or 0.
    pub htinst: u64,
    /// The guest was in VU mode (user), not VS mode (`sstatus.SPP` = 0 after the trap).
    pub from_vu: bool,
}

/// A decoded load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemAccess {
    /// Access size.
    pub width: AccessWidth,
    /// Load or store, with its register.
    pub op: MemOp,
    /// Length of the instruction: 2 (compressed) or 4.
    pub len: u64,
    /// For a transformed instruction, the offset of the faulting address from the start of
    /// the access (the "Addr. Offset" field; non-zero only for a misaligned access that
    /// faults in its second part). 0 for a raw instruction.
    pub addr_offset: u64,
}

/// The register side of a [`MemAccess`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemOp {
    /// A load into `x[rd]`.
    Load {
        /// Destination register (0: the value is dropped).
        rd: usize,
        /// Whether the value is sign-extended (lb, lh, lw, and ld trivially).
        sign_ext: bool,
    },
    /// A store of `x[rs2]`.
    Store {
        /// Source register (0: stores zero).
        rs2: usize,
    },
}

const OP_LOAD: u32 = 0x03;
const OP_STORE: u32 = 0x23;

fn bits(insn: u32, lo: u32, len: u32) -> u32 {
    (insn >> lo) & ((1 << len) - 1)
}

/// Decodes a 32-bit integer load or store (LOAD / STORE major opcodes, with bits 1:0 = 11).
/// `funct3`'s low two bits are log2 of the width (`AccessWidth`'s discriminant) and bit 2
/// marks a zero-extending load; LD with bit 2 (funct3 7) and stores with it do not exist.
#[inline]
fn decode_32(insn: u32, len: u64) -> Option<MemAccess> {
    let funct3 = bits(insn, 12, 3);
    // A `match` rather than `AccessWidth::ALL[..]`: the discriminants are log2 of the width,
    // so this compiles to nothing, where the table was a load.
    let width = match funct3 & 3 {
        0 => AccessWidth::Byte,
        1 => AccessWidth::Half,
        2 => AccessWidth::Word,
        _ => AccessWidth::Dword,
    };
    let op = match insn & 0x7f {
        OP_LOAD if funct3 != 7 => MemOp::Load {
            rd: bits(insn, 7, 5) as usize,
            sign_ext: funct3 & 4 == 0,
        },
        OP_STORE if funct3 & 4 == 0 => MemOp::Store {
            rs2: bits(insn, 20, 5) as usize,
        },
        _ => return None,
    };
    Some(MemAccess {
        width,
        op,
        len,
        addr_offset: 0,
    })
}

/// Decodes a 16-bit (RVC, RV64) integer load or store: c.lw, c.ld, c.sw, c.sd and their
/// sp-relative forms. FP forms and everything else are `None`.
fn decode_16(insn: u16) -> Option<MemAccess> {
    let insn = insn as u32;
    let funct3 = bits(insn, 13, 3);
    // rd' / rs2' (bits 4:2) and the full-width rd (bits 11:7) / rs2 (bits 6:2).
    let rs2_prime = 8 + bits(insn, 2, 3) as usize;
    let rd_full = bits(insn, 7, 5) as usize;
    let rs2_full = bits(insn, 2, 5) as usize;
    let load = |width, rd| Some((width, MemOp::Load { rd, sign_ext: true }));
    let (width, op) = match (insn & 3, funct3) {
        // Quadrant 0: c.lw, c.ld, c.sw, c.sd.
        (0, 2) => load(AccessWidth::Word, rs2_prime)?,
        (0, 3) => load(AccessWidth::Dword, rs2_prime)?,
        (0, 6) => (AccessWidth::Word, MemOp::Store { rs2: rs2_prime }),
        (0, 7) => (AccessWidth::Dword, MemOp::Store { rs2: rs2_prime }),
        // Quadrant 2: c.lwsp, c.ldsp (rd = 0 is reserved), c.swsp, c.sdsp.
        (2, 2) if rd_full != 0 => load(AccessWidth::Word, rd_full)?,
        (2, 3) if rd_full != 0 => load(AccessWidth::Dword, rd_full)?,
        (2, 6) => (AccessWidth::Word, MemOp::Store { rs2: rs2_full }),
        (2, 7) => (AccessWidth::Dword, MemOp::Store { rs2: rs2_full }),
        _ => return None,
    };
    Some(MemAccess {
        width,
        op,
        len: 2,
        addr_offset: 0,
    })
}

/// Decodes an instruction as the guest has it in memory (16 or 32 bits; for a 16-bit one
/// only the low half of `insn` counts).
#[inline]
pub fn decode_raw(insn: u32) -> Option<MemAccess> {
    if insn & 3 == 3 {
        decode_32(insn, 4)
    } else {
        decode_16(insn as u16)
    }
}

/// Decodes `htinst` after a guest-page fault: a transformed load or store (bits 1:0 = 11 for
/// a 32-bit instruction, 01 for a compressed one expanded to 32 bits; rs1 holds the address
/// offset; the immediate is ignored). Zero, the implicit-access pseudoinstructions (bits
/// 1:0 = 00) and anything that is not an integer load or store are `None`.
pub fn decode_transformed(htinst: u64) -> Option<MemAccess> {
    let insn = u32::try_from(htinst).ok()?;
    let len = match insn & 3 {
        3 => 4,
        1 => 2,
        _ => return None,
    };
    let mut access = decode_32(insn | 2, len)?;
    access.addr_offset = bits(insn, 15, 5) as u64;
    Some(access)
}

/// The value a load puts in its register: `raw` cut to the access width and sign-extended
/// when the instruction does. (Two shifts: the width's bits to the top, then back; 0 for a
/// doubleword, so no branch on the width.)
#[inline]
pub fn load_value(width: AccessWidth, sign_ext: bool, raw: u64) -> u64 {
    extend(raw, width_shift(width), sign_ext)
}

/// How far [`extend`] shifts a value of `width`: the bits above the width (0 for a
/// doubleword).
#[inline]
pub fn width_shift(width: AccessWidth) -> u32 {
    64 - 8 * width.size() as u32
}

/// `raw` cut to its low `64 - shift` bits ([`width_shift`]), sign-extended when `sign_ext`.
#[inline]
pub fn extend(raw: u64, shift: u32, sign_ext: bool) -> u64 {
    let top = raw << shift;
    if sign_ext {
        ((top as i64) >> shift) as u64
    } else {
        top >> shift
    }
}

/// `x[r]` of the guest, with x0 reading as zero and `r` cut to 5 bits.
pub fn gpr(regs: &[u64; 32], r: usize) -> u64 {
    match r & 31 {
        0 => 0,
        r => regs[r],
    }
}

/// The guest physical address of a guest-page fault: `htval` holds it shifted right by 2,
/// `stval` (the guest virtual address) supplies the low two bits.
pub fn fault_gpa(htval: u64, stval: u64) -> u64 {
    (htval << 2) | (stval & 3)
}

/// The exit for a load or store that faulted at `gpa`.
pub fn access_exit(access: &MemAccess, gpa: u64, regs: &[u64; 32]) -> VmExit {
    let gpa = GuestPhysAddr::new(gpa.wrapping_sub(access.addr_offset) as usize);
    match access.op {
        MemOp::Load { rd, sign_ext } => VmExit::MmioRead {
            gpa,
            width: access.width,
            reg: rd,
            sign_ext,
        },
        MemOp::Store { rs2 } => VmExit::MmioWrite {
            gpa,
            width: access.width,
            value: load_value(access.width, false, gpr(regs, rs2)),
        },
    }
}

/// Decodes a synchronous trap from the guest. `fetch` reads the trapping instruction from
/// guest memory (16 or 32 bits); it is called only when the hardware did not describe the
/// instruction (`htinst` = 0 on a guest-page fault, `stval` = 0 on a virtual instruction)
/// and may return `None` when it cannot.
pub fn decode_trap(
    trap: &Trap,
    regs: &[u64; 32],
    info: &VCpuInfo,
    fetch: impl FnOnce() -> Option<u32>,
) -> TrapAction {
    let Trap {
        scause,
        stval,
        htval,
        htinst,
        from_vu,
    } = *trap;
    let exit = |exit, pc_step| TrapAction::Exit { exit, pc_step };
    match scause {
        cause::VS_ECALL => TrapAction::Sbi(decode_sbi(regs, info)),
        cause::INSN_GUEST_PAGE_FAULT => exit(
            VmExit::NestedPageFault {
                gpa: GuestPhysAddr::new(fault_gpa(htval, stval) as usize),
                access: MappingFlags::EXECUTE,
            },
            0,
        ),
        cause::LOAD_GUEST_PAGE_FAULT | cause::STORE_GUEST_PAGE_FAULT => {
            let store = scause == cause::STORE_GUEST_PAGE_FAULT;
            let gpa = fault_gpa(htval, stval);
            let access = if htinst != 0 {
                decode_transformed(htinst)
            } else {
                fetch().and_then(decode_raw)
            };
            // The instruction must be the kind of access the fault says (a load for a load
            // fault); anything else (AMOs, FP, implicit page-table accesses) is a plain
            // nested page fault for the VMM.
            match access {
                Some(a) if matches!(a.op, MemOp::Store { .. }) == store => {
                    exit(access_exit(&a, gpa, regs), a.len)
                }
                _ => exit(
                    VmExit::NestedPageFault {
                        gpa: GuestPhysAddr::new(gpa as usize),
                        access: if store {
                            MappingFlags::WRITE
                        } else {
                            MappingFlags::READ
                        },
                    },
                    0,
                ),
            }
        }
        cause::VIRTUAL_INSN => {
            let insn = match stval {
                0 => fetch().map_or(0, u64::from),
                v => v,
            };
            // A wfi from VU mode is illegal, as it is in U mode on a real machine.
            if insn == WFI as u64 && !from_vu {
                exit(VmExit::Halt, 4)
            } else {
                TrapAction::Inject {
                    cause: cause::ILLEGAL_INSN,
                    tval: insn,
                }
            }
        }
        // An access fault at HS (not delegated): the G-stage translated, and the access (or
        // an implicit access of the guest's own page-table walk) then faulted, as on a
        // machine without the hypervisor. The guest gets the same fault, with its address.
        cause::INSN_ACCESS_FAULT | cause::LOAD_ACCESS_FAULT | cause::STORE_ACCESS_FAULT => {
            TrapAction::Inject {
                cause: scause,
                tval: stval,
            }
        }
        _ => exit(
            VmExit::Unsupported {
                reason: "exception from the guest not emulated",
                syndrome: scause,
            },
            0,
        ),
    }
}

/// DBCN `console_write` (`console_read` with `read`): `a0` = byte count, `a1`/`a2` = the
/// low and high halves of the guest-physical address (the high half must be 0 on RV64).
fn dbcn_memory(count: u64, lo: u64, hi: u64, read: bool) -> SbiAction {
    let invalid = SbiAction::Reply {
        a0: sbi::ERR_INVALID_PARAM,
        a1: None,
    };
    if hi != 0 || lo.checked_add(count).is_none() {
        return invalid;
    }
    if count == 0 || read {
        // Nothing to write; and there is no console input, so a read returns no bytes.
        return SbiAction::Reply {
            a0: sbi::SUCCESS,
            a1: Some(0),
        };
    }
    SbiAction::ConsoleWrite {
        addr: lo,
        len: count.min(sbi::DBCN_WRITE_MAX),
    }
}

/// Decodes an SBI call (`a7` = extension, `a6` = function, `a0`..`a5` = arguments).
pub fn decode_sbi(regs: &[u64; 32], info: &VCpuInfo) -> SbiAction {
    let a = |i: usize| regs[10 + i];
    let (eid, fid) = (regs[17], regs[16]);
    let ok = |v| SbiAction::Reply {
        a0: sbi::SUCCESS,
        a1: Some(v),
    };
    let err = |e| SbiAction::Reply { a0: e, a1: None };
    let exit = |exit, ret| SbiAction::Exit { exit, ret };
    match eid {
        sbi::EXT_BASE => match fid {
            sbi::BASE_GET_SPEC_VERSION => ok(sbi::SPEC_VERSION),
            sbi::BASE_GET_IMPL_ID => ok(sbi::IMPL_ID),
            sbi::BASE_GET_IMPL_VERSION => ok(sbi::IMPL_VERSION),
            sbi::BASE_PROBE_EXTENSION => ok(probe(a(0)) as u64),
            sbi::BASE_GET_MVENDORID | sbi::BASE_GET_MARCHID | sbi::BASE_GET_MIMPID => ok(0),
            _ => err(sbi::ERR_NOT_SUPPORTED),
        },
        sbi::EXT_TIME => match fid {
            sbi::TIME_SET_TIMER => SbiAction::SetTimer { deadline: a(0) },
            _ => err(sbi::ERR_NOT_SUPPORTED),
        },
        sbi::LEGACY_SET_TIMER => SbiAction::SetTimer { deadline: a(0) },
        sbi::LEGACY_CONSOLE_PUTCHAR => exit(
            VmExit::Hypercall {
                nr: crate::SBI_CONSOLE_PUTCHAR_NR,
            },
            RetKind::Legacy,
        ),
        // No console input: "no character".
        sbi::LEGACY_CONSOLE_GETCHAR => SbiAction::Reply {
            a0: u64::MAX,
            a1: None,
        },
        sbi::LEGACY_SHUTDOWN => exit(VmExit::SystemOff, RetKind::Legacy),
        sbi::EXT_DBCN => match fid {
            sbi::DBCN_WRITE_BYTE => exit(
                VmExit::Hypercall {
                    nr: crate::SBI_CONSOLE_PUTCHAR_NR,
                },
                RetKind::Value,
            ),
            sbi::DBCN_WRITE => dbcn_memory(a(0), a(1), a(2), false),
            sbi::DBCN_READ => dbcn_memory(a(0), a(1), a(2), true),
            _ => err(sbi::ERR_NOT_SUPPORTED),
        },
        sbi::EXT_SRST => match (fid, a(0)) {
            (0, sbi::SRST_SHUTDOWN) => exit(VmExit::SystemOff, RetKind::Status),
            (0, sbi::SRST_COLD_REBOOT | sbi::SRST_WARM_REBOOT) => {
                exit(VmExit::SystemReset, RetKind::Status)
            }
            (0, _) => err(sbi::ERR_INVALID_PARAM),
            _ => err(sbi::ERR_NOT_SUPPORTED),
        },
        sbi::EXT_HSM => match fid {
            sbi::HSM_HART_START => exit(
                VmExit::CpuUp {
                    target: a(0),
                    entry: GuestPhysAddr::new(a(1) as usize),
                    arg: a(2),
                },
                RetKind::Power,
            ),
            sbi::HSM_HART_STOP => exit(VmExit::CpuDown, RetKind::Status),
            // The caller is running; the VM knows the other harts.
            sbi::HSM_HART_GET_STATUS if a(0) == info.hart_id => ok(sbi::HSM_STARTED),
            sbi::HSM_HART_GET_STATUS => exit(VmExit::CpuStatus { target: a(0) }, RetKind::Power),
            // No suspend type is supported: reserved ones are invalid, the defined and
            // platform-specific ones not supported.
            sbi::HSM_HART_SUSPEND if reserved_suspend_type(a(0)) => err(sbi::ERR_INVALID_PARAM),
            _ => err(sbi::ERR_NOT_SUPPORTED),
        },
        sbi::EXT_IPI => match fid {
            sbi::IPI_SEND_IPI => match HartSet::decode(a(0), a(1), info.harts) {
                Ok(harts) => SbiAction::Ipi(harts),
                Err(e) => err(e),
            },
            _ => err(sbi::ERR_NOT_SUPPORTED),
        },
        sbi::EXT_RFENCE => {
            let fence = match fid {
                sbi::RFENCE_FENCE_I => Fence::Icache,
                sbi::RFENCE_SFENCE_VMA | sbi::RFENCE_SFENCE_VMA_ASID => Fence::Vma,
                // The hfence functions are for guests with the H extension: ours have none.
                _ => return err(sbi::ERR_NOT_SUPPORTED),
            };
            match HartSet::decode(a(0), a(1), info.harts) {
                Ok(harts) => SbiAction::Fence { fence, harts },
                Err(e) => err(e),
            }
        }
        sbi::EXT_AXVISOR => exit(VmExit::Hypercall { nr: fid }, RetKind::Value),
        _ => err(sbi::ERR_NOT_SUPPORTED),
    }
}

/// Whether `suspend_type` (32 bits) is reserved by HSM `hart_suspend`: 0x0000_0001..=
/// 0x0FFF_FFFF and 0x8000_0001..=0x8FFF_FFFF (0 and 0x8000_0000 are the default retentive
/// and non-retentive types, 0x1000_0000.. and 0x9000_0000.. platform-specific).
fn reserved_suspend_type(suspend_type: u64) -> bool {
    suspend_type > u64::from(u32::MAX) || matches!(suspend_type & 0x7fff_ffff, 1..=0x0fff_ffff)
}

/// `probe_extension`: whether the vCPU implements extension `eid`.
pub fn probe(eid: u64) -> bool {
    matches!(
        eid,
        sbi::EXT_BASE
            | sbi::EXT_DBCN
            | sbi::EXT_HSM
            | sbi::EXT_SRST
            | sbi::EXT_IPI
            | sbi::EXT_RFENCE
            | sbi::EXT_AXVISOR
            | sbi::EXT_TIME
            | sbi::LEGACY_SET_TIMER
            | sbi::LEGACY_CONSOLE_PUTCHAR
            | sbi::LEGACY_CONSOLE_GETCHAR
            | sbi::LEGACY_SHUTDOWN
    )
}

#[cfg(test)]
mod tests;
