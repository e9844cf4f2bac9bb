//! The build script of every test guest (each names it with `build = "../grt/guest-link.rs"`):
//! links the guest with grt's linker script for the target architecture.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let script = std::env::var("DEP_GRT_LINKER_SCRIPT")
        .expect("grt provides a linker script for this architecture");
    println!("cargo:rustc-link-arg-bins=-T{script}");
    // x86_64-unknown-none links position-independent executables, whose absolute addresses
    // a loader would have to relocate; a guest is entered where it is linked, so link it as
    // a plain static executable.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
    println!("cargo:rerun-if-changed={script}");
}
