//! The instructions every x86 module needs: port I/O, MSRs, CPUID, the TSC.

use core::arch::asm;

/// `in al, port`.
#[inline]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port reads of the devices the hypervisor drives (UART, PIT, ACPI PM); no memory
    // is touched.
    unsafe { asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack)) };
    v
}

/// `out port, al`.
#[inline]
pub fn outb(port: u16, v: u8) {
    // SAFETY: as for `inb`, a port write.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack)) };
}

/// `out port, ax`.
#[inline]
pub fn outw(port: u16, v: u16) {
    // SAFETY: as for `inb`, a port write.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack)) };
}

/// `in eax, port`.
#[inline]
pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for `inb`, a port read.
    unsafe { asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack)) };
    v
}

/// `out port, eax`.
#[inline]
pub fn outl(port: u16, v: u32) {
    // SAFETY: as for `inb`, a port write.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack)) };
}

/// `rdmsr`.
#[inline]
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only MSRs the CPU has (checked through CPUID by the callers) are read.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

/// `wrmsr`.
#[inline]
pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: only MSRs the CPU has are written, with values their users chose; none of them
    // changes the memory the compiler knows about.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32,
             options(nostack))
    };
}

/// `rdtsc`.
#[inline]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads the time-stamp counter.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

/// CPUID leaf `leaf`, sub-leaf `sub`: (EAX, EBX, ECX, EDX).
#[inline]
pub fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    let (a, b, c, d): (u32, u32, u32, u32);
    // SAFETY: CPUID has no side effect; RBX, which LLVM reserves, is saved around it.
    unsafe {
        asm!(
            "mov {tmp:r}, rbx",
            "cpuid",
            "xchg {tmp:r}, rbx",
            tmp = out(reg) b,
            inout("eax") leaf => a,
            inout("ecx") sub => c,
            out("edx") d,
            options(nomem, nostack),
        )
    };
    (a, b, c, d)
}

/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// IA32_GS_BASE.
pub const MSR_GS_BASE: u32 = 0xc000_0101;

/// What CPUID says about the features the hypervisor uses.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// Leaf 1 ECX bit 5: Intel VT-x.
    pub vmx: bool,
    /// Leaf 0x8000_0001 ECX bit 2: AMD-V.
    pub svm: bool,
    /// Leaf 1 ECX bit 21: the local APIC has x2APIC mode.
    pub x2apic: bool,
    /// Leaf 1 ECX bit 24: the APIC timer has TSC-deadline mode.
    pub tsc_deadline: bool,
    /// Leaf 0x8000_0001 EDX bit 26: 1 GiB pages.
    pub page_1g: bool,
}

impl Features {
    /// This CPU's features.
    pub fn read() -> Self {
        let (_, _, ecx1, _) = cpuid(1, 0);
        let (max_ext, ..) = cpuid(0x8000_0000, 0);
        let (ecx_ext, edx_ext) = if max_ext >= 0x8000_0001 {
            let (_, _, c, d) = cpuid(0x8000_0001, 0);
            (c, d)
        } else {
            (0, 0)
        };
        Features {
            vmx: ecx1 & (1 << 5) != 0,
            svm: ecx_ext & (1 << 2) != 0,
            x2apic: ecx1 & (1 << 21) != 0,
            tsc_deadline: ecx1 & (1 << 24) != 0,
            page_1g: edx_ext & (1 << 26) != 0,
        }
    }
}
