//! From a [`GuestDtb`] to a blob: validation, then one function per part of the tree.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::writer::FdtWriter;
use crate::{
    ArchDesc, ArmTimerPpis, DeviceRef, DtbError, ExtraDevice, Gic, GuestDtb, Plic, PropValue,
    PsciMethod, RegionRef, Uart, UartKind, MAX_CPUS, MAX_DTB_SIZE, NS16550_CLOCK_HZ,
    PL011_CLOCK_HZ,
};

/// `model` of the root node.
const MODEL: &str = "axvisor virtual machine";
/// Root `compatible` on Arm: the one Linux documents for a generic virtual machine.
const ARM_COMPATIBLE: &str = "linux,dummy-virt";
/// Root `compatible` on RISC-V (informational: Linux matches nothing on it).
const RISCV_COMPATIBLE: &str = "riscv-virtio";

/// Size of a GICv2 distributor.
const GICV2_DIST_SIZE: u64 = 0x1000;
/// Size of a GICv2 CPU interface (two 4 KiB pages; GICC_DIR is in the second).
const GICV2_CPU_SIZE: u64 = 0x2000;
/// Size of a GICv3 distributor.
const GICV3_DIST_SIZE: u64 = 0x1_0000;
/// Redistributor bytes per CPU (RD_base and SGI_base frames).
const GICV3_REDIST_PER_CPU: u64 = 0x2_0000;
/// Most CPUs a GICv2 can serve.
const GICV2_MAX_CPUS: usize = 8;

/// GIC interrupt specifier, first cell: shared peripheral interrupt.
const GIC_SPI: u32 = 0;
/// GIC interrupt specifier, first cell: private peripheral interrupt.
const GIC_PPI: u32 = 1;
/// Trigger flags: active-high level-sensitive.
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
/// First SPI INTID.
const SPI_BASE: u32 = 32;
/// Last SPI INTID (1020..=1023 are special).
const SPI_LAST: u32 = 1019;

/// Hart-local interrupt number of the supervisor external interrupt (`scause` code 9).
const RISCV_IRQ_S_EXT: u32 = 9;
/// Most PLIC sources (source 0 means "none").
const PLIC_MAX_SOURCES: u32 = 1023;

/// Phandle of the GIC on Arm.
const ARM_GIC_PHANDLE: u32 = 1;
/// Phandle of the PL011 clock on Arm (on RISC-V it follows the PLIC's).
const ARM_CLK_PHANDLE: u32 = 2;

/// Builds the DTB described by `desc`.
///
/// Checks the description first and returns the first problem found as a [`DtbError`];
/// never panics. The blob is at most [`MAX_DTB_SIZE`] bytes.
pub fn build(desc: &GuestDtb<'_>) -> Result<Vec<u8>, DtbError> {
    validate(desc)?;
    let mut t = Tree {
        w: FdtWriter::new(desc.reserved),
        root_children: BTreeSet::new(),
    };
    t.w.begin_node("")?;
    t.w.prop_u32("#address-cells", 2)?;
    t.w.prop_u32("#size-cells", 2)?;
    match desc.arch {
        ArchDesc::Arm { .. } => {
            t.w.prop_str("compatible", ARM_COMPATIBLE)?;
            t.w.prop_str("model", MODEL)?;
            t.w.prop_u32("interrupt-parent", ARM_GIC_PHANDLE)?;
        }
        ArchDesc::Riscv { .. } => {
            t.w.prop_str("compatible", RISCV_COMPATIBLE)?;
            t.w.prop_str("model", MODEL)?;
        }
    }
    t.chosen(desc)?;
    t.aliases(desc.uarts)?;
    // PL011s and AMBA (`arm,primecell`) extra devices need the APB clock.
    let has_pl011 =
        desc.uarts.iter().any(|u| u.kind == UartKind::Pl011) || desc.extra.iter().any(is_primecell);
    let irqs = match desc.arch {
        ArchDesc::Arm {
            gic,
            timer_ppis,
            psci,
        } => {
            t.arm_cpus(desc.cpus, psci.is_some())?;
            t.memory(desc.memory)?;
            if let Some(method) = psci {
                t.arm_psci(method)?;
            }
            t.arm_gic(gic)?;
            t.arm_timer(gic, timer_ppis, desc.cpus)?;
            IrqStyle::Gic
        }
        ArchDesc::Riscv {
            isa,
            timebase_hz,
            mmu,
            plic,
        } => {
            t.riscv_cpus(desc.cpus, isa, timebase_hz, mmu)?;
            t.memory(desc.memory)?;
            let phandle = riscv_plic_phandle(desc.cpus)?;
            if let Some(plic) = plic {
                t.riscv_plic(plic, desc.cpus, phandle)?;
            }
            IrqStyle::Plic(phandle)
        }
    };
    let clock = if has_pl011 {
        let phandle = match desc.arch {
            ArchDesc::Arm { .. } => ARM_CLK_PHANDLE,
            ArchDesc::Riscv { .. } => riscv_plic_phandle(desc.cpus)? + 1,
        };
        t.apb_clock(phandle)?;
        Some(phandle)
    } else {
        None
    };
    for u in desc.uarts {
        t.uart(u, irqs, clock)?;
    }
    for d in desc.extra {
        t.extra(d, irqs, clock)?;
    }
    t.w.end_node()?;
    let blob = t.w.finish(0)?;
    if blob.len() > MAX_DTB_SIZE {
        return Err(DtbError::TooLarge {
            size: blob.len(),
            max: MAX_DTB_SIZE,
        });
    }
    Ok(blob)
}

/// How interrupts of devices under the root are written.
#[derive(Clone, Copy)]
enum IrqStyle {
    /// Arm: three GIC cells per interrupt, parent inherited from the root.
    Gic,
    /// RISC-V: one cell (the PLIC source), `interrupt-parent` = this phandle.
    Plic(u32),
}

impl IrqStyle {
    /// Writes `interrupt-parent` (if needed) and `interrupts` for `irqs` (validated).
    fn write(self, w: &mut FdtWriter, irqs: &[u32]) -> Result<(), DtbError> {
        match self {
            Self::Gic => {
                let cells: Vec<u32> = irqs
                    .iter()
                    .flat_map(|&intid| {
                        [GIC_SPI, intid.saturating_sub(SPI_BASE), IRQ_TYPE_LEVEL_HIGH]
                    })
                    .collect();
                w.prop_cells("interrupts", &cells)
            }
            Self::Plic(phandle) => {
                w.prop_u32("interrupt-parent", phandle)?;
                w.prop_cells("interrupts", irqs)
            }
        }
    }
}

/// Phandle of the cpu-intc of hart `i` (1-based, in hart order).
fn riscv_intc_phandle(hart: usize) -> Result<u32, DtbError> {
    u32::try_from(hart + 1).map_err(|_| DtbError::Internal("phandle"))
}

/// Phandle of the PLIC: the one after the last hart's.
fn riscv_plic_phandle(cpus: usize) -> Result<u32, DtbError> {
    riscv_intc_phandle(cpus)
}

/// The writer plus the names already used under the root.
struct Tree {
    w: FdtWriter,
    root_children: BTreeSet<String>,
}

impl Tree {
    /// Opens a node directly under the root, refusing a name used twice.
    fn begin_root_child(&mut self, name: String) -> Result<(), DtbError> {
        self.w.begin_node(&name)?;
        if !self.root_children.insert(name.clone()) {
            return Err(DtbError::DuplicateNode { name });
        }
        Ok(())
    }

    fn chosen(&mut self, desc: &GuestDtb<'_>) -> Result<(), DtbError> {
        self.begin_root_child("chosen".into())?;
        if let Some(args) = desc.bootargs {
            self.w.prop_str("bootargs", args)?;
        }
        if let Some(u) = desc.uarts.first() {
            self.w.prop_str("stdout-path", &uart_path(u))?;
        }
        if let Some((start, end)) = desc.initrd {
            self.w.prop_u64("linux,initrd-start", start)?;
            self.w.prop_u64("linux,initrd-end", end)?;
        }
        self.w.end_node()
    }

    fn aliases(&mut self, uarts: &[Uart]) -> Result<(), DtbError> {
        if uarts.is_empty() {
            return Ok(());
        }
        self.begin_root_child("aliases".into())?;
        for (i, u) in uarts.iter().enumerate() {
            self.w.prop_str(&format!("serial{i}"), &uart_path(u))?;
        }
        self.w.end_node()
    }

    fn memory(&mut self, memory: &[(u64, u64)]) -> Result<(), DtbError> {
        for &(base, size) in memory {
            self.begin_root_child(format!("memory@{base:x}"))?;
            self.w.prop_str("device_type", "memory")?;
            self.w.prop_cells("reg", &reg_cells(&[(base, size)]))?;
            self.w.end_node()?;
        }
        Ok(())
    }

    fn arm_cpus(&mut self, cpus: usize, psci: bool) -> Result<(), DtbError> {
        self.begin_root_child("cpus".into())?;
        self.w.prop_u32("#address-cells", 1)?;
        self.w.prop_u32("#size-cells", 0)?;
        for i in 0..cpus {
            self.w.begin_node(&format!("cpu@{i:x}"))?;
            self.w.prop_str("device_type", "cpu")?;
            self.w.prop_str("compatible", "arm,armv8")?;
            let mpidr_aff0 = u32::try_from(i).map_err(|_| DtbError::Internal("cpu reg"))?;
            self.w.prop_u32("reg", mpidr_aff0)?;
            if psci {
                self.w.prop_str("enable-method", "psci")?;
            }
            self.w.end_node()?;
        }
        self.w.end_node()
    }

    fn arm_psci(&mut self, method: PsciMethod) -> Result<(), DtbError> {
        self.begin_root_child("psci".into())?;
        self.w
            .prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2"])?;
        let method = match method {
            PsciMethod::Hvc => "hvc",
            PsciMethod::Smc => "smc",
        };
        self.w.prop_str("method", method)?;
        self.w.end_node()
    }

    fn arm_gic(&mut self, gic: Gic) -> Result<(), DtbError> {
        let gicd = match gic {
            Gic::V2 { gicd, .. } | Gic::V3 { gicd, .. } => gicd,
        };
        self.begin_root_child(format!("interrupt-controller@{gicd:x}"))?;
        match gic {
            Gic::V2 { gicd, gicc } => {
                self.w.prop_str("compatible", "arm,cortex-a15-gic")?;
                self.w.prop_cells(
                    "reg",
                    &reg_cells(&[(gicd, GICV2_DIST_SIZE), (gicc, GICV2_CPU_SIZE)]),
                )?;
            }
            Gic::V3 {
                gicd,
                gicr,
                gicr_size,
            } => {
                self.w.prop_str("compatible", "arm,gic-v3")?;
                self.w.prop_cells(
                    "reg",
                    &reg_cells(&[(gicd, GICV3_DIST_SIZE), (gicr, gicr_size)]),
                )?;
                self.w.prop_u32("#redistributor-regions", 1)?;
            }
        }
        self.w.prop_u32("#interrupt-cells", 3)?;
        self.w.prop_u32("#address-cells", 0)?;
        self.w.prop_empty("interrupt-controller")?;
        self.w.prop_u32("phandle", ARM_GIC_PHANDLE)?;
        self.w.end_node()
    }

    fn arm_timer(&mut self, gic: Gic, ppis: ArmTimerPpis, cpus: usize) -> Result<(), DtbError> {
        // GICv2 PPI specifiers carry the mask of CPUs the interrupt is wired to in bits
        // 15:8; the GICv3 binding has no such field.
        let flags = match gic {
            Gic::V2 { .. } => {
                let mask = (1u32 << cpus.min(GICV2_MAX_CPUS)) - 1;
                IRQ_TYPE_LEVEL_HIGH | (mask << 8)
            }
            Gic::V3 { .. } => IRQ_TYPE_LEVEL_HIGH,
        };
        self.begin_root_child("timer".into())?;
        self.w.prop_str("compatible", "arm,armv8-timer")?;
        let mut cells = Vec::with_capacity(12);
        for ppi in [ppis.secure_phys, ppis.nonsecure_phys, ppis.virt, ppis.hyp] {
            cells.extend_from_slice(&[GIC_PPI, ppi, flags]);
        }
        self.w.prop_cells("interrupts", &cells)?;
        self.w.prop_empty("always-on")?;
        self.w.end_node()
    }

    /// The fixed clock PL011 UARTs point at (both as `uartclk` and `apb_pclk`).
    fn apb_clock(&mut self, phandle: u32) -> Result<(), DtbError> {
        self.begin_root_child("apb-pclk".into())?;
        self.w.prop_str("compatible", "fixed-clock")?;
        self.w.prop_u32("#clock-cells", 0)?;
        self.w.prop_u32("clock-frequency", PL011_CLOCK_HZ)?;
        self.w.prop_str("clock-output-names", "clk24mhz")?;
        self.w.prop_u32("phandle", phandle)?;
        self.w.end_node()
    }

    fn riscv_cpus(
        &mut self,
        cpus: usize,
        isa: &str,
        timebase_hz: u32,
        mmu: &str,
    ) -> Result<(), DtbError> {
        self.begin_root_child("cpus".into())?;
        self.w.prop_u32("#address-cells", 1)?;
        self.w.prop_u32("#size-cells", 0)?;
        self.w.prop_u32("timebase-frequency", timebase_hz)?;
        for hart in 0..cpus {
            self.w.begin_node(&format!("cpu@{hart:x}"))?;
            self.w.prop_str("device_type", "cpu")?;
            let hart_id = u32::try_from(hart).map_err(|_| DtbError::Internal("hart id"))?;
            self.w.prop_u32("reg", hart_id)?;
            self.w.prop_str("compatible", "riscv")?;
            self.w.prop_str("riscv,isa", isa)?;
            self.w.prop_str("mmu-type", mmu)?;
            self.w.prop_str("status", "okay")?;
            self.w.begin_node("interrupt-controller")?;
            self.w.prop_u32("#interrupt-cells", 1)?;
            self.w.prop_u32("#address-cells", 0)?;
            self.w.prop_empty("interrupt-controller")?;
            self.w.prop_str("compatible", "riscv,cpu-intc")?;
            self.w.prop_u32("phandle", riscv_intc_phandle(hart)?)?;
            self.w.end_node()?;
            self.w.end_node()?;
        }
        self.w.end_node()
    }

    fn riscv_plic(&mut self, plic: Plic, cpus: usize, phandle: u32) -> Result<(), DtbError> {
        self.begin_root_child(format!("interrupt-controller@{:x}", plic.base))?;
        self.w
            .prop_strs("compatible", &["sifive,plic-1.0.0", "riscv,plic0"])?;
        self.w
            .prop_cells("reg", &reg_cells(&[(plic.base, plic.size)]))?;
        self.w.prop_u32("#interrupt-cells", 1)?;
        self.w.prop_u32("#address-cells", 0)?;
        self.w.prop_empty("interrupt-controller")?;
        self.w.prop_u32("riscv,ndev", plic.ndev)?;
        // Context c = hart c's S-mode external interrupt, in hart order.
        let mut ext = Vec::with_capacity(cpus * 2);
        for hart in 0..cpus {
            ext.extend_from_slice(&[riscv_intc_phandle(hart)?, RISCV_IRQ_S_EXT]);
        }
        self.w.prop_cells("interrupts-extended", &ext)?;
        self.w.prop_u32("phandle", phandle)?;
        self.w.end_node()
    }

    /// A UART; `clock` is the phandle of the PL011 clock node (written when any PL011 is).
    fn uart(&mut self, u: &Uart, irqs: IrqStyle, clock: Option<u32>) -> Result<(), DtbError> {
        self.begin_root_child(uart_node_name(u))?;
        match u.kind {
            UartKind::Pl011 => self
                .w
                .prop_strs("compatible", &["arm,pl011", "arm,primecell"])?,
            UartKind::Ns16550 => self.w.prop_str("compatible", "ns16550a")?,
        }
        self.w.prop_cells("reg", &reg_cells(&[(u.base, u.size)]))?;
        if let Some(irq) = u.irq {
            irqs.write(&mut self.w, &[irq])?;
        }
        match (u.kind, clock) {
            (UartKind::Pl011, Some(clk)) => {
                // Linux's AMBA bus enables "apb_pclk" before it probes the device; the PL011
                // driver takes its baud-rate clock from the first entry.
                self.w.prop_cells("clocks", &[clk, clk])?;
                self.w.prop_strs("clock-names", &["uartclk", "apb_pclk"])?;
            }
            (UartKind::Pl011, None) => return Err(DtbError::Internal("PL011 without clock")),
            (UartKind::Ns16550, _) => self.w.prop_u32("clock-frequency", NS16550_CLOCK_HZ)?,
        }
        self.w.end_node()
    }

    /// An extra device; an AMBA one (`arm,primecell`) also gets the APB clock as
    /// `apb_pclk`, which Linux's AMBA bus enables before it probes the device.
    fn extra(
        &mut self,
        d: &ExtraDevice<'_>,
        irqs: IrqStyle,
        clock: Option<u32>,
    ) -> Result<(), DtbError> {
        let name = match d.reg.first() {
            Some((base, _)) => format!("{}@{base:x}", d.name),
            None => String::from(d.name),
        };
        self.begin_root_child(name)?;
        self.w.prop_strs("compatible", d.compatible)?;
        if !d.reg.is_empty() {
            self.w.prop_cells("reg", &reg_cells(d.reg))?;
        }
        if !d.interrupts.is_empty() {
            irqs.write(&mut self.w, d.interrupts)?;
        }
        if let Some(clock) = clock.filter(|_| is_primecell(d)) {
            self.w.prop_u32("clocks", clock)?;
            self.w.prop_strs("clock-names", &["apb_pclk"])?;
        }
        for p in d.props {
            match p.value {
                PropValue::Empty => self.w.prop_empty(p.name)?,
                PropValue::U32(v) => self.w.prop_u32(p.name, v)?,
                PropValue::U64(v) => self.w.prop_u64(p.name, v)?,
                PropValue::Cells(c) => self.w.prop_cells(p.name, c)?,
                PropValue::Str(s) => self.w.prop_str(p.name, s)?,
                PropValue::Strs(s) => self.w.prop_strs(p.name, s)?,
                PropValue::Bytes(b) => self.w.prop(p.name, b)?,
            }
        }
        self.w.end_node()
    }
}

/// Whether `d` sits on the AMBA bus (`arm,primecell` among its compatible strings).
fn is_primecell(d: &ExtraDevice<'_>) -> bool {
    d.compatible.contains(&"arm,primecell")
}

/// `serial@<base>`.
fn uart_node_name(u: &Uart) -> String {
    format!("serial@{:x}", u.base)
}

/// Full path of a UART node.
fn uart_path(u: &Uart) -> String {
    format!("/{}", uart_node_name(u))
}

/// `reg` cells for `#address-cells = 2`, `#size-cells = 2`.
fn reg_cells(ranges: &[(u64, u64)]) -> Vec<u32> {
    let mut cells = Vec::with_capacity(ranges.len() * 4);
    for &(base, size) in ranges {
        cells.extend_from_slice(&[
            (base >> 32) as u32,
            base as u32,
            (size >> 32) as u32,
            size as u32,
        ]);
    }
    cells
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

/// Properties an [`ExtraDevice`] may not set itself.
const RESERVED_PROPS: &[&str] = &[
    "compatible",
    "reg",
    "interrupts",
    "interrupt-parent",
    "phandle",
    "linux,phandle",
];

/// Checks everything [`build`] relies on; the first problem wins.
fn validate(desc: &GuestDtb<'_>) -> Result<(), DtbError> {
    if desc.cpus == 0 {
        return Err(DtbError::NoCpus);
    }
    if desc.cpus > MAX_CPUS {
        return Err(DtbError::TooManyCpus {
            cpus: desc.cpus,
            max: MAX_CPUS,
        });
    }
    validate_memory(desc.memory)?;
    for (i, &(base, size)) in desc.reserved.iter().enumerate() {
        last_address(base, size).ok_or(DtbError::BadRegion {
            what: RegionRef::Reserved(i),
            base,
            size,
        })?;
    }
    if let Some(args) = desc.bootargs {
        if args.as_bytes().contains(&0) {
            return Err(DtbError::InvalidString { what: "bootargs" });
        }
    }
    if let Some((start, end)) = desc.initrd {
        if start > end {
            return Err(DtbError::InitrdReversed { start, end });
        }
    }
    for (i, u) in desc.uarts.iter().enumerate() {
        last_address(u.base, u.size).ok_or(DtbError::BadRegion {
            what: RegionRef::Uart(i),
            base: u.base,
            size: u.size,
        })?;
    }
    for (i, d) in desc.extra.iter().enumerate() {
        validate_extra(i, d)?;
    }
    let irqs = desc
        .uarts
        .iter()
        .enumerate()
        .filter_map(|(i, u)| Some((DeviceRef::Uart(i), u.irq?)))
        .chain(desc.extra.iter().enumerate().flat_map(|(i, d)| {
            d.interrupts
                .iter()
                .map(move |&irq| (DeviceRef::Extra(i), irq))
        }));
    match desc.arch {
        ArchDesc::Arm {
            gic,
            timer_ppis,
            psci,
        } => {
            validate_arm(desc.cpus, gic, timer_ppis, psci)?;
            for (device, irq) in irqs {
                if !(SPI_BASE..=SPI_LAST).contains(&irq) {
                    return Err(DtbError::InvalidIrq { device, irq });
                }
            }
        }
        ArchDesc::Riscv { isa, mmu, plic, .. } => {
            validate_isa(isa)?;
            if mmu.is_empty() || mmu.as_bytes().contains(&0) {
                return Err(DtbError::InvalidString { what: "riscv mmu" });
            }
            if let Some(p) = plic {
                if p.ndev == 0 || p.ndev > PLIC_MAX_SOURCES {
                    return Err(DtbError::InvalidPlicSources { ndev: p.ndev });
                }
                last_address(p.base, p.size).ok_or(DtbError::BadRegion {
                    what: RegionRef::Plic,
                    base: p.base,
                    size: p.size,
                })?;
            }
            for (device, irq) in irqs {
                let Some(p) = plic else {
                    return Err(DtbError::NoInterruptController { device });
                };
                if irq == 0 || irq > p.ndev {
                    return Err(DtbError::InvalidIrq { device, irq });
                }
            }
        }
    }
    Ok(())
}

/// The last address of a non-empty range, or `None` if it is empty or passes 2^64.
fn last_address(base: u64, size: u64) -> Option<u64> {
    base.checked_add(size.checked_sub(1)?)
}

fn validate_memory(memory: &[(u64, u64)]) -> Result<(), DtbError> {
    if memory.is_empty() {
        return Err(DtbError::NoMemory);
    }
    let mut spans = Vec::with_capacity(memory.len());
    for (i, &(base, size)) in memory.iter().enumerate() {
        let last = last_address(base, size).ok_or(DtbError::BadRegion {
            what: RegionRef::Memory(i),
            base,
            size,
        })?;
        spans.push((base, last, i));
    }
    spans.sort_unstable();
    for pair in spans.windows(2) {
        let [(_, last, a), (base, _, b)] = pair else {
            continue;
        };
        if base <= last {
            return Err(DtbError::MemoryOverlap {
                first: *a.min(b),
                second: *a.max(b),
            });
        }
    }
    Ok(())
}

fn validate_arm(
    cpus: usize,
    gic: Gic,
    ppis: ArmTimerPpis,
    psci: Option<PsciMethod>,
) -> Result<(), DtbError> {
    for ppi in [ppis.secure_phys, ppis.nonsecure_phys, ppis.virt, ppis.hyp] {
        if ppi > 15 {
            return Err(DtbError::InvalidTimerPpi { ppi });
        }
    }
    match gic {
        Gic::V2 { .. } if cpus > GICV2_MAX_CPUS => {
            return Err(DtbError::TooManyCpus {
                cpus,
                max: GICV2_MAX_CPUS,
            });
        }
        Gic::V2 { .. } => {}
        Gic::V3 { gicr_size, .. } => {
            // cpus <= MAX_CPUS, so this cannot overflow.
            let needed = GICV3_REDIST_PER_CPU.saturating_mul(cpus as u64);
            if gicr_size < needed {
                return Err(DtbError::GicRedistributorTooSmall {
                    size: gicr_size,
                    needed,
                });
            }
        }
    }
    if cpus > 1 && psci.is_none() {
        return Err(DtbError::SmpWithoutPsci { cpus });
    }
    Ok(())
}

/// Linux takes a hart only if its ISA string starts with `rv64ima` (`rv32ima` on 32-bit).
fn validate_isa(isa: &str) -> Result<(), DtbError> {
    let lower = isa
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !lower || !(isa.starts_with("rv64ima") || isa.starts_with("rv32ima")) {
        return Err(DtbError::InvalidIsa);
    }
    Ok(())
}

fn validate_extra(index: usize, d: &ExtraDevice<'_>) -> Result<(), DtbError> {
    if !is_node_name(d.name) {
        return Err(DtbError::InvalidName {
            name: String::from(d.name),
        });
    }
    if d.compatible.is_empty() || d.compatible.iter().any(|c| !is_string_value(c)) {
        return Err(DtbError::InvalidString { what: "compatible" });
    }
    let mut seen = BTreeSet::new();
    for p in d.props {
        if !is_property_name(p.name) {
            return Err(DtbError::InvalidName {
                name: String::from(p.name),
            });
        }
        let clock_prop = is_primecell(d) && matches!(p.name, "clocks" | "clock-names");
        if RESERVED_PROPS.contains(&p.name) || clock_prop || !seen.insert(p.name) {
            return Err(DtbError::DuplicateProperty {
                device: index,
                name: String::from(p.name),
            });
        }
        let strings_ok = match p.value {
            PropValue::Str(s) => !s.as_bytes().contains(&0),
            PropValue::Strs(list) => list.iter().all(|s| !s.as_bytes().contains(&0)),
            _ => true,
        };
        if !strings_ok {
            return Err(DtbError::InvalidString {
                what: "property value",
            });
        }
    }
    Ok(())
}

/// Not empty, no NUL.
fn is_string_value(s: &str) -> bool {
    !s.is_empty() && !s.as_bytes().contains(&0)
}

/// Devicetree Specification 2.2.1: 1 to 31 characters out of `0-9 a-z A-Z , . _ + -`,
/// starting with a letter (the unit address is added by the crate).
fn is_node_name(name: &str) -> bool {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b",._+-".contains(&b);
    (1..=31).contains(&name.len())
        && name.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && name.bytes().all(ok_char)
}

/// Devicetree Specification 2.2.4: 1 to 31 characters out of `0-9 a-z A-Z , . _ + ? # -`.
fn is_property_name(name: &str) -> bool {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b",._+?#-".contains(&b);
    (1..=31).contains(&name.len()) && name.bytes().all(ok_char)
}
