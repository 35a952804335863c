#!/usr/bin/env bash
# PgQ consumers side by side: strata's Rust consumer (crates/strata-pgq/examples/
# bench_consumer.rs, release build) against the Python pgq.Consumer from PyPI (pgq 3.8,
# skytools 3.10, psycopg2-binary), on the same queue and the same backlog of N events
# written by pgq.logutriga. Both decode every row. Reports events/s and the consumer
# process's CPU time per event (user + sys from /usr/bin/time; the server's CPU is not
# counted). Runs a throwaway PostgreSQL 15 cluster under target/pgq-bench.
#   N=1000000 bench/pgq.sh
set -euo pipefail
N=${N:-1000000}
PER_TX=${PER_TX:-10000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$ROOT/target/pgq-bench
PGBIN=/usr/lib/postgresql/15/bin
PORT=${PORT:-55439}
SOCK=$WORK/sock

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psql_b() { "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d bench -c "$1"; }

mkdir -p "$WORK"
if [ -f "$WORK/data/postmaster.pid" ]; then as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$WORK/data" >/dev/null || true; fi
rm -rf "$WORK/data" "$SOCK" "$WORK/log"
mkdir -p "$WORK/data" "$SOCK" "$WORK/log"
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK/data" "$SOCK" "$WORK/log" && chmod 755 "$WORK" "$ROOT/target"
as_pg "$PGBIN/initdb" -A trust -U postgres --no-locale -E UTF8 -D "$WORK/data" >/dev/null
as_pg "$PGBIN/pg_ctl" start -w -D "$WORK/data" -l "$WORK/log/server.log" \
  -o "-p $PORT -k $SOCK -c listen_addresses='' -c fsync=off -c shared_buffers=128MB -c max_wal_size=4GB" >/dev/null
trap 'as_pg "$PGBIN/pg_ctl" stop -m fast -D "$WORK/data" >/dev/null' EXIT

"$PGBIN/psql" -X -q -h "$SOCK" -p "$PORT" -U postgres -d postgres -c "create database bench"
psql_b "create extension pgq; select pgq.create_queue('bench');
  create table orders(id bigint primary key, customer text, amount numeric, created timestamptz);
  create trigger l after insert on orders for each row execute procedure pgq.logutriga('bench');
  select pgq.register_consumer('bench', 'rust'); select pgq.register_consumer('bench', 'python');" >/dev/null

echo "== producing $N events ($PER_TX per transaction, one tick each)"
t0=$(date +%s.%N)
for ((lo = 1; lo <= N; lo += PER_TX)); do
  hi=$((lo + PER_TX - 1)); [ $hi -gt "$N" ] && hi=$N
  psql_b "insert into orders select g, 'customer ' || (g % 1000), g * 1.25, now() from generate_series($lo, $hi) g" >/dev/null
  psql_b "select pgq.force_tick('bench'); select pgq.ticker('bench')" >/dev/null
done
echo "   $(echo "$(date +%s.%N) - $t0" | bc) s"

echo "== building the Rust consumer (release)"
(cd "$ROOT" && cargo build -q --release -p strata-pgq --example bench_consumer)
echo "== installing the Python consumer (venv under target/)"
[ -x "$WORK/venv/bin/python" ] || python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q pgq==3.8 skytools==3.10.0 psycopg2-binary

CONN="host=$SOCK port=$PORT user=postgres dbname=bench"
cat > "$WORK/python.ini" <<INI
[bench_consumer]
job_name = python
db = $CONN
queue_name = bench
logfile = $WORK/python.log
pidfile = $WORK/python.pid
INI

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%U %S %e %M" -o "$WORK/$label.time" "$@" | tee "$WORK/$label.out"
  read -r user sys wall rss < "$WORK/$label.time"
  echo "   $label: cpu $(echo "$user + $sys" | bc) s (user $user, sys $sys), wall $wall s, max RSS $((rss / 1024)) MiB," \
       "$(echo "scale=2; ($user + $sys) * 1000000 / $N" | bc) us CPU per event"
}
echo "== Rust consumer"
measure rust "$ROOT/target/release/examples/bench_consumer" "$CONN" bench rust "$N"
echo "== Python consumer"
measure python "$WORK/venv/bin/python" "$ROOT/bench/pgq_consumer.py" "$WORK/python.ini" "$N"
