//! Virtual GIC (v2 and v3): the distributor and redistributor register model and
//! list-register management, portable and host-tested.
//!
//! One [`Vgic`] per VM emulates the GIC *distributor* (GICv2 or GICv3 flavour) and, for
//! GICv3, one *redistributor* per vCPU. It does not emulate the guest's CPU interface: on
//! GICv2 the guest's GICC is the hardware GICV frame mapped into the guest, on GICv3 the
//! guest's `ICC_*` system registers reach the hardware virtual interface (ICV). The model
//! delivers interrupts by writing the hardware *list registers*, which architecture code
//! exposes through the [`ListRegs`] trait; the only trapped CPU-interface access it handles
//! is a GICv3 guest's write to `ICC_SGI1R_EL1` ([`Vgic::write_sgi1r`]).
//!
//! # Architecture code around guest entry and exit
//!
//! ```text
//! loop {
//!     vgic.flush(vcpu, &mut lrs);   // pending interrupts -> free list registers
//!     run the guest;                // hardware delivers, guest acknowledges / EOIs
//!     vgic.sync(vcpu, &mut lrs);    // list register states -> model
//!     handle the exit (MMIO to distributor() / redistributors(), ICC_SGI1R_EL1 trap,
//!                      WFI: block until has_deliverable(vcpu) or a notify) ...
//! }
//! ```
//!
//! When an interrupt newly becomes deliverable to a vCPU the model calls
//! [`VcpuNotifier::notify`] with that vCPU's index, **with the model's lock held**: the
//! notifier may only wake a task or send an IPI (so a running vCPU exits and flushes), it
//! must not call back into the [`Vgic`].
//!
//! # What the guest controls
//!
//! Every offset, width and value of a distributor or redistributor access, the value of an
//! `ICC_SGI1R_EL1` write, and the list registers' contents between `flush` and `sync` (the
//! guest acknowledges and deactivates through the hardware). None of it can panic the
//! model or index out of bounds: a bad access is a [`DeviceError`], a reserved register
//! reads as zero and ignores writes, a list register that does not hold what the model put
//! there is treated as empty. Accepted widths: 32-bit everywhere; 8-bit too for
//! IPRIORITYR, ITARGETSR, SPENDSGIR and CPENDSGIR; 64-bit too for GICD_IROUTER, GICR_TYPER,
//! GICR_PROPBASER and GICR_PENDBASER; any width for reserved offsets. See `docs/vgic.md`.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod lr;
mod mmio;
mod state;
#[cfg(test)]
mod tests;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use axdevice_base::{AccessWidth, DeviceError, IrqLine, MmioDevice, VcpuNotifier};
use log::debug;
use spin::Mutex;

pub use lr::{ListReg, ListRegs, LrState};
pub use mmio::{GICD_SIZE, GICR_FRAME_SIZE, GICR_SGI_BASE, IIDR};

use state::{Id, State, PRIVATE_IRQS, SGIS};

/// The most vCPUs a GICv2 VM may have (its CPU masks have 8 bits).
pub const MAX_VCPUS_V2: usize = 8;
/// The most vCPUs a GICv3 VM may have in this model.
pub const MAX_VCPUS_V3: usize = 64;
/// The most SPIs (INTIDs 32..1020).
pub const MAX_SPIS: u32 = 988;

/// Which GIC architecture the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2: memory-mapped distributor with banked private registers, GICD_SGIR, CPU
    /// target masks.
    V2,
    /// GICv3 with affinity routing always on: distributor for SPIs, one redistributor per
    /// vCPU for SGIs and PPIs, GICD_IROUTER, SGIs through `ICC_SGI1R_EL1`.
    V3,
}

/// How a [`Vgic`] is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VgicConfig {
    /// The GIC flavour.
    pub version: GicVersion,
    /// Number of vCPUs: 1..=8 for GICv2, 1..=64 for GICv3. vCPU `i` has affinity
    /// 0.0.0.`i` (its `MPIDR_EL1` must say so on GICv3).
    pub vcpus: usize,
    /// Number of SPIs, at most [`MAX_SPIS`]. Rounded up to a multiple of 32 (the
    /// granularity of `GICD_TYPER.ITLinesNumber`), INTIDs stopping at 1019.
    pub spis: u32,
}

/// Why a [`Vgic`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicError {
    /// `vcpus` is 0 or above the flavour's maximum (given).
    BadVcpuCount {
        /// The requested count.
        vcpus: usize,
        /// The maximum for the flavour.
        max: usize,
    },
    /// `spis` is above [`MAX_SPIS`].
    TooManySpis(u32),
}

impl fmt::Display for VgicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadVcpuCount { vcpus, max } => {
                write!(f, "{vcpus} vCPUs: a virtual GIC takes 1 to {max}")
            }
            Self::TooManySpis(n) => write!(f, "{n} SPIs: a virtual GIC takes at most {MAX_SPIS}"),
        }
    }
}

/// The virtual GIC of one VM. Shared by its vCPUs (and device models) through `Arc`; all
/// state sits behind one `spin::Mutex`.
pub struct Vgic {
    config: VgicConfig,
    nr_irqs: u32,
    notifier: Arc<dyn VcpuNotifier>,
    state: Mutex<State>,
    /// Per vCPU: SGIs sent to it and not yet taken into the model (see [`SgiMail`]).
    mail: Vec<SgiMail>,
    /// Set after an SGI is posted to any vCPU, cleared when the model takes the mail: most
    /// flushes find it clear and look at no vCPU's mail.
    mail_posted: AtomicBool,
    /// Per vCPU: whether the model has put an interrupt in one of its list registers (as
    /// of its last flush or sync, the only operations that change that). A sync with none
    /// there has nothing to read back, and skips the lock.
    lrs_used: Vec<AtomicBool>,
}

/// SGIs for one vCPU, posted without the model's lock: sending an SGI is the hottest
/// guest-to-guest path (an SMP guest's IPIs), and a vCPU flooding another with SGIs must
/// not contend for the lock the target needs on every entry. The model takes the mail in
/// (as if each SGI had been sent then) whenever it runs for any reason.
#[derive(Default)]
struct SgiMail {
    /// Bit `sgi * 8 + source` (the source is the sending vCPU on GICv2, 0 on GICv3).
    bits: [AtomicU64; 2],
    /// Bit `sgi` is set while that SGI sits in one of the vCPU's list registers: the
    /// guest's EOI of it makes the vCPU exit (EOI maintenance) and the next flush takes
    /// the mail in, so posting it needs no notification.
    in_lr: AtomicU32,
}

impl fmt::Debug for Vgic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vgic")
            .field("config", &self.config)
            .field("nr_irqs", &self.nr_irqs)
            .finish_non_exhaustive()
    }
}

impl Vgic {
    /// Builds the virtual GIC of a VM, in its reset state: distributor disabled, every
    /// interrupt disabled, inactive, not pending, priority 0; group 0 on GICv2, group 1 on
    /// GICv3; PPIs and SPIs level-sensitive, SGIs edge-triggered; GICv2 SGIs always
    /// enabled; GICv2 SPIs targeting vCPU 0 (ITARGETSR 0x01), GICv3 SPIs routed to
    /// affinity 0.0.0.0; GICv3 redistributors asleep (`GICR_WAKER.ProcessorSleep` = 1).
    pub fn new(
        config: VgicConfig,
        notifier: Arc<dyn VcpuNotifier>,
    ) -> Result<Arc<Self>, VgicError> {
        let max = match config.version {
            GicVersion::V2 => MAX_VCPUS_V2,
            GicVersion::V3 => MAX_VCPUS_V3,
        };
        if config.vcpus == 0 || config.vcpus > max {
            return Err(VgicError::BadVcpuCount {
                vcpus: config.vcpus,
                max,
            });
        }
        if config.spis > MAX_SPIS {
            return Err(VgicError::TooManySpis(config.spis));
        }
        let nr_irqs = (PRIVATE_IRQS + config.spis.div_ceil(32) * 32).min(1020);
        Ok(Arc::new(Vgic {
            config,
            nr_irqs,
            notifier,
            state: Mutex::new(State::new(config.version, config.vcpus, nr_irqs)),
            mail: (0..config.vcpus).map(|_| SgiMail::default()).collect(),
            mail_posted: AtomicBool::new(false),
            lrs_used: (0..config.vcpus).map(|_| AtomicBool::new(false)).collect(),
        }))
    }

    /// The configuration this GIC was built with.
    pub fn config(&self) -> VgicConfig {
        self.config
    }

    /// One past the highest implemented INTID (32 + SPIs rounded up to 32, at most 1020).
    pub fn nr_irqs(&self) -> u32 {
        self.nr_irqs
    }

    /// Posts SGI `sgi` from `source` to vCPU `target` (both checked by the caller), and
    /// notifies the target unless the SGI is in one of its list registers already.
    fn post_sgi(&self, target: usize, sgi: u32, source: usize) {
        let mail = &self.mail[target];
        let bit = sgi as usize * 8 + source;
        mail.bits[bit / 64].fetch_or(1 << (bit % 64), Ordering::SeqCst);
        // After the bit: a take that sees the flag sees the bit.
        self.mail_posted.store(true, Ordering::SeqCst);
        if mail.in_lr.load(Ordering::SeqCst) & (1 << sgi) == 0 {
            self.notifier.notify(target);
        }
    }

    /// Takes every vCPU's posted SGIs into the model. Their notifications were sent when
    /// they were posted.
    fn take_mail(&self, s: &mut State) {
        if !self.mail_posted.load(Ordering::SeqCst) {
            return;
        }
        // Cleared before the bits are swapped: an SGI posted after its bit's swap sets the
        // flag again, and is taken next time.
        self.mail_posted.store(false, Ordering::SeqCst);
        for (target, mail) in self.mail.iter().enumerate() {
            for (word, bits) in mail.bits.iter().enumerate() {
                // Look before swapping: a vCPU with no SGI posted writes nothing.
                if bits.load(Ordering::SeqCst) == 0 {
                    continue;
                }
                let mut taken = bits.swap(0, Ordering::SeqCst);
                while taken != 0 {
                    let bit = word * 64 + taken.trailing_zeros() as usize;
                    taken &= taken - 1;
                    let (sgi, source) = ((bit / 8) as u32, bit % 8);
                    match self.config.version {
                        GicVersion::V2 => s.send_sgi_v2(source, target, sgi),
                        GicVersion::V3 => s.send_sgi_v3(target, sgi),
                    };
                }
            }
        }
    }

    /// Records what vCPU `vcpu`'s list registers hold after its flush or sync: which SGIs
    /// (see [`SgiMail::in_lr`]) and whether anything (see [`Vgic::lrs_used`]).
    fn note_lrs(&self, s: &State, vcpu: usize) {
        let cpu = &s.cpus[vcpu];
        let bits = cpu
            .held()
            .filter(|&intid| intid < SGIS)
            .fold(0u32, |b, intid| b | 1 << intid);
        self.mail[vcpu].in_lr.store(bits, Ordering::SeqCst);
        self.lrs_used[vcpu].store(cpu.used_slots().next().is_some(), Ordering::Relaxed);
    }

    /// Calls the notifier for every vCPU in `mask` (with the lock held by the caller).
    fn notify(&self, mut mask: u64) {
        while mask != 0 {
            let v = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.notifier.notify(v);
        }
    }

    /// The distributor (GICD) as an MMIO device of [`GICD_SIZE`] bytes. Use
    /// [`MmioDevice::read_by`] / [`MmioDevice::write_by`] with the accessing vCPU's index
    /// (GICv2 banks the SGI/PPI registers, and GICD_SGIR needs the sender); plain
    /// `read`/`write` act as vCPU 0. An index that is not a vCPU of this VM is refused with
    /// [`DeviceError::BadOffset`].
    pub fn distributor(self: &Arc<Self>) -> Arc<dyn MmioDevice> {
        Arc::new(Distributor(self.clone()))
    }

    /// GICv3 only: the redistributors as one MMIO device of `vcpus` ×
    /// [`GICR_FRAME_SIZE`] bytes, vCPU `i`'s at `i * GICR_FRAME_SIZE` (RD_base frame, then
    /// the SGI_base frame at [`GICR_SGI_BASE`]). `GICR_TYPER` gives Processor_Number `i`,
    /// affinity 0.0.0.`i`, and Last on the final one. `None` on GICv2.
    pub fn redistributors(self: &Arc<Self>) -> Option<Arc<dyn MmioDevice>> {
        (self.config.version == GicVersion::V3)
            .then(|| Arc::new(Redistributors(self.clone())) as Arc<dyn MmioDevice>)
    }

    /// A level-sensitive input line for SPI `intid` (32..[`Vgic::nr_irqs`]), for a device
    /// model. `None` for any other INTID. How the line acts depends on the guest's ICFGR
    /// setting for the SPI: level (pending while high) or edge (a rising edge latches).
    pub fn irq_line(self: &Arc<Self>, intid: u32) -> Option<Arc<dyn IrqLine>> {
        (PRIVATE_IRQS..self.nr_irqs)
            .contains(&intid)
            .then(|| Arc::new(SpiLine(self.clone(), intid)) as Arc<dyn IrqLine>)
    }

    /// Marks SPI `intid` as driven by a physical device the VM owns (passthrough), or not.
    /// The hypervisor raises its line when the physical interrupt fires (and masks it at
    /// the host); when the guest ends the interrupt, the model lowers the line and reports
    /// the INTID through [`Vgic::take_resampled`], so the hypervisor unmasks the physical
    /// interrupt and it fires again if the device still asserts it. Ignored for an INTID
    /// that is not an implemented SPI.
    pub fn set_resample(&self, intid: u32, on: bool) {
        let mut s = self.state.lock();
        if let Some(id) = s
            .resolve(0, intid)
            .filter(|id| matches!(id, state::Id::Spi(_)))
        {
            s.irq_mut(id).resample = on;
        }
    }

    /// Calls `f` with each resample SPI the guest ended since the last call (see
    /// [`Vgic::set_resample`]), and forgets them.
    pub fn take_resampled(&self, f: &mut dyn FnMut(u32)) {
        let ended = core::mem::take(&mut self.state.lock().resampled);
        for intid in ended {
            f(intid);
        }
    }

    /// Sets the input level of SPI `intid` (what an [`irq_line`](Vgic::irq_line) does).
    /// Ignored for an INTID that is not an implemented SPI.
    pub fn set_spi_level(&self, intid: u32, level: bool) {
        if !(PRIVATE_IRQS..self.nr_irqs).contains(&intid) {
            debug!("vgic: level of non-SPI INTID {intid} ignored");
            return;
        }
        let mut s = self.state.lock();
        let mask = s.set_line(Id::Spi((intid - PRIVATE_IRQS) as usize), level);
        self.notify(mask);
    }

    /// Sets the input level of PPI `intid` (16..32) of vCPU `vcpu`, e.g. the virtual timer
    /// (27). Ignored for a bad vCPU or INTID.
    pub fn set_private_level(&self, vcpu: usize, intid: u32, level: bool) {
        if vcpu >= self.config.vcpus || !(SGIS..PRIVATE_IRQS).contains(&intid) {
            debug!("vgic: level of vCPU {vcpu} INTID {intid} ignored");
            return;
        }
        let mut s = self.state.lock();
        let mask = s.set_line(Id::Private(vcpu, intid), level);
        self.notify(mask);
    }

    /// A GICv3 guest on vCPU `vcpu` wrote `value` to `ICC_SGI1R_EL1`: INTID \[27:24\];
    /// IRM \[40\] = 1 sends to every vCPU but the sender; otherwise to the vCPUs whose
    /// affinity is Aff3.Aff2.Aff1.(RS × 16 + n) for each bit n of TargetList \[15:0\]
    /// (Aff1 \[23:16\], Aff2 \[39:32\], RS \[47:44\], Aff3 \[55:48\]). Targets that are not
    /// vCPUs of this VM are skipped. Ignored on GICv2 and for a bad `vcpu`.
    pub fn write_sgi1r(&self, vcpu: usize, value: u64) {
        if self.config.version != GicVersion::V3 || vcpu >= self.config.vcpus {
            debug!("vgic: ICC_SGI1R_EL1 write from vCPU {vcpu} ignored");
            return;
        }
        let sgi = ((value >> 24) & 0xf) as u32;
        let vcpus = self.config.vcpus;
        if value & (1 << 40) != 0 {
            for t in (0..vcpus).filter(|&t| t != vcpu) {
                self.post_sgi(t, sgi, 0);
            }
        } else {
            let aff1 = (value >> 16) & 0xff;
            let aff2 = (value >> 32) & 0xff;
            let aff3 = (value >> 48) & 0xff;
            let rs = ((value >> 44) & 0xf) as usize;
            if aff1 | aff2 | aff3 == 0 {
                for n in (0..16).filter(|n| value & (1 << n) != 0) {
                    let t = rs * 16 + n;
                    if t < vcpus {
                        self.post_sgi(t, sgi, 0);
                    }
                }
            }
        }
    }

    /// A GICv3 guest on vCPU `vcpu` wrote `intid` to `ICC_DIR_EL1` with EOImode 1:
    /// deactivates that interrupt if it is active in one of the vCPU's list registers (at
    /// its next flush). Anything else (not active, not in a list register of this vCPU, an
    /// INTID the VM does not have) is ignored, as the CPU interface does.
    pub fn deactivate(&self, vcpu: usize, intid: u32) {
        let mut s = self.state.lock();
        let mask = s.deactivate_in_lr(vcpu, intid);
        self.notify(mask);
    }

    /// Before entering vCPU `vcpu`: brings the list registers up to date and fills free
    /// ones with the interrupts deliverable to it, highest priority (lowest value) first.
    ///
    /// - A list register whose interrupt was disabled, cleared (ICPENDR), moved to another
    ///   vCPU, or whose level line dropped while it was still only pending is emptied; one
    ///   whose active state the guest cleared (ICACTIVER) loses it.
    /// - An active interrupt that became pending again through an edge or an SGI is made
    ///   pending+active in place; when that is not possible (another GICv2 SGI source) its
    ///   EOI maintenance is requested so the model learns when it can go in.
    /// - If there are more deliverable interrupts than free list registers, a merely
    ///   pending lower-priority one may be taken back out for a higher-priority one, and
    ///   the underflow maintenance interrupt is turned on (otherwise off).
    /// - Level-sensitive interrupts get `eoi_maintenance`, so their EOI causes an exit.
    ///
    /// Must be followed, after the guest ran, by [`Vgic::sync`] for the same vCPU, with the
    /// same list registers. The model only uses list registers it filled itself and takes
    /// the others as free: before the first flush of a vCPU they must all be invalid (arch
    /// code clears them, and saves/restores them if several vCPUs share a physical CPU).
    /// Ignored for a bad `vcpu`.
    pub fn flush(&self, vcpu: usize, lrs: &mut dyn ListRegs) {
        if vcpu >= self.config.vcpus {
            return;
        }
        let mut s = self.state.lock();
        self.take_mail(&mut s);
        let mask = s.flush(vcpu, lrs);
        self.note_lrs(&s, vcpu);
        self.notify(mask);
    }

    /// After vCPU `vcpu` left the guest: reads back the states of the list registers the
    /// model filled. One that became invalid was deactivated by the guest and is free: it is
    /// rewritten as [`ListReg::INVALID`] (which ends its EOI maintenance interrupt), and its
    /// interrupt is pending again if it still is (a level line still high, a new edge).
    /// A list register holding another INTID than the model wrote counts as invalid.
    /// Ignored for a bad `vcpu`.
    pub fn sync(&self, vcpu: usize, lrs: &mut dyn ListRegs) {
        // Only this vCPU's flush and sync change its list registers, and they run on its
        // own thread: `lrs_used` is up to date here.
        if !self
            .lrs_used
            .get(vcpu)
            .is_some_and(|used| used.load(Ordering::Relaxed))
        {
            return;
        }
        let mut s = self.state.lock();
        let mask = s.sync(vcpu, lrs);
        self.note_lrs(&s, vcpu);
        self.notify(mask);
    }

    /// Test check: the model's delivery hints are a superset of what may be deliverable.
    #[cfg(test)]
    pub(crate) fn check_hints(&self) {
        let s = self.state.lock();
        s.check_hints();
        for (v, used) in self.lrs_used.iter().enumerate() {
            assert_eq!(
                used.load(Ordering::Relaxed),
                s.cpus[v].used_slots().next().is_some(),
                "vCPU {v}: lrs_used out of step"
            );
        }
    }

    /// Whether vCPU `vcpu` has an interrupt to take: one deliverable to it and not yet in a
    /// list register, one pending in its list registers (as of the last flush/sync), or an
    /// interrupt in its list registers that became pending again. For deciding whether a
    /// vCPU waiting for an interrupt (WFI) may sleep. False for a bad `vcpu`.
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        let mut s = self.state.lock();
        self.take_mail(&mut s);
        s.has_deliverable(vcpu)
    }
}

/// The distributor seen as an MMIO device.
struct Distributor(Arc<Vgic>);

impl MmioDevice for Distributor {
    fn name(&self) -> &str {
        "gicd"
    }

    fn size(&self) -> usize {
        GICD_SIZE
    }

    fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        self.read_by(0, offset, width)
    }

    fn write(&self, offset: usize, width: AccessWidth, value: u64) -> Result<(), DeviceError> {
        self.write_by(0, offset, width, value)
    }

    fn read_by(&self, vcpu: usize, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        if vcpu >= self.0.config.vcpus {
            return Err(DeviceError::BadOffset);
        }
        let mut s = self.0.state.lock();
        self.0.take_mail(&mut s);
        mmio::dist_read(&s, vcpu, offset, width)
    }

    fn write_by(
        &self,
        vcpu: usize,
        offset: usize,
        width: AccessWidth,
        value: u64,
    ) -> Result<(), DeviceError> {
        if vcpu >= self.0.config.vcpus {
            return Err(DeviceError::BadOffset);
        }
        if let Some((sgi, targets)) = mmio::v2_sgir(&self.0.config, vcpu, offset, width, value) {
            // GICD_SGIR: posted without the lock, like a GICv3 SGI.
            for t in (0..self.0.config.vcpus).filter(|t| targets & (1 << t) != 0) {
                self.0.post_sgi(t, sgi, vcpu);
            }
            return Ok(());
        }
        let mut s = self.0.state.lock();
        self.0.take_mail(&mut s);
        let mask = mmio::dist_write(&mut s, vcpu, offset, width, value)?;
        self.0.notify(mask);
        Ok(())
    }
}

/// The GICv3 redistributors seen as one MMIO device. Which redistributor an access reaches
/// follows from its offset, not from the accessing vCPU.
struct Redistributors(Arc<Vgic>);

impl MmioDevice for Redistributors {
    fn name(&self) -> &str {
        "gicr"
    }

    fn size(&self) -> usize {
        self.0.config.vcpus * GICR_FRAME_SIZE
    }

    fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        let mut s = self.0.state.lock();
        self.0.take_mail(&mut s);
        mmio::redist_read(&s, offset, width)
    }

    fn write(&self, offset: usize, width: AccessWidth, value: u64) -> Result<(), DeviceError> {
        let mut s = self.0.state.lock();
        self.0.take_mail(&mut s);
        let mask = mmio::redist_write(&mut s, offset, width, value)?;
        self.0.notify(mask);
        Ok(())
    }
}

/// An SPI input line handed to a device model.
struct SpiLine(Arc<Vgic>, u32);

impl IrqLine for SpiLine {
    fn set_level(&self, high: bool) {
        self.0.set_spi_level(self.1, high);
    }
}
