//! Host unit tests. Generic tests run against every format, the fake one included; the
//! bit-level tests check the real formats against their manuals.

mod addrspace;
mod formats;
mod npt;

use std::sync::{Arc, Mutex};
use std::vec::Vec;

use crate::fake::FakeFrameAllocator;
use crate::{GuestPhysAddr, HostPhysAddr, MappingFlags, TlbFlushHook};

pub(crate) const R: MappingFlags = MappingFlags::READ;
pub(crate) const W: MappingFlags = MappingFlags::WRITE;
pub(crate) const X: MappingFlags = MappingFlags::EXECUTE;
pub(crate) const DEV: MappingFlags = MappingFlags::DEVICE;
pub(crate) const K4: usize = 0x1000;
pub(crate) const M2: usize = 0x20_0000;
pub(crate) const G1: usize = 0x4000_0000;

pub(crate) fn gpa(a: usize) -> GuestPhysAddr {
    GuestPhysAddr::new(a)
}

pub(crate) fn hpa(a: usize) -> HostPhysAddr {
    HostPhysAddr::new(a)
}

/// Calls of a recording flush hook: (gpa, size, frames allocated at the time).
pub(crate) type FlushLog = Arc<Mutex<Vec<(usize, usize, usize)>>>;

/// A flush hook that records its calls together with the number of frames allocated at the
/// time (to check that flushes come before frees).
pub(crate) fn recording_hook(alloc: &Arc<FakeFrameAllocator>) -> (TlbFlushHook, FlushLog) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (l, a) = (log.clone(), alloc.clone());
    let hook: TlbFlushHook = std::boxed::Box::new(move |g: GuestPhysAddr, size: usize| {
        l.lock()
            .unwrap()
            .push((g.as_usize(), size, a.allocated_frames()));
    });
    (hook, log)
}

/// A deterministic xorshift generator for the randomized tests.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Instantiates a generic test function `$name::<F>()` once per format.
macro_rules! for_each_format {
    ($($name:ident),* $(,)?) => {
        mod aarch64 {
            $( #[test] fn $name() { super::$name::<crate::Aarch64Stage2>(); } )*
        }
        mod riscv {
            $( #[test] fn $name() { super::$name::<crate::RiscvSv39x4>(); } )*
        }
        mod ept {
            $( #[test] fn $name() { super::$name::<crate::IntelEpt>(); } )*
        }
        mod npt_amd {
            $( #[test] fn $name() { super::$name::<crate::AmdNpt>(); } )*
        }
        mod fake {
            $( #[test] fn $name() { super::$name::<crate::fake::FakeFormat>(); } )*
        }
    };
}
pub(crate) use for_each_format;

#[test]
fn shareable_across_cpus() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<crate::AddrSpace<crate::Aarch64Stage2, Arc<FakeFrameAllocator>>>();
    send_sync::<crate::NestedPageTable<crate::RiscvSv39x4, Arc<FakeFrameAllocator>>>();
    send_sync::<crate::AddrSpaceError>();
    send_sync::<crate::AccessError>();
}

#[test]
fn errors_display() {
    use std::string::ToString;
    assert_eq!(
        crate::PagingError::HugePageSplit.to_string(),
        "range covers part of a huge mapping"
    );
    assert_eq!(
        crate::AccessError::Unmapped { gpa: gpa(0x1000) }.to_string(),
        "guest address 0x1000 is not mapped"
    );
    assert_eq!(
        crate::AddrSpaceError::Overlap {
            existing: gpa(0x4000_0000)
        }
        .to_string(),
        "overlaps the region at 0x40000000"
    );
    assert_eq!(
        crate::AddrSpaceError::Paging(crate::PagingError::NoMemory).to_string(),
        "frame allocator out of memory"
    );
}
