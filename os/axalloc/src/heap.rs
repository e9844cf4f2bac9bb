//! The kernel heap and the combined allocator.

use crate::{FrameAllocator, FrameError, FRAME_SIZE};
use axconfig::memmap::MemRange;
use buddy_system_allocator::Heap;
use core::alloc::{GlobalAlloc, Layout};
use core::marker::PhantomData;
use core::ptr::NonNull;
use spin::Mutex;

/// Masks interrupts on the current CPU for the duration of a lock.
///
/// The runtime implements it with the architecture's interrupt mask; host tests use
/// [`NoIrqGuard`].
pub trait IrqGuard {
    /// Masks interrupts and returns the previous state.
    fn save_and_disable() -> usize;
    /// Restores the state [`IrqGuard::save_and_disable`] returned.
    fn restore(state: usize);
}

/// An [`IrqGuard`] that does nothing, for code that never runs in interrupt context.
pub struct NoIrqGuard;

impl IrqGuard for NoIrqGuard {
    fn save_and_disable() -> usize {
        0
    }
    fn restore(_: usize) {}
}

/// Smallest amount the heap grows by, in bytes.
const MIN_GROWTH: usize = 256 * 1024;

/// Heap usage numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes handed to the heap from frames.
    pub total: usize,
    /// Bytes currently allocated from the heap.
    pub used: usize,
    /// Free frames left in the frame allocator.
    pub free_frames: usize,
}

/// Frame allocator plus a buddy heap that grows from it.
pub struct Allocator<G> {
    frames: Mutex<FrameAllocator>,
    heap: Mutex<Heap<32>>,
    _guard: PhantomData<G>,
}

impl<G: IrqGuard> Default for Allocator<G> {
    fn default() -> Self {
        Self::new()
    }
}

impl<G: IrqGuard> Allocator<G> {
    /// An allocator with no memory yet; see [`Allocator::add_memory`].
    pub const fn new() -> Self {
        Self {
            frames: Mutex::new(FrameAllocator::new()),
            heap: Mutex::new(Heap::new()),
            _guard: PhantomData,
        }
    }

    fn with<T, R>(lock: &Mutex<T>, f: impl FnOnce(&mut T) -> R) -> R {
        let state = G::save_and_disable();
        let r = f(&mut lock.lock());
        G::restore(state);
        r
    }

    /// Hands the page-aligned free range `range` to the frame allocator, keeping its first
    /// frames for the bitmap. Ranges too small to be worth a bitmap are skipped (`Ok`).
    ///
    /// # Safety
    /// `range` must be RAM that nothing else uses, now or later, and be mapped writable at
    /// the same virtual address.
    pub unsafe fn add_memory(&self, range: MemRange) -> Result<(), FrameError> {
        let (bitmap, frames) = FrameAllocator::carve(range);
        if frames.is_empty() {
            return Ok(());
        }
        // SAFETY: the caller gives us `range` for good; `bitmap` is its page-aligned start,
        // so it is suitably aligned for u64 and not shared with anything.
        let words =
            unsafe { core::slice::from_raw_parts_mut(bitmap.start as *mut u64, bitmap.size / 8) };
        Self::with(&self.frames, |f| f.add_range(frames, words))
    }

    /// `count` contiguous frames aligned to `align` bytes; returns their physical address.
    pub fn alloc_frames(&self, count: usize, align: usize) -> Result<usize, FrameError> {
        Self::with(&self.frames, |f| f.alloc(count, align))
    }

    /// Returns frames from [`Allocator::alloc_frames`].
    pub fn dealloc_frames(&self, addr: usize, count: usize) -> Result<(), FrameError> {
        Self::with(&self.frames, |f| f.dealloc(addr, count))
    }

    /// Current usage.
    pub fn stats(&self) -> HeapStats {
        let (total, used) = Self::with(&self.heap, |h| {
            (h.stats_total_bytes(), h.stats_alloc_actual())
        });
        let free_frames = Self::with(&self.frames, |f| f.free_frames());
        HeapStats {
            total,
            used,
            free_frames,
        }
    }

    fn heap_alloc(&self, layout: Layout) -> Option<NonNull<u8>> {
        let state = G::save_and_disable();
        let mut heap = self.heap.lock();
        let mut result = heap.alloc(layout).ok();
        if result.is_none() {
            // Grow by at least twice the request so the buddy split always fits.
            let want = (layout.size().max(layout.align()) * 2).max(MIN_GROWTH);
            let count = want.div_ceil(FRAME_SIZE);
            let align = want.next_power_of_two().min(2 * 1024 * 1024);
            if let Ok(start) = self.frames.lock().alloc(count, align) {
                // SAFETY: the frames were just allocated for the heap's exclusive use and RAM
                // is mapped at the same virtual address (the `add_memory` contract).
                unsafe { heap.add_to_heap(start, start + count * FRAME_SIZE) };
                result = heap.alloc(layout).ok();
            }
        }
        drop(heap);
        G::restore(state);
        result
    }
}

// SAFETY: allocation is serialized by the heap lock; memory comes from frames owned by the
// heap for good, and `dealloc` returns blocks to the heap that allocated them.
unsafe impl<G: IrqGuard> GlobalAlloc for Allocator<G> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.heap_alloc(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            Self::with(&self.heap, |h| h.dealloc(p, layout));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Host memory standing in for RAM: a leaked, page-aligned buffer.
    fn ram(bytes: usize) -> MemRange {
        let layout = Layout::from_size_align(bytes, FRAME_SIZE).unwrap();
        // SAFETY: non-zero size; leaked on purpose, as RAM handed to the allocator is.
        let p = unsafe { std::alloc::alloc(layout) };
        assert!(!p.is_null());
        MemRange::new(p as usize, bytes)
    }

    #[test]
    fn heap_grows_from_frames() {
        let a: Allocator<NoIrqGuard> = Allocator::new();
        // SAFETY: `ram` gives memory nothing else uses.
        unsafe { a.add_memory(ram(8 * 1024 * 1024)).unwrap() };
        assert_eq!(a.stats().total, 0);
        let layout = Layout::from_size_align(1000, 8).unwrap();
        let ptrs: Vec<_> = (0..100)
            .map(|i| {
                // SAFETY: non-zero layout.
                let p = unsafe { a.alloc(layout) };
                assert!(!p.is_null());
                // SAFETY: p is a fresh 1000-byte block.
                unsafe { p.write_bytes(i as u8, 1000) };
                p
            })
            .collect();
        let s = a.stats();
        assert!(s.total >= MIN_GROWTH && s.used >= 100 * 1000, "{s:?}");
        for (i, p) in ptrs.iter().enumerate() {
            // SAFETY: each block is still allocated and was filled above.
            let got = unsafe { core::slice::from_raw_parts(*p, 1000) };
            assert!(got.iter().all(|&b| b == i as u8), "block {i} overwritten");
        }
        for p in ptrs {
            // SAFETY: allocated above with the same layout.
            unsafe { a.dealloc(p, layout) };
        }
        assert_eq!(a.stats().used, 0);
    }

    #[test]
    fn big_and_aligned_allocations() {
        let a: Allocator<NoIrqGuard> = Allocator::new();
        // SAFETY: as above.
        unsafe { a.add_memory(ram(16 * 1024 * 1024)).unwrap() };
        let layout = Layout::from_size_align(3 * 1024 * 1024, 4096).unwrap();
        // SAFETY: non-zero layout.
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        assert_eq!(p as usize % 4096, 0);
        // More than there is: null, not a panic.
        let huge = Layout::from_size_align(64 * 1024 * 1024, 8).unwrap();
        // SAFETY: non-zero layout.
        assert!(unsafe { a.alloc(huge) }.is_null());
        // SAFETY: allocated above with the same layout.
        unsafe { a.dealloc(p, layout) };
    }

    #[test]
    fn frames_and_heap_share_memory_without_overlap() {
        let a: Allocator<NoIrqGuard> = Allocator::new();
        let r = ram(4 * 1024 * 1024);
        // SAFETY: as above.
        unsafe { a.add_memory(r).unwrap() };
        let f = a.alloc_frames(4, FRAME_SIZE).unwrap();
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: non-zero layout.
        let p = unsafe { a.alloc(layout) } as usize;
        assert!(!(f..f + 4 * FRAME_SIZE).contains(&p));
        assert!(r.contains(f) && r.contains(p));
        a.dealloc_frames(f, 4).unwrap();
        assert_eq!(a.dealloc_frames(f, 4), Err(FrameError::DoubleFree));
    }
}
