//! Where VMs' console lines go: to the hypervisor console, except while the terminal is
//! attached to one VM (the shell's `console VM`): then the other VMs' lines are held, per
//! VM, and written when the terminal comes back to the shell. From [`detach`] until the
//! shell has written what it says about the detach ([`release`]), every VM's lines are held:
//! a line printed in between would otherwise come before the shell's `detached` line and
//! before the same VM's older held lines.
//!
//! At most [`HELD_LINES`] lines are held per VM (the oldest go first, and are counted), so
//! a chatty VM cannot take the hypervisor's memory while a person is attached elsewhere.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use axstd::println;
use spin::Mutex;

/// The most lines held per VM while the terminal is attached to another.
pub const HELD_LINES: usize = 256;

/// The lines one VM printed while the terminal was attached elsewhere.
#[derive(Default)]
pub struct Held {
    /// The newest [`HELD_LINES`] of them, oldest first.
    pub lines: VecDeque<String>,
    /// How many older ones were dropped.
    pub dropped: u64,
}

/// The VM the terminal is attached to, and what the others printed meanwhile.
struct Attachment {
    /// `None` between [`detach`] and [`release`]: no VM's lines are printed.
    vm: Option<String>,
    held: BTreeMap<String, Held>,
}

static ATTACHED: Mutex<Option<Attachment>> = Mutex::new(None);

/// Runs `f` on the attachment with interrupts masked (vCPU tasks call in with them masked;
/// the shell task must not be interrupted while it holds the lock).
fn with_attachment<R>(f: impl FnOnce(&mut Option<Attachment>) -> R) -> R {
    let irq = axhal::irq::save_and_disable();
    let r = f(&mut ATTACHED.lock());
    axhal::irq::restore(irq);
    r
}

/// A complete console line of VM `vm` (already `[vm] `-prefixed and inert): printed, or
/// held while the terminal is attached to another VM.
pub fn vm_line(vm: &str, line: &str) {
    let held = with_attachment(|a| match a {
        Some(a) if a.vm.as_deref() != Some(vm) => {
            let held = a.held.entry(String::from(vm)).or_default();
            if held.lines.len() == HELD_LINES {
                held.lines.pop_front();
                held.dropped += 1;
            }
            held.lines.push_back(String::from(line));
            true
        }
        _ => false,
    });
    if !held {
        println!("{line}");
    }
}

/// The terminal is attached to VM `vm` from now on.
pub fn attach(vm: &str) {
    with_attachment(|a| {
        *a = Some(Attachment {
            vm: Some(String::from(vm)),
            held: BTreeMap::new(),
        })
    });
}

/// The terminal is coming back to the shell: returns what the other VMs printed meanwhile,
/// by VM name. Every VM's lines are held from now until [`release`].
pub fn detach() -> BTreeMap<String, Held> {
    with_attachment(|a| match a {
        Some(a) => {
            a.vm = None;
            core::mem::take(&mut a.held)
        }
        None => BTreeMap::new(),
    })
}

/// The shell has written what it says about a [`detach`]: the lines held since are printed
/// (in order, before any later line) and VMs' lines go straight to the console again.
/// Nothing to do otherwise.
pub fn release() {
    with_attachment(|a| {
        if matches!(a, Some(Attachment { vm: None, .. })) {
            if let Some(a) = a.take() {
                for line in held_lines(a.held) {
                    println!("{line}");
                }
            }
        }
    });
}

/// What [`detach`] returned, as console lines: per VM, how many older lines were dropped
/// (if any), then the lines.
pub fn held_lines(held: BTreeMap<String, Held>) -> impl Iterator<Item = String> {
    held.into_iter().flat_map(|(vm, held)| {
        let dropped = (held.dropped > 0).then(|| {
            alloc::format!(
                "console: {} older lines of vm {vm} were dropped",
                held.dropped
            )
        });
        dropped.into_iter().chain(held.lines)
    })
}
