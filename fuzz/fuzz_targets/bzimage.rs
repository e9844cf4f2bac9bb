//! The x86 Linux boot protocol of `axbootx86`: any bytes as a bzImage through
//! `BzImage::parse`, and a parsed image through the zero page (`zeropage::build`) and the
//! boot plan (`linux::plan`) of one of three VM memory layouts, each with the initrd placed
//! by the plan or at an address the config gives, with any command-line length and initrd
//! size. The kernel file comes from the host, not a guest, but the hypervisor
//! reads every field of its header.
//!
//! The first byte picks the layout (and whether the config places the initrd), the next
//! eight the initrd size, the next two the
//! command-line length; the rest is the file.
//!
//! Checked: a parsed header ends between 0x202 and 0x290 and is the file's bytes there; the
//! kernel part is what follows the setup sectors, not empty, and holds `syssize`
//! paragraphs; the load address is at or above 1 MiB and starts the footprint, the entry is
//! 0x200 above it; the zero page is 4 KiB with the header copied and the sentinel clear; a
//! boot plan's regions do not overlap, the kernel and initrd are in RAM, the initrd is
//! page-aligned above 1 MiB, clear of the kernel, below `initrd_addr_max` + 1 (and 4 GiB
//! unless the kernel takes more) and, when the config places it, at the config's address;
//! the command line fits `cmdline_size`.

use std::sync::OnceLock;

use axbootx86::bzimage::{BzImage, SETUP_HEADER_MAX_END, SETUP_HEADER_OFFSET};
use axbootx86::e820::E820Map;
use axbootx86::linux;
use axbootx86::zeropage::{self, ZeroPageParams, ZERO_PAGE_SIZE};
use axvmconfig::VmConfig;

const MIB: u64 = 1 << 20;

/// A Linux VM's config with RAM at `ram` (start, size) and the initrd at `initrd` (or
/// placed by the plan).
fn config(ram: &[(u64, u64)], initrd: Option<u64>) -> VmConfig {
    let mut text = String::from(
        "id = 1\nname = \"linux\"\n[cpus]\ncount = 1\npin = [0]\n[kernel]\nimage = \"linux\"\n\
         load_addr = 0x1000000\nentry = 0x1000200\n",
    );
    if let Some(at) = initrd {
        text.push_str(&format!(
            "initrd = {{ image = \"initrd\", load_addr = {at:#x} }}\n"
        ));
    }
    for (gpa, size) in ram {
        text.push_str(&format!(
            "[[memory]]\ngpa = {gpa:#x}\nsize = {size:#x}\nmap = \"alloc\"\n"
        ));
    }
    text.push_str("[[devices]]\nkind = \"ns16550\"\nport = 0x3f8\nirq = 4\n");
    axvmconfig::from_toml(&text).expect("a valid Linux VM config")
}

/// The layouts: 256 MiB at 0; 64 MiB at 0 and 1 GiB at 4 GiB; 16 MiB at 0; each with the
/// initrd placed by the plan, then again with the initrd at an address in the config (in
/// the last RAM range, where a kernel of any footprint may collide with it).
fn configs() -> &'static [VmConfig; 6] {
    static C: OnceLock<[VmConfig; 6]> = OnceLock::new();
    C.get_or_init(|| {
        let layouts: [&[(u64, u64)]; 3] = [
            &[(0, 256 * MIB)],
            &[(0, 64 * MIB), (4 << 30, 1 << 30)],
            &[(0, 16 * MIB)],
        ];
        let at = [96 * MIB, 4 << 30, 8 * MIB];
        [
            config(layouts[0], None),
            config(layouts[1], None),
            config(layouts[2], None),
            config(layouts[0], Some(at[0])),
            config(layouts[1], Some(at[1])),
            config(layouts[2], Some(at[2])),
        ]
    })
}

fn low_e820() -> &'static E820Map {
    static M: OnceLock<E820Map> = OnceLock::new();
    M.get_or_init(|| {
        let ram = 0..256 * MIB;
        E820Map::build(std::slice::from_ref(&ram), &[], &[]).expect("a valid map")
    })
}

/// Runs one input.
pub fn run(data: &[u8]) {
    if data.len() < 11 {
        return;
    }
    let (head, file) = data.split_at(11);
    let layout = usize::from(head[0]) % 6;
    let initrd = u64::from_le_bytes(head[1..9].try_into().unwrap_or_default());
    let cmdline_len = usize::from(u16::from_le_bytes([head[9], head[10]])) % 4096;

    let image = match BzImage::parse(file) {
        Ok(image) => image,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };

    // The header and the kernel part.
    assert!((0x202..=SETUP_HEADER_MAX_END).contains(&image.header_end));
    assert_eq!(
        image.setup_header(),
        &file[SETUP_HEADER_OFFSET..image.header_end]
    );
    let kernel = image.kernel();
    assert!(!kernel.is_empty());
    assert_eq!(kernel, &file[image.setup_len()..]);
    assert!(u64::from(image.syssize) * 16 <= (kernel.len() as u64).next_multiple_of(16));
    let load = image.load_address();
    assert!(load >= 0x10_0000);
    let footprint = image.footprint();
    assert_eq!(footprint.start, load);
    assert!(footprint.end >= load);
    assert_eq!(Some(image.entry_64()), load.checked_add(0x200), "entry");

    // The zero page.
    let zp = zeropage::build(
        &image,
        &ZeroPageParams {
            cmdline_addr: linux::CMDLINE_ADDR,
            initrd: (initrd != 0).then_some((0x800_0000, initrd)),
            e820: low_e820(),
            rsdp_addr: linux::ACPI_BASE,
        },
    );
    assert_eq!(zp.len(), ZERO_PAGE_SIZE);
    assert_eq!(zp[zeropage::field::SENTINEL], 0);
    // The header up to the first field the loader writes (type_of_loader at 0x210).
    let copied = image.header_end.min(0x210);
    assert_eq!(&zp[0x1f1..copied], &file[0x1f1..copied], "header copied");

    // The boot plan.
    let cmdline = "x".repeat(cmdline_len);
    let initrd = (initrd != 0).then_some(initrd % (2 << 30));
    let config = &configs()[layout];
    match linux::plan(config, &image, &cmdline, initrd) {
        Ok(plan) => {
            assert_eq!(plan.entry, plan.kernel_addr + 0x200);
            assert_eq!(plan.kernel_addr, load);
            assert_eq!(plan.zero_page.len(), ZERO_PAGE_SIZE);
            assert!(cmdline_len <= image.cmdline_size as usize);
            assert_eq!(plan.cmdline.len(), cmdline_len + 1);
            assert!(plan.e820.is_ram(&plan.kernel_footprint));
            let regions = plan.regions();
            for pair in regions.windows(2) {
                assert!(
                    pair[0].1.end <= pair[1].1.start,
                    "{} {:x?} overlaps {} {:x?}",
                    pair[0].0,
                    pair[0].1,
                    pair[1].0,
                    pair[1].1
                );
            }
            if let Some(r) = &plan.initrd {
                assert_eq!(Some(r.end - r.start), initrd);
                assert!(plan.e820.is_ram(r), "initrd {r:x?} outside RAM");
                assert!(r.start >= MIB && r.start % 0x1000 == 0, "initrd at {r:x?}");
                let mut limit = u64::from(image.initrd_addr_max) + 1;
                if !image.can_be_above_4g() {
                    limit = limit.min(1 << 32);
                }
                assert!(r.end <= limit, "initrd {r:x?} above {limit:#x}");
                if let Some(at) = &config.kernel.initrd {
                    assert_eq!(r.start, at.load_addr, "initrd not where the config puts it");
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
