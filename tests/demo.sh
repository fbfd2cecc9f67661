#!/usr/bin/env bash
# husk's main job: podman runs a container in a KVM microVM through husk. Sets up this
# machine first (tests/setup.sh). `husk check` decides where the microVM runs: here if
# this host can run husk microVMs, otherwise inside the testbed (an emulated test host
# with a real /dev/kvm), whose reason it prints.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tests/setup.sh >&2
husk=$PWD/target/debug/husk
if "$husk" check --quiet; then
    echo "demo: this host can run husk microVMs: running here" >&2
    exec tests/podman-demo.sh "$husk"
fi
echo "demo: this host cannot run husk microVMs (husk check says why):" >&2
"$husk" check >&2 || true
echo "demo: running inside the testbed instead" >&2
exec target/debug/husk-testbed --timeout 600 -- tests/podman-demo.sh "$husk"
