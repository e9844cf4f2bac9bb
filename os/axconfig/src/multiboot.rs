//! The multiboot (v1) information a loader hands an x86 kernel: its memory map and command
//! line. Read through a closure over physical memory, so it is portable and tested on the host.
//!
//! Layout (Multiboot Specification 0.6.96, "Boot information format"): `flags` at 0; bit 0:
//! `mem_lower`/`mem_upper` (KiB) at 4 and 8; bit 2: `cmdline` (physical address of a
//! NUL-terminated string) at 16; bit 6: `mmap_length` and `mmap_addr` at 44 and 48, entries of
//! `size` (not counting itself), 64-bit `base_addr`, 64-bit `length` and 32-bit `type`
//! (1 = available RAM).

use crate::memmap::{MemRange, RangeList};
use arrayvec::ArrayString;

/// The value in EAX when a multiboot loader enters the kernel.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;

/// What is wrong with the information.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MultibootError {
    /// The info structure cannot be read.
    Unreadable,
    /// Neither a memory map nor the basic memory fields.
    NoMemory,
}

impl core::fmt::Display for MultibootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MultibootError::Unreadable => "the multiboot information cannot be read",
            MultibootError::NoMemory => "the multiboot information describes no memory",
        })
    }
}

/// What the hypervisor keeps of the information.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultibootInfo {
    /// Available RAM (type 1 entries, or `mem_lower`/`mem_upper` without a map), sorted.
    pub memory: RangeList,
    /// The command line without its first word (the kernel's own path, as GRUB, QEMU and
    /// ISOLINUX's mboot.c32 pass it), truncated to 256 bytes.
    pub cmdline: ArrayString<256>,
    /// Where the information structure and its memory map lie.
    pub extent: MemRange,
    /// The first boot module (QEMU's `-initrd`, mboot.c32's `--- file`), if any and not
    /// empty.
    pub module: Option<MemRange>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Reads the information at physical address `addr`; `read(addr, len)` gives `len` bytes of
/// physical memory at `addr` (or `None` when they cannot be read).
pub fn parse<'a>(
    addr: usize,
    read: impl Fn(usize, usize) -> Option<&'a [u8]>,
) -> Result<MultibootInfo, MultibootError> {
    let info = read(addr, 52).ok_or(MultibootError::Unreadable)?;
    let flags = u32_at(info, 0).ok_or(MultibootError::Unreadable)?;
    let mut memory = RangeList::new();
    let mut extent = MemRange::new(addr, 52);
    if flags & (1 << 6) != 0 {
        let len = u32_at(info, 44).unwrap_or(0) as usize;
        let map_addr = u32_at(info, 48).unwrap_or(0) as usize;
        if let Some(map) = read(map_addr, len) {
            let mut off = 0;
            while let (Some(size), Some(base), Some(length), Some(kind)) = (
                u32_at(map, off),
                u64_at(map, off + 4),
                u64_at(map, off + 12),
                u32_at(map, off + 20),
            ) {
                if kind == 1 && length > 0 {
                    let r = MemRange::new(base as usize, length as usize);
                    if memory.try_push(r).is_err() {
                        break;
                    }
                }
                off += size as usize + 4;
            }
            let start = extent.start.min(map_addr);
            let end = extent.end().max(map_addr.saturating_add(len));
            extent = MemRange::from_bounds(start, end);
        }
    }
    if memory.is_empty() && flags & 1 != 0 {
        let lower = u32_at(info, 4).unwrap_or(0) as usize * 1024;
        let upper = u32_at(info, 8).unwrap_or(0) as usize * 1024;
        for r in [MemRange::new(0, lower), MemRange::new(1 << 20, upper)] {
            if !r.is_empty() {
                let _ = memory.try_push(r);
            }
        }
    }
    if memory.is_empty() {
        return Err(MultibootError::NoMemory);
    }
    memory.sort_unstable_by_key(|r| r.start);
    let mut cmdline = ArrayString::new();
    if flags & (1 << 2) != 0 {
        let at = u32_at(info, 16).unwrap_or(0) as usize;
        let text = c_string(at, &read);
        let args = text
            .trim_start()
            .split_once(' ')
            .map_or("", |(_, rest)| rest);
        for c in args.trim().chars() {
            if cmdline.try_push(c).is_err() {
                break;
            }
        }
    }
    // Flag 3: mods_count at 20, mods_addr at 24; each module is (start, end, string, 0).
    let module = if flags & (1 << 3) != 0 && u32_at(info, 20).unwrap_or(0) > 0 {
        let at = u32_at(info, 24).unwrap_or(0) as usize;
        read(at, 16).and_then(|m| {
            let (start, end) = (u32_at(m, 0)? as usize, u32_at(m, 4)? as usize);
            (end > start).then(|| MemRange::from_bounds(start, end))
        })
    } else {
        None
    };
    Ok(MultibootInfo {
        memory,
        cmdline,
        extent,
        module,
    })
}

/// The NUL-terminated string at `at` (at most 4 KiB; empty if unreadable or not UTF-8).
fn c_string<'a>(at: usize, read: &impl Fn(usize, usize) -> Option<&'a [u8]>) -> &'a str {
    if at == 0 {
        return "";
    }
    let mut len = 0;
    while len < 4096 {
        match read(at + len, 1) {
            Some([0]) | None => break,
            Some(_) => len += 1,
        }
    }
    read(at, len)
        .and_then(|b| core::str::from_utf8(b).ok())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A fake physical memory of 64 KiB at address 0.
    fn memory_with(info: &[u8], map: &[u8], cmdline: &[u8]) -> Vec<u8> {
        let mut m = std::vec![0u8; 0x10000];
        m[0x1000..0x1000 + info.len()].copy_from_slice(info);
        m[0x2000..0x2000 + map.len()].copy_from_slice(map);
        m[0x3000..0x3000 + cmdline.len()].copy_from_slice(cmdline);
        m
    }

    fn entry(base: u64, len: u64, kind: u32) -> Vec<u8> {
        let mut e = 20u32.to_le_bytes().to_vec();
        e.extend(base.to_le_bytes());
        e.extend(len.to_le_bytes());
        e.extend(kind.to_le_bytes());
        e
    }

    fn info(flags: u32, map_len: u32) -> Vec<u8> {
        let mut i = std::vec![0u8; 52];
        i[0..4].copy_from_slice(&flags.to_le_bytes());
        i[4..8].copy_from_slice(&639u32.to_le_bytes());
        i[8..12].copy_from_slice(&(511 * 1024u32).to_le_bytes());
        i[16..20].copy_from_slice(&0x3000u32.to_le_bytes());
        i[44..48].copy_from_slice(&map_len.to_le_bytes());
        i[48..52].copy_from_slice(&0x2000u32.to_le_bytes());
        i
    }

    #[test]
    fn memory_map_and_cmdline() {
        let mut map = entry(0, 0x9fc00, 1);
        map.extend(entry(0x9fc00, 0x400, 2));
        map.extend(entry(0x10_0000, 0x1fee_0000, 1));
        map.extend(entry(0xfffc_0000, 0x4_0000, 2));
        let mem = memory_with(
            &info(1 | 4 | 64, map.len() as u32),
            &map,
            b"/boot/axvisor.elf log=debug selftest=fault\0",
        );
        let read = |a: usize, l: usize| mem.get(a..a.checked_add(l)?);
        let mb = parse(0x1000, read).unwrap();
        assert_eq!(
            &mb.memory[..],
            &[
                MemRange::new(0, 0x9fc00),
                MemRange::new(0x10_0000, 0x1fee_0000)
            ]
        );
        assert_eq!(mb.cmdline.as_str(), "log=debug selftest=fault");
        assert_eq!(mb.extent, MemRange::from_bounds(0x1000, 0x2000 + 4 * 24));
    }

    #[test]
    fn first_module() {
        let mut i = info(1 | 8, 0);
        i[20..24].copy_from_slice(&2u32.to_le_bytes());
        i[24..28].copy_from_slice(&0x4000u32.to_le_bytes());
        let mut mem = memory_with(&i, &[], b"");
        for (k, v) in [0x20_0000u32, 0x30_0000, 0, 0, 0x40_0000, 0x50_0000]
            .iter()
            .enumerate()
        {
            mem[0x4000 + 4 * k..0x4004 + 4 * k].copy_from_slice(&v.to_le_bytes());
        }
        let read = |a: usize, l: usize| mem.get(a..a.checked_add(l)?);
        let mb = parse(0x1000, read).unwrap();
        assert_eq!(mb.module, Some(MemRange::from_bounds(0x20_0000, 0x30_0000)));
        // Without flag 3, or with an empty or unreadable module list: none.
        let mut j = i.clone();
        j[0..4].copy_from_slice(&1u32.to_le_bytes());
        let mem2 = memory_with(&j, &[], b"");
        let read = |a: usize, l: usize| mem2.get(a..a.checked_add(l)?);
        assert_eq!(parse(0x1000, read).unwrap().module, None);
        let mut k = i.clone();
        k[24..28].copy_from_slice(&0xfff8u32.to_le_bytes());
        let mem3 = memory_with(&k, &[], b"");
        let read = |a: usize, l: usize| mem3.get(a..a.checked_add(l)?);
        assert_eq!(parse(0x1000, read).unwrap().module, None);
    }

    #[test]
    fn basic_memory_without_map_and_bare_cmdline() {
        let mem = memory_with(&info(1 | 4, 0), &[], b"kernel\0");
        let read = |a: usize, l: usize| mem.get(a..a.checked_add(l)?);
        let mb = parse(0x1000, read).unwrap();
        assert_eq!(
            &mb.memory[..],
            &[
                MemRange::new(0, 639 * 1024),
                MemRange::new(0x10_0000, 511 << 20)
            ]
        );
        assert_eq!(mb.cmdline.as_str(), "");
    }

    #[test]
    fn no_memory_or_unreadable() {
        let mem = memory_with(&info(0, 0), &[], b"");
        let read = |a: usize, l: usize| mem.get(a..a.checked_add(l)?);
        assert_eq!(parse(0x1000, read), Err(MultibootError::NoMemory));
        assert_eq!(parse(0xfff0, read), Err(MultibootError::Unreadable));
        // A map whose last entry is cut short: the whole entries count.
        let map = entry(0x10_0000, 0x10_0000, 1);
        let mem = memory_with(&info(64, 30), &map, b"");
        let read = |a: usize, l: usize| mem.get(a..a.checked_add(l)?);
        let mb = parse(0x1000, read).unwrap();
        assert_eq!(&mb.memory[..], &[MemRange::new(0x10_0000, 0x10_0000)]);
    }
}
