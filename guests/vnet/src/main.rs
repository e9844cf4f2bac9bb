//! A minimal polled virtio-net driver over virtio-mmio (docs/virtio.md), at 0x0a00_0000 on
//! aarch64 and 0x1000_1000 on riscv64 and x86_64 (configs `*-vnet-{a,b,c}.toml`). The role comes from
//! the last byte of the MAC address the config gives the device:
//!
//! - `0a` (A): pings B (`02:00:00:00:00:0b`, not yet learned by the switch, so flooded)
//!   until B answers, then [`ROUND_TRIPS`] pings, each answered with the same sequence
//!   number; prints the mean round trip in counter nanoseconds (instructions under QEMU
//!   `-icount shift=0`: `cargo xtask bench`), then tells B it is done.
//! - `0b` (B): answers every ping with a pong to its sender, until A's `done`.
//! - `0c` (C, on another switch): broadcasts on its own switch and listens for
//!   [`C_LISTEN_SECS`]; it must receive nothing (A's and B's frames stay on theirs).
//!
//! Every frame A and B receive must come from the other one: C's broadcasts must not reach
//! them. Frames are 64 bytes: destination, source, EtherType 0x88b5, a 4-byte kind and a
//! 4-byte sequence number.
#![no_std]
#![no_main]

use grt::bench::{counter, counter_hz, ticks_to_ns};
use grt::check::Checker;
use grt::irq::{self, Irq};
use grt::mmio::{read16, read32, read8, write32, write8};
use grt::virtio::{regs, Device, Queue, F_WRITE};

/// The card (the loopback VM's second card is 0x200 above), and its interrupt: GIC INTID,
/// PLIC source, I/O APIC input.
#[cfg(target_arch = "aarch64")]
const BASE: usize = 0x0a00_0000;
#[cfg(target_arch = "aarch64")]
const IRQ: u32 = 48;
#[cfg(not(target_arch = "aarch64"))]
const BASE: usize = 0x1000_1000;
#[cfg(target_arch = "riscv64")]
const IRQ: u32 = 1;
#[cfg(target_arch = "x86_64")]
const IRQ: u32 = 5;

/// `VIRTIO_NET_F_MAC`.
const F_MAC: u32 = 1 << 5;
/// virtio device id of a network card.
const NET_ID: u32 = 1;
/// `struct virtio_net_hdr` (virtio 1.x).
const HDR: usize = 12;
const FRAME: usize = 64;
const ETHERTYPE: u16 = 0x88b5;
const PING: u32 = 1;
const PONG: u32 = 2;
const DONE: u32 = 3;
const HELLO: u32 = 4;
/// Entries per queue, and receive buffers.
const QSIZE: u16 = 8;
const RX_LEN: u32 = 2048;
/// Timed round trips after the first.
const ROUND_TRIPS: u32 = 200;
/// How long C listens.
const C_LISTEN_SECS: u64 = 8;
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
/// The loopback VM's second card.
const MAC_L1: [u8; 6] = [2, 0, 0, 0, 0, 0x0e];

/// A received frame's source, kind and sequence number.
#[derive(Clone, Copy)]
struct Msg {
    src: [u8; 6],
    kind: u32,
    seq: u32,
}

struct Nic {
    dev: Device,
    mac: [u8; 6],
    rxq: Queue,
    txq: Queue,
    rx_bufs: usize,
    tx_buf: usize,
    /// Used receive entries consumed; buffers offered.
    rx_seen: u16,
    rx_offered: u16,
    tx_idx: u16,
    /// Frames whose used length was not a whole header and frame.
    bad: u32,
}

fn be32(at: usize) -> u32 {
    // SAFETY: `at` is in a receive buffer, guest RAM this program owns.
    (0..4).fold(0, |v, i| (v << 8) | u32::from(unsafe { read8(at + i) }))
}

impl Nic {
    fn new(dev: Device, area: usize) -> Self {
        let mut mac = [0u8; 6];
        for (i, b) in mac.iter_mut().enumerate() {
            // SAFETY: the config space of the virtio-mmio window the VM config gives.
            *b = unsafe { read8(dev.0 + regs::CONFIG + i) };
        }
        Self {
            dev,
            mac,
            rxq: Queue::new(area, QSIZE),
            txq: Queue::new(area + 0x3000, QSIZE),
            rx_bufs: area + 0x6000,
            tx_buf: area + 0x6000 + QSIZE as usize * RX_LEN as usize,
            rx_seen: 0,
            rx_offered: 0,
            tx_idx: 0,
            bad: 0,
        }
    }

    fn rx_buf(&self, i: u16) -> usize {
        self.rx_bufs + usize::from(i % QSIZE) * RX_LEN as usize
    }

    /// Offers receive buffer `i % QSIZE` (descriptor `i % QSIZE`).
    fn offer_rx(&mut self) {
        let d = self.rx_offered % QSIZE;
        self.rxq.put_desc(d, self.rx_buf(d), RX_LEN, F_WRITE, 0);
        self.rxq.offer(self.rx_offered, d);
        self.rx_offered = self.rx_offered.wrapping_add(1);
    }

    fn up(&mut self) -> bool {
        if !self.dev.bring_up(F_MAC, &[&self.rxq, &self.txq]) {
            return false;
        }
        for _ in 0..QSIZE {
            self.offer_rx();
        }
        self.dev.set(regs::QUEUE_NOTIFY, 0);
        true
    }

    /// Sends a frame to `dst`; whether the device took it back.
    fn send(&mut self, dst: [u8; 6], kind: u32, seq: u32) -> bool {
        let b = self.tx_buf;
        let mut frame = [0u8; HDR + FRAME];
        frame[HDR..HDR + 6].copy_from_slice(&dst);
        frame[HDR + 6..HDR + 12].copy_from_slice(&self.mac);
        frame[HDR + 12..HDR + 14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        frame[HDR + 14..HDR + 18].copy_from_slice(&kind.to_be_bytes());
        frame[HDR + 18..HDR + 22].copy_from_slice(&seq.to_be_bytes());
        for (i, &v) in frame.iter().enumerate() {
            // SAFETY: the transmit buffer is guest RAM this program owns.
            unsafe { write8(b + i, v) };
        }
        self.txq.put_desc(0, b, frame.len() as u32, 0, 0);
        self.txq.offer(self.tx_idx, 0);
        self.tx_idx = self.tx_idx.wrapping_add(1);
        self.dev.set(regs::QUEUE_NOTIFY, 1);
        self.ack();
        self.txq.used_idx() == self.tx_idx
    }

    fn ack(&self) {
        let isr = self.dev.reg(regs::INTERRUPT_STATUS);
        if isr != 0 {
            self.dev.set(regs::INTERRUPT_ACK, isr);
        }
    }

    /// The next received frame, if one came; its buffer is offered again.
    fn recv(&mut self) -> Option<Msg> {
        if self.rxq.used_idx() == self.rx_seen {
            return None;
        }
        let len = self.rxq.used_len(self.rx_seen) as usize;
        let id = self.rxq.used_id(self.rx_seen);
        let b = self.rx_buf(id as u16) + HDR;
        self.rx_seen = self.rx_seen.wrapping_add(1);
        let mut msg = Msg {
            src: [0; 6],
            kind: 0,
            seq: 0,
        };
        if len == HDR + FRAME {
            for (i, s) in msg.src.iter_mut().enumerate() {
                // SAFETY: as in `be32`.
                *s = unsafe { read8(b + 6 + i) };
            }
            // SAFETY: as in `be32`.
            let ethertype = unsafe { read16(b + 12) };
            if ethertype == ETHERTYPE.to_be() {
                msg.kind = be32(b + 14);
                msg.seq = be32(b + 18);
            }
        } else {
            self.bad += 1;
        }
        self.offer_rx();
        self.dev.set(regs::QUEUE_NOTIFY, 0);
        self.ack();
        Some(msg)
    }

    /// Waits up to `us` microseconds for a frame, sleeping until the card's interrupt (or
    /// the timer, every 10 ms at most) between looks.
    fn wait(&mut self, us: u64) -> Option<Msg> {
        let end = irq::timer_now() + irq::timer_freq() * us / 1_000_000;
        loop {
            irq::disable();
            if let Some(m) = self.recv() {
                irq::enable();
                return Some(m);
            }
            let now = irq::timer_now();
            if now >= end {
                irq::enable();
                return None;
            }
            irq::timer_set(end.min(now + irq::timer_freq() / 100));
            // Masked: a pending interrupt still ends the wait, and is taken just after.
            grt::wait_for_interrupt();
            irq::enable();
        }
    }
}

/// The card's interrupt: acknowledged at the card (its line is level); the timer only
/// wakes a wait.
fn handler(irq: Irq) {
    if irq == Irq::External(IRQ) {
        // SAFETY: the card's InterruptStatus and InterruptACK registers.
        unsafe {
            write32(
                BASE + regs::INTERRUPT_ACK,
                read32(BASE + regs::INTERRUPT_STATUS),
            )
        };
    }
}

#[no_mangle]
fn main() {
    let mut c = Checker::new("vnet");
    let dev = Device(BASE);
    c.eq("magic", dev.reg(regs::MAGIC), 0x7472_6976);
    c.eq("device id (network)", dev.reg(regs::DEVICE_ID), NET_ID);
    c.ok("offers VIRTIO_NET_F_MAC", dev.features_low() & F_MAC != 0);
    let area = (grt::image_end() as usize + 0xffff) & !0xfff;
    let mut nic = Nic::new(dev, area);
    // SAFETY: the config space's `status` (offset 6).
    let status = unsafe { read16(BASE + regs::CONFIG + 6) };
    c.eq("link up", status & 1, 1);
    if !c.ok("DRIVER_OK", nic.up()) {
        c.finish();
        return;
    }
    irq::set_handler(Some(handler));
    irq::init_cpu();
    irq::external_enable(IRQ);
    irq::enable();
    match nic.mac[5] {
        0x0a => initiator(&mut c, &mut nic),
        0x0b => responder(&mut c, &mut nic),
        0x0d => loopback(&mut c, &mut nic, area + 0x1_0000),
        _ => bystander(&mut c, &mut nic),
    }
    c.eq("frames of the wrong length", nic.bad, 0);
    c.finish();
}

/// A: finds B, then times [`ROUND_TRIPS`] pings.
fn initiator(c: &mut Checker, nic: &mut Nic) {
    // B may not be up yet (its bring-up resets the device, which empties its port):
    // ping every 10 ms until it answers, for up to 20 s.
    let mut answered = false;
    for _ in 0..2000 {
        nic.send(MAC_B, PING, 0);
        if let Some(m) = nic.wait(10_000) {
            if !c.ok(
                "first frame is B's pong 0",
                m.src == MAC_B && m.kind == PONG,
            ) {
                return;
            }
            answered = true;
            break;
        }
    }
    if !c.ok("B answers", answered) {
        return;
    }
    // Pongs to the retries may still come: take them until a quiet 100 ms.
    while nic.wait(100_000).is_some() {}
    grt::println!("vnet: B answered");
    let start = counter();
    for seq in 1..=ROUND_TRIPS {
        if !c.ok("ping sent", nic.send(MAC_B, PING, seq)) {
            return;
        }
        match nic.wait(5_000_000) {
            Some(m) if m.src == MAC_B && m.kind == PONG && m.seq == seq => {}
            Some(m) => {
                c.ok("pong from B with the ping's number", false);
                grt::println!("vnet: got kind {} seq {} for ping {seq}", m.kind, m.seq);
                return;
            }
            None => {
                c.ok("pong within 5 s", false);
                return;
            }
        }
    }
    let ns = ticks_to_ns(counter().wrapping_sub(start), counter_hz()) / u64::from(ROUND_TRIPS);
    grt::println!("vnet: {ROUND_TRIPS} round trips, each answered");
    grt::println!("vnet: round trip {ns} ns");
    grt::println!("BENCH vnet-round-trip {ns} ns/op ({ROUND_TRIPS} iters)");
    c.ok("done sent", nic.send(MAC_B, DONE, 0));
}

/// B: answers pings until A is done.
fn responder(c: &mut Checker, nic: &mut Nic) {
    let mut pongs = 0u32;
    loop {
        let Some(m) = nic.wait(30_000_000) else {
            c.ok("A is done within 30 s", false);
            return;
        };
        if !c.ok("every frame comes from A", m.src == MAC_A) {
            return;
        }
        match m.kind {
            PING => {
                nic.send(MAC_A, PONG, m.seq);
                pongs += 1;
            }
            DONE => break,
            _ => {
                c.ok("only pings and done", false);
                return;
            }
        }
    }
    grt::println!("vnet: A is done");
    c.ok("answered every timed ping", pongs > ROUND_TRIPS);
}

/// C: alone on its switch, broadcasts now and then and must receive nothing.
fn bystander(c: &mut Checker, nic: &mut Nic) {
    let mut seen = 0u32;
    for _ in 0..C_LISTEN_SECS * 10 {
        c.ok("broadcast sent", nic.send([0xff; 6], HELLO, 0));
        if nic.wait(100_000).is_some() {
            seen += 1;
        }
    }
    grt::println!("vnet: {seen} frames seen in {C_LISTEN_SECS} s on its own switch");
    c.eq("frames seen", seen, 0);
}

/// L: two cards of one VM on a switch of their own. Card 0 pings card 1, which answers:
/// [`ROUND_TRIPS`] times the same driver code and device path as A and B, with no other
/// VM or CPU involved (the switch delivers to card 1 while card 0's kick is handled).
fn loopback(c: &mut Checker, nic0: &mut Nic, area: usize) {
    let mut nic1 = Nic::new(Device(BASE + 0x200), area);
    if !c.ok("second card DRIVER_OK", nic1.up()) {
        return;
    }
    let mac0 = nic0.mac;
    let start = counter();
    for seq in 0..ROUND_TRIPS {
        nic0.send(MAC_L1, PING, seq);
        match nic1.wait(1_000_000) {
            Some(m) if m.src == mac0 && m.kind == PING && m.seq == seq => {}
            _ => {
                c.ok("card 1 gets each ping", false);
                return;
            }
        }
        nic1.send(mac0, PONG, seq);
        match nic0.wait(1_000_000) {
            Some(m) if m.src == MAC_L1 && m.kind == PONG && m.seq == seq => {}
            _ => {
                c.ok("card 0 gets each pong", false);
                return;
            }
        }
    }
    let ns = ticks_to_ns(counter().wrapping_sub(start), counter_hz()) / u64::from(ROUND_TRIPS);
    grt::println!("vnet: {ROUND_TRIPS} loopback round trips, each answered");
    grt::println!("vnet: loopback round trip {ns} ns");
    grt::println!("BENCH vnet-loopback {ns} ns/op ({ROUND_TRIPS} iters)");
    c.eq("card 1: frames of the wrong length", nic1.bad, 0);
}
