use super::*;

const B: AccessWidth = AccessWidth::Byte;

fn out(pit: &mut Pit, offset: usize, value: u8, now: u64) {
    pit.write(offset, B, value as u64, now).unwrap();
}

fn inb(pit: &mut Pit, offset: usize, now: u64) -> u8 {
    pit.read(offset, B, now).unwrap() as u8
}

/// A live LSB/MSB read of a counter.
fn read16(pit: &mut Pit, ch: usize, now: u64) -> u16 {
    let lo = inb(pit, ch, now);
    let hi = inb(pit, ch, now);
    u16::from_le_bytes([lo, hi])
}

fn load(pit: &mut Pit, ch: usize, mode: u8, count: u16, now: u64) {
    out(pit, 3, ((ch as u8) << 6) | 0x30 | (mode << 1), now);
    out(pit, ch, count as u8, now);
    out(pit, ch, (count >> 8) as u8, now);
}

#[test]
fn rate_generator_irq0() {
    let mut pit = Pit::new();
    // Linux's periodic PIT at HZ = 250: mode 2, count 4773 (0x34).
    let latch = (PIT_HZ / 250) as u16;
    load(&mut pit, 0, 2, latch, 1000);
    assert_eq!(read16(&mut pit, 0, 1000), latch);
    assert_eq!(read16(&mut pit, 0, 1010), latch - 10);
    assert_eq!(pit.next_irq0(), Some(1000 + latch as u64));
    assert!(!pit.poll_irq0(1000 + latch as u64 - 1));
    assert!(pit.out(0, 1000 + latch as u64 - 2));
    assert!(
        !pit.out(0, 1000 + latch as u64 - 1),
        "low for the count of 1"
    );
    assert!(pit.poll_irq0(1000 + latch as u64));
    assert!(
        !pit.poll_irq0(1000 + latch as u64 + 5),
        "one edge per period"
    );
    assert_eq!(pit.next_irq0(), Some(1000 + 2 * latch as u64));
    // Several periods late: one edge.
    assert!(pit.poll_irq0(1000 + 5 * latch as u64 + 3));
    assert_eq!(pit.next_irq0(), Some(1000 + 6 * latch as u64));
    // Reloads at the period: the count after a full period is the count again.
    assert_eq!(read16(&mut pit, 0, 1000 + 2 * latch as u64), latch);
}

#[test]
fn square_wave() {
    let mut pit = Pit::new();
    load(&mut pit, 0, 3, 100, 0);
    assert!(pit.out(0, 0));
    assert!(pit.out(0, 49));
    assert!(!pit.out(0, 50));
    assert!(!pit.out(0, 99));
    assert!(pit.out(0, 100));
    assert_eq!(read16(&mut pit, 0, 0), 100);
    assert_eq!(read16(&mut pit, 0, 10), 80, "counts down by 2");
    assert_eq!(read16(&mut pit, 0, 60), 80, "second half");
    assert!(pit.poll_irq0(100));
    assert_eq!(pit.next_irq0(), Some(200));
    // Odd counts: high one tick longer.
    load(&mut pit, 1, 3, 5, 0);
    assert!(pit.out(1, 2));
    assert!(!pit.out(1, 3));
    // Mode 7 is mode 3.
    out(&mut pit, 3, 0x3E, 0);
    out(&mut pit, 3, 0xE2, 0); // read-back status of channel 0
    assert_eq!(inb(&mut pit, 0, 0) & 0x0E, 3 << 1);
}

#[test]
fn one_shot_mode_0_and_wrap() {
    let mut pit = Pit::new();
    load(&mut pit, 0, 0, 50, 10);
    assert!(!pit.out(0, 10));
    assert!(!pit.out(0, 59));
    assert!(pit.out(0, 60));
    assert_eq!(pit.next_irq0(), Some(60));
    assert!(pit.poll_irq0(70));
    assert_eq!(pit.next_irq0(), None, "mode 0 fires once");
    assert!(!pit.poll_irq0(10_000));
    // Past 0 the counter wraps through 0xFFFF and OUT stays high.
    assert_eq!(read16(&mut pit, 0, 61), 0xFFFF);
    assert!(pit.out(0, 100_000));
    // A control word for mode 0 sets OUT low until a count is loaded.
    out(&mut pit, 3, 0x30, 200);
    assert!(!pit.out(0, 300));
    assert_eq!(pit.next_irq0(), None);
    assert!(!pit.poll_irq0(300));
}

#[test]
fn count_zero_is_65536() {
    let mut pit = Pit::new();
    load(&mut pit, 0, 2, 0, 0);
    assert_eq!(read16(&mut pit, 0, 0), 0);
    assert_eq!(read16(&mut pit, 0, 1), 0xFFFF);
    assert_eq!(pit.next_irq0(), Some(65536));
}

#[test]
fn latch_command_and_byte_order() {
    let mut pit = Pit::new();
    load(&mut pit, 0, 2, 0x1234, 0);
    out(&mut pit, 3, 0x00, 0x10); // latch channel 0
                                  // The latched value holds while time moves; a second latch is ignored until read.
    out(&mut pit, 3, 0x00, 0x20);
    assert_eq!(inb(&mut pit, 0, 0x100), 0x24);
    assert_eq!(inb(&mut pit, 0, 0x100), 0x12);
    // Then live again.
    assert_eq!(read16(&mut pit, 0, 0x34), 0x1200);
    // LSB-only and MSB-only access modes.
    out(&mut pit, 3, 0x54, 0); // channel 1, LSB only, mode 2
    out(&mut pit, 1, 0x80, 0);
    assert_eq!(inb(&mut pit, 1, 0), 0x80);
    assert_eq!(inb(&mut pit, 1, 0x10), 0x70);
    out(&mut pit, 3, 0x64, 0); // channel 1, MSB only, mode 2
    out(&mut pit, 1, 0x02, 0);
    assert_eq!(inb(&mut pit, 1, 0), 0x02);
    assert_eq!(inb(&mut pit, 1, 1), 0x01);
}

#[test]
fn read_back_command() {
    let mut pit = Pit::new();
    load(&mut pit, 2, 0, 0x4000, 0);
    pit.port61_write(B, 1, 0).unwrap();
    // Read-back of channel 2: status and count.
    out(&mut pit, 3, 0xC8, 0x100);
    let status = inb(&mut pit, 2, 0x200);
    assert_eq!(status & 0x3F, 0x30, "LSB/MSB, mode 0, binary");
    assert_eq!(status & 0x40, 0, "count loaded");
    let count = read16(&mut pit, 2, 0x300);
    assert_eq!(count, 0x4000 - 0x100, "latched at the read-back");
    // Status after a control word shows null count.
    out(&mut pit, 3, 0xB1, 0); // channel 2, LSB/MSB, mode 0, BCD
    out(&mut pit, 3, 0xE8, 0); // read-back status of channel 2
    let status = inb(&mut pit, 2, 0);
    assert_eq!(status, 0x40 | 0x30 | 1, "OUT low, null count, BCD bit");
    // Control port reads 0.
    assert_eq!(inb(&mut pit, 3, 0), 0);
}

#[test]
fn linux_quick_pit_calibration() {
    // quick_pit_calibrate: gate high, speaker off; channel 2 mode 0 from 0xFFFF;
    // reads the MSB as it counts down.
    let mut pit = Pit::new();
    let b = pit.port61_read(B, 0).unwrap() as u8;
    pit.port61_write(B, ((b & !0x02) | 0x01) as u64, 0).unwrap();
    out(&mut pit, 3, 0xB0, 0);
    out(&mut pit, 2, 0xFF, 5);
    out(&mut pit, 2, 0xFF, 5);
    for t in [5u64, 300, 256 * 17 + 5, 60_000] {
        let lo = inb(&mut pit, 2, t);
        let hi = inb(&mut pit, 2, t);
        let expect = 0xFFFF - (t - 5);
        assert_eq!(u16::from_le_bytes([lo, hi]) as u64, expect, "at {t}");
    }
}

#[test]
fn linux_pit_calibrate_tsc_waits_for_out2() {
    let mut pit = Pit::new();
    pit.port61_write(B, 0x01, 0).unwrap();
    load(&mut pit, 2, 0, 11932, 100); // 10 ms
    assert_eq!(pit.port61_read(B, 100).unwrap() & 0x20, 0);
    assert_eq!(pit.port61_read(B, 100 + 11931).unwrap() & 0x20, 0);
    assert_eq!(pit.port61_read(B, 100 + 11932).unwrap() & 0x20, 0x20);
}

#[test]
fn gate_controls_channel_2() {
    let mut pit = Pit::new();
    // Gate low: a loaded mode-0 count does not move.
    load(&mut pit, 2, 0, 1000, 0);
    assert_eq!(read16(&mut pit, 2, 500), 1000);
    pit.port61_write(B, 1, 500).unwrap();
    assert_eq!(read16(&mut pit, 2, 600), 900);
    // Low again: suspended; high: resumes.
    pit.port61_write(B, 0, 600).unwrap();
    assert_eq!(read16(&mut pit, 2, 900), 900);
    pit.port61_write(B, 1, 900).unwrap();
    assert_eq!(read16(&mut pit, 2, 1000), 800);
    // Mode 2: gate low holds OUT high, the rising edge reloads.
    load(&mut pit, 2, 2, 100, 1000);
    assert_eq!(read16(&mut pit, 2, 1050), 50);
    pit.port61_write(B, 0, 1050).unwrap();
    assert!(pit.out(2, 1099));
    pit.port61_write(B, 1, 2000).unwrap();
    assert_eq!(read16(&mut pit, 2, 2000), 100);
    assert_eq!(read16(&mut pit, 2, 2010), 90);
}

#[test]
fn port_61() {
    let mut pit = Pit::new();
    assert_eq!(pit.port61_read(B, 0), Ok(0));
    pit.port61_write(B, 0xFF, 0).unwrap();
    // Bits 3:0 kept, 7:6 read 0, 5 is OUT2 (low: mode 0 without a count), 4 the refresh
    // toggle.
    assert_eq!(pit.port61_read(B, 0).unwrap() & 0xEF, 0x0F);
    assert_eq!(pit.port61_read(B, 17).unwrap() & 0x10, 0);
    assert_eq!(pit.port61_read(B, 18).unwrap() & 0x10, 0x10);
    assert_eq!(pit.port61_read(B, 36).unwrap() & 0x10, 0);
    assert_eq!(
        pit.port61_read(AccessWidth::Half, 0),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(
        pit.port61_write(AccessWidth::Word, 0, 0),
        Err(DeviceError::BadWidth)
    );
}

#[test]
fn access_rules() {
    let mut pit = Pit::new();
    assert_eq!(pit.read(4, B, 0), Err(DeviceError::BadOffset));
    assert_eq!(
        pit.read(0, AccessWidth::Half, 0),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(
        pit.write(3, AccessWidth::Word, 0, 0),
        Err(DeviceError::BadWidth)
    );
    // Nothing loaded: counters read 0, channel 0 has no edges.
    assert_eq!(read16(&mut pit, 0, 5), 0);
    assert!(!pit.poll_irq0(u64::MAX));
    assert!(!pit.out(3, 0));
}

#[test]
fn extreme_times_do_not_panic() {
    let mut pit = Pit::new();
    for mode in 0..8u8 {
        load(&mut pit, 0, mode, 1, u64::MAX - 1);
        let _ = read16(&mut pit, 0, u64::MAX);
        let _ = read16(&mut pit, 0, 0);
        let _ = pit.poll_irq0(u64::MAX);
        let _ = pit.next_irq0();
        let _ = pit.out(0, u64::MAX);
    }
}

#[test]
fn modes_1_4_and_5() {
    let mut pit = Pit::new();
    // Mode 4: OUT low only at the terminal count.
    load(&mut pit, 0, 4, 10, 0);
    assert!(pit.out(0, 9));
    assert!(!pit.out(0, 10));
    assert!(pit.out(0, 11));
    // Mode 1 on channel 2: a rising gate restarts the count.
    load(&mut pit, 2, 1, 100, 0);
    pit.port61_write(B, 1, 50).unwrap();
    assert_eq!(read16(&mut pit, 2, 60), 90);
    pit.port61_write(B, 0, 70).unwrap();
    assert_eq!(read16(&mut pit, 2, 80), 70, "gate low does not stop mode 1");
    pit.port61_write(B, 1, 80).unwrap();
    assert_eq!(read16(&mut pit, 2, 80), 100, "retriggered");
    assert!(!pit.out(2, 179));
    assert!(pit.out(2, 180));
    // Mode 5 likewise, OUT low for the terminal tick.
    load(&mut pit, 2, 5, 10, 200);
    pit.port61_write(B, 0, 200).unwrap();
    pit.port61_write(B, 1, 300).unwrap();
    assert!(!pit.out(2, 310));
    assert!(pit.out(2, 311));
}
