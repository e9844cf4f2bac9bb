#!/bin/sh
# Checks that /init loaded every module of the initramfs (axv.run=modules):
# prints `MODULES-OK <count> loaded` or `MODULES-FAIL not loaded: <names>`.
list=/lib/modules/$(uname -r)/modules.load
missing=
count=0
for mod in $(cat "$list"); do
    if grep -q "^$mod " /proc/modules; then
        count=$((count + 1))
    else
        missing="$missing $mod"
    fi
done
if [ -n "$missing" ]; then
    echo "MODULES-FAIL not loaded:$missing"
else
    echo "MODULES-OK $count loaded"
fi
