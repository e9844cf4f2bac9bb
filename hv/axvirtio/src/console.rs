//! virtio-console (virtio 1.2 §5.3): one port, no optional features. Linux calls it `hvc0`.
//!
//! Queue 0 (receiveq) carries input to the guest: bytes handed to
//! [`VirtioConsole::push_input`] wait (at most [`INPUT_CAP`]) until the driver offers
//! writable buffers, across a device reset. Queue 1 (transmitq) carries output: each
//! chain's readable bytes go to the VM's [`ConsoleSink`] (the same labelled-line sink a
//! UART feeds). A chain carrying more than [`TX_CHAIN_MAX`] bytes has the rest dropped, so
//! a guest cannot make one kick cost more than that.

use crate::device::{config_from_bytes, QueueIo, VirtioDevice};
use crate::queue::{QueueError, QUEUE_MAX};
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use axdevice_base::{AccessWidth, ConsoleSink, DeviceError};
use virtio_drivers::transport::DeviceType;

/// How many input bytes wait for the guest at most; more are refused.
pub const INPUT_CAP: usize = 4096;

/// How many bytes of one transmit chain reach the sink; the rest are dropped.
pub const TX_CHAIN_MAX: u64 = 64 * 1024;

const RECEIVEQ: usize = 0;
const TRANSMITQ: usize = 1;

/// The config space: `cols`, `rows` (u16), `max_nr_ports`, `emerg_wr` (u32); all zero, as
/// none of the features that give them meaning is offered.
const CONFIG: [u8; 12] = [0; 12];

/// A virtio console device; wrap it in a [`VirtioMmio`](crate::VirtioMmio).
pub struct VirtioConsole {
    sink: Arc<dyn ConsoleSink>,
    input: VecDeque<u8>,
}

impl VirtioConsole {
    /// A console whose output goes to `sink`.
    pub fn new(sink: Arc<dyn ConsoleSink>) -> Self {
        Self {
            sink,
            input: VecDeque::new(),
        }
    }

    /// Queues `bytes` for the guest; returns how many were taken (the rest did not fit in
    /// [`INPUT_CAP`]). Use through [`VirtioMmio::with_device`](crate::VirtioMmio::with_device)
    /// so they are delivered at once when the driver has buffers.
    pub fn push_input(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(INPUT_CAP - self.input.len());
        self.input.extend(&bytes[..n]);
        n
    }

    /// Moves waiting input into the receive buffers the driver offered.
    fn fill_rx(&mut self, io: &mut QueueIo<'_>) -> Result<(), QueueError> {
        // At most a queue's worth per call: a guest racing more buffers in cannot keep us.
        for _ in 0..QUEUE_MAX {
            if self.input.is_empty() || !io.is_ready(RECEIVEQ) {
                break;
            }
            let Some(chain) = io.pop(RECEIVEQ)? else {
                break;
            };
            let (a, b) = self.input.as_slices();
            let mut written = chain.write(io.mem(), 0, a)?;
            if written == a.len() {
                written += chain.write(io.mem(), written as u64, b)?;
            }
            self.input.drain(..written);
            // written <= the chain's writable length, which fits in u32 per segment; a
            // chain longer than u32::MAX reports u32::MAX (more input than that never waits).
            io.push_used(RECEIVEQ, &chain, u32::try_from(written).unwrap_or(u32::MAX))?;
        }
        Ok(())
    }

    /// Sends every offered transmit chain to the sink.
    fn drain_tx(&mut self, io: &mut QueueIo<'_>) -> Result<(), QueueError> {
        let mut buf = [0u8; 256];
        for _ in 0..QUEUE_MAX {
            let Some(chain) = io.pop(TRANSMITQ)? else {
                break;
            };
            let total = chain.readable_len().min(TX_CHAIN_MAX);
            let mut done = 0;
            while done < total {
                let want = (total - done).min(buf.len() as u64) as usize;
                let n = chain.read(io.mem(), done, &mut buf[..want])?;
                self.sink.write(&buf[..n]);
                done += n as u64;
            }
            io.push_used(TRANSMITQ, &chain, 0)?;
        }
        Ok(())
    }
}

impl VirtioDevice for VirtioConsole {
    fn device_type(&self) -> DeviceType {
        DeviceType::Console
    }

    fn features(&self) -> u64 {
        0
    }

    fn num_queues(&self) -> usize {
        2
    }

    fn config_read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        config_from_bytes(&CONFIG, offset, width)
    }

    fn notify(&mut self, queue: usize, io: &mut QueueIo<'_>) -> Result<(), QueueError> {
        match queue {
            TRANSMITQ => self.drain_tx(io),
            _ => self.fill_rx(io),
        }
    }

    fn poll(&mut self, io: &mut QueueIo<'_>) -> Result<(), QueueError> {
        self.fill_rx(io)
    }

    /// Keeps the input that waits for receive buffers: those bytes were typed into the
    /// terminal, not handed to the driver (QEMU's console leaves them in its host-side
    /// character device the same way). A driver resets the device as the first step of
    /// its bring-up, so clearing them lost whatever was typed before it was up
    /// (`riscv64-virtio-console-input` saw `nto hvc` of `typed into hvc` so).
    fn reset(&mut self) {}
}
