//! The VMX capability MSRs and the VMCS controls computed from them (`x86_vcpu::caps`),
//! and the VM-entry checks that name a failing field (`x86_vcpu::check`): any values the
//! CPU (or an emulator, or a hypervisor below) reports.
//!
//! The first byte chooses between raw MSR values and values made consistent (allowed
//! 1-settings include the allowed 0-settings, sometimes every required control and EPT/VPID
//! capability too), so that both the refusals and the computed controls are reached.
//!
//! Checked: only the MSRs that exist are read (the TRUE ones only when IA32_VMX_BASIC bit
//! 55 says so, the secondary controls and EPT/VPID capabilities only when secondary
//! controls may be activated); computed controls set every bit the CPU requires, no bit it
//! does not allow, every required control, and an optional one exactly when allowed (and
//! `check::controls` agrees); a refusal names a required control the CPU does not allow
//! (the first one), a missing EPT/VPID capability, a region larger than 4 KiB, or a field
//! whose MSR requires a bit it does not allow; CR0/CR4 fixed bits, when consistent, make
//! any value acceptable; the entry checks never panic.

use std::cell::RefCell;

use axvisor_fuzz::Input;
use x86_vcpu::caps::{
    msr, CapsError, ControlField, Controls, VmxCaps, BASIC_TRUE_CTLS, OPTIONAL, REQUIRED,
    REQUIRED_EPT_VPID,
};
use x86_vcpu::check::{self, GuestState, HostState};

const FIELDS: [ControlField; 5] = [
    ControlField::PinBased,
    ControlField::PrimaryProcBased,
    ControlField::SecondaryProcBased,
    ControlField::Exit,
    ControlField::Entry,
];

/// The capability MSR (plain and TRUE) of a control field.
fn field_msrs(field: ControlField) -> [u32; 2] {
    match field {
        ControlField::PinBased => [
            msr::IA32_VMX_PINBASED_CTLS,
            msr::IA32_VMX_TRUE_PINBASED_CTLS,
        ],
        ControlField::PrimaryProcBased => [
            msr::IA32_VMX_PROCBASED_CTLS,
            msr::IA32_VMX_TRUE_PROCBASED_CTLS,
        ],
        ControlField::SecondaryProcBased => [msr::IA32_VMX_PROCBASED_CTLS2; 2],
        ControlField::Exit => [msr::IA32_VMX_EXIT_CTLS, msr::IA32_VMX_TRUE_EXIT_CTLS],
        ControlField::Entry => [msr::IA32_VMX_ENTRY_CTLS, msr::IA32_VMX_TRUE_ENTRY_CTLS],
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let shape = input.u8();
    // Every MSR in 0x480..=0x490 gets a value.
    let mut values = [0u64; 17];
    for v in &mut values {
        *v = input.u64();
    }
    if shape & 1 != 0 {
        // Consistent control MSRs: what must be 1 may be 1.
        for field in FIELDS {
            for m in field_msrs(field) {
                let v = &mut values[(m - 0x480) as usize];
                *v |= (*v & 0xffff_ffff) << 32;
            }
        }
        if shape & 2 != 0 {
            // Every required control allowed, and the EPT/VPID capabilities.
            for r in REQUIRED {
                for m in field_msrs(r.field) {
                    values[(m - 0x480) as usize] |= u64::from(r.mask()) << 32;
                }
            }
            for &(bit, _) in REQUIRED_EPT_VPID {
                values[(msr::IA32_VMX_EPT_VPID_CAP - 0x480) as usize] |= 1 << bit;
            }
            // A region size the CPU may have (at most 4 KiB), most of the time.
            if shape & 4 != 0 {
                let basic = &mut values[0];
                *basic = (*basic & !(0x1fff << 32)) | ((*basic >> 32) & 0xfff) << 32;
            }
        }
    }

    let read = RefCell::new(Vec::new());
    let caps = VmxCaps::read(|m| {
        read.borrow_mut().push(m);
        assert!((0x480..=0x490).contains(&m), "read MSR {m:#x}");
        values[(m - 0x480) as usize]
    });
    let read = read.into_inner();
    let true_ctls = caps.basic & BASIC_TRUE_CTLS != 0;
    for m in &read {
        let is_true =
            (msr::IA32_VMX_TRUE_PINBASED_CTLS..=msr::IA32_VMX_TRUE_ENTRY_CTLS).contains(m);
        let is_plain_ctls = (msr::IA32_VMX_PINBASED_CTLS..=msr::IA32_VMX_ENTRY_CTLS).contains(m);
        assert!(!is_true || true_ctls, "read {m:#x} without TRUE controls");
        assert!(
            !is_plain_ctls || !true_ctls,
            "read {m:#x} with TRUE controls"
        );
    }
    let secondary = caps.proc >> 32 & (1 << 31) != 0;
    for m in [msr::IA32_VMX_PROCBASED_CTLS2, msr::IA32_VMX_EPT_VPID_CAP] {
        assert_eq!(read.contains(&m), secondary, "read {m:#x}: {secondary}");
    }
    let _ = (caps.revision_id(), caps.preemption_timer_shift());

    match Controls::compute(&caps) {
        Ok(c) => {
            assert!(caps.region_size() <= 0x1000);
            for field in FIELDS {
                let cap = match field {
                    ControlField::PinBased => caps.pin,
                    ControlField::PrimaryProcBased => caps.proc,
                    ControlField::SecondaryProcBased => caps.proc2,
                    ControlField::Exit => caps.exit,
                    ControlField::Entry => caps.entry,
                };
                let (must, may) = (cap as u32, (cap >> 32) as u32);
                let v = c.field(field);
                assert_eq!(v & must, must, "{field}: {v:#x} lacks required {must:#x}");
                assert_eq!(v & !may, 0, "{field}: {v:#x} outside allowed {may:#x}");
            }
            for r in REQUIRED {
                assert!(c.has(*r), "{r} missing");
            }
            for o in OPTIONAL {
                assert_eq!(c.has(*o), caps.allows(*o) || caps.forces(*o), "{o}");
            }
            for &(bit, name) in REQUIRED_EPT_VPID {
                assert_ne!(caps.ept_vpid & (1 << bit), 0, "{name}");
            }
            assert_eq!(check::controls(&c, &caps), None);
        }
        Err(e) => {
            let _ = e.to_string();
            match e {
                CapsError::Unsupported(r) => {
                    assert!(REQUIRED.contains(&r), "{r} is not required");
                    assert!(!caps.allows(r), "{r} is allowed");
                    let first = REQUIRED.iter().find(|r| !caps.allows(**r));
                    assert_eq!(first, Some(&r), "not the first refusal");
                }
                CapsError::EptVpid { bit, .. } => {
                    assert_eq!(caps.ept_vpid & (1 << bit), 0, "bit {bit} is there");
                    assert!(REQUIRED.iter().all(|r| caps.allows(*r)));
                }
                CapsError::RegionSize(n) => {
                    assert!(n > 0x1000);
                    assert_eq!(n, caps.region_size());
                }
                CapsError::Contradictory { field, bits } => {
                    let cap = match field {
                        ControlField::PinBased => caps.pin,
                        ControlField::PrimaryProcBased => caps.proc,
                        ControlField::SecondaryProcBased => caps.proc2,
                        ControlField::Exit => caps.exit,
                        ControlField::Entry => caps.entry,
                    };
                    assert_ne!(bits, 0);
                    assert_eq!(bits, cap as u32 & !((cap >> 32) as u32), "{field}");
                }
            }
        }
    }

    // CR0/CR4 fixed bits.
    let value = input.u64();
    for fixed in [caps.cr0_fixed(), caps.cr4_fixed()] {
        let applied = fixed.apply(value);
        if fixed.must_be_1 & !fixed.may_be_1 == 0 {
            assert!(
                fixed.accepts(applied),
                "{fixed:?}: {value:#x} -> {applied:#x}"
            );
            assert_eq!(fixed.apply(applied), applied);
        }
    }

    // The entry checks, on any state.
    let guest = GuestState {
        cr0: input.u64(),
        cr4: input.u64(),
        efer: input.u64(),
        pat: input.u64(),
        dr7: input.u64(),
        rip: input.u64(),
        rflags: input.u64(),
        cs_ar: input.u32(),
        ss_ar: input.u32(),
        tr_ar: input.u32(),
        tr_selector: input.u16(),
        activity: input.u32(),
        link_pointer: input.u64(),
        ia32e: input.bool(),
        unrestricted: input.bool(),
        interruptibility: input.u32(),
        entry_event: input.u32(),
    };
    let host = HostState {
        cr0: input.u64(),
        cr4: input.u64(),
        efer: input.u64(),
        selectors: std::array::from_fn(|_| input.u16()),
        addresses: std::array::from_fn(|_| input.u64()),
    };
    let _ = check::guest(&guest, &caps);
    let _ = check::host(&host, &caps);
}
