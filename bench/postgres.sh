#!/usr/bin/env bash
# bench/postgres.sh - strata against pgBackRest on the same pgbench database.
#
#   bench/postgres.sh [--scale N] [--load-secs S] [--archive-tx T]   (defaults 100, 60, 5000)
#
# One PostgreSQL 15 cluster (initdb'd under BENCH_DIR, default /tmp/strata-pg-bench).
# Comparable settings: zstd level 3, encryption on (strata AES-256-GCM, pgBackRest
# aes-256-cbc), two processes/threads; strata archives through its WAL archiver
# (`strata wal archiver`), pgBackRest with archive-async and process-max 2.
#
# 1. Archiving, each tool alone: archive_command is set to one tool, the same
#    write-heavy load runs (pgbench -t T with 4 clients, each transaction inserting 100
#    rows, about 20 KiB of WAL), then the other tool. Measured:
#    the load's WAL, the segments waiting when it ends, the lag (load end until the last
#    segment is archived) and the throughput (WAL bytes / (load start .. archived)).
# 2. Backups: archive_command runs both tools (and keeps a plain copy of each segment for
#    the floor below). Each tool in turn: full backup; S seconds of pgbench load; a
#    recovery target time T1 taken then; a second backup (strata: a new backup that
#    stores only new chunks; pgBackRest: --type=incr). Repository bytes after each.
# 3. Restores, each tool in turn, in phases: the files laid down (`strata restore
#    --no-start`, `pgbackrest restore`), then recovery until the server is promoted
#    (pg_ctl start, restore_command fetching from the tool), for the latest state (from
#    the second backup) and to T1 (from the full backup, replaying the whole load). Two
#    floors: the same files copied by cp -a and synced (laying them down), and the same
#    files recovered with every segment already local (restore_command = cp), replay
#    alone; WAL fetch = recovery - that floor. Every restored database is checked
#    against the source (pgbench_accounts checksum).
# Needs root (runs PostgreSQL as `postgres`), Debian's postgresql-15 and pgbackrest.
# Output: a table on stdout and bench/results/postgres.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
SCALE=100
LOAD_SECS=60
ARCHIVE_TX=5000
while [[ $# -gt 0 ]]; do
  case $1 in
    --scale) SCALE=$2; shift 2 ;;
    --load-secs) LOAD_SECS=$2; shift 2 ;;
    --archive-tx) ARCHIVE_TX=$2; shift 2 ;;
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
ARCHIVER_PID=
stop_all() {
  [[ -n $ARCHIVER_PID ]] && kill "$ARCHIVER_PID" 2>/dev/null && wait "$ARCHIVER_PID" 2>/dev/null || true
  ARCHIVER_PID=
  for d in "$W"/primary "$W"/r-*; do
    [[ -f $d/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$d" >/dev/null 2>&1 || true
  done
}
trap stop_all EXIT
stop_all
rm -rf "$W"
mkdir -p "$W"/sock "$W"/pgbr-repo "$W"/pgbr-log "$W"/state "$W"/walcopy
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
STRATA_PUSH="$W/strata --config $W/strata.toml -q wal-push %p"
PGBR_PUSH="$PGBR archive-push %p"

as_pg "$PGBIN/initdb" -A trust -U postgres --no-locale -E UTF8 -D "$W/primary" >/dev/null
cat >> "$W/primary/postgresql.conf" <<EOF
port = $PORT
unix_socket_directories = '$W/sock'
listen_addresses = ''
wal_level = replica
archive_mode = on
archive_command = '$STRATA_PUSH && $PGBR_PUSH'
max_wal_size = 4GB
shared_buffers = 256MB
EOF
as_pg "$PGBIN/pg_ctl" start -w -D "$W/primary" -l "$W/primary.log" >/dev/null
psql_() { as_pg "$PGBIN/psql" -X -A -t -q -h "$W/sock" -p "$1" -U postgres -d bench -c "$2"; }
as_pg "$PGBIN/psql" -X -q -h "$W/sock" -p $PORT -U postgres -d postgres -c "CREATE DATABASE bench"
as_pg "$W/strata" --config "$W/strata.toml" -q init >/dev/null
as_pg $PGBR stanza-create >/dev/null
# The WAL archiver, as a unit would run it: wal-push hands it every segment.
as_pg "$W/strata" --config "$W/strata.toml" wal archiver 2>"$W/archiver.log" &
ARCHIVER_PID=$!
until [[ -S $W/state/wal-archiver.sock ]]; do sleep 0.1; done
echo "==> pgbench -i -s $SCALE"
as_pg "$PGBIN/pgbench" -i -q -s "$SCALE" -h "$W/sock" -p $PORT -U postgres bench >/dev/null 2>&1
DB_BYTES=$(du -sb "$W/primary" | cut -f1)
archived_name() { psql_ $PORT "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"; }
# Switches to a new segment and waits until the one before is archived.
wait_archived() {
  local seg
  # A commit first: pg_switch_wal skips the switch when only unimportant records (a
  # restore point, running transactions) were written since the last one, and then names
  # a segment that is not complete.
  psql_ $PORT "SELECT txid_current()" >/dev/null
  seg=$(psql_ $PORT "SELECT pg_walfile_name(pg_switch_wal())")
  until [[ $(archived_name) > "$seg" || $(archived_name) == "$seg" ]]; do sleep 0.1; done
}
set_archive_command() {
  psql_ $PORT "ALTER SYSTEM SET archive_command = '$1'" >/dev/null
  psql_ $PORT "SELECT pg_reload_conf()" >/dev/null
  sleep 1
}

# timed NAME CMD...: wall seconds, CPU seconds (user+sys of the command's children) and
# peak RSS (MiB, the largest process the command waited for).
declare -A WALL CPU RSS
timed() {
  local name=$1; shift
  local t0 t1
  # Each step starts from the same state: nothing dirty (neither tool pays for the
  # writeback of what ran before it) and nothing cached (the first restore would pay for
  # reclaiming the cache the backups filled, and repositories are read cold in a real
  # restore).
  sync
  echo 3 > /proc/sys/vm/drop_caches
  t0=$(date +%s.%N)
  # Through bash, so exported shell functions can be timed too.
  /usr/bin/time -f "%U %S %M" -o "$W/time.out" bash -c '"$@"' _ "$@" >/dev/null
  t1=$(date +%s.%N)
  WALL[$name]=$(printf '%.2f' "$(echo "$t1 - $t0" | bc)")
  CPU[$name]=$(awk '{printf "%.1f", $1 + $2}' "$W/time.out")
  RSS[$name]=$(awk '{printf "%.0f", $3 / 1024}' "$W/time.out")
}
repo_bytes() { du -sb "$1" | cut -f1; }
checksum() { psql_ "$1" "SELECT md5(string_agg(aid::text || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts"; }

export W PGBIN PGBR PORT
export -f as_pg psql_

# --- 1. archiving, each tool alone -------------------------------------------------
declare -A A_WAL A_LOAD A_LAG A_READY A_MIBS A_FAILED
archive_run() {
  local tool=$1 lsn0 lsn1 t0 t1 t2 failed0
  wait_archived
  failed0=$(psql_ $PORT "SELECT failed_count FROM pg_stat_archiver")
  lsn0=$(psql_ $PORT "SELECT pg_current_wal_lsn()")
  t0=$(date +%s.%N)
  psql_ $PORT "TRUNCATE wal_load" >/dev/null
  as_pg "$PGBIN/pgbench" -n -c 4 -j 2 -t "$ARCHIVE_TX" -f "$W/wal_load.sql" -h "$W/sock" -p $PORT -U postgres bench >/dev/null 2>&1
  t1=$(date +%s.%N)
  A_READY[$tool]=$(find "$W/primary/pg_wal/archive_status" -name '*.ready' | wc -l)
  lsn1=$(psql_ $PORT "SELECT pg_current_wal_lsn()")
  wait_archived
  t2=$(date +%s.%N)
  local bytes
  bytes=$(psql_ $PORT "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")
  A_WAL[$tool]=$(echo "scale=1; $bytes / 1048576" | bc)
  A_LOAD[$tool]=$(printf '%.1f' "$(echo "$t1 - $t0" | bc)")
  A_LAG[$tool]=$(printf '%.2f' "$(echo "$t2 - $t1" | bc)")
  A_MIBS[$tool]=$(printf '%.1f' "$(echo "$bytes / 1048576 / ($t2 - $t0)" | bc -l)")
  A_FAILED[$tool]=$(( $(psql_ $PORT "SELECT failed_count FROM pg_stat_archiver") - failed0 ))
}
# Write-heavy: each transaction inserts 100 rows of 100 bytes of hex (about 20 KiB of WAL).
psql_ $PORT "CREATE TABLE wal_load (id bigint, payload text)" >/dev/null
cat > "$W/wal_load.sql" <<'EOF'
\set n random(1, 1000000000)
INSERT INTO wal_load SELECT :n + g, md5((:n + g)::text) || md5(g::text) || md5((:n::bigint * g)::text) FROM generate_series(1, 100) g;
EOF
chown postgres "$W/wal_load.sql"
echo "==> archiving alone: $ARCHIVE_TX transactions x 4 clients per tool"
set_archive_command "$STRATA_PUSH"
archive_run strata
set_archive_command "$PGBR_PUSH"
archive_run pgbr
ARCHIVER_MATCH="^$W/strata --config $W/strata.toml wal archiver"
ARCHIVER_RSS=$(awk '/^VmHWM/{printf "%.0f", $2 / 1024}' "/proc/$(pgrep -f "$ARCHIVER_MATCH" | head -1)/status")

# --- 2. backups ------------------------------------------------------------------
# Both tools from here on, and a plain copy of every segment for the floor.
set_archive_command "$STRATA_PUSH && $PGBR_PUSH && cp %p $W/walcopy/%f"
wait_archived
echo "==> full backups"
timed strata_full as_pg "$W/strata" --config "$W/strata.toml" -q backup
S_FULL=$(repo_bytes "$W/strata-repo")
timed pgbr_full as_pg $PGBR --type=full backup
B_FULL=$(repo_bytes "$W/pgbr-repo")
FULL_ID=$(as_pg "$W/strata" --config "$W/strata.toml" --json list | python3 -c 'import json,sys; d=json.load(sys.stdin); b=d["backups"] if isinstance(d, dict) else d; print(b[-1]["name"])')
FULL_LABEL=$(as_pg $PGBR info --output=json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["backup"][-1]["label"])')

echo "==> $LOAD_SECS s of pgbench load, then second backups"
as_pg "$PGBIN/pgbench" -n -c 2 -j 2 -T "$LOAD_SECS" -h "$W/sock" -p $PORT -U postgres bench >/dev/null 2>&1
TARGET=$(psql_ $PORT "SELECT clock_timestamp()::text")
PITR_SUM=$(checksum $PORT)
# A commit after the target, so recovery to it has a record to stop at.
psql_ $PORT "CREATE TABLE after_target AS SELECT 1 AS one" >/dev/null
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
wait_archived
LATEST_SUM=$(checksum $PORT)
as_pg "$PGBIN/pg_ctl" stop -m fast -D "$W/primary" >/dev/null
pkill -TERM -f "$ARCHIVER_MATCH"; wait "$ARCHIVER_PID" || true; ARCHIVER_PID=
WAL_SEGMENTS=$(ls "$W/walcopy" | grep -c -v history || true)

# --- 3. restores in phases -----------------------------------------------------------
# newdir DIR PORT: an empty data directory, and a strata config restoring into it.
newdir() {
  local dir=$1 port=$2
  rm -rf "$dir"; mkdir -p "$dir"; chown postgres:postgres "$dir"; chmod 700 "$dir"
  sed -e "s|data_dir = \"$W/primary\"|data_dir = \"$dir\"|" -e "s|port = $PORT|port = $port|" \
    "$W/strata.toml" > "$dir.toml"
  chown postgres:postgres "$dir.toml"
}
# recover DIR PORT: starts the restored directory and waits until it is promoted.
recover() {
  local dir=$1 port=$2
  # archive_mode off: a restored copy must not archive into the benchmark's archives.
  as_pg "$PGBIN/pg_ctl" start -w -t 3600 -D "$dir" -l "$dir.log" -o "-p $port -k $W/sock -c archive_mode=off" >/dev/null
  until [[ $(psql_ "$port" "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]]; do sleep 0.1; done
}
export -f recover

# phases TOOL KIND PORT SUM FILES-CMD...: files, then recovery, then the floor on a copy
# of the same files; checks the restored data.
phases() {
  local tool=$1 kind=$2 port=$3 sum=$4; shift 4
  local dir=$W/r-$tool-$kind
  newdir "$dir" "$port"
  timed "${tool}_${kind}_files" "$@"
  # The floor of laying the files down: the same files copied by cp and synced.
  rm -rf "$dir.floor"
  timed "${tool}_${kind}_copy" copy_synced "$dir" "$dir.floor"
  echo "restore_command = 'cp $W/walcopy/%f %p'" >> "$dir.floor/postgresql.auto.conf"
  timed "${tool}_${kind}_recovery" recover "$dir" "$port"
  [[ $(checksum "$port") == "$sum" ]] || { echo "$tool $kind restore differs" >&2; exit 1; }
  as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$dir" >/dev/null
  rm -rf "$dir"
  timed "${tool}_${kind}_floor" recover "$dir.floor" "$port"
  [[ $(checksum "$port") == "$sum" ]] || { echo "$tool $kind floor differs" >&2; exit 1; }
  as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$dir.floor" >/dev/null
  rm -rf "$dir.floor"
}
copy_synced() { cp -a "$1" "$2" && sync; }
export -f copy_synced
pgbr_files() { local dir=$1; shift; as_pg $PGBR --pg1-path="$dir" "$@" restore; }
export -f pgbr_files

echo "==> restores of the latest state"
phases strata latest 55433 "$LATEST_SUM" \
  as_pg "$W/strata" --config "$W/r-strata-latest.toml" -q restore latest --no-start
phases pgbr latest 55434 "$LATEST_SUM" pgbr_files "$W/r-pgbr-latest"
echo "==> point-in-time restores from the full backup to the end of the load"
phases strata pitr 55435 "$PITR_SUM" \
  as_pg "$W/strata" --config "$W/r-strata-pitr.toml" -q restore "$FULL_ID" --no-start --target-time "$TARGET"
phases pgbr pitr 55436 "$PITR_SUM" pgbr_files "$W/r-pgbr-pitr" \
  --set="$FULL_LABEL" --type=time "--target=$TARGET" --target-action=promote

ratio() { echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }
mib() { echo "scale=1; $1 / 1048576" | bc | sed 's/^\./0./'; }
sum2() { printf '%.2f' "$(echo "$1 + $2" | bc)"; }
fetch() { printf '%.2f' "$(echo "$1 - $2" | bc)"; }
{
  echo "# strata vs pgBackRest on pgbench (scale $SCALE, $(mib "$DB_BYTES") MiB data directory)"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores; zstd 3, encryption on, 2 processes; pgBackRest $(pgbackrest version | cut -d' ' -f2) archive-async."
  echo
  echo "## Archiving, each tool alone ($ARCHIVE_TX transactions x 4 clients of 100-row inserts)"
  echo
  echo "| tool | WAL MiB | load s | segments waiting at its end | lag s | throughput MiB/s | failed calls |"
  echo "|---|---|---|---|---|---|---|"
  for t in strata pgbr; do
    echo "| $t | ${A_WAL[$t]} | ${A_LOAD[$t]} | ${A_READY[$t]} | ${A_LAG[$t]} | ${A_MIBS[$t]} | ${A_FAILED[$t]} |"
  done
  echo
  echo "Throughput ratio $(ratio "${A_MIBS[strata]}" "${A_MIBS[pgbr]}")x, lag ratio $(ratio "${A_LAG[strata]}" "${A_LAG[pgbr]}")x; strata's archiver peaked at $ARCHIVER_RSS MiB RSS."
  echo
  echo "## Backups ($LOAD_SECS s of pgbench load between them)"
  echo
  echo "| step | strata s (cpu s, peak MiB) | pgBackRest s (cpu s, peak MiB) | time ratio |"
  echo "|---|---|---|---|"
  for step in full second; do
    echo "| $step | ${WALL[strata_$step]} (${CPU[strata_$step]}, ${RSS[strata_$step]}) | ${WALL[pgbr_$step]} (${CPU[pgbr_$step]}, ${RSS[pgbr_$step]}) | $(ratio "${WALL[strata_$step]}" "${WALL[pgbr_$step]}")x |"
  done
  echo
  echo "| stored | strata MiB | pgBackRest MiB | ratio |"
  echo "|---|---|---|---|"
  echo "| after the full backup (with its WAL) | $(mib "$S_FULL") | $(mib "$B_FULL") | $(ratio "$S_FULL" "$B_FULL")x |"
  echo "| added by the load's WAL and the second backup | $(mib "$S_SECOND") | $(mib "$B_SECOND") | $(ratio "$S_SECOND" "$B_SECOND")x |"
  echo "| added by the second backup alone | $(mib "$S_SECOND_ONLY") | $(mib "$B_SECOND_ONLY") | $(ratio "$S_SECOND_ONLY" "$B_SECOND_ONLY")x |"
  echo
  echo "## Restores until the server is promoted, in phases ($WAL_SEGMENTS segments archived in all)"
  echo
  echo "| restore | phase | strata s | pgBackRest s | ratio |"
  echo "|---|---|---|---|---|"
  for kind in latest pitr; do
    local_s=$(sum2 "${WALL[strata_${kind}_files]}" "${WALL[strata_${kind}_recovery]}")
    local_b=$(sum2 "${WALL[pgbr_${kind}_files]}" "${WALL[pgbr_${kind}_recovery]}")
    fs=$(fetch "${WALL[strata_${kind}_recovery]}" "${WALL[strata_${kind}_floor]}")
    fb=$(fetch "${WALL[pgbr_${kind}_recovery]}" "${WALL[pgbr_${kind}_floor]}")
    echo "| $kind | files laid down (peak MiB: ${RSS[strata_${kind}_files]}, ${RSS[pgbr_${kind}_files]}) | ${WALL[strata_${kind}_files]} | ${WALL[pgbr_${kind}_files]} | $(ratio "${WALL[strata_${kind}_files]}" "${WALL[pgbr_${kind}_files]}")x |"
    echo "| $kind | floor: the same files by cp -a and sync | ${WALL[strata_${kind}_copy]} | ${WALL[pgbr_${kind}_copy]} | |"
    echo "| $kind | recovery (start until promoted) | ${WALL[strata_${kind}_recovery]} | ${WALL[pgbr_${kind}_recovery]} | $(ratio "${WALL[strata_${kind}_recovery]}" "${WALL[pgbr_${kind}_recovery]}")x |"
    echo "| $kind | floor: recovery with the WAL local | ${WALL[strata_${kind}_floor]} | ${WALL[pgbr_${kind}_floor]} | |"
    echo "| $kind | WAL fetch (recovery - floor) | $fs | $fb | |"
    echo "| $kind | **total** | **$local_s** | **$local_b** | **$(ratio "$local_s" "$local_b")x** |"
  done
  echo
  echo "pitr restores the full backup and replays the whole load to the time taken after it;"
  echo "latest restores the second backup. Restored data was compared with the source"
  echo "(pgbench_accounts checksum) after every recovery and every floor."
} | tee "$RESULTS_MD"
