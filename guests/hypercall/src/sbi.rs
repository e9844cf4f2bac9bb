//! The SBI implementation axvisor gives a riscv64 guest (docs/riscv-vcpu.md): the version
//! it reports, the extensions it says it implements, and SBI_ERR_NOT_SUPPORTED for
//! unknown extensions and functions.

use grt::check::Checker;
use grt::{sbi_call, AXVISOR_HC_EID};

const BASE: u64 = 0x10;
const GET_SPEC_VERSION: u64 = 0;
const GET_IMPL_ID: u64 = 1;
const PROBE_EXTENSION: u64 = 3;
/// SBI 2.0 (major in bits 30:24).
const SPEC_VERSION_2_0: u64 = 2 << 24;
/// axvisor's SBI implementation id (not a registered one).
const IMPL_ID: u64 = 0x08B5;
const ERR_NOT_SUPPORTED: u64 = -2i64 as u64;

/// Runs the checks, printing `PASS sbi` if all hold.
pub fn check() {
    let mut c = Checker::new("sbi");
    // An SBI call that must succeed with `value`.
    let mut value = |what: &dyn core::fmt::Display, fid: u64, arg: u64, want: u64| {
        let (error, got) = sbi_call(BASE, fid, [arg, 0, 0, 0, 0, 0]);
        c.eq(format_args!("{what}: error"), error, 0);
        c.eq(format_args!("{what}: value"), got, want);
    };
    value(&"get_spec_version", GET_SPEC_VERSION, 0, SPEC_VERSION_2_0);
    value(&"get_impl_id", GET_IMPL_ID, 0, IMPL_ID);
    for (name, eid, present) in [
        ("BASE", BASE, 1),
        ("TIME", 0x5449_4D45, 1),
        ("sPI", 0x73_5049, 1),
        ("RFNC", 0x5246_4E43, 1),
        ("HSM", 0x48_534D, 1),
        ("SRST", 0x5352_5354, 1),
        ("DBCN", 0x4442_434E, 1),
        ("axvisor", AXVISOR_HC_EID, 1),
        ("legacy set_timer", 0x00, 1),
        ("legacy console_putchar", 0x01, 1),
        ("PMU", 0x50_4D55, 0),
        ("SUSP", 0x5355_5350, 0),
        ("CPPC", 0x4350_5043, 0),
        ("STA", 0x53_5441, 0),
        ("legacy send_ipi", 0x04, 0),
        ("an experimental id", 0x0800_0000, 0),
        ("axvisor's old id, experimental", 0x08B5_0000, 0),
    ] {
        value(
            &format_args!("probe_extension({name})"),
            PROBE_EXTENSION,
            eid,
            present,
        );
    }
    for (what, eid, fid) in [
        ("unknown extension", 0x0900_0000, 0),
        ("unknown BASE function", BASE, 7),
        ("HSM hart_suspend", 0x48_534D, 3),
    ] {
        c.eq(
            format_args!("{what} {eid:#x}/{fid}"),
            sbi_call(eid, fid, [0; 6]).0,
            ERR_NOT_SUPPORTED,
        );
    }
    c.finish();
}
