#!/usr/bin/env bash
# The whole test suite: unit tests and local-KVM tests on this machine, then the
# end-to-end suites inside the testbed (an emulated test host with a real /dev/kvm).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tests/setup.sh

# The real virtiofsd, for the tests that drive it (setup.sh put it on PATH).
export HUSK_VIRTIOFSD
HUSK_VIRTIOFSD=$(command -v virtiofsd)

echo "== unit tests and tiny-guest KVM tests (this machine)"
cargo test --workspace

echo "== end-to-end tests (testbed)"
export HUSK_GUEST_KERNEL HUSK_GUEST_INITRD HUSK_CHECKER
HUSK_GUEST_KERNEL=$(guest-image/build.sh path guest)
HUSK_GUEST_INITRD=$(guest-image/build.sh path initramfs)
HUSK_CHECKER=$(guest-image/build.sh path checker)
# Every end-to-end suite, built once (release: the VMM's data paths are what users
# run, and debug builds of them are 25-35x slower); each runs in a test host of its own.
cargo build --release --workspace --bins
suites=()
for suite in smoke vmm_boot vsock virtiofs net oci_cli podman containerd cri conformance; do
    bin=$(cargo test --release -p husk-tests --test "$suite" --no-run 2>&1 |
        sed -n 's/^ *Executable .*(\(.*\))$/\1/p')
    [ -x "$bin" ] || { echo "run.sh: cannot find the $suite test binary" >&2; exit 1; }
    suites+=("$bin")
done
# The testbed hang (docs/testing.md): under the nested emulation a guest doing
# sustained, memory-heavy I/O now and then hangs below the VMM. The 256 MiB virtio-fs
# check, the one test still exposed to it (about one run in eight), is left out of the
# default run; `HUSK_E2E_SKIP= tests/run.sh` runs it.
export HUSK_E2E_SKIP=${HUSK_E2E_SKIP-"a_256_mib_file_checksums_the_same_on_both_sides"}
# One test host per suite: the emulation now and then kills the test host's own kernel
# (docs/testing.md, "The emulator, and a second run"; it then ends at once, status
# 125), which loses that suite only; the suite runs once more in a fresh test host.
in_test_host() {
    target/release/husk-testbed --timeout "${HUSK_E2E_TIMEOUT:-1200}" -- tests/e2e.sh "$1"
}
failed=()
again=()
for bin in "${suites[@]}"; do
    suite=$(basename "$bin")
    status=0
    in_test_host "$bin" || status=$?
    if [ "$status" -eq 125 ]; then
        echo "run.sh: the test host died during $suite; running $suite again in a fresh one"
        again+=("$suite")
        status=0
        in_test_host "$bin" || status=$?
    fi
    [ "$status" -eq 0 ] || failed+=("$suite")
done
[ ${#again[@]} -eq 0 ] || echo "run.sh: suites run again after their test host died: ${again[*]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: failed suites: ${failed[*]}"
    exit 1
fi
echo "run.sh: every suite passed"
