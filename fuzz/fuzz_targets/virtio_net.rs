//! virtio-net (axvirtio_net) devices of three guests, each in its own 64 KiB of guest RAM
//! the input writes: A and B on one switch, C alone on another. Driven through the
//! transport's registers: bring-ups with queue sizes and places from the input, transmit
//! chains (frames of any length, destination and source, header flags, split over up to
//! four buffers anywhere), receive chains of any size and place, raw RAM and register
//! writes, device resets, and a device dropped and made again (its port freed and claimed).
//!
//! Checked besides "no panic": each guest's interrupt line is high exactly while its
//! `InterruptStatus` is non-zero; C never receives a frame (nothing crosses switches); a
//! guest never receives more frames than the others on its switch sent.

use axdevice_base::{AccessWidth, GuestMemory, MmioDevice};
use axvirtio::mem::FlatMemory;
use axvirtio::{regs, VirtioReset, VIRTIO_F_VERSION_1};
use axvirtio_net::{Mac, NetMmio, NetStats, NetSwitch, SwitchConfig, VirtioNet, F_MAC, HEADER_LEN};
use axvisor_fuzz::virtio::{
    address, bring_up, offer, put, word, Buffer, QueuePlace, RAM, RAM_SIZE,
};
use axvisor_fuzz::{Input, LevelIrq};
use std::sync::Arc;

const MAX_FRAME: usize = 1514;

fn mac(i: usize) -> Mac {
    Mac([2, 0, 0, 0, 0, i as u8])
}

struct Guest {
    mem: Arc<FlatMemory>,
    irq: Arc<LevelIrq>,
    dev: Arc<NetMmio>,
    switch: Arc<NetSwitch>,
    index: usize,
    /// The next available-ring index of each queue.
    avail: [u16; 2],
    /// Where the last bring-up put the queues.
    queues: [QueuePlace; 2],
    /// Counters of devices of this guest dropped earlier.
    before: NetStats,
}

fn new_dev(
    switch: &Arc<NetSwitch>,
    index: usize,
    mem: &Arc<FlatMemory>,
    irq: &Arc<LevelIrq>,
) -> Arc<NetMmio> {
    let port = switch.claim().expect("a port is free");
    NetMmio::new(
        "virtio-net",
        VirtioNet::new(mac(index), port),
        mem.clone(),
        irq.clone(),
    )
}

impl Guest {
    fn new(switch: &Arc<NetSwitch>, index: usize) -> Self {
        let mem = Arc::new(FlatMemory::new(RAM, RAM_SIZE));
        let irq = Arc::new(LevelIrq::default());
        let dev = new_dev(switch, index, &mem, &irq);
        Self {
            mem,
            irq,
            dev,
            switch: switch.clone(),
            index,
            avail: [0; 2],
            queues: [QueuePlace::default(); 2],
            before: NetStats::default(),
        }
    }

    fn stats(&self) -> NetStats {
        let now = self.dev.with_device(|d| d.stats());
        NetStats {
            tx_frames: self.before.tx_frames + now.tx_frames,
            tx_dropped: self.before.tx_dropped + now.tx_dropped,
            rx_frames: self.before.rx_frames + now.rx_frames,
            rx_dropped: self.before.rx_dropped + now.rx_dropped,
        }
    }

    /// Drops the device (its port is freed) and makes a new one on the same switch.
    fn replace(&mut self) {
        self.before = self.stats();
        // A fresh line: the new device starts low. Claimed before the old one is dropped,
        // so each switch here has a spare port.
        self.irq = Arc::new(LevelIrq::default());
        self.dev = new_dev(&self.switch, self.index, &self.mem, &self.irq);
    }

    /// A bring-up with `VIRTIO_NET_F_MAC` or not, each queue either in its own place (8
    /// entries) or with size and areas from the input.
    fn bring_up(&mut self, input: &mut Input<'_>) {
        let features = VIRTIO_F_VERSION_1 | if input.bool() { F_MAC } else { 0 };
        for q in 0..2 {
            let base = RAM + 0x3000 * q as u64;
            self.queues[q] = if !input.u8().is_multiple_of(4) {
                QueuePlace {
                    size: 8,
                    desc: base,
                    avail: base + 0x1000,
                    used: base + 0x2000,
                }
            } else {
                QueuePlace {
                    size: input.u16() % 300,
                    desc: address(input),
                    avail: address(input),
                    used: address(input),
                }
            };
            self.avail[q] = 0;
        }
        bring_up(&*self.dev, features, &self.queues);
    }

    /// Offers `segs` as a chain on queue `q` and kicks.
    fn offer(&mut self, q: usize, segs: &[Buffer]) {
        offer(&*self.mem, &self.queues[q], &mut self.avail[q], segs);
        put(&*self.dev, regs::QUEUE_NOTIFY, q as u32);
    }

    /// A transmit chain: header and frame from the input at RAM + 0x8000, cut into up to
    /// four buffers (some moved elsewhere by the input).
    fn transmit(&mut self, input: &mut Input<'_>) {
        let len = match input.u8() % 4 {
            0 => usize::from(input.u16()) % 2000,
            _ => HEADER_LEN + 14 + usize::from(input.u8()),
        };
        let mut bytes = vec![0u8; len];
        let fill = input.slice(len);
        bytes[..fill.len()].copy_from_slice(fill);
        if !input.u8().is_multiple_of(4) {
            // Mostly a clean header and real addresses.
            bytes.iter_mut().take(HEADER_LEN).for_each(|b| *b = 0);
            let dst = match input.u8() % 4 {
                0 => Mac::BROADCAST,
                n => mac(usize::from(n)),
            };
            if len >= HEADER_LEN + 12 {
                bytes[HEADER_LEN..HEADER_LEN + 6].copy_from_slice(&dst.0);
                bytes[HEADER_LEN + 6..HEADER_LEN + 12].copy_from_slice(&mac(self.index).0);
            }
        }
        let at = RAM + 0x8000;
        let _ = self.mem.write(at, &bytes);
        let mut segs = Vec::new();
        let mut done = 0usize;
        for _ in 0..input.u8() % 4 {
            let piece = usize::from(input.u16()) % (len - done + 1);
            segs.push((at + done as u64, piece as u32, false));
            done += piece;
        }
        segs.push((at + done as u64, (len - done) as u32, false));
        if input.u8().is_multiple_of(8) {
            let i = usize::from(input.u8()) % segs.len();
            segs[i] = (address(input), input.u32(), input.bool());
        }
        self.offer(1, &segs);
    }

    /// A receive chain of up to three buffers from the input.
    fn receive(&mut self, input: &mut Input<'_>) {
        let mut segs = Vec::new();
        for i in 0..1 + input.u8() % 3 {
            let (addr, len) = match input.u8() % 4 {
                0 => (address(input), input.u32()),
                _ => (RAM + 0xa000 + 0x800 * u64::from(i), 0x800),
            };
            segs.push((addr, len, true));
        }
        self.offer(0, &segs);
    }

    /// The line follows `InterruptStatus`.
    fn check(&self) {
        let isr = word(&*self.dev, regs::INTERRUPT_STATUS);
        assert_eq!(
            self.irq.level(),
            isr != 0,
            "line vs InterruptStatus {isr:#x}"
        );
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let lan = NetSwitch::new(
        "lan",
        SwitchConfig {
            ports: 3,
            queue_frames: 4,
            max_frame: MAX_FRAME,
            table_entries: 4,
        },
    )
    .expect("a valid switch");
    let other = NetSwitch::new(
        "other",
        SwitchConfig {
            ports: 2,
            queue_frames: 4,
            max_frame: MAX_FRAME,
            table_entries: 4,
        },
    )
    .expect("a valid switch");
    let mut guests = [
        Guest::new(&lan, 1),
        Guest::new(&lan, 2),
        Guest::new(&other, 3),
    ];
    while !input.is_empty() {
        let g = &mut guests[usize::from(input.u8()) % 3];
        match input.u8() % 8 {
            0 => g.bring_up(&mut input),
            1 | 2 => g.transmit(&mut input),
            3 | 4 => g.receive(&mut input),
            5 => {
                let at = address(&mut input);
                let bytes = input.slice(32);
                let _ = g.mem.write(at, bytes);
            }
            6 => {
                let offset = usize::from(input.u16()) % 0x220;
                let width = match input.u8() % 4 {
                    0 => AccessWidth::Byte,
                    1 => AccessWidth::Half,
                    2 => AccessWidth::Word,
                    _ => AccessWidth::Dword,
                };
                let value = input.u64();
                let _ = g.dev.write(offset, width, value);
            }
            _ => {
                if input.bool() {
                    VirtioReset::reset(&*g.dev);
                } else {
                    g.replace();
                }
            }
        }
        for g in &guests {
            g.check();
        }
        let (a, b, c) = (guests[0].stats(), guests[1].stats(), guests[2].stats());
        assert_eq!(c.rx_frames + c.rx_dropped, 0, "a frame crossed switches");
        assert!(
            a.rx_frames + a.rx_dropped <= b.tx_frames,
            "A got more than B sent"
        );
        assert!(
            b.rx_frames + b.rx_dropped <= a.tx_frames,
            "B got more than A sent"
        );
    }
}
