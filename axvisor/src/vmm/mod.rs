//! The VMs of this hypervisor: which exist, which task runs which vCPU, and what a halt,
//! power-off, reset or stopped VM means.
//!
//! VM configs and their images are built into the hypervisor image (attached to it after
//! linking, see [`crate::images`]) or read from the disk (`/vms/*.toml`, [`source`]). A
//! config that does not parse or validate is reported and skipped; the other VMs still run.

use crate::images;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use axaddrspace::{FrameAllocator, HostPhysAddr, HostVirtAddr};
use axdevice_base::VcpuNotifier;
use axstd::println;
use axstd::sync::WaitQueue;
use axstd::time::Duration;
use core::fmt;

/// How long a vCPU keeps its CPU while other tasks wait for it (another VM's vCPU pinned to
/// the same CPU), if its guest does not exit by itself sooner.
const TIME_SLICE: Duration = Duration::from_millis(10);
use arch_platform::Platform;
use axvm::{ArchPlatform, PlatformVm, VcpuEvent, VmError, VmStatus, VmidAllocator};
use axvmconfig::{HostFacts, MapKind, ValidateContext, VmConfig};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use spin::Mutex;

pub mod control;
mod dtb;
mod host;
mod links;
mod passthrough;
pub mod source;

use source::VmSource;

/// The hardware VMIDs: one per VM from its creation until it stops (VM ids in configs are
/// the user's and are never used as VMIDs). Sized by the CPU's VMID width in [`start_all`].
static VMIDS: Mutex<Option<VmidAllocator>> = Mutex::new(None);

/// A hardware VMID for a new VM.
fn alloc_vmid() -> Result<u16, axvm::NoVmidLeft> {
    VMIDS
        .lock()
        .as_mut()
        .map_or(Err(axvm::NoVmidLeft { capacity: 0 }), |v| v.alloc())
}

/// Gives back the VMID of a VM that stopped or could not be created.
fn free_vmid(vmid: u16) {
    if let Some(v) = VMIDS.lock().as_mut() {
        v.free(vmid);
    }
}

/// Frames from the hypervisor's allocator; RAM is identity-mapped.
#[derive(Clone, Copy)]
pub struct HalFrames;

impl FrameAllocator for HalFrames {
    fn alloc_frames(&self, count: usize, align: usize) -> Option<HostPhysAddr> {
        axstd::mem::alloc_frames(count, align).map(HostPhysAddr::new)
    }
    fn dealloc_frames(&self, pa: HostPhysAddr, count: usize) {
        axstd::mem::dealloc_frames(pa.as_usize(), count)
    }
    fn phys_to_virt(&self, pa: HostPhysAddr) -> HostVirtAddr {
        HostVirtAddr::new(pa.as_usize())
    }
}

/// A VM of this hypervisor: the target's vCPU and stage-2 format ([`Platform`]).
type Vm = PlatformVm<Platform, HalFrames>;

/// Parses and validates the config of `source`, also against what the host has (`host`);
/// prints every problem (as the host check prints them) and returns the config if it is
/// usable.
fn check_config(source: &VmSource, pcpus: usize, host: &HostFacts) -> Option<VmConfig> {
    let file = source.file();
    let config = match axvmconfig::from_toml(source.config()) {
        Ok(c) => c,
        Err(e) => {
            println!("vm config {file}: {e}; skipped");
            return None;
        }
    };
    let ctx = ValidateContext {
        pcpu_count: Some(pcpus),
        image_sizes: source.image_sizes(),
    };
    let problems: Vec<_> = [config.validate(&ctx), config.validate_host(host)]
        .into_iter()
        .filter_map(Result::err)
        .flatten()
        .collect();
    if problems.is_empty() {
        return Some(config);
    }
    for p in problems {
        println!("vm config {file}: {p}");
    }
    println!("vm config {file}: invalid; skipped");
    None
}

/// A config's `id` or `name` that another VM (`holder`: its file, or `VM NAME`) has already.
/// `Display` is `field: reason`, as a config problem prints.
#[derive(Debug)]
pub enum Clash {
    /// The same `id`.
    Id {
        /// The id.
        id: u32,
        /// Who has it.
        holder: String,
    },
    /// The same `name`.
    Name {
        /// The name.
        name: String,
        /// Who has it.
        holder: String,
    },
}

impl Clash {
    /// The clash of `config` with a VM whose id and name are `id` and `name` (the id first),
    /// if they share one.
    pub fn of(config: &VmConfig, id: u32, name: &str, holder: &str) -> Option<Self> {
        let holder = String::from(holder);
        if config.id == id {
            Some(Self::Id { id, holder })
        } else if config.name == name {
            Some(Self::Name {
                name: String::from(name),
                holder,
            })
        } else {
            None
        }
    }
}

impl fmt::Display for Clash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id { id, holder } => write!(f, "id: id {id} is already used by {holder}"),
            Self::Name { name, holder } => {
                write!(f, "name: name `{name}` is already used by {holder}")
            }
        }
    }
}

/// The configs to run at boot: the embedded ones, then `/vms/*.toml` on the disk (by
/// name). Each is parsed and validated ([`check_config`]); a config on the disk whose
/// images cannot be read is reported and skipped; of configs sharing an id or a name the
/// first is kept. Then the set is checked as a whole ([`check_set`]).
fn load_configs(pcpus: usize, host: &HostFacts) -> Vec<(VmSource, VmConfig)> {
    let mut sources: Vec<VmSource> = images::vms().iter().map(VmSource::Embedded).collect();
    for file in source::disk_configs() {
        match source::load(&file) {
            Ok(s) => sources.push(s),
            Err(e) => println!("{e}; skipped"),
        }
    }
    let mut ok: Vec<(VmSource, VmConfig)> = Vec::new();
    for source in sources {
        let Some(c) = check_config(&source, pcpus, host) else {
            continue;
        };
        let clash = ok
            .iter()
            .find_map(|(s, o)| Clash::of(&c, o.id, &o.name, s.file()));
        if let Some(clash) = clash {
            println!("vm config {}: {clash}; skipped", source.file());
        } else {
            ok.push((source, c));
        }
    }
    check_set(ok)
}

/// The link checks across the VMs to run ([`axvmconfig::validate_links`]): each link a
/// present peer declares back with the same size. A problem is printed against the file of
/// the VM it is about (the later one of the pair) as [`check_config`] prints the per-VM
/// ones, and that VM is skipped. A host range given to two VMs is left to the build, whose
/// refusal names the VM holding it by id (`cannot be created: ... is already given to VM
/// N`), as for a VM created later from the shell.
fn check_set(configs: Vec<(VmSource, VmConfig)>) -> Vec<(VmSource, VmConfig)> {
    let set: Vec<VmConfig> = configs.iter().map(|(_, c)| c.clone()).collect();
    let Err(problems) = axvmconfig::validate_links(&set) else {
        return configs;
    };
    let mut bad = alloc::vec![false; configs.len()];
    for p in problems {
        let Some(vm) = p.vm().filter(|&vm| vm < configs.len()) else {
            continue;
        };
        println!("vm config {}: {p}", configs[vm].0.file());
        bad[vm] = true;
    }
    configs
        .into_iter()
        .zip(bad)
        .filter_map(|(vm, bad)| {
            if bad {
                println!("vm config {}: invalid; skipped", vm.0.file());
            }
            (!bad).then_some(vm)
        })
        .collect()
}

/// The VMID width the hypervisor uses: the CPU's, or fewer bits when the boot argument
/// `vmid_bits=N` asks for it (to see what happens when VMIDs run out, with a few VMs).
fn vmid_width() -> u32 {
    // Before any VM: riscv64 measures the width by writing hgatp.
    let bits = Platform::vmid_bits();
    let arg = axhal::platform::info().bootarg("vmid_bits");
    match arg.map(str::parse::<u32>) {
        Some(Ok(n)) if n <= bits => {
            println!("vmid: {n} bits (the CPU has {bits}; boot argument vmid_bits)");
            n
        }
        Some(_) => {
            println!(
                "vmid: {bits} bits (boot argument vmid_bits={} ignored: at most {bits})",
                arg.unwrap_or("")
            );
            bits
        }
        None => {
            println!("vmid: {bits} bits");
            bits
        }
    }
}

/// Builds, boots and starts every valid embedded VM. Returns how many started.
pub fn start_all(pcpus: usize) -> usize {
    *VMIDS.lock() = Some(VmidAllocator::new(vmid_width()));
    let configs = load_configs(pcpus, &host::facts());
    let mut started = 0;
    for (source, config) in configs {
        if start_vm(source, config) {
            started += 1;
        }
    }
    started
}

/// What the hypervisor keeps beside each running VM: where its vCPUs run, where halted
/// ones wait, and how many vCPU tasks are alive.
struct VmRun {
    vm: Arc<Vm>,
    /// Its links to other VMs; held (with their shared memory) until it is dropped, after
    /// `vm`.
    links: links::VmLinks,
    /// Its hardware VMID, freed when the VM stops.
    vmid: u16,
    waker: Arc<VcpuWaker>,
    /// vCPU tasks alive (started and not yet ended).
    tasks: AtomicUsize,
    /// vCPU tasks held out of the guest while the VM is paused ([`wait_paused`]).
    parked: AtomicUsize,
    /// Where it came from; keeps images read from the disk while `vm` borrows them (so it
    /// is declared after `vm`, which is dropped first).
    source: VmSource,
}

/// Wakes vCPUs: a halted vCPU sleeps on its queue until an interrupt is raised for it (a
/// [`VcpuNotifier`] call from a virtual interrupt controller or another vCPU), its timer
/// fires, or its VM stops. Notifying also interrupts the vCPU's physical CPU, so a vCPU in
/// the guest leaves it and takes the new interrupt at its next entry.
pub struct VcpuWaker {
    queues: Vec<WaitQueue>,
    /// Set by `notify`, cleared by the vCPU before it checks for work and sleeps: a
    /// notification between the check and the sleep is not lost.
    kicked: Vec<AtomicBool>,
    pins: Vec<usize>,
}

impl VcpuWaker {
    fn new(pins: &[usize]) -> Self {
        Self {
            queues: pins.iter().map(|_| WaitQueue::new()).collect(),
            kicked: pins.iter().map(|_| AtomicBool::new(false)).collect(),
            pins: pins.to_vec(),
        }
    }

    /// Wakes every vCPU (the VM is stopping).
    fn notify_all(&self) {
        for v in 0..self.pins.len() {
            self.notify(v);
        }
    }
}

impl VcpuNotifier for VcpuWaker {
    fn notify(&self, vcpu: usize) {
        let (Some(q), Some(kicked), Some(&cpu)) = (
            self.queues.get(vcpu),
            self.kicked.get(vcpu),
            self.pins.get(vcpu),
        ) else {
            return;
        };
        kicked.store(true, Ordering::Release);
        q.notify_all();
        if cpu != axstd::smp::this_cpu() {
            axstd::smp::kick(cpu);
        }
    }
}

/// A VM's `alloc` regions need more memory than the hypervisor has free.
struct MemoryShortfall {
    need: u64,
    free: u64,
}

impl fmt::Display for MemoryShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "its memory needs {} KiB, the hypervisor has {} KiB free",
            self.need / 1024,
            self.free / 1024
        )
    }
}

/// Whether the hypervisor has the memory of the VM's `alloc` regions free.
fn memory_available(config: &VmConfig) -> Result<(), MemoryShortfall> {
    let need: u64 = config
        .memory
        .iter()
        .filter(|r| r.map == MapKind::Alloc)
        .map(|r| r.size)
        .sum();
    let free = (axstd::os::memory_stats().free_frames as u64).saturating_mul(axvmconfig::PAGE_SIZE);
    if need > free {
        return Err(MemoryShortfall { need, free });
    }
    Ok(())
}

/// Builds, boots and starts one VM; on failure prints one line naming it and gives back
/// whatever it had taken (VMID, host ranges).
fn start_vm(source: VmSource, config: VmConfig) -> bool {
    let name = config.name.clone();
    if let Err(e) = memory_available(&config) {
        println!("vm {name}: cannot be created: {e}");
        return false;
    }
    let vmid = match alloc_vmid() {
        Ok(vmid) => vmid,
        Err(e) => {
            println!("vm {name}: cannot be created: {e}");
            return false;
        }
    };
    if !build_and_start(source, config, vmid) {
        free_vmid(vmid);
        return false;
    }
    true
}

/// [`start_vm`] once the VM has its VMID.
fn build_and_start(source: VmSource, config: VmConfig, vmid: u16) -> bool {
    let name = config.name.clone();
    let vm_id = config.id;
    let waker = Arc::new(VcpuWaker::new(&config.cpus.pin));
    let (mut platform, arch_vm) = match Platform::build(&config, waker.clone()) {
        Ok(built) => built,
        Err(e) => {
            println!("vm {name}: cannot be created: {e}");
            return false;
        }
    };
    let links = match links::VmLinks::build(&config, &mut platform) {
        Ok(links) => links,
        Err(e) => {
            println!("vm {name}: cannot be created: {e}");
            return false;
        }
    };
    platform.on_reset = links.on_reset(platform.on_reset.take());
    if let Err(e) = passthrough::claim(&config, Platform::irq_sink(&arch_vm)) {
        println!("vm {name}: cannot be created: {e}");
        return false;
    }
    // A kernel the architecture places itself (x86: a Linux bzImage).
    let kernel = match Platform::prepare_boot(&config, &|image| source.image(image)) {
        Ok(kernel) => kernel,
        Err(e) => {
            println!("vm {name}: cannot be created: {e}");
            passthrough::release(vm_id);
            return false;
        }
    };
    if config.kernel.dtb.as_ref().is_some_and(|d| d.generated()) {
        let initrd_size = config
            .kernel
            .initrd
            .as_ref()
            .and_then(|i| source.image(&i.image))
            .map(|b| b.len() as u64);
        match dtb::generate::<Platform>(&config, initrd_size) {
            Ok(bytes) => platform.dtb = Some(bytes),
            Err(e) => {
                println!("vm {name}: cannot be created: {e}");
                passthrough::release(vm_id);
                return false;
            }
        }
    }
    let boot_regs = match &kernel {
        Some(k) => k.regs.clone(),
        None => Platform::boot_regs(&config),
    };
    platform.kernel = kernel;
    let disk_holder = name.clone();
    platform.disks = alloc::boxed::Box::new(move |d| crate::disk::open_backing(&disk_holder, d));
    platform.switches = alloc::boxed::Box::new(crate::net::switch);
    // Held while the terminal is attached to another VM (the shell's `console`).
    let vm_name = name.clone();
    let console = Arc::new(move |line: &str| crate::vm_console::vm_line(&vm_name, line));
    let vm = match Vm::new(
        config,
        HalFrames,
        &|image| source.image(image),
        console,
        &|i| Platform::vcpu_config(&arch_vm, vmid, i),
        platform,
    ) {
        Ok(vm) => Arc::new(vm),
        Err(e) => {
            println!("vm {name}: cannot be created: {e}");
            passthrough::release(vm_id);
            return false;
        }
    };
    passthrough::start(vm.config());
    if let Err(e) = vm.boot(&boot_regs) {
        println!("vm {name}: cannot boot: {e}");
        passthrough::release(vm_id);
        return false;
    }
    let pcpu = vm.config().cpus.pin[0];
    let mem: u64 = vm.config().memory.iter().map(|r| r.size).sum();
    println!(
        "vm {name}: created (id {}, vmid {vmid}, {} vcpu(s), {} KiB, vcpu 0 on cpu {pcpu})",
        vm.id(),
        vm.vcpu_count(),
        mem / 1024
    );
    links.attach();
    let run = Arc::new(VmRun {
        vm,
        links,
        vmid,
        waker,
        tasks: AtomicUsize::new(0),
        parked: AtomicUsize::new(0),
        source,
    });
    control::register(&run);
    spawn_vcpu(&run, 0);
    true
}

/// Starts the task of vCPU `id` on the physical CPU it is pinned to.
fn spawn_vcpu(run: &Arc<VmRun>, id: usize) {
    let pcpu = run.vm.config().cpus.pin[id];
    let task_name = alloc::format!("{}/vcpu{id}", run.vm.name());
    run.tasks.fetch_add(1, Ordering::AcqRel);
    let run = run.clone();
    axstd::thread::spawn_on(pcpu, &task_name, move || vcpu_task(run, id));
}

/// Called by a vCPU's run after a physical interrupt exit, with interrupts masked: takes the
/// interrupt, then says whether the vCPU should yield (another task waits for this CPU).
fn after_interrupt() -> bool {
    axhal::irq::take_pending();
    axstd::thread::others_runnable()
}

/// The task of one vCPU: run, apply the hypervisor's policy to what comes back, repeat.
fn vcpu_task(run: Arc<VmRun>, id: usize) {
    let vm = &run.vm;
    let name = String::from(vm.name());
    loop {
        // Host interrupts stay masked from here until the guest's run ends in a decision for
        // this loop: one that arrives meanwhile (another task woken for this CPU, the end of
        // the time slice) stays pending, so the guest exits at once and `after_interrupt`
        // sees it. Taken while the VM handled an MMIO exit, it would be lost, and the guest
        // re-entered without a slice.
        let irq = axhal::irq::save_and_disable();
        // Other tasks waiting for this CPU (another VM's vCPU pinned here): the guest gets one
        // time slice, then a timer interrupt brings it back and the vCPU yields. Without it a
        // guest that takes no interrupts of its own would keep the CPU for as long as it
        // likes.
        if axstd::thread::others_runnable() {
            axstd::thread::interrupt_after(TIME_SLICE);
        }
        let event = vm.run_vcpu_until(id, &after_interrupt);
        axhal::irq::restore(irq);
        match event {
            Ok(VcpuEvent::Interrupt) => axstd::thread::yield_now(),
            Ok(VcpuEvent::Halt) => wait_halted(&run, id),
            Ok(VcpuEvent::CpuUp { vcpu }) => {
                log::info!("vm {name}: vcpu {id} started vcpu {vcpu}");
                spawn_vcpu(&run, vcpu);
            }
            Ok(VcpuEvent::CpuDown) => {
                log::info!("vm {name}: vcpu {id} is off");
                break;
            }
            Ok(VcpuEvent::PowerOff) => {
                println!("vm {name}: powered off");
                run.waker.notify_all();
                break;
            }
            Ok(VcpuEvent::Reset) => {
                if reset(&run, id) && id == 0 {
                    continue;
                }
                break;
            }
            Ok(VcpuEvent::Stopped(reason)) => {
                println!("vm {name}: stopped: {reason}");
                run.waker.notify_all();
                break;
            }
            Err(VmError::NotRunning(VmStatus::Paused)) => wait_paused(&run, id),
            // Another vCPU stopped or is resetting the VM; it reports why.
            Err(VmError::NotRunning(_)) => break,
            Err(e) => {
                println!("vm {name}: stopped: {e}");
                vm.shutdown();
                run.waker.notify_all();
                break;
            }
        }
    }
    let last = run.tasks.fetch_sub(1, Ordering::AcqRel) == 1;
    if last && !matches!(vm.status(), VmStatus::Running | VmStatus::Paused) {
        run.links.detach();
        vm.mark_stopped();
        passthrough::release(vm.id());
        free_vmid(run.vmid);
        let counts: Vec<String> = vm
            .exits()
            .nonzero()
            .map(|(k, n)| alloc::format!("{}={n}", k.name()))
            .collect();
        log::info!("vm {name}: exits {}", counts.join(" "));
        for line in run.links.report() {
            log::info!("vm {name}: {line}");
        }
        for unclaimed in [vm.unclaimed(), vm.unclaimed_ports()] {
            if unclaimed.total > 0 {
                log::info!("vm {name}: {unclaimed}");
            }
        }
    }
}

/// Sleeps while halted vCPU `id` has nothing to do: until an interrupt is raised for it,
/// its guest timer's deadline, or the VM stops.
fn wait_halted(run: &VmRun, id: usize) {
    let kicked = &run.waker.kicked[id];
    kicked.store(false, Ordering::Release);
    let (ready, deadline) = run.vm.halt_wakeup(id);
    if ready {
        return;
    }
    let deadline_ns = deadline
        .map(|t| u64::try_from(axstd::time::counter_to_time(t).as_nanos()).unwrap_or(u64::MAX));
    run.waker.queues[id].wait_until_deadline(
        || kicked.load(Ordering::Acquire) || run.vm.status() != VmStatus::Running,
        deadline_ns,
    );
}

/// Holds vCPU `id` of a paused VM out of the guest (its state saved, its CPU free for
/// other tasks) until the VM is resumed or stopped; counted in [`VmRun::parked`] meanwhile.
fn wait_paused(run: &VmRun, id: usize) {
    run.parked.fetch_add(1, Ordering::AcqRel);
    run.waker.queues[id].wait_until(|| run.vm.status() != VmStatus::Paused);
    run.parked.fetch_sub(1, Ordering::AcqRel);
}

/// Resets the VM for vCPU `id`, which saw the guest ask for it: waits until every other
/// vCPU task has ended, resets, and makes sure vCPU 0 runs again. Returns whether the reset
/// worked (the caller, if it is vCPU 0, then carries on running it).
fn reset(run: &Arc<VmRun>, id: usize) -> bool {
    let vm = &run.vm;
    run.waker.notify_all();
    while run.tasks.load(Ordering::Acquire) > 1 {
        axstd::thread::sleep(Duration::from_millis(1));
    }
    match vm.reset() {
        Ok(()) => {
            println!("vm {}: reset ({} so far)", vm.name(), vm.reset_count());
            if id != 0 {
                spawn_vcpu(run, 0);
            }
            true
        }
        Err(e) => {
            println!("vm {}: stopped: reset failed: {e}", vm.name());
            false
        }
    }
}
