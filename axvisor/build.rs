//! Links the image with axhal's linker script for the target architecture. (VMs are not
//! compiled in: `cargo xtask build --vms` attaches them to the linked image, see
//! `src/images.rs`.)

use std::env;

fn main() {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let script = env::var("DEP_AXHAL_LINKER_SCRIPT")
        .expect("axhal provides a linker script for this architecture");
    println!("cargo:rustc-link-arg=-T{script}");
    println!("cargo:rustc-link-arg=--no-relax");
    println!("cargo:rerun-if-changed={script}");
}
