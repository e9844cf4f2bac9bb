//! The aarch64 exit decoder: any syndrome (ESR_EL2), fault addresses, guest registers and
//! saved PSTATE (SPSR_EL2, AArch64 or AArch32) through `decode_sync` and the helpers
//! around it (data-abort ISS, system-register ISS, SMCCC answers, PSCI target MPIDRs, the
//! abort injected back, the AArch32 condition check and PC step, exception entry).
//!
//! Checked: a load value fits its register and access width; a PSCI target index is a
//! vCPU that exists; an injected abort is a data or instruction abort; an instruction is
//! 2 or 4 bytes; stepping past it in AArch32 keeps the PC in 32 bits and a step of 0
//! changes nothing; an exception enters EL1h at one of the four synchronous vectors.

use arm_vcpu::decode::{self, DataAbort};
use arm_vcpu::exception::{self, EntryFeatures};
use arm_vcpu::smccc::{self, FunctionId};
use arm_vcpu::sysreg::{sanitize_id, SysRegAccess};
use axvisor_fuzz::Input;

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let esr = input.u64();
    let far = input.u64();
    let hpfar = input.u64();
    let raw = input.u64();
    let count = input.u8() as usize % 9;
    let spsr = input.u64();
    let sctlr = input.u64();
    let id_regs = (input.u64(), input.u64(), input.u64());
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
        // Only Aff0 may be non-zero in a PSCI target_cpu that names a vCPU.
        assert_eq!(
            regs[1], i as u64,
            "MPIDR {:#x} with other bits names vCPU {i}",
            regs[1]
        );
    }
    // Features the ID registers hide: UNDEFINED whatever the ISS.
    if [decode::ec::SVE, decode::ec::SME, decode::ec::PAUTH].contains(&(esr >> 26)) {
        assert_eq!(
            decode::decode_sync(esr, far, hpfar, &regs),
            decode::SyncAction::Undefined,
            "EC {:#x}",
            esr >> 26
        );
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

    let _ = smccc::axvisor_call(regs[0]);
    let _ = format!("{:?}", smccc::answer(FunctionId::from_x0(regs[0]), regs[1]));

    // AArch32 and exception entry.
    let len = exception::insn_len(esr);
    assert!(len == 2 || len == 4, "instruction of {len} bytes");
    let _ = exception::condition_passed(esr, spsr);
    let _ = exception::effective_syndrome(esr, spsr);
    let _ = exception::from_el0(spsr);
    let (pc, next_spsr) = exception::step(far, spsr, len);
    if exception::is_aarch32(spsr) {
        assert!(pc <= u32::MAX as u64, "AArch32 PC {pc:#x}");
    }
    assert_eq!(
        exception::step(far, spsr, 0),
        (far, spsr),
        "a step of 0 moved"
    );
    // The instruction completed: a software step of it ends here (SS clear); nothing else of
    // PSTATE but ITSTATE changes.
    assert_eq!(next_spsr & exception::SPSR_SS, 0, "SS kept after a step");
    assert_eq!(
        next_spsr & !(exception::SPSR_SS | 0x0600_fc00),
        spsr & !(exception::SPSR_SS | 0x0600_fc00),
        "a step changed more than SS and ITSTATE"
    );
    let vector = exception::vector_offset(spsr);
    assert!(
        [0, 0x200, 0x400, 0x600].contains(&vector),
        "vector {vector:#x}"
    );
    let features = EntryFeatures::from_id_registers(id_regs.0, id_regs.1, id_regs.2);
    let pstate = exception::entry_pstate(spsr, sctlr, features);
    assert_eq!(
        pstate & 0x1f,
        0b00101,
        "entry PSTATE {pstate:#x} is not EL1h"
    );
}
