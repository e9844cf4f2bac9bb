use super::*;
use crate::VcpuSet;
use std::vec::Vec;

const W: AccessWidth = AccessWidth::Word;

fn apic(vcpu: usize) -> Lapic {
    Lapic::new(LapicConfig {
        vcpu,
        tsc_per_bus_tick: 1,
    })
}

/// An x2APIC-mode, software-enabled local APIC.
fn x2(vcpu: usize) -> Lapic {
    let mut a = apic(vcpu);
    a.wrmsr(IA32_APIC_BASE, APIC_BASE_DEFAULT | BASE_EXTD, 0)
        .unwrap();
    a.wrmsr(0x80F, 0x1FF, 0).unwrap();
    a
}

/// An xAPIC-mode, software-enabled local APIC.
fn xa(vcpu: usize) -> Lapic {
    let mut a = apic(vcpu);
    a.mmio_write(0xF0, W, 0x1FF, 0).unwrap();
    a
}

#[test]
fn power_on_state() {
    let a = apic(0);
    assert_eq!(a.mode(), ApicMode::XApic);
    assert_eq!(a.apic_base(), 0xFEE0_0900);
    assert_eq!(a.mmio_base(), 0xFEE0_0000);
    assert_eq!(apic(3).apic_base(), 0xFEE0_0800, "only vCPU 0 is the BSP");
    assert!(!a.enabled(), "software-disabled after reset");
    assert_eq!(a.mmio_read(0x20, W, 0), Ok(0));
    assert_eq!(apic(5).mmio_read(0x20, W, 0), Ok(5 << 24));
    assert_eq!(a.mmio_read(0x30, W, 0), Ok(0x0005_0014));
    assert_eq!(a.mmio_read(0xE0, W, 0), Ok(0xFFFF_FFFF));
    assert_eq!(a.mmio_read(0xF0, W, 0), Ok(0xFF));
    for lvt in (0x320..=0x370).step_by(16) {
        assert_eq!(a.mmio_read(lvt, W, 0), Ok(0x1_0000), "LVT {lvt:#x} masked");
    }
    assert_eq!(a.pending_vector(), None);
}

#[test]
fn x2apic_msrs_need_x2apic_mode() {
    let mut a = xa(0);
    assert_eq!(a.rdmsr(0x802, 0), Err(MsrError::NotX2apic));
    assert_eq!(a.wrmsr(0x808, 0, 0), Err(MsrError::NotX2apic));
    assert_eq!(a.rdmsr(0x10, 0), Err(MsrError::NotApic));
    assert_eq!(a.wrmsr(0x900, 0, 0), Err(MsrError::NotApic));
    // IA32_APIC_BASE and the TSC deadline are there in every mode.
    assert!(a.rdmsr(IA32_APIC_BASE, 0).is_ok());
    assert_eq!(a.rdmsr(IA32_TSC_DEADLINE, 0), Ok(0));
}

#[test]
fn x2apic_register_reads() {
    let a = x2(37);
    assert_eq!(a.rdmsr(0x802, 0), Ok(37));
    assert_eq!(a.rdmsr(0x803, 0), Ok(APIC_VERSION as u64));
    // x2APIC LDR: cluster = id >> 4 in 31:16, bit id & 15.
    assert_eq!(a.rdmsr(0x80D, 0), Ok((2 << 16) | (1 << 5)));
    assert_eq!(a.rdmsr(0x80F, 0), Ok(0x1FF));
    assert_eq!(a.rdmsr(0x808, 0), Ok(0));
    assert_eq!(a.rdmsr(0x80A, 0), Ok(0));
    for m in 0x810..=0x827 {
        assert_eq!(a.rdmsr(m, 0), Ok(0), "ISR/TMR/IRR {m:#x}");
    }
    assert_eq!(a.rdmsr(0x828, 0), Ok(0));
    assert_eq!(a.rdmsr(0x830, 0), Ok(0));
    for m in 0x832..=0x837 {
        assert_eq!(a.rdmsr(m, 0), Ok(0x1_0000));
    }
    assert_eq!(a.rdmsr(0x838, 0), Ok(0));
    assert_eq!(a.rdmsr(0x839, 0), Ok(0));
    assert_eq!(a.rdmsr(0x83E, 0), Ok(0));
}

#[test]
fn x2apic_reserved_and_write_only_msrs() {
    let mut a = x2(0);
    // Reserved: everything without a register, plus DFR, ICR high, APR, RRD, CMCI.
    let present = [
        0x802, 0x803, 0x808, 0x80A, 0x80B, 0x80D, 0x80F, 0x828, 0x830, 0x832, 0x833, 0x834, 0x835,
        0x836, 0x837, 0x838, 0x839, 0x83E, 0x83F,
    ];
    for m in X2APIC_MSR_FIRST..=X2APIC_MSR_LAST {
        if present.contains(&m) || (0x810..=0x827).contains(&m) {
            continue;
        }
        assert_eq!(a.rdmsr(m, 0), Err(MsrError::Reserved), "rdmsr {m:#x}");
        assert_eq!(a.wrmsr(m, 0, 0), Err(MsrError::Reserved), "wrmsr {m:#x}");
    }
    for m in [0x80E, 0x831, 0x809, 0x80C, 0x82F] {
        assert_eq!(a.rdmsr(m, 0), Err(MsrError::Reserved));
    }
    assert_eq!(a.rdmsr(0x80B, 0), Err(MsrError::WriteOnly), "EOI");
    assert_eq!(a.rdmsr(0x83F, 0), Err(MsrError::WriteOnly), "SELF IPI");
}

#[test]
fn x2apic_read_only_registers_fault_on_write() {
    let mut a = x2(1);
    for m in [0x802, 0x803, 0x80A, 0x80D, 0x839]
        .into_iter()
        .chain(0x810..=0x827)
    {
        assert_eq!(a.wrmsr(m, 0, 0), Err(MsrError::ReadOnly), "{m:#x}");
    }
    assert_eq!(a.rdmsr(0x802, 0), Ok(1));
}

#[test]
fn x2apic_reserved_bits_fault() {
    let mut a = x2(0);
    assert_eq!(
        a.wrmsr(0x808, 0x100, 0),
        Err(MsrError::ReservedBits),
        "TPR 31:8"
    );
    assert_eq!(
        a.wrmsr(0x808, 1 << 32, 0),
        Err(MsrError::ReservedBits),
        "TPR 63:32"
    );
    assert_eq!(
        a.wrmsr(0x80B, 1, 0),
        Err(MsrError::ReservedBits),
        "EOI non-zero"
    );
    assert_eq!(
        a.wrmsr(0x828, 1, 0),
        Err(MsrError::ReservedBits),
        "ESR non-zero"
    );
    assert_eq!(
        a.wrmsr(0x80F, 1 << 12, 0),
        Err(MsrError::ReservedBits),
        "no EOI suppression"
    );
    assert_eq!(a.wrmsr(0x80F, 1 << 13, 0), Err(MsrError::ReservedBits));
    assert_eq!(
        a.wrmsr(0x832, 3 << 17, 0),
        Err(MsrError::ReservedBits),
        "timer mode 3"
    );
    assert_eq!(
        a.wrmsr(0x832, 1 << 8, 0),
        Err(MsrError::ReservedBits),
        "timer delivery mode"
    );
    assert_eq!(
        a.wrmsr(0x837, 1 << 8, 0),
        Err(MsrError::ReservedBits),
        "error delivery"
    );
    assert_eq!(
        a.wrmsr(0x833, 1 << 13, 0),
        Err(MsrError::ReservedBits),
        "thermal polarity"
    );
    assert_eq!(
        a.wrmsr(0x835, 1 << 17, 0),
        Err(MsrError::ReservedBits),
        "LINT0 17"
    );
    assert_eq!(
        a.wrmsr(0x838, 1 << 32, 0),
        Err(MsrError::ReservedBits),
        "TMICT 63:32"
    );
    assert_eq!(
        a.wrmsr(0x83E, 4, 0),
        Err(MsrError::ReservedBits),
        "TDCR bit 2"
    );
    assert_eq!(
        a.wrmsr(0x83F, 0x100, 0),
        Err(MsrError::ReservedBits),
        "SELF IPI 31:8"
    );
    for bit in [13, 16, 17, 20, 31] {
        assert_eq!(
            a.wrmsr(0x830, (1 << bit) | 0x40, 0),
            Err(MsrError::ReservedBits),
            "ICR {bit}"
        );
    }
    // The read-only status bits of an LVT are ignored, not faulted.
    assert_eq!(a.wrmsr(0x835, (1 << 12) | (1 << 14) | 0x30, 0), Ok(None));
    assert_eq!(a.rdmsr(0x835, 0), Ok(0x30));
    // ICR bit 12 (delivery status) is ignored and reads 0.
    assert!(a.wrmsr(0x830, (1 << 12) | 0x40 | (5 << 32), 0).is_ok());
    assert_eq!(a.rdmsr(0x830, 0), Ok(0x40 | (5 << 32)));
    // Nothing changed by the refused writes.
    assert_eq!(a.rdmsr(0x808, 0), Ok(0));
    assert_eq!(a.rdmsr(0x80F, 0), Ok(0x1FF));
}

#[test]
fn x2apic_writable_registers_round_trip() {
    let mut a = x2(0);
    a.wrmsr(0x808, 0x5A, 0).unwrap();
    assert_eq!(a.rdmsr(0x808, 0), Ok(0x5A));
    a.wrmsr(0x80F, 0x3FF, 0).unwrap();
    assert_eq!(a.rdmsr(0x80F, 0), Ok(0x3FF));
    a.wrmsr(0x832, (1 << 17) | 0xEC, 0).unwrap();
    assert_eq!(a.rdmsr(0x832, 0), Ok((1 << 17) | 0xEC));
    a.wrmsr(0x835, 0x700, 0).unwrap();
    assert_eq!(a.rdmsr(0x835, 0), Ok(0x700));
    a.wrmsr(0x836, 0x400, 0).unwrap();
    assert_eq!(a.rdmsr(0x836, 0), Ok(0x400));
    a.wrmsr(0x837, 0xFE, 0).unwrap();
    assert_eq!(a.rdmsr(0x837, 0), Ok(0xFE));
    a.wrmsr(0x83E, 0xB, 0).unwrap();
    assert_eq!(a.rdmsr(0x83E, 0), Ok(0xB));
}

#[test]
fn apic_base_transitions() {
    let mut a = apic(0);
    let xapic = APIC_BASE_DEFAULT;
    let x2apic = APIC_BASE_DEFAULT | BASE_EXTD;
    let disabled = 0xFEE0_0000;
    // xAPIC → x2APIC → disabled → xAPIC → disabled.
    assert_eq!(a.wrmsr(IA32_APIC_BASE, x2apic, 0), Ok(None));
    assert_eq!(a.mode(), ApicMode::X2Apic);
    // x2APIC → xAPIC is illegal.
    assert_eq!(
        a.wrmsr(IA32_APIC_BASE, xapic, 0),
        Err(MsrError::IllegalTransition)
    );
    assert_eq!(a.mode(), ApicMode::X2Apic);
    assert_eq!(a.wrmsr(IA32_APIC_BASE, disabled, 0), Ok(None));
    assert_eq!(a.mode(), ApicMode::Disabled);
    // disabled → x2APIC is illegal.
    assert_eq!(
        a.wrmsr(IA32_APIC_BASE, x2apic, 0),
        Err(MsrError::IllegalTransition)
    );
    // EN=0 with EXTD=1 is an invalid state.
    assert_eq!(
        a.wrmsr(IA32_APIC_BASE, disabled | BASE_EXTD, 0),
        Err(MsrError::IllegalTransition)
    );
    assert_eq!(a.wrmsr(IA32_APIC_BASE, xapic, 0), Ok(None));
    assert_eq!(a.mode(), ApicMode::XApic);
    // Same mode again is fine.
    assert_eq!(a.wrmsr(IA32_APIC_BASE, xapic, 0), Ok(None));
    // Reserved bits: 7:0, 9, 63:52.
    for bit in [0, 7, 9, 52, 63] {
        assert_eq!(
            a.wrmsr(IA32_APIC_BASE, xapic | (1 << bit), 0),
            Err(MsrError::ReservedBits),
            "bit {bit}"
        );
    }
    // BSP is read-only.
    a.wrmsr(IA32_APIC_BASE, xapic & !BASE_BSP, 0).unwrap();
    assert_eq!(a.apic_base() & BASE_BSP, BASE_BSP);
    let mut b = apic(1);
    b.wrmsr(IA32_APIC_BASE, xapic | BASE_BSP, 0).unwrap();
    assert_eq!(b.apic_base() & BASE_BSP, 0);
    // A moved page is recorded.
    b.wrmsr(IA32_APIC_BASE, 0xFED0_0000 | BASE_EN, 0).unwrap();
    assert_eq!(b.mmio_base(), 0xFED0_0000);
}

#[test]
fn disabling_resets_and_blocks() {
    let mut a = x2(0);
    a.wrmsr(0x808, 0x20, 0).unwrap();
    assert!(a.accept(0x40, false));
    a.wrmsr(IA32_APIC_BASE, 0xFEE0_0000, 0).unwrap();
    assert_eq!(a.mode(), ApicMode::Disabled);
    assert!(!a.irr(0x40), "state reset");
    assert!(!a.accept(0x41, false), "a disabled APIC takes nothing");
    assert_eq!(a.pending_vector(), None);
    assert_eq!(a.rdmsr(0x802, 0), Err(MsrError::NotX2apic));
    assert_eq!(a.mmio_read(0x20, W, 0), Ok(0), "the page is gone too");
    // Back through xAPIC to x2APIC: registers at reset values, LDR from the ID.
    a.wrmsr(IA32_APIC_BASE, APIC_BASE_DEFAULT, 0).unwrap();
    assert_eq!(a.mmio_read(0x80, W, 0), Ok(0));
    assert_eq!(a.mmio_read(0xF0, W, 0), Ok(0xFF));
    a.wrmsr(IA32_APIC_BASE, APIC_BASE_DEFAULT | BASE_EXTD, 0)
        .unwrap();
    assert_eq!(a.rdmsr(0x80D, 0), Ok(1));
}

#[test]
fn xapic_page_access_rules() {
    let mut a = xa(2);
    assert_eq!(
        a.mmio_read(0x20, AccessWidth::Byte, 0),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(
        a.mmio_read(0x20, AccessWidth::Dword, 0),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(a.mmio_read(0x22, W, 0), Err(DeviceError::Misaligned));
    assert_eq!(a.mmio_read(LAPIC_SIZE, W, 0), Err(DeviceError::BadOffset));
    assert_eq!(a.mmio_write(0x81, W, 0, 0), Err(DeviceError::Misaligned));
    assert_eq!(
        a.mmio_write(0x80, AccessWidth::Half, 0, 0),
        Err(DeviceError::BadWidth)
    );
    // The other words of a slot read 0 and ignore writes.
    assert_eq!(a.mmio_read(0x24, W, 0), Ok(0));
    a.mmio_write(0x84, W, 0xFF, 0).unwrap();
    assert_eq!(a.mmio_read(0x80, W, 0), Ok(0));
    // Read-only registers ignore writes.
    a.mmio_write(0x20, W, 0x0700_0000, 0).unwrap();
    assert_eq!(a.mmio_read(0x20, W, 0), Ok(2 << 24));
    a.mmio_write(0x30, W, 0, 0).unwrap();
    assert_eq!(a.mmio_read(0x30, W, 0), Ok(APIC_VERSION as u64));
    // EOI and SELF IPI read 0; ICR bit 12 reads 0.
    assert_eq!(a.mmio_read(0xB0, W, 0), Ok(0));
    assert_eq!(a.mmio_read(0x3F0, W, 0), Ok(0));
    // Reserved bits dropped.
    a.mmio_write(0x80, W, 0xFFFF_FFFF, 0).unwrap();
    assert_eq!(a.mmio_read(0x80, W, 0), Ok(0xFF));
    a.mmio_write(0xD0, W, 0xFFFF_FFFF, 0).unwrap();
    assert_eq!(a.mmio_read(0xD0, W, 0), Ok(0xFF00_0000));
    a.mmio_write(0xE0, W, 0, 0).unwrap();
    assert_eq!(a.mmio_read(0xE0, W, 0), Ok(0x0FFF_FFFF));
    a.mmio_write(0x320, W, 0xFFFF_FFFF, 0).unwrap();
    assert_eq!(a.mmio_read(0x320, W, 0), Ok(0x0007_00FF));
    a.mmio_write(0x3E0, W, 0xFF, 0).unwrap();
    assert_eq!(a.mmio_read(0x3E0, W, 0), Ok(0xB));
    a.mmio_write(0x310, W, 0xFFFF_FFFF, 0).unwrap();
    assert_eq!(a.mmio_read(0x310, W, 0), Ok(0xFF00_0000));
    // A write to a register that does not exist is an ESR error.
    a.mmio_write(0x3C0, W, 1, 0).unwrap();
    a.mmio_write(0x280, W, 0, 0).unwrap();
    assert_eq!(a.mmio_read(0x280, W, 0), Ok(ESR_ILLEGAL_REG as u64));
}

#[test]
fn xapic_page_is_gone_in_x2apic_mode() {
    let mut a = x2(0);
    assert_eq!(a.mmio_read(0x30, W, 0), Ok(0));
    assert_eq!(a.mmio_write(0x80, W, 0x30, 0), Ok(None));
    assert_eq!(a.rdmsr(0x808, 0), Ok(0));
}

#[test]
fn priorities_and_acknowledge() {
    let mut a = x2(0);
    assert!(a.accept(0x31, false));
    assert!(a.accept(0x52, false));
    assert!(a.accept(0x51, false));
    assert_eq!(a.highest_irr(), Some(0x52));
    assert_eq!(a.pending_vector(), Some(0x52));
    // TPR 0x50 blocks class 5 and below.
    a.wrmsr(0x808, 0x50, 0).unwrap();
    assert_eq!(a.rdmsr(0x80A, 0), Ok(0x50));
    assert_eq!(a.pending_vector(), None);
    assert_eq!(a.acknowledge(), None);
    a.wrmsr(0x808, 0x4F, 0).unwrap();
    assert_eq!(a.acknowledge(), Some(0x52));
    assert!(a.isr(0x52) && !a.irr(0x52));
    // PPR = the in-service class (above TPR's).
    assert_eq!(a.ppr(), 0x50);
    // 0x51 is the same class as 0x52 in service: blocked.
    assert_eq!(a.pending_vector(), None);
    // A higher class preempts.
    assert!(a.accept(0x61, false));
    assert_eq!(a.acknowledge(), Some(0x61));
    assert_eq!(a.ppr(), 0x60);
    assert_eq!(a.rdmsr(0x810 + 3, 0), Ok(1 << 1), "ISR word 3 bit 1 = 0x61");
    // EOI ends the highest in service first.
    assert_eq!(a.wrmsr(0x80B, 0, 0), Ok(None));
    assert!(!a.isr(0x61) && a.isr(0x52));
    assert_eq!(a.wrmsr(0x80B, 0, 0), Ok(None));
    assert_eq!(a.highest_isr(), None);
    assert_eq!(a.ppr(), 0x4F, "PPR = TPR when it is higher");
    assert_eq!(a.acknowledge(), Some(0x51));
    a.wrmsr(0x80B, 0, 0).unwrap();
    // TPR 0x3F still lets 0x31 (class 3) wait: the class must be above.
    a.wrmsr(0x808, 0x30, 0).unwrap();
    assert_eq!(a.pending_vector(), None);
    a.wrmsr(0x808, 0x2F, 0).unwrap();
    assert_eq!(a.acknowledge(), Some(0x31));
}

#[test]
fn eoi_without_service_is_harmless() {
    let mut a = x2(0);
    for _ in 0..3 {
        assert_eq!(a.wrmsr(0x80B, 0, 0), Ok(None));
    }
    let mut b = xa(0);
    assert_eq!(b.mmio_write(0xB0, W, 0, 0), Ok(None));
    assert_eq!(b.highest_isr(), None);
}

#[test]
fn level_triggered_eoi_is_broadcast() {
    let mut a = x2(0);
    assert!(a.accept(0x41, true));
    assert!(a.accept(0x40, false));
    assert!(a.tmr(0x41) && !a.tmr(0x40));
    assert_eq!(a.rdmsr(0x818 + 2, 0), Ok(1 << 1));
    assert_eq!(a.acknowledge(), Some(0x41));
    assert_eq!(a.wrmsr(0x80B, 0, 0), Ok(Some(Effect::Eoi(0x41))));
    assert_eq!(a.acknowledge(), Some(0x40));
    assert_eq!(a.wrmsr(0x80B, 0, 0), Ok(None), "edge: no broadcast");
    // xAPIC page too.
    let mut b = xa(0);
    b.accept(0x90, true);
    b.acknowledge();
    assert_eq!(b.mmio_write(0xB0, W, 0, 0), Ok(Some(Effect::Eoi(0x90))));
}

#[test]
fn illegal_vectors_and_software_disable() {
    let mut a = x2(0);
    a.wrmsr(0x837, 0xE0, 0).unwrap(); // error LVT unmasked, vector 0xE0
    assert!(!a.accept(5, false));
    assert!(!a.irr(5));
    assert!(a.irr(0xE0), "the error interrupt");
    a.wrmsr(0x828, 0, 0).unwrap();
    assert_eq!(a.rdmsr(0x828, 0), Ok(ESR_RECV_ILLEGAL as u64));
    a.wrmsr(0x828, 0, 0).unwrap();
    assert_eq!(a.rdmsr(0x828, 0), Ok(0), "ESR write latches and clears");
    // Sending a vector below 16.
    assert_eq!(a.wrmsr(0x830, 0x0F | (1 << 32), 0), Ok(None));
    a.wrmsr(0x828, 0, 0).unwrap();
    assert_eq!(a.rdmsr(0x828, 0), Ok(ESR_SEND_ILLEGAL as u64));
    // SVR bit 8 clear: fixed interrupts dropped, LVTs masked and stay masked.
    a.wrmsr(0x80F, 0xFF, 0).unwrap();
    assert!(!a.enabled());
    assert!(!a.accept(0x50, false));
    assert_eq!(a.rdmsr(0x837, 0), Ok(0x1_00E0));
    a.wrmsr(0x837, 0xE0, 0).unwrap();
    assert_eq!(a.rdmsr(0x837, 0), Ok(0x1_00E0));
    // NMIs still arrive.
    a.raise_nmi();
    assert!(a.take_nmi());
    assert!(!a.take_nmi());
    // Requests already there survive the software disable.
    assert!(a.irr(0xE0));
}

#[test]
fn repeated_request_is_one() {
    let mut a = x2(0);
    assert!(a.accept(0x50, false));
    assert!(a.accept(0x50, false));
    assert_eq!(a.acknowledge(), Some(0x50));
    assert_eq!(a.acknowledge(), None);
    // The same vector may be requested again while in service.
    assert!(a.accept(0x50, false));
    assert_eq!(a.pending_vector(), None, "same class in service");
    a.wrmsr(0x80B, 0, 0).unwrap();
    assert_eq!(a.acknowledge(), Some(0x50));
}

#[test]
fn self_ipis_are_taken_locally() {
    let mut a = x2(3);
    assert_eq!(a.wrmsr(0x83F, 0x45, 0), Ok(None));
    assert!(a.irr(0x45));
    // ICR self shorthand, fixed.
    assert_eq!(a.wrmsr(0x830, 0x46 | (1 << 18), 0), Ok(None));
    assert!(a.irr(0x46));
    // Self shorthand with another delivery mode does nothing.
    assert_eq!(a.wrmsr(0x830, 0x47 | (4 << 8) | (1 << 18), 0), Ok(None));
    assert!(!a.irr(0x47));
    assert!(!a.take_nmi());
    // SELF IPI with a vector below 16 is a send error.
    a.wrmsr(0x83F, 3, 0).unwrap();
    a.wrmsr(0x828, 0, 0).unwrap();
    assert_eq!(a.rdmsr(0x828, 0), Ok(ESR_SEND_ILLEGAL as u64));
}

fn ipi(effect: Result<Option<Effect>, MsrError>) -> Message {
    match effect {
        Ok(Some(Effect::Ipi(m))) => m,
        other => panic!("expected an IPI, got {other:?}"),
    }
}

#[test]
fn x2apic_ipis() {
    let mut a = x2(1);
    // Fixed, physical.
    let m = ipi(a.wrmsr(0x830, 0x40 | (7 << 32), 0));
    assert_eq!(
        m,
        Message {
            dest: Destination::Physical(7),
            delivery: Delivery::Fixed,
            vector: 0x40,
            level: false
        }
    );
    // Physical broadcast.
    assert_eq!(
        ipi(a.wrmsr(0x830, 0x40 | (0xFFFF_FFFF << 32), 0)).dest,
        Destination::All
    );
    // Logical (cluster 1, bits 0 and 2).
    let m = ipi(a.wrmsr(0x830, 0x41 | (1 << 11) | (0x0001_0005 << 32), 0));
    assert_eq!(m.dest, Destination::Logical(0x0001_0005));
    // Shorthands.
    assert_eq!(
        ipi(a.wrmsr(0x830, 0x42 | (2 << 18), 0)).dest,
        Destination::All
    );
    assert_eq!(
        ipi(a.wrmsr(0x830, 0x42 | (3 << 18), 0)).dest,
        Destination::AllBut(1)
    );
    // NMI, INIT, SIPI.
    let m = ipi(a.wrmsr(0x830, (4 << 8) | (2 << 32), 0));
    assert_eq!(
        (m.delivery, m.dest),
        (Delivery::Nmi, Destination::Physical(2))
    );
    let m = ipi(a.wrmsr(0x830, (5 << 8) | (1 << 14) | (3 << 18), 0));
    assert_eq!(
        (m.delivery, m.dest),
        (Delivery::Init, Destination::AllBut(1))
    );
    let m = ipi(a.wrmsr(0x830, 0x9A | (6 << 8) | (2 << 32), 0));
    assert_eq!((m.delivery, m.vector), (Delivery::StartUp, 0x9A));
    // INIT level de-assert: nothing.
    assert_eq!(
        a.wrmsr(0x830, (5 << 8) | (1 << 15) | (3 << 18), 0),
        Ok(None)
    );
    // Reserved delivery mode 011: nothing.
    assert_eq!(a.wrmsr(0x830, 0x40 | (3 << 8) | (2 << 32), 0), Ok(None));
    // Level-triggered fixed IPI keeps its trigger mode.
    assert!(ipi(a.wrmsr(0x830, 0x40 | (1 << 14) | (1 << 15) | (2 << 32), 0)).level);
    // Lowest priority.
    assert_eq!(
        ipi(a.wrmsr(0x830, 0x40 | (1 << 8) | (2 << 32), 0)).delivery,
        Delivery::LowestPriority
    );
}

#[test]
fn xapic_ipis() {
    let mut a = xa(0);
    a.mmio_write(0x310, W, 3 << 24, 0).unwrap();
    let m = match a.mmio_write(0x300, W, 0x4040, 0) {
        Ok(Some(Effect::Ipi(m))) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(m.dest, Destination::Physical(3));
    assert_eq!(a.mmio_read(0x300, W, 0), Ok(0x4040));
    a.mmio_write(0x310, W, 0xFF << 24, 0).unwrap();
    assert!(matches!(
        a.mmio_write(0x300, W, 0x40, 0),
        Ok(Some(Effect::Ipi(Message {
            dest: Destination::All,
            ..
        })))
    ));
    a.mmio_write(0x310, W, 0x0C << 24, 0).unwrap();
    assert!(matches!(
        a.mmio_write(0x300, W, 0x840, 0),
        Ok(Some(Effect::Ipi(Message {
            dest: Destination::Logical(0x0C),
            ..
        })))
    ));
    // Writing ICR high alone sends nothing.
    assert_eq!(a.mmio_write(0x310, W, 0, 0), Ok(None));
}

#[test]
fn logical_destinations() {
    // x2APIC cluster mode: vCPU 18 is cluster 1, bit 2.
    let a = x2(18);
    assert!(a.logical_match(0x0001_0004));
    assert!(a.logical_match(0x0001_FFFF));
    assert!(!a.logical_match(0x0001_0008));
    assert!(!a.logical_match(0x0000_0004), "other cluster");
    assert!(a.logical_match(u32::MAX), "broadcast");
    // xAPIC flat model.
    let mut b = xa(0);
    b.mmio_write(0xD0, W, 0x0400_0000, 0).unwrap();
    assert!(b.logical_match(0x04));
    assert!(b.logical_match(0x0F));
    assert!(!b.logical_match(0x08));
    assert!(b.logical_match(0xFF));
    // xAPIC cluster model: cluster 2, bit 1.
    b.mmio_write(0xE0, W, 0x0FFF_FFFF, 0).unwrap();
    b.mmio_write(0xD0, W, 0x2200_0000, 0).unwrap();
    assert!(b.logical_match(0x22));
    assert!(b.logical_match(0x23));
    assert!(!b.logical_match(0x32));
    assert!(!b.logical_match(0x21));
    assert!(b.logical_match(0xF2), "all clusters");
    // Disabled: nothing.
    let mut c = xa(0);
    c.wrmsr(IA32_APIC_BASE, 0, 0).unwrap();
    assert!(!c.logical_match(0xFF));
    // Resolution across vCPUs.
    let apics: [Lapic; 4] = core::array::from_fn(x2);
    let set = Destination::Logical(0x0000_000A).resolve(4, |i, mda| apics[i].logical_match(mda));
    assert_eq!(set.bits(), 0b1010);
    assert_eq!(set, {
        let mut s = VcpuSet::EMPTY;
        s.insert(1);
        s.insert(3);
        s
    });
}

#[test]
fn init_reset_keeps_id_and_mode() {
    let mut a = x2(9);
    a.wrmsr(0x808, 0x30, 0).unwrap();
    a.accept(0x80, true);
    a.acknowledge();
    a.raise_nmi();
    a.wrmsr(0x838, 100, 0).unwrap();
    a.init();
    assert_eq!(a.mode(), ApicMode::X2Apic);
    assert_eq!(a.rdmsr(0x802, 0), Ok(9));
    assert_eq!(a.rdmsr(0x80D, 0), Ok((1 << 9) as u64));
    assert_eq!(a.rdmsr(0x808, 0), Ok(0));
    assert_eq!(a.highest_isr(), None);
    assert!(!a.tmr(0x80));
    assert!(!a.take_nmi());
    assert!(!a.enabled());
    assert_eq!(a.next_deadline(), None);
}

// ---- timer ----

fn timer_apic(tsc_per_bus_tick: u64) -> Lapic {
    let mut a = Lapic::new(LapicConfig {
        vcpu: 0,
        tsc_per_bus_tick,
    });
    a.wrmsr(IA32_APIC_BASE, APIC_BASE_DEFAULT | BASE_EXTD, 0)
        .unwrap();
    a.wrmsr(0x80F, 0x1FF, 0).unwrap();
    a
}

#[test]
fn one_shot_timer() {
    let mut a = timer_apic(2);
    a.wrmsr(0x83E, 0xB, 0).unwrap(); // divide by 1
    a.wrmsr(0x832, 0xEF, 0).unwrap(); // one-shot, vector 0xEF
    a.wrmsr(0x838, 1000, 100).unwrap();
    assert_eq!(a.next_deadline(), Some(100 + 2000));
    assert_eq!(a.rdmsr(0x839, 100), Ok(1000));
    assert_eq!(a.rdmsr(0x839, 600), Ok(750));
    assert!(!a.tick(2099));
    assert!(!a.irr(0xEF));
    assert!(a.tick(2100));
    assert!(a.irr(0xEF));
    assert_eq!(a.rdmsr(0x839, 5000), Ok(0));
    assert_eq!(a.next_deadline(), None, "one-shot does not re-arm");
    assert!(!a.tick(1_000_000));
    assert_eq!(a.rdmsr(0x838, 0), Ok(1000), "TMICT keeps its value");
    // TMICT 0 stops the timer.
    a.wrmsr(0x838, 10, 0).unwrap();
    a.wrmsr(0x838, 0, 0).unwrap();
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn divide_configuration() {
    let mut a = timer_apic(1);
    let cases = [
        (0x0, 2),
        (0x1, 4),
        (0x2, 8),
        (0x3, 16),
        (0x8, 32),
        (0x9, 64),
        (0xA, 128),
        (0xB, 1),
    ];
    for (tdcr, div) in cases {
        a.wrmsr(0x83E, tdcr, 0).unwrap();
        a.wrmsr(0x838, 10, 0).unwrap();
        assert_eq!(a.next_deadline(), Some(10 * div), "TDCR {tdcr:#x}");
    }
}

#[test]
fn divide_change_keeps_the_count() {
    let mut a = timer_apic(1);
    a.wrmsr(0x83E, 0xB, 0).unwrap();
    a.wrmsr(0x832, 0x40, 0).unwrap();
    a.wrmsr(0x838, 100, 0).unwrap();
    assert_eq!(a.rdmsr(0x839, 40), Ok(60));
    a.wrmsr(0x83E, 0x0, 40).unwrap(); // divide by 2
    assert_eq!(a.rdmsr(0x839, 40), Ok(60));
    assert_eq!(a.rdmsr(0x839, 60), Ok(50));
    assert_eq!(a.next_deadline(), Some(160));
}

#[test]
fn periodic_timer() {
    let mut a = timer_apic(1);
    a.wrmsr(0x83E, 0xB, 0).unwrap();
    a.wrmsr(0x832, (1 << 17) | 0xEE, 0).unwrap();
    a.wrmsr(0x838, 100, 0).unwrap();
    assert_eq!(a.rdmsr(0x839, 250), Ok(50));
    assert!(a.tick(100));
    assert_eq!(a.next_deadline(), Some(200));
    assert_eq!(a.acknowledge(), Some(0xEE));
    a.wrmsr(0x80B, 0, 0).unwrap();
    // Late by several periods: one interrupt, re-armed on the period grid.
    assert!(a.tick(555));
    assert_eq!(a.next_deadline(), Some(600));
    assert!(a.irr(0xEE));
    assert!(!a.tick(599));
    assert!(a.tick(600));
    assert_eq!(a.next_deadline(), Some(700));
}

#[test]
fn masked_timer_counts_but_does_not_interrupt() {
    let mut a = timer_apic(1);
    a.wrmsr(0x83E, 0xB, 0).unwrap();
    a.wrmsr(0x832, (1 << 17) | (1 << 16) | 0xEE, 0).unwrap();
    a.wrmsr(0x838, 10, 0).unwrap();
    assert!(a.tick(10));
    assert!(!a.irr(0xEE));
    assert_eq!(a.next_deadline(), Some(20));
    assert_eq!(a.highest_irr(), None);
}

#[test]
fn tsc_deadline_timer() {
    let mut a = timer_apic(1);
    // Not in deadline mode: the MSR reads 0, writes are ignored.
    a.wrmsr(IA32_TSC_DEADLINE, 5000, 0).unwrap();
    assert_eq!(a.rdmsr(IA32_TSC_DEADLINE, 0), Ok(0));
    assert_eq!(a.next_deadline(), None);
    a.wrmsr(0x832, (2 << 17) | 0xEC, 0).unwrap();
    a.wrmsr(IA32_TSC_DEADLINE, 5000, 0).unwrap();
    assert_eq!(a.rdmsr(IA32_TSC_DEADLINE, 0), Ok(5000));
    assert_eq!(a.next_deadline(), Some(5000));
    // TMICT is ignored in deadline mode, the current count reads 0.
    a.wrmsr(0x838, 7, 0).unwrap();
    assert_eq!(a.next_deadline(), Some(5000));
    assert_eq!(a.rdmsr(0x839, 10), Ok(0));
    assert!(!a.tick(4999));
    assert!(a.tick(5000));
    assert!(a.irr(0xEC));
    assert_eq!(
        a.rdmsr(IA32_TSC_DEADLINE, 0),
        Ok(0),
        "cleared when it fires"
    );
    assert_eq!(a.next_deadline(), None);
    // A deadline in the past fires at the next tick; 0 disarms.
    a.wrmsr(IA32_TSC_DEADLINE, 10, 100).unwrap();
    assert!(a.tick(100));
    a.wrmsr(IA32_TSC_DEADLINE, 300, 100).unwrap();
    a.wrmsr(IA32_TSC_DEADLINE, 0, 100).unwrap();
    assert_eq!(a.next_deadline(), None);
    // Leaving deadline mode disarms.
    a.wrmsr(IA32_TSC_DEADLINE, 300, 100).unwrap();
    a.wrmsr(0x832, 0xEC, 100).unwrap();
    assert_eq!(a.next_deadline(), None);
    assert_eq!(a.rdmsr(IA32_TSC_DEADLINE, 0), Ok(0));
}

#[test]
fn timer_arithmetic_saturates() {
    let mut a = timer_apic(u64::MAX);
    a.wrmsr(0x83E, 0xA, 0).unwrap();
    a.wrmsr(0x832, 1 << 17 | 0x40, 0).unwrap();
    a.wrmsr(0x838, u32::MAX as u64, u64::MAX - 5).unwrap();
    assert_eq!(a.next_deadline(), Some(u64::MAX));
    assert!(a.tick(u64::MAX));
    let _ = a.rdmsr(0x839, u64::MAX);
    let _ = a.rdmsr(0x839, 0);
    // Time going backwards does not panic either.
    a.wrmsr(0x838, 5, 1000).unwrap();
    assert_eq!(a.rdmsr(0x839, 10), Ok(5));
}

#[test]
fn xapic_timer_registers() {
    let mut a = xa(0);
    a.mmio_write(0x3E0, W, 0xB, 0).unwrap();
    a.mmio_write(0x320, W, 0x30, 0).unwrap();
    a.mmio_write(0x380, W, 50, 10).unwrap();
    assert_eq!(a.mmio_read(0x390, W, 30), Ok(30));
    assert_eq!(a.mmio_read(0x380, W, 30), Ok(50));
    a.mmio_write(0x390, W, 7, 30).unwrap();
    assert_eq!(
        a.mmio_read(0x390, W, 30),
        Ok(30),
        "current count is read-only"
    );
    assert!(a.tick(60));
    assert_eq!(a.pending_vector(), Some(0x30));
}

#[test]
fn xapic_software_disable_keeps_lvts_masked() {
    let mut a = apic(0);
    a.mmio_write(0x350, W, 0x700, 0).unwrap();
    assert_eq!(
        a.mmio_read(0x350, W, 0),
        Ok(0x1_0700),
        "masked while SVR bit 8 is clear"
    );
    a.mmio_write(0xF0, W, 0x1FF, 0).unwrap();
    a.mmio_write(0x350, W, 0x700, 0).unwrap();
    assert_eq!(a.mmio_read(0x350, W, 0), Ok(0x700));
    a.mmio_write(0xF0, W, 0xFF, 0).unwrap();
    assert_eq!(
        a.mmio_read(0x350, W, 0),
        Ok(0x1_0700),
        "disabling masks them all"
    );
}

#[test]
fn arbitration_priority() {
    let mut a = xa(0);
    a.mmio_write(0x80, W, 0x20, 0).unwrap();
    assert_eq!(a.mmio_read(0x90, W, 0), Ok(0x20));
    a.accept(0x45, false);
    assert_eq!(
        a.mmio_read(0x90, W, 0),
        Ok(0x40),
        "a higher requested class"
    );
    a.acknowledge();
    assert_eq!(a.mmio_read(0x90, W, 0), Ok(0x40), "in service");
    a.mmio_write(0x80, W, 0x5F, 0).unwrap();
    assert_eq!(a.mmio_read(0x90, W, 0), Ok(0x5F));
    assert_eq!(a.mmio_read(0xA0, W, 0), Ok(0x5F));
    assert_eq!(a.mmio_read(0xC0, W, 0), Ok(0), "remote read");
}

#[test]
fn xapic_has_no_self_ipi_register() {
    let mut a = xa(0);
    a.mmio_write(0x3F0, W, 0x40, 0).unwrap();
    assert!(!a.irr(0x40));
    a.mmio_write(0x280, W, 0, 0).unwrap();
    assert_eq!(a.mmio_read(0x280, W, 0), Ok(ESR_ILLEGAL_REG as u64));
}

/// A VM in miniature: routes an ICR write the way the VM is expected to.
fn route(apics: &mut [Lapic], from: usize, icr: u64) -> Vec<(usize, Delivery, u8)> {
    let mut got = Vec::new();
    let effect = apics[from].wrmsr(0x830, icr, 0).unwrap();
    let Some(Effect::Ipi(m)) = effect else {
        return got;
    };
    let set = m
        .dest
        .resolve(apics.len(), |i, mda| apics[i].logical_match(mda));
    let targets: Vec<usize> = if m.delivery == Delivery::LowestPriority {
        set.first().into_iter().collect()
    } else {
        set.iter().collect()
    };
    for i in targets {
        match m.delivery {
            Delivery::Fixed | Delivery::LowestPriority => {
                apics[i].accept(m.vector, m.level);
            }
            Delivery::Nmi => apics[i].raise_nmi(),
            Delivery::Init => apics[i].init(),
            _ => {}
        }
        got.push((i, m.delivery, m.vector));
    }
    got
}

#[test]
fn bring_up_secondaries_with_init_sipi() {
    let mut apics: Vec<Lapic> = (0..4).map(x2).collect();
    apics[2].accept(0x99, false);
    // INIT (assert) to all but self, then a start-up IPI at page 0x9A.
    let init = route(&mut apics, 0, (5 << 8) | (1 << 14) | (3 << 18));
    assert_eq!(init.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(!apics[2].irr(0x99), "INIT reset the target");
    let sipi = route(&mut apics, 0, 0x9A | (6 << 8) | (3 << 18));
    assert_eq!(
        sipi,
        [
            (1, Delivery::StartUp, 0x9A),
            (2, Delivery::StartUp, 0x9A),
            (3, Delivery::StartUp, 0x9A)
        ]
    );
    // Linux's per-CPU form: physical destination.
    let one = route(&mut apics, 0, 0x9A | (6 << 8) | (3 << 32));
    assert_eq!(one, [(3, Delivery::StartUp, 0x9A)]);
}

#[test]
fn ipis_between_vcpus() {
    let mut apics: Vec<Lapic> = (0..20).map(x2).collect();
    // x2APIC cluster mode: cluster 1 (vCPUs 16..=19), bits 0 and 3 → vCPUs 16 and 19.
    let got = route(&mut apics, 0, 0xF2 | (1 << 11) | (0x0001_0009 << 32));
    assert_eq!(got.iter().map(|t| t.0).collect::<Vec<_>>(), [16, 19]);
    assert!(apics[16].irr(0xF2) && apics[19].irr(0xF2) && !apics[17].irr(0xF2));
    // All including self.
    let got = route(&mut apics, 5, 0xF3 | (2 << 18));
    assert_eq!(got.len(), 20);
    assert!(apics[5].irr(0xF3));
    // Lowest priority: one target.
    let got = route(&mut apics, 5, 0xF4 | (1 << 8) | (3 << 18));
    assert_eq!(got, [(0, Delivery::LowestPriority, 0xF4)]);
    // NMI to one vCPU.
    route(&mut apics, 0, (4 << 8) | (7 << 32));
    assert!(apics[7].take_nmi());
    assert!(!apics[6].take_nmi());
    // A physical destination that does not exist reaches nobody.
    assert!(route(&mut apics, 0, 0x40 | (20 << 32)).is_empty());
}

#[test]
fn timer_with_an_illegal_vector_is_an_error() {
    let mut a = timer_apic(1);
    a.wrmsr(0x83E, 0xB, 0).unwrap();
    a.wrmsr(0x832, 5, 0).unwrap(); // one-shot, vector 5 (illegal), unmasked
    a.wrmsr(0x838, 10, 0).unwrap();
    assert!(a.tick(10));
    assert!(!a.irr(5), "a vector below 16 is never requested");
    a.wrmsr(0x828, 0, 0).unwrap(); // ESR latches the pending errors
    assert_eq!(a.rdmsr(0x828, 0), Ok(u64::from(ESR_RECV_ILLEGAL)));
    // Masked, the same timer is no error.
    a.wrmsr(0x828, 0, 0).unwrap();
    a.wrmsr(0x832, 5 | u64::from(LVT_MASKED), 0).unwrap();
    a.wrmsr(0x838, 10, 20).unwrap();
    assert!(a.tick(30));
    a.wrmsr(0x828, 0, 0).unwrap();
    assert_eq!(a.rdmsr(0x828, 0), Ok(0));
}
