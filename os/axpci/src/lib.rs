//! PCI configuration space, architecture-free (docs/axfs.md, "The disk"): the walk that finds
//! every function behind the host bridge, and the decoding of base address registers (BARs).
//!
//! The platform supplies a [`ConfigAccess`] (on x86_64 the port mechanism 0xCF8/0xCFC, in
//! `axhal`); nothing here touches hardware. Every value read is treated as untrusted: an
//! absent function reads all ones, a bridge may name any bus (loops, the bus it sits on, bus
//! 0), a header may claim any type; the walk visits each bus at most once and never panics.
#![no_std]

use core::fmt;
use core::ops::ControlFlow;

/// The vendor id of virtio devices.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// The device ids of a virtio block device: modern (0x1040 + 2) and transitional.
pub const VIRTIO_BLK_DEVICES: [u16; 2] = [0x1042, 0x1001];

/// Register offsets in a function's configuration header.
mod reg {
    /// Vendor id (low half) and device id (high half).
    pub const ID: u8 = 0x00;
    /// Command (low half) and status (high half).
    pub const COMMAND: u8 = 0x04;
    /// Revision, programming interface, subclass, class (high byte).
    pub const CLASS: u8 = 0x08;
    /// Cache line, latency timer, header type (third byte), BIST.
    pub const HEADER: u8 = 0x0c;
    /// The first BAR.
    pub const BAR0: u8 = 0x10;
    /// Of a bridge (header type 1): primary, secondary (second byte) and subordinate bus.
    pub const BUSES: u8 = 0x18;
}

/// Command register bits.
pub mod command {
    /// Decodes its I/O BARs.
    pub const IO: u16 = 1 << 0;
    /// Decodes its memory BARs.
    pub const MEMORY: u16 = 1 << 1;
    /// May master the bus (DMA).
    pub const BUS_MASTER: u16 = 1 << 2;
    /// Its INTx line is never asserted (a polled driver).
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Reads and writes a function's configuration space, 32 bits at a time.
pub trait ConfigAccess {
    /// The 32-bit register at `offset` (a multiple of 4) of function `at`; all ones when
    /// the function is absent.
    fn read32(&self, at: Bdf, offset: u8) -> u32;
    /// Writes the 32-bit register at `offset` (a multiple of 4) of function `at`.
    fn write32(&self, at: Bdf, offset: u8, value: u32);
}

/// A function's address: bus, device (0..32), function (0..8). `Display`: `00:03.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number, below 32.
    pub device: u8,
    /// Function number, below 8.
    pub function: u8,
}

impl Bdf {
    /// The address, or `None` if `device` or `function` is out of range.
    pub fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        (device < 32 && function < 8).then_some(Self {
            bus,
            device,
            function,
        })
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// A present function, as the walk found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// Its address.
    pub at: Bdf,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class (high byte) and subclass.
    pub class: u16,
    /// Header type, without the multifunction bit: 0 a device, 1 a PCI-to-PCI bridge.
    pub header_type: u8,
}

impl Function {
    /// Whether it is a virtio block device (modern or transitional).
    pub fn is_virtio_blk(&self) -> bool {
        self.vendor == VIRTIO_VENDOR && VIRTIO_BLK_DEVICES.contains(&self.device)
    }
}

/// The function at `at`, if one is present (its vendor id is not all ones or zero).
pub fn function(cfg: &impl ConfigAccess, at: Bdf) -> Option<Function> {
    let id = cfg.read32(at, reg::ID);
    let vendor = id as u16;
    if vendor == 0xffff || vendor == 0 {
        return None;
    }
    Some(Function {
        at,
        vendor,
        device: (id >> 16) as u16,
        class: (cfg.read32(at, reg::CLASS) >> 16) as u16,
        header_type: header(cfg, at) & 0x7f,
    })
}

/// The header type byte of `at` (bit 7: a multifunction device).
fn header(cfg: &impl ConfigAccess, at: Bdf) -> u8 {
    (cfg.read32(at, reg::HEADER) >> 16) as u8
}

/// Calls `visit` on every present function: bus 0 first, then the buses behind each
/// PCI-to-PCI bridge as they are found (each bus once, however the bridges name them), until
/// `visit` breaks. Functions 1..8 are looked at only when function 0 says it is
/// multifunction.
pub fn walk<B>(
    cfg: &impl ConfigAccess,
    mut visit: impl FnMut(&Function) -> ControlFlow<B>,
) -> Option<B> {
    let mut seen = [0u64; 4];
    let mut pending = [0u8; 256];
    let (mut head, mut tail) = (0usize, 1usize);
    seen[0] |= 1;
    while head < tail {
        let bus = pending[head];
        head += 1;
        for device in 0..32 {
            let first = Bdf {
                bus,
                device,
                function: 0,
            };
            if function(cfg, first).is_none() {
                continue;
            }
            let functions = if header(cfg, first) & 0x80 != 0 { 8 } else { 1 };
            for function_no in 0..functions {
                let at = Bdf {
                    function: function_no,
                    ..first
                };
                let Some(f) = function(cfg, at) else {
                    continue;
                };
                if let ControlFlow::Break(b) = visit(&f) {
                    return Some(b);
                }
                if f.header_type == 1 {
                    let secondary = (cfg.read32(at, reg::BUSES) >> 8) as u8;
                    let (word, bit) = (usize::from(secondary / 64), secondary % 64);
                    if seen[word] & (1 << bit) == 0 && tail < pending.len() {
                        seen[word] |= 1 << bit;
                        pending[tail] = secondary;
                        tail += 1;
                    }
                }
            }
        }
    }
    None
}

/// The virtio block device the walk finds after `n` others (`n` = 0: the first).
pub fn nth_virtio_blk(cfg: &impl ConfigAccess, n: usize) -> Option<Function> {
    let mut left = n;
    walk(cfg, |f| match (f.is_virtio_blk(), left) {
        (true, 0) => ControlFlow::Break(*f),
        (true, _) => {
            left -= 1;
            ControlFlow::Continue(())
        }
        (false, _) => ControlFlow::Continue(()),
    })
}

/// What a base address register holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    /// A memory window at `address` (0: not assigned).
    Memory {
        /// Its physical address.
        address: u64,
        /// Whether it is a 64-bit BAR (it takes this register and the next).
        wide: bool,
        /// Whether it is prefetchable.
        prefetchable: bool,
    },
    /// An I/O port window at `port` (0: not assigned).
    Io {
        /// Its first port.
        port: u32,
    },
}

/// Why a BAR could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarError {
    /// Index 6 or beyond (a device header has BARs 0..6).
    NoSuchBar(u8),
    /// A 64-bit BAR in the last register, with no register for its high half.
    TruncatedWide(u8),
    /// A memory BAR of the reserved type 0b11 (or the obsolete below-1-MiB type 0b01).
    ReservedType(u8),
}

impl fmt::Display for BarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchBar(i) => write!(f, "BAR {i} does not exist"),
            Self::TruncatedWide(i) => write!(f, "BAR {i} is 64-bit but the last one"),
            Self::ReservedType(i) => write!(f, "BAR {i} has a reserved memory type"),
        }
    }
}

/// Decodes BAR `index` from its register value `low` and, for a 64-bit memory BAR, the next
/// register's `high` (`None` when there is no next register).
pub fn decode_bar(index: u8, low: u32, high: Option<u32>) -> Result<Bar, BarError> {
    if low & 1 != 0 {
        return Ok(Bar::Io { port: low & !0x3 });
    }
    let prefetchable = low & 0x8 != 0;
    let base = u64::from(low & !0xf);
    match (low >> 1) & 0x3 {
        0 => Ok(Bar::Memory {
            address: base,
            wide: false,
            prefetchable,
        }),
        2 => {
            let high = high.ok_or(BarError::TruncatedWide(index))?;
            Ok(Bar::Memory {
                address: base | (u64::from(high) << 32),
                wide: true,
                prefetchable,
            })
        }
        _ => Err(BarError::ReservedType(index)),
    }
}

/// BAR `index` (0..6) of the device function `at`, read and decoded.
pub fn bar(cfg: &impl ConfigAccess, at: Bdf, index: u8) -> Result<Bar, BarError> {
    if index >= 6 {
        return Err(BarError::NoSuchBar(index));
    }
    let low = cfg.read32(at, reg::BAR0 + 4 * index);
    let high = (index < 5).then(|| cfg.read32(at, reg::BAR0 + 4 * (index + 1)));
    decode_bar(index, low, high)
}

/// Calls `visit` on each decodable BAR of device function `at` (a 64-bit BAR once, by its
/// first index), skipping what does not decode.
pub fn for_each_bar(cfg: &impl ConfigAccess, at: Bdf, mut visit: impl FnMut(u8, Bar)) {
    let mut index = 0;
    while index < 6 {
        let b = bar(cfg, at, index);
        if let Ok(b) = b {
            visit(index, b);
        }
        index += match b {
            Ok(Bar::Memory { wide: true, .. }) => 2,
            _ => 1,
        };
    }
}

/// Sets `bits` (from [`command`]) in the command register of `at`, keeping the others and
/// leaving the status bits (write-one-to-clear) alone.
pub fn enable(cfg: &impl ConfigAccess, at: Bdf, bits: u16) {
    let command = cfg.read32(at, reg::COMMAND) as u16;
    cfg.write32(at, reg::COMMAND, u32::from(command | bits));
}

#[cfg(test)]
mod tests;
