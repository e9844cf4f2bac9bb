//! What the hypervisor learns from the firmware device tree.
//!
//! [`PlatformInfo::parse`] reads a flattened device tree (FDT) blob into a small owned summary;
//! nothing in it borrows the blob, so it can live in a static after boot. A blob that is not a
//! valid FDT, or lacks something the hypervisor cannot run without, gives a [`DtbError`].

use crate::memmap::{subtract, MemMapError, MemRange, RangeList};
use crate::MAX_CPUS;
use arrayvec::{ArrayString, ArrayVec};
use fdt::{node::FdtNode, Fdt};

mod check;

/// Why a device tree could not be used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DtbError {
    /// The blob is not a flattened device tree (bad magic, truncated, ...).
    Invalid,
    /// No `memory` node with a usable `reg`.
    NoMemory,
    /// No usable CPU under `/cpus`.
    NoCpus,
    /// More memory regions or reservations than the summary holds.
    TooManyRanges,
}

impl core::fmt::Display for DtbError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DtbError::Invalid => "not a valid flattened device tree",
            DtbError::NoMemory => "no memory node with a `reg` property",
            DtbError::NoCpus => "no enabled cpu node under /cpus",
            DtbError::TooManyRanges => "too many memory ranges or reservations",
        })
    }
}

impl From<MemMapError> for DtbError {
    fn from(_: MemMapError) -> Self {
        DtbError::TooManyRanges
    }
}

/// One CPU (aarch64 PE or riscv hart) as the device tree lists it (x86: as the MADT does).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct CpuInfo {
    /// Hardware id: MPIDR affinity bits on aarch64, hart id on riscv64, local APIC id on
    /// x86_64.
    pub hw_id: usize,
    /// Phandle of the hart-local interrupt controller (riscv64), used to find PLIC contexts.
    pub intc_phandle: Option<u32>,
    /// riscv64: the `riscv,isa` string names the H extension.
    pub isa_h: bool,
    /// riscv64: the `riscv,isa` string names Sstc (`stimecmp` / `vstimecmp`).
    pub isa_sstc: bool,
    /// riscv64: the PLIC context that delivers S-mode external interrupts to this hart.
    pub plic_s_context: Option<usize>,
    /// x86_64: the local APIC runs in x2APIC mode (CPUID has it), else xAPIC. Taken from
    /// the boot CPU's CPUID for every CPU.
    pub x2apic: bool,
    /// x86_64: the APIC timer runs in TSC-deadline mode (CPUID has it), else one-shot.
    /// Taken from the boot CPU's CPUID for every CPU.
    pub tsc_deadline: bool,
}

/// The interrupt controller and where its register frames are.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum IntcInfo {
    /// Arm GICv2: distributor, CPU interface and, when present, the virtualization frames.
    GicV2 {
        /// GICD.
        dist: MemRange,
        /// GICC.
        cpu: MemRange,
        /// GICH (hypervisor control), if the DTB lists it.
        hyp: Option<MemRange>,
        /// GICV (virtual CPU interface), if the DTB lists it.
        vcpu: Option<MemRange>,
    },
    /// Arm GICv3: distributor and the first redistributor region.
    GicV3 {
        /// GICD.
        dist: MemRange,
        /// GICR region (one 128 KiB frame pair per CPU).
        redist: MemRange,
    },
    /// RISC-V PLIC.
    Plic {
        /// Register block.
        regs: MemRange,
        /// Number of interrupt sources (`riscv,ndev`).
        ndev: u32,
    },
    /// x86 local APICs and the (first) I/O APIC, from ACPI's MADT.
    Apic {
        /// The local APICs' xAPIC register window (unused in x2APIC mode).
        local: MemRange,
        /// The I/O APIC's register window.
        ioapic: MemRange,
        /// The I/O APIC's first global system interrupt (GSI).
        gsi_base: u32,
        /// Its number of inputs (redirection entries).
        lines: u32,
    },
}

impl IntcInfo {
    /// Human-readable name with version, e.g. `GICv3`.
    pub fn name(&self) -> &'static str {
        match self {
            IntcInfo::GicV2 { .. } => "GICv2",
            IntcInfo::GicV3 { .. } => "GICv3",
            IntcInfo::Plic { .. } => "PLIC",
            IntcInfo::Apic { .. } => "APIC",
        }
    }
}

/// The kind of console UART.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UartKind {
    /// Arm PL011.
    Pl011,
    /// 16550-compatible.
    Ns16550,
}

/// The console UART.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UartInfo {
    /// Register block.
    pub regs: MemRange,
    /// Model.
    pub kind: UartKind,
}

/// How PSCI calls reach the firmware (aarch64).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PsciMethod {
    /// `smc #0`.
    Smc,
    /// `hvc #0`.
    Hvc,
}

/// Arm generic timer interrupts, as GIC interrupt ids (PPIs, 16..32).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ArmTimerIrqs {
    /// Secure physical timer.
    pub secure_phys: u32,
    /// Non-secure EL1 physical timer.
    pub phys: u32,
    /// EL1 virtual timer.
    pub virt: u32,
    /// EL2 (hypervisor) physical timer.
    pub hyp: u32,
}

/// Everything the hypervisor takes from the firmware device tree.
///
/// On x86_64 there is no device tree: `axhal` fills the same summary from the multiboot
/// information ([`crate::multiboot`]: memory, boot arguments) and ACPI (CPUs, APICs, the
/// model from the tables' OEM ids); `dtb` is then empty, and `uart`, `timer_irqs`, `psci` and
/// `timebase_hz` are `None` (the console is a port, not a memory range).
#[derive(Clone, Debug)]
pub struct PlatformInfo {
    /// Where the blob itself lies (reserved from allocation; empty on x86_64).
    pub dtb: MemRange,
    /// `/model`, truncated to 64 bytes.
    pub model: ArrayString<64>,
    /// RAM as listed by `memory` nodes.
    pub memory: RangeList,
    /// `/memreserve/` entries and `/reserved-memory` children with a `reg`.
    pub reserved: RangeList,
    /// Enabled CPUs, in device-tree order, at most [`MAX_CPUS`].
    pub cpus: ArrayVec<CpuInfo, MAX_CPUS>,
    /// Enabled CPUs beyond [`MAX_CPUS`] that stay offline.
    pub cpus_ignored: usize,
    /// The interrupt controller, if a known one is present.
    pub intc: Option<IntcInfo>,
    /// The console UART (`/chosen/stdout-path`, else the first known UART).
    pub uart: Option<UartInfo>,
    /// Arm generic timer interrupts.
    pub timer_irqs: Option<ArmTimerIrqs>,
    /// PSCI conduit.
    pub psci: Option<PsciMethod>,
    /// riscv64 `timebase-frequency` in Hz.
    pub timebase_hz: Option<u64>,
    /// `/chosen/bootargs` (QEMU's `-append`), truncated to 256 bytes.
    pub bootargs: ArrayString<256>,
    /// The 16-bit I/O registers through which the firmware sleeps or powers off the machine:
    /// on x86_64 the FADT's PM1a and PM1b control blocks (no VM may be given them); empty
    /// elsewhere.
    pub power_ports: ArrayVec<u16, 2>,
    /// The boot module the loader placed in RAM (QEMU's `-initrd`): `/chosen`'s
    /// `linux,initrd-start`/`linux,initrd-end`, or on x86_64 the first multiboot module. It is
    /// kept out of the allocator's memory (see [`PlatformInfo::free_memory`]); the hypervisor
    /// uses it as a RAM disk.
    pub initrd: Option<MemRange>,
    /// The register windows of the enabled `virtio,mmio` transports, in device-tree order
    /// (at most 32; empty on x86_64).
    pub virtio_mmio: ArrayVec<MemRange, 32>,
}

const GICV2_COMPAT: &[&str] = &["arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a9-gic"];
const GICV3_COMPAT: &[&str] = &["arm,gic-v3"];
const PLIC_COMPAT: &[&str] = &["riscv,plic0", "sifive,plic-1.0.0"];
const PL011_COMPAT: &[&str] = &["arm,pl011"];
const NS16550_COMPAT: &[&str] = &["ns16550a", "ns16550"];

fn be_cells(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

fn prop_u32(node: &FdtNode, name: &str) -> Option<u32> {
    be_cells(node.property(name)?.value).next()
}

fn prop_str<'a>(node: &FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    let v = node.property(name)?.value;
    let v = v.split(|&b| b == 0).next()?;
    core::str::from_utf8(v).ok()
}

/// As much of `s` as fits in `N` bytes, cut at a character boundary.
fn truncated<const N: usize>(s: &str) -> ArrayString<N> {
    let mut out = ArrayString::new();
    for c in s.chars() {
        if out.try_push(c).is_err() {
            break;
        }
    }
    out
}

fn regs(node: &FdtNode) -> RangeList {
    let mut out = RangeList::new();
    if let Some(it) = node.reg() {
        for r in it {
            let r = MemRange::new(r.starting_address as usize, r.size.unwrap_or(0));
            if out.try_push(r).is_err() {
                break;
            }
        }
    }
    out
}

fn first_reg(node: &FdtNode) -> Option<MemRange> {
    regs(node).first().copied()
}

fn enabled(node: &FdtNode) -> bool {
    matches!(prop_str(node, "status"), None | Some("okay") | Some("ok"))
}

fn compatible_with(node: &FdtNode, list: &[&str]) -> bool {
    node.compatible()
        .is_some_and(|c| c.all().any(|s| list.contains(&s)))
}

/// Whether a `riscv,isa` string names extension `ext`: a single letter after `rv64`/`rv32`
/// in the base part, or one of the `_`-separated multi-letter extensions (case-insensitive).
fn isa_has(isa: &str, ext: &str) -> bool {
    let mut parts = isa.split('_');
    let base = parts.next().unwrap_or("");
    if let [letter] = ext.as_bytes() {
        let letters = base
            .get(4..)
            .filter(|_| base.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("rv")));
        return letters.is_some_and(|l| l.bytes().any(|b| b.eq_ignore_ascii_case(letter)));
    }
    parts.any(|p| p.eq_ignore_ascii_case(ext))
}

/// A device node of a device tree, as needed to describe the device to a guest it is passed
/// through to (borrowed from the blob).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceNode<'a> {
    /// The node name without its unit address (`rtc` for `rtc@101000`).
    pub name: &'a str,
    /// The raw `compatible` string list (NUL-separated, NUL-terminated).
    pub compatible: &'a [u8],
    /// Its first `reg` entry: (base, size).
    pub reg: (u64, u64),
}

impl<'a> DeviceNode<'a> {
    /// The `compatible` strings, most specific first (empty ones and non-UTF-8 ones skipped).
    pub fn compatible(&self) -> impl Iterator<Item = &'a str> {
        self.compatible
            .split(|&b| b == 0)
            .filter_map(|s| core::str::from_utf8(s).ok())
            .filter(|s| !s.is_empty())
    }
}

/// The enabled node of the device tree `blob` with a `compatible` property whose first `reg`
/// entry lies inside `[base, base + size)`; `None` if there is none (or the blob is not a
/// device tree).
pub fn device_within(blob: &[u8], base: u64, size: u64) -> Option<DeviceNode<'_>> {
    let fdt = Fdt::new(check::check(blob)?).ok()?;
    let end = base.checked_add(size)?;
    let found = fdt.all_nodes().find_map(|node| {
        let compatible = node.property("compatible")?.value;
        let r = first_reg(&node)?;
        let (start, len) = (r.start as u64, r.size as u64);
        let inside = start >= base && start.checked_add(len).is_some_and(|e| e <= end);
        if !inside || !enabled(&node) {
            return None;
        }
        let name = node.name.split('@').next().unwrap_or(node.name);
        Some(DeviceNode {
            name,
            compatible,
            reg: (start, len),
        })
    });
    found
}

impl PlatformInfo {
    /// Parses the blob at the start of `blob`; `blob_addr` is its physical address (used
    /// only to reserve it).
    pub fn parse(blob: &[u8], blob_addr: usize) -> Result<Self, DtbError> {
        // The fdt crate panics on malformed blobs: it only gets ones that passed the check.
        let checked = check::check(blob).ok_or(DtbError::Invalid)?;
        let fdt = Fdt::new(checked).map_err(|_| DtbError::Invalid)?;
        let root = fdt.find_node("/").ok_or(DtbError::Invalid)?;
        let model = truncated(prop_str(&root, "model").unwrap_or("unknown"));

        let mut memory = RangeList::new();
        for node in fdt.all_nodes() {
            let is_mem = prop_str(&node, "device_type") == Some("memory");
            if is_mem && enabled(&node) {
                for r in regs(&node).into_iter().filter(|r| !r.is_empty()) {
                    memory.try_push(r).map_err(|_| DtbError::TooManyRanges)?;
                }
            }
        }
        if memory.is_empty() {
            return Err(DtbError::NoMemory);
        }
        memory.sort_unstable_by_key(|r| r.start);

        let mut reserved = RangeList::new();
        for r in fdt.memory_reservations() {
            let r = MemRange::new(r.address() as usize, r.size());
            reserved.try_push(r).map_err(|_| DtbError::TooManyRanges)?;
        }
        if let Some(rm) = fdt.find_node("/reserved-memory") {
            for child in rm.children() {
                for r in regs(&child) {
                    reserved.try_push(r).map_err(|_| DtbError::TooManyRanges)?;
                }
            }
        }

        let mut cpus = ArrayVec::new();
        let mut cpus_ignored = 0;
        let cpu_nodes = fdt
            .find_node("/cpus")
            .into_iter()
            .flat_map(|n| n.children());
        for node in cpu_nodes {
            if prop_str(&node, "device_type") != Some("cpu") || !enabled(&node) {
                continue;
            }
            let Some(hw_id) = node.reg().and_then(|mut r| r.next()) else {
                continue;
            };
            let isa = prop_str(&node, "riscv,isa").unwrap_or("");
            let intc_phandle = node
                .children()
                .find(|c| c.property("interrupt-controller").is_some())
                .and_then(|c| prop_u32(&c, "phandle"));
            let cpu = CpuInfo {
                hw_id: hw_id.starting_address as usize,
                intc_phandle,
                isa_h: isa_has(isa, "h"),
                isa_sstc: isa_has(isa, "sstc"),
                ..CpuInfo::default()
            };
            if cpus.try_push(cpu).is_err() {
                cpus_ignored += 1;
            }
        }
        if cpus.is_empty() {
            return Err(DtbError::NoCpus);
        }

        let mut intc = None;
        let mut uart = None;
        let mut timer_irqs = None;
        let mut psci = None;
        for node in fdt.all_nodes().filter(|n| enabled(n)) {
            if intc.is_none() && compatible_with(&node, GICV2_COMPAT) {
                let r = regs(&node);
                if let (Some(&dist), Some(&cpu)) = (r.first(), r.get(1)) {
                    let hyp = r.get(2).copied();
                    let vcpu = r.get(3).copied();
                    intc = Some(IntcInfo::GicV2 {
                        dist,
                        cpu,
                        hyp,
                        vcpu,
                    });
                }
            } else if intc.is_none() && compatible_with(&node, GICV3_COMPAT) {
                let r = regs(&node);
                if let (Some(&dist), Some(&redist)) = (r.first(), r.get(1)) {
                    intc = Some(IntcInfo::GicV3 { dist, redist });
                }
            } else if intc.is_none() && compatible_with(&node, PLIC_COMPAT) {
                if let Some(regs) = first_reg(&node) {
                    let cells: ArrayVec<u32, 128> = node
                        .property("interrupts-extended")
                        .map(|p| be_cells(p.value).take(128).collect())
                        .unwrap_or_default();
                    // Context i is wired to the pair (hart intc phandle, cause); cause 9 is the
                    // S-mode external interrupt.
                    for (ctx, pair) in cells.chunks_exact(2).enumerate() {
                        let hart = cpus
                            .iter_mut()
                            .find(|c: &&mut CpuInfo| c.intc_phandle == Some(pair[0]));
                        if let (Some(cpu), 9) = (hart, pair[1]) {
                            cpu.plic_s_context = Some(ctx);
                        }
                    }
                    let ndev = prop_u32(&node, "riscv,ndev").unwrap_or(0);
                    intc = Some(IntcInfo::Plic { regs, ndev });
                }
            } else if compatible_with(&node, &["arm,armv8-timer", "arm,armv7-timer"]) {
                let cells: ArrayVec<u32, 12> = node
                    .property("interrupts")
                    .map(|p| be_cells(p.value).take(12).collect())
                    .unwrap_or_default();
                // Each interrupt is (type, number, flags); PPI n (0..16) is GIC interrupt id
                // 16 + n. A larger number is no PPI: the timer is not described.
                let ppis_valid = (0..4).all(|i| cells.get(i * 3 + 1).is_some_and(|&n| n < 16));
                if cells.len() == 12 && ppis_valid {
                    let ppi = |i: usize| 16 + cells[i * 3 + 1];
                    timer_irqs = Some(ArmTimerIrqs {
                        secure_phys: ppi(0),
                        phys: ppi(1),
                        virt: ppi(2),
                        hyp: ppi(3),
                    });
                }
            } else if compatible_with(&node, &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]) {
                psci = match prop_str(&node, "method") {
                    Some("smc") => Some(PsciMethod::Smc),
                    Some("hvc") => Some(PsciMethod::Hvc),
                    _ => None,
                };
            }
        }

        let stdout = fdt
            .find_node("/chosen")
            .and_then(|c| prop_str(&c, "stdout-path"))
            .and_then(|p| fdt.find_node(p.split(':').next().unwrap_or(p)));
        let uart_of = |node: &FdtNode| {
            let kind = if compatible_with(node, PL011_COMPAT) {
                UartKind::Pl011
            } else if compatible_with(node, NS16550_COMPAT) {
                UartKind::Ns16550
            } else {
                return None;
            };
            Some(UartInfo {
                regs: first_reg(node)?,
                kind,
            })
        };
        if let Some(node) = stdout {
            uart = uart_of(&node);
        }
        if uart.is_none() {
            uart = fdt
                .all_nodes()
                .filter(|n| enabled(n))
                .find_map(|n| uart_of(&n));
        }

        let timebase_hz = fdt
            .find_node("/cpus")
            .and_then(|c| c.property("timebase-frequency"))
            .and_then(|p| p.as_usize())
            .map(|v| v as u64);

        // The boot module: 32- or 64-bit big-endian cells; an empty or inverted one is none.
        let chosen_u64 = |name: &str| {
            let v = fdt.find_node("/chosen")?.property(name)?.value;
            match v.len() {
                4 => Some(u64::from(u32::from_be_bytes(v.try_into().ok()?))),
                8 => Some(u64::from_be_bytes(v.try_into().ok()?)),
                _ => None,
            }
        };
        let initrd = match (
            chosen_u64("linux,initrd-start"),
            chosen_u64("linux,initrd-end"),
        ) {
            (Some(start), Some(end)) if end > start => usize::try_from(start)
                .ok()
                .zip(usize::try_from(end).ok())
                .map(|(s, e)| MemRange::from_bounds(s, e)),
            _ => None,
        };
        let mut virtio_mmio = ArrayVec::new();
        for node in fdt.all_nodes().filter(|n| enabled(n)) {
            if compatible_with(&node, &["virtio,mmio"]) {
                if let Some(r) = first_reg(&node).filter(|r| !r.is_empty()) {
                    if virtio_mmio.try_push(r).is_err() {
                        break;
                    }
                }
            }
        }

        let bootargs = truncated(
            fdt.find_node("/chosen")
                .and_then(|c| prop_str(&c, "bootargs"))
                .unwrap_or(""),
        );

        Ok(PlatformInfo {
            dtb: MemRange::new(blob_addr, fdt.total_size()),
            model,
            memory,
            reserved,
            cpus,
            cpus_ignored,
            intc,
            uart,
            timer_irqs,
            psci,
            timebase_hz,
            bootargs,
            power_ports: ArrayVec::new(),
            initrd,
            virtio_mmio,
        })
    }

    /// RAM the hypervisor may hand out: memory minus the firmware's reservations, the DTB
    /// blob, the boot module and `also_reserved` (e.g. the hypervisor image), in whole pages.
    pub fn free_memory(&self, also_reserved: &[MemRange]) -> Result<RangeList, DtbError> {
        let mut holes = self.reserved.clone();
        let held = core::iter::once(&self.dtb).chain(self.initrd.as_ref());
        for r in held.chain(also_reserved) {
            holes.try_push(*r).map_err(|_| DtbError::TooManyRanges)?;
        }
        Ok(subtract(&self.memory, &holes)?)
    }

    /// The value of `key=value` among the space-separated boot arguments (`""` for a bare
    /// `key`); the last one wins.
    pub fn bootarg(&self, key: &str) -> Option<&str> {
        self.bootargs
            .split_ascii_whitespace()
            .rev()
            .find_map(|w| match w.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if w == key => Some(""),
                _ => None,
            })
    }

    /// Logical index of the CPU with hardware id `hw_id`.
    pub fn cpu_index(&self, hw_id: usize) -> Option<usize> {
        self.cpus.iter().position(|c| c.hw_id == hw_id)
    }

    /// Total bytes of RAM (`usize::MAX` if the ranges add up to more).
    pub fn memory_size(&self) -> usize {
        self.memory
            .iter()
            .fold(0, |sum, r| sum.saturating_add(r.size))
    }
}

#[cfg(test)]
mod tests;
