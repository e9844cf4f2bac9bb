//! Bitmap frame allocator over several physical ranges.

use crate::FRAME_SIZE;
use arrayvec::ArrayVec;
use axconfig::memmap::{MemRange, MAX_RANGES};

/// Why a frame operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameError {
    /// No run of free frames is long enough (or aligned as asked).
    OutOfMemory,
    /// The address is not the start of a frame this allocator manages.
    BadAddress,
    /// At least one frame of the run being freed was not allocated.
    DoubleFree,
    /// `count` was zero or the alignment not a power of two.
    BadRequest,
    /// More ranges than the allocator tracks.
    TooManyRanges,
}

struct Region {
    /// Address of the first managed frame.
    base: usize,
    /// Number of managed frames.
    frames: usize,
    /// Free frames.
    free: usize,
    /// One bit per frame, 1 = allocated.
    bitmap: &'static mut [u64],
}

impl Region {
    fn is_used(&self, i: usize) -> bool {
        self.bitmap[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, first: usize, count: usize, used: bool) {
        for i in first..first + count {
            if used {
                self.bitmap[i / 64] |= 1 << (i % 64);
            } else {
                self.bitmap[i / 64] &= !(1 << (i % 64));
            }
        }
    }

    /// First index of `count` free frames whose address is a multiple of `align` bytes.
    fn find(&self, count: usize, align: usize) -> Option<usize> {
        let mut addr = self.base.next_multiple_of(align);
        loop {
            let i = (addr - self.base) / FRAME_SIZE;
            if i + count > self.frames {
                return None;
            }
            match (i..i + count).rev().find(|&j| self.is_used(j)) {
                None => return Some(i),
                // Restart at the next aligned address past the used frame.
                Some(used) => addr = (self.base + (used + 1) * FRAME_SIZE).next_multiple_of(align),
            }
        }
    }
}

/// Hands out physical frames from a set of ranges.
pub struct FrameAllocator {
    regions: ArrayVec<Region, MAX_RANGES>,
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameAllocator {
    /// An allocator that manages nothing yet.
    pub const fn new() -> Self {
        Self {
            regions: ArrayVec::new_const(),
        }
    }

    /// How a page-aligned range is split: the bitmap at its start, the frames it tracks after.
    /// Returns `(bitmap range, managed frames range)`; the second is empty if the range is too
    /// small to hold both.
    pub fn carve(range: MemRange) -> (MemRange, MemRange) {
        let frames = range.size / FRAME_SIZE;
        // Each frame needs one bit; round the bitmap to whole u64 words and whole frames.
        let bitmap_bytes = frames.div_ceil(64) * 8;
        let bitmap_frames = bitmap_bytes.div_ceil(FRAME_SIZE);
        let managed = frames.saturating_sub(bitmap_frames);
        let bitmap = MemRange::new(range.start, bitmap_frames * FRAME_SIZE);
        let rest = MemRange::new(range.start + bitmap.size, managed * FRAME_SIZE);
        (bitmap, rest)
    }

    /// Adds `frames` (page-aligned) to the allocator, tracked by `bitmap`, which must hold at
    /// least one bit per frame. Every frame starts free.
    pub fn add_range(
        &mut self,
        frames: MemRange,
        bitmap: &'static mut [u64],
    ) -> Result<(), FrameError> {
        let count = frames.size / FRAME_SIZE;
        if !frames.start.is_multiple_of(FRAME_SIZE) || count == 0 || bitmap.len() * 64 < count {
            return Err(FrameError::BadRequest);
        }
        bitmap.fill(0);
        let region = Region {
            base: frames.start,
            frames: count,
            free: count,
            bitmap,
        };
        self.regions
            .try_push(region)
            .map_err(|_| FrameError::TooManyRanges)
    }

    /// Allocates `count` contiguous frames whose start is a multiple of `align` bytes
    /// (a power of two, at least [`FRAME_SIZE`] is used). Returns the physical address.
    pub fn alloc(&mut self, count: usize, align: usize) -> Result<usize, FrameError> {
        if count == 0 || !align.is_power_of_two() {
            return Err(FrameError::BadRequest);
        }
        let align = align.max(FRAME_SIZE);
        for r in self.regions.iter_mut().filter(|r| r.free >= count) {
            if let Some(i) = r.find(count, align) {
                r.set(i, count, true);
                r.free -= count;
                return Ok(r.base + i * FRAME_SIZE);
            }
        }
        Err(FrameError::OutOfMemory)
    }

    /// Frees `count` frames starting at `addr`, all of which must be allocated.
    pub fn dealloc(&mut self, addr: usize, count: usize) -> Result<(), FrameError> {
        if count == 0 {
            return Err(FrameError::BadRequest);
        }
        let r = self
            .regions
            .iter_mut()
            .find(|r| addr >= r.base && addr < r.base + r.frames * FRAME_SIZE)
            .ok_or(FrameError::BadAddress)?;
        if !(addr - r.base).is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::BadAddress);
        }
        let first = (addr - r.base) / FRAME_SIZE;
        if first + count > r.frames {
            return Err(FrameError::BadAddress);
        }
        if (first..first + count).any(|i| !r.is_used(i)) {
            return Err(FrameError::DoubleFree);
        }
        r.set(first, count, false);
        r.free += count;
        Ok(())
    }

    /// Free frames in all ranges.
    pub fn free_frames(&self) -> usize {
        self.regions.iter().map(|r| r.free).sum()
    }

    /// Managed frames in all ranges.
    pub fn total_frames(&self) -> usize {
        self.regions.iter().map(|r| r.frames).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn bitmap(words: usize) -> &'static mut [u64] {
        vec![u64::MAX; words].leak()
    }

    fn alloc_with(frames: usize) -> FrameAllocator {
        let mut a = FrameAllocator::new();
        a.add_range(
            MemRange::new(0x10_0000, frames * FRAME_SIZE),
            bitmap(frames.div_ceil(64)),
        )
        .unwrap();
        a
    }

    #[test]
    fn alloc_free_roundtrip() {
        let mut a = alloc_with(100);
        assert_eq!(a.total_frames(), 100);
        let x = a.alloc(1, FRAME_SIZE).unwrap();
        let y = a.alloc(3, FRAME_SIZE).unwrap();
        assert_eq!(x, 0x10_0000);
        assert_eq!(y, 0x10_1000);
        assert_eq!(a.free_frames(), 96);
        a.dealloc(x, 1).unwrap();
        assert_eq!(a.dealloc(x, 1), Err(FrameError::DoubleFree));
        assert_eq!(a.dealloc(y + 1, 1), Err(FrameError::BadAddress));
        assert_eq!(a.dealloc(0x1000, 1), Err(FrameError::BadAddress));
        assert_eq!(a.dealloc(y, 200), Err(FrameError::BadAddress));
        // The freed hole is reused first.
        assert_eq!(a.alloc(1, FRAME_SIZE).unwrap(), x);
        a.dealloc(y, 3).unwrap();
        assert_eq!(a.free_frames(), 99);
    }

    #[test]
    fn alignment_is_honoured() {
        let mut a = alloc_with(2048);
        a.alloc(1, FRAME_SIZE).unwrap();
        let big = a.alloc(512, 0x20_0000).unwrap();
        assert_eq!(big % 0x20_0000, 0);
        let small = a.alloc(2, 0x4000).unwrap();
        assert_eq!(small % 0x4000, 0);
        assert!(small + 0x2000 <= big || small >= big + 0x20_0000);
    }

    #[test]
    fn exhaustion_and_bad_requests() {
        let mut a = alloc_with(8);
        assert_eq!(a.alloc(0, FRAME_SIZE), Err(FrameError::BadRequest));
        assert_eq!(a.alloc(1, 3000), Err(FrameError::BadRequest));
        assert_eq!(a.alloc(9, FRAME_SIZE), Err(FrameError::OutOfMemory));
        for _ in 0..8 {
            a.alloc(1, FRAME_SIZE).unwrap();
        }
        assert_eq!(a.alloc(1, FRAME_SIZE), Err(FrameError::OutOfMemory));
        assert_eq!(a.free_frames(), 0);
    }

    #[test]
    fn fragmentation_needs_a_contiguous_run() {
        let mut a = alloc_with(8);
        let f: std::vec::Vec<_> = (0..8).map(|_| a.alloc(1, FRAME_SIZE).unwrap()).collect();
        for addr in f.iter().step_by(2) {
            a.dealloc(*addr, 1).unwrap();
        }
        assert_eq!(a.free_frames(), 4);
        assert_eq!(a.alloc(2, FRAME_SIZE), Err(FrameError::OutOfMemory));
        a.dealloc(f[1], 1).unwrap();
        assert_eq!(a.alloc(3, FRAME_SIZE), Ok(f[0]));
    }

    #[test]
    fn several_ranges() {
        let mut a = FrameAllocator::new();
        a.add_range(MemRange::new(0x1000, 2 * FRAME_SIZE), bitmap(1))
            .unwrap();
        a.add_range(MemRange::new(0x10_0000, 16 * FRAME_SIZE), bitmap(1))
            .unwrap();
        // Too long for the first range: comes from the second.
        assert_eq!(a.alloc(4, FRAME_SIZE), Ok(0x10_0000));
        assert_eq!(a.alloc(2, FRAME_SIZE), Ok(0x1000));
        assert_eq!(
            a.add_range(MemRange::new(0x1234, FRAME_SIZE), bitmap(1)),
            Err(FrameError::BadRequest)
        );
        assert_eq!(
            a.add_range(MemRange::new(0x20_0000, 65 * FRAME_SIZE), bitmap(1)),
            Err(FrameError::BadRequest)
        );
    }

    #[test]
    fn carve_leaves_room_for_the_bitmap() {
        // 1 GiB: 262144 frames need 32 KiB of bitmap = 8 frames.
        let (bm, rest) = FrameAllocator::carve(MemRange::new(0x4000_0000, 0x4000_0000));
        assert_eq!(bm, MemRange::new(0x4000_0000, 8 * FRAME_SIZE));
        assert_eq!(
            rest,
            MemRange::new(0x4000_8000, 0x4000_0000 - 8 * FRAME_SIZE)
        );
        let (_, rest) = FrameAllocator::carve(MemRange::new(0x1000, FRAME_SIZE));
        assert!(rest.is_empty());
    }
}
