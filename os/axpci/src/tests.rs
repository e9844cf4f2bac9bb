//! The walk and the BAR decoding over a fake configuration space.

extern crate std;

use super::*;
use core::cell::RefCell;
use std::collections::BTreeMap;
use std::string::ToString;
use std::vec::Vec;

/// A configuration space in memory: 64 registers per present function; absent functions
/// read all ones and ignore writes. Counts reads, to bound the walk's work.
#[derive(Default)]
struct Fake {
    functions: RefCell<BTreeMap<Bdf, [u32; 64]>>,
    reads: core::cell::Cell<usize>,
}

fn at(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf::new(bus, device, function).unwrap()
}

impl Fake {
    fn add(&self, a: Bdf, vendor: u16, device: u16, header: u8) -> &Self {
        let mut regs = [0u32; 64];
        regs[0] = u32::from(vendor) | (u32::from(device) << 16);
        regs[3] = u32::from(header) << 16;
        self.functions.borrow_mut().insert(a, regs);
        self
    }

    fn bridge(&self, a: Bdf, secondary: u8) -> &Self {
        self.add(a, 0x8086, 0x1234, 1);
        self.set(a, 0x18, u32::from(secondary) << 8);
        self
    }

    fn set(&self, a: Bdf, offset: u8, value: u32) {
        self.functions.borrow_mut().get_mut(&a).unwrap()[usize::from(offset / 4)] = value;
    }

    fn get(&self, a: Bdf, offset: u8) -> u32 {
        self.functions.borrow()[&a][usize::from(offset / 4)]
    }

    fn found(&self) -> Vec<Bdf> {
        let mut out = Vec::new();
        walk::<()>(self, |f| {
            out.push(f.at);
            ControlFlow::Continue(())
        });
        out
    }
}

impl ConfigAccess for Fake {
    fn read32(&self, a: Bdf, offset: u8) -> u32 {
        self.reads.set(self.reads.get() + 1);
        assert!(offset.is_multiple_of(4) && a.device < 32 && a.function < 8);
        self.functions
            .borrow()
            .get(&a)
            .map_or(u32::MAX, |r| r[usize::from(offset / 4)])
    }

    fn write32(&self, a: Bdf, offset: u8, value: u32) {
        if let Some(r) = self.functions.borrow_mut().get_mut(&a) {
            r[usize::from(offset / 4)] = value;
        }
    }
}

#[test]
fn empty_space_has_nothing() {
    let fake = Fake::default();
    assert!(fake.found().is_empty());
    // Bus 0 only: one read per device slot.
    assert_eq!(fake.reads.get(), 32);
    assert_eq!(nth_virtio_blk(&fake, 0), None);
}

#[test]
fn q35_like_bus_finds_the_disk() {
    let fake = Fake::default();
    fake.add(at(0, 0, 0), 0x8086, 0x29c0, 0)
        .add(at(0, 1, 0), 0x1234, 0x1111, 0)
        .add(at(0, 3, 0), VIRTIO_VENDOR, 0x1001, 0)
        .add(at(0, 0x1f, 0), 0x8086, 0x2918, 0x80)
        .add(at(0, 0x1f, 2), 0x8086, 0x2922, 0)
        .add(at(0, 0x1f, 3), 0x8086, 0x2930, 0);
    fake.set(at(0, 3, 0), 0x08, 0x0100_0000);
    assert_eq!(
        fake.found(),
        [
            at(0, 0, 0),
            at(0, 1, 0),
            at(0, 3, 0),
            at(0, 0x1f, 0),
            at(0, 0x1f, 2),
            at(0, 0x1f, 3)
        ]
    );
    let disk = nth_virtio_blk(&fake, 0).unwrap();
    assert_eq!(disk.at.to_string(), "00:03.0");
    assert_eq!(
        (disk.device, disk.class, disk.header_type),
        (0x1001, 0x0100, 0)
    );
}

#[test]
fn modern_id_counts_and_other_virtio_devices_do_not() {
    let fake = Fake::default();
    fake.add(at(0, 2, 0), VIRTIO_VENDOR, 0x1041, 0) // a network device
        .add(at(0, 4, 0), VIRTIO_VENDOR, 0x1042, 0);
    assert_eq!(nth_virtio_blk(&fake, 0).unwrap().at, at(0, 4, 0));
    assert_eq!(nth_virtio_blk(&fake, 1), None);
}

#[test]
fn every_disk_is_found_in_walk_order() {
    let fake = Fake::default();
    fake.add(at(0, 3, 0), VIRTIO_VENDOR, 0x1042, 0)
        .add(at(0, 4, 0), VIRTIO_VENDOR, 0x1041, 0)
        .add(at(0, 5, 0), VIRTIO_VENDOR, 0x1001, 0);
    assert_eq!(nth_virtio_blk(&fake, 0).unwrap().at, at(0, 3, 0));
    assert_eq!(nth_virtio_blk(&fake, 1).unwrap().at, at(0, 5, 0));
    assert_eq!(nth_virtio_blk(&fake, 2), None);
}

#[test]
fn single_function_device_hides_its_other_functions() {
    // Some devices answer on every function number with function 0's registers; without
    // the multifunction bit only function 0 counts.
    let fake = Fake::default();
    fake.add(at(0, 5, 0), 0x1b36, 1, 0)
        .add(at(0, 5, 1), 0x1b36, 1, 0);
    assert_eq!(fake.found(), [at(0, 5, 0)]);
}

#[test]
fn absent_function_zero_hides_the_device_and_vendor_zero_is_absent() {
    let fake = Fake::default();
    fake.add(at(0, 6, 1), VIRTIO_VENDOR, 0x1042, 0)
        .add(at(0, 7, 0), 0, 0x1042, 0);
    assert!(fake.found().is_empty());
}

#[test]
fn buses_behind_bridges_are_walked_once() {
    let fake = Fake::default();
    fake.bridge(at(0, 0x1c, 0), 2)
        .bridge(at(0, 0x1d, 0), 2) // the same bus again
        .bridge(at(2, 0, 0), 0) // back to bus 0: a loop
        .bridge(at(2, 1, 0), 2) // itself
        .add(at(2, 9, 0), VIRTIO_VENDOR, 0x1042, 0);
    assert_eq!(
        fake.found(),
        [
            at(0, 0x1c, 0),
            at(0, 0x1d, 0),
            at(2, 0, 0),
            at(2, 1, 0),
            at(2, 9, 0)
        ]
    );
    assert_eq!(nth_virtio_blk(&fake, 0).unwrap().at.to_string(), "02:09.0");
}

#[test]
fn a_chain_through_every_bus_ends() {
    let fake = Fake::default();
    for bus in 0..=255u8 {
        fake.bridge(at(bus, 0, 0), bus.wrapping_add(1));
    }
    assert_eq!(fake.found().len(), 256);
}

#[test]
fn hostile_space_never_panics_and_the_work_is_bounded() {
    // Every function of every bus present, multifunction, a bridge to some bus, with
    // pseudo-random BARs: the walk ends after each bus once.
    let fake = Fake::default();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u32
    };
    for bus in 0..=255u8 {
        for device in 0..32 {
            for function in 0..8 {
                let a = at(bus, device, function);
                fake.bridge(a, next() as u8);
                fake.set(a, 0x0c, 0x0081_0000);
                for i in 0..6 {
                    fake.set(a, 0x10 + 4 * i, next());
                }
            }
        }
    }
    let mut count = 0usize;
    walk::<()>(&fake, |f| {
        count += 1;
        for_each_bar(&fake, f.at, |_, _| {});
        ControlFlow::Continue(())
    });
    assert!(count <= 256 * 32 * 8);
    assert!(count >= 32 * 8);
}

#[test]
fn bars_decode() {
    assert_eq!(decode_bar(0, 0xc041, None), Ok(Bar::Io { port: 0xc040 }));
    assert_eq!(
        decode_bar(1, 0xfebf_1000, Some(7)),
        Ok(Bar::Memory {
            address: 0xfebf_1000,
            wide: false,
            prefetchable: false
        })
    );
    assert_eq!(
        decode_bar(4, 0xfe00_000c, Some(0x1)),
        Ok(Bar::Memory {
            address: 0x1_fe00_0000,
            wide: true,
            prefetchable: true
        })
    );
    assert_eq!(decode_bar(5, 0x4, None), Err(BarError::TruncatedWide(5)));
    assert_eq!(decode_bar(2, 0x6, Some(0)), Err(BarError::ReservedType(2)));
    assert_eq!(decode_bar(2, 0x2, Some(0)), Err(BarError::ReservedType(2)));
    for raw in [0, u32::MAX, 0x8000_0001, 0xffff_fffe] {
        for index in 0..6 {
            let _ = decode_bar(index, raw, Some(raw));
            let _ = decode_bar(index, raw, None);
        }
    }
}

#[test]
fn bars_of_a_function() {
    let fake = Fake::default();
    let d = at(0, 3, 0);
    fake.add(d, VIRTIO_VENDOR, 0x1001, 0);
    fake.set(d, 0x10, 0xc041);
    fake.set(d, 0x14, 0xfebf_1000);
    fake.set(d, 0x20, 0xfe00_000c);
    fake.set(d, 0x24, 0);
    fake.set(d, 0x18, 0x6); // reserved: skipped
    let mut seen = Vec::new();
    for_each_bar(&fake, d, |i, b| seen.push((i, b)));
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0], (0, Bar::Io { port: 0xc040 }));
    assert_eq!(seen[3].0, 4);
    assert!(matches!(
        seen[3].1,
        Bar::Memory {
            address: 0xfe00_0000,
            wide: true,
            ..
        }
    ));
    assert_eq!(bar(&fake, d, 6), Err(BarError::NoSuchBar(6)));
    // The last BAR as 64-bit has no high half.
    fake.set(d, 0x24, 0x4);
    assert_eq!(bar(&fake, d, 5), Err(BarError::TruncatedWide(5)));
}

#[test]
fn enable_sets_bits_and_keeps_the_rest() {
    let fake = Fake::default();
    let d = at(0, 3, 0);
    fake.add(d, VIRTIO_VENDOR, 0x1042, 0);
    fake.set(d, 0x04, 0x0010_0001); // status: capability list; command: I/O
    enable(&fake, d, command::MEMORY | command::BUS_MASTER);
    assert_eq!(fake.get(d, 0x04) & 0xffff, 0x7);
}

#[test]
fn bdf_checks_and_shows() {
    assert_eq!(Bdf::new(0, 32, 0), None);
    assert_eq!(Bdf::new(0, 0, 8), None);
    assert_eq!(at(0xab, 0x1f, 7).to_string(), "ab:1f.7");
}
