//! The port-I/O space of `axdevice::DeviceSet` (`add_port`, `port_read`, `port_write`) with
//! 16550 UARTs at ports: any policy, devices added at any port (most at 0x3F8-like ports,
//! some near 0xFFFF, some overlapping), then any sequence of port accesses of any width and
//! value, with received bytes pushed in between.
//!
//! Checked: `add_port` accepts a device exactly when its ports fit below 0x10000 and
//! overlap no accepted device; an access that no device covers entirely is unclaimed and
//! gets the policy (all ones of its width under `Fault`, 0 under `ReadZero`, the VM stopped
//! under `Stop`, writes ignored) and is counted; a claimed access is answered by its device
//! (a read masked to its width) or, when the device refuses it, is counted and gets the
//! policy; only an `out` transmits, one byte at most.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axdevice::uart::Ns16550;
use axdevice::{DeviceSet, PortOutcome, UnclaimedPolicy};
use axdevice_base::{AccessWidth, MmioDevice};
use axvisor_fuzz::{CountingSink, Input, LevelIrq};

const POLICIES: [UnclaimedPolicy; 3] = [
    UnclaimedPolicy::Fault,
    UnclaimedPolicy::ReadZero,
    UnclaimedPolicy::Stop,
];

/// A port near the devices' usual places, or any.
fn port(input: &mut Input<'_>, near: &[(u16, usize)]) -> u16 {
    let raw = input.u16();
    match input.u8() % 4 {
        0 => raw,
        1 => 0xffff - raw % 16,
        _ => match near.get(usize::from(raw >> 8) % near.len().max(1)) {
            Some(&(base, size)) => base.wrapping_add(raw % (size as u16 + 8)).wrapping_sub(4),
            None => 0x3f8 + raw % 16,
        },
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let shape = input.u8();
    let policy = POLICIES[usize::from(shape) % 3];
    let mut set = DeviceSet::new("fuzz", policy);
    let console = Arc::new(CountingSink::default());

    // Up to four UARTs, 8 to 64 ports each.
    let mut uarts = Vec::new();
    let mut placed: Vec<(u16, usize)> = Vec::new();
    for _ in 0..(shape >> 2) % 5 {
        let size = 8usize << (input.u8() % 4);
        let at = match input.u8() % 4 {
            0 => 0x3f8,
            1 => 0x2f8 + input.u16() % 0x200,
            2 => 0xffff - input.u16() % 64,
            _ => input.u16(),
        };
        let irq = Arc::new(LevelIrq::default());
        let uart = Arc::new(Ns16550::new(console.clone(), Some(irq)).with_size(size));
        let fits = usize::from(at) + uart.size() <= 0x1_0000;
        let overlaps = placed.iter().any(|&(b, s)| {
            usize::from(at) < usize::from(b) + s && usize::from(b) < usize::from(at) + size
        });
        let result = set.add_port(at, uart.clone());
        assert_eq!(
            result.is_ok(),
            fits && !overlaps,
            "add_port({at:#x}, {size}): {result:?}"
        );
        if let Err(e) = result {
            let _ = e.to_string();
        } else {
            placed.push((at, size));
            uarts.push(uart);
        }
    }
    let mut listed: Vec<(u16, usize)> = set.iter_ports().map(|(p, d)| (p, d.size())).collect();
    let mut expected = placed.clone();
    expected.sort_unstable();
    listed.sort_unstable();
    assert_eq!(listed, expected, "iter_ports");

    while !input.is_empty() {
        let ctl = input.u8();
        if ctl.is_multiple_of(16) {
            if let Some(u) = uarts.get(usize::from(ctl >> 4) % uarts.len().max(1)) {
                let bytes = input.slice(20);
                assert!(u.push_input(bytes) <= bytes.len());
            }
            continue;
        }
        let width = AccessWidth::ALL[usize::from(ctl >> 1) & 3];
        let p = port(&mut input, &placed);
        let vcpu = usize::from(input.u8() % 4);
        let write = ctl & 1 != 0;
        let value = if write { input.u64() } else { 0 };

        let claimed = placed.iter().any(|&(b, s)| {
            usize::from(p) >= usize::from(b) && usize::from(p) + width.size() <= usize::from(b) + s
        });
        let before = set.stats().unclaimed_ports;
        let sent = console.0.load(Ordering::Relaxed);
        let outcome = if write {
            set.port_write(vcpu, p, width, value)
        } else {
            set.port_read(vcpu, p, width)
        };
        let counted = set.stats().unclaimed_ports - before;
        let policy_says = policy.port_outcome(!write, width);
        assert!(counted <= 1);
        if !claimed {
            assert_eq!(counted, 1, "unclaimed {width} at {p:#x} not counted");
        }
        if counted == 1 {
            assert_eq!(outcome, policy_says, "unclaimed {width} at {p:#x}");
            match (policy, write) {
                (UnclaimedPolicy::Fault, false) => {
                    assert_eq!(outcome, PortOutcome::Read(width.mask()))
                }
                (UnclaimedPolicy::ReadZero, false) => assert_eq!(outcome, PortOutcome::Read(0)),
                (UnclaimedPolicy::Stop, _) => assert_eq!(outcome, PortOutcome::StopVm),
                (_, true) => assert_eq!(outcome, PortOutcome::Written),
            }
        } else {
            match outcome {
                PortOutcome::Read(v) => {
                    assert!(!write);
                    assert_eq!(v & !width.mask(), 0, "{width} read {v:#x}");
                }
                PortOutcome::Written => assert!(write),
                PortOutcome::StopVm => panic!("a device's answer stopped the VM"),
            }
        }
        let now = console.0.load(Ordering::Relaxed);
        assert!(write || now == sent, "an in transmitted");
        assert!(now - sent <= 1, "one out transmitted {} bytes", now - sent);
    }
}
