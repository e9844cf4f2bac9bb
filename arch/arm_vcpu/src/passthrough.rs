//! Physical device interrupts given to a VM (passthrough), as its vCPUs see them.
//!
//! The host takes such an interrupt in interrupt context, masks it at the host GIC and
//! [`raise`](PassthroughLines::raise)s it here (no lock: interrupt context must not take
//! the vGIC's). Before entering the guest, a vCPU moves raised lines into the vGIC as high
//! levels; when the guest ends one, the vGIC lowers it and reports it
//! ([`arm_vgic::Vgic::take_resampled`]), and the vCPU unmasks the host interrupt, which
//! fires again if the device still asserts it.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

/// The passthrough interrupt lines of one VM.
#[derive(Debug, Default)]
pub struct PassthroughLines {
    lines: Vec<(u32, AtomicBool)>,
}

impl PassthroughLines {
    /// Lines for the host SPIs `intids` (the guest sees the same INTIDs).
    pub fn new(intids: &[u32]) -> Self {
        Self {
            lines: intids
                .iter()
                .map(|&i| (i, AtomicBool::new(false)))
                .collect(),
        }
    }

    /// Whether the VM has any passthrough line.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Whether `intid` is one of the VM's lines.
    pub fn owns(&self, intid: u32) -> bool {
        self.lines.iter().any(|(i, _)| *i == intid)
    }

    /// The host took `intid` (and masked it): raise it for the guest. Returns whether it
    /// is one of the VM's lines. Safe in interrupt context.
    pub fn raise(&self, intid: u32) -> bool {
        match self.lines.iter().find(|(i, _)| *i == intid) {
            Some((_, raised)) => {
                raised.store(true, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Calls `f` with each line raised since the last call.
    pub fn drain(&self, mut f: impl FnMut(u32)) {
        for (intid, raised) in &self.lines {
            if raised.swap(false, Ordering::AcqRel) {
                f(*intid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn raise_and_drain() {
        let p = PassthroughLines::new(&[34, 40]);
        assert!(!p.is_empty() && p.owns(34) && !p.owns(35));
        assert!(!p.raise(35));
        assert!(p.raise(40));
        let mut got = vec![];
        p.drain(|i| got.push(i));
        assert_eq!(got, vec![40]);
        got.clear();
        p.drain(|i| got.push(i));
        assert!(got.is_empty(), "drained once");
        assert!(PassthroughLines::default().is_empty());
    }
}
