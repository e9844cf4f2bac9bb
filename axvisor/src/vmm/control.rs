//! The VMs as the shell sees and changes them: every VM built since boot (running or
//! stopped, until deleted) and those `vm create` read from the disk and not started yet,
//! found by id or name, stopped, started (again) from its config, paused and resumed,
//! deleted.
//!
//! A stopped VM keeps its memory until it is started again (built anew from its config,
//! with a fresh VMID and memory) or deleted (its memory freed once its last vCPU task is
//! gone, which it is once stopped).

use super::source::{self, LoadError, VmSource};
use super::{check_config, start_vm, VmRun};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
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

/// The error for a command that needs the VM `which` in state `needs`, when it is one
/// created and not started; `None` when it is not such a VM.
fn created_state(which: &VmRef, needs: &'static str) -> Option<ControlError> {
    CREATED
        .lock()
        .iter()
        .find(|(_, c)| config_matches(c, which))
        .map(|(_, c)| ControlError::State {
            name: c.name.clone(),
            needs,
            is: "created",
        })
}

/// Takes the VM `which` names out of the created ones, if it is one.
fn take_created(which: &VmRef) -> Option<(VmSource, VmConfig)> {
    let mut created = CREATED.lock();
    let i = created.iter().position(|(_, c)| config_matches(c, which))?;
    Some(created.remove(i))
}

/// A created VM's row: not running, no uptime.
fn created_row(config: &VmConfig) -> VmRow {
    VmRow {
        id: config.id,
        name: config.name.clone(),
        state: "created",
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
    State {
        /// The VM's name.
        name: String,
        /// What the command needs, e.g. `running`.
        needs: &'static str,
        /// Its state.
        is: &'static str,
    },
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
            Self::State { name, needs, is } => {
                write!(f, "vm {name}: is {is}, must be {needs}")
            }
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

/// A state as one word.
pub fn state_word(status: VmStatus) -> &'static str {
    match status {
        VmStatus::Loading => "loading",
        VmStatus::Loaded => "loaded",
        VmStatus::Running => "running",
        VmStatus::Stopping => "stopping",
        VmStatus::Stopped => "stopped",
        VmStatus::Paused => "paused",
    }
}

fn matches(entry: &Entry, which: &VmRef) -> bool {
    match which {
        VmRef::Id(id) => usize::try_from(entry.run.vm.id()).is_ok_and(|i| i == *id),
        VmRef::Name(name) => entry.run.vm.name() == name,
    }
}

/// The VM `which` names: its run and its source.
fn find(which: &VmRef) -> Result<(Arc<VmRun>, VmSource), ControlError> {
    VMS.lock()
        .iter()
        .find(|e| matches(e, which))
        .map(|e| (e.run.clone(), e.run.source.clone()))
        .ok_or_else(|| ControlError::NoSuchVm(which.clone()))
}

/// The VM `which` names, which must be in one of the states `needs` (`word` names them in
/// the error), with its source and name.
fn find_in(
    which: &VmRef,
    needs: &[VmStatus],
    word: &'static str,
) -> Result<(Arc<VmRun>, VmSource, String), ControlError> {
    let (run, source) = find(which)?;
    let name = String::from(run.vm.name());
    match run.vm.status() {
        is if needs.contains(&is) => Ok((run, source, name)),
        other => Err(ControlError::State {
            name,
            needs: word,
            is: state_word(other),
        }),
    }
}

/// Whether a VM in this state has vCPU tasks and an uptime: running or paused.
fn alive(status: VmStatus) -> bool {
    matches!(status, VmStatus::Running | VmStatus::Paused)
}

fn row(entry: &Entry, now: Duration) -> VmRow {
    let vm = &entry.run.vm;
    let status = vm.status();
    VmRow {
        id: vm.id(),
        name: String::from(vm.name()),
        state: state_word(status),
        cpus: vm.config().cpus.pin.clone(),
        mem_bytes: vm.config().memory.iter().map(|r| r.size).sum(),
        uptime_ms: alive(status).then(|| entry.clock.ran_ms(now)),
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
    if let Some(e) = which.and_then(|w| created_state(w, "started")) {
        return Err(e);
    }
    let now = axstd::time::now();
    let vms = VMS.lock();
    let chosen: Vec<&Entry> = vms
        .iter()
        .filter(|e| which.is_none_or(|w| matches(e, w)))
        .collect();
    if let (Some(w), true) = (which, chosen.is_empty()) {
        return Err(ControlError::NoSuchVm(w.clone()));
    }
    Ok(chosen
        .into_iter()
        .map(|e| {
            let vm = &e.run.vm;
            VmStat {
                name: String::from(vm.name()),
                ran_ms: alive(vm.status()).then(|| e.clock.ran_ms(now)),
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

/// Stops the running (or paused) VM `which` names and waits (a little) until its vCPUs
/// have left. Returns its name.
pub fn stop(which: &VmRef) -> Result<String, ControlError> {
    if let Some(e) = created_state(which, "running") {
        return Err(e);
    }
    let (run, _, name) = find_in(which, &[VmStatus::Running, VmStatus::Paused], "running")?;
    run.vm.shutdown();
    run.waker.notify_all();
    let deadline = axstd::time::now() + STOP_WAIT;
    while run.vm.status() != VmStatus::Stopped {
        if axstd::time::now() > deadline {
            return Err(ControlError::StillStopping(name));
        }
        axstd::thread::sleep(Duration::from_millis(1));
    }
    Ok(name)
}

/// Pauses the running VM `which` names: asks its vCPUs to stay out of the guest, kicks
/// them out of it, and waits (a little) until every vCPU task is held. Its uptime stands
/// still until `resume`. Returns its name.
pub fn pause(which: &VmRef) -> Result<String, ControlError> {
    if let Some(e) = created_state(which, "running") {
        return Err(e);
    }
    let (run, _, name) = find_in(which, &[VmStatus::Running], "running")?;
    run.vm.pause().map_err(|is| ControlError::State {
        name: name.clone(),
        needs: "running",
        is: state_word(is),
    })?;
    with_clock(&run, |c, now| c.pause(now));
    run.waker.notify_all();
    let deadline = axstd::time::now() + STOP_WAIT;
    while run.parked.load(Ordering::Acquire) < run.tasks.load(Ordering::Acquire) {
        if axstd::time::now() > deadline {
            return Err(ControlError::StillPausing(name));
        }
        axstd::thread::sleep(Duration::from_millis(1));
    }
    Ok(name)
}

/// Lets the paused VM `which` names run again: its vCPUs enter the guest where they left
/// it, and take the interrupts that came meanwhile. Returns its name.
pub fn resume(which: &VmRef) -> Result<String, ControlError> {
    if let Some(e) = created_state(which, "paused") {
        return Err(e);
    }
    let (run, _, name) = find_in(which, &[VmStatus::Paused], "paused")?;
    run.vm.resume().map_err(|is| ControlError::State {
        name: name.clone(),
        needs: "paused",
        is: state_word(is),
    })?;
    with_clock(&run, |c, now| c.resume(now));
    run.waker.notify_all();
    Ok(name)
}

/// Applies `f` to the clock of `run`'s entry, with the time now.
fn with_clock(run: &Arc<VmRun>, f: impl FnOnce(&mut RunClock, Duration)) {
    let now = axstd::time::now();
    if let Some(e) = VMS.lock().iter_mut().find(|e| Arc::ptr_eq(&e.run, run)) {
        f(&mut e.clock, now);
    }
}

/// Starts the stopped VM `which` names again, built anew from its config (fresh memory,
/// images loaded again). Returns its name.
pub fn start(which: &VmRef) -> Result<String, ControlError> {
    if let Some((source, config)) = take_created(which) {
        let name = config.name.clone();
        return match start_vm(source, config) {
            true => Ok(name),
            false => Err(ControlError::NotStarted(name)),
        };
    }
    let (run, source, name) = find_in(which, &[VmStatus::Stopped], "stopped")?;
    let config = run.vm.config().clone();
    // The old VM goes first, so its memory is free for the new one.
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
    if start_vm(source, config) {
        // Back in its place in the list (it was registered last).
        let mut vms = VMS.lock();
        if let (Some(place), Some(entry)) = (place, vms.pop()) {
            let place = place.min(vms.len());
            vms.insert(place, entry);
        }
        Ok(name)
    } else {
        Err(ControlError::NotStarted(name))
    }
}

/// Stops the VM `which` names if it runs (or is paused), then starts it again.
pub fn restart(which: &VmRef) -> Result<String, ControlError> {
    if created_state(which, "").is_some() {
        return start(which);
    }
    // No reference to the VM is kept here: `start` waits for the last ones to go.
    let running = alive(find(which)?.0.vm.status());
    if running {
        stop(which)?;
    }
    start(which)
}

/// Deletes the stopped VM `which` names: it leaves the list and its memory is freed.
/// Returns its name.
pub fn delete(which: &VmRef) -> Result<String, ControlError> {
    if let Some((_, config)) = take_created(which) {
        return Ok(config.name);
    }
    let (run, _, name) = find_in(which, &[VmStatus::Stopped], "stopped")?;
    VMS.lock().retain(|e| !Arc::ptr_eq(&e.run, &run));
    Ok(name)
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
        self.run.vm.status() != VmStatus::Stopped
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
    if let Some(e) = created_state(which, "running") {
        return Err(e);
    }
    let (run, _, name) = find_in(which, &[VmStatus::Running, VmStatus::Paused], "running")?;
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
        if alive(run.vm.status()) {
            run.vm.console_flush_idle(checks);
        }
    }
}
