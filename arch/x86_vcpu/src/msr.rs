//! The guest's model-specific registers: which ones it reaches directly (the MSR bitmap),
//! which ones the vCPU emulates, and which ones give it a #GP. Pure, unit-tested.
//!
//! | MSR | read | write |
//! |---|---|---|
//! | IA32_FS_BASE, IA32_GS_BASE, IA32_SYSENTER_CS/ESP/EIP, IA32_PAT | direct (VMCS guest state) | direct |
//! | IA32_KERNEL_GS_BASE, IA32_STAR, IA32_LSTAR, IA32_CSTAR, IA32_FMASK | direct (switched by the vCPU when it is loaded and put) | direct |
//! | IA32_TSC | direct | ignored |
//! | IA32_EFER | the guest's EFER | SCE and NXE may change; LME may not while paging is on; LMA is read-only; other bits #GP |
//! | IA32_APIC_BASE | 0xFEE0_0900 (enabled, xAPIC; BSP on vCPU 0) | the same value is accepted, anything else #GP |
//! | IA32_FEATURE_CONTROL | 1 (locked, VMX off) | #GP |
//! | IA32_MISC_ENABLE | 1 (fast strings) | the same value is accepted, anything else #GP |
//! | IA32_BIOS_SIGN_ID | 0 | ignored |
//! | AMD64_NB_CFG (0xC001_001F; only on AMD: the SVM backend) | 0 | ignored (Linux sets its CF8 extended-configuration bit, 46, on every CPU) |
//! | anything else | #GP | #GP |

/// MSR numbers.
pub mod nr {
    /// Time-stamp counter.
    pub const IA32_TSC: u32 = 0x10;
    /// Local APIC base.
    pub const IA32_APIC_BASE: u32 = 0x1b;
    /// Feature control (VMX enable and lock).
    pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
    /// Microcode signature.
    pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;
    /// SYSENTER CS.
    pub const IA32_SYSENTER_CS: u32 = 0x174;
    /// SYSENTER ESP.
    pub const IA32_SYSENTER_ESP: u32 = 0x175;
    /// SYSENTER EIP.
    pub const IA32_SYSENTER_EIP: u32 = 0x176;
    /// Miscellaneous enables.
    pub const IA32_MISC_ENABLE: u32 = 0x1a0;
    /// Page attribute table.
    pub const IA32_PAT: u32 = 0x277;
    /// Extended feature enables.
    pub const IA32_EFER: u32 = 0xc000_0080;
    /// SYSCALL target segments.
    pub const IA32_STAR: u32 = 0xc000_0081;
    /// SYSCALL 64-bit target.
    pub const IA32_LSTAR: u32 = 0xc000_0082;
    /// SYSCALL compatibility-mode target.
    pub const IA32_CSTAR: u32 = 0xc000_0083;
    /// SYSCALL RFLAGS mask.
    pub const IA32_FMASK: u32 = 0xc000_0084;
    /// FS base.
    pub const IA32_FS_BASE: u32 = 0xc000_0100;
    /// GS base.
    pub const IA32_GS_BASE: u32 = 0xc000_0101;
    /// The GS base SWAPGS exchanges with IA32_GS_BASE.
    pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// AMD's northbridge configuration.
    pub const AMD64_NB_CFG: u32 = 0xc001_001f;
}

/// MSRs the guest reads and writes without an exit.
pub const PASSTHROUGH: &[u32] = &[
    nr::IA32_FS_BASE,
    nr::IA32_GS_BASE,
    nr::IA32_KERNEL_GS_BASE,
    nr::IA32_STAR,
    nr::IA32_LSTAR,
    nr::IA32_CSTAR,
    nr::IA32_FMASK,
    nr::IA32_SYSENTER_CS,
    nr::IA32_SYSENTER_ESP,
    nr::IA32_SYSENTER_EIP,
    nr::IA32_PAT,
];

/// MSRs the guest reads without an exit (writes exit).
pub const READ_ONLY_PASSTHROUGH: &[u32] = &[nr::IA32_TSC];

/// Guest MSRs the VMCS does not switch, so the vCPU switches them itself when it is loaded
/// on a CPU and put: the guest uses them directly ([`PASSTHROUGH`]); the hypervisor never
/// does (no SYSCALL, no SWAPGS).
pub const SWITCHED: [u32; 5] = [
    nr::IA32_KERNEL_GS_BASE,
    nr::IA32_STAR,
    nr::IA32_LSTAR,
    nr::IA32_CSTAR,
    nr::IA32_FMASK,
];

/// A 4 KiB MSR bitmap (Intel SDM Vol. 3C, "MSR-Bitmap Address"): read bitmaps for MSRs
/// 0..0x1FFF and 0xC000_0000..0xC000_1FFF, then the write bitmaps; a set bit makes the
/// access exit. MSRs outside both ranges always exit.
#[repr(C, align(4096))]
pub struct MsrBitmap(pub [u8; 4096]);

impl MsrBitmap {
    /// The bitmap of this module's policy: everything exits except [`PASSTHROUGH`] (both
    /// directions) and [`READ_ONLY_PASSTHROUGH`] (reads).
    pub fn new() -> Self {
        let mut b = MsrBitmap([0xff; 4096]);
        for &m in PASSTHROUGH {
            b.set(m, false, false);
            b.set(m, true, false);
        }
        for &m in READ_ONLY_PASSTHROUGH {
            b.set(m, false, false);
        }
        b
    }

    /// Byte offset and bit of `msr`'s bit for a read or write; `None` outside the ranges.
    fn position(msr: u32, write: bool) -> Option<(usize, u8)> {
        let (base, idx) = match msr {
            0..=0x1fff => (0, msr),
            0xc000_0000..=0xc000_1fff => (1024, msr - 0xc000_0000),
            _ => return None,
        };
        let base = base + if write { 2048 } else { 0 };
        Some((base + (idx / 8) as usize, (idx % 8) as u8))
    }

    /// Makes an access to `msr` exit (`exit`) or not.
    pub fn set(&mut self, msr: u32, write: bool, exit: bool) {
        if let Some((byte, bit)) = Self::position(msr, write) {
            if exit {
                self.0[byte] |= 1 << bit;
            } else {
                self.0[byte] &= !(1 << bit);
            }
        }
    }

    /// Whether an access to `msr` exits.
    pub fn exits(&self, msr: u32, write: bool) -> bool {
        Self::position(msr, write).is_none_or(|(byte, bit)| self.0[byte] & (1 << bit) != 0)
    }
}

impl Default for MsrBitmap {
    fn default() -> Self {
        Self::new()
    }
}

/// EFER bits.
pub mod efer {
    /// SYSCALL enable.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
}

/// The guest state a trapped MSR access needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrContext {
    /// The vCPU's index in its VM.
    pub vcpu_index: usize,
    /// The guest's EFER.
    pub efer: u64,
    /// The guest's CR0.PG.
    pub paging: bool,
    /// The CPU is AMD's (the SVM backend): AMD's own MSRs exist.
    pub amd: bool,
}

/// The guest gets a general-protection fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gp;

/// What a trapped WRMSR does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrWrite {
    /// Nothing (the write is dropped, or wrote what was there).
    Ignore,
    /// The guest's EFER becomes this value.
    Efer(u64),
}

const APIC_BASE: u64 = 0xfee0_0000 | (1 << 11);
const APIC_BSP: u64 = 1 << 8;
const MISC_ENABLE_FAST_STRINGS: u64 = 1;

fn apic_base(ctx: &MsrContext) -> u64 {
    if ctx.vcpu_index == 0 {
        APIC_BASE | APIC_BSP
    } else {
        APIC_BASE
    }
}

/// The value of a trapped RDMSR of `msr`.
pub fn read(msr: u32, ctx: &MsrContext) -> Result<u64, Gp> {
    match msr {
        nr::IA32_EFER => Ok(ctx.efer),
        nr::IA32_APIC_BASE => Ok(apic_base(ctx)),
        nr::IA32_FEATURE_CONTROL => Ok(1),
        nr::IA32_MISC_ENABLE => Ok(MISC_ENABLE_FAST_STRINGS),
        nr::IA32_BIOS_SIGN_ID => Ok(0),
        nr::AMD64_NB_CFG if ctx.amd => Ok(0),
        _ => Err(Gp),
    }
}

/// What a trapped WRMSR of `value` to `msr` does.
pub fn write(msr: u32, value: u64, ctx: &MsrContext) -> Result<MsrWrite, Gp> {
    match msr {
        nr::IA32_TSC | nr::IA32_BIOS_SIGN_ID => Ok(MsrWrite::Ignore),
        nr::IA32_EFER => {
            if value & !(efer::SCE | efer::LME | efer::LMA | efer::NXE) != 0 {
                return Err(Gp);
            }
            if ctx.paging && (value ^ ctx.efer) & efer::LME != 0 {
                return Err(Gp);
            }
            // LMA is the processor's: writes do not change it.
            Ok(MsrWrite::Efer(
                (value & !efer::LMA) | (ctx.efer & efer::LMA),
            ))
        }
        nr::IA32_APIC_BASE if value == apic_base(ctx) => Ok(MsrWrite::Ignore),
        nr::IA32_MISC_ENABLE if value == MISC_ENABLE_FAST_STRINGS => Ok(MsrWrite::Ignore),
        nr::AMD64_NB_CFG if ctx.amd => Ok(MsrWrite::Ignore),
        _ => Err(Gp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: MsrContext = MsrContext {
        vcpu_index: 0,
        efer: efer::LME | efer::LMA | efer::NXE,
        paging: true,
        amd: false,
    };

    #[test]
    fn bitmap_layout() {
        let b = MsrBitmap::new();
        // LSTAR (0xC000_0082): read bit 0x82 of the high read bitmap at 1024.
        assert_eq!(b.0[1024 + 0x10] & (1 << 2), 0);
        assert_eq!(b.0[3072 + 0x10] & (1 << 2), 0);
        // TSC: reads direct (byte 2, bit 0), writes exit.
        assert_eq!(b.0[2] & 1, 0);
        assert_ne!(b.0[2048 + 2] & 1, 0);
        assert!(!b.exits(nr::IA32_TSC, false) && b.exits(nr::IA32_TSC, true));
        // EFER and the APIC base exit both ways.
        for m in [
            nr::IA32_EFER,
            nr::IA32_APIC_BASE,
            0x800,
            0x1fff,
            0xc000_1fff,
        ] {
            assert!(b.exits(m, false) && b.exits(m, true), "{m:#x}");
        }
        for &m in PASSTHROUGH {
            assert!(!b.exits(m, false) && !b.exits(m, true), "{m:#x}");
        }
        // Outside both ranges everything exits (the bitmap cannot say otherwise).
        assert!(b.exits(0x4000_0000, false) && b.exits(0xc001_0000, true));
        // Exactly the listed MSRs are direct.
        let direct = (0..0x2000u32)
            .chain(0xc000_0000..0xc000_2000)
            .flat_map(|m| [(m, false), (m, true)])
            .filter(|&(m, w)| !b.exits(m, w))
            .count();
        assert_eq!(direct, 2 * PASSTHROUGH.len() + READ_ONLY_PASSTHROUGH.len());
        assert_eq!(core::mem::align_of::<MsrBitmap>(), 4096);
        assert!(SWITCHED.iter().all(|m| PASSTHROUGH.contains(m)));
    }

    #[test]
    fn emulated_reads() {
        assert_eq!(read(nr::IA32_EFER, &CTX), Ok(CTX.efer));
        assert_eq!(read(nr::IA32_APIC_BASE, &CTX), Ok(0xfee0_0900));
        let ap = MsrContext {
            vcpu_index: 1,
            ..CTX
        };
        assert_eq!(read(nr::IA32_APIC_BASE, &ap), Ok(0xfee0_0800));
        assert_eq!(read(nr::IA32_FEATURE_CONTROL, &CTX), Ok(1));
        assert_eq!(read(0x1234, &CTX), Err(Gp));
        assert_eq!(read(0x800, &CTX), Err(Gp), "x2APIC is not offered");
        assert_eq!(read(0xc000_0103, &CTX), Err(Gp), "TSC_AUX (no RDTSCP)");
    }

    #[test]
    fn efer_writes() {
        let e = CTX.efer;
        assert_eq!(
            write(nr::IA32_EFER, e | efer::SCE, &CTX),
            Ok(MsrWrite::Efer(e | efer::SCE))
        );
        // LMA cannot be written either way.
        assert_eq!(
            write(nr::IA32_EFER, e & !efer::LMA, &CTX),
            Ok(MsrWrite::Efer(e))
        );
        assert_eq!(
            write(nr::IA32_EFER, e & !efer::LME, &CTX),
            Err(Gp),
            "LME with paging on"
        );
        assert_eq!(
            write(nr::IA32_EFER, e | 1 << 12, &CTX),
            Err(Gp),
            "SVME is reserved here"
        );
        let unpaged = MsrContext {
            efer: 0,
            paging: false,
            ..CTX
        };
        assert_eq!(
            write(nr::IA32_EFER, efer::LME, &unpaged),
            Ok(MsrWrite::Efer(efer::LME))
        );
    }

    #[test]
    fn other_writes() {
        assert_eq!(write(nr::IA32_TSC, 5, &CTX), Ok(MsrWrite::Ignore));
        assert_eq!(
            write(nr::IA32_APIC_BASE, 0xfee0_0900, &CTX),
            Ok(MsrWrite::Ignore)
        );
        assert_eq!(write(nr::IA32_APIC_BASE, 0xfec0_0900, &CTX), Err(Gp));
        assert_eq!(write(nr::IA32_FEATURE_CONTROL, 5, &CTX), Err(Gp));
        assert_eq!(write(nr::IA32_MISC_ENABLE, 1, &CTX), Ok(MsrWrite::Ignore));
        assert_eq!(write(0x48, 1, &CTX), Err(Gp), "SPEC_CTRL is not offered");
    }

    #[test]
    fn amds_northbridge_configuration_only_on_amd() {
        let amd = MsrContext { amd: true, ..CTX };
        assert_eq!(read(nr::AMD64_NB_CFG, &amd), Ok(0));
        assert_eq!(write(nr::AMD64_NB_CFG, 1 << 46, &amd), Ok(MsrWrite::Ignore));
        assert_eq!(read(nr::AMD64_NB_CFG, &CTX), Err(Gp));
        assert_eq!(write(nr::AMD64_NB_CFG, 1 << 46, &CTX), Err(Gp));
        // IA32_TSC_ADJUST is not offered (CPUID 7.0 EBX bit 1 is cleared).
        assert_eq!(read(0x3b, &amd), Err(Gp));
    }
}
