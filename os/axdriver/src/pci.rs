//! The virtio-blk disk on PCI (QEMU q35's `virtio-blk-pci`): found by `axpci`'s walk over
//! the platform's configuration space (`axhal::pci`, the ports 0xCF8/0xCFC on x86_64), its
//! BARs as the firmware assigned them, then `virtio-drivers`' PCI transport.

use crate::virtio::{start, FrameHal, Location, VirtioDisk};
use crate::DiskError;
use alloc::vec::Vec;
use axhal::pci::{Config, ConfigAccess};
use axpci::{command, Bar, Bdf};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;

/// Device windows are reachable below this address only: the identity map covers the low
/// 4 GiB with device attributes at the top, and only RAM above.
const WINDOW_LIMIT: u64 = 1 << 32;

/// The platform's configuration space as `virtio-drivers` reads it.
struct Cam(Config);

impl Cam {
    fn at(df: DeviceFunction) -> Bdf {
        Bdf {
            bus: df.bus,
            device: df.device & 0x1f,
            function: df.function & 0x7,
        }
    }
}

impl ConfigurationAccess for Cam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        self.0.read32(Self::at(df), offset)
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, value: u32) {
        self.0.write32(Self::at(df), offset, value)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Self(self.0)
    }
}

/// Every virtio-blk PCI function in walk order, each started (or why not): none when the
/// platform has no configuration space.
pub(crate) fn probe_all() -> Vec<Result<VirtioDisk<PciTransport>, DiskError>> {
    let Some(cfg) = axhal::pci::config() else {
        return Vec::new();
    };
    (0..)
        .map_while(|n| axpci::nth_virtio_blk(&cfg, n))
        .map(|found| start_function(cfg, found.at))
        .collect()
}

/// Starts the virtio-blk function at `found`.
fn start_function(cfg: Config, found: Bdf) -> Result<VirtioDisk<PciTransport>, DiskError> {
    let at = Location::Pci(found);
    let mut beyond = None;
    axpci::for_each_bar(&cfg, found, |index, bar| {
        if let Bar::Memory { address, .. } = bar {
            if address >= WINDOW_LIMIT {
                beyond = Some((index, address));
            }
        }
    });
    if let Some((index, address)) = beyond {
        log::warn!(
            "virtio-blk at {at}: BAR {index} at {address:#x} is above the mapped device windows"
        );
        return Err(DiskError::Virtio { at });
    }
    // The firmware (SeaBIOS) assigned the BARs; decoding and DMA may still be off. The
    // driver polls: the INTx line stays quiet rather than asserted with nobody to clear it.
    axpci::enable(
        &cfg,
        found,
        command::MEMORY | command::BUS_MASTER | command::INTX_DISABLE,
    );
    let mut root = PciRoot::new(Cam(cfg));
    let df = DeviceFunction {
        bus: found.bus,
        device: found.device,
        function: found.function,
    };
    let transport = PciTransport::new::<FrameHal, _>(&mut root, df).map_err(|e| {
        log::warn!("virtio-blk at {at}: {e}");
        DiskError::Virtio { at }
    })?;
    start(transport, at)
}
