use super::*;

// Encodings checked with `llvm-mc -triple=riscv64 -mattr=+c -show-encoding`.
const LB_A0_0_A1: u32 = 0x0005_8503;
const LH_T0_8_S0: u32 = 0x0084_1283;
const LW_S1_M4_A5: u32 = 0xffc7_a483;
const LD_RA_16_SP: u32 = 0x0101_3083;
const LBU_A2_1_A3: u32 = 0x0016_c603;
const LHU_A4_2_A5: u32 = 0x0027_d703;
const LWU_T6_0_T5: u32 = 0x000f_6f83;
const SB_A0_0_A1: u32 = 0x00a5_8023;
const SH_ZERO_4_A1: u32 = 0x0005_9223;
const SW_S11_8_A1: u32 = 0x01b5_a423;
const SD_T2_M8_A1: u32 = 0xfe75_bc23;
const C_LW_A0_0_A1: u32 = 0x4188;
const C_LD_A5_8_S1: u32 = 0x649c;
const C_SW_A0_4_A1: u32 = 0xc1c8;
const C_SD_S0_0_A5: u32 = 0xe380;
const C_LWSP_RA_4: u32 = 0x4092;
const C_LDSP_T1_8: u32 = 0x6322;
const C_SWSP_A0_0: u32 = 0xc02a;
const C_SDSP_ZERO_8: u32 = 0xe402;
const C_LW_S0_124_A5: u32 = 0x5fe0;
const C_LD_A0_248_A5: u32 = 0x7fe8;
const C_FLD_FA0_0_A1: u32 = 0x2188;
const C_FSD_FA0_0_A1: u32 = 0xa188;
const FLW_FA0_0_A1: u32 = 0x0005_a507;
const AMOADD_W: u32 = 0x00b6_252f;

/// A trap from VS mode.
fn trap(scause: u64, stval: u64, htval: u64, htinst: u64) -> Trap {
    Trap {
        scause,
        stval,
        htval,
        htinst,
        from_vu: false,
    }
}

const INFO: VCpuInfo = VCpuInfo {
    hart_id: 0,
    harts: 1,
};

fn load(width: AccessWidth, rd: usize, sign_ext: bool, len: u64) -> Option<MemAccess> {
    Some(MemAccess {
        width,
        op: MemOp::Load { rd, sign_ext },
        len,
        addr_offset: 0,
    })
}

fn store(width: AccessWidth, rs2: usize, len: u64) -> Option<MemAccess> {
    Some(MemAccess {
        width,
        op: MemOp::Store { rs2 },
        len,
        addr_offset: 0,
    })
}

/// What QEMU puts in `htinst` for `insn`: a compressed instruction expanded to its 32-bit
/// form (given as `expanded`), rs1 replaced by the address offset 0, bit 1 cleared when the
/// original was compressed.
fn transformed(expanded: u32, compressed: bool) -> u64 {
    let t = expanded & !(0x1f << 15);
    (if compressed { t & !2 } else { t }) as u64
}

#[test]
fn every_32bit_load_and_store() {
    use AccessWidth::*;
    let cases = [
        (LB_A0_0_A1, load(Byte, 10, true, 4)),
        (LH_T0_8_S0, load(Half, 5, true, 4)),
        (LW_S1_M4_A5, load(Word, 9, true, 4)),
        (LD_RA_16_SP, load(Dword, 1, true, 4)),
        (LBU_A2_1_A3, load(Byte, 12, false, 4)),
        (LHU_A4_2_A5, load(Half, 14, false, 4)),
        (LWU_T6_0_T5, load(Word, 31, false, 4)),
        (SB_A0_0_A1, store(Byte, 10, 4)),
        (SH_ZERO_4_A1, store(Half, 0, 4)),
        (SW_S11_8_A1, store(Word, 27, 4)),
        (SD_T2_M8_A1, store(Dword, 7, 4)),
    ];
    for (insn, want) in cases {
        assert_eq!(decode_raw(insn), want, "raw {insn:#x}");
        assert_eq!(
            decode_transformed(transformed(insn, false)),
            want,
            "transformed {insn:#x}"
        );
    }
}

#[test]
fn compressed_loads_and_stores() {
    use AccessWidth::*;
    let cases = [
        (C_LW_A0_0_A1, load(Word, 10, true, 2)),
        (C_LD_A5_8_S1, load(Dword, 15, true, 2)),
        (C_SW_A0_4_A1, store(Word, 10, 2)),
        (C_SD_S0_0_A5, store(Dword, 8, 2)),
        (C_LWSP_RA_4, load(Word, 1, true, 2)),
        (C_LDSP_T1_8, load(Dword, 6, true, 2)),
        (C_SWSP_A0_0, store(Word, 10, 2)),
        (C_SDSP_ZERO_8, store(Dword, 0, 2)),
        (C_LW_S0_124_A5, load(Word, 8, true, 2)),
        (C_LD_A0_248_A5, load(Dword, 10, true, 2)),
    ];
    for (insn, want) in cases {
        assert_eq!(decode_raw(insn), want, "raw {insn:#x}");
        // Only the low half counts for a compressed instruction.
        assert_eq!(decode_raw(insn | 0xabcd_0000), want, "raw {insn:#x}");
    }
    // The expanded forms QEMU reports: c.lw a0, 0(a1) -> lw a0, 0(x0) with bit 1 clear.
    let expanded = [
        (0x0005_a503, load(Word, 10, true, 2)),  // lw a0, 0(a1)
        (0x0084_b783, load(Dword, 15, true, 2)), // ld a5, 8(s1)
        (0x00a5_a223, store(Word, 10, 2)),       // sw a0, 4(a1)
        (0x0087_b023, store(Dword, 8, 2)),       // sd s0, 0(a5)
        (0x0041_2083, load(Word, 1, true, 2)),   // lw ra, 4(sp)
        (0x0001_2023, store(Word, 0, 2)),        // sw zero, 0(sp)
    ];
    for (insn, want) in expanded {
        assert_eq!(
            decode_transformed(transformed(insn, true)),
            want,
            "{insn:#x}"
        );
    }
    assert_eq!(decode_transformed(0x0000_2501), load(Word, 10, true, 2));
}

#[test]
fn not_integer_accesses() {
    for insn in [
        C_FLD_FA0_0_A1,
        C_FSD_FA0_0_A1,
        FLW_FA0_0_A1,
        AMOADD_W,
        WFI,
        0,
        0x0001,      // c.nop
        0x4002,      // c.lwsp zero (reserved)
        0x6002,      // c.ldsp zero (reserved)
        0x0000_7003, // LOAD with funct3 = 7
        0x0000_4023, // STORE with funct3 = 4
        0x0000_5023, // STORE with funct3 = 5
        0x0000_6023, // STORE with funct3 = 6
        0x0000_7023, // STORE with funct3 = 7
        0xffff_ffff,
    ] {
        assert_eq!(decode_raw(insn), None, "{insn:#x}");
        // (A 16-bit value read as a transformed instruction is its 32-bit expansion.)
        if insn & 3 == 3 || insn > 0xffff {
            assert_eq!(
                decode_transformed(insn as u64 & !(0x1f << 15)),
                None,
                "{insn:#x}"
            );
        }
    }
    // Implicit VS-stage page-table accesses and values wider than 32 bits.
    for t in [0x2000, 0x2020, 0x3000, 0x3020, 1 << 32 | LB_A0_0_A1 as u64] {
        assert_eq!(decode_transformed(t), None, "{t:#x}");
    }
}

#[test]
fn transformed_address_offset() {
    let t = transformed(LW_S1_M4_A5, false) | (2 << 15);
    let a = decode_transformed(t).unwrap();
    assert_eq!(a.addr_offset, 2);
    let regs = [0; 32];
    let action = decode_trap(&trap(21, 0x1002, 0x1002 >> 2, t), &regs, &INFO, || None);
    assert_eq!(
        action,
        TrapAction::Exit {
            exit: VmExit::MmioRead {
                gpa: GuestPhysAddr::new(0x1000),
                width: AccessWidth::Word,
                reg: 9,
                sign_ext: true
            },
            pc_step: 4
        }
    );
}

#[test]
fn load_values_extend_as_the_instruction_says() {
    use AccessWidth::*;
    let raw = 0xffff_ffff_8080_8080u64;
    assert_eq!(load_value(Byte, true, raw), 0xffff_ffff_ffff_ff80);
    assert_eq!(load_value(Byte, false, raw), 0x80);
    assert_eq!(load_value(Half, true, raw), 0xffff_ffff_ffff_8080);
    assert_eq!(load_value(Half, false, raw), 0x8080);
    assert_eq!(load_value(Word, true, raw), 0xffff_ffff_8080_8080);
    assert_eq!(load_value(Word, false, raw), 0x8080_8080);
    assert_eq!(load_value(Dword, true, raw), raw);
    assert_eq!(load_value(Dword, false, raw), raw);
    // Positive values are not extended.
    assert_eq!(load_value(Byte, true, 0x17f), 0x7f);
    assert_eq!(load_value(Half, true, 0x1_7fff), 0x7fff);
    assert_eq!(load_value(Word, true, 0x1_7fff_ffff), 0x7fff_ffff);
}

fn regs_with(pairs: &[(usize, u64)]) -> [u64; 32] {
    let mut r = [0u64; 32];
    for &(i, v) in pairs {
        r[i] = v;
    }
    r
}

#[test]
fn mmio_read_exit_from_htinst() {
    // lbu a2, 1(a3) at guest VA 0x1000_0005 -> GPA 0x1000_0005.
    let gpa = 0x1000_0005u64;
    let a = decode_trap(
        &trap(
            cause::LOAD_GUEST_PAGE_FAULT,
            gpa,
            gpa >> 2,
            transformed(LBU_A2_1_A3, false),
        ),
        &[0; 32],
        &INFO,
        || panic!("no fetch with htinst"),
    );
    assert_eq!(
        a,
        TrapAction::Exit {
            exit: VmExit::MmioRead {
                gpa: GuestPhysAddr::new(gpa as usize),
                width: AccessWidth::Byte,
                reg: 12,
                sign_ext: false
            },
            pc_step: 4
        }
    );
}

#[test]
fn gpa_from_htval_and_stval() {
    // Paging on in the guest: stval is a virtual address, only its low two bits count.
    assert_eq!(
        fault_gpa(0x1000_0004 >> 2, 0xffff_ffc0_dead_bee7),
        0x1000_0007
    );
    assert_eq!(fault_gpa(0x0400_0000, 0), 0x1000_0000);
}

#[test]
fn mmio_write_values_are_masked_and_x0_is_zero() {
    use AccessWidth::*;
    let regs = regs_with(&[
        (0, 0xdead),
        (7, 0x1122_3344_5566_7788),
        (10, 0x1ff),
        (27, 0xaabb_ccdd_eeff),
    ]);
    let gpa = 0x1000_0000u64;
    let cases = [
        (SB_A0_0_A1, Byte, 0xff, 4),
        (SH_ZERO_4_A1, Half, 0, 4),
        (SW_S11_8_A1, Word, 0xccdd_eeff, 4),
        (SD_T2_M8_A1, Dword, 0x1122_3344_5566_7788, 4),
        (C_SDSP_ZERO_8, Dword, 0, 2),
        (C_SW_A0_4_A1, Word, 0x1ff, 2),
    ];
    for (insn, width, value, len) in cases {
        let t = transformed(insn, false);
        // Compressed stores go through the raw path (fetch), 32-bit ones through htinst.
        let (htinst, raw) = if len == 2 { (0, Some(insn)) } else { (t, None) };
        let a = decode_trap(
            &trap(cause::STORE_GUEST_PAGE_FAULT, gpa, gpa >> 2, htinst),
            &regs,
            &INFO,
            || raw,
        );
        assert_eq!(
            a,
            TrapAction::Exit {
                exit: VmExit::MmioWrite {
                    gpa: GuestPhysAddr::new(gpa as usize),
                    width,
                    value
                },
                pc_step: len
            },
            "{insn:#x}"
        );
    }
}

#[test]
fn load_into_x0_reports_register_zero() {
    // lw zero, 0(a1)
    let insn = 0x0005_a003;
    let a = decode_trap(
        &trap(21, 0x100, 0x40, transformed(insn, false)),
        &[0; 32],
        &INFO,
        || None,
    );
    assert!(matches!(
        a,
        TrapAction::Exit {
            exit: VmExit::MmioRead { reg: 0, .. },
            pc_step: 4
        }
    ));
}

#[test]
fn undecodable_guest_page_faults_are_nested_page_faults() {
    let npf = |gpa: usize, access| TrapAction::Exit {
        exit: VmExit::NestedPageFault {
            gpa: GuestPhysAddr::new(gpa),
            access,
        },
        pc_step: 0,
    };
    let gpa = 0x2000_0010u64;
    let t = |cause, htinst, fetch: Option<u32>| {
        decode_trap(&trap(cause, gpa, gpa >> 2, htinst), &[0; 32], &INFO, || {
            fetch
        })
    };
    // No htinst and nothing fetched.
    assert_eq!(t(21, 0, None), npf(gpa as usize, MappingFlags::READ));
    assert_eq!(t(23, 0, None), npf(gpa as usize, MappingFlags::WRITE));
    // AMO, FP, implicit page-table walk.
    assert_eq!(
        t(23, AMOADD_W as u64 & !(0x1f << 15), None),
        npf(gpa as usize, MappingFlags::WRITE)
    );
    assert_eq!(
        t(21, FLW_FA0_0_A1 as u64 & !(0x1f << 15), None),
        npf(gpa as usize, MappingFlags::READ)
    );
    assert_eq!(t(21, 0x3000, None), npf(gpa as usize, MappingFlags::READ));
    assert_eq!(t(23, 0x3020, None), npf(gpa as usize, MappingFlags::WRITE));
    // A load instruction reported with a store fault (or the reverse) is not trusted.
    assert_eq!(
        t(23, transformed(LB_A0_0_A1, false), None),
        npf(gpa as usize, MappingFlags::WRITE)
    );
    assert_eq!(
        t(21, transformed(SB_A0_0_A1, false), None),
        npf(gpa as usize, MappingFlags::READ)
    );
    assert_eq!(
        t(21, 0, Some(SB_A0_0_A1)),
        npf(gpa as usize, MappingFlags::READ)
    );
    // Instruction fetches.
    assert_eq!(t(20, 0, None), npf(gpa as usize, MappingFlags::EXECUTE));
    // With the instruction fetched, a raw load decodes.
    assert!(matches!(
        t(21, 0, Some(C_LW_A0_0_A1)),
        TrapAction::Exit {
            exit: VmExit::MmioRead { reg: 10, .. },
            pc_step: 2
        }
    ));
}

#[test]
fn wfi_halts_other_virtual_instructions_are_illegal() {
    let vi =
        |stval, fetch: Option<u32>| decode_trap(&trap(22, stval, 0, 0), &[0; 32], &INFO, || fetch);
    let halt = TrapAction::Exit {
        exit: VmExit::Halt,
        pc_step: 4,
    };
    assert_eq!(vi(WFI as u64, None), halt);
    // From VU mode, wfi is illegal.
    let vu = Trap {
        from_vu: true,
        ..trap(22, WFI as u64, 0, 0)
    };
    assert_eq!(
        decode_trap(&vu, &[0; 32], &INFO, || None),
        TrapAction::Inject {
            cause: cause::ILLEGAL_INSN,
            tval: WFI as u64
        }
    );
    assert_eq!(vi(0, Some(WFI)), halt);
    // csrr a0, hstatus from VS mode.
    assert_eq!(
        vi(0x6000_2573, None),
        TrapAction::Inject {
            cause: cause::ILLEGAL_INSN,
            tval: 0x6000_2573
        }
    );
    assert_eq!(
        vi(0, None),
        TrapAction::Inject {
            cause: cause::ILLEGAL_INSN,
            tval: 0
        }
    );
}

#[test]
fn other_exceptions_are_unsupported() {
    // (Access faults, 1, 5 and 7, are injected: `access_faults_go_back_to_the_guest`.)
    for c in [0, 2, 3, 8, 9, 11, 12, 13, 15, 19, 24, 63, u64::MAX] {
        assert_eq!(
            decode_trap(&trap(c, 0, 0, 0), &[0; 32], &INFO, || None),
            TrapAction::Exit {
                exit: VmExit::Unsupported {
                    reason: "exception from the guest not emulated",
                    syndrome: c
                },
                pc_step: 0
            }
        );
    }
}

/// An SBI call: a7 = eid, a6 = fid, a0.. = args.
fn call(eid: u64, fid: u64, args: &[u64]) -> SbiAction {
    call_on(&INFO, eid, fid, args)
}

fn call_on(info: &VCpuInfo, eid: u64, fid: u64, args: &[u64]) -> SbiAction {
    let mut regs = [0u64; 32];
    regs[17] = eid;
    regs[16] = fid;
    for (i, &a) in args.iter().enumerate() {
        regs[10 + i] = a;
    }
    let via_trap = decode_trap(&trap(cause::VS_ECALL, 0, 0, 0), &regs, info, || None);
    let direct = decode_sbi(&regs, info);
    assert_eq!(via_trap, TrapAction::Sbi(direct));
    direct
}

fn ok(v: u64) -> SbiAction {
    SbiAction::Reply { a0: 0, a1: Some(v) }
}

fn err(e: u64) -> SbiAction {
    SbiAction::Reply { a0: e, a1: None }
}

#[test]
fn sbi_base() {
    assert_eq!(call(0x10, 0, &[]), ok(0x0200_0000));
    assert_eq!(call(0x10, 1, &[]), ok(sbi::IMPL_ID));
    assert_eq!(call(0x10, 2, &[]), ok(sbi::IMPL_VERSION));
    for f in 4..=6 {
        assert_eq!(call(0x10, f, &[]), ok(0));
    }
    assert_eq!(call(0x10, 7, &[]), err(-2i64 as u64));
    for eid in [
        0x10,
        0x4442_434E,
        0x5449_4D45,
        0x73_5049,
        0x5246_4E43,
        0x48_534D,
        0x5352_5354,
        0x0A00_08B5,
        0x01,
        0x02,
        0x08,
        0x00,
    ] {
        assert_eq!(call(0x10, 3, &[eid]), ok(1), "probe {eid:#x}");
    }
    for eid in [0x5043_4E54, 0x03, 0x04, 0x05, 0x06, 0x07, 0x09, 0xffff_ffff] {
        assert_eq!(call(0x10, 3, &[eid]), ok(0), "probe {eid:#x}");
    }
}

#[test]
fn sbi_timer() {
    assert_eq!(
        call(0x5449_4D45, 0, &[12345]),
        SbiAction::SetTimer { deadline: 12345 }
    );
    assert_eq!(call(0x5449_4D45, 1, &[12345]), err(sbi::ERR_NOT_SUPPORTED));
    assert_eq!(call(0, 0, &[777]), SbiAction::SetTimer { deadline: 777 });
    // The legacy set_timer (EID 0) too.
    assert_eq!(
        call(0, 0, &[u64::MAX]),
        SbiAction::SetTimer { deadline: u64::MAX }
    );
}

#[test]
fn sbi_console() {
    let putchar = |ret| SbiAction::Exit {
        exit: VmExit::Hypercall {
            nr: crate::SBI_CONSOLE_PUTCHAR_NR,
        },
        ret,
    };
    assert_eq!(
        call(0x01, 0, &[0x1234_5678 ^ 0x78 ^ b'x' as u64]),
        putchar(RetKind::Legacy)
    );
    assert_eq!(
        call(0x4442_434E, 2, &[b'x' as u64]),
        putchar(RetKind::Value)
    );
    let dbcn = 0x4442_434E;
    let write = |addr, len| SbiAction::ConsoleWrite { addr, len };
    // console_write: a0 = count, a1/a2 = address low/high; at most DBCN_WRITE_MAX at once.
    assert_eq!(call(dbcn, 0, &[1, 0x8000_0000, 0]), write(0x8000_0000, 1));
    assert_eq!(call(dbcn, 0, &[64, 0x8000_0001, 0]), write(0x8000_0001, 64));
    assert_eq!(call(dbcn, 0, &[65, 0x8000_0000, 0]), write(0x8000_0000, 64));
    assert_eq!(
        call(dbcn, 0, &[u64::MAX / 2, 0x8000_0000, 0]),
        write(0x8000_0000, sbi::DBCN_WRITE_MAX)
    );
    assert_eq!(call(dbcn, 0, &[0, 0x8000_0000, 0]), ok(0));
    // An address above 64 bits, or a buffer that wraps, is not memory.
    assert_eq!(call(dbcn, 0, &[1, 0, 1]), err(sbi::ERR_INVALID_PARAM));
    assert_eq!(
        call(dbcn, 0, &[2, u64::MAX, 0]),
        err(sbi::ERR_INVALID_PARAM)
    );
    assert_eq!(
        call(dbcn, 0, &[1, u64::MAX, 0]),
        err(sbi::ERR_INVALID_PARAM)
    );
    assert_eq!(call(dbcn, 0, &[1, u64::MAX - 1, 0]), write(u64::MAX - 1, 1));
    // console_read: no console input, so no bytes (after the same address checks).
    assert_eq!(call(dbcn, 1, &[1, 0x8000_0000, 0]), ok(0));
    assert_eq!(
        call(dbcn, 1, &[1, 0x8000_0000, 7]),
        err(sbi::ERR_INVALID_PARAM)
    );
    assert_eq!(
        call(dbcn, 3, &[1, 0x8000_0000, 0]),
        err(sbi::ERR_NOT_SUPPORTED)
    );
    assert_eq!(
        call(0x02, 0, &[]),
        SbiAction::Reply {
            a0: u64::MAX,
            a1: None
        }
    );
    assert_eq!(
        crate::SBI_CONSOLE_PUTCHAR_NR,
        axvcpu::hypercall::CONSOLE_PUTCHAR
    );
}

#[test]
fn sbi_reset() {
    let srst = 0x5352_5354;
    assert_eq!(
        call(srst, 0, &[0, 0]),
        SbiAction::Exit {
            exit: VmExit::SystemOff,
            ret: RetKind::Status
        }
    );
    for t in [1, 2] {
        assert_eq!(
            call(srst, 0, &[t, 1]),
            SbiAction::Exit {
                exit: VmExit::SystemReset,
                ret: RetKind::Status
            }
        );
    }
    assert_eq!(call(srst, 0, &[3, 0]), err(sbi::ERR_INVALID_PARAM));
    assert_eq!(
        call(srst, 0, &[0xf000_0000, 0]),
        err(sbi::ERR_INVALID_PARAM)
    );
    assert_eq!(call(srst, 1, &[0, 0]), err(sbi::ERR_NOT_SUPPORTED));
    assert_eq!(
        call(0x08, 0, &[]),
        SbiAction::Exit {
            exit: VmExit::SystemOff,
            ret: RetKind::Legacy
        }
    );
}

#[test]
fn sbi_hsm() {
    let hsm = 0x48_534D;
    assert_eq!(
        call(hsm, 0, &[1, 0x8020_0000, 0xabc]),
        SbiAction::Exit {
            exit: VmExit::CpuUp {
                target: 1,
                entry: GuestPhysAddr::new(0x8020_0000),
                arg: 0xabc
            },
            ret: RetKind::Power
        }
    );
    assert_eq!(
        call(hsm, 1, &[]),
        SbiAction::Exit {
            exit: VmExit::CpuDown,
            ret: RetKind::Status
        }
    );
    let info = VCpuInfo {
        hart_id: 3,
        harts: 4,
    };
    assert_eq!(call_on(&info, hsm, 2, &[3]), ok(sbi::HSM_STARTED));
    assert_eq!(
        call_on(&info, hsm, 2, &[0]),
        SbiAction::Exit {
            exit: VmExit::CpuStatus { target: 0 },
            ret: RetKind::Power
        }
    );
    use axvcpu::{PowerReply, PowerState};
    assert_eq!(power_reply(PowerReply::Done), (0, 0));
    assert_eq!(power_reply(PowerReply::AlreadyOn), (-6i64 as u64, 0));
    assert_eq!(power_reply(PowerReply::OnPending), (-6i64 as u64, 0));
    assert_eq!(power_reply(PowerReply::InvalidTarget), (-3i64 as u64, 0));
    assert_eq!(power_reply(PowerReply::InvalidAddress), (-5i64 as u64, 0));
    assert_eq!(power_reply(PowerReply::Status(PowerState::On)), (0, 0));
    assert_eq!(power_reply(PowerReply::Status(PowerState::Off)), (0, 1));
    assert_eq!(power_reply(PowerReply::Status(PowerState::Pending)), (0, 2));
    assert_eq!(call(hsm, 3, &[0, 0, 0]), err(sbi::ERR_NOT_SUPPORTED));
}

#[test]
fn sbi_ipi_and_rfence_name_harts_of_the_vm() {
    let info = VCpuInfo {
        hart_id: 2,
        harts: 4,
    };
    let mask = |mask, base| HartSet::Mask { mask, base };
    let ipi = |m, base| call_on(&info, 0x73_5049, 0, &[m, base]);
    // Any hart of the VM, the caller or others, by mask and base.
    assert_eq!(ipi(1, 2), SbiAction::Ipi(mask(1, 2)));
    assert_eq!(ipi(0b100, 0), SbiAction::Ipi(mask(0b100, 0)));
    assert_eq!(ipi(0b1011, 0), SbiAction::Ipi(mask(0b1011, 0)));
    assert_eq!(ipi(0b11, 2), SbiAction::Ipi(mask(0b11, 2)));
    // Base -1: every hart, the mask ignored.
    assert_eq!(ipi(0, u64::MAX), SbiAction::Ipi(HartSet::All));
    assert_eq!(ipi(0xdead, u64::MAX), SbiAction::Ipi(HartSet::All));
    // Nobody: valid, nothing happens.
    assert_eq!(ipi(0, 0), SbiAction::Ipi(mask(0, 0)));
    // A hart the VM does not have.
    assert_eq!(ipi(0b1_0000, 0), err(sbi::ERR_INVALID_PARAM));
    assert_eq!(ipi(0b11, 3), err(sbi::ERR_INVALID_PARAM));
    assert_eq!(ipi(1, 4), err(sbi::ERR_INVALID_PARAM));
    assert_eq!(ipi(1, 100), err(sbi::ERR_INVALID_PARAM));
    assert_eq!(ipi(2, u64::MAX - 1), err(sbi::ERR_INVALID_PARAM));
    assert_eq!(
        call_on(&info, 0x73_5049, 1, &[1, 2]),
        err(sbi::ERR_NOT_SUPPORTED)
    );
    let rf = |fid, m, base| call_on(&info, 0x5246_4E43, fid, &[m, base, 0x1000, 0x2000, 7]);
    let fence = |fence, harts| SbiAction::Fence { fence, harts };
    assert_eq!(rf(0, 1, 2), fence(Fence::Icache, mask(1, 2)));
    assert_eq!(rf(0, 0b1111, 0), fence(Fence::Icache, mask(0b1111, 0)));
    assert_eq!(rf(1, 0, u64::MAX), fence(Fence::Vma, HartSet::All));
    assert_eq!(rf(2, 4, 0), fence(Fence::Vma, mask(4, 0)));
    assert_eq!(rf(1, 0, 0), fence(Fence::Vma, mask(0, 0)));
    assert_eq!(rf(1, 0b10000, 0), err(sbi::ERR_INVALID_PARAM));
    assert_eq!(rf(2, 1, 9), err(sbi::ERR_INVALID_PARAM));
    // The hypervisor-extension fences: our guests have no H extension.
    for fid in 3..=7 {
        assert_eq!(rf(fid, 1, 2), err(sbi::ERR_NOT_SUPPORTED));
    }
    assert_eq!(Fence::Icache.bits(), crate::harts::fence::ICACHE);
    assert_eq!(Fence::Vma.bits(), crate::harts::fence::VVMA);
    // A VM of one hart: only hart 0 exists.
    assert_eq!(call(0x73_5049, 0, &[1, 0]), SbiAction::Ipi(mask(1, 0)));
    assert_eq!(call(0x73_5049, 0, &[2, 0]), err(sbi::ERR_INVALID_PARAM));
}

#[test]
fn sbi_hypercalls() {
    assert_eq!(
        call(0x0A00_08B5, 0x101, &[1, 2, 3, 4, 5, 6]),
        SbiAction::Exit {
            exit: VmExit::Hypercall { nr: 0x101 },
            ret: RetKind::Value
        }
    );
}

#[test]
fn hart_suspend_supports_no_type() {
    for t in [
        0,
        0x8000_0000,
        0x1000_0000,
        0x7fff_ffff,
        0x9000_0000,
        0xffff_ffff,
    ] {
        assert_eq!(call(0x48_534D, 3, &[t]), err(-2i64 as u64), "{t:#x}");
    }
    for t in [1, 0x0fff_ffff, 0x8000_0001, 0x8fff_ffff, 0x1_0000_0000] {
        assert_eq!(call(0x48_534D, 3, &[t]), err(-3i64 as u64), "{t:#x}");
    }
}

#[test]
fn unknown_sbi_calls_are_not_supported() {
    for (eid, fid) in [
        (0x03, 0),
        (0x04, 0),
        (0x05, 0),
        (0x09, 0),
        (0x4442_434E, 9),
        (0x4442_434E, 3),
        (0x5043_4E54, 0),
        (0x0A00_0000, 0),
        (0x08B5_0000, 0), // where axvisor's extension was, in the experimental space
        (0x0A00_08B4, 0),
        (u64::MAX, u64::MAX),
    ] {
        assert_eq!(call(eid, fid, &[]), err(-2i64 as u64), "{eid:#x}/{fid}");
    }
}

/// xorshift64*, for inputs the decoders must survive.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn never_panics() {
    for insn in 0..=u16::MAX as u32 {
        let _ = decode_raw(insn);
        let _ = decode_transformed(insn as u64);
    }
    let mut s = 0x9e37_79b9_7f4a_7c15;
    let interesting = [0, 10, 20, 21, 22, 23, u64::MAX, 1 << 63];
    for i in 0..200_000 {
        let mut regs = [0u64; 32];
        for r in regs.iter_mut() {
            *r = next(&mut s);
        }
        if i % 2 == 0 {
            // Mostly real extension ids.
            regs[17] = [
                0,
                1,
                2,
                8,
                0x10,
                0x5449_4D45,
                0x73_5049,
                0x5246_4E43,
                0x48_534D,
                0x4442_434E,
            ][(next(&mut s) % 10) as usize];
            regs[16] = next(&mut s) % 8;
        }
        let scause = if i % 3 == 0 {
            interesting[(next(&mut s) % 8) as usize]
        } else {
            next(&mut s)
        };
        let fetched = next(&mut s) as u32;
        let info = VCpuInfo {
            hart_id: next(&mut s) % 4,
            harts: (next(&mut s) % 70) as usize,
        };
        let _ = decode_trap(
            &trap(
                scause,
                next(&mut s),
                next(&mut s),
                next(&mut s) & if i % 2 == 0 { 0xffff_ffff } else { u64::MAX },
            ),
            &regs,
            &info,
            || Some(fetched),
        );
        let _ = decode_raw(fetched);
        let _ = load_value(
            AccessWidth::ALL[(fetched & 3) as usize],
            i % 2 == 0,
            fetched as u64,
        );
    }
}

#[test]
fn access_faults_go_back_to_the_guest() {
    for cause in [
        cause::INSN_ACCESS_FAULT,
        cause::LOAD_ACCESS_FAULT,
        cause::STORE_ACCESS_FAULT,
    ] {
        let t = trap(cause, 0x8000_1234, 0, 0);
        assert_eq!(
            decode_trap(&t, &[0; 32], &INFO, || None),
            TrapAction::Inject {
                cause,
                tval: 0x8000_1234
            }
        );
    }
}
