//! A minimal virtio-blk driver over virtio-mmio (docs/virtio.md), at 0x0a00_0000 on
//! aarch64 and 0x1000_1000 on riscv64 and x86_64 (the VM configs `*-vblk.toml`, backed by
//! a file on the hypervisor's disk). First boot: sector 1 does not hold the marker; it checks the
//! identity, the capacity, refusals (a read past the end and one overflowing the sector
//! number get `IOERR`, an unknown type `UNSUPP`), writes the marker, reads it back,
//! flushes, and resets the VM. Second boot: the marker is there (it went through the
//! hypervisor's disk), `PASS vblk`. The scenario then `cat`s the file from the shell.
//! A second device 0x200 above, read-only over the same file, offers `VIRTIO_BLK_F_RO`,
//! reads, and refuses a write with `IOERR`.
#![no_std]
#![no_main]

use grt::check::Checker;
use grt::mmio::{read8, write32, write64, write8};
use grt::virtio::{regs, Device, Queue, F_NEXT, F_WRITE};

#[cfg(target_arch = "aarch64")]
const BASE: usize = 0x0a00_0000;
#[cfg(not(target_arch = "aarch64"))]
const BASE: usize = 0x1000_1000;

const MARKER: &[u8] = b"AXVBLK-MARK written by the guest before its restart";
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
/// VIRTIO_BLK_F_FLUSH.
const F_FLUSH: u32 = 1 << 9;
/// VIRTIO_BLK_F_RO.
const F_RO: u32 = 1 << 5;

/// The request queue and the buffers of one request, past the program's image.
struct Blk {
    dev: Device,
    q: Queue,
    /// Header (16 bytes) at `buf`, data at `buf + 0x200`, status at `buf + 0x1200`.
    buf: usize,
    idx: u16,
}

impl Blk {
    fn header(&self) -> usize {
        self.buf
    }
    fn data(&self) -> usize {
        self.buf + 0x200
    }
    fn status(&self) -> usize {
        self.buf + 0x1200
    }

    /// One request of type `ty` at `sector` with `len` data bytes (none for 0); returns
    /// the status byte (0xff: the device did not complete it).
    fn request(&mut self, ty: u32, sector: u64, len: u32) -> u8 {
        // SAFETY: the buffers are guest RAM this program owns (past its image).
        unsafe {
            write32(self.header(), ty);
            write32(self.header() + 4, 0);
            write64(self.header() + 8, sector);
            write8(self.status(), 0xff);
        }
        let data_flags = if ty == T_IN { F_WRITE } else { 0 };
        self.q.put_desc(0, self.header(), 16, F_NEXT, 1);
        if len > 0 {
            self.q.put_desc(1, self.data(), len, data_flags | F_NEXT, 2);
            self.q.put_desc(2, self.status(), 1, F_WRITE, 0);
        } else {
            self.q.put_desc(1, self.status(), 1, F_WRITE, 0);
        }
        self.q.offer(self.idx, 0);
        self.idx = self.idx.wrapping_add(1);
        self.dev.set(regs::QUEUE_NOTIFY, 0);
        self.dev
            .set(regs::INTERRUPT_ACK, self.dev.reg(regs::INTERRUPT_STATUS));
        if self.q.used_idx() != self.idx {
            return 0xff;
        }
        // SAFETY: as above.
        unsafe { read8(self.status()) }
    }

    fn data_byte(&self, i: usize) -> u8 {
        // SAFETY: as in `request`.
        unsafe { read8(self.data() + i) }
    }

    fn has_marker(&self) -> bool {
        MARKER
            .iter()
            .enumerate()
            .all(|(i, &b)| self.data_byte(i) == b)
    }
}

#[no_mangle]
fn main() {
    let mut c = Checker::new("vblk");
    let dev = Device(BASE);
    c.eq("magic", dev.reg(regs::MAGIC), 0x7472_6976);
    c.eq("version", dev.reg(regs::VERSION), 2);
    c.eq("device id (block)", dev.reg(regs::DEVICE_ID), 2);
    let capacity = u64::from(dev.reg(regs::CONFIG)) | (u64::from(dev.reg(regs::CONFIG + 4)) << 32);
    c.eq("capacity (sectors of the 8 KiB file)", capacity, 16);
    let area = (grt::image_end() as usize + 0xffff) & !0xfff;
    let mut blk = Blk {
        dev,
        q: Queue::new(area, 4),
        buf: area + 0x3000,
        idx: 0,
    };
    if !c.ok("DRIVER_OK", blk.dev.bring_up(F_FLUSH, &[&blk.q])) {
        c.finish();
        return;
    }
    c.eq("read sector 1", blk.request(T_IN, 1, 512), S_OK);
    if blk.has_marker() {
        grt::println!("vblk: marker found after restart");
        c.eq("flush", blk.request(T_FLUSH, 0, 0), S_OK);
        c.finish();
        return;
    }
    c.eq(
        "read past the end",
        blk.request(T_IN, capacity, 512),
        S_IOERR,
    );
    c.eq(
        "read across the end",
        blk.request(T_IN, capacity - 1, 1024),
        S_IOERR,
    );
    c.eq(
        "sector overflows",
        blk.request(T_IN, u64::MAX, 512),
        S_IOERR,
    );
    c.eq("partial sector", blk.request(T_IN, 0, 100), S_IOERR);
    c.eq("unknown type", blk.request(77, 0, 0), S_UNSUPP);
    for i in 0..512 {
        let b = MARKER.get(i).copied().unwrap_or(b'\n');
        // SAFETY: as in `Blk::request`.
        unsafe { write8(blk.data() + i, b) };
    }
    c.eq("write sector 1", blk.request(T_OUT, 1, 512), S_OK);
    for i in 0..512 {
        // SAFETY: as in `Blk::request`.
        unsafe { write8(blk.data() + i, 0) };
    }
    c.eq("read it back", blk.request(T_IN, 1, 512), S_OK);
    c.ok("marker read back", blk.has_marker());
    c.eq("flush", blk.request(T_FLUSH, 0, 0), S_OK);
    read_only(&mut c, area + 0x8000);
    if c.failed() > 0 {
        c.finish();
        return;
    }
    grt::println!("vblk: marker written, restarting");
    grt::reset();
}

/// The read-only device 0x200 above the first, its queue and buffers at `area`.
fn read_only(c: &mut Checker, area: usize) {
    let mut ro = Blk {
        dev: Device(BASE + 0x200),
        q: Queue::new(area, 4),
        buf: area + 0x3000,
        idx: 0,
    };
    c.eq("read-only: device id", ro.dev.reg(regs::DEVICE_ID), 2);
    c.eq(
        "read-only: F_RO offered",
        ro.dev.features_low() & F_RO,
        F_RO,
    );
    if !c.ok("read-only: DRIVER_OK", ro.dev.bring_up(F_RO, &[&ro.q])) {
        return;
    }
    c.eq("read-only: read", ro.request(T_IN, 0, 512), S_OK);
    c.eq(
        "read-only: write refused",
        ro.request(T_OUT, 0, 512),
        S_IOERR,
    );
}
