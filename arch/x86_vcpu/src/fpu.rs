//! What the world switch leaves in the CPU on both backends and the vCPU switches itself
//! when it is loaded and put: the guest's x87/SSE/AVX state and XCR0, and DR0..DR3, DR6
//! (x86_64 bare metal only).

use alloc::boxed::Box;
use core::arch::asm;

/// The guest's x87/SSE/AVX state and XCR0, which neither the VMCS nor the VMCB switches: saved when the
/// vCPU is put, restored when it is loaded (the hypervisor itself is soft-float and never
/// touches them in between).
#[repr(C, align(64))]
pub(crate) struct FpuArea([u8; 4096]);

pub(crate) struct Fpu {
    area: Box<FpuArea>,
    /// The CPU has XSAVE (and the host's CR4.OSXSAVE is set: `vmx::enable`, `svm::enable`).
    pub(crate) xsave: bool,
    /// The guest's XCR0 (x87 only at reset).
    pub(crate) xcr0: u64,
}

impl Fpu {
    pub(crate) fn new(xsave: bool) -> Self {
        Self {
            area: Box::new(FpuArea([0; 4096])),
            xsave,
            xcr0: 1,
        }
    }

    /// Back to the power-on state: a zero XSAVE header restores the initial state.
    pub(crate) fn reset(&mut self) {
        self.area.0.fill(0);
        // FXSAVE layout: FCW at 0 (0x37F), MXCSR at 24 (0x1F80), as after FNINIT / reset.
        self.area.0[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        self.area.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        self.xcr0 = 1;
    }

    pub(crate) fn save(&mut self) {
        let p = self.area.0.as_mut_ptr();
        if self.xsave {
            // SAFETY: the area is 4 KiB, 64-byte aligned, larger than any XSAVE image of
            // the features XCR0 can enable here; host CR4.OSXSAVE is set.
            unsafe {
                asm!("xsave64 [{}]", in(reg) p, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack));
                let (lo, hi): (u32, u32);
                asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack));
                self.xcr0 = u64::from(hi) << 32 | u64::from(lo);
            }
        } else {
            // SAFETY: the area is 16-byte aligned and larger than FXSAVE's 512 bytes.
            unsafe { asm!("fxsave64 [{}]", in(reg) p, options(nostack)) };
        }
    }

    pub(crate) fn restore(&self) {
        let p = self.area.0.as_ptr();
        if self.xsave {
            // SAFETY: XCR0 takes a value the guest's XSETBV was checked for (or the reset
            // value 1); the area holds an image XSAVE wrote or the zeroed reset image.
            unsafe {
                asm!("xsetbv", in("ecx") 0u32, in("eax") self.xcr0 as u32, in("edx") (self.xcr0 >> 32) as u32, options(nomem, nostack));
                asm!("xrstor64 [{}]", in(reg) p, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack, readonly));
            }
        } else {
            // SAFETY: the area holds an FXSAVE image (or the reset image with valid FCW
            // and MXCSR).
            unsafe { asm!("fxrstor64 [{}]", in(reg) p, options(nostack, readonly)) };
        }
    }
}

/// The guest's DR0..DR3 and DR6: not in the VMCS (the VMCB has DR6 but not DR0..DR3), and left in the CPU by the guest's MOV DR
/// (which does not exit). The hypervisor uses no breakpoints (its DR7 is 0x400 after every
/// exit), so only another vCPU on the same CPU would see them: they are switched on load
/// and put.
pub(crate) fn save_debug_regs() -> [u64; 5] {
    let mut d = [0u64; 5];
    // SAFETY: reads debug registers into locals; CPL 0.
    unsafe {
        asm!("mov {}, dr0", out(reg) d[0], options(nomem, nostack));
        asm!("mov {}, dr1", out(reg) d[1], options(nomem, nostack));
        asm!("mov {}, dr2", out(reg) d[2], options(nomem, nostack));
        asm!("mov {}, dr3", out(reg) d[3], options(nomem, nostack));
        asm!("mov {}, dr6", out(reg) d[4], options(nomem, nostack));
    }
    d
}

pub(crate) fn restore_debug_regs(d: &[u64; 5]) {
    // SAFETY: loads values read from these registers (or their reset values); the host's
    // DR7 keeps every breakpoint disabled.
    unsafe {
        asm!("mov dr0, {}", in(reg) d[0], options(nomem, nostack));
        asm!("mov dr1, {}", in(reg) d[1], options(nomem, nostack));
        asm!("mov dr2, {}", in(reg) d[2], options(nomem, nostack));
        asm!("mov dr3, {}", in(reg) d[3], options(nomem, nostack));
        asm!("mov dr6, {}", in(reg) d[4], options(nomem, nostack));
    }
}
