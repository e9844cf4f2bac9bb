//! Passthrough devices, the architecture-neutral part: which host ranges (passthrough
//! ranges, `identity` memory), I/O ports and interrupts are given to which VM (one VM
//! each), and the
//! host interrupt handler that masks a VM's device interrupt and hands it to the VM. (The
//! VM maps its passthrough ranges itself, `axvm`.)
//!
//! The architecture supplies how a VM takes such an interrupt ([`IrqSink`], from
//! `ArchPlatform::irq_sink`: aarch64 raises it on the vGIC through the vCPUs, riscv64 posts
//! it on the vPLIC); it unmasks the host interrupt once the guest has handled it.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use axvm::IrqSink;
use axvmconfig::{MapKind, VmConfig};
use core::fmt;
use spin::Mutex;

/// A host range of a VM, as messages name it.
#[derive(Clone)]
pub enum HostRangeOf {
    /// `memory[index]`, an `identity` region at `gpa`.
    Identity {
        /// Index in the config's `[[memory]]`.
        index: usize,
        /// Its address.
        gpa: u64,
    },
    /// A `[[passthrough]]` range.
    Passthrough(String),
    /// I/O ports `[start, end)` of a `[[passthrough]]` device.
    Ports {
        /// The passthrough device.
        name: String,
        /// First port.
        start: u64,
        /// End (exclusive).
        end: u64,
    },
}

impl fmt::Display for HostRangeOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Identity { index, gpa } => {
                write!(f, "identity region memory[{index}] at {gpa:#x}")
            }
            Self::Passthrough(name) => write!(f, "passthrough {name:?}"),
            Self::Ports { name, start, end } => {
                write!(f, "passthrough {name:?} ports {start:#x}..{end:#x}")
            }
        }
    }
}

/// Why a VM's host ranges or interrupts cannot be given to it.
pub enum ClaimError {
    /// It has passthrough interrupts and no interrupt controller to take them.
    NoInterruptController,
    /// A range of it belongs to another VM.
    RangeTaken {
        /// Which range.
        what: HostRangeOf,
        /// The VM that has it.
        by: u32,
    },
    /// An interrupt of passthrough device `name` belongs to another VM.
    IrqTaken {
        /// The passthrough device.
        name: String,
        /// The VM that has it.
        by: u32,
    },
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoInterruptController => write!(
                f,
                "passthrough interrupts need a virtual interrupt controller"
            ),
            Self::RangeTaken { what, by } => write!(f, "{what} is already given to VM {by}"),
            Self::IrqTaken { name, by } => {
                write!(f, "passthrough {name:?} is already given to VM {by}")
            }
        }
    }
}

/// What a claim holds: a physical range, I/O ports or an interrupt.
enum Held {
    /// Physical addresses `[start, end)`.
    Range(u64, u64),
    /// I/O ports `[start, end)`.
    Ports(u64, u64),
    /// A host interrupt and where its VM takes it.
    Irq(u32, Arc<dyn IrqSink>),
}

/// A host device range, port range or interrupt given to a VM.
struct Claim {
    vm: u32,
    held: Held,
}

impl Claim {
    /// Whether it holds part of `[start, end)` in the space of `wanted` (a range or ports).
    fn overlaps(&self, wanted: &Held) -> bool {
        match (&self.held, wanted) {
            (Held::Range(s, e), Held::Range(start, end))
            | (Held::Ports(s, e), Held::Ports(start, end)) => start < e && s < end,
            _ => false,
        }
    }

    /// Its interrupt, if it holds one.
    fn irq(&self) -> Option<(u32, &Arc<dyn IrqSink>)> {
        match &self.held {
            Held::Irq(n, sink) => Some((*n, sink)),
            _ => None,
        }
    }
}

/// Everything given to VMs so far: a range or an interrupt belongs to one VM only. Read in
/// interrupt context (`on_device_irq`), so it is only locked with interrupts masked.
static CLAIMS: Mutex<Vec<Claim>> = Mutex::new(Vec::new());

/// Runs `f` on the claims with interrupts masked on this CPU.
fn with_claims<R>(f: impl FnOnce(&mut Vec<Claim>) -> R) -> R {
    let irq = axhal::irq::save_and_disable();
    let r = f(&mut CLAIMS.lock());
    axhal::irq::restore(irq);
    r
}

/// Claims a VM's host ranges (its passthrough ranges and `identity` memory regions), its
/// passthrough I/O ports and its passthrough interrupts, which it takes through `sink` (`None`: the VM has no
/// interrupt controller, and its devices may have no interrupts). A range or interrupt
/// another VM already has is refused: it belongs to one VM until that VM stops. What one
/// config may ask for (interrupt lines, ranges the host uses) is checked before, by
/// `axvmconfig` against the host's facts ([`super::host::facts`]). Give the claims back
/// with [`release`].
pub fn claim(config: &VmConfig, sink: Option<Arc<dyn IrqSink>>) -> Result<(), ClaimError> {
    let irqs: Vec<u32> = config.passthrough_irqs().collect();
    if sink.is_none() && !irqs.is_empty() {
        return Err(ClaimError::NoInterruptController);
    }
    // Every host range and port range of the VM, with how messages name it.
    let identity = config
        .memory
        .iter()
        .enumerate()
        .filter(|(_, r)| r.map == MapKind::Identity)
        .map(|(index, r)| {
            let what = HostRangeOf::Identity { index, gpa: r.gpa };
            (what, Held::Range(r.gpa, r.gpa.saturating_add(r.size)))
        });
    let mmio = config.passthrough.iter().filter_map(|p| {
        let m = p.mmio?;
        let what = HostRangeOf::Passthrough(p.name.clone());
        Some((what, Held::Range(m.base, m.base.saturating_add(m.size))))
    });
    let ports = config.passthrough.iter().flat_map(|p| {
        p.ports.iter().map(|r| {
            let (start, end) = (r.port, r.end());
            let name = p.name.clone();
            (
                HostRangeOf::Ports { name, start, end },
                Held::Ports(start, end),
            )
        })
    });
    let wanted: Vec<(HostRangeOf, Held)> = identity.chain(mmio).chain(ports).collect();
    with_claims(|claims| {
        for (what, held) in &wanted {
            if let Some(c) = claims.iter().find(|c| c.overlaps(held)) {
                return Err(ClaimError::RangeTaken {
                    what: what.clone(),
                    by: c.vm,
                });
            }
        }
        for p in &config.passthrough {
            let taken = claims
                .iter()
                .find(|c| c.irq().is_some_and(|(n, _)| p.irqs.contains(&n)));
            if let Some(c) = taken {
                return Err(ClaimError::IrqTaken {
                    name: p.name.clone(),
                    by: c.vm,
                });
            }
        }
        for (_, held) in wanted {
            claims.push(Claim {
                vm: config.id,
                held,
            });
        }
        if let Some(sink) = &sink {
            for &n in &irqs {
                claims.push(Claim {
                    vm: config.id,
                    held: Held::Irq(n, sink.clone()),
                });
            }
        }
        Ok(())
    })
}

/// Host device interrupts: a passthrough interrupt is masked at the host (a level-triggered
/// device would interrupt again at once) and raised for its VM. The architecture unmasks
/// it once the guest has handled it.
fn on_device_irq(irq: usize) -> bool {
    let n = irq as u32;
    // Interrupt context: interrupts are masked here, and the lock is never held with them on.
    let claims = CLAIMS.lock();
    let Some((_, sink)) = claims.iter().find_map(|c| c.irq().filter(|(i, _)| *i == n)) else {
        return false;
    };
    axhal::irq::set_device_enabled(irq, false);
    sink.raise(n);
    true
}

/// Lets the VM's passthrough interrupts reach it: routed to the CPU of its vCPU 0 and
/// unmasked at the host. Call once the VM exists.
pub fn start(config: &VmConfig) {
    axhal::irq::set_device_handler(on_device_irq);
    for n in config.passthrough_irqs() {
        axhal::irq::route_device(n as usize, config.cpus.pin[0]);
        axhal::irq::set_device_enabled(n as usize, true);
    }
}

/// Gives back what VM `vm` claimed (it stopped, or could not be built); its passthrough
/// interrupts are masked at the host.
pub fn release(vm: u32) {
    with_claims(|claims| {
        for c in claims.iter().filter(|c| c.vm == vm) {
            if let Some((n, _)) = c.irq() {
                axhal::irq::set_device_enabled(n as usize, false);
            }
        }
        claims.retain(|c| c.vm != vm);
    });
}
