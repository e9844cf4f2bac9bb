//! Host tests: every blob is read back twice, by the `fdt` crate (nodes and properties) and
//! by a strict reader below (header, alignment, tokens, string table, phandles).

extern crate std;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::writer::{
    FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_LAST_COMP_VERSION, FDT_MAGIC, FDT_PROP, FDT_VERSION,
    HEADER_SIZE,
};
use crate::*;

// ---------------------------------------------------------------------------------------
// A strict reader
// ---------------------------------------------------------------------------------------

/// The header fields, in order.
#[derive(Debug)]
struct Header {
    magic: u32,
    totalsize: u32,
    off_dt_struct: u32,
    off_dt_strings: u32,
    off_mem_rsvmap: u32,
    version: u32,
    last_comp_version: u32,
    boot_cpuid_phys: u32,
    size_dt_strings: u32,
    size_dt_struct: u32,
}

/// A blob read back: header, reservations, nodes by full path (properties in order).
struct Parsed {
    header: Header,
    rsv: Vec<(u64, u64)>,
    nodes: BTreeMap<String, Vec<(String, Vec<u8>)>>,
    /// Name offsets used by properties, and the strings block.
    strings: Vec<String>,
}

impl Parsed {
    fn node(&self, path: &str) -> &Vec<(String, Vec<u8>)> {
        self.nodes
            .get(path)
            .unwrap_or_else(|| panic!("no node {path}; nodes: {:?}", self.nodes.keys()))
    }

    fn prop(&self, path: &str, name: &str) -> Option<&[u8]> {
        self.node(path)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn cells(&self, path: &str, name: &str) -> Vec<u32> {
        cells(
            self.prop(path, name)
                .unwrap_or_else(|| panic!("{path}: no {name}")),
        )
    }

    fn u32(&self, path: &str, name: &str) -> u32 {
        let c = self.cells(path, name);
        assert_eq!(c.len(), 1, "{path}/{name} is not one cell");
        c[0]
    }

    fn strs(&self, path: &str, name: &str) -> Vec<String> {
        strs(
            self.prop(path, name)
                .unwrap_or_else(|| panic!("{path}: no {name}")),
        )
    }

    fn str(&self, path: &str, name: &str) -> String {
        let s = self.strs(path, name);
        assert_eq!(s.len(), 1, "{path}/{name} is not one string");
        s[0].clone()
    }

    fn has(&self, path: &str, name: &str) -> bool {
        self.prop(path, name).is_some()
    }

    /// The path of the node with this phandle (exactly one).
    fn phandle(&self, ph: u32) -> String {
        let hits: Vec<&String> = self
            .nodes
            .iter()
            .filter(|(_, props)| {
                props
                    .iter()
                    .any(|(n, v)| n == "phandle" && cells(v) == vec![ph])
            })
            .map(|(p, _)| p)
            .collect();
        assert_eq!(hits.len(), 1, "phandle {ph} on {hits:?}");
        hits[0].clone()
    }

    /// Children of the root, by name.
    fn root_children(&self) -> Vec<String> {
        self.nodes
            .keys()
            .filter(|p| p.len() > 1 && p[1..].find('/').is_none())
            .map(|p| p[1..].to_string())
            .collect()
    }
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

fn cells(v: &[u8]) -> Vec<u32> {
    assert_eq!(v.len() % 4, 0, "value of {} bytes is not cells", v.len());
    v.chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn strs(v: &[u8]) -> Vec<String> {
    assert_eq!(v.last(), Some(&0), "string value not NUL-terminated");
    v[..v.len() - 1]
        .split(|&b| b == 0)
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

/// Reads a blob back, asserting everything the format requires.
fn parse(b: &[u8]) -> Parsed {
    assert!(b.len() >= HEADER_SIZE);
    let f = |i: usize| be32(b, i * 4);
    let header = Header {
        magic: f(0),
        totalsize: f(1),
        off_dt_struct: f(2),
        off_dt_strings: f(3),
        off_mem_rsvmap: f(4),
        version: f(5),
        last_comp_version: f(6),
        boot_cpuid_phys: f(7),
        size_dt_strings: f(8),
        size_dt_struct: f(9),
    };
    assert_eq!(header.magic, 0xd00d_feed);
    assert_eq!(header.version, 17);
    assert_eq!(header.last_comp_version, 16);
    assert_eq!(header.totalsize as usize, b.len());
    // Blocks in order, aligned, back to back, inside the blob.
    assert_eq!(header.off_mem_rsvmap as usize, HEADER_SIZE);
    assert_eq!(header.off_mem_rsvmap % 8, 0);
    assert_eq!(header.off_dt_struct % 4, 0);
    assert_eq!(header.size_dt_struct % 4, 0);
    assert_eq!(
        header.off_dt_strings,
        header.off_dt_struct + header.size_dt_struct
    );
    assert_eq!(
        header.totalsize,
        header.off_dt_strings + header.size_dt_strings
    );

    // Reservation block: entries up to the all-zero one, which ends right at the structure.
    let mut rsv = Vec::new();
    let mut off = header.off_mem_rsvmap as usize;
    loop {
        let (a, s) = (be64(b, off), be64(b, off + 8));
        off += 16;
        if a == 0 && s == 0 {
            break;
        }
        rsv.push((a, s));
    }
    assert_eq!(off, header.off_dt_struct as usize);

    // Strings block: NUL-terminated names.
    let sb = &b[header.off_dt_strings as usize..];
    assert!(sb.is_empty() || sb.last() == Some(&0));
    let mut starts = BTreeSet::new();
    let mut strings = Vec::new();
    let mut pos = 0;
    while pos < sb.len() {
        let len = sb[pos..].iter().position(|&c| c == 0).unwrap();
        starts.insert(pos);
        strings.push(String::from_utf8(sb[pos..pos + len].to_vec()).unwrap());
        pos += len + 1;
    }

    // Structure block.
    let st = &b[header.off_dt_struct as usize..header.off_dt_strings as usize];
    let mut pos = 0;
    let mut path: Vec<String> = Vec::new();
    let mut nodes: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut had_child: Vec<bool> = Vec::new();
    let full = |path: &[String]| {
        if path.len() <= 1 {
            "/".to_string()
        } else {
            path[1..].iter().fold(String::new(), |acc, p| acc + "/" + p)
        }
    };
    let pad = |p: usize| (p + 3) & !3;
    loop {
        let tok = be32(st, pos);
        pos += 4;
        match tok {
            FDT_BEGIN_NODE => {
                let len = st[pos..].iter().position(|&c| c == 0).unwrap();
                let name = String::from_utf8(st[pos..pos + len].to_vec()).unwrap();
                assert!(st[pos + len..pad(pos + len + 1)].iter().all(|&c| c == 0));
                pos = pad(pos + len + 1);
                if let Some(h) = had_child.last_mut() {
                    *h = true;
                } else {
                    assert!(name.is_empty(), "root must be unnamed");
                    assert!(nodes.is_empty(), "second root");
                }
                had_child.push(false);
                path.push(name);
                let p = full(&path);
                assert!(nodes.insert(p.clone(), Vec::new()).is_none(), "dup {p}");
            }
            FDT_END_NODE => {
                path.pop().expect("END_NODE without node");
                had_child.pop();
            }
            FDT_PROP => {
                let len = be32(st, pos) as usize;
                let nameoff = be32(st, pos + 4) as usize;
                pos += 8;
                assert!(
                    starts.contains(&nameoff),
                    "nameoff {nameoff} not a string start"
                );
                let nlen = sb[nameoff..].iter().position(|&c| c == 0).unwrap();
                let name = String::from_utf8(sb[nameoff..nameoff + nlen].to_vec()).unwrap();
                let value = st[pos..pos + len].to_vec();
                assert!(st[pos + len..pad(pos + len)].iter().all(|&c| c == 0));
                pos = pad(pos + len);
                assert_eq!(
                    had_child.last(),
                    Some(&false),
                    "property {name} after a child"
                );
                let props = nodes.get_mut(&full(&path)).unwrap();
                assert!(
                    props.iter().all(|(n, _)| *n != name),
                    "property {name} twice"
                );
                props.push((name, value));
            }
            FDT_END => {
                assert!(path.is_empty(), "FDT_END inside a node");
                assert_eq!(pos, st.len(), "FDT_END is not the last token");
                break;
            }
            other => panic!("bad token {other:#x} at {pos}"),
        }
    }
    Parsed {
        header,
        rsv,
        nodes,
        strings,
    }
}

/// Reads back with the `fdt` crate too and checks it agrees on every node and property.
fn check_with_fdt_crate(b: &[u8], p: &Parsed) {
    let fdt = fdt::Fdt::new(b).expect("fdt crate rejects the blob");
    assert_eq!(fdt.total_size(), b.len());
    let mut seen = 0;
    for (path, props) in &p.nodes {
        // Walk by exact names: `find_node` matches "dev" against "dev@1000" too.
        let mut node = fdt.find_node("/").expect("fdt crate finds no root");
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            node = node
                .children()
                .find(|c| c.name == comp)
                .unwrap_or_else(|| panic!("fdt crate finds no {path}"));
        }
        for (name, value) in props {
            let got = node
                .property(name)
                .unwrap_or_else(|| panic!("{path}: {name}"));
            assert_eq!(got.value, value.as_slice(), "{path}/{name}");
        }
        assert_eq!(node.properties().count(), props.len(), "{path}");
        seen += 1;
    }
    assert_eq!(fdt.all_nodes().count(), seen);
    let rsv: Vec<(u64, u64)> = fdt
        .memory_reservations()
        .map(|r| (r.address() as u64, r.size() as u64))
        .collect();
    assert_eq!(rsv, p.rsv);
}

/// Builds, reads back both ways, and checks what every tree must satisfy.
fn build_and_check(desc: &GuestDtb<'_>) -> Parsed {
    let b = build(desc).unwrap_or_else(|e| panic!("build failed: {e}"));
    let p = parse(&b);
    check_with_fdt_crate(&b, &p);
    check_common(desc, &p);
    p
}

// ---------------------------------------------------------------------------------------
// Descriptions
// ---------------------------------------------------------------------------------------

const MEM: &[(u64, u64)] = &[(0x4000_0000, 0x1000_0000)];
const PL011: Uart = Uart {
    kind: UartKind::Pl011,
    base: 0x0900_0000,
    size: 0x1000,
    irq: Some(33),
};
const NS16550: Uart = Uart {
    kind: UartKind::Ns16550,
    base: 0x1000_0000,
    size: 0x100,
    irq: Some(10),
};
const GICV2: Gic = Gic::V2 {
    gicd: 0x0800_0000,
    gicc: 0x0801_0000,
};
const GICV3: Gic = Gic::V3 {
    gicd: 0x0800_0000,
    gicr: 0x080a_0000,
    gicr_size: 0xf6_0000,
};
const PLIC: Plic = Plic {
    base: 0x0c00_0000,
    size: 0x60_0000,
    ndev: 95,
};

fn arm(cpus: usize, gic: Gic) -> GuestDtb<'static> {
    GuestDtb {
        arch: ArchDesc::Arm {
            gic,
            timer_ppis: ArmTimerPpis::default(),
            psci: Some(PsciMethod::Hvc),
        },
        cpus,
        memory: MEM,
        reserved: &[],
        bootargs: Some("console=ttyAMA0 earlycon rdinit=/init"),
        initrd: Some((0x4800_0000, 0x4812_3456)),
        uarts: &[PL011],
        extra: &[],
    }
}

fn riscv(cpus: usize) -> GuestDtb<'static> {
    GuestDtb {
        arch: ArchDesc::Riscv {
            isa: "rv64imafdc_zicsr_zifencei",
            timebase_hz: 10_000_000,
            mmu: "riscv,sv39",
            plic: Some(PLIC),
        },
        cpus,
        memory: &[(0x8000_0000, 0x800_0000), (0x9000_0000, 0x800_0000)],
        reserved: &[(0x8000_0000, 0x20_0000)],
        bootargs: Some("console=ttyS0 earlycon"),
        initrd: Some((0x8400_0000, 0x8500_0000)),
        uarts: &[NS16550],
        extra: &[],
    }
}

// ---------------------------------------------------------------------------------------
// Checks shared by all trees
// ---------------------------------------------------------------------------------------

fn check_common(desc: &GuestDtb<'_>, p: &Parsed) {
    assert_eq!(p.header.boot_cpuid_phys, 0);
    assert_eq!(p.header.version, FDT_VERSION);
    assert_eq!(p.header.last_comp_version, FDT_LAST_COMP_VERSION);
    assert_eq!(p.header.magic, FDT_MAGIC);
    assert_eq!(p.rsv, desc.reserved);

    // String table: every name once.
    let unique: BTreeSet<&String> = p.strings.iter().collect();
    assert_eq!(
        unique.len(),
        p.strings.len(),
        "strings repeated: {:?}",
        p.strings
    );
    // ...and every name in it used.
    let used: BTreeSet<&String> = p.nodes.values().flatten().map(|(n, _)| n).collect();
    assert_eq!(used, unique);

    // Root.
    assert_eq!(p.u32("/", "#address-cells"), 2);
    assert_eq!(p.u32("/", "#size-cells"), 2);
    assert!(!p.str("/", "model").is_empty());

    // Node names: lower-case hex unit addresses without leading zeros.
    for path in p.nodes.keys() {
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            assert!(comp.len() <= 31 + 17, "{comp}");
            if let Some((_, unit)) = comp.split_once('@') {
                assert!(!unit.is_empty());
                assert!(
                    unit.bytes()
                        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                    "{comp}"
                );
                assert!(unit == "0" || !unit.starts_with('0'), "{comp}");
            }
        }
    }

    // Every node with a unit address has a reg whose first address is it (cpus: cell 0).
    for path in p.nodes.keys() {
        let Some((_, unit)) = path.rsplit_once('/').unwrap().1.split_once('@') else {
            continue;
        };
        let reg = p.cells(path, "reg");
        let first = if path.starts_with("/cpus/") {
            u64::from(reg[0])
        } else {
            (u64::from(reg[0]) << 32) | u64::from(reg[1])
        };
        assert_eq!(u64::from_str_radix(unit, 16).unwrap(), first, "{path}");
    }

    // Phandles: unique, and every reference resolves to the right kind of node.
    let mut phandles = BTreeSet::new();
    for props in p.nodes.values() {
        for (n, v) in props {
            if n == "phandle" {
                assert!(phandles.insert(cells(v)[0]), "phandle used twice");
            }
        }
    }
    for (path, props) in &p.nodes {
        for (n, v) in props {
            match n.as_str() {
                "interrupt-parent" => {
                    let target = p.phandle(cells(v)[0]);
                    assert!(p.has(&target, "interrupt-controller"), "{path} -> {target}");
                }
                "clocks" => {
                    for ph in cells(v) {
                        let target = p.phandle(ph);
                        assert_eq!(p.u32(&target, "#clock-cells"), 0);
                    }
                }
                "interrupts-extended" => {
                    for pair in cells(v).chunks(2) {
                        let target = p.phandle(pair[0]);
                        assert_eq!(p.u32(&target, "#interrupt-cells"), 1);
                    }
                }
                _ => {}
            }
        }
    }

    // Memory.
    for &(base, size) in desc.memory {
        let path = std::format!("/memory@{base:x}");
        assert_eq!(p.str(&path, "device_type"), "memory");
        assert_eq!(
            p.cells(&path, "reg"),
            vec![
                (base >> 32) as u32,
                base as u32,
                (size >> 32) as u32,
                size as u32
            ]
        );
    }

    // Chosen.
    assert!(p.nodes.contains_key("/chosen"));
    match desc.bootargs {
        Some(a) => assert_eq!(p.str("/chosen", "bootargs"), a),
        None => assert!(!p.has("/chosen", "bootargs")),
    }
    match desc.initrd {
        Some((s, e)) => {
            assert_eq!(
                p.prop("/chosen", "linux,initrd-start").unwrap(),
                s.to_be_bytes()
            );
            assert_eq!(
                p.prop("/chosen", "linux,initrd-end").unwrap(),
                e.to_be_bytes()
            );
        }
        None => assert!(!p.has("/chosen", "linux,initrd-start")),
    }
    match desc.uarts.first() {
        Some(u) => {
            let path = std::format!("/serial@{:x}", u.base);
            assert_eq!(p.str("/chosen", "stdout-path"), path);
            assert!(p.nodes.contains_key(&path));
        }
        None => assert!(!p.has("/chosen", "stdout-path")),
    }
    for (i, u) in desc.uarts.iter().enumerate() {
        let alias = std::format!("serial{i}");
        let path = p.str("/aliases", &alias);
        assert_eq!(path, std::format!("/serial@{:x}", u.base));
        assert_eq!(
            p.cells(&path, "reg"),
            vec![
                (u.base >> 32) as u32,
                u.base as u32,
                (u.size >> 32) as u32,
                u.size as u32
            ]
        );
    }

    // CPUs.
    assert_eq!(p.u32("/cpus", "#address-cells"), 1);
    assert_eq!(p.u32("/cpus", "#size-cells"), 0);
    let cpu_nodes = p
        .nodes
        .keys()
        .filter(|k| k.starts_with("/cpus/cpu@") && k.matches('/').count() == 2)
        .count();
    assert_eq!(cpu_nodes, desc.cpus);
    for i in 0..desc.cpus {
        let path = std::format!("/cpus/cpu@{i:x}");
        assert_eq!(p.str(&path, "device_type"), "cpu");
        assert_eq!(p.u32(&path, "reg"), i as u32);
    }
}

// ---------------------------------------------------------------------------------------
// Arm
// ---------------------------------------------------------------------------------------

fn check_arm(desc: &GuestDtb<'_>, p: &Parsed) {
    let ArchDesc::Arm {
        gic,
        timer_ppis,
        psci,
    } = desc.arch
    else {
        unreachable!()
    };
    assert_eq!(p.strs("/", "compatible"), ["linux,dummy-virt"]);

    // GIC.
    let (gicd, gic_path) = match gic {
        Gic::V2 { gicd, .. } | Gic::V3 { gicd, .. } => {
            (gicd, std::format!("/interrupt-controller@{gicd:x}"))
        }
    };
    assert_eq!(p.phandle(p.u32("/", "interrupt-parent")), gic_path);
    assert_eq!(p.u32(&gic_path, "#interrupt-cells"), 3);
    assert!(p
        .prop(&gic_path, "interrupt-controller")
        .unwrap()
        .is_empty());
    let reg = p.cells(&gic_path, "reg");
    match gic {
        Gic::V2 { gicc, .. } => {
            assert_eq!(p.strs(&gic_path, "compatible"), ["arm,cortex-a15-gic"]);
            let hi = |a: u64| (a >> 32) as u32;
            assert_eq!(
                reg,
                [
                    hi(gicd),
                    gicd as u32,
                    0,
                    0x1000,
                    hi(gicc),
                    gicc as u32,
                    0,
                    0x2000
                ]
            );
        }
        Gic::V3 {
            gicr, gicr_size, ..
        } => {
            assert_eq!(p.strs(&gic_path, "compatible"), ["arm,gic-v3"]);
            assert_eq!(
                reg,
                [
                    (gicd >> 32) as u32,
                    gicd as u32,
                    0,
                    0x1_0000,
                    (gicr >> 32) as u32,
                    gicr as u32,
                    (gicr_size >> 32) as u32,
                    gicr_size as u32
                ]
            );
            assert_eq!(p.u32(&gic_path, "#redistributor-regions"), 1);
        }
    }

    // Timer: four PPIs in binding order, level-high, CPU mask on GICv2 only.
    assert_eq!(p.strs("/timer", "compatible"), ["arm,armv8-timer"]);
    assert!(p.has("/timer", "always-on"));
    let mask = match gic {
        Gic::V2 { .. } => ((1u32 << desc.cpus) - 1) << 8,
        Gic::V3 { .. } => 0,
    };
    let t = timer_ppis;
    let mut want = Vec::new();
    for ppi in [t.secure_phys, t.nonsecure_phys, t.virt, t.hyp] {
        want.extend_from_slice(&[1, ppi, 4 | mask]);
    }
    assert_eq!(p.cells("/timer", "interrupts"), want);

    // PSCI and CPUs.
    match psci {
        Some(m) => {
            assert_eq!(
                p.strs("/psci", "compatible"),
                ["arm,psci-1.0", "arm,psci-0.2"]
            );
            let method = if m == PsciMethod::Hvc { "hvc" } else { "smc" };
            assert_eq!(p.str("/psci", "method"), method);
        }
        None => assert!(!p.nodes.contains_key("/psci")),
    }
    for i in 0..desc.cpus {
        let path = std::format!("/cpus/cpu@{i:x}");
        assert_eq!(p.strs(&path, "compatible"), ["arm,armv8"]);
        assert_eq!(
            p.prop(&path, "enable-method").map(strs),
            psci.map(|_| vec!["psci".to_string()])
        );
    }

    // UARTs.
    for u in desc.uarts {
        let path = std::format!("/serial@{:x}", u.base);
        if let Some(irq) = u.irq {
            assert_eq!(p.cells(&path, "interrupts"), [0, irq - 32, 4]);
            assert!(!p.has(&path, "interrupt-parent"), "inherits the root's");
        }
        match u.kind {
            UartKind::Pl011 => {
                assert_eq!(p.strs(&path, "compatible"), ["arm,pl011", "arm,primecell"]);
                assert_eq!(p.strs(&path, "clock-names"), ["uartclk", "apb_pclk"]);
                let clocks = p.cells(&path, "clocks");
                assert_eq!(clocks.len(), 2);
                for c in clocks {
                    assert_eq!(p.phandle(c), "/apb-pclk");
                }
                assert_eq!(p.strs("/apb-pclk", "compatible"), ["fixed-clock"]);
                assert_eq!(p.u32("/apb-pclk", "clock-frequency"), 24_000_000);
                assert_eq!(p.u32("/apb-pclk", "#clock-cells"), 0);
            }
            UartKind::Ns16550 => {
                assert_eq!(p.strs(&path, "compatible"), ["ns16550a"]);
                assert_eq!(p.u32(&path, "clock-frequency"), 3_686_400);
            }
        }
    }
}

#[test]
fn arm_gicv2_one_cpu() {
    let d = arm(1, GICV2);
    let p = build_and_check(&d);
    check_arm(&d, &p);
    assert_eq!(p.cells("/timer", "interrupts")[2], 0x104);
}

#[test]
fn arm_gicv2_four_cpus() {
    let d = arm(4, GICV2);
    let p = build_and_check(&d);
    check_arm(&d, &p);
    assert_eq!(
        p.cells("/timer", "interrupts"),
        [1, 13, 0xf04, 1, 14, 0xf04, 1, 11, 0xf04, 1, 10, 0xf04]
    );
    assert_eq!(
        p.root_children(),
        [
            "aliases",
            "apb-pclk",
            "chosen",
            "cpus",
            "interrupt-controller@8000000",
            "memory@40000000",
            "psci",
            "serial@9000000",
            "timer"
        ]
    );
}

#[test]
fn arm_gicv3_one_and_four_cpus() {
    for cpus in [1, 4] {
        let d = arm(cpus, GICV3);
        let p = build_and_check(&d);
        check_arm(&d, &p);
        assert_eq!(p.cells("/timer", "interrupts")[2], 4);
    }
}

#[test]
fn arm_single_cpu_without_psci() {
    let mut d = arm(1, GICV3);
    d.arch = ArchDesc::Arm {
        gic: GICV3,
        timer_ppis: ArmTimerPpis::default(),
        psci: None,
    };
    let p = build_and_check(&d);
    check_arm(&d, &p);
}

#[test]
fn arm_smc_psci_custom_ppis_no_initrd_no_bootargs() {
    let ppis = ArmTimerPpis {
        secure_phys: 1,
        nonsecure_phys: 2,
        virt: 3,
        hyp: 15,
    };
    let mut d = arm(2, GICV2);
    d.arch = ArchDesc::Arm {
        gic: GICV2,
        timer_ppis: ppis,
        psci: Some(PsciMethod::Smc),
    };
    d.bootargs = None;
    d.initrd = None;
    let p = build_and_check(&d);
    check_arm(&d, &p);
}

#[test]
fn arm_several_uarts_and_a_16550() {
    let uarts = [
        PL011,
        Uart {
            kind: UartKind::Ns16550,
            base: 0x0904_0000,
            size: 0x1000,
            irq: Some(40),
        },
        Uart {
            kind: UartKind::Pl011,
            base: 0x0905_0000,
            size: 0x1000,
            irq: None,
        },
    ];
    let mut d = arm(2, GICV3);
    d.uarts = &uarts;
    let p = build_and_check(&d);
    check_arm(&d, &p);
    assert_eq!(p.str("/aliases", "serial2"), "/serial@9050000");
    assert!(!p.has("/serial@9050000", "interrupts"));
}

#[test]
fn arm_without_uart_has_no_clock_alias_or_stdout() {
    let mut d = arm(1, GICV2);
    d.uarts = &[];
    let p = build_and_check(&d);
    check_arm(&d, &p);
    assert!(!p.nodes.contains_key("/apb-pclk"));
    assert!(!p.nodes.contains_key("/aliases"));
}

#[test]
fn arm_extra_devices() {
    let props = [
        Property {
            name: "dma-coherent",
            value: PropValue::Empty,
        },
        Property {
            name: "reg-shift",
            value: PropValue::U32(2),
        },
        Property {
            name: "big",
            value: PropValue::U64(0x1_0000_0002),
        },
        Property {
            name: "list",
            value: PropValue::Cells(&[1, 2, 3]),
        },
        Property {
            name: "label",
            value: PropValue::Str("eth"),
        },
        Property {
            name: "names",
            value: PropValue::Strs(&["a", "b"]),
        },
        Property {
            name: "mac-address",
            value: PropValue::Bytes(&[2, 0, 0, 0, 0, 1]),
        },
    ];
    let extra = [
        ExtraDevice {
            name: "ethernet",
            compatible: &["vendor,eth-1", "vendor,eth"],
            reg: &[(0x1_0000_0000, 0x1000), (0x1_0001_0000, 0x100)],
            interrupts: &[48, 49],
            props: &props,
        },
        ExtraDevice {
            name: "firmware",
            compatible: &["vendor,fw"],
            reg: &[],
            interrupts: &[],
            props: &[],
        },
    ];
    let mut d = arm(2, GICV2);
    d.extra = &extra;
    let p = build_and_check(&d);
    check_arm(&d, &p);
    let e = "/ethernet@100000000";
    assert_eq!(p.strs(e, "compatible"), ["vendor,eth-1", "vendor,eth"]);
    assert_eq!(p.cells(e, "reg"), [1, 0, 0, 0x1000, 1, 0x1_0000, 0, 0x100]);
    assert_eq!(p.cells(e, "interrupts"), [0, 16, 4, 0, 17, 4]);
    assert!(!p.has(e, "interrupt-parent"));
    assert_eq!(p.prop(e, "dma-coherent").unwrap(), b"");
    assert_eq!(p.u32(e, "reg-shift"), 2);
    assert_eq!(p.cells(e, "big"), [1, 2]);
    assert_eq!(p.cells(e, "list"), [1, 2, 3]);
    assert_eq!(p.str(e, "label"), "eth");
    assert_eq!(p.strs(e, "names"), ["a", "b"]);
    assert_eq!(p.prop(e, "mac-address").unwrap(), [2, 0, 0, 0, 0, 1]);
    assert_eq!(p.strs("/firmware", "compatible"), ["vendor,fw"]);
    assert!(!p.has("/firmware", "reg"));
}

/// How axvisor describes a VM's ROM region (`kind = "rom"`, docs/guest-dtb.md "Memory
/// kinds"): not a `memory` node but an `mtd-rom` device with the bus width Linux's physmap
/// driver needs.
#[test]
fn rom_is_an_mtd_rom_device_not_memory() {
    let bank_width = [Property {
        name: "bank-width",
        value: PropValue::U32(4),
    }];
    let extra = [ExtraDevice {
        name: "rom",
        compatible: &["mtd-rom"],
        reg: &[(0, 0x10_0000)],
        interrupts: &[],
        props: &bank_width,
    }];
    let mut d = arm(1, GICV2);
    d.extra = &extra;
    let p = build_and_check(&d);
    check_arm(&d, &p);
    assert_eq!(p.strs("/rom@0", "compatible"), ["mtd-rom"]);
    assert_eq!(p.cells("/rom@0", "reg"), [0, 0, 0, 0x10_0000]);
    assert_eq!(p.u32("/rom@0", "bank-width"), 4);
    assert!(!p.has("/rom@0", "device_type"));
    assert!(!p.nodes.contains_key("/memory@0"));
}

#[test]
fn arm_primecell_extra_gets_the_apb_clock() {
    let extra = [ExtraDevice {
        name: "pl031",
        compatible: &["arm,pl031", "arm,primecell"],
        reg: &[(0x901_0000, 0x1000)],
        interrupts: &[34],
        props: &[],
    }];
    // Without a PL011 UART the clock is written for the extra device alone.
    let mut d = arm(1, GICV3);
    d.uarts = &[];
    d.extra = &extra;
    let p = build_and_check(&d);
    let e = "/pl031@9010000";
    assert_eq!(p.strs(e, "clock-names"), ["apb_pclk"]);
    assert_eq!(p.phandle(p.u32(e, "clocks")), "/apb-pclk");
    assert_eq!(p.strs("/apb-pclk", "compatible"), ["fixed-clock"]);
    // A primecell device may not bring its own clock properties.
    let own = [Property {
        name: "clocks",
        value: PropValue::U32(7),
    }];
    let bad = [ExtraDevice {
        props: &own,
        ..extra[0]
    }];
    d.extra = &bad;
    assert!(matches!(
        build(&d),
        Err(DtbError::DuplicateProperty { device: 0, .. })
    ));
    // Other devices get no clock.
    let plain = [ExtraDevice {
        compatible: &["vendor,thing"],
        ..extra[0]
    }];
    d.extra = &plain;
    let p = build_and_check(&d);
    assert!(!p.has("/pl031@9010000", "clocks"));
    assert!(!p.nodes.contains_key("/apb-pclk"));
}

// ---------------------------------------------------------------------------------------
// RISC-V
// ---------------------------------------------------------------------------------------

fn check_riscv(desc: &GuestDtb<'_>, p: &Parsed) {
    let ArchDesc::Riscv {
        isa,
        timebase_hz,
        mmu,
        plic,
    } = desc.arch
    else {
        unreachable!()
    };
    assert_eq!(p.strs("/", "compatible"), ["riscv-virtio"]);
    assert!(!p.has("/", "interrupt-parent"));
    assert_eq!(p.u32("/cpus", "timebase-frequency"), timebase_hz);
    let mut intc_phandles = Vec::new();
    for i in 0..desc.cpus {
        let cpu = std::format!("/cpus/cpu@{i:x}");
        assert_eq!(p.strs(&cpu, "compatible"), ["riscv"]);
        assert_eq!(p.str(&cpu, "riscv,isa"), isa);
        assert_eq!(p.str(&cpu, "mmu-type"), mmu);
        assert_eq!(p.str(&cpu, "status"), "okay");
        let intc = std::format!("{cpu}/interrupt-controller");
        assert_eq!(p.strs(&intc, "compatible"), ["riscv,cpu-intc"]);
        assert_eq!(p.u32(&intc, "#interrupt-cells"), 1);
        assert!(p.has(&intc, "interrupt-controller"));
        let ph = p.u32(&intc, "phandle");
        assert_eq!(p.phandle(ph), intc);
        intc_phandles.push(ph);
    }
    let Some(plic) = plic else {
        assert!(!p
            .nodes
            .keys()
            .any(|k| k.starts_with("/interrupt-controller@")));
        return;
    };
    let path = std::format!("/interrupt-controller@{:x}", plic.base);
    assert_eq!(
        p.strs(&path, "compatible"),
        ["sifive,plic-1.0.0", "riscv,plic0"]
    );
    assert_eq!(
        p.cells(&path, "reg"),
        [
            (plic.base >> 32) as u32,
            plic.base as u32,
            (plic.size >> 32) as u32,
            plic.size as u32
        ]
    );
    assert_eq!(p.u32(&path, "riscv,ndev"), plic.ndev);
    assert_eq!(p.u32(&path, "#interrupt-cells"), 1);
    assert!(p.has(&path, "interrupt-controller"));
    // One S-mode context per hart, in hart order: context c -> hart c, interrupt 9.
    let ext = p.cells(&path, "interrupts-extended");
    let want: Vec<u32> = intc_phandles.iter().flat_map(|&ph| [ph, 9]).collect();
    assert_eq!(ext, want);
    for (c, pair) in ext.chunks(2).enumerate() {
        assert_eq!(
            p.phandle(pair[0]),
            std::format!("/cpus/cpu@{c:x}/interrupt-controller")
        );
    }
    let plic_ph = p.u32(&path, "phandle");
    for u in desc.uarts {
        let up = std::format!("/serial@{:x}", u.base);
        if let Some(irq) = u.irq {
            assert_eq!(p.cells(&up, "interrupts"), [irq]);
            assert_eq!(p.u32(&up, "interrupt-parent"), plic_ph);
        }
        if u.kind == UartKind::Ns16550 {
            assert_eq!(p.strs(&up, "compatible"), ["ns16550a"]);
            assert_eq!(p.u32(&up, "clock-frequency"), 3_686_400);
        }
    }
}

#[test]
fn riscv_one_and_four_harts() {
    for cpus in [1, 4] {
        let d = riscv(cpus);
        let p = build_and_check(&d);
        check_riscv(&d, &p);
    }
}

#[test]
fn riscv_four_harts_layout() {
    let d = riscv(4);
    let p = build_and_check(&d);
    assert_eq!(
        p.root_children(),
        [
            "aliases",
            "chosen",
            "cpus",
            "interrupt-controller@c000000",
            "memory@80000000",
            "memory@90000000",
            "serial@10000000",
        ]
    );
    assert_eq!(
        p.cells("/interrupt-controller@c000000", "interrupts-extended"),
        [1, 9, 2, 9, 3, 9, 4, 9]
    );
    assert_eq!(p.rsv, [(0x8000_0000, 0x20_0000)]);
}

#[test]
fn riscv_without_plic_and_polled_uart() {
    let uarts = [Uart {
        irq: None,
        ..NS16550
    }];
    let mut d = riscv(2);
    d.arch = ArchDesc::Riscv {
        isa: "rv64imac",
        timebase_hz: 1_000_000,
        mmu: "riscv,sv48",
        plic: None,
    };
    d.uarts = &uarts;
    let p = build_and_check(&d);
    check_riscv(&d, &p);
    assert!(!p.has("/serial@10000000", "interrupts"));
}

#[test]
fn riscv_extra_device_and_pl011() {
    let extra = [ExtraDevice {
        name: "virtio_mmio",
        compatible: &["virtio,mmio"],
        reg: &[(0x1000_1000, 0x1000)],
        interrupts: &[1, 2],
        props: &[],
    }];
    let uarts = [
        NS16550,
        Uart {
            kind: UartKind::Pl011,
            base: 0x1000_2000,
            size: 0x1000,
            irq: Some(3),
        },
    ];
    let mut d = riscv(2);
    d.extra = &extra;
    d.uarts = &uarts;
    let p = build_and_check(&d);
    check_riscv(&d, &p);
    let v = "/virtio_mmio@10001000";
    assert_eq!(p.cells(v, "interrupts"), [1, 2]);
    assert_eq!(
        p.phandle(p.u32(v, "interrupt-parent")),
        "/interrupt-controller@c000000"
    );
    // The PL011's clock exists here too, with a phandle after the PLIC's.
    let clocks = p.cells("/serial@10002000", "clocks");
    assert_eq!(clocks, [4, 4]);
    assert_eq!(p.phandle(4), "/apb-pclk");
}

// ---------------------------------------------------------------------------------------
// Format details
// ---------------------------------------------------------------------------------------

#[test]
fn header_and_blocks() {
    for d in [arm(4, GICV2), arm(1, GICV3), riscv(1), riscv(4)] {
        let b = build(&d).unwrap();
        let p = parse(&b);
        let h = &p.header;
        assert_eq!(&b[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
        assert_eq!(h.version, 17);
        assert_eq!(h.last_comp_version, 16);
        assert_eq!(h.totalsize as usize, b.len());
        assert_eq!(h.off_mem_rsvmap, 40);
        assert_eq!(h.off_dt_struct as usize, 40 + 16 * (d.reserved.len() + 1));
        assert_eq!(h.off_dt_struct % 4, 0);
        assert_eq!(h.off_dt_strings, h.off_dt_struct + h.size_dt_struct);
        assert_eq!(h.totalsize, h.off_dt_strings + h.size_dt_strings);
        assert_eq!(be32(&b, h.off_dt_struct as usize), FDT_BEGIN_NODE);
        assert_eq!(be32(&b, h.off_dt_strings as usize - 4), FDT_END);
    }
}

#[test]
fn strings_are_deduplicated() {
    let d = arm(4, GICV2);
    let b = build(&d).unwrap();
    let p = parse(&b);
    // "reg", "compatible", "device_type" appear on many nodes but once in the table.
    for name in [
        "reg",
        "compatible",
        "device_type",
        "phandle",
        "#address-cells",
    ] {
        assert_eq!(p.strings.iter().filter(|s| *s == name).count(), 1, "{name}");
        let uses = p
            .nodes
            .values()
            .flatten()
            .filter(|(n, _)| n == name)
            .count();
        assert!(uses >= 1, "{name}");
    }
    let props: usize = p.nodes.values().map(Vec::len).sum();
    assert!(p.strings.len() < props);
}

#[test]
fn output_is_deterministic() {
    assert_eq!(
        build(&arm(4, GICV3)).unwrap(),
        build(&arm(4, GICV3)).unwrap()
    );
    assert_eq!(build(&riscv(3)).unwrap(), build(&riscv(3)).unwrap());
}

#[test]
fn phandles_match_the_documented_numbering() {
    let p = parse(&build(&arm(2, GICV2)).unwrap());
    assert_eq!(p.phandle(1), "/interrupt-controller@8000000");
    assert_eq!(p.phandle(2), "/apb-pclk");
    let p = parse(&build(&riscv(2)).unwrap());
    assert_eq!(p.phandle(1), "/cpus/cpu@0/interrupt-controller");
    assert_eq!(p.phandle(2), "/cpus/cpu@1/interrupt-controller");
    assert_eq!(p.phandle(3), "/interrupt-controller@c000000");
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

fn err(d: &GuestDtb<'_>) -> DtbError {
    let e = build(d).expect_err("accepted");
    assert!(!e.to_string().is_empty());
    e
}

#[test]
fn rejects_bad_common_fields() {
    let mut d = arm(0, GICV2);
    assert_eq!(err(&d), DtbError::NoCpus);
    d.cpus = MAX_CPUS + 1;
    d.arch = arm(1, GICV3).arch;
    assert_eq!(
        err(&d),
        DtbError::TooManyCpus {
            cpus: MAX_CPUS + 1,
            max: MAX_CPUS
        }
    );

    let mut d = arm(1, GICV2);
    d.memory = &[];
    assert_eq!(err(&d), DtbError::NoMemory);
    d.memory = &[(0x4000_0000, 0)];
    assert!(matches!(
        err(&d),
        DtbError::BadRegion {
            what: RegionRef::Memory(0),
            ..
        }
    ));
    d.memory = &[(0x4000_0000, 0x1000), (u64::MAX, 2)];
    assert!(matches!(
        err(&d),
        DtbError::BadRegion {
            what: RegionRef::Memory(1),
            ..
        }
    ));
    d.memory = &[(0x5000_0000, 0x1000), (0x4000_0000, 0x1000_0001)];
    assert_eq!(
        err(&d),
        DtbError::MemoryOverlap {
            first: 0,
            second: 1
        }
    );
    // Touching regions and a region that ends exactly at 2^64 are fine.
    d.memory = &[
        (0x4000_0000, 0x1000_0000),
        (0x5000_0000, 0x1000),
        (u64::MAX, 1),
    ];
    build_and_check(&d);

    let mut d = arm(1, GICV2);
    d.reserved = &[(0, 0)];
    assert!(matches!(
        err(&d),
        DtbError::BadRegion {
            what: RegionRef::Reserved(0),
            ..
        }
    ));

    let mut d = arm(1, GICV2);
    d.initrd = Some((0x2000, 0x1000));
    assert_eq!(
        err(&d),
        DtbError::InitrdReversed {
            start: 0x2000,
            end: 0x1000
        }
    );
    d.initrd = Some((0x2000, 0x2000));
    build_and_check(&d);

    let mut d = arm(1, GICV2);
    d.bootargs = Some("a\0b");
    assert_eq!(err(&d), DtbError::InvalidString { what: "bootargs" });

    let mut d = arm(1, GICV2);
    let uarts = [PL011, PL011];
    d.uarts = &uarts;
    assert_eq!(
        err(&d),
        DtbError::DuplicateNode {
            name: "serial@9000000".into()
        }
    );
    let uarts = [Uart { size: 0, ..PL011 }];
    d.uarts = &uarts;
    assert!(matches!(
        err(&d),
        DtbError::BadRegion {
            what: RegionRef::Uart(0),
            ..
        }
    ));
}

#[test]
fn rejects_bad_arm_fields() {
    let mut d = arm(9, GICV2);
    assert_eq!(err(&d), DtbError::TooManyCpus { cpus: 9, max: 8 });
    d.cpus = 8;
    build_and_check(&d);

    let d = arm(
        4,
        Gic::V3 {
            gicd: 0x800_0000,
            gicr: 0x80a_0000,
            gicr_size: 0x6_0000,
        },
    );
    assert_eq!(
        err(&d),
        DtbError::GicRedistributorTooSmall {
            size: 0x6_0000,
            needed: 0x8_0000
        }
    );

    let mut d = arm(2, GICV2);
    d.arch = ArchDesc::Arm {
        gic: GICV2,
        timer_ppis: ArmTimerPpis::default(),
        psci: None,
    };
    assert_eq!(err(&d), DtbError::SmpWithoutPsci { cpus: 2 });

    d.arch = ArchDesc::Arm {
        gic: GICV2,
        timer_ppis: ArmTimerPpis {
            virt: 27,
            ..ArmTimerPpis::default()
        },
        psci: Some(PsciMethod::Hvc),
    };
    assert_eq!(err(&d), DtbError::InvalidTimerPpi { ppi: 27 });

    for irq in [0, 31, 1020, u32::MAX] {
        let uarts = [Uart {
            irq: Some(irq),
            ..PL011
        }];
        let mut d = arm(1, GICV2);
        d.uarts = &uarts;
        assert_eq!(
            err(&d),
            DtbError::InvalidIrq {
                device: DeviceRef::Uart(0),
                irq
            }
        );
    }
    for irq in [32, 1019] {
        let uarts = [Uart {
            irq: Some(irq),
            ..PL011
        }];
        let mut d = arm(1, GICV2);
        d.uarts = &uarts;
        build_and_check(&d);
    }
}

#[test]
fn rejects_bad_riscv_fields() {
    for isa in [
        "",
        "rv64gc",
        "RV64IMAFDC",
        "rv64imafdc\0",
        "rv64ima fdc",
        "x86",
    ] {
        let mut d = riscv(1);
        d.arch = ArchDesc::Riscv {
            isa,
            timebase_hz: 1,
            mmu: "riscv,sv39",
            plic: None,
        };
        d.uarts = &[];
        assert_eq!(err(&d), DtbError::InvalidIsa, "{isa:?}");
    }
    let mut d = riscv(1);
    d.arch = ArchDesc::Riscv {
        isa: "rv64ima",
        timebase_hz: 1,
        mmu: "",
        plic: None,
    };
    d.uarts = &[];
    assert_eq!(err(&d), DtbError::InvalidString { what: "riscv mmu" });

    // A UART interrupt without a PLIC.
    let mut d = riscv(1);
    d.arch = ArchDesc::Riscv {
        isa: "rv64ima",
        timebase_hz: 1,
        mmu: "riscv,sv39",
        plic: None,
    };
    assert_eq!(
        err(&d),
        DtbError::NoInterruptController {
            device: DeviceRef::Uart(0)
        }
    );

    for ndev in [0, 1024] {
        let mut d = riscv(1);
        d.arch = ArchDesc::Riscv {
            isa: "rv64ima",
            timebase_hz: 1,
            mmu: "riscv,sv39",
            plic: Some(Plic { ndev, ..PLIC }),
        };
        assert_eq!(err(&d), DtbError::InvalidPlicSources { ndev });
    }
    let mut d = riscv(1);
    d.arch = ArchDesc::Riscv {
        isa: "rv64ima",
        timebase_hz: 1,
        mmu: "riscv,sv39",
        plic: Some(Plic { size: 0, ..PLIC }),
    };
    assert!(matches!(
        err(&d),
        DtbError::BadRegion {
            what: RegionRef::Plic,
            ..
        }
    ));

    for irq in [0, 96] {
        let extra = [ExtraDevice {
            name: "dev",
            compatible: &["x,y"],
            reg: &[(0x2000_0000, 0x1000)],
            interrupts: &[irq],
            props: &[],
        }];
        let mut d = riscv(1);
        d.extra = Box::leak(Box::new(extra));
        assert_eq!(
            err(&d),
            DtbError::InvalidIrq {
                device: DeviceRef::Extra(0),
                irq
            }
        );
    }
    let mut d = riscv(1);
    let extra = [ExtraDevice {
        name: "dev",
        compatible: &["x,y"],
        reg: &[],
        interrupts: &[95],
        props: &[],
    }];
    d.extra = &extra;
    build_and_check(&d);
}

#[test]
fn rejects_bad_extra_devices() {
    let dev = |name: &'static str,
               compatible: &'static [&'static str],
               props: &'static [Property<'static>]| ExtraDevice {
        name,
        compatible,
        reg: &[(0x2000_0000, 0x1000)],
        interrupts: &[],
        props,
    };
    let cases: Vec<(ExtraDevice<'static>, DtbError)> = vec![
        (
            dev("", &["a,b"], &[]),
            DtbError::InvalidName { name: "".into() },
        ),
        (
            dev("1dev", &["a,b"], &[]),
            DtbError::InvalidName {
                name: "1dev".into(),
            },
        ),
        (
            dev("de/v", &["a,b"], &[]),
            DtbError::InvalidName {
                name: "de/v".into(),
            },
        ),
        (
            dev("dev@1", &["a,b"], &[]),
            DtbError::InvalidName {
                name: "dev@1".into(),
            },
        ),
        (
            dev("abcdefghijklmnopqrstuvwxyz789012", &["a,b"], &[]),
            DtbError::InvalidName {
                name: "abcdefghijklmnopqrstuvwxyz789012".into(),
            },
        ),
        (
            dev("dev", &[], &[]),
            DtbError::InvalidString { what: "compatible" },
        ),
        (
            dev("dev", &[""], &[]),
            DtbError::InvalidString { what: "compatible" },
        ),
        (
            dev("dev", &["a\0b"], &[]),
            DtbError::InvalidString { what: "compatible" },
        ),
        (
            dev(
                "dev",
                &["a,b"],
                &[Property {
                    name: "reg",
                    value: PropValue::U32(1),
                }],
            ),
            DtbError::DuplicateProperty {
                device: 0,
                name: "reg".into(),
            },
        ),
        (
            dev(
                "dev",
                &["a,b"],
                &[
                    Property {
                        name: "x",
                        value: PropValue::Empty,
                    },
                    Property {
                        name: "x",
                        value: PropValue::Empty,
                    },
                ],
            ),
            DtbError::DuplicateProperty {
                device: 0,
                name: "x".into(),
            },
        ),
        (
            dev(
                "dev",
                &["a,b"],
                &[Property {
                    name: "bad name",
                    value: PropValue::Empty,
                }],
            ),
            DtbError::InvalidName {
                name: "bad name".into(),
            },
        ),
        (
            dev(
                "dev",
                &["a,b"],
                &[Property {
                    name: "s",
                    value: PropValue::Strs(&["ok", "n\0o"]),
                }],
            ),
            DtbError::InvalidString {
                what: "property value",
            },
        ),
        (
            dev("timer", &["a,b"], &[]),
            DtbError::DuplicateNode {
                name: "timer".into(),
            },
        ),
        (
            dev("memory", &["a,b"], &[]),
            DtbError::DuplicateNode {
                name: "memory@40000000".into(),
            },
        ),
    ];
    for (dev, want) in cases {
        let mut d = arm(1, GICV2);
        // "timer" and "memory" clash only without / with the matching unit address.
        let extra: &'static [ExtraDevice<'static>] = match dev.name {
            "timer" => Box::leak(Box::new([ExtraDevice { reg: &[], ..dev }])),
            "memory" => Box::leak(Box::new([ExtraDevice {
                reg: &[(0x4000_0000, 0x10)],
                ..dev
            }])),
            _ => Box::leak(Box::new([dev])),
        };
        d.extra = extra;
        assert_eq!(err(&d), want, "{:?}", dev.name);
    }
}

#[test]
fn too_large_is_an_error() {
    let args: &'static str = Box::leak("x".repeat(MAX_DTB_SIZE).into_boxed_str());
    let mut d = arm(1, GICV2);
    d.bootargs = Some(args);
    assert!(matches!(
        err(&d),
        DtbError::TooLarge {
            max: MAX_DTB_SIZE,
            ..
        }
    ));
}

// ---------------------------------------------------------------------------------------
// Size bound and robustness
// ---------------------------------------------------------------------------------------

/// The bound documented in docs/guest-dtb.md ("Size"):
///
/// 2048 + per vCPU (128 on Arm; 256 + len(isa) + len(mmu) on RISC-V) + 96 per memory
/// region + 16 per reserved range + 256 per UART + len(bootargs) + per extra device
/// (128 + its name + its compatible strings with their NULs + 16 per reg + 12 per
/// interrupt + per property 48 + the value's bytes).
fn documented_bound(d: &GuestDtb<'_>) -> usize {
    let per_cpu = match d.arch {
        ArchDesc::Arm { .. } => 128,
        ArchDesc::Riscv { isa, mmu, .. } => 256 + isa.len() + mmu.len(),
    };
    let extra: usize = d
        .extra
        .iter()
        .map(|e| {
            let props: usize = e
                .props
                .iter()
                .map(|p| {
                    48 + match p.value {
                        PropValue::Empty => 0,
                        PropValue::U32(_) => 4,
                        PropValue::U64(_) => 8,
                        PropValue::Cells(c) => 4 * c.len(),
                        PropValue::Str(s) => s.len() + 1,
                        PropValue::Strs(l) => l.iter().map(|s| s.len() + 1).sum(),
                        PropValue::Bytes(b) => b.len(),
                    }
                })
                .sum();
            let compat: usize = e.compatible.iter().map(|c| c.len() + 1).sum();
            128 + e.name.len() + compat + 16 * e.reg.len() + 12 * e.interrupts.len() + props
        })
        .sum();
    2048 + per_cpu * d.cpus
        + 96 * d.memory.len()
        + 16 * d.reserved.len()
        + 256 * d.uarts.len()
        + d.bootargs.map_or(0, str::len)
        + extra
}

#[test]
fn size_stays_under_the_documented_bound() {
    // A typical guest (the README's demo) and the largest ones each GIC allows.
    let mut cases = vec![arm(1, GICV2), arm(8, GICV2), riscv(1), riscv(4)];
    let mut big = arm(
        MAX_CPUS,
        Gic::V3 {
            gicd: 0x800_0000,
            gicr: 0x100_0000_0000,
            gicr_size: 0x200_0000,
        },
    );
    big.bootargs = Some(Box::leak("console=ttyAMA0 ".repeat(128).into_boxed_str()));
    cases.push(big);
    let mut big = riscv(MAX_CPUS);
    big.arch = ArchDesc::Riscv {
        isa: "rv64imafdch_zicsr_zifencei_zihintpause_zba_zbb_zbc_zbs_sstc_svinval",
        timebase_hz: 10_000_000,
        mmu: "riscv,sv57",
        plic: Some(PLIC),
    };
    cases.push(big);
    for d in &cases {
        let b = build(d).unwrap();
        let bound = documented_bound(d);
        assert!(b.len() <= bound, "{} > {bound}", b.len());
    }
    // The numbers quoted in docs/guest-dtb.md.
    assert!(build(&arm(1, GICV2)).unwrap().len() <= 2048);
    assert!(build(&riscv(4)).unwrap().len() <= 4096);
    assert!(build(&cases[4]).unwrap().len() <= 48 * 1024);
    assert!(build(&cases[5]).unwrap().len() <= 96 * 1024);
}

/// A small deterministic generator (xorshift) for the robustness tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        if items.is_empty() {
            panic!("pick from nothing");
        }
        items[self.below(items.len() as u64) as usize]
    }
    /// Mostly plausible numbers, sometimes extremes.
    fn num(&mut self) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => u64::MAX - self.below(4),
            2 => self.below(64),
            3 => self.next(),
            _ => (self.below(0x100) + 1) << 24,
        }
    }
    fn irq(&mut self) -> u32 {
        self.pick(&[0, 1, 5, 31, 32, 33, 95, 96, 1019, 1020, u32::MAX])
    }
}

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

/// A description where each field is valid most of the time and anything at all otherwise.
fn random_desc(r: &mut Rng) -> GuestDtb<'static> {
    // One field in eight is drawn from the bad values.
    fn field<T: Copy>(r: &mut Rng, good: &[T], bad: &[T]) -> T {
        if r.below(8) == 0 {
            r.pick(bad)
        } else {
            r.pick(good)
        }
    }
    let is_arm = r.below(2) == 0;
    let cpus = field(r, &[1, 2, 4, 8], &[0, 9, 256, 257]);
    let arch = if is_arm {
        let gic = if r.below(2) == 0 {
            Gic::V2 {
                gicd: r.num(),
                gicc: r.num(),
            }
        } else {
            Gic::V3 {
                gicd: r.num(),
                gicr: r.num(),
                gicr_size: field(r, &[0x100_0000, u64::MAX], &[0, 0x2_0000]),
            }
        };
        ArchDesc::Arm {
            gic,
            timer_ppis: ArmTimerPpis {
                secure_phys: field(r, &[13, 0, 15], &[16, 29, u32::MAX]),
                ..ArmTimerPpis::default()
            },
            psci: field(r, &[Some(PsciMethod::Hvc), Some(PsciMethod::Smc)], &[None]),
        }
    } else {
        let bad_plic = Plic {
            ndev: r.irq(),
            base: r.num(),
            size: r.num(),
        };
        ArchDesc::Riscv {
            isa: field(
                r,
                &["rv64imafdc", "rv64ima_zicsr", "rv32imac"],
                &["", "rv64gc", "RV64IMA", "rv64ima\0", "rv64ima fd"],
            ),
            timebase_hz: r.next() as u32,
            mmu: field(r, &["riscv,sv39", "riscv,sv57"], &["", "a\0"]),
            plic: field(r, &[Some(PLIC)], &[None, Some(bad_plic)]),
        }
    };
    let irq_good: &[u32] = if is_arm {
        &[32, 33, 79, 1019]
    } else {
        &[1, 10, 95]
    };
    let irq_bad: &[u32] = &[0, 31, 96, 1020, u32::MAX];

    let memory: Vec<(u64, u64)> = if r.below(8) == 0 {
        (0..r.below(3)).map(|_| (r.num(), r.num())).collect()
    } else {
        // Disjoint: region i lies in [(i + 1) << 40, (i + 2) << 40).
        (0..=r.below(2))
            .map(|i| ((i + 1) << 40 | r.below(1 << 30) << 12, r.below(1 << 39) + 1))
            .collect()
    };
    let reserved: Vec<(u64, u64)> = (0..r.below(3))
        .map(|_| {
            let anywhere = (r.num() >> 1, 1);
            field(r, &[(0x8000_0000, 0x1000), anywhere], &[(0, 0)])
        })
        .collect();
    let uarts = (0..r.below(4))
        .map(|i| Uart {
            kind: r.pick(&[UartKind::Pl011, UartKind::Ns16550]),
            base: field(r, &[0x1000_0000 + 0x1000 * i], &[0x1000_0000]),
            size: field(r, &[0x1000, 1], &[0, u64::MAX]),
            irq: if r.below(3) == 0 {
                None
            } else {
                Some(field(r, irq_good, irq_bad))
            },
        })
        .collect();
    let extra = (0..r.below(3))
        .map(|i| ExtraDevice {
            name: field(
                r,
                &["dev", "ok-name", "virtio_mmio", "a,b.c+d"],
                &["", "9x", "a b", "x@1", "timer", "cpus"],
            ),
            compatible: field(
                r,
                &[&["a,b"][..], &["a,b", "c"]],
                &[&[][..], &[""], &["a\0b"]],
            ),
            reg: if r.below(4) == 0 {
                &[]
            } else {
                leak(vec![
                    (0x2_0000_0000 + 0x1000 * i, 0x1000),
                    (r.num(), r.num()),
                ])
            },
            interrupts: leak(
                (0..r.below(3))
                    .map(|_| field(r, irq_good, irq_bad))
                    .collect(),
            ),
            props: leak(
                ["a", "x#y", "b?"][..r.below(4) as usize]
                    .iter()
                    .map(|&good| Property {
                        name: field(r, &[good], &["reg", "bad name", "phandle", ""]),
                        value: field(
                            r,
                            &[
                                PropValue::Empty,
                                PropValue::Str("s"),
                                PropValue::Cells(&[1, 2]),
                                PropValue::Bytes(&[1, 2, 3]),
                            ],
                            &[PropValue::Str("s\0"), PropValue::Strs(&["\0"])],
                        ),
                    })
                    .collect(),
            ),
        })
        .collect();
    GuestDtb {
        arch,
        cpus,
        memory: leak(memory),
        reserved: leak(reserved),
        bootargs: field(r, &[None, Some("console=ttyS0"), Some("")], &[Some("a\0b")]),
        initrd: field(
            r,
            &[None, Some((0x4800_0000, 0x4900_0000)), Some((7, 7))],
            &[Some((2, 1))],
        ),
        uarts: leak(uarts),
        extra: leak(extra),
    }
}

#[test]
fn random_descriptions_never_panic_and_valid_ones_read_back() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for _ in 0..2000 {
        let d = random_desc(&mut r);
        match build(&d) {
            Ok(b) => {
                let p = parse(&b);
                check_with_fdt_crate(&b, &p);
                check_common(&d, &p);
                assert!(b.len() <= documented_bound(&d));
                ok += 1;
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // The generator must reach the success path too, or this test proves little.
    assert!(ok > 200, "only {ok} valid descriptions");
}
