//! The DSDT's AML, generated: `\_S5` and, for each virtio-mmio device of the VM, a device
//! Linux's `virtio_mmio` driver binds to by its ACPI ID ([`VIRTIO_MMIO_HID`]), as it does on
//! Arm servers:
//!
//! ```text
//! Name (_S5, Package (4) { 5, 0, 0, 0 })
//! Scope (\_SB) {
//!     Device (V000) {
//!         Name (_HID, "LNRO0005")
//!         Name (_UID, 0)
//!         Name (_CRS, ResourceTemplate () {
//!             Memory32Fixed (ReadWrite, <base>, 0x200)
//!             Interrupt (ResourceConsumer, Level, ActiveHigh, Shared) { <gsi> }
//!         })
//!     }
//!     ...
//! }
//! ```
//!
//! Encodings from the ACPI specification (6.5): §20 (AML grammar: `NameOp` 0x08,
//! `ScopeOp` 0x10, `BufferOp` 0x11, `PackageOp` 0x12, `DeviceOp` 0x5B 0x82, `PkgLength`),
//! §6.4 (resource descriptors: 32-bit fixed memory range 0x86, extended interrupt 0x89,
//! end tag 0x79).

use alloc::vec::Vec;

use crate::acpi::{VirtioMmioDesc, S5_SLP_TYP};

/// The ACPI hardware ID of a virtio-mmio device (the one Linux's `virtio_mmio` matches).
pub const VIRTIO_MMIO_HID: &str = "LNRO0005";

/// `Name (_S5, Package (4) { 5, 0, 0, 0 })`: `SLP_TYPa` 5 for S5 (power off).
pub const S5_AML: [u8; 13] = [
    0x08,
    b'_',
    b'S',
    b'5',
    b'_', // NameOp "_S5_"
    0x12,
    0x07,
    0x04, // PackageOp, PkgLength 7, 4 elements
    0x0A,
    S5_SLP_TYP as u8, // BytePrefix 5 (SLP_TYPa)
    0x00,
    0x00,
    0x00, // SLP_TYPb and two reserved, Zero
];

/// The most devices [`dsdt`] names (`V000`..`VFFF`).
pub const MAX_DEVICES: usize = 0x1000;

/// Extended interrupt flags: consumer (bit 0), level-triggered (bit 1 clear), active high
/// (bit 2 clear), shared (bit 3).
const INTERRUPT_FLAGS: u8 = 0b1001;

/// The DSDT's AML for `virtio` devices (at most [`MAX_DEVICES`]; each base and size below
/// 4 GiB: the caller checks).
pub fn dsdt(virtio: &[VirtioMmioDesc]) -> Vec<u8> {
    let mut aml = Vec::from(S5_AML);
    if virtio.is_empty() {
        return aml;
    }
    let mut scope = Vec::from(*b"\\_SB_");
    for (uid, d) in virtio.iter().enumerate() {
        scope.extend_from_slice(&device(uid, d));
    }
    aml.push(0x10); // ScopeOp
    aml.extend_from_slice(&pkg_length(scope.len()));
    aml.extend_from_slice(&scope);
    aml
}

/// `Device (Vnnn) { _HID, _UID, _CRS }` for device `uid`.
fn device(uid: usize, d: &VirtioMmioDesc) -> Vec<u8> {
    let hex = |shift: usize| b"0123456789ABCDEF"[(uid >> shift) & 0xF];
    let mut body = Vec::from([b'V', hex(8), hex(4), hex(0)]);
    body.extend_from_slice(b"\x08_HID\x0D");
    body.extend_from_slice(VIRTIO_MMIO_HID.as_bytes());
    body.push(0);
    body.extend_from_slice(b"\x08_UID");
    body.extend_from_slice(&integer(uid as u64));
    // The resource template: fixed memory range, extended interrupt, end tag.
    let mut res = Vec::from([0x86, 9, 0, 1]); // 32-bit fixed memory range, read-write
    res.extend_from_slice(&(d.base as u32).to_le_bytes());
    res.extend_from_slice(&(d.size as u32).to_le_bytes());
    res.extend_from_slice(&[0x89, 6, 0, INTERRUPT_FLAGS, 1]); // extended interrupt, 1 entry
    res.extend_from_slice(&d.gsi.to_le_bytes());
    res.extend_from_slice(&[0x79, 0]); // end tag, checksum 0 (none)
    let mut buffer = integer(res.len() as u64);
    buffer.extend_from_slice(&res);
    body.extend_from_slice(b"\x08_CRS\x11");
    body.extend_from_slice(&pkg_length(buffer.len()));
    body.extend_from_slice(&buffer);
    let mut dev = Vec::from([0x5B, 0x82]); // DeviceOp
    dev.extend_from_slice(&pkg_length(body.len()));
    dev.extend_from_slice(&body);
    dev
}

/// An integer constant: `BytePrefix`, `WordPrefix`, `DWordPrefix` or `QWordPrefix` and its
/// value, little-endian.
pub fn integer(n: u64) -> Vec<u8> {
    let (prefix, len) = match n {
        0..=0xFF => (0x0A, 1),
        0x100..=0xFFFF => (0x0B, 2),
        0x1_0000..=0xFFFF_FFFF => (0x0C, 4),
        _ => (0x0E, 8),
    };
    let mut v = Vec::from([prefix]);
    v.extend_from_slice(&n.to_le_bytes()[..len]);
    v
}

/// The `PkgLength` of a package whose contents after it are `body` bytes long: the length
/// counts its own bytes too; one byte up to 63, else a lead byte (how many follow in bits
/// 6..8, the low four bits of the length) and up to three more bytes.
pub fn pkg_length(body: usize) -> Vec<u8> {
    if body < 63 {
        return Vec::from([(body + 1) as u8]);
    }
    let extra = if body + 2 < 1 << 12 {
        1
    } else if body + 3 < 1 << 20 {
        2
    } else {
        3
    };
    let total = body + 1 + extra;
    let mut v = Vec::from([((extra as u8) << 6) | (total & 0xF) as u8]);
    for i in 0..extra {
        v.push((total >> (4 + 8 * i)) as u8);
    }
    v
}
