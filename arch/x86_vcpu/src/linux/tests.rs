//! The bzImage boot's placements, from a small fake bzImage (Debian's header values, a
//! 0x1234-byte protected-mode part).

use super::*;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

const MIB: u64 = 1 << 20;
/// Setup sectors of the fake: the protected-mode kernel starts at (39 + 1) × 512.
const SETUP_LEN: usize = 40 * 512;
const KERNEL_LEN: usize = 0x1234;

/// A bzImage with Debian bookworm's header values: 64-bit entry, `pref_address` 16 MiB,
/// `init_size` 0x3F9_7000.
fn bzimage() -> &'static [u8] {
    let mut f = vec![0u8; SETUP_LEN + KERNEL_LEN];
    for (i, b) in f.iter_mut().enumerate().skip(SETUP_LEN) {
        *b = (i * 7 + 3) as u8;
    }
    f[0x1f1] = 39;
    f[0x1f4..0x1f8].copy_from_slice(&(KERNEL_LEN.div_ceil(16) as u32).to_le_bytes());
    f[0x1fe..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
    f[0x200] = 0xEB;
    f[0x201] = 0x6A;
    f[0x202..0x206].copy_from_slice(b"HdrS");
    f[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    f[0x211] = 1; // LOADED_HIGH
    f[0x22c..0x230].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    f[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
    f[0x234] = 1;
    f[0x236..0x238].copy_from_slice(&0x7Fu16.to_le_bytes());
    f[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    f[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
    f[0x260..0x264].copy_from_slice(&0x3F9_7000u32.to_le_bytes());
    f.leak()
}

const INITRD: &[u8] = b"070701 the marker initramfs";

/// `configs/vms/x86_64-linux.toml`'s shape, two vCPUs, 128 MiB.
const CONFIG: &str = r#"
id = 30
name = "linux"
[cpus]
count = 2
pin = [1, 1]
[kernel]
image = "linux"
format = "linux-bzimage"
load_addr = 0x100_0000
cmdline = "console=ttyS0"
initrd = { image = "linux-initramfs", load_addr = 0x600_0000 }
[[memory]]
gpa = 0
size = 0x800_0000
map = "alloc"
[[devices]]
kind = "ns16550"
port = 0x3f8
irq = 4
"#;

fn config() -> VmConfig {
    axvmconfig::from_toml(CONFIG).unwrap()
}

fn boot(config: &VmConfig) -> Result<Option<KernelBoot>, LinuxBootError> {
    let kernel = bzimage();
    prepare_boot(
        config,
        &|name| match name {
            "linux" => Some(kernel),
            "linux-initramfs" => Some(INITRD),
            _ => None,
        },
        0,
    )
}

#[test]
fn a_bzimage_vm_gets_the_plans_placements() {
    let kernel = bzimage();
    let config = config();
    let k = prepare_boot(
        &config,
        &|name| match name {
            "linux" => Some(kernel),
            "linux-initramfs" => Some(INITRD),
            _ => None,
        },
        2_000_000,
    )
    .unwrap()
    .unwrap();
    // The protected-mode kernel, borrowed from the file (not a copy), at load_addr; the
    // initrd where the config puts it.
    assert_eq!(k.images.len(), 2);
    assert_eq!(k.images[0].gpa, 0x100_0000);
    assert_eq!(k.images[0].bytes.as_ptr(), kernel[SETUP_LEN..].as_ptr());
    assert_eq!(k.images[0].bytes.len(), KERNEL_LEN);
    assert_eq!(k.images[0].name, "linux (protected-mode kernel)");
    assert_eq!(k.images[1].gpa, 0x600_0000);
    assert_eq!(k.images[1].bytes, INITRD);
    assert_eq!(k.images[1].name, "linux-initramfs");
    // The zero page, the command line and the ACPI tables, as the plan builds them.
    let image = BzImage::parse(kernel).unwrap();
    let plan = axbootx86::plan(
        &config,
        &image,
        "console=ttyS0 tsc_early_khz=2000000",
        Some(INITRD.len() as u64),
    )
    .unwrap();
    let addrs: Vec<u64> = k.data.iter().map(|(a, _)| *a).collect();
    assert_eq!(addrs, [0x1_0000, 0x2_0000, 0xE_0000]);
    assert_eq!(k.data[0].1, plan.zero_page);
    // The command line, told the TSC's rate.
    assert_eq!(k.data[1].1, b"console=ttyS0 tsc_early_khz=2000000\0");
    assert_eq!(&k.data[2].1[..8], b"RSD PTR ");
    // The zero page points at the initrd the config placed.
    let zp = &k.data[0].1;
    assert_eq!(zp[0x218..0x21C], 0x600_0000u32.to_le_bytes());
    assert_eq!(zp[0x21C..0x220], (INITRD.len() as u32).to_le_bytes());
    // The 64-bit entry, RSI = the zero page; the config's entry says the same.
    assert_eq!(k.entry, 0x100_0200);
    assert_eq!(k.entry, config.kernel.entry);
    assert_eq!(k.regs, [(RSI, 0x1_0000)]);
}

#[test]
fn other_formats_are_not_touched() {
    let text = "id = 1\nname = \"hello\"\n[cpus]\ncount = 1\npin = [1]\n[kernel]\nimage = \
                \"hello\"\nload_addr = 0x20_0000\n[[memory]]\ngpa = 0\nsize = 0x100_0000\nmap = \
                \"alloc\"\n";
    let raw = axvmconfig::from_toml(text).unwrap();
    assert_eq!(prepare_boot(&raw, &|_| None, 1), Ok(None));
}

#[test]
fn errors_name_what_is_wrong() {
    // A load address that is not the header's.
    let mut moved = config();
    moved.kernel.load_addr = 0x200_0000;
    let err = boot(&moved).unwrap_err();
    assert_eq!(
        err,
        LinuxBootError::LoadAddress {
            config: 0x200_0000,
            header: 0x100_0000
        }
    );
    assert_eq!(
        err.to_string(),
        "kernel.load_addr: is 0x2000000, but the bzImage's setup header loads the kernel at \
         0x1000000; set load_addr = 0x1000000"
    );
    // Missing images, by field.
    let mut no_initrd = config();
    no_initrd.kernel.initrd.as_mut().unwrap().image = String::from("nope");
    assert_eq!(
        boot(&no_initrd).unwrap_err().to_string(),
        "kernel.initrd.image: image \"nope\" is not in the hypervisor image"
    );
    // Not a bzImage.
    let not = config();
    let err = prepare_boot(
        &not,
        &|name| Some(if name == "linux" { &b"MZ"[..] } else { INITRD }),
        0,
    )
    .unwrap_err();
    assert!(
        matches!(err, LinuxBootError::Plan(BootError::Kernel(_))),
        "{err:?}"
    );
    // RAM too small for the kernel to decompress itself.
    let mut small = config();
    small.memory[0].size = 64 * MIB;
    small.kernel.initrd.as_mut().unwrap().load_addr = 0x300_0000;
    let err = boot(&small).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Linux boot: the kernel needs RAM at 0x1000000..0x4f97000 (load address + init_size), \
         which the VM does not have"
    );
    // An initrd inside the kernel's footprint.
    let mut inside = config();
    inside.kernel.initrd.as_mut().unwrap().load_addr = 0x200_0000;
    assert!(matches!(
        boot(&inside),
        Err(LinuxBootError::Plan(BootError::InitrdMisplaced { .. }))
    ));
}

#[test]
fn the_command_line_gets_the_tsc_rate_unless_it_has_one() {
    assert_eq!(
        kernel_cmdline("console=ttyS0", 2_100_000),
        "console=ttyS0 tsc_early_khz=2100000"
    );
    assert_eq!(
        kernel_cmdline("quiet  ", 99_998),
        "quiet tsc_early_khz=99998"
    );
    assert_eq!(kernel_cmdline("", 99_998), "tsc_early_khz=99998");
    assert_eq!(kernel_cmdline(" ", 99_998), "tsc_early_khz=99998");
    // The user's own value wins; an unknown rate adds nothing.
    assert_eq!(
        kernel_cmdline("a tsc_early_khz=5 b", 99_998),
        "a tsc_early_khz=5 b"
    );
    assert_eq!(kernel_cmdline("console=ttyS0", 0), "console=ttyS0");
    // Another option merely containing the name is not it.
    assert_eq!(
        kernel_cmdline("xtsc_early_khz=5", 7),
        "xtsc_early_khz=5 tsc_early_khz=7"
    );
}
