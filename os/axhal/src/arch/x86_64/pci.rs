//! PCI configuration space through the port mechanism (configuration address 0xCF8,
//! data 0xCFC), which every PC chipset the hypervisor runs on has (QEMU q35 and i440FX,
//! Bochs).

use super::regs::{inl, outl};
use axpci::{Bdf, ConfigAccess};
use spin::Mutex;

const ADDRESS: u16 = 0xcf8;
const DATA: u16 = 0xcfc;

/// The address/data pair is one shared register window: one access at a time.
static LOCK: Mutex<()> = Mutex::new(());

/// The port mechanism (a token: the ports are the machine's).
#[derive(Debug, Clone, Copy)]
pub struct PortConfig(());

impl PortConfig {
    /// The mechanism.
    pub(crate) const fn new() -> Self {
        Self(())
    }
}

/// The configuration address of register `offset` (rounded down to 4) of `at`.
fn address(at: Bdf, offset: u8) -> u32 {
    1 << 31
        | u32::from(at.bus) << 16
        | u32::from(at.device & 0x1f) << 11
        | u32::from(at.function & 0x7) << 8
        | u32::from(offset & 0xfc)
}

impl ConfigAccess for PortConfig {
    fn read32(&self, at: Bdf, offset: u8) -> u32 {
        let _guard = LOCK.lock();
        outl(ADDRESS, address(at, offset));
        inl(DATA)
    }

    fn write32(&self, at: Bdf, offset: u8, value: u32) {
        let _guard = LOCK.lock();
        outl(ADDRESS, address(at, offset));
        outl(DATA, value);
    }
}
