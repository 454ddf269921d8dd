#!/usr/bin/env bash
# Throwaway single-node Ceph RADOS Gateway (S3) for the test suite.
#
#   scripts/rgw.sh start DIR [PORT]   create (or restart) a cluster under DIR, write DIR/env.sh
#   scripts/rgw.sh stop DIR           stop radosgw, OSD and monitor (by their pid files)
#   scripts/rgw.sh stop-gw DIR        stop only radosgw (simulate the storage daemon dying)
#   scripts/rgw.sh restart-gw DIR     stop and start only radosgw, same port
#   scripts/rgw.sh status DIR         show what runs; exit 0 only when everything is up
#   scripts/rgw.sh destroy DIR        stop, then delete DIR
#   scripts/rgw.sh install            only apt-get the Ceph packages if they are missing
#
# One monitor, one bluestore OSD on a sparse file, one radosgw (beast) on 127.0.0.1:PORT,
# no manager, cephx off. Every conf/data/log/pid/socket file lives under DIR, and daemons
# are only ever signalled through DIR's pid files, so several clusters (other sessions,
# other worktrees) can coexist on one machine.
#
# A stopped cluster is restarted with its data (same ports, same keys): `start` on a DIR
# holding a finished cluster just (re)starts whatever daemon is not running. A DIR whose
# creation never finished is wiped and recreated. Use `destroy` for a clean slate.
#
# Background and measurements: /work/shared/notes/s3-test-servers.md
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$SCRIPT_DIR")"
BUCKET="pacs-masks"
LOCK=".rgw-sh.lock"
# RGW does not check the region of a SigV4 credential scope against its zonegroup; any
# string works as long as client and signer agree. us-east-1 is what boto3 defaults to.
REGION="us-east-1"
START_TIMEOUT="${RGW_START_TIMEOUT:-90}"   # seconds for each wait (OSD up, port answering)
STOP_TIMEOUT="${RGW_STOP_TIMEOUT:-20}"     # seconds before SIGKILL

log() { printf '[rgw.sh +%ss] %s\n' "$SECONDS" "$*" >&2; }
die() {
    printf '[rgw.sh] ERROR: %s\n' "$*" >&2
    if [[ -n "${DIR:-}" && -d "${DIR}/log" ]]; then
        printf '[rgw.sh] logs: %s/log/ (mon.a.log, osd.0.log, client.rgw.gw.log, setup.log)\n' "$DIR" >&2
    fi
    exit 1
}
usage() {
    sed -n '4,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------- helpers

ensure_packages() {
    command -v radosgw >/dev/null && command -v ceph-osd >/dev/null \
        && command -v ceph-mon >/dev/null && command -v ceph >/dev/null && return 0
    [[ $(id -u) -eq 0 ]] || die "Ceph packages missing and not root: install radosgw ceph-mon ceph-osd ceph-common"
    log "installing radosgw ceph-mon ceph-osd ceph-common (one-off, ~270 MB)"
    apt-get update -q >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        radosgw ceph-mon ceph-osd ceph-common >&2 || die "apt-get install failed"
}

# A random TCP port in 20000-39999 that nothing listens on (and not in the extra args).
free_port() {
    local used p
    used=" $(ss -Htln | awk '{n=split($4,a,":"); print a[n]}' | tr '\n' ' ') $* "
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 20000))
        [[ "$used" == *" $p "* ]] || { echo "$p"; return 0; }
    done
    die "no free TCP port found"
}

port_in_use() { [[ -n "$(ss -Htln "sport = :$1")" ]]; }

# PID from a pid file if that process is alive AND is one of ours: its command line must
# name our ceph.conf, so a recycled PID or another session's daemon is never touched.
live_pid() {
    local f="$1" pid
    [[ -s "$f" ]] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CONF" || return 1
    echo "$pid"
}

# SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL. Removes the pid file.
stop_daemon() {
    local name="$1" f="$2" pid i
    if pid="$(live_pid "$f")"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
            [[ -d "/proc/$pid" ]] || break
            sleep 0.1
        done
        if [[ -d "/proc/$pid" ]]; then
            log "$name (pid $pid) still alive after ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do [[ -d "/proc/$pid" ]] || break; sleep 0.1; done
        fi
    fi
    rm -f "$f"
}

# The ceph CLI hangs forever when the monitor is down; bound every call.
cephc() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }

set_paths() {
    [[ -n "${1:-}" ]] || usage
    [[ "$cmd" != start ]] || mkdir -p "$1"
    [[ -d "$1" ]] || die "no such directory: $1"
    DIR="$(cd "$1" && pwd)"
    # The path goes unquoted into ceph.conf and env.sh.
    [[ "$DIR" =~ ^[A-Za-z0-9_./+-]+$ ]] || die "DIR path may only contain A-Z a-z 0-9 _ . / + -: $DIR"
    CONF="$DIR/ceph.conf"
    RUN="$DIR/run"
    LOGDIR="$DIR/log"
    MON_PID="$RUN/mon.a.pid"
    OSD_PID="$RUN/osd.0.pid"
    GW_PID="$RUN/client.rgw.gw.pid"
    STATE="$DIR/state.sh"     # ports and keys chosen at creation; kept across restarts
}

write_conf() {
    cat >"$CONF" <<EOF
# Generated by scripts/rgw.sh for a throwaway test cluster. Do not use in production.
[global]
fsid = $FSID
mon_host = [v2:127.0.0.1:$MON_V2_PORT,v1:127.0.0.1:$MON_V1_PORT]
public_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# Single OSD: one replica, few PGs, no autoscaler (no mgr anyway), no host-level CRUSH.
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
mon_allow_pool_delete = true
# Keep everything under DIR (defaults point to /var/lib/ceph, /var/run/ceph, /var/log/ceph).
run_dir = $RUN
admin_socket = $RUN/\$name.asok
pid_file = $RUN/\$name.pid
log_file = $LOGDIR/\$name.log
mon_cluster_log_file = $LOGDIR/cluster.log
crash_dir = $DIR/crash
keyring = $DIR/keyring
mon_data = $DIR/mon/\$cluster-\$id
osd_data = $DIR/osd/\$cluster-\$id
# The monitor warns below 30 % free disk; irrelevant for a test cluster.
mon_data_avail_warn = 1
# Commit monitor map changes faster than the 1 s default: the gateway's first start creates
# its pools one after the other, each waiting for a new OSD map.
paxos_propose_interval = 0.1
paxos_min_wait = 0.01

[client]
# Without this radosgw (and radosgw-admin) hang at "get_initial_auth_request returned -13"
# when cephx is off.
ms_mon_client_mode = crc secure

[osd]
osd_objectstore = bluestore
# Sparse 16 GiB file created by mkfs as osd_data/block: disk is used only as written (46 MB
# after start-up); at 4 GiB repeated 2,000-file benches filled it and the OSD stopped with
# "bluefs enospc". Do NOT set bluestore_block_path to a file inside osd_data: mkfs then fails
# with ELOOP.
bluestore_block_create = true
bluestore_block_size = 17179869184
osd_memory_target = 939524096

[client.rgw.gw]
rgw_data = $DIR/rgw
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
EOF
}

write_env() {
    cat >"$DIR/env.sh.tmp" <<EOF
# Generated by scripts/rgw.sh; source it: . $DIR/env.sh
export RGW_ENDPOINT=http://127.0.0.1:$RGW_PORT
export RGW_ACCESS_KEY=$ACCESS_KEY
export RGW_SECRET_KEY=$SECRET_KEY
export RGW_BUCKET=$BUCKET
export RGW_REGION=$REGION
export RGW_DIR=$DIR
export RGW_CONF=$CONF
export RGW_LOG_DIR=$LOGDIR
export RGW_MON_PIDFILE=$MON_PID
export RGW_OSD_PIDFILE=$OSD_PID
export RGW_GW_PIDFILE=$GW_PID
EOF
    mv "$DIR/env.sh.tmp" "$DIR/env.sh"
}

# The port answers HTTP (any status: an anonymous GET / gives 200 with an empty listing).
wait_http() {
    local i
    for ((i = 0; i < START_TIMEOUT * 5; i++)); do
        if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$RGW_PORT/"; then return 0; fi
        [[ -n "$(live_pid "$GW_PID" || true)" || $i -lt 50 ]] \
            || die "radosgw exited during startup"
        sleep 0.2
    done
    die "radosgw did not answer on 127.0.0.1:$RGW_PORT within ${START_TIMEOUT}s"
}

wait_osd_up() {
    local i dump
    for ((i = 0; i < START_TIMEOUT * 2; i++)); do
        dump="$(cephc osd dump 2>/dev/null || true)"
        if grep -q '^osd\.0 up' <<<"$dump"; then return 0; fi
        [[ -n "$(live_pid "$OSD_PID" || true)" || $i -lt 10 ]] || die "ceph-osd exited during startup"
        sleep 0.5
    done
    die "osd.0 not up within ${START_TIMEOUT}s"
}

start_mon() {
    live_pid "$MON_PID" >/dev/null && return 0
    port_in_use "$MON_V2_PORT" && die "monitor port $MON_V2_PORT is taken by another process"
    port_in_use "$MON_V1_PORT" && die "monitor port $MON_V1_PORT is taken by another process"
    log "starting ceph-mon"
    ceph-mon -c "$CONF" -i a 9>&- >>"$LOGDIR/setup.log" 2>&1 || die "ceph-mon failed to start"
}

start_osd() {
    live_pid "$OSD_PID" >/dev/null && return 0
    log "starting ceph-osd"
    # osd_crush_update_on_start: the OSD moves itself under host=$(hostname) at boot.
    ceph-osd -c "$CONF" -i 0 9>&- >>"$LOGDIR/setup.log" 2>&1 || die "ceph-osd failed to start"
}

start_gw() {
    live_pid "$GW_PID" >/dev/null && return 0
    port_in_use "$RGW_PORT" && die "port $RGW_PORT is taken by another process"
    log "starting radosgw on 127.0.0.1:$RGW_PORT"
    # radosgw does not fork until it has reached the monitor (and hangs forever if it
    # cannot), hence the timeout.
    timeout "$START_TIMEOUT" radosgw -c "$CONF" -n client.rgw.gw 9>&- >>"$LOGDIR/setup.log" 2>&1 \
        || die "radosgw failed to start"
    wait_http
}

# Python with botocore, used to create the bucket and to check the keys really work.
find_python() {
    local c
    for c in "${PYTHON:-}" "$REPO_DIR/.venv/bin/python" "$PWD/.venv/bin/python" python3; do
        [[ -n "$c" ]] || continue
        if command -v "$c" >/dev/null && "$c" -c 'import botocore' 2>/dev/null; then
            echo "$c"; return 0
        fi
    done
    die "no python with botocore found (set PYTHON=/path/to/python, e.g. the project .venv)"
}

create_bucket() {
    local py
    py="$(find_python)"
    RGW_ENDPOINT="http://127.0.0.1:$RGW_PORT" RGW_ACCESS_KEY="$ACCESS_KEY" \
    RGW_SECRET_KEY="$SECRET_KEY" RGW_REGION="$REGION" RGW_BUCKET="$BUCKET" \
        "$py" - <<'EOF' || die "could not create bucket $BUCKET"
import os, botocore.session
from botocore.config import Config
s3 = botocore.session.get_session().create_client(
    "s3", endpoint_url=os.environ["RGW_ENDPOINT"], region_name=os.environ["RGW_REGION"],
    aws_access_key_id=os.environ["RGW_ACCESS_KEY"],
    aws_secret_access_key=os.environ["RGW_SECRET_KEY"],
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 10}))
try:
    s3.create_bucket(Bucket=os.environ["RGW_BUCKET"])
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
s3.head_bucket(Bucket=os.environ["RGW_BUCKET"])
EOF
}

rand() { tr -dc "$1" </dev/urandom | head -c "$2" || true; }

# ---------------------------------------------------------------- commands

create_cluster() {
    local osd_uuid
    FSID="$(cat /proc/sys/kernel/random/uuid)"
    MON_V2_PORT="$(free_port)"
    MON_V1_PORT="$(free_port "$MON_V2_PORT")"
    RGW_PORT="${REQ_PORT:-$(free_port "$MON_V2_PORT" "$MON_V1_PORT")}"
    ACCESS_KEY="${RGW_NEW_ACCESS_KEY:-$(rand 'A-Z0-9' 20)}"
    SECRET_KEY="${RGW_NEW_SECRET_KEY:-$(rand 'A-Za-z0-9' 40)}"
    port_in_use "$RGW_PORT" && die "port $RGW_PORT is already in use"

    touch "$DIR/.rgw-sh-cluster"     # marks DIR as ours, so a later start may wipe it
    mkdir -p "$RUN" "$LOGDIR" "$DIR/mon" "$DIR/osd/ceph-0" "$DIR/rgw" "$DIR/crash"
    cat >"$STATE" <<EOF
FSID=$FSID
MON_V2_PORT=$MON_V2_PORT
MON_V1_PORT=$MON_V1_PORT
RGW_PORT=$RGW_PORT
ACCESS_KEY=$ACCESS_KEY
SECRET_KEY=$SECRET_KEY
EOF
    write_conf
    log "creating cluster in $DIR (mon ports $MON_V2_PORT/$MON_V1_PORT, S3 port $RGW_PORT)"

    monmaptool --create --addv a "[v2:127.0.0.1:$MON_V2_PORT,v1:127.0.0.1:$MON_V1_PORT]" \
        --fsid "$FSID" "$DIR/monmap" >>"$LOGDIR/setup.log" 2>&1 || die "monmaptool failed"
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" >>"$LOGDIR/setup.log" 2>&1 \
        || die "ceph-mon --mkfs failed"
    start_mon

    osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
    [[ "$(cephc osd new "$osd_uuid" 2>>"$LOGDIR/setup.log")" == 0 ]] \
        || die "'ceph osd new' failed (monitor not reachable?)"
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$LOGDIR/setup.log" 2>&1 \
        || die "ceph-osd --mkfs failed"
    start_osd
    wait_osd_up

    start_gw
    log "creating S3 user and bucket $BUCKET"
    # As client.admin: running it as client.rgw.gw would clash with the gateway's admin socket.
    timeout 60 radosgw-admin -c "$CONF" user create --uid=pacs-test \
        --display-name="PACS test user" --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" \
        >>"$LOGDIR/setup.log" 2>&1 || die "radosgw-admin user create failed"
    create_bucket
    touch "$DIR/.rgw-sh-ready"
}

# A failed `start` stops every daemon of DIR again, so that nothing is left running half set
# up; the logs stay for diagnosis.
on_start_exit() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        log "start failed (exit $rc): stopping the daemons of $DIR; logs: $LOGDIR/"
        stop_all || true
    fi
}

cmd_start() {
    REQ_PORT="${1:-}"
    [[ -z "$REQ_PORT" || "$REQ_PORT" =~ ^[0-9]+$ ]] || die "PORT must be a number: $REQ_PORT"
    local t0=$SECONDS t1
    ensure_packages
    t1=$SECONDS
    trap on_start_exit EXIT

    if [[ -f "$DIR/.rgw-sh-ready" ]]; then
        # Existing cluster: keep data, ports and keys; start only what is not running.
        # shellcheck source=/dev/null
        . "$STATE"
        if [[ -n "$REQ_PORT" && "$REQ_PORT" != "$RGW_PORT" ]]; then
            if live_pid "$GW_PID" >/dev/null; then
                log "WARNING: radosgw already runs on port $RGW_PORT; ignoring requested $REQ_PORT"
            else
                log "moving S3 port $RGW_PORT -> $REQ_PORT"
                RGW_PORT="$REQ_PORT"
                sed -i "s/^RGW_PORT=.*/RGW_PORT=$RGW_PORT/" "$STATE"
            fi
        fi
        write_conf
        mkdir -p "$RUN" "$LOGDIR"
        if live_pid "$MON_PID" >/dev/null && live_pid "$OSD_PID" >/dev/null \
            && live_pid "$GW_PID" >/dev/null; then
            log "already running"
        else
            start_mon
            start_osd
            wait_osd_up
            start_gw
        fi
    else
        if [[ -f "$DIR/.rgw-sh-cluster" ]]; then
            log "$DIR holds an unfinished cluster: wiping it"
            stop_all
            find "$DIR" -mindepth 1 ! -name "$LOCK" -delete
        elif [[ -n "$(ls -A "$DIR" | grep -vxF "$LOCK")" ]]; then
            die "$DIR is not empty and was not created by rgw.sh; refusing to touch it"
        fi
        create_cluster
    fi
    write_env
    log "ready (packages $((t1 - t0))s, cluster $((SECONDS - t1))s): . $DIR/env.sh"
    cat "$DIR/env.sh"
}

stop_all() {
    stop_daemon radosgw "$GW_PID"
    stop_daemon ceph-osd "$OSD_PID"
    stop_daemon ceph-mon "$MON_PID"
}

# destroy: the data goes too, so no daemon needs a clean shutdown; SIGKILL all three at once
# instead of up to STOP_TIMEOUT each in turn (a suite's end waits for it).
kill_all() {
    local f pid i pids=()
    for f in "$GW_PID" "$OSD_PID" "$MON_PID"; do
        if pid="$(live_pid "$f")"; then kill -KILL "$pid" 2>/dev/null || true; pids+=("$pid"); fi
        rm -f "$f"
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 50; i++)); do [[ -d "/proc/$pid" ]] || break; sleep 0.1; done
    done
}

load_existing() {
    [[ -f "$DIR/.rgw-sh-cluster" && -f "$STATE" ]] || die "$DIR holds no rgw.sh cluster"
    # shellcheck source=/dev/null
    . "$STATE"
}

cmd_status() {
    local rc=0 name f pid
    load_existing
    for name in mon.a osd.0 client.rgw.gw; do
        f="$RUN/$name.pid"
        if pid="$(live_pid "$f")"; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; rc=1; fi
    done
    if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$RGW_PORT/"; then
        echo "s3: answering on http://127.0.0.1:$RGW_PORT"
    else
        echo "s3: not answering on http://127.0.0.1:$RGW_PORT"; rc=1
    fi
    [[ -f "$DIR/.rgw-sh-ready" ]] || { echo "cluster creation never finished"; rc=1; }
    echo "env: $DIR/env.sh  logs: $LOGDIR/"
    return "$rc"
}

# ---------------------------------------------------------------- main

if [[ "${1:-}" == install ]]; then ensure_packages; exit 0; fi
[[ $# -ge 2 ]] || usage
cmd="$1"; shift
case "$cmd" in start | stop | stop-gw | restart-gw | status | destroy) ;; *) usage ;; esac
set_paths "$1"; shift
# Never write into (or delete) a directory that is not one of ours.
if [[ "$cmd" != start && ! -f "$DIR/.rgw-sh-cluster" ]]; then
    if [[ "$cmd" == destroy && -z "$(ls -A "$DIR" | grep -vxF "$LOCK")" ]]; then
        rm -f -- "${DIR:?}/$LOCK"; rmdir -- "$DIR"; exit 0
    fi
    die "$DIR holds no rgw.sh cluster"
fi
# Serialise commands on one DIR (e.g. every pytest-xdist worker calling `start`). Daemons are
# launched with 9>&- so that they do not inherit, and hold forever, this lock.
if [[ "$cmd" != status ]]; then
    exec 9>>"$DIR/$LOCK"
    flock -w 300 9 || die "timed out waiting for the lock on $DIR"
fi
case "$cmd" in
    start) cmd_start "$@" ;;
    stop) load_existing; stop_all ;;
    stop-gw) load_existing; stop_daemon radosgw "$GW_PID" ;;
    restart-gw)
        load_existing
        [[ -f "$DIR/.rgw-sh-ready" ]] || die "cluster in $DIR was never fully created; run start"
        stop_daemon radosgw "$GW_PID"
        live_pid "$MON_PID" >/dev/null && live_pid "$OSD_PID" >/dev/null \
            || die "monitor or OSD not running; use: $0 start $DIR"
        start_gw
        log "radosgw back on 127.0.0.1:$RGW_PORT"
        ;;
    status) cmd_status ;;
    destroy) load_existing; kill_all; rm -rf -- "${DIR:?}" ;;
esac
