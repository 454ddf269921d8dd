#!/usr/bin/env bash
# Starts what the suite needs — PostgreSQL (the machine's cluster) and a throwaway Ceph RGW —
# runs pytest, and always stops what it started (also when tests fail or are interrupted).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RGW_DIR=.rgw

# PostgreSQL on 127.0.0.1:5432 (trust auth): start the machine's cluster if it is down.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
fi

# Headless Chromium for the browser tests (tests/browser): Debian's package, installed once.
if ! command -v chromium >/dev/null; then
  echo "installing Debian's chromium for the browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }
  command -v chromium >/dev/null || { echo "could not install chromium"; exit 1; }
fi

# HAProxy (Debian's package) for the cluster test (tests/e2e/test_cluster.py, bench/cluster.py,
# which starts and stops its own HAProxy by PID): installed once.
if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
  echo "installing Debian's haproxy for the cluster test"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends haproxy >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends haproxy; }
  [ -x /usr/sbin/haproxy ] || { echo "could not install haproxy"; exit 1; }
fi

# A fresh single-node Ceph RGW for the S3 tests; its env.sh exports RGW_ENDPOINT and keys.
cleanup() {
  scripts/rgw.sh destroy "$RGW_DIR" >/dev/null 2>&1 || true
  scripts/orthanc.sh destroy .orthanc >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM
scripts/rgw.sh destroy "$RGW_DIR" >/dev/null 2>&1 || true
PYTHON="$BIN/python" scripts/rgw.sh start "$RGW_DIR" >/dev/null
# shellcheck disable=SC1091
. "$RGW_DIR/env.sh"
export RGW_ENDPOINT RGW_ACCESS_KEY RGW_SECRET_KEY RGW_BUCKET RGW_REGION RGW_DIR

# moto's standalone server for the AWS-only calls RGW refuses (CloudWatch, request metrics,
# Glacier, RestoreObject); MOTO_ENDPOINT for tests/fixtures/moto.py. Stopped by its PID.
MOTO_DIR=.moto
# Chained onto whatever EXIT trap is set already, so other services' cleanups still run.
moto_prev_trap=$(trap -p EXIT | awk -F"'" '{print $2}')
trap "scripts/moto.sh stop $MOTO_DIR >/dev/null 2>&1 || true; ${moto_prev_trap:-:}" EXIT INT TERM
scripts/moto.sh start "$MOTO_DIR" >/dev/null
# shellcheck disable=SC1091
. "$MOTO_DIR/env.sh"
export MOTO_ENDPOINT
# pgBackRest (Debian's package) for the restore drill, tests/e2e/test_pgbackrest_restore.py; the
# drill starts and stops its own PostgreSQL cluster.
scripts/pgbackrest.sh install

# promtool (Debian's prometheus package) for the alert-rule tests: installed once into .venv/bin.
scripts/promtool.sh >/dev/null

# DICOM SEG (tests/dicom): a throwaway Orthanc with DICOMweb, dciodvfy and dcmjs.
scripts/orthanc.sh destroy .orthanc >/dev/null 2>&1 || true
scripts/orthanc.sh start .orthanc
# shellcheck disable=SC1091
. .orthanc/env.sh
eval "$(scripts/dicom-tools.sh)"
export ORTHANC_URL ORTHANC_DICOMWEB_URL DCMJS_NODE_PATH

"$BIN/pytest" "$@"
