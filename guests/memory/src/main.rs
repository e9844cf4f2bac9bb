//! Checks the VM's RAM: every 64-bit word from the end of the guest's own image (code,
//! data, `.bss` and stack) to the end of its RAM (`grt::RAM_BASE + grt::RAM_SIZE`, 16 MiB
//! in every config) must read as zero at boot; then each gets an address-derived value and
//! all are read back; then the same with every value inverted. Writing everything before reading anything back also catches
//! two addresses backed by the same memory. Then the ROM: its configs load a copy of this
//! guest's image (`kernel.initrd`) into a `kind = "rom"` region at [`ROM_BASE`]; it must
//! hold the image, and a store to it must fault and change nothing. Prints the first
//! mismatch and `FAIL memory`, or `PASS memory`.
#![no_std]
#![no_main]

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU64, Ordering};
use grt::trap::{DataFault, FaultAction};

/// Where the configs put the ROM (`configs/vms/<arch>-memory.toml`): 256 MiB above RAM.
const ROM_BASE: u64 = grt::RAM_BASE + 0x1000_0000;

/// Bytes of the image compared with the ROM's copy: the start of its code, which nothing
/// writes.
const ROM_CHECKED: u64 = 256;

/// The address of the last store fault the ROM check saw (0: none).
static ROM_FAULT: AtomicU64 = AtomicU64::new(0);

/// Data faults during the ROM check: a store to the ROM is expected and skipped.
fn rom_fault(f: &DataFault) -> FaultAction {
    if f.is_write && f.addr == ROM_BASE {
        ROM_FAULT.store(f.addr, Ordering::SeqCst);
        FaultAction::Skip
    } else {
        FaultAction::Fail
    }
}

/// x86_64: the address of the store to the ROM (set by [`store_to_rom`]).
#[cfg(target_arch = "x86_64")]
static ROM_STORE_AT: AtomicU64 = AtomicU64::new(0);

/// x86_64: the fault for the store is a #GP(0) at the instruction (no address): taken as
/// the ROM store's when it comes at that store (not after it).
#[cfg(target_arch = "x86_64")]
fn rom_gp(e: &grt::trap::Exception) -> FaultAction {
    if e.vector == 13 && e.error_code == 0 && e.rip == ROM_STORE_AT.load(Ordering::SeqCst) {
        ROM_FAULT.store(ROM_BASE, Ordering::SeqCst);
        FaultAction::Skip
    } else {
        FaultAction::Fail
    }
}

/// Stores `value` at [`ROM_BASE`]: the store must fault, and the handler skips it.
#[cfg(not(target_arch = "x86_64"))]
fn store_to_rom(value: u64) {
    // SAFETY: the ROM is mapped; the store faults and the handler skips it.
    unsafe { write_volatile(ROM_BASE as *mut u64, value) };
}

/// Stores `value` at [`ROM_BASE`] with one `mov`, whose address goes to [`ROM_STORE_AT`]
/// first: the #GP(0) must come there.
#[cfg(target_arch = "x86_64")]
fn store_to_rom(value: u64) {
    // SAFETY: writes the store's address to ROM_STORE_AT (a static of this guest), then
    // stores to the ROM, which faults; the handler skips the store. Only `t` is written.
    unsafe {
        core::arch::asm!(
            "lea {t}, [rip + 2f]",
            "mov qword ptr [{slot}], {t}",
            "2: mov qword ptr [{rom}], {v}",
            t = out(reg) _,
            slot = in(reg) ROM_STORE_AT.as_ptr(),
            rom = in(reg) ROM_BASE,
            v = in(reg) value,
            options(nostack, preserves_flags)
        )
    };
}

/// Checks the ROM: it holds this guest's image, and the guest cannot write it (the store
/// gets a data fault under the VM's `fault` policy, and the ROM keeps its contents).
fn check_rom() -> Result<(), &'static str> {
    let mut off = 0;
    while off < ROM_CHECKED {
        // SAFETY: both are mapped for reading: the image at IMAGE_BASE, the ROM its config
        // gives this VM; 8-byte aligned.
        let (rom, ram) = unsafe {
            (
                read_volatile((ROM_BASE + off) as *const u64),
                read_volatile((grt::IMAGE_BASE + off) as *const u64),
            )
        };
        if rom != ram {
            return Err("the ROM does not hold the image");
        }
        off += 8;
    }
    // SAFETY: as above.
    let before = unsafe { read_volatile(ROM_BASE as *const u64) };
    grt::trap::set_data_fault_handler(Some(rom_fault));
    #[cfg(target_arch = "x86_64")]
    grt::trap::set_exception_handler(Some(rom_gp));
    store_to_rom(!before);
    grt::trap::set_data_fault_handler(None);
    #[cfg(target_arch = "x86_64")]
    grt::trap::set_exception_handler(None);
    if ROM_FAULT.load(Ordering::SeqCst) != ROM_BASE {
        return Err("a store to the ROM did not fault");
    }
    // SAFETY: as above.
    if unsafe { read_volatile(ROM_BASE as *const u64) } != before {
        return Err("a store to the ROM changed it");
    }
    Ok(())
}

/// A value unique to each word address (an odd multiplier is a bijection on `u64`), with
/// bits set in both halves.
fn pattern(addr: u64) -> u64 {
    addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ addr
}

/// The first word whose value differs: (address, got, expected).
type Mismatch = (u64, u64, u64);

/// The value a pass writes to the word at an address.
type Pattern = fn(u64) -> u64;

/// Checks that every word of `[start, end)` is zero.
fn zero(start: u64, end: u64) -> Result<(), Mismatch> {
    let mut a = start;
    while a < end {
        // SAFETY: as in `pass`.
        let got = unsafe { read_volatile(a as *const u64) };
        if got != 0 {
            return Err((a, got, 0));
        }
        a += 8;
    }
    Ok(())
}

/// Writes `value(addr)` to every word of `[start, end)`, then checks them all.
fn pass(start: u64, end: u64, value: impl Fn(u64) -> u64) -> Result<(), Mismatch> {
    let mut a = start;
    while a < end {
        // SAFETY: [start, end) is this VM's RAM above its image and stack (see `main`),
        // which nothing else uses; `a` is 8-byte aligned.
        unsafe { write_volatile(a as *mut u64, value(a)) };
        a += 8;
    }
    let mut a = start;
    while a < end {
        // SAFETY: as above.
        let got = unsafe { read_volatile(a as *const u64) };
        if got != value(a) {
            return Err((a, got, value(a)));
        }
        a += 8;
    }
    Ok(())
}

#[no_mangle]
fn main() {
    // The image ends 16-byte aligned; start on the next page anyway, so a stray write past
    // the stack would not be hidden by the pattern.
    let start = (grt::image_end() + 0xfff) & !0xfff;
    let end = grt::RAM_BASE + grt::RAM_SIZE;
    if start >= end {
        grt::fail(
            "memory",
            format_args!("image end {start:#x} beyond RAM end {end:#x}"),
        );
        return;
    }
    grt::println!(
        "memory: testing [{start:#x}, {end:#x}) ({} KiB) in 64-bit words",
        (end - start) / 1024
    );
    // The hypervisor zeroes a VM's RAM before the guest sees it (docs/addrspace.md): nothing
    // of the hypervisor's or another VM's data shows through.
    if let Err((addr, got, _)) = zero(start, end) {
        grt::fail(
            "memory",
            format_args!("RAM not zeroed at boot: at {addr:#x}: got {got:#018x}"),
        );
        return;
    }
    grt::println!("memory: zero at boot: ok");
    let passes: [(&str, Pattern); 2] =
        [("address pattern", pattern), ("inverted", |a| !pattern(a))];
    for (name, value) in passes {
        if let Err((addr, got, want)) = pass(start, end, value) {
            grt::fail(
                "memory",
                format_args!("{name}: at {addr:#x}: got {got:#018x}, expected {want:#018x}"),
            );
            return;
        }
        grt::println!("memory: {name}: ok");
    }
    if let Err(why) = check_rom() {
        grt::fail("memory", format_args!("rom: {why}"));
        return;
    }
    grt::println!("memory: rom: holds the image, read-only: ok");
    grt::pass("memory");
}
