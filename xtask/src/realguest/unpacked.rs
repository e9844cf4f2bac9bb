//! The x86_64 kernel already decompressed: `bzImage-unpacked`, made on the host from the
//! cached Debian bzImage, for the scenarios where the kernel's own XZ decompression would be
//! most of the boot (under Bochs it is 4.7 G emulated instructions, about 80 CPU-seconds;
//! docs/x86-linux.md).
//!
//! It is still a bzImage the hypervisor boots like any other (`format = "linux-bzimage"`,
//! entered at `load_addr + 0x200` with RSI = the zero page): Debian's setup sectors with
//! six header fields changed, then a protected-mode part that is 0x200 zero bytes and the
//! decompressed kernel (the `vmlinux` ELF's `PT_LOAD` segments laid out by physical
//! address, without the zero bytes at their end: `.bss`, `.brk` and `.init.scratch`, 23 of
//! Debian's 58 MB; the VM's RAM is zero when it is created and Linux clears `.bss` and
//! `.brk` itself). Loaded at the kernel's physical address minus 0x200, its 64-bit entry is
//! the kernel's own `startup_64` at that physical address, which is where Debian's
//! decompressor would have jumped after writing the same bytes there, with the same RSI.
//! The footprint (load address + `init_size`) ends where the original's does, so the
//! memory the kernel's zero tail needs stays the kernel's.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use axbootx86::bzimage::ENTRY_64_OFFSET;
use axbootx86::BzImage;

use crate::elf::{self, read_u32, read_u64};
use crate::image;

/// The unpacked kernel's file name in the x86_64 cache directory.
pub const UNPACKED_FILE: &str = "bzImage-unpacked";

/// Setup-header fields (offsets from the start of the file, Linux
/// `Documentation/arch/x86/boot.rst`) this reads or rewrites.
mod off {
    /// `syssize` (u32): the protected-mode part's size in 16-byte paragraphs.
    pub const SYSSIZE: usize = 0x1F4;
    /// `payload_offset` (u32): the compressed kernel, from the protected-mode part's start.
    pub const PAYLOAD_OFFSET: usize = 0x248;
    /// `payload_length` (u32).
    pub const PAYLOAD_LENGTH: usize = 0x24C;
    /// `pref_address` (u64).
    pub const PREF_ADDRESS: usize = 0x258;
    /// `init_size` (u32).
    pub const INIT_SIZE: usize = 0x260;
    /// `kernel_info_offset` (u32, protocol 2.15): into the decompressor, which is gone.
    pub const KERNEL_INFO_OFFSET: usize = 0x268;
}

/// `e_entry` in an ELF64 header.
const ELF_ENTRY: u64 = 0x18;

/// The compressed kernel of `bzimage` (its XZ stream, as `payload_offset` and
/// `payload_length` give it, without the 4 bytes the kernel's build appends) and the size
/// those 4 bytes give the decompressed kernel.
pub fn payload(bzimage: &[u8]) -> Result<(&[u8], u32)> {
    let image = BzImage::parse(bzimage).map_err(|e| anyhow::anyhow!("not a bzImage: {e}"))?;
    let offset = read_u32(bzimage, off::PAYLOAD_OFFSET as u64)?;
    let len = read_u32(bzimage, off::PAYLOAD_LENGTH as u64)?;
    ensure!(len > 4, "the bzImage has no payload (payload_length {len})");
    let payload = elf::slice(image.kernel(), offset.into(), len.into())
        .context("payload_offset and payload_length point past the protected-mode kernel")?;
    let (stream, size) = payload.split_at(payload.len() - 4);
    let size = read_u32(size, 0)?;
    Ok((stream, size))
}

/// The unpacked bzImage of `bzimage`, whose payload decompressed is `vmlinux` (its trailing
/// zero bytes left out): checks that
/// `vmlinux` starts at its entry (`startup_64`) where the bzImage loads its kernel, and
/// that its segments fit the bzImage's footprint (load address + `init_size`, which the
/// unpacked image keeps).
pub fn repack(bzimage: &[u8], vmlinux: &[u8]) -> Result<Vec<u8>> {
    let image = BzImage::parse(bzimage).map_err(|e| anyhow::anyhow!("not a bzImage: {e}"))?;
    let base = image::load_segments(vmlinux)?
        .iter()
        .map(|s| s.paddr)
        .min()
        .context("the vmlinux has no PT_LOAD segment with file contents")?;
    let entry = read_u64(vmlinux, ELF_ENTRY)?;
    ensure!(
        entry == base,
        "the vmlinux's entry {entry:#x} is not its first byte {base:#x} (startup_64)"
    );
    ensure!(
        base == image.load_address(),
        "the vmlinux is linked for {base:#x}, but the bzImage loads its kernel at {:#x}",
        image.load_address()
    );
    let mut kernel = image::elf_to_flat_binary(vmlinux)?;
    let nonzero = kernel.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    kernel.truncate(nonzero);
    let load = base - ENTRY_64_OFFSET;
    let end = image.footprint().end;
    let len = ENTRY_64_OFFSET + kernel.len() as u64;
    ensure!(
        load + len <= end,
        "the decompressed kernel ends at {:#x}, past the bzImage's footprint (load address + init_size) {end:#x}",
        load + len
    );
    let mut out = bzimage[..image.setup_len()].to_vec();
    let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
    put(off::SYSSIZE, &(len.div_ceil(16) as u32).to_le_bytes());
    put(off::PAYLOAD_OFFSET, &0u32.to_le_bytes());
    put(off::PAYLOAD_LENGTH, &0u32.to_le_bytes());
    put(off::PREF_ADDRESS, &load.to_le_bytes());
    put(off::INIT_SIZE, &((end - load) as u32).to_le_bytes());
    put(off::KERNEL_INFO_OFFSET, &0u32.to_le_bytes());
    out.resize(out.len() + ENTRY_64_OFFSET as usize, 0);
    out.extend_from_slice(&kernel);
    let check = BzImage::parse(&out).map_err(|e| anyhow::anyhow!("the unpacked bzImage: {e}"))?;
    ensure!(
        check.load_address() == load && check.entry_64() == base,
        "the unpacked bzImage loads at {:#x} (entry {:#x}), not {load:#x} (entry {base:#x})",
        check.load_address(),
        check.entry_64()
    );
    Ok(out)
}

/// `dir/bzImage-unpacked`, made from `bzimage` (the cached Debian kernel) when it is
/// missing or older than `bzimage`: the payload is decompressed with `xz` (about 1 s).
pub fn ensure(bzimage: &Path, dir: &Path) -> Result<PathBuf> {
    let out = dir.join(UNPACKED_FILE);
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(made), Some(source)) = (modified(&out), modified(bzimage)) {
        if made >= source {
            return Ok(out);
        }
    }
    let data = fs::read(bzimage).with_context(|| format!("reading {}", bzimage.display()))?;
    let (stream, size) = payload(&data).with_context(|| format!("{}", bzimage.display()))?;
    let xz = dir.join(format!("{UNPACKED_FILE}.xz.tmp"));
    super::write_atomically(&xz, stream)?;
    let vmlinux = super::decompress("xz", &xz);
    fs::remove_file(&xz).with_context(|| format!("removing {}", xz.display()))?;
    let vmlinux = vmlinux?;
    ensure!(
        vmlinux.len() as u64 == u64::from(size),
        "{}: the payload decompressed to {} bytes, but its trailer says {size}",
        bzimage.display(),
        vmlinux.len()
    );
    let unpacked =
        repack(&data, &vmlinux).with_context(|| format!("unpacking {}", bzimage.display()))?;
    super::write_atomically(&out, &unpacked)?;
    println!(
        "x86_64: {} made: the kernel decompressed, {:.1} MB",
        out.display(),
        unpacked.len() as f64 / 1e6
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::synthetic_elf;

    /// A bzImage head (4 setup sectors, protocol 2.15, 64-bit entry) loading its kernel at
    /// `pref` with `init_size`, whose protected-mode part is `payload` at offset 0x10.
    fn bzimage(pref: u64, init_size: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 5 * 512];
        f[0x1F1] = 4;
        f[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
        f[0x201] = 0x6A; // the header ends at 0x26C
        f[0x202..0x206].copy_from_slice(b"HdrS");
        f[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
        f[0x211] = 1; // LOADED_HIGH
        f[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // XLF_KERNEL_64
        f[0x248..0x24C].copy_from_slice(&0x10u32.to_le_bytes());
        f[0x24C..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        f[0x258..0x260].copy_from_slice(&pref.to_le_bytes());
        f[0x260..0x264].copy_from_slice(&init_size.to_le_bytes());
        f[0x268..0x26C].copy_from_slice(&0x40u32.to_le_bytes());
        let mut kernel = vec![0u8; 0x10];
        kernel.extend_from_slice(payload);
        f[0x1F4..0x1F8].copy_from_slice(&(kernel.len().div_ceil(16) as u32).to_le_bytes());
        f.extend_from_slice(&kernel);
        f
    }

    /// A vmlinux entered at `entry`, with text at `base` and data 0x3000 above it (ending
    /// in two zero bytes, as `.bss` does).
    fn vmlinux(base: u64, entry: u64) -> Vec<u8> {
        let mut elf = synthetic_elf(&[(1, base, b"TEXT", 4), (1, base + 0x3000, b"DATA\0\0", 6)]);
        elf[0x18..0x20].copy_from_slice(&entry.to_le_bytes());
        elf
    }

    #[test]
    fn payload_without_its_size_trailer() {
        let bz = bzimage(0x100_0000, 0x10_0000, b"XZXZ\x04\x03\x02\x01");
        assert_eq!(payload(&bz).unwrap(), (&b"XZXZ"[..], 0x0102_0304));
        let none = bzimage(0x100_0000, 0x10_0000, b"");
        assert!(payload(&none)
            .unwrap_err()
            .to_string()
            .contains("no payload"));
    }

    #[test]
    fn repacked_kernel_is_entered_at_startup_64() {
        let bz = bzimage(0x100_0000, 0x10_0000, b"XZXZ\x04\x03\x02\x01");
        let out = repack(&bz, &vmlinux(0x100_0000, 0x100_0000)).unwrap();
        let image = BzImage::parse(&out).unwrap();
        assert_eq!(image.load_address(), 0xFF_FE00);
        assert_eq!(image.entry_64(), 0x100_0000);
        // The footprint ends where the original's does.
        assert_eq!(image.footprint().end, 0x110_0000);
        let kernel = image.kernel();
        assert_eq!(&kernel[0x200..0x204], b"TEXT");
        assert_eq!(&kernel[0x3200..0x3204], b"DATA");
        assert_eq!(kernel.len(), 0x3204, "the trailing zeros are left out");
        assert_eq!(read_u32(&out, off::PAYLOAD_LENGTH as u64).unwrap(), 0);
        assert_eq!(read_u32(&out, off::KERNEL_INFO_OFFSET as u64).unwrap(), 0);
    }

    #[test]
    fn repack_refuses_what_would_not_boot() {
        let bz = bzimage(0x100_0000, 0x10_0000, b"XZXZ\x04\x03\x02\x01");
        let e = repack(&bz, &vmlinux(0x100_0000, 0x100_0040)).unwrap_err();
        assert!(e.to_string().contains("startup_64"), "{e}");
        let e = repack(&bz, &vmlinux(0x200_0000, 0x200_0000)).unwrap_err();
        assert!(e.to_string().contains("linked for 0x2000000"), "{e}");
        let small = bzimage(0x100_0000, 0x2000, b"XZXZ\x04\x03\x02\x01");
        let e = repack(&small, &vmlinux(0x100_0000, 0x100_0000)).unwrap_err();
        assert!(
            e.to_string().contains("past the bzImage's footprint"),
            "{e}"
        );
    }
}
