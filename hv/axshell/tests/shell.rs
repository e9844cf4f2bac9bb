//! The shell: lines parsed, run by the executor or answered (help, errors), prompts.

use core::fmt::Write;

use axshell::screen::Screen;
use axshell::{Command, Editor, Executor, Flow, Shell, Sink, Step, VmRef, COMMANDS};

/// Records the commands; fails `vm delete`; prints a line with control characters;
/// `console` takes the terminal.
#[derive(Default)]
struct Recorder {
    commands: Vec<Command>,
}

impl Executor for Recorder {
    type Error = &'static str;

    fn execute(&mut self, command: Command, out: &mut dyn Write) -> Result<Flow, Self::Error> {
        let result = match &command {
            Command::VmDelete(_) => Err("vm delete: VM 1 is running: stop it first"),
            Command::VmList => writeln!(out, "0 linux\trunning\n1 te\x1b[2Jst stopped")
                .map(|()| Flow::Prompt)
                .map_err(|_| "output"),
            Command::Console(_) => Ok(Flow::Suspend),
            _ => Ok(Flow::Prompt),
        };
        self.commands.push(command);
        result
    }
}

fn run(input: &[u8]) -> (Vec<Step>, Recorder, String) {
    let mut shell = Shell::new();
    let mut rec = Recorder::default();
    let mut out = Vec::new();
    shell.start(&mut out);
    let steps = input
        .iter()
        .map(|&b| shell.feed(b, &mut rec, &mut out))
        .filter(|s| *s != Step::Editing)
        .collect();
    (steps, rec, String::from_utf8(out).unwrap())
}

#[test]
fn a_session() {
    let (steps, rec, out) =
        run(b"vm list\r\nvm start linux\rvm delete 1\r\rvmm\rhelp vm stat\rab\x03\x04");
    assert_eq!(
        steps,
        [
            Step::Ran,
            Step::Ran,
            Step::Failed,
            Step::Blank,
            Step::Refused,
            Step::Help,
            Step::Interrupted,
            Step::EndOfInput
        ]
    );
    assert_eq!(
        rec.commands,
        [
            Command::VmList,
            Command::VmStart(VmRef::Name("linux".into())),
            Command::VmDelete(VmRef::Id(1))
        ]
    );
    let help = COMMANDS.iter().find(|s| s.name == "vm stat").unwrap();
    let want = format!(
        "axvisor> vm list\r\n0 linux running\r\n1 te?[2Jst stopped\r\n\
         axvisor> vm start linux\r\n\
         axvisor> vm delete 1\r\nvm delete: VM 1 is running: stop it first\r\n\
         axvisor> \r\n\
         axvisor> vmm\r\nunknown command \"vmm\": try \"help\"\r\n\
         axvisor> help vm stat\r\n  {:w$}  {}\r\n\
         axvisor> ab^C\r\n\
         axvisor> ",
        help.usage(),
        help.about,
        w = COMMANDS.iter().map(|s| s.usage().len()).max().unwrap()
    );
    assert_eq!(out, want);
}

#[test]
fn help_lists_every_command() {
    let (steps, rec, out) = run(b"help\r");
    assert_eq!(steps, [Step::Help]);
    assert!(rec.commands.is_empty());
    for spec in COMMANDS {
        assert!(out.contains(&spec.usage()));
    }
}

#[test]
fn history_recalls_through_the_shell() {
    let (steps, rec, _) = run(b"vm stop 2\r\x1b[A\x7f3\r");
    assert_eq!(steps, [Step::Ran, Step::Ran]);
    assert_eq!(rec.commands[1], Command::VmStop(VmRef::Id(3)));
}

#[test]
fn another_prompt_and_width() {
    let mut shell = Shell::with_editor(Editor::with_columns("hv$ ", 40, 8));
    let mut out = Vec::new();
    shell.start(&mut out);
    for &b in b"mem\r" {
        shell.feed(b, &mut Recorder::default(), &mut out);
    }
    assert_eq!(out, b"hv$ mem\r\nhv$ ");
    assert_eq!(shell.editor().max_len(), 40 - 4 - 1);
}

#[test]
fn console_suspends_until_resume() {
    let mut shell = Shell::new();
    let mut rec = Recorder::default();
    let mut out = Vec::new();
    shell.start(&mut out);
    let steps: Vec<Step> = b"console linux\r"
        .iter()
        .map(|&b| shell.feed(b, &mut rec, &mut out))
        .collect();
    assert_eq!(steps.last(), Some(&Step::Suspended));
    assert_eq!(out, b"axvisor> console linux\r\n");
    out.clear();
    shell.resume(&mut out);
    assert_eq!(out, b"axvisor> ");
}

#[test]
fn other_output_goes_around_the_line_being_typed() {
    let mut shell = Shell::new();
    let mut rec = Recorder::default();
    let mut screen = Screen::new(80);
    shell.start(&mut screen);
    for &b in b"vm sta\x1b[D" {
        shell.feed(b, &mut rec, &mut screen);
    }
    shell.hide(&mut screen);
    assert_eq!(screen.current_row(), b"");
    assert_eq!(screen.cursor_column(), 0);
    screen.put(b"[ 12.5 INFO] vm 1 powered off\r\n");
    shell.show(&mut screen);
    assert_eq!(screen.row(0), b"[ 12.5 INFO] vm 1 powered off");
    assert_eq!(screen.current_row(), b"axvisor> vm sta");
    assert_eq!(screen.cursor_column(), 9 + 5);
    assert_eq!(screen.bad(), None);
    for &b in b"\x05rt 1\r" {
        shell.feed(b, &mut rec, &mut screen);
    }
    assert_eq!(rec.commands, [Command::VmStart(VmRef::Id(1))]);
}

/// Lines nobody should type: each gets one answer line of printable text (or runs, for
/// the ones whose stray bytes the editor drops), the prompt comes back, nothing panics.
#[test]
fn garbage_lines_get_one_answer_line_each() {
    let long = "x".repeat(300);
    let cases: [(&[u8], Step, &str); 12] = [
        (long.as_bytes(), Step::Refused, "unknown command \"xxxxxxxx"),
        (
            b"vm start 99999999999999999999999",
            Step::Refused,
            "vm start: VM id \"99999999999999999999999\" is too large",
        ),
        (
            b"vm show \"unterminated",
            Step::Refused,
            "unterminated quote",
        ),
        (
            b"vm start a b c",
            Step::Refused,
            "vm start: too many arguments",
        ),
        (b"vm", Step::Refused, "vm: missing subcommand"),
        (b"\"\"", Step::Refused, "unknown command \"\": try \"help\""),
        (
            b"log \x1b[31mred",
            Step::Refused,
            "log: unknown level \"red\"",
        ),
        (b"vm st\xc3\xa4op 1", Step::Ran, ""),
        (b"\x80\x81\xfe\xff", Step::Blank, ""),
        (b"cat \x00\x7f", Step::Refused, "cat: missing path"),
        (
            b"vm delete 4294967296",
            Step::Failed,
            "vm delete: VM 1 is running",
        ),
        (
            b"help \"vm start\" x y",
            Step::Refused,
            "help: too many arguments",
        ),
    ];
    for (typed, step, answer) in cases {
        let mut input = typed.to_vec();
        input.push(b'\r');
        let (steps, _, out) = run(&input);
        let shown = String::from_utf8_lossy(typed);
        assert_eq!(steps, [step], "{shown:?}");
        // After the echoed line: the answer (if any) and the prompt.
        let (_, rest) = out.split_once("\r\n").unwrap();
        let answer_lines: Vec<&str> = rest
            .strip_suffix("axvisor> ")
            .unwrap_or_else(|| panic!("{shown:?}: no prompt after {rest:?}"))
            .lines()
            .collect();
        match answer {
            "" => assert!(answer_lines.is_empty(), "{shown:?}: {answer_lines:?}"),
            _ => {
                assert_eq!(answer_lines.len(), 1, "{shown:?}: {answer_lines:?}");
                let line = answer_lines[0];
                assert!(line.starts_with(answer), "{shown:?}: {line:?}");
                assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b)), "{line:?}");
                assert!(line.len() < 120, "{line:?}");
            }
        }
    }
}
