//! The x86 interrupt and timer models (`x86_vapic`) as one VM would use them: 1 to 4 local
//! APICs (x2APIC MSRs of any number and value, the xAPIC page, IA32_APIC_BASE mode
//! switches, accepted interrupts, acknowledges, the timer), the I/O APIC (window accesses,
//! lines, EOIs), the PIC pair and ELCR, the PIT with port 0x61 and the RTC, with time
//! moving forward by any amount. IPIs and EOIs are routed the way the VM routes them.
//!
//! Checked: no vector below 16 is ever requested or in service; an acknowledged vector
//! moves from IRR to ISR and was deliverable (class above PPR's); an EOI takes at most one
//! vector out of service, the highest, and an EOI with nothing in service changes
//! nothing; a level EOI names a vector that was in service; a masked I/O APIC entry never
//! delivers, and a line delivers only through its own entry; after a tick the timer's
//! next deadline lies in the future; refused accesses are refused for the documented
//! reason only (width, alignment, offset) and MSR refusals only for APIC MSRs.

use axdevice_base::{AccessWidth, DeviceError};
use axvisor_fuzz::Input;
use x86_vapic::{
    ApicMode, Delivery, Effect, Elcr, IoApic, Lapic, LapicConfig, Message, MsrError, Pic8259, Pit,
    Rtc, IA32_APIC_BASE, IA32_TSC_DEADLINE, IOAPIC_PINS, IOAPIC_SIZE, LAPIC_SIZE, X2APIC_MSR_FIRST,
};

struct Vm {
    apics: Vec<Lapic>,
    ioapic: IoApic,
    now: u64,
}

fn in_service(apic: &Lapic) -> Vec<u8> {
    (0..=255u8).filter(|&v| apic.isr(v)).collect()
}

fn check_apic(apic: &Lapic) {
    for v in 0..16u8 {
        assert!(!apic.irr(v), "vector {v} requested");
        assert!(!apic.isr(v), "vector {v} in service");
    }
    if let Some(v) = apic.pending_vector() {
        assert!(apic.irr(v));
        assert!(
            v >> 4 > apic.ppr() >> 4,
            "{v:#x} pending at PPR {:#x}",
            apic.ppr()
        );
    }
}

impl Vm {
    /// Delivers one message the way the VM does.
    fn deliver(&mut self, m: Message) {
        let n = self.apics.len();
        let apics = &self.apics;
        let targets = m.dest.resolve(n, |i, mda| apics[i].logical_match(mda));
        for i in targets.iter() {
            assert!(i < n, "target {i} of {n}");
        }
        let targets: Vec<usize> = match m.delivery {
            Delivery::LowestPriority => targets.first().into_iter().collect(),
            _ => targets.iter().collect(),
        };
        for i in targets {
            let apic = &mut self.apics[i];
            match m.delivery {
                Delivery::Fixed | Delivery::LowestPriority => {
                    let accepted = apic.accept(m.vector, m.level);
                    assert!(!accepted || m.vector >= 16);
                    if accepted {
                        assert!(apic.irr(m.vector));
                        assert_eq!(apic.tmr(m.vector), m.level);
                    }
                }
                Delivery::Nmi => apic.raise_nmi(),
                Delivery::Init => apic.init(),
                Delivery::StartUp | Delivery::Smi | Delivery::ExtInt => {}
            }
        }
    }

    /// Routes what a local APIC register write asked for.
    fn effect(&mut self, effect: Option<Effect>, isr_before: &[u8], from: usize) {
        match effect {
            None => {}
            Some(Effect::Ipi(m)) => self.deliver(m),
            Some(Effect::Eoi(v)) => {
                assert!(isr_before.contains(&v), "EOI of {v:#x} not in service");
                assert!(!self.apics[from].isr(v));
                let mut out = Vec::new();
                self.ioapic.eoi(v, &mut |m| out.push(m));
                self.check_messages(&out);
                for m in out {
                    assert_eq!(m.vector, v, "EOI of {v:#x} re-sent {m:?}");
                    self.deliver(m);
                }
            }
        }
    }

    /// Every message the I/O APIC sent matches an unmasked entry.
    fn check_messages(&self, out: &[Message]) {
        for m in out {
            let from_unmasked = (0..IOAPIC_PINS).any(|pin| {
                let e = self.ioapic.entry(pin).unwrap();
                e & (1 << 16) == 0 && e as u8 == m.vector && (e & (1 << 15) != 0) == m.level
            });
            assert!(from_unmasked, "{m:?} from no unmasked entry");
        }
    }

    /// After a register write that may have ended an interrupt: at most the highest one
    /// left service.
    fn check_eoi(&self, i: usize, before: &[u8]) {
        let after = in_service(&self.apics[i]);
        let gone: Vec<u8> = before
            .iter()
            .copied()
            .filter(|v| !after.contains(v))
            .collect();
        assert!(gone.len() <= 1, "EOI ended {gone:?}");
        if let Some(&v) = gone.first() {
            assert_eq!(
                Some(&v),
                before.iter().max(),
                "EOI ended {v:#x}, not the highest"
            );
        }
    }
}

fn width(input: &mut Input<'_>) -> AccessWidth {
    // Mostly the right width for the device.
    let b = input.u8();
    if b & 0xC0 != 0 {
        AccessWidth::ALL[(b >> 6) as usize & 3]
    } else {
        AccessWidth::ALL[b as usize & 3]
    }
}

fn check_port(result: Result<u64, DeviceError>, offset: usize, size: usize, w: AccessWidth) {
    match result {
        Ok(v) => assert!(v <= w.mask(), "{v:#x} wider than {w}"),
        Err(DeviceError::BadOffset) => assert!(offset >= size),
        Err(DeviceError::BadWidth) => assert_ne!(w, AccessWidth::Byte),
        Err(DeviceError::Misaligned) => panic!("port devices have no alignment"),
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let shape = input.u8();
    let n = shape as usize % 4 + 1;
    let mut vm = Vm {
        apics: (0..n)
            .map(|vcpu| {
                Lapic::new(LapicConfig {
                    vcpu,
                    tsc_per_bus_tick: (shape >> 2) as u64 % 16,
                })
            })
            .collect(),
        ioapic: IoApic::new(),
        now: 0,
    };
    let mut pics = [Pic8259::new(), Pic8259::new()];
    let mut elcr = Elcr::default();
    let mut pit = Pit::new();
    let mut rtc = Rtc::new();
    let mut pit_now = 0u64;
    let mut unix_ns = input.u64();

    while !input.is_empty() {
        let op = input.u8();
        let i = input.u8() as usize % n;
        match op % 16 {
            // x2APIC MSRs (and the two other APIC MSRs), any value.
            0..=2 => {
                let sel = input.u16();
                let msr = match sel >> 14 {
                    0 | 1 => X2APIC_MSR_FIRST + (sel as u32 & 0xFF),
                    2 => [IA32_APIC_BASE, IA32_TSC_DEADLINE][sel as usize & 1],
                    _ => sel as u32 * 7,
                };
                let apic_msr = matches!(msr, IA32_APIC_BASE | IA32_TSC_DEADLINE | 0x800..=0x8FF);
                let value = match input.u8() % 4 {
                    0 => input.u8() as u64,
                    1 => input.u32() as u64,
                    2 => input.u32() as u64 | (input.u8() as u64) << 32,
                    _ => input.u64(),
                };
                let before = in_service(&vm.apics[i]);
                if op & 0x10 == 0 {
                    let r = vm.apics[i].rdmsr(msr, vm.now);
                    assert!(apic_msr || r == Err(MsrError::NotApic));
                    if let (Ok(v), 0x800..=0x8FF) = (r, msr) {
                        assert_eq!(vm.apics[i].mode(), ApicMode::X2Apic);
                        if msr != 0x830 {
                            assert!(v <= u32::MAX as u64, "{msr:#x} = {v:#x}");
                        }
                    }
                } else {
                    let r = vm.apics[i].wrmsr(msr, value, vm.now);
                    assert!(apic_msr || r == Err(MsrError::NotApic));
                    if r.is_err() {
                        assert_eq!(
                            in_service(&vm.apics[i]),
                            before,
                            "refused write changed ISR"
                        );
                    }
                    if msr == IA32_APIC_BASE {
                        // Disabling resets the local APIC.
                        if vm.apics[i].mode() == ApicMode::Disabled {
                            assert_eq!(vm.apics[i].highest_isr(), None);
                            assert_eq!(vm.apics[i].highest_irr(), None);
                        }
                    } else {
                        vm.check_eoi(i, &before);
                    }
                    vm.effect(r.ok().flatten(), &before, i);
                }
            }
            // The xAPIC page.
            3 | 4 => {
                let offset = match input.u8() % 4 {
                    0 => input.u16() as usize % (LAPIC_SIZE + 16),
                    _ => (input.u8() as usize % 0x40) * 16,
                };
                let w = width(&mut input);
                let before = in_service(&vm.apics[i]);
                let r = if op & 0x10 == 0 {
                    vm.apics[i].mmio_read(offset, w, vm.now).map(|v| {
                        assert!(v <= u32::MAX as u64);
                        None
                    })
                } else {
                    vm.apics[i].mmio_write(offset, w, input.u32() as u64, vm.now)
                };
                match r {
                    Err(DeviceError::BadOffset) => assert!(offset >= LAPIC_SIZE),
                    Err(DeviceError::BadWidth) => assert_ne!(w, AccessWidth::Word),
                    Err(DeviceError::Misaligned) => assert_ne!(offset % 4, 0),
                    Ok(effect) => {
                        vm.check_eoi(i, &before);
                        vm.effect(effect, &before, i);
                    }
                }
            }
            // An interrupt arrives, or the vCPU takes one.
            5 => {
                let vector = input.u8();
                let accepted = vm.apics[i].accept(vector, op & 0x20 != 0);
                assert!(!accepted || vector >= 16);
            }
            6 => {
                let apic = &mut vm.apics[i];
                let pending = apic.pending_vector();
                let ppr = apic.ppr();
                let got = apic.acknowledge();
                assert_eq!(got, pending);
                if let Some(v) = got {
                    assert!(v >= 16 && v >> 4 > ppr >> 4);
                    assert!(apic.isr(v));
                    assert!(!apic.irr(v));
                }
                let _ = apic.take_nmi();
            }
            // Time passes; timers fire.
            7 => {
                let step = match input.u8() % 4 {
                    0 => input.u8() as u64,
                    1 => input.u16() as u64,
                    2 => input.u32() as u64,
                    _ => input.u64(),
                };
                vm.now = vm.now.saturating_add(step);
                pit_now = pit_now.saturating_add(step / 64);
                unix_ns = unix_ns.saturating_add(step);
                for apic in &mut vm.apics {
                    apic.tick(vm.now);
                    if let Some(d) = apic.next_deadline() {
                        assert!(d > vm.now || d == u64::MAX, "deadline {d} at {}", vm.now);
                    }
                }
                if pit.poll_irq0(pit_now) {
                    let mut out = Vec::new();
                    vm.ioapic.set_line(2, true, &mut |m| out.push(m));
                    vm.ioapic.set_line(2, false, &mut |m| out.push(m));
                    vm.check_messages(&out);
                    out.into_iter().for_each(|m| vm.deliver(m));
                }
                if let Some(next) = pit.next_irq0() {
                    assert!(next > pit_now || next == u64::MAX);
                }
            }
            // The I/O APIC window.
            8 | 9 => {
                let offset = match input.u8() % 8 {
                    0 => input.u16() as usize % (IOAPIC_SIZE + 16),
                    1..=3 => 0,
                    _ => 0x10,
                };
                let w = width(&mut input);
                let mut out = Vec::new();
                let r = if op & 0x10 == 0 {
                    vm.ioapic
                        .mmio_read(offset, w)
                        .map(|v| assert!(v <= u32::MAX as u64))
                } else {
                    // Register numbers near the table, sometimes any.
                    let value = if offset == 0 && op & 0x20 != 0 {
                        input.u8() as u64 % 0x40
                    } else {
                        input.u32() as u64
                    };
                    vm.ioapic.mmio_write(offset, w, value, &mut |m| out.push(m))
                };
                match r {
                    Err(DeviceError::BadOffset) => assert!(offset >= IOAPIC_SIZE),
                    Err(DeviceError::BadWidth) => assert_ne!(w, AccessWidth::Word),
                    Err(DeviceError::Misaligned) => assert_ne!(offset % 4, 0),
                    Ok(()) => {}
                }
                assert!(out.len() <= 1);
                vm.check_messages(&out);
                out.into_iter().for_each(|m| vm.deliver(m));
            }
            // I/O APIC lines.
            10 => {
                let pin = input.u8() as usize % (IOAPIC_PINS + 2);
                let high = op & 0x20 != 0;
                let mut out = Vec::new();
                vm.ioapic.set_line(pin, high, &mut |m| out.push(m));
                assert!(out.len() <= 1);
                if !out.is_empty() {
                    let e = vm.ioapic.entry(pin).expect("a message from a real pin");
                    assert_eq!(e & (1 << 16), 0, "masked pin {pin} delivered");
                    assert!(high, "a falling line delivered");
                    assert_eq!(out[0].vector, e as u8);
                }
                out.into_iter().for_each(|m| vm.deliver(m));
            }
            // The legacy ports.
            11 => {
                let chip = input.u8();
                let offset = input.u8() as usize % 3;
                let w = width(&mut input);
                let value = input.u8() as u64;
                let write = op & 0x10 != 0;
                let r = match chip % 5 {
                    c @ (0 | 1) => {
                        let pic = &mut pics[c as usize];
                        if write {
                            pic.write(offset, w, value).map(|()| 0)
                        } else {
                            pic.read(offset, w)
                        }
                    }
                    2 if write => elcr.write(offset, w, value).map(|()| 0),
                    2 => elcr.read(offset, w),
                    3 if write => rtc.write(offset, w, value, unix_ns).map(|()| 0),
                    _ => rtc.read(offset, w, unix_ns),
                };
                if chip % 5 == 2 && offset == 0 && w == AccessWidth::Half {
                    assert!(r.is_ok());
                } else {
                    check_port(r, offset, 2, w);
                }
            }
            12 | 13 => {
                let offset = input.u8() as usize % 6;
                let w = width(&mut input);
                let value = input.u8() as u64;
                let write = op & 0x10 != 0;
                let r = match (offset, write) {
                    (5, true) => pit.port61_write(w, value, pit_now).map(|()| 0),
                    (5, false) => pit.port61_read(w, pit_now),
                    (_, true) => pit.write(offset, w, value, pit_now).map(|()| 0),
                    (_, false) => pit.read(offset, w, pit_now),
                };
                check_port(r, offset.min(4), 4, w);
            }
            14 => {
                let reg = input.u8();
                let value = input.u8();
                if op & 0x10 != 0 {
                    rtc.write_reg(reg, value, unix_ns);
                }
                let _ = rtc.read_reg(reg, unix_ns);
            }
            _ => {
                // An INIT reaches a vCPU.
                vm.apics[i].init();
                assert_eq!(vm.apics[i].highest_isr(), None);
                assert_eq!(vm.apics[i].highest_irr(), None);
            }
        }
        for apic in &vm.apics {
            check_apic(apic);
        }
    }
}
