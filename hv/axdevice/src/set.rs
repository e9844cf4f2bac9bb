//! A VM's device address maps (MMIO and I/O ports) and what happens to accesses nobody
//! claims.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use axdevice_base::{AccessWidth, DeviceError, MmioDevice};
use log::warn;
use spin::Mutex;

use crate::unclaimed::{clock_ms, Detail, Space, Summary, UnclaimedLog};

/// The last I/O port (ports are 16-bit).
pub const PORT_LAST: u16 = u16::MAX;

/// What a guest gets for an MMIO access no device handles (no device at the address, the
/// access runs past a device's end, or the device refused it). The same three choices as
/// the VM config. For port I/O see [`UnclaimedPolicy::port_outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnclaimedPolicy {
    /// Give the guest a data abort / access fault.
    Fault,
    /// Reads return 0, writes are ignored.
    ReadZero,
    /// Stop the VM.
    Stop,
}

impl UnclaimedPolicy {
    /// What this policy does to an access that was a read (`true`) or a write.
    pub fn outcome(self, is_read: bool) -> MmioOutcome {
        match (self, is_read) {
            (Self::Fault, _) => MmioOutcome::InjectFault,
            (Self::ReadZero, true) => MmioOutcome::Read(0),
            (Self::ReadZero, false) => MmioOutcome::Written,
            (Self::Stop, _) => MmioOutcome::StopVm,
        }
    }

    /// What this policy does to an unclaimed port access of `width` that was a read
    /// (`true`) or a write. Port I/O has no architectural fault for an absent device: under
    /// `Fault` a read gives all ones, as on PC hardware (an undriven bus), and a write is
    /// ignored; `ReadZero` reads 0; `Stop` stops the VM. Every one is logged.
    pub fn port_outcome(self, is_read: bool, width: AccessWidth) -> PortOutcome {
        match (self, is_read) {
            (Self::Fault, true) => PortOutcome::Read(width.mask()),
            (Self::ReadZero, true) => PortOutcome::Read(0),
            (Self::Fault | Self::ReadZero, false) => PortOutcome::Written,
            (Self::Stop, _) => PortOutcome::StopVm,
        }
    }

    /// What this policy does to an access there is no value to read or write for (one the
    /// vCPU could not decode, an instruction fetch): a fault, unless the VM is stopped.
    pub fn undecoded_outcome(self) -> MmioOutcome {
        match self {
            Self::Stop => MmioOutcome::StopVm,
            Self::Fault | Self::ReadZero => MmioOutcome::InjectFault,
        }
    }
}

/// What the vCPU loop does after an MMIO exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioOutcome {
    /// Complete the guest's load with this value (already masked to the access width).
    Read(u64),
    /// The store is done; resume the guest after the instruction.
    Written,
    /// Inject a fault for the access into the guest.
    InjectFault,
    /// Stop the VM.
    StopVm,
}

/// What the vCPU loop does after a port I/O exit (there is no fault to inject: see
/// [`UnclaimedPolicy::port_outcome`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortOutcome {
    /// Complete the guest's `in` with this value (already masked to the access width).
    Read(u64),
    /// The `out` is done; resume the guest after the instruction.
    Written,
    /// Stop the VM.
    StopVm,
}

/// Why [`DeviceSet::add`] or [`DeviceSet::add_port`] refused a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSetError {
    /// The new device's range overlaps one already in the set (in the same space).
    Overlap {
        /// The address space (MMIO or ports).
        space: Space,
        /// The new device's name.
        name: String,
        /// The new device's base.
        base: u64,
        /// The name of the device it overlaps.
        existing: String,
        /// That device's base.
        existing_base: u64,
        /// That device's size.
        existing_size: u64,
    },
    /// The device's `size()` is zero.
    ZeroSize {
        /// The device's name.
        name: String,
    },
    /// `base + size` is beyond the end of the 64-bit address space, or beyond the last
    /// port.
    Overflow {
        /// The address space (MMIO or ports).
        space: Space,
        /// The device's name.
        name: String,
        /// The requested base.
        base: u64,
        /// The device's size.
        size: u64,
    },
}

impl fmt::Display for DeviceSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |space: &Space| match space {
            Space::Mmio => "at",
            Space::Port => "at port",
        };
        match self {
            Self::Overlap {
                space,
                name,
                base,
                existing,
                existing_base,
                existing_size,
            } => write!(
                f,
                "device {name} {} {base:#x} overlaps {existing} {} {existing_base:#x} \
                 (size {existing_size:#x})",
                at(space),
                at(space)
            ),
            Self::ZeroSize { name } => write!(f, "device {name} has size 0"),
            Self::Overflow {
                space: Space::Mmio,
                name,
                base,
                size,
            } => write!(
                f,
                "device {name} at {base:#x} with size {size:#x} runs past the end of the \
                 address space"
            ),
            Self::Overflow {
                space: Space::Port,
                name,
                base,
                size,
            } => write!(
                f,
                "device {name} at port {base:#x} with {size:#x} ports runs past the last \
                 port ({PORT_LAST:#x})"
            ),
        }
    }
}

/// Access counters of one [`DeviceSet`]. (The VM counts every MMIO exit itself, by kind;
/// the set counts only what is its own to know.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// The MMIO reads and writes no device handled (the policy applied).
    pub unclaimed: u64,
    /// The port reads and writes no device handled.
    pub unclaimed_ports: u64,
}

struct Entry {
    base: u64,
    /// Last byte the device claims (inclusive, so a device may end at `u64::MAX`).
    last: u64,
    dev: Arc<dyn MmioDevice>,
}

/// The devices of one address space, sorted by base, non-overlapping.
struct Ranges {
    space: Space,
    /// The last address of the space.
    end: u64,
    /// Sorted by `base`, non-overlapping.
    entries: Vec<Entry>,
    /// Index in `entries` of the device the last successful lookup found: guests tend to
    /// access the same device many times in a row (a UART polled for every character). Only
    /// a hint: any value is checked before use.
    last_hit: AtomicUsize,
}

impl Ranges {
    const fn new(space: Space, end: u64) -> Self {
        Self {
            space,
            end,
            entries: Vec::new(),
            last_hit: AtomicUsize::new(0),
        }
    }

    /// Maps `dev` at `base`, covering `base .. base + dev.size()`.
    fn add(&mut self, base: u64, dev: Arc<dyn MmioDevice>) -> Result<(), DeviceSetError> {
        let name = || String::from(dev.name());
        let space = self.space;
        let size = u64::try_from(dev.size()).map_err(|_| DeviceSetError::Overflow {
            space,
            name: name(),
            base,
            size: u64::MAX,
        })?;
        if size == 0 {
            return Err(DeviceSetError::ZeroSize { name: name() });
        }
        let last = base
            .checked_add(size - 1)
            .filter(|&last| last <= self.end)
            .ok_or_else(|| DeviceSetError::Overflow {
                space,
                name: name(),
                base,
                size,
            })?;
        // First entry whose base is above ours; only it and the one before can overlap.
        let idx = self.entries.partition_point(|e| e.base <= base);
        let prev = idx.checked_sub(1).and_then(|i| self.entries.get(i));
        let next = self.entries.get(idx);
        for e in [prev, next].into_iter().flatten() {
            if e.base <= last && base <= e.last {
                return Err(DeviceSetError::Overlap {
                    space,
                    name: name(),
                    base,
                    existing: String::from(e.dev.name()),
                    existing_base: e.base,
                    existing_size: (e.last - e.base).saturating_add(1),
                });
            }
        }
        self.entries.insert(idx, Entry { base, last, dev });
        Ok(())
    }

    /// The entry whose range contains `addr`.
    #[inline]
    fn entry(&self, addr: u64) -> Option<&Entry> {
        let hint = self.last_hit.load(Ordering::Relaxed);
        if let Some(e) = self.entries.get(hint) {
            if e.base <= addr && addr <= e.last {
                return Some(e);
            }
        }
        let idx = self
            .entries
            .partition_point(|e| e.base <= addr)
            .checked_sub(1)?;
        let e = self.entries.get(idx)?;
        if addr > e.last {
            return None;
        }
        self.last_hit.store(idx, Ordering::Relaxed);
        Some(e)
    }

    /// The device whose range contains `addr`, and the offset of `addr` inside it.
    fn find(&self, addr: u64) -> Option<(&Arc<dyn MmioDevice>, usize)> {
        let e = self.entry(addr)?;
        let offset = usize::try_from(addr - e.base).ok()?;
        Some((&e.dev, offset))
    }

    /// Like [`Ranges::find`], but only when the whole access `addr .. addr + width` lies
    /// inside one device.
    #[inline]
    fn find_access(&self, addr: u64, width: AccessWidth) -> Option<(&Arc<dyn MmioDevice>, usize)> {
        let e = self.entry(addr)?;
        // The access's last byte, against the device's (`size() - 1` past its base).
        let last = addr.checked_add(width.size() as u64 - 1)?;
        if last > e.last {
            return None;
        }
        let offset = usize::try_from(addr - e.base).ok()?;
        Some((&e.dev, offset))
    }
}

/// The emulated devices of one VM: an MMIO map by guest-physical address and, on
/// architectures with port I/O, a port map by 16-bit port. A port device is an
/// [`MmioDevice`] too: it sees offsets from its first port, `0..size()` ports.
///
/// Ranges never overlap within a space (checked by [`DeviceSet::add`] and
/// [`DeviceSet::add_port`]); a lookup tries the device the previous one found, then does a
/// binary search. The access methods take `&self` and may be called from several vCPUs at
/// once.
pub struct DeviceSet {
    vm_name: String,
    policy: UnclaimedPolicy,
    mmio: Ranges,
    ports: Ranges,
    log: Mutex<UnclaimedLog>,
    port_log: Mutex<UnclaimedLog>,
}

#[derive(Clone, Copy)]
enum Kind {
    Read,
    Write(u64),
}

impl DeviceSet {
    /// An empty set for the VM `vm_name` (used in log lines) that treats unclaimed accesses
    /// according to `policy`.
    pub fn new(vm_name: impl Into<String>, policy: UnclaimedPolicy) -> Self {
        Self {
            vm_name: vm_name.into(),
            policy,
            mmio: Ranges::new(Space::Mmio, u64::MAX),
            ports: Ranges::new(Space::Port, PORT_LAST as u64),
            log: Mutex::new(UnclaimedLog::in_space(Space::Mmio)),
            port_log: Mutex::new(UnclaimedLog::in_space(Space::Port)),
        }
    }

    /// The VM's name.
    pub fn vm_name(&self) -> &str {
        &self.vm_name
    }

    /// The unclaimed-access policy.
    pub fn policy(&self) -> UnclaimedPolicy {
        self.policy
    }

    /// How many devices are in the set (both spaces).
    pub fn len(&self) -> usize {
        self.mmio.entries.len() + self.ports.entries.len()
    }

    /// Whether the set has no devices.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The MMIO devices and their bases, lowest base first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Arc<dyn MmioDevice>)> + '_ {
        self.mmio.entries.iter().map(|e| (e.base, &e.dev))
    }

    /// The port devices and their first ports, lowest first.
    pub fn iter_ports(&self) -> impl Iterator<Item = (u16, &Arc<dyn MmioDevice>)> + '_ {
        // Every entry lies within 0..=PORT_LAST (checked by `add_port`).
        self.ports.entries.iter().map(|e| (e.base as u16, &e.dev))
    }

    /// Maps `dev` at guest-physical `base`, covering `base .. base + dev.size()`.
    ///
    /// Refuses a device of size zero, one that would run past the end of the address space,
    /// and one that overlaps a device already in the set.
    pub fn add(&mut self, base: u64, dev: Arc<dyn MmioDevice>) -> Result<(), DeviceSetError> {
        self.mmio.add(base, dev)
    }

    /// Maps `dev` at I/O port `port`, covering ports `port .. port + dev.size()`.
    ///
    /// Refuses a device of size zero, one that would run past port 0xFFFF, and one that
    /// overlaps a port device already in the set.
    pub fn add_port(&mut self, port: u16, dev: Arc<dyn MmioDevice>) -> Result<(), DeviceSetError> {
        self.ports.add(u64::from(port), dev)
    }

    /// The MMIO device whose range contains `gpa`, and the offset of `gpa` inside it.
    pub fn find(&self, gpa: u64) -> Option<(&Arc<dyn MmioDevice>, usize)> {
        self.mmio.find(gpa)
    }

    /// Like [`DeviceSet::find`], but only when the whole access `gpa .. gpa + width` lies
    /// inside one device; an access that straddles a device's end is unclaimed.
    pub fn find_access(
        &self,
        gpa: u64,
        width: AccessWidth,
    ) -> Option<(&Arc<dyn MmioDevice>, usize)> {
        self.mmio.find_access(gpa, width)
    }

    /// A load of `width` at `gpa` by vCPU `vcpu`: the device's answer, or the policy's.
    #[inline]
    pub fn mmio_read(&self, vcpu: usize, gpa: u64, width: AccessWidth) -> MmioOutcome {
        self.dispatch(vcpu, gpa, width, Kind::Read)
    }

    /// A store of `value` (its low `width` bits) at `gpa` by vCPU `vcpu`.
    #[inline]
    pub fn mmio_write(&self, vcpu: usize, gpa: u64, width: AccessWidth, value: u64) -> MmioOutcome {
        self.dispatch(vcpu, gpa, width, Kind::Write(value & width.mask()))
    }

    /// An `in` of `width` from `port` by vCPU `vcpu`: the device's answer, or the policy's
    /// ([`UnclaimedPolicy::port_outcome`]). An access that runs past port 0xFFFF or a
    /// device's last port is unclaimed.
    #[inline]
    pub fn port_read(&self, vcpu: usize, port: u16, width: AccessWidth) -> PortOutcome {
        self.port_dispatch(vcpu, port, width, Kind::Read)
    }

    /// An `out` of `value` (its low `width` bits) to `port` by vCPU `vcpu`.
    #[inline]
    pub fn port_write(
        &self,
        vcpu: usize,
        port: u16,
        width: AccessWidth,
        value: u64,
    ) -> PortOutcome {
        self.port_dispatch(vcpu, port, width, Kind::Write(value & width.mask()))
    }

    /// The counters so far.
    pub fn stats(&self) -> DeviceStats {
        DeviceStats {
            unclaimed: self.log.lock().total(),
            unclaimed_ports: self.port_log.lock().total(),
        }
    }

    /// How many distinct unclaimed addresses have had a log line of their own (MMIO).
    pub fn unclaimed_logged(&self) -> usize {
        self.log.lock().logged()
    }

    /// The unclaimed (and undecoded) MMIO accesses so far, counted per address range.
    pub fn unclaimed_summary(&self) -> Summary {
        self.log.lock().summary()
    }

    /// The unclaimed port accesses so far, counted per range of ports.
    pub fn unclaimed_port_summary(&self) -> Summary {
        self.port_log.lock().summary()
    }

    /// An access at `gpa` that never became an MMIO access and that the VM's memory does
    /// not resolve either: one the vCPU could not decode (a load/store pair, an atomic, a
    /// cache maintenance operation...) or an instruction fetch. `what` says which ("read",
    /// "write", "instruction fetch"). It is counted and logged like an unclaimed access, in
    /// the same bounded log, and the policy decides, except that there is nothing to read
    /// as zero: `ReadZero` faults it too. Returns [`MmioOutcome::InjectFault`] or
    /// [`MmioOutcome::StopVm`].
    #[cold]
    #[inline(never)]
    pub fn undecoded(&self, gpa: u64, what: &str) -> MmioOutcome {
        let outcome = self.policy.undecoded_outcome();
        self.record(&self.log, gpa, mmio_action(outcome), |action, more| {
            warn!(
                "vm {}: {what} at {gpa:#x}, outside its memory and not an access that can be \
                 emulated: {action}{more}",
                self.vm_name
            )
        });
        outcome
    }

    #[inline(always)]
    fn dispatch(&self, vcpu: usize, gpa: u64, width: AccessWidth, kind: Kind) -> MmioOutcome {
        let Some((dev, offset)) = self.mmio.find_access(gpa, width) else {
            return self.unclaimed(gpa, width, kind, None);
        };
        let result = match kind {
            Kind::Read => dev
                .read_by(vcpu, offset, width)
                .map(|v| MmioOutcome::Read(v & width.mask())),
            Kind::Write(value) => dev
                .write_by(vcpu, offset, width, value)
                .map(|()| MmioOutcome::Written),
        };
        result.unwrap_or_else(|err| self.unclaimed(gpa, width, kind, Some((dev, offset, err))))
    }

    #[inline(always)]
    fn port_dispatch(&self, vcpu: usize, port: u16, width: AccessWidth, kind: Kind) -> PortOutcome {
        let Some((dev, offset)) = self.ports.find_access(u64::from(port), width) else {
            return self.unclaimed_port(port, width, kind, None);
        };
        let result = match kind {
            Kind::Read => dev
                .read_by(vcpu, offset, width)
                .map(|v| PortOutcome::Read(v & width.mask())),
            Kind::Write(value) => dev
                .write_by(vcpu, offset, width, value)
                .map(|()| PortOutcome::Written),
        };
        result
            .unwrap_or_else(|err| self.unclaimed_port(port, width, kind, Some((dev, offset, err))))
    }

    #[cold]
    #[inline(never)]
    fn unclaimed(
        &self,
        gpa: u64,
        width: AccessWidth,
        kind: Kind,
        refused: Option<(&Arc<dyn MmioDevice>, usize, DeviceError)>,
    ) -> MmioOutcome {
        let outcome = self.policy.outcome(matches!(kind, Kind::Read));
        self.record(&self.log, gpa, mmio_action(outcome), |action, more| {
            let access = match kind {
                Kind::Read => alloc::format!("{width} read"),
                Kind::Write(v) => alloc::format!("{width} write of {v:#x}"),
            };
            match refused {
                Some((dev, offset, err)) => warn!(
                    "vm {}: {access} at {gpa:#x} refused by {} at offset {offset:#x} ({err}): \
                     {action}{more}",
                    self.vm_name,
                    dev.name()
                ),
                None => warn!(
                    "vm {}: unclaimed {access} at {gpa:#x}: {action}{more}",
                    self.vm_name
                ),
            }
        });
        outcome
    }

    #[cold]
    #[inline(never)]
    fn unclaimed_port(
        &self,
        port: u16,
        width: AccessWidth,
        kind: Kind,
        refused: Option<(&Arc<dyn MmioDevice>, usize, DeviceError)>,
    ) -> PortOutcome {
        let outcome = self.policy.port_outcome(matches!(kind, Kind::Read), width);
        let action = match outcome {
            PortOutcome::Read(0) => "read as zero",
            PortOutcome::Read(_) => "read as all ones",
            PortOutcome::Written => "write ignored",
            PortOutcome::StopVm => "stopping the VM",
        };
        self.record(&self.port_log, u64::from(port), action, |action, more| {
            let access = match kind {
                Kind::Read => alloc::format!("{width} port read"),
                Kind::Write(v) => alloc::format!("{width} port write of {v:#x}"),
            };
            match refused {
                Some((dev, offset, err)) => warn!(
                    "vm {}: {access} at port {port:#x} refused by {} at offset {offset:#x} \
                     ({err}): {action}{more}",
                    self.vm_name,
                    dev.name()
                ),
                None => warn!(
                    "vm {}: unclaimed {access} at port {port:#x}: {action}{more}",
                    self.vm_name
                ),
            }
        });
        outcome
    }

    /// Counts an unclaimed access at `addr` in `log` and, when the bounded log gives it a
    /// line, has `line` write it, given what was done (`action`) and the line's end (a note
    /// when a logging budget is spent, or nothing); then the summary line, when one is due.
    fn record(
        &self,
        log: &Mutex<UnclaimedLog>,
        addr: u64,
        action: &str,
        line: impl FnOnce(&str, &str),
    ) {
        let now = clock_ms();
        let (decision, summary, space) = {
            let mut record = log.lock();
            let decision = record.note(addr, now);
            let summary = decision.summary.then(|| record.take_summary());
            (decision, summary, record.space())
        };
        if decision.detail != Detail::Quiet {
            line(action, decision.detail.note_in(space));
        }
        if let Some(summary) = summary {
            warn!("vm {}: {summary}", self.vm_name);
        }
    }
}

/// What was done to an unclaimed MMIO access, in words.
fn mmio_action(outcome: MmioOutcome) -> &'static str {
    match outcome {
        MmioOutcome::InjectFault => "fault injected",
        MmioOutcome::Read(_) => "read as zero",
        MmioOutcome::Written => "write ignored",
        MmioOutcome::StopVm => "stopping the VM",
    }
}

impl fmt::Debug for DeviceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Devices<'a>(&'a [Entry]);
        impl fmt::Debug for Devices<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut list = f.debug_list();
                for e in self.0 {
                    list.entry(&format_args!(
                        "{} @ {:#x}..={:#x}",
                        e.dev.name(),
                        e.base,
                        e.last
                    ));
                }
                list.finish()
            }
        }
        f.debug_struct("DeviceSet")
            .field("vm_name", &self.vm_name)
            .field("policy", &self.policy)
            .field("devices", &Devices(&self.mmio.entries))
            .field("ports", &Devices(&self.ports.entries))
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uart::Pl011;
    use crate::unclaimed::DETAIL_LIMIT;
    use axdevice_base::ConsoleSink;
    use std::string::ToString;
    use std::sync::{Mutex as StdMutex, Once};
    use AccessWidth::*;

    /// A device that answers every read with all ones (to check masking), records writes,
    /// and refuses offset 0x10.
    struct Fake {
        name: &'static str,
        size: usize,
        writes: StdMutex<Vec<(usize, AccessWidth, u64)>>,
    }

    impl Fake {
        fn new(name: &'static str, size: usize) -> Arc<Self> {
            Arc::new(Self {
                name,
                size,
                writes: StdMutex::new(Vec::new()),
            })
        }
    }

    impl MmioDevice for Fake {
        fn name(&self) -> &str {
            self.name
        }
        fn size(&self) -> usize {
            self.size
        }
        fn read(&self, offset: usize, _width: AccessWidth) -> Result<u64, DeviceError> {
            if offset == 0x10 {
                return Err(DeviceError::BadWidth);
            }
            Ok(u64::MAX)
        }
        fn write(&self, offset: usize, width: AccessWidth, value: u64) -> Result<(), DeviceError> {
            if offset == 0x10 {
                return Err(DeviceError::BadWidth);
            }
            self.writes.lock().unwrap().push((offset, width, value));
            Ok(())
        }
    }

    // A logger that keeps every record, so tests can count WARN lines for their VM.
    struct TestLogger;
    static RECORDS: StdMutex<Vec<(log::Level, std::string::String)>> = StdMutex::new(Vec::new());
    static LOGGER: TestLogger = TestLogger;
    static INIT: Once = Once::new();

    impl log::Log for TestLogger {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            RECORDS
                .lock()
                .unwrap()
                .push((record.level(), std::format!("{}", record.args())));
        }
        fn flush(&self) {}
    }

    fn init_logger() {
        INIT.call_once(|| {
            log::set_logger(&LOGGER).unwrap();
            log::set_max_level(log::LevelFilter::Trace);
        });
    }

    /// WARN lines that mention `vm` (test VM names are unique, tests run in parallel).
    fn warnings_for(vm: &str) -> Vec<std::string::String> {
        let tag = std::format!("vm {vm}:");
        RECORDS
            .lock()
            .unwrap()
            .iter()
            .filter(|(lvl, m)| *lvl == log::Level::Warn && m.starts_with(&tag))
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn set_with(policy: UnclaimedPolicy) -> DeviceSet {
        let mut set = DeviceSet::new("t", policy);
        set.add(0x1000, Fake::new("a", 0x100)).unwrap();
        set.add(0x3000, Fake::new("b", 0x1000)).unwrap();
        set
    }

    #[test]
    fn add_keeps_sorted_and_refuses_overlap() {
        let mut set = DeviceSet::new("overlap", UnclaimedPolicy::Fault);
        assert!(set.is_empty());
        set.add(0x3000, Fake::new("c", 0x1000)).unwrap();
        set.add(0x1000, Fake::new("a", 0x1000)).unwrap();
        // touching ranges are fine
        set.add(0x2000, Fake::new("b", 0x1000)).unwrap();
        assert_eq!(set.len(), 3);
        let bases: Vec<u64> = set.iter().map(|(b, _)| b).collect();
        assert_eq!(bases, [0x1000, 0x2000, 0x3000]);

        for (base, size) in [
            (0x1000, 0x1000),  // identical
            (0x0800, 0x0801),  // last byte into a
            (0x1fff, 1),       // a's last byte
            (0x3fff, 0x10),    // starts in c's last byte
            (0x0000, 0x10000), // covers everything
            (0x2800, 0x100),   // inside b
        ] {
            let err = set.add(base, Fake::new("x", size)).unwrap_err();
            assert!(
                matches!(err, DeviceSetError::Overlap { ref name, .. } if name == "x"),
                "{base:#x}+{size:#x}: {err:?}"
            );
            assert!(err.to_string().contains("overlaps"));
        }
        let err = set.add(0x2800, Fake::new("x", 0x100)).unwrap_err();
        assert_eq!(
            err,
            DeviceSetError::Overlap {
                space: Space::Mmio,
                name: "x".into(),
                base: 0x2800,
                existing: "b".into(),
                existing_base: 0x2000,
                existing_size: 0x1000,
            }
        );
        assert_eq!(set.len(), 3);
        set.add(0x0fff, Fake::new("d", 1)).unwrap();
        set.add(0x4000, Fake::new("e", 1)).unwrap();
        assert_eq!(set.len(), 5);
    }

    #[test]
    fn add_refuses_zero_size_and_overflow() {
        let mut set = DeviceSet::new("sizes", UnclaimedPolicy::Fault);
        assert_eq!(
            set.add(0x1000, Fake::new("z", 0)),
            Err(DeviceSetError::ZeroSize { name: "z".into() })
        );
        assert!(matches!(
            set.add(u64::MAX, Fake::new("o", 2)),
            Err(DeviceSetError::Overflow {
                base: u64::MAX,
                size: 2,
                ..
            })
        ));
        assert!(matches!(
            set.add(u64::MAX - 0xfff, Fake::new("o", 0x1001)),
            Err(DeviceSetError::Overflow { .. })
        ));
        // ending exactly at the top of the address space is fine
        set.add(u64::MAX - 0xfff, Fake::new("top", 0x1000)).unwrap();
        set.add(u64::MAX - 0x1fff, Fake::new("below", 0x1000))
            .unwrap();
        let (dev, off) = set.find(u64::MAX).unwrap();
        assert_eq!((dev.name(), off), ("top", 0xfff));
        assert_eq!(set.mmio_read(0, u64::MAX, Byte), MmioOutcome::Read(0xff));
        assert_eq!(
            set.mmio_read(0, u64::MAX - 1, Word),
            MmioOutcome::InjectFault
        );
        for e in [
            DeviceSetError::ZeroSize { name: "z".into() },
            DeviceSetError::Overflow {
                space: Space::Mmio,
                name: "o".into(),
                base: 1,
                size: 2,
            },
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn find_at_edges() {
        let set = set_with(UnclaimedPolicy::Fault);
        let name_off = |gpa| set.find(gpa).map(|(d, o)| (d.name().to_string(), o));
        assert_eq!(name_off(0x0fff), None);
        assert_eq!(name_off(0x1000), Some(("a".into(), 0)));
        assert_eq!(name_off(0x10ff), Some(("a".into(), 0xff)));
        assert_eq!(name_off(0x1100), None);
        assert_eq!(name_off(0x2fff), None);
        assert_eq!(name_off(0x3000), Some(("b".into(), 0)));
        assert_eq!(name_off(0x3fff), Some(("b".into(), 0xfff)));
        assert_eq!(name_off(0x4000), None);
        assert_eq!(name_off(0), None);
        assert_eq!(name_off(u64::MAX), None);
        assert!(DeviceSet::new("e", UnclaimedPolicy::Fault)
            .find(0)
            .is_none());
    }

    #[test]
    fn straddling_access_is_unclaimed() {
        let set = set_with(UnclaimedPolicy::ReadZero);
        assert!(set.find_access(0x10fc, Word).is_some());
        assert!(set.find_access(0x10fd, Word).is_none());
        assert!(set.find_access(0x10ff, Byte).is_some());
        assert!(set.find_access(0x10ff, Half).is_none());
        assert!(set.find_access(0x10f8, Dword).is_some());
        assert!(set.find_access(0x10f9, Dword).is_none());
        // the device answers all ones; an unclaimed read gets 0
        assert_eq!(
            set.mmio_read(0, 0x10fc, Word),
            MmioOutcome::Read(0xffff_ffff)
        );
        assert_eq!(set.mmio_read(0, 0x10fd, Word), MmioOutcome::Read(0));
        assert_eq!(set.stats().unclaimed, 1);
    }

    #[test]
    fn claimed_accesses_reach_the_device_masked() {
        let mut set = DeviceSet::new("claimed", UnclaimedPolicy::Fault);
        let fake = Fake::new("f", 0x100);
        set.add(0x9000_0000, fake.clone()).unwrap();
        for w in AccessWidth::ALL {
            assert_eq!(
                set.mmio_read(0, 0x9000_0008, w),
                MmioOutcome::Read(w.mask())
            );
        }
        assert_eq!(
            set.mmio_write(0, 0x9000_0004, Half, 0x1234_5678),
            MmioOutcome::Written
        );
        assert_eq!(*fake.writes.lock().unwrap(), [(4, Half, 0x5678)]);
        assert_eq!(
            set.stats(),
            DeviceStats {
                unclaimed: 0,
                unclaimed_ports: 0
            }
        );
    }

    #[test]
    fn each_policy_outcome() {
        let cases = [
            (
                UnclaimedPolicy::Fault,
                MmioOutcome::InjectFault,
                MmioOutcome::InjectFault,
            ),
            (
                UnclaimedPolicy::ReadZero,
                MmioOutcome::Read(0),
                MmioOutcome::Written,
            ),
            (
                UnclaimedPolicy::Stop,
                MmioOutcome::StopVm,
                MmioOutcome::StopVm,
            ),
        ];
        for (policy, on_read, on_write) in cases {
            let set = set_with(policy);
            assert_eq!(set.policy(), policy);
            // nothing mapped there
            assert_eq!(set.mmio_read(0, 0x2000, Word), on_read, "{policy:?}");
            assert_eq!(set.mmio_write(0, 0x2000, Word, 1), on_write, "{policy:?}");
            // a device that refuses the access: same as unclaimed
            assert_eq!(set.mmio_read(0, 0x1010, Word), on_read, "{policy:?}");
            assert_eq!(set.mmio_write(0, 0x1010, Word, 1), on_write, "{policy:?}");
            // claimed accesses are unaffected by the policy
            assert_eq!(set.mmio_read(0, 0x1000, Byte), MmioOutcome::Read(0xff));
            assert_eq!(set.mmio_write(0, 0x1000, Byte, 1), MmioOutcome::Written);
            assert_eq!(
                set.stats(),
                DeviceStats {
                    unclaimed: 4,
                    unclaimed_ports: 0
                }
            );
        }
    }

    #[test]
    fn warns_once_per_address_with_vm_name() {
        init_logger();
        let mut set = DeviceSet::new("logonce", UnclaimedPolicy::ReadZero);
        set.add(0x1000, Fake::new("a", 0x100)).unwrap();
        for _ in 0..5 {
            set.mmio_read(0, 0x2000, Word);
            set.mmio_write(0, 0x2000, Byte, 7);
            set.mmio_read(0, 0x1010, Word); // refused by the device
        }
        set.mmio_read(0, 0x1000, Word); // claimed: never logged
        let w = warnings_for("logonce");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("unclaimed 4-byte read at 0x2000"), "{}", w[0]);
        assert!(w[0].contains("read as zero"));
        assert!(w[1].contains("refused by a at offset 0x10"), "{}", w[1]);
        assert_eq!(set.unclaimed_logged(), 2);
        assert_eq!(set.stats().unclaimed, 15);

        // past the limit: exactly one more line, then silence
        let set = DeviceSet::new("logmany", UnclaimedPolicy::Stop);
        for a in 0..1000u64 {
            assert_eq!(set.mmio_write(0, a * 8, Dword, a), MmioOutcome::StopVm);
        }
        let w = warnings_for("logmany");
        assert_eq!(
            w.len(),
            DETAIL_LIMIT,
            "one 1 MiB range: no line after the addresses"
        );
        assert!(w
            .last()
            .unwrap()
            .contains("further unclaimed accesses are logged once per 1 MiB range"));
        assert!(w[0].contains("8-byte write of 0x0"));
        assert!(w[0].contains("stopping the VM"));
        assert_eq!(set.stats().unclaimed, 1000);
        assert!(RECORDS
            .lock()
            .unwrap()
            .iter()
            .all(|(lvl, _)| *lvl != log::Level::Error));
    }

    #[test]
    fn undecoded_accesses_share_the_bounded_log() {
        init_logger();
        // What a guest did to flood the log: an undecodable access (a load pair, an
        // atomic) at a new address each time.
        let set = DeviceSet::new("undecoded", UnclaimedPolicy::Fault);
        for a in 0..1000u64 {
            let what = if a % 2 == 0 { "read" } else { "write" };
            assert_eq!(
                set.undecoded(0x5000_0000 + a * 16, what),
                MmioOutcome::InjectFault
            );
        }
        let w = warnings_for("undecoded");
        assert_eq!(w.len(), DETAIL_LIMIT, "{w:?}");
        assert!(w[0].contains("read at 0x50000000"), "{}", w[0]);
        assert!(w[0].contains("fault injected"), "{}", w[0]);
        assert!(w[1].contains("write at 0x50000010"), "{}", w[1]);
        assert!(w
            .last()
            .unwrap()
            .contains("further unclaimed accesses are logged once per 1 MiB range"));
        assert_eq!(set.stats().unclaimed, 1000);
        assert_eq!(set.unclaimed_logged(), DETAIL_LIMIT);

        // One budget with the unclaimed MMIO accesses; an address is logged once.
        let set = DeviceSet::new("undecodedmix", UnclaimedPolicy::Fault);
        for a in 0..40u64 {
            set.mmio_read(0, 0x6000_0000 + a * 8, Dword);
            set.undecoded(0x7000_0000 + a * 8, "instruction fetch");
            set.undecoded(0x7000_0000 + a * 8, "instruction fetch");
        }
        let w = warnings_for("undecodedmix");
        assert_eq!(w.len(), DETAIL_LIMIT, "{w:?}");
        assert_eq!(set.stats().unclaimed, 120);
        let summary = set.unclaimed_summary();
        assert_eq!(summary.total, 120);
        assert_eq!(summary.ranges.len(), 2);
        assert_eq!(summary.ranges[0].base, 0x7000_0000);
        assert_eq!(summary.ranges[0].accesses, 80);

        // Nothing to read as zero: the access faults; Stop stops.
        let set = DeviceSet::new("undecodedzero", UnclaimedPolicy::ReadZero);
        assert_eq!(set.undecoded(0x10, "read"), MmioOutcome::InjectFault);
        let set = DeviceSet::new("undecodedstop", UnclaimedPolicy::Stop);
        assert_eq!(set.undecoded(0x10, "write"), MmioOutcome::StopVm);
        assert!(warnings_for("undecodedstop")[0].contains("stopping the VM"));
    }

    struct NullSink;
    impl ConsoleSink for NullSink {
        fn write(&self, _: &[u8]) {}
    }

    #[test]
    fn no_panic_on_random_addresses_and_widths() {
        let mut set = DeviceSet::new("fuzz", UnclaimedPolicy::ReadZero);
        set.add(0x0900_0000, Arc::new(Pl011::new(Arc::new(NullSink), None)))
            .unwrap();
        set.add(
            0x1000_0000,
            Arc::new(crate::uart::Ns16550::new(Arc::new(NullSink), None)),
        )
        .unwrap();
        set.add(u64::MAX - 0xff, Fake::new("top", 0x100)).unwrap();
        // a small xorshift so the test is deterministic
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let bases = [0x0900_0000u64, 0x1000_0000, u64::MAX - 0xff, 0];
        for i in 0..200_000u64 {
            let r = next();
            let base = bases[(r & 3) as usize];
            let gpa = if i % 4 == 0 {
                r
            } else {
                base.wrapping_add((r >> 8) & 0x1fff)
            };
            let w = AccessWidth::ALL[((r >> 40) & 3) as usize];
            match set.mmio_read(0, gpa, w) {
                MmioOutcome::Read(v) => assert_eq!(v & !w.mask(), 0),
                other => panic!("ReadZero gave {other:?}"),
            }
            assert_eq!(set.mmio_write(0, gpa, w, next()), MmioOutcome::Written);
        }
        assert!(set.unclaimed_logged() <= DETAIL_LIMIT);
    }

    #[test]
    fn debug_lists_devices() {
        let set = set_with(UnclaimedPolicy::Fault);
        let d = std::format!("{set:?}");
        assert!(d.contains("a @ 0x1000..=0x10ff"), "{d}");
        assert!(d.contains("b @ 0x3000..=0x3fff"), "{d}");
    }

    #[test]
    fn ports_refuse_overlap_and_running_past_the_last_port() {
        let mut set = DeviceSet::new("ports-add", UnclaimedPolicy::Fault);
        set.add_port(0x3f8, Fake::new("com1", 8)).unwrap();
        // The MMIO space is separate: the same numbers are free there.
        set.add(0x3f8, Fake::new("mmio", 8)).unwrap();
        let err = set.add_port(0x3fc, Fake::new("x", 8)).unwrap_err();
        assert!(matches!(
            err,
            DeviceSetError::Overlap {
                space: Space::Port,
                existing_base: 0x3f8,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "device x at port 0x3fc overlaps com1 at port 0x3f8 (size 0x8)"
        );
        set.add_port(0xfff8, Fake::new("top", 8)).unwrap();
        let err = set.add_port(0xfffc, Fake::new("past", 8)).unwrap_err();
        assert!(matches!(
            err,
            DeviceSetError::Overflow {
                space: Space::Port,
                ..
            }
        ));
        assert!(
            err.to_string().contains("past the last port (0xffff)"),
            "{err}"
        );
        let ports: Vec<_> = set.iter_ports().map(|(p, _)| p).collect();
        assert_eq!(ports, [0x3f8, 0xfff8]);
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn port_accesses_reach_the_device_at_their_offset() {
        let mut set = DeviceSet::new("ports-hit", UnclaimedPolicy::Stop);
        let dev = Fake::new("com1", 8);
        set.add_port(0x3f8, dev.clone()).unwrap();
        assert_eq!(set.port_read(0, 0x3fd, Byte), PortOutcome::Read(0xff));
        assert_eq!(
            set.port_read(0, 0x3f8, Word),
            PortOutcome::Read(0xffff_ffff)
        );
        assert_eq!(set.port_write(0, 0x3f8, Byte, 0x141), PortOutcome::Written);
        assert_eq!(dev.writes.lock().unwrap().as_slice(), [(0, Byte, 0x41)]);
        // Past the device's last port: unclaimed (here: stop).
        assert_eq!(set.port_read(0, 0x3fe, Word), PortOutcome::StopVm);
        assert_eq!(set.port_read(0, 0xffff, Half), PortOutcome::StopVm);
        // MMIO at the same number is another space.
        assert_eq!(set.mmio_read(0, 0x3f8, Byte), MmioOutcome::StopVm);
    }

    #[test]
    fn unclaimed_ports_follow_the_policy_and_are_logged_as_ports() {
        init_logger();
        let fault = DeviceSet::new("ports-fault", UnclaimedPolicy::Fault);
        // No fault for port I/O: all ones, as an undriven PC bus.
        assert_eq!(fault.port_read(0, 0x80, Byte), PortOutcome::Read(0xff));
        assert_eq!(fault.port_read(0, 0x80, Half), PortOutcome::Read(0xffff));
        assert_eq!(fault.port_write(0, 0x80, Byte, 1), PortOutcome::Written);
        let zero = DeviceSet::new("ports-zero", UnclaimedPolicy::ReadZero);
        assert_eq!(zero.port_read(0, 0x61, Word), PortOutcome::Read(0));
        assert_eq!(zero.port_write(0, 0x61, Word, 1), PortOutcome::Written);
        let stop = DeviceSet::new("ports-stop", UnclaimedPolicy::Stop);
        assert_eq!(stop.port_read(0, 0x61, Byte), PortOutcome::StopVm);
        assert_eq!(stop.port_write(0, 0x61, Byte, 0), PortOutcome::StopVm);

        // One line per distinct port: the write to 0x80 after the read is only counted.
        assert_eq!(
            warnings_for("ports-fault"),
            ["vm ports-fault: unclaimed 1-byte port read at port 0x80: read as all ones"]
        );
        assert_eq!(
            fault.stats(),
            DeviceStats {
                unclaimed: 0,
                unclaimed_ports: 3
            }
        );
        let summary = fault.unclaimed_port_summary();
        assert_eq!(summary.space, Space::Port);
        assert_eq!(summary.total, 3);
        assert_eq!(summary.ranges[0].base, 0x80);
        assert_eq!(fault.unclaimed_summary().total, 0);
    }

    #[test]
    fn a_16550_on_ports() {
        let (sink, _) = crate::uart::testutil::fakes();
        let mut set = DeviceSet::new("ports-uart", UnclaimedPolicy::Fault);
        let uart = crate::uart::Ns16550::new(sink.clone(), None).with_size(8);
        set.add_port(0x3f8, Arc::new(uart)).unwrap();
        for b in b"hi" {
            assert_eq!(
                set.port_write(0, 0x3f8, Byte, u64::from(*b)),
                PortOutcome::Written
            );
        }
        assert_eq!(sink.take(), b"hi");
        // LSR: transmitter empty.
        assert_eq!(set.port_read(0, 0x3fd, Byte), PortOutcome::Read(0x60));
        // Scratch register round trip.
        set.port_write(0, 0x3ff, Byte, 0x5a);
        assert_eq!(set.port_read(0, 0x3ff, Byte), PortOutcome::Read(0x5a));
        // The port after the UART is not its.
        assert_eq!(set.port_read(0, 0x400, Byte), PortOutcome::Read(0xff));
    }
}
