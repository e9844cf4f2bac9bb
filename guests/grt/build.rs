//! Fills this architecture's linker script with the guest's link address (the RAM base; 2
//! MiB into RAM on x86_64) and stack size (from `src/layout.rs`) and hands its path to every
//! guest's build script as `DEP_GRT_LINKER_SCRIPT` (through `links = "grt"`), like the hypervisor's axhal does.

use std::{env, fs, path::PathBuf};

#[path = "src/layout.rs"]
#[allow(dead_code)] // RAM_SIZE and X86_64_RAM_BASE are for the guests, not the linker script
mod layout;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=src/layout.rs");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    // The link (and load and entry) address: the RAM base, or on x86_64 2 MiB into RAM.
    let base = match arch.as_str() {
        "aarch64" => layout::AARCH64_RAM_BASE,
        "riscv64" => layout::RISCV64_RAM_BASE,
        "x86_64" => layout::X86_64_IMAGE_BASE,
        // Host builds (and architectures without a port) link no guest.
        _ => return,
    };
    let template = manifest.join("linker").join(format!("{arch}.ld"));
    println!("cargo:rerun-if-changed={}", template.display());
    let text = fs::read_to_string(&template)
        .unwrap_or_else(|e| panic!("reading {}: {e}", template.display()));
    let script = text
        .replace("%RAM_BASE%", &format!("{base:#x}"))
        .replace("%STACK_SIZE%", &format!("{:#x}", layout::STACK_SIZE));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("grt.ld");
    fs::write(&out, script).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    println!("cargo:linker_script={}", out.display());
}
