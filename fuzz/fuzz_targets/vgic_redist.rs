//! The GICv3 redistributors (one frame pair per vCPU): register accesses of any offset,
//! width, value and vCPU, mixed with private interrupt lines and `ICC_SGI1R_EL1` writes.

use arm_vgic::GicVersion;
use axvisor_fuzz::{vgic_from, Access, Input};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let vgic = vgic_from(&mut input, Some(GicVersion::V3));
    let redist = vgic.redistributors().expect("GICv3 has redistributors");
    let vcpus = vgic.config().vcpus;
    while !input.is_empty() {
        match input.u8() % 8 {
            0 => vgic.set_private_level(
                input.u8() as usize % vcpus,
                input.u8() as u32 % 40,
                input.bool(),
            ),
            1 => vgic.write_sgi1r(input.u8() as usize % vcpus, input.u64()),
            _ => {
                let access = Access::decode(&mut input, redist.size(), vcpus);
                let _ = access.apply(&*redist);
            }
        }
    }
    for v in 0..vcpus {
        let _ = vgic.has_deliverable(v);
    }
}
