//! Each CPU's GDT, TSS (with IST stacks for double faults, NMIs and machine checks) and
//! per-CPU area (reached through GS: its first word is the logical CPU id).
//!
//! Selectors: 0x08 64-bit code, 0x10 flat data (DS, ES, SS), 0x18 the TSS (TR). FS and GS
//! hold the null selector; GS's base (IA32_GS_BASE) points at the CPU's [`PerCpuArea`].

use super::regs::{wrmsr, MSR_GS_BASE};
use axconfig::MAX_CPUS;
use core::cell::UnsafeCell;
use core::mem::size_of;

/// 64-bit code segment selector.
pub const KERNEL_CS: u16 = 0x08;
/// Data segment selector (DS, ES, SS).
pub const KERNEL_DS: u16 = 0x10;
/// Task state segment selector.
pub const KERNEL_TR: u16 = 0x18;

/// IST slot of the double-fault handler.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot of the NMI and machine-check handlers.
pub const IST_NMI: u8 = 2;

const IST_STACK_SIZE: usize = 8192;

/// The 64-bit task state segment.
#[repr(C, packed(4))]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

/// What each CPU keeps at its GS base.
#[repr(C, align(64))]
pub struct PerCpuArea {
    /// The logical CPU id (read by `cpu_id` as `gs:[0]`).
    id: usize,
    gdt: [u64; 5],
    tss: Tss,
}

#[repr(C, align(16))]
struct IstStacks([[u8; IST_STACK_SIZE]; 2]);

struct Areas(UnsafeCell<[PerCpuArea; MAX_CPUS]>);
struct Stacks(UnsafeCell<[IstStacks; MAX_CPUS]>);

// SAFETY: each CPU writes only its own slot, once, in `init_cpu`, before anything reads it;
// afterwards the CPU reads it through GS and the hardware reads the GDT and TSS.
unsafe impl Sync for Areas {}
// SAFETY: each CPU's IST stacks are used only by that CPU's exception entry.
unsafe impl Sync for Stacks {}

static AREAS: Areas = Areas(UnsafeCell::new(
    [const {
        PerCpuArea {
            id: 0,
            gdt: [0; 5],
            tss: Tss {
                _reserved0: 0,
                rsp: [0; 3],
                _reserved1: 0,
                ist: [0; 7],
                _reserved2: 0,
                _reserved3: 0,
                iomap_base: size_of::<Tss>() as u16,
            },
        }
    }; MAX_CPUS],
));
static IST_STACKS: Stacks = Stacks(UnsafeCell::new(
    [const { IstStacks([[0; IST_STACK_SIZE]; 2]) }; MAX_CPUS],
));

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// Loads CPU `cpu`'s GDT, segment registers, TSS and GS base. Called once per CPU, first
/// thing in 64-bit Rust code.
pub fn init_cpu(cpu: usize) {
    // SAFETY: see `impl Sync for Areas`: this CPU's slot, written before use.
    let area = unsafe { &mut (*AREAS.0.get())[cpu] };
    // SAFETY: as above, this CPU's IST stacks.
    let stacks = unsafe { &mut (*IST_STACKS.0.get())[cpu] };
    area.id = cpu;
    let mut ist = [0u64; 7];
    for (slot, stack) in [IST_DOUBLE_FAULT, IST_NMI]
        .into_iter()
        .zip(stacks.0.iter_mut())
    {
        ist[usize::from(slot) - 1] = stack.as_mut_ptr() as u64 + IST_STACK_SIZE as u64;
    }
    // A whole-field store: the TSS is packed (its 64-bit fields are only 4-byte aligned).
    area.tss.ist = ist;
    let tss = core::ptr::addr_of!(area.tss) as u64;
    let limit = size_of::<Tss>() as u64 - 1;
    // Available 64-bit TSS (type 9), present.
    let tss_low = (limit & 0xffff)
        | (tss & 0xff_ffff) << 16
        | 0x89 << 40
        | (limit >> 16 & 0xf) << 48
        | (tss >> 24 & 0xff) << 56;
    area.gdt = [
        0,
        0x00af_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        tss_low,
        tss >> 32,
    ];
    let gdtr = DescriptorPointer {
        limit: (size_of::<[u64; 5]>() - 1) as u16,
        base: area.gdt.as_ptr() as u64,
    };
    // SAFETY: the GDT keeps the boot GDT's code and data descriptors at the same selectors,
    // so reloading CS (through a far return) and the data segments changes nothing for the
    // running code; the TSS descriptor is fresh (not busy) and its memory lives forever.
    unsafe {
        core::arch::asm!(
            "lgdt [{gdtr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:e}",
            "mov es, {ds:e}",
            "mov ss, {ds:e}",
            "ltr {tr:x}",
            gdtr = in(reg) &gdtr,
            cs = in(reg) u64::from(KERNEL_CS),
            ds = in(reg) u32::from(KERNEL_DS),
            tr = in(reg) KERNEL_TR,
            tmp = out(reg) _,
        )
    };
    wrmsr(MSR_GS_BASE, area as *mut PerCpuArea as u64);
}

/// The physical (= virtual) address of CPU `cpu`'s TSS, for the VMCS host state.
pub fn tss_base(cpu: usize) -> u64 {
    // SAFETY: only the address of the slot is taken.
    unsafe { core::ptr::addr_of!((*AREAS.0.get())[cpu].tss) as u64 }
}

/// Logical id of this CPU (`gs:[0]`).
#[inline]
pub fn cpu_id() -> usize {
    let id: usize;
    // SAFETY: GS's base points at this CPU's area from `init_cpu` on (set before any other
    // Rust code of the CPU runs), whose first word is the id.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) id, options(nostack, readonly, preserves_flags))
    };
    id
}
