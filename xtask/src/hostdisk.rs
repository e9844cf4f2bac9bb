//! A scenario's extra host disks (`[[host_disks]]`, docs/testing.md): raw disks of zeros
//! attached to QEMU after the hypervisor's own disk, each a virtio-blk device whose serial
//! is its name (the name VM configs give in `backing = { disk = ... }`), checked after the
//! run: the texts VMs wrote at their places, and zeros outside the regions they may write.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::arch::Arch;

/// The largest host disk a scenario may have: 64 MiB (it is written out for every run).
pub const MAX_SIZE: u64 = 64 << 20;

/// One `[[host_disks]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDisk {
    /// Its name: the virtio-blk serial, 1 to 20 characters out of `[A-Za-z0-9_-]`.
    pub name: String,
    /// Its size in bytes, a multiple of 512; the disk starts as zeros.
    pub size: u64,
    /// After the run every byte outside `[start, end)` is still zero (what no VM may write).
    pub zero_outside: Option<[u64; 2]>,
    /// After the run each text is at its place.
    #[serde(default)]
    pub holds: Vec<Holds>,
}

/// A `[[host_disks.holds]]` entry: the bytes at `at` are `text`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holds {
    /// Byte offset on the disk.
    pub at: u64,
    /// The text there, not empty.
    pub text: String,
}

impl HostDisk {
    /// Checks the entry's values (the scenario file's `host_disks`).
    pub fn check(&self) -> Result<()> {
        let name_ok = (1..=20).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            bail!(
                "field `host_disks`: name {:?} is not 1 to 20 characters out of [A-Za-z0-9_-]",
                self.name
            );
        }
        if self.size == 0 || self.size > MAX_SIZE || !self.size.is_multiple_of(512) {
            bail!(
                "field `host_disks`: {}: size {} is not a multiple of 512 from 512 to {MAX_SIZE}",
                self.name,
                self.size
            );
        }
        if let Some([start, end]) = self.zero_outside {
            if start > end || end > self.size {
                bail!(
                    "field `host_disks`: {}: zero_outside [{start:#x}, {end:#x}) is not a range on the disk",
                    self.name
                );
            }
        }
        for h in &self.holds {
            let fits = (h.text.len() as u64)
                .checked_add(h.at)
                .is_some_and(|end| end <= self.size);
            if h.text.is_empty() || !fits {
                bail!(
                    "field `host_disks`: {}: holds {:?} at {:#x} is empty or runs past the disk",
                    self.name,
                    h.text,
                    h.at
                );
            }
        }
        Ok(())
    }

    /// Its image file beside the scenario's log `log_path`.
    pub fn file(&self, log_path: &Path) -> PathBuf {
        log_path.with_extension(format!("hd-{}.img", self.name))
    }

    /// Makes its image (zeros) and returns the QEMU arguments that attach it on `arch`.
    pub fn attach(&self, arch: Arch, log_path: &Path) -> Result<Vec<String>> {
        let file = self.file(log_path);
        File::create(&file)
            .and_then(|f| f.set_len(self.size))
            .with_context(|| format!("field `host_disks`: making {}", file.display()))?;
        let device = match arch {
            Arch::X86_64 => "virtio-blk-pci",
            _ => "virtio-blk-device",
        };
        let id = format!("hd-{}", self.name);
        Ok(vec![
            "-drive".to_owned(),
            format!("file={},if=none,format=raw,id={id}", file.display()),
            "-device".to_owned(),
            format!("{device},drive={id},serial={}", self.name),
        ])
    }

    /// What the image beside `log_path` holds after the run, against `holds` and
    /// `zero_outside`: the first difference.
    pub fn check_after(&self, log_path: &Path) -> Result<(), String> {
        let file = self.file(log_path);
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        self.check_bytes(&bytes)
    }

    fn check_bytes(&self, bytes: &[u8]) -> Result<(), String> {
        for h in &self.holds {
            let at = h.at as usize;
            let there = bytes.get(at..at + h.text.len()).unwrap_or_default();
            if there != h.text.as_bytes() {
                return Err(format!(
                    "host disk {}: {:#x} does not hold {:?} (it holds {:?})",
                    self.name,
                    h.at,
                    h.text,
                    String::from_utf8_lossy(there)
                ));
            }
        }
        if let Some([start, end]) = self.zero_outside {
            let outside = bytes
                .iter()
                .enumerate()
                .find(|&(i, &b)| b != 0 && !(start..end).contains(&(i as u64)));
            if let Some((i, b)) = outside {
                return Err(format!(
                    "host disk {}: byte {i:#x} is {b:#04x}, outside [{start:#x}, {end:#x}) where nothing may be written",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(text: &str) -> HostDisk {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn entries_are_checked() {
        let ok = disk("name = \"data\"\nsize = 4096\nzero_outside = [512, 1024]\n[[holds]]\nat = 512\ntext = \"hi\"\n");
        ok.check().unwrap();
        for bad in [
            "name = \"\"\nsize = 512",
            "name = \"a b\"\nsize = 512",
            "name = \"data\"\nsize = 100",
            "name = \"data\"\nsize = 0",
            "name = \"data\"\nsize = 512\nzero_outside = [0, 1024]",
            "name = \"data\"\nsize = 512\n[[holds]]\nat = 510\ntext = \"abc\"",
            "name = \"data\"\nsize = 512\n[[holds]]\nat = 0\ntext = \"\"",
        ] {
            assert!(disk(bad).check().is_err(), "{bad}");
        }
        assert!(toml::from_str::<HostDisk>("name = \"d\"\nsize = 512\nserial = 1").is_err());
    }

    #[test]
    fn after_the_run_texts_and_zeros_are_checked() {
        let d = disk("name = \"data\"\nsize = 4096\nzero_outside = [512, 1024]\n[[holds]]\nat = 512\ntext = \"hi\"\n");
        let mut bytes = vec![0u8; 4096];
        assert!(d
            .check_bytes(&bytes)
            .unwrap_err()
            .contains("does not hold \"hi\""));
        bytes[512..514].copy_from_slice(b"hi");
        bytes[1023] = 7;
        d.check_bytes(&bytes).unwrap();
        bytes[1024] = 7;
        assert_eq!(
            d.check_bytes(&bytes).unwrap_err(),
            "host disk data: byte 0x400 is 0x07, outside [0x200, 0x400) where nothing may be written"
        );
        let args = d
            .attach(
                Arch::Aarch64,
                &std::env::temp_dir().join(format!("xtask-hd-{}.log", std::process::id())),
            )
            .unwrap();
        assert_eq!(args[3], "virtio-blk-device,drive=hd-data,serial=data");
        let file = PathBuf::from(
            args[1]
                .split(',')
                .next()
                .unwrap()
                .trim_start_matches("file="),
        );
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 4096);
        std::fs::remove_file(file).unwrap();
    }
}
