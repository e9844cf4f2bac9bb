//! Links the guest with grt's linker script for the target architecture. On riscv64 the
//! script's base is moved up by [`RISCV64_OFFSET`], to where OpenSBI starts its payload, so
//! that the same ELF also runs on a machine without the hypervisor (the latency baseline of
//! `cargo xtask bench`); its VM config loads it there.

/// grt's riscv64 link address (QEMU virt's RAM base, `grt::layout::RISCV64_RAM_BASE`).
const RISCV64_RAM_BASE: u64 = 0x8000_0000;
/// Where OpenSBI (`fw_dynamic`) enters the next stage: 2 MiB above the RAM base.
const RISCV64_OFFSET: u64 = 0x20_0000;

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let grt_script = std::env::var("DEP_GRT_LINKER_SCRIPT")
        .expect("grt provides a linker script for this architecture");
    println!("cargo:rerun-if-changed={grt_script}");
    let script = if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("riscv64") {
        let text = std::fs::read_to_string(&grt_script)
            .unwrap_or_else(|e| panic!("reading {grt_script}: {e}"));
        let base = format!(". = {RISCV64_RAM_BASE:#x};");
        assert!(
            text.contains(&base),
            "{grt_script} does not set `{base}`: update RISCV64_RAM_BASE"
        );
        let moved = text.replacen(
            &base,
            &format!(". = {:#x};", RISCV64_RAM_BASE + RISCV64_OFFSET),
            1,
        );
        let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("benchirq.ld");
        std::fs::write(&out, moved).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
        out.display().to_string()
    } else {
        grt_script
    };
    println!("cargo:rustc-link-arg-bins=-T{script}");
    // As in grt/guest-link.rs: x86_64 guests are plain static executables, not PIE.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
