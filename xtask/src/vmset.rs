//! The VM configs built into one hypervisor image (a scenario's `vms`, `run --vm`), packed
//! for attaching to the image, the name of that image, and the order in which the images a
//! test run needs are built.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use axvmpack::PackedVm;

use crate::arch::Arch;
use crate::{realguest, util, vmembed};

/// VM config files, in order, as paths relative to the repository root (absolute for files
/// outside it). Empty: the plain image.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmSet(Vec<String>);

/// Longest readable part of a variant name before it is shortened to a count.
const MAX_LABEL: usize = 40;

impl VmSet {
    /// No VMs: the plain image.
    pub fn none() -> Self {
        VmSet::default()
    }

    /// VM configs given relative to `root` (as scenario files give them). Each must be an
    /// existing file.
    pub fn from_root_relative(root: &Path, files: &[String]) -> Result<Self> {
        let mut set = Vec::new();
        for (i, file) in files.iter().enumerate() {
            let file = file.strip_prefix("./").unwrap_or(file);
            if file.is_empty() {
                bail!("entry {i} is an empty string");
            }
            if !root.join(file).is_file() {
                bail!(
                    "entry {i}: the VM config {file} does not exist (paths are relative to {})",
                    root.display()
                );
            }
            set.push(file.to_owned());
        }
        Ok(VmSet(set))
    }

    /// VM configs given on the command line (relative to the current directory).
    pub fn from_cli(paths: &[PathBuf]) -> Result<Self> {
        let root = util::repo_root();
        let mut files = Vec::new();
        for path in paths {
            let absolute = std::path::absolute(path)
                .with_context(|| format!("resolving {}", path.display()))?;
            let file = match absolute.strip_prefix(root) {
                Ok(relative) => relative.to_string_lossy().into_owned(),
                Err(_) => absolute.to_string_lossy().into_owned(),
            };
            files.push(file);
        }
        Self::from_root_relative(root, &files).context("--vm")
    }

    /// Whether there are no VMs (the plain image).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The config files.
    pub fn files(&self) -> &[String] {
        &self.0
    }

    /// The name of the image with these VMs for `arch`: `<arch>-<label>-<hash>`, where the
    /// label is the config file names without `.toml` and without an `<arch>-` prefix,
    /// joined by `+` (or `<count>vms` when that gets long), and the hash (8 hex digits of
    /// FNV-1a over the paths) tells apart sets whose labels are alike.
    pub fn variant_name(&self, arch: Arch) -> String {
        let prefix = format!("{arch}-");
        let stems: Vec<String> = self
            .0
            .iter()
            .map(|f| {
                let stem = Path::new(f)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let stem = stem.strip_prefix(&prefix).unwrap_or(&stem);
                stem.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect()
            })
            .collect();
        let mut label = stems.join("+");
        if label.is_empty() || label.len() > MAX_LABEL {
            label = format!("{}vms", stems.len());
        }
        format!(
            "{arch}-{label}-{:08x}",
            fnv1a32(self.0.join("\n").as_bytes())
        )
    }

    /// Makes the real guests these configs name available in `guest_dir`: an image named
    /// [`LINUX_KERNEL`] or [`LINUX_INITRAMFS`] is the Debian kernel / marker initramfs of
    /// `arch` (`cargo xtask guests fetch`, done here when missing), one named
    /// [`LINUX_KERNEL_UNPACKED`] the x86_64 kernel decompressed on the host
    /// ([`realguest::ensure_unpacked`]), one named
    /// [`realguest::uboot::IMAGE`] Debian's U-Boot (`guests fetch-uboot`, likewise), linked
    /// into the guest directory as `<name>.bin`.
    pub fn provide_real_guests(&self, arch: Arch, guest_dir: &Path) -> Result<()> {
        let root = util::repo_root();
        let mut wanted = false;
        let mut wanted_uboot = false;
        let mut wanted_unpacked = false;
        for file in &self.0 {
            let path = root.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the VM config {}", path.display()))?;
            let refs = vmembed::image_refs(&text).map_err(anyhow::Error::msg)?;
            wanted |= refs
                .iter()
                .any(|r| r.name == LINUX_KERNEL || r.name == LINUX_INITRAMFS);
            wanted_uboot |= refs.iter().any(|r| r.name == realguest::uboot::IMAGE);
            wanted_unpacked |= refs.iter().any(|r| r.name == LINUX_KERNEL_UNPACKED);
        }
        let mut links = Vec::new();
        if wanted {
            let guest = realguest::ensure(arch)?;
            links.push((LINUX_KERNEL, guest.kernel));
            links.push((LINUX_INITRAMFS, guest.initramfs));
        }
        if wanted_uboot {
            links.push((realguest::uboot::IMAGE, realguest::uboot::ensure(arch)?));
        }
        if wanted_unpacked {
            links.push((LINUX_KERNEL_UNPACKED, realguest::ensure_unpacked(arch)?));
        }
        if links.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(guest_dir)
            .with_context(|| format!("creating {}", guest_dir.display()))?;
        for (name, target) in &links {
            let link = vmembed::image_file(guest_dir, name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(target, &link)
                .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
        }
        Ok(())
    }

    /// Packs the configs and the images they name (`<guest_dir>/<name>.bin`) as the VM set
    /// a hypervisor image carries (`axvmpack`'s format, see [`crate::attach`]). A missing
    /// image is an error naming the config, the field and the file.
    pub fn pack(&self, guest_dir: &Path) -> Result<Vec<u8>> {
        let root = util::repo_root();
        let mut read = Vec::new();
        for file in &self.0 {
            let path = root.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the VM config {}", path.display()))?;
            let images = vmembed::resolve_images(Path::new(file), &text, guest_dir)
                .map_err(anyhow::Error::msg)?
                .into_iter()
                .map(|(name, image)| {
                    let bytes = std::fs::read(&image)
                        .with_context(|| format!("reading the guest image {}", image.display()))?;
                    Ok((name, bytes))
                })
                .collect::<Result<Vec<_>>>()?;
            read.push((file, text, images));
        }
        let vms: Vec<PackedVm<'_>> = read
            .iter()
            .map(|(file, text, images)| PackedVm {
                file,
                config: text,
                images: images
                    .iter()
                    .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
                    .collect(),
            })
            .collect();
        axvmpack::encode(&vms).map_err(|e| anyhow!("packing the VMs {self}: {e}"))
    }
}

impl fmt::Display for VmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(none)")
        } else {
            f.write_str(&self.files().join(", "))
        }
    }
}

/// The image name VM configs use for the fetched Linux kernel of their architecture.
pub const LINUX_KERNEL: &str = "linux";
/// The image name for the fetched marker initramfs.
pub const LINUX_INITRAMFS: &str = "linux-initramfs";
/// The image name for the fetched x86_64 kernel decompressed on the host
/// (`bzImage-unpacked`, docs/x86-linux.md).
pub const LINUX_KERNEL_UNPACKED: &str = "linux-unpacked";

/// 32-bit FNV-1a: a small, stable hash for file names.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The hypervisor images to build, in build order: each distinct (architecture, VM set) in
/// `needed` once, plus the plain image of every architecture in `plain`; per architecture
/// the images with VMs first and the plain image last (each build is copied out of cargo's
/// output, so the order is only for a stable log).
pub fn build_plan(
    needed: impl IntoIterator<Item = (Arch, VmSet)>,
    plain: &[Arch],
) -> Vec<(Arch, VmSet)> {
    let mut set: BTreeSet<(Arch, bool, VmSet)> = needed
        .into_iter()
        .map(|(arch, vms)| (arch, vms.is_empty(), vms))
        .collect();
    set.extend(plain.iter().map(|&arch| (arch, true, VmSet::none())));
    set.into_iter().map(|(arch, _, vms)| (arch, vms)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[&str]) -> VmSet {
        VmSet(files.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn variant_names_are_readable_stable_and_distinct() {
        let hello = set(&["configs/vms/aarch64-hello.toml"]);
        let name = hello.variant_name(Arch::Aarch64);
        assert!(name.starts_with("aarch64-hello-"), "{name}");
        assert_eq!(name.len(), "aarch64-hello-".len() + 8, "{name}");
        assert_eq!(name, hello.clone().variant_name(Arch::Aarch64));
        // The arch prefix is stripped only when it is this image's arch.
        assert!(hello
            .variant_name(Arch::Riscv64)
            .starts_with("riscv64-aarch64-hello-"));
        // Same file names in another directory, or another order: another image.
        let elsewhere = set(&["tests/vms/aarch64-hello.toml"]).variant_name(Arch::Aarch64);
        assert!(elsewhere.starts_with("aarch64-hello-"));
        assert_ne!(elsewhere, name);
        let two = set(&["a/aarch64-x.toml", "a/y z.toml"]);
        let swapped = set(&["a/y z.toml", "a/aarch64-x.toml"]);
        assert!(two
            .variant_name(Arch::Aarch64)
            .starts_with("aarch64-x+y_z-"));
        assert_ne!(
            two.variant_name(Arch::Aarch64)[..],
            swapped.variant_name(Arch::Aarch64)[..]
        );
        let many = set(&[
            "a-very-long-config-name-1.toml",
            "a-very-long-config-name-2.toml",
            "a-very-long-config-name-3.toml",
        ]);
        assert!(many
            .variant_name(Arch::Riscv64)
            .starts_with("riscv64-3vms-"));
    }

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn build_plan_groups_and_puts_the_plain_image_last() {
        let a = set(&["configs/vms/aarch64-hello.toml"]);
        let b = set(&["configs/vms/aarch64-two.toml"]);
        let r = set(&["configs/vms/riscv64-hello.toml"]);
        let needed = [
            (Arch::Riscv64, r.clone()),
            (Arch::Aarch64, b.clone()),
            (Arch::Aarch64, VmSet::none()),
            (Arch::Aarch64, a.clone()),
            (Arch::Aarch64, b.clone()),
            (Arch::Riscv64, r.clone()),
        ];
        assert_eq!(
            build_plan(needed.clone(), &[]),
            [
                (Arch::Aarch64, a.clone()),
                (Arch::Aarch64, b.clone()),
                (Arch::Aarch64, VmSet::none()),
                (Arch::Riscv64, r.clone()),
            ]
        );
        // A full run also builds every architecture's plain image.
        assert_eq!(
            build_plan(needed, &[Arch::Aarch64, Arch::Riscv64]),
            [
                (Arch::Aarch64, a),
                (Arch::Aarch64, b),
                (Arch::Aarch64, VmSet::none()),
                (Arch::Riscv64, r),
                (Arch::Riscv64, VmSet::none()),
            ]
        );
        assert!(build_plan([], &[]).is_empty());
    }

    #[test]
    fn files_are_checked() {
        let root = util::repo_root();
        let ok = VmSet::from_root_relative(root, &["./configs/vms/aarch64-hello.toml".to_owned()])
            .unwrap();
        assert_eq!(ok.files(), ["configs/vms/aarch64-hello.toml"]);
        let err = |files: &[&str]| {
            let files: Vec<String> = files.iter().map(|s| (*s).to_owned()).collect();
            format!("{:#}", VmSet::from_root_relative(root, &files).unwrap_err())
        };
        assert!(err(&["configs/vms/nope.toml"]).contains("does not exist"));
        assert!(err(&[""]).contains("entry 0 is an empty string"));
        assert!(err(&["configs/vms/aarch64-hello.toml", "a.toml"]).contains("entry 1"));
        assert_eq!(VmSet::none().to_string(), "(none)");
        assert!(VmSet::none().is_empty());
    }

    #[test]
    fn cli_paths_become_repository_relative() {
        let abs = util::repo_root().join("configs/vms/riscv64-hello.toml");
        let set = VmSet::from_cli(&[abs]).unwrap();
        assert_eq!(set.files(), ["configs/vms/riscv64-hello.toml"]);
        assert!(VmSet::from_cli(&[PathBuf::from("/no/such/vm.toml")]).is_err());
    }
}
