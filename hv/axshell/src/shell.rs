//! The shell: the editor's lines parsed and handed to an [`Executor`], with the prompt.

use core::fmt;

use crate::command::{help_text, parse, Command};
use crate::editor::{Editor, Event};
use crate::Sink;

/// The shell's prompt.
pub const PROMPT: &str = "axvisor> ";

/// What runs the commands (the hypervisor). `help` never reaches it: the shell answers it
/// from the command table.
pub trait Executor {
    /// Why a command failed; the shell prints it as one line.
    type Error: fmt::Display;

    /// Runs `command`, writing its output (lines ending in `\n`) to `out`; says whether
    /// the shell prompts now or the terminal went elsewhere (`console`).
    fn execute(&mut self, command: Command, out: &mut dyn fmt::Write) -> Result<Flow, Self::Error>;
}

/// What the shell does after a command ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Prompt for the next line.
    Prompt,
    /// No prompt: the terminal now belongs to something else (`console` attached it to a
    /// VM). The caller stops feeding the shell and calls [`Shell::resume`] when the
    /// terminal comes back.
    Suspend,
}

/// What one byte fed to the [`Shell`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The line is still being edited.
    Editing,
    /// A blank line was entered.
    Blank,
    /// `help` was answered.
    Help,
    /// A command ran and succeeded.
    Ran,
    /// A command ran and took the terminal ([`Flow::Suspend`]); no prompt was written.
    Suspended,
    /// A command ran and failed (its error was printed).
    Failed,
    /// The line was no command (the parse error was printed).
    Refused,
    /// Ctrl-C dropped the line.
    Interrupted,
    /// Ctrl-D on an empty line (nothing printed; the shell stays).
    EndOfInput,
}

/// The shell: feed it received bytes, it echoes, parses each line, and runs commands.
#[derive(Clone, Debug)]
pub struct Shell {
    editor: Editor,
}

impl Default for Shell {
    fn default() -> Self {
        Self::new()
    }
}

impl Shell {
    /// A shell with the [`PROMPT`] on an 80-column terminal.
    pub fn new() -> Self {
        Self::with_editor(Editor::new(PROMPT))
    }

    /// A shell around `editor` (another prompt, width or history length).
    pub fn with_editor(editor: Editor) -> Self {
        Self { editor }
    }

    /// Its line editor.
    pub fn editor(&self) -> &Editor {
        &self.editor
    }

    /// Writes the first prompt.
    pub fn start(&self, out: &mut dyn Sink) {
        self.editor.prompt(out);
    }

    /// Writes the prompt again when the terminal comes back after [`Flow::Suspend`] (the
    /// caller has put the cursor at the start of a line).
    pub fn resume(&self, out: &mut dyn Sink) {
        self.editor.show(out);
    }

    /// Erases prompt and line so that other output (a log line) can be written on their
    /// row; [`show`](Self::show) writes them back after it.
    pub fn hide(&self, out: &mut dyn Sink) {
        self.editor.hide(out);
    }

    /// Writes prompt and line back after [`hide`](Self::hide) and output ending with a
    /// line end.
    pub fn show(&self, out: &mut dyn Sink) {
        self.editor.show(out);
    }

    /// Takes one received byte: echoes it, and when it ends a line, parses it and runs the
    /// command (`help` itself, the others through `executor`), then writes the prompt.
    pub fn feed<E: Executor>(&mut self, byte: u8, executor: &mut E, out: &mut dyn Sink) -> Step {
        let Some(event) = self.editor.feed(byte, out) else {
            return Step::Editing;
        };
        let step = match event {
            Event::EndOfInput => return Step::EndOfInput,
            Event::Interrupt => Step::Interrupted,
            Event::Line(line) => {
                let mut term = Terminal(out);
                match parse(&line) {
                    Ok(None) => Step::Blank,
                    Ok(Some(Command::Help(topic))) => {
                        // The parser accepted the topic, so there is a text.
                        let text = help_text(topic.as_deref()).unwrap_or_default();
                        term.text(&text);
                        Step::Help
                    }
                    Ok(Some(command)) => match executor.execute(command, &mut term) {
                        Ok(Flow::Prompt) => Step::Ran,
                        Ok(Flow::Suspend) => return Step::Suspended,
                        Err(error) => {
                            term.line(format_args!("{error}"));
                            Step::Failed
                        }
                    },
                    Err(error) => {
                        term.line(format_args!("{error}"));
                        Step::Refused
                    }
                }
            }
        };
        self.editor.prompt(out);
        step
    }
}

/// The console as a [`fmt::Write`]: `\n` becomes CR LF, a tab a space, and other control
/// characters (which could move the cursor or rewrite the screen) are shown as `?`.
pub struct Terminal<'a>(pub &'a mut dyn Sink);

impl Terminal<'_> {
    /// Writes `text` (infallible).
    fn text(&mut self, text: &str) {
        let _ = fmt::Write::write_str(self, text);
    }

    /// Writes `args` and a line end.
    fn line(&mut self, args: fmt::Arguments<'_>) {
        let _ = fmt::Write::write_fmt(self, args);
        self.text("\n");
    }
}

impl fmt::Write for Terminal<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(char::is_control) {
            self.0.put(&rest.as_bytes()[..at]);
            let c = rest[at..].chars().next().unwrap_or('?');
            self.0.put(match c {
                '\n' => b"\r\n",
                '\t' => b" ",
                _ => b"?",
            });
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.put(rest.as_bytes());
        Ok(())
    }
}
