//! The walk through an x86 guest's own page tables (`x86_vcpu::gpt`), which the vCPU does
//! to fetch a faulting instruction and to reach a string I/O buffer: any paging mode (none,
//! 32-bit with and without PSE, PAE, 4-level, 5-level), any CR3, tables the input writes
//! into 64 KiB of guest RAM (entries pointing into it, or anywhere), and any linear
//! addresses.
//!
//! Checked: a translation keeps the page offset, is the linear address itself without
//! paging, and stays below 4 GiB with 32-bit tables; `read` gives the bytes each page's
//! own translation names; `write` translates every page before writing anything (an error
//! writes nothing) and writes each piece where its translation said; `fetch` returns 1 to
//! 15 bytes, all of the first page's part, the same bytes `read` gives.

use std::cell::RefCell;

use axvisor_fuzz::Input;
use x86_vcpu::gpt::{Access, GuestMemory, Paging, WalkError};
use x86_vcpu::insn::MAX_INSN_LEN;

/// Writable guest RAM at GPA 0.
const RAM: usize = 0x1_0000;
/// Read-only guest RAM above it (a ROM).
const ROM: usize = 0x1000;

/// Guest memory that records the writes made through it.
struct Mem {
    bytes: RefCell<Vec<u8>>,
    writes: RefCell<Vec<(u64, Vec<u8>)>>,
}

impl Mem {
    fn range(&self, gpa: u64, len: usize, limit: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(gpa).ok()?;
        let end = start.checked_add(len)?;
        (end <= limit).then_some(start..end)
    }
}

impl GuestMemory for Mem {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        match self.range(gpa, buf.len(), RAM + ROM) {
            Some(r) => {
                buf.copy_from_slice(&self.bytes.borrow()[r]);
                true
            }
            None => false,
        }
    }
    fn write(&self, gpa: u64, buf: &[u8]) -> bool {
        match self.range(gpa, buf.len(), RAM) {
            Some(r) => {
                self.bytes.borrow_mut()[r].copy_from_slice(buf);
                self.writes.borrow_mut().push((gpa, buf.to_vec()));
                true
            }
            None => false,
        }
    }
    fn writable(&self, gpa: u64, len: usize) -> bool {
        self.range(gpa, len, RAM).is_some()
    }
}

/// The paging modes: CR0, CR4, EFER.
const MODES: [(u64, u64, u64); 6] = [
    (0x11, 0, 0),                 // no paging
    (0x8000_0011, 0, 0),          // 32-bit
    (0x8000_0011, 0x10, 0),       // 32-bit, PSE
    (0x8000_0011, 0x20, 0),       // PAE
    (0x8000_0011, 0x20, 0x500),   // 4-level
    (0x8000_0011, 0x1020, 0x500), // 5-level (refused)
];

/// A plausible table entry pointing into RAM (present, often writable, sometimes a large
/// page), or any value.
fn entry(input: &mut Input<'_>) -> u64 {
    let raw = input.u64();
    if raw & 0xf == 0xf {
        raw
    } else {
        (raw & 0xf000) | 1 | (raw >> 60 & 1) << 1 | (raw >> 61 & 1) << 7
    }
}

/// A linear address in the first 64 KiB-ish of a region the tables map, or any.
fn linear(input: &mut Input<'_>) -> u64 {
    let raw = input.u64();
    match raw & 3 {
        0 => raw,
        1 => raw >> 40,
        2 => (raw >> 2) & 0x1_ffff,
        _ => ((raw >> 2) & 0x1_ffff) | ((raw >> 48) << 30),
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let (cr0, cr4, efer) = MODES[usize::from(input.u8()) % MODES.len()];
    let cr3 = u64::from(input.u16()) | if input.bool() { input.u64() } else { 0 };
    let paging = Paging {
        cr0,
        cr3,
        cr4,
        efer,
    };
    let mem = Mem {
        bytes: RefCell::new(vec![0; RAM + ROM]),
        writes: RefCell::new(Vec::new()),
    };
    // Table entries: at the start of each 4 KiB page of RAM, some entries (PAE PDPTEs and
    // 32-bit entries are read from these bytes too).
    let n = input.u8() % 64;
    for _ in 0..n {
        let at = usize::from(input.u16() & 0xfff8) % (RAM + ROM - 8);
        let e = entry(&mut input);
        mem.bytes.borrow_mut()[at..at + 8].copy_from_slice(&e.to_le_bytes());
    }

    while !input.is_empty() {
        let op = input.u8();
        let la = linear(&mut input);
        match op % 4 {
            0 => {
                let access = [Access::Read, Access::Write, Access::Fetch][usize::from(op >> 2) % 3];
                check_translate(&paging, &mem, la, access);
            }
            1 => {
                let mut buf = vec![0u8; usize::from(op >> 2) % 40];
                if paging.read(&mem, la, &mut buf, Access::Read).is_ok() {
                    let mut done = 0;
                    while done < buf.len() {
                        let a = la.wrapping_add(done as u64);
                        let n = (0x1000 - (a & 0xfff) as usize).min(buf.len() - done);
                        let gpa = paging
                            .translate(&mem, a, Access::Read)
                            .expect("a page read translates");
                        let mut direct = vec![0u8; n];
                        assert!(mem.read(gpa, &mut direct));
                        assert_eq!(&buf[done..done + n], &direct[..], "read at {a:#x}");
                        done += n;
                    }
                }
            }
            2 => {
                let len = 1 + usize::from(op >> 2) % 8;
                let buf: Vec<u8> = (0..len).map(|_| input.u8()).collect();
                // Where each piece should go, translated before anything is written.
                let mut pieces = Vec::new();
                let mut done = 0;
                while done < len {
                    let a = la.wrapping_add(done as u64);
                    let n = (0x1000 - (a & 0xfff) as usize).min(len - done);
                    pieces.push((paging.translate(&mem, a, Access::Write), done, n));
                    done += n;
                }
                mem.writes.borrow_mut().clear();
                let result = paging.write(&mem, la, &buf);
                let writes = mem.writes.borrow().clone();
                match result {
                    Ok(()) => {
                        assert_eq!(writes.len(), pieces.len(), "{pieces:?}");
                        for ((gpa, bytes), (t, at, n)) in writes.iter().zip(&pieces) {
                            assert_eq!(Ok(*gpa), *t, "piece at {at}");
                            assert_eq!(bytes[..], buf[*at..at + n]);
                        }
                    }
                    Err(e) => {
                        assert!(writes.is_empty(), "{e:?} after writing {writes:?}");
                        let _ = format!("{e:?}");
                    }
                }
            }
            _ => {
                let mut buf = [0u8; MAX_INSN_LEN];
                match paging.fetch(&mem, la, &mut buf) {
                    Ok(n) => {
                        let first = (0x1000 - (la & 0xfff) as usize).min(MAX_INSN_LEN);
                        assert!(n == first || n == MAX_INSN_LEN, "fetched {n} at {la:#x}");
                        let mut again = vec![0u8; n];
                        paging
                            .read(&mem, la, &mut again, Access::Fetch)
                            .expect("fetched bytes read again");
                        assert_eq!(&buf[..n], &again[..]);
                    }
                    Err(e) => {
                        let _ = format!("{e:?}");
                    }
                }
            }
        }
    }
}

fn check_translate(paging: &Paging, mem: &Mem, la: u64, access: Access) {
    let result = paging.translate(mem, la, access);
    assert_eq!(
        result,
        paging.translate(mem, la, access),
        "not deterministic"
    );
    match result {
        Ok(gpa) => {
            assert_eq!(gpa & 0xfff, la & 0xfff, "{la:#x} -> {gpa:#x}: page offset");
            if paging.cr0 & (1 << 31) == 0 {
                assert_eq!(gpa, la & 0xffff_ffff);
            } else if paging.cr4 & 0x20 == 0 {
                assert!(gpa <= u64::from(u32::MAX), "32-bit paging gave {gpa:#x}");
            } else {
                assert!(gpa < 1 << 52, "{la:#x} -> {gpa:#x}");
            }
            assert!(paging.efer & (1 << 10) == 0 || paging.cr4 & (1 << 12) == 0);
        }
        Err(WalkError::PageFault { addr, error_code }) => {
            assert_eq!(addr, la);
            assert_eq!(error_code & 2 != 0, access == Access::Write);
            assert_eq!(error_code & 0x10 != 0, access == Access::Fetch);
            // RSVD (bit 3) only with P.
            assert!(error_code & 8 == 0 || error_code & 1 != 0);
            assert_eq!(error_code & !0x1b, 0);
        }
        Err(WalkError::NotRam { .. }) => {}
        Err(WalkError::NonCanonical { addr }) => {
            assert_eq!(addr, la);
            assert!(
                paging.efer & (1 << 10) != 0,
                "only 64-bit mode has canonical checks"
            );
        }
        Err(WalkError::La57) => {
            assert!(paging.efer & (1 << 10) != 0 && paging.cr4 & (1 << 12) != 0);
        }
    }
}
