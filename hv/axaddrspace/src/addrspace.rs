//! A VM's guest-physical address space: regions, their backing, and guest memory access.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::format::PteFormat;
use crate::npt::{NestedPageTable, PagingError, TlbFlushHook};
use crate::{
    FrameAllocator, GuestPhysAddr, HostPhysAddr, MappingFlags, PAGE_SIZE_2M, PAGE_SIZE_4K,
};

/// Where a region's memory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Frames from the address space's allocator, zeroed, owned by the region and freed when
    /// it is unmapped. With `populate`, all of them are allocated and mapped up front (2 MiB
    /// at a time where possible); without, each 4 KiB page is allocated on its first
    /// [`handle_page_fault`](AddrSpace::handle_page_fault) or hypervisor write.
    Alloc {
        /// Whether to allocate and map every page when the region is created.
        populate: bool,
    },
    /// A fixed host-physical range, mapped linearly (`hpa + (gpa - region.gpa)`), never
    /// allocated or freed here: identity-mapped RAM, shared memory, passthrough devices.
    Linear {
        /// Host-physical address of the region's first byte.
        hpa: HostPhysAddr,
    },
}

/// One guest-physical region of an [`AddrSpace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First guest-physical address (4 KiB-aligned).
    pub gpa: GuestPhysAddr,
    /// Size in bytes (a non-zero multiple of 4 KiB).
    pub size: usize,
    /// What the guest (and the hypervisor's [`read`](AddrSpace::read) /
    /// [`write`](AddrSpace::write)) may do.
    pub flags: MappingFlags,
    /// Where the memory comes from.
    pub backend: Backend,
}

impl Region {
    /// One past the last address.
    pub fn end(&self) -> GuestPhysAddr {
        self.gpa + self.size
    }

    /// Whether `gpa` is inside the region.
    pub fn contains(&self, gpa: GuestPhysAddr) -> bool {
        self.gpa <= gpa && gpa < self.end()
    }
}

/// Why a region could not be added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrSpaceError {
    /// The new region overlaps the existing region starting at `existing`.
    Overlap {
        /// Start of the region it overlaps.
        existing: GuestPhysAddr,
    },
    /// A region of size 0.
    EmptyRegion,
    /// An allocator-backed region with [`MappingFlags::DEVICE`]: RAM from the allocator
    /// must not get a second, differently cached mapping.
    DeviceRam,
    /// `unmap` was given a range that is not a union of whole regions (or contains none).
    NotWholeRegions,
    /// Refused by the page table or out of memory (alignment, width, flags, frames).
    Paging(PagingError),
}

impl From<PagingError> for AddrSpaceError {
    fn from(e: PagingError) -> Self {
        Self::Paging(e)
    }
}

impl fmt::Display for AddrSpaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overlap { existing } => {
                write!(f, "overlaps the region at {existing}")
            }
            Self::EmptyRegion => f.write_str("region of size 0"),
            Self::DeviceRam => f.write_str("allocator-backed memory cannot be DEVICE"),
            Self::NotWholeRegions => f.write_str("range is not made of whole regions"),
            Self::Paging(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// Why a hypervisor access to guest memory ([`AddrSpace::read`] / [`AddrSpace::write`])
/// was refused. A refused access has touched no memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessError {
    /// `gpa` is in no region (or the range wraps around the address space).
    Unmapped {
        /// First address of the access that is not mapped.
        gpa: GuestPhysAddr,
    },
    /// `gpa` is in a DEVICE region: device memory is accessed through its device model,
    /// never as RAM.
    Device {
        /// First address of the access in a device region.
        gpa: GuestPhysAddr,
    },
    /// `gpa` is in a region without READ (for a read) or WRITE (for a write).
    Permission {
        /// First address of the access the region does not permit.
        gpa: GuestPhysAddr,
    },
    /// A lazily populated page at `gpa` could not be allocated (the pages before it may have
    /// been populated; nothing was written).
    NoMemory {
        /// The page that could not be populated.
        gpa: GuestPhysAddr,
    },
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unmapped { gpa } => write!(f, "guest address {gpa} is not mapped"),
            Self::Device { gpa } => write!(f, "guest address {gpa} is device memory"),
            Self::Permission { gpa } => write!(f, "guest address {gpa}: access not permitted"),
            Self::NoMemory { gpa } => write!(f, "out of memory populating guest page {gpa}"),
        }
    }
}

/// A VM's guest-physical address space: non-overlapping [`Region`]s and the nested page
/// table that maps them.
///
/// Every leaf of the page table belongs to exactly one region and lies inside it; the page
/// table is only changed through this type, so that stays true.
pub struct AddrSpace<F: PteFormat, A: FrameAllocator> {
    pt: NestedPageTable<F, A>,
    regions: BTreeMap<usize, Region>,
}

impl<F: PteFormat, A: FrameAllocator> fmt::Debug for AddrSpace<F, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddrSpace")
            .field("page_table", &self.pt)
            .field("regions", &self.regions.values().collect::<Vec<_>>())
            .finish()
    }
}

impl<F: PteFormat, A: FrameAllocator> AddrSpace<F, A> {
    /// An empty address space with an empty page table.
    pub fn new(alloc: A) -> Result<Self, AddrSpaceError> {
        Ok(Self {
            pt: NestedPageTable::new(alloc)?,
            regions: BTreeMap::new(),
        })
    }

    /// Adds a region backed by zeroed frames from the allocator ([`Backend::Alloc`]).
    /// With `populate`, every page is allocated and mapped now (all or nothing); otherwise
    /// pages are mapped on first fault.
    pub fn map_alloc(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        flags: MappingFlags,
        populate: bool,
    ) -> Result<(), AddrSpaceError> {
        if flags.contains(MappingFlags::DEVICE) {
            return Err(AddrSpaceError::DeviceRam);
        }
        let end = self.check_new(gpa, size, flags)?;
        if populate {
            self.populate(gpa.as_usize(), end, flags)?;
        }
        let backend = Backend::Alloc { populate };
        self.regions.insert(
            gpa.as_usize(),
            Region {
                gpa,
                size,
                flags,
                backend,
            },
        );
        Ok(())
    }

    /// Adds a region mapped linearly onto `[hpa, hpa + size)` ([`Backend::Linear`]), with
    /// huge pages where both sides are aligned.
    ///
    /// The caller vouches for the host range: it must be memory this VM may own (checked
    /// against the platform by the VM configuration), and unless `flags` has DEVICE it must
    /// be RAM that the allocator's `phys_to_virt` reaches, since [`read`](Self::read) and
    /// [`write`](Self::write) will access it.
    pub fn map_linear(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: usize,
        flags: MappingFlags,
    ) -> Result<(), AddrSpaceError> {
        self.check_new(gpa, size, flags)?;
        self.pt.map(gpa, hpa, size, flags, true)?;
        let backend = Backend::Linear { hpa };
        self.regions.insert(
            gpa.as_usize(),
            Region {
                gpa,
                size,
                flags,
                backend,
            },
        );
        Ok(())
    }

    /// Removes every region inside `[gpa, gpa + size)`, which must consist of whole regions
    /// (gaps allowed) and contain at least one. Their mappings are removed (the TLB hook
    /// runs) and then allocator-backed frames are freed.
    pub fn unmap(&mut self, gpa: GuestPhysAddr, size: usize) -> Result<(), AddrSpaceError> {
        let start = gpa.as_usize();
        let end = start
            .checked_add(size)
            .ok_or(AddrSpaceError::Paging(PagingError::OutOfRange))?;
        let hit: Vec<Region> = self
            .regions
            .range(..end)
            .rev()
            .map(|(_, r)| *r)
            .take_while(|r| r.end().as_usize() > start)
            .collect();
        if hit.is_empty()
            || hit
                .iter()
                .any(|r| r.gpa.as_usize() < start || r.end().as_usize() > end)
        {
            return Err(AddrSpaceError::NotWholeRegions);
        }
        for r in hit {
            self.regions.remove(&r.gpa.as_usize());
            self.release(&r);
        }
        Ok(())
    }

    /// Handles a nested page fault at `gpa` for an `access` (READ, WRITE or EXECUTE; empty
    /// means READ). Returns `true` when the guest may retry the access: the page was in a
    /// lazily populated region and is now mapped, or it was already mapped with that access
    /// (another vCPU populated it first, or a stale TLB entry; the TLB hook is run for it).
    /// Returns `false` for everything the VM must handle itself: no region (MMIO), an access
    /// the region does not allow, or out of memory.
    pub fn handle_page_fault(&mut self, gpa: GuestPhysAddr, access: MappingFlags) -> bool {
        let Some(r) = self.region_at(gpa).copied() else {
            return false;
        };
        let mut access =
            access & (MappingFlags::READ | MappingFlags::WRITE | MappingFlags::EXECUTE);
        if access.is_empty() {
            access = MappingFlags::READ;
        }
        if !r.flags.contains(access) {
            return false;
        }
        let page = gpa.align_down(PAGE_SIZE_4K);
        if let Some((_, flags, _)) = self.pt.translate(page) {
            if flags.contains(access) {
                self.pt.flush_tlb(page, PAGE_SIZE_4K);
                return true;
            }
            return false;
        }
        match r.backend {
            Backend::Alloc { .. } => match self.populate_page(page, r.flags) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("{}: cannot populate guest page {page}: {e}", F::NAME);
                    false
                }
            },
            Backend::Linear { .. } => false,
        }
    }

    /// Translates `gpa` through the page table: host address, flags and leaf size; `None`
    /// when unmapped (including pages of a lazy region not populated yet).
    pub fn translate(&self, gpa: GuestPhysAddr) -> Option<(HostPhysAddr, MappingFlags, usize)> {
        self.pt.translate(gpa)
    }

    /// Copies guest memory at `[gpa, gpa + buf.len())` into `buf`. The whole range must lie
    /// in non-DEVICE regions with READ; otherwise nothing is read and the first offending
    /// address is reported. Pages of a lazy region that were never populated read as zero
    /// (and stay unpopulated).
    pub fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), AccessError> {
        self.check_access(gpa, buf.len(), MappingFlags::READ)?;
        let mut done = 0;
        while done < buf.len() {
            let cur = gpa + done;
            let n = (PAGE_SIZE_4K - cur.align_offset(PAGE_SIZE_4K)).min(buf.len() - done);
            let chunk = &mut buf[done..done + n];
            match self.pt.translate(cur) {
                Some((hpa, _, _)) => {
                    let src = self.pt.allocator().phys_to_virt(hpa).as_mut_ptr();
                    // SAFETY: `cur` is in a non-DEVICE region (check_access), whose leaf maps
                    // the whole 4 KiB page holding `cur` to memory owned by the region: frames
                    // this address space allocated, or the RAM `map_linear`'s caller vouched
                    // for. `n` stops at the page end, so `src..src + n` stays in that page.
                    unsafe { copy_from_guest(src, chunk) };
                }
                None => match self.region_at(cur).map(|r| r.backend) {
                    Some(Backend::Alloc { .. }) => chunk.fill(0),
                    _ => return Err(AccessError::Unmapped { gpa: cur }),
                },
            }
            done += n;
        }
        Ok(())
    }

    /// Copies `data` into guest memory at `[gpa, gpa + data.len())`. The whole range must
    /// lie in non-DEVICE regions with WRITE; otherwise nothing is written and the first
    /// offending address is reported. Unpopulated pages of lazy regions are populated first.
    pub fn write(&mut self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), AccessError> {
        self.write_with(gpa, data, MappingFlags::WRITE)
    }

    /// Loads `data` into guest memory at `[gpa, gpa + data.len())` as the machine's
    /// loader would: like [`write`](Self::write), but regions the guest may not write
    /// (ROM: read and execute only) are filled too. The range must still lie in non-DEVICE
    /// regions.
    pub fn load(&mut self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), AccessError> {
        self.write_with(gpa, data, MappingFlags::empty())
    }

    /// [`write`](Self::write) into regions that allow `need`.
    fn write_with(
        &mut self,
        gpa: GuestPhysAddr,
        data: &[u8],
        need: MappingFlags,
    ) -> Result<(), AccessError> {
        self.check_access(gpa, data.len(), need)?;
        if data.is_empty() {
            return Ok(());
        }
        let last = (gpa + (data.len() - 1)).align_down(PAGE_SIZE_4K);
        let mut page = gpa.align_down(PAGE_SIZE_4K);
        loop {
            if self.pt.translate(page).is_none() {
                let r = *self
                    .region_at(page.max(gpa))
                    .expect("checked by check_access");
                match r.backend {
                    Backend::Alloc { .. } => self
                        .populate_page(page, r.flags)
                        .map_err(|_| AccessError::NoMemory { gpa: page })?,
                    Backend::Linear { .. } => {
                        return Err(AccessError::Unmapped { gpa: page.max(gpa) })
                    }
                }
            }
            if page == last {
                break;
            }
            page = page + PAGE_SIZE_4K;
        }
        let mut done = 0;
        while done < data.len() {
            let cur = gpa + done;
            let n = (PAGE_SIZE_4K - cur.align_offset(PAGE_SIZE_4K)).min(data.len() - done);
            let (hpa, _, _) = self.pt.translate(cur).expect("populated above");
            let dst = self.pt.allocator().phys_to_virt(hpa).as_mut_ptr();
            // SAFETY: as in `read`: `cur` is in a non-DEVICE region with WRITE whose leaf maps
            // the whole page to memory the region owns, and `n` stops at the page end.
            unsafe { copy_to_guest(&data[done..done + n], dst) };
            done += n;
        }
        Ok(())
    }

    /// The regions, in address order.
    pub fn regions(&self) -> impl Iterator<Item = &Region> + '_ {
        self.regions.values()
    }

    /// The region containing `gpa`, if any.
    pub fn region_at(&self, gpa: GuestPhysAddr) -> Option<&Region> {
        self.regions
            .range(..=gpa.as_usize())
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.contains(gpa))
    }

    /// The nested page table (read-only: regions are changed through this type).
    pub fn page_table(&self) -> &NestedPageTable<F, A> {
        &self.pt
    }

    /// The page table's root, for VTTBR_EL2 / hgatp.
    pub fn root_paddr(&self) -> HostPhysAddr {
        self.pt.root_paddr()
    }

    /// The frame allocator.
    pub fn allocator(&self) -> &A {
        self.pt.allocator()
    }

    /// Installs the TLB maintenance hook on the page table (see [`TlbFlushHook`]).
    pub fn set_tlb_flush_hook(&mut self, hook: TlbFlushHook) {
        self.pt.set_tlb_flush_hook(hook);
    }

    // ---- internals ----

    /// Validates a new region; returns its end.
    fn check_new(
        &self,
        gpa: GuestPhysAddr,
        size: usize,
        flags: MappingFlags,
    ) -> Result<usize, AddrSpaceError> {
        if size == 0 {
            return Err(AddrSpaceError::EmptyRegion);
        }
        if !gpa.is_aligned(PAGE_SIZE_4K) || !size.is_multiple_of(PAGE_SIZE_4K) {
            return Err(PagingError::NotAligned.into());
        }
        let end = match gpa.as_usize().checked_add(size) {
            Some(e) if e <= NestedPageTable::<F, A>::gpa_limit() => e,
            _ => return Err(PagingError::OutOfRange.into()),
        };
        if !F::encodable(flags) {
            return Err(PagingError::InvalidFlags.into());
        }
        // Regions do not overlap, so only the last one starting before `end` can.
        if let Some((_, r)) = self.regions.range(..end).next_back() {
            if r.end() > gpa {
                return Err(AddrSpaceError::Overlap { existing: r.gpa });
            }
        }
        Ok(end)
    }

    /// The first address of `[gpa, gpa + len)` that is not in a region allowing `need`
    /// without DEVICE, as an error.
    pub(crate) fn check_access(
        &self,
        gpa: GuestPhysAddr,
        len: usize,
        need: MappingFlags,
    ) -> Result<(), AccessError> {
        if len == 0 {
            return Ok(());
        }
        let end = gpa.as_usize().saturating_add(len);
        let mut cur = gpa;
        while cur.as_usize() < end {
            let Some(r) = self.region_at(cur) else {
                return Err(AccessError::Unmapped { gpa: cur });
            };
            if r.flags.contains(MappingFlags::DEVICE) {
                return Err(AccessError::Device { gpa: cur });
            }
            if !r.flags.contains(need) {
                return Err(AccessError::Permission { gpa: cur });
            }
            cur = r.end();
        }
        if gpa.checked_add(len).is_none() {
            // Unreachable (regions end below the GPA limit), but never wrap.
            return Err(AccessError::Unmapped { gpa: cur });
        }
        Ok(())
    }

    /// Allocates, zeroes and maps every page of `[start, end)`; all or nothing.
    fn populate(
        &mut self,
        start: usize,
        end: usize,
        flags: MappingFlags,
    ) -> Result<(), AddrSpaceError> {
        let use_2m = NestedPageTable::<F, A>::leaf_sizes().any(|s| s == PAGE_SIZE_2M);
        let mut cur = start;
        while cur < end {
            let mut chunk = None;
            if use_2m && cur.is_multiple_of(PAGE_SIZE_2M) && end - cur >= PAGE_SIZE_2M {
                chunk = self.alloc_zeroed(PAGE_SIZE_2M).map(|pa| (pa, PAGE_SIZE_2M));
            }
            let res = match chunk
                .or_else(|| self.alloc_zeroed(PAGE_SIZE_4K).map(|pa| (pa, PAGE_SIZE_4K)))
            {
                None => Err(PagingError::NoMemory),
                Some((pa, size)) => {
                    let r = self.pt.map(GuestPhysAddr::new(cur), pa, size, flags, true);
                    if r.is_ok() {
                        cur += size;
                    } else {
                        self.pt.allocator().dealloc_frames(pa, size / PAGE_SIZE_4K);
                    }
                    r
                }
            };
            if let Err(e) = res {
                self.release_alloc(start, cur - start);
                return Err(e.into());
            }
        }
        Ok(())
    }

    fn populate_page(
        &mut self,
        page: GuestPhysAddr,
        flags: MappingFlags,
    ) -> Result<(), PagingError> {
        let pa = self
            .alloc_zeroed(PAGE_SIZE_4K)
            .ok_or(PagingError::NoMemory)?;
        self.pt
            .map(page, pa, PAGE_SIZE_4K, flags, false)
            .inspect_err(|_| {
                self.pt.allocator().dealloc_frames(pa, 1);
            })
    }

    /// `size` bytes (4 KiB or 2 MiB) of zeroed frames aligned to `size`.
    fn alloc_zeroed(&self, size: usize) -> Option<HostPhysAddr> {
        let alloc = self.pt.allocator();
        let pa = alloc.alloc_frames(size / PAGE_SIZE_4K, size)?;
        if !pa.is_aligned(size) {
            log::error!("frame allocator returned {pa:?}, not aligned to {size:#x}");
            alloc.dealloc_frames(pa, size / PAGE_SIZE_4K);
            return None;
        }
        let va = alloc.phys_to_virt(pa).as_mut_ptr();
        // SAFETY: the allocator just handed us these frames; nothing else refers to them and
        // the guest cannot see them until a leaf is published after this (with a fence).
        unsafe { va.write_bytes(0, size) };
        Some(pa)
    }

    fn release(&mut self, r: &Region) {
        match r.backend {
            Backend::Alloc { .. } => self.release_alloc(r.gpa.as_usize(), r.size),
            Backend::Linear { .. } => {
                if let Err(e) = self.pt.unmap(r.gpa, r.size) {
                    log::error!("{}: unmapping region {r:?}: {e}", F::NAME);
                }
            }
        }
    }

    /// Unmaps allocator-backed `[start, start + size)` and frees its frames (one allocation
    /// per leaf), after the TLB hook ran.
    fn release_alloc(&mut self, start: usize, size: usize) {
        if size == 0 {
            return;
        }
        let gpa = GuestPhysAddr::new(start);
        let mut frames = Vec::new();
        self.pt
            .for_each_leaf(gpa, size, |_, hpa, leaf, _| frames.push((hpa, leaf)));
        if let Err(e) = self.pt.unmap(gpa, size) {
            // Cannot happen for whole regions; leak rather than free memory still mapped.
            log::error!(
                "{}: unmapping {gpa:?}+{size:#x}: {e}; leaking its frames",
                F::NAME
            );
            return;
        }
        for (hpa, leaf) in frames {
            self.pt.allocator().dealloc_frames(hpa, leaf / PAGE_SIZE_4K);
        }
    }
}

impl<F: PteFormat, A: FrameAllocator> Drop for AddrSpace<F, A> {
    fn drop(&mut self) {
        let regions: Vec<Region> = self.regions.values().copied().collect();
        self.regions.clear();
        for r in &regions {
            self.release(r);
        }
    }
}

/// Copies guest memory at `src` into `dst`, with volatile loads: the guest may be changing
/// it concurrently, so the compiler must not assume it stable.
///
/// # Safety
///
/// `src..src + dst.len()` must be readable host memory that stays allocated for the call.
unsafe fn copy_from_guest(src: *const u8, dst: &mut [u8]) {
    let mut i = 0;
    while i < dst.len() {
        let p = src.wrapping_add(i);
        if (p as usize).is_multiple_of(8) && dst.len() - i >= 8 {
            // SAFETY: `p..p + 8` is inside the caller's range and 8-aligned.
            let v = unsafe { (p as *const u64).read_volatile() };
            dst[i..i + 8].copy_from_slice(&v.to_ne_bytes());
            i += 8;
        } else {
            // SAFETY: `p` is inside the caller's range.
            dst[i] = unsafe { p.read_volatile() };
            i += 1;
        }
    }
}

/// Copies `src` into guest memory at `dst` with volatile stores (see [`copy_from_guest`]).
///
/// # Safety
///
/// `dst..dst + src.len()` must be writable host memory that stays allocated for the call and
/// that no Rust reference points into.
unsafe fn copy_to_guest(src: &[u8], dst: *mut u8) {
    let mut i = 0;
    while i < src.len() {
        let p = dst.wrapping_add(i);
        if (p as usize).is_multiple_of(8) && src.len() - i >= 8 {
            let v = u64::from_ne_bytes(src[i..i + 8].try_into().unwrap());
            // SAFETY: `p..p + 8` is inside the caller's range and 8-aligned.
            unsafe { (p as *mut u64).write_volatile(v) };
            i += 8;
        } else {
            // SAFETY: `p` is inside the caller's range.
            unsafe { p.write_volatile(src[i]) };
            i += 1;
        }
    }
}
