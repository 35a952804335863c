#!/usr/bin/env bash
# One table back from a physical backup: `strata restore --table` against what a user
# does without it (a full restore of the cluster into a new directory, recovery, then
# `pg_dump -t` of the table loaded into the live cluster), in one run, for two tables:
#
#   1. pgbench_accounts of a scale-SCALE pgbench database (`bench`, the big one): both
#      read the whole database;
#   2. a small table in another database (`shop`): `restore --table` leaves `bench` out of
#      its copy (holes of its size), the full restore cannot.
#
#   bench/table_restore.sh STRATA_BIN [SCALE]      (root; PostgreSQL 15; SCALE default 100)
#
# Prints a Markdown table: elapsed seconds and peak RSS of each way, and the bytes of data
# each lays down (allocated, as `du` counts them). The page cache is dropped before each.
set -euo pipefail
BIN=${1:?usage: $0 STRATA_BIN [SCALE]}
SCALE=${2:-100}
PGBIN=/usr/lib/postgresql/15/bin
[[ $(id -u) == 0 ]] || { echo "$0: run as root (drops the page cache, runs PostgreSQL as postgres)" >&2; exit 2; }
[[ -x $PGBIN/initdb ]] || { echo "install postgresql-15" >&2; exit 2; }
W=$(mktemp -d /tmp/strata-table-bench.XXXX)
PORT=55501
as_pg() { runuser -u postgres -- env HOME=/tmp "$@"; }
cleanup() {
  for d in "$W"/primary "$W"/full-*; do
    [[ -f $d/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$d" >/dev/null 2>&1 || true
  done
  rm -rf "$W"
}
[[ -n ${KEEP:-} ]] || trap cleanup EXIT
mkdir -p "$W/sock" "$W/state"
cp "$BIN" "$W/strata"
echo "bench password" > "$W/password"
cat > "$W/strata.toml" <<EOF
plugin = "postgres"
state_dir = "$W/state"
[password]
file = "$W/password"
[storages.local]
path = "$W/repo"
[postgres]
recovery_timeout_secs = 3600
[[nodes]]
name = "db"
[nodes.postgres]
data_dir = "$W/primary"
connect = { host = "$W/sock", port = $PORT, user = "postgres", dbname = "postgres" }
EOF
chown -R postgres:postgres "$W"
chmod 755 "$W"
S="$W/strata --config $W/strata.toml"
as_pg "$PGBIN/initdb" -A trust -U postgres --no-locale -E UTF8 -D "$W/primary" >/dev/null
cat >> "$W/primary/postgresql.conf" <<EOF
port = $PORT
unix_socket_directories = '$W/sock'
listen_addresses = ''
wal_level = replica
archive_mode = on
archive_command = '$S -q wal-push %p'
max_wal_size = 4GB
shared_buffers = 256MB
EOF
as_pg "$PGBIN/pg_ctl" start -w -D "$W/primary" -l "$W/primary.log" >/dev/null
psql_() { as_pg "$PGBIN/psql" -X -A -t -q -h "$W/sock" -p "$1" -U postgres -d "$2" -c "$3"; }
psql_ $PORT postgres "CREATE DATABASE bench"
psql_ $PORT postgres "CREATE DATABASE shop"
as_pg $S -q init >/dev/null
echo "==> pgbench -i -s $SCALE; a small table in shop" >&2
as_pg "$PGBIN/pgbench" -i -q -s "$SCALE" -h "$W/sock" -p $PORT -U postgres bench >/dev/null 2>&1
psql_ $PORT shop "CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 100000) g"
echo "==> backup" >&2
as_pg $S -q backup >/dev/null
# Both ways recover to the same point, just after the backup (the tables each way loads
# into the live cluster would otherwise be WAL the next one replays).
sleep 1
TARGET=$(psql_ $PORT postgres "SELECT clock_timestamp()::text")
sleep 1
psql_ $PORT postgres "CREATE TABLE after_target (x int)"
psql_ $PORT postgres "SELECT pg_switch_wal()" >/dev/null
sleep 2
BENCH_OID=$(psql_ $PORT postgres "SELECT oid FROM pg_database WHERE datname = 'bench'")
# What the backup holds (the data directory without pg_wal and the other excluded files).
BACKUP_BYTES=$(as_pg $S --json show latest | python3 -c "import json,sys; print(sum(n['bytes'] for n in json.load(sys.stdin)['nodes']))")
BENCH_BYTES=$(du -sb "$W/primary/base/$BENCH_OID" | cut -f1)

# timed LABEL CMD...: elapsed seconds and peak RSS (KiB) of CMD, after dropping the cache.
timed() {
  local label=$1; shift
  sync; echo 3 > /proc/sys/vm/drop_caches
  if ! /usr/bin/time -o "$W/time.out" -f "%e %M" "$@" >/dev/null 2>"$W/$label.err"; then
    echo "$label failed:" >&2; cat "$W/$label.err" >&2; exit 1
  fi
  echo "$label $(tail -1 "$W/time.out")"
}
# The way without `restore --table`: the whole cluster into a new directory, recovered,
# then the table dumped and loaded into a new database of the live cluster.
full_way() {
  local db=$1 table=$2 n=$3
  local dir=$W/full-$n port=$((PORT + n))
  rm -rf "$dir"; mkdir -p "$dir"; chown postgres:postgres "$dir"; chmod 700 "$dir"
  as_pg $S -q restore latest --to "$dir"
  cat >> "$dir/postgresql.auto.conf" <<EOF2
restore_command = '$S -q wal-fetch %f %p'
recovery_target_time = '$TARGET'
recovery_target_action = 'promote'
EOF2
  touch "$dir/recovery.signal"; chown postgres:postgres "$dir/recovery.signal"
  as_pg "$PGBIN/pg_ctl" start -w -t 3600 -D "$dir" -l "$dir.log" -o "-p $port -k $W/sock -c archive_mode=off" >/dev/null
  until [[ $(psql_ "$port" postgres "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]]; do sleep 0.1; done
  psql_ $PORT postgres "CREATE DATABASE ${db}_full_$n" >/dev/null
  as_pg "$PGBIN/pg_dump" -h "$W/sock" -p "$port" -U postgres -t "$table" "$db" \
    | as_pg "$PGBIN/psql" -X -q -h "$W/sock" -p $PORT -U postgres -d "${db}_full_$n" --single-transaction -v ON_ERROR_STOP=1 >/dev/null
  du -sb "$dir" | cut -f1 > "$W/full-$n.bytes"
  as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$dir" >/dev/null
  rm -rf "$dir"
}
export -f full_way psql_ as_pg
export W S PGBIN PORT TARGET

echo "==> 1: pgbench_accounts (bench, the big database)" >&2
A1=$(timed table1 runuser -u postgres -- env HOME=/tmp $S -q restore latest --table public.pgbench_accounts --database bench --as accounts_back --target-time "$TARGET")
B1=$(timed full1 bash -c "full_way bench public.pgbench_accounts 1")
echo "==> 2: orders (shop, a small database beside bench)" >&2
A2=$(timed table2 runuser -u postgres -- env HOME=/tmp $S -q restore latest --table public.orders --database shop --as orders_back --target-time "$TARGET")
B2=$(timed full2 bash -c "full_way shop public.orders 2")
[[ $(psql_ $PORT bench "SELECT count(*) FROM accounts_back") == $((SCALE * 100000)) ]] || { echo "accounts_back is wrong" >&2; exit 1; }
[[ $(psql_ $PORT shop "SELECT count(*) FROM orders_back") == 100000 ]] || { echo "orders_back is wrong" >&2; exit 1; }

row() {
  local case=$1 a=$2 b=$3 a_bytes=$4 b_bytes=$5
  read -r _ ae am <<<"$a"
  read -r _ be bm <<<"$b"
  printf '| %s | %s s (%s MiB) | %s s (%s MiB) | %.2fx | %s MiB | %s MiB |\n' "$case" "$ae" $((am / 1024)) "$be" $((bm / 1024)) \
    "$(echo "$ae / $be" | bc -l)" $((a_bytes >> 20)) $((b_bytes >> 20))
}
echo "scale $SCALE: backup $((BACKUP_BYTES >> 20)) MiB, of which database bench $((BENCH_BYTES >> 20)) MiB"
echo
echo "| table | restore --table (peak RSS) | full restore + pg_dump -t (peak RSS of the restore) | ratio | read by --table | laid down by the full restore |"
echo "|---|---|---|---|---|---|"
row "bench.pgbench_accounts" "$A1" "$B1" "$BACKUP_BYTES" "$(cat "$W/full-1.bytes")"
row "shop.orders" "$A2" "$B2" "$((BACKUP_BYTES - BENCH_BYTES))" "$(cat "$W/full-2.bytes")"
