//! The last MMIO instruction a vCPU decoded, kept so the next EPT violation (nested page
//! fault) at the same place skips the guest page-table walk, the instruction fetch and the
//! decode (an MMIO read of a device register cost about 1,700 instructions with them,
//! docs/performance.md). [`Cache`] holds one entry of any value made from the bytes at RIP:
//! the decoded MMIO instruction, or (SVM, which measures instructions from their bytes) the
//! bytes themselves ([`Fetched`]).
//!
//! The entry is only used when nothing its decode depended on changed: the key (RIP, the
//! paging registers, the CS mode and base) must be equal (an owner whose guest cannot
//! change CR0 and EFER without an exit may key on CR3 and CR4 alone, [`Cr3Cr4`], and drop
//! the entry whenever it changes CR0 or EFER), and every aligned 8-byte word of
//! guest memory the walk and the fetch read (each page-table entry, the instruction bytes)
//! must still hold the value it had. A walk reads nothing else, so an unchanged key and
//! unchanged words give the same translation and the same bytes: a guest that rewrites its
//! code or its page tables, or switches CR3, misses and is decoded afresh. The words are
//! read at the host addresses the VM's second-stage table gave for them, which stay guest
//! RAM while the vCPU runs (regions are only removed from a stopped VM); the owner drops
//! the entry when the second-stage root changes or the vCPU is reset.

use core::cell::RefCell;

use crate::gpt::{GuestMemory, Paging};
use crate::insn::CpuMode;

/// Guest RAM by host address: the part of guest memory access the cache needs.
pub trait HostMemory: GuestMemory {
    /// The host address of `gpa` if guest RAM there is readable.
    fn host_readable(&self, gpa: u64) -> Option<u64>;
}

/// At most this many words are checked on a hit: a 4-level walk (4 entries) and an
/// instruction in one page (at most 3 words). A fetch needing more is not cached.
const WORDS: usize = 8;
// `Entry::get` checks up to this many words in straight-line code.
const _: () = assert!(WORDS == 8);

/// What a decode depends on besides memory: `P` is the paging state compared, all of it
/// ([`Paging`]) or [`Cr3Cr4`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key<P = Paging> {
    /// The guest's RIP at the access.
    pub rip: u64,
    /// CR0, CR3, CR4, EFER, or CR3 and CR4.
    pub paging: P,
    /// The code segment's mode and base.
    pub cs: CodeSegment,
}

/// The code segment as a decode depends on it, in one word (one compare on a lookup): its
/// mode and, outside 64-bit mode, its base (32 bits there: the fetch's linear address is
/// the base plus RIP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeSegment(u64);

impl CodeSegment {
    /// 64-bit code (its base is 0).
    pub const LONG64: Self = Self(0);

    /// A code segment in `mode` at `base` (ignored in 64-bit mode, its low 32 bits used
    /// otherwise).
    #[inline(always)]
    pub fn new(mode: CpuMode, base: u64) -> Self {
        match mode {
            CpuMode::Long64 => Self::LONG64,
            CpuMode::Protected32 => Self(1 << 32 | (base & 0xffff_ffff)),
            CpuMode::Code16 => Self(2 << 32 | (base & 0xffff_ffff)),
        }
    }

    /// The mode.
    pub fn mode(self) -> CpuMode {
        match self.0 >> 32 {
            0 => CpuMode::Long64,
            1 => CpuMode::Protected32,
            _ => CpuMode::Code16,
        }
    }

    /// The base (0 in 64-bit mode).
    pub fn base(self) -> u64 {
        self.0 & 0xffff_ffff
    }
}

/// The paging state of a [`Key`] whose owner drops its entry whenever CR0 or EFER change
/// (VMX, where every change of theirs exits): the walk depends on them (CR0.PG,
/// EFER.LMA), but the lookup need not read and compare them. CR3 and CR4 stay (a guest
/// changes them without an exit: CR4.PAE and PSE change the walk).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cr3Cr4 {
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
}

/// One cached decode: a `T` made from the instruction at [`Key::rip`].
pub struct Entry<T, P = Paging> {
    key: Key<P>,
    value: T,
    words: [(u64, u64); WORDS],
    count: usize,
}

impl<T: Copy, P: Copy + Eq> Entry<T, P> {
    /// The cached value if `key` matches and guest memory is unchanged. A reference: the
    /// caller reads the fields it needs where they are (an `Option<T>` by value was
    /// materialized on the stack and copied whole, on every hit).
    #[inline(always)]
    pub fn get(&self, key: &Key<P>) -> Option<&T> {
        if self.key != *key {
            return None;
        }
        let w = &self.words;
        let d = |i: usize| {
            let (host, value) = w[i];
            // SAFETY: `host` is an 8-byte aligned word of guest RAM (see the module
            // documentation), identity-mapped; the guest may change it concurrently,
            // hence volatile.
            unsafe { (host as *const u64).read_volatile() ^ value }
        };
        // One branch for all the words (they are few, and all read on a hit anyway), and
        // one jump on the count into straight-line code instead of a test per word.
        let differ = match self.count {
            0 => 0,
            1 => d(0),
            2 => d(0) | d(1),
            3 => d(0) | d(1) | d(2),
            4 => d(0) | d(1) | d(2) | d(3),
            5 => d(0) | d(1) | d(2) | d(3) | d(4),
            6 => d(0) | d(1) | d(2) | d(3) | d(4) | d(5),
            7 => d(0) | d(1) | d(2) | d(3) | d(4) | d(5) | d(6),
            _ => d(0) | d(1) | d(2) | d(3) | d(4) | d(5) | d(6) | d(7),
        };
        (differ == 0).then_some(&self.value)
    }
}

/// A vCPU's cache of one decode of `T` (an MMIO instruction, the bytes at RIP) keyed on
/// the paging state `P`: empty after [`Cache::clear`], filled by [`Cache::fill`] or
/// [`Cache::fill_walking`] on a miss.
pub struct Cache<T, P = Paging>(Option<Entry<T, P>>);

impl<T: Copy, P: Copy + Eq> Cache<T, P> {
    /// An empty cache.
    pub const EMPTY: Self = Self(None);

    /// Drops the entry (the second-stage root changed, the vCPU was reset; with a
    /// [`Cr3Cr4`] key, CR0 or EFER changed).
    pub fn clear(&mut self) {
        self.0 = None;
    }

    /// The cached value for `key` if there is one and nothing it depended on changed.
    #[inline(always)]
    pub fn get(&self, key: &Key<P>) -> Option<&T> {
        self.0.as_ref().and_then(|e| e.get(key))
    }

    /// A miss: fetches the instruction at `key` through `mem` and the guest's page tables
    /// under `walk` (the paging registers now, of which `key` holds its part), makes the
    /// value and the count of bytes it depends on with `decode` (`None`: not decodable,
    /// nothing cached), and caches it when the reads fit an entry. `None` if the bytes
    /// cannot be fetched or decoded.
    #[inline(never)]
    pub fn fill_walking<M: HostMemory>(
        &mut self,
        key: &Key<P>,
        walk: &Paging,
        mem: &M,
        decode: impl FnOnce(&[u8]) -> Option<(T, u8)>,
    ) -> Option<T> {
        let rec = Recording::new(mem);
        let mut bytes = [0u8; crate::insn::MAX_INSN_LEN];
        // Outside 64-bit code the linear address is 32 bits (compatibility mode too).
        let linear = match key.cs.mode() {
            CpuMode::Long64 => key.rip,
            _ => key.cs.base().wrapping_add(key.rip) & 0xffff_ffff,
        };
        let n = walk.fetch(&rec, linear, &mut bytes).ok()?;
        let (value, len) = decode(&bytes[..n])?;
        self.0 = rec.entry(*key, value, len);
        Some(value)
    }
}

impl<T: Copy> Cache<T> {
    /// [`Cache::fill_walking`] under the paging registers of `key`.
    pub fn fill<M: HostMemory>(
        &mut self,
        key: &Key,
        mem: &M,
        decode: impl FnOnce(&[u8]) -> Option<(T, u8)>,
    ) -> Option<T> {
        self.fill_walking(key, &key.paging, mem, decode)
    }
}

/// The bytes at RIP as a fetch gave them (up to [`crate::insn::MAX_INSN_LEN`], fewer at the
/// end of the guest's mapped code): a [`Cache`] value for a vCPU that measures instructions
/// from their bytes (SVM without NRIP-save).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The bytes; those from [`Fetched::len`] on are zero.
    pub bytes: [u8; crate::insn::MAX_INSN_LEN],
    /// How many were fetched.
    pub len: u8,
}

impl Fetched {
    /// The fetched bytes, for [`Cache::fill`]: all of them matter.
    pub fn of(bytes: &[u8]) -> Option<(Fetched, u8)> {
        let mut f = Fetched {
            bytes: [0; crate::insn::MAX_INSN_LEN],
            len: bytes.len().min(crate::insn::MAX_INSN_LEN) as u8,
        };
        f.bytes[..usize::from(f.len)].copy_from_slice(&bytes[..usize::from(f.len)]);
        Some((f, f.len))
    }

    /// The fetched bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// What [`Recording`] has read.
struct Log {
    words: [(u64, u64); WORDS],
    count: usize,
    /// A read did not fit (or was a write): no entry.
    overflow: bool,
    /// The last read: its first word's index, its host address and length.
    last: (usize, u64, u64),
}

/// Guest memory that records the words it reads, for [`Entry`].
pub struct Recording<'a, M> {
    mem: &'a M,
    log: RefCell<Log>,
}

impl<'a, M: HostMemory> Recording<'a, M> {
    /// Records reads of `mem`.
    pub fn new(mem: &'a M) -> Self {
        Self {
            mem,
            log: RefCell::new(Log {
                words: [(0, 0); WORDS],
                count: 0,
                overflow: false,
                last: (0, 0, 0),
            }),
        }
    }

    /// The entry for `value`, decoded under `key` from what was read so far, of which the
    /// first `len` bytes of the instruction matter; `None` if the reads did not fit.
    pub fn entry<T, P>(self, key: Key<P>, value: T, len: u8) -> Option<Entry<T, P>> {
        let log = self.log.into_inner();
        let mut count = log.count;
        let (start, host, last_len) = log.last;
        if last_len == crate::insn::MAX_INSN_LEN as u64 {
            // The whole fetch came from the last read: only the words holding the bytes
            // that matter to the decode are checked.
            let end = host + u64::from(len);
            count = start + log.words[start..count].iter().filter(|w| w.0 < end).count();
        }
        (!log.overflow).then_some(Entry {
            key,
            value,
            words: log.words,
            count,
        })
    }
}

impl<M: HostMemory> GuestMemory for Recording<'_, M> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let len = buf.len() as u64;
        let mut log = self.log.borrow_mut();
        if len == 0 || (gpa & 0xfff) + len > 0x1000 {
            log.overflow = true;
            return self.mem.read(gpa, buf);
        }
        let Some(host) = self.mem.host_readable(gpa) else {
            return false;
        };
        log.last = (log.count, host, len);
        // Every byte comes from a word as recorded, so the entry describes exactly the
        // bytes decoded even if the guest changes them meanwhile.
        let first = host & !7;
        let mut word = first;
        while word < host + len {
            // SAFETY: the aligned word lies in the same page of guest RAM as `host..host +
            // len` (pages are 8-byte aligned), readable in the VM's second-stage table,
            // identity-mapped; volatile as the guest may change it.
            let value = unsafe { (word as *const u64).read_volatile() };
            if log.count < WORDS {
                let at = log.count;
                log.words[at] = (word, value);
                log.count += 1;
            } else {
                log.overflow = true;
            }
            for (i, b) in value.to_le_bytes().into_iter().enumerate() {
                let at = word + i as u64;
                if at >= host && at < host + len {
                    buf[(at - host) as usize] = b;
                }
            }
            word += 8;
        }
        true
    }

    fn write(&self, gpa: u64, buf: &[u8]) -> bool {
        self.log.borrow_mut().overflow = true;
        self.mem.write(gpa, buf)
    }

    fn writable(&self, gpa: u64, len: usize) -> bool {
        self.mem.writable(gpa, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::{self, MAX_INSN_LEN};
    use alloc::boxed::Box;

    /// Guest RAM of 4 pages at guest-physical 0, backed by a host allocation.
    struct Ram(Box<[u64; 2048]>);

    impl Ram {
        fn base(&self) -> u64 {
            self.0.as_ptr() as u64
        }
        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the array is 16 KiB of plain u64s.
            unsafe { core::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), 0x4000) }
        }
    }

    impl GuestMemory for Ram {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
            let Some(h) = self.host_readable(gpa) else {
                return false;
            };
            // SAFETY: checked in range below.
            let src = unsafe { core::slice::from_raw_parts(h as *const u8, buf.len()) };
            buf.copy_from_slice(src);
            true
        }
        fn write(&self, _gpa: u64, _buf: &[u8]) -> bool {
            false
        }
        fn writable(&self, _gpa: u64, _len: usize) -> bool {
            false
        }
    }

    impl HostMemory for Ram {
        fn host_readable(&self, gpa: u64) -> Option<u64> {
            (gpa < 0x4000).then(|| self.base() + gpa)
        }
    }

    /// 4-level paging, CR3 at 0x1000: linear 0 to 2 MiB mapped to guest-physical 0 by a
    /// 2 MiB page through tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD).
    fn setup() -> (Ram, Key) {
        let mut ram = Ram(Box::new([0; 2048]));
        ram.0[0x1000 / 8] = 0x2003;
        ram.0[0x2000 / 8] = 0x3003;
        ram.0[0x3000 / 8] = 0x83;
        // mov al, byte ptr [rbx + 5] at 0x100.
        ram.bytes()[0x100..0x103].copy_from_slice(&[0x8a, 0x43, 0x05]);
        let key = Key {
            rip: 0x100,
            paging: Paging {
                cr0: 1 << 31 | 1,
                cr3: 0x1000,
                cr4: 1 << 5,
                efer: 1 << 10 | 1 << 8,
            },
            cs: CodeSegment::LONG64,
        };
        (ram, key)
    }

    fn decode(ram: &Ram, key: Key) -> Entry<insn::MmioInsn> {
        let rec = Recording::new(ram);
        let mut bytes = [0u8; MAX_INSN_LEN];
        let n = key.paging.fetch(&rec, key.rip, &mut bytes).unwrap();
        let i = insn::decode(&bytes[..n], key.cs.mode()).unwrap();
        rec.entry(key, i, i.len).unwrap()
    }

    #[test]
    fn hits_until_code_tables_or_key_change() {
        let (mut ram, key) = setup();
        let e = decode(&ram, key);
        let i = e.get(&key).unwrap();
        assert_eq!(i.len, 3);
        assert!(e.get(&Key { rip: 0x101, ..key }).is_none());
        let mut k = key;
        k.paging.cr3 = 0x2000;
        assert!(e.get(&k).is_none());
        // The code changes (a byte of the displacement).
        ram.bytes()[0x102] = 0x06;
        assert!(e.get(&key).is_none());
        ram.bytes()[0x102] = 0x05;
        assert!(e.get(&key).is_some());
        // Bytes past the instruction's own words do not matter.
        ram.bytes()[0x108] = 0xff;
        assert!(e.get(&key).is_some());
        assert_eq!(e.count, 4);
        // A page-table entry changes.
        ram.0[0x3000 / 8] = 0x20_0083;
        assert!(e.get(&key).is_none());
    }

    #[test]
    fn a_cache_fills_on_a_miss_and_hits_until_cleared() {
        let (mut ram, key) = setup();
        let mut mmio = Cache::<insn::MmioInsn>::EMPTY;
        assert!(mmio.get(&key).is_none());
        let decode = |b: &[u8]| insn::decode(b, key.cs.mode()).ok().map(|i| (i, i.len));
        let i = mmio.fill(&key, &ram, decode).unwrap();
        assert_eq!(i.len, 3);
        assert_eq!(mmio.get(&key), Some(&i));
        mmio.clear();
        assert!(mmio.get(&key).is_none());
        // Nothing decodable: nothing cached.
        assert!(mmio.fill(&key, &ram, |_| None).is_none());
        assert!(mmio.get(&key).is_none());

        // The bytes at RIP: all fifteen fetched bytes count, not only the instruction's.
        let mut code = Cache::<Fetched>::EMPTY;
        let f = code.fill(&key, &ram, Fetched::of).unwrap();
        assert_eq!(f.len, MAX_INSN_LEN as u8);
        assert_eq!(&f.as_slice()[..3], [0x8a, 0x43, 0x05]);
        assert_eq!(code.get(&key), Some(&f));
        ram.bytes()[0x10e] = 0x90;
        assert!(code.get(&key).is_none());
        let f = code.fill(&key, &ram, Fetched::of).unwrap();
        assert_eq!(f.as_slice()[14], 0x90);
        assert_eq!(code.get(&key), Some(&f));
        // A fetch cut short by the end of the guest's RAM keeps what it got.
        let end = Key { rip: 0x3ff8, ..key };
        let f = code.fill(&end, &ram, Fetched::of).unwrap();
        assert_eq!(f.len, 8);
        assert_eq!(code.get(&end), Some(&f));
    }

    #[test]
    fn a_cr3_cr4_key_walks_under_the_full_paging_state_and_compares_its_part() {
        let (mut ram, full) = setup();
        let key = Key {
            rip: full.rip,
            paging: Cr3Cr4 {
                cr3: full.paging.cr3,
                cr4: full.paging.cr4,
            },
            cs: full.cs,
        };
        let mut mmio = Cache::<insn::MmioInsn, Cr3Cr4>::EMPTY;
        let decode = |b: &[u8]| insn::decode(b, CpuMode::Long64).ok().map(|i| (i, i.len));
        // Walked under 4-level paging: the bytes at linear 0x100 are the load.
        let i = mmio.fill_walking(&key, &full.paging, &ram, decode).unwrap();
        assert_eq!(i.len, 3);
        assert_eq!(mmio.get(&key), Some(&i));
        // CR3 or CR4 changed: a miss; the code or a table entry changed: a miss.
        let others = [(0x2000, key.paging.cr4), (key.paging.cr3, 0)];
        for (cr3, cr4) in others {
            let paging = Cr3Cr4 { cr3, cr4 };
            assert!(mmio.get(&Key { paging, ..key }).is_none());
        }
        ram.0[0x3000 / 8] = 0x200083;
        assert!(mmio.get(&key).is_none());
        // Paging off (CR0.PG clear): the walk is the identity, the same bytes here.
        ram.0[0x3000 / 8] = 0x83;
        let off = Paging {
            cr0: 1,
            ..full.paging
        };
        let i = mmio.fill_walking(&key, &off, &ram, decode).unwrap();
        assert_eq!(mmio.get(&key), Some(&i));
    }

    #[test]
    fn a_code_segment_is_its_mode_and_base_in_one_word() {
        let long = CodeSegment::new(CpuMode::Long64, 0x1234);
        assert_eq!(long, CodeSegment::LONG64);
        assert_eq!((long.mode(), long.base()), (CpuMode::Long64, 0));
        let p = CodeSegment::new(CpuMode::Protected32, 0x1_0000_2000);
        assert_eq!((p.mode(), p.base()), (CpuMode::Protected32, 0x2000));
        let r = CodeSegment::new(CpuMode::Code16, 0x2000);
        assert_eq!((r.mode(), r.base()), (CpuMode::Code16, 0x2000));
        // Another mode or base is another key.
        assert_ne!(p, r);
        assert_ne!(CodeSegment::new(CpuMode::Protected32, 0), long);
        assert_ne!(p, CodeSegment::new(CpuMode::Protected32, 0x3000));
    }
}
