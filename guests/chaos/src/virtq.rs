//! The virtio phase (aarch64 and riscv64: the VM's virtio-console at [`arch::VIRTIO`]),
//! after the random operations: the guest abuses the virtio-mmio transport and its
//! virtqueues the ways docs/virtio.md lists — writes to read-only registers, accesses of
//! the wrong width or past the window and the config space, queue notifies before the
//! device is ready, features it was not offered, status rewinds, bad queue sizes, and
//! transmit chains that loop, point outside RAM or into a device, wrap, run an index past
//! the queue, are indirect or put a readable descriptor after a writable one, with the rings
//! themselves outside RAM or in a device window — and checks each outcome: a register
//! access the transport refuses faults once, one it ignores changes nothing, a malformed
//! chain puts the device in `DEVICE_NEEDS_RESET` (with the configuration interrupt) and is
//! never used. Then it resets the device and uses it once correctly: the line it sends
//! (`chaos: virtio-console works after the abuse`) must reach the VM's console and come
//! back used. docs/guests.md#chaos.

use crate::{access, arch, guarded};
use grt::check::Checker;
use grt::virtio::{
    regs, Device, Queue, ACK, DRIVER, DRIVER_OK, FEATURES_OK, F_NEXT, F_WRITE, NEEDS_RESET,
};

/// Entries of each queue.
const QSIZE: u16 = 4;
/// The receive and transmit queues.
const RX: u32 = 0;
const TX: u32 = 1;
/// virtio-mmio registers `grt::virtio::regs` does not name.
const VENDOR_ID: usize = 0x0c;
const CONFIG_GENERATION: usize = 0xfc;
const LEGACY_QUEUE_PFN: usize = 0x40;
/// The transport's window.
const WINDOW: u64 = 0x200;
/// virtio-console's config space: `cols`, `rows` (16 bits each), `max_nr_ports`, `emerg_wr`.
const CONFIG_SIZE: u64 = 12;
/// `MagicValue`: "virt".
const MAGIC: u32 = 0x7472_6976;
/// `VIRTQ_DESC_F_INDIRECT`.
const F_INDIRECT: u16 = 4;
/// `InterruptStatus` bit 1: the configuration changed (here: the device needs a reset).
const CONFIG_INTERRUPT: u32 = 2;
/// An address with nothing of the VM (the hypervisor must never read or write there).
const NOWHERE: usize = 0xdead_0000;
/// The line sent once the abuse is over.
const LINE: &[u8] = b"chaos: virtio-console works after the abuse\n";

/// A descriptor: address, length, flags, next.
type Desc = (usize, u32, u16, u16);

/// The device, its two queues and a buffer, in guest RAM past the image.
struct Virtio {
    dev: Device,
    /// Where the queues are: receive, then transmit 16 KiB on (`grt::virtio::Queue`'s
    /// layout: descriptors, available ring at +4 KiB, used ring at +8 KiB), then the buffer.
    area: usize,
    rx: Queue,
    tx: Queue,
    buf: usize,
    /// Chains that put the device in `DEVICE_NEEDS_RESET`, and register accesses refused.
    needs_reset: u64,
    refused: u64,
}

/// Runs the phase on the virtio-console at `base`; every outcome is a check of `c`.
pub fn run(c: &mut Checker, base: u64) {
    let area = (grt::image_end() as usize + 0xffff) & !0xfff;
    let mut v = Virtio {
        dev: Device(base as usize),
        area,
        rx: Queue::new(area, QSIZE),
        tx: Queue::new(area + 0x4000, QSIZE),
        buf: area + 0x8000,
        needs_reset: 0,
        refused: 0,
    };
    v.identity(c);
    v.registers(c);
    v.negotiation(c);
    v.queue_setup(c);
    v.chains(c);
    v.rings(c);
    v.works(c);
    grt::println!(
        "chaos: virtio: {} malformed chains and rings set DEVICE_NEEDS_RESET, {} register accesses refused; the device works after a reset",
        v.needs_reset,
        v.refused
    );
}

impl Virtio {
    fn status(&self) -> u32 {
        self.dev.reg(regs::STATUS)
    }

    /// Resets the device and brings it up with both queues (nothing offered yet).
    fn fresh(&self, c: &mut Checker, what: &str) {
        let up = self.dev.bring_up(0, &[&self.rx, &self.tx]);
        c.ok(format_args!("virtio: {what}: bring-up after a reset"), up);
    }

    /// A 32-bit write at `off` that may fault; how many faults it took.
    fn try_write(&self, off: u64, width: u64, value: u64) -> u64 {
        let addr = self.dev.0 as u64 + off;
        // SAFETY: inside or just past the virtio-console's window: a device register or
        // unclaimed, never guest memory.
        guarded(|| unsafe { access(addr, width, true, value) }).1
    }

    /// A read of `width` bytes at `off` that may fault: the value and the faults.
    fn try_read(&self, off: u64, width: u64) -> (u64, u64) {
        let addr = self.dev.0 as u64 + off;
        // SAFETY: as in `try_write`.
        guarded(|| unsafe { access(addr, width, false, 0) })
    }

    fn identity(&self, c: &mut Checker) {
        c.eq("virtio: MagicValue", self.dev.reg(regs::MAGIC), MAGIC);
        c.eq("virtio: Version", self.dev.reg(regs::VERSION), 2);
        c.eq(
            "virtio: DeviceID (console)",
            self.dev.reg(regs::DEVICE_ID),
            3,
        );
    }

    /// Read-only registers ignore writes; the wrong width, a misaligned access, one past
    /// the window or past the config space fault once; a config write is ignored.
    fn registers(&mut self, c: &mut Checker) {
        let vendor = self.dev.reg(VENDOR_ID);
        for off in [
            regs::MAGIC,
            regs::VERSION,
            regs::DEVICE_ID,
            VENDOR_ID,
            regs::DEVICE_FEATURES,
            regs::QUEUE_NUM_MAX,
            regs::INTERRUPT_STATUS,
            CONFIG_GENERATION,
        ] {
            let faults = self.try_write(off as u64, 4, 0xffff_ffff);
            c.eq(
                format_args!("virtio: write to read-only register {off:#x}: faults"),
                faults,
                0,
            );
        }
        self.identity(c);
        c.eq(
            "virtio: VendorID after writes",
            self.dev.reg(VENDOR_ID),
            vendor,
        );
        self.dev.set(regs::QUEUE_SEL, RX);
        c.eq(
            "virtio: QueueNumMax after writes",
            self.dev.reg(regs::QUEUE_NUM_MAX),
            256,
        );
        let refused: [(u64, u64, bool); 10] = [
            (regs::MAGIC as u64, 1, false),
            (regs::VERSION as u64, 2, false),
            (regs::STATUS as u64, 8, false),
            (regs::STATUS as u64, 1, true),
            (regs::QUEUE_NOTIFY as u64, 2, true),
            (regs::STATUS as u64 + 2, 4, true),
            (regs::QUEUE_SEL as u64 + 1, 4, false),
            (WINDOW, 4, false),
            (WINDOW - 2, 4, true),
            (regs::CONFIG as u64 + CONFIG_SIZE, 4, false),
        ];
        for (off, width, write) in refused {
            let faults = if write {
                self.try_write(off, width, 0xffff_ffff)
            } else {
                self.try_read(off, width).1
            };
            self.refused += faults;
            let dir = if write { "write" } else { "read" };
            c.eq(
                format_args!("virtio: {width}-byte {dir} at {off:#x}: faults"),
                faults,
                1,
            );
        }
        // The status register was never written by those: still reset.
        c.eq("virtio: status after refused writes", self.status(), 0);
        let (cols, _) = self.try_read(regs::CONFIG as u64, 2);
        let faults = self.try_write(regs::CONFIG as u64, 2, 0x1234);
        let (after, _) = self.try_read(regs::CONFIG as u64, 2);
        c.eq("virtio: config write: faults", faults, 0);
        c.eq("virtio: config write ignored", after, cols);
    }

    /// Notifies before the device is ready do nothing; features not offered, or without
    /// `VIRTIO_F_VERSION_1`, are refused `FEATURES_OK`; `DRIVER_OK` without it is refused;
    /// status bits cannot be cleared but by a reset, and `DEVICE_NEEDS_RESET` is the
    /// device's; a legacy register refuses `DRIVER_OK` until a reset.
    fn negotiation(&mut self, c: &mut Checker) {
        self.dev.set(regs::STATUS, 0);
        for q in [RX, TX, 7, 0xffff_ffff] {
            self.dev.set(regs::QUEUE_NOTIFY, q);
        }
        c.eq(
            "virtio: status after notifies before ready",
            self.status(),
            0,
        );
        for (high, low, what) in [
            (1, 0xffff_ffff, "features not offered"),
            (0, 0, "no VIRTIO_F_VERSION_1"),
            (3, 0, "a high feature not offered"),
        ] {
            self.dev.set(regs::STATUS, 0);
            self.dev.set(regs::STATUS, ACK | DRIVER);
            self.dev.set(regs::DRIVER_FEATURES_SEL, 0);
            self.dev.set(regs::DRIVER_FEATURES, low);
            self.dev.set(regs::DRIVER_FEATURES_SEL, 1);
            self.dev.set(regs::DRIVER_FEATURES, high);
            self.dev.set(regs::STATUS, ACK | DRIVER | FEATURES_OK);
            c.eq(
                format_args!("virtio: FEATURES_OK with {what}"),
                self.status() & FEATURES_OK,
                0,
            );
            self.dev.set(regs::STATUS, ACK | DRIVER | DRIVER_OK);
            c.eq(
                format_args!("virtio: DRIVER_OK with {what}"),
                self.status() & DRIVER_OK,
                0,
            );
        }
        self.fresh(c, "status rewind");
        let all = ACK | DRIVER | FEATURES_OK | DRIVER_OK;
        self.dev.set(regs::STATUS, ACK);
        c.eq("virtio: status after writing ACK alone", self.status(), all);
        self.dev.set(regs::STATUS, all | NEEDS_RESET);
        c.eq(
            "virtio: DEVICE_NEEDS_RESET written by the driver",
            self.status(),
            all,
        );
        // Features written after FEATURES_OK change nothing that was agreed.
        self.dev.set(regs::DRIVER_FEATURES_SEL, 0);
        self.dev.set(regs::DRIVER_FEATURES, 0xffff_ffff);
        self.send(
            c,
            b"chaos: virtio: features written after FEATURES_OK are ignored\n",
            "features written after FEATURES_OK",
        );
        // A legacy register between negotiation and DRIVER_OK.
        let negotiated = self.dev.negotiate(0, &[&self.rx, &self.tx]);
        self.dev.set(LEGACY_QUEUE_PFN, 0x1234);
        c.ok("virtio: legacy: negotiated", negotiated);
        c.ok("virtio: legacy: DRIVER_OK refused", !self.dev.driver_ok());
    }

    /// Queue sizes outside 1..=256 and queues that do not exist are never ready; queue
    /// addresses written while the queue is ready are ignored.
    fn queue_setup(&mut self, c: &mut Checker) {
        self.dev.set(regs::STATUS, 0);
        self.dev.set(regs::STATUS, ACK | DRIVER);
        for num in [0, 257, 0xffff_ffff] {
            self.dev.set(regs::QUEUE_SEL, TX);
            self.dev.set(regs::QUEUE_NUM, num);
            self.dev.set(regs::QUEUE_READY, 1);
            c.eq(
                format_args!("virtio: QueueReady with QueueNum {num:#x}"),
                self.dev.reg(regs::QUEUE_READY),
                0,
            );
        }
        self.dev.set(regs::QUEUE_SEL, 5);
        c.eq(
            "virtio: QueueNumMax of queue 5",
            self.dev.reg(regs::QUEUE_NUM_MAX),
            0,
        );
        self.dev.set(regs::QUEUE_NUM, 4);
        self.dev.set(regs::QUEUE_READY, 1);
        c.eq(
            "virtio: QueueReady of queue 5",
            self.dev.reg(regs::QUEUE_READY),
            0,
        );
        // Queue addresses while ready: ignored, so the queue still works.
        self.fresh(c, "queue addresses while ready");
        self.dev.set(regs::QUEUE_SEL, TX);
        for off in [regs::QUEUE_DESC_LOW, regs::QUEUE_DESC_LOW + 0x10] {
            self.dev.set(off, NOWHERE as u32);
        }
        self.send(
            c,
            b"chaos: virtio: queue addresses written while ready are ignored\n",
            "queue addresses written while ready",
        );
    }

    /// Offers chain `head` on the transmit queue as available entry `idx`, notifies, and
    /// checks the device now needs a reset (and said so with the configuration interrupt)
    /// and used nothing.
    fn malformed(&mut self, c: &mut Checker, idx: u16, head: u16, what: &str) {
        self.tx.offer(idx, head);
        self.dev.set(regs::QUEUE_NOTIFY, TX);
        let ok = c.ok(
            format_args!("virtio: {what}: DEVICE_NEEDS_RESET"),
            self.status() & NEEDS_RESET != 0,
        );
        if ok {
            self.needs_reset += 1;
        }
        c.ok(
            format_args!("virtio: {what}: configuration interrupt"),
            self.dev.reg(regs::INTERRUPT_STATUS) & CONFIG_INTERRUPT != 0,
        );
        c.eq(
            format_args!("virtio: {what}: used index"),
            self.tx.used_idx(),
            0,
        );
        // A device that needs a reset takes no more notifies.
        self.tx.put_desc(0, self.buf, 1, 0, 0);
        self.tx.offer(idx.wrapping_add(1), 0);
        self.dev.set(regs::QUEUE_NOTIFY, TX);
        c.eq(
            format_args!("virtio: {what}: used index after a good chain"),
            self.tx.used_idx(),
            0,
        );
    }

    /// Malformed transmit chains, each on a freshly reset device.
    fn chains(&mut self, c: &mut Checker) {
        let ram_end = (grt::RAM_BASE + grt::RAM_SIZE) as usize;
        let buf = self.buf;
        // (what, descriptors from 0, the head offered)
        let cases: [(&str, &[Desc], u16); 10] = [
            ("a descriptor looping on itself", &[(buf, 8, F_NEXT, 0)], 0),
            (
                "a two-descriptor loop",
                &[(buf, 8, F_NEXT, 1), (buf, 8, F_NEXT, 0)],
                0,
            ),
            ("a buffer outside RAM", &[(NOWHERE, 16, 0, 0)], 0),
            (
                "a buffer in the console UART",
                &[(arch::UART.base as usize, 4, 0, 0)],
                0,
            ),
            (
                "a huge length past the end of RAM",
                &[(ram_end - 16, 0xffff_ffff, 0, 0)],
                0,
            ),
            ("a buffer that wraps", &[(usize::MAX - 7, 16, 0, 0)], 0),
            ("a next index past the queue", &[(buf, 8, F_NEXT, 200)], 0),
            ("an indirect descriptor", &[(buf, 16, F_INDIRECT, 0)], 0),
            (
                "a readable descriptor after a writable one",
                &[(buf, 8, F_WRITE | F_NEXT, 1), (buf, 8, 0, 0)],
                0,
            ),
            ("a head index past the queue", &[(buf, 8, 0, 0)], 77),
        ];
        for (what, descs, head) in cases {
            self.fresh(c, what);
            for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
                self.tx.put_desc(i as u16, addr, len, flags, next);
            }
            self.malformed(c, 0, head, what);
        }
        self.fresh(c, "an available index far ahead");
        self.tx.put_desc(0, buf, 8, 0, 0);
        self.malformed(c, 999, 0, "an available index far ahead");
    }

    /// The transmit queue's rings outside RAM, or the descriptor table in a device window.
    fn rings(&mut self, c: &mut Checker) {
        let uart = arch::UART.base as usize;
        // (descriptors, available ring, used ring)
        let cases: [(&str, [Option<usize>; 3]); 3] = [
            ("rings outside RAM", [Some(NOWHERE); 3]),
            ("a descriptor table in the UART", [Some(uart), None, None]),
            ("a used ring outside RAM", [None, None, Some(NOWHERE)]),
        ];
        for (what, at) in cases {
            // Queue 1 set up by hand, with the addresses given (the others the queue's).
            let negotiated = self.dev.negotiate(0, &[&self.rx]);
            // An empty chain: a device that took it would print nothing.
            self.tx.put_desc(0, self.buf, 0, 0, 0);
            let own = self.tx_addrs();
            self.dev.set(regs::QUEUE_SEL, TX);
            self.dev.set(regs::QUEUE_NUM, u32::from(QSIZE));
            for (k, addr) in at.iter().enumerate() {
                let addr = addr.unwrap_or(own[k]) as u64;
                let low = regs::QUEUE_DESC_LOW + 0x10 * k;
                self.dev.set(low, addr as u32);
                self.dev.set(low + 4, (addr >> 32) as u32);
            }
            self.dev.set(regs::QUEUE_READY, 1);
            // SAFETY: the transmit queue's area is guest RAM this program owns.
            unsafe { grt::mmio::write16(own[2] + 2, 0) };
            let live = self.dev.driver_ok();
            c.ok(format_args!("virtio: {what}: set up"), negotiated && live);
            self.malformed(c, 0, 0, what);
        }
    }

    /// The transmit queue's descriptor table, available and used rings.
    fn tx_addrs(&self) -> [usize; 3] {
        let at = self.area + 0x4000;
        [at, at + 0x1000, at + 0x2000]
    }

    /// Sends `line` as the first chain since the bring-up and checks it came back used.
    fn send(&self, c: &mut Checker, line: &[u8], what: &str) {
        for (i, b) in line.iter().enumerate() {
            // SAFETY: the buffer is guest RAM this program owns (past its image).
            unsafe { grt::mmio::write8(self.buf + i, *b) };
        }
        self.tx.put_desc(0, self.buf, line.len() as u32, 0, 0);
        self.tx.offer(0, 0);
        self.dev.set(regs::QUEUE_NOTIFY, TX);
        c.eq(
            format_args!("virtio: {what}: used index"),
            self.tx.used_idx(),
            1,
        );
        c.eq(
            format_args!("virtio: {what}: used head"),
            self.tx.used_id(0),
            0,
        );
        c.eq(
            format_args!("virtio: {what}: status"),
            self.status() & NEEDS_RESET,
            0,
        );
    }

    /// After all that, a reset device works: the line is printed and used.
    fn works(&self, c: &mut Checker) {
        self.fresh(c, "after the abuse");
        self.send(c, LINE, "after the abuse");
        c.eq(
            "virtio: after the abuse: queue interrupt",
            self.dev.reg(regs::INTERRUPT_STATUS) & 1,
            1,
        );
        self.dev.set(regs::INTERRUPT_ACK, 3);
        c.eq(
            "virtio: after the abuse: interrupt acknowledged",
            self.dev.reg(regs::INTERRUPT_STATUS),
            0,
        );
        self.dev.set(regs::STATUS, 0);
    }
}
