//! A writer for the cpio "newc" format (magic `070701`), the format Linux unpacks as an
//! initramfs (`Documentation/driver-api/early-userspace/buffer-format.rst` in the kernel).
//!
//! Every entry is a 110-byte ASCII header, the NUL-terminated name padded to a multiple of
//! four bytes (counting from the header's start), and the data padded to a multiple of four.
//! The archive ends with an entry named `TRAILER!!!` and is padded to 512 bytes. Times are
//! 0 and owners root, so the same input always gives the same bytes.

/// The magic number that starts every newc header.
pub const MAGIC: &[u8; 6] = b"070701";
/// Length of a newc header: the magic and 13 fields of 8 hexadecimal digits.
pub const HEADER_LEN: usize = 6 + 13 * 8;
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode`: directory.
pub const S_IFDIR: u32 = 0o040_000;
/// File type bits of `st_mode`: regular file.
pub const S_IFREG: u32 = 0o100_000;
/// File type bits of `st_mode`: character device.
pub const S_IFCHR: u32 = 0o020_000;

/// A newc archive being built in memory.
#[derive(Debug, Default)]
pub struct Newc {
    out: Vec<u8>,
    next_ino: u32,
}

/// The fields of one header that differ between entries.
struct Entry<'a> {
    name: &'a str,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    data: &'a [u8],
}

impl Newc {
    /// An empty archive.
    pub fn new() -> Self {
        Newc {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    /// Adds a directory; `perm` is the permission bits (e.g. `0o755`).
    pub fn dir(&mut self, name: &str, perm: u32) {
        self.push(name, S_IFDIR | perm, 2, (0, 0), &[]);
    }

    /// Adds a regular file with its contents; `perm` is the permission bits.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.push(name, S_IFREG | perm, 1, (0, 0), data);
    }

    /// Adds a character device node with device number `major:minor`.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.push(name, S_IFCHR | perm, 1, (major, minor), &[]);
    }

    /// Appends the trailer, pads the archive to a multiple of 512 bytes and returns it.
    pub fn finish(mut self) -> Vec<u8> {
        write_entry(
            &mut self.out,
            &Entry {
                name: TRAILER,
                ino: 0,
                mode: 0,
                nlink: 1,
                rdev: (0, 0),
                data: &[],
            },
        );
        let padded = self.out.len().next_multiple_of(512);
        self.out.resize(padded, 0);
        self.out
    }

    fn push(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let name = name.trim_start_matches('/');
        assert!(!name.is_empty(), "a cpio entry needs a name");
        let ino = self.next_ino;
        self.next_ino += 1;
        write_entry(
            &mut self.out,
            &Entry {
                name,
                ino,
                mode,
                nlink,
                rdev,
                data,
            },
        );
    }
}

fn write_entry(out: &mut Vec<u8>, e: &Entry<'_>) {
    let size = u32::try_from(e.data.len()).expect("newc files are smaller than 4 GiB");
    let namesize = u32::try_from(e.name.len() + 1).expect("short names");
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    let fields = [
        e.ino, e.mode, 0, 0, e.nlink, 0, size, 0, 0, e.rdev.0, e.rdev.1, namesize, 0,
    ];
    let start = out.len();
    out.extend_from_slice(MAGIC);
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    debug_assert_eq!(out.len() - start, HEADER_LEN);
    out.extend_from_slice(e.name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(e.data);
    pad4(out);
}

/// Zero-pads `out` to a multiple of four bytes (headers start 4-aligned, so this aligns
/// relative to each header too).
fn pad4(out: &mut Vec<u8>) {
    let padded = out.len().next_multiple_of(4);
    out.resize(padded, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: name, the 13 header fields and the data.
    #[derive(Debug)]
    struct Parsed {
        name: String,
        fields: [u32; 13],
        data: Vec<u8>,
    }

    /// A reader independent of the writer: checks magic and alignment as it goes.
    fn parse(archive: &[u8]) -> Vec<Parsed> {
        let mut at = 0;
        let mut entries = Vec::new();
        loop {
            assert_eq!(at % 4, 0, "header at {at} is not 4-aligned");
            let header = &archive[at..at + HEADER_LEN];
            assert_eq!(&header[..6], MAGIC);
            let mut fields = [0u32; 13];
            for (i, f) in fields.iter_mut().enumerate() {
                let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).unwrap();
                *f = u32::from_str_radix(hex, 16).unwrap();
            }
            let namesize = fields[11] as usize;
            let name_at = at + HEADER_LEN;
            assert_eq!(archive[name_at + namesize - 1], 0, "name is NUL-terminated");
            let name = std::str::from_utf8(&archive[name_at..name_at + namesize - 1])
                .unwrap()
                .to_owned();
            let data_at = (name_at + namesize).next_multiple_of(4);
            assert!(archive[name_at + namesize..data_at].iter().all(|&b| b == 0));
            let size = fields[6] as usize;
            let data = archive[data_at..data_at + size].to_vec();
            at = (data_at + size).next_multiple_of(4);
            let done = name == TRAILER;
            entries.push(Parsed { name, fields, data });
            if done {
                assert!(archive[at..].iter().all(|&b| b == 0), "only zeros follow");
                return entries;
            }
        }
    }

    #[test]
    fn header_bytes_of_a_file() {
        let mut a = Newc::new();
        a.file("init", 0o755, b"hi\n");
        let out = a.finish();
        let expected_header = concat!(
            "070701", "00000001", "000081ED", "00000000", "00000000", "00000001", "00000000",
            "00000003", "00000000", "00000000", "00000000", "00000000", "00000005", "00000000"
        );
        assert_eq!(&out[..HEADER_LEN], expected_header.as_bytes());
        // 110 + 5 = 115, padded to 116; data at 116..119, padded to 120.
        assert_eq!(&out[HEADER_LEN..116], b"init\0\0");
        assert_eq!(&out[116..120], b"hi\n\0");
        assert_eq!(&out[120..126], MAGIC);
    }

    #[test]
    fn entries_round_trip_with_padding_and_trailer() {
        let mut a = Newc::new();
        a.dir("/bin", 0o755);
        a.file("bin/busybox", 0o755, &[7u8; 5]);
        a.char_dev("dev/console", 0o600, 5, 1);
        a.file("x", 0o644, b"");
        let out = a.finish();
        assert_eq!(out.len() % 512, 0);
        let entries = parse(&out);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["bin", "bin/busybox", "dev/console", "x", TRAILER]);

        let dir = &entries[0].fields;
        assert_eq!((dir[1], dir[4]), (S_IFDIR | 0o755, 2));
        let file = &entries[1];
        assert_eq!(file.fields[1], S_IFREG | 0o755);
        assert_eq!(file.data, [7u8; 5]);
        let console = &entries[2].fields;
        assert_eq!(console[1], S_IFCHR | 0o600);
        assert_eq!((console[9], console[10], console[6]), (5, 1, 0));

        // Inode numbers are distinct and non-zero; the trailer's fields are zero but nlink.
        let inos: std::collections::BTreeSet<u32> =
            entries[..4].iter().map(|e| e.fields[0]).collect();
        assert_eq!(inos.len(), 4);
        assert!(!inos.contains(&0));
        let trailer = &entries[4].fields;
        assert_eq!(trailer[4], 1);
        assert_eq!(trailer[11] as usize, TRAILER.len() + 1);
        for (i, f) in trailer.iter().enumerate() {
            if i != 4 && i != 11 {
                assert_eq!(*f, 0, "trailer field {i}");
            }
        }
    }

    #[test]
    fn empty_archive_is_one_padded_trailer() {
        let out = Newc::new().finish();
        assert_eq!(out.len(), 512);
        assert_eq!(parse(&out).len(), 1);
    }
}
