//! x86_64: the #GP(0) of an unclaimed load and store must come at the instruction (RIP
//! exactly its address). Then exceptions the guest raises itself must reach grt's
//! handlers with the right vector, error code and RIP, whatever the hypervisor does
//! meanwhile: #DE (`div` by
//! zero), #UD (`ud2`), #BP (`int3`, a trap: RIP after it), #GP(0) (a non-canonical address),
//! and #PF from the guest's own page tables (the hypervisor's identity map of 4 GiB in 2 MiB
//! pages, rebuilt by the guest, with one 2 MiB range split into 4 KiB pages: one not
//! present, one read-only): a read of the absent page (error code 0), a write to it (W), a
//! write to the read-only page (P|W), each with CR2 the address. The read-only page still
//! reads, and the guest's CR3 is put back afterwards.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use grt::check::Checker;
use grt::trap::{self, DataFault, Exception, FaultAction, Undefined};

/// What the handlers saw last: vector, error code, RIP, address (CR2), and how many.
static SEEN: AtomicU64 = AtomicU64::new(0);
static VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);
static ERROR_CODE: AtomicU64 = AtomicU64::new(u64::MAX);
static RIP: AtomicU64 = AtomicU64::new(0);
static ADDR: AtomicU64 = AtomicU64::new(0);

fn record(vector: u64, error_code: u64, rip: u64, addr: u64) {
    SEEN.store(SEEN.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    VECTOR.store(vector, Ordering::SeqCst);
    ERROR_CODE.store(error_code, Ordering::SeqCst);
    RIP.store(rip, Ordering::SeqCst);
    ADDR.store(addr, Ordering::SeqCst);
}

fn on_exception(e: &Exception) -> FaultAction {
    record(u64::from(e.vector), e.error_code, e.rip, e.cr2);
    // #BP is a trap: RIP is already past the `int3`.
    if e.vector == 3 {
        FaultAction::Retry
    } else {
        FaultAction::Skip
    }
}

fn on_undefined(u: &Undefined) -> FaultAction {
    record(u.syndrome >> 32, 0, u.pc, 0);
    FaultAction::Skip
}

fn on_page_fault(f: &DataFault) -> FaultAction {
    record(f.syndrome >> 32, f.syndrome & 0xffff_ffff, f.pc, f.addr);
    FaultAction::Skip
}

/// What one exception must look like.
struct Expect {
    vector: u64,
    error_code: u64,
    /// The address (CR2) for a page fault.
    addr: Option<u64>,
}

/// Runs `f`, which must raise exactly the exception `want`, at an RIP inside the image.
fn expect(c: &mut Checker, what: &str, want: Expect, f: impl FnOnce()) {
    let before = SEEN.load(Ordering::SeqCst);
    f();
    if !c.eq(
        format_args!("{what}: exceptions"),
        SEEN.load(Ordering::SeqCst) - before,
        1,
    ) {
        return;
    }
    let (vector, error_code, rip) = (
        VECTOR.load(Ordering::SeqCst),
        ERROR_CODE.load(Ordering::SeqCst),
        RIP.load(Ordering::SeqCst),
    );
    grt::println!("fault: {what}: vector {vector}, error code {error_code:#x}, rip {rip:#x}");
    c.eq(format_args!("{what}: vector"), vector, want.vector);
    c.eq(
        format_args!("{what}: error code"),
        error_code,
        want.error_code,
    );
    c.ok(
        format_args!("{what}: rip {rip:#x} inside the image"),
        (grt::IMAGE_BASE..grt::image_end()).contains(&rip),
    );
    if let Some(addr) = want.addr {
        c.eq(
            format_args!("{what}: CR2"),
            ADDR.load(Ordering::SeqCst),
            addr,
        );
    }
}

/// The data-fault handler the unclaimed accesses' #GP(0) goes to (see [`catch_gp`]).
static GP_HANDLER: AtomicU64 = AtomicU64::new(0);

/// Hands #GP to `handler` as a data fault (address 0, a read: a #GP tells neither) while
/// `Some`: what the hypervisor injects for an unclaimed access on x86_64.
pub fn catch_gp(handler: Option<fn(&DataFault) -> FaultAction>) {
    GP_HANDLER.store(handler.map_or(0, |h| h as usize as u64), Ordering::SeqCst);
    trap::set_exception_handler(handler.map(|_| on_gp as fn(&Exception) -> FaultAction));
}

fn on_gp(e: &Exception) -> FaultAction {
    let raw = GP_HANDLER.load(Ordering::SeqCst);
    if e.vector != 13 || raw == 0 {
        return FaultAction::Fail;
    }
    // SAFETY: the only non-zero values stored are `fn(&DataFault) -> FaultAction`s
    // converted by `catch_gp`; function pointers round-trip through integers.
    let handler =
        unsafe { core::mem::transmute::<usize, fn(&DataFault) -> FaultAction>(raw as usize) };
    handler(&DataFault {
        syndrome: (13 << 32) | (e.error_code & 0xffff_ffff),
        addr: 0,
        pc: e.rip,
        is_write: false,
    })
}

/// Page-table entry bits.
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;
/// Page-fault error code bits.
const PF_PRESENT: u64 = 1 << 0;
const PF_WRITE: u64 = 1 << 1;

/// The 2 MiB range split into 4 KiB pages: in RAM, above the image, below its end.
const SPLIT: u64 = 0x80_0000;
/// Its first page is not present, its second read-only.
const ABSENT: u64 = SPLIT;
const READ_ONLY: u64 = SPLIT + 0x1000;

/// One 4 KiB page table.
#[repr(C, align(4096))]
struct Table([u64; 512]);

/// The guest's own tables: PML4, PDPT, four page directories, one page table.
struct Tables(UnsafeCell<[Table; 7]>);

// SAFETY: one vCPU writes them, before it loads them into CR3.
unsafe impl Sync for Tables {}

static TABLES: Tables = Tables(UnsafeCell::new([const { Table([0; 512]) }; 7]));

/// Builds the tables and returns the PML4's address (the tables are identity-mapped).
fn build_tables() -> u64 {
    // SAFETY: only this function touches TABLES, before CR3 points at them.
    let t = unsafe { &mut *TABLES.0.get() };
    let addr = |t: &Table| t as *const Table as u64;
    let (pml4, rest) = t.split_at_mut(1);
    let (pdpt, rest) = rest.split_at_mut(1);
    let (pds, pt) = rest.split_at_mut(4);
    pml4[0].0[0] = addr(&pdpt[0]) | PRESENT | WRITABLE;
    for (g, pd) in pds.iter_mut().enumerate() {
        pdpt[0].0[g] = addr(pd) | PRESENT | WRITABLE;
        for (i, e) in pd.0.iter_mut().enumerate() {
            let base = ((g as u64) << 30) | ((i as u64) << 21);
            *e = base | PRESENT | WRITABLE | HUGE;
        }
    }
    for (i, e) in pt[0].0.iter_mut().enumerate() {
        *e = (SPLIT + ((i as u64) << 12)) | PRESENT | WRITABLE;
    }
    pt[0].0[0] = 0;
    pt[0].0[1] = READ_ONLY | PRESENT;
    pds[0].0[(SPLIT >> 21) as usize] = addr(&pt[0]) | PRESENT | WRITABLE;
    addr(&pml4[0])
}

fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}

fn write_cr3(v: u64) {
    // SAFETY: `v` is a PML4 that identity-maps everything the guest uses (the hypervisor's,
    // or `build_tables`'s); loading it flushes the TLB.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) v, options(nostack)) };
}

/// An unclaimed load and an unclaimed store (at [`crate::TARGET`]): the #GP(0) the
/// hypervisor injects must come at the instruction itself, not after it (RIP exactly the
/// instruction's address), and the load's destination keeps its value.
fn unclaimed_at_the_instruction(c: &mut Checker) {
    const JUNK: u64 = 0x0bad_0bad_0bad_0bad;
    trap::set_exception_handler(Some(on_exception));
    let gp = || Expect {
        vector: 13,
        error_code: 0,
        addr: None,
    };
    let (mut at, mut kept) = (0u64, 0u64);
    expect(c, "unclaimed load", gp(), || {
        // SAFETY: nothing of the VM is at TARGET: the load raises #GP(0), which the handler
        // skips; `at` gets the load's address, `kept` the destination after it.
        unsafe {
            core::arch::asm!(
                "lea {at}, [rip + 2f]",
                "2: mov {v}, qword ptr [{a}]",
                at = out(reg) at,
                v = inout(reg) JUNK => kept,
                a = in(reg) crate::TARGET,
                options(nostack, preserves_flags)
            )
        };
    });
    c.eq(
        "unclaimed load: #GP at the load",
        RIP.load(Ordering::SeqCst),
        at,
    );
    c.eq("unclaimed load: destination unchanged", kept, JUNK);
    expect(c, "unclaimed store", gp(), || {
        // SAFETY: as above; nothing is written.
        unsafe {
            core::arch::asm!(
                "lea {at}, [rip + 2f]",
                "2: mov qword ptr [{a}], {v}",
                at = out(reg) at,
                v = in(reg) JUNK,
                a = in(reg) crate::TARGET,
                options(nostack, preserves_flags)
            )
        };
    });
    c.eq(
        "unclaimed store: #GP at the store",
        RIP.load(Ordering::SeqCst),
        at,
    );
    trap::set_exception_handler(None);
}

pub fn check(c: &mut Checker) {
    unclaimed_at_the_instruction(c);
    trap::set_exception_handler(Some(on_exception));
    trap::set_undefined_handler(Some(on_undefined));
    let de = Expect {
        vector: 0,
        error_code: 0,
        addr: None,
    };
    expect(c, "div by zero", de, || {
        // SAFETY: `div rcx` with RCX = 0 raises #DE, which the handler skips; RAX and RDX
        // are declared clobbered.
        unsafe {
            core::arch::asm!(
                "div rcx",
                in("rcx") 0u64,
                inout("rax") 1u64 => _,
                inout("rdx") 0u64 => _,
                options(nomem, nostack)
            )
        };
    });
    let ud = Expect {
        vector: 6,
        error_code: 0,
        addr: None,
    };
    expect(c, "ud2", ud, || {
        // SAFETY: `ud2` raises #UD, which the handler skips.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    });
    let bp = Expect {
        vector: 3,
        error_code: 0,
        addr: None,
    };
    expect(c, "int3", bp, || {
        // SAFETY: `int3` raises #BP, a trap the handler returns from.
        unsafe { core::arch::asm!("int3", options(nomem, nostack)) };
    });
    let gp = Expect {
        vector: 13,
        error_code: 0,
        addr: None,
    };
    expect(c, "non-canonical read", gp, || {
        // SAFETY: a non-canonical address raises #GP(0) before any access; skipped.
        unsafe { grt::mmio::read64(0x8000_0000_0000_0000) };
    });
    trap::set_undefined_handler(None);
    trap::set_exception_handler(None);

    trap::set_data_fault_handler(Some(on_page_fault));
    let old_cr3 = read_cr3();
    write_cr3(build_tables());
    let page_faults = [
        ("read of an absent page", ABSENT, false, 0),
        ("write to an absent page", ABSENT + 8, true, PF_WRITE),
        (
            "write to a read-only page",
            READ_ONLY,
            true,
            PF_PRESENT | PF_WRITE,
        ),
    ];
    for (what, addr, write, error_code) in page_faults {
        let want = Expect {
            vector: 14,
            error_code,
            addr: Some(addr),
        };
        expect(c, what, want, || {
            // SAFETY: the page is absent or read-only in the guest's own tables: the access
            // raises #PF, which the handler skips.
            unsafe {
                if write {
                    grt::mmio::write64(addr as usize, 0x1234);
                } else {
                    grt::mmio::read64(addr as usize);
                }
            }
        });
    }
    // SAFETY: the read-only page is present: it reads (RAM, zero at boot, never written).
    let ro = unsafe { grt::mmio::read64(READ_ONLY as usize) };
    write_cr3(old_cr3);
    trap::set_data_fault_handler(None);
    c.eq("the read-only page reads", ro, 0);
    grt::println!("fault: exceptions from the guest's own doing came as expected");
}
