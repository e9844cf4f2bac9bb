use super::*;
use std::boxed::Box;

#[test]
fn save_area_offsets() {
    // The save area starts at 0x400; a few fields every world switch touches.
    assert_eq!(save::ES, 0x400);
    assert_eq!(save::TR, 0x490);
    assert_eq!(save::EFER, 0x4d0);
    assert_eq!(save::RIP, 0x578);
    assert_eq!(save::RSP, 0x5d8);
    assert_eq!(save::RAX, 0x5f8);
    assert_eq!(save::G_PAT, 0x668);
    assert_eq!(ctl::EXIT_CODE, 0x70);
    assert_eq!(ctl::N_CR3, 0xb0);
}

#[test]
fn intercepts_include_vmrun() {
    // VMRUN with its own intercept clear fails the consistency checks.
    assert_ne!(INTERCEPT4 & i4::VMRUN, 0);
    assert_ne!(INTERCEPT3 & i3::IOIO_PROT, 0);
    assert_ne!(INTERCEPT3 & i3::MSR_PROT, 0);
    assert_ne!(INTERCEPT3 & i3::SHUTDOWN, 0);
}

#[test]
fn exit_codes() {
    assert_eq!(ExitCode::exception(6), ExitCode(0x46));
    assert_eq!(ExitCode(0x46).exception_vector(), Some(6));
    assert_eq!(ExitCode::NPF.exception_vector(), None);
    assert_eq!(ExitCode::INVALID.name(), "VMEXIT_INVALID");
    assert_eq!(ExitCode(0x7f).name(), "shutdown");
}

#[test]
fn ioio_exitinfo1() {
    // OUT DX, AL to 0x3f8: port, size 1 (bit 4), 16/32/64-bit address size bits.
    let out = IoInfo::decode(0x03f8_0000 | 1 << 4 | 1 << 9).unwrap();
    assert_eq!(
        out,
        IoInfo {
            port: 0x3f8,
            size: 1,
            input: false,
            string: false,
            rep: false,
            addr_size: Some(8)
        }
    );
    // REP INSD, 32-bit addresses.
    let ins = IoInfo::decode(0x0060_0000 | 1 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 8).unwrap();
    assert!(ins.input && ins.string && ins.rep);
    assert_eq!((ins.port, ins.size, ins.addr_size), (0x60, 4, Some(4)));
    assert!(IoInfo::decode(0).is_none(), "no size bit");
    assert!(IoInfo::decode(3 << 4).is_none(), "two size bits");
}

#[test]
fn npf_exitinfo1() {
    let w = NpfInfo::decode(1 << 32 | 0b110);
    assert!(w.write && !w.fetch && !w.present && w.is_data_access());
    assert!(!NpfInfo::decode(1 << 32 | 1 << 4).is_data_access(), "fetch");
    assert!(!NpfInfo::decode(1 << 33 | 1).is_data_access(), "guest walk");
}

#[test]
fn event_injection() {
    assert_eq!(event::exception(6, None), 0x8000_0306);
    assert_eq!(event::exception(13, Some(0)), 0x8000_0b0d);
    assert_eq!(event::exception(14, Some(2)), 0x2_8000_0b0e);
}

#[test]
fn segment_attributes() {
    // The entry contract's 64-bit code (L, P, DPL 0, type 0xb), data and busy TSS.
    assert_eq!(attributes(crate::entry::CODE_ACCESS_RIGHTS), 0xa9b);
    assert_eq!(attributes(crate::entry::DATA_ACCESS_RIGHTS), 0xc93);
    assert_eq!(attributes(crate::entry::TSS_ACCESS_RIGHTS), 0x08b);
    assert_eq!(attributes(crate::entry::UNUSABLE), 0);
}

#[test]
fn instruction_lengths() {
    assert_eq!(insn_len(&[0x0f, 0xa2, 0x90], opcode::CPUID, true), Some(2));
    assert_eq!(insn_len(&[0xf4], opcode::HLT, true), Some(1));
    assert_eq!(
        insn_len(&[0x0f, 0x01, 0xd9], opcode::VMMCALL, true),
        Some(3)
    );
    // Prefixes count; REX only in 64-bit code.
    assert_eq!(
        insn_len(&[0x66, 0x48, 0x0f, 0x30], opcode::WRMSR, true),
        Some(4)
    );
    assert_eq!(insn_len(&[0x48, 0x0f, 0x30], opcode::WRMSR, false), None);
    assert_eq!(insn_len(&[0x0f, 0x01, 0xc1], opcode::VMMCALL, true), None);
    assert_eq!(insn_len(&[0x0f, 0x01, 0xc1], opcode::VMCALL, true), Some(3));
    assert_eq!(insn_len(&[0x66; 15], opcode::HLT, true), None);
    assert_eq!(insn_len(&[], opcode::HLT, true), None);
}

#[test]
fn msr_permission_map() {
    let m = Box::new(MsrPermissionMap::new());
    use crate::msr::nr;
    assert!(!m.intercepts(nr::IA32_FS_BASE, false) && !m.intercepts(nr::IA32_FS_BASE, true));
    assert!(!m.intercepts(nr::IA32_TSC, false) && m.intercepts(nr::IA32_TSC, true));
    assert!(m.intercepts(nr::IA32_EFER, false) && m.intercepts(nr::IA32_EFER, true));
    // Address MSRs: reads direct, writes checked for canonical values.
    assert!(!m.intercepts(nr::IA32_LSTAR, false) && m.intercepts(nr::IA32_LSTAR, true));
    assert!(!m.intercepts(nr::IA32_STAR, true));
    assert!(canonical(0xffff_8000_0000_0000) && canonical(0x7fff_ffff_ffff));
    assert!(!canonical(0x7268_33fd_4894_dbe8) && !canonical(0x8000_0000_0000));
    assert!(m.intercepts(0xc001_0114, false), "VM_CR");
    assert!(m.intercepts(0x4000_0000, false), "outside the ranges");
    // Bit positions: MSR 0x10 read is bit 32 of the first range, write bit 33.
    assert_eq!(m.0[4] & 0b11, 0b10);
    // LSTAR (0xC000_0082) is at 0x800 + 0x82 * 2 / 8, bits 4 (read) and 5 (write).
    assert_eq!(m.0[0x800 + 0x82 * 2 / 8] >> 4 & 0b11, 0b10);
}

#[test]
fn cr0_writes() {
    assert_eq!(
        CrWrite::decode(&[0x0f, 0x22, 0xc0], true),
        Some(CrWrite::Mov {
            cr: 0,
            gpr: 0,
            len: 3
        })
    );
    // REX.B: mov cr0, r9.
    assert_eq!(
        CrWrite::decode(&[0x41, 0x0f, 0x22, 0xc1], true),
        Some(CrWrite::Mov {
            cr: 0,
            gpr: 9,
            len: 4
        })
    );
    // mov cr4, rax and (REX.R) mov cr8, rax.
    assert_eq!(
        CrWrite::decode(&[0x0f, 0x22, 0xe0], true),
        Some(CrWrite::Mov {
            cr: 4,
            gpr: 0,
            len: 3
        })
    );
    assert_eq!(
        CrWrite::decode(&[0x44, 0x0f, 0x22, 0xc0], true),
        Some(CrWrite::Mov {
            cr: 8,
            gpr: 0,
            len: 4
        })
    );
    assert_eq!(
        CrWrite::decode(&[0x0f, 0x06], true),
        Some(CrWrite::Clts { len: 2 })
    );
    // lmsw ax; lmsw [rax] is not decoded.
    assert_eq!(
        CrWrite::decode(&[0x0f, 0x01, 0xf0], true),
        Some(CrWrite::Lmsw { gpr: 0, len: 3 })
    );
    assert_eq!(CrWrite::decode(&[0x0f, 0x01, 0x30], true), None);
}

#[test]
fn cr4_writes() {
    let allowed = cr4_allowed(1 << 26, 0, 0);
    assert_eq!(allowed, 0x7ff | 1 << 18);
    let cr4 = crate::entry::CR4;
    assert!(cr4_write_ok(
        cr4,
        cr4 | 1 << 18 | 1 << 9,
        allowed,
        true,
        0x2000
    ));
    assert!(
        !cr4_write_ok(cr4, cr4 | 1 << 13, allowed, true, 0x2000),
        "VMXE"
    );
    assert!(
        !cr4_write_ok(cr4, cr4 | 1 << 40, allowed, true, 0x2000),
        "high bit"
    );
    assert!(
        !cr4_write_ok(cr4, 0, allowed, true, 0x2000),
        "PAE cleared in long mode"
    );
    let all = cr4_allowed(u32::MAX, u32::MAX, u32::MAX);
    assert!(
        !cr4_write_ok(cr4, cr4 | 1 << 12, all, true, 0x2000),
        "LA57 in long mode"
    );
    assert!(
        !cr4_write_ok(cr4, cr4 | 1 << 17, all, true, 0x2001),
        "PCIDE with PCID"
    );
    assert!(cr4_write_ok(cr4, cr4 | 1 << 17, all, true, 0x2000));
    assert!(
        !cr4_write_ok(0, 1 << 17, all, false, 0),
        "PCIDE outside long mode"
    );
    assert!(
        cr4_write_ok(0, 1 << 5, all, false, 0),
        "PAE outside long mode"
    );
}

#[test]
fn event_and_window_encodings() {
    // EVENTINJ: vector 7:0, type 10:8 (0 external interrupt, 2 NMI), valid 31.
    assert_eq!(event::interrupt(0x30), 0x8000_0030);
    assert_eq!(event::nmi(), 0x8000_0202);
    // V_IRQ (8), priority 0xF (19:16), V_IGN_TPR (20); V_INTR_MASKING is bit 24.
    assert_eq!(V_IRQ_WINDOW, 0x001F_0100);
    assert_eq!(V_IRQ_WINDOW & V_INTR_MASKING, 0);
    assert_eq!(ExitCode::VINTR.name(), "VINTR");
    assert_eq!((i3::VINTR, i3::IRET), (1 << 4, 1 << 20));
    // The state after INIT: present accessed code and data segments, a busy TSS.
    assert_eq!(
        (REAL_CODE, REAL_DATA, REAL_TSS, REAL_LDT),
        (0x9b, 0x93, 0x8b, 0x82)
    );
}
