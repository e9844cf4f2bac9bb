//! Regions, backends, lazy population and guest memory access, against every format.

use std::sync::Arc;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::fake::{FakeFrameAllocator, POISON};
use crate::{
    AccessError, AddrSpace, AddrSpaceError, Backend, FrameAllocator, NestedPageTable, PagingError,
    PteFormat, Region,
};

type As<'a, F> = AddrSpace<F, &'a FakeFrameAllocator>;

const RAM: usize = 0x4000_0000;

fn has_2m<F: PteFormat>() -> bool {
    NestedPageTable::<F, &FakeFrameAllocator>::leaf_sizes().any(|s| s == M2)
}

/// Reads host memory behind a guest page directly, bypassing `AddrSpace::read`.
fn host_bytes<F: PteFormat>(aspace: &As<'_, F>, g: usize, len: usize) -> Vec<u8> {
    let (h, _, _) = aspace.translate(gpa(g)).expect("mapped");
    let p = aspace.allocator().phys_to_virt(h).as_usize() as *const u8;
    // SAFETY: `h` is inside a live frame of the fake arena (phys_to_virt checked it) and the
    // callers keep `len` within that page.
    unsafe { std::slice::from_raw_parts(p, len).to_vec() }
}

fn populate_maps_zeroed_frames<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(2048);
    {
        let mut a = As::<F>::new(&alloc).unwrap();
        a.map_alloc(gpa(RAM), 2 * M2 + 3 * K4, R | W | X, true)
            .unwrap();
        let r: Vec<Region> = a.regions().copied().collect();
        assert_eq!(
            r,
            [Region {
                gpa: gpa(RAM),
                size: 2 * M2 + 3 * K4,
                flags: R | W | X,
                backend: Backend::Alloc { populate: true }
            }]
        );
        // Every page is mapped, 2 MiB at a time where the format allows.
        for off in (0..2 * M2 + 3 * K4).step_by(K4) {
            let (_, f, s) = a.translate(gpa(RAM + off)).unwrap();
            assert_eq!(f, R | W | X);
            assert_eq!(
                s,
                if has_2m::<F>() && off < 2 * M2 {
                    M2
                } else {
                    K4
                }
            );
        }
        assert_eq!(a.translate(gpa(RAM + 2 * M2 + 3 * K4)), None);
        // The allocator hands out poisoned frames: the guest must see zeroes.
        let mut buf = vec![0xffu8; 2 * M2 + 3 * K4];
        a.read(gpa(RAM), &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        assert!(host_bytes(&a, RAM + 2 * M2, K4).iter().all(|&b| b == 0));
        assert_ne!(host_bytes(&a, RAM, 1)[0], POISON);
    }
    assert_eq!(
        alloc.allocated_frames(),
        0,
        "drop returns data frames and tables"
    );
}

fn populate_falls_back_to_4k_frames<F: PteFormat>() {
    // An arena with no free 2 MiB-aligned 2 MiB block still populates, with pages.
    let alloc = FakeFrameAllocator::new(1024);
    let hog = alloc.alloc_frames(1, K4).unwrap();
    let hog2 = alloc.alloc_frames(1, M2).unwrap();
    assert!(alloc.alloc_frames(512, M2).is_none());
    let mut a = As::<F>::new(&alloc).unwrap();
    a.map_alloc(gpa(RAM), M2, R | W, true).unwrap();
    for off in (0..M2).step_by(K4) {
        assert_eq!(
            a.translate(gpa(RAM + off)).map(|t| (t.1, t.2)),
            Some((R | W, K4))
        );
    }
    drop(a);
    alloc.dealloc_frames(hog, 1);
    alloc.dealloc_frames(hog2, 1);
    assert_eq!(alloc.allocated_frames(), 0);
}

fn populate_failure_is_all_or_nothing<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(2048);
    let mut a = As::<F>::new(&alloc).unwrap();
    a.map_alloc(gpa(RAM - M2), M2, R | W, true).unwrap();
    let base = alloc.allocated_frames();
    let mut n = 0;
    loop {
        alloc.fail_after(Some(n));
        let r = a.map_alloc(gpa(RAM), M2 + 5 * K4, R | W, true);
        alloc.fail_after(None);
        match r {
            Err(AddrSpaceError::Paging(PagingError::NoMemory)) => {
                assert_eq!(alloc.allocated_frames(), base, "after {n} allocations");
                assert_eq!(a.regions().count(), 1);
                assert_eq!(a.translate(gpa(RAM)), None);
                n += 1;
            }
            Ok(()) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(n >= 2);
    assert_eq!(a.regions().count(), 2);
}

fn linear_regions<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let host = alloc.alloc_frames(4, K4).unwrap();
    {
        let mut a = As::<F>::new(&alloc).unwrap();
        a.map_linear(gpa(0x8000_0000), host, 4 * K4, R | W).unwrap();
        a.map_linear(gpa(0x0900_0000), hpa(0x0900_0000), K4, R | W | DEV)
            .unwrap();
        assert_eq!(
            a.translate(gpa(0x8000_1234)),
            Some((host + 0x1234, R | W, K4))
        );
        let dev = if F::ENCODES_DEVICE {
            DEV
        } else {
            MappingFlags::empty()
        };
        assert_eq!(
            a.translate(gpa(0x0900_0010)),
            Some((hpa(0x0900_0010), R | W | dev, K4))
        );
        // The hypervisor reads and writes linear RAM in place.
        a.write(gpa(0x8000_0ffe), b"linear").unwrap();
        let p = alloc.phys_to_virt(host).as_usize() as *const u8;
        // SAFETY: `host` is four live frames from the fake arena.
        let seen = unsafe { std::slice::from_raw_parts(p.add(0xffe), 6) };
        assert_eq!(seen, b"linear");
        // Device regions are never accessed as memory.
        let mut b = [0u8; 4];
        assert_eq!(
            a.read(gpa(0x0900_0000), &mut b),
            Err(AccessError::Device {
                gpa: gpa(0x0900_0000)
            })
        );
        assert_eq!(
            a.write(gpa(0x0900_0000), &b),
            Err(AccessError::Device {
                gpa: gpa(0x0900_0000)
            })
        );
        a.unmap(gpa(0x8000_0000), 4 * K4).unwrap();
        assert!(
            alloc.is_allocated(host),
            "linear frames are not freed on unmap"
        );
        assert_eq!(a.translate(gpa(0x8000_0000)), None);
    }
    assert_eq!(
        alloc.allocated_frames(),
        4,
        "only the test's own frames remain"
    );
    alloc.dealloc_frames(host, 4);
}

fn linear_uses_huge_pages<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let mut a = As::<F>::new(&alloc).unwrap();
    a.map_linear(gpa(G1), hpa(G1), G1 + M2, R | W | X).unwrap();
    let sizes: Vec<usize> = NestedPageTable::<F, &FakeFrameAllocator>::leaf_sizes().collect();
    let (_, _, s) = a.translate(gpa(G1)).unwrap();
    assert_eq!(s, if sizes.contains(&G1) { G1 } else { K4 });
}

fn overlapping_regions_refused<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(256);
    let mut a = As::<F>::new(&alloc).unwrap();
    a.map_alloc(gpa(RAM), 16 * K4, R | W, true).unwrap();
    a.map_linear(gpa(RAM + M2), hpa(0x1000_0000), M2, R)
        .unwrap();
    let frames = alloc.allocated_frames();
    let existing = |g| Err(AddrSpaceError::Overlap { existing: gpa(g) });
    assert_eq!(a.map_alloc(gpa(RAM), K4, R, false), existing(RAM));
    assert_eq!(
        a.map_alloc(gpa(RAM + 15 * K4), 2 * K4, R, true),
        existing(RAM)
    );
    assert_eq!(a.map_alloc(gpa(RAM - K4), 2 * K4, R, true), existing(RAM));
    assert_eq!(
        a.map_linear(gpa(RAM - M2), hpa(0), 4 * M2, R),
        existing(RAM + M2)
    );
    assert_eq!(
        a.map_linear(gpa(RAM + M2 + M2 - K4), hpa(0), K4, R),
        existing(RAM + M2)
    );
    assert_eq!(
        alloc.allocated_frames(),
        frames,
        "refusals allocate nothing"
    );
    // Touching is fine.
    a.map_alloc(gpa(RAM + 16 * K4), K4, R, false).unwrap();
    a.map_alloc(gpa(RAM - K4), K4, R, true).unwrap();
    a.map_linear(gpa(RAM + 2 * M2), hpa(0), K4, R).unwrap();
    assert_eq!(a.regions().count(), 5);
    let starts: Vec<usize> = a.regions().map(|r| r.gpa.as_usize()).collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "regions in address order"
    );
}

fn bad_regions_refused<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let mut a = As::<F>::new(&alloc).unwrap();
    let limit = NestedPageTable::<F, &FakeFrameAllocator>::gpa_limit();
    let p = |e| Err(AddrSpaceError::Paging(e));
    assert_eq!(
        a.map_alloc(gpa(RAM), 0, R, true),
        Err(AddrSpaceError::EmptyRegion)
    );
    assert_eq!(
        a.map_alloc(gpa(RAM + 1), K4, R, true),
        p(PagingError::NotAligned)
    );
    assert_eq!(
        a.map_alloc(gpa(RAM), K4 + 1, R, true),
        p(PagingError::NotAligned)
    );
    assert_eq!(
        a.map_alloc(gpa(limit), K4, R, true),
        p(PagingError::OutOfRange)
    );
    assert_eq!(
        a.map_alloc(gpa(usize::MAX - 0xfff), 2 * K4, R, false),
        p(PagingError::OutOfRange)
    );
    assert_eq!(
        a.map_alloc(gpa(RAM), K4, W, true),
        p(PagingError::InvalidFlags)
    );
    assert_eq!(
        a.map_alloc(gpa(RAM), K4, R | W | DEV, true),
        Err(AddrSpaceError::DeviceRam)
    );
    assert_eq!(
        a.map_linear(gpa(RAM), hpa(0x123), K4, R),
        p(PagingError::NotAligned)
    );
    assert_eq!(a.regions().count(), 0);
    assert_eq!(alloc.allocated_frames(), F::ROOT_FRAMES);
}

fn unmap_whole_regions_only<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(256);
    let mut a = As::<F>::new(&alloc).unwrap();
    let root_only = alloc.allocated_frames();
    a.map_alloc(gpa(RAM), 8 * K4, R | W, true).unwrap();
    a.map_alloc(gpa(RAM + 16 * K4), 8 * K4, R | W, false)
        .unwrap();
    a.handle_page_fault(gpa(RAM + 17 * K4), W);
    let e = Err(AddrSpaceError::NotWholeRegions);
    assert_eq!(a.unmap(gpa(RAM), 4 * K4), e, "part of a region");
    assert_eq!(a.unmap(gpa(RAM + K4), 8 * K4), e);
    assert_eq!(a.unmap(gpa(RAM + 8 * K4), 8 * K4), e, "the gap between");
    assert_eq!(a.unmap(gpa(0), 4 * K4), e, "nothing");
    assert_eq!(a.unmap(gpa(RAM), 20 * K4), e, "cuts the second");
    assert_eq!(a.regions().count(), 2);
    // Both at once, with the gap.
    a.unmap(gpa(RAM), 24 * K4).unwrap();
    assert_eq!(a.regions().count(), 0);
    assert_eq!(a.translate(gpa(RAM)), None);
    assert_eq!(a.translate(gpa(RAM + 17 * K4)), None);
    assert_eq!(
        alloc.allocated_frames(),
        root_only,
        "data frames and tables returned"
    );
    a.map_alloc(gpa(RAM), 8 * K4, R | W, true).unwrap();
    a.unmap(gpa(RAM), 8 * K4).unwrap();
    assert_eq!(alloc.allocated_frames(), root_only);
}

fn read_write_across_pages<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(256);
    let mut a = As::<F>::new(&alloc).unwrap();
    a.map_alloc(gpa(RAM), 4 * K4, R | W, true).unwrap();
    // Three pages: the tail of the first, all of the second, the head of the third.
    let data: Vec<u8> = (0..K4 + 11).map(|i| (i * 7 + 3) as u8).collect();
    let at = RAM + K4 - 5;
    a.write(gpa(at), &data).unwrap();
    let mut back = vec![0; data.len()];
    a.read(gpa(at), &mut back).unwrap();
    assert_eq!(back, data);
    // The bytes are in the right host frames (which need not be contiguous).
    assert_eq!(host_bytes(&a, RAM + K4 - 5, 5), data[..5]);
    assert_eq!(host_bytes(&a, RAM + K4, K4), data[5..5 + K4]);
    assert_eq!(host_bytes(&a, RAM + 2 * K4, K4)[..6], data[5 + K4..]);
    assert_eq!(host_bytes(&a, RAM + 2 * K4, K4)[6], 0);
    // Unaligned small accesses.
    for (off, len) in [(0, 1), (3, 8), (7, 9), (K4 - 1, 2), (4 * K4 - 3, 3)] {
        let v: Vec<u8> = (0..len).map(|i| 0x80 + i as u8).collect();
        a.write(gpa(RAM + off), &v).unwrap();
        let mut r = vec![0; len];
        a.read(gpa(RAM + off), &mut r).unwrap();
        assert_eq!(r, v);
    }
    a.write(gpa(RAM), &[]).unwrap();
    a.read(gpa(0), &mut []).unwrap();
}

fn access_outside_regions_is_refused<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(256);
    let mut a = As::<F>::new(&alloc).unwrap();
    a.map_alloc(gpa(RAM), 2 * K4, R | W, true).unwrap();
    a.map_alloc(gpa(RAM + 4 * K4), K4, R, true).unwrap();
    let unmapped = |g| Err(AccessError::Unmapped { gpa: gpa(g) });
    let mut buf = [0x55u8; 16];
    // Beyond the end: refused, and nothing read or written.
    assert_eq!(
        a.read(gpa(RAM + 2 * K4 - 8), &mut buf),
        unmapped(RAM + 2 * K4)
    );
    assert_eq!(buf, [0x55; 16]);
    assert_eq!(
        a.write(gpa(RAM + 2 * K4 - 8), &[9; 16]),
        unmapped(RAM + 2 * K4)
    );
    assert_eq!(
        host_bytes(&a, RAM + K4, K4),
        vec![0; K4],
        "no partial write"
    );
    // Before the start, in a gap, far away, at the top of the address space.
    assert_eq!(a.read(gpa(RAM - 1), &mut buf), unmapped(RAM - 1));
    assert_eq!(a.read(gpa(RAM + 3 * K4), &mut buf), unmapped(RAM + 3 * K4));
    assert_eq!(a.read(gpa(0), &mut buf), unmapped(0));
    assert_eq!(
        a.read(gpa(usize::MAX - 3), &mut buf),
        unmapped(usize::MAX - 3)
    );
    assert_eq!(a.write(gpa(usize::MAX), &[1]), unmapped(usize::MAX));
    // Permissions: the second region is read-only.
    assert_eq!(
        a.write(gpa(RAM + 4 * K4), &[1]),
        Err(AccessError::Permission {
            gpa: gpa(RAM + 4 * K4)
        })
    );
    a.read(gpa(RAM + 4 * K4), &mut buf).unwrap();
    // A read spanning a region and a gap reports the gap.
    let mut big = vec![0; 3 * K4];
    assert_eq!(a.read(gpa(RAM + K4), &mut big), unmapped(RAM + 2 * K4));
    // Adjacent regions are one range for read and write.
    a.map_alloc(gpa(RAM + 2 * K4), 2 * K4, R | W, false)
        .unwrap();
    a.write(gpa(RAM + 2 * K4 - 2), &[1, 2, 3, 4]).unwrap();
    let mut four = [0; 4];
    a.read(gpa(RAM + 2 * K4 - 2), &mut four).unwrap();
    assert_eq!(four, [1, 2, 3, 4]);
    // ... but a write reaching into the read-only one is refused up front.
    assert_eq!(
        a.write(gpa(RAM + 4 * K4 - 2), &[7; 4]),
        Err(AccessError::Permission {
            gpa: gpa(RAM + 4 * K4)
        })
    );
    let mut two = [0; 2];
    a.read(gpa(RAM + 4 * K4 - 2), &mut two).unwrap();
    assert_eq!(two, [0, 0]);
    // The loader fills the read-only region (ROM), not what is outside every region.
    a.load(gpa(RAM + 4 * K4 - 2), &[7; 4]).unwrap();
    a.read(gpa(RAM + 4 * K4 - 2), &mut four).unwrap();
    assert_eq!(four, [7; 4]);
    assert_eq!(
        a.load(gpa(RAM + 5 * K4 - 1), &[1, 2]),
        unmapped(RAM + 5 * K4)
    );
}

fn write_wrapping_length_is_refused<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let a = As::<F>::new(&alloc).unwrap();
    // `check_access` is what stands between a length and memory: exercise the wrap directly.
    assert!(matches!(
        a.check_access(gpa(usize::MAX - 10), 100, R),
        Err(AccessError::Unmapped { .. })
    ));
}

fn lazy_population<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(256);
    let mut a = As::<F>::new(&alloc).unwrap();
    a.map_alloc(gpa(RAM), 4 * M2, R | W | X, false).unwrap();
    a.map_alloc(gpa(RAM + 4 * M2), K4, R, false).unwrap();
    let base = alloc.allocated_frames();
    assert_eq!(a.translate(gpa(RAM)), None, "lazy: nothing mapped up front");
    // Reads of untouched pages see zeroes and populate nothing.
    let mut buf = [0xffu8; 64];
    a.read(gpa(RAM + 0x1234), &mut buf).unwrap();
    assert_eq!(buf, [0; 64]);
    assert_eq!(alloc.allocated_frames(), base);
    // A guest fault maps exactly one zeroed page.
    assert!(a.handle_page_fault(gpa(RAM + M2 + 0x10), W));
    let (h, f, s) = a.translate(gpa(RAM + M2)).unwrap();
    assert_eq!((f, s), (R | W | X, K4));
    assert!(alloc.is_allocated(h));
    assert_eq!(host_bytes(&a, RAM + M2, K4), vec![0; K4]);
    assert_eq!(a.translate(gpa(RAM + M2 + K4)), None);
    // A second fault on it (another vCPU, a stale TLB) is retried, allocating nothing.
    let frames = alloc.allocated_frames();
    assert!(a.handle_page_fault(gpa(RAM + M2 + 0x20), R));
    assert_eq!(alloc.allocated_frames(), frames);
    // Not ours: outside any region, or an access the region does not allow.
    assert!(!a.handle_page_fault(gpa(0x0900_0000), R));
    assert!(!a.handle_page_fault(gpa(RAM + 4 * M2), W));
    assert!(!a.handle_page_fault(gpa(RAM + 4 * M2), X));
    assert!(
        a.handle_page_fault(gpa(RAM + 4 * M2), MappingFlags::empty()),
        "empty = read"
    );
    // Out of memory: refused, nothing leaked.
    let frames = alloc.allocated_frames();
    alloc.fail_after(Some(0));
    assert!(!a.handle_page_fault(gpa(RAM + 3 * M2), R));
    assert_eq!(alloc.allocated_frames(), frames);
    // A hypervisor write populates; a failed one reports the page and writes nothing.
    assert_eq!(
        a.write(gpa(RAM + 2 * M2 + 5), b"x"),
        Err(AccessError::NoMemory {
            gpa: gpa(RAM + 2 * M2)
        })
    );
    alloc.fail_after(None);
    a.write(gpa(RAM + 2 * M2 + K4 - 2), b"lazy").unwrap();
    let mut back = [0; 4];
    a.read(gpa(RAM + 2 * M2 + K4 - 2), &mut back).unwrap();
    assert_eq!(&back, b"lazy");
    assert!(
        a.translate(gpa(RAM + 2 * M2)).is_some() && a.translate(gpa(RAM + 2 * M2 + K4)).is_some()
    );
    // Unmapping returns the populated frames.
    a.unmap(gpa(RAM), 4 * M2).unwrap();
    a.unmap(gpa(RAM + 4 * M2), K4).unwrap();
    assert_eq!(alloc.allocated_frames(), F::ROOT_FRAMES);
}

fn linear_faults_are_not_handled<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let mut a = As::<F>::new(&alloc).unwrap();
    a.map_linear(gpa(0x0900_0000), hpa(0x0900_0000), K4, R | W | DEV)
        .unwrap();
    assert!(!a.handle_page_fault(gpa(0x0900_0000), X), "not executable");
    assert!(
        a.handle_page_fault(gpa(0x0900_0000), W),
        "mapped: stale, retry"
    );
}

fn drop_returns_every_frame_and_flushes_first<F: PteFormat>() {
    let alloc = Arc::new(FakeFrameAllocator::new(2048));
    let host = alloc.alloc_frames(2, K4).unwrap();
    {
        let mut a = AddrSpace::<F, _>::new(alloc.clone()).unwrap();
        let (hook, log) = recording_hook(&alloc);
        a.set_tlb_flush_hook(hook);
        a.map_alloc(gpa(RAM), M2 + 2 * K4, R | W | X, true).unwrap();
        a.map_alloc(gpa(2 * RAM), 8 * M2, R | W, false).unwrap();
        for i in 0..10 {
            assert!(a.handle_page_fault(gpa(2 * RAM + i * 0x12_3000), W));
        }
        a.map_linear(gpa(3 * RAM), host, 2 * K4, R).unwrap();
        assert!(log.lock().unwrap().is_empty());
        // Unmapping flushes before the region's frames go back.
        let before = alloc.allocated_frames();
        a.unmap(gpa(RAM), M2 + 2 * K4).unwrap();
        let calls = log.lock().unwrap().clone();
        assert_eq!(calls, [(RAM, M2 + 2 * K4, before)]);
        assert!(alloc.allocated_frames() < before);
    }
    assert_eq!(
        alloc.allocated_frames(),
        2,
        "only the test's linear frames remain"
    );
    assert!(alloc.is_allocated(host));
    alloc.dealloc_frames(host, 2);
}

fn root_and_page_table_accessors<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let mut a = As::<F>::new(&alloc).unwrap();
    assert_eq!(a.root_paddr(), a.page_table().root_paddr());
    a.map_alloc(gpa(RAM), K4, R, true).unwrap();
    assert_eq!(a.page_table().translate(gpa(RAM)), a.translate(gpa(RAM)));
    assert_eq!(a.region_at(gpa(RAM + 0xfff)).map(|r| r.gpa), Some(gpa(RAM)));
    assert_eq!(a.region_at(gpa(RAM + K4)), None);
    assert!(std::format!("{a:?}").contains("AddrSpace"));
}

/// Random region operations, guest faults and accesses against a byte-level model of guest
/// memory: reads must return exactly what the model holds, and errors must match.
fn randomized_memory_model<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(4096);
    let mut a = As::<F>::new(&alloc).unwrap();
    let window = 64 * K4;
    // Model: per page, None (no region) or Some((writable, contents)).
    let mut model: Vec<Option<(bool, Vec<u8>)>> = vec![None; window / K4];
    let mut rng = Rng::new(99);
    for _ in 0..600 {
        match rng.below(6) {
            0 => {
                let p = rng.below(window / K4);
                let n = 1 + rng.below(6).min(window / K4 - p - 1);
                let writable = rng.below(3) != 0;
                let flags = if writable { R | W } else { R };
                let r = a.map_alloc(gpa(p * K4), n * K4, flags, rng.below(2) == 0);
                let free = model[p..p + n].iter().all(|m| m.is_none());
                assert_eq!(r.is_ok(), free);
                if free {
                    for m in &mut model[p..p + n] {
                        *m = Some((writable, vec![0; K4]));
                    }
                }
            }
            1 => {
                // Remove the region containing a random page, if any.
                let g = gpa(rng.below(window / K4) * K4);
                if let Some(r) = a.region_at(g).copied() {
                    a.unmap(r.gpa, r.size).unwrap();
                    for m in &mut model[r.gpa.as_usize() / K4..r.end().as_usize() / K4] {
                        *m = None;
                    }
                }
            }
            2 => {
                let g = rng.below(window);
                let mapped = model[g / K4].is_some();
                assert_eq!(a.handle_page_fault(gpa(g), R), mapped);
            }
            3 | 4 => {
                let g = rng.below(window - 1);
                let len = 1 + rng.below((3 * K4).min(window - g));
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let first_bad = (g..g + len).find(|&b| !matches!(model[b / K4], Some((true, _))));
                let r = a.write(gpa(g), &data);
                match first_bad {
                    None => {
                        r.unwrap();
                        for (i, &b) in data.iter().enumerate() {
                            let at = g + i;
                            model[at / K4].as_mut().unwrap().1[at % K4] = b;
                        }
                    }
                    Some(bad) if model[bad / K4].is_none() => {
                        assert_eq!(r, Err(AccessError::Unmapped { gpa: gpa(bad) }));
                    }
                    Some(bad) => assert_eq!(r, Err(AccessError::Permission { gpa: gpa(bad) })),
                }
            }
            _ => {
                let g = rng.below(window - 1);
                let len = 1 + rng.below((3 * K4).min(window - g));
                let mut buf = vec![0; len];
                let first_bad = (g..g + len).find(|&b| model[b / K4].is_none());
                match first_bad {
                    None => {
                        a.read(gpa(g), &mut buf).unwrap();
                        for (i, &b) in buf.iter().enumerate() {
                            let at = g + i;
                            assert_eq!(b, model[at / K4].as_ref().unwrap().1[at % K4]);
                        }
                    }
                    Some(bad) => {
                        assert_eq!(
                            a.read(gpa(g), &mut buf),
                            Err(AccessError::Unmapped { gpa: gpa(bad) })
                        );
                    }
                }
            }
        }
    }
    drop(a);
    assert_eq!(alloc.allocated_frames(), 0);
}

for_each_format!(
    populate_maps_zeroed_frames,
    populate_falls_back_to_4k_frames,
    populate_failure_is_all_or_nothing,
    linear_regions,
    linear_uses_huge_pages,
    overlapping_regions_refused,
    bad_regions_refused,
    unmap_whole_regions_only,
    read_write_across_pages,
    access_outside_regions_is_refused,
    write_wrapping_length_is_refused,
    lazy_population,
    linear_faults_are_not_handled,
    drop_returns_every_frame_and_flushes_first,
    root_and_page_table_accessors,
    randomized_memory_model,
);
