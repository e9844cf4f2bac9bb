//! `cargo xtask vmconfig check FILE...`: parse and validate VM config files on the host
//! with the same code (`axvmconfig`) the hypervisor runs at boot.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use axvmconfig::{HostArch, HostFacts, HostRange, HostUse, ProblemKind, ValidateContext, VmConfig};
use clap::{Args, Subcommand};
use serde::Deserialize;

use crate::util::repo_root;

/// Arguments of `cargo xtask vmconfig`.
#[derive(Debug, Args)]
pub struct VmconfigArgs {
    #[command(subcommand)]
    command: VmconfigCommand,
}

#[derive(Debug, Subcommand)]
enum VmconfigCommand {
    /// Parse and validate VM config files; the files together are checked as one
    /// hypervisor's VMs (unique ids and names). Prints `FILE: ok` or every problem as
    /// `FILE: field: message`, and fails if any file has a problem.
    Check {
        /// The platform the VMs run on (`configs/platforms/NAME.toml`), for the host checks;
        /// by default that of the architecture each file name starts with (`qemu-virt-<arch>`,
        /// `x86_64-pc`).
        #[arg(long, value_name = "NAME")]
        platform: Option<String>,
        /// The files are configs on a disk made from DIR (`cargo xtask disk --from DIR`):
        /// their image fields are paths on it, resolved as the hypervisor resolves them,
        /// and the images must exist and fit.
        #[arg(long, value_name = "DIR")]
        disk: Option<PathBuf>,
        /// The number of CPUs the machine has (QEMU's `-smp`): each vCPU must be pinned to
        /// one of them, as the hypervisor checks at boot. Not checked when left out.
        #[arg(long, value_name = "N")]
        cpus: Option<usize>,
        /// VM config files (TOML), e.g. configs/vms/aarch64-hello.toml.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// The `[host]` table of a platform file: what is known about the machine on the host.
/// Ranges are `[start, end)`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostTable {
    /// The window the machine's RAM lies in (the hypervisor manages all of it).
    ram: Option<[u64; 2]>,
    /// Memory the firmware keeps.
    #[serde(default)]
    reserved: Vec<[u64; 2]>,
    /// The hypervisor's console UART.
    console: Option<[u64; 2]>,
    /// Register windows of the host's interrupt controller.
    #[serde(default)]
    interrupt_controller: Vec<[u64; 2]>,
    /// The host controller's device interrupt lines, `[first, end)`.
    irq_lines: Option<[u32; 2]>,
    /// The smallest hardware VMID width of the CPUs the platform runs.
    vmid_bits: Option<u32>,
}

/// A platform file as far as this command reads it.
#[derive(Deserialize)]
struct PlatformFile {
    platform: PlatformTable,
    #[serde(default)]
    host: HostTable,
}

/// The `[platform]` table: only its architecture matters here.
#[derive(Deserialize)]
struct PlatformTable {
    arch: String,
}

impl HostTable {
    /// The facts, firmware memory before RAM (the first overlapping range names the
    /// problem). VMID 0 is never given to a VM.
    fn facts(&self, arch: Option<HostArch>) -> HostFacts {
        let range = |[start, end]: [u64; 2], what| HostRange { start, end, what };
        let ranges = self
            .reserved
            .iter()
            .map(|&r| range(r, HostUse::FirmwareReserved))
            .chain(self.ram.map(|r| range(r, HostUse::HypervisorRam)))
            .chain(self.console.map(|r| range(r, HostUse::Console)))
            .chain(
                self.interrupt_controller
                    .iter()
                    .map(|&r| range(r, HostUse::InterruptController)),
            )
            .collect();
        HostFacts {
            arch,
            ranges,
            ports: arch.map_or(Vec::new(), |a| a.host_ports().to_vec()),
            irq_lines: self.irq_lines.map(|[first, end]| first..end),
            vmids: self
                .vmid_bits
                .map(|bits| (1usize << bits.min(16)).saturating_sub(1)),
        }
    }
}

/// The host facts of `configs/platforms/<name>.toml`.
fn platform_facts(name: &str) -> Result<HostFacts> {
    let path = repo_root()
        .join("configs/platforms")
        .join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no platform `{name}` (--platform): {} cannot be read; the platforms are {}",
            path.display(),
            platform_names().join(", ")
        )
    })?;
    let file: PlatformFile =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(file.host.facts(HostArch::from_name(&file.platform.arch)))
}

/// The names of the platforms in `configs/platforms` (its `*.toml` files), sorted.
fn platform_names() -> Vec<String> {
    let dir = repo_root().join("configs/platforms");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".toml").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// The default platform of a config file: `qemu-virt-<arch>` when its name starts with
/// `aarch64-` or `riscv64-`, `x86_64-pc` when it starts with `x86_64-`.
fn default_platform(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    [
        ("aarch64", "qemu-virt-aarch64"),
        ("riscv64", "qemu-virt-riscv64"),
        ("x86_64", "x86_64-pc"),
    ]
    .into_iter()
    .find(|(arch, _)| name.starts_with(&format!("{arch}-")))
    .map(|(_, platform)| platform.to_owned())
}

/// Runs `cargo xtask vmconfig ...`.
pub fn run(args: VmconfigArgs) -> Result<ExitCode> {
    match args.command {
        VmconfigCommand::Check {
            platform,
            disk,
            cpus,
            files,
        } => {
            let mut facts = BTreeMap::new();
            let mut inputs = Vec::new();
            for path in &files {
                let platform = platform.clone().or_else(|| default_platform(path));
                match &platform {
                    Some(name) if !facts.contains_key(name) => {
                        facts.insert(name.clone(), platform_facts(name)?);
                    }
                    Some(_) => {}
                    None => eprintln!(
                        "note: {}: no platform (the name starts with no architecture): what \
                         the host cannot give is not checked; name one with --platform",
                        path.display()
                    ),
                }
                inputs.push(Input {
                    name: path.display().to_string(),
                    text: std::fs::read_to_string(path).map_err(|err| err.to_string()),
                    host: platform.and_then(|name| facts.get(&name).cloned()),
                    pcpus: cpus,
                    disk: match &disk {
                        Some(root) => Some(OnDisk::new(root, path)?),
                        None => None,
                    },
                });
            }
            let report = check(&inputs);
            print!("{}", report.text);
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// One file to check: the name to print, its contents (or why it could not be read),
/// what is known about the host it runs on (its facts, its number of CPUs), and where it
/// lies on a disk.
struct Input {
    name: String,
    text: Result<String, String>,
    host: Option<HostFacts>,
    pcpus: Option<usize>,
    disk: Option<OnDisk>,
}

/// A config file on a disk being made from a directory.
struct OnDisk {
    /// The directory the disk is made from.
    root: PathBuf,
    /// The config's path on the disk (`/vms/hello.toml`).
    path: String,
}

impl OnDisk {
    /// `file` on the disk made from `root`.
    fn new(root: &Path, file: &Path) -> Result<Self> {
        let root = root
            .canonicalize()
            .with_context(|| format!("--disk {}", root.display()))?;
        let full = file
            .canonicalize()
            .with_context(|| format!("reading {}", file.display()))?;
        let inside = full.strip_prefix(&root).with_context(|| {
            format!(
                "{} is not inside the disk directory {}",
                file.display(),
                root.display()
            )
        })?;
        let path = inside
            .components()
            .map(|c| format!("/{}", c.as_os_str().to_string_lossy()))
            .collect();
        Ok(Self { root, path })
    }

    /// The sizes of the images `config` names (by field value), read on the host where
    /// the hypervisor reads them on the disk; a problem line for each one missing.
    fn image_sizes(&self, config: &VmConfig) -> (BTreeMap<String, u64>, Vec<String>) {
        let mut sizes = BTreeMap::new();
        let mut missing = Vec::new();
        for (field, value) in axvmconfig::image_fields(config) {
            let on_disk = axvmconfig::image_path(&self.path, &value);
            match std::fs::metadata(self.root.join(on_disk.trim_start_matches('/'))) {
                Ok(m) if m.is_file() => {
                    sizes.insert(value, m.len());
                }
                _ => missing.push(format!(
                    "field `{field}` = {value:?}: {on_disk}: no such file or directory"
                )),
            }
        }
        (sizes, missing)
    }
}

/// What `check` prints, and whether every file passed.
struct Report {
    text: String,
    ok: bool,
}

/// Parses and validates every input, then checks them together; one line per problem.
///
/// Each file is also checked against its host facts; the files together against the facts
/// they share (none when they differ). The number of physical CPUs is checked when given
/// (`--cpus`), the image sizes when the files are on a disk (`--disk`); the hypervisor
/// checks both at boot.
fn check(inputs: &[Input]) -> Report {
    let mut problems: Vec<Vec<String>> = vec![Vec::new(); inputs.len()];
    // Parsed configs, and the input each came from.
    let mut parsed: Vec<(usize, VmConfig)> = Vec::new();

    for (i, input) in inputs.iter().enumerate() {
        let text = match &input.text {
            Ok(text) => text,
            Err(err) => {
                problems[i].push(format!("cannot read: {err}"));
                continue;
            }
        };
        let limit = axvmconfig::DISK_CONFIG_MAX;
        if let (Some(disk), true) = (&input.disk, text.len() as u64 > limit) {
            problems[i].push(format!(
                "{}: {} bytes is larger than the limit of {limit} bytes (the hypervisor reads no larger config from its disk)",
                disk.path,
                text.len()
            ));
            continue;
        }
        match axvmconfig::from_toml(text) {
            Err(err) => problems[i].push(err.to_string()),
            Ok(config) => {
                let mut ctx = ValidateContext {
                    pcpu_count: input.pcpus,
                    ..ValidateContext::default()
                };
                if let Some(disk) = &input.disk {
                    let (sizes, missing) = disk.image_sizes(&config);
                    ctx.image_sizes = sizes;
                    problems[i].extend(missing);
                }
                if let Err(found) = config.validate(&ctx) {
                    problems[i].extend(found.iter().map(ToString::to_string));
                }
                if let Some(Err(found)) = input.host.as_ref().map(|h| config.validate_host(h)) {
                    problems[i].extend(found.iter().map(ToString::to_string));
                }
                parsed.push((i, config));
            }
        }
    }

    let configs: Vec<VmConfig> = parsed.iter().map(|(_, config)| config.clone()).collect();
    let shared = match parsed.split_first() {
        Some((&(first, _), rest))
            if rest
                .iter()
                .all(|&(i, _)| inputs[i].host == inputs[first].host) =>
        {
            inputs[first].host.clone().unwrap_or_default()
        }
        _ => HostFacts::default(),
    };
    if let Err(found) = axvmconfig::validate_many_on(&configs, &shared) {
        // Problems index `configs`; print them against (and naming) the files instead.
        let file_of = |vm: usize| parsed.get(vm).map(|&(file, _)| file);
        let name_of = |vm: usize| file_of(vm).map_or("?", |file| inputs[file].name.as_str());
        for problem in found {
            let line = match &problem.kind {
                ProblemKind::DuplicateId { id, first, .. } => format!(
                    "{}: id {id} is already used by {}",
                    problem.field,
                    name_of(*first)
                ),
                ProblemKind::DuplicateName { name, first, .. } => format!(
                    "{}: name `{name}` is already used by {}",
                    problem.field,
                    name_of(*first)
                ),
                ProblemKind::OtherVmOverlap {
                    other_vm,
                    other,
                    start,
                    end,
                    ..
                } => format!(
                    "{}: overlaps {other} of {} ([{start:#x}, {end:#x})); a host range belongs to one VM",
                    problem.field,
                    name_of(*other_vm)
                ),
                ProblemKind::NoVmid { vmids, .. } => format!(
                    "{}: no hardware VMID left for this VM (the platform has {vmids} for VMs)",
                    problem.field
                ),
                _ => problem.to_string(),
            };
            // A problem about no particular VM goes with the first parsed file.
            let file = problem.vm().and_then(file_of).or_else(|| file_of(0));
            if let Some(lines) = file.and_then(|file| problems.get_mut(file)) {
                lines.push(line);
            }
        }
    }

    let mut text = String::new();
    let mut ok = true;
    for (input, lines) in inputs.iter().zip(&problems) {
        if lines.is_empty() {
            let _ = writeln!(text, "{}: ok", input.name);
        }
        for line in lines {
            ok = false;
            let _ = writeln!(text, "{}: {line}", input.name);
        }
    }
    Report { text, ok }
}

#[cfg(test)]
mod malformed;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::repo_root;

    fn file(name: &str) -> Input {
        let path = repo_root().join("configs/vms").join(name);
        Input {
            name: name.to_owned(),
            text: std::fs::read_to_string(&path).map_err(|err| err.to_string()),
            host: default_platform(&path).map(|p| platform_facts(&p).unwrap()),
            pcpus: None,
            disk: None,
        }
    }

    fn inline(name: &str, text: &str) -> Input {
        Input {
            name: name.to_owned(),
            text: Ok(text.to_owned()),
            host: None,
            pcpus: None,
            disk: None,
        }
    }

    /// `text` checked against the QEMU virt platform of `arch`.
    fn on_virt(arch: &str, name: &str, text: &str) -> Input {
        Input {
            host: Some(platform_facts(&format!("qemu-virt-{arch}")).unwrap()),
            ..inline(name, text)
        }
    }

    #[test]
    fn configs_on_a_disk_have_their_images_resolved_and_checked() {
        let root = std::env::temp_dir().join(format!("xtask-vmconfig-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("vms")).unwrap();
        std::fs::create_dir_all(root.join("images")).unwrap();
        std::fs::write(root.join("images/small.bin"), [0u8; 100]).unwrap();
        // Larger than the 16 MiB the config's one region has.
        let big = std::fs::File::create(root.join("images/big.bin")).unwrap();
        big.set_len(17 << 20).unwrap();
        let hello =
            std::fs::read_to_string(repo_root().join("configs/vms/aarch64-hello.toml")).unwrap();
        let with_image =
            |image: &str| hello.replace("image = \"hello\"", &format!("image = {image:?}"));
        let on_disk = |name: &str, image: &str| {
            let file = root.join("vms").join(name);
            std::fs::write(&file, with_image(image)).unwrap();
            Input {
                disk: Some(OnDisk::new(&root, &file).unwrap()),
                ..inline(name, &with_image(image))
            }
        };
        let disk = OnDisk::new(&root, &root.join("vms/ok.toml").with_file_name("x")).err();
        assert!(
            disk.is_some(),
            "a file that does not exist has no disk path"
        );
        let ok = on_disk("ok.toml", "../images/small.bin");
        assert_eq!(ok.disk.as_ref().unwrap().path, "/vms/ok.toml");
        let report = check(&[ok]);
        assert!(report.ok, "{}", report.text);
        let report = check(&[on_disk("abs.toml", "/images/small.bin")]);
        assert!(report.ok, "{}", report.text);
        let report = check(&[on_disk("missing.toml", "../images/nope.bin")]);
        assert_eq!(
            report.text,
            "missing.toml: field `kernel.image` = \"../images/nope.bin\": /images/nope.bin: no such file or directory\n"
        );
        let report = check(&[on_disk("big.toml", "../images/big.bin")]);
        assert!(!report.ok);
        assert!(
            report.text.starts_with("big.toml: kernel"),
            "{}",
            report.text
        );
        assert!(OnDisk::new(&root.join("images"), &root.join("vms/ok.toml")).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn example_configs_are_ok() {
        for name in ["aarch64-hello.toml", "riscv64-hello.toml"] {
            let report = check(&[file(name)]);
            assert!(report.ok, "{}", report.text);
            assert_eq!(report.text, format!("{name}: ok\n"));
        }
    }

    #[test]
    fn invalid_example_lists_every_problem() {
        let report = check(&[file("aarch64-hello.toml"), file("invalid-example.toml")]);
        assert!(!report.ok);
        let lines: Vec<&str> = report.text.lines().collect();
        assert_eq!(lines[0], "aarch64-hello.toml: ok");
        assert_eq!(lines.len(), 11, "{}", report.text);
        assert!(lines[1..]
            .iter()
            .all(|line| line.starts_with("invalid-example.toml: ")));
        assert!(lines.contains(
            &"invalid-example.toml: memory[1]: overlaps memory[0] ([0x40000000, 0x41000000))"
        ));
        assert!(lines.contains(&"invalid-example.toml: passthrough[0].size: size must not be 0"));
    }

    #[test]
    fn duplicates_across_files_name_the_other_file() {
        let report = check(&[
            file("aarch64-hello.toml"),
            inline("broken.toml", "id = ["),
            file("riscv64-hello.toml"),
        ]);
        assert!(!report.ok);
        let lines: Vec<&str> = report.text.lines().collect();
        assert_eq!(lines[0], "aarch64-hello.toml: ok");
        assert!(
            lines[1].starts_with("broken.toml: line 1, column "),
            "{}",
            report.text
        );
        assert_eq!(
            &lines[2..],
            [
                "riscv64-hello.toml: id: id 1 is already used by aarch64-hello.toml",
                "riscv64-hello.toml: name: name `hello` is already used by aarch64-hello.toml",
            ]
        );
    }

    #[test]
    fn parse_errors_and_unreadable_files_fail() {
        let unreadable = Input {
            name: "missing.toml".to_owned(),
            text: Err("No such file or directory (os error 2)".to_owned()),
            host: None,
            pcpus: None,
            disk: None,
        };
        let report = check(&[
            unreadable,
            inline("kind.toml", "[[devices]]\nkind = \"virtio\"\n"),
        ]);
        assert!(!report.ok);
        assert_eq!(
            report.text,
            "missing.toml: cannot read: No such file or directory (os error 2)\n\
             kind.toml: line 2, column 8: in `devices.kind`: unknown variant `virtio`, expected one of `pl011`, `ns16550`, `gicd`, `gicr`, `gicc`, `plic`, `ioapic`, `virtio-console`, `virtio-blk`, `virtio-net`\n"
        );
    }

    #[test]
    fn platform_files_give_host_facts() {
        let arm = platform_facts("qemu-virt-aarch64").unwrap();
        assert_eq!(arm.arch, Some(HostArch::Aarch64));
        assert_eq!(arm.vmids, Some(255));
        assert_eq!(arm.irq_lines, Some(32..288));
        assert_eq!(
            arm.used_by_host(0x4008_0000, 0x4008_1000).map(|r| r.what),
            Some(HostUse::HypervisorRam)
        );
        assert_eq!(
            arm.used_by_host(0x0900_0000, 0x0900_1000).map(|r| r.what),
            Some(HostUse::Console)
        );
        let rv = platform_facts("qemu-virt-riscv64").unwrap();
        assert_eq!(rv.arch, Some(HostArch::Riscv64));
        assert_eq!(rv.vmids, Some((1 << 14) - 1));
        assert_eq!(
            rv.used_by_host(0x8000_0000, 0x8000_1000).map(|r| r.what),
            Some(HostUse::FirmwareReserved)
        );
        assert_eq!(
            default_platform(Path::new("configs/vms/riscv64-hello.toml")).as_deref(),
            Some("qemu-virt-riscv64")
        );
        assert_eq!(default_platform(Path::new("invalid-example.toml")), None);
        let pc = platform_facts("x86_64-pc").unwrap();
        assert_eq!(pc.irq_lines, Some(0..24));
        assert_eq!(
            pc.used_by_host(0x8000, 0x9000).map(|r| r.what),
            Some(HostUse::FirmwareReserved)
        );
        assert_eq!(
            pc.used_by_host(0xfee0_0000, 0xfee0_1000).map(|r| r.what),
            Some(HostUse::InterruptController)
        );
        assert_eq!(
            default_platform(Path::new("configs/vms/x86_64-hello.toml")).as_deref(),
            Some("x86_64-pc")
        );
    }

    /// The bug of issue 10: an identity map over the hypervisor's own RAM passed the check.
    #[test]
    fn identity_over_hypervisor_ram_is_refused() {
        let text = std::fs::read_to_string(repo_root().join("configs/vms/aarch64-hello.toml"))
            .unwrap()
            + "\n[[memory]]\ngpa = 0x4800_0000\nsize = 0x10_0000\nmap = \"identity\"\n";
        let report = check(&[on_virt("aarch64", "id.toml", &text)]);
        assert!(!report.ok);
        assert_eq!(
            report.text,
            "id.toml: memory[1]: overlaps the hypervisor's RAM ([0x40000000, 0x4000000000))\n"
        );
    }

    #[test]
    fn host_ranges_across_files_name_the_other_file() {
        let base =
            std::fs::read_to_string(repo_root().join("configs/vms/aarch64-passthrough.toml"))
                .unwrap();
        // Another VM (id and names changed) with the same passthrough range.
        let other = base
            .replace("name = \"", "name = \"x")
            .replacen("\nid = ", "\nid = 77 #", 1);
        let report = check(&[
            on_virt("aarch64", "a.toml", &base),
            on_virt("aarch64", "b.toml", &other),
        ]);
        assert!(!report.ok, "{}", report.text);
        assert!(
            report
                .text
                .contains("b.toml: passthrough[0]: overlaps passthrough[0] of a.toml"),
            "{}",
            report.text
        );
    }

    /// A GIC on riscv64: it passed the check, and the boot ignored the `gicd` and then
    /// refused the device's interrupt. Now the check refuses it.
    #[test]
    fn interrupt_controller_of_the_other_architecture_is_refused() {
        let text =
            std::fs::read_to_string(repo_root().join("configs/vms/aarch64-vgic.toml")).unwrap();
        let report = check(&[on_virt("riscv64", "arm-on-riscv.toml", &text)]);
        assert!(!report.ok);
        assert!(
            report.text.contains(
                "arm-on-riscv.toml: devices[1].kind: `gicd` is not an interrupt controller of riscv64 VMs"
            ),
            "{}",
            report.text
        );
    }
}
