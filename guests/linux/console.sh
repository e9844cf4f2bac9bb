#!/bin/sh
# virtio-console check (axv.run=console; configs/vms/<arch>-linux-console.toml,
# docs/virtio.md): the kernel's console is hvc0, the virtio-console (`console=hvc0`; the
# UART has only the early console). Where virtio_console is a module, hvc0 appears only
# when /init loads it, after the kernel gave /init its standard streams, so this script
# takes hvc0 itself. It prints the marker there, then runs an interactive shell on hvc0
# (typed into through the hypervisor shell's `console VM`) until it exits; /init then
# powers the VM off.
[ -c /dev/hvc0 ] || exit 1
exec </dev/hvc0 >/dev/hvc0 2>&1
echo "AXVISOR-LINUX-MARKER on $(tty) console=$(cat /sys/class/tty/console/active)"
export PS1='\h:\w# '
# A session whose controlling terminal is hvc0 (the console's device), as /init's shell mode.
setsid cttyhack sh
# The session's end hung hvc0 up for the streams opened before it: open it again.
exec </dev/hvc0 >/dev/hvc0 2>&1
echo "CONSOLE: the shell on $(tty) exited"
