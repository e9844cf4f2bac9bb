//! A full structural check of a flattened device tree before the `fdt` crate reads it.
//!
//! The `fdt` crate (0.1.5) trusts the blob: a header whose blocks lie outside it, a
//! property running past the structure block, a name without its NUL or not UTF-8, a name
//! offset outside the strings block, a `#address-cells` shorter than a cell, nodes nested
//! more than 63 deep or an `FDT_NOP` between properties make it index out of bounds or hit
//! an `expect` — a panic while booting. [`check`] walks the whole blob once and accepts
//! only what the crate reads safely: the devicetree specification's layout (v17), with
//! every block inside `totalsize`, properties before subnodes, at most [`MAX_DEPTH`]
//! levels, and no `FDT_NOP` tokens (the crate mishandles them in several places; the
//! blobs QEMU and firmware hand over have none).

const MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const END: u32 = 9;

/// The deepest nesting accepted (the root is level 1).
pub const MAX_DEPTH: usize = 32;

/// The big-endian `u32` at `off` in `bytes`.
fn be32(bytes: &[u8], off: usize) -> Option<u32> {
    let b = bytes.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// `bytes[start..start + len]`, if it is inside `bytes`.
fn sub(bytes: &[u8], start: u32, len: u32) -> Option<&[u8]> {
    let start = start as usize;
    bytes.get(start..start.checked_add(len as usize)?)
}

/// The NUL-terminated UTF-8 string at the start of `bytes`, if there is one.
fn c_str(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&bytes[..end]).ok()
}

/// `len` rounded up to a multiple of 4.
fn padded(len: usize) -> Option<usize> {
    len.checked_add(3).map(|l| l & !3)
}

/// Whether `blob` is a device tree the `fdt` crate can read without panicking (see the
/// module documentation). Returns the blob cut to its `totalsize`.
pub fn check(blob: &[u8]) -> Option<&[u8]> {
    let h = |i: usize| be32(blob, 4 * i);
    if blob.len() < HEADER_LEN || h(0)? != MAGIC {
        return None;
    }
    let total = h(1)?;
    let blob = sub(blob, 0, total)?;
    if blob.len() < HEADER_LEN {
        return None;
    }
    let (off_struct, off_strings, off_rsvmap) = (h(2)?, h(3)?, h(4)?);
    let (size_strings, size_struct) = (h(8)?, h(9)?);
    let structs = sub(blob, off_struct, size_struct)?;
    let strings = sub(blob, off_strings, size_strings)?;

    // The memory reservation map: (address, size) pairs up to an all-zero one.
    let mut at = off_rsvmap as usize;
    loop {
        let entry = blob.get(at..at.checked_add(16)?)?;
        at += 16;
        if entry.iter().all(|&b| b == 0) {
            break;
        }
    }

    check_structs(structs, strings).then_some(blob)
}

/// The structure block: one root node, then `FDT_END`.
fn check_structs(structs: &[u8], strings: &[u8]) -> bool {
    let mut at = 0;
    // Per open node: whether a subnode has been seen (properties must come first).
    let mut open = [false; MAX_DEPTH];
    let mut depth = 0;
    loop {
        let Some(token) = be32(structs, at) else {
            return false;
        };
        at += 4;
        match token {
            BEGIN_NODE => {
                // The root is the only top-level node.
                if depth == MAX_DEPTH || (depth == 0 && at != 4) {
                    return false;
                }
                if depth > 0 {
                    open[depth - 1] = true;
                }
                let Some(name) = structs.get(at..).and_then(c_str) else {
                    return false;
                };
                let Some(next) = padded(at + name.len() + 1) else {
                    return false;
                };
                at = next;
                open[depth] = false;
                depth += 1;
            }
            END_NODE if depth > 0 => depth -= 1,
            PROP if depth > 0 && !open[depth - 1] => {
                let (Some(len), Some(name_off)) = (be32(structs, at), be32(structs, at + 4)) else {
                    return false;
                };
                let Some(name) = strings.get(name_off as usize..).and_then(c_str) else {
                    return false;
                };
                let cells = name == "#address-cells" || name == "#size-cells";
                if cells && len < 4 {
                    return false;
                }
                match padded(at + 8 + len as usize) {
                    Some(next) if next <= structs.len() => at = next,
                    _ => return false,
                }
            }
            END => return depth == 0 && at > 4,
            _ => return false,
        }
        // A node's name or a property's value may end the block only before its padding.
        if at > structs.len() {
            return false;
        }
    }
}
