//! A virtio-blk disk over virtio-mmio or PCI, through the `virtio-drivers` crate, polled.

use crate::DiskError;
use alloc::string::String;
use axfs::{BlockDevice, BlockError, BLOCK_SIZE};
use core::fmt;
use core::ptr::NonNull;
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// DMA memory from the frame allocator, addressed through the identity map.
pub(crate) struct FrameHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned frames owned by nobody else until
// `dma_dealloc` gives them back; the identity map makes every physical address (RAM and
// device windows) valid at the same virtual address, and the device (QEMU's, cache-coherent)
// sees memory as the CPU does, so sharing is the address itself.
unsafe impl Hal for FrameHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match axstd::mem::alloc_frames(pages, PAGE_SIZE) {
            Some(addr) => {
                // SAFETY: `pages` frames at `addr` were just allocated for this use only.
                unsafe { core::ptr::write_bytes(addr as *mut u8, 0, pages * PAGE_SIZE) };
                // `addr` is not null: frame 0 is never handed out (`NonNull` checked anyway).
                match NonNull::new(addr as *mut u8) {
                    Some(p) => (addr as PhysAddr, p),
                    None => (0, NonNull::dangling()),
                }
            }
            // A physical address of 0 is the crate's "no memory" (`Error::DmaError`).
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        axstd::mem::dealloc_frames(paddr as usize, pages);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Where a virtio-blk device sits. `Display`: `0xa003e00` or `PCI 00:03.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A virtio-mmio transport's register window.
    Mmio(usize),
    /// A PCI function.
    Pci(axpci::Bdf),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mmio(base) => write!(f, "{base:#x}"),
            Self::Pci(at) => write!(f, "PCI {at}"),
        }
    }
}

/// A started virtio-blk device on transport `T` (virtio-mmio by default).
pub struct VirtioDisk<T: Transport = MmioTransport<'static>> {
    blk: VirtIOBlk<FrameHal, T>,
    at: Location,
    blocks: u64,
    /// Its serial when that is a name, else `disk<N>` (set by [`crate::open`]).
    name: String,
}

// SAFETY: the device is reached only through `&mut self` (the hypervisor keeps the disk
// behind a lock); its register windows and queue memory belong to this value alone, so moving
// it to another CPU is sound.
unsafe impl<T: Transport> Send for VirtioDisk<T> {}

/// The virtio-blk device behind the transport at `base` (`size` bytes of registers):
/// `Ok(None)` when the transport holds no device or another kind of device.
pub(crate) fn probe(base: usize, size: usize) -> Result<Option<VirtioDisk>, DiskError> {
    let Some(header) = NonNull::new(base as *mut VirtIOHeader) else {
        return Ok(None);
    };
    // SAFETY: `base`/`size` are a `virtio,mmio` node's register window from the device tree,
    // mapped as device memory by the identity map for the whole run, and opened only here
    // (the disk is opened once, at boot).
    let Ok(transport) = (unsafe { MmioTransport::new(header, size) }) else {
        return Ok(None);
    };
    if transport.device_type() != DeviceType::Block {
        return Ok(None);
    }
    start(transport, Location::Mmio(base)).map(Some)
}

/// Starts the block device behind `transport`, found at `at`.
pub(crate) fn start<T: Transport>(transport: T, at: Location) -> Result<VirtioDisk<T>, DiskError> {
    let blk = VirtIOBlk::new(transport).map_err(|e| {
        log::warn!("virtio-blk at {at}: {e}");
        DiskError::Virtio { at }
    })?;
    let blocks = blk.capacity();
    let mut disk = VirtioDisk {
        blk,
        at,
        blocks,
        name: String::new(),
    };
    disk.name = disk.read_serial().unwrap_or_default();
    Ok(disk)
}

impl<T: Transport> VirtioDisk<T> {
    /// Where it sits.
    pub fn location(&self) -> Location {
        self.at
    }

    /// Its name: its serial (QEMU `-device virtio-blk-...,serial=NAME`) when that is 1 to
    /// 20 characters out of `[A-Za-z0-9_-]`, else `disk<N>`, N its place among the
    /// virtio-blk disks found ([`crate::open`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names it `disk<n>` unless its serial named it.
    pub(crate) fn name_by_place(&mut self, n: usize) {
        if self.name.is_empty() {
            self.name = alloc::format!("disk{n}");
        }
    }

    /// Whether the device refuses writes (`VIRTIO_BLK_F_RO`).
    pub fn read_only(&self) -> bool {
        self.blk.readonly()
    }

    /// Asks the device for its serial (`GET_ID`); `None` when it has none, it is refused,
    /// or it is not a name.
    fn read_serial(&mut self) -> Option<String> {
        let mut id = [0u8; 20];
        let len = self.blk.device_id(&mut id).ok()?;
        let id = id.get(..len)?;
        let name = !id.is_empty()
            && id
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        // ASCII, so UTF-8.
        name.then(|| String::from_utf8_lossy(id).into_owned())
    }

    /// Checks a transfer of `len` bytes from block `first`; `false` when there is nothing
    /// to do (an empty buffer).
    fn check(&self, first: u64, len: usize) -> Result<bool, BlockError> {
        if !len.is_multiple_of(BLOCK_SIZE) {
            return Err(BlockError::Misaligned { len });
        }
        let count = (len / BLOCK_SIZE) as u64;
        if first.checked_add(count).is_none_or(|end| end > self.blocks) {
            return Err(BlockError::OutOfRange {
                first,
                count,
                blocks: self.blocks,
            });
        }
        Ok(count > 0)
    }
}

impl<T: Transport> BlockDevice for VirtioDisk<T> {
    fn block_count(&self) -> u64 {
        self.blocks
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        if self.check(first, buf.len())? {
            self.blk
                .read_blocks(first as usize, buf)
                .map_err(|_| BlockError::Io { block: first })?;
        }
        Ok(())
    }

    fn write_blocks(&mut self, first: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.check(first, buf.len())? {
            self.blk
                .write_blocks(first as usize, buf)
                .map_err(|_| BlockError::Io { block: first })?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.blk.flush().map_err(|_| BlockError::Io { block: 0 })
    }
}
