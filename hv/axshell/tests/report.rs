//! The layout of the hypervisor's answers.

use axshell::report::{mem, vm_list, vm_stat, MemReport, Size, Uptime, VmRow, VmStat};

fn text(f: impl FnOnce(&mut String) -> core::fmt::Result) -> String {
    let mut s = String::new();
    f(&mut s).unwrap();
    s
}

#[test]
fn vm_list_has_a_header_and_a_line_per_vm() {
    let rows = [
        VmRow {
            id: 1,
            name: "hello".into(),
            state: "running",
            cpus: vec![1],
            mem_bytes: 16 << 20,
            uptime_ms: Some(1234),
        },
        VmRow {
            id: 22,
            name: "linux-guest".into(),
            state: "stopped",
            cpus: vec![2, 3],
            mem_bytes: 256 << 20,
            uptime_ms: None,
        },
    ];
    let out = text(|s| vm_list(&rows, s));
    assert_eq!(
        out,
        "  ID  NAME         STATE     VCPUS  CPUS         MEMORY  UPTIME\n\
         \x20  1  hello        running       1  1            16 MiB  1.234s\n\
         \x20 22  linux-guest  stopped       2  2,3         256 MiB  -\n"
    );
    assert_eq!(text(|s| vm_list(&[], s)), "no VMs\n");
}

#[test]
fn sizes_and_uptimes() {
    assert_eq!(Size(1 << 30).to_string(), "1 GiB");
    assert_eq!(Size(3 << 20).to_string(), "3 MiB");
    assert_eq!(Size(1536 << 10).to_string(), "1536 KiB");
    assert_eq!(Size(100).to_string(), "100 B");
    assert_eq!(Uptime(59_999).to_string(), "59.999s");
    assert_eq!(Uptime(62_000).to_string(), "1m02s");
    assert_eq!(Uptime(3_840_000).to_string(), "1h04m");
}

#[test]
fn vm_stat_counts_rates_and_unclaimed() {
    let stat = VmStat {
        name: "hello".into(),
        ran_ms: Some(2000),
        exits: vec![("mmio-write", 400), ("hypercall", 3)],
        unclaimed: vec![],
    };
    assert_eq!(
        text(|s| vm_stat(&stat, s)),
        "vm hello: 403 exits in 2.000s\n  mmio-write         400       200/s\n  hypercall            3         1/s\n  unclaimed accesses: none\n"
    );
    let stat = VmStat {
        ran_ms: None,
        exits: vec![("hypercall", 3)],
        unclaimed: vec!["2 unclaimed accesses at 1 address".into()],
        ..stat
    };
    assert_eq!(
        text(|s| vm_stat(&stat, s)),
        "vm hello: 3 exits (not running)\n  hypercall           3\n  2 unclaimed accesses at 1 address\n"
    );
}

#[test]
fn mem_shows_free_frames_and_heap() {
    let r = MemReport {
        free_frames: 1000,
        frame_size: 4096,
        heap_total: 1 << 20,
        heap_used: 12345,
    };
    assert_eq!(
        text(|s| mem(&r, s)),
        "frames: 1000 free (4000 KiB)\nheap: 12345 bytes used of 1048576 bytes\nframes free or in the heap: 1256\n"
    );
}

#[test]
fn cpu_load_is_the_busy_share_of_the_window() {
    use axshell::report::{cpu, CpuLoad};
    let loads = [
        CpuLoad {
            cpu: 0,
            idle_ns: 1_500_000_000,
        },
        CpuLoad { cpu: 1, idle_ns: 0 },
        CpuLoad {
            cpu: 2,
            idle_ns: 9_000_000_000,
        },
    ];
    assert_eq!(
        text(|s| cpu(&loads, 2_000_000_000, "since boot", s)),
        "load over 2.000s (since boot):\n  cpu 0    25.0% busy\n  cpu 1   100.0% busy\n  cpu 2     0.0% busy\n"
    );
    assert_eq!(
        text(|s| cpu(&loads[..1], 0, "since the last \"cpu\"", s)),
        "load over 0.000s (since the last \"cpu\"):\n  cpu 0     0.0% busy\n"
    );
}

#[test]
fn ls_lists_sizes_and_directories() {
    use axshell::report::{ls, FileRow};
    let rows = [
        FileRow {
            name: "vms".into(),
            dir: true,
            size: 0,
        },
        FileRow {
            name: "hello.bin".into(),
            dir: false,
            size: 12345,
        },
    ];
    assert_eq!(
        text(|s| ls(&rows, s)),
        "     <dir>  vms/\n     12345  hello.bin\n"
    );
    assert_eq!(text(|s| ls(&[], s)), "(empty)\n");
}

#[test]
fn cat_shows_text_and_defuses_control_characters() {
    use axshell::report::cat;
    assert_eq!(text(|s| cat(b"a = 1\n\tb\n", s)), "a = 1\n\tb\n");
    // No line end at the end: one is added; nothing for an empty file.
    assert_eq!(text(|s| cat(b"x", s)), "x\n");
    assert_eq!(text(|s| cat(b"", s)), "");
    // Escape sequences, carriage returns and bad UTF-8 cannot reach the terminal.
    assert_eq!(
        text(|s| cat(b"\x1b[2Jok\r\xff\xfe \xc3\xa9\n", s)),
        "?[2Jok??? \u{e9}\n"
    );
}
