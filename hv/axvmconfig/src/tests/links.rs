//! `[[links]]`: parsing, the checks of one VM, the checks between the two ends, and the
//! architectures that have them.

use super::*;

/// `BASE` with one link to VM "peer".
fn linked() -> VmConfig {
    parse(&format!(
        "{BASE}\n[[links]]\nname = \"chan0\"\npeer = \"peer\"\n\
         shmem = {{ gpa = 0x5000_0000, size = 0x2000 }}\n\
         doorbell = {{ base = 0x0a10_0000, irq = 50 }}\n"
    ))
}

/// `linked()` as the VM `name` (id `id`) whose link names `peer`.
fn end(id: u32, name: &str, peer: &str) -> VmConfig {
    let mut vm = linked();
    vm.id = id;
    vm.name = name.into();
    vm.passthrough.clear();
    vm.links[0].peer = peer.into();
    vm
}

#[test]
fn a_link_parses_and_is_valid() {
    let vm = linked();
    assert_eq!(
        vm.links,
        vec![LinkConfig {
            name: "chan0".into(),
            peer: "peer".into(),
            shmem: LinkShmem {
                gpa: 0x5000_0000,
                size: 0x2000
            },
            doorbell: LinkDoorbell {
                base: 0x0a10_0000,
                irq: 50
            },
        }]
    );
    vm.validate(&ctx()).unwrap();
    assert!(base().links.is_empty(), "no links by default");
}

#[test]
fn unknown_and_missing_link_fields_are_parse_errors() {
    let err = parse_err(&format!(
        "{BASE}\n[[links]]\nname = \"c\"\npeer = \"p\"\nshmem = {{ gpa = 0, size = 0x1000 }}\n\
         doorbell = {{ base = 0x1000, irq = 50, size = 4 }}\n"
    ));
    assert!(err.message.contains("unknown field `size`"), "{err}");
    let err = parse_err(&format!("{BASE}\n[[links]]\nname = \"c\"\npeer = \"p\"\n"));
    assert!(err.message.contains("missing field `shmem`"), "{err}");
}

#[test]
fn shared_memory_must_be_aligned_and_clear_of_ram_and_devices() {
    let mut vm = linked();
    vm.links[0].shmem.gpa = 0x4000_0000; // inside memory[0]
    assert_single(
        &vm,
        &ctx(),
        "links[0].shmem",
        ProblemKind::Overlap {
            other: "memory[0]".into(),
            start: 0x4000_0000,
            end: 0x5000_0000,
        },
    );
    let mut vm = linked();
    vm.links[0].shmem.size = 0x1800;
    assert_single(
        &vm,
        &ctx(),
        "links[0].shmem.size",
        ProblemKind::Misaligned {
            value: 0x1800,
            align: PAGE_SIZE,
        },
    );
    let mut vm = linked();
    vm.links[0].shmem.size = 0;
    assert_single(&vm, &ctx(), "links[0].shmem.size", ProblemKind::ZeroSize);
    let mut vm = linked();
    vm.links[0].doorbell.base = 0x0900_0000; // the PL011
    assert_single(
        &vm,
        &ctx(),
        "links[0].doorbell",
        ProblemKind::Overlap {
            other: "devices[0]".into(),
            start: 0x0900_0000,
            end: 0x0900_1000,
        },
    );
    let mut vm = linked();
    vm.links[0].doorbell.base = 0x5000_1000; // inside its own shared memory
    assert_single(
        &vm,
        &ctx(),
        "links[0].doorbell",
        ProblemKind::Overlap {
            other: "links[0].shmem".into(),
            start: 0x5000_0000,
            end: 0x5000_2000,
        },
    );
    let mut vm = linked();
    vm.links[0].shmem.gpa = 0x0904_0000; // the passthrough range
    vm.links[0].shmem.size = 0x1000;
    assert_single(
        &vm,
        &ctx(),
        "links[0].shmem",
        ProblemKind::Overlap {
            other: "passthrough[0]".into(),
            start: 0x0904_0000,
            end: 0x0904_1000,
        },
    );
}

#[test]
fn the_doorbell_line_is_the_links_own_and_the_controllers() {
    let mut vm = linked();
    vm.links[0].doorbell.irq = 40; // the passthrough interrupt
    assert_single(
        &vm,
        &ctx(),
        "links[0].doorbell.irq",
        ProblemKind::DuplicateIrq {
            irq: 40,
            other: "passthrough[0].irqs[0]".into(),
        },
    );
    let mut vm = linked();
    vm.links[0].doorbell.irq = 33; // the UART's: devices may share, a doorbell may not
    assert_single(
        &vm,
        &ctx(),
        "links[0].doorbell.irq",
        ProblemKind::DuplicateIrq {
            irq: 33,
            other: "devices[0].irq".into(),
        },
    );
    let mut vm = linked();
    vm.links[0].doorbell.irq = 200;
    assert_single(
        &vm,
        &ctx(),
        "links[0].doorbell.irq",
        ProblemKind::IrqOutOfRange {
            irq: 200,
            controller: "the VM's GIC (its SPIs)",
            lines: VGIC_SPI_LINES,
        },
    );
}

#[test]
fn link_names_peers_and_duplicates() {
    let mut vm = linked();
    vm.links[0].peer = "hello".into();
    assert_single(&vm, &ctx(), "links[0].peer", ProblemKind::LinkToSelf);
    let mut vm = linked();
    vm.links[0].name = "chan 0".into();
    assert_single(
        &vm,
        &ctx(),
        "links[0].name",
        ProblemKind::NameInvalidChar { ch: ' ' },
    );
    let mut vm = linked();
    vm.links[0].peer = String::new();
    assert_single(&vm, &ctx(), "links[0].peer", ProblemKind::Empty);
    let mut vm = linked();
    let mut second = vm.links[0].clone();
    second.shmem.gpa = 0x5100_0000;
    second.doorbell.base = 0x0a20_0000;
    second.doorbell.irq = 51;
    vm.links.push(second);
    assert_single(
        &vm,
        &ctx(),
        "links[1].name",
        ProblemKind::DuplicateLink {
            first: "links[0]".into(),
        },
    );
    assert_eq!(
        lines(&problems(&vm, &ctx())),
        vec!["links[1].name: a VM has one link of each name; links[0] has this name already"]
    );
}

#[test]
fn both_ends_must_agree_and_a_missing_peer_is_fine() {
    // Alone: its peer may come later (`vm create`), or never.
    validate_many(&[end(1, "a", "b")]).unwrap();
    validate_many(&[end(1, "a", "b"), end(2, "b", "a")]).unwrap();

    let mut b = end(2, "b", "a");
    b.links[0].shmem.size = 0x1000;
    let found = validate_many(&[end(1, "a", "b"), b]).unwrap_err();
    assert_eq!(
        found,
        vec![ConfigProblem {
            field: "links[0].shmem.size".into(),
            kind: ProblemKind::LinkSizeMismatch {
                vm: 1,
                size: 0x1000,
                peer: "a".into(),
                peer_size: 0x2000,
            },
        }],
        "reported once, for the later VM"
    );
    assert_eq!(found[0].vm(), Some(1));

    // b names another peer: a's link is not declared back (and b's peer "c" is absent).
    let found = validate_many(&[end(1, "a", "b"), end(2, "b", "c")]).unwrap_err();
    assert_eq!(
        lines(&found),
        vec![
            "links[0].peer: link `chan0`: VM `b` declares no link `chan0` with this VM as its peer"
        ]
    );
    let mut b = end(2, "b", "a");
    b.links[0].name = "other".into();
    let found = validate_many(&[end(1, "a", "b"), b]).unwrap_err();
    assert_eq!(
        found.len(),
        2,
        "each end's link is missing on the other: {found:?}"
    );
    assert_eq!(found[1].vm(), Some(1));
}

#[test]
fn the_links_only_check_finds_the_link_problems_of_the_whole_check_and_nothing_else() {
    validate_links(&[end(1, "a", "b")]).unwrap();
    validate_links(&[end(1, "a", "b"), end(2, "b", "a")]).unwrap();
    // A duplicate id, a size mismatch and a link not declared back, in one set.
    let mut b = end(1, "b", "a");
    b.links[0].shmem.size = 0x1000;
    let set = [end(1, "a", "b"), b, end(3, "c", "a")];
    let all = validate_many(&set).unwrap_err();
    assert!(
        all.iter()
            .any(|p| matches!(p.kind, ProblemKind::DuplicateId { .. })),
        "{all:?}"
    );
    let links: Vec<ConfigProblem> = all
        .into_iter()
        .filter(|p| {
            matches!(
                p.kind,
                ProblemKind::LinkNotDeclared { .. } | ProblemKind::LinkSizeMismatch { .. }
            )
        })
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!(validate_links(&set).unwrap_err(), links);
    assert_eq!(
        lines(&links),
        vec![
            "links[0].shmem.size: this VM shares 0x1000 bytes, but VM `a` declares 0x2000; both ends of a link have the same size",
            "links[0].peer: link `chan0`: VM `a` declares no link `chan0` with this VM as its peer",
        ]
    );
}

#[test]
fn the_link_test_configs_are_valid_pairs() {
    let pairs = [
        [
            include_str!("../../../../configs/vms/aarch64-linka.toml"),
            include_str!("../../../../configs/vms/aarch64-linkb.toml"),
            include_str!("../../../../configs/vms/aarch64-linkb-samecpu.toml"),
        ],
        [
            include_str!("../../../../configs/vms/riscv64-linka.toml"),
            include_str!("../../../../configs/vms/riscv64-linkb.toml"),
            include_str!("../../../../configs/vms/riscv64-linkb-samecpu.toml"),
        ],
        [
            include_str!("../../../../configs/vms/x86_64-linka.toml"),
            include_str!("../../../../configs/vms/x86_64-linkb.toml"),
            include_str!("../../../../configs/vms/x86_64-linkb-samecpu.toml"),
        ],
    ];
    for (arch, [a, b, b_same]) in [HostArch::Aarch64, HostArch::Riscv64, HostArch::X86_64]
        .into_iter()
        .zip(pairs)
    {
        let (a, b, b_same) = (parse(a), parse(b), parse(b_same));
        let host = HostFacts {
            arch: Some(arch),
            ..HostFacts::default()
        };
        for vm in [&a, &b, &b_same] {
            vm.validate(&ctx()).unwrap();
            vm.validate_host(&host).unwrap();
        }
        validate_many(&[a.clone(), b]).unwrap();
        validate_many(&[a, b_same]).unwrap();
    }
}

#[test]
fn the_big_linkb_configs_are_refused_beside_linka() {
    for [a, big] in [
        [
            include_str!("../../../../configs/vms/aarch64-linka.toml"),
            include_str!("../../../../configs/vms/aarch64-linkb-big.toml"),
        ],
        [
            include_str!("../../../../configs/vms/riscv64-linka.toml"),
            include_str!("../../../../configs/vms/riscv64-linkb-big.toml"),
        ],
    ] {
        let (a, big) = (parse(a), parse(big));
        big.validate(&ctx()).unwrap();
        let found = validate_many(&[a, big]).unwrap_err();
        assert_eq!(
            found,
            vec![ConfigProblem {
                field: "links[0].shmem.size".into(),
                kind: ProblemKind::LinkSizeMismatch {
                    vm: 1,
                    size: 0x3000,
                    peer: "linka".into(),
                    peer_size: 0x2000,
                },
            }]
        );
    }
}
