//! The kernel modules of the real-guest initramfs: Debian builds the virtio-mmio transport,
//! virtio-blk, virtio-net and the FAT filesystem as modules, so the initramfs carries them
//! (decompressed) and `/init` loads them with busybox `insmod`.
//!
//! Debian's packages do not ship `modules.dep` (its `postinst` runs `depmod`), so the
//! dependencies come from each module's own `.modinfo` section (`depends=a,b`), the same
//! field `depmod` reads; `modules.builtin` says which modules are built into the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

/// The modules the initramfs loads, with what they need: the virtio-mmio transport, the
/// virtio console, block and network drivers, and VFAT for the block test (its closure is
/// far smaller than ext4's: fat + vfat, against ext4 + jbd2 + mbcache + crc16) with the
/// code page and character sets FAT mounts by default. A module built into the kernel is
/// left out; so is one the kernel does not have (`fetch` says so).
pub const WANTED: &[&str] = &[
    "virtio_mmio",
    "virtio_console",
    "virtio_blk",
    "virtio_net",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_iso8859_1",
    "nls_utf8",
];

/// The file in the cache's and the initramfs's module directory listing the module names
/// in load order, one a line.
pub const LOAD_FILE: &str = "modules.load";
/// The file in the cache's module directory listing [`WANTED`] as it was when the modules
/// were picked: a cache with another list picks them again.
pub const WANTED_FILE: &str = "modules.wanted";

/// The modules picked from a kernel package, in load order (each after what it depends on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleSet {
    /// Name and the decompressed `.ko` file of each module, in load order.
    pub modules: Vec<(String, Vec<u8>)>,
    /// Wanted modules (or dependencies) the kernel has built in.
    pub builtin: Vec<String>,
    /// Wanted modules the kernel has neither as a module nor built in.
    pub absent: Vec<String>,
}

impl ModuleSet {
    /// The names in load order, one a line (the [`LOAD_FILE`]).
    pub fn load_list(&self) -> String {
        self.modules
            .iter()
            .map(|(name, _)| format!("{name}\n"))
            .collect()
    }

    /// Reads a set written by [`ModuleSet::write`], if `dir` holds one made from the current
    /// [`WANTED`] list.
    pub fn read(dir: &Path) -> Option<ModuleSet> {
        let wanted = fs::read_to_string(dir.join(WANTED_FILE)).ok()?;
        if wanted != wanted_list() {
            return None;
        }
        let order = fs::read_to_string(dir.join(LOAD_FILE)).ok()?;
        let modules = order
            .lines()
            .map(|name| {
                Some((
                    name.to_owned(),
                    fs::read(dir.join(format!("{name}.ko"))).ok()?,
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ModuleSet {
            modules,
            ..ModuleSet::default()
        })
    }

    /// Writes the set to `dir` (replaced as a whole): `<name>.ko` per module, [`LOAD_FILE`]
    /// and, last, [`WANTED_FILE`].
    pub fn write(&self, dir: &Path) -> Result<()> {
        let staging = dir.with_extension("partial");
        super::remove_dir_if_present(&staging)?;
        fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
        let put = |name: &str, data: &[u8]| {
            let path = staging.join(name);
            fs::write(&path, data).with_context(|| format!("writing {}", path.display()))
        };
        for (name, ko) in &self.modules {
            put(&format!("{name}.ko"), ko)?;
        }
        put(LOAD_FILE, self.load_list().as_bytes())?;
        put(WANTED_FILE, wanted_list().as_bytes())?;
        super::remove_dir_if_present(dir)?;
        fs::rename(&staging, dir)
            .with_context(|| format!("renaming {} to {}", staging.display(), dir.display()))
    }
}

/// [`WANTED`], one a line.
fn wanted_list() -> String {
    WANTED.iter().map(|name| format!("{name}\n")).collect()
}

/// The module name of a file name: `virtio-rng.ko.xz` → `virtio_rng` (the kernel treats
/// `-` and `_` in module names alike); `None` if it is not a module file.
pub fn module_name(file_name: &str) -> Option<String> {
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file_name.strip_suffix(ext))?;
    Some(stem.replace('-', "_"))
}

/// What the kernel has of one module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A loadable module, with the modules it depends on.
    Module(Vec<String>),
    /// Built into the kernel.
    Builtin,
    /// Neither.
    Absent,
}

/// The load order of `wanted` and everything it depends on: each module after its
/// dependencies, each once. `kind` says what the kernel has of a module. Returns the order,
/// the built-in names met and the absent wanted names; an absent dependency or a
/// dependency loop is an error.
pub fn resolve(
    wanted: &[&str],
    mut kind: impl FnMut(&str) -> Result<Kind>,
) -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
    #[derive(PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    struct Walk<'k> {
        kind: &'k mut dyn FnMut(&str) -> Result<Kind>,
        marks: BTreeMap<String, Mark>,
        order: Vec<String>,
        builtin: BTreeSet<String>,
    }
    impl Walk<'_> {
        /// Visits `name`; `Ok(false)` if it is absent.
        fn visit(&mut self, name: &str, chain: &mut Vec<String>) -> Result<bool> {
            match self.marks.get(name) {
                Some(Mark::Done) => return Ok(true),
                Some(Mark::Visiting) => {
                    bail!("module dependency loop: {} -> {name}", chain.join(" -> "))
                }
                None => {}
            }
            match (self.kind)(name)? {
                Kind::Absent => return Ok(false),
                Kind::Builtin => {
                    self.builtin.insert(name.to_owned());
                }
                Kind::Module(deps) => {
                    self.marks.insert(name.to_owned(), Mark::Visiting);
                    chain.push(name.to_owned());
                    for dep in &deps {
                        ensure!(
                            self.visit(dep, chain)?,
                            "module {name} depends on {dep}, which the kernel does not have"
                        );
                    }
                    chain.pop();
                    self.order.push(name.to_owned());
                }
            }
            self.marks.insert(name.to_owned(), Mark::Done);
            Ok(true)
        }
    }
    let mut walk = Walk {
        kind: &mut kind,
        marks: BTreeMap::new(),
        order: Vec::new(),
        builtin: BTreeSet::new(),
    };
    let mut absent = Vec::new();
    for name in wanted {
        if !walk.visit(name, &mut Vec::new())? {
            absent.push((*name).to_owned());
        }
    }
    Ok((walk.order, walk.builtin.into_iter().collect(), absent))
}

/// The `.modinfo` entries (`key=value`) of a module: the strings of its ELF section
/// `.modinfo` (a 64-bit little-endian ELF relocatable file, as on all three architectures).
pub fn modinfo(ko: &[u8]) -> Result<Vec<(String, String)>> {
    let u16_at = |at: usize| -> Result<u16> {
        let b = ko.get(at..at + 2).context("truncated ELF file")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| -> Result<usize> {
        let b = ko.get(at..at + 8).context("truncated ELF file")?;
        let v = u64::from_le_bytes(b.try_into().unwrap_or_default());
        usize::try_from(v).context("ELF offset out of range")
    };
    ensure!(
        ko.starts_with(b"\x7fELF\x02\x01"),
        "not a 64-bit little-endian ELF file"
    );
    let shoff = u64_at(0x28)?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    ensure!(
        shentsize >= 0x40,
        "ELF section headers of {shentsize} bytes"
    );
    // A section's name offset and its data; the data is read only for the sections used
    // (a `.bss` has a size but no bytes in the file).
    let header = |index: usize| -> Result<(usize, usize, usize)> {
        let at = index
            .checked_mul(shentsize)
            .and_then(|off| off.checked_add(shoff))
            .context("ELF section header out of range")?;
        let name = ko.get(at..at + 4).context("truncated ELF section header")?;
        let name = u32::from_le_bytes([name[0], name[1], name[2], name[3]]);
        Ok((
            usize::try_from(name)?,
            u64_at(at + 0x18)?,
            u64_at(at + 0x20)?,
        ))
    };
    let data = |offset: usize, size: usize| -> Result<&[u8]> {
        offset
            .checked_add(size)
            .and_then(|end| ko.get(offset..end))
            .context("ELF section out of the file")
    };
    let (_, names_at, names_size) = header(shstrndx)?;
    let names = data(names_at, names_size)?;
    for index in 0..shnum {
        let (name, offset, size) = header(index)?;
        let name = names.get(name..).unwrap_or_default();
        if name.starts_with(b".modinfo\0") {
            return Ok(data(offset, size)?
                .split(|&b| b == 0)
                .filter_map(|entry| {
                    let entry = String::from_utf8_lossy(entry);
                    let (key, value) = entry.split_once('=')?;
                    Some((key.to_owned(), value.to_owned()))
                })
                .collect());
        }
    }
    bail!("no .modinfo section")
}

/// The modules a module depends on, from its `depends=` entry (comma-separated, maybe empty).
pub fn depends(info: &[(String, String)]) -> Vec<String> {
    info.iter()
        .filter(|(key, _)| key == "depends")
        .flat_map(|(_, value)| value.split(','))
        .filter(|dep| !dep.is_empty())
        .map(|dep| dep.replace('-', "_"))
        .collect()
}

/// The module directory of `release` in an extracted package tree:
/// `usr/lib/modules/<release>` or `lib/modules/<release>`, whichever has `kernel/`.
pub fn modules_dir(tree: &Path, release: &str) -> Result<PathBuf> {
    ["usr/lib/modules", "lib/modules"]
        .iter()
        .map(|d| tree.join(d).join(release))
        .find(|d| d.join("kernel").is_dir())
        .with_context(|| {
            format!(
                "no {{usr/,}}lib/modules/{release}/kernel in {} (the kernel's modules)",
                tree.display()
            )
        })
}

/// Picks [`WANTED`] and its dependencies from an extracted kernel package tree: reads
/// `modules.builtin` (in either module directory of `release`), finds each module file
/// under `kernel/`, decompresses it (`.ko.xz`, `.ko.zst`, `.ko.gz`) and reads its
/// dependencies.
pub fn pick(tree: &Path, release: &str) -> Result<ModuleSet> {
    let dir = modules_dir(tree, release)?;
    let mut files = BTreeMap::new();
    index(&dir.join("kernel"), &mut files)?;
    let builtin: BTreeSet<String> = ["usr/lib/modules", "lib/modules"]
        .iter()
        .filter_map(|d| fs::read_to_string(tree.join(d).join(release).join("modules.builtin")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| module_name(line.rsplit('/').next()?))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut loaded: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let (order, builtin_met, absent) = resolve(WANTED, |name| {
        if let Some(path) = files.get(name) {
            let ko = decompressed(path)?;
            let deps =
                depends(&modinfo(&ko).with_context(|| format!("reading {}", path.display()))?);
            loaded.insert(name.to_owned(), ko);
            Ok(Kind::Module(deps))
        } else if builtin.contains(name) {
            Ok(Kind::Builtin)
        } else {
            Ok(Kind::Absent)
        }
    })?;
    let modules = order
        .into_iter()
        .map(|name| {
            let ko = loaded.remove(&name).unwrap_or_default();
            (name, ko)
        })
        .collect();
    Ok(ModuleSet {
        modules,
        builtin: builtin_met,
        absent,
    })
}

/// Adds every module file under `dir` to `files` by module name.
fn index(dir: &Path, files: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            index(&path, files)?;
        } else if let Some(name) = module_name(&entry.file_name().to_string_lossy()) {
            files.insert(name, path);
        }
    }
    Ok(())
}

/// A module file's contents, decompressed if it is xz, zstd or gzip.
fn decompressed(path: &Path) -> Result<Vec<u8>> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match super::Packing::of(&data).decompressor() {
        None => Ok(data),
        Some(tool) => super::decompress(tool, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_module_files() {
        assert_eq!(module_name("virtio_blk.ko").as_deref(), Some("virtio_blk"));
        assert_eq!(
            module_name("virtio-rng.ko.xz").as_deref(),
            Some("virtio_rng")
        );
        assert_eq!(module_name("fat.ko.zst").as_deref(), Some("fat"));
        assert_eq!(module_name("modules.builtin"), None);
        assert_eq!(module_name("vmlinuz"), None);
    }

    fn kinds(name: &str) -> Result<Kind> {
        let deps = |d: &[&str]| Kind::Module(d.iter().map(|s| s.to_string()).collect());
        Ok(match name {
            "virtio_net" => deps(&["net_failover"]),
            "net_failover" => deps(&["failover"]),
            "failover" => deps(&[]),
            "virtio_blk" => deps(&["virtio_ring"]),
            "virtio_ring" | "virtio" => Kind::Builtin,
            "vfat" => deps(&["fat"]),
            "fat" => deps(&[]),
            "broken" => deps(&["nowhere"]),
            "loop_a" => deps(&["loop_b"]),
            "loop_b" => deps(&["loop_a"]),
            _ => Kind::Absent,
        })
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let (order, builtin, absent) =
            resolve(&["virtio_net", "vfat", "virtio_blk", "fat", "nls_x"], kinds).unwrap();
        assert_eq!(
            order,
            [
                "failover",
                "net_failover",
                "virtio_net",
                "fat",
                "vfat",
                "virtio_blk"
            ]
        );
        assert_eq!(builtin, ["virtio_ring"]);
        assert_eq!(absent, ["nls_x"]);
    }

    #[test]
    fn absent_dependencies_and_loops_are_errors() {
        let e = resolve(&["broken"], kinds).unwrap_err();
        assert!(
            format!("{e:#}").contains("broken depends on nowhere"),
            "{e:#}"
        );
        let e = resolve(&["loop_a"], kinds).unwrap_err();
        assert!(format!("{e:#}").contains("loop"), "{e:#}");
    }

    /// A minimal ELF64 relocatable file with a `.modinfo` section (and the section-name
    /// table), as a module has.
    fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.modinfo\0.shstrtab\0";
        let mut file = vec![0u8; 0x40];
        file[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let modinfo_at = file.len();
        file.extend_from_slice(modinfo);
        let names_at = file.len();
        file.extend_from_slice(names);
        let shoff = file.len();
        file[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        file[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        file[0x3c..0x3e].copy_from_slice(&4u16.to_le_bytes());
        file[0x3e..0x40].copy_from_slice(&3u16.to_le_bytes());
        let mut header = |name: u32, offset: usize, size: usize| {
            let mut h = vec![0u8; 0x40];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            file.extend_from_slice(&h);
        };
        header(0, 0, 0);
        // A .bss-like section first: a size, no bytes in the file.
        header(0, 0x40, 1 << 20);
        header(1, modinfo_at, modinfo.len());
        header(10, names_at, names.len());
        file
    }

    /// The fetched modules (`cargo xtask guests fetch`), where there are: each one's
    /// `.modinfo` reads, and what it depends on from the set comes before it.
    #[test]
    fn cached_modules_load_after_their_dependencies() {
        for arch in crate::arch::Arch::ALL {
            let dir = super::super::cache_dir(arch).join(super::super::MODULES_DIR);
            let Some(set) = ModuleSet::read(&dir) else {
                eprintln!("no cached {arch} modules; skipped");
                continue;
            };
            let names: Vec<&str> = set.modules.iter().map(|(n, _)| n.as_str()).collect();
            assert!(names.contains(&"virtio_net"), "{arch}: {names:?}");
            for (i, (name, ko)) in set.modules.iter().enumerate() {
                for dep in depends(&modinfo(ko).unwrap()) {
                    if let Some(at) = names.iter().position(|n| *n == dep) {
                        assert!(at < i, "{arch}: {name} before its dependency {dep}");
                    }
                }
            }
            let net = &set.modules[names.iter().position(|n| *n == "virtio_net").unwrap()].1;
            assert!(depends(&modinfo(net).unwrap()).contains(&"net_failover".to_owned()));
        }
    }

    #[test]
    fn modinfo_gives_the_dependencies() {
        let ko = elf_with_modinfo(b"license=GPL\0depends=net_failover,virtio-x\0name=virtio_net\0");
        let info = modinfo(&ko).unwrap();
        assert_eq!(depends(&info), ["net_failover", "virtio_x"]);
        let none = elf_with_modinfo(b"depends=\0name=failover\0");
        assert!(depends(&modinfo(&none).unwrap()).is_empty());
        assert!(modinfo(b"\x7fELF\x02\x01").is_err());
        let mut cut = ko.clone();
        cut.truncate(cut.len() - 0x30);
        assert!(modinfo(&cut).is_err());
    }
}
