//! The I/O ports a VM's guest reaches without an exit (its passthrough ports, from the VM
//! config) and the permission bitmaps both backends build from them: VMX's I/O bitmaps A
//! and B, SVM's I/O permission map. In all three a set bit makes an access to its port
//! exit; an access of several bytes exits when any of its ports' bits is set, so a
//! multi-byte access that only starts among a VM's ports still exits.
//!
//! One [`IoPorts`] per VM, shared by its vCPUs; each vCPU builds its own bitmaps from it
//! when it is created (docs/x86.md, "Passthrough").

use crate::svm::vmcb::IoPermissionMap;
use core::ops::Range;

/// The number of I/O ports (they are 16-bit).
pub const PORTS: u32 = 0x1_0000;

/// The I/O ports a VM's guest reaches directly: one bit per port, set = open (no exit).
#[derive(Clone, PartialEq, Eq)]
pub struct IoPorts {
    open: [u8; (PORTS / 8) as usize],
}

impl core::fmt::Debug for IoPorts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let open = (0..PORTS).filter(|&p| self.is_open(p)).count();
        write!(f, "IoPorts({open} open)")
    }
}

impl Default for IoPorts {
    fn default() -> Self {
        Self::none()
    }
}

impl IoPorts {
    /// No port open: every I/O instruction exits (a VM without passthrough ports).
    pub const fn none() -> Self {
        Self {
            open: [0; (PORTS / 8) as usize],
        }
    }

    /// The ports `ranges` open, every other one closed. Ports from 0x1_0000 on do not
    /// exist and are ignored (the config check refuses them).
    pub fn with_open(ranges: impl IntoIterator<Item = Range<u32>>) -> Self {
        let mut ports = Self::none();
        for r in ranges {
            for p in r.start..r.end.min(PORTS) {
                ports.open[(p / 8) as usize] |= 1 << (p % 8);
            }
        }
        ports
    }

    /// Whether the guest reaches `port` directly (`false` for a port from 0x1_0000 on).
    pub fn is_open(&self, port: u32) -> bool {
        port < PORTS && self.open[(port / 8) as usize] & (1 << (port % 8)) != 0
    }

    /// Whether any port is open.
    pub fn any_open(&self) -> bool {
        self.open.iter().any(|&b| b != 0)
    }

    /// VMX's I/O bitmaps: A for ports 0..0x8000, B for 0x8000..0x1_0000; every port but the
    /// open ones exits.
    pub fn vmx_bitmaps(&self) -> VmxIoBitmaps {
        let mut maps = VmxIoBitmaps {
            a: [0xff; 4096],
            b: [0xff; 4096],
        };
        let (low, high) = self.open.split_at(4096);
        for (map, open) in [(&mut maps.a, low), (&mut maps.b, high)] {
            for (m, o) in map.iter_mut().zip(open) {
                *m = !o;
            }
        }
        maps
    }

    /// Opens the open ports in SVM's I/O permission map (every bit set by
    /// [`IoPermissionMap::new`]); its bits past port 0xFFFF (an access that wraps) stay
    /// set.
    pub fn open_in(&self, iopm: &mut IoPermissionMap) {
        for (m, o) in iopm.0.iter_mut().zip(&self.open) {
            *m &= !o;
        }
    }
}

/// VMX's two I/O bitmaps, each a 4 KiB page (their physical addresses go in the VMCS's
/// I/O-bitmap A and B fields); a set bit makes an access to its port exit.
#[repr(C, align(4096))]
pub struct VmxIoBitmaps {
    /// Ports 0..0x8000.
    pub a: [u8; 4096],
    /// Ports 0x8000..0x1_0000.
    pub b: [u8; 4096],
}

impl VmxIoBitmaps {
    /// Whether an access to `port` exits (a port from 0x1_0000 on always does).
    pub fn exits(&self, port: u32) -> bool {
        let (map, p) = match port {
            0..0x8000 => (&self.a, port),
            0x8000..PORTS => (&self.b, port - 0x8000),
            _ => return true,
        };
        map[(p / 8) as usize] & (1 << (p % 8)) != 0
    }
}

#[cfg(test)]
mod tests;
