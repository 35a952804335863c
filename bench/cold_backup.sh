#!/usr/bin/env bash
# A full backup of a tree read cold, per binary: the read path against the disk.
#
#   bench/cold_backup.sh [--mib-per-file N] [--runs N] BIN [BIN ...]
#
# Makes a tree of three N MiB random files (default 500) and 400 files of 16 KiB, then for
# each run and each binary: a fresh repository, `sync`, the page cache dropped (root),
# `strata backup` timed with /usr/bin/time (elapsed, user, system, peak RSS). Compare two
# builds by naming both.
set -euo pipefail
mib=500 runs=2
while [[ $# -gt 0 ]]; do
  case $1 in
    --mib-per-file) mib=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || { echo "usage: $0 [--mib-per-file N] [--runs N] BIN [BIN ...]" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "$0: dropping the page cache needs root" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data/small"
for i in 1 2 3; do head -c "${mib}M" /dev/urandom > "$work/data/big$i"; done
for i in $(seq 1 400); do head -c 16384 /dev/urandom > "$work/data/small/f$i"; done
export STRATA_PASSWORD=bench
echo "| binary | run | elapsed s | user s | system s | peak KiB |"
echo "|---|---|---|---|---|---|"
for run in $(seq 1 "$runs"); do
  for bin in "$@"; do
    rm -rf "$work/repo"
    "$bin" --repo "$work/repo" init > /dev/null
    sync; echo 3 > /proc/sys/vm/drop_caches
    t=$( { /usr/bin/time -f "%e | %U | %S | %M" "$bin" --repo "$work/repo" backup "$work/data" > /dev/null; } 2>&1 | tail -1)
    echo "| $bin | $run | $t |"
  done
done
