#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for husk: Debian packages, the workspace build,
# the guest kernel, the test-host kernel and the initramfs (cached by content hash
# under ~/.cache/husk, so a second run only checks). Safe to run again and again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# What husk, its guest-image build and its testbed need from Debian.
packages=(
    linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils
    qemu-system-x86
    # A static busybox: the root filesystem of the agent's container unit tests.
    busybox-static
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

echo "setup: building the workspace"
cargo build --workspace --bins
echo "setup: building the guest image (kernels are cached; the first build takes minutes)"
guest-image/build.sh all
