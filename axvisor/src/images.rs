//! The VMs built into the hypervisor image: the VM set `cargo xtask build --vms` packed
//! (`axvmpack`) and attached to the linked image, found at boot as the image payload
//! (`axhal::platform::image_payload`); see docs/vm-config.md.

use alloc::vec::Vec;
use axstd::println;
use spin::Once;

/// One VM built into the image: its config file's name and text and its images, borrowed
/// from the image payload.
pub type EmbeddedVm = axvmpack::PackedVm<'static>;

static VMS: Once<Vec<EmbeddedVm>> = Once::new();

/// The VMs built into the image, in the order given to the build; none when the image
/// carries no VM set, or (reported once) when it cannot be read.
pub fn vms() -> &'static [EmbeddedVm] {
    VMS.call_once(|| {
        let payload = axhal::platform::image_payload();
        if payload.is_empty() {
            return Vec::new();
        }
        axvmpack::decode(payload).unwrap_or_else(|e| {
            println!("vms built into the image: {e}; none used");
            Vec::new()
        })
    })
}
