//! List registers in memory, for host tests and fuzzing (`feature = "fake"`): the test
//! plays the guest by changing their states between a `flush` and a `sync`, as the CPU
//! interface would.

use alloc::vec;
use alloc::vec::Vec;

use crate::{ListReg, ListRegs, LrState};

/// `n` list registers in memory. `written` marks the ones the model wrote since it was
/// last cleared; `underflow` is the underflow maintenance interrupt's enable.
#[derive(Debug)]
pub struct FakeLrs {
    /// The registers.
    pub lrs: Vec<ListReg>,
    /// Bit `i`: register `i` was written.
    pub written: u64,
    /// The underflow maintenance interrupt's enable.
    pub underflow: bool,
}

impl FakeLrs {
    /// `n` invalid list registers.
    pub fn new(n: usize) -> Self {
        Self {
            lrs: vec![ListReg::INVALID; n],
            written: 0,
            underflow: false,
        }
    }

    /// Valid list registers as (intid, state), in LR order.
    pub fn valid(&self) -> Vec<(u32, LrState)> {
        self.lrs
            .iter()
            .filter(|l| l.state != LrState::Invalid)
            .map(|l| (l.intid, l.state))
            .collect()
    }

    /// The list register holding `intid`, if one does.
    pub fn find(&self, intid: u32) -> Option<usize> {
        self.lrs
            .iter()
            .position(|l| l.state != LrState::Invalid && l.intid == intid)
    }

    /// The list register holding `intid` (panics if none does).
    pub fn get(&self, intid: u32) -> ListReg {
        self.lrs[self.find(intid).expect("interrupt in an LR")]
    }

    /// The guest acknowledges `intid` (pending -> active; panics if it is not pending).
    pub fn ack(&mut self, intid: u32) {
        let i = self.find(intid).expect("interrupt in an LR");
        assert!(self.lrs[i].state.has_pending());
        self.lrs[i].state = self.lrs[i].state.with_pending(false).with_active(true);
    }

    /// The guest deactivates `intid` (EOI; panics if it is not active).
    pub fn eoi(&mut self, intid: u32) {
        let i = self.find(intid).expect("interrupt in an LR");
        assert!(self.lrs[i].state.has_active());
        self.lrs[i].state = self.lrs[i].state.with_active(false);
    }

    /// Acknowledge + EOI (a full handling between two exits).
    pub fn handle(&mut self, intid: u32) {
        self.ack(intid);
        self.eoi(intid);
    }
}

impl ListRegs for FakeLrs {
    fn count(&self) -> usize {
        self.lrs.len()
    }
    fn read(&self, i: usize) -> ListReg {
        self.lrs[i]
    }
    fn write(&mut self, i: usize, lr: ListReg) {
        self.lrs[i] = lr;
        self.written |= 1 << i;
    }
    fn set_underflow_interrupt(&mut self, on: bool) {
        self.underflow = on;
    }
}
