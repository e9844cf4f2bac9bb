//! The Rust side of setup: the bare-metal targets and components `rust-toolchain.toml` pins.
//!
//! rustup installs them together with the toolchain, but not when the toolchain was already
//! installed without them: then cargo fails deep in a build with "can't find crate for
//! `core`". Every verb that builds checks first and adds what is missing.

use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::util;

/// The parts of `rust-toolchain.toml` that setup checks.
#[derive(Debug, Default, Deserialize, PartialEq)]
struct Pinned {
    #[serde(default)]
    components: Vec<String>,
    #[serde(default)]
    targets: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ToolchainFile {
    toolchain: Pinned,
}

/// Parses the text of a `rust-toolchain.toml`.
fn parse(text: &str) -> Result<Pinned> {
    let file: ToolchainFile = toml::from_str(text)?;
    Ok(file.toolchain)
}

/// `rustup <what> list --installed` for the toolchain pinned in the repository.
fn installed(what: &str) -> Result<Vec<String>> {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(util::repo_root())
        .args([what, "list", "--installed"]);
    let out = cmd
        .output()
        .with_context(|| format!("could not run `{}`", util::display_command(&cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            util::display_command(&cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

/// The entries of `wanted` that `have` lacks. A component is listed by rustup with its host
/// triple (`clippy-x86_64-unknown-linux-gnu`), so a prefix followed by `-` also counts.
fn missing<'a>(wanted: &'a [String], have: &[String]) -> Vec<&'a str> {
    wanted
        .iter()
        .filter(|w| {
            !have.iter().any(|h| {
                h == *w
                    || h.strip_prefix(w.as_str())
                        .is_some_and(|r| r.starts_with('-'))
            })
        })
        .map(String::as_str)
        .collect()
}

/// Makes sure the pinned targets and components are installed (once per xtask process).
/// Without rustup (a toolchain installed some other way) it only says it cannot check.
pub fn ensure() -> Result<()> {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    let path = util::repo_root().join("rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let pinned = parse(&text).with_context(|| format!("parsing {}", path.display()))?;
    if !util::command_exists("rustup") {
        println!(
            "setup: no rustup on PATH; cannot check the targets {} are installed",
            pinned.targets.join(", ")
        );
        let _ = DONE.set(());
        return Ok(());
    }
    for (what, wanted) in [
        ("target", &pinned.targets),
        ("component", &pinned.components),
    ] {
        let have = installed(what)?;
        let lacking = missing(wanted, &have);
        if lacking.is_empty() {
            continue;
        }
        println!("setup: adding the pinned {what}s {}", lacking.join(", "));
        let mut cmd = Command::new("rustup");
        cmd.current_dir(util::repo_root())
            .args([what, "add"])
            .args(&lacking);
        util::run(cmd).with_context(|| format!("adding the {what}s rust-toolchain.toml pins"))?;
    }
    let _ = DONE.set(());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_repository_file_parses() {
        let text = std::fs::read_to_string(util::repo_root().join("rust-toolchain.toml")).unwrap();
        let pinned = parse(&text).unwrap();
        assert!(pinned
            .targets
            .iter()
            .any(|t| t == "riscv64gc-unknown-none-elf"));
        assert!(pinned.components.iter().any(|c| c == "clippy"));
    }

    #[test]
    fn missing_targets_and_components() {
        let wanted = strings(&["aarch64-unknown-none-softfloat", "x86_64-unknown-none"]);
        let have = strings(&["x86_64-unknown-linux-gnu", "x86_64-unknown-none"]);
        assert_eq!(missing(&wanted, &have), ["aarch64-unknown-none-softfloat"]);
        let wanted = strings(&["clippy", "rustfmt"]);
        let have = strings(&["clippy-x86_64-unknown-linux-gnu", "rustfmt-preview"]);
        assert_eq!(missing(&wanted, &have), Vec::<&str>::new());
        let have = strings(&["clippy-x86_64-unknown-linux-gnu", "rustfmtx"]);
        assert_eq!(missing(&wanted, &have), ["rustfmt"]);
    }
}
