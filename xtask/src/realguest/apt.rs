//! apt for a foreign architecture in private directories: no root, no change to the system's
//! apt state.
//!
//! Each architecture gets a directory `.cache/guests/apt-<arch>/` with its own `apt.conf`
//! (passed as `APT_CONFIG`), sources, package lists, download cache and an empty dpkg status
//! file. The config also points `Dir::Etc::Parts` at an empty directory, so the system's
//! `/etc/apt/apt.conf.d` is not read: its hooks (Docker images delete
//! `/var/cache/apt/archives/*.deb` after every `apt-get update`) must not run. The few system
//! settings that matter for downloading (proxies, Release date checks) are copied over, see
//! [`carried_settings`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// Where the mirror comes from when the system's sources name none.
pub const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";
/// The keyring that verifies Debian's Release files (package `debian-archive-keyring`).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The system's apt sources.
const SYSTEM_SOURCE_LIST: &str = "/etc/apt/sources.list";
/// The system's apt sources directory.
const SYSTEM_SOURCE_PARTS: &str = "/etc/apt/sources.list.d";

/// Names of Debian suites (codenames and aliases) that identify a Debian mirror in the
/// system's sources. Suites with a suffix (`bookworm-updates`) count, `-security` does not
/// (it lives on a different archive).
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

/// A Debian mirror as found in the system's apt sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// The archive URI, e.g. `http://deb.debian.org/debian`.
    pub uri: String,
    /// The keyring the system uses for it (`Signed-By`), when it names a file.
    pub signed_by: Option<String>,
}

/// One private apt setup for one Debian architecture.
#[derive(Clone, Debug)]
pub struct PrivateApt {
    /// The directory holding everything (`.cache/guests/apt-<arch>`).
    pub dir: PathBuf,
    /// The Debian architecture name, e.g. `arm64`.
    pub deb_arch: String,
}

impl PrivateApt {
    /// Creates the directories and `apt.conf` under `dir` for `deb_arch` (idempotent).
    /// `carried` are config lines copied from the system (see [`carried_settings`]).
    pub fn create(dir: &Path, deb_arch: &str, carried: &[String]) -> Result<PrivateApt> {
        let apt = PrivateApt {
            dir: dir.to_owned(),
            deb_arch: deb_arch.to_owned(),
        };
        for sub in [
            "conf.d",
            "preferences.d",
            "sources.list.d",
            "lists/partial",
            "cache/archives/partial",
        ] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            fs::write(&status, b"").with_context(|| format!("creating {}", status.display()))?;
        }
        let conf = apt.config_text(carried);
        fs::write(apt.config_path(), conf)
            .with_context(|| format!("writing {}", apt.config_path().display()))?;
        Ok(apt)
    }

    /// The private `apt.conf` (what `APT_CONFIG` names).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("apt.conf")
    }

    /// The private sources file (deb822).
    pub fn sources_path(&self) -> PathBuf {
        self.dir.join("sources.list.d").join("guests.sources")
    }

    fn config_text(&self, carried: &[String]) -> String {
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        let mut text = String::from(
            "// Written by `cargo xtask guests fetch`: a private apt for downloading foreign\n\
             // packages. The system's /etc/apt is not read (Dir::Etc::Parts is empty).\n",
        );
        let settings = [
            ("Dir::Etc::Parts", d("conf.d")),
            ("Dir::Etc::main", "/dev/null".to_owned()),
            ("Dir::Etc::SourceList", "/dev/null".to_owned()),
            ("Dir::Etc::SourceParts", d("sources.list.d")),
            ("Dir::Etc::Preferences", "/dev/null".to_owned()),
            ("Dir::Etc::PreferencesParts", d("preferences.d")),
            ("Dir::State", d("")),
            ("Dir::State::Lists", d("lists")),
            ("Dir::State::status", d("status")),
            ("Dir::Cache", d("cache")),
            ("Dir::Log", d("")),
            ("APT::Architecture", self.deb_arch.clone()),
            ("Acquire::Languages", "none".to_owned()),
            // As root apt downloads as `_apt`, which cannot write to a directory we own
            // (and warns); as another user this has no effect.
            ("APT::Sandbox::User", "root".to_owned()),
        ];
        for (key, value) in settings {
            text.push_str(&format!("{key} \"{value}\";\n"));
        }
        text.push_str(&format!(
            "APT::Architectures {{ \"{}\"; }};\n",
            self.deb_arch
        ));
        if !carried.is_empty() {
            text.push_str("// Copied from the system's apt configuration:\n");
            for line in carried {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Points the private sources at `suite` (component `main`) of `mirror`.
    pub fn set_suite(&self, mirror: &Mirror, suite: &str) -> Result<()> {
        let mut text = format!(
            "Types: deb\nURIs: {}\nSuites: {suite}\nComponents: main\n",
            mirror.uri
        );
        let keyring = mirror.signed_by.clone().or_else(|| {
            Path::new(DEBIAN_KEYRING)
                .is_file()
                .then(|| DEBIAN_KEYRING.into())
        });
        if let Some(keyring) = keyring {
            text.push_str(&format!("Signed-By: {keyring}\n"));
        }
        let path = self.sources_path();
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// An `apt-get`/`apt-cache` command using the private configuration (and the C locale,
    /// so its output can be parsed).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("APT_CONFIG", self.config_path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        cmd
    }

    /// How a command of this apt is shown to the user.
    pub fn show(&self, cmd: &Command) -> String {
        format!(
            "APT_CONFIG={} {}",
            self.config_path().display(),
            crate::util::display_command(cmd)
        )
    }

    /// Runs `cmd` (from [`Self::command`]) with inherited output; fails unless it exits 0.
    pub fn run(&self, mut cmd: Command) -> Result<()> {
        let shown = self.show(&cmd);
        println!("$ {shown}");
        let status = cmd
            .status()
            .with_context(|| format!("could not start `{shown}`"))?;
        if !status.success() {
            bail!("`{shown}` failed with {status}");
        }
        Ok(())
    }

    /// Runs `cmd` and returns its standard output; fails unless it exits 0, with its
    /// standard error in the message.
    pub fn output(&self, mut cmd: Command) -> Result<String> {
        let shown = self.show(&cmd);
        let Output {
            status,
            stdout,
            stderr,
        } = cmd
            .output()
            .with_context(|| format!("could not start `{shown}`"))?;
        if !status.success() {
            bail!(
                "`{shown}` failed with {status}: {}",
                String::from_utf8_lossy(&stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }

    /// `apt-cache depends PACKAGE`, parsed into its hard dependencies.
    pub fn depends(&self, package: &str) -> Result<Vec<String>> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["depends", package]);
        Ok(parse_depends(&self.output(cmd)?))
    }

    /// Whether the package index knows a (real, downloadable) package of this name.
    pub fn has_package(&self, package: &str) -> bool {
        let mut cmd = self.command("apt-cache");
        cmd.args(["show", "--no-all-versions", package])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.status().map(|s| s.success()).unwrap_or(false)
    }
}

/// The hard dependencies (`Depends:` and `PreDepends:`) named in `apt-cache depends` output,
/// in order. Alternatives (`|Depends:`) count; virtual packages (`<name>`) and the packages
/// listed under them as providers do not.
pub fn parse_depends(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches('|');
            let (kind, target) = line.split_once(':')?;
            let target = target.trim();
            let hard = kind == "Depends" || kind == "PreDepends";
            (hard && !target.starts_with('<') && !target.is_empty()).then(|| target.to_owned())
        })
        .collect()
}

/// The kernel release (what `uname -r` prints, e.g. `6.1.0-50-arm64`) that the metapackage
/// `linux-image-<flavour>` depends on, from its dependencies: the first
/// `linux-image-<version>-<flavour>` whose version starts with a digit.
pub fn kernel_release(depends: &[String], flavour: &str) -> Option<String> {
    depends.iter().find_map(|dep| {
        let release = dep.strip_prefix("linux-image-")?;
        let version = release.strip_suffix(flavour)?.strip_suffix('-')?;
        version
            .starts_with(|c: char| c.is_ascii_digit())
            .then(|| release.to_owned())
    })
}

/// The package that holds the kernel image of `release`: `linux-binary-<release>` when
/// `linux-image-<release>` depends on it (Debian's newer split, where `linux-image-*` is a
/// metapackage), else `linux-image-<release>` itself.
pub fn image_package(release: &str, image_depends: &[String]) -> String {
    let binary = format!("linux-binary-{release}");
    if image_depends.contains(&binary) {
        binary
    } else {
        format!("linux-image-{release}")
    }
}

/// The packages besides the kernel's that hold `release`'s modules and their lists
/// (`modules.builtin`): `linux-modules-<release>` and `linux-base-<release>` when
/// `linux-image-<release>` depends on them (Debian's newer split); none in the old layout,
/// where the kernel's package holds everything.
pub fn module_packages(release: &str, image_depends: &[String]) -> Vec<String> {
    ["linux-modules", "linux-base"]
        .iter()
        .map(|prefix| format!("{prefix}-{release}"))
        .filter(|package| image_depends.contains(package))
        .collect()
}

/// The system's Debian mirror, from `/etc/apt/sources.list` and `/etc/apt/sources.list.d`
/// (`*.list` and `*.sources`, in name order), or [`FALLBACK_MIRROR`].
pub fn system_mirror() -> Mirror {
    let mut files = Vec::new();
    if let Ok(text) = fs::read_to_string(SYSTEM_SOURCE_LIST) {
        files.push((SYSTEM_SOURCE_LIST.to_owned(), text));
    }
    if let Ok(dir) = fs::read_dir(SYSTEM_SOURCE_PARTS) {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if let Ok(text) = fs::read_to_string(&path) {
                files.push((path.display().to_string(), text));
            }
        }
    }
    find_mirror(&files).unwrap_or_else(|| Mirror {
        uri: FALLBACK_MIRROR.to_owned(),
        signed_by: None,
    })
}

/// The first `deb` source in `files` (name, text) that serves a Debian suite (see
/// [`DEBIAN_SUITES`]). Files are one-line `.list` or deb822 `.sources` by their name; other
/// names are ignored, as apt does.
pub fn find_mirror(files: &[(String, String)]) -> Option<Mirror> {
    files.iter().find_map(|(name, text)| {
        if name.ends_with(".sources") {
            deb822_mirror(text)
        } else if name.ends_with(".list") {
            one_line_mirror(text)
        } else {
            None
        }
    })
}

fn is_debian_suite(suite: &str) -> bool {
    let base = suite.split_once('-').map_or(suite, |(base, _)| base);
    DEBIAN_SUITES.contains(&base) && !suite.ends_with("-security")
}

fn keyring_file(value: &str) -> Option<String> {
    let value = value.trim();
    value.starts_with('/').then(|| value.to_owned())
}

fn one_line_mirror(text: &str) -> Option<Mirror> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut signed_by = None;
        let mut uri = words.next()?;
        if let Some(first) = uri.strip_prefix('[') {
            // Options: `[key=value ...]`, possibly with spaces after `[` or before `]`.
            let mut option = first.to_owned();
            loop {
                let done = option.ends_with(']');
                let opt = option.trim_end_matches(']');
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = keyring_file(v);
                }
                if done {
                    break;
                }
                option = words.next()?.to_owned();
            }
            uri = words.next()?;
        }
        let suite = words.next()?;
        is_debian_suite(suite).then(|| Mirror {
            uri: uri.trim_end_matches('/').to_owned(),
            signed_by,
        })
    })
}

fn deb822_mirror(text: &str) -> Option<Mirror> {
    // Stanzas are separated by blank lines; comments start with `#`.
    let mut stanzas: Vec<Vec<&str>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
        } else if !line.starts_with('#') {
            stanzas.last_mut().expect("never empty").push(line);
        }
    }
    stanzas.iter().find_map(|stanza| {
        let field = |name: &str| {
            stanza.iter().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        let types = field("Types")?;
        if !types.split_whitespace().any(|t| t == "deb") {
            return None;
        }
        if field("Enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
            return None;
        }
        if !field("Suites")?.split_whitespace().any(is_debian_suite) {
            return None;
        }
        let uri = field("URIs")?.split_whitespace().next()?.to_owned();
        Some(Mirror {
            uri: uri.trim_end_matches('/').to_owned(),
            signed_by: field("Signed-By").as_deref().and_then(keyring_file),
        })
    })
}

/// The system apt settings a private apt keeps (as config lines): proxies and the Release
/// file date checks (a machine whose mirror is a frozen snapshot turns
/// `Acquire::Check-Valid-Until` off). Read with `apt-config dump`; empty if that fails.
pub fn carried_settings() -> Vec<String> {
    let mut cmd = Command::new("apt-config");
    cmd.arg("dump")
        .env_remove("APT_CONFIG")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    match cmd.output() {
        Ok(out) if out.status.success() => carried_from_dump(&String::from_utf8_lossy(&out.stdout)),
        _ => Vec::new(),
    }
}

/// The lines of `apt-config dump` output that [`carried_settings`] keeps.
pub fn carried_from_dump(dump: &str) -> Vec<String> {
    const EXACT: &[&str] = &["Acquire::Check-Valid-Until", "Acquire::Check-Date"];
    const PREFIXES: &[&str] = &[
        "Acquire::http::Proxy",
        "Acquire::https::Proxy",
        "Acquire::ftp::Proxy",
    ];
    dump.lines()
        .filter(|line| {
            let Some((key, value)) = line.split_once(' ') else {
                return false;
            };
            let wanted = EXACT.iter().any(|k| key.eq_ignore_ascii_case(k))
                || PREFIXES
                    .iter()
                    .any(|p| key.len() >= p.len() && key[..p.len()].eq_ignore_ascii_case(p));
            wanted && value.starts_with('"') && value.ends_with("\";") && value != "\"\";"
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM_META: &str = "\
linux-image-arm64
  Depends: linux-image-6.1.0-50-arm64
";

    const FORKY_META: &str = "\
linux-image-riscv64
  Depends: linux-base-riscv64
  Depends: linux-image-7.2.12+deb14-riscv64
";

    const FORKY_IMAGE: &str = "\
linux-image-7.2.12+deb14-riscv64
  PreDepends: linux-base
 |Depends: dracut
 |Depends: initramfs-tools
  Depends: <linux-initramfs-tool>
    dracut
    initramfs-tools
    tiny-initramfs
  Depends: linux-base-7.2.12+deb14-riscv64
  Depends: linux-binary-7.2.12+deb14-riscv64
  Depends: linux-modules-7.2.12+deb14-riscv64
  Breaks: flash-kernel
  Recommends: apparmor
  Suggests: linux-doc-7.2
";

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn depends_keeps_hard_dependencies_only() {
        assert_eq!(
            parse_depends(FORKY_IMAGE),
            strings(&[
                "linux-base",
                "dracut",
                "initramfs-tools",
                "linux-base-7.2.12+deb14-riscv64",
                "linux-binary-7.2.12+deb14-riscv64",
                "linux-modules-7.2.12+deb14-riscv64",
            ])
        );
    }

    #[test]
    fn kernel_release_from_the_metapackage() {
        let arm = parse_depends(BOOKWORM_META);
        assert_eq!(
            kernel_release(&arm, "arm64").as_deref(),
            Some("6.1.0-50-arm64")
        );
        let rv = parse_depends(FORKY_META);
        assert_eq!(
            kernel_release(&rv, "riscv64").as_deref(),
            Some("7.2.12+deb14-riscv64")
        );
        // `linux-base-riscv64` and other flavours are not kernel images.
        assert_eq!(kernel_release(&rv, "arm64"), None);
        assert_eq!(
            kernel_release(&strings(&["linux-image-rt-arm64"]), "arm64"),
            None
        );
    }

    #[test]
    fn module_packages_follow_the_split() {
        let release = "7.2.12+deb14-riscv64";
        let split = strings(&[
            "linux-base-7.2.12+deb14-riscv64",
            "linux-binary-7.2.12+deb14-riscv64",
            "linux-modules-7.2.12+deb14-riscv64",
        ]);
        assert_eq!(
            module_packages(release, &split),
            [
                "linux-modules-7.2.12+deb14-riscv64",
                "linux-base-7.2.12+deb14-riscv64"
            ]
        );
        assert!(module_packages("6.1.0-50-arm64", &strings(&["linux-base"])).is_empty());
    }

    #[test]
    fn image_package_follows_the_binary_split() {
        let rv = parse_depends(FORKY_IMAGE);
        assert_eq!(
            image_package("7.2.12+deb14-riscv64", &rv),
            "linux-binary-7.2.12+deb14-riscv64"
        );
        let arm = strings(&["linux-base", "kmod"]);
        assert_eq!(
            image_package("6.1.0-50-arm64", &arm),
            "linux-image-6.1.0-50-arm64"
        );
    }

    fn file(name: &str, text: &str) -> (String, String) {
        (name.to_owned(), text.to_owned())
    }

    #[test]
    fn mirror_from_deb822_skips_security_disabled_and_foreign_sources() {
        let files = [
            file(
                "/etc/apt/sources.list.d/nodesource.sources",
                "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n",
            ),
            file(
                "/etc/apt/sources.list.d/cloud.list.disabled",
                "deb http://example.org/debian bookworm main\n",
            ),
            file(
                "/etc/apt/sources.list.d/debian.sources",
                "Types: deb\n# http://snapshot.debian.org/archive/debian-security/x\n\
                 URIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\
                 Components: main\n\n\
                 Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n\
                 Types: deb-src deb\nURIs: http://ftp.de.debian.org/debian/\n\
                 Suites: bookworm bookworm-updates\nComponents: main\n\
                 Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            ),
        ];
        assert_eq!(
            find_mirror(&files),
            Some(Mirror {
                uri: "http://ftp.de.debian.org/debian".to_owned(),
                signed_by: Some(DEBIAN_KEYRING.to_owned()),
            })
        );
    }

    #[test]
    fn mirror_from_one_line_sources() {
        let files = [file(
            "/etc/apt/sources.list",
            "# deb http://commented.example/debian bookworm main\n\
             deb-src http://src.example/debian bookworm main\n\
             deb http://security.debian.org/debian-security bookworm-security main\n\
             deb [ arch=amd64 signed-by=/k.gpg ] http://mirror.example/debian/ trixie main\n",
        )];
        assert_eq!(
            find_mirror(&files),
            Some(Mirror {
                uri: "http://mirror.example/debian".to_owned(),
                signed_by: Some("/k.gpg".to_owned()),
            })
        );
        assert_eq!(
            find_mirror(&[file("x.list", "deb http://a/ubuntu jammy main\n")]),
            None
        );
    }

    #[test]
    fn carried_settings_are_proxies_and_date_checks() {
        let dump = "\
Acquire::Check-Valid-Until \"false\";
Acquire::Check-Date \"false\";
Acquire::GzipIndexes \"true\";
Acquire::http::Proxy \"http://proxy:3128/\";
Acquire::http::Proxy::deb.debian.org \"DIRECT\";
Acquire::https::Proxy \"\";
APT::Update::Post-Invoke:: \"rm -f /var/cache/apt/archives/*.deb\";
";
        assert_eq!(
            carried_from_dump(dump),
            strings(&[
                "Acquire::Check-Valid-Until \"false\";",
                "Acquire::Check-Date \"false\";",
                "Acquire::http::Proxy \"http://proxy:3128/\";",
                "Acquire::http::Proxy::deb.debian.org \"DIRECT\";",
            ])
        );
    }
}
