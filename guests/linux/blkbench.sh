#!/bin/sh
# virtio-blk throughput against a RAM disk, in one boot (axv.run=blkbench;
# configs/vms/<arch>-linux-blkbench.toml; `cargo xtask bench --only blk`,
# docs/performance.md). The same dd of 2 MiB in 64 KiB blocks to and from a tmpfs file
# (RAM) and to and from /dev/vda with direct I/O (every block a virtio-blk request), each
# timed with the kernel's monotonic clock (/proc/timer_list, nanoseconds; under QEMU's
# -icount shift=0 a nanosecond is an instruction). Prints `BLKBENCH <what> <ns> ns` per
# transfer and `BLKBENCH bytes <n>`, or `BLKBENCH-FAIL <what>`.
count=32
now() { sed -n 's/^now at \([0-9]*\) nsecs$/\1/p' /proc/timer_list; }
timed() {
    what=$1
    shift
    t0=$(now)
    dd "$@" 2>/dev/null || { echo "BLKBENCH-FAIL $what"; exit 1; }
    t1=$(now)
    echo "BLKBENCH $what $((t1 - t0)) ns"
}
mkdir -p /mnt/ram
mount -t tmpfs -o size=8m tmpfs /mnt/ram || { echo "BLKBENCH-FAIL tmpfs"; exit 1; }
# The clock's own cost: the same two reads around nothing.
timed empty if=/dev/zero of=/dev/null bs=64k count=0
timed ram-write if=/dev/zero of=/mnt/ram/data bs=64k count=$count conv=fsync
timed ram-read if=/mnt/ram/data of=/dev/null bs=64k count=$count
timed vda-write if=/dev/zero of=/dev/vda bs=64k count=$count oflag=direct conv=fsync
timed vda-read if=/dev/vda of=/dev/null bs=64k count=$count iflag=direct
echo "BLKBENCH bytes $((count * 65536))"
