//! Host tests: guests driven through the transport's registers and split queues in
//! `FlatMemory`, two or three devices on switches, including hostile chains.

use crate::{NetError, NetMmio, NetSwitch, VirtioNet, F_MAC, HEADER_LEN, RECEIVEQ, TRANSMITQ};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use axdevice_base::{AccessWidth, GuestMemory, IrqLine, MmioDevice};
use axvirtio::mem::FlatMemory;
use axvirtio::{regs, DeviceStatus, VirtioReset, VIRTIO_F_VERSION_1};
use axvswitch::{Mac, SwitchConfig};
use core::sync::atomic::{AtomicBool, Ordering};

const RAM: u64 = 0x4000_0000;
const RAM_SIZE: usize = 0x20000;
const QSIZE: u16 = 8;
const NEXT: u16 = 1;
const WRITE: u16 = 2;
/// Receive buffers: `RX_BUF + i * RX_STRIDE`.
const RX_BUF: u64 = RAM + 0x8000;
const RX_STRIDE: u64 = 0x800;
/// The transmit buffer.
const TX_BUF: u64 = RAM + 0x10000;

#[derive(Default)]
struct Line(AtomicBool);
impl IrqLine for Line {
    fn set_level(&self, high: bool) {
        assert_ne!(self.0.swap(high, Ordering::SeqCst), high, "level unchanged");
    }
}

/// Queue `q`'s areas: descriptors, available ring, used ring.
fn areas(q: usize) -> (u64, u64, u64) {
    let at = RAM + q as u64 * 0x3000;
    (at, at + 0x1000, at + 0x2000)
}

fn mac(last: u8) -> Mac {
    Mac([0x02, 0, 0, 0, 0, last])
}

/// An Ethernet frame from `src` to `dst` with `payload`.
fn frame(dst: Mac, src: Mac, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(payload);
    f
}

/// One guest: its RAM, its interrupt line, its device, its driver's ring indices.
struct Guest {
    mem: Arc<FlatMemory>,
    line: Arc<Line>,
    dev: Arc<NetMmio>,
    avail: [u16; 2],
    /// Used entries of each queue already looked at.
    seen: [u16; 2],
    /// The next free descriptor of each queue.
    next_desc: [u16; 2],
}

impl Guest {
    fn new(switch: &Arc<NetSwitch>, last: u8) -> Self {
        let mem = Arc::new(FlatMemory::new(RAM, RAM_SIZE));
        let line = Arc::new(Line::default());
        let port = switch.claim().unwrap();
        let dev = NetMmio::new(
            "virtio-net",
            VirtioNet::new(mac(last), port),
            mem.clone(),
            line.clone(),
        );
        let g = Self {
            mem,
            line,
            dev,
            avail: [0; 2],
            seen: [0; 2],
            next_desc: [0; 2],
        };
        g.bring_up();
        g
    }

    fn rd(&self, off: usize) -> u32 {
        self.dev.read(off, AccessWidth::Word).unwrap() as u32
    }

    fn wr(&self, off: usize, v: u32) {
        self.dev
            .write(off, AccessWidth::Word, u64::from(v))
            .unwrap();
    }

    fn status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.rd(regs::STATUS))
    }

    fn bring_up(&self) {
        use DeviceStatus as S;
        self.wr(regs::STATUS, 0);
        self.wr(regs::STATUS, (S::ACKNOWLEDGE | S::DRIVER).bits());
        let features = VIRTIO_F_VERSION_1 | F_MAC;
        self.wr(regs::DRIVER_FEATURES_SEL, 0);
        self.wr(regs::DRIVER_FEATURES, features as u32);
        self.wr(regs::DRIVER_FEATURES_SEL, 1);
        self.wr(regs::DRIVER_FEATURES, (features >> 32) as u32);
        self.wr(
            regs::STATUS,
            (S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK).bits(),
        );
        for q in 0..2 {
            let (d, a, u) = areas(q);
            self.wr(regs::QUEUE_SEL, q as u32);
            self.wr(regs::QUEUE_NUM, u32::from(QSIZE));
            self.wr(regs::QUEUE_DESC_LOW, d as u32);
            self.wr(regs::QUEUE_DRIVER_LOW, a as u32);
            self.wr(regs::QUEUE_DEVICE_LOW, u as u32);
            self.wr(regs::QUEUE_READY, 1);
        }
        self.wr(
            regs::STATUS,
            (S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK | S::DRIVER_OK).bits(),
        );
        assert!(self.status().contains(S::DRIVER_OK));
    }

    /// Writes a chain of `(addr, len, writable)` descriptors into queue `q` and offers it.
    fn offer(&mut self, q: usize, segs: &[(u64, u32, bool)]) {
        let (d, a, _) = areas(q);
        let head = self.next_desc[q];
        for (i, &(addr, len, w)) in segs.iter().enumerate() {
            let at = (head + i as u16) % QSIZE;
            let mut flags = if w { WRITE } else { 0 };
            if i + 1 < segs.len() {
                flags |= NEXT;
            }
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&addr.to_le_bytes());
            b[8..12].copy_from_slice(&len.to_le_bytes());
            b[12..14].copy_from_slice(&flags.to_le_bytes());
            b[14..].copy_from_slice(&((at + 1) % QSIZE).to_le_bytes());
            self.mem.write(d + 16 * u64::from(at), &b).unwrap();
        }
        self.next_desc[q] = (head + segs.len() as u16) % QSIZE;
        let idx = self.avail[q];
        self.mem
            .write_u16(a + 4 + 2 * u64::from(idx % QSIZE), head)
            .unwrap();
        self.avail[q] = idx.wrapping_add(1);
        self.mem.write_u16(a + 2, self.avail[q]).unwrap();
    }

    /// Offers `n` receive buffers of `len` bytes each and kicks the receive queue.
    fn post_rx(&mut self, n: u64, len: u32) {
        for i in 0..n {
            self.offer(RECEIVEQ, &[(RX_BUF + i * RX_STRIDE, len, true)]);
        }
        self.wr(regs::QUEUE_NOTIFY, RECEIVEQ as u32);
    }

    /// Sends `bytes` (header included) as one transmit chain and kicks.
    fn send_raw(&mut self, bytes: &[u8]) {
        self.mem.write(TX_BUF, bytes).unwrap();
        self.offer(TRANSMITQ, &[(TX_BUF, bytes.len() as u32, false)]);
        self.wr(regs::QUEUE_NOTIFY, TRANSMITQ as u32);
    }

    /// Sends `frame` behind a zero header.
    fn send(&mut self, frame: &[u8]) {
        let mut b = vec![0u8; HEADER_LEN];
        b.extend_from_slice(frame);
        self.send_raw(&b);
    }

    /// The used entries of queue `q` not looked at yet: `(descriptor, length)`.
    fn used(&mut self, q: usize) -> Vec<(u16, u32)> {
        let (_, _, u) = areas(q);
        let idx = self.mem.read_u16(u + 2).unwrap();
        let mut out = Vec::new();
        while self.seen[q] != idx {
            let e = u + 4 + 8 * u64::from(self.seen[q] % QSIZE);
            let id = self.mem.read_u32(e).unwrap() as u16;
            out.push((id, self.mem.read_u32(e + 4).unwrap()));
            self.seen[q] = self.seen[q].wrapping_add(1);
        }
        out
    }

    /// The frames received since the last call (header checked and stripped).
    fn received(&mut self) -> Vec<Vec<u8>> {
        self.used(RECEIVEQ)
            .into_iter()
            .filter(|&(_, len)| len > 0)
            .map(|(id, len)| {
                let mut b = vec![0u8; len as usize];
                self.mem
                    .read(RX_BUF + u64::from(id) * RX_STRIDE, &mut b)
                    .unwrap();
                assert_eq!(&b[..HEADER_LEN], &crate::RX_HEADER);
                b.split_off(HEADER_LEN)
            })
            .collect()
    }

    fn irq(&self) -> bool {
        self.line.0.load(Ordering::SeqCst)
    }

    fn ack(&self) {
        let isr = self.rd(regs::INTERRUPT_STATUS);
        self.wr(regs::INTERRUPT_ACK, isr);
    }

    fn stats(&self) -> crate::NetStats {
        self.dev.with_device(|d| d.stats())
    }
}

fn switch(name: &str, ports: usize) -> Arc<NetSwitch> {
    NetSwitch::new(name, SwitchConfig::with_ports(ports)).unwrap()
}

#[test]
fn identity_features_and_mac() {
    let sw = switch("lan", 4);
    let g = Guest::new(&sw, 7);
    assert_eq!(g.rd(regs::DEVICE_ID), 1);
    g.wr(regs::DEVICE_FEATURES_SEL, 0);
    assert_eq!(u64::from(g.rd(regs::DEVICE_FEATURES)), F_MAC);
    let mac: Vec<u8> = (0..6)
        .map(|i| g.dev.read(regs::CONFIG + i, AccessWidth::Byte).unwrap() as u8)
        .collect();
    assert_eq!(mac, mac_bytes(7));
    // status: LINK_UP
    assert_eq!(g.dev.read(regs::CONFIG + 6, AccessWidth::Half).unwrap(), 1);
    assert!(g.dev.read(regs::CONFIG + 10, AccessWidth::Byte).is_err());
}

fn mac_bytes(last: u8) -> [u8; 6] {
    mac(last).0
}

/// A frame A broadcasts reaches B (and raises B's interrupt), B's unicast answer reaches
/// only A, and a guest on another switch sees neither.
#[test]
fn two_guests_exchange_frames_and_another_switch_sees_nothing() {
    let lan = switch("lan", 4);
    let other = switch("other", 4);
    let mut a = Guest::new(&lan, 1);
    let mut b = Guest::new(&lan, 2);
    let mut c = Guest::new(&other, 3);
    let mut d = Guest::new(&lan, 4);
    for g in [&mut a, &mut b, &mut c, &mut d] {
        g.post_rx(4, 2048);
    }
    assert!(!b.irq());

    let hello = frame(Mac::BROADCAST, mac(1), b"hello");
    a.send(&hello);
    assert!(b.irq() && d.irq(), "flooded to every other port");
    assert!(a.irq(), "A's transmit buffer came back");
    assert_eq!(b.received(), vec![hello.clone()]);
    assert_eq!(d.received(), vec![hello]);
    assert!(a.received().is_empty());
    b.ack();
    d.ack();
    a.ack();

    // A is learned now: B's answer goes to A only.
    let reply = frame(mac(1), mac(2), b"hi A");
    b.send(&reply);
    assert!(a.irq());
    assert_eq!(a.received(), vec![reply]);
    assert!(!d.irq());
    assert!(d.received().is_empty());

    assert!(!c.irq());
    assert!(c.received().is_empty());
    assert_eq!(a.stats().tx_frames, 1);
    assert_eq!(b.stats().rx_frames, 1);
    assert_eq!(c.stats(), crate::NetStats::default());
}

/// A frame that arrives before the guest posts receive buffers waits in the switch and is
/// delivered when it does.
#[test]
fn frame_waits_for_receive_buffers() {
    let lan = switch("lan", 2);
    let mut a = Guest::new(&lan, 1);
    let mut b = Guest::new(&lan, 2);
    let f = frame(mac(2), mac(1), b"early");
    a.send(&f);
    assert!(!b.irq());
    assert!(b.received().is_empty());
    b.post_rx(1, 2048);
    assert!(b.irq());
    assert_eq!(b.received(), vec![f]);
}

/// Bad transmit chains are dropped and counted; the device keeps working.
#[test]
fn hostile_transmit_chains_are_dropped() {
    let lan = switch("lan", 2);
    let mut a = Guest::new(&lan, 1);
    let mut b = Guest::new(&lan, 2);
    b.post_rx(4, 2048);
    // Too short for a header and an Ethernet header.
    a.send_raw(&[0u8; HEADER_LEN + 13]);
    // Longer than 1514 bytes of frame.
    a.send(&frame(mac(2), mac(1), &[0u8; 1501]));
    // An offload asked for (NEEDS_CSUM; gso_type TCPV4).
    let mut csum = vec![1u8, 0];
    csum.resize(HEADER_LEN, 0);
    csum.extend_from_slice(&frame(mac(2), mac(1), b"x"));
    a.send_raw(&csum);
    csum[0] = 0;
    csum[1] = 1;
    a.send_raw(&csum);
    // A group source address (refused by the switch).
    a.send(&frame(mac(2), Mac::BROADCAST, b"x"));
    // A buffer outside RAM.
    a.offer(TRANSMITQ, &[(RAM + RAM_SIZE as u64 - 8, 64, false)]);
    a.wr(regs::QUEUE_NOTIFY, TRANSMITQ as u32);
    // A huge length.
    a.offer(TRANSMITQ, &[(TX_BUF, u32::MAX, false)]);
    a.wr(regs::QUEUE_NOTIFY, TRANSMITQ as u32);
    // A writable-only chain.
    a.offer(TRANSMITQ, &[(TX_BUF, 64, true)]);
    a.wr(regs::QUEUE_NOTIFY, TRANSMITQ as u32);
    assert_eq!(a.used(TRANSMITQ).len(), 8, "every chain given back");
    assert_eq!(a.stats().tx_dropped, 8);
    assert!(b.received().is_empty());
    assert!(!a.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
    // Still works; the largest frame passes.
    let big = frame(mac(2), mac(1), &[0x5a; 1500]);
    a.send(&big);
    assert_eq!(b.received(), vec![big]);
}

/// A receive buffer too small for the frame waiting: the frame is dropped, the buffer
/// given back empty; the next frame goes into the next buffer.
#[test]
fn small_receive_buffer_drops_the_frame() {
    let lan = switch("lan", 2);
    let mut a = Guest::new(&lan, 1);
    let mut b = Guest::new(&lan, 2);
    let f = frame(mac(2), mac(1), &[1; 100]);
    a.send(&f);
    a.send(&f);
    b.offer(RECEIVEQ, &[(RX_BUF, 60, true)]);
    b.offer(RECEIVEQ, &[(RX_BUF + RX_STRIDE, 2048, true)]);
    b.wr(regs::QUEUE_NOTIFY, RECEIVEQ as u32);
    assert_eq!(
        b.used(RECEIVEQ),
        vec![(0, 0), (1, (HEADER_LEN + f.len()) as u32)]
    );
    assert_eq!(b.stats().rx_dropped, 1);
    assert_eq!(b.stats().rx_frames, 1);
}

/// A receive buffer that is not RAM: the device needs a reset; the other guest is fine.
#[test]
fn receive_buffer_outside_ram_needs_reset() {
    let lan = switch("lan", 2);
    let mut a = Guest::new(&lan, 1);
    let mut b = Guest::new(&lan, 2);
    b.offer(RECEIVEQ, &[(RAM + RAM_SIZE as u64, 2048, true)]);
    b.wr(regs::QUEUE_NOTIFY, RECEIVEQ as u32);
    a.send(&frame(mac(2), mac(1), b"x"));
    assert!(b.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
    assert!(!a.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
    b.bring_up();
    b.seen = [0; 2];
    b.avail = [0; 2];
    b.next_desc = [0; 2];
    b.post_rx(1, 2048);
    let f = frame(mac(2), mac(1), b"again");
    a.send(&f);
    assert_eq!(b.received(), vec![f]);
}

/// A device reset empties its port; a dropped device frees its port, and frames are no
/// longer queued for it.
#[test]
fn reset_and_drop_release_the_port() {
    let lan = switch("lan", 2);
    let mut a = Guest::new(&lan, 1);
    let b = Guest::new(&lan, 2);
    a.send(&frame(mac(2), mac(1), b"x"));
    assert!(b.dev.with_device(|d| d.port().has_frame()));
    VirtioReset::reset(&*b.dev);
    assert!(!b.dev.with_device(|d| d.port().has_frame()));
    assert_eq!(lan.claimed(), 2);
    assert_eq!(
        lan.claim().err(),
        Some(NetError::Full {
            switch: "lan".into(),
            ports: 2
        })
    );
    let port_b = b.dev.with_device(|d| d.port().id());
    drop(b);
    assert_eq!(lan.claimed(), 1);
    a.send(&frame(Mac::BROADCAST, mac(1), b"y"));
    assert_eq!(
        lan.stats(port_b).unwrap().queued,
        1,
        "only the frame before"
    );
    let c = lan.claim().unwrap();
    assert_eq!(c.id(), port_b);
    assert!(!c.has_frame());
}
