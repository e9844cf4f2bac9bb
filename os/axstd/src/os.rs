//! Facts about the machine, for banners and policy.

pub use axconfig::dtb::{IntcInfo, PlatformInfo};
pub use axconfig::memmap::MemRange;
pub use axconfig::{MAX_CPUS, PLATFORM};
pub use axhal::platform::{info as platform_info, kernel_range};

/// The architecture the image was built for.
pub const ARCH: &str = if cfg!(target_arch = "aarch64") {
    "aarch64"
} else if cfg!(target_arch = "riscv64") {
    "riscv64"
} else {
    "x86_64"
};

/// Free RAM handed to the allocator at boot.
pub fn free_memory() -> axconfig::memmap::RangeList {
    axhal::platform::free_memory().unwrap_or_default()
}

/// Heap and frame usage now.
pub fn memory_stats() -> axalloc::HeapStats {
    crate::rt::ALLOCATOR.stats()
}

/// Powers the machine off.
pub fn shutdown() -> ! {
    axhal::power::shutdown()
}
