//! The test guests: the separate cargo workspace `guests/`, built for one architecture and
//! turned into flat binaries `target/guests/<arch>/<name>.bin` that VMs load.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::{image, util};

/// The guests workspace directory.
pub fn workspace_dir() -> PathBuf {
    util::repo_root().join("guests")
}

/// cargo's target directory for the guests: `target/guests`.
pub fn target_dir() -> PathBuf {
    util::target_dir().join("guests")
}

/// Where the flat guest images for `arch` go: `target/guests/<arch>`.
pub fn image_dir(arch: Arch) -> PathBuf {
    target_dir().join(arch.name())
}

/// A `cargo <verb>` for the guests workspace, built for `arch` with the release profile.
pub fn cargo(verb: &str, arch: Arch) -> std::process::Command {
    let mut cmd = util::cargo();
    cmd.arg(verb)
        .arg("--release")
        .arg("--manifest-path")
        .arg(workspace_dir().join("Cargo.toml"))
        .arg("--target")
        .arg(arch.triple())
        .arg("--target-dir")
        .arg(target_dir());
    cmd
}

/// Builds every guest for `arch` and writes `target/guests/<arch>/<name>.bin` for each.
/// Returns the images written.
pub fn build(arch: Arch) -> Result<Vec<PathBuf>> {
    arch.ensure_supported()?;
    crate::toolchain::ensure()?;
    util::run(cargo("build", arch)).with_context(|| format!("building the {arch} guests"))?;
    let names = binary_names(&workspace_dir())?;
    let out_dir = image_dir(arch);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let elf_dir = target_dir().join(arch.triple()).join("release");
    let mut images = Vec::new();
    for name in names {
        let elf = elf_dir.join(&name);
        let out = out_dir.join(format!("{name}.bin"));
        image::write_flat_binary(&elf, &out, None)
            .with_context(|| format!("making the {arch} guest image {name}"))?;
        images.push(out);
    }
    println!(
        "guests: {} in {}",
        images
            .iter()
            .filter_map(|p| p.file_stem())
            .map(|s| s.to_string_lossy())
            .collect::<Vec<_>>()
            .join(", "),
        out_dir.display()
    );
    Ok(images)
}

/// The binaries of the workspace at `dir`: for each member listed in its `Cargo.toml`
/// (`workspace.members`, plain paths), the `[[bin]]` names, or the package name when it has
/// a `src/main.rs` and no `[[bin]]`. Libraries (grt) have neither.
pub fn binary_names(dir: &Path) -> Result<Vec<String>> {
    let manifest = dir.join("Cargo.toml");
    let doc = read_toml(&manifest)?;
    let Some(members) = doc
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
    else {
        bail!("{}: no `workspace.members` list", manifest.display());
    };
    let mut names = Vec::new();
    for member in members {
        let Some(member) = member.as_str() else {
            bail!(
                "{}: `workspace.members` must be strings",
                manifest.display()
            );
        };
        if member.contains(['*', '?', '[']) {
            bail!(
                "{}: member {member:?}: list members by name, not with a glob",
                manifest.display()
            );
        }
        let member_dir = dir.join(member);
        let member_manifest = member_dir.join("Cargo.toml");
        let doc = read_toml(&member_manifest)?;
        let bins: Vec<String> = doc
            .get("bin")
            .and_then(|b| b.as_array())
            .map(|bins| {
                bins.iter()
                    .filter_map(|b| b.get("name").and_then(|n| n.as_str()))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if !bins.is_empty() {
            names.extend(bins);
        } else if member_dir.join("src").join("main.rs").is_file() {
            let Some(name) = doc
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
            else {
                bail!("{}: no `package.name`", member_manifest.display());
            };
            names.push(name.to_owned());
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

fn read_toml(path: &Path) -> Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse()
        .with_context(|| format!("{}: not valid TOML", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_guests() {
        let names = binary_names(&workspace_dir()).unwrap();
        assert!(names.contains(&"hello".to_owned()), "{names:?}");
        assert!(!names.contains(&"grt".to_owned()), "{names:?}");
    }

    #[test]
    fn members_binaries_and_libraries() {
        let dir = std::env::temp_dir().join(format!("xtask-guests-{}", std::process::id()));
        let write = |path: &str, text: &str| {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "Cargo.toml",
            "[workspace]\nmembers = [\"lib\", \"plain\", \"multi\"]\n",
        );
        write("lib/Cargo.toml", "[package]\nname = \"lib\"\n");
        write("lib/src/lib.rs", "");
        write("plain/Cargo.toml", "[package]\nname = \"plain\"\n");
        write("plain/src/main.rs", "");
        write(
            "multi/Cargo.toml",
            "[package]\nname = \"multi\"\n[[bin]]\nname = \"b\"\n[[bin]]\nname = \"a\"\n",
        );
        let names = binary_names(&dir);
        write("Cargo.toml", "[workspace]\nmembers = [\"*\"]\n");
        let glob = binary_names(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names.unwrap(), ["a", "b", "plain"]);
        assert!(format!("{:#}", glob.unwrap_err()).contains("not with a glob"));
    }
}
