//! Host tests: every register through the `MmioDevice` trait, the gateway and claim/complete
//! rules, the notifier's edges, and a fuzz loop.

use alloc::sync::Arc;
use alloc::vec::Vec;

use axdevice_base::{AccessWidth, DeviceError, MmioDevice, VcpuNotifier};
use spin::Mutex;

use super::*;

/// Records every `notify` call.
#[derive(Default)]
struct Recorder(Mutex<Vec<usize>>);

impl VcpuNotifier for Recorder {
    fn notify(&self, vcpu: usize) {
        self.0.lock().push(vcpu);
    }
}

impl Recorder {
    fn take(&self) -> Vec<usize> {
        core::mem::take(&mut *self.0.lock())
    }
}

struct Bench {
    plic: Arc<Vplic>,
    dev: Arc<dyn MmioDevice>,
    rec: Arc<Recorder>,
}

impl Bench {
    fn new(sources: u32, contexts: usize, priority_bits: u32) -> Self {
        let rec = Arc::new(Recorder::default());
        let plic = Vplic::new(
            VplicConfig {
                sources,
                contexts,
                priority_bits,
            },
            rec.clone(),
        )
        .unwrap();
        let dev = plic.mmio();
        Self { plic, dev, rec }
    }

    fn rd(&self, off: usize) -> u32 {
        let v = self.dev.read(off, AccessWidth::Word).unwrap();
        assert!(v <= u64::from(u32::MAX));
        v as u32
    }

    fn wr(&self, off: usize, v: u32) {
        self.dev
            .write(off, AccessWidth::Word, u64::from(v))
            .unwrap();
    }

    fn set_prio(&self, id: u32, p: u32) {
        self.wr(prio(id), p);
    }

    fn enable(&self, ctx: usize, id: u32) {
        let off = enable(ctx, (id / 32) as usize);
        let v = self.rd(off);
        self.wr(off, v | 1 << (id % 32));
    }

    fn disable(&self, ctx: usize, id: u32) {
        let off = enable(ctx, (id / 32) as usize);
        let v = self.rd(off);
        self.wr(off, v & !(1 << (id % 32)));
    }

    fn claim(&self, ctx: usize) -> u32 {
        self.rd(claim(ctx))
    }

    fn complete(&self, ctx: usize, id: u32) {
        self.wr(claim(ctx), id);
    }

    fn pending(&self, id: u32) -> bool {
        self.rd(PENDING_BASE + 4 * (id / 32) as usize) & (1 << (id % 32)) != 0
    }

    fn line(&self, id: u32, high: bool) {
        self.plic.set_level(id, high);
    }

    fn out(&self, ctx: usize) -> bool {
        self.plic.external_pending(ctx)
    }

    fn check(&self) {
        self.plic.state.lock().check_invariants();
    }
}

fn prio(id: u32) -> usize {
    PRIORITY_BASE + 4 * id as usize
}

fn enable(ctx: usize, word: usize) -> usize {
    ENABLE_BASE + ENABLE_STRIDE * ctx + 4 * word
}

fn threshold(ctx: usize) -> usize {
    CONTEXT_BASE + CONTEXT_STRIDE * ctx
}

fn claim(ctx: usize) -> usize {
    threshold(ctx) + CLAIM_COMPLETE
}

#[test]
fn config_is_checked() {
    let rec: Arc<dyn VcpuNotifier> = Arc::new(Recorder::default());
    let cfg = |sources, contexts, priority_bits| VplicConfig {
        sources,
        contexts,
        priority_bits,
    };
    assert_eq!(
        Vplic::new(cfg(0, 1, 3), rec.clone()).unwrap_err(),
        VplicError::BadSources(0)
    );
    assert_eq!(
        Vplic::new(cfg(1024, 1, 3), rec.clone()).unwrap_err(),
        VplicError::BadSources(1024)
    );
    assert_eq!(
        Vplic::new(cfg(10, 0, 3), rec.clone()).unwrap_err(),
        VplicError::BadContexts(0)
    );
    assert_eq!(
        Vplic::new(cfg(10, MAX_CONTEXTS + 1, 3), rec.clone()).unwrap_err(),
        VplicError::BadContexts(MAX_CONTEXTS + 1)
    );
    assert_eq!(
        Vplic::new(cfg(10, 1, 0), rec.clone()).unwrap_err(),
        VplicError::BadPriorityBits(0)
    );
    assert_eq!(
        Vplic::new(cfg(10, 1, 33), rec.clone()).unwrap_err(),
        VplicError::BadPriorityBits(33)
    );
    for e in [
        VplicError::BadSources(0),
        VplicError::BadContexts(0),
        VplicError::BadPriorityBits(0),
    ] {
        assert!(!std::format!("{e}").is_empty());
    }
    let p = Vplic::new(cfg(MAX_SOURCES, 4, 32), rec.clone()).unwrap();
    assert_eq!(p.config(), cfg(MAX_SOURCES, 4, 32));
    assert!(!std::format!("{p:?}").is_empty());
    assert_eq!(p.mmio().name(), "riscv-plic");
    assert_eq!(p.mmio().size(), VPLIC_SIZE);
}

#[test]
fn access_checks() {
    let b = Bench::new(31, 2, 3);
    for (off, w) in [
        (0, AccessWidth::Byte),
        (4, AccessWidth::Half),
        (8, AccessWidth::Dword),
    ] {
        assert_eq!(b.dev.read(off, w), Err(DeviceError::BadWidth));
        assert_eq!(b.dev.write(off, w, 1), Err(DeviceError::BadWidth));
    }
    for off in [1, 2, 3, 0x1001, 0x20_0002, 0x20_0005] {
        assert_eq!(
            b.dev.read(off, AccessWidth::Word),
            Err(DeviceError::Misaligned)
        );
        assert_eq!(
            b.dev.write(off, AccessWidth::Word, 1),
            Err(DeviceError::Misaligned)
        );
    }
    for off in [VPLIC_SIZE, VPLIC_SIZE - 2, usize::MAX, usize::MAX - 3] {
        assert_eq!(
            b.dev.read(off, AccessWidth::Word),
            Err(DeviceError::BadOffset)
        );
        assert_eq!(
            b.dev.write(off, AccessWidth::Word, 1),
            Err(DeviceError::BadOffset)
        );
    }
    // The last word of the window is a (reserved) register.
    assert_eq!(b.dev.read(VPLIC_SIZE - 4, AccessWidth::Word), Ok(0));
    // Refused accesses changed nothing.
    b.set_prio(1, 0);
    assert_eq!(
        b.dev.write(prio(1) + 1, AccessWidth::Byte, 7),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(b.rd(prio(1)), 0);
}

#[test]
fn priority_registers() {
    let b = Bench::new(40, 1, 3);
    // Source 0's slot is reserved.
    b.wr(prio(0), 7);
    assert_eq!(b.rd(prio(0)), 0);
    for id in 1..=40 {
        assert_eq!(b.rd(prio(id)), 0, "reset value");
        b.wr(prio(id), id % 8);
        assert_eq!(b.rd(prio(id)), id % 8);
    }
    // WARL: only the low three bits are kept.
    b.wr(prio(5), 0xffff_fff9);
    assert_eq!(b.rd(prio(5)), 1);
    // Sources past the last one are reserved.
    for id in [41, 100, 1023] {
        b.wr(prio(id), 3);
        assert_eq!(b.rd(prio(id)), 0);
    }
    // 32 implemented bits keep everything.
    let wide = Bench::new(3, 1, 32);
    wide.wr(prio(1), 0xdead_beef);
    assert_eq!(wide.rd(prio(1)), 0xdead_beef);
    wide.wr(threshold(0), 0xffff_ffff);
    assert_eq!(wide.rd(threshold(0)), 0xffff_ffff);
    let one = Bench::new(3, 1, 1);
    one.wr(prio(2), 3);
    assert_eq!(one.rd(prio(2)), 1);
}

#[test]
fn pending_bits_follow_lines_and_are_read_only() {
    let b = Bench::new(40, 1, 3);
    for w in 0..32 {
        assert_eq!(b.rd(PENDING_BASE + 4 * w), 0);
    }
    b.line(1, true);
    b.line(33, true);
    b.line(40, true);
    assert_eq!(b.rd(PENDING_BASE), 1 << 1);
    assert_eq!(b.rd(PENDING_BASE + 4), (1 << 1) | (1 << 8));
    // Writes are ignored, both setting and clearing.
    b.wr(PENDING_BASE, 0xffff_ffff);
    b.wr(PENDING_BASE + 4, 0);
    assert_eq!(b.rd(PENDING_BASE), 1 << 1);
    assert_eq!(b.rd(PENDING_BASE + 4), (1 << 1) | (1 << 8));
    // Words past the last source read 0.
    b.wr(PENDING_BASE + 8, 0xffff_ffff);
    assert_eq!(b.rd(PENDING_BASE + 8), 0);
    assert_eq!(b.rd(PENDING_BASE + 0x7c), 0);
    // Lines for non-existent sources do nothing.
    b.line(0, true);
    b.line(41, true);
    b.line(u32::MAX, true);
    assert_eq!(b.rd(PENDING_BASE), 1 << 1);
    assert_eq!(b.rd(PENDING_BASE + 4), (1 << 1) | (1 << 8));
    // Nothing enabled: no output, no notification.
    assert!(!b.out(0));
    assert!(b.rec.take().is_empty());
    b.check();
}

#[test]
fn enable_registers() {
    let b = Bench::new(40, 3, 3);
    for ctx in 0..3 {
        assert_eq!(b.rd(enable(ctx, 0)), 0);
        assert_eq!(b.rd(enable(ctx, 1)), 0);
    }
    // Bit 0 (source 0) is hardwired to 0; bits past source 40 too.
    b.wr(enable(0, 0), 0xffff_ffff);
    b.wr(enable(0, 1), 0xffff_ffff);
    assert_eq!(b.rd(enable(0, 0)), 0xffff_fffe);
    assert_eq!(b.rd(enable(0, 1)), 0x1ff);
    // Contexts are independent.
    b.wr(enable(1, 0), 0x0000_0f00);
    assert_eq!(b.rd(enable(0, 0)), 0xffff_fffe);
    assert_eq!(b.rd(enable(1, 0)), 0x0000_0f00);
    assert_eq!(b.rd(enable(2, 0)), 0);
    // Words past the last source, inside an existing context's block, are reserved.
    for w in 2..32 {
        b.wr(enable(0, w), 0xffff_ffff);
        assert_eq!(b.rd(enable(0, w)), 0);
    }
    // Contexts that do not exist are reserved, up to the start of the context registers.
    b.wr(enable(3, 0), 0xffff_ffff);
    assert_eq!(b.rd(enable(3, 0)), 0);
    b.wr(CONTEXT_BASE - 4, 0xffff_ffff);
    assert_eq!(b.rd(CONTEXT_BASE - 4), 0);
    // Between the pending and enable blocks: reserved.
    b.wr(0x1080, 1);
    assert_eq!(b.rd(0x1080), 0);
    b.wr(0x1ffc, 1);
    assert_eq!(b.rd(0x1ffc), 0);
    b.check();
}

#[test]
fn context_registers() {
    let b = Bench::new(10, 2, 3);
    assert_eq!(b.rd(threshold(0)), 0);
    b.wr(threshold(0), 5);
    b.wr(threshold(1), 0xffff_ff0a);
    assert_eq!(b.rd(threshold(0)), 5);
    assert_eq!(b.rd(threshold(1)), 2, "WARL: three bits");
    // Claim with nothing pending reads 0.
    assert_eq!(b.claim(0), 0);
    assert_eq!(b.claim(1), 0);
    // The rest of each context's page is reserved.
    for rel in [8, 0xc, 0x800, 0xffc] {
        b.wr(threshold(0) + rel, 7);
        assert_eq!(b.rd(threshold(0) + rel), 0);
    }
    // Contexts past the last one are reserved, up to the last context the layout has.
    for ctx in [2, 3, 100, MAX_CONTEXTS - 1] {
        b.wr(threshold(ctx), 7);
        assert_eq!(b.rd(threshold(ctx)), 0);
        b.wr(claim(ctx), 1);
        assert_eq!(b.rd(claim(ctx)), 0);
    }
    assert_eq!(b.rd(threshold(0)), 5);
    assert_eq!(b.rd(threshold(1)), 2);
}

#[test]
fn claim_orders_by_priority_then_id() {
    let b = Bench::new(64, 1, 3);
    let srcs = [(3, 2), (5, 7), (9, 7), (40, 5), (63, 7), (2, 1)];
    for (id, p) in srcs {
        b.set_prio(id, p);
        b.enable(0, id);
        b.line(id, true);
    }
    let mut order = Vec::new();
    loop {
        let id = b.claim(0);
        if id == 0 {
            break;
        }
        order.push(id);
    }
    assert_eq!(order, [5, 9, 63, 40, 3, 2]);
    for (id, _) in srcs {
        assert!(!b.pending(id));
    }
    b.check();
}

#[test]
fn claim_skips_priority_zero_and_disabled_sources() {
    let b = Bench::new(10, 1, 3);
    b.enable(0, 1);
    b.line(1, true); // priority 0
    b.line(2, true); // not enabled
    b.set_prio(2, 7);
    assert!(!b.out(0));
    assert_eq!(b.claim(0), 0);
    assert!(b.pending(1) && b.pending(2));
    // Raising its priority makes source 1 interrupt.
    b.set_prio(1, 1);
    assert!(b.out(0));
    assert_eq!(b.rec.take(), [0]);
    assert_eq!(b.claim(0), 1);
    assert!(!b.out(0));
    b.check();
}

#[test]
fn threshold_masks_output_not_claim() {
    let b = Bench::new(10, 1, 3);
    b.set_prio(4, 3);
    b.enable(0, 4);
    b.wr(threshold(0), 3);
    b.line(4, true);
    // Priority must be strictly above the threshold.
    assert!(!b.out(0));
    assert!(b.rec.take().is_empty());
    b.wr(threshold(0), 2);
    assert!(b.out(0));
    assert_eq!(b.rec.take(), [0]);
    b.wr(threshold(0), 7);
    assert!(!b.out(0));
    assert!(b.rec.take().is_empty(), "falling edges are not notified");
    // The specification: a claim is not affected by the threshold (polling works).
    assert_eq!(b.claim(0), 4);
    assert_eq!(b.claim(0), 0);
    b.complete(0, 4);
    assert!(b.pending(4), "line still high");
    assert!(!b.out(0));
    assert!(b.rec.take().is_empty());
    b.check();
}

#[test]
fn in_service_blocks_new_requests() {
    let b = Bench::new(10, 1, 3);
    b.set_prio(7, 1);
    b.enable(0, 7);
    b.line(7, true);
    assert_eq!(b.rec.take(), [0]);
    assert_eq!(b.claim(0), 7);
    assert!(!b.pending(7));
    assert!(!b.out(0));
    // Toggling the line while in service forwards nothing.
    b.line(7, false);
    b.line(7, true);
    b.line(7, false);
    assert!(!b.pending(7));
    assert!(!b.out(0));
    assert_eq!(b.claim(0), 0);
    assert!(b.rec.take().is_empty());
    // Completion with the line low: nothing pending.
    b.complete(0, 7);
    assert!(!b.pending(7));
    assert!(!b.out(0));
    assert!(b.rec.take().is_empty());
    // The next rise is a new request.
    b.line(7, true);
    assert!(b.pending(7));
    assert!(b.out(0));
    assert_eq!(b.rec.take(), [0]);
    b.check();
}

#[test]
fn complete_with_line_high_pends_again() {
    let b = Bench::new(10, 1, 3);
    b.set_prio(10, 2);
    b.enable(0, 10);
    b.line(10, true);
    assert_eq!(b.rec.take(), [0]);
    assert_eq!(b.claim(0), 10);
    assert!(!b.out(0));
    b.complete(0, 10);
    assert!(b.pending(10));
    assert!(b.out(0));
    assert_eq!(b.rec.take(), [0], "complete raised the output");
    assert_eq!(b.claim(0), 10);
    b.line(10, false);
    b.complete(0, 10);
    assert!(!b.pending(10));
    assert!(!b.out(0));
    b.check();
}

#[test]
fn lowering_a_line_does_not_retract() {
    let b = Bench::new(10, 1, 3);
    b.set_prio(3, 1);
    b.enable(0, 3);
    b.line(3, true);
    b.line(3, false);
    assert!(b.pending(3));
    assert!(b.out(0));
    assert_eq!(b.claim(0), 3);
    b.complete(0, 3);
    assert!(!b.pending(3));
    b.check();
}

#[test]
fn bad_completions_are_ignored() {
    let b = Bench::new(40, 2, 3);
    b.set_prio(5, 1);
    b.enable(0, 5);
    b.line(5, true);
    assert_eq!(b.claim(0), 5);
    // Not enabled for context 1: ignored, source stays in service.
    b.complete(1, 5);
    b.line(5, false);
    b.line(5, true);
    assert!(!b.pending(5));
    // IDs that are not sources, and a source not in service.
    for id in [0, 41, 1023, 1024, u32::MAX, 6] {
        b.complete(0, id);
    }
    assert!(!b.pending(5));
    // Disabled for context 0 now: its completion is ignored too.
    b.disable(0, 5);
    b.complete(0, 5);
    assert!(!b.pending(5));
    // Enabled again: completion works; the line is high so it is pending again.
    b.enable(0, 5);
    b.complete(0, 5);
    assert!(b.pending(5));
    // A second completion of a source not in service changes nothing.
    b.complete(0, 5);
    assert!(b.pending(5));
    assert_eq!(b.claim(0), 5);
    b.check();
}

#[test]
fn completion_by_another_enabled_context() {
    // The specification does not check that the completing context made the claim.
    let b = Bench::new(10, 2, 3);
    b.set_prio(2, 1);
    b.enable(0, 2);
    b.enable(1, 2);
    b.line(2, true);
    assert_eq!(b.claim(0), 2);
    b.complete(1, 2);
    assert!(b.pending(2));
    b.check();
}

#[test]
fn notifier_edges() {
    let b = Bench::new(10, 1, 3);
    // A line rise with nothing enabled: no edge.
    b.line(1, true);
    assert!(b.rec.take().is_empty());
    // Enable write: still priority 0, no edge.
    b.enable(0, 1);
    assert!(b.rec.take().is_empty());
    // Priority write: edge.
    b.set_prio(1, 1);
    assert!(b.out(0));
    assert_eq!(b.rec.take(), [0]);
    // More changes while high: no further notifications.
    b.set_prio(1, 4);
    b.line(2, true);
    b.set_prio(2, 6);
    b.enable(0, 2);
    assert!(b.rec.take().is_empty());
    // Disable both (falling), enable again (rising).
    b.wr(enable(0, 0), 0);
    assert!(!b.out(0));
    b.wr(enable(0, 0), 1 << 2);
    assert!(b.out(0));
    assert_eq!(b.rec.take(), [0]);
    // Threshold write down and up.
    b.wr(threshold(0), 6);
    assert!(!b.out(0));
    b.wr(threshold(0), 5);
    assert!(b.out(0));
    assert_eq!(b.rec.take(), [0]);
    // Priority write down (falling) and back (rising).
    b.set_prio(2, 0);
    assert!(!b.out(0));
    b.set_prio(2, 6);
    assert_eq!(b.rec.take(), [0]);
    // Claim lowers without a notification; a line rise raises with one.
    b.wr(threshold(0), 0);
    assert_eq!(b.claim(0), 2);
    assert!(!b.out(0));
    b.line(3, true);
    b.set_prio(3, 1);
    assert!(b.rec.take().is_empty(), "source 3 not enabled");
    b.enable(0, 3);
    assert_eq!(b.rec.take(), [0]);
    b.check();
}

#[test]
fn two_contexts_with_different_enables() {
    let b = Bench::new(20, 2, 3);
    b.set_prio(10, 1);
    b.set_prio(11, 1);
    b.set_prio(12, 1);
    b.enable(0, 10);
    b.enable(1, 11);
    b.enable(0, 12);
    b.enable(1, 12);
    b.line(10, true);
    assert!(b.out(0) && !b.out(1));
    assert_eq!(b.rec.take(), [0]);
    b.line(11, true);
    assert!(b.out(0) && b.out(1));
    assert_eq!(b.rec.take(), [1]);
    // Each context claims only its own.
    assert_eq!(b.claim(1), 11);
    assert_eq!(b.claim(1), 0);
    assert_eq!(b.claim(0), 10);
    assert_eq!(b.claim(0), 0);
    assert!(!b.out(0) && !b.out(1));
    // A source enabled for both raises both (multicast) ...
    b.line(12, true);
    assert!(b.out(0) && b.out(1));
    assert_eq!(b.rec.take(), [0, 1]);
    // ... and the first claim takes it from both.
    assert_eq!(b.claim(1), 12);
    assert!(!b.out(0) && !b.out(1));
    assert_eq!(b.claim(0), 0);
    // Out-of-range contexts have no output.
    assert!(!b.plic.external_pending(2));
    assert!(!b.plic.external_pending(usize::MAX));
    b.check();
}

#[test]
fn irq_lines() {
    let b = Bench::new(10, 1, 3);
    assert!(b.plic.irq_line(0).is_none());
    assert!(b.plic.irq_line(11).is_none());
    assert!(b.plic.irq_line(u32::MAX).is_none());
    let uart = b.plic.irq_line(10).unwrap();
    b.set_prio(10, 1);
    b.enable(0, 10);
    uart.set_level(true);
    assert!(b.pending(10));
    assert!(b.out(0));
    assert_eq!(b.rec.take(), [0]);
    assert_eq!(b.claim(0), 10);
    uart.set_level(false);
    b.complete(0, 10);
    assert!(!b.pending(10));
    b.check();
}

#[test]
fn largest_layout() {
    let b = Bench::new(MAX_SOURCES, 4, 3);
    b.set_prio(MAX_SOURCES, 7);
    assert_eq!(b.rd(prio(MAX_SOURCES)), 7);
    assert_eq!(prio(MAX_SOURCES), 0xffc);
    b.enable(3, MAX_SOURCES);
    assert_eq!(b.rd(enable(3, 31)), 1 << 31);
    b.line(MAX_SOURCES, true);
    assert_eq!(b.rd(PENDING_BASE + 0x7c), 1 << 31);
    assert!(b.out(3));
    assert_eq!(b.rec.take(), [3]);
    assert_eq!(b.claim(3), MAX_SOURCES);
    b.check();

    // The last context the layout has room for sits at the end of the window.
    let big = Bench::new(2, MAX_CONTEXTS, 3);
    let last = MAX_CONTEXTS - 1;
    assert_eq!(claim(last), 0x3ff_f004);
    assert_eq!(enable(last, 31), 0x1f_1ffc);
    big.set_prio(1, 1);
    big.enable(last, 1);
    big.wr(threshold(last), 0);
    big.line(1, true);
    assert!(big.out(last));
    assert_eq!(big.rec.take(), [last]);
    assert_eq!(big.claim(last), 1);
    big.complete(last, 1);
    assert!(big.pending(1));
}

#[test]
fn reset_keeps_lines() {
    let b = Bench::new(10, 2, 3);
    b.set_prio(1, 1);
    b.set_prio(2, 1);
    b.enable(0, 1);
    b.enable(1, 2);
    b.wr(threshold(1), 0);
    b.line(1, true);
    b.line(2, true);
    assert_eq!(b.claim(0), 1);
    b.rec.take();
    b.plic.reset();
    assert!(b.rec.take().is_empty());
    assert!(!b.out(0) && !b.out(1));
    assert_eq!(b.rd(prio(1)), 0);
    assert_eq!(b.rd(enable(0, 0)), 0);
    assert_eq!(b.rd(enable(1, 0)), 0);
    // Both lines are still high: both sources pending, none in service.
    assert_eq!(b.rd(PENDING_BASE), 0b110);
    b.check();
}

/// The resample sources reported since the last call.
fn resampled(b: &Bench) -> Vec<u32> {
    let mut v = Vec::new();
    b.plic.take_resampled(&mut |id| v.push(id));
    v
}

#[test]
fn resample_source_is_lowered_and_reported_when_the_guest_completes_it() {
    let b = Bench::new(40, 1, 3);
    b.plic.set_resample(11, true);
    b.plic.set_resample(0, true); // reserved: ignored
    b.plic.set_resample(41, true); // does not exist: ignored
    b.set_prio(11, 1);
    b.set_prio(12, 1);
    b.enable(0, 11);
    b.enable(0, 12);
    b.line(11, true);
    b.line(12, true);
    assert_eq!(b.claim(0), 11);
    assert!(resampled(&b).is_empty(), "nothing completed yet");
    b.complete(0, 11);
    // The line was lowered: not pending again, although nobody lowered it.
    assert!(!b.pending(11));
    assert_eq!(resampled(&b), [11]);
    assert!(resampled(&b).is_empty(), "reported once");
    // An ordinary source with its line high pends again, and is not reported.
    assert_eq!(b.claim(0), 12);
    b.complete(0, 12);
    assert!(b.pending(12));
    assert!(resampled(&b).is_empty());
    // The host unmasks, the device still asserts: a new request.
    b.line(11, true);
    assert!(b.pending(11));
    // An ignored completion (not in service) reports nothing.
    b.complete(0, 11);
    assert!(resampled(&b).is_empty());
    // No longer a resample source: ordinary again.
    b.plic.set_resample(11, false);
    assert_eq!(b.claim(0), 11);
    b.complete(0, 11);
    assert!(b.pending(11));
    assert!(resampled(&b).is_empty());
    b.check();
}

#[test]
fn posted_lines_are_taken_in_without_the_lock() {
    let b = Bench::new(40, 2, 3);
    b.set_prio(11, 1);
    b.enable(1, 11);
    b.plic.set_resample(11, true);
    b.rec.take();
    {
        // A vCPU holds the lock when the host interrupt comes: posting must not wait.
        let _held = b.plic.state.lock();
        b.plic.post_high(11);
        b.plic.post_high(0); // reserved: ignored
        b.plic.post_high(41); // does not exist: ignored
    }
    // Every context was told, so each vCPU looks (three posts, only one counted).
    assert_eq!(b.rec.take(), [0, 1]);
    // Taken in by the next look at the output, which rose (told again, under the lock).
    assert!(b.out(1));
    assert!(!b.out(0));
    assert_eq!(b.rec.take(), [1]);
    assert!(b.pending(11));
    assert_eq!(b.claim(1), 11);
    b.complete(1, 11);
    assert!(!b.pending(11));
    assert_eq!(resampled(&b), [11]);
    // A register access takes posted lines in as well.
    b.plic.post_high(11);
    assert!(b.pending(11));
    b.check();
}

#[test]
fn resample_handler_runs_after_the_completing_access_without_the_lock() {
    let b = Bench::new(40, 1, 3);
    b.set_prio(11, 1);
    b.enable(0, 11);
    b.plic.set_resample(11, true);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (plic, log) = (Arc::downgrade(&b.plic), seen.clone());
    b.plic.set_resample_handler(Box::new(move |id| {
        log.lock().push(id);
        // The host unmasks; the device still asserts, so its interrupt comes at once and
        // is posted again. Calling into the PLIC here proves its lock is not held.
        if let Some(p) = plic.upgrade() {
            p.post_high(id);
            assert!(
                p.external_pending(0),
                "completed: the new request is pending"
            );
        }
    }));
    b.plic.post_high(11);
    assert_eq!(b.claim(0), 11);
    assert!(seen.lock().is_empty());
    b.complete(0, 11);
    assert_eq!(*seen.lock(), [11]);
    assert!(resampled(&b).is_empty(), "the handler took it");
    // The re-posted line is a new request (the handler's look told vCPU 0 once more).
    assert!(b.out(0));
    assert_eq!(b.claim(0), 11);
    // A second handler is not installed.
    b.plic
        .set_resample_handler(Box::new(|_| panic!("second handler")));
    b.complete(0, 11);
    assert_eq!(*seen.lock(), [11, 11]);
    b.check();
}

#[test]
fn reset_lowers_and_reports_resample_sources() {
    let b = Bench::new(40, 1, 3);
    b.set_prio(11, 1);
    b.set_prio(12, 1);
    b.enable(0, 11);
    b.plic.set_resample(11, true);
    b.plic.set_resample(13, true);
    b.plic.post_high(11);
    b.line(12, true);
    assert_eq!(b.claim(0), 11);
    b.plic.reset();
    // 11 was in service with its line high: lowered, not pending after the reset; both
    // resample sources reported so the host unmasks them whatever their state.
    assert!(!b.pending(11));
    assert!(b.pending(12), "an ordinary line keeps its level");
    assert_eq!(resampled(&b), [11, 13]);
    // Still resample sources.
    b.set_prio(11, 1);
    b.enable(0, 11);
    b.plic.post_high(11);
    assert_eq!(b.claim(0), 11);
    b.complete(0, 11);
    assert_eq!(resampled(&b), [11]);
    b.check();
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random accesses anywhere (interesting offsets weighted up), random widths and values,
/// random line changes. Nothing may panic, the internal invariants must hold after every
/// step, and the notifier must be called exactly for the contexts whose output rose.
#[test]
fn fuzz_never_panics() {
    for (seed, sources, contexts, bits) in [
        (1u64, 40u32, 3usize, 3u32),
        (0x1234_5678, 1023, 2, 7),
        (99, 1, 1, 1),
        (7, 95, 4, 32),
    ] {
        let b = Bench::new(sources, contexts, bits);
        // Two resample sources (passthrough lines) among the ordinary ones.
        b.plic.set_resample(1, true);
        b.plic.set_resample(sources / 2, true);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let interesting = [
            PRIORITY_BASE,
            PENDING_BASE,
            PENDING_END,
            ENABLE_BASE,
            CONTEXT_BASE,
            CONTEXT_BASE + CLAIM_COMPLETE,
            VPLIC_SIZE - 8,
        ];
        let words = (u64::from(sources) + 1).div_ceil(32);
        // Coverage: claims that returned a source, notifications seen.
        let (mut claimed, mut notified) = (0u32, 0u32);
        for step in 0..20_000 {
            let before: Vec<bool> = (0..contexts).map(|c| b.out(c)).collect();
            match rng.below(11) {
                0 | 1 => {
                    let id = rng.below(u64::from(sources) + 3) as u32;
                    b.line(id, rng.below(2) == 0);
                }
                10 => b.plic.take_resampled(&mut |id| {
                    assert!(id == 1 || id == sources / 2, "step {step}: resampled {id}");
                }),
                op => {
                    // A context near the configured ones (one past the end too).
                    let ctx = rng.below(contexts as u64 + 1) as usize;
                    let off = match rng.below(9) {
                        0 => rng.next() as usize,
                        1 => rng.below(VPLIC_SIZE as u64 + 16) as usize,
                        2 => {
                            let base = interesting[rng.below(interesting.len() as u64) as usize];
                            base + rng.below(0x100) as usize
                        }
                        3 | 4 => prio(rng.below(u64::from(sources) + 3) as u32),
                        5 => enable(ctx, rng.below(words + 1) as usize),
                        6 => threshold(ctx) + 4 * rng.below(3) as usize,
                        _ => claim(ctx),
                    };
                    // Mostly 32-bit accesses, the rest any width.
                    let width = if rng.below(4) == 0 {
                        AccessWidth::ALL[rng.below(4) as usize]
                    } else {
                        AccessWidth::Word
                    };
                    let value = match rng.below(3) {
                        0 => rng.next(),
                        1 => rng.below(u64::from(sources) + 2),
                        _ => rng.below(8),
                    };
                    let res = if op % 2 == 0 {
                        b.dev.read(off, width).map(|v| {
                            assert!(v <= u64::from(u32::MAX), "step {step}");
                            if v != 0 && off >= CONTEXT_BASE && off % CONTEXT_STRIDE == 4 {
                                assert!(v <= u64::from(sources), "step {step}: claimed {v}");
                                claimed += 1;
                            }
                        })
                    } else {
                        b.dev.write(off, width, value)
                    };
                    if let Err(e) = res {
                        assert!(
                            off.checked_add(width.size()).is_none_or(|e| e > VPLIC_SIZE)
                                || width != AccessWidth::Word
                                || off % 4 != 0,
                            "step {step}: unexpected {e:?} at {off:#x} {width:?}"
                        );
                    }
                }
            }
            b.check();
            let rose: Vec<usize> = (0..contexts).filter(|&c| b.out(c) && !before[c]).collect();
            notified += rose.len() as u32;
            assert_eq!(b.rec.take(), rose, "step {step}");
        }
        std::println!("seed {seed}: {claimed} claims, {notified} notifications");
        assert!(
            claimed > 0 && notified > 0,
            "the fuzz loop reached no claim"
        );
    }
}
