#!/usr/bin/env bash
# Runs the README's "Two commands" exactly as printed there, so the README
# cannot drift from what works on a fresh machine:
#   readme-commands.sh tests   the test command (peers, munged, cross
#                              builds, cargo test), as .ci/run's main step
#   readme-commands.sh demo    the demo command: waits for its summary,
#                              runs the first commands it suggests, stops
#                              it with Ctrl-C's signal and wants exit 0
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: .ci/readme-commands.sh tests|demo}

# The Nth ```sh block of the README's "## Two commands" section.
block() {
    awk -v n="$1" '
        /^## Two commands/ { s = 1; next }
        s && /^## / { exit }
        s && /^```sh/ { c++; if (c == n) { p = 1; next } }
        p && /^```/ { exit }
        p { print }
    ' README.md
}

one_line() {
    local cmd=$1 name=$2
    if [ -z "$cmd" ] || [ "$(printf '%s\n' "$cmd" | wc -l)" -ne 1 ]; then
        echo "readme-commands: README's $name command is not one line under '## Two commands':" >&2
        printf '%s\n' "$cmd" >&2
        exit 1
    fi
}

case $what in
tests)
    cmd=$(block 2)
    one_line "$cmd" test
    echo "readme-commands: running the README's test command: $cmd"
    bash -c "$cmd"
    ;;
demo)
    cmd=$(block 1)
    one_line "$cmd" demo
    out=$(mktemp -d)
    trap 'kill -KILL -- "-$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
    echo "readme-commands: running the README's demo command: $cmd"
    setsid bash -c "exec $cmd" >"$out/stdout" 2>"$out/stderr" &
    pid=$!
    # It builds first (a release build on a clean checkout): minutes.
    for _ in $(seq 1 1200); do
        grep -q "Ctrl-C stops it" "$out/stdout" && break
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "readme-commands: the demo exited before its summary" >&2
            cat "$out/stdout" "$out/stderr" >&2
            exit 1
        fi
        sleep 1
    done
    if ! grep -q "Ctrl-C stops it" "$out/stdout"; then
        echo "readme-commands: no demo summary within 20 minutes" >&2
        tail -20 "$out/stderr" >&2
        exit 1
    fi
    # The commands it suggests, as printed (indented lines that run gproc).
    mapfile -t tries < <(awk '/Try, in another terminal:/ { s = 1; next }
        s && /^$/ && n { exit } s && /^  \// { sub(/^  /, ""); print; n++ }' "$out/stdout")
    if [ "${#tries[@]}" -lt 3 ]; then
        echo "readme-commands: the demo suggested fewer than 3 commands" >&2
        cat "$out/stdout" >&2
        exit 1
    fi
    for t in "${tries[@]}"; do
        echo "readme-commands: $t"
        if ! got=$(bash -c "$t" 2>&1) || [ -z "$got" ]; then
            echo "readme-commands: the demo's suggestion failed or printed nothing: $t" >&2
            printf '%s\n' "$got" >&2
            exit 1
        fi
        head -n 3 <<<"$got"
    done
    kill -INT -- "-$pid"
    rc=0
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "readme-commands: the demo exited with $rc on Ctrl-C's signal (want 0)" >&2
        tail -20 "$out/stderr" >&2
        exit 1
    fi
    # Its own lines only: no log noise on stderr but warnings.
    if grep -E ' (INFO|DEBUG|TRACE) ' "$out/stderr" >/dev/null; then
        echo "readme-commands: the demo printed log noise:" >&2
        cat "$out/stderr" >&2
        exit 1
    fi
    echo "readme-commands: the demo command works as printed"
    ;;
*)
    echo "usage: .ci/readme-commands.sh tests|demo" >&2
    exit 2
    ;;
esac
