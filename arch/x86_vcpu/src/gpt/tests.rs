use super::*;
use std::cell::RefCell;
use std::vec;
use std::vec::Vec;

/// Guest RAM at GPA 0 of `len` bytes; nothing above.
struct Ram(RefCell<Vec<u8>>);

impl Ram {
    fn new(len: usize) -> Self {
        Ram(RefCell::new(vec![0; len]))
    }
    fn put64(&self, gpa: u64, v: u64) {
        self.0.borrow_mut()[gpa as usize..gpa as usize + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(&self, gpa: u64, v: u32) {
        self.0.borrow_mut()[gpa as usize..gpa as usize + 4].copy_from_slice(&v.to_le_bytes());
    }
}

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let m = self.0.borrow();
        let Some(end) = (gpa as usize).checked_add(buf.len()) else {
            return false;
        };
        if end > m.len() {
            return false;
        }
        buf.copy_from_slice(&m[gpa as usize..end]);
        true
    }
    fn writable(&self, gpa: u64, len: usize) -> bool {
        gpa as usize + len <= self.0.borrow().len()
    }
    fn write(&self, gpa: u64, buf: &[u8]) -> bool {
        let mut m = self.0.borrow_mut();
        let end = gpa as usize + buf.len();
        if end > m.len() {
            return false;
        }
        m[gpa as usize..end].copy_from_slice(buf);
        true
    }
}

const LONG: Paging = Paging {
    cr0: 0x8001_0011,
    cr3: 0x1000,
    cr4: 0x20,
    efer: 0x500,
};

/// 4-level tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD), 0x4000 (PT):
/// linear 0x40_0000_0000 + ... ; see each test.
fn long_tables() -> Ram {
    let ram = Ram::new(0x20_0000);
    // PML4[1] -> PDPT (linear 0x80_0000_0000..), PML4[0] -> PDPT too.
    ram.put64(0x1000, 0x2000 | 3);
    ram.put64(0x1008, 0x2000 | 3);
    // PDPT[0] -> PD; PDPT[1] = 1 GiB page at 0x4000_0000 (read-only).
    ram.put64(0x2000, 0x3000 | 3);
    ram.put64(0x2008, 0x4000_0000 | 0x81);
    // PD[0] -> PT; PD[1] = 2 MiB page at 0x20_0000 rw.
    ram.put64(0x3000, 0x4000 | 3);
    ram.put64(0x3008, 0x20_0000 | 0x83);
    // PT[5] = 0x9000 rw; PT[6] = 0xa000 read-only; PT[7] not present; PT[8] = 0xc000 rw.
    ram.put64(0x4000 + 5 * 8, 0x9000 | 3);
    ram.put64(0x4000 + 6 * 8, 0xa000 | 1);
    ram.put64(0x4000 + 8 * 8, 0xc000 | 3);
    // PT[9] -> a page outside guest RAM.
    ram.put64(0x4000 + 9 * 8, 0x1000_0000 | 3);
    ram
}

#[test]
fn no_paging_is_identity() {
    let ram = Ram::new(0x1000);
    let p = Paging { cr0: 0x11, ..LONG };
    assert_eq!(
        p.translate(&ram, 0x1234_5678, Access::Read),
        Ok(0x1234_5678)
    );
}

#[test]
fn four_level() {
    let ram = long_tables();
    let t = |la, a| LONG.translate(&ram, la, a);
    assert_eq!(t(0x5123, Access::Read), Ok(0x9123));
    assert_eq!(
        t(0x80_0000_5123, Access::Write),
        Ok(0x9123),
        "PML4[1] aliases PML4[0]"
    );
    assert_eq!(t(0x6010, Access::Fetch), Ok(0xa010));
    assert_eq!(t(0x2f_fff0, Access::Write), Ok(0x2f_fff0), "2 MiB page");
    assert_eq!(t(0x4123_4567, Access::Read), Ok(0x4123_4567), "1 GiB page");
    // Not present: P = 0 in the error code; W/R and I/D from the access.
    assert_eq!(
        t(0x7000, Access::Write),
        Err(WalkError::PageFault {
            addr: 0x7000,
            error_code: 2
        })
    );
    assert_eq!(
        t(0x7000, Access::Fetch),
        Err(WalkError::PageFault {
            addr: 0x7000,
            error_code: 0x10
        })
    );
    assert_eq!(
        t(0x1_0000_0000 * 2, Access::Read),
        Err(WalkError::PageFault {
            addr: 0x2_0000_0000,
            error_code: 0
        })
    );
    // Read-only: a write faults with P = 1.
    assert_eq!(
        t(0x6000, Access::Write),
        Err(WalkError::PageFault {
            addr: 0x6000,
            error_code: 3
        })
    );
    assert_eq!(
        t(0x4000_0000, Access::Write),
        Err(WalkError::PageFault {
            addr: 0x4000_0000,
            error_code: 3
        })
    );
    // A table outside guest RAM is the guest's problem.
    let bad = Paging {
        cr3: 0x4000_0000,
        ..LONG
    };
    assert_eq!(
        bad.translate(&ram, 0, Access::Read),
        Err(WalkError::NotRam { gpa: 0x4000_0000 })
    );
    let la57 = Paging {
        cr4: 0x20 | 1 << 12,
        ..LONG
    };
    assert_eq!(la57.translate(&ram, 0, Access::Read), Err(WalkError::La57));
}

#[test]
fn garbage_tables_never_panic() {
    // Every entry of every table is random: walks fail or succeed, never panic.
    let ram = Ram::new(0x10000);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..0x2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ram.put64(i * 8, x & 0x000f_ffff_ffff_ffff);
    }
    for mode in [
        LONG,
        Paging { efer: 0, ..LONG },
        Paging {
            efer: 0,
            cr4: 0x10,
            ..LONG
        },
    ] {
        for i in 0..5000u64 {
            let la = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let _ = mode.translate(&ram, la, Access::Read);
            let mut buf = [0u8; 15];
            let _ = mode.fetch(&ram, la, &mut buf);
        }
    }
}

#[test]
fn pae() {
    let ram = Ram::new(0x10000);
    // PDPTEs at 0x1020 (CR3 is 32-byte aligned); PDPTE[0] -> PD at 0x2000.
    ram.put64(0x1020, 0x2000 | 1);
    ram.put64(0x2000, 0x3000 | 3);
    ram.put64(0x2008, 0x20_0000 | 0x83);
    ram.put64(0x3000 + 4 * 8, 0x8000 | 3);
    let p = Paging {
        cr0: 0x8001_0011,
        cr3: 0x1020,
        cr4: 0x20,
        efer: 0,
    };
    assert_eq!(p.translate(&ram, 0x4abc, Access::Read), Ok(0x8abc));
    assert_eq!(p.translate(&ram, 0x21_2345, Access::Read), Ok(0x21_2345));
    assert_eq!(
        p.translate(&ram, 0x4000_0000, Access::Read),
        Err(WalkError::PageFault {
            addr: 0x4000_0000,
            error_code: 0
        })
    );
}

#[test]
fn two_level() {
    let ram = Ram::new(0x10000);
    ram.put32(0x1000, 0x2000 | 3);
    ram.put32(0x1004, 0x0040_0000 | 0x83);
    ram.put32(0x2000 + 3 * 4, 0x7000 | 1);
    let p = Paging {
        cr0: 0x8001_0011,
        cr3: 0x1000,
        cr4: 0x10,
        efer: 0,
    };
    assert_eq!(p.translate(&ram, 0x3456, Access::Read), Ok(0x7456));
    assert_eq!(
        p.translate(&ram, 0x0043_2100, Access::Read),
        Ok(0x0043_2100),
        "4 MiB page"
    );
    assert_eq!(
        p.translate(&ram, 0x3456, Access::Write),
        Err(WalkError::PageFault {
            addr: 0x3456,
            error_code: 3
        })
    );
    // Without CR4.PSE the PS bit is ignored: the PDE points at a page table.
    let nopse = Paging { cr4: 0, ..p };
    // (a page table at 0x40_0000, outside this guest's RAM).
    assert_eq!(
        nopse.translate(&ram, 0x0040_0000, Access::Read),
        Err(WalkError::NotRam { gpa: 0x40_0000 })
    );
}

#[test]
fn fetch_across_pages() {
    let ram = long_tables();
    ram.0.borrow_mut()[0x9ff8..0xa000].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    ram.0.borrow_mut()[0xa000..0xa007].copy_from_slice(&[9, 10, 11, 12, 13, 14, 15]);
    let mut buf = [0u8; 15];
    assert_eq!(LONG.fetch(&ram, 0x5ff8, &mut buf), Ok(15));
    assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    // The next page (0x7000) is not mapped: only the bytes of the first.
    let mut buf = [0u8; 15];
    assert_eq!(LONG.fetch(&ram, 0x6ffc, &mut buf), Ok(4));
    // The first page not mapped is a fault.
    assert_eq!(
        LONG.fetch(&ram, 0x7ff0, &mut buf),
        Err(WalkError::PageFault {
            addr: 0x7ff0,
            error_code: 0x10
        })
    );
    // A page outside guest RAM.
    assert_eq!(
        LONG.fetch(&ram, 0x9000, &mut buf),
        Err(WalkError::NotRam { gpa: 0x1000_0000 })
    );
}

#[test]
fn writes_translate_every_page_first() {
    let ram = long_tables();
    // 0x5ffe..0x6002 crosses into the read-only page: nothing is written.
    assert_eq!(
        LONG.write(&ram, 0x5ffe, &[1, 2, 3, 4]),
        Err(WalkError::PageFault {
            addr: 0x6000,
            error_code: 3
        })
    );
    assert_eq!(ram.0.borrow()[0x9ffe], 0);
    assert_eq!(
        LONG.write(&ram, 0x8ffe, &[1, 2, 3, 4]),
        Err(WalkError::NotRam { gpa: 0x1000_0000 })
    );
    assert_eq!(
        ram.0.borrow()[0xcffe],
        0,
        "nothing written when the second page fails"
    );
    assert_eq!(LONG.write(&ram, 0x5ffe, &[1, 2]), Ok(()));
    let mut b = [0u8; 2];
    assert_eq!(LONG.read(&ram, 0x5ffe, &mut b, Access::Read), Ok(()));
    assert_eq!(b, [1, 2]);
}

#[test]
fn non_canonical_in_64_bit_mode() {
    let ram = long_tables();
    // Bit 63 set without 47..62, and bit 48 alone: not canonical; the walk would alias
    // them to linear 0x5000 (bits 47:12 only), so they must fail before it.
    for la in [0x8000_0000_0000_5000u64, 0x0001_0000_0000_5000] {
        assert_eq!(
            LONG.translate(&ram, la, Access::Write),
            Err(WalkError::NonCanonical { addr: la })
        );
    }
    // The upper half is canonical (and walked like any address).
    assert!(!matches!(
        LONG.translate(&ram, 0xffff_8000_0000_5000, Access::Read),
        Err(WalkError::NonCanonical { .. })
    ));
    // Outside 64-bit mode linear addresses are 32 bits: nothing to check.
    let p = Paging { cr0: 0x11, ..LONG };
    assert_eq!(p.translate(&ram, 0x5000, Access::Read), Ok(0x5000));
}

/// Without CR0.WP a supervisor write goes to a read-only page (no #PF); with it the write
/// faults with P and W/R.
#[test]
fn write_protect_only_with_cr0_wp() {
    let ram = long_tables();
    let no_wp = Paging {
        cr0: LONG.cr0 & !(1 << 16),
        ..LONG
    };
    assert_eq!(no_wp.translate(&ram, 0x6008, Access::Write), Ok(0xa008));
    assert_eq!(
        LONG.translate(&ram, 0x6008, Access::Write),
        Err(WalkError::PageFault {
            addr: 0x6008,
            error_code: 3
        })
    );
    // 32-bit paging: the same.
    let ram = Ram::new(0x10_0000);
    ram.put32(0x1000, 0x2000 | 3);
    ram.put32(0x2000 + 4, 0x5000 | 1);
    let p = Paging {
        cr0: 0x8001_0011,
        cr3: 0x1000,
        cr4: 0,
        efer: 0,
    };
    assert_eq!(
        p.translate(&ram, 0x1004, Access::Write),
        Err(WalkError::PageFault {
            addr: 0x1004,
            error_code: 3
        })
    );
    let p = Paging {
        cr0: 0x8000_0011,
        ..p
    };
    assert_eq!(p.translate(&ram, 0x1004, Access::Write), Ok(0x5004));
}

/// The execute-disable bit of a PAE or 4-level entry is reserved without EFER.NXE: a #PF
/// with P and RSVD (and W/R, I/D from the access), whatever the level.
#[test]
fn execute_disable_reserved_without_nxe() {
    let ram = long_tables();
    ram.put64(0x4000 + 5 * 8, 0x9000 | 3 | 1 << 63);
    let nxe = Paging {
        efer: LONG.efer | 1 << 11,
        ..LONG
    };
    assert_eq!(nxe.translate(&ram, 0x5010, Access::Read), Ok(0x9010));
    let no_nxe = Paging {
        efer: LONG.efer & !(1 << 11),
        ..LONG
    };
    assert_eq!(
        no_nxe.translate(&ram, 0x5010, Access::Write),
        Err(WalkError::PageFault {
            addr: 0x5010,
            error_code: 0xb
        })
    );
    // In the PD of PAE paging.
    let ram = Ram::new(0x10_0000);
    ram.put64(0x1000, 0x2000 | 1);
    ram.put64(0x2000, 0x20_0000 | 0x83 | 1 << 63);
    let pae = Paging {
        cr0: 0x8001_0011,
        cr3: 0x1000,
        cr4: 0x20,
        efer: 0,
    };
    assert_eq!(
        pae.translate(&ram, 0x1234, Access::Read),
        Err(WalkError::PageFault {
            addr: 0x1234,
            error_code: 0x9
        })
    );
    let pae = Paging {
        efer: 1 << 11,
        ..pae
    };
    assert_eq!(pae.translate(&ram, 0x1234, Access::Read), Ok(0x20_1234));
}
