//! What the fuzz targets share: a reader that turns the fuzzer's bytes into values, fakes
//! for the traits devices call out through, the register-access driver every device
//! target uses, and the virtio driver of the virtio targets ([`virtio`]).
//!
//! The targets (`fuzz_targets/*.rs`) are run by `cargo xtask fuzz`; see
//! `docs/reliability.md#fuzzing`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

pub use arm_vgic::fake::FakeLrs;
use arm_vgic::{GicVersion, Vgic, VgicConfig};
use axdevice_base::{AccessWidth, ConsoleSink, DeviceError, IrqLine, MmioDevice, VcpuNotifier};

pub mod virtio;

/// The fuzzer's input, consumed from the front. Reads past the end give zeros, so every
/// input is a valid (if short) program; [`Input::is_empty`] ends the loops.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next `N` bytes, zero-padded past the end.
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }

    /// The next 16-bit little-endian value.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }

    /// The next 32-bit little-endian value.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }

    /// The next 64-bit little-endian value.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }

    /// The next byte as a bool (its low bit).
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// Up to `max` bytes: a length byte, then that many bytes (fewer at the end).
    pub fn slice(&mut self, max: usize) -> &'a [u8] {
        let n = (self.u8() as usize).min(max).min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }
}

/// A console that counts the bytes it is given.
#[derive(Debug, Default)]
pub struct CountingSink(pub AtomicUsize);

impl ConsoleSink for CountingSink {
    fn write(&self, bytes: &[u8]) {
        self.0.fetch_add(bytes.len(), Ordering::Relaxed);
    }
}

/// An interrupt line that remembers its level.
#[derive(Debug, Default)]
pub struct LevelIrq(pub AtomicBool);

impl LevelIrq {
    /// The level last set.
    pub fn level(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl IrqLine for LevelIrq {
    fn set_level(&self, high: bool) {
        self.0.store(high, Ordering::Relaxed);
    }
}

/// A notifier that records which vCPUs it was told about, and fails the run on a vCPU
/// index the model does not have.
#[derive(Debug)]
pub struct CheckedNotifier {
    vcpus: usize,
    /// How many notifications arrived.
    pub count: AtomicUsize,
}

impl CheckedNotifier {
    /// A notifier for a VM of `vcpus` vCPUs.
    pub fn new(vcpus: usize) -> Self {
        Self {
            vcpus,
            count: AtomicUsize::new(0),
        }
    }
}

impl VcpuNotifier for CheckedNotifier {
    fn notify(&self, vcpu: usize) {
        assert!(vcpu < self.vcpus, "notified vCPU {vcpu} of {}", self.vcpus);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// One register access decoded from the input: 1 control byte (bit 0 write, bits 1-2
/// width, bit 3 a wild 64-bit offset instead of one near the device), the offset, the
/// vCPU byte and, for a write, the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The vCPU making the access (`< vcpus`).
    pub vcpu: usize,
    /// Offset into the device.
    pub offset: usize,
    /// Access width.
    pub width: AccessWidth,
    /// `Some(value)` for a store.
    pub write: Option<u64>,
}

impl Access {
    /// Decodes one access to a device of `size` bytes used by `vcpus` vCPUs. Offsets are
    /// mostly inside the device or just past it (where the registers are), sometimes any
    /// value.
    pub fn decode(input: &mut Input<'_>, size: usize, vcpus: usize) -> Self {
        let ctl = input.u8();
        let width = AccessWidth::ALL[(ctl >> 1) as usize & 3];
        let offset = if ctl & 8 != 0 {
            input.u64() as usize
        } else {
            input.u32() as usize % (size + 16)
        };
        let vcpu = input.u8() as usize % vcpus.max(1);
        let write = (ctl & 1 != 0).then(|| input.u64());
        Self {
            vcpu,
            offset,
            width,
            write,
        }
    }

    /// Performs the access on `dev` and checks what every device promises: an access that
    /// does not fit inside the device is refused. Returns the value of a successful load.
    pub fn apply(&self, dev: &dyn MmioDevice) -> Result<Option<u64>, DeviceError> {
        let result = match self.write {
            Some(value) => dev
                .write_by(self.vcpu, self.offset, self.width, value)
                .map(|()| None),
            None => dev.read_by(self.vcpu, self.offset, self.width).map(Some),
        };
        let fits = self
            .offset
            .checked_add(self.width.size())
            .is_some_and(|end| end <= dev.size());
        assert!(
            fits || result.is_err(),
            "{}: {self:?} outside the device ({} bytes) was accepted",
            dev.name(),
            dev.size()
        );
        result
    }
}

/// Runs the input as a sequence of register accesses on `dev` (vCPUs `0..vcpus`), calling
/// `after` after each with the access and its result, until the input runs out.
pub fn drive_mmio(
    input: &mut Input<'_>,
    dev: &dyn MmioDevice,
    vcpus: usize,
    mut after: impl FnMut(&Access, Result<Option<u64>, DeviceError>),
) {
    assert!(dev.size() > 0, "{}: size 0", dev.name());
    while !input.is_empty() {
        let access = Access::decode(input, dev.size(), vcpus);
        let result = access.apply(dev);
        after(&access, result);
    }
}

/// What the UART targets need from a UART model beyond [`MmioDevice`].
pub trait Uart: MmioDevice {
    /// Feeds received bytes; returns how many fit.
    fn push_input(&self, bytes: &[u8]) -> usize;
    /// The model's idea of its interrupt output.
    fn irq_level(&self) -> bool;
}

impl Uart for axdevice::uart::Pl011 {
    fn push_input(&self, bytes: &[u8]) -> usize {
        axdevice::uart::Pl011::push_input(self, bytes)
    }
    fn irq_level(&self) -> bool {
        axdevice::uart::Pl011::irq_level(self)
    }
}

impl Uart for axdevice::uart::Ns16550 {
    fn push_input(&self, bytes: &[u8]) -> usize {
        axdevice::uart::Ns16550::push_input(self, bytes)
    }
    fn irq_level(&self) -> bool {
        axdevice::uart::Ns16550::irq_level(self)
    }
}

/// The UART targets: a UART built by `make` (given its console and interrupt line) gets a
/// mix of received bytes and register accesses from one vCPU. Checked after every step:
/// the line the model drives is at the level the model reports, received bytes fit in what
/// was offered, and transmitted bytes only come from stores.
pub fn fuzz_uart<U: Uart>(data: &[u8], make: impl FnOnce(Arc<CountingSink>, Arc<LevelIrq>) -> U) {
    let console = Arc::new(CountingSink::default());
    let irq = Arc::new(LevelIrq::default());
    let uart = make(console.clone(), irq.clone());
    let mut input = Input::new(data);
    while !input.is_empty() {
        let sent = console.0.load(Ordering::Relaxed);
        let mut wrote = false;
        if input.u8().is_multiple_of(8) {
            let bytes = input.slice(40);
            assert!(
                uart.push_input(bytes) <= bytes.len(),
                "took more than offered"
            );
        } else {
            let access = Access::decode(&mut input, uart.size(), 1);
            wrote = access.write.is_some();
            let _ = access.apply(&uart);
        }
        let now = console.0.load(Ordering::Relaxed);
        assert!(wrote || now == sent, "transmitted without a store");
        assert!(
            now - sent <= 1,
            "one store transmitted {} bytes",
            now - sent
        );
        assert_eq!(uart.irq_level(), irq.level(), "interrupt line out of step");
    }
}

/// A virtual GIC built from the input's first bytes: the version (if `version` is `None`),
/// 1 to the flavour's maximum vCPUs, and 0 to [`MAX_SPIS`](arm_vgic::MAX_SPIS) SPIs.
pub fn vgic_from(input: &mut Input<'_>, version: Option<GicVersion>) -> Arc<Vgic> {
    let shape = input.u32();
    let version = version.unwrap_or(if shape & 1 == 0 {
        GicVersion::V2
    } else {
        GicVersion::V3
    });
    let max = match version {
        GicVersion::V2 => arm_vgic::MAX_VCPUS_V2,
        GicVersion::V3 => arm_vgic::MAX_VCPUS_V3,
    };
    let vcpus = (shape >> 1) as usize % max + 1;
    let spis = (shape >> 8) % (arm_vgic::MAX_SPIS + 1);
    let config = VgicConfig {
        version,
        vcpus,
        spis,
    };
    Vgic::new(config, Arc::new(CheckedNotifier::new(vcpus))).expect("a valid vGIC shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_pads_with_zeros() {
        let mut i = Input::new(&[1, 2, 3]);
        assert_eq!(i.u16(), 0x0201);
        assert_eq!(i.u32(), 3);
        assert!(i.is_empty());
        assert_eq!(i.u64(), 0);
    }

    #[test]
    fn slice_stops_at_the_end() {
        let mut i = Input::new(&[5, 9, 8]);
        assert_eq!(i.slice(16), &[9, 8]);
        assert!(i.is_empty());
    }

    #[test]
    fn access_decodes_near_offsets_and_values() {
        // write, 32-bit, offset 0x104 % (0x1000 + 16), vcpu 3 % 2, value 7
        let mut bytes = vec![0b101, 0x04, 0x01, 0, 0, 3];
        bytes.extend(7u64.to_le_bytes());
        let a = Access::decode(&mut Input::new(&bytes), 0x1000, 2);
        assert_eq!(
            a,
            Access {
                vcpu: 1,
                offset: 0x104,
                width: AccessWidth::Word,
                write: Some(7)
            }
        );
    }
}
