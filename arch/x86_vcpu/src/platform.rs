//! The x86_64 VM platform ([`axvm::ArchPlatform`]) on either backend (VMX or SVM, chosen
//! at run time: [`crate::backend`]): the vCPU type and its VPID or ASID, the entry
//! contract's GDT and page tables as boot data, and the refusals a VM gets on x86 (RAM not
//! covering the boot tables, VMX or SVM unusable on this CPU, passthrough interrupts
//! without an interrupt controller).

use crate::backend::{self, Backend, X86Stage2, X86VCpu, X86VCpuConfig};
use crate::entry::{boot_tables, BOOT_TABLES_END, BOOT_TABLES_GPA};
use crate::ioperm::IoPorts;
use crate::pc::{PcConfig, PcError, VirtualPc};
use crate::svm::hw::{self as svm, SvmError};
use crate::vmx::{self, VmxError};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use axdevice_base::VcpuNotifier;
use axvm::{ArchPlatform, IrqSink, VmPlatform};
use axvmconfig::{DeviceKind, HostArch, MemKind, VmConfig};
use core::fmt;

/// The x86_64 platform, under VMX or SVM.
pub struct X86Platform;

/// What an x86 VM has besides its vCPUs: its virtual PC (interrupt controllers and timers)
/// when the config has an `ioapic` device.
pub struct X86Vm {
    pc: Option<Arc<VirtualPc>>,
    /// Its passthrough ports, opened in every vCPU's I/O bitmaps.
    io_ports: Arc<IoPorts>,
}

/// Why an x86 VM cannot be built.
#[derive(Debug)]
pub enum X86PlatformError {
    /// VMX cannot run on this CPU.
    Vmx(VmxError),
    /// SVM cannot run on this CPU.
    Svm(SvmError),
    /// No RAM region covers GPA 0..0x8000, where the boot GDT and page tables go.
    NoBootRam,
    /// Passthrough interrupts need an interrupt controller the VM does not have yet.
    PassthroughIrqs,
    /// The virtual PC refused the config.
    Pc(PcError),
    /// A Linux VM's kernel cannot be booted as its config says.
    Linux(crate::linux::LinuxBootError),
}

impl fmt::Display for X86PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vmx(e) => write!(f, "VMX: {e}"),
            Self::Svm(e) => write!(f, "SVM: {e}"),
            Self::Pc(e) => write!(f, "virtual PC: {e}"),
            Self::NoBootRam => write!(
                f,
                "RAM must cover guest-physical 0..{BOOT_TABLES_END:#x}: the boot GDT and page \
                 tables go at {BOOT_TABLES_GPA:#x}..{BOOT_TABLES_END:#x} (docs/x86.md)"
            ),
            Self::PassthroughIrqs => write!(
                f,
                "passthrough interrupts need a virtual interrupt controller, which x86 VMs do \
                 not have yet"
            ),
            Self::Linux(e) => write!(f, "{e}"),
        }
    }
}

impl ArchPlatform for X86Platform {
    type VCpu = X86VCpu;
    type Stage2 = X86Stage2;
    type Vm = X86Vm;
    type Error = X86PlatformError;

    const HOST_ARCH: HostArch = HostArch::X86_64;

    /// VPIDs are 16 bits; ASIDs as many as the CPU has ([`backend::vmid_bits`]); 0 is the
    /// host's either way, and the allocator never gives 0.
    fn vmid_bits() -> u32 {
        backend::vmid_bits()
    }

    /// Enters VMX operation or enables SVM on this CPU (checking the capabilities once), checks the RAM
    /// covers the boot tables, and hands them over as boot data.
    fn build(
        config: &VmConfig,
        notifier: Arc<dyn VcpuNotifier>,
    ) -> Result<(VmPlatform, X86Vm), X86PlatformError> {
        match backend::backend() {
            Backend::Vmx => vmx::enable().map(|_| ()).map_err(X86PlatformError::Vmx)?,
            Backend::Svm => svm::enable().map(|_| ()).map_err(X86PlatformError::Svm)?,
        }
        let covered = config.memory.iter().any(|m| {
            m.kind == MemKind::Ram && m.flags.write && m.gpa == 0 && m.size >= BOOT_TABLES_END
        });
        if !covered {
            return Err(X86PlatformError::NoBootRam);
        }
        if config.passthrough_irqs().next().is_some() {
            return Err(X86PlatformError::PassthroughIrqs);
        }
        let mut platform = VmPlatform::none();
        platform.boot_data = Vec::from([(BOOT_TABLES_GPA, boot_tables())]);
        let pc = virtual_pc(config, notifier, &mut platform)?;
        let io_ports = IoPorts::with_open(
            config
                .passthrough
                .iter()
                .flat_map(|p| p.ports.iter().filter_map(|r| r.ports())),
        );
        let vm = X86Vm {
            pc,
            io_ports: Arc::new(io_ports),
        };
        Ok((platform, vm))
    }

    fn irq_sink(_vm: &X86Vm) -> Option<Arc<dyn IrqSink>> {
        None
    }

    /// The VM's VPID or ASID tags its vCPUs' TLB entries; every vCPU shares the VM's
    /// virtual PC.
    fn vcpu_config(vm: &X86Vm, vmid: u16, _index: usize) -> X86VCpuConfig {
        X86VCpuConfig {
            vmid,
            pc: vm.pc.clone(),
            io_ports: vm.io_ports.clone(),
        }
    }

    /// A Linux bzImage: the 64-bit boot protocol's placements ([`crate::linux`]), told the
    /// TSC's rate.
    fn prepare_boot(
        config: &VmConfig,
        images: &dyn Fn(&str) -> Option<&'static [u8]>,
    ) -> Result<Option<axvm::KernelBoot>, X86PlatformError> {
        let tsc_khz = axhal::time::ticks_per_sec() / 1000;
        crate::linux::prepare_boot(config, images, tsc_khz).map_err(X86PlatformError::Linux)
    }

    /// RDI = 0 (the start argument), RSI = 0 (no zero page): set-up already zeroes them.
    fn boot_regs(_config: &VmConfig) -> Vec<(usize, u64)> {
        Vec::new()
    }
}

/// Unix time the guest's CMOS clock starts from at TSC 0 (2026-01-01 00:00:00 UTC): the
/// host has no wall clock of its own yet.
const RTC_EPOCH_NS: u64 = 1_767_225_600 * 1_000_000_000;

/// The VM's virtual PC when its config has an `ioapic` device: the I/O APIC window at the
/// device's base, its inputs as the VM's interrupt lines, reset with the VM
/// (docs/x86-interrupts.md).
fn virtual_pc(
    config: &VmConfig,
    notifier: Arc<dyn VcpuNotifier>,
    platform: &mut VmPlatform,
) -> Result<Option<Arc<VirtualPc>>, X86PlatformError> {
    let Some(ioapic) = config.devices.iter().find(|d| d.kind == DeviceKind::Ioapic) else {
        return Ok(None);
    };
    let pc_config = PcConfig {
        vcpus: config.cpus.count,
        tsc_hz: axhal::time::ticks_per_sec(),
        unix_ns_at_tsc0: RTC_EPOCH_NS,
    };
    let pc = Arc::new(VirtualPc::new(pc_config, notifier).map_err(X86PlatformError::Pc)?);
    platform.devices.push((ioapic.base, pc.ioapic_device()));
    let lines = pc.clone();
    platform.irq_line = Box::new(move |n| lines.irq_line(n));
    let reset = pc.clone();
    platform.on_reset = Some(Box::new(move || reset.reset()));
    Ok(Some(pc))
}
