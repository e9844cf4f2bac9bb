//! The host device-tree parser (`axconfig::dtb`): any blob as the firmware's DTB, and
//! every query the hypervisor makes on the summary.

use axconfig::dtb::{device_within, PlatformInfo};

/// Runs one input.
pub fn run(data: &[u8]) {
    // Device lookups of the kinds the VMM makes (a passthrough window), anywhere.
    for (base, size) in [
        (0, u64::MAX),
        (0x0800_0000, 0x0100_0000),
        (0x900_0000, 0x1000),
    ] {
        if let Some(dev) = device_within(data, base, size) {
            let _ = dev.compatible().count();
        }
    }
    let info = match PlatformInfo::parse(data, 0x4000_0000) {
        Ok(info) => info,
        Err(err) => {
            let _ = err.to_string();
            return;
        }
    };
    if let Ok(free) = info.free_memory(&[]) {
        let free_bytes: u128 = free.iter().map(|r| r.size as u128).sum();
        let ram: u128 = info.memory.iter().map(|r| r.size as u128).sum();
        assert!(free_bytes <= ram, "more free memory than RAM");
    }
    let _ = info.bootarg("log");
    for cpu in &info.cpus {
        let _ = info.cpu_index(cpu.hw_id);
    }
    let _ = info.memory_size();
    let _ = format!("{info:?}");
}
