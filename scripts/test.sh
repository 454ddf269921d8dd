#!/usr/bin/env bash
# Starts what the suite needs — PostgreSQL (the machine's cluster), a throwaway Ceph RGW, moto,
# Orthanc — runs pytest on several workers (pytest-xdist), and always stops what it started
# (also when tests fail or are interrupted). Arguments go to pytest after the defaults, so
# `scripts/test.sh -n 0` runs in one process. TEST_WORKERS sets the number of workers.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RGW_DIR=.rgw
MOTO_DIR=.moto
ORTHANC_DIR=.orthanc
# Most tests wait on a server process, RGW or a browser, not on this process's CPU: on the
# 2-core machine 4 workers finish soonest (docs/contributing.md has the figures).
TEST_WORKERS=${TEST_WORKERS:-4}

mkdir -p .test-logs
# `make test` sets TEST_LINT=1: lint runs while packages are checked and services start, and a
# failure stops the run before pytest.
if [ "${TEST_LINT:-0}" = 1 ]; then
  make --no-print-directory lint >.test-logs/lint.log 2>&1 &
  lint_job=$!
fi

# PostgreSQL on 127.0.0.1:5432 (trust auth): start the machine's cluster if it is down.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 150); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
fi

# ---- Debian packages, one after the other (dpkg takes a lock); each is a no-op once there.

apt_install() {  # apt_install COMMAND PACKAGE: for the browser test and the cluster test
  command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] && return 0
  echo "installing Debian's $2"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$2"; }
  command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || { echo "could not install $2"; exit 1; }
}
# Headless Chromium for the browser tests (tests/browser).
apt_install chromium chromium
# HAProxy for the cluster test (tests/e2e/test_cluster.py, bench/cluster.py starts its own).
apt_install haproxy haproxy
# pgBackRest for the restore drill (tests/e2e/test_pgbackrest_restore.py).
scripts/pgbackrest.sh install
scripts/rgw.sh install
scripts/orthanc.sh install
# promtool (Debian's prometheus package) for the alert-rule tests: into .venv/bin.
scripts/promtool.sh >/dev/null
# DICOM SEG checkers (tests/dicom): dciodvfy and dcmjs.
eval "$(scripts/dicom-tools.sh)"
export DCMJS_NODE_PATH

# ---- Services, started side by side (each waits on its own daemons), stopped at exit.

cleanup() {
  scripts/moto.sh stop "$MOTO_DIR" >/dev/null 2>&1 || true
  scripts/orthanc.sh destroy "$ORTHANC_DIR" >/dev/null 2>&1 || true
  scripts/rgw.sh destroy "$RGW_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM
cleanup
declare -A started
PYTHON="$BIN/python" scripts/rgw.sh start "$RGW_DIR" >.test-logs/rgw.log 2>&1 &
started[rgw]=$!
# moto's standalone server for the AWS-only calls RGW refuses (CloudWatch, request metrics,
# Glacier, RestoreObject): MOTO_ENDPOINT for tests/fixtures/moto.py.
scripts/moto.sh start "$MOTO_DIR" >.test-logs/moto.log 2>&1 &
started[moto]=$!
# Orthanc with DICOMweb for the DICOM SEG tests.
scripts/orthanc.sh start "$ORTHANC_DIR" >.test-logs/orthanc.log 2>&1 &
started[orthanc]=$!
for service in "${!started[@]}"; do
  wait "${started[$service]}" || { echo "$service did not start:"; cat ".test-logs/$service.log"; exit 1; }
done
# shellcheck disable=SC1091
. "$RGW_DIR/env.sh"
export RGW_ENDPOINT RGW_ACCESS_KEY RGW_SECRET_KEY RGW_BUCKET RGW_REGION RGW_DIR
# shellcheck disable=SC1091
. "$MOTO_DIR/env.sh"
export MOTO_ENDPOINT
# shellcheck disable=SC1091
. "$ORTHANC_DIR/env.sh"
export ORTHANC_URL ORTHANC_DICOMWEB_URL

if [ -n "${lint_job:-}" ]; then
  if wait "$lint_job"; then echo "make lint: passed"; else
    cat .test-logs/lint.log; echo "make lint failed"; exit 1
  fi
fi

# Bytecode is written and reused during the run (into __pycache__, ignored by git): under
# PYTHONDONTWRITEBYTECODE (set on some machines, this one included) each of the run's ~400
# server and CLI processes compiled every module it imports from source (an editable install
# has no bytecode of its own), and each xdist worker rewrote every test module's asserts
# again (collecting took 8.3 s of CPU a process instead of 4.8).
unset PYTHONDONTWRITEBYTECODE

# A whole module runs on one worker (tests/conftest.py groups them), longest groups first.
"$BIN/pytest" -n "$TEST_WORKERS" --dist loadgroup --no-loadscope-reorder "$@"
