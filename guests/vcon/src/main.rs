//! A minimal virtio-console driver over virtio-mmio (docs/virtio.md), at 0x0a00_0000 on
//! aarch64 and 0x1000_1000 on riscv64 (the VM configs `*-vcon.toml`). It checks the
//! identity registers, negotiates `VIRTIO_F_VERSION_1`, sends a line through the transmit
//! queue (the scenario expects it on the VM's console: it never goes to the UART), checks
//! the used ring and the interrupt status, then offers a looping chain (the device must
//! answer `DEVICE_NEEDS_RESET`), tries a legacy register (`DRIVER_OK` refused), resets and
//! sends a second line. Prints `PASS vcon` only if every check holds.
#![no_std]
#![no_main]

use grt::check::Checker;
use grt::mmio::{read16, read32, write16, write32, write64};

#[cfg(target_arch = "aarch64")]
const BASE: usize = 0x0a00_0000;
#[cfg(not(target_arch = "aarch64"))]
const BASE: usize = 0x1000_1000;

const STATUS: usize = 0x70;
const ACK: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
const NEEDS_RESET: u32 = 64;
const QSIZE: u32 = 4;

fn reg(off: usize) -> u32 {
    // SAFETY: BASE..BASE + 0x200 is the virtio-mmio window of this VM's config.
    unsafe { read32(BASE + off) }
}

fn set(off: usize, v: u32) {
    // SAFETY: as in `reg`.
    unsafe { write32(BASE + off, v) }
}

/// One queue's rings and buffer, in guest RAM past the image (page aligned).
struct Area(usize);

impl Area {
    /// Queue `q`'s area (receive 0, transmit 1) from `base`.
    fn of(base: usize, q: usize) -> Self {
        Self(base + q * 0x4000)
    }
    fn desc(&self) -> usize {
        self.0
    }
    fn avail(&self) -> usize {
        self.0 + 0x1000
    }
    fn used(&self) -> usize {
        self.0 + 0x2000
    }
    fn buf(&self) -> usize {
        self.0 + 0x3000
    }

    /// Descriptor `i`: `len` bytes at `addr`, `flags`, `next`.
    fn put_desc(&self, i: usize, addr: usize, len: u32, flags: u16, next: u16) {
        let d = self.desc() + 16 * i;
        // SAFETY: the area is guest RAM this program owns (past its image, inside RAM).
        unsafe {
            write64(d, addr as u64);
            write32(d + 8, len);
            write16(d + 12, flags);
            write16(d + 14, next);
        }
    }

    /// Offers head `head` as available entry `idx` (and publishes `idx + 1`).
    fn offer(&self, idx: u16, head: u16) {
        // SAFETY: as in `put_desc`.
        unsafe {
            write16(self.avail() + 4 + 2 * (idx as usize % QSIZE as usize), head);
            write16(self.avail() + 2, idx.wrapping_add(1));
        }
    }

    fn used_idx(&self) -> u16 {
        // SAFETY: as in `put_desc`.
        unsafe { read16(self.used() + 2) }
    }
}

/// Resets, negotiates and sets up both queues; whether `DRIVER_OK` stuck.
fn bring_up(c: &mut Checker, base: usize, legacy: bool) -> bool {
    set(STATUS, 0);
    set(STATUS, ACK | DRIVER);
    set(0x24, 1);
    set(0x20, 1); // bit 32: VIRTIO_F_VERSION_1
    set(STATUS, ACK | DRIVER | FEATURES_OK);
    c.ok("FEATURES_OK accepted", reg(STATUS) & FEATURES_OK != 0);
    for q in 0..2 {
        let a = Area::of(base, q);
        set(0x30, q as u32);
        c.eq("QueueNumMax", reg(0x34), 256);
        set(0x38, QSIZE);
        for (low, addr) in [(0x80, a.desc()), (0x90, a.avail()), (0xa0, a.used())] {
            set(low, addr as u32);
            set(low + 4, (addr as u64 >> 32) as u32);
        }
        // SAFETY: as in `Area::put_desc`: zeroes the ring headers.
        unsafe {
            write32(a.avail(), 0);
            write32(a.used(), 0);
        }
        set(0x44, 1);
    }
    if legacy {
        set(0x40, 0x1234); // QueuePFN: a version-1 register
    }
    set(STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    reg(STATUS) & DRIVER_OK != 0
}

/// Sends `line` as one chain (available index `idx`); checks it came back used.
fn send(c: &mut Checker, a: &Area, idx: u16, line: &[u8]) {
    for (i, b) in line.iter().enumerate() {
        // SAFETY: as in `Area::put_desc`.
        unsafe { grt::mmio::write8(a.buf() + i, *b) };
    }
    a.put_desc(0, a.buf(), line.len() as u32, 0, 0);
    a.offer(idx, 0);
    set(0x50, 1);
    c.eq("used index", a.used_idx(), idx.wrapping_add(1));
    c.eq("interrupt status", reg(0x60) & 1, 1);
    set(0x64, 1);
    c.eq("interrupt acknowledged", reg(0x60), 0);
}

/// Waits up to ten seconds for a line typed into the console (the scenario attaches the
/// shell's terminal), collecting receive buffers; echoes it through the transmit queue as
/// `vcon: got "LINE"`. Without input it says so on the UART and goes on.
fn echo_input(c: &mut Checker, rx: &Area, tx: &Area, tx_idx: &mut u16) {
    let mut line = [0u8; 64];
    let mut len = 0;
    let mut rx_idx: u16 = 0;
    loop {
        rx.put_desc(0, rx.buf(), 64, 2, 0); // device-writable
        rx.offer(rx_idx, 0);
        set(0x50, 0);
        let want = rx_idx.wrapping_add(1);
        if !grt::irq::spin_until(10_000_000, || rx.used_idx() == want) {
            grt::println!("vcon: no input");
            return;
        }
        rx_idx = want;
        // SAFETY: as in `Area::put_desc`: the used element of slot 0 and the buffer.
        let got = unsafe { read32(rx.used() + 4 + 8 * ((rx_idx as usize - 1) % QSIZE as usize) + 4) };
        set(0x64, reg(0x60));
        for i in 0..got.min(64) as usize {
            // SAFETY: as above.
            let b = unsafe { grt::mmio::read8(rx.buf() + i) };
            if b == b'\r' || b == b'\n' {
                let mut out = [0u8; 96];
                let mut n = 0;
                for part in [&b"vcon: got \""[..], &line[..len], &b"\"\n"[..]] {
                    out[n..n + part.len()].copy_from_slice(part);
                    n += part.len();
                }
                send(c, tx, *tx_idx, &out[..n]);
                *tx_idx = tx_idx.wrapping_add(1);
                return;
            }
            if len < line.len() {
                line[len] = b;
                len += 1;
            }
        }
    }
}

#[no_mangle]
fn main() {
    let mut c = Checker::new("vcon");
    c.eq("magic", reg(0), 0x7472_6976);
    c.eq("version", reg(4), 2);
    c.eq("device id (console)", reg(8), 3);
    let base = (grt::image_end() as usize + 0xffff) & !0xfff;
    let (rx, a) = (Area::of(base, 0), Area::of(base, 1));
    let up = bring_up(&mut c, base, false);
    if c.ok("DRIVER_OK", up) {
        send(&mut c, &a, 0, b"hello over virtio\n");
        let mut tx_idx = 1;
        echo_input(&mut c, &rx, &a, &mut tx_idx);
        // A chain that loops: the device needs a reset, and says so.
        a.put_desc(1, a.buf(), 4, 1, 2);
        a.put_desc(2, a.buf(), 4, 1, 1);
        a.offer(tx_idx, 1);
        set(0x50, 1);
        c.ok("DEVICE_NEEDS_RESET", reg(STATUS) & NEEDS_RESET != 0);
        c.eq("config interrupt", reg(0x60) & 2, 2);
    }
    let legacy = bring_up(&mut c, base, true);
    c.ok("legacy driver refused", !legacy);
    let up = bring_up(&mut c, base, false);
    if c.ok("DRIVER_OK after reset", up) {
        send(&mut c, &a, 0, b"again after reset\n");
    }
    c.finish();
}
