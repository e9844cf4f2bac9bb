//! What the virtual GIC does at the CPU interface: filling list registers before guest
//! entry (`flush`), reading them back after exit (`sync`) while the guest acknowledges and
//! deactivates interrupts in between (or, as the model must survive, leaves any value in
//! them), and the trapped `ICC_SGI1R_EL1` writes of a GICv3 guest. Distributor and
//! redistributor stores and interrupt lines make interrupts pending.
//!
//! Checked after every flush: each list register it wrote holds an implemented INTID, and
//! no interrupt (from one source) is in two of them.
#![no_main]

use arm_vgic::{GicVersion, ListReg, LrState, Vgic};
use axvisor_fuzz::{vgic_from, Access, FakeLrs, Input};
use libfuzzer_sys::fuzz_target;

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

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let vgic = vgic_from(&mut input, None);
    let v3 = vgic.config().version == GicVersion::V3;
    let vcpus = vgic.config().vcpus;
    let nr_lrs = input.u8() as usize % 16 + 1;
    let mut lrs: Vec<FakeLrs> = (0..vcpus).map(|_| FakeLrs::new(nr_lrs)).collect();
    let mut in_guest = vec![false; vcpus];
    let dist = vgic.distributor();
    let redist = vgic.redistributors();
    while !input.is_empty() {
        let op = input.u8();
        let v = input.u8() as usize % vcpus;
        match op % 10 {
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
            _ => {
                let _ = vgic.has_deliverable(v);
            }
        }
    }
});
