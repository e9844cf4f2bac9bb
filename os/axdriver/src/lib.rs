//! The hypervisor's own disks, as [`axfs::BlockDevice`]s (docs/axfs.md, "The disk"):
//!
//! - a **virtio-blk** disk behind one of the `virtio,mmio` transports the device tree lists
//!   (QEMU `virt` on aarch64 and riscv64) or on PCI (QEMU q35 on x86_64: the first
//!   virtio-blk function the configuration-space walk finds), driven by the `virtio-drivers`
//!   crate, polled;
//! - a **RAM disk** over the boot module the loader left in RAM (QEMU's `-initrd`: the DTB's
//!   `/chosen` bounds, or the first multiboot module on x86_64).
//!
//! [`open`] finds the one the boot argument `disk=` chooses. Nothing here is architecture
//! code: the addresses come from [`axstd::os::platform_info`] and the PCI configuration space
//! from `axhal::pci`, and the hypervisor's identity map makes a physical address its own
//! virtual address.
#![no_std]

extern crate alloc;

mod pci;
mod ramdisk;
mod virtio;

use axfs::{BlockDevice, BlockError, RamDisk};
use core::fmt;
pub use virtio::{Location, VirtioDisk};
use virtio_drivers::transport::pci::PciTransport;

/// Which disk to use, from the boot argument `disk=virtio|ramdisk|none` (absent: the
/// first found, virtio-blk before the boot module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The first disk found.
    First,
    /// Only a virtio-blk disk.
    Virtio,
    /// Only the boot module as a RAM disk.
    RamDisk,
    /// No disk at all.
    None,
}

impl Choice {
    /// The choice the value of `disk=` names, if it names one.
    pub fn parse(value: Option<&str>) -> Result<Self, DiskError> {
        match value {
            None => Ok(Self::First),
            Some("virtio") => Ok(Self::Virtio),
            Some("ramdisk") => Ok(Self::RamDisk),
            Some("none") => Ok(Self::None),
            Some(_) => Err(DiskError::BadChoice),
        }
    }
}

/// Why no disk was opened. `Display` is one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskError {
    /// `disk=` names no known choice.
    BadChoice,
    /// `disk=none`.
    NotWanted,
    /// No disk of the chosen kind (or none at all) is present.
    NotFound(Choice),
    /// The boot module was already taken as a RAM disk (it can be only once).
    RamDiskTaken,
    /// The virtio-blk device at `at` refused to start.
    Virtio {
        /// Where it sits.
        at: Location,
    },
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadChoice => f.write_str("boot argument disk=: expected virtio, ramdisk or none"),
            Self::NotWanted => f.write_str("disk=none"),
            Self::NotFound(Choice::Virtio) => f.write_str("no virtio-blk device"),
            Self::NotFound(Choice::RamDisk) => f.write_str("no boot module (initrd)"),
            Self::NotFound(_) => f.write_str("no virtio-blk device and no boot module (initrd)"),
            Self::RamDiskTaken => f.write_str("the boot module is already in use"),
            Self::Virtio { at } => write!(f, "the virtio-blk device at {at} failed to start"),
        }
    }
}

impl core::error::Error for DiskError {}

/// An open disk.
pub enum Disk {
    /// A virtio-blk device on virtio-mmio.
    Virtio(alloc::boxed::Box<VirtioDisk>),
    /// A virtio-blk device on PCI.
    VirtioPci(alloc::boxed::Box<VirtioDisk<PciTransport>>),
    /// The boot module in RAM.
    Ram(RamDisk<&'static mut [u8]>, usize),
}

impl Disk {
    /// What it is, for the boot line: `virtio-blk at 0xa003e00`, `virtio-blk at PCI 00:03.0`,
    /// `RAM disk (boot module at 0x48000000)`.
    pub fn describe(&self) -> alloc::string::String {
        match self {
            Self::Virtio(d) => alloc::format!("virtio-blk at {}", d.location()),
            Self::VirtioPci(d) => alloc::format!("virtio-blk at {}", d.location()),
            Self::Ram(_, at) => alloc::format!("RAM disk (boot module at {at:#x})"),
        }
    }
}

impl BlockDevice for Disk {
    fn block_count(&self) -> u64 {
        match self {
            Self::Virtio(d) => d.block_count(),
            Self::VirtioPci(d) => d.block_count(),
            Self::Ram(d, _) => d.block_count(),
        }
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        match self {
            Self::Virtio(d) => d.read_blocks(first, buf),
            Self::VirtioPci(d) => d.read_blocks(first, buf),
            Self::Ram(d, _) => d.read_blocks(first, buf),
        }
    }

    fn write_blocks(&mut self, first: u64, buf: &[u8]) -> Result<(), BlockError> {
        match self {
            Self::Virtio(d) => d.write_blocks(first, buf),
            Self::VirtioPci(d) => d.write_blocks(first, buf),
            Self::Ram(d, _) => d.write_blocks(first, buf),
        }
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        match self {
            Self::Virtio(d) => d.flush(),
            Self::VirtioPci(d) => d.flush(),
            Self::Ram(d, _) => d.flush(),
        }
    }
}

/// Opens the disk `choice` names: for [`Choice::First`], the first virtio-blk device that
/// starts (virtio-mmio transports first, then PCI), else the boot module.
pub fn open(choice: Choice) -> Result<Disk, DiskError> {
    let info = axstd::os::platform_info();
    let virtio = || -> Result<Disk, DiskError> {
        let mut failed = None;
        for r in &info.virtio_mmio {
            match virtio::probe(r.start, r.size) {
                Ok(Some(d)) => return Ok(Disk::Virtio(alloc::boxed::Box::new(d))),
                Ok(None) => {}
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match pci::probe() {
            Ok(Some(d)) => return Ok(Disk::VirtioPci(alloc::boxed::Box::new(d))),
            Ok(None) => {}
            Err(e) => failed = failed.or(Some(e)),
        }
        Err(failed.unwrap_or(DiskError::NotFound(Choice::Virtio)))
    };
    let ram = || -> Result<Disk, DiskError> {
        let module = info.initrd.ok_or(DiskError::NotFound(Choice::RamDisk))?;
        let bytes = ramdisk::take(module.start, module.size)?;
        Ok(Disk::Ram(RamDisk::new(bytes), module.start))
    };
    match choice {
        Choice::None => Err(DiskError::NotWanted),
        Choice::Virtio => virtio(),
        Choice::RamDisk => ram(),
        Choice::First => virtio().or_else(|e| match (e, ram()) {
            (_, Ok(d)) => Ok(d),
            (DiskError::NotFound(_), Err(DiskError::NotFound(_))) => {
                Err(DiskError::NotFound(Choice::First))
            }
            (DiskError::NotFound(_), Err(r)) => Err(r),
            (e, Err(_)) => Err(e),
        }),
    }
}
