//! Interrupt hardware of an aarch64 guest: the VM's GIC (GICv2 through the GICD and GICC
//! frames, GICv3 through the GICD, the vCPU's redistributor and the ICC system registers),
//! the EL1 virtual timer (PPI 27) and SGI 0 as the IPI.
//!
//! The GIC layout is QEMU `virt`'s, which the test VM configs copy: GICD at 0x0800_0000,
//! GICv2 CPU interface at 0x0801_0000, GICv3 redistributors from 0x080a_0000 (128 KiB per
//! vCPU). The version is the one the hypervisor gives the guest, read from
//! ID_AA64PFR0_EL1.GIC (1: the GICv3 system-register interface).

use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::irq::Irq;
use crate::mmio::{read32, write32, write64};

const GICD: usize = 0x0800_0000;
const GICC: usize = 0x0801_0000;
const GICR: usize = 0x080a_0000;
const GICR_STRIDE: usize = 0x2_0000;
const GICR_SGI: usize = 0x1_0000;

const GICD_CTLR: usize = 0x000;
const GICD_IGROUPR: usize = 0x080;
const GICD_ISENABLER: usize = 0x100;
const GICD_ICENABLER: usize = 0x180;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_ITARGETSR: usize = 0x800;
const GICD_SGIR: usize = 0xf00;
const GICD_IROUTER: usize = 0x6000;
const GICR_WAKER: usize = 0x0014;
const GICC_CTLR: usize = 0x00;
const GICC_PMR: usize = 0x04;
const GICC_IAR: usize = 0x0c;
const GICC_EOIR: usize = 0x10;

/// The IPI: SGI 0.
const IPI_SGI: u32 = 0;
/// The EL1 virtual timer's PPI.
const VTIMER_PPI: u32 = 27;
/// Priority of every interrupt the guest uses.
const PRIORITY: u8 = 0xa0;
/// INTIDs from here on are special (1020-1023: spurious).
const SPURIOUS: u32 = 1020;

macro_rules! sysreg {
    (read $name:literal) => {{
        let v: u64;
        // SAFETY: reads a system register of the guest's own EL1 state.
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
        v
    }};
    (write $name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: writes a timer or GIC CPU-interface register of the guest itself; the
        // hypervisor virtualises them, nothing else of the guest depends on them.
        unsafe { asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) v, options(nomem, nostack)) };
    }};
}

/// The GIC version as read once (0: not yet, 2 or 3).
static VERSION: AtomicU8 = AtomicU8::new(0);

/// Whether the guest has a GICv3 (the system-register CPU interface). ID_AA64PFR0_EL1 is
/// read once: under the hypervisor every read of it traps (about 10,000 instructions), and
/// this is asked on every interrupt.
fn v3() -> bool {
    match VERSION.load(Ordering::Relaxed) {
        0 => {
            let v = if (sysreg!(read "id_aa64pfr0_el1") >> 24) & 0xf != 0 {
                3
            } else {
                2
            };
            VERSION.store(v, Ordering::Relaxed);
            v == 3
        }
        v => v == 3,
    }
}

/// This vCPU's redistributor SGI frame (GICv3).
fn rd_sgi() -> usize {
    GICR + crate::cpu_id() * GICR_STRIDE + GICR_SGI
}

/// Where SGI/PPI `n`'s enable and priority registers are: banked GICD (v2), or the
/// redistributor's SGI frame (v3).
fn private_base() -> usize {
    if v3() {
        rd_sgi()
    } else {
        GICD
    }
}

/// Enables interrupt `n` at priority [`PRIORITY`] in group 1 (v3) / 0 (v2).
fn enable_intid(n: u32) {
    let base = if n < 32 { private_base() } else { GICD };
    let (word, bit) = ((n / 32) as usize * 4, 1u32 << (n % 32));
    // SAFETY: GIC distributor / redistributor registers of this VM (mapped by its config).
    unsafe {
        if v3() {
            let g = read32(base + GICD_IGROUPR + word);
            write32(base + GICD_IGROUPR + word, g | bit);
        }
        let prio_word = base + GICD_IPRIORITYR + (n as usize & !3);
        let shift = (n % 4) * 8;
        let p = read32(prio_word) & !(0xff << shift);
        write32(prio_word, p | (u32::from(PRIORITY) << shift));
        write32(base + GICD_ISENABLER + word, bit);
    }
}

/// Sets up this vCPU: distributor (idempotent), its redistributor (v3), the CPU interface,
/// and the timer and IPI interrupts enabled.
pub fn init_cpu() {
    if v3() {
        let waker = rd_sgi() - GICR_SGI + GICR_WAKER;
        // SAFETY: the distributor and this vCPU's redistributor (see the module docs):
        // ARE_NS + EnableGrp1A, then wake the redistributor.
        unsafe {
            write32(GICD + GICD_CTLR, (1 << 4) | (1 << 1));
            write32(waker, read32(waker) & !(1 << 1));
            while read32(waker) & (1 << 2) != 0 {}
        }
        sysreg!(write "S3_0_C12_C12_5", sysreg!(read "S3_0_C12_C12_5") | 1); // ICC_SRE_EL1.SRE
        sysreg!(write "S3_0_C4_C6_0", 0xff); // ICC_PMR_EL1
        sysreg!(write "S3_0_C12_C12_7", 1); // ICC_IGRPEN1_EL1
    } else {
        // SAFETY: the distributor and the CPU interface (see the module docs).
        unsafe {
            write32(GICD + GICD_CTLR, 1);
            write32(GICC + GICC_PMR, 0xff);
            write32(GICC + GICC_CTLR, 1);
        }
    }
    enable_intid(VTIMER_PPI);
    enable_intid(IPI_SGI);
}

/// Unmasks IRQs (PSTATE.I); a pending interrupt is taken before this returns (the `isb`).
/// Not `nomem`: handlers change memory, so this is a compiler barrier.
pub fn enable() {
    // SAFETY: only changes the IRQ mask of this vCPU.
    unsafe { asm!("msr daifclr, #2", "isb", options(nostack)) };
}

/// Masks IRQs. A compiler barrier too, like [`enable`].
pub fn disable() {
    // SAFETY: only changes the IRQ mask of this vCPU.
    unsafe { asm!("msr daifset, #2", options(nostack)) };
}

/// The virtual counter (CNTVCT_EL0).
pub fn timer_now() -> u64 {
    sysreg!(read "cntvct_el0")
}

/// The counter frequency (CNTFRQ_EL0).
pub fn timer_freq() -> u64 {
    sysreg!(read "cntfrq_el0")
}

/// Arms the virtual timer for counter value `deadline`.
pub fn timer_set(deadline: u64) {
    sysreg!(write "cntv_cval_el0", deadline);
    sysreg!(write "cntv_ctl_el0", 1);
}

/// Stops the virtual timer.
pub fn timer_stop() {
    sysreg!(write "cntv_ctl_el0", 0);
}

/// Sends SGI 0 to vCPU `cpu` (< 16).
pub fn send_ipi(cpu: usize) {
    if cpu >= 16 {
        return;
    }
    if v3() {
        // ICC_SGI1R_EL1: INTID 27:24, Aff1..3 = 0, TargetList bit = Aff0.
        sysreg!(write "S3_0_C12_C11_5", (u64::from(IPI_SGI) << 24) | (1 << cpu));
    } else if cpu < 8 {
        // SAFETY: GICD_SGIR of this VM: target list filter 0, CPU mask, SGI id.
        unsafe { write32(GICD + GICD_SGIR, (1 << (16 + cpu)) | IPI_SGI) };
    }
}

/// Enables SPI `n` (≥ 32), routed to this vCPU.
pub fn external_enable(n: u32) {
    if !(32..SPURIOUS).contains(&n) {
        return;
    }
    let cpu = crate::cpu_id();
    // SAFETY: routing registers of this VM's distributor.
    unsafe {
        if v3() {
            write64(GICD + GICD_IROUTER + n as usize * 8, cpu as u64);
        } else {
            let word = GICD + GICD_ITARGETSR + (n as usize & !3);
            let shift = (n % 4) * 8;
            let t = read32(word) & !(0xff << shift);
            write32(word, t | ((1u32 << cpu) << shift));
        }
    }
    enable_intid(n);
}

/// Disables interrupt `n`.
pub fn external_disable(n: u32) {
    if n >= SPURIOUS {
        return;
    }
    let base = if n < 32 { private_base() } else { GICD };
    // SAFETY: the clear-enable register of this VM's GIC.
    unsafe { write32(base + GICD_ICENABLER + (n / 32) as usize * 4, 1 << (n % 32)) };
}

/// Takes every pending interrupt: acknowledge, dispatch, end. Called from the IRQ vector.
pub(crate) fn handle_irqs() {
    loop {
        let iar = if v3() {
            sysreg!(read "S3_0_C12_C12_0") as u32 // ICC_IAR1_EL1
        } else {
            // SAFETY: GICC_IAR acknowledges the highest-priority pending interrupt.
            unsafe { read32(GICC + GICC_IAR) }
        };
        let id = iar & 0x3ff;
        if id >= SPURIOUS {
            return;
        }
        let irq = match id {
            VTIMER_PPI => {
                timer_stop();
                Irq::Timer
            }
            0..16 => Irq::Ipi,
            n => Irq::External(n),
        };
        crate::irq::dispatch(irq);
        if v3() {
            sysreg!(write "S3_0_C12_C12_1", u64::from(iar)); // ICC_EOIR1_EL1
        } else {
            // SAFETY: GICC_EOIR ends the interrupt just acknowledged (with its source CPU).
            unsafe { write32(GICC + GICC_EOIR, iar) };
        }
    }
}
