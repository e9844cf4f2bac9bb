//! The build script of every test guest (each names it with `build = "../grt/guest-link.rs"`):
//! links the guest with grt's linker script for the target architecture.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let script = std::env::var("DEP_GRT_LINKER_SCRIPT")
        .expect("grt provides a linker script for this architecture");
    println!("cargo:rustc-link-arg-bins=-T{script}");
    println!("cargo:rerun-if-changed={script}");
}
