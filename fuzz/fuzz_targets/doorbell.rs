//! The two ends of a link's doorbell (axvdoorbell) under register accesses of any offset,
//! width and value from either side's guest, and the hypervisor detaching and attaching
//! either end (its VM stopping and starting).
//!
//! Checked besides "no panic": an access outside the window is refused (the shared
//! driver's check); each end's `PENDING` equals a model (ORed in by the peer's `RING`
//! only while the end is attached, cleared by its `ACK`, by detach and by attach); each
//! attached end's line is high exactly while its `PENDING` is non-zero, a detached end's
//! line is low; each end's ring counts (delivered to an attached peer, dropped while it is
//! detached; a write of no bits is no ring) equal the model's.

use std::sync::Arc;

use axdevice_base::{AccessWidth, MmioDevice};
use axvdoorbell::{pair, reg, Rings};
use axvisor_fuzz::{Access, Input, LevelIrq};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let (a, b) = pair();
    let ends = [&a, &b];
    let mut lines = [Arc::new(LevelIrq::default()), Arc::new(LevelIrq::default())];
    let mut attached = [false; 2];
    let mut pending = [0u32; 2];
    let mut rings = [Rings::default(); 2];
    while !input.is_empty() {
        let ctl = input.u8();
        let side = usize::from(ctl & 1);
        match (ctl >> 1) & 7 {
            0 => {
                ends[side].detach();
                attached[side] = false;
                pending[side] = 0;
            }
            1 => {
                lines[side] = Arc::new(LevelIrq::default());
                ends[side].attach(lines[side].clone());
                attached[side] = true;
                pending[side] = 0;
            }
            _ => {
                let access = Access::decode(&mut input, ends[side].size(), 1);
                let ok = access.apply(ends[side]).is_ok();
                if let (true, Some(value), AccessWidth::Word) = (ok, access.write, access.width) {
                    let bits = value as u32;
                    match access.offset {
                        reg::RING if bits != 0 && attached[1 - side] => {
                            pending[1 - side] |= bits;
                            rings[side].delivered += 1;
                        }
                        reg::RING if bits != 0 => rings[side].dropped += 1,
                        reg::ACK => pending[side] &= !bits,
                        _ => {}
                    }
                }
            }
        }
        for s in 0..2 {
            assert_eq!(ends[s].pending(), pending[s], "side {s}");
            assert_eq!(ends[s].rings(), rings[s], "side {s} rings");
            assert_eq!(
                lines[s].level(),
                attached[s] && pending[s] != 0,
                "side {s} line"
            );
        }
    }
}
