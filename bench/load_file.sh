#!/usr/bin/env bash
# bench/load_file.sh - `strata load --file` against psql's `\copy` on the same CSV, in one
# run: a CSV of about N MiB (default 1 GiB) is generated once, then each run loads it into
# a fresh table with `psql -c "\copy T FROM FILE CSV HEADER"` and with
# `strata load --file FILE --into T` (the order alternates between runs).
#
#   bench/load_file.sh [--mib N] [--runs N]        (defaults 1024, 3)
#
# The CSV is written by PostgreSQL itself (`COPY (SELECT ... FROM generate_series) TO
# STDOUT CSV HEADER`: a timestamptz, a short text, a double, a bigint and a 32-character
# note, about 83 bytes a row) into BENCH_DIR (default /tmp/strata-load-file-bench). Both
# tools load into a plain (logged) table of the same five columns on one PostgreSQL 15
# cluster with fsync off, created fresh before each load. Reports wall seconds, CPU
# seconds of the client, the client's largest resident set, MiB/s of the file (medians),
# and strata's throughput as a share of `\copy`'s. strata also loads the same CSV
# compressed once by `gzip -6` and by `zstd -3` (throughput counted on the CSV's size).
# Needs root (runs PostgreSQL as `postgres`), Debian's postgresql-15, gzip and zstd.
# Output: a table on stdout and bench/results/load_file.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
source "$SCRIPT_DIR/pg_lib.sh"
mib_runs_args 1024 "$@"
W=${BENCH_DIR:-/tmp/strata-load-file-bench}
RESULTS_MD=${BENCH_RESULTS:-$SCRIPT_DIR/results/load_file.md}
bench_setup
command -v zstd >/dev/null || { echo "install zstd" >&2; exit 2; }

stop_all() {
  pg_stop "$W"
  rm -f "$W"/strata "$W"/data.csv "$W"/data.csv.gz "$W"/data.csv.zst
}
trap stop_all EXIT
stop_all
rm -rf "$W"
mkdir -p "$W"
cp "$STRATA_BIN" "$W"/strata
touch "$W"/strata.toml
chown -R postgres:postgres "$W"
chmod 755 "$W"

PORT=55453
pg_cluster "$W" $PORT "max_wal_size = 8GB"
DB="host=$W/sock port=$PORT user=postgres dbname=bench"

ROWS=$(( MIB * 1024 * 1024 / 83 ))
echo "==> a CSV of about $MIB MiB ($ROWS rows), written by PostgreSQL"
psql_ -c "COPY (SELECT '2024-01-01'::timestamptz + g * interval '1 second' AS ts, 'host-' || (g % 500) AS host, round((random() * 100)::numeric, 4)::float8 AS cpu, (random() * 1e10)::bigint AS mem, md5(g::text) AS note FROM generate_series(1, $ROWS) g) TO STDOUT (FORMAT csv, HEADER)" > "$W/data.csv"
chown postgres "$W/data.csv"
FILE_BYTES=$(stat -c %s "$W/data.csv")
gzip -6 -k "$W/data.csv"
zstd -q -3 -k "$W/data.csv" -o "$W/data.csv.zst"
chown postgres "$W/data.csv.gz" "$W/data.csv.zst"
TABLE="(ts timestamptz, host text, cpu double precision, mem bigint, note text)"

declare -A WALL CPU RSS
load_copy() {
  psql_ -c "SET client_min_messages = warning; DROP TABLE IF EXISTS t; CREATE TABLE t $TABLE; CHECKPOINT"
  timed "copy.$1" runuser -u postgres -- env HOME=/tmp "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$W/sock" -p $PORT -U postgres -d bench -c "\\copy t FROM '$W/data.csv' CSV HEADER"
  [[ $(psql_ -c "SELECT count(*) FROM t") == "$ROWS" ]] || { echo "\\copy loaded a different count" >&2; exit 1; }
}
load_strata() { # RUN [SUFFIX]: data.csv, or data.csv.SUFFIX compressed
  local name=strata${2:+.$2}
  psql_ -c "SET client_min_messages = warning; DROP TABLE IF EXISTS t; CREATE TABLE t $TABLE; CHECKPOINT"
  timed "$name.$1" runuser -u postgres -- env HOME=/tmp STRATA_TABLES_DB="$DB" "$W/strata" --config "$W/strata.toml" -q load --file "$W/data.csv${2:+.$2}" --into public.t
  [[ $(psql_ -c "SELECT count(*) FROM t") == "$ROWS" ]] || { echo "strata loaded a different count from data.csv${2:+.$2}" >&2; exit 1; }
}
for run in $(seq "$RUNS"); do
  echo "==> run $run of $RUNS"
  if (( run % 2 )); then load_copy "$run"; load_strata "$run"; else load_strata "$run"; load_copy "$run"; fi
  load_strata "$run" gz
  load_strata "$run" zst
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
of_runs() { local -n values=$1; local run; for run in $(seq "$RUNS"); do echo "${values[$2.$run]}"; done; }
tput_() { echo "scale=1; $FILE_BYTES / 1048576 / $1" | bc; }
COPY_WALL=$(median $(of_runs WALL copy))
STRATA_WALL=$(median $(of_runs WALL strata))
row() { # LABEL NAME WALL SHARE
  echo "| $1 | $3 | $(median $(of_runs CPU "$2")) | $(median $(of_runs RSS "$2")) | $(tput_ "$3") | $4 |"
}
{
  echo "file: $(echo "scale=1; $FILE_BYTES / 1048576" | bc) MiB of CSV, $ROWS rows; medians of $RUNS runs"
  echo
  echo "| load | wall s | client cpu s | client max RSS MiB | MiB/s of the file | % of \\copy's throughput |"
  echo "|---|---|---|---|---|---|"
  row '`psql -c "\copy t FROM FILE CSV HEADER"`' copy "$COPY_WALL" 100
  row '`strata load --file FILE --into t`' strata "$STRATA_WALL" "$(echo "scale=1; 100 * $COPY_WALL / $STRATA_WALL" | bc)"
  for suffix in gz zst; do
    wall=$(median $(of_runs WALL "strata.$suffix"))
    row "\`strata load --file FILE.$suffix --into t\`" "strata.$suffix" "$wall" "$(echo "scale=1; 100 * $COPY_WALL / $wall" | bc)"
  done
} | tee "$RESULTS_MD"
