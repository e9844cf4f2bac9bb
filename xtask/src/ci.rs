//! `cargo xtask test`: every check CI runs, in order, stopping at the first failing step.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::scenario::{self, Outcome, Scenario, Status};
use crate::vmset;
use crate::{fuzz, guests, image, setup, util};

/// Workspace crates that build only for bare metal: excluded from host clippy and host
/// unit tests. (The hypervisor itself is linted per architecture instead.)
pub const HOST_EXCLUDED: &[&str] = &["axvisor", "axhal", "axstd", "axdriver"];

/// `cargo <verb> --workspace --exclude ...` for the host.
fn host_workspace_cargo(verb: &str) -> Command {
    let mut cmd = util::cargo();
    cmd.args([verb, "--workspace"]);
    for krate in HOST_EXCLUDED {
        cmd.args(["--exclude", krate]);
    }
    cmd
}

/// The steps run so far, for the closing summary.
#[derive(Default)]
struct Steps {
    done: Vec<(String, Duration, bool)>,
}

impl Steps {
    /// Runs one step, announcing it and recording its time and result.
    fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        println!("\n==> {name}");
        let start = Instant::now();
        let result = f();
        self.done
            .push((name.to_owned(), start.elapsed(), result.is_ok()));
        result.with_context(|| format!("step `{name}` failed"))
    }

    /// Marks the last step as failed (for a step that completes but finds failures).
    fn mark_last_failed(&mut self) {
        if let Some(last) = self.done.last_mut() {
            last.2 = false;
        }
    }

    fn print_summary(&self) {
        println!("\n==> summary");
        for (name, took, ok) in &self.done {
            let mark = if *ok { "ok    " } else { "FAILED" };
            println!("  {mark} {name} ({})", util::secs(*took));
        }
    }
}

/// Runs the whole test sequence, or only the matching scenarios when `filter` is given.
/// Ends with the line `N passed, M failed, K skipped` (counting scenarios).
pub fn test(filter: Option<&str>) -> Result<ExitCode> {
    let mut steps = Steps::default();
    let result = run_steps(&mut steps, filter);
    steps.print_summary();
    let code = match result {
        Ok(outcomes) => {
            let count = |status| outcomes.iter().filter(|o| o.status == status).count();
            let failed: Vec<&str> = outcomes
                .iter()
                .filter(|o| o.status == Status::Failed)
                .map(|o| o.name.as_str())
                .collect();
            if !failed.is_empty() {
                println!("failed scenarios: {}", failed.join(", "));
            }
            println!(
                "{} passed, {} failed, {} skipped",
                count(Status::Passed),
                failed.len(),
                count(Status::Skipped)
            );
            if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            println!("scenarios were not run");
            println!("0 passed, 0 failed, 0 skipped");
            ExitCode::FAILURE
        }
    };
    Ok(code)
}

fn run_steps(steps: &mut Steps, filter: Option<&str>) -> Result<Vec<Outcome>> {
    steps.run("setup", setup::ensure)?;
    let selected = steps.run("load scenarios", || select_scenarios(filter))?;

    if filter.is_none() {
        steps.run("cargo fmt --check", || {
            let mut cmd = util::cargo();
            cmd.args(["fmt", "--all", "--", "--check"]);
            util::run(cmd)?;
            let mut cmd = util::cargo();
            cmd.args(["fmt", "--all", "--manifest-path"])
                .arg(guests::workspace_dir().join("Cargo.toml"))
                .args(["--", "--check"]);
            util::run(cmd)
        })?;
        steps.run("clippy (host)", || {
            let mut cmd = host_workspace_cargo("clippy");
            cmd.args(["--all-targets", "--", "-D", "warnings"]);
            util::run(cmd)
        })?;
        for arch in Arch::ALL {
            steps.run(&format!("clippy ({arch})"), || {
                let mut cmd = util::cargo();
                // The disk's crates by name: `-p` lints only the packages it names.
                cmd.args([
                    "clippy",
                    "-p",
                    image::HYPERVISOR_PACKAGE,
                    "-p",
                    "axfs",
                    "-p",
                    "axdriver",
                ])
                .arg("--target")
                .arg(arch.triple())
                .args(["--", "-D", "warnings"]);
                util::run(cmd)
            })?;
        }
        for arch in Arch::ALL {
            steps.run(&format!("clippy guests ({arch})"), || {
                let mut cmd = guests::cargo("clippy", arch);
                cmd.args(["--", "-D", "warnings"]);
                util::run(cmd)
            })?;
        }
        steps.run("host unit tests", || {
            util::run(host_workspace_cargo("test"))
        })?;
        steps.run("fuzz (every target briefly)", || {
            let mut cmd = util::cargo();
            // Not --all: that would take in the path dependencies (checked above).
            cmd.args(["fmt", "--manifest-path"])
                .arg(fuzz::workspace_dir().join("Cargo.toml"))
                .args(["--", "--check"]);
            util::run(cmd)?;
            fuzz::run_all(fuzz::CI_SECONDS)
        })?;
    }

    // One image per (architecture, VMs) the runnable scenarios boot; the full run also
    // builds every architecture's plain image. Guests first: the images with VMs embed them.
    let plain: &[Arch] = match filter {
        None => &Arch::ALL,
        Some(_) => &[],
    };
    let plan = vmset::build_plan(
        selected
            .iter()
            .filter(|s| s.pending.is_none())
            .map(Scenario::image_key),
        plain,
    );
    let arches: BTreeSet<Arch> = plan.iter().map(|(arch, _)| *arch).collect();
    for arch in arches {
        steps.run(&format!("build {arch} guests"), || guests::build(arch))?;
    }
    let mut images = BTreeMap::new();
    for (arch, vms) in plan {
        let name = if vms.is_empty() {
            format!("build {arch} image")
        } else {
            format!("build {arch} image with VMs {vms}")
        };
        let built = steps.run(&name, || image::build_hypervisor(arch, &vms))?;
        images.insert((arch, vms), built.boot);
    }

    let outcomes = steps.run("scenarios", || scenario::run_all(&selected, &images))?;
    if outcomes.iter().any(|o| o.status == Status::Failed) {
        steps.mark_last_failed();
    }
    Ok(outcomes)
}

/// Loads the scenarios and keeps those whose name contains `filter`.
fn select_scenarios(filter: Option<&str>) -> Result<Vec<Scenario>> {
    let dir = scenario::scenario_dir();
    let all = scenario::load_dir(&dir)?;
    let names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    let selected: Vec<Scenario> = match filter {
        Some(f) => all.into_iter().filter(|s| s.name.contains(f)).collect(),
        None => all,
    };
    if selected.is_empty() {
        match filter {
            Some(f) => bail!(
                "no scenario name contains {f:?}; the scenarios are: {}",
                names.join(", ")
            ),
            None => bail!("there are no scenarios in {}", dir.display()),
        }
    }
    println!(
        "{} scenario(s): {}",
        selected.len(),
        selected
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(selected)
}
