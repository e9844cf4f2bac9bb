//! Passthrough devices, the architecture-neutral part: which host ranges and interrupts are
//! given to which VM (one VM per device), the host interrupt handler that masks a VM's
//! device interrupt and hands it to the VM, and the stage-2 maps of the ranges.
//!
//! The architecture supplies how a VM takes such an interrupt ([`IrqSink`]: aarch64 raises
//! it on the vGIC through the vCPUs, riscv64 posts it on the vPLIC) and which numbers its
//! interrupt controller has; it unmasks the host interrupt once the guest has handled it.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use axconfig::dtb::IntcInfo;
use axvm::DeviceMap;
use axvmconfig::VmConfig;
use core::ops::Range;
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

/// The host's own RAM and devices, which no VM may be given: its RAM and reserved memory,
/// its console UART and its interrupt controller (from the host's device tree).
fn host_ranges() -> Vec<(u64, u64, &'static str)> {
    let info = axhal::platform::info();
    let mut v: Vec<(u64, u64, &'static str)> = info
        .memory
        .iter()
        .map(|r| (r.start as u64, r.end() as u64, "the hypervisor's RAM"))
        .chain(info.reserved.iter().map(|r| {
            (
                r.start as u64,
                r.end() as u64,
                "memory the firmware reserved",
            )
        }))
        .collect();
    if let Some(u) = &info.uart {
        v.push((
            u.regs.start as u64,
            u.regs.end() as u64,
            "the hypervisor's console UART",
        ));
    }
    let (what, intc) = match &info.intc {
        Some(IntcInfo::GicV2 {
            dist,
            cpu,
            hyp,
            vcpu,
        }) => ("the host GIC", [Some(*dist), Some(*cpu), *hyp, *vcpu]),
        Some(IntcInfo::GicV3 { dist, redist }) => {
            ("the host GIC", [Some(*dist), Some(*redist), None, None])
        }
        Some(IntcInfo::Plic { regs, .. }) => ("the host PLIC", [Some(*regs), None, None, None]),
        None => ("", [None; 4]),
    };
    for r in intc.into_iter().flatten() {
        v.push((r.start as u64, r.end() as u64, what));
    }
    v
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

/// Checks a VM's `[[passthrough]]` entries against the host, the VM's own devices and the
/// other VMs, and claims them for it. Each interrupt must lie in `lines`, the numbers the
/// VM's interrupt controller and the host's have (`lines_what` names them in messages);
/// the VM takes it through `sink` (`None`: the VM has no interrupt controller, and its
/// devices may have no interrupts). Give the claims back with [`release`].
pub fn claim(
    config: &VmConfig,
    lines: Range<u32>,
    lines_what: &str,
    sink: Option<Arc<dyn IrqSink>>,
) -> Result<(), String> {
    let host = host_ranges();
    for p in &config.passthrough {
        let end = p.base.saturating_add(p.size);
        if let Some((_, _, what)) = host.iter().find(|(s, e, _)| p.base < *e && *s < end) {
            return Err(format!(
                "passthrough {:?} at {:#x} overlaps {what}",
                p.name, p.base
            ));
        }
        if let Some(&n) = p.irqs.iter().find(|&&n| !lines.contains(&n)) {
            return Err(format!(
                "passthrough {:?}: interrupt {n} is not {lines_what} ({}..{})",
                p.name, lines.start, lines.end
            ));
        }
        if let Some(d) = config
            .devices
            .iter()
            .find(|d| d.irq.is_some_and(|n| p.irqs.contains(&n)))
        {
            return Err(format!(
                "passthrough {:?}: interrupt {} is the `{}` device's",
                p.name,
                d.irq.unwrap_or(0),
                d.kind
            ));
        }
    }
    let irqs: Vec<u32> = irqs(config).collect();
    if sink.is_none() && !irqs.is_empty() {
        return Err(String::from(
            "passthrough interrupts need a virtual interrupt controller",
        ));
    }
    for (i, n) in irqs.iter().enumerate() {
        if irqs[..i].contains(n) {
            return Err(format!("passthrough: interrupt {n} is listed twice"));
        }
    }
    with_claims(|claims| {
        for p in &config.passthrough {
            let end = p.base.saturating_add(p.size);
            let taken = claims.iter().find(|c| {
                c.range.is_some_and(|(s, e)| p.base < e && s < end)
                    || c.irq.as_ref().is_some_and(|(n, _)| p.irqs.contains(n))
            });
            if let Some(c) = taken {
                return Err(format!(
                    "passthrough {:?} is already given to VM {}",
                    p.name, c.vm
                ));
            }
        }
        for p in &config.passthrough {
            claims.push(Claim {
                vm: config.id,
                range: Some((p.base, p.base.saturating_add(p.size))),
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
