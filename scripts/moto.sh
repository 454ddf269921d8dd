#!/usr/bin/env bash
# moto's standalone server (PyPI `moto[server]`, a dev dependency): a real HTTP endpoint that
# answers the AWS-only calls Ceph RGW refuses (CloudWatch alarms, S3 request metrics and
# access logging, Glacier storage classes, RestoreObject) for the `moto`-marked tests.
#
#   scripts/moto.sh start DIR [PORT]   start it on 127.0.0.1 (a free port), write DIR/env.sh
#   scripts/moto.sh stop DIR           stop it by the PID in DIR/moto.pid
#   scripts/moto.sh status DIR         exit 0 only when it runs and answers
#
# It keeps everything in memory: a restart starts empty. It is never signalled but through
# DIR/moto.pid, and only if that process's command line is moto_server with DIR's port, so
# servers of other sessions on this machine are never touched. Ceph RGW stays the store for
# signatures, CORS and conditional writes: moto does not check presigned signatures.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$SCRIPT_DIR")"
MOTO_SERVER="${MOTO_SERVER:-$REPO_DIR/.venv/bin/moto_server}"
START_TIMEOUT="${MOTO_START_TIMEOUT:-30}"

log() { printf '[moto.sh +%ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf '[moto.sh] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '6,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# A random TCP port in 40000-59999 that nothing listens on.
free_port() {
    local used p
    used=" $(ss -Htln | awk '{n=split($4,a,":"); print a[n]}' | tr '\n' ' ') "
    for _ in $(seq 200); do
        p=$((40000 + RANDOM % 20000))
        [[ "$used" == *" $p "* ]] || { echo "$p"; return 0; }
    done
    die "no free TCP port found"
}

# The PID in DIR/moto.pid if it is alive and is our moto_server on DIR's port.
live_pid() {
    local pid port
    [[ -s "$PID_FILE" && -s "$DIR/port" ]] || return 1
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    port="$(tr -dc '0-9' <"$DIR/port")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "moto_server.* -p $port" || return 1
    echo "$pid"
}

answers() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/moto-api/data.json"; }

cmd_start() {
    local port="${1:-}" pid i
    [[ -x "$MOTO_SERVER" ]] || die "$MOTO_SERVER not found: run \`make install\` (moto[server] is a dev dependency)"
    if pid="$(live_pid)"; then
        log "already running (pid $pid, port $(cat "$DIR/port"))"
    else
        [[ -n "$port" ]] || port="$(free_port)"
        [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number: $port"
        echo "$port" >"$DIR/port"
        # The browser-facing CORS of every bucket (not moto's allow-all) and no AWS
        # credentials of this machine: moto accepts any key.
        MOTO_DISABLE_GLOBAL_CORS=true AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
            setsid "$MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$DIR/moto.log" 2>&1 </dev/null &
        echo $! >"$PID_FILE"
        for ((i = 0; i < START_TIMEOUT * 10; i++)); do
            answers "$port" && break
            live_pid >/dev/null || die "moto_server exited; see $DIR/moto.log"
            sleep 0.1
        done
        answers "$port" || die "moto_server did not answer on port $port within ${START_TIMEOUT}s"
        log "moto_server on http://127.0.0.1:$port (pid $(cat "$PID_FILE"))"
    fi
    cat >"$DIR/env.sh" <<EOF
export MOTO_ENDPOINT=http://127.0.0.1:$(cat "$DIR/port")
export MOTO_DIR=$DIR
EOF
    cat "$DIR/env.sh"
}

cmd_stop() {
    local pid i
    if pid="$(live_pid)"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do [[ -d "/proc/$pid" ]] || break; sleep 0.1; done
        [[ ! -d "/proc/$pid" ]] || kill -KILL "$pid" 2>/dev/null || true
        log "stopped (pid $pid)"
    fi
    rm -f "$PID_FILE"
}

cmd_status() {
    local pid
    pid="$(live_pid)" || { echo "moto: stopped"; return 1; }
    answers "$(cat "$DIR/port")" || { echo "moto: pid $pid is not answering"; return 1; }
    echo "moto: running (pid $pid) on http://127.0.0.1:$(cat "$DIR/port")"
}

[[ $# -ge 2 ]] || usage
cmd="$1"; shift
case "$cmd" in start | stop | status) ;; *) usage ;; esac
[[ "$cmd" != start ]] || mkdir -p "$1"
[[ -d "$1" ]] || die "no such directory: $1"
DIR="$(cd "$1" && pwd)"
PID_FILE="$DIR/moto.pid"
shift
"cmd_$cmd" "$@"
