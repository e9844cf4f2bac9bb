use super::*;
use std::vec::Vec;

const W: AccessWidth = AccessWidth::Word;

fn write_reg(io: &mut IoApic, reg: u32, value: u32) -> Vec<Message> {
    let mut out = Vec::new();
    io.mmio_write(IOREGSEL, W, reg as u64, &mut |m| out.push(m))
        .unwrap();
    io.mmio_write(IOWIN, W, value as u64, &mut |m| out.push(m))
        .unwrap();
    out
}

fn read_reg(io: &mut IoApic, reg: u32) -> u32 {
    io.mmio_write(IOREGSEL, W, reg as u64, &mut |_| panic!("no message"))
        .unwrap();
    io.mmio_read(IOWIN, W).unwrap() as u32
}

fn line(io: &mut IoApic, pin: usize, high: bool) -> Vec<Message> {
    let mut out = Vec::new();
    io.set_line(pin, high, &mut |m| out.push(m));
    out
}

fn eoi(io: &mut IoApic, vector: u8) -> Vec<Message> {
    let mut out = Vec::new();
    io.eoi(vector, &mut |m| out.push(m));
    out
}

/// Programs entry `pin`: `low` (bits 31:0) and destination `dest`.
fn program(io: &mut IoApic, pin: usize, low: u32, dest: u8) -> Vec<Message> {
    let mut out = write_reg(io, 0x11 + 2 * pin as u32, (dest as u32) << 24);
    out.extend(write_reg(io, 0x10 + 2 * pin as u32, low));
    out
}

#[test]
fn identification_registers() {
    let mut io = IoApic::new();
    assert_eq!(read_reg(&mut io, 0x01), 0x0017_0011);
    assert_eq!(read_reg(&mut io, 0x00), 0);
    write_reg(&mut io, 0x00, 0xFFFF_FFFF);
    assert_eq!(read_reg(&mut io, 0x00), 0x0F00_0000, "ID bits 27:24");
    assert_eq!(read_reg(&mut io, 0x02), 0x0F00_0000, "arbitration ID");
    write_reg(&mut io, 0x01, 0);
    assert_eq!(
        read_reg(&mut io, 0x01),
        IOAPIC_VERSION,
        "version is read-only"
    );
    // Registers past the table read 0 and ignore writes.
    for reg in [0x03, 0x0F, 0x40, 0x41, 0xFF] {
        write_reg(&mut io, reg, 0x1234);
        assert_eq!(read_reg(&mut io, reg), 0, "{reg:#x}");
    }
    // IOREGSEL reads back (8 bits).
    io.mmio_write(IOREGSEL, W, 0x1FF, &mut |_| {}).unwrap();
    assert_eq!(io.mmio_read(IOREGSEL, W), Ok(0xFF));
}

#[test]
fn window_access_rules() {
    let mut io = IoApic::new();
    assert_eq!(
        io.mmio_read(IOWIN, AccessWidth::Byte),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(
        io.mmio_read(IOWIN, AccessWidth::Dword),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(io.mmio_read(0x12, W), Err(DeviceError::Misaligned));
    assert_eq!(io.mmio_read(IOAPIC_SIZE, W), Err(DeviceError::BadOffset));
    assert_eq!(
        io.mmio_write(0x01, W, 0, &mut |_| {}),
        Err(DeviceError::Misaligned)
    );
    assert_eq!(io.mmio_read(0x20, W), Ok(0));
    assert_eq!(
        io.mmio_read(0x40, W),
        Ok(0),
        "no EOI register in version 0x11"
    );
}

#[test]
fn redirection_entries_reset_masked_and_round_trip() {
    let mut io = IoApic::new();
    for pin in 0..IOAPIC_PINS {
        assert_eq!(io.entry(pin), Some(1 << 16));
        assert_eq!(read_reg(&mut io, 0x10 + 2 * pin as u32), 1 << 16);
        assert_eq!(read_reg(&mut io, 0x11 + 2 * pin as u32), 0);
    }
    assert_eq!(io.entry(IOAPIC_PINS), None);
    // All writable bits, and the read-only/reserved ones dropped.
    program(&mut io, 5, 0xFFFF_FFFF, 0xAB);
    assert_eq!(read_reg(&mut io, 0x1A), 0x0001_AFFF);
    write_reg(&mut io, 0x1B, 0xFFFF_FFFF);
    assert_eq!(read_reg(&mut io, 0x1B), 0xFF00_0000);
    // Entry 23 is the last.
    program(&mut io, 23, 0x0001_0033, 1);
    assert_eq!(io.entry(23), Some((1 << 56) | 0x0001_0033));
}

#[test]
fn edge_triggered_delivery() {
    let mut io = IoApic::new();
    program(&mut io, 4, 0x31, 2);
    let m = line(&mut io, 4, true);
    assert_eq!(
        m,
        [Message {
            dest: Destination::Physical(2),
            delivery: Delivery::Fixed,
            vector: 0x31,
            level: false
        }]
    );
    // Staying high is no new edge; low then high is.
    assert!(line(&mut io, 4, true).is_empty());
    assert!(line(&mut io, 4, false).is_empty());
    assert_eq!(line(&mut io, 4, true).len(), 1);
    // EOI does nothing to edge entries.
    assert!(eoi(&mut io, 0x31).is_empty());
    assert_eq!(io.entry(4).unwrap() & REMOTE_IRR, 0);
}

#[test]
fn masked_entries_never_deliver() {
    let mut io = IoApic::new();
    program(&mut io, 1, 0x1_0031, 0);
    assert!(line(&mut io, 1, true).is_empty());
    assert!(line(&mut io, 1, false).is_empty());
    // An edge while masked is lost: unmasking sends nothing.
    line(&mut io, 1, true);
    assert!(program(&mut io, 1, 0x31, 0).is_empty());
    // Level, masked.
    program(&mut io, 2, 0x1_8032, 0);
    assert!(line(&mut io, 2, true).is_empty());
    assert!(eoi(&mut io, 0x32).is_empty());
    // Unmasking an asserted level entry delivers.
    assert_eq!(program(&mut io, 2, 0x8032, 0).len(), 1);
}

#[test]
fn level_triggered_remote_irr_and_eoi() {
    let mut io = IoApic::new();
    program(&mut io, 10, 0xA040, 0); // level, active low, vector 0x40
    let m = line(&mut io, 10, true);
    assert_eq!(m.len(), 1);
    assert!(m[0].level);
    assert_ne!(io.entry(10).unwrap() & REMOTE_IRR, 0);
    assert_ne!(read_reg(&mut io, 0x24) & (1 << 14), 0, "remote IRR visible");
    // No repeat while remote IRR is set.
    assert!(line(&mut io, 10, true).is_empty());
    // EOI with the line still high: delivered again.
    assert_eq!(eoi(&mut io, 0x40).len(), 1);
    // EOI with the line low: just clears remote IRR.
    line(&mut io, 10, false);
    assert!(eoi(&mut io, 0x40).is_empty());
    assert_eq!(io.entry(10).unwrap() & REMOTE_IRR, 0);
    // An EOI of another vector changes nothing.
    line(&mut io, 10, true);
    assert!(eoi(&mut io, 0x41).is_empty());
    assert_ne!(io.entry(10).unwrap() & REMOTE_IRR, 0);
    // Remote IRR is read-only to the guest.
    program(&mut io, 10, 0xA040, 0);
    assert_ne!(io.entry(10).unwrap() & REMOTE_IRR, 0);
    // Switching to edge clears it.
    program(&mut io, 10, 0x2040, 0);
    assert_eq!(io.entry(10).unwrap() & REMOTE_IRR, 0);
}

#[test]
fn eoi_reaches_every_entry_of_the_vector() {
    let mut io = IoApic::new();
    program(&mut io, 16, 0x8050, 0);
    program(&mut io, 17, 0x8050, 1);
    assert_eq!(line(&mut io, 16, true).len(), 1);
    assert_eq!(line(&mut io, 17, true).len(), 1);
    line(&mut io, 16, false);
    let again = eoi(&mut io, 0x50);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].dest, Destination::Physical(1));
}

#[test]
fn message_fields() {
    let mut io = IoApic::new();
    program(&mut io, 0, 0x0961, 0x05); // logical, lowest priority, vector 0x61
    let m = line(&mut io, 0, true);
    assert_eq!(m[0].dest, Destination::Logical(5));
    assert_eq!(m[0].delivery, Delivery::LowestPriority);
    program(&mut io, 1, 0x0400, 0xFF); // NMI, physical broadcast
    let m = line(&mut io, 1, true);
    assert_eq!(
        (m[0].dest, m[0].delivery),
        (Destination::All, Delivery::Nmi)
    );
    program(&mut io, 3, 0x0700, 0); // ExtINT
    assert_eq!(line(&mut io, 3, true)[0].delivery, Delivery::ExtInt);
    program(&mut io, 6, 0x0333, 0); // reserved mode 011 → fixed
    assert_eq!(line(&mut io, 6, true)[0].delivery, Delivery::Fixed);
}

#[test]
fn lines_out_of_range_are_ignored() {
    let mut io = IoApic::new();
    assert!(line(&mut io, IOAPIC_PINS, true).is_empty());
    assert!(line(&mut io, usize::MAX, true).is_empty());
    assert!(!io.line(IOAPIC_PINS));
}

#[test]
fn linux_edge_switch_clears_remote_irr() {
    // With version 0x11 (no EOI register) Linux clears a stuck remote IRR by making the
    // entry edge-triggered and then level again.
    let mut io = IoApic::new();
    program(&mut io, 9, 0x1_8039, 0);
    program(&mut io, 9, 0x8039, 0);
    line(&mut io, 9, true);
    assert_ne!(io.entry(9).unwrap() & REMOTE_IRR, 0);
    program(&mut io, 9, 0x1_0039, 0); // masked, edge
    assert_eq!(io.entry(9).unwrap() & REMOTE_IRR, 0);
    program(&mut io, 9, 0x1_8039, 0); // masked, level
                                      // Unmasking with the line still high delivers again.
    assert_eq!(program(&mut io, 9, 0x8039, 0).len(), 1);
}
