//! The aarch64 exit decoder: any syndrome (ESR_EL2), fault addresses and guest registers
//! through `decode_sync` and the helpers around it (data-abort ISS, system-register ISS,
//! PSCI target MPIDRs, the abort injected back).
//!
//! Checked: a load value fits its register and access width; a PSCI target index is a
//! vCPU that exists; an injected abort is a data or instruction abort.
#![no_main]

use arm_vcpu::decode::{self, DataAbort};
use arm_vcpu::sysreg::{sanitize_id, SysRegAccess};
use axvisor_fuzz::Input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let esr = input.u64();
    let far = input.u64();
    let hpfar = input.u64();
    let raw = input.u64();
    let count = input.u8() as usize % 9;
    let mut regs = [0u64; 31];
    for r in &mut regs {
        *r = input.u64();
    }

    let _ = decode::hvc_hypercall(esr, &regs);
    let _ = format!("{:?}", decode::decode_sync(esr, far, hpfar, &regs));
    let _ = decode::fault_ipa(far, hpfar);

    if let Some(abort) = DataAbort::from_esr(esr) {
        let v = abort.load_value(raw);
        if !abort.sixty_four {
            assert!(v <= u32::MAX as u64, "{abort:?}: {v:#x} in a W register");
        }
        if !abort.sign_ext {
            assert_eq!(
                v & !abort.width.mask(),
                0,
                "{abort:?}: {v:#x} wider than the access"
            );
        }
        let _ = decode::gpr(&regs, abort.reg);
    }

    let sys = SysRegAccess::from_esr(esr);
    assert!(sys.rt < 32);
    let _ = sanitize_id(sys.reg, raw);

    if let Some(i) = decode::mpidr_to_index(regs[1], count) {
        assert!(i < count, "MPIDR {:#x} names vCPU {i} of {count}", regs[1]);
    }

    let injected = decode::injected_abort_esr(esr, far & 1 != 0);
    let class = injected >> 26;
    assert!(
        [
            decode::ec::IABT_LOWER,
            decode::ec::IABT_CURRENT,
            decode::ec::DABT_LOWER,
            decode::ec::DABT_CURRENT
        ]
        .contains(&class),
        "injected EC {class:#x}"
    );
});
