//! The virtual PC of one VM: the interrupt and timer models of `x86_vapic` (one local APIC
//! per vCPU, one I/O APIC, PIC pair, ELCR, PIT, RTC) and the ACPI PM1 registers, each behind
//! its own spin lock, and the routing between them. Both backends (VMX and SVM) call the
//! same API; it is portable and tested on the host (`cargo test -p x86_vcpu`).
//!
//! What a vCPU does with it (docs/x86-interrupts.md, "How the vCPU and VM use them"):
//! - RDMSR/WRMSR → [`VirtualPc::rdmsr`] / [`VirtualPc::wrmsr`] first (`None`: not an APIC
//!   MSR, the vCPU's own MSR code answers); an `Err` is #GP(0).
//! - An MMIO exit inside [`XAPIC_PAGE`] → [`VirtualPc::xapic_read`] /
//!   [`VirtualPc::xapic_write`] for *this* vCPU's local APIC (never the VM's device set).
//! - Port I/O → [`VirtualPc::port_read`] / [`VirtualPc::port_write`] first (`None`: not a
//!   PC port, the exit goes to the VM); [`PortWrite::PowerOff`] is the guest's ACPI S5.
//! - After every APIC write: [`VirtualPc::take_start`]; a start request becomes a
//!   `VmExit::CpuUp` whose reply the vCPU drops (a SIPI has no reply).
//! - Before every guest entry: [`VirtualPc::next_injection`] (timers advanced, the
//!   interrupt acknowledged when it is handed out), and the host timer armed for
//!   [`VirtualPc::deadline`] while the guest runs.
//! - Halted: `ArchVCpu::wakeup_pending` is [`VirtualPc::wakeup_pending`],
//!   `ArchVCpu::timer_deadline` is [`VirtualPc::deadline`].
//! - Set-up of a vCPU: [`VirtualPc::take_startup_vector`]: `Some(v)` means a SIPI started it
//!   and it begins in real mode at CS = `v << 8`, IP = 0.
//!
//! Time (`now`) is the host TSC everywhere; [`PcConfig::tsc_hz`] converts it for the PIT
//! and the RTC.

mod ports;
#[cfg(test)]
mod tests;

pub use ports::PortWrite;

use alloc::sync::Arc;
use alloc::vec::Vec;
use axdevice_base::{AccessWidth, DeviceError, IrqLine, MmioDevice, VcpuNotifier};
use axvcpu::{ArchVCpu, VmExit};
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use ports::Ports;
use spin::Mutex;
use x86_vapic::{
    Delivery, Effect, IoApic, Lapic, LapicConfig, Message, MsrError, VcpuSet, IA32_APIC_BASE,
    IA32_TSC_DEADLINE, IOAPIC_PINS, IOAPIC_SIZE, IOREGSEL, IOWIN, LAPIC_SIZE, MAX_VCPUS,
    X2APIC_MSR_FIRST, X2APIC_MSR_LAST,
};

/// The guest-physical page of every vCPU's xAPIC registers (a moved `IA32_APIC_BASE` is
/// recorded by the model but the page stays here).
pub const XAPIC_PAGE: u64 = 0xFEE0_0000;

/// The I/O APIC input the PIT's channel 0 drives (ISA IRQ 0, overridden to GSI 2 in the
/// MADT).
pub const PIT_GSI: u32 = 2;

/// The local APIC timer's nominal input clock ("bus clock"), in Hz. The clock the guest
/// gets is the TSC divided by a whole number of ticks ([`tsc_per_bus_tick`]): at most this,
/// and exactly this when the TSC runs at a multiple of it.
pub const APIC_BUS_HZ: u64 = 100_000_000;

/// How many TSC ticks (at `tsc_hz`) one tick of the local APIC timer's input clock lasts:
/// the TSC rate over [`APIC_BUS_HZ`], rounded down, at least 1. The bus clock the guest is
/// told about (CPUID 0x15, the timing leaf) is `tsc_hz` divided by this.
pub const fn tsc_per_bus_tick(tsc_hz: u64) -> u64 {
    let k = tsc_hz / APIC_BUS_HZ;
    if k == 0 {
        1
    } else {
        k
    }
}

/// What a virtual PC is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcConfig {
    /// vCPUs in the VM (1..=[`MAX_VCPUS`]): one local APIC each; the I/O APIC's ID is this
    /// number (the MADT says so).
    pub vcpus: usize,
    /// The TSC's frequency in Hz (the unit of every `now`).
    pub tsc_hz: u64,
    /// Unix time in nanoseconds at TSC 0, the RTC's starting point.
    pub unix_ns_at_tsc0: u64,
}

/// Why a virtual PC cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcError {
    /// No vCPU, or more than [`MAX_VCPUS`].
    VcpuCount(usize),
}

impl fmt::Display for PcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VcpuCount(n) => write!(
                f,
                "{n} vCPUs: the virtual local APICs take 1 to {MAX_VCPUS} vCPUs"
            ),
        }
    }
}

/// Whether the guest can take an event now (the backend knows; the PC decides what).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// An external interrupt can be injected: RFLAGS.IF set, no STI / MOV SS shadow, no
    /// other event being injected.
    pub irq: bool,
    /// An NMI can be injected: NMIs not blocked (no NMI handler running), no other event
    /// being injected.
    pub nmi: bool,
}

/// What to do before entering the guest ([`VirtualPc::next_injection`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Nothing pending.
    None,
    /// Inject an NMI (taken from the local APIC).
    Nmi,
    /// Inject this vector as an external interrupt (already acknowledged: IRR → ISR).
    External(u8),
    /// An interrupt is pending but the guest cannot take it: exit when it can (interrupt
    /// window).
    IrqWindow,
    /// An NMI is pending but NMIs are blocked: exit when they are not (NMI window).
    NmiWindow,
}

/// A start-up IPI reached a vCPU that is waiting for one ([`VirtualPc::take_start`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartRequest {
    /// The vCPU to start.
    pub target: usize,
    /// The SIPI vector: the vCPU starts in real mode at CS = `vector << 8`, IP = 0
    /// (physical `vector << 12`).
    pub vector: u8,
}

impl StartRequest {
    /// The guest-physical address the vCPU starts at.
    pub fn entry(&self) -> u64 {
        u64::from(self.vector) << 12
    }
}

/// Start state of a vCPU (`start` words).
const RUNNING: u32 = 0;
/// Waiting for a SIPI (after INIT, or an AP that never ran).
const WAIT_SIPI: u32 = 1;
/// A SIPI arrived: bit 8 set, the vector in 7:0.
const SIPI: u32 = 0x100;

/// One VM's virtual PC. Built by the x86 platform when the VM config has an `ioapic`
/// device; shared (in an [`Arc`]) by the VM's vCPUs and its devices.
pub struct VirtualPc {
    config: PcConfig,
    lapics: Vec<Mutex<Lapic>>,
    ioapic: Mutex<IoApic>,
    ports: Ports,
    /// Per vCPU: [`RUNNING`], [`WAIT_SIPI`] or [`SIPI`] | vector.
    start: Vec<AtomicU32>,
    /// vCPUs with a SIPI that no vCPU has turned into a start request yet.
    start_queue: AtomicU64,
    notifier: Arc<dyn VcpuNotifier>,
}

impl fmt::Debug for VirtualPc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualPc")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether `msr` is one the local APIC answers: `IA32_APIC_BASE`, `IA32_TSC_DEADLINE`,
/// the x2APIC range.
pub fn is_apic_msr(msr: u32) -> bool {
    msr == IA32_APIC_BASE
        || msr == IA32_TSC_DEADLINE
        || (X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr)
}

/// Whether `gpa` is in the xAPIC register page.
pub fn in_xapic_page(gpa: u64) -> bool {
    gpa.wrapping_sub(XAPIC_PAGE) < LAPIC_SIZE as u64
}

/// A port read (`in`, or one INS element) whose completion `vcpu` has already set up:
/// `answer` is the virtual PC's value ([`VirtualPc::port_read`]; `None`: no PC model at
/// `port`). A PC answer is completed into `vcpu` at once (`complete_port_read`) and the
/// guest re-entered (`None`); without one, the exit that asks the VMM. Both backends route
/// their port reads through here.
#[inline(always)]
pub fn complete_read<V: ArchVCpu>(
    vcpu: &mut V,
    answer: Option<u64>,
    port: u16,
    width: AccessWidth,
) -> Option<VmExit> {
    match answer {
        Some(v) => {
            vcpu.complete_port_read(v);
            None
        }
        None => Some(VmExit::PortRead { port, width }),
    }
}

impl VirtualPc {
    /// A PC after power-on: vCPU 0 running, the others waiting for a SIPI; `notifier`
    /// wakes (kicks) a vCPU an interrupt was delivered to.
    pub fn new(config: PcConfig, notifier: Arc<dyn VcpuNotifier>) -> Result<Self, PcError> {
        if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
            return Err(PcError::VcpuCount(config.vcpus));
        }
        let tsc_per_bus_tick = tsc_per_bus_tick(config.tsc_hz);
        let pc = Self {
            config,
            lapics: (0..config.vcpus)
                .map(|vcpu| {
                    Mutex::new(Lapic::new(LapicConfig {
                        vcpu,
                        tsc_per_bus_tick,
                    }))
                })
                .collect(),
            ioapic: Mutex::new(IoApic::new()),
            ports: Ports::new(),
            start: (0..config.vcpus)
                .map(|i| AtomicU32::new(if i == 0 { RUNNING } else { WAIT_SIPI }))
                .collect(),
            start_queue: AtomicU64::new(0),
            notifier,
        };
        pc.reset();
        Ok(pc)
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &PcConfig {
        &self.config
    }

    /// Back to power-on (a VM reset): every model reset, vCPU 0 running, the others
    /// waiting for a SIPI. Call with no vCPU running.
    pub fn reset(&self) {
        let tsc_per_bus_tick = tsc_per_bus_tick(self.config.tsc_hz);
        for (vcpu, l) in self.lapics.iter().enumerate() {
            *l.lock() = Lapic::new(LapicConfig {
                vcpu,
                tsc_per_bus_tick,
            });
        }
        let mut io = IoApic::new();
        // The I/O APIC's ID: the vCPU count (the MADT's).
        let id = (self.config.vcpus as u64) << 24;
        let _ = io.mmio_write(IOREGSEL, AccessWidth::Word, 0, &mut |_| {});
        let _ = io.mmio_write(IOWIN, AccessWidth::Word, id, &mut |_| {});
        let _ = io.mmio_write(IOREGSEL, AccessWidth::Word, 0, &mut |_| {});
        *self.ioapic.lock() = io;
        self.ports.reset();
        for (i, s) in self.start.iter().enumerate() {
            s.store(if i == 0 { RUNNING } else { WAIT_SIPI }, Ordering::Release);
        }
        self.start_queue.store(0, Ordering::Release);
    }

    fn lapic(&self, vcpu: usize) -> Option<&Mutex<Lapic>> {
        self.lapics.get(vcpu)
    }

    /// RDMSR of `msr` by vCPU `vcpu` at TSC `now`: `None` if it is not an APIC MSR
    /// ([`is_apic_msr`]); `Some(Err)` → #GP(0).
    pub fn rdmsr(&self, vcpu: usize, msr: u32, now: u64) -> Option<Result<u64, MsrError>> {
        if !is_apic_msr(msr) {
            return None;
        }
        let l = self.lapic(vcpu)?;
        Some(l.lock().rdmsr(msr, now))
    }

    /// WRMSR of `value` to `msr` by vCPU `vcpu` at TSC `now`: `None` if it is not an APIC
    /// MSR; `Some(Err)` → #GP(0). IPIs and EOIs are routed before it returns; check
    /// [`VirtualPc::take_start`] after it.
    pub fn wrmsr(
        &self,
        vcpu: usize,
        msr: u32,
        value: u64,
        now: u64,
    ) -> Option<Result<(), MsrError>> {
        if !is_apic_msr(msr) {
            return None;
        }
        let l = self.lapic(vcpu)?;
        let effect = l.lock().wrmsr(msr, value, now);
        Some(effect.map(|e| self.apply(vcpu, e)))
    }

    /// A load of `width` at `gpa` (in [`XAPIC_PAGE`]) by vCPU `vcpu`: its own local APIC's
    /// register. An access the model refuses (width, alignment) reads 0.
    pub fn xapic_read(&self, vcpu: usize, gpa: u64, width: AccessWidth, now: u64) -> u64 {
        let offset = gpa.wrapping_sub(XAPIC_PAGE) as usize;
        self.lapic(vcpu)
            .and_then(|l| l.lock().mmio_read(offset, width, now).ok())
            .unwrap_or(0)
    }

    /// A store of `value` at `gpa` (in [`XAPIC_PAGE`]) by vCPU `vcpu`; IPIs and EOIs are
    /// routed before it returns; check [`VirtualPc::take_start`] after it. An access the
    /// model refuses is dropped.
    pub fn xapic_write(&self, vcpu: usize, gpa: u64, width: AccessWidth, value: u64, now: u64) {
        let offset = gpa.wrapping_sub(XAPIC_PAGE) as usize;
        let Some(l) = self.lapic(vcpu) else {
            return;
        };
        let effect = l.lock().mmio_write(offset, width, value, now);
        if let Ok(e) = effect {
            self.apply(vcpu, e);
        }
    }

    /// `in` of `width` from `port` at TSC `now`: `None` if no PC model is at `port` (the
    /// exit goes to the VM's devices); a refused width reads all ones.
    pub fn port_read(&self, port: u16, width: AccessWidth, now: u64) -> Option<u64> {
        self.ports.read(port, width, now, &self.config)
    }

    /// `out` of `value` to `port` at TSC `now`: `None` if no PC model is at `port`.
    pub fn port_write(
        &self,
        port: u16,
        width: AccessWidth,
        value: u64,
        now: u64,
    ) -> Option<PortWrite> {
        self.ports.write(port, width, value, now, &self.config)
    }

    /// A start request for a vCPU that got a SIPI while waiting for one, if any (each is
    /// handed out once). The calling vCPU turns it into `VmExit::CpuUp` with
    /// [`StartRequest::entry`].
    pub fn take_start(&self) -> Option<StartRequest> {
        let mut q = self.start_queue.load(Ordering::Acquire);
        loop {
            if q == 0 {
                return None;
            }
            let target = q.trailing_zeros() as usize;
            match self.start_queue.compare_exchange(
                q,
                q & !(1 << target),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let s = self.start.get(target)?.load(Ordering::Acquire);
                    if s & SIPI != 0 {
                        return Some(StartRequest {
                            target,
                            vector: s as u8,
                        });
                    }
                    q &= !(1 << target);
                }
                Err(now) => q = now,
            }
        }
    }

    /// vCPU `vcpu` is being set up to run: `Some(vector)` if a SIPI started it (it begins
    /// in real mode at CS = `vector << 8`, IP = 0), `None` otherwise (the entry contract,
    /// e.g. a start by hypercall). Either way it counts as running from now on.
    pub fn take_startup_vector(&self, vcpu: usize) -> Option<u8> {
        let s = self.start.get(vcpu)?.swap(RUNNING, Ordering::AcqRel);
        (s & SIPI != 0).then_some(s as u8)
    }

    /// Advances vCPU `vcpu`'s timers to `now`: its local APIC timer, and on vCPU 0 the PIT
    /// (a rising channel 0 output pulses I/O APIC input [`PIT_GSI`]).
    fn poll_timers(&self, vcpu: usize, now: u64) {
        if let Some(l) = self.lapic(vcpu) {
            let mut l = l.lock();
            if l.next_deadline().is_some_and(|d| d <= now) {
                l.tick(now);
            }
        }
        if vcpu == 0 && self.ports.poll_irq0(now, &self.config) {
            self.set_gsi(PIT_GSI, true);
            self.set_gsi(PIT_GSI, false);
        }
    }

    /// What vCPU `vcpu` should inject before entering the guest at TSC `now`, given what the
    /// guest can take (`ready`). Timers are advanced first. An NMI or vector returned is
    /// taken out of the local APIC (the caller must inject it); a window means "exit when
    /// the guest can take it, then ask again".
    pub fn next_injection(&self, vcpu: usize, now: u64, ready: Ready) -> Injection {
        self.poll_timers(vcpu, now);
        let Some(l) = self.lapic(vcpu) else {
            return Injection::None;
        };
        let mut l = l.lock();
        if l.take_nmi() {
            if ready.nmi {
                return Injection::Nmi;
            }
            l.raise_nmi();
            return Injection::NmiWindow;
        }
        match l.pending_vector() {
            Some(_) if ready.irq => l.acknowledge().map_or(Injection::None, Injection::External),
            Some(_) => Injection::IrqWindow,
            None => Injection::None,
        }
    }

    /// Whether halted vCPU `vcpu` has something to wake for at TSC `now`: an NMI, or (with
    /// `interrupts_enabled`, the guest's RFLAGS.IF) an interrupt it can take. Advances its
    /// timers.
    pub fn wakeup_pending(&self, vcpu: usize, now: u64, interrupts_enabled: bool) -> bool {
        self.poll_timers(vcpu, now);
        let Some(l) = self.lapic(vcpu) else {
            return true;
        };
        let mut l = l.lock();
        if l.take_nmi() {
            l.raise_nmi();
            return true;
        }
        interrupts_enabled && l.pending_vector().is_some()
    }

    /// The TSC value at which vCPU `vcpu` next has a timer event (its local APIC timer; on
    /// vCPU 0 also the PIT's next IRQ 0), if any: the host timer is armed for it while the
    /// guest runs, and a halted vCPU sleeps until it.
    pub fn deadline(&self, vcpu: usize) -> Option<u64> {
        let apic = self.lapic(vcpu).and_then(|l| l.lock().next_deadline());
        let pit = if vcpu == 0 {
            self.ports.next_irq0_tsc(&self.config)
        } else {
            None
        };
        match (apic, pit) {
            (Some(a), Some(p)) => Some(a.min(p)),
            (a, p) => a.or(p),
        }
    }

    /// Sets I/O APIC input `gsi` to `high` (a device's interrupt line) and delivers what
    /// it sends. An input the I/O APIC does not have is ignored.
    pub fn set_gsi(&self, gsi: u32, high: bool) {
        let mut io = self.ioapic.lock();
        io.set_line(gsi as usize, high, &mut |m| self.deliver(None, m));
    }

    /// Interrupt line `gsi` of the VM (an I/O APIC input), for a device's `irq`; `None` past
    /// the I/O APIC's 24 inputs.
    pub fn irq_line(self: &Arc<Self>, gsi: u32) -> Option<Arc<dyn IrqLine>> {
        ((gsi as usize) < IOAPIC_PINS).then(|| {
            Arc::new(GsiLine {
                pc: self.clone(),
                gsi,
            }) as Arc<dyn IrqLine>
        })
    }

    /// The I/O APIC's register window, as a device of the VM.
    pub fn ioapic_device(self: &Arc<Self>) -> Arc<dyn MmioDevice> {
        Arc::new(IoApicWindow { pc: self.clone() })
    }

    /// Applies what a local APIC register write of vCPU `from` asks for.
    fn apply(&self, from: usize, effect: Option<Effect>) {
        match effect {
            Some(Effect::Ipi(m)) => self.deliver(Some(from), m),
            Some(Effect::Eoi(v)) => {
                let mut io = self.ioapic.lock();
                io.eoi(v, &mut |m| self.deliver(None, m));
            }
            None => {}
        }
    }

    /// Delivers `m` (from vCPU `from`, or a device) to its targets, and kicks each target
    /// that got something (but the sender).
    fn deliver(&self, from: Option<usize>, m: Message) {
        let n = self.lapics.len();
        let set = m.dest.resolve(n, |i, mda| {
            self.lapics
                .get(i)
                .is_some_and(|l| l.lock().logical_match(mda))
        });
        let targets = match m.delivery {
            Delivery::LowestPriority => {
                let mut one = VcpuSet::EMPTY;
                if let Some(i) = set.first() {
                    one.insert(i);
                }
                one
            }
            _ => set,
        };
        for i in targets.iter() {
            let Some(l) = self.lapics.get(i) else {
                continue;
            };
            let kick = match m.delivery {
                Delivery::Fixed | Delivery::LowestPriority => l.lock().accept(m.vector, m.level),
                Delivery::Nmi => {
                    l.lock().raise_nmi();
                    true
                }
                Delivery::Init => {
                    // A running vCPU is not reset (no INIT while the guest runs): only its
                    // local APIC is, and a vCPU that never ran waits for its SIPI again.
                    l.lock().init();
                    let _ = self.start[i].compare_exchange(
                        SIPI | self.start[i].load(Ordering::Acquire) & 0xFF,
                        WAIT_SIPI,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    false
                }
                Delivery::StartUp => {
                    if self.start[i]
                        .compare_exchange(
                            WAIT_SIPI,
                            SIPI | u32::from(m.vector),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        self.start_queue.fetch_or(1 << i, Ordering::AcqRel);
                    }
                    false
                }
                Delivery::Smi | Delivery::ExtInt => false,
            };
            if kick && from != Some(i) {
                self.notifier.notify(i);
            }
        }
    }
}

/// One I/O APIC input as a device's interrupt line.
struct GsiLine {
    pc: Arc<VirtualPc>,
    gsi: u32,
}

impl IrqLine for GsiLine {
    fn set_level(&self, high: bool) {
        self.pc.set_gsi(self.gsi, high);
    }
}

/// The I/O APIC's MMIO window.
struct IoApicWindow {
    pc: Arc<VirtualPc>,
}

impl MmioDevice for IoApicWindow {
    fn name(&self) -> &str {
        "ioapic"
    }

    fn size(&self) -> usize {
        IOAPIC_SIZE
    }

    fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        self.pc.ioapic.lock().mmio_read(offset, width)
    }

    fn write(&self, offset: usize, width: AccessWidth, value: u64) -> Result<(), DeviceError> {
        let pc = &self.pc;
        let mut io = pc.ioapic.lock();
        io.mmio_write(offset, width, value, &mut |m| pc.deliver(None, m))
    }
}
