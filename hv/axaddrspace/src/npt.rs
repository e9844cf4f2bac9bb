//! One generic nested page-table walker over any [`PteFormat`].

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{fence, Ordering};

use crate::format::{entries, entry_size, shift, PteFormat};
use crate::{FrameAllocator, GuestPhysAddr, HostPhysAddr, MappingFlags, PAGE_SIZE_4K};

/// Why a page-table operation was refused. A refused operation leaves the table as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingError {
    /// The frame allocator ran out of frames (for tables, or for a region's memory).
    NoMemory,
    /// An address or size is not a multiple of 4 KiB.
    NotAligned,
    /// The range reaches beyond the format's guest-physical width, or the host range beyond
    /// its output-address width.
    OutOfRange,
    /// Part of the range is already mapped.
    AlreadyMapped,
    /// The range covers only part of a huge (block) mapping; splitting is not supported.
    HugePageSplit,
    /// The flags cannot be expressed by the format (no access at all, or write without
    /// read).
    InvalidFlags,
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoMemory => "frame allocator out of memory",
            Self::NotAligned => "address or size not 4 KiB-aligned",
            Self::OutOfRange => "address beyond what the page-table format translates",
            Self::AlreadyMapped => "range overlaps an existing mapping",
            Self::HugePageSplit => "range covers part of a huge mapping",
            Self::InvalidFlags => "flags the page-table format cannot express",
        })
    }
}

/// The caller's TLB maintenance, called as `hook(gpa, size)` after entries covering
/// `[gpa, gpa + size)` were removed, weakened or re-typed, and before any frame they
/// referred to is freed. On AArch64 this is `dsb ishst; tlbi ipas2e1is, ...; dsb ish;
/// tlbi vmalle1is; dsb ish` for the VM's VMID; on RISC-V `hfence.gvma` with the VMID.
///
/// Installing new entries where nothing was mapped calls no hook: the walker only orders
/// its own stores (a release fence before every descriptor it publishes), and the
/// architecture's VM entry path supplies the barrier that makes them visible to the guest.
pub type TlbFlushHook = Box<dyn Fn(GuestPhysAddr, usize) + Send + Sync>;

/// A pointer to one table frame's entries.
#[derive(Clone, Copy)]
struct TableRef {
    ptr: *mut u64,
    len: usize,
}

impl TableRef {
    /// # Safety
    ///
    /// `ptr` must be the hypervisor-virtual address of a live table frame of `len` 8-byte
    /// entries that the page table owns, and the `TableRef` must not be used after that
    /// frame is freed.
    unsafe fn new(ptr: *mut u64, len: usize) -> Self {
        Self { ptr, len }
    }

    fn get(self, idx: usize) -> u64 {
        assert!(idx < self.len);
        // SAFETY: by `new`'s contract `ptr` points at `len` aligned entries of a live table
        // frame we own, and `idx < len`. Volatile because a hardware walker reads the same
        // memory; we are the only writer (A/D bits are preset, hardware never updates them).
        unsafe { self.ptr.add(idx).read_volatile() }
    }

    fn set(self, idx: usize, val: u64) {
        assert!(idx < self.len);
        // SAFETY: as in `get`. An aligned 8-byte store is single-copy atomic on every
        // supported architecture, so a concurrent walker sees the old or the new entry.
        unsafe { self.ptr.add(idx).write_volatile(val) }
    }
}

/// A nested (stage-2 / G-stage / EPT / NPT) page table in format `F`, whose table frames
/// come from allocator `A`.
///
/// It maps guest-physical ranges to host-physical ones; it never touches the memory its
/// leaves point at, and never frees it: that belongs to whoever mapped it (see
/// [`AddrSpace`](crate::AddrSpace)). Table frames are owned and are all freed on drop.
pub struct NestedPageTable<F: PteFormat, A: FrameAllocator> {
    root: HostPhysAddr,
    alloc: A,
    flush: Option<TlbFlushHook>,
    _format: PhantomData<fn() -> F>,
}

impl<F: PteFormat, A: FrameAllocator> fmt::Debug for NestedPageTable<F, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NestedPageTable")
            .field("format", &F::NAME)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl<F: PteFormat, A: FrameAllocator> NestedPageTable<F, A> {
    /// An empty table: allocates and zeroes the root (`F::ROOT_FRAMES` frames, aligned to
    /// its size).
    pub fn new(alloc: A) -> Result<Self, PagingError> {
        assert!(F::ROOT_FRAMES.is_power_of_two());
        debug_assert_eq!(F::ROOT_ENTRIES * 8, F::ROOT_FRAMES * PAGE_SIZE_4K);
        debug_assert_eq!(1usize << (F::GPA_BITS - shift::<F>(0)), F::ROOT_ENTRIES);
        let root = alloc_table_frames::<F, A>(&alloc, F::ROOT_FRAMES)?;
        Ok(Self {
            root,
            alloc,
            flush: None,
            _format: PhantomData,
        })
    }

    /// The host-physical address of the root table (for VTTBR_EL2 / hgatp / EPTP / nCR3).
    pub fn root_paddr(&self) -> HostPhysAddr {
        self.root
    }

    /// The frame allocator.
    pub fn allocator(&self) -> &A {
        &self.alloc
    }

    /// Installs the TLB maintenance hook (see [`TlbFlushHook`]). Without one, the caller
    /// must flush after every `unmap` and `protect` itself, before freeing mapped frames.
    pub fn set_tlb_flush_hook(&mut self, hook: TlbFlushHook) {
        self.flush = Some(hook);
    }

    /// Runs the TLB maintenance hook for `[gpa, gpa + size)` (if one is installed), e.g.
    /// after a fault on an entry that is valid, which a stale cached "invalid" may cause.
    pub fn flush_tlb(&self, gpa: GuestPhysAddr, size: usize) {
        self.flush(gpa.as_usize(), size);
    }

    /// One past the highest guest-physical address the format translates (`2^GPA_BITS`).
    pub const fn gpa_limit() -> usize {
        1 << F::GPA_BITS
    }

    /// The leaf sizes the format supports, largest first (e.g. 1 GiB, 2 MiB, 4 KiB).
    pub fn leaf_sizes() -> impl Iterator<Item = usize> {
        (0..F::LEVELS)
            .filter(|&d| F::leaf_allowed(d))
            .map(entry_size::<F>)
    }

    /// Maps `[gpa, gpa + size)` to `[hpa, hpa + size)` with `flags`.
    ///
    /// With `allow_huge`, each step uses the largest leaf whose size fits the remaining
    /// range and to which both the guest and the host address are aligned; otherwise only
    /// 4 KiB pages. Refuses (and changes nothing) if anything in the range is already mapped
    /// ([`AlreadyMapped`](PagingError::AlreadyMapped)), on unaligned input
    /// ([`NotAligned`](PagingError::NotAligned)), beyond the format's widths
    /// ([`OutOfRange`](PagingError::OutOfRange)) or with inexpressible flags. If table
    /// frames run out part-way ([`NoMemory`](PagingError::NoMemory)), everything this call
    /// mapped and allocated is undone. `size == 0` does nothing.
    pub fn map(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: usize,
        flags: MappingFlags,
        allow_huge: bool,
    ) -> Result<(), PagingError> {
        if !F::encodable(flags) {
            return Err(PagingError::InvalidFlags);
        }
        if !hpa.is_aligned(PAGE_SIZE_4K) {
            return Err(PagingError::NotAligned);
        }
        let (start, end) = Self::check_range(gpa, size)?;
        match hpa.as_usize().checked_add(size) {
            Some(e) if e <= 1usize << F::PA_BITS => {}
            _ => return Err(PagingError::OutOfRange),
        }
        if size == 0 {
            return Ok(());
        }
        if let Some(at) = self.first_mapped(self.root, 0, 0, start, end) {
            log::debug!(
                "{}: map {gpa:?}+{size:#x}: {at:#x} is already mapped",
                F::NAME
            );
            return Err(PagingError::AlreadyMapped);
        }
        let mut cur = start;
        while cur < end {
            let host = hpa.as_usize() + (cur - start);
            let depth = Self::leaf_depth(cur, host, end - cur, allow_huge);
            let step = entry_size::<F>(depth);
            if let Err(e) = self.map_leaf(cur, HostPhysAddr::new(host), depth, flags) {
                self.undo(start, cur + step);
                return Err(e);
            }
            cur += step;
        }
        Ok(())
    }

    /// Unmaps everything mapped inside `[gpa, gpa + size)`; holes are fine. Intermediate
    /// tables left empty are freed (after the TLB hook ran). Refuses with
    /// [`HugePageSplit`](PagingError::HugePageSplit), changing nothing, if a huge leaf
    /// straddles either end of the range. The frames the leaves pointed at are not freed.
    pub fn unmap(&mut self, gpa: GuestPhysAddr, size: usize) -> Result<(), PagingError> {
        let (start, end) = Self::check_range(gpa, size)?;
        if size == 0 {
            return Ok(());
        }
        self.check_edges(start, end)?;
        let mut freed = Vec::new();
        if self.clear(self.root, 0, 0, start, end, &mut freed) {
            self.flush(start, end - start);
        }
        for t in freed {
            self.alloc.dealloc_frames(t, 1);
        }
        Ok(())
    }

    /// Changes the flags of every leaf inside `[gpa, gpa + size)` to `flags`; holes are
    /// skipped. Refuses like [`unmap`](Self::unmap) when a huge leaf straddles an end. A
    /// change of memory type (DEVICE) goes through break-before-make (invalidate, flush,
    /// write), as AArch64 requires.
    pub fn protect(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        flags: MappingFlags,
    ) -> Result<(), PagingError> {
        if !F::encodable(flags) {
            return Err(PagingError::InvalidFlags);
        }
        let (start, end) = Self::check_range(gpa, size)?;
        if size == 0 {
            return Ok(());
        }
        self.check_edges(start, end)?;
        if self.protect_in(self.root, 0, 0, start, end, flags) {
            self.flush(start, end - start);
        }
        Ok(())
    }

    /// The host-physical address `gpa` maps to, the leaf's flags and the leaf's size; `None`
    /// if unmapped.
    pub fn translate(&self, gpa: GuestPhysAddr) -> Option<(HostPhysAddr, MappingFlags, usize)> {
        let (pte, depth) = self.find_leaf(gpa.as_usize())?;
        let size = entry_size::<F>(depth);
        Some((
            F::addr(pte) + gpa.align_offset(size),
            F::flags(pte, depth),
            size,
        ))
    }

    /// Calls `f(leaf_gpa, leaf_hpa, leaf_size, flags)` for every leaf that intersects
    /// `[gpa, gpa + size)` (clipped to the format's width), in address order. Leaves are
    /// reported whole, so the first and last may extend beyond the range.
    pub fn for_each_leaf(
        &self,
        gpa: GuestPhysAddr,
        size: usize,
        mut f: impl FnMut(GuestPhysAddr, HostPhysAddr, usize, MappingFlags),
    ) {
        let start = gpa.as_usize();
        let end = start.saturating_add(size).min(Self::gpa_limit());
        if start >= end {
            return;
        }
        self.visit_leaves(self.root, 0, 0, start, end, &mut |g, pte, depth| {
            f(
                GuestPhysAddr::new(g),
                F::addr(pte),
                entry_size::<F>(depth),
                F::flags(pte, depth),
            )
        });
    }

    /// The raw descriptors a hardware walk of `gpa` reads, root first, ending with the
    /// leaf or the first invalid descriptor (for fault reports).
    pub fn descriptors(&self, gpa: GuestPhysAddr) -> Vec<u64> {
        let mut out = Vec::new();
        let gpa = gpa.as_usize();
        if gpa >= Self::gpa_limit() {
            return out;
        }
        let mut table = self.root;
        for depth in 0..F::LEVELS {
            let pte = self.table_ref(table, depth).get(Self::index(gpa, depth));
            out.push(pte);
            if depth + 1 < F::LEVELS && F::is_table(pte, depth) {
                table = F::addr(pte);
            } else {
                break;
            }
        }
        out
    }

    // ---- internals ----

    fn check_range(gpa: GuestPhysAddr, size: usize) -> Result<(usize, usize), PagingError> {
        if !gpa.is_aligned(PAGE_SIZE_4K) || !size.is_multiple_of(PAGE_SIZE_4K) {
            return Err(PagingError::NotAligned);
        }
        match gpa.as_usize().checked_add(size) {
            Some(end) if end <= Self::gpa_limit() => Ok((gpa.as_usize(), end)),
            _ => Err(PagingError::OutOfRange),
        }
    }

    fn index(gpa: usize, depth: usize) -> usize {
        (gpa >> shift::<F>(depth)) & (entries::<F>(depth) - 1)
    }

    /// The depth of the largest leaf usable at `gpa`/`hpa` with `remaining` bytes to map.
    fn leaf_depth(gpa: usize, hpa: usize, remaining: usize, allow_huge: bool) -> usize {
        if allow_huge {
            for depth in 0..F::LEVELS - 1 {
                let s = entry_size::<F>(depth);
                if F::leaf_allowed(depth)
                    && gpa.is_multiple_of(s)
                    && hpa.is_multiple_of(s)
                    && remaining >= s
                {
                    return depth;
                }
            }
        }
        F::LEVELS - 1
    }

    fn table_ref(&self, table: HostPhysAddr, depth: usize) -> TableRef {
        let ptr = self.alloc.phys_to_virt(table).as_usize() as *mut u64;
        // SAFETY: every `table` passed here is the root or the address in a table descriptor
        // this page table wrote; both are frames it allocated and frees only after the last
        // `TableRef` to them is gone (in `clear` and `free_tables`). `entries(depth)` entries
        // fit: the root is `ROOT_FRAMES` frames, other tables one frame of 512.
        unsafe { TableRef::new(ptr, entries::<F>(depth)) }
    }

    fn flush(&self, start: usize, size: usize) {
        if let Some(hook) = &self.flush {
            hook(GuestPhysAddr::new(start), size);
        }
    }

    fn find_leaf(&self, gpa: usize) -> Option<(u64, usize)> {
        if gpa >= Self::gpa_limit() {
            return None;
        }
        let mut table = self.root;
        for depth in 0..F::LEVELS {
            let pte = self.table_ref(table, depth).get(Self::index(gpa, depth));
            if !F::is_valid(pte, depth) {
                return None;
            }
            if depth + 1 < F::LEVELS && F::is_table(pte, depth) {
                table = F::addr(pte);
                continue;
            }
            return F::leaf_allowed(depth).then_some((pte, depth));
        }
        None
    }

    /// Refuses a range whose first or last page lies in a leaf extending beyond it.
    fn check_edges(&self, start: usize, end: usize) -> Result<(), PagingError> {
        for at in [start, end - 1] {
            if let Some((_, depth)) = self.find_leaf(at) {
                let s = entry_size::<F>(depth);
                let base = at & !(s - 1);
                if base < start || base + s > end {
                    return Err(PagingError::HugePageSplit);
                }
            }
        }
        Ok(())
    }

    /// Index range of the entries of a table at `depth` covering `base..` that intersect
    /// `[start, end)` (which must intersect the table).
    fn span(
        depth: usize,
        base: usize,
        start: usize,
        end: usize,
    ) -> core::ops::RangeInclusive<usize> {
        let s = entry_size::<F>(depth);
        (start - base) / s..=(end - 1 - base) / s
    }

    fn first_mapped(
        &self,
        table: HostPhysAddr,
        depth: usize,
        base: usize,
        start: usize,
        end: usize,
    ) -> Option<usize> {
        let t = self.table_ref(table, depth);
        let s = entry_size::<F>(depth);
        for idx in Self::span(depth, base, start, end) {
            let pte = t.get(idx);
            if !F::is_valid(pte, depth) {
                continue;
            }
            let eb = base + idx * s;
            if depth + 1 < F::LEVELS && F::is_table(pte, depth) {
                let found =
                    self.first_mapped(F::addr(pte), depth + 1, eb, start.max(eb), end.min(eb + s));
                if found.is_some() {
                    return found;
                }
            } else {
                return Some(start.max(eb));
            }
        }
        None
    }

    fn visit_leaves(
        &self,
        table: HostPhysAddr,
        depth: usize,
        base: usize,
        start: usize,
        end: usize,
        f: &mut dyn FnMut(usize, u64, usize),
    ) {
        let t = self.table_ref(table, depth);
        let s = entry_size::<F>(depth);
        for idx in Self::span(depth, base, start, end) {
            let pte = t.get(idx);
            if !F::is_valid(pte, depth) {
                continue;
            }
            let eb = base + idx * s;
            if depth + 1 < F::LEVELS && F::is_table(pte, depth) {
                self.visit_leaves(
                    F::addr(pte),
                    depth + 1,
                    eb,
                    start.max(eb),
                    end.min(eb + s),
                    f,
                );
            } else if F::leaf_allowed(depth) {
                f(eb, pte, depth);
            }
        }
    }

    fn map_leaf(
        &mut self,
        gpa: usize,
        hpa: HostPhysAddr,
        depth: usize,
        flags: MappingFlags,
    ) -> Result<(), PagingError> {
        let mut table = self.root;
        for d in 0..depth {
            let t = self.table_ref(table, d);
            let idx = Self::index(gpa, d);
            let pte = t.get(idx);
            if F::is_valid(pte, d) {
                if d + 1 < F::LEVELS && F::is_table(pte, d) {
                    table = F::addr(pte);
                    continue;
                }
                // Unreachable after `first_mapped`; kept as a guard.
                return Err(PagingError::AlreadyMapped);
            }
            let next = alloc_table_frames::<F, A>(&self.alloc, 1)?;
            // The zeroed table must be visible before the descriptor that publishes it.
            fence(Ordering::Release);
            t.set(idx, F::table(next, d));
            table = next;
        }
        let t = self.table_ref(table, depth);
        let idx = Self::index(gpa, depth);
        if F::is_valid(t.get(idx), depth) {
            return Err(PagingError::AlreadyMapped);
        }
        // Whatever the caller wrote into the frame (zeroes, an image) before the leaf.
        fence(Ordering::Release);
        t.set(idx, F::leaf(hpa, flags, depth));
        Ok(())
    }

    /// Removes every entry in `[start, end)` (all of which this call's `map` created) and
    /// the tables left empty, flushes, and frees those tables.
    fn undo(&mut self, start: usize, end: usize) {
        let mut freed = Vec::new();
        if self.clear(self.root, 0, 0, start, end, &mut freed) {
            self.flush(start, end - start);
        }
        for t in freed {
            self.alloc.dealloc_frames(t, 1);
        }
    }

    /// Invalidates the leaves inside `[start, end)` below `table` and unlinks sub-tables left
    /// empty, pushing them to `freed` (to be freed after the TLB flush). Returns whether any
    /// entry changed. Callers have checked that no leaf straddles the range.
    fn clear(
        &mut self,
        table: HostPhysAddr,
        depth: usize,
        base: usize,
        start: usize,
        end: usize,
        freed: &mut Vec<HostPhysAddr>,
    ) -> bool {
        let t = self.table_ref(table, depth);
        let s = entry_size::<F>(depth);
        let mut changed = false;
        for idx in Self::span(depth, base, start, end) {
            let pte = t.get(idx);
            if !F::is_valid(pte, depth) {
                continue;
            }
            let eb = base + idx * s;
            if depth + 1 < F::LEVELS && F::is_table(pte, depth) {
                let sub = F::addr(pte);
                changed |= self.clear(sub, depth + 1, eb, start.max(eb), end.min(eb + s), freed);
                if self.table_is_empty(sub, depth + 1) {
                    t.set(idx, 0);
                    freed.push(sub);
                    changed = true;
                }
            } else {
                debug_assert!(start <= eb && eb + s <= end, "leaf straddles the range");
                t.set(idx, 0);
                changed = true;
            }
        }
        changed
    }

    fn table_is_empty(&self, table: HostPhysAddr, depth: usize) -> bool {
        let t = self.table_ref(table, depth);
        (0..entries::<F>(depth)).all(|i| !F::is_valid(t.get(i), depth))
    }

    fn protect_in(
        &mut self,
        table: HostPhysAddr,
        depth: usize,
        base: usize,
        start: usize,
        end: usize,
        flags: MappingFlags,
    ) -> bool {
        let t = self.table_ref(table, depth);
        let s = entry_size::<F>(depth);
        let mut changed = false;
        for idx in Self::span(depth, base, start, end) {
            let pte = t.get(idx);
            if !F::is_valid(pte, depth) {
                continue;
            }
            let eb = base + idx * s;
            if depth + 1 < F::LEVELS && F::is_table(pte, depth) {
                let sub = F::addr(pte);
                changed |=
                    self.protect_in(sub, depth + 1, eb, start.max(eb), end.min(eb + s), flags);
                continue;
            }
            let new = F::leaf(F::addr(pte), flags, depth);
            if new == pte {
                continue;
            }
            let old_device = F::flags(pte, depth).contains(MappingFlags::DEVICE);
            if F::ENCODES_DEVICE && old_device != flags.contains(MappingFlags::DEVICE) {
                // Break-before-make for a memory-type change (Arm ARM D8.16.1).
                t.set(idx, 0);
                self.flush(eb, s);
            }
            t.set(idx, new);
            changed = true;
        }
        changed
    }

    fn free_tables(&mut self, table: HostPhysAddr, depth: usize) {
        if depth + 1 >= F::LEVELS {
            return;
        }
        let t = self.table_ref(table, depth);
        for idx in 0..entries::<F>(depth) {
            let pte = t.get(idx);
            if F::is_valid(pte, depth) && F::is_table(pte, depth) {
                let sub = F::addr(pte);
                self.free_tables(sub, depth + 1);
                t.set(idx, 0);
                self.alloc.dealloc_frames(sub, 1);
            }
        }
    }
}

impl<F: PteFormat, A: FrameAllocator> Drop for NestedPageTable<F, A> {
    fn drop(&mut self) {
        // Whatever the guest may still have cached goes before the tables do.
        self.flush(0, Self::gpa_limit());
        self.free_tables(self.root, 0);
        self.alloc.dealloc_frames(self.root, F::ROOT_FRAMES);
    }
}

/// Allocates `count` zeroed frames aligned to their total size, for a table.
fn alloc_table_frames<F: PteFormat, A: FrameAllocator>(
    alloc: &A,
    count: usize,
) -> Result<HostPhysAddr, PagingError> {
    let align = count * PAGE_SIZE_4K;
    let pa = alloc
        .alloc_frames(count, align)
        .ok_or(PagingError::NoMemory)?;
    if !pa.is_aligned(align) || (pa.as_usize() + align - 1) >> F::PA_BITS != 0 {
        log::error!(
            "{}: frame allocator returned {pa:?} for {count} frame(s) aligned {align:#x}",
            F::NAME
        );
        alloc.dealloc_frames(pa, count);
        return Err(PagingError::NoMemory);
    }
    let va = alloc.phys_to_virt(pa).as_mut_ptr();
    // SAFETY: the allocator just handed us these `count` frames; nothing else refers to
    // them, and `phys_to_virt` gives their hypervisor mapping.
    unsafe { va.write_bytes(0, align) };
    Ok(pa)
}
