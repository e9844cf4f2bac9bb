//! Writes the boot plan of a bzImage for a VM with RAM at 0 (and the initrd placed in it) as
//! files, and prints QEMU `-device loader` options that put each where the plan says.
//!
//! With `stub.S` (beside this file) as the firmware this boots Linux on QEMU's `microvm`
//! exactly as the hypervisor will load it: no BIOS, the zero page, e820 map and ACPI tables
//! from this crate. The recipe is in `docs/x86-linux.md#checking-the-plan-on-qemu`.
//!
//! ```sh
//! cargo run -p axbootx86 --example plan -- BZIMAGE INITRD CPUS MEM_MIB OUT_DIR "CMDLINE"
//! ```

use std::{env, fs, process::ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let [kernel, initrd, cpus, mem_mib, out, cmdline] = &args[..] else {
        eprintln!("usage: plan BZIMAGE INITRD CPUS MEM_MIB OUT_DIR CMDLINE");
        return ExitCode::FAILURE;
    };
    let (Ok(cpus), Ok(mem_mib)) = (cpus.parse::<usize>(), mem_mib.parse::<u64>()) else {
        eprintln!("CPUS and MEM_MIB are numbers");
        return ExitCode::FAILURE;
    };
    let read = |p: &str| fs::read(p).unwrap_or_else(|e| panic!("reading {p}: {e}"));
    let (kernel, initrd) = (read(kernel), read(initrd));
    let pin: Vec<String> = (0..cpus).map(|c| c.to_string()).collect();
    let config = axvmconfig::from_toml(&format!(
        "id = 1\nname = \"linux\"\n[cpus]\ncount = {cpus}\npin = [{}]\n\
         [kernel]\nimage = \"linux\"\nload_addr = 0x1000000\nentry = 0x1000200\n\
         [[memory]]\ngpa = 0\nsize = {:#x}\nmap = \"alloc\"\n\
         [[devices]]\nkind = \"ns16550\"\nport = 0x3f8\nirq = 4\n",
        pin.join(", "),
        mem_mib << 20
    ))
    .expect("the VM config");
    let image = match axbootx86::BzImage::parse(&kernel) {
        Ok(image) => image,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = match axbootx86::plan(&config, &image, cmdline, Some(initrd.len() as u64)) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut files: Vec<(&str, &[u8], u64)> = vec![
        ("zeropage.bin", &plan.zero_page, plan.rsi),
        ("cmdline.bin", &plan.cmdline, axbootx86::linux::CMDLINE_ADDR),
        ("acpi.bin", &plan.acpi.blob, plan.acpi.base),
        ("kernel.bin", image.kernel(), plan.kernel_addr),
    ];
    if let Some(r) = &plan.initrd {
        files.push(("initrd.bin", &initrd, r.start));
    }
    for (name, data, addr) in files {
        let path = format!("{out}/{name}");
        fs::write(&path, data).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        println!("-device loader,file={path},addr={addr:#x},force-raw=on");
    }
    eprintln!("entry {:#x}, rsi {:#x}", plan.entry, plan.rsi);
    for e in plan.e820.entries() {
        eprintln!("e820 {:#x}..{:#x} {:?}", e.addr, e.end(), e.kind);
    }
    for (what, r) in plan.regions() {
        eprintln!("{what}: {:#x}..{:#x}", r.start, r.end);
    }
    ExitCode::SUCCESS
}
