//! Small helpers: where the repository is, and running commands with useful errors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The repository root (the parent of the `xtask` crate).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a subdirectory of the repository")
}

/// The `target/` directory of the workspace.
pub fn target_dir() -> PathBuf {
    repo_root().join("target")
}

/// A `cargo` command (the same cargo that runs xtask) working in the repository root.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(repo_root());
    cmd
}

/// Renders a command the way a person would type it (the program without its directory).
pub fn display_command(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    let program = program.file_name().unwrap_or(program.as_os_str());
    let mut parts = vec![program.to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs a command with inherited stdio, echoing it first; fails if it does not exit with 0.
pub fn run(mut cmd: Command) -> Result<()> {
    let shown = display_command(&cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed with {status}");
    }
    Ok(())
}

/// Replaces this process with `cmd` (inheriting stdio). Returns only on failure.
pub fn exec(mut cmd: Command) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let shown = display_command(&cmd);
    let err = cmd.exec();
    anyhow::Error::new(err).context(format!("could not start `{shown}`"))
}

/// Whether `name` is an executable file in one of the `PATH` directories.
pub fn command_exists(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Formats a duration as seconds with one decimal, e.g. `12.3 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
