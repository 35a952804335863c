#!/usr/bin/env bash
# bench/cluster.sh - a 3-node cluster backup on 127.0.0.1 against a single-node backup.
#
#   bench/cluster.sh [--node-mib N]      (default 300)
#
# Three `strata server` agents, each with its own data directory of ~N MiB: half of it
# is the same database-like dataset on every node (shared), half is the node's own
# (bench/gen_dataset.py with another seed). The coordinator is the CLI in-process,
# driving the agents over HTTP. Reported:
#   * single: `strata backup` of node 1's data alone into a fresh repository;
#   * cluster: the 3-node backup into another fresh repository (wall, and the
#     coordinator's CPU and peak RSS; the agents' CPU from /proc at the end);
#   * the ratio cluster/single wall time (target < 1.6x: nodes work in parallel and the
#     shared half is sent once), and stored bytes against the logical size.
# Output: a table on stdout and bench/results/cluster.md. Work dir: BENCH_DIR
# (default /tmp/strata-cluster-bench).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
NODE_MIB=300
while [[ $# -gt 0 ]]; do
  case $1 in
    --node-mib) NODE_MIB=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
W=${BENCH_DIR:-/tmp/strata-cluster-bench}
RESULTS_MD=${BENCH_RESULTS:-$SCRIPT_DIR/results/cluster.md}
export STRATA_PASSWORD=strata-bench-password
export STRATA_AGENT_TOKEN=bench-agent-token
export STRATA_TOKEN=bench-user-token

if [[ -z ${STRATA_BIN:-} ]]; then
  (cd "$REPO_ROOT" && cargo build --release --quiet --bin strata)
  STRATA_BIN=$REPO_ROOT/target/release/strata
fi
command -v /usr/bin/time >/dev/null || { echo "cluster.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

rm -rf "$W"; mkdir -p "$W"
HALF=$((NODE_MIB / 2))
echo "==> generating data: 3 nodes x ${NODE_MIB} MiB, ${HALF} MiB of it shared"
python3 "$SCRIPT_DIR/gen_dataset.py" "$W/shared" --size-mib "$HALF" --seed 1 >/dev/null
for i in 1 2 3; do
  mkdir -p "$W/db$i/data"
  python3 "$SCRIPT_DIR/gen_dataset.py" "$W/db$i/data/own" --size-mib "$HALF" --seed $((10 + i)) >/dev/null
  cp -a "$W/shared" "$W/db$i/data/shared"
done
sync

# timed NAME CMD...: wall seconds, CPU seconds, peak RSS KiB into $W/NAME.time
timed() {
  local name=$1; shift
  /usr/bin/time -f '%e %U %S %M' -o "$W/$name.time" "$@" >"$W/$name.out" 2>"$W/$name.err"
}
field() { awk -v f="$2" '{print $f}' "$W/$1.time"; }

echo "==> single-node backup of db1's data"
cat >"$W/single.toml" <<TOML
default_storage = "main"
state_dir = "$W/single-state"
[storages.main]
path = "$W/single-repo"
[[nodes]]
name = "db1"
roots = ["$W/db1/data"]
TOML
"$STRATA_BIN" --config "$W/single.toml" init >/dev/null
timed single "$STRATA_BIN" --config "$W/single.toml" backup

echo "==> 3 agents on 127.0.0.1"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
URLS=()
for i in 1 2 3; do
  cat >"$W/db$i/strata.toml" <<TOML
default_storage = "main"
state_dir = "$W/db$i/state"
[storages.main]
path = "$W/cluster-repo"
[[nodes]]
name = "db$i"
roots = ["$W/db$i/data"]
[server]
node = "db$i"
coordinator = false
TOML
  "$STRATA_BIN" --config "$W/db$i/strata.toml" server --listen 127.0.0.1:0 >"$W/db$i/server.out" 2>"$W/db$i/server.err" &
  PIDS+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do grep -q listening "$W/db$i/server.out" 2>/dev/null && break; sleep 0.1; done
  URLS+=("$(grep -o 'http://[0-9.:]*' "$W/db$i/server.out")")
done
{
  echo 'default_storage = "main"'
  echo "state_dir = \"$W/coordinator-state\""
  echo '[storages.main]'
  echo "path = \"$W/cluster-repo\""
  for i in 1 2 3; do printf '[[nodes]]\nname = "db%s"\nurl = "%s"\n' "$i" "${URLS[$((i - 1))]}"; done
} >"$W/cluster.toml"
"$STRATA_BIN" --config "$W/cluster.toml" init >/dev/null
echo "==> cluster backup"
timed cluster "$STRATA_BIN" --config "$W/cluster.toml" backup
agent_cpu=0; agent_max=0; per_agent=(); agent_rss=()
for pid in "${PIDS[@]}"; do
  agent_rss+=("$(awk '/VmHWM/{printf "%.0f", $2 / 1024}' "/proc/$pid/status")")
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$pid/stat")
  per_agent+=("$cpu")
  agent_cpu=$(awk -v a="$agent_cpu" -v c="$cpu" 'BEGIN{printf "%.1f", a + c}')
  agent_max=$(awk -v a="$agent_max" -v c="$cpu" 'BEGIN{printf "%.1f", (c > a ? c : a)}')
done

echo "==> verifying: restore of the cluster backup, compared with the data"
"$STRATA_BIN" --config "$W/cluster.toml" restore latest --to "$W/restored" >/dev/null
for i in 1 2 3; do diff -r "$W/db$i/data" "$W/restored/db$i" >/dev/null || { echo "cluster.sh: restore of db$i differs" >&2; exit 1; }; done

logical=$(( $(du -sb "$W/db1/data" | cut -f1) + $(du -sb "$W/db2/data" | cut -f1) + $(du -sb "$W/db3/data" | cut -f1) ))
single_repo=$(du -sb "$W/single-repo" | cut -f1)
cluster_repo=$(du -sb "$W/cluster-repo" | cut -f1)
s_wall=$(field single 1); c_wall=$(field cluster 1)
s_cpu=$(awk '{printf "%.1f", $2 + $3}' "$W/single.time"); c_cpu=$(awk '{printf "%.1f", $2 + $3}' "$W/cluster.time")
ratio=$(awk -v a="$c_wall" -v b="$s_wall" 'BEGIN{printf "%.2f", a / b}')
mib() { awk -v b="$1" 'BEGIN{printf "%.0f MiB", b / 1048576}'; }
{
  echo "# Cluster backup: 3 nodes on 127.0.0.1"
  echo
  echo "$(date -u +%F), $(nproc) cores, ${NODE_MIB} MiB per node (${HALF} MiB shared by all three), release build."
  echo
  echo "| run | wall | CPU (coordinator) | peak RSS (coordinator) | repository | logical data |"
  echo "|---|---|---|---|---|---|"
  echo "| single node (db1 alone, in-process) | ${s_wall} s | ${s_cpu} s | $(( $(field single 4) / 1024 )) MiB | $(mib "$single_repo") | $(mib $(du -sb "$W/db1/data" | cut -f1)) |"
  echo "| 3-node cluster (3 agents over HTTP) | ${c_wall} s | ${c_cpu} s (+ ${agent_cpu} s in the agents) | $(( $(field cluster 4) / 1024 )) MiB | $(mib "$cluster_repo") | $(mib "$logical") |"
  echo
  echo "Cluster / single wall time: **${ratio}x** (target < 1.6x). Stored / logical: $(awk -v a="$cluster_repo" -v b="$logical" 'BEGIN{printf "%.2f", a / b}')."
  echo
  echo "CPU per agent: ${per_agent[*]} s (the single-node backup: ${s_cpu} s); peak RSS per agent: ${agent_rss[*]} MiB."
  echo "All three agents share"
  echo "this machine's $(nproc) cores, so the cluster's wall time cannot go below"
  echo "$(awk -v a="$agent_cpu" -v c="$c_cpu" -v n="$(nproc)" 'BEGIN{printf "%.2f", (a + c) / n}') s (all CPU / cores) here; on hosts with cores of their own, each node's share is its own CPU."
} | tee "$RESULTS_MD"
