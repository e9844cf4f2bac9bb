//! VMX operation on this CPU: capabilities, VMXON, and the VMX instructions (x86_64 bare
//! metal only).

use crate::caps::{msr, Controls, VmxCaps};
use crate::vmcs::field;
use alloc::alloc::{alloc_zeroed, Layout};
use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

/// Why VMX cannot run on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxError {
    /// CPUID says the CPU has no VMX (an AMD CPU, or VMX hidden by a hypervisor below us):
    /// its capability MSRs do not exist, so they are not read.
    NotPresent,
    /// The capabilities fall short ([`crate::caps::CapsError`]).
    Caps(crate::caps::CapsError),
    /// IA32_FEATURE_CONTROL is locked with VMX outside SMX disabled (firmware turned VMX
    /// off).
    DisabledByFirmware,
    /// No memory for the VMXON region.
    NoMemory,
    /// VMXON failed (RFLAGS.CF or ZF).
    VmxonFailed,
}

impl fmt::Display for VmxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmxError::NotPresent => f.write_str("this CPU has no VMX (CPUID leaf 1 ECX bit 5)"),
            VmxError::Caps(e) => write!(f, "{e}"),
            VmxError::DisabledByFirmware => {
                f.write_str("VMX is disabled by firmware (IA32_FEATURE_CONTROL locked)")
            }
            VmxError::NoMemory => f.write_str("no memory for the VMXON region"),
            VmxError::VmxonFailed => f.write_str("VMXON failed"),
        }
    }
}

/// The machine's capabilities and controls, computed on the first CPU that enables VMX.
static CAPS: spin::Once<Result<(VmxCaps, Controls), VmxError>> = spin::Once::new();

/// Per-CPU: VMXON done.
static ON: [AtomicBool; 256] = [const { AtomicBool::new(false) }; 256];

/// The capabilities and controls (after [`enable`] succeeded once).
pub fn caps() -> Option<&'static (VmxCaps, Controls)> {
    CAPS.get().and_then(|r| r.as_ref().ok())
}

/// A zeroed, 4 KiB-aligned frame (its physical address: RAM is identity-mapped).
pub fn alloc_frame() -> Option<u64> {
    let layout = Layout::from_size_align(0x1000, 0x1000).ok()?;
    // SAFETY: the layout has a non-zero size; the frame is never freed while VMX may use
    // it (VMXON regions live for the CPU's lifetime; VMCS frames belong to their vCPU).
    let p = unsafe { alloc_zeroed(layout) };
    (!p.is_null()).then_some(p as u64)
}

/// Frees a frame from [`alloc_frame`] that VMX no longer uses.
pub fn free_frame(pa: u64) {
    if let Ok(layout) = Layout::from_size_align(0x1000, 0x1000) {
        // SAFETY: `pa` came from `alloc_frame` with this layout and is no longer current
        // or active on any CPU (the caller cleared it).
        unsafe { alloc::alloc::dealloc(pa as *mut u8, layout) };
    }
}

/// Enters VMX operation on this CPU (once; later calls return at once): checks the
/// capabilities and IA32_FEATURE_CONTROL, sets CR4.VMXE and the CR0/CR4 fixed bits, and
/// executes VMXON on a fresh region.
pub fn enable() -> Result<&'static (VmxCaps, Controls), VmxError> {
    let caps = CAPS
        .call_once(|| {
            // Reading a VMX capability MSR on a CPU without VMX raises #GP in the
            // hypervisor: CPUID first, once (every vCPU run calls `enable`).
            if !axhal::x86::Features::read().vmx {
                return Err(VmxError::NotPresent);
            }
            let caps = VmxCaps::read(regs::rdmsr);
            Controls::compute(&caps)
                .map(|c| (caps, c))
                .map_err(VmxError::Caps)
        })
        .as_ref()
        .map_err(|e| *e)?;
    let cpu = axhal::cpu::id();
    if ON[cpu % ON.len()].load(Ordering::Acquire) {
        return Ok(caps);
    }
    let fc = regs::rdmsr(msr::IA32_FEATURE_CONTROL);
    const LOCK: u64 = 1;
    const VMX_OUTSIDE_SMX: u64 = 1 << 2;
    if fc & LOCK == 0 {
        regs::wrmsr(msr::IA32_FEATURE_CONTROL, fc | LOCK | VMX_OUTSIDE_SMX);
    } else if fc & VMX_OUTSIDE_SMX == 0 {
        return Err(VmxError::DisabledByFirmware);
    }
    let region = alloc_frame().ok_or(VmxError::NoMemory)?;
    // SAFETY: `region` is a fresh frame of ours; the revision id goes in its first word.
    unsafe { (region as *mut u32).write(caps.0.revision_id()) };
    let (cr0, cr4): (u64, u64);
    // SAFETY: reads the control registers.
    unsafe {
        asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
    }
    let cr0 = caps.0.cr0_fixed().apply(cr0);
    // OSXSAVE lets the vCPUs switch the guests' XCR0 and extended state (the hypervisor
    // itself uses none: it is built soft-float).
    let osxsave = if xsave_supported() { CR4_OSXSAVE } else { 0 };
    let cr4 = caps.0.cr4_fixed().apply(cr4 | CR4_VMXE | osxsave);
    let ok: u8;
    // SAFETY: the fixed bits only add what VMX operation requires (NE, VMXE) to the host's
    // running values; VMXON takes the physical address of a region that stays allocated.
    unsafe {
        asm!("mov cr0, {}", in(reg) cr0, options(nostack));
        asm!("mov cr4, {}", in(reg) cr4, options(nostack));
        asm!(
            "vmxon [{p}]",
            "seta {ok}",
            p = in(reg) &region,
            ok = out(reg_byte) ok,
            options(nostack),
        );
    }
    if ok == 0 {
        return Err(VmxError::VmxonFailed);
    }
    ON[cpu % ON.len()].store(true, Ordering::Release);
    Ok(caps)
}

/// Host MSR access.
pub mod regs {
    use core::arch::asm;

    /// RDMSR.
    pub fn rdmsr(msr: u32) -> u64 {
        let (lo, hi): (u32, u32);
        // SAFETY: reads an MSR the caller knows exists (the VMX capability MSRs on a CPU
        // with VMX, architectural MSRs); no memory is touched.
        unsafe {
            asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack))
        };
        u64::from(hi) << 32 | u64::from(lo)
    }

    /// WRMSR.
    pub fn wrmsr(msr: u32, v: u64) {
        // SAFETY: writes an MSR the caller owns the meaning of (IA32_FEATURE_CONTROL at
        // VMX enable, the guest's SYSCALL MSRs while its vCPU is loaded).
        unsafe {
            asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack))
        };
    }
}

/// CR4.VMXE.
pub const CR4_VMXE: u64 = 1 << 13;
/// CR4.OSXSAVE.
const CR4_OSXSAVE: u64 = 1 << 18;

/// CPUID.1:ECX.XSAVE.
fn xsave_supported() -> bool {
    core::arch::x86_64::__cpuid_count(1, 0).ecx & (1 << 26) != 0
}

/// Whether the vCPUs use XSAVE for the guests' extended state (the CPU has it; [`enable`]
/// sets the host's CR4.OSXSAVE).
pub fn xsave_enabled() -> bool {
    xsave_supported()
}

/// VMCLEAR of the VMCS at `pa`; `false` if it failed.
pub fn vmclear(pa: u64) -> bool {
    let ok: u8;
    // SAFETY: `pa` is a VMCS region the caller owns.
    unsafe { asm!("vmclear [{}]", "seta {}", in(reg) &pa, out(reg_byte) ok, options(nostack)) };
    ok != 0
}

/// VMPTRLD of the VMCS at `pa`; `false` if it failed.
pub fn vmptrld(pa: u64) -> bool {
    let ok: u8;
    // SAFETY: `pa` is a VMCS region the caller owns, with the revision id written.
    unsafe { asm!("vmptrld [{}]", "seta {}", in(reg) &pa, out(reg_byte) ok, options(nostack)) };
    ok != 0
}

/// VMREAD of `f` from the current VMCS (0 if it fails: a field every CPU has).
#[inline]
pub fn read(f: u32) -> u64 {
    let v: u64;
    // SAFETY: reads a field of the current VMCS; no memory is touched.
    unsafe { asm!("vmread {}, {}", out(reg) v, in(reg) u64::from(f), options(nomem, nostack)) };
    v
}

/// VMWRITE of `v` to `f` in the current VMCS.
#[inline]
pub fn write(f: u32, v: u64) {
    // SAFETY: writes a field of the current VMCS, which belongs to the calling vCPU;
    // VM entry checks every value.
    unsafe { asm!("vmwrite {}, {}", in(reg) u64::from(f), in(reg) v, options(nomem, nostack)) };
}

/// INVEPT single-context for `eptp`.
pub fn invept(eptp: u64) {
    let desc = [eptp, 0u64];
    // SAFETY: type 1 (single-context) with a valid descriptor; only TLBs are affected.
    unsafe { asm!("invept {}, [{}]", in(reg) 1u64, in(reg) &desc, options(nostack)) };
}

/// INVVPID single-context for `vpid`.
pub fn invvpid(vpid: u16) {
    let desc = [u64::from(vpid), 0u64];
    // SAFETY: type 1 (single-context) with a valid descriptor; only TLBs are affected.
    unsafe { asm!("invvpid {}, [{}]", in(reg) 1u64, in(reg) &desc, options(nostack)) };
}

/// The VM-instruction error of the current VMCS.
pub fn instruction_error() -> u32 {
    read(field::VM_INSTRUCTION_ERROR) as u32
}
