//! The guest's own page tables: translating a guest-linear address (an instruction to
//! decode, a string I/O buffer) to a guest-physical one, reading every table through
//! checked guest-memory accesses. A table the guest got wrong is the guest's fault (a
//! [`WalkError`] the vCPU turns into a #PF or a stopped VM), never the host's. Pure,
//! unit-tested on the host.
//!
//! Paging modes: none (CR0.PG = 0: linear = physical), 32-bit (4 KiB pages, 4 MiB with
//! CR4.PSE), PAE (CR4.PAE, four PDPTEs at CR3) and 4-level (EFER.LMA). 5-level paging
//! (CR4.LA57) is refused.

/// Checked access to guest-physical memory.
pub trait GuestMemory {
    /// Reads `buf.len()` bytes at `gpa`; `false` (and nothing read) if any byte is not
    /// readable guest RAM.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool;
    /// Writes `buf` at `gpa`; `false` (and nothing written) if any byte is not writable
    /// guest RAM.
    fn write(&self, gpa: u64, buf: &[u8]) -> bool;
    /// Whether `len` bytes at `gpa` are writable guest RAM.
    fn writable(&self, gpa: u64, len: usize) -> bool;
}

/// The guest's paging controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
}

const CR0_PG: u64 = 1 << 31;
const CR0_WP: u64 = 1 << 16;
const EFER_NXE: u64 = 1 << 11;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const PS: u64 = 1 << 7;
/// The execute-disable bit of a 64-bit entry: reserved without EFER.NXE.
const XD: u64 = 1 << 63;
/// Address bits 51:12 of a 64-bit entry.
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Why a guest-linear address has no guest-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The guest's tables do not map it (or not for this access, or an entry has a
    /// reserved bit set): the guest gets a #PF with this error code and CR2 = `addr`.
    PageFault {
        /// The linear address.
        addr: u64,
        /// The #PF error code (bit 0 P, bit 1 W/R, bit 3 RSVD, bit 4 I/D).
        error_code: u32,
    },
    /// A table (or the page) is not in guest RAM at `gpa`.
    NotRam {
        /// The guest-physical address that could not be read.
        gpa: u64,
    },
    /// The guest uses 5-level paging.
    La57,
    /// A linear address of 64-bit mode that is not canonical (bits 63:47 not all equal):
    /// the guest gets #GP(0), as the CPU gives it for such an operand.
    NonCanonical {
        /// The linear address.
        addr: u64,
    },
}

/// What the access is, for permissions and the #PF error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write (the page must be writable).
    Write,
    /// An instruction fetch.
    Fetch,
}

impl Paging {
    /// The guest-physical address of `linear` for `access`, as a supervisor-mode access:
    /// presence, for writes the writable bits (only with CR0.WP: without it a supervisor
    /// write goes to read-only pages), and the execute-disable bit of a 64-bit entry, which
    /// is reserved without EFER.NXE (a #PF with RSVD). The user/supervisor and no-execute
    /// checks are not made: an instruction fetch was made by the CPU before (this is the
    /// emulation of an instruction it trapped), and string I/O from user mode needs IOPL 3.
    pub fn translate(
        &self,
        mem: &dyn GuestMemory,
        linear: u64,
        access: Access,
    ) -> Result<u64, WalkError> {
        if self.cr0 & CR0_PG == 0 {
            return Ok(linear & 0xffff_ffff);
        }
        let write = access == Access::Write;
        let fault = |present: bool| WalkError::PageFault {
            addr: linear,
            error_code: u32::from(present)
                | u32::from(write) << 1
                | u32::from(access == Access::Fetch) << 4,
        };
        let reserved = WalkError::PageFault {
            addr: linear,
            error_code: 1
                | u32::from(write) << 1
                | 1 << 3
                | u32::from(access == Access::Fetch) << 4,
        };
        // Writes to read-only pages fault only with CR0.WP (supervisor accesses).
        let write_checked = write && self.cr0 & CR0_WP != 0;
        let xd_reserved = self.efer & EFER_NXE == 0;
        let read64 = |gpa: u64| -> Result<u64, WalkError> {
            let mut b = [0u8; 8];
            if mem.read(gpa, &mut b) {
                Ok(u64::from_le_bytes(b))
            } else {
                Err(WalkError::NotRam { gpa })
            }
        };
        if self.efer & EFER_LMA != 0 {
            if self.cr4 & CR4_LA57 != 0 {
                return Err(WalkError::La57);
            }
            if ((linear as i64) << 16) >> 16 != linear as i64 {
                return Err(WalkError::NonCanonical { addr: linear });
            }
            let mut table = self.cr3 & ADDR;
            for level in (0..4).rev() {
                let shift = 12 + 9 * level;
                let e = read64(table + ((linear >> shift) & 0x1ff) * 8)?;
                if e & P == 0 {
                    return Err(fault(false));
                }
                if xd_reserved && e & XD != 0 {
                    return Err(reserved);
                }
                if write_checked && e & RW == 0 {
                    return Err(fault(true));
                }
                if level == 0 || (level <= 2 && e & PS != 0) {
                    let size_mask = (1u64 << shift) - 1;
                    return Ok((e & ADDR & !size_mask) | (linear & size_mask));
                }
                table = e & ADDR;
            }
            unreachable!("level 0 always returns")
        } else if self.cr4 & CR4_PAE != 0 {
            let linear = linear & 0xffff_ffff;
            let pdpte = read64((self.cr3 & 0xffff_ffe0) + (linear >> 30) * 8)?;
            if pdpte & P == 0 {
                return Err(fault(false));
            }
            let mut table = pdpte & ADDR;
            for level in [1u32, 0] {
                let shift = 12 + 9 * level;
                let e = read64(table + ((linear >> shift) & 0x1ff) * 8)?;
                if e & P == 0 {
                    return Err(fault(false));
                }
                if xd_reserved && e & XD != 0 {
                    return Err(reserved);
                }
                if write_checked && e & RW == 0 {
                    return Err(fault(true));
                }
                if level == 0 || e & PS != 0 {
                    let size_mask = (1u64 << shift) - 1;
                    return Ok((e & ADDR & !size_mask) | (linear & size_mask));
                }
                table = e & ADDR;
            }
            unreachable!("level 0 always returns")
        } else {
            let linear = linear & 0xffff_ffff;
            let read32 = |gpa: u64| -> Result<u64, WalkError> {
                let mut b = [0u8; 4];
                if mem.read(gpa, &mut b) {
                    Ok(u64::from(u32::from_le_bytes(b)))
                } else {
                    Err(WalkError::NotRam { gpa })
                }
            };
            let pde = read32((self.cr3 & 0xffff_f000) + (linear >> 22) * 4)?;
            if pde & P == 0 {
                return Err(fault(false));
            }
            if write_checked && pde & RW == 0 {
                return Err(fault(true));
            }
            if pde & PS != 0 && self.cr4 & CR4_PSE != 0 {
                return Ok((pde & 0xffc0_0000) | (linear & 0x3f_ffff));
            }
            let pte = read32((pde & 0xffff_f000) + ((linear >> 12) & 0x3ff) * 4)?;
            if pte & P == 0 {
                return Err(fault(false));
            }
            if write_checked && pte & RW == 0 {
                return Err(fault(true));
            }
            Ok((pte & 0xffff_f000) | (linear & 0xfff))
        }
    }

    /// Copies guest-linear memory at `linear` into `buf`, page by page. On an error
    /// nothing is promised about `buf`.
    pub fn read(
        &self,
        mem: &dyn GuestMemory,
        linear: u64,
        buf: &mut [u8],
        access: Access,
    ) -> Result<(), WalkError> {
        let mut done = 0;
        while done < buf.len() {
            let la = linear.wrapping_add(done as u64);
            let n = (0x1000 - (la & 0xfff) as usize).min(buf.len() - done);
            let gpa = self.translate(mem, la, access)?;
            if !mem.read(gpa, &mut buf[done..done + n]) {
                return Err(WalkError::NotRam { gpa });
            }
            done += n;
        }
        Ok(())
    }

    /// Copies `buf` to guest-linear memory at `linear`, page by page; every page is
    /// translated before anything is written.
    pub fn write(&self, mem: &dyn GuestMemory, linear: u64, buf: &[u8]) -> Result<(), WalkError> {
        // At most two pages for the accesses the vCPU makes (a port I/O element).
        let mut pages = [(0u64, 0usize, 0usize); 2];
        let mut count = 0;
        let mut done = 0;
        while done < buf.len() {
            let la = linear.wrapping_add(done as u64);
            let n = (0x1000 - (la & 0xfff) as usize).min(buf.len() - done);
            if count == pages.len() {
                return Err(WalkError::NotRam { gpa: la });
            }
            let gpa = self.translate(mem, la, Access::Write)?;
            if !mem.writable(gpa, n) {
                return Err(WalkError::NotRam { gpa });
            }
            pages[count] = (gpa, done, n);
            count += 1;
            done += n;
        }
        for &(gpa, at, n) in &pages[..count] {
            if !mem.write(gpa, &buf[at..at + n]) {
                return Err(WalkError::NotRam { gpa });
            }
        }
        Ok(())
    }

    /// Fetches up to [`crate::insn::MAX_INSN_LEN`] instruction bytes at `rip` (a linear
    /// address) into `buf` and returns how many: fewer when the next page is not mapped
    /// (the decoder then says whether the instruction fits in what was read).
    pub fn fetch(
        &self,
        mem: &dyn GuestMemory,
        rip: u64,
        buf: &mut [u8; crate::insn::MAX_INSN_LEN],
    ) -> Result<usize, WalkError> {
        let first = ((0x1000 - (rip & 0xfff)) as usize).min(buf.len());
        self.read(mem, rip, &mut buf[..first], Access::Fetch)?;
        if first < buf.len()
            && self
                .read(
                    mem,
                    rip.wrapping_add(first as u64),
                    &mut buf[first..],
                    Access::Fetch,
                )
                .is_err()
        {
            return Ok(first);
        }
        Ok(buf.len())
    }
}

#[cfg(test)]
mod tests;
