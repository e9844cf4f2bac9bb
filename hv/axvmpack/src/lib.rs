//! The VM set a hypervisor image carries: VM config files and the guest images they name,
//! packed into one byte string.
//!
//! `cargo xtask build --vms ...` packs the set ([`encode`]) and attaches it to an image that
//! was already built (the hypervisor is not compiled again per VM set); at boot the
//! hypervisor finds the bytes after its image (`axhal::platform::image_payload`) and reads
//! them back ([`decode`]) without copying: every config and image is a slice of the packed
//! bytes. See docs/vm-config.md ("VMs built into the image").
//!
//! The format, all numbers little-endian `u32`:
//!
//! ```text
//! magic "AXVMSET1"
//! count of VMs
//! per VM:    file (a string), config (a string), count of images,
//!            per image: name (a string), contents (bytes)
//! a string:  its length, then that many UTF-8 bytes; bytes: the same without the UTF-8
//! ```
//!
//! ```
//! use axvmpack::{decode, encode, PackedVm};
//!
//! let vms = [PackedVm {
//!     file: "configs/vms/aarch64-hello.toml",
//!     config: "id = 1\n",
//!     images: vec![("hello", &b"\x00\x01"[..])],
//! }];
//! let bytes = encode(&vms).unwrap();
//! assert_eq!(decode(&bytes).unwrap(), vms);
//! ```

#![no_std]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

/// The first bytes of a packed VM set.
pub const MAGIC: &[u8; 8] = b"AXVMSET1";

/// One VM of a set: where its config came from, the config's text and its images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedVm<'a> {
    /// The config file as given to the build (e.g. `configs/vms/aarch64-hello.toml`).
    pub file: &'a str,
    /// The config file's text (TOML).
    pub config: &'a str,
    /// Every image the config names, as (image name, contents), in the config's order.
    pub images: Vec<(&'a str, &'a [u8])>,
}

impl<'a> PackedVm<'a> {
    /// The contents of image `name`, if the config names it.
    pub fn image(&self, name: &str) -> Option<&'a [u8]> {
        self.images
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| *bytes)
    }
}

/// Why packed bytes could not be read, or a set not packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackError {
    /// The bytes do not start with [`MAGIC`].
    BadMagic,
    /// The bytes end inside the item at this offset.
    Truncated {
        /// Where the cut item starts.
        offset: usize,
    },
    /// A string at this offset is not UTF-8.
    NotUtf8 {
        /// Where the string's bytes start.
        offset: usize,
    },
    /// Bytes are left over after the last VM, from this offset on.
    TrailingBytes {
        /// Where the extra bytes start.
        offset: usize,
    },
    /// A length or count does not fit the format's 32 bits.
    TooLarge {
        /// How long it is.
        len: usize,
    },
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(f, "not a packed VM set (no \"AXVMSET1\" at its start)"),
            Self::Truncated { offset } => write!(f, "cut short in the item at byte {offset}"),
            Self::NotUtf8 { offset } => write!(f, "the text at byte {offset} is not UTF-8"),
            Self::TrailingBytes { offset } => {
                write!(f, "unexpected bytes after the last VM, at byte {offset}")
            }
            Self::TooLarge { len } => write!(f, "{len} does not fit in 32 bits"),
        }
    }
}

/// Packs `vms` in the format described in the crate documentation.
pub fn encode(vms: &[PackedVm<'_>]) -> Result<Vec<u8>, PackError> {
    let mut out = Vec::from(&MAGIC[..]);
    put_len(&mut out, vms.len())?;
    for vm in vms {
        put_bytes(&mut out, vm.file.as_bytes())?;
        put_bytes(&mut out, vm.config.as_bytes())?;
        put_len(&mut out, vm.images.len())?;
        for (name, contents) in &vm.images {
            put_bytes(&mut out, name.as_bytes())?;
            put_bytes(&mut out, contents)?;
        }
    }
    Ok(out)
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), PackError> {
    let n = u32::try_from(len).map_err(|_| PackError::TooLarge { len })?;
    out.extend_from_slice(&n.to_le_bytes());
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), PackError> {
    put_len(out, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// Reads a VM set packed by [`encode`]; every string and image borrows from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Vec<PackedVm<'_>>, PackError> {
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(PackError::BadMagic);
    }
    let mut r = Reader {
        bytes,
        at: MAGIC.len(),
    };
    let count = r.len()?;
    // Not `with_capacity(count)`: the count is not trusted until its VMs are read.
    let mut vms = Vec::new();
    for _ in 0..count {
        let file = r.str()?;
        let config = r.str()?;
        let images = (0..r.len()?)
            .map(|_| Ok((r.str()?, r.bytes()?)))
            .collect::<Result<Vec<_>, PackError>>()?;
        vms.push(PackedVm {
            file,
            config,
            images,
        });
    }
    if r.at != bytes.len() {
        return Err(PackError::TrailingBytes { offset: r.at });
    }
    Ok(vms)
}

/// A cursor over packed bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, item_start: usize) -> Result<&'a [u8], PackError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(PackError::Truncated { offset: item_start })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn len(&mut self) -> Result<usize, PackError> {
        let start = self.at;
        let b = self.take(4, start)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], PackError> {
        let start = self.at;
        let n = self.len()?;
        self.take(n, start)
    }

    fn str(&mut self) -> Result<&'a str, PackError> {
        let bytes = self.bytes()?;
        core::str::from_utf8(bytes).map_err(|_| PackError::NotUtf8 {
            offset: self.at - bytes.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn two_vms() -> Vec<PackedVm<'static>> {
        vec![
            PackedVm {
                file: "configs/vms/aarch64-echo.toml",
                config: "id = 30\nname = \"echo\"\n",
                images: vec![("echo", &[1, 2, 3][..])],
            },
            PackedVm {
                file: "linux.toml",
                config: "id = 2\n",
                images: vec![("linux", &[9; 300][..]), ("initramfs", &[][..])],
            },
        ]
    }

    #[test]
    fn round_trip() {
        let vms = two_vms();
        let bytes = encode(&vms).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(back, vms);
        assert_eq!(back[1].image("linux"), Some(&[9u8; 300][..]));
        assert_eq!(back[1].image("initramfs"), Some(&[][..]));
        assert_eq!(back[1].image("echo"), None);
        assert_eq!(decode(&encode(&[]).unwrap()).unwrap(), []);
    }

    #[test]
    fn every_cut_is_an_error_naming_its_item() {
        let bytes = encode(&two_vms()).unwrap();
        for cut in 0..bytes.len() {
            let err = decode(&bytes[..cut]).unwrap_err();
            match err {
                PackError::BadMagic => assert!(cut < MAGIC.len()),
                PackError::Truncated { offset } => assert!(offset <= cut, "{cut}: {err}"),
                other => panic!("cut at {cut}: {other}"),
            }
        }
    }

    #[test]
    fn bad_bytes() {
        assert_eq!(decode(b"AXVMSET0\0\0\0\0"), Err(PackError::BadMagic));
        let mut extra = encode(&two_vms()).unwrap();
        let end = extra.len();
        extra.push(0);
        assert_eq!(
            decode(&extra),
            Err(PackError::TrailingBytes { offset: end })
        );
        // One VM whose file name is the byte 0xff.
        let mut bad = Vec::from(&MAGIC[..]);
        bad.extend_from_slice(&1u32.to_le_bytes());
        bad.extend_from_slice(&1u32.to_le_bytes());
        bad.push(0xff);
        assert_eq!(decode(&bad), Err(PackError::NotUtf8 { offset: 16 }));
        // A huge count with nothing behind it is cut short, not a huge allocation.
        let mut huge = Vec::from(&MAGIC[..]);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), Err(PackError::Truncated { offset: 12 }));
        assert_eq!(
            PackError::Truncated { offset: 12 }.to_string(),
            "cut short in the item at byte 12"
        );
    }
}
