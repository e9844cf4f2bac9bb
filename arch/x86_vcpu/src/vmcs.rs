//! VMCS field encodings (Intel SDM Vol. 3D, appendix B) and the VMX instructions
//! (x86_64 bare metal only).

/// Field encodings used by the vCPU.
#[allow(missing_docs)]
pub mod field {
    // 16-bit.
    pub const VPID: u32 = 0x0000;
    pub const GUEST_ES_SELECTOR: u32 = 0x0800;
    pub const GUEST_TR_SELECTOR: u32 = 0x080e;
    pub const HOST_ES_SELECTOR: u32 = 0x0c00;
    pub const HOST_CS_SELECTOR: u32 = 0x0c02;
    pub const HOST_SS_SELECTOR: u32 = 0x0c04;
    pub const HOST_DS_SELECTOR: u32 = 0x0c06;
    pub const HOST_FS_SELECTOR: u32 = 0x0c08;
    pub const HOST_GS_SELECTOR: u32 = 0x0c0a;
    pub const HOST_TR_SELECTOR: u32 = 0x0c0c;
    // 64-bit.
    pub const IO_BITMAP_A: u32 = 0x2000;
    pub const IO_BITMAP_B: u32 = 0x2002;
    pub const MSR_BITMAP: u32 = 0x2004;
    pub const TSC_OFFSET: u32 = 0x2010;
    pub const EPT_POINTER: u32 = 0x201a;
    pub const GUEST_PHYSICAL_ADDRESS: u32 = 0x2400;
    pub const VMCS_LINK_POINTER: u32 = 0x2800;
    pub const GUEST_DEBUGCTL: u32 = 0x2802;
    pub const GUEST_PAT: u32 = 0x2804;
    pub const GUEST_EFER: u32 = 0x2806;
    /// GUEST_PDPTE1..3 follow, 2 apart.
    pub const GUEST_PDPTE0: u32 = 0x280a;
    pub const HOST_PAT: u32 = 0x2c00;
    pub const HOST_EFER: u32 = 0x2c02;
    // 32-bit.
    pub const PIN_BASED: u32 = 0x4000;
    pub const PROC_BASED: u32 = 0x4002;
    pub const EXCEPTION_BITMAP: u32 = 0x4004;
    pub const PF_ERROR_CODE_MASK: u32 = 0x4006;
    pub const PF_ERROR_CODE_MATCH: u32 = 0x4008;
    pub const CR3_TARGET_COUNT: u32 = 0x400a;
    pub const EXIT_MSR_STORE_COUNT: u32 = 0x400e;
    pub const EXIT_MSR_LOAD_COUNT: u32 = 0x4010;
    pub const EXIT_CONTROLS: u32 = 0x400c;
    pub const ENTRY_CONTROLS: u32 = 0x4012;
    pub const ENTRY_INTERRUPTION_INFO: u32 = 0x4016;
    pub const ENTRY_MSR_LOAD_COUNT: u32 = 0x4014;
    pub const ENTRY_EXCEPTION_ERROR_CODE: u32 = 0x4018;
    pub const ENTRY_INSTRUCTION_LEN: u32 = 0x401a;
    pub const PROC_BASED2: u32 = 0x401e;
    pub const VM_INSTRUCTION_ERROR: u32 = 0x4400;
    pub const EXIT_REASON: u32 = 0x4402;
    pub const EXIT_INTERRUPTION_INFO: u32 = 0x4404;
    pub const IDT_VECTORING_INFO: u32 = 0x4408;
    pub const IDT_VECTORING_ERROR_CODE: u32 = 0x440a;
    pub const EXIT_INSTRUCTION_LEN: u32 = 0x440c;
    pub const EXIT_INSTRUCTION_INFO: u32 = 0x440e;
    pub const GUEST_ES_LIMIT: u32 = 0x4800;
    pub const GUEST_GDTR_LIMIT: u32 = 0x4810;
    pub const GUEST_IDTR_LIMIT: u32 = 0x4812;
    pub const GUEST_ES_ACCESS_RIGHTS: u32 = 0x4814;
    pub const GUEST_INTERRUPTIBILITY: u32 = 0x4824;
    pub const GUEST_ACTIVITY_STATE: u32 = 0x4826;
    pub const GUEST_SYSENTER_CS: u32 = 0x482a;
    pub const GUEST_PREEMPTION_TIMER: u32 = 0x482e;
    pub const HOST_SYSENTER_CS: u32 = 0x4c00;
    // Natural width.
    pub const CR0_GUEST_HOST_MASK: u32 = 0x6000;
    pub const CR4_GUEST_HOST_MASK: u32 = 0x6002;
    pub const CR0_READ_SHADOW: u32 = 0x6004;
    pub const CR4_READ_SHADOW: u32 = 0x6006;
    pub const EXIT_QUALIFICATION: u32 = 0x6400;
    pub const GUEST_LINEAR_ADDRESS: u32 = 0x640a;
    pub const GUEST_CR0: u32 = 0x6800;
    pub const GUEST_CR3: u32 = 0x6802;
    pub const GUEST_CR4: u32 = 0x6804;
    pub const GUEST_ES_BASE: u32 = 0x6806;
    pub const GUEST_GDTR_BASE: u32 = 0x6816;
    pub const GUEST_IDTR_BASE: u32 = 0x6818;
    pub const GUEST_DR7: u32 = 0x681a;
    pub const GUEST_RSP: u32 = 0x681c;
    pub const GUEST_RIP: u32 = 0x681e;
    pub const GUEST_RFLAGS: u32 = 0x6820;
    pub const GUEST_PENDING_DEBUG: u32 = 0x6822;
    pub const GUEST_SYSENTER_ESP: u32 = 0x6824;
    pub const GUEST_SYSENTER_EIP: u32 = 0x6826;
    pub const HOST_CR0: u32 = 0x6c00;
    pub const HOST_CR3: u32 = 0x6c02;
    pub const HOST_CR4: u32 = 0x6c04;
    pub const HOST_FS_BASE: u32 = 0x6c06;
    pub const HOST_GS_BASE: u32 = 0x6c08;
    pub const HOST_TR_BASE: u32 = 0x6c0a;
    pub const HOST_GDTR_BASE: u32 = 0x6c0c;
    pub const HOST_IDTR_BASE: u32 = 0x6c0e;
    pub const HOST_SYSENTER_ESP: u32 = 0x6c10;
    pub const HOST_SYSENTER_EIP: u32 = 0x6c12;
    pub const HOST_RSP: u32 = 0x6c14;
    pub const HOST_RIP: u32 = 0x6c16;

    /// The guest segment fields of segment `n` (0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS, 6 LDTR,
    /// 7 TR): selector, limit, access rights, base.
    pub const fn segment(n: u32) -> (u32, u32, u32, u32) {
        (
            GUEST_ES_SELECTOR + 2 * n,
            GUEST_ES_LIMIT + 2 * n,
            GUEST_ES_ACCESS_RIGHTS + 2 * n,
            GUEST_ES_BASE + 2 * n,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::field::*;

    #[test]
    fn segment_fields() {
        // TR is segment 7: selector 0x80E, limit 0x480E, access rights 0x4822, base 0x6814.
        assert_eq!(segment(7), (GUEST_TR_SELECTOR, 0x480e, 0x4822, 0x6814));
        assert_eq!(segment(1), (0x0802, 0x4802, 0x4816, 0x6808));
        assert_eq!(segment(6).2 + 2, GUEST_INTERRUPTIBILITY - 2);
    }
}
