//! Host tests: every register through the `MmioDevice` trait, routing, SGIs, level/edge
//! semantics, the list-register flow with a fake `ListRegs`, encodings, and a fuzz loop.

use std::sync::Mutex as StdMutex;
use std::vec;
use std::vec::Vec;

use alloc::sync::Arc;
use axdevice_base::{AccessWidth, DeviceError, MmioDevice, VcpuNotifier};

use super::*;
use crate::fake::FakeLrs;

use AccessWidth::{Byte, Dword, Half, Word};

// ---- distributor offsets ----
const CTLR: usize = 0x000;
const TYPER: usize = 0x004;
const IIDR_OFF: usize = 0x008;
const IGROUPR: usize = 0x080;
const ISENABLER: usize = 0x100;
const ICENABLER: usize = 0x180;
const ISPENDR: usize = 0x200;
const ICPENDR: usize = 0x280;
const ISACTIVER: usize = 0x300;
const ICACTIVER: usize = 0x380;
const IPRIORITYR: usize = 0x400;
const ITARGETSR: usize = 0x800;
const ICFGR: usize = 0xc00;
const SGIR: usize = 0xf00;
const CPENDSGIR: usize = 0xf10;
const SPENDSGIR: usize = 0xf20;
const IROUTER: usize = 0x6000;
const PIDR2_V2: usize = 0xfe8;
const PIDR2_V3: usize = 0xffe8;
// ---- redistributor offsets (inside one 128 KiB frame) ----
const GICR_CTLR: usize = 0x0000;
const GICR_IIDR: usize = 0x0004;
const GICR_TYPER: usize = 0x0008;
const GICR_WAKER: usize = 0x0014;
const GICR_PROPBASER: usize = 0x0070;
const GICR_PIDR2: usize = 0xffe8;
const SGI: usize = GICR_SGI_BASE;

// ---- fakes ----

#[derive(Default)]
struct Recorder(StdMutex<Vec<usize>>);

impl VcpuNotifier for Recorder {
    fn notify(&self, vcpu: usize) {
        self.0.lock().unwrap().push(vcpu);
    }
}

impl Recorder {
    fn take(&self) -> Vec<usize> {
        core::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Vm {
    vgic: Arc<Vgic>,
    rec: Arc<Recorder>,
    d: Arc<dyn MmioDevice>,
    r: Option<Arc<dyn MmioDevice>>,
}

fn vm(version: GicVersion, vcpus: usize, spis: u32) -> Vm {
    let rec = Arc::new(Recorder::default());
    let vgic = Vgic::new(
        VgicConfig {
            version,
            vcpus,
            spis,
        },
        rec.clone(),
    )
    .unwrap();
    let d = vgic.distributor();
    let r = vgic.redistributors();
    Vm { vgic, rec, d, r }
}

impl Vm {
    fn rd(&self, vcpu: usize, off: usize) -> u32 {
        self.d.read_by(vcpu, off, Word).unwrap() as u32
    }
    fn wr(&self, vcpu: usize, off: usize, value: u32) {
        self.d.write_by(vcpu, off, Word, value.into()).unwrap();
    }
    fn rrd(&self, cpu: usize, off: usize) -> u32 {
        let r = self.r.as_ref().unwrap();
        r.read(cpu * GICR_FRAME_SIZE + off, Word).unwrap() as u32
    }
    fn rwr(&self, cpu: usize, off: usize, value: u32) {
        let r = self.r.as_ref().unwrap();
        r.write(cpu * GICR_FRAME_SIZE + off, Word, value.into())
            .unwrap();
    }
    /// Sets bit `intid` in a one-bit-per-interrupt distributor register.
    fn set_bit(&self, vcpu: usize, base: usize, intid: u32) {
        self.wr(vcpu, base + (intid as usize / 32) * 4, 1 << (intid % 32));
    }
    fn get_bit(&self, vcpu: usize, base: usize, intid: u32) -> bool {
        self.rd(vcpu, base + (intid as usize / 32) * 4) & (1 << (intid % 32)) != 0
    }
    fn prio(&self, vcpu: usize, intid: u32, p: u8) {
        self.d
            .write_by(vcpu, IPRIORITYR + intid as usize, Byte, p.into())
            .unwrap();
    }
    /// v2: distributor on (group 0), SPI `intid` enabled.
    fn v2_spi_ready(&self, intid: u32) {
        self.wr(0, CTLR, 1);
        self.set_bit(0, ISENABLER, intid);
    }
    /// v3: distributor on (group 1), SPI `intid` enabled.
    fn v3_spi_ready(&self, intid: u32) {
        self.wr(0, CTLR, 0b10);
        self.set_bit(0, ISENABLER, intid);
    }
}

// ---- configuration ----

#[test]
fn config_is_validated() {
    let n: Arc<dyn VcpuNotifier> = Arc::new(Recorder::default());
    let mk = |version, vcpus, spis| {
        Vgic::new(
            VgicConfig {
                version,
                vcpus,
                spis,
            },
            n.clone(),
        )
    };
    assert_eq!(
        mk(GicVersion::V2, 0, 32).unwrap_err(),
        VgicError::BadVcpuCount { vcpus: 0, max: 8 }
    );
    assert!(mk(GicVersion::V2, 9, 32).is_err());
    assert!(mk(GicVersion::V2, 8, 32).is_ok());
    assert!(mk(GicVersion::V3, 64, 32).is_ok());
    assert_eq!(
        mk(GicVersion::V3, 65, 32).unwrap_err(),
        VgicError::BadVcpuCount { vcpus: 65, max: 64 }
    );
    assert_eq!(
        mk(GicVersion::V3, 1, 989).unwrap_err(),
        VgicError::TooManySpis(989)
    );
    assert!(!std::format!("{}", VgicError::TooManySpis(989)).is_empty());
    assert_eq!(mk(GicVersion::V3, 1, 988).unwrap().nr_irqs(), 1020);
    assert_eq!(mk(GicVersion::V2, 1, 33).unwrap().nr_irqs(), 96);
    assert_eq!(mk(GicVersion::V2, 1, 0).unwrap().nr_irqs(), 32);
    assert!(mk(GicVersion::V2, 1, 0).unwrap().redistributors().is_none());
}

// ---- identification and control ----

#[test]
fn v2_ctlr_typer_iidr_pidr2() {
    let vm = vm(GicVersion::V2, 4, 64);
    assert_eq!(vm.rd(0, CTLR), 0);
    vm.wr(0, CTLR, 0xffff_ffff);
    assert_eq!(vm.rd(0, CTLR), 0b11, "EnableGrp0/1 only");
    vm.wr(0, CTLR, 1);
    assert_eq!(vm.rd(1, CTLR), 1);
    // ITLinesNumber 2 (96 INTIDs), CPUNumber 3 (4 CPUs)
    assert_eq!(vm.rd(0, TYPER), 2 | 3 << 5);
    vm.wr(0, TYPER, 0);
    assert_eq!(vm.rd(0, TYPER), 2 | 3 << 5, "read-only");
    assert_eq!(vm.rd(0, IIDR_OFF), IIDR);
    assert_eq!(vm.rd(0, PIDR2_V2) >> 4 & 0xf, 2);
    assert_eq!(vm.rd(0, 0xff0), 0x0d);
    assert_eq!(vm.rd(0, 0xffc), 0xb1);
    // v3 locations are reserved on v2
    assert_eq!(vm.rd(0, PIDR2_V3), 0);
    assert_eq!(vm.d.size(), GICD_SIZE);
    assert_eq!(vm.d.name(), "gicd");
}

#[test]
fn v3_ctlr_typer_pidr2() {
    let vm = vm(GicVersion::V3, 2, 988);
    // ARE and DS read as one, RWP zero.
    assert_eq!(vm.rd(0, CTLR), 1 << 4 | 1 << 6);
    vm.wr(0, CTLR, 1 << 4 | 0b11);
    assert_eq!(vm.rd(0, CTLR), 1 << 4 | 1 << 6 | 0b11);
    vm.wr(0, CTLR, 0);
    assert_eq!(vm.rd(0, CTLR), 1 << 4 | 1 << 6, "ARE cannot be cleared");
    assert_eq!(vm.rd(0, CTLR) >> 31, 0, "RWP");
    let typer = vm.rd(0, TYPER);
    assert_eq!(
        typer & 0x1f,
        31,
        "ITLinesNumber for 988 SPIs (INTIDs to 1019)"
    );
    assert_eq!(typer >> 19 & 0x1f, 9, "IDbits");
    assert_eq!(typer >> 26 & 1, 1, "RSS");
    assert_eq!(typer >> 16 & 0b111, 0, "no MBIS/LPIS/DVIS");
    assert_eq!(vm.rd(0, PIDR2_V3) >> 4 & 0xf, 3);
    assert_eq!(vm.rd(0, PIDR2_V2), 0, "the v2 ID block is reserved on v3");
    assert_eq!(vm.rd(0, IIDR_OFF), IIDR);
}

// ---- one-bit-per-interrupt registers ----

#[test]
fn enable_pending_active_group_spis() {
    for version in [GicVersion::V2, GicVersion::V3] {
        let vm = vm(version, 2, 64);
        let n = 40;
        assert!(!vm.get_bit(0, ISENABLER, n));
        vm.set_bit(0, ISENABLER, n);
        assert!(vm.get_bit(0, ISENABLER, n));
        assert!(vm.get_bit(1, ICENABLER, n), "SPIs are not banked");
        vm.set_bit(0, ICENABLER, n);
        assert!(!vm.get_bit(0, ISENABLER, n));

        vm.set_bit(0, ISPENDR, n);
        assert!(vm.get_bit(0, ISPENDR, n));
        assert!(vm.get_bit(0, ICPENDR, n));
        vm.set_bit(0, ICPENDR, n);
        assert!(!vm.get_bit(0, ISPENDR, n));

        vm.set_bit(0, ISACTIVER, n);
        assert!(vm.get_bit(0, ISACTIVER, n));
        assert!(vm.get_bit(0, ICACTIVER, n));
        vm.set_bit(0, ICACTIVER, n);
        assert!(!vm.get_bit(0, ISACTIVER, n));

        let g = vm.get_bit(0, IGROUPR, n);
        assert_eq!(g, version == GicVersion::V3, "reset group");
        vm.wr(0, IGROUPR + 4, 0xffff_ffff);
        assert_eq!(vm.rd(0, IGROUPR + 4), 0xffff_ffff);
        vm.wr(0, IGROUPR + 4, 0);
        assert_eq!(vm.rd(0, IGROUPR + 4), 0);

        // writing zeros to set/clear registers changes nothing
        vm.set_bit(0, ISENABLER, n);
        vm.wr(0, ICENABLER + 4, 0);
        assert!(vm.get_bit(0, ISENABLER, n));
        // INTIDs beyond the implemented ones read as zero
        vm.wr(0, ISENABLER + 12, 0xffff_ffff);
        assert_eq!(vm.rd(0, ISENABLER + 12), 0);
        assert_eq!(vm.rd(0, ISENABLER + 0x7c), 0);
    }
}

#[test]
fn v2_private_registers_are_banked() {
    let vm = vm(GicVersion::V2, 2, 32);
    // SGIs are always enabled on v2
    assert_eq!(vm.rd(0, ISENABLER), 0xffff);
    vm.wr(0, ICENABLER, 0xffff_ffff);
    assert_eq!(vm.rd(0, ISENABLER), 0xffff);
    vm.set_bit(0, ISENABLER, 27);
    assert!(vm.get_bit(0, ISENABLER, 27));
    assert!(!vm.get_bit(1, ISENABLER, 27));
    vm.set_bit(1, ISPENDR, 30);
    assert!(vm.get_bit(1, ISPENDR, 30));
    assert!(!vm.get_bit(0, ISPENDR, 30));
    vm.set_bit(0, ISACTIVER, 29);
    assert!(vm.get_bit(0, ISACTIVER, 29));
    assert!(!vm.get_bit(1, ISACTIVER, 29));
    vm.wr(1, IGROUPR, 0x8000_0000);
    assert_eq!(vm.rd(1, IGROUPR), 0x8000_0000);
    assert_eq!(vm.rd(0, IGROUPR), 0);
    vm.prio(1, 27, 0x80);
    assert_eq!(vm.d.read_by(1, IPRIORITYR + 27, Byte).unwrap(), 0x80);
    assert_eq!(vm.d.read_by(0, IPRIORITYR + 27, Byte).unwrap(), 0);
    // ISPENDR does not set SGIs on v2 (SPENDSGIR does)
    vm.wr(0, ISPENDR, 0xffff);
    assert_eq!(vm.rd(0, ISPENDR) & 0xffff, 0);
    // plain read()/write() act as vCPU 0
    assert_eq!(
        vm.d.read(ISENABLER, Word).unwrap() as u32,
        vm.rd(0, ISENABLER)
    );
}

#[test]
fn v3_private_registers_live_in_the_redistributors() {
    let vm = vm(GicVersion::V3, 2, 32);
    // GICD's private bits are RAZ/WI
    vm.wr(0, ISENABLER, 0xffff_ffff);
    assert_eq!(vm.rd(0, ISENABLER), 0);
    vm.wr(0, IPRIORITYR, 0xffff_ffff);
    assert_eq!(vm.rd(0, IPRIORITYR), 0);
    vm.wr(0, ICFGR + 4, 0xffff_ffff);
    assert_eq!(vm.rd(0, ICFGR + 4), 0);
    // GICR SGI frame, per redistributor
    vm.rwr(1, SGI + 0x100, 1 << 27 | 1 << 3);
    assert_eq!(vm.rrd(1, SGI + 0x100), 1 << 27 | 1 << 3);
    assert_eq!(vm.rrd(0, SGI + 0x100), 0);
    vm.rwr(1, SGI + 0x180, 1 << 3);
    assert_eq!(vm.rrd(1, SGI + 0x100), 1 << 27);
    assert_eq!(
        vm.rrd(0, SGI + 0x080),
        0xffff_ffff,
        "IGROUPR0 resets to group 1"
    );
    vm.rwr(0, SGI + 0x080, 0);
    assert_eq!(vm.rrd(0, SGI + 0x080), 0);
    vm.rwr(0, SGI + 0x200, 1 << 5); // ISPENDR0: SGIs are settable on v3
    assert_eq!(vm.rrd(0, SGI + 0x280), 1 << 5);
    vm.rwr(0, SGI + 0x280, 1 << 5);
    assert_eq!(vm.rrd(0, SGI + 0x200), 0);
    vm.rwr(0, SGI + 0x300, 1 << 20);
    assert_eq!(vm.rrd(0, SGI + 0x380), 1 << 20);
    vm.rwr(0, SGI + 0x380, 1 << 20);
    assert_eq!(vm.rrd(0, SGI + 0x300), 0);
    // priorities, byte and word
    vm.rwr(1, SGI + 0x400 + 24, 0x1020_3040);
    assert_eq!(vm.rrd(1, SGI + 0x400 + 24), 0x1020_3040);
    let r = vm.r.as_ref().unwrap();
    r.write(GICR_FRAME_SIZE + SGI + 0x400 + 27, Byte, 0xff)
        .unwrap();
    assert_eq!(
        r.read(GICR_FRAME_SIZE + SGI + 0x400 + 27, Byte).unwrap(),
        0xf8
    );
    assert_eq!(vm.rrd(0, SGI + 0x400 + 24), 0);
    // ICFGR0 (SGIs) fixed edge, ICFGR1 (PPIs) writable
    assert_eq!(vm.rrd(0, SGI + 0xc00), 0xaaaa_aaaa);
    vm.rwr(0, SGI + 0xc00, 0);
    assert_eq!(vm.rrd(0, SGI + 0xc00), 0xaaaa_aaaa);
    assert_eq!(vm.rrd(0, SGI + 0xc04), 0);
    vm.rwr(0, SGI + 0xc04, 0x8000_0000);
    assert_eq!(vm.rrd(0, SGI + 0xc04), 0x8000_0000);
    // other SGI-frame registers are RAZ/WI
    vm.rwr(0, SGI + 0xd00, 0xffff_ffff);
    assert_eq!(vm.rrd(0, SGI + 0xd00), 0);
    vm.rwr(0, SGI + 0x104, 0xffff_ffff);
    assert_eq!(vm.rrd(0, SGI + 0x104), 0);
}

// ---- byte registers ----

#[test]
fn priorities_byte_and_word() {
    let vm = vm(GicVersion::V2, 1, 64);
    vm.wr(0, IPRIORITYR + 32, 0x0102_a0ff);
    assert_eq!(vm.rd(0, IPRIORITYR + 32), 0x0000_a0f8, "low three bits RAZ");
    for (i, b) in [0xf8, 0xa0, 0x00, 0x00].iter().enumerate() {
        assert_eq!(
            vm.d.read_by(0, IPRIORITYR + 32 + i, Byte).unwrap(),
            *b as u64
        );
    }
    vm.d.write_by(0, IPRIORITYR + 35, Byte, 0x48).unwrap();
    assert_eq!(vm.rd(0, IPRIORITYR + 32), 0x4800_a0f8);
    // beyond the implemented INTIDs: RAZ/WI
    vm.wr(0, IPRIORITYR + 96, 0xffff_ffff);
    assert_eq!(vm.rd(0, IPRIORITYR + 96), 0);
    assert_eq!(vm.rd(0, IPRIORITYR + 0x3fc), 0);
}

#[test]
fn v2_itargetsr() {
    let vm = vm(GicVersion::V2, 3, 64);
    // SGI/PPI bytes: the reading vCPU's own bit, read-only
    for v in 0..3 {
        assert_eq!(vm.rd(v, ITARGETSR), 0x0101_0101 << v);
        assert_eq!(vm.rd(v, ITARGETSR + 28), 0x0101_0101 << v);
        assert_eq!(vm.d.read_by(v, ITARGETSR + 5, Byte).unwrap(), 1 << v as u64);
    }
    vm.wr(0, ITARGETSR, 0);
    assert_eq!(vm.rd(0, ITARGETSR), 0x0101_0101);
    // SPIs reset to vCPU 0, writable, bits of missing vCPUs dropped
    assert_eq!(vm.rd(0, ITARGETSR + 32), 0x0101_0101);
    vm.d.write_by(0, ITARGETSR + 33, Byte, 0xff).unwrap();
    assert_eq!(vm.rd(0, ITARGETSR + 32), 0x0101_0701);
    vm.wr(1, ITARGETSR + 36, 0x0004_0200);
    assert_eq!(vm.rd(0, ITARGETSR + 36), 0x0004_0200);
    // v3: reserved
    let vm3 = self::vm(GicVersion::V3, 1, 64);
    vm3.wr(0, ITARGETSR + 32, 0xffff_ffff);
    assert_eq!(vm3.rd(0, ITARGETSR + 32), 0);
}

#[test]
fn icfgr_edge_and_level() {
    let vm = vm(GicVersion::V2, 1, 64);
    assert_eq!(vm.rd(0, ICFGR), 0xaaaa_aaaa, "SGIs edge");
    vm.wr(0, ICFGR, 0);
    assert_eq!(vm.rd(0, ICFGR), 0xaaaa_aaaa, "SGIs stay edge");
    assert_eq!(vm.rd(0, ICFGR + 4), 0, "PPIs level at reset");
    assert_eq!(vm.rd(0, ICFGR + 8), 0, "SPIs level at reset");
    vm.wr(0, ICFGR + 8, 0xffff_ffff);
    assert_eq!(
        vm.rd(0, ICFGR + 8),
        0xaaaa_aaaa,
        "only Int_config[1] is kept"
    );
    vm.wr(0, ICFGR + 8, 0x8);
    assert_eq!(vm.rd(0, ICFGR + 8), 0x8);
    // INTIDs beyond 96: RAZ/WI
    vm.wr(0, ICFGR + 0x18, 0xffff_ffff);
    assert_eq!(vm.rd(0, ICFGR + 0x18), 0);
}

// ---- SGIs ----

#[test]
fn v2_sgir_target_filters_and_sources() {
    let vm = vm(GicVersion::V2, 4, 32);
    vm.wr(0, CTLR, 1);
    // filter 0: list (bit 7 names a missing CPU, dropped)
    vm.wr(1, SGIR, 0x0085_0003);
    assert_eq!(vm.rec.take(), vec![0, 2]);
    assert_eq!(vm.d.read_by(0, SPENDSGIR + 3, Byte).unwrap(), 1 << 1);
    assert_eq!(vm.d.read_by(2, SPENDSGIR + 3, Byte).unwrap(), 1 << 1);
    assert_eq!(vm.d.read_by(1, SPENDSGIR + 3, Byte).unwrap(), 0);
    assert!(vm.get_bit(0, ISPENDR, 3));
    // filter 1: all but self
    vm.wr(2, SGIR, 1 << 24 | 4);
    assert_eq!(vm.rec.take(), vec![0, 1, 3]);
    // filter 2: self only (list ignored)
    vm.wr(3, SGIR, 2 << 24 | 0xff << 16 | 5);
    assert_eq!(vm.rec.take(), vec![3]);
    assert_eq!(vm.rd(3, SPENDSGIR + 4) >> 8 & 0xff, 1 << 3);
    // filter 3: reserved, nothing
    vm.wr(0, SGIR, 3 << 24 | 0xff << 16 | 6);
    assert!(vm.rec.take().is_empty());
    assert_eq!(vm.rd(0, SPENDSGIR + 4) >> 16 & 0xff, 0);
    // a second source for SGI 3 on vCPU 0: posted SGIs notify their target unless the SGI
    // sits in one of its list registers (the model is not consulted when posting)
    vm.wr(2, SGIR, 0x0001_0003);
    assert_eq!(vm.rec.take(), vec![0]);
    assert_eq!(vm.rd(0, SPENDSGIR), (1 << 1 | 1 << 2) << 24);
    // CPENDSGIR clears one source
    vm.d.write_by(0, CPENDSGIR + 3, Byte, 1 << 1).unwrap();
    assert_eq!(vm.rd(0, CPENDSGIR), (1 << 2) << 24);
    // SPENDSGIR sets sources (only of existing CPUs)
    vm.d.write_by(1, SPENDSGIR + 8, Byte, 0xff).unwrap();
    assert_eq!(vm.d.read_by(1, SPENDSGIR + 8, Byte).unwrap(), 0x0f);
    assert_eq!(vm.rec.take(), vec![1]);
    // SGIR reads as zero
    assert_eq!(vm.rd(0, SGIR), 0);
}

#[test]
fn v2_sgi_sources_each_delivered_with_their_cpuid() {
    let vm = vm(GicVersion::V2, 3, 32);
    vm.wr(0, CTLR, 1);
    vm.wr(1, SGIR, 0x0001_0002); // SGI 2 from 1 to 0
    vm.wr(2, SGIR, 0x0001_0002); // SGI 2 from 2 to 0
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(0, &mut lrs);
    // one LR per INTID: source 1 first, EOI maintenance because source 2 waits
    assert_eq!(lrs.valid(), vec![(2, LrState::Pending)]);
    let lr = lrs.get(2);
    assert_eq!(lr.source, 1);
    assert!(lr.eoi_maintenance);
    assert_eq!(lr.to_gicv2() >> 10 & 7, 1);
    lrs.handle(2);
    vm.vgic.sync(0, &mut lrs);
    vm.vgic.flush(0, &mut lrs);
    let lr = lrs.get(2);
    assert_eq!(lr.source, 2);
    assert!(
        lr.eoi_maintenance,
        "every list register asks for EOI maintenance"
    );
    lrs.handle(2);
    vm.vgic.sync(0, &mut lrs);
    vm.vgic.flush(0, &mut lrs);
    assert!(lrs.valid().is_empty());
    assert!(!vm.vgic.has_deliverable(0));
}

#[test]
fn icc_sgi1r_decoding() {
    let vm = vm(GicVersion::V3, 20, 32);
    vm.wr(0, CTLR, 0b10);
    for v in 0..20 {
        vm.rwr(v, SGI + 0x100, 0xffff); // enable SGIs
    }
    let pend = |v: usize| vm.rrd(v, SGI + 0x200);
    let clear = |v: usize| vm.rwr(v, SGI + 0x280, 0xffff);
    // TargetList 0b1010_0110 → vCPUs 1, 2, 5, 7; INTID 9
    vm.vgic.write_sgi1r(0, 9 << 24 | 0b1010_0110);
    assert_eq!(vm.rec.take(), vec![1, 2, 5, 7]);
    for v in 0..20 {
        let want = [1, 2, 5, 7].contains(&v);
        assert_eq!(pend(v) == 1 << 9, want, "vCPU {v}");
        clear(v);
    }
    // Aff1 != 0: no such vCPU
    vm.vgic.write_sgi1r(0, 1 << 16 | 3 << 24 | 0xffff);
    assert!(vm.rec.take().is_empty());
    // Aff2 / Aff3 != 0 as well
    vm.vgic.write_sgi1r(0, 1 << 32 | 0xffff);
    vm.vgic.write_sgi1r(0, 1 << 48 | 0xffff);
    assert!(vm.rec.take().is_empty());
    // RS = 1: TargetList bit n is Aff0 16 + n; 20..31 do not exist
    vm.vgic.write_sgi1r(5, 1 << 44 | 4 << 24 | 0xffff);
    assert_eq!(vm.rec.take(), vec![16, 17, 18, 19]);
    assert_eq!(pend(16), 1 << 4);
    clear(16);
    clear(17);
    clear(18);
    clear(19);
    // IRM: everyone but the sender (affinity fields ignored)
    vm.vgic.write_sgi1r(3, 1 << 40 | 0xff << 16 | 15 << 24);
    let got = vm.rec.take();
    assert_eq!(got.len(), 19);
    assert!(!got.contains(&3));
    assert_eq!(pend(3), 0);
    assert_eq!(pend(0), 1 << 15);
    // a bad sender index or a v2 GIC: ignored
    vm.vgic.write_sgi1r(20, 0xffff);
    assert!(vm.rec.take().is_empty());
    let v2 = self::vm(GicVersion::V2, 2, 32);
    v2.wr(0, CTLR, 1);
    v2.vgic.write_sgi1r(0, 0xffff);
    assert!(v2.rec.take().is_empty());
}

#[test]
fn v3_sgis_need_enable() {
    let vm = vm(GicVersion::V3, 2, 32);
    vm.wr(0, CTLR, 0b10);
    vm.vgic.write_sgi1r(0, 1 << 1 | 7 << 24);
    // Posting does not look at enables: the target is told (a spurious wake-up), but SGI 7
    // is disabled, so nothing is deliverable.
    assert_eq!(vm.rec.take(), vec![1]);
    assert!(!vm.vgic.has_deliverable(1));
    vm.rwr(1, SGI + 0x100, 1 << 7);
    assert_eq!(vm.rec.take(), vec![1], "enabling makes it deliverable");
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(1, &mut lrs);
    let lr = lrs.get(7);
    assert!(lr.group1);
    assert!(
        lr.eoi_maintenance,
        "SGIs too: an SGI latched meanwhile goes in at the EOI exit"
    );
}

// ---- GICv3 redistributors ----

#[test]
fn gicr_frames_typer_and_last() {
    let vm = vm(GicVersion::V3, 3, 32);
    let r = vm.r.clone().unwrap();
    assert_eq!(r.size(), 3 * GICR_FRAME_SIZE);
    assert_eq!(r.name(), "gicr");
    for cpu in 0..3u64 {
        let base = cpu as usize * GICR_FRAME_SIZE;
        let typer = r.read(base + GICR_TYPER, Dword).unwrap();
        assert_eq!(typer >> 32, cpu, "affinity 0.0.0.cpu");
        assert_eq!(typer >> 8 & 0xffff, cpu, "Processor_Number");
        assert_eq!(typer >> 4 & 1, (cpu == 2) as u64, "Last");
        assert_eq!(typer & 0b1111, 0, "no LPIs, no DirectLPI");
        // 32-bit halves
        assert_eq!(
            r.read(base + GICR_TYPER, Word).unwrap(),
            typer & 0xffff_ffff
        );
        assert_eq!(r.read(base + GICR_TYPER + 4, Word).unwrap(), typer >> 32);
        r.write(base + GICR_TYPER, Dword, 0).unwrap();
        assert_eq!(r.read(base + GICR_TYPER, Dword).unwrap(), typer);
        assert_eq!(r.read(base + GICR_PIDR2, Word).unwrap() >> 4 & 0xf, 3);
        assert_eq!(r.read(base + GICR_IIDR, Word).unwrap(), u64::from(IIDR));
        assert_eq!(r.read(base + GICR_CTLR, Word).unwrap(), 0);
        r.write(base + GICR_CTLR, Word, 0xffff_ffff).unwrap();
        assert_eq!(r.read(base + GICR_CTLR, Word).unwrap(), 0, "no LPIs, RWP 0");
        r.write(base + GICR_PROPBASER, Dword, u64::MAX).unwrap();
        assert_eq!(r.read(base + GICR_PROPBASER, Dword).unwrap(), 0);
    }
    assert_eq!(
        r.read(3 * GICR_FRAME_SIZE, Word),
        Err(DeviceError::BadOffset)
    );
}

#[test]
fn gicr_waker_handshake() {
    let vm = vm(GicVersion::V3, 2, 32);
    // asleep at reset: ProcessorSleep and ChildrenAsleep
    assert_eq!(vm.rrd(1, GICR_WAKER), 0b110);
    // what Linux does: clear ProcessorSleep, wait for ChildrenAsleep to clear
    let w = vm.rrd(1, GICR_WAKER);
    vm.rwr(1, GICR_WAKER, w & !0b10);
    assert_eq!(vm.rrd(1, GICR_WAKER) & 0b100, 0);
    assert_eq!(vm.rrd(0, GICR_WAKER), 0b110, "per redistributor");
    vm.rwr(1, GICR_WAKER, 0b10);
    assert_eq!(vm.rrd(1, GICR_WAKER), 0b110);
}

// ---- routing ----

#[test]
fn irouter_routes_spis() {
    let vm = vm(GicVersion::V3, 4, 64);
    let n = 50u32;
    let off = IROUTER + n as usize * 8;
    vm.v3_spi_ready(n);
    assert_eq!(vm.d.read(off, Dword).unwrap(), 0);
    vm.d.write(off, Dword, 2).unwrap(); // Aff0 = 2
    assert_eq!(vm.d.read(off, Dword).unwrap(), 2);
    vm.vgic.set_spi_level(n, true);
    assert_eq!(vm.rec.take(), vec![2]);
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(0, &mut lrs);
    assert!(lrs.valid().is_empty(), "not for vCPU 0");
    vm.vgic.flush(2, &mut lrs);
    assert_eq!(lrs.valid(), vec![(n, LrState::Pending)]);
    let mut lrs3 = FakeLrs::new(4);
    // moving it: the pending LR on vCPU 2 is taken back at its next flush, vCPU 3 is told
    vm.d.write(off, Word, 3).unwrap();
    vm.vgic.sync(2, &mut lrs);
    vm.vgic.flush(2, &mut lrs);
    assert!(lrs.valid().is_empty());
    assert_eq!(vm.rec.take(), vec![3]);
    vm.vgic.flush(3, &mut lrs3);
    assert_eq!(lrs3.valid(), vec![(n, LrState::Pending)]);
    // 32-bit halves; IRM; unknown affinities; reserved bits dropped
    vm.d.write(off + 4, Word, 0xffff_ffff).unwrap();
    assert_eq!(vm.d.read(off, Dword).unwrap(), 0xff_0000_0003);
    vm.d.write(off, Dword, u64::MAX).unwrap();
    assert_eq!(vm.d.read(off, Dword).unwrap(), 0xff_80ff_ffff);
    assert_eq!(vm.d.read(off, Word).unwrap(), 0x80ff_ffff);
    assert_eq!(vm.d.read(off + 4, Word).unwrap(), 0xff);
    assert_eq!(state::route_target(1 << 31 | 3, 4), Some(0), "IRM → vCPU 0");
    assert_eq!(state::route_target(1 << 8, 4), None, "Aff1 != 0");
    assert_eq!(state::route_target(1 << 32, 4), None, "Aff3 != 0");
    assert_eq!(state::route_target(4, 4), None, "no vCPU 4");
    assert_eq!(state::route_target(3, 4), Some(3));
    // IROUTER of SGIs/PPIs (n < 32) and missing SPIs are reserved
    vm.d.write(IROUTER + 8, Dword, 1).unwrap();
    assert_eq!(vm.d.read(IROUTER + 8, Dword).unwrap(), 0);
    vm.d.write(IROUTER + 100 * 8, Dword, 1).unwrap();
    assert_eq!(vm.d.read(IROUTER + 100 * 8, Dword).unwrap(), 0);
}

#[test]
fn v2_targets_route_and_notify() {
    let vm = vm(GicVersion::V2, 2, 32);
    let n = 33;
    vm.v2_spi_ready(n);
    vm.d.write_by(0, ITARGETSR + n as usize, Byte, 0b10)
        .unwrap();
    vm.vgic.set_spi_level(n, true);
    assert_eq!(vm.rec.take(), vec![1], "notifier called for the target");
    assert!(vm.vgic.has_deliverable(1));
    assert!(!vm.vgic.has_deliverable(0));
    // no target: not delivered anywhere
    vm.d.write_by(0, ITARGETSR + n as usize, Byte, 0).unwrap();
    assert!(!vm.vgic.has_deliverable(1));
    // retarget to both: the lowest one gets it
    vm.d.write_by(0, ITARGETSR + n as usize, Byte, 0b11)
        .unwrap();
    assert_eq!(vm.rec.take(), vec![0]);
}

// ---- level and edge ----

#[test]
fn level_spi_follows_the_line() {
    let vm = vm(GicVersion::V2, 1, 32);
    let n = 40;
    let line = vm.vgic.irq_line(n).unwrap();
    assert!(vm.vgic.irq_line(31).is_none());
    assert!(vm.vgic.irq_line(64).is_none());
    line.set_level(true);
    assert!(vm.get_bit(0, ISPENDR, n));
    assert!(vm.rec.take().is_empty(), "disabled: nobody told");
    // ICPENDR while high: no lasting effect
    vm.set_bit(0, ICPENDR, n);
    assert!(vm.get_bit(0, ISPENDR, n));
    line.set_level(false);
    assert!(!vm.get_bit(0, ISPENDR, n));
    // ISPENDR latches even while low; ICPENDR clears it
    vm.set_bit(0, ISPENDR, n);
    assert!(vm.get_bit(0, ISPENDR, n));
    vm.set_bit(0, ICPENDR, n);
    assert!(!vm.get_bit(0, ISPENDR, n));
    // enabling with the line high notifies
    line.set_level(true);
    vm.v2_spi_ready(n);
    assert_eq!(vm.rec.take(), vec![0]);
}

#[test]
fn edge_spi_latches_rising_edges() {
    let vm = vm(GicVersion::V2, 1, 32);
    let n = 41;
    vm.v2_spi_ready(n);
    vm.wr(0, ICFGR + 8, 0b10 << (2 * (n - 32)));
    vm.vgic.set_spi_level(n, true);
    assert_eq!(vm.rec.take(), vec![0]);
    vm.vgic.set_spi_level(n, false);
    assert!(vm.get_bit(0, ISPENDR, n), "latched");
    vm.set_bit(0, ICPENDR, n);
    assert!(!vm.get_bit(0, ISPENDR, n));
    // staying high is not a new edge
    vm.vgic.set_spi_level(n, true);
    vm.set_bit(0, ICPENDR, n);
    vm.vgic.set_spi_level(n, true);
    assert!(!vm.get_bit(0, ISPENDR, n));
    vm.vgic.set_spi_level(n, false);
    vm.vgic.set_spi_level(n, true);
    assert!(vm.get_bit(0, ISPENDR, n));
}

#[test]
fn ppi_level_for_the_timer() {
    let vm = vm(GicVersion::V3, 2, 32);
    vm.wr(0, CTLR, 0b10);
    vm.rwr(1, SGI + 0x100, 1 << 27);
    vm.vgic.set_private_level(1, 27, true);
    assert_eq!(vm.rec.take(), vec![1]);
    assert_eq!(vm.rrd(1, SGI + 0x200), 1 << 27);
    assert_eq!(vm.rrd(0, SGI + 0x200), 0);
    // bad vCPU / not a PPI: ignored
    vm.vgic.set_private_level(2, 27, true);
    vm.vgic.set_private_level(0, 3, true);
    vm.vgic.set_private_level(0, 32, true);
    assert_eq!(vm.rrd(0, SGI + 0x200), 0);
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(1, &mut lrs);
    let lr = lrs.get(27);
    assert!(lr.eoi_maintenance, "level → EOI maintenance");
    vm.vgic.set_private_level(1, 27, false);
    vm.vgic.sync(1, &mut lrs);
    vm.vgic.flush(1, &mut lrs);
    assert!(
        lrs.valid().is_empty(),
        "line dropped before the ack: withdrawn"
    );
}

// ---- list registers ----

#[test]
fn flush_orders_by_priority_and_requests_underflow() {
    let vm = vm(GicVersion::V2, 1, 32);
    vm.wr(0, CTLR, 1);
    let prios = [
        (32, 0x80),
        (33, 0x10),
        (34, 0xf0),
        (35, 0x40),
        (36, 0x10),
        (37, 0x20),
    ];
    for (n, p) in prios {
        vm.set_bit(0, ISENABLER, n);
        vm.prio(0, n, p);
        vm.set_bit(0, ISPENDR, n);
    }
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(0, &mut lrs);
    let got: Vec<u32> = lrs.valid().iter().map(|v| v.0).collect();
    assert_eq!(got, vec![33, 36, 37, 35], "priority, then INTID");
    assert!(lrs.underflow);
    assert_eq!(lrs.get(33).priority, 0x10);
    // the guest handles two; the rest fit
    lrs.handle(33);
    lrs.handle(36);
    vm.vgic.sync(0, &mut lrs);
    vm.vgic.flush(0, &mut lrs);
    let mut got: Vec<u32> = lrs.valid().iter().map(|v| v.0).collect();
    got.sort();
    assert_eq!(got, vec![32, 34, 35, 37]);
    assert!(!lrs.underflow);
    // flushing again changes nothing
    let before = lrs.lrs.clone();
    vm.vgic.sync(0, &mut lrs);
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(lrs.lrs, before);
}

#[test]
fn higher_priority_pushes_out_a_pending_one() {
    let vm = vm(GicVersion::V2, 1, 32);
    vm.wr(0, CTLR, 1);
    for n in 32..36 {
        vm.set_bit(0, ISENABLER, n);
        vm.prio(0, n, 0x80);
        vm.set_bit(0, ISPENDR, n);
    }
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(0, &mut lrs);
    lrs.ack(32); // active ones stay
    vm.vgic.sync(0, &mut lrs);
    vm.set_bit(0, ISENABLER, 40);
    vm.prio(0, 40, 0x00);
    vm.set_bit(0, ISPENDR, 40);
    vm.vgic.flush(0, &mut lrs);
    assert!(lrs.find(40).is_some());
    assert!(lrs.find(32).is_some());
    assert_eq!(lrs.valid().len(), 4);
    assert!(lrs.underflow, "the pushed-out one waits");
    // the pushed-out one is still pending
    let out = (33..36).find(|&n| lrs.find(n).is_none()).unwrap();
    assert!(vm.get_bit(0, ISPENDR, out));
}

#[test]
fn level_eoi_maintenance_and_repend() {
    let vm = vm(GicVersion::V2, 1, 32);
    let n = 45;
    vm.v2_spi_ready(n);
    vm.prio(0, n, 0xa0);
    vm.vgic.set_spi_level(n, true);
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(0, &mut lrs);
    let lr = lrs.get(n);
    assert_eq!(lr.state, LrState::Pending);
    assert!(lr.eoi_maintenance);
    assert!(!lr.group1);
    assert_eq!(lr.priority, 0xa0);
    // no duplicate while in an LR
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(lrs.valid().len(), 1);
    assert!(vm.vgic.has_deliverable(0), "pending in an LR counts");
    // guest acks: active, not re-injected
    lrs.ack(n);
    vm.vgic.sync(0, &mut lrs);
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![(n, LrState::Active)]);
    assert!(vm.get_bit(0, ISACTIVER, n));
    // guest EOIs with the line still high → pending again
    lrs.eoi(n);
    vm.vgic.sync(0, &mut lrs);
    assert!(vm.vgic.has_deliverable(0));
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![(n, LrState::Pending)]);
    // the device lowers the line, the guest handles it: gone
    lrs.ack(n);
    vm.vgic.set_spi_level(n, false);
    lrs.eoi(n);
    assert!(
        lrs.lrs.iter().any(|l| l.eoi_maintenance),
        "EOI status pending"
    );
    vm.vgic.sync(0, &mut lrs);
    assert!(
        lrs.lrs.iter().all(|l| *l == ListReg::INVALID),
        "sync rewrites the freed LR, ending the EOI maintenance interrupt"
    );
    vm.vgic.flush(0, &mut lrs);
    assert!(lrs.valid().is_empty());
    assert!(!vm.vgic.has_deliverable(0));
    assert!(!vm.get_bit(0, ISACTIVER, n));
}

#[test]
fn edge_while_active_becomes_pending_active() {
    let vm = vm(GicVersion::V3, 1, 32);
    let n = 44;
    vm.v3_spi_ready(n);
    vm.wr(0, ICFGR + 8, 0b10 << (2 * (n - 32)));
    vm.vgic.set_spi_level(n, true);
    vm.vgic.set_spi_level(n, false);
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(0, &mut lrs);
    let lr = lrs.get(n);
    assert!(lr.eoi_maintenance, "edge too: the EOI brings the vCPU back");
    assert!(lr.group1);
    lrs.ack(n);
    vm.rec.take();
    // A new edge while the guest handles it: nobody is disturbed (the EOI exit will come),
    // but an exit before then merges it as pending+active.
    vm.vgic.set_spi_level(n, true);
    assert!(
        vm.rec.take().is_empty(),
        "no kick: EOI maintenance is armed"
    );
    vm.vgic.sync(0, &mut lrs);
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![(n, LrState::PendingActive)]);
    lrs.eoi(n);
    lrs.handle(n);
    vm.vgic.sync(0, &mut lrs);
    vm.vgic.flush(0, &mut lrs);
    assert!(lrs.valid().is_empty());
    // An edge while pending (not yet taken): merged, nobody disturbed; then after the EOI
    // exit the second is delivered.
    vm.vgic.set_spi_level(n, false);
    vm.vgic.set_spi_level(n, true);
    vm.vgic.flush(0, &mut lrs);
    vm.rec.take();
    vm.vgic.set_spi_level(n, false);
    vm.vgic.set_spi_level(n, true);
    assert!(vm.rec.take().is_empty());
    lrs.handle(n);
    vm.vgic.sync(0, &mut lrs);
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(
        lrs.valid(),
        vec![(n, LrState::Pending)],
        "the latched edge follows"
    );
}

#[test]
fn disable_and_clear_withdraw_pending_lrs() {
    let vm = vm(GicVersion::V2, 1, 32);
    vm.wr(0, CTLR, 1);
    for n in [32, 33, 34] {
        vm.set_bit(0, ISENABLER, n);
        vm.set_bit(0, ISPENDR, n);
    }
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(lrs.valid().len(), 3);
    vm.set_bit(0, ICENABLER, 32);
    vm.set_bit(0, ICPENDR, 33);
    assert!(!vm.get_bit(0, ISPENDR, 33), "ICPENDR is visible at once");
    vm.vgic.sync(0, &mut lrs);
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![(34, LrState::Pending)]);
    // disabled, not cleared: still pending in the distributor, back when enabled
    assert!(vm.get_bit(0, ISPENDR, 32));
    assert!(!vm.get_bit(0, ISPENDR, 33));
    vm.set_bit(0, ISENABLER, 32);
    vm.vgic.flush(0, &mut lrs);
    assert!(lrs.find(32).is_some());
    // group disabled: withdrawn too
    vm.wr(0, CTLR, 0);
    vm.vgic.flush(0, &mut lrs);
    assert!(lrs.valid().is_empty());
    // ICACTIVER on an active LR deactivates it
    vm.wr(0, CTLR, 1);
    vm.vgic.flush(0, &mut lrs);
    lrs.ack(34);
    vm.vgic.sync(0, &mut lrs);
    vm.set_bit(0, ICACTIVER, 34);
    assert!(!vm.get_bit(0, ISACTIVER, 34));
    vm.vgic.flush(0, &mut lrs);
    assert!(lrs.find(34).is_none());
}

#[test]
fn distributor_active_blocks_delivery() {
    let vm = vm(GicVersion::V2, 1, 32);
    let n = 50;
    vm.v2_spi_ready(n);
    vm.set_bit(0, ISACTIVER, n);
    vm.set_bit(0, ISPENDR, n);
    assert!(!vm.vgic.has_deliverable(0));
    vm.set_bit(0, ICACTIVER, n);
    assert!(vm.vgic.has_deliverable(0));
    assert_eq!(vm.rec.take(), vec![0]);
}

#[test]
fn group_enable_gates_delivery() {
    let vm = vm(GicVersion::V2, 2, 32);
    let n = 35;
    vm.set_bit(0, ISENABLER, n);
    vm.set_bit(0, ISPENDR, n);
    assert!(!vm.vgic.has_deliverable(0), "distributor off");
    assert!(vm.rec.take().is_empty());
    vm.wr(0, CTLR, 0b10); // group 1 only; the SPI is group 0
    assert!(vm.rec.take().is_empty());
    vm.wr(0, CTLR, 0b11);
    assert_eq!(vm.rec.take(), vec![0]);
    // moving it to group 1 keeps it deliverable
    vm.set_bit(0, IGROUPR, n);
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(0, &mut lrs);
    assert!(lrs.get(n).group1);
}

#[test]
fn lr_bookkeeping_survives_a_bad_hardware_lr() {
    let vm = vm(GicVersion::V2, 1, 32);
    vm.wr(0, CTLR, 1);
    vm.set_bit(0, ISENABLER, 32);
    vm.set_bit(0, ISPENDR, 32);
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(0, &mut lrs);
    // something else overwrote the LR: treated as freed (the pending state was consumed)
    lrs.lrs[0] = ListReg {
        intid: 99,
        state: LrState::Active,
        ..ListReg::INVALID
    };
    vm.vgic.sync(0, &mut lrs);
    vm.vgic.flush(0, &mut lrs);
    assert!(!vm.vgic.has_deliverable(0));
    // fewer LRs than before: entries beyond the count are forgotten, pending kept
    vm.set_bit(0, ISPENDR, 32);
    let mut many = FakeLrs::new(8);
    for n in 33..40 {
        vm.set_bit(0, ISENABLER, n);
        vm.set_bit(0, ISPENDR, n);
    }
    vm.vgic.flush(0, &mut many);
    assert_eq!(many.valid().len(), 8);
    let mut few = FakeLrs::new(2);
    few.lrs.copy_from_slice(&many.lrs[..2]);
    vm.vgic.sync(0, &mut few);
    vm.vgic.flush(0, &mut few);
    assert_eq!(few.valid().len(), 2);
    assert!(few.underflow);
    for n in 32..40 {
        assert!(vm.get_bit(0, ISPENDR, n), "INTID {n} still pending");
    }
}

#[test]
fn more_than_sixteen_lrs_are_capped() {
    let vm = vm(GicVersion::V2, 1, 64);
    vm.wr(0, CTLR, 1);
    vm.wr(0, ISENABLER + 4, 0xffff_ffff);
    vm.wr(0, ISPENDR + 4, 0xffff_ffff);
    let mut lrs = FakeLrs::new(20);
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(lrs.valid().len(), 16);
    assert!(lrs.lrs[16..].iter().all(|l| l.state == LrState::Invalid));
}

#[test]
fn bad_vcpu_indices_are_refused() {
    let vm = vm(GicVersion::V2, 2, 32);
    assert_eq!(vm.d.read_by(2, CTLR, Word), Err(DeviceError::BadOffset));
    assert_eq!(
        vm.d.write_by(usize::MAX, CTLR, Word, 1),
        Err(DeviceError::BadOffset)
    );
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(5, &mut lrs);
    vm.vgic.sync(5, &mut lrs);
    assert!(!vm.vgic.has_deliverable(5));
}

// ---- access rules ----

#[test]
fn widths_offsets_and_alignment() {
    let vm = vm(GicVersion::V3, 2, 64);
    let d = &vm.d;
    assert_eq!(d.read(GICD_SIZE, Byte), Err(DeviceError::BadOffset));
    assert_eq!(d.read(GICD_SIZE - 4, Dword), Err(DeviceError::BadOffset));
    assert_eq!(d.read(usize::MAX, Word), Err(DeviceError::BadOffset));
    assert_eq!(d.read(0x2, Word), Err(DeviceError::Misaligned));
    assert_eq!(d.read(CTLR, Byte), Err(DeviceError::BadWidth));
    assert_eq!(d.read(CTLR, Half), Err(DeviceError::BadWidth));
    assert_eq!(d.read(CTLR, Dword), Err(DeviceError::BadWidth));
    assert_eq!(d.write(ISENABLER + 4, Byte, 1), Err(DeviceError::BadWidth));
    assert_eq!(d.read(IPRIORITYR + 40, Half), Err(DeviceError::BadWidth));
    assert_eq!(d.read(IPRIORITYR + 40, Dword), Err(DeviceError::BadWidth));
    assert_eq!(d.read(IROUTER + 40 * 8, Byte), Err(DeviceError::BadWidth));
    assert_eq!(
        d.read(IROUTER + 40 * 8 + 4, Dword),
        Err(DeviceError::Misaligned)
    );
    // reserved: RAZ/WI at any width
    for w in AccessWidth::ALL {
        assert_eq!(d.read(0x8000, w), Ok(0));
        assert_eq!(d.write(0x8000, w, u64::MAX), Ok(()));
    }
    let r = vm.r.as_ref().unwrap();
    assert_eq!(r.read(GICR_TYPER, Byte), Err(DeviceError::BadWidth));
    assert_eq!(r.read(GICR_WAKER, Dword), Err(DeviceError::Misaligned));
    assert_eq!(r.read(GICR_CTLR, Dword), Err(DeviceError::BadWidth));
    assert_eq!(r.read(SGI + 0x400, Half), Err(DeviceError::BadWidth));
    assert_eq!(
        r.read(2 * GICR_FRAME_SIZE - 4, Dword),
        Err(DeviceError::BadOffset)
    );
}

// ---- list register encodings ----

#[test]
fn gicv2_lr_encoding_bit_exact() {
    let base = ListReg::INVALID;
    let enc = |lr: ListReg| lr.to_gicv2();
    assert_eq!(enc(base), 0);
    assert_eq!(enc(ListReg { intid: 1, ..base }), 1);
    assert_eq!(
        enc(ListReg {
            intid: 0x3ff,
            ..base
        }),
        0x3ff,
        "VirtualID [9:0]"
    );
    assert_eq!(
        enc(ListReg {
            intid: 0x400,
            ..base
        }),
        0,
        "truncated to 10 bits"
    );
    assert_eq!(
        enc(ListReg {
            intid: 3,
            source: 5,
            ..base
        }),
        5 << 10 | 3,
        "CPUID [12:10]"
    );
    assert_eq!(
        enc(ListReg {
            intid: 40,
            source: 5,
            ..base
        }),
        40,
        "no CPUID for non-SGIs"
    );
    assert_eq!(
        enc(ListReg {
            eoi_maintenance: true,
            ..base
        }),
        1 << 19,
        "EOI [19]"
    );
    assert_eq!(
        enc(ListReg {
            priority: 0xf8,
            ..base
        }),
        0x1f << 23,
        "Priority [27:23]"
    );
    assert_eq!(
        enc(ListReg {
            priority: 0x08,
            ..base
        }),
        1 << 23
    );
    assert_eq!(
        enc(ListReg {
            priority: 0x07,
            ..base
        }),
        0,
        "low bits dropped"
    );
    assert_eq!(
        enc(ListReg {
            priority: 0x80,
            ..base
        }),
        1 << 27
    );
    for (st, bits) in [
        (LrState::Invalid, 0),
        (LrState::Pending, 1),
        (LrState::Active, 2),
        (LrState::PendingActive, 3),
    ] {
        assert_eq!(
            enc(ListReg { state: st, ..base }),
            bits << 28,
            "State [29:28]"
        );
    }
    assert_eq!(
        enc(ListReg {
            group1: true,
            ..base
        }),
        1 << 30,
        "Grp1 [30]"
    );
    let full = ListReg {
        intid: 27,
        state: LrState::Pending,
        priority: 0xa0,
        group1: true,
        eoi_maintenance: true,
        source: 0,
    };
    assert_eq!(enc(full), 0x5a08_001b);
    assert_eq!(ListReg::from_gicv2(0x5a08_001b), full);
    // HW = 1: EOI/CPUID not interpreted
    let hw = ListReg::from_gicv2(1 << 31 | 1 << 19 | 3 << 10 | 5);
    assert!(!hw.eoi_maintenance);
    assert_eq!(hw.source, 0);
    assert_eq!(hw.intid, 5);
    // bit by bit: exactly the defined fields survive a round trip
    for b in 0..32 {
        let v = 1u32 << b;
        let kept = matches!(b, 0..=12 | 19 | 23..=30);
        assert_eq!(
            ListReg::from_gicv2(v).to_gicv2() == v,
            kept,
            "GICH_LR bit {b}"
        );
    }
}

#[test]
fn gicv3_lr_encoding_bit_exact() {
    let base = ListReg::INVALID;
    let enc = |lr: ListReg| lr.to_gicv3();
    assert_eq!(enc(base), 0);
    assert_eq!(
        enc(ListReg {
            intid: u32::MAX,
            ..base
        }),
        0xffff_ffff,
        "vINTID [31:0]"
    );
    assert_eq!(
        enc(ListReg {
            eoi_maintenance: true,
            ..base
        }),
        1 << 41,
        "EOI [41]"
    );
    assert_eq!(
        enc(ListReg {
            priority: 0xa5,
            ..base
        }),
        0xa5 << 48,
        "Priority [55:48]"
    );
    assert_eq!(
        enc(ListReg {
            group1: true,
            ..base
        }),
        1 << 60,
        "Group [60]"
    );
    for (st, bits) in [
        (LrState::Invalid, 0u64),
        (LrState::Pending, 1),
        (LrState::Active, 2),
        (LrState::PendingActive, 3),
    ] {
        assert_eq!(
            enc(ListReg { state: st, ..base }),
            bits << 62,
            "State [63:62]"
        );
    }
    assert_eq!(
        enc(ListReg {
            intid: 3,
            source: 5,
            ..base
        }),
        3,
        "no source on v3"
    );
    let full = ListReg {
        intid: 27,
        state: LrState::Pending,
        priority: 0xa0,
        group1: true,
        eoi_maintenance: true,
        source: 0,
    };
    assert_eq!(enc(full), 0x50a0_0200_0000_001b);
    assert_eq!(ListReg::from_gicv3(0x50a0_0200_0000_001b), full);
    // HW = 1: bit 41 belongs to pINTID
    assert!(!ListReg::from_gicv3(1 << 61 | 1 << 41).eoi_maintenance);
    for b in 0..64 {
        let v = 1u64 << b;
        let kept = matches!(b, 0..=31 | 41 | 48..=55 | 60 | 62 | 63);
        assert_eq!(
            ListReg::from_gicv3(v).to_gicv3() == v,
            kept,
            "ICH_LR bit {b}"
        );
    }
}

#[test]
fn lr_state_helpers() {
    for b in 0..4u8 {
        let s = LrState::from_bits(b);
        assert_eq!(s.bits(), b);
        assert_eq!(s.has_pending(), b & 1 != 0);
        assert_eq!(s.has_active(), b & 2 != 0);
    }
    assert_eq!(LrState::from_bits(0xff), LrState::PendingActive);
}

// ---- fuzz ----

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the guest may do to a list register while it runs: acknowledge, deactivate.
fn guest_moves(rng: &mut Rng, lrs: &mut FakeLrs) {
    for lr in lrs.lrs.iter_mut() {
        lr.state = match (lr.state, rng.below(4)) {
            (LrState::Pending, 0) => LrState::Active,
            (LrState::Pending, 1) => LrState::Invalid,
            (LrState::Active, 0) => LrState::Invalid,
            (LrState::PendingActive, 0) => LrState::Pending,
            (s, _) => s,
        };
    }
}

fn fuzz(version: GicVersion, vcpus: usize, seed: u64) {
    let vm = vm(version, vcpus, 96);
    let mut rng = Rng(seed);
    let mut lrs: Vec<FakeLrs> = (0..vcpus).map(|_| FakeLrs::new(4)).collect();
    let dsize = GICD_SIZE as u64;
    let rsize = (vcpus * GICR_FRAME_SIZE) as u64;
    for round in 0..40_000 {
        let w = AccessWidth::ALL[rng.below(4) as usize];
        let value = match rng.below(4) {
            0 => 0,
            1 => u64::MAX,
            _ => rng.next(),
        };
        let off = match rng.below(8) {
            0 => rng.next() as usize,
            1 => usize::MAX - rng.below(16) as usize,
            2 => (rng.below(0x1000) & !3) as usize,
            3 => (0x6000 + rng.below(0x2000)) as usize,
            _ => rng.below(dsize + 16) as usize,
        };
        let who = rng.below(vcpus as u64 + 1) as usize;
        match rng.below(10) {
            0..=3 => {
                let _ = vm.d.write_by(who, off, w, value);
            }
            4 | 5 => {
                let _ = vm.d.read_by(who, off, w);
            }
            6 => {
                if let Some(r) = &vm.r {
                    let roff = match rng.below(3) {
                        0 => rng.next() as usize,
                        1 => {
                            (rng.below(vcpus as u64) * GICR_FRAME_SIZE as u64
                                + GICR_SGI_BASE as u64
                                + rng.below(0x1000)) as usize
                        }
                        _ => rng.below(rsize + 16) as usize,
                    };
                    if rng.below(2) == 0 {
                        let _ = r.write(roff, w, value);
                    } else {
                        let _ = r.read(roff, w);
                    }
                }
            }
            7 => {
                vm.vgic
                    .set_spi_level(rng.below(1100) as u32, rng.below(2) == 0);
                vm.vgic.set_private_level(
                    rng.below(vcpus as u64 + 2) as usize,
                    rng.below(40) as u32,
                    rng.below(2) == 0,
                );
                vm.vgic.write_sgi1r(who, rng.next());
            }
            _ => {
                let v = rng.below(vcpus as u64) as usize;
                vm.vgic.sync(v, &mut lrs[v]);
                vm.vgic.flush(v, &mut lrs[v]);
                let _ = vm.vgic.has_deliverable(v);
                guest_moves(&mut rng, &mut lrs[v]);
            }
        }
        vm.vgic.check_hints();
        if round % 1000 == 0 {
            // keep things deliverable from time to time
            let _ = vm.d.write(CTLR, Word, 0b11);
        }
        // invariant: an INTID is in at most one valid LR of a vCPU, an SPI in at most one
        // vCPU's LRs
        let mut seen_spi = Vec::new();
        for l in &lrs {
            let valid = l.valid();
            for (i, (a, _)) in valid.iter().enumerate() {
                assert!(
                    valid[i + 1..].iter().all(|(b, _)| b != a),
                    "INTID {a} twice in one vCPU's LRs"
                );
                if *a >= 32 {
                    assert!(!seen_spi.contains(a), "SPI {a} in two vCPUs' LRs");
                    seen_spi.push(*a);
                }
            }
        }
    }
    // garbage in the list registers must not hurt either
    for _ in 0..2000 {
        let v = rng.below(vcpus as u64) as usize;
        let i = rng.below(4) as usize;
        lrs[v].lrs[i] = ListReg::from_gicv3(rng.next());
        vm.vgic.sync(v, &mut lrs[v]);
        vm.vgic.flush(v, &mut lrs[v]);
    }
}

#[test]
fn fuzz_v2_never_panics() {
    fuzz(GicVersion::V2, 3, 0x1234_5678_9abc_def1);
    fuzz(GicVersion::V2, 1, 42);
    fuzz(GicVersion::V2, 8, 7);
}

#[test]
fn fuzz_v3_never_panics() {
    fuzz(GicVersion::V3, 3, 0x0fed_cba9_8765_4321);
    fuzz(GicVersion::V3, 1, 99);
    fuzz(GicVersion::V3, 17, 3);
}

/// A passthrough SPI: raised by the hypervisor, lowered by the model when the guest ends
/// it, and reported once for the hypervisor to unmask the physical interrupt.
#[test]
fn resample_spi_is_lowered_and_reported_when_the_guest_ends_it() {
    let vm = vm(GicVersion::V3, 1, 32);
    let n = 34;
    vm.vgic.set_resample(n, true);
    vm.vgic.set_resample(20, true); // a PPI: ignored
    vm.vgic.set_resample(1000, true); // not implemented: ignored
    vm.v3_spi_ready(n);
    vm.vgic.set_spi_level(n, true);
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![(n, LrState::Pending)]);
    assert!(
        lrs.get(n).eoi_maintenance,
        "level: EOI maintenance requested"
    );
    let mut ended = Vec::new();
    vm.vgic.take_resampled(&mut |i| ended.push(i));
    assert!(ended.is_empty(), "not ended yet");
    lrs.handle(n);
    vm.vgic.sync(0, &mut lrs);
    vm.vgic.take_resampled(&mut |i| ended.push(i));
    assert_eq!(ended, vec![n]);
    // The line is low now: nothing pending, nothing re-injected until it is raised again.
    assert!(!vm.get_bit(0, ISPENDR, n));
    vm.vgic.flush(0, &mut lrs);
    assert!(lrs.valid().is_empty());
    ended.clear();
    vm.vgic.take_resampled(&mut |i| ended.push(i));
    assert!(ended.is_empty(), "reported once");
    // An ordinary level SPI is not lowered by the model.
    let m = 35;
    vm.v3_spi_ready(m);
    vm.vgic.set_spi_level(m, true);
    vm.vgic.flush(0, &mut lrs);
    lrs.handle(m);
    vm.vgic.sync(0, &mut lrs);
    assert!(vm.get_bit(0, ISPENDR, m), "still high: pending again");
}

/// SGIs are posted without the model's lock: one in a list register is not notified again
/// (its EOI exit will take the new one in); otherwise each post notifies; the model takes
/// posted SGIs in at the next flush.
#[test]
fn posted_sgis_notify_unless_in_a_list_register() {
    let vm = vm(GicVersion::V3, 2, 32);
    vm.wr(0, CTLR, 0b10);
    vm.rwr(1, SGI + 0x100, 1 << 3);
    vm.rec.take();
    vm.vgic.write_sgi1r(0, 1 << 1 | 3 << 24);
    assert_eq!(vm.rec.take(), vec![1]);
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(1, &mut lrs);
    assert_eq!(lrs.valid(), vec![(3, LrState::Pending)]);
    for _ in 0..100 {
        vm.vgic.write_sgi1r(0, 1 << 1 | 3 << 24);
    }
    assert!(
        vm.rec.take().is_empty(),
        "a flood behind a list register wakes nobody"
    );
    lrs.handle(3);
    vm.vgic.sync(1, &mut lrs);
    vm.vgic.flush(1, &mut lrs);
    assert_eq!(
        lrs.valid(),
        vec![(3, LrState::Pending)],
        "the flood, merged, goes in"
    );
    lrs.handle(3);
    vm.vgic.sync(1, &mut lrs);
    vm.vgic.flush(1, &mut lrs);
    assert!(lrs.valid().is_empty());
    // Out of the list registers: the next one notifies again.
    vm.vgic.write_sgi1r(0, 1 << 1 | 3 << 24);
    assert_eq!(vm.rec.take(), vec![1]);
}

#[test]
fn icc_dir_deactivates_only_its_own_active_lr() {
    let vm = vm(GicVersion::V3, 2, 32);
    let n = 40;
    vm.v3_spi_ready(n);
    vm.set_bit(0, ISPENDR, n);
    let mut lrs = FakeLrs::new(4);
    vm.vgic.flush(0, &mut lrs);
    // Pending only: nothing to deactivate.
    vm.vgic.deactivate(0, n);
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![(n, LrState::Pending)]);
    lrs.ack(n);
    vm.vgic.sync(0, &mut lrs);
    // Another vCPU, an INTID the VM lacks, an interrupt not in a list register: ignored.
    vm.vgic.deactivate(1, n);
    vm.vgic.deactivate(0, 5000);
    vm.vgic.deactivate(0, 33);
    vm.vgic.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![(n, LrState::Active)]);
    // Its own vCPU: deactivated at the next flush.
    vm.vgic.deactivate(0, n);
    vm.vgic.flush(0, &mut lrs);
    assert!(lrs.find(n).is_none());
    assert!(!vm.get_bit(0, ISACTIVER, n));
}
