#!/bin/bash
# The real Linux v9fs client against a 9P2000.L server on this machine's loopback.
#
# usage: run-vm.sh KERNEL PORT ANAME [MOUNT_OPTS]
#   KERNEL      6.1 or 6.12 (Debian kernels unpacked by .ci/setup-peers.sh under $GPROC_PEERS/kernels)
#   PORT        the server's TCP port on 127.0.0.1 (the guest reaches it as 10.0.2.2:PORT)
#   ANAME       the attach name ('' for none)
#   MOUNT_OPTS  extra mount options, default cache=none,access=any (e.g. cache=loose,access=client)
#
# Boots the kernel under qemu (software emulation) with a busybox initramfs whose /init loads the
# 9p modules, mounts
#   mount -t 9p -o trans=tcp,port=PORT,version=9p2000.L,aname=ANAME,MOUNT_OPTS 10.0.2.2 /mnt
# and runs guest-check.sh; the guest's output is read back from the serial console and printed.
# The host then compares what the guest read with its own /proc (pid 1's status and exe, the pid
# list, loadavg). Exit 0 only if the mount worked, every check passed and the VM powered off in
# time. Last line: 'run-vm: N passed, N failed'.
#
# Environment: GPROC_PEERS (default /var/cache/gproc-peers), V9FS_VM_TIMEOUT (seconds for the whole
# VM, default 180), V9FS_VM_MEM (MiB, default 512), V9FS_VM_LOG (keep the raw console log there).
#
# Read mode, for the differential test of issue 12 (tests/it/as_user_clients.rs): with
# V9FS_READ_AS=USER:UID:GID and V9FS_READ_LIST=FILE, the guest gets that user (same ids as on the
# host, so access=client attaches with n_uname = the host's uid) and, instead of guest-check.sh,
# runs guest-read.sh as that user (su) over FILE's paths, printing each outcome for the caller to
# compare; the host-side checks are skipped. Exit 0 if the mount worked and every path was read.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${GPROC_PEERS:-/var/cache/gproc-peers}
TMO=${V9FS_VM_TIMEOUT:-180}
MEM=${V9FS_VM_MEM:-512}

if [ $# -lt 3 ] || [ $# -gt 4 ]; then
    echo "usage: $0 KERNEL(6.1|6.12) PORT ANAME [MOUNT_OPTS]" >&2
    exit 2
fi
KV=$1 PORT=$2 ANAME=$3 OPTS=${4-cache=none,access=any}
[[ $PORT =~ ^[0-9]+$ ]] || { echo "run-vm: bad port '$PORT'" >&2; exit 2; }
K=$CACHE/kernels/$KV
if [ ! -f "$K/.complete" ]; then
    echo "run-vm: kernel $KV not in $K; run .ci/setup-peers.sh (kernels: $(ls "$CACHE/kernels" 2>/dev/null | tr '\n' ' '))" >&2
    exit 2
fi
for t in qemu-system-x86_64 cpio gzip; do
    command -v $t >/dev/null || { echo "run-vm: $t not found; run .ci/setup-peers.sh" >&2; exit 2; }
done
BUSYBOX=/bin/busybox
if [ ! -x "$BUSYBOX" ] || [ -n "$(readelf -l "$BUSYBOX" 2>/dev/null | grep 'program interpreter' || true)" ]; then
    echo "run-vm: $BUSYBOX missing or not static (install busybox-static)" >&2
    exit 2
fi

W=$(mktemp -d "${TMPDIR:-/tmp}/run-vm.XXXXXX")
HPID=
cleanup() {
    if [ -n "$HPID" ]; then kill "$HPID" 2>/dev/null || true; fi
    rm -rf "$W"
}
trap cleanup EXIT

# ---------------------------------------------------------------- the initramfs
R=$W/root
mkdir -p "$R"/{bin,dev,proc,sys,mnt,tmp,etc,cfg,modules}
cp "$BUSYBOX" "$R/bin/busybox"
cp "$K"/modules/*.ko "$K/modules/load-order" "$R/modules/"
cp "$HERE/guest-check.sh" "$R/guest-check.sh"
READ_AS=${V9FS_READ_AS:-}
if [ -n "$READ_AS" ]; then
    IFS=: read -r ruser ruid rgid <<<"$READ_AS"
    [[ $ruser =~ ^[a-z_][a-z0-9_-]*$ && $ruid =~ ^[0-9]+$ && $rgid =~ ^[0-9]+$ ]] \
        || { echo "run-vm: bad V9FS_READ_AS '$READ_AS' (USER:UID:GID)" >&2; exit 2; }
    [ -f "${V9FS_READ_LIST:-}" ] || { echo "run-vm: V9FS_READ_AS needs V9FS_READ_LIST" >&2; exit 2; }
    cp "$HERE/guest-read.sh" "$R/guest-read.sh"
    cp "$V9FS_READ_LIST" "$R/cfg/readlist"
    printf '%s' "$ruser" >"$R/cfg/readas"
    chmod 1777 "$R/tmp"  # guest-read.sh's scratch files, written as that user
fi
printf '%s' "$PORT" >"$R/cfg/port"
printf '%s' "$ANAME" >"$R/cfg/aname"
printf '%s' "$OPTS" >"$R/cfg/opts"
# a host process whose /proc entries any attach user may read (exe, maps, fd): 'sleep' as nobody
HPID=
if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
    setpriv --reuid=65534 --regid=65534 --clear-groups sleep $((TMO + 30)) </dev/null >/dev/null 2>&1 &
else
    sleep $((TMO + 30)) </dev/null >/dev/null 2>&1 &
fi
HPID=$!
printf '%s' "$HPID" >"$R/cfg/helper"
printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
if [ -n "$READ_AS" ]; then
    printf '%s:x:%s:%s::/:/bin/sh\n' "$ruser" "$ruid" "$rgid" >>"$R/etc/passwd"
    printf '%s:x:%s:\n' "$ruser" "$rgid" >>"$R/etc/group"
fi
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || true
cat >"$R/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
for m in $(cat /modules/load-order); do
    insmod /modules/$m.ko || echo "GUEST-ERROR insmod $m failed"
done
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 \
    || echo "GUEST-ERROR network setup failed"
port=$(cat /cfg/port); aname=$(cat /cfg/aname); opts=$(cat /cfg/opts)
o="trans=tcp,port=$port,version=9p2000.L"
[ -n "$aname" ] && o="$o,aname=$aname"
[ -n "$opts" ] && o="$o,$opts"
echo "=== GPROC-V9FS-BEGIN kernel $(uname -r) (booted in $(cut -d' ' -f1 /proc/uptime)s) mount -o $o"
if timeout -s KILL 60 mount -t 9p -o "$o" 10.0.2.2 /mnt; then
    echo "MOUNT-OK"
    if [ -f /cfg/readas ]; then
        su -s /bin/sh "$(cat /cfg/readas)" -c "sh /guest-read.sh /mnt /cfg/readlist"
    else
        sh /guest-check.sh /mnt "$(cat /cfg/helper)"
    fi
else
    echo "MOUNT-FAILED rc=$?"
    dmesg | tail -5
fi
echo "=== GPROC-V9FS-END (guest uptime $(cut -d' ' -f1 /proc/uptime)s)"
sync
poweroff -f
EOF
chmod 755 "$R/init" "$R/guest-check.sh"
[ -z "$READ_AS" ] || chmod 755 "$R/guest-read.sh"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 >"$W/initrd.gz")

# ---------------------------------------------------------------- boot
echo "run-vm: kernel $KV ($(cat "$K/release")), server 127.0.0.1:$PORT aname='$ANAME' opts='$OPTS'"
before=$(ls /proc | grep -E '^[0-9]+$' | sort || true)
LOG=$W/console.log
t0=$(date +%s)
rc=0
timeout -k 5 "$TMO" qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m "$MEM" \
    -nodefaults -no-user-config -display none -monitor none -serial stdio -no-reboot \
    -kernel "$K/vmlinuz" -initrd "$W/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init" \
    -nic user,model=e1000 </dev/null >"$LOG" 2>"$W/qemu.err" || rc=$?
secs=$(($(date +%s) - t0))
after=$(ls /proc | grep -E '^[0-9]+$' | sort || true)
if [ -n "${V9FS_VM_LOG:-}" ]; then cp "$LOG" "$V9FS_VM_LOG"; fi

tr -d '\r' <"$LOG" >"$W/console.txt"
sed -n '/=== GPROC-V9FS-BEGIN/,/=== GPROC-V9FS-END/p' "$W/console.txt" >"$W/guest.txt"
cat "$W/guest.txt"

# ---------------------------------------------------------------- verdict
hpass=0 hfail=0
hp() { hpass=$((hpass + 1)); echo "PASS host-$1${2:+: $2}"; }
hf() { hfail=$((hfail + 1)); echo "FAIL host-$1: $2"; }
field() { sed -n "s/^$1 //p" "$W/guest.txt" | head -1; }

if [ $rc = 124 ] || [ $rc = 137 ]; then
    hf vm "timed out after ${TMO}s"
elif [ $rc != 0 ]; then
    hf vm "qemu exited $rc: $(tr '\n' ' ' <"$W/qemu.err" | cut -c1-300)"
fi
if ! grep -q '=== GPROC-V9FS-BEGIN' "$W/guest.txt"; then
    hf boot "the guest never reached its checks; console tail:"
    tail -20 "$W/console.txt" | sed 's/^/  | /'
elif ! grep -q '^MOUNT-OK' "$W/guest.txt"; then
    hf mount "mount -t 9p failed"
elif [ -n "$READ_AS" ]; then
    want=$(grep -c . "$V9FS_READ_LIST" || true)
    got=$(sed -n 's/^GUEST-READ: \([0-9]*\) paths$/\1/p' "$W/guest.txt")
    [ "$got" = "$want" ] && hp read "$got paths read as $ruser" || hf read "guest-read.sh read '${got:-?}' of $want paths"
elif ! grep -q '^GUEST: ' "$W/guest.txt"; then
    hf guest "guest-check.sh did not finish"
else
    # what the guest read must be this host's /proc
    want=$(head -1 /proc/1/status)
    got=$(field STATUS1)
    [ "$got" = "$want" ] && hp status1 "$(echo "$got" | tr '\t' ' ')" || hf status1 "guest '$got', host '$want'"
    want=$(readlink /proc/1/exe 2>/dev/null || echo "(denied on the host too)")
    if grep -q '^EXE1-DENIED' "$W/guest.txt"; then
        hp exe1 "the guest was denied (attach user not root?); host: $want"
    else
        got=$(field EXE1)
        [ "$got" = "$want" ] && hp exe1 "$got" || hf exe1 "guest '$got', host '$want'"
    fi
    cmp_field() {  # NAME GUEST_FIELD HOST_VALUE
        local got
        got=$(field "$2")
        [ "$got" = "$3" ] && hp "$1" "$(echo "$got" | tr '\t' ' ' | cut -c1-100)" || hf "$1" "guest '$got', host '$3'"
    }
    cmp_field helper-status1 H-STATUS1 "$(head -1 /proc/$HPID/status)"
    cmp_field helper-exe H-EXE "$(readlink /proc/$HPID/exe)"
    cmp_field helper-maps H-MAPS "$(wc -l </proc/$HPID/maps) $(head -1 /proc/$HPID/maps)"
    cmp_field helper-cmdline H-CMDLINE "$(tr '\0' ' ' </proc/$HPID/cmdline)"
    got=$(field LOADAVG)
    [ "$(echo "$got" | wc -w)" = "$(wc -w </proc/loadavg)" ] && hp loadavg || hf loadavg "guest '$got'"
    listed=$(field LSPIDS | tr ' ' '\n' | grep -E '^[0-9]+$' | sort || true)
    stable=$(comm -12 <(echo "$before") <(echo "$after"))
    missing=$(comm -23 <(echo "$stable") <(echo "$listed") | head -10 | tr '\n' ' ' || true)
    if [ -z "$listed" ]; then
        hf pids "the guest listed no pids"
    elif [ -n "$missing" ]; then
        hf pids "host pids alive during the whole run missing from the guest's ls: $missing"
    else
        hp pids "$(echo "$listed" | wc -l) listed, $(echo "$stable" | wc -l) host pids alive throughout"
    fi
fi
gpass=$(grep -c '^PASS ' "$W/guest.txt" || true)
gfail=$(grep -c '^FAIL ' "$W/guest.txt" || true)
if grep -q '^GUEST-ERROR' "$W/console.txt"; then
    hf guest-setup "$(grep '^GUEST-ERROR' "$W/console.txt" | head -3 | tr '\n' ' ' || true)"
fi
echo "run-vm: kernel $KV opts '$OPTS' took ${secs}s"
echo "run-vm: $((gpass + hpass)) passed, $((gfail + hfail)) failed"
[ $((gfail + hfail)) = 0 ]
