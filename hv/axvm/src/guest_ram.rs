//! The VM's RAM as a device sees it ([`GuestMemory`]): virtio queues and buffers are read
//! and written here, checked against the config's RAM regions.

use alloc::sync::Arc;
use alloc::vec::Vec;
use axaddrspace::{AddrSpace, FrameAllocator, GuestPhysAddr, PteFormat};
use axdevice::uart::UartInput;
use axdevice_base::{range_end, GuestMemory, GuestMemoryError};
use axvirtio::console::VirtioConsole;
use axvirtio::VirtioMmio;
use axvmconfig::{MapKind, MemKind, VmConfig};
use spin::Mutex;

/// A VM's RAM regions over its address space. A range is accepted only when it lies wholly
/// inside one RAM region of the config (ROM, reserved regions, devices and passthrough
/// ranges are refused), and the address space then checks the guest's own rights (no
/// write into a RAM region without the write flag).
pub(crate) struct GuestRam<F: PteFormat, M: FrameAllocator> {
    aspace: Arc<Mutex<AddrSpace<F, M>>>,
    /// `(start, end)` of each RAM region.
    ram: Vec<(u64, u64)>,
}

impl<F: PteFormat, M: FrameAllocator> GuestRam<F, M> {
    /// The RAM regions of `config` in `aspace`.
    pub(crate) fn new(aspace: Arc<Mutex<AddrSpace<F, M>>>, config: &VmConfig) -> Self {
        let ram = config
            .memory
            .iter()
            .filter(|r| r.kind == MemKind::Ram && r.map != MapKind::Reserved)
            .filter_map(|r| Some((r.gpa, r.gpa.checked_add(r.size)?)))
            .collect();
        Self { aspace, ram }
    }

    /// The start of `gpa..gpa + len` as an address, if it is wholly in one RAM region.
    fn check(&self, gpa: u64, len: usize) -> Result<GuestPhysAddr, GuestMemoryError> {
        let end = range_end(gpa, len)?;
        if !self.ram.iter().any(|&(s, e)| s <= gpa && end <= e) {
            return Err(GuestMemoryError::NotRam);
        }
        let at = usize::try_from(gpa).map_err(|_| GuestMemoryError::NotRam)?;
        Ok(GuestPhysAddr::new(at))
    }
}

impl<F: PteFormat, M: FrameAllocator> GuestMemory for GuestRam<F, M>
where
    AddrSpace<F, M>: Send,
{
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let at = self.check(gpa, buf.len())?;
        self.aspace
            .lock()
            .read(at, buf)
            .map_err(|_| GuestMemoryError::NotRam)
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        let at = self.check(gpa, data.len())?;
        self.aspace
            .lock()
            .write(at, data)
            .map_err(|_| GuestMemoryError::NotRam)
    }
}

/// Console input for a VM whose console is a virtio-console.
pub(crate) struct VirtioConsoleInput(pub(crate) Arc<VirtioMmio<VirtioConsole>>);

impl UartInput for VirtioConsoleInput {
    fn feed(&self, bytes: &[u8]) -> usize {
        self.0.with_device(|c| c.push_input(bytes))
    }
}
