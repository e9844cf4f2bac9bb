use super::*;
use std::sync::Mutex as StdMutex;
use std::vec::Vec as StdVec;

/// Records the vCPUs kicked.
#[derive(Default)]
struct Kicks(StdMutex<StdVec<usize>>);

impl VcpuNotifier for Kicks {
    fn notify(&self, vcpu: usize) {
        self.0.lock().unwrap().push(vcpu);
    }
}

impl Kicks {
    fn take(&self) -> StdVec<usize> {
        core::mem::take(&mut *self.0.lock().unwrap())
    }
}

const TSC_HZ: u64 = 1_000_000_000;

fn pc(vcpus: usize) -> (Arc<VirtualPc>, Arc<Kicks>) {
    let kicks = Arc::new(Kicks::default());
    let config = PcConfig {
        vcpus,
        tsc_hz: TSC_HZ,
        unix_ns_at_tsc0: 0,
    };
    (
        Arc::new(VirtualPc::new(config, kicks.clone()).unwrap()),
        kicks,
    )
}

const READY: Ready = Ready {
    irq: true,
    nmi: true,
};

/// Software-enables vCPU `v`'s local APIC (SVR = 0x1FF) through the xAPIC page.
fn enable(pc: &VirtualPc, v: usize) {
    pc.xapic_write(v, XAPIC_PAGE + 0xF0, AccessWidth::Word, 0x1FF, 0);
}

#[test]
fn vcpu_count_is_checked() {
    let n = Arc::new(Kicks::default());
    for bad in [0, MAX_VCPUS + 1] {
        let c = PcConfig {
            vcpus: bad,
            tsc_hz: TSC_HZ,
            unix_ns_at_tsc0: 0,
        };
        assert_eq!(
            VirtualPc::new(c, n.clone()).unwrap_err(),
            PcError::VcpuCount(bad)
        );
    }
}

#[test]
fn fixed_ipi_reaches_its_target_and_kicks_it() {
    let (pc, kicks) = pc(2);
    enable(&pc, 0);
    enable(&pc, 1);
    // ICR high: destination 1; ICR low: fixed, vector 0x40.
    pc.xapic_write(0, XAPIC_PAGE + 0x310, AccessWidth::Word, 1 << 24, 0);
    pc.xapic_write(0, XAPIC_PAGE + 0x300, AccessWidth::Word, 0x40, 0);
    assert_eq!(kicks.take(), [1]);
    assert_eq!(pc.next_injection(0, 0, READY), Injection::None);
    assert_eq!(pc.next_injection(1, 0, READY), Injection::External(0x40));
    // Acknowledged: in service, not pending any more.
    assert_eq!(pc.next_injection(1, 0, READY), Injection::None);
}
