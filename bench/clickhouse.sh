#!/usr/bin/env bash
# bench/clickhouse.sh - strata's ClickHouse backup and restore against the floor: the same
# frozen parts copied with tar | zstd.
#
#   bench/clickhouse.sh [--mib-per-shard N] [--runs R]   (defaults 1024, 3)
#
# A 2 shards x 2 replicas cluster (Debian's clickhouse-server 18.16 and ZooKeeper, from
# scripts/clickhouse-cluster.sh, under BENCH_DIR, default /tmp/strata-ch-bench) gets a
# ReplicatedMergeTree table of N MiB of parts per shard (rows of a date, ids, a hex
# string and a float: ClickHouse's LZ4 leaves them about a third compressible), loaded
# through one replica of each shard and replicated to the other.
#
# Backup, caches dropped before each: `strata backup` (every server freezes, the four
# frozen trees are read, deduplicated, zstd-3 compressed and encrypted, and the copy is
# removed) against the floor: on each server `FREEZE WITH NAME 'floor'`, then
# `tar -cf - | zstd -3 -T2` of the frozen tree to a file, `sync`, the copy removed.
# Bytes stored: strata's repository against the floor's four files and against its two
# files of one replica per shard (what a tool that knows the replicas would keep).
# Restore, each onto a fresh 2 x 2 cluster, caches dropped: `strata restore` against the
# floor (each shard's file unpacked on its first replica, parts moved to detached/ and
# attached), both until the second replicas hold every row; R runs of each, strata's and
# the floor's in turn, medians reported beside every run's time. Rows and checksums of the
# restored table are checked against the source after every run. Peak RSS beside each time.
# Needs root (drops caches) and the Debian packages clickhouse-server and zookeeperd, and
# about 12 x N MiB of disk while it runs; the clusters, the repository and the floor's
# files are removed when it ends well.
# Output: a table on stdout and bench/results/clickhouse.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
MIB=1024
RUNS=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --mib-per-shard) MIB=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "clickhouse.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
W=${BENCH_DIR:-/tmp/strata-ch-bench}
RESULTS_MD=${BENCH_RESULTS:-$SCRIPT_DIR/results/clickhouse.md}
CLUSTER=$REPO_ROOT/scripts/clickhouse-cluster.sh
[[ -x /usr/sbin/clickhouse-server ]] || { echo "install clickhouse-server and zookeeperd (Debian)" >&2; exit 2; }
if [[ -z ${STRATA_BIN:-} ]]; then
  (cd "$REPO_ROOT" && cargo build --release --quiet --bin strata)
  STRATA_BIN=$REPO_ROOT/target/release/strata
fi

stop_all() {
  for c in source fresh floor; do
    [[ -d $W/$c ]] && timeout 120 "$CLUSTER" stop "$W/$c" >/dev/null 2>&1 || true
  done
}
trap stop_all EXIT
stop_all
rm -rf "$W"
mkdir -p "$W"/floor-files "$W"/state
cp "$STRATA_BIN" "$W"/strata
echo "strata-bench-password" > "$W"/password

# start NAME BASE: a 2 x 2 cluster; sets URLS[] and DATA[] (ch1..ch4).
start() {
  local out
  out=$(timeout 120 "$CLUSTER" start "$W/$1" "$2")
  IFS=, read -r -a URLS <<<"$(sed -n 's/^export STRATA_TEST_CLICKHOUSE_NODES=//p' <<<"$out")"
  IFS=, read -r -a DATA <<<"$(sed -n 's/^export STRATA_TEST_CLICKHOUSE_DATA=//p' <<<"$out")"
}
q() { curl -sS --fail-with-body --max-time 600 --data-binary "$2" "$1/?wait_end_of_query=1"; }
SCHEMA="CREATE TABLE bench.events ON CLUSTER strata (d Date, id UInt64, user UInt32, s String, v Float64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/bench/events', '{replica}') PARTITION BY toYYYYMM(d) ORDER BY (user, d, id)"
create_schema() {
  q "$1" "CREATE DATABASE IF NOT EXISTS bench ON CLUSTER strata" >/dev/null
  q "$1" "$SCHEMA" >/dev/null
}
fingerprint() { q "$1" "SELECT count(), sum(cityHash64(d, id, user, s, v)) FROM bench.events"; }
# Polls until the second replica of each shard holds what its first holds.
replicated() {
  local shard first second
  for shard in 0 2; do
    first=$(fingerprint "${URLS[$shard]}")
    second=""
    for _ in $(seq 1 3000); do
      second=$(fingerprint "${URLS[$((shard + 1))]}")
      [[ $second == "$first" ]] && break
      sleep 0.2
    done
    [[ $second == "$first" ]] || { echo "replica of shard $((shard / 2 + 1)) never caught up" >&2; return 1; }
  done
}
export -f q fingerprint replicated

config() {
  cat > "$W/$1.toml" <<EOF
state_dir = "$W/state-$1"
default_storage = "main"
[password]
file = "$W/password"
[storages.main]
path = "$W/repo"
EOF
  for i in 1 2 3 4; do
    cat >> "$W/$1.toml" <<EOF
[[nodes]]
name = "ch$i"
[nodes.clickhouse]
url = "${URLS[$((i - 1))]}"
path = "${DATA[$((i - 1))]}"
EOF
  done
  printf '[[components]]\nname = "warehouse"\nplugin = "clickhouse"\nnodes = ["ch1", "ch2", "ch3", "ch4"]\n' >> "$W/$1.toml"
}

declare -A WALL CPU RSS
# timed NAME CMD...: wall seconds, CPU seconds and peak RSS (MiB) of CMD, from a state with
# nothing dirty and nothing cached.
timed() {
  local name=$1; shift
  local t0 t1
  sync
  echo 3 > /proc/sys/vm/drop_caches
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$W/time.out" bash -c '"$@"' _ "$@" >/dev/null
  t1=$(date +%s.%N)
  WALL[$name]=$(printf '%.2f' "$(echo "$t1 - $t0" | bc)")
  CPU[$name]=$(awk '{printf "%.1f", $1 + $2}' "$W/time.out")
  RSS[$name]=$(awk '{printf "%.0f", $3 / 1024}' "$W/time.out")
}

# --- the source cluster and its data ----------------------------------------------
start source 21000
SOURCE_URLS=("${URLS[@]}")
SOURCE_DATA=("${DATA[@]}")
create_schema "${URLS[0]}"
echo "loading $MIB MiB of parts per shard"
for shard in 0 2; do
  batch=0
  while :; do
    bytes=$(q "${URLS[$shard]}" "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'bench' AND active")
    (( ${bytes:-0} >= MIB * 1048576 )) && break
    q "${URLS[$shard]}" "INSERT INTO bench.events SELECT toDate('2024-01-01') + intDiv(number, 100000) % 90, $shard * 1000000000 + $batch * 5000000 + number, number % 100000, hex(cityHash64(number, $batch, $shard)), number / 7 FROM numbers(5000000)" >/dev/null
    batch=$((batch + 1))
  done
done
replicated
SOURCE_FP=("$(fingerprint "${URLS[0]}")" "$(fingerprint "${URLS[2]}")")
PART_BYTES=$(q "${URLS[0]}" "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'bench' AND active")
config source
"$W"/strata --config "$W/source.toml" init >/dev/null

# --- backups -----------------------------------------------------------------------
timed backup_strata "$W"/strata --config "$W/source.toml" backup
STRATA_BYTES=$(du -sb "$W/repo" | cut -f1)
floor_backup() {
  local i
  for i in 0 1 2 3; do
    q "${SOURCE_URLS[$i]}" "ALTER TABLE bench.events FREEZE WITH NAME 'floor'" >/dev/null
    tar -C "${SOURCE_DATA[$i]}/shadow/floor" -cf - . | zstd -3 -T2 -q -o "$W/floor-files/ch$((i + 1)).tar.zst"
  done
  sync
  for i in 0 1 2 3; do rm -rf "${SOURCE_DATA[$i]}/shadow/floor"; done
}
# Arrays do not cross into the timed shell: pass them as words.
timed backup_floor bash -c "$(declare -p SOURCE_URLS SOURCE_DATA W); $(declare -f q floor_backup); floor_backup"
FLOOR_BYTES=$(du -cb "$W"/floor-files/*.tar.zst | tail -1 | cut -f1)
FLOOR_ONE_PER_SHARD=$(du -cb "$W"/floor-files/ch1.tar.zst "$W"/floor-files/ch3.tar.zst | tail -1 | cut -f1)
timeout 120 "$CLUSTER" stop "$W/source" >/dev/null

# --- restores ----------------------------------------------------------------------
strata_restore() {
  "$W"/strata --config "$W/fresh.toml" restore "$BACKUP" && replicated
}
floor_restore() {
  local shard dir part
  for shard in 0 2; do
    dir="${DATA[$shard]}/floor-unpacked"
    mkdir -p "$dir"
    zstd -d -q -c "$W/floor-files/ch$((shard + 1)).tar.zst" | tar -C "$dir" -xf -
    for part in "$dir"/data/bench/events/*/; do
      mv "$part" "${DATA[$shard]}/data/bench/events/detached/"
      q "${URLS[$shard]}" "ALTER TABLE bench.events ATTACH PART '$(basename "$part")'" >/dev/null
    done
    rm -rf "$dir"
  done
  replicated
}
# same_as_source WHO: both shards of the cluster at URLS[] hold the source's rows.
same_as_source() {
  local k fp
  for k in 0 1; do
    fp=$(fingerprint "${URLS[$((k * 2))]}")
    [[ $fp == "${SOURCE_FP[$k]}" ]] || { echo "$1's restore of shard $((k + 1)) differs: $fp against ${SOURCE_FP[$k]}" >&2; exit 1; }
  done
}
for run in $(seq 1 "$RUNS"); do
  start fresh 22000
  config fresh
  BACKUP=$("$W"/strata --config "$W/fresh.toml" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["name"])')
  export W BACKUP
  timed "restore_strata_$run" bash -c "$(declare -p URLS); $(declare -f q fingerprint replicated strata_restore); strata_restore"
  same_as_source strata
  timeout 120 "$CLUSTER" stop "$W/fresh" >/dev/null
  rm -rf "$W/fresh" "$W/state-fresh"

  start floor 23000
  create_schema "${URLS[0]}"
  timed "restore_floor_$run" bash -c "$(declare -p URLS DATA W); $(declare -f q fingerprint replicated floor_restore); floor_restore"
  same_as_source "the floor"
  VERSION=$(q "${URLS[0]}" 'SELECT version()')
  timeout 120 "$CLUSTER" stop "$W/floor" >/dev/null
  rm -rf "$W/floor"
  echo "run $run: strata ${WALL[restore_strata_$run]} s, floor ${WALL[restore_floor_$run]} s"
done

# median KIND FIELD: the median over the runs of FIELD (WALL, CPU or RSS) of restore_KIND_N.
median() {
  local -n field=$2
  local n values=()
  for n in $(seq 1 "$RUNS"); do values+=("${field[restore_$1_$n]}"); done
  printf '%s\n' "${values[@]}" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
# each KIND: every run's wall time, in order.
each() {
  local n out=()
  for n in $(seq 1 "$RUNS"); do out+=("${WALL[restore_$1_$n]}"); done
  (IFS=/; echo "${out[*]}")
}
WALL[restore_strata]=$(median strata WALL); CPU[restore_strata]=$(median strata CPU); RSS[restore_strata]=$(median strata RSS)
WALL[restore_floor]=$(median floor WALL); CPU[restore_floor]=$(median floor CPU)

ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
mib() { printf '%.0f' "$(echo "$1 / 1048576" | bc -l)"; }
{
  echo "# ClickHouse: strata against tar | zstd of the frozen parts"
  echo
  echo "Measured $(date -u +%Y-%m-%d) by \`bench/clickhouse.sh --mib-per-shard $MIB --runs $RUNS\`: ClickHouse $VERSION, 2 shards x 2 replicas on one host, $(nproc) cores; $(mib "$PART_BYTES") MiB of parts per replica, caches dropped before every step. Backups: one run each; restores: the median of $RUNS runs each (every run's wall time after it, in order)."
  echo
  echo "| step | strata | floor | strata / floor | strata peak RSS |"
  echo "|---|---|---|---|---|"
  echo "| backup (4 servers frozen and read) | ${WALL[backup_strata]} s (${CPU[backup_strata]} s CPU) | ${WALL[backup_floor]} s (${CPU[backup_floor]} s CPU) | $(ratio "${WALL[backup_strata]}" "${WALL[backup_floor]}") | ${RSS[backup_strata]} MiB |"
  echo "| restore until every replica holds every row | ${WALL[restore_strata]} s (${CPU[restore_strata]} s CPU; $(each strata)) | ${WALL[restore_floor]} s (${CPU[restore_floor]} s CPU; $(each floor)) | $(ratio "${WALL[restore_strata]}" "${WALL[restore_floor]}") | ${RSS[restore_strata]} MiB |"
  echo
  echo "| bytes stored | MiB | per MiB of one replica set's parts |"
  echo "|---|---|---|"
  echo "| strata, all four servers (encrypted) | $(mib "$STRATA_BYTES") | $(ratio "$STRATA_BYTES" "$((PART_BYTES * 2))") |"
  echo "| floor, all four servers | $(mib "$FLOOR_BYTES") | $(ratio "$FLOOR_BYTES" "$((PART_BYTES * 2))") |"
  echo "| floor, one replica per shard | $(mib "$FLOOR_ONE_PER_SHARD") | $(ratio "$FLOOR_ONE_PER_SHARD" "$((PART_BYTES * 2))") |"
} | tee "$RESULTS_MD"
# Four servers' data, two restored clusters, the repository and the floor's files: several
# GiB. Kept only when a step failed (above), for a look.
stop_all
rm -rf "$W"/source "$W"/fresh "$W"/floor "$W"/floor-files "$W"/repo
