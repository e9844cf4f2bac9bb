//! A table of malformed VM configs through `cargo xtask vmconfig check`'s code (parse,
//! validate, the platform's host facts, `--cpus`, images on a `--disk`), each field of the
//! format broken in the ways a user gets it wrong: every problem must be one line naming
//! the file, the field (or for TOML syntax, the line and column) and the reason, and
//! nothing may panic. The hypervisor prints the same texts at boot and on `vm create`
//! (`vm config FILE: ...`), from the same `axvmconfig` code.

use super::*;

/// How a case changes its architecture's `configs/vms/<arch>-hello.toml`.
#[derive(Clone, Copy)]
enum Edit {
    /// Replace the first occurrence of the text (which must be there).
    Replace(&'static str, &'static str),
    /// Append TOML at the end (after `[unclaimed]`, so a new table or array entry).
    Append(&'static str),
    /// The whole file.
    Whole(&'static str),
}

use Edit::{Append, Replace, Whole};

/// A case: its file name (without `.toml`), the architecture, the edit, and the lines
/// `check` prints for it, each without its leading `NAME.toml: `.
type Case = (&'static str, &'static str, Edit, &'static [&'static str]);

/// An emulated interrupt controller for the aarch64 cases that need one.
const GICD: &str = "[[devices]]\nkind = \"gicd\"\nbase = 0x0800_0000\nsize = 0x1_0000\n";

const CASES: &[Case] = &[
    // TOML syntax and shape.
    ("syntax-no-value", "aarch64", Replace("id = 1", "id ="), &[
        "line 3, column 5: string values must be quoted, expected literal string",
    ]),
    ("syntax-table", "aarch64", Replace("[cpus]", "[cpus"), &[
        "line 6, column 6: unclosed table, expected `]`",
    ]),
    ("syntax-string", "aarch64", Replace("name = \"hello\"", "name = \"hello"), &[
        "line 4, column 14: invalid basic string, expected `\"`",
    ]),
    ("duplicate-key", "aarch64", Replace("id = 1", "id = 1\nid = 2"), &[
        "line 4, column 1: duplicate key `id`: a key may be given once",
    ]),
    ("empty", "aarch64", Whole(""), &["line 1, column 1: missing field `id`"]),
    ("binary", "aarch64", Whole("\u{1}\u{2}"), &[
        "line 1, column 3: key with no value, expected `=`",
    ]),
    ("unknown-table", "aarch64", Append("[cpu]\ncount = 1\n"), &[
        "line 29, column 2: unknown field `cpu`, expected one of `id`, `name`, `cpus`, `kernel`, `memory`, `devices`, `passthrough`, `unclaimed`, `links`",
    ]),
    ("unknown-field", "aarch64", Replace("count = 1", "count = 1\npins = [1]"), &[
        "line 8, column 1: in `cpus`: unknown field `pins`, expected `count` or `pin`",
    ]),
    // id and name.
    ("id-missing", "aarch64", Replace("id = 1\n", ""), &["line 1, column 1: missing field `id`"]),
    ("id-string", "aarch64", Replace("id = 1", "id = \"one\""), &[
        "line 3, column 6: in `id`: invalid type: string \"one\", expected u32",
    ]),
    ("id-negative", "aarch64", Replace("id = 1", "id = -1"), &[
        "line 3, column 6: in `id`: invalid value: integer `-1`, expected u32",
    ]),
    ("id-huge", "aarch64", Replace("id = 1", "id = 0x1_0000_0000"), &[
        "line 3, column 6: in `id`: invalid value: integer `4294967296`, expected u32",
    ]),
    ("name-empty", "aarch64", Replace("name = \"hello\"", "name = \"\""), &[
        "name: must not be empty",
    ]),
    ("name-space", "aarch64", Replace("name = \"hello\"", "name = \"my vm\""), &[
        "name: contains ' '; only letters, digits, '_' and '-' are allowed",
    ]),
    ("name-control", "aarch64", Replace("name = \"hello\"", "name = \"a\\u0007\""), &[
        "name: contains '\\u{7}'; only letters, digits, '_' and '-' are allowed",
    ]),
    ("name-long", "aarch64", Replace("name = \"hello\"", "name = \"a123456789b123456789c123456789d12\""), &[
        "name: is 33 characters long; at most 32 are allowed",
    ]),
    ("name-number", "aarch64", Replace("name = \"hello\"", "name = 5"), &[
        "line 4, column 8: in `name`: invalid type: integer `5`, expected a string",
    ]),
    // cpus.
    ("cpus-missing", "aarch64", Replace("[cpus]\ncount = 1\npin = [1]\n", ""), &[
        "line 1, column 1: missing field `cpus`",
    ]),
    ("cpus-zero", "aarch64", Replace("count = 1\npin = [1]", "count = 0\npin = []"), &[
        "cpus.count: must be at least 1",
    ]),
    ("cpus-huge", "aarch64", Replace("count = 1", "count = 0xffff_ffff_ffff_ffff"), &[
        "cpus.pin: has 1 entry but cpus.count is 18446744073709551615; give one physical CPU per vCPU",
    ]),
    ("cpus-negative", "aarch64", Replace("count = 1", "count = -1"), &[
        "line 7, column 9: in `cpus.count`: invalid value: integer `-1`, expected usize",
    ]),
    ("pin-short", "aarch64", Replace("count = 1", "count = 2"), &[
        "cpus.pin: has 1 entry but cpus.count is 2; give one physical CPU per vCPU",
    ]),
    ("pin-unknown-cpu", "aarch64", Replace("pin = [1]", "pin = [4]"), &[
        "cpus.pin[0]: physical CPU 4 does not exist (the machine has 4)",
    ]),
    ("pin-huge-cpu", "aarch64", Replace("pin = [1]", "pin = [0xffff_ffff_ffff_ffff]"), &[
        "cpus.pin[0]: physical CPU 18446744073709551615 does not exist (the machine has 4)",
    ]),
    ("pin-not-a-list", "aarch64", Replace("pin = [1]", "pin = 1"), &[
        "line 8, column 7: in `cpus.pin`: invalid type: integer `1`, expected a sequence",
    ]),
    // kernel.
    ("kernel-no-image", "aarch64", Replace("image = \"hello\"\n", ""), &[
        "line 10, column 1: in `kernel`: missing field `image`",
    ]),
    ("kernel-empty-image", "aarch64", Replace("image = \"hello\"", "image = \"\""), &[
        "kernel.image: must not be empty",
    ]),
    ("entry-outside-ram", "aarch64", Replace("entry = 0x4000_0000", "entry = 0x1000"), &[
        "kernel.entry: 0x1000 is not inside any non-reserved memory region",
    ]),
    ("load-outside-ram", "aarch64", Replace("load_addr = 0x4000_0000", "load_addr = 0x5000_0000"), &[
        "kernel.load_addr: image `hello` at 0x50000000 is not inside any non-reserved memory region",
    ]),
    ("format-unknown", "aarch64", Replace("entry = 0x4000_0000", "format = \"elf\""), &[
        "line 13, column 10: in `kernel.format`: unknown variant `elf`, expected `raw` or `linux-bzimage`",
    ]),
    ("format-bzimage-on-arm", "aarch64", Replace("entry = 0x4000_0000", "entry = 0x4000_0200\nformat = \"linux-bzimage\""), &[
        "kernel.format: aarch64 VMs do not boot `linux-bzimage` kernels",
    ]),
    ("initrd-outside-ram", "aarch64", Replace("entry = 0x4000_0000", "initrd = { image = \"rd\", load_addr = 0x9000_0000 }"), &[
        "kernel.initrd.load_addr: image `rd` at 0x90000000 is not inside any non-reserved memory region",
    ]),
    ("initrd-no-image", "aarch64", Replace("entry = 0x4000_0000", "initrd = { load_addr = 0x4080_0000 }"), &[
        "line 13, column 10: in `kernel.initrd`: missing field `image`",
    ]),
    ("dtb-on-kernel", "aarch64", Replace("entry = 0x4000_0000", "dtb = { load_addr = 0x4000_0000 }"), &[
        "kernel.dtb: overlaps kernel ([0x40000000, 0x40000001))",
    ]),
    ("dtb-on-x86", "x86_64", Replace("entry = 0x20_0000", "dtb = { load_addr = 0x40_0000 }"), &[
        "kernel.dtb: the hypervisor generates no device tree for x86_64 VMs: give a DTB `image` or remove `kernel.dtb`",
    ]),
    // memory.
    ("memory-missing", "aarch64", Replace("[[memory]]\ngpa = 0x4000_0000\nsize = 0x100_0000          # 16 MiB\nmap = \"alloc\"\nflags = [\"read\", \"write\", \"exec\"]\n", ""), &[
        "line 1, column 1: missing field `memory`",
    ]),
    ("memory-not-an-array", "aarch64", Replace("[[memory]]", "[memory]"), &[
        "line 15, column 1: in `memory`: invalid type: map, expected a sequence",
    ]),
    ("memory-overlap", "aarch64", Append("[[memory]]\ngpa = 0x4080_0000\nsize = 0x100_0000\nmap = \"alloc\"\n"), &[
        "memory[1]: overlaps memory[0] ([0x40000000, 0x41000000))",
    ]),
    ("memory-size-zero", "aarch64", Append("[[memory]]\ngpa = 0x5000_0000\nsize = 0\nmap = \"alloc\"\n"), &[
        "memory[1].size: size must not be 0",
    ]),
    ("memory-misaligned", "aarch64", Append("[[memory]]\ngpa = 0x5000_0800\nsize = 0x1800\nmap = \"alloc\"\n"), &[
        "memory[1].gpa: 0x50000800 is not a multiple of 0x1000",
        "memory[1].size: 0x1800 is not a multiple of 0x1000",
    ]),
    ("memory-overflow", "aarch64", Append("[[memory]]\ngpa = 0xffff_ffff_ffff_f000\nsize = 0x2000\nmap = \"alloc\"\n"), &[
        "memory[1]: 0xfffffffffffff000 + size 0x2000 overflows the 64-bit address space",
    ]),
    ("memory-map", "aarch64", Replace("map = \"alloc\"", "map = \"mmap\""), &[
        "line 18, column 7: in `memory.map`: unknown variant `mmap`, expected one of `alloc`, `identity`, `reserved`",
    ]),
    ("memory-flag", "aarch64", Replace("flags = [\"read\", \"write\", \"exec\"]", "flags = [\"rw\"]"), &[
        "line 19, column 9: in `memory.flags`: unknown variant `rw`, expected one of `read`, `write`, `exec`",
    ]),
    ("memory-flag-twice", "aarch64", Replace("flags = [\"read\", \"write\", \"exec\"]", "flags = [\"read\", \"read\"]"), &[
        "line 19, column 9: in `memory.flags`: duplicate memory flag `read`",
    ]),
    ("memory-identity-host-ram", "aarch64", Append("[[memory]]\ngpa = 0x4800_0000\nsize = 0x1000\nmap = \"identity\"\n"), &[
        "memory[1]: overlaps the hypervisor's RAM ([0x40000000, 0x4000000000))",
    ]),
    ("rom-writable", "aarch64", Append("[[memory]]\ngpa = 0x0\nsize = 0x1000\nmap = \"identity\"\nkind = \"rom\"\nflags = [\"read\", \"write\"]\n"), &[
        "memory[1].map: a `rom` region must be `map = \"alloc\"` (the hypervisor loads it into memory it owns)",
        "memory[1].flags: a `rom` region cannot have the \"write\" flag (the guest cannot write ROM)",
    ]),
    // devices.
    ("device-on-ram", "aarch64", Append("[[devices]]\nkind = \"pl011\"\nbase = 0x4000_0000\nsize = 0x1000\n"), &[
        "devices[1]: overlaps memory[0] ([0x40000000, 0x41000000))",
    ]),
    ("device-on-device", "aarch64", Append("[[devices]]\nkind = \"pl011\"\nbase = 0x0900_0800\nsize = 0x1000\n"), &[
        "devices[1]: overlaps devices[0] ([0x9000000, 0x9001000))",
    ]),
    ("device-kind", "aarch64", Replace("kind = \"pl011\"", "kind = \"uart\""), &[
        "line 22, column 8: in `devices.kind`: unknown variant `uart`, expected one of `pl011`, `ns16550`, `gicd`, `gicr`, `gicc`, `plic`, `ioapic`, `virtio-console`, `virtio-blk`, `virtio-net`",
    ]),
    ("device-no-base", "aarch64", Replace("base = 0x0900_0000\n", ""), &[
        "line 21, column 1: in `devices[0]`: missing field `base` (or `port` for an I/O-port device)",
    ]),
    ("device-size-zero", "aarch64", Replace("size = 0x1000\n", "size = 0\n"), &[
        "devices[0].size: size must not be 0",
    ]),
    ("device-overflow", "aarch64", Replace("base = 0x0900_0000", "base = 0xffff_ffff_ffff_f800"), &[
        "devices[0]: 0xfffffffffffff800 + size 0x1000 overflows the 64-bit address space",
    ]),
    ("irq-without-controller", "aarch64", Replace("size = 0x1000\n", "size = 0x1000\nirq = 33\n"), &[
        "devices[0].irq: interrupt 33: the VM has no interrupt controller (add a `gicd`, `plic` or `ioapic` device)",
    ]),
    ("irq-not-a-spi", "aarch64", Append("[[devices]]\nkind = \"gicd\"\nbase = 0x0800_0000\nsize = 0x1_0000\n[[devices]]\nkind = \"virtio-console\"\nbase = 0x0a00_0000\nirq = 16\n"), &[
        "devices[2].irq: interrupt 16 is not a line of the VM's GIC (its SPIs) (32..=127)",
    ]),
    ("irq-huge", "aarch64", Append("[[devices]]\nkind = \"gicd\"\nbase = 0x0800_0000\nsize = 0x1_0000\n[[devices]]\nkind = \"virtio-console\"\nbase = 0x0a00_0000\nirq = 0xffff_ffff\n"), &[
        "devices[2].irq: interrupt 4294967295 is not a line of the VM's GIC (its SPIs) (32..=127)",
    ]),
    ("irq-plic-zero", "riscv64", Append("[[devices]]\nkind = \"plic\"\nbase = 0x0c00_0000\nsize = 0x400_0000\n[[devices]]\nkind = \"virtio-console\"\nbase = 0x1000_1000\nirq = 0\n"), &[
        "devices[2].irq: interrupt 0 is not a line of the VM's PLIC (1..=95)",
    ]),
    ("irq-plic-past-its-sources", "riscv64", Append("[[devices]]\nkind = \"plic\"\nbase = 0x0c00_0000\nsize = 0x400_0000\n[[devices]]\nkind = \"virtio-console\"\nbase = 0x1000_1000\nirq = 96\n"), &[
        "devices[2].irq: interrupt 96 is not a line of the VM's PLIC (1..=95)",
    ]),
    ("irq-ioapic-past-its-pins", "x86_64", Append("[[devices]]\nkind = \"ioapic\"\nbase = 0xfec0_0000\nsize = 0x1000\n[[devices]]\nkind = \"virtio-console\"\nbase = 0xd000_0000\nirq = 24\n"), &[
        "devices[2].irq: interrupt 24 is not a line of the VM's I/O APIC (0..=23)",
    ]),
    ("controller-of-riscv-on-arm", "aarch64", Append("[[devices]]\nkind = \"plic\"\nbase = 0x0c00_0000\nsize = 0x400_0000\n"), &[
        "devices[1].kind: `plic` is not an interrupt controller of aarch64 VMs (aarch64: `gicd`, `gicc`, `gicr`; riscv64: `plic`)",
    ]),
    ("controller-twice", "aarch64", Append("[[devices]]\nkind = \"gicd\"\nbase = 0x0800_0000\nsize = 0x1_0000\n[[devices]]\nkind = \"gicd\"\nbase = 0x0810_0000\nsize = 0x1_0000\n"), &[
        "devices[2].kind: a VM has at most one `gicd` device; devices[1] is one already",
    ]),
    ("controller-size", "aarch64", Append("[[devices]]\nkind = \"gicd\"\nbase = 0x0800_0000\nsize = 0x1000\n"), &[
        "devices[1].size: size 0x1000: the register window is 0x10000 bytes",
    ]),
    ("port-on-arm", "aarch64", Replace("base = 0x0900_0000\nsize = 0x1000", "port = 0x3f8"), &[
        "line 21, column 1: in `devices[0]`: a `pl011` device has no I/O-port form: give it `base` and `size`",
    ]),
    ("virtio-size", "aarch64", Append("[[devices]]\nkind = \"virtio-console\"\nbase = 0x0a00_0000\nsize = 0x1000\n"), &[
        "devices[1].size: size 0x1000: the register window is 0x200 bytes",
    ]),
    ("virtio-blk-relative-file", "aarch64", Append("[[devices]]\nkind = \"virtio-blk\"\nbase = 0x0a00_0000\nfile = \"disk.img\"\n"), &[
        "line 29, column 1: in `devices[1]`: `file` is a path on the hypervisor's disk starting with '/' (e.g. \"/vms/disk.img\")",
    ]),
    ("virtio-blk-file-and-backing", "aarch64", Append("[[devices]]\nkind = \"virtio-blk\"\nbase = 0x0a00_0000\nfile = \"/d.img\"\nbacking = { disk = \"data\", offset = 0, size = 512 }\n"), &[
        "line 29, column 1: in `devices[1]`: a `virtio-blk` has either `file` or `backing`, not both",
    ]),
    ("virtio-blk-region", "aarch64", Append("[[devices]]\nkind = \"virtio-blk\"\nbase = 0x0a00_0000\nbacking = { disk = \"da ta\", offset = 100, size = 0 }\n"), &[
        "devices[1].backing.disk: contains ' '; only letters, digits, '_' and '-' are allowed",
        "devices[1].backing.offset: 0x64 is not a multiple of 0x200",
        "devices[1].backing.size: size must not be 0",
    ]),
    ("virtio-blk-partition-range", "aarch64", Append("[[devices]]\nkind = \"virtio-blk\"\nbase = 0x0a00_0000\nbacking = { disk = \"disk0\", partition = 5 }\n"), &[
        "line 29, column 1: in `devices[1]`: `partition` is an MBR partition: 1 to 4",
    ]),
    ("virtio-blk-partition-and-bytes", "aarch64", Append("[[devices]]\nkind = \"virtio-blk\"\nbase = 0x0a00_0000\nbacking = { disk = \"disk0\", partition = 2, size = 512 }\n"), &[
        "line 29, column 1: in `devices[1]`: a `backing` has either `offset` and `size` or `partition`, not both",
    ]),
    ("virtio-blk-region-no-size", "aarch64", Append("[[devices]]\nkind = \"virtio-blk\"\nbase = 0x0a00_0000\nbacking = { disk = \"data\", offset = 0 }\n"), &[
        "line 29, column 1: in `devices[1]`: a `backing` needs `offset` and `size` (bytes of the disk) or `partition` (a whole MBR partition, 1 to 4)",
    ]),
    ("virtio-net-no-switch", "aarch64", Append("[[devices]]\nkind = \"virtio-net\"\nbase = 0x0a00_0000\n"), &[
        "line 29, column 1: in `devices[1]`: missing field `switch` (the virtual switch it is plugged into, e.g. \"lan\")",
    ]),
    ("virtio-net-switch-name", "aarch64", Append("[[devices]]\nkind = \"virtio-net\"\nbase = 0x0a00_0000\nswitch = \"my lan\"\n"), &[
        "line 29, column 1: in `devices[1]`: `switch` is 1 to 32 characters out of [A-Za-z0-9_-]",
    ]),
    ("virtio-net-mac", "aarch64", Append("[[devices]]\nkind = \"virtio-net\"\nbase = 0x0a00_0000\nswitch = \"lan\"\nmac = \"02:00:00:00:00\"\n"), &[
        "line 29, column 1: in `devices[1]`: `mac` is six two-digit hex numbers separated by ':' (e.g. \"02:00:00:00:00:01\")",
    ]),
    ("virtio-net-multicast", "aarch64", Append("[[devices]]\nkind = \"virtio-net\"\nbase = 0x0a00_0000\nswitch = \"lan\"\nmac = \"01:00:5e:00:00:01\"\n"), &[
        "line 29, column 1: in `devices[1]`: `mac` must be a unicast address (the low bit of its first byte clear), not all zeros",
    ]),
    // passthrough.
    ("passthrough-no-base", "aarch64", Append("[[passthrough]]\nname = \"rtc\"\nsize = 0x1000\n"), &[
        "line 29, column 1: in `passthrough[0]`: missing field `base` (a passthrough `size` needs it)",
    ]),
    ("passthrough-nothing", "aarch64", Append("[[passthrough]]\nname = \"rtc\"\n"), &[
        "line 29, column 1: in `passthrough[0]`: a passthrough device needs `base` and `size` (a physical range), `ports` (I/O port ranges, x86_64), or both",
    ]),
    ("passthrough-host-ram", "aarch64", Append("[[passthrough]]\nname = \"ram\"\nbase = 0x4800_0000\nsize = 0x1000\n"), &[
        "passthrough[0]: overlaps the hypervisor's RAM ([0x40000000, 0x4000000000))",
    ]),
    ("passthrough-host-gic", "aarch64", Append("[[passthrough]]\nname = \"gic\"\nbase = 0x0800_0000\nsize = 0x1000\n"), &[
        "passthrough[0]: overlaps the host interrupt controller ([0x8000000, 0x8020000))",
    ]),
    ("passthrough-misaligned", "aarch64", Append("[[passthrough]]\nname = \"rtc\"\nbase = 0x0901_0800\nsize = 0x1000\n"), &[
        "passthrough[0].base: 0x9010800 is not a multiple of 0x1000",
    ]),
    ("passthrough-irq-not-the-hosts", "aarch64", Append("[[passthrough]]\nname = \"rtc\"\nbase = 0x0901_0000\nsize = 0x1000\nirqs = [300]\n[[devices]]\nkind = \"gicd\"\nbase = 0x0800_0000\nsize = 0x1_0000\n"), &[
        "passthrough[0].irqs[0]: interrupt 300 is not a line of the VM's GIC (its SPIs) (32..=127)",
        "passthrough[0].irqs[0]: interrupt 300 is not a device interrupt of the host's interrupt controller (32..=287)",
    ]),
    ("passthrough-ports-on-arm", "aarch64", Append("[[passthrough]]\nname = \"cmos\"\nports = [[0x70, 2]]\n"), &[
        "passthrough[0].ports: aarch64 VMs have no I/O ports (only x86_64 ones do): give the device `base` and `size`",
    ]),
    ("passthrough-port-form", "x86_64", Append("[[passthrough]]\nname = \"com2\"\nports = [[0x2f8]]\n"), &[
        "line 32, column 9: in `passthrough.ports`: a port range is `[first port, number of ports]`, not 1 number(s)",
    ]),
    ("passthrough-port-count-zero", "x86_64", Append("[[passthrough]]\nname = \"com2\"\nports = [[0x2f8, 0]]\n"), &[
        "passthrough[0].ports[0]: size must not be 0",
    ]),
    ("passthrough-ports-past-the-end", "x86_64", Append("[[passthrough]]\nname = \"top\"\nports = [[0xffff, 2]]\n"), &[
        "passthrough[0].ports[0]: ports 0xffff..0x10001 run past the last port (0xffff)",
    ]),
    ("passthrough-ports-the-hosts", "x86_64", Append("[[passthrough]]\nname = \"pic\"\nports = [[0x20, 2]]\n"), &[
        "passthrough[0].ports[0]: overlaps ports 0x20..0x22, which the hypervisor keeps (the host interrupt controller)",
    ]),
    ("passthrough-irqs-on-x86", "x86_64", Append("[[passthrough]]\nname = \"com2\"\nports = [[0x2f8, 8]]\nirqs = [3]\n[[devices]]\nkind = \"ioapic\"\nbase = 0xfec0_0000\nsize = 0x1000\n"), &[
        "passthrough[0].irqs: the hypervisor forwards no passthrough interrupts to x86_64 VMs yet: remove `irqs`",
    ]),
    // x86 ports.
    ("port-past-the-end", "x86_64", Replace("port = 0x3f8", "port = 0xfffc"), &[
        "devices[0].port: ports 0xfffc..0x10004 run past the last port (0xffff)",
    ]),
    ("port-huge", "x86_64", Replace("port = 0x3f8", "port = 0xffff_ffff_ffff_fffc"), &[
        "devices[0]: 0xfffffffffffffffc + size 0x8 overflows the 64-bit address space",
    ]),
    ("port-overlap", "x86_64", Append("[[devices]]\nkind = \"ns16550\"\nport = 0x3fc\n"), &[
        "devices[1]: overlaps devices[0] ([0x3f8, 0x400))",
    ]),
    ("controller-of-arm-on-x86", "x86_64", Append("[[devices]]\nkind = \"gicd\"\nbase = 0x0800_0000\nsize = 0x1_0000\n"), &[
        "devices[1].kind: `gicd` is not an interrupt controller of x86_64 VMs (aarch64: `gicd`, `gicc`, `gicr`; riscv64: `plic`)",
    ]),
    // unclaimed.
    ("unclaimed-policy", "aarch64", Replace("policy = \"fault\"", "policy = \"ignore\""), &[
        "line 27, column 10: in `unclaimed.policy`: unknown variant `ignore`, expected one of `fault`, `read-zero`, `stop`",
    ]),
    // links (one VM's own checks; the two ends are below).
    ("link-no-name", "aarch64", Append("[[links]]\npeer = \"b\"\nshmem = { gpa = 0x5000_0000, size = 0x1000 }\ndoorbell = { base = 0x0a00_0000, irq = 50 }\n"), &[
        "line 29, column 1: in `links`: missing field `name`",
    ]),
    ("link-to-self", "aarch64", Append("[[links]]\nname = \"l\"\npeer = \"hello\"\nshmem = { gpa = 0x5000_0000, size = 0x1000 }\ndoorbell = { base = 0x0a00_0000, irq = 50 }\n[[devices]]\nkind = \"gicd\"\nbase = 0x0800_0000\nsize = 0x1_0000\n"), &[
        "links[0].peer: a link's peer is another VM, not this one",
    ]),
    ("link-on-ram", "aarch64", Append("[[links]]\nname = \"l\"\npeer = \"b\"\nshmem = { gpa = 0x4000_0000, size = 0x1001 }\ndoorbell = { base = 0x0900_0000, irq = 50 }\n[[devices]]\nkind = \"gicd\"\nbase = 0x0800_0000\nsize = 0x1_0000\n"), &[
        "links[0].shmem.size: 0x1001 is not a multiple of 0x1000",
        "links[0].shmem: overlaps memory[0] ([0x40000000, 0x41000000))",
        "links[0].doorbell: overlaps devices[0] ([0x9000000, 0x9001000))",
    ]),
];

/// `case`'s config text.
fn text_of((name, arch, edit, _): &Case) -> String {
    let hello = std::fs::read_to_string(repo_root().join(format!("configs/vms/{arch}-hello.toml")))
        .unwrap();
    match *edit {
        Replace(from, to) => {
            assert!(
                hello.contains(from),
                "{name}: `{from}` is not in {arch}-hello.toml"
            );
            hello.replacen(from, to, 1)
        }
        Append(tail) => format!("{hello}\n{tail}"),
        Whole(text) => text.to_owned(),
    }
}

/// The platform of an architecture's cases, as `check` defaults it.
fn platform_of(arch: &str) -> HostFacts {
    let file = PathBuf::from(format!("{arch}-x.toml"));
    platform_facts(&default_platform(&file).unwrap()).unwrap()
}

/// An input named `name` on `arch`'s platform with a 4-CPU machine.
fn input(name: &str, arch: &str, text: String) -> Input {
    Input {
        name: name.to_owned(),
        text: Ok(text),
        host: Some(platform_of(arch)),
        pcpus: Some(4),
        disk: None,
    }
}

#[test]
fn every_malformed_config_gets_file_field_and_reason() {
    let mut wrong = Vec::new();
    for case in CASES {
        let (name, arch, _, expected) = case;
        let file = format!("{name}.toml");
        let report = check(&[input(&file, arch, text_of(case))]);
        let want: String = expected.iter().map(|l| format!("{file}: {l}\n")).collect();
        if report.ok || report.text != want {
            wrong.push(format!(
                "--- {name}: expected\n{want}--- got\n{}",
                report.text
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_unbroken_configs_pass() {
    for arch in ["aarch64", "riscv64", "x86_64"] {
        let report = check(&[input(
            "ok.toml",
            arch,
            text_of(&("ok", arch, Append(""), &[])),
        )]);
        assert!(report.ok, "{}", report.text);
    }
}

/// Two configs of one hypervisor: each problem is printed against the later file and
/// names the other.
#[test]
fn problems_between_configs_name_both_files() {
    let hello = text_of(&("a", "aarch64", Append(""), &[]));
    let gic = format!("{hello}\n{GICD}");
    let link = |name: &str, peer: &str, size: &str| {
        format!(
            "{gic}[[links]]\nname = \"l\"\npeer = \"{peer}\"\nshmem = {{ gpa = 0x5000_0000, size = {size} }}\n\
             doorbell = {{ base = 0x0a00_0000, irq = 50 }}\n"
        )
        .replace("name = \"hello\"", &format!("name = \"{name}\""))
    };
    let two = |a: String, b: String| {
        check(&[
            input("a.toml", "aarch64", a),
            input("b.toml", "aarch64", b.replacen("id = 1", "id = 2", 1)),
        ])
        .text
    };
    assert_eq!(
        two(hello.clone(), hello.clone()),
        "a.toml: ok\nb.toml: name: name `hello` is already used by a.toml\n"
    );
    assert_eq!(
        check(&[
            input("a.toml", "aarch64", hello.clone()),
            input(
                "b.toml",
                "aarch64",
                hello.replace("name = \"hello\"", "name = \"other\"")
            ),
        ])
        .text,
        "a.toml: ok\nb.toml: id: id 1 is already used by a.toml\n"
    );
    assert_eq!(
        two(link("a", "b", "0x1000"), link("b", "a", "0x2000")),
        "a.toml: ok\nb.toml: links[0].shmem.size: this VM shares 0x2000 bytes, but VM `a` declares 0x1000; both ends of a link have the same size\n"
    );
    let region = |name: &str, offset: &str, ro: bool| {
        format!(
            "{hello}[[devices]]\nkind = \"virtio-blk\"\nbase = 0x0a00_0000\n\
             backing = {{ disk = \"data\", offset = {offset}, size = 0x2000 }}\nread_only = {ro}\n"
        )
        .replace("name = \"hello\"", &format!("name = \"{name}\""))
    };
    assert_eq!(
        two(region("a", "0x1000", true), region("b", "0x2000", false)),
        "a.toml: ok\nb.toml: devices[1]: overlaps devices[1] of VM `a` on disk \"data\" (bytes [0x1000, 0x3000)) and one of them is read-write; a region a VM writes is that VM's alone\n"
    );
    assert_eq!(
        two(region("a", "0x1000", true), region("b", "0x2000", true)),
        "a.toml: ok\nb.toml: ok\n"
    );
    assert_eq!(
        two(link("a", "b", "0x1000"), link("b", "c", "0x1000")),
        "a.toml: links[0].peer: link `l`: VM `b` declares no link `l` with this VM as its peer\nb.toml: ok\n"
    );
}

/// What only a disk shows: images that are missing, outside the disk, or too big for RAM.
#[test]
fn images_on_a_disk_are_found_and_fit() {
    let root = std::env::temp_dir().join(format!("xtask-malformed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("vms")).unwrap();
    std::fs::write(root.join("small.bin"), [0u8; 64]).unwrap();
    std::fs::File::create(root.join("big.bin"))
        .unwrap()
        .set_len(16 << 20 | 1)
        .unwrap();
    let hello = text_of(&("a", "aarch64", Append(""), &[]));
    let run = |image: &str, rest: &str| {
        let text = hello.replace("image = \"hello\"", &format!("image = {image:?}{rest}"));
        let file = root.join("vms/x.toml");
        std::fs::write(&file, &text).unwrap();
        let input = Input {
            disk: Some(OnDisk::new(&root, &file).unwrap()),
            ..input("x.toml", "aarch64", text)
        };
        check(&[input]).text
    };
    assert_eq!(run("../small.bin", ""), "x.toml: ok\n");
    assert_eq!(
        run("../nope.bin", ""),
        "x.toml: field `kernel.image` = \"../nope.bin\": /nope.bin: no such file or directory\n"
    );
    // `..` stops at the disk's root: nothing outside the disk is reachable.
    assert_eq!(
        run("../../../../etc/passwd", ""),
        "x.toml: field `kernel.image` = \"../../../../etc/passwd\": /etc/passwd: no such file or directory\n"
    );
    assert_eq!(
        run("../big.bin", ""),
        "x.toml: kernel: image `../big.bin` (0x1000001 bytes) does not fit: memory[0] has only 0x1000000 bytes from the load address to its end\n"
    );
    assert_eq!(
        run(
            "../small.bin",
            "\ninitrd = { image = \"/small.bin\", load_addr = 0x4000_0020 }"
        ),
        "x.toml: kernel.initrd: overlaps kernel ([0x40000000, 0x40000040))\n"
    );
    // A config larger than the hypervisor reads from its disk.
    let padded = format!("{hello}{}", "#".repeat(64 * 1024));
    std::fs::write(root.join("vms/x.toml"), &padded).unwrap();
    let big_config = Input {
        disk: Some(OnDisk::new(&root, &root.join("vms/x.toml")).unwrap()),
        ..input("x.toml", "aarch64", padded.clone())
    };
    assert_eq!(
        check(&[big_config]).text,
        format!(
            "x.toml: /vms/x.toml: {} bytes is larger than the limit of 65536 bytes (the hypervisor reads no larger config from its disk)\n",
            padded.len()
        )
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// Bytes that are not text, and huge or deeply nested values: an error line, no panic.
#[test]
fn hostile_bytes_are_a_line_not_a_panic() {
    let nested = format!("id = {}1{}", "[".repeat(50_000), "]".repeat(50_000));
    for text in [
        nested,
        "\u{feff}id = 1".to_owned(),
        "id = 1\r\nname = \"\u{0}\"".to_owned(),
    ] {
        let report = check(&[input("h.toml", "aarch64", text)]);
        assert!(!report.ok);
        assert_eq!(report.text.lines().count(), 1, "{}", report.text);
        assert!(report.text.starts_with("h.toml: line "), "{}", report.text);
    }
    let unreadable = Input {
        text: Err("stream did not contain valid UTF-8".to_owned()),
        ..input("u.toml", "aarch64", String::new())
    };
    assert_eq!(
        check(&[unreadable]).text,
        "u.toml: cannot read: stream did not contain valid UTF-8\n"
    );
}
