#!/usr/bin/env bash
# bench/londiste.sh - replay of a backlog by the strata Londiste worker against Python
# Londiste (PyPI 3.12), on the same root queue, in one run.
#
#   bench/londiste.sh [--events N] [--copy-rows N]
#
# --events: the backlog replayed (default 300000: 2/3 inserts, 1/3 updates).
# --copy-rows: then a new table of that many rows (default 1000000) is added on each leaf
# with its worker running alone, timed until the table is `ok` (copy and catch-up), with the
# peak RSS of the worker and its copy processes.
#
# Then the idle-queue lag: the psql ticker is replaced by `strata pgq ticker` (which
# announces its ticks), both workers run with Python's default `loop_delay = 1`, and one
# row at a time is inserted on the root and timed until it is visible on each leaf.
#
# One PostgreSQL 15 cluster (fsync off) with a root database and two leaves. Leaf `ls` is
# replayed by `strata londiste` (release build), leaf `lp` by Python Londiste
# (target/test-servers/venv, installed by scripts/install-test-servers.sh). The root's queue
# is ticked every 100 ms. With both workers stopped, N row events go into the root in
# transactions of 1000; then each worker is started alone and timed until its leaf's
# count(*) and sum(n) equal the root's. Needs root, Debian postgresql-15, pgq3, pgq-node
# and londiste-sql. Output: a table on stdout.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
EVENTS=300000
COPY_ROWS=1000000
while [[ $# -gt 0 ]]; do
  case $1 in
    --events) EVENTS=$2; shift 2 ;;
    --copy-rows) COPY_ROWS=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "londiste.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
W=${BENCH_DIR:-/tmp/strata-londiste-bench}
PGBIN=/usr/lib/postgresql/15/bin
PY_LONDISTE=${STRATA_LONDISTE_PYTHON:-$REPO_ROOT/target/test-servers/venv/bin/londiste}
[[ -x $PY_LONDISTE ]] || { echo "run scripts/install-test-servers.sh (Python Londiste)" >&2; exit 2; }
if [[ -z ${STRATA_BIN:-} ]]; then
  (cd "$REPO_ROOT" && cargo build --release --quiet --bin strata)
  STRATA_BIN=$REPO_ROOT/target/release/strata
fi
PORT=55447
as_pg() { runuser -u postgres -- env HOME=/tmp "$@"; }
stop_all() {
  jobs -p | xargs -r kill 2>/dev/null || true
  # The workers and the ticker run under runuser: stop them by their files.
  pkill -f "$W/(strata|[a-z]+\.ini)" 2>/dev/null || true
  [[ -f $W/pg/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$W/pg" >/dev/null 2>&1 || true
}
trap stop_all EXIT
stop_all
rm -rf "$W"; mkdir -p "$W/sock"
cp "$STRATA_BIN" "$W/strata"
chown -R postgres:postgres "$W"; chmod 755 "$W"
as_pg "$PGBIN/initdb" -A trust -U postgres --no-locale -E UTF8 -D "$W/pg" >/dev/null
printf "port = $PORT\nunix_socket_directories = '$W/sock'\nlisten_addresses = ''\nfsync = off\nshared_buffers = 256MB\n" >> "$W/pg/postgresql.conf"
as_pg "$PGBIN/pg_ctl" start -w -D "$W/pg" -l "$W/pg.log" >/dev/null
psql_() { local db=$1; shift; as_pg "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -h "$W/sock" -p $PORT -U postgres -d "$db" "$@"; }
dsn() { echo "host=$W/sock port=$PORT user=postgres dbname=$1"; }
for db in root ls lp; do
  psql_ postgres -c "CREATE DATABASE $db"
  psql_ $db -c "SET client_min_messages = warning" -c "CREATE EXTENSION londiste CASCADE" -c "CREATE TABLE big (id bigint PRIMARY KEY, val text, n int, ts timestamptz)"
done
ini() {
  printf "[londiste]\njob_name = %s_worker\ndb = %s\nqueue_name = bench\nlogfile = %s/%s.log\npidfile = %s/%s.pid\nloop_delay = 0.1\n" \
    "$1" "$(dsn "$1")" "$W" "$1" "$W" "$1" > "$W/$1.ini"
  chown postgres "$W/$1.ini"
}
for db in root ls lp; do ini $db; done
strata_() { as_pg "$W/strata" londiste "$@"; }
py_() { "$PY_LONDISTE" "$@"; }
strata_ "$W/root.ini" create-root root "$(dsn root)" >/dev/null
strata_ "$W/ls.ini" create-leaf ls "$(dsn ls)" --provider "$(dsn root)" >/dev/null
py_ "$W/lp.ini" create-leaf lp "$(dsn lp)" --provider="$(dsn root)" >/dev/null 2>&1
psql_ root -c "SELECT pgq.set_queue_config('bench', 'ticker_max_lag', '100 ms')" -c "SELECT pgq.set_queue_config('bench', 'ticker_idle_period', '1 s')" >/dev/null
# The ticker: one session ticking every 100 ms.
( for _ in $(seq 1 100000); do echo "SELECT pgq.ticker(); SELECT pg_sleep(0.1);"; done ) \
  | as_pg "$PGBIN/psql" -X -q -h "$W/sock" -p $PORT -U postgres -d root >/dev/null 2>&1 &
strata_ "$W/root.ini" add-table big >/dev/null
strata_ "$W/ls.ini" add-table big >/dev/null
py_ "$W/lp.ini" add-table big >/dev/null 2>&1
state() { psql_ "$1" -c "SELECT coalesce(max(merge_state), '') FROM londiste.table_info WHERE table_name = 'public.${2:-big}' AND local"; }
wait_ok() { local db=$1; for _ in $(seq 1 600); do [[ $(state "$db" "${2:-big}") == ok ]] && return 0; sleep 0.1; done; echo "$db never reached ok" >&2; exit 1; }
# Empty tables to ok with each worker, then stop them.
strata_ "$W/ls.ini" worker >/dev/null 2>&1 & SW=$!
py_ "$W/lp.ini" worker >/dev/null 2>&1 & PW=$!
wait_ok ls; wait_ok lp
stop_worker() { pkill -f "$W/$1.ini worker" 2>/dev/null || true; while pgrep -f "$W/$1.ini worker" >/dev/null; do sleep 0.1; done; }
stop_worker ls; stop_worker lp; wait $SW $PW 2>/dev/null || true
echo "==> a backlog of $EVENTS events on the root"
INS=$(( EVENTS * 2 / 3 / 1000 )); UPD=$(( EVENTS / 3 / 1000 ))
for t in $(seq 0 $((INS - 1))); do
  echo "INSERT INTO big SELECT g, md5(g::text), g % 1000, now() FROM generate_series($((t * 1000 + 1)), $(((t + 1) * 1000))) g;"
done | psql_ root
for t in $(seq 0 $((UPD - 1))); do
  echo "UPDATE big SET n = n + 1, val = val || 'x' WHERE id > $((t * 1000)) AND id <= $(((t + 1) * 1000));"
done | psql_ root
TARGET=$(psql_ root -c "SELECT count(*) || ' ' || sum(n) FROM big")
sleep 1
timed_replay() { # DB CMD...
  local db=$1; shift
  local t0; t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 & local pid=$!
  until [[ $(psql_ "$db" -c "SELECT count(*) || ' ' || coalesce(sum(n), 0) FROM big") == "$TARGET" ]]; do sleep 0.05; done
  local t1; t1=$(date +%s.%N)
  local peak; peak=$(peak_kib "$db")
  stop_worker "$db"; wait $pid 2>/dev/null || true
  echo "$(echo "$t1 - $t0" | bc) $peak"
}
# The highest peak resident set (VmHWM, KiB) among the node's processes (its worker, and
# Python's copy process).
peak_kib() {
  local m=0 p v
  for p in $(pgrep -f "$W/$1.ini"); do
    v=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    [[ -n $v && $v -gt $m ]] && m=$v
  done
  echo "$m"
}
# Nothing may have been replayed yet.
[[ $(psql_ ls -c "SELECT count(*) FROM big") == 0 && $(psql_ lp -c "SELECT count(*) FROM big") == 0 ]] \
  || { echo "a worker was still running during the load" >&2; exit 1; }
read -r S SR < <(timed_replay ls strata_ "$W/ls.ini" worker)
read -r P PR < <(timed_replay lp py_ "$W/lp.ini" worker)
# compared TITLE UNIT COUNT STRATA_S STRATA_KIB PYTHON_S PYTHON_KIB: the two workers' table.
compared() {
  echo
  echo "| $1 | wall s | $2/s | peak RSS MiB |"
  echo "|---|---|---|---|"
  printf "| strata londiste worker (release) | %.2f | %.0f | %.0f |\n" "$4" "$(echo "$3 / $4" | bc -l)" "$(echo "$5 / 1024" | bc -l)"
  printf "| Python Londiste 3.12 | %.2f | %.0f | %.0f |\n" "$6" "$(echo "$3 / $6" | bc -l)" "$(echo "$7 / 1024" | bc -l)"
}
compared "replay of $EVENTS events" events "$EVENTS" "$S" "$SR" "$P" "$PR"
printf "\nstrata replays %.1fx the events per second of Python Londiste (target: 3x).\n" "$(echo "$P / $S" | bc -l)"

echo
echo "==> initial copy of a $COPY_ROWS-row table, each worker alone"
for db in root ls lp; do psql_ $db -c "CREATE TABLE cp (id bigint PRIMARY KEY, val text, n int, ts timestamptz)"; done
psql_ root -c "INSERT INTO cp SELECT g, md5(g::text), g % 1000, now() FROM generate_series(1, $COPY_ROWS) g"
strata_ "$W/root.ini" add-table cp >/dev/null
timed_copy() { # DB ADD-TABLE-CMD... -- WORKER-CMD...
  local db=$1; shift
  local add=() ; while [[ $1 != -- ]]; do add+=("$1"); shift; done; shift
  "$@" >/dev/null 2>&1 & local pid=$!
  sleep 2
  local t0; t0=$(date +%s.%N)
  "${add[@]}" >/dev/null 2>&1
  local n=0
  until [[ $(state "$db" cp) == ok ]]; do
    n=$((n + 1)); [[ $n -lt 12000 ]] || { echo "$db: cp not ok in 10 minutes" >&2; exit 1; }
    sleep 0.05
  done
  local t1; t1=$(date +%s.%N)
  local peak; peak=$(peak_kib "$db")
  stop_worker "$db"; wait $pid 2>/dev/null || true
  [[ $(psql_ "$db" -c "SELECT count(*) FROM cp") == "$COPY_ROWS" ]] || { echo "$db: copy incomplete" >&2; exit 1; }
  echo "$(echo "$t1 - $t0" | bc) $peak"
}
read -r SC SCR < <(timed_copy ls strata_ "$W/ls.ini" add-table cp -- strata_ "$W/ls.ini" worker)
read -r PC PCR < <(timed_copy lp py_ "$W/lp.ini" add-table cp -- py_ "$W/lp.ini" worker)
compared "add-table of $COPY_ROWS rows until ok" rows "$COPY_ROWS" "$SC" "$SCR" "$PC" "$PCR"
printf "\nstrata copies %.1fx as fast as Python Londiste.\n" "$(echo "$PC / $SC" | bc -l)"

echo
echo "==> idle-queue lag with strata's ticker and loop_delay = 1 (Python's default)"
pkill -f "pg_sleep(0.1)" 2>/dev/null || true
jobs -p | xargs -r kill 2>/dev/null || true
sed -i 's/^loop_delay = .*/loop_delay = 1/' "$W/ls.ini" "$W/lp.ini"
printf "[pgqd]\nbase_connstr = host=%s port=%s user=postgres\ndatabase_list = root\nticker_period = 1\nlogfile = %s/ticker.log\n" \
  "$W/sock" "$PORT" "$W" > "$W/pgqd.ini"
chown postgres "$W/pgqd.ini"
# Event notifications wake the ticker on an insert; its tick announcement wakes the worker.
as_pg "$W/strata" pgq notify --db "$(dsn root)" bench on >/dev/null
as_pg "$W/strata" pgq ticker "$W/pgqd.ini" >/dev/null 2>&1 &
strata_ "$W/ls.ini" worker >/dev/null 2>&1 &
py_ "$W/lp.ini" worker >/dev/null 2>&1 &
sleep 5
lag_of() { # ID: insert row ID on the root, seconds until it is on ls and on lp
  local t0 tl tp; t0=$(date +%s.%N); tl=; tp=
  psql_ root -c "INSERT INTO big VALUES ($1, 'lag', 0, now())"
  while [[ -z $tl || -z $tp ]]; do
    [[ -z $tl && $(psql_ ls -c "SELECT count(*) FROM big WHERE id = $1") == 1 ]] && tl=$(date +%s.%N)
    [[ -z $tp && $(psql_ lp -c "SELECT count(*) FROM big WHERE id = $1") == 1 ]] && tp=$(date +%s.%N)
    sleep 0.01
  done
  echo "$(echo "$tl - $t0" | bc) $(echo "$tp - $t0" | bc)"
}
SL=0; PL=0; N=10
for i in $(seq 1 $N); do
  read -r a b < <(lag_of $((900000000 + i)))
  SL=$(echo "$SL + $a" | bc); PL=$(echo "$PL + $b" | bc)
  sleep 1.3
done
echo
echo "| idle-queue lag, mean of $N | strata worker | Python Londiste 3.12 |"
echo "|---|---|---|"
printf "| root commit until visible on the leaf | %.2f s | %.2f s |\n" "$(echo "$SL / $N" | bc -l)" "$(echo "$PL / $N" | bc -l)"
