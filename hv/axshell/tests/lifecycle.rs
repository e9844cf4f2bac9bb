//! The decision table of the VM commands: every command against every state, with the
//! action taken or the exact refusal line the shell prints.

use axshell::lifecycle::{self, Action, Change, Found, Look, Refusal, VmState};

/// The states in the columns of [`TABLE`]: created, then the built ones.
fn states() -> Vec<Found<(), ()>> {
    let mut all = vec![Found::Created(())];
    all.extend(VmState::ALL.map(|s| Found::Built((), s)));
    all
}

/// Each command's answer for a VM named `echo` created, loading, loaded, running, paused,
/// stopping and stopped: the action, or the line printed.
const TABLE: [(&str, [&str; 7]); 8] = [
    (
        "vm start",
        [
            "build",
            "vm echo: is loading, must be stopped",
            "vm echo: is loaded, must be stopped",
            "vm echo: is running, must be stopped",
            "vm echo: is paused, must be stopped",
            "vm echo: is stopping, must be stopped",
            "rebuild",
        ],
    ),
    (
        "vm stop",
        [
            "vm echo: is created, must be running",
            "vm echo: is loading, must be running",
            "vm echo: is loaded, must be running",
            "stop",
            "stop",
            "vm echo: is stopping, must be running",
            "vm echo: is stopped, must be running",
        ],
    ),
    (
        "vm restart",
        [
            "build",
            "vm echo: is loading, must be stopped",
            "vm echo: is loaded, must be stopped",
            "stop, rebuild",
            "stop, rebuild",
            "vm echo: is stopping, must be stopped",
            "rebuild",
        ],
    ),
    (
        "vm delete",
        [
            "forget",
            "vm echo: is loading, must be stopped",
            "vm echo: is loaded, must be stopped",
            "vm echo: is running, must be stopped",
            "vm echo: is paused, must be stopped",
            "vm echo: is stopping, must be stopped",
            "remove",
        ],
    ),
    (
        "vm pause",
        [
            "vm echo: is created, must be running",
            "vm echo: is loading, must be running",
            "vm echo: is loaded, must be running",
            "pause",
            "vm echo: is paused, must be running",
            "vm echo: is stopping, must be running",
            "vm echo: is stopped, must be running",
        ],
    ),
    (
        "vm resume",
        [
            "vm echo: is created, must be paused",
            "vm echo: is loading, must be paused",
            "vm echo: is loaded, must be paused",
            "vm echo: is running, must be paused",
            "resume",
            "vm echo: is stopping, must be paused",
            "vm echo: is stopped, must be paused",
        ],
    ),
    (
        "vm stat",
        [
            "vm echo: is created, must be started",
            "count",
            "count",
            "count",
            "count",
            "count",
            "count",
        ],
    ),
    (
        "console",
        [
            "vm echo: is created, must be running",
            "vm echo: is loading, must be running",
            "vm echo: is loaded, must be running",
            "attach",
            "attach",
            "vm echo: is stopping, must be running",
            "vm echo: is stopped, must be running",
        ],
    ),
];

fn action_word(action: Action<(), ()>) -> &'static str {
    match action {
        Action::Build(()) => "build",
        Action::Forget(()) => "forget",
        Action::Rebuild(()) => "rebuild",
        Action::Stop(()) => "stop",
        Action::StopRebuild(()) => "stop, rebuild",
        Action::Remove(()) => "remove",
        Action::Pause(()) => "pause",
        Action::Resume(()) => "resume",
    }
}

fn answer<T>(result: Result<T, Refusal>, word: impl FnOnce(T) -> &'static str) -> String {
    match result {
        Ok(done) => word(done).to_string(),
        Err(refusal) => refusal.to_string(),
    }
}

/// A command of [`TABLE`]'s rows.
enum Cmd {
    Change(Change),
    Look(Look),
}

#[test]
fn every_command_in_every_state() {
    let commands = Change::ALL
        .map(Cmd::Change)
        .into_iter()
        .chain(Look::ALL.map(Cmd::Look));
    for (cmd, (command, row)) in commands.zip(TABLE) {
        for (found, want) in states().into_iter().zip(row) {
            let state = found.word();
            let got = match cmd {
                Cmd::Change(c) => answer(lifecycle::change(c, "echo", found), action_word),
                Cmd::Look(l) => answer(lifecycle::look(l, "echo", found), |()| match l {
                    Look::Stat => "count",
                    Look::Console => "attach",
                }),
            };
            assert_eq!(got, want, "{command} of a {state} VM");
        }
    }
}

#[test]
fn the_action_carries_what_was_found() {
    let built = |s| Found::<&str, u32>::Built(7, s);
    assert_eq!(
        lifecycle::change(Change::Start, "a", Found::<&str, u32>::Created("cfg")),
        Ok(Action::Build("cfg"))
    );
    assert_eq!(
        lifecycle::change(Change::Restart, "a", built(VmState::Paused)),
        Ok(Action::StopRebuild(7))
    );
    assert_eq!(
        lifecycle::look(Look::Stat, "a", built(VmState::Stopped)),
        Ok(7)
    );
}

#[test]
fn a_refusal_after_the_state_changed_reads_the_same() {
    // `vm pause` found the VM running, but it stopped before the pause took.
    assert_eq!(
        Change::Pause
            .refuse("echo", VmState::Stopped.word())
            .to_string(),
        "vm echo: is stopped, must be running"
    );
}

#[test]
fn success_lines_and_state_rules() {
    assert_eq!(
        Change::ALL.map(|c| c.done("echo")),
        [
            "vm echo: started",
            "vm echo: stopped",
            "vm echo: restarted",
            "vm echo: deleted",
            "vm echo: paused",
            "vm echo: resumed",
        ]
    );
    let alive: Vec<_> = VmState::ALL.into_iter().filter(|s| s.alive()).collect();
    assert_eq!(alive, [VmState::Running, VmState::Paused]);
    let detaches: Vec<_> = VmState::ALL
        .into_iter()
        .filter(|s| !s.keeps_console())
        .collect();
    assert_eq!(detaches, [VmState::Stopped]);
    assert_eq!(Found::<(), ()>::Created(()).word(), lifecycle::CREATED);
}
