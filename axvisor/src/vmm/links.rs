//! Links between VMs (`[[links]]`, docs/doorbell.md): the memory two named VMs share and
//! the doorbell each rings the other with.
//!
//! A link is made when the first of its two VMs is built: its frames are allocated (zeroed)
//! and its doorbell pair made; the second VM, built while the first still holds it, finds
//! it and gets the same frames. Each VM holds the link from when it is built until it is
//! dropped (deleted, or replaced by `vm start` / `restart`); when neither does, the frames
//! are freed. So the shared bytes survive the restart of either VM while the other holds
//! them. A VM's doorbell end is attached (with its interrupt line) while the VM runs:
//! from its start, detached when it stops, and attached again (nothing pending) when it
//! resets. Side 0 is the VM whose name sorts first.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use axdevice_base::{IrqLine, MmioDevice};
use axvdoorbell::DoorbellEnd;
use axvm::{DeviceMap, VmPlatform};
use axvmconfig::{LinkConfig, VmConfig, PAGE_SIZE};
use core::fmt;
use spin::Mutex;

/// Every link that exists (held by at least one VM).
static LINKS: Mutex<Vec<Weak<Link>>> = Mutex::new(Vec::new());

/// Host frames of a link's shared memory, freed when dropped.
struct Frames {
    pa: usize,
    count: usize,
}

impl Frames {
    /// `size` bytes of zeroed frames, if the hypervisor has them.
    fn alloc(size: u64) -> Option<Self> {
        let count = usize::try_from(size / PAGE_SIZE).ok()?;
        let pa = axstd::mem::alloc_frames(count, PAGE_SIZE as usize)?;
        // SAFETY: the frames were just allocated for this link alone (no VM maps them yet),
        // `count` pages long, and RAM is identity-mapped in the hypervisor.
        unsafe { core::ptr::write_bytes(pa as *mut u8, 0, count * PAGE_SIZE as usize) };
        Some(Self { pa, count })
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        axstd::mem::dealloc_frames(self.pa, self.count);
    }
}

/// One link: its name, its two VMs (by name, in side order), shared frames and doorbell.
struct Link {
    name: String,
    vms: [String; 2],
    size: u64,
    frames: Frames,
    ends: [Arc<DoorbellEnd>; 2],
}

/// Why a VM's links could not be made.
pub enum LinkError {
    /// The link exists with another size (the peer, created later from the disk, declares
    /// a different one).
    SizeMismatch {
        /// The link.
        link: String,
        /// The peer VM.
        peer: String,
        /// Its size.
        theirs: u64,
        /// This VM's size.
        ours: u64,
    },
    /// The hypervisor has not the memory.
    NoMemory {
        /// The link.
        link: String,
        /// Bytes it needs.
        size: u64,
    },
    /// The doorbell's interrupt is not a line of the VM's interrupt controller.
    NoLine {
        /// The link.
        link: String,
        /// The interrupt.
        irq: u32,
    },
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SizeMismatch {
                link,
                peer,
                theirs,
                ours,
            } => write!(
                f,
                "link {link}: VM {peer} shares {theirs:#x} bytes, this VM declares {ours:#x}"
            ),
            Self::NoMemory { link, size } => write!(
                f,
                "link {link}: no {} KiB of free memory for its shared memory",
                size / 1024
            ),
            Self::NoLine { link, irq } => write!(
                f,
                "link {link}: interrupt {irq} does not exist in this VM's interrupt controller"
            ),
        }
    }
}

/// One link as one VM holds it: which end is its, and the interrupt line it rings.
struct Held {
    link: Arc<Link>,
    side: usize,
    line: Arc<dyn IrqLine>,
}

impl Held {
    fn end(&self) -> &DoorbellEnd {
        &self.link.ends[self.side]
    }
}

/// The links of one VM, held from its build until it is dropped.
#[derive(Clone, Default)]
pub struct VmLinks(Arc<Vec<Held>>);

/// The link `config` of VM `vm`, found or made: the side of `vm` and the link.
fn find_or_make(vm: &str, config: &LinkConfig) -> Result<(usize, Arc<Link>), LinkError> {
    let side = usize::from(vm > config.peer.as_str());
    let mut vms = [String::from(vm), config.peer.clone()];
    if side == 1 {
        vms.swap(0, 1);
    }
    let mut links = LINKS.lock();
    links.retain(|l| l.strong_count() > 0);
    let existing = links
        .iter()
        .filter_map(Weak::upgrade)
        .find(|l| l.name == config.name && l.vms == vms);
    if let Some(link) = existing {
        if link.size != config.shmem.size {
            return Err(LinkError::SizeMismatch {
                link: config.name.clone(),
                peer: config.peer.clone(),
                theirs: link.size,
                ours: config.shmem.size,
            });
        }
        return Ok((side, link));
    }
    let frames = Frames::alloc(config.shmem.size).ok_or_else(|| LinkError::NoMemory {
        link: config.name.clone(),
        size: config.shmem.size,
    })?;
    let (a, b) = axvdoorbell::pair();
    let link = Arc::new(Link {
        name: config.name.clone(),
        vms,
        size: config.shmem.size,
        frames,
        ends: [Arc::new(a), Arc::new(b)],
    });
    links.push(Arc::downgrade(&link));
    Ok((side, link))
}

impl VmLinks {
    /// Finds or makes each link of `config` and adds its shared memory and doorbell window
    /// to `platform`. The ends stay detached until [`VmLinks::attach`].
    pub fn build(config: &VmConfig, platform: &mut VmPlatform) -> Result<Self, LinkError> {
        let mut held = Vec::new();
        for l in &config.links {
            let line = (platform.irq_line)(l.doorbell.irq).ok_or_else(|| LinkError::NoLine {
                link: l.name.clone(),
                irq: l.doorbell.irq,
            })?;
            let (side, link) = find_or_make(&config.name, l)?;
            platform.shared_memory.push(DeviceMap {
                what: "link shared memory",
                gpa: l.shmem.gpa,
                hpa: link.frames.pa as u64,
                size: l.shmem.size,
            });
            let end: Arc<dyn MmioDevice> = link.ends[side].clone();
            platform.devices.push((l.doorbell.base, end));
            held.push(Held { link, side, line });
        }
        Ok(Self(Arc::new(held)))
    }

    /// Whether the VM has links.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The VM runs (it started, or reset): its ends take its interrupt lines, with nothing
    /// pending; its peers see `PEER_UP` = 1.
    pub fn attach(&self) {
        for h in self.0.iter() {
            h.end().attach(h.line.clone());
        }
    }

    /// The VM stopped: its ends are detached (pending bits dropped, lines lowered); its
    /// peers' rings are dropped and counted until it runs again.
    pub fn detach(&self) {
        for h in self.0.iter() {
            h.end().detach();
        }
    }

    /// A reset hook that runs `first` (the platform's own, if any), then attaches the ends
    /// again, for `VmPlatform::on_reset`.
    pub fn on_reset(
        &self,
        first: Option<Box<dyn Fn() + Send + Sync>>,
    ) -> Option<Box<dyn Fn() + Send + Sync>> {
        if self.is_empty() {
            return first;
        }
        let links = self.clone();
        Some(Box::new(move || {
            if let Some(first) = &first {
                first();
            }
            links.attach();
        }))
    }

    /// One line per link: what the VM's guests rang through it, for the VM's stop report.
    pub fn report(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|h| {
            let rings = h.end().rings();
            alloc::format!(
                "link {} to {}: {} rings delivered, {} dropped (peer not running)",
                h.link.name,
                h.link.vms[1 - h.side],
                rings.delivered,
                rings.dropped
            )
        })
    }
}
