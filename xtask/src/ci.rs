//! `cargo xtask test`: every check CI runs, in order, stopping at the first failing step.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::scenario::{self, Images, Outcome, Scenario, Status};
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
    /// The fuzz step while it runs beside the others.
    fuzz: Option<FuzzLane>,
}

impl Steps {
    /// Runs one step, announcing it and recording its time and result. First stops the
    /// run if the fuzz step beside it has failed.
    fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.poll_fuzz()?;
        println!("\n==> {name}");
        let start = Instant::now();
        let result = f();
        self.done
            .push((name.to_owned(), start.elapsed(), result.is_ok()));
        result.with_context(|| format!("step `{name}` failed"))
    }

    /// Records the fuzz step if it has ended; fails if it failed.
    fn poll_fuzz(&mut self) -> Result<()> {
        if let Some(lane) = &mut self.fuzz {
            if let Some(result) = lane.poll() {
                self.fuzz = None;
                return self.end_fuzz(result);
            }
        }
        Ok(())
    }

    /// Waits for the fuzz step and records it; fails if it failed.
    fn wait_fuzz(&mut self) -> Result<()> {
        match self.fuzz.take() {
            Some(lane) => {
                let result = lane.wait();
                self.end_fuzz(result)
            }
            None => Ok(()),
        }
    }

    fn end_fuzz(&mut self, (took, result): (Duration, Result<()>)) -> Result<()> {
        self.done
            .push((FuzzLane::STEP.to_owned(), took, result.is_ok()));
        result.with_context(|| format!("step `{}` failed", FuzzLane::STEP))
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
    if filter.is_none() {
        // First: it needs only cargo, and setup may wait on the network.
        steps.fuzz = Some(FuzzLane::start()?);
    }
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
            util::run(cmd)?;
            let mut cmd = util::cargo();
            // Not --all: that would take in the path dependencies (checked above).
            cmd.args(["fmt", "--manifest-path"])
                .arg(fuzz::workspace_dir().join("Cargo.toml"))
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
    }

    // One image per (architecture, VMs) the runnable scenarios boot; the full run also
    // builds every architecture's plain image. Guests first: the images with VMs embed them.
    let plain: &[Arch] = match filter {
        None => &Arch::ALL,
        Some(_) => &[],
    };
    let order = scenario::run_order(&selected);
    let mut plan = vmset::build_plan(order.iter().map(|s| s.image_key()), plain);
    // The image of the first scenario to run first, and so on.
    plan.sort_by_key(|key| {
        order
            .iter()
            .position(|s| s.image_key() == *key)
            .unwrap_or(order.len())
    });
    let arches: BTreeSet<Arch> = plan.iter().map(|(arch, _)| *arch).collect();
    for arch in arches {
        steps.run(&format!("build {arch} guests"), || guests::build(arch))?;
    }

    // The images are built one after the other while the scenarios run: each scenario
    // starts as soon as its image is there.
    steps.poll_fuzz()?;
    let images = Images::default();
    let (built, outcomes) = std::thread::scope(|scope| {
        let builder = scope.spawn(|| {
            lower_thread_priority();
            let mut builds = Steps::default();
            for (arch, vms) in plan {
                let name = if vms.is_empty() {
                    format!("build {arch} image")
                } else {
                    format!("build {arch} image with VMs {vms}")
                };
                match builds.run(&name, || image::build_hypervisor(arch, &vms)) {
                    Ok(built) => images.publish((arch, vms), built.boot),
                    Err(err) => {
                        images.fail();
                        return (builds, Err(err));
                    }
                }
            }
            images.finish();
            (builds, Ok(()))
        });
        println!("\n==> scenarios");
        let start = Instant::now();
        let outcomes = scenario::run_while_building(&selected, &images);
        let took = start.elapsed();
        let built = builder.join().unwrap_or_else(|_| {
            (
                Steps::default(),
                Err(anyhow::anyhow!("the image builds panicked")),
            )
        });
        (built, outcomes.map(|o| (o, took)))
    });
    let (builds, built) = built;
    steps.done.extend(builds.done);
    built?;
    let (outcomes, took) = outcomes.context("step `scenarios` failed")?;
    let failed = outcomes.iter().any(|o| o.status == Status::Failed);
    steps.done.push(("scenarios".to_owned(), took, !failed));
    steps.wait_fuzz()?;
    Ok(outcomes)
}

/// The niceness of the image builds beside the scenarios.
const BUILD_NICENESS: &str = "10";

/// Lowers the scheduling priority of the calling thread, and so of the builds it starts
/// (Linux's nice value is per thread and inherited), with `renice`: the image builds take
/// the CPU time the scenarios leave, since some scenarios' guests check how long they were
/// stalled. A failure only costs that, so it is reported and the run goes on.
fn lower_thread_priority() {
    // "/proc/thread-self" links to "<pid>/task/<tid>".
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let Some(tid) = tid else {
        println!("note: the image builds keep their priority (no /proc/thread-self)");
        return;
    };
    let status = Command::new("renice")
        .args(["-n", BUILD_NICENESS, "-p", &tid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        println!("note: the image builds keep their priority (renice failed)");
    }
}

/// The fuzz step (`cargo xtask fuzz --seconds` [`fuzz::CI_SECONDS`], every target), started
/// first and run beside the other steps: libFuzzer uses one core while they use the other.
/// Its output goes to `target/fuzz.log` (it would interleave with theirs); the summary lines
/// are printed when it ends, the log's end when it fails. Killed if the run stops first.
struct FuzzLane {
    child: Child,
    log: PathBuf,
    start: Instant,
}

impl FuzzLane {
    const STEP: &'static str = "fuzz (every target briefly, beside the other steps)";

    fn start() -> Result<FuzzLane> {
        let log = util::target_dir().join("fuzz.log");
        std::fs::create_dir_all(util::target_dir()).context("creating target/")?;
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the fuzz log")?;
        let exe = std::env::current_exe().context("finding the xtask binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(["fuzz", "--seconds", &fuzz::CI_SECONDS.to_string()])
            .current_dir(util::repo_root())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        println!(
            "\n==> {} started: cargo xtask fuzz --seconds {}, output in {}",
            Self::STEP,
            fuzz::CI_SECONDS,
            log.display()
        );
        let child = cmd.spawn().context("starting `cargo xtask fuzz`")?;
        Ok(FuzzLane {
            child,
            log,
            start: Instant::now(),
        })
    }

    /// Its time and result if it has ended.
    fn poll(&mut self) -> Option<(Duration, Result<()>)> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(self.ended(status)),
            Err(e) => Some((
                self.start.elapsed(),
                Err(anyhow::Error::new(e).context("waiting for the fuzz step")),
            )),
        }
    }

    /// Waits for it to end; its time and result.
    fn wait(mut self) -> (Duration, Result<()>) {
        match self.child.wait() {
            Ok(status) => self.ended(status),
            Err(e) => (
                self.start.elapsed(),
                Err(anyhow::Error::new(e).context("waiting for the fuzz step")),
            ),
        }
    }

    fn ended(&self, status: std::process::ExitStatus) -> (Duration, Result<()>) {
        let took = self.start.elapsed();
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        println!("\n==> {} ended ({})", Self::STEP, util::secs(took));
        if status.success() {
            for line in text.lines().filter(|l| l.starts_with("fuzz: ")) {
                println!("{line}");
            }
            return (took, Ok(()));
        }
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines[lines.len().saturating_sub(40)..] {
            println!("  {line}");
        }
        let result = Err(anyhow::anyhow!(
            "`cargo xtask fuzz` failed with {status}; its output is in {}",
            self.log.display()
        ));
        (took, result)
    }
}

impl Drop for FuzzLane {
    /// The run stopped before the fuzz step ended: stop it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
