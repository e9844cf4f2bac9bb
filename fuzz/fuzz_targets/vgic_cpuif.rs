//! What the virtual GIC does at the CPU interface: filling list registers before guest
//! entry (`flush`), reading them back after exit (`sync`) while the guest acknowledges and
//! deactivates interrupts in between (or, as the model must survive, leaves any value in
//! them), and the GICv3 CPU-interface registers the vCPU traps and emulates
//! (`arm_vcpu::icc`: ICC_CTLR_EL1, ICC_PMR_EL1, ICC_RPR_EL1, ICC_DIR_EL1, and
//! ICC_SGI1R_EL1, which goes to the vGIC). Distributor and redistributor stores and
//! interrupt lines make interrupts pending.
//!
//! Checked after every flush: each list register it wrote holds an implemented INTID, and
//! no interrupt (from one source) is in two of them. For the ICC registers: CBPR reads as
//! 1 and stays set in the VMCR whatever the guest writes; a PMR write keeps the other VMCR
//! fields and reads back as the written value's implemented bits; RPR fits in 8 bits.

use arm_vcpu::icc::{self, IccReg, VMCR_VCBPR};
use arm_vcpu::sysreg::SysRegAccess;
use arm_vgic::{GicVersion, ListReg, LrState, Vgic};
use axvisor_fuzz::{vgic_from, Access, FakeLrs, Input};

/// Checks the list registers `flush` just wrote.
fn check_flushed(vgic: &Vgic, lrs: &FakeLrs) {
    let mut seen: Vec<(u32, u8)> = Vec::new();
    for (i, lr) in lrs.lrs.iter().enumerate() {
        if lrs.written & (1 << i) == 0 || lr.state == LrState::Invalid {
            continue;
        }
        assert!(lr.intid < vgic.nr_irqs(), "LR {i} holds INTID {}", lr.intid);
        let key = (lr.intid, lr.source);
        assert!(
            !seen.contains(&key),
            "INTID {} in two list registers",
            lr.intid
        );
        seen.push(key);
    }
}

/// The guest acting on list register `i` the way the hardware lets it.
fn guest_acts(lr: &mut ListReg, how: u8) {
    lr.state = match (lr.state, how % 3) {
        // Acknowledge (GICC_IAR / ICC_IAR1_EL1).
        (LrState::Pending, 0) => LrState::Active,
        // Deactivate (EOI).
        (LrState::Active, 1) => LrState::Invalid,
        (LrState::PendingActive, 1) => LrState::Pending,
        (state, _) => state,
    };
}

/// A trapped access by vCPU `v` to an ICC register (the ISS of an EC 0x18 syndrome picks the
/// register and direction), on that vCPU's VMCR; `vtr` is the hardware's ICH_VTR_EL2.
fn icc_access(vgic: &Vgic, v: usize, vmcr: &mut u64, vtr: u64, iss: u64, value: u64) {
    let access = SysRegAccess::from_esr(iss);
    let Some(reg) = IccReg::from_sysreg(access.reg) else {
        return;
    };
    match (reg, access.read) {
        (IccReg::Ctlr, true) => {
            assert_eq!(icc::ctlr_read(vtr, *vmcr) & 1, 1, "CBPR reads as 0");
        }
        (IccReg::Ctlr, false) => {
            *vmcr = icc::ctlr_write(*vmcr, value);
            assert_ne!(*vmcr & VMCR_VCBPR, 0, "VCBPR cleared by {value:#x}");
            let _ = icc::eoi_mode(*vmcr);
        }
        (IccReg::Pmr, true) => assert!(icc::pmr_read(*vmcr) <= 0xff),
        (IccReg::Pmr, false) => {
            let new = icc::pmr_write(vtr, *vmcr, value);
            assert_eq!(
                new & !(0xff << 24),
                *vmcr & !(0xff << 24),
                "PMR write changed VMCR"
            );
            let read = icc::pmr_read(new);
            assert_eq!(read & !value, 0, "PMR reads {read:#x} after {value:#x}");
            *vmcr = new;
        }
        (IccReg::Rpr, _) => assert!(icc::rpr(vtr, value) <= 0xff),
        (IccReg::Sgi1r, false) => vgic.write_sgi1r(v, value),
        _ => {}
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let vgic = vgic_from(&mut input, None);
    let v3 = vgic.config().version == GicVersion::V3;
    let vcpus = vgic.config().vcpus;
    let nr_lrs = input.u8() as usize % 16 + 1;
    let mut lrs: Vec<FakeLrs> = (0..vcpus).map(|_| FakeLrs::new(nr_lrs)).collect();
    let mut in_guest = vec![false; vcpus];
    let vtr = input.u64();
    let mut vmcrs = vec![icc::reset_vmcr(); vcpus];
    let dist = vgic.distributor();
    let redist = vgic.redistributors();
    while !input.is_empty() {
        let op = input.u8();
        let v = input.u8() as usize % vcpus;
        match op % 12 {
            0 | 1 => {
                let access = Access::decode(&mut input, dist.size(), vcpus);
                let _ = access.apply(&*dist);
            }
            2 => {
                if let Some(redist) = &redist {
                    let access = Access::decode(&mut input, redist.size(), vcpus);
                    let _ = access.apply(&**redist);
                }
            }
            3 => vgic.write_sgi1r(v, input.u64()),
            4 => {
                let intid = input.u16() as u32 % 1100;
                let level = input.bool();
                if intid < 32 {
                    vgic.set_private_level(v, intid, level);
                } else {
                    vgic.set_spi_level(intid, level);
                }
            }
            5 if !in_guest[v] => {
                lrs[v].written = 0;
                vgic.flush(v, &mut lrs[v]);
                check_flushed(&vgic, &lrs[v]);
                in_guest[v] = true;
            }
            6 if in_guest[v] => {
                vgic.sync(v, &mut lrs[v]);
                in_guest[v] = false;
            }
            7 | 8 if in_guest[v] => {
                let i = input.u8() as usize % nr_lrs;
                guest_acts(&mut lrs[v].lrs[i], input.u8());
            }
            9 => {
                // Anything at all in a list register.
                let i = input.u8() as usize % nr_lrs;
                lrs[v].lrs[i] = if v3 {
                    ListReg::from_gicv3(input.u64())
                } else {
                    ListReg::from_gicv2(input.u32())
                };
            }
            10 if v3 => {
                // Mostly the ICC block (op0 3, op1 0, CRn 12 or 4), sometimes any register.
                let iss = input.u32() as u64;
                let iss = if op & 0x80 == 0 {
                    (iss & !(0x3 << 20 | 0x7 << 14)) | (3 << 20)
                } else {
                    iss
                };
                icc_access(&vgic, v, &mut vmcrs[v], vtr, iss, input.u64());
            }
            _ => {
                let _ = vgic.has_deliverable(v);
            }
        }
    }
}
