#!/bin/bash
# Install the 9P peers that gproc's interop tests use (idempotent; run as root on Debian 12).
#
#   * Debian packages: diod (server + diodls/diodcat), qemu-system-x86, busybox-static, cpio, xz-utils
#   * $GPROC_PEERS/venv-p9fs      python venv with p9fs (bundles a Python 3 fork of py9p: 9P2000/.u/.L)
#   * $GPROC_PEERS/venv-python9p  python venv with python-9p (9P2000 only; conflicts with p9fs: own venv)
#   * $GPROC_PEERS/venv-prometheus  python venv with prometheus_client (its text and OpenMetrics
#     parsers check the aggregator's /metrics)
#   * $GPROC_PEERS/kernels/{6.1,6.12}/  vmlinuz + the 9p/netfs/e1000 modules (decompressed, in load
#     order) from the Debian packages behind linux-image-amd64 and linux-image-6.12-amd64
#
# GPROC_PEERS defaults to /var/cache/gproc-peers. PYTHON picks the interpreter for the venvs
# (default: python3 on PATH). Prints every step; when everything is there it takes about a second.
set -euo pipefail

CACHE=${GPROC_PEERS:-/var/cache/gproc-peers}
PY=${PYTHON:-python3}
P9FS_SPEC=${P9FS_SPEC:-p9fs==0.0.4}
PYTHON9P_SPEC=${PYTHON9P_SPEC:-python-9p==0.1.0}
PROMETHEUS_SPEC=${PROMETHEUS_SPEC:-prometheus_client==0.26.0}
KERNELS=(6.1 6.12)

log() { echo "setup-peers: $*"; }
die() { echo "setup-peers: ERROR: $*" >&2; exit 1; }

LOG=$(mktemp "${TMPDIR:-/tmp}/setup-peers.XXXXXX")
TMPDIRS=("$LOG")
cleanup() { rm -rf "${TMPDIRS[@]}"; }
trap cleanup EXIT

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        timeout 300 apt-get update -qq >"$LOG" 2>&1 || { tail -20 "$LOG" >&2; die "apt-get update failed"; }
        APT_UPDATED=1
    fi
}
need_root() {
    [ "$(id -u)" = 0 ] || die "$1 is missing and installing it needs root (run this script as root)"
}

mkdir -p "$CACHE" 2>/dev/null || { need_root "$CACHE"; die "cannot create $CACHE"; }
log "cache dir $CACHE"

# ---------------------------------------------------------------- Debian packages
# package -> a file it provides that we check for
declare -A PKGFILE=(
    [diod]=/usr/sbin/diod
    [qemu-system-x86]=/usr/bin/qemu-system-x86_64
    [busybox-static]=/bin/busybox
    [cpio]=/usr/bin/cpio
    [xz-utils]=/usr/bin/xz
    [fuse3]=/usr/bin/fusermount3
    [man-db]=/usr/bin/man
)
missing=()
for p in "${!PKGFILE[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
        || [ ! -e "${PKGFILE[$p]}" ]; then
        missing+=("$p")
    fi
done
# busybox-static, not the dynamic busybox: the initramfs has no libc.
if [ -e /bin/busybox ] && ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
    missing+=(busybox-static)
fi
# venv + ensurepip for the interpreter we use (python3-venv matters only for Debian's python3)
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(readlink -f "$(command -v "$PY" || true)")" = "$(readlink -f /usr/bin/python3)" ]; then
        missing+=(python3-venv)
    else
        die "$PY cannot create venvs (no venv/ensurepip module); set PYTHON=/usr/bin/python3"
    fi
fi
if [ ${#missing[@]} -gt 0 ]; then
    need_root "${missing[*]}"
    apt_update_once
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >"$LOG" 2>&1 || { tail -30 "$LOG" >&2; die "apt-get install ${missing[*]} failed"; }
    # diod's package may start a system service on port 564; the tests use their own instances.
else
    log "debian packages present: ${!PKGFILE[*]}"
fi
for p in "${!PKGFILE[@]}"; do
    [ -e "${PKGFILE[$p]}" ] || die "${PKGFILE[$p]} (package $p) still missing after install"
done
for t in diodls diodcat; do command -v $t >/dev/null || die "$t missing (package diod)"; done

# ---------------------------------------------------------------- python venvs
# make_venv DIR PIP_SPEC IMPORT_CHECK
make_venv() {
    local dir=$1 spec=$2 check=$3
    if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
        log "venv $dir ok ($spec)"
        return
    fi
    log "creating venv $dir with $spec"
    rm -rf "$dir"
    "$PY" -m venv "$dir" || die "python3 -m venv $dir failed"
    timeout 600 "$dir/bin/pip" install -q --disable-pip-version-check "$spec" >"$LOG" 2>&1 \
        || { tail -30 "$LOG" >&2; die "pip install $spec into $dir failed"; }
    "$dir/bin/python" -c "$check" || die "$spec installed but the import check failed: $check"
}
make_venv "$CACHE/venv-p9fs" "$P9FS_SPEC" \
    'from py9p import py9p; py9p.Client; py9p.Version.v9P2000L; import p9fs'
make_venv "$CACHE/venv-python9p" "$PYTHON9P_SPEC" \
    'from py9p import Client, Tflush, Rflush, OREAD; Client.connect_tcp'
make_venv "$CACHE/venv-prometheus" "$PROMETHEUS_SPEC" \
    'from prometheus_client.parser import text_string_to_metric_families; from prometheus_client.openmetrics import parser'

# ---------------------------------------------------------------- kernels for the v9fs tests
# modinfo is not on the machine: read 'depends=' from the module's .modinfo strings.
mod_cat() { case $1 in *.xz) xz -dc "$1" ;; *) cat "$1" ;; esac; }
mod_deps() { mod_cat "$1" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -1 | tr ',' ' '; }

install_kernel() {
    local kv=$1 meta real dest tmp kdir order
    dest=$CACHE/kernels/$kv
    if [ -f "$dest/.complete" ] && [ -f "$dest/vmlinuz" ]; then
        log "kernel $kv ok ($(cat "$dest/release"))"
        return
    fi
    case $kv in
        6.1) meta=linux-image-amd64 ;;
        6.12) meta=linux-image-6.12-amd64 ;;
        *) die "unknown kernel $kv" ;;
    esac
    need_root "kernel $kv"
    apt_update_once
    real=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
    [ -n "$real" ] || die "cannot resolve $meta to a kernel package (apt-cache depends $meta)"
    log "kernel $kv: apt-get download $real"
    tmp=$(mktemp -d "$CACHE/.k$kv.XXXXXX")
    TMPDIRS+=("$tmp")
    chmod 755 "$tmp"   # apt's _apt user wants to write there
    (cd "$tmp" && timeout 600 apt-get download -q "$real" >/dev/null 2>&1) || die "apt-get download $real failed"
    dpkg -x "$tmp"/*.deb "$tmp/x" || die "dpkg -x of $real failed"
    kdir=$(ls -d "$tmp"/x/lib/modules/*/kernel | head -1)
    [ -d "$kdir" ] || die "$real has no lib/modules/*/kernel"

    # module name -> file (names in depends= use '_' where file names may use '-')
    declare -A modfile=()
    local f n
    while IFS= read -r f; do
        n=$(basename "$f"); n=${n%.xz}; n=${n%.ko}; n=${n//-/_}
        modfile[$n]=$f
    done < <(find "$kdir" -name '*.ko' -o -name '*.ko.xz')
    # dependency closure, dependencies first
    declare -A seen=()
    order=()
    visit() {
        local m=$1 d
        [ -n "${seen[$m]:-}" ] && return
        seen[$m]=1
        [ -n "${modfile[$m]:-}" ] || die "kernel $kv: module $m not in $real"
        for d in $(mod_deps "${modfile[$m]}"); do visit "$d"; done
        order+=("$m")
    }
    for n in 9p 9pnet_fd e1000; do visit "$n"; done

    rm -rf "$dest"; mkdir -p "$dest/modules"
    cp "$tmp"/x/boot/vmlinuz-* "$dest/vmlinuz"
    for n in "${order[@]}"; do mod_cat "${modfile[$n]}" > "$dest/modules/$n.ko"; done
    printf '%s\n' "${order[@]}" > "$dest/modules/load-order"
    basename "$(dirname "$kdir")" > "$dest/release"
    echo "$real" > "$dest/package"
    touch "$dest/.complete"
    rm -rf "$tmp"
    log "kernel $kv: $(cat "$dest/release"), modules: ${order[*]}"
}
for kv in "${KERNELS[@]}"; do install_kernel "$kv"; done

log "done"
