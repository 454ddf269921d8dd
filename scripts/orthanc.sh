#!/usr/bin/env bash
# Throwaway Orthanc PACS with its DICOMweb plugin, for the DICOM SEG tests and benchmark.
#
#   scripts/orthanc.sh start DIR    start Orthanc on free ports with its storage under DIR,
#                                   write DIR/env.sh (ORTHANC_URL, ORTHANC_DICOMWEB_URL)
#   scripts/orthanc.sh stop DIR     stop it (by DIR/orthanc.pid only)
#   scripts/orthanc.sh destroy DIR  stop, then delete DIR
#   scripts/orthanc.sh install      only apt-get the packages if they are missing
#
# Debian's `orthanc` and `orthanc-dicomweb` packages are installed on first use (their system
# service does not start in a container, and is never used). Our instance runs from a config
# file of its own, no authentication, listening on 127.0.0.1 only. It is only ever signalled
# through DIR's pid file, after checking that the process is ours, so instances of other
# sessions and worktrees are never touched. Background: /work/shared/notes/dicom.md
set -euo pipefail

PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
START_TIMEOUT="${ORTHANC_START_TIMEOUT:-30}"

log() { printf '[orthanc.sh] %s\n' "$*" >&2; }
die() { printf '[orthanc.sh] ERROR: %s\n' "$*" >&2; exit 1; }

ensure_packages() {
    command -v Orthanc >/dev/null && [[ -f "$PLUGIN" ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "Orthanc missing and not root: install orthanc orthanc-dicomweb"
    log "installing Debian's orthanc and orthanc-dicomweb (one-off)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb >&2 \
        || { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends \
            orthanc orthanc-dicomweb >&2; } || die "apt-get install failed"
}

free_port() {
    local used p
    used=" $(ss -Htln | awk '{n=split($4,a,":"); print a[n]}' | tr '\n' ' ') $* "
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 20000))
        [[ "$used" == *" $p "* ]] || { echo "$p"; return 0; }
    done
    die "no free TCP port found"
}

# The PID in DIR/orthanc.pid if that process is alive and runs DIR's config file.
live_pid() {
    local f="$DIR/orthanc.pid" pid
    [[ -s "$f" ]] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$DIR/config.json" || return 1
    echo "$pid"
}

start() {
    ensure_packages
    mkdir -p "$DIR/db"
    if live_pid >/dev/null; then log "already running"; return 0; fi
    local http dicom
    http="$(free_port)"
    dicom="$(free_port "$http")"
    cat >"$DIR/config.json" <<EOF
{
  "Name": "pacs-ext-test",
  "StorageDirectory": "$DIR/db",
  "IndexDirectory": "$DIR/db",
  "HttpPort": $http,
  "DicomPort": $dicom,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "HttpBindAddress": "127.0.0.1",
  "DicomServerEnabled": false,
  "Plugins": ["$PLUGIN"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": false}
}
EOF
    Orthanc "$DIR/config.json" >"$DIR/orthanc.log" 2>&1 &
    echo $! >"$DIR/orthanc.pid"
    local url="http://127.0.0.1:$http"
    for _ in $(seq $((START_TIMEOUT * 5))); do
        if curl -fsS "$url/system" >/dev/null 2>&1; then
            cat >"$DIR/env.sh" <<EOF
export ORTHANC_URL=$url
export ORTHANC_DICOMWEB_URL=$url/dicom-web
export ORTHANC_DIR=$DIR
EOF
            log "Orthanc answers on $url (DICOMweb: $url/dicom-web)"
            return 0
        fi
        live_pid >/dev/null || die "Orthanc exited; see $DIR/orthanc.log"
        sleep 0.2
    done
    die "Orthanc did not answer within ${START_TIMEOUT}s; see $DIR/orthanc.log"
}

stop() {
    local pid
    pid="$(live_pid)" || return 0
    kill "$pid"
    for _ in $(seq 50); do [[ -r "/proc/$pid/cmdline" ]] || break; sleep 0.2; done
    [[ -r "/proc/$pid/cmdline" ]] && kill -9 "$pid" || true
    rm -f "$DIR/orthanc.pid"
}

if [[ "${1:-}" == install ]]; then ensure_packages; exit 0; fi
[[ $# -eq 2 ]] || { sed -n '4,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
mkdir -p "$2"
DIR="$(cd "$2" && pwd)"
case "$1" in
    start) start ;;
    stop) stop ;;
    destroy) stop; rm -rf "$DIR" ;;
    *) die "unknown command $1" ;;
esac
