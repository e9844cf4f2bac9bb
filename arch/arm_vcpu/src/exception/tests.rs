use super::*;

/// AArch32 user mode (M = 0b10000), A32.
const USR: u64 = 0x10;
/// AArch32 user mode in T32 state.
const USR_T32: u64 = USR | SPSR_T;

/// An AArch32 PSTATE with ITSTATE `it`.
fn with_it(spsr: u64, it: u64) -> u64 {
    spsr | ((it & 0xfc) << 8) | ((it & 0x3) << 25)
}

#[test]
fn vector_per_source_state() {
    assert_eq!(vector_offset(0x3c4), 0x000); // EL1t
    assert_eq!(vector_offset(0x3c5), 0x200); // EL1h
    assert_eq!(vector_offset(0x000), 0x400); // EL0t, AArch64
    assert_eq!(vector_offset(USR), 0x600);
    assert_eq!(vector_offset(USR_T32 | (1 << 31)), 0x600);
}

#[test]
fn el0_sources() {
    assert!(from_el0(0x000));
    assert!(from_el0(0x3c0));
    assert!(from_el0(USR));
    assert!(from_el0(USR_T32));
    assert!(!from_el0(0x3c4));
    assert!(!from_el0(0x3c5));
}

#[test]
fn entry_pstate_masks_and_pan() {
    let none = EntryFeatures::default();
    assert_eq!(entry_pstate(USR_T32, 0, none), SPSR_EL1H_MASKED);
    // SS (21), IL (20), UAO (23), BTYPE (11:10) of the source never survive.
    assert_eq!(
        entry_pstate((1 << 21) | (1 << 20) | (1 << 23) | (3 << 10), 0, none),
        SPSR_EL1H_MASKED
    );
    let pan = EntryFeatures {
        pan: true,
        ..EntryFeatures::default()
    };
    // SPAN = 0: PAN set.
    assert_eq!(entry_pstate(USR, 0, pan), SPSR_EL1H_MASKED | SPSR_PAN);
    // SPAN = 1: PAN kept from the source.
    assert_eq!(entry_pstate(USR, SCTLR_SPAN, pan), SPSR_EL1H_MASKED);
    assert_eq!(
        entry_pstate(USR | SPSR_PAN, SCTLR_SPAN, pan),
        SPSR_EL1H_MASKED | SPSR_PAN
    );
}

#[test]
fn entry_pstate_ssbs_and_dit() {
    let all = EntryFeatures::from_id_registers(1 << 48, 2 << 4, 1 << 20);
    assert_eq!(
        all,
        EntryFeatures {
            pan: true,
            ssbs: true,
            dit: true
        }
    );
    let base = SPSR_EL1H_MASKED | SPSR_PAN;
    assert_eq!(entry_pstate(0, SCTLR_DSSBS, all), base | SPSR_SSBS);
    // DIT is bit 24 in both SPSR formats; bit 21 is SS (an AArch32 EL0 being stepped),
    // which never survives.
    assert_eq!(entry_pstate(USR | SPSR_DIT, 0, all), base | SPSR_DIT);
    assert_eq!(entry_pstate(SPSR_DIT, 0, all), base | SPSR_DIT);
    assert_eq!(entry_pstate(USR | SPSR_SS, 0, all), base);
}

#[test]
fn instruction_length_from_il() {
    assert_eq!(insn_len(ESR_IL | (0x24 << 26)), 4);
    assert_eq!(insn_len(0x24 << 26), 2);
}

#[test]
fn step_aarch64_and_a32() {
    assert_eq!(step(0x4000_1000, 0x3c5, 4), (0x4000_1004, 0x3c5));
    assert_eq!(step(0x4000_1000, USR, 4), (0x4000_1004, USR));
    // Nothing moves for a retried instruction, not even ITSTATE.
    let s = with_it(USR_T32, 0b0000_0110);
    assert_eq!(step(0x1000, s, 0), (0x1000, s));
    // The AArch32 PC wraps at 32 bits.
    assert_eq!(step(0xffff_fffe, USR_T32, 2), (0, USR_T32));
    // A stepped instruction (SS set) completes: SS clears, in either state; a retried one
    // keeps it.
    assert_eq!(step(0x1000, 0x3c5 | SPSR_SS, 4), (0x1004, 0x3c5));
    assert_eq!(step(0x1000, USR_T32 | SPSR_SS, 2), (0x1002, USR_T32));
    assert_eq!(step(0x1000, 0x3c5 | SPSR_SS, 0), (0x1000, 0x3c5 | SPSR_SS));
}

#[test]
fn step_t32_advances_itstate() {
    // ITTE EQ: IT = 0b0000_0110 for EQ (cond 0000), then mask 0110 -> after the first
    // instruction IT = 0000_1100, then 0001_1000 ... the block ends when IT[2:0] is 0.
    // Check ITAdvance directly on three values.
    let s = with_it(USR_T32, 0b0000_0110);
    let (pc, s) = step(0x1000, s, 2);
    assert_eq!(pc, 0x1002);
    assert_eq!(itstate(s), 0b0000_1100);
    let (_, s) = step(pc, s, 4);
    assert_eq!(itstate(s), 0b0001_1000);
    let (_, s) = step(pc, s, 2);
    assert_eq!(itstate(s), 0);
    assert_eq!(s, USR_T32);
    // IT[7:5] (the base condition) is kept: IT GT = 1100_1000, one instruction.
    let s = with_it(USR_T32 | (1 << 31), 0b1100_1000);
    let (_, s) = step(0x1000, s, 2);
    assert_eq!(s, USR_T32 | (1 << 31));
    let s = with_it(USR_T32, 0b1100_0100);
    assert_eq!(itstate(step(0, s, 2).1), 0b1100_1000);
    // A32 has no ITSTATE to advance.
    let s = with_it(USR, 0b0000_0110);
    assert_eq!(step(0, s, 4).1, s);
}

#[test]
fn conditions() {
    let wfi = |cv: bool, cond: u64| (0x01 << 26) | ESR_IL | ((cv as u64) << 24) | (cond << 20);
    let z = 1 << 30;
    // EQ with Z set passes, with Z clear fails; NE the reverse.
    assert!(condition_passed(wfi(true, 0), USR | z));
    assert!(!condition_passed(wfi(true, 0), USR));
    assert!(condition_passed(wfi(true, 1), USR));
    assert!(!condition_passed(wfi(true, 1), USR | z));
    // AL always.
    assert!(condition_passed(wfi(true, 0xe), USR));
    // GE / LT on N == V.
    let n = 1 << 31;
    let v = 1 << 28;
    assert!(condition_passed(wfi(true, 10), USR | n | v));
    assert!(!condition_passed(wfi(true, 10), USR | n));
    assert!(condition_passed(wfi(true, 11), USR | n));
    // HI: C and not Z.
    let c = 1 << 29;
    assert!(condition_passed(wfi(true, 8), USR | c));
    assert!(!condition_passed(wfi(true, 8), USR | c | z));
    // CV = 0 in T32: ITSTATE's condition (EQ here), or none outside an IT block.
    assert!(!condition_passed(
        wfi(false, 0),
        with_it(USR_T32, 0b0000_1000)
    ));
    assert!(condition_passed(
        wfi(false, 0),
        with_it(USR_T32 | z, 0b0000_1000)
    ));
    assert!(condition_passed(wfi(false, 0), USR_T32));
    // AArch64 and classes without a condition always pass.
    assert!(condition_passed(wfi(true, 0), 0x3c5));
    assert!(condition_passed((0x24 << 26) | ESR_CV, USR));
}

#[test]
fn pc_as_transfer_register_is_undecodable() {
    let dabt = |srt: u64| (0x24 << 26) | ESR_IL | (1 << 24) | (2 << 22) | (srt << 16);
    assert_eq!(effective_syndrome(dabt(15), USR) & (1 << 24), 0);
    assert_eq!(effective_syndrome(dabt(14), USR), dabt(14));
    // X15 is an ordinary register in AArch64.
    assert_eq!(effective_syndrome(dabt(15), 0x3c5), dabt(15));
}

/// The steps `decode_sync` asks for follow ESR_EL2.IL: 2 for a 16-bit T32 instruction.
#[test]
fn decode_steps_by_instruction_length() {
    use crate::decode::{decode_sync, SyncAction};
    use axvcpu::VmExit;
    let regs = [0u64; 31];
    let pc_step = |esr: u64| match decode_sync(esr, 0, 0, &regs) {
        SyncAction::Exit { pc_step, .. } | SyncAction::Reply { pc_step, .. } => pc_step,
        other => panic!("{other:?}"),
    };
    // WFI (T32 16-bit, then A32), WFE.
    assert_eq!(pc_step(0x01 << 26), 2);
    assert_eq!(pc_step((0x01 << 26) | ESR_IL), 4);
    assert_eq!(pc_step((0x01 << 26) | 1), 2);
    // A T32 16-bit LDR and STR (ISV, word, SRT 0), and the A32 ones.
    let ldr = (0x24 << 26) | (1 << 24) | (2 << 22);
    assert_eq!(pc_step(ldr), 2);
    assert_eq!(pc_step(ldr | (1 << 6)), 2);
    assert_eq!(pc_step(ldr | ESR_IL), 4);
    assert!(matches!(
        decode_sync(ldr, 0, 0, &regs),
        SyncAction::Exit {
            exit: VmExit::MmioRead { reg: 0, .. },
            ..
        }
    ));
}

/// The abort injected for a 16-bit T32 load from AArch32 EL0: a data abort from a lower EL
/// with IL = 1 (IL is 1 for every data abort without a valid ISS), at + 0x600.
#[test]
fn abort_for_a_t32_load() {
    use crate::decode::injected_abort_esr;
    // ESR_EL2 of `ldr r0, [r1]` (16-bit: IL 0) at an unclaimed address.
    let exit = (0x24 << 26) | (1 << 24) | (2 << 22);
    let esr = injected_abort_esr(exit, from_el0(USR_T32));
    assert_eq!(esr >> 26, 0x24);
    assert_eq!(esr & ESR_IL, ESR_IL);
    assert_eq!(esr & (1 << 24), 0, "no ISS for the guest");
    assert_eq!(esr & 0x3f, 0x10);
    assert_eq!(vector_offset(USR_T32), 0x600);
    // A store keeps WnR.
    let store = injected_abort_esr(exit | (1 << 6), true);
    assert_eq!(store & (1 << 6), 1 << 6);
}

/// Coprocessor accesses the hypervisor might trap from AArch32 EL0 are UNDEFINED.
#[test]
fn trapped_coprocessor_accesses_are_undefined() {
    use crate::decode::{decode_sync, SyncAction};
    for class in [0x03u64, 0x04, 0x05, 0x06, 0x0c] {
        let esr = (class << 26) | ESR_IL | ESR_CV | (0xe << 20);
        assert_eq!(
            decode_sync(esr, 0, 0, &[0; 31]),
            SyncAction::Undefined,
            "EC {class:#x}"
        );
    }
}
