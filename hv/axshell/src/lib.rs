//! The hypervisor shell without its runtime.
//!
//! Three layers, each usable alone and all host-tested:
//!
//! - [`Editor`] ([`editor`]): a line editor fed one received byte at a time (what a UART
//!   delivers). It echoes through a [`Sink`] with minimal VT100 redraws, keeps a bounded
//!   [`History`], swallows escape sequences it does not know, never lets a control or
//!   non-ASCII byte into the line, and yields an [`Event`] when a line is complete.
//! - [`parse`] ([`command`]): a line into a typed [`Command`], or a [`ParseError`] whose
//!   `Display` is one line naming the problem. The parser is driven by [`COMMANDS`], the
//!   table `help` prints, so the two cannot disagree.
//! - [`Shell`] ([`shell`]): editor, parser and prompt together; a parsed command goes to a
//!   caller-supplied [`Executor`] (the hypervisor) that writes its output through
//!   [`core::fmt::Write`].
//! - [`report`]: what the hypervisor's answers look like (`vm list`, `vm stat`, `mem`),
//!   laid out from plain data the hypervisor gathers.
//! - [`lifecycle`]: what each `vm` command and `console` may do to a VM in its state (the
//!   action, or the exact refusal line); the hypervisor finds the VM and carries it out.
//!
//! Nothing typed can panic or wedge it: `fuzz/fuzz_targets/shell.rs` checks random byte
//! streams. The commands, keys and design are in `docs/shell.md`.
//!
//! ```
//! use axshell::{Command, Executor, Flow, Shell, Step, VmRef};
//! use core::fmt::Write;
//!
//! struct Hv;
//! impl Executor for Hv {
//!     type Error = &'static str;
//!     fn execute(&mut self, command: Command, out: &mut dyn Write) -> Result<Flow, Self::Error> {
//!         match command {
//!             Command::Mem => {
//!                 writeln!(out, "free frames: 42").map_err(|_| "output")?;
//!                 Ok(Flow::Prompt)
//!             }
//!             _ => Err("not here"),
//!         }
//!     }
//! }
//!
//! let mut shell = Shell::new();
//! let mut out = Vec::new();
//! shell.start(&mut out);
//! let mut step = Step::Editing;
//! for &b in b"mem\r" {
//!     step = shell.feed(b, &mut Hv, &mut out);
//! }
//! assert_eq!(step, Step::Ran);
//! assert_eq!(out, b"axvisor> mem\r\nfree frames: 42\r\naxvisor> ");
//! assert_eq!(axshell::parse("vm start linux"), Ok(Some(Command::VmStart(VmRef::Name("linux".into())))));
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod command;
pub mod editor;
pub mod history;
pub mod lifecycle;
pub mod report;
#[cfg(any(test, feature = "screen"))]
pub mod screen;
pub mod shell;

pub use command::{
    help_text, parse, ArgKind, Command, CommandSpec, LogLevel, ParseError, VmRef, COMMANDS,
};
pub use editor::{Editor, Event, DEFAULT_COLUMNS};
pub use history::{History, HISTORY_LINES};
pub use shell::{Executor, Flow, Shell, Step, Terminal, PROMPT};

/// Where the shell's output bytes go (the console UART, or a `Vec` in tests).
pub trait Sink {
    /// Writes `bytes` in order.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for alloc::vec::Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}
