//! The host disks VMs' `virtio-blk` devices may have regions of (`backing = { disk, offset,
//! size }`, docs/vm-config.md "Host disks"): every virtio-blk disk of the machine, by name,
//! each behind its own lock; on the disk the hypervisor mounts its filesystem from, only
//! what lies outside that filesystem (and its partition table); and which VM holds which
//! region ([`RegionClaims`]: a region a VM writes is that VM's alone until it is deleted).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use axdriver::Disk;
use axfs::{BlockDevice, BlockError, Volume};
use axvirtio_blk::{
    Backing, BackingError, HostRegionError, Region, RegionClaim, RegionClaims, Reserved,
    ReservedKind, SECTOR_SIZE,
};
use axvmconfig::{DiskRegion, RegionPlace};
use spin::{Mutex, Once};

/// A host disk VMs may have regions of.
pub struct HostDisk {
    /// Its name ([`Disk::name`]).
    name: String,
    /// Its size in bytes.
    bytes: u64,
    /// Whether the device refuses writes.
    read_only: bool,
    disk: Mutex<Disk>,
}

impl HostDisk {
    /// `disk`, to be shared between the hypervisor's filesystem and VMs' regions.
    pub fn new(disk: Disk) -> Arc<Self> {
        Arc::new(Self {
            name: disk.name().into(),
            bytes: disk.block_count() * SECTOR_SIZE,
            read_only: disk.read_only(),
            disk: Mutex::new(disk),
        })
    }
}

/// The hypervisor's own disk as its filesystem's block device: each call takes the disk's
/// lock, which VMs' regions of the disk take too.
pub struct SharedDisk(pub Arc<HostDisk>);

impl BlockDevice for SharedDisk {
    fn block_count(&self) -> u64 {
        self.0.bytes / SECTOR_SIZE
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.disk.lock().read_blocks(first, buf)
    }

    fn write_blocks(&mut self, first: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.0.disk.lock().write_blocks(first, buf)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.0.disk.lock().flush()
    }
}

/// A disk and the parts of it no VM may have.
struct Known {
    host: Arc<HostDisk>,
    reserved: Vec<Reserved>,
}

static KNOWN: Once<Vec<Known>> = Once::new();

/// Which VM holds which region.
static CLAIMS: RegionClaims = RegionClaims::new();

/// What a mounted `volume` needs of its disk: the volume, and the MBR when it is in a
/// partition.
pub fn reserved_for(volume: &Volume) -> Vec<Reserved> {
    let mut reserved = Vec::new();
    let what = match volume.partition {
        Some(n) => {
            reserved.push(Reserved {
                start: 0,
                end: SECTOR_SIZE,
                what: ReservedKind::PartitionTable,
            });
            ReservedKind::Partition(n)
        }
        None => ReservedKind::Volume,
    };
    reserved.push(Reserved {
        start: volume.start,
        end: volume.start + volume.bytes,
        what,
    });
    reserved
}

/// Keeps `others` for VMs' regions, and `own`, the disk the hypervisor mounts, with the
/// parts of it its filesystem needs (none when nothing was mounted); logs a line for each
/// disk. Called once, at boot.
pub fn keep(others: Vec<Disk>, own: Option<(Arc<HostDisk>, Vec<Reserved>)>) {
    let others = others.into_iter().map(|d| (HostDisk::new(d), Vec::new()));
    let known = own
        .into_iter()
        .chain(others)
        .map(|(host, reserved)| {
            let disk = host.disk.lock();
            let outside = if reserved.is_empty() {
                String::new()
            } else {
                let parts: Vec<String> = reserved
                    .iter()
                    .map(|r| alloc::format!("{:#x}..{:#x}", r.start, r.end))
                    .collect();
                alloc::format!(" outside bytes {} (its filesystem)", parts.join(", "))
            };
            log::info!(
                "disk: host disk {:?}: {}, {} KiB{}, for VMs' regions{outside}",
                host.name,
                disk.describe(),
                host.bytes / 1024,
                if host.read_only { ", read-only" } else { "" }
            );
            drop(disk);
            Known { host, reserved }
        })
        .collect();
    KNOWN.call_once(|| known);
}

/// The backing of VM `vm`'s `virtio-blk` over `region`, written unless `read_only`: the
/// region of the host disk it names (bytes, or an MBR partition found in the disk's table
/// now), held for `vm` until the backing is dropped. Refused when the disk is unknown, the
/// partition is not in its table, the region runs past its end or overlaps what the
/// hypervisor's filesystem needs, a read-only disk would be written, or another VM holds
/// an overlapping region and one of the two writes it.
pub fn open_region(
    vm: &str,
    region: &DiskRegion,
    read_only: bool,
) -> Result<Box<dyn Backing>, HostRegionError> {
    let known = KNOWN.get().map(Vec::as_slice).unwrap_or_default();
    if known.is_empty() {
        return Err(HostRegionError::NoHostDisks);
    }
    let Some(Known { host, reserved }) = known.iter().find(|k| k.host.name == region.disk) else {
        return Err(HostRegionError::UnknownDisk {
            known: known.iter().map(|k| k.host.name.clone()).collect(),
        });
    };
    let (offset, size) = match region.place {
        RegionPlace::Bytes { offset, size } => (offset, size),
        RegionPlace::Partition(n) => {
            let found = axfs::mbr_partition(&mut *host.disk.lock(), n)
                .map_err(|_| HostRegionError::Unreadable)?
                .ok_or(HostRegionError::NoPartition(n))?;
            // Both from 32-bit fields: no overflow.
            (found.start * SECTOR_SIZE, found.blocks * SECTOR_SIZE)
        }
    };
    let end = offset
        .checked_add(size)
        .filter(|&end| end <= host.bytes)
        .ok_or(HostRegionError::PastEnd {
            disk_bytes: host.bytes,
        })?;
    if let Some(r) = reserved.iter().find(|r| r.start < end && offset < r.end) {
        return Err(HostRegionError::Reserved(*r));
    }
    if host.read_only && !read_only {
        return Err(HostRegionError::ReadOnlyDisk);
    }
    let claim = CLAIMS.claim(vm, &host.name, (offset, end), !read_only)?;
    let whole = HostDiskBacking {
        host: host.clone(),
        _claim: claim,
    };
    // Whole sectors inside the disk: checked by the config's validation (or whole blocks
    // of a partition) and above.
    let region = Region::new(whole, offset / SECTOR_SIZE, size / SECTOR_SIZE)?;
    Ok(Box::new(region))
}

/// A whole host disk as a [`Backing`] (a [`Region`] of it is what a guest sees), with the
/// claim on that region. Every access takes the disk's lock and moves whole sectors in one
/// request; the device only asks for whole sectors.
struct HostDiskBacking {
    host: Arc<HostDisk>,
    _claim: RegionClaim,
}

/// A device error as a backing error: out of range, or the disk's failure (a transfer
/// that is not whole sectors, which the device never asks for, counts as one).
fn backing_error(e: BlockError) -> BackingError {
    match e {
        BlockError::OutOfRange { .. } => BackingError::OutOfRange,
        BlockError::Misaligned { .. } | BlockError::Io { .. } => BackingError::Io,
    }
}

impl HostDiskBacking {
    /// The first sector of `offset`, if it is a sector boundary.
    fn sector(offset: u64) -> Result<u64, BackingError> {
        if offset.is_multiple_of(SECTOR_SIZE) {
            Ok(offset / SECTOR_SIZE)
        } else {
            Err(BackingError::Io)
        }
    }
}

impl Backing for HostDiskBacking {
    fn len(&self) -> u64 {
        self.host.bytes
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        let first = Self::sector(offset)?;
        self.host
            .disk
            .lock()
            .read_blocks(first, buf)
            .map_err(backing_error)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackingError> {
        let first = Self::sector(offset)?;
        self.host
            .disk
            .lock()
            .write_blocks(first, data)
            .map_err(backing_error)
    }

    fn flush(&mut self) -> Result<(), BackingError> {
        self.host.disk.lock().flush().map_err(backing_error)
    }
}
