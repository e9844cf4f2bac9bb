//! Host tests: requests driven through a real split queue in a `FlatMemory`, against a
//! `MemBacking`, including hostile sectors, lengths and buffers.

use crate::request::{S_IOERR, S_OK, S_UNSUPP, T_FLUSH, T_GET_ID, T_IN, T_OUT};
use crate::{
    Backing, MemBacking, Region, RegionError, VirtioBlk, F_FLUSH, F_RO, REQUEST_MAX, SECTOR_SIZE,
};
use alloc::vec;
use alloc::vec::Vec;
use axdevice_base::{AccessWidth, GuestMemory};
use axvirtio::mem::FlatMemory;
use axvirtio::{Queue, QueueIo, VirtioDevice};

const RAM: u64 = 0x8000_0000;
const RAM_SIZE: usize = 0x40000;
const DESC: u64 = RAM;
const AVAIL: u64 = RAM + 0x1000;
const USED: u64 = RAM + 0x2000;
/// Where request headers, data and status bytes go.
const BUF: u64 = RAM + 0x4000;
const NEXT: u16 = 1;
const WRITE: u16 = 2;

struct Rig {
    mem: FlatMemory,
    queue: Queue,
    dev: VirtioBlk<MemBacking>,
    avail_idx: u16,
}

impl Rig {
    fn new(sectors: usize, read_only: bool, features: u64) -> Self {
        let mut backing = vec![0u8; sectors * SECTOR_SIZE as usize];
        for (i, b) in backing.iter_mut().enumerate() {
            *b = (i / SECTOR_SIZE as usize) as u8;
        }
        let mut dev = VirtioBlk::new(MemBacking::from_bytes(backing), read_only, "axvisor-test");
        dev.activate(features);
        let mut queue = Queue::new(16);
        queue.ready = true;
        queue.desc = DESC;
        queue.avail = AVAIL;
        queue.used = USED;
        Self {
            mem: FlatMemory::new(RAM, RAM_SIZE),
            queue,
            dev,
            avail_idx: 0,
        }
    }

    /// Offers a chain of (addr, len, writable) descriptors 0.. and kicks the device;
    /// returns the used length.
    fn run(&mut self, segs: &[(u64, u32, bool)]) -> u32 {
        for (i, &(addr, len, w)) in segs.iter().enumerate() {
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            let mut flags = if w { WRITE } else { 0 };
            if i + 1 < segs.len() {
                flags |= NEXT;
            }
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&((i + 1) as u16).to_le_bytes());
            self.mem.write(DESC + 16 * i as u64, &d).unwrap();
        }
        let slot = u64::from(self.avail_idx % 16);
        self.mem.write_u16(AVAIL + 4 + 2 * slot, 0).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem.write_u16(AVAIL + 2, self.avail_idx).unwrap();
        let mut queues = [self.queue.clone()];
        let mut io = QueueIo::new(&self.mem, &mut queues);
        self.dev.notify(0, &mut io).unwrap();
        self.queue = queues[0].clone();
        assert_eq!(self.mem.read_u16(USED + 2).unwrap(), self.avail_idx);
        self.mem.read_u32(USED + 4 + 8 * slot + 4).unwrap()
    }

    fn header(&self, ty: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ty.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write(BUF, &h).unwrap();
    }

    fn status(&self, at: u64) -> u8 {
        let mut s = [0xffu8];
        self.mem.read(at, &mut s).unwrap();
        s[0]
    }

    /// A read of `len` bytes from `sector` into BUF + 0x100; returns (status, used len).
    fn read(&mut self, sector: u64, len: u32) -> (u8, u32) {
        self.header(T_IN, sector);
        let status = BUF + 0x100 + u64::from(len);
        self.mem.write(status, &[0xff]).unwrap();
        let used = self.run(&[
            (BUF, 16, false),
            (BUF + 0x100, len, true),
            (status, 1, true),
        ]);
        (self.status(status), used)
    }

    /// A write of `len` bytes of `fill` at `sector`; returns the status.
    fn write(&mut self, sector: u64, len: u32, fill: u8) -> u8 {
        self.header(T_OUT, sector);
        self.mem
            .write(BUF + 0x100, &vec![fill; len as usize])
            .unwrap();
        let status = BUF + 0x100 + u64::from(len);
        self.mem.write(status, &[0xff]).unwrap();
        let used = self.run(&[
            (BUF, 16, false),
            (BUF + 0x100, len, false),
            (status, 1, true),
        ]);
        assert_eq!(used, 1);
        self.status(status)
    }

    fn guest_bytes(&self, at: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read(at, &mut v).unwrap();
        v
    }
}

#[test]
fn config_and_features() {
    let rw = Rig::new(8, false, F_FLUSH);
    assert_eq!(rw.dev.config_read(0, AccessWidth::Dword).unwrap(), 8);
    assert_eq!(rw.dev.config_read(20, AccessWidth::Word).unwrap(), 512);
    assert_eq!(rw.dev.features() & F_RO, 0);
    assert_ne!(rw.dev.features() & F_FLUSH, 0);
    let ro = Rig::new(8, true, 0);
    assert_ne!(ro.dev.features() & F_RO, 0);
    // A partial last sector is not reachable.
    let odd = VirtioBlk::new(MemBacking::new(1000), false, "x");
    assert_eq!(odd.config_read(0, AccessWidth::Dword).unwrap(), 1);
    assert!(odd.config_read(62, AccessWidth::Dword).is_err());
}

#[test]
fn read_write_round_trip() {
    let mut r = Rig::new(8, false, F_FLUSH);
    assert_eq!(r.read(3, 1024), (S_OK, 1025));
    let got = r.guest_bytes(BUF + 0x100, 1024);
    assert!(got[..512].iter().all(|&b| b == 3) && got[512..].iter().all(|&b| b == 4));
    assert_eq!(r.write(5, 1024, 0xab), S_OK);
    assert!(r.dev.backing().bytes()[5 * 512..7 * 512]
        .iter()
        .all(|&b| b == 0xab));
    assert!(r.dev.backing().bytes()[7 * 512..].iter().all(|&b| b == 7));
    assert_eq!(
        r.dev.backing().flushes,
        0,
        "FLUSH negotiated: no write-through"
    );
    assert_eq!(r.read(6, 512), (S_OK, 513));
    assert!(r.guest_bytes(BUF + 0x100, 512).iter().all(|&b| b == 0xab));
}

#[test]
fn out_of_range_gets_ioerr_and_touches_nothing() {
    let mut r = Rig::new(8, false, F_FLUSH);
    let before = r.dev.backing().bytes().to_vec();
    for (sector, len) in [
        (8, 512),               // one past the end
        (7, 1024),              // runs over the end
        (u64::MAX, 512),        // sector * 512 overflows
        (u64::MAX / 512, 1024), // offset + len overflows
        (0, 100),               // not whole sectors
    ] {
        assert_eq!(r.write(sector, len, 0xcc), S_IOERR, "write {sector} {len}");
        assert_eq!(r.read(sector, len).0, S_IOERR, "read {sector} {len}");
    }
    assert_eq!(r.dev.backing().bytes(), &before[..]);
    // The last sector exactly is fine.
    assert_eq!(r.read(7, 512), (S_OK, 513));
}

#[test]
fn read_only_refuses_writes() {
    let mut r = Rig::new(8, true, F_FLUSH);
    let before = r.dev.backing().bytes().to_vec();
    assert_eq!(r.write(0, 512, 0xee), S_IOERR);
    assert_eq!(r.dev.backing().bytes(), &before[..]);
    assert_eq!(r.read(0, 512).0, S_OK);
}

#[test]
fn flush_reaches_the_backing_and_write_through_without_it() {
    let mut r = Rig::new(8, false, F_FLUSH);
    r.header(T_FLUSH, 0);
    assert_eq!(r.run(&[(BUF, 16, false), (BUF + 0x20, 1, true)]), 1);
    assert_eq!(r.status(BUF + 0x20), S_OK);
    assert_eq!(r.dev.backing().flushes, 1);
    // Without FLUSH negotiated, every write is flushed before it completes.
    let mut wt = Rig::new(8, false, 0);
    assert_eq!(wt.write(1, 512, 1), S_OK);
    assert_eq!(wt.dev.backing().flushes, 1);
}

#[test]
fn get_id_and_unsupported() {
    let mut r = Rig::new(8, false, F_FLUSH);
    r.header(T_GET_ID, 0);
    assert_eq!(
        r.run(&[
            (BUF, 16, false),
            (BUF + 0x100, 20, true),
            (BUF + 0x200, 1, true)
        ]),
        21
    );
    assert_eq!(&r.guest_bytes(BUF + 0x100, 12), b"axvisor-test");
    assert_eq!(r.status(BUF + 0x200), S_OK);
    // Too small a buffer for the id.
    r.header(T_GET_ID, 0);
    r.run(&[
        (BUF, 16, false),
        (BUF + 0x100, 8, true),
        (BUF + 0x200, 1, true),
    ]);
    assert_eq!(r.status(BUF + 0x200), S_IOERR);
    r.header(77, 0);
    assert_eq!(r.run(&[(BUF, 16, false), (BUF + 0x20, 1, true)]), 1);
    assert_eq!(r.status(BUF + 0x20), S_UNSUPP);
}

#[test]
fn hostile_chains_get_an_error_status_not_a_fault() {
    let mut r = Rig::new(8, false, F_FLUSH);
    // Short header.
    r.header(T_IN, 0);
    assert_eq!(r.run(&[(BUF, 8, false), (BUF + 0x20, 1, true)]), 1);
    assert_eq!(r.status(BUF + 0x20), S_IOERR);
    // No status byte at all: given back with nothing written.
    assert_eq!(r.run(&[(BUF, 16, false)]), 0);
    // A data buffer outside RAM (read into it, write from it).
    r.header(T_IN, 0);
    assert_eq!(
        r.run(&[(BUF, 16, false), (0x1000, 512, true), (BUF + 0x20, 1, true)]),
        1
    );
    assert_eq!(r.status(BUF + 0x20), S_IOERR);
    r.header(T_OUT, 0);
    r.run(&[
        (BUF, 16, false),
        (0x1000, 512, false),
        (BUF + 0x20, 1, true),
    ]);
    assert_eq!(r.status(BUF + 0x20), S_IOERR);
    // A request longer than REQUEST_MAX (the guest's lengths are its own).
    r.header(T_IN, 0);
    let huge = u32::try_from(REQUEST_MAX + 512).unwrap();
    r.run(&[
        (BUF, 16, false),
        (BUF + 0x100, huge, true),
        (BUF + 0x20, 1, true),
    ]);
    assert_eq!(r.status(BUF + 0x20), S_IOERR);
}

#[test]
fn region_cannot_reach_outside() {
    let mut inner = vec![0u8; 16 * 512];
    inner[4 * 512] = 0x44;
    let mut reg = Region::new(MemBacking::from_bytes(inner), 4, 2).unwrap();
    assert_eq!(reg.len(), 1024);
    let mut b = [0u8; 512];
    reg.read_at(0, &mut b).unwrap();
    assert_eq!(b[0], 0x44);
    assert!(reg.write_at(1024, &[1]).is_err());
    assert!(reg.read_at(u64::MAX, &mut b).is_err());
    reg.write_at(512, &[9; 512]).unwrap();
    let all = reg.inner().bytes();
    assert!(all[5 * 512..6 * 512].iter().all(|&x| x == 9));
    assert!(all[6 * 512..].iter().all(|&x| x == 0));
    assert_eq!(
        Region::new(MemBacking::new(16 * 512), 15, 2).err(),
        Some(RegionError::PastEnd { available: 16 })
    );
    assert_eq!(
        Region::new(MemBacking::new(512), u64::MAX, 2).err(),
        Some(RegionError::PastEnd { available: 1 })
    );
    assert_eq!(
        Region::new(MemBacking::new(512), 0, 0).err(),
        Some(RegionError::Empty)
    );
}

/// A region one VM writes is refused to every other VM, read-only or not, with an error
/// naming the holder; read-only regions are shared; a VM does not conflict with itself;
/// dropping the claim gives the region back.
#[test]
fn region_claims_keep_a_written_region_to_one_vm() {
    use alloc::string::ToString;
    static CLAIMS: crate::RegionClaims = crate::RegionClaims::new();
    let a = CLAIMS.claim("a", "data", (0x1000, 0x3000), true).unwrap();
    let err = CLAIMS
        .claim("b", "data", (0x2000, 0x2200), false)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "overlaps bytes 0x1000..0x3000, which vm \"a\" holds read-write"
    );
    assert!(CLAIMS.claim("b", "data", (0x2e00, 0x4000), true).is_err());
    let _next = CLAIMS.claim("b", "data", (0x3000, 0x4000), true).unwrap();
    let _other_disk = CLAIMS.claim("b", "other", (0x1000, 0x3000), true).unwrap();
    let _itself = CLAIMS.claim("a", "data", (0x1000, 0x3000), false).unwrap();
    let ro = CLAIMS.claim("c", "data", (0x8000, 0x9000), false).unwrap();
    let _shared = CLAIMS.claim("d", "data", (0x8000, 0x9000), false).unwrap();
    let err = CLAIMS
        .claim("e", "data", (0x8e00, 0x9000), true)
        .err()
        .unwrap();
    assert!(err.holder == "c" || err.holder == "d", "{err}");
    assert!(!err.writable);
    drop(a);
    drop(_itself);
    let _b = CLAIMS.claim("b", "data", (0x1000, 0x3000), true).unwrap();
    drop(ro);
    assert!(CLAIMS.claim("e", "data", (0x8000, 0x9000), true).is_err());
    drop(_shared);
    let _e = CLAIMS.claim("e", "data", (0x8000, 0x9000), true).unwrap();
}

/// Each refusal of a host disk region is one line with each fact once (the caller names
/// the disk and the region before it).
#[test]
fn host_region_errors_are_one_line_each() {
    use crate::{ClaimError, HostRegionError as E, Reserved, ReservedKind};
    use alloc::string::ToString;
    let cases = [
        (
            E::NoHostDisks,
            "no host disks: none was found, or the boot argument disk= chose none or was not understood",
        ),
        (
            E::UnknownDisk { known: vec!["data".into(), "disk0".into()] },
            "no host disk has this name (host disks: data, disk0)",
        ),
        (
            E::UnknownDisk { known: Vec::new() },
            "no host disk has this name (host disks: none)",
        ),
        (E::NoPartition(2), "the disk's MBR has no partition 2"),
        (
            E::Unreadable,
            "the disk's MBR could not be read (a device error)",
        ),
        (
            E::PastEnd { disk_bytes: 0x10_0000 },
            "runs past the end of the disk (0x100000 bytes)",
        ),
        (
            E::ReadOnlyDisk,
            "the disk is read-only: give the device `read_only = true`",
        ),
        (
            E::Reserved(Reserved { start: 0, end: 0x200, what: ReservedKind::PartitionTable }),
            "overlaps the partition table (bytes 0x0..0x200), which locates the filesystem the hypervisor mounts",
        ),
        (
            E::Reserved(Reserved { start: 0x10_0000, end: 0x230_0000, what: ReservedKind::Partition(1) }),
            "overlaps partition 1 (bytes 0x100000..0x2300000), the filesystem the hypervisor mounts",
        ),
        (
            E::Reserved(Reserved { start: 0, end: 0x100_0000, what: ReservedKind::Volume }),
            "overlaps the filesystem the hypervisor mounts (bytes 0x0..0x1000000)",
        ),
        (
            E::Claimed(ClaimError {
                disk: "data".into(),
                start: 0x8_0000,
                end: 0x8_2000,
                writable: false,
                holder: "vblkr".into(),
            }),
            "overlaps bytes 0x80000..0x82000, which vm \"vblkr\" holds read-only",
        ),
        (
            E::Region(RegionError::Empty),
            "the region has no sectors",
        ),
    ];
    for (error, line) in cases {
        assert_eq!(error.to_string(), line);
    }
}
