//! List registers: the portable description of one, its two hardware encodings, and the
//! trait through which architecture code lets the model read and write them.
//!
//! Only *software* list registers are described (HW = 0): the model never links a virtual
//! interrupt to a physical one. In that mode the physical-ID field of the hardware
//! encodings carries the EOI-maintenance request (and, on GICv2, the source CPU of an SGI).

/// The state of the interrupt a list register holds (the two-bit State field of both
/// `GICH_LR<n>` and `ICH_LR<n>_EL2`: 0b00 invalid, 0b01 pending, 0b10 active, 0b11 both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LrState {
    /// 0b00: the list register is free (the guest deactivated the interrupt, or it was
    /// never used).
    #[default]
    Invalid,
    /// 0b01: pending, not yet acknowledged by the guest.
    Pending,
    /// 0b10: acknowledged by the guest, not yet deactivated.
    Active,
    /// 0b11: active, and pending again.
    PendingActive,
}

impl LrState {
    /// The two-bit encoding (0..=3).
    pub const fn bits(self) -> u8 {
        match self {
            Self::Invalid => 0b00,
            Self::Pending => 0b01,
            Self::Active => 0b10,
            Self::PendingActive => 0b11,
        }
    }

    /// The state encoded by the low two bits of `bits` (higher bits are ignored).
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0b00 => Self::Invalid,
            0b01 => Self::Pending,
            0b10 => Self::Active,
            _ => Self::PendingActive,
        }
    }

    /// Whether the state includes *pending*.
    pub const fn has_pending(self) -> bool {
        self.bits() & 0b01 != 0
    }

    /// Whether the state includes *active*.
    pub const fn has_active(self) -> bool {
        self.bits() & 0b10 != 0
    }

    /// The state with *pending* added or removed.
    pub(crate) const fn with_pending(self, on: bool) -> Self {
        Self::from_bits(if on {
            self.bits() | 0b01
        } else {
            self.bits() & !0b01
        })
    }

    /// The state with *active* added or removed.
    pub(crate) const fn with_active(self, on: bool) -> Self {
        Self::from_bits(if on {
            self.bits() | 0b10
        } else {
            self.bits() & !0b10
        })
    }
}

/// One list register, independent of the GIC version.
///
/// Encodings (software interrupts, HW = 0; every other bit is written as zero):
///
/// | field | GICv2 `GICH_LR<n>` (32 bits) | GICv3 `ICH_LR<n>_EL2` (64 bits) |
/// |---|---|---|
/// | `intid` | VirtualID, bits \[9:0\] | vINTID, bits \[31:0\] |
/// | `source` (SGIs only) | CPUID, bits \[12:10\] | — (not encoded) |
/// | `eoi_maintenance` | EOI, bit \[19\] | EOI, bit \[41\] |
/// | `priority` | Priority, bits \[27:23\] = `priority[7:3]` | Priority, bits \[55:48\] |
/// | `state` | State, bits \[29:28\] | State, bits \[63:62\] |
/// | `group1` | Grp1, bit \[30\] | Group, bit \[60\] |
/// | HW | bit \[31\], always 0 | bit \[61\], always 0 |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListReg {
    /// The virtual INTID the guest sees.
    pub intid: u32,
    /// Invalid, pending, active or both.
    pub state: LrState,
    /// The priority (0 highest). GICv2 keeps only the top five bits.
    pub priority: u8,
    /// Group 1 (true) or group 0.
    pub group1: bool,
    /// Ask the hardware for a maintenance interrupt when the guest deactivates this
    /// interrupt (used for level-sensitive interrupts, so the model learns about the EOI).
    pub eoi_maintenance: bool,
    /// GICv2 only: the CPU that sent this SGI (0..=7), shown to the guest in `GICC_IAR`.
    /// Zero for anything that is not an SGI; ignored by the GICv3 encoding.
    pub source: u8,
}

// GICv2 GICH_LR fields.
const V2_VIRTUAL_ID: u32 = 0x3ff; // [9:0]
const V2_CPUID_SHIFT: u32 = 10; // [12:10]
const V2_CPUID_MASK: u32 = 0x7;
const V2_EOI: u32 = 1 << 19;
const V2_PRIORITY_SHIFT: u32 = 23; // [27:23]
const V2_PRIORITY_MASK: u32 = 0x1f;
const V2_STATE_SHIFT: u32 = 28; // [29:28]
const V2_GRP1: u32 = 1 << 30;
const V2_HW: u32 = 1 << 31;

// GICv3 ICH_LR<n>_EL2 fields.
const V3_VINTID: u64 = 0xffff_ffff; // [31:0]
const V3_EOI: u64 = 1 << 41;
const V3_PRIORITY_SHIFT: u32 = 48; // [55:48]
const V3_GROUP: u64 = 1 << 60;
const V3_HW: u64 = 1 << 61;
const V3_STATE_SHIFT: u32 = 62; // [63:62]

impl ListReg {
    /// An empty (invalid) list register.
    pub const INVALID: ListReg = ListReg {
        intid: 0,
        state: LrState::Invalid,
        priority: 0,
        group1: false,
        eoi_maintenance: false,
        source: 0,
    };

    /// The GICv2 `GICH_LR<n>` value. `intid` is truncated to 10 bits, `priority` to its top
    /// five bits, `source` to three bits (and only kept for SGIs, INTID < 16).
    pub fn to_gicv2(&self) -> u32 {
        let mut v = self.intid & V2_VIRTUAL_ID;
        if self.intid < 16 {
            v |= (u32::from(self.source) & V2_CPUID_MASK) << V2_CPUID_SHIFT;
        }
        if self.eoi_maintenance {
            v |= V2_EOI;
        }
        v |= ((u32::from(self.priority) >> 3) & V2_PRIORITY_MASK) << V2_PRIORITY_SHIFT;
        v |= u32::from(self.state.bits()) << V2_STATE_SHIFT;
        if self.group1 {
            v |= V2_GRP1;
        }
        v
    }

    /// Decodes a GICv2 `GICH_LR<n>` value. The priority comes back with its low three bits
    /// zero. For a hardware list register (HW = 1, never written by this crate) the
    /// physical-ID field is not interpreted: `eoi_maintenance` and `source` are false / 0.
    pub fn from_gicv2(v: u32) -> Self {
        let hw = v & V2_HW != 0;
        let intid = v & V2_VIRTUAL_ID;
        ListReg {
            intid,
            state: LrState::from_bits((v >> V2_STATE_SHIFT) as u8),
            priority: (((v >> V2_PRIORITY_SHIFT) & V2_PRIORITY_MASK) << 3) as u8,
            group1: v & V2_GRP1 != 0,
            eoi_maintenance: !hw && v & V2_EOI != 0,
            source: if hw {
                0
            } else {
                ((v >> V2_CPUID_SHIFT) & V2_CPUID_MASK) as u8
            },
        }
    }

    /// The GICv3 `ICH_LR<n>_EL2` value (`source` is not encoded).
    pub fn to_gicv3(&self) -> u64 {
        let mut v = u64::from(self.intid) & V3_VINTID;
        if self.eoi_maintenance {
            v |= V3_EOI;
        }
        v |= u64::from(self.priority) << V3_PRIORITY_SHIFT;
        if self.group1 {
            v |= V3_GROUP;
        }
        v |= u64::from(self.state.bits()) << V3_STATE_SHIFT;
        v
    }

    /// Decodes a GICv3 `ICH_LR<n>_EL2` value (`source` is 0). For a hardware list register
    /// (HW = 1) bit 41 belongs to the physical INTID and `eoi_maintenance` is false.
    pub fn from_gicv3(v: u64) -> Self {
        let hw = v & V3_HW != 0;
        ListReg {
            intid: (v & V3_VINTID) as u32,
            state: LrState::from_bits((v >> V3_STATE_SHIFT) as u8),
            priority: (v >> V3_PRIORITY_SHIFT) as u8,
            group1: v & V3_GROUP != 0,
            eoi_maintenance: !hw && v & V3_EOI != 0,
            source: 0,
        }
    }
}

/// The list registers of the physical CPU a vCPU runs on, as architecture code exposes them
/// to [`Vgic::flush`](crate::Vgic::flush) and [`Vgic::sync`](crate::Vgic::sync).
///
/// On GICv2 an implementation reads and writes `GICH_LR<n>` (and `GICH_HCR.UIE`) in the
/// GICH frame, converting with [`ListReg::from_gicv2`] / [`ListReg::to_gicv2`]; on GICv3 it
/// uses `ICH_LR<n>_EL2` (and `ICH_HCR_EL2.UIE`) with the `gicv3` conversions. It may as well
/// work on a saved copy of those registers that it restores before entering the guest.
pub trait ListRegs {
    /// How many list registers exist (`GICH_VTR.ListRegs + 1`, `ICH_VTR_EL2.ListRegs + 1`).
    /// The model uses at most 16.
    fn count(&self) -> usize;

    /// List register `i` (`i < count()`).
    fn read(&self, i: usize) -> ListReg;

    /// Writes list register `i` (`i < count()`).
    fn write(&mut self, i: usize, lr: ListReg);

    /// Turns the underflow maintenance interrupt (`UIE`: raised when at most one list
    /// register is valid) on or off. The model turns it on when pending interrupts did not
    /// fit in the list registers, so the vCPU exits and [`Vgic::flush`](crate::Vgic::flush)
    /// can refill them.
    fn set_underflow_interrupt(&mut self, on: bool);
}
