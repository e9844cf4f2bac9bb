use super::*;

#[test]
fn vcpu_sets() {
    let mut s = VcpuSet::EMPTY;
    assert!(s.is_empty());
    assert_eq!(s.first(), None);
    s.insert(3);
    s.insert(63);
    s.insert(64); // ignored
    assert_eq!(s.len(), 2);
    assert!(s.contains(3) && s.contains(63) && !s.contains(64));
    assert_eq!(s.first(), Some(3));
    assert!(s.iter().eq([3, 63]));
    s.remove(3);
    s.remove(1000);
    assert_eq!(s.bits(), 1 << 63);
    assert_eq!(VcpuSet::first_n(0), VcpuSet::EMPTY);
    assert_eq!(VcpuSet::first_n(3).bits(), 0b111);
    assert_eq!(VcpuSet::first_n(64).bits(), u64::MAX);
    assert_eq!(VcpuSet::first_n(1000).bits(), u64::MAX);
    assert_eq!(std::format!("{:?}", VcpuSet::first_n(2)), "{0, 1}");
}

#[test]
fn destination_resolution() {
    let none = |_: usize, _: u32| panic!("not logical");
    assert_eq!(Destination::Physical(2).resolve(4, none).bits(), 0b100);
    assert!(Destination::Physical(4).resolve(4, none).is_empty());
    assert!(Destination::Physical(u32::MAX).resolve(64, none).is_empty());
    assert_eq!(Destination::All.resolve(3, none).bits(), 0b111);
    assert_eq!(Destination::AllBut(1).resolve(3, none).bits(), 0b101);
    assert_eq!(Destination::SelfOnly(2).resolve(3, none).bits(), 0b100);
    assert!(Destination::SelfOnly(5).resolve(3, none).is_empty());
    let odd = Destination::Logical(7).resolve(6, |i, mda| {
        assert_eq!(mda, 7);
        i % 2 == 1
    });
    assert_eq!(odd.bits(), 0b101010);
}

#[test]
fn delivery_modes() {
    let modes = [
        (0, Some(Delivery::Fixed)),
        (1, Some(Delivery::LowestPriority)),
        (2, Some(Delivery::Smi)),
        (3, None),
        (4, Some(Delivery::Nmi)),
        (5, Some(Delivery::Init)),
        (6, Some(Delivery::StartUp)),
        (7, Some(Delivery::ExtInt)),
    ];
    for (bits, mode) in modes {
        assert_eq!(Delivery::from_bits(bits << 8 | 0xFF), mode);
    }
}

#[test]
fn msr_errors_display() {
    for e in [
        MsrError::NotApic,
        MsrError::NotX2apic,
        MsrError::Reserved,
        MsrError::ReadOnly,
        MsrError::WriteOnly,
        MsrError::ReservedBits,
        MsrError::IllegalTransition,
    ] {
        assert!(!std::format!("{e}").is_empty());
    }
}
