//! The checks (see the crate documentation).

use core::sync::atomic::{AtomicU64, Ordering};

use grt::check::Checker;
use grt::irq::{self, Irq};
use grt::trap::{set_exception_handler, Exception, FaultAction};
use grt::x86::{cpuid, read_msr, xapic_read, xapic_write};

/// Periodic timer interrupts counted before the timer is stopped.
const TICKS: u64 = 5;
/// The periodic timer's period and the one-shot delay, in microseconds.
const PERIOD_US: u64 = 2000;
/// How long a wait for an interrupt may take before it counts as lost.
const WAIT_US: u64 = 2_000_000;
/// The start-up vector: the trampoline runs at physical `SIPI_VECTOR << 12`.
const SIPI_VECTOR: u8 = 9;
/// Where the trampoline writes its marker (word) and its CS (word).
const MARKER_ADDR: usize = 0x9100;
/// The marker.
const MARKER: u16 = 0x1234;

/// xAPIC registers used here (offsets in the page).
const ID: usize = 0x20;
const VERSION: usize = 0x30;
const ICR_LOW: usize = 0x300;
const ICR_HIGH: usize = 0x310;
const LVT_TIMER: usize = 0x320;
const TIMER_INITIAL: usize = 0x380;
const TIMER_CURRENT: usize = 0x390;
const TIMER_DIVIDE: usize = 0x3e0;
/// LVT timer mode: periodic.
const PERIODIC: u32 = 1 << 17;
/// Divide configuration: divide by 1.
const DIVIDE_BY_1: u32 = 0xb;
/// ICR: destination shorthand "self"; delivery modes INIT (level assert) and start-up.
const ICR_SELF: u32 = 1 << 18;
const ICR_INIT: u32 = (5 << 8) | (1 << 14);
const ICR_STARTUP: u32 = 6 << 8;
/// ICR delivery mode NMI (physical destination in ICR high).
const ICR_NMI: u32 = 4 << 8;
/// The NMI's vector.
const NMI_VECTOR: u8 = 2;

/// The PIT's ports and its channel 0 reload for about 1 ms (1.193182 MHz).
const PIT_CH0: u16 = 0x40;
const PIT_CONTROL: u16 = 0x43;
const PIT_RELOAD: u16 = 1193;
/// The PIT's I/O APIC input (ISA IRQ 0, overridden to GSI 2 on a PC).
const PIT_GSI: u32 = 2;
/// The PM1a control register, and the S5 power-off value written to it.
const PM1A_CNT: u16 = 0x604;
const PM1_S5: u16 = (5 << 10) | (1 << 13);

/// The real-mode trampoline vCPU 1 starts in: `mov ax, 0x1234; mov [0x9100], ax;
/// mov ax, cs; mov [0x9102], ax; cli; hlt; jmp .-3` (DS = 0).
const TRAMPOLINE: [u8; 15] = [
    0xb8, 0x34, 0x12, // mov ax, 0x1234
    0xa3, 0x00, 0x91, // mov [0x9100], ax
    0x8c, 0xc8, // mov ax, cs
    0xa3, 0x02, 0x91, // mov [0x9102], ax
    0xfa, // cli
    0xf4, // hlt
    0xeb, 0xfd, // jmp back to the hlt
];

static TIMER: AtomicU64 = AtomicU64::new(0);
static TIMER_AT: [AtomicU64; TICKS as usize + 1] =
    [const { AtomicU64::new(0) }; TICKS as usize + 1];
static IPI: AtomicU64 = AtomicU64::new(0);
static PIT: AtomicU64 = AtomicU64::new(0);
static OTHER: AtomicU64 = AtomicU64::new(0);
static NMI: AtomicU64 = AtomicU64::new(0);

/// Counts NMIs (vector 2) and resumes where they interrupted; any other exception fails.
fn on_exception(e: &Exception) -> FaultAction {
    if e.vector != NMI_VECTOR {
        return FaultAction::Fail;
    }
    NMI.store(NMI.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    FaultAction::Retry
}

fn on_irq(irq: Irq) {
    let bump = |c: &AtomicU64| c.store(c.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    match irq {
        Irq::Timer => {
            let n = TIMER.load(Ordering::SeqCst) as usize;
            if let Some(at) = TIMER_AT.get(n) {
                at.store(irq::timer_now(), Ordering::SeqCst);
            }
            bump(&TIMER);
        }
        Irq::Ipi => bump(&IPI),
        Irq::External(PIT_GSI) => bump(&PIT),
        Irq::External(_) => bump(&OTHER),
    }
}

/// Halts until `done()` or [`WAIT_US`] passed; returns whether `done()` held.
fn wait_for(done: impl Fn() -> bool) -> bool {
    let end = irq::timer_now() + irq::timer_freq() * WAIT_US / 1_000_000;
    irq::disable();
    while !done() && irq::timer_now() < end {
        grt::wait_for_interrupt();
    }
    irq::enable();
    done()
}

/// The local APIC timer's input clock in Hz: the hypervisor's timing leaf (EBX, kHz).
fn bus_hz() -> u64 {
    u64::from(cpuid(0x4000_0010, 0)[1]) * 1000
}

fn cpuid_and_registers(c: &mut Checker) {
    let [_, _, ecx, edx] = cpuid(1, 0);
    c.ok("CPUID: APIC", edx & (1 << 9) != 0);
    c.ok("CPUID: x2APIC", ecx & (1 << 21) != 0);
    c.ok("CPUID: TSC-deadline timer", ecx & (1 << 24) != 0);
    c.ok("CPUID: the APIC timer's bus clock", bus_hz() != 0);
    c.eq("IA32_APIC_BASE", read_msr(0x1b), 0xfee0_0900);
    c.eq("APIC ID register", xapic_read(ID), 0);
    c.eq("APIC version register", xapic_read(VERSION), 0x0005_0014);
    grt::println!(
        "apic: xAPIC at 0xfee00000, id 0, version 0x14, bus clock {} kHz",
        bus_hz() / 1000
    );
}

fn timer(c: &mut Checker) {
    let count = (bus_hz() * PERIOD_US / 1_000_000) as u32;
    xapic_write(TIMER_DIVIDE, DIVIDE_BY_1);
    // One-shot.
    xapic_write(LVT_TIMER, u32::from(grt::x86::TIMER_VECTOR));
    let start = irq::timer_now();
    xapic_write(TIMER_INITIAL, count);
    c.ok(
        "one-shot: interrupt",
        wait_for(|| TIMER.load(Ordering::SeqCst) == 1),
    );
    let took = TIMER_AT[0].load(Ordering::SeqCst).saturating_sub(start);
    c.ok(
        "one-shot: not before its count ran out",
        took >= irq::timer_freq() * PERIOD_US / 1_000_000,
    );
    c.eq(
        "one-shot: current count after it fired",
        xapic_read(TIMER_CURRENT),
        0,
    );
    grt::println!("apic: one-shot timer fired once");
    // Periodic: the n-th interrupt comes n periods after the start at the earliest (late
    // ones do not move the grid).
    xapic_write(LVT_TIMER, PERIODIC | u32::from(grt::x86::TIMER_VECTOR));
    let start = irq::timer_now();
    xapic_write(TIMER_INITIAL, count);
    c.ok(
        "periodic: interrupts",
        wait_for(|| TIMER.load(Ordering::SeqCst) > TICKS),
    );
    xapic_write(TIMER_INITIAL, 0);
    let last = TIMER_AT[TICKS as usize].load(Ordering::SeqCst);
    c.ok(
        format_args!("periodic: {TICKS} interrupts, not before {TICKS} periods"),
        last.saturating_sub(start) >= TICKS * irq::timer_freq() * PERIOD_US / 1_000_000,
    );
    let seen = TIMER.load(Ordering::SeqCst);
    spin_us(4 * PERIOD_US);
    c.eq(
        "periodic: interrupts after stopping",
        TIMER.load(Ordering::SeqCst),
        seen,
    );
    grt::println!("apic: periodic timer ticked {TICKS} times and stopped");
}

fn spin_us(us: u64) {
    let end = irq::timer_now() + irq::timer_freq() * us / 1_000_000;
    while irq::timer_now() < end {
        core::hint::spin_loop();
    }
}

fn self_ipi(c: &mut Checker) {
    xapic_write(ICR_LOW, ICR_SELF | u32::from(grt::x86::IPI_VECTOR));
    c.ok(
        "self-IPI arrives",
        wait_for(|| IPI.load(Ordering::SeqCst) == 1),
    );
    grt::println!("apic: self-IPI arrived");
}

/// Two NMIs to itself (ICR delivery mode NMI, physical destination 0), the second after the
/// first's handler returned: both arrive, even with interrupts masked.
fn nmi(c: &mut Checker) {
    set_exception_handler(Some(on_exception));
    irq::disable();
    for n in 1..=2 {
        xapic_write(ICR_HIGH, 0);
        xapic_write(ICR_LOW, ICR_NMI);
        let end = irq::timer_now() + irq::timer_freq() * WAIT_US / 1_000_000;
        while NMI.load(Ordering::SeqCst) < n && irq::timer_now() < end {
            core::hint::spin_loop();
        }
    }
    irq::enable();
    set_exception_handler(None);
    c.eq(
        "NMIs taken with interrupts masked",
        NMI.load(Ordering::SeqCst),
        2,
    );
    grt::println!("apic: 2 NMIs to itself arrived, interrupts masked");
}

fn pit(c: &mut Checker) {
    irq::external_enable(PIT_GSI);
    // SAFETY: the VM's PIT: channel 0, LSB then MSB, mode 2 (rate generator), binary.
    unsafe {
        grt::pio::outb(PIT_CONTROL, 0x34);
        grt::pio::outb(PIT_CH0, PIT_RELOAD as u8);
        grt::pio::outb(PIT_CH0, (PIT_RELOAD >> 8) as u8);
    }
    c.ok(
        "PIT interrupts through I/O APIC input 2",
        wait_for(|| PIT.load(Ordering::SeqCst) >= 3),
    );
    irq::external_disable(PIT_GSI);
    grt::println!("apic: PIT channel 0 interrupted through I/O APIC input 2");
}

/// CMOS RTC index and data ports, and the general-purpose CMOS RAM byte used here.
const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
const CMOS_SCRATCH: u8 = 0x40;

/// `OUTSB` and `REP INSB` reach the virtual PC's CMOS RTC like `OUT` and `IN` do.
fn string_io(c: &mut Checker) {
    let out = [CMOS_SCRATCH, 0xa5];
    let mut back = [0u8; 2];
    // SAFETY: the VM's CMOS index and data ports; OUTSB reads one byte at RSI, REP INSB
    // writes RCX bytes at RDI, both within the local arrays (DF is clear).
    unsafe {
        core::arch::asm!("outsb", in("dx") CMOS_INDEX, inout("rsi") out.as_ptr() => _, options(nostack, readonly));
        core::arch::asm!("outsb", in("dx") CMOS_DATA, inout("rsi") out.as_ptr().add(1) => _, options(nostack, readonly));
        grt::pio::outb(CMOS_INDEX, CMOS_SCRATCH);
        c.eq("OUTSB wrote the CMOS byte", grt::pio::inb(CMOS_DATA), 0xa5);
        grt::pio::outb(CMOS_INDEX, CMOS_SCRATCH);
        core::arch::asm!("rep insb", in("dx") CMOS_DATA, inout("rdi") back.as_mut_ptr() => _, inout("rcx") back.len() => _, options(nostack));
    }
    c.eq(
        "REP INSB read the CMOS byte twice",
        u16::from_le_bytes(back),
        0xa5a5,
    );
    grt::println!("apic: OUTSB and REP INSB reached the CMOS RTC");
}

fn init_sipi(c: &mut Checker) {
    let entry = usize::from(SIPI_VECTOR) << 12;
    // SAFETY: guest RAM below the image, not used by grt (the boot tables end at 0x8000).
    unsafe {
        core::ptr::copy_nonoverlapping(TRAMPOLINE.as_ptr(), entry as *mut u8, TRAMPOLINE.len());
        core::ptr::write_volatile(MARKER_ADDR as *mut u32, 0);
    }
    xapic_write(ICR_HIGH, 1 << 24);
    xapic_write(ICR_LOW, ICR_INIT);
    xapic_write(ICR_LOW, ICR_STARTUP | u32::from(SIPI_VECTOR));
    // SAFETY: the marker words the trampoline writes (plain RAM).
    let read = |i: usize| unsafe { core::ptr::read_volatile((MARKER_ADDR + 2 * i) as *const u16) };
    let started = {
        let end = irq::timer_now() + irq::timer_freq() * WAIT_US / 1_000_000;
        while read(0) != MARKER && irq::timer_now() < end {
            core::hint::spin_loop();
        }
        read(0) == MARKER
    };
    c.ok("INIT-SIPI: vcpu 1 ran the trampoline", started);
    c.eq(
        "INIT-SIPI: vcpu 1's CS",
        read(1),
        u16::from(SIPI_VECTOR) << 8,
    );
    grt::println!("apic: INIT-SIPI started vcpu 1 in real mode at CS 0x0900");
}

pub fn run() {
    let mut c = Checker::new("apic");
    irq::set_handler(Some(on_irq));
    grt::x86::init_cpu_xapic();
    irq::enable();
    cpuid_and_registers(&mut c);
    timer(&mut c);
    self_ipi(&mut c);
    nmi(&mut c);
    pit(&mut c);
    string_io(&mut c);
    init_sipi(&mut c);
    irq::disable();
    c.eq("other interrupts", OTHER.load(Ordering::SeqCst), 0);
    if c.finish() {
        grt::println!("apic: powering off through ACPI PM1 (S5)");
        // SAFETY: the VM's PM1a control register: the S5 write powers the VM off.
        unsafe { grt::pio::outw(PM1A_CNT, PM1_S5) };
        grt::fail("apic", "still running after the PM1 S5 write");
    }
}
