use super::*;

const B: AccessWidth = AccessWidth::Byte;

/// The sequence Linux's `init_8259A` writes to one chip.
fn linux_init(pic: &mut Pic8259, base: u8, icw3: u8) {
    pic.write(1, B, 0xFF).unwrap();
    pic.write(0, B, 0x11).unwrap(); // ICW1: edge, cascade, ICW4
    assert!(!pic.initialised());
    pic.write(1, B, base as u64).unwrap(); // ICW2
    pic.write(1, B, icw3 as u64).unwrap(); // ICW3
    pic.write(1, B, 0x01).unwrap(); // ICW4: 8086 mode
    assert!(pic.initialised());
}

#[test]
fn power_on_masked() {
    let pic = Pic8259::new();
    assert_eq!(pic.read(1, B), Ok(0xFF));
    assert_eq!(pic.mask(), 0xFF);
    assert!(pic.initialised());
}

#[test]
fn linux_initialisation_sequence() {
    let mut master = Pic8259::new();
    let mut slave = Pic8259::new();
    linux_init(&mut master, 0x30, 0x04);
    linux_init(&mut slave, 0x38, 0x02);
    assert_eq!(master.vector_base(), 0x30);
    assert_eq!(slave.vector_base(), 0x38);
    // ICW1 clears the mask; Linux then masks everything but the cascade.
    assert_eq!(master.read(1, B), Ok(0));
    master.write(1, B, 0xFB).unwrap();
    slave.write(1, B, 0xFF).unwrap();
    assert_eq!(master.read(1, B), Ok(0xFB));
    assert_eq!(slave.read(1, B), Ok(0xFF));
    // OCW3: read IRR (0x0A) or ISR (0x0B): nothing is ever pending or in service.
    master.write(0, B, 0x0A).unwrap();
    assert_eq!(master.read(0, B), Ok(0));
    master.write(0, B, 0x0B).unwrap();
    assert_eq!(master.read(0, B), Ok(0));
    // OCW2 (specific EOI) is accepted and changes nothing.
    master.write(0, B, 0x60).unwrap();
    assert_eq!(master.read(1, B), Ok(0xFB));
}

#[test]
fn single_mode_without_icw4() {
    let mut pic = Pic8259::new();
    pic.write(0, B, 0x12).unwrap(); // single, no ICW4
    pic.write(1, B, 0x20).unwrap();
    assert!(pic.initialised());
    pic.write(1, B, 0x7F).unwrap();
    assert_eq!(pic.read(1, B), Ok(0x7F));
    // ICW2 keeps bits 7:3 only.
    pic.write(0, B, 0x13).unwrap();
    pic.write(1, B, 0x27).unwrap();
    pic.write(1, B, 0x03).unwrap(); // ICW4
    assert_eq!(pic.vector_base(), 0x20);
    assert!(pic.initialised());
}

#[test]
fn access_rules() {
    let mut pic = Pic8259::new();
    assert_eq!(pic.read(2, B), Err(DeviceError::BadOffset));
    assert_eq!(pic.read(0, AccessWidth::Half), Err(DeviceError::BadWidth));
    assert_eq!(
        pic.write(1, AccessWidth::Word, 0),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(pic.mask(), 0xFF);
}

#[test]
fn elcr() {
    let mut e = Elcr::default();
    assert_eq!(e.read(0, B), Ok(0));
    e.write(0, B, 0xFF).unwrap();
    e.write(1, B, 0xFF).unwrap();
    // IRQs 0, 1, 2, 8 and 13 are always edge.
    assert_eq!(e.read(0, B), Ok(0xF8));
    assert_eq!(e.read(1, B), Ok(0xDE));
    assert_eq!(e.read(0, AccessWidth::Half), Ok(0xDEF8));
    e.write(0, AccessWidth::Half, 0x0C20).unwrap();
    assert_eq!(e.read(0, B), Ok(0x20));
    assert_eq!(e.read(1, B), Ok(0x0C));
    assert_eq!(e.read(2, B), Err(DeviceError::BadOffset));
    assert_eq!(e.read(1, AccessWidth::Half), Err(DeviceError::BadWidth));
    assert_eq!(e.write(0, AccessWidth::Word, 0), Err(DeviceError::BadWidth));
}
