//! Guest memory as the vCPU reads and writes it itself (the instruction behind an MMIO
//! access, string I/O buffers), through the VM's nested page table (x86_64 bare metal only).

use crate::gpt::GuestMemory;
use axaddrspace::{MappingFlags, PteFormat};
use core::marker::PhantomData;

/// Guest memory reached through the VM's nested table of format `F` (EPT or NPT; RAM is
/// identity-mapped in the hypervisor). Only leaves mapping readable (writable) normal
/// memory are used. The nested tables are never freed while a vCPU of the VM runs (regions
/// are only removed when the VM is stopped), so the walk reads live tables.
pub(crate) struct NestedMemory<F> {
    root: u64,
    format: PhantomData<F>,
}

impl<F: PteFormat> NestedMemory<F> {
    /// The memory behind the nested table whose root is at host-physical `root`.
    pub(crate) fn new(root: u64) -> Self {
        Self {
            root,
            format: PhantomData,
        }
    }

    /// The host address of `gpa` if its page allows `need`.
    fn host(&self, gpa: u64, need: MappingFlags) -> Option<u64> {
        if gpa >> F::GPA_BITS != 0 {
            return None;
        }
        let mut table = self.root;
        for depth in 0..F::LEVELS {
            let shift = 12 + 9 * (F::LEVELS - 1 - depth) as u32;
            let idx = (gpa >> shift) & 0x1ff;
            // SAFETY: `table` is a live nested table frame of this VM (see the type's
            // documentation), identity-mapped; idx < 512.
            let e = unsafe { ((table + idx * 8) as *const u64).read_volatile() };
            if !F::is_valid(e, depth) {
                return None;
            }
            if F::is_table(e, depth) {
                table = F::addr(e).as_usize() as u64;
                continue;
            }
            let flags = F::flags(e, depth);
            if flags.contains(MappingFlags::DEVICE) || !flags.contains(need) {
                return None;
            }
            let mask = (1u64 << shift) - 1;
            return Some(F::addr(e).as_usize() as u64 + (gpa & mask));
        }
        None
    }

    fn each_page(
        &self,
        gpa: u64,
        len: usize,
        need: MappingFlags,
        mut f: impl FnMut(u64, usize, usize),
    ) -> bool {
        // Check every page first, then act.
        let mut done = 0;
        while done < len {
            let g = gpa.wrapping_add(done as u64);
            let n = (0x1000 - (g & 0xfff) as usize).min(len - done);
            if self.host(g, need).is_none() {
                return false;
            }
            done += n;
        }
        let mut done = 0;
        while done < len {
            let g = gpa + done as u64;
            let n = (0x1000 - (g & 0xfff) as usize).min(len - done);
            if let Some(h) = self.host(g, need) {
                f(h, done, n);
            }
            done += n;
        }
        true
    }
}

impl<F: PteFormat> GuestMemory for NestedMemory<F> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let len = buf.len();
        self.each_page(gpa, len, MappingFlags::READ, |h, at, n| {
            for i in 0..n {
                // SAFETY: `h..h + n` lies in one page of guest RAM mapped readable in the
                // VM's EPT; the guest may change it concurrently, hence volatile bytes.
                buf[at + i] = unsafe { ((h + i as u64) as *const u8).read_volatile() };
            }
        })
    }

    fn write(&self, gpa: u64, buf: &[u8]) -> bool {
        self.each_page(gpa, buf.len(), MappingFlags::WRITE, |h, at, n| {
            for i in 0..n {
                // SAFETY: `h..h + n` lies in one page of guest RAM mapped writable in the
                // VM's EPT.
                unsafe { ((h + i as u64) as *mut u8).write_volatile(buf[at + i]) };
            }
        })
    }

    fn writable(&self, gpa: u64, len: usize) -> bool {
        self.each_page(gpa, len, MappingFlags::WRITE, |_, _, _| {})
    }
}

impl<F: PteFormat> crate::insn_cache::HostMemory for NestedMemory<F> {
    fn host_readable(&self, gpa: u64) -> Option<u64> {
        self.host(gpa, MappingFlags::READ)
    }
}
