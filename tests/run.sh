#!/usr/bin/env bash
# The whole test suite: unit tests and local-KVM tests on this machine, then the
# end-to-end suites inside the testbed (an emulated test host with a real /dev/kvm).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tests/setup.sh

echo "== unit tests and tiny-guest KVM tests (this machine)"
cargo test --workspace

echo "== end-to-end tests (testbed)"
export HUSK_GUEST_KERNEL HUSK_GUEST_INITRD
HUSK_GUEST_KERNEL=$(guest-image/build.sh path guest)
HUSK_GUEST_INITRD=$(guest-image/build.sh path initramfs)
# Every end-to-end suite, built once; they run in one boot of the testbed.
suites=()
for suite in smoke vmm_boot; do
    bin=$(cargo test -p husk-tests --test "$suite" --no-run 2>&1 |
        sed -n 's/^ *Executable .*(\(.*\))$/\1/p')
    [ -x "$bin" ] || { echo "run.sh: cannot find the $suite test binary" >&2; exit 1; }
    suites+=("$bin")
done
target/debug/husk-testbed --timeout "${HUSK_E2E_TIMEOUT:-900}" -- tests/e2e.sh "${suites[@]}"
