//! The VM description parser and validation (`axvmconfig`): any text, parsed, validated
//! alone, against the facts of a QEMU `virt` host of each architecture (a PC for x86_64,
//! where devices may be at I/O ports), and beside a
//! copy of itself; every error formatted.
//!
//! Checked: a failed validation names a problem, every error and problem is one line (a
//! problem's starting with its field); two copies of one VM are refused; the
//! host ranges a config is given end after they start, its passthrough ports lie in the
//! port space.

use std::collections::BTreeMap;

use axvmconfig::{
    validate_many, validate_many_on, ConfigProblem, DeviceSpace, HostArch, HostFacts, HostRange,
    HostUse, ValidateContext, PORT_SPACE_END,
};

/// What QEMU `virt` with 1 GiB of RAM looks like to the checks, on `arch` (x86_64: a PC,
/// whose console is at I/O ports, so not a host range).
fn qemu_virt(arch: HostArch) -> HostFacts {
    let (ram, console, intc, lines) = match arch {
        HostArch::Aarch64 => (
            0x4000_0000,
            Some(0x0900_0000),
            (0x0800_0000, 0x20_0000),
            32..288,
        ),
        HostArch::Riscv64 => (
            0x8000_0000,
            Some(0x1000_0000),
            (0x0c00_0000, 0x400_0000),
            1..96,
        ),
        HostArch::X86_64 => (0x10_0000, None, (0xfec0_0000, 0x1000), 0..24),
    };
    let mut ranges = vec![
        HostRange::new(ram, 0x4000_0000, HostUse::HypervisorRam),
        HostRange::new(ram, 0x8_0000, HostUse::FirmwareReserved),
        HostRange::new(intc.0, intc.1, HostUse::InterruptController),
    ];
    ranges.extend(console.map(|c| HostRange::new(c, 0x1000, HostUse::Console)));
    HostFacts {
        arch: Some(arch),
        ranges,
        ports: arch.host_ports().to_vec(),
        irq_lines: Some(lines),
        vmids: Some(255),
    }
}

/// Formats every problem (and checks there is one): each is one line that starts with the
/// field it names, as the hypervisor and `xtask vmconfig check` print it after the file.
fn problems(result: Result<(), Vec<ConfigProblem>>) {
    if let Err(problems) = result {
        assert!(!problems.is_empty(), "a check failed with no problem");
        for p in problems {
            let line = p.to_string();
            assert!(!p.field.is_empty(), "a problem with no field: {line}");
            assert!(line.starts_with(&format!("{}: ", p.field)), "{line}");
            assert!(
                !line.contains('\n'),
                "a problem of more than one line: {line:?}"
            );
        }
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match axvmconfig::from_toml(text) {
        Ok(config) => config,
        Err(err) => {
            let line = err.to_string();
            assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
            return;
        }
    };
    // Sizes for the images it names, so the load-address checks see real extents.
    let k = &config.kernel;
    let names = [Some(k.image.as_str())]
        .into_iter()
        .chain([k.initrd.as_ref().map(|i| i.image.as_str())])
        .chain([k.dtb.as_ref().and_then(|d| d.image.as_deref())])
        .flatten();
    let image_sizes: BTreeMap<String, u64> = names
        .enumerate()
        .map(|(i, name)| (name.to_string(), (i as u64 + 1) << 20))
        .collect();
    for ctx in [
        ValidateContext::default(),
        ValidateContext {
            pcpu_count: Some(4),
            image_sizes,
        },
    ] {
        problems(config.validate(&ctx));
    }
    let _ = config.irq_lines();
    // A valid config's port devices lie within the 16-bit port space.
    if config.validate(&ValidateContext::default()).is_ok() {
        for d in config
            .devices
            .iter()
            .filter(|d| d.space == DeviceSpace::Port)
        {
            let port = d
                .port()
                .expect("a valid port device has a 16-bit first port");
            assert!(u64::from(port) + d.size <= PORT_SPACE_END, "{d:?}");
        }
    }
    for (_, start, end) in config.host_ranges() {
        assert!(start <= end, "host range [{start:#x}, {end:#x})");
    }
    // Passthrough ports given to a VM lie in the 16-bit port space, whatever else is wrong.
    for (_, start, end) in config.host_ports() {
        assert!(
            start <= end && end <= PORT_SPACE_END,
            "ports [{start:#x}, {end:#x})"
        );
    }
    let hosts = [
        qemu_virt(HostArch::Aarch64),
        qemu_virt(HostArch::Riscv64),
        qemu_virt(HostArch::X86_64),
    ];
    for host in &hosts {
        problems(config.validate_host(host));
    }
    let twins = [config.clone(), config];
    // The same id twice is always a problem.
    let both = validate_many(&twins);
    assert!(both.is_err(), "two VMs with one id accepted");
    problems(both);
    problems(validate_many_on(&twins, &hosts[0]));
}
