//! The host GIC's virtualization interface, for injecting guest interrupts: the GICv2
//! hypervisor control frame (GICH, MMIO) or the GICv3 ICH_*_EL2 system registers.
//!
//! Raw access only: list registers as architecture-encoded values, the control register, and
//! the per-vCPU state a physical CPU switches between vCPUs (list registers, VMCR, active
//! priorities). What the values mean is `arm_vgic`'s business. Register layouts are from the
//! GIC architecture specifications (IHI 0048 §5.3, IHI 0069 §12.4).

use super::gic;
use crate::mmio;

/// GICv2 GICH register offsets.
const GICH_HCR: usize = 0x00;
const GICH_VTR: usize = 0x04;
const GICH_VMCR: usize = 0x08;
const GICH_APR: usize = 0xf0;
const GICH_LR: usize = 0x100;

/// ICH_HCR_EL2 / GICH_HCR: En (bit 0), UIE (bit 1).
pub const HCR_EN: u64 = 1 << 0;
/// Underflow maintenance interrupt enable.
pub const HCR_UIE: u64 = 1 << 1;
/// ICH_HCR_EL2.TC (GICv3 only): EL1 accesses to the CPU-interface registers common to both
/// groups (ICC_CTLR_EL1, ICC_PMR_EL1, ICC_RPR_EL1, ICC_DIR_EL1 and the SGI registers) trap
/// to EL2.
pub const HCR_TC: u64 = 1 << 10;

/// The most list registers either version has.
pub const MAX_LRS: usize = 16;

/// Which virtualization interface the host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostVgic {
    /// GICv2 with the virtualization extensions: GICH at `gich` (hypervisor virtual
    /// address), and the virtual CPU interface (GICV) at physical `gicv`, to be mapped into
    /// guests where they expect their GICC.
    V2 {
        /// GICH base (identity-mapped).
        gich: usize,
        /// GICV physical base.
        gicv: usize,
        /// GICV size.
        gicv_size: usize,
    },
    /// GICv3: the ICH_*_EL2 system registers.
    V3,
}

/// The host's virtualization interface, if the GIC has one.
pub fn host() -> Option<HostVgic> {
    gic::host_vgic()
}

macro_rules! sysreg {
    (read $name:literal) => {{
        let v: u64;
        // SAFETY: reads a GICv3 hypervisor-interface register at EL2; no side effects.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
        v
    }};
    (write $name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: writes a GICv3 hypervisor-interface register at EL2; it only affects the
        // virtual CPU interface that guests of this CPU see.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nomem, nostack)) };
    }};
}

/// ICH_LR<n>_EL2 (n < 16).
fn v3_lr(n: usize) -> u64 {
    macro_rules! arms {
        ($($i:literal => $name:literal),*) => { match n { $($i => sysreg!(read $name),)* _ => 0 } };
    }
    arms!(0 => "S3_4_C12_C12_0", 1 => "S3_4_C12_C12_1", 2 => "S3_4_C12_C12_2", 3 => "S3_4_C12_C12_3",
          4 => "S3_4_C12_C12_4", 5 => "S3_4_C12_C12_5", 6 => "S3_4_C12_C12_6", 7 => "S3_4_C12_C12_7",
          8 => "S3_4_C12_C13_0", 9 => "S3_4_C12_C13_1", 10 => "S3_4_C12_C13_2", 11 => "S3_4_C12_C13_3",
          12 => "S3_4_C12_C13_4", 13 => "S3_4_C12_C13_5", 14 => "S3_4_C12_C13_6", 15 => "S3_4_C12_C13_7")
}

fn v3_set_lr(n: usize, v: u64) {
    macro_rules! arms {
        ($($i:literal => $name:literal),*) => { match n { $($i => sysreg!(write $name, v),)* _ => {} } };
    }
    arms!(0 => "S3_4_C12_C12_0", 1 => "S3_4_C12_C12_1", 2 => "S3_4_C12_C12_2", 3 => "S3_4_C12_C12_3",
          4 => "S3_4_C12_C12_4", 5 => "S3_4_C12_C12_5", 6 => "S3_4_C12_C12_6", 7 => "S3_4_C12_C12_7",
          8 => "S3_4_C12_C13_0", 9 => "S3_4_C12_C13_1", 10 => "S3_4_C12_C13_2", 11 => "S3_4_C12_C13_3",
          12 => "S3_4_C12_C13_4", 13 => "S3_4_C12_C13_5", 14 => "S3_4_C12_C13_6", 15 => "S3_4_C12_C13_7")
}

/// Number of list registers (ICH_VTR_EL2 / GICH_VTR ListRegs + 1), at most [`MAX_LRS`].
pub fn lr_count() -> usize {
    let n = match host() {
        Some(HostVgic::V2 { gich, .. }) => (mmio::read32(gich + GICH_VTR) & 0x3f) as usize + 1,
        Some(HostVgic::V3) => (sysreg!(read "S3_4_C12_C11_1") & 0x1f) as usize + 1,
        None => 0,
    };
    n.min(MAX_LRS)
}

/// List register `n` as the hardware encodes it (GICv2: 32 bits).
pub fn read_lr(n: usize) -> u64 {
    match host() {
        Some(HostVgic::V2 { gich, .. }) if n < MAX_LRS => {
            u64::from(mmio::read32(gich + GICH_LR + 4 * n))
        }
        Some(HostVgic::V3) => v3_lr(n),
        _ => 0,
    }
}

/// Writes list register `n`.
pub fn write_lr(n: usize, v: u64) {
    match host() {
        Some(HostVgic::V2 { gich, .. }) if n < MAX_LRS => {
            mmio::write32(gich + GICH_LR + 4 * n, v as u32)
        }
        Some(HostVgic::V3) => v3_set_lr(n, v),
        _ => {}
    }
}

/// Reads the control register (GICH_HCR / ICH_HCR_EL2).
pub fn hcr() -> u64 {
    match host() {
        Some(HostVgic::V2 { gich, .. }) => u64::from(mmio::read32(gich + GICH_HCR)),
        Some(HostVgic::V3) => sysreg!(read "S3_4_C12_C11_0"),
        None => 0,
    }
}

/// Writes the control register.
pub fn set_hcr(v: u64) {
    match host() {
        Some(HostVgic::V2 { gich, .. }) => mmio::write32(gich + GICH_HCR, v as u32),
        Some(HostVgic::V3) => sysreg!(write "S3_4_C12_C11_0", v),
        None => {}
    }
}

/// GICv3 only: ICH_VTR_EL2, what the virtual CPU interface implements (list registers,
/// priority, preemption and INTID bits).
pub fn v3_vtr() -> u64 {
    sysreg!(read "S3_4_C12_C11_1")
}

/// GICv3 only: the live ICH_VMCR_EL2 (the running vCPU's CPU-interface controls).
pub fn v3_vmcr() -> u64 {
    sysreg!(read "S3_4_C12_C11_7")
}

/// GICv3 only: writes the live ICH_VMCR_EL2.
pub fn v3_set_vmcr(v: u64) {
    sysreg!(write "S3_4_C12_C11_7", v)
}

/// GICv3 only: the live active-priority registers ICH_AP0R0_EL2 and ICH_AP1R0_EL2 (the
/// only ones with 5 preemption bits, as QEMU and most cores have).
pub fn v3_active_priorities() -> (u64, u64) {
    (sysreg!(read "S3_4_C12_C8_0"), sysreg!(read "S3_4_C12_C9_0"))
}

/// The virtual CPU interface state of one vCPU that is not in the list registers' model:
/// what the guest programmed (VMCR: enables, priority mask, binary points) and the active
/// priorities, plus the raw list registers themselves.
#[derive(Clone, Debug, Default)]
pub struct VgicCpuState {
    /// Raw list registers.
    pub lrs: [u64; MAX_LRS],
    /// GICH_VMCR / ICH_VMCR_EL2.
    pub vmcr: u64,
    /// GICH_APR; or ICH_AP0R0..3 and ICH_AP1R0..3.
    pub apr: [u64; 8],
}

impl VgicCpuState {
    /// Saves this CPU's virtual interface into `self` and clears its list registers.
    pub fn save(&mut self) {
        let n = lr_count();
        for i in 0..n {
            self.lrs[i] = read_lr(i);
            write_lr(i, 0);
        }
        match host() {
            Some(HostVgic::V2 { gich, .. }) => {
                self.vmcr = u64::from(mmio::read32(gich + GICH_VMCR));
                self.apr[0] = u64::from(mmio::read32(gich + GICH_APR));
            }
            Some(HostVgic::V3) => {
                self.vmcr = sysreg!(read "S3_4_C12_C11_7");
                // Only the registers the implemented priority bits need exist; QEMU and
                // most cores have 5 bits: AP0R0 and AP1R0.
                self.apr[0] = sysreg!(read "S3_4_C12_C8_0");
                self.apr[4] = sysreg!(read "S3_4_C12_C9_0");
            }
            None => {}
        }
    }

    /// Loads `self` into this CPU's virtual interface.
    pub fn restore(&self) {
        let n = lr_count();
        for i in 0..n {
            write_lr(i, self.lrs[i]);
        }
        match host() {
            Some(HostVgic::V2 { gich, .. }) => {
                mmio::write32(gich + GICH_VMCR, self.vmcr as u32);
                mmio::write32(gich + GICH_APR, self.apr[0] as u32);
            }
            Some(HostVgic::V3) => {
                sysreg!(write "S3_4_C12_C11_7", self.vmcr);
                sysreg!(write "S3_4_C12_C8_0", self.apr[0]);
                sysreg!(write "S3_4_C12_C9_0", self.apr[4]);
            }
            None => {}
        }
    }
}

/// Enables or disables private interrupt `intid` (< 32) of this CPU at the host GIC (the
/// virtual timer's PPI is masked while the guest has its interrupt in flight).
pub fn set_private_enabled(intid: u32, enabled: bool) {
    gic::set_private_enabled(intid, enabled)
}

/// INTID of the EL1 virtual timer PPI on this platform.
pub fn vtimer_intid() -> u32 {
    gic::vtimer_intid()
}

/// Enables or disables host SPI `intid` (masked while its guest has it in flight; the same
/// as `axhal::irq::set_device_enabled`, for the vCPU's interrupt path).
pub fn set_spi_enabled(intid: u32, enabled: bool) {
    gic::set_spi_enabled(intid, enabled)
}
