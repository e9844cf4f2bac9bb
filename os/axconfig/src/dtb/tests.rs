//! Device trees shaped like QEMU's `virt` machines, built with `vm-fdt`.

use super::*;
use std::vec::Vec;
use vm_fdt::{FdtReserveEntry, FdtWriter};

enum Kind {
    ArmGicV2,
    ArmGicV3,
    Riscv { h: bool },
}

fn build(kind: Kind, ncpus: u32) -> Vec<u8> {
    let mut w =
        FdtWriter::new_with_mem_reserv(&[FdtReserveEntry::new(0x4700_0000, 0x1000).unwrap()])
            .unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.property_string("model", "test-virt").unwrap();
    let arm = !matches!(kind, Kind::Riscv { .. });
    let ram_base: u64 = if arm { 0x4000_0000 } else { 0x8000_0000 };

    let chosen = w.begin_node("chosen").unwrap();
    let uart_name = if arm {
        "/pl011@9000000"
    } else {
        "/soc/serial@10000000"
    };
    w.property_string("stdout-path", uart_name).unwrap();
    w.property_string("bootargs", "log=debug quiet selftest=x selftest=fault")
        .unwrap();
    // QEMU writes the initrd's bounds in 64-bit cells on aarch64, 32-bit ones are allowed.
    if arm {
        w.property_u64("linux,initrd-start", 0x4a00_0000).unwrap();
        w.property_u64("linux,initrd-end", 0x4a10_0000).unwrap();
    } else {
        w.property_u32("linux,initrd-start", 0x8800_0000).unwrap();
        w.property_u32("linux,initrd-end", 0x8800_0000).unwrap();
    }
    w.end_node(chosen).unwrap();

    let mem = w.begin_node(&std::format!("memory@{ram_base:x}")).unwrap();
    w.property_string("device_type", "memory").unwrap();
    w.property_array_u64("reg", &[ram_base, 0x4000_0000])
        .unwrap();
    w.end_node(mem).unwrap();

    let rm = w.begin_node("reserved-memory").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.property_null("ranges").unwrap();
    let fw = w.begin_node("mmode_resv0@80000000").unwrap();
    w.property_array_u64("reg", &[ram_base, 0x4_0000]).unwrap();
    w.end_node(fw).unwrap();
    w.end_node(rm).unwrap();

    let cpus = w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 0).unwrap();
    w.property_u32("timebase-frequency", 10_000_000).unwrap();
    for i in 0..ncpus {
        let c = w.begin_node(&std::format!("cpu@{i}")).unwrap();
        w.property_string("device_type", "cpu").unwrap();
        w.property_u32("reg", i).unwrap();
        if !arm {
            let isa = if matches!(kind, Kind::Riscv { h: true }) {
                "rv64imafdch_zicsr_zifencei_sstc"
            } else {
                "rv64imafdc_zicsr_zifencei"
            };
            w.property_string("riscv,isa", isa).unwrap();
            let ic = w.begin_node("interrupt-controller").unwrap();
            w.property_null("interrupt-controller").unwrap();
            w.property_u32("#interrupt-cells", 1).unwrap();
            w.property_u32("phandle", 100 + i).unwrap();
            w.end_node(ic).unwrap();
        }
        w.end_node(c).unwrap();
    }
    // A disabled CPU and a non-CPU child (cpu-map) are skipped.
    let off = w.begin_node("cpu@99").unwrap();
    w.property_string("device_type", "cpu").unwrap();
    w.property_u32("reg", 99).unwrap();
    w.property_string("status", "disabled").unwrap();
    w.end_node(off).unwrap();
    let map = w.begin_node("cpu-map").unwrap();
    w.end_node(map).unwrap();
    w.end_node(cpus).unwrap();

    match kind {
        Kind::ArmGicV2 => {
            let g = w.begin_node("intc@8000000").unwrap();
            w.property_string_list("compatible", std::vec!["arm,cortex-a15-gic".into()])
                .unwrap();
            w.property_array_u64(
                "reg",
                &[
                    0x800_0000, 0x1_0000, 0x801_0000, 0x1_0000, 0x803_0000, 0x1_0000, 0x804_0000,
                    0x1_0000,
                ],
            )
            .unwrap();
            w.end_node(g).unwrap();
        }
        Kind::ArmGicV3 => {
            let g = w.begin_node("intc@8000000").unwrap();
            w.property_string_list("compatible", std::vec!["arm,gic-v3".into()])
                .unwrap();
            w.property_array_u64("reg", &[0x800_0000, 0x1_0000, 0x80a_0000, 0xf6_0000])
                .unwrap();
            w.end_node(g).unwrap();
        }
        Kind::Riscv { .. } => {
            let soc = w.begin_node("soc").unwrap();
            w.property_u32("#address-cells", 2).unwrap();
            w.property_u32("#size-cells", 2).unwrap();
            let p = w.begin_node("plic@c000000").unwrap();
            w.property_string_list(
                "compatible",
                std::vec!["sifive,plic-1.0.0".into(), "riscv,plic0".into()],
            )
            .unwrap();
            w.property_array_u64("reg", &[0xc00_0000, 0x60_0000])
                .unwrap();
            w.property_u32("riscv,ndev", 95).unwrap();
            let mut ie = Vec::new();
            for i in 0..ncpus {
                ie.extend_from_slice(&[100 + i, 11, 100 + i, 9]);
            }
            w.property_array_u32("interrupts-extended", &ie).unwrap();
            w.end_node(p).unwrap();
            let s = w.begin_node("serial@10000000").unwrap();
            w.property_string("compatible", "ns16550a").unwrap();
            w.property_array_u64("reg", &[0x1000_0000, 0x100]).unwrap();
            w.end_node(s).unwrap();
            let r = w.begin_node("rtc@101000").unwrap();
            w.property_string("compatible", "google,goldfish-rtc")
                .unwrap();
            w.property_array_u64("reg", &[0x10_1000, 0x1000]).unwrap();
            w.property_u32("interrupts", 11).unwrap();
            w.end_node(r).unwrap();
            let off = w.begin_node("rtc@102000").unwrap();
            w.property_string("compatible", "google,goldfish-rtc")
                .unwrap();
            w.property_array_u64("reg", &[0x10_2000, 0x1000]).unwrap();
            w.property_string("status", "disabled").unwrap();
            w.end_node(off).unwrap();
            for (i, status) in ["okay", "disabled", "okay"].iter().enumerate() {
                let base = 0x1000_1000 + 0x1000 * i as u64;
                let v = w.begin_node(&std::format!("virtio_mmio@{base:x}")).unwrap();
                w.property_string("compatible", "virtio,mmio").unwrap();
                w.property_array_u64("reg", &[base, 0x1000]).unwrap();
                w.property_string("status", status).unwrap();
                w.end_node(v).unwrap();
            }
            w.end_node(soc).unwrap();
        }
    }
    if arm {
        let t = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv8-timer").unwrap();
        w.property_array_u32(
            "interrupts",
            &[1, 13, 0x104, 1, 14, 0x104, 1, 11, 0x104, 1, 10, 0x104],
        )
        .unwrap();
        w.end_node(t).unwrap();
        let p = w.begin_node("psci").unwrap();
        w.property_string("compatible", "arm,psci-1.0").unwrap();
        w.property_string("method", "smc").unwrap();
        w.end_node(p).unwrap();
        let u = w.begin_node("pl011@9000000").unwrap();
        w.property_string_list(
            "compatible",
            std::vec!["arm,pl011".into(), "arm,primecell".into()],
        )
        .unwrap();
        w.property_array_u64("reg", &[0x900_0000, 0x1000]).unwrap();
        w.end_node(u).unwrap();
    }
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

#[test]
fn aarch64_gicv2() {
    let blob = build(Kind::ArmGicV2, 4);
    let info = PlatformInfo::parse(&blob, 0x4800_0000).unwrap();
    assert_eq!(info.model.as_str(), "test-virt");
    assert_eq!(
        info.memory.as_slice(),
        &[MemRange::new(0x4000_0000, 0x4000_0000)]
    );
    assert_eq!(info.memory_size(), 0x4000_0000);
    let ids: Vec<usize> = info.cpus.iter().map(|c| c.hw_id).collect();
    assert_eq!(ids, [0, 1, 2, 3]);
    assert_eq!(info.cpu_index(2), Some(2));
    assert_eq!(info.cpu_index(99), None);
    assert_eq!(
        info.intc,
        Some(IntcInfo::GicV2 {
            dist: MemRange::new(0x800_0000, 0x1_0000),
            cpu: MemRange::new(0x801_0000, 0x1_0000),
            hyp: Some(MemRange::new(0x803_0000, 0x1_0000)),
            vcpu: Some(MemRange::new(0x804_0000, 0x1_0000)),
        })
    );
    assert_eq!(info.intc.as_ref().unwrap().name(), "GICv2");
    assert_eq!(
        info.timer_irqs,
        Some(ArmTimerIrqs {
            secure_phys: 29,
            phys: 30,
            virt: 27,
            hyp: 26
        })
    );
    assert_eq!(info.psci, Some(PsciMethod::Smc));
    assert_eq!(
        info.uart,
        Some(UartInfo {
            regs: MemRange::new(0x900_0000, 0x1000),
            kind: UartKind::Pl011
        })
    );
}

#[test]
fn aarch64_gicv3() {
    let blob = build(Kind::ArmGicV3, 1);
    let info = PlatformInfo::parse(&blob, 0x4800_0000).unwrap();
    assert_eq!(info.cpus.len(), 1);
    let intc = info.intc.unwrap();
    assert_eq!(intc.name(), "GICv3");
    assert_eq!(
        intc,
        IntcInfo::GicV3 {
            dist: MemRange::new(0x800_0000, 0x1_0000),
            redist: MemRange::new(0x80a_0000, 0xf6_0000)
        }
    );
}

#[test]
fn riscv_plic_contexts_and_isa() {
    let blob = build(Kind::Riscv { h: true }, 4);
    let info = PlatformInfo::parse(&blob, 0x8220_0000).unwrap();
    assert_eq!(info.timebase_hz, Some(10_000_000));
    assert!(info.cpus.iter().all(|c| c.isa_h && c.isa_sstc));
    let intc = info.intc.as_ref().unwrap();
    assert_eq!(intc.name(), "PLIC");
    // Hart i has M context 2i and S context 2i + 1.
    for (i, cpu) in info.cpus.iter().enumerate() {
        assert_eq!(cpu.plic_s_context, Some(2 * i + 1));
    }
    assert_eq!(
        intc,
        &IntcInfo::Plic {
            regs: MemRange::new(0xc00_0000, 0x60_0000),
            ndev: 95
        }
    );
    assert_eq!(info.uart.unwrap().kind, UartKind::Ns16550);
    assert_eq!(info.timer_irqs, None);
    assert_eq!(info.psci, None);

    let no_h = build(Kind::Riscv { h: false }, 1);
    let info = PlatformInfo::parse(&no_h, 0x8220_0000).unwrap();
    assert!(!info.cpus[0].isa_h && !info.cpus[0].isa_sstc);
}

#[test]
fn free_memory_excludes_reservations_dtb_and_image() {
    let blob = build(Kind::ArmGicV2, 1);
    let info = PlatformInfo::parse(&blob, 0x4800_0000).unwrap();
    assert_eq!(info.dtb, MemRange::new(0x4800_0000, blob.len()));
    // memreserve entry + /reserved-memory child.
    assert_eq!(
        info.reserved.as_slice(),
        &[
            MemRange::new(0x4700_0000, 0x1000),
            MemRange::new(0x4000_0000, 0x4_0000)
        ]
    );
    let image = MemRange::new(0x4020_0000, 0x8_0000);
    let free = info.free_memory(&[image]).unwrap();
    let dtb_end = crate::memmap::align_up(0x4800_0000 + blob.len(), 4096);
    assert_eq!(
        free.as_slice(),
        &[
            MemRange::from_bounds(0x4004_0000, 0x4020_0000),
            MemRange::from_bounds(0x4028_0000, 0x4700_0000),
            MemRange::from_bounds(0x4700_1000, 0x4800_0000),
            MemRange::from_bounds(dtb_end, 0x4a00_0000),
            MemRange::from_bounds(0x4a10_0000, 0x8000_0000),
        ]
    );
}

#[test]
fn initrd_and_virtio_transports() {
    let arm = PlatformInfo::parse(&build(Kind::ArmGicV2, 1), 0x4900_0000).unwrap();
    assert_eq!(
        arm.initrd,
        Some(MemRange::from_bounds(0x4a00_0000, 0x4a10_0000))
    );
    assert!(arm.virtio_mmio.is_empty());
    // 32-bit cells, but empty: no initrd. The disabled transport is skipped.
    let rv = PlatformInfo::parse(&build(Kind::Riscv { h: true }, 1), 0).unwrap();
    assert_eq!(rv.initrd, None);
    assert_eq!(
        rv.virtio_mmio.as_slice(),
        &[
            MemRange::new(0x1000_1000, 0x1000),
            MemRange::new(0x1000_3000, 0x1000)
        ]
    );
}

#[test]
fn isa_strings() {
    assert!(isa_has("rv64imafdch_zicsr", "h"));
    assert!(isa_has("RV64IMAFDCH", "h"));
    assert!(!isa_has("rv64imafdc_zihintpause", "h"));
    assert!(isa_has("rv64imafdc_zicsr_sstc", "sstc"));
    assert!(!isa_has("rv64imafdc_sstcx", "sstc"));
    assert!(!isa_has("", "h"));
}

#[test]
fn rejects_garbage_and_missing_parts() {
    assert_eq!(
        PlatformInfo::parse(&[0u8; 64], 0).unwrap_err(),
        DtbError::Invalid
    );
    assert_eq!(PlatformInfo::parse(&[], 0).unwrap_err(), DtbError::Invalid);
    let mut blob = build(Kind::ArmGicV2, 1);
    blob.truncate(blob.len() / 2);
    assert_eq!(
        PlatformInfo::parse(&blob, 0).unwrap_err(),
        DtbError::Invalid
    );

    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    w.end_node(root).unwrap();
    let empty = w.finish().unwrap();
    assert_eq!(
        PlatformInfo::parse(&empty, 0).unwrap_err(),
        DtbError::NoMemory
    );
}

#[test]
fn boot_arguments() {
    let blob = build(Kind::ArmGicV2, 1);
    let info = PlatformInfo::parse(&blob, 0).unwrap();
    assert_eq!(
        info.bootargs.as_str(),
        "log=debug quiet selftest=x selftest=fault"
    );
    assert_eq!(info.bootarg("log"), Some("debug"));
    assert_eq!(info.bootarg("quiet"), Some(""));
    assert_eq!(info.bootarg("selftest"), Some("fault"));
    assert_eq!(info.bootarg("lo"), None);
    assert_eq!(truncated::<4>("añbc").as_str(), "añb");
}

#[test]
fn device_nodes_by_address() {
    let blob = build(Kind::Riscv { h: true }, 1);
    let rtc = device_within(&blob, 0x10_1000, 0x1000).unwrap();
    assert_eq!(rtc.name, "rtc");
    assert_eq!(rtc.reg, (0x10_1000, 0x1000));
    assert_eq!(
        rtc.compatible().collect::<Vec<_>>(),
        ["google,goldfish-rtc"]
    );
    // A node reaching past the range, a disabled node and an empty range are not found.
    assert_eq!(device_within(&blob, 0x10_1000, 0x800), None);
    assert_eq!(device_within(&blob, 0x10_2000, 0x1000), None);
    assert_eq!(device_within(&blob, 0x10_3000, 0x1000), None);
    assert_eq!(device_within(&blob, u64::MAX, 2), None);
    assert_eq!(device_within(&[0; 16], 0, 1 << 40), None);
    let plic = device_within(&blob, 0xc00_0000, 0x20_0000).map(|d| d.name);
    assert_eq!(plic, None, "the PLIC is larger than the range");
    let plic = device_within(&blob, 0xc00_0000, 0x400_0000).map(|d| d.name);
    assert_eq!(plic, Some("plic"));
    let arm = build(Kind::ArmGicV2, 1);
    let uart = device_within(&arm, 0x900_0000, 0x1000).unwrap();
    assert_eq!(uart.name, "pl011");
    assert_eq!(
        uart.compatible().collect::<Vec<_>>(),
        ["arm,pl011", "arm,primecell"]
    );
}

/// Parses `blob` both ways the hypervisor does; neither may panic, both must refuse it.
fn refused(blob: &[u8]) {
    assert_eq!(PlatformInfo::parse(blob, 0).err(), Some(DtbError::Invalid));
    assert_eq!(device_within(blob, 0, u64::MAX), None);
}

/// Sets header word `i` (big-endian) of `blob`.
fn set_header(blob: &mut [u8], i: usize, v: u32) {
    blob[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
}

/// Malformed blobs the fdt crate used to panic on (index out of bounds, `expect`) are
/// refused: found by the `dtb` fuzz target (docs/reliability.md#fuzzing).
#[test]
fn malformed_blobs_are_refused_without_panicking() {
    // The first crash the fuzzer found: totalsize 0, blocks far outside the blob.
    let mut crash = std::vec![0xff; 48];
    crash[..16].copy_from_slice(&[
        0xd0, 0x0d, 0xfe, 0xed, 0, 0, 0, 0, 0, 0, 0, 0, 0x3a, 0xff, 0xff, 0xff,
    ]);
    crash[40..].copy_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0x0a]);
    refused(&crash);

    let good = build(Kind::ArmGicV2, 2);
    assert!(PlatformInfo::parse(&good, 0).is_ok());
    let word = |i: usize| u32::from_be_bytes(good[4 * i..4 * i + 4].try_into().unwrap());

    // The structure block cut short (in the middle of a property or a name).
    for cut in [4, 13, 40, 101] {
        let mut b = good.clone();
        set_header(&mut b, 9, word(9) - cut);
        refused(&b);
    }
    // The strings block cut short: property names outside it.
    let mut b = good.clone();
    set_header(&mut b, 8, 3);
    refused(&b);
    // totalsize beyond the blob, and shorter than its blocks.
    for total in [good.len() as u32 + 1, word(3)] {
        let mut b = good.clone();
        set_header(&mut b, 1, total);
        refused(&b);
    }
    // An FDT_NOP before the first property of the root.
    let mut b = good.clone();
    let props = word(2) as usize + 8; // FDT_BEGIN_NODE, the empty root name padded
    b[props..props + 4].copy_from_slice(&4u32.to_be_bytes());
    refused(&b);

    // #address-cells shorter than a cell.
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property("#address-cells", &[0, 2]).unwrap();
    w.end_node(root).unwrap();
    refused(&w.finish().unwrap());

    // Nodes nested 70 deep (the crate indexes a 64-entry array by depth), built by hand
    // (vm-fdt refuses to): header, empty reservation map, structure block, no strings.
    let mut structs = Vec::new();
    for token in [[1u32, 0]; 70].iter().flatten().chain(&[2; 70]).chain(&[9]) {
        structs.extend(token.to_be_bytes());
    }
    let total = 40 + 16 + structs.len() as u32;
    let mut b = Vec::new();
    for v in [
        0xd00d_feed,
        total,
        56,
        total,
        40,
        17,
        16,
        0,
        0,
        structs.len() as u32,
    ] {
        b.extend(u32::to_be_bytes(v));
    }
    b.extend([0; 16]);
    b.extend(structs);
    refused(&b);
}

/// A timer `interrupts` entry whose PPI number is 16 or more (found by the `dtb` fuzz
/// target: `16 + n` overflowed for n near `u32::MAX`, a panic in a debug build) leaves the
/// timer undescribed.
#[test]
fn timer_ppi_numbers_out_of_range() {
    let good = build(Kind::ArmGicV2, 1);
    let secure_phys: Vec<u8> = [1u32, 13, 0x104]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let at = good
        .windows(12)
        .position(|w| w == secure_phys.as_slice())
        .expect("the timer's interrupts");
    for n in [16, 0xffff_fff0, u32::MAX] {
        let mut b = good.clone();
        b[at + 4..at + 8].copy_from_slice(&u32::to_be_bytes(n));
        assert_eq!(PlatformInfo::parse(&b, 0).unwrap().timer_irqs, None);
    }
}

/// Memory nodes whose sizes add up to more than `usize::MAX` (found by the `dtb` fuzz
/// target: the sum overflowed, a panic with overflow checks on).
#[test]
fn memory_size_saturates() {
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    let cpus = w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 0).unwrap();
    let cpu = w.begin_node("cpu@0").unwrap();
    w.property_string("device_type", "cpu").unwrap();
    w.property_u32("reg", 0).unwrap();
    w.end_node(cpu).unwrap();
    w.end_node(cpus).unwrap();
    let mem = w.begin_node("memory@0").unwrap();
    w.property_string("device_type", "memory").unwrap();
    let half = u64::MAX / 2 + 1;
    w.property_array_u64("reg", &[0, half, half, half]).unwrap();
    w.end_node(mem).unwrap();
    w.end_node(root).unwrap();
    let info = PlatformInfo::parse(&w.finish().unwrap(), 0).unwrap();
    assert_eq!(info.memory.len(), 2);
    assert_eq!(info.memory_size(), usize::MAX);
}
