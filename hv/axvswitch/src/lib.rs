//! The virtual Ethernet switch that links VMs' network devices inside the hypervisor.
//!
//! A [`Switch`] has a fixed number of [`PortId`]s (one per virtio-net device a config
//! connects). A frame sent from a port is checked (length, a unicast source address), its
//! source address is learned for that port, and it is queued on:
//!
//! - the learned port of its destination, when the destination is a known unicast address
//!   on another port;
//! - every other attached port, when the destination is broadcast, multicast or not learned
//!   yet (flooding);
//! - nowhere, when the destination was learned on the sending port itself (filtered).
//!
//! Every bound is fixed when the switch is made ([`SwitchConfig`]): frames per port queue,
//! bytes per frame, entries in the address table. A port whose queue is full loses the new
//! frame, counted in its [`PortStats::dropped_full`]; the table, when full, forgets its
//! least recently seen entry. So the memory a switch can hold is at most
//! `ports × queue_frames × max_frame` bytes of frames plus the table, whatever its VMs send
//! (a VM flooding the switch fills the queues of the others, which then drop).
//!
//! A port is [detached](Switch::detach) when its VM stops: its queue is emptied, the
//! addresses learned on it are forgotten, and frames are no longer queued for it; the other
//! ports keep working. [`Switch::attach`] brings it back (the VM restarted).
//!
//! The switch neither reads nor changes anything past the Ethernet header; it has no
//! architecture code and no `unsafe`.
#![no_std]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

#[cfg(test)]
mod tests;

/// Bytes in an Ethernet header: destination, source, EtherType.
pub const ETH_HEADER: usize = 14;

/// The most ports a switch has ([`PortSet`] is one bit per port).
pub const MAX_PORTS: usize = 64;

/// An Ethernet (MAC) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// Whether this is a group (multicast or broadcast) address: the I/G bit, the low bit
    /// of the first byte.
    pub fn is_group(self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// One port of a switch: an index below [`SwitchConfig::ports`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub usize);

/// A set of ports (one bit each): where a frame was queued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortSet(u64);

impl PortSet {
    /// The empty set.
    pub const EMPTY: PortSet = PortSet(0);

    /// Whether `port` is in the set.
    pub fn contains(self, port: PortId) -> bool {
        port.0 < MAX_PORTS && self.0 & (1 << port.0) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many ports are in the set.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The ports in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = PortId> {
        (0..MAX_PORTS)
            .filter(move |&i| self.0 & (1 << i) != 0)
            .map(PortId)
    }

    fn insert(&mut self, port: PortId) {
        self.0 |= 1 << port.0;
    }
}

/// The fixed bounds of a switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Ports (1..=[`MAX_PORTS`]).
    pub ports: usize,
    /// Frames a port's queue holds before new ones for it are dropped (at least 1).
    pub queue_frames: usize,
    /// The longest frame accepted, header included (at least [`ETH_HEADER`]).
    pub max_frame: usize,
    /// Entries in the address table (at least 1).
    pub table_entries: usize,
}

impl SwitchConfig {
    /// `ports` ports with the defaults: 256 frames per queue, 1514-byte frames (a 1500-byte
    /// MTU), 256 addresses.
    pub fn with_ports(ports: usize) -> Self {
        Self {
            ports,
            queue_frames: 256,
            max_frame: 1514,
            table_entries: 256,
        }
    }
}

/// Why a switch could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// No ports, or more than [`MAX_PORTS`].
    Ports(usize),
    /// A queue of no frames.
    QueueFrames,
    /// A longest frame shorter than an Ethernet header.
    MaxFrame(usize),
    /// An address table of no entries.
    TableEntries,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ports(n) => write!(f, "{n} ports (1..={MAX_PORTS})"),
            Self::QueueFrames => f.write_str("a queue of 0 frames"),
            Self::MaxFrame(n) => write!(f, "longest frame {n} bytes (at least {ETH_HEADER})"),
            Self::TableEntries => f.write_str("an address table of 0 entries"),
        }
    }
}

/// Why a frame was not switched (the sender's [`PortStats::dropped_bad`] counts it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The port does not exist.
    NoSuchPort(PortId),
    /// The port is detached (its VM is stopped).
    Detached(PortId),
    /// Shorter than an Ethernet header.
    TooShort(usize),
    /// Longer than [`SwitchConfig::max_frame`].
    TooLong(usize),
    /// The source address is a group address (no NIC sends from one).
    GroupSource(Mac),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchPort(p) => write!(f, "no port {}", p.0),
            Self::Detached(p) => write!(f, "port {} is detached", p.0),
            Self::TooShort(n) => write!(f, "frame of {n} bytes (shorter than a header)"),
            Self::TooLong(n) => write!(f, "frame of {n} bytes (too long)"),
            Self::GroupSource(m) => write!(f, "group source address {m}"),
        }
    }
}

/// A port's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames accepted from this port.
    pub sent: u64,
    /// Frames queued for this port.
    pub queued: u64,
    /// Frames taken from this port's queue.
    pub received: u64,
    /// Frames for this port dropped because its queue was full.
    pub dropped_full: u64,
    /// Frames from this port refused ([`SendError`]).
    pub dropped_bad: u64,
}

#[derive(Debug)]
struct Port {
    attached: bool,
    queue: VecDeque<Vec<u8>>,
    stats: PortStats,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: Mac,
    port: PortId,
    /// When the address was last seen as a source (the switch's send count).
    seen: u64,
}

/// The switch: ports, their queues and the address table.
#[derive(Debug)]
pub struct Switch {
    config: SwitchConfig,
    ports: Vec<Port>,
    table: Vec<Entry>,
    clock: u64,
}

impl Switch {
    /// A switch with `config`'s bounds, every port attached and empty.
    pub fn new(config: SwitchConfig) -> Result<Self, ConfigError> {
        if config.ports == 0 || config.ports > MAX_PORTS {
            return Err(ConfigError::Ports(config.ports));
        }
        if config.queue_frames == 0 {
            return Err(ConfigError::QueueFrames);
        }
        if config.max_frame < ETH_HEADER {
            return Err(ConfigError::MaxFrame(config.max_frame));
        }
        if config.table_entries == 0 {
            return Err(ConfigError::TableEntries);
        }
        let ports = (0..config.ports)
            .map(|_| Port {
                attached: true,
                queue: VecDeque::new(),
                stats: PortStats::default(),
            })
            .collect();
        Ok(Self {
            config,
            ports,
            table: Vec::new(),
            clock: 0,
        })
    }

    /// The switch's bounds.
    pub fn config(&self) -> SwitchConfig {
        self.config
    }

    /// Switches `frame` sent from `from`; returns the ports it was queued on (empty when it
    /// was filtered or every destination queue was full).
    pub fn send(&mut self, from: PortId, frame: &[u8]) -> Result<PortSet, SendError> {
        let checked = self.check(from, frame);
        let port = match self.ports.get_mut(from.0) {
            Some(port) => port,
            None => return Err(SendError::NoSuchPort(from)),
        };
        let (dst, src) = match checked {
            Ok(addrs) => addrs,
            Err(e) => {
                port.stats.dropped_bad += 1;
                return Err(e);
            }
        };
        port.stats.sent += 1;
        self.clock += 1;
        // Looked up before learning: learning the source in a full table must not evict
        // the destination this frame is for.
        let targets = if dst.is_group() {
            None
        } else {
            self.lookup(dst)
        };
        self.learn(src, from);
        let mut queued = PortSet::EMPTY;
        match targets {
            Some(to) if to == from => {}
            Some(to) => self.enqueue(to, frame, &mut queued),
            None => {
                for i in 0..self.ports.len() {
                    if i != from.0 {
                        self.enqueue(PortId(i), frame, &mut queued);
                    }
                }
            }
        }
        Ok(queued)
    }

    /// The oldest frame queued for `port`, if any.
    pub fn recv(&mut self, port: PortId) -> Option<Vec<u8>> {
        let port = self.ports.get_mut(port.0)?;
        let frame = port.queue.pop_front()?;
        port.stats.received += 1;
        Some(frame)
    }

    /// The length of the oldest frame queued for `port` (a device checks it fits the
    /// guest's buffer before taking it).
    pub fn peek_len(&self, port: PortId) -> Option<usize> {
        self.ports.get(port.0)?.queue.front().map(Vec::len)
    }

    /// Frames queued for `port`.
    pub fn pending(&self, port: PortId) -> usize {
        self.ports.get(port.0).map_or(0, |p| p.queue.len())
    }

    /// `port`'s counters (`None` for a port that does not exist).
    pub fn stats(&self, port: PortId) -> Option<PortStats> {
        self.ports.get(port.0).map(|p| p.stats)
    }

    /// Whether `port` exists and is attached.
    pub fn is_attached(&self, port: PortId) -> bool {
        self.ports.get(port.0).is_some_and(|p| p.attached)
    }

    /// Takes `port` out (its VM stopped): its queue is emptied, the addresses learned on it
    /// forgotten, and nothing is queued for it or accepted from it until
    /// [`attach`](Self::attach). Counters stay.
    pub fn detach(&mut self, port: PortId) {
        if let Some(p) = self.ports.get_mut(port.0) {
            p.attached = false;
            p.queue = VecDeque::new();
            self.table.retain(|e| e.port != port);
        }
    }

    /// Puts `port` back (its VM restarted), empty.
    pub fn attach(&mut self, port: PortId) {
        if let Some(p) = self.ports.get_mut(port.0) {
            p.attached = true;
        }
    }

    /// The port `mac` was learned on, if it is in the table.
    pub fn lookup(&self, mac: Mac) -> Option<PortId> {
        self.table.iter().find(|e| e.mac == mac).map(|e| e.port)
    }

    /// Addresses in the table.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// The destination and source of a frame `from` may send.
    fn check(&self, from: PortId, frame: &[u8]) -> Result<(Mac, Mac), SendError> {
        let port = self.ports.get(from.0).ok_or(SendError::NoSuchPort(from))?;
        if !port.attached {
            return Err(SendError::Detached(from));
        }
        if frame.len() > self.config.max_frame {
            return Err(SendError::TooLong(frame.len()));
        }
        let (dst, src) = match (frame.get(0..6), frame.get(6..12)) {
            (Some(d), Some(s)) if frame.len() >= ETH_HEADER => (mac_of(d), mac_of(s)),
            _ => return Err(SendError::TooShort(frame.len())),
        };
        if src.is_group() {
            return Err(SendError::GroupSource(src));
        }
        Ok((dst, src))
    }

    /// Records that `mac` is behind `port` now; a full table forgets its least recently
    /// seen entry.
    fn learn(&mut self, mac: Mac, port: PortId) {
        let now = self.clock;
        if let Some(e) = self.table.iter_mut().find(|e| e.mac == mac) {
            e.port = port;
            e.seen = now;
            return;
        }
        let entry = Entry {
            mac,
            port,
            seen: now,
        };
        if self.table.len() < self.config.table_entries {
            self.table.push(entry);
        } else if let Some(oldest) = self.table.iter_mut().min_by_key(|e| e.seen) {
            *oldest = entry;
        }
    }

    /// Queues a copy of `frame` on `to` when it is attached and has room, else counts the
    /// drop.
    fn enqueue(&mut self, to: PortId, frame: &[u8], queued: &mut PortSet) {
        let limit = self.config.queue_frames;
        let Some(port) = self.ports.get_mut(to.0) else {
            return;
        };
        if !port.attached {
            return;
        }
        if port.queue.len() >= limit {
            port.stats.dropped_full += 1;
            return;
        }
        port.queue.push_back(frame.to_vec());
        port.stats.queued += 1;
        queued.insert(to);
    }
}

fn mac_of(bytes: &[u8]) -> Mac {
    let mut mac = [0; 6];
    mac.copy_from_slice(bytes);
    Mac(mac)
}
