use super::*;

fn regs_with(pairs: &[(usize, u64)]) -> [u64; 31] {
    let mut r = [0u64; 31];
    for &(i, v) in pairs {
        r[i] = v;
    }
    r
}

/// A data-abort ESR: ISV, SAS, SSE, SRT, SF, WnR.
fn dabt(sas: u64, sse: bool, srt: u64, sf: bool, write: bool) -> u64 {
    (ec::DABT_LOWER << 26)
        | (1 << 25)
        | (1 << 24)
        | (sas << 22)
        | ((sse as u64) << 21)
        | (srt << 16)
        | ((sf as u64) << 15)
        | ((write as u64) << 6)
        | 0x07
}

#[test]
fn mmio_store_of_every_width() {
    let regs = regs_with(&[(3, 0x1122_3344_5566_7788)]);
    for (sas, width, value) in [
        (0, AccessWidth::Byte, 0x88),
        (1, AccessWidth::Half, 0x7788),
        (2, AccessWidth::Word, 0x5566_7788),
        (3, AccessWidth::Dword, 0x1122_3344_5566_7788),
    ] {
        let a = decode_sync(dabt(sas, false, 3, true, true), 0x123, 0x90_0000, &regs);
        let gpa = fault_ipa(0x123, 0x90_0000);
        assert_eq!(
            a,
            SyncAction::Exit {
                exit: VmExit::MmioWrite { gpa, width, value },
                pc_step: 4
            }
        );
    }
}

#[test]
fn ipa_from_hpfar_and_far() {
    // HPFAR_EL2.FIPA (bits 39:4) = IPA[51:12].
    let hpfar = (0x0900_0000u64 >> 12) << 4;
    assert_eq!(
        fault_ipa(0xffff_0000_dead_b018, hpfar),
        GuestPhysAddr::new(0x0900_0018)
    );
}

#[test]
fn store_of_xzr_is_zero() {
    let regs = regs_with(&[(30, 5)]);
    let a = decode_sync(dabt(2, false, 31, false, true), 0, 0, &regs);
    assert!(matches!(
        a,
        SyncAction::Exit {
            exit: VmExit::MmioWrite { value: 0, .. },
            ..
        }
    ));
}

#[test]
fn mmio_load_and_sign_extension() {
    let a = decode_sync(dabt(0, true, 7, true, false), 0, 0, &[0; 31]);
    assert!(matches!(
        a,
        SyncAction::Exit {
            exit: VmExit::MmioRead {
                width: AccessWidth::Byte,
                reg: 7,
                sign_ext: true,
                ..
            },
            pc_step: 4
        }
    ));
    let ldrsb_x = DataAbort::from_esr(dabt(0, true, 7, true, false)).unwrap();
    assert_eq!(ldrsb_x.load_value(0x80), 0xffff_ffff_ffff_ff80);
    let ldrsb_w = DataAbort::from_esr(dabt(0, true, 7, false, false)).unwrap();
    assert_eq!(ldrsb_w.load_value(0x80), 0xffff_ff80);
    let ldrh = DataAbort::from_esr(dabt(1, false, 7, false, false)).unwrap();
    assert_eq!(ldrh.load_value(0xdead_8001), 0x8001);
    let ldrsw = DataAbort::from_esr(dabt(2, true, 7, true, false)).unwrap();
    assert_eq!(ldrsw.load_value(0x8000_0000), 0xffff_ffff_8000_0000);
    let ldr_x = DataAbort::from_esr(dabt(3, false, 7, true, false)).unwrap();
    assert_eq!(ldr_x.load_value(u64::MAX), u64::MAX);
}

#[test]
fn abort_without_syndrome_is_a_nested_fault() {
    let esr = (ec::DABT_LOWER << 26) | (1 << 6) | 0x07;
    let a = decode_sync(esr, 0x10, 0x50 << 4, &[0; 31]);
    assert_eq!(
        a,
        SyncAction::Exit {
            exit: VmExit::NestedPageFault {
                gpa: GuestPhysAddr::new(0x5_0010),
                access: MappingFlags::WRITE
            },
            pc_step: 0
        }
    );
}

#[test]
fn psci_over_hvc_and_smc() {
    let hvc = ec::HVC64 << 26;
    let smc = ec::SMC64 << 26;
    let off = regs_with(&[(0, psci::SYSTEM_OFF)]);
    assert_eq!(
        decode_sync(hvc, 0, 0, &off),
        SyncAction::Exit {
            exit: VmExit::SystemOff,
            pc_step: 0
        }
    );
    assert_eq!(
        decode_sync(smc, 0, 0, &off),
        SyncAction::Exit {
            exit: VmExit::SystemOff,
            pc_step: 4
        }
    );
    let reset = regs_with(&[(0, psci::SYSTEM_RESET)]);
    assert_eq!(
        decode_sync(hvc, 0, 0, &reset),
        SyncAction::Exit {
            exit: VmExit::SystemReset,
            pc_step: 0
        }
    );
    let ver = regs_with(&[(0, psci::VERSION)]);
    assert_eq!(
        decode_sync(hvc, 0, 0, &ver),
        SyncAction::Reply {
            x0: psci::VERSION_1_1,
            pc_step: 0
        }
    );
    let on = regs_with(&[(0, psci::CPU_ON_64), (1, 1), (2, 0x4008_0000), (3, 42)]);
    assert_eq!(
        decode_sync(hvc, 0, 0, &on),
        SyncAction::Exit {
            exit: VmExit::CpuUp {
                target: 1,
                entry: GuestPhysAddr::new(0x4008_0000),
                arg: 42
            },
            pc_step: 0
        }
    );
    let feat = regs_with(&[(0, psci::FEATURES), (1, psci::CPU_ON_64)]);
    assert_eq!(
        decode_sync(hvc, 0, 0, &feat),
        SyncAction::Reply { x0: 0, pc_step: 0 }
    );
    let feat_no = regs_with(&[(0, psci::FEATURES), (1, 0x8400_0001)]);
    assert_eq!(
        decode_sync(hvc, 0, 0, &feat_no),
        SyncAction::Reply {
            x0: psci::NOT_SUPPORTED,
            pc_step: 0
        }
    );
    let other_psci = regs_with(&[(0, 0x8400_0001)]);
    assert_eq!(
        decode_sync(hvc, 0, 0, &other_psci),
        SyncAction::Reply {
            x0: psci::NOT_SUPPORTED,
            pc_step: 0
        }
    );
}

#[test]
fn unknown_function_ids_are_not_supported_over_both_conduits() {
    for (esr, pc_step) in [(ec::HVC64 << 26, 0), (ec::SMC64 << 26, 4)] {
        let unsupported = SyncAction::Reply {
            x0: psci::NOT_SUPPORTED,
            pc_step,
        };
        for fid in [
            // PSCI functions not implemented, and the standard service past PSCI.
            0x8400_001F,
            0xC400_0000,
            0xC400_001F,
            0x8400_0020,
            0xC400_0020,
            // Other owners, yielding calls, and what used to be hypercall numbers.
            0x83FF_FFFF,
            0x4400_0000,
            0x0400_0000,
            0x8600_0100,
            0xC700_0100,
            0x100,
            0x4242,
            u64::MAX,
        ] {
            assert_eq!(
                decode_sync(esr, 0, 0, &regs_with(&[(0, fid)])),
                unsupported,
                "{fid:#x}"
            );
        }
    }
}

#[test]
fn the_function_id_is_w0() {
    // The upper half of X0 is ignored: a PSCI id with junk there is PSCI.
    let hvc = ec::HVC64 << 26;
    assert_eq!(
        decode_sync(hvc, 0, 0, &regs_with(&[(0, 0x1_8400_0000)])),
        SyncAction::Reply {
            x0: psci::VERSION_1_1,
            pc_step: 0
        }
    );
    // SMC32 CPU_ON sees only the low halves of its arguments; SMC64 all of them.
    let junk = 0xffff_ffff_0000_0000;
    let on32 = regs_with(&[
        (0, psci::CPU_ON_32),
        (1, junk | 1),
        (2, junk | 0x4008_0000),
        (3, junk | 42),
    ]);
    let on64 = regs_with(&[(0, psci::CPU_ON_64), (1, 1), (2, 0x4008_0000), (3, junk)]);
    for (regs, arg) in [(on32, 42), (on64, junk)] {
        assert_eq!(
            decode_sync(hvc, 0, 0, &regs),
            SyncAction::Exit {
                exit: VmExit::CpuUp {
                    target: 1,
                    entry: GuestPhysAddr::new(0x4008_0000),
                    arg
                },
                pc_step: 0
            }
        );
    }
}

#[test]
fn smccc_discovery() {
    let hvc = ec::HVC64 << 26;
    let reply = |x0| SyncAction::Reply { x0, pc_step: 0 };
    let version = regs_with(&[(0, u64::from(smccc::VERSION))]);
    assert_eq!(decode_sync(hvc, 0, 0, &version), reply(smccc::VERSION_1_1));
    let psci_says = regs_with(&[(0, psci::FEATURES), (1, u64::from(smccc::VERSION))]);
    assert_eq!(decode_sync(hvc, 0, 0, &psci_says), reply(0));
    let features = |id: u32| regs_with(&[(0, u64::from(smccc::ARCH_FEATURES)), (1, u64::from(id))]);
    assert_eq!(
        decode_sync(hvc, 0, 0, &features(smccc::ARCH_FEATURES)),
        reply(0)
    );
    assert_eq!(
        decode_sync(hvc, 0, 0, &features(smccc::ARCH_WORKAROUND_1)),
        reply(smccc::NOT_SUPPORTED)
    );
    let uid = regs_with(&[(0, u64::from(smccc::VENDOR_HYP_CALL_UID)), (1, 7), (4, 9)]);
    assert_eq!(
        decode_sync(ec::SMC64 << 26, 0, 0, &uid),
        SyncAction::ReplyX0To3 {
            x: smccc::AXVISOR_UID,
            pc_step: 4
        }
    );
}

#[test]
fn axvisor_calls_are_hypercalls() {
    let r = regs_with(&[
        (0, u64::from(smccc::AXVISOR_BASE) | 0x142),
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 4),
        (5, 5),
        (6, 6),
        (7, 7),
    ]);
    let hvc = ec::HVC64 << 26;
    assert_eq!(hvc_hypercall(hvc, &r), Some(0x142));
    assert_eq!(hvc_hypercall(ec::SMC64 << 26, &r), None);
    assert_eq!(hvc_hypercall(hvc, &regs_with(&[(0, 0x142)])), None);
    for (esr, pc_step) in [(hvc, 0), (ec::SMC64 << 26, 4)] {
        assert_eq!(
            decode_sync(esr, 0, 0, &r),
            SyncAction::Exit {
                exit: VmExit::Hypercall { nr: 0x142 },
                pc_step
            }
        );
    }
}

#[test]
fn wfi_halts_wfe_steps() {
    let wfi = ec::WFX << 26 | (1 << 25);
    assert_eq!(
        decode_sync(wfi, 0, 0, &[0; 31]),
        SyncAction::Exit {
            exit: VmExit::Halt,
            pc_step: 4
        }
    );
    let wfe = wfi | 1;
    assert_eq!(
        decode_sync(wfe, 0, 0, &[0; 31]),
        SyncAction::Reply { x0: 0, pc_step: 4 }
    );
}

#[test]
fn unknown_classes_are_unsupported_and_never_panic() {
    for class in 0..64u64 {
        for iss in [0u64, 0x1ff_ffff, 0x155_5555] {
            let _ = decode_sync((class << 26) | iss, u64::MAX, u64::MAX, &[u64::MAX; 31]);
        }
    }
    // Instruction aborts from the current EL (0x21) are not something a guest can cause here.
    let a = decode_sync(0x21 << 26, 0, 0, &[0; 31]);
    assert!(matches!(
        a,
        SyncAction::Exit {
            exit: VmExit::Unsupported { .. },
            ..
        }
    ));
}

#[test]
fn injected_abort_syndrome() {
    let write = dabt(2, false, 1, true, true);
    let esr = injected_abort_esr(write, false);
    assert_eq!(esr >> 26, ec::DABT_CURRENT);
    assert_eq!(esr & 0x3f, 0x10);
    assert_ne!(esr & (1 << 6), 0);
    assert_ne!(esr & (1 << 25), 0);
    // From EL0: the lower-EL class, the rest the same.
    assert_eq!(
        injected_abort_esr(write, true),
        esr & !(0x3f << 26) | (0x24 << 26)
    );
    // An instruction fetch: an instruction abort, never WnR.
    let fetch = (ec::IABT_LOWER << 26) | (1 << 25) | (1 << 6) | 0x06;
    assert_eq!(injected_abort_esr(fetch, false), 0x8600_0010);
    assert_eq!(injected_abort_esr(fetch, true), 0x8200_0010);
    assert_eq!(injected_abort_esr(write, false), 0x9600_0050);
    assert_eq!(injected_abort_esr(write, true), 0x9200_0050);
}

#[test]
fn sysreg_and_sve_traps() {
    let regs = [0u64; 31];
    // mrs x2, ID_AA64DFR0_EL1
    let esr = (ec::SYSREG << 26) | (1 << 25) | (3 << 20) | (5 << 1) | (2 << 5) | 1;
    match decode_sync(esr, 0, 0, &regs) {
        SyncAction::SysReg(a) => {
            assert_eq!(a.reg, crate::sysreg::ID_AA64DFR0_EL1);
            assert_eq!((a.rt, a.read), (2, true));
        }
        other => panic!("{other:?}"),
    }
    for class in [ec::SVE, ec::SME, ec::PAUTH] {
        assert_eq!(
            decode_sync((class << 26) | (1 << 25), 0, 0, &regs),
            SyncAction::Undefined,
            "EC {class:#x}"
        );
    }
}

#[test]
fn psci_affinity_info_and_power_replies() {
    use axvcpu::{PowerReply, PowerState};
    let regs = regs_with(&[(0, psci::AFFINITY_INFO_64), (1, 3), (2, 0)]);
    assert_eq!(
        decode_sync(ec::HVC64 << 26, 0, 0, &regs),
        SyncAction::Exit {
            exit: VmExit::CpuStatus { target: 3 },
            pc_step: 0
        }
    );
    // Affinity levels above 0 are refused at once.
    let regs = regs_with(&[(0, psci::AFFINITY_INFO_32), (1, 3), (2, 1)]);
    assert_eq!(
        decode_sync(ec::HVC64 << 26, 0, 0, &regs),
        SyncAction::Reply {
            x0: psci::INVALID_PARAMETERS,
            pc_step: 0
        }
    );
    assert_eq!(psci_power_reply(PowerReply::Done), 0);
    assert_eq!(psci_power_reply(PowerReply::AlreadyOn), -4i64 as u64);
    assert_eq!(psci_power_reply(PowerReply::OnPending), -5i64 as u64);
    assert_eq!(psci_power_reply(PowerReply::InvalidTarget), -2i64 as u64);
    assert_eq!(psci_power_reply(PowerReply::InvalidAddress), -9i64 as u64);
    assert_eq!(psci_power_reply(PowerReply::Status(PowerState::On)), 0);
    assert_eq!(psci_power_reply(PowerReply::Status(PowerState::Off)), 1);
    assert_eq!(psci_power_reply(PowerReply::Status(PowerState::Pending)), 2);
    assert_eq!(mpidr_to_index(1, 2), Some(1));
    assert_eq!(mpidr_to_index(2, 2), None);
    assert_eq!(mpidr_to_index(0x100, 4), None);
    assert_eq!(mpidr_to_index(0x1_0000_0000, 4), None);
    // Bits PSCI says must be zero (MPIDR_EL1's RES1 bit 31, U, MT, 63:40): invalid.
    for junk in [1 << 31, 1 << 30, 1 << 24, 1 << 40, 1 << 63] {
        assert_eq!(mpidr_to_index(junk | 1, 4), None, "{junk:#x}");
    }
}
