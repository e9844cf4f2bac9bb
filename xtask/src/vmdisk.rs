//! A scenario's VMs on its disk (`vms_from = "disk"`, docs/testing.md): added to the
//! directory its disk image is made from as `/vms/<NN>-<config file name>` for each of its
//! VM configs, in order (`NN` = 00, 01, …, so the hypervisor's name order is the
//! scenario's), and the guest images they name as `/images/<name>.bin`. Each config's
//! image fields are rewritten to those files (`../images/<name>.bin`, a path relative to
//! the config, docs/vm-config.md). Images are symbolic links (the disk builder follows
//! them), so this copies nothing large.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::vmembed::{self, IMAGE_FIELDS};
use crate::vmset::VmSet;

/// The disk directory holding the VM configs the hypervisor loads at boot.
pub const VMS_DIR: &str = "vms";
/// The disk directory holding the guest images.
pub const IMAGES_DIR: &str = "images";

/// Serializes [`VmSet::provide_real_guests`], which relinks files in the guest directory,
/// between the scenario workers and the image builds running beside them.
static REAL_GUESTS: Mutex<()> = Mutex::new(());

/// [`VmSet::provide_real_guests`], one caller at a time.
pub fn provide_real_guests(vms: &VmSet, arch: Arch, guest_dir: &Path) -> Result<()> {
    let _guard = REAL_GUESTS.lock().unwrap_or_else(|e| e.into_inner());
    vms.provide_real_guests(arch, guest_dir)
}

/// Adds the VMs of `vms` (for `arch`), whose images are in `guest_dir`, to the disk
/// directory `dir`. The fetched Linux images a config names are provided first (as the
/// build with VMs does); the links on the disk point to the files themselves.
pub fn add_vms(dir: &Path, arch: Arch, vms: &VmSet, guest_dir: &Path) -> Result<()> {
    provide_real_guests(vms, arch, guest_dir)?;
    let vms_dir = dir.join(VMS_DIR);
    let images_dir = dir.join(IMAGES_DIR);
    for d in [&vms_dir, &images_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let root = crate::util::repo_root();
    for (i, file) in vms.files().iter().enumerate() {
        let text = std::fs::read_to_string(root.join(file))
            .with_context(|| format!("reading the VM config {file}"))?;
        let images = vmembed::resolve_images(Path::new(file), &text, guest_dir)
            .map_err(anyhow::Error::msg)?;
        let name = Path::new(file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let config = vms_dir.join(format!("{i:02}-{name}"));
        if config.exists() {
            bail!("{} exists already", config.display());
        }
        let text = disk_config(&text).with_context(|| file.clone())?;
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        for (image, path) in images {
            let link = images_dir.join(format!("{image}.bin"));
            if link.exists() {
                continue;
            }
            let path = std::fs::canonicalize(&path)
                .with_context(|| format!("resolving {}", path.display()))?;
            std::os::unix::fs::symlink(&path, &link)
                .with_context(|| format!("linking {} to {}", link.display(), path.display()))?;
        }
    }
    Ok(())
}

/// The config text as it goes on the disk: every image field names
/// `../images/<name>.bin`.
fn disk_config(text: &str) -> Result<String> {
    let mut doc: toml::Table = text.parse().context("not valid TOML")?;
    for field in IMAGE_FIELDS {
        let mut parts: Vec<&str> = field.split('.').collect();
        let Some(last) = parts.pop() else { continue };
        let mut table = Some(&mut doc);
        for part in parts {
            table = match table.and_then(|t| t.get_mut(part)) {
                Some(toml::Value::Table(inner)) => Some(inner),
                _ => None,
            };
        }
        if let Some(toml::Value::String(name)) = table.and_then(|t| t.get_mut(last)) {
            *name = format!("../{IMAGES_DIR}/{name}.bin");
        }
    }
    Ok(toml::to_string(&doc)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_in_order_with_their_images() {
        let tmp = std::env::temp_dir().join(format!("xtask-vmdisk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let guests = tmp.join("guests");
        std::fs::create_dir_all(&guests).unwrap();
        std::fs::write(guests.join("hello.bin"), b"hello guest").unwrap();
        std::fs::write(guests.join("hypercall.bin"), b"hc").unwrap();
        let vms = VmSet::from_root_relative(
            crate::util::repo_root(),
            &[
                "configs/vms/aarch64-hypercall.toml".to_owned(),
                "configs/vms/aarch64-hello.toml".to_owned(),
            ],
        )
        .unwrap();
        let dir = tmp.join("disk");
        // A scenario's own disk directory may hold an image already.
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::write(dir.join("images/hello.bin"), b"own").unwrap();
        add_vms(&dir, Arch::Aarch64, &vms, &guests).unwrap();
        let list = |d: &str| {
            let mut names: Vec<String> = std::fs::read_dir(dir.join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            list("vms"),
            ["00-aarch64-hypercall.toml", "01-aarch64-hello.toml"]
        );
        assert_eq!(list("images"), ["hello.bin", "hypercall.bin"]);
        assert_eq!(
            std::fs::read(dir.join("images/hypercall.bin")).unwrap(),
            b"hc"
        );
        assert_eq!(std::fs::read(dir.join("images/hello.bin")).unwrap(), b"own");
        let config = std::fs::read_to_string(dir.join("vms/01-aarch64-hello.toml")).unwrap();
        let doc: toml::Table = config.parse().unwrap();
        assert_eq!(doc["kernel"]["image"].as_str(), Some("../images/hello.bin"));

        // Adding the same VMs twice is refused; a missing image names the field.
        let err = add_vms(&dir, Arch::Aarch64, &vms, &guests).unwrap_err();
        assert!(format!("{err:#}").contains("exists already"), "{err:#}");
        let err = add_vms(&tmp.join("other"), Arch::Aarch64, &vms, &tmp.join("none")).unwrap_err();
        assert!(
            format!("{err:#}").contains("field `kernel.image`"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn every_image_field_is_rewritten() {
        let text = "id = 1\n[kernel]\nimage = \"linux\"\nload_addr = 0x4020_0000\n\
                    dtb = { image = \"vm-dtb\", load_addr = 1 }\ninitrd = { image = \"rd\" }\n";
        let doc: toml::Table = disk_config(text).unwrap().parse().unwrap();
        assert_eq!(doc["kernel"]["image"].as_str(), Some("../images/linux.bin"));
        assert_eq!(
            doc["kernel"]["dtb"]["image"].as_str(),
            Some("../images/vm-dtb.bin")
        );
        assert_eq!(
            doc["kernel"]["initrd"]["image"].as_str(),
            Some("../images/rd.bin")
        );
        assert_eq!(doc["kernel"]["load_addr"].as_integer(), Some(0x4020_0000));
        assert_eq!(doc["id"].as_integer(), Some(1));
    }
}
