//! Where page-table and guest-RAM frames come from.

use alloc::sync::Arc;

use crate::{HostPhysAddr, HostVirtAddr};

/// A source of physically contiguous 4 KiB frames, and the way to reach them.
///
/// On the hypervisor this is `axalloc` and [`phys_to_virt`](Self::phys_to_virt) is the
/// identity (RAM is identity-mapped). Host tests use
/// `fake::FakeFrameAllocator` (feature `fake`), whose "physical" addresses are
/// deliberately *not* host pointers, so code that forgets `phys_to_virt` fails there.
pub trait FrameAllocator {
    /// Allocates `count` contiguous 4 KiB frames whose start is a multiple of `align`
    /// bytes (a power of two, at least 4096). The contents are unspecified. `None` when out
    /// of memory.
    fn alloc_frames(&self, count: usize, align: usize) -> Option<HostPhysAddr>;

    /// Returns `count` frames starting at `pa`, exactly as one earlier
    /// [`alloc_frames`](Self::alloc_frames) call returned them.
    fn dealloc_frames(&self, pa: HostPhysAddr, count: usize);

    /// The hypervisor-virtual address through which host-physical `pa` can be read and
    /// written. Only meaningful for memory this allocator handed out, or other RAM the
    /// hypervisor maps.
    fn phys_to_virt(&self, pa: HostPhysAddr) -> HostVirtAddr;
}

impl<T: FrameAllocator + ?Sized> FrameAllocator for &T {
    fn alloc_frames(&self, count: usize, align: usize) -> Option<HostPhysAddr> {
        (**self).alloc_frames(count, align)
    }
    fn dealloc_frames(&self, pa: HostPhysAddr, count: usize) {
        (**self).dealloc_frames(pa, count)
    }
    fn phys_to_virt(&self, pa: HostPhysAddr) -> HostVirtAddr {
        (**self).phys_to_virt(pa)
    }
}

impl<T: FrameAllocator + ?Sized> FrameAllocator for Arc<T> {
    fn alloc_frames(&self, count: usize, align: usize) -> Option<HostPhysAddr> {
        (**self).alloc_frames(count, align)
    }
    fn dealloc_frames(&self, pa: HostPhysAddr, count: usize) {
        (**self).dealloc_frames(pa, count)
    }
    fn phys_to_virt(&self, pa: HostPhysAddr) -> HostVirtAddr {
        (**self).phys_to_virt(pa)
    }
}
