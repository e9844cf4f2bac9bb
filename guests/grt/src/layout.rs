//! Where every test guest is linked and how big its stack is: the one place these numbers
//! live. `build.rs` includes this file too (through `#[path]`) to fill in the linker
//! script, so the script and the Rust constants cannot disagree.

/// Guest RAM base on aarch64 (QEMU `virt`'s RAM base); guests are linked and entered here.
pub const AARCH64_RAM_BASE: u64 = 0x4000_0000;

/// Guest RAM base on riscv64 (QEMU `virt`'s RAM base); guests are linked and entered here.
pub const RISCV64_RAM_BASE: u64 = 0x8000_0000;

/// Guest RAM base on x86_64: RAM starts at guest-physical 0, as on a PC (docs/x86.md,
/// "Guest entry contract").
pub const X86_64_RAM_BASE: u64 = 0;

/// Where x86_64 guests are linked, loaded and entered: 2 MiB into RAM, above the pages the
/// hypervisor writes its boot GDT and page tables to (0x1000..0x8000).
pub const X86_64_IMAGE_BASE: u64 = 0x20_0000;

/// Size of the boot stack, which lives at the end of `.bss`.
pub const STACK_SIZE: u64 = 64 * 1024;

/// Size of the guest RAM every test VM config gives its guest: 16 MiB at the RAM base
/// (`[[memory]] size = 0x100_0000` in `configs/vms/<arch>-<guest>.toml`).
pub const RAM_SIZE: u64 = 16 * 1024 * 1024;
