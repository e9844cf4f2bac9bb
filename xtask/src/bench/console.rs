//! Boots one emulator command outside the scenario runner, one at a time, and times a
//! console line: what the bench needs for guests booted without the hypervisor (other
//! command lines than the runner builds) and for wall-clock boot times (the runner runs
//! two emulators at a time and does not time single lines).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::matcher::clean_line;
use crate::qemu::EmulatorCommand;
use crate::scenario::{stop, wait_until};
use crate::util;

/// How many console lines a failure shows.
const TAIL_LINES: usize = 20;

/// When a run is over and when it has failed.
#[derive(Clone, Debug)]
pub struct Watch<'a> {
    /// The console substring that completes the run; its first line is timed.
    pub done: &'a str,
    /// Console substrings that fail the run at once.
    pub fail_on: &'a [&'a str],
    /// After `done`: whether the emulator must then exit by itself with status 0 (the
    /// guest powers the machine off), or is stopped at once.
    pub then_exit: bool,
    /// Time limit from the emulator's start.
    pub timeout: Duration,
}

/// A run that completed.
#[derive(Clone, Debug)]
pub struct Completed {
    /// The whole console (standard output), cleaned, one line per `\n`.
    pub console: String,
    /// The first line holding [`Watch::done`].
    pub done_line: String,
    /// Wall-clock time from just before the emulator was started to the arrival of
    /// `done_line`.
    pub done_after: Duration,
}

enum Event {
    Line(Instant, String),
    Closed,
}

/// Runs `cmd` with standard input closed until `watch` says it is over, writes its console
/// (then its standard error, prefixed) to `log`, and stops it if it is still running.
/// Errors say why, with the command, the log and the last console lines.
pub fn run(cmd: &EmulatorCommand, log: &Path, watch: &Watch) -> Result<Completed> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut command = cmd.to_command();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("could not start `{cmd}`"))?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let out_reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        while let Ok(1..) = reader.read_until(b'\n', &mut buf) {
            if tx
                .send(Event::Line(Instant::now(), clean_line(&buf)))
                .is_err()
            {
                return;
            }
            buf.clear();
        }
        let _ = tx.send(Event::Closed);
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let deadline = start + watch.timeout;
    let mut console = String::new();
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut done: Option<(String, Duration)> = None;
    let result: Result<(), String> = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Line(at, line)) => {
                let _ = writeln!(console, "{line}");
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                if let Some(marker) = watch.fail_on.iter().find(|m| line.contains(*m)) {
                    break Err(format!("failure marker {marker:?} in line: {line}"));
                }
                if done.is_none() && line.contains(watch.done) {
                    done = Some((line, at.duration_since(start)));
                    if !watch.then_exit {
                        break Ok(());
                    }
                }
            }
            Ok(Event::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let status = wait_until(&mut child, Instant::now() + Duration::from_secs(5));
                let shown = status.map_or("still running".to_owned(), |s| s.to_string());
                break match (&done, status) {
                    (None, _) => Err(format!(
                        "the emulator closed its console ({shown}) before {:?}",
                        watch.done
                    )),
                    (Some(_), Some(s)) if s.success() => Ok(()),
                    (Some(_), _) => Err(format!(
                        "{:?} appeared, but the emulator did not then exit with status 0 ({shown})",
                        watch.done
                    )),
                };
            }
            Err(RecvTimeoutError::Timeout) => {
                break Err(format!(
                    "timed out after {} {}",
                    util::secs(watch.timeout),
                    if done.is_some() {
                        "waiting for the emulator to exit"
                    } else {
                        "without the line"
                    }
                ))
            }
        }
    };
    stop(&mut child);
    drop(rx);
    let _ = out_reader.join();
    let stderr_text = err_reader.join().unwrap_or_default();
    let mut text = console.clone();
    for line in stderr_text.lines() {
        let _ = writeln!(text, "[emulator stderr] {line}");
    }
    std::fs::write(log, text).with_context(|| format!("writing {}", log.display()))?;

    match (result, done) {
        (Ok(()), Some((done_line, done_after))) => Ok(Completed {
            console,
            done_line,
            done_after,
        }),
        (Ok(()), None) => unreachable!("a run only completes after its line"),
        (Err(why), _) => {
            let mut report = format!(
                "{why}\n  waiting for: {:?}\n  command: {cmd}\n  log: {}",
                watch.done,
                log.display()
            );
            for line in &tail {
                let _ = write!(report, "\n  | {line}");
            }
            for line in stderr_text.lines() {
                let _ = write!(report, "\n  | [emulator stderr] {line}");
            }
            bail!(report)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn sh(script: &str) -> EmulatorCommand {
        EmulatorCommand {
            program: "sh".to_owned(),
            args: vec!["-c".to_owned(), script.to_owned()],
        }
    }

    fn log(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "xtask-bench-console-{}-{name}.log",
            std::process::id()
        ))
    }

    fn watch(then_exit: bool) -> Watch<'static> {
        Watch {
            done: "MARK",
            fail_on: &["FAIL "],
            then_exit,
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_done_line_is_timed_and_the_rest_is_logged() {
        let path = log("done");
        let c = run(
            &sh("echo one; sleep 0.2; echo 'x MARK y'; echo two >&2"),
            &path,
            &watch(true),
        )
        .unwrap();
        assert_eq!(c.done_line, "x MARK y");
        assert!(
            c.done_after >= Duration::from_millis(200),
            "{:?}",
            c.done_after
        );
        assert_eq!(c.console, "one\nx MARK y\n");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(text, "one\nx MARK y\n[emulator stderr] two\n");
    }

    #[test]
    fn without_then_exit_the_emulator_is_stopped_at_the_line() {
        let path = log("stop");
        let started = Instant::now();
        let c = run(&sh("echo MARK; sleep 30"), &path, &watch(false)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(c.done_line, "MARK");
    }

    #[test]
    fn failures_say_why() {
        let cases = [
            ("echo FAIL bad; echo MARK", true, "failure marker \"FAIL \""),
            ("echo nothing", true, "closed its console"),
            ("echo MARK; exit 3", true, "did not then exit with status 0"),
        ];
        for (i, (script, then_exit, why)) in cases.into_iter().enumerate() {
            let path = log(&format!("fail{i}"));
            let err = format!(
                "{:#}",
                run(&sh(script), &path, &watch(then_exit)).unwrap_err()
            );
            std::fs::remove_file(&path).unwrap();
            assert!(err.contains(why), "{script}: {err}");
            assert!(err.contains("command: sh -c"), "{err}");
        }
        let path = log("timeout");
        let short = Watch {
            timeout: Duration::from_millis(300),
            ..watch(true)
        };
        let err = format!("{:#}", run(&sh("sleep 30"), &path, &short).unwrap_err());
        std::fs::remove_file(&path).unwrap();
        assert!(
            err.contains("timed out after 0.3 s without the line"),
            "{err}"
        );
    }
}
