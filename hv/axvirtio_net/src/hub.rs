//! A switch shared by the devices of several VMs, and the wake-up between them.
//!
//! A device sending a frame holds its own transport lock; the ports the frame was queued
//! on belong to other devices, whose locks it must not take then (two VMs sending to each
//! other at once would deadlock). So [`NetPort::send`] only records those ports as
//! pending, and [`NetSwitch::wake_pending`], called once the sender's lock is released,
//! calls their [`PortWaker`]s: the device then moves the frames into its guest's receive
//! buffers and raises its interrupt. Lock order: a device's lock, then the switch's;
//! never the other way.

use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use axvswitch::{ConfigError, PortId, PortStats, SendError, Switch, SwitchConfig, MAX_PORTS};
use core::fmt;
use spin::Mutex;

/// What a port's owner does when frames were queued for it from another port: move them
/// to its guest (`VirtioMmio::poll`). Called with no switch or device lock held.
pub trait PortWaker: Send + Sync {
    /// Frames may be waiting on the port.
    fn wake(&self);
}

/// A [`Switch`] shared by the virtio-net devices of the VMs whose configs name it.
///
/// Its ports start detached; each device [claims](NetSwitch::claim) one for as long as it
/// lives, so frames are flooded only to ports that have a device.
pub struct NetSwitch {
    name: String,
    inner: Mutex<Inner>,
}

struct Inner {
    switch: Switch,
    /// Per port: claimed by a device, and how to wake it.
    ports: Vec<Slot>,
    /// Ports frames were queued on since the last [`NetSwitch::wake_pending`], one bit each.
    pending: u64,
}

#[derive(Default)]
struct Slot {
    claimed: bool,
    waker: Option<Weak<dyn PortWaker>>,
}

/// Why a port could not be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetError {
    /// Every port of the switch has a device.
    Full {
        /// The switch's name.
        switch: String,
        /// Its ports.
        ports: usize,
    },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Full { switch, ports } => {
                write!(f, "switch {switch:?} has all its {ports} ports in use")
            }
        }
    }
}

impl NetSwitch {
    /// A switch named `name` (for messages) with `config`'s bounds, no port claimed.
    pub fn new(name: &str, config: SwitchConfig) -> Result<Arc<Self>, ConfigError> {
        let mut switch = Switch::new(config)?;
        for p in 0..config.ports {
            switch.detach(PortId(p));
        }
        let ports = (0..config.ports).map(|_| Slot::default()).collect();
        Ok(Arc::new(Self {
            name: String::from(name),
            inner: Mutex::new(Inner {
                switch,
                ports,
                pending: 0,
            }),
        }))
    }

    /// The switch's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Claims the first free port (attached, empty) for a device; it is given back when the
    /// [`NetPort`] is dropped.
    pub fn claim(self: &Arc<Self>) -> Result<NetPort, NetError> {
        let mut inner = self.inner.lock();
        let Some(i) = inner.ports.iter().position(|s| !s.claimed) else {
            return Err(NetError::Full {
                switch: self.name.clone(),
                ports: inner.ports.len(),
            });
        };
        inner.ports[i].claimed = true;
        inner.switch.attach(PortId(i));
        Ok(NetPort {
            switch: self.clone(),
            port: PortId(i),
        })
    }

    /// Calls the wakers of the ports frames were queued on since the last call (outside
    /// every lock). Call after a device's work, once its own lock is released.
    pub fn wake_pending(&self) {
        let wakers: Vec<Arc<dyn PortWaker>> = {
            let mut inner = self.inner.lock();
            let pending = core::mem::take(&mut inner.pending);
            (0..MAX_PORTS)
                .filter(|p| pending & (1 << p) != 0)
                .filter_map(|p| inner.ports.get(p)?.waker.as_ref()?.upgrade())
                .collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    /// A port's counters (`None`: no such port).
    pub fn stats(&self, port: PortId) -> Option<PortStats> {
        self.inner.lock().switch.stats(port)
    }

    /// Ports claimed by a device.
    pub fn claimed(&self) -> usize {
        self.inner.lock().ports.iter().filter(|s| s.claimed).count()
    }
}

/// One device's port of a [`NetSwitch`]; dropping it detaches the port (its queue emptied,
/// its addresses forgotten) and frees it for another device.
pub struct NetPort {
    switch: Arc<NetSwitch>,
    port: PortId,
}

/// What [`NetPort::recv`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Recv {
    /// Nothing queued.
    Empty,
    /// The oldest frame.
    Frame(Vec<u8>),
    /// The oldest frame was longer than the room given; it was dropped.
    TooLong(usize),
}

impl NetPort {
    /// The port's index on its switch.
    pub fn id(&self) -> PortId {
        self.port
    }

    /// The switch.
    pub fn switch(&self) -> &Arc<NetSwitch> {
        &self.switch
    }

    /// Who wakes this port's device when frames are queued for it.
    pub fn set_waker(&self, waker: Weak<dyn PortWaker>) {
        if let Some(slot) = self.switch.inner.lock().ports.get_mut(self.port.0) {
            slot.waker = Some(waker);
        }
    }

    /// Sends `frame` into the switch; the ports it was queued on are woken at the next
    /// [`NetSwitch::wake_pending`].
    pub fn send(&self, frame: &[u8]) -> Result<(), SendError> {
        let mut inner = self.switch.inner.lock();
        let to = inner.switch.send(self.port, frame)?;
        for p in to.iter() {
            inner.pending |= 1 << p.0;
        }
        Ok(())
    }

    /// Whether a frame is queued for this port.
    pub fn has_frame(&self) -> bool {
        self.switch.inner.lock().switch.pending(self.port) > 0
    }

    /// Takes the oldest frame queued for this port if it is at most `room` bytes; a longer
    /// one is dropped (so it cannot block the port).
    pub fn recv(&self, room: usize) -> Recv {
        let mut inner = self.switch.inner.lock();
        match inner.switch.recv(self.port) {
            None => Recv::Empty,
            Some(frame) if frame.len() > room => Recv::TooLong(frame.len()),
            Some(frame) => Recv::Frame(frame),
        }
    }

    /// Empties the port and forgets the addresses learned on it (the device was reset).
    pub fn restart(&self) {
        let mut inner = self.switch.inner.lock();
        inner.switch.detach(self.port);
        inner.switch.attach(self.port);
        inner.pending &= !(1 << self.port.0);
    }

    /// The port's counters.
    pub fn stats(&self) -> PortStats {
        self.switch.stats(self.port).unwrap_or_default()
    }

    /// The longest frame the switch carries.
    pub fn max_frame(&self) -> usize {
        self.switch.inner.lock().switch.config().max_frame
    }
}

impl Drop for NetPort {
    fn drop(&mut self) {
        let mut inner = self.switch.inner.lock();
        inner.switch.detach(self.port);
        inner.pending &= !(1 << self.port.0);
        if let Some(slot) = inner.ports.get_mut(self.port.0) {
            *slot = Slot::default();
        }
    }
}
