//! `cargo xtask vmconfig check FILE...`: parse and validate VM config files on the host
//! with the same code (`axvmconfig`) the hypervisor runs at boot.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use axvmconfig::{ProblemKind, ValidateContext, VmConfig};
use clap::{Args, Subcommand};

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
        /// VM config files (TOML), e.g. configs/vms/aarch64-hello.toml.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// Runs `cargo xtask vmconfig ...`.
pub fn run(args: VmconfigArgs) -> Result<ExitCode> {
    match args.command {
        VmconfigCommand::Check { files } => {
            let inputs: Vec<Input> = files
                .iter()
                .map(|path| Input {
                    name: path.display().to_string(),
                    text: std::fs::read_to_string(path).map_err(|err| err.to_string()),
                })
                .collect();
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

/// One file to check: the name to print and its contents (or why it could not be read).
struct Input {
    name: String,
    text: Result<String, String>,
}

/// What `check` prints, and whether every file passed.
struct Report {
    text: String,
    ok: bool,
}

/// Parses and validates every input, then checks them together; one line per problem.
///
/// The machine is not known here, so the vCPU pinning against the number of physical CPUs
/// and the image sizes are not checked (the hypervisor checks them at boot).
fn check(inputs: &[Input]) -> Report {
    let ctx = ValidateContext::default();
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
        match axvmconfig::from_toml(text) {
            Err(err) => problems[i].push(err.to_string()),
            Ok(config) => {
                if let Err(found) = config.validate(&ctx) {
                    problems[i].extend(found.iter().map(ToString::to_string));
                }
                parsed.push((i, config));
            }
        }
    }

    let configs: Vec<VmConfig> = parsed.iter().map(|(_, config)| config.clone()).collect();
    if let Err(found) = axvmconfig::validate_many(&configs) {
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
mod tests {
    use super::*;
    use crate::util::repo_root;

    fn file(name: &str) -> Input {
        let path = repo_root().join("configs/vms").join(name);
        Input {
            name: name.to_owned(),
            text: std::fs::read_to_string(&path).map_err(|err| err.to_string()),
        }
    }

    fn inline(name: &str, text: &str) -> Input {
        Input {
            name: name.to_owned(),
            text: Ok(text.to_owned()),
        }
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
        };
        let report = check(&[
            unreadable,
            inline("kind.toml", "[[devices]]\nkind = \"virtio\"\n"),
        ]);
        assert!(!report.ok);
        assert_eq!(
            report.text,
            "missing.toml: cannot read: No such file or directory (os error 2)\n\
             kind.toml: line 2, column 8: in `devices.kind`: unknown variant `virtio`, expected one of `pl011`, `ns16550`, `gicd`, `gicr`, `gicc`, `plic`\n"
        );
    }
}
