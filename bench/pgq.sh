#!/usr/bin/env bash
# PgQ consumers side by side: strata's Rust consumer (crates/strata-pgq/examples/
# bench_consumer.rs, release build) against the Python pgq.Consumer from PyPI (pgq 3.8,
# skytools 3.10, psycopg2-binary), on the same queue and the same backlog of N events
# written by pgq.logutriga. Both decode every row. Reports events/s and the consumer
# process's CPU time per event (user + sys from /usr/bin/time; the server's CPU is not
# counted). Then the idle-queue lag: commit until a consumer holds the event's batch,
# with `strata pgq ticker` woken by strata's event notifications, against the same
# ticker with notifications off (pgq's own rules alone, as pgqd ticks). Runs a throwaway
# PostgreSQL 15 cluster under target/pgq-bench.
#   N=1000000 bench/pgq.sh
#   LAG_ONLY=1 ROUNDS=20 bench/pgq.sh      # only the lag part
set -euo pipefail
N=${N:-1000000}
PER_TX=${PER_TX:-10000}
ROUNDS=${ROUNDS:-20}
LAG_ONLY=${LAG_ONLY:-}
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

CONN="host=$SOCK port=$PORT user=postgres dbname=bench"
if [ -z "$LAG_ONLY" ]; then
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

# The Python consumer: pgq.Consumer decoding each logutriga row with skytools.db_urldecode,
# as the Rust side decodes it; exits once COUNT events were seen.
cat > "$WORK/pgq_consumer.py" <<'PY'
"""The Python side of bench/pgq.sh: a pgq.Consumer (PyPI pgq 3.8, skytools 3.10) that
decodes each logutriga event with skytools.db_urldecode, as the Rust side decodes it, and
exits once COUNT events were seen.  Usage: python pgq_consumer.py CONFIG.ini COUNT"""

import sys
import time

import pgq
import skytools


class BenchConsumer(pgq.Consumer):
    def __init__(self, args):
        self.want = int(args[-1])
        super().__init__("bench_consumer", "db", args[:-1])
        self.seen = 0
        self.columns = 0
        self.batches = 0
        self.started = None

    def process_batch(self, db, batch_id, ev_list):
        if self.started is None:
            self.started = time.time()
        for ev in ev_list:
            if ev.type and ev.type[:2] in ("I:", "U:", "D:"):
                self.columns += len(skytools.db_urldecode(ev.data))
            self.seen += 1
            ev.tag_done()
        self.batches += 1

    def work(self):
        res = super().work()
        if self.seen >= self.want:
            secs = time.time() - self.started
            print("python: %d events (%d columns decoded) in %d batches, %.2f s, %.0f events/s"
                  % (self.seen, self.columns, self.batches, secs, self.seen / secs), flush=True)
            sys.exit(0)
        return res


if __name__ == "__main__":
    BenchConsumer(sys.argv[1:]).start()
PY

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
measure python "$WORK/venv/bin/python" "$WORK/pgq_consumer.py" "$WORK/python.ini" "$N"

fi

lag() { # label, listen_notify
  cat > "$WORK/ticker-$1.ini" <<INI
[pgqd]
base_connstr = host=$SOCK port=$PORT user=postgres
database_list = bench
logfile = $WORK/ticker-$1.log
listen_notify = $2
INI
  "$ROOT/target/debug/strata" pgq ticker "$WORK/ticker-$1.ini" &
  local ticker=$!
  sleep 1
  psql_b "select pgq.create_queue('lag_$1')" >/dev/null
  (cd "$ROOT" && STRATA_PGQ_DB="$CONN" target/debug/strata pgq notify "lag_$1" on >/dev/null)
  "$ROOT/target/debug/examples/bench_lag" "$CONN" "lag_$1" lagger "$ROUNDS" | sed "s/^/   $1, /"
  kill "$ticker"; wait "$ticker" || true
}
echo "== idle-queue lag ($ROUNDS events of each kind; pgq's default queue settings: ticker_max_lag 3 s, ticker_idle_period 60 s; debug builds)"
(cd "$ROOT" && cargo build -q -p strata && cargo build -q -p strata-pgq --example bench_lag)
lag wakeup 1
lag rules_only 0
if [ -z "$LAG_ONLY" ]; then
echo "== producer cost of strata's event notification trigger (same $N events again)"
produce() {
  local t0; t0=$(date +%s.%N)
  for ((lo = $1; lo < $1 + N; lo += PER_TX)); do
    psql_b "insert into orders select g, 'customer ' || (g % 1000), g * 1.25, now() from generate_series($lo, $((lo + PER_TX - 1))) g" >/dev/null
  done
  echo "$(date +%s.%N) - $t0" | bc
}
psql_b "select pgq.unregister_consumer('bench', 'rust'); select pgq.unregister_consumer('bench', 'python')" >/dev/null
echo "   without the trigger: $(produce $((N + 1))) s"
(cd "$ROOT" && STRATA_PGQ_DB="$CONN" cargo run -q -p strata -- pgq notify bench on)
echo "   with the trigger:    $(produce $((2 * N + 1))) s"
fi
