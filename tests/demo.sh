#!/usr/bin/env bash
# husk's main job, as far as it goes today: boot the guest image in a KVM microVM with
# husk's own VMM (husk-vmm) and show the agent's readiness line. Where this host's /dev/kvm cannot boot Linux guests
# (no hardware virtualization, or PVM), the microVM runs inside the testbed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tests/setup.sh >&2

kernel=$(guest-image/build.sh path guest)
initrd=$(guest-image/build.sh path initramfs)
# Hardware KVM means kvm_intel or kvm_amd; PVM's kvm_pvm cannot boot unmodified Linux.
if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
    echo "demo: this host has hardware KVM: booting the microVM here" >&2
    run=()
else
    echo "demo: this host cannot boot Linux microVMs itself: using the testbed" >&2
    run=(target/debug/husk-testbed --timeout 300 --)
fi
echo "demo: kernel $kernel, initramfs $initrd" >&2
exec "${run[@]}" target/debug/husk-vmm --kernel "$kernel" --initrd "$initrd" \
    --vcpus 2 --mem 256 --rng \
    --cmdline "console=ttyS0 reboot=t panic=-1 quiet husk.poweroff_after=1"
