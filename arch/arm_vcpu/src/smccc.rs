//! The SMC Calling Convention (Arm DEN 0028, version 1.1) as the vCPU answers it, over
//! both conduits (`hvc #0`, and `smc #0` trapped by HCR_EL2.TSC).
//!
//! - A function identifier is W0: the upper half of X0 is ignored. Bit 31 says fast (1) or
//!   yielding (0), bit 30 SMC64 (1) or SMC32 (0), bits 29:24 the owning service, bits 15:0
//!   the function number; bits 23:16 are zero in every fast call defined.
//! - Arm Architecture calls (owner 0): [`VERSION`] answers 1.1 ([`VERSION_1_1`]),
//!   [`ARCH_FEATURES`] answers 0 for these two and NOT_SUPPORTED for everything else,
//!   including the Spectre workarounds ([`ARCH_WORKAROUND_1`] .. `_3`): the hypervisor
//!   does nothing for them and does not know whether the CPU needs them, so it does not
//!   claim they are implemented or not required (KVM answers from the host's state).
//! - The vendor-specific hypervisor service (owner 6) is axvisor's: its calls are the
//!   SMC64 fast calls `0xC600_0000 | nr` ([`axvisor_call`], `nr` an
//!   `axvcpu::hypercall` number, answered like any hypercall), and the general queries
//!   [`VENDOR_HYP_CALL_UID`] ([`AXVISOR_UID`]) and [`VENDOR_HYP_REVISION`] (the hypercall
//!   ABI version, minor 0), which let a guest recognise the hypervisor.
//! - PSCI (owner 4) is answered by [`crate::decode`].
//! - Every other function id, of any owner, answers [`NOT_SUPPORTED`] in X0.
//!
//! An SMC32 call from AArch64 passes its arguments in W1..W7 (the upper halves are
//! ignored, [`FunctionId::arg`]); its results are in W0..W3, and the values here are
//! either 32-bit or -1, whose low half is the 32-bit -1.

/// SMCCC_VERSION (SMC32).
pub const VERSION: u32 = 0x8000_0000;
/// SMCCC_ARCH_FEATURES (SMC32): is the Arm Architecture function in W1 implemented.
pub const ARCH_FEATURES: u32 = 0x8000_0001;
/// SMCCC_ARCH_WORKAROUND_1 (Spectre variant 2, CVE-2017-5715).
pub const ARCH_WORKAROUND_1: u32 = 0x8000_8000;
/// SMCCC_ARCH_WORKAROUND_2 (Spectre variant 4, CVE-2018-3639).
pub const ARCH_WORKAROUND_2: u32 = 0x8000_7FFF;
/// SMCCC_ARCH_WORKAROUND_3 (Spectre-BHB, CVE-2022-23960).
pub const ARCH_WORKAROUND_3: u32 = 0x8000_3FFF;
/// The vendor-specific hypervisor service's Call UID query (SMC32): the service's UUID in
/// W0..W3.
pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;
/// The vendor-specific hypervisor service's Revision query (SMC32): major in W0, minor in
/// W1.
pub const VENDOR_HYP_REVISION: u32 = 0x8600_FF03;
/// The first of axvisor's calls: SMC64 fast calls of the vendor-specific hypervisor
/// service; function number = hypercall number.
pub const AXVISOR_BASE: u32 = 0xC600_0000;

/// The SMCCC version the hypervisor conforms to: 1.1 (major in bits 30:16).
pub const VERSION_1_1: u64 = 0x1_0001;
/// SUCCESS.
pub const SUCCESS: u64 = 0;
/// NOT_SUPPORTED (-1), as a 64-bit register value.
pub const NOT_SUPPORTED: u64 = -1i64 as u64;

/// axvisor's UUID, `2f0f3b07-3cbf-4866-be17-33539190eb99`, in the byte order of its text.
pub const AXVISOR_UUID: [u8; 16] = [
    0x2f, 0x0f, 0x3b, 0x07, 0x3c, 0xbf, 0x48, 0x66, 0xbe, 0x17, 0x33, 0x53, 0x91, 0x90, 0xeb, 0x99,
];
/// W0..W3 of the answer to [`VENDOR_HYP_CALL_UID`]: [`AXVISOR_UUID`], four bytes per
/// register, the first byte in the least significant position (as KVM and Linux's
/// `smccc_res_to_uuid` lay out a UUID).
pub const AXVISOR_UID: [u64; 4] = uid_words(&AXVISOR_UUID);

const fn uid_words(uuid: &[u8; 16]) -> [u64; 4] {
    let mut words = [0; 4];
    let mut i = 0;
    while i < 4 {
        let b = [
            uuid[4 * i],
            uuid[4 * i + 1],
            uuid[4 * i + 2],
            uuid[4 * i + 3],
        ];
        words[i] = u32::from_le_bytes(b) as u64;
        i += 1;
    }
    words
}

/// Service owners (bits 29:24 of a fast call's function id).
pub mod owner {
    /// Arm Architecture calls.
    pub const ARCH: u8 = 0;
    /// CPU service calls.
    pub const CPU: u8 = 1;
    /// Silicon provider (SiP) calls.
    pub const SIP: u8 = 2;
    /// OEM calls.
    pub const OEM: u8 = 3;
    /// Standard secure service calls (PSCI among them).
    pub const STANDARD: u8 = 4;
    /// Standard hypervisor service calls.
    pub const STANDARD_HYP: u8 = 5;
    /// Vendor-specific hypervisor service calls: axvisor's.
    pub const VENDOR_HYP: u8 = 6;
    /// Trusted OS calls (50..=63).
    pub const TRUSTED_OS: u8 = 50;
}

/// A function identifier: W0 of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionId(pub u32);

impl FunctionId {
    /// The function id of a call with `x0` in X0 (its low half).
    #[inline(always)]
    pub const fn from_x0(x0: u64) -> Self {
        Self(x0 as u32)
    }

    /// A fast call (bit 31), not a yielding one.
    pub const fn is_fast(self) -> bool {
        self.0 & (1 << 31) != 0
    }

    /// The SMC64/HVC64 calling convention (bit 30), not SMC32/HVC32.
    pub const fn is_smc64(self) -> bool {
        self.0 & (1 << 30) != 0
    }

    /// The owning service (bits 29:24).
    pub const fn owner(self) -> u8 {
        ((self.0 >> 24) & 0x3f) as u8
    }

    /// The function number within the service (bits 15:0).
    pub const fn number(self) -> u16 {
        self.0 as u16
    }

    /// Argument register `x` as this call sees it: whole for SMC64, its low half (W) for
    /// SMC32.
    #[inline]
    pub const fn arg(self, x: u64) -> u64 {
        if self.is_smc64() {
            x
        } else {
            x as u32 as u64
        }
    }
}

/// The axvisor hypercall number of a call with `x0` in X0 (any conduit): the function
/// number when W0 is `0xC600_0000 | nr` ([`AXVISOR_BASE`]), else `None`. Numbers that
/// name no hypercall (among them the general query numbers 0xFF00.. in this SMC64 form)
/// are answered NOT_SUPPORTED by the VMM, like an unknown hypercall.
#[inline(always)]
pub fn axvisor_call(x0: u64) -> Option<u64> {
    let w0 = x0 as u32;
    (w0 >> 16 == AXVISOR_BASE >> 16).then_some(u64::from(w0 & 0xffff))
}

/// The answer to a call that is neither PSCI nor an axvisor hypercall, with `x1` the
/// first argument register: X0..X3. Only the vendor hypervisor queries return more than
/// X0; for the others X1..X3 are left as the guest had them.
pub fn answer(fid: FunctionId, x1: u64) -> Answer {
    match fid.0 {
        VERSION => Answer::X0(VERSION_1_1),
        ARCH_FEATURES => Answer::X0(arch_features(fid.arg(x1) as u32)),
        VENDOR_HYP_CALL_UID => Answer::X0To3(AXVISOR_UID),
        VENDOR_HYP_REVISION => Answer::X0To3([axvcpu::hypercall::ABI_VERSION, 0, 0, 0]),
        _ => Answer::X0(NOT_SUPPORTED),
    }
}

/// SMCCC_ARCH_FEATURES: whether Arm Architecture function `id` is implemented.
fn arch_features(id: u32) -> u64 {
    match id {
        VERSION | ARCH_FEATURES => SUCCESS,
        // ARCH_WORKAROUND_1/2/3 and anything else: not implemented.
        _ => NOT_SUPPORTED,
    }
}

/// The result registers of an SMCCC call the vCPU answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Only X0.
    X0(u64),
    /// X0..X3.
    X0To3([u64; 4]),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_id_fields() {
        let psci_on64 = FunctionId(0xC400_0003);
        assert!(psci_on64.is_fast() && psci_on64.is_smc64());
        assert_eq!(psci_on64.owner(), owner::STANDARD);
        assert_eq!(psci_on64.number(), 3);
        let version = FunctionId(VERSION);
        assert!(version.is_fast() && !version.is_smc64());
        assert_eq!(version.owner(), owner::ARCH);
        let uid = FunctionId(VENDOR_HYP_CALL_UID);
        assert_eq!(
            (uid.owner(), uid.number(), uid.is_smc64()),
            (owner::VENDOR_HYP, 0xff01, false)
        );
        let ours = FunctionId(AXVISOR_BASE | 0x100);
        assert_eq!((ours.owner(), ours.is_smc64()), (owner::VENDOR_HYP, true));
        let yielding = FunctionId(0x3200_0001);
        assert!(!yielding.is_fast() && !yielding.is_smc64());
        assert_eq!(FunctionId(0xF200_0000).owner(), owner::TRUSTED_OS);
        assert_eq!(FunctionId::from_x0(0xdead_0000_8000_0000), version);
    }

    #[test]
    fn smc32_arguments_are_w_registers() {
        assert_eq!(
            FunctionId(ARCH_FEATURES).arg(0xffff_ffff_8000_0000),
            0x8000_0000
        );
        assert_eq!(FunctionId(0xC400_0003).arg(0x1_0000_0000), 0x1_0000_0000);
    }

    #[test]
    fn axvisor_calls_are_the_vendor_hyp_smc64_range() {
        assert_eq!(axvisor_call(0xC600_0100), Some(0x100));
        assert_eq!(axvisor_call(0xC600_0000), Some(0));
        assert_eq!(axvisor_call(0xC600_FFFF), Some(0xffff));
        // The upper half of X0 is not part of the function id.
        assert_eq!(axvisor_call(0x1234_5678_C600_0104), Some(0x104));
        for x0 in [
            0x100,
            0x8600_0100,
            0x4600_0100,
            0xC601_0100,
            0xC700_0100,
            0xC500_0100,
            0x8400_0000,
            0x8000_0000,
            u64::MAX,
        ] {
            assert_eq!(axvisor_call(x0), None, "{x0:#x}");
        }
    }

    #[test]
    fn discovery_answers() {
        assert_eq!(answer(FunctionId(VERSION), 0), Answer::X0(VERSION_1_1));
        let features = |id: u64| answer(FunctionId(ARCH_FEATURES), id);
        assert_eq!(features(u64::from(VERSION)), Answer::X0(SUCCESS));
        assert_eq!(features(u64::from(ARCH_FEATURES)), Answer::X0(SUCCESS));
        // SMC32: the upper half of the argument is ignored.
        assert_eq!(
            features(0xffff_ffff_0000_0000 | u64::from(ARCH_FEATURES)),
            Answer::X0(SUCCESS)
        );
        for id in [
            ARCH_WORKAROUND_1,
            ARCH_WORKAROUND_2,
            ARCH_WORKAROUND_3,
            0x8000_0002,
            0x8400_0000,
            AXVISOR_BASE | 0x100,
        ] {
            assert_eq!(
                features(u64::from(id)),
                Answer::X0(NOT_SUPPORTED),
                "{id:#x}"
            );
        }
    }

    #[test]
    fn vendor_hyp_queries() {
        assert_eq!(
            answer(FunctionId(VENDOR_HYP_CALL_UID), 0),
            Answer::X0To3([0x073b_0f2f, 0x6648_bf3c, 0x5333_17be, 0x99eb_9091])
        );
        assert_eq!(
            answer(FunctionId(VENDOR_HYP_REVISION), 0),
            Answer::X0To3([axvcpu::hypercall::ABI_VERSION, 0, 0, 0])
        );
    }

    #[test]
    fn unknown_ids_of_every_owner_are_not_supported() {
        for id in [
            0x8000_0002u32, // Arm Architecture, unassigned
            0x8100_0000,    // CPU service
            0x8200_0000,    // SiP
            0xC300_0001,    // OEM
            0x8500_0000,    // standard hypervisor service (e.g. PV time)
            0x8600_0000,    // vendor hypervisor, SMC32: axvisor's calls are SMC64
            0x8600_FF00,    // Call Count (deprecated, not implemented)
            0x8600_FF02,    // reserved query number
            0x8700_0000,    // vendor-specific EL3 monitor
            0xB000_0000,    // trusted applications
            0xBF00_FFFF,    // trusted OS
            0x0000_0000,    // yielding
            0x7FFF_FFFF,
            0x8001_0000, // bits 23:16 not zero
        ] {
            assert_eq!(
                answer(FunctionId(id), 0),
                Answer::X0(NOT_SUPPORTED),
                "{id:#x}"
            );
        }
    }
}
