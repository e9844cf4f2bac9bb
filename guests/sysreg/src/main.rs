//! Checks the hypervisor's system-register traps (aarch64): the feature ID registers read
//! through HCR_EL2.TID3 show the hardware's features except those the hypervisor does not
//! virtualise (nested virtualisation, EL3, SVE, the PMU, tracing), and a write to a
//! read-only ID register gets an Undefined Instruction exception at that instruction, which
//! the guest skips. The PMU, hidden in ID_AA64DFR0_EL1, is UNDEFINED too. Prints
//! `PASS sysreg`.
//!
//! On x86_64 the equivalent is CPUID and the MSRs (`x86_64.rs`): CPUID hides VMX and SVM
//! and names axvisor in its hypervisor leaf, the MSRs a VM may use read and write back,
//! the others raise #GP.
//!
//! riscv64 has no equivalent here; the guest is built for it only because every guest is,
//! and says so with a `FAIL`.
#![no_std]
#![no_main]

#[cfg(target_arch = "aarch64")]
mod checks {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU64, Ordering};

    use grt::check::Checker;
    use grt::trap::{
        set_exception_handler, set_undefined_handler, Exception, FaultAction, Undefined,
    };

    static UNDEFS: AtomicU64 = AtomicU64::new(0);
    static UNDEF_PC: AtomicU64 = AtomicU64::new(0);
    static UNDEF_ESR: AtomicU64 = AtomicU64::new(0);
    static UNDEF_FIRST_PC: AtomicU64 = AtomicU64::new(0);

    fn on_undefined(u: &Undefined) -> FaultAction {
        let n = UNDEFS.load(Ordering::SeqCst);
        if n == 0 {
            UNDEF_FIRST_PC.store(u.pc, Ordering::SeqCst);
        }
        UNDEFS.store(n + 1, Ordering::SeqCst);
        UNDEF_PC.store(u.pc, Ordering::SeqCst);
        UNDEF_ESR.store(u.syndrome, Ordering::SeqCst);
        FaultAction::Skip
    }

    macro_rules! read_sysreg {
        ($name:literal) => {{
            let v: u64;
            // SAFETY: reading an ID register has no side effects.
            unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
            v
        }};
    }

    /// The 4-bit field of `v` at bit `shift`.
    fn field(v: u64, shift: u32) -> u64 {
        (v >> shift) & 0xf
    }

    pub fn run() {
        let mut c = Checker::new("sysreg");
        let pfr0 = read_sysreg!("id_aa64pfr0_el1");
        let dfr0 = read_sysreg!("id_aa64dfr0_el1");
        let mmfr0 = read_sysreg!("id_aa64mmfr0_el1");
        let isar0 = read_sysreg!("id_aa64isar0_el1");
        let zfr0 = read_sysreg!("S3_0_C0_C4_4"); // ID_AA64ZFR0_EL1
        grt::println!(
            "sysreg: ID_AA64PFR0_EL1 {pfr0:#x} ID_AA64DFR0_EL1 {dfr0:#x} ID_AA64MMFR0_EL1 {mmfr0:#x} ID_AA64ISAR0_EL1 {isar0:#x}"
        );
        // What the hardware has comes through: EL0 and EL1 in AArch64 (1 or 2), FP and
        // AdvSIMD present (not 0xf), 4 KiB granules (TGran4 0, or 1: also with 52-bit
        // addresses, as on QEMU's `max`), Armv8 debug (DebugVer >= 6).
        c.ok("PFR0.EL0 is implemented", matches!(field(pfr0, 0), 1 | 2));
        c.ok("PFR0.EL1 is implemented", matches!(field(pfr0, 4), 1 | 2));
        c.ok("PFR0.FP is implemented", field(pfr0, 16) != 0xf);
        c.ok(
            "MMFR0.TGran4 (0, or 1 with 52-bit addresses)",
            field(mmfr0, 28) <= 1,
        );
        c.ok("DFR0.DebugVer >= 6", field(dfr0, 0) >= 6);
        // What the hypervisor does not virtualise is hidden.
        c.eq("PFR0.EL2 (no nested virtualisation)", field(pfr0, 8), 0);
        c.eq("PFR0.EL3", field(pfr0, 12), 0);
        c.eq("PFR0.SVE", field(pfr0, 32), 0);
        c.eq("DFR0.PMUVer", field(dfr0, 8), 0);
        c.eq("DFR0.TraceVer", field(dfr0, 4), 0);
        c.eq("ID_AA64ZFR0_EL1", zfr0, 0);
        // Reads are stable.
        c.eq("PFR0 read twice", read_sysreg!("id_aa64pfr0_el1"), pfr0);

        // A write to a read-only ID register is UNDEFINED: exactly one exception, at the
        // `msr`, with EC 0 (unknown reason) and IL set.
        set_undefined_handler(Some(on_undefined));
        let msr_pc: u64;
        // SAFETY: the write traps to the hypervisor, which injects an Undefined Instruction
        // exception; the handler skips the instruction. No register or memory changes.
        unsafe {
            asm!(
                "adr {pc}, 1f",
                "1: msr S3_0_C0_C4_0, {v}",
                pc = out(reg) msr_pc,
                v = in(reg) 0u64,
                options(nostack),
            )
        };
        set_undefined_handler(None);
        c.eq("undefined exceptions", UNDEFS.load(Ordering::SeqCst), 1);
        c.eq(
            "undefined at the msr",
            UNDEF_PC.load(Ordering::SeqCst),
            msr_pc,
        );
        let esr = UNDEF_ESR.load(Ordering::SeqCst);
        c.eq("undefined ESR_EL1.EC", esr >> 26, 0);
        c.eq("undefined ESR_EL1.IL", (esr >> 25) & 1, 1);
        c.eq(
            "PFR0 unchanged by the write",
            read_sysreg!("id_aa64pfr0_el1"),
            pfr0,
        );

        // The PMU it hides is not the host's to use either (MDCR_EL2.TPM, TPMCR): a read of
        // PMCR_EL0 and a write of PMCNTENSET_EL0 are UNDEFINED.
        UNDEFS.store(0, Ordering::SeqCst);
        set_undefined_handler(Some(on_undefined));
        let pmu_pc: u64;
        // SAFETY: both instructions trap to the hypervisor, which injects an Undefined
        // Instruction exception for each; the handler skips them, and the `mrs` leaves its
        // register as it was. No memory changes.
        unsafe {
            asm!(
                "mrs {v}, pmcr_el0",
                "adr {pc}, 1f",
                "1: msr pmcntenset_el0, {v}",
                pc = out(reg) pmu_pc,
                v = inout(reg) 0u64 => _,
                options(nostack),
            )
        };
        set_undefined_handler(None);
        c.eq("PMU accesses undefined", UNDEFS.load(Ordering::SeqCst), 2);
        c.eq(
            "last undefined at the PMU msr",
            UNDEF_PC.load(Ordering::SeqCst),
            pmu_pc,
        );
        hidden_extensions(&mut c);
        software_step(&mut c);
        c.finish();
    }
    static STEPS: AtomicU64 = AtomicU64::new(0);
    static STEP_PC: AtomicU64 = AtomicU64::new(0);
    static STEP_ESR: AtomicU64 = AtomicU64::new(0);

    /// A software-step exception: recorded, stepping switched off (MDSCR_EL1.SS), and the
    /// guest resumes where the step ended.
    fn on_step(e: &Exception) -> FaultAction {
        STEPS.store(STEPS.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
        STEP_PC.store(e.pc, Ordering::SeqCst);
        STEP_ESR.store(e.syndrome, Ordering::SeqCst);
        // SAFETY: clears MDSCR_EL1.SS; nothing else changes.
        unsafe {
            asm!(
                "mrs {t}, mdscr_el1",
                "bic {t}, {t}, #1",
                "msr mdscr_el1, {t}",
                "isb",
                t = out(reg) _,
                options(nomem, nostack),
            )
        };
        FaultAction::Retry
    }

    /// Single-steps `$insn` at EL1 (MDSCR_EL1.KDE and SS, the OS lock cleared, an `eret` to
    /// it with SPSR_EL1.SS set and D clear) and returns the addresses of the instruction
    /// after it and of the one after that. `$insn` runs with x0 = PSCI_VERSION's function
    /// id and x10 = the PL011's FR; it may change x0-x3 and x9.
    macro_rules! stepped {
        ($insn:literal) => {{
            let (next, after): (u64, u64);
            // SAFETY: the `eret` returns to EL1h at `1:` with A, I, F masked and only D
            // opened for the step; `$insn` is one of the harmless instructions of
            // `software_step`, the step exception is handled by `on_step`, and D is masked
            // and KDE cleared again afterwards. No memory changes.
            unsafe {
                asm!(
                    "msr oslar_el1, xzr",
                    "mrs {t}, mdscr_el1",
                    "orr {t}, {t}, #(1 << 13)",
                    "orr {t}, {t}, #1",
                    "msr mdscr_el1, {t}",
                    "adr {t}, 1f",
                    "msr elr_el1, {t}",
                    "mov {t}, #0x1c5",
                    "orr {t}, {t}, #(1 << 21)",
                    "msr spsr_el1, {t}",
                    "adr {next}, 2f",
                    "adr {after}, 3f",
                    "isb",
                    "eret",
                    concat!("1: ", $insn),
                    "2: nop",
                    "3: nop",
                    "msr daifset, #8",
                    "mrs {t}, mdscr_el1",
                    "bic {t}, {t}, #(1 << 13)",
                    "msr mdscr_el1, {t}",
                    "isb",
                    t = out(reg) _,
                    next = out(reg) next,
                    after = out(reg) after,
                    inout("x0") 0x8400_0000u64 => _,
                    out("x1") _,
                    out("x2") _,
                    out("x3") _,
                    out("x9") _,
                    in("x10") 0x0900_0018u64,
                    options(nostack),
                )
            };
            (next, after)
        }};
    }

    /// A guest single-stepping an instruction the hypervisor completes for it (an MMIO load,
    /// a trapped system register, a trapped SMC) must take its step exception right after
    /// that instruction, as after one the CPU ran: the vCPU clears SPSR_EL2.SS when it moves
    /// the PC past it. Without that the step ran one instruction more. `nop` and `hvc` (an
    /// exception-generating instruction, whose SS the CPU clears itself) are the controls.
    fn software_step(c: &mut Checker) {
        set_exception_handler(Some(on_step));
        check_step(c, "nop", stepped!("nop"));
        check_step(c, "hvc (PSCI_VERSION)", stepped!("hvc #0"));
        check_step(c, "smc (PSCI_VERSION, trapped)", stepped!("smc #0"));
        check_step(
            c,
            "ldr of the PL011's FR (emulated)",
            stepped!("ldr w9, [x10]"),
        );
        check_step(
            c,
            "mrs ID_AA64PFR0_EL1 (trapped)",
            stepped!("mrs x9, id_aa64pfr0_el1"),
        );
        set_exception_handler(None);
    }

    /// Checks the step of one [`stepped!`] instruction: one software-step exception (EC
    /// 0x33, from EL1 itself) that returns to the instruction right after it (`next`), not
    /// the one after that.
    fn check_step(c: &mut Checker, what: &str, (next, after): (u64, u64)) {
        let (n, pc, esr) = (
            STEPS.load(Ordering::SeqCst),
            STEP_PC.load(Ordering::SeqCst),
            STEP_ESR.load(Ordering::SeqCst),
        );
        STEPS.store(0, Ordering::SeqCst);
        c.eq(format_args!("{what}: step exceptions"), n, 1);
        c.eq(
            format_args!("{what}: ESR_EL1.EC (software step)"),
            esr >> 26,
            0x33,
        );
        c.ok(
            format_args!(
                "{what}: the step ends right after it ({pc:#x}: {next:#x}, not {after:#x})"
            ),
            pc == next,
        );
    }

    /// SME and pointer authentication, which the ID registers hide, are UNDEFINED even for a
    /// guest that enables them at EL1 regardless: `smstart` with CPACR_EL1.SMEN open, and
    /// `pacia` with SCTLR_EL1.EnIA set. A CPU without them (Cortex-A72) does that itself; on
    /// one with them (QEMU's `max`, scenario `aarch64-vm-vmid16`) they trap to the
    /// hypervisor (CPTR_EL2.TSM, HCR_EL2.API clear), which must inject it rather than stop
    /// the VM.
    fn hidden_extensions(c: &mut Checker) {
        let isar1 = read_sysreg!("id_aa64isar1_el1");
        let pfr1 = read_sysreg!("id_aa64pfr1_el1");
        c.eq(
            "ISAR1 pointer authentication (APA, API, GPA, GPI)",
            isar1 & 0xff00_0ff0,
            0,
        );
        c.eq("PFR1.SME", field(pfr1, 24), 0);
        c.eq("PFR1.MTE", field(pfr1, 8), 0);
        c.eq("ID_AA64SMFR0_EL1", read_sysreg!("S3_0_C0_C4_5"), 0);
        UNDEFS.store(0, Ordering::SeqCst);
        set_undefined_handler(Some(on_undefined));
        let (sme_pc, pac_pc): (u64, u64);
        // SAFETY: opens SME at EL1 (CPACR_EL1.SMEN, RES0 without SME), runs `smstart`, which
        // is UNDEFINED (the handler skips it), and closes SME again; sets SCTLR_EL1.EnIA
        // (RES0 without pointer authentication), runs `pacia x9, x10` (UNDEFINED: x9 keeps
        // its value) and clears EnIA. No memory changes.
        unsafe {
            asm!(
                "mrs {t}, cpacr_el1",
                "orr {t}, {t}, #(3 << 24)",
                "msr cpacr_el1, {t}",
                "isb",
                "adr {sme}, 1f",
                "1: .inst 0xd503477f", // smstart
                "bic {t}, {t}, #(3 << 24)",
                "msr cpacr_el1, {t}",
                "mrs {t}, sctlr_el1",
                "orr {t}, {t}, #(1 << 31)",
                "msr sctlr_el1, {t}",
                "isb",
                "adr {pac}, 2f",
                "2: .inst 0xdac10149", // pacia x9, x10
                "bic {t}, {t}, #(1 << 31)",
                "msr sctlr_el1, {t}",
                "isb",
                t = out(reg) _,
                sme = out(reg) sme_pc,
                pac = out(reg) pac_pc,
                out("x9") _,
                out("x10") _,
                options(nostack),
            )
        };
        set_undefined_handler(None);
        c.eq(
            "SME and PAC instructions undefined",
            UNDEFS.load(Ordering::SeqCst),
            2,
        );
        c.eq(
            "last undefined at the pacia",
            UNDEF_PC.load(Ordering::SeqCst),
            pac_pc,
        );
        c.eq(
            "first at the smstart",
            UNDEF_FIRST_PC.load(Ordering::SeqCst),
            sme_pc,
        );
        c.eq("its ESR_EL1.EC", UNDEF_ESR.load(Ordering::SeqCst) >> 26, 0);
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "x86_64.rs"]
mod checks;

#[no_mangle]
fn main() {
    #[cfg(any(target_arch = "aarch64", target_arch = "x86_64"))]
    checks::run();
    #[cfg(target_arch = "riscv64")]
    grt::fail(
        "sysreg",
        "system-register traps are an aarch64 and x86_64 test",
    );
}
