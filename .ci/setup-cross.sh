#!/usr/bin/env bash
# Heterogeneous nodes for the tests: builds the lean gproc (no FUSE, TUI or
# benchmarks) for big-endian powerpc64 and for aarch64, to be run under
# qemu-user as nodes of an x86_64 aggregator (and as an aggregator over
# x86_64 agents) by tests/it/hetero.rs.
#
# The Rust targets come from `rustup target add`; Debian's cross linkers and
# qemu-user from apt. If a download fails this says so loudly, records why
# in target/cross/STATUS, and exits 0 so the rest of CI goes on; the test
# then skips loudly with that reason. Run as root from the repository root.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=target/cross
mkdir -p "$OUT"
STATUS=$OUT/STATUS
start=$(date +%s)
fail() {
    echo "!!! setup-cross: $* -- the heterogeneous-node test will be SKIPPED !!!" >&2
    echo "failed: $*" >"$STATUS"
    exit 0
}

# Triples and their Debian cross linkers and qemu-user emulators.
TARGETS=(powerpc64-unknown-linux-gnu aarch64-unknown-linux-gnu)
declare -A GCC=([powerpc64-unknown-linux-gnu]=powerpc64-linux-gnu-gcc [aarch64-unknown-linux-gnu]=aarch64-linux-gnu-gcc)
PKGS=(qemu-user gcc-powerpc64-linux-gnu gcc-aarch64-linux-gnu libc6-dev-ppc64-cross libc6-dev-arm64-cross)

need=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup-cross: apt-get install ${need[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/tmp/setup-cross-apt.log 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/tmp/setup-cross-apt.log 2>&1 ||
            fail "apt-get install ${need[*]} failed (see /tmp/setup-cross-apt.log)"
    fi
fi
for t in "${TARGETS[@]}"; do
    if ! rustup target list --installed 2>/dev/null | grep -qx "$t"; then
        echo "setup-cross: rustup target add $t"
        timeout 600 rustup target add "$t" >/tmp/setup-cross-rustup.log 2>&1 ||
            fail "rustup target add $t failed (no network to static.rust-lang.org?): $(tail -1 /tmp/setup-cross-rustup.log)"
    fi
done
for t in "${TARGETS[@]}"; do
    var=CARGO_TARGET_$(echo "$t" | tr 'a-z-' 'A-Z_')_LINKER
    echo "setup-cross: cargo build --profile cross --no-default-features --target $t"
    if ! env "$var=${GCC[$t]}" cargo build -q --profile cross --no-default-features --target "$t" --target-dir "$OUT/build" >/tmp/setup-cross-build.log 2>&1; then
        tail -20 /tmp/setup-cross-build.log >&2
        fail "building gproc for $t failed"
    fi
    cp "$OUT/build/$t/cross/gproc" "$OUT/gproc-$t"
done
echo "ok: ${TARGETS[*]}" >"$STATUS"
echo "setup-cross: built ${TARGETS[*]} in $(( $(date +%s) - start ))s"
