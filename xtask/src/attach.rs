//! Attaching bytes to a linked hypervisor image without building it again: `cargo xtask
//! build --vms` packs the VM set (`axvmpack`) and puts it after the image payload header,
//! the image's last 16 bytes in memory (axhal's linker section `.payload`: the magic
//! `AXPAYLD1` and the length of what follows, 0 as linked), where the hypervisor finds it
//! at boot (`axhal::platform::image_payload`).
//!
//! The ELF file is edited: the bytes are inserted right after the header, which ends the
//! image's last loaded segment; that segment grows by them, and every later file offset
//! (the sections that are not loaded: debug information, symbols; the section header
//! table) moves by the inserted size. The image's own size fields follow: the arm64 Image
//! header's `image_size` (aarch64) and the multiboot header's load and BSS end addresses
//! (x86_64, whose loader copies the image from the file as one block).

use anyhow::{bail, ensure, Context, Result};

use crate::arch::Arch;
use crate::elf::{self, read_u32, read_u64, slice, PT_LOAD};

/// The name of the section holding the payload header.
const PAYLOAD_SECTION: &[u8] = b".payload";
/// The payload header's magic number.
const PAYLOAD_MAGIC: &[u8; 8] = b"AXPAYLD1";
/// The payload header's size: the magic and the length.
const HEADER_LEN: u64 = 16;
/// The inserted bytes are padded to a multiple of this, so that everything after them in
/// the file keeps its alignment.
const INSERT_ALIGN: u64 = 4096;
/// Where the multiboot loader looks for the multiboot header: the file's first 8 KiB.
const MULTIBOOT_SEARCH: usize = 8192;
const MULTIBOOT_MAGIC: u32 = 0x1bad_b002;
/// Multiboot flag: the header's address fields are valid (the a.out kludge).
const MULTIBOOT_ADDRESSES: u32 = 1 << 16;
/// Offset of the arm64 Image header's `image_size` field.
const ARM64_IMAGE_SIZE_OFFSET: u64 = 0x10;

/// Returns `elf` (a hypervisor image for `arch`, as linked) with `payload` attached after
/// its payload header, as described in the module documentation.
pub fn attach(elf: &[u8], arch: Arch, payload: &[u8]) -> Result<Vec<u8>> {
    let h = elf::header(elf)?;
    let header = elf::find_section(elf, &h, PAYLOAD_SECTION)?.context(
        "the image has no section .payload (axhal's linker script puts the payload header there)",
    )?;
    let bytes = slice(elf, header.offset, HEADER_LEN).context("section .payload")?;
    ensure!(
        &bytes[..8] == PAYLOAD_MAGIC,
        "section .payload does not start with the magic \"AXPAYLD1\""
    );
    let attached = read_u64(bytes, 8)?;
    ensure!(
        attached == 0,
        "the image already carries a payload ({attached} bytes)"
    );
    ensure!(
        header.size == HEADER_LEN,
        "section .payload holds {} bytes, not the {HEADER_LEN}-byte payload header",
        header.size
    );

    let at = header.offset + HEADER_LEN;
    let len = payload.len() as u64;
    let end = header.addr + HEADER_LEN + len;
    let segments = elf::program_headers(elf, &h)?;
    let loads = || segments.iter().filter(|s| s.kind == PT_LOAD);
    let last = loads()
        .find(|s| s.offset <= header.offset && s.offset + s.filesz == at)
        .context("no loaded segment ends with the payload header")?;
    ensure!(
        loads().all(|s| s.vaddr <= last.vaddr),
        "the payload header's segment is not the image's last in memory"
    );

    let pad = len.div_ceil(INSERT_ALIGN) * INSERT_ALIGN;
    let shift = |offset: u64| if offset >= at { offset + pad } else { offset };
    let at_usize = usize::try_from(at)?;
    let mut out = Vec::with_capacity(elf.len() + usize::try_from(pad)?);
    out.extend_from_slice(&elf[..at_usize]);
    out.extend_from_slice(payload);
    out.resize(at_usize + usize::try_from(pad)?, 0);
    out.extend_from_slice(&elf[at_usize..]);

    put_u64(&mut out, header.offset + 8, len)?;
    put_u64(&mut out, 0x20, shift(h.phoff))?;
    put_u64(&mut out, 0x28, shift(h.shoff))?;
    for s in &segments {
        let ph = shift(s.at);
        put_u64(&mut out, ph + 8, shift(s.offset))?;
        if s.at == last.at {
            put_u64(&mut out, ph + 32, s.filesz + len)?;
            put_u64(&mut out, ph + 40, s.memsz.max(s.filesz + len))?;
        }
    }
    for s in elf::section_headers(elf, &h)? {
        let sh = shift(s.at);
        put_u64(&mut out, sh + 0x18, shift(s.offset))?;
        if s.at == header.at {
            put_u64(&mut out, sh + 0x20, s.size + len)?;
        }
    }

    match arch {
        Arch::Aarch64 => {
            let base = loads()
                .min_by_key(|s| s.vaddr)
                .context("no loaded segment")?;
            let image = slice(&out, base.offset, 0x40).context("the arm64 Image header")?;
            crate::image::check_arm64_header(image)?;
            put_u64(
                &mut out,
                base.offset + ARM64_IMAGE_SIZE_OFFSET,
                end - base.vaddr,
            )?;
        }
        Arch::X86_64 => set_multiboot_end(&mut out, last, end)?,
        Arch::Riscv64 => {}
    }
    Ok(out)
}

/// Sets the multiboot header's load and BSS end addresses of `elf` to `end`, after checking
/// that the file holds the image up to the segment `last` as one block (the loader copies
/// it from the file that way).
fn set_multiboot_end(elf: &mut [u8], last: &elf::ProgramHeader, end: u64) -> Result<()> {
    let search = &elf[..elf.len().min(MULTIBOOT_SEARCH)];
    let found = (0..search.len().saturating_sub(32))
        .step_by(4)
        .find(|&i| {
            let word = |k: usize| read_u32(search, (i + 4 * k) as u64).unwrap_or(0);
            word(0) == MULTIBOOT_MAGIC && word(0).wrapping_add(word(1)).wrapping_add(word(2)) == 0
        })
        .context("no multiboot header in the file's first 8 KiB")? as u64;
    ensure!(
        read_u32(elf, found + 4)? & MULTIBOOT_ADDRESSES != 0,
        "the multiboot header has no address fields (flag bit 16)"
    );
    let header_addr = u64::from(read_u32(elf, found + 12)?);
    let load_addr = u64::from(read_u32(elf, found + 16)?);
    let file_start = found
        .checked_sub(header_addr.wrapping_sub(load_addr))
        .context("the multiboot header's addresses put the image before the file's start")?;
    if last.offset.checked_sub(file_start) != last.vaddr.checked_sub(load_addr) {
        bail!(
            "the payload header's segment (file offset {:#x}, address {:#x}) is not where the \
             multiboot loader copies it from (the image from file offset {file_start:#x} is \
             loaded at {load_addr:#x} as one block)",
            last.offset,
            last.vaddr
        );
    }
    let end = u32::try_from(end).context("the image with its payload ends above 4 GiB")?;
    put_u32(elf, found + 20, end)?;
    put_u32(elf, found + 24, end)
}

fn put_u32(bytes: &mut [u8], offset: u64, value: u32) -> Result<()> {
    put(bytes, offset, &value.to_le_bytes())
}

fn put_u64(bytes: &mut [u8], offset: u64, value: u64) -> Result<()> {
    put(bytes, offset, &value.to_le_bytes())
}

fn put(bytes: &mut [u8], offset: u64, value: &[u8]) -> Result<()> {
    let start = usize::try_from(offset)?;
    bytes
        .get_mut(start..start + value.len())
        .with_context(|| format!("offset {start:#x} is past the end of the file"))?
        .copy_from_slice(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::elf_to_flat_binary;

    const TEXT_ADDR: u64 = 0x4008_0000;
    /// The second segment: 0x100 bytes of BSS, then the payload header.
    const DATA_ADDR: u64 = 0x4008_1000;
    const HEADER_ADDR: u64 = DATA_ADDR + 0x100;
    const SHSTRTAB: &[u8] = b"\0.text\0.payload\0.debug\0.shstrtab\0";

    fn put_at(file: &mut Vec<u8>, at: usize, bytes: &[u8]) {
        if file.len() < at + bytes.len() {
            file.resize(at + bytes.len(), 0);
        }
        file[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn fields(values: &[u64], sizes: &[usize]) -> Vec<u8> {
        values
            .iter()
            .zip(sizes)
            .flat_map(|(v, &n)| v.to_le_bytes()[..n].to_vec())
            .collect()
    }

    /// An image laid out as the linker lays out axvisor: the text segment (`head` first) at
    /// file offset 0x1000, the BSS-and-header segment at `data_offset`, then a section that
    /// is not loaded (`.debug`), the section name table and the section headers.
    fn image(head: &[u8], data_offset: u64) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        let ph = |kind: u64, offset, vaddr, size| {
            fields(
                &[kind, offset, vaddr, vaddr, size, size, 0x1000],
                &[8, 8, 8, 8, 8, 8, 8],
            )
        };
        put_at(&mut f, 64, &ph(PT_LOAD.into(), 0x1000, TEXT_ADDR, 0x100));
        put_at(
            &mut f,
            120,
            &ph(PT_LOAD.into(), data_offset, DATA_ADDR, 0x110),
        );
        put_at(&mut f, 176, &ph(0x6474_e551, 0, 0, 0)); // PT_GNU_STACK
        put_at(&mut f, 0x1000, head);
        put_at(&mut f, 0x1100, &[0]);
        let header = data_offset as usize + 0x100;
        put_at(&mut f, header, b"AXPAYLD1\0\0\0\0\0\0\0\0");
        let debug = f.len();
        put_at(&mut f, debug, b"debug info");
        let names = f.len();
        put_at(&mut f, names, SHSTRTAB);
        let shoff = f.len().next_multiple_of(8);
        let sh = |name: u64, kind: u64, addr: u64, offset: usize, size: usize| {
            fields(
                &[name, kind, 0, addr, offset as u64, size as u64, 0, 0, 0, 0],
                &[4, 4, 8, 8, 8, 8, 4, 4, 8, 8],
            )
        };
        let headers = [
            sh(0, 0, 0, 0, 0),
            sh(1, 1, TEXT_ADDR, 0x1000, 0x100),
            sh(7, 1, HEADER_ADDR, header, 16),
            sh(16, 1, 0, debug, 10),
            sh(23, 3, 0, names, SHSTRTAB.len()),
        ];
        put_at(&mut f, shoff, &headers.concat());
        let h = fields(&[shoff as u64], &[8]);
        put_at(&mut f, 0x28, &h);
        put_at(&mut f, 0x20, &fields(&[64], &[8]));
        put_at(&mut f, 0x36, &fields(&[56, 3, 64, 5, 4], &[2, 2, 2, 2, 2]));
        f
    }

    fn arm64_head() -> Vec<u8> {
        let mut h = vec![0u8; 0x40];
        h[0x38..0x3c].copy_from_slice(b"ARM\x64");
        h
    }

    /// A multiboot header with address fields, as axhal's x86_64 boot code has it.
    fn multiboot_head() -> Vec<u8> {
        let flags = 0x1_0003u32;
        let sum = 0u32.wrapping_sub(MULTIBOOT_MAGIC).wrapping_sub(flags);
        let words = [
            MULTIBOOT_MAGIC,
            flags,
            sum,
            TEXT_ADDR as u32,
            TEXT_ADDR as u32,
            (TEXT_ADDR + 0x100) as u32,
            (HEADER_ADDR + 16) as u32,
            TEXT_ADDR as u32,
        ];
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn section_bytes(elf: &[u8], name: &[u8]) -> Vec<u8> {
        let h = elf::header(elf).unwrap();
        let s = elf::find_section(elf, &h, name).unwrap().unwrap();
        slice(elf, s.offset, s.size).unwrap().to_vec()
    }

    #[test]
    fn the_payload_follows_the_header_where_the_loader_puts_it() {
        let elf = image(&arm64_head(), 0x2000);
        let out = attach(&elf, Arch::Aarch64, b"VMSET").unwrap();
        let flat = elf_to_flat_binary(&out).unwrap();
        let header = (HEADER_ADDR - TEXT_ADDR) as usize;
        assert_eq!(&flat[header..header + 8], b"AXPAYLD1");
        assert_eq!(&flat[header + 8..header + 16], &5u64.to_le_bytes());
        assert_eq!(&flat[header + 16..], b"VMSET");
        // image_size covers the payload.
        let image_size = HEADER_ADDR + 16 + 5 - TEXT_ADDR;
        assert_eq!(&flat[0x10..0x18], &image_size.to_le_bytes());
        // What is not loaded moved along, intact; the section grew.
        assert_eq!(section_bytes(&out, b".debug"), b"debug info");
        assert_eq!(section_bytes(&out, b".payload").len(), 16 + 5);
        assert_eq!(out.len() - elf.len(), INSERT_ALIGN as usize);
        let h = elf::header(&out).unwrap();
        let stack = elf::program_headers(&out, &h).unwrap()[2];
        assert_eq!((stack.offset, stack.filesz), (0, 0));
        // Once is enough.
        let err = format!("{:#}", attach(&out, Arch::Aarch64, b"x").unwrap_err());
        assert!(err.contains("already carries a payload (5 bytes)"), "{err}");
        // An empty payload is a header saying so.
        let none = attach(&elf, Arch::Riscv64, b"").unwrap();
        assert_eq!(
            section_bytes(&none, b".payload"),
            b"AXPAYLD1\0\0\0\0\0\0\0\0"
        );
    }

    #[test]
    fn multiboot_end_addresses_cover_the_payload() {
        let elf = image(&multiboot_head(), 0x2000);
        let payload = vec![7u8; 5000];
        let out = attach(&elf, Arch::X86_64, &payload).unwrap();
        let end = (HEADER_ADDR + 16 + 5000) as u32;
        assert_eq!(read_u32(&out, 0x1000 + 20).unwrap(), end);
        assert_eq!(read_u32(&out, 0x1000 + 24).unwrap(), end);
        assert_eq!(out.len() - elf.len(), 2 * INSERT_ALIGN as usize);
        // The loader's block: from the text's file offset, at the memory distances.
        let at = 0x1000 + (HEADER_ADDR + 16 - TEXT_ADDR) as usize;
        assert_eq!(&out[at..at + 5000], &payload[..]);
        // A segment not at its memory distance in the file cannot be loaded as one block.
        let apart = image(&multiboot_head(), 0x3000);
        let err = format!("{:#}", attach(&apart, Arch::X86_64, b"x").unwrap_err());
        assert!(
            err.contains("not where the multiboot loader copies it from"),
            "{err}"
        );
    }

    #[test]
    fn images_without_a_usable_header_are_refused() {
        let mut elf = image(&arm64_head(), 0x2000);
        let err = |elf: &[u8]| format!("{:#}", attach(elf, Arch::Riscv64, b"x").unwrap_err());
        // The section renamed: not found.
        let names = elf.len() - 5 * 64 - SHSTRTAB.len() - 4;
        let at = elf[..].windows(8).position(|w| w == b".payload").unwrap();
        assert!(at >= names.saturating_sub(8));
        elf[at + 1] = b'X';
        assert!(err(&elf).contains("no section .payload"), "{}", err(&elf));
        elf[at + 1] = b'p';
        // The header's segment holds more after it: the header is not its end.
        let mut longer = elf.clone();
        put_at(&mut longer, 120 + 32, &0x200u64.to_le_bytes());
        assert!(err(&longer).contains("no loaded segment ends with the payload header"));
        // A wrong magic number.
        let header = 0x2100;
        elf[header] = b'B';
        assert!(err(&elf).contains("magic"), "{}", err(&elf));
        assert!(attach(b"not an elf", Arch::Aarch64, b"x").is_err());
    }
}
