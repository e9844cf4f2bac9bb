use super::*;

const B: AccessWidth = AccessWidth::Byte;
/// 2024-02-29 13:45:56 UTC, a Thursday.
const T: u64 = 1_709_214_356;
const NS: u64 = 1_000_000_000;

fn get(rtc: &mut Rtc, reg: u8, now: u64) -> u8 {
    rtc.write(0, B, reg as u64, now).unwrap();
    rtc.read(1, B, now).unwrap() as u8
}

fn set(rtc: &mut Rtc, reg: u8, value: u8, now: u64) {
    rtc.write(0, B, reg as u64, now).unwrap();
    rtc.write(1, B, value as u64, now).unwrap();
}

#[test]
fn calendar_conversions() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    for days in (0..200_000).step_by(7) {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
        assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
    }
    let t = DateTime::from_unix(T as i64);
    assert_eq!(
        (t.year, t.month, t.day, t.hour, t.minute, t.second),
        (2024, 2, 29, 13, 45, 56)
    );
    assert_eq!(t.to_unix(), T as i64);
    assert_eq!(t.weekday(), 5, "Thursday (Sunday = 1)");
    assert_eq!(days_in_month(1900, 2), 28);
    assert_eq!(days_in_month(2000, 2), 29);
}

#[test]
fn bcd_24_hour_by_default() {
    let mut rtc = Rtc::new();
    let now = T * NS;
    assert_eq!(get(&mut rtc, 0x00, now), 0x56);
    assert_eq!(get(&mut rtc, 0x02, now), 0x45);
    assert_eq!(get(&mut rtc, 0x04, now), 0x13);
    assert_eq!(get(&mut rtc, 0x06, now), 0x05);
    assert_eq!(get(&mut rtc, 0x07, now), 0x29);
    assert_eq!(get(&mut rtc, 0x08, now), 0x02);
    assert_eq!(get(&mut rtc, 0x09, now), 0x24);
    assert_eq!(get(&mut rtc, RTC_CENTURY, now), 0x20);
    assert_eq!(get(&mut rtc, 0x0A, now), 0x26);
    assert_eq!(get(&mut rtc, 0x0B, now), 0x02);
    assert_eq!(get(&mut rtc, 0x0C, now), 0);
    assert_eq!(get(&mut rtc, 0x0D, now), 0x80);
    // The clock runs with the host's time.
    assert_eq!(get(&mut rtc, 0x00, now + 3 * NS), 0x59);
    assert_eq!(get(&mut rtc, 0x02, now + 4 * NS), 0x46);
}

#[test]
fn binary_and_12_hour_formats() {
    let mut rtc = Rtc::new();
    let now = T * NS;
    set(&mut rtc, 0x0B, 0x06, now); // binary, 24h
    assert_eq!(get(&mut rtc, 0x00, now), 56);
    assert_eq!(get(&mut rtc, 0x04, now), 13);
    assert_eq!(get(&mut rtc, 0x09, now), 24);
    set(&mut rtc, 0x0B, 0x04, now); // binary, 12h
    assert_eq!(get(&mut rtc, 0x04, now), 0x80 | 1, "1 PM");
    set(&mut rtc, 0x0B, 0x00, now); // BCD, 12h
    assert_eq!(get(&mut rtc, 0x04, now), 0x81);
    // Midnight and noon in 12-hour mode.
    let midnight = (T - 13 * 3600 - 45 * 60 - 56) * NS;
    assert_eq!(get(&mut rtc, 0x04, midnight), 0x12);
    assert_eq!(get(&mut rtc, 0x04, midnight + 12 * 3600 * NS), 0x92);
}

#[test]
fn setting_the_clock_with_set() {
    let mut rtc = Rtc::new();
    let now = T * NS;
    // Linux's mc146818_set_time: SET, write the registers, clear SET.
    set(&mut rtc, 0x0B, 0x82, now);
    assert_eq!(
        get(&mut rtc, 0x0A, now + NS - 1) & 0x80,
        0,
        "no UIP while SET"
    );
    set(&mut rtc, 0x09, 0x99, now);
    set(&mut rtc, RTC_CENTURY, 0x19, now);
    set(&mut rtc, 0x08, 0x12, now);
    set(&mut rtc, 0x07, 0x31, now);
    set(&mut rtc, 0x04, 0x23, now);
    set(&mut rtc, 0x02, 0x59, now);
    set(&mut rtc, 0x00, 0x58, now);
    // Held while SET: time does not move.
    assert_eq!(get(&mut rtc, 0x00, now + 5 * NS), 0x58);
    set(&mut rtc, 0x0B, 0x02, now + 10 * NS);
    // Runs from the written time from then on: 1999-12-31 23:59:58 + 3 s.
    let later = now + 13 * NS;
    assert_eq!(get(&mut rtc, 0x00, later), 0x01);
    assert_eq!(get(&mut rtc, 0x02, later), 0x00);
    assert_eq!(get(&mut rtc, 0x04, later), 0x00);
    assert_eq!(get(&mut rtc, 0x07, later), 0x01);
    assert_eq!(get(&mut rtc, 0x08, later), 0x01);
    assert_eq!(get(&mut rtc, 0x09, later), 0x00);
    assert_eq!(get(&mut rtc, RTC_CENTURY, later), 0x20);
    assert_eq!(
        get(&mut rtc, 0x06, later),
        0x07,
        "2000-01-01 was a Saturday"
    );
}

#[test]
fn writing_a_running_clock() {
    let mut rtc = Rtc::new();
    let now = T * NS;
    set(&mut rtc, 0x02, 0x10, now);
    assert_eq!(get(&mut rtc, 0x02, now), 0x10);
    assert_eq!(get(&mut rtc, 0x04, now), 0x13, "other fields kept");
    assert_eq!(get(&mut rtc, 0x00, now + 2 * NS), 0x58);
    // 12-hour write: 11 PM.
    set(&mut rtc, 0x0B, 0x00, now);
    set(&mut rtc, 0x04, 0x91, now);
    set(&mut rtc, 0x0B, 0x02, now);
    assert_eq!(get(&mut rtc, 0x04, now), 0x23);
    // The weekday follows the date, not writes.
    set(&mut rtc, 0x06, 0x03, now);
    assert_eq!(get(&mut rtc, 0x06, now), 0x05);
}

#[test]
fn update_in_progress() {
    let mut rtc = Rtc::new();
    let second = T * NS;
    assert_eq!(get(&mut rtc, 0x0A, second) & 0x80, 0);
    assert_eq!(get(&mut rtc, 0x0A, second + NS - UIP_NS - 1) & 0x80, 0);
    assert_eq!(get(&mut rtc, 0x0A, second + NS - UIP_NS) & 0x80, 0x80);
    assert_eq!(get(&mut rtc, 0x0A, second + NS - 1) & 0x80, 0x80);
    assert_eq!(get(&mut rtc, 0x0A, second + NS) & 0x80, 0);
    // Divider stopped (reset): no updates, no UIP. UIP itself is read-only.
    set(&mut rtc, 0x0A, 0xE6, second);
    assert_eq!(get(&mut rtc, 0x0A, second + NS - 1), 0x66);
    set(&mut rtc, 0x0A, 0x26, second);
    assert_eq!(get(&mut rtc, 0x0A, second + NS - 1), 0xA6);
}

#[test]
fn nmi_bit_ram_and_read_only_registers() {
    let mut rtc = Rtc::new();
    // Index bit 7 (NMI disable) is ignored.
    rtc.write(0, B, 0x80 | 0x20, 0).unwrap();
    rtc.write(1, B, 0x5A, 0).unwrap();
    assert_eq!(get(&mut rtc, 0x20, 0), 0x5A);
    for reg in 0x0E..0x80u8 {
        if reg == RTC_CENTURY {
            continue;
        }
        set(&mut rtc, reg, reg ^ 0xA5, 0);
    }
    for reg in 0x0E..0x80u8 {
        if reg == RTC_CENTURY {
            continue;
        }
        assert_eq!(get(&mut rtc, reg, 0), reg ^ 0xA5, "{reg:#x}");
    }
    // Alarm bytes are stored.
    set(&mut rtc, 0x01, 0x30, 0);
    assert_eq!(get(&mut rtc, 0x01, 0), 0x30);
    // C and D are read-only; no interrupt flags ever.
    set(&mut rtc, 0x0B, 0x72, 0); // PIE, AIE, UIE
    set(&mut rtc, 0x0C, 0xFF, 0);
    set(&mut rtc, 0x0D, 0x00, 0);
    assert_eq!(get(&mut rtc, 0x0C, 5 * NS), 0);
    assert_eq!(get(&mut rtc, 0x0D, 0), 0x80);
    // The index port reads 0xFF.
    assert_eq!(rtc.read(0, B, 0), Ok(0xFF));
}

#[test]
fn garbage_times_do_not_panic() {
    let mut rtc = Rtc::new();
    set(&mut rtc, 0x0B, 0x86, 0); // SET, binary
    for reg in [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, RTC_CENTURY] {
        set(&mut rtc, reg, 0xFF, 0);
    }
    set(&mut rtc, 0x0B, 0x06, 0);
    for reg in 0..0x80 {
        let _ = get(&mut rtc, reg, u64::MAX);
        let _ = get(&mut rtc, reg, 0);
    }
    set(&mut rtc, 0x0B, 0x00, 0); // BCD, 12h
    for reg in [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, RTC_CENTURY] {
        set(&mut rtc, reg, 0xFF, u64::MAX);
        set(&mut rtc, reg, 0x00, 0);
    }
    for reg in 0..0x80 {
        let _ = get(&mut rtc, reg, u64::MAX);
    }
}

#[test]
fn access_rules() {
    let mut rtc = Rtc::new();
    assert_eq!(rtc.read(2, B, 0), Err(DeviceError::BadOffset));
    assert_eq!(
        rtc.read(1, AccessWidth::Half, 0),
        Err(DeviceError::BadWidth)
    );
    assert_eq!(
        rtc.write(0, AccessWidth::Word, 0, 0),
        Err(DeviceError::BadWidth)
    );
}
