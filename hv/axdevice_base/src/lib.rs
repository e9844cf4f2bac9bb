//! What an emulated device is, seen from the hypervisor.
//!
//! Devices are plain state machines in the rust-vmm `vm-superio` style: a register access
//! comes in as an *offset* into the device (never an address — a device does not know where
//! it is mapped) and a width, and the device answers with a value or an error. Effects leave
//! through small traits: bytes a UART transmits go to a [`ConsoleSink`], interrupts go to an
//! [`IrqLine`]. Devices that read and write guest RAM themselves (virtio) do it through a
//! [`GuestMemory`], which checks every range.
//!
//! Everything a guest passes in (offset, width, value) is untrusted: implementations must
//! never panic on it, and return a [`DeviceError`] instead.
//!
//! The crate also has the console helpers every VM uses: [`LineBuffer`] splits a byte
//! stream into lines, and [`PrefixedConsole`] prints each line as `[<vm name>] <line>`.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

mod console;

pub use console::{push_inert, LineBuffer, PrefixedConsole, RawConsole, LINE_CAP};

use core::fmt;

/// The size of one register access. The discriminant is log2 of the size in bytes, so
/// [`AccessWidth::size`] and [`AccessWidth::mask`] are a shift each (they run on every
/// emulated access).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AccessWidth {
    /// 8 bits.
    Byte = 0,
    /// 16 bits.
    Half = 1,
    /// 32 bits.
    Word = 2,
    /// 64 bits.
    Dword = 3,
}

impl AccessWidth {
    /// Every width, smallest first.
    pub const ALL: [AccessWidth; 4] = [Self::Byte, Self::Half, Self::Word, Self::Dword];

    /// The width in bytes (1, 2, 4 or 8).
    #[inline]
    pub const fn size(self) -> usize {
        1 << self as u8
    }

    /// The width of a `size`-byte access, or `None` unless `size` is 1, 2, 4 or 8.
    pub const fn from_size(size: usize) -> Option<Self> {
        match size {
            1 => Some(Self::Byte),
            2 => Some(Self::Half),
            4 => Some(Self::Word),
            8 => Some(Self::Dword),
            _ => None,
        }
    }

    /// A mask of the bits an access of this width carries (`0xff` for [`AccessWidth::Byte`],
    /// all ones for [`AccessWidth::Dword`]).
    #[inline]
    pub const fn mask(self) -> u64 {
        // 64 - bits is 56, 48, 32 or 0: always a valid shift. (A table of the four masks
        // measured 4 instructions less per MMIO read on x86_64 but 3 to 6 more on aarch64,
        // where the table's address takes two instructions.)
        u64::MAX >> (64 - (8 << self as u8))
    }
}

impl fmt::Display for AccessWidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-byte", self.size())
    }
}

/// Why a device refused a register access. A guest caused it; the caller decides what the
/// guest gets (see `axdevice`'s unclaimed-access policy), the hypervisor goes on.
// `u64`, the width of a register's value: `Result<u64, DeviceError>`, what every register
// read returns, is then a pair of scalars, returned in two registers instead of through
// memory (about five instructions less on every emulated read, x86_64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum DeviceError {
    /// The offset is outside the device, or the access runs past its end.
    BadOffset,
    /// The device does not support an access of this width.
    BadWidth,
    /// The offset is not aligned the way the device's registers require.
    Misaligned,
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadOffset => "offset outside the device",
            Self::BadWidth => "access width not supported",
            Self::Misaligned => "misaligned register access",
        })
    }
}

/// A device the guest reaches through memory-mapped registers.
///
/// The device sees offsets from its own start, `0..size()`. Methods take `&self`: a device
/// shared by several vCPUs keeps its state behind a lock (`spin::Mutex`).
pub trait MmioDevice: Send + Sync {
    /// A short name for logs (`"pl011"`, `"ns16550"`).
    fn name(&self) -> &str;

    /// How many bytes of guest-physical address space the device claims. Must not be zero.
    fn size(&self) -> usize;

    /// A guest load of `width` at `offset`. The value is in the low bits; bits beyond
    /// `width` are ignored by the caller.
    fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError>;

    /// A guest store of `value` (meaningful in its low `width` bits) at `offset`.
    fn write(&self, offset: usize, width: AccessWidth, value: u64) -> Result<(), DeviceError>;

    /// A load by vCPU `vcpu` (its index in the VM). Devices whose registers are banked per
    /// vCPU (an interrupt distributor's private interrupts) override this; the default is
    /// [`MmioDevice::read`].
    fn read_by(&self, vcpu: usize, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        let _ = vcpu;
        self.read(offset, width)
    }

    /// A store by vCPU `vcpu`; see [`MmioDevice::read_by`]. The default is
    /// [`MmioDevice::write`].
    fn write_by(
        &self,
        vcpu: usize,
        offset: usize,
        width: AccessWidth,
        value: u64,
    ) -> Result<(), DeviceError> {
        let _ = vcpu;
        self.write(offset, width, value)
    }
}

/// How a virtual interrupt controller tells the hypervisor that a vCPU has something new to
/// take (an interrupt became pending for it): the hypervisor wakes the vCPU if it waits for
/// an interrupt, or makes it leave the guest so the interrupt can be delivered.
///
/// Called with the controller's lock held: an implementation must not call back into the
/// controller.
pub trait VcpuNotifier: Send + Sync {
    /// vCPU `vcpu` (its index in the VM) has a newly pending interrupt.
    fn notify(&self, vcpu: usize);
}

/// Where a device's console output goes (the bytes a UART transmits).
pub trait ConsoleSink: Send + Sync {
    /// Takes bytes the guest transmitted, in order. Bytes are raw guest data: any value.
    fn write(&self, bytes: &[u8]);
}

/// How a device drives its interrupt: a level-sensitive line.
///
/// Devices call [`IrqLine::set_level`] while holding their own lock (so two vCPUs cannot
/// reorder a raise and a lower), so an implementation must not call back into the device.
pub trait IrqLine: Send + Sync {
    /// Sets the line high (interrupt asserted) or low.
    fn set_level(&self, high: bool);
}

/// Why a guest-memory access was refused. The guest chose the address and length (a
/// virtqueue descriptor); the device turns this into a device error, never a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMemoryError {
    /// Some byte of the range is not RAM of this VM (unmapped, a device, a hole, or a
    /// range that straddles two RAM regions).
    NotRam,
    /// `address + length` wraps around the 64-bit address space.
    Overflow,
}

impl fmt::Display for GuestMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotRam => "range is not guest RAM",
            Self::Overflow => "range wraps the address space",
        })
    }
}

/// Checked access to a VM's RAM by guest-physical address, for devices that do DMA
/// (virtio queues and buffers). Implemented by the VM over its RAM regions only: a range
/// that is not wholly inside one RAM region is refused with an error, never a fault; the
/// length is the caller's buffer, so a device bounds it before allocating.
///
/// Multi-byte helpers are little-endian (virtio's byte order).
pub trait GuestMemory: Send + Sync {
    /// Copies guest bytes `gpa..gpa + buf.len()` into `buf`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError>;

    /// Copies `data` to guest bytes `gpa..gpa + data.len()`.
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), GuestMemoryError>;

    /// Reads a little-endian `u16` at `gpa`.
    fn read_u16(&self, gpa: u64) -> Result<u16, GuestMemoryError> {
        let mut b = [0; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads a little-endian `u32` at `gpa`.
    fn read_u32(&self, gpa: u64) -> Result<u32, GuestMemoryError> {
        let mut b = [0; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian `u64` at `gpa`.
    fn read_u64(&self, gpa: u64) -> Result<u64, GuestMemoryError> {
        let mut b = [0; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes `v` little-endian at `gpa`.
    fn write_u16(&self, gpa: u64, v: u16) -> Result<(), GuestMemoryError> {
        self.write(gpa, &v.to_le_bytes())
    }

    /// Writes `v` little-endian at `gpa`.
    fn write_u32(&self, gpa: u64, v: u32) -> Result<(), GuestMemoryError> {
        self.write(gpa, &v.to_le_bytes())
    }
}

/// The end (exclusive) of `gpa..gpa + len`, or [`GuestMemoryError::Overflow`]: the first
/// check every [`GuestMemory`] implementation makes.
pub fn range_end(gpa: u64, len: usize) -> Result<u64, GuestMemoryError> {
    u64::try_from(len)
        .ok()
        .and_then(|l| gpa.checked_add(l))
        .ok_or(GuestMemoryError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_checks_overflow() {
        assert_eq!(range_end(0x1000, 0x10), Ok(0x1010));
        assert_eq!(range_end(u64::MAX, 0), Ok(u64::MAX));
        assert_eq!(range_end(u64::MAX, 1), Err(GuestMemoryError::Overflow));
        assert!(!std::format!("{}", GuestMemoryError::NotRam).is_empty());
    }

    #[test]
    fn widths_round_trip() {
        for w in AccessWidth::ALL {
            assert_eq!(AccessWidth::from_size(w.size()), Some(w));
            // mask has exactly size*8 ones
            assert_eq!(w.mask().count_ones() as usize, w.size() * 8);
            assert_eq!(w.mask().trailing_ones() as usize, w.size() * 8);
        }
        for bad in [0, 3, 5, 6, 7, 9, 16, usize::MAX] {
            assert_eq!(AccessWidth::from_size(bad), None);
        }
        assert_eq!(AccessWidth::Byte.mask(), 0xff);
        assert_eq!(AccessWidth::Half.mask(), 0xffff);
        assert_eq!(AccessWidth::Word.mask(), 0xffff_ffff);
        assert_eq!(AccessWidth::Dword.mask(), u64::MAX);
        assert_eq!(std::format!("{}", AccessWidth::Word), "4-byte");
    }

    #[test]
    fn errors_display() {
        for e in [
            DeviceError::BadOffset,
            DeviceError::BadWidth,
            DeviceError::Misaligned,
        ] {
            assert!(!std::format!("{e}").is_empty());
        }
    }
}
