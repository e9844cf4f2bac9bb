use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Mutex;
use std::vec;

/// Records notifications and sets a per-hart "kicked" flag, as the hypervisor's IPI would.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<usize>>,
    kicked: [AtomicBool; 4],
}

impl VcpuNotifier for Recorder {
    fn notify(&self, vcpu: usize) {
        self.calls.lock().unwrap().push(vcpu);
        self.kicked[vcpu].store(true, Ordering::SeqCst);
    }
}

fn harts(count: usize) -> (Arc<VmHarts>, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    (VmHarts::new(count, rec.clone(), None), rec)
}

#[test]
fn hart_sets_decode_as_the_sbi_says() {
    // Base -1: every hart, whatever the mask.
    assert_eq!(HartSet::decode(0, u64::MAX, 4), Ok(HartSet::All));
    assert_eq!(HartSet::decode(u64::MAX, u64::MAX, 1), Ok(HartSet::All));
    // Bits count from the base.
    assert_eq!(
        HartSet::decode(0b101, 1, 4),
        Ok(HartSet::Mask {
            mask: 0b101,
            base: 1
        })
    );
    assert_eq!(
        HartSet::decode(0b1111, 0, 4),
        Ok(HartSet::Mask {
            mask: 0b1111,
            base: 0
        })
    );
    // Naming a hart that does not exist is refused, whatever else is named.
    let invalid = Err(sbi::ERR_INVALID_PARAM);
    assert_eq!(HartSet::decode(0b1_0000, 0, 4), invalid);
    assert_eq!(HartSet::decode(0b11, 3, 4), invalid);
    assert_eq!(HartSet::decode(1, 4, 4), invalid);
    assert_eq!(HartSet::decode(1 << 63, 0, 63), invalid);
    assert_eq!(HartSet::decode(1 << 63, 1, 64), invalid);
    // Ids that overflow are not harts either.
    assert_eq!(HartSet::decode(0b10, u64::MAX - 1, 4), invalid);
    assert_eq!(HartSet::decode(1 << 63, u64::MAX - 2, 4), invalid);
    // An empty mask names nobody: valid with any base.
    assert_eq!(
        HartSet::decode(0, 1000, 2),
        Ok(HartSet::Mask {
            mask: 0,
            base: 1000
        })
    );
    // The last hart of 64 through bit 63.
    assert!(HartSet::decode(1 << 63, 0, 64).is_ok());
}

#[test]
fn hart_sets_list_their_harts() {
    let list = |s: HartSet, n| s.iter(n).collect::<Vec<_>>();
    assert_eq!(list(HartSet::All, 3), vec![0, 1, 2]);
    assert_eq!(list(HartSet::All, 0), Vec::<usize>::new());
    let m = HartSet::Mask {
        mask: 0b1010,
        base: 2,
    };
    assert_eq!(list(m, 8), vec![3, 5]);
    assert!(m.contains(3, 8) && m.contains(5, 8));
    assert!(!m.contains(2, 8) && !m.contains(4, 8) && !m.contains(0, 8));
    // Harts beyond the VM are never in a set.
    assert_eq!(list(m, 4), vec![3]);
    assert!(!HartSet::All.contains(3, 3));
    // Far bases do not wrap around.
    let far = HartSet::Mask {
        mask: u64::MAX,
        base: u64::MAX - 3,
    };
    assert_eq!(list(far, 8), Vec::<usize>::new());
}

/// Hart `hart` enters and leaves the guest: whether it took a software interrupt.
fn take_ipi(h: &VmHarts, hart: usize) -> bool {
    h.hart(hart).is_some_and(|slot| {
        let taken = slot.enter(|_| panic!("no fence was asked"));
        slot.leave();
        taken
    })
}

#[test]
fn ipis_reach_the_other_harts_and_notify_them() {
    let (h, rec) = harts(4);
    let to_self = h.send_ipi(1, HartSet::decode(0b1011, 0, 4).unwrap());
    assert!(to_self, "hart 1 is in the mask");
    assert_eq!(*rec.calls.lock().unwrap(), vec![0, 3]);
    assert!(h.ipi_pending(0) && h.ipi_pending(3));
    assert!(
        !h.ipi_pending(1) && !h.ipi_pending(2),
        "the sender raises its own"
    );
    assert!(take_ipi(&h, 0));
    assert!(!take_ipi(&h, 0), "taken once");
    assert!(!h.ipi_pending(0));
    // Two IPIs before the hart runs are one (the interrupt is a pending bit), and the
    // second does not notify again; once taken, the next one notifies.
    assert!(take_ipi(&h, 3));
    rec.calls.lock().unwrap().clear();
    assert!(!h.send_ipi(2, HartSet::decode(1, 3, 4).unwrap()));
    assert!(!h.send_ipi(1, HartSet::decode(1, 3, 4).unwrap()));
    assert_eq!(*rec.calls.lock().unwrap(), vec![3]);
    assert!(take_ipi(&h, 3));
    assert!(!take_ipi(&h, 3));
    h.send_ipi(2, HartSet::decode(1, 3, 4).unwrap());
    assert_eq!(*rec.calls.lock().unwrap(), vec![3, 3]);
    assert!(take_ipi(&h, 3));
    // Everybody.
    rec.calls.lock().unwrap().clear();
    assert!(h.send_ipi(0, HartSet::All));
    assert_eq!(*rec.calls.lock().unwrap(), vec![1, 2, 3]);
    // A hart that restarts drops what was sent while it was off.
    h.reset_hart(2);
    assert!(!h.ipi_pending(2));
    // Harts that do not exist: nothing, no panic.
    assert!(!take_ipi(&h, 9));
    assert!(!h.ipi_pending(9));
    assert!(h.hart(9).is_none());
    h.reset_hart(9);
    assert!(!h.external_pending(0), "no PLIC");
    assert!(h.plic().is_none());
}

#[test]
fn fences_for_harts_outside_the_guest_wait_for_their_next_entry() {
    let (h, rec) = harts(3);
    // Nobody is in the guest: the call returns at once.
    assert!(
        h.remote_fence(0, HartSet::All, fence::ICACHE),
        "hart 0 is in All"
    );
    assert_eq!(*rec.calls.lock().unwrap(), vec![1, 2]);
    assert!(h.remote_fence(1, HartSet::decode(0b110, 0, 3).unwrap(), fence::VVMA));
    // Hart 2 performs both requests at its next entry, once.
    let mut seen = 0;
    h.hart(2).unwrap().enter(|k| seen |= k);
    assert_eq!(seen, fence::ICACHE | fence::VVMA);
    h.hart(2).unwrap().leave();
    h.hart(2).unwrap().enter(|_| panic!("already performed"));
    h.hart(2).unwrap().leave();
    // Hart 1 only got the first.
    let mut seen = 0;
    h.hart(1).unwrap().enter(|k| seen |= k);
    assert_eq!(seen, fence::ICACHE);
    h.hart(1).unwrap().leave();
    // A hart that was reset still performs what was asked of it.
    h.remote_fence(0, HartSet::decode(0b10, 0, 3).unwrap(), fence::VVMA);
    h.reset_hart(1);
    let mut seen = 0;
    h.hart(1).unwrap().enter(|k| seen |= k);
    assert_eq!(seen, fence::VVMA);
    h.hart(1).unwrap().leave();
    // A fence and an IPI pending together are both taken by one entry.
    h.remote_fence(0, HartSet::decode(0b10, 0, 3).unwrap(), fence::ICACHE);
    h.send_ipi(0, HartSet::decode(0b10, 0, 3).unwrap());
    let mut seen = 0;
    assert!(h.hart(1).unwrap().enter(|k| seen |= k), "the IPI is taken");
    assert_eq!(seen, fence::ICACHE);
    h.hart(1).unwrap().leave();
    assert!(!take_ipi(&h, 1), "both taken once");
}

/// Hart `me` runs "guest periods" until `stop`: it enters, then spins in the guest checking
/// that its translations are at least as new as the last version a completed remote fence
/// published, and leaves when kicked (or after a while, like a guest exit).
fn run_hart(
    h: &VmHarts,
    rec: &Recorder,
    me: usize,
    tables: &AtomicU64,
    published: &AtomicU64,
    stop: &AtomicBool,
    checks: &AtomicUsize,
) {
    let mut tlb = 0u64;
    while !stop.load(Ordering::SeqCst) {
        rec.kicked[me].store(false, Ordering::SeqCst);
        h.hart(me).unwrap().enter(|k| {
            if k & fence::VVMA != 0 {
                tlb = tables.load(Ordering::SeqCst);
            }
        });
        for i in 0..200 {
            // A guest access: must not use translations older than what was published.
            let must = published.load(Ordering::SeqCst);
            assert!(
                tlb >= must,
                "hart {me} ran with version {tlb} after {must} was fenced"
            );
            checks.fetch_add(1, Ordering::Relaxed);
            // The kick (an IPI) takes a while to arrive.
            if i % 16 == 15 && rec.kicked[me].load(Ordering::SeqCst) {
                break;
            }
            std::thread::yield_now();
        }
        h.hart(me).unwrap().leave();
    }
}

#[test]
fn a_returned_remote_fence_leaves_no_hart_running_with_stale_translations() {
    let (h, rec) = harts(3);
    let tables = AtomicU64::new(0);
    let published = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let checks = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for me in 1..3 {
            let (h, rec, tables, published, stop, checks) =
                (&h, &rec, &tables, &published, &stop, &checks);
            s.spawn(move || run_hart(h, rec, me, tables, published, stop, checks));
        }
        // Hart 0 changes the "page tables" and fences the others, many times, once they run.
        while checks.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        for v in 1..=100u64 {
            tables.store(v, Ordering::SeqCst);
            let targets = if v % 2 == 0 {
                HartSet::All
            } else {
                HartSet::decode(0b110, 0, 3).unwrap()
            };
            assert_eq!(h.remote_fence(0, targets, fence::VVMA), v % 2 == 0);
            published.store(v, Ordering::SeqCst);
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert!(checks.load(Ordering::Relaxed) > 0);
}

#[test]
fn harts_fencing_each_other_do_not_deadlock() {
    let (h, rec) = harts(2);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for me in 0..2 {
            let (h, rec, stop) = (&h, &rec, &stop);
            s.spawn(move || {
                for i in 0..100 {
                    rec.kicked[me].store(false, Ordering::SeqCst);
                    h.hart(me).unwrap().enter(|_| {});
                    // "Guest code" until kicked or a while passed, then an SBI call.
                    for _ in 0..50 {
                        if rec.kicked[me].load(Ordering::SeqCst) {
                            break;
                        }
                        std::thread::yield_now();
                    }
                    h.hart(me).unwrap().leave();
                    h.remote_fence(
                        me,
                        HartSet::All,
                        if i % 2 == 0 {
                            fence::ICACHE
                        } else {
                            fence::ICACHE | fence::VVMA
                        },
                    );
                }
                // Keep entering while the other one may still wait for us.
                while !stop.load(Ordering::SeqCst) {
                    h.hart(me).unwrap().enter(|_| {});
                    h.hart(me).unwrap().leave();
                }
            });
        }
        // Both finish their loops only if no call hangs; then let the idlers go.
        while rec.calls.lock().unwrap().len() < 200 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::SeqCst);
    });
}
