//! The e820 memory map handed to Linux in the zero page: which guest-physical ranges are RAM,
//! reserved, or ACPI tables.
//!
//! Below 1 MiB it follows the PC layout Linux expects: RAM up to the extended BIOS data area
//! at 0x9FC00, that last KiB reserved, the VGA and option-ROM hole 0xA0000..0xE0000 left out,
//! and the BIOS area 0xE0000..0x100000 (where the ACPI tables may be, and where Linux scans
//! for the RSDP) reserved.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// Where the extended BIOS data area begins; RAM below it is the guest's conventional
/// memory.
pub const EBDA_START: u64 = 0x9_FC00;
/// The legacy VGA and option-ROM window: not RAM, not listed.
pub const VGA_HOLE: Range<u64> = 0xA_0000..0xE_0000;
/// The BIOS area, reserved; Linux scans 0xE0000..0x100000 for the RSDP.
pub const BIOS_AREA: Range<u64> = 0xE_0000..0x10_0000;
/// The end of low memory (1 MiB).
pub const LOW_MEMORY_END: u64 = 0x10_0000;
/// Entries the zero page holds (`E820_MAX_ENTRIES_ZEROPAGE`).
pub const MAX_ENTRIES: usize = 128;
/// Size of one entry in the zero page: `addr: u64, size: u64, type: u32`, packed.
pub const ENTRY_SIZE: usize = 20;

/// An e820 range type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum E820Kind {
    /// 1: usable RAM.
    Ram = 1,
    /// 2: reserved, not to be used.
    Reserved = 2,
    /// 3: ACPI tables; RAM once the OS has read them.
    Acpi = 3,
    /// 4: ACPI non-volatile storage.
    Nvs = 4,
}

/// One range of the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// First address.
    pub addr: u64,
    /// Length in bytes (not 0).
    pub size: u64,
    /// What the range is.
    pub kind: E820Kind,
}

impl E820Entry {
    /// The first address after the range.
    pub fn end(&self) -> u64 {
        self.addr + self.size
    }

    /// The 20 bytes of the entry in the zero page.
    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&(self.kind as u32).to_le_bytes());
        b
    }
}

/// Why no map can be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum E820Error {
    /// The VM's RAM does not cover all of 0..1 MiB; Linux needs low memory (for the
    /// secondary CPUs' real-mode trampoline, among others).
    NoLowMemory,
    /// A range ends before it starts or wraps around.
    BadRange(Range<u64>),
    /// Two RAM or ROM ranges overlap.
    Overlap(Range<u64>, Range<u64>),
    /// A range to mark (the ACPI tables) is not inside RAM.
    OutsideRam(Range<u64>),
    /// More ranges than the zero page holds.
    TooManyEntries(usize),
}

impl fmt::Display for E820Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLowMemory => write!(
                f,
                "the VM's RAM does not cover 0..0x100000, which Linux on x86 needs"
            ),
            Self::BadRange(r) => write!(
                f,
                "the memory range {:#x}..{:#x} is empty or wraps",
                r.start, r.end
            ),
            Self::Overlap(a, b) => write!(
                f,
                "the memory ranges {:#x}..{:#x} and {:#x}..{:#x} overlap",
                a.start, a.end, b.start, b.end
            ),
            Self::OutsideRam(r) => write!(f, "{:#x}..{:#x} is not in the VM's RAM", r.start, r.end),
            Self::TooManyEntries(n) => write!(
                f,
                "the e820 map has {n} ranges, more than the zero page's {MAX_ENTRIES}"
            ),
        }
    }
}

/// A sorted e820 map without overlaps, adjacent ranges of the same type merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct E820Map {
    entries: Vec<E820Entry>,
}

impl E820Map {
    /// Builds the map of a VM with the RAM ranges `ram` and the ROM ranges `rom`, which
    /// together must cover 0..1 MiB: RAM as type 1 with the PC's low-memory layout (see the
    /// module), ROM as reserved, then each of `marks` (inside RAM: the ACPI tables' pages
    /// when they are not in the BIOS area) with its type.
    pub fn build(
        ram: &[Range<u64>],
        rom: &[Range<u64>],
        marks: &[(Range<u64>, E820Kind)],
    ) -> Result<Self, E820Error> {
        let mut painted: Vec<E820Entry> = Vec::new();
        let mut all: Vec<Range<u64>> = Vec::new();
        for (ranges, kind) in [(ram, E820Kind::Ram), (rom, E820Kind::Reserved)] {
            for r in ranges {
                if r.start >= r.end {
                    return Err(E820Error::BadRange(r.clone()));
                }
                if let Some(other) = all.iter().find(|o| o.start < r.end && r.start < o.end) {
                    return Err(E820Error::Overlap(other.clone(), r.clone()));
                }
                all.push(r.clone());
                painted.push(E820Entry {
                    addr: r.start,
                    size: r.end - r.start,
                    kind,
                });
            }
        }
        painted.sort_by_key(|e| e.addr);
        // 0..1 MiB must be backed without a gap.
        let mut covered = 0;
        for e in &painted {
            if e.addr > covered {
                break;
            }
            covered = covered.max(e.end());
        }
        if covered < LOW_MEMORY_END {
            return Err(E820Error::NoLowMemory);
        }
        let mut map = Self { entries: painted };
        map.paint(EBDA_START..VGA_HOLE.start, Some(E820Kind::Reserved));
        map.paint(VGA_HOLE, None);
        map.paint(BIOS_AREA, Some(E820Kind::Reserved));
        for (r, kind) in marks {
            if r.start >= r.end {
                return Err(E820Error::BadRange(r.clone()));
            }
            if !ram.iter().any(|m| m.start <= r.start && r.end <= m.end) {
                return Err(E820Error::OutsideRam(r.clone()));
            }
            map.paint(r.clone(), Some(*kind));
        }
        map.merge();
        if map.entries.len() > MAX_ENTRIES {
            return Err(E820Error::TooManyEntries(map.entries.len()));
        }
        Ok(map)
    }

    /// Gives `range` the type `kind` where it overlaps the map (`None`: removes it).
    fn paint(&mut self, range: Range<u64>, kind: Option<E820Kind>) {
        let mut out = Vec::with_capacity(self.entries.len() + 2);
        for e in &self.entries {
            let (start, end) = (e.addr, e.end());
            if end <= range.start || range.end <= start {
                out.push(*e);
                continue;
            }
            let piece = |a: u64, b: u64, kind| E820Entry {
                addr: a,
                size: b - a,
                kind,
            };
            if start < range.start {
                out.push(piece(start, range.start, e.kind));
            }
            if let Some(kind) = kind {
                out.push(piece(start.max(range.start), end.min(range.end), kind));
            }
            if range.end < end {
                out.push(piece(range.end, end, e.kind));
            }
        }
        self.entries = out;
    }

    /// Joins touching ranges of the same type.
    fn merge(&mut self) {
        let mut out: Vec<E820Entry> = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            match out.last_mut() {
                Some(last) if last.end() == e.addr && last.kind == e.kind => last.size += e.size,
                _ => out.push(*e),
            }
        }
        self.entries = out;
    }

    /// The ranges, by address.
    pub fn entries(&self) -> &[E820Entry] {
        &self.entries
    }

    /// Whether `range` lies inside one RAM (type 1) entry.
    pub fn is_ram(&self, range: &Range<u64>) -> bool {
        self.entries
            .iter()
            .any(|e| e.kind == E820Kind::Ram && e.addr <= range.start && range.end <= e.end())
    }
}
