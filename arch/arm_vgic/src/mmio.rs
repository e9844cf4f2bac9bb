//! Register decoding for the distributor (GICD, both flavours) and the GICv3
//! redistributors (GICR): offsets and widths in, [`State`] operations out.
//!
//! Access rules (both devices):
//! - an access that runs past the device's end is [`DeviceError::BadOffset`];
//! - an offset that is not a multiple of the access width is [`DeviceError::Misaligned`];
//! - each register accepts the widths listed in the crate docs, anything else is
//!   [`DeviceError::BadWidth`];
//! - reserved and unimplemented offsets read as zero and ignore writes, at any width.

use axdevice_base::{AccessWidth, DeviceError};
use log::trace;

use crate::state::{State, PRIVATE_IRQS, ROUTE_MASK, SGIS};
use crate::GicVersion;

/// Bytes of address space the distributor claims (64 KiB, both flavours).
pub const GICD_SIZE: usize = 0x1_0000;
/// Bytes of address space one GICv3 redistributor claims: the RD_base frame and the
/// SGI_base frame, 64 KiB each.
pub const GICR_FRAME_SIZE: usize = 0x2_0000;
/// Offset of the SGI_base frame inside a redistributor.
pub const GICR_SGI_BASE: usize = 0x1_0000;

/// `GICD_IIDR` / `GICR_IIDR`: ProductID 0x58 ('X'), no implementer code, revision 0.
pub const IIDR: u32 = 0x5800_0000;

// GICD_CTLR bits.
const CTLR_ENABLE_MASK: u32 = 0b11;
/// GICv3, single Security state: ARE (affinity routing, always on).
const CTLR_ARE: u32 = 1 << 4;
/// GICv3: DS (only one Security state).
const CTLR_DS: u32 = 1 << 6;

// GICD_TYPER fields.
const TYPER_CPUNUMBER_SHIFT: u32 = 5;
const TYPER_IDBITS_SHIFT: u32 = 19;
/// INTIDs have 10 bits (0..=1023).
const TYPER_IDBITS: u32 = 9;
/// Range Selector Support: ICC_SGI1R_EL1.RS selects Aff0 ranges of 16.
const TYPER_RSS: u32 = 1 << 26;

// GICR_TYPER fields.
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_TYPER_PROC_SHIFT: u32 = 8;
const GICR_TYPER_AFF_SHIFT: u32 = 32;

// GICR_WAKER bits.
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// Which one-bit-per-interrupt register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

/// What an offset decodes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    /// GICD_CTLR.
    DistCtlr,
    /// GICD_TYPER.
    DistTyper,
    /// GICD_IIDR / GICR_IIDR.
    Iidr,
    /// An identification register with a fixed value.
    Id(u32),
    /// A one-bit-per-interrupt register covering 32 INTIDs from the given one.
    Bits(BitReg, u32),
    /// IPRIORITYR; the INTID of the byte at the offset.
    Prio(u32),
    /// GICv2 ITARGETSR; the INTID of the byte at the offset.
    Targets(u32),
    /// ICFGR covering 16 INTIDs from the given one.
    Cfg(u32),
    /// GICv2 GICD_SGIR.
    Sgir,
    /// GICv2 SPENDSGIR (`set`) / CPENDSGIR; the SGI of the byte at the offset.
    SgiPend { set: bool, sgi: u32 },
    /// GICv3 GICD_IROUTER of INTID `intid`; `high` for the upper word.
    Router { intid: u32, high: bool },
    /// GICR_CTLR.
    RdCtlr,
    /// GICR_TYPER; `high` for the upper word.
    RdTyper { high: bool },
    /// GICR_WAKER.
    Waker,
    /// GICR_PROPBASER / GICR_PENDBASER (no LPIs: RAZ/WI).
    Lpi,
    /// Reserved or not implemented: RAZ/WI at any width.
    Reserved,
}

/// The widths a register takes.
fn widths(reg: Reg) -> &'static [AccessWidth] {
    use AccessWidth::*;
    match reg {
        Reg::Prio(_) | Reg::Targets(_) | Reg::SgiPend { .. } => &[Byte, Word],
        Reg::Router { .. } | Reg::RdTyper { .. } | Reg::Lpi => &[Word, Dword],
        Reg::Reserved => &AccessWidth::ALL,
        _ => &[Word],
    }
}

/// Bounds and alignment, common to every access.
fn check_access(off: usize, w: AccessWidth, size: usize) -> Result<(), DeviceError> {
    match off.checked_add(w.size()) {
        Some(end) if end <= size => {}
        _ => return Err(DeviceError::BadOffset),
    }
    if !off.is_multiple_of(w.size()) {
        return Err(DeviceError::Misaligned);
    }
    Ok(())
}

/// The identification registers, `rel` bytes from the start of their block (PIDR4 at 0).
fn id_reg(version: GicVersion, rel: usize) -> Reg {
    let arch_rev = match version {
        GicVersion::V2 => 2,
        GicVersion::V3 => 3,
    };
    Reg::Id(match rel {
        0x18 => arch_rev << 4, // PIDR2.ArchRev [7:4]
        0x20 => 0x0d,          // CIDR0..3: component identification
        0x24 => 0xf0,
        0x28 => 0x05,
        0x2c => 0xb1,
        _ => 0,
    })
}

/// A one-bit-per-interrupt register in 0x080..0x400 of both GICD and the SGI_base frame.
fn bit_reg(off: usize) -> Option<(BitReg, usize)> {
    Some(match off {
        0x080..=0x0ff => (BitReg::Group, off - 0x080),
        0x100..=0x17f => (BitReg::SetEnable, off - 0x100),
        0x180..=0x1ff => (BitReg::ClearEnable, off - 0x180),
        0x200..=0x27f => (BitReg::SetPending, off - 0x200),
        0x280..=0x2ff => (BitReg::ClearPending, off - 0x280),
        0x300..=0x37f => (BitReg::SetActive, off - 0x300),
        0x380..=0x3ff => (BitReg::ClearActive, off - 0x380),
        _ => return None,
    })
}

/// Decodes a distributor offset.
fn dist_reg(version: GicVersion, off: usize) -> Reg {
    let v2 = version == GicVersion::V2;
    if let Some((r, rel)) = bit_reg(off) {
        let n = rel / 4;
        // With affinity routing the private interrupts live in the redistributors.
        return if !v2 && n == 0 {
            Reg::Reserved
        } else {
            Reg::Bits(r, (n * 32) as u32)
        };
    }
    match off {
        0x000 => Reg::DistCtlr,
        0x004 => Reg::DistTyper,
        0x008 => Reg::Iidr,
        0x400..=0x7ff if v2 || off >= 0x420 => Reg::Prio((off - 0x400) as u32),
        0x800..=0xbff if v2 => Reg::Targets((off - 0x800) as u32),
        0xc00..=0xcff if v2 || off >= 0xc08 => Reg::Cfg(((off - 0xc00) / 4 * 16) as u32),
        0xf00 if v2 => Reg::Sgir,
        0xf10..=0xf1f if v2 => Reg::SgiPend {
            set: false,
            sgi: (off - 0xf10) as u32,
        },
        0xf20..=0xf2f if v2 => Reg::SgiPend {
            set: true,
            sgi: (off - 0xf20) as u32,
        },
        0xfd0..=0xfff if v2 => id_reg(version, off - 0xfd0),
        0x6100..=0x7fff if !v2 => Reg::Router {
            intid: ((off - 0x6000) / 8) as u32,
            high: off % 8 >= 4,
        },
        0xffd0..=0xffff if !v2 => id_reg(version, off - 0xffd0),
        _ => Reg::Reserved,
    }
}

/// Decodes an offset inside one redistributor (`0..GICR_FRAME_SIZE`).
fn redist_reg(off: usize) -> Reg {
    if off >= GICR_SGI_BASE {
        let sgi_off = off - GICR_SGI_BASE;
        if let Some((r, rel)) = bit_reg(sgi_off) {
            return if rel < 4 {
                Reg::Bits(r, 0)
            } else {
                Reg::Reserved
            };
        }
        return match sgi_off {
            0x400..=0x41f => Reg::Prio((sgi_off - 0x400) as u32),
            0xc00..=0xc07 => Reg::Cfg(((sgi_off - 0xc00) / 4 * 16) as u32),
            _ => Reg::Reserved,
        };
    }
    match off {
        0x0000 => Reg::RdCtlr,
        0x0004 => Reg::Iidr,
        0x0008..=0x000f => Reg::RdTyper { high: off >= 0xc },
        0x0014 => Reg::Waker,
        0x0070..=0x007f => Reg::Lpi,
        0xffd0..=0xffff => id_reg(GicVersion::V3, off - 0xffd0),
        _ => Reg::Reserved,
    }
}

/// Reads a byte-lane register: lane `k` of a `w` access is `f(k)`.
fn lanes_read(w: AccessWidth, mut f: impl FnMut(u32) -> u8) -> u64 {
    (0..w.size() as u32).fold(0, |acc, k| acc | u64::from(f(k)) << (8 * k))
}

/// Writes a byte-lane register: `f(k, byte)` for each lane; ORs the notify masks.
fn lanes_write(w: AccessWidth, value: u64, mut f: impl FnMut(u32, u8) -> u64) -> u64 {
    (0..w.size() as u32).fold(0, |acc, k| acc | f(k, (value >> (8 * k)) as u8))
}

fn read_bits(s: &State, ctx: usize, first: u32, r: BitReg) -> u32 {
    let mut v = 0;
    for i in 0..32 {
        let Some(id) = s.resolve(ctx, first + i) else {
            continue;
        };
        let irq = s.irq(id);
        let on = match r {
            BitReg::Group => irq.group1,
            BitReg::SetEnable | BitReg::ClearEnable => irq.enabled,
            BitReg::SetPending | BitReg::ClearPending => s.pending_view(id),
            BitReg::SetActive | BitReg::ClearActive => s.active_view(id),
        };
        if on {
            v |= 1 << i;
        }
    }
    v
}

fn write_bits(s: &mut State, ctx: usize, first: u32, r: BitReg, value: u32) -> u64 {
    let mut mask = 0;
    for i in 0..32 {
        let Some(id) = s.resolve(ctx, first + i) else {
            continue;
        };
        let one = value & (1 << i) != 0;
        mask |= match r {
            BitReg::Group => s.set_group1(id, one),
            _ if !one => 0,
            BitReg::SetEnable => s.set_enabled(id, true),
            BitReg::ClearEnable => s.set_enabled(id, false),
            BitReg::SetPending => s.set_pending(id),
            BitReg::ClearPending => s.clear_pending(id),
            BitReg::SetActive => s.set_active(id),
            BitReg::ClearActive => s.clear_active(id),
        };
    }
    mask
}

fn read_cfg(s: &State, ctx: usize, first: u32) -> u32 {
    let mut v = 0;
    for i in 0..16 {
        if let Some(id) = s.resolve(ctx, first + i) {
            if s.irq(id).edge {
                v |= 0b10 << (2 * i);
            }
        }
    }
    v
}

fn write_cfg(s: &mut State, ctx: usize, first: u32, value: u32) -> u64 {
    let mut mask = 0;
    for i in 0..16 {
        if let Some(id) = s.resolve(ctx, first + i) {
            mask |= s.set_edge(id, value & (0b10 << (2 * i)) != 0);
        }
    }
    mask
}

fn read_prio(s: &State, ctx: usize, intid: u32) -> u8 {
    s.resolve(ctx, intid).map_or(0, |id| s.irq(id).priority)
}

/// GICv2 ITARGETSR byte: SGIs and PPIs read as the accessing vCPU's own bit.
fn read_targets(s: &State, ctx: usize, intid: u32) -> u8 {
    if intid < PRIVATE_IRQS {
        return if ctx < 8 { 1 << ctx } else { 0 };
    }
    s.resolve(ctx, intid).map_or(0, |id| s.irq(id).targets)
}

/// Reads register `reg` for vCPU `ctx` (the accessing vCPU for GICD, the redistributor's
/// own vCPU for GICR).
fn read_reg(s: &State, ctx: usize, reg: Reg, w: AccessWidth) -> u64 {
    match reg {
        Reg::DistCtlr => {
            let extra = if s.v2() { 0 } else { CTLR_ARE | CTLR_DS };
            u64::from(s.ctlr | extra)
        }
        Reg::DistTyper => {
            let lines = (s.nr_irqs.div_ceil(32) - 1) & 0x1f;
            let v = match s.version {
                GicVersion::V2 => lines | ((s.vcpus as u32 - 1) & 0x7) << TYPER_CPUNUMBER_SHIFT,
                GicVersion::V3 => lines | TYPER_IDBITS << TYPER_IDBITS_SHIFT | TYPER_RSS,
            };
            u64::from(v)
        }
        Reg::Iidr => u64::from(IIDR),
        Reg::Id(v) => u64::from(v),
        Reg::Bits(r, first) => u64::from(read_bits(s, ctx, first, r)),
        Reg::Prio(first) => lanes_read(w, |k| read_prio(s, ctx, first + k)),
        Reg::Targets(first) => lanes_read(w, |k| read_targets(s, ctx, first + k)),
        Reg::Cfg(first) => u64::from(read_cfg(s, ctx, first)),
        Reg::Sgir => 0,
        Reg::SgiPend { sgi, .. } => lanes_read(w, |k| {
            let i = (sgi + k) as usize;
            if i < SGIS as usize {
                s.cpus[ctx].sgi_sources[i]
            } else {
                0
            }
        }),
        Reg::Router { intid, high } => {
            let route = s.resolve(ctx, intid).map_or(0, |id| s.irq(id).route);
            match (w, high) {
                (AccessWidth::Dword, _) => route,
                (_, true) => route >> 32,
                (_, false) => route & 0xffff_ffff,
            }
        }
        Reg::RdCtlr | Reg::Lpi | Reg::Reserved => 0,
        Reg::RdTyper { high } => {
            let mut typer = (ctx as u64) << GICR_TYPER_AFF_SHIFT
                | (ctx as u64 & 0xffff) << GICR_TYPER_PROC_SHIFT;
            if ctx + 1 == s.vcpus {
                typer |= GICR_TYPER_LAST;
            }
            match (w, high) {
                (AccessWidth::Dword, _) => typer,
                (_, true) => typer >> 32,
                (_, false) => typer & 0xffff_ffff,
            }
        }
        Reg::Waker => {
            if s.cpus[ctx].asleep {
                u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP)
            } else {
                0
            }
        }
    }
}

/// Writes register `reg` for vCPU `ctx`; returns the notify mask.
fn write_reg(s: &mut State, ctx: usize, reg: Reg, w: AccessWidth, value: u64) -> u64 {
    let word = value as u32;
    match reg {
        Reg::DistCtlr => s.set_ctlr(word & CTLR_ENABLE_MASK),
        Reg::Bits(r, first) => write_bits(s, ctx, first, r, word),
        Reg::Prio(first) => lanes_write(w, value, |k, b| {
            if let Some(id) = s.resolve(ctx, first + k) {
                s.set_priority(id, b);
            }
            0
        }),
        Reg::Targets(first) => lanes_write(w, value, |k, b| {
            s.resolve(ctx, first + k)
                .map_or(0, |id| s.set_targets(id, b))
        }),
        Reg::Cfg(first) => write_cfg(s, ctx, first, word),
        Reg::Sgir => {
            let sgi = word & 0xf;
            let list = (word >> 16) as u8;
            let targets = match (word >> 24) & 0b11 {
                0 => list,
                1 => s.cpu_mask() & !(1 << ctx),
                2 => 1 << ctx,
                _ => 0,
            } & s.cpu_mask();
            (0..s.vcpus)
                .filter(|&t| targets & (1 << t) != 0)
                .fold(0, |m, t| m | s.send_sgi_v2(ctx, t, sgi))
        }
        Reg::SgiPend { set, sgi } => {
            lanes_write(w, value, |k, b| s.set_sgi_sources(ctx, sgi + k, b, set))
        }
        Reg::Router { intid, high } => {
            let Some(id) = s.resolve(ctx, intid) else {
                return 0;
            };
            let old = s.irq(id).route;
            let route = match (w, high) {
                (AccessWidth::Dword, _) => value,
                (_, true) => (old & 0xffff_ffff) | (value & 0xffff_ffff) << 32,
                (_, false) => (old & !0xffff_ffff) | (value & 0xffff_ffff),
            };
            s.set_route(id, route & ROUTE_MASK)
        }
        Reg::Waker => {
            s.cpus[ctx].asleep = word & WAKER_PROCESSOR_SLEEP != 0;
            0
        }
        Reg::DistTyper
        | Reg::Iidr
        | Reg::Id(_)
        | Reg::RdCtlr
        | Reg::RdTyper { .. }
        | Reg::Lpi
        | Reg::Reserved => 0,
    }
}

/// A guest read of the distributor by vCPU `ctx` (`ctx < vcpus`).
pub(crate) fn dist_read(
    s: &State,
    ctx: usize,
    off: usize,
    w: AccessWidth,
) -> Result<u64, DeviceError> {
    check_access(off, w, GICD_SIZE)?;
    let reg = dist_reg(s.version, off);
    if !widths(reg).contains(&w) {
        return Err(DeviceError::BadWidth);
    }
    Ok(read_reg(s, ctx, reg, w))
}

/// A guest write of the distributor by vCPU `ctx`; returns the notify mask.
pub(crate) fn dist_write(
    s: &mut State,
    ctx: usize,
    off: usize,
    w: AccessWidth,
    value: u64,
) -> Result<u64, DeviceError> {
    check_access(off, w, GICD_SIZE)?;
    let reg = dist_reg(s.version, off);
    if !widths(reg).contains(&w) {
        return Err(DeviceError::BadWidth);
    }
    if reg == Reg::Reserved {
        trace!("vgic: GICD write to reserved offset {off:#x} ignored");
    }
    Ok(write_reg(s, ctx, reg, w, value & w.mask()))
}

/// Splits a redistributor-region offset into (vCPU, register) after the common checks.
fn redist_decode(s: &State, off: usize, w: AccessWidth) -> Result<(usize, Reg), DeviceError> {
    let size = s.vcpus * GICR_FRAME_SIZE;
    check_access(off, w, size)?;
    let reg = redist_reg(off % GICR_FRAME_SIZE);
    if !widths(reg).contains(&w) {
        return Err(DeviceError::BadWidth);
    }
    Ok((off / GICR_FRAME_SIZE, reg))
}

/// A guest read of the redistributor region (any vCPU may read any redistributor).
pub(crate) fn redist_read(s: &State, off: usize, w: AccessWidth) -> Result<u64, DeviceError> {
    let (cpu, reg) = redist_decode(s, off, w)?;
    Ok(read_reg(s, cpu, reg, w))
}

/// A guest write of the redistributor region; returns the notify mask.
pub(crate) fn redist_write(
    s: &mut State,
    off: usize,
    w: AccessWidth,
    value: u64,
) -> Result<u64, DeviceError> {
    let (cpu, reg) = redist_decode(s, off, w)?;
    Ok(write_reg(s, cpu, reg, w, value & w.mask()))
}

/// A GICv2 guest's GICD_SGIR write by vCPU `ctx` (offset 0xf00, 32 bits): the SGI and the
/// target vCPU bits (target list filter: 0 the list, 1 all others, 2 itself, 3 none),
/// limited to the VM's vCPUs. `None` for any other access (including a GICv3 distributor).
pub(crate) fn v2_sgir(
    config: &crate::VgicConfig,
    ctx: usize,
    off: usize,
    w: AccessWidth,
    value: u64,
) -> Option<(u32, u8)> {
    if config.version != GicVersion::V2 || off != 0xf00 || w != AccessWidth::Word {
        return None;
    }
    let word = value as u32;
    let all = ((1u16 << config.vcpus.min(8)) - 1) as u8;
    let targets = match (word >> 24) & 0b11 {
        0 => (word >> 16) as u8,
        1 => all & !(1 << ctx),
        2 => 1 << ctx,
        _ => 0,
    } & all;
    Some((word & 0xf, targets))
}
