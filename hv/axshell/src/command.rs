//! The commands: their table, the typed [`Command`], the parser and `help`.
//!
//! A line is split into words on whitespace; a double-quoted part (`"my vm"`) belongs to
//! its word with its spaces, and inside quotes `\"` and `\\` stand for `"` and `\`. The
//! first word (and for `vm` the second) names an entry of [`COMMANDS`], which says which
//! argument follows; `help` prints the same table.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// What kind of argument a command takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// A VM: its id (digits) or its name.
    Vm,
    /// A VM config file on the disk.
    File,
    /// A path on the disk.
    Path,
    /// A log level.
    Level,
    /// A command or command group (`help`'s topic, up to two words).
    Topic,
}

impl ArgKind {
    /// The argument as the usage line writes it.
    pub fn placeholder(self) -> &'static str {
        match self {
            Self::Vm => "ID|NAME",
            Self::File => "FILE",
            Self::Path => "PATH",
            Self::Level => "LEVEL",
            Self::Topic => "CMD",
        }
    }

    /// The argument as an error message names it.
    pub fn what(self) -> &'static str {
        match self {
            Self::Vm => "VM (id or name)",
            Self::File => "file",
            Self::Path => "path",
            Self::Level => "level",
            Self::Topic => "command",
        }
    }
}

/// Which [`Command`] an entry of [`COMMANDS`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Help,
    VmList,
    VmShow,
    VmCreate,
    VmStart,
    VmStop,
    VmRestart,
    VmPause,
    VmResume,
    VmDelete,
    VmStat,
    Ls,
    Cat,
    Log,
    Mem,
    Cpu,
    Console,
}

/// One command of the table: its words, its argument and what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// The command's words (`"vm start"`).
    pub name: &'static str,
    /// Its argument, if it takes one, and whether it is required.
    pub arg: Option<(ArgKind, bool)>,
    /// What it does, in one line.
    pub about: &'static str,
    op: Op,
}

impl CommandSpec {
    /// The usage line: `vm start ID|NAME`, `vm stat [ID|NAME]`.
    pub fn usage(&self) -> String {
        match self.arg {
            None => String::from(self.name),
            Some((kind, true)) => format!("{} {}", self.name, kind.placeholder()),
            Some((kind, false)) => format!("{} [{}]", self.name, kind.placeholder()),
        }
    }

    /// Most words that may follow the command's name.
    fn max_args(&self) -> usize {
        match self.arg {
            None => 0,
            Some((ArgKind::Topic, _)) => 2,
            Some(_) => 1,
        }
    }
}

const fn spec(
    name: &'static str,
    arg: Option<(ArgKind, bool)>,
    about: &'static str,
    op: Op,
) -> CommandSpec {
    CommandSpec {
        name,
        arg,
        about,
        op,
    }
}

const VM: Option<(ArgKind, bool)> = Some((ArgKind::Vm, true));

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[CommandSpec] = &[
    spec(
        "help",
        Some((ArgKind::Topic, false)),
        "list the commands, or describe one",
        Op::Help,
    ),
    spec(
        "vm list",
        None,
        "VMs: state, vCPUs and their CPUs, memory, uptime",
        Op::VmList,
    ),
    spec(
        "vm show",
        VM,
        "one VM's configuration and state",
        Op::VmShow,
    ),
    spec(
        "vm create",
        Some((ArgKind::File, true)),
        "create a VM from a config file on the disk",
        Op::VmCreate,
    ),
    spec("vm start", VM, "start a VM", Op::VmStart),
    spec("vm stop", VM, "stop a VM", Op::VmStop),
    spec(
        "vm restart",
        VM,
        "stop a VM and start it again",
        Op::VmRestart,
    ),
    spec("vm pause", VM, "pause a running VM's vCPUs", Op::VmPause),
    spec("vm resume", VM, "resume a paused VM", Op::VmResume),
    spec(
        "vm delete",
        VM,
        "delete a stopped VM, freeing its memory",
        Op::VmDelete,
    ),
    spec(
        "vm stat",
        Some((ArgKind::Vm, false)),
        "exit reasons and rates, interrupts, unclaimed accesses",
        Op::VmStat,
    ),
    spec(
        "ls",
        Some((ArgKind::Path, false)),
        "list a directory of the disk (default /)",
        Op::Ls,
    ),
    spec(
        "cat",
        Some((ArgKind::Path, true)),
        "print a file of the disk",
        Op::Cat,
    ),
    spec(
        "log",
        Some((ArgKind::Level, false)),
        "log level: show, or set (error warn info debug trace off)",
        Op::Log,
    ),
    spec("mem", None, "free frames and heap use", Op::Mem),
    spec("cpu", None, "per-CPU load", Op::Cpu),
    spec(
        "console",
        VM,
        "attach the terminal to a VM's UART until the detach key",
        Op::Console,
    ),
];

/// A VM named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmRef {
    /// By id: the word was all digits.
    Id(usize),
    /// By name.
    Name(String),
}

/// A log level of `log LEVEL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// No log output.
    Off,
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational messages and above.
    Info,
    /// Debug messages and above.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Every level, in the order the error message lists them.
    pub const ALL: [LogLevel; 6] = [
        Self::Error,
        Self::Warn,
        Self::Info,
        Self::Debug,
        Self::Trace,
        Self::Off,
    ];

    /// The level's name as typed.
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help [CMD]`: the topic (one or two words, a command or the `vm` group) if given.
    Help(Option<String>),
    /// `vm list`.
    VmList,
    /// `vm show ID|NAME`.
    VmShow(VmRef),
    /// `vm create FILE`.
    VmCreate(String),
    /// `vm start ID|NAME`.
    VmStart(VmRef),
    /// `vm stop ID|NAME`.
    VmStop(VmRef),
    /// `vm restart ID|NAME`.
    VmRestart(VmRef),
    /// `vm pause ID|NAME`.
    VmPause(VmRef),
    /// `vm resume ID|NAME`.
    VmResume(VmRef),
    /// `vm delete ID|NAME`.
    VmDelete(VmRef),
    /// `vm stat [ID|NAME]`: one VM, or all.
    VmStat(Option<VmRef>),
    /// `ls [PATH]`.
    Ls(Option<String>),
    /// `cat PATH`.
    Cat(String),
    /// `log [LEVEL]`: set the level, or show it.
    Log(Option<LogLevel>),
    /// `mem`.
    Mem,
    /// `cpu`.
    Cpu,
    /// `console ID|NAME`.
    Console(VmRef),
}

/// Why a line is not a command. `Display` is one line naming the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A `"` without its closing `"`.
    UnterminatedQuote,
    /// The first word names no command.
    UnknownCommand(String),
    /// A command group (`vm`) without its subcommand.
    MissingSubcommand(&'static str),
    /// A command group's second word names none of its commands.
    UnknownSubcommand {
        /// The group (`vm`).
        group: &'static str,
        /// The word typed.
        word: String,
    },
    /// A required argument is missing (or empty).
    MissingArgument(&'static CommandSpec),
    /// More words than the command takes.
    TooManyArguments(&'static CommandSpec),
    /// `log` with a level that does not exist.
    UnknownLevel(String),
    /// A VM id (all digits) too large to be one.
    BadVmId {
        /// The command.
        command: &'static CommandSpec,
        /// The digits typed.
        text: String,
    },
    /// `help` about something that is not a command.
    UnknownHelpTopic(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnterminatedQuote => {
                f.write_str("unterminated quote: a \"...\" argument needs its closing \"")
            }
            Self::UnknownCommand(word) => {
                write!(f, "unknown command {:?}: try \"help\"", word)
            }
            Self::MissingSubcommand(group) => {
                write!(f, "{group}: missing subcommand: try \"help {group}\"")
            }
            Self::UnknownSubcommand { group, word } => write!(
                f,
                "{group}: unknown subcommand {:?}: try \"help {group}\"",
                word
            ),
            Self::MissingArgument(spec) => {
                let what = spec.arg.map_or("argument", |(kind, _)| kind.what());
                write!(f, "{}: missing {what}", spec.name)
            }
            Self::TooManyArguments(spec) => write!(
                f,
                "{}: too many arguments (usage: {})",
                spec.name,
                spec.usage()
            ),
            Self::UnknownLevel(word) => {
                write!(f, "log: unknown level {:?} (", word)?;
                for (i, level) in LogLevel::ALL.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(level.name())?;
                }
                f.write_str(")")
            }
            Self::BadVmId { command, text } => {
                write!(f, "{}: VM id {:?} is too large", command.name, text)
            }
            Self::UnknownHelpTopic(topic) => {
                write!(f, "help: no command {:?}: try \"help\"", topic)
            }
        }
    }
}

/// Splits `line` into words: whitespace separates them, `"..."` keeps spaces, and inside
/// quotes `\"` and `\\` are `"` and `\`.
pub fn split_words(line: &str) -> Result<Vec<String>, ParseError> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            let word = word.get_or_insert_with(String::new);
            loop {
                match chars.next() {
                    None => return Err(ParseError::UnterminatedQuote),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        None => return Err(ParseError::UnterminatedQuote),
                        Some(c @ ('"' | '\\')) => word.push(c),
                        Some(c) => {
                            word.push('\\');
                            word.push(c);
                        }
                    },
                    Some(c) => word.push(c),
                }
            }
        } else if c.is_whitespace() {
            words.extend(word.take());
        } else {
            word.get_or_insert_with(String::new).push(c);
        }
    }
    words.extend(word);
    Ok(words)
}

/// Parses one line: `Ok(None)` for a blank line.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let words = split_words(line)?;
    let Some(first) = words.first() else {
        return Ok(None);
    };
    let mut family = COMMANDS
        .iter()
        .filter(|spec| spec.name.split(' ').next() == Some(first.as_str()));
    let Some(head) = family.next() else {
        return Err(ParseError::UnknownCommand(first.clone()));
    };
    let (spec, args) = if head.name == first {
        (head, &words[1..])
    } else {
        // A group (`vm ...`): its name is the first word of `head`'s.
        let group = &head.name[..first.len()];
        let Some(second) = words.get(1) else {
            return Err(ParseError::MissingSubcommand(group));
        };
        let spec = core::iter::once(head)
            .chain(family)
            .find(|spec| spec.name[first.len() + 1..] == **second)
            .ok_or_else(|| ParseError::UnknownSubcommand {
                group,
                word: second.clone(),
            })?;
        (spec, &words[2..])
    };
    build(spec, args).map(Some)
}

/// The command `spec` names, with the words after its name.
fn build(spec: &'static CommandSpec, args: &[String]) -> Result<Command, ParseError> {
    if args.len() > spec.max_args() {
        return Err(ParseError::TooManyArguments(spec));
    }
    let arg = args.first().filter(|word| !word.is_empty()).cloned();
    if arg.is_none() && matches!(spec.arg, Some((_, true))) {
        return Err(ParseError::MissingArgument(spec));
    }
    let vm = |word: Option<String>| -> Result<Option<VmRef>, ParseError> {
        let Some(word) = word else { return Ok(None) };
        if !word.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Some(VmRef::Name(word)));
        }
        match word.parse() {
            Ok(id) => Ok(Some(VmRef::Id(id))),
            Err(_) => Err(ParseError::BadVmId {
                command: spec,
                text: word,
            }),
        }
    };
    // A required argument is present from here on; `required` only unwraps it.
    let required = |vm: Option<VmRef>| vm.ok_or(ParseError::MissingArgument(spec));
    Ok(match spec.op {
        Op::Help => {
            let topic = (!args.is_empty()).then(|| args.join(" "));
            if let Some(topic) = &topic {
                if !is_topic(topic) {
                    return Err(ParseError::UnknownHelpTopic(topic.clone()));
                }
            }
            Command::Help(topic)
        }
        Op::VmList => Command::VmList,
        Op::VmShow => Command::VmShow(required(vm(arg)?)?),
        Op::VmCreate => Command::VmCreate(arg.ok_or(ParseError::MissingArgument(spec))?),
        Op::VmStart => Command::VmStart(required(vm(arg)?)?),
        Op::VmStop => Command::VmStop(required(vm(arg)?)?),
        Op::VmRestart => Command::VmRestart(required(vm(arg)?)?),
        Op::VmPause => Command::VmPause(required(vm(arg)?)?),
        Op::VmResume => Command::VmResume(required(vm(arg)?)?),
        Op::VmDelete => Command::VmDelete(required(vm(arg)?)?),
        Op::VmStat => Command::VmStat(vm(arg)?),
        Op::Ls => Command::Ls(arg),
        Op::Cat => Command::Cat(arg.ok_or(ParseError::MissingArgument(spec))?),
        Op::Log => Command::Log(match arg {
            None => None,
            Some(word) => Some(
                LogLevel::ALL
                    .into_iter()
                    .find(|level| level.name().eq_ignore_ascii_case(&word))
                    .ok_or(ParseError::UnknownLevel(word))?,
            ),
        }),
        Op::Mem => Command::Mem,
        Op::Cpu => Command::Cpu,
        Op::Console => Command::Console(required(vm(arg)?)?),
    })
}

/// Whether `topic` is a command's name or a group's first word (`vm`).
fn is_topic(topic: &str) -> bool {
    COMMANDS.iter().any(|spec| in_topic(spec, topic))
}

/// Whether `help topic` describes `spec`: `topic` is its name or its group.
fn in_topic(spec: &CommandSpec, topic: &str) -> bool {
    spec.name == topic
        || spec
            .name
            .strip_prefix(topic)
            .is_some_and(|rest| rest.starts_with(' '))
}

/// The text `help` prints (lines end with `\n`): every command, or those of `topic` (a
/// command or a group); `None` for a topic that is no command.
pub fn help_text(topic: Option<&str>) -> Option<String> {
    if topic.is_some_and(|topic| !is_topic(topic)) {
        return None;
    }
    let width = COMMANDS
        .iter()
        .map(|spec| spec.usage().len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for spec in COMMANDS {
        if topic.is_none_or(|topic| in_topic(spec, topic)) {
            // Writing to a String cannot fail.
            let _ = writeln!(text, "  {:width$}  {}", spec.usage(), spec.about);
        }
    }
    if topic.is_none() {
        text.push_str("keys: Left/Right, Home/End, Up/Down (history), Ctrl-A/E/U/K/W/C/L\n");
    }
    Some(text)
}
