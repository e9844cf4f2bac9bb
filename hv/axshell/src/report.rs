//! What the commands print, from plain data: the hypervisor gathers the facts
//! ([`VmRow`], [`VmStat`], [`MemReport`]) and these functions lay them out, so the layout is
//! tested on the host.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// One VM as `vm list` and `vm show` see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmRow {
    /// Its id (from its config).
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its state, one word (`running`, `paused`, `stopping`, `stopped`, `created`).
    pub state: &'static str,
    /// The physical CPU each vCPU is pinned to, by vCPU index.
    pub cpus: Vec<usize>,
    /// Guest memory in bytes (every region of its config).
    pub mem_bytes: u64,
    /// How long it has run, in milliseconds, not counting the time it spent paused
    /// (`None`: it is not running or paused).
    pub uptime_ms: Option<u64>,
}

/// `1.234s`, `1m02s`, `3h04m`: short and fixed in meaning.
pub struct Uptime(pub u64);

impl fmt::Display for Uptime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        let s = ms / 1000;
        if s < 60 {
            write!(f, "{}.{:03}s", s, ms % 1000)
        } else if s < 3600 {
            write!(f, "{}m{:02}s", s / 60, s % 60)
        } else {
            write!(f, "{}h{:02}m", s / 3600, (s / 60) % 60)
        }
    }
}

/// A size in bytes as KiB, MiB or GiB (whole units when exact, else KiB).
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const K: u64 = 1024;
        match self.0 {
            b if b >= K * K * K && b % (K * K * K) == 0 => write!(f, "{} GiB", b / (K * K * K)),
            b if b >= K * K && b % (K * K) == 0 => write!(f, "{} MiB", b / (K * K)),
            b if b % K == 0 => write!(f, "{} KiB", b / K),
            b => write!(f, "{b} B"),
        }
    }
}

/// The vCPUs' CPUs: `0,1` for vCPU 0 on CPU 0 and vCPU 1 on CPU 1.
struct Cpus<'a>(&'a [usize]);

impl fmt::Display for Cpus<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// `vm list`: a header and one line per VM, in the order given; `no VMs` when there are none.
pub fn vm_list(rows: &[VmRow], out: &mut dyn Write) -> fmt::Result {
    if rows.is_empty() {
        return writeln!(out, "no VMs");
    }
    let name_w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    writeln!(
        out,
        "{:>4}  {:<name_w$}  {:<8}  {:>5}  {:<8}  {:>9}  UPTIME",
        "ID", "NAME", "STATE", "VCPUS", "CPUS", "MEMORY"
    )?;
    for r in rows {
        let cpus = alloc::format!("{}", Cpus(&r.cpus));
        let mem = alloc::format!("{}", Size(r.mem_bytes));
        write!(
            out,
            "{:>4}  {:<name_w$}  {:<8}  {:>5}  {:<8}  {:>9}  ",
            r.id,
            r.name,
            r.state,
            r.cpus.len(),
            cpus,
            mem
        )?;
        match r.uptime_ms {
            Some(ms) => writeln!(out, "{}", Uptime(ms))?,
            None => writeln!(out, "-")?,
        }
    }
    Ok(())
}

/// `vm stat` for one VM: its exits by reason with their rates over its uptime, and what
/// its unclaimed accesses came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmStat {
    /// The VM's name.
    pub name: String,
    /// How long it has run, in milliseconds, not counting the time it spent paused (the
    /// rates' time base); `None` when it is not running or paused (no rates).
    pub ran_ms: Option<u64>,
    /// Exits by reason, in the hypervisor's order; reasons never taken may be left out.
    pub exits: Vec<(&'static str, u64)>,
    /// One line per kind of unclaimed access (MMIO, ports) that happened, already worded.
    pub unclaimed: Vec<String>,
}

/// Writes `stat` as a few lines: `vm NAME: N exits in T` (or `(not running)`), then
/// `  reason  count  rate/s` per reason (no rate when not running), then the unclaimed
/// accesses.
pub fn vm_stat(stat: &VmStat, out: &mut dyn Write) -> fmt::Result {
    let total: u64 = stat.exits.iter().map(|(_, n)| n).sum();
    match stat.ran_ms {
        Some(ms) => writeln!(out, "vm {}: {total} exits in {}", stat.name, Uptime(ms))?,
        None => writeln!(out, "vm {}: {total} exits (not running)", stat.name)?,
    }
    let reason_w = stat.exits.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (kind, n) in &stat.exits {
        write!(out, "  {kind:<reason_w$}  {n:>10}")?;
        if let Some(ms) = stat.ran_ms.filter(|&ms| ms > 0) {
            let per_s = u128::from(*n) * 1000 / u128::from(ms);
            write!(out, "  {per_s:>8}/s")?;
        }
        writeln!(out)?;
    }
    if stat.unclaimed.is_empty() {
        writeln!(out, "  unclaimed accesses: none")?;
    }
    for line in &stat.unclaimed {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// `mem`: the frame allocator and the heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemReport {
    /// Free frames.
    pub free_frames: usize,
    /// Bytes per frame.
    pub frame_size: usize,
    /// Bytes the heap took from frames.
    pub heap_total: usize,
    /// Bytes allocated from the heap.
    pub heap_used: usize,
}

/// Writes `mem`'s three lines: `frames: N free (SIZE)`, `heap: USED bytes used of TOTAL
/// bytes`, and `frames free or in the heap: M` (what comes back to its value when every
/// frame given out beside the heap was given back, however the heap grew).
pub fn mem(report: &MemReport, out: &mut dyn Write) -> fmt::Result {
    let free = (report.free_frames as u64).saturating_mul(report.frame_size as u64);
    writeln!(
        out,
        "frames: {} free ({})",
        report.free_frames,
        Size(free - free % 1024)
    )?;
    writeln!(
        out,
        "heap: {} bytes used of {} bytes",
        report.heap_used, report.heap_total
    )?;
    // Frames go to the heap as it grows and do not come back: free frames plus the heap's
    // stay the same when everything else given out was given back.
    let heap_frames = report.heap_total / report.frame_size.max(1);
    writeln!(
        out,
        "frames free or in the heap: {}",
        report.free_frames + heap_frames
    )
}

/// One CPU's idle time over a window, for `cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuLoad {
    /// The CPU's number.
    pub cpu: usize,
    /// Nanoseconds it slept with nothing to run during the window.
    pub idle_ns: u64,
}

/// Writes `cpu`'s answer: the window (`since` says from when), then one line per CPU with
/// its busy share, `100 - idle share` in tenths of a percent (idle beyond the window, as
/// clocks drift, counts as all idle).
pub fn cpu(loads: &[CpuLoad], window_ns: u64, since: &str, out: &mut dyn Write) -> fmt::Result {
    writeln!(
        out,
        "load over {} ({since}):",
        Uptime(window_ns / 1_000_000)
    )?;
    for l in loads {
        let idle = u128::from(l.idle_ns.min(window_ns));
        let busy_permille = match window_ns {
            0 => 0,
            w => 1000 - idle * 1000 / u128::from(w),
        };
        writeln!(
            out,
            "  cpu {:<3} {:>3}.{}% busy",
            l.cpu,
            busy_permille / 10,
            busy_permille % 10
        )?;
    }
    Ok(())
}

/// One entry of a disk directory, for `ls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRow {
    /// Its name (as the filesystem shows it: no control characters).
    pub name: String,
    /// A directory (else a file).
    pub dir: bool,
    /// A file's size in bytes.
    pub size: u64,
}

/// Writes `ls`'s answer: one line per entry, the size (or `<dir>`) right-aligned, then the
/// name, a directory's with a trailing `/`; `(empty)` for none.
pub fn ls(rows: &[FileRow], out: &mut dyn Write) -> fmt::Result {
    if rows.is_empty() {
        return writeln!(out, "(empty)");
    }
    for r in rows {
        if r.dir {
            writeln!(out, "{:>10}  {}/", "<dir>", r.name)?;
        } else {
            writeln!(out, "{:>10}  {}", r.size, r.name)?;
        }
    }
    Ok(())
}

/// Writes a file's bytes for `cat`: UTF-8 text as it is, line ends and tabs kept; every
/// other control character and each byte of invalid UTF-8 as `?`, so a file cannot rewrite
/// the console's lines. A last line without its line end gets one.
pub fn cat(bytes: &[u8], out: &mut dyn Write) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let shown = if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            };
            out.write_char(shown)?;
        }
        for _ in chunk.invalid() {
            out.write_char('?')?;
        }
    }
    if bytes.last().is_some_and(|&b| b != b'\n') {
        out.write_char('\n')?;
    }
    Ok(())
}
