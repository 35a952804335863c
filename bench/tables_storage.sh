#!/usr/bin/env bash
# bench/tables_storage.sh - table archives on an object storage against a local directory,
# in one run: `strata tables run` archives a partition of about N MiB (CSV, zstd 3) to a
# local directory storage and the same rows to an S3 storage (s3s-fs on loopback, the
# emulator the tests use), then `strata load` brings each back into an empty table.
#
#   bench/tables_storage.sh [--mib N] [--runs N]        (defaults 256, 3)
#
# One PostgreSQL 15 cluster (fsync off) under BENCH_DIR (default
# /tmp/strata-tables-storage-bench). Each run fills both partitions again from one copy of
# the rows and times, back to back: archive to local, archive to S3, load from local, load
# from S3. Reports wall seconds, CPU seconds and the largest resident set of each step
# (medians), MiB/s of the partition and S3's share of the local throughput. s3s-fs writes
# to a local disk too, so the difference is the HTTP and request cost, not a network's.
# Needs root (runs PostgreSQL as `postgres`), Debian's postgresql-15, and
# `eval "$(scripts/install-test-servers.sh)"` (STRATA_TEST_S3S_FS). Output: a table on
# stdout and bench/results/tables_storage.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
source "$SCRIPT_DIR/pg_lib.sh"
mib_runs_args 256 "$@"
W=${BENCH_DIR:-/tmp/strata-tables-storage-bench}
RESULTS_MD=${BENCH_RESULTS:-$SCRIPT_DIR/results/tables_storage.md}
[[ -x ${STRATA_TEST_S3S_FS:-} ]] || { echo 'run: eval "$(scripts/install-test-servers.sh)"' >&2; exit 2; }
bench_setup

S3_PID=
stop_all() {
  pg_stop "$W"
  [[ -n $S3_PID ]] && kill "$S3_PID" 2>/dev/null || true
}
trap stop_all EXIT
stop_all
rm -rf "$W"
mkdir -p "$W"/local "$W"/s3/strata
cp "$STRATA_BIN" "$W"/strata
PORT=55443
S3_PORT=55444
"$STRATA_TEST_S3S_FS" --host 127.0.0.1 --port $S3_PORT --access-key bench --secret-key bench-secret-key "$W/s3" >"$W/s3.log" 2>&1 &
S3_PID=$!
cat > "$W"/strata.toml <<EOF
state_dir = "$W/state"
default_storage = "local"
[storages.local]
path = "$W/local"
[storages.s3]
url = "s3://strata/archives"
options = { aws_endpoint = "http://127.0.0.1:$S3_PORT", aws_allow_http = "true", aws_region = "us-east-1", aws_access_key_id = "bench" }
secret_env = { aws_secret_access_key = "BENCH_S3_SECRET" }
EOF
chown -R postgres:postgres "$W"
chmod 755 "$W"

pg_cluster "$W" $PORT "max_wal_size = 4GB"
export STRATA_TABLES_DB="host=$W/sock port=$PORT user=postgres dbname=bench"
strata() { as_pg env STRATA_TABLES_DB="$STRATA_TABLES_DB" BENCH_S3_SECRET=bench-secret-key "$W/strata" --config "$W/strata.toml" "$@"; }

declare -A WALL CPU RSS

echo "==> rows for a partition of about $MIB MiB"
ROWS=$(( MIB * 1024 * 1024 / 110 ))
psql_ -c "CREATE TABLE bench_rows AS SELECT '2024-01-01'::timestamptz + (g % 2678400) * interval '1 second' AS ts, 'host-' || (g % 500) AS host, random() * 100 AS cpu, (random() * 1e10)::bigint AS mem, md5(g::text) AS note FROM generate_series(1, $ROWS) g"
for t in on_local on_s3; do
  psql_ -c "CREATE TABLE $t (LIKE bench_rows) PARTITION BY RANGE (ts)"
  psql_ -c "CREATE TABLE ${t}_2026_11 PARTITION OF $t FOR VALUES FROM ('2026-11-01') TO ('2026-12-01')"
  psql_ -c "CREATE TABLE back_$t (LIKE bench_rows)"
done
strata -q tables setup >/dev/null
strata -q ttl public.on_local:ts archive:local 365d --tag local >/dev/null
strata -q ttl public.on_s3:ts archive:s3 365d --tag s3 >/dev/null
SUM=$(psql_ -c "SELECT md5(string_agg(note, '' ORDER BY note)) FROM bench_rows")
step() { # NAME ARGS...: strata ARGS as postgres, timed as NAME
  local name=$1; shift
  timed "$name" runuser -u postgres -- env HOME=/tmp STRATA_TABLES_DB="$STRATA_TABLES_DB" BENCH_S3_SECRET=bench-secret-key "$W/strata" --config "$W/strata.toml" -q "$@"
}
for run in $(seq "$RUNS"); do
  echo "==> run $run of $RUNS: archive to local, to S3; load from local, from S3"
  for t in on_local on_s3; do
    psql_ -c "CREATE TABLE ${t}_2024_01 PARTITION OF $t FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"
    psql_ -c "INSERT INTO ${t}_2024_01 SELECT * FROM bench_rows"
    psql_ -c "VACUUM ANALYZE ${t}_2024_01"
    psql_ -c "TRUNCATE back_$t"
  done
  PART_BYTES=$(psql_ -c "SELECT pg_total_relation_size('on_local_2024_01')")
  step "archive_local.$run" tables run --tag local --cutoff 2026-11-23T00:00:00Z
  step "archive_s3.$run" tables run --tag s3 --cutoff 2026-11-23T00:00:00Z
  step "load_local.$run" load tables/public/on_local/public.on_local_2024_01 --into back_on_local --from local
  step "load_s3.$run" load tables/public/on_s3/public.on_s3_2024_01 --into back_on_s3 --from s3
  for t in on_local on_s3; do
    [[ $(psql_ -c "SELECT md5(string_agg(note, '' ORDER BY note)) FROM back_$t") == "$SUM" ]] || { echo "back_$t differs" >&2; exit 1; }
  done
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
of_runs() { local -n values=$1; local run; for run in $(seq "$RUNS"); do echo "${values[$2.$run]}"; done; }
tput_() { echo "scale=1; $PART_BYTES / 1048576 / $1" | bc; }
row() { # LABEL NAME [LOCAL NAME]
  local wall share=""
  wall=$(median $(of_runs WALL "$2"))
  [[ -n ${3:-} ]] && share="$(echo "scale=1; 100 * $(median $(of_runs WALL "$3")) / $wall" | bc)"
  echo "| $1 | $wall | $(median $(of_runs CPU "$2")) | $(median $(of_runs RSS "$2")) | $(tput_ "$wall") | $share |"
}
{
  echo "partition: $(echo "scale=1; $PART_BYTES / 1048576" | bc) MiB on disk, $ROWS rows; medians of $RUNS runs"
  echo
  echo "| step | wall s | cpu s | max RSS MiB | MiB/s of partition | S3 % of local throughput |"
  echo "|---|---|---|---|---|---|"
  row "archive to local directory" archive_local
  row "archive to S3 (s3s-fs)" archive_s3 archive_local
  row "load from local directory" load_local
  row "load from S3 (s3s-fs)" load_s3 load_local
} | tee "$RESULTS_MD"
