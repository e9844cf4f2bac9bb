//! Host tests: the transport's state machine, queue walking with hostile chains, and
//! virtio-console, driven the way a guest driver would through a `FlatMemory`.

use crate::console::{VirtioConsole, INPUT_CAP};
use crate::mem::FlatMemory;
use crate::queue::{Queue, QueueError, Segment};
use crate::{regs, DeviceStatus, VirtioMmio, VirtioReset, VIRTIO_F_VERSION_1};
use alloc::sync::Arc;
use alloc::vec::Vec;
use axdevice_base::{
    AccessWidth, ConsoleSink, DeviceError, GuestMemory, GuestMemoryError, IrqLine, MmioDevice,
};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;

const RAM: u64 = 0x4000_0000;
const RAM_SIZE: usize = 0x10000;
const NEXT: u16 = 1;
const WRITE: u16 = 2;

#[derive(Default)]
struct Sink(Mutex<Vec<u8>>);
impl ConsoleSink for Sink {
    fn write(&self, bytes: &[u8]) {
        self.0.lock().extend_from_slice(bytes);
    }
}

#[derive(Default)]
struct Line(AtomicBool);
impl IrqLine for Line {
    /// Fails the test when the level does not change (a device sets it only on a change).
    fn set_level(&self, high: bool) {
        assert_ne!(
            self.0.swap(high, Ordering::SeqCst),
            high,
            "set_level without a change"
        );
    }
}

/// Queue `q`'s areas: descriptors, available ring, used ring.
fn areas(q: u64) -> (u64, u64, u64) {
    let at = RAM + q * 0x3000;
    (at, at + 0x1000, at + 0x2000)
}

struct Rig {
    mem: Arc<FlatMemory>,
    sink: Arc<Sink>,
    line: Arc<Line>,
    dev: VirtioMmio<VirtioConsole>,
    avail_idx: [u16; 2],
}

impl Rig {
    fn new() -> Self {
        let mem = Arc::new(FlatMemory::new(RAM, RAM_SIZE));
        let sink = Arc::new(Sink::default());
        let line = Arc::new(Line::default());
        let dev = VirtioMmio::new(
            "virtio-console",
            VirtioConsole::new(sink.clone()),
            mem.clone(),
            line.clone(),
        );
        Self {
            mem,
            sink,
            line,
            dev,
            avail_idx: [0; 2],
        }
    }

    fn rd(&self, off: usize) -> u32 {
        self.dev.read(off, AccessWidth::Word).unwrap() as u32
    }

    fn wr(&self, off: usize, v: u32) {
        self.dev
            .write(off, AccessWidth::Word, u64::from(v))
            .unwrap();
    }

    fn set_status(&self, bits: DeviceStatus) {
        self.wr(regs::STATUS, bits.bits());
    }

    fn status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.rd(regs::STATUS))
    }

    fn accept(&self, features: u64) {
        self.wr(regs::DRIVER_FEATURES_SEL, 0);
        self.wr(regs::DRIVER_FEATURES, features as u32);
        self.wr(regs::DRIVER_FEATURES_SEL, 1);
        self.wr(regs::DRIVER_FEATURES, (features >> 32) as u32);
    }

    /// A modern driver's whole bring-up with `size`-entry queues.
    fn bring_up(&self, size: u32) {
        use DeviceStatus as S;
        self.wr(regs::STATUS, 0);
        self.set_status(S::ACKNOWLEDGE);
        self.set_status(S::ACKNOWLEDGE | S::DRIVER);
        self.accept(VIRTIO_F_VERSION_1);
        self.set_status(S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK);
        assert!(self.status().contains(S::FEATURES_OK));
        for q in 0..2 {
            let (d, a, u) = areas(q);
            self.wr(regs::QUEUE_SEL, q as u32);
            self.wr(regs::QUEUE_NUM, size);
            self.wr(regs::QUEUE_DESC_LOW, d as u32);
            self.wr(regs::QUEUE_DESC_HIGH, (d >> 32) as u32);
            self.wr(regs::QUEUE_DRIVER_LOW, a as u32);
            self.wr(regs::QUEUE_DRIVER_HIGH, 0);
            self.wr(regs::QUEUE_DEVICE_LOW, u as u32);
            self.wr(regs::QUEUE_DEVICE_HIGH, 0);
            self.wr(regs::QUEUE_READY, 1);
            assert_eq!(self.rd(regs::QUEUE_READY), 1);
        }
        self.set_status(S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK | S::DRIVER_OK);
        assert!(self.status().contains(S::DRIVER_OK));
    }

    fn desc(&self, q: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let (d, _, _) = areas(q);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..].copy_from_slice(&next.to_le_bytes());
        self.mem.write(d + 16 * u64::from(i), &b).unwrap();
    }

    /// Offers chain `head` on queue `q` (ring slot by the running index, size `size`).
    fn offer(&mut self, q: usize, head: u16, size: u16) {
        let (_, a, _) = areas(q as u64);
        let idx = self.avail_idx[q];
        self.mem
            .write_u16(a + 4 + 2 * u64::from(idx % size), head)
            .unwrap();
        self.avail_idx[q] = idx.wrapping_add(1);
        self.mem.write_u16(a + 2, self.avail_idx[q]).unwrap();
    }

    fn used_idx(&self, q: u64) -> u16 {
        self.mem.read_u16(areas(q).2 + 2).unwrap()
    }

    fn used_elem(&self, q: u64, slot: u64) -> (u32, u32) {
        let u = areas(q).2 + 4 + 8 * slot;
        (
            self.mem.read_u32(u).unwrap(),
            self.mem.read_u32(u + 4).unwrap(),
        )
    }

    fn irq(&self) -> bool {
        self.line.0.load(Ordering::SeqCst)
    }

    fn needs_reset(&self) -> bool {
        self.status().contains(DeviceStatus::DEVICE_NEEDS_RESET)
    }
}

#[test]
fn identity_registers() {
    let r = Rig::new();
    assert_eq!(r.rd(regs::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(r.rd(regs::VERSION), 2);
    assert_eq!(r.rd(regs::DEVICE_ID), 3);
    r.wr(regs::DEVICE_FEATURES_SEL, 1);
    assert_eq!(r.rd(regs::DEVICE_FEATURES), 1, "VERSION_1 is bit 32");
    r.wr(regs::DEVICE_FEATURES_SEL, 7);
    assert_eq!(r.rd(regs::DEVICE_FEATURES), 0);
    r.wr(regs::QUEUE_SEL, 1);
    assert_eq!(r.rd(regs::QUEUE_NUM_MAX), 256);
    r.wr(regs::QUEUE_SEL, 2);
    assert_eq!(r.rd(regs::QUEUE_NUM_MAX), 0, "no third queue");
    assert_eq!(r.rd(regs::SHM_LEN_LOW), u32::MAX);
    // Registers take aligned words only; the config space any width; nothing past 0x200.
    assert_eq!(
        r.dev.read(regs::STATUS, AccessWidth::Byte),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(
        r.dev.read(2, AccessWidth::Word),
        Err(DeviceError::Misaligned)
    );
    assert_eq!(
        r.dev.write(regs::STATUS, AccessWidth::Dword, 1),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(r.dev.read(regs::CONFIG, AccessWidth::Half), Ok(0));
    assert_eq!(r.dev.read(regs::CONFIG + 8, AccessWidth::Word), Ok(0));
    assert_eq!(
        r.dev.read(regs::CONFIG + 12, AccessWidth::Byte),
        Err(DeviceError::BadOffset)
    );
    assert_eq!(
        r.dev.read(0x200, AccessWidth::Word),
        Err(DeviceError::BadOffset)
    );
    assert_eq!(
        r.dev.read(usize::MAX, AccessWidth::Word),
        Err(DeviceError::BadOffset)
    );
}

#[test]
fn negotiation_refusals() {
    use DeviceStatus as S;
    let r = Rig::new();
    // No VERSION_1: FEATURES_OK stays clear.
    r.set_status(S::ACKNOWLEDGE | S::DRIVER);
    r.accept(0);
    r.set_status(S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK);
    assert!(!r.status().contains(S::FEATURES_OK));
    // DRIVER_OK without FEATURES_OK (a legacy driver's order): refused.
    r.set_status(S::ACKNOWLEDGE | S::DRIVER | S::DRIVER_OK);
    assert!(!r.status().contains(S::DRIVER_OK));
    // Bits not offered: refused.
    r.wr(regs::STATUS, 0);
    r.set_status(S::ACKNOWLEDGE | S::DRIVER);
    r.accept(VIRTIO_F_VERSION_1 | 1);
    r.set_status(S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK);
    assert!(!r.status().contains(S::FEATURES_OK));
    // The driver cannot clear bits other than by reset.
    r.set_status(S::DRIVER);
    assert!(r.status().contains(S::ACKNOWLEDGE));
    r.wr(regs::STATUS, 0);
    assert_eq!(r.status(), S::empty());
}

#[test]
fn legacy_driver_is_refused_until_reset() {
    use DeviceStatus as S;
    let r = Rig::new();
    r.set_status(S::ACKNOWLEDGE | S::DRIVER);
    r.accept(VIRTIO_F_VERSION_1);
    r.set_status(S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK);
    r.wr(regs::LEGACY_QUEUE_PFN, 0x1234);
    r.set_status(S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK | S::DRIVER_OK);
    assert!(!r.status().contains(S::DRIVER_OK));
    // A reset and a modern bring-up work.
    r.bring_up(8);
}

#[test]
fn console_output_and_interrupts() {
    let mut r = Rig::new();
    r.bring_up(8);
    r.mem.write(RAM + 0x8000, b"hello ").unwrap();
    r.mem.write(RAM + 0x9000, b"world\n").unwrap();
    r.desc(1, 3, RAM + 0x8000, 6, NEXT, 5);
    r.desc(1, 5, RAM + 0x9000, 6, 0, 0);
    r.offer(1, 3, 8);
    assert!(!r.irq());
    r.wr(regs::QUEUE_NOTIFY, 1);
    assert_eq!(&*r.sink.0.lock(), b"hello world\n");
    assert_eq!(r.used_idx(1), 1);
    assert_eq!(r.used_elem(1, 0), (3, 0));
    assert!(r.irq());
    assert_eq!(r.rd(regs::INTERRUPT_STATUS), 1);
    r.wr(regs::INTERRUPT_ACK, 1);
    assert!(!r.irq());
    // A notify for a queue that does not exist is ignored.
    r.wr(regs::QUEUE_NOTIFY, 9);
    assert!(!r.needs_reset());
}

#[test]
fn console_input_waits_for_buffers() {
    let mut r = Rig::new();
    r.bring_up(4);
    assert_eq!(r.dev.with_device(|c| c.push_input(b"ls\n")), 3);
    assert_eq!(r.used_idx(0), 0, "no receive buffer yet");
    r.desc(0, 0, RAM + 0x8000, 2, WRITE, 0);
    r.offer(0, 0, 4);
    r.wr(regs::QUEUE_NOTIFY, 0);
    assert_eq!(r.used_elem(0, 0), (0, 2));
    let mut got = [0u8; 2];
    r.mem.read(RAM + 0x8000, &mut got).unwrap();
    assert_eq!(&got, b"ls");
    // The rest goes out as soon as a buffer is there.
    r.desc(0, 1, RAM + 0x8100, 64, WRITE, 0);
    r.offer(0, 1, 4);
    r.dev.poll();
    assert_eq!(r.used_elem(0, 1), (1, 1));
    assert!(r.irq());
    // A VM reset resets the device: nothing more goes into the old rings.
    r.dev.reset();
    assert_eq!(r.status(), DeviceStatus::empty());
    assert!(!r.irq());
    r.dev.with_device(|c| c.push_input(b"z"));
    assert_eq!(r.used_idx(0), 2);
    // Input beyond the cap is refused.
    let big = alloc::vec![b'x'; INPUT_CAP + 10];
    assert_eq!(r.dev.with_device(|c| c.push_input(&big)), INPUT_CAP - 1);
}

/// Bytes typed before the driver's bring-up (which starts with a reset) reach it after:
/// they wait on the host side, not in the device's negotiated state.
#[test]
fn console_input_typed_before_bring_up_survives_its_reset() {
    let mut r = Rig::new();
    assert_eq!(r.dev.with_device(|c| c.push_input(b"early")), 5);
    r.wr(regs::STATUS, 0);
    r.bring_up(4);
    r.desc(0, 0, RAM + 0x8000, 64, WRITE, 0);
    r.offer(0, 0, 4);
    r.wr(regs::QUEUE_NOTIFY, 0);
    assert_eq!(r.used_elem(0, 0), (0, 5));
    let mut got = [0u8; 5];
    r.mem.read(RAM + 0x8000, &mut got).unwrap();
    assert_eq!(&got, b"early");
}

/// Each hostile transmit chain puts the device in DEVICE_NEEDS_RESET; the hypervisor and
/// the sink are untouched; a reset and bring-up recover it.
#[test]
fn hostile_chains_need_reset() {
    let ram_end = RAM + RAM_SIZE as u64;
    type Desc = (u16, u64, u32, u16, u16);
    let cases: [(&str, &[Desc]); 7] = [
        (
            "loop",
            &[(0, RAM + 0x8000, 1, NEXT, 1), (1, RAM + 0x8000, 1, NEXT, 0)],
        ),
        ("self loop", &[(0, RAM + 0x8000, 1, NEXT, 0)]),
        ("next out of range", &[(0, RAM + 0x8000, 1, NEXT, 200)]),
        ("outside RAM", &[(0, 0x1000, 4, 0, 0)]),
        ("huge length", &[(0, ram_end - 4, u32::MAX, 0, 0)]),
        ("wrapping buffer", &[(0, u64::MAX - 2, 16, 0, 0)]),
        ("indirect", &[(0, RAM + 0x8000, 16, 4, 0)]),
    ];
    for (what, descs) in cases {
        let mut r = Rig::new();
        r.bring_up(8);
        for &(i, addr, len, flags, next) in descs {
            r.desc(1, i, addr, len, flags, next);
        }
        r.offer(1, 0, 8);
        r.wr(regs::QUEUE_NOTIFY, 1);
        assert!(r.needs_reset(), "{what}");
        assert!(r.irq(), "{what}: config interrupt");
        assert_eq!(r.rd(regs::INTERRUPT_STATUS) & 2, 2, "{what}");
        assert!(
            r.sink.0.lock().is_empty() || what == "huge length",
            "{what}"
        );
        // Further kicks are ignored; a reset recovers.
        r.wr(regs::QUEUE_NOTIFY, 1);
        r.bring_up(8);
        assert!(!r.needs_reset(), "{what}");
        assert!(!r.irq(), "{what}");
    }
}

#[test]
fn queue_ready_needs_a_size() {
    let r = Rig::new();
    r.wr(regs::QUEUE_SEL, 0);
    r.wr(regs::QUEUE_NUM, 512);
    r.wr(regs::QUEUE_READY, 1);
    assert_eq!(r.rd(regs::QUEUE_READY), 0);
    r.wr(regs::QUEUE_NUM, 0);
    r.wr(regs::QUEUE_READY, 1);
    assert_eq!(r.rd(regs::QUEUE_READY), 0);
    r.wr(regs::QUEUE_NUM, 16);
    r.wr(regs::QUEUE_READY, 1);
    assert_eq!(r.rd(regs::QUEUE_READY), 1);
    // Addresses of a ready queue cannot change.
    r.wr(regs::QUEUE_DESC_LOW, 0x1000);
    assert_eq!(r.rd(regs::QUEUE_DESC_LOW), 0);
}

fn ready_queue(size: u16) -> (FlatMemory, Queue) {
    let mem = FlatMemory::new(RAM, RAM_SIZE);
    let (desc, avail, used) = areas(0);
    let q = Queue {
        size,
        ready: true,
        desc,
        avail,
        used,
        ..Queue::default()
    };
    (mem, q)
}

fn put_desc(mem: &FlatMemory, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&addr.to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b[12..14].copy_from_slice(&flags.to_le_bytes());
    b[14..].copy_from_slice(&next.to_le_bytes());
    mem.write(areas(0).0 + 16 * u64::from(i), &b).unwrap();
}

#[test]
fn queue_indices_wrap() {
    let (mem, mut q) = ready_queue(4);
    let (_, avail, used) = areas(0);
    q.next_avail = u16::MAX;
    q.next_used = u16::MAX;
    put_desc(&mem, 2, RAM + 0x8000, 8, WRITE, 0);
    // Slot 65535 % 4 = 3 holds head 2; the driver's index wrapped to 0.
    mem.write_u16(avail + 4 + 2 * 3, 2).unwrap();
    mem.write_u16(avail + 2, 0).unwrap();
    let chain = q.pop(&mem).unwrap().unwrap();
    assert_eq!(chain.head, 2);
    assert_eq!(
        chain.writable,
        [Segment {
            addr: RAM + 0x8000,
            len: 8
        }]
    );
    assert_eq!(q.pop(&mem), Ok(None));
    q.push_used(&mem, chain.head, 8).unwrap();
    assert_eq!(mem.read_u16(used + 2), Ok(0));
    assert_eq!(mem.read_u32(used + 4 + 8 * 3), Ok(2));
}

#[test]
fn queue_refuses_overrun_and_bad_heads() {
    let (mem, mut q) = ready_queue(4);
    let (_, avail, _) = areas(0);
    mem.write_u16(avail + 2, 5).unwrap();
    assert_eq!(q.pop(&mem), Err(QueueError::AvailOverrun));
    mem.write_u16(avail + 2, 1).unwrap();
    mem.write_u16(avail + 4, 4).unwrap();
    assert_eq!(q.pop(&mem), Err(QueueError::BadIndex(4)));
    // Readable after writable.
    mem.write_u16(avail + 4, 0).unwrap();
    put_desc(&mem, 0, RAM + 0x8000, 8, WRITE | NEXT, 1);
    put_desc(&mem, 1, RAM + 0x8000, 8, 0, 0);
    assert_eq!(q.pop(&mem), Err(QueueError::ReadAfterWrite));
    // A ring outside RAM.
    q.avail = 0x10;
    assert_eq!(
        q.pop(&mem),
        Err(QueueError::Memory(GuestMemoryError::NotRam))
    );
    q.avail = u64::MAX - 1;
    assert_eq!(
        q.pop(&mem),
        Err(QueueError::Memory(GuestMemoryError::Overflow))
    );
    // Not ready.
    q.ready = false;
    assert_eq!(q.pop(&mem), Err(QueueError::NotReady));
    assert_eq!(q.push_used(&mem, 0, 0), Err(QueueError::NotReady));
}

#[test]
fn chain_copies_are_bounded_by_the_callers_buffer() {
    let (mem, mut q) = ready_queue(4);
    let (_, avail, _) = areas(0);
    mem.write(RAM + 0x8000, b"abcdefgh").unwrap();
    put_desc(&mem, 0, RAM + 0x8000, 3, NEXT, 1);
    put_desc(&mem, 1, RAM + 0x8003, 5, NEXT, 2);
    put_desc(&mem, 2, RAM + 0x9000, u32::MAX, WRITE, 0);
    mem.write_u16(avail + 2, 1).unwrap();
    let chain = q.pop(&mem).unwrap().unwrap();
    assert_eq!(chain.readable_len(), 8);
    assert_eq!(chain.writable_len(), u64::from(u32::MAX));
    let mut buf = [0u8; 4];
    assert_eq!(chain.read(&mem, 2, &mut buf), Ok(4));
    assert_eq!(&buf, b"cdef");
    assert_eq!(chain.read(&mem, 6, &mut buf), Ok(2));
    assert_eq!(chain.read(&mem, 100, &mut buf), Ok(0));
    // Writing a small buffer into a huge segment copies just that, inside RAM.
    assert_eq!(chain.write(&mem, 0, b"xy"), Ok(2));
    // Past the end of RAM it is an error, not a fault.
    assert_eq!(
        chain.write(&mem, 0x8000, b"z"),
        Err(QueueError::Memory(GuestMemoryError::NotRam))
    );
}
