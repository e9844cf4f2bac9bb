//! Starting and stopping the VM's other vCPUs (PSCI CPU_ON / AFFINITY_INFO / CPU_OFF on
//! aarch64, SBI HSM hart_start / hart_get_status / hart_stop on riscv64).
//!
//! vCPU `i` is MPIDR affinity `i` / hart `i`, as the hypervisor numbers them. A started vCPU
//! runs `f(i)` on its own stack (one of [`MAX_CPUS`] - 1 in `.bss`) with grt's vectors, and
//! stops itself when `f` returns. grt's exception handling is not re-entrant across vCPUs:
//! secondary vCPUs must not print or fault while another vCPU does.

use core::cell::UnsafeCell;

use crate::arch;

/// vCPUs a grt guest can use (0 is the boot vCPU).
pub const MAX_CPUS: usize = 4;

/// Stack size of each secondary vCPU.
const STACK_SIZE: usize = 16 * 1024;

/// A vCPU's power state, as the hypervisor reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuState {
    /// Running.
    On,
    /// Off (never started, or stopped).
    Off,
    /// Being started.
    Pending,
}

/// Why a power call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerError {
    /// The target names no vCPU of the VM.
    InvalidTarget,
    /// The target is already on.
    AlreadyOn,
    /// The entry address is not usable.
    InvalidAddress,
    /// Any other answer: the raw return value.
    Other(i64),
}

impl PowerError {
    /// The error of a PSCI-numbered result (aarch64's PSCI, x86_64's power hypercalls):
    /// -2 invalid target, -4 already on, -9 invalid address.
    #[cfg(any(target_arch = "aarch64", target_arch = "x86_64"))]
    pub(crate) fn from_psci(ret: u64) -> Self {
        match ret as i64 {
            -2 => PowerError::InvalidTarget,
            -4 => PowerError::AlreadyOn,
            -9 => PowerError::InvalidAddress,
            other => PowerError::Other(other),
        }
    }
}

/// The result of a PSCI-numbered CPU_ON: 0 or an error.
#[cfg(any(target_arch = "aarch64", target_arch = "x86_64"))]
pub(crate) fn psci_on_result(ret: u64) -> Result<(), PowerError> {
    match ret {
        0 => Ok(()),
        e => Err(PowerError::from_psci(e)),
    }
}

/// The result of a PSCI-numbered vCPU state query (AFFINITY_INFO, x86_64's CPU_STATUS):
/// 0 on, 1 off, 2 starting, or an error.
#[cfg(any(target_arch = "aarch64", target_arch = "x86_64"))]
pub(crate) fn psci_status_result(ret: u64) -> Result<CpuState, PowerError> {
    match ret {
        0 => Ok(CpuState::On),
        1 => Ok(CpuState::Off),
        2 => Ok(CpuState::Pending),
        e => Err(PowerError::from_psci(e)),
    }
}

/// What a starting vCPU finds through its argument register (layout shared with the
/// architecture's `grt_secondary_entry`): its stack top first.
#[repr(C)]
struct Boot {
    stack_top: u64,
    func: u64,
    cpu: u64,
}

/// The boot blocks and stacks of the secondary vCPUs. Written by vCPU 0 before it starts
/// vCPU `i`, read by vCPU `i` only after that.
struct Secondaries {
    boots: UnsafeCell<[Boot; MAX_CPUS]>,
    stacks: UnsafeCell<[[u128; STACK_SIZE / 16]; MAX_CPUS]>,
}

// SAFETY: each vCPU's slot is written only while that vCPU is off (by `cpu_on`, which
// checks the hypervisor's answer) and read by that vCPU after it starts.
unsafe impl Sync for Secondaries {}

static SECONDARIES: Secondaries = Secondaries {
    boots: UnsafeCell::new(
        [const {
            Boot {
                stack_top: 0,
                func: 0,
                cpu: 0,
            }
        }; MAX_CPUS],
    ),
    stacks: UnsafeCell::new([[0; STACK_SIZE / 16]; MAX_CPUS]),
};

/// Starts vCPU `cpu` (1..[`MAX_CPUS`]) running `f(cpu)`; it stops itself when `f` returns.
/// The vCPU must be off.
pub fn cpu_on(cpu: usize, f: fn(usize)) -> Result<(), PowerError> {
    if cpu == 0 || cpu >= MAX_CPUS {
        return Err(PowerError::InvalidTarget);
    }
    if cpu_status(cpu)? != CpuState::Off {
        return Err(PowerError::AlreadyOn);
    }
    // SAFETY: vCPU `cpu` is off, so nothing reads its slot while it is written.
    let boot = unsafe {
        let stack_top = (*SECONDARIES.stacks.get())[cpu].as_ptr_range().end as u64;
        let boot = &mut (*SECONDARIES.boots.get())[cpu];
        boot.stack_top = stack_top;
        boot.func = f as usize as u64;
        boot.cpu = cpu as u64;
        boot as *const Boot as u64
    };
    cpu_on_raw(cpu as u64, secondary_entry(), boot)
}

/// The address of the architecture's `grt_secondary_entry` (in `arch`'s assembly).
fn secondary_entry() -> u64 {
    extern "C" {
        fn grt_secondary_entry();
    }
    grt_secondary_entry as *const () as usize as u64
}

/// The raw power call: start vCPU `target` (architecture id) at `entry` with `arg` in its
/// argument register.
pub fn cpu_on_raw(target: u64, entry: u64, arg: u64) -> Result<(), PowerError> {
    arch::cpu_on(target, entry, arg)
}

/// The power state of vCPU `cpu`.
pub fn cpu_status(cpu: usize) -> Result<CpuState, PowerError> {
    arch::cpu_status(cpu as u64)
}

/// Stops the calling vCPU.
pub fn cpu_off() -> ! {
    arch::cpu_off()
}

/// Called by `grt_secondary_entry` on the new vCPU's stack.
#[no_mangle]
extern "C" fn grt_secondary_start(boot: &Boot) -> ! {
    // SAFETY: `func` was stored from an `fn(usize)` by `cpu_on`.
    let f = unsafe { core::mem::transmute::<usize, fn(usize)>(boot.func as usize) };
    f(boot.cpu as usize);
    cpu_off()
}
