#!/usr/bin/env bash
# bench/tables.sh - table retention: archive throughput and planning time.
#
#   bench/tables.sh [--mib N] [--partitions N] [--formats csv,parquet] [--runs N]
#                                           (defaults 1024, 10000, both formats, 3 runs)
#
# One PostgreSQL 15 cluster (initdb'd under BENCH_DIR, default /tmp/strata-tables-bench).
# 1. Archive: a partition of about N MiB (generated rows of a metrics-like table) is
#    archived by `strata tables run` (COPY TO STDOUT, zstd 3, parts written to a local
#    storage, read back and verified, then dropped), against the baseline
#    `psql -c "COPY ... TO STDOUT" | zstd -3 > file` of the same partition. The issue's
#    target: strata at least 90% of the baseline's throughput. With parquet in
#    --formats, a copy of the partition in a second table is archived as Parquet too
#    (policy --format parquet), against the same baseline. Use --formats csv to measure
#    a strata from before Parquet (STRATA_BIN=...). Each of --runs runs fills the
#    partitions again from a copy of the rows, then times the baseline and strata back
#    to back; the table gives each run's ratio and the medians (two shared cores make
#    single runs vary by several percent).
# 2. Plan: `strata tables plan` on a table with N partitions (target: under 2 s).
# Needs root (runs PostgreSQL as `postgres`), Debian's postgresql-15 and zstd.
# Output: a table on stdout and bench/results/tables.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
MIB=1024
PARTS=10000
FORMATS=csv,parquet
RUNS=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --mib) MIB=$2; shift 2 ;;
    --partitions) PARTS=$2; shift 2 ;;
    --formats) FORMATS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "tables.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
W=${BENCH_DIR:-/tmp/strata-tables-bench}
RESULTS_MD=${BENCH_RESULTS:-$SCRIPT_DIR/results/tables.md}
command -v zstd >/dev/null || { echo "install zstd" >&2; exit 2; }

source "$SCRIPT_DIR/pg_lib.sh"
bench_setup

stop_all() { pg_stop "$W"; }
trap stop_all EXIT
stop_all
rm -rf "$W"
mkdir -p "$W"/cold
cp "$STRATA_BIN" "$W"/strata
PORT=55442
cat > "$W"/strata.toml <<EOF
state_dir = "$W/state"
default_storage = "cold"
[storages.cold]
path = "$W/cold"
EOF
chown -R postgres:postgres "$W"
chmod 755 "$W"

pg_cluster "$W" $PORT "max_wal_size = 4GB" "max_locks_per_transaction = 256"
export STRATA_TABLES_DB="host=$W/sock port=$PORT user=postgres dbname=bench"
strata() { as_pg env STRATA_TABLES_DB="$STRATA_TABLES_DB" "$W/strata" --config "$W/strata.toml" "$@"; }

declare -A WALL CPU RSS
has_format() { [[ ",$FORMATS," == *",$1,"* ]]; }

echo "==> a partition of about $MIB MiB"
psql_ -c "CREATE TABLE metrics (ts timestamptz NOT NULL, host text, cpu double precision, mem bigint, note text) PARTITION BY RANGE (ts)"
psql_ -c "CREATE TABLE metrics_2026_11 PARTITION OF metrics FOR VALUES FROM ('2026-11-01') TO ('2026-12-01')"
# The same rows archived as Parquet, from a second table.
psql_ -c "CREATE TABLE metrics_pq (LIKE metrics) PARTITION BY RANGE (ts)"
psql_ -c "CREATE TABLE metrics_pq_2026_11 PARTITION OF metrics_pq FOR VALUES FROM ('2026-11-01') TO ('2026-12-01')"
# About 110 bytes per row on disk; kept in `bench_rows` to fill the partitions again for each run.
ROWS=$(( MIB * 1024 * 1024 / 110 ))
psql_ -c "CREATE TABLE bench_rows AS SELECT '2024-01-01'::timestamptz + (g % 2678400) * interval '1 second' AS ts, 'host-' || (g % 500) AS host, random() * 100 AS cpu, (random() * 1e10)::bigint AS mem, md5(g::text) AS note FROM generate_series(1, $ROWS) g"
fill() { # TABLE: its January 2024 partition, holding `bench_rows`
  psql_ -c "CREATE TABLE $1_2024_01 PARTITION OF $1 FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"
  psql_ -c "INSERT INTO $1_2024_01 SELECT * FROM bench_rows"
  psql_ -c "VACUUM ANALYZE $1_2024_01"
}

baseline() {
  as_pg "$PGBIN/psql" -X -q -h "$W/sock" -p $PORT -U postgres -d bench \
    -c "COPY (SELECT * FROM metrics_2024_01) TO STDOUT (FORMAT csv, HEADER)" | zstd -3 -q -T1 > "$W/baseline.csv.zst"
}
export -f as_pg baseline
export W PGBIN PORT
strata -q tables setup >/dev/null
strata -q ttl public.metrics:ts archive:cold 365d --tag csv >/dev/null
if has_format parquet; then
  strata -q ttl public.metrics_pq:ts archive:cold 365d --format parquet --tag parquet >/dev/null
fi
run_archive() { # NAME TAG: `strata tables run` of the policies tagged TAG, timed as NAME
  timed "$1" runuser -u postgres -- env HOME=/tmp STRATA_TABLES_DB="$STRATA_TABLES_DB" "$W/strata" --config "$W/strata.toml" -q tables run --tag "$2" --cutoff 2026-11-23T00:00:00Z
}
gone() { [[ $(psql_ -c "SELECT count(*) FROM pg_class WHERE relname = '$1'") == 0 ]] || { echo "$1 was not archived" >&2; exit 1; }; }
for run in $(seq "$RUNS"); do
  echo "==> run $run of $RUNS: fill, COPY TO STDOUT | zstd -3, strata tables run (archive, verify, drop)"
  fill metrics
  has_format parquet && fill metrics_pq
  PART_BYTES=$(psql_ -c "SELECT pg_total_relation_size('metrics_2024_01')")
  timed "baseline.$run" bash -c baseline
  BASE_STORED=$(stat -c %s "$W/baseline.csv.zst")
  if has_format csv; then
    rm -rf "$W/cold/tables/public/metrics"
    run_archive "csv.$run" csv
    STRATA_STORED=$(du -sb "$W/cold/tables/public/metrics" | cut -f1)
    gone metrics_2024_01
  else
    psql_ -c "DROP TABLE metrics_2024_01"
  fi
  if has_format parquet; then
    rm -rf "$W/cold/tables/public/metrics_pq"
    run_archive "parquet.$run" parquet
    PQ_STORED=$(du -sb "$W/cold/tables/public/metrics_pq" | cut -f1)
    gone metrics_pq_2024_01
  fi
done

echo "==> $PARTS partitions, then tables plan"
psql_ -c "CREATE TABLE many (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts)"
psql_ -c "DO \$\$ BEGIN FOR i IN 0..$((PARTS - 1)) LOOP EXECUTE format('CREATE TABLE many_%s PARTITION OF many FOR VALUES FROM (%L) TO (%L)', i, timestamptz '2000-01-01' + i * interval '1 day', timestamptz '2000-01-01' + (i + 1) * interval '1 day'); END LOOP; END \$\$"
strata -q ttl public.many:ts delete 90d >/dev/null
timed plan runuser -u postgres -- env HOME=/tmp STRATA_TABLES_DB="$STRATA_TABLES_DB" "$W/strata" --config "$W/strata.toml" tables plan --cutoff 2026-11-23T00:00:00Z

mib() { echo "scale=1; $1 / 1048576" | bc; }
tput_() { echo "scale=1; $1 / 1048576 / $2" | bc; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
of_runs() { # ARRAY NAME: the values of every run
  local -n values=$1
  local run
  for run in $(seq "$RUNS"); do echo "${values[$2.$run]}"; done
}
ratios() { # NAME: per run, 100 * baseline wall / NAME's wall
  local run
  for run in $(seq "$RUNS"); do echo "scale=1; 100 * ${WALL[baseline.$run]} / ${WALL[$1.$run]}" | bc; done
}
row() { # LABEL NAME STORED
  local wall
  wall=$(median $(of_runs WALL "$2"))
  echo "| $1 | $wall | $(median $(of_runs CPU "$2")) | $(median $(of_runs RSS "$2")) | $(tput_ "$PART_BYTES" "$wall") | $(median $(ratios "$2")) ($(ratios "$2" | paste -sd ' ')) | $(mib "$3") |"
}
{
  echo "# strata table retention (partition of $(mib "$PART_BYTES") MiB on disk, $ROWS rows; plan over $PARTS partitions)"
  echo
  echo "$(date -u +%F), $(nproc) cores, strata release build, medians of $RUNS runs."
  echo
  echo "| step | wall s | cpu s | max RSS MiB | MiB/s of partition | % of baseline (each run) | stored MiB |"
  echo "|---|---|---|---|---|---|---|"
  echo "| COPY TO STDOUT \| zstd -3 > file | $(median $(of_runs WALL baseline)) | $(median $(of_runs CPU baseline)) | $(median $(of_runs RSS baseline)) | $(tput_ "$PART_BYTES" "$(median $(of_runs WALL baseline))") | 100 | $(mib "$BASE_STORED") |"
  if has_format csv; then
    row "strata tables run, csv (archive, read back, verify, drop)" csv "$STRATA_STORED"
  fi
  if has_format parquet; then
    row "strata tables run, parquet (archive, read back and decode, verify, drop)" parquet "$PQ_STORED"
  fi
  echo
  echo "% of baseline: strata's throughput against the baseline's on the same rows in the same run (target: at least 90%)."
  echo "CPU counts the measured command's processes (psql and zstd; strata), not the PostgreSQL server's."
  echo
  echo "| step | wall s |"
  echo "|---|---|"
  echo "| strata tables plan, $PARTS partitions | ${WALL[plan]} |"
} | tee "$RESULTS_MD"
