//! The virtual GIC distributor (GICv2 and GICv3 flavours): register accesses of any
//! offset, width, value and vCPU, mixed with interrupt lines going up and down.

use axvisor_fuzz::{vgic_from, Access, Input};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let vgic = vgic_from(&mut input, None);
    let dist = vgic.distributor();
    let vcpus = vgic.config().vcpus;
    while !input.is_empty() {
        match input.u8() % 8 {
            0 => vgic.set_spi_level(input.u16() as u32 % 1100, input.bool()),
            1 => vgic.set_private_level(
                input.u8() as usize % (vcpus + 1),
                input.u8() as u32,
                input.bool(),
            ),
            _ => {
                let access = Access::decode(&mut input, dist.size(), vcpus);
                let _ = access.apply(&*dist);
            }
        }
    }
    for v in 0..vcpus {
        let _ = vgic.has_deliverable(v);
    }
}
