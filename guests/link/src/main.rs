//! The link test guest (docs/doorbell.md): the same image runs in both VMs of link "chan0"
//! and reads the doorbell's `SIDE` register to know its part.
//!
//! - **Client (side 0)** waits up to [`PEER_WAIT_US`] for the server (`PEER_UP` = 1 and the
//!   server's ready word in the shared memory). Without one it rings [`LONELY_RINGS`]
//!   times (the hypervisor drops and counts them), prints `link: no peer` and `PASS link`.
//!   With one it makes [`ROUNDS`] round trips — a message with a sequence number and a
//!   payload derived from it in the first shared page, a ring, the answer (the same number,
//!   the payload's sum and the payload inverted) in the second page after the doorbell
//!   interrupt — checks each answer, prints `link: 200 round trips, sequence checked` and
//!   `PASS link`. Then it goes on making round trips until the server stops (no answer,
//!   `PEER_UP` = 0: `link: peer down after N more round trips`), waits for it to come back
//!   and makes [`ROUNDS`] more (`PASS link-again`); or, if the server never stops, for
//!   [`STAY_US`] (`link: peer stayed up`).
//! - **Server (side 1)** says whether the shared memory holds a message from before it
//!   started (`link: the shared memory is fresh` / `holds message N`: the link outlived a
//!   restart of this VM), writes its ready word and answers every message it is rung for,
//!   checking that the numbers follow each other (a new client, or a new server, may start
//!   anywhere), and prints `link: answered 200 messages, sequence checked`. It never ends;
//!   a wrong message is `FAIL link: ...`.
//!
//! **Bench mode** (`cargo xtask bench --only link`, docs/performance.md): when the link in
//! the device tree is named [`BENCH_LINK`] instead of [`TEST_LINK`]
//! (`configs/vms/<arch>-link{a,b}-bench.toml`), the client makes [`WARMUP`] then
//! [`BENCH_ROUNDS`] timed bare round trips (a sequence number each way, one doorbell bit,
//! no timer armed on either side) and prints `BENCH link-round-trip N ns/op`, then times as
//! many reads of its doorbell's `MAGIC` register (one emulated MMIO read each, the
//! baseline) and prints `BENCH link-mmio-read N ns/op`. Under `-icount shift=0` a ns is an
//! instruction. The server answers each with the number.
#![no_std]
#![no_main]

use core::sync::atomic::{fence, AtomicU32, Ordering};

use grt::bench::{counter, counter_hz, ticks_to_ns};
use grt::check::Checker;
use grt::irq::{self, Irq};

/// The link's shared memory, its doorbell window and the doorbell's interrupt (the
/// `[[links]]` entry of `configs/vms/<arch>-link{a,b}.toml`).
/// And where the VM's generated device tree is loaded (`kernel.dtb.load_addr`).
#[cfg(target_arch = "aarch64")]
mod at {
    pub const SHM: usize = 0x5000_0000;
    pub const DOORBELL: usize = 0x0a10_0000;
    pub const IRQ: u32 = 50;
    pub const DTB: Option<usize> = Some(0x40f0_0000);
}
#[cfg(target_arch = "riscv64")]
mod at {
    pub const SHM: usize = 0x9000_0000;
    pub const DOORBELL: usize = 0x1010_0000;
    pub const IRQ: u32 = 5;
    pub const DTB: Option<usize> = Some(0x80f0_0000);
}
/// The virtual PC: an I/O APIC input, and no device tree.
#[cfg(target_arch = "x86_64")]
mod at {
    pub const SHM: usize = 0x9000_0000;
    pub const DOORBELL: usize = 0x1010_0000;
    pub const IRQ: u32 = 5;
    pub const DTB: Option<usize> = None;
}

/// Doorbell registers (axvdoorbell).
mod reg {
    pub const MAGIC: usize = 0x00;
    pub const SIDE: usize = 0x04;
    pub const PEER_UP: usize = 0x08;
    pub const RING: usize = 0x10;
    pub const PENDING: usize = 0x14;
    pub const ACK: usize = 0x18;
}
const MAGIC: u32 = 0x4c45_4244;

/// The shared memory: the client's message in the first page, the answer in the second,
/// the server's ready word at the end.
const TO_SERVER: usize = 0;
const TO_CLIENT: usize = 0x1000;
const READY: usize = 0x1ffc;
const READY_MAGIC: u32 = 0x5944_4552; // "REDY"
/// A mailbox: sequence number, payload words (client) or sum (server), then the payload.
const SEQ: usize = 0;
const LEN_OR_SUM: usize = 4;
const PAYLOAD: usize = 8;
const MAX_WORDS: u32 = 64;

/// The doorbell bit both sides ring with.
const BIT: u32 = 1;

const ROUNDS: u32 = 200;
/// The link's name in the test configs, and in the bench configs.
const TEST_LINK: &[u8] = b"chan0";
const BENCH_LINK: &[u8] = b"bench0";
/// Bench mode: untimed round trips first, then timed ones (and as many MMIO reads).
const WARMUP: u32 = 20;
const BENCH_ROUNDS: u32 = 1000;
const LONELY_RINGS: u32 = 3;
/// How long the client waits for its server. Every scenario starts the server first (at
/// boot the VMs start in the order of their files, `linkb`'s first; from the shell `vm start
/// linkb` comes first), so this covers only the server's own start-up, under load; it is
/// also how long a client without a peer (`*-link-no-peer`) waits before it says so.
const PEER_WAIT_US: u64 = 2_000_000;
const ANSWER_US: u64 = 2_000_000;
/// The sleeps the client's waits are made of ([`Patience`]).
const SLICE_US: u64 = 10_000;
const PEER_SLICE_US: u64 = 1_000;
const BACK_WAIT_US: u64 = 60_000_000;
const STAY_US: u64 = 60_000_000;

/// Doorbell bits the interrupt handler collected and the wait has not taken yet.
static RUNG: AtomicU32 = AtomicU32::new(0);

fn db_read(r: usize) -> u32 {
    // SAFETY: a 32-bit register of this VM's doorbell window.
    unsafe { grt::mmio::read32(at::DOORBELL + r) }
}

fn db_write(r: usize, v: u32) {
    // SAFETY: as in `db_read`.
    unsafe { grt::mmio::write32(at::DOORBELL + r, v) }
}

fn shm_read(off: usize) -> u32 {
    // SAFETY: an aligned word of the link's shared memory (8 KiB at `at::SHM`).
    unsafe { core::ptr::read_volatile((at::SHM + off) as *const u32) }
}

fn shm_write(off: usize, v: u32) {
    // SAFETY: as in `shm_read`.
    unsafe { core::ptr::write_volatile((at::SHM + off) as *mut u32, v) }
}

/// The payload word `i` of message `seq`, and how many words it has.
fn word(seq: u32, i: u32) -> u32 {
    seq.wrapping_mul(0x9e37_79b9) ^ i.wrapping_mul(0x0101_0101)
}
fn words(seq: u32) -> u32 {
    2 + seq % (MAX_WORDS - 1)
}

fn handler(irq: Irq) {
    if irq == Irq::External(at::IRQ) {
        let bits = db_read(reg::PENDING);
        db_write(reg::ACK, bits);
        RUNG.fetch_or(bits, Ordering::SeqCst);
    }
    // The timer only wakes `wait_rung` to look at the clock.
}

fn deadline(us: u64) -> u64 {
    irq::timer_now() + irq::timer_freq() * us / 1_000_000
}

/// A wait of `us` microseconds made of sleeps of `slice_us`: it is over only when its time
/// has passed *and* it slept as many slices as fit in that time. An emulator stalled on a
/// loaded host (both VMs' CPUs descheduled) resumes with the clock past every deadline;
/// without the count the first look at the clock would give up before the peer had run
/// again.
struct Patience {
    end: u64,
    slices_left: u64,
}

impl Patience {
    fn new(us: u64, slice_us: u64) -> Self {
        Self {
            end: deadline(us),
            slices_left: us / slice_us,
        }
    }

    /// One more slice slept.
    fn slept(&mut self) {
        self.slices_left = self.slices_left.saturating_sub(1);
    }

    fn over(&self) -> bool {
        self.slices_left == 0 && irq::timer_now() >= self.end
    }
}

/// Sleeps until the peer rings [`BIT`] (true) or `us` microseconds pass (false).
fn wait_rung(us: u64) -> bool {
    let end = deadline(us);
    loop {
        irq::disable();
        if RUNG.fetch_and(!BIT, Ordering::SeqCst) & BIT != 0 {
            irq::enable();
            fence(Ordering::SeqCst);
            return true;
        }
        let now = irq::timer_now();
        if now >= end {
            irq::enable();
            return false;
        }
        irq::timer_set(end.min(now + irq::timer_freq() / 100));
        // Masked: a pending interrupt still ends the wait, and is taken just after.
        grt::wait_for_interrupt();
        irq::enable();
    }
}

/// Sleeps until the peer rings [`BIT`], with no deadline (bench mode: no timer armed).
fn wait_bell() {
    loop {
        irq::disable();
        if RUNG.fetch_and(!BIT, Ordering::SeqCst) & BIT != 0 {
            irq::enable();
            fence(Ordering::SeqCst);
            return;
        }
        grt::wait_for_interrupt();
        irq::enable();
    }
}

/// Sleeps until the peer rings [`BIT`] (true), for at most [`ANSWER_US`]; a peer that goes
/// away meanwhile ([`peer_went`]) ends the wait at once (false): it will not answer.
fn wait_answer() -> bool {
    let mut wait = Patience::new(ANSWER_US, SLICE_US);
    while !wait.over() {
        if wait_rung(SLICE_US) {
            return true;
        }
        if peer_went() {
            return false;
        }
        wait.slept();
    }
    false
}

fn ring() {
    fence(Ordering::SeqCst);
    db_write(reg::RING, BIT);
}

fn peer_ready() -> bool {
    db_read(reg::PEER_UP) == 1 && shm_read(READY) == READY_MAGIC
}

/// Spins (the timer ticking) until the server is up and ready, for at most `us`; takes
/// its ready word (a server that starts again writes a new one).
fn wait_peer(us: u64) -> bool {
    let mut wait = Patience::new(us, PEER_SLICE_US);
    while !peer_ready() {
        if wait.over() {
            return false;
        }
        wait_rung(PEER_SLICE_US);
        wait.slept();
    }
    shm_write(READY, 0);
    true
}

/// Whether the server went away since the client took its ready word: it is stopped, or
/// it started again (a new ready word).
fn peer_went() -> bool {
    db_read(reg::PEER_UP) == 0 || shm_read(READY) == READY_MAGIC
}

/// One round trip with message `seq`: `Ok(true)` answered and right, `Ok(false)` answered
/// wrong or not at all (reported on `c`), `Err(())` the peer went away meanwhile.
fn round_trip(c: &mut Checker, seq: u32) -> Result<bool, ()> {
    let n = words(seq);
    for i in 0..n {
        shm_write(TO_SERVER + PAYLOAD + 4 * i as usize, word(seq, i));
    }
    shm_write(TO_SERVER + LEN_OR_SUM, n);
    shm_write(TO_SERVER + SEQ, seq);
    if db_read(reg::PEER_UP) == 0 {
        return Err(());
    }
    ring();
    if !wait_answer() {
        // A server stopped after the ring, maybe already started again, never answers.
        if peer_went() {
            return Err(());
        }
        // What the client sees tells a lost interrupt (the answer there, PENDING set) from
        // a server that never answered.
        c.ok(
            format_args!(
                "an answer to message {seq} (peer up; PENDING {:#x}, the answer's number {})",
                db_read(reg::PENDING),
                shm_read(TO_CLIENT + SEQ)
            ),
            false,
        );
        return Ok(false);
    }
    let mut ok = c.eq("answer's sequence number", shm_read(TO_CLIENT + SEQ), seq);
    let sum = (0..n).fold(0u32, |s, i| s.wrapping_add(word(seq, i)));
    ok &= c.eq("answer's sum", shm_read(TO_CLIENT + LEN_OR_SUM), sum);
    for i in 0..n {
        let got = shm_read(TO_CLIENT + PAYLOAD + 4 * i as usize);
        ok &= c.eq(format_args!("answer {seq} word {i}"), got, !word(seq, i));
    }
    Ok(ok)
}

/// Makes `rounds` round trips from `*seq + 1` on; `Err(done)` when the peer went down
/// after `done` of them.
fn run(c: &mut Checker, seq: &mut u32, rounds: u32) -> Result<(), u32> {
    for done in 0..rounds {
        *seq += 1;
        match round_trip(c, *seq) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(()) => return Err(done),
        }
    }
    Ok(())
}

fn client() {
    let mut c = Checker::new("link");
    if !wait_peer(PEER_WAIT_US) {
        for _ in 0..LONELY_RINGS {
            ring();
        }
        c.eq("PEER_UP with no peer", db_read(reg::PEER_UP), 0);
        grt::println!("link: no peer; rang {LONELY_RINGS} times");
        c.finish();
        return;
    }
    grt::println!("link: peer up");
    let mut seq = 0;
    let first = run(&mut c, &mut seq, ROUNDS);
    c.ok(
        "the peer stayed up for the first round trips",
        first.is_ok(),
    );
    if c.failed() == 0 {
        grt::println!("link: {ROUNDS} round trips, sequence checked");
    }
    if !c.finish() {
        return;
    }
    // Until the server stops (the scenarios that stop it) or for a while.
    let mut c = Checker::new("link-again");
    let end = deadline(STAY_US);
    let mut more = 0u32;
    while irq::timer_now() < end {
        match run(&mut c, &mut seq, 1) {
            Ok(()) if c.failed() == 0 => more += 1,
            Ok(()) => {
                c.finish();
                return;
            }
            Err(_) => {
                grt::println!("link: peer down after {more} more round trips");
                if !c.ok("the peer came back", wait_peer(BACK_WAIT_US)) {
                    c.finish();
                    return;
                }
                grt::println!("link: peer back");
                let again = run(&mut c, &mut seq, ROUNDS);
                c.ok("the peer stayed up", again.is_ok());
                if c.failed() == 0 {
                    grt::println!("link: {ROUNDS} more round trips, sequence checked");
                }
                c.finish();
                return;
            }
        }
    }
    grt::println!("link: peer stayed up ({more} more round trips)");
}

/// Bench mode, side 0: the timed round trips and MMIO reads (see the crate documentation).
fn bench_client() {
    let mut c = Checker::new("link");
    if !c.ok("the server came", wait_peer(PEER_WAIT_US)) {
        c.finish();
        return;
    }
    irq::timer_stop();
    let mut seq = 0u32;
    let mut ping = |c: &mut Checker| {
        seq += 1;
        shm_write(TO_SERVER + SEQ, seq);
        ring();
        wait_bell();
        c.eq("answer's sequence number", shm_read(TO_CLIENT + SEQ), seq)
    };
    for _ in 0..WARMUP {
        ping(&mut c);
    }
    let hz = counter_hz();
    let start = counter();
    for _ in 0..BENCH_ROUNDS {
        ping(&mut c);
    }
    let round_trip = ticks_to_ns(counter().wrapping_sub(start), hz) / u64::from(BENCH_ROUNDS);
    let start = counter();
    for _ in 0..BENCH_ROUNDS {
        core::hint::black_box(db_read(reg::MAGIC));
    }
    let mmio = ticks_to_ns(counter().wrapping_sub(start), hz) / u64::from(BENCH_ROUNDS);
    if c.failed() == 0 {
        grt::println!("BENCH link-round-trip {round_trip} ns/op ({BENCH_ROUNDS} iters)");
        grt::println!("BENCH link-mmio-read {mmio} ns/op ({BENCH_ROUNDS} iters)");
    }
    c.finish();
}

/// Bench mode, side 1: answers each ring with the number rung for.
fn bench_server() -> ! {
    shm_write(READY, READY_MAGIC);
    fence(Ordering::SeqCst);
    grt::println!("link: ready");
    irq::timer_stop();
    loop {
        wait_bell();
        shm_write(TO_CLIENT + SEQ, shm_read(TO_SERVER + SEQ));
        ring();
    }
}

fn server() -> ! {
    // What the link kept from before this server started (a client's last message).
    match shm_read(TO_SERVER + SEQ) {
        0 => grt::println!("link: the shared memory is fresh"),
        seq => grt::println!("link: the shared memory holds message {seq}"),
    }
    shm_write(READY, READY_MAGIC);
    fence(Ordering::SeqCst);
    grt::println!("link: ready");
    let mut last = 0u32;
    let mut answered = 0u32;
    loop {
        if !wait_rung(ANSWER_US) {
            continue;
        }
        let seq = shm_read(TO_SERVER + SEQ);
        if last != 0 && seq != last.wrapping_add(1) {
            grt::fail("link", format_args!("message {seq} after {last}"));
            grt::power_off();
        }
        let n = shm_read(TO_SERVER + LEN_OR_SUM);
        if n != words(seq) {
            grt::fail("link", format_args!("message {seq} has {n} words"));
            grt::power_off();
        }
        let mut sum = 0u32;
        for i in 0..n {
            let w = shm_read(TO_SERVER + PAYLOAD + 4 * i as usize);
            if w != word(seq, i) {
                grt::fail("link", format_args!("message {seq} word {i}: {w:#x}"));
                grt::power_off();
            }
            sum = sum.wrapping_add(w);
            shm_write(TO_CLIENT + PAYLOAD + 4 * i as usize, !w);
        }
        shm_write(TO_CLIENT + LEN_OR_SUM, sum);
        shm_write(TO_CLIENT + SEQ, seq);
        ring();
        last = seq;
        answered += 1;
        if answered == ROUNDS {
            grt::println!("link: answered {ROUNDS} messages, sequence checked");
        }
    }
}

/// The generated device tree at `at`, as bytes, if it has a DTB's magic and a size below
/// 64 KiB.
fn device_tree(at: usize) -> Option<&'static [u8]> {
    let word = |off: usize| {
        // SAFETY: the DTB the hypervisor loaded into this VM's RAM (the first 8 bytes of
        // its header, 4-byte aligned).
        u32::from_be(unsafe { core::ptr::read_volatile((at + off) as *const u32) })
    };
    let size = word(4) as usize;
    // SAFETY: `size` bytes of RAM from `at` (checked below 64 KiB, inside the VM's RAM),
    // which nothing writes while this program runs.
    (word(0) == 0xd00d_feed && size < 0x1_0000)
        .then(|| unsafe { core::slice::from_raw_parts(at as *const u8, size) })
}

/// Whether the device tree at `at` describes link `name` to `peer`: the `axvisor,link`
/// compatible string, the link's name and the peer's, each as a NUL-terminated string.
fn dtb_describes_link(at: usize, name: &[u8], peer: &[u8]) -> bool {
    let Some(dtb) = device_tree(at) else {
        return false;
    };
    let has = |s: &[u8]| {
        dtb.windows(s.len() + 1)
            .any(|w| &w[..s.len()] == s && w[s.len()] == 0)
    };
    has(b"axvisor,link") && has(name) && has(peer)
}

#[no_mangle]
fn main() {
    let magic = db_read(reg::MAGIC);
    if magic != MAGIC {
        grt::fail("link", format_args!("doorbell magic {magic:#x}"));
        return;
    }
    irq::set_handler(Some(handler));
    irq::init_cpu();
    irq::external_enable(at::IRQ);
    irq::enable();
    let side = db_read(reg::SIDE);
    let peer: &[u8] = if side == 0 { b"linkb" } else { b"linka" };
    let mut bench = false;
    if let Some(dtb) = at::DTB {
        bench = dtb_describes_link(dtb, BENCH_LINK, peer);
        if !bench && !dtb_describes_link(dtb, TEST_LINK, peer) {
            grt::fail("link", "the device tree has no axvisor,link node for chan0");
            return;
        }
        if bench {
            grt::println!("link: device tree describes bench0 (bench mode)");
        } else {
            grt::println!("link: device tree describes chan0");
        }
    }
    match (side, bench) {
        (0, false) => client(),
        (0, true) => bench_client(),
        (_, false) => server(),
        (_, true) => bench_server(),
    }
}
