//! PCI configuration space, where the platform reaches it by a fixed mechanism: on x86_64
//! the port mechanism (0xCF8/0xCFC); none elsewhere (the boards there have no PCI the
//! hypervisor drives). The walk and the decoding are `axpci`'s.

pub use axpci::ConfigAccess;

/// The platform's configuration-space mechanism.
#[cfg(target_arch = "x86_64")]
pub use crate::arch::pci::PortConfig as Config;

/// The platform's configuration-space mechanism: none on this architecture.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Debug, Clone, Copy)]
pub enum Config {}

#[cfg(not(target_arch = "x86_64"))]
impl ConfigAccess for Config {
    fn read32(&self, _at: axpci::Bdf, _offset: u8) -> u32 {
        match *self {}
    }

    fn write32(&self, _at: axpci::Bdf, _offset: u8, _value: u32) {
        match *self {}
    }
}

/// The configuration-space mechanism, if the platform has one.
pub fn config() -> Option<Config> {
    #[cfg(target_arch = "x86_64")]
    return Some(Config::new());
    #[cfg(not(target_arch = "x86_64"))]
    None
}
