//! The last MMIO instruction a vCPU decoded, kept so the next EPT violation at the same
//! place skips the guest page-table walk, the instruction fetch and the decode (an MMIO
//! read of a device register cost about 1,700 instructions with them, docs/performance.md).
//!
//! The entry is only used when nothing its decode depended on changed: the key (RIP, the
//! paging registers, the CS mode and base) must be equal, and every aligned 8-byte word of
//! guest memory the walk and the fetch read (each page-table entry, the instruction bytes)
//! must still hold the value it had. A walk reads nothing else, so an unchanged key and
//! unchanged words give the same translation and the same bytes: a guest that rewrites its
//! code or its page tables, or switches CR3, misses and is decoded afresh. The words are
//! read at the host addresses the VM's second-stage table gave for them, which stay guest
//! RAM while the vCPU runs (regions are only removed from a stopped VM); the owner drops
//! the entry when the second-stage root changes or the vCPU is reset.

use core::cell::RefCell;

use crate::gpt::{GuestMemory, Paging};
use crate::insn::{CpuMode, MmioInsn};

/// Guest RAM by host address: the part of guest memory access the cache needs.
pub trait HostMemory: GuestMemory {
    /// The host address of `gpa` if guest RAM there is readable.
    fn host_readable(&self, gpa: u64) -> Option<u64>;
}

/// At most this many words are checked on a hit: a 4-level walk (4 entries) and an
/// instruction in one page (at most 3 words). A fetch needing more is not cached.
const WORDS: usize = 8;

/// What a decode depends on besides memory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The guest's RIP at the access.
    pub rip: u64,
    /// CR0, CR3, CR4, EFER.
    pub paging: Paging,
    /// The code segment's mode.
    pub mode: CpuMode,
    /// The code segment's base (0 in 64-bit mode).
    pub cs_base: u64,
}

/// One cached decode.
pub struct Entry {
    key: Key,
    insn: MmioInsn,
    words: [(u64, u64); WORDS],
    count: usize,
}

impl Entry {
    /// The decoded instruction if `key` matches and guest memory is unchanged.
    #[inline]
    pub fn get(&self, key: &Key) -> Option<MmioInsn> {
        if self.key != *key {
            return None;
        }
        // One branch for all the words (they are few, and all read on a hit anyway).
        let mut differ = 0;
        for &(host, value) in self.words.iter().take(self.count) {
            // SAFETY: `host` is an 8-byte aligned word of guest RAM (see the module
            // documentation), identity-mapped; the guest may change it concurrently,
            // hence volatile.
            differ |= unsafe { (host as *const u64).read_volatile() } ^ value;
        }
        (differ == 0).then_some(self.insn)
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

    /// The entry for `insn`, decoded under `key` from what was read so far; `None` if the
    /// reads did not fit.
    pub fn entry(self, key: Key, insn: MmioInsn) -> Option<Entry> {
        let log = self.log.into_inner();
        let mut count = log.count;
        let (start, host, len) = log.last;
        if len == crate::insn::MAX_INSN_LEN as u64 {
            // The whole fetch came from the last read: only the words holding the
            // instruction's own bytes matter to the decode.
            let end = host + u64::from(insn.len);
            count = start + log.words[start..count].iter().filter(|w| w.0 < end).count();
        }
        (!log.overflow).then_some(Entry {
            key,
            insn,
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
            mode: CpuMode::Long64,
            cs_base: 0,
        };
        (ram, key)
    }

    fn decode(ram: &Ram, key: Key) -> Entry {
        let rec = Recording::new(ram);
        let mut bytes = [0u8; MAX_INSN_LEN];
        let n = key.paging.fetch(&rec, key.rip, &mut bytes).unwrap();
        let i = insn::decode(&bytes[..n], key.mode).unwrap();
        rec.entry(key, i).unwrap()
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
}
