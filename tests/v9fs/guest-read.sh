#!/bin/sh
# Runs INSIDE the qemu guest (busybox sh) as the reading user (run-vm.sh's /init starts it with
# su when V9FS_READ_AS is set), against a Linux v9fs mount: reads each listed path and prints its
# outcome, for the host to compare with its own reads as the same user (tests/it/as_user_clients.rs).
#
# usage: guest-read.sh MOUNTPOINT LIST
#   LIST  lines 'INDEX MODE PATH' (PATH relative to MOUNTPOINT), MODE one of
#         f  the whole file (cat)          1  its first line (head -n 1)
#         d  a directory's names (ls -1A)  l  a symbolic link's target (readlink)
#         w  writes the line's 4th word with the shell (echo WORD > PATH: open with O_TRUNC,
#            then a write), as a user writes a ctl file; prints D 0 when it succeeded
#
# Prints per path either
#   READ INDEX E TEXT        the read failed; TEXT is the error's text (strerror), e.g. Permission denied
#   READ INDEX D LEN         then the LEN bytes the command printed, hex, in lines 'READX INDEX HEX'
# and last 'GUEST-READ: N paths'. Every line names its INDEX, so a kernel message interleaved on the
# console cannot shift one path's bytes onto another.
M=$1
L=$2
T=/tmp/guest-read
mkdir -p $T
n=0
while read -r i mode p; do
    [ -n "$i" ] || continue
    word=
    if [ "$mode" = w ]; then
        word=${p##* }
        p=${p% *}
    fi
    f="$M/$p"
    case $mode in
        f) timeout -s KILL 30 cat "$f" >$T/out 2>$T/err ;;
        1) timeout -s KILL 30 head -n 1 "$f" >$T/out 2>$T/err ;;
        d) timeout -s KILL 30 ls -1A "$f" >$T/out 2>$T/err ;;
        l) timeout -s KILL 30 readlink -v "$f" >$T/out 2>$T/err ;;
        w) : >$T/out; (echo "$word" >"$f") 2>$T/err ;;
        *) echo "bad mode $mode" >$T/err; false ;;
    esac
    rc=$?
    if [ $rc = 0 ]; then
        echo "READ $i D $(wc -c <$T/out)"
        xxd -p $T/out | sed "s/^/READX $i /"
    else
        msg=$(head -1 $T/err | sed 's/.*: //')
        echo "READ $i E ${msg:-exit $rc without a message}"
    fi
    n=$((n + 1))
done <"$L"
echo "GUEST-READ: $n paths"
