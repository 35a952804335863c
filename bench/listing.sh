#!/usr/bin/env bash
# bench/listing.sh - what listing backups costs at 10 and at 10,000 backups, on the S3
# emulator (s3s-fs on loopback): `list` (first page and all), `show latest`, an API page of
# 50, a `/metrics` scrape, each with its storage requests, time and peak RSS, and 500
# concurrent connections on API pages (wrk).
#
#   bench/listing.sh [COUNTS...]      (default: 10 10000)
#
# The backups are fabricated by `crates/strata-coordinator/examples/listing_bench.rs`
# (summaries and listing entries written 64 at a time through the repository API, then one
# compaction): what a listing reads, no manifests or data. Needs the test servers
# (scripts/install-test-servers.sh), Debian's `wrk` and GNU time (/usr/bin/time).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
work=${BENCH_DIR:-/tmp/strata-bench}/listing
counts=("$@"); [ ${#counts[@]} -gt 0 ] || counts=(10 10000)
eval "$("$root/scripts/install-test-servers.sh")"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --quiet -p strata --manifest-path "$root/Cargo.toml"
cargo build --release --quiet -p strata-coordinator --example listing_bench --manifest-path "$root/Cargo.toml"
strata="$target/release/strata"
synth="$target/release/examples/listing_bench"
rm -rf "$work" && mkdir -p "$work/s3root/strata" "$work/data"
echo "one file" > "$work/data/file"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }
s3port=$(free_port)
"$STRATA_TEST_S3S_FS" --host 127.0.0.1 --port "$s3port" --access-key bench --secret-key bench-secret-key "$work/s3root" \
  > "$work/s3s-fs.log" 2>&1 &
s3=$!
server=
trap 'kill $s3 ${server:-} 2>/dev/null || true' EXIT
wait_port "$s3port"
export STRATA_PASSWORD=bench-password STRATA_TOKEN=bench-token AWS_ENDPOINT="http://127.0.0.1:$s3port" \
  AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key

# timed NAME CMD...: one line "NAME<TAB>seconds<TAB>peak RSS MiB".
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2> "$work/stderr" || { cat "$work/stderr" >&2; return 1; }
  read -r secs kib < "$work/time"
  printf '%s\t%s\t%.0f\n' "$name" "$secs" "$(echo "$kib / 1024" | bc -l)"
}
# The server's storage requests so far (GET and LIST), from its own /metrics.
requests() {
  curl -s -H "Authorization: Bearer $STRATA_TOKEN" "http://127.0.0.1:$port/metrics" \
    | awk '/^strata_store_requests_total\{storage="main",kind="(get|list)"\}/ { match($0, /kind="[a-z]+"/); k=substr($0, RSTART+6, RLENGTH-7); v[k]=$2 } END { printf "%d %d", v["get"], v["list"] }'
}
# api NAME PATH: requests the server made for one call (the /metrics reads around it
# cost none: they are read from counters and kept figures), its time.
api() {
  local name=$1 path=$2 before after secs
  before=$(requests)
  secs=$(curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $STRATA_TOKEN" "http://127.0.0.1:$port$path")
  after=$(requests)
  read -r g0 l0 <<< "$before"; read -r g1 l1 <<< "$after"
  printf '%s\tGET %d, LIST %d\t%.1f ms\n' "$name" $((g1 - g0)) $((l1 - l0)) "$(echo "$secs * 1000" | bc -l)"
}

for n in "${counts[@]}"; do
  echo "== $n backups"
  config="$work/strata-$n.toml"
  cat > "$config" <<TOML
default_storage = "main"
state_dir = "$work/state-$n"
[storages.main]
url = "s3://strata/n$n"
[[nodes]]
name = "db1"
roots = ["$work/data"]
TOML
  "$strata" --config "$config" init -q
  "$synth" synth "s3://strata/n$n" "$n"
  echo "-- library, through a request-counting store (LIST, keys listed, GET, ms)"
  "$synth" cost "s3://strata/n$n"
  echo "-- CLI (seconds, peak RSS MiB)"
  timed "list --limit 50" "$strata" --config "$config" list --limit 50
  timed "list (all)" "$strata" --config "$config" list
  timed "show latest" "$strata" --config "$config" show latest
  echo "-- server"
  port=$(free_port)
  "$strata" --config "$config" server --listen "127.0.0.1:$port" > "$work/server-$n.log" 2>&1 &
  server=$!
  wait_port "$port"
  api "first API page of 50" "/api/v1/backups?limit=50"
  api "API page of 50" "/api/v1/backups?limit=50"
  api "first /metrics scrape" "/metrics"
  api "/metrics scrape" "/metrics"
  api "/metrics scrape" "/metrics"
  wrk -t2 -c500 -d15s --latency -H "Authorization: Bearer $STRATA_TOKEN" \
    "http://127.0.0.1:$port/api/v1/backups?limit=50" > "$work/wrk-$n.txt" 2>&1 || true
  printf 'wrk 500 connections, 15 s: %s requests/s, p99 %s, errors: %s\n' \
    "$(awk '/Requests\/sec/ {print $2}' "$work/wrk-$n.txt")" \
    "$(awk '$1 == "99%" {print $2}' "$work/wrk-$n.txt")" \
    "$(grep -E 'Socket errors|Non-2xx' "$work/wrk-$n.txt" | tr '\n' ' ' || echo none)"
  printf 'server peak RSS: %s MiB\n' "$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$server/status")"
  kill "$server"; wait "$server" 2>/dev/null || true; server=
done
