//! Address newtypes: guest-physical, host-physical and host-virtual addresses are distinct
//! types so one cannot be passed where another is expected.

use core::fmt;
use core::ops::Add;

macro_rules! addr_type {
    ($(#[$doc:meta])* $name:ident, $short:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(usize);

        impl $name {
            /// Wraps a raw address.
            pub const fn new(addr: usize) -> Self {
                Self(addr)
            }

            /// The raw address.
            pub const fn as_usize(self) -> usize {
                self.0
            }

            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: usize) -> Self {
                debug_assert!(align.is_power_of_two());
                Self(self.0 & !(align - 1))
            }

            /// Rounds up to a multiple of `align` (a power of two). Panics on overflow in
            /// debug builds and wraps in release ones, like `+`.
            pub const fn align_up(self, align: usize) -> Self {
                debug_assert!(align.is_power_of_two());
                Self((self.0 + (align - 1)) & !(align - 1))
            }

            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: usize) -> bool {
                debug_assert!(align.is_power_of_two());
                self.0 & (align - 1) == 0
            }

            /// The offset of the address inside an `align`-sized block (a power of two).
            pub const fn align_offset(self, align: usize) -> usize {
                debug_assert!(align.is_power_of_two());
                self.0 & (align - 1)
            }

            /// `self + off`, or `None` when it overflows.
            pub const fn checked_add(self, off: usize) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(a) => Some(Self(a)),
                    None => None,
                }
            }
        }

        impl Add<usize> for $name {
            type Output = Self;
            fn add(self, rhs: usize) -> Self {
                Self(self.0 + rhs)
            }
        }

        impl From<usize> for $name {
            fn from(addr: usize) -> Self {
                Self(addr)
            }
        }

        impl From<$name> for usize {
            fn from(addr: $name) -> usize {
                addr.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

addr_type!(
    /// A guest-physical address (an IPA on AArch64, a GPA on RISC-V and x86): what the guest
    /// believes is physical memory, translated by the nested page table.
    GuestPhysAddr,
    "GPA"
);
addr_type!(
    /// A host-physical address: what the nested page table's leaves and table descriptors
    /// point at.
    HostPhysAddr,
    "HPA"
);
addr_type!(
    /// A host-virtual address: where the hypervisor itself can dereference host-physical
    /// memory (see [`FrameAllocator::phys_to_virt`](crate::FrameAllocator::phys_to_virt)).
    HostVirtAddr,
    "HVA"
);

impl HostVirtAddr {
    /// The address as a raw pointer.
    pub const fn as_mut_ptr(self) -> *mut u8 {
        self.0 as *mut u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn arithmetic_and_alignment() {
        let a = GuestPhysAddr::new(0x4000_1234);
        assert_eq!(a.as_usize(), 0x4000_1234);
        assert_eq!(a.align_down(0x1000), GuestPhysAddr::new(0x4000_1000));
        assert_eq!(a.align_up(0x1000), GuestPhysAddr::new(0x4000_2000));
        assert_eq!(a.align_offset(0x1000), 0x234);
        assert!(!a.is_aligned(0x1000));
        assert!(a.align_down(0x1000).is_aligned(0x1000));
        assert_eq!(a.align_up(1), a);
        assert_eq!(a + 0x10, GuestPhysAddr::new(0x4000_1244));
        assert_eq!(GuestPhysAddr::new(usize::MAX).checked_add(1), None);
        assert_eq!(
            HostPhysAddr::new(0x1000).align_up(0x20_0000),
            HostPhysAddr::new(0x20_0000)
        );
        assert_eq!(HostVirtAddr::new(0).align_up(0x1000), HostVirtAddr::new(0));
    }

    #[test]
    fn formatting() {
        assert_eq!(
            format!("{:?}", GuestPhysAddr::new(0x8000_0000)),
            "GPA(0x80000000)"
        );
        assert_eq!(format!("{:?}", HostPhysAddr::new(0x1000)), "HPA(0x1000)");
        assert_eq!(format!("{:?}", HostVirtAddr::new(0x10)), "HVA(0x10)");
        assert_eq!(format!("{}", GuestPhysAddr::new(0x4000_0000)), "0x40000000");
        assert_eq!(format!("{:x}", HostPhysAddr::new(0xabc)), "abc");
    }
}
