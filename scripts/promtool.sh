#!/usr/bin/env bash
# Prints the path of a promtool (Debian's `prometheus` package ships it), installing it into
# .venv/bin if none is found. Only the promtool binary is extracted from the package: installing
# the package itself would also set up (and, on machines without a policy-rc.d, start) a
# Prometheus daemon, which the tests do not need. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.venv/bin/promtool

if [ -x "$dest" ]; then echo "$PWD/$dest"; exit 0; fi
if command -v promtool >/dev/null; then command -v promtool; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  # The package lists may be missing on a fresh machine: refresh them once and retry.
  apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus; }
) >&2
dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
mkdir -p "$(dirname "$dest")"
install -m 0755 "$work/root/usr/bin/promtool" "$dest"
"$dest" --version >&2
echo "$PWD/$dest"
