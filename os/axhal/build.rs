//! Fills the architecture's linker script with the platform's link address and hands its
//! path to the final binary's build script as `DEP_AXHAL_LINKER_SCRIPT`.

use std::{env, fs, path::PathBuf};

fn main() {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let template = manifest.join("linker").join(format!("{arch}.ld"));
    println!("cargo:rerun-if-changed={}", template.display());
    let Ok(text) = fs::read_to_string(&template) else {
        // Host builds (and architectures without a port yet) link no image.
        return;
    };
    let base = env::var("DEP_AXCONFIG_KERNEL_BASE").expect("axconfig exports kernel_base");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("linker.ld");
    fs::write(&out, text.replace("%KERNEL_BASE%", &base)).unwrap();
    println!("cargo:linker_script={}", out.display());
}
