//! Descriptor formats, bit by bit.

use std::vec::Vec;

use super::*;
use crate::fake::{FakeFormat, FakeFrameAllocator};
use crate::format::{entries, entry_size, shift, ENTRIES_PER_TABLE};
use crate::{
    Aarch64Stage2, AmdNpt, FrameAllocator, IntelEpt, NestedPageTable, PteFormat, RiscvSv39x4,
};

/// Reads entry `idx` of the table at `table` straight from the fake allocator's memory,
/// without going through any format code.
fn raw(alloc: &FakeFrameAllocator, table: HostPhysAddr, idx: usize) -> u64 {
    let p = alloc.phys_to_virt(table).as_usize() as *const u64;
    // SAFETY: tests only read tables that are live frames of the page table under test; idx
    // is below the table's entry count (checked by the callers' constants).
    unsafe { p.add(idx).read() }
}

// ---- AArch64 stage 2 ----

const A64_OA: u64 = 0x0000_ffff_ffff_f000;

#[test]
fn aarch64_geometry() {
    assert_eq!(Aarch64Stage2::LEVELS, 3);
    assert_eq!(Aarch64Stage2::ROOT_ENTRIES, 512);
    assert_eq!(Aarch64Stage2::ROOT_FRAMES, 1);
    assert_eq!(Aarch64Stage2::GPA_BITS, 39);
    assert_eq!(entry_size::<Aarch64Stage2>(0), G1);
    assert_eq!(entry_size::<Aarch64Stage2>(1), M2);
    assert_eq!(entry_size::<Aarch64Stage2>(2), K4);
    assert_eq!(
        NestedPageTable::<Aarch64Stage2, &FakeFrameAllocator>::gpa_limit(),
        1 << 39
    );
}

#[test]
fn aarch64_vtcr_el2() {
    let v = Aarch64Stage2::vtcr_el2();
    assert_eq!(v & 0x3f, 25, "T0SZ");
    assert_eq!((v >> 6) & 3, 1, "SL0");
    assert_eq!((v >> 8) & 3, 1, "IRGN0");
    assert_eq!((v >> 10) & 3, 1, "ORGN0");
    assert_eq!((v >> 12) & 3, 3, "SH0");
    assert_eq!((v >> 14) & 3, 0, "TG0");
    assert_eq!((v >> 16) & 7, 0b010, "PS");
    assert_eq!((v >> 31) & 1, 1, "RES1");
    assert_eq!(v, 0x8002_3559);
}

#[test]
fn aarch64_descriptor_encoding() {
    // Table: valid, bit 1, address.
    assert_eq!(Aarch64Stage2::table(hpa(0x8_1234_5000), 0), 0x8_1234_5003);
    // L3 page, RW, normal: 0b11 | MemAttr 1111 | S2AP 11 | SH 11 | AF | XN.
    assert_eq!(
        Aarch64Stage2::leaf(hpa(0x8_1234_5000), R | W, 2),
        0x0040_0008_1234_57ff
    );
    // L2 block, RX, normal: bit 1 clear, S2AP read only, no XN.
    assert_eq!(
        Aarch64Stage2::leaf(hpa(0x12_3440_0000), R | X, 1),
        0x0000_0012_3440_077d
    );
    // L1 block, RWX.
    assert_eq!(
        Aarch64Stage2::leaf(hpa(0xc0_0000_0000), R | W | X, 0),
        0x0000_00c0_0000_07fd
    );
    // L3 device page, RW: MemAttr 0001.
    assert_eq!(
        Aarch64Stage2::leaf(hpa(0x0900_0000), R | W | DEV, 2),
        0x0040_0000_0900_07c7
    );
    // Read-only, execute-only.
    assert_eq!(Aarch64Stage2::leaf(hpa(0x1000), R, 2) & (0b11 << 6), 1 << 6);
    assert_eq!(
        Aarch64Stage2::leaf(hpa(0x1000), X, 2) & ((0b11 << 6) | (1 << 54)),
        0
    );
}

#[test]
fn aarch64_descriptor_decoding() {
    let page = 0x0040_0008_1234_57ff;
    assert!(Aarch64Stage2::is_valid(page, 2));
    assert!(!Aarch64Stage2::is_table(page, 2), "bit 1 at L3 is a page");
    assert_eq!(Aarch64Stage2::addr(page), hpa(0x8_1234_5000));
    assert_eq!(Aarch64Stage2::flags(page, 2), R | W);
    let block = 0x0000_0012_3440_077d;
    assert!(Aarch64Stage2::is_valid(block, 1) && !Aarch64Stage2::is_table(block, 1));
    assert_eq!(Aarch64Stage2::flags(block, 1), R | X);
    assert_eq!(Aarch64Stage2::flags(0x0040_0000_0900_07c7, 2), R | W | DEV);
    assert!(Aarch64Stage2::is_table(0x8_1234_5003, 0) && Aarch64Stage2::is_table(0x8_1234_5003, 1));
    // 0b01 at L3 is reserved: invalid.
    assert!(!Aarch64Stage2::is_valid(0x8_1234_5001, 2));
    assert!(!Aarch64Stage2::is_valid(0, 0));
}

#[test]
fn aarch64_tables_bit_by_bit() {
    let alloc = FakeFrameAllocator::new(64);
    let mut pt = NestedPageTable::<Aarch64Stage2, _>::new(&alloc).unwrap();
    pt.map(gpa(0x4000_1000), hpa(0x8_1234_5000), K4, R | W, true)
        .unwrap();
    pt.map(gpa(0x4020_0000), hpa(0x12_3440_0000), M2, R | X, true)
        .unwrap();
    pt.map(
        gpa(0x40_0000_0000),
        hpa(0xc0_0000_0000),
        G1,
        R | W | X,
        true,
    )
    .unwrap();
    pt.map(gpa(0x0900_0000), hpa(0x0900_0000), K4, R | W | DEV, true)
        .unwrap();

    let root = pt.root_paddr();
    assert!(root.is_aligned(K4));
    // L1[1] -> L2 table.
    let l1 = raw(&alloc, root, 1);
    assert_eq!(
        l1 & !A64_OA,
        0b11,
        "L1 table descriptor: valid + table, nothing else"
    );
    let l2 = hpa((l1 & A64_OA) as usize);
    assert!(alloc.is_allocated(l2));
    // L2[0] -> L3 table; L2[1] = the 2 MiB RX block.
    let l2_0 = raw(&alloc, l2, 0);
    assert_eq!(l2_0 & !A64_OA, 0b11);
    assert_eq!(raw(&alloc, l2, 1), 0x0000_0012_3440_077d);
    let l3 = hpa((l2_0 & A64_OA) as usize);
    assert_eq!(raw(&alloc, l3, 0), 0, "neighbouring page stays invalid");
    assert_eq!(raw(&alloc, l3, 1), 0x0040_0008_1234_57ff);
    assert_eq!(raw(&alloc, l3, 2), 0);
    // L1[256] = the 1 GiB RWX block.
    assert_eq!(raw(&alloc, root, 256), 0x0000_00c0_0000_07fd);
    // The device page: L1[0] -> L2[0x48] -> L3[0].
    let d1 = raw(&alloc, root, 0);
    let d2 = raw(&alloc, hpa((d1 & A64_OA) as usize), 0x0900_0000 >> 21);
    assert_eq!(
        raw(&alloc, hpa((d2 & A64_OA) as usize), 0),
        0x0040_0000_0900_07c7
    );
    // Nothing else in the root.
    let used: Vec<usize> = (0..512).filter(|&i| raw(&alloc, root, i) != 0).collect();
    assert_eq!(used, [0, 1, 256]);
    // The walk helper reports the same descriptors.
    assert_eq!(
        pt.descriptors(gpa(0x4000_1000)),
        [l1, l2_0, 0x0040_0008_1234_57ff]
    );
    assert_eq!(
        pt.descriptors(gpa(0x4020_0000)),
        [l1, 0x0000_0012_3440_077d]
    );
}

// ---- RISC-V Sv39x4 ----

fn rv_next(d: u64) -> HostPhysAddr {
    hpa((((d >> 10) & ((1 << 44) - 1)) << 12) as usize)
}

#[test]
fn riscv_geometry() {
    assert_eq!(RiscvSv39x4::LEVELS, 3);
    assert_eq!(RiscvSv39x4::ROOT_ENTRIES, 2048);
    assert_eq!(RiscvSv39x4::ROOT_FRAMES * K4, 16 * 1024);
    assert_eq!(RiscvSv39x4::GPA_BITS, 41);
    assert_eq!(entries::<RiscvSv39x4>(0), 2048);
    assert_eq!(entries::<RiscvSv39x4>(1), 512);
    assert_eq!(shift::<RiscvSv39x4>(0), 30);
    assert!((0..3).all(RiscvSv39x4::leaf_allowed));
}

#[test]
fn riscv_root_is_16k_aligned_and_all_2048_entries_used() {
    let alloc = FakeFrameAllocator::new(64);
    // Misalign the allocator first so a 16 KiB-aligned root is not an accident.
    let pad = alloc.alloc_frames(1, K4).unwrap();
    let mut pt = NestedPageTable::<RiscvSv39x4, _>::new(&alloc).unwrap();
    assert!(pt.root_paddr().is_aligned(0x4000));
    assert_eq!(alloc.allocated_frames(), 1 + 4);
    // The very last page of the 41-bit space lives in root entry 2047, in the 4th frame.
    let top = (1 << 41) - K4;
    pt.map(gpa(top), hpa(0x8000_0000), K4, R, false).unwrap();
    let d = raw(&alloc, pt.root_paddr(), 2047);
    assert_eq!(d & 0x3ff, RiscvSv39x4::V, "non-leaf: V only");
    assert_eq!(
        pt.translate(gpa(top + 0x10)),
        Some((hpa(0x8000_0010), R, K4))
    );
    assert_eq!(
        pt.map(gpa(1 << 41), hpa(0), K4, R, false),
        Err(crate::PagingError::OutOfRange)
    );
    drop(pt);
    alloc.dealloc_frames(pad, 1);
    assert_eq!(alloc.allocated_frames(), 0);
}

#[test]
fn riscv_descriptor_encoding() {
    let v = RiscvSv39x4::V;
    // Non-leaf: PPN and V only (R = W = X = 0; U, A, D, G clear).
    assert_eq!(
        RiscvSv39x4::table(hpa(0x8_1234_5000), 0),
        (0x812345 << 10) | v
    );
    // 4 KiB RW: V R W U A D = 0xd7.
    assert_eq!(
        RiscvSv39x4::leaf(hpa(0x8_1234_5000), R | W, 2),
        0x0000_0002_048d_14d7
    );
    // 2 MiB RX: V R X U A D = 0xdb.
    assert_eq!(
        RiscvSv39x4::leaf(hpa(0x12_3440_0000), R | X, 1),
        0x0000_0004_8d10_00db
    );
    // 1 GiB RWX: 0xdf.
    assert_eq!(
        RiscvSv39x4::leaf(hpa(0xc0_0000_0000), R | W | X, 0),
        0x0000_0030_0000_00df
    );
    // U is set and G clear on every leaf, whatever the flags; DEVICE is not encoded.
    for f in [R, R | W, X, R | X, R | W | X, R | W | DEV] {
        for depth in 0..3 {
            let d = RiscvSv39x4::leaf(hpa(0x4000_0000), f, depth);
            assert_ne!(d & RiscvSv39x4::U, 0);
            assert_eq!(d & RiscvSv39x4::G, 0);
            assert_eq!(
                d & (RiscvSv39x4::A | RiscvSv39x4::D),
                RiscvSv39x4::A | RiscvSv39x4::D
            );
            assert_eq!(RiscvSv39x4::flags(d, depth), f - DEV);
            assert!(!RiscvSv39x4::is_table(d, depth));
        }
    }
    assert_eq!(
        RiscvSv39x4::leaf(hpa(0x1000), R | W | DEV, 2),
        RiscvSv39x4::leaf(hpa(0x1000), R | W, 2)
    );
    // The highest PPN bit (bit 53) round-trips.
    let top = hpa(((1usize << 44) - 1) << 12);
    assert_eq!(RiscvSv39x4::addr(RiscvSv39x4::leaf(top, R, 2)), top);
    assert_eq!(RiscvSv39x4::leaf(top, R, 2) >> 54, 0);
}

#[test]
fn riscv_descriptor_decoding() {
    let t = (0x812345 << 10) | 1;
    assert!(RiscvSv39x4::is_table(t, 0) && RiscvSv39x4::is_table(t, 1));
    assert!(
        !RiscvSv39x4::is_table(t, 2),
        "a non-leaf at level 0 is a fault, not a table"
    );
    assert_eq!(RiscvSv39x4::addr(t), hpa(0x8_1234_5000));
    assert!(!RiscvSv39x4::is_valid(0, 0));
    assert!(!RiscvSv39x4::is_valid(0b101, 2), "W without R is reserved");
}

#[test]
fn riscv_tables_bit_by_bit() {
    let alloc = FakeFrameAllocator::new(64);
    let mut pt = NestedPageTable::<RiscvSv39x4, _>::new(&alloc).unwrap();
    pt.map(gpa(0x8000_1000), hpa(0x8_1234_5000), K4, R | W, true)
        .unwrap();
    pt.map(gpa(0x8020_0000), hpa(0x12_3440_0000), M2, R | X, true)
        .unwrap();
    pt.map(gpa(0x1_4000_0000), hpa(0xc0_0000_0000), G1, R | W | X, true)
        .unwrap();
    let root = pt.root_paddr();
    // Root[2] -> level-1 table (non-leaf: V only in bits 9:0).
    let r2 = raw(&alloc, root, 2);
    assert_eq!(r2 & 0x3ff, 1);
    assert_eq!(r2 >> 54, 0);
    let l1 = rv_next(r2);
    assert!(alloc.is_allocated(l1));
    // L1[0] -> level-0 table; L1[1] = the 2 MiB RX megapage.
    let l1_0 = raw(&alloc, l1, 0);
    assert_eq!(l1_0 & 0x3ff, 1);
    assert_eq!(raw(&alloc, l1, 1), 0x0000_0004_8d10_00db);
    let l0 = rv_next(l1_0);
    assert_eq!(raw(&alloc, l0, 0), 0);
    assert_eq!(raw(&alloc, l0, 1), 0x0000_0002_048d_14d7);
    // Root[5] = the 1 GiB RWX gigapage.
    assert_eq!(raw(&alloc, root, 5), 0x0000_0030_0000_00df);
    let used: Vec<usize> = (0..2048).filter(|&i| raw(&alloc, root, i) != 0).collect();
    assert_eq!(used, [2, 5]);
    assert_eq!(
        pt.translate(gpa(0x8020_1234)),
        Some((hpa(0x12_3440_1234), R | X, M2))
    );
}

#[test]
fn riscv_hgatp() {
    assert_eq!(
        RiscvSv39x4::hgatp(hpa(0x8_1234_4000), 5),
        0x8000_5000_0081_2344
    );
    assert_eq!(
        RiscvSv39x4::hgatp(hpa(0x8000_0000), 0),
        0x8000_0000_0008_0000
    );
    let h = RiscvSv39x4::hgatp(hpa(0x8000_0000), 0x3fff);
    assert_eq!(h >> 60, 8, "MODE = Sv39x4");
    assert_eq!((h >> 44) & 0x3fff, 0x3fff, "VMID");
    assert_eq!((h >> 58) & 3, 0, "bits 59:58 are zero");
    let alloc = FakeFrameAllocator::new(16);
    let pt = NestedPageTable::<RiscvSv39x4, _>::new(&alloc).unwrap();
    let h = RiscvSv39x4::hgatp(pt.root_paddr(), 1);
    assert_eq!(h & ((1 << 44) - 1), pt.root_paddr().as_usize() >> 12);
}

// ---- Intel EPT ----

const EPT_ADDR: u64 = 0x000f_ffff_ffff_f000;

#[test]
fn ept_geometry() {
    assert_eq!(IntelEpt::LEVELS, 4);
    assert_eq!(IntelEpt::ROOT_ENTRIES, 512);
    assert_eq!(IntelEpt::ROOT_FRAMES, 1);
    assert_eq!(IntelEpt::GPA_BITS, 48);
    assert_eq!(entry_size::<IntelEpt>(0), 512 * G1);
    assert_eq!(entry_size::<IntelEpt>(1), G1);
    assert_eq!(entry_size::<IntelEpt>(2), M2);
    assert_eq!(entry_size::<IntelEpt>(3), K4);
    assert!(!IntelEpt::leaf_allowed(0), "no leaves in the PML4");
    assert!((1..4).all(IntelEpt::leaf_allowed));
    assert_eq!(
        NestedPageTable::<IntelEpt, &FakeFrameAllocator>::gpa_limit(),
        1 << 48
    );
}

#[test]
fn ept_descriptor_encoding() {
    // Table: R|W|X and the address, memory type / ignore-PAT / large clear.
    assert_eq!(IntelEpt::table(hpa(0x8_1234_5000), 0), 0x8_1234_5007);
    // 4 KiB RW RAM page: R W, memory type 6 (WB) in bits 5:3, PAT honoured, no large bit.
    assert_eq!(IntelEpt::leaf(hpa(0x8_1234_5000), R | W, 3), 0x8_1234_5033);
    // 2 MiB RX: R X, WB, large.
    assert_eq!(
        IntelEpt::leaf(hpa(0x12_3440_0000), R | X, 2),
        0x12_3440_00b5
    );
    // 1 GiB RWX: large.
    assert_eq!(
        IntelEpt::leaf(hpa(0xc0_0000_0000), R | W | X, 1),
        0xc0_0000_00b7
    );
    // Device page RW: memory type 0 (UC), ignore PAT.
    assert_eq!(
        IntelEpt::leaf(hpa(0xfed0_0000), R | W | DEV, 3),
        0xfed0_0043
    );
    // Execute-only and read-only.
    assert_eq!(IntelEpt::leaf(hpa(0x1000), X, 3) & 7, 0b100);
    assert_eq!(IntelEpt::leaf(hpa(0x1000), R, 3) & 7, 0b001);
    // A/D (bits 8, 9) never set; the address field is bits 51:12.
    for f in [R, R | W, R | W | X, R | W | DEV] {
        for depth in 1..4 {
            let d = IntelEpt::leaf(hpa(0x4000_0000), f, depth);
            assert_eq!(d & (0b11 << 8), 0);
        }
    }
    let top = hpa(EPT_ADDR as usize);
    assert_eq!(IntelEpt::addr(IntelEpt::leaf(top, R, 3)), top);
    assert_eq!(IntelEpt::leaf(top, R, 3) >> 52, 0);
}

#[test]
fn ept_descriptor_decoding() {
    let page = 0x8_1234_5033;
    assert!(IntelEpt::is_valid(page, 3) && !IntelEpt::is_table(page, 3));
    assert_eq!(IntelEpt::addr(page), hpa(0x8_1234_5000));
    assert_eq!(IntelEpt::flags(page, 3), R | W);
    let block = 0x12_3440_00b5;
    assert!(IntelEpt::is_valid(block, 2) && !IntelEpt::is_table(block, 2));
    assert_eq!(IntelEpt::flags(block, 2), R | X);
    assert_eq!(IntelEpt::flags(0xfed0_0043, 3), R | W | DEV);
    // A PML4 entry is always a table: bit 7 is reserved there.
    assert!(IntelEpt::is_table(0x8_1234_5087, 0));
    assert!(
        !IntelEpt::is_table(0x8_1234_5087, 1),
        "large bit: a 1 GiB leaf"
    );
    for depth in 0..3 {
        assert!(IntelEpt::is_table(0x8_1234_5007, depth));
    }
    assert!(
        !IntelEpt::is_table(0x8_1234_5007, 3),
        "a PT entry is a page"
    );
    // Present is "any of R/W/X": memory type bits alone are not present.
    assert!(!IntelEpt::is_valid(0x8_1234_5030, 3));
    assert!(!IntelEpt::is_valid(0, 0));
}

#[test]
fn ept_eptp() {
    // WB (6) in bits 2:0, walk length 4 (3 in bits 5:3), A/D off, root address.
    assert_eq!(IntelEpt::eptp(hpa(0x8_1234_5000)), 0x8_1234_501e);
    let e = IntelEpt::eptp(hpa(0x1000));
    assert_eq!(e & 7, 6, "memory type WB");
    assert_eq!((e >> 3) & 7, 3, "walk length - 1");
    assert_eq!(e & IntelEpt::EPTP_AD, 0, "A/D flags off");
    let alloc = FakeFrameAllocator::new(16);
    let pt = NestedPageTable::<IntelEpt, _>::new(&alloc).unwrap();
    assert_eq!(
        IntelEpt::eptp(pt.root_paddr()) & EPT_ADDR,
        pt.root_paddr().as_usize() as u64
    );
}

#[test]
fn ept_tables_bit_by_bit() {
    let alloc = FakeFrameAllocator::new(64);
    let mut pt = NestedPageTable::<IntelEpt, _>::new(&alloc).unwrap();
    pt.map(gpa(0x4000_1000), hpa(0x8_1234_5000), K4, R | W, true)
        .unwrap();
    pt.map(gpa(0x4020_0000), hpa(0x12_3440_0000), M2, R | X, true)
        .unwrap();
    pt.map(
        gpa(0x80_0000_0000),
        hpa(0xc0_0000_0000),
        G1,
        R | W | X,
        true,
    )
    .unwrap();
    pt.map(gpa(0xfed0_0000), hpa(0xfed0_0000), K4, R | W | DEV, true)
        .unwrap();
    let root = pt.root_paddr();
    let next = |d: u64| hpa((d & EPT_ADDR) as usize);
    // PML4[0] -> PDPT; PDPT[1] -> PD; PD[0] -> PT; PD[1] = the 2 MiB RX page.
    let p4 = raw(&alloc, root, 0);
    assert_eq!(p4 & !EPT_ADDR, 0b111, "table: R W X and nothing else");
    let pdpt = next(p4);
    let p3 = raw(&alloc, pdpt, 1);
    assert_eq!(p3 & !EPT_ADDR, 0b111);
    let pd = next(p3);
    assert_eq!(raw(&alloc, pd, 1), 0x12_3440_00b5);
    let pt_ = next(raw(&alloc, pd, 0));
    assert_eq!(raw(&alloc, pt_, 0), 0, "neighbouring page stays invalid");
    assert_eq!(raw(&alloc, pt_, 1), 0x8_1234_5033);
    // PML4[1] -> PDPT whose entry 0 is the 1 GiB RWX page.
    let pdpt1 = next(raw(&alloc, root, 1));
    assert_eq!(raw(&alloc, pdpt1, 0), 0xc0_0000_00b7);
    // The device page: PDPT[3] -> PD[0x1f6] -> PT[0x100].
    let dpd = next(raw(&alloc, pdpt, 3));
    let dpt = next(raw(&alloc, dpd, 0x1f6));
    assert_eq!(raw(&alloc, dpt, 0x100), 0xfed0_0043);
    let used: Vec<usize> = (0..512).filter(|&i| raw(&alloc, root, i) != 0).collect();
    assert_eq!(used, [0, 1]);
    assert_eq!(
        pt.translate(gpa(0x4020_1234)),
        Some((hpa(0x12_3440_1234), R | X, M2))
    );
    assert_eq!(
        pt.translate(gpa(0xfed0_0010)),
        Some((hpa(0xfed0_0010), R | W | DEV, K4))
    );
    assert_eq!(
        pt.map(gpa(1 << 48), hpa(0), K4, R, false),
        Err(crate::PagingError::OutOfRange)
    );
}

// ---- the fake format ----

#[test]
fn fake_format_differs_from_the_real_ones() {
    let leaf = FakeFormat::leaf(hpa(0x8_1234_5000), R | W, 3);
    assert_eq!(leaf, (1 << 63) | (1 << 62) | (0x812345 << 8) | 0b1101);
    assert_ne!(leaf, Aarch64Stage2::leaf(hpa(0x8_1234_5000), R | W, 2));
    assert_ne!(leaf, RiscvSv39x4::leaf(hpa(0x8_1234_5000), R | W, 2));
    assert_eq!(
        FakeFormat::table(hpa(0x8_1234_5000), 0),
        (1 << 63) | (0x812345 << 8)
    );
    assert!(!FakeFormat::leaf_allowed(0), "no leaves in the fake root");
    assert_eq!(FakeFormat::ROOT_FRAMES, 2);
}

// ---- AMD NPT ----

#[test]
fn npt_geometry() {
    assert_eq!(AmdNpt::LEVELS, 4);
    assert_eq!(AmdNpt::ROOT_ENTRIES, 512);
    assert_eq!(AmdNpt::ROOT_FRAMES, 1);
    assert_eq!(AmdNpt::GPA_BITS, 48);
    assert_eq!(entry_size::<AmdNpt>(0), 512 * G1);
    assert_eq!(entry_size::<AmdNpt>(1), G1);
    assert_eq!(entry_size::<AmdNpt>(2), M2);
    assert_eq!(entry_size::<AmdNpt>(3), K4);
    assert!(!AmdNpt::leaf_allowed(0), "no leaves in the PML4");
    assert!((1..4).all(AmdNpt::leaf_allowed));
    assert_eq!(
        NestedPageTable::<AmdNpt, &FakeFrameAllocator>::gpa_limit(),
        1 << 48
    );
}

#[test]
fn npt_descriptor_encoding() {
    // Table: P | RW | US | A, executable (NX clear), the leaf decides.
    assert_eq!(AmdNpt::table(hpa(0x8_1234_5000), 0), 0x8_1234_5027);
    // 4 KiB RW RAM page: P RW US A D, NX, WB (PWT, PCD clear), no PS.
    assert_eq!(
        AmdNpt::leaf(hpa(0x8_1234_5000), R | W, 3),
        0x8000_0008_1234_5067
    );
    // 2 MiB RX: P US A PS, read-only, executable.
    assert_eq!(AmdNpt::leaf(hpa(0x12_3440_0000), R | X, 2), 0x12_3440_00a5);
    // 1 GiB RWX: PS.
    assert_eq!(
        AmdNpt::leaf(hpa(0xc0_0000_0000), R | W | X, 1),
        0xc0_0000_00e7
    );
    // Device page RW: PCD | PWT (host PAT entry 3, UC), NX.
    assert_eq!(
        AmdNpt::leaf(hpa(0xfed0_0000), R | W | DEV, 3),
        0x8000_0000_fed0_007f
    );
    // Read-only: RW clear; execute-only is not expressible.
    assert_eq!(AmdNpt::leaf(hpa(0x1000), R, 3) & 3, 0b01);
    assert!(!AmdNpt::encodable(X));
    assert!(AmdNpt::encodable(R) && AmdNpt::encodable(R | W | X | DEV));
    // User on every level; the address field is bits 51:12.
    for f in [R, R | W, R | W | X, R | W | DEV] {
        for depth in 1..4 {
            assert_ne!(AmdNpt::leaf(hpa(0x4000_0000), f, depth) & AmdNpt::USER, 0);
        }
    }
    for depth in 0..3 {
        assert_ne!(AmdNpt::table(hpa(0x4000_0000), depth) & AmdNpt::USER, 0);
    }
    let top = hpa(EPT_ADDR as usize);
    assert_eq!(AmdNpt::addr(AmdNpt::leaf(top, R, 3)), top);
    assert_eq!(AmdNpt::leaf(top, R | X, 3) >> 52, 0);
}

#[test]
fn npt_descriptor_decoding() {
    let page = 0x8000_0008_1234_5067;
    assert!(AmdNpt::is_valid(page, 3) && !AmdNpt::is_table(page, 3));
    assert_eq!(AmdNpt::addr(page), hpa(0x8_1234_5000));
    assert_eq!(AmdNpt::flags(page, 3), R | W);
    let block = 0x12_3440_00a5;
    assert!(AmdNpt::is_valid(block, 2) && !AmdNpt::is_table(block, 2));
    assert_eq!(AmdNpt::flags(block, 2), R | X);
    assert_eq!(AmdNpt::flags(0x8000_0000_fed0_007f, 3), R | W | DEV);
    // A PML4 entry is always a table: PS is reserved there.
    assert!(AmdNpt::is_table(0x8_1234_5087, 0));
    assert!(!AmdNpt::is_table(0x8_1234_5087, 1), "PS: a 1 GiB leaf");
    for depth in 0..3 {
        assert!(AmdNpt::is_table(0x8_1234_5027, depth));
    }
    assert!(!AmdNpt::is_table(0x8_1234_5027, 3), "a PT entry is a page");
    // Present is bit 0 alone.
    assert!(!AmdNpt::is_valid(0x8000_0008_1234_5066, 3));
    assert!(!AmdNpt::is_valid(0, 0));
}

#[test]
fn npt_ncr3() {
    assert_eq!(AmdNpt::ncr3(hpa(0x8_1234_5000)), 0x8_1234_5000);
    let alloc = FakeFrameAllocator::new(16);
    let pt = NestedPageTable::<AmdNpt, _>::new(&alloc).unwrap();
    assert_eq!(
        AmdNpt::ncr3(pt.root_paddr()),
        pt.root_paddr().as_usize() as u64
    );
}

// ---- every format keeps the PteFormat contract ----

fn contract<F: PteFormat>() {
    assert!(F::ROOT_FRAMES.is_power_of_two());
    assert_eq!(F::ROOT_ENTRIES * 8, F::ROOT_FRAMES * K4);
    assert_eq!(1usize << (F::GPA_BITS - shift::<F>(0)), F::ROOT_ENTRIES);
    assert_eq!(shift::<F>(F::LEVELS - 1), 12);
    assert!(
        F::leaf_allowed(F::LEVELS - 1),
        "4 KiB pages must be allowed"
    );
    assert_eq!(entries::<F>(1), ENTRIES_PER_TABLE);
    let all = [
        R,
        R | W,
        X,
        R | X,
        R | W | X,
        R | DEV,
        R | W | DEV,
        R | W | X | DEV,
    ];
    let pa_top = (1usize << F::PA_BITS) - G1;
    for depth in 0..F::LEVELS {
        assert!(!F::is_valid(0, depth), "zero must be invalid");
        let pas = [0, G1, pa_top];
        for pa in pas {
            if depth + 1 < F::LEVELS {
                let t = F::table(hpa(pa), depth);
                assert!(F::is_valid(t, depth) && F::is_table(t, depth));
                assert_eq!(F::addr(t), hpa(pa));
            }
            if !F::leaf_allowed(depth) {
                continue;
            }
            for f in all {
                if f == X && F::NAME == "amd-npt" {
                    // Every present NPT entry is readable: no execute-only leaves.
                    assert!(!F::encodable(f));
                    continue;
                }
                assert!(F::encodable(f));
                let l = F::leaf(hpa(pa), f, depth);
                assert!(F::is_valid(l, depth), "{} leaf {f:?} at {depth}", F::NAME);
                assert!(!F::is_table(l, depth));
                assert_eq!(F::addr(l), hpa(pa));
                let expect = if F::ENCODES_DEVICE { f } else { f - DEV };
                assert_eq!(
                    F::flags(l, depth),
                    expect,
                    "{} leaf {f:?} at {depth}",
                    F::NAME
                );
            }
        }
    }
    for f in [MappingFlags::empty(), W, DEV, W | X, W | DEV] {
        assert!(!F::encodable(f), "{f:?}");
    }
}

for_each_format!(contract);
