//! What a virtio device implements, and the queue access it gets from the transport.

use crate::queue::{Chain, Queue, QueueError};
use axdevice_base::{AccessWidth, DeviceError, GuestMemory};
use virtio_drivers::transport::DeviceType;

/// A virtio device behind a [`VirtioMmio`](crate::VirtioMmio) transport.
///
/// The transport owns the registers, feature negotiation, the status state machine and
/// the queues; the device owns its type, its feature bits, its config space and what
/// happens when the driver kicks a queue. All methods run under the transport's lock.
///
/// A device never trusts a chain: it bounds what it reads and writes (lengths are the
/// guest's) and returns a [`QueueError`] for a chain it cannot use; the transport then
/// sets `DEVICE_NEEDS_RESET` and stops calling it until the driver resets the device.
pub trait VirtioDevice: Send {
    /// The virtio device type (`DeviceID`).
    fn device_type(&self) -> DeviceType;

    /// The device-specific feature bits offered (the transport adds
    /// [`VIRTIO_F_VERSION_1`](crate::VIRTIO_F_VERSION_1)).
    fn features(&self) -> u64;

    /// How many virtqueues the device has (queues `0..n`).
    fn num_queues(&self) -> usize;

    /// A driver load of `width` at `offset` into the device's config space.
    fn config_read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError>;

    /// A driver store into the config space. The default ignores it (read-only config).
    fn config_write(
        &mut self,
        offset: usize,
        width: AccessWidth,
        value: u64,
    ) -> Result<(), DeviceError> {
        let _ = (offset, width, value);
        Ok(())
    }

    /// The driver set `DRIVER_OK`; `features` is what was negotiated.
    fn activate(&mut self, features: u64) {
        let _ = features;
    }

    /// The driver wrote `queue` to `QueueNotify` (already checked to be `< num_queues()`).
    fn notify(&mut self, queue: usize, io: &mut QueueIo<'_>) -> Result<(), QueueError>;

    /// Work that arrived from outside the guest (console input, a network frame): called
    /// by [`VirtioMmio::poll`](crate::VirtioMmio::poll) while the device is live. The
    /// default does nothing.
    fn poll(&mut self, io: &mut QueueIo<'_>) -> Result<(), QueueError> {
        let _ = io;
        Ok(())
    }

    /// The driver reset the device (status 0): forget negotiated state and in-flight work.
    fn reset(&mut self);
}

/// A device's access to its queues during [`VirtioDevice::notify`] or
/// [`VirtioDevice::poll`]: take chains, give them back, and ask for an interrupt.
pub struct QueueIo<'a> {
    mem: &'a dyn GuestMemory,
    queues: &'a mut [Queue],
    used: bool,
    config_changed: bool,
}

impl<'a> QueueIo<'a> {
    /// Queue access over `queues` in `mem` (the transport builds it; tests may too).
    pub fn new(mem: &'a dyn GuestMemory, queues: &'a mut [Queue]) -> Self {
        Self {
            mem,
            queues,
            used: false,
            config_changed: false,
        }
    }

    /// The VM's RAM, for reading and writing a chain's buffers.
    pub fn mem(&self) -> &'a dyn GuestMemory {
        self.mem
    }

    /// Whether `queue` exists and the driver made it ready.
    pub fn is_ready(&self, queue: usize) -> bool {
        self.queues.get(queue).is_some_and(|q| q.ready)
    }

    /// Takes the next available chain of `queue` (`None`: nothing offered).
    pub fn pop(&mut self, queue: usize) -> Result<Option<Chain>, QueueError> {
        let mem = self.mem;
        self.queues
            .get_mut(queue)
            .ok_or(QueueError::NotReady)?
            .pop(mem)
    }

    /// Gives `chain` back on `queue` with `written` bytes written into it; the transport
    /// raises the used-buffer interrupt when the device returns.
    pub fn push_used(
        &mut self,
        queue: usize,
        chain: &Chain,
        written: u32,
    ) -> Result<(), QueueError> {
        let mem = self.mem;
        self.queues
            .get_mut(queue)
            .ok_or(QueueError::NotReady)?
            .push_used(mem, chain.head, written)?;
        self.used = true;
        Ok(())
    }

    /// The config space changed: the transport bumps `ConfigGeneration` and raises the
    /// configuration-change interrupt.
    pub fn config_changed(&mut self) {
        self.config_changed = true;
    }

    /// Whether a used buffer was pushed, and whether the config changed.
    pub(crate) fn outcome(&self) -> (bool, bool) {
        (self.used, self.config_changed)
    }
}

/// Reads a config-space field from a little-endian byte image of the config: `width`
/// bytes at `offset`, or [`DeviceError::BadOffset`] when they do not fit.
pub fn config_from_bytes(
    bytes: &[u8],
    offset: usize,
    width: AccessWidth,
) -> Result<u64, DeviceError> {
    let end = offset
        .checked_add(width.size())
        .ok_or(DeviceError::BadOffset)?;
    let field = bytes.get(offset..end).ok_or(DeviceError::BadOffset)?;
    let mut v = [0u8; 8];
    v[..field.len()].copy_from_slice(field);
    Ok(u64::from_le_bytes(v))
}
