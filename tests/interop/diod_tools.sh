#!/bin/bash
# Interop check of a 9P2000.L server that exports this machine's /proc, with diod's client tools
# (Debian diod 1.0.24: diodls, diodcat). They send Tversion(65536, "9P2000.L"), a Tauth (an error
# reply means no auth), Tattach with n_uname = euid, then walk/lopen/readdir/read/getattr.
#
# usage: diod_tools.sh HOST:PORT ANAME          (ANAME: /proc for diod; what the server exports)
#
# Each check prints 'PASS name' or 'FAIL name: detail'; the last line is
# 'diod_tools: N passed, N failed'; exit 1 if any failed, 2 on usage/setup errors.
# DIOD_TOOLS_TIMEOUT (default 15) bounds every tool run, in seconds.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 HOST:PORT ANAME" >&2
    exit 2
fi
ADDR=$1 ANAME=$2
PATH=$PATH:/usr/sbin:/sbin   # Debian puts diodls and diodcat in /usr/sbin
TMO=${DIOD_TOOLS_TIMEOUT:-15}
for t in diodls diodcat timeout; do
    command -v $t >/dev/null || { echo "diod_tools: $t not found (run .ci/setup-peers.sh)" >&2; exit 2; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/diod_tools.XXXXXX")
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS $1${2:+: $2}"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }

# tool NAME ARGS...: run a diod tool with a bound; stdout to $T/out, stderr to $T/err; returns its status
tool() {
    local rc=0
    timeout -k 2 $((TMO + 5)) "$1" -t "$TMO" -s "$ADDR" -a "$ANAME" "${@:2}" >"$T/out" 2>"$T/err" || rc=$?
    if [ $rc = 124 ] || [ $rc = 137 ]; then echo "timed out after ${TMO}s" >>"$T/err"; fi
    return $rc
}
errtext() { tr '\n' ' ' <"$T/err" | cut -c1-200 || true; }

echo "diod_tools: diodls/diodcat against $ADDR aname=$ANAME"
t0=$(date +%s%N)

# 1. diodls / : has loadavg, meminfo, pid 1, this script's own pid, and every long-lived local pid
before=$(ls /proc | grep -E '^[0-9]+$' | sort)
if tool diodls /; then
    after=$(ls /proc | grep -E '^[0-9]+$' | sort)
    cp "$T/out" "$T/root"
    miss=""
    for n in loadavg meminfo 1 $$; do grep -qx -- "$n" "$T/root" || miss="$miss $n"; done
    stable=$(comm -12 <(echo "$before") <(echo "$after"))
    lost=$(comm -23 <(echo "$stable") <(grep -E '^[0-9]+$' "$T/root" | sort) | head -10 | tr '\n' ' ' || true)
    if [ -n "$miss" ]; then
        fail diodls-root "listing of / lacks:$miss ($(wc -l <"$T/root") entries)"
    elif [ -n "$lost" ]; then
        fail diodls-root "local pids alive during the listing are missing: $lost"
    elif [ "$(sort "$T/root" | uniq -d | wc -l)" -ne 0 ]; then
        fail diodls-root "duplicate names: $(sort "$T/root" | uniq -d | head -5 | tr '\n' ' ')"
    else
        pass diodls-root "$(wc -l <"$T/root") entries, $(grep -cE '^[0-9]+$' "$T/root") pids"
    fi
else
    fail diodls-root "diodls / failed: $(errtext)"
fi

# 2. diodcat loadavg: looks like /proc/loadavg
if tool diodcat loadavg; then
    if grep -qE '^[0-9]+\.[0-9]{2} [0-9]+\.[0-9]{2} [0-9]+\.[0-9]{2} [0-9]+/[0-9]+ [0-9]+$' "$T/out" \
        && [ "$(wc -l <"$T/out")" = 1 ] \
        && [ "$(wc -w <"$T/out")" = "$(wc -w </proc/loadavg)" ]; then
        pass diodcat-loadavg "$(cat "$T/out")"
    else
        fail diodcat-loadavg "does not look like /proc/loadavg: $(head -c 200 "$T/out" | tr '\n' '|')"
    fi
else
    fail diodcat-loadavg "diodcat loadavg failed: $(errtext)"
fi

# 3. diodcat meminfo: the same keys as the local one, same MemTotal
if tool diodcat meminfo; then
    if ! diff <(cut -d: -f1 "$T/out") <(cut -d: -f1 /proc/meminfo) >"$T/diff"; then
        fail diodcat-meminfo "keys differ from /proc/meminfo: $(head -4 "$T/diff" | tr '\n' '|')"
    elif [ "$(grep '^MemTotal:' "$T/out")" != "$(grep '^MemTotal:' /proc/meminfo)" ]; then
        fail diodcat-meminfo "MemTotal differs: $(grep '^MemTotal:' "$T/out")"
    else
        pass diodcat-meminfo "$(wc -l <"$T/out") keys"
    fi
else
    fail diodcat-meminfo "diodcat meminfo failed: $(errtext)"
fi

# 4. diodcat 1/status: the Name line is the local pid 1's
if tool diodcat 1/status; then
    want=$(grep '^Name:' /proc/1/status)
    got=$(grep '^Name:' "$T/out" || true)
    if [ "$got" = "$want" ] && grep -qE '^Pid:[[:space:]]+1$' "$T/out"; then
        pass diodcat-1-status "$(echo "$got" | tr '\t' ' ')"
    else
        fail diodcat-1-status "Name line '$got', local '$want'"
    fi
else
    fail diodcat-1-status "diodcat 1/status failed: $(errtext)"
fi

# 5. diodls -l /1: a getattr per entry; lists status, maps, exe like the local /proc/1
if tool diodls -l /1; then
    miss=""
    for n in status maps exe cwd fd; do grep -qE " $n\$" "$T/out" || miss="$miss $n"; done
    if [ -n "$miss" ]; then
        fail diodls-l-1 "long listing of /1 lacks:$miss"
    elif [[ "$(grep -E ' status$' "$T/out" || true)" != -r--r--r--* ]]; then
        fail diodls-l-1 "status is not -r--r--r--: $(grep -E ' status$' "$T/out" || true)"
    elif [[ "$(grep -E ' fd$' "$T/out" || true)" != d* ]]; then
        fail diodls-l-1 "fd is not a directory: $(grep -E ' fd$' "$T/out" || true)"
    else
        pass diodls-l-1 "$(wc -l <"$T/out") entries"
    fi
else
    fail diodls-l-1 "diodls -l /1 failed: $(errtext)"
fi

# 6. a missing file is an error (non-zero exit, an ENOENT message)
if tool diodcat no-such-file.gproc-check; then
    fail diodcat-enoent "reading a missing file succeeded"
elif grep -q 'No such file' "$T/err"; then
    pass diodcat-enoent "$(errtext)"
else
    fail diodcat-enoent "expected 'No such file or directory', got: $(errtext)"
fi

ms=$((($(date +%s%N) - t0) / 1000000))
echo "diod_tools: against $ADDR took $((ms / 1000)).$((ms % 1000 / 100))s"
echo "diod_tools: $passed passed, $failed failed"
[ "$failed" = 0 ]
