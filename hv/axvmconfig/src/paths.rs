//! Image fields of a config read from a disk: paths relative to the config file. The
//! hypervisor resolves them on its disk (`vm create`, `/vms/*.toml` at boot) and `cargo
//! xtask vmconfig check --disk DIR` on the host, with this same code.

use crate::VmConfig;
use alloc::string::String;
use alloc::vec::Vec;

/// The largest config file the hypervisor reads from its disk (`/vms/*.toml`, `vm create`),
/// in bytes; `cargo xtask vmconfig check --disk` refuses a larger one as the boot does.
pub const DISK_CONFIG_MAX: u64 = 64 * 1024;

/// The image fields a config names, as (field, value), in the order `kernel.image`,
/// `kernel.initrd.image`, `kernel.dtb.image` (absent ones left out).
pub fn image_fields(config: &VmConfig) -> Vec<(&'static str, String)> {
    let k = &config.kernel;
    let mut out = alloc::vec![("kernel.image", k.image.clone())];
    if let Some(i) = &k.initrd {
        out.push(("kernel.initrd.image", i.image.clone()));
    }
    if let Some(image) = k.dtb.as_ref().and_then(|d| d.image.clone()) {
        out.push(("kernel.dtb.image", image));
    }
    out
}

/// The absolute path on the disk of image field value `value` in the config at
/// `config_file` (an absolute path on the disk): `value` itself when it starts with `/`,
/// else relative to the config's directory. Empty components and `.` are dropped, `..`
/// takes back one component and stops at the root.
pub fn image_path(config_file: &str, value: &str) -> String {
    let dir = match value.starts_with('/') {
        true => "",
        false => config_file.rsplit_once('/').map_or("", |(dir, _)| dir),
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in dir.split('/').chain(value.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return String::from("/");
    }
    let mut out = String::new();
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    out
}
