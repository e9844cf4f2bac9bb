//! Calls into OpenSBI.

use crate::cpu::StartError;
use crate::deadlines::Deadlines;
use crate::platform;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use sbi_rt::HartMask;

/// Whether the CPU has Sstc (`stimecmp`), from the boot hart's `riscv,isa`.
pub(super) static HAS_SSTC: AtomicBool = AtomicBool::new(false);

const CONSOLE_UNKNOWN: u8 = 0;
const CONSOLE_DBCN: u8 = 1;
const CONSOLE_LEGACY: u8 = 2;
static CONSOLE: AtomicU8 = AtomicU8::new(CONSOLE_UNKNOWN);

/// How the firmware's console is reached: DBCN, or the legacy calls when the firmware has no
/// DBCN (OpenSBI before 1.3, as in QEMU 7.2). Probed once.
fn console_kind() -> u8 {
    let mut how = CONSOLE.load(Ordering::Relaxed);
    if how == CONSOLE_UNKNOWN {
        how = if sbi_rt::probe_extension(sbi_rt::Console).is_available() {
            CONSOLE_DBCN
        } else {
            CONSOLE_LEGACY
        };
        CONSOLE.store(how, Ordering::Relaxed);
    }
    how
}

/// Writes one byte through the SBI debug console (DBCN), or the legacy console call when the
/// firmware has no DBCN.
pub fn putchar(b: u8) {
    if console_kind() == CONSOLE_DBCN {
        sbi_rt::console_write_byte(b);
    } else {
        // Deprecated by DBCN, but the only console older firmware offers.
        #[allow(deprecated)]
        sbi_rt::legacy::console_putchar(b as usize);
    }
}

/// The next byte the firmware's console received, if there is one (the firmware does not
/// wait): DBCN's read, or the legacy `console_getchar` (-1 when nothing waits).
pub fn getchar() -> Option<u8> {
    if console_kind() == CONSOLE_DBCN {
        let mut byte = [0u8; 1];
        // RAM is identity-mapped, so the buffer's address is its physical address.
        let addr = byte.as_mut_ptr() as usize;
        let ret = sbi_rt::console_read(sbi_rt::Physical::new(1, addr, 0));
        (ret.is_ok() && ret.value == 1).then_some(byte[0])
    } else {
        #[allow(deprecated)]
        let c = sbi_rt::legacy::console_getchar();
        u8::try_from(c).ok()
    }
}

/// This CPU's timer deadlines: the hypervisor's own ([`set_timer_deadline`]) and the one a
/// running guest's emulated timer needs ([`set_guest_deadline`], CPUs without Sstc).
static DEADLINES: Deadlines = Deadlines::new();

/// Arms the S-mode timer for `ticks` (`u64::MAX`: never). With Sstc this writes `stimecmp`
/// directly; otherwise it asks the firmware. Either way a pending timer interrupt clears.
fn arm(ticks: u64) {
    if HAS_SSTC.load(Ordering::Relaxed) {
        // SAFETY: writes stimecmp (CSR 0x14d), which only affects the S-mode timer interrupt.
        unsafe { core::arch::asm!("csrw 0x14d, {}", in(reg) ticks) };
    } else {
        sbi_rt::set_timer(ticks);
    }
}

/// Sets the hypervisor's own timer deadline on this CPU to `ticks` (`u64::MAX`: none); the
/// timer interrupts at it, or earlier for a guest deadline.
pub fn set_timer_deadline(ticks: u64) {
    DEADLINES.set_host(ticks, arm);
}

/// Sets the deadline of the guest running on this CPU (`u64::MAX`: none). The hardware is
/// re-armed only when it changes: without Sstc that is a call into the firmware.
pub(super) fn set_guest_deadline(ticks: u64) {
    DEADLINES.set_guest(ticks, arm);
}

/// On a timer interrupt, before its handler runs (`crate::deadlines`).
pub(super) fn on_timer_interrupt() {
    DEADLINES.on_timer_interrupt(super::now_ticks(), arm);
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
