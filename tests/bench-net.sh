#!/usr/bin/env bash
# Network benchmark: TCP throughput both ways and ping round trips between the test
# host and a container on podman's default bridge network, husk against runc in the
# same run (inside the testbed where there is no hardware KVM). Prints a markdown
# table.   tests/bench-net.sh [--mib N] [--pings N] [--no-setup]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MIB=64 PINGS=20 SETUP=1
while [ $# -gt 0 ]; do
    case $1 in
    --mib) MIB=$2; shift 2 ;;
    --pings) PINGS=$2; shift 2 ;;
    --no-setup) SETUP=0; shift ;;
    *) echo "usage: $0 [--mib N] [--pings N] [--no-setup]" >&2; exit 2 ;;
    esac
done
if [ "$SETUP" = 1 ]; then
    tests/setup.sh >&2
    cargo build --release --workspace --bins >&2
fi
export HUSK_GUEST_KERNEL HUSK_GUEST_INITRD HUSK_VIRTIOFSD MIB PINGS
HUSK_GUEST_KERNEL=$(guest-image/build.sh path guest)
HUSK_GUEST_INITRD=$(guest-image/build.sh path initramfs)
HUSK_VIRTIOFSD=$(command -v virtiofsd)

if [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; then
    run=()
else
    echo "bench-net: no hardware KVM here: running inside the testbed (nested, emulated)" >&2
    run=(target/release/husk-testbed --env "MIB=$MIB" --env "PINGS=$PINGS" --timeout 1800 --)
fi
"${run[@]}" tests/bench-net-inner.sh
