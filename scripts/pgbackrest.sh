#!/usr/bin/env bash
# pgBackRest backups of PostgreSQL into the S3 store, as the suite's restore drill runs them
# (and a worked example for operators: docs/recovery.md). The drill uses a throwaway cluster
# of its own, made with the machine's PostgreSQL binaries; the machine's cluster is never
# touched.
#
#   pgbackrest.sh install                  apt-get Debian's pgbackrest if it is missing
#   pgbackrest.sh start DIR BUCKET         initdb DIR/primary on a free port with WAL archiving,
#                                          stanza "pacs" in BUCKET; writes DIR/env.sh
#   pgbackrest.sh run DIR ARGS...          pgbackrest --stanza=pacs ARGS (e.g. backup --type=full)
#   pgbackrest.sh sql DIR PORT SQL         one statement on a cluster of DIR; prints the result
#   pgbackrest.sh restore DIR NAME TARGET  restore into DIR/NAME up to TARGET (a time, or
#                                          "latest"), start it on a free port, print the port
#   pgbackrest.sh stop DIR [NAME]          stop cluster DIR/NAME; without NAME every cluster of
#                                          DIR and the TLS front (by PID)
#
# The S3 store: RGW_ENDPOINT RGW_ACCESS_KEY RGW_SECRET_KEY RGW_REGION (scripts/rgw.sh's env.sh).
# pgBackRest speaks S3 over HTTPS only; the suite's RGW is plain HTTP, so `start` puts a TLS
# front (scripts/tls_front.py, a self-signed certificate pgBackRest is told to trust) before it.
set -euo pipefail
STANZA=pacs
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

# PostgreSQL refuses to run as root: its commands run as the postgres user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
pgbr() { local dir=$1; shift; as_pg pgbackrest --config="$dir/pgbackrest.conf" --stanza=$STANZA "$@"; }
sql() { as_pg "$PGBIN/psql" -X -q -At -h 127.0.0.1 -p "$2" -U postgres -d "${4:-postgres}" -c "$3"; }

cmd=${1:-}
case "$cmd" in
install)
  if ! command -v pgbackrest >/dev/null; then
    echo "installing Debian's pgbackrest for the restore drill"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends pgbackrest >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends pgbackrest; }
    command -v pgbackrest >/dev/null || { echo "could not install pgbackrest"; exit 1; }
  fi
  ;;
start)
  dir=$2 bucket=$3
  [ -x "$PGBIN/initdb" ] || { echo "no PostgreSQL binaries under /usr/lib/postgresql/*/bin"; exit 1; }
  mkdir -p "$dir/run" "$dir/log" "$dir/lock" "$dir/spool"
  chmod 755 "$dir"
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
  hostport=${RGW_ENDPOINT#*://}
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1,DNS:127.0.0.1 -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null
  front=$(free_port)
  "$PYTHON" "$HERE/tls_front.py" "$dir/tls.crt" "$dir/tls.key" "$front" \
    "${hostport%:*}" "${hostport##*:}" >"$dir/tls_front.log" 2>&1 &
  echo $! >"$dir/tls_front.pid"
  port=$(free_port)
  umask 077
  cat >"$dir/pgbackrest.conf" <<EOF
[global]
repo1-type=s3
repo1-s3-endpoint=127.0.0.1
repo1-storage-port=$front
repo1-storage-ca-file=$dir/tls.crt
repo1-s3-uri-style=path
repo1-s3-bucket=$bucket
repo1-s3-region=$RGW_REGION
repo1-s3-key=$RGW_ACCESS_KEY
repo1-s3-key-secret=$RGW_SECRET_KEY
repo1-path=/pgbackrest
repo1-retention-full=2
start-fast=y
process-max=4
archive-timeout=60
log-path=$dir/log
lock-path=$dir/lock
spool-path=$dir/spool
log-level-console=warn
log-level-file=info

[$STANZA]
pg1-path=$dir/primary
pg1-port=$port
pg1-host-user=postgres
pg1-user=postgres
pg1-socket-path=$dir/run
EOF
  umask 022
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/pgbackrest.conf" "$dir/tls.key"; fi
  as_pg "$PGBIN/initdb" -D "$dir/primary" -U postgres --auth=trust -E UTF8 >/dev/null
  cat >>"$dir/primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/run'
wal_level = replica
archive_mode = on
archive_command = 'pgbackrest --config=$dir/pgbackrest.conf --stanza=$STANZA archive-push %p'
EOF
  as_pg "$PGBIN/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w -t 60 start >/dev/null
  pgbr "$dir" stanza-create
  pgbr "$dir" check
  cat >"$dir/env.sh" <<EOF
PGBR_DIR=$dir
PGBR_PORT=$port
PGBR_FRONT_PORT=$front
EOF
  echo "$port"
  ;;
run)
  dir=$2; shift 2
  pgbr "$dir" "$@"
  ;;
sql)
  sql "$2" "$3" "$4" "${5:-postgres}"
  ;;
restore)
  dir=$2 name=$3 target=$4
  data="$dir/$name"
  args=()
  if [ "$target" != latest ]; then
    # The newest backup set, named: pgBackRest's own choice by time compares whole seconds
    # and refuses a target within the second the backup ended (error 075).
    label=$(pgbr "$dir" info --output=json \
      | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["backup"][-1]["label"])')
    args=(--type=time "--target=$target" --target-action=promote "--set=$label")
  fi
  # A drill's restored cluster must not archive into the stanza the original still owns.
  pgbr "$dir" --pg1-path="$data" --archive-mode=off "${args[@]}" restore
  port=$(free_port)
  as_pg "$PGBIN/pg_ctl" -D "$data" -l "$data.log" -o "-p $port" -w -t 120 start >/dev/null
  for _ in $(seq 1 120); do
    [ "$(sql "$dir" "$port" 'SELECT pg_is_in_recovery()')" = f ] && break
    sleep 0.5
  done
  [ "$(sql "$dir" "$port" 'SELECT pg_is_in_recovery()')" = f ] || { echo "not promoted"; exit 1; }
  echo "$port"
  ;;
stop)
  dir=$2
  if [ -n "${3:-}" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$dir/$3" -m fast -w stop >/dev/null
    exit 0
  fi
  for pid in "$dir"/*/postmaster.pid; do
    [ -f "$pid" ] || continue
    as_pg "$PGBIN/pg_ctl" -D "$(dirname "$pid")" -m fast -w stop >/dev/null 2>&1 || true
  done
  if [ -f "$dir/tls_front.pid" ]; then
    kill "$(cat "$dir/tls_front.pid")" 2>/dev/null || true
    rm -f "$dir/tls_front.pid"
  fi
  ;;
*)
  sed -n '2,23p' "$0"
  exit 2
  ;;
esac
