#!/usr/bin/env bash
# Starts what the suite needs (PostgreSQL check), runs pytest, and always cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

# PostgreSQL on 127.0.0.1:5432 (trust auth): start the machine's cluster if it is down.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
fi

# promtool (Debian's prometheus package) for the alert-rule tests: installed once into .venv/bin.
scripts/promtool.sh >/dev/null

exec "$BIN/pytest" "$@"
