//! A small writer for the flattened devicetree (DTB) format, version 17.
//!
//! Layout of the blob it produces (Devicetree Specification, chapter "Flattened Devicetree
//! (DTB) Format"): a 40-byte header, the memory reservation block (16-byte entries, ended
//! by an all-zero entry, 8-byte aligned), the structure block (big-endian 32-bit tokens,
//! every token 4-byte aligned), then the strings block (NUL-terminated property names, each
//! name stored once). All numbers are big-endian.
//!
//! The writer checks its own use: properties only inside a node and before that node's
//! first child, every node closed before [`FdtWriter::finish`], no NUL inside a name.
//! A mistake is an [`DtbError::Internal`], never a panic.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::DtbError;

/// `magic` of every DTB header.
pub(crate) const FDT_MAGIC: u32 = 0xd00d_feed;
/// The format version written.
pub(crate) const FDT_VERSION: u32 = 17;
/// The oldest version a reader must understand to read what we write.
pub(crate) const FDT_LAST_COMP_VERSION: u32 = 16;
/// Size of the header in bytes (ten 32-bit fields).
pub(crate) const HEADER_SIZE: usize = 40;

/// Structure block tokens.
pub(crate) const FDT_BEGIN_NODE: u32 = 0x1;
pub(crate) const FDT_END_NODE: u32 = 0x2;
pub(crate) const FDT_PROP: u32 = 0x3;
pub(crate) const FDT_END: u32 = 0x9;

/// Builds one DTB: open nodes, add properties, close nodes, then [`finish`](Self::finish).
pub(crate) struct FdtWriter {
    /// `(address, size)` entries of the memory reservation block.
    reservations: Vec<(u64, u64)>,
    /// The structure block written so far.
    structure: Vec<u8>,
    /// The strings block written so far.
    strings: Vec<u8>,
    /// Offset in `strings` of every name already stored (de-duplication).
    string_offsets: BTreeMap<String, u32>,
    /// For each open node, whether it already has a child (then no more properties).
    open: Vec<bool>,
    /// Whether the root node was opened (there is exactly one).
    root_done: bool,
}

impl FdtWriter {
    /// A writer with the given memory reservation entries.
    pub(crate) fn new(reservations: &[(u64, u64)]) -> Self {
        Self {
            reservations: reservations.to_vec(),
            structure: Vec::new(),
            strings: Vec::new(),
            string_offsets: BTreeMap::new(),
            open: Vec::new(),
            root_done: false,
        }
    }

    fn token(&mut self, token: u32) {
        self.structure.extend_from_slice(&token.to_be_bytes());
    }

    /// Pads the structure block with zero bytes up to the next multiple of 4.
    fn align_structure(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    /// Opens a node; `""` is the root, which must be the first and only top-level node.
    pub(crate) fn begin_node(&mut self, name: &str) -> Result<(), DtbError> {
        if name.as_bytes().contains(&0) {
            return Err(DtbError::Internal("NUL in a node name"));
        }
        match self.open.last_mut() {
            None if self.root_done => return Err(DtbError::Internal("second root node")),
            None if !name.is_empty() => return Err(DtbError::Internal("root must be unnamed")),
            None => self.root_done = true,
            Some(_) if name.is_empty() => return Err(DtbError::Internal("unnamed child node")),
            Some(has_child) => *has_child = true,
        }
        self.open.push(false);
        self.token(FDT_BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.align_structure();
        Ok(())
    }

    /// Closes the innermost open node.
    pub(crate) fn end_node(&mut self) -> Result<(), DtbError> {
        if self.open.pop().is_none() {
            return Err(DtbError::Internal("end_node without an open node"));
        }
        self.token(FDT_END_NODE);
        Ok(())
    }

    /// Offset of `name` in the strings block, storing it on first use.
    fn string_offset(&mut self, name: &str) -> Result<u32, DtbError> {
        if let Some(&off) = self.string_offsets.get(name) {
            return Ok(off);
        }
        let off = u32::try_from(self.strings.len()).map_err(|_| DtbError::Internal("strings"))?;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.string_offsets.insert(String::from(name), off);
        Ok(off)
    }

    /// Adds a property with a raw value to the innermost open node.
    pub(crate) fn prop(&mut self, name: &str, value: &[u8]) -> Result<(), DtbError> {
        if name.is_empty() || name.as_bytes().contains(&0) {
            return Err(DtbError::Internal("empty property name or NUL in it"));
        }
        match self.open.last() {
            None => return Err(DtbError::Internal("property outside a node")),
            Some(true) => return Err(DtbError::Internal("property after a child node")),
            Some(false) => {}
        }
        let len = u32::try_from(value.len()).map_err(|_| DtbError::Internal("property length"))?;
        let nameoff = self.string_offset(name)?;
        self.token(FDT_PROP);
        self.token(len);
        self.token(nameoff);
        self.structure.extend_from_slice(value);
        self.align_structure();
        Ok(())
    }

    /// A property with no value (a boolean that is true by being there).
    pub(crate) fn prop_empty(&mut self, name: &str) -> Result<(), DtbError> {
        self.prop(name, &[])
    }

    /// A property holding one 32-bit cell.
    pub(crate) fn prop_u32(&mut self, name: &str, value: u32) -> Result<(), DtbError> {
        self.prop(name, &value.to_be_bytes())
    }

    /// A property holding one 64-bit number (two cells, high first).
    pub(crate) fn prop_u64(&mut self, name: &str, value: u64) -> Result<(), DtbError> {
        self.prop(name, &value.to_be_bytes())
    }

    /// A property holding a list of 32-bit cells.
    pub(crate) fn prop_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), DtbError> {
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &bytes)
    }

    /// A property holding one NUL-terminated string.
    pub(crate) fn prop_str(&mut self, name: &str, value: &str) -> Result<(), DtbError> {
        self.prop_strs(name, &[value])
    }

    /// A property holding a list of NUL-terminated strings (a `stringlist`).
    pub(crate) fn prop_strs(&mut self, name: &str, values: &[&str]) -> Result<(), DtbError> {
        let mut bytes = Vec::new();
        for v in values {
            if v.as_bytes().contains(&0) {
                return Err(DtbError::Internal("NUL inside a string value"));
            }
            bytes.extend_from_slice(v.as_bytes());
            bytes.push(0);
        }
        self.prop(name, &bytes)
    }

    /// Ends the structure block and lays out the whole blob.
    pub(crate) fn finish(mut self, boot_cpuid_phys: u32) -> Result<Vec<u8>, DtbError> {
        if !self.open.is_empty() || !self.root_done {
            return Err(DtbError::Internal("finish with an open node or no root"));
        }
        self.token(FDT_END);

        // Header, then the reservation block (HEADER_SIZE is a multiple of 8, so the block
        // is 8-byte aligned), the structure block (a multiple of 16 after the header and
        // entries, so 4-byte aligned), then strings.
        let rsv_len = (self.reservations.len() + 1) * 16;
        let off_mem_rsvmap = HEADER_SIZE;
        let off_dt_struct = off_mem_rsvmap + rsv_len;
        let off_dt_strings = off_dt_struct + self.structure.len();
        let totalsize = off_dt_strings + self.strings.len();

        let field = |v: usize| u32::try_from(v).map_err(|_| DtbError::Internal("blob over 4 GiB"));
        let header = [
            FDT_MAGIC,
            field(totalsize)?,
            field(off_dt_struct)?,
            field(off_dt_strings)?,
            field(off_mem_rsvmap)?,
            FDT_VERSION,
            FDT_LAST_COMP_VERSION,
            boot_cpuid_phys,
            field(self.strings.len())?,
            field(self.structure.len())?,
        ];

        let mut out = Vec::with_capacity(totalsize);
        for word in header {
            out.extend_from_slice(&word.to_be_bytes());
        }
        for &(addr, size) in self.reservations.iter().chain(core::iter::once(&(0, 0))) {
            out.extend_from_slice(&addr.to_be_bytes());
            out.extend_from_slice(&size.to_be_bytes());
        }
        out.extend_from_slice(&self.structure);
        out.extend_from_slice(&self.strings);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be32(b: &[u8], off: usize) -> u32 {
        u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }

    #[test]
    fn minimal_blob_layout() {
        let mut w = FdtWriter::new(&[(0x1000, 0x2000)]);
        w.begin_node("").unwrap();
        w.prop_u32("#size-cells", 2).unwrap();
        w.begin_node("a@1").unwrap();
        w.prop_str("x", "yz").unwrap();
        w.prop_u32("#size-cells", 1).unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        let b = w.finish(3).unwrap();
        assert_eq!(be32(&b, 0), FDT_MAGIC);
        assert_eq!(be32(&b, 4) as usize, b.len());
        assert_eq!(be32(&b, 16), 40);
        assert_eq!(be32(&b, 8), 40 + 32);
        assert_eq!(be32(&b, 28), 3);
        // Strings stored once: "#size-cells\0x\0".
        let strings = &b[be32(&b, 12) as usize..];
        assert_eq!(strings, b"#size-cells\0x\0");
        // Reservation entry then terminator.
        assert_eq!(&b[40..48], &0x1000u64.to_be_bytes());
        assert_eq!(&b[56..72], &[0u8; 16]);
        // Structure block ends with FDT_END.
        let end = be32(&b, 12) as usize;
        assert_eq!(be32(&b, end - 4), FDT_END);
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let mut w = FdtWriter::new(&[]);
        assert!(w.prop_u32("a", 1).is_err());
        assert!(w.end_node().is_err());
        assert!(w.begin_node("x").is_err());
        w.begin_node("").unwrap();
        assert!(w.begin_node("").is_err());
        assert!(w.prop("", &[]).is_err());
        assert!(w.prop_str("a", "b\0c").is_err());
        w.begin_node("child").unwrap();
        w.end_node().unwrap();
        assert!(w.prop_u32("late", 1).is_err());
        w.end_node().unwrap();
        assert!(w.begin_node("").is_err());
        let w2 = FdtWriter::new(&[]);
        assert!(w2.finish(0).is_err());
    }
}
