//! Links the image with axhal's linker script for the target architecture.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let script = std::env::var("DEP_AXHAL_LINKER_SCRIPT")
        .expect("axhal provides a linker script for this architecture");
    println!("cargo:rustc-link-arg=-T{script}");
    println!("cargo:rustc-link-arg=--no-relax");
    println!("cargo:rerun-if-changed={script}");
}
