#!/usr/bin/env bash
# Builds husk's kernels and the guest initramfs, cached by content hash.
#
#   guest-image/build.sh kernel guest|testhost   build (or reuse) one kernel
#   guest-image/build.sh initramfs               pack husk-agent as /init
#   guest-image/build.sh all                     all of the above
#   guest-image/build.sh path guest|guest-vmlinux|testhost|initramfs|checker
#                                                print the cached path (build if missing)
#
# Outputs live under $HUSK_CACHE_DIR (default ~/.cache/husk), outside the work tree,
# in folders named after a hash of every input, so a second run costs nothing.
# Progress and diagnostics go to stderr; `path` prints only the path on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${HUSK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/husk}
src_pkg=linux-source-6.1
jobs=${HUSK_BUILD_JOBS:-$(nproc)}

log() { printf 'guest-image: %s\n' "$*" >&2; }
die() { printf 'guest-image: error: %s\n' "$*" >&2; exit 1; }

# The Debian source tarball, extracted once per package version.
kernel_source() {
    local ver tarball dir
    ver=$(dpkg-query -W -f='${Version}' "$src_pkg" 2>/dev/null) ||
        die "$src_pkg is not installed (run tests/setup.sh, or: apt-get install $src_pkg)"
    tarball=/usr/src/$src_pkg.tar.xz
    [ -f "$tarball" ] || die "$tarball is missing: reinstall $src_pkg"
    dir=$cache/src/$src_pkg-$ver
    if [ ! -f "$dir/.extracted" ]; then
        log "extracting $tarball (once per source version)"
        rm -rf "$dir" && mkdir -p "$dir"
        tar -xf "$tarball" -C "$dir" --strip-components=1
        touch "$dir/.extracted"
    fi
    printf '%s\n' "$dir"
}

# Fragments that make up a flavour: the test host is the guest plus its own fragment.
fragments() {
    case $1 in
    guest) echo "$here/kernel/guest.config" ;;
    testhost) echo "$here/kernel/guest.config $here/kernel/testhost.config" ;;
    *) die "unknown kernel flavour '$1' (expected guest or testhost)" ;;
    esac
}

kernel_hash() {
    local flavour=$1
    {
        echo "$src_pkg $(dpkg-query -W -f='${Version}' "$src_pkg" 2>/dev/null || echo missing)"
        gcc --version | head -n1
        # shellcheck disable=SC2046
        cat $(fragments "$flavour")
        sed -n '/^# >>> kernel recipe/,/^# <<< kernel recipe/p' "${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-16
}

kernel_dir() { printf '%s/kernel/%s-%s\n' "$cache" "$1" "$(kernel_hash "$1")"; }

# >>> kernel recipe (part of the cache key: edit it and kernels rebuild)
build_kernel() {
    local flavour=$1 out src obj frag merged
    out=$(kernel_dir "$flavour")
    if [ -f "$out/bzImage" ] && [ -f "$out/vmlinux" ]; then
        log "kernel $flavour: cached at $out"
        return
    fi
    src=$(kernel_source)
    obj=$cache/build/$flavour
    mkdir -p "$obj"
    merged=$obj/fragment.config
    # shellcheck disable=SC2046
    cat $(fragments "$flavour") >"$merged"

    log "kernel $flavour: configuring (allnoconfig + $(basename -a $(fragments "$flavour") | tr '\n' ' '))"
    make -s -C "$src" O="$obj" KCONFIG_ALLCONFIG="$merged" allnoconfig >"$obj/config.log" 2>&1 ||
        { cat "$obj/config.log" >&2; die "kernel $flavour: configuration failed"; }

    # Kconfig silently drops symbols whose dependencies are unmet: refuse that.
    local missing=()
    while IFS= read -r line; do
        grep -qxF "$line" "$obj/.config" || missing+=("$line")
    done < <(grep -E '^CONFIG_[A-Za-z0-9_]+=' "$merged")
    if [ ${#missing[@]} -gt 0 ]; then
        die "kernel $flavour: Kconfig did not keep: ${missing[*]} (check their dependencies)"
    fi

    log "kernel $flavour: compiling with $jobs jobs (about 5 minutes on 2 cores); log: $obj/build.log"
    local start=$SECONDS
    make -C "$src" O="$obj" -j"$jobs" bzImage vmlinux >"$obj/build.log" 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 15
        kill -0 "$pid" 2>/dev/null || break
        log "kernel $flavour: $(grep -c '^  CC' "$obj/build.log" || true) files compiled, $((SECONDS - start))s"
    done
    wait "$pid" || { tail -n 40 "$obj/build.log" >&2; die "kernel $flavour: build failed"; }

    mkdir -p "$out.tmp"
    cp "$obj/arch/x86/boot/bzImage" "$obj/vmlinux" "$obj/.config" "$out.tmp/"
    rm -rf "$out" && mv "$out.tmp" "$out"
    log "kernel $flavour: built in $((SECONDS - start))s at $out"
}
# <<< kernel recipe

# A workspace binary built statically (glibc with crt-static): the agent (the
# initramfs has no libc) and the checker the suites run inside containers.
static_binary() {
    local package=$1 target=x86_64-unknown-linux-gnu
    log "building $package (static, release)"
    (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --quiet --release -p "$package" --target "$target") >&2 ||
        die "$package build failed"
    local bin=${CARGO_TARGET_DIR:-$repo/target}/$target/release/$package
    file_is_static "$bin" || die "$bin is not statically linked"
    printf '%s\n' "$bin"
}

agent_binary() {
    static_binary husk-agent
}

file_is_static() {
    # A static executable has no PT_INTERP program header.
    ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'
}

gen_init_cpio() {
    local tool=$cache/bin/gen_init_cpio
    if [ ! -x "$tool" ]; then
        mkdir -p "$cache/bin"
        gcc -O2 -o "$tool" "$(kernel_source)/usr/gen_init_cpio.c"
    fi
    printf '%s\n' "$tool"
}

initramfs_path() {
    local bin=$1 hash
    hash=$({ sha256sum "$bin" | cut -d' ' -f1; sed -n '/^# >>> initramfs recipe/,/^# <<< initramfs recipe/p' "${BASH_SOURCE[0]}"; } |
        sha256sum | cut -c1-16)
    printf '%s/initramfs/initramfs-%s.cpio.gz\n' "$cache" "$hash"
}

# >>> initramfs recipe
# Builds (or finds) the initramfs; leaves its path in $initramfs_out.
build_initramfs() {
    local bin out list tool
    bin=$(agent_binary)
    out=$(initramfs_path "$bin")
    initramfs_out=$out
    if [ -f "$out" ]; then
        log "initramfs: cached at $out"
        return
    fi
    tool=$(gen_init_cpio)
    mkdir -p "$(dirname "$out")"
    list=$(mktemp)
    cat >"$list" <<EOT
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /proc 0555 0 0
dir /sys 0555 0 0
dir /run 0755 0 0
dir /tmp 1777 0 0
file /init $bin 0755 0 0
EOT
    "$tool" "$list" | gzip -9 >"$out.tmp"
    rm -f "$list"
    mv "$out.tmp" "$out"
    log "initramfs: $(du -h "$out" | cut -f1) at $out"
}
# <<< initramfs recipe

cmd=${1:-all}
case $cmd in
kernel)
    build_kernel "${2:?usage: build.sh kernel guest|testhost}"
    echo "$(kernel_dir "$2")"
    ;;
initramfs)
    build_initramfs
    echo "$initramfs_out"
    ;;
all)
    build_kernel guest
    build_kernel testhost
    build_initramfs
    echo "guest kernel:    $(kernel_dir guest)/bzImage"
    echo "test-host kernel: $(kernel_dir testhost)/bzImage"
    echo "initramfs:       $initramfs_out"
    ;;
path)
    case ${2:-} in
    guest | testhost)
        [ -f "$(kernel_dir "$2")/bzImage" ] || build_kernel "$2"
        echo "$(kernel_dir "$2")/bzImage"
        ;;
    guest-vmlinux)
        [ -f "$(kernel_dir guest)/vmlinux" ] || build_kernel guest
        echo "$(kernel_dir guest)/vmlinux"
        ;;
    initramfs)
        build_initramfs
        echo "$initramfs_out"
        ;;
    checker)
        static_binary husk-checker
        ;;
    *) die "usage: build.sh path guest|guest-vmlinux|testhost|initramfs|checker" ;;
    esac
    ;;
*) die "unknown command '$cmd' (see the header of $0)" ;;
esac
