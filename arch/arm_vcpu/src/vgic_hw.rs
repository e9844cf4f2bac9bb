//! The hardware list registers as `arm_vgic` sees them: [`ListRegs`] over the host's GICv2
//! GICH frame or GICv3 ICH_*_EL2 registers (through `axhal::vgic`).

use arm_vgic::{ListReg, ListRegs};
use axhal::vgic::{self, HostVgic, HCR_EN, HCR_UIE};

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
    /// The control register was just written with the underflow interrupt off.
    pub fn forget_underflow(&mut self) {
        self.uie = false;
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
            vgic::set_hcr(if on { HCR_EN | HCR_UIE } else { HCR_EN });
            self.uie = on;
        }
    }
}
