//! The host disks VMs' `virtio-blk` devices may have regions of (`backing = { disk, offset,
//! size }`, docs/vm-config.md "Host disks"): every virtio-blk disk of the machine but the
//! one the hypervisor mounts, by name, each behind its own lock; and which VM holds which
//! region ([`RegionClaims`]: a region a VM writes is that VM's alone until it is deleted).

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use axdriver::Disk;
use axfs::{BlockDevice, BlockError};
use axvirtio_blk::{Backing, BackingError, Region, RegionClaim, RegionClaims, SECTOR_SIZE};
use axvm::DiskOpenError;
use axvmconfig::DiskRegion;
use spin::{Mutex, Once};

/// A host disk VMs may have regions of.
struct HostDisk {
    /// Its name ([`Disk::name`]).
    name: String,
    /// Its size in bytes.
    bytes: u64,
    /// Whether the device refuses writes.
    read_only: bool,
    disk: Mutex<Disk>,
}

/// What [`keep`] was given.
struct Known {
    disks: Vec<Arc<HostDisk>>,
    /// The name of the disk the hypervisor mounts, if any.
    own: Option<String>,
}

static KNOWN: Once<Known> = Once::new();

/// Which VM holds which region.
static CLAIMS: RegionClaims = RegionClaims::new();

/// Keeps `disks` for VMs' regions, and the name of the hypervisor's own disk (`own`), whose
/// regions are refused; logs a line for each disk kept. Called once, at boot.
pub fn keep(disks: Vec<Disk>, own: Option<String>) {
    let disks = disks
        .into_iter()
        .map(|disk| {
            let bytes = disk.block_count() * SECTOR_SIZE;
            log::info!(
                "disk: host disk {:?}: {}, {} KiB{}, for VMs' regions",
                disk.name(),
                disk.describe(),
                bytes / 1024,
                if disk.read_only() { ", read-only" } else { "" }
            );
            Arc::new(HostDisk {
                name: disk.name().into(),
                bytes,
                read_only: disk.read_only(),
                disk: Mutex::new(disk),
            })
        })
        .collect();
    KNOWN.call_once(|| Known { disks, own });
}

/// The backing of VM `vm`'s `virtio-blk` over `region`, written unless `read_only`: the
/// region of the host disk it names, held for `vm` until the backing is dropped. Refused
/// (one line) when the disk is unknown or the hypervisor's own, the region runs past its
/// end, a read-only disk would be written, or another VM holds an overlapping region and
/// one of the two writes it.
pub fn open_region(
    vm: &str,
    region: &DiskRegion,
    read_only: bool,
) -> Result<Box<dyn Backing>, DiskOpenError> {
    let fail = |why: String| Err(DiskOpenError(why));
    let Some(known) = KNOWN.get() else {
        return fail(
            "no host disks: the boot argument disk= chose none, or was not understood".into(),
        );
    };
    if known.own.as_deref() == Some(region.disk.as_str()) {
        return fail(alloc::format!(
            "host disk {:?} holds the filesystem the hypervisor mounts: no VM may have a region of it",
            region.disk
        ));
    }
    let Some(host) = known.disks.iter().find(|d| d.name == region.disk) else {
        let names: Vec<&str> = known.disks.iter().map(|d| d.name.as_str()).collect();
        return fail(alloc::format!(
            "no host disk is named {:?} (host disks for VMs: {})",
            region.disk,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    };
    let end = match region.end() {
        Some(end) if end <= host.bytes => end,
        _ => {
            return fail(alloc::format!(
                "runs past the end of host disk {:?} ({:#x} bytes)",
                host.name,
                host.bytes
            ))
        }
    };
    if host.read_only && !read_only {
        return fail(alloc::format!(
            "host disk {:?} is read-only: give the device `read_only = true`",
            host.name
        ));
    }
    let claim = CLAIMS
        .claim(vm, &host.name, (region.offset, end), !read_only)
        .map_err(|e| DiskOpenError(e.to_string()))?;
    let whole = HostDiskBacking {
        host: host.clone(),
        _claim: claim,
    };
    // Whole sectors inside the disk: checked by the config's validation and above.
    Region::new(
        whole,
        region.offset / SECTOR_SIZE,
        region.size / SECTOR_SIZE,
    )
    .map(|r| Box::new(r) as Box<dyn Backing>)
    .map_err(|e| DiskOpenError(e.to_string()))
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
