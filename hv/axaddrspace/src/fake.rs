//! Host test doubles: a page-table format whose bits differ from every real one, and a
//! counting frame allocator whose physical addresses are not host pointers.
//!
//! Available in this crate's tests and, for other crates' host tests, with the `fake`
//! feature (which pulls in `std`).

use std::alloc::{alloc, dealloc, Layout};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::vec;
use std::vec::Vec;

use crate::format::PteFormat;
use crate::{FrameAllocator, HostPhysAddr, HostVirtAddr, MappingFlags, PAGE_SIZE_4K};

/// A made-up descriptor format (ARCHITECTURE §8, "a fake architecture in CI"): four levels,
/// a two-frame root of 1024 entries, a 49-bit GPA, no leaves in the root, and a bit layout
/// unlike AArch64's or RISC-V's, so generic code cannot quietly depend on either.
///
/// | bits | field |
/// |---|---|
/// | 63 | present |
/// | 62 | leaf (1) / table (0) |
/// | 47:8 | `pa >> 12` |
/// | 0 | writable |
/// | 1 | device |
/// | 2 | readable |
/// | 3 | *not* executable |
#[derive(Debug, Clone, Copy)]
pub struct FakeFormat;

impl FakeFormat {
    /// Present.
    pub const PRESENT: u64 = 1 << 63;
    /// Leaf (as opposed to table).
    pub const LEAF: u64 = 1 << 62;
    /// Writable.
    pub const WRITE: u64 = 1 << 0;
    /// Device memory.
    pub const DEVICE: u64 = 1 << 1;
    /// Readable.
    pub const READ: u64 = 1 << 2;
    /// Not executable.
    pub const NO_EXEC: u64 = 1 << 3;
    /// The frame number field starts at bit 8.
    pub const PFN_SHIFT: u32 = 8;
    /// The frame number field is 40 bits wide.
    pub const PFN_MASK: u64 = (1 << 40) - 1;
}

impl PteFormat for FakeFormat {
    const NAME: &'static str = "fake";
    const LEVELS: usize = 4;
    const ROOT_ENTRIES: usize = 1024;
    const ROOT_FRAMES: usize = 2;
    const GPA_BITS: u32 = 49;
    const PA_BITS: u32 = 52;
    const ENCODES_DEVICE: bool = true;

    fn leaf_allowed(depth: usize) -> bool {
        (1..4).contains(&depth)
    }
    fn is_valid(pte: u64, _depth: usize) -> bool {
        pte & Self::PRESENT != 0
    }
    fn is_table(pte: u64, depth: usize) -> bool {
        depth < 3 && pte & Self::PRESENT != 0 && pte & Self::LEAF == 0
    }
    fn table(pa: HostPhysAddr, _depth: usize) -> u64 {
        Self::PRESENT | ((pa.as_usize() as u64 >> 12) & Self::PFN_MASK) << Self::PFN_SHIFT
    }
    fn leaf(pa: HostPhysAddr, flags: MappingFlags, _depth: usize) -> u64 {
        let mut d = Self::PRESENT
            | Self::LEAF
            | ((pa.as_usize() as u64 >> 12) & Self::PFN_MASK) << Self::PFN_SHIFT;
        if flags.contains(MappingFlags::WRITE) {
            d |= Self::WRITE;
        }
        if flags.contains(MappingFlags::DEVICE) {
            d |= Self::DEVICE;
        }
        if flags.contains(MappingFlags::READ) {
            d |= Self::READ;
        }
        if !flags.contains(MappingFlags::EXECUTE) {
            d |= Self::NO_EXEC;
        }
        d
    }
    fn addr(pte: u64) -> HostPhysAddr {
        HostPhysAddr::new((((pte >> Self::PFN_SHIFT) & Self::PFN_MASK) << 12) as usize)
    }
    fn flags(pte: u64, _depth: usize) -> MappingFlags {
        let mut f = MappingFlags::empty();
        if pte & Self::WRITE != 0 {
            f |= MappingFlags::WRITE;
        }
        if pte & Self::DEVICE != 0 {
            f |= MappingFlags::DEVICE;
        }
        if pte & Self::READ != 0 {
            f |= MappingFlags::READ;
        }
        if pte & Self::NO_EXEC == 0 {
            f |= MappingFlags::EXECUTE;
        }
        f
    }
}

/// The byte fresh and freed frames are filled with, so code that forgets to zero a frame
/// (or reads one after freeing it) sees garbage rather than a lucky zero.
pub const POISON: u8 = 0xa5;

/// A frame allocator over one host arena, for tests.
///
/// - "Physical" addresses are `FAKE_PHYS_BASE + offset into the arena`: not host pointers,
///   so forgetting [`phys_to_virt`](FrameAllocator::phys_to_virt) is caught.
/// - `phys_to_virt` panics on an address outside the arena or in a frame that is not
///   allocated: a test oracle for "never touches memory it does not own" (and for
///   use-after-free).
/// - Every allocation is remembered; freeing anything but a live allocation with its exact
///   frame count panics (double free, wrong size).
/// - Counters and an optional failure injection ([`fail_after`](Self::fail_after)) let tests
///   check that error paths return every frame.
pub struct FakeFrameAllocator {
    base: *mut u8,
    frames: usize,
    state: Mutex<State>,
}

struct State {
    used: Vec<bool>,
    live: BTreeMap<usize, usize>,
    alloc_calls: usize,
    fail_after: Option<usize>,
}

// SAFETY: `base` is only a handle to the arena this object owns; all bookkeeping is behind the
// mutex, and the memory is handed out to callers the same way a real allocator would.
unsafe impl Send for FakeFrameAllocator {}
// SAFETY: as above; `&self` methods only touch the mutex-protected state or compute addresses.
unsafe impl Sync for FakeFrameAllocator {}

impl FakeFrameAllocator {
    /// Where the fake physical address space starts (below 2^40, so every format, AArch64's
    /// 40-bit PS included, can encode it).
    pub const FAKE_PHYS_BASE: usize = 0x80_0000_0000;
    const ARENA_ALIGN: usize = 0x4000_0000;

    /// An arena of `frames` 4 KiB frames, filled with [`POISON`].
    pub fn new(frames: usize) -> Self {
        assert!(frames > 0);
        // 2 MiB alignment of the host arena is enough: the fake physical base is 1 GiB-aligned
        // and host alignment only matters for what tests dereference.
        let layout = Self::layout(frames);
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc(layout) };
        assert!(!base.is_null(), "host allocation of the fake arena failed");
        // SAFETY: `base` points at `frames * 4096` freshly allocated bytes.
        unsafe { base.write_bytes(POISON, frames * PAGE_SIZE_4K) };
        Self {
            base,
            frames,
            state: Mutex::new(State {
                used: vec![false; frames],
                live: BTreeMap::new(),
                alloc_calls: 0,
                fail_after: None,
            }),
        }
    }

    fn layout(frames: usize) -> Layout {
        Layout::from_size_align(frames * PAGE_SIZE_4K, 0x20_0000).unwrap()
    }

    /// Frames currently allocated.
    pub fn allocated_frames(&self) -> usize {
        self.state.lock().unwrap().live.values().sum()
    }

    /// Allocations currently live (one per successful `alloc_frames` not yet freed).
    pub fn live_allocations(&self) -> usize {
        self.state.lock().unwrap().live.len()
    }

    /// Total `alloc_frames` calls so far, failed ones included.
    pub fn alloc_calls(&self) -> usize {
        self.state.lock().unwrap().alloc_calls
    }

    /// Lets the next `n` allocations succeed (if memory allows) and fails every one after;
    /// `None` removes the limit.
    pub fn fail_after(&self, n: Option<usize>) {
        self.state.lock().unwrap().fail_after = n;
    }

    /// Whether `pa` is inside a live allocation.
    pub fn is_allocated(&self, pa: HostPhysAddr) -> bool {
        let s = self.state.lock().unwrap();
        s.live
            .range(..=pa.as_usize())
            .next_back()
            .is_some_and(|(&start, &count)| pa.as_usize() < start + count * PAGE_SIZE_4K)
    }

    fn check_range(&self, pa: usize, len: usize) -> usize {
        let off = pa.checked_sub(Self::FAKE_PHYS_BASE).unwrap_or_else(|| {
            panic!("fake allocator: physical address {pa:#x} is below the arena")
        });
        assert!(
            off.checked_add(len)
                .is_some_and(|e| e <= self.frames * PAGE_SIZE_4K),
            "fake allocator: physical range {pa:#x}+{len:#x} is outside the arena"
        );
        off
    }
}

impl Drop for FakeFrameAllocator {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc` with exactly this layout and is freed once.
        unsafe { dealloc(self.base, Self::layout(self.frames)) };
    }
}

impl FrameAllocator for FakeFrameAllocator {
    fn alloc_frames(&self, count: usize, align: usize) -> Option<HostPhysAddr> {
        assert!(count > 0, "alloc_frames(0)");
        assert!(
            align.is_power_of_two() && align >= PAGE_SIZE_4K,
            "bad alignment {align:#x}"
        );
        assert!(align <= Self::ARENA_ALIGN);
        let mut s = self.state.lock().unwrap();
        s.alloc_calls += 1;
        match s.fail_after {
            Some(0) => return None,
            Some(ref mut n) => *n -= 1,
            None => {}
        }
        let step = align / PAGE_SIZE_4K;
        let mut first = 0;
        while first + count <= self.frames {
            if let Some(busy) = s.used[first..first + count].iter().rposition(|&u| u) {
                first = (first + busy + 1).next_multiple_of(step);
                continue;
            }
            s.used[first..first + count].fill(true);
            let pa = Self::FAKE_PHYS_BASE + first * PAGE_SIZE_4K;
            s.live.insert(pa, count);
            // SAFETY: the frames are inside the arena (checked by the loop bound) and were
            // free, so nobody else holds them.
            unsafe {
                self.base
                    .add(first * PAGE_SIZE_4K)
                    .write_bytes(POISON, count * PAGE_SIZE_4K)
            };
            return Some(HostPhysAddr::new(pa));
        }
        None
    }

    fn dealloc_frames(&self, pa: HostPhysAddr, count: usize) {
        let off = self.check_range(pa.as_usize(), count * PAGE_SIZE_4K);
        let mut s = self.state.lock().unwrap();
        match s.live.remove(&pa.as_usize()) {
            Some(n) if n == count => {}
            Some(n) => {
                panic!("fake allocator: {pa:?} freed with {count} frames, allocated with {n}")
            }
            None => panic!("fake allocator: {pa:?} freed but not allocated (double free?)"),
        }
        let first = off / PAGE_SIZE_4K;
        s.used[first..first + count].fill(false);
        // SAFETY: the range is inside the arena (check_range) and was just returned to us.
        unsafe { self.base.add(off).write_bytes(POISON, count * PAGE_SIZE_4K) };
    }

    fn phys_to_virt(&self, pa: HostPhysAddr) -> HostVirtAddr {
        let off = self.check_range(pa.as_usize(), 1);
        assert!(
            self.is_allocated(pa),
            "fake allocator: phys_to_virt({pa:?}) of a frame that is not allocated"
        );
        HostVirtAddr::new(self.base as usize + off)
    }
}
