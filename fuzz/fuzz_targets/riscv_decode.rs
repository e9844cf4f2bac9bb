//! The riscv64 trap decoder and SBI dispatch: any trap CSRs, guest registers and
//! instruction bits through `decode_trap` and `decode_sbi`, plus the load/store decoders
//! and SBI hart masks on their own.
//!
//! Checked: a decoded access is 2 or 4 bytes long and names a register that exists; a load
//! value fits its width unless sign-extended; a hart set only names harts that exist.

use axvisor_fuzz::Input;
use riscv_vcpu::decode::{self, MemAccess, MemOp, Trap, VCpuInfo};
use riscv_vcpu::harts::HartSet;

/// Checks what any decoded load or store promises.
fn check_access(a: &MemAccess) {
    assert!(a.len == 2 || a.len == 4, "{a:?}");
    match a.op {
        MemOp::Load { rd, .. } => assert!(rd < 32, "{a:?}"),
        MemOp::Store { rs2 } => assert!(rs2 < 32, "{a:?}"),
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let ctl = input.u8();
    let trap = Trap {
        // Mostly the exception codes that exist (0..=23), sometimes anything.
        scause: if ctl & 0x80 == 0 {
            input.u8() as u64 % 24
        } else {
            input.u64()
        },
        stval: input.u64(),
        htval: input.u64(),
        htinst: input.u64(),
        from_vu: ctl & 1 != 0,
    };
    let harts = input.u8() as usize % 64 + 1;
    let info = VCpuInfo {
        hart_id: input.u8() as u64 % harts as u64,
        harts,
    };
    let insn = input.u32();
    let fetched = (ctl & 2 != 0).then_some(insn);
    let raw = input.u64();
    let mut regs = [0u64; 32];
    for r in &mut regs {
        *r = input.u64();
    }
    regs[0] = 0;

    let _ = format!("{:?}", decode::decode_trap(&trap, &regs, &info, || fetched));
    let _ = format!("{:?}", decode::decode_sbi(&regs, &info));
    let _ = decode::probe(regs[10]);
    let _ = decode::fault_gpa(trap.htval, trap.stval);

    for access in [
        decode::decode_raw(insn),
        decode::decode_transformed(trap.htinst),
    ]
    .into_iter()
    .flatten()
    {
        check_access(&access);
        let _ = format!("{:?}", decode::access_exit(&access, raw, &regs));
        if let MemOp::Load { sign_ext, .. } = access.op {
            let v = decode::load_value(access.width, sign_ext, raw);
            if !sign_ext {
                assert_eq!(v & !access.width.mask(), 0, "{access:?}: {v:#x}");
            }
        }
    }

    if let Ok(set) = HartSet::decode(regs[11], regs[12], harts) {
        for h in set.iter(harts) {
            assert!(h < harts && set.contains(h, harts));
        }
    }
}
