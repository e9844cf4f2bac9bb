//! The x86 exit decoders of `x86_vcpu::exit`: any exit reason, I/O-instruction, CR-access
//! and EPT-violation qualification, VM-exit instruction information, guest RSI/RDI/RCX and
//! RFLAGS.DF, through the qualification decoders and the string I/O steps a guest's
//! INS/OUTS (with or without REP) goes through.
//!
//! Checked: an I/O access is 1, 2 or 4 bytes at the port in bits 31:16, and only the sizes
//! the SDM defines decode; a string address size is 2, 4 or 8 bytes; one string step moves
//! the index register by the element size and RCX by one, wrapping in the address size (a
//! 16-bit step keeps bits 63:16, a 32-bit one clears bits 63:32), and says the instruction
//! is complete exactly when a REP count reaches 0 (always without REP); a REP whose count
//! is 0 in the address size does nothing (`string_count_zero`), and a REP of k elements
//! takes exactly k steps; CR-access registers are 0..15; an EPT violation the vCPU
//! emulates is a data access; an injected exception's information names its vector.

use axvisor_fuzz::Input;
use x86_vcpu::exit::{
    self, entry_failure_detail, event, string_address_size, string_count_zero, string_step,
    CrAccess, EptViolation, ExitReason, IoQual,
};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let reason_field = input.u32();
    let io_q = input.u64();
    let info = input.u32();
    let index = input.u64();
    let rcx = input.u64();
    let flags = input.u8();
    let cr_q = input.u64();
    let ept_q = input.u64();
    let error = input.u32();
    let (df, long) = (flags & 1 != 0, flags & 2 != 0);

    // Exit reasons and VM-instruction errors: names, never a panic.
    let reason = ExitReason::of(reason_field);
    assert_eq!(u32::from(reason.0), reason_field & 0xffff);
    let _ = reason.to_string();
    let _ = reason.name();
    let _ = entry_failure_detail(reason, io_q);
    let _ = exit::vm_instruction_error(error);
    let _ = (reason_field & exit::ENTRY_FAILURE) != 0;

    // Event injection encodings.
    let vector = flags;
    let injected = event::exception(vector, flags & 4 != 0);
    assert_eq!(event::vector(injected), Some(vector));
    assert_eq!((injected >> 8) & 7, event::HARDWARE_EXCEPTION);
    assert_eq!(
        injected & event::DELIVER_ERROR_CODE != 0,
        flags & 4 != 0,
        "error-code bit"
    );
    if let Some(v) = event::vector(error) {
        assert_eq!(v, error as u8);
    }

    // CR access.
    match CrAccess::decode(cr_q) {
        CrAccess::Write { cr, gpr } | CrAccess::Read { cr, gpr } => {
            assert!(cr < 16 && gpr < 16, "CR{cr} <-> register {gpr}");
            assert_eq!(u64::from(cr), cr_q & 0xf);
            assert_eq!(u64::from(gpr), (cr_q >> 8) & 0xf);
        }
        CrAccess::Clts => assert_eq!((cr_q >> 4) & 3, 2),
        CrAccess::Lmsw(v) => {
            assert_eq!((cr_q >> 4) & 3, 3);
            assert_eq!(u64::from(v), (cr_q >> 16) & 0xffff);
        }
    }

    // EPT violation.
    let v = EptViolation::decode(ept_q);
    assert!(v.allowed < 8);
    assert!(!v.translated || v.linear_valid);
    if v.is_data_access() {
        assert!(!v.fetch && (v.read || v.write), "{v:?} emulated");
    }

    // I/O instructions.
    let io = IoQual::decode(io_q);
    let defined = matches!(io_q & 7, 0 | 1 | 3);
    assert_eq!(io.is_some(), defined, "size encoding {}", io_q & 7);
    let Some(io) = io else {
        return;
    };
    assert!(matches!(io.size, 1 | 2 | 4), "{io:?}");
    assert_eq!(u64::from(io.port), (io_q >> 16) & 0xffff);
    assert_eq!(io.input, io_q & 8 != 0);

    let addr = string_address_size(info);
    assert_eq!(
        addr.is_some(),
        (info >> 7) & 7 < 3,
        "address size {info:#x}"
    );
    // The vCPU's fallback for an undefined encoding.
    let addr = addr.unwrap_or(if long { 8 } else { 4 });
    assert!(matches!(addr, 2 | 4 | 8));
    let mask = match addr {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    };
    // Bits above the address size after a step from `old` to a new low part `low`.
    let fit = |old: u64, low: u64| match addr {
        2 => (old & !0xffff) | (low & 0xffff),
        4 => low & 0xffff_ffff,
        _ => low,
    };
    let size = u64::from(io.size);
    let moved = |v: u64, n: u64| {
        if df {
            v.wrapping_sub(n)
        } else {
            v.wrapping_add(n)
        }
    };

    assert_eq!(string_count_zero(rcx, addr), rcx & mask == 0);
    let (new_index, new_rcx, done) = string_step(index, rcx, io.size, df, io.rep, addr);
    assert_eq!(new_index, fit(index, moved(index, size)), "index step");
    if io.rep {
        assert_eq!(new_rcx, fit(rcx, rcx.wrapping_sub(1)), "count step");
        assert_eq!(done, new_rcx & mask == 0, "REP complete");
    } else {
        assert_eq!((new_rcx, done), (rcx, true), "a single element");
    }

    // A whole REP: k (1..=64) elements take k steps and end at count 0.
    if io.rep {
        let k = u64::from(flags >> 2) + 1;
        let mut count = (rcx & !mask) | k;
        assert!(!string_count_zero(count, addr));
        let (mut idx, mut steps) = (index, 0);
        loop {
            let (i, c, done) = string_step(idx, count, io.size, df, true, addr);
            (idx, count, steps) = (i, c, steps + 1);
            if done {
                break;
            }
            assert!(steps < k, "REP of {k} not done after {steps} steps");
        }
        assert_eq!(steps, k);
        assert!(string_count_zero(count, addr));
        assert_eq!(idx, fit(index, moved(index, size * k)), "REP index");
        if addr == 2 {
            assert_eq!(count & !mask, rcx & !mask, "16-bit count kept bits 63:16");
        }
    }
}
