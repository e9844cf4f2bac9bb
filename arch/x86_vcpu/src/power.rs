//! The x86 power hypercalls (`vmcall` on VMX, `vmmcall` on SVM; RAX = number; docs/x86.md,
//! "Hypercalls"): the PSCI / SBI HSM equivalents of the other architectures, and what both
//! backends make of a hypercall. Pure, unit-tested.

use axaddrspace::GuestPhysAddr;
use axvcpu::{PowerReply, PowerState, VmExit};

/// Powers the VM off.
pub const SYSTEM_OFF: u64 = 0x200;
/// Resets the VM.
pub const SYSTEM_RESET: u64 = 0x201;
/// Starts vCPU RDI at RIP = RSI with RDI = RDX.
pub const CPU_ON: u64 = 0x202;
/// Stops the calling vCPU.
pub const CPU_OFF: u64 = 0x203;
/// The power state of vCPU RDI: 0 on, 1 off, 2 starting.
pub const CPU_STATUS: u64 = 0x204;

/// The exit for the VMM of hypercall `nr` with arguments `a` = RDI, RSI, RDX (after the
/// ones the vCPU answers itself, `axvcpu::hypercall::fixed_answer`).
pub fn exit(nr: u64, a: [u64; 3]) -> VmExit {
    match nr {
        SYSTEM_OFF => VmExit::SystemOff,
        SYSTEM_RESET => VmExit::SystemReset,
        CPU_ON => VmExit::CpuUp {
            target: a[0],
            entry: GuestPhysAddr::new(a[1] as usize),
            arg: a[2],
        },
        CPU_OFF => VmExit::CpuDown,
        CPU_STATUS => VmExit::CpuStatus { target: a[0] },
        _ => VmExit::Hypercall { nr },
    }
}

/// RAX after a power call: 0, or -2 no such vCPU, -4 already on, -5 being started, -9 bad
/// entry; a status is 0 on, 1 off, 2 starting.
pub fn reply_code(reply: PowerReply) -> u64 {
    match reply {
        PowerReply::Done => 0,
        PowerReply::AlreadyOn => -4i64 as u64,
        PowerReply::OnPending => -5i64 as u64,
        PowerReply::InvalidTarget => -2i64 as u64,
        PowerReply::InvalidAddress => -9i64 as u64,
        PowerReply::Status(PowerState::On) => 0,
        PowerReply::Status(PowerState::Off) => 1,
        PowerReply::Status(PowerState::Pending) => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_replies() {
        assert_eq!(exit(SYSTEM_OFF, [0; 3]), VmExit::SystemOff);
        assert_eq!(exit(CPU_STATUS, [3, 0, 0]), VmExit::CpuStatus { target: 3 });
        assert_eq!(
            exit(CPU_ON, [1, 0x20_0000, 7]),
            VmExit::CpuUp {
                target: 1,
                entry: GuestPhysAddr::new(0x20_0000),
                arg: 7
            }
        );
        assert_eq!(exit(0x999, [0; 3]), VmExit::Hypercall { nr: 0x999 });
        assert_eq!(reply_code(PowerReply::AlreadyOn), -4i64 as u64);
        assert_eq!(reply_code(PowerReply::OnPending), -5i64 as u64);
        assert_eq!(reply_code(PowerReply::Status(PowerState::Pending)), 2);
    }
}
