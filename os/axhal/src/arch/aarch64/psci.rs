//! PSCI calls to the firmware (QEMU's built-in PSCI; conduit from the DTB).

use crate::cpu::StartError;
use crate::platform;
use axconfig::dtb::PsciMethod;

const CPU_ON: u64 = 0xC400_0003;
const SYSTEM_OFF: u64 = 0x8400_0008;

fn call(method: PsciMethod, fid: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    // SAFETY: a PSCI call clobbers at most x0-x17 (SMCCC); we declare x0-x3 and mark the rest
    // as clobbered. It touches no memory of ours.
    unsafe {
        match method {
            PsciMethod::Smc => core::arch::asm!(
                "smc #0",
                inlateout("x0") fid => ret, in("x1") a1, in("x2") a2, in("x3") a3,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
                out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            ),
            PsciMethod::Hvc => core::arch::asm!(
                "hvc #0",
                inlateout("x0") fid => ret, in("x1") a1, in("x2") a2, in("x3") a3,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
                out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            ),
        }
    }
    ret
}

/// The conduit: from the DTB once parsed; SMC before (QEMU with virtualization=on uses SMC).
fn method() -> PsciMethod {
    platform::info().psci.unwrap_or(PsciMethod::Smc)
}

/// Starts the CPU with MPIDR affinity `hw_id` at the secondary entry point, passing `cpu`.
pub fn start_cpu(cpu: usize, hw_id: usize, stack_top: usize) -> Result<(), StartError> {
    crate::boot::set_secondary_stack(cpu, stack_top);
    let entry = crate::boot::secondary_entry_addr();
    match call(method(), CPU_ON, hw_id as u64, entry as u64, cpu as u64) {
        0 => Ok(()),
        e => Err(StartError::Firmware(e as isize)),
    }
}

/// PSCI SYSTEM_OFF; QEMU exits with status 0.
pub fn system_off() -> ! {
    call(method(), SYSTEM_OFF, 0, 0, 0);
    crate::power::halt()
}
