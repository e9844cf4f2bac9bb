use super::*;
use std::sync::Mutex as StdMutex;
use std::vec::Vec as StdVec;

/// Records the vCPUs kicked.
#[derive(Default)]
struct Kicks(StdMutex<StdVec<usize>>);

impl VcpuNotifier for Kicks {
    fn notify(&self, vcpu: usize) {
        self.0.lock().unwrap().push(vcpu);
    }
}

impl Kicks {
    fn take(&self) -> StdVec<usize> {
        core::mem::take(&mut *self.0.lock().unwrap())
    }
}

const TSC_HZ: u64 = 1_000_000_000;

fn pc(vcpus: usize) -> (Arc<VirtualPc>, Arc<Kicks>) {
    let kicks = Arc::new(Kicks::default());
    let config = PcConfig {
        vcpus,
        tsc_hz: TSC_HZ,
        unix_ns_at_tsc0: 0,
    };
    (
        Arc::new(VirtualPc::new(config, kicks.clone()).unwrap()),
        kicks,
    )
}

const READY: Ready = Ready {
    irq: true,
    nmi: true,
};

/// Software-enables vCPU `v`'s local APIC (SVR = 0x1FF) through the xAPIC page.
fn enable(pc: &VirtualPc, v: usize) {
    pc.xapic_write(v, XAPIC_PAGE + 0xF0, AccessWidth::Word, 0x1FF, 0);
}

#[test]
fn vcpu_count_is_checked() {
    let n = Arc::new(Kicks::default());
    for bad in [0, MAX_VCPUS + 1] {
        let c = PcConfig {
            vcpus: bad,
            tsc_hz: TSC_HZ,
            unix_ns_at_tsc0: 0,
        };
        assert_eq!(
            VirtualPc::new(c, n.clone()).unwrap_err(),
            PcError::VcpuCount(bad)
        );
    }
}

#[test]
fn fixed_ipi_reaches_its_target_and_kicks_it() {
    let (pc, kicks) = pc(2);
    enable(&pc, 0);
    enable(&pc, 1);
    // ICR high: destination 1; ICR low: fixed, vector 0x40.
    pc.xapic_write(0, XAPIC_PAGE + 0x310, AccessWidth::Word, 1 << 24, 0);
    pc.xapic_write(0, XAPIC_PAGE + 0x300, AccessWidth::Word, 0x40, 0);
    assert_eq!(kicks.take(), [1]);
    assert_eq!(pc.next_injection(0, 0, READY), Injection::None);
    assert_eq!(pc.next_injection(1, 0, READY), Injection::External(0x40));
    // Acknowledged: in service, not pending any more.
    assert_eq!(pc.next_injection(1, 0, READY), Injection::None);
}

/// Physical destination `dest`, the rest of ICR low `low`: sent by vCPU `from` through the
/// xAPIC page.
fn icr(pc: &VirtualPc, from: usize, dest: u32, low: u32) {
    pc.xapic_write(
        from,
        XAPIC_PAGE + 0x310,
        AccessWidth::Word,
        u64::from(dest) << 24,
        0,
    );
    pc.xapic_write(
        from,
        XAPIC_PAGE + 0x300,
        AccessWidth::Word,
        u64::from(low),
        0,
    );
}

#[test]
fn broadcast_ipis_and_lowest_priority() {
    let (pc, kicks) = pc(3);
    for v in 0..3 {
        enable(&pc, v);
    }
    // All-but-self shorthand (bits 19:18 = 11), fixed, vector 0x41.
    icr(&pc, 1, 0, 0xC_0041);
    assert_eq!(kicks.take(), [0, 2]);
    for (v, want) in [(0, Some(0x41)), (1, None), (2, Some(0x41))] {
        let got = match pc.next_injection(v, 0, READY) {
            Injection::External(x) => Some(x),
            _ => None,
        };
        assert_eq!(got, want, "vcpu {v}");
    }
    // Lowest priority to a logical broadcast (flat model, MDA 0xFF): one target only.
    for v in 0..3 {
        pc.xapic_write(v, XAPIC_PAGE + 0xD0, AccessWidth::Word, 1 << (24 + v), 0);
    }
    icr(&pc, 2, 0x07, 0x0952);
    assert_eq!(kicks.take(), [0]);
    assert_eq!(pc.next_injection(0, 0, READY), Injection::External(0x52));
}

#[test]
fn nmi_ipi_waits_for_its_window() {
    let (pc, kicks) = pc(2);
    // NMI delivery (100): accepted even while software-disabled.
    icr(&pc, 0, 1, 0x400);
    assert_eq!(kicks.take(), [1]);
    let blocked = Ready {
        irq: true,
        nmi: false,
    };
    assert_eq!(pc.next_injection(1, 0, blocked), Injection::NmiWindow);
    assert!(
        pc.wakeup_pending(1, 0, false),
        "an NMI wakes even with IF clear"
    );
    assert_eq!(pc.next_injection(1, 0, READY), Injection::Nmi);
    assert_eq!(pc.next_injection(1, 0, READY), Injection::None);
}

#[test]
fn interrupts_wait_for_the_window_and_wake_only_with_if() {
    let (pc, _) = pc(1);
    enable(&pc, 0);
    // Self IPI through the self shorthand (01): taken by the sender's own IRR.
    icr(&pc, 0, 0, 0x4_0050);
    let closed = Ready {
        irq: false,
        nmi: true,
    };
    assert_eq!(pc.next_injection(0, 0, closed), Injection::IrqWindow);
    assert!(!pc.wakeup_pending(0, 0, false));
    assert!(pc.wakeup_pending(0, 0, true));
    assert_eq!(pc.next_injection(0, 0, READY), Injection::External(0x50));
    // A lower-class vector waits while 0x50 is in service; the EOI lets it through.
    icr(&pc, 0, 0, 0x4_0030);
    assert_eq!(pc.next_injection(0, 0, READY), Injection::None);
    pc.xapic_write(0, XAPIC_PAGE + 0xB0, AccessWidth::Word, 0, 0);
    assert_eq!(pc.next_injection(0, 0, READY), Injection::External(0x30));
}

#[test]
fn lapic_timer_one_shot_and_periodic_through_the_deadline() {
    let (pc, _) = pc(1);
    enable(&pc, 0);
    let w =
        |off: u64, v: u64, now: u64| pc.xapic_write(0, XAPIC_PAGE + off, AccessWidth::Word, v, now);
    // Divide by 1; one-shot, vector 0x60; 1000 bus ticks = 10 µs = 10_000 TSC ticks.
    w(0x3E0, 0xB, 0);
    w(0x320, 0x60, 0);
    w(0x380, 1000, 0);
    let d = pc.deadline(0).expect("armed");
    assert_eq!(d, 1000 * (TSC_HZ / APIC_BUS_HZ));
    assert_eq!(pc.next_injection(0, d - 1, READY), Injection::None);
    assert!(pc.wakeup_pending(0, d, true));
    assert_eq!(pc.next_injection(0, d, READY), Injection::External(0x60));
    assert_eq!(pc.deadline(0), None, "one-shot: disarmed");
    pc.xapic_write(0, XAPIC_PAGE + 0xB0, AccessWidth::Word, 0, d);
    // Periodic (bit 17).
    w(0x320, 0x2_0061, d);
    w(0x380, 100, d);
    let p = 100 * (TSC_HZ / APIC_BUS_HZ);
    for k in 1..=3 {
        assert_eq!(pc.deadline(0), Some(d + k * p));
        assert_eq!(
            pc.next_injection(0, d + k * p, READY),
            Injection::External(0x61)
        );
        pc.xapic_write(0, XAPIC_PAGE + 0xB0, AccessWidth::Word, 0, d + k * p);
    }
}

#[test]
fn tsc_deadline_timer_through_the_msrs() {
    let (pc, _) = pc(1);
    enable(&pc, 0);
    // TSC-deadline mode (10 in bits 18:17), vector 0x70.
    pc.xapic_write(0, XAPIC_PAGE + 0x320, AccessWidth::Word, 0x4_0070, 0);
    assert_eq!(pc.wrmsr(0, IA32_TSC_DEADLINE, 5000, 0), Some(Ok(())));
    assert_eq!(pc.rdmsr(0, IA32_TSC_DEADLINE, 0), Some(Ok(5000)));
    assert_eq!(pc.deadline(0), Some(5000));
    assert_eq!(pc.next_injection(0, 5000, READY), Injection::External(0x70));
    assert_eq!(pc.rdmsr(0, IA32_TSC_DEADLINE, 5000), Some(Ok(0)));
    // Not an APIC MSR: the vCPU's own code answers.
    assert_eq!(pc.rdmsr(0, 0xC000_0080, 0), None);
    // x2APIC MSRs outside x2APIC mode: #GP.
    assert_eq!(pc.rdmsr(0, 0x802, 0), Some(Err(MsrError::NotX2apic)));
}

#[test]
fn x2apic_ipi_by_msr() {
    let (pc, kicks) = pc(2);
    for v in 0..2 {
        assert_eq!(
            pc.wrmsr(
                v,
                IA32_APIC_BASE,
                0xFEE0_0C00 | if v == 0 { 0x100 } else { 0 },
                0
            ),
            Some(Ok(()))
        );
        assert_eq!(pc.wrmsr(v, 0x80F, 0x1FF, 0), Some(Ok(())));
    }
    assert_eq!(pc.rdmsr(1, 0x802, 0), Some(Ok(1)));
    assert_eq!(pc.wrmsr(0, 0x830, (1 << 32) | 0x44, 0), Some(Ok(())));
    assert_eq!(kicks.take(), [1]);
    assert_eq!(pc.next_injection(1, 0, READY), Injection::External(0x44));
    // SELF IPI.
    assert_eq!(pc.wrmsr(0, 0x83F, 0x45, 0), Some(Ok(())));
    assert_eq!(pc.next_injection(0, 0, READY), Injection::External(0x45));
}

/// Programs I/O APIC entry `pin`: `low` (vector, modes, mask) and destination `dest`.
fn redirect(pc: &Arc<VirtualPc>, pin: u32, low: u32, dest: u8) {
    let io = pc.ioapic_device();
    io.write(0, AccessWidth::Word, u64::from(0x11 + 2 * pin))
        .unwrap();
    io.write(0x10, AccessWidth::Word, u64::from(dest) << 24)
        .unwrap();
    io.write(0, AccessWidth::Word, u64::from(0x10 + 2 * pin))
        .unwrap();
    io.write(0x10, AccessWidth::Word, u64::from(low)).unwrap();
}

#[test]
fn ioapic_id_and_version() {
    let (pc, _) = pc(3);
    let io = pc.ioapic_device();
    assert_eq!(
        io.read(0x10, AccessWidth::Word),
        Ok(3 << 24),
        "ID = vCPU count"
    );
    io.write(0, AccessWidth::Word, 1).unwrap();
    assert_eq!(io.read(0x10, AccessWidth::Word), Ok(0x0017_0011));
}

#[test]
fn ioapic_level_interrupt_and_eoi_remote_irr() {
    let (pc, kicks) = pc(2);
    enable(&pc, 1);
    // Pin 4 (the UART): level (bit 15), vector 0x34, to vCPU 1.
    redirect(&pc, 4, 0x8034, 1);
    let line = pc.irq_line(4).unwrap();
    assert!(pc.irq_line(24).is_none());
    line.set_level(true);
    assert_eq!(kicks.take(), [1]);
    assert_eq!(pc.next_injection(1, 0, READY), Injection::External(0x34));
    // Remote IRR set: still asserted, not resent until the EOI.
    line.set_level(true);
    assert!(kicks.take().is_empty());
    let io = pc.ioapic_device();
    io.write(0, AccessWidth::Word, 0x18).unwrap();
    assert_ne!(
        io.read(0x10, AccessWidth::Word).unwrap() & (1 << 14),
        0,
        "remote IRR"
    );
    // EOI while the line is still high: resent.
    pc.xapic_write(1, XAPIC_PAGE + 0xB0, AccessWidth::Word, 0, 0);
    assert_eq!(kicks.take(), [1]);
    assert_eq!(pc.next_injection(1, 0, READY), Injection::External(0x34));
    line.set_level(false);
    pc.xapic_write(1, XAPIC_PAGE + 0xB0, AccessWidth::Word, 0, 0);
    assert_eq!(io.read(0x10, AccessWidth::Word).unwrap() & (1 << 14), 0);
    assert_eq!(pc.next_injection(1, 0, READY), Injection::None);
}

#[test]
fn pit_irq0_reaches_vcpu0_through_pin_2() {
    let (pc, _) = pc(1);
    enable(&pc, 0);
    redirect(&pc, PIT_GSI, 0x20, 0);
    // Channel 0, LSB then MSB, mode 2, count 1193 (about 1 ms).
    pc.port_write(0x43, AccessWidth::Byte, 0x34, 0).unwrap();
    pc.port_write(0x40, AccessWidth::Byte, 1193 & 0xFF, 0)
        .unwrap();
    pc.port_write(0x40, AccessWidth::Byte, 1193 >> 8, 0)
        .unwrap();
    let d = pc.deadline(0).expect("the PIT's IRQ 0 is a deadline");
    // 1193 PIT ticks in TSC ticks at 1 GHz: about 1 ms.
    assert!((999_000..1_001_000).contains(&d), "{d}");
    assert_eq!(pc.next_injection(0, d - 1000, READY), Injection::None);
    assert_eq!(pc.next_injection(0, d, READY), Injection::External(0x20));
}

#[test]
fn sipi_starts_a_waiting_vcpu_once() {
    let (pc, _) = pc(3);
    enable(&pc, 0);
    // INIT (101, level assert) then SIPI (110) vector 0x9A to vCPU 1.
    icr(&pc, 0, 1, 0x4500);
    assert_eq!(pc.take_start(), None);
    icr(&pc, 0, 1, 0x069A);
    icr(&pc, 0, 1, 0x069A);
    assert_eq!(
        pc.take_start(),
        Some(StartRequest {
            target: 1,
            vector: 0x9A
        })
    );
    assert_eq!(pc.take_start(), None, "the second SIPI is ignored");
    assert_eq!(
        StartRequest {
            target: 1,
            vector: 0x9A
        }
        .entry(),
        0x9_A000
    );
    assert_eq!(pc.take_startup_vector(1), Some(0x9A));
    // Running now: another SIPI does nothing.
    icr(&pc, 0, 1, 0x069B);
    assert_eq!(pc.take_start(), None);
    // vCPU 2 started by hypercall: no vector, and a later SIPI does nothing.
    assert_eq!(pc.take_startup_vector(2), None);
    icr(&pc, 0, 2, 0x0610);
    assert_eq!(pc.take_start(), None);
    // vCPU 0 is running from the start.
    assert_eq!(pc.take_startup_vector(0), None);
    // A reset: the APs wait for a SIPI again.
    pc.reset();
    icr(&pc, 0, 2, 0x0611);
    assert_eq!(pc.take_start().map(|s| s.target), Some(2));
}

#[test]
fn pc_ports_and_pm1_power_off() {
    let (pc, _) = pc(1);
    assert_eq!(pc.port_read(0x3F8, AccessWidth::Byte, 0), None);
    assert_eq!(pc.port_write(0x3F8, AccessWidth::Byte, 0, 0), None);
    // PIC mask, ELCR, POST port.
    assert_eq!(
        pc.port_write(0x21, AccessWidth::Byte, 0xFB, 0),
        Some(PortWrite::Done)
    );
    assert_eq!(pc.port_read(0x21, AccessWidth::Byte, 0), Some(0xFB));
    assert_eq!(
        pc.port_read(0x21, AccessWidth::Half, 0),
        Some(0xFFFF),
        "refused width"
    );
    assert_eq!(
        pc.port_write(0x80, AccessWidth::Byte, 0, 0),
        Some(PortWrite::Done)
    );
    // RTC: register B's power-on value through the index port.
    assert_eq!(
        pc.port_write(0x70, AccessWidth::Byte, 0x0D, 0),
        Some(PortWrite::Done)
    );
    assert_eq!(pc.port_read(0x71, AccessWidth::Byte, 0), Some(0x80));
    // PM1: status reads 0; enable reads back; control reads back without SLP_EN.
    assert_eq!(pc.port_read(0x600, AccessWidth::Half, 0), Some(0));
    assert_eq!(
        pc.port_write(0x602, AccessWidth::Half, 0x0120, 0),
        Some(PortWrite::Done)
    );
    assert_eq!(pc.port_read(0x602, AccessWidth::Half, 0), Some(0x0120));
    assert_eq!(pc.port_read(0x603, AccessWidth::Byte, 0), Some(0x01));
    // SLP_TYP 1 with SLP_EN: not S5, nothing happens.
    assert_eq!(
        pc.port_write(0x604, AccessWidth::Half, 0x2401, 0),
        Some(PortWrite::Done)
    );
    assert_eq!(pc.port_read(0x604, AccessWidth::Half, 0), Some(0x0401));
    // SLP_TYP 5 with SLP_EN: power off.
    assert_eq!(
        pc.port_write(0x604, AccessWidth::Half, 0x3401, 0),
        Some(PortWrite::PowerOff)
    );
    // Byte writes: the high byte alone carries SLP_EN.
    assert_eq!(
        pc.port_write(0x605, AccessWidth::Byte, 0x34, 0),
        Some(PortWrite::PowerOff)
    );
}

#[test]
fn port_61_gates_and_shows_pit_channel_2() {
    let (pc, _) = pc(1);
    // Gate on, speaker off; channel 2 mode 0, count 100.
    pc.port_write(0x61, AccessWidth::Byte, 1, 0).unwrap();
    pc.port_write(0x43, AccessWidth::Byte, 0xB0, 0).unwrap();
    pc.port_write(0x42, AccessWidth::Byte, 100, 0).unwrap();
    pc.port_write(0x42, AccessWidth::Byte, 0, 0).unwrap();
    let out2 = |now| pc.port_read(0x61, AccessWidth::Byte, now).unwrap() & 0x20 != 0;
    assert!(!out2(0));
    // 100 PIT ticks later (in TSC ticks at 1 GHz) OUT2 is high.
    assert!(out2(200 * TSC_HZ / PIT_HZ_FOR_TESTS));
}

const PIT_HZ_FOR_TESTS: u64 = x86_vapic::PIT_HZ;

#[test]
fn acpi_pm_timer_counts_at_3_58_mhz_in_24_bits() {
    let (pc, _) = pc(1);
    let read = |now| pc.port_read(0x608, AccessWidth::Word, now).unwrap();
    assert_eq!(read(0), 0);
    // One second of TSC (1 GHz): 3_579_545 ticks, wrapped to 24 bits.
    assert_eq!(read(TSC_HZ), 3_579_545 & 0xFF_FFFF);
    let t = read(TSC_HZ / 1000);
    assert_eq!(t, 3579, "1 ms");
    // Byte reads give the bytes of the count; writes are dropped.
    assert_eq!(
        pc.port_read(0x609, AccessWidth::Byte, TSC_HZ / 1000),
        Some(3579 >> 8)
    );
    assert_eq!(
        pc.port_write(0x608, AccessWidth::Word, 0, 0),
        Some(PortWrite::Done)
    );
    assert_eq!(read(TSC_HZ / 1000), 3579);
}

/// Whatever a guest does through the PC's entry points — any MSR number and value, any
/// offset and width in the xAPIC page, any port, any I/O APIC access, from any vCPU, at
/// any time — nothing panics (overflow checks are on in tests) and every injection decision
/// names a vector the local APIC accepted.
#[test]
fn random_guest_accesses_never_panic() {
    let (pc, _) = pc(3);
    let io = pc.ioapic_device();
    let widths = [
        AccessWidth::Byte,
        AccessWidth::Half,
        AccessWidth::Word,
        AccessWidth::Dword,
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut now = 0u64;
    let mut injected = 0;
    for _ in 0..200_000 {
        let r = next();
        let vcpu = (r % 4) as usize; // 3 is no vCPU of this PC
        let width = widths[(r >> 2) as usize % 4];
        let value = next();
        now = now.wrapping_add(next() % 50_000);
        match (r >> 4) % 8 {
            0 => {
                let msr = [0x1B, 0x6E0, 0x800 + (value as u32 % 0x100), value as u32]
                    [(r >> 8) as usize % 4];
                let _ = pc.rdmsr(vcpu, msr, now);
                let _ = pc.wrmsr(vcpu, msr, next(), now);
            }
            1 => {
                let gpa = XAPIC_PAGE + (value % 0x1100);
                let _ = pc.xapic_read(vcpu, gpa, width, now);
                pc.xapic_write(vcpu, gpa, width, next(), now);
            }
            2 => {
                let port = (value % 0x700) as u16;
                let _ = pc.port_read(port, width, now);
                let _ = pc.port_write(port, width, next(), now);
            }
            3 => {
                let _ = io.read((value % 0x1100) as usize, width);
                let _ = io.write((value % 0x1100) as usize, width, next());
            }
            4 => pc.set_gsi((value % 30) as u32, value & 1 != 0),
            5 => {
                let ready = Ready {
                    irq: value & 1 != 0,
                    nmi: value & 2 != 0,
                };
                if let Injection::External(v) = pc.next_injection(vcpu, now, ready) {
                    assert!(v >= 16, "vector {v}");
                    injected += 1;
                }
                let _ = pc.wakeup_pending(vcpu, now, value & 4 != 0);
                let _ = pc.deadline(vcpu);
            }
            6 => {
                let _ = pc.take_start();
                let _ = pc.take_startup_vector(vcpu);
            }
            _ => {
                if value % 1000 == 0 {
                    pc.reset();
                }
                // Now and then something a guest means: an enabled APIC sending an IPI.
                enable(&pc, vcpu);
                icr(
                    &pc,
                    vcpu,
                    (value >> 8) as u32 % 3,
                    0x20 + (value as u32 % 0xD0),
                );
            }
        }
    }
    assert!(
        injected > 0,
        "the random accesses never got an interrupt through"
    );
}
