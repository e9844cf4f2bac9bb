//! Where a VM's config and images come from: built into the hypervisor image
//! ([`crate::images`]), or a config file on the disk (`/vms/*.toml` at boot, `vm create
//! FILE`) whose image fields are paths on the disk, relative to the config file's directory
//! (docs/vm-config.md, "VMs on the disk").

use crate::disk::{self, FileError, FrameFile};
use crate::images::EmbeddedVm;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

/// Where a VM came from.
#[derive(Clone)]
pub enum VmSource {
    /// Built into the hypervisor image.
    Embedded(&'static EmbeddedVm),
    /// A config file on the disk, with its images read into frames.
    Disk(Arc<DiskVm>),
}

/// A VM config read from the disk and the images it names, each read whole into frames of
/// its own (kept while any VM built from it exists: its [`VmSource`] is held by the VM's
/// run and by the shell's list).
pub struct DiskVm {
    file: String,
    text: String,
    /// (image field's value, contents).
    images: Vec<(String, FrameFile)>,
}

/// Why a config on the disk could not be read. `Display` is one line naming the file (and
/// the field).
#[derive(Debug)]
pub enum LoadError {
    /// The config file itself.
    Config {
        /// The config file.
        file: String,
        /// What the disk said.
        error: FileError,
    },
    /// The config is not valid UTF-8 or does not parse.
    Parse {
        /// The config file.
        file: String,
        /// What the parser said.
        error: String,
    },
    /// An image it names.
    Image {
        /// The config file.
        file: String,
        /// The field, e.g. `kernel.image`.
        field: &'static str,
        /// The field's value.
        value: String,
        /// What the disk said (it names the resolved path).
        error: FileError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config { file, error } => write!(f, "vm config {file}: {error}"),
            Self::Parse { file, error } => write!(f, "vm config {file}: {error}"),
            Self::Image {
                file,
                field,
                value,
                error,
            } => write!(f, "vm config {file}: field `{field}` = {value:?}: {error}"),
        }
    }
}

/// Reads the config at `file` on the disk and every image it names.
pub fn load(file: &str) -> Result<VmSource, LoadError> {
    let bytes =
        disk::read(file, axvmconfig::DISK_CONFIG_MAX).map_err(|error| LoadError::Config {
            file: file.into(),
            error,
        })?;
    let parse = |error: String| LoadError::Parse {
        file: file.into(),
        error,
    };
    let text = String::from_utf8(bytes).map_err(|_| parse("not UTF-8 text".into()))?;
    let config = axvmconfig::from_toml(&text).map_err(|e| parse(alloc::format!("{e}")))?;
    let mut images: Vec<(String, FrameFile)> = Vec::new();
    for (field, value) in axvmconfig::image_fields(&config) {
        if images.iter().any(|(v, _)| *v == value) {
            continue;
        }
        let path = axvmconfig::image_path(file, &value);
        let image = disk::read_to_frames(&path).map_err(|error| LoadError::Image {
            file: file.into(),
            field,
            value: value.clone(),
            error,
        })?;
        images.push((value, image));
    }
    Ok(VmSource::Disk(Arc::new(DiskVm {
        file: file.into(),
        text,
        images,
    })))
}

/// The configs in `/vms` on the disk (`*.toml`, by name), none without a disk or a `/vms`.
pub fn disk_configs() -> Vec<String> {
    let Ok(entries) = disk::list("/vms") else {
        return Vec::new();
    };
    let mut files: Vec<String> = entries
        .into_iter()
        .filter(|m| m.kind == axfs::FileKind::File)
        .filter(|m| {
            let n = m.name.as_bytes();
            n.len() > 5 && n[n.len() - 5..].eq_ignore_ascii_case(b".toml")
        })
        .map(|m| alloc::format!("/vms/{}", m.name))
        .collect();
    files.sort();
    files
}

impl VmSource {
    /// The config file: as given to the build, or its path on the disk.
    pub fn file(&self) -> &str {
        match self {
            Self::Embedded(vm) => vm.file,
            Self::Disk(vm) => &vm.file,
        }
    }

    /// Where the config lives, for `vm show`.
    pub fn place(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "built into the image",
            Self::Disk(_) => "on the disk",
        }
    }

    /// The config's text.
    pub fn config(&self) -> &str {
        match self {
            Self::Embedded(vm) => vm.config,
            Self::Disk(vm) => &vm.text,
        }
    }

    /// The contents of the image a field names.
    pub fn image(&self, name: &str) -> Option<&'static [u8]> {
        match self {
            Self::Embedded(vm) => vm.image(name),
            Self::Disk(vm) => vm.images.iter().find(|(n, _)| n == name).map(|(_, f)| {
                let bytes = f.bytes();
                // SAFETY: the frames stay allocated while this `DiskVm` lives, and every
                // VM that borrows an image holds its `VmSource` (an `Arc` of it) in its run,
                // declared after the VM so the VM is dropped first; nothing else keeps the
                // bytes.
                unsafe { core::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) }
            }),
        }
    }

    /// Every image's size by its name (for validation).
    pub fn image_sizes(&self) -> BTreeMap<String, u64> {
        match self {
            Self::Embedded(vm) => vm
                .images
                .iter()
                .map(|(n, b)| (String::from(*n), b.len() as u64))
                .collect(),
            Self::Disk(vm) => vm
                .images
                .iter()
                .map(|(n, f)| (n.clone(), f.bytes().len() as u64))
                .collect(),
        }
    }
}
