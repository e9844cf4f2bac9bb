//! The bzImage setup header (Linux `Documentation/arch/x86/boot.rst`, "The real-mode kernel
//! header"): what a loader reads to place the kernel for the 64-bit boot protocol.

use core::fmt;
use core::ops::Range;

use crate::bytes::{u16_at, u32_at, u64_at, u8_at};

/// Offset of the setup header in the kernel file and in the zero page (`struct
/// boot_params.hdr`).
pub const SETUP_HEADER_OFFSET: usize = 0x1F1;
/// Where the setup header may end at the latest: `boot_params.hdr` ends at 0x290, where
/// `edd_mbr_sig_buffer` begins.
pub const SETUP_HEADER_MAX_END: usize = 0x290;
/// `boot_flag` (0x1FE) of a bootable image.
pub const BOOT_FLAG: u16 = 0xAA55;
/// `header` (0x202): the magic `"HdrS"`.
pub const HDRS_MAGIC: u32 = u32::from_le_bytes(*b"HdrS");
/// The oldest protocol with `xloadflags` and so the 64-bit entry (2.12).
pub const MIN_PROTOCOL: u16 = 0x020C;
/// `loadflags` bit 0: the protected-mode code is loaded at 0x100000 (a bzImage).
pub const LOADED_HIGH: u8 = 1 << 0;
/// `loadflags` bit 5: the kernel prints no early messages.
pub const QUIET_FLAG: u8 = 1 << 5;
/// `loadflags` bit 6 (obsolete, protocol 2.07 to 2.14): do not reload the segment registers
/// at the 32-bit entry.
pub const KEEP_SEGMENTS: u8 = 1 << 6;
/// `loadflags` bit 7: `heap_end_ptr` is valid.
pub const CAN_USE_HEAP: u8 = 1 << 7;
/// `xloadflags` bit 0: the kernel has the 64-bit entry at its load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags` bit 1: kernel, zero page, command line and initrd may be above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// Offset of the 64-bit entry point from the protected-mode kernel's load address.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// Where a bzImage's protected-mode code is loaded when nothing else is preferred.
pub const DEFAULT_LOAD_ADDRESS: u64 = 0x10_0000;

/// Offsets of setup-header fields, from the start of the file (= of the zero page).
pub(crate) mod off {
    pub const SETUP_SECTS: usize = 0x1F1;
    pub const SYSSIZE: usize = 0x1F4;
    pub const BOOT_FLAG: usize = 0x1FE;
    pub const JUMP: usize = 0x200;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21C;
    pub const HEAP_END_PTR: usize = 0x224;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22C;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
}

/// Why a kernel file cannot be booted through the 64-bit boot protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BzImageError {
    /// The file ends before the field at this offset.
    Truncated {
        /// Offset of the first byte missing.
        needed: usize,
        /// The file's length.
        len: usize,
    },
    /// No `boot_flag` 0xAA55 at 0x1FE: not an x86 boot image.
    NoBootFlag(u16),
    /// No `"HdrS"` at 0x202: a kernel older than protocol 2.00, or not a kernel.
    NoHdrS(u32),
    /// A zImage (`LOADED_HIGH` clear): its code would be loaded at 0x10000.
    NotLoadedHigh,
    /// The protocol is older than 2.12 (no `xloadflags`, so no 64-bit entry).
    ProtocolTooOld(u16),
    /// `xloadflags` lacks `XLF_KERNEL_64`.
    No64BitEntry,
    /// The setup header claims to end (0x202 + the byte at 0x201) past `boot_params.hdr`.
    HeaderTooLong(usize),
    /// `syssize` says the protected-mode code is longer than what the file holds after the
    /// setup sectors.
    KernelTruncated {
        /// Bytes `syssize` promises.
        expected: u64,
        /// Bytes the file has after the setup code.
        found: u64,
    },
    /// `pref_address` is so high that the kernel's footprint (or its 64-bit entry) would
    /// pass the end of the 64-bit address space.
    LoadAddressTooHigh(u64),
}

impl fmt::Display for BzImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, len } => write!(
                f,
                "the kernel file is {len} bytes, too short for a bzImage setup header (needs {needed:#x})"
            ),
            Self::NoBootFlag(v) => {
                write!(f, "not a bzImage: boot_flag at 0x1fe is {v:#06x}, not 0xaa55")
            }
            Self::NoHdrS(v) => write!(f, "not a bzImage: no \"HdrS\" at 0x202 (found {v:#010x})"),
            Self::NotLoadedHigh => write!(f, "a zImage (LOADED_HIGH clear), not a bzImage"),
            Self::ProtocolTooOld(v) => write!(
                f,
                "boot protocol {}.{:02} is older than 2.12, the first with a 64-bit entry",
                v >> 8,
                v & 0xff
            ),
            Self::No64BitEntry => write!(f, "the kernel has no 64-bit entry (XLF_KERNEL_64 clear)"),
            Self::HeaderTooLong(end) => write!(
                f,
                "the setup header claims to end at {end:#x}, past boot_params.hdr (0x290)"
            ),
            Self::KernelTruncated { expected, found } => write!(
                f,
                "the protected-mode kernel is {found} bytes, but syssize says {expected}"
            ),
            Self::LoadAddressTooHigh(a) => write!(
                f,
                "pref_address {a:#x} leaves no room for the kernel below the end of the address space"
            ),
        }
    }
}

/// A parsed bzImage: its setup header's fields and where its parts are in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImage<'a> {
    file: &'a [u8],
    /// Number of 512-byte setup sectors after the boot sector (`setup_sects`; 0 means 4).
    pub setup_sects: u8,
    /// Size of the protected-mode code in 16-byte paragraphs (`syssize`).
    pub syssize: u32,
    /// Boot protocol version, e.g. 0x020F for 2.15.
    pub version: u16,
    /// `loadflags` as the kernel wrote them.
    pub loadflags: u8,
    /// `xloadflags`.
    pub xloadflags: u16,
    /// Highest address the initrd may end at, inclusive (`initrd_addr_max`).
    pub initrd_addr_max: u32,
    /// Alignment the kernel needs if relocated (`kernel_alignment`).
    pub kernel_alignment: u32,
    /// Whether the kernel may be loaded at any `kernel_alignment`-aligned address.
    pub relocatable: bool,
    /// Longest command line, without its terminating NUL (`cmdline_size`).
    pub cmdline_size: u32,
    /// Where the kernel prefers to be loaded (`pref_address`).
    pub pref_address: u64,
    /// Bytes the kernel needs from its load address before it is done decompressing and
    /// relocating itself (`init_size`).
    pub init_size: u32,
    /// Where the setup header ends in the file (0x202 + the byte at 0x201).
    pub header_end: usize,
}

impl<'a> BzImage<'a> {
    /// Checks and reads the setup header of `file`, a whole bzImage.
    pub fn parse(file: &'a [u8]) -> Result<Self, BzImageError> {
        let len = file.len();
        let short = |needed: usize| BzImageError::Truncated { needed, len };
        let boot_flag = u16_at(file, off::BOOT_FLAG).ok_or(short(off::BOOT_FLAG + 2))?;
        if boot_flag != BOOT_FLAG {
            return Err(BzImageError::NoBootFlag(boot_flag));
        }
        let magic = u32_at(file, off::HEADER).ok_or(short(off::HEADER + 4))?;
        if magic != HDRS_MAGIC {
            return Err(BzImageError::NoHdrS(magic));
        }
        let version = u16_at(file, off::VERSION).ok_or(short(off::VERSION + 2))?;
        if version < MIN_PROTOCOL {
            return Err(BzImageError::ProtocolTooOld(version));
        }
        let header_end = 0x202 + usize::from(file[off::JUMP + 1]);
        if header_end > SETUP_HEADER_MAX_END {
            return Err(BzImageError::HeaderTooLong(header_end));
        }
        // Protocol 2.12 defines the header up to init_size at least.
        let needed = header_end.max(off::INIT_SIZE + 4);
        if len < needed {
            return Err(short(needed));
        }
        let u8f = |o| u8_at(file, o).unwrap_or_default();
        let u16f = |o| u16_at(file, o).unwrap_or_default();
        let u32f = |o| u32_at(file, o).unwrap_or_default();
        let image = Self {
            file,
            setup_sects: u8f(off::SETUP_SECTS),
            syssize: u32f(off::SYSSIZE),
            version,
            loadflags: u8f(off::LOADFLAGS),
            xloadflags: u16f(off::XLOADFLAGS),
            initrd_addr_max: u32f(off::INITRD_ADDR_MAX),
            kernel_alignment: u32f(off::KERNEL_ALIGNMENT),
            relocatable: u8f(off::RELOCATABLE_KERNEL) != 0,
            cmdline_size: u32f(off::CMDLINE_SIZE),
            pref_address: u64_at(file, off::PREF_ADDRESS).unwrap_or_default(),
            init_size: u32f(off::INIT_SIZE),
            header_end,
        };
        if image.loadflags & LOADED_HIGH == 0 {
            return Err(BzImageError::NotLoadedHigh);
        }
        if image.xloadflags & XLF_KERNEL_64 == 0 {
            return Err(BzImageError::No64BitEntry);
        }
        let setup_end = image.setup_len();
        if setup_end >= len {
            return Err(short(setup_end + 1));
        }
        let found = (len - setup_end) as u64;
        let expected = u64::from(image.syssize) * 16;
        // syssize is rounded up to whole paragraphs.
        if expected > found.next_multiple_of(16) {
            return Err(BzImageError::KernelTruncated { expected, found });
        }
        // The footprint and the entry (load address + 0x200) must be addresses.
        let extent = u64::from(image.init_size).max(found).max(ENTRY_64_OFFSET);
        if image.load_address().checked_add(extent).is_none() {
            return Err(BzImageError::LoadAddressTooHigh(image.pref_address));
        }
        Ok(image)
    }

    /// Size of the real-mode part in the file (boot sector and setup sectors), where the
    /// protected-mode kernel begins: `(setup_sects + 1) * 512`, `setup_sects` 0 counting
    /// as 4.
    pub fn setup_len(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects
        };
        (usize::from(sects) + 1) * 512
    }

    /// The protected-mode kernel: what is loaded at [`Self::load_address`].
    pub fn kernel(&self) -> &'a [u8] {
        &self.file[self.setup_len()..]
    }

    /// The setup header as it is in the file (0x1F1 up to [`Self::header_end`]), copied into
    /// the zero page at the same offset.
    pub fn setup_header(&self) -> &'a [u8] {
        &self.file[SETUP_HEADER_OFFSET..self.header_end]
    }

    /// The whole file.
    pub fn file(&self) -> &'a [u8] {
        self.file
    }

    /// Where the protected-mode kernel is loaded: `pref_address` when it is at or above
    /// 1 MiB (loading there spares the kernel relocating itself), else 0x100000.
    pub fn load_address(&self) -> u64 {
        if self.pref_address >= DEFAULT_LOAD_ADDRESS {
            self.pref_address
        } else {
            DEFAULT_LOAD_ADDRESS
        }
    }

    /// The 64-bit entry point when loaded at [`Self::load_address`].
    pub fn entry_64(&self) -> u64 {
        self.load_address() + ENTRY_64_OFFSET
    }

    /// The memory the kernel occupies from its load address until it has decompressed
    /// itself: `init_size` bytes, or the file's kernel part if that is larger.
    pub fn footprint(&self) -> Range<u64> {
        let len = u64::from(self.init_size).max(self.kernel().len() as u64);
        let start = self.load_address();
        start..start.saturating_add(len)
    }

    /// Whether the kernel accepts its zero page, command line and initrd above 4 GiB.
    pub fn can_be_above_4g(&self) -> bool {
        self.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0
    }
}
