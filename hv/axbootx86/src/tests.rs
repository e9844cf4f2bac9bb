//! Host tests: a fake bzImage, the zero page field by field, the e820 map, the ACPI
//! tables' bytes and the boot plan. (`tests/acpi_crate.rs` reads the tables back with the
//! `acpi` crate.)

// Slices of one memory range are what E820Map::build takes.
#![allow(clippy::single_range_in_vec_init)]

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use axvmconfig::VmConfig;

use crate::acpi::{self, AcpiDesc, AcpiError};
use crate::aml;
use crate::bytes::{u16_at, u32_at, u64_at};
use crate::bzimage::{self, BzImage, BzImageError};
use crate::e820::{E820Entry, E820Error, E820Kind, E820Map};
use crate::linux::{self, BootError, InitrdProblem, ACPI_BASE, CMDLINE_ADDR, ZERO_PAGE_ADDR};
use crate::zeropage::{self, field, ZeroPageParams};

const MIB: u64 = 1 << 20;

/// The fields of a fake bzImage.
struct Fake {
    setup_sects: u8,
    version: u16,
    loadflags: u8,
    xloadflags: u16,
    pref_address: u64,
    init_size: u32,
    cmdline_size: u32,
    initrd_addr_max: u32,
    kernel_len: usize,
}

impl Default for Fake {
    /// Like Debian bookworm's 6.1 kernel, with a small protected-mode part.
    fn default() -> Self {
        Self {
            setup_sects: 39,
            version: 0x020F,
            loadflags: bzimage::LOADED_HIGH,
            xloadflags: 0x7F,
            pref_address: 0x100_0000,
            init_size: 0x3F9_7000,
            cmdline_size: 2047,
            initrd_addr_max: 0x7FFF_FFFF,
            kernel_len: 0x1234,
        }
    }
}

impl Fake {
    /// The file: boot sector and setup sectors (with the header), then the kernel part.
    fn build(&self) -> Vec<u8> {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects
        };
        let setup = (usize::from(sects) + 1) * 512;
        let mut f = vec![0u8; setup + self.kernel_len];
        // Fill everything with a pattern, so that copying the header is visible.
        for (i, b) in f.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        // Fields a loader writes must be 0 in the file (as the kernel's build leaves them).
        for o in [0x210usize, 0x218, 0x21c, 0x224, 0x228] {
            f[o..o + 4].fill(0);
        }
        f[0x1f1] = self.setup_sects;
        let syssize = self.kernel_len.div_ceil(16) as u32;
        f[0x1f4..0x1f8].copy_from_slice(&syssize.to_le_bytes());
        f[0x1fe..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
        f[0x200] = 0xEB;
        f[0x201] = 0x6A; // header ends at 0x26c (protocol 2.15)
        f[0x202..0x206].copy_from_slice(b"HdrS");
        f[0x206..0x208].copy_from_slice(&self.version.to_le_bytes());
        f[0x211] = self.loadflags;
        f[0x22c..0x230].copy_from_slice(&self.initrd_addr_max.to_le_bytes());
        f[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
        f[0x234] = 1;
        f[0x236..0x238].copy_from_slice(&self.xloadflags.to_le_bytes());
        f[0x238..0x23c].copy_from_slice(&self.cmdline_size.to_le_bytes());
        f[0x258..0x260].copy_from_slice(&self.pref_address.to_le_bytes());
        f[0x260..0x264].copy_from_slice(&self.init_size.to_le_bytes());
        f
    }
}

fn config(cpus: usize, ram: &[(u64, u64)]) -> VmConfig {
    let pin: Vec<String> = (0..cpus).map(|c| format!("{c}")).collect();
    let mut text = format!(
        "id = 1\nname = \"linux\"\n[cpus]\ncount = {cpus}\npin = [{}]\n[kernel]\nimage = \"linux\"\nload_addr = 0x1000000\nentry = 0x1000200\n",
        pin.join(", ")
    );
    for (gpa, size) in ram {
        text.push_str(&format!(
            "[[memory]]\ngpa = {gpa:#x}\nsize = {size:#x}\nmap = \"alloc\"\n"
        ));
    }
    text.push_str("[[devices]]\nkind = \"ns16550\"\nport = 0x3f8\nirq = 4\n");
    axvmconfig::from_toml(&text).unwrap()
}

#[test]
fn parses_a_bzimage_header() {
    let file = Fake::default().build();
    let image = BzImage::parse(&file).unwrap();
    assert_eq!(image.setup_sects, 39);
    assert_eq!(image.setup_len(), 40 * 512);
    assert_eq!(image.version, 0x020F);
    assert_eq!(image.xloadflags, 0x7F);
    assert_eq!(image.kernel_alignment, 0x20_0000);
    assert!(image.relocatable);
    assert_eq!(image.cmdline_size, 2047);
    assert_eq!(image.initrd_addr_max, 0x7FFF_FFFF);
    assert_eq!(image.header_end, 0x26C);
    assert_eq!(image.kernel().len(), 0x1234);
    assert_eq!(image.kernel(), &file[40 * 512..]);
    assert_eq!(image.setup_header(), &file[0x1F1..0x26C]);
    assert_eq!(image.load_address(), 0x100_0000);
    assert_eq!(image.entry_64(), 0x100_0200);
    assert_eq!(image.footprint(), 0x100_0000..0x100_0000 + 0x3F9_7000);
    assert!(image.can_be_above_4g());
    assert_eq!(image.file().len(), file.len());
}

#[test]
fn setup_sects_zero_means_four_and_low_pref_address_loads_at_1_mib() {
    let file = Fake {
        setup_sects: 0,
        pref_address: 0,
        init_size: 0x10,
        ..Fake::default()
    }
    .build();
    let image = BzImage::parse(&file).unwrap();
    assert_eq!(image.setup_len(), 5 * 512);
    assert_eq!(image.load_address(), 0x10_0000);
    assert_eq!(image.entry_64(), 0x10_0200);
    // The footprint is at least the kernel part.
    assert_eq!(image.footprint(), 0x10_0000..0x10_0000 + 0x1234);
}

#[test]
fn refuses_what_is_not_a_64_bit_bzimage() {
    let good = Fake::default().build();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut file = good.clone();
        f(&mut file);
        BzImage::parse(&file).unwrap_err()
    };
    assert!(matches!(
        BzImage::parse(&good[..0x100]),
        Err(BzImageError::Truncated { .. })
    ));
    assert_eq!(with(&|f| f[0x1fe] = 0), BzImageError::NoBootFlag(0xAA00));
    assert!(matches!(
        with(&|f| f[0x202..0x206].copy_from_slice(b"ELF!")),
        BzImageError::NoHdrS(_)
    ));
    assert_eq!(
        with(&|f| f[0x206..0x208].copy_from_slice(&0x020Au16.to_le_bytes())),
        BzImageError::ProtocolTooOld(0x020A)
    );
    assert_eq!(with(&|f| f[0x211] = 0), BzImageError::NotLoadedHigh);
    assert_eq!(
        with(&|f| f[0x236..0x238].copy_from_slice(&2u16.to_le_bytes())),
        BzImageError::No64BitEntry
    );
    assert_eq!(
        with(&|f| f[0x201] = 0x90),
        BzImageError::HeaderTooLong(0x292)
    );
    assert!(matches!(
        with(&|f| f.truncate(40 * 512 + 0x100)),
        BzImageError::KernelTruncated {
            expected: 0x1240,
            found: 0x100
        }
    ));
    // Only the setup sectors, no kernel.
    assert!(matches!(
        with(&|f| f.truncate(40 * 512)),
        BzImageError::Truncated { .. }
    ));
    // An arm64 Image is not a bzImage.
    let mut arm = vec![0u8; 0x1000];
    arm[0x38..0x3c].copy_from_slice(b"ARM\x64");
    assert!(matches!(
        BzImage::parse(&arm),
        Err(BzImageError::NoBootFlag(0))
    ));
    // Every error says what is wrong.
    assert!(format!("{}", BzImageError::ProtocolTooOld(0x020A)).contains("2.10"));
}

/// Found by the `bzimage` fuzz target: a `pref_address` near 2^64 overflowed the 64-bit
/// entry (load address + 0x200) — a panic with overflow checks, a wrapped entry without.
#[test]
fn refuses_a_load_address_at_the_end_of_the_address_space() {
    for pref_address in [u64::MAX - 0x100, u64::MAX - 0xF_FFFF, u64::MAX] {
        let file = Fake {
            pref_address,
            ..Fake::default()
        }
        .build();
        assert_eq!(
            BzImage::parse(&file),
            Err(BzImageError::LoadAddressTooHigh(pref_address))
        );
    }
    // The highest accepted: the footprint (init_size here) ends exactly at 2^64 - 1.
    let fake = Fake::default();
    let highest = u64::MAX - u64::from(fake.init_size);
    let file = Fake {
        pref_address: highest,
        ..fake
    }
    .build();
    let image = BzImage::parse(&file).unwrap();
    assert_eq!(image.entry_64(), highest + 0x200);
    assert_eq!(image.footprint(), highest..u64::MAX);
    assert!(format!("{}", BzImageError::LoadAddressTooHigh(u64::MAX)).contains("no room"));
}

#[test]
fn e820_follows_the_pc_low_memory_layout() {
    let map = E820Map::build(&[0..128 * MIB], &[], &[]).unwrap();
    let e = |addr: u64, end: u64, kind| E820Entry {
        addr,
        size: end - addr,
        kind,
    };
    assert_eq!(
        map.entries(),
        &[
            e(0, 0x9_FC00, E820Kind::Ram),
            e(0x9_FC00, 0xA_0000, E820Kind::Reserved),
            e(0xE_0000, 0x10_0000, E820Kind::Reserved),
            e(0x10_0000, 128 * MIB, E820Kind::Ram),
        ]
    );
    assert!(map.is_ram(&(MIB..2 * MIB)));
    assert!(!map.is_ram(&(0x9_F000..0xA_1000)));
    assert_eq!(
        e(0x10_0000, 0x20_0000, E820Kind::Ram).to_bytes(),
        [0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    );
}

#[test]
fn e820_with_split_ram_rom_and_marks() {
    // Low RAM in two pieces that touch, a ROM, RAM above 4 GiB, ACPI tables marked.
    let map = E820Map::build(
        &[0..MIB, MIB..64 * MIB, 4096 * MIB..4160 * MIB],
        &[0xFFFC_0000..0x1_0000_0000],
        &[(32 * MIB..32 * MIB + 0x2000, E820Kind::Acpi)],
    )
    .unwrap();
    let kinds: Vec<(u64, u64, E820Kind)> = map
        .entries()
        .iter()
        .map(|e| (e.addr, e.end(), e.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (0, 0x9_FC00, E820Kind::Ram),
            (0x9_FC00, 0xA_0000, E820Kind::Reserved),
            (0xE_0000, 0x10_0000, E820Kind::Reserved),
            (0x10_0000, 32 * MIB, E820Kind::Ram),
            (32 * MIB, 32 * MIB + 0x2000, E820Kind::Acpi),
            (32 * MIB + 0x2000, 64 * MIB, E820Kind::Ram),
            (0xFFFC_0000, 0x1_0000_0000, E820Kind::Reserved),
            (4096 * MIB, 4160 * MIB, E820Kind::Ram),
        ]
    );
}

#[test]
fn e820_errors() {
    assert_eq!(
        E820Map::build(&[MIB..64 * MIB], &[], &[]),
        Err(E820Error::NoLowMemory)
    );
    assert_eq!(
        E820Map::build(&[0..0x8_0000, 0x9_0000..64 * MIB], &[], &[]),
        Err(E820Error::NoLowMemory)
    );
    assert_eq!(
        E820Map::build(&[0..64 * MIB, 32 * MIB..80 * MIB], &[], &[]),
        Err(E820Error::Overlap(0..64 * MIB, 32 * MIB..80 * MIB))
    );
    assert_eq!(
        E820Map::build(&[0..64 * MIB, 80 * MIB..80 * MIB], &[], &[]),
        Err(E820Error::BadRange(80 * MIB..80 * MIB))
    );
    assert_eq!(
        E820Map::build(
            &[0..64 * MIB],
            &[],
            &[(100 * MIB..101 * MIB, E820Kind::Acpi)]
        ),
        Err(E820Error::OutsideRam(100 * MIB..101 * MIB))
    );
    let many: Vec<_> = (0..200u64)
        .map(|i| (i + 1) * 4 * MIB..(i + 1) * 4 * MIB + MIB)
        .chain([0..MIB])
        .collect();
    assert!(matches!(
        E820Map::build(&many, &[], &[]),
        Err(E820Error::TooManyEntries(_))
    ));
}

/// Sums `bytes` (a table with a correct checksum sums to 0).
fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

#[test]
fn acpi_tables_have_lengths_checksums_and_pointers() {
    let desc = AcpiDesc::from_config(&config(2, &[(0, 128 * MIB)])).unwrap();
    assert_eq!(desc.apic_ids, vec![0, 1]);
    assert_eq!(desc.ioapic_id, 2);
    let t = acpi::build(&desc, ACPI_BASE).unwrap();
    assert_eq!(t.rsdp_address(), ACPI_BASE);
    let at = |addr: u64| (addr - t.base) as usize;
    let b = &t.blob;
    // RSDP: signature, both checksums, revision 2, length, XSDT.
    assert_eq!(&b[..8], b"RSD PTR ");
    assert_eq!(sum(&b[..20]), 0);
    assert_eq!(sum(&b[..36]), 0);
    assert_eq!(b[15], 2);
    assert_eq!(u32_at(b, 16), Some(0));
    assert_eq!(u32_at(b, 20), Some(36));
    let xsdt = u64_at(b, 24).unwrap();
    assert_eq!(Some(xsdt), t.address_of(b"XSDT"));
    // Every table: signature where the pointers say, length, checksum.
    let table = |addr: u64, sig: &[u8; 4]| {
        let o = at(addr);
        assert_eq!(&b[o..o + 4], sig);
        let len = u32_at(b, o + 4).unwrap() as usize;
        assert_eq!(sum(&b[o..o + len]), 0, "{sig:?}");
        &b[o..o + len]
    };
    let x = table(xsdt, b"XSDT");
    assert_eq!(x.len(), 36 + 16);
    let fadt_a = u64_at(x, 36).unwrap();
    let madt_a = u64_at(x, 44).unwrap();
    let fadt = table(fadt_a, b"FACP");
    assert_eq!((fadt.len(), fadt[8]), (276, 6));
    let dsdt_a = u64_at(fadt, 140).unwrap();
    assert_eq!(u32_at(fadt, 40), Some(dsdt_a as u32));
    let dsdt = table(dsdt_a, b"DSDT");
    assert_eq!(&dsdt[36..], &aml::S5_AML);
    assert_eq!(
        u64_at(fadt, 132),
        Some(0),
        "X_FIRMWARE_CTRL: the FACS is below 4 GiB"
    );
    let facs_a = u64::from(u32_at(fadt, 36).unwrap());
    assert_eq!(facs_a % 64, 0);
    assert_eq!(&b[at(facs_a)..at(facs_a) + 4], b"FACS");
    assert_eq!(u32_at(b, at(facs_a) + 4), Some(64));
    // FADT: SCI 9, no SMI command port, PM1a blocks, flags, boot architecture, not
    // hardware-reduced.
    assert_eq!(u16_at(fadt, 46), Some(9));
    assert_eq!(u32_at(fadt, 48), Some(0));
    assert_eq!(u32_at(fadt, 56), Some(0x600));
    assert_eq!(u32_at(fadt, 64), Some(0x604));
    assert_eq!((fadt[88], fadt[89], fadt[91]), (4, 2, 4));
    assert_eq!(u32_at(fadt, 76), Some(0x608), "PM timer");
    assert_eq!(u16_at(fadt, 109), Some(acpi::IAPC_BOOT_ARCH));
    let flags = u32_at(fadt, 112).unwrap();
    assert_eq!(flags & (1 << 20), 0, "not hardware-reduced");
    assert_eq!(u16_at(fadt, 109).unwrap() & 2, 0, "no 8042");
    assert_eq!(&fadt[148..152], &[1, 32, 0, 2]);
    assert_eq!(u64_at(fadt, 152), Some(0x600));
    assert_eq!(&fadt[172..176], &[1, 16, 0, 2]);
    assert_eq!(u64_at(fadt, 176), Some(0x604));
    assert_eq!(&fadt[208..212], &[1, 32, 0, 3]);
    assert_eq!(u64_at(fadt, 212), Some(0x608));
    // MADT: LAPIC address, PC-AT flag, two local APICs, the I/O APIC, two overrides and
    // the LINT1 NMI.
    let madt = table(madt_a, b"APIC");
    assert_eq!(u32_at(madt, 36), Some(0xFEE0_0000));
    assert_eq!(u32_at(madt, 40), Some(1));
    let mut entries = Vec::new();
    let mut o = 44;
    while o < madt.len() {
        let (kind, len) = (madt[o], usize::from(madt[o + 1]));
        entries.push((kind, madt[o..o + len].to_vec()));
        o += len;
    }
    assert_eq!(o, madt.len());
    assert_eq!(
        entries,
        vec![
            (0, vec![0, 8, 0, 0, 1, 0, 0, 0]),
            (0, vec![0, 8, 1, 1, 1, 0, 0, 0]),
            (1, vec![1, 12, 2, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0]),
            (2, vec![2, 10, 0, 0, 2, 0, 0, 0, 0, 0]),
            (2, vec![2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0]),
            (4, vec![4, 6, 0xFF, 0, 0, 1]),
        ]
    );
    // All within the BIOS area.
    assert!(t.range().end <= 0x10_0000);
}

#[test]
fn madt_uses_x2apic_entries_for_large_ids() {
    let desc = AcpiDesc {
        apic_ids: vec![0, 300],
        ioapic_id: 2,
        overrides: Vec::new(),
        virtio: Vec::new(),
    };
    let t = acpi::build(&desc, 0x10_0000).unwrap();
    let madt = t.address_of(b"APIC").unwrap() - t.base;
    let m = &t.blob[madt as usize..];
    assert_eq!(&m[44..52], &[0, 8, 0, 0, 1, 0, 0, 0]);
    assert_eq!(&m[52..56], &[9, 16, 0, 0]);
    assert_eq!(u32_at(m, 56), Some(300));
    assert_eq!(u32_at(m, 60), Some(1));
    assert_eq!(u32_at(m, 64), Some(1));
}

#[test]
fn acpi_errors() {
    let desc = AcpiDesc::from_config(&config(1, &[(0, 128 * MIB)])).unwrap();
    assert_eq!(
        acpi::build(&desc, 0xE_0008),
        Err(AcpiError::Unaligned(0xE_0008))
    );
    assert_eq!(
        acpi::build(&desc, u64::MAX - 15),
        Err(AcpiError::AddressOverflow(u64::MAX - 15))
    );
    let none = AcpiDesc {
        apic_ids: Vec::new(),
        ..desc
    };
    assert_eq!(acpi::build(&none, ACPI_BASE), Err(AcpiError::NoCpus));
}

#[test]
fn zero_page_fields() {
    let file = Fake::default().build();
    let image = BzImage::parse(&file).unwrap();
    let e820 = E820Map::build(&[0..8192 * MIB], &[], &[]).unwrap();
    let zp = zeropage::build(
        &image,
        &ZeroPageParams {
            cmdline_addr: 0x1_2345_6000,
            initrd: Some((0x2_0000_1000, 0x3_0000_0123)),
            e820: &e820,
            rsdp_addr: 0xE_0000,
        },
    );
    assert_eq!(zp.len(), 4096);
    // The setup header is the file's, except the fields a loader writes.
    let written = [
        0x210usize, 0x211, 0x218, 0x219, 0x21a, 0x21b, 0x21c, 0x21d, 0x21e, 0x21f, 0x224, 0x225,
        0x228, 0x229, 0x22a, 0x22b,
    ];
    for o in 0x1F1..0x26C {
        if !written.contains(&o) {
            assert_eq!(zp[o], file[o], "header byte {o:#x}");
        }
    }
    assert_eq!(u16_at(&zp, 0x1FE), Some(0xAA55));
    assert_eq!(&zp[0x202..0x206], b"HdrS");
    assert_eq!(zp[0x210], 0xFF, "type_of_loader");
    assert_eq!(
        zp[0x211],
        bzimage::LOADED_HIGH | bzimage::CAN_USE_HEAP,
        "loadflags"
    );
    assert_eq!(
        zp[0x211] & (bzimage::KEEP_SEGMENTS | bzimage::QUIET_FLAG),
        0
    );
    assert_eq!(u16_at(&zp, 0x224), Some(zeropage::HEAP_END_PTR));
    assert_eq!(u32_at(&zp, 0x228), Some(0x2345_6000), "cmd_line_ptr");
    assert_eq!(u32_at(&zp, field::EXT_CMD_LINE_PTR), Some(1));
    assert_eq!(u32_at(&zp, 0x218), Some(0x0000_1000), "ramdisk_image");
    assert_eq!(u32_at(&zp, field::EXT_RAMDISK_IMAGE), Some(2));
    assert_eq!(u32_at(&zp, 0x21C), Some(0x0000_0123), "ramdisk_size");
    assert_eq!(u32_at(&zp, field::EXT_RAMDISK_SIZE), Some(3));
    assert_eq!(u64_at(&zp, field::ACPI_RSDP_ADDR), Some(0xE_0000));
    assert_eq!(zp[field::SENTINEL], 0);
    assert_eq!(usize::from(zp[field::E820_ENTRIES]), e820.entries().len());
    for (i, e) in e820.entries().iter().enumerate() {
        let o = field::E820_TABLE + i * 20;
        assert_eq!(u64_at(&zp, o), Some(e.addr));
        assert_eq!(u64_at(&zp, o + 8), Some(e.size));
        assert_eq!(u32_at(&zp, o + 16), Some(e.kind as u32));
    }
    // Nothing else: outside the header and the fields above, the page is zero.
    let mut touched = vec![false; 4096];
    touched[0x1F1..0x26C].fill(true);
    for (o, n) in [
        (field::ACPI_RSDP_ADDR, 8),
        (field::EXT_RAMDISK_IMAGE, 12),
        (field::E820_ENTRIES, 1),
        (field::E820_TABLE, 20 * e820.entries().len()),
    ] {
        touched[o..o + n].fill(true);
    }
    for (o, t) in touched.iter().enumerate() {
        if !t {
            assert_eq!(zp[o], 0, "byte {o:#x}");
        }
    }
}

#[test]
fn boot_plan_for_a_two_cpu_vm() {
    let file = Fake::default().build();
    let image = BzImage::parse(&file).unwrap();
    let cfg = config(2, &[(0, 256 * MIB)]);
    let cmdline = "console=ttyS0 earlyprintk=serial";
    let plan = linux::plan(&cfg, &image, cmdline, Some(2_000_000)).unwrap();
    assert_eq!(plan.kernel_addr, 0x100_0000);
    assert_eq!(plan.entry, 0x100_0200);
    assert_eq!(plan.rsi, ZERO_PAGE_ADDR);
    assert_eq!(plan.cmdline, [cmdline.as_bytes(), b"\0"].concat());
    // The initrd: page-aligned, at the top of RAM.
    let initrd = plan.initrd.clone().unwrap();
    assert_eq!(initrd.start % 4096, 0);
    assert_eq!(initrd.end - initrd.start, 2_000_000);
    assert_eq!(initrd.start, 256 * MIB - 2_002_944);
    // The zero page points at all of it.
    let zp = &plan.zero_page;
    assert_eq!(u32_at(zp, 0x228), Some(CMDLINE_ADDR as u32));
    assert_eq!(u32_at(zp, 0x218), Some(initrd.start as u32));
    assert_eq!(u32_at(zp, 0x21C), Some(2_000_000));
    assert_eq!(u64_at(zp, 0x070), Some(ACPI_BASE));
    assert_eq!(zp[0x1E8], 4);
    // The regions do not overlap and are in RAM or the BIOS area.
    let regions = plan.regions();
    for w in regions.windows(2) {
        assert!(w[0].1.end <= w[1].1.start, "{w:?}");
    }
    for (what, r) in &regions {
        let in_bios = r.start >= 0xE_0000 && r.end <= 0x10_0000;
        assert!(plan.e820.is_ram(r) || in_bios, "{what} {r:?}");
    }
}

/// A config of one vCPU, 256 MiB, the virtual PC and a virtio-console per `irq` line
/// (`"irq = 5"`, or `""` for none), 0x200 apart from 0xD000_0000.
fn virtio_config(irqs: &[&str]) -> VmConfig {
    let mut text = String::from(
        "id = 1\nname = \"linux\"\n[cpus]\ncount = 1\npin = [0]\n[kernel]\nimage = \"linux\"\nload_addr = 0x1000000\nentry = 0x1000200\n[[memory]]\ngpa = 0\nsize = 0x10000000\nmap = \"alloc\"\n[[devices]]\nkind = \"ioapic\"\nbase = 0xfec00000\nsize = 0x1000\n",
    );
    for (i, irq) in irqs.iter().enumerate() {
        text.push_str(&format!(
            "[[devices]]\nkind = \"virtio-console\"\nbase = {:#x}\n{irq}\n",
            0xd000_0000 + i * 0x200
        ));
    }
    axvmconfig::from_toml(&text).unwrap()
}

/// Virtio devices: each is a `LNRO0005` device in the DSDT with its window and its
/// interrupt (level-triggered, active high, shared), and an ISA IRQ among them gets a
/// level-triggered, active-high override (one per line, the SCI's kept); interrupts the PC
/// uses itself, none, and windows above 4 GiB are refused.
#[test]
fn virtio_devices_are_in_the_dsdt_and_level_triggered() {
    let cfg = virtio_config(&["irq = 5", "irq = 11", "irq = 5", "irq = 20"]);
    let desc = AcpiDesc::from_config(&cfg).unwrap();
    let level = |n: u8| acpi::SourceOverride {
        source: n,
        gsi: u32::from(n),
        flags: 0x0D,
    };
    assert_eq!(desc.overrides[1..], [level(9), level(5), level(11)]);
    assert_eq!(
        desc.virtio.iter().map(|v| v.gsi).collect::<Vec<_>>(),
        [5, 11, 5, 20]
    );
    let t = acpi::build(&desc, ACPI_BASE).unwrap();
    let dsdt_a = (t.address_of(b"DSDT").unwrap() - t.base) as usize;
    let len = u32_at(&t.blob, dsdt_a + 4).unwrap() as usize;
    let dsdt = &t.blob[dsdt_a..dsdt_a + len];
    assert_eq!(sum(dsdt), 0);
    let aml = &dsdt[36..];
    assert_eq!(&aml[..13], &aml::S5_AML);
    // One device, by hand from the specification: DeviceOp, PkgLength, "V001", _HID,
    // _UID 1, _CRS buffer of 23 bytes (memory 0xD0000200 + 0x200, interrupt 11).
    let mut dev1 = vec![0x5B, 0x82, 59, b'V', b'0', b'0', b'1'];
    dev1.extend_from_slice(b"\x08_HID\x0DLNRO0005\0\x08_UID\x0A\x01\x08_CRS\x11\x1A\x0A\x17");
    dev1.extend_from_slice(&[0x86, 9, 0, 1, 0x00, 0x02, 0x00, 0xD0, 0x00, 0x02, 0, 0]);
    dev1.extend_from_slice(&[0x89, 6, 0, 0x09, 1, 11, 0, 0, 0, 0x79, 0]);
    assert_eq!(dev1.len(), 2 + 59);
    // The scope: ScopeOp, a two-byte PkgLength, \_SB_, four devices of 61 bytes.
    let body = 5 + 4 * 61;
    assert_eq!(aml.len(), 13 + 1 + 2 + body);
    assert_eq!(aml[13], 0x10);
    assert_eq!(
        aml::pkg_length(body),
        [0x40 | ((body + 2) & 0xF) as u8, ((body + 2) >> 4) as u8]
    );
    assert_eq!(&aml[14..16], &aml::pkg_length(body)[..]);
    assert_eq!(&aml[16..21], b"\\_SB_");
    assert_eq!(&aml[21 + 61..21 + 122], &dev1[..]);
    assert_eq!(&aml[21 + 3 * 61 + 55..21 + 3 * 61 + 59], &[20, 0, 0, 0]);
    // Refusals.
    for (irq, why) in [
        (
            "irq = 0",
            AcpiError::VirtioIrq {
                base: 0xd000_0000,
                irq: Some(0),
            },
        ),
        (
            "irq = 2",
            AcpiError::VirtioIrq {
                base: 0xd000_0000,
                irq: Some(2),
            },
        ),
        (
            "irq = 8",
            AcpiError::VirtioIrq {
                base: 0xd000_0000,
                irq: Some(8),
            },
        ),
    ] {
        let desc = AcpiDesc::from_config(&virtio_config(&[irq])).unwrap();
        assert_eq!(acpi::build(&desc, ACPI_BASE), Err(why));
    }
    assert_eq!(
        AcpiDesc::from_config(&virtio_config(&[""])),
        Err(AcpiError::VirtioIrq {
            base: 0xd000_0000,
            irq: None
        })
    );
    let mut high = AcpiDesc::from_config(&virtio_config(&["irq = 5"])).unwrap();
    high.virtio[0].base = 0xFFFF_FF00;
    assert_eq!(
        acpi::build(&high, ACPI_BASE),
        Err(AcpiError::VirtioAbove4G(0xFFFF_FF00))
    );
    assert_eq!(
        AcpiError::VirtioIrq { base: 0x1000, irq: Some(8) }.to_string(),
        "the virtio device at 0x1000 has interrupt 8: a virtio device's is an I/O APIC input 1, 3..=7 or 9..=23 (0, 2 and 8 are the PC's own)"
    );
    // The plan refuses it too.
    let file = Fake::default().build();
    let image = BzImage::parse(&file).unwrap();
    assert_eq!(
        linux::plan(&virtio_config(&["irq = 2"]), &image, "", None),
        Err(BootError::Acpi(AcpiError::VirtioIrq {
            base: 0xd000_0000,
            irq: Some(2)
        }))
    );
}

/// `PkgLength` in one, two, three and four bytes; integers in the smallest prefix.
#[test]
fn aml_lengths_and_integers() {
    assert_eq!(aml::pkg_length(0), [1]);
    assert_eq!(aml::pkg_length(62), [63]);
    assert_eq!(aml::pkg_length(63), [0x41, 0x04]);
    assert_eq!(aml::pkg_length(0xFFD), [0x4F, 0xFF]);
    assert_eq!(aml::pkg_length(0xFFE), [0x81, 0x00, 0x01]);
    assert_eq!(aml::pkg_length(0xF_FFFC), [0x8F, 0xFF, 0xFF]);
    assert_eq!(aml::pkg_length(0xF_FFFD), [0xC1, 0x00, 0x00, 0x01]);
    assert_eq!(aml::integer(7), [0x0A, 7]);
    assert_eq!(aml::integer(0x1234), [0x0B, 0x34, 0x12]);
    assert_eq!(aml::integer(0x1_0000), [0x0C, 0, 0, 1, 0]);
    assert_eq!(aml::integer(1 << 32), [0x0E, 0, 0, 0, 0, 1, 0, 0, 0]);
}

#[test]
fn boot_plan_errors() {
    let file = Fake::default().build();
    let image = BzImage::parse(&file).unwrap();
    // 64 MiB is less than 16 MiB + init_size (about 64 MiB).
    let small = config(1, &[(0, 64 * MIB)]);
    assert_eq!(
        linux::plan(&small, &image, "", None),
        Err(BootError::KernelDoesNotFit(
            0x100_0000..0x100_0000 + 0x3F9_7000
        ))
    );
    let cfg = config(1, &[(0, 88 * MIB)]);
    assert!(linux::plan(&cfg, &image, "", None)
        .unwrap()
        .initrd
        .is_none());
    // 88 MiB leaves 15 MiB below the kernel (from 1 MiB) and about 8.4 MiB above it.
    let plan = linux::plan(&cfg, &image, "", Some(8 * MIB)).unwrap();
    assert_eq!(plan.initrd.unwrap(), 80 * MIB..88 * MIB, "above the kernel");
    let plan = linux::plan(&cfg, &image, "", Some(12 * MIB + 5)).unwrap();
    let below = plan.initrd.unwrap();
    assert_eq!(below.start, 16 * MIB - 12 * MIB - 4096, "below the kernel");
    assert_eq!(below.end, 16 * MIB - 4096 + 5);
    assert_eq!(
        linux::plan(&cfg, &image, "", Some(40 * MIB)),
        Err(BootError::InitrdDoesNotFit {
            size: 40 * MIB,
            limit: 0x8000_0000
        })
    );
    let long = String::from_utf8(vec![b'x'; 2048]).unwrap();
    assert_eq!(
        linux::plan(&cfg, &image, &long, None),
        Err(BootError::CmdlineTooLong {
            len: 2048,
            max: 2047
        })
    );
    assert!(linux::plan(&cfg, &image, &long[..2047], None).is_ok());
    let high_only = config(1, &[(MIB, 512 * MIB)]);
    assert_eq!(
        linux::plan(&high_only, &image, "", None),
        Err(BootError::Memory(E820Error::NoLowMemory))
    );
    let none = config(0, &[(0, 512 * MIB)]);
    assert_eq!(
        linux::plan(&none, &image, "", None),
        Err(BootError::Acpi(AcpiError::NoCpus))
    );
    assert!(format!(
        "{}",
        BootError::CmdlineTooLong {
            len: 2048,
            max: 2047
        }
    )
    .contains("2047"));
}

#[test]
fn the_config_places_the_initrd() {
    let file = Fake::default().build();
    let image = BzImage::parse(&file).unwrap();
    let with_initrd = |at: u64| {
        let mut cfg = config(1, &[(0, 128 * MIB)]);
        cfg.kernel.initrd = Some(axvmconfig::ImageConfig {
            image: String::from("initrd"),
            load_addr: at,
        });
        cfg
    };
    let plan = linux::plan(&with_initrd(96 * MIB), &image, "", Some(2_000_000)).unwrap();
    assert_eq!(plan.initrd, Some(96 * MIB..96 * MIB + 2_000_000));
    assert_eq!(u32_at(&plan.zero_page, 0x218), Some(96 * MIB as u32));
    assert_eq!(u32_at(&plan.zero_page, 0x21C), Some(2_000_000));
    // No initrd image: the config's address is not looked at.
    assert_eq!(
        linux::plan(&with_initrd(0), &image, "", None)
            .unwrap()
            .initrd,
        None
    );
    let kernel = 0x100_0000..0x100_0000 + 0x3F9_7000;
    for (at, why) in [
        (0x8_0000, InitrdProblem::BelowOneMiB),
        (20 * MIB, InitrdProblem::OverlapsKernel(kernel.clone())),
        (kernel.end - 4096, InitrdProblem::OverlapsKernel(kernel)),
        (127 * MIB, InitrdProblem::NotRam),
    ] {
        assert_eq!(
            linux::plan(&with_initrd(at), &image, "", Some(2_000_000)),
            Err(BootError::InitrdMisplaced {
                range: at..at + 2_000_000,
                why
            }),
            "{at:#x}"
        );
    }
    let low_max = Fake {
        initrd_addr_max: 0x5FF_FFFF,
        ..Fake::default()
    };
    let file = low_max.build();
    let image = BzImage::parse(&file).unwrap();
    let err = linux::plan(&with_initrd(96 * MIB), &image, "", Some(2_000_000)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the initrd cannot go at 0x6000000..0x61e8480: the kernel takes an initrd only below 0x6000000"
    );
}
