//! GICv2 and GICv3 drivers for the hypervisor's own interrupts, chosen from the DTB.
//!
//! Only what the hypervisor itself needs: its EL2 timer PPI and one SGI for wake-up IPIs, all
//! in one group at one priority; SPIs are configured off and routed to the boot CPU.
//! Register offsets are from the GIC architecture specification (IHI 0048 / IHI 0069).

use crate::irq::{dispatch, IrqSource};
use crate::percpu::PerCpu;
use crate::{mmio, platform};
use axconfig::dtb::{IntcInfo, PlatformInfo};
use axconfig::MAX_CPUS;
use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use spin::Once;

/// SGI used to wake another CPU.
const IPI_SGI: u32 = 1;
/// EL2 physical timer PPI when the DTB does not say.
const DEFAULT_HYP_TIMER_PPI: u32 = 26;
/// EL1 virtual timer PPI when the DTB does not say.
const DEFAULT_VIRT_TIMER_PPI: u32 = 27;
/// The virtual interface's maintenance interrupt (PPI 9 on QEMU `virt` and most boards).
const MAINTENANCE_PPI: u32 = 25;
const PRIORITY: u8 = 0xa0;
const SPURIOUS: u32 = 1020;

// Distributor (both versions).
const GICD_CTLR: usize = 0x000;
const GICD_TYPER: usize = 0x004;
const GICD_IGROUPR: usize = 0x080;
const GICD_ICENABLER: usize = 0x180;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_ITARGETSR: usize = 0x800;
const GICD_SGIR: usize = 0xf00;
const GICD_IROUTER: usize = 0x6000;
// GICv2 CPU interface.
const GICC_CTLR: usize = 0x00;
const GICC_PMR: usize = 0x04;
const GICC_BPR: usize = 0x08;
const GICC_IAR: usize = 0x0c;
const GICC_EOIR: usize = 0x10;
// GICv3 redistributor: RD frame, then the SGI frame 64 KiB above.
const GICR_FRAME: usize = 0x2_0000;
const GICR_TYPER: usize = 0x0008;
const GICR_WAKER: usize = 0x0014;
const GICR_SGI: usize = 0x1_0000;
const GICR_IGROUPR0: usize = GICR_SGI + 0x080;
const GICR_ISENABLER0: usize = GICR_SGI + 0x100;
const GICR_ICENABLER0: usize = GICR_SGI + 0x180;
const GICR_IPRIORITYR: usize = GICR_SGI + 0x400;

/// The controller in use.
enum Gic {
    V2 {
        dist: usize,
        cpu: usize,
    },
    V3 {
        dist: usize,
        redist: usize,
        redist_size: usize,
    },
}

static GIC: Once<Gic> = Once::new();
static TIMER_PPI: Once<u32> = Once::new();
static VTIMER_PPI: Once<u32> = Once::new();
static HOST_VGIC: Once<Option<super::vgic::HostVgic>> = Once::new();
/// GICv3: each CPU's redistributor frame.
static RD_BASE: PerCpu<AtomicUsize> = PerCpu::new([const { AtomicUsize::new(0) }; MAX_CPUS]);
/// GICv2: each CPU's interface bit for GICD_SGIR target lists.
static V2_CPU_MASK: PerCpu<AtomicU8> = PerCpu::new([const { AtomicU8::new(0) }; MAX_CPUS]);

fn gic() -> &'static Gic {
    GIC.get().expect("GIC used before init")
}

/// Why the GIC could not be set up.
#[derive(Debug)]
pub enum GicError {
    /// The DTB names no GIC.
    Missing,
    /// The DTB's interrupt controller is not a GIC.
    NotAGic(&'static str),
}

impl core::fmt::Display for GicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GicError::Missing => write!(f, "the device tree lists no GICv2 or GICv3"),
            GicError::NotAGic(n) => write!(f, "interrupt controller {n} is not a GIC"),
        }
    }
}

fn wait_rwp(addr: usize) {
    // RWP (bit 31) clears once a register write has taken effect.
    while mmio::read32(addr) & (1 << 31) != 0 {
        core::hint::spin_loop();
    }
}

/// Distributor set-up, once, on the boot CPU.
pub fn init_primary(info: &PlatformInfo) -> Result<(), GicError> {
    let g = match &info.intc {
        Some(IntcInfo::GicV2 { dist, cpu, .. }) => Gic::V2 {
            dist: dist.start,
            cpu: cpu.start,
        },
        Some(IntcInfo::GicV3 { dist, redist }) => Gic::V3 {
            dist: dist.start,
            redist: redist.start,
            redist_size: redist.size,
        },
        Some(other) => return Err(GicError::NotAGic(other.name())),
        None => return Err(GicError::Missing),
    };
    TIMER_PPI.call_once(|| info.timer_irqs.map_or(DEFAULT_HYP_TIMER_PPI, |t| t.hyp));
    VTIMER_PPI.call_once(|| info.timer_irqs.map_or(DEFAULT_VIRT_TIMER_PPI, |t| t.virt));
    HOST_VGIC.call_once(|| match &info.intc {
        Some(IntcInfo::GicV2 {
            hyp: Some(hyp),
            vcpu: Some(vcpu),
            ..
        }) => Some(super::vgic::HostVgic::V2 {
            gich: hyp.start,
            gicv: vcpu.start,
            gicv_size: vcpu.size,
        }),
        Some(IntcInfo::GicV3 { .. }) => Some(super::vgic::HostVgic::V3),
        _ => None,
    });
    let g = GIC.call_once(|| g);
    let (Gic::V2 { dist, .. } | Gic::V3 { dist, .. }) = *g;
    mmio::write32(dist + GICD_CTLR, 0);
    let lines = ((mmio::read32(dist + GICD_TYPER) & 0x1f) as usize + 1) * 32;
    for i in (32..lines).step_by(32) {
        mmio::write32(dist + GICD_ICENABLER + i / 8, u32::MAX);
        mmio::write32(
            dist + GICD_IGROUPR + i / 8,
            if matches!(g, Gic::V3 { .. }) {
                u32::MAX
            } else {
                0
            },
        );
    }
    for i in (32..lines).step_by(4) {
        mmio::write32(
            dist + GICD_IPRIORITYR + i,
            u32::from_ne_bytes([PRIORITY; 4]),
        );
    }
    match g {
        Gic::V2 { .. } => {
            for i in (32..lines).step_by(4) {
                mmio::write32(dist + GICD_ITARGETSR + i, 0x0101_0101);
            }
            mmio::write32(dist + GICD_CTLR, 1);
        }
        Gic::V3 { .. } => {
            let boot = info.cpus[super::cpu_id()].hw_id as u64;
            for i in 32..lines {
                mmio::write64(dist + GICD_IROUTER + i * 8, boot);
            }
            // ARE (affinity routing) + EnableGrp1 + EnableGrp0 (single security state).
            mmio::write32(dist + GICD_CTLR, (1 << 4) | (1 << 1) | 1);
            wait_rwp(dist + GICD_CTLR);
        }
    }
    Ok(())
}

/// This CPU's redistributor frame (GICv3), found by matching GICR_TYPER's affinity.
fn redist_of(redist: usize, size: usize, mpidr: u64) -> Option<usize> {
    // GICR_TYPER[63:32] is Aff3.Aff2.Aff1.Aff0; MPIDR keeps Aff3 at bits 39:32.
    let aff = (mpidr & 0xff_ffff) | (((mpidr >> 32) & 0xff) << 24);
    let mut frame = redist;
    while frame < redist + size {
        let typer = mmio::read64(frame + GICR_TYPER);
        if typer >> 32 == aff {
            return Some(frame);
        }
        if typer & (1 << 4) != 0 {
            break; // Last
        }
        frame += GICR_FRAME;
    }
    None
}

fn sysreg_write(f: impl FnOnce()) {
    f();
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Per-CPU set-up: CPU interface on, the timer PPI and wake-up SGI enabled.
pub fn init_cpu(cpu: usize) {
    super::set_timer_deadline(u64::MAX);
    let ppi = *TIMER_PPI.get().expect("GIC used before init");
    // The hypervisor's timer, its wake-up SGI, and the virtual interface's maintenance
    // interrupt (which only makes a running guest exit).
    let enable = (1u32 << ppi) | (1 << IPI_SGI) | (1 << MAINTENANCE_PPI);
    match *gic() {
        Gic::V2 { dist, cpu: cpuif } => {
            // Banked per CPU: SGI/PPI enables and priorities, and our own interface bit.
            mmio::write32(dist + GICD_ICENABLER, u32::MAX);
            for i in (0..32).step_by(4) {
                mmio::write32(
                    dist + GICD_IPRIORITYR + i,
                    u32::from_ne_bytes([PRIORITY; 4]),
                );
            }
            V2_CPU_MASK
                .get(cpu)
                .store(mmio::read32(dist + GICD_ITARGETSR) as u8, Ordering::Release);
            mmio::write32(dist + 0x100, enable); // GICD_ISENABLER0
            mmio::write32(cpuif + GICC_PMR, 0xff);
            mmio::write32(cpuif + GICC_BPR, 0);
            mmio::write32(cpuif + GICC_CTLR, 1);
        }
        Gic::V3 {
            redist,
            redist_size,
            ..
        } => {
            let hw = platform::info().cpus[cpu].hw_id as u64;
            let Some(rd) = redist_of(redist, redist_size, hw) else {
                panic!("cpu {cpu}: no GICv3 redistributor for MPIDR {hw:#x}");
            };
            // Wake the redistributor: clear ProcessorSleep, wait for ChildrenAsleep to clear.
            mmio::write32(rd + GICR_WAKER, mmio::read32(rd + GICR_WAKER) & !(1 << 1));
            while mmio::read32(rd + GICR_WAKER) & (1 << 2) != 0 {
                core::hint::spin_loop();
            }
            RD_BASE.get(cpu).store(rd, Ordering::Release);
            mmio::write32(rd + GICR_ICENABLER0, u32::MAX);
            mmio::write32(rd + GICR_IGROUPR0, u32::MAX);
            for i in (0..32).step_by(4) {
                mmio::write32(rd + GICR_IPRIORITYR + i, u32::from_ne_bytes([PRIORITY; 4]));
            }
            mmio::write32(rd + GICR_ISENABLER0, enable);
            // SAFETY: GIC CPU-interface system registers (ICC_SRE_EL2 = S3_4_C12_C9_5,
            // ICC_PMR_EL1 = S3_0_C4_C6_0, ICC_BPR1_EL1 = S3_0_C12_C12_3, ICC_CTLR_EL1 =
            // S3_0_C12_C12_4, ICC_IGRPEN1_EL1 = S3_0_C12_C12_7): enable the system-register
            // interface (and EL1's access to it), unmask all priorities, EOI mode 0, group 1 on.
            sysreg_write(|| unsafe {
                core::arch::asm!("msr S3_4_C12_C9_5, {}", in(reg) 0b1001u64)
            });
            // SAFETY: as above, the EL1 CPU-interface registers this CPU's interface owns.
            sysreg_write(|| unsafe {
                core::arch::asm!(
                    "msr S3_0_C4_C6_0, {pmr}",
                    "msr S3_0_C12_C12_3, xzr",
                    "msr S3_0_C12_C12_4, xzr",
                    "msr S3_0_C12_C12_7, {one}",
                    pmr = in(reg) 0xffu64,
                    one = in(reg) 1u64,
                )
            });
        }
    }
}

/// Takes and handles one pending interrupt (called from the IRQ vector).
pub fn handle_irq() {
    let iar = match *gic() {
        Gic::V2 { cpu, .. } => mmio::read32(cpu + GICC_IAR),
        Gic::V3 { .. } => {
            let v: u64;
            // SAFETY: ICC_IAR1_EL1 (S3_0_C12_C12_0) read acknowledges the interrupt.
            unsafe { core::arch::asm!("mrs {}, S3_0_C12_C12_0", out(reg) v) };
            v as u32
        }
    };
    let id = match gic() {
        Gic::V2 { .. } => iar & 0x3ff, // bits 12:10 name the SGI's source CPU
        Gic::V3 { .. } => iar & 0xff_ffff,
    };
    if (SPURIOUS..1024).contains(&id) {
        return;
    }
    if id == MAINTENANCE_PPI {
        // A guest's list registers need attention: the exit it caused is all that was
        // needed (the vCPU syncs them before it runs again).
    } else if Some(&id) == VTIMER_PPI.get() {
        // A guest's virtual timer fired while it ran; the vCPU injects it. Keep the level
        // from firing again in the hypervisor until the vCPU re-enables it.
        set_private_enabled(id, false);
    } else {
        dispatch(classify(id));
    }
    eoi(iar);
}

fn classify(id: u32) -> IrqSource {
    if id == *TIMER_PPI.get().unwrap_or(&DEFAULT_HYP_TIMER_PPI) {
        IrqSource::Timer
    } else if id == IPI_SGI {
        IrqSource::Ipi
    } else {
        IrqSource::Device(id as usize)
    }
}

fn eoi(iar: u32) {
    match *gic() {
        Gic::V2 { cpu, .. } => mmio::write32(cpu + GICC_EOIR, iar),
        // SAFETY: ICC_EOIR1_EL1 (S3_0_C12_C12_1) write ends the interrupt just acknowledged.
        Gic::V3 { .. } => unsafe { core::arch::asm!("msr S3_0_C12_C12_1, {}", in(reg) iar as u64) },
    }
}

/// Sends the wake-up SGI to logical CPU `cpu`.
pub fn send_ipi(cpu: usize) {
    match *gic() {
        Gic::V2 { dist, .. } => {
            let mask = V2_CPU_MASK.get(cpu).load(Ordering::Acquire) as u32;
            mmio::write32(dist + GICD_SGIR, (mask << 16) | IPI_SGI);
        }
        Gic::V3 { .. } => {
            let mpidr = platform::info().cpus[cpu].hw_id as u64;
            let aff0 = mpidr & 0xff;
            let v = (((mpidr >> 32) & 0xff) << 48) // Aff3
                | (((mpidr >> 16) & 0xff) << 32) // Aff2
                | ((aff0 >> 4) << 44) // RS: which group of 16 Aff0 values
                | ((IPI_SGI as u64) << 24)
                | (((mpidr >> 8) & 0xff) << 16) // Aff1
                | (1 << (aff0 & 0xf));
            // SAFETY: ICC_SGI1R_EL1 (S3_0_C12_C11_5) write raises the SGI; isb orders it.
            unsafe { core::arch::asm!("msr S3_0_C12_C11_5, {}", "isb", in(reg) v) };
        }
    }
}

/// The host's virtualization interface (see `vgic::host`).
pub fn host_vgic() -> Option<super::vgic::HostVgic> {
    HOST_VGIC.get().copied().flatten()
}

/// The EL1 virtual timer's INTID.
pub fn vtimer_intid() -> u32 {
    VTIMER_PPI.get().copied().unwrap_or(DEFAULT_VIRT_TIMER_PPI)
}

/// Per CPU: the SGIs/PPIs `set_private_enabled` last enabled (bit per INTID), so repeated
/// requests for the same state cost no GIC access.
static PRIVATE_ENABLED: PerCpu<AtomicU32> = PerCpu::new([const { AtomicU32::new(0) }; MAX_CPUS]);

/// Enables or disables SGI/PPI `intid` for this CPU (interrupts must be masked: the cache
/// of enable bits is this CPU's).
pub fn set_private_enabled(intid: u32, enabled: bool) {
    if intid >= 32 {
        return;
    }
    let cache = PRIVATE_ENABLED.this();
    let was = cache.load(Ordering::Relaxed);
    let now = if enabled {
        was | 1 << intid
    } else {
        was & !(1 << intid)
    };
    if now == was {
        return;
    }
    cache.store(now, Ordering::Relaxed);
    let bit = 1u32 << intid;
    let (set, clear) = (0x100, 0x180); // I{S,C}ENABLER0, in GICD (v2, banked) or GICR_SGI (v3)
    let base = match *gic() {
        Gic::V2 { dist, .. } => dist,
        Gic::V3 { .. } => RD_BASE.this().load(Ordering::Acquire) + GICR_SGI,
    };
    mmio::write32(base + if enabled { set } else { clear }, bit);
}

/// Routes SPI `intid` to logical CPU `cpu` (a device interrupt given to a guest: taken on
/// the CPU of the vCPU that handles it).
pub fn route_spi(intid: u32, cpu: usize) {
    if intid < 32 {
        return;
    }
    let i = intid as usize;
    match *gic() {
        Gic::V2 { dist, .. } => {
            let mask = V2_CPU_MASK.get(cpu).load(Ordering::Acquire);
            let word = dist + GICD_ITARGETSR + (i & !3);
            let shift = (i % 4) * 8;
            let v = mmio::read32(word) & !(0xff << shift);
            mmio::write32(word, v | (u32::from(mask) << shift));
        }
        Gic::V3 { dist, .. } => {
            let hw = platform::info().cpus[cpu].hw_id as u64;
            let aff = (hw & 0xff_ffff) | (((hw >> 32) & 0xff) << 32);
            mmio::write64(dist + GICD_IROUTER + i * 8, aff);
        }
    }
}

/// Enables or disables SPI `intid` at the distributor.
pub fn set_spi_enabled(intid: u32, enabled: bool) {
    if intid < 32 {
        return;
    }
    let (Gic::V2 { dist, .. } | Gic::V3 { dist, .. }) = *gic();
    let reg = if enabled { 0x100 } else { GICD_ICENABLER };
    mmio::write32(dist + reg + (intid as usize / 32) * 4, 1 << (intid % 32));
}
