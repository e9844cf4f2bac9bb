//! The generic walker, against every format.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::fake::FakeFrameAllocator;
use crate::format::entry_size;
use crate::{FrameAllocator, NestedPageTable, PagingError, PteFormat};

type Pt<'a, F> = NestedPageTable<F, &'a FakeFrameAllocator>;

fn dev_flag<F: PteFormat>() -> MappingFlags {
    if F::ENCODES_DEVICE {
        DEV
    } else {
        MappingFlags::empty()
    }
}

/// Every leaf in `[0, limit)` as (gpa, hpa, size, flags).
fn leaves<F: PteFormat, A: FrameAllocator>(
    pt: &NestedPageTable<F, A>,
) -> Vec<(usize, usize, usize, MappingFlags)> {
    let mut v = Vec::new();
    pt.for_each_leaf(gpa(0), usize::MAX, |g, h, s, f| {
        v.push((g.as_usize(), h.as_usize(), s, f))
    });
    v
}

fn leaf_sizes_in<F: PteFormat>(pt: &Pt<'_, F>, g: usize, size: usize) -> Vec<usize> {
    let mut v = Vec::new();
    pt.for_each_leaf(gpa(g), size, |_, _, s, _| v.push(s));
    v
}

/// The largest leaf size the format allows below 1 GiB-or-so for a given depth.
fn huge_sizes<F: PteFormat>() -> Vec<usize> {
    NestedPageTable::<F, &FakeFrameAllocator>::leaf_sizes()
        .filter(|&s| s > K4)
        .collect()
}

fn new_and_drop<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    {
        let pt = Pt::<F>::new(&alloc).unwrap();
        assert_eq!(alloc.allocated_frames(), F::ROOT_FRAMES);
        assert!(pt.root_paddr().is_aligned(F::ROOT_FRAMES * K4));
        assert!(leaves(&pt).is_empty());
        assert_eq!(pt.translate(gpa(0)), None);
    }
    assert_eq!(alloc.allocated_frames(), 0);
    alloc.fail_after(Some(0));
    assert_eq!(Pt::<F>::new(&alloc).err(), Some(PagingError::NoMemory));
}

fn map_translate_unmap_4k<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let mut pt = Pt::<F>::new(&alloc).unwrap();
    pt.map(gpa(0x4000_3000), hpa(0x9000_7000), K4, R | W, true)
        .unwrap();
    assert_eq!(alloc.allocated_frames(), F::ROOT_FRAMES + F::LEVELS - 1);
    assert_eq!(
        pt.translate(gpa(0x4000_3000)),
        Some((hpa(0x9000_7000), R | W, K4))
    );
    assert_eq!(
        pt.translate(gpa(0x4000_3fff)),
        Some((hpa(0x9000_7fff), R | W, K4))
    );
    assert_eq!(pt.translate(gpa(0x4000_2fff)), None);
    assert_eq!(pt.translate(gpa(0x4000_4000)), None);
    assert_eq!(pt.descriptors(gpa(0x4000_3000)).len(), F::LEVELS);
    pt.unmap(gpa(0x4000_3000), K4).unwrap();
    assert_eq!(pt.translate(gpa(0x4000_3000)), None);
    assert_eq!(
        alloc.allocated_frames(),
        F::ROOT_FRAMES,
        "empty tables freed"
    );
    // Unmapping nothing, or a hole, is fine.
    pt.unmap(gpa(0x4000_3000), K4).unwrap();
    pt.unmap(gpa(0), 0).unwrap();
}

fn leaf_at_every_allowed_level<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    for depth in 0..F::LEVELS {
        if !F::leaf_allowed(depth) {
            continue;
        }
        let size = entry_size::<F>(depth);
        let g = 4 * size.max(G1);
        let h = 2 * size.max(G1);
        let mut pt = Pt::<F>::new(&alloc).unwrap();
        pt.map(gpa(g), hpa(h), size, R | X, true).unwrap();
        assert_eq!(
            alloc.allocated_frames(),
            F::ROOT_FRAMES + depth,
            "tables for depth {depth}"
        );
        assert_eq!(pt.translate(gpa(g)), Some((hpa(h), R | X, size)));
        assert_eq!(
            pt.translate(gpa(g + size - 1)),
            Some((hpa(h + size - 1), R | X, size))
        );
        assert_eq!(pt.translate(gpa(g + size)), None);
        assert_eq!(pt.translate(gpa(g - 1)), None);
        assert_eq!(leaves(&pt), [(g, h, size, R | X)]);
        assert_eq!(pt.descriptors(gpa(g)).len(), depth + 1);
        pt.unmap(gpa(g), size).unwrap();
        assert_eq!(alloc.allocated_frames(), F::ROOT_FRAMES);
    }
}

fn huge_pages_when_aligned<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let mut pt = Pt::<F>::new(&alloc).unwrap();
    // [1G, 1G + 1G + 2M + 4K): a gigapage (where allowed), a 2 MiB block and a page.
    pt.map(gpa(G1), hpa(4 * G1), G1 + M2 + K4, R | W, true)
        .unwrap();
    let sizes = leaf_sizes_in(&pt, G1, G1 + M2 + K4);
    assert_eq!(sizes.first(), Some(&G1), "1 GiB leaf used");
    assert_eq!(&sizes[sizes.len() - 2..], [M2, K4]);
    assert_eq!(
        pt.translate(gpa(G1 + G1 + 0x1234)),
        Some((hpa(5 * G1 + 0x1234), R | W, M2))
    );
    assert_eq!(
        pt.translate(gpa(2 * G1 + M2 + 5)),
        Some((hpa(5 * G1 + M2 + 5), R | W, K4))
    );
    // 2 MiB at a 2 MiB-aligned start around 4 KiB-aligned edges: [2M - 4K, 4M + 4K).
    pt.map(
        gpa(8 * G1 + M2 - K4),
        hpa(2 * G1 + M2 - K4),
        M2 + 2 * K4,
        R,
        true,
    )
    .unwrap();
    assert_eq!(leaf_sizes_in(&pt, 8 * G1, 4 * M2), [K4, M2, K4]);
}

fn no_huge_pages_when_unaligned_or_refused<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let mut pt = Pt::<F>::new(&alloc).unwrap();
    // Host side only 4 KiB-aligned.
    pt.map(gpa(G1), hpa(G1 + K4), M2, R, true).unwrap();
    assert_eq!(leaf_sizes_in(&pt, G1, M2), vec![K4; 512]);
    // Guest side only 4 KiB-aligned.
    pt.map(gpa(2 * G1 + K4), hpa(G1), M2, R, true).unwrap();
    assert_eq!(leaf_sizes_in(&pt, 2 * G1, 2 * M2), vec![K4; 512]);
    // Both aligned but huge pages not allowed.
    pt.map(gpa(3 * G1), hpa(G1), M2, R, false).unwrap();
    assert_eq!(leaf_sizes_in(&pt, 3 * G1, M2), vec![K4; 512]);
    // Aligned but too short for a block.
    pt.map(gpa(4 * G1), hpa(G1), M2 - K4, R, true).unwrap();
    assert_eq!(leaf_sizes_in(&pt, 4 * G1, M2), vec![K4; 511]);
    assert_eq!(
        pt.translate(gpa(G1 + 0x1000)),
        Some((hpa(G1 + 0x2000), R, K4))
    );
}

fn overlap_refused<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let mut pt = Pt::<F>::new(&alloc).unwrap();
    pt.map(gpa(G1 + M2), hpa(G1), M2, R | W, true).unwrap(); // one 2 MiB leaf
    pt.map(gpa(2 * G1 + 0x5000), hpa(0x5000), 3 * K4, R, true)
        .unwrap(); // three pages
    let before = (alloc.allocated_frames(), leaves(&pt));
    let bad = [
        (G1 + M2, M2),          // exactly the same
        (G1 + M2 + K4, K4),     // inside the block
        (G1, M2 + K4),          // runs into its start
        (G1 + 2 * M2 - K4, M2), // starts in its last page
        (G1, 4 * M2),           // encloses it
        (2 * G1 + 0x6000, K4),  // one of the pages
        (2 * G1, 0x6000),       // ends in the first page
        (2 * G1 + 0x7000, M2),  // starts in the last page
    ];
    for (g, s) in bad {
        assert_eq!(
            pt.map(gpa(g), hpa(8 * G1), s, R, true),
            Err(PagingError::AlreadyMapped),
            "{g:#x}+{s:#x}"
        );
        assert_eq!(
            (alloc.allocated_frames(), leaves(&pt)),
            before,
            "refusal changed nothing"
        );
    }
    // Adjacent ranges are fine.
    pt.map(gpa(G1 + M2 - K4), hpa(0), K4, R, true).unwrap();
    pt.map(gpa(G1 + 2 * M2), hpa(0), K4, R, true).unwrap();
    pt.map(gpa(2 * G1 + 0x4000), hpa(0), K4, R, true).unwrap();
    pt.map(gpa(2 * G1 + 0x8000), hpa(0), K4, R, true).unwrap();
}

fn bad_arguments<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let mut pt = Pt::<F>::new(&alloc).unwrap();
    let limit = Pt::<F>::gpa_limit();
    let e = |r: Result<(), PagingError>| r.unwrap_err();
    assert_eq!(
        e(pt.map(gpa(0x1001), hpa(0), K4, R, true)),
        PagingError::NotAligned
    );
    assert_eq!(
        e(pt.map(gpa(0x1000), hpa(0x10), K4, R, true)),
        PagingError::NotAligned
    );
    assert_eq!(
        e(pt.map(gpa(0x1000), hpa(0), 0x800, R, true)),
        PagingError::NotAligned
    );
    assert_eq!(
        e(pt.map(gpa(limit), hpa(0), K4, R, true)),
        PagingError::OutOfRange
    );
    assert_eq!(
        e(pt.map(gpa(limit - K4), hpa(0), 2 * K4, R, true)),
        PagingError::OutOfRange
    );
    assert_eq!(
        e(pt.map(gpa(usize::MAX & !0xfff), hpa(0), 2 * K4, R, true)),
        PagingError::OutOfRange
    );
    let pa_limit = 1usize << F::PA_BITS;
    assert_eq!(
        e(pt.map(gpa(0), hpa(pa_limit - K4), 2 * K4, R, true)),
        PagingError::OutOfRange
    );
    assert_eq!(
        e(pt.map(gpa(0), hpa(usize::MAX & !0xfff), 2 * K4, R, true)),
        PagingError::OutOfRange
    );
    for f in [MappingFlags::empty(), W, DEV, W | X] {
        assert_eq!(
            e(pt.map(gpa(0), hpa(0), K4, f, true)),
            PagingError::InvalidFlags
        );
    }
    assert_eq!(e(pt.unmap(gpa(0x800), K4)), PagingError::NotAligned);
    assert_eq!(
        e(pt.unmap(gpa(limit - K4), 2 * K4)),
        PagingError::OutOfRange
    );
    assert_eq!(e(pt.protect(gpa(0), K4, W)), PagingError::InvalidFlags);
    assert_eq!(e(pt.protect(gpa(0), 5, R)), PagingError::NotAligned);
    assert_eq!(
        alloc.allocated_frames(),
        F::ROOT_FRAMES,
        "nothing allocated by refusals"
    );
    // The last page and size 0 are fine.
    pt.map(gpa(limit - K4), hpa(pa_limit - K4), K4, R, true)
        .unwrap();
    pt.map(gpa(0), hpa(0), 0, R, true).unwrap();
    assert_eq!(pt.translate(gpa(limit)), None);
    assert_eq!(pt.translate(gpa(usize::MAX)), None);
}

fn no_memory_undoes_everything<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(256);
    let mut pt = Pt::<F>::new(&alloc).unwrap();
    // A neighbour sharing tables with the range below must survive the undo.
    pt.map(gpa(G1 - 8 * K4), hpa(0x7000_0000), K4, R, true)
        .unwrap();
    let neighbour = leaves(&pt);
    let base = alloc.allocated_frames();
    // 4 KiB pages across a 1 GiB boundary: tables on both sides.
    let (g, size) = (G1 - 4 * K4, 2 * M2 + 8 * K4);
    let mut n = 0;
    loop {
        alloc.fail_after(Some(n));
        let r = pt.map(gpa(g), hpa(0x1_0000_0000), size, R | W, false);
        alloc.fail_after(None);
        match r {
            Err(PagingError::NoMemory) => {
                assert_eq!(
                    alloc.allocated_frames(),
                    base,
                    "failure after {n} allocations leaked"
                );
                assert_eq!(
                    leaves(&pt),
                    neighbour,
                    "failure after {n} allocations left mappings"
                );
                n += 1;
            }
            Ok(()) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(n >= 3, "the map needed several tables ({n})");
    assert_eq!(leaf_sizes_in(&pt, g, size).len(), size / K4);
    pt.unmap(gpa(g), size).unwrap();
    assert_eq!(alloc.allocated_frames(), base);
    assert_eq!(leaves(&pt), neighbour);
}

fn unmap_refuses_to_split_huge_pages<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let mut pt = Pt::<F>::new(&alloc).unwrap();
    pt.map(gpa(G1), hpa(G1), M2, R | W, true).unwrap();
    pt.map(gpa(G1 + M2), hpa(0), K4, R, true).unwrap();
    let before = leaves(&pt);
    for (g, s) in [
        (G1, K4),
        (G1 + K4, M2 - K4),
        (G1 + M2 - K4, 2 * K4),
        (G1 - K4, 2 * K4),
    ] {
        assert_eq!(
            pt.unmap(gpa(g), s),
            Err(PagingError::HugePageSplit),
            "{g:#x}+{s:#x}"
        );
        assert_eq!(pt.protect(gpa(g), s, R), Err(PagingError::HugePageSplit));
        assert_eq!(leaves(&pt), before);
    }
    // The whole block, plus holes and the page after, is fine.
    pt.unmap(gpa(G1 - M2), 3 * M2).unwrap();
    assert!(leaves(&pt).is_empty());
    assert_eq!(alloc.allocated_frames(), F::ROOT_FRAMES);
}

fn unmap_keeps_tables_still_in_use<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(64);
    let mut pt = Pt::<F>::new(&alloc).unwrap();
    pt.map(gpa(G1), hpa(0x10_0000), 4 * K4, R, true).unwrap();
    let tables = alloc.allocated_frames();
    pt.unmap(gpa(G1 + K4), 2 * K4).unwrap();
    assert_eq!(alloc.allocated_frames(), tables);
    assert_eq!(pt.translate(gpa(G1)), Some((hpa(0x10_0000), R, K4)));
    assert_eq!(pt.translate(gpa(G1 + K4)), None);
    assert_eq!(
        pt.translate(gpa(G1 + 3 * K4)),
        Some((hpa(0x10_3000), R, K4))
    );
    pt.unmap(gpa(G1), K4).unwrap();
    pt.unmap(gpa(G1 + 3 * K4), K4).unwrap();
    assert_eq!(alloc.allocated_frames(), F::ROOT_FRAMES);
}

fn protect_changes_flags<F: PteFormat>() {
    let alloc = Arc::new(FakeFrameAllocator::new(64));
    let mut pt = NestedPageTable::<F, _>::new(alloc.clone()).unwrap();
    let (hook, log) = recording_hook(&alloc);
    pt.set_tlb_flush_hook(hook);
    pt.map(gpa(G1), hpa(G1), M2 + K4, R | W | X, true).unwrap();
    assert!(
        log.lock().unwrap().is_empty(),
        "mapping fresh entries needs no flush"
    );
    pt.protect(gpa(G1), M2 + K4, R).unwrap();
    assert_eq!(pt.translate(gpa(G1 + 5)), Some((hpa(G1 + 5), R, M2)));
    assert_eq!(pt.translate(gpa(G1 + M2)), Some((hpa(G1 + M2), R, K4)));
    assert_eq!(
        log.lock().unwrap().as_slice(),
        [(G1, M2 + K4, alloc.allocated_frames())]
    );
    // Same flags again: nothing changes, no flush.
    pt.protect(gpa(G1), M2 + K4, R).unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
    // A memory-type change goes through break-before-make: one flush per leaf, then the
    // range.
    log.lock().unwrap().clear();
    pt.protect(gpa(G1 + M2), K4, R | W | DEV).unwrap();
    assert_eq!(
        pt.translate(gpa(G1 + M2)),
        Some((hpa(G1 + M2), R | W | dev_flag::<F>(), K4))
    );
    let calls: Vec<(usize, usize)> = log.lock().unwrap().iter().map(|c| (c.0, c.1)).collect();
    if F::ENCODES_DEVICE {
        assert_eq!(calls, [(G1 + M2, K4), (G1 + M2, K4)]);
    } else {
        assert_eq!(calls, [(G1 + M2, K4)]);
    }
    // Holes are skipped.
    pt.protect(gpa(0), 4 * G1, R | X).unwrap();
    assert_eq!(pt.translate(gpa(G1 + M2)), Some((hpa(G1 + M2), R | X, K4)));
}

fn flush_hook_runs_before_frames_are_freed<F: PteFormat>() {
    let alloc = Arc::new(FakeFrameAllocator::new(64));
    let mut pt = NestedPageTable::<F, _>::new(alloc.clone()).unwrap();
    let (hook, log) = recording_hook(&alloc);
    pt.set_tlb_flush_hook(hook);
    pt.map(gpa(3 * G1), hpa(0x5000), K4, R, true).unwrap();
    let with_tables = alloc.allocated_frames();
    assert!(log.lock().unwrap().is_empty());
    pt.unmap(gpa(3 * G1), K4).unwrap();
    assert_eq!(alloc.allocated_frames(), F::ROOT_FRAMES);
    assert_eq!(
        log.lock().unwrap().as_slice(),
        [(3 * G1, K4, with_tables)],
        "flushed once, while the tables were still allocated"
    );
    // No flush when nothing was mapped.
    pt.unmap(gpa(3 * G1), K4).unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
    // The NoMemory undo path flushes before it frees too.
    log.lock().unwrap().clear();
    // Two pages land in existing tables, then crossing the 1 GiB boundary needs two new
    // tables: the first is allocated, the second fails.
    pt.map(gpa(5 * G1 - 3 * K4), hpa(0), K4, R, true).unwrap();
    alloc.fail_after(Some(1));
    assert_eq!(
        pt.map(gpa(5 * G1 - 2 * K4), hpa(0), 3 * K4, R, false),
        Err(PagingError::NoMemory)
    );
    alloc.fail_after(None);
    let calls = log.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].2 > alloc.allocated_frames());
    // Drop flushes everything before freeing the tables.
    let before_drop = alloc.allocated_frames();
    log.lock().unwrap().clear();
    drop(pt);
    assert_eq!(
        log.lock().unwrap().as_slice(),
        [(0, 1 << F::GPA_BITS, before_drop)]
    );
    assert_eq!(alloc.allocated_frames(), 0);
}

fn drop_frees_every_table<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(512);
    {
        let mut pt = Pt::<F>::new(&alloc).unwrap();
        let mut rng = Rng::new(7);
        for i in 0..40 {
            let g = (rng.below(Pt::<F>::gpa_limit() / G1) * G1) + i * 3 * K4;
            let _ = pt.map(gpa(g), hpa(0x20_0000), 3 * K4, R, true);
        }
        assert!(alloc.allocated_frames() > F::ROOT_FRAMES + 40);
    }
    assert_eq!(alloc.allocated_frames(), 0);
    assert_eq!(alloc.live_allocations(), 0);
}

fn fake_allocator_physical_addresses_are_not_pointers<F: PteFormat>() {
    // The page table must reach its tables through phys_to_virt: the fake's physical
    // addresses are nowhere near the host pointers behind them.
    let alloc = FakeFrameAllocator::new(16);
    let pt = Pt::<F>::new(&alloc).unwrap();
    let va = alloc.phys_to_virt(pt.root_paddr()).as_usize();
    assert_ne!(va, pt.root_paddr().as_usize());
    assert_eq!(
        pt.root_paddr().as_usize() & !0xfff_ffff,
        FakeFrameAllocator::FAKE_PHYS_BASE
    );
}

/// Random map/unmap/protect against a model of the leaves; every operation's outcome and
/// the resulting set of leaves must agree with the model.
fn randomized_against_model<F: PteFormat>() {
    let alloc = FakeFrameAllocator::new(2048);
    let mut pt = Pt::<F>::new(&alloc).unwrap();
    let mut model: BTreeMap<usize, (usize, usize, MappingFlags)> = BTreeMap::new(); // gpa -> (hpa, size, flags)
    let mut rng = Rng::new(0x5eed ^ F::GPA_BITS as u64);
    let window = 4 * G1;
    let huge = huge_sizes::<F>();
    // Execute-only where the format has it (not AMD NPT).
    let flags: Vec<MappingFlags> = [R, R | W, R | X, R | W | X, X]
        .into_iter()
        .filter(|&f| F::encodable(f))
        .collect();
    for step in 0..1200 {
        let align = match rng.below(4) {
            0 => *huge.last().unwrap_or(&K4),
            _ => K4,
        };
        let g = rng.below(window / align) * align;
        let size = match rng.below(3) {
            0 => K4 * (1 + rng.below(8)),
            1 => M2 * (1 + rng.below(2)) + K4 * rng.below(3),
            _ => K4 * (1 + rng.below(700)),
        };
        let h = (rng.below(1 << 16) * align) % (1usize << (F::PA_BITS.min(40) - 1));
        let f = flags[rng.below(flags.len())];
        let end = g + size;
        // Leaves intersecting [g, end) in the model.
        let hit: Vec<usize> = model
            .range(..end)
            .rev()
            .take_while(|(&lg, &(_, ls, _))| lg + ls > g)
            .map(|(&lg, _)| lg)
            .collect();
        let straddles = hit.iter().any(|&lg| lg < g || lg + model[&lg].1 > end);
        match rng.below(3) {
            0 => {
                let r = pt.map(gpa(g), hpa(h), size, f, rng.below(2) == 0);
                if hit.is_empty() {
                    r.unwrap();
                    // Learn the leaves the walker chose; they must tile the range exactly.
                    let mut cur = g;
                    pt.for_each_leaf(gpa(g), size, |lg, lh, ls, lf| {
                        assert_eq!(lg.as_usize(), cur);
                        assert_eq!(lh.as_usize(), h + (cur - g));
                        assert!(lg.is_aligned(ls) && lh.is_aligned(ls));
                        assert_eq!(lf, f);
                        model.insert(cur, (lh.as_usize(), ls, f));
                        cur += ls;
                    });
                    assert_eq!(cur, end);
                } else {
                    assert_eq!(r, Err(PagingError::AlreadyMapped));
                }
            }
            1 => {
                let r = pt.unmap(gpa(g), size);
                if straddles {
                    assert_eq!(r, Err(PagingError::HugePageSplit));
                } else {
                    r.unwrap();
                    for lg in hit {
                        model.remove(&lg);
                    }
                }
            }
            _ => {
                let r = pt.protect(gpa(g), size, f);
                if straddles {
                    assert_eq!(r, Err(PagingError::HugePageSplit));
                } else {
                    r.unwrap();
                    for lg in hit {
                        model.get_mut(&lg).unwrap().2 = f;
                    }
                }
            }
        }
        if step % 32 == 0 {
            let expected: Vec<_> = model.iter().map(|(&g, &(h, s, f))| (g, h, s, f)).collect();
            assert_eq!(leaves(&pt), expected);
        }
        for _ in 0..8 {
            let probe = rng.below(window);
            let want = model
                .range(..=probe)
                .next_back()
                .filter(|(&lg, &(_, ls, _))| probe < lg + ls)
                .map(|(&lg, &(lh, ls, lf))| (hpa(lh + probe - lg), lf, ls));
            assert_eq!(pt.translate(gpa(probe)), want);
        }
    }
    // Emptying the window frees every table but the root.
    let all: Vec<(usize, usize)> = model.iter().map(|(&g, &(_, s, _))| (g, s)).collect();
    for (g, s) in all {
        pt.unmap(gpa(g), s).unwrap();
    }
    assert_eq!(alloc.allocated_frames(), F::ROOT_FRAMES);
}

#[test]
fn fake_root_has_no_leaves() {
    // The fake format forbids leaves at depth 0 (512 GiB): a 512 GiB-aligned 512 GiB map
    // must use 512 1 GiB leaves instead.
    let alloc = FakeFrameAllocator::new(16);
    let mut pt = Pt::<crate::fake::FakeFormat>::new(&alloc).unwrap();
    let big = 512 * G1;
    pt.map(gpa(big), hpa(big), big, R, true).unwrap();
    let sizes = leaf_sizes_in(&pt, big, big);
    assert_eq!(sizes, vec![G1; 512]);
    assert_eq!(alloc.allocated_frames(), 2 + 1);
}

for_each_format!(
    new_and_drop,
    map_translate_unmap_4k,
    leaf_at_every_allowed_level,
    huge_pages_when_aligned,
    no_huge_pages_when_unaligned_or_refused,
    overlap_refused,
    bad_arguments,
    no_memory_undoes_everything,
    unmap_refuses_to_split_huge_pages,
    unmap_keeps_tables_still_in_use,
    protect_changes_flags,
    flush_hook_runs_before_frames_are_freed,
    drop_frees_every_table,
    fake_allocator_physical_addresses_are_not_pointers,
    randomized_against_model,
);
