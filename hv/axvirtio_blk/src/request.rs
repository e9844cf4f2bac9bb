//! The virtio-blk request format (virtio 1.2 §5.2.6): a 16-byte header the device reads
//! (`type: u32, reserved: u32, sector: u64`, little-endian), data, and a status byte the
//! device writes last.

/// `VIRTIO_BLK_T_IN`: read sectors into the guest.
pub const T_IN: u32 = 0;
/// `VIRTIO_BLK_T_OUT`: write the guest's data to sectors.
pub const T_OUT: u32 = 1;
/// `VIRTIO_BLK_T_FLUSH`: make completed writes durable.
pub const T_FLUSH: u32 = 4;
/// `VIRTIO_BLK_T_GET_ID`: the device's 20-byte id string.
pub const T_GET_ID: u32 = 8;

/// Status: success.
pub const S_OK: u8 = 0;
/// Status: the request failed (out of range, bad length, read-only, backing error).
pub const S_IOERR: u8 = 1;
/// Status: the request type is not supported.
pub const S_UNSUPP: u8 = 2;

/// The header's size in bytes.
pub const HEADER_LEN: usize = 16;

/// The id string's size (`VIRTIO_BLK_ID_BYTES`).
pub const ID_LEN: usize = 20;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Read from `sector`.
    In,
    /// Write at `sector`.
    Out,
    /// Flush.
    Flush,
    /// Get the id string.
    GetId,
    /// Any other type (answered with [`S_UNSUPP`]).
    Other(u32),
}

/// A decoded request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The request type.
    pub kind: Kind,
    /// The first sector (512 bytes each) of an `In` or `Out`.
    pub sector: u64,
}

impl Header {
    /// Decodes the 16 header bytes.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Self {
        let ty = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let mut s = [0u8; 8];
        s.copy_from_slice(&bytes[8..16]);
        let kind = match ty {
            T_IN => Kind::In,
            T_OUT => Kind::Out,
            T_FLUSH => Kind::Flush,
            T_GET_ID => Kind::GetId,
            other => Kind::Other(other),
        };
        Self {
            kind,
            sector: u64::from_le_bytes(s),
        }
    }

    /// The byte range `offset..offset + len` of a transfer of `len` bytes at this header's
    /// sector, or `None` when `len` is not whole sectors, is more than `max`, or the range
    /// does not lie wholly in a backing of `capacity` bytes (or overflows).
    pub fn span(&self, len: u64, max: u64, capacity: u64) -> Option<u64> {
        if !len.is_multiple_of(crate::SECTOR_SIZE) || len > max {
            return None;
        }
        let offset = self.sector.checked_mul(crate::SECTOR_SIZE)?;
        let end = offset.checked_add(len)?;
        (end <= capacity).then_some(offset)
    }
}
