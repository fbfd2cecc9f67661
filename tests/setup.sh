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
    # virtiofsd's build dependencies, and what the virtio-fs suite formats its
    # scratch file system with
    libseccomp-dev libcap-ng-dev pkg-config e2fsprogs
    # A static busybox: the root filesystem of the test containers and images.
    busybox-static
    # The engine of the main job and of the podman suite.
    podman
    # The engine of the containerd suite (with ctr), driving containerd-shim-husk-v2.
    containerd
    # The CRI suite's client (a venv with PyPI's CRI stubs) and the pod network's
    # CNI plugins (bridge, host-local, loopback, portmap).
    python3-venv containernetworking-plugins
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

# virtiofsd, the virtio-fs backend: the Rust implementation from crates.io, pinned,
# built once into the cache (minutes on a fresh machine) and linked onto PATH.
virtiofsd_version=1.14.0
cache=${HUSK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/husk}
virtiofsd=$cache/virtiofsd-$virtiofsd_version/bin/virtiofsd
if [ ! -x "$virtiofsd" ]; then
    echo "setup: building virtiofsd $virtiofsd_version (once; cached in $cache)"
    cargo install --quiet --locked virtiofsd --version "$virtiofsd_version" \
        --root "$cache/virtiofsd-$virtiofsd_version"
fi
if [ "$(readlink /usr/local/bin/virtiofsd 2>/dev/null)" != "$virtiofsd" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo ln -sfn "$virtiofsd" /usr/local/bin/virtiofsd
fi

# The CRI suite's client: PyPI's generated CRI v1 stubs (with grpcio), pinned, in a
# venv in the cache (tests/cri/cri.py runs on it).
cri_api_version=2.0.1
cri_venv=$cache/cri-venv
if ! "$cri_venv/bin/python" -c "import cri_api" 2>/dev/null ||
    ! "$cri_venv/bin/pip" show container-runtime-interface-api 2>/dev/null |
        grep -qx "Version: $cri_api_version"; then
    echo "setup: installing container-runtime-interface-api $cri_api_version (venv in $cri_venv)"
    python3 -m venv "$cri_venv"
    "$cri_venv/bin/pip" install --quiet "container-runtime-interface-api==$cri_api_version"
fi

echo "setup: building the workspace"
cargo build --workspace --bins
echo "setup: building the guest image (kernels are cached; the first build takes minutes)"
guest-image/build.sh all

# The guest image where husk looks for it by default (/etc/husk/config.toml's
# `kernel` and `initramfs` unset): symlinks into the content-hashed cache.
share=/usr/local/share/husk
kernel=$(guest-image/build.sh path guest-vmlinux)
initramfs=$(guest-image/build.sh path initramfs)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo mkdir -p "$share"
[ "$(readlink "$share/vmlinux" 2>/dev/null)" = "$kernel" ] || $sudo ln -sfn "$kernel" "$share/vmlinux"
[ "$(readlink "$share/initramfs.cpio.gz" 2>/dev/null)" = "$initramfs" ] ||
    $sudo ln -sfn "$initramfs" "$share/initramfs.cpio.gz"
