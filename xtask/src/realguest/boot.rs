//! `cargo xtask guests boot-direct`: boots a fetched kernel and initramfs straight on QEMU,
//! without the hypervisor, and checks the marker line. The guest runs at EL1 (aarch64, no
//! `virtualization=on`), in S mode under OpenSBI (riscv64) or on a PC with SeaBIOS
//! (x86_64, `-cpu EPYC` as in the SVM scenarios), as it would inside a VM, so this is the
//! baseline for boot times under axvisor.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{RealGuest, MARKER};
use crate::arch::Arch;
use crate::matcher::clean_line;
use crate::qemu::EmulatorCommand;
use crate::util;

/// Guest RAM of a direct boot.
pub const MEM: &str = "1G";
/// How many console lines a failure shows.
const TAIL_LINES: usize = 30;

/// The marker line's fields: `AXVISOR-LINUX-MARKER kernel=<release> cpus=<n>` and
/// optionally `compat=<machine>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The running kernel's release (`uname -r`).
    pub kernel: String,
    /// Online CPUs.
    pub cpus: u32,
    /// What the 32-bit busybox printed for `linux32 uname -m` (`armv8l` on aarch64), or
    /// `none` without one; `None` when the marker has no `compat=` (an older `/init`).
    pub compat: Option<String>,
}

/// Parses a console line holding the marker (anything may precede it). `None` without the
/// marker; an error if the marker is there but malformed.
pub fn parse_marker(line: &str) -> Option<Result<Marker>> {
    let at = line.find(MARKER)?;
    let rest = &line[at + MARKER.len()..];
    let parse = || -> Result<Marker> {
        let mut kernel = None;
        let mut cpus = None;
        let mut compat = None;
        for word in rest.split_whitespace() {
            match word.split_once('=') {
                Some(("kernel", v)) if !v.is_empty() => kernel = Some(v.to_owned()),
                Some(("cpus", v)) => cpus = Some(v.parse().context("cpus is not a number")?),
                Some(("compat", v)) => compat = Some(v.to_owned()),
                _ => bail!("unexpected word {word:?}"),
            }
        }
        Ok(Marker {
            kernel: kernel.context("no kernel=")?,
            cpus: cpus.context("no cpus=")?,
            compat,
        })
    };
    Some(parse().with_context(|| format!("malformed marker line {line:?}")))
}

/// The QEMU command that boots `guest` directly with `cpus` CPUs, console on stdout, no
/// monitor, exiting instead of rebooting.
pub fn direct_command(arch: Arch, guest: &RealGuest, cpus: u32) -> Result<EmulatorCommand> {
    let (program, machine, console): (&str, &[&str], &str) = match arch {
        Arch::Aarch64 => (
            "qemu-system-aarch64",
            &["-M", "virt,gic-version=3", "-cpu", "cortex-a72"],
            "ttyAMA0",
        ),
        Arch::Riscv64 => (
            "qemu-system-riscv64",
            &["-M", "virt", "-cpu", "rv64", "-bios", "default"],
            "ttyS0",
        ),
        // A PC with its firmware (SeaBIOS loads the bzImage; the ACPI S5 of `poweroff`
        // ends QEMU) and the CPU model the SVM scenarios give the hypervisor.
        Arch::X86_64 => ("qemu-system-x86_64", &["-M", "pc", "-cpu", "EPYC"], "ttyS0"),
    };
    let mut args: Vec<String> = machine.iter().map(|s| (*s).to_owned()).collect();
    let path = |p: &Path| p.to_string_lossy().into_owned();
    args.extend([
        "-smp".to_owned(),
        cpus.to_string(),
        "-m".to_owned(),
        MEM.to_owned(),
        "-nographic".to_owned(),
        "-monitor".to_owned(),
        "none".to_owned(),
        "-serial".to_owned(),
        "stdio".to_owned(),
        "-no-reboot".to_owned(),
        "-kernel".to_owned(),
        path(&guest.kernel),
        "-initrd".to_owned(),
        path(&guest.initramfs),
        "-append".to_owned(),
        // panic=-1: a failing /init reboots at once, and -no-reboot turns that into an exit.
        format!("console={console} panic=-1"),
    ]);
    Ok(EmulatorCommand {
        program: program.to_owned(),
        args,
    })
}

/// The outcome of a successful direct boot.
#[derive(Clone, Debug)]
pub struct BootReport {
    /// Architecture booted.
    pub arch: Arch,
    /// CPUs given to QEMU.
    pub cpus: u32,
    /// The marker line as printed.
    pub marker_line: String,
    /// From QEMU's start to the marker line.
    pub to_marker: Duration,
    /// From QEMU's start to its exit.
    pub to_exit: Duration,
    /// The console log.
    pub log: PathBuf,
}

impl fmt::Display for BootReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.marker_line)?;
        write!(
            f,
            "boot-direct {} cpus={}: marker after {:.2} s, QEMU exited after {:.2} s (log: {})",
            self.arch,
            self.cpus,
            self.to_marker.as_secs_f64(),
            self.to_exit.as_secs_f64(),
            self.log.display()
        )
    }
}

/// Where direct-boot console logs go: `target/real-guests/`.
pub fn log_dir() -> PathBuf {
    util::target_dir().join("real-guests")
}

/// Boots `guest` on QEMU without the hypervisor (under `timeout`, stdin closed) and checks
/// that the marker line names the guest's kernel and `cpus` CPUs and that QEMU then exits
/// with status 0.
pub fn boot_direct(
    arch: Arch,
    guest: &RealGuest,
    cpus: u32,
    limit: Duration,
) -> Result<BootReport> {
    let emu = direct_command(arch, guest, cpus)?;
    if !util::command_exists(&emu.program) {
        bail!(
            "{} is not installed (`cargo xtask setup` says how)",
            emu.program
        );
    }
    let dir = log_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join(format!("boot-direct-{arch}-{cpus}cpu.log"));
    let mut log = BufWriter::new(
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?,
    );

    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", &limit.as_secs().max(1).to_string()])
        .arg(&emu.program)
        .args(&emu.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = util::display_command(&cmd);
    println!("$ {shown}");
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut marker: Option<(String, Result<Marker>, Duration)> = None;
    let mut tail = std::collections::VecDeque::with_capacity(TAIL_LINES);
    let mut reader = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = clean_line(&buf);
        writeln!(log, "{line}").with_context(|| format!("writing {}", log_path.display()))?;
        if marker.is_none() {
            if let Some(parsed) = parse_marker(&line) {
                marker = Some((line.clone(), parsed, start.elapsed()));
            }
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{shown}`"))?;
    let to_exit = start.elapsed();
    let stderr_text = stderr_reader.join().unwrap_or_default();
    if !stderr_text.is_empty() {
        writeln!(log, "[emulator stderr]\n{stderr_text}")?;
    }
    log.flush()
        .with_context(|| format!("writing {}", log_path.display()))?;

    let fail = |why: String| -> anyhow::Error {
        let mut text = format!(
            "boot-direct {arch} cpus={cpus} failed after {}: {why}\n  command: {shown}\n  log: {}",
            util::secs(to_exit),
            log_path.display()
        );
        for line in &tail {
            text.push_str(&format!("\n  | {line}"));
        }
        for line in stderr_text.lines() {
            text.push_str(&format!("\n  | [stderr] {line}"));
        }
        anyhow::anyhow!(text)
    };
    let Some((marker_line, parsed, to_marker)) = marker else {
        return Err(fail(if status.code() == Some(124) {
            format!("timed out after {} without the marker", util::secs(limit))
        } else {
            format!("QEMU exited ({status}) without printing the marker")
        }));
    };
    let found = parsed.map_err(|e| fail(format!("{e:#}")))?;
    if found.cpus != cpus || found.kernel != guest.version {
        return Err(fail(format!(
            "expected kernel={} cpus={cpus}, the marker says kernel={} cpus={}",
            guest.version, found.kernel, found.cpus
        )));
    }
    if !status.success() {
        return Err(fail(format!(
            "the marker appeared, but QEMU did not exit with status 0 after it ({status})"
        )));
    }
    Ok(BootReport {
        arch,
        cpus,
        marker_line,
        to_marker,
        to_exit,
        log: log_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_lines() {
        let m = parse_marker("AXVISOR-LINUX-MARKER kernel=6.1.0-50-arm64 cpus=2")
            .unwrap()
            .unwrap();
        assert_eq!(
            m,
            Marker {
                kernel: "6.1.0-50-arm64".to_owned(),
                cpus: 2,
                compat: None,
            }
        );
        let m = parse_marker("AXVISOR-LINUX-MARKER kernel=6.1.0-50-arm64 cpus=1 compat=armv8l")
            .unwrap()
            .unwrap();
        assert_eq!(m.compat.as_deref(), Some("armv8l"));
        let prefixed =
            parse_marker("[linux] AXVISOR-LINUX-MARKER kernel=7.2.12+deb14-riscv64 cpus=1");
        assert_eq!(prefixed.unwrap().unwrap().kernel, "7.2.12+deb14-riscv64");
        assert!(parse_marker("[    0.000000] Booting Linux").is_none());
        assert!(parse_marker("AXVISOR-LINUX-MARKER kernel=x cpus=two")
            .unwrap()
            .is_err());
        assert!(parse_marker("AXVISOR-LINUX-MARKER kernel=x")
            .unwrap()
            .is_err());
    }

    #[test]
    fn direct_commands() {
        let guest = RealGuest {
            kernel: PathBuf::from("g/Image"),
            initramfs: PathBuf::from("g/initramfs.cpio"),
            version: "v".to_owned(),
        };
        let cmd = direct_command(Arch::Aarch64, &guest, 2).unwrap();
        assert_eq!(
            cmd.to_string(),
            "qemu-system-aarch64 -M virt,gic-version=3 -cpu cortex-a72 -smp 2 -m 1G -nographic \
             -monitor none -serial stdio -no-reboot -kernel g/Image -initrd g/initramfs.cpio \
             -append console=ttyAMA0 panic=-1"
        );
        let cmd = direct_command(Arch::Riscv64, &guest, 1).unwrap();
        assert!(cmd
            .to_string()
            .starts_with("qemu-system-riscv64 -M virt -cpu rv64 -bios default -smp 1 "));
        assert!(cmd.args.contains(&"console=ttyS0 panic=-1".to_owned()));
        let cmd = direct_command(Arch::X86_64, &guest, 2).unwrap();
        assert!(cmd
            .to_string()
            .starts_with("qemu-system-x86_64 -M pc -cpu EPYC -smp 2 "));
    }
}
