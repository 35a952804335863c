#!/usr/bin/env bash
# bench/object-storage.sh - strata's throughput to an S3 server on loopback (s3s-fs)
# against the local-directory repository, on the same dataset, plus the requests per GiB.
#
#   bench/object-storage.sh [DATASET_DIR]     (default: $BENCH_DIR/data from bench/run.sh)
#
# Needs the test servers (scripts/install-test-servers.sh) and a release build of strata.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
work=${BENCH_DIR:-/tmp/strata-bench}
data=${1:-$work/data}
[ -d "$data" ] || { echo "no dataset at $data: run bench/run.sh first or pass a directory" >&2; exit 1; }
eval "$("$root/scripts/install-test-servers.sh")"
cargo build --release --quiet -p strata --manifest-path "$root/Cargo.toml"
strata="$root/target/release/strata"
out="$work/object-storage"
rm -rf "$out" && mkdir -p "$out/s3root/strata"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$STRATA_TEST_S3S_FS" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench-secret-key "$out/s3root" \
  > "$out/s3s-fs.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

export STRATA_PASSWORD=bench-password AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true \
  AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key
size=$(du -sb "$data" | cut -f1)

measure() { # name repo
  local name=$1 repo=$2
  "$strata" --repo "$repo" init -q
  local t0 t1 t2
  t0=$(date +%s.%N)
  "$strata" --repo "$repo" --state-dir "$out/state-$name" backup "$data" --json > "$out/$name-backup.json"
  t1=$(date +%s.%N)
  "$strata" --repo "$repo" restore latest --to "$out/restore-$name" -q
  t2=$(date +%s.%N)
  python3 - "$name" "$size" "$t0" "$t1" "$t2" "$out/$name-backup.json" <<'PY'
import json, sys
name, size, t0, t1, t2, path = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:6]), sys.argv[6]
s = json.load(open(path))
r = s.get("requests") or {}
new = sum(n["new_bytes"] for n in s["nodes"])
mib = 1024 * 1024
print(f"{name}\t{size/mib/(t1-t0):.0f}\t{size/mib/(t2-t1):.0f}\t{t1-t0:.2f}\t{t2-t1:.2f}\t{r.get('put',0)}\t{new/mib:.0f}\t{r.get('put',0)/(new/(1<<30)):.1f}")
PY
  rm -rf "$out/restore-$name"
}
echo -e "target\tbackup MiB/s\trestore MiB/s\tbackup s\trestore s\tPUT\tnew MiB\tPUT per GiB new"
measure local "$out/repo-local"
measure s3 "s3://strata/bench"
