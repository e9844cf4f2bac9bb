//! Hardware VMIDs: the tag the CPU puts on a VM's stage-2 / G-stage TLB entries. Every VM
//! that exists at the same time needs its own, so one VM never hits another's cached
//! translations. The VM ids of the configs are the user's names for VMs and may be any
//! `u32`; they are never used (or truncated) as VMIDs.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// The widest VMID any supported architecture has (aarch64 with 16-bit VMIDs).
pub const MAX_VMID_BITS: u32 = 16;

/// No VMID was left for a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoVmidLeft {
    /// How many VMIDs the hardware has for VMs.
    pub capacity: usize,
}

impl fmt::Display for NoVmidLeft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no hardware VMID left ({} for VMs, all in use)",
            self.capacity
        )
    }
}

/// Hands out the VMIDs `1..2^bits` (VMID 0 is never given: a vCPU whose VM has not been
/// given one shows 0), the lowest free one first.
#[derive(Debug, Clone)]
pub struct VmidAllocator {
    /// One bit per VMID, set when it is in use; bit 0 (VMID 0) is always set.
    used: Vec<u64>,
    capacity: usize,
}

impl VmidAllocator {
    /// An allocator for a VMID field of `bits` bits (0 to [`MAX_VMID_BITS`]; wider is
    /// taken as [`MAX_VMID_BITS`]). With 0 bits it has no VMID to give.
    pub fn new(bits: u32) -> Self {
        let count = 1usize << bits.min(MAX_VMID_BITS);
        let mut used = vec![0u64; count.div_ceil(64)];
        used[0] |= 1;
        Self {
            used,
            capacity: count - 1,
        }
    }

    /// How many VMIDs it has for VMs (`2^bits - 1`).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many are given out.
    pub fn in_use(&self) -> usize {
        self.used
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum::<usize>()
            - 1
    }

    /// The lowest free VMID, now in use.
    pub fn alloc(&mut self) -> Result<u16, NoVmidLeft> {
        let capacity = self.capacity;
        for (i, word) in self.used.iter_mut().enumerate() {
            if *word != u64::MAX {
                let bit = word.trailing_ones() as usize;
                let vmid = i * 64 + bit;
                if vmid > capacity {
                    break;
                }
                *word |= 1 << bit;
                return u16::try_from(vmid).map_err(|_| NoVmidLeft { capacity });
            }
        }
        Err(NoVmidLeft { capacity })
    }

    /// Gives `vmid` back. Returns whether it was in use (freeing VMID 0, one out of range
    /// or a free one changes nothing).
    pub fn free(&mut self, vmid: u16) -> bool {
        let vmid = usize::from(vmid);
        if vmid == 0 || vmid > self.capacity {
            return false;
        }
        let (word, bit) = (vmid / 64, vmid % 64);
        let was = self.used[word] & (1 << bit) != 0;
        self.used[word] &= !(1 << bit);
        was
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    #[test]
    fn eight_bits_give_255_distinct_vmids() {
        let mut a = VmidAllocator::new(8);
        assert_eq!(a.capacity(), 255);
        let got: Vec<u16> = (0..255).map(|_| a.alloc().unwrap()).collect();
        assert_eq!(got, (1..=255).collect::<Vec<u16>>());
        assert_eq!(a.in_use(), 255);
        assert_eq!(a.alloc(), Err(NoVmidLeft { capacity: 255 }));
        assert_eq!(
            NoVmidLeft { capacity: 255 }.to_string(),
            "no hardware VMID left (255 for VMs, all in use)"
        );
    }

    /// The bug of issue 10: VM ids 70000, 4464 and 112 were truncated to one 8-bit VMID.
    /// VMIDs now come from the allocator, whatever the VMs' ids.
    #[test]
    fn vm_ids_are_never_vmids() {
        let mut a = VmidAllocator::new(8);
        let vmids: Vec<u16> = [70000u32, 4464, 112]
            .iter()
            .map(|_| a.alloc().unwrap())
            .collect();
        assert_eq!(vmids, [1, 2, 3]);
    }

    #[test]
    fn freed_vmids_are_reused_lowest_first() {
        let mut a = VmidAllocator::new(16);
        assert_eq!(a.capacity(), 65535);
        for _ in 0..100 {
            a.alloc().unwrap();
        }
        assert!(a.free(70));
        assert!(a.free(3));
        assert!(!a.free(3), "already free");
        assert!(!a.free(0), "VMID 0 is never given");
        assert_eq!(a.alloc(), Ok(3));
        assert_eq!(a.alloc(), Ok(70));
        assert_eq!(a.alloc(), Ok(101));
        assert_eq!(a.in_use(), 101);
    }

    #[test]
    fn widths_at_the_edges() {
        let mut none = VmidAllocator::new(0);
        assert_eq!(none.capacity(), 0);
        assert!(none.alloc().is_err());
        assert!(!none.free(1));
        let mut one = VmidAllocator::new(1);
        assert_eq!(one.alloc(), Ok(1));
        assert!(one.alloc().is_err());
        // riscv64's 14 bits; wider than 16 is taken as 16.
        assert_eq!(VmidAllocator::new(14).capacity(), (1 << 14) - 1);
        let mut wide = VmidAllocator::new(40);
        assert_eq!(wide.capacity(), 65535);
        for _ in 0..65535 {
            wide.alloc().unwrap();
        }
        assert!(wide.alloc().is_err());
        assert!(wide.free(u16::MAX));
        assert_eq!(wide.alloc(), Ok(u16::MAX));
    }
}
