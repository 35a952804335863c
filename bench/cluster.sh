#!/usr/bin/env bash
# bench/cluster.sh - a 3-node cluster backup on 127.0.0.1 against a single-node backup.
#
#   bench/cluster.sh [--node-mib N]      (default 300)
#
# Three `strata server` agents, each with its own data directory of ~N MiB: half of it
# is the same database-like dataset on every node (shared), half is the node's own
# (bench/gen_dataset.py with another seed). The coordinator is the CLI in-process,
# driving the agents over HTTP. Two rounds, each with fresh repositories:
#   * shared machine: the agents share this machine's cores, as they come;
#   * equal hosts (root with the cgroup v1 cpu controller): every agent, and the
#     single-node baseline, gets its own CPU budget of cores/3 through a cgroup quota, a
#     scaled-down model of one host per node.
# Each round reports the single-node backup of node 1's data alone, the 3-node backup
# (wall; coordinator CPU and peak RSS; the agents' CPU and peak RSS from /proc), the
# cluster/single wall ratio (target < 1.6x: nodes work in parallel and the shared half
# is sent once) and stored bytes against the logical size. The cluster backup is
# restored and compared with the data.
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

CGROOT=/sys/fs/cgroup/cpu
QUOTA=$(( $(nproc) * 100000 / 3 ))
can_limit() { [[ $EUID -eq 0 && -w $CGROOT ]]; }
# in_group MODE NAME: sets LIM to a command prefix that runs a command inside cgroup NAME
# with a quota of cores/3 (MODE equal), or to nothing (MODE shared)
in_group() {
  LIM=()
  [[ $1 == equal ]] || return 0
  local dir=$CGROOT/strata-bench-$2
  mkdir -p "$dir"
  echo 100000 >"$dir/cpu.cfs_period_us"
  echo "$QUOTA" >"$dir/cpu.cfs_quota_us"
  LIM=(sh -c 'echo $$ >"$0/cgroup.procs"; exec "$@"' "$dir")
}
cleanup_cgroups() { for g in "$CGROOT"/strata-bench-*; do [[ -d $g ]] && rmdir "$g" 2>/dev/null; done; true; }
mib() { awk -v b="$1" 'BEGIN{printf "%.0f MiB", b / 1048576}'; }
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; cleanup_cgroups' EXIT
logical=$(( $(du -sb "$W/db1/data" | cut -f1) + $(du -sb "$W/db2/data" | cut -f1) + $(du -sb "$W/db3/data" | cut -f1) ))
REPORT=()

# round MODE: MODE is "shared" or "equal"
round() {
  local mode=$1 R=$W/$1
  rm -rf "$R"; mkdir -p "$R"
  echo "==> [$mode] single-node backup of db1's data"
  cat >"$R/single.toml" <<TOML
default_storage = "main"
state_dir = "$R/single-state"
[storages.main]
path = "$R/single-repo"
[[nodes]]
name = "db1"
roots = ["$W/db1/data"]
TOML
  "$STRATA_BIN" --config "$R/single.toml" init >/dev/null
  in_group "$mode" single
  timed "$mode-single" ${LIM[@]+"${LIM[@]}"} "$STRATA_BIN" --config "$R/single.toml" backup

  echo "==> [$mode] 3 agents on 127.0.0.1"
  PIDS=(); local urls=()
  for i in 1 2 3; do
    cat >"$R/db$i.toml" <<TOML
default_storage = "main"
state_dir = "$R/db$i-state"
[storages.main]
path = "$R/cluster-repo"
[[nodes]]
name = "db$i"
roots = ["$W/db$i/data"]
[server]
node = "db$i"
coordinator = false
TOML
    in_group "$mode" "agent$i"
    ${LIM[@]+"${LIM[@]}"} "$STRATA_BIN" --config "$R/db$i.toml" server --listen 127.0.0.1:0 >"$R/db$i.out" 2>"$R/db$i.err" &
    PIDS+=($!)
  done
  for i in 1 2 3; do
    for _ in $(seq 100); do grep -q listening "$R/db$i.out" 2>/dev/null && break; sleep 0.1; done
    urls+=("$(grep -o 'http://[0-9.:]*' "$R/db$i.out")")
  done
  {
    echo 'default_storage = "main"'
    echo "state_dir = \"$R/coordinator-state\""
    echo '[storages.main]'
    echo "path = \"$R/cluster-repo\""
    for i in 1 2 3; do printf '[[nodes]]\nname = "db%s"\nurl = "%s"\n' "$i" "${urls[$((i - 1))]}"; done
  } >"$R/cluster.toml"
  "$STRATA_BIN" --config "$R/cluster.toml" init >/dev/null
  echo "==> [$mode] cluster backup"
  timed "$mode-cluster" "$STRATA_BIN" --config "$R/cluster.toml" backup
  local agent_cpu=0 per_agent=() agent_rss=() pid cpu
  for pid in "${PIDS[@]}"; do
    agent_rss+=("$(awk '/VmHWM/{printf "%.0f", $2 / 1024}' "/proc/$pid/status")")
    cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$pid/stat")
    per_agent+=("$cpu")
    agent_cpu=$(awk -v a="$agent_cpu" -v c="$cpu" 'BEGIN{printf "%.1f", a + c}')
  done

  echo "==> [$mode] verifying: restore of the cluster backup, compared with the data"
  "$STRATA_BIN" --config "$R/cluster.toml" restore latest --to "$R/restored" >/dev/null
  for i in 1 2 3; do diff -r "$W/db$i/data" "$R/restored/db$i" >/dev/null || { echo "cluster.sh: restore of db$i differs" >&2; exit 1; }; done
  kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=()
  rm -rf "$R/restored"

  local single_repo cluster_repo s_wall c_wall s_cpu c_cpu ratio title
  single_repo=$(du -sb "$R/single-repo" | cut -f1)
  cluster_repo=$(du -sb "$R/cluster-repo" | cut -f1)
  s_wall=$(field "$mode-single" 1); c_wall=$(field "$mode-cluster" 1)
  s_cpu=$(awk '{printf "%.1f", $2 + $3}' "$W/$mode-single.time"); c_cpu=$(awk '{printf "%.1f", $2 + $3}' "$W/$mode-cluster.time")
  ratio=$(awk -v a="$c_wall" -v b="$s_wall" 'BEGIN{printf "%.2f", a / b}')
  if [[ $mode == equal ]]; then
    title="Equal hosts: every agent and the single-node backup limited to $(awk -v q="$QUOTA" 'BEGIN{printf "%.2f", q / 100000}') CPU (cgroup quota)"
  else
    title="Shared machine: the three agents share all $(nproc) cores"
  fi
  REPORT+=("## $title" ""
    "| run | wall | CPU | peak RSS | repository | logical data |"
    "|---|---|---|---|---|---|"
    "| single node (db1 alone, in-process) | ${s_wall} s | ${s_cpu} s | $(( $(field "$mode-single" 4) / 1024 )) MiB | $(mib "$single_repo") | $(mib "$(du -sb "$W/db1/data" | cut -f1)") |"
    "| 3-node cluster: coordinator | ${c_wall} s | ${c_cpu} s | $(( $(field "$mode-cluster" 4) / 1024 )) MiB | $(mib "$cluster_repo") | $(mib "$logical") |"
    "| 3-node cluster: agents db1, db2, db3 | | ${per_agent[*]} s | ${agent_rss[*]} MiB | | |"
    ""
    "Cluster / single wall time: **${ratio}x** (target < 1.6x). Stored / logical: $(awk -v a="$cluster_repo" -v b="$logical" 'BEGIN{printf "%.2f", a / b}')."
    "")
}

round shared
if can_limit; then
  round equal
else
  REPORT+=("(Equal hosts round skipped: needs root and the cgroup v1 cpu controller at $CGROOT.)" "")
fi
{
  echo "# Cluster backup: 3 nodes on 127.0.0.1"
  echo
  echo "$(date -u +%F), $(nproc) cores, ${NODE_MIB} MiB per node (${HALF} MiB shared by all three), release build."
  echo
  printf '%s\n' "${REPORT[@]}"
} | tee "$RESULTS_MD"
