//! PLIC driver: each hart's S-mode context, claim and complete, and the sources given to
//! guests (routed to one hart, masked and unmasked through their priority).
//!
//! Register layout from the RISC-V PLIC specification: priorities at 0, enables at 0x2000 +
//! 0x80 per context, threshold / claim-complete at 0x20_0000 + 0x1000 per context.

use crate::irq::{dispatch, IrqSource};
use crate::{mmio, platform};
use axconfig::dtb::IntcInfo;

const PRIORITY_BASE: usize = 0;
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

/// PLIC base and its number of sources, if the DTB describes it.
fn plic() -> Option<(usize, u32)> {
    match &platform::info().intc {
        Some(IntcInfo::Plic { regs, ndev }) => Some((regs.start, *ndev)),
        _ => None,
    }
}

/// Sets the priority of source `irq` (0: it never interrupts; the threshold of every
/// hart's context is 0, so any other value does). Ignored for a source the PLIC lacks.
pub fn set_priority(irq: usize, priority: u32) {
    let Some((base, ndev)) = plic() else { return };
    if irq == 0 || irq > ndev as usize {
        return;
    }
    mmio::write32(base + PRIORITY_BASE + irq * 4, priority);
}

/// Enables or disables source `irq` for hart `cpu`'s S-mode context. Ignored for a source
/// the PLIC lacks or a hart without a context.
pub fn set_enabled(irq: usize, cpu: usize, enabled: bool) {
    let (Some((base, ndev)), Some((_, ctx))) = (plic(), context_of(cpu)) else {
        return;
    };
    if irq == 0 || irq > ndev as usize {
        return;
    }
    let word = base + ENABLE_BASE + ctx * ENABLE_STRIDE + (irq / 32) * 4;
    let bit = 1u32 << (irq % 32);
    let v = mmio::read32(word);
    mmio::write32(word, if enabled { v | bit } else { v & !bit });
}

/// Sends source `irq` to hart `cpu` only: enabled for its S-mode context and disabled for
/// every other hart's.
pub fn route(irq: usize, cpu: usize) {
    for other in 0..platform::info().cpus.len() {
        set_enabled(irq, other, other == cpu);
    }
}

/// Per-hart set-up: all sources disabled for this context, threshold 0.
pub fn init_cpu(cpu: usize) {
    let Some((base, ctx)) = context_of(cpu) else {
        log::warn!("cpu {cpu}: no PLIC S-mode context in the device tree");
        return;
    };
    let ndev = plic().map_or(0, |(_, n)| n as usize);
    for word in 0..=ndev / 32 {
        mmio::write32(base + ENABLE_BASE + ctx * ENABLE_STRIDE + word * 4, 0);
    }
    mmio::write32(base + CONTEXT_BASE + ctx * CONTEXT_STRIDE, 0);
}

/// Claims, dispatches and completes every pending source for this hart. A level-triggered
/// source whose device still asserts it is pending again once completed: a handler that
/// leaves the device to someone else (a guest) masks it first (`set_priority(irq, 0)`).
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
