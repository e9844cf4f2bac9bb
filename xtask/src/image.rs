//! Building the hypervisor image (plain, or with VMs built in), and turning ELF files into
//! flat binaries: the aarch64 hypervisor into the raw arm64 Image that QEMU's `-kernel`
//! loads with a DTB pointer in x0, and the test guests into the images VMs load.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::arch::Arch;
use crate::elf::{self, slice, ProgramHeader};
use crate::vmset::VmSet;
use crate::{guests, util};

/// The crate (and binary) name of the hypervisor.
pub const HYPERVISOR_PACKAGE: &str = "axvisor";

/// Offset of the arm64 Image header's magic number.
const ARM64_MAGIC_OFFSET: usize = 0x38;
/// The arm64 Image header's magic number, "ARM\x64".
const ARM64_MAGIC: &[u8; 4] = b"ARM\x64";
/// Refuse to write flat images larger than this (a sign of a bad link address).
const MAX_FLAT_IMAGE: u64 = 256 << 20;

/// The ELF the build produces for `arch`.
pub fn elf_path(arch: Arch) -> PathBuf {
    util::target_dir()
        .join(arch.triple())
        .join("release")
        .join(HYPERVISOR_PACKAGE)
}

/// The directory of built hypervisor images: `target/images`.
pub fn variant_dir() -> PathBuf {
    util::target_dir().join("images")
}

/// A built hypervisor image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HvImage {
    /// The ELF (for a debugger).
    pub elf: PathBuf,
    /// The file the emulator boots: the flat binary on aarch64, the ELF elsewhere.
    pub boot: PathBuf,
}

/// `cargo xtask build`: builds the test guests for `arch`, then the hypervisor with the VMs
/// in `vms` (none: the plain image), and returns the image to boot.
pub fn build(arch: Arch, vms: &VmSet) -> Result<HvImage> {
    arch.ensure_supported()?;
    guests::build(arch)?;
    build_hypervisor(arch, vms)
}

/// Builds the hypervisor for `arch` (release profile) with the VMs in `vms` built in (the
/// guest images must already be built).
///
/// The hypervisor is compiled once per architecture: the VMs are packed (`axvmpack`) and
/// attached to the linked image ([`crate::attach`]), so an image with other VMs costs no
/// compiling. The image is written from cargo's output ([`elf_path`]), which the next build
/// (of this or another process) overwrites, to `target/images/<name>.elf` (and `.bin` on
/// aarch64): the name is `<arch>-plain` without VMs, else the VM set's variant name.
pub fn build_hypervisor(arch: Arch, vms: &VmSet) -> Result<HvImage> {
    arch.ensure_supported()?;
    crate::toolchain::ensure()?;
    let payload = if vms.is_empty() {
        None
    } else {
        let guest_dir = guests::image_dir(arch);
        crate::vmdisk::provide_real_guests(vms, arch, &guest_dir)?;
        println!("VMs: {vms}");
        Some(vms.pack(&guest_dir)?)
    };
    let mut cmd = util::cargo();
    cmd.args(["build", "-p", HYPERVISOR_PACKAGE, "--release", "--target"])
        .arg(arch.triple());
    util::run(cmd).with_context(|| format!("building the {arch} hypervisor"))?;
    let built = elf_path(arch);
    let linked = std::fs::read(&built)
        .with_context(|| format!("reading {} (the build's output)", built.display()))?;
    let dir = variant_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (name, bytes) = match &payload {
        None => (format!("{arch}-plain"), linked),
        Some(payload) => (
            vms.variant_name(arch),
            crate::attach::attach(&linked, arch, payload)
                .with_context(|| format!("attaching the VMs {vms} to {}", built.display()))?,
        ),
    };
    let elf = dir.join(format!("{name}.elf"));
    std::fs::write(&elf, &bytes).with_context(|| format!("writing {}", elf.display()))?;
    let boot = match arch {
        Arch::Aarch64 => elf.with_extension("bin"),
        _ => elf.clone(),
    };
    let image = HvImage { elf, boot };
    if arch == Arch::Aarch64 {
        write_flat_binary(&image.elf, &image.boot, Some(check_arm64_header))?;
    }
    println!("image: {}", image.boot.display());
    Ok(image)
}

/// A check of a flat binary before it is written, e.g. [`check_arm64_header`].
pub type ImageCheck = fn(&[u8]) -> Result<()>;

/// Converts the ELF at `elf` into a flat binary at `out` (see [`elf_to_flat_binary`]),
/// first checking the result with `check` if given.
pub fn write_flat_binary(elf: &Path, out: &Path, check: Option<ImageCheck>) -> Result<()> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let flat =
        elf_to_flat_binary(&bytes).with_context(|| format!("converting {}", elf.display()))?;
    if let Some(check) = check {
        check(&flat).with_context(|| format!("checking the image made from {}", elf.display()))?;
    }
    std::fs::write(out, &flat).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Fails unless `image` starts with an arm64 Image header (magic "ARM\x64" at 0x38).
pub fn check_arm64_header(image: &[u8]) -> Result<()> {
    let magic = image.get(ARM64_MAGIC_OFFSET..ARM64_MAGIC_OFFSET + 4);
    if magic != Some(&ARM64_MAGIC[..]) {
        bail!(
            "no arm64 Image header: expected the magic bytes \"ARM\\x64\" at offset {ARM64_MAGIC_OFFSET:#x} \
             (the kernel's first 64 bytes must be the arm64 boot header, see Linux's \
             Documentation/arch/arm64/booting.rst)"
        );
    }
    Ok(())
}

/// Lays out the file contents of an ELF64 little-endian file's `PT_LOAD` segments by
/// physical address: the result starts at the lowest `p_paddr`, gaps are zero, and it ends
/// at the end of the last segment's file contents (`.bss` is left to the kernel).
pub fn elf_to_flat_binary(elf: &[u8]) -> Result<Vec<u8>> {
    let segments = load_segments(elf)?;
    ensure!(
        !segments.is_empty(),
        "the ELF has no PT_LOAD segment with file contents"
    );
    let base = segments.iter().map(|s| s.paddr).min().unwrap_or(0);
    let mut end = 0u64;
    for s in &segments {
        let seg_end = (s.paddr - base)
            .checked_add(s.filesz)
            .context("segment end overflows")?;
        end = end.max(seg_end);
    }
    ensure!(
        end <= MAX_FLAT_IMAGE,
        "the segments span {end:#x} bytes from {base:#x}, more than {MAX_FLAT_IMAGE:#x}: \
         are the physical load addresses (p_paddr) far apart?"
    );
    let mut flat = vec![0u8; end as usize];
    for s in &segments {
        let src = slice(elf, s.offset, s.filesz)
            .with_context(|| format!("segment at paddr {:#x} lies outside the file", s.paddr))?;
        let start = (s.paddr - base) as usize;
        flat[start..start + src.len()].copy_from_slice(src);
    }
    Ok(flat)
}

/// The `PT_LOAD` segments of an ELF64 little-endian file that have file contents.
pub(crate) fn load_segments(elf: &[u8]) -> Result<Vec<ProgramHeader>> {
    let h = elf::header(elf)?;
    Ok(elf::program_headers(elf, &h)?
        .into_iter()
        .filter(|p| p.kind == elf::PT_LOAD && p.filesz > 0)
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an ELF64 LE file whose program headers are `(p_type, paddr, data, memsz)`.
    pub(crate) fn synthetic_elf(segments: &[(u32, u64, &[u8], u64)]) -> Vec<u8> {
        let phoff = 64u64;
        let mut data_off = phoff + 56 * segments.len() as u64;
        let mut elf = vec![0u8; 64];
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // ELFCLASS64
        elf[5] = 1; // ELFDATA2LSB
        elf[6] = 1; // EV_CURRENT
        elf[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        let mut payload = Vec::new();
        for &(p_type, paddr, data, memsz) in segments {
            let mut ph = vec![0u8; 56];
            ph[0..4].copy_from_slice(&p_type.to_le_bytes());
            ph[8..16].copy_from_slice(&data_off.to_le_bytes());
            ph[16..24].copy_from_slice(&(paddr + 0xffff_0000_0000_0000).to_le_bytes()); // vaddr
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            elf.extend_from_slice(&ph);
            payload.extend_from_slice(data);
            data_off += data.len() as u64;
        }
        elf.extend_from_slice(&payload);
        elf
    }

    fn arm64_header() -> Vec<u8> {
        let mut h = vec![0xaa; 64];
        h[0x38..0x3c].copy_from_slice(b"ARM\x64");
        h
    }

    #[test]
    fn segments_are_placed_by_paddr_with_zero_gaps() {
        let text = arm64_header();
        let data = [1u8, 2, 3, 4];
        // Out of order on purpose, plus a non-load segment and a .bss-only segment.
        let elf = synthetic_elf(&[
            (1, 0x4008_0100, &data, 4),
            (6, 0x1000, b"ignored", 7), // PT_PHDR
            (1, 0x4008_0000, &text, 64),
            (1, 0x4008_0200, &[], 0x1000), // .bss: no file contents
        ]);
        let flat = elf_to_flat_binary(&elf).unwrap();
        assert_eq!(flat.len(), 0x104);
        assert_eq!(&flat[..64], &text[..]);
        assert!(flat[64..0x100].iter().all(|&b| b == 0));
        assert_eq!(&flat[0x100..], &data);
        check_arm64_header(&flat).unwrap();
    }

    #[test]
    fn missing_arm64_magic_is_reported() {
        let elf = synthetic_elf(&[(1, 0x4008_0000, &[0u8; 64], 64)]);
        let flat = elf_to_flat_binary(&elf).unwrap();
        let err = check_arm64_header(&flat).unwrap_err().to_string();
        assert!(err.contains("ARM\\x64"), "{err}");
        assert!(check_arm64_header(&[0u8; 16]).is_err());
    }

    #[test]
    fn bad_elves_are_errors_not_panics() {
        assert!(elf_to_flat_binary(b"").is_err());
        assert!(elf_to_flat_binary(b"MZ\0\0 not an elf").is_err());
        let mut elf = synthetic_elf(&[(1, 0x1000, &[1, 2, 3], 3)]);
        // Truncate the segment contents.
        elf.truncate(elf.len() - 2);
        let err = format!("{:#}", elf_to_flat_binary(&elf).unwrap_err());
        assert!(err.contains("outside the file"), "{err}");
        // A program header table pointing past the end.
        let mut elf = synthetic_elf(&[(1, 0x1000, &[1], 1)]);
        elf[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(elf_to_flat_binary(&elf).is_err());
        // Segments 1 GiB apart.
        let far = synthetic_elf(&[(1, 0x0, &[1], 1), (1, 0x4000_0000, &[2], 1)]);
        assert!(elf_to_flat_binary(&far).is_err());
        // No loadable contents.
        let empty = synthetic_elf(&[(1, 0x1000, &[], 16)]);
        assert!(elf_to_flat_binary(&empty).is_err());
    }
}
