#!/usr/bin/env bash
# bench/wal_archiver.sh - segments per second archived one `archive_command` at a time, as
# PostgreSQL's archiver calls it, three ways on the same segments:
#   archiver  `strata wal-push` handing each segment to `strata wal archiver`;
#   one-shot  `strata wal-push` with no archiver listening (the fallback: each call is a
#             process that archives by itself, with up to wal_push_ahead ready segments
#             after its own, and answers the segments archived ahead from its receipts);
#             twice: with a fresh state directory, and with ALIVE (env, default 50000)
#             alive files of ended processes in it, as a day of one-shot pushes leaves;
#   pgBackRest `pgbackrest archive-push` without archive-async (a process per segment).
# Each way gets its own fresh repository and its own links to the same SEGMENTS files.
# With BLOBS > 0, the two strata ways run again in one repository of BLOBS fabricated
# blobs (index objects of packs that do not exist, written by the example
# `fabricate_index`; fresh random segments per way there): the per-segment cost must not
# grow with the repository.
#
#   bench/wal_archiver.sh [BLOBS] [SEGMENTS] [WORKDIR]   (default 0, 64, /tmp/strata-walarch)
#
# Each segment is 16 MiB of random bytes (behind a zero page magic) with a `.ready` file;
# after each successful push the `.ready` is renamed `.done`, as PostgreSQL does. Settings
# are strata's defaults (wal_push_ahead 8, archiver_batch 16), encrypted; pgBackRest with
# zstd level 3 and aes-256-cbc, archive-header-check off (the segments are not real WAL).
# Reports the wall time of the whole run, segments per second, the peak RSS of the
# largest push process (GNU time's maximum resident set), and the archiver's peak RSS
# (anonymous and file-backed, sampled) and its anonymous RSS a second after the last push.
#
# Needs release builds: cargo build --release -p strata --bin strata (and, with BLOBS > 0,
# cargo build --release -p strata-repo --example fabricate_index). Installs pgbackrest
# (apt-get) when it is missing; needs root for that and for initdb as `postgres`.
set -euo pipefail
BLOBS=${1:-0}
SEGMENTS=${2:-64}
W=${3:-/tmp/strata-walarch}
# Alive files of ended processes in the state directory for the second one-shot run:
# 50,000 is what half a day of one-shot pushes at 1.2 segments a second leaves.
ALIVE=${ALIVE:-50000}
BIN=${STRATA_BIN:-$PWD/target/release/strata}
FAB=${FABRICATE_BIN:-$PWD/target/release/examples/fabricate_index}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
export STRATA_PASSWORD=walarch-bench
rm -rf "$W"; mkdir -p "$W"
source "$(dirname "${BASH_SOURCE[0]}")/measure.sh"

if ! command -v pgbackrest >/dev/null; then
  apt-get install -y pgbackrest >/dev/null
fi
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null

# make_segments DIR LOG: SEGMENTS fresh segments of WAL file LOG (hex) in DIR.
make_segments() {
  mkdir -p "$1"
  for i in $(seq 1 "$SEGMENTS"); do
    name=$(printf '00000001%08X%08X' "$2" "$i")
    # Random bytes behind a zero page magic: not taken for a PostgreSQL page header (whose
    # system identifier would pin the archive to a cluster).
    { head -c 4 /dev/zero; head -c $(((16 << 20) - 4)) /dev/urandom; } > "$1/$name"
  done
}

# ready DATADIR SEGDIR: links SEGDIR's segments into DATADIR/pg_wal, each marked ready.
ready() {
  mkdir -p "$1/pg_wal/archive_status"
  for f in "$2"/*; do
    ln "$f" "$1/pg_wal/"
    touch "$1/pg_wal/archive_status/$(basename "$f").ready"
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

# push_all DIR RSSFILE CMD...: CMD pg_wal/NAME (in DIR) for every ready segment in order,
# as PostgreSQL would; each process's peak RSS (KiB) appended to RSSFILE.
push_all() {
  local dir=$1 rssfile=$2 name ready; shift 2
  for ready in $(ls "$dir/pg_wal/archive_status" | grep '\.ready$' | sort); do
    name=${ready%.ready}
    [[ -e $dir/pg_wal/archive_status/$ready ]] || continue
    (cd "$dir" && /usr/bin/time -a -o "$rssfile" -f '%M' "$@" "pg_wal/$name")
    mv "$dir/pg_wal/archive_status/$ready" "$dir/pg_wal/archive_status/$name.done"
  done
}

# run LABEL HOW DIR CMD...: times push_all, prints a row of the table.
run() {
  local label=$1 how=$2 dir=$3; shift 3
  local archiver="" sampler="" rss="-" rest="-" start end secs
  if [[ $how == archiver ]]; then
    "$BIN" wal archiver 2> "$dir/archiver.log" &
    archiver=$!
    sample_rss "$archiver" > "$dir/archiver.rss" &
    sampler=$!
    until "$BIN" -q wal status >/dev/null 2>&1; do sleep 0.1; done
  fi
  : > "$dir/push.rss"
  start=$(date +%s.%N)
  push_all "$dir" "$dir/push.rss" "$@"
  end=$(date +%s.%N)
  if [[ -n $archiver ]]; then
    sleep 1
    rest="$(awk '/^RssAnon/{printf "%.0f MiB anon", $2 / 1024}' "/proc/$archiver/status")"
    kill -TERM "$archiver"; wait "$archiver" || true
    wait "$sampler" 2>/dev/null || true
    rss=$(cat "$dir/archiver.rss")
  fi
  secs=$(echo "$end - $start" | bc -l)
  push_peak=$(sort -n "$dir/push.rss" | tail -n 1)
  printf '| %s | %s | %.1f s | **%.1f** | %.0f MiB | %s | %s |\n' "$label" "$how" "$secs" \
    "$(echo "$SEGMENTS / $secs" | bc -l)" "$(echo "$push_peak / 1024" | bc -l)" "$rss" "$rest" \
    | tee -a "$W/table.md"
}

# strata_repo DIR: a fresh strata repository and state directory for DIR, with one
# untimed push done (a host that archived before: its local index table exists).
strata_repo() {
  export STRATA_REPO=$1/repo STRATA_STATE_DIR=$1/state
  "$BIN" init >/dev/null
  mkdir -p "$1/warm/pg_wal"
  SEGMENTS=1 make_segments "$1/warm/pg_wal" 0
  (cd "$1/warm" && "$BIN" -q wal-push "pg_wal/$(ls "$1/warm/pg_wal" | head -n 1)")
  rm -rf "$1/warm"
}

printf '| repository | how | %s segments | segments/s | largest push process | archiver peak RSS | archiver RSS after |\n|---|---|---|---|---|---|---|\n' "$SEGMENTS" > "$W/table.md"
make_segments "$W/segments" 1
for how in one-shot one-shot-aged archiver; do
  strata_repo "$W/$how"
  if [[ $how == one-shot-aged ]]; then
    # The state directory of a host whose archiver was down a while: the alive files of
    # ALIVE ended processes (one per one-shot `wal-push`, kept a day as proof of its end).
    (cd "$STRATA_STATE_DIR/alive" && for i in $(seq 1 "$ALIVE"); do
      printf 'ended\n' > "$(printf '%032x' "$i").lock"; done)
    label="strata, empty, $ALIVE alive files"
  else
    label="strata, empty"
  fi
  ready "$W/$how" "$W/segments"
  run "$label" "${how%-aged}" "$W/$how" "$BIN" -q wal-push
done

# pgBackRest: a stanza over a cluster made by initdb (never started: archive-push reads
# its pg_control), archive-push run from that data directory as PostgreSQL does.
P=$W/pgbackrest
mkdir -p "$P"; chown postgres "$P"
su postgres -c "$PGBIN/initdb -A trust -U postgres --no-locale -D $P/data" >/dev/null
cat > "$P/pgbackrest.conf" <<EOF
[global]
repo1-path=$P/repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=walarch-bench
compress-type=zst
compress-level=3
log-path=$P/log
lock-path=$P/log
spool-path=$P/log
archive-header-check=n
log-level-console=warn
log-level-file=off

[bench]
pg1-path=$P/data
EOF
pgbackrest --config="$P/pgbackrest.conf" --stanza=bench --no-online stanza-create >/dev/null
ready "$P/data" "$W/segments"
run "pgBackRest $(pgbackrest version | cut -d' ' -f2)" "archive-push" "$P/data" \
  pgbackrest --config="$P/pgbackrest.conf" --stanza=bench archive-push

if (( BLOBS > 0 )); then
  L=$W/large
  strata_repo "$L"
  measure "fabricate $BLOBS blobs" "$FAB" "$STRATA_REPO" "$BLOBS" >/dev/null
  log=2
  for how in one-shot archiver; do
    rm -rf "$L/pg_wal"
    make_segments "$L/fresh" "$log"; log=$((log + 1))
    ready "$L" "$L/fresh"
    run "strata, $BLOBS blobs" "$how" "$L" "$BIN" -q wal-push
    rm -rf "$L/fresh"
  done
fi
echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores, strata $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $SEGMENTS segments of 16 MiB:"
cat "$W/table.md"
