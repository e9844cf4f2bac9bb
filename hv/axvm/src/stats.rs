//! Per-VM exit counters by reason.

use core::sync::atomic::{AtomicU64, Ordering};

/// Why a vCPU left the guest, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Hypercall.
    Hypercall,
    /// Emulated MMIO read.
    MmioRead,
    /// Emulated MMIO write.
    MmioWrite,
    /// Emulated port read (`in`).
    PortRead,
    /// Emulated port write (`out`).
    PortWrite,
    /// Nested page fault.
    NestedPageFault,
    /// Physical interrupt.
    Interrupt,
    /// Guest `wfi`.
    Halt,
    /// CPU on/off, power off, reset.
    Power,
    /// Something the architecture does not emulate.
    Unsupported,
}

impl ExitKind {
    /// Every kind, in counter order.
    pub const ALL: [ExitKind; 10] = [
        ExitKind::Hypercall,
        ExitKind::MmioRead,
        ExitKind::MmioWrite,
        ExitKind::PortRead,
        ExitKind::PortWrite,
        ExitKind::NestedPageFault,
        ExitKind::Interrupt,
        ExitKind::Halt,
        ExitKind::Power,
        ExitKind::Unsupported,
    ];

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::Hypercall => "hypercall",
            ExitKind::MmioRead => "mmio-read",
            ExitKind::MmioWrite => "mmio-write",
            ExitKind::PortRead => "port-read",
            ExitKind::PortWrite => "port-write",
            ExitKind::NestedPageFault => "nested-fault",
            ExitKind::Interrupt => "interrupt",
            ExitKind::Halt => "halt",
            ExitKind::Power => "power",
            ExitKind::Unsupported => "unsupported",
        }
    }
}

/// Exit counts of one VM.
#[derive(Default)]
pub struct ExitCounters {
    counts: [AtomicU64; ExitKind::ALL.len()],
}

impl ExitCounters {
    /// Counts one exit.
    pub fn count(&self, kind: ExitKind) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The count for `kind`.
    pub fn get(&self, kind: ExitKind) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// `(kind, count)` for every non-zero counter.
    pub fn nonzero(&self) -> impl Iterator<Item = (ExitKind, u64)> + '_ {
        ExitKind::ALL
            .into_iter()
            .map(|k| (k, self.get(k)))
            .filter(|&(_, n)| n > 0)
    }
}
