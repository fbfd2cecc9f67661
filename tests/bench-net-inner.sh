#!/usr/bin/env bash
# The part of tests/bench-net.sh that runs where KVM is (the testbed): podman with
# runc and with husk, one container each on the default bridge network.
set -euo pipefail
MIB=${MIB:-64} PINGS=${PINGS:-20}
W=$(mktemp -d /tmp/husk-bench-net.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/image/bin" "$W/image/etc" "$W/image/proc" "$W/image/dev" "$W/image/sys" "$W/image/tmp"
cp /bin/busybox "$W/image/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$W/image/bin/$a"; done
tar -C "$W/image" -cf "$W/image.tar" .
cat >"$W/husk.toml" <<EOF
kernel = "$HUSK_GUEST_KERNEL"
initramfs = "$HUSK_GUEST_INITRD"
virtiofsd = "$HUSK_VIRTIOFSD"
vcpus = 1
memory_mib = 256
boot_timeout_secs = 120
EOF
printf '#!/bin/sh\nHUSK_CONFIG=%s exec %s "$@"\n' "$W/husk.toml" "$PWD/target/release/husk" >"$W/husk"
chmod +x "$W/husk"
P=(podman --storage-driver=vfs --root="$W/storage" --runroot="$W/runroot"
    --cgroup-manager=cgroupfs --events-backend=file)
"${P[@]}" import "$W/image.tar" localhost/bench-net >/dev/null
GW=10.88.0.1
BYTES=$((MIB << 20))

# The host side of one transfer, in Python (the test host has no netcat): prints MiB/s.
#   send IP PORT: connect (retrying while the container starts), send BYTES, half-close,
#                 wait for the container's side to close (it got everything);
#   recv PORT:    accept one connection, read BYTES.
host() {
    python3 - "$@" <<'EOF'
import socket, sys, time
mode, n = sys.argv[1], int(sys.argv[-1])
chunk = b"\0" * (1 << 20)
if mode == "send":
    ip, port = sys.argv[2], int(sys.argv[3])
    deadline = time.time() + 120
    while True:
        try:
            s = socket.create_connection((ip, port), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    start = time.time()
    left = n
    while left:
        left -= s.send(chunk[: min(left, len(chunk))])
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
else:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(sys.argv[2])))
    ls.listen(1)
    ls.settimeout(300)
    s, _ = ls.accept()
    start = time.time()
    got = 0
    while got < n:
        b = s.recv(1 << 20)
        if not b:
            break
        got += len(b)
    if got < n:
        sys.exit(f"received {got} of {n} bytes")
print(f"{n / (1 << 20) / (time.time() - start):.1f}")
EOF
}

measure() { # runtime-args... -> "to_ctr from_ctr rtt_avg"
    local name=bench-net-$RANDOM
    "${P[@]}" "$@" run -d --name "$name" localhost/bench-net \
        sh -c 'while true; do nc -l -p 5001 | wc -c; done' >/dev/null
    local ip
    ip=$("${P[@]}" inspect --format '{{.NetworkSettings.IPAddress}}' "$name")
    local to from rtt
    to=$(host send "$ip" 5001 "$BYTES")
    host recv 5002 "$BYTES" >"$W/from" &
    local receiver=$!
    for _ in $(seq 100); do ss -ltn | grep -q ':5002 ' && break; sleep 0.1; done
    # No /dev/zero: the guest does not mount the image's /dev yet.
    "${P[@]}" exec "$name" sh -c "yes | head -c $BYTES | nc $GW 5002" >/dev/null 2>&1 || true
    wait "$receiver"
    from=$(cat "$W/from")
    rtt=$(busybox ping -q -c "$PINGS" -i 0.2 "$ip" | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p')
    "${P[@]}" rm -f -t 0 "$name" >/dev/null
    echo "$to $from $rtt"
}

echo "bench-net: runc..." >&2
runc=$(measure --runtime runc)
read -r runc_to runc_from runc_rtt <<<"$runc"
echo "bench-net: husk..." >&2
husk=$(measure --runtime "$W/husk")
read -r husk_to husk_from husk_rtt <<<"$husk"
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo
echo "TCP between the test host and a container on podman's bridge ($MIB MiB each way, $PINGS pings)"
echo
echo "| metric | husk | runc | husk / runc |"
echo "|---|---:|---:|---:|"
echo "| host to container (MiB/s) | $husk_to | $runc_to | $(ratio "$husk_to" "$runc_to") |"
echo "| container to host (MiB/s) | $husk_from | $runc_from | $(ratio "$husk_from" "$runc_from") |"
echo "| ping round trip, mean (ms) | $husk_rtt | $runc_rtt | $(ratio "$husk_rtt" "$runc_rtt") |"
