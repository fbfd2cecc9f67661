#!/bin/sh
# podman runs a container in a husk microVM: an image made here from Debian's static
# busybox, run with husk as the OCI runtime. Run by tests/demo.sh, on this host when
# it can run microVMs, otherwise inside the testbed. podman keeps its storage in a
# scratch directory (vfs: it works on any file system), without network.
set -eu
husk=${1:?usage: podman-demo.sh PATH-TO-HUSK}
work=$(mktemp -d /tmp/husk-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/image/bin" "$work/image/proc" "$work/image/dev" "$work/image/tmp"
cp /bin/busybox "$work/image/bin/"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$work/image/bin/$applet"
done
tar -C "$work/image" -cf "$work/image.tar" .
podman="podman --storage-driver=vfs --root=$work/storage --runroot=$work/run \
    --cgroup-manager=cgroupfs --events-backend=file --runtime=$husk"
$podman import --quiet "$work/image.tar" localhost/husk-demo >/dev/null
echo "demo: podman --runtime=$husk run --rm localhost/husk-demo sh -c '...'" >&2
$podman run --rm --network=none localhost/husk-demo sh -c \
    'echo "hello from a container in a husk microVM"; echo "guest kernel: $(uname -r)"; echo "guest CPUs: $(grep -c ^processor /proc/cpuinfo)"'
