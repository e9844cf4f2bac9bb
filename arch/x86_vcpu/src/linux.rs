//! Linux VMs (`kernel.format = "linux-bzimage"`): the 64-bit boot protocol's placements
//! from [`axbootx86::plan`], as the [`KernelBoot`] axvm writes into guest memory at boot and
//! at every reset (docs/x86-linux.md).
//!
//! | what | where | bytes |
//! |---|---|---|
//! | protected-mode kernel | `kernel.load_addr` (= the setup header's `pref_address`, checked) | borrowed from the bzImage ([`BzImage::kernel`]): the setup code is not copied |
//! | initrd | `kernel.initrd.load_addr` (checked by the plan) | borrowed from its image |
//! | zero page | [`ZERO_PAGE_ADDR`] | generated |
//! | command line | [`CMDLINE_ADDR`] | `kernel.cmdline` and ` tsc_early_khz=<kHz>` ([`kernel_cmdline`]), NUL-terminated |
//! | ACPI tables | the plan's base (0xE_0000) | generated from the config |
//!
//! vCPU 0 starts at the 64-bit entry (`load_addr + 0x200`) with RSI = the zero page; the
//! rest of its state is the entry contract every x86 VM gets (docs/x86.md), which is what
//! the boot protocol asks for.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use axbootx86::linux::{CMDLINE_ADDR, ZERO_PAGE_ADDR};
use axbootx86::{BootError, BootPlan, BzImage};
use axvm::{ImageLoad, KernelBoot};
use axvmconfig::{KernelFormat, VmConfig};
use core::fmt;

/// RSI's index for [`axvcpu::ArchVCpu::set_gpr`] (the encoding's register number).
const RSI: usize = 6;

/// Why a Linux VM cannot be booted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinuxBootError {
    /// An image the config names is not in the hypervisor image.
    NoImage {
        /// The config field naming it (`kernel.image`, `kernel.initrd.image`).
        field: &'static str,
        /// The image name.
        image: String,
    },
    /// The kernel, its command line or its initrd does not fit the VM (or the kernel is
    /// not a bzImage for the 64-bit boot protocol).
    Plan(BootError),
    /// `kernel.load_addr` is not where the kernel's setup header puts the kernel.
    LoadAddress {
        /// `kernel.load_addr`.
        config: u64,
        /// The setup header's `pref_address` (or 1 MiB).
        header: u64,
    },
}

impl fmt::Display for LinuxBootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoImage { field, image } => {
                write!(f, "{field}: image {image:?} is not in the hypervisor image")
            }
            Self::Plan(e) => write!(f, "Linux boot: {e}"),
            Self::LoadAddress { config, header } => write!(
                f,
                "kernel.load_addr: is {config:#x}, but the bzImage's setup header loads the \
                 kernel at {header:#x}; set load_addr = {header:#x}"
            ),
        }
    }
}

impl From<BootError> for LinuxBootError {
    fn from(e: BootError) -> Self {
        Self::Plan(e)
    }
}

/// The option giving Linux its TSC's rate in kHz (Linux 5.8 and later, `arch/x86/kernel/tsc.c`).
const TSC_EARLY_KHZ: &str = "tsc_early_khz=";

/// The command line the kernel gets: `user`'s (`kernel.cmdline`), with
/// ` tsc_early_khz=<tsc_khz>` appended unless it already sets that option or the rate is
/// unknown (0). The guest's TSC is the host's, unscaled, so the rate the hypervisor
/// calibrated is the guest's: Linux then skips its own calibration, which fails under an
/// emulator where each PIT or PM timer read is a VM exit longer than its SMI threshold
/// (docs/x86-linux.md).
pub fn kernel_cmdline(user: &str, tsc_khz: u64) -> String {
    let set = user
        .split_ascii_whitespace()
        .any(|w| w.starts_with(TSC_EARLY_KHZ));
    match (set, tsc_khz, user.trim_end().is_empty()) {
        (true, _, _) | (_, 0, _) => String::from(user),
        (false, _, true) => format!("{TSC_EARLY_KHZ}{tsc_khz}"),
        (false, _, false) => format!("{} {TSC_EARLY_KHZ}{tsc_khz}", user.trim_end()),
    }
}

/// The boot of `config`'s kernel when it is a bzImage (`None` for any other format), with
/// the images from `images` (by name), for a TSC of `tsc_khz` kHz (0: unknown).
pub fn prepare_boot(
    config: &VmConfig,
    images: &dyn Fn(&str) -> Option<&'static [u8]>,
    tsc_khz: u64,
) -> Result<Option<KernelBoot>, LinuxBootError> {
    if config.kernel.format != KernelFormat::LinuxBzimage {
        return Ok(None);
    }
    let image = |field: &'static str, name: &str| {
        images(name).ok_or_else(|| LinuxBootError::NoImage {
            field,
            image: String::from(name),
        })
    };
    let file = image("kernel.image", &config.kernel.image)?;
    let initrd = match &config.kernel.initrd {
        Some(i) => Some((i, image("kernel.initrd.image", &i.image)?)),
        None => None,
    };
    let bzimage = BzImage::parse(file).map_err(BootError::Kernel)?;
    let cmdline = kernel_cmdline(config.kernel.cmdline.as_deref().unwrap_or(""), tsc_khz);
    let plan = axbootx86::plan(
        config,
        &bzimage,
        &cmdline,
        initrd.map(|(_, bytes)| bytes.len() as u64),
    )?;
    if plan.kernel_addr != config.kernel.load_addr {
        return Err(LinuxBootError::LoadAddress {
            config: config.kernel.load_addr,
            header: plan.kernel_addr,
        });
    }
    Ok(Some(kernel_boot(
        config,
        &bzimage,
        initrd.map(|(_, b)| b),
        plan,
    )))
}

/// What goes where for `plan` (the kernel and initrd borrowed, the rest generated).
fn kernel_boot(
    config: &VmConfig,
    bzimage: &BzImage<'static>,
    initrd: Option<&'static [u8]>,
    plan: BootPlan,
) -> KernelBoot {
    let mut images = Vec::from([ImageLoad {
        name: format!("{} (protected-mode kernel)", config.kernel.image),
        gpa: plan.kernel_addr,
        bytes: bzimage.kernel(),
    }]);
    if let (Some(range), Some(bytes), Some(i)) = (&plan.initrd, initrd, &config.kernel.initrd) {
        images.push(ImageLoad {
            name: i.image.clone(),
            gpa: range.start,
            bytes,
        });
    }
    KernelBoot {
        images,
        data: Vec::from([
            (ZERO_PAGE_ADDR, plan.zero_page),
            (CMDLINE_ADDR, plan.cmdline),
            (plan.acpi.base, plan.acpi.blob),
        ]),
        entry: plan.entry,
        regs: Vec::from([(RSI, plan.rsi)]),
    }
}

#[cfg(test)]
mod tests;
