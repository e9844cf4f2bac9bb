//! A VM's device address map and what happens to accesses nobody claims.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use axdevice_base::{AccessWidth, DeviceError, MmioDevice};
use log::warn;
use spin::Mutex;

use crate::unclaimed::{clock_ms, Detail, Summary, UnclaimedLog};

/// What a guest gets for an MMIO access no device handles (no device at the address, the
/// access runs past a device's end, or the device refused it). The same three choices as
/// the VM config.
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

/// Why [`DeviceSet::add`] refused a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSetError {
    /// The new device's range overlaps one already in the set.
    Overlap {
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
    /// `base + size` is beyond the end of the 64-bit address space.
    Overflow {
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
        match self {
            Self::Overlap {
                name,
                base,
                existing,
                existing_base,
                existing_size,
            } => write!(
                f,
                "device {name} at {base:#x} overlaps {existing} at {existing_base:#x} \
                 (size {existing_size:#x})"
            ),
            Self::ZeroSize { name } => write!(f, "device {name} has size 0"),
            Self::Overflow { name, base, size } => write!(
                f,
                "device {name} at {base:#x} with size {size:#x} runs past the end of the \
                 address space"
            ),
        }
    }
}

/// Access counters of one [`DeviceSet`]. (The VM counts every MMIO exit itself, by kind;
/// the set counts only what is its own to know.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// The reads and writes no device handled (the policy applied).
    pub unclaimed: u64,
}

struct Entry {
    base: u64,
    /// Last byte the device claims (inclusive, so a device may end at `u64::MAX`).
    last: u64,
    dev: Arc<dyn MmioDevice>,
}

/// The emulated MMIO devices of one VM, by guest-physical address.
///
/// Ranges never overlap (checked by [`DeviceSet::add`]); a lookup tries the device the
/// previous one found, then does a binary search. [`DeviceSet::mmio_read`] and
/// [`DeviceSet::mmio_write`] take `&self` and may be called from several vCPUs at once.
pub struct DeviceSet {
    vm_name: String,
    policy: UnclaimedPolicy,
    /// Sorted by `base`, non-overlapping.
    entries: Vec<Entry>,
    /// Index in `entries` of the device the last successful lookup found: guests tend to
    /// access the same device many times in a row (a UART polled for every character). Only
    /// a hint: any value is checked before use.
    last_hit: AtomicUsize,
    log: Mutex<UnclaimedLog>,
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
            entries: Vec::new(),
            last_hit: AtomicUsize::new(0),
            log: Mutex::new(UnclaimedLog::new()),
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

    /// How many devices are in the set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set has no devices.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The devices and their bases, lowest base first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Arc<dyn MmioDevice>)> + '_ {
        self.entries.iter().map(|e| (e.base, &e.dev))
    }

    /// Maps `dev` at guest-physical `base`, covering `base .. base + dev.size()`.
    ///
    /// Refuses a device of size zero, one that would run past the end of the address space,
    /// and one that overlaps a device already in the set.
    pub fn add(&mut self, base: u64, dev: Arc<dyn MmioDevice>) -> Result<(), DeviceSetError> {
        let name = || String::from(dev.name());
        let size = u64::try_from(dev.size()).map_err(|_| DeviceSetError::Overflow {
            name: name(),
            base,
            size: u64::MAX,
        })?;
        if size == 0 {
            return Err(DeviceSetError::ZeroSize { name: name() });
        }
        let last = base
            .checked_add(size - 1)
            .ok_or_else(|| DeviceSetError::Overflow {
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

    /// The entry whose range contains `gpa`.
    #[inline]
    fn entry(&self, gpa: u64) -> Option<&Entry> {
        let hint = self.last_hit.load(Ordering::Relaxed);
        if let Some(e) = self.entries.get(hint) {
            if e.base <= gpa && gpa <= e.last {
                return Some(e);
            }
        }
        let idx = self
            .entries
            .partition_point(|e| e.base <= gpa)
            .checked_sub(1)?;
        let e = self.entries.get(idx)?;
        if gpa > e.last {
            return None;
        }
        self.last_hit.store(idx, Ordering::Relaxed);
        Some(e)
    }

    /// The device whose range contains `gpa`, and the offset of `gpa` inside it.
    pub fn find(&self, gpa: u64) -> Option<(&Arc<dyn MmioDevice>, usize)> {
        let e = self.entry(gpa)?;
        let offset = usize::try_from(gpa - e.base).ok()?;
        Some((&e.dev, offset))
    }

    /// Like [`DeviceSet::find`], but only when the whole access `gpa .. gpa + width` lies
    /// inside one device; an access that straddles a device's end is unclaimed.
    pub fn find_access(
        &self,
        gpa: u64,
        width: AccessWidth,
    ) -> Option<(&Arc<dyn MmioDevice>, usize)> {
        let e = self.entry(gpa)?;
        // The access's last byte, against the device's (`size() - 1` past its base).
        let last = gpa.checked_add(width.size() as u64 - 1)?;
        if last > e.last {
            return None;
        }
        let offset = usize::try_from(gpa - e.base).ok()?;
        Some((&e.dev, offset))
    }

    /// A load of `width` at `gpa` by vCPU `vcpu`: the device's answer, or the policy's.
    pub fn mmio_read(&self, vcpu: usize, gpa: u64, width: AccessWidth) -> MmioOutcome {
        self.dispatch(vcpu, gpa, width, Kind::Read)
    }

    /// A store of `value` (its low `width` bits) at `gpa` by vCPU `vcpu`.
    pub fn mmio_write(&self, vcpu: usize, gpa: u64, width: AccessWidth, value: u64) -> MmioOutcome {
        self.dispatch(vcpu, gpa, width, Kind::Write(value & width.mask()))
    }

    /// The counters so far.
    pub fn stats(&self) -> DeviceStats {
        DeviceStats {
            unclaimed: self.log.lock().total(),
        }
    }

    /// How many distinct unclaimed addresses have had a log line of their own.
    pub fn unclaimed_logged(&self) -> usize {
        self.log.lock().logged()
    }

    /// The unclaimed (and undecoded) accesses so far, counted per address range.
    pub fn unclaimed_summary(&self) -> Summary {
        self.log.lock().summary()
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
        self.record(gpa, outcome, |action, more| {
            warn!(
                "vm {}: {what} at {gpa:#x}, outside its memory and not an access that can be \
                 emulated: {action}{more}",
                self.vm_name
            )
        });
        outcome
    }

    fn dispatch(&self, vcpu: usize, gpa: u64, width: AccessWidth, kind: Kind) -> MmioOutcome {
        let Some((dev, offset)) = self.find_access(gpa, width) else {
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
        self.record(gpa, outcome, |action, more| {
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

    /// Counts an unclaimed access at `gpa` and, when the bounded log gives it a line, has
    /// `log` write it, given what was done (`outcome` in words) and the line's end (a note
    /// when a logging budget is spent, or nothing); then the summary line, when one is due.
    fn record(&self, gpa: u64, outcome: MmioOutcome, log: impl FnOnce(&str, &str)) {
        let now = clock_ms();
        let (decision, summary) = {
            let mut record = self.log.lock();
            let decision = record.note(gpa, now);
            (decision, decision.summary.then(|| record.take_summary()))
        };
        if decision.detail != Detail::Quiet {
            let action = match outcome {
                MmioOutcome::InjectFault => "fault injected",
                MmioOutcome::Read(_) => "read as zero",
                MmioOutcome::Written => "write ignored",
                MmioOutcome::StopVm => "stopping the VM",
            };
            log(action, decision.detail.note());
        }
        if let Some(summary) = summary {
            warn!("vm {}: {summary}", self.vm_name);
        }
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
            .field("devices", &Devices(&self.entries))
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
        assert_eq!(set.stats(), DeviceStats { unclaimed: 0 });
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
            assert_eq!(set.stats(), DeviceStats { unclaimed: 4 });
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
}
