#!/bin/bash
# The v9fs matrix: run-vm.sh for each kernel x mount-option set, a few VMs at a time.
#
# usage: run-matrix.sh PORT ANAME
#
# Environment:
#   V9FS_KERNELS  default "6.1 6.12"
#   V9FS_OPTSETS  default "cache=none,access=any cache=none,access=client cache=none,access=user
#                          cache=loose,access=client"
#   V9FS_JOBS     VMs at once, default 2
#   V9FS_XFAIL    kernel:optset pairs whose failure is expected, default "6.1:cache=loose,access=client"
#                 (6.1 reads files through the page cache under cache=loose, bounded by i_size, so
#                 /proc-style files of size 0 read empty whatever the server does; the rule
#                 qid.version=0 -> direct reads came with the later cache-mode rework, in 6.12).
#                 An expected failure is reported
#                 as XFAIL and does not fail the matrix; if it passes it is reported as XPASS.
# Prints every run's output (one after the other), then a summary table and
# 'run-matrix: N passed, N failed'. Exit 1 if any run failed unexpectedly.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -ne 2 ]; then
    echo "usage: $0 PORT ANAME" >&2
    exit 2
fi
PORT=$1 ANAME=$2
read -r -a KERNELS <<<"${V9FS_KERNELS:-6.1 6.12}"
read -r -a OPTSETS <<<"${V9FS_OPTSETS:-cache=none,access=any cache=none,access=client cache=none,access=user cache=loose,access=client}"
JOBS=${V9FS_JOBS:-2}
XFAIL=" ${V9FS_XFAIL-6.1:cache=loose,access=client} "

W=$(mktemp -d "${TMPDIR:-/tmp}/run-matrix.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT

t0=$(date +%s)
runs=()
for k in "${KERNELS[@]}"; do
    for o in "${OPTSETS[@]}"; do runs+=("$k|$o"); done
done
echo "run-matrix: ${#runs[@]} VMs (${KERNELS[*]} x ${OPTSETS[*]}), $JOBS at a time, server 127.0.0.1:$PORT aname='$ANAME'"

i=0
running=0
for r in "${runs[@]}"; do
    k=${r%%|*} o=${r#*|}
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    (
        rc=0
        "$HERE/run-vm.sh" "$k" "$PORT" "$ANAME" "$o" >"$W/$i.log" 2>&1 || rc=$?
        echo $rc >"$W/$i.rc"
    ) &
    PIDS+=($!)
    running=$((running + 1))
    i=$((i + 1))
done
wait || true
PIDS=()

npass=0 nfail=0
summary=""
for ((i = 0; i < ${#runs[@]}; i++)); do
    k=${runs[$i]%%|*} o=${runs[$i]#*|}
    rc=$(cat "$W/$i.rc" 2>/dev/null || echo 99)
    echo
    echo "################ kernel $k, $o"
    cat "$W/$i.log"
    took=$(sed -n 's/^run-vm: .* took \([0-9]*s\)$/\1/p' "$W/$i.log" | tail -1)
    counts=$(tail -1 "$W/$i.log")
    if [[ "$XFAIL" == *" $k:$o "* ]]; then
        if [ "$rc" = 0 ]; then verdict=XPASS; else verdict=XFAIL; fi
        npass=$((npass + 1))
    elif [ "$rc" = 0 ]; then
        verdict=PASS; npass=$((npass + 1))
    else
        verdict=FAIL; nfail=$((nfail + 1))
    fi
    summary+=$(printf '%-5s kernel %-4s %-28s %5s  %s' "$verdict" "$k" "$o" "${took:-?}" "${counts#run-vm: }")$'\n'
done
echo
echo "run-matrix: summary"
printf '%s' "$summary"
echo "run-matrix: took $(($(date +%s) - t0))s"
echo "run-matrix: $npass passed, $nfail failed"
[ "$nfail" = 0 ]
