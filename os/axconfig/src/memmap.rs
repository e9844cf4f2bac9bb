//! Physical memory ranges and the arithmetic on them (subtracting reservations, page alignment).

use arrayvec::ArrayVec;
use core::fmt;

/// Page size used for every alignment in this module.
pub const PAGE_SIZE: usize = 4096;

/// Most ranges a [`RangeList`] holds; the firmware DTBs we boot on have a handful.
pub const MAX_RANGES: usize = 32;

/// A half-open physical address range `[start, start + size)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MemRange {
    /// First byte.
    pub start: usize,
    /// Length in bytes.
    pub size: usize,
}

impl MemRange {
    /// A range from its start and size.
    pub const fn new(start: usize, size: usize) -> Self {
        Self { start, size }
    }

    /// A range from its start and (exclusive) end; empty if `end <= start`.
    pub const fn from_bounds(start: usize, end: usize) -> Self {
        Self {
            start,
            size: end.saturating_sub(start),
        }
    }

    /// One past the last byte (saturating at `usize::MAX`).
    pub const fn end(&self) -> usize {
        self.start.saturating_add(self.size)
    }

    /// Whether the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Whether `addr` lies inside the range.
    pub const fn contains(&self, addr: usize) -> bool {
        addr >= self.start && addr < self.end()
    }

    /// Whether the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &MemRange) -> bool {
        self.start < other.end() && other.start < self.end()
    }

    /// The largest page-aligned range inside this one (possibly empty).
    pub const fn shrink_to_pages(&self) -> MemRange {
        let start = align_up(self.start, PAGE_SIZE);
        let end = self.end() & !(PAGE_SIZE - 1);
        MemRange::from_bounds(start, end)
    }
}

impl fmt::Display for MemRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#011x}, {:#011x})", self.start, self.end())
    }
}

/// Rounds `v` up to a multiple of `align` (a power of two), saturating near `usize::MAX`.
pub const fn align_up(v: usize, align: usize) -> usize {
    match v.checked_add(align - 1) {
        Some(x) => x & !(align - 1),
        None => usize::MAX & !(align - 1),
    }
}

/// A bounded list of ranges.
pub type RangeList = ArrayVec<MemRange, MAX_RANGES>;

/// Error from range arithmetic.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemMapError {
    /// The result would need more than [`MAX_RANGES`] ranges.
    TooManyRanges,
}

/// `ram` minus every range in `reserved`, each piece shrunk to whole pages, empty pieces
/// dropped, sorted by address.
pub fn subtract(ram: &[MemRange], reserved: &[MemRange]) -> Result<RangeList, MemMapError> {
    let mut out = RangeList::new();
    for r in ram {
        let mut pieces = RangeList::new();
        pieces.push(*r);
        for hole in reserved.iter().filter(|h| !h.is_empty()) {
            let mut next = RangeList::new();
            for p in &pieces {
                if !p.overlaps(hole) {
                    next.try_push(*p).map_err(|_| MemMapError::TooManyRanges)?;
                    continue;
                }
                for part in [
                    MemRange::from_bounds(p.start, hole.start),
                    MemRange::from_bounds(hole.end(), p.end()),
                ] {
                    if !part.is_empty() {
                        next.try_push(part)
                            .map_err(|_| MemMapError::TooManyRanges)?;
                    }
                }
            }
            pieces = next;
        }
        for p in pieces {
            let p = p.shrink_to_pages();
            if !p.is_empty() {
                out.try_push(p).map_err(|_| MemMapError::TooManyRanges)?;
            }
        }
    }
    out.sort_unstable_by_key(|r| r.start);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_splits_and_aligns() {
        let ram = [MemRange::new(0x4000_0000, 0x1000_0000)];
        let res = [
            MemRange::new(0x4020_0000, 0x12_3456), // kernel image, unaligned end
            MemRange::new(0x4800_0000, 0x10_0000), // dtb
            MemRange::new(0x3000_0000, 0x1000),    // outside RAM: ignored
        ];
        let free = subtract(&ram, &res).unwrap();
        assert_eq!(
            free.as_slice(),
            &[
                MemRange::from_bounds(0x4000_0000, 0x4020_0000),
                MemRange::from_bounds(0x4032_4000, 0x4800_0000),
                MemRange::from_bounds(0x4810_0000, 0x5000_0000),
            ]
        );
    }

    #[test]
    fn subtract_drops_fully_reserved_and_sorts() {
        let ram = [
            MemRange::new(0x9000_0000, 0x1000_0000),
            MemRange::new(0x8000_0000, 0x10_0000),
        ];
        let res = [MemRange::new(0x7000_0000, 0x2000_0000)];
        let free = subtract(&ram, &res).unwrap();
        assert_eq!(free.as_slice(), &[MemRange::new(0x9000_0000, 0x1000_0000)]);
    }

    #[test]
    fn subtract_reports_overflow() {
        let ram = [MemRange::new(0, 0x1000_0000)];
        let res: std::vec::Vec<_> = (0..MAX_RANGES + 1)
            .map(|i| MemRange::new(0x10_0000 * (i + 1), 0x1000))
            .collect();
        assert_eq!(subtract(&ram, &res), Err(MemMapError::TooManyRanges));
    }

    #[test]
    fn range_helpers() {
        let r = MemRange::new(0x1001, 0x2000);
        assert_eq!(r.shrink_to_pages(), MemRange::new(0x2000, 0x1000));
        assert!(r.contains(0x1001) && !r.contains(0x3001));
        assert!(r.overlaps(&MemRange::new(0x3000, 1)));
        assert!(!r.overlaps(&MemRange::new(0x3001, 1)));
        assert_eq!(align_up(usize::MAX - 3, 0x1000), usize::MAX & !0xfff);
        assert_eq!(
            std::format!("{}", MemRange::new(0x1000, 0x1000)),
            "[0x000001000, 0x000002000)"
        );
    }
}
