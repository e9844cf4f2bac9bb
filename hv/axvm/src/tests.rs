//! The exit-dispatch loop against a fake vCPU that replays scripted exits, on the fake
//! architecture's nested page-table format (`axaddrspace::fake::FakeFormat`): nothing here
//! depends on a real architecture.

extern crate std;

use crate::hypercall as hc;
use crate::{AxVm, ExitKind, VcpuEvent, VmError, VmStatus};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use axaddrspace::fake::FakeFormat;
use axaddrspace::{FrameAllocator, GuestPhysAddr, HostPhysAddr, HostVirtAddr, MappingFlags};
use axdevice_base::AccessWidth;
use axvcpu::{ArchVCpu, PowerReply, PowerState, VCpuError, VmExit};
use core::ops::ControlFlow;
use spin::Mutex;
use std::string::{String, ToString};

/// What the fake vCPU was told to do.
#[derive(Debug, PartialEq, Eq)]
enum Call {
    MmioDone(u64),
    PortDone(u64),
    Ret(u64),
    Fault(usize),
    Power(PowerReply),
    StartArg(u64),
}

#[derive(Default)]
struct Script {
    exits: Mutex<Vec<VmExit>>,
    /// The arguments of the scripted hypercall exits, in order (zeros when missing).
    hypercall_args: Mutex<Vec<[u64; 6]>>,
    calls: Mutex<Vec<Call>>,
    /// The general-purpose registers set (boot registers), in order.
    gprs: Mutex<Vec<(usize, u64)>>,
    /// The entry points set, in order.
    entries: Mutex<Vec<usize>>,
}

/// The script, and the arguments of the hypercall exit it returned last.
struct FakeVCpu(Arc<Script>, [u64; 6]);

impl ArchVCpu for FakeVCpu {
    type CreateConfig = Arc<Script>;
    fn new(_: usize, s: Arc<Script>) -> Result<Self, VCpuError> {
        Ok(Self(s, [0; 6]))
    }
    fn set_entry(&mut self, entry: GuestPhysAddr) {
        self.0.entries.lock().push(entry.as_usize());
    }
    fn set_stage2_root(&mut self, _: HostPhysAddr) {}
    fn set_gpr(&mut self, i: usize, v: u64) {
        self.0.gprs.lock().push((i, v));
    }
    fn setup(&mut self) -> Result<(), VCpuError> {
        Ok(())
    }
    fn run_with<R>(
        &mut self,
        mut handle: impl FnMut(&mut Self, VmExit) -> ControlFlow<R>,
    ) -> Result<R, VCpuError> {
        loop {
            let exit = {
                let mut e = self.0.exits.lock();
                if e.is_empty() {
                    return Err(VCpuError::Hardware(0xdead));
                }
                e.remove(0)
            };
            if let VmExit::Hypercall { .. } = exit {
                let mut args = self.0.hypercall_args.lock();
                self.1 = if args.is_empty() {
                    [0; 6]
                } else {
                    args.remove(0)
                };
            }
            if let ControlFlow::Break(r) = handle(self, exit) {
                return Ok(r);
            }
        }
    }
    fn hypercall_args(&self) -> [u64; 6] {
        self.1
    }
    fn complete_mmio_read(&mut self, v: u64) {
        self.0.calls.lock().push(Call::MmioDone(v));
    }
    fn complete_port_read(&mut self, v: u64) {
        self.0.calls.lock().push(Call::PortDone(v));
    }
    fn set_return_value(&mut self, v: u64) {
        self.0.calls.lock().push(Call::Ret(v));
    }
    fn inject_data_fault(&mut self, gpa: GuestPhysAddr) {
        self.0.calls.lock().push(Call::Fault(gpa.as_usize()));
    }
    /// Targets are `0x100 + index`, so an index passed as a target by mistake is refused.
    fn vcpu_index(target: u64, count: usize) -> Option<usize> {
        let i = target.checked_sub(0x100)?;
        (i < count as u64).then_some(i as usize)
    }
    fn set_start_arg(&mut self, arg: u64) {
        self.0.calls.lock().push(Call::StartArg(arg));
    }
    fn complete_power(&mut self, reply: PowerReply) {
        self.0.calls.lock().push(Call::Power(reply));
    }
}

/// Frames bump-allocated from one leaked host arena; "physical" addresses start at
/// `PHYS_BASE`, so nothing can rely on them being host pointers.
#[derive(Clone, Copy)]
struct HostFrames;
const PHYS_BASE: usize = 0x8000_0000;
const ARENA: usize = 64 << 20;

fn arena() -> usize {
    static BASE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| std::vec![0u8; ARENA].leak().as_ptr() as usize)
}

static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

impl FrameAllocator for HostFrames {
    fn alloc_frames(&self, count: usize, align: usize) -> Option<HostPhysAddr> {
        let align = align.max(4096);
        let size = count * 4096;
        let mut start = 0;
        NEXT.fetch_update(
            core::sync::atomic::Ordering::SeqCst,
            core::sync::atomic::Ordering::SeqCst,
            |n| {
                start = (PHYS_BASE + n).next_multiple_of(align);
                let end = start + size - PHYS_BASE;
                (end <= ARENA).then_some(end)
            },
        )
        .ok()?;
        Some(HostPhysAddr::new(start))
    }
    fn dealloc_frames(&self, _: HostPhysAddr, _: usize) {}
    fn phys_to_virt(&self, pa: HostPhysAddr) -> HostVirtAddr {
        HostVirtAddr::new(arena() + (pa.as_usize() - PHYS_BASE))
    }
}

type Vm = AxVm<FakeVCpu, FakeFormat, HostFrames>;

const CONFIG: &str = r#"
id = 7
name = "t"
[cpus]
count = 1
pin = [0]
[kernel]
image = "k"
load_addr = 0x4000_0000
[[memory]]
gpa = 0x4000_0000
size = 0x10_0000
map = "alloc"
[[devices]]
kind = "pl011"
base = 0x0900_0000
size = 0x1000
"#;

fn vm_with(policy: &str, exits: Vec<VmExit>) -> (Vm, Arc<Script>, Arc<Mutex<Vec<String>>>) {
    vm_from(CONFIG, policy, exits)
}

fn vm_from(
    config: &str,
    policy: &str,
    exits: Vec<VmExit>,
) -> (Vm, Arc<Script>, Arc<Mutex<Vec<String>>>) {
    let text = std::format!("{config}\n[unclaimed]\npolicy = \"{policy}\"\n");
    let config = axvmconfig::from_toml(&text).unwrap();
    let script = Arc::new(Script {
        exits: Mutex::new(exits),
        ..Script::default()
    });
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let s2 = script.clone();
    let vm = Vm::new(
        config,
        HostFrames,
        &|name| (name == "k").then_some(&b"\x01\x02\x03\x04kernel"[..]),
        Arc::new(move |l: &str| sink.lock().push(l.to_string())),
        &move |_| s2.clone(),
        crate::VmPlatform::none(),
    )
    .unwrap();
    vm.boot(&[(0, 0x4400_0000)]).unwrap();
    (vm, script, lines)
}

fn gpa(v: usize) -> GuestPhysAddr {
    GuestPhysAddr::new(v)
}

fn uart_write(b: u8) -> VmExit {
    VmExit::MmioWrite {
        gpa: gpa(0x0900_0000),
        width: AccessWidth::Byte,
        value: b as u64,
    }
}

#[test]
fn image_is_loaded_and_console_is_prefixed() {
    let mut exits: Vec<_> = b"PASS hello\n".iter().map(|&b| uart_write(b)).collect();
    exits.push(VmExit::SystemOff);
    let (vm, _, lines) = vm_with("fault", exits);
    let mut buf = [0u8; 10];
    vm.read_guest(gpa(0x4000_0000), &mut buf).unwrap();
    assert_eq!(&buf, b"\x01\x02\x03\x04kernel");
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::PowerOff);
    assert_eq!(lines.lock().as_slice(), ["[t] PASS hello"]);
    assert_eq!(vm.status(), VmStatus::Stopping);
    assert_eq!(vm.exits().get(ExitKind::MmioWrite), 11);
    assert_eq!(vm.exits().get(ExitKind::Power), 1);
    // A stopping VM does not run again.
    assert!(matches!(
        vm.run_vcpu(0),
        Err(VmError::NotRunning(VmStatus::Stopping))
    ));
}

#[test]
fn a_paused_vm_keeps_its_vcpus_out_until_resumed() {
    let exits = std::vec![uart_write(b'x'), uart_write(b'\n'), VmExit::Halt];
    let (vm, _, lines) = vm_with("fault", exits);
    assert_eq!(vm.pause(), Ok(()));
    assert_eq!(vm.status(), VmStatus::Paused);
    // Pausing again, resuming twice: the status that refused it.
    assert_eq!(vm.pause(), Err(VmStatus::Paused));
    // A paused vCPU does not enter the guest and does not sleep as halted.
    assert!(matches!(
        vm.run_vcpu(0),
        Err(VmError::NotRunning(VmStatus::Paused))
    ));
    assert_eq!(vm.halt_wakeup(0), (true, None));
    assert_eq!(vm.exits().get(ExitKind::MmioWrite), 0);
    assert!(lines.lock().is_empty());
    assert_eq!(vm.resume(), Ok(()));
    assert_eq!(vm.resume(), Err(VmStatus::Running));
    // The guest goes on where it was.
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Halt);
    assert_eq!(lines.lock().as_slice(), ["[t] x"]);
    // A paused VM can be stopped; a stopping one is not paused or resumed.
    assert_eq!(vm.pause(), Ok(()));
    vm.shutdown();
    assert_eq!(vm.status(), VmStatus::Stopping);
    assert_eq!(vm.resume(), Err(VmStatus::Stopping));
    assert_eq!(vm.pause(), Err(VmStatus::Stopping));
}

#[test]
fn only_interrupt_exits_ask_whether_to_yield() {
    let exits = std::vec![
        VmExit::ExternalInterrupt,
        uart_write(b'x'),
        VmExit::ExternalInterrupt,
        uart_write(b'\n'),
        VmExit::Halt,
    ];
    let (vm, _, lines) = vm_with("fault", exits);
    // The first interrupt is taken and the guest re-entered; the second ends the run.
    let asked = core::cell::Cell::new(0);
    let after_interrupt = || {
        asked.set(asked.get() + 1);
        asked.get() == 2
    };
    assert_eq!(
        vm.run_vcpu_until(0, &after_interrupt).unwrap(),
        VcpuEvent::Interrupt
    );
    assert_eq!(asked.get(), 2);
    assert_eq!(vm.exits().get(ExitKind::Interrupt), 2);
    assert_eq!(vm.exits().get(ExitKind::MmioWrite), 1);
    // MMIO and halt exits do not ask.
    assert_eq!(
        vm.run_vcpu_until(0, &after_interrupt).unwrap(),
        VcpuEvent::Halt
    );
    assert_eq!(asked.get(), 2);
    assert_eq!(lines.lock().as_slice(), ["[t] x"]);
}

#[test]
fn hypercalls() {
    let exits = std::vec![
        VmExit::Hypercall { nr: hc::VERSION },
        VmExit::Hypercall { nr: hc::ADD },
        VmExit::Hypercall { nr: hc::VM_ID },
        VmExit::Hypercall { nr: 0xdead },
        VmExit::Hypercall {
            nr: hc::CONSOLE_PUTCHAR
        },
        VmExit::Hypercall {
            nr: hc::CONSOLE_PUTCHAR
        },
        VmExit::Halt,
    ];
    let (vm, script, lines) = vm_with("fault", exits);
    // The arguments of the six calls, in order (the calls without arguments ignore theirs).
    *script.hypercall_args.lock() = std::vec![
        [9; 6],
        [1, 2, 3, 4, 5, u64::MAX],
        [9; 6],
        [9; 6],
        [b'x' as u64, 0, 0, 0, 0, 0],
        [b'\n' as u64, 0, 0, 0, 0, 0],
    ];
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Halt);
    assert_eq!(
        script.calls.lock().as_slice(),
        [
            Call::Ret(hc::ABI_VERSION),
            Call::Ret(14),
            Call::Ret(7),
            Call::Ret(hc::NOT_SUPPORTED),
            Call::Ret(0),
            Call::Ret(0)
        ]
    );
    assert_eq!(lines.lock().as_slice(), ["[t] x"]);
    assert_eq!(vm.exits().get(ExitKind::Hypercall), 6);
}

#[test]
fn mmio_read_completes_with_device_value() {
    // PL011 FR (0x18): TX FIFO empty (bit 7) and RX FIFO empty (bit 4).
    let exits = std::vec![
        VmExit::MmioRead {
            gpa: gpa(0x0900_0018),
            width: AccessWidth::Word,
            reg: 3,
            sign_ext: false
        },
        VmExit::Halt,
    ];
    let (vm, script, _) = vm_with("fault", exits);
    vm.run_vcpu(0).unwrap();
    let calls = script.calls.lock();
    let [Call::MmioDone(fr)] = calls.as_slice() else {
        panic!("{calls:?}")
    };
    assert_ne!(fr & (1 << 7), 0);
    assert_ne!(fr & (1 << 4), 0);
}

#[test]
fn console_input_reaches_the_uart() {
    // The guest reads PL011 DR (0x00) once after the input arrived.
    let exits = std::vec![
        VmExit::MmioRead {
            gpa: gpa(0x0900_0000),
            width: AccessWidth::Word,
            reg: 3,
            sign_ext: false
        },
        VmExit::Halt,
    ];
    let (vm, script, _) = vm_with("fault", exits);
    let many = [b'k'; 40];
    // The PL011's FIFO holds 32: the rest waits with the caller.
    assert_eq!(vm.feed_console(&many), Some(32));
    assert_eq!(vm.feed_console(b"z"), Some(0));
    vm.run_vcpu(0).unwrap();
    assert_eq!(
        script.calls.lock().as_slice(),
        [Call::MmioDone(u64::from(b'k'))]
    );
    assert_eq!(vm.feed_console(b"z"), Some(1));
    let (no_uart, _, _) = vm_from(&CONFIG.replace("pl011", "gicd"), "fault", std::vec![]);
    assert_eq!(no_uart.feed_console(b"z"), None);
}

#[test]
fn unclaimed_access_policies() {
    let unclaimed = || {
        std::vec![
            VmExit::MmioRead {
                gpa: gpa(0x0a00_0000),
                width: AccessWidth::Word,
                reg: 0,
                sign_ext: false
            },
            VmExit::MmioWrite {
                gpa: gpa(0x0a00_0000),
                width: AccessWidth::Word,
                value: 1
            },
            VmExit::Halt,
        ]
    };
    let (vm, script, _) = vm_with("fault", unclaimed());
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Halt);
    assert_eq!(
        script.calls.lock().as_slice(),
        [Call::Fault(0x0a00_0000), Call::Fault(0x0a00_0000)]
    );

    let (vm, script, _) = vm_with("read-zero", unclaimed());
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Halt);
    assert_eq!(script.calls.lock().as_slice(), [Call::MmioDone(0)]);

    let (vm, _, _) = vm_with("stop", unclaimed());
    assert!(matches!(vm.run_vcpu(0).unwrap(), VcpuEvent::Stopped(_)));
    assert_eq!(vm.status(), VmStatus::Stopping);
}

#[test]
fn nested_faults_and_unsupported_exits() {
    let exits = std::vec![
        VmExit::NestedPageFault {
            gpa: gpa(0x7000_0000),
            access: MappingFlags::READ
        },
        VmExit::Unsupported {
            reason: "test",
            syndrome: 1
        },
    ];
    let (vm, script, _) = vm_with("fault", exits);
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Stopped("test"));
    assert_eq!(script.calls.lock().as_slice(), [Call::Fault(0x7000_0000)]);
    assert_eq!(vm.exits().get(ExitKind::Unsupported), 1);
}

#[test]
fn a_fault_on_a_mapped_page_that_keeps_coming_back_stops_the_vm() {
    use crate::fault_streak::MAX_REPEATS;
    let fault = |g| VmExit::NestedPageFault {
        gpa: gpa(g),
        access: MappingFlags::READ,
    };
    // The kernel's page is mapped (the image was loaded there): the address space says
    // each fault is handled, yet the same one comes back; an MMIO exit in between is no
    // progress either.
    let mut exits: Vec<VmExit> = (0..MAX_REPEATS - 1).map(|_| fault(0x4000_0010)).collect();
    exits.insert(5, uart_write(b'x'));
    exits.push(fault(0x4000_0ff8));
    exits.push(VmExit::Halt);
    let (vm, script, _) = vm_with("fault", exits);
    assert_eq!(
        vm.run_vcpu(0).unwrap(),
        VcpuEvent::Stopped("nested page fault repeats on a mapped page")
    );
    assert_eq!(
        script.exits.lock().as_slice(),
        [VmExit::Halt],
        "stopped at the last one"
    );
    assert!(script.calls.lock().is_empty(), "no fault injected");
    assert_eq!(vm.status(), VmStatus::Stopping);

    // Faults that move on (another page, or one that is not resolved) keep it running.
    let mut exits: Vec<VmExit> = (0..MAX_REPEATS - 1).map(|_| fault(0x4000_0010)).collect();
    exits.push(fault(0x7000_0000));
    exits.extend((0..MAX_REPEATS - 1).map(|_| fault(0x4000_0010)));
    exits.extend((0..MAX_REPEATS - 1).map(|_| fault(0x4000_1000)));
    exits.push(VmExit::Halt);
    let (vm, script, _) = vm_with("fault", exits);
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Halt);
    assert_eq!(script.calls.lock().as_slice(), [Call::Fault(0x7000_0000)]);
}

/// The config with a 16550 at COM1's ports besides the PL011.
fn with_com1() -> String {
    std::format!("{CONFIG}[[devices]]\nkind = \"ns16550\"\nport = 0x3f8\n")
}

#[test]
fn port_io_reaches_port_devices() {
    let mut exits: Vec<_> = b"ok\n"
        .iter()
        .map(|&b| VmExit::PortWrite {
            port: 0x3f8,
            width: AccessWidth::Byte,
            value: u64::from(b),
        })
        .collect();
    // LSR: transmitter empty.
    exits.push(VmExit::PortRead {
        port: 0x3fd,
        width: AccessWidth::Byte,
    });
    exits.push(VmExit::Halt);
    let (vm, script, lines) = vm_from(&with_com1(), "fault", exits);
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Halt);
    assert_eq!(lines.lock().as_slice(), ["[t] ok"]);
    assert_eq!(script.calls.lock().as_slice(), [Call::PortDone(0x60)]);
    assert_eq!(vm.exits().get(ExitKind::PortWrite), 3);
    assert_eq!(vm.exits().get(ExitKind::PortRead), 1);
    // The PL011's address is not a port.
    assert_eq!(vm.unclaimed_ports().total, 0);
}

#[test]
fn unclaimed_port_policies() {
    let unclaimed = || {
        std::vec![
            VmExit::PortRead {
                port: 0x80,
                width: AccessWidth::Half,
            },
            VmExit::PortWrite {
                port: 0x80,
                width: AccessWidth::Byte,
                value: 1,
            },
            VmExit::Halt,
        ]
    };
    // No fault for port I/O: all ones, and the write is ignored.
    let (vm, script, _) = vm_with("fault", unclaimed());
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Halt);
    assert_eq!(script.calls.lock().as_slice(), [Call::PortDone(0xffff)]);
    assert_eq!(vm.unclaimed_ports().total, 2);
    assert_eq!(vm.unclaimed().total, 0);

    let (vm, script, _) = vm_with("read-zero", unclaimed());
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Halt);
    assert_eq!(script.calls.lock().as_slice(), [Call::PortDone(0)]);

    let (vm, _, _) = vm_with("stop", unclaimed());
    assert_eq!(
        vm.run_vcpu(0).unwrap(),
        VcpuEvent::Stopped("unclaimed port read")
    );
    assert_eq!(vm.status(), VmStatus::Stopping);
}

#[test]
fn passthrough_ranges_are_mapped_at_their_host_addresses() {
    let config = std::format!(
        "{CONFIG}[[passthrough]]\nname = \"rtc\"\nbase = 0x0901_0000\nsize = 0x1000\n"
    );
    let (vm, _, _) = vm_from(&config, "fault", Vec::new());
    let aspace = vm.aspace.lock();
    let (hpa, flags, _) = aspace.translate(gpa(0x0901_0000)).unwrap();
    assert_eq!(hpa.as_usize(), 0x0901_0000);
    assert!(flags.contains(MappingFlags::DEVICE));
}

/// A `kind = "rom"` region: the kernel is loaded into it though the guest cannot write it,
/// and a guest write there is handled like an unclaimed access (a fault, or ignored with
/// `read-zero`); the ROM keeps its contents.
#[test]
fn rom_is_loaded_and_guest_writes_are_refused() {
    let rom = CONFIG.replace("map = \"alloc\"\n", "map = \"alloc\"\nkind = \"rom\"\n");
    // A store the CPU decoded (a permission fault with a valid syndrome).
    let write = || {
        std::vec![VmExit::MmioWrite {
            gpa: gpa(0x4000_0010),
            width: AccessWidth::Word,
            value: 0xdead,
        }]
    };
    let (vm, script, _) = vm_from(&rom, "fault", write());
    let mut head = [0u8; 4];
    vm.read_guest(gpa(0x4000_0000), &mut head).unwrap();
    assert_eq!(head, [1, 2, 3, 4]);
    assert!(vm.run_vcpu(0).is_err()); // the script ends after the fault
    assert_eq!(script.calls.lock().as_slice(), [Call::Fault(0x4000_0010)]);
    let (vm, script, _) = vm_from(&rom, "read-zero", write());
    assert!(vm.run_vcpu(0).is_err());
    assert!(script.calls.lock().is_empty(), "the write is ignored");
    vm.read_guest(gpa(0x4000_0000), &mut head).unwrap();
    assert_eq!(head, [1, 2, 3, 4]);
}

/// Memory the host cannot give: building the VM fails with the region and its size, and
/// nothing is left allocated for it.
#[test]
fn memory_the_host_cannot_give_names_the_region() {
    /// [`HostFrames`] with a budget of 64 frames, so the test does not use up the arena
    /// the other tests share.
    #[derive(Clone, Copy)]
    struct Starved;
    static BUDGET: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(64);
    impl FrameAllocator for Starved {
        fn alloc_frames(&self, count: usize, align: usize) -> Option<HostPhysAddr> {
            use core::sync::atomic::Ordering::SeqCst;
            BUDGET
                .fetch_update(SeqCst, SeqCst, |left| left.checked_sub(count))
                .ok()?;
            HostFrames.alloc_frames(count, align)
        }
        fn dealloc_frames(&self, _: HostPhysAddr, _: usize) {}
        fn phys_to_virt(&self, pa: HostPhysAddr) -> HostVirtAddr {
            HostFrames.phys_to_virt(pa)
        }
    }
    let big = CONFIG.replace("size = 0x10_0000\n", "size = 0x1_0000_0000\n");
    let config = axvmconfig::from_toml(&big).unwrap();
    let script = Arc::new(Script::default());
    let err = AxVm::<FakeVCpu, FakeFormat, Starved>::new(
        config,
        Starved,
        &|_| Some(&b"k"[..]),
        Arc::new(|_: &str| {}),
        &move |_| script.clone(),
        crate::VmPlatform::none(),
    )
    .err()
    .expect("4 GiB from a 64 MiB arena");
    assert_eq!(
        err.to_string(),
        "guest memory: memory[0] (4194304 KiB at 0x40000000): frame allocator out of memory"
    );
}

/// A logger that keeps every WARN record, so a test can count the lines of its VM.
struct WarnLog;
static WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl log::Log for WarnLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.level() <= log::Level::Warn {
            WARNINGS.lock().unwrap().push(std::format!("{}", r.args()));
        }
    }
    fn flush(&self) {}
}

/// The WARN lines logged so far for VM `name` (installs the logger on first use).
fn warnings_for(name: &str) -> Vec<String> {
    static INIT: std::sync::Once = std::sync::Once::new();
    static LOGGER: WarnLog = WarnLog;
    INIT.call_once(|| {
        log::set_logger(&LOGGER).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
    });
    let tag = std::format!("vm {name}:");
    WARNINGS
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(&tag))
        .cloned()
        .collect()
}

#[test]
fn nested_faults_outside_memory_are_logged_boundedly() {
    // The chaos guest did this: load pairs, atomics and instruction fetches at a new
    // address each time, none of which can be emulated. Each used to log a WARN line.
    warnings_for("npf");
    let flood = 1000;
    let mut exits: Vec<VmExit> = (0..flood)
        .map(|i| VmExit::NestedPageFault {
            gpa: gpa(0x5000_0000 + i * 0x40),
            access: [
                MappingFlags::READ,
                MappingFlags::WRITE,
                MappingFlags::EXECUTE,
            ][i % 3],
        })
        .collect();
    exits.push(VmExit::Halt);
    let config = CONFIG.replace("name = \"t\"", "name = \"npf\"");
    let (vm, script, _) = vm_from(&config, "fault", exits);
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Halt);
    let calls = script.calls.lock();
    assert_eq!(calls.len(), flood, "one fault per access");
    assert!(calls
        .iter()
        .enumerate()
        .all(|(i, c)| *c == Call::Fault(0x5000_0000 + i * 0x40)));
    let w = warnings_for("npf");
    // All in one 1 MiB range: a line for each of the first addresses, none after them.
    let limit = axdevice::unclaimed::DETAIL_LIMIT;
    assert_eq!(w.len(), limit, "{w:?}");
    assert!(w[0].contains("read at 0x50000000"), "{}", w[0]);
    assert!(w[1].contains("write at 0x50000040"), "{}", w[1]);
    assert!(w[2].contains("instruction fetch at 0x50000080"), "{}", w[2]);
    assert!(w[limit - 1].contains("logged once per 1 MiB range"));
    let unclaimed = vm.unclaimed();
    assert_eq!(
        unclaimed.total, flood as u64,
        "the full count stays available"
    );
    assert_eq!(unclaimed.ranges[0].base, 0x5000_0000);
    assert_eq!(vm.exits().get(ExitKind::NestedPageFault), flood as u64);

    // The stop policy still stops at the first one.
    let exits = std::vec![VmExit::NestedPageFault {
        gpa: gpa(0x5000_0000),
        access: MappingFlags::READ,
    }];
    let config = CONFIG.replace("name = \"t\"", "name = \"npfstop\"");
    let (vm, _, _) = vm_from(&config, "stop", exits);
    assert_eq!(
        vm.run_vcpu(0).unwrap(),
        VcpuEvent::Stopped("unresolvable nested page fault")
    );
}

#[test]
fn power_events_reach_the_hypervisor() {
    let exits = std::vec![VmExit::SystemReset];
    let (vm, _, _) = vm_with("fault", exits);
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Reset);
    assert!(vm.run_vcpu(0).is_err());
}

/// Two vCPUs: vCPU 0 starts vCPU 1 (bad target, bad entry, then fine, then again before and
/// after it ran), asks its status, vCPU 1 stops itself, then vCPU 0 does and the VM stops.
#[test]
fn cpu_on_status_and_off() {
    let config = CONFIG.replace("count = 1\npin = [0]", "count = 2\npin = [0, 1]");
    let up = |target, entry| VmExit::CpuUp {
        target,
        entry: gpa(entry),
        arg: 0x77,
    };
    let status = |target| VmExit::CpuStatus { target };
    let exits = std::vec![
        up(0x105, 0x4000_1000), // no such vCPU
        up(0x101, 0x9000_0000), // entry outside RAM
        status(0x101),          // off
        up(0x101, 0x4000_1000), // started
        status(0x101),          // pending (not run yet)
        up(0x101, 0x4000_1000), // being started (PSCI ON_PENDING)
        VmExit::Halt,           // vCPU 1's first exit...
        status(0x101),          // ...and now it is on
        up(0x101, 0x4000_1000), // already on
        VmExit::CpuDown,        // vCPU 1 off
        status(0x101),
        VmExit::CpuDown, // vCPU 0 off: every vCPU is off
    ];
    let (vm, script, _) = vm_from(&config, "fault", exits);
    assert_eq!(vm.power_state(0), Some(PowerState::On));
    assert_eq!(vm.power_state(1), Some(PowerState::Off));
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::CpuUp { vcpu: 1 });
    assert_eq!(vm.power_state(1), Some(PowerState::Pending));
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Halt);
    assert_eq!(vm.run_vcpu(1).unwrap(), VcpuEvent::CpuDown);
    assert_eq!(vm.power_state(1), Some(PowerState::Off));
    assert_eq!(
        vm.run_vcpu(0).unwrap(),
        VcpuEvent::Stopped("every vCPU is off")
    );
    use PowerReply::*;
    assert_eq!(
        script.calls.lock().as_slice(),
        [
            Call::Power(InvalidTarget),
            Call::Power(InvalidAddress),
            Call::Power(Status(PowerState::Off)),
            Call::StartArg(0x77),
            Call::Power(Done),
            Call::Power(Status(PowerState::Pending)),
            Call::Power(OnPending),
            Call::Power(Status(PowerState::On)),
            Call::Power(AlreadyOn),
            Call::Power(Status(PowerState::Off)),
        ]
    );
}

#[test]
fn missing_image_is_an_error() {
    let config = axvmconfig::from_toml(CONFIG).unwrap();
    let r = Vm::new(
        config,
        HostFrames,
        &|_| None,
        Arc::new(|_: &str| {}),
        &|_| Arc::new(Script::default()),
        crate::VmPlatform::none(),
    );
    assert!(matches!(r, Err(VmError::MissingImage(ref n)) if n == "k"));
}

/// A device the platform adds: every read answers 0x5a.
struct Fixed;

impl axdevice_base::MmioDevice for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }
    fn size(&self) -> usize {
        0x1000
    }
    fn read(&self, _: usize, _: AccessWidth) -> Result<u64, axdevice_base::DeviceError> {
        Ok(0x5a)
    }
    fn write(&self, _: usize, _: AccessWidth, _: u64) -> Result<(), axdevice_base::DeviceError> {
        Ok(())
    }
}

/// Records the levels a device drives.
struct Line(Mutex<Vec<bool>>);

impl axdevice_base::IrqLine for Line {
    fn set_level(&self, high: bool) {
        self.0.lock().push(high);
    }
}

/// What the architecture layer adds: a generated DTB is loaded at `kernel.dtb.load_addr`,
/// platform devices answer, device interrupts are wired to the platform's lines, and an
/// interrupt the platform does not have is a clear error.
#[test]
fn platform_devices_irq_lines_and_generated_dtb() {
    let config_text = CONFIG
        .replace(
            "load_addr = 0x4000_0000",
            "load_addr = 0x4000_0000\ndtb = { load_addr = 0x4008_0000 }",
        )
        .replace("size = 0x1000\n", "size = 0x1000\nirq = 33\n");
    let line = Arc::new(Line(Mutex::new(Vec::new())));
    let platform = |line: Arc<Line>| crate::VmPlatform {
        devices: std::vec![(
            0x0800_0000,
            Arc::new(Fixed) as Arc<dyn axdevice_base::MmioDevice>
        )],
        device_maps: Vec::new(),
        irq_line: alloc::boxed::Box::new(move |n| {
            (n == 33).then(|| line.clone() as Arc<dyn axdevice_base::IrqLine>)
        }),
        dtb: Some(b"DTB!".to_vec()),
        boot_data: std::vec![(0x4000_1000, b"BOOT".to_vec())],
        on_reset: None,
        kernel: None,
        ..crate::VmPlatform::none()
    };
    let script = Arc::new(Script {
        exits: Mutex::new(std::vec![VmExit::MmioRead {
            gpa: gpa(0x0800_0010),
            width: AccessWidth::Word,
            reg: 1,
            sign_ext: false
        }]),
        ..Script::default()
    });
    let s2 = script.clone();
    let vm = Vm::new(
        axvmconfig::from_toml(&config_text).unwrap(),
        HostFrames,
        &|name| (name == "k").then_some(&b"kern"[..]),
        Arc::new(|_: &str| {}),
        &move |_| s2.clone(),
        platform(line.clone()),
    )
    .unwrap();
    let mut buf = [0u8; 4];
    vm.read_guest(gpa(0x4008_0000), &mut buf).unwrap();
    assert_eq!(&buf, b"DTB!");
    vm.boot(&[]).unwrap();
    assert!(vm.run_vcpu(0).is_err()); // the script ends after the read
    assert_eq!(script.calls.lock().as_slice(), [Call::MmioDone(0x5a)]);
    // The platform's boot data is in memory, and again after a reset.
    vm.read_guest(gpa(0x4000_1000), &mut buf).unwrap();
    assert_eq!(&buf, b"BOOT");
    vm.aspace.lock().write(gpa(0x4000_1000), b"junk").unwrap();
    vm.reset().unwrap();
    vm.read_guest(gpa(0x4000_1000), &mut buf).unwrap();
    assert_eq!(&buf, b"BOOT");

    let bad = config_text.replace("irq = 33", "irq = 34");
    let r = Vm::new(
        axvmconfig::from_toml(&bad).unwrap(),
        HostFrames,
        &|name| (name == "k").then_some(&b"kern"[..]),
        Arc::new(|_: &str| {}),
        &|_| Arc::new(Script::default()),
        platform(line),
    );
    let Err(e @ VmError::Device { .. }) = r else {
        panic!("an interrupt the platform lacks must be refused");
    };
    assert_eq!(
        e.to_string(),
        "device: pl011 at 0x9000000: interrupt 34 does not exist in this VM's interrupt controller"
    );
}

#[test]
fn a_failing_vcpu_is_an_error_not_a_panic() {
    let (vm, _, _) = vm_with("fault", Vec::new());
    assert!(matches!(
        vm.run_vcpu(0),
        Err(VmError::VCpu(VCpuError::Hardware(0xdead)))
    ));
}

#[test]
fn reset_reloads_images_and_counts() {
    let exits = std::vec![
        VmExit::SystemReset,
        VmExit::Hypercall {
            nr: hc::RESET_COUNT
        },
        VmExit::Halt,
    ];
    let (vm, script, _) = vm_with("fault", exits);
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Reset);
    assert!(vm.run_vcpu(0).is_err());
    // The guest scribbled over its kernel; reset loads it again.
    vm.aspace.lock().write(gpa(0x4000_0000), b"junk").unwrap();
    vm.reset().unwrap();
    assert_eq!(vm.status(), VmStatus::Running);
    let mut buf = [0u8; 4];
    vm.read_guest(gpa(0x4000_0000), &mut buf).unwrap();
    assert_eq!(&buf, b"\x01\x02\x03\x04");
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Halt);
    assert_eq!(script.calls.lock().as_slice(), [Call::Ret(1)]);
}

/// A VM reset runs the platform's reset hook (the interrupt controller back to its reset
/// state) before vCPU 0 restarts.
#[test]
fn reset_runs_the_platform_hook() {
    let resets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = resets.clone();
    let mut platform = crate::VmPlatform::none();
    platform.on_reset = Some(alloc::boxed::Box::new(move || {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let script = Arc::new(Script {
        exits: Mutex::new(std::vec![VmExit::SystemReset]),
        ..Script::default()
    });
    let s2 = script.clone();
    let vm = Vm::new(
        axvmconfig::from_toml(CONFIG).unwrap(),
        HostFrames,
        &|name| (name == "k").then_some(&b"kern"[..]),
        Arc::new(|_: &str| {}),
        &move |_| s2.clone(),
        platform,
    )
    .unwrap();
    vm.boot(&[]).unwrap();
    assert_eq!(vm.run_vcpu(0).unwrap(), VcpuEvent::Reset);
    assert_eq!(resets.load(std::sync::atomic::Ordering::SeqCst), 0);
    vm.reset().unwrap();
    assert_eq!(resets.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// The fake architecture's VM platform: what a real one does through the trait, without
/// hardware (boot data, boot registers, a refusal), so the seam is exercised on the host.
struct FakePlatform;

/// What a fake VM has besides its vCPUs: the script its vCPUs replay.
struct FakeVm(Arc<Script>);

/// Why the fake platform refuses a VM.
#[derive(Debug, PartialEq, Eq)]
enum FakePlatformError {
    /// Passthrough interrupts: the fake platform has no interrupt controller.
    PassthroughIrqs,
    /// A bzImage-like boot without its kernel image.
    NoKernel,
}

impl core::fmt::Display for FakePlatformError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::PassthroughIrqs => "passthrough interrupts need an interrupt controller",
            Self::NoKernel => "no kernel image",
        })
    }
}

impl crate::ArchPlatform for FakePlatform {
    type VCpu = FakeVCpu;
    type Stage2 = FakeFormat;
    type Vm = FakeVm;
    type Error = FakePlatformError;

    const HOST_ARCH: axvmconfig::HostArch = axvmconfig::HostArch::X86_64;

    fn vmid_bits() -> u32 {
        4
    }

    fn build(
        config: &axvmconfig::VmConfig,
        _notifier: Arc<dyn axdevice_base::VcpuNotifier>,
    ) -> Result<(crate::VmPlatform, FakeVm), FakePlatformError> {
        if config.passthrough_irqs().next().is_some() {
            return Err(FakePlatformError::PassthroughIrqs);
        }
        let mut platform = crate::VmPlatform::none();
        platform.boot_data = std::vec![(0x4000_2000, b"GDT!".to_vec())];
        Ok((platform, FakeVm(Arc::new(Script::default()))))
    }

    fn irq_sink(_: &FakeVm) -> Option<Arc<dyn crate::IrqSink>> {
        None
    }

    fn vcpu_config(vm: &FakeVm, _vmid: u16, _index: usize) -> Arc<Script> {
        vm.0.clone()
    }

    fn boot_regs(config: &axvmconfig::VmConfig) -> Vec<(usize, u64)> {
        std::vec![(7, u64::from(config.id))]
    }

    /// A bzImage-like boot: the kernel image without its first two bytes (its "setup") at
    /// `load_addr`, a generated page at 0x4000_3000, the entry at `load_addr + 0x200` and
    /// register 6 pointing at the page.
    fn prepare_boot(
        config: &axvmconfig::VmConfig,
        images: &dyn Fn(&str) -> Option<&'static [u8]>,
    ) -> Result<Option<crate::KernelBoot>, FakePlatformError> {
        if config.kernel.format != axvmconfig::KernelFormat::LinuxBzimage {
            return Ok(None);
        }
        let kernel = images(&config.kernel.image).ok_or(FakePlatformError::NoKernel)?;
        Ok(Some(crate::KernelBoot {
            images: std::vec![crate::ImageLoad {
                name: config.kernel.image.clone(),
                gpa: config.kernel.load_addr,
                bytes: &kernel[2..],
            }],
            data: std::vec![(0x4000_3000, b"ZERO".to_vec())],
            entry: config.kernel.load_addr + 0x200,
            regs: std::vec![(6, 0x4000_3000)],
        }))
    }
}

struct NoNotify;

impl axdevice_base::VcpuNotifier for NoNotify {
    fn notify(&self, _: usize) {}
}

/// What the hypervisor does with a platform `P` (axvisor's `build_and_start`, without the
/// claims and the tasks): build, prepare the kernel's boot, create the VM with the
/// platform's vCPU configs, boot it with its registers.
fn create_on<P: crate::ArchPlatform>(
    config: &str,
) -> Result<(crate::PlatformVm<P, HostFrames>, P::Vm), std::string::String> {
    let config = axvmconfig::from_toml(config).unwrap();
    let (mut platform, arch_vm) =
        P::build(&config, Arc::new(NoNotify)).map_err(|e| e.to_string())?;
    let images = |name: &str| (name == "k").then_some(&b"kern"[..]);
    let kernel = P::prepare_boot(&config, &images).map_err(|e| e.to_string())?;
    assert!(P::dtb_arch(&config).map_err(|e| e.to_string())?.is_none());
    let regs = match &kernel {
        Some(k) => k.regs.clone(),
        None => P::boot_regs(&config),
    };
    platform.kernel = kernel;
    let vm = AxVm::new(
        config,
        HostFrames,
        &images,
        Arc::new(|_: &str| {}),
        &|i| P::vcpu_config(&arch_vm, 3, i),
        platform,
    )
    .map_err(|e| e.to_string())?;
    vm.boot(&regs).map_err(|e| e.to_string())?;
    Ok((vm, arch_vm))
}

#[test]
fn a_vm_through_the_platform_trait() {
    let (vm, arch_vm) = create_on::<FakePlatform>(CONFIG).unwrap();
    // The platform's boot data is in guest memory, its boot registers in vCPU 0.
    let mut buf = [0u8; 4];
    vm.read_guest(gpa(0x4000_2000), &mut buf).unwrap();
    assert_eq!(&buf, b"GDT!");
    assert_eq!(arch_vm.0.gprs.lock().as_slice(), [(7, 7)]);
    assert_eq!(vm.status(), VmStatus::Running);

    let with_irq = std::format!(
        "{CONFIG}[[passthrough]]\nname = \"rtc\"\nbase = 0x0901_0000\nsize = 0x1000\nirqs = [40]\n"
    );
    assert_eq!(
        create_on::<FakePlatform>(&with_irq).err().unwrap(),
        "passthrough interrupts need an interrupt controller"
    );
    assert_eq!(<FakePlatform as crate::ArchPlatform>::vmid_bits(), 4);
}

/// A kernel the platform places itself (`ArchPlatform::prepare_boot`): its bytes, borrowed
/// from the image, and the generated data go where the platform says, vCPU 0 starts at the
/// platform's entry with the platform's registers (not `boot_regs`), and a reset writes
/// everything again.
#[test]
fn a_kernel_the_platform_places() {
    let config = CONFIG.replace(
        "load_addr = 0x4000_0000",
        "load_addr = 0x4000_4000\nformat = \"linux-bzimage\"",
    );
    let (vm, arch_vm) = create_on::<FakePlatform>(&config).unwrap();
    let mut buf = [0u8; 4];
    vm.read_guest(gpa(0x4000_4000), &mut buf).unwrap();
    assert_eq!(&buf, b"rn\0\0", "the image from its third byte");
    vm.read_guest(gpa(0x4000_3000), &mut buf).unwrap();
    assert_eq!(&buf, b"ZERO");
    vm.read_guest(gpa(0x4000_2000), &mut buf).unwrap();
    assert_eq!(&buf, b"GDT!", "the platform's boot data too");
    assert_eq!(arch_vm.0.entries.lock().as_slice(), [0x4000_4200]);
    assert_eq!(arch_vm.0.gprs.lock().as_slice(), [(6, 0x4000_3000)]);
    // Reset: everything written again, the same entry and registers.
    vm.aspace.lock().write(gpa(0x4000_4000), b"junk").unwrap();
    vm.aspace.lock().write(gpa(0x4000_3000), b"junk").unwrap();
    vm.reset().unwrap();
    vm.read_guest(gpa(0x4000_4000), &mut buf).unwrap();
    assert_eq!(&buf[..2], b"rn");
    vm.read_guest(gpa(0x4000_3000), &mut buf).unwrap();
    assert_eq!(&buf, b"ZERO");
    assert_eq!(
        arch_vm.0.entries.lock().as_slice(),
        [0x4000_4200, 0x4000_4200]
    );
    assert_eq!(
        arch_vm.0.gprs.lock().as_slice(),
        [(6, 0x4000_3000), (6, 0x4000_3000)]
    );
    // The platform's error names what is wrong.
    let no_kernel = config.replace("image = \"k\"", "image = \"nope\"");
    assert_eq!(
        create_on::<FakePlatform>(&no_kernel).err().unwrap(),
        "no kernel image"
    );
}

/// The console lines a test VM printed.
type Lines = Arc<Mutex<Vec<String>>>;

/// A VM with a virtio-console at 0x0a00_0000 (interrupt 48) listed before its PL011, and a
/// ROM.
fn virtio_vm(exits: Vec<VmExit>, irq: &str) -> (Result<Vm, VmError>, Arc<Line>, Lines) {
    virtio_vm_with(exits, irq, crate::VmPlatform::none().disks)
}

/// [`virtio_vm`] whose platform opens `virtio-blk` backings with `disks`.
fn virtio_vm_with(
    exits: Vec<VmExit>,
    irq: &str,
    disks: crate::DiskOpener,
) -> (Result<Vm, VmError>, Arc<Line>, Lines) {
    // The virtio-console comes first: it is the console that takes input.
    let text = CONFIG.replace(
        "[[devices]]\nkind = \"pl011\"",
        &std::format!(
            "[[memory]]\ngpa = 0x5000_0000\nsize = 0x1000\nkind = \"rom\"\nmap = \"alloc\"\n\
             [[devices]]\nkind = \"virtio-console\"\nbase = 0x0a00_0000\n{irq}\n\
             [[devices]]\nkind = \"pl011\""
        ),
    );
    let line = Arc::new(Line(Mutex::new(Vec::new())));
    let l2 = line.clone();
    let platform = crate::VmPlatform {
        irq_line: alloc::boxed::Box::new(move |n| {
            (n == 48).then(|| l2.clone() as Arc<dyn axdevice_base::IrqLine>)
        }),
        disks,
        ..crate::VmPlatform::none()
    };
    let script = Arc::new(Script {
        exits: Mutex::new(exits),
        ..Script::default()
    });
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let vm = Vm::new(
        axvmconfig::from_toml(&text).unwrap(),
        HostFrames,
        &|name| (name == "k").then_some(&b"kern"[..]),
        Arc::new(move |l: &str| sink.lock().push(l.to_string())),
        &move |_| script.clone(),
        platform,
    );
    (vm, line, lines)
}

fn virtio_write(off: usize, value: u32) -> VmExit {
    VmExit::MmioWrite {
        gpa: gpa(0x0a00_0000 + off),
        width: AccessWidth::Word,
        value: u64::from(value),
    }
}

/// The guest's RAM as devices see it: RAM regions only, checked, never a fault.
#[test]
fn guest_ram_refuses_what_is_not_ram() {
    use axdevice_base::{GuestMemory, GuestMemoryError};
    let (vm, _, _) = virtio_vm(Vec::new(), "irq = 48");
    let vm = vm.unwrap();
    let ram = crate::guest_ram::GuestRam::new(vm.aspace.clone(), vm.config());
    ram.write(0x4000_2000, b"abc").unwrap();
    let mut buf = [0u8; 3];
    ram.read(0x4000_2000, &mut buf).unwrap();
    assert_eq!(&buf, b"abc");
    let end = 0x4010_0000;
    assert_eq!(ram.read(end - 2, &mut buf), Err(GuestMemoryError::NotRam));
    assert_eq!(ram.read(end, &mut buf), Err(GuestMemoryError::NotRam));
    assert_eq!(
        ram.read(0x0900_0000, &mut buf),
        Err(GuestMemoryError::NotRam)
    );
    assert_eq!(
        ram.write(0x5000_0000, b"x"),
        Err(GuestMemoryError::NotRam),
        "ROM"
    );
    assert_eq!(
        ram.read(u64::MAX - 1, &mut buf),
        Err(GuestMemoryError::Overflow)
    );
    // A virtio device without an interrupt is refused with the VM.
    let Err(VmError::Device {
        error: crate::DeviceError::NeedsIrq,
        ..
    }) = virtio_vm(Vec::new(), "").0
    else {
        panic!("a virtio device needs an irq");
    };
}

/// A driver's bring-up and one transmit chain through the VM's MMIO exits: the bytes
/// reach the VM's labelled console, the interrupt goes up; console input goes to the
/// virtio-console (not the PL011), and a VM reset resets the device.
#[test]
fn virtio_console_through_mmio_exits() {
    let ok = 1 | 2 | 8 | 4;
    let (desc, avail, used) = (0x4000_8000u64, 0x4000_9000u64, 0x4000_a000u64);
    let mut exits = std::vec![
        virtio_write(0x70, 1 | 2),
        virtio_write(0x24, 1),
        virtio_write(0x20, 1), // VIRTIO_F_VERSION_1
        virtio_write(0x70, 1 | 2 | 8),
        virtio_write(0x30, 1),
        virtio_write(0x38, 4),
    ];
    for (reg, a) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
        exits.push(virtio_write(reg, a as u32));
    }
    exits.push(virtio_write(0x44, 1));
    exits.push(virtio_write(0x70, ok));
    exits.push(virtio_write(0x50, 1));
    exits.push(VmExit::Halt);
    let (vm, line, lines) = virtio_vm(exits, "irq = 48");
    let vm = vm.unwrap();
    {
        let mut a = vm.aspace.lock();
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&0x4000_c000u64.to_le_bytes());
        d[8..12].copy_from_slice(&6u32.to_le_bytes());
        a.write(gpa(desc as usize), &d).unwrap();
        a.write(gpa(0x4000_c000), b"hvc0!\n").unwrap();
        a.write(gpa(avail as usize), &[0, 0, 1, 0, 0, 0]).unwrap();
    }
    vm.boot(&[]).unwrap();
    let event = vm.run_vcpu(0);
    assert!(matches!(event, Ok(VcpuEvent::Halt)), "{event:?}");
    assert_eq!(lines.lock().as_slice(), ["[t] hvc0!"]);
    assert_eq!(line.0.lock().last(), Some(&true));
    let mut idx = [0u8; 2];
    vm.read_guest(gpa(used as usize + 2), &mut idx).unwrap();
    assert_eq!(idx, [1, 0]);
    // Input goes to the virtio-console's buffer (4096 bytes), not the PL011's FIFO (32).
    assert_eq!(vm.feed_console(&[b'x'; 100]), Some(100));
    vm.reset().unwrap();
    assert_eq!(line.0.lock().last(), Some(&false));
}

/// A `virtio-blk` entry: its backing comes from the platform's opener (read-only as the
/// config says), and an opener's refusal or none at all refuses the VM with one line naming
/// the device and file.
#[test]
fn virtio_blk_backing_from_the_platform() {
    let blk = "irq = 48\n[[devices]]\nkind = \"virtio-blk\"\nbase = 0x0b00_0000\nirq = 48\n\
               file = \"/vms/disk.img\"\nread_only = true";
    let opened = Arc::new(Mutex::new(Vec::new()));
    let seen = opened.clone();
    let (vm, _, _) = virtio_vm_with(
        Vec::new(),
        blk,
        Box::new(move |d| {
            seen.lock().push((d.source.to_string(), d.read_only));
            Ok(Box::new(axvirtio_blk::MemBacking::new(8 * 512)))
        }),
    );
    assert!(vm.is_ok());
    assert_eq!(*opened.lock(), [("/vms/disk.img".to_string(), true)]);

    // The platform's line names the file; the VM's line adds the device, not the file again.
    let (vm, _, _) = virtio_vm_with(
        Vec::new(),
        blk,
        Box::new(|_| {
            Err(crate::DiskOpenError::File(
                "/vms/disk.img: no such file or directory".into(),
            ))
        }),
    );
    let Err(e @ VmError::Device { .. }) = vm else {
        panic!("an unopenable backing refuses the VM");
    };
    assert_eq!(
        e.to_string(),
        "device: virtio-blk at 0xb000000: /vms/disk.img: no such file or directory"
    );
    let region = axvmconfig::DiskRegion {
        disk: "data".into(),
        place: axvmconfig::RegionPlace::Bytes {
            offset: 0x800,
            size: 0x1000,
        },
    };
    let (vm, _, _) = virtio_vm_with(
        Vec::new(),
        blk,
        Box::new(move |_| {
            Err(crate::DiskOpenError::Region {
                region: region.clone(),
                error: axvirtio_blk::HostRegionError::PastEnd { disk_bytes: 0x1000 },
            })
        }),
    );
    let Err(e @ VmError::Device { .. }) = vm else {
        panic!("a region past the disk's end refuses the VM");
    };
    assert_eq!(
        e.to_string(),
        "device: virtio-blk at 0xb000000: disk \"data\" bytes 0x800..0x1800: runs past the end of the disk (0x1000 bytes)"
    );
    let Err(e @ VmError::Device { .. }) = virtio_vm(Vec::new(), blk).0 else {
        panic!("no opener refuses the VM");
    };
    assert_eq!(
        e.to_string(),
        "device: virtio-blk at 0xb000000: no disk is available to VMs on this platform"
    );
}

/// A `virtio-net` entry: its switch comes from the platform by name and each device claims
/// a port of it for as long as its VM lives; no switch, or a full one, refuses the VM with
/// one line naming the device.
#[test]
fn virtio_net_ports_from_the_platform() {
    let lan =
        axvirtio_net::NetSwitch::new("lan", axvirtio_net::SwitchConfig::with_ports(2)).unwrap();
    let net = "irq = 48\n[[devices]]\nkind = \"virtio-net\"\nbase = 0x0b00_0000\nirq = 48\n\
               switch = \"lan\"";
    let build = |switches: crate::SwitchFinder| {
        let text = CONFIG.replace(
            "[[devices]]\nkind = \"pl011\"",
            &std::format!("[[devices]]\nkind = \"virtio-console\"\nbase = 0x0a00_0000\n{net}\n[[devices]]\nkind = \"pl011\""),
        );
        let line = Arc::new(Line(Mutex::new(Vec::new())));
        let platform = crate::VmPlatform {
            irq_line: Box::new(move |n| {
                (n == 48).then(|| line.clone() as Arc<dyn axdevice_base::IrqLine>)
            }),
            switches,
            ..crate::VmPlatform::none()
        };
        Vm::new(
            axvmconfig::from_toml(&text).unwrap(),
            HostFrames,
            &|name| (name == "k").then_some(&b"kern"[..]),
            Arc::new(|_: &str| {}),
            &|_| Arc::new(Script::default()),
            platform,
        )
    };
    let finder = || -> crate::SwitchFinder {
        let lan = lan.clone();
        Box::new(move |name| (name == "lan").then(|| lan.clone()))
    };
    let a = build(finder()).unwrap();
    let b = build(finder()).unwrap();
    assert_eq!(lan.claimed(), 2);
    let Err(e @ VmError::Device { .. }) = build(finder()) else {
        panic!("a full switch refuses the VM");
    };
    assert_eq!(
        e.to_string(),
        "device: virtio-net at 0xb000000: switch \"lan\" has all its 2 ports in use"
    );
    drop(a);
    assert_eq!(lan.claimed(), 1, "a VM's port is freed with it");
    drop(b);
    let Err(e @ VmError::Device { .. }) = build(Box::new(|_| None)) else {
        panic!("no switch refuses the VM");
    };
    assert_eq!(
        e.to_string(),
        "device: virtio-net at 0xb000000: no virtual switch is available on this platform"
    );
}

/// Frames a platform shares between two VMs (a link's memory) are normal memory, read and
/// write but not execute, at each VM's own address: what one guest writes the other reads.
#[test]
fn shared_memory_is_the_same_frames_in_both_vms() {
    let frames = HostFrames.alloc_frames(2, 4096).unwrap();
    let build = |at: u64| {
        let platform = crate::VmPlatform {
            shared_memory: std::vec![crate::DeviceMap {
                what: "link shared memory",
                gpa: at,
                hpa: frames.as_usize() as u64,
                size: 0x2000,
            }],
            ..crate::VmPlatform::none()
        };
        Vm::new(
            axvmconfig::from_toml(CONFIG).unwrap(),
            HostFrames,
            &|name| (name == "k").then_some(&b"kern"[..]),
            Arc::new(|_: &str| {}),
            &|_| Arc::new(Script::default()),
            platform,
        )
        .unwrap()
    };
    let (a, b) = (build(0x5000_0000), build(0x6000_0000));
    a.aspace.lock().write(gpa(0x5000_1ffc), b"ping").unwrap();
    let mut got = [0u8; 4];
    b.aspace.lock().read(gpa(0x6000_1ffc), &mut got).unwrap();
    assert_eq!(&got, b"ping");
    let (hpa, flags, _) = b.aspace.lock().translate(gpa(0x6000_1000)).unwrap();
    assert_eq!(hpa.as_usize(), frames.as_usize() + 0x1000);
    assert_eq!(flags, MappingFlags::READ | MappingFlags::WRITE);
}

#[test]
fn memory_and_load_errors_say_each_fact_once() {
    use axaddrspace::{AccessError, AddrSpaceError};
    let e = VmError::Memory {
        index: 1,
        gpa: 0x4000_0000,
        size: 2 << 30,
        error: AddrSpaceError::EmptyRegion,
    };
    assert_eq!(
        e.to_string(),
        "guest memory: memory[1] (2097152 KiB at 0x40000000): region of size 0"
    );
    let gpa = GuestPhysAddr::new(0x4800_0000);
    let unmapped = AccessError::Unmapped { gpa };
    let e = VmError::Load {
        what: crate::LoadWhat::BootData(0x4800_0000),
        error: unmapped,
    };
    assert_eq!(
        e.to_string(),
        alloc::format!("loading boot data at 0x48000000: guest address {gpa} is not mapped")
    );
    let e = VmError::Load {
        what: crate::LoadWhat::Image("kernel".into()),
        error: unmapped,
    };
    assert_eq!(
        e.to_string(),
        alloc::format!("loading image \"kernel\": guest address {gpa} is not mapped")
    );
}
