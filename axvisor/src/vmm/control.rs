//! The VMs as the shell sees and changes them: every VM built since boot (running or
//! stopped, until deleted) and those `vm create` read from the disk and not started yet,
//! found by id or name, stopped, started (again) from its config, paused and resumed,
//! deleted. What each command may do to a VM in its state is decided by
//! [`axshell::lifecycle`]; this module finds the VM and carries the decision out.
//!
//! A stopped VM keeps its memory until it is started again (built anew from its config,
//! with a fresh VMID and memory) or deleted (its memory freed once its last vCPU task is
//! gone, which it is once stopped).

use super::source::{self, LoadError, VmSource};
use super::{check_config, start_vm, Vm, VmRun};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use axshell::lifecycle::{self, Action, Change, Found, Look, Refusal, VmState};
use axshell::report::{VmRow, VmStat};
use axshell::VmRef;
use axstd::time::Duration;
use axvm::VmStatus;
use axvmconfig::VmConfig;
use core::fmt;
use core::sync::atomic::Ordering;
use spin::Mutex;

/// How long `vm stop` and `vm pause` wait for the vCPUs to leave the guest.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// One VM known to the shell.
struct Entry {
    /// The VM, with where its config and images came from (to build it again).
    run: Arc<VmRun>,
    /// How long it has run.
    clock: RunClock,
}

/// A VM's uptime: the time since it was started, less the time it spent paused.
struct RunClock {
    /// When it was started (the time since boot).
    started: Duration,
    /// The time spent paused before the current pause.
    paused: Duration,
    /// When the current pause began, if it is paused.
    paused_at: Option<Duration>,
}

impl RunClock {
    fn new(now: Duration) -> Self {
        Self {
            started: now,
            paused: Duration::ZERO,
            paused_at: None,
        }
    }

    fn pause(&mut self, now: Duration) {
        self.paused_at.get_or_insert(now);
    }

    fn resume(&mut self, now: Duration) {
        if let Some(at) = self.paused_at.take() {
            self.paused += now.saturating_sub(at);
        }
    }

    /// The uptime at `now` (it stands still while paused), in milliseconds.
    fn ran_ms(&self, now: Duration) -> u64 {
        let end = self.paused_at.unwrap_or(now);
        end.saturating_sub(self.started)
            .saturating_sub(self.paused)
            .as_millis() as u64
    }
}

/// Every VM built since boot and not deleted, in the order they were built.
static VMS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// VMs created by `vm create` and not started yet: their config, read and validated, and
/// their images, read (nothing is built until `vm start`).
static CREATED: Mutex<Vec<(VmSource, VmConfig)>> = Mutex::new(Vec::new());

fn config_matches(config: &VmConfig, which: &VmRef) -> bool {
    match which {
        VmRef::Id(id) => usize::try_from(config.id).is_ok_and(|i| i == *id),
        VmRef::Name(name) => config.name == *name,
    }
}

/// Takes the created VM `name` out of the created ones (it is being started or forgotten).
fn remove_created(name: &str) {
    CREATED.lock().retain(|(_, c)| c.name != name);
}

/// A created VM's row: not running, no uptime.
fn created_row(config: &VmConfig) -> VmRow {
    VmRow {
        id: config.id,
        name: config.name.clone(),
        state: lifecycle::CREATED,
        cpus: config.cpus.pin.clone(),
        mem_bytes: config.memory.iter().map(|r| r.size).sum(),
        uptime_ms: None,
    }
}

/// Records a VM that was just built and started.
pub(super) fn register(run: &Arc<VmRun>) {
    VMS.lock().push(Entry {
        run: run.clone(),
        clock: RunClock::new(axstd::time::now()),
    });
}

/// Why a shell command on a VM did nothing. `Display` is one line.
#[derive(Debug)]
pub enum ControlError {
    /// No VM has this id or name.
    NoSuchVm(VmRef),
    /// The VM is not in a state the command works in.
    State(Refusal),
    /// The vCPUs did not leave the guest in time (the VM is still stopping).
    StillStopping(String),
    /// The vCPUs did not leave the guest in time after `vm pause` (the VM is paused; they
    /// leave at their next exit).
    StillPausing(String),
    /// Building it again failed (the reason was printed as the VM's own line); the old VM
    /// was already gone, to give its memory to the new one.
    NotStarted(String),
    /// The VM has no UART to attach the terminal to.
    NoUart(String),
    /// `vm create`: the config or an image could not be read.
    Load(LoadError),
    /// `vm create`: the config is invalid (its problems were printed above).
    Invalid(String),
    /// `vm create`: a VM with this id or name exists.
    Exists {
        /// The config file.
        file: String,
        /// Its id or name, and the VM that has it.
        clash: super::Clash,
    },
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchVm(VmRef::Id(id)) => write!(f, "no VM with id {id}: try \"vm list\""),
            Self::NoSuchVm(VmRef::Name(name)) => {
                write!(f, "no VM named {name:?}: try \"vm list\"")
            }
            Self::State(refusal) => write!(f, "{refusal}"),
            Self::StillStopping(name) => write!(
                f,
                "vm {name}: asked to stop, but its vCPUs have not left the guest yet"
            ),
            Self::StillPausing(name) => write!(
                f,
                "vm {name}: paused, but its vCPUs have not left the guest yet"
            ),
            Self::NotStarted(name) => write!(
                f,
                "vm {name}: not started (see the line above); it is no longer listed"
            ),
            Self::NoUart(name) => write!(f, "vm {name}: has no UART to attach to"),
            Self::Load(e) => write!(f, "{e}"),
            Self::Invalid(file) => write!(f, "vm config {file}: invalid (see the lines above)"),
            Self::Exists { file, clash } => {
                write!(f, "vm config {file}: {clash}: try \"vm list\"")
            }
        }
    }
}

impl From<Refusal> for ControlError {
    fn from(refusal: Refusal) -> Self {
        Self::State(refusal)
    }
}

/// A built VM's status as the shell's decisions see it.
fn state(status: VmStatus) -> VmState {
    match status {
        VmStatus::Loading => VmState::Loading,
        VmStatus::Loaded => VmState::Loaded,
        VmStatus::Running => VmState::Running,
        VmStatus::Stopping => VmState::Stopping,
        VmStatus::Stopped => VmState::Stopped,
        VmStatus::Paused => VmState::Paused,
    }
}

fn matches(entry: &Entry, which: &VmRef) -> bool {
    match which {
        VmRef::Id(id) => usize::try_from(entry.run.vm.id()).is_ok_and(|i| i == *id),
        VmRef::Name(name) => entry.run.vm.name() == name,
    }
}

/// A VM as the shell finds it: created (its config and images) or built (its run).
type FoundVm = Found<(VmSource, VmConfig), Arc<VmRun>>;

/// The VM `which` names, with its name.
fn locate(which: &VmRef) -> Result<(String, FoundVm), ControlError> {
    let created = CREATED
        .lock()
        .iter()
        .find(|(_, c)| config_matches(c, which))
        .map(|(s, c)| (c.name.clone(), Found::Created((s.clone(), c.clone()))));
    if let Some(found) = created {
        return Ok(found);
    }
    let run = VMS
        .lock()
        .iter()
        .find(|e| matches(e, which))
        .map(|e| e.run.clone())
        .ok_or_else(|| ControlError::NoSuchVm(which.clone()))?;
    let status = state(run.vm.status());
    Ok((String::from(run.vm.name()), Found::Built(run, status)))
}

fn row(entry: &Entry, now: Duration) -> VmRow {
    let vm = &entry.run.vm;
    let status = state(vm.status());
    VmRow {
        id: vm.id(),
        name: String::from(vm.name()),
        state: status.word(),
        cpus: vm.config().cpus.pin.clone(),
        mem_bytes: vm.config().memory.iter().map(|r| r.size).sum(),
        uptime_ms: status.alive().then(|| entry.clock.ran_ms(now)),
    }
}

/// Every VM, in the order they were built, then those created and not started.
pub fn list() -> Vec<VmRow> {
    let now = axstd::time::now();
    let mut rows: Vec<VmRow> = VMS.lock().iter().map(|e| row(e, now)).collect();
    rows.extend(CREATED.lock().iter().map(|(_, c)| created_row(c)));
    rows
}

/// One VM's row, its config file and where that lives.
pub fn show(which: &VmRef) -> Result<(VmRow, String, &'static str), ControlError> {
    let now = axstd::time::now();
    VMS.lock()
        .iter()
        .find(|e| matches(e, which))
        .map(|e| {
            let source = &e.run.source;
            (row(e, now), String::from(source.file()), source.place())
        })
        .or_else(|| {
            CREATED
                .lock()
                .iter()
                .find(|(_, c)| config_matches(c, which))
                .map(|(s, c)| (created_row(c), String::from(s.file()), s.place()))
        })
        .ok_or_else(|| ControlError::NoSuchVm(which.clone()))
}

/// Creates a VM from the config `file` on the disk: reads it and its images, validates it
/// as at boot; `vm start` builds and starts it. Returns its name.
pub fn create(file: &str) -> Result<String, ControlError> {
    let source = source::load(file).map_err(ControlError::Load)?;
    let pcpus = axstd::smp::online();
    let config = check_config(&source, pcpus, &super::host::facts())
        .ok_or_else(|| ControlError::Invalid(String::from(file)))?;
    let name = config.name.clone();
    // Both locks at once, VMS first (as nowhere else takes both), so no other create
    // slips in between the check and the push.
    let vms = VMS.lock();
    let mut created = CREATED.lock();
    let holder = |name: &str| alloc::format!("VM {name}");
    let clash = vms
        .iter()
        .find_map(|e| {
            let vm = &e.run.vm;
            super::Clash::of(&config, vm.id(), vm.name(), &holder(vm.name()))
        })
        .or_else(|| {
            created
                .iter()
                .find_map(|(_, c)| super::Clash::of(&config, c.id, &c.name, &holder(&c.name)))
        });
    if let Some(clash) = clash {
        return Err(ControlError::Exists {
            file: String::from(file),
            clash,
        });
    }
    created.push((source, config));
    Ok(name)
}

/// Exit counts and unclaimed accesses of the VM `which` names, or of every VM.
pub fn stat(which: Option<&VmRef>) -> Result<Vec<VmStat>, ControlError> {
    let only = match which {
        Some(w) => {
            let (name, found) = locate(w)?;
            Some(lifecycle::look(Look::Stat, &name, found)?)
        }
        None => None,
    };
    let now = axstd::time::now();
    Ok(VMS
        .lock()
        .iter()
        .filter(|e| only.as_ref().is_none_or(|run| Arc::ptr_eq(&e.run, run)))
        .map(|e| {
            let vm = &e.run.vm;
            VmStat {
                name: String::from(vm.name()),
                ran_ms: state(vm.status()).alive().then(|| e.clock.ran_ms(now)),
                exits: vm.exits().nonzero().map(|(k, n)| (k.name(), n)).collect(),
                unclaimed: [vm.unclaimed(), vm.unclaimed_ports()]
                    .into_iter()
                    .filter(|u| u.total > 0)
                    .map(|u| alloc::format!("{u}"))
                    .collect(),
            }
        })
        .collect())
}

/// `vm start`, `stop`, `restart`, `delete`, `pause` or `resume` of the VM `which` names,
/// as [`lifecycle::change`] decides for its state. Returns its name.
pub fn change(change: Change, which: &VmRef) -> Result<String, ControlError> {
    let (name, found) = locate(which)?;
    match lifecycle::change(change, &name, found)? {
        Action::Build((source, config)) => {
            remove_created(&name);
            build(source, config, &name)?;
        }
        Action::Forget(_) => remove_created(&name),
        Action::Rebuild(run) => rebuild(run, &name)?,
        Action::Stop(run) => stop(&run, &name)?,
        Action::StopRebuild(run) => {
            stop(&run, &name)?;
            rebuild(run, &name)?;
        }
        Action::Remove(run) => VMS.lock().retain(|e| !Arc::ptr_eq(&e.run, &run)),
        Action::Pause(run) => pause(&run, &name)?,
        Action::Resume(run) => flip(&run, &name, Change::Resume, Vm::resume, RunClock::resume)?,
    }
    Ok(name)
}

/// Asks the running (or paused) VM to stop and waits (a little) until its vCPUs have left.
fn stop(run: &VmRun, name: &str) -> Result<(), ControlError> {
    run.vm.shutdown();
    run.waker.notify_all();
    let deadline = axstd::time::now() + STOP_WAIT;
    while run.vm.status() != VmStatus::Stopped {
        if axstd::time::now() > deadline {
            return Err(ControlError::StillStopping(String::from(name)));
        }
        axstd::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Pauses the running VM: asks its vCPUs to stay out of the guest, kicks them out of it,
/// and waits (a little) until every vCPU task is held. Its uptime stands still until
/// `resume`.
fn pause(run: &Arc<VmRun>, name: &str) -> Result<(), ControlError> {
    flip(run, name, Change::Pause, Vm::pause, RunClock::pause)?;
    let deadline = axstd::time::now() + STOP_WAIT;
    while run.parked.load(Ordering::Acquire) < run.tasks.load(Ordering::Acquire) {
        if axstd::time::now() > deadline {
            return Err(ControlError::StillPausing(String::from(name)));
        }
        axstd::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Pauses or resumes the VM with `to` (`change` refuses when its state changed since it
/// was found), brings its uptime clock along with `clock`, and wakes its vCPU tasks: a
/// paused one's are kicked out of the guest, a resumed one's enter it where they left it
/// and take the interrupts that came meanwhile.
fn flip(
    run: &Arc<VmRun>,
    name: &str,
    change: Change,
    to: fn(&Vm) -> Result<(), VmStatus>,
    clock: fn(&mut RunClock, Duration),
) -> Result<(), ControlError> {
    to(&run.vm).map_err(|is| change.refuse(name, state(is).word()))?;
    with_clock(run, clock);
    run.waker.notify_all();
    Ok(())
}

/// Applies `f` to the clock of `run`'s entry, with the time now.
fn with_clock(run: &Arc<VmRun>, f: impl FnOnce(&mut RunClock, Duration)) {
    let now = axstd::time::now();
    if let Some(e) = VMS.lock().iter_mut().find(|e| Arc::ptr_eq(&e.run, run)) {
        f(&mut e.clock, now);
    }
}

/// Builds a VM from `source` and `config` and starts it (it registers itself last in the
/// list).
fn build(source: VmSource, config: VmConfig, name: &str) -> Result<(), ControlError> {
    match start_vm(source, config) {
        true => Ok(()),
        false => Err(ControlError::NotStarted(String::from(name))),
    }
}

/// Builds the stopped VM `run` anew from its config (fresh memory, images loaded again)
/// and starts it, in its place in the list. `run` must be the last reference the caller
/// holds: the old VM goes first, so that its memory is free for the new one.
fn rebuild(run: Arc<VmRun>, name: &str) -> Result<(), ControlError> {
    let source = run.source.clone();
    let config = run.vm.config().clone();
    let place = {
        let mut vms = VMS.lock();
        let place = vms.iter().position(|e| Arc::ptr_eq(&e.run, &run));
        vms.retain(|e| !Arc::ptr_eq(&e.run, &run));
        place
    };
    // Its last vCPU task gives back its VMID and host ranges just after marking it
    // stopped, then lets go of it.
    let deadline = axstd::time::now() + STOP_WAIT;
    while Arc::strong_count(&run) > 1 && axstd::time::now() < deadline {
        axstd::thread::sleep(Duration::from_millis(1));
    }
    drop(run);
    build(source, config, name)?;
    // Back in its place in the list (it was registered last).
    let mut vms = VMS.lock();
    if let (Some(place), Some(entry)) = (place, vms.pop()) {
        let place = place.min(vms.len());
        vms.insert(place, entry);
    }
    Ok(())
}

/// A running VM the terminal is attached to (`console`): its UART takes what is typed.
pub struct Attached {
    run: Arc<VmRun>,
}

impl Attached {
    /// The VM's name.
    pub fn name(&self) -> &str {
        self.run.vm.name()
    }

    /// Whether it still runs or is paused, or is on its way back to running: a reset the
    /// guest asked for passes through `Stopping` to `Running` again, and the terminal
    /// stays attached across it. Only a VM that has stopped (`Stopped`) ends the attachment.
    pub fn running(&self) -> bool {
        state(self.run.vm.status()).keeps_console()
    }

    /// Its console output goes raw to the hypervisor console from now on (the terminal is
    /// attached), or with `false` as labelled lines again.
    pub fn raw_output(&self, raw: bool) {
        let out: Option<axdevice_base::RawConsole> =
            raw.then(|| Arc::new(axhal::console::write_bytes) as axdevice_base::RawConsole);
        self.run.vm.set_console_raw(out);
    }

    /// Feeds typed bytes to its UART; returns how many its receive FIFO took.
    pub fn feed(&self, bytes: &[u8]) -> usize {
        self.run.vm.feed_console(bytes).unwrap_or(0)
    }
}

/// The running (or paused) VM `which` names, for `console`: it must have a UART. What is
/// typed to a paused VM waits in its UART until it is resumed.
pub fn attach(which: &VmRef) -> Result<Attached, ControlError> {
    let (name, found) = locate(which)?;
    let run = lifecycle::look(Look::Console, &name, found)?;
    if run.vm.feed_console(&[]).is_none() {
        return Err(ControlError::NoUart(name));
    }
    Ok(Attached { run })
}

/// Prints every running or paused VM's unfinished console line once its VM has been quiet for
/// `checks` calls in a row (called by the shell task at each poll).
pub fn flush_idle_consoles(checks: u32) {
    let runs: Vec<Arc<VmRun>> = VMS.lock().iter().map(|e| e.run.clone()).collect();
    for run in runs {
        if state(run.vm.status()).alive() {
            run.vm.console_flush_idle(checks);
        }
    }
}
