//! A minimal virtio-console driver over virtio-mmio (docs/virtio.md), at 0x0a00_0000 on
//! aarch64 and 0x1000_1000 on riscv64 and x86_64 (the VM configs `*-vcon.toml`). It checks
//! the identity registers, negotiates `VIRTIO_F_VERSION_1`, sends a line through the transmit
//! queue (the scenario expects it on the VM's console: it never goes to the UART), checks
//! the used ring and the interrupt status, then offers a looping chain (the device must
//! answer `DEVICE_NEEDS_RESET`), tries a legacy register (`DRIVER_OK` refused), resets and
//! sends a second line. Prints `PASS vcon` only if every check holds.
#![no_std]
#![no_main]

use grt::check::Checker;
use grt::virtio::{regs, Device, Queue, F_NEXT, F_WRITE, NEEDS_RESET};

#[cfg(target_arch = "aarch64")]
const BASE: usize = 0x0a00_0000;
#[cfg(not(target_arch = "aarch64"))]
const BASE: usize = 0x1000_1000;

const QSIZE: u16 = 4;
/// How long the guest waits for a typed line: the `*-virtio-console-input` scenarios type
/// it about half a second after the VM starts (the shell's prompt, `console vcon`, the
/// line); the `*-virtio-console` ones type nothing and wait it out.
const INPUT_WAIT_US: u64 = 4_000_000;
/// `QueuePFN`: a register of the legacy (version 1) interface only.
const LEGACY_QUEUE_PFN: usize = 0x40;

/// Queue `q` (receive 0, transmit 1) and its buffer, from `base` in guest RAM past the
/// image: the rings in the first 12 KiB, the buffer in the page after.
struct Area {
    q: Queue,
    buf: usize,
}

impl Area {
    fn of(base: usize, q: usize) -> Self {
        let at = base + q * 0x4000;
        Self {
            q: Queue::new(at, QSIZE),
            buf: at + 0x3000,
        }
    }
}

/// Checks both queues' size, negotiates and sets up both queues (with a legacy register
/// written before `DRIVER_OK` when `legacy`); whether `DRIVER_OK` stuck.
fn bring_up(c: &mut Checker, dev: &Device, rx: &Area, tx: &Area, legacy: bool) -> bool {
    for q in 0..2 {
        dev.set(regs::QUEUE_SEL, q);
        c.eq("QueueNumMax", dev.reg(regs::QUEUE_NUM_MAX), 256);
    }
    let negotiated = dev.negotiate(0, &[&rx.q, &tx.q]);
    c.ok("FEATURES_OK accepted", negotiated);
    if legacy {
        dev.set(LEGACY_QUEUE_PFN, 0x1234);
    }
    negotiated && dev.driver_ok()
}

/// Sends `line` as one chain (available index `idx`); checks it came back used.
fn send(c: &mut Checker, dev: &Device, a: &Area, idx: u16, line: &[u8]) {
    for (i, b) in line.iter().enumerate() {
        // SAFETY: the area's buffer is guest RAM this program owns (past its image).
        unsafe { grt::mmio::write8(a.buf + i, *b) };
    }
    a.q.put_desc(0, a.buf, line.len() as u32, 0, 0);
    a.q.offer(idx, 0);
    dev.set(regs::QUEUE_NOTIFY, 1);
    c.eq("used index", a.q.used_idx(), idx.wrapping_add(1));
    c.eq("interrupt status", dev.reg(regs::INTERRUPT_STATUS) & 1, 1);
    dev.set(regs::INTERRUPT_ACK, 1);
    c.eq("interrupt acknowledged", dev.reg(regs::INTERRUPT_STATUS), 0);
}

/// Waits up to [`INPUT_WAIT_US`] for a line typed into the console (the scenario attaches
/// the shell's terminal), collecting receive buffers; echoes it through the transmit queue
/// as `vcon: got "LINE"`. Without input it says so on the UART and goes on.
fn echo_input(c: &mut Checker, dev: &Device, rx: &Area, tx: &Area, tx_idx: &mut u16) {
    let mut line = [0u8; 64];
    let mut len = 0;
    let mut rx_idx: u16 = 0;
    loop {
        rx.q.put_desc(0, rx.buf, 64, F_WRITE, 0);
        rx.q.offer(rx_idx, 0);
        dev.set(regs::QUEUE_NOTIFY, 0);
        let want = rx_idx.wrapping_add(1);
        if !grt::irq::spin_until(INPUT_WAIT_US, || rx.q.used_idx() == want) {
            grt::println!("vcon: no input");
            return;
        }
        let got = rx.q.used_len(rx_idx);
        rx_idx = want;
        dev.set(regs::INTERRUPT_ACK, dev.reg(regs::INTERRUPT_STATUS));
        for i in 0..got.min(64) as usize {
            // SAFETY: as in `send`: the receive buffer.
            let b = unsafe { grt::mmio::read8(rx.buf + i) };
            if b == b'\r' || b == b'\n' {
                let mut out = [0u8; 96];
                let mut n = 0;
                for part in [&b"vcon: got \""[..], &line[..len], &b"\"\n"[..]] {
                    out[n..n + part.len()].copy_from_slice(part);
                    n += part.len();
                }
                send(c, dev, tx, *tx_idx, &out[..n]);
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
    let dev = Device(BASE);
    c.eq("magic", dev.reg(regs::MAGIC), 0x7472_6976);
    c.eq("version", dev.reg(regs::VERSION), 2);
    c.eq("device id (console)", dev.reg(regs::DEVICE_ID), 3);
    let base = (grt::image_end() as usize + 0xffff) & !0xfff;
    let (rx, tx) = (Area::of(base, 0), Area::of(base, 1));
    let up = bring_up(&mut c, &dev, &rx, &tx, false);
    if c.ok("DRIVER_OK", up) {
        send(&mut c, &dev, &tx, 0, b"hello over virtio\n");
        let mut tx_idx = 1;
        echo_input(&mut c, &dev, &rx, &tx, &mut tx_idx);
        // A chain that loops: the device needs a reset, and says so.
        tx.q.put_desc(1, tx.buf, 4, F_NEXT, 2);
        tx.q.put_desc(2, tx.buf, 4, F_NEXT, 1);
        tx.q.offer(tx_idx, 1);
        dev.set(regs::QUEUE_NOTIFY, 1);
        c.ok(
            "DEVICE_NEEDS_RESET",
            dev.reg(regs::STATUS) & NEEDS_RESET != 0,
        );
        c.eq("config interrupt", dev.reg(regs::INTERRUPT_STATUS) & 2, 2);
    }
    let legacy = bring_up(&mut c, &dev, &rx, &tx, true);
    c.ok("legacy driver refused", !legacy);
    let up = bring_up(&mut c, &dev, &rx, &tx, false);
    if c.ok("DRIVER_OK after reset", up) {
        send(&mut c, &dev, &tx, 0, b"again after reset\n");
    }
    c.finish();
}
