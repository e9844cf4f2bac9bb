//! The hypervisor's own disks, as [`axfs::BlockDevice`]s (docs/axfs.md, "The disk"):
//!
//! - a **virtio-blk** disk behind one of the `virtio,mmio` transports the device tree lists
//!   (QEMU `virt` on aarch64 and riscv64) or on PCI (QEMU q35 on x86_64: the first
//!   virtio-blk function the configuration-space walk finds), driven by the `virtio-drivers`
//!   crate, polled;
//! - a **RAM disk** over the boot module the loader left in RAM (QEMU's `-initrd`: the DTB's
//!   `/chosen` bounds, or the first multiboot module on x86_64).
//!
//! [`open`] finds the one the boot argument `disk=` chooses, and the other virtio-blk disks
//! (each named by its serial or its place, for VMs' disk regions). Nothing here is architecture
//! code: the addresses come from [`axstd::os::platform_info`] and the PCI configuration space
//! from `axhal::pci`, and the hypervisor's identity map makes a physical address its own
//! virtual address.
#![no_std]

extern crate alloc;

mod pci;
mod ramdisk;
mod virtio;

use alloc::boxed::Box;
use alloc::vec::Vec;
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

    /// Its name: a virtio-blk disk's ([`VirtioDisk::name`]), or `ramdisk`.
    pub fn name(&self) -> &str {
        match self {
            Self::Virtio(d) => d.name(),
            Self::VirtioPci(d) => d.name(),
            Self::Ram(..) => "ramdisk",
        }
    }

    /// Whether the device refuses writes (a virtio-blk disk offering `VIRTIO_BLK_F_RO`).
    pub fn read_only(&self) -> bool {
        match self {
            Self::Virtio(d) => d.read_only(),
            Self::VirtioPci(d) => d.read_only(),
            Self::Ram(..) => false,
        }
    }

    fn name_by_place(&mut self, n: usize) {
        match self {
            Self::Virtio(d) => d.name_by_place(n),
            Self::VirtioPci(d) => d.name_by_place(n),
            Self::Ram(..) => {}
        }
    }
}

/// What [`open`] found.
pub struct Opened {
    /// The disk the boot argument chose, for the hypervisor's filesystem, or why there is
    /// none.
    pub chosen: Result<Disk, DiskError>,
    /// Every other virtio-blk disk, in the order found, each with a name no other disk has
    /// (a later disk repeating a name is left out, with a warning).
    pub others: Vec<Disk>,
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

/// Every virtio-blk disk that starts, in this order: the virtio-mmio transports from the
/// highest address down (QEMU `virt` gives the first `-device` on its command line the
/// highest one), then PCI functions in walk order (q35 gives it the lowest free slot); so
/// the first disk is the first on QEMU's command line. Each is named
/// ([`VirtioDisk::name`]); a name already taken leaves the disk out. Also the first
/// device that failed to start, if any.
fn virtio_disks() -> (Vec<Disk>, Option<DiskError>) {
    let info = axstd::os::platform_info();
    let mut transports: Vec<_> = info.virtio_mmio.iter().collect();
    transports.sort_by_key(|r| core::cmp::Reverse(r.start));
    let mut failed = None;
    let mut found = Vec::new();
    for r in transports {
        match virtio::probe(r.start, r.size) {
            Ok(Some(d)) => found.push(Disk::Virtio(Box::new(d))),
            Ok(None) => {}
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    for d in pci::probe_all() {
        match d {
            Ok(d) => found.push(Disk::VirtioPci(Box::new(d))),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    let mut disks: Vec<Disk> = Vec::new();
    for (n, mut d) in found.into_iter().enumerate() {
        d.name_by_place(n);
        if disks.iter().any(|o| o.name() == d.name()) {
            log::warn!(
                "disk: {} is named {:?} as an earlier disk is: left out",
                d.describe(),
                d.name()
            );
        } else {
            disks.push(d);
        }
    }
    (disks, failed)
}

/// Opens the disk `choice` names: for [`Choice::First`], the first virtio-blk disk that
/// starts ([`virtio_disks`]' order), else the boot module; and every other virtio-blk disk
/// (none for [`Choice::None`]).
pub fn open(choice: Choice) -> Opened {
    if choice == Choice::None {
        return Opened {
            chosen: Err(DiskError::NotWanted),
            others: Vec::new(),
        };
    }
    let (mut virtio, failed) = virtio_disks();
    let ram = || -> Result<Disk, DiskError> {
        let info = axstd::os::platform_info();
        let module = info.initrd.ok_or(DiskError::NotFound(Choice::RamDisk))?;
        let bytes = ramdisk::take(module.start, module.size)?;
        Ok(Disk::Ram(RamDisk::new(bytes), module.start))
    };
    let first_virtio = |virtio: &mut Vec<Disk>| {
        if virtio.is_empty() {
            Err(failed.unwrap_or(DiskError::NotFound(Choice::Virtio)))
        } else {
            Ok(virtio.remove(0))
        }
    };
    let chosen = match choice {
        Choice::RamDisk => ram(),
        Choice::Virtio => first_virtio(&mut virtio),
        _ => first_virtio(&mut virtio).or_else(|e| match (e, ram()) {
            (_, Ok(d)) => Ok(d),
            (DiskError::NotFound(_), Err(DiskError::NotFound(_))) => {
                Err(DiskError::NotFound(Choice::First))
            }
            (DiskError::NotFound(_), Err(r)) => Err(r),
            (e, Err(_)) => Err(e),
        }),
    };
    Opened {
        chosen,
        others: virtio,
    }
}
