//! PLIC driver: each hart's S-mode context, claim and complete.
//!
//! Register layout from the RISC-V PLIC specification: priorities at 0, enables at 0x2000 +
//! 0x80 per context, threshold / claim-complete at 0x20_0000 + 0x1000 per context.

use crate::irq::{dispatch, IrqSource};
use crate::{mmio, platform};
use axconfig::dtb::IntcInfo;

const ENABLE_BASE: usize = 0x2000;
const ENABLE_STRIDE: usize = 0x80;
const CONTEXT_BASE: usize = 0x20_0000;
const CONTEXT_STRIDE: usize = 0x1000;

/// PLIC base and this hart's S-mode context, if the DTB describes both.
fn context_of(cpu: usize) -> Option<(usize, usize)> {
    let info = platform::info();
    let Some(IntcInfo::Plic { regs, .. }) = &info.intc else {
        return None;
    };
    Some((regs.start, info.cpus.get(cpu)?.plic_s_context?))
}

/// Per-hart set-up: all sources disabled for this context, threshold 0.
pub fn init_cpu(cpu: usize) {
    let Some((base, ctx)) = context_of(cpu) else {
        log::warn!("cpu {cpu}: no PLIC S-mode context in the device tree");
        return;
    };
    let ndev = match &platform::info().intc {
        Some(IntcInfo::Plic { ndev, .. }) => *ndev as usize,
        _ => 0,
    };
    for word in 0..=ndev / 32 {
        mmio::write32(base + ENABLE_BASE + ctx * ENABLE_STRIDE + word * 4, 0);
    }
    mmio::write32(base + CONTEXT_BASE + ctx * CONTEXT_STRIDE, 0);
}

/// Claims, dispatches and completes every pending source for this hart.
pub fn handle_irq(cpu: usize) {
    let Some((base, ctx)) = context_of(cpu) else {
        return;
    };
    let claim = base + CONTEXT_BASE + ctx * CONTEXT_STRIDE + 4;
    loop {
        let irq = mmio::read32(claim);
        if irq == 0 {
            break;
        }
        dispatch(IrqSource::Device(irq as usize));
        mmio::write32(claim, irq);
    }
}
