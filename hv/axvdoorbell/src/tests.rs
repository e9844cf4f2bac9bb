extern crate std;

use super::*;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A line that records its level and how many times it was set.
#[derive(Default)]
struct Line {
    high: AtomicBool,
    sets: AtomicUsize,
}

impl IrqLine for Line {
    fn set_level(&self, high: bool) {
        self.high.store(high, Ordering::SeqCst);
        self.sets.fetch_add(1, Ordering::SeqCst);
    }
}

impl Line {
    fn high(&self) -> bool {
        self.high.load(Ordering::SeqCst)
    }
}

const W: AccessWidth = AccessWidth::Word;

fn attached() -> (DoorbellEnd, DoorbellEnd, Arc<Line>, Arc<Line>) {
    let (a, b) = pair();
    let (la, lb) = (Arc::new(Line::default()), Arc::new(Line::default()));
    a.attach(la.clone());
    b.attach(lb.clone());
    (a, b, la, lb)
}

#[test]
fn identity_registers() {
    let (a, b, _, _) = attached();
    assert_eq!(a.read(reg::MAGIC, W), Ok(u64::from(MAGIC)));
    assert_eq!(&MAGIC.to_le_bytes(), b"DBEL");
    assert_eq!(a.read(reg::SIDE, W), Ok(0));
    assert_eq!(b.read(reg::SIDE, W), Ok(1));
    assert_eq!(a.read(reg::PEER_UP, W), Ok(1));
    assert_eq!(a.size(), WINDOW_SIZE);
}

#[test]
fn ringing_raises_the_peer_and_ack_lowers_it_both_ways() {
    let (a, b, la, lb) = attached();
    a.write(reg::RING, W, 0b101).unwrap();
    assert!(lb.high() && !la.high());
    assert_eq!(b.read(reg::PENDING, W), Ok(0b101));
    assert_eq!(a.read(reg::PENDING, W), Ok(0));
    b.write(reg::ACK, W, 0b001).unwrap();
    assert!(lb.high(), "one bit still pending");
    b.write(reg::ACK, W, 0b100).unwrap();
    assert!(!lb.high());
    assert_eq!(b.pending(), 0);

    b.write(reg::RING, W, 1 << 31).unwrap();
    assert!(la.high());
    assert_eq!(a.read(reg::PENDING, W), Ok(u64::from(1u32 << 31)));
    a.write(reg::ACK, W, u64::MAX).unwrap();
    assert!(!la.high());
    // RING reads 0; ringing 0 bits does nothing.
    assert_eq!(a.read(reg::RING, W), Ok(0));
    b.write(reg::RING, W, 0).unwrap();
    assert!(!la.high());
}

#[test]
fn a_stopped_peer_is_not_rung_and_comes_back_clean() {
    let (a, b, la, lb) = attached();
    a.write(reg::RING, W, 1).unwrap();
    assert!(lb.high());
    b.detach();
    assert!(!lb.high(), "line lowered when its VM stops");
    assert_eq!(a.read(reg::PEER_UP, W), Ok(0));
    let sets = lb.sets.load(Ordering::SeqCst);
    a.write(reg::RING, W, 2).unwrap();
    assert_eq!(
        lb.sets.load(Ordering::SeqCst),
        sets,
        "a detached line is not touched"
    );
    assert_eq!(b.pending(), 0);
    // The running side keeps working (its registers answer), and the peer comes back clean.
    a.write(reg::ACK, W, 1).unwrap();
    assert!(!la.high());
    let lb2 = Arc::new(Line::default());
    b.attach(lb2.clone());
    assert_eq!(b.pending(), 0);
    assert!(!lb2.high());
    a.write(reg::RING, W, 4).unwrap();
    assert!(lb2.high());
}

#[test]
fn bad_accesses_are_device_errors() {
    let (a, _, _, _) = attached();
    assert_eq!(a.read(WINDOW_SIZE, W), Err(DeviceError::BadOffset));
    assert_eq!(a.read(WINDOW_SIZE - 2, W), Err(DeviceError::BadOffset));
    assert_eq!(
        a.read(usize::MAX, AccessWidth::Byte),
        Err(DeviceError::BadOffset)
    );
    assert_eq!(
        a.read(reg::PENDING, AccessWidth::Byte),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(
        a.write(reg::RING, AccessWidth::Dword, 1),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(a.write(reg::RING + 1, W, 1), Err(DeviceError::Misaligned));
    // Unused offsets inside the window: read 0, writes ignored.
    assert_eq!(a.read(0x800, W), Ok(0));
    assert_eq!(a.write(0x800, W, 7), Ok(()));
}

#[test]
fn rings_are_counted_delivered_or_dropped() {
    let (a, b) = pair();
    let lb = Arc::new(Line::default());
    a.write(reg::RING, W, 1).unwrap(); // nobody there yet
    b.attach(lb.clone());
    a.write(reg::RING, W, 1).unwrap();
    a.write(reg::RING, W, 2).unwrap();
    a.write(reg::RING, W, 0).unwrap(); // no bits: not a ring
    b.detach();
    a.write(reg::RING, W, 4).unwrap();
    assert_eq!(
        a.rings(),
        Rings {
            delivered: 2,
            dropped: 2
        }
    );
    assert_eq!(b.rings(), Rings::default());
}
