#!/usr/bin/env bash
# bench/wal_archiver.sh - what archiving a run of WAL segments costs per segment, pushed
# one `wal-push` process at a time as PostgreSQL's archiver does, without and with the
# local WAL archiver (`strata wal archiver`), in an empty repository and in one of BLOBS
# fabricated blobs (index objects of packs that do not exist, written by the example
# `fabricate_index`): the per-segment cost must not grow with the repository.
#
#   bench/wal_archiver.sh [BLOBS] [SEGMENTS] [WORKDIR]   (default 10000000, 64, /tmp/strata-walarch)
#
# Each segment is 16 MiB of random bytes (behind a zero page magic) with a `.ready` file; after each successful
# `wal-push` the `.ready` is renamed `.done`, as PostgreSQL does. Settings are strata's
# defaults (wal_push_ahead 8, archiver_batch 16). Reports the wall time of the whole run,
# seconds per segment, and the archiver's peak RSS (anonymous and file-backed) and its
# anonymous RSS a second after the last push (what it holds between batches).
#
# Needs release builds: cargo build --release -p strata --bin strata &&
#                       cargo build --release -p strata-repo --example fabricate_index
set -euo pipefail
BLOBS=${1:-10000000}
SEGMENTS=${2:-64}
W=${3:-/tmp/strata-walarch}
BIN=${STRATA_BIN:-$PWD/target/release/strata}
FAB=${FABRICATE_BIN:-$PWD/target/release/examples/fabricate_index}
export STRATA_PASSWORD=walarch-bench
rm -rf "$W"; mkdir -p "$W"
source "$(dirname "${BASH_SOURCE[0]}")/measure.sh"

# segments DIR LOG: SEGMENTS fresh segments of WAL file LOG (hex), marked ready in DIR/pg_wal.
segments() {
  rm -rf "$1/pg_wal"; mkdir -p "$1/pg_wal/archive_status"
  for i in $(seq 1 "$SEGMENTS"); do
    name=$(printf '00000001%08X%08X' "$2" "$i")
    # Random bytes behind a zero page magic: not taken for a PostgreSQL page header (whose
    # system identifier would pin the archive to a cluster).
    { head -c 4 /dev/zero; head -c $(((16 << 20) - 4)) /dev/urandom; } > "$1/pg_wal/$name"
    touch "$1/pg_wal/archive_status/$name.ready"
  done
}

# sample_rss PID: the peak RssAnon and RssFile of PID until it exits.
sample_rss() {
  local anon=0 file=0 a f
  while kill -0 "$1" 2>/dev/null; do
    a=$(awk '/^RssAnon/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
    f=$(awk '/^RssFile/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
    (( ${a:-0} > anon )) && anon=${a:-0}
    (( ${f:-0} > file )) && file=${f:-0}
    sleep 0.05
  done
  printf '%.0f MiB anon, %.0f MiB file' "$(echo "$anon / 1024" | bc -l)" "$(echo "$file / 1024" | bc -l)"
}

# push_all DIR: wal-push every ready segment in order, as PostgreSQL would.
push_all() {
  local dir=$1 name
  for ready in $(ls "$dir/pg_wal/archive_status" | grep '\.ready$' | sort); do
    name=${ready%.ready}
    [[ -e $dir/pg_wal/archive_status/$ready ]] || continue
    (cd "$dir" && "$BIN" -q wal-push "pg_wal/$name")
    mv "$dir/pg_wal/archive_status/$ready" "$dir/pg_wal/archive_status/$name.done"
  done
}

printf '| repository | how | %s segments | per segment | archiver peak RSS | archiver RSS after |\n|---|---|---|---|---|---|\n' "$SEGMENTS" > "$W/table.md"
for kind in empty large; do
  export STRATA_REPO=$W/$kind/repo STRATA_STATE_DIR=$W/$kind/state
  "$BIN" init >/dev/null
  if [[ $kind == large ]]; then
    measure "fabricate $BLOBS blobs" "$FAB" "$STRATA_REPO" "$BLOBS" >/dev/null
  fi
  # Both ways start from a local index table that exists (a host that archived before):
  # one push, untimed.
  SEGMENTS=1 segments "$W/$kind/warm" 0
  (cd "$W/$kind/warm" && "$BIN" -q wal-push pg_wal/000000010000000000000001)
  log=1
  for how in one-shot archiver; do
    segments "$W/$kind" "$log"; log=$((log + 1))
    if [[ $how == archiver ]]; then
      "$BIN" wal archiver 2> "$W/$kind/archiver.log" &
      archiver=$!
      sample_rss "$archiver" > "$W/$kind/archiver.rss" &
      sampler=$!
      until "$BIN" -q wal status >/dev/null 2>&1; do sleep 0.1; done
    fi
    start=$(date +%s.%N)
    push_all "$W/$kind"
    end=$(date +%s.%N)
    rss="-" rest="-"
    if [[ $how == archiver ]]; then
      sleep 1
      rest="$(awk '/^RssAnon/{printf "%.0f MiB anon", $2 / 1024}' "/proc/$archiver/status")"
      kill -TERM "$archiver"; wait "$archiver" || true
      wait "$sampler" 2>/dev/null || true
      rss=$(cat "$W/$kind/archiver.rss")
    fi
    secs=$(echo "$end - $start" | bc -l)
    per=$(echo "$secs / $SEGMENTS" | bc -l)
    printf '| %s | %s | %.1f s | %.3f s | %s | %s |\n' "$( [[ $kind == large ]] && echo "$BLOBS blobs" || echo empty)" "$how" "$secs" "$per" "$rss" "$rest" | tee -a "$W/table.md"
  done
done
cat "$W/table.md"
