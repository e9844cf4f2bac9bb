//! The SMC Calling Convention as axvisor answers it on aarch64 (docs/vmm.md, "Hypercall
//! ABI"), over both conduits: the discovery calls, the vendor-specific hypervisor
//! service's queries, and NOT_SUPPORTED for unknown function ids of every owner.

use grt::check::Checker;
use grt::{hc, hvc_call, smc_call};

const SMCCC_VERSION: u64 = 0x8000_0000;
const SMCCC_ARCH_FEATURES: u64 = 0x8000_0001;
const SMCCC_ARCH_WORKAROUND_1: u64 = 0x8000_8000;
const SMCCC_ARCH_WORKAROUND_2: u64 = 0x8000_7FFF;
const SMCCC_ARCH_WORKAROUND_3: u64 = 0x8000_3FFF;
const PSCI_FEATURES: u64 = 0x8400_000A;
const VENDOR_HYP_CALL_UID: u64 = 0x8600_FF01;
const VENDOR_HYP_REVISION: u64 = 0x8600_FF03;
/// SMCCC 1.1.
const VERSION_1_1: u64 = 0x1_0001;
const NOT_SUPPORTED: u64 = -1i64 as u64;
/// axvisor's UUID, 2f0f3b07-3cbf-4866-be17-33539190eb99, as Call UID returns it (four bytes
/// per register, the first in the least significant byte).
const AXVISOR_UID: [u64; 4] = [0x073b_0f2f, 0x6648_bf3c, 0x5333_17be, 0x99eb_9091];

/// Runs the checks, printing `PASS smccc` if all hold.
pub fn check() {
    let mut c = Checker::new("smccc");
    for (conduit, call) in [
        ("hvc", hvc_call as fn(u64, [u64; 6]) -> [u64; 4]),
        ("smc", smc_call),
    ] {
        let x0 = |fid: u64, arg: u64| call(fid, [arg, 0, 0, 0, 0, 0])[0];
        c.eq(
            format_args!("{conduit} PSCI_FEATURES(SMCCC_VERSION)"),
            x0(PSCI_FEATURES, SMCCC_VERSION),
            0,
        );
        c.eq(
            format_args!("{conduit} SMCCC_VERSION"),
            x0(SMCCC_VERSION, 0),
            VERSION_1_1,
        );
        for (id, want) in [
            (SMCCC_VERSION, 0),
            (SMCCC_ARCH_FEATURES, 0),
            // SMC32: the upper half of the argument is ignored.
            (0xffff_ffff_0000_0000 | SMCCC_ARCH_FEATURES, 0),
            // The hypervisor does nothing for the Spectre workarounds.
            (SMCCC_ARCH_WORKAROUND_1, NOT_SUPPORTED),
            (SMCCC_ARCH_WORKAROUND_2, NOT_SUPPORTED),
            (SMCCC_ARCH_WORKAROUND_3, NOT_SUPPORTED),
            (0x8000_0002, NOT_SUPPORTED),
            (PSCI_FEATURES, NOT_SUPPORTED),
        ] {
            c.eq(
                format_args!("{conduit} SMCCC_ARCH_FEATURES({id:#x})"),
                x0(SMCCC_ARCH_FEATURES, id),
                want,
            );
        }
        let uid = call(VENDOR_HYP_CALL_UID, [0; 6]);
        for (i, (got, want)) in uid.iter().zip(AXVISOR_UID).enumerate() {
            c.eq(format_args!("{conduit} Call UID x{i}"), *got, want);
        }
        let rev = call(VENDOR_HYP_REVISION, [0; 6]);
        c.eq(
            format_args!("{conduit} Revision major"),
            rev[0],
            hc::ABI_VERSION,
        );
        c.eq(format_args!("{conduit} Revision minor"), rev[1], 0);
        for fid in [
            0x8000_0002,           // Arm Architecture, unassigned
            0x8100_0000,           // CPU service
            0x8200_0000,           // SiP
            0xC300_0001,           // OEM
            0x8400_0001,           // PSCI CPU_SUSPEND, not implemented
            0x8400_0020,           // standard service, past PSCI
            0x8500_0020,           // standard hypervisor service
            0x8600_0100,           // vendor hypervisor, SMC32 (axvisor's calls are SMC64)
            0x8600_FF00,           // Call Count (deprecated)
            0xC600_FF01,           // Call UID in the SMC64 form, which does not exist
            0x8700_0000,           // vendor-specific EL3 monitor
            0xB000_0000,           // trusted applications
            0xBF00_FFFF,           // trusted OS
            0x0000_0001,           // a yielding call
            hc::VERSION,           // axvisor's numbers outside the SMCCC range
            0x0123_0000_C700_0100, // junk in the upper half, owner 7
        ] {
            c.eq(
                format_args!("{conduit} unknown function {fid:#x}"),
                x0(fid, 0),
                NOT_SUPPORTED,
            );
        }
        // The function id is W0: the upper half of X0 is ignored.
        c.eq(
            format_args!("{conduit} VERSION with junk in x0's upper half"),
            x0(0xdead_beef_0000_0000 | grt::hypercall_fid(hc::VERSION), 0),
            hc::ABI_VERSION,
        );
    }
    c.finish();
}
