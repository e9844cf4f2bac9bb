//! The firmware device tree, parsed once at boot (on x86_64: the summary built from
//! multiboot and ACPI), and the hypervisor image's own extent.

use axconfig::dtb::PlatformInfo;
use axconfig::memmap::{MemRange, RangeList};
use spin::Once;

static INFO: Once<PlatformInfo> = Once::new();
static BLOB: Once<&'static [u8]> = Once::new();

/// What the firmware DTB says. Panics if called before the architecture code parsed it
/// (which happens before the runtime starts).
pub fn info() -> &'static PlatformInfo {
    INFO.get()
        .expect("platform info read before boot parsed the DTB")
}

/// Keeps the platform summary the x86_64 boot built from multiboot and ACPI.
#[cfg(target_arch = "x86_64")]
pub(crate) fn init_info(info: PlatformInfo) -> &'static PlatformInfo {
    INFO.call_once(|| info)
}

/// Parses the firmware DTB at physical address `addr` (handed over in register `reg`, at most
/// `max_size` bytes readable there) and keeps the result. Stops the machine with a clear
/// message when there is no usable DTB.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn init_from_dtb(addr: usize, reg: &str, max_size: usize) -> &'static PlatformInfo {
    let fatal = crate::power::fatal;
    if addr == 0 || !addr.is_multiple_of(8) {
        fatal(format_args!("no device tree ({reg} = {addr:#x})"));
    }
    // SAFETY: the firmware put a DTB at `addr` in RAM that the caller has mapped (or that is
    // reachable untranslated); the 8-byte header (magic, total size) is read first and the
    // size is checked against what the caller can read.
    let header = unsafe { core::slice::from_raw_parts(addr as *const u8, 8) };
    let total = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if u32::from_be_bytes([header[0], header[1], header[2], header[3]]) != 0xd00d_feed
        || !(64..=max_size).contains(&total)
    {
        fatal(format_args!("{reg} = {addr:#x} is not a device tree"));
    }
    // SAFETY: as above, for the blob's declared size, now known to be within `max_size`.
    let blob = unsafe { core::slice::from_raw_parts(addr as *const u8, total) };
    let info = PlatformInfo::parse(blob, addr)
        .unwrap_or_else(|e| fatal(format_args!("device tree at {addr:#x}: {e}")));
    BLOB.call_once(|| blob);
    INFO.call_once(|| info)
}

/// The firmware DTB itself (kept out of the allocator's memory, see [`free_memory`]), for
/// looking up what [`info`] does not keep, such as the node of a device passed through to
/// a guest. Empty before boot parsed it.
pub fn dtb_blob() -> &'static [u8] {
    BLOB.get().copied().unwrap_or(&[])
}

/// Physical range of the hypervisor image, BSS and the [`image_payload`] included.
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
    let payload = image_payload();
    let end = e.max(payload.as_ptr() as usize + payload.len());
    MemRange::from_bounds(s, end)
}

/// The magic number of the image payload's header: "AXPAYLD1", little-endian.
const PAYLOAD_MAGIC: u64 = u64::from_le_bytes(*b"AXPAYLD1");
/// A header claiming more than this is not believed.
const PAYLOAD_MAX: u64 = 1 << 30;

// The image payload's header, the last 16 bytes of the linked image (linker section
// `.payload`): the magic number and the length of the bytes that follow it, 0 as linked.
// Writable data, so that it shares the segment of the BSS before it and the file holds that
// segment as one block (the x86_64 loader copies the image as one).
core::arch::global_asm!(
    ".pushsection .payload, \"aw\"",
    ".balign 8",
    ".global axhal_payload_header",
    "axhal_payload_header:",
    ".ascii \"AXPAYLD1\"",
    ".quad 0",
    ".popsection",
);

/// The bytes attached to the image after it was linked, empty when none: `cargo xtask build
/// --vms` attaches the VM set (see the `axvmpack` crate) after the payload header at the
/// image's end and grows the image's last segment (and its size fields) by them, so the
/// loader places them right after the header. [`kernel_range`] covers them: the frame
/// allocator never hands them out.
pub fn image_payload() -> &'static [u8] {
    extern "C" {
        static axhal_payload_header: [u64; 2];
    }
    let header = core::ptr::addr_of!(axhal_payload_header);
    // SAFETY: the header is 16 bytes of the loaded image, 8-aligned (the linker keeps section
    // `.payload`). Read volatile: cargo xtask fills it after linking, so the value the
    // compiler saw (no payload) must not be assumed.
    let [magic, len] = unsafe { header.read_volatile() };
    if magic != PAYLOAD_MAGIC || len > PAYLOAD_MAX {
        // No payload (on x86_64 the loader zeroed the header of a plain image).
        return &[];
    }
    // SAFETY: an image with this header holds `len` bytes right after it: cargo xtask put
    // them there, inside the image's last loaded segment, and kernel_range keeps them out of
    // the allocator, so they stay as loaded (nothing writes them) for the whole run.
    unsafe { core::slice::from_raw_parts(header.add(1).cast::<u8>(), len as usize) }
}

/// RAM free for the allocator: the DTB's memory minus reservations, the DTB and this image.
pub fn free_memory() -> Result<RangeList, axconfig::dtb::DtbError> {
    info().free_memory(&[kernel_range()])
}
