//! Turns `configs/platforms/<platform>.toml` into Rust constants.
//!
//! The platform is `$AX_PLATFORM` when set, otherwise `qemu-virt-<target arch>` (`x86_64-pc`
//! on x86_64); host builds
//! (unit tests) use the aarch64 file so the constants exist everywhere.

use serde::Deserialize;
use std::{env, fs, path::PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    platform: Platform,
    /// What `xtask vmconfig check` knows about the host; not used by the hypervisor.
    #[serde(rename = "host")]
    _host: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Platform {
    name: String,
    arch: String,
    kernel_base: u64,
    early_uart: u64,
    max_cpus: usize,
    stack_size: usize,
}

fn main() {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap();
    let default = match (arch.as_str(), os.as_str()) {
        ("riscv64", "none") => "qemu-virt-riscv64",
        ("x86_64", "none") => "x86_64-pc",
        _ => "qemu-virt-aarch64",
    };
    println!("cargo:rerun-if-env-changed=AX_PLATFORM");
    let name = env::var("AX_PLATFORM").unwrap_or_else(|_| default.to_string());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let path = manifest
        .join("../../configs/platforms")
        .join(format!("{name}.toml"));
    println!("cargo:rerun-if-changed={}", path.display());
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("platform config {}: {e}", path.display()));
    let file: File =
        toml::from_str(&text).unwrap_or_else(|e| panic!("platform config {}: {e}", path.display()));
    let p = file.platform;
    if os == "none" && p.arch != arch {
        panic!(
            "platform config {}: field `platform.arch` is {:?} but the target is {arch}",
            path.display(),
            p.arch
        );
    }
    if p.max_cpus == 0 || !p.stack_size.is_multiple_of(4096) {
        panic!(
            "platform config {}: `max_cpus` must be > 0 and `stack_size` a multiple of 4096",
            path.display()
        );
    }
    let out = format!(
        "/// Platform name (`platform.name`).\n\
         pub const PLATFORM: &str = {:?};\n\
         /// Physical address the hypervisor image is linked at (`platform.kernel_base`).\n\
         pub const KERNEL_BASE: usize = {:#x};\n\
         /// UART used before the device tree is parsed (`platform.early_uart`; an I/O port on x86_64).\n\
         pub const EARLY_UART: usize = {:#x};\n\
         /// Most CPUs the hypervisor manages (`platform.max_cpus`).\n\
         pub const MAX_CPUS: usize = {};\n\
         /// Stack size of each boot CPU and each task (`platform.stack_size`).\n\
         pub const STACK_SIZE: usize = {:#x};\n",
        p.name, p.kernel_base, p.early_uart, p.max_cpus, p.stack_size
    );
    // Exported to dependents' build scripts as DEP_AXCONFIG_KERNEL_BASE (axhal's linker script).
    println!("cargo:kernel_base={:#x}", p.kernel_base);
    let dest = PathBuf::from(env::var("OUT_DIR").unwrap()).join("consts.rs");
    fs::write(dest, out).unwrap();
}
