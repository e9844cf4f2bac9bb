//! Which VM holds which region of which host disk: a region written by a VM belongs to it
//! alone until its device is dropped; read-only holders may overlap anything.

use crate::RegionError;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use spin::Mutex;

/// One holder's region.
struct Held {
    /// Tells the holder's [`RegionClaim`] from every other.
    id: u64,
    disk: String,
    start: u64,
    end: u64,
    writable: bool,
    vm: String,
}

/// The regions held on the host disks, each by the VM that claimed it, until its
/// [`RegionClaim`] is dropped.
pub struct RegionClaims {
    held: Mutex<(u64, Vec<Held>)>,
}

impl Default for RegionClaims {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a region cannot be claimed: VM `holder` writes an overlapping region, or the
/// claimant wants to write one `holder` holds. `Display` (the disk is the claimant's, which
/// the caller names): `overlaps bytes 0x100000..0x102000, which vm "vblkr" holds
/// read-write`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimError {
    /// The host disk.
    pub disk: String,
    /// The holder's region, bytes `[start, end)`.
    pub start: u64,
    /// End (exclusive) of the holder's region.
    pub end: u64,
    /// Whether the holder writes it.
    pub writable: bool,
    /// The VM holding it.
    pub holder: String,
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "overlaps bytes {:#x}..{:#x}, which vm {:?} holds {}",
            self.start,
            self.end,
            self.holder,
            if self.writable {
                "read-write"
            } else {
                "read-only"
            }
        )
    }
}

impl core::error::Error for ClaimError {}

/// Why a VM cannot have a region of a host disk. `Display` is the cause alone, one line
/// (the caller names the disk and the region): `runs past the end of the disk (0x100000
/// bytes)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRegionError {
    /// No host disk was kept at boot (none found, or the boot argument `disk=` chose none
    /// or was not understood).
    NoHostDisks,
    /// No host disk has the region's name.
    UnknownDisk {
        /// The names of the host disks there are.
        known: Vec<String>,
    },
    /// The disk's partition table has no partition of the region's number (no MBR, or an
    /// empty entry).
    NoPartition(u8),
    /// The disk's partition table could not be read (the device failed).
    Unreadable,
    /// The region runs past the end of the disk.
    PastEnd {
        /// The disk's size in bytes.
        disk_bytes: u64,
    },
    /// A region the VM writes, of a disk that refuses writes.
    ReadOnlyDisk,
    /// The region overlaps a part of the hypervisor's own disk that its mounted filesystem
    /// needs.
    Reserved(Reserved),
    /// Another VM holds an overlapping region, and one of the two writes it.
    Claimed(ClaimError),
    /// The region is not whole sectors inside the disk (checked before: a bug).
    Region(RegionError),
}

/// A part of the hypervisor's own disk that no VM may have a region of: bytes
/// `[start, end)`, and what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    /// Its first byte on the disk.
    pub start: u64,
    /// The byte after its last.
    pub end: u64,
    /// What it holds.
    pub what: ReservedKind,
}

/// What a [`Reserved`] part of the hypervisor's disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedKind {
    /// The MBR (block 0), whose partition table locates the mounted volume.
    PartitionTable,
    /// MBR partition `n` (1 to 4), which holds the mounted volume.
    Partition(u8),
    /// The mounted volume, on a disk without a partition table.
    Volume,
}

impl fmt::Display for HostRegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHostDisks => f.write_str(
                "no host disks: none was found, or the boot argument disk= chose none or was not understood",
            ),
            Self::UnknownDisk { known } => {
                f.write_str("no host disk has this name (host disks: ")?;
                if known.is_empty() {
                    f.write_str("none")?;
                }
                for (i, name) in known.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{name}")?;
                }
                f.write_str(")")
            }
            Self::NoPartition(n) => write!(f, "the disk's MBR has no partition {n}"),
            Self::Unreadable => f.write_str("the disk's MBR could not be read (a device error)"),
            Self::PastEnd { disk_bytes } => {
                write!(f, "runs past the end of the disk ({disk_bytes:#x} bytes)")
            }
            Self::ReadOnlyDisk => {
                f.write_str("the disk is read-only: give the device `read_only = true`")
            }
            Self::Reserved(r) => write!(f, "{r}"),
            Self::Claimed(e) => write!(f, "{e}"),
            Self::Region(e) => write!(f, "{e}"),
        }
    }
}

impl fmt::Display for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (start, end) = (self.start, self.end);
        match self.what {
            ReservedKind::PartitionTable => write!(
                f,
                "overlaps the partition table (bytes {start:#x}..{end:#x}), which locates the filesystem the hypervisor mounts"
            ),
            ReservedKind::Partition(n) => write!(
                f,
                "overlaps partition {n} (bytes {start:#x}..{end:#x}), the filesystem the hypervisor mounts"
            ),
            ReservedKind::Volume => write!(
                f,
                "overlaps the filesystem the hypervisor mounts (bytes {start:#x}..{end:#x})"
            ),
        }
    }
}

impl core::error::Error for HostRegionError {}

impl From<ClaimError> for HostRegionError {
    fn from(e: ClaimError) -> Self {
        Self::Claimed(e)
    }
}

impl From<RegionError> for HostRegionError {
    fn from(e: RegionError) -> Self {
        Self::Region(e)
    }
}

/// A region held in a [`RegionClaims`]; dropping it gives the region back.
pub struct RegionClaim {
    claims: &'static RegionClaims,
    id: u64,
}

impl Drop for RegionClaim {
    fn drop(&mut self) {
        self.claims.held.lock().1.retain(|h| h.id != self.id);
    }
}

impl RegionClaims {
    /// No region held.
    pub const fn new() -> Self {
        Self {
            held: Mutex::new((0, Vec::new())),
        }
    }

    /// VM `vm` claims bytes `[start, end)` of host disk `disk`, to write them when
    /// `writable`. Refused when another VM holds an overlapping region and either of the
    /// two writes; a VM never conflicts with itself (its own devices, or itself rebuilt).
    pub fn claim(
        &'static self,
        vm: &str,
        disk: &str,
        (start, end): (u64, u64),
        writable: bool,
    ) -> Result<RegionClaim, ClaimError> {
        let mut held = self.held.lock();
        let (next, list) = &mut *held;
        if let Some(h) = list.iter().find(|h| {
            h.vm != vm
                && h.disk == disk
                && h.start < end
                && start < h.end
                && (writable || h.writable)
        }) {
            return Err(ClaimError {
                disk: h.disk.clone(),
                start: h.start,
                end: h.end,
                writable: h.writable,
                holder: h.vm.clone(),
            });
        }
        *next += 1;
        list.push(Held {
            id: *next,
            disk: disk.into(),
            start,
            end,
            writable,
            vm: vm.into(),
        });
        Ok(RegionClaim {
            claims: self,
            id: *next,
        })
    }
}
