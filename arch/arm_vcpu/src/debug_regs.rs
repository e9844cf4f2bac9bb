//! The guest's breakpoint and watchpoint registers (DBGBVR<n>_EL1, DBGBCR<n>_EL1,
//! DBGWVR<n>_EL1, DBGWCR<n>_EL1), switched with the vCPU.
//!
//! MDCR_EL2.TDA is clear (Linux writes MDSCR_EL1 at boot, so trapping would cost it exits),
//! so a guest reads and writes the CPU's own registers: without the switch a guest would
//! read the addresses another VM on its CPU left there and, once it set MDSCR_EL1.MDE, take
//! that VM's breakpoints. All of them are switched eagerly, as many as ID_AA64DFR0_EL1 says
//! the CPU has (BRPs, WRPs): a vCPU switch costs a save and a restore of each register (6
//! breakpoints and 4 watchpoints on QEMU's Cortex-A72: 20 registers), the exit paths nothing.

/// The most breakpoints or watchpoints the architecture allows (a 4-bit count minus one).
const MAX: usize = 16;

/// One CPU's breakpoint and watchpoint registers as a guest left them.
#[derive(Clone, Debug)]
pub(crate) struct DebugRegs {
    bvr: [u64; MAX],
    bcr: [u64; MAX],
    wvr: [u64; MAX],
    wcr: [u64; MAX],
    /// How many breakpoints the CPU implements.
    brps: usize,
    /// How many watchpoints the CPU implements.
    wrps: usize,
}

impl DebugRegs {
    /// All disabled and zero, sized from ID_AA64DFR0_EL1 (BRPs 15:12 and WRPs 23:20, each
    /// the count minus one).
    pub(crate) fn new(id_aa64dfr0: u64) -> Self {
        Self {
            bvr: [0; MAX],
            bcr: [0; MAX],
            wvr: [0; MAX],
            wcr: [0; MAX],
            brps: ((id_aa64dfr0 >> 12) & 0xf) as usize + 1,
            wrps: ((id_aa64dfr0 >> 20) & 0xf) as usize + 1,
        }
    }

    /// Back to the reset state: every breakpoint and watchpoint disabled and zero.
    pub(crate) fn reset(&mut self) {
        *self = Self {
            brps: self.brps,
            wrps: self.wrps,
            ..Self::new(0)
        };
    }

    /// Reads the CPU's registers into `self`.
    pub(crate) fn save(&mut self) {
        for n in 0..self.brps {
            (self.bvr[n], self.bcr[n]) = access::read_breakpoint(n);
        }
        for n in 0..self.wrps {
            (self.wvr[n], self.wcr[n]) = access::read_watchpoint(n);
        }
    }

    /// Writes `self` into the CPU's registers.
    pub(crate) fn restore(&self) {
        for n in 0..self.brps {
            access::write_breakpoint(n, self.bvr[n], self.bcr[n]);
        }
        for n in 0..self.wrps {
            access::write_watchpoint(n, self.wvr[n], self.wcr[n]);
        }
    }
}

/// The register accesses: a system register's number is part of the instruction, so each
/// index has its own pair of instructions.
mod access {
    macro_rules! pairs {
        ($read:ident, $write:ident, $v:literal, $c:literal, [$($n:literal)*]) => {
            /// Reads the value and control registers of number `n` (below the CPU's count).
            pub(super) fn $read(n: usize) -> (u64, u64) {
                let (v, c): (u64, u64);
                match n {
                    $($n => {
                        // SAFETY: reads two debug registers the CPU implements (the caller
                        // keeps `n` below ID_AA64DFR0_EL1's count); no side effects.
                        unsafe {
                            core::arch::asm!(
                                concat!("mrs {v}, ", $v, stringify!($n), "_el1"),
                                concat!("mrs {c}, ", $c, stringify!($n), "_el1"),
                                v = out(reg) v, c = out(reg) c, options(nomem, nostack),
                            )
                        }
                    })*
                    _ => return (0, 0),
                }
                (v, c)
            }

            /// Writes the value and control registers of number `n` (below the CPU's count).
            pub(super) fn $write(n: usize, v: u64, c: u64) {
                match n {
                    $($n => {
                        // SAFETY: writes two debug registers the CPU implements; they act
                        // only at EL1 and EL0 (MDCR_EL2.TDE is clear), which only the guest
                        // uses while they hold its values.
                        unsafe {
                            core::arch::asm!(
                                concat!("msr ", $v, stringify!($n), "_el1, {v}"),
                                concat!("msr ", $c, stringify!($n), "_el1, {c}"),
                                v = in(reg) v, c = in(reg) c, options(nomem, nostack),
                            )
                        }
                    })*
                    _ => {}
                }
            }
        };
    }

    pairs!(read_breakpoint, write_breakpoint, "dbgbvr", "dbgbcr",
        [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15]);
    pairs!(read_watchpoint, write_watchpoint, "dbgwvr", "dbgwcr",
        [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15]);
}
