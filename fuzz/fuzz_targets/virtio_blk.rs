//! virtio-blk (axvirtio_blk) behind a split queue in 64 KiB of guest RAM the input writes:
//! request chains the input builds (any type, sector, lengths, buffer addresses near,
//! inside or outside RAM), raw ring and descriptor bytes, queue placement and size, kicks.
//! The device serves a `Region` in the middle of a larger backing; read-only or not and
//! whether `FLUSH` was negotiated come from the input.
//!
//! Checked besides "no panic": the device never asks its backing (the region) for a range
//! outside it (the guard below panics), the bytes around the region never change, a read-only
//! device's bytes never change, and a kick either succeeds or is a `QueueError` (the
//! transport's "needs reset").

use axdevice_base::GuestMemory;
use axvirtio::mem::FlatMemory;
use axvirtio::{Queue, QueueIo, VirtioDevice};
use axvirtio_blk::{Backing, BackingError, MemBacking, Region, VirtioBlk, F_FLUSH};
use axvisor_fuzz::virtio::{address, offer, QueuePlace, RAM, RAM_SIZE};
use axvisor_fuzz::Input;

/// The whole backing: 64 sectors; the device sees `first..first + count` of them.
const SECTORS: u64 = 64;
const CANARY: u8 = 0x5a;

/// A backing that panics when asked for a range outside itself: the device's own
/// checks must keep every request inside.
struct Guard(Region<MemBacking>);

impl Guard {
    fn check(&self, offset: u64, len: usize) {
        let end = offset
            .checked_add(len as u64)
            .expect("offset + len overflows");
        assert!(
            end <= self.0.len(),
            "backing access {offset}..{end} past the end"
        );
    }
}

impl Backing for Guard {
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        self.check(offset, buf.len());
        self.0.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BackingError> {
        self.check(offset, data.len());
        self.0.write_at(offset, data)
    }
    fn flush(&mut self) -> Result<(), BackingError> {
        self.0.flush()
    }
}

/// A sector: mostly near the device's end, sometimes anything.
fn sector(input: &mut Input<'_>) -> u64 {
    match input.u8() % 4 {
        0 => input.u64(),
        _ => u64::from(input.u8() % 80),
    }
}

/// Writes a request chain at descriptor 0.. and offers it: header (type, sector), data
/// segments, status byte.
fn request(mem: &FlatMemory, queue: &Queue, avail_idx: &mut u16, input: &mut Input<'_>) {
    let ty = match input.u8() % 6 {
        0 => 0,
        1 => 1,
        2 => 4,
        3 => 8,
        _ => input.u32(),
    };
    let hdr_at = RAM + 0x8000;
    let mut hdr = [0u8; 16];
    hdr[0..4].copy_from_slice(&ty.to_le_bytes());
    hdr[8..16].copy_from_slice(&sector(input).to_le_bytes());
    let _ = mem.write(hdr_at, &hdr);
    let mut segs = vec![(
        hdr_at,
        if input.u8().is_multiple_of(8) { 8 } else { 16 },
        false,
    )];
    for _ in 0..input.u8() % 4 {
        let len = match input.u8() % 4 {
            0 => input.u32(),
            _ => u32::from(input.u8() % 9) * 512,
        };
        segs.push((address(input), len, ty == 0 || input.u8().is_multiple_of(8)));
    }
    if !input.u8().is_multiple_of(8) {
        segs.push((RAM + 0x9000, 1, true));
    }
    offer(mem, &QueuePlace::from(queue), avail_idx, &segs);
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let read_only = flags & 1 != 0;
    let first = u64::from(input.u8()) % SECTORS;
    let count = 1 + u64::from(input.u8()) % (SECTORS - first);
    let mut backing = vec![CANARY; (SECTORS * 512) as usize];
    for (i, b) in backing[(first * 512) as usize..((first + count) * 512) as usize]
        .iter_mut()
        .enumerate()
    {
        *b = i as u8;
    }
    let region = Region::new(MemBacking::from_bytes(backing.clone()), first, count)
        .expect("the region lies inside");
    let mut dev = VirtioBlk::new(Guard(region), read_only, "fuzz");
    dev.activate(if flags & 2 != 0 { F_FLUSH } else { 0 });
    let mem = FlatMemory::new(RAM, RAM_SIZE);
    let mut queue = Queue::new(16);
    queue.ready = true;
    queue.desc = RAM;
    queue.avail = RAM + 0x1000;
    queue.used = RAM + 0x2000;
    let mut avail_idx = 0u16;
    let mut needs_reset = false;
    while !input.is_empty() {
        match input.u8() % 5 {
            0 => {
                let at = address(&mut input);
                let bytes = input.slice(64);
                let _ = mem.write(at, bytes);
            }
            1 => {
                queue.size = input.u16() % 300;
                queue.desc = address(&mut input);
                queue.avail = address(&mut input);
                queue.used = address(&mut input);
            }
            2 | 3 => request(&mem, &queue, &mut avail_idx, &mut input),
            _ if needs_reset => {}
            _ => {
                let mut queues = [queue.clone()];
                let mut io = QueueIo::new(&mem, &mut queues);
                needs_reset = dev.notify(0, &mut io).is_err();
                queue = queues[0].clone();
            }
        }
        let now = dev.backing().0.inner().bytes();
        let (lo, hi) = ((first * 512) as usize, ((first + count) * 512) as usize);
        assert!(
            now[..lo].iter().all(|&b| b == CANARY),
            "wrote before the region"
        );
        assert!(
            now[hi..].iter().all(|&b| b == CANARY),
            "wrote after the region"
        );
        if read_only {
            assert_eq!(now, &backing[..], "a read-only device changed");
        }
    }
}
