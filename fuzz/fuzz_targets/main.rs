//! Every fuzz target in one instrumented binary (one build, one link). The program's file
//! name picks the target: `cargo xtask fuzz` links `<target>` to this binary beside it, so
//! `fuzz/target/<host triple>/release/vplic <input>` replays an input of `vplic`.
//!
//! Each target is the module `fuzz_targets/<name>.rs` with `pub fn run(data: &[u8])`; see
//! `docs/reliability.md#fuzzing`.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

// Declared one by one (not by a macro) so that rustfmt formats the target files.
mod arm_decode;
mod axfs;
mod axfs_ext4;
mod bzimage;
mod doorbell;
mod dtb;
mod multiboot;
mod ns16550;
mod pl011;
mod port_io;
mod riscv_decode;
mod shell;
mod vgic_cpuif;
mod vgic_dist;
mod vgic_redist;
mod virtio_blk;
mod virtio_mmio;
mod virtio_net;
mod vmconfig;
mod vplic;
mod vswitch;
mod x86_controls;
mod x86_cpuid_msr;
mod x86_decode;
mod x86_exit;
mod x86_gpt;
mod x86_vapic;

/// A target's `run`: one input.
type Run = fn(&[u8]);

/// `(name, run)` of each target, given by its module's name.
macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), $name::run)),*]
    };
}

/// Every target, in the order of `cargo xtask fuzz --list` (xtask's `fuzz::TARGETS`, which
/// a test compares with this list).
const TARGETS: &[(&str, Run)] = targets![
    vmconfig,
    dtb,
    multiboot,
    pl011,
    ns16550,
    vgic_dist,
    vgic_redist,
    vgic_cpuif,
    vplic,
    arm_decode,
    riscv_decode,
    x86_decode,
    x86_exit,
    x86_gpt,
    x86_controls,
    x86_cpuid_msr,
    port_io,
    x86_vapic,
    bzimage,
    axfs,
    axfs_ext4,
    shell,
    virtio_mmio,
    virtio_blk,
    virtio_net,
    vswitch,
    doorbell,
];

/// The target the program name picked.
static TARGET: OnceLock<Run> = OnceLock::new();

/// Picks the target named by the program's file name, before libFuzzer runs anything;
/// exits with the list of targets when it names none.
fn pick() {
    let program = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    match TARGETS.iter().find(|(n, _)| *n == name) {
        Some(&(_, run)) => {
            let _ = TARGET.set(run);
        }
        None => {
            let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            eprintln!(
                "{name:?} is no fuzz target; run this binary through a link named after one: {}",
                names.join(", ")
            );
            std::process::exit(2);
        }
    }
}

fuzz_target!(init: pick(), |data: &[u8]| {
    let run = TARGET.get().expect("a target is picked before the first input");
    run(data)
});
