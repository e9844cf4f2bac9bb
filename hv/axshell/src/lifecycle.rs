//! What a VM command may do to a VM in its current state: the decision table of the `vm`
//! commands and `console`, with the exact line of each refusal.
//!
//! The hypervisor finds the VM a command names ([`Found`]: one `vm create` read and not
//! started yet, or one built, in a [`VmState`]), asks [`change`] or [`look`] what to do,
//! and carries out the answer; a refused command prints the [`Refusal`] as its one line.
//!
//! | command | created | running | paused | stopped | loading, loaded, stopping |
//! |---|---|---|---|---|---|
//! | `vm start` | build | refused | refused | build again | refused |
//! | `vm stop` | refused | stop | stop | refused | refused |
//! | `vm restart` | build | stop, build again | stop, build again | build again | refused |
//! | `vm delete` | forget | refused | refused | remove | refused |
//! | `vm pause` | refused | pause | refused | refused | refused |
//! | `vm resume` | refused | refused | resume | refused | refused |
//! | `vm stat VM` | refused | count | count | count | count |
//! | `console VM` | refused | attach | attach | refused | refused |
//!
//! A change done answers `vm NAME: started` ([`Change::done`]); a refusal reads `vm NAME: is STATE, must be NEEDS`, NEEDS being the command's
//! ([`Change::needs`], [`Look::needs`]).

use alloc::string::String;
use core::fmt;

/// The state word of a VM created by `vm create` and not started yet.
pub const CREATED: &str = "created";

/// Where a built VM is in its life (the hypervisor's VM status as the shell sees it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmState {
    /// Being built.
    Loading,
    /// Built, not started.
    Loaded,
    /// Its vCPUs run.
    Running,
    /// Its vCPUs are held out of the guest until `vm resume`.
    Paused,
    /// Asked to stop (or passing through a reset the guest asked for).
    Stopping,
    /// Stopped: its vCPU tasks are gone, its memory kept.
    Stopped,
}

impl VmState {
    /// Every state, for tables and tests.
    pub const ALL: [Self; 6] = [
        Self::Loading,
        Self::Loaded,
        Self::Running,
        Self::Paused,
        Self::Stopping,
        Self::Stopped,
    ];

    /// The state as one word (`vm list`, refusals).
    pub fn word(self) -> &'static str {
        match self {
            Self::Loading => "loading",
            Self::Loaded => "loaded",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }

    /// Whether the VM has vCPU tasks and an uptime (`vm list`, `vm stat`), and an
    /// unfinished console line worth printing: running or paused.
    pub fn alive(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }

    /// Whether a terminal attached to the VM (`console`) stays attached: until it has
    /// stopped. A reset the guest asked for passes through stopping back to running and
    /// keeps the terminal.
    pub fn keeps_console(self) -> bool {
        self != Self::Stopped
    }
}

/// The VM a command names, as the hypervisor found it: `C` is what it holds of a created
/// VM, `B` of a built one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found<C, B> {
    /// Created by `vm create`, not started: nothing built yet.
    Created(C),
    /// Built, in this state.
    Built(B, VmState),
}

impl<C, B> Found<C, B> {
    /// Its state as one word.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Created(_) => CREATED,
            Self::Built(_, state) => state.word(),
        }
    }
}

/// A command that changes a VM's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// `vm start`.
    Start,
    /// `vm stop`.
    Stop,
    /// `vm restart`.
    Restart,
    /// `vm delete`.
    Delete,
    /// `vm pause`.
    Pause,
    /// `vm resume`.
    Resume,
}

impl Change {
    /// Every change, for tables and tests.
    pub const ALL: [Self; 6] = [
        Self::Start,
        Self::Stop,
        Self::Restart,
        Self::Delete,
        Self::Pause,
        Self::Resume,
    ];

    /// The state it needs, as its refusal says it.
    pub fn needs(self) -> &'static str {
        match self {
            Self::Start | Self::Restart | Self::Delete => "stopped",
            Self::Stop | Self::Pause => "running",
            Self::Resume => "paused",
        }
    }

    /// Its success line for the VM `name`: `vm NAME: started`.
    pub fn done(self, name: &str) -> String {
        let word = match self {
            Self::Start => "started",
            Self::Stop => "stopped",
            Self::Restart => "restarted",
            Self::Delete => "deleted",
            Self::Pause => "paused",
            Self::Resume => "resumed",
        };
        alloc::format!("vm {name}: {word}")
    }

    /// Its refusal for the VM `name` in state `is` (a word): also when the state changed
    /// under the command.
    pub fn refuse(self, name: &str, is: &'static str) -> Refusal {
        Refusal::new(name, is, self.needs())
    }
}

/// A command that looks at or attaches to a started VM without changing its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Look {
    /// `vm stat VM`.
    Stat,
    /// `console VM`.
    Console,
}

impl Look {
    /// Both, for tables and tests.
    pub const ALL: [Self; 2] = [Self::Stat, Self::Console];

    /// The state it needs, as its refusal says it.
    pub fn needs(self) -> &'static str {
        match self {
            Self::Stat => "started",
            Self::Console => "running",
        }
    }
}

/// What a [`Change`] does to the VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<C, B> {
    /// Build the created VM from its config and start it (it leaves the created ones).
    Build(C),
    /// Forget the created VM.
    Forget(C),
    /// Build the stopped VM anew from its config (fresh memory, images loaded again) and
    /// start it, in its place in the list.
    Rebuild(B),
    /// Ask the VM to stop and wait until its vCPUs are gone.
    Stop(B),
    /// [`Stop`](Self::Stop), then [`Rebuild`](Self::Rebuild).
    StopRebuild(B),
    /// Take the stopped VM out of the list (its memory is freed).
    Remove(B),
    /// Hold its vCPUs out of the guest.
    Pause(B),
    /// Let its vCPUs enter the guest again.
    Resume(B),
}

/// Why a command leaves a VM alone: `vm NAME: is STATE, must be NEEDS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The VM's name.
    pub name: String,
    /// Its state, one word.
    pub is: &'static str,
    /// The state the command needs, one word.
    pub needs: &'static str,
}

impl Refusal {
    /// The refusal of a command needing `needs` for the VM `name` in state `is`.
    pub fn new(name: &str, is: &'static str, needs: &'static str) -> Self {
        Self {
            name: String::from(name),
            is,
            needs,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vm {}: is {}, must be {}",
            self.name, self.is, self.needs
        )
    }
}

/// What `change` does to the VM `name`, found as `found`, or why it does nothing.
pub fn change<C, B>(
    change: Change,
    name: &str,
    found: Found<C, B>,
) -> Result<Action<C, B>, Refusal> {
    use VmState::{Paused, Running, Stopped};
    let is = found.word();
    match (change, found) {
        (Change::Start | Change::Restart, Found::Created(c)) => Ok(Action::Build(c)),
        (Change::Delete, Found::Created(c)) => Ok(Action::Forget(c)),
        (Change::Start | Change::Restart, Found::Built(b, Stopped)) => Ok(Action::Rebuild(b)),
        (Change::Restart, Found::Built(b, Running | Paused)) => Ok(Action::StopRebuild(b)),
        (Change::Stop, Found::Built(b, Running | Paused)) => Ok(Action::Stop(b)),
        (Change::Delete, Found::Built(b, Stopped)) => Ok(Action::Remove(b)),
        (Change::Pause, Found::Built(b, Running)) => Ok(Action::Pause(b)),
        (Change::Resume, Found::Built(b, Paused)) => Ok(Action::Resume(b)),
        _ => Err(change.refuse(name, is)),
    }
}

/// The built VM `look` may look at or attach to (`name`, found as `found`), or why not:
/// `vm stat` counts any built VM, `console` attaches to a running or paused one.
pub fn look<C, B>(look: Look, name: &str, found: Found<C, B>) -> Result<B, Refusal> {
    let is = found.word();
    match (look, found) {
        (Look::Stat, Found::Built(b, _)) => Ok(b),
        (Look::Console, Found::Built(b, state)) if state.alive() => Ok(b),
        _ => Err(Refusal::new(name, is, look.needs())),
    }
}
