//! What a guest's CPUID returns: the host CPU's answer with what the hypervisor does not
//! give the guest taken out, and a hypervisor leaf naming axvisor. Pure, unit-tested.
//!
//! | leaf | change |
//! |---|---|
//! | 1 | ECX: VMX (5), SMX (6), MONITOR (3), PDCM (15), x2APIC (21), TSC-deadline (24) cleared; hypervisor (31) set; OSXSAVE (27) = the guest's CR4.OSXSAVE. EDX: MCE (7), MTRR (12), MCA (14), ACPI (22), TM (29) cleared (no machine-check MSRs: Linux reads MCG_CAP when they are set). EBX 31:24 = the vCPU index (initial APIC id) |
//! | 6 | all zero (no thermal and power management) |
//! | 7.0 | EBX: TSC_ADJUST (1; no IA32_TSC_ADJUST MSR), SGX (2), INVPCID (10, unless enabled), RDT-M (12), RDT-A (15), Intel PT (25) cleared; ECX: SGX-LC (30) cleared; EDX: IBRS/IBPB (26), STIBP (27), L1D_FLUSH (28), ARCH_CAPABILITIES (29), CORE_CAPABILITIES (30), SSBD (31) cleared |
//! | 0xA | all zero (no PMU) |
//! | 0xD.1 | EAX: XSAVES (3) cleared |
//! | 0x15, 0x16 (where the host has them: Intel) | the TSC's real rate and the local APIC's clock ([`tsc_leaves`]): Bochs reports a 3.5 GHz Skylake-X while its TSC runs at its `ips` |
//! | 0x4000_0000 | EAX = 0x4000_0010 (highest hypervisor leaf), EBX/ECX/EDX = `"axvisor\0\0\0\0\0"` |
//! | 0x4000_0010 | the timing leaf: EAX = the TSC's frequency in kHz (as the host calibrated it), EBX = 0, or with a virtual PC the local APIC timer's bus clock in kHz ([`virtual_apic`]) |
//! | other 0x4000_0001..=0x4000_00FF | all zero |
//! | 0x8000_0001 | ECX: SVM (2) cleared; EDX: RDTSCP (27) cleared |
//!
//! Everything else is the host's answer. A VM with a virtual PC (`crate::pc`) also gets
//! [`virtual_apic`]: leaf 1 ECX x2APIC (21) and TSC-deadline (24) set, and the timing
//! leaf's EBX = the local APIC timer's bus clock in kHz.

/// The hypervisor's signature in leaf 0x4000_0000 (EBX, ECX, EDX): "axvisor" and five NUL
/// bytes.
pub const SIGNATURE: [u8; 12] = *b"axvisor\0\0\0\0\0";

/// The first hypervisor leaf.
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// The timing leaf (the TSC's frequency), the highest hypervisor leaf.
pub const TIMING_LEAF: u32 = 0x4000_0010;

/// CR4.OSXSAVE.
const CR4_OSXSAVE: u64 = 1 << 18;

/// The guest-visible facts a CPUID answer depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidContext {
    /// The vCPU's index in its VM (its initial APIC id).
    pub vcpu_index: u8,
    /// The guest's CR4 (as the guest sees it).
    pub guest_cr4: u64,
    /// INVPCID is enabled for the guest (the secondary control is set).
    pub invpcid: bool,
    /// The TSC's frequency in kHz (0 if unknown), for the timing leaf.
    pub tsc_khz: u32,
}

fn bit(n: u32) -> u32 {
    1 << n
}

/// The guest's answer to CPUID leaf `leaf`, subleaf `subleaf`, given the host's answer
/// `host` (`[eax, ebx, ecx, edx]`) to the same query.
pub fn filter(leaf: u32, subleaf: u32, host: [u32; 4], ctx: &CpuidContext) -> [u32; 4] {
    let [mut a, mut b, mut c, mut d] = host;
    match leaf {
        1 => {
            c &= !(bit(3) | bit(5) | bit(6) | bit(15) | bit(21) | bit(24) | bit(27));
            c |= bit(31);
            if ctx.guest_cr4 & CR4_OSXSAVE != 0 {
                c |= bit(27);
            }
            d &= !(bit(7) | bit(12) | bit(14) | bit(22) | bit(29));
            b = (b & 0x00ff_ffff) | (u32::from(ctx.vcpu_index) << 24);
        }
        6 | 0xa => return [0; 4],
        7 if subleaf == 0 => {
            b &= !(bit(1) | bit(2) | bit(12) | bit(15) | bit(25));
            if !ctx.invpcid {
                b &= !bit(10);
            }
            c &= !bit(30);
            d &= !(bit(26) | bit(27) | bit(28) | bit(29) | bit(30) | bit(31));
        }
        0xd if subleaf == 1 => a &= !bit(3),
        0x15 | 0x16 if ctx.tsc_khz != 0 && host != [0; 4] => return tsc_leaves(leaf, ctx.tsc_khz),
        HYPERVISOR_LEAF => {
            let w = |i: usize| {
                u32::from_le_bytes([
                    SIGNATURE[i],
                    SIGNATURE[i + 1],
                    SIGNATURE[i + 2],
                    SIGNATURE[i + 3],
                ])
            };
            return [TIMING_LEAF, w(0), w(4), w(8)];
        }
        TIMING_LEAF => return [ctx.tsc_khz, 0, 0, 0],
        0x4000_0001..=0x4000_00ff => return [0; 4],
        0x8000_0001 => {
            c &= !bit(2);
            d &= !bit(27);
        }
        _ => {}
    }
    [a, b, c, d]
}

/// Leaves 0x15 and 0x16 for a TSC of `tsc_khz`. 0x15: a "core crystal" at the virtual
/// local APIC's input clock (the TSC divided by `k`, the whole number of TSC ticks per bus
/// tick `crate::pc` uses, at least 1) and the TSC/crystal ratio `k`/1 (EAX = 1, EBX = `k`,
/// ECX = the crystal in Hz): Linux takes crystal kHz × EBX / EAX as the TSC's frequency —
/// in 32-bit arithmetic, so the ratio's terms stay small — and, on Intel, the crystal as
/// the local APIC timer's clock (skipping its calibration). 0x16: base and maximum
/// frequency = the TSC's in MHz, bus = the crystal in MHz.
pub fn tsc_leaves(leaf: u32, tsc_khz: u32) -> [u32; 4] {
    let tsc_hz = u64::from(tsc_khz) * 1000;
    let k = crate::pc::tsc_per_bus_tick(tsc_hz);
    let crystal_hz = u32::try_from(tsc_hz / k).unwrap_or(u32::MAX);
    if leaf == 0x15 {
        [1, k as u32, crystal_hz, 0]
    } else {
        let mhz = tsc_khz / 1000;
        [mhz, mhz, crystal_hz / 1_000_000, 0]
    }
}

/// Whether XSETBV may load `value` into XCR`index` on a CPU whose CPUID leaf 0xD.0 says
/// `supported` (EDX:EAX): only XCR0; x87 (bit 0) always set; only supported bits; AVX
/// (bit 2) only with SSE (bit 1); the MPX pair (bits 3, 4), the AVX-512 trio (bits 5..7,
/// with AVX) and the AMX pair (bits 17, 18) all or none. Anything else would make XSETBV
/// fault in the hypervisor, which executes it for the guest; the guest gets #GP instead.
pub fn xcr0_valid(index: u32, value: u64, supported: u64) -> bool {
    let all_or_none = |mask: u64| value & mask == 0 || value & mask == mask;
    index == 0
        && value & 1 != 0
        && value & !supported == 0
        && (value & 4 == 0 || value & 2 != 0)
        && all_or_none(0b11 << 3)
        && all_or_none(0b111 << 5)
        && (value & (0b111 << 5) == 0 || value & 4 != 0)
        && all_or_none(0b11 << 17)
}

/// What a VM with a virtual PC adds to [`filter`]'s answer `out` for `leaf`: the local
/// APIC it emulates has x2APIC mode and the TSC-deadline timer (leaf 1 ECX bits 21, 24), and
/// its timer's input clock, the TSC (the timing leaf's EAX, kHz) over a whole number of
/// ticks ([`crate::pc::tsc_per_bus_tick`]), is the timing leaf's EBX, in kHz. Advertising
/// the nominal [`crate::pc::APIC_BUS_HZ`] instead told a guest a clock up to 1/k slower than
/// the one its timer counts (2% at a 2.65 GHz TSC): its timers fired early.
pub fn virtual_apic(leaf: u32, out: [u32; 4]) -> [u32; 4] {
    let [a, b, c, d] = out;
    match leaf {
        1 => [a, b, c | bit(21) | bit(24), d],
        TIMING_LEAF => {
            let tsc_hz = u64::from(a) * 1000;
            let bus_khz = tsc_hz / crate::pc::tsc_per_bus_tick(tsc_hz) / 1000;
            [a, u32::try_from(bus_khz).unwrap_or(u32::MAX), c, d]
        }
        _ => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: CpuidContext = CpuidContext {
        vcpu_index: 2,
        guest_cr4: 0,
        invpcid: false,
        tsc_khz: 100_000,
    };

    #[test]
    fn tsc_rate_leaves() {
        // Linux (native_calibrate_tsc): crystal kHz = ECX / 1000, TSC kHz = crystal kHz *
        // EBX / EAX, the product in 32 bits.
        let linux = |[a, b, c, _]: [u32; 4]| (c / 1000).checked_mul(b).map(|p| p / a);
        for (tsc_khz, crystal) in [
            (100_000, 100_000_000), // Bochs: TSC = APIC bus clock
            (99_999, 99_999_000),   // just under: still one tick per bus tick
            (3_500_000, 100_000_000),
            (2_899_999, 103_571_392), // 28 TSC ticks per bus tick, as crate::pc rounds
        ] {
            let c = CpuidContext {
                tsc_khz,
                ..CpuidContext::default()
            };
            let leaf = filter(0x15, 0, [2, 350, 0, 0], &c);
            assert_eq!(leaf[2], crystal, "{tsc_khz}");
            let got = linux(leaf).unwrap();
            assert!(
                got.abs_diff(tsc_khz) <= tsc_khz / 10_000,
                "{tsc_khz}: {got}"
            );
        }
        let c = CpuidContext {
            tsc_khz: 100_000,
            ..CpuidContext::default()
        };
        assert_eq!(
            filter(0x16, 0, [3500, 3500, 100, 0], &c),
            [100, 100, 100, 0]
        );
        // A host without the leaves (AMD), or an unknown rate: the host's answer.
        assert_eq!(filter(0x15, 0, [0; 4], &c), [0; 4]);
        let unknown = CpuidContext::default();
        assert_eq!(
            filter(0x16, 0, [3500, 3500, 100, 0], &unknown),
            [3500, 3500, 100, 0]
        );
    }

    #[test]
    fn virtual_apic_bits() {
        let leaf1 = virtual_apic(1, [1, 2, 0, 4]);
        assert_eq!(leaf1, [1, 2, (1 << 21) | (1 << 24), 4]);
        // The bus clock is the TSC over a whole number of ticks: 2.65 GHz / 26, not 100 MHz.
        assert_eq!(
            virtual_apic(TIMING_LEAF, [2_650_000, 0, 0, 0]),
            [2_650_000, 101_923, 0, 0]
        );
        assert_eq!(
            virtual_apic(TIMING_LEAF, [100_000, 0, 0, 0]),
            [100_000, 100_000, 0, 0]
        );
        // A TSC slower than the nominal bus clock: one TSC tick per bus tick.
        assert_eq!(virtual_apic(TIMING_LEAF, [7, 0, 0, 0]), [7, 7, 0, 0]);
        assert_eq!(virtual_apic(7, [1, 2, 3, 4]), [1, 2, 3, 4]);
    }

    #[test]
    fn leaf1_hides_vmx_and_says_hypervisor() {
        // A Skylake-like leaf 1: VMX, x2APIC, OSXSAVE (the host's CR4), MONITOR set.
        let host = [
            0x0005_0654,
            0x0010_0800,
            0xfffa_3223 & !(1 << 31),
            0xbfeb_fbff,
        ];
        let [a, b, c, d] = filter(1, 0, host, &CTX);
        assert_eq!(a, host[0]);
        assert_eq!(c & (1 << 5), 0, "VMX");
        assert_eq!(c & (1 << 6), 0, "SMX");
        assert_eq!(c & (1 << 3), 0, "MONITOR");
        assert_eq!(c & (1 << 21), 0, "x2APIC");
        assert_eq!(c & (1 << 27), 0, "OSXSAVE follows the guest's CR4");
        assert_ne!(c & (1 << 31), 0, "hypervisor");
        assert_eq!(d & (1 << 12), 0, "MTRR");
        assert_eq!(d & (1 << 7 | 1 << 14), 0, "MCE, MCA");
        assert_eq!(b >> 24, 2, "initial APIC id = vCPU index");
        assert_eq!(b & 0xff_ffff, 0x10_0800);
        let osx = CpuidContext {
            guest_cr4: 1 << 18,
            ..CTX
        };
        assert_ne!(filter(1, 0, host, &osx)[2] & (1 << 27), 0);
    }

    #[test]
    fn xcr0_values() {
        // A Skylake-X: x87, SSE, AVX, MPX, AVX-512, PKRU.
        let sup = 0x2ff;
        assert!(xcr0_valid(0, 1, sup));
        assert!(xcr0_valid(0, 0x7, sup));
        assert!(xcr0_valid(0, 0xe7, sup), "AVX-512 with AVX");
        assert!(xcr0_valid(0, 0x207, sup), "PKRU");
        assert!(!xcr0_valid(0, 0, sup), "x87 must stay on");
        assert!(!xcr0_valid(0, 0x5, sup), "AVX without SSE");
        assert!(!xcr0_valid(0, 0x27, sup), "AVX-512 opmask alone");
        assert!(!xcr0_valid(0, 0xe3, sup), "AVX-512 without AVX");
        assert!(!xcr0_valid(0, 0xb, sup), "one MPX bit");
        assert!(xcr0_valid(0, 0x1b, 0x1b));
        assert!(!xcr0_valid(0, 0x1_0003, sup), "an unsupported bit");
        assert!(!xcr0_valid(1, 0x3, sup), "XCR1 is not writable here");
        assert!(!xcr0_valid(0, 0x2_0007, 0x6_0007), "one AMX bit");
        assert!(xcr0_valid(0, 0x6_0007, 0x6_0007));
    }

    #[test]
    fn hypervisor_leaf_names_axvisor() {
        let [a, b, c, d] = filter(0x4000_0000, 0, [7; 4], &CTX);
        assert_eq!(a, 0x4000_0010, "the highest hypervisor leaf: timing");
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&b.to_le_bytes());
        sig[4..8].copy_from_slice(&c.to_le_bytes());
        sig[8..].copy_from_slice(&d.to_le_bytes());
        assert_eq!(&sig, b"axvisor\0\0\0\0\0");
        assert_eq!(filter(0x4000_0010, 0, [7; 4], &CTX), [100_000, 0, 0, 0]);
        assert_eq!(filter(0x4000_0001, 0, [7; 4], &CTX), [0; 4]);
        assert_eq!(filter(0x4000_00ff, 0, [7; 4], &CTX), [0; 4]);
        assert_eq!(filter(0x4000_0100, 0, [7; 4], &CTX), [7; 4]);
    }

    #[test]
    fn svm_rdtscp_invpcid_xsaves_pmu() {
        let ext = filter(0x8000_0001, 0, [0, 0, u32::MAX, u32::MAX], &CTX);
        assert_eq!(ext[2] & (1 << 2), 0, "SVM");
        assert_eq!(ext[3] & (1 << 27), 0, "RDTSCP");
        let l7 = filter(7, 0, [0, u32::MAX, u32::MAX, u32::MAX], &CTX);
        assert_eq!(l7[1] & (1 << 10), 0, "INVPCID");
        assert_eq!(l7[1] & (1 << 2), 0, "SGX");
        assert_eq!(l7[1] & (1 << 1), 0, "TSC_ADJUST (no IA32_TSC_ADJUST MSR)");
        assert_eq!(l7[3] >> 26, 0, "speculation-control MSRs");
        let with = CpuidContext {
            invpcid: true,
            ..CTX
        };
        assert_ne!(filter(7, 0, [0, u32::MAX, 0, 0], &with)[1] & (1 << 10), 0);
        // Subleaf 1 of leaf 7 is the host's.
        assert_eq!(filter(7, 1, [1, 2, 3, 4], &CTX), [1, 2, 3, 4]);
        assert_eq!(filter(0xd, 1, [0xf, 0, 0, 0], &CTX)[0], 0x7, "XSAVES");
        assert_eq!(filter(0xd, 0, [0xf, 1, 2, 3], &CTX), [0xf, 1, 2, 3]);
        assert_eq!(filter(0xa, 0, [1, 2, 3, 4], &CTX), [0; 4]);
        assert_eq!(filter(0, 0, [0x16, 1, 2, 3], &CTX), [0x16, 1, 2, 3]);
    }
}
