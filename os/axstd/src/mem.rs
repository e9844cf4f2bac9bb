//! Physical frames for guests and page tables.

use crate::rt::ALLOCATOR;

/// `count` contiguous 4 KiB frames aligned to `align` bytes; their physical address (which is
/// also their address in the hypervisor's identity map). `None` when memory is short.
pub fn alloc_frames(count: usize, align: usize) -> Option<usize> {
    ALLOCATOR.alloc_frames(count, align).ok()
}

/// Returns frames from [`alloc_frames`]. Freeing frames that are not allocated is refused
/// and logged (it would be a hypervisor bug).
pub fn dealloc_frames(addr: usize, count: usize) {
    if let Err(e) = ALLOCATOR.dealloc_frames(addr, count) {
        log::error!("freeing {count} frames at {addr:#x}: {e:?}");
    }
}
