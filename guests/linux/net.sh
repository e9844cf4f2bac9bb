#!/bin/sh
# virtio-net check between two Linux VMs on one virtual switch (axv.run=net;
# configs/vms/<arch>-linux-net-{a,b}.toml, docs/virtio.md). From the command line:
# axv.ip=ADDR (this VM's IPv4 address, /24), axv.peer=ADDR (the other VM's), axv.role=recv
# or send. Both: eth0 up with the address (`NET: eth0 <mac> <addr>`), ping the peer until it
# answers (it may still be booting), then `ping -c 3` it (`NET-PING-OK <summary>`).
# recv: listens on TCP port 5000 with busybox nc, prints the md5 and size of what came
# (`NET-RECEIVED <md5> <bytes>`) and sends them back to the peer's port 5001. send: makes
# 256 KiB of random bytes, prints their md5 (`NET-SENT <md5> <bytes>`), sends them to the
# peer's port 5000 (retrying until the listener is up), then waits on port 5001 for the
# md5 and size the peer got (`NET-ACK <md5> <bytes>`), which must be its own: the VM
# powers off when the script ends, and bytes still in its socket would be lost. The
# scenarios check the sender's two lines, in order on its console (the receiver's line
# may reach the hypervisor's console before or after them). Anything unexpected prints
# `NET-FAIL <what>`.
fail() {
    echo "NET-FAIL $*"
    exit 1
}
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    axv.ip=*) ip=${arg#axv.ip=} ;;
    axv.peer=*) peer=${arg#axv.peer=} ;;
    axv.role=*) role=${arg#axv.role=} ;;
    esac
done
[ -n "$ip" ] && [ -n "$peer" ] && [ -n "$role" ] || fail "axv.ip, axv.peer and axv.role are needed"
[ -d /sys/class/net/eth0 ] || fail "no eth0: $(ls /sys/class/net)"
ip link set lo up
ip link set eth0 up || fail "eth0 up"
ip addr add "$ip/24" dev eth0 || fail "address $ip"
echo "NET: eth0 $(cat /sys/class/net/eth0/address) $ip"
tries=0
until ping -c 1 -W 1 "$peer" >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ $tries -lt 120 ] || fail "no answer from $peer"
done
summary=$(ping -c 3 "$peer" | grep "packets transmitted") || fail "ping -c 3 $peer"
case "$summary" in
*" 0% packet loss"*) echo "NET-PING-OK $summary" ;;
*) fail "ping: $summary" ;;
esac
case "$role" in
recv)
    # Standard input stays the console: at its end busybox nc would close its sending
    # half, and the sender's nc exits when it sees that, cutting the transfer short.
    nc -l -p 5000 >/tmp/received || fail "nc -l"
    set -- $(md5sum /tmp/received)
    got="$1 $(wc -c </tmp/received)"
    echo "NET-RECEIVED $got"
    tries=0
    until echo "$got" | nc "$peer" 5001; do
        tries=$((tries + 1))
        [ $tries -lt 60 ] || fail "nc $peer 5001"
        sleep 1
    done
    # Let the answer leave before the power-off.
    sleep 2
    ;;
send)
    dd if=/dev/urandom of=/tmp/file bs=1024 count=256 2>/dev/null || fail "dd"
    set -- $(md5sum /tmp/file)
    sent="$1 $(wc -c </tmp/file)"
    echo "NET-SENT $sent"
    # busybox nc sends a regular file on its standard input only in part: a pipe.
    tries=0
    until cat /tmp/file | nc "$peer" 5000; do
        tries=$((tries + 1))
        [ $tries -lt 60 ] || fail "nc $peer 5000"
        sleep 1
    done
    ack=$(nc -l -p 5001) || fail "nc -l -p 5001"
    echo "NET-ACK $ack"
    [ "$ack" = "$sent" ] || fail "the peer got $ack, not $sent"
    ;;
*) fail "axv.role=$role" ;;
esac
