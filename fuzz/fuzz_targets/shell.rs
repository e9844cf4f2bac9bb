//! The hypervisor shell (`axshell`): any byte stream typed into a `Shell` whose executor
//! records the commands and answers with output full of control characters (and an error
//! for some), on a terminal of any width with any history length; a second `Editor` fed the
//! same bytes yields the lines, which go through the parser.
//!
//! `console` suspends the shell (then it is resumed after some VM output); with the second
//! byte's top bit set, a log line is written between `hide` and `show` every 7 bytes.
//!
//! Checked after every byte, on a VT100 screen model of the shell's output: nothing but the
//! sequences the editor means (no echoed garbage, an executor's control characters shown as
//! `?`); the cursor's row shows exactly prompt and line, the cursor where the editor says,
//! never waiting in the last column; the line is printable ASCII and never longer than its
//! maximum. Every line parses or yields a `ParseError` that is one non-empty line; the shell
//! runs exactly the commands the parser gives (not `help`).

use core::fmt::Write;

use axshell::screen::Screen;
use axshell::{parse, Command, Editor, Event, Executor, Flow, Shell, Sink, Step};

/// Records the commands; writes control characters; fails every third command.
#[derive(Default)]
struct Recorder {
    commands: Vec<Command>,
}

impl Executor for Recorder {
    type Error = &'static str;

    fn execute(&mut self, command: Command, out: &mut dyn Write) -> Result<Flow, Self::Error> {
        let _ = writeln!(
            out,
            "ok\x1b[2J\x07\x08\r\u{9b}31m{}\x00\tdone",
            self.commands.len()
        );
        let suspend = matches!(command, Command::Console(_));
        self.commands.push(command);
        if self.commands.len().is_multiple_of(3) {
            Err("failed\x1b[H: one line")
        } else if suspend {
            Ok(Flow::Suspend)
        } else {
            Ok(Flow::Prompt)
        }
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let [columns, history, input @ ..] = data else {
        return;
    };
    let prompt = if columns % 2 == 0 {
        axshell::PROMPT
    } else {
        "> "
    };
    // At least the prompt and two columns (the editor's assumption).
    let columns = prompt.len() + 2 + usize::from(*columns % 150);
    let interleave = *history >= 0x80;
    let history = usize::from(*history % 40);
    let mut shell = Shell::with_editor(Editor::with_columns(prompt, columns, history));
    let mut editor = Editor::with_columns(prompt, columns, history);
    let mut executor = Recorder::default();
    let mut screen = Screen::new(columns);
    let mut expected = Vec::new();
    shell.start(&mut screen);

    for (i, &byte) in input.iter().enumerate() {
        let step = shell.feed(byte, &mut executor, &mut screen);
        if step == Step::Suspended {
            // Back from the VM's console on a new line.
            screen.put(b"vm output\r\n");
            shell.resume(&mut screen);
        }
        if interleave && i % 7 == 0 {
            // A log line while the user types.
            shell.hide(&mut screen);
            screen.put(b"[ 1.0 INFO] log line\r\n");
            shell.show(&mut screen);
        }
        let event = editor.feed(byte, &mut Vec::new());
        assert_eq!(
            screen.bad(),
            None,
            "output the terminal does not understand"
        );

        let e = shell.editor();
        let line = e.line();
        assert!(line.len() <= e.max_len());
        assert!(e.cursor() <= line.len());
        assert!(line.iter().all(|b| (0x20..=0x7E).contains(b)));
        assert_eq!(line, editor.line());
        let mut want = Vec::from(e.prompt_text().as_bytes());
        want.extend_from_slice(line);
        let end = want.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
        assert_eq!(screen.current_row(), &want[..end]);
        assert_eq!(screen.cursor_column(), e.prompt_text().len() + e.cursor());
        assert!(!screen.pending_wrap());

        let want_step = match event {
            None => Step::Editing,
            Some(Event::Interrupt) => Step::Interrupted,
            Some(Event::EndOfInput) => Step::EndOfInput,
            Some(Event::Line(text)) => {
                assert!(text.len() <= editor.max_len());
                match parse(&text) {
                    Ok(None) => Step::Blank,
                    Ok(Some(Command::Help(_))) => Step::Help,
                    Ok(Some(command)) => {
                        let console = matches!(command, Command::Console(_));
                        expected.push(command);
                        if expected.len() % 3 == 0 {
                            Step::Failed
                        } else if console {
                            Step::Suspended
                        } else {
                            Step::Ran
                        }
                    }
                    Err(error) => {
                        let message = error.to_string();
                        assert!(!message.is_empty());
                        assert!(!message.chars().any(char::is_control), "{message:?}");
                        Step::Refused
                    }
                }
            }
        };
        assert_eq!(step, want_step);
    }
    assert_eq!(executor.commands, expected);
}
