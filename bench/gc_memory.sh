#!/usr/bin/env bash
# bench/gc_memory.sh - garbage collection's peak memory and time in a repository of N
# fabricated blobs (index objects of packs that do not exist, written by the example
# `fabricate_index`), with archive records referencing 90% of them and the other 10% of
# the packs stored as tiny objects, so that the collection condemns, unindexes and
# deletes about a tenth of the packs and rewrites every index object.
#
#   bench/gc_memory.sh [BLOBS] [WORKDIR]      (default 10000000, /tmp/strata-gc)
#
# GC_BINS names the strata binaries to compare, as label=path pairs (default: this
# tree's release build); each runs `strata gc` on an identical copy of the repository
# and its state directory (the local index table already built, so the time is the
# collection's, not a new host's first index load).
#
# Needs release builds: cargo build --release -p strata --bin strata &&
#                       cargo build --release -p strata-repo --examples
set -euo pipefail
BLOBS=${1:-10000000}
W=${2:-/tmp/strata-gc}
FAB=${FABRICATE_BIN:-$PWD/target/release/examples/fabricate_index}
GC_BINS=${GC_BINS:-current=$PWD/target/release/strata}
export STRATA_PASSWORD=gc-bench
rm -rf "$W"; mkdir -p "$W/tiny"
echo "a first file" > "$W/tiny/hello.txt"

source "$(dirname "${BASH_SOURCE[0]}")/measure.sh"

export STRATA_REPO=$W/repo STRATA_STATE_DIR=$W/state
first_bin=${GC_BINS%% *}; first_bin=${first_bin#*=}
"$first_bin" init >/dev/null
measure "fabricate $BLOBS blobs" "$FAB" "$STRATA_REPO" "$BLOBS" --garbage 10
du -sh "$STRATA_REPO/index" "$STRATA_REPO/archive" | sed 's/^/size: /'
# Builds this host's local index table, as any earlier command would have.
"$first_bin" backup --node-name first "$W/tiny" >/dev/null
# Copies for each binary only when there are several (at 100 million blobs a copy is
# about 11 GB).
several=$([[ $GC_BINS == *" "* ]] && echo 1 || echo 0)
if (( several )); then cp -a "$STRATA_REPO" "$W/repo.orig"; cp -a "$STRATA_STATE_DIR" "$W/state.orig"; fi
for pair in $GC_BINS; do
  label=${pair%%=*}; bin=${pair#*=}
  if (( several )); then
    rm -rf "$STRATA_REPO" "$STRATA_STATE_DIR"
    cp -a "$W/repo.orig" "$STRATA_REPO"; cp -a "$W/state.orig" "$STRATA_STATE_DIR"
  fi
  measure "gc ($label)" "$bin" gc --json
  tr -d '\n ' < "$W/last.out"; echo
done
rm -rf "$W"
