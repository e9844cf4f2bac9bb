use super::*;
use std::vec::Vec;

/// A capability MSR: `must` bits forced to 1, `may` bits allowed to be 1.
fn cap(must: u32, may: u32) -> u64 {
    u64::from(must) | (u64::from(may) << 32)
}

fn bits(list: &[u32]) -> u32 {
    list.iter().fold(0, |a, b| a | 1 << b)
}

/// The "default1" bits of each field (forced by the plain MSRs).
const PIN_DEFAULT1: u32 = 0x16;
const PROC_DEFAULT1: u32 = 0x0401_e172;
const EXIT_DEFAULT1: u32 = 0x0003_6dff;
const ENTRY_DEFAULT1: u32 = 0x0000_11ff;

/// Something like Bochs' `corei7_skylake_x`: TRUE MSRs, everything but posted interrupts,
/// the monitor trap flag and tertiary controls; EPT with 2 MiB / 1 GiB pages, INVEPT,
/// VPID.
fn bochs_like() -> std::collections::BTreeMap<u32, u64> {
    let mut m = std::collections::BTreeMap::new();
    let basic = 0x1234 | (0x1000u64 << 32) | (6 << 50) | BASIC_INS_OUTS_INFO | BASIC_TRUE_CTLS;
    m.insert(msr::IA32_VMX_BASIC, basic);
    let pin_may = bits(&[0, 1, 2, 3, 4, 5, 6]);
    m.insert(msr::IA32_VMX_PINBASED_CTLS, cap(PIN_DEFAULT1, pin_may));
    m.insert(msr::IA32_VMX_TRUE_PINBASED_CTLS, cap(PIN_DEFAULT1, pin_may));
    let proc_may = !bits(&[0, 17, 27]);
    m.insert(msr::IA32_VMX_PROCBASED_CTLS, cap(PROC_DEFAULT1, proc_may));
    // TRUE: CR3-load/store exiting (15, 16) and bits 2..=6 ... may be 0.
    m.insert(
        msr::IA32_VMX_TRUE_PROCBASED_CTLS,
        cap(PROC_DEFAULT1 & !bits(&[15, 16]), proc_may),
    );
    m.insert(
        msr::IA32_VMX_PROCBASED_CTLS2,
        cap(
            0,
            bits(&[
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 20, 25,
            ]),
        ),
    );
    let exit_may = EXIT_DEFAULT1 | bits(&[9, 12, 15, 18, 19, 20, 21, 22]);
    m.insert(msr::IA32_VMX_EXIT_CTLS, cap(EXIT_DEFAULT1, exit_may));
    m.insert(
        msr::IA32_VMX_TRUE_EXIT_CTLS,
        cap(EXIT_DEFAULT1 & !bits(&[2]), exit_may),
    );
    let entry_may = ENTRY_DEFAULT1 | bits(&[9, 10, 11, 13, 14, 15]);
    m.insert(msr::IA32_VMX_ENTRY_CTLS, cap(ENTRY_DEFAULT1, entry_may));
    m.insert(
        msr::IA32_VMX_TRUE_ENTRY_CTLS,
        cap(ENTRY_DEFAULT1 & !bits(&[2]), entry_may),
    );
    m.insert(msr::IA32_VMX_MISC, 0x0300_00e5);
    m.insert(msr::IA32_VMX_CR0_FIXED0, 0x8000_0021);
    m.insert(msr::IA32_VMX_CR0_FIXED1, 0xffff_ffff);
    m.insert(msr::IA32_VMX_CR4_FIXED0, 0x2000);
    m.insert(msr::IA32_VMX_CR4_FIXED1, 0x0037_67ff);
    let ept = [0u32, 6, 8, 14, 16, 17, 20, 21, 25, 26, 32, 40, 41, 42, 43]
        .iter()
        .fold(0u64, |a, &b| a | 1 << b);
    m.insert(msr::IA32_VMX_EPT_VPID_CAP, ept);
    m
}

fn read(m: &std::collections::BTreeMap<u32, u64>) -> (VmxCaps, Vec<u32>) {
    let mut seen = Vec::new();
    let caps = VmxCaps::read(|n| {
        seen.push(n);
        *m.get(&n)
            .unwrap_or_else(|| panic!("MSR {n:#x} read but absent"))
    });
    (caps, seen)
}

#[test]
fn bochs_like_cpu_gets_every_control() {
    let (caps, seen) = read(&bochs_like());
    assert!(seen.contains(&msr::IA32_VMX_TRUE_PROCBASED_CTLS));
    assert!(
        !seen.contains(&msr::IA32_VMX_PROCBASED_CTLS),
        "TRUE MSRs only"
    );
    assert_eq!(caps.revision_id(), 0x1234);
    assert_eq!(caps.region_size(), 0x1000);
    assert_eq!(caps.preemption_timer_shift(), 5);
    let c = Controls::compute(&caps).unwrap();
    for &r in REQUIRED.iter().chain(OPTIONAL) {
        assert!(c.has(r), "{r}");
    }
    // The TRUE MSRs let CR3 exiting stay off; the default1 bits still there are kept.
    assert!(!c.has(ctl::CR3_LOAD_EXITING) && !c.has(ctl::CR3_STORE_EXITING));
    assert_eq!(
        c.proc & PROC_DEFAULT1 & !bits(&[15, 16]),
        PROC_DEFAULT1 & !bits(&[15, 16])
    );
    assert_eq!(
        c.pin,
        PIN_DEFAULT1 | 1 | 1 << 3 | 1 << 5 | 1 << 6,
        "external interrupts, NMI exiting, virtual NMIs, preemption timer"
    );
    assert!(c.nmi_window() && c.unrestricted());
    // The window controls are set only while an event waits.
    assert!(!c.has(ctl::INTERRUPT_WINDOW_EXITING) && !c.has(ctl::NMI_WINDOW_EXITING));
    // Nothing outside the allowed 1-settings.
    for (field, v) in [
        (ControlField::PinBased, c.pin),
        (ControlField::PrimaryProcBased, c.proc),
        (ControlField::SecondaryProcBased, c.proc2),
        (ControlField::Exit, c.exit),
        (ControlField::Entry, c.entry),
    ] {
        assert_eq!(v & !(caps.cap(field) >> 32) as u32, 0, "{field}");
        assert_eq!(
            v & caps.cap(field) as u32,
            caps.cap(field) as u32,
            "{field}"
        );
    }
}

#[test]
fn without_true_msrs_the_default1_bits_stay() {
    let mut m = bochs_like();
    *m.get_mut(&msr::IA32_VMX_BASIC).unwrap() &= !BASIC_TRUE_CTLS;
    m.remove(&msr::IA32_VMX_TRUE_PINBASED_CTLS);
    m.remove(&msr::IA32_VMX_TRUE_PROCBASED_CTLS);
    m.remove(&msr::IA32_VMX_TRUE_EXIT_CTLS);
    m.remove(&msr::IA32_VMX_TRUE_ENTRY_CTLS);
    let (caps, _) = read(&m);
    let c = Controls::compute(&caps).unwrap();
    assert!(c.has(ctl::CR3_LOAD_EXITING) && c.has(ctl::CR3_STORE_EXITING));
    assert_eq!(c.exit & EXIT_DEFAULT1, EXIT_DEFAULT1);
}

#[test]
fn missing_required_controls_are_named() {
    let cases: &[(u32, u32, Control)] = &[
        (
            msr::IA32_VMX_TRUE_PROCBASED_CTLS,
            31,
            ctl::ACTIVATE_SECONDARY,
        ),
        (msr::IA32_VMX_PROCBASED_CTLS2, 1, ctl::ENABLE_EPT),
        (msr::IA32_VMX_PROCBASED_CTLS2, 5, ctl::ENABLE_VPID),
        (msr::IA32_VMX_TRUE_EXIT_CTLS, 15, ctl::ACK_INTERRUPT_ON_EXIT),
        (msr::IA32_VMX_TRUE_ENTRY_CTLS, 15, ctl::LOAD_GUEST_EFER),
        (
            msr::IA32_VMX_TRUE_PINBASED_CTLS,
            0,
            ctl::EXTERNAL_INTERRUPT_EXITING,
        ),
        (msr::IA32_VMX_TRUE_PROCBASED_CTLS, 25, ctl::USE_IO_BITMAPS),
    ];
    for &(m_nr, bit, control) in cases {
        let mut m = bochs_like();
        *m.get_mut(&m_nr).unwrap() &= !(1u64 << (32 + bit));
        let (caps, _) = read(&m);
        assert_eq!(
            Controls::compute(&caps),
            Err(CapsError::Unsupported(control)),
            "{control}"
        );
    }
    let mut m = bochs_like();
    *m.get_mut(&msr::IA32_VMX_PROCBASED_CTLS2).unwrap() &= !(1u64 << 33);
    let (caps, _) = read(&m);
    let e = Controls::compute(&caps).unwrap_err();
    assert_eq!(
        std::format!("{e}"),
        "the CPU cannot set the secondary processor-based control \"enable EPT\" (bit 1)"
    );
}

#[test]
fn no_secondary_controls_reads_neither_ctls2_nor_ept_caps() {
    let mut m = bochs_like();
    *m.get_mut(&msr::IA32_VMX_TRUE_PROCBASED_CTLS).unwrap() &= !(1u64 << 63);
    m.remove(&msr::IA32_VMX_PROCBASED_CTLS2);
    m.remove(&msr::IA32_VMX_EPT_VPID_CAP);
    let (caps, seen) = read(&m);
    assert!(!seen.contains(&msr::IA32_VMX_PROCBASED_CTLS2));
    assert_eq!((caps.proc2, caps.ept_vpid), (0, 0));
    assert_eq!(
        Controls::compute(&caps),
        Err(CapsError::Unsupported(ctl::ACTIVATE_SECONDARY))
    );
}

#[test]
fn optional_controls_are_left_off_when_absent() {
    let mut m = bochs_like();
    *m.get_mut(&msr::IA32_VMX_PROCBASED_CTLS2).unwrap() &= !(bits(&[3, 7, 12, 20]) as u64) << 32;
    *m.get_mut(&msr::IA32_VMX_TRUE_PINBASED_CTLS).unwrap() &= !(1u64 << (32 + 6));
    *m.get_mut(&msr::IA32_VMX_TRUE_EXIT_CTLS).unwrap() &= !(1u64 << (32 + 22));
    let (caps, _) = read(&m);
    let c = Controls::compute(&caps).unwrap();
    for &o in OPTIONAL {
        assert!(!c.has(o), "{o}");
    }
    assert!(c.has(ctl::ENABLE_EPT));
    assert!(!c.unrestricted());
}

#[test]
fn virtual_nmis_come_as_a_group() {
    // Without NMI-window exiting, neither NMI exiting nor virtual NMIs are set.
    let mut m = bochs_like();
    *m.get_mut(&msr::IA32_VMX_TRUE_PROCBASED_CTLS).unwrap() &= !(1u64 << (32 + 22));
    let (caps, _) = read(&m);
    let c = Controls::compute(&caps).unwrap();
    assert!(!c.nmi_window());
    assert!(!c.has(ctl::NMI_EXITING) && !c.has(ctl::VIRTUAL_NMIS));
    // Without virtual NMIs, the same.
    let mut m = bochs_like();
    *m.get_mut(&msr::IA32_VMX_TRUE_PINBASED_CTLS).unwrap() &= !(1u64 << (32 + 5));
    let (caps, _) = read(&m);
    let c = Controls::compute(&caps).unwrap();
    assert!(!c.nmi_window() && !c.has(ctl::NMI_EXITING));
}

#[test]
fn missing_ept_capabilities_are_named() {
    for &(bit, name) in REQUIRED_EPT_VPID {
        let mut m = bochs_like();
        *m.get_mut(&msr::IA32_VMX_EPT_VPID_CAP).unwrap() &= !(1u64 << bit);
        let (caps, _) = read(&m);
        assert_eq!(
            Controls::compute(&caps),
            Err(CapsError::EptVpid { bit, name })
        );
    }
    let mut m = bochs_like();
    *m.get_mut(&msr::IA32_VMX_EPT_VPID_CAP).unwrap() &= !(1u64 << 17);
    let (caps, _) = read(&m);
    assert_eq!(
        std::format!("{}", Controls::compute(&caps).unwrap_err()),
        "the CPU lacks 1 GiB EPT pages (IA32_VMX_EPT_VPID_CAP bit 17)"
    );
}

#[test]
fn oversized_vmcs_is_refused() {
    let mut m = bochs_like();
    let b = m.get_mut(&msr::IA32_VMX_BASIC).unwrap();
    *b = (*b & !(0x1fff << 32)) | (0x1800 << 32);
    let (caps, _) = read(&m);
    assert_eq!(Controls::compute(&caps), Err(CapsError::RegionSize(0x1800)));
}

/// Found by the `x86_controls` fuzz target: a capability MSR that forces a control to 1
/// and does not allow it (no real CPU, but an emulator or a hypervisor below could say so)
/// gave controls outside the allowed 1-settings, which only failed later at VM entry.
#[test]
fn self_contradicting_capability_is_refused() {
    let mut m = bochs_like();
    // TRUE_PINBASED forces bit 8, which its allowed 1-settings (bits 0..=6) lack.
    *m.get_mut(&msr::IA32_VMX_TRUE_PINBASED_CTLS).unwrap() |= 1 << 8;
    let (caps, _) = read(&m);
    let err = Controls::compute(&caps).unwrap_err();
    assert_eq!(
        err,
        CapsError::Contradictory {
            field: ControlField::PinBased,
            bits: 1 << 8
        }
    );
    assert_eq!(
        std::format!("{err}"),
        "the CPU's pin-based controls capability requires bits 0x100 it does not allow"
    );
}

#[test]
fn fixed_bits() {
    let (caps, _) = read(&bochs_like());
    let cr0 = caps.cr0_fixed();
    // PE, NE, PG forced on; nothing forced off in the low 32 bits.
    assert_eq!(cr0.apply(0), 0x8000_0021);
    assert!(cr0.accepts(0x8005_0033));
    assert!(!cr0.accepts(0x8000_0001), "NE clear");
    // Unrestricted guest frees PE and PG, not NE.
    assert_eq!(caps.guest_cr0_fixed(true).apply(0x10), 0x30);
    assert_eq!(caps.guest_cr0_fixed(false).apply(0x10), 0x8000_0031);
    let cr4 = caps.cr4_fixed();
    assert_eq!(cr4.apply(0x20), 0x2020, "VMXE forced on");
    assert!(!cr4.accepts(0x2020 | 1 << 23), "CET not allowed here");
}
