//! The per-CPU scheduler.

use crate::task::{Task, TaskState};
use crate::{RunQueue, TimerList};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use axconfig::{MAX_CPUS, STACK_SIZE};
use axhal::context::TaskContext;
use axhal::percpu::PerCpu;
use axhal::{cpu, irq, time};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use spin::Mutex;

/// One CPU's scheduling state.
struct CpuSched {
    /// Runnable tasks; other CPUs push here when they wake one of ours.
    rq: Mutex<RunQueue<Arc<Task>>>,
    /// Sleeping tasks by deadline (ns).
    timers: Mutex<TimerList<Arc<Task>>>,
    /// The running task, and the one just switched away from (kept alive until the switch is
    /// over so an exited task's stack is freed only once we are off it). Only this CPU
    /// touches these, with interrupts masked.
    current: UnsafeCell<Option<Arc<Task>>>,
    last: UnsafeCell<Option<Arc<Task>>>,
    /// Nanoseconds this CPU has slept in its idle loop, for [`idle_ns`].
    idle_ns: AtomicU64,
}

// SAFETY: `current` and `last` are only accessed by their own CPU with interrupts masked;
// the other fields are locks.
unsafe impl Sync for CpuSched {}

static CPUS: PerCpu<CpuSched> = PerCpu::new(
    [const {
        CpuSched {
            rq: Mutex::new(RunQueue::new()),
            timers: Mutex::new(TimerList::new()),
            current: UnsafeCell::new(None),
            last: UnsafeCell::new(None),
            idle_ns: AtomicU64::new(0),
        }
    }; MAX_CPUS],
);

fn this_cpu() -> &'static CpuSched {
    CPUS.this()
}

/// Runs `f` with interrupts masked.
fn irq_off<R>(f: impl FnOnce() -> R) -> R {
    let s = irq::save_and_disable();
    let r = f();
    irq::restore(s);
    r
}

/// Makes the code running on this CPU its first task (`name`), on the stack it has now.
/// Call once per CPU, before anything else in this crate, with interrupts masked.
pub fn init_cpu(name: &str) {
    let task = Task::new(
        String::from(name),
        cpu::id(),
        None,
        None,
        TaskContext::default(),
        TaskState::Running,
    );
    // SAFETY: our own CPU's slot, interrupts masked (function contract).
    unsafe { *this_cpu().current.get() = Some(Arc::new(task)) };
    irq::set_timer_handler(on_timer);
    irq::set_ipi_handler(on_ipi);
}

/// The task running on this CPU.
pub fn current() -> Arc<Task> {
    // SAFETY: our own CPU's slot, read with interrupts masked; set by `init_cpu`.
    irq_off(|| unsafe { (*this_cpu().current.get()).clone() }).expect("axtask used before init_cpu")
}

/// Creates a task running `f` on CPU `cpu` and makes it runnable there.
///
/// # Panics
/// If `cpu` is not below `axconfig::MAX_CPUS` (a programming error, not guest input).
pub fn spawn_on(cpu: usize, name: &str, f: impl FnOnce() + Send + 'static) -> Arc<Task> {
    assert!(cpu < MAX_CPUS, "spawn_on: no CPU {cpu}");
    let stack = vec![0u128; STACK_SIZE / 16];
    let top = stack.as_ptr() as usize + STACK_SIZE;
    let task = Arc::new(Task::new(
        String::from(name),
        cpu,
        Some(Box::new(f)),
        Some(stack),
        TaskContext::default(),
        TaskState::Blocked,
    ));
    let ctx = TaskContext::new(task_entry, Arc::as_ptr(&task) as usize, top);
    // SAFETY: the task has never run, so nobody else reads its context yet.
    unsafe { *task.ctx.get() = ctx };
    wake(&task);
    task
}

/// First code of every spawned task.
extern "C" fn task_entry(task: usize) -> ! {
    finish_switch();
    // SAFETY: `task` is the Arc's pointer passed by `spawn_on`; the task is `current` on this
    // CPU, which keeps it alive while it runs.
    let task = unsafe { &*(task as *const Task) };
    // SAFETY: only this task, on its own CPU, ever takes its entry, and only once.
    let entry = unsafe { (*task.entry.get()).take() };
    irq::enable();
    if let Some(f) = entry {
        f();
    }
    exit()
}

/// Ends the current task.
pub fn exit() -> ! {
    irq::disable();
    let task = current();
    task.set_state(TaskState::Exited);
    // Its pending wake-ups (all on this CPU: a task arms them on its own) would hold it, and
    // its stack, until their deadlines, which a guest chooses for a halted vCPU's task: far
    // off, that is memory never given back.
    this_cpu().timers.lock().retain(|t| !Arc::ptr_eq(t, &task));
    drop(task);
    resched();
    unreachable!("an exited task was scheduled again");
}

/// Makes a blocked task runnable on its CPU (IPI if that is another CPU).
pub(crate) fn wake(task: &Arc<Task>) {
    if !task.transition(TaskState::Blocked, TaskState::Ready) {
        return;
    }
    let target = task.cpu();
    irq_off(|| CPUS.get(target).rq.lock().push(task.clone()));
    if target != cpu::id() {
        irq::send_ipi(target);
    }
}

/// Whether another task is waiting to run on this CPU (the current one should yield). The
/// idle loop does not count: it only runs when nothing else can.
pub fn others_runnable() -> bool {
    irq_off(|| this_cpu().rq.lock().any(|t| !t.is_idle()))
}

/// Lets other runnable tasks on this CPU run.
pub fn yield_now() {
    irq_off(resched);
}

/// Monotonic time `d` from now (saturating).
fn deadline_after(d: Duration) -> u64 {
    let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    time::now_ns().saturating_add(d)
}

/// Blocks the current task for `d`.
pub fn sleep(d: Duration) {
    sleep_until(deadline_after(d));
}

/// Blocks the current task until monotonic time `deadline_ns`.
pub fn sleep_until(deadline_ns: u64) {
    irq_off(|| {
        arm_wakeup(deadline_ns, block_current());
        resched();
    });
}

/// Makes this CPU's timer interrupt `d` from now at the latest, for a task that runs code
/// which takes no interrupts of its own (a vCPU in its guest) and must still give way to
/// the other runnable tasks: the interrupt brings it back to the hypervisor, which can then
/// yield. If the task blocks before then, it gets a harmless spurious wake-up (see
/// [`arm_wakeup`]).
pub fn interrupt_after(d: Duration) {
    let deadline = deadline_after(d);
    irq_off(|| arm_wakeup(deadline, current()));
}

/// Wakes `task` at monotonic time `deadline_ns` if it is still blocked then. A task woken
/// earlier by something else gets a harmless spurious wake-up later if it blocks again:
/// blocking waits re-check their condition. Interrupts must be masked.
pub(crate) fn arm_wakeup(deadline_ns: u64, task: Arc<Task>) {
    if this_cpu().timers.lock().add(deadline_ns, task) {
        time::set_oneshot(deadline_ns);
    }
}

/// Marks the current task blocked; the caller publishes it where a waker will find it, then
/// calls [`resched`]. Interrupts must be masked.
pub(crate) fn block_current() -> Arc<Task> {
    let cur = current();
    cur.set_state(TaskState::Blocked);
    cur
}

/// Picks the next task and switches to it. Interrupts must be masked. If the current task is
/// still running it goes to the back of the queue; if nothing is runnable, the CPU waits for
/// interrupts on the current stack until something is.
pub(crate) fn resched() {
    let cs = this_cpu();
    // SAFETY: own CPU, interrupts masked.
    let prev = unsafe { (*cs.current.get()).clone() }.expect("axtask used before init_cpu");
    if prev.transition(TaskState::Running, TaskState::Ready) {
        cs.rq.lock().push(prev.clone());
    }
    let next = loop {
        if let Some(t) = cs.rq.lock().pop() {
            break t;
        }
        cpu::wait_for_irq();
        irq::enable();
        irq::disable();
    };
    next.set_state(TaskState::Running);
    if Arc::ptr_eq(&prev, &next) {
        return;
    }
    let prev_ctx = prev.ctx.get();
    let next_ctx = next.ctx.get();
    // SAFETY: own CPU, interrupts masked. `last` keeps `prev` alive across the switch.
    unsafe {
        *cs.current.get() = Some(next);
        *cs.last.get() = Some(prev);
        axhal::context::switch(prev_ctx, next_ctx);
    }
    finish_switch();
}

/// Runs on the new task right after a switch: drops the reference to the previous task
/// (freeing an exited task's stack, which is no longer in use).
fn finish_switch() {
    // SAFETY: own CPU; interrupts are still masked from the switch.
    drop(unsafe { (*this_cpu().last.get()).take() });
}

fn on_timer() {
    let cs = this_cpu();
    let now = time::now_ns();
    loop {
        let Some(t) = cs.timers.lock().pop_expired(now) else {
            break;
        };
        wake(&t);
    }
    time::set_oneshot(cs.timers.lock().next_deadline().unwrap_or(u64::MAX));
}

fn on_ipi() {
    // Nothing to do: the IPI only ends a `wfi`, and the woken task is already queued.
}

/// Turns the calling task into this CPU's idle loop: runs whatever is runnable and sleeps
/// in between.
pub fn run_idle() -> ! {
    current().set_idle();
    loop {
        irq::disable();
        if this_cpu().rq.lock().is_empty() {
            let slept_from = time::now_ns();
            cpu::wait_for_irq();
            let slept = time::now_ns().saturating_sub(slept_from);
            this_cpu().idle_ns.fetch_add(slept, Ordering::Relaxed);
        }
        irq::enable();
        yield_now();
    }
}

/// How long CPU `cpu` has slept in its idle loop since boot, in nanoseconds (its time
/// with nothing to run); `None` for a CPU number beyond [`MAX_CPUS`].
pub fn idle_ns(cpu: usize) -> Option<u64> {
    (cpu < MAX_CPUS).then(|| CPUS.get(cpu).idle_ns.load(Ordering::Relaxed))
}
