//! Virtual RISC-V PLIC: priorities, pending, per-context enables and thresholds,
//! claim/complete.
//!
//! A per-VM model of the RISC-V Platform-Level Interrupt Controller (specification 1.0.0),
//! laid out like the PLIC of QEMU's `virt` machine so that Linux's `riscv,plic0` /
//! `sifive,plic-1.0.0` driver and small test guests drive it unchanged:
//!
//! | offset | register |
//! |---|---|
//! | `0x00_0000 + 4 * id` | priority of source `id` (`id` 0 is reserved: reads 0) |
//! | `0x00_1000 + 4 * w` | pending bits of sources `32w .. 32w + 31` (read-only) |
//! | `0x00_2000 + 0x80 * c + 4 * w` | enable bits of sources `32w ..` for context `c` |
//! | `0x20_0000 + 0x1000 * c` | priority threshold of context `c` |
//! | `0x20_0004 + 0x1000 * c` | claim (read) / complete (write) of context `c` |
//!
//! The window is [`VPLIC_SIZE`] bytes (64 MiB). Every register is 32 bits wide: other widths
//! are [`DeviceError::BadWidth`], offsets that are not a multiple of 4 are
//! [`DeviceError::Misaligned`]; everything else in the window that is not a register of an
//! existing source or context reads as zero and ignores writes.
//!
//! **Contexts.** Context `c` is the supervisor-mode external interrupt of vCPU `c` — one
//! context per vCPU, so the guest's device tree lists `interrupts-extended = <&cpuN_intc 9>`
//! once per hart. (QEMU's `virt` PLIC has two contexts per hart, M-mode then S-mode; a guest
//! must take the context numbers from the device tree, as Linux does.) The arch code mirrors
//! [`Vplic::external_pending`] of context `c` into `hvip.VSEIP` of vCPU `c` before each guest
//! entry.
//!
//! **Sources.** Source lines are level-sensitive and come from device models through
//! [`Vplic::irq_line`] ([`IrqLine`]). Each source has a gateway: a high line makes the source
//! pending unless it is in service (claimed and not completed); on completion a line still
//! high makes it pending again. A line going low does not retract a pending request.
//!
//! **Notifications.** Whenever a context's output goes from low to high the [`VcpuNotifier`]
//! is told (`notify(context)`), **with the PLIC's lock held**: an implementation must only
//! wake a task or send an IPI, never call back into the [`Vplic`].
//!
//! **Passthrough lines.** A physical interrupt given to the VM is raised from the host's
//! interrupt handler with [`Vplic::post_high`], which takes no lock (the handler may have
//! interrupted a vCPU holding it): the level is taken into the model by the next access or
//! [`Vplic::external_pending`], and every context is notified so its vCPU gets there. Such a
//! source is a *resample* source ([`Vplic::set_resample`]): when the guest completes it, its
//! line is lowered and the source is reported ([`Vplic::take_resampled`], or the handler of
//! [`Vplic::set_resample_handler`]) so the hypervisor unmasks the physical interrupt, which
//! raises the line again if the device still asserts it.
//!
//! Everything the guest passes in (offsets, widths, values) is untrusted; nothing it does
//! can panic the model or index out of bounds.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

mod state;
#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use axdevice_base::{AccessWidth, DeviceError, IrqLine, MmioDevice, VcpuNotifier};
use log::trace;
use spin::{Mutex, MutexGuard, Once};

use state::State;

/// Bytes of guest-physical address space the PLIC window claims (64 MiB, as on QEMU `virt`).
pub const VPLIC_SIZE: usize = 0x400_0000;

/// Offset of the priority registers (4 bytes per source; source 0's slot is reserved).
pub const PRIORITY_BASE: usize = 0x0;
/// Offset of the pending bits (one bit per source, 32 sources per word).
pub const PENDING_BASE: usize = 0x1000;
/// Offset of context 0's enable bits.
pub const ENABLE_BASE: usize = 0x2000;
/// Distance between two contexts' enable bits.
pub const ENABLE_STRIDE: usize = 0x80;
/// Offset of context 0's threshold register.
pub const CONTEXT_BASE: usize = 0x20_0000;
/// Distance between two contexts' threshold (and claim/complete) registers.
pub const CONTEXT_STRIDE: usize = 0x1000;
/// Offset of the claim/complete register from its context's threshold register.
pub const CLAIM_COMPLETE: usize = 4;

/// The highest source ID the PLIC layout has room for.
pub const MAX_SOURCES: u32 = 1023;
/// The most contexts the PLIC layout has room for.
pub const MAX_CONTEXTS: usize = 15872;

/// End of the pending block (1024 bits).
const PENDING_END: usize = PENDING_BASE + 0x80;

/// The shape of a virtual PLIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VplicConfig {
    /// The highest interrupt source ID: sources are `1..=sources` (ID 0 is reserved and is
    /// not counted). This is the device tree's `riscv,ndev`. `1..=`[`MAX_SOURCES`].
    pub sources: u32,
    /// The number of contexts, one per vCPU (context `c` is vCPU `c`'s supervisor external
    /// interrupt). `1..=`[`MAX_CONTEXTS`].
    pub contexts: usize,
    /// How many low bits of the priority and threshold registers are implemented:
    /// priorities are `0..=2^priority_bits - 1` (3 gives 0..=7, as on QEMU `virt`). Writes
    /// keep only these bits (the registers are WARL). `1..=32`.
    pub priority_bits: u32,
}

/// Why [`Vplic::new`] refused a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VplicError {
    /// `sources` is 0 or above [`MAX_SOURCES`].
    BadSources(u32),
    /// `contexts` is 0 or above [`MAX_CONTEXTS`].
    BadContexts(usize),
    /// `priority_bits` is 0 or above 32.
    BadPriorityBits(u32),
}

impl fmt::Display for VplicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadSources(n) => {
                write!(f, "PLIC sources must be 1..={MAX_SOURCES}, not {n}")
            }
            Self::BadContexts(n) => {
                write!(f, "PLIC contexts must be 1..={MAX_CONTEXTS}, not {n}")
            }
            Self::BadPriorityBits(n) => {
                write!(f, "PLIC priority bits must be 1..=32, not {n}")
            }
        }
    }
}

/// One register of the window, decoded from an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    /// The priority of a source (checked to exist).
    Priority(u32),
    /// A pending word (may lie past the last source: reads 0).
    Pending(usize),
    /// An enable word of an existing context (may lie past the last source: reads 0).
    Enable { ctx: usize, word: usize },
    /// The threshold of an existing context.
    Threshold(usize),
    /// The claim/complete register of an existing context.
    Claim(usize),
    /// Anything else: reads 0, writes ignored.
    Reserved,
}

/// A virtual PLIC for one VM. Create it with [`Vplic::new`]; map [`Vplic::mmio`] into the
/// VM's device set, hand [`Vplic::irq_line`]s to device models, and read
/// [`Vplic::external_pending`] before each guest entry.
///
/// All state sits behind one `spin::Mutex`, except lines posted by [`Vplic::post_high`];
/// the PLIC is shared through an `Arc`.
pub struct Vplic {
    config: VplicConfig,
    priority_mask: u32,
    notifier: Arc<dyn VcpuNotifier>,
    state: Mutex<State>,
    /// Lines raised by `post_high` and not yet taken into `state`, one bit per source.
    posted: Vec<AtomicU32>,
    /// Set after a bit of `posted`: something to take in.
    any_posted: AtomicBool,
    /// Told about completed resample sources, without the lock held.
    resample_handler: Once<ResampleHandler>,
}

/// What [`Vplic::set_resample_handler`] installs.
pub type ResampleHandler = Box<dyn Fn(u32) + Send + Sync>;

impl fmt::Debug for Vplic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vplic")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Vplic {
    /// A PLIC in its reset state (every priority, enable and threshold 0, nothing pending,
    /// every line low), or an error if `config` is out of range. `notifier` hears about
    /// every context whose output goes from low to high.
    pub fn new(
        config: VplicConfig,
        notifier: Arc<dyn VcpuNotifier>,
    ) -> Result<Arc<Self>, VplicError> {
        if config.sources == 0 || config.sources > MAX_SOURCES {
            return Err(VplicError::BadSources(config.sources));
        }
        if config.contexts == 0 || config.contexts > MAX_CONTEXTS {
            return Err(VplicError::BadContexts(config.contexts));
        }
        if config.priority_bits == 0 || config.priority_bits > 32 {
            return Err(VplicError::BadPriorityBits(config.priority_bits));
        }
        Ok(Arc::new(Self {
            config,
            priority_mask: u32::MAX >> (32 - config.priority_bits),
            notifier,
            state: Mutex::new(State::new(config.sources, config.contexts)),
            posted: (0..(config.sources as usize + 1).div_ceil(32))
                .map(|_| AtomicU32::new(0))
                .collect(),
            any_posted: AtomicBool::new(false),
            resample_handler: Once::new(),
        }))
    }

    /// The state, locked, with the lines posted since the last lock taken in (and the
    /// notifier told about outputs that rose).
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut s = self.state.lock();
        // A plain load first: the common case (nothing posted) writes nothing.
        if self.any_posted.load(Ordering::Relaxed) && self.any_posted.swap(false, Ordering::AcqRel)
        {
            for (w, word) in self.posted.iter().enumerate() {
                let mut bits = word.swap(0, Ordering::AcqRel);
                while bits != 0 {
                    s.set_level(w as u32 * 32 + bits.trailing_zeros(), true);
                    bits &= bits - 1;
                }
            }
            s.update_outputs(&*self.notifier);
        }
        s
    }

    /// Raises source `source`'s line without taking the PLIC's lock: for a host interrupt
    /// handler passing a physical interrupt through (it may have interrupted a vCPU that
    /// holds the lock). The level is taken in by the next register access or
    /// [`Vplic::external_pending`]; every context is notified (here, without the lock) so
    /// that its vCPU comes to look. The line stays high until the guest completes the
    /// source, if it is a resample source ([`Vplic::set_resample`]), or until
    /// [`Vplic::set_level`] lowers it. Ignored for a source that does not exist.
    pub fn post_high(&self, source: u32) {
        if source == 0 || source > self.config.sources {
            return;
        }
        if let Some(word) = self.posted.get((source / 32) as usize) {
            word.fetch_or(1 << (source % 32), Ordering::AcqRel);
        }
        self.any_posted.store(true, Ordering::Release);
        for c in 0..self.config.contexts {
            self.notifier.notify(c);
        }
    }

    /// Makes source `source` a resample source (`on`: a physical line passed through) or
    /// an ordinary one. When the guest completes a resample source its line is lowered
    /// instead of re-pending the source, and the source is reported. Ignored for a source
    /// that does not exist.
    pub fn set_resample(&self, source: u32, on: bool) {
        self.lock().set_resample(source, on);
    }

    /// Calls `f` with each resample source completed by the guest (or released by
    /// [`Vplic::reset`]) since the last call, and forgets them. `f` runs without the lock.
    pub fn take_resampled(&self, f: &mut dyn FnMut(u32)) {
        let mut ended = Vec::new();
        {
            let mut s = self.lock();
            if !s.any_resampled() {
                return;
            }
            s.take_resampled(&mut |id| ended.push(id));
        }
        for id in ended {
            f(id);
        }
    }

    /// Installs `f` to be called, without the lock, with each resample source right after
    /// the guest access (or [`Vplic::reset`]) that completed it: the hypervisor unmasks the
    /// physical interrupt there. Only the first call installs a handler; without one,
    /// resample sources wait for [`Vplic::take_resampled`].
    pub fn set_resample_handler(&self, f: ResampleHandler) {
        self.resample_handler.call_once(|| f);
    }

    /// Hands completed resample sources to the handler, if there is one.
    fn deliver_resampled(&self) {
        if let Some(h) = self.resample_handler.get() {
            self.take_resampled(&mut |id| h(id));
        }
    }

    /// The configuration this PLIC was built with (for generating the guest's device tree:
    /// `riscv,ndev = sources`, one `interrupts-extended` entry per context).
    pub fn config(&self) -> VplicConfig {
        self.config
    }

    /// The register window, to be mapped at the PLIC's guest-physical base. Its size is
    /// [`VPLIC_SIZE`]; it accepts 32-bit aligned accesses only.
    pub fn mmio(self: &Arc<Self>) -> Arc<dyn MmioDevice> {
        self.clone()
    }

    /// The level-sensitive interrupt line of source `source` (`1..=sources`), for a device
    /// model to drive; `None` for source 0 or a source that does not exist. Lines for the
    /// same source share one level (the last `set_level` wins).
    pub fn irq_line(self: &Arc<Self>, source: u32) -> Option<Arc<dyn IrqLine>> {
        if source == 0 || source > self.config.sources {
            return None;
        }
        Some(Arc::new(SourceLine {
            plic: self.clone(),
            source,
        }))
    }

    /// Drives source `source`'s line to `high` (what an [`IrqLine`] from
    /// [`Vplic::irq_line`] does). Ignored for a source that does not exist.
    pub fn set_level(&self, source: u32, high: bool) {
        let mut s = self.lock();
        s.set_level(source, high);
        s.update_outputs(&*self.notifier);
    }

    /// The interrupt output of `context`: some source is pending, enabled for the context
    /// and of a priority above the context's threshold (priority 0 never interrupts; a
    /// claimed source is no longer pending). `false` for a context that does not exist.
    pub fn external_pending(&self, context: usize) -> bool {
        self.lock().output(context)
    }

    /// Back to the reset state (for a VM reset): priorities, enables and thresholds 0,
    /// nothing in service. Line levels belong to the devices and are kept; a line that is
    /// still high makes its source pending again. Every output is low afterwards (nothing
    /// is enabled), so the notifier is not called. Resample sources stay so; their lines
    /// are lowered and every one of them is reported (see [`Vplic::take_resampled`]), so
    /// the physical interrupts behind them are unmasked and re-sampled.
    pub fn reset(&self) {
        {
            let mut s = self.lock();
            s.reset();
            s.update_outputs(&*self.notifier);
        }
        self.deliver_resampled();
    }

    /// Checks a guest access against the window: in range, 32 bits wide, aligned.
    fn check(offset: usize, width: AccessWidth) -> Result<(), DeviceError> {
        match offset.checked_add(width.size()) {
            Some(end) if end <= VPLIC_SIZE => {}
            _ => return Err(DeviceError::BadOffset),
        }
        if width != AccessWidth::Word {
            return Err(DeviceError::BadWidth);
        }
        if !offset.is_multiple_of(4) {
            return Err(DeviceError::Misaligned);
        }
        Ok(())
    }

    /// Which register a (checked, aligned, in-window) offset names.
    fn decode(&self, offset: usize) -> Reg {
        let contexts = self.config.contexts;
        if offset < PENDING_BASE {
            let id = ((offset - PRIORITY_BASE) / 4) as u32;
            if id != 0 && id <= self.config.sources {
                Reg::Priority(id)
            } else {
                Reg::Reserved
            }
        } else if offset < PENDING_END {
            Reg::Pending((offset - PENDING_BASE) / 4)
        } else if offset < ENABLE_BASE {
            Reg::Reserved
        } else if offset < CONTEXT_BASE {
            let rel = offset - ENABLE_BASE;
            let ctx = rel / ENABLE_STRIDE;
            if ctx < contexts {
                Reg::Enable {
                    ctx,
                    word: (rel % ENABLE_STRIDE) / 4,
                }
            } else {
                Reg::Reserved
            }
        } else {
            let rel = offset - CONTEXT_BASE;
            let ctx = rel / CONTEXT_STRIDE;
            if ctx >= contexts {
                return Reg::Reserved;
            }
            match rel % CONTEXT_STRIDE {
                0 => Reg::Threshold(ctx),
                CLAIM_COMPLETE => Reg::Claim(ctx),
                _ => Reg::Reserved,
            }
        }
    }
}

impl MmioDevice for Vplic {
    fn name(&self) -> &str {
        "riscv-plic"
    }

    fn size(&self) -> usize {
        VPLIC_SIZE
    }

    fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        Self::check(offset, width)?;
        let reg = self.decode(offset);
        let mut s = self.lock();
        let value = match reg {
            Reg::Priority(id) => s.priority(id),
            Reg::Pending(word) => s.pending_word(word),
            Reg::Enable { ctx, word } => s.enable_word(ctx, word),
            Reg::Threshold(ctx) => s.threshold(ctx),
            Reg::Claim(ctx) => {
                let id = s.claim(ctx);
                s.update_outputs(&*self.notifier);
                id
            }
            Reg::Reserved => {
                trace!("vplic: read of reserved offset {offset:#x}");
                0
            }
        };
        Ok(u64::from(value))
    }

    fn write(&self, offset: usize, width: AccessWidth, value: u64) -> Result<(), DeviceError> {
        Self::check(offset, width)?;
        let value = value as u32;
        let reg = self.decode(offset);
        let mut s = self.lock();
        let mut resampled = false;
        match reg {
            Reg::Priority(id) => s.set_priority(id, value & self.priority_mask),
            Reg::Pending(_) => {
                trace!("vplic: write to read-only pending bits at {offset:#x} ignored");
                return Ok(());
            }
            Reg::Enable { ctx, word } => {
                if word < s.words() {
                    s.set_enable_word(ctx, word, value);
                }
            }
            Reg::Threshold(ctx) => s.set_threshold(ctx, value & self.priority_mask),
            Reg::Claim(ctx) => {
                if !s.complete(ctx, value) {
                    trace!("vplic: context {ctx} completion of {value} ignored");
                    return Ok(());
                }
                resampled = s.any_resampled();
            }
            Reg::Reserved => {
                trace!("vplic: write to reserved offset {offset:#x} ignored");
                return Ok(());
            }
        }
        s.update_outputs(&*self.notifier);
        drop(s);
        if resampled {
            self.deliver_resampled();
        }
        Ok(())
    }
}

/// The line of one source, handed to a device model.
struct SourceLine {
    plic: Arc<Vplic>,
    source: u32,
}

impl IrqLine for SourceLine {
    fn set_level(&self, high: bool) {
        self.plic.set_level(self.source, high);
    }
}
