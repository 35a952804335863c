#!/usr/bin/env bash
# bench/postgres.sh - strata against pgBackRest on the same pgbench database.
#
#   bench/postgres.sh [--scale N] [--load-secs S]      (defaults 100 and 60)
#
# One PostgreSQL 15 cluster (initdb'd under BENCH_DIR, default /tmp/strata-pg-bench)
# archives every WAL segment to both tools (archive_command runs strata wal-push, then
# pgbackrest archive-push), so both see the same load. Comparable settings: zstd level 3,
# encryption on (strata AES-256-GCM, pgBackRest aes-256-cbc), two processes/threads.
# Measured, each tool in turn: full backup; a second backup after S seconds of pgbench
# load (strata: a new backup that stores only new chunks; pgBackRest: --type=incr); restore
# of the latest state into a new data directory until the server accepts connections
# (pgBackRest: restore + pg_ctl start); point-in-time restore to a time recorded before the
# load, until ready; repository bytes after each backup. Every restored database is
# checked against the source (pgbench_accounts checksum).
# Needs root (runs PostgreSQL as `postgres`), Debian's postgresql-15 and pgbackrest.
# Output: a table on stdout and bench/results/postgres.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
SCALE=100
LOAD_SECS=60
while [[ $# -gt 0 ]]; do
  case $1 in
    --scale) SCALE=$2; shift 2 ;;
    --load-secs) LOAD_SECS=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "postgres.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
W=${BENCH_DIR:-/tmp/strata-pg-bench}
RESULTS_MD=${BENCH_RESULTS:-$SCRIPT_DIR/results/postgres.md}
PGBIN=/usr/lib/postgresql/15/bin
command -v pgbackrest >/dev/null || { echo "install pgbackrest (Debian package)" >&2; exit 2; }
[[ -x $PGBIN/initdb ]] || { echo "install postgresql-15" >&2; exit 2; }

if [[ -z ${STRATA_BIN:-} ]]; then
  (cd "$REPO_ROOT" && cargo build --release --quiet --bin strata)
  STRATA_BIN=$REPO_ROOT/target/release/strata
fi

as_pg() { runuser -u postgres -- env HOME=/tmp "$@"; }
stop_all() {
  for d in "$W"/primary "$W"/r-*; do
    [[ -f $d/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$d" >/dev/null 2>&1 || true
  done
}
trap stop_all EXIT
stop_all
rm -rf "$W"
mkdir -p "$W"/sock "$W"/pgbr-repo "$W"/pgbr-log "$W"/state
cp "$STRATA_BIN" "$W"/strata
echo "strata-bench-password" > "$W"/password
PORT=55432

cat > "$W"/strata.toml <<EOF
plugin = "postgres"
state_dir = "$W/state"
[password]
file = "$W/password"
[storages.local]
path = "$W/strata-repo"
[backup]
threads = 2
[postgres]
wal_push_ahead = 8
[[nodes]]
name = "db"
[nodes.postgres]
data_dir = "$W/primary"
connect = { host = "$W/sock", port = $PORT, user = "postgres", dbname = "postgres" }
EOF

cat > "$W"/pgbackrest.conf <<EOF
[global]
repo1-path=$W/pgbr-repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=strata-bench-password
repo1-retention-full=4
compress-type=zst
compress-level=3
process-max=2
log-path=$W/pgbr-log
lock-path=$W/pgbr-log
spool-path=$W/pgbr-log
archive-async=y
start-fast=y

[bench]
pg1-path=$W/primary
pg1-port=$PORT
pg1-socket-path=$W/sock
EOF
chown -R postgres:postgres "$W"
chmod 755 "$W"
PGBR="pgbackrest --config=$W/pgbackrest.conf --stanza=bench"

as_pg "$PGBIN/initdb" -A trust -U postgres --no-locale -E UTF8 -D "$W/primary" >/dev/null
cat >> "$W/primary/postgresql.conf" <<EOF
port = $PORT
unix_socket_directories = '$W/sock'
listen_addresses = ''
wal_level = replica
archive_mode = on
archive_command = '$W/strata --config $W/strata.toml -q wal-push %p && $PGBR archive-push %p'
max_wal_size = 4GB
shared_buffers = 256MB
EOF
as_pg "$PGBIN/pg_ctl" start -w -D "$W/primary" -l "$W/primary.log" >/dev/null
psql_() { as_pg "$PGBIN/psql" -X -A -t -q -h "$W/sock" -p "$1" -U postgres -d bench -c "$2"; }
as_pg "$PGBIN/psql" -X -q -h "$W/sock" -p $PORT -U postgres -d postgres -c "CREATE DATABASE bench"
echo "==> pgbench -i -s $SCALE"
as_pg "$PGBIN/pgbench" -i -q -s "$SCALE" -h "$W/sock" -p $PORT -U postgres bench >/dev/null 2>&1
as_pg "$W/strata" --config "$W/strata.toml" -q init >/dev/null
as_pg $PGBR stanza-create >/dev/null
DB_BYTES=$(du -sb "$W/primary" | cut -f1)
# Let the archiver catch up with pgbench -i's WAL first, so that neither timed backup
# (pg_backup_stop waits for the archive) absorbs that backlog.
wait_archived() {
  local seg
  seg=$(psql_ $PORT "SELECT pg_walfile_name(pg_switch_wal())")
  until [[ $(psql_ $PORT "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") > "$seg" ||
           $(psql_ $PORT "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") == "$seg" ]]; do
    sleep 0.5
  done
}

# timed NAME CMD...: wall seconds and CPU seconds (user+sys of the command's children).
declare -A WALL CPU
timed() {
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  # Through bash, so exported shell functions can be timed too.
  /usr/bin/time -f "%U %S %M" -o "$W/time.out" bash -c '"$@"' _ "$@" >/dev/null
  t1=$(date +%s.%N)
  WALL[$name]=$(echo "$t1 - $t0" | bc)
  CPU[$name]=$(awk '{print $1 + $2}' "$W/time.out")
}
repo_bytes() { du -sb "$1" | cut -f1; }
checksum() { psql_ "$1" "SELECT md5(string_agg(aid::text || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts"; }

export W PGBIN PGBR PORT
export -f as_pg psql_

echo "==> waiting for the archiver"
wait_archived
echo "==> full backups"
timed strata_full as_pg "$W/strata" --config "$W/strata.toml" -q backup
S_FULL=$(repo_bytes "$W/strata-repo")
timed pgbr_full as_pg $PGBR --type=full backup
B_FULL=$(repo_bytes "$W/pgbr-repo")
TARGET=$(psql_ $PORT "SELECT clock_timestamp()::text")
PITR_SUM=$(checksum $PORT)
sleep 1

echo "==> $LOAD_SECS s of pgbench load, then second backups"
as_pg "$PGBIN/pgbench" -n -c 2 -j 2 -T "$LOAD_SECS" -h "$W/sock" -p $PORT -U postgres bench >/dev/null 2>&1
wait_archived
S_BEFORE=$(repo_bytes "$W/strata-repo")
timed strata_second as_pg "$W/strata" --config "$W/strata.toml" -q backup
S_SECOND=$(( $(repo_bytes "$W/strata-repo") - S_FULL ))
S_SECOND_ONLY=$(( $(repo_bytes "$W/strata-repo") - S_BEFORE ))
B_BEFORE=$(repo_bytes "$W/pgbr-repo")
timed pgbr_second as_pg $PGBR --type=incr backup
# Both from the full backup on: the second backup and the load's WAL, for each tool.
B_SECOND=$(( $(repo_bytes "$W/pgbr-repo") - B_FULL ))
B_SECOND_ONLY=$(( $(repo_bytes "$W/pgbr-repo") - B_BEFORE ))
psql_ $PORT "SELECT pg_switch_wal()" >/dev/null
sleep 3
LATEST_SUM=$(checksum $PORT)
as_pg "$PGBIN/pg_ctl" stop -m fast -D "$W/primary" >/dev/null

# A target data directory and config for strata restores.
target() {
  local dir=$1 port=$2
  mkdir -p "$dir"; chown postgres:postgres "$dir"; chmod 700 "$dir"
  sed -e "s|data_dir = \"$W/primary\"|data_dir = \"$dir\"|" -e "s|port = $PORT|port = $port|" \
    "$W/strata.toml" > "$dir.toml"
  chown postgres:postgres "$dir.toml"
}
pgbr_restore() {
  local dir=$1 port=$2; shift 2
  mkdir -p "$dir"; chown postgres:postgres "$dir"; chmod 700 "$dir"
  as_pg $PGBR --pg1-path="$dir" "$@" restore >/dev/null
  echo "port = $port" >> "$dir/postgresql.auto.conf"
  as_pg "$PGBIN/pg_ctl" start -w -t 3600 -D "$dir" -l "$dir.log" >/dev/null
  # Ready = recovery over (promoted); pgBackRest's default target action is promote.
  until [[ $(psql_ "$port" "SELECT pg_is_in_recovery()") == f ]]; do sleep 0.2; done
}

export -f pgbr_restore

echo "==> restores of the latest state"
target "$W/r-strata" 55433
timed strata_restore as_pg "$W/strata" --config "$W/r-strata.toml" -q restore latest
[[ $(checksum 55433) == "$LATEST_SUM" ]] || { echo "strata restore differs" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$W/r-strata" >/dev/null
timed pgbr_restore pgbr_restore "$W/r-pgbr" 55434
[[ $(checksum 55434) == "$LATEST_SUM" ]] || { echo "pgbackrest restore differs" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$W/r-pgbr" >/dev/null

echo "==> point-in-time restores to before the load"
target "$W/r-strata-pitr" 55435
timed strata_pitr as_pg "$W/strata" --config "$W/r-strata-pitr.toml" -q restore latest --target-time "$TARGET"
[[ $(checksum 55435) == "$PITR_SUM" ]] || { echo "strata PITR differs" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$W/r-strata-pitr" >/dev/null
timed pgbr_pitr pgbr_restore "$W/r-pgbr-pitr" 55436 --type=time "--target=$TARGET" --target-action=promote --set="$(as_pg $PGBR info --output=json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["backup"][0]["label"])')"
[[ $(checksum 55436) == "$PITR_SUM" ]] || { echo "pgbackrest PITR differs" >&2; exit 1; }

ratio() { echo "scale=2; $1 / $2" | bc; }
mib() { echo "scale=1; $1 / 1048576" | bc; }
{
  echo "# strata vs pgBackRest on pgbench (scale $SCALE, $(mib "$DB_BYTES") MiB data directory)"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores; zstd 3, encryption on, 2 processes; $LOAD_SECS s of pgbench load between the backups."
  echo
  echo "| step | strata s (cpu s) | pgBackRest s (cpu s) | time ratio |"
  echo "|---|---|---|---|"
  for step in full second restore pitr; do
    echo "| $step | ${WALL[strata_$step]} (${CPU[strata_$step]}) | ${WALL[pgbr_$step]} (${CPU[pgbr_$step]}) | $(ratio "${WALL[strata_$step]}" "${WALL[pgbr_$step]}")x |"
  done
  echo
  echo "| stored | strata MiB | pgBackRest MiB | ratio |"
  echo "|---|---|---|---|"
  echo "| after the full backup (with its WAL) | $(mib "$S_FULL") | $(mib "$B_FULL") | $(ratio "$S_FULL" "$B_FULL")x |"
  echo "| added by the load's WAL and the second backup | $(mib "$S_SECOND") | $(mib "$B_SECOND") | $(ratio "$S_SECOND" "$B_SECOND")x |"
  echo "| added by the second backup alone | $(mib "$S_SECOND_ONLY") | $(mib "$B_SECOND_ONLY") | $(ratio "$S_SECOND_ONLY" "$B_SECOND_ONLY")x |"
  echo
  echo "CPU of restores counts the tool's process only (PostgreSQL's recovery, which runs the"
  echo "tool's restore_command per segment, is not included). Restored data was compared with the"
  echo "source (pgbench_accounts checksum) after every restore."
} | tee "$RESULTS_MD"
