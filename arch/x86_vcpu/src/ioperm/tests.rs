use super::*;
use alloc::boxed::Box;

/// Whether SVM's map intercepts `port` (one bit per port).
fn svm_intercepts(map: &IoPermissionMap, port: u32) -> bool {
    map.0[(port / 8) as usize] & (1 << (port % 8)) != 0
}

#[test]
fn no_port_open_everything_exits() {
    let ports = IoPorts::none();
    assert!(!ports.any_open());
    let vmx = ports.vmx_bitmaps();
    assert!(vmx.a.iter().chain(&vmx.b).all(|&b| b == 0xff));
    let mut svm = Box::new(IoPermissionMap::new());
    ports.open_in(&mut svm);
    assert!(svm.0.iter().all(|&b| b == 0xff));
}

#[test]
fn open_ports_clear_exactly_their_bits() {
    // COM2 (eight ports, byte-aligned), an odd range across a byte edge, and the last
    // port of bitmap A with the first of B.
    let ports = IoPorts::with_open([0x2f8..0x300, 0x1f3..0x1f9, 0x7fff..0x8001]);
    assert!(ports.any_open());
    let open = |p: u32| {
        (0x2f8..0x300).contains(&p) || (0x1f3..0x1f9).contains(&p) || (0x7fff..0x8001).contains(&p)
    };
    let vmx = ports.vmx_bitmaps();
    let mut svm = Box::new(IoPermissionMap::new());
    ports.open_in(&mut svm);
    for p in 0..PORTS {
        assert_eq!(ports.is_open(p), open(p), "port {p:#x}");
        assert_eq!(vmx.exits(p), !open(p), "VMX, port {p:#x}");
        assert_eq!(svm_intercepts(&svm, p), !open(p), "SVM, port {p:#x}");
    }
    // Bit positions as the manuals give them: port 0x2f8 is bit 0 of byte 0x5f of bitmap
    // A / the IOPM; port 0x8000 is bit 0 of byte 0 of bitmap B.
    assert_eq!(vmx.a[0x5f], 0x00);
    assert_eq!(vmx.a[0x5e], 0xff);
    assert_eq!(vmx.a[0xfff], 0x7f);
    assert_eq!(vmx.b[0], 0xfe);
    assert_eq!(svm.0[0x5f], 0x00);
    assert_eq!(svm.0[0x3e], 0b0000_0111);
    assert_eq!(svm.0[0x3f], 0b1111_1110);
}

#[test]
fn ports_past_the_space_stay_closed() {
    let ports = IoPorts::with_open(core::iter::once(0xfffe..0x1_0004));
    assert!(ports.is_open(0xffff) && ports.is_open(0xfffe));
    assert!(!ports.is_open(0x1_0000) && !ports.is_open(0x1_0003));
    let vmx = ports.vmx_bitmaps();
    assert!(!vmx.exits(0xffff));
    assert!(vmx.exits(0x1_0000));
    assert_eq!(vmx.b[4095], 0x3f);
    // SVM's map has bits past 0xFFFF for an access that wraps: they stay set, so a
    // two-byte access at 0xFFFF exits.
    let mut svm = Box::new(IoPermissionMap::new());
    ports.open_in(&mut svm);
    assert!(!svm_intercepts(&svm, 0xffff));
    assert!(svm.0[8192..].iter().all(|&b| b == 0xff));
}

#[test]
fn empty_and_reversed_ranges_open_nothing() {
    #[allow(clippy::reversed_empty_ranges)]
    let ports = IoPorts::with_open([0x300..0x300, 0x300..0x2f8]);
    assert_eq!(ports, IoPorts::none());
    assert_eq!(alloc::format!("{ports:?}"), "IoPorts(0 open)");
}
