//! SVM operation on this CPU: CPUID's SVM leaf, VM_CR, EFER.SVME, the host save area, and
//! the SVM instructions (x86_64 bare metal only).

use crate::vmx::regs;
use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// VM_CR: bit 4 SVMDIS (firmware turned SVM off).
const MSR_VM_CR: u32 = 0xc001_0114;
/// VM_HSAVE_PA: where VMRUN saves the host's state.
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const VM_CR_SVMDIS: u64 = 1 << 4;
const EFER_SVME: u64 = 1 << 12;
/// EFER.NXE: nested page-table walks take the host's, and without it an NPT leaf's NX bit
/// (every mapping without execute) is a reserved bit.
const EFER_NXE: u64 = 1 << 11;
/// CR4.OSXSAVE.
const CR4_OSXSAVE: u64 = 1 << 18;

/// Why SVM cannot run on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvmError {
    /// CPUID 0x8000_0001 ECX bit 2 is clear.
    NotPresent,
    /// VM_CR.SVMDIS is set: firmware disabled SVM.
    DisabledByFirmware,
    /// CPUID 0x8000_000A EDX bit 0: no nested paging.
    NoNestedPaging,
    /// Fewer than two ASIDs (ASID 0 is the host's).
    NoAsids,
    /// No memory for the host save areas.
    NoMemory,
}

impl fmt::Display for SvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotPresent => "this CPU has no SVM (CPUID 0x80000001 ECX bit 2)",
            Self::DisabledByFirmware => "SVM is disabled by firmware (VM_CR.SVMDIS)",
            Self::NoNestedPaging => "the CPU has no nested paging (CPUID 0x8000000A EDX bit 0)",
            Self::NoAsids => "the CPU reports fewer than two ASIDs",
            Self::NoMemory => "no memory for the host save areas",
        })
    }
}

/// What CPUID 0x8000_000A says.
#[derive(Clone, Copy, Debug)]
pub struct SvmCaps {
    /// Number of ASIDs (ASID 0 is the host's).
    pub asids: u32,
    /// EDX feature bits (bit 0 nested paging, 3 NRIP-save, 6 flush-by-ASID, ...).
    pub features: u32,
}

/// Whether the CPU has SVM (CPUID 0x8000_0001 ECX bit 2).
pub fn present() -> bool {
    axhal::x86::Features::read().svm
}

/// The SVM capabilities (CPUID 0x8000_000A).
pub fn caps() -> SvmCaps {
    let r = core::arch::x86_64::__cpuid(0x8000_000a);
    SvmCaps {
        asids: r.ebx,
        features: r.edx,
    }
}

/// Per CPU (0: SVM not enabled there yet): the frame VMSAVE keeps the host's FS/GS/TR/LDTR and SYSCALL MSRs in around a
/// guest's run.
static HOST_AREA: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// Enables SVM on this CPU (once; later calls return at once): checks CPUID and VM_CR,
/// sets EFER.SVME and EFER.NXE (every CPU with SVM has NX) and CR4.OSXSAVE when the CPU
/// has XSAVE, and gives VM_HSAVE_PA a frame, which lives as long as the CPU.
/// Returns the host area for VMSAVE/VMLOAD around a run.
pub fn enable() -> Result<u64, SvmError> {
    if !present() {
        return Err(SvmError::NotPresent);
    }
    let c = caps();
    if c.features & 1 == 0 {
        return Err(SvmError::NoNestedPaging);
    }
    if c.asids < 2 {
        return Err(SvmError::NoAsids);
    }
    let cpu = axhal::cpu::id() % HOST_AREA.len();
    let area = HOST_AREA[cpu].load(Ordering::Acquire);
    if area != 0 {
        return Ok(area);
    }
    if regs::rdmsr(MSR_VM_CR) & VM_CR_SVMDIS != 0 {
        return Err(SvmError::DisabledByFirmware);
    }
    let hsave = crate::vmx::alloc_frame().ok_or(SvmError::NoMemory)?;
    let Some(area) = crate::vmx::alloc_frame() else {
        crate::vmx::free_frame(hsave);
        return Err(SvmError::NoMemory);
    };
    let efer = regs::rdmsr(crate::msr::nr::IA32_EFER);
    regs::wrmsr(crate::msr::nr::IA32_EFER, efer | EFER_SVME | EFER_NXE);
    regs::wrmsr(MSR_VM_HSAVE_PA, hsave);
    if crate::vmx::xsave_enabled() {
        let cr4: u64;
        // SAFETY: sets CR4.OSXSAVE on a CPU with XSAVE, so the vCPUs can switch the
        // guests' XCR0 and extended state (the hypervisor itself is soft-float).
        unsafe {
            asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
            asm!("mov cr4, {}", in(reg) cr4 | CR4_OSXSAVE, options(nomem, nostack));
        }
    }
    HOST_AREA[cpu].store(area, Ordering::Release);
    Ok(area)
}
