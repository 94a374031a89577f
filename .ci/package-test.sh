#!/usr/bin/env bash
# The Debian package and the static agent, on this machine (root; systemd
# is not PID 1 here). Called by .ci/run after the tests; run it alone with
#
#   bash .ci/package-test.sh [PROFILE]
#
# 1. builds the .deb (deploy/build-deb.sh) with PROFILE, default `dev`: the
#    binary the tests already built, so the package adds no compile time to
#    CI (releases use the default, `release`);
# 2. installs it (twice: postinst is idempotent), checks the service user,
#    conffile, units (systemd-analyze verify), man pages and completions;
# 3. runs each unit's ExecStartPre=/ExecStart= exactly as the installed unit
#    writes it (.ci/unit-exec.py: its User=, Group=, capabilities and
#    environment), then checks the agent and the aggregator answer, and
#    ExecReload=;
# 4. dpkg -r (binary and units gone, conffile kept), dpkg -P (conffile gone);
# 5. the statically linked lean agent (+crt-static): static, serves /proc on
#    a Unix socket that `gproc cat` reads, and says MUNGE is unavailable.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-dev}
dir=$profile
[ "$profile" = dev ] && dir=debug
target=${CARGO_TARGET_DIR:-target}
start=$(date +%s)
step() { echo "--- package [$(($(date +%s) - start))s] $*"; }
fail() {
    echo "package-test: FAILED: $*" >&2
    for l in "${tmp:-/nonexistent}"/*.log; do
        [ -f "$l" ] && echo "--- $l" >&2 && tail -n 20 "$l" >&2
    done
    exit 1
}
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if dpkg-query -W -f '${Status}' gproc 2>/dev/null | grep -q installed; then
        dpkg -P gproc >/dev/null || true
    fi
    rm -rf /run/gproc /run/gproc-agent "${tmp:-/nonexistent}"
}
trap cleanup EXIT
tmp=$(mktemp -d)

# Waits for a Unix socket to accept connections.
wait_socket() {
    for _ in $(seq 100); do
        python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "nothing listens on $1"
}

# Starts a unit's ExecStart= in the background, as systemd would: its
# RuntimeDirectory= made first (owned by User=/Group=), ExecStartPre= run
# and required to succeed.
start_unit() {
    local unit=/usr/lib/systemd/system/$1 log=$tmp/$1.log
    local rd user group mode
    rd=$(python3 .ci/unit-exec.py "$unit" --get RuntimeDirectory)
    if [ -n "$rd" ]; then
        user=$(python3 .ci/unit-exec.py "$unit" --get User)
        group=$(python3 .ci/unit-exec.py "$unit" --get Group)
        mode=$(python3 .ci/unit-exec.py "$unit" --get RuntimeDirectoryMode)
        install -d -m "${mode:-0755}" -o "${user:-root}" -g "${group:-${user:-root}}" "/run/$rd"
    fi
    if grep -q '^ExecStartPre=' "$unit"; then
        echo "  $1 ExecStartPre: $(grep '^ExecStartPre=' "$unit")"
        eval "$(python3 .ci/unit-exec.py "$unit" ExecStartPre)" >>"$log" 2>&1 ||
            fail "$1: ExecStartPre failed: $(cat "$log")"
    fi
    echo "  $1 $(grep '^ExecStart=' "$unit")"
    # `exec`: the background job becomes the service itself (prlimit,
    # setpriv and env exec in turn), so its pid is the one to stop; a
    # subshell left in between was killed alone and the service outlived
    # the test.
    eval "exec $(python3 .ci/unit-exec.py "$unit" ExecStart)" >>"$log" 2>&1 &
    pids+=($!)
}

step "tools: systemd-analyze, man, file, adduser, cargo-deb"
need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v man >/dev/null || need+=(man-db)
command -v file >/dev/null || need+=(file)
command -v adduser >/dev/null || need+=(adduser)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ! command -v cargo-deb >/dev/null; then
    # Pinned: later versions may refuse the dev profile CI packages.
    cargo install cargo-deb --locked --version 3.8.0
fi

step "build the package (profile $profile)"
deb=$(deploy/build-deb.sh --profile "$profile" | tail -n 1)
[ -f "$deb" ] || fail "no package at '$deb'"
dpkg-deb -I "$deb" | grep -E 'Depends|Recommends|Suggests'

step "dpkg -i"
if dpkg-query -W -f '${Status}' gproc 2>/dev/null | grep -q installed; then
    echo "  purging a gproc package left installed"
    dpkg -P gproc >/dev/null
fi
dpkg -i "$deb"
uid=$(id -u gproc) || fail "postinst made no gproc user"
getent group gproc >/dev/null || fail "postinst made no gproc group"
[ "$(getent passwd gproc | cut -d: -f7)" = /usr/sbin/nologin ] || fail "gproc can log in"
dpkg -i "$deb" # again: an upgrade over itself keeps the user as it is
[ "$(id -u gproc)" = "$uid" ] || fail "reinstalling changed the gproc uid"
dpkg-query -W -f '${Conffiles}\n' gproc | grep -q /etc/gproc/gproc.toml ||
    fail "/etc/gproc/gproc.toml is not a conffile"
gproc config check /etc/gproc/gproc.toml
units=(/usr/lib/systemd/system/gproc-agent.service /usr/lib/systemd/system/gproc-aggregator.service)
for u in "${units[@]}"; do [ -f "$u" ] || fail "$u not installed"; done

step "systemd-analyze verify"
out=$(systemd-analyze verify "${units[@]}" 2>&1) || fail "systemd-analyze verify: $out"
# It exits 0 on some warnings: any line naming our units is a finding.
if echo "$out" | grep -q 'gproc'; then fail "systemd-analyze verify: $out"; fi

step "man pages and completions"
man -l /usr/share/man/man1/gproc.1.gz 2>/dev/null | grep -q 'gproc' || fail "man -l gproc.1.gz"
MANPAGER=cat man gproc-ps 2>/dev/null | grep -q -- '--sort' || fail "man gproc-ps"
bash -c 'source /usr/share/bash-completion/completions/gproc && complete -p gproc' >/dev/null ||
    fail "bash completion"
[ -s /usr/share/zsh/vendor-completions/_gproc ] && [ -s /usr/share/fish/vendor_completions.d/gproc.fish ] ||
    fail "zsh/fish completions"

step "the units' ExecStart, as installed (systemd is not PID 1 here)"
start_unit gproc-agent.service
wait_socket /run/gproc-agent/agent.sock
agent=${pids[-1]}
[ "$(stat -c %G /run/gproc-agent/agent.sock)" = gproc ] || fail "agent socket not in group gproc"
# The aggregator's user reads this node's /proc through the agent; another
# user cannot even connect.
runuser -u gproc -- gproc cat --server unix:/run/gproc-agent/agent.sock loadavg |
    grep -Eq '^[0-9.]+ [0-9.]+ [0-9.]+ ' || fail "agent: cat loadavg as gproc"
if runuser -u nobody -- gproc cat --server unix:/run/gproc-agent/agent.sock loadavg >/dev/null 2>&1; then
    fail "nobody read through the agent's 0660 socket"
fi

start_unit gproc-aggregator.service
wait_socket /run/gproc/gproc.sock
aggregator=${pids[-1]}
gproc cat --server unix:/run/gproc/gproc.sock nodes | tee "$tmp/nodes"
grep -q localhost "$tmp/nodes" || fail "aggregator: no localhost in /nodes"
sleep 300 &
sleeper=$!
pids+=($sleeper)
# A process started now is in /ps once the node's summary is read again:
# within the summary's TTL (1 s here; /nodes above may have just read it).
for _ in $(seq 20); do
    gproc ps --server unix:/run/gproc/gproc.sock -p "$sleeper" >"$tmp/ps"
    grep -Eq "^localhost +root +$sleeper .*sleep 300" "$tmp/ps" && break
    sleep 0.5
done
cat "$tmp/ps"
grep -Eq "^localhost +root +$sleeper .*sleep 300" "$tmp/ps" || fail "aggregator: root's sleep not in gproc ps"
# A user sees only their own processes: not root's sleep.
runuser -u nobody -- gproc ps --server unix:/run/gproc/gproc.sock >"$tmp/ps-nobody" ||
    fail "aggregator: gproc ps as nobody"
if grep -q "sleep 300" "$tmp/ps-nobody"; then fail "nobody sees root's sleep"; fi

# ExecReload= (SIGHUP: re-read the config); it still answers afterwards.
mainpid=$(pgrep -P "$aggregator" -x gproc || true)
mainpid=${mainpid:-$aggregator}
eval "$(python3 .ci/unit-exec.py /usr/lib/systemd/system/gproc-aggregator.service ExecReload MAINPID="$mainpid")"
sleep 1
kill -0 "$mainpid" || fail "the aggregator died on ExecReload: $(cat "$tmp"/gproc-aggregator.service.log)"
gproc cat --server unix:/run/gproc/gproc.sock nodes | grep -q localhost || fail "aggregator after reload"

for p in "$aggregator" "$agent" "$sleeper"; do kill "$p" 2>/dev/null || true; done
wait "$aggregator" "$agent" "$sleeper" 2>/dev/null || true
pids=()

step "dpkg -r, dpkg -P"
dpkg -r gproc
for f in /usr/bin/gproc "${units[@]}" /usr/share/man/man1/gproc.1.gz; do
    [ ! -e "$f" ] || fail "$f left after dpkg -r"
done
[ -f /etc/gproc/gproc.toml ] || fail "dpkg -r removed the conffile"
dpkg -P gproc
[ ! -e /etc/gproc ] || fail "/etc/gproc left after dpkg -P"
id gproc >/dev/null || fail "purge removed the gproc user (kept on purpose)"

step "the static agent (+crt-static, lean, profile $profile)"
triple=$(rustc -vV | sed -n 's/^host: //p')
if [ "$triple" != x86_64-unknown-linux-gnu ] || ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    # The flag needs an explicit --target with its std installed.
    echo "SKIPPED: the static agent: no rustup std for $triple on this host" >&2
    [ "${CI:-}" != true ] || fail "static agent target missing under CI=true"
else
    RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --no-default-features --target "$triple" --profile "$profile" --bin gproc
    static=$target/$triple/$dir/gproc
    file "$static" | tee "$tmp/file"
    grep -Eq 'static(-pie)? linked' "$tmp/file" || fail "$static is not statically linked"
    if ldd "$static" 2>&1 | grep -q '=>'; then fail "ldd lists shared libraries of $static"; fi
    # MUNGE is refused at startup, saying why.
    if timeout 10 "$static" agent --listen 127.0.0.1:0 --auth munge >"$tmp/munge.log" 2>&1; then
        fail "the static agent started with --auth munge"
    fi
    grep -q 'MUNGE is unavailable in this statically linked build' "$tmp/munge.log" ||
        fail "the static agent's MUNGE error: $(cat "$tmp/munge.log")"
    # It serves /proc on a Unix socket, read through by gproc cat (and by
    # itself as a client).
    sock=$tmp/static.sock
    "$static" agent --listen "unix:$sock" >"$tmp/static-agent.log" 2>&1 &
    pids+=($!)
    wait_socket "$sock"
    for client in "$target/$dir/gproc" "$static"; do
        "$client" cat --server "unix:$sock" loadavg | grep -Eq '^[0-9.]+ [0-9.]+ [0-9.]+ ' ||
            fail "$client cat loadavg through the static agent"
        "$client" cat --server "unix:$sock" $$/status | grep -q "^Pid:[[:space:]]*$$\$" ||
            fail "$client cat $$/status through the static agent"
    done
fi
step "done"
