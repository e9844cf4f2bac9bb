//! Reading ELF64 little-endian files, the little the xtask needs: the file header, the
//! program and section headers with where each lies in the file (so that they can be
//! patched), a section by name, and bounds-checked little-endian reads. Used to lay out a
//! hypervisor image (`image`), to attach VMs to one (`attach`) and to unpack a Linux kernel
//! (`realguest::unpacked`).

use anyhow::{ensure, Context, Result};

/// Program header type of a loadable segment.
pub(crate) const PT_LOAD: u32 = 1;
/// The size of an ELF64 program header.
const PHDR_LEN: u64 = 56;
/// The size of an ELF64 section header.
const SHDR_LEN: u64 = 64;

/// The ELF file header fields used here.
pub(crate) struct Header {
    pub(crate) phoff: u64,
    pub(crate) phentsize: u64,
    pub(crate) phnum: u64,
    pub(crate) shoff: u64,
    pub(crate) shentsize: u64,
    pub(crate) shnum: u64,
    pub(crate) shstrndx: u64,
}

/// A program header: where it is in the file (`at`) and its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProgramHeader {
    pub(crate) at: u64,
    /// `p_type`.
    pub(crate) kind: u32,
    pub(crate) offset: u64,
    pub(crate) vaddr: u64,
    /// The physical load address (`p_paddr`).
    pub(crate) paddr: u64,
    pub(crate) filesz: u64,
    pub(crate) memsz: u64,
}

/// A section header: where it is in the file (`at`) and the fields used here.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SectionHeader {
    pub(crate) at: u64,
    /// The offset of its name in the section name table.
    pub(crate) name: u32,
    pub(crate) addr: u64,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// The file header of an ELF64 little-endian file, checked.
pub(crate) fn header(elf: &[u8]) -> Result<Header> {
    ensure!(elf.get(0..4) == Some(&b"\x7fELF"[..]), "not an ELF file");
    ensure!(elf.get(4) == Some(&2), "not a 64-bit ELF file");
    ensure!(elf.get(5) == Some(&1), "not a little-endian ELF file");
    let h = Header {
        phoff: read_u64(elf, 0x20)?,
        shoff: read_u64(elf, 0x28)?,
        phentsize: u64::from(read_u16(elf, 0x36)?),
        phnum: u64::from(read_u16(elf, 0x38)?),
        shentsize: u64::from(read_u16(elf, 0x3a)?),
        shnum: u64::from(read_u16(elf, 0x3c)?),
        shstrndx: u64::from(read_u16(elf, 0x3e)?),
    };
    ensure!(
        h.phnum == 0 || h.phentsize >= PHDR_LEN,
        "program header entries are too small ({} bytes)",
        h.phentsize
    );
    ensure!(
        h.shnum == 0 || h.shentsize >= SHDR_LEN,
        "section header entries are too small ({} bytes)",
        h.shentsize
    );
    Ok(h)
}

/// Every program header of the file.
pub(crate) fn program_headers(elf: &[u8], h: &Header) -> Result<Vec<ProgramHeader>> {
    (0..h.phnum)
        .map(|i| {
            let at = entry(h.phoff, i, h.phentsize).context("program header offset overflows")?;
            let ph = slice(elf, at, PHDR_LEN)
                .with_context(|| format!("program header {i} lies outside the file"))?;
            Ok(ProgramHeader {
                at,
                kind: read_u32(ph, 0)?,
                offset: read_u64(ph, 8)?,
                vaddr: read_u64(ph, 16)?,
                paddr: read_u64(ph, 24)?,
                filesz: read_u64(ph, 32)?,
                memsz: read_u64(ph, 40)?,
            })
        })
        .collect()
}

/// Every section header of the file.
pub(crate) fn section_headers(elf: &[u8], h: &Header) -> Result<Vec<SectionHeader>> {
    (0..h.shnum)
        .map(|i| {
            let at = entry(h.shoff, i, h.shentsize).context("section header offset overflows")?;
            let sh = slice(elf, at, SHDR_LEN)
                .with_context(|| format!("section header {i} lies outside the file"))?;
            Ok(SectionHeader {
                at,
                name: read_u32(sh, 0)?,
                addr: read_u64(sh, 0x10)?,
                offset: read_u64(sh, 0x18)?,
                size: read_u64(sh, 0x20)?,
            })
        })
        .collect()
}

/// The section called `name`, if there is one.
pub(crate) fn find_section(elf: &[u8], h: &Header, name: &[u8]) -> Result<Option<SectionHeader>> {
    let sections = section_headers(elf, h)?;
    let names = sections
        .get(usize::try_from(h.shstrndx)?)
        .context("no section name table")?;
    let names = slice(elf, names.offset, names.size).context("the section name table")?;
    Ok(sections.into_iter().find(|s| {
        let start = s.name as usize;
        names.get(start..start + name.len()) == Some(name)
            && names.get(start + name.len()) == Some(&0)
    }))
}

/// The file offset of table entry `index` (`table + index * size`), if it does not overflow.
fn entry(table: u64, index: u64, size: u64) -> Option<u64> {
    table.checked_add(index.checked_mul(size)?)
}

/// `len` bytes of `bytes` from `offset`, or an error naming the range.
pub(crate) fn slice(bytes: &[u8], offset: u64, len: u64) -> Result<&[u8]> {
    let start = usize::try_from(offset)?;
    let end = start
        .checked_add(usize::try_from(len)?)
        .context("range overflows")?;
    bytes.get(start..end).with_context(|| {
        format!(
            "bytes {start:#x}..{end:#x} are past the end of the file ({:#x})",
            bytes.len()
        )
    })
}

/// The little-endian `u16` at `offset`.
pub(crate) fn read_u16(bytes: &[u8], offset: u64) -> Result<u16> {
    let b = slice(bytes, offset, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

/// The little-endian `u32` at `offset`.
pub(crate) fn read_u32(bytes: &[u8], offset: u64) -> Result<u32> {
    let b = slice(bytes, offset, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The little-endian `u64` at `offset`.
pub(crate) fn read_u64(bytes: &[u8], offset: u64) -> Result<u64> {
    let mut b = [0u8; 8];
    b.copy_from_slice(slice(bytes, offset, 8)?);
    Ok(u64::from_le_bytes(b))
}
