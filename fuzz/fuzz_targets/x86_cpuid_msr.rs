//! What an x86 guest's CPUID and RDMSR/WRMSR get (`x86_vcpu::cpuid`, `x86_vcpu::msr`): any
//! leaf and subleaf with any host answer and vCPU context, any MSR index and value with
//! any guest EFER and paging state.
//!
//! Checked: CPUID never shows VMX (leaf 1 ECX bit 5) or SVM (0x8000_0001 ECX bit 2), sets
//! the hypervisor bit, puts the vCPU index in the initial APIC id and OSXSAVE from the
//! guest's CR4; the hypervisor leaf names axvisor and the highest hypervisor leaf (the
//! timing leaf, which gives the TSC frequency), other hypervisor leaves are zero, and
//! leaves the filter does not list are the host's answer. MSRs: the bitmap lets through
//! only the listed MSRs (reads of the read-only ones), every index outside its two ranges
//! exits, and `set` changes the one bit it names; a trapped access to any MSR is an emulated
//! value or a #GP, an EFER write keeps LMA and (with paging on) LME, and only the
//! architectural EFER bits. XSETBV: `cpuid::xcr0_valid` accepts exactly the values the
//! instruction's #GP conditions allow (checked against them written out independently).

use std::sync::OnceLock;

use axvisor_fuzz::Input;
use x86_vcpu::cpuid::{self, CpuidContext, HYPERVISOR_LEAF, SIGNATURE, TIMING_LEAF};
use x86_vcpu::msr::{
    self, efer, MsrBitmap, MsrContext, MsrWrite, PASSTHROUGH, READ_ONLY_PASSTHROUGH,
};

/// Leaves the filter may change.
fn filtered(leaf: u32) -> bool {
    matches!(
        leaf,
        1 | 6 | 7 | 0xa | 0xd | 0x15 | 0x16 | 0x8000_0001 | 0x4000_0000..=0x4000_00ff
    )
}

fn bitmap() -> &'static MsrBitmap {
    static B: OnceLock<Box<MsrBitmap>> = OnceLock::new();
    B.get_or_init(|| Box::new(MsrBitmap::new()))
}

/// An MSR index near the interesting ones, or any.
fn msr_index(input: &mut Input<'_>) -> u32 {
    let raw = input.u32();
    match input.u8() % 4 {
        0 => raw,
        1 => raw % 0x2100,
        2 => 0xc000_0000 + raw % 0x2100,
        _ => PASSTHROUGH[raw as usize % PASSTHROUGH.len()] ^ ((raw >> 16) % 4),
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    while !input.is_empty() {
        match input.u8() % 5 {
            0 | 1 => cpuid_query(&mut input),
            2 | 3 => msr_access(&mut input),
            _ => xsetbv(&mut input),
        }
    }
}

fn cpuid_query(input: &mut Input<'_>) {
    let pick = input.u8();
    let raw = input.u32();
    let leaf = match pick % 4 {
        0 => raw,
        1 => [1, 6, 7, 0xa, 0xd, 0x8000_0001][raw as usize % 6],
        2 => HYPERVISOR_LEAF + raw % 0x120,
        _ => raw % 0x20,
    };
    let subleaf = if pick & 4 != 0 {
        input.u32()
    } else {
        raw >> 28
    };
    let host = [input.u32(), input.u32(), input.u32(), input.u32()];
    let ctx = CpuidContext {
        vcpu_index: input.u8(),
        guest_cr4: input.u64(),
        invpcid: input.bool(),
        tsc_khz: input.u32(),
    };
    let out = cpuid::filter(leaf, subleaf, host, &ctx);
    let [a, b, c, d] = out;
    match leaf {
        1 => {
            assert_eq!(c & (1 << 5), 0, "leaf 1 shows VMX");
            assert_ne!(c & (1 << 31), 0, "no hypervisor bit");
            assert_eq!(
                c & (1 << 27) != 0,
                ctx.guest_cr4 & (1 << 18) != 0,
                "OSXSAVE"
            );
            assert_eq!(b >> 24, u32::from(ctx.vcpu_index), "initial APIC id");
            assert_eq!(a, host[0]);
        }
        0x8000_0001 => assert_eq!(c & (1 << 2), 0, "0x8000_0001 shows SVM"),
        6 | 0xa => assert_eq!(out, [0; 4]),
        7 if subleaf == 0 && !ctx.invpcid => assert_eq!(b & (1 << 10), 0, "INVPCID"),
        HYPERVISOR_LEAF => {
            assert_eq!(a, TIMING_LEAF);
            let mut sig = [0u8; 12];
            sig[..4].copy_from_slice(&b.to_le_bytes());
            sig[4..8].copy_from_slice(&c.to_le_bytes());
            sig[8..].copy_from_slice(&d.to_le_bytes());
            assert_eq!(sig, SIGNATURE);
            assert!(sig.starts_with(b"axvisor"));
        }
        TIMING_LEAF => assert_eq!(out, [ctx.tsc_khz, 0, 0, 0]),
        // The TSC's real rate where the host has the leaves, else the host's.
        0x15 | 0x16 if ctx.tsc_khz != 0 && host != [0; 4] => {
            assert_eq!(out, cpuid::tsc_leaves(leaf, ctx.tsc_khz), "leaf {leaf:#x}")
        }
        0x15 | 0x16 => assert_eq!(out, host, "leaf {leaf:#x} changed"),
        0x4000_0001..=0x4000_00ff => assert_eq!(out, [0; 4], "leaf {leaf:#x}"),
        _ => {}
    }
    if !filtered(leaf) {
        assert_eq!(out, host, "leaf {leaf:#x} changed");
    }
    // Clearing only: the filter never sets a feature bit the host lacks, but for the
    // hypervisor bit and OSXSAVE of leaf 1 (and the APIC id) and the TSC leaves 0x15/0x16
    // (values, not feature bits).
    if !matches!(leaf, 1 | 0x15 | 0x16) && !(HYPERVISOR_LEAF..=0x4000_00ff).contains(&leaf) {
        for (o, h) in out.iter().zip(host) {
            assert_eq!(o & !h, 0, "leaf {leaf:#x} set bits");
        }
    }
}

fn msr_access(input: &mut Input<'_>) {
    let m = msr_index(input);
    let write = input.bool();
    let value = input.u64();
    let ctx = MsrContext {
        vcpu_index: usize::from(input.u8()),
        efer: input.u64() & (efer::SCE | efer::LME | efer::LMA | efer::NXE),
        paging: input.bool(),
        amd: input.bool(),
    };
    let in_range = m <= 0x1fff || (0xc000_0000..=0xc000_1fff).contains(&m);

    let b = bitmap();
    let exits = b.exits(m, write);
    let exits_other = b.exits(m, !write);
    if !in_range {
        assert!(exits, "MSR {m:#x} outside the bitmap does not exit");
    }
    if !exits {
        assert!(
            PASSTHROUGH.contains(&m) || (!write && READ_ONLY_PASSTHROUGH.contains(&m)),
            "MSR {m:#x} (write {write}) reaches the hardware"
        );
    }

    // `set` on a copy: the bit of this MSR and direction (only inside the ranges), and
    // setting it back restores the bitmap byte for byte.
    let mut copy = MsrBitmap(b.0);
    let exit = input.bool();
    copy.set(m, write, exit);
    if in_range {
        assert_eq!(copy.exits(m, write), exit);
        assert_eq!(copy.exits(m, !write), exits_other, "the other direction");
        copy.set(m, write, exits);
    }
    assert!(copy.0 == b.0, "set({m:#x}, {write}) changed other bits");

    // The trapped access.
    if write {
        match msr::write(m, value, &ctx) {
            Ok(MsrWrite::Efer(v)) => {
                assert_eq!(m, msr::nr::IA32_EFER);
                assert_eq!(v & !(efer::SCE | efer::LME | efer::LMA | efer::NXE), 0);
                assert_eq!(v & efer::LMA, ctx.efer & efer::LMA, "LMA written");
                if ctx.paging {
                    assert_eq!(v & efer::LME, ctx.efer & efer::LME, "LME with paging");
                }
            }
            Ok(MsrWrite::Ignore) | Err(_) => {}
        }
    } else if let Ok(v) = msr::read(m, &ctx) {
        if m == msr::nr::IA32_EFER {
            assert_eq!(v, ctx.efer);
        }
    }
}

/// XSETBV: `cpuid::xcr0_valid` against the instruction's #GP conditions (Intel SDM Vol. 2,
/// XSETBV), written out here independently: only XCR0; x87 state always; no bit the CPU
/// does not support; AVX state needs SSE state; BNDREGS and BNDCSR together; the three
/// AVX-512 components together and only with SSE and AVX; AMX's two together.
fn xsetbv(input: &mut Input<'_>) {
    let index = if input.bool() { 0 } else { input.u32() };
    let supported = if input.bool() {
        // A CPU with x87, SSE, AVX, MPX, AVX-512, PKRU and AMX.
        0x6_02ff
    } else {
        input.u64()
    };
    let value = input.u64() & if input.bool() { 0x6_02ff } else { u64::MAX };
    let bits = |lo: u32, n: u32| (value >> lo) & ((1 << n) - 1);
    let gp = index != 0
        || value & 1 == 0
        || value & !supported != 0
        || (bits(2, 1) == 1 && bits(1, 1) == 0)
        || bits(3, 1) != bits(4, 1)
        || (bits(5, 3) != 0 && bits(5, 3) != 0b111)
        || (bits(5, 3) != 0 && bits(1, 2) != 0b11)
        || bits(17, 1) != bits(18, 1);
    assert_eq!(
        cpuid::xcr0_valid(index, value, supported),
        !gp,
        "XSETBV XCR{index} = {value:#x} with {supported:#x} supported"
    );
}
