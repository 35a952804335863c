#!/usr/bin/env bash
# bench/scale.sh - strata at the size of real clusters: a repository of N fabricated
# blobs (index objects of packs that do not exist, written by the example
# `fabricate_index`), and what a small backup, a restore and a WAL push cost there
# against an empty repository, each with its peak anonymous and file-backed memory.
#
#   bench/scale.sh [BLOBS] [WORKDIR]      (default 10000000, /tmp/strata-scale)
#
# DATA_MIB (default 256) is the size of the backup's new data. The fabricated packs are
# sparse files of their size (no disk blocks), so `verify` (structure) finds them; with
# S3=1 a new host's first start is also measured against the S3 emulator (s3s-fs, from
# scripts/install-test-servers.sh), serving the same repository directory.
#
# Needs release builds: cargo build --release -p strata --bin strata &&
#                       cargo build --release -p strata-repo --examples
set -euo pipefail
BLOBS=${1:-10000000}
DATA_MIB=${DATA_MIB:-256}
W=${2:-/tmp/strata-scale}
BIN=${STRATA_BIN:-$PWD/target/release/strata}
FAB=${FABRICATE_BIN:-$PWD/target/release/examples/fabricate_index}
export STRATA_PASSWORD=scale-bench
rm -rf "$W"; mkdir -p "$W"

source "$(dirname "${BASH_SOURCE[0]}")/measure.sh"

# The data of one backup: DATA_MIB of new content in 4 MiB files, and one WAL segment.
mkdir -p "$W/src" "$W/wal" "$W/tiny"
echo "a new host's first file" > "$W/tiny/hello.txt"
for i in $(seq 1 $((DATA_MIB / 4))); do head -c $((4 << 20)) /dev/urandom > "$W/src/part-$i.bin"; done
head -c $((16 << 20)) /dev/urandom > "$W/wal/000000010000000000000001"
head -c $((16 << 20)) /dev/urandom > "$W/wal/000000010000000000000002"

for kind in empty large; do
  export STRATA_REPO=$W/$kind/repo STRATA_STATE_DIR=$W/$kind/state
  "$BIN" init >/dev/null
  if [[ $kind == large ]]; then
    STRATA_FABRICATE_PACKS=sparse measure "fabricate $BLOBS blobs" "$FAB" "$STRATA_REPO" "$BLOBS"
    du -sh "$STRATA_REPO/index" | sed 's/^/index objects: /'
    # A new host: no local index table yet (a one-file backup: the time is the start).
    measure "$kind: first backup of a new host (1 file)" "$BIN" backup --node-name first "$W/tiny"
    du -sh "$STRATA_STATE_DIR/index" | sed 's/^/local index table: /'
  fi
  measure "$kind: backup ($DATA_MIB MiB, new data)" "$BIN" backup --node-name n1 "$W/src"
  measure "$kind: restore ($DATA_MIB MiB)" "$BIN" restore latest --to "$W/$kind/restored"
  diff -rq "$W/src" "$(dirname "$(find "$W/$kind/restored" -name part-1.bin | head -1)")" \
    || { echo "the restored data differs"; exit 1; }
  rm -rf "$W/$kind/restored"
  measure "$kind: wal-push (16 MiB)" "$BIN" wal-push "$W/wal/000000010000000000000001"
  measure "$kind: verify (structure, every pack and blob)" "$BIN" verify
done

if [[ ${S3:-0} == 1 ]]; then
  rm -rf "$W/large/state" "$W/empty"   # room for the S3 host's table
  eval "$(scripts/install-test-servers.sh)"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$STRATA_TEST_S3S_FS" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench-secret-key \
    "$W/large" > "$W/s3s-fs.log" 2>&1 &
  s3=$!
  trap 'kill $s3 2>/dev/null || true' EXIT
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  export STRATA_REPO=s3://repo STRATA_STATE_DIR=$W/s3-host/state AWS_ENDPOINT=http://127.0.0.1:$port \
    AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key
  measure "S3: first backup of a new host (1 file)" "$BIN" backup --node-name s3-first "$W/tiny"
  measure "S3: wal-push after it (16 MiB)" "$BIN" wal-push "$W/wal/000000010000000000000002"
  rm -rf "$W/s3-host"
fi
