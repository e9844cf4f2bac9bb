//! The description of one axvisor VM (a TOML file) and its validation.
//!
//! [`from_toml`] turns the text into a [`VmConfig`]; it rejects what the *shape* forbids
//! (unknown fields, unknown device kinds or policies, wrong types, negative numbers) with a
//! [`ParseError`] that names the field and its position. [`VmConfig::validate`] then checks
//! what the *values* must satisfy (non-overlapping memory and devices, the entry point
//! inside RAM, images that fit, vCPUs pinned to CPUs that exist, ...) and reports **every**
//! problem at once as a [`ConfigProblem`] with a field path such as `memory[1].gpa`.
//! [`validate_many`] checks what must hold across the VMs of one hypervisor (unique ids
//! and names). What the host cannot give is checked against [`HostFacts`] (the host ranges
//! no VM may have, its interrupt lines, its VMIDs): [`VmConfig::validate_host`] for one VM,
//! [`validate_many_on`] across VMs.
//!
//! The crate is `no_std` + `alloc`: the hypervisor parses configs at boot, and
//! `cargo xtask vmconfig check` runs the same code on the host. The format is described
//! field by field in `docs/vm-config.md`.
//!
//! ```
//! let text = r#"
//! id = 1
//! name = "hello"
//! [cpus]
//! count = 1
//! pin = [1]
//! [kernel]
//! image = "hello"
//! load_addr = 0x4000_0000
//! [[memory]]
//! gpa = 0x4000_0000
//! size = 0x100_0000
//! map = "alloc"
//! "#;
//! let vm = axvmconfig::from_toml(text).unwrap();
//! assert_eq!(vm.kernel.entry, 0x4000_0000); // defaults to load_addr
//! vm.validate(&axvmconfig::ValidateContext::default()).unwrap();
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod config;
mod error;
mod host;
mod paths;
mod validate;

#[cfg(test)]
mod tests;

pub use config::NetConfig;
pub use config::{
    CpuConfig, DeviceConfig, DeviceFormError, DeviceKind, DeviceSpace, DiskBacking, DiskRegion,
    DiskSource, DtbConfig, ImageConfig, KernelConfig, KernelFormat, LinkConfig, LinkDoorbell,
    LinkShmem, MapKind, MemFlags, MemKind, MemoryRegion, MmioRange, PassthroughConfig,
    PassthroughFormError, PortRange, PortRangeFormError, RegionPlace, UnclaimedPolicy, VmConfig,
    DEVICE_KINDS, DISK_SECTOR, LINK_DOORBELL_SIZE, MAX_DISK_NAME_LEN, VIRTIO_MMIO_SIZE,
};
pub use error::ParseError;
pub use host::{
    HostArch, HostFacts, HostRange, HostUse, PC_HOST_PORTS, VGIC_GICC_SIZE, VGIC_GICD_SIZE,
    VGIC_GICR_FRAME_SIZE, VGIC_SPI_LINES, VIOAPIC_PINS, VIOAPIC_WINDOW_SIZE, VPLIC_SOURCES,
    VPLIC_WINDOW_SIZE,
};
pub use paths::{image_fields, image_path, DISK_CONFIG_MAX};
pub use validate::{
    validate_links, validate_many, validate_many_on, ConfigProblem, ProblemKind, ValidateContext,
    MAX_NAME_LEN, PAGE_SIZE, PORT_SPACE_END,
};

/// Parses the TOML text of one VM description.
///
/// Only the shape is checked here (fields, types, known kinds and policies); call
/// [`VmConfig::validate`] on the result to check the values.
pub fn from_toml(text: &str) -> Result<VmConfig, ParseError> {
    toml::from_str(text).map_err(|err| ParseError::from_toml(text, &err))
}
