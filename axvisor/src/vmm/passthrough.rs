//! Passthrough devices, the architecture-neutral part: which host ranges (passthrough
//! ranges, `identity` memory) and interrupts are given to which VM (one VM each), the host
//! interrupt handler that masks a VM's device interrupt and hands it to the VM, and the
//! stage-2 maps of the ranges.
//!
//! The architecture supplies how a VM takes such an interrupt ([`IrqSink`]: aarch64 raises
//! it on the vGIC through the vCPUs, riscv64 posts it on the vPLIC); it unmasks the host
//! interrupt once the guest has handled it.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use axvm::DeviceMap;
use axvmconfig::{MapKind, VmConfig};
use spin::Mutex;

/// Where a VM takes the host interrupts of its passthrough devices.
pub trait IrqSink: Send + Sync {
    /// Host interrupt `irq` of the VM fired and is now masked at the host: raise it for the
    /// guest and get a vCPU to look. Runs in interrupt context: it must take no lock that
    /// is held with interrupts enabled.
    fn raise(&self, irq: u32);
}

/// A host device range or interrupt given to a VM.
struct Claim {
    vm: u32,
    range: Option<(u64, u64)>,
    irq: Option<(u32, Arc<dyn IrqSink>)>,
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

/// The host interrupts of a VM's passthrough devices.
pub fn irqs(config: &VmConfig) -> impl Iterator<Item = u32> + '_ {
    config
        .passthrough
        .iter()
        .flat_map(|p| p.irqs.iter().copied())
}

/// The VM's passthrough ranges, mapped at their host addresses.
pub fn device_maps(config: &VmConfig) -> Vec<DeviceMap> {
    config
        .passthrough
        .iter()
        .map(|p| DeviceMap {
            what: "passthrough device",
            gpa: p.base,
            hpa: p.base,
            size: p.size,
        })
        .collect()
}

/// Claims a VM's host ranges (its passthrough ranges and `identity` memory regions) and
/// its passthrough interrupts, which it takes through `sink` (`None`: the VM has no
/// interrupt controller, and its devices may have no interrupts). A range or interrupt
/// another VM already has is refused: it belongs to one VM until that VM stops. What one
/// config may ask for (interrupt lines, ranges the host uses) is checked before, by
/// `axvmconfig` against the host's facts ([`super::host::facts`]). Give the claims back
/// with [`release`].
pub fn claim(config: &VmConfig, sink: Option<Arc<dyn IrqSink>>) -> Result<(), String> {
    let irqs: Vec<u32> = irqs(config).collect();
    if sink.is_none() && !irqs.is_empty() {
        return Err(String::from(
            "passthrough interrupts need a virtual interrupt controller",
        ));
    }
    // Every host range of the VM, with how messages name it.
    let ranges: Vec<(String, u64, u64)> = config
        .memory
        .iter()
        .enumerate()
        .filter(|(_, r)| r.map == MapKind::Identity)
        .map(|(i, r)| {
            let what = format!("identity region memory[{i}] at {:#x}", r.gpa);
            (what, r.gpa, r.gpa.saturating_add(r.size))
        })
        .chain(config.passthrough.iter().map(|p| {
            let what = format!("passthrough {:?}", p.name);
            (what, p.base, p.base.saturating_add(p.size))
        }))
        .collect();
    with_claims(|claims| {
        for (what, start, end) in &ranges {
            if let Some(c) = claims
                .iter()
                .find(|c| c.range.is_some_and(|(s, e)| *start < e && s < *end))
            {
                return Err(format!("{what} is already given to VM {}", c.vm));
            }
        }
        for p in &config.passthrough {
            let taken = claims
                .iter()
                .find(|c| c.irq.as_ref().is_some_and(|(n, _)| p.irqs.contains(n)));
            if let Some(c) = taken {
                return Err(format!(
                    "passthrough {:?} is already given to VM {}",
                    p.name, c.vm
                ));
            }
        }
        for &(_, start, end) in &ranges {
            claims.push(Claim {
                vm: config.id,
                range: Some((start, end)),
                irq: None,
            });
        }
        if let Some(sink) = &sink {
            for &n in &irqs {
                claims.push(Claim {
                    vm: config.id,
                    range: None,
                    irq: Some((n, sink.clone())),
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
    let Some((_, sink)) = claims
        .iter()
        .find_map(|c| c.irq.as_ref().filter(|(i, _)| *i == n))
    else {
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
    for n in irqs(config) {
        axhal::irq::route_device(n as usize, config.cpus.pin[0]);
        axhal::irq::set_device_enabled(n as usize, true);
    }
}

/// Gives back what VM `vm` claimed (it stopped, or could not be built); its passthrough
/// interrupts are masked at the host.
pub fn release(vm: u32) {
    with_claims(|claims| {
        for c in claims.iter().filter(|c| c.vm == vm) {
            if let Some((n, _)) = &c.irq {
                axhal::irq::set_device_enabled(*n as usize, false);
            }
        }
        claims.retain(|c| c.vm != vm);
    });
}
