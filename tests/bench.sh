#!/usr/bin/env bash
# Benchmarks, run where /dev/kvm is hardware KVM (inside the testbed on this project's
# machines). Prints markdown tables; figures are ratios against QEMU in the same run.
#   tests/bench.sh [--runs N]      (N: boots per VMM in the boot benchmark)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tests/setup.sh >&2
cargo build --release -p husk-vmm -p husk-tests --bins >&2

export HUSK_GUEST_KERNEL HUSK_GUEST_INITRD HUSK_CHECKER HUSK_VIRTIOFSD
HUSK_GUEST_KERNEL=$(guest-image/build.sh path guest)
HUSK_GUEST_INITRD=$(guest-image/build.sh path initramfs)
HUSK_CHECKER=$(guest-image/build.sh path checker)
HUSK_VIRTIOFSD=$(command -v virtiofsd)
echo "bench: host $(uname -n), $(nproc) cores; guest kernel $HUSK_GUEST_KERNEL" >&2
if [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; then
    run=()
else
    echo "bench: no hardware KVM here: running inside the testbed (nested, emulated)" >&2
    run=(target/release/husk-testbed --timeout 1800 --)
fi
# One testbed boot for all of them: each prints its own table.
"${run[@]}" sh -c 'target/release/husk-bench-boot "$@" && target/release/husk-bench-vsock &&
    target/release/husk-bench-fs' -- "$@"
