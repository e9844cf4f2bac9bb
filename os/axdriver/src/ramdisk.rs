//! The boot module as the bytes of a RAM disk, handed out once.

use crate::DiskError;
use core::sync::atomic::{AtomicBool, Ordering};

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The `size` bytes of the boot module at physical address `start`, the first time only.
pub(crate) fn take(start: usize, size: usize) -> Result<&'static mut [u8], DiskError> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Err(DiskError::RamDiskTaken);
    }
    // SAFETY: the boot module is RAM the loader filled and the platform info keeps out of the
    // allocator (`PlatformInfo::free_memory`), so nothing else uses it; the identity map makes
    // its physical address its address here; `TAKEN` hands it out once, so this is the only
    // reference to it for the rest of the run.
    Ok(unsafe { core::slice::from_raw_parts_mut(start as *mut u8, size) })
}
