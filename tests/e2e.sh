#!/bin/sh
# Runs end-to-end test binaries one after the other (inside the testbed), with their
# hardware-KVM tests (`--ignored`); fails if any of them failed.
failed=0
for bin in "$@"; do
    echo "== $(basename "$bin")"
    "$bin" --ignored --test-threads=1 --color=never || failed=1
done
exit $failed
