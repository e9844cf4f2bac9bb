//! The hardware list registers as `arm_vgic` sees them: [`ListRegs`] over the host's GICv2
//! GICH frame or GICv3 ICH_*_EL2 registers (through `axhal::vgic`).

use arm_vgic::{ListReg, ListRegs};
use axhal::vgic::{self, HostVgic, HCR_EN, HCR_TC, HCR_UIE};

/// This CPU's list registers, in the host's encoding.
pub struct HwListRegs {
    count: usize,
    v3: bool,
    /// Whether the underflow interrupt is on (so turning it off again costs nothing when
    /// it already is).
    uie: bool,
}

impl HwListRegs {
    /// The list registers of this CPU, or `None` when the host has no virtualization
    /// interface.
    pub fn this_cpu() -> Option<Self> {
        let host = vgic::host()?;
        Some(Self {
            count: vgic::lr_count(),
            v3: host == HostVgic::V3,
            uie: false,
        })
    }
}

impl HwListRegs {
    /// Turns the virtual CPU interface on for the guest with the underflow interrupt off.
    /// On GICv3 the registers common to both groups trap (ICH_HCR_EL2.TC, see
    /// [`crate::icc`]).
    pub fn enable(&mut self) {
        vgic::set_hcr(self.hcr(false));
        self.uie = false;
    }

    /// Whether the host has a GICv3 (ICH_*_EL2 system registers).
    pub fn v3(&self) -> bool {
        self.v3
    }

    /// ICH_HCR_EL2 / GICH_HCR while the guest runs.
    fn hcr(&self, underflow: bool) -> u64 {
        let tc = if self.v3 { HCR_TC } else { 0 };
        let uie = if underflow { HCR_UIE } else { 0 };
        HCR_EN | tc | uie
    }
}

impl ListRegs for HwListRegs {
    fn count(&self) -> usize {
        self.count
    }

    fn read(&self, i: usize) -> ListReg {
        let raw = vgic::read_lr(i);
        if self.v3 {
            ListReg::from_gicv3(raw)
        } else {
            ListReg::from_gicv2(raw as u32)
        }
    }

    fn write(&mut self, i: usize, lr: ListReg) {
        let raw = if self.v3 {
            lr.to_gicv3()
        } else {
            u64::from(lr.to_gicv2())
        };
        vgic::write_lr(i, raw);
    }

    fn set_underflow_interrupt(&mut self, on: bool) {
        if on != self.uie {
            vgic::set_hcr(self.hcr(on));
            self.uie = on;
        }
    }
}
