//! The guest entry contract (docs/x86.md, "Guest entry contract"): the state every x86 VM
//! starts in — 64-bit mode, flat segments, paging on with an identity map of the low
//! 4 GiB — and the GDT and page tables the hypervisor writes into guest RAM for it. Pure,
//! unit-tested on the host.
//!
//! | GPA | what |
//! |---|---|
//! | 0x1000 | GDT: null, null, 0x10 64-bit code, 0x18 data, 0x20 64-bit TSS (16 bytes) |
//! | 0x1080 | the TSS (104 bytes, zero) |
//! | 0x2000 | PML4: entry 0 → the PDPT |
//! | 0x3000 | PDPT: entries 0..4 → the page directories |
//! | 0x4000..0x8000 | four page directories of 2 MiB pages: GPA 0..4 GiB, identity |

use alloc::vec::Vec;

/// Where the boot tables start in guest RAM.
pub const BOOT_TABLES_GPA: u64 = 0x1000;
/// Where they end (exclusive): a VM's RAM must cover `0..BOOT_TABLES_END`.
pub const BOOT_TABLES_END: u64 = 0x8000;
/// The GDT.
pub const GDT_GPA: u64 = 0x1000;
/// The GDT's limit (five 8-byte slots, the TSS taking two).
pub const GDT_LIMIT: u32 = 6 * 8 - 1;
/// The TSS.
pub const TSS_GPA: u64 = 0x1080;
/// The TSS's limit.
pub const TSS_LIMIT: u32 = 0x67;
/// The PML4 (the guest's CR3).
pub const PML4_GPA: u64 = 0x2000;
const PDPT_GPA: u64 = 0x3000;
const PD_GPA: u64 = 0x4000;

/// The code segment selector (Linux's `__BOOT_CS`).
pub const CODE_SELECTOR: u16 = 0x10;
/// The data segment selector (Linux's `__BOOT_DS`), in DS, ES, SS, FS and GS.
pub const DATA_SELECTOR: u16 = 0x18;
/// The TSS selector in TR.
pub const TSS_SELECTOR: u16 = 0x20;

/// The 64-bit code descriptor: base 0, limit 0xFFFFF, G, L, present, DPL 0, execute/read,
/// accessed.
pub const CODE_DESCRIPTOR: u64 = 0x00af_9b00_0000_ffff;
/// The data descriptor: base 0, limit 0xFFFFF, G, D/B, present, DPL 0, read/write,
/// accessed.
pub const DATA_DESCRIPTOR: u64 = 0x00cf_9300_0000_ffff;

/// VMCS access rights (type, S, DPL, P, AVL, L, D/B, G; bit 16 unusable) of the code
/// segment.
pub const CODE_ACCESS_RIGHTS: u32 = 0xa09b;
/// Access rights of the data segments.
pub const DATA_ACCESS_RIGHTS: u32 = 0xc093;
/// Access rights of TR: a busy 64-bit TSS, present.
pub const TSS_ACCESS_RIGHTS: u32 = 0x8b;
/// Access rights of an unusable segment (LDTR).
pub const UNUSABLE: u32 = 1 << 16;

/// CR0 at entry: PE, MP, ET, NE, WP, PG.
pub const CR0: u64 = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31);
/// CR4 at entry, as the guest sees it: PAE.
pub const CR4: u64 = 1 << 5;
/// EFER at entry: LME, LMA, NXE.
pub const EFER: u64 = (1 << 8) | (1 << 10) | (1 << 11);
/// RFLAGS at entry: only the reserved bit 1.
pub const RFLAGS: u64 = 0x2;
/// IA32_PAT at power-on (WB, WT, UC-, UC, repeated).
pub const PAT: u64 = 0x0007_0406_0007_0406;

/// The 64-bit TSS descriptor (two slots) for the TSS at [`TSS_GPA`], busy.
pub fn tss_descriptor() -> [u64; 2] {
    let base = TSS_GPA;
    let low = u64::from(TSS_LIMIT & 0xffff)
        | (base & 0xff_ffff) << 16
        | 0x8b << 40
        | u64::from(TSS_LIMIT >> 16 & 0xf) << 48
        | (base >> 24 & 0xff) << 56;
    [low, base >> 32]
}

/// The bytes of guest RAM from [`BOOT_TABLES_GPA`] to [`BOOT_TABLES_END`]: the GDT, the
/// TSS and the page tables, ready to be written into the VM's RAM before vCPU 0 starts.
pub fn boot_tables() -> Vec<u8> {
    let mut m = alloc::vec![0u8; (BOOT_TABLES_END - BOOT_TABLES_GPA) as usize];
    let mut put = |gpa: u64, v: u64| {
        let at = (gpa - BOOT_TABLES_GPA) as usize;
        m[at..at + 8].copy_from_slice(&v.to_le_bytes());
    };
    put(GDT_GPA + u64::from(CODE_SELECTOR), CODE_DESCRIPTOR);
    put(GDT_GPA + u64::from(DATA_SELECTOR), DATA_DESCRIPTOR);
    let [lo, hi] = tss_descriptor();
    put(GDT_GPA + u64::from(TSS_SELECTOR), lo);
    put(GDT_GPA + u64::from(TSS_SELECTOR) + 8, hi);
    // Present | writable on every table entry; PS on the 2 MiB pages.
    const PW: u64 = 0b11;
    const PS: u64 = 1 << 7;
    put(PML4_GPA, PDPT_GPA | PW);
    for i in 0..4u64 {
        put(PDPT_GPA + i * 8, (PD_GPA + i * 0x1000) | PW);
    }
    for i in 0..2048u64 {
        put(PD_GPA + i * 8, (i << 21) | PW | PS);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::{Access, GuestMemory, Paging};

    struct Ram(Vec<u8>);

    impl GuestMemory for Ram {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
            let g = gpa as usize;
            if g < BOOT_TABLES_GPA as usize || g + buf.len() > BOOT_TABLES_END as usize {
                return false;
            }
            let at = g - BOOT_TABLES_GPA as usize;
            buf.copy_from_slice(&self.0[at..at + buf.len()]);
            true
        }
        fn write(&self, _: u64, _: &[u8]) -> bool {
            false
        }
        fn writable(&self, _: u64, _: usize) -> bool {
            false
        }
    }

    #[test]
    fn the_tables_identity_map_4_gib() {
        let ram = Ram(boot_tables());
        assert_eq!(ram.0.len(), 0x7000);
        let p = Paging {
            cr0: CR0,
            cr3: PML4_GPA,
            cr4: CR4,
            efer: EFER,
        };
        for la in [0, 0x1000, 0x20_0000, 0x20_1234, 0xfee0_0000, 0xffff_ffff] {
            assert_eq!(p.translate(&ram, la, Access::Write), Ok(la), "{la:#x}");
        }
        assert!(p.translate(&ram, 0x1_0000_0000, Access::Read).is_err());
    }

    #[test]
    fn gdt_entries() {
        let t = boot_tables();
        let slot = |sel: u16| {
            let at = sel as usize;
            u64::from_le_bytes(t[at..at + 8].try_into().unwrap())
        };
        assert_eq!(slot(0), 0);
        assert_eq!(slot(8), 0);
        assert_eq!(slot(CODE_SELECTOR), CODE_DESCRIPTOR);
        assert_eq!(slot(DATA_SELECTOR), DATA_DESCRIPTOR);
        // The TSS descriptor: limit 0x67, base 0x1080, type 0xB, present.
        assert_eq!(slot(TSS_SELECTOR), 0x0000_8b00_1080_0067);
        assert_eq!(slot(TSS_SELECTOR + 8), 0);
        assert_eq!(GDT_LIMIT, 0x2f);
        // The access rights follow the descriptors' bits 40..56 (minus the limit nibble).
        let ar = |d: u64| ((d >> 40) & 0xf0ff) as u32;
        assert_eq!(ar(CODE_DESCRIPTOR), CODE_ACCESS_RIGHTS);
        assert_eq!(ar(DATA_DESCRIPTOR), DATA_ACCESS_RIGHTS);
        assert_eq!(ar(slot(TSS_SELECTOR)), TSS_ACCESS_RIGHTS);
        assert!(TSS_GPA + u64::from(TSS_LIMIT) < PML4_GPA);
    }

    #[test]
    fn control_registers() {
        assert_eq!(CR0, 0x8001_0033);
        assert_eq!(EFER, 0xd00);
    }
}
