#!/bin/sh
# Runs end-to-end test binaries one after the other (inside the testbed), with their
# hardware-KVM tests (`--ignored`); fails if any of them failed. HUSK_E2E_SKIP names
# tests to leave out (space-separated exact names); each is announced.
failed=0
skip=""
for name in ${HUSK_E2E_SKIP:-}; do
    echo "e2e: skipping $name (HUSK_E2E_SKIP)"
    skip="$skip --skip $name"
done
for bin in "$@"; do
    echo "== $(basename "$bin")"
    # shellcheck disable=SC2086 # $skip is a list of words
    "$bin" --ignored --test-threads=1 --color=never $skip || failed=1
done
exit $failed
