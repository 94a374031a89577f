#!/usr/bin/env bash
# Installs MUNGE and starts munged for the authentication tests
# (tests/it/views.rs). Idempotent; as root.
set -euo pipefail
if ! command -v munged >/dev/null || ! command -v munge >/dev/null; then
  echo "setup-munge: installing munge"
  (apt-get install -y -qq munge libmunge2 >/dev/null 2>&1) || { apt-get update -qq && apt-get install -y -qq munge libmunge2; }
fi
if [ ! -s /etc/munge/munge.key ]; then
  echo "setup-munge: creating a key"
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "setup-munge: starting munged"
  su -s /bin/sh munge -c /usr/sbin/munged
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n </dev/null | unmunge >/dev/null && echo "setup-munge: munged is running"
