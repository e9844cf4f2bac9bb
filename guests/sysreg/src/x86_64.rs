//! x86_64: what the hypervisor shows through CPUID and the MSRs.
//!
//! - CPUID: leaf 1 has the hypervisor-present bit and not VMX, leaf 0x8000_0001 not SVM
//!   (the VM cannot nest); the hypervisor leaf 0x4000_0000 names axvisor in EBX, ECX, EDX
//!   and gives its highest leaf in EAX: the timing leaf 0x4000_0010, whose EAX (the TSC's
//!   frequency in kHz) grt's timer uses; 0x4000_0001 is zero.
//! - MSRs a VM may use read and write back: IA32_PAT, EFER (long mode on; NXE toggled when
//!   the CPU has it), the FS, GS and kernel GS bases (a `gs:`/`fs:` load then reads through
//!   the new base), IA32_TSC_AUX when the CPU has `rdtscp` (which then returns it).
//! - MSRs a VM may not use raise #GP(0) at the `rdmsr` / `wrmsr`, which grt's exception
//!   handler catches and skips: the VMX capability MSRs (hidden with VMX), IA32_FEATURE_CONTROL
//!   writes, and numbers no CPU has.
//!
//! Prints `PASS sysreg`.

use core::sync::atomic::{AtomicU64, Ordering};

use grt::check::Checker;
use grt::trap::{set_exception_handler, Exception, FaultAction};
use grt::x86::{cpuid, read_msr, write_msr};

/// The hypervisor's timing leaf (docs/x86.md): EAX the TSC's frequency in kHz.
const TIMING_LEAF: u32 = 0x4000_0010;

const IA32_FEATURE_CONTROL: u32 = 0x3a;
const IA32_PAT: u32 = 0x277;
const IA32_VMX_BASIC: u32 = 0x480;
const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
const IA32_EFER: u32 = 0xc000_0080;
const IA32_FS_BASE: u32 = 0xc000_0100;
const IA32_GS_BASE: u32 = 0xc000_0101;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
const IA32_TSC_AUX: u32 = 0xc000_0103;

/// EFER bits: long mode enable, long mode active, no-execute enable.
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

/// The vector of a general-protection fault.
const GP: u8 = 13;

/// Exceptions the handler saw: how many, and the last one's vector, error code and RIP.
static SEEN: AtomicU64 = AtomicU64::new(0);
static VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);
static ERROR_CODE: AtomicU64 = AtomicU64::new(u64::MAX);
static RIP: AtomicU64 = AtomicU64::new(0);

fn on_exception(e: &Exception) -> FaultAction {
    SEEN.store(SEEN.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    VECTOR.store(u64::from(e.vector), Ordering::SeqCst);
    ERROR_CODE.store(e.error_code, Ordering::SeqCst);
    RIP.store(e.rip, Ordering::SeqCst);
    FaultAction::Skip
}

/// Runs `access` (one `rdmsr` or `wrmsr`), which must raise exactly one #GP(0).
fn expect_gp(c: &mut Checker, what: &str, access: impl FnOnce()) {
    let before = SEEN.load(Ordering::SeqCst);
    access();
    let n = SEEN.load(Ordering::SeqCst) - before;
    if c.eq(format_args!("{what}: exceptions"), n, 1) {
        c.eq(
            format_args!("{what}: vector"),
            VECTOR.load(Ordering::SeqCst),
            u64::from(GP),
        );
        c.eq(
            format_args!("{what}: error code"),
            ERROR_CODE.load(Ordering::SeqCst),
            0,
        );
        let rip = RIP.load(Ordering::SeqCst);
        c.ok(
            format_args!("{what}: RIP {rip:#x} inside the image"),
            (grt::IMAGE_BASE..grt::image_end()).contains(&rip),
        );
    }
}

/// Writes `value` to `msr`, reads it back, and restores the old value.
fn round_trip(c: &mut Checker, name: &str, msr: u32, value: u64) {
    let old = read_msr(msr);
    write_msr(msr, value);
    let got = read_msr(msr);
    write_msr(msr, old);
    c.eq(format_args!("{name} reads back"), got, value);
    c.eq(format_args!("{name} restored"), read_msr(msr), old);
}

/// A value `fs:[0]` / `gs:[0]` reads once the base points at it.
static THROUGH_BASE: u64 = 0x5eed_f5f5_6565_0001;

fn check_cpuid(c: &mut Checker) {
    let [_, _, ecx1, _] = cpuid(1, 0);
    c.ok("CPUID.1:ECX.VMX (bit 5) is hidden", ecx1 & (1 << 5) == 0);
    c.ok(
        "CPUID.1:ECX.hypervisor (bit 31) is set",
        ecx1 & (1 << 31) != 0,
    );
    let max_ext = cpuid(0x8000_0000, 0)[0];
    if max_ext >= 0x8000_0001 {
        let ecx = cpuid(0x8000_0001, 0)[2];
        c.ok(
            "CPUID.8000_0001:ECX.SVM (bit 2) is hidden",
            ecx & (1 << 2) == 0,
        );
    }
    let [max_hv, b, cx, d] = cpuid(0x4000_0000, 0);
    let mut name = [0u8; 12];
    name[0..4].copy_from_slice(&b.to_le_bytes());
    name[4..8].copy_from_slice(&cx.to_le_bytes());
    name[8..12].copy_from_slice(&d.to_le_bytes());
    let shown = core::str::from_utf8(&name)
        .unwrap_or("(not UTF-8)")
        .trim_end_matches('\0');
    grt::println!("sysreg: CPUID 0x4000_0000 names {shown:?}, highest hypervisor leaf {max_hv:#x}");
    c.ok(
        format_args!("the hypervisor leaf names axvisor ({shown:?})"),
        name.starts_with(b"axvisor"),
    );
    c.eq(
        "the highest hypervisor leaf: the timing leaf",
        max_hv,
        TIMING_LEAF,
    );
    let [khz, b, cx, d] = cpuid(TIMING_LEAF, 0);
    grt::println!("sysreg: CPUID 0x4000_0010: TSC at {khz} kHz");
    c.ok("the timing leaf gives the TSC's frequency", khz != 0);
    c.ok(
        format_args!("the timing leaf's EBX, ECX, EDX are 0 ({b:#x} {cx:#x} {d:#x})"),
        [b, cx, d] == [0; 3],
    );
    c.eq(
        "grt's timer frequency is the timing leaf's",
        grt::irq::timer_freq(),
        u64::from(khz) * 1000,
    );
    let [a1, b1, c1, d1] = cpuid(0x4000_0001, 0);
    c.ok("CPUID 0x4000_0001 is zero", [a1, b1, c1, d1] == [0; 4]);
}

fn check_msrs(c: &mut Checker) {
    // PAT: every entry a valid memory type (WB, WT, UC-, UC, WC in a new order).
    round_trip(c, "IA32_PAT", IA32_PAT, 0x0001_0406_0700_0406);
    let efer = read_msr(IA32_EFER);
    grt::println!("sysreg: EFER {efer:#x}");
    c.eq(
        "EFER.LME and LMA set",
        efer & (EFER_LME | EFER_LMA),
        EFER_LME | EFER_LMA,
    );
    let nx = cpuid(0x8000_0000, 0)[0] >= 0x8000_0001 && cpuid(0x8000_0001, 0)[3] & (1 << 20) != 0;
    if nx {
        round_trip(c, "EFER with NXE toggled", IA32_EFER, efer ^ EFER_NXE);
    }
    // The bases: a round trip, and a load through the base.
    let target = &THROUGH_BASE as *const u64 as u64;
    round_trip(
        c,
        "IA32_KERNEL_GS_BASE",
        IA32_KERNEL_GS_BASE,
        0xffff_8000_1234_5000,
    );
    let old_fs = read_msr(IA32_FS_BASE);
    write_msr(IA32_FS_BASE, target);
    let fs_base = read_msr(IA32_FS_BASE);
    let through_fs: u64;
    // SAFETY: FS's base points at THROUGH_BASE, a readable u64.
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) through_fs, options(nostack, readonly))
    };
    write_msr(IA32_FS_BASE, old_fs);
    c.eq("IA32_FS_BASE reads back", fs_base, target);
    c.eq("a load through FS", through_fs, THROUGH_BASE);
    // GS's base is grt's (`grt::cpu_id` reads through it): moved and put back at once.
    let old_gs = read_msr(IA32_GS_BASE);
    write_msr(IA32_GS_BASE, target);
    let through_gs: u64;
    // SAFETY: GS's base points at THROUGH_BASE, a readable u64.
    unsafe {
        core::arch::asm!("mov {}, qword ptr gs:[0]", out(reg) through_gs, options(nostack, readonly))
    };
    write_msr(IA32_GS_BASE, old_gs);
    c.eq("a load through GS", through_gs, THROUGH_BASE);
    c.eq("grt's GS base is back (cpu id)", grt::cpu_id() as u64, 0);

    let rdtscp =
        cpuid(0x8000_0000, 0)[0] >= 0x8000_0001 && cpuid(0x8000_0001, 0)[3] & (1 << 27) != 0;
    if rdtscp {
        round_trip(c, "IA32_TSC_AUX", IA32_TSC_AUX, 0x1234_5678);
        write_msr(IA32_TSC_AUX, 0x42);
        let aux: u32;
        // SAFETY: `rdtscp` reads the TSC and TSC_AUX; no memory is touched.
        unsafe {
            core::arch::asm!("rdtscp", out("eax") _, out("edx") _, out("ecx") aux, options(nomem, nostack))
        };
        c.eq("rdtscp returns IA32_TSC_AUX", aux, 0x42);
        write_msr(IA32_TSC_AUX, 0);
    } else {
        grt::println!("sysreg: no rdtscp: IA32_TSC_AUX not checked");
    }

    set_exception_handler(Some(on_exception));
    expect_gp(c, "rdmsr IA32_VMX_BASIC (VMX hidden)", || {
        read_msr(IA32_VMX_BASIC);
    });
    expect_gp(c, "rdmsr IA32_VMX_PROCBASED_CTLS2", || {
        read_msr(IA32_VMX_PROCBASED_CTLS2);
    });
    expect_gp(c, "wrmsr IA32_VMX_BASIC", || write_msr(IA32_VMX_BASIC, 0));
    expect_gp(c, "wrmsr IA32_FEATURE_CONTROL", || {
        write_msr(IA32_FEATURE_CONTROL, 0x5)
    });
    for msr in [0x0000_2000, 0x4000_1234, 0xdead_beef] {
        expect_gp(c, "rdmsr of an MSR no CPU has", || {
            read_msr(msr);
        });
        expect_gp(c, "wrmsr of an MSR no CPU has", || write_msr(msr, 1));
    }
    set_exception_handler(None);
    c.eq("exceptions in all", SEEN.load(Ordering::SeqCst), 10);
}

pub fn run() {
    let mut c = Checker::new("sysreg");
    check_cpuid(&mut c);
    grt::println!("sysreg: cpuid checked");
    check_msrs(&mut c);
    grt::println!("sysreg: msrs checked");
    c.finish();
}
