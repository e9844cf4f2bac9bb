//! Checks the "fault" policy for an unclaimed access: a read of an address outside the VM's
//! memory and outside every device (`RAM_BASE + 0x1000_0000`) must give the guest exactly
//! one data fault at that address (on x86_64 a #GP(0) at the instruction), which the
//! guest's handler skips; a write there must give
//! a second one, and reading again a third (the hypervisor logs an address once, but faults
//! every access). Then 69 more pages after it are read once each: more distinct addresses
//! than the hypervisor logs one by one (32), and each must still fault at its own address;
//! then one address in each of [`NEW_RANGES`] further 1 MiB ranges (which the hypervisor
//! logs again, once per range). On x86_64 it then raises exceptions of its own (#DE, #UD,
//! #BP, #GP, #PF from its own page tables) and checks each reaches it as it should
//! (`x86_64.rs`). Prints `PASS fault` when every fault came as expected.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use grt::check::Checker;
use grt::trap::{set_data_fault_handler, DataFault, FaultAction};

#[cfg(target_arch = "x86_64")]
#[path = "x86_64.rs"]
mod x86;

/// Outside the 16 MiB of RAM and every device of the VM, in both architectures' configs.
pub const TARGET: u64 = grt::RAM_BASE + 0x1000_0000;

/// How many pages after TARGET are read, one access each (70 distinct addresses in all,
/// more than the 32 the hypervisor logs one by one).
const MORE_PAGES: u64 = 69;
/// How many further 1 MiB ranges after TARGET's get one read each.
const NEW_RANGES: u64 = 2;

static COUNT: AtomicU64 = AtomicU64::new(0);
static ADDR: AtomicU64 = AtomicU64::new(0);
static SYNDROME: AtomicU64 = AtomicU64::new(0);
static PC: AtomicU64 = AtomicU64::new(0);
static WRITE: AtomicBool = AtomicBool::new(false);

fn on_fault(f: &DataFault) -> FaultAction {
    COUNT.store(COUNT.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    ADDR.store(f.addr, Ordering::SeqCst);
    SYNDROME.store(f.syndrome, Ordering::SeqCst);
    PC.store(f.pc, Ordering::SeqCst);
    WRITE.store(f.is_write, Ordering::SeqCst);
    FaultAction::Skip
}

/// Whether an injected fault tells the guest the address and the direction of the access:
/// a data abort (aarch64) and an access fault (riscv64) do; x86_64's is a #GP(0) at the
/// instruction, which tells neither.
const FAULT_HAS_ADDRESS: bool = !cfg!(target_arch = "x86_64");

/// The syndrome of an injected fault: aarch64 ESR_EL1 EC 0x25 (data abort, same EL) with DFSC
/// 0x10 (synchronous external abort); riscv64 scause 5 / 7 (load / store access fault);
/// x86_64 a general-protection fault (vector 13) with error code 0.
fn syndrome_ok(syndrome: u64, write: bool) -> bool {
    if cfg!(target_arch = "aarch64") {
        let ec = (syndrome >> 26) & 0x3f;
        let dfsc = syndrome & 0x3f;
        ec == 0x25 && dfsc == 0x10
    } else if cfg!(target_arch = "x86_64") {
        syndrome == 13 << 32
    } else {
        syndrome == if write { 7 } else { 5 }
    }
}

/// Runs `access`, which must fault exactly once at TARGET.
fn expect_fault(c: &mut Checker, what: &str, write: bool, access: impl FnOnce()) {
    let before = COUNT.load(Ordering::SeqCst);
    access();
    let n = COUNT.load(Ordering::SeqCst) - before;
    if !c.eq(format_args!("{what}: faults"), n, 1) {
        return;
    }
    let (addr, syndrome, pc) = (
        ADDR.load(Ordering::SeqCst),
        SYNDROME.load(Ordering::SeqCst),
        PC.load(Ordering::SeqCst),
    );
    grt::println!("fault: {what}: fault at {addr:#x}, syndrome {syndrome:#x}, pc {pc:#x}");
    if FAULT_HAS_ADDRESS {
        c.eq(format_args!("{what}: fault address"), addr, TARGET);
        c.ok(
            format_args!(
                "{what}: fault is a {}",
                if write { "write" } else { "read" }
            ),
            WRITE.load(Ordering::SeqCst) == write,
        );
    }
    c.ok(
        format_args!("{what}: syndrome {syndrome:#x}"),
        syndrome_ok(syndrome, write),
    );
    c.ok(
        format_args!("{what}: pc {pc:#x} inside the guest image"),
        (grt::IMAGE_BASE..grt::image_end()).contains(&pc),
    );
}

#[no_mangle]
fn main() {
    let mut c = Checker::new("fault");
    set_data_fault_handler(Some(on_fault));
    #[cfg(target_arch = "x86_64")]
    x86::catch_gp(Some(on_fault));
    expect_fault(&mut c, "read", false, || {
        // SAFETY: TARGET is not memory or a device of this VM: the access faults and
        // `on_fault` skips it; nothing is read.
        unsafe { grt::mmio::read64(TARGET as usize) };
    });
    expect_fault(&mut c, "write", true, || {
        // SAFETY: as above; nothing is written.
        unsafe { grt::mmio::write64(TARGET as usize, 0x5555_aaaa_5555_aaaa) };
    });
    expect_fault(&mut c, "read again", false, || {
        // SAFETY: as above.
        unsafe { grt::mmio::read32(TARGET as usize) };
    });
    // Three faults above, and on riscv64 a fourth below.
    let expected = if cfg!(target_arch = "riscv64") { 4 } else { 3 };
    #[cfg(target_arch = "riscv64")]
    {
        // A compressed (2-byte) load: the handler skips 2 bytes, so the `c.li` right after
        // it must run.
        let mut next: u64 = 0;
        expect_fault(&mut c, "compressed read", false, || {
            // SAFETY: as above; a5 is not written (the load is skipped), a3 gets 1.
            unsafe {
                core::arch::asm!(
                    "li a3, 0",
                    "c.ld a5, 0(a4)",
                    "c.li a3, 1",
                    in("a4") TARGET,
                    out("a5") _,
                    out("a3") next,
                    options(nostack)
                )
            };
        });
        c.eq("instruction after the compressed read ran", next, 1);
    }
    // More distinct unclaimed addresses than the hypervisor logs one by one (32, the last
    // saying so): each access still faults, once, at its own address.
    let before = COUNT.load(Ordering::SeqCst);
    let mut wrong = 0;
    for i in 1..=MORE_PAGES {
        let addr = TARGET + i * 0x1000;
        // SAFETY: like TARGET, these pages are neither memory nor a device of this VM.
        unsafe { grt::mmio::read32(addr as usize) };
        if FAULT_HAS_ADDRESS && ADDR.load(Ordering::SeqCst) != addr {
            wrong += 1;
        }
    }
    c.eq(
        format_args!("faults for {MORE_PAGES} more addresses"),
        COUNT.load(Ordering::SeqCst) - before,
        MORE_PAGES,
    );
    c.eq("faults at another address than accessed", wrong, 0);
    grt::println!("fault: {MORE_PAGES} more unclaimed addresses faulted");
    // Later accesses in new ranges: faulted too (and logged, once per range).
    for r in 1..=NEW_RANGES {
        let addr = TARGET + r * 0x10_0000;
        let before = COUNT.load(Ordering::SeqCst);
        // SAFETY: neither memory nor a device of this VM, like TARGET.
        unsafe { grt::mmio::read32(addr as usize) };
        c.eq(
            format_args!("faults in the range at {addr:#x}"),
            COUNT.load(Ordering::SeqCst) - before,
            1,
        );
        if FAULT_HAS_ADDRESS {
            c.eq(
                format_args!("fault in the range at {addr:#x}"),
                ADDR.load(Ordering::SeqCst),
                addr,
            );
        }
    }
    grt::println!("fault: {NEW_RANGES} accesses in further 1 MiB ranges faulted");
    set_data_fault_handler(None);
    #[cfg(target_arch = "x86_64")]
    x86::catch_gp(None);
    c.eq(
        "faults in all",
        COUNT.load(Ordering::SeqCst),
        expected + MORE_PAGES + NEW_RANGES,
    );
    #[cfg(target_arch = "x86_64")]
    x86::check(&mut c);
    c.finish();
}
