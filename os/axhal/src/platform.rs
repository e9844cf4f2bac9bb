//! The firmware device tree, parsed once at boot, and the hypervisor image's own extent.

use axconfig::dtb::PlatformInfo;
use axconfig::memmap::{MemRange, RangeList};
use spin::Once;

static INFO: Once<PlatformInfo> = Once::new();

/// What the firmware DTB says. Panics if called before the architecture code parsed it
/// (which happens before the runtime starts).
pub fn info() -> &'static PlatformInfo {
    INFO.get()
        .expect("platform info read before boot parsed the DTB")
}

pub(crate) fn set_info(info: PlatformInfo) -> &'static PlatformInfo {
    INFO.call_once(|| info)
}

/// Physical range of the hypervisor image, BSS included.
pub fn kernel_range() -> MemRange {
    extern "C" {
        static _skernel: u8;
        static _ekernel: u8;
    }
    // Linker-script symbols: only their addresses are taken.
    let (s, e) = (
        core::ptr::addr_of!(_skernel) as usize,
        core::ptr::addr_of!(_ekernel) as usize,
    );
    MemRange::from_bounds(s, e)
}

/// RAM free for the allocator: the DTB's memory minus reservations, the DTB and this image.
pub fn free_memory() -> Result<RangeList, axconfig::dtb::DtbError> {
    info().free_memory(&[kernel_range()])
}
