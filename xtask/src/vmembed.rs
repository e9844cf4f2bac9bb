//! Which guest images a VM config names, and where their files are: used to pack the VMs
//! an image carries ([`crate::vmset::VmSet::pack`]) and to put VMs on a scenario's disk
//! ([`crate::vmdisk`]). It reads the config loosely as a `toml::Value`: the strict checks
//! are `axvmconfig`'s job.

use std::path::{Path, PathBuf};

/// The config fields that name an image, in the order the images are embedded.
pub const IMAGE_FIELDS: [&str; 3] = ["kernel.image", "kernel.initrd.image", "kernel.dtb.image"];

/// An image named by a VM config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The field that names it (one of [`IMAGE_FIELDS`]).
    pub field: &'static str,
    /// The image name, e.g. `hello`.
    pub name: String,
}

/// The images a VM config's text names: `kernel.image` (required) and the optional
/// `kernel.initrd.image` and `kernel.dtb.image`, in that order, without repeats. An image
/// name is a file name without its `.bin`: not empty, no `/` or `\`, not `.` or `..`.
pub fn image_refs(config: &str) -> Result<Vec<ImageRef>, String> {
    let doc: toml::Table = config.parse().map_err(|e| format!("not valid TOML: {e}"))?;
    let mut refs: Vec<ImageRef> = Vec::new();
    for field in IMAGE_FIELDS {
        let mut value = None;
        let mut table = Some(&doc);
        let parts: Vec<&str> = field.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let Some(t) = table else { break };
            match t.get(*part) {
                Some(v) if i + 1 == parts.len() => value = Some(v),
                Some(toml::Value::Table(inner)) => table = Some(inner),
                Some(_) => {
                    return Err(format!(
                        "field `{}`: must be a table",
                        parts[..=i].join(".")
                    ))
                }
                None => table = None,
            }
        }
        let name = match value {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => return Err(format!("field `{field}`: must be a string")),
            None if field == IMAGE_FIELDS[0] => return Err(format!("field `{field}` is missing")),
            None => continue,
        };
        check_name(&name).map_err(|why| format!("field `{field}` = {name:?}: {why}"))?;
        if !refs.iter().any(|r| r.name == name) {
            refs.push(ImageRef { field, name });
        }
    }
    Ok(refs)
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("an image name must not be empty");
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err("an image name is a file name in the guest directory, without `.bin`");
    }
    Ok(())
}

/// The file of image `name`: `<guest_dir>/<name>.bin`.
pub fn image_file(guest_dir: &Path, name: &str) -> PathBuf {
    guest_dir.join(format!("{name}.bin"))
}

/// Every image the config at `config_file` (whose text is `config`) names, with its file in
/// `guest_dir`. Fails, naming the config file, the field and the path, when a file is
/// missing.
pub fn resolve_images(
    config_file: &Path,
    config: &str,
    guest_dir: &Path,
) -> Result<Vec<(String, PathBuf)>, String> {
    let shown = config_file.display();
    let refs = image_refs(config).map_err(|e| format!("{shown}: {e}"))?;
    let mut images = Vec::new();
    for r in refs {
        let file = image_file(guest_dir, &r.name);
        if !file.is_file() {
            return Err(format!(
                "{shown}: field `{}` = {:?}: the image {} does not exist \
                 (guest images are built by `cargo xtask build --arch ARCH`)",
                r.field,
                r.name,
                file.display()
            ));
        }
        images.push((r.name, file));
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(config: &str) -> Vec<(&'static str, String)> {
        image_refs(config)
            .unwrap()
            .into_iter()
            .map(|r| (r.field, r.name))
            .collect()
    }

    #[test]
    fn kernel_initrd_and_dtb_in_order_without_repeats() {
        let config = r#"
            id = 1
            [kernel]
            image = "linux"
            load_addr = 0x4020_0000
            dtb = { image = "vm1-dtb", load_addr = 0x4400_0000 }
            initrd = { image = "initramfs", load_addr = 0x4800_0000 }
        "#;
        assert_eq!(
            names(config),
            [
                ("kernel.image", "linux".to_owned()),
                ("kernel.initrd.image", "initramfs".to_owned()),
                ("kernel.dtb.image", "vm1-dtb".to_owned()),
            ]
        );
        let same = "[kernel]\nimage = \"a\"\ndtb = { image = \"a\" }\n";
        assert_eq!(names(same), [("kernel.image", "a".to_owned())]);
    }

    #[test]
    fn the_repository_hello_configs() {
        for arch in ["aarch64", "riscv64"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../configs/vms")
                .join(format!("{arch}-hello.toml"));
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(names(&text), [("kernel.image", "hello".to_owned())]);
        }
    }

    #[test]
    fn bad_configs_say_which_field() {
        let err = |config: &str| image_refs(config).unwrap_err();
        assert!(err("id = 1\n").contains("field `kernel.image` is missing"));
        assert!(err("[kernel]\nload_addr = 0\n").contains("`kernel.image` is missing"));
        assert!(err("kernel = 3\n").contains("field `kernel`: must be a table"));
        assert!(err("[kernel]\nimage = 5\n").contains("field `kernel.image`: must be a string"));
        assert!(err("[kernel]\nimage = \"\"\n").contains("must not be empty"));
        assert!(err("[kernel]\nimage = \"../x\"\n").contains("file name"));
        assert!(err("[kernel]\nimage = \"a\"\ninitrd = \"b\"\n")
            .contains("field `kernel.initrd`: must be a table"));
        assert!(err("[kernel]\nimage = \"a\"\ninitrd = { image = 1 }\n")
            .contains("`kernel.initrd.image`: must be a string"));
        assert!(err("[kernel\n").contains("not valid TOML"));
    }

    #[test]
    fn missing_images_name_the_config_the_field_and_the_path() {
        let dir = std::env::temp_dir().join(format!("xtask-vmembed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hello.bin"), b"guest").unwrap();
        let config = "[kernel]\nimage = \"hello\"\ninitrd = { image = \"rd\" }\n";
        let err = resolve_images(Path::new("vms/x.toml"), config, &dir).unwrap_err();
        let ok = resolve_images(
            Path::new("vms/x.toml"),
            "[kernel]\nimage = \"hello\"\n",
            &dir,
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            err.starts_with("vms/x.toml: field `kernel.initrd.image` = \"rd\""),
            "{err}"
        );
        assert!(
            err.contains(&format!("{} does not exist", dir.join("rd.bin").display())),
            "{err}"
        );
        assert_eq!(ok.unwrap(), [("hello".to_owned(), dir.join("hello.bin"))]);
        let err = resolve_images(Path::new("vms/y.toml"), "x = 1\n", &dir).unwrap_err();
        assert!(
            err.starts_with("vms/y.toml: field `kernel.image` is missing"),
            "{err}"
        );
    }
}
