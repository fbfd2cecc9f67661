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
smoke=$(cargo test -p husk-tests --test smoke --no-run 2>&1 |
    sed -n 's/^ *Executable .*(\(.*\))$/\1/p')
[ -x "$smoke" ] || { echo "run.sh: cannot find the smoke test binary" >&2; exit 1; }
target/debug/husk-testbed --timeout "${HUSK_E2E_TIMEOUT:-900}" -- \
    "$smoke" --ignored --test-threads=1
