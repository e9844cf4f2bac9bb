//! The shell on the hypervisor console, live while the VMs run (docs/shell.md).
//!
//! One task on CPU 0 polls the console for received bytes and feeds them to an
//! [`axshell::Shell`] whose [`Executor`] is the VM manager ([`crate::vmm::control`]), the
//! logger and the allocator. The shell's prompt and line are the console's bottom line
//! (`axhal::console::write_owned`): the hypervisor's and the VMs' lines are written above
//! it and never run into what is being typed.
//!
//! `console VM` attaches the terminal to a VM: typed bytes go to its UART's receive side,
//! the other VMs' lines are held ([`crate::vm_console`]), and Ctrl-] ([`DETACH`]) brings
//! the terminal back to the shell, with what was held.
//!
//! It starts once the embedded VMs have started, unless the boot argument `shell=off` says
//! otherwise.

use crate::disk::FileError;
use crate::vmm::control::{self, Attached, ControlError};
use alloc::vec::Vec;
use axshell::lifecycle::Change;
use axshell::report::{self, CpuLoad, FileRow, MemReport};
use axshell::{Command, Executor, Flow, LogLevel, Shell, Step, Terminal, VmRef};
use axstd::time::Duration;
use core::fmt::{self, Write};

/// How long the shell task sleeps when no byte waits (input is polled).
const POLL: Duration = Duration::from_millis(20);
/// How long it sleeps instead while bytes are coming: for [`BURST_POLLS`] looks after the
/// last byte. A console whose UART takes one byte at a time (a disabled or one-byte-trigger
/// FIFO: QEMU hands it the next byte only after the previous one was read) would otherwise
/// deliver a typed or pasted line at one byte per [`POLL`].
const BURST_POLL: Duration = Duration::from_millis(1);
/// The quick looks after the last byte received (about one [`POLL`] in all).
const BURST_POLLS: u32 = 20;
/// The key that brings the terminal back from a VM to the shell: Ctrl-] (GS, 0x1d).
pub const DETACH: u8 = 0x1d;
/// Polls of quiet after which a VM's unfinished console line (a prompt) is printed (about
/// half a second).
const IDLE_POLLS: u32 = 25;
/// The most typed bytes kept for an attached VM whose UART is full; more are dropped.
const PENDING_MAX: usize = 4096;

/// Why a command did nothing. `Display` is one line.
#[derive(Debug)]
pub enum ShellError {
    /// What the VM manager said.
    Vm(ControlError),
    /// What the disk said.
    File(FileError),
    /// Writing the answer failed (never on the console).
    Output,
}

impl From<ControlError> for ShellError {
    fn from(e: ControlError) -> Self {
        Self::Vm(e)
    }
}

impl From<FileError> for ShellError {
    fn from(e: FileError) -> Self {
        Self::File(e)
    }
}

impl From<fmt::Error> for ShellError {
    fn from(_: fmt::Error) -> Self {
        Self::Output
    }
}

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vm(e) => write!(f, "{e}"),
            Self::File(e) => write!(f, "{e}"),
            Self::Output => f.write_str("output failed"),
        }
    }
}

/// The largest file `cat` prints.
const CAT_MAX: u64 = 64 * 1024;

/// The hypervisor as the shell's executor.
#[derive(Default)]
struct Hypervisor {
    /// The VM the terminal is attached to (`console`), if any.
    attached: Option<Attached>,
    /// When `cpu` last ran (ns since boot) and each CPU's idle time then.
    last_cpu: Option<(u64, Vec<u64>)>,
}

impl Executor for Hypervisor {
    type Error = ShellError;

    fn execute(&mut self, command: Command, out: &mut dyn Write) -> Result<Flow, ShellError> {
        match command {
            // The shell answers `help` itself.
            Command::Help(_) => {}
            Command::VmList => report::vm_list(&control::list(), out)?,
            Command::VmShow(vm) => {
                let (row, file, place) = control::show(&vm)?;
                report::vm_list(core::slice::from_ref(&row), out)?;
                writeln!(out, "config: {file} ({place})")?;
            }
            Command::VmStart(vm) => change(Change::Start, &vm, out)?,
            Command::VmStop(vm) => change(Change::Stop, &vm, out)?,
            Command::VmRestart(vm) => change(Change::Restart, &vm, out)?,
            Command::VmDelete(vm) => change(Change::Delete, &vm, out)?,
            Command::VmPause(vm) => change(Change::Pause, &vm, out)?,
            Command::VmResume(vm) => change(Change::Resume, &vm, out)?,
            Command::VmStat(vm) => {
                for stat in control::stat(vm.as_ref())? {
                    report::vm_stat(&stat, out)?;
                }
            }
            Command::VmCreate(file) => {
                let name = control::create(&file)?;
                writeln!(
                    out,
                    "vm {name}: created from {file}; \"vm start {name}\" starts it"
                )?;
            }
            Command::Ls(path) => {
                let rows: Vec<FileRow> = crate::disk::list(path.as_deref().unwrap_or("/"))?
                    .into_iter()
                    .map(|m| FileRow {
                        dir: m.kind == axfs::FileKind::Directory,
                        size: m.size,
                        name: m.name,
                    })
                    .collect();
                report::ls(&rows, out)?;
            }
            Command::Cat(path) => report::cat(&crate::disk::read(&path, CAT_MAX)?, out)?,
            Command::Log(None) => writeln!(out, "log level: {}", log::max_level())?,
            Command::Log(Some(level)) => {
                log::set_max_level(level_filter(level));
                writeln!(out, "log level: {}", log::max_level())?;
            }
            Command::Mem => {
                let stats = axstd::os::memory_stats();
                let mem = MemReport {
                    free_frames: stats.free_frames,
                    frame_size: axvmconfig::PAGE_SIZE as usize,
                    heap_total: stats.total,
                    heap_used: stats.used,
                };
                report::mem(&mem, out)?;
            }
            Command::Cpu => self.cpu(out)?,
            Command::Console(vm) => {
                let attached = control::attach(&vm)?;
                writeln!(
                    out,
                    "console: attached to vm {}; Ctrl-] returns to the shell",
                    attached.name()
                )?;
                crate::vm_console::attach(attached.name());
                self.attached = Some(attached);
                return Ok(Flow::Suspend);
            }
        }
        Ok(Flow::Prompt)
    }
}

impl Hypervisor {
    /// `cpu`: each online CPU's busy share since the previous `cpu` (the first time: since
    /// boot), from the time its idle loop slept.
    fn cpu(&mut self, out: &mut dyn Write) -> fmt::Result {
        let now = axhal::time::now_ns();
        let idle: Vec<u64> = (0..axstd::smp::online())
            .map(|c| axstd::thread::idle_ns(c).unwrap_or(0))
            .collect();
        let (since, from, before) = match self.last_cpu.take() {
            Some((at, before)) => ("since the last \"cpu\"", at, before),
            None => ("since boot", 0, Vec::new()),
        };
        let loads: Vec<CpuLoad> = idle
            .iter()
            .enumerate()
            .map(|(cpu, &now_idle)| CpuLoad {
                cpu,
                idle_ns: now_idle.saturating_sub(before.get(cpu).copied().unwrap_or(0)),
            })
            .collect();
        self.last_cpu = Some((now, idle));
        report::cpu(&loads, now.saturating_sub(from), since, out)
    }
}

/// `vm start`, `stop`, ... of the VM `which` names: `vm NAME: started`.
fn change(change: Change, which: &VmRef, out: &mut dyn Write) -> Result<(), ShellError> {
    let name = control::change(change, which)?;
    writeln!(out, "{}", change.done(&name))?;
    Ok(())
}

fn level_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Off => log::LevelFilter::Off,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}

/// Starts the shell task on CPU 0, unless the boot argument `shell=off` asks for none.
pub fn start() {
    match axstd::os::platform_info().bootarg("shell") {
        Some("off") => return,
        None | Some("on") => {}
        Some(other) => log::warn!("boot argument shell={other}: not on or off; the shell starts"),
    }
    axstd::thread::spawn_on(0, "shell", run);
}

/// The shell task: prompt, then each received byte through the shell (or, while attached,
/// to the VM); the prompt and line stay the console's bottom line.
fn run() {
    let mut shell = Shell::new();
    let mut hv = Hypervisor::default();
    let mut out = Vec::new();
    let mut bottom = Vec::new();
    // Typed bytes the attached VM's UART has not taken yet.
    let mut pending = Vec::new();
    // Right after `console`: an LF that follows the line's CR belongs to the line.
    let mut skip_lf = false;
    // Quick looks left since the last byte received.
    let mut burst = 0;
    shell.start(&mut out);
    publish(&shell, &hv, &mut out, &mut bottom);
    loop {
        let mut got = false;
        // Just attached: the VM's output goes raw once the attach line is out.
        let mut attached_now = false;
        if let Some(attached) = &hv.attached {
            if !attached.running() {
                detach(&mut shell, &mut hv, &mut out, "the VM stopped");
                pending.clear();
            } else {
                while pending.len() < PENDING_MAX {
                    let Some(byte) = axhal::console::read_byte() else {
                        break;
                    };
                    got = true;
                    if byte == DETACH {
                        detach(&mut shell, &mut hv, &mut out, "Ctrl-]");
                        pending.clear();
                        break;
                    }
                    if !core::mem::take(&mut skip_lf) || byte != b'\n' {
                        pending.push(byte);
                    }
                }
                if let Some(attached) = &hv.attached {
                    let taken = attached.feed(&pending);
                    pending.drain(..taken);
                }
            }
        } else {
            while let Some(byte) = axhal::console::read_byte() {
                got = true;
                if shell.feed(byte, &mut hv, &mut out) == Step::Suspended {
                    skip_lf = true;
                    attached_now = true;
                    break;
                }
            }
        }
        if !out.is_empty() || got {
            publish(&shell, &hv, &mut out, &mut bottom);
        }
        if let (true, Some(attached)) = (attached_now, &hv.attached) {
            attached.raw_output(true);
        }
        if got {
            burst = BURST_POLLS;
        } else if burst > 0 {
            burst -= 1;
            axstd::thread::sleep(BURST_POLL);
        } else {
            control::flush_idle_consoles(IDLE_POLLS);
            axstd::thread::sleep(POLL);
        }
    }
}

/// Brings the terminal back from the attached VM: says so (and why), writes what the other
/// VMs printed meanwhile, and prompts.
fn detach(shell: &mut Shell, hv: &mut Hypervisor, out: &mut Vec<u8>, why: &str) {
    let Some(attached) = hv.attached.take() else {
        return;
    };
    attached.raw_output(false);
    let held = crate::vm_console::detach();
    let mut term = Terminal(out);
    let _ = write!(
        term,
        "\nconsole: detached from vm {} ({why})\n",
        attached.name()
    );
    for line in crate::vm_console::held_lines(held) {
        let _ = writeln!(term, "{line}");
    }
    shell.resume(out);
}

/// Writes the shell's output and makes its prompt and line the console's bottom line (no
/// bottom line while the terminal is attached to a VM).
fn publish(shell: &Shell, hv: &Hypervisor, out: &mut Vec<u8>, bottom: &mut Vec<u8>) {
    bottom.clear();
    if hv.attached.is_none() {
        shell.show(bottom);
    }
    axhal::console::write_owned(out, bottom);
    out.clear();
    // After a detach: the lines VMs printed while it was being written, now after it.
    crate::vm_console::release();
}
