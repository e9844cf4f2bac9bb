use super::*;
use std::format;

#[test]
fn reasons_have_names() {
    assert_eq!(ExitReason::of(48).name(), Some("EPT violation"));
    assert_eq!(
        ExitReason::of(ENTRY_FAILURE | 33),
        ExitReason::INVALID_GUEST_STATE
    );
    assert_eq!(ExitReason(35).name(), None, "35 is not defined");
    assert_eq!(format!("{}", ExitReason::XSETBV), "XSETBV (exit reason 55)");
    assert_eq!(format!("{}", ExitReason(200)), "exit reason 200");
    // Every defined number maps back to its constant.
    for n in 0..=u16::MAX {
        if let Some(name) = ExitReason(n).name() {
            assert!(n <= 69, "{n} {name}");
        }
    }
}

#[test]
fn io_qualification() {
    // `out dx, al` to 0x3f8: size 0, OUT, DX.
    assert_eq!(
        IoQual::decode(0x03f8_0000),
        Some(IoQual {
            port: 0x3f8,
            size: 1,
            input: false,
            string: false,
            rep: false
        })
    );
    // `in eax, 0x71` (immediate): size 3, IN, bit 6.
    assert_eq!(
        IoQual::decode(0x0071_0000 | 3 | 8 | 0x40),
        Some(IoQual {
            port: 0x71,
            size: 4,
            input: true,
            string: false,
            rep: false
        })
    );
    // `rep outsw` to 0x1f0.
    assert_eq!(
        IoQual::decode(0x01f0_0000 | 1 | 0x10 | 0x20),
        Some(IoQual {
            port: 0x1f0,
            size: 2,
            input: false,
            string: true,
            rep: true
        })
    );
    assert_eq!(IoQual::decode(2), None);
    assert_eq!(IoQual::decode(7), None);
}

#[test]
fn cr_access_qualification() {
    // mov cr4, rbx (to CR4 from RBX = 3).
    assert_eq!(CrAccess::decode(0x304), CrAccess::Write { cr: 4, gpr: 3 });
    // mov r12, cr3.
    assert_eq!(CrAccess::decode(0xc13), CrAccess::Read { cr: 3, gpr: 12 });
    assert_eq!(CrAccess::decode(0x20), CrAccess::Clts);
    assert_eq!(CrAccess::decode(0x0031_0030), CrAccess::Lmsw(0x31));
}

#[test]
fn ept_violation_qualification() {
    // A write to a page with no access, through a linear address.
    let v = EptViolation::decode(0x182);
    assert!(v.write && !v.read && !v.fetch && v.linear_valid && v.translated);
    assert!(v.is_data_access());
    // A read during the guest's own page walk is not MMIO.
    let walk = EptViolation::decode(0x81);
    assert!(walk.read && !walk.translated && !walk.is_data_access());
    // An instruction fetch is not MMIO.
    assert!(!EptViolation::decode(0x184).is_data_access());
    // Allowed bits 5:3.
    assert_eq!(EptViolation::decode(0x2a).allowed, 0b101);
}

#[test]
fn instruction_errors_and_entry_failures() {
    assert_eq!(
        vm_instruction_error(7),
        Some("VM entry with invalid control field(s)")
    );
    assert_eq!(
        vm_instruction_error(8),
        Some("VM entry with invalid host-state field(s)")
    );
    assert_eq!(vm_instruction_error(14), None);
    assert_eq!(vm_instruction_error(0), None);
    assert_eq!(
        entry_failure_detail(ExitReason::INVALID_GUEST_STATE, 4),
        "the VMCS link pointer"
    );
    assert_eq!(
        entry_failure_detail(ExitReason::MSR_LOADING, 2),
        "an MSR in the VM-entry MSR-load area"
    );
}

#[test]
fn event_encoding() {
    assert_eq!(event::exception(vector::UD, false), 0x8000_0306);
    assert_eq!(event::exception(vector::GP, true), 0x8000_0b0d);
    assert_eq!(event::vector(0x8000_0020), Some(0x20));
    assert_eq!(event::vector(0x20), None);
}

#[test]
fn string_io_steps() {
    // outsb, forward, no REP: RSI + 1, done.
    assert_eq!(
        string_step(0x1000, 7, 1, false, false, 8),
        (0x1001, 7, true)
    );
    // rep outsw, forward: RSI + 2, RCX - 1, not done until RCX reaches 0.
    assert_eq!(
        string_step(0x1000, 3, 2, false, true, 8),
        (0x1002, 2, false)
    );
    assert_eq!(string_step(0x1002, 1, 2, false, true, 8), (0x1004, 0, true));
    // std; rep insd: RDI - 4.
    assert_eq!(string_step(0x1000, 2, 4, true, true, 8), (0xffc, 1, false));
    // 32-bit address size: the registers wrap at 4 GiB and lose their upper halves.
    assert_eq!(
        string_step(0xffff_ffff, 0x1_0000_0001, 1, false, true, 4),
        (0, 0, true)
    );
    // 16-bit: the upper bits stay.
    assert_eq!(
        string_step(0xabcd_ffff, 0x5555_0001, 1, false, true, 2),
        (0xabcd_0000, 0x5555_0000, true)
    );
    assert!(string_count_zero(0x1_0000_0000, 4));
    assert!(!string_count_zero(0x1_0000_0000, 8));
    assert_eq!(string_address_size(2 << 7), Some(8));
    assert_eq!(string_address_size(1 << 7), Some(4));
    assert_eq!(string_address_size(3 << 7), None);
}

#[test]
fn injection_encodings() {
    assert_eq!(event::external(0x30), 0x8000_0030);
    assert_eq!(event::nmi(), 0x8000_0202);
    assert_eq!(event::kind(event::nmi()), event::NMI);
    assert_eq!(
        event::kind(event::exception(vector::GP, true)),
        event::HARDWARE_EXCEPTION
    );
}

#[test]
fn interrupted_deliveries_are_reinjected() {
    assert_eq!(event::reinjection(0x0000_0030), None, "not valid");
    // An external interrupt whose delivery hit an EPT violation on the guest's stack:
    // the same event, no error code, no length.
    let r = event::reinjection(0x8000_0030).unwrap();
    assert_eq!(
        (r.info, r.error_code, r.instruction_len),
        (0x8000_0030, false, false)
    );
    // A #PF with its error code; bit 12 (NMI unblocking) is not part of the entry field.
    let r = event::reinjection(0x8000_1b0e).unwrap();
    assert_eq!(
        (r.info, r.error_code, r.instruction_len),
        (0x8000_0b0e, true, false)
    );
    // INT 0x80 and INT3 need the instruction's length.
    assert!(event::reinjection(0x8000_0480).unwrap().instruction_len);
    assert!(event::reinjection(0x8000_0603).unwrap().instruction_len);
    assert!(!event::reinjection(event::nmi()).unwrap().instruction_len);
}

#[test]
fn what_the_guest_can_take() {
    use crate::pc::Ready;
    use interruptibility as ib;
    let both = Ready {
        irq: true,
        nmi: true,
    };
    assert_eq!(ready(true, 0, false), both);
    assert_eq!(
        ready(false, 0, false),
        Ready {
            irq: false,
            nmi: true
        },
        "IF clear: NMI only"
    );
    assert_eq!(
        ready(true, ib::NMI, false),
        Ready {
            irq: true,
            nmi: false
        },
        "NMI handler"
    );
    // A shadow or an event already going in blocks both.
    for (intr, injecting) in [(ib::STI, false), (ib::MOV_SS, false), (0, true)] {
        assert_eq!(ready(true, intr, injecting), Ready::default());
    }
    // Whatever the state, what is ready passes VM entry's checks: never with a shadow or
    // another event, an interrupt never with IF clear.
    for bits in 0..64u32 {
        let (iflag, intr, injecting) = (bits & 1 != 0, (bits >> 1) & 0xf, bits & 32 != 0);
        let r = ready(iflag, intr, injecting);
        if r.irq || r.nmi {
            assert!(!injecting && intr & (ib::STI | ib::MOV_SS) == 0);
        }
        assert!(!r.irq || iflag);
        assert!(!r.nmi || intr & ib::NMI == 0);
    }
}

#[test]
fn second_stage_fault_access() {
    use axaddrspace::MappingFlags;
    assert_eq!(fault_access(true, false), MappingFlags::EXECUTE);
    // A fetch never writes; the fetch bit wins if both are reported.
    assert_eq!(fault_access(true, true), MappingFlags::EXECUTE);
    assert_eq!(fault_access(false, true), MappingFlags::WRITE);
    assert_eq!(fault_access(false, false), MappingFlags::READ);
}
