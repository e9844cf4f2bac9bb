//! The parser: every command, every error line, and help from the same table.

use axshell::command::split_words;
use axshell::{help_text, parse, Command, LogLevel, ParseError, VmRef, COMMANDS};

fn ok(line: &str) -> Command {
    match parse(line) {
        Ok(Some(command)) => command,
        other => panic!("{line:?}: {other:?}"),
    }
}

fn err(line: &str) -> String {
    match parse(line) {
        Err(e) => e.to_string(),
        other => panic!("{line:?} parsed: {other:?}"),
    }
}

fn name(s: &str) -> VmRef {
    VmRef::Name(s.into())
}

#[test]
fn every_command() {
    assert_eq!(ok("help"), Command::Help(None));
    assert_eq!(ok("help vm"), Command::Help(Some("vm".into())));
    assert_eq!(ok("help vm start"), Command::Help(Some("vm start".into())));
    assert_eq!(
        ok("help \"vm stat\""),
        Command::Help(Some("vm stat".into()))
    );
    assert_eq!(ok("help log"), Command::Help(Some("log".into())));
    assert_eq!(ok("vm list"), Command::VmList);
    assert_eq!(ok("vm show 0"), Command::VmShow(VmRef::Id(0)));
    assert_eq!(ok("vm show linux"), Command::VmShow(name("linux")));
    assert_eq!(
        ok("vm create /vms/linux.toml"),
        Command::VmCreate("/vms/linux.toml".into())
    );
    assert_eq!(ok("vm start 1"), Command::VmStart(VmRef::Id(1)));
    assert_eq!(ok("vm stop linux"), Command::VmStop(name("linux")));
    assert_eq!(ok("vm restart 007"), Command::VmRestart(VmRef::Id(7)));
    assert_eq!(ok("vm pause \"my vm\""), Command::VmPause(name("my vm")));
    assert_eq!(ok("vm resume 2"), Command::VmResume(VmRef::Id(2)));
    assert_eq!(ok("vm delete 1a"), Command::VmDelete(name("1a")));
    assert_eq!(ok("vm stat"), Command::VmStat(None));
    assert_eq!(ok("vm stat 3"), Command::VmStat(Some(VmRef::Id(3))));
    assert_eq!(ok("ls"), Command::Ls(None));
    assert_eq!(ok("ls /vms"), Command::Ls(Some("/vms".into())));
    assert_eq!(ok("cat /vms/a.toml"), Command::Cat("/vms/a.toml".into()));
    assert_eq!(ok("log"), Command::Log(None));
    for level in LogLevel::ALL {
        assert_eq!(
            ok(&format!("log {}", level.name())),
            Command::Log(Some(level))
        );
    }
    assert_eq!(ok("log WARN"), Command::Log(Some(LogLevel::Warn)));
    assert_eq!(ok("mem"), Command::Mem);
    assert_eq!(ok("cpu"), Command::Cpu);
    assert_eq!(ok("console linux"), Command::Console(name("linux")));
    assert_eq!(ok("  \t vm   start\t 1  "), Command::VmStart(VmRef::Id(1)));
}

#[test]
fn blank_lines_are_nothing() {
    assert_eq!(parse(""), Ok(None));
    assert_eq!(parse("   \t "), Ok(None));
}

#[test]
fn words_and_quotes() {
    let w = |s: &str| split_words(s).unwrap();
    assert_eq!(w("a b  c"), ["a", "b", "c"]);
    assert_eq!(w("a \"b c\" d"), ["a", "b c", "d"]);
    assert_eq!(w("x\"y z\"w"), ["xy zw"]);
    assert_eq!(w("\"\""), [""]);
    assert_eq!(w(r#""a \"q\" \\ \n""#), [r#"a "q" \ \n"#]);
    assert_eq!(split_words("cat \"a b"), Err(ParseError::UnterminatedQuote));
    assert_eq!(split_words("cat \"a\\"), Err(ParseError::UnterminatedQuote));
}

#[test]
fn error_lines() {
    let cases = [
        ("vmm", r#"unknown command "vmm": try "help""#),
        ("VM list", r#"unknown command "VM": try "help""#),
        ("vm", r#"vm: missing subcommand: try "help vm""#),
        (
            "vm frob 1",
            r#"vm: unknown subcommand "frob": try "help vm""#,
        ),
        ("vm start", "vm start: missing VM (id or name)"),
        ("vm start \"\"", "vm start: missing VM (id or name)"),
        ("vm show", "vm show: missing VM (id or name)"),
        ("vm stop", "vm stop: missing VM (id or name)"),
        ("vm restart", "vm restart: missing VM (id or name)"),
        ("vm pause", "vm pause: missing VM (id or name)"),
        ("vm resume", "vm resume: missing VM (id or name)"),
        ("vm delete", "vm delete: missing VM (id or name)"),
        ("console", "console: missing VM (id or name)"),
        ("vm create", "vm create: missing file"),
        ("cat", "cat: missing path"),
        (
            "log loud",
            r#"log: unknown level "loud" (error, warn, info, debug, trace, off)"#,
        ),
        (
            "vm list all",
            "vm list: too many arguments (usage: vm list)",
        ),
        (
            "vm start 1 2",
            "vm start: too many arguments (usage: vm start ID|NAME)",
        ),
        (
            "vm stat 1 2",
            "vm stat: too many arguments (usage: vm stat [ID|NAME])",
        ),
        ("ls a b", "ls: too many arguments (usage: ls [PATH])"),
        (
            "log info debug",
            "log: too many arguments (usage: log [LEVEL])",
        ),
        ("mem x", "mem: too many arguments (usage: mem)"),
        ("cpu 0", "cpu: too many arguments (usage: cpu)"),
        (
            "help vm start now",
            "help: too many arguments (usage: help [CMD])",
        ),
        ("help vmm", r#"help: no command "vmm": try "help""#),
        ("help vm frob", r#"help: no command "vm frob": try "help""#),
        ("help v", r#"help: no command "v": try "help""#),
        (
            "vm start 99999999999999999999999",
            r#"vm start: VM id "99999999999999999999999" is too large"#,
        ),
        (
            "cat \"/vms/a",
            "unterminated quote: a \"...\" argument needs its closing \"",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(err(line), want, "{line:?}");
    }
    // Control characters typed into a name are shown escaped, never raw.
    assert_eq!(err("\x1b[2J"), r#"unknown command "\u{1b}[2J": try "help""#);
}

#[test]
fn help_comes_from_the_table() {
    let all = help_text(None).unwrap();
    for spec in COMMANDS {
        assert!(all.contains(&spec.usage()), "{}", spec.name);
        assert!(all.contains(spec.about), "{}", spec.name);
        // Every command of the table parses with a sample argument, and refuses one more.
        let sample = match spec.arg {
            None => String::new(),
            Some((axshell::ArgKind::Level, _)) => " info".into(),
            Some((axshell::ArgKind::Topic, _)) => " vm".into(),
            Some(_) => " x".into(),
        };
        let line = format!("{}{sample}", spec.name);
        assert!(parse(&line).is_ok(), "{line}");
        let extra = if spec.arg.is_some_and(|(k, _)| k == axshell::ArgKind::Topic) {
            " a b c"
        } else {
            " a b"
        };
        assert!(
            matches!(
                parse(&format!("{}{extra}", spec.name)),
                Err(ParseError::TooManyArguments(_))
            ),
            "{}",
            spec.name
        );
        // `help NAME` is exactly that command's line.
        let one = help_text(Some(spec.name)).unwrap();
        assert_eq!(one.lines().count(), 1, "{}", spec.name);
        assert!(one.contains(spec.about));
    }
    assert!(all.lines().all(|l| l.len() < 80), "{all}");
    let vm = help_text(Some("vm")).unwrap();
    assert_eq!(
        vm.lines().count(),
        COMMANDS
            .iter()
            .filter(|s| s.name.starts_with("vm "))
            .count()
    );
    assert_eq!(help_text(Some("v")), None);
    assert_eq!(help_text(Some("")), None);
}

#[test]
fn docs_show_the_help_text() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/shell.md"))
        .unwrap();
    let help = help_text(None).unwrap();
    assert!(
        doc.contains(&format!("```\n{help}```\n")),
        "docs/shell.md's help block is stale:\n{help}"
    );
}
