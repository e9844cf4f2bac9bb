//! virtio-net (virtio 1.2 §5.1), the device side, on the [`axvirtio`] transport, with its
//! frames going to and from a port of a virtual switch ([`axvswitch`]) shared by the
//! devices of several VMs.
//!
//! - [`VirtioNet`]: one receive queue (0) and one transmit queue (1), no control queue.
//!   Features offered: `VIRTIO_NET_F_MAC` only (no checksum or segmentation offload, no
//!   mergeable receive buffers), so every buffer holds the 12-byte [`NetHeader`] then one
//!   whole Ethernet frame.
//! - [`NetSwitch`], [`NetPort`]: the shared switch, one port per device, and the wake-up
//!   of the devices a frame was queued for ([`PortWaker`]).
//! - [`NetMmio`]: the transport around a [`VirtioNet`], the [`MmioDevice`] a VM maps; after
//!   each guest access it wakes the ports its device queued frames on.
//!
//! A guest's frames and chains are untrusted: a transmit chain whose frame is shorter
//! than an Ethernet header, longer than the switch's longest frame, whose header asks for
//! an offload, or whose buffers are not its RAM is dropped and counted; a receive chain too
//! small for the frame waiting gets the frame dropped and is given back empty. Only a chain
//! the transport cannot walk, or a receive buffer that is not RAM, is a [`QueueError`]
//! (the device then needs a reset). See `docs/virtio.md` (virtio-net) for the threat note.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

mod hub;

pub use axvswitch::{Mac, PortId, PortStats, SwitchConfig, MAX_PORTS};
pub use hub::{NetError, NetPort, NetSwitch, PortWaker, Recv};

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use axdevice_base::{AccessWidth, DeviceError, GuestMemory, IrqLine, MmioDevice};
use axvirtio::queue::QUEUE_MAX;
use axvirtio::{
    config_from_bytes, DeviceType, QueueError, QueueIo, VirtioDevice, VirtioMmio, VirtioReset,
    MMIO_SIZE,
};
use axvswitch::ETH_HEADER;

/// `VIRTIO_NET_F_MAC`: the config space holds the device's MAC address.
pub const F_MAC: u64 = 1 << 5;

/// The receive queue.
pub const RECEIVEQ: usize = 0;
/// The transmit queue.
pub const TRANSMITQ: usize = 1;

/// Bytes of `struct virtio_net_hdr` before each frame (virtio 1.x always has
/// `num_buffers`).
pub const HEADER_LEN: usize = 12;

/// `VIRTIO_NET_S_LINK_UP` in the config's `status`.
const LINK_UP: u16 = 1;

/// The config space: `mac` (6 bytes), `status` (LINK_UP), `max_virtqueue_pairs` (1).
const CONFIG_LEN: usize = 10;

/// The `struct virtio_net_hdr` the device writes before a received frame: no flags, no
/// segmentation, one buffer.
pub const RX_HEADER: [u8; HEADER_LEN] = {
    let mut h = [0u8; HEADER_LEN];
    // num_buffers = 1 (little-endian u16 at 10).
    h[10] = 1;
    h
};

/// Frames the device moved and dropped, as its guest caused them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames the guest sent that the switch took.
    pub tx_frames: u64,
    /// Transmit chains dropped: bad length, an offload asked for, buffers not RAM, or
    /// refused by the switch.
    pub tx_dropped: u64,
    /// Frames written into the guest's receive buffers.
    pub rx_frames: u64,
    /// Frames dropped because the guest's receive chain was too small for them.
    pub rx_dropped: u64,
}

/// A virtio network device on a switch port; wrap it in a [`NetMmio`].
pub struct VirtioNet {
    port: NetPort,
    config: [u8; CONFIG_LEN],
    /// Header and frame of one transmit chain (the switch's longest frame).
    buf: Vec<u8>,
    stats: NetStats,
}

impl VirtioNet {
    /// A device with address `mac` on `port`.
    pub fn new(mac: Mac, port: NetPort) -> Self {
        let mut config = [0u8; CONFIG_LEN];
        config[0..6].copy_from_slice(&mac.0);
        config[6..8].copy_from_slice(&LINK_UP.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        let buf = vec![0; HEADER_LEN + port.max_frame()];
        Self {
            port,
            config,
            buf,
            stats: NetStats::default(),
        }
    }

    /// The device's MAC address.
    pub fn mac(&self) -> Mac {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.config[0..6]);
        Mac(mac)
    }

    /// Its counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Its switch port.
    pub fn port(&self) -> &NetPort {
        &self.port
    }

    /// Sends every offered transmit chain into the switch.
    fn drain_tx(&mut self, io: &mut QueueIo<'_>) -> Result<(), QueueError> {
        for _ in 0..QUEUE_MAX {
            let Some(chain) = io.pop(TRANSMITQ)? else {
                break;
            };
            if self.send_chain(io.mem(), &chain) {
                self.stats.tx_frames += 1;
            } else {
                self.stats.tx_dropped += 1;
            }
            io.push_used(TRANSMITQ, &chain, 0)?;
        }
        Ok(())
    }

    /// Sends one chain's frame; `false` when it is dropped.
    fn send_chain(&mut self, mem: &dyn GuestMemory, chain: &axvirtio::Chain) -> bool {
        let len = chain.readable_len();
        let min = (HEADER_LEN + ETH_HEADER) as u64;
        if len < min || len > self.buf.len() as u64 {
            return false;
        }
        // len <= buf.len(), a usize.
        let buf = &mut self.buf[..len as usize];
        match chain.read(mem, 0, buf) {
            Ok(n) if n == buf.len() => {}
            _ => return false,
        }
        // flags (NEEDS_CSUM, DATA_VALID) and gso_type: no offload was offered.
        if buf[0] != 0 || buf[1] != 0 {
            return false;
        }
        self.port.send(&buf[HEADER_LEN..]).is_ok()
    }

    /// Moves waiting frames into the receive buffers the driver offered.
    fn fill_rx(&mut self, io: &mut QueueIo<'_>) -> Result<(), QueueError> {
        for _ in 0..QUEUE_MAX {
            if !io.is_ready(RECEIVEQ) || !self.port.has_frame() {
                break;
            }
            let Some(chain) = io.pop(RECEIVEQ)? else {
                break;
            };
            let room = chain.writable_len().saturating_sub(HEADER_LEN as u64);
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            let written = match self.port.recv(room) {
                Recv::Frame(frame) => {
                    chain.write(io.mem(), 0, &RX_HEADER)?;
                    chain.write(io.mem(), HEADER_LEN as u64, &frame)?;
                    self.stats.rx_frames += 1;
                    // At most the switch's longest frame plus the header.
                    (HEADER_LEN + frame.len()) as u32
                }
                Recv::TooLong(_) => {
                    self.stats.rx_dropped += 1;
                    0
                }
                // Taken by a reset between the check and here: give the chain back empty.
                Recv::Empty => 0,
            };
            io.push_used(RECEIVEQ, &chain, written)?;
        }
        Ok(())
    }
}

impl VirtioDevice for VirtioNet {
    fn device_type(&self) -> DeviceType {
        DeviceType::Network
    }

    fn features(&self) -> u64 {
        F_MAC
    }

    fn num_queues(&self) -> usize {
        2
    }

    fn config_read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        config_from_bytes(&self.config, offset, width)
    }

    fn notify(&mut self, queue: usize, io: &mut QueueIo<'_>) -> Result<(), QueueError> {
        if queue == TRANSMITQ {
            self.drain_tx(io)?;
        }
        self.fill_rx(io)
    }

    fn poll(&mut self, io: &mut QueueIo<'_>) -> Result<(), QueueError> {
        self.fill_rx(io)
    }

    fn reset(&mut self) {
        self.port.restart();
    }
}

/// The virtio-mmio transport around a [`VirtioNet`]: the [`MmioDevice`] a VM maps. After
/// every guest access it wakes the devices its own queued frames for
/// ([`NetSwitch::wake_pending`]), with its own lock released; it is woken the same way
/// ([`PortWaker`]).
pub struct NetMmio {
    inner: VirtioMmio<VirtioNet>,
    switch: Arc<NetSwitch>,
}

impl NetMmio {
    /// The transport for `dev`, named `name` in logs, reading queues through `mem` and
    /// interrupting on `irq`; registered as its port's waker.
    pub fn new(
        name: impl Into<String>,
        dev: VirtioNet,
        mem: Arc<dyn GuestMemory>,
        irq: Arc<dyn IrqLine>,
    ) -> Arc<Self> {
        let switch = dev.port.switch().clone();
        let this = Arc::new(Self {
            inner: VirtioMmio::new(name, dev, mem, irq),
            switch,
        });
        let waker: alloc::sync::Weak<dyn PortWaker> = Arc::downgrade(&this) as _;
        this.inner.with_device(|d| d.port.set_waker(waker));
        this
    }

    /// Runs `f` on the device (e.g. to read its counters).
    pub fn with_device<R>(&self, f: impl FnOnce(&mut VirtioNet) -> R) -> R {
        let r = self.inner.with_device(f);
        self.switch.wake_pending();
        r
    }

    /// The transport (for its status in tests and `vm stat`).
    pub fn transport(&self) -> &VirtioMmio<VirtioNet> {
        &self.inner
    }
}

impl PortWaker for NetMmio {
    fn wake(&self) {
        self.inner.poll();
    }
}

impl VirtioReset for NetMmio {
    fn reset(&self) {
        VirtioReset::reset(&self.inner);
    }
}

impl MmioDevice for NetMmio {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn size(&self) -> usize {
        MMIO_SIZE
    }

    fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        self.inner.read(offset, width)
    }

    fn write(&self, offset: usize, width: AccessWidth, value: u64) -> Result<(), DeviceError> {
        let r = self.inner.write(offset, width, value);
        self.switch.wake_pending();
        r
    }
}

#[cfg(test)]
mod tests;
