//! Calls into OpenSBI.

use crate::cpu::StartError;
use crate::platform;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use sbi_rt::HartMask;

/// Whether the CPU has Sstc (`stimecmp`), from the boot hart's `riscv,isa`.
pub(super) static HAS_SSTC: AtomicBool = AtomicBool::new(false);

const CONSOLE_UNKNOWN: u8 = 0;
const CONSOLE_DBCN: u8 = 1;
const CONSOLE_LEGACY: u8 = 2;
static CONSOLE: AtomicU8 = AtomicU8::new(CONSOLE_UNKNOWN);

/// Writes one byte through the SBI debug console (DBCN), or the legacy console call when the
/// firmware has no DBCN (OpenSBI before 1.3, as in QEMU 7.2).
pub fn putchar(b: u8) {
    let mut how = CONSOLE.load(Ordering::Relaxed);
    if how == CONSOLE_UNKNOWN {
        how = if sbi_rt::probe_extension(sbi_rt::Console).is_available() {
            CONSOLE_DBCN
        } else {
            CONSOLE_LEGACY
        };
        CONSOLE.store(how, Ordering::Relaxed);
    }
    if how == CONSOLE_DBCN {
        sbi_rt::console_write_byte(b);
    } else {
        // Deprecated by DBCN, but the only console older firmware offers.
        #[allow(deprecated)]
        sbi_rt::legacy::console_putchar(b as usize);
    }
}

/// Arms the S-mode timer for `ticks` (`u64::MAX`: never). With Sstc this writes `stimecmp`
/// directly; otherwise it asks the firmware. Either way a pending timer interrupt clears.
pub fn set_timer_deadline(ticks: u64) {
    if HAS_SSTC.load(Ordering::Relaxed) {
        // SAFETY: writes stimecmp (CSR 0x14d), which only affects the S-mode timer interrupt.
        unsafe { core::arch::asm!("csrw 0x14d, {}", in(reg) ticks) };
    } else {
        sbi_rt::set_timer(ticks);
    }
}

/// Sends a supervisor software interrupt to logical CPU `cpu`.
pub fn send_ipi(cpu: usize) {
    let hart = platform::info().cpus[cpu].hw_id;
    sbi_rt::send_ipi(HartMask::from_mask_base(1, hart));
}

/// Starts hart `hw_id` at the secondary entry point through SBI HSM, passing `cpu`.
pub fn start_cpu(cpu: usize, hw_id: usize, stack_top: usize) -> Result<(), StartError> {
    crate::boot::set_secondary_stack(cpu, stack_top);
    super::boot::set_starting_cpu(cpu);
    let ret = sbi_rt::hart_start(hw_id, crate::boot::secondary_entry_addr(), cpu);
    match ret.is_ok() {
        true => Ok(()),
        false => Err(StartError::Firmware(ret.error as isize)),
    }
}

/// SBI SRST shutdown (legacy shutdown if SRST is missing); QEMU exits with status 0.
pub fn system_off() -> ! {
    sbi_rt::system_reset(sbi_rt::Shutdown, sbi_rt::NoReason);
    // Only reached on firmware without SRST.
    #[allow(deprecated)]
    sbi_rt::legacy::shutdown()
}
