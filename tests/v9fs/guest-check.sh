#!/bin/sh
# Runs INSIDE the qemu guest (busybox sh), against a Linux v9fs mount of the host's /proc.
# Started by run-vm.sh's /init after the mount.
#
# usage: guest-check.sh [MOUNTPOINT [HELPER_PID]]
#   MOUNTPOINT  default /mnt
#   HELPER_PID  a host process run-vm.sh started for this test (a 'sleep' owned by nobody), whose
#               exe, maps, cmdline and fd/ any attach user may read; its checks are skipped if absent
#
# Prints one line per check, 'PASS name[: detail]' or 'FAIL name: detail', plus lines for
# run-vm.sh to compare with the host: LSPIDS <pids in the mount root>, STATUS1 <first line of
# 1/status>, EXE1 <readlink 1/exe> or EXE1-DENIED, LOADAVG <loadavg>, H-STATUS1, H-EXE, H-MAPS
# <lines> <first line>, H-CMDLINE. Last line: 'GUEST: N passed, N failed'.
M=${1:-/mnt}
H=${2:-}
T=/tmp/guest-check
mkdir -p $T
npass=0
nfail=0
pass() { npass=$((npass + 1)); echo "PASS $1${2:+: $2}"; }
fail() { nfail=$((nfail + 1)); echo "FAIL $1: $2"; }
oneline() { tr '\n' '|' <"$1" | cut -c1-200; }
# run CMD...: bounded (a hung 9p request must not hang the guest), stdout $T/out, stderr $T/err
run() { timeout -s KILL 30 "$@" >$T/out 2>$T/err; }

# ls of the root: loadavg, meminfo and pids. busybox ls lstat()s each entry, so a process that
# exits between the readdir and the lstat gives 'No such file or directory' for it: not an error.
rc=0
run ls "$M" || rc=$?
grep -vE "^ls: $M/[0-9]+: No such file or directory\$" $T/err >$T/err2 || true
[ $rc -le 1 ] || echo "ls exited $rc (killed after 30s?)" >>$T/err2
if [ -s $T/out ] && [ ! -s $T/err2 ]; then
    miss=""
    for n in loadavg meminfo uptime 1 self; do grep -qx "$n" $T/out || miss="$miss $n"; done
    npids=$(grep -cE '^[0-9]+$' $T/out)
    echo "LSPIDS $(grep -E '^[0-9]+$' $T/out | tr '\n' ' ')"
    if [ -n "$miss" ]; then
        fail ls-root "missing:$miss ($(wc -l <$T/out) entries)"
    elif [ "$npids" -lt 2 ]; then
        fail ls-root "only $npids pids listed"
    elif [ -n "$(sort $T/out | uniq -d)" ]; then
        fail ls-root "duplicate entries: $(sort $T/out | uniq -d | head -5 | tr '\n' ' ')"
    else
        pass ls-root "$(wc -l <$T/out) entries, $npids pids"
    fi
else
    fail ls-root "ls $M: $(oneline $T/err2)"
fi

# ls -la of a process directory: lstat of every entry, readlink of the symlinks
if run ls -la "$M/1"; then
    st=$(grep -E ' status$' $T/out)
    exe=$(grep -E ' exe( -> .*)?$' $T/out)
    fd=$(grep -E ' fd$' $T/out)
    if [ -z "$st" ] || [ -z "$exe" ] || [ -z "$fd" ]; then
        fail ls-la-1 "status/exe/fd missing: $(oneline $T/out)"
    elif [ "${st#-r--r--r--}" = "$st" ]; then
        fail ls-la-1 "status is not -r--r--r--: $st"
    elif [ "${fd#d}" = "$fd" ]; then
        fail ls-la-1 "fd is not a directory: $fd"
    elif [ "${exe#l}" = "$exe" ]; then
        fail ls-la-1 "exe is not shown as a symlink: $exe"
    else
        pass ls-la-1 "$(wc -l <$T/out) lines"
    fi
else
    fail ls-la-1 "ls -la $M/1: $(oneline $T/err)"
fi

LA='^[0-9]+\.[0-9][0-9] [0-9]+\.[0-9][0-9] [0-9]+\.[0-9][0-9] [0-9]+/[0-9]+ [0-9]+$'
# cat of a size-0 /proc file (qid.version 0 / direct I/O: must have content even with cache=loose)
if run cat "$M/loadavg"; then
    echo "LOADAVG $(cat $T/out)"
    if [ "$(wc -l <$T/out)" = 1 ] && grep -qE "$LA" $T/out; then
        pass cat-loadavg "$(cat $T/out)"
    else
        fail cat-loadavg "not a loadavg line: '$(oneline $T/out)'"
    fi
else
    fail cat-loadavg "$(oneline $T/err)"
fi

if run cat "$M/1/status"; then
    echo "STATUS1 $(head -1 $T/out)"
    if grep -q '^Name:' $T/out && grep -qE '^Pid:[[:space:]]+1$' $T/out; then
        pass cat-1-status "$(head -1 $T/out | tr '\t' ' '), $(wc -l <$T/out) lines"
    else
        fail cat-1-status "no Name:/Pid: 1 lines: '$(oneline $T/out)'"
    fi
    cp $T/out $T/status1
else
    fail cat-1-status "$(oneline $T/err)"
fi

# read the same files again: a page cache (cache=loose) must not turn them empty or stale-sized
ok=1
detail=""
for i in 1 2 3; do
    if ! run cat "$M/loadavg" || ! grep -qE "$LA" $T/out; then
        ok=0; detail="loadavg read $i: '$(oneline $T/out)' $(oneline $T/err)"; break
    fi
    if ! run cat "$M/1/status" || [ "$(head -1 $T/out)" != "$(head -1 $T/status1 2>/dev/null)" ]; then
        ok=0; detail="1/status read $i: '$(head -1 $T/out)' $(oneline $T/err)"; break
    fi
done
if run head -c 20 "$M/meminfo" && [ "$(wc -c <$T/out)" = 20 ]; then :; else
    ok=0; detail="${detail}head -c 20 meminfo gave $(wc -c <$T/out) bytes"
fi
[ $ok = 1 ] && pass cat-again "3 more reads of loadavg and 1/status, a partial read of meminfo" \
    || fail cat-again "$detail"

# maps: may be empty or refused, but an EIO means the server or the client protocol broke
if run cat "$M/1/maps"; then
    pass cat-1-maps "$(wc -l <$T/out) lines"
elif grep -qi 'I/O error' $T/err; then
    fail cat-1-maps "EIO: $(oneline $T/err)"
else
    pass cat-1-maps "refused without EIO: $(oneline $T/err)"
fi

if run readlink -v "$M/self" && grep -qE '^[0-9]+$' $T/out; then
    pass readlink-self "$(cat $T/out)"
else
    fail readlink-self "'$(oneline $T/out)' $(oneline $T/err)"
fi

# pid 1's exe may be root-only (and on some hosts unreadable even for root): a target, or a
# refusal that is not EIO; run-vm.sh compares it with the host's readlink
if run readlink -v "$M/1/exe" && grep -q '^/' $T/out; then
    echo "EXE1 $(cat $T/out)"
    pass readlink-1-exe "$(cat $T/out)"
elif grep -q 'Permission denied' $T/err; then
    echo "EXE1-DENIED"
    pass readlink-1-exe "denied: $(oneline $T/err)"
else
    fail readlink-1-exe "'$(oneline $T/out)' $(oneline $T/err)"
fi

# a symlink everyone may read, with a known target
if run readlink -v "$M/mounts" && [ "$(cat $T/out)" = self/mounts ]; then
    pass readlink-mounts "self/mounts"
else
    fail readlink-mounts "'$(oneline $T/out)' $(oneline $T/err) (want self/mounts)"
fi

# the helper process: everything in its directory must be readable, and match the host
if [ -n "$H" ]; then
    if run cat "$M/$H/status" && grep -qE '^Name:[[:space:]]+sleep$' $T/out; then
        echo "H-STATUS1 $(head -1 $T/out)"
        pass helper-status "$(grep '^Uid:' $T/out | tr '\t' ' ')"
    else
        fail helper-status "'$(oneline $T/out)' $(oneline $T/err)"
    fi
    if run readlink -v "$M/$H/exe" && grep -q '^/' $T/out; then
        echo "H-EXE $(cat $T/out)"
        pass helper-exe "$(cat $T/out)"
    else
        fail helper-exe "'$(oneline $T/out)' $(oneline $T/err)"
    fi
    if run cat "$M/$H/maps" && [ -s $T/out ]; then
        echo "H-MAPS $(wc -l <$T/out) $(head -1 $T/out)"
        pass helper-maps "$(wc -l <$T/out) lines"
    else
        fail helper-maps "empty or unreadable: $(oneline $T/err)"
    fi
    if run cat "$M/$H/cmdline" && [ -s $T/out ]; then
        echo "H-CMDLINE $(tr '\0' ' ' <$T/out)"
        pass helper-cmdline "$(tr '\0' ' ' <$T/out)"
    else
        fail helper-cmdline "empty or unreadable: $(oneline $T/err)"
    fi
    if run ls "$M/$H/fd" && grep -qx 0 $T/out && run readlink -v "$M/$H/fd/0" && [ "$(cat $T/out)" = /dev/null ]; then
        pass helper-fd "fd/0 -> /dev/null"
    else
        fail helper-fd "'$(oneline $T/out)' $(oneline $T/err)"
    fi
fi

# inode numbers (v9fs: qid.path + 2) are distinct per file and stable across lookups
files="$M $M/loadavg $M/meminfo $M/uptime $M/1 $M/1/status $M/1/stat $M/1/fd"
if run stat -c '%i %n' $files; then
    cp $T/out $T/ino1
    n=$(wc -l <$T/ino1)
    u=$(cut -d' ' -f1 $T/ino1 | sort -u | wc -l)
    if [ "$n" != 8 ] || [ "$u" != 8 ]; then
        fail inodes "$u distinct inode numbers for $n files: $(oneline $T/ino1)"
    elif ! run stat -c '%i %n' $files || ! cmp -s $T/out $T/ino1; then
        fail inodes "inode numbers changed between two lookups: $(oneline $T/ino1) vs $(oneline $T/out)"
    else
        pass inodes "8 distinct, stable ($(cut -d' ' -f1 $T/ino1 | tr '\n' ' '))"
    fi
else
    fail inodes "stat: $(oneline $T/err)"
fi

if run find "$M/1" -maxdepth 1; then
    n=$(wc -l <$T/out)
    if grep -qx "$M/1/status" $T/out && grep -qx "$M/1/fd" $T/out && [ "$n" -ge 10 ]; then
        pass find-1 "$n entries"
    else
        fail find-1 "$n entries, status/fd missing: $(oneline $T/out)"
    fi
else
    fail find-1 "$(oneline $T/err) $(oneline $T/out)"
fi

# pid 1's fd directory is root-only (0500): a listing, or a refusal that is not EIO
if run ls -l "$M/1/fd"; then
    pass ls-1-fd "$(grep -c '^l' $T/out) fd links"
elif grep -q 'Permission denied' $T/err; then
    pass ls-1-fd "denied: $(oneline $T/err)"
else
    fail ls-1-fd "$(oneline $T/err)"
fi

# df: Tstatfs (V9FS_MAGIC 0x01021997, non-zero bsize and namelen)
if run df "$M"; then
    if run stat -f -c '%t %S %l' "$M"; then
        set -- $(cat $T/out)
        if [ "$1" = 1021997 ] && [ "${2:-0}" -gt 0 ] && [ "${3:-0}" -gt 0 ]; then
            pass df "type 0x$1 bsize $2 namelen $3"
        else
            fail df "statfs type 0x$1 bsize $2 namelen $3 (want 0x1021997, >0, >0)"
        fi
    else
        fail df "stat -f: $(oneline $T/err)"
    fi
else
    fail df "$(oneline $T/err)"
fi

if run cat "$M/no-such-file.gproc-check"; then
    fail enoent "reading a missing file succeeded"
elif grep -q 'No such file' $T/err; then
    pass enoent
else
    fail enoent "want ENOENT, got: $(oneline $T/err)"
fi

# another local user: a new Tattach with its uid under access=user/client
if run su -s /bin/sh nobody -c "cat $M/loadavg && ls $M/1 >/dev/null"; then
    if grep -qE "$LA" $T/out; then
        pass as-nobody "$(cat $T/out)"
    else
        fail as-nobody "'$(oneline $T/out)'"
    fi
else
    fail as-nobody "$(oneline $T/err)"
fi

cd /
if run umount "$M"; then
    pass umount
else
    fail umount "$(oneline $T/err)"
fi

echo "GUEST: $npass passed, $nfail failed"
