//! The virtual PLIC: register accesses (aimed at the priority, pending, enable and
//! threshold / claim-complete blocks, and anywhere), source lines, lines posted from a
//! host interrupt handler, resampling and resets.
//!
//! Checked: a claim returns 0 or an existing source; after a reset no context's output is
//! high.

use std::sync::Arc;

use axdevice_base::AccessWidth;
use axvisor_fuzz::{Access, CheckedNotifier, Input};
use riscv_vplic::{
    Vplic, VplicConfig, CLAIM_COMPLETE, CONTEXT_BASE, CONTEXT_STRIDE, ENABLE_BASE, ENABLE_STRIDE,
    MAX_SOURCES, PENDING_BASE, PRIORITY_BASE,
};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let shape = input.u32();
    let config = VplicConfig {
        sources: shape % MAX_SOURCES + 1,
        // Few contexts: what matters is their interplay, not their number.
        contexts: (shape >> 10) as usize % 8 + 1,
        priority_bits: (shape >> 13) % 32 + 1,
    };
    let plic = Vplic::new(config, Arc::new(CheckedNotifier::new(config.contexts)))
        .expect("a valid vPLIC shape");
    let mmio = plic.mmio();
    while !input.is_empty() {
        let op = input.u8();
        let ctx = input.u8() as usize % config.contexts;
        let source = input.u16() as u32 % (MAX_SOURCES + 2);
        let near = input.u8() as usize;
        let offset = match op % 12 {
            0 => Some(PRIORITY_BASE + 4 * source as usize),
            1 => Some(PENDING_BASE + near % 0x90),
            2 | 3 => Some(ENABLE_BASE + ctx * ENABLE_STRIDE + near % 0x90),
            4..=6 => Some(CONTEXT_BASE + ctx * CONTEXT_STRIDE + near % 16),
            _ => None,
        };
        match (op % 12, offset) {
            (_, Some(offset)) => {
                let width = if op & 0x80 == 0 {
                    AccessWidth::Word
                } else {
                    AccessWidth::ALL[near & 3]
                };
                let write = (op & 0x40 != 0).then(|| input.u32() as u64);
                let access = Access {
                    vcpu: ctx,
                    offset,
                    width,
                    write,
                };
                let result = access.apply(&*mmio);
                let claim = CONTEXT_BASE + ctx * CONTEXT_STRIDE + CLAIM_COMPLETE;
                if let (Ok(Some(id)), true) = (result, offset == claim) {
                    assert!(id <= config.sources as u64, "claimed source {id}");
                }
            }
            (7, None) => plic.set_level(source, input.bool()),
            (8, None) => plic.post_high(source),
            (9, None) => plic.set_resample(source, input.bool()),
            (10, None) => {
                plic.take_resampled(&mut |s| {
                    assert!(s >= 1 && s <= config.sources, "resampled {s}")
                });
                let _ = plic.external_pending(ctx);
            }
            (11, None) if near < 16 => {
                plic.reset();
                for c in 0..config.contexts {
                    assert!(!plic.external_pending(c), "context {c} high after reset");
                }
            }
            _ => {
                let access = Access::decode(&mut input, mmio.size(), config.contexts);
                let _ = access.apply(&*mmio);
            }
        }
    }
}
