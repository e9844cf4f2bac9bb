//! Host unit tests: parsing, defaults, parse errors, and every validation check.

extern crate std;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use std::format;

use crate::*;

/// A valid VM; tests append TOML to it or replace parts of it.
const BASE: &str = r#"
id = 1
name = "hello"

[cpus]
count = 2
pin = [1, 2]

[kernel]
image = "hello"
load_addr = 0x4008_0000
cmdline = "console=ttyAMA0"
initrd = { image = "initramfs", load_addr = 0x4800_0000 }
dtb = { image = "vm1-dtb", load_addr = 0x4400_0000 }

[[memory]]
gpa = 0x4000_0000
size = 0x1000_0000
map = "alloc"

[[devices]]
kind = "pl011"
base = 0x0900_0000
size = 0x1000
irq = 33

[[devices]]
kind = "gicd"
base = 0x0800_0000
size = 0x1_0000

[[passthrough]]
name = "uart1"
base = 0x0904_0000
size = 0x1000
irqs = [40]

[unclaimed]
policy = "read-zero"
"#;

const AARCH64_HELLO: &str = include_str!("../../../configs/vms/aarch64-hello.toml");
const RISCV64_HELLO: &str = include_str!("../../../configs/vms/riscv64-hello.toml");
const INVALID_EXAMPLE: &str = include_str!("../../../configs/vms/invalid-example.toml");

fn parse(text: &str) -> VmConfig {
    match from_toml(text) {
        Ok(config) => config,
        Err(err) => panic!("parse failed: {err}\n{text}"),
    }
}

fn base() -> VmConfig {
    parse(BASE)
}

/// The physical range of the first passthrough device.
fn pt_mmio(vm: &mut VmConfig) -> &mut MmioRange {
    vm.passthrough[0].mmio.as_mut().unwrap()
}

fn ctx() -> ValidateContext {
    ValidateContext::default()
}

fn ctx_with_sizes(sizes: &[(&str, u64)]) -> ValidateContext {
    ValidateContext {
        pcpu_count: None,
        image_sizes: sizes.iter().map(|&(n, s)| (n.to_string(), s)).collect(),
    }
}

fn problems(config: &VmConfig, ctx: &ValidateContext) -> Vec<ConfigProblem> {
    config.validate(ctx).err().unwrap_or_default()
}

/// The problems as "field: message" lines.
fn lines(problems: &[ConfigProblem]) -> Vec<String> {
    problems.iter().map(|p| p.to_string()).collect()
}

/// Asserts that validation finds exactly one problem, at `field`, of the given kind.
#[track_caller]
fn assert_single(config: &VmConfig, ctx: &ValidateContext, field: &str, kind: ProblemKind) {
    let found = problems(config, ctx);
    assert_eq!(
        found,
        vec![ConfigProblem {
            field: field.into(),
            kind
        }],
        "{:#?}",
        lines(&found)
    );
}

fn parse_err(text: &str) -> ParseError {
    match from_toml(text) {
        Ok(config) => panic!("parsed unexpectedly: {config:?}"),
        Err(err) => err,
    }
}

fn region(gpa: u64, size: u64, map: MapKind) -> MemoryRegion {
    MemoryRegion {
        gpa,
        size,
        map,
        kind: MemKind::Ram,
        flags: MemFlags::ALL,
    }
}

// ---------------------------------------------------------------- parsing and defaults

#[test]
fn parses_every_field() {
    let vm = base();
    assert_eq!(vm.id, 1);
    assert_eq!(vm.name, "hello");
    assert_eq!(
        vm.cpus,
        CpuConfig {
            count: 2,
            pin: vec![1, 2]
        }
    );
    assert_eq!(vm.kernel.image, "hello");
    assert_eq!(vm.kernel.load_addr, 0x4008_0000);
    assert_eq!(vm.kernel.cmdline.as_deref(), Some("console=ttyAMA0"));
    assert_eq!(
        vm.kernel.initrd,
        Some(ImageConfig {
            image: "initramfs".into(),
            load_addr: 0x4800_0000
        })
    );
    assert_eq!(
        vm.kernel.dtb,
        Some(DtbConfig {
            image: Some("vm1-dtb".into()),
            load_addr: 0x4400_0000
        })
    );
    assert_eq!(
        vm.memory,
        vec![region(0x4000_0000, 0x1000_0000, MapKind::Alloc)]
    );
    assert_eq!(
        vm.devices,
        vec![
            DeviceConfig {
                kind: DeviceKind::Pl011,
                space: DeviceSpace::Mmio,
                base: 0x0900_0000,
                size: 0x1000,
                irq: Some(33),
                disk: None,
                net: None,
            },
            DeviceConfig {
                kind: DeviceKind::GicDistributor,
                space: DeviceSpace::Mmio,
                base: 0x0800_0000,
                size: 0x1_0000,
                irq: None,
                disk: None,
                net: None,
            }
        ]
    );
    assert_eq!(
        vm.passthrough,
        vec![PassthroughConfig {
            name: "uart1".into(),
            mmio: Some(MmioRange {
                base: 0x0904_0000,
                size: 0x1000
            }),
            ports: Vec::new(),
            irqs: vec![40]
        }]
    );
    assert_eq!(vm.unclaimed, UnclaimedPolicy::ReadZero);
    vm.validate(&ctx()).unwrap();
}

#[test]
fn defaults() {
    let vm = parse(
        r#"
id = 3
name = "min"
cpus = { count = 1, pin = [0] }
kernel = { image = "k", load_addr = 0x8020_0000 }
[[memory]]
gpa = 0x8000_0000
size = 0x100_0000
map = "alloc"
"#,
    );
    assert_eq!(vm.kernel.entry, 0x8020_0000, "entry defaults to load_addr");
    assert_eq!(vm.kernel.cmdline, None);
    assert_eq!(vm.kernel.initrd, None);
    assert_eq!(vm.kernel.dtb, None);
    assert_eq!(vm.memory[0].flags, MemFlags::ALL);
    assert_eq!(vm.memory[0].kind, MemKind::Ram);
    assert!(vm.devices.is_empty());
    assert!(vm.passthrough.is_empty());
    assert_eq!(vm.unclaimed, UnclaimedPolicy::Fault);
    vm.validate(&ctx()).unwrap();
}

#[test]
fn defaults_inside_tables() {
    let vm = parse(&format!(
        "{}\n[[passthrough]]\nname = \"p\"\nbase = 0x2000_0000\nsize = 0x1000\n",
        BASE.replace("policy = \"read-zero\"", "")
    ));
    assert_eq!(
        vm.unclaimed,
        UnclaimedPolicy::Fault,
        "empty [unclaimed] table"
    );
    assert!(vm.passthrough[1].irqs.is_empty());
    assert_eq!(vm.devices[0].irq, Some(33));
}

#[test]
fn explicit_entry_and_flags() {
    let text = BASE
        .replace(
            "load_addr = 0x4008_0000",
            "load_addr = 0x4008_0000\nentry = 0x4008_1000",
        )
        .replace("map = \"alloc\"", "map = \"reserved\"\nflags = [\"read\"]");
    let vm = parse(&text);
    assert_eq!(vm.kernel.entry, 0x4008_1000);
    assert_eq!(vm.memory[0].map, MapKind::Reserved);
    assert_eq!(
        vm.memory[0].flags,
        MemFlags {
            read: true,
            write: false,
            exec: false
        }
    );
    let vm = parse(&BASE.replace("map = \"alloc\"", "map = \"alloc\"\nflags = []"));
    assert_eq!(vm.memory[0].flags, MemFlags::NONE);
}

#[test]
fn every_policy_and_kind() {
    for (word, policy) in [
        ("fault", UnclaimedPolicy::Fault),
        ("read-zero", UnclaimedPolicy::ReadZero),
        ("stop", UnclaimedPolicy::Stop),
    ] {
        let vm = parse(&BASE.replace("\"read-zero\"", &format!("\"{word}\"")));
        assert_eq!(vm.unclaimed, policy);
    }
    for (name, kind) in DEVICE_KINDS.iter().zip(DeviceKind::ALL) {
        assert_eq!(kind.name(), *name);
        assert_eq!(DeviceKind::from_name(name), Some(kind));
        assert_eq!(kind.to_string(), *name);
        let file = match kind {
            DeviceKind::VirtioBlk => "\nfile = \"/vms/disk.img\"",
            DeviceKind::VirtioNet => "\nswitch = \"lan\"",
            _ => "",
        };
        let vm = parse(&BASE.replace("\"pl011\"", &format!("\"{name}\"{file}")));
        assert_eq!(vm.devices[0].kind, kind);
    }
    assert_eq!(DEVICE_KINDS.len(), DeviceKind::ALL.len());
    assert_eq!(DeviceKind::from_name("PL011"), None);
}

#[test]
fn example_configs_are_valid() {
    for (text, gpa, kind, base) in [
        (AARCH64_HELLO, 0x4000_0000, DeviceKind::Pl011, 0x0900_0000),
        (RISCV64_HELLO, 0x8000_0000, DeviceKind::Ns16550, 0x1000_0000),
    ] {
        let vm = parse(text);
        assert_eq!(vm.cpus.pin, vec![1]);
        assert_eq!(vm.memory, vec![region(gpa, 0x100_0000, MapKind::Alloc)]);
        assert_eq!((vm.kernel.load_addr, vm.kernel.entry), (gpa, gpa));
        assert_eq!(vm.kernel.image, "hello");
        assert_eq!(vm.devices[0].kind, kind);
        assert_eq!((vm.devices[0].base, vm.devices[0].size), (base, 0x1000));
        assert_eq!(vm.unclaimed, UnclaimedPolicy::Fault);
        let ctx = ValidateContext {
            pcpu_count: Some(2),
            image_sizes: BTreeMap::from([("hello".to_string(), 0x10_0000)]),
        };
        vm.validate(&ctx).unwrap();
    }
}

#[test]
fn invalid_example_reports_every_problem() {
    let vm = parse(INVALID_EXAMPLE);
    let found = lines(&problems(&vm, &ctx()));
    assert_eq!(
        found,
        vec![
            "name: contains ' '; only letters, digits, '_' and '-' are allowed",
            "cpus.pin: has 1 entry but cpus.count is 2; give one physical CPU per vCPU",
            "memory[1].gpa: 0x40800800 is not a multiple of 0x1000",
            "memory[1]: overlaps memory[0] ([0x40000000, 0x41000000))",
            "kernel.entry: 0x50000000 is not inside any non-reserved memory region",
            "kernel.dtb.load_addr: image `vm-dtb` at 0x60000000 is not inside any non-reserved memory region",
            "devices[1]: overlaps devices[0] ([0x9000000, 0x9001000))",
            "devices[1]: overlaps memory[0] ([0x40000000, 0x41000000))",
            "devices[1]: overlaps memory[1] ([0x40800800, 0x40900800))",
            "passthrough[0].size: size must not be 0",
        ],
        "{found:#?}"
    );
}

// ---------------------------------------------------------------- parse errors

#[test]
fn unknown_fields_are_rejected_everywhere() {
    for (anchor, key) in [
        ("id = 1", None),
        ("count = 2", Some("cpus")),
        ("image = \"hello\"", Some("kernel")),
        ("map = \"alloc\"", Some("memory")),
        ("kind = \"pl011\"", Some("devices[0]")),
        ("irqs = [40]", Some("passthrough[0]")),
        ("policy = \"read-zero\"", Some("unclaimed")),
    ] {
        let text = BASE.replacen(anchor, &format!("{anchor}\nbogus = 1"), 1);
        let err = parse_err(&text);
        assert!(
            err.message.contains("unknown field `bogus`"),
            "{anchor}: {err}"
        );
        assert_eq!(err.key.as_deref(), key, "{anchor}: {err}");
        assert!(err.line.is_some() && err.column == Some(1), "{err:?}");
    }
    let err = parse_err(&BASE.replace(
        "load_addr = 0x4800_0000 }",
        "load_addr = 0x4800_0000, size = 3 }",
    ));
    assert!(err.message.contains("unknown field `size`"), "{err}");
    assert_eq!(err.key.as_deref(), Some("kernel.initrd"));
}

#[test]
fn unknown_device_kind_names_the_field() {
    let err = parse_err(&BASE.replace("\"pl011\"", "\"virtio\""));
    assert_eq!(
        err.message,
        "unknown variant `virtio`, expected one of `pl011`, `ns16550`, `gicd`, `gicr`, `gicc`, `plic`, `ioapic`, `virtio-console`, `virtio-blk`, `virtio-net`"
    );
    assert_eq!(err.key.as_deref(), Some("devices.kind"));
    let line = BASE.lines().position(|l| l.contains("pl011")).unwrap() + 1;
    assert_eq!((err.line, err.column), (Some(line), Some(8)));
    assert_eq!(
        err.to_string(),
        format!(
            "line {line}, column 8: in `devices.kind`: unknown variant `virtio`, expected one of `pl011`, `ns16550`, `gicd`, `gicr`, `gicc`, `plic`, `ioapic`, `virtio-console`, `virtio-blk`, `virtio-net`"
        )
    );
}

#[test]
fn unknown_policy_map_and_flag_name_the_field() {
    let err = parse_err(&BASE.replace("\"read-zero\"", "\"ignore\""));
    assert!(err.message.contains("unknown variant `ignore`"), "{err}");
    assert!(err.message.contains("`read-zero`"), "{err}");
    assert_eq!(err.key.as_deref(), Some("unclaimed.policy"));

    let err = parse_err(&BASE.replace("map = \"alloc\"", "map = \"lazy\""));
    assert!(err.message.contains("unknown variant `lazy`"), "{err}");
    assert_eq!(err.key.as_deref(), Some("memory.map"));

    let err = parse_err(&BASE.replace("map = \"alloc\"", "map = \"alloc\"\nflags = [\"rw\"]"));
    assert!(err.message.contains("unknown variant `rw`"), "{err}");
    assert_eq!(err.key.as_deref(), Some("memory.flags"));

    let err = parse_err(&BASE.replace(
        "map = \"alloc\"",
        "map = \"alloc\"\nflags = [\"read\", \"read\"]",
    ));
    assert!(
        err.message.contains("duplicate memory flag `read`"),
        "{err}"
    );
    assert_eq!(err.key.as_deref(), Some("memory.flags"));

    let err = parse_err(&BASE.replace("map = \"alloc\"", "map = \"alloc\"\nflags = \"read\""));
    assert!(err.message.contains("invalid type"), "{err}");
}

#[test]
fn missing_fields_and_wrong_types() {
    let err = parse_err(&BASE.replace("id = 1\n", ""));
    assert_eq!(err.message, "missing field `id`");
    assert_eq!(err.key, None);

    let err = parse_err(&BASE.replace("pin = [1, 2]\n", ""));
    assert_eq!(err.message, "missing field `pin`");
    assert_eq!(err.key.as_deref(), Some("cpus"));

    let err = parse_err(&BASE.replace("map = \"alloc\"\n", ""));
    assert_eq!(err.message, "missing field `map`");

    let err = parse_err(&BASE.replace("id = 1", "id = -1"));
    assert!(err.message.contains("invalid value: integer `-1`"), "{err}");
    assert_eq!(err.key.as_deref(), Some("id"));
    assert_eq!((err.line, err.column), (Some(2), Some(6)));

    let err = parse_err(&BASE.replace("base = 0x0900_0000", "base = \"0x0900_0000\""));
    assert!(err.message.contains("invalid type: string"), "{err}");
    assert_eq!(err.key.as_deref(), Some("devices.base"));

    let err = parse_err(&BASE.replace("id = 1", "id = 0x1_0000_0000"));
    assert!(err.message.contains("expected u32"), "{err}");
}

#[test]
fn syntax_errors_have_a_position() {
    let err = parse_err("id = 1\n[cpus\n");
    assert_eq!((err.line, err.column), (Some(2), Some(6)));
    assert!(err.to_string().starts_with("line 2, column 6: "), "{err}");

    for text in [
        "",
        "=",
        "[[",
        "id = 0x",
        "id = 99999999999999999999999",
        "a.b.c = 1\na = 2",
        "\u{feff}",
        "é = \"\u{0}\"",
        "name = \"\\u{d800}\"",
    ] {
        let err = parse_err(text);
        assert!(!err.message.is_empty());
        let _ = err.to_string();
    }
}

#[test]
fn a_duplicate_key_is_named() {
    let err = parse_err("id = 1\nname = \"a\"\nid = 2\n");
    assert_eq!(
        err.to_string(),
        "line 3, column 1: duplicate key `id`: a key may be given once"
    );
    let err = parse_err("[cpus]\ncount = 1\n count  = 2\n");
    assert_eq!(
        err.to_string(),
        "line 3, column 2: duplicate key `count`: a key may be given once"
    );
}

#[test]
fn an_entry_that_fails_its_kind_checks_is_named_and_placed() {
    let devices = "\n[[devices]]\nkind = \"pl011\"\nbase = 0x0900_0000\nsize = 0x1000\n\
                   [[devices]]\nkind = \"ns16550\"\nbase = 0x0a00_0000\nfile = \"/d\"\n";
    let text = format!("{AARCH64_HELLO}{devices}");
    let line = text.lines().count() - 3;
    let err = parse_err(&text);
    assert_eq!(err.key.as_deref(), Some("devices[2]"));
    assert_eq!((err.line, err.column), (Some(line), Some(1)), "{err}");
    let text = format!(
        "{AARCH64_HELLO}\n[[passthrough]]\nname = \"a\"\nbase = 0x0a00_0000\nsize = 0x1000\n\
         [[passthrough]]\nname = \"b\"\nsize = 0x1000\n"
    );
    let err = parse_err(&text);
    assert_eq!(err.key.as_deref(), Some("passthrough[1]"));
    assert!(err
        .to_string()
        .ends_with("in `passthrough[1]`: missing field `base` (a passthrough `size` needs it)"));
    // Inline arrays of tables too.
    let err = parse_err(&format!(
        "{}devices = [{{ kind = \"pl011\", base = 0 }}]\n",
        BASE.split_once("[cpus]").unwrap().0
    ));
    assert_eq!(err.key.as_deref(), Some("devices[0]"), "{err}");
}

#[test]
fn line_column_counts_characters() {
    // Columns count characters, not bytes: `;` is the 13th character of line 2.
    let err = parse_err("# ééé\nname = \"ééé\"; id = 1\n");
    assert_eq!((err.line, err.column), (Some(2), Some(13)), "{err:?}");
}

// ---------------------------------------------------------------- validation: one check each

#[test]
fn name_checks() {
    let mut vm = base();
    vm.name = String::new();
    assert_single(&vm, &ctx(), "name", ProblemKind::Empty);

    vm.name = "a".repeat(MAX_NAME_LEN);
    vm.validate(&ctx()).unwrap();
    vm.name = "a".repeat(MAX_NAME_LEN + 1);
    assert_single(
        &vm,
        &ctx(),
        "name",
        ProblemKind::NameTooLong { len: 33, max: 32 },
    );

    vm.name = "Vm_1-a".into();
    vm.validate(&ctx()).unwrap();
    for (name, ch) in [("a b", ' '), ("a.b", '.'), ("vmé", 'é'), ("x/y", '/')] {
        vm.name = name.into();
        assert_single(&vm, &ctx(), "name", ProblemKind::NameInvalidChar { ch });
    }

    vm.name = "é".repeat(MAX_NAME_LEN + 1);
    let found = problems(&vm, &ctx());
    assert_eq!(found.len(), 2, "{:#?}", lines(&found));
    assert_eq!(found[0].kind, ProblemKind::NameTooLong { len: 33, max: 32 });
}

#[test]
fn vcpu_count_zero() {
    let mut vm = base();
    vm.cpus = CpuConfig {
        count: 0,
        pin: vec![],
    };
    assert_single(&vm, &ctx(), "cpus.count", ProblemKind::NoVcpus);
}

#[test]
fn pin_length_mismatch() {
    let mut vm = base();
    vm.cpus.pin = vec![1, 2, 3];
    assert_single(
        &vm,
        &ctx(),
        "cpus.pin",
        ProblemKind::PinLengthMismatch { len: 3, count: 2 },
    );
    vm.cpus.pin.clear();
    assert_single(
        &vm,
        &ctx(),
        "cpus.pin",
        ProblemKind::PinLengthMismatch { len: 0, count: 2 },
    );
}

#[test]
fn pcpu_out_of_range_only_when_known() {
    let mut vm = base();
    vm.cpus.pin = vec![3, 0];
    vm.validate(&ctx()).unwrap();
    let four = ValidateContext {
        pcpu_count: Some(4),
        ..ctx()
    };
    vm.validate(&four).unwrap();
    let three = ValidateContext {
        pcpu_count: Some(3),
        ..ctx()
    };
    assert_single(
        &vm,
        &three,
        "cpus.pin[0]",
        ProblemKind::PcpuOutOfRange {
            pcpu: 3,
            pcpu_count: 3,
        },
    );
    let p = &problems(&vm, &three)[0];
    assert_eq!(
        p.to_string(),
        "cpus.pin[0]: physical CPU 3 does not exist (the machine has 3)"
    );
}

#[test]
fn two_vcpus_on_one_pcpu_is_allowed() {
    let mut vm = base();
    vm.cpus.pin = vec![1, 1];
    let ctx = ValidateContext {
        pcpu_count: Some(2),
        ..ctx()
    };
    vm.validate(&ctx).unwrap();
}

#[test]
fn no_memory() {
    let mut vm = base();
    vm.memory.clear();
    let found = problems(&vm, &ctx());
    let kinds: Vec<_> = found.iter().map(|p| (p.field.as_str(), &p.kind)).collect();
    assert_eq!(kinds[0], ("memory", &ProblemKind::NoMemory));
    // Nothing can be loaded or started without RAM; every image says so too.
    assert_eq!(found.len(), 5, "{:#?}", lines(&found));
}

#[test]
fn memory_size_zero() {
    let mut vm = base();
    vm.memory.push(region(0x8000_0000, 0, MapKind::Alloc));
    assert_single(&vm, &ctx(), "memory[1].size", ProblemKind::ZeroSize);
}

#[test]
fn memory_misaligned() {
    let mut vm = base();
    vm.memory.push(region(0x8000_0800, 0x1000, MapKind::Alloc));
    assert_single(
        &vm,
        &ctx(),
        "memory[1].gpa",
        ProblemKind::Misaligned {
            value: 0x8000_0800,
            align: 0x1000,
        },
    );
    vm.memory[1] = region(0x8000_0000, 0x1800, MapKind::Reserved);
    assert_single(
        &vm,
        &ctx(),
        "memory[1].size",
        ProblemKind::Misaligned {
            value: 0x1800,
            align: 0x1000,
        },
    );
}

#[test]
fn memory_overflow() {
    let mut vm = base();
    vm.memory
        .push(region(0xffff_ffff_ffff_f000, 0x2000, MapKind::Identity));
    assert_single(
        &vm,
        &ctx(),
        "memory[1]",
        ProblemKind::Overflow {
            base: 0xffff_ffff_ffff_f000,
            size: 0x2000,
        },
    );
    // Ending exactly at 2^64 is not representable either.
    vm.memory[1].size = 0x1000;
    assert_eq!(problems(&vm, &ctx()).len(), 1);
}

#[test]
fn memory_overlap() {
    let mut vm = base();
    vm.memory
        .push(region(0x4f00_0000, 0x200_0000, MapKind::Alloc));
    let found = problems(&vm, &ctx());
    assert_eq!(
        lines(&found),
        vec!["memory[1]: overlaps memory[0] ([0x40000000, 0x50000000))"]
    );
    // Touching regions do not overlap.
    vm.memory[1].gpa = 0x5000_0000;
    vm.validate(&ctx()).unwrap();
    // Every overlapping pair is reported once, on the later region.
    vm.memory
        .push(region(0x3000_0000, 0x3000_0000, MapKind::Reserved));
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec![
            "memory[2]: overlaps memory[0] ([0x40000000, 0x50000000))",
            "memory[2]: overlaps memory[1] ([0x50000000, 0x52000000))",
        ]
    );
}

#[test]
fn entry_outside_ram() {
    let mut vm = base();
    vm.kernel.entry = 0x5000_0000; // just past the end
    assert_single(
        &vm,
        &ctx(),
        "kernel.entry",
        ProblemKind::EntryOutsideRam { entry: 0x5000_0000 },
    );
    // A reserved region does not count as RAM.
    vm.memory
        .push(region(0x5000_0000, 0x1000, MapKind::Reserved));
    assert_single(
        &vm,
        &ctx(),
        "kernel.entry",
        ProblemKind::EntryOutsideRam { entry: 0x5000_0000 },
    );
    vm.memory[1].map = MapKind::Identity;
    vm.validate(&ctx()).unwrap();
}

#[test]
fn entry_not_executable() {
    let mut vm = base();
    vm.memory[0].flags.exec = false;
    assert_single(
        &vm,
        &ctx(),
        "kernel.entry",
        ProblemKind::EntryNotExecutable {
            entry: 0x4008_0000,
            region: "memory[0]".into(),
        },
    );
}

#[test]
fn image_outside_ram() {
    let mut vm = base();
    vm.kernel.initrd.as_mut().unwrap().load_addr = 0x3000_0000;
    assert_single(
        &vm,
        &ctx(),
        "kernel.initrd.load_addr",
        ProblemKind::ImageOutsideRam {
            image: "initramfs".into(),
            load_addr: 0x3000_0000,
        },
    );
    let mut vm = base();
    vm.memory
        .push(region(0x6000_0000, 0x1000, MapKind::Reserved));
    vm.kernel.dtb.as_mut().unwrap().load_addr = 0x6000_0000;
    assert_single(
        &vm,
        &ctx(),
        "kernel.dtb.load_addr",
        ProblemKind::ImageOutsideRam {
            image: "vm1-dtb".into(),
            load_addr: 0x6000_0000,
        },
    );
    let mut vm = base();
    vm.kernel.entry = 0x4000_0000;
    vm.kernel.load_addr = 0x1000;
    assert_single(
        &vm,
        &ctx(),
        "kernel.load_addr",
        ProblemKind::ImageOutsideRam {
            image: "hello".into(),
            load_addr: 0x1000,
        },
    );
}

#[test]
fn image_too_large_only_when_size_known() {
    let mut vm = base();
    // The DTB at 0x4ff0_0000 has 1 MiB up to the end of memory[0].
    vm.kernel.dtb.as_mut().unwrap().load_addr = 0x4ff0_0000;
    vm.validate(&ctx()).unwrap();
    vm.validate(&ctx_with_sizes(&[("vm1-dtb", 0x10_0000)]))
        .unwrap();
    let ctx = ctx_with_sizes(&[("vm1-dtb", 0x10_0001)]);
    assert_single(
        &vm,
        &ctx,
        "kernel.dtb",
        ProblemKind::ImageTooLarge {
            image: "vm1-dtb".into(),
            size: 0x10_0001,
            room: 0x10_0000,
            region: "memory[0]".into(),
        },
    );
    // An adjacent region does not help: an image must fit in one region.
    vm.memory.push(region(0x5000_0000, 0x1000, MapKind::Alloc));
    assert_eq!(problems(&vm, &ctx).len(), 1);
}

#[test]
fn image_overflow() {
    let mut vm = base();
    vm.memory
        .push(region(0x7fff_ffff_ffff_0000, 0x1_0000, MapKind::Alloc));
    vm.kernel.dtb.as_mut().unwrap().load_addr = 0x7fff_ffff_ffff_f000;
    vm.validate(&ctx()).unwrap();
    let ctx = ctx_with_sizes(&[("vm1-dtb", u64::MAX)]);
    assert_single(
        &vm,
        &ctx,
        "kernel.dtb",
        ProblemKind::Overflow {
            base: 0x7fff_ffff_ffff_f000,
            size: u64::MAX,
        },
    );
}

#[test]
fn images_overlap() {
    let vm = base();
    // kernel at 0x4008_0000, dtb at 0x4400_0000, initrd at 0x4800_0000.
    vm.validate(&ctx_with_sizes(&[
        ("hello", 0x3f8_0000),
        ("vm1-dtb", 0x1000),
    ]))
    .unwrap();
    let too_big = ctx_with_sizes(&[("hello", 0x3f8_0001)]);
    assert_eq!(
        lines(&problems(&vm, &too_big)),
        vec!["kernel.dtb: overlaps kernel ([0x40080000, 0x44000001))"]
    );
    // Two images at the same address overlap even when their sizes are unknown.
    let mut vm = base();
    vm.kernel.initrd.as_mut().unwrap().load_addr = 0x4400_0000;
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec!["kernel.dtb: overlaps kernel.initrd ([0x44000000, 0x44000001))"]
    );
}

#[test]
fn empty_image_names() {
    let mut vm = base();
    vm.kernel.image.clear();
    vm.kernel.initrd.as_mut().unwrap().image.clear();
    let found = problems(&vm, &ctx());
    assert_eq!(
        found,
        vec![
            ConfigProblem {
                field: "kernel.image".into(),
                kind: ProblemKind::Empty
            },
            ConfigProblem {
                field: "kernel.initrd.image".into(),
                kind: ProblemKind::Empty
            },
        ]
    );
}

#[test]
fn device_checks() {
    let mut vm = base();
    vm.devices[0].size = 0;
    assert_single(&vm, &ctx(), "devices[0].size", ProblemKind::ZeroSize);

    let mut vm = base();
    vm.devices.push(DeviceConfig {
        kind: DeviceKind::Ns16550,
        space: DeviceSpace::Mmio,
        base: 0x0900_0ff8,
        size: 8,
        irq: None,
        disk: None,
        net: None,
    });
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec!["devices[2]: overlaps devices[0] ([0x9000000, 0x9001000))"]
    );
    // Devices need no page alignment; adjacent ones are fine.
    vm.devices[2].base = 0x0900_1000;
    vm.validate(&ctx()).unwrap();

    vm.devices[2].base = 0x4fff_fffc;
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec!["devices[2]: overlaps memory[0] ([0x40000000, 0x50000000))"]
    );

    vm.devices[2].base = u64::MAX;
    assert_single(
        &vm,
        &ctx(),
        "devices[2]",
        ProblemKind::Overflow {
            base: u64::MAX,
            size: 8,
        },
    );
}

#[test]
fn passthrough_checks() {
    let mut vm = base();
    pt_mmio(&mut vm).size = 0;
    assert_single(&vm, &ctx(), "passthrough[0].size", ProblemKind::ZeroSize);

    let mut vm = base();
    vm.passthrough[0].name.clear();
    assert_single(&vm, &ctx(), "passthrough[0].name", ProblemKind::Empty);

    let mut vm = base();
    pt_mmio(&mut vm).base = 0x0904_0100;
    assert_single(
        &vm,
        &ctx(),
        "passthrough[0].base",
        ProblemKind::Misaligned {
            value: 0x0904_0100,
            align: 0x1000,
        },
    );

    let mut vm = base();
    pt_mmio(&mut vm).base = 0x0900_0000;
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec!["passthrough[0]: overlaps devices[0] ([0x9000000, 0x9001000))"]
    );

    pt_mmio(&mut vm).base = 0x4000_0000;
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec!["passthrough[0]: overlaps memory[0] ([0x40000000, 0x50000000))"]
    );

    let mut vm = base();
    vm.passthrough.push(vm.passthrough[0].clone());
    vm.passthrough[1].name = "uart1-again".into();
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec![
            "passthrough[1]: overlaps passthrough[0] ([0x9040000, 0x9041000))",
            "passthrough[1].irqs[0]: interrupt 40 is already used by passthrough[0].irqs[0]"
        ]
    );

    let mut vm = base();
    pt_mmio(&mut vm).base = 0xffff_ffff_ffff_f000;
    pt_mmio(&mut vm).size = 0x2000;
    assert_single(
        &vm,
        &ctx(),
        "passthrough[0]",
        ProblemKind::Overflow {
            base: 0xffff_ffff_ffff_f000,
            size: 0x2000,
        },
    );
}

#[test]
fn many_problems_at_once() {
    let mut vm = base();
    vm.name = "no spaces".into();
    vm.cpus.count = 0;
    vm.memory.push(region(0x4000_0000, 0, MapKind::Alloc));
    vm.kernel.entry = 0;
    vm.devices[0].size = 0;
    let found = problems(&vm, &ctx());
    let fields: Vec<_> = found.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "name",
            "cpus.count",
            "cpus.pin",
            "memory[1].size",
            "kernel.entry",
            "devices[0].size",
        ],
        "{:#?}",
        lines(&found)
    );
}

#[test]
fn display_texts() {
    let cases: Vec<(ProblemKind, &str)> = vec![
        (ProblemKind::Empty, "must not be empty"),
        (
            ProblemKind::Overlap {
                other: "memory[0]".into(),
                start: 0x4000_0000,
                end: 0x4100_0000,
            },
            "overlaps memory[0] ([0x40000000, 0x41000000))",
        ),
        (ProblemKind::ZeroSize, "size must not be 0"),
        (
            ProblemKind::ImageTooLarge {
                image: "k".into(),
                size: 0x2000,
                room: 0x1000,
                region: "memory[0]".into(),
            },
            "image `k` (0x2000 bytes) does not fit: memory[0] has only 0x1000 bytes from the load address to its end",
        ),
        (
            ProblemKind::DuplicateId {
                id: 4,
                vm: 2,
                first: 0,
            },
            "VM #2 uses id 4, already used by VM #0",
        ),
    ];
    for (kind, text) in cases {
        assert_eq!(kind.to_string(), text);
        let problem = ConfigProblem {
            field: "memory[1]".into(),
            kind,
        };
        assert_eq!(problem.to_string(), format!("memory[1]: {text}"));
    }
}

// ---------------------------------------------------------------- across VMs

#[test]
fn validate_many_duplicates() {
    let a = base();
    let mut b = base();
    b.id = 2;
    b.name = "other".into();
    b.passthrough.clear();
    validate_many(&[a.clone(), b.clone()]).unwrap();
    validate_many(&[]).unwrap();

    let mut c = base();
    c.name = "third".into(); // same id as a
    c.passthrough.clear();
    let mut d = base();
    d.id = 9; // same name as a
    d.passthrough.clear();
    let found = validate_many(&[a, b, c, d]).unwrap_err();
    assert_eq!(
        found,
        vec![
            ConfigProblem {
                field: "id".into(),
                kind: ProblemKind::DuplicateId {
                    id: 1,
                    vm: 2,
                    first: 0
                }
            },
            ConfigProblem {
                field: "name".into(),
                kind: ProblemKind::DuplicateName {
                    name: "hello".into(),
                    vm: 3,
                    first: 0
                }
            },
        ]
    );
    assert_eq!(found[0].vm(), Some(2));
    assert_eq!(found[1].vm(), Some(3));
    assert_eq!(
        found[1].to_string(),
        "name: VM #3 uses name `hello`, already used by VM #0"
    );
    assert_eq!(
        ConfigProblem {
            field: "name".into(),
            kind: ProblemKind::Empty
        }
        .vm(),
        None
    );
}

#[test]
fn validate_many_reports_each_later_duplicate() {
    let vms: Vec<VmConfig> = (0..3)
        .map(|_| VmConfig {
            passthrough: Vec::new(),
            ..base()
        })
        .collect();
    let found = validate_many(&vms).unwrap_err();
    assert_eq!(found.len(), 4); // ids and names of VMs 1 and 2, all against VM 0
    assert!(found.iter().all(|p| matches!(
        p.kind,
        ProblemKind::DuplicateId { first: 0, .. } | ProblemKind::DuplicateName { first: 0, .. }
    )));
}

// ---------------------------------------------------------------- memory kinds

#[test]
fn rom_kind_defaults_to_read_exec() {
    let vm = parse(&BASE.replace("map = \"alloc\"\n", "map = \"alloc\"\nkind = \"rom\"\n"));
    assert_eq!(vm.memory[0].kind, MemKind::Rom);
    assert_eq!(vm.memory[0].flags, MemKind::Rom.default_flags());
    assert!(!vm.memory[0].flags.write);
    // Images go into ROM: the hypervisor loads it, the guest only reads and runs it.
    vm.validate(&ctx()).unwrap();
    let err = parse_err(&BASE.replace("map = \"alloc\"\n", "map = \"alloc\"\nkind = \"flash\"\n"));
    assert!(err.message.contains("unknown variant `flash`"), "{err}");
}

#[test]
fn rom_must_be_alloc_and_read_only() {
    let mut vm = base();
    vm.memory[0].kind = MemKind::Rom;
    vm.memory[0].flags = MemFlags::ALL;
    assert_single(&vm, &ctx(), "memory[0].flags", ProblemKind::RomWritable);

    let mut vm = base();
    vm.memory.push(MemoryRegion {
        kind: MemKind::Rom,
        flags: MemKind::Rom.default_flags(),
        ..region(0x6000_0000, 0x1000, MapKind::Reserved)
    });
    assert_single(&vm, &ctx(), "memory[1].map", ProblemKind::RomNotAlloc);
    assert_eq!(
        ProblemKind::RomNotAlloc.to_string(),
        "a `rom` region must be `map = \"alloc\"` (the hypervisor loads it into memory it owns)"
    );
}

/// Before memory kinds, `flags = ["read", "exec"]` with an image passed the check and
/// failed at boot when the hypervisor loaded the image; now the check refuses it.
#[test]
fn image_in_read_only_ram_is_refused() {
    let vm = parse(&BASE.replace(
        "map = \"alloc\"\n",
        "map = \"alloc\"\nflags = [\"read\", \"exec\"]\n",
    ));
    let found = problems(&vm, &ctx());
    assert_eq!(found.len(), 3, "{:#?}", lines(&found)); // kernel, initrd, dtb
    assert_eq!(
        found[0],
        ConfigProblem {
            field: "kernel.load_addr".into(),
            kind: ProblemKind::ImageInReadOnlyRam {
                image: "hello".into(),
                region: "memory[0]".into()
            }
        }
    );
    assert_eq!(
        found[0].to_string(),
        "kernel.load_addr: image `hello` is in memory[0], RAM without the \"write\" flag; \
         make it `kind = \"rom\"` or add \"write\""
    );
}

#[test]
fn image_in_identity_region_is_refused() {
    let mut vm = base();
    vm.memory[0].map = MapKind::Identity;
    let found = problems(&vm, &ctx());
    assert_eq!(found.len(), 3, "{:#?}", lines(&found));
    assert_eq!(
        found[0].kind,
        ProblemKind::ImageInIdentity {
            image: "hello".into(),
            region: "memory[0]".into()
        }
    );
    // An identity region without images is fine for `validate` (the host check decides).
    vm.memory
        .push(region(0x6000_0000, 0x1000, MapKind::Identity));
    vm.memory[0].map = MapKind::Alloc;
    vm.validate(&ctx()).unwrap();
}

// ---------------------------------------------------------------- interrupts

#[test]
fn irq_needs_an_interrupt_controller() {
    let mut vm = base();
    vm.devices.retain(|d| d.kind != DeviceKind::GicDistributor);
    assert_eq!(vm.irq_lines(), None);
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec![
            "devices[0].irq: interrupt 33: the VM has no interrupt controller (add a `gicd`, `plic` or `ioapic` device)",
            "passthrough[0].irqs[0]: interrupt 40: the VM has no interrupt controller (add a `gicd`, `plic` or `ioapic` device)",
        ]
    );
}

#[test]
fn irq_must_be_a_line_of_the_vm_controller() {
    let mut vm = base();
    assert_eq!(vm.irq_lines().map(|(_, l)| l), Some(VGIC_SPI_LINES));
    vm.devices[0].irq = Some(128);
    vm.passthrough[0].irqs = vec![31];
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec![
            "devices[0].irq: interrupt 128 is not a line of the VM's GIC (its SPIs) (32..=127)",
            "passthrough[0].irqs[0]: interrupt 31 is not a line of the VM's GIC (its SPIs) (32..=127)",
        ]
    );

    // A PLIC has sources 1..=95.
    let mut vm = base();
    vm.devices[1] = DeviceConfig {
        kind: DeviceKind::Plic,
        space: DeviceSpace::Mmio,
        base: 0x0c00_0000,
        size: VPLIC_WINDOW_SIZE,
        irq: None,
        disk: None,
        net: None,
    };
    vm.devices[0].irq = Some(95);
    vm.passthrough[0].irqs = vec![1];
    vm.validate(&ctx()).unwrap();
    vm.devices[0].irq = Some(0);
    vm.passthrough[0].irqs = vec![96];
    let found = problems(&vm, &ctx());
    assert_eq!(found.len(), 2, "{:#?}", lines(&found));
    assert!(matches!(
        found[1].kind,
        ProblemKind::IrqOutOfRange { irq: 96, ref lines, .. } if *lines == VPLIC_SOURCES
    ));
}

/// The interrupt controller's windows have the sizes the hypervisor emulates; before, a
/// wrong one passed the check and the boot refused the VM (or its device set overlapped).
#[test]
fn controller_windows_have_the_emulated_sizes() {
    let part = |kind, base, size| DeviceConfig {
        space: DeviceSpace::Mmio,
        kind,
        base,
        size,
        irq: None,
        disk: None,
        net: None,
    };
    let mut vm = base(); // 2 vCPUs
    vm.devices[1].size = 0x1000;
    vm.devices
        .push(part(DeviceKind::GicCpuInterface, 0x0801_0000, 0x1000));
    vm.devices
        .push(part(DeviceKind::GicRedistributor, 0x080a_0000, 0x2_0000));
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec![
            "devices[1].size: size 0x1000: the register window is 0x10000 bytes",
            "devices[2].size: size 0x1000: the smallest register window is 0x2000 bytes",
            "devices[3].size: size 0x20000: the smallest register window is 0x40000 bytes",
        ]
    );
    vm.devices[1].size = VGIC_GICD_SIZE;
    vm.devices[2].size = VGIC_GICC_SIZE;
    vm.devices[3].size = 2 * VGIC_GICR_FRAME_SIZE;
    vm.validate(&ctx()).unwrap();

    // gicc and gicr are parts of a GIC.
    vm.devices.remove(1);
    vm.devices[0].irq = None;
    vm.passthrough.clear();
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec![
            "devices[1].kind: a GIC part needs the VM's GIC distributor: add a `gicd` device",
            "devices[2].kind: a GIC part needs the VM's GIC distributor: add a `gicd` device",
        ]
    );

    let mut vm = base();
    vm.devices[1] = part(DeviceKind::Plic, 0x0c00_0000, 0x60_0000);
    assert_single(
        &vm,
        &ctx(),
        "devices[1].size",
        ProblemKind::ControllerWindowSize {
            size: 0x60_0000,
            need: VPLIC_WINDOW_SIZE,
            at_least: false,
        },
    );
}

#[test]
fn forwarded_irq_is_the_vm_alone() {
    let mut vm = base();
    vm.passthrough[0].irqs = vec![33, 41, 41];
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec![
            "passthrough[0].irqs[0]: interrupt 33 is already used by devices[0].irq",
            "passthrough[0].irqs[2]: interrupt 41 is already used by passthrough[0].irqs[1]",
        ]
    );
    // Two emulated devices may share a line.
    let mut vm = base();
    vm.devices.push(DeviceConfig {
        kind: DeviceKind::Ns16550,
        space: DeviceSpace::Mmio,
        base: 0x0a00_0000,
        size: 0x100,
        irq: Some(33),
        disk: None,
        net: None,
    });
    vm.validate(&ctx()).unwrap();
}

// ---------------------------------------------------------------- the host

/// QEMU virt (aarch64) as `xtask vmconfig check` describes it, roughly.
fn virt_host() -> HostFacts {
    HostFacts {
        arch: Some(HostArch::Aarch64),
        ranges: vec![
            HostRange::new(0x4000_0000, 0x1_0000_0000, HostUse::HypervisorRam),
            HostRange::new(0x0900_0000, 0x1000, HostUse::Console),
            HostRange::new(0x0800_0000, 0x2_0000, HostUse::InterruptController),
        ],
        ports: Vec::new(),
        irq_lines: Some(32..288),
        vmids: Some(255),
    }
}

#[test]
fn host_facts_unknown_check_nothing() {
    let mut vm = base();
    vm.memory
        .push(region(0x0900_0000, 0x1000, MapKind::Identity));
    vm.devices[0].base = 0x0a00_0000;
    vm.validate(&ctx()).unwrap();
    vm.validate_host(&HostFacts::default()).unwrap();
}

#[test]
fn identity_and_passthrough_must_not_take_host_ranges() {
    let mut vm = base();
    vm.memory[0].gpa = 0x5000_0000; // images move out of it: only the overlap matters
    vm.memory
        .push(region(0x4000_0000, 0x1000_0000, MapKind::Identity));
    pt_mmio(&mut vm).base = 0x0900_0000;
    vm.devices[0].base = 0x0a00_0000;
    let found = vm.validate_host(&virt_host()).unwrap_err();
    assert_eq!(
        lines(&found),
        vec![
            "memory[1]: overlaps the hypervisor's RAM ([0x40000000, 0x140000000))",
            "passthrough[0]: overlaps the hypervisor's console UART ([0x9000000, 0x9001000))",
        ]
    );
    pt_mmio(&mut vm).base = 0x0801_f000;
    assert_eq!(
        vm.validate_host(&virt_host()).unwrap_err()[1].kind,
        ProblemKind::HostOverlap {
            what: HostUse::InterruptController,
            start: 0x0800_0000,
            end: 0x0802_0000
        }
    );
    // Outside every host range: accepted.
    let mut vm = base();
    vm.memory
        .push(region(0x1000_0000, 0x1000, MapKind::Identity));
    vm.validate_host(&virt_host()).unwrap();
}

#[test]
fn interrupt_controller_is_the_host_architecture_kind() {
    let vm = base(); // a gicd
    vm.validate_host(&virt_host()).unwrap();
    let riscv = HostFacts {
        arch: Some(HostArch::Riscv64),
        ..HostFacts::default()
    };
    assert_eq!(
        vm.validate_host(&riscv).unwrap_err(),
        vec![ConfigProblem {
            field: "devices[1].kind".into(),
            kind: ProblemKind::DeviceNotOnArch {
                kind: "gicd",
                arch: HostArch::Riscv64
            }
        }]
    );
    let mut vm = base();
    vm.devices[1].kind = DeviceKind::Plic;
    vm.devices[1].size = VPLIC_WINDOW_SIZE;
    vm.devices[1].base = 0x0c00_0000;
    vm.validate_host(&riscv).unwrap();
    assert_eq!(
        lines(&vm.validate_host(&virt_host()).unwrap_err()),
        vec![
            "devices[1].kind: `plic` is not an interrupt controller of aarch64 VMs \
             (aarch64: `gicd`, `gicc`, `gicr`; riscv64: `plic`)"
        ]
    );
    assert!(HostArch::Aarch64.has_device(DeviceKind::Ns16550));
    assert_eq!(HostArch::from_name("x86_64"), Some(HostArch::X86_64));
    assert_eq!(HostArch::from_name("x86"), None);
}

#[test]
fn passthrough_irq_must_be_a_host_line() {
    let mut vm = base();
    vm.passthrough[0].irqs = vec![40, 300];
    assert_eq!(
        lines(&vm.validate_host(&virt_host()).unwrap_err()),
        vec![
            "passthrough[0].irqs[1]: interrupt 300 is not a device interrupt of the host's interrupt controller (32..=287)"
        ]
    );
}

#[test]
fn host_ranges_belong_to_one_vm() {
    let a = base();
    let mut b = base();
    b.id = 2;
    b.name = "b".into();
    b.memory
        .push(region(0x0904_0000, 0x2000, MapKind::Identity));
    pt_mmio(&mut b).base = 0x0905_0000;
    let found = validate_many_on(&[a, b], &HostFacts::default()).unwrap_err();
    assert_eq!(
        found,
        vec![ConfigProblem {
            field: "memory[1]".into(),
            kind: ProblemKind::OtherVmOverlap {
                vm: 1,
                other_vm: 0,
                other: "passthrough[0]".into(),
                start: 0x0904_0000,
                end: 0x0904_1000
            }
        }]
    );
    assert_eq!(found[0].vm(), Some(1));
    assert_eq!(
        found[0].to_string(),
        "memory[1]: VM #1 overlaps passthrough[0] of VM #0 ([0x9040000, 0x9041000)); \
         a host range belongs to one VM"
    );
}

#[test]
fn more_vms_than_vmids() {
    let vms: Vec<VmConfig> = (0..4u32)
        .map(|i| VmConfig {
            id: i,
            name: format!("vm{i}"),
            passthrough: Vec::new(),
            ..base()
        })
        .collect();
    let host = HostFacts {
        vmids: Some(3),
        ..HostFacts::default()
    };
    let found = validate_many_on(&vms, &host).unwrap_err();
    assert_eq!(
        found,
        vec![ConfigProblem {
            field: "id".into(),
            kind: ProblemKind::NoVmid { vm: 3, vmids: 3 }
        }]
    );
    assert_eq!(found[0].vm(), Some(3));
    validate_many_on(&vms[..3], &host).unwrap();
}

// ---------------------------------------------------------------- robustness

/// A tiny deterministic generator, so the mutation test needs no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_inputs_never_panic() {
    let alphabet = b"[]{}=\",.#\n 0x_-19azAZ\\'";
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let ctx = ValidateContext {
        pcpu_count: Some(4),
        image_sizes: BTreeMap::from([
            ("hello".to_string(), u64::MAX),
            ("initramfs".to_string(), 0),
        ]),
    };
    for source in [BASE, AARCH64_HELLO, INVALID_EXAMPLE] {
        for _ in 0..400 {
            let mut bytes = source.as_bytes().to_vec();
            for _ in 0..(rng.next() % 4 + 1) {
                let at = (rng.next() as usize) % bytes.len();
                let byte = alphabet[(rng.next() as usize) % alphabet.len()];
                match rng.next() % 3 {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            match from_toml(&text) {
                Ok(vm) => {
                    let _ = vm.validate(&ctx);
                    let _ = validate_many(&[vm.clone(), vm]);
                }
                Err(err) => {
                    let _ = err.to_string();
                }
            }
        }
    }
}

#[test]
fn extreme_values_never_panic() {
    let mut vm = base();
    vm.cpus.count = usize::MAX;
    vm.cpus.pin = vec![usize::MAX; 3];
    vm.memory = vec![
        region(u64::MAX, u64::MAX, MapKind::Alloc),
        region(0, u64::MAX, MapKind::Identity),
        region(u64::MAX - 0xfff, 0x1000, MapKind::Alloc),
    ];
    vm.kernel.entry = u64::MAX;
    vm.kernel.load_addr = u64::MAX;
    vm.devices[0].base = u64::MAX;
    vm.devices[0].size = u64::MAX;
    pt_mmio(&mut vm).size = u64::MAX;
    let ctx = ValidateContext {
        pcpu_count: Some(0),
        image_sizes: BTreeMap::from([
            ("hello".to_string(), u64::MAX),
            ("vm1-dtb".to_string(), u64::MAX),
            ("initramfs".to_string(), 1),
        ]),
    };
    let found = problems(&vm, &ctx);
    assert!(!found.is_empty());
    let _ = lines(&found);
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for (open, close) in [("[", "]"), ("{a=", "}")] {
        let text = format!("id = {}1{}", open.repeat(100_000), close.repeat(100_000));
        let err = parse_err(&text);
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn interrupt_controller_kinds_and_generated_dtb() {
    let text = std::format!(
        "{AARCH64_HELLO}\n[[devices]]\nkind = \"gicd\"\nbase = 0x0800_0000\nsize = 0x1_0000\n\n[[devices]]\nkind = \"gicc\"\nbase = 0x0801_0000\nsize = 0x2000\n\n[[devices]]\nkind = \"gicd\"\nbase = 0x0810_0000\nsize = 0x1_0000\n"
    );
    let text = text.replace(
        "entry = 0x4000_0000",
        "entry = 0x4000_0000\ndtb = { load_addr = 0x40f0_0000 }",
    );
    let vm = from_toml(&text).unwrap();
    assert!(vm.devices[1].kind.is_interrupt_controller());
    assert!(!vm.devices[0].kind.is_interrupt_controller());
    let dtb = vm.kernel.dtb.as_ref().unwrap();
    assert!(dtb.generated());
    assert_eq!(dtb.image_name(), DtbConfig::GENERATED);
    assert_single(
        &vm,
        &ctx(),
        "devices[3].kind",
        ProblemKind::DuplicateDevice {
            kind: "gicd",
            first: "devices[1]".into(),
        },
    );
}

// ---------------------------------------------------------------- I/O ports

/// An x86 VM's devices: a 16550 at COM1's ports and one in memory.
const X86_DEVICES: &str = r#"
[[devices]]
kind = "ns16550"
port = 0x3f8

[[devices]]
kind = "ns16550"
base = 0x3f8
size = 0x100
"#;

fn x86(devices: &str) -> VmConfig {
    let text = BASE.split("[[devices]]").next().unwrap().replace(
        "dtb = { image = \"vm1-dtb\", load_addr = 0x4400_0000 }\n",
        "",
    );
    parse(&format!("{text}{devices}"))
}

fn x86_host() -> HostFacts {
    HostFacts {
        arch: Some(HostArch::X86_64),
        ranges: Vec::new(),
        ports: HostArch::X86_64.host_ports().to_vec(),
        irq_lines: None,
        vmids: None,
    }
}

#[test]
fn port_devices_parse_with_eight_ports() {
    let vm = x86(X86_DEVICES);
    let d = &vm.devices[0];
    assert_eq!((d.space, d.base, d.size), (DeviceSpace::Port, 0x3f8, 8));
    assert_eq!(d.port(), Some(0x3f8));
    // The same number in memory is another space: no overlap.
    assert_eq!(vm.devices[1].space, DeviceSpace::Mmio);
    assert_eq!(vm.devices[1].port(), None);
    vm.validate(&ctx()).unwrap();
    vm.validate_host(&x86_host()).unwrap();
    // A size in ports may be given.
    let vm = x86("[[devices]]\nkind = \"ns16550\"\nport = 0x2f8\nsize = 16\n");
    assert_eq!(vm.devices[0].size, 16);
}

#[test]
fn port_device_forms_are_checked_when_parsed() {
    let text = |devices: &str| {
        let mut t = BASE.split("[[devices]]").next().unwrap().to_string();
        t.push_str(devices);
        t
    };
    let err = parse_err(&text(
        "[[devices]]\nkind = \"ns16550\"\nport = 0x3f8\nbase = 0x1000\nsize = 8\n",
    ));
    assert!(
        err.message
            .contains("either `base` and `size` (MMIO) or `port`"),
        "{err}"
    );
    let err = parse_err(&text("[[devices]]\nkind = \"pl011\"\nport = 0x3f8\n"));
    assert!(
        err.message.contains("`pl011` device has no I/O-port form"),
        "{err}"
    );
    let err = parse_err(&text("[[devices]]\nkind = \"ns16550\"\nirq = 4\n"));
    assert!(err.message.contains("missing field `base`"), "{err}");
    let err = parse_err(&text("[[devices]]\nkind = \"ns16550\"\nbase = 0x1000\n"));
    assert!(err.message.contains("missing field `size`"), "{err}");
    let err = parse_err(&text(
        "[[devices]]\nkind = \"ns16550\"\nport = 0x3f8\nbad = 1\n",
    ));
    assert!(err.message.contains("unknown field `bad`"), "{err}");
}

#[test]
fn ports_stay_in_the_port_space_and_do_not_overlap() {
    let vm = x86("[[devices]]\nkind = \"ns16550\"\nport = 0xfffc\n");
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec!["devices[0].port: ports 0xfffc..0x10004 run past the last port (0xffff)"]
    );
    let vm = x86("[[devices]]\nkind = \"ns16550\"\nport = 0xfff8\n");
    vm.validate(&ctx()).unwrap();
    let vm = x86("[[devices]]\nkind = \"ns16550\"\nport = 0x3f8\n\n[[devices]]\nkind = \"ns16550\"\nport = 0x3fc\n");
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec!["devices[1]: overlaps devices[0] ([0x3f8, 0x400))"]
    );
    let vm = x86("[[devices]]\nkind = \"ns16550\"\nport = 0x3f8\nsize = 0\n");
    assert_single(&vm, &ctx(), "devices[0].size", ProblemKind::ZeroSize);
}

#[test]
fn only_x86_64_has_ports() {
    let vm = x86(X86_DEVICES);
    let aarch64 = HostFacts {
        arch: Some(HostArch::Aarch64),
        ..x86_host()
    };
    assert_eq!(
        lines(&vm.validate_host(&aarch64).unwrap_err()),
        vec![
            "devices[0].port: aarch64 VMs have no I/O ports (only x86_64 ones do): give the \
             device `base` and `size`"
        ]
    );
    assert!(HostArch::X86_64.has_port_io());
    assert!(!HostArch::Riscv64.has_port_io());
    assert!(HostArch::X86_64.has_device(DeviceKind::Ns16550));
    assert!(!HostArch::X86_64.has_device(DeviceKind::GicDistributor));
    assert!(!HostArch::X86_64.has_device(DeviceKind::Plic));
}

#[test]
fn x86_64_has_no_generated_device_tree() {
    let vm = x86(X86_DEVICES);
    vm.validate_host(&x86_host()).unwrap();
    let mut generated = vm.clone();
    generated.kernel.dtb = Some(DtbConfig {
        image: None,
        load_addr: 0x4400_0000,
    });
    assert_eq!(
        lines(&generated.validate_host(&x86_host()).unwrap_err()),
        vec![
            "kernel.dtb: the hypervisor generates no device tree for x86_64 VMs: give a DTB \
             `image` or remove `kernel.dtb`"
        ]
    );
    assert!(HostArch::Aarch64.has_device_tree() && HostArch::Riscv64.has_device_tree());
}

// ---------------------------------------------------------------- passthrough ports (x86_64)

/// An x86 VM with a COM1 port device, given `passthrough`.
fn x86_pt(passthrough: &str) -> VmConfig {
    x86(&format!(
        "[[devices]]\nkind = \"ns16550\"\nport = 0x3f8\n\n{passthrough}"
    ))
}

#[test]
fn passthrough_ports_parse() {
    let vm = x86_pt("[[passthrough]]\nname = \"com2\"\nports = [[0x2f8, 8], [0x3e8, 8]]\n");
    let pt = &vm.passthrough[0];
    assert_eq!(pt.mmio, None);
    assert_eq!(
        pt.ports,
        vec![
            PortRange {
                port: 0x2f8,
                count: 8
            },
            PortRange {
                port: 0x3e8,
                count: 8
            }
        ]
    );
    assert_eq!(pt.ports[0].ports(), Some(0x2f8..0x300));
    vm.validate(&ctx()).unwrap();
    vm.validate_host(&x86_host()).unwrap();
    // Ports and a physical range together.
    let vm = x86_pt(
        "[[passthrough]]\nname = \"hpet\"\nbase = 0xfed0_0000\nsize = 0x1000\nports = [[0x2f8, 8]]\n",
    );
    assert_eq!(
        vm.passthrough[0].mmio,
        Some(MmioRange {
            base: 0xfed0_0000,
            size: 0x1000
        })
    );
    vm.validate(&ctx()).unwrap();
    assert_eq!(
        vm.host_ports().collect::<Vec<_>>(),
        vec![("passthrough[0].ports[0]".to_string(), 0x2f8, 0x300)]
    );
    assert_eq!(
        vm.host_ranges().collect::<Vec<_>>(),
        vec![("passthrough[0]".to_string(), 0xfed0_0000, 0xfed0_1000)]
    );
}

#[test]
fn passthrough_forms_are_checked_when_parsed() {
    let err = parse_err(&x86_text("[[passthrough]]\nname = \"x\"\n"));
    assert!(
        err.message
            .contains("needs `base` and `size` (a physical range), `ports`"),
        "{err}"
    );
    let err = parse_err(&x86_text("[[passthrough]]\nname = \"x\"\nbase = 0x1000\n"));
    assert!(err.message.contains("missing field `size`"), "{err}");
    let err = parse_err(&x86_text("[[passthrough]]\nname = \"x\"\nsize = 0x1000\n"));
    assert!(err.message.contains("missing field `base`"), "{err}");
    let err = parse_err(&x86_text(
        "[[passthrough]]\nname = \"x\"\nports = [[0x2f8, 8, 1]]\n",
    ));
    assert!(
        err.message
            .contains("a port range is `[first port, number of ports]`, not 3 number(s)"),
        "{err}"
    );
    let err = parse_err(&x86_text("[[passthrough]]\nname = \"x\"\nport = 0x2f8\n"));
    assert!(err.message.contains("unknown field `port`"), "{err}");
}

/// The x86 base text with `tail` appended (no devices).
fn x86_text(tail: &str) -> String {
    let mut t = BASE.split("[[devices]]").next().unwrap().to_string();
    t.push_str(tail);
    t
}

#[test]
fn passthrough_ports_are_checked() {
    let vm = x86_pt("[[passthrough]]\nname = \"x\"\nports = [[0xfff8, 9], [0x2f8, 0]]\n");
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec![
            "passthrough[0].ports[0]: ports 0xfff8..0x10001 run past the last port (0xffff)",
            "passthrough[0].ports[1]: size must not be 0",
        ]
    );
    let vm = x86_pt("[[passthrough]]\nname = \"x\"\nports = [[0xffff_ffff_ffff_fff0, 0x20]]\n");
    assert_eq!(
        problems(&vm, &ctx())[0].kind,
        ProblemKind::PortOutOfRange {
            port: 0xffff_ffff_ffff_fff0,
            ports: 0x20
        }
    );
    // Not the VM's emulated port devices, and not twice.
    let vm = x86_pt(
        "[[passthrough]]\nname = \"x\"\nports = [[0x3fc, 2]]\n\n[[passthrough]]\nname = \"y\"\nports = [[0x2f8, 8], [0x2f0, 9]]\n",
    );
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec![
            "passthrough[1].ports[1]: overlaps passthrough[1].ports[0] ([0x2f8, 0x300))",
            "passthrough[0].ports[0]: overlaps devices[0] ([0x3f8, 0x400))",
        ]
    );
}

#[test]
fn passthrough_ports_are_not_the_hosts() {
    for (port, what) in [
        (0x3f8, "the hypervisor's console UART"),
        (0x20, "the host interrupt controller"),
        (0xa1, "the host interrupt controller"),
        (0x43, "the host's interval timer (PIT)"),
        (0x61, "the host's interval timer (PIT)"),
        (0x70, "the host's CMOS RTC"),
        (0x64, "a machine reset port"),
        (0x92, "a machine reset port"),
        (0xcf9, "the host's PCI configuration ports"),
        (0xcfe, "the host's PCI configuration ports"),
        (0x8900, "the host's power-off ports"),
    ] {
        let vm = x86(&format!(
            "[[passthrough]]\nname = \"x\"\nports = [[{port:#x}, 1]]\n"
        ));
        vm.validate(&ctx()).unwrap();
        let found = lines(&vm.validate_host(&x86_host()).unwrap_err());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("passthrough[0].ports[0]: overlaps ports ")
                && found[0].ends_with(&format!("which the hypervisor keeps ({what})")),
            "{port:#x}: {found:?}"
        );
    }
    let vm = x86("[[passthrough]]\nname = \"x\"\nports = [[0x3f0, 9]]\n");
    assert_eq!(
        lines(&vm.validate_host(&x86_host()).unwrap_err()),
        vec![
            "passthrough[0].ports[0]: overlaps ports 0x3f8..0x400, which the hypervisor keeps \
             (the hypervisor's console UART)"
        ]
    );
    // Next to them is fine.
    let vm = x86("[[passthrough]]\nname = \"x\"\nports = [[0x3f0, 8], [0x2f8, 8], [0xd00, 8]]\n");
    vm.validate_host(&x86_host()).unwrap();
    // Only x86 has ports: elsewhere the host check refuses them.
    let aarch64 = HostFacts {
        arch: Some(HostArch::Aarch64),
        ..HostFacts::default()
    };
    assert_eq!(
        lines(&vm.validate_host(&aarch64).unwrap_err()),
        vec![
            "passthrough[0].ports: aarch64 VMs have no I/O ports (only x86_64 ones do): give the \
             device `base` and `size`"
        ]
    );
    assert!(HostArch::Riscv64.host_ports().is_empty());
}

#[test]
fn x86_64_vms_take_no_passthrough_interrupts_yet() {
    let vm = x86("[[passthrough]]\nname = \"com2\"\nports = [[0x2f8, 8]]\nirqs = [3]\n");
    let found = lines(&vm.validate_host(&x86_host()).unwrap_err());
    assert_eq!(
        found,
        vec![
            "passthrough[0].irqs: the hypervisor forwards no passthrough interrupts to x86_64 \
             VMs yet: remove `irqs`"
        ]
    );
    assert!(HostArch::Aarch64.forwards_passthrough_irqs());
    assert!(HostArch::Riscv64.forwards_passthrough_irqs());
    assert!(!HostArch::X86_64.forwards_passthrough_irqs());
}

#[test]
fn passthrough_ports_belong_to_one_vm() {
    let a = x86("[[passthrough]]\nname = \"com2\"\nports = [[0x2f8, 8]]\n");
    let mut b = x86("[[passthrough]]\nname = \"thief\"\nports = [[0x2fc, 1]]\n");
    b.id = 2;
    b.name = "thief".into();
    assert_eq!(
        lines(&validate_many_on(&[a.clone(), b.clone()], &x86_host()).unwrap_err()),
        vec![
            "passthrough[0].ports[0]: VM #1 overlaps passthrough[0].ports[0] of VM #0 \
             ([0x2f8, 0x300)); a host range belongs to one VM"
        ]
    );
    b.passthrough[0].ports[0].port = 0x300;
    validate_many_on(&[a, b], &x86_host()).unwrap();
}

// ---------------------------------------------------------------- kernel formats

/// An x86_64 Linux VM booted from a bzImage (`configs/vms/x86_64-linux.toml`, smaller).
const BZIMAGE: &str = r#"
id = 1
name = "linux"
[cpus]
count = 1
pin = [1]
[kernel]
image = "linux"
format = "linux-bzimage"
load_addr = 0x100_0000
cmdline = "console=ttyS0"
initrd = { image = "linux-initramfs", load_addr = 0x600_0000 }
[[memory]]
gpa = 0
size = 0x800_0000
map = "alloc"
"#;

#[test]
fn kernel_format_defaults_to_raw_and_bzimage_enters_at_0x200() {
    let raw = base();
    assert_eq!(raw.kernel.format, KernelFormat::Raw);
    assert_eq!(raw.kernel.entry, raw.kernel.load_addr);
    let vm = parse(BZIMAGE);
    assert_eq!(vm.kernel.format, KernelFormat::LinuxBzimage);
    assert_eq!(vm.kernel.format.name(), "linux-bzimage");
    assert_eq!(
        vm.kernel.entry, 0x100_0200,
        "entry defaults to the 64-bit entry"
    );
    vm.validate(&ctx_with_sizes(&[
        ("linux", 8_222_656),
        ("linux-initramfs", 1_984_512),
    ]))
    .unwrap();
    let x86 = HostFacts {
        arch: Some(HostArch::X86_64),
        ..HostFacts::default()
    };
    vm.validate_host(&x86).unwrap();
    // Given explicitly, the entry must be the 64-bit one.
    let given = parse(&BZIMAGE.replace(
        "load_addr = 0x100_0000",
        "load_addr = 0x100_0000\nentry = 0x100_0200",
    ));
    assert_eq!(given, vm);
}

#[test]
fn kernel_format_checks() {
    let wrong_entry = BZIMAGE.replace(
        "load_addr = 0x100_0000",
        "load_addr = 0x100_0000\nentry = 0x100_0000",
    );
    assert_single(
        &parse(&wrong_entry),
        &ctx(),
        "kernel.entry",
        ProblemKind::EntryNotFormatEntry {
            format: "linux-bzimage",
            expected: 0x100_0200,
        },
    );
    let with_dtb = BZIMAGE.replace(
        "cmdline =",
        "dtb = { image = \"x\", load_addr = 0x700_0000 }\ncmdline =",
    );
    assert_single(
        &parse(&with_dtb),
        &ctx(),
        "kernel.dtb",
        ProblemKind::NotWithFormat {
            format: "linux-bzimage",
        },
    );
    // Only x86_64 boots a bzImage.
    let vm = parse(BZIMAGE);
    let found = vm.validate_host(&virt_host()).unwrap_err();
    assert_eq!(
        lines(&found),
        ["kernel.format: aarch64 VMs do not boot `linux-bzimage` kernels"]
    );
    assert_eq!(
        lines(&problems(&parse(&wrong_entry), &ctx())),
        ["kernel.entry: a `linux-bzimage` kernel is entered at 0x1000200 (its load address + the format's entry offset); give that, or leave `entry` out"]
    );
    // Unknown formats are parse errors naming the field.
    let err = parse_err(&BZIMAGE.replace("linux-bzimage", "elf"));
    assert!(err.to_string().contains("format"), "{err}");
}

/// An x86_64 VM with an `ioapic` and a UART on its input 4.
fn pc_config(ioapic_size: &str, irq: u32) -> VmConfig {
    parse(&format!(
        "id = 1\nname = \"pc\"\n[cpus]\ncount = 1\npin = [0]\n[kernel]\nimage = \"hello\"\n\
         load_addr = 0x10_0000\n[[memory]]\ngpa = 0\nsize = 0x100_0000\nmap = \"alloc\"\n\
         [[devices]]\nkind = \"ioapic\"\nbase = 0xFEC0_0000\nsize = {ioapic_size}\n\
         [[devices]]\nkind = \"ns16550\"\nport = 0x3F8\nirq = {irq}\n"
    ))
}

/// An x86_64 VM's `ioapic`: its window is 4 KiB, it takes device interrupts 0..=23, it is
/// x86_64's only.
#[test]
fn ioapic_device() {
    let ok = pc_config("0x1000", 4);
    assert_eq!(ok.devices[0].kind, DeviceKind::Ioapic);
    assert_eq!(ok.irq_lines(), Some(("the VM's I/O APIC", VIOAPIC_PINS)));
    assert!(
        problems(&ok, &ctx()).is_empty(),
        "{:?}",
        problems(&ok, &ctx())
    );
    assert_single(
        &pc_config("0x2000", 4),
        &ctx(),
        "devices[0].size",
        ProblemKind::ControllerWindowSize {
            size: 0x2000,
            need: VIOAPIC_WINDOW_SIZE,
            at_least: false,
        },
    );
    assert_eq!(
        lines(&problems(&pc_config("0x1000", 24), &ctx())),
        ["devices[1].irq: interrupt 24 is not a line of the VM's I/O APIC (0..=23)"]
    );
    // Without the I/O APIC, an x86 device's interrupt has no controller.
    let mut bare = ok.clone();
    bare.devices.remove(0);
    assert_eq!(
        lines(&problems(&bare, &ctx())),
        ["devices[0].irq: interrupt 4: the VM has no interrupt controller (add a `gicd`, `plic` or `ioapic` device)"]
    );
    assert!(HostArch::X86_64.has_device(DeviceKind::Ioapic));
    assert!(!HostArch::Aarch64.has_device(DeviceKind::Ioapic));
    assert!(!HostArch::Riscv64.has_device(DeviceKind::Ioapic));
}

#[test]
fn image_paths_are_relative_to_the_config_file() {
    use crate::image_path;
    assert_eq!(image_path("/vms/hello.toml", "hello.bin"), "/vms/hello.bin");
    assert_eq!(
        image_path("/vms/hello.toml", "../images/hello.bin"),
        "/images/hello.bin"
    );
    assert_eq!(image_path("/vms/a/b.toml", "./x/../y.bin"), "/vms/a/y.bin");
    assert_eq!(
        image_path("/vms/hello.toml", "/images/k.bin"),
        "/images/k.bin"
    );
    // `..` stops at the root; a config at the root; nothing left is the root.
    assert_eq!(image_path("/vms/hello.toml", "../../../k.bin"), "/k.bin");
    assert_eq!(image_path("/hello.toml", "k.bin"), "/k.bin");
    assert_eq!(image_path("/vms/hello.toml", ".."), "/");
}

#[test]
fn image_fields_in_order() {
    let text = r#"
id = 1
name = "x"
[cpus]
count = 1
pin = [0]
[kernel]
image = "k.bin"
load_addr = 0x4000_0000
initrd = { image = "../i.bin", load_addr = 0x4100_0000 }
dtb = { load_addr = 0x4200_0000 }
[[memory]]
gpa = 0x4000_0000
size = 0x400_0000
map = "alloc"
"#;
    let config = crate::from_toml(text).unwrap();
    assert_eq!(
        crate::image_fields(&config),
        [
            ("kernel.image", "k.bin".into()),
            ("kernel.initrd.image", "../i.bin".into())
        ]
    );
}

#[test]
fn virtio_console_has_a_default_size_and_goes_on_every_arch() {
    let entry = "[[devices]]\nkind = \"virtio-console\"\nbase = 0x0a00_0000\nirq = 48\n";
    let vm = parse(&alloc::format!("{BASE}\n{entry}"));
    let dev = vm.devices.last().unwrap();
    assert_eq!(dev.kind, DeviceKind::VirtioConsole);
    assert!(dev.kind.is_virtio() && !dev.kind.is_interrupt_controller());
    assert_eq!(dev.size, VIRTIO_MMIO_SIZE);
    assert!(
        problems(&vm, &ctx()).is_empty(),
        "{:?}",
        lines(&problems(&vm, &ctx()))
    );
    let mut wrong = vm.clone();
    wrong.devices.last_mut().unwrap().size = 0x1000;
    assert!(lines(&problems(&wrong, &ctx()))
        .iter()
        .any(|l| l.contains("register window is 0x200 bytes")));
    assert!(HostArch::Aarch64.has_device(DeviceKind::VirtioConsole));
    assert!(HostArch::Riscv64.has_device(DeviceKind::VirtioConsole));
    assert!(HostArch::X86_64.has_device(DeviceKind::VirtioConsole));
    assert!(HostArch::X86_64.has_device(DeviceKind::VirtioBlk));
    assert!(HostArch::X86_64.has_device(DeviceKind::VirtioNet));
}

/// A `virtio-blk` entry: its `file` (absolute, required) and `read_only` (default false),
/// and neither on any other kind, each refusal naming the field's entry.
#[test]
fn virtio_blk_backing_fields() {
    let blk = |fields: &str| {
        BASE.replace(
            "kind = \"pl011\"",
            &format!("kind = \"virtio-blk\"\n{fields}"),
        )
    };
    let vm = parse(&blk("file = \"/vms/disk.img\""));
    assert_eq!(
        vm.devices[0].disk,
        Some(DiskBacking {
            source: DiskSource::File("/vms/disk.img".into()),
            read_only: false
        })
    );
    let vm = parse(&blk("file = \"/d.img\"\nread_only = true"));
    assert!(vm.devices[0].disk.as_ref().unwrap().read_only);
    for (fields, message) in [
        (
            "",
            "missing field `file` (the disk image on the hypervisor's disk, e.g. \"/vms/disk.img\") \
             or `backing` (a region of a host disk, e.g. { disk = \"data\", offset = 0, size = 0x100000 })",
        ),
        (
            "file = \"/d.img\"\nbacking = { disk = \"data\", offset = 0, size = 512 }",
            "a `virtio-blk` has either `file` or `backing`, not both",
        ),
        (
            "backing = { disk = \"data\", offset = 0 }",
            "a `backing` needs `offset` and `size` (bytes of the disk) or `partition` (a whole MBR partition, 1 to 4)",
        ),
        (
            "backing = { disk = \"data\", offset = 0, size = 512, serial = 1 }",
            "unknown field `serial`, expected one of `disk`, `offset`, `size`, `partition`",
        ),
        (
            "file = \"disk.img\"",
            "`file` is a path on the hypervisor's disk starting with '/' (e.g. \"/vms/disk.img\")",
        ),
        ("file = 3", "invalid type: integer `3`, expected a string"),
    ] {
        let err = parse_err(&blk(fields));
        assert_eq!(err.message, message, "{fields}");
        assert!(err.line.is_some());
    }
    for fields in [
        "file = \"/d.img\"",
        "read_only = false",
        "backing = { disk = \"data\", offset = 0, size = 512 }",
    ] {
        let err =
            parse_err(&BASE.replace("kind = \"pl011\"", &format!("kind = \"pl011\"\n{fields}")));
        assert_eq!(
            err.message,
            "`file`, `backing` and `read_only` are for `virtio-blk` devices, not `pl011`"
        );
    }
    assert_eq!(base().devices[0].disk, None);
}

/// A `virtio-blk` on a region of a host disk (`backing`): parsed with `read_only`, its
/// values checked (name, whole sectors, not empty, no overflow), and two VMs holding
/// overlapping regions of one disk, one of them writing, refused by `validate_many`.
#[test]
fn virtio_blk_region_backing() {
    let blk = |fields: &str| {
        BASE.replace(
            "kind = \"pl011\"",
            &format!("kind = \"virtio-blk\"\n{fields}"),
        )
        .replacen("size = 0x1000\n", "", 1)
    };
    let vm = parse(&blk(
        "backing = { disk = \"data\", offset = 0x10_0000, size = 0x2000 }\nread_only = true",
    ));
    let disk = vm.devices[0].disk.clone().unwrap();
    assert!(disk.read_only);
    let DiskSource::Region(region) = &disk.source else {
        panic!("{disk:?}")
    };
    assert_eq!(
        (region.disk.as_str(), region.place, region.place.end()),
        (
            "data",
            RegionPlace::Bytes {
                offset: 0x10_0000,
                size: 0x2000
            },
            Some(0x10_2000)
        )
    );
    assert_eq!(
        disk.source.to_string(),
        "disk \"data\" bytes 0x100000..0x102000"
    );
    assert!(
        problems(&vm, &ctx()).is_empty(),
        "{:?}",
        lines(&problems(&vm, &ctx()))
    );

    for (backing, expected) in [
        (
            "{ disk = \"\", offset = 0, size = 512 }",
            vec!["devices[0].backing.disk: must not be empty"],
        ),
        (
            "{ disk = \"a-very-long-disk-name-x\", offset = 0, size = 512 }",
            vec!["devices[0].backing.disk: is 23 characters long; at most 20 are allowed"],
        ),
        (
            "{ disk = \"da ta\", offset = 0, size = 512 }",
            vec!["devices[0].backing.disk: contains ' '; only letters, digits, '_' and '-' are allowed"],
        ),
        (
            "{ disk = \"data\", offset = 100, size = 0 }",
            vec![
                "devices[0].backing.offset: 0x64 is not a multiple of 0x200",
                "devices[0].backing.size: size must not be 0",
            ],
        ),
        (
            "{ disk = \"data\", offset = 0xffff_ffff_ffff_fe00, size = 0x400 }",
            vec![
                "devices[0].backing.size: 0xfffffffffffffe00 + size 0x400 overflows the 64-bit address space",
            ],
        ),
    ] {
        let vm = parse(&blk(&format!("backing = {backing}")));
        assert_eq!(lines(&problems(&vm, &ctx())), expected, "{backing}");
    }

    let vm = |id: u32, name: &str, offset: u64, ro: bool| {
        let mut v = parse(&blk(&format!(
            "backing = {{ disk = \"data\", offset = {offset}, size = 0x2000 }}\nread_only = {ro}"
        )));
        v.id = id;
        v.name = name.into();
        v.passthrough.clear();
        v
    };
    // Disjoint, read-only beside read-only, or another disk: fine.
    let mut other_disk = vm(4, "d", 0, false);
    if let Some(DiskSource::Region(r)) = other_disk.devices[0].disk.as_mut().map(|d| &mut d.source)
    {
        r.disk = "other".into();
    }
    validate_many(&[
        vm(1, "a", 0, false),
        vm(2, "b", 0x2000, false),
        vm(3, "c", 0x4000, true),
        vm(5, "e", 0x5000, true),
        other_disk,
    ])
    .unwrap();
    for other_ro in [false, true] {
        let found =
            validate_many(&[vm(1, "a", 0x1000, other_ro), vm(2, "b", 0, false)]).unwrap_err();
        assert_eq!(
            lines(&found),
            ["devices[0]: overlaps devices[0] of VM `a` on disk \"data\" (bytes [0x1000, 0x3000)) and one of them is read-write; a region a VM writes is that VM's alone"]
        );
        assert_eq!(found[0].vm(), Some(1));
    }
}

/// `backing = { disk, partition }`: a whole MBR partition, 1 to 4, not with `offset` or
/// `size`; two VMs naming the same partition of a disk, one writing it, are refused
/// together (bytes and a partition are compared only on the disk, when the VM is built).
#[test]
fn virtio_blk_partition_backing() {
    let blk = |backing: &str, ro: bool| {
        BASE.replace(
            "kind = \"pl011\"",
            &format!("kind = \"virtio-blk\"\nbacking = {backing}\nread_only = {ro}"),
        )
        .replacen("size = 0x1000\n", "", 1)
    };
    let vm = parse(&blk("{ disk = \"disk0\", partition = 2 }", false));
    let source = &vm.devices[0].disk.as_ref().unwrap().source;
    assert_eq!(
        *source,
        DiskSource::Region(DiskRegion {
            disk: "disk0".into(),
            place: RegionPlace::Partition(2),
        })
    );
    assert_eq!(source.to_string(), "disk \"disk0\" partition 2");
    assert!(problems(&vm, &ctx()).is_empty());
    for (backing, line) in [
        (
            "{ disk = \"d\", partition = 0 }",
            "`partition` is an MBR partition: 1 to 4",
        ),
        (
            "{ disk = \"d\", partition = 5 }",
            "`partition` is an MBR partition: 1 to 4",
        ),
        (
            "{ disk = \"d\", partition = 1, offset = 0 }",
            "a `backing` has either `offset` and `size` or `partition`, not both",
        ),
        (
            "{ disk = \"d\", offset = 0 }",
            "a `backing` needs `offset` and `size` (bytes of the disk) or `partition` (a whole MBR partition, 1 to 4)",
        ),
    ] {
        let err = parse_err(&blk(backing, false));
        assert!(err.message.contains(line), "{backing}: {}", err.message);
    }
    let named = |id: u32, name: &str, backing: &str, ro: bool| {
        let mut v = parse(&blk(backing, ro));
        v.id = id;
        v.name = name.into();
        v.passthrough.clear();
        v
    };
    let p2 = "{ disk = \"disk0\", partition = 2 }";
    validate_many(&[
        named(1, "a", p2, true),
        named(2, "b", p2, true),
        named(3, "c", "{ disk = \"disk0\", partition = 3 }", false),
        named(
            4,
            "d",
            "{ disk = \"disk0\", offset = 0, size = 512 }",
            false,
        ),
    ])
    .unwrap();
    let found = validate_many(&[named(1, "a", p2, true), named(2, "b", p2, false)]).unwrap_err();
    assert_eq!(
        lines(&found),
        ["devices[0]: overlaps devices[0] of VM `a` on disk \"disk0\" (partition 2) and one of them is read-write; a region a VM writes is that VM's alone"]
    );
}

/// A `virtio-net` entry: its `switch` (required, a name) and `mac` (optional, unicast;
/// default from the VM id and the device's index), and neither on any other kind.
#[test]
fn virtio_net_fields() {
    let net = |fields: &str| {
        BASE.replace(
            "kind = \"pl011\"",
            &format!("kind = \"virtio-net\"\n{fields}"),
        )
    };
    let vm = parse(&net("switch = \"lan-0\""));
    assert_eq!(
        vm.devices[0].net,
        Some(NetConfig {
            switch: "lan-0".into(),
            mac: None
        })
    );
    let mac = vm.devices[0]
        .net
        .as_ref()
        .unwrap()
        .mac_or_default(0x12_3456, 3);
    assert_eq!(mac, [0x02, 0x41, 0x12, 0x34, 0x56, 3]);
    let vm = parse(&net("switch = \"lan\"\nmac = \"52:54:00:AB:cd:01\""));
    assert_eq!(
        vm.devices[0].net.as_ref().unwrap().mac_or_default(1, 0),
        [0x52, 0x54, 0, 0xab, 0xcd, 1]
    );
    let bad_mac =
        "`mac` is six two-digit hex numbers separated by ':' (e.g. \"02:00:00:00:00:01\")";
    let group =
        "`mac` must be a unicast address (the low bit of its first byte clear), not all zeros";
    let bad_switch = "`switch` is 1 to 32 characters out of [A-Za-z0-9_-]";
    for (fields, message) in [
        (
            "",
            "missing field `switch` (the virtual switch it is plugged into, e.g. \"lan\")",
        ),
        ("switch = \"\"", bad_switch),
        ("switch = \"a b\"", bad_switch),
        ("switch = \"lan\"\nmac = \"02:00:00:00:00\"", bad_mac),
        ("switch = \"lan\"\nmac = \"02:00:00:00:00:01:02\"", bad_mac),
        ("switch = \"lan\"\nmac = \"02:00:00:00:00:g1\"", bad_mac),
        ("switch = \"lan\"\nmac = \"2:00:00:00:00:01\"", bad_mac),
        ("switch = \"lan\"\nmac = \"01:00:5e:00:00:01\"", group),
        ("switch = \"lan\"\nmac = \"ff:ff:ff:ff:ff:ff\"", group),
        ("switch = \"lan\"\nmac = \"00:00:00:00:00:00\"", group),
    ] {
        let err = parse_err(&net(fields));
        assert_eq!(err.message, message, "{fields}");
        assert_eq!(err.key.as_deref(), Some("devices[0]"), "{fields}");
        assert!(err.line.is_some());
    }
    for fields in ["switch = \"lan\"", "mac = \"02:00:00:00:00:01\""] {
        let err =
            parse_err(&BASE.replace("kind = \"pl011\"", &format!("kind = \"pl011\"\n{fields}")));
        assert_eq!(
            err.message,
            "`switch` and `mac` are for `virtio-net` devices, not `pl011`"
        );
    }
    assert_eq!(base().devices[0].net, None);
    assert!(HostArch::Aarch64.has_device(DeviceKind::VirtioNet));
    assert!(HostArch::Riscv64.has_device(DeviceKind::VirtioNet));
}

mod doc;
mod links;
