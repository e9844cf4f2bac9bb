#!/bin/sh
# virtio-blk check (axv.run=blk; configs/vms/<arch>-linux-blk.toml, docs/virtio.md): /dev/vda
# is the read-write disk, /dev/vdb a read-only device over the same file.
# First boot: makes a FAT filesystem on /dev/vda if it has none, writes a line with a
# token drawn now to note.txt, syncs, unmounts: `BLK-WRITTEN <token>`. The VM is then
# started again (the scenario types `vm start`).
# Second boot: finds note.txt and prints `BLK-READBACK <token>`; then the read-only device:
# a file written on it is refused (`BLK-RO-REFUSED <error>`: the kernel mounts it read-only,
# as the device offers VIRTIO_BLK_F_RO), and so is a raw write to the device
# (`BLK-RO-RAW <error>`: the kernel's EPERM for a read-only disk; a write reaching the device
# would get its IOERR).
# Anything unexpected prints `BLK-FAIL <what>`.
fail() {
    echo "BLK-FAIL $*"
    exit 1
}
mkdir -p /mnt/rw /mnt/ro
[ -b /dev/vda ] && [ -b /dev/vdb ] || fail "no /dev/vda or /dev/vdb: $(ls /sys/block)"
echo "BLK: vda $(cat /sys/block/vda/size) sectors, ro=$(cat /sys/block/vda/ro); vdb ro=$(cat /sys/block/vdb/ro)"
if ! mount -t vfat /dev/vda /mnt/rw 2>/dev/null; then
    echo "BLK: no filesystem on /dev/vda; making one"
    mkdosfs -n AXVBLK /dev/vda >/dev/null || fail "mkdosfs /dev/vda"
    mount -t vfat /dev/vda /mnt/rw || fail "mount /dev/vda after mkdosfs"
fi
if [ ! -f /mnt/rw/note.txt ]; then
    token=$(cat /proc/sys/kernel/random/uuid)
    echo "AXV-BLK $token" >/mnt/rw/note.txt || fail "write note.txt"
    sync
    umount /mnt/rw || fail "umount /dev/vda"
    echo "BLK-WRITTEN $token"
    exit 0
fi
set -- $(cat /mnt/rw/note.txt)
umount /mnt/rw
[ "$1" = AXV-BLK ] || fail "note.txt holds: $*"
echo "BLK-READBACK $2"
# The read-only device: the kernel mounts it read-only and refuses a file write.
mount -t vfat -o ro /dev/vdb /mnt/ro || fail "mount /dev/vdb"
[ -f /mnt/ro/note.txt ] || fail "/dev/vdb does not show note.txt"
if err=$( (echo no >/mnt/ro/new.txt) 2>&1); then
    fail "a file was written on the read-only device"
fi
echo "BLK-RO-REFUSED ${err##*: }"
umount /mnt/ro
# A raw write, after asking the kernel to drop its read-only flag (it keeps the flag the
# driver set from VIRTIO_BLK_F_RO).
blockdev --setrw /dev/vdb 2>/dev/null
if err=$(dd if=/dev/zero of=/dev/vdb bs=512 count=1 seek=7 conv=fsync 2>&1); then
    fail "the read-only device took a write"
fi
echo "BLK-RO-RAW $(echo "$err" | head -n 1)"
