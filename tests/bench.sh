#!/usr/bin/env bash
# Benchmarks, run where /dev/kvm is hardware KVM (inside the testbed on this project's
# machines), all in one testbed boot. Prints markdown tables; every figure is a ratio
# against a reference measured in the same run (QEMU, runc, the host's file system).
# Writes the tables to OUT/bench.md, the start-latency samples to OUT/start-latency.csv
# and their plot to OUT/start-latency.png (OUT: $HUSK_BENCH_OUT, else target/bench).
#
#   tests/bench.sh [--runs N] [--density N] [--no-podman] [--only start|memory|vmm]
#                  [--no-setup]
#
#   --runs N      runs per VMM in the boot benchmark and per runtime in the start
#                 benchmark (default 10 and 20)
#   --density N   idle sandboxes started for the density figure (default 50; 0: none)
#   --no-podman   leave podman out of the start benchmark
#   --only WHAT   start: start latency; memory: memory and density; vmm: boot, vsock
#                 and virtio-fs (the earlier benchmarks)
#   --no-setup    skip tests/setup.sh and the release build (use what is built)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=() density=() podman=() only=all setup=yes
while [ $# -gt 0 ]; do
    case $1 in
    --runs) runs=(--runs "$2"); shift 2 ;;
    --density) density=(--density "$2"); shift 2 ;;
    --no-podman) podman=(--no-podman); shift ;;
    --only) only=$2; shift 2 ;;
    --no-setup) setup=no; shift ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
    esac
done
case $only in all|start|memory|vmm) ;; *) echo "bench: --only start|memory|vmm" >&2; exit 2 ;; esac

if [ $setup = yes ]; then
    tests/setup.sh >&2
    cargo build --release --workspace --bins >&2
fi

export HUSK_GUEST_KERNEL HUSK_GUEST_INITRD HUSK_CHECKER HUSK_VIRTIOFSD
HUSK_GUEST_KERNEL=$(guest-image/build.sh path guest)
HUSK_GUEST_INITRD=$(guest-image/build.sh path initramfs)
HUSK_CHECKER=$(guest-image/build.sh path checker)
HUSK_VIRTIOFSD=$(command -v virtiofsd)
out=${HUSK_BENCH_OUT:-target/bench}
mkdir -p "$out"
echo "bench: host $(uname -n), $(nproc) cores; guest kernel $HUSK_GUEST_KERNEL" >&2
if [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; then
    run=()
else
    echo "bench: no hardware KVM here: running inside the testbed (nested, emulated)" >&2
    run=(target/release/husk-testbed --timeout 3000 --)
fi

# One testbed boot for all of them: each prints its own table. The start benchmark's
# samples come back on stdout between two marker lines (the testbed sees this
# machine's files read-only).
script='set -e
csv=$(mktemp)
if [ "$ONLY" = all ] || [ "$ONLY" = start ]; then
    target/release/husk-bench-start $START_ARGS --csv "$csv"
    echo "--- start-latency.csv ---"; cat "$csv"; echo "--- end ---"
fi
if [ "$ONLY" = all ] || [ "$ONLY" = memory ]; then
    target/release/husk-bench-memory $MEMORY_ARGS
fi
if [ "$ONLY" = all ] || [ "$ONLY" = vmm ]; then
    target/release/husk-bench-boot $BOOT_ARGS && target/release/husk-bench-vsock &&
        target/release/husk-bench-fs
fi'
raw=$out/bench.raw
env_args=(
    --env "ONLY=$only"
    --env "START_ARGS=${runs[*]} ${podman[*]}"
    --env "MEMORY_ARGS=${density[*]}"
    --env "BOOT_ARGS=${runs[*]}"
)
if [ ${#run[@]} -eq 0 ]; then
    env ONLY="$only" START_ARGS="${runs[*]} ${podman[*]}" MEMORY_ARGS="${density[*]}" \
        BOOT_ARGS="${runs[*]}" sh -c "$script" | tee "$raw"
else
    "${run[0]}" "${env_args[@]}" "${run[@]:1}" sh -c "$script" | tee "$raw"
fi
# The tables and their titles, without the samples or stray log lines.
sed '/^--- start-latency.csv ---$/,/^--- end ---$/d' "$raw" | tr -d '\r' |
    grep -Ev $'^(\e\\[|bench[a-z-]*: run |reboot: )' >"$out/bench.md" || true
sed -n '/^--- start-latency.csv ---$/,/^--- end ---$/p' "$raw" | sed '1d;$d' | tr -d '\r' \
    >"$out/start-latency.csv"
rm -f "$raw"
if [ -s "$out/start-latency.csv" ]; then
    venv=$HOME/.cache/husk/plot-venv
    if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
        echo "bench: installing matplotlib in $venv" >&2
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install -q matplotlib >&2
    fi
    "$venv/bin/python" tests/plot_latency.py "$out/start-latency.csv" "$out/start-latency.png"
fi
echo "bench: tables in $out/bench.md" >&2
