//! The virtio-mmio transport (virtio 1.2 §4.2), modern interface (version 2) only.

use crate::device::{QueueIo, VirtioDevice};
use crate::queue::{Queue, QUEUE_MAX};
use crate::{VENDOR_ID, VIRTIO_F_VERSION_1};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use axdevice_base::{AccessWidth, DeviceError, GuestMemory, IrqLine, MmioDevice};
use spin::Mutex;
use virtio_drivers::transport::{DeviceStatus, InterruptStatus};

/// Bytes of guest-physical space one virtio-mmio device claims (registers at `0..0x100`,
/// config space from `0x100`).
pub const MMIO_SIZE: usize = 0x200;

/// Register offsets (virtio 1.2 §4.2.2).
pub mod regs {
    /// `0x74726976` ("virt").
    pub const MAGIC_VALUE: usize = 0x000;
    /// 2 (modern).
    pub const VERSION: usize = 0x004;
    /// The device type.
    pub const DEVICE_ID: usize = 0x008;
    /// The vendor id.
    pub const VENDOR_ID: usize = 0x00c;
    /// 32 feature bits, chosen by `DEVICE_FEATURES_SEL`.
    pub const DEVICE_FEATURES: usize = 0x010;
    /// Which 32 device feature bits `DEVICE_FEATURES` shows.
    pub const DEVICE_FEATURES_SEL: usize = 0x014;
    /// Legacy only: `GuestPageSize` (a write means a legacy driver).
    pub const LEGACY_GUEST_PAGE_SIZE: usize = 0x028;
    /// 32 feature bits the driver accepts, chosen by `DRIVER_FEATURES_SEL`.
    pub const DRIVER_FEATURES: usize = 0x020;
    /// Which 32 driver feature bits `DRIVER_FEATURES` sets.
    pub const DRIVER_FEATURES_SEL: usize = 0x024;
    /// Which queue the queue registers address.
    pub const QUEUE_SEL: usize = 0x030;
    /// The largest size the selected queue may have (0: no such queue).
    pub const QUEUE_NUM_MAX: usize = 0x034;
    /// The selected queue's size.
    pub const QUEUE_NUM: usize = 0x038;
    /// Legacy only: `QueueAlign`.
    pub const LEGACY_QUEUE_ALIGN: usize = 0x03c;
    /// Legacy only: `QueuePFN`.
    pub const LEGACY_QUEUE_PFN: usize = 0x040;
    /// The selected queue is ready (1) or not (0).
    pub const QUEUE_READY: usize = 0x044;
    /// The driver has new buffers in the queue whose index is written.
    pub const QUEUE_NOTIFY: usize = 0x050;
    /// Bit 0: used buffer; bit 1: configuration change.
    pub const INTERRUPT_STATUS: usize = 0x060;
    /// Clears the written `INTERRUPT_STATUS` bits.
    pub const INTERRUPT_ACK: usize = 0x064;
    /// The device status.
    pub const STATUS: usize = 0x070;
    /// Descriptor table address, low 32 bits.
    pub const QUEUE_DESC_LOW: usize = 0x080;
    /// Descriptor table address, high 32 bits.
    pub const QUEUE_DESC_HIGH: usize = 0x084;
    /// Available ring address, low 32 bits.
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    /// Available ring address, high 32 bits.
    pub const QUEUE_DRIVER_HIGH: usize = 0x094;
    /// Used ring address, low 32 bits.
    pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
    /// Used ring address, high 32 bits.
    pub const QUEUE_DEVICE_HIGH: usize = 0x0a4;
    /// Shared memory region select (none exist).
    pub const SHM_SEL: usize = 0x0ac;
    /// Shared memory length, low (all ones: no region).
    pub const SHM_LEN_LOW: usize = 0x0b0;
    /// Shared memory base, high (all ones: no region).
    pub const SHM_BASE_HIGH: usize = 0x0bc;
    /// Changes whenever the config space does.
    pub const CONFIG_GENERATION: usize = 0x0fc;
    /// Device-specific config space starts here.
    pub const CONFIG: usize = 0x100;
}

const MAGIC: u32 = 0x7472_6976;

/// The virtio-mmio transport around device `D`: the [`MmioDevice`] a VM maps.
///
/// Interrupts go out through one level-sensitive [`IrqLine`], high while
/// `InterruptStatus` is non-zero.
pub struct VirtioMmio<D> {
    name: String,
    mem: Arc<dyn GuestMemory>,
    irq: Arc<dyn IrqLine>,
    state: Mutex<State<D>>,
}

struct State<D> {
    dev: D,
    status: DeviceStatus,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: Vec<Queue>,
    isr: InterruptStatus,
    generation: u32,
    /// A legacy register was written since the last reset: `DRIVER_OK` is refused.
    legacy: bool,
    /// The level last given to the interrupt line (it is set only when this changes).
    line_high: bool,
}

impl<D: VirtioDevice> VirtioMmio<D> {
    /// The transport for `dev`, named `name` in logs (`"virtio-console"`), reading queues
    /// through `mem` and interrupting on `irq`.
    pub fn new(
        name: impl Into<String>,
        dev: D,
        mem: Arc<dyn GuestMemory>,
        irq: Arc<dyn IrqLine>,
    ) -> Self {
        let queues = (0..dev.num_queues())
            .map(|_| Queue::new(QUEUE_MAX))
            .collect();
        Self {
            name: name.into(),
            mem,
            irq,
            state: Mutex::new(State {
                dev,
                status: DeviceStatus::empty(),
                device_features_sel: 0,
                driver_features_sel: 0,
                driver_features: 0,
                queue_sel: 0,
                queues,
                isr: InterruptStatus::empty(),
                generation: 0,
                legacy: false,
                line_high: false,
            }),
        }
    }

    /// Runs `f` on the device (to hand it input from outside the guest), then lets it use
    /// its queues ([`VirtioDevice::poll`]) if the driver has it live.
    pub fn with_device<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        let mut s = self.state.lock();
        let r = f(&mut s.dev);
        self.run(&mut s, |dev, io| dev.poll(io), "poll");
        r
    }

    /// Lets the device use its queues for outside work ([`VirtioDevice::poll`]).
    pub fn poll(&self) {
        let mut s = self.state.lock();
        self.run(&mut s, |dev, io| dev.poll(io), "poll");
    }

    /// The device status register (for tests and `vm stat`).
    pub fn status(&self) -> DeviceStatus {
        self.state.lock().status
    }

    /// Whether the driver has the device live (`DRIVER_OK`, no reset needed).
    fn live(s: &State<D>) -> bool {
        s.status.contains(DeviceStatus::DRIVER_OK)
            && !s.status.contains(DeviceStatus::DEVICE_NEEDS_RESET)
    }

    /// Runs device work `f` with queue access if live; turns its outcome into interrupts,
    /// or a queue error into `DEVICE_NEEDS_RESET`.
    fn run(
        &self,
        s: &mut State<D>,
        f: impl FnOnce(&mut D, &mut QueueIo<'_>) -> Result<(), crate::QueueError>,
        what: &str,
    ) {
        if !Self::live(s) {
            return;
        }
        let State { dev, queues, .. } = s;
        let mut io = QueueIo::new(&*self.mem, queues);
        let result = f(dev, &mut io);
        let (used, config) = io.outcome();
        if used {
            s.isr |= InterruptStatus::QUEUE_INTERRUPT;
        }
        if config {
            s.generation = s.generation.wrapping_add(1);
            s.isr |= InterruptStatus::DEVICE_CONFIGURATION_INTERRUPT;
        }
        if let Err(e) = result {
            log::warn!("{}: {what}: {e}; device needs reset", self.name);
            s.status |= DeviceStatus::DEVICE_NEEDS_RESET;
            s.isr |= InterruptStatus::DEVICE_CONFIGURATION_INTERRUPT;
        }
        self.update_line(s);
    }

    /// Drives the line to "`InterruptStatus` is not zero", if that changes its level.
    fn update_line(&self, s: &mut State<D>) {
        let high = !s.isr.is_empty();
        if high != s.line_high {
            s.line_high = high;
            self.irq.set_level(high);
        }
    }

    fn offered(s: &State<D>) -> u64 {
        s.dev.features() | VIRTIO_F_VERSION_1
    }

    fn reset_state(&self, s: &mut State<D>) {
        s.dev.reset();
        s.status = DeviceStatus::empty();
        s.device_features_sel = 0;
        s.driver_features_sel = 0;
        s.driver_features = 0;
        s.queue_sel = 0;
        for q in &mut s.queues {
            *q = Queue::new(QUEUE_MAX);
        }
        s.isr = InterruptStatus::empty();
        s.legacy = false;
        self.update_line(s);
    }

    fn write_status(&self, s: &mut State<D>, value: u32) {
        if value == 0 {
            self.reset_state(s);
            return;
        }
        let old = s.status;
        // The driver sets bits one step at a time; it cannot clear them (only reset) and
        // DEVICE_NEEDS_RESET is the device's.
        let mut new = DeviceStatus::from_bits_truncate(value) - DeviceStatus::DEVICE_NEEDS_RESET;
        new -= old;
        if new.contains(DeviceStatus::FEATURES_OK) {
            let offered = Self::offered(s);
            if s.driver_features & VIRTIO_F_VERSION_1 == 0 {
                log::warn!(
                    "{}: driver did not accept VIRTIO_F_VERSION_1 (legacy driver); refused",
                    self.name
                );
                new -= DeviceStatus::FEATURES_OK;
            } else if s.driver_features & !offered != 0 {
                log::warn!(
                    "{}: driver accepted features {:#x} not offered; refused",
                    self.name,
                    s.driver_features & !offered
                );
                new -= DeviceStatus::FEATURES_OK;
            }
        }
        if new.contains(DeviceStatus::DRIVER_OK) {
            let features_ok = (old | new).contains(DeviceStatus::FEATURES_OK);
            if s.legacy {
                // Logged once, at the legacy register write.
                new -= DeviceStatus::DRIVER_OK;
            } else if !features_ok {
                log::warn!(
                    "{}: DRIVER_OK without modern feature negotiation (legacy driver); refused",
                    self.name
                );
                new -= DeviceStatus::DRIVER_OK;
            } else {
                s.dev.activate(s.driver_features);
            }
        }
        s.status = old | new;
    }

    fn legacy_write(&self, s: &mut State<D>) {
        if !s.legacy {
            log::warn!(
                "{}: legacy (version 1) register written; legacy drivers are refused",
                self.name
            );
            s.legacy = true;
        }
    }

    fn selected(s: &mut State<D>) -> Option<&mut Queue> {
        s.queues.get_mut(s.queue_sel as usize)
    }

    /// Sets half of a 64-bit queue address while the queue is not ready.
    fn set_queue_addr(s: &mut State<D>, value: u32, high: bool, pick: fn(&mut Queue) -> &mut u64) {
        if let Some(q) = Self::selected(s).filter(|q| !q.ready) {
            let a = pick(q);
            *a = if high {
                (*a & 0xffff_ffff) | (u64::from(value) << 32)
            } else {
                (*a & !0xffff_ffff) | u64::from(value)
            };
        }
    }

    fn read_reg(&self, s: &State<D>, offset: usize) -> u32 {
        let q = s.queues.get(s.queue_sel as usize);
        match offset {
            regs::MAGIC_VALUE => MAGIC,
            regs::VERSION => 2,
            regs::DEVICE_ID => s.dev.device_type() as u32,
            regs::VENDOR_ID => VENDOR_ID,
            regs::DEVICE_FEATURES => match s.device_features_sel {
                0 => Self::offered(s) as u32,
                1 => (Self::offered(s) >> 32) as u32,
                _ => 0,
            },
            regs::QUEUE_NUM_MAX => q.map_or(0, |_| u32::from(QUEUE_MAX)),
            regs::QUEUE_NUM => q.map_or(0, |q| u32::from(q.size)),
            regs::QUEUE_READY => q.map_or(0, |q| u32::from(q.ready)),
            regs::INTERRUPT_STATUS => s.isr.bits(),
            regs::STATUS => s.status.bits(),
            regs::QUEUE_DESC_LOW => q.map_or(0, |q| q.desc as u32),
            regs::QUEUE_DESC_HIGH => q.map_or(0, |q| (q.desc >> 32) as u32),
            regs::QUEUE_DRIVER_LOW => q.map_or(0, |q| q.avail as u32),
            regs::QUEUE_DRIVER_HIGH => q.map_or(0, |q| (q.avail >> 32) as u32),
            regs::QUEUE_DEVICE_LOW => q.map_or(0, |q| q.used as u32),
            regs::QUEUE_DEVICE_HIGH => q.map_or(0, |q| (q.used >> 32) as u32),
            // No shared memory regions: length and base read as all ones.
            regs::SHM_LEN_LOW..=regs::SHM_BASE_HIGH => u32::MAX,
            regs::CONFIG_GENERATION => s.generation,
            // Write-only and reserved registers read as zero.
            _ => 0,
        }
    }

    fn write_reg(&self, s: &mut State<D>, offset: usize, value: u32) {
        match offset {
            regs::DEVICE_FEATURES_SEL => s.device_features_sel = value,
            regs::DRIVER_FEATURES_SEL => s.driver_features_sel = value,
            regs::DRIVER_FEATURES => {
                // Only while negotiating (after DRIVER, before FEATURES_OK).
                if s.status.contains(DeviceStatus::FEATURES_OK) {
                    return;
                }
                let v = u64::from(value);
                match s.driver_features_sel {
                    0 => s.driver_features = (s.driver_features & !0xffff_ffff) | v,
                    1 => s.driver_features = (s.driver_features & 0xffff_ffff) | (v << 32),
                    _ => {}
                }
            }
            regs::QUEUE_SEL => s.queue_sel = value,
            regs::QUEUE_NUM => {
                if let Some(q) = Self::selected(s).filter(|q| !q.ready) {
                    // Out-of-range sizes are remembered as 0, which QUEUE_READY refuses.
                    q.size = u16::try_from(value)
                        .ok()
                        .filter(|&n| n <= QUEUE_MAX)
                        .unwrap_or(0);
                }
            }
            regs::QUEUE_READY => {
                if let Some(q) = Self::selected(s) {
                    if value == 0 {
                        q.ready = false;
                    } else if !q.ready && q.size != 0 {
                        q.ready = true;
                        q.next_avail = 0;
                        q.next_used = 0;
                    }
                }
            }
            regs::QUEUE_NOTIFY => {
                let queue = value as usize;
                if queue < s.queues.len() {
                    self.run(s, |dev, io| dev.notify(queue, io), "notify");
                }
            }
            regs::INTERRUPT_ACK => {
                s.isr -= InterruptStatus::from_bits_truncate(value);
                self.update_line(s);
            }
            regs::STATUS => self.write_status(s, value),
            regs::QUEUE_DESC_LOW => Self::set_queue_addr(s, value, false, |q| &mut q.desc),
            regs::QUEUE_DESC_HIGH => Self::set_queue_addr(s, value, true, |q| &mut q.desc),
            regs::QUEUE_DRIVER_LOW => Self::set_queue_addr(s, value, false, |q| &mut q.avail),
            regs::QUEUE_DRIVER_HIGH => Self::set_queue_addr(s, value, true, |q| &mut q.avail),
            regs::QUEUE_DEVICE_LOW => Self::set_queue_addr(s, value, false, |q| &mut q.used),
            regs::QUEUE_DEVICE_HIGH => Self::set_queue_addr(s, value, true, |q| &mut q.used),
            regs::LEGACY_GUEST_PAGE_SIZE | regs::LEGACY_QUEUE_ALIGN | regs::LEGACY_QUEUE_PFN => {
                self.legacy_write(s)
            }
            // Read-only and reserved registers ignore writes.
            _ => {}
        }
    }
}

/// The access must lie wholly inside the device.
fn check_inside(offset: usize, width: AccessWidth) -> Result<(), DeviceError> {
    match offset.checked_add(width.size()) {
        Some(end) if end <= MMIO_SIZE => Ok(()),
        _ => Err(DeviceError::BadOffset),
    }
}

/// Registers below the config space take aligned 32-bit accesses only.
fn check_register_access(offset: usize, width: AccessWidth) -> Result<(), DeviceError> {
    if width != AccessWidth::Word {
        return Err(DeviceError::BadWidth);
    }
    if !offset.is_multiple_of(4) {
        return Err(DeviceError::Misaligned);
    }
    Ok(())
}

/// What the VM does to all its virtio devices, whatever the device behind the transport.
pub trait VirtioReset: Send + Sync {
    /// Resets the device as a driver writing status 0 would: on a VM reset, so nothing is
    /// written into the rings of the guest that was running.
    fn reset(&self);
}

impl<D: VirtioDevice> VirtioReset for VirtioMmio<D> {
    fn reset(&self) {
        let mut s = self.state.lock();
        self.reset_state(&mut s);
    }
}

impl<D: VirtioDevice> MmioDevice for VirtioMmio<D> {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> usize {
        MMIO_SIZE
    }

    fn read(&self, offset: usize, width: AccessWidth) -> Result<u64, DeviceError> {
        check_inside(offset, width)?;
        let s = self.state.lock();
        if offset >= regs::CONFIG {
            return s.dev.config_read(offset - regs::CONFIG, width);
        }
        check_register_access(offset, width)?;
        Ok(u64::from(self.read_reg(&s, offset)))
    }

    fn write(&self, offset: usize, width: AccessWidth, value: u64) -> Result<(), DeviceError> {
        check_inside(offset, width)?;
        let mut s = self.state.lock();
        if offset >= regs::CONFIG {
            return s.dev.config_write(offset - regs::CONFIG, width, value);
        }
        check_register_access(offset, width)?;
        self.write_reg(&mut s, offset, value as u32);
        Ok(())
    }
}
