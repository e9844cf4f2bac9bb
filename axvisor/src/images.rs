//! The VMs built into the hypervisor image: their config files' text and the guest images
//! they name, chosen at build time with `AXVISOR_VMS` (see `build.rs` and docs/guests.md).

/// One VM built into the image.
pub struct EmbeddedVm {
    /// The config file it came from, as given to the build (e.g.
    /// `configs/vms/aarch64-hello.toml`).
    pub file: &'static str,
    /// The config file's text (TOML).
    pub config: &'static str,
    /// Every image the config's `[kernel]` names (`image`, `initrd.image`, `dtb.image`),
    /// as (image name, contents), in that order.
    pub images: &'static [(&'static str, &'static [u8])],
}

// Defines `pub static VMS: &[EmbeddedVm]`, one entry per config, in the order given.
include!(concat!(env!("OUT_DIR"), "/vms.rs"));

/// The contents of image `name` of `vm`, if the config names it.
pub fn image(vm: &EmbeddedVm, name: &str) -> Option<&'static [u8]> {
    vm.images
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
