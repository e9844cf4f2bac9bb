//! Which VM holds which region of which host disk: a region written by a VM belongs to it
//! alone until its device is dropped; read-only holders may overlap anything.

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
/// claimant wants to write one `holder` holds. `Display`: `overlaps disk "data" bytes
/// 0x100000..0x102000, which vm "vblkr" holds read-write`.
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
            "overlaps disk {:?} bytes {:#x}..{:#x}, which vm {:?} holds {}",
            self.disk,
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
