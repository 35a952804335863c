#!/usr/bin/env bash
# A Londiste cascade in five minutes, on one throwaway PostgreSQL 15: a root, a branch and
# a leaf replicate `orders` while a writer inserts; `status` and `compare` after each step;
# then the branch takes over the root (a switchover), the writer moves to the new root,
# and the old root follows it as a branch. Everything lives in a temporary directory and
# is stopped and removed at the end (KEEP=1 keeps it).
#
#   examples/londiste-demo.sh                  # builds strata (release) first
#   STRATA_BIN=target/debug/strata examples/londiste-demo.sh
#
# Needs PostgreSQL 15 with the pgq, pgq_node and londiste SQL extensions (Debian:
# postgresql-15-pgq3 postgresql-15-pgq-node postgresql-15-londiste-sql). As root, the
# server runs as the postgres user.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pg_bin="${PG_BIN:-/usr/lib/postgresql/15/bin}"

if [ -n "${STRATA_BIN:-}" ]; then
  strata="$(cd "$(dirname "$STRATA_BIN")" && pwd)/$(basename "$STRATA_BIN")"
else
  echo "==> building strata (release)"
  (cd "$here/.." && cargo build --release --quiet -p strata)
  strata="$here/../target/release/strata"
fi

work="$(mktemp -d /tmp/strata-londiste-demo.XXXXXX)"
chmod 755 "$work"
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  as_pg "$pg_bin/pg_ctl" stop -D "$work/pg" -m fast >/dev/null 2>&1 || true
  if [ "${KEEP:-}" = 1 ]; then echo "kept: $work (stopped)"; else rm -rf "$work"; fi
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
dsn() { echo "host=$work port=$port user=postgres dbname=$1"; }
sql() { as_pg "$pg_bin/psql" -X -q -A -t -h "$work" -p "$port" -U postgres -d "$1" -c "$2"; }
londiste() { "$strata" londiste "$work/$1.ini" "${@:2}"; }

step "a PostgreSQL 15 in $work (port $port, socket only)"
if [ "$(id -u)" = 0 ]; then chown postgres "$work"; fi
as_pg "$pg_bin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
as_pg "$pg_bin/pg_ctl" start -D "$work/pg" -w -l "$work/pg.log" \
  -o "-p $port -k $work -c listen_addresses=''" >/dev/null
# The same schema everywhere, as a deploy makes it; the sequence is replicated too, so
# the node that takes over the root goes on with ids above every replicated one.
for db in root branch leaf; do
  sql postgres "CREATE DATABASE $db"
  sql "$db" "CREATE EXTENSION londiste CASCADE" 2>/dev/null
  sql "$db" "CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL, qty int NOT NULL, at timestamptz NOT NULL DEFAULT now())"
done

step "the ticker (strata pgq ticker, pgqd's configuration)"
cat > "$work/pgqd.ini" <<EOF
[pgqd]
base_connstr = host=$work port=$port user=postgres
database_list = root, branch, leaf
ticker_period = 0.2
EOF
"$strata" pgq ticker "$work/pgqd.ini" >"$work/ticker.log" 2>&1 &
pids+=($!)

for node in root branch leaf; do
  cat > "$work/$node.ini" <<EOF
[londiste3]
job_name = ${node}_worker
db = $(dsn "$node")
queue_name = demo
logfile = $work/%(job_name)s.log
pidfile = $work/%(job_name)s.pid
loop_delay = 0.2
EOF
done

step "root -> branch -> leaf"
londiste root create-root root "$(dsn root)"
londiste branch create-branch branch "$(dsn branch)" --provider "$(dsn root)"
londiste leaf create-leaf leaf "$(dsn leaf)" --provider "$(dsn branch)"
for node in root branch leaf; do
  londiste "$node" add-table orders
  londiste "$node" add-seq orders_id_seq
done
for node in root branch leaf; do
  londiste "$node" worker >"$work/$node.out" 2>&1 &
  pids+=($!)
done

writer() { # inserts into $1's orders until stopped
  while true; do
    sql "$1" "INSERT INTO orders (item, qty) SELECT 'item ' || g, g FROM generate_series(1, 20) g" 2>>"$work/writer-$1.log" || true
    sleep 0.05
  done
}
step "a writer inserts into the root, 20 orders every 50 ms"
writer root &
writer_pid=$!
pids+=("$writer_pid")

londiste leaf wait-sync --timeout 120
step "status (from the leaf)"
londiste leaf status
step "compare on the leaf and on the branch (each against its provider, at one sync point)"
londiste leaf compare
londiste branch compare

step "switchover: the branch takes over the root"
kill "$writer_pid"; wait "$writer_pid" 2>/dev/null || true
last_root_id="$(sql root "SELECT coalesce(max(id), 0) FROM orders")"
londiste branch takeover root
writer branch &
writer_pid=$!
pids+=("$writer_pid")
sleep 2
step "a write on the old root is refused now"
if sql root "INSERT INTO orders (item, qty) VALUES ('late', 1)" 2>"$work/refused.log"; then
  echo "the old root took a write after the takeover" >&2
  exit 1
fi
head -n 1 "$work/refused.log"
step "status after the takeover (branch is the root now; root follows it)"
londiste branch status
step "compare on the leaf and on the old root"
londiste leaf compare
londiste root compare

kill "$writer_pid"; wait "$writer_pid" 2>/dev/null || true
londiste leaf wait-root --timeout 60
londiste root wait-root --timeout 60
rows="$(sql branch "SELECT count(*) FROM orders")"
before="$(sql branch "SELECT count(*) FROM orders WHERE id <= $last_root_id")"
[ "$rows" -gt "$before" ] || { echo "no order was written on the new root" >&2; exit 1; }
for node in root leaf; do
  here_rows="$(sql "$node" "SELECT count(*) FROM orders")"
  [ "$here_rows" = "$rows" ] || { echo "$node has $here_rows orders, the new root $rows" >&2; exit 1; }
done
step "done: $rows orders on every node ($((rows - before)) written on the new root), the branch is the root"
