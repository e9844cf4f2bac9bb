//! The I/O APIC: each input (GSI) is sent to one CPU's local APIC at vector
//! `DEVICE_VECTOR_BASE + GSI`, masked until a driver or a passthrough device enables it.
//! Polarity and trigger mode come from the MADT's interrupt source overrides, else ISA
//! defaults (edge, active high) below GSI 16 and PCI defaults (level, active low) above.

use super::trap::{DEVICE_VECTORS, DEVICE_VECTOR_BASE};
use crate::mmio;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use spin::Mutex;

const REG_VERSION: u32 = 0x01;
const REDIR_MASKED: u32 = 1 << 16;
const REDIR_LEVEL: u32 = 1 << 15;
const REDIR_ACTIVE_LOW: u32 = 1 << 13;

static BASE: AtomicUsize = AtomicUsize::new(0);
static GSI_BASE: AtomicU32 = AtomicU32::new(0);
static LINES: AtomicU32 = AtomicU32::new(0);
/// The index/data window is one register pair: accesses from several CPUs are serialized,
/// with interrupts masked (a device handler may mask its line).
static LOCK: Mutex<()> = Mutex::new(());

fn locked<R>(f: impl FnOnce() -> R) -> R {
    let state = crate::irq::save_and_disable();
    let r = {
        let _g = LOCK.lock();
        f()
    };
    crate::irq::restore(state);
    r
}

/// Polarity and trigger of one GSI, from a MADT interrupt source override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    /// The GSI.
    pub gsi: u32,
    /// Active low.
    pub active_low: bool,
    /// Level-triggered.
    pub level: bool,
}

fn read(reg: u32) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    mmio::write32(base, reg);
    mmio::read32(base + 0x10)
}

fn write(reg: u32, v: u32) {
    let base = BASE.load(Ordering::Relaxed);
    mmio::write32(base, reg);
    mmio::write32(base + 0x10, v);
}

/// Takes the I/O APIC at `base` (its first input is GSI `gsi_base`), masks every input and
/// programs vectors, polarity and trigger. Returns its number of inputs.
pub fn init(base: usize, gsi_base: u32, overrides: &[Override]) -> u32 {
    BASE.store(base, Ordering::Relaxed);
    GSI_BASE.store(gsi_base, Ordering::Relaxed);
    locked(|| {
        let lines = ((read(REG_VERSION) >> 16) & 0xff) + 1;
        LINES.store(lines, Ordering::Relaxed);
        for pin in 0..lines {
            let gsi = gsi_base + pin;
            let (active_low, level) = match overrides.iter().find(|o| o.gsi == gsi) {
                Some(o) => (o.active_low, o.level),
                None => (gsi >= 16, gsi >= 16),
            };
            let vector = if gsi < DEVICE_VECTORS {
                u32::from(DEVICE_VECTOR_BASE) + gsi
            } else {
                0
            };
            let mut low = REDIR_MASKED | vector;
            if active_low {
                low |= REDIR_ACTIVE_LOW;
            }
            if level {
                low |= REDIR_LEVEL;
            }
            write(0x10 + 2 * pin, low);
            write(0x11 + 2 * pin, 0);
        }
        lines
    })
}

/// The redirection entry of `gsi`, if this I/O APIC has it and it has a vector.
fn pin_of(gsi: usize) -> Option<u32> {
    let gsi = u32::try_from(gsi).ok()?;
    let pin = gsi.checked_sub(GSI_BASE.load(Ordering::Relaxed))?;
    (pin < LINES.load(Ordering::Relaxed) && gsi < DEVICE_VECTORS).then_some(pin)
}

/// Sends `gsi` to the local APIC with id `apic_id` (physical destination mode).
pub fn route(gsi: usize, apic_id: u32) {
    if let Some(pin) = pin_of(gsi) {
        locked(|| write(0x11 + 2 * pin, apic_id << 24));
    }
}

/// Masks or unmasks `gsi`.
pub fn set_enabled(gsi: usize, enabled: bool) {
    if let Some(pin) = pin_of(gsi) {
        locked(|| {
            let low = read(0x10 + 2 * pin);
            let low = if enabled {
                low & !REDIR_MASKED
            } else {
                low | REDIR_MASKED
            };
            write(0x10 + 2 * pin, low);
        });
    }
}
